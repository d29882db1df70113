//! Shared helpers: tiny safetensors models written with the `safetensors` crate (an
//! implementation independent of ours) and a runner for the `audit` binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A tensor to write: name, dtype spelling, shape, and raw little-endian bytes.
pub struct T {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// A deterministic BF16 tensor whose bytes depend on the name.
pub fn bf16(name: &str, shape: &[usize]) -> T {
    let n: usize = shape.iter().product();
    let seed = name
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let data = (0..n)
        .flat_map(|i| {
            let v = ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 2000) as f32 / 1000.0
                - 1.0;
            half::bf16::from_f32(v).to_le_bytes()
        })
        .collect();
    T {
        name: name.into(),
        dtype: "BF16",
        shape: shape.to_vec(),
        data,
    }
}

pub fn f32s(name: &str, values: &[f32]) -> T {
    T {
        name: name.into(),
        dtype: "F32",
        shape: vec![values.len()],
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn st_dtype(name: &str) -> safetensors::Dtype {
    serde_json::from_str(&format!("\"{name}\"")).unwrap()
}

/// Serializes tensors into one safetensors file image.
pub fn safetensors_bytes(tensors: &[T]) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                safetensors::tensor::TensorView::new(st_dtype(t.dtype), t.shape.clone(), &t.data)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// Writes a model folder: `shards` safetensors files (tensors dealt round-robin by sorted
/// name), an index when sharded, and the given config.json.
pub fn write_model(dir: &Path, tensors: Vec<T>, shards: usize, config: serde_json::Value) {
    std::fs::create_dir_all(dir).unwrap();
    let mut groups: Vec<Vec<T>> = (0..shards).map(|_| Vec::new()).collect();
    let mut tensors = tensors;
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    for (i, t) in tensors.into_iter().enumerate() {
        groups[i % shards].push(t);
    }
    let mut weight_map = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        let file = if shards == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{shards:05}.safetensors", i + 1)
        };
        for t in g {
            weight_map.insert(t.name.clone(), file.clone());
        }
        std::fs::write(dir.join(&file), safetensors_bytes(g)).unwrap();
    }
    if shards > 1 {
        let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            serde_json::to_vec_pretty(&index).unwrap(),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
}

/// A small GLM-style decoder: 3 layers + an MTP layer, norms, attention with biases,
/// a dense layer 0 and MoE layers with a router and two experts.
pub fn tiny_glm(dir: &Path, shards: usize) {
    glm_like(dir, shards, 100);
}

/// [`tiny_glm`] with a vocabulary of `vocab` rows (20 000 rows make multi-MB shards).
pub fn glm_like(dir: &Path, shards: usize, vocab: usize) {
    let h = 64;
    let mut t = vec![
        bf16("model.embed_tokens.weight", &[vocab, h]),
        bf16("lm_head.weight", &[vocab, h]),
    ];
    t.push(bf16("model.norm.weight", &[h]));
    for l in 0..4 {
        let p = format!("model.layers.{l}");
        t.push(bf16(&format!("{p}.input_layernorm.weight"), &[h]));
        t.push(bf16(&format!("{p}.post_attention_layernorm.weight"), &[h]));
        for (proj, rows) in [("q_proj", 128), ("k_proj", 32), ("v_proj", 32)] {
            t.push(bf16(&format!("{p}.self_attn.{proj}.weight"), &[rows, h]));
            t.push(bf16(&format!("{p}.self_attn.{proj}.bias"), &[rows]));
        }
        t.push(bf16(&format!("{p}.self_attn.o_proj.weight"), &[h, 128]));
        if l == 0 {
            for proj in ["gate_proj", "up_proj"] {
                t.push(bf16(&format!("{p}.mlp.{proj}.weight"), &[96, h]));
            }
            t.push(bf16(&format!("{p}.mlp.down_proj.weight"), &[h, 96]));
        } else {
            t.push(bf16(&format!("{p}.mlp.gate.weight"), &[2, h]));
            t.push(f32s(
                &format!("{p}.mlp.gate.e_score_correction_bias"),
                &[0.5, -0.5],
            ));
            for e in 0..2 {
                t.push(bf16(
                    &format!("{p}.mlp.experts.{e}.gate_proj.weight"),
                    &[16, h],
                ));
                t.push(bf16(
                    &format!("{p}.mlp.experts.{e}.down_proj.weight"),
                    &[h, 16],
                ));
            }
        }
    }
    t.push(bf16("model.layers.3.eh_proj.weight", &[h, 2 * h]));
    let config = serde_json::json!({
        "model_type": "glm4_moe", "hidden_size": h, "num_hidden_layers": 3,
        "num_nextn_predict_layers": 1, "vocab_size": vocab
    });
    write_model(dir, t, shards, config);
    std::fs::write(
        dir.join("tokenizer_config.json"),
        br#"{"model_max_length": 128}"#,
    )
    .unwrap();
}

pub fn audit() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_audit"));
    // Tests never read the developer's caches or tokens.
    c.env_remove("HF_TOKEN")
        .env_remove("HF_ENDPOINT")
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_HOME", "/nonexistent/hf-home")
        .env("XDG_CACHE_HOME", "/nonexistent/xdg-cache");
    c
}

