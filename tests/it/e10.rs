//! E10 MLP unit matching on lab models whose relation is known by construction: derived pairs
//! (fine-tune, continued pre-training, a permutation of the MLP units) get tiny p-values,
//! independent pairs roughly uniform ones, and the limits (rotated residual stream, unequal
//! widths, gated against plain MLPs) show as such.

use std::path::{Path, PathBuf};

use serde_json::Value;
use weight_audit::experiments::{self, Experiment, Subjects};
use weight_audit_lab as lab;

use crate::experiments::open;

const INDEPENDENT: u64 = 10;

/// Small lab models (width 128, 3 layers, 448 MLP units for Llama, 512 for BERT), generated
/// once per test binary.
fn suite() -> &'static PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e10-lab");
        let _ = std::fs::remove_dir_all(&dir);
        let small = "layers = 3\nvocab = 640";
        let mut spec = format!(
            r#"
seed = 0
hidden = 128
[[model]]
name = "llama"
arch = "llama"
seed = 1
{small}
[[model]]
name = "llama.ft"
from = "llama"
transforms = [{{ op = "fine_tune", rel = 0.02, seed = 1 }}]
[[model]]
name = "llama.cpt"
from = "llama"
transforms = [{{ op = "continued_pretrain", seed = 2 }}]
[[model]]
name = "llama.rot"
from = "llama"
transforms = [{{ op = "rotate_hidden", seed = 3 }}]
[[model]]
name = "llama.wide"
arch = "llama"
seed = 50
intermediate = 512
{small}
[[model]]
name = "bert"
arch = "bert"
seed = 7
{small}
[[model]]
name = "bert.ft"
from = "bert"
transforms = [{{ op = "fine_tune", rel = 0.02, seed = 4 }}]
[[model]]
name = "bert.i"
arch = "bert"
seed = 8
{small}
"#
        );
        for k in 1..=INDEPENDENT {
            spec.push_str(&format!(
                "[[model]]\nname = \"llama.i{k}\"\narch = \"llama\"\nseed = {}\n{small}\n",
                100 + k
            ));
        }
        let spec = lab::spec::parse_spec(&spec).unwrap();
        lab::generate(&spec, &dir).unwrap();
        permute_mlp_units(&dir.join("llama.ft"), &dir.join("llama.ft.units"), 11);
        dir
    })
}

/// Writes `src` with the hidden units of every dense MLP permuted (gate and up rows, down
/// columns, by one seeded permutation per layer): the network function is unchanged.
fn permute_mlp_units(src: &Path, dst: &Path, seed: u64) {
    let mut m = lab::read_model(src).unwrap();
    let mut rng = fastrand::Rng::with_seed(seed);
    let layers = m.cfg_usize("num_hidden_layers").unwrap();
    for l in 0..layers {
        let p = format!("model.layers.{l}.mlp");
        let (units, hidden) = m.get(&format!("{p}.up_proj.weight")).unwrap().dims2();
        let mut perm: Vec<usize> = (0..units).collect();
        rng.shuffle(&mut perm);
        for proj in ["gate_proj", "up_proj"] {
            let name = format!("{p}.{proj}.weight");
            let v = m.get_mut(&name).unwrap().values_mut(&name).unwrap();
            let old = v.clone();
            for (k, &src) in perm.iter().enumerate() {
                v[k * hidden..(k + 1) * hidden]
                    .copy_from_slice(&old[src * hidden..(src + 1) * hidden]);
            }
        }
        let name = format!("{p}.down_proj.weight");
        let v = m.get_mut(&name).unwrap().values_mut(&name).unwrap();
        let old = v.clone();
        for r in 0..hidden {
            for (k, &src) in perm.iter().enumerate() {
                v[r * units + k] = old[r * units + src];
            }
        }
    }
    lab::write_model(&m, dst).unwrap();
}

/// E10's result on `a` against `b` (then the controls), with optional parameters.
fn run(a: &str, b: &str, controls: &[&str], params: Option<toml::Table>) -> Value {
    let dir = suite();
    let (ma, mb) = (open(&dir.join(a)), open(&dir.join(b)));
    let cs: Vec<_> = controls.iter().map(|c| open(&dir.join(c))).collect();
    let refs: Vec<_> = cs.iter().collect();
    let subjects = Subjects::new(&ma, &mb, &refs);
    let (e, _) = experiments::configured("e10", params.as_ref()).unwrap();
    let e: Vec<Box<dyn Experiment>> = vec![e];
    let out = experiments::run_all(&subjects, &e).unwrap();
    assert_eq!(out[0].tables.len(), 2);
    out[0].result.clone()
}

fn primary(a: &str, b: &str) -> Value {
    run(a, b, &[], None)["pairs"][0].clone()
}

fn p(pair: &Value) -> f64 {
    pair["p_value"]
        .as_f64()
        .unwrap_or_else(|| panic!("no p-value: {pair}"))
}

#[test]
fn derived_pairs_get_tiny_p_values() {
    for b in ["llama.ft", "llama.cpt"] {
        let r = primary("llama", b);
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["mlp_kind"], "gated");
        assert_eq!(r["layers_tested"], 3);
        assert_eq!(r["units"], 448);
        assert_eq!(r["column_fraction"], 1.0);
        assert_eq!(r["spearman_tail"], "normal");
        assert!(p(&r) < 1e-9, "llama~{b}: {r}");
        assert!(r["log10_p"].as_f64().unwrap() < -9.0);
        assert!(r["mean_agreement"].as_f64().unwrap() > 0.5, "{r}");
        // units in place: the in-place statistic sees it too
        assert!(r["in_place_log10_p"].as_f64().unwrap() < -9.0, "{r}");
    }
}

