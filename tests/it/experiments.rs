//! Experiments on models whose answer is known by construction.

use std::fs;
use std::path::Path;

use weight_audit::model::{Model, ModelOptions};
use weight_audit::source::local::LocalSource;

use crate::alloc_probe::peak_extra;
use crate::util::*;

pub fn open(dir: &Path) -> Model {
    Model::open(
        Box::new(LocalSource::open(dir).unwrap()),
        &ModelOptions::default(),
    )
    .unwrap()
}

/// E1 as `audit run` runs it (plan, one fetch, run) on 1 GiB projections (sparse files):
/// it reads seeded windows, so its memory is that of the windows, not of the tensors.
#[test]
fn e1_on_1gib_projections_reads_windows_in_bounded_memory() {
    let (a, b) = (tmp(), tmp());
    let (rows, cols) = (512u64 << 10, 1024u64); // 512K × 1024 BF16: 1 GiB per projection
    sparse_qk_model(a.path(), rows, cols, 1);
    sparse_qk_model(b.path(), rows, cols, 2);
    let (ma, mb) = (open(a.path()), open(b.path()));
    let subjects = weight_audit::experiments::Subjects::new(&ma, &mb, &[]);
    // One worker, this thread: every allocation is counted.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .use_current_thread()
        .build()
        .unwrap();
    let (out, peak) = peak_extra(|| {
        pool.install(|| {
            let e1 = vec![weight_audit::experiments::by_id("e1").unwrap()];
            weight_audit::experiments::run_all(&subjects, &e1).unwrap()
        })
    });
    let rows = out[0].result["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in rows {
        assert_eq!(r["status"], "compared", "{r}");
        assert!(r["fraction"].as_f64().unwrap() < 0.01, "{r}");
    }
    assert!(peak < 64 << 20, "peak extra memory {} MiB", peak >> 20);
}

use std::collections::BTreeMap;

use weight_audit::experiments::{self as ex, Subjects};

/// Runs experiments on a lab pair (by folder name) and returns their results by id.
fn run_pair(
    a: &str,
    b: &str,
    controls: &[&str],
    ids: &[&str],
) -> BTreeMap<String, serde_json::Value> {
    let (dir, _) = lab_suite();
    let ma = open(&dir.join(a));
    let mb = open(&dir.join(b));
    let mc: Vec<Model> = controls.iter().map(|c| open(&dir.join(c))).collect();
    let cref: Vec<&Model> = mc.iter().collect();
    let subjects = Subjects::new(&ma, &mb, &cref);
    let exps: Vec<_> = ids.iter().map(|id| ex::by_id(id).unwrap()).collect();
    ex::run_all(&subjects, &exps)
        .unwrap()
        .into_iter()
        .map(|o| (o.id.to_string(), o.result))
        .collect()
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Relations whose layers keep their coordinates, so same-layer alignment must show.
const ALIGNABLE: [&str; 22] = [
    "exact_copy",
    "reserialised_dtype",
    "reserialised_layout",
    "reserialised_renamed",
    "fine_tune",
    "continued_pretrain",
    "layer_insertion",
    "layer_removal",
    "layer_subset",
    "head_permutation",
    "expert_permutation",
    "vocab_shift",
    "vocab_permutation",
    "vocab_pruning",
    "vocab_extension",
    "head_truncation",
    "quantised_int8",
    "quantised_int4",
    "pruned_fine_tuned",
    "initialised_from",
    "siblings",
    "norm_folding",
];

#[test]
fn layer_alignment_separates_derived_from_independent_lab_pairs() {
    let (_, manifest) = lab_suite();
    let mut independent_p = Vec::new();
    for pair in &manifest.pairs {
        let r = run_pair(&pair.a, &pair.b, &[], &["e4"]);
        let pearson: Vec<&serde_json::Value> = r["e4"]["alignments"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["metric"] == "pearson")
            .collect();
        let ps: Vec<f64> = pearson.iter().map(|a| f(&a["p_value"])).collect();
        let label = format!("{:?}", pair.label);
        if label.contains("Derived") && ALIGNABLE.contains(&pair.relation.as_str()) {
            let best = ps.iter().copied().fold(f64::INFINITY, f64::min);
            // With k layers a permutation test cannot go below 1/k! (4 layers: 0.042).
            let floor = pearson
                .iter()
                .map(|a| f(&a["min_achievable_p"]))
                .fold(0.0, f64::max);
            assert!(
                best < 0.01f64.max(2.0 * floor),
                "{} ({}): best p {best}, all {ps:?}",
                pair.id,
                pair.relation
            );
        } else if label.contains("Independent") {
            independent_p.extend(ps);
        }
    }
    let above = independent_p.iter().filter(|p| **p > 0.05).count();
    eprintln!(
        "independent pairs: {above} of {} E4 p-values above 0.05",
        independent_p.len()
    );
    assert!(!independent_p.is_empty());
    assert!(
        above as f64 >= 0.9 * independent_p.len() as f64,
        "{above} of {} independent p-values above 0.05: {independent_p:?}",
        independent_p.len()
    );
}

#[test]
fn raw_norm_cosine_is_high_for_independent_models_while_pearson_is_unexceptional() {
    let r = run_pair("llama-a", "llama-b", &["glm-a"], &["e1", "e2"]);
    let summary = r["e1"]["summary"].as_array().unwrap();
    // Post-attention norms: input norms include layer 0, unlike every other layer by design.
    let norms = summary
        .iter()
        .find(|s| s["pair"] == "A~B" && s["family"] == "post_attention_norm")
        .unwrap();
    assert!(f(&norms["mean_cosine"]) > 0.95, "{norms}");
    assert!(f(&norms["mean_pearson"]).abs() < 0.2, "{norms}");
    let null = f(&norms["mean_shuffle_null_cosine"]);
    assert!(
        (f(&norms["mean_cosine"]) - null).abs() < 0.05,
        "the shuffle null explains the cosine: {norms}"
    );
    for s in r["e2"]["stats"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["pair"] == "A~B" && s["metric"] == "pearson")
    {
        assert!(f(&s["z_vs_off_diagonal"]).abs() < 3.0, "{s}");
        assert!(f(&s["percentile_in_within"]) < 0.5, "{s}");
    }
    // A derived pair on the same statistics stands out.
    let r = run_pair("llama-a", "llama-a.ft", &[], &["e2"]);
    let s = r["e2"]["stats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metric"] == "pearson" && s["family"] == "input_norm")
        .cloned()
        .unwrap();
    assert!(f(&s["z_vs_off_diagonal"]) > 5.0, "{s}");
}

