//! TOML specs of model families (`audit lab generate --spec FILE`) and the manifest they produce.
//!
//! ```toml
//! seed = 7            # mixed into every model and transform seed
//! hidden = 256
//! [[model]]
//! name = "base"
//! arch = "llama"
//! [[model]]
//! name = "base.ft"
//! from = "base"
//! transforms = [{ op = "fine_tune", rel = 0.01, seed = 1 }]
//! [[pair]]
//! id = "ft"
//! a = "base"
//! b = "base.ft"
//! label = "DERIVED"
//! relation = "fine_tune"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::arch::{ArchConfig, ArchKind};
use super::model::{Model, json_bytes, write_model};
use super::recipe::Recipe;
use super::rng::Rng;
use super::transform::{TransformSpec, apply_all};
use super::weights::generate;

/// Ground-truth label of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Label {
    /// B shares weights with A by construction (derived, or a common ancestor).
    #[serde(rename = "DERIVED")]
    Derived,
    /// No shared coordinates by construction.
    #[serde(rename = "INDEPENDENT")]
    Independent,
}

/// A whole spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Base seed mixed into every model and transform seed.
    #[serde(default)]
    pub seed: u64,
    /// Default residual width.
    #[serde(default = "d_hidden")]
    pub hidden: usize,
    /// Models, in generation order.
    #[serde(default, rename = "model")]
    pub models: Vec<ModelSpec>,
    /// Labelled pairs.
    #[serde(default, rename = "pair")]
    pub pairs: Vec<PairSpec>,
}

fn d_hidden() -> usize {
    256
}

/// One model: generated from an architecture (`arch`) or derived from an earlier model (`from`),
/// then transformed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Folder name.
    pub name: String,
    /// Architecture to generate (exclusive with `from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<ArchKind>,
    /// Earlier model to start from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Weight seed (default: derived from the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Residual width override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<usize>,
    /// Layer count override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<usize>,
    /// Routed expert count override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experts: Option<usize>,
    /// Dense MLP width override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate: Option<usize>,
    /// Embedding rows override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<usize>,
    /// Shard count override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
    /// Norm-gain mean override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm_mean: Option<f64>,
    /// Tokenizer seed override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_seed: Option<u64>,
    /// Transforms applied after generation / derivation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<TransformSpec>,
    /// Written as one GGUF file (`<name>/model.gguf`) of this type (`F16`, `Q8_0`, `Q4_K`, …,
    /// see [`crate::gguf::GgufQuant`]) instead of safetensors, as llama.cpp's converter and
    /// quantiser would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gguf: Option<String>,
    /// Written as one ONNX file (`<name>/model.onnx`, with `config.json` and `tokenizer.json`)
    /// instead of safetensors: `fp32` as `torch.onnx.export` would, `int8` as onnxruntime's
    /// `quantize_dynamic` would then (see [`crate::onnx::OnnxExport`]). Not with `gguf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx: Option<String>,
}

/// One labelled pair.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairSpec {
    /// Stable id.
    pub id: String,
    /// First model (the putative base).
    pub a: String,
    /// Second model.
    pub b: String,
    /// Ground truth.
    pub label: Label,
    /// Relation, e.g. `fine_tune`, `hidden_permutation`, `independent_same_recipe`.
    pub relation: String,
    /// Free text.
    #[serde(default)]
    pub notes: String,
}

/// One model entry of the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestModel {
    /// Folder name (relative to the manifest).
    pub name: String,
    /// `model_type` of the written config.
    pub arch: String,
    /// The generating recipe of the root model (effective seeds and sizes).
    pub recipe: Option<Recipe>,
    /// Parent model, if derived.
    pub from: Option<String>,
    /// Transforms applied, with effective seeds.
    pub transforms: Vec<TransformSpec>,
    /// The GGUF type it is written as, when it is a GGUF file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gguf: Option<String>,
    /// The ONNX export it is written as (`fp32`, `int8`), when it is an ONNX file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx: Option<String>,
}

/// `suite.json`: models and labelled pairs, sorted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuiteManifest {
    /// Spec seed.
    pub seed: u64,
    /// Default hidden width.
    pub hidden: usize,
    /// Models sorted by name.
    pub models: Vec<ManifestModel>,
    /// Pairs sorted by id.
    pub pairs: Vec<PairSpec>,
}

