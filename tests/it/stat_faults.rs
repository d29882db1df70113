//! The statistical faults of issue 16, each on lab models where the right answer is known by
//! construction: buffers are not byte evidence (E3); E8 reads the same Q/K rows in A and B,
//! refuses non-finite inputs and too few shared tokens, and scores the identity alignment.

use std::path::Path;

use serde_json::Value;
use weight_audit::arch::Family;
use weight_audit::experiments::roles::layers_of;
use weight_audit::experiments::{self, Experiment, Subjects};
use weight_audit::experiments::{e8_cka::Cka, e8_params::Params};
use weight_audit::model::Model;
use weight_audit_lab as lab;
use weight_audit_lab::spec::{ModelSpec, Spec};

use crate::experiments::open;
use crate::util::{T, derived_spec, llama_spec, safetensors_bytes};

/// One shard per model: the byte-level faults below edit the single shard file.
fn base(name: &str, seed: u64, vocab: usize) -> ModelSpec {
    ModelSpec {
        shards: Some(1),
        ..llama_spec(name, seed, vocab)
    }
}

fn from(name: &str, parent: &str, ts: &str) -> ModelSpec {
    ModelSpec {
        shards: Some(1),
        ..derived_spec(name, parent, ts)
    }
}

fn generate(dir: &Path, hidden: usize, models: Vec<ModelSpec>) {
    let spec = Spec {
        seed: 0,
        hidden,
        models,
        pairs: vec![],
    };
    lab::generate(&spec, dir).unwrap();
}

/// Runs experiments on A, B and controls; returns each one's result JSON.
fn run_with(es: Vec<Box<dyn Experiment>>, a: &Model, b: &Model, controls: &[&Model]) -> Vec<Value> {
    let subjects = Subjects::new(a, b, controls);
    let out = experiments::run_all(&subjects, &es).unwrap();
    out.into_iter().map(|o| o.result).collect()
}

fn run(id: &str, a: &Model, b: &Model) -> Value {
    run_with(vec![experiments::by_id(id).unwrap()], a, b, &[]).remove(0)
}

/// The tensors of a single-file model, as stored.
fn read_tensors(dir: &Path) -> Vec<T> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| T {
            name,
            dtype: match v.dtype() {
                safetensors::Dtype::BF16 => "BF16",
                safetensors::Dtype::F16 => "F16",
                safetensors::Dtype::F32 => "F32",
                other => panic!("unexpected dtype {other:?}"),
            },
            shape: v.shape().to_vec(),
            data: v.data().to_vec(),
        })
        .collect()
}

fn write_tensors(dir: &Path, tensors: &[T]) {
    std::fs::write(dir.join("model.safetensors"), safetensors_bytes(tensors)).unwrap();
}

/// Sets element `index` of tensor `name` to NaN.
fn poke_nan(dir: &Path, name: &str, index: usize) {
    let mut ts = read_tensors(dir);
    let t = ts.iter_mut().find(|t| t.name == name).unwrap();
    match t.dtype {
        "BF16" => t.data[index * 2..index * 2 + 2].copy_from_slice(&[0xc0, 0x7f]),
        "F32" => t.data[index * 4..index * 4 + 4].copy_from_slice(&f32::NAN.to_le_bytes()),
        other => panic!("{other}"),
    }
    write_tensors(dir, &ts);
}

/// Adds the rotary buffer every Llama layer of a transformers checkpoint may carry: a function
/// of the config alone (base 10000, head dim 128), byte-identical in unrelated models.
fn add_rotary_buffers(dir: &Path, layers: usize) {
    let mut ts = read_tensors(dir);
    let inv_freq: Vec<u8> = (0..64)
        .map(|i| 1.0f32 / 10000f32.powf(2.0 * i as f32 / 128.0))
        .flat_map(|v| v.to_le_bytes())
        .collect();
    for l in 0..layers {
        ts.push(T {
            name: format!("model.layers.{l}.self_attn.rotary_emb.inv_freq"),
            dtype: "F32",
            shape: vec![64],
            data: inv_freq.clone(),
        });
    }
    write_tensors(dir, &ts);
}

fn pair0(r: &Value) -> &Value {
    &r["pairs"][0]
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v:#}"))
}