pub fn run(args: &[&str]) -> Output {
    audit().args(args).output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[allow(dead_code)]
pub fn join(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// The lab's evaluation suite at a width, generated once per test run and shared by every
/// test. It lives under cargo's target tmp folder and is rewritten on each run, so runs
/// neither accumulate copies nor reuse a stale one.
pub fn lab_suite_at(hidden: usize) -> &'static (PathBuf, weight_audit_lab::SuiteManifest) {
    type Suite = (PathBuf, weight_audit_lab::SuiteManifest);
    static NARROW: std::sync::OnceLock<Suite> = std::sync::OnceLock::new();
    static DEFAULT: std::sync::OnceLock<Suite> = std::sync::OnceLock::new();
    let cell = match hidden {
        128 => &NARROW,
        256 => &DEFAULT,
        other => panic!("no shared lab suite at width {other}"),
    };
    cell.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lab-suite-{hidden}"));
        let _ = std::fs::remove_dir_all(&dir);
        let opts = weight_audit_lab::SuiteOptions {
            hidden,
            ..Default::default()
        };
        let manifest = weight_audit_lab::generate_suite(&dir, &opts).unwrap();
        (dir, manifest)
    })
}

/// The lab's default evaluation suite (width 256).
pub fn lab_suite() -> &'static (PathBuf, weight_audit_lab::SuiteManifest) {
    lab_suite_at(256)
}

/// A lab Llama of 4 layers, intermediate 256, with `vocab` tokens.
pub fn llama_spec(name: &str, seed: u64, vocab: usize) -> weight_audit_lab::spec::ModelSpec {
    weight_audit_lab::spec::ModelSpec {
        name: name.into(),
        arch: Some(weight_audit_lab::ArchKind::Llama),
        seed: Some(seed),
        layers: Some(4),
        vocab: Some(vocab),
        intermediate: Some(256),
        ..Default::default()
    }
}

/// A lab model made from `parent` by the transforms `ts` (the lab's text syntax).
pub fn derived_spec(name: &str, parent: &str, ts: &str) -> weight_audit_lab::spec::ModelSpec {
    weight_audit_lab::spec::ModelSpec {
        name: name.into(),
        from: Some(parent.into()),
        transforms: weight_audit_lab::transform::parse_transforms(ts).unwrap(),
        ..Default::default()
    }
}

#[allow(dead_code)]
/// A one-layer Llama-style model whose Q and K projections are `rows × cols` BF16 tensors
/// in a sparse file, with a pattern written at a few places so the values are not all zero.
pub fn sparse_qk_model(dir: &Path, rows: u64, cols: u64, seed: u32) {
    use std::io::{Seek, SeekFrom, Write};
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        format!(r#"{{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":{cols},"num_hidden_layers":1,"num_attention_heads":16,"num_key_value_heads":16}}"#),
    )
    .unwrap();
    let bytes = rows * cols * 2;
    let json = format!(
        r#"{{"model.layers.0.self_attn.k_proj.weight":{{"dtype":"BF16","shape":[{rows},{cols}],"data_offsets":[0,{bytes}]}},"model.layers.0.self_attn.q_proj.weight":{{"dtype":"BF16","shape":[{rows},{cols}],"data_offsets":[{bytes},{}]}}}}"#,
        2 * bytes
    );
    let mut f = std::fs::File::create(dir.join("model.safetensors")).unwrap();
    f.write_all(&(json.len() as u64).to_le_bytes()).unwrap();
    f.write_all(json.as_bytes()).unwrap();
    let start = 8 + json.len() as u64;
    f.set_len(start + 2 * bytes).unwrap();
    let pattern: Vec<u8> = (0..1u32 << 16)
        .flat_map(|i| half::bf16::from_f32(((i * 31 + seed) % 97) as f32 - 48.0).to_le_bytes())
        .collect();
    for k in 0..64u64 {
        f.seek(SeekFrom::Start(start + k * (2 * bytes / 64)))
            .unwrap();
        f.write_all(&pattern).unwrap();
    }
}

/// Whether `python3` can import `modules` (comma-separated, e.g. `"gguf, numpy"`), for the
/// tests that check against an independent Python reader. Outside CI a missing interpreter or
/// package skips the test (said on stderr); with LAB_REQUIRE_PYTHON=1 (CI) it is a failure.
pub fn python_with(modules: &str, test: &str) -> bool {
    let have = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !have {
        assert!(
            std::env::var("LAB_REQUIRE_PYTHON").ok().as_deref() != Some("1"),
            "python3 with {modules} is required"
        );
        eprintln!("skipped {test}: python3 with {modules} not found");
    }
    have
}

/// The default audit's decision on A~B, with the built-in rubric and calibration.
pub fn verdict(
    a: &weight_audit::model::Model,
    b: &weight_audit::model::Model,
) -> weight_audit::verdict::Decision {
    let ids = weight_audit::experiments::registry::default_ids();
    let refs = vec!["A".to_string(), "B".to_string()];
    let rubric = weight_audit::pipeline::RubricSource::load(None).unwrap();
    weight_audit::pipeline::compare_models(a, b, &[], &refs, &ids, &rubric)
        .unwrap()
        .0
        .decision
}

/// E3q's row for the A~B pair, as result JSON.
pub fn e3q(a: &weight_audit::model::Model, b: &weight_audit::model::Model) -> serde_json::Value {
    let subjects = weight_audit::experiments::Subjects::new(a, b, &[]);
    let e = weight_audit::experiments::by_id("e3q").unwrap();
    let out = weight_audit::experiments::run_all(&subjects, &[e]).unwrap();
    out[0].result["pairs"][0].clone()
}