/// Mix the spec seed into a per-item seed.
pub fn mix_seed(base: u64, item: u64) -> u64 {
    if base == 0 {
        item
    } else {
        Rng::new(base, &format!("mix/{item}")).next_u64()
    }
}

/// The transform with its `seed` (if any) mixed with the spec seed.
pub fn mixed(t: &TransformSpec, base: u64) -> Result<TransformSpec> {
    let mut v = serde_json::to_value(t)?;
    if let Some(s) = v.get("seed").and_then(serde_json::Value::as_u64) {
        v["seed"] = serde_json::json!(mix_seed(base, s));
    }
    Ok(serde_json::from_value(v)?)
}

impl ModelSpec {
    /// Recipe of a generated (`arch`) model under spec seed `base` and default width `hidden`.
    pub fn recipe(&self, base: u64, hidden: usize) -> Result<Recipe> {
        let kind = self
            .arch
            .ok_or_else(|| anyhow!("model {}: needs `arch` or `from`", self.name))?;
        let h = self.hidden.unwrap_or(hidden);
        if h < 64 || !h.is_multiple_of(64) {
            bail!("model {}: hidden {h} must be a multiple of 64", self.name);
        }
        let mut a = ArchConfig::scaled(kind, h);
        if let Some(l) = self.layers {
            a.layers = l.max(1);
            a.first_k_dense = a.first_k_dense.min(a.layers);
        }
        if let Some(e) = self.experts {
            if a.experts == 0 {
                bail!("model {}: {kind:?} has no experts", self.name);
            }
            a.experts = e.max(a.experts_per_tok);
        }
        if let Some(i) = self.intermediate {
            a.intermediate = i;
            if kind == ArchKind::Phimoe {
                a.moe_intermediate = i;
            }
        }
        if let Some(v) = self.vocab {
            a.vocab = v;
        }
        let seed = match self.seed {
            Some(s) => mix_seed(base, s),
            None => Rng::new(base, &format!("model-seed/{}", self.name)).next_u64(),
        };
        let mut r = Recipe::new(a, seed);
        if let Some(s) = self.shards {
            r.shards = s.max(1);
        }
        if let Some(m) = self.norm_mean {
            r.norm_mean = m;
        }
        if let Some(t) = self.tokenizer_seed {
            r.tokenizer_seed = t;
        }
        Ok(r)
    }
}