#[test]
fn e3_does_not_count_shared_buffers_as_identical_tensors() {
    let d = tempfile::tempdir().unwrap();
    generate(d.path(), 128, vec![base("a", 1, 1024), base("b", 2, 1024)]);
    for m in ["a", "b"] {
        add_rotary_buffers(&d.path().join(m), 4);
    }
    let (a, b) = (open(&d.path().join("a")), open(&d.path().join("b")));
    let r = run("e3", &a, &b);
    let p = pair0(&r);
    assert_eq!(p["identical_tensors"], 0, "{p:#}");
    assert_eq!(p["blocks_found_in_b"], 0, "{p:#}");
    assert_eq!(p["cast_identical_tensors"], 0, "{p:#}");
    // reported beside the evidence, never as it
    assert!(p["buffers_identical"].as_u64().unwrap() >= 4, "{p:#}");
    assert!(
        p["buffers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["tensor_a"] == "model.layers.0.self_attn.rotary_emb.inv_freq"),
        "{p:#}"
    );
}

#[test]
fn e3_still_finds_a_copy_that_carries_buffers() {
    let d = tempfile::tempdir().unwrap();
    generate(
        d.path(),
        128,
        vec![base("a", 1, 1024), from("a.copy", "a", "copy")],
    );
    for m in ["a", "a.copy"] {
        add_rotary_buffers(&d.path().join(m), 4);
    }
    let (a, b) = (open(&d.path().join("a")), open(&d.path().join("a.copy")));
    let p = run("e3", &a, &b)["pairs"][0].clone();
    assert!(p["identical_tensors"].as_u64().unwrap() > 20, "{p:#}");
    let listed: Vec<&Value> = p["matches"].as_array().unwrap().iter().collect();
    assert!(
        listed
            .iter()
            .all(|m| !m["tensor_a"].as_str().unwrap().ends_with("inv_freq")),
        "{p:#}"
    );
}

#[test]
fn e8_reads_the_same_rows_of_a_and_b_under_a_byte_budget() {
    let d = tempfile::tempdir().unwrap();
    generate(
        d.path(),
        128,
        vec![
            base("a", 1, 1024),
            from("a.f32", "a", "cast(dtype=F32)"),
            base("c", 3, 1024),
        ],
    );
    let (a, b, c) = (
        open(&d.path().join("a")),
        open(&d.path().join("a.f32")),
        open(&d.path().join("c")),
    );
    let qk_bytes: u64 = [Family::AttnQ, Family::AttnK]
        .iter()
        .flat_map(|f| layers_of(&a, *f))
        .map(|(_, t)| t.bytes())
        .sum();
    let e = Cka::new(Params {
        max_qk_bytes: qk_bytes / 2,
        row_block: 8,
        ..Default::default()
    });
    assert!((e.row_fraction_for(&a) - 0.5).abs() < 1e-9);
    assert!((e.row_fraction_for(&b) - 0.25).abs() < 1e-9);
    let r = run_with(vec![Box::new(e)], &a, &b, &[&c]).remove(0);
    let p = pair0(&r);
    assert_eq!(p["status"], "ok", "{p:#}");
    assert!(num(p, "score") > 0.99, "{p:#}");
    assert_eq!(p["qk_row_fraction"][0], 0.25, "{p:#}");
    assert_eq!(p["qk_row_fraction"][1], 0.25, "{p:#}");
    for q in r["pairs"].as_array().unwrap() {
        assert_eq!(q["status"], "ok", "{q:#}");
    }
}

#[test]
fn e8_refuses_non_finite_projections() {
    let d = tempfile::tempdir().unwrap();
    generate(
        d.path(),
        128,
        vec![
            base("a", 1, 1024),
            from("a.ft", "a", "fine_tune(rel=0.01,seed=1)"),
        ],
    );
    let name = "model.layers.1.self_attn.q_proj.weight";
    poke_nan(&d.path().join("a.ft"), name, 5);
    let (a, b) = (open(&d.path().join("a")), open(&d.path().join("a.ft")));
    let r = run("e8", &a, &b);
    let p = pair0(&r);
    assert_eq!(
        p["status"],
        format!("skipped: non-finite values in {name}"),
        "{p:#}"
    );
}

#[test]
fn the_alignment_needs_enough_shared_tokens() {
    let d = tempfile::tempdir().unwrap();
    generate(
        d.path(),
        256,
        vec![
            base("a", 1, 300),
            from("a.slice", "a", "slice_hidden(fraction=0.25)"),
            from("a.ft", "a", "fine_tune(rel=0.01,seed=1)"),
        ],
    );
    let (a, sliced, ft) = (
        open(&d.path().join("a")),
        open(&d.path().join("a.slice")),
        open(&d.path().join("a.ft")),
    );
    let r = run("e8", &a, &sliced);
    let p = pair0(&r);
    let status = p["status"].as_str().unwrap();
    assert!(status.starts_with("skipped: only 29"), "{p:#}");
    assert!(status.contains("shared tokens"), "{p:#}");
    let r = run("e8", &a, &ft);
    let p = pair0(&r);
    assert_eq!(p["status"], "ok", "{p:#}");
    assert_eq!(p["alignment"], "identity", "{p:#}");
    assert!(num(p, "score") > 0.9, "{p:#}");
    let r = run("e1b", &a, &ft);
    let p = pair0(&r);
    assert!(p["aligned"].is_null(), "{p:#}");
    assert!(p["procrustes"].is_null(), "{p:#}");
    assert!(
        p["alignment_status"]
            .as_str()
            .unwrap()
            .starts_with("skipped: only 29"),
        "{p:#}"
    );
    assert!(num(&p["direct"], "z") > 10.0, "{p:#}");
}

#[test]
fn e8_scores_the_identity_when_embeddings_were_retrained() {
    let d = tempfile::tempdir().unwrap();
    generate(
        d.path(),
        128,
        vec![
            base("a", 1, 1024),
            base("b", 2, 1024),
            from("a.reemb", "a", "graft(from=b,pattern=embed_tokens)"),
        ],
    );
    let (a, b, reemb) = (
        open(&d.path().join("a")),
        open(&d.path().join("b")),
        open(&d.path().join("a.reemb")),
    );
    let r = run("e8", &a, &reemb);
    let p = pair0(&r);
    assert_eq!(p["status"], "ok", "{p:#}");
    assert!(num(p, "score_assigned") > 0.9, "{p:#}");
    assert_eq!(p["alignment"], "identity", "{p:#}");
    assert!(num(p, "score_identity") > 0.9, "{p:#}");
    assert!(num(p, "held_out_fit_identity").abs() < 0.2, "{p:#}");
    // an unrelated model scores near 0 under the identity too
    let r = run("e8", &a, &b);
    let p = pair0(&r);
    assert!(num(p, "score_assigned") < 0.1, "{p:#}");
    assert!(num(p, "score_identity") < 0.1, "{p:#}");
}

#[test]
fn fp8_block_scales_are_applied_to_decoded_reads() {
    let d = tempfile::tempdir().unwrap();
    let n = 256;
    let w = T {
        name: "model.layers.0.mlp.down_proj.weight".into(),
        dtype: "F8_E4M3",
        shape: vec![n, n],
        data: vec![0x38; n * n],
    };
    let scale: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let s = T {
        name: "model.layers.0.mlp.down_proj.weight_scale_inv".into(),
        dtype: "F32",
        shape: vec![2, 2],
        data: scale,
    };
    crate::util::write_model(d.path(), vec![w, s], 1, serde_json::json!({}));
    let m = open(d.path());
    let name = "model.layers.0.mlp.down_proj.weight";
    // row 0: columns 126..130 cross from block (0,0) to (0,1); row 200 is block row 1
    assert_eq!(m.read_f32(name, 126, 4).unwrap(), vec![1.0, 1.0, 2.0, 2.0]);
    assert_eq!(
        m.read_f32(name, 200 * 256 + 127, 2).unwrap(),
        vec![3.0, 4.0]
    );
    let subjects = Subjects::new(&m, &m, &[]);
    let sample = experiments::Sample {
        tensor: name.into(),
        windows: vec![(126, 4), (200 * 256 + 127, 2)],
    };
    let mut plan = experiments::Plan::default();
    plan.add(0, sample.clone());
    plan.add_raw(0, sample.clone());
    let data = experiments::fetch(&subjects, &plan).unwrap();
    assert_eq!(
        data.get(0, &sample).unwrap(),
        &[1.0, 1.0, 2.0, 2.0, 3.0, 4.0]
    );
    assert_eq!(data.raw(0, &sample).unwrap(), &[0x38; 6]);
}
