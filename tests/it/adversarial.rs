//! Obfuscated copies: a rotated fine-tuned derivative is still called derived while AWM's
//! permutation-only score collapses; an unrelated model given the same obfuscation is not; and
//! canonical statistics do not move under rotation, rescaling and head permutation.

use weight_audit::eval::{AWM_PUBLISHED, evaluate, scores};
use weight_audit_lab::spec::{Label, ModelSpec, PairSpec, Spec};
use weight_audit_lab::transform::parse_transforms;

use crate::util::{derived_spec, llama_spec};
use weight_audit_lab as lab;

fn base(name: &str, seed: u64) -> ModelSpec {
    llama_spec(name, seed, 1024)
}

fn from(name: &str, parent: &str, ts: &str) -> ModelSpec {
    derived_spec(name, parent, ts)
}

fn pair(id: &str, a: &str, b: &str, label: Label) -> PairSpec {
    PairSpec {
        id: id.into(),
        a: a.into(),
        b: b.into(),
        label,
        relation: id.into(),
        notes: String::new(),
    }
}

#[test]
fn rotated_derivatives_are_found_and_rotated_strangers_are_not() {
    let d = tempfile::tempdir().unwrap();
    let obfuscate =
        "fold_norm(seed=7)+permute_heads(seed=8)+rotate_hidden(seed=9)+fine_tune(rel=0.01,seed=10)";
    let spec = Spec {
        seed: 0,
        hidden: 128,
        models: vec![
            base("a", 1),
            base("b", 2),
            from("a.rot", "a", obfuscate),
            from("b.rot", "b", obfuscate),
            from("a.slice", "a", "slice_hidden(fraction=0.25)"),
        ],
        pairs: vec![
            pair("derived-rotated", "a", "a.rot", Label::Derived),
            pair("derived-sliced", "a", "a.slice", Label::Derived),
            pair("independent-rotated", "a", "b.rot", Label::Independent),
        ],
    };
    lab::generate(&spec, d.path()).unwrap();
    let rows = evaluate(
        &weight_audit::bank::BankSuite::folder("adv-test", d.path()),
        &weight_audit::pipeline::RubricSource::load(None).unwrap(),
    )
    .unwrap();
    let col = |name: &str| scores().iter().position(|s| s.name == name).unwrap();
    let (awm, e8) = (col(AWM_PUBLISHED), col("e8_cka"));
    for r in &rows {
        let (a, p) = (r.scores[awm], r.scores[e8]);
        if r.derived {
            assert!(r.verdict.is_derived(), "{}: {}", r.id, r.verdict.label());
            assert!(a < 0.1, "{}: AWM as published should fail, got {a}", r.id);
            assert!(p > 0.9, "{}: project score {p}", r.id);
        } else {
            assert!(!r.verdict.is_derived(), "{}: {}", r.id, r.verdict.label());
            assert!(a < 0.1 && p < 0.1, "{}: {a} {p}", r.id);
        }
    }
}

#[test]
fn canonical_spectra_ignore_rotation_rescaling_and_head_permutation() {
    use weight_audit::experiments::{self, Subjects};
    use weight_audit::model::{Model, ModelOptions};
    use weight_audit::source::local::LocalSource;
    let d = tempfile::tempdir().unwrap();
    let spec = Spec {
        seed: 0,
        hidden: 64,
        models: vec![
            from_cast(base("a", 3)),
            from(
                "a.obf",
                "a",
                "rotate_hidden(seed=1)+fold_norm(seed=2)+permute_heads(seed=3)",
            ),
            from("a.ft", "a", "fine_tune(rel=0.05,seed=4)"),
        ],
        pairs: vec![],
    };
    lab::generate(&spec, d.path()).unwrap();
    let open = |n: &str| {
        Model::open(
            Box::new(LocalSource::open(&d.path().join(n)).unwrap()),
            &ModelOptions::default(),
        )
        .unwrap()
    };
    let (a, obf, ft) = (open("a"), open("a.obf"), open("a.ft"));
    let e6 = vec![experiments::by_id("e6").unwrap()];
    let out = experiments::run_all(&Subjects::new(&a, &obf, &[&ft]), &e6).unwrap();
    let r = &out[0].result;
    let layers = r["layers"].as_array().unwrap();
    let primary: Vec<f64> = layers
        .iter()
        .filter(|l| l["primary"] == true)
        .map(|l| l["distance"].as_f64().unwrap())
        .collect();
    assert_eq!(primary.len(), 4 * 7, "q, k, v, o, gate, up, down per layer");
    assert!(primary.iter().all(|x| *x < 1e-4), "{primary:?}");
    let pairs = r["pairs"].as_array().unwrap();
    assert_eq!(pairs[0]["canonical"], "norm_gains_folded");
    assert_eq!(pairs[0]["rank1"], 28);
    // a fine-tune moves the spectra measurably, far more than the reparameterisation does
    let ft_mean = pairs[1]["mean_distance"].as_f64().unwrap();
    assert!(ft_mean > 1e-3, "{ft_mean}");
}

/// Stored as F32, so that the rotated copy holds exactly the rotated values.
fn from_cast(mut m: ModelSpec) -> ModelSpec {
    m.transforms = parse_transforms("cast(dtype=F32)").unwrap();
    m
}
