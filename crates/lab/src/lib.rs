//! The model lab: deterministic synthetic model families whose provenance is known by construction.
//!
//! - [`arch`]: real tensor names/shapes/configs of `glm4_moe`, `solar_open`, `phimoe`, `llama`, `bert`.
//! - [`weights`]: trained-looking weights (shared marginals, private coordinates), from a
//!   [`recipe`] (architecture, seeds, norm mean, shards).
//! - [`tokenizer`]: byte-level BPE `tokenizer.json`.
//! - [`transform`](mod@transform): composable transforms (copy, re-serialisation, fine-tune, layer/hidden/head/expert
//!   permutations, vocabulary re-indexing, head truncation, norm folding, quantisation, independent, graft).
//! - [`scheme`]: other families' tensor names and layouts (ALBERT, DistilBERT, T5, Whisper,
//!   Falcon, BLOOM, GPT-NeoX, Gemma 3, generic and nonsense names), as the `rename_scheme` transform.
//! - [`obfuscate`]: gain folding, residual rotation and SliceGPT slicing (obfuscation by reparameterisation).
//! - [`spec`] / [`suite`]: TOML specs of families and the built-in labelled evaluation suite
//!   (itself a TOML spec, `suite.toml`) and the adversarial suite;
//!   [`quant_suite`]: GGUF releases of lab models, paired with their parents and other seeds.
//! - [`replica`](mod@replica): GLM-4.5-Air / Solar-Open-100B replicas, scaled or full-size sparse.
//! - [`forward`]: f64 reference forward pass used to check function-preserving transforms.
//! - [`model`]: reading/writing Hub-style folders; [`dtype`]: stored element types;
//!   [`dims`]: a model's geometry from its `config.json`; [`rng`]: value-stable seeded streams.
//! - [`gguf`](mod@gguf): writing a model as llama.cpp's GGUF (names, Q/K order, vocabulary, F16,
//!   Q8_0, Q4_0, Q5_0, Q4_K, Q6_K), as `convert_hf_to_gguf.py` and `llama-quantize` would;
//!   [`gguf_kquant`]: the K-quant reference quantisers, ported from ggml's C;
//!   [`gguf_sparse`]: a full-size dense model as a sparse multi-GB GGUF (range-read checks).
//! - [`onnx`](mod@onnx): writing a Llama or BERT model as ONNX, as `torch.onnx.export` would
//!   (anonymous transposed `onnx::MatMul_<n>` weights, scope-named nodes), and its int8 release
//!   as onnxruntime's `quantize_dynamic` would ([`onnx_quant`]); [`onnx_proto`]: the messages.
//!
//! Same spec and seed give byte-identical folders (whatever the thread count).
//!
//! The files import each other without cycles: shared vocabulary sits low ([`dtype`], [`rng`],
//! [`arch`], [`recipe`], [`model`], [`dims`]), generators and transforms above it, suites on top.
//!
//! The lab is an **independent oracle**: it depends on nothing of `weight-audit`. Its dtype
//! table ([`dtype::DType`]), tensor roles ([`arch::classify`]), byte-level alphabet
//! ([`tokenizer::byte_alphabet`]) and safetensors writer are its own, so a model the lab
//! writes checks the tool's reader rather than agreeing with it by construction. The tool's
//! tests compare the two where they overlap (`tests/it/lab.rs`).
//!
//! Command line (`audit lab …`, in the `audit` binary):
//!
//! ```text
//! audit lab suite --out DIR [--hidden 256] [--seed 0]     # built-in labelled suite + suite.json + spec.toml
//! audit lab generate --spec FILE.toml --out DIR           # models and pairs of a spec (see [`spec`])
//! audit lab model --arch glm4_moe --out DIR [--hidden N] [--seed S]
//! audit lab replica --out DIR [--full-size --sparse]      # glm-4.5-air/, solar-open-100b/, phi-3.5-moe/
//! audit lab transform IN --with 'fine_tune(rel=0.02,seed=1)+permute_hidden(seed=3,sign_flips=true)' --out OUT
//! audit lab gguf IN --type Q4_0 --out OUT.gguf             # llama.cpp's GGUF of a lab model
//! audit lab onnx IN --type int8 --out OUT/model.onnx      # torch.onnx / onnxruntime int8 export
//! ```
//!
//! Suite layout: `DIR/<model>/` (Hub-style shards + index, `config.json`, `tokenizer.json`, …),
//! `DIR/suite.json` ([`SuiteManifest`]: models with recipes/transforms, pairs with
//! `label` DERIVED | INDEPENDENT and a `relation`), `DIR/spec.toml` (the spec that produced it).