/// Build every model of `spec` in memory, calling `sink(name, model)` in spec order.
pub fn build(
    spec: &Spec,
    mut sink: impl FnMut(&str, &Model) -> Result<()>,
) -> Result<SuiteManifest> {
    let mut last_use: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, m) in spec.models.iter().enumerate() {
        if let Some(f) = &m.from {
            last_use.insert(f.as_str(), i);
        }
        for t in &m.transforms {
            if let TransformSpec::Graft { from, .. } = t {
                last_use.insert(from.as_str(), i);
            }
        }
    }
    for m in &spec.models {
        if let (Some(g), Some(o)) = (&m.gguf, &m.onnx) {
            bail!(
                "model {}: `gguf = {g:?}` and `onnx = {o:?}` both ask for its one file; give one",
                m.name
            );
        }
    }
    let mut built: BTreeMap<String, Model> = BTreeMap::new();
    let mut entries = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, ms) in spec.models.iter().enumerate() {
        if !names.insert(ms.name.clone()) {
            bail!("model name {} appears twice", ms.name);
        }
        if ms.name.is_empty() || ms.name.contains(['/', '\\']) || ms.name.starts_with('.') {
            bail!("model name {:?} is not a plain folder name", ms.name);
        }
        let (mut model, recipe) = match (&ms.arch, &ms.from) {
            (Some(_), None) => {
                let r = ms.recipe(spec.seed, spec.hidden)?;
                (generate(&r)?, Some(r))
            }
            (None, Some(f)) => {
                let parent = built.get(f).ok_or_else(|| {
                    anyhow!("model {}: `from = {f}` is not an earlier model", ms.name)
                })?;
                (parent.clone(), None)
            }
            _ => bail!("model {}: give exactly one of `arch` and `from`", ms.name),
        };
        if let Some(s) = ms.shards {
            model.layout.shards = s.max(1);
        }
        let ts: Vec<TransformSpec> = ms
            .transforms
            .iter()
            .map(|t| mixed(t, spec.seed))
            .collect::<Result<_>>()?;
        let resolve = |n: &str| {
            built
                .get(n)
                .cloned()
                .ok_or_else(|| anyhow!("graft: {n} is not an earlier model"))
        };
        apply_all(&mut model, &ts, &resolve).with_context(|| format!("model {}", ms.name))?;
        model.round_to_dtype();
        sink(&ms.name, &model)?;
        entries.push(ManifestModel {
            name: ms.name.clone(),
            arch: model
                .config
                .get("model_type")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string(),
            recipe,
            from: ms.from.clone(),
            transforms: ts,
            gguf: ms.gguf.clone(),
            onnx: ms.onnx.clone(),
        });
        built.retain(|k, _| last_use.get(k.as_str()).is_some_and(|l| *l > i));
        if last_use.contains_key(ms.name.as_str()) {
            built.insert(ms.name.clone(), model);
        }
    }
    for p in &spec.pairs {
        for n in [&p.a, &p.b] {
            if !names.contains(n) {
                bail!("pair {}: unknown model {n}", p.id);
            }
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut pairs = spec.pairs.clone();
    pairs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(SuiteManifest {
        seed: spec.seed,
        hidden: spec.hidden,
        models: entries,
        pairs,
    })
}

/// Generate every model of `spec` under `dir/<name>/`, plus `dir/suite.json` and `dir/spec.toml`.
pub fn generate_spec(spec: &Spec, dir: &Path) -> Result<SuiteManifest> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let gguf: BTreeMap<&str, crate::gguf::GgufQuant> = spec
        .models
        .iter()
        .filter_map(|m| Some((m.name.as_str(), m.gguf.as_deref()?)))
        .map(|(n, q)| Ok((n, crate::gguf::GgufQuant::parse(q)?)))
        .collect::<Result<_>>()?;
    let onnx: BTreeMap<&str, crate::onnx::OnnxExport> = spec
        .models
        .iter()
        .filter_map(|m| Some((m.name.as_str(), m.onnx.as_deref()?)))
        .map(|(n, e)| Ok((n, crate::onnx::OnnxExport::parse(e)?)))
        .collect::<Result<_>>()?;
    let manifest = build(spec, |name, m| match (gguf.get(name), onnx.get(name)) {
        (Some(q), _) => crate::gguf::write_gguf(m, &dir.join(name).join("model.gguf"), *q),
        (None, Some(e)) => crate::onnx::write_onnx(m, &dir.join(name).join("model.onnx"), *e),
        (None, None) => write_model(m, &dir.join(name)),
    })?;
    std::fs::write(
        dir.join("suite.json"),
        json_bytes(&serde_json::to_value(&manifest)?),
    )?;
    std::fs::write(
        dir.join("spec.toml"),
        toml::to_string(spec).context("serialising spec")?,
    )?;
    Ok(manifest)
}

/// Parse a TOML spec.
pub fn parse_spec(text: &str) -> Result<Spec> {
    toml::from_str(text).context("parsing lab spec")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_is_gguf_or_onnx_not_both() {
        let text = r#"
            [[model]]
            name = "base"
            arch = "llama"
            gguf = "Q8_0"
            onnx = "int8"
        "#;
        let spec = parse_spec(text).unwrap();
        let e = build(&spec, |_, _| Ok(())).unwrap_err().to_string();
        assert!(e.contains("gguf") && e.contains("onnx"), "{e}");
    }

    #[test]
    fn onnx_models_are_written_as_model_onnx_and_listed() {
        let text = r#"
            hidden = 64
            [[model]]
            name = "base"
            arch = "bert"
            layers = 1
            [[model]]
            name = "base.int8"
            from = "base"
            onnx = "int8"
        "#;
        let dir = tempfile::tempdir().unwrap();
        let manifest = generate_spec(&parse_spec(text).unwrap(), dir.path()).unwrap();
        let q = dir.path().join("base.int8");
        for f in ["model.onnx", "config.json", "tokenizer.json"] {
            assert!(q.join(f).is_file(), "{f}");
        }
        assert!(!q.join("model.safetensors").exists());
        assert_eq!(manifest.models[1].onnx.as_deref(), Some("int8"));
        assert_eq!(manifest.models[0].onnx, None);
        let json = serde_json::to_string(&manifest.models[0]).unwrap();
        assert!(!json.contains("onnx"), "absent when not ONNX: {json}");
    }
}