/// Per B layer, the A layer the monotone alignment chose (from the post-attention norms).
fn monotone(a: &str, b: &str) -> Vec<Option<u64>> {
    let r = run_pair(a, b, &[], &["e4"]);
    let al = r["e4"]["alignments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["metric"] == "pearson" && x["family"] == "attn_k")
        .cloned()
        .unwrap();
    al["monotone"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64())
        .collect()
}

#[test]
fn inserted_removed_and_subset_layers_are_recovered_by_the_monotone_alignment() {
    assert_eq!(
        monotone("llama-a", "llama-a.remove"),
        vec![Some(0), Some(2), Some(3), Some(5)]
    );
    assert_eq!(
        monotone("llama-a", "llama-a.every2"),
        vec![Some(0), Some(2), Some(4)]
    );
    assert_eq!(
        monotone("llama-a", "llama-a.insert-random"),
        vec![Some(0), Some(1), None, Some(2), Some(3), Some(4), Some(5)]
    );
    // Duplicated layers (after 2 and 4): every A layer matched once, to one of its copies.
    let dus = monotone("llama-a", "llama-a.dus");
    let matched: Vec<u64> = dus.iter().flatten().copied().collect();
    assert_eq!(matched, vec![0, 1, 2, 3, 4, 5], "{dus:?}");
}

#[test]
fn compare_writes_results_and_tables() {
    let (dir, _) = lab_suite();
    let compare_into = |out: &Path| {
        let (a, b, c) = (
            dir.join("glm-a"),
            dir.join("glm-a.trunc"),
            dir.join("glm-b"),
        );
        let o = run(&[
            "compare",
            &path_str(&a),
            &path_str(&b),
            "--control",
            &path_str(&c),
            "--out",
            &path_str(out),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let out = tmp();
    compare_into(out.path());
    let results: serde_json::Value =
        serde_json::from_slice(&fs::read(out.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(results["models"][2]["label"], "C1");
    for id in ["e1", "e2", "e4", "e5", "e7"] {
        assert!(results["experiments"].get(id).is_some(), "{id}");
    }
    let prefix = results["experiments"]["e5"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["relation"] == "prefix")
        .cloned()
        .unwrap();
    assert!(
        f(&prefix["pearson"]) > 0.99 && f(&prefix["suffix_pearson"]).abs() < 0.1,
        "{prefix}"
    );
    for table in [
        "e1_layerwise",
        "e1_summary",
        "e2_baselines",
        "e2_matrices",
        "e4_alignment",
        "e5_projections",
        "e7_curves",
        "e7_pairs",
    ] {
        let csv = fs::read_to_string(out.path().join("data").join(format!("{table}.csv"))).unwrap();
        assert!(csv.lines().count() > 1, "{table}");
    }
    // Same inputs, same bytes.
    let out2 = tmp();
    compare_into(out2.path());
    assert_eq!(
        fs::read(out.path().join("results.json")).unwrap(),
        fs::read(out2.path().join("results.json")).unwrap()
    );
    let a = path_str(&dir.join("glm-a"));
    let e = stderr(&run(&[
        "compare",
        &a,
        &a,
        "--experiments",
        "e99",
        "--out",
        &path_str(out2.path()),
    ]));
    assert!(e.contains("unknown experiment"), "{e}");
}

#[test]
fn std_curves_of_unrelated_models_correlate_so_they_are_shown_beside_controls() {
    let r = run_pair("llama-a", "llama-b", &["glm-a"], &["e7"]);
    let vc = r["e7"]["versus_controls"].as_array().unwrap();
    assert!(!vc.is_empty());
    let std_pearsons: Vec<f64> = r["e7"]["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["statistic"] == "std")
        .map(|p| f(&p["pearson"]))
        .collect();
    assert!(
        std_pearsons.iter().any(|p| *p > 0.8),
        "the published trap should show: {std_pearsons:?}"
    );
    // The lab null is measured on fresh independent models, beside every value.
    let q = vc
        .iter()
        .find(|v| v["family"] == "attn_q" && v["statistic"] == "std")
        .unwrap();
    assert_eq!(q["lab_null_pearsons"].as_array().unwrap().len(), 3, "{q}");
}

#[test]
fn eval_scores_a_labelled_suite_with_auc() {
    let out = tmp();
    let mut spec = weight_audit_lab::suite::suite_spec(&Default::default());
    let keep = [
        "llama-a",
        "llama-a.ft",
        "llama-a.copy",
        "llama-b",
        "llama-a.marginal",
    ];
    spec.models.retain(|m| keep.contains(&m.name.as_str()));
    spec.pairs
        .retain(|p| keep.contains(&p.a.as_str()) && keep.contains(&p.b.as_str()));
    weight_audit_lab::generate(&spec, &out.path().join("suite")).unwrap();
    let o = run(&[
        "eval",
        "--suite",
        &path_str(&out.path().join("suite")),
        "--out",
        &path_str(&out.path().join("eval")),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let auc = fs::read_to_string(out.path().join("eval/eval_auc.csv")).unwrap();
    let row = auc
        .lines()
        .find(|l| l.starts_with("norm_pearson,"))
        .unwrap()
        .to_string();
    assert!(row.starts_with("norm_pearson,1.000000,1.000000"), "{auc}");
    let pairs = fs::read_to_string(out.path().join("eval/eval_pairs.csv")).unwrap();
    assert_eq!(pairs.lines().count(), 1 + spec.pairs.len(), "{pairs}");
    assert!(stdout(&o).contains("raw_norm_cosine"));
}

#[test]
fn the_rubric_calls_every_lab_derivative_derived_and_no_independent_pair() {
    // The lab suite as the calibration tests measure it (once per test binary).
    let (_, measured) = crate::calibration::measured("lab").unwrap();
    let rubric = weight_audit::pipeline::RubricSource::load(None).unwrap();
    let rows = weight_audit::eval::rows(measured, &rubric).unwrap();
    let wrong: Vec<String> = rows
        .iter()
        .filter(|r| r.verdict.is_derived() != r.derived)
        .map(|r| format!("{} ({}): {}", r.id, r.relation, r.verdict.label()))
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}");
    // Which signals separate: the centred and alignment-based scores, not raw cosine alone.
    let auc = weight_audit::eval::auc_table(&rows);
    let get = |name: &str| {
        auc.rows.iter().find(|r| r[0] == name).unwrap()[1]
            .parse::<f64>()
            .unwrap()
    };
    assert!(
        get("e8_cka") > 0.9 && get("e1b_embeddings_z") > 0.9,
        "{auc:?}"
    );
    // Values kept in place find the fine-tunes that share no whole block.
    assert!(
        get("e3_element_agreement") > 0.9
            && get("e3_agreement_max_z") > 0.95
            && get("e3_element_agreement") > get("e3_identical_tensors"),
        "{auc:?}"
    );
}