pub mod arch;
pub mod dims;
pub mod dtype;
pub mod forward;
pub mod gguf;
pub mod gguf_kquant;
pub mod gguf_sparse;
pub mod model;
pub mod obfuscate;
pub mod onnx;
pub mod onnx_proto;
pub mod onnx_quant;
pub mod quant_suite;
pub mod recipe;
pub mod replica;
pub mod rng;
pub mod scheme;
pub mod spec;
pub mod suite;
pub mod tokenizer;
pub mod transform;
pub mod weights;

use std::path::Path;

use anyhow::Result;

pub use arch::{ArchConfig, ArchKind};
pub use model::{Model, read_model, write_model};
pub use recipe::Recipe;
pub use replica::{Fill, ReplicaModel, ReplicaOptions, SPARSE_DATA};
pub use spec::{Label, ModelSpec, PairSpec, Spec, SuiteManifest};
pub use suite::SuiteOptions;
pub use transform::{TransformSpec, parse_transforms};

/// Generate every model of a spec under `dir` (+ `suite.json`, `spec.toml`).
pub fn generate(spec: &Spec, dir: &Path) -> Result<SuiteManifest> {
    spec::generate_spec(spec, dir)
}

/// Generate one model (an `arch` model spec; `from` is not allowed here) into `dir`.
pub fn generate_model(spec: &ModelSpec, dir: &Path) -> Result<Model> {
    let mut m = weights::generate(&spec.recipe(0, 256)?)?;
    let resolve = |p: &str| read_model(Path::new(p));
    transform::apply_all(&mut m, &spec.transforms, &resolve)?;
    write_model(&m, dir)?;
    Ok(m)
}

/// Generate the built-in evaluation suite under `dir` (models, `suite.json`, `spec.toml`).
/// Also the benchmark entry point for suite generation.
pub fn generate_suite(dir: &Path, opts: &SuiteOptions) -> Result<SuiteManifest> {
    spec::generate_spec(&suite::suite_spec(opts), dir)
}

/// Generate the adversarial suite (see [`suite::adversarial_spec`]) under `dir`.
pub fn generate_adversarial_suite(dir: &Path, opts: &SuiteOptions) -> Result<SuiteManifest> {
    spec::generate_spec(&suite::adversarial_spec(opts), dir)
}

/// Generate the quantised-release suite (see [`quant_suite::quant_spec`]) under `dir`.
pub fn generate_quant_suite(dir: &Path, opts: &SuiteOptions) -> Result<SuiteManifest> {
    spec::generate_spec(&quant_suite::quant_spec(opts), dir)
}

/// Read `DIR/suite.json` written by [`generate_suite`] or [`generate`].
pub fn load_manifest(dir: &Path) -> Result<SuiteManifest> {
    let p = dir.join("suite.json");
    let b = std::fs::read(&p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    serde_json::from_slice(&b).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
}

/// Write the GLM-4.5-Air / Solar-Open-100B replicas under `dir`. Also the benchmark entry point for
/// the sparse full-size layout.
pub fn replica(dir: &Path, opts: &ReplicaOptions) -> Result<Vec<ReplicaModel>> {
    replica::replica(dir, opts)
}

/// Apply transforms to the model folder `in_dir`, writing `out_dir` (works on real checkpoints).
pub fn transform(in_dir: &Path, specs: &[TransformSpec], out_dir: &Path) -> Result<()> {
    transform::transform_dir(in_dir, specs, out_dir)
}
