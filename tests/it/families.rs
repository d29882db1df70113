//! Roles on the names real checkpoints use: lab models rewritten into each family's naming
//! (`rename_scheme`, written from the families' checkpoints, not from the tool's classifier),
//! then E4, E5 and E8 on a derived pair (fine-tune) and an independent pair of that family.

use std::path::Path;

use serde_json::Value;
use weight_audit::arch::{Family, Stack};
use weight_audit::experiments::{self, Experiment, Subjects, canonical};
use weight_audit::model::{Model, ModelOptions};
use weight_audit::source::local::LocalSource;
use weight_audit_lab::{self as lab, ArchConfig, ArchKind, Recipe};

fn open(dir: &Path) -> Model {
    Model::open(
        Box::new(LocalSource::open(dir).unwrap()),
        &ModelOptions::default(),
    )
    .unwrap()
}

/// A lab model of `kind` at width 128 with weight seed `seed`, transformed by `with`, written
/// under `dir/name` and opened.
fn make(dir: &Path, name: &str, kind: ArchKind, seed: u64, with: &str) -> Model {
    let mut m = lab::weights::generate(&Recipe::new(ArchConfig::scaled(kind, 128), seed)).unwrap();
    let specs = lab::parse_transforms(with).unwrap();
    let resolve = |p: &str| lab::read_model(Path::new(p));
    lab::transform::apply_all(&mut m, &specs, &resolve).unwrap();
    let out = dir.join(name);
    lab::write_model(&m, &out).unwrap();
    open(&out)
}

/// E4, E5 and E8 on A~B: (E4 alignments, E5 rows, E8 pair result).
fn run(a: &Model, b: &Model) -> (Vec<Value>, Vec<Value>, Value) {
    let subjects = Subjects::new(a, b, &[]);
    let e: Vec<Box<dyn Experiment>> = ["e4", "e5", "e8"]
        .iter()
        .map(|id| experiments::by_id(id).unwrap())
        .collect();
    let out = experiments::run_all(&subjects, &e).unwrap();
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    (
        list(&out[0].result["alignments"]),
        list(&out[1].result["rows"]),
        out[2].result["pairs"][0].clone(),
    )
}

/// The family's derived pair (a fine-tune) scores high in E8 and its independent pair low, with
/// E4, E5 and E8 all comparing layers.
fn family_case(kind: ArchKind, scheme: &str) -> (Model, Model, Model) {
    let d = tempfile::tempdir().unwrap();
    let to = format!("rename_scheme(scheme={scheme})");
    let a = make(d.path(), "a", kind, 1, &to);
    let b = make(
        d.path(),
        "b",
        kind,
        1,
        &format!("fine_tune(rel=0.05,seed=7)+{to}"),
    );
    let c = make(d.path(), "c", kind, 2, &to);
    for (pair, x, y, derived) in [("derived", &a, &b, true), ("independent", &a, &c, false)] {
        let (e4, e5, e8) = run(x, y);
        let what = format!("{scheme} {pair}");
        assert!(!e4.is_empty(), "{what}: E4 compared no layers");
        assert!(
            e4.iter()
                .all(|r| r["layers_b"].as_array().unwrap().len() >= 2),
            "{what}"
        );
        assert!(!e5.is_empty(), "{what}: E5 compared no projections");
        assert_eq!(e8["status"], "ok", "{what}: {e8}");
        assert!(e8["layers_matched"].as_u64().unwrap() > 0, "{what}: {e8}");
        let score = e8["score"].as_f64().unwrap();
        eprintln!(
            "{what}: E8 score {score:.4} over {} layers ({}), E4 {} alignments, E5 {} rows",
            e8["layers_matched"],
            e8["alignment"],
            e4.len(),
            e5.len()
        );
        if derived {
            assert!(score > 0.9, "{what}: {e8}");
        } else {
            assert!(score.abs() < 0.2, "{what}: {e8}");
        }
    }
    (a, b, c)
}

fn no_inferred_roles(m: &Model) {
    let inferred: Vec<&str> = m
        .tensors()
        .iter()
        .filter(|t| t.role.inferred)
        .map(|t| t.name.as_str())
        .collect();
    assert!(inferred.is_empty(), "{inferred:?}");
}

#[test]
fn albert_groups_are_layers() {
    let (a, _, _) = family_case(ArchKind::Bert, "albert");
    no_inferred_roles(&a);
    let t = a
        .tensor("albert.encoder.albert_layer_groups.3.albert_layers.0.attention.query.weight")
        .unwrap();
    assert_eq!((t.role.layer, t.role.family), (Some(3), Family::AttnQ));
    let map = a
        .tensor("albert.encoder.embedding_hidden_mapping_in.weight")
        .unwrap();
    assert_eq!(map.role.family, Family::EmbeddingProjection);
    // the factorised embedding is narrower than Q/K's input: E8 lines hidden dims up by identity
    let (_, _, e8) = run(&a, &a);
    assert_eq!(e8["alignment"], "identity", "{e8}");
    assert!(canonical::is_post_norm(&a));
}

#[test]
fn distilbert_names_are_placed() {
    let (a, _, _) = family_case(ArchKind::Bert, "distilbert");
    no_inferred_roles(&a);
    let t = a
        .tensor("distilbert.transformer.layer.2.attention.q_lin.weight")
        .unwrap();
    assert_eq!((t.role.layer, t.role.family), (Some(2), Family::AttnQ));
}