#[test]
fn a_permutation_of_the_mlp_units_does_not_hide_a_fine_tune() {
    let r = primary("llama", "llama.ft.units");
    assert_eq!(r["status"], "ok", "{r}");
    assert!(p(&r) < 1e-9, "{r}");
    assert!(r["mean_agreement"].as_f64().unwrap() > 0.9, "{r}");
    // the exact in-place statistic (Zhu et al.'s csu) is evaded by the same permutation
    let in_place = r["in_place_log10_p"].as_f64().unwrap();
    assert!(in_place > -3.0, "in-place log10 p {in_place}");
}

#[test]
fn independent_pairs_get_roughly_uniform_p_values() {
    let mut pairs = Vec::new();
    let mut layer_ps = Vec::new();
    for k in 1..=INDEPENDENT {
        let r = run("llama", &format!("llama.i{k}"), &[], None);
        let pair = r["pairs"][0].clone();
        assert_eq!(pair["status"], "ok", "{pair}");
        pairs.push(p(&pair));
        for l in r["layers"].as_array().unwrap() {
            layer_ps.push(l["p_value"].as_f64().unwrap());
        }
    }
    assert!(pairs.iter().all(|&x| x > 1e-3), "{pairs:?}");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    // uniform: mean ½ with sd 0.09 over 10 pairs, 0.053 over 30 layers
    assert!((0.2..0.8).contains(&mean(&pairs)), "{pairs:?}");
    assert_eq!(layer_ps.len(), 30);
    assert!((0.3..0.7).contains(&mean(&layer_ps)), "{layer_ps:?}");
    let below_tenth = layer_ps.iter().filter(|&&x| x < 0.1).count();
    assert!(
        below_tenth <= 8,
        "{below_tenth} of 30 layer p-values below 0.1: {layer_ps:?}"
    );
}

#[test]
fn plain_bert_mlps_match_up_rows_against_down_columns() {
    let derived = primary("bert", "bert.ft");
    assert_eq!(derived["status"], "ok", "{derived}");
    assert_eq!(derived["mlp_kind"], "plain");
    assert_eq!(derived["units"], 512);
    assert!(p(&derived) < 1e-9, "{derived}");
    let independent = primary("bert", "bert.i");
    assert!(p(&independent) > 1e-3, "{independent}");
}

#[test]
fn unequal_widths_and_mlp_kinds_are_skipped_with_the_reason() {
    let r = primary("llama", "llama.wide");
    let status = r["status"].as_str().unwrap();
    assert!(status.starts_with("skipped: MLP widths differ"), "{status}");
    assert!(status.contains("448") && status.contains("512"), "{status}");
    assert!(r["p_value"].is_null());
    let r = primary("llama", "bert");
    let status = r["status"].as_str().unwrap();
    assert!(status.starts_with("skipped: MLP kinds differ"), "{status}");
}

#[test]
fn a_rotated_residual_stream_is_not_detected() {
    // The limit, by construction: rotate_hidden keeps the function but mixes the coordinates
    // the row cosines compare, so the matchings are unrelated (E8's Procrustes alignment is
    // the experiment for it).
    let r = primary("llama", "llama.rot");
    assert_eq!(r["status"], "ok", "{r}");
    assert!(p(&r) > 1e-3, "{r}");
    assert!(r["mean_agreement"].as_f64().unwrap() < 0.05, "{r}");
}

#[test]
fn controls_are_tested_beside_the_audited_pair() {
    let r = run("llama", "llama.ft", &["llama.i1"], None);
    let pairs = r["pairs"].as_array().unwrap();
    let labels: Vec<&str> = pairs.iter().map(|x| x["pair"].as_str().unwrap()).collect();
    assert_eq!(labels, ["A~B", "A~C1", "B~C1"]);
    assert_eq!(pairs[0]["primary"], true);
    assert!(p(&pairs[0]) < 1e-9);
    assert!(p(&pairs[1]) > 1e-3 && p(&pairs[2]) > 1e-3, "{pairs:?}");
    assert_eq!(r["layers"].as_array().unwrap().len(), 9);
}

#[test]
fn a_byte_budget_reads_the_same_hidden_coordinates_of_every_unit() {
    // 448 units × 128 hidden × 2 matrices × 3 layers in BF16 is 688 KiB; a 200 KiB budget reads
    // about 30 % of the coordinates (in blocks of 16).
    let mut t = toml::Table::new();
    t.insert("max_mlp_bytes".into(), toml::Value::Integer(200 << 10));
    t.insert("column_block".into(), toml::Value::Integer(16));
    let derived = run("llama", "llama.ft.units", &["llama.i2"], Some(t));
    let pairs = derived["pairs"].as_array().unwrap();
    let f = pairs[0]["column_fraction"].as_f64().unwrap();
    assert!(f > 0.2 && f < 0.4, "{f}");
    assert!(p(&pairs[0]) < 1e-9, "{}", pairs[0]);
    assert!(p(&pairs[1]) > 1e-3, "{}", pairs[1]);
}