#[test]
fn t5_encoder_and_decoder_stacks_stay_apart() {
    let (a, _, _) = family_case(ArchKind::Llama, "t5");
    no_inferred_roles(&a);
    let enc = a
        .tensor("encoder.block.1.layer.0.SelfAttention.q.weight")
        .unwrap();
    let dec = a
        .tensor("decoder.block.1.layer.0.SelfAttention.q.weight")
        .unwrap();
    assert_eq!((enc.role.layer, enc.role.stack), (Some(1), Stack::Encoder));
    assert_eq!(
        (dec.role.layer, dec.role.stack),
        (Some(1001), Stack::Decoder)
    );
    let (e4, _, e8) = run(&a, &a);
    // E4 aligns each stack on its own: no alignment mixes encoder and decoder layers
    for r in &e4 {
        let layers: Vec<u64> = r["layers_a"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert!(
            layers.iter().all(|l| *l < 1000) || layers.iter().all(|l| *l >= 1000),
            "{layers:?}"
        );
    }
    assert!(e4.iter().any(|r| r["layers_a"][0] == 1000));
    assert_eq!(e8["layers_matched"], 6, "{e8}");
}

#[test]
fn whisper_encoder_and_decoder_stacks() {
    let (a, _, _) = family_case(ArchKind::Llama, "whisper");
    no_inferred_roles(&a);
    let t = a
        .tensor("model.decoder.layers.0.encoder_attn.k_proj.weight")
        .unwrap();
    assert_eq!(
        (t.role.layer, t.role.family),
        (Some(1000), Family::CrossAttnK)
    );
}

/// Falcon, BLOOM and GPT-NeoX store q/k/v fused; E8 reads the Q and K rows out of them, so a
/// fused model and the separate-projection model it came from line up too.
#[test]
fn fused_qkv_families_split_their_rows() {
    let d = tempfile::tempdir().unwrap();
    let llama = make(
        d.path(),
        "llama",
        ArchKind::Llama,
        1,
        "fine_tune(rel=0.05,seed=3)",
    );
    for scheme in ["falcon", "bloom", "gpt_neox"] {
        let (a, _, _) = family_case(ArchKind::Llama, scheme);
        no_inferred_roles(&a);
        let fused: Vec<_> = a
            .tensors()
            .iter()
            .filter(|t| t.role.family == Family::AttnQkv)
            .collect();
        assert_eq!(fused.len(), 6, "{scheme}");
        assert!(fused.iter().all(|t| t.role.qkv.is_some()), "{scheme}");
        let (_, _, e8) = run(&llama, &a);
        assert_eq!(e8["status"], "ok", "{scheme}: {e8}");
        assert!(
            e8["score"].as_f64().unwrap() > 0.9,
            "{scheme} vs llama: {e8}"
        );
    }
}

#[test]
fn gemma3_names_are_placed() {
    let (a, _, _) = family_case(ArchKind::Llama, "gemma3");
    no_inferred_roles(&a);
}

/// Gemma stores norms as `w` with the gain `1 + w`, and its MLP reads
/// `pre_feedforward_layernorm` (`post_attention_layernorm` normalises the attention output).
/// A Gemma model and its gain-folded copy are the same network: in canonical form (gains
/// folded into Q and K) E8 must find them identical.
#[test]
fn gemma_gains_fold_as_one_plus_w_and_the_mlp_reads_pre_feedforward_norm() {
    let d = tempfile::tempdir().unwrap();
    let a = make(
        d.path(),
        "a",
        ArchKind::Llama,
        1,
        "rename_scheme(scheme=gemma3)",
    );
    let b = make(
        d.path(),
        "b",
        ArchKind::Llama,
        1,
        "fold_gains+rename_scheme(scheme=gemma3)",
    );
    assert_eq!(canonical::gain_offset(&a), 1.0);
    let mlp = canonical::gains(&a, Family::MlpUp);
    assert_eq!(mlp.len(), 6);
    assert!(
        mlp.values()
            .all(|t| t.name.ends_with("pre_feedforward_layernorm.weight")),
        "{mlp:?}"
    );
    let (_, _, e8) = run(&a, &b);
    assert_eq!(e8["canonical"], "norm_gains_folded", "{e8}");
    assert!(e8["score"].as_f64().unwrap() > 0.99, "{e8}");
}

/// Names no rule knows but whose words say what they are: placed, and marked inferred.
#[test]
fn fallback_places_unknown_names_and_says_so() {
    let (a, _, _) = family_case(ArchKind::Llama, "generic");
    let (placed, inferred) = weight_audit::inventory::placement(&a);
    let layered = a
        .tensors()
        .iter()
        .filter(|t| t.role.layer.is_some())
        .count();
    assert_eq!(layered, 6 * 9);
    assert!(
        inferred >= layered && placed >= inferred,
        "{placed} {inferred}"
    );
    let t = a.tensor("net.stages.2.attn.key.weight").unwrap();
    assert_eq!(
        (t.role.layer, t.role.family, t.role.inferred),
        (Some(2), Family::AttnK, true)
    );
}

/// Every tensor renamed to nonsense: nothing is placed, so nothing layered can run.
#[test]
fn nonsense_names_get_no_roles() {
    let d = tempfile::tempdir().unwrap();
    let a = make(
        d.path(),
        "a",
        ArchKind::Llama,
        1,
        "rename_scheme(scheme=nonsense)",
    );
    let b = make(
        d.path(),
        "b",
        ArchKind::Llama,
        1,
        "fine_tune(rel=0.05,seed=7)+rename_scheme(scheme=nonsense)",
    );
    assert_eq!(weight_audit::inventory::placement(&a), (0, 0));
    assert!(a.tensors().iter().all(|t| t.role.layer.is_none()));
    let (e4, e5, e8) = run(&a, &b);
    assert!(e4.is_empty() && e5.is_empty());
    assert_eq!(e8["status"], "skipped: no Q/K projections", "{e8}");
}
