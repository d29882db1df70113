//! Composable transforms with known ground truth. Each works on any model folder the lab can read
//! (lab output or a real checkpoint) and says in its doc what property it preserves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::arch::{ArchKind, NormSlot, Role, classify, name_parts, with_expert, with_layer};
use super::model::{DType, Data, Model, Tensor, json_bytes, read_model, write_model};
use super::rng::Rng;
use super::tokenizer::TokView;

/// Quantisation schemes for [`TransformSpec::Quantize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantScheme {
    /// Symmetric int8, one absmax scale per row.
    Int8Row,
    /// Symmetric 4-bit (−8..7), one absmax scale per block of `block` consecutive values.
    Int4Block,
}

/// How [`TransformSpec::InsertLayers`] fills inserted layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InsertMode {
    /// Exact copy of the layer it follows (depth up-scaling).
    #[default]
    Duplicate,
    /// Fresh values with the source layer's per-tensor marginals (norms: shuffled gains).
    Random,
}

/// One transform. In TOML: `{ op = "fine_tune", rel = 0.01, seed = 3 }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformSpec {
    /// Exact copy (alone: files are copied byte for byte).
    Copy,
    /// Re-serialise float tensors (those whose name contains `pattern`, default all) as `dtype`.
    Cast {
        /// `F32`, `BF16` or `F16`.
        dtype: String,
        /// Substring filter.
        #[serde(default)]
        pattern: Option<String>,
    },
    /// Re-shard into `shards` files.
    Reshard {
        /// Shard count.
        shards: usize,
    },
    /// Shuffle the tensor order over and within shards.
    Reorder {
        /// Seed.
        #[serde(default)]
        seed: u64,
    },
    /// Rename into another architecture's naming (llama-style `mlp.*` ↔ Phi-MoE `block_sparse_moe.*`).
    RenameArch {
        /// Target architecture.
        to: ArchKind,
    },
    /// Rewrite into another family's tensor names, layouts and config (ALBERT, DistilBERT, T5,
    /// Whisper, Falcon, BLOOM, GPT-NeoX, Gemma 3, generic or nonsense names: [`super::scheme`]).
    RenameScheme {
        /// Target naming.
        scheme: super::scheme::Scheme,
    },
    /// Substring rename of every tensor name.
    Rename {
        /// Substring to replace.
        from: String,
        /// Replacement.
        to: String,
    },
    /// Fine-tune: add Gaussian noise of `rel` × (the tensor's std around its mean) to every float tensor.
    FineTune {
        /// Relative noise.
        #[serde(default = "d_ft")]
        rel: f64,
        /// Seed.
        #[serde(default)]
        seed: u64,
    },
    /// Continued pre-training: per-tensor multiplicative drift growing with depth plus large noise.
    ContinuedPretrain {
        /// Relative noise.
        #[serde(default = "d_cpt")]
        rel: f64,
        /// Drift scale.
        #[serde(default = "d_drift")]
        drift: f64,
        /// Seed.
        #[serde(default)]
        seed: u64,
    },
    /// Insert a layer after each listed layer.
    InsertLayers {
        /// Layers after which to insert.
        after: Vec<usize>,
        /// Duplicate or random.
        #[serde(default)]
        mode: InsertMode,
        /// Seed (random mode).
        #[serde(default)]
        seed: u64,
    },
    /// Remove the listed layers.
    RemoveLayers {
        /// Layers to drop.
        layers: Vec<usize>,
    },
    /// Keep layers `l` with `l % every == offset`.
    SubsetLayers {
        /// Stride.
        every: usize,
        /// Offset.
        #[serde(default)]
        offset: usize,
    },
    /// Randomly permute layers (leading dense layers stay in front).
    PermuteLayers {
        /// Seed.
        #[serde(default)]
        seed: u64,
    },
    /// Permute hidden coordinates (optionally with sign flips) consistently in every tensor;
    /// the network function is unchanged (sign flips need RMSNorm, not LayerNorm).
    PermuteHidden {
        /// Seed.
        #[serde(default)]
        seed: u64,
        /// Also flip signs of random coordinates.
        #[serde(default)]
        sign_flips: bool,
    },
    /// Permute attention heads per layer (kv groups, and q heads within each group); function unchanged.
    PermuteHeads {
        /// Seed.
        #[serde(default)]
        seed: u64,
    },
    /// Permute routed experts per layer (router rows, correction bias, expert names); function unchanged.
    PermuteExperts {
        /// Seed.
        #[serde(default)]
        seed: u64,
    },
    /// Shift every token id by `n` (new special tokens at the front).
    VocabShift {
        /// Shift.
        n: usize,
        /// Seed for the new rows.
        #[serde(default)]
        seed: u64,
    },
    /// Permute token ids.
    VocabPermute {
        /// Seed.
        #[serde(default)]
        seed: u64,
    },
    /// Remove a fraction of merge-built tokens (and merges depending on them), compacting ids.
    VocabPrune {
        /// Fraction of merge tokens to drop.
        fraction: f64,
        /// Seed.
        #[serde(default)]
        seed: u64,
    },
    /// Append `n` new merge tokens with fresh rows.
    VocabExtend {
        /// New tokens.
        n: usize,
        /// Seed.
        #[serde(default)]
        seed: u64,
    },
    /// Keep the first `q_heads` query heads (q_proj row prefix, o_proj column prefix).
    TruncateHeads {
        /// Query heads kept (a multiple of the kv heads).
        q_heads: usize,
    },
    /// Per-channel positive rescaling between a norm and its readers: scale each norm gain (and
    /// bias) by a random positive vector and inverse-scale the columns of the matrices that read it; function unchanged (exactly in F32; BF16 storage rounds the rescaled values).
    FoldNorm {
        /// Log-std of the scale vector.
        #[serde(default = "d_spread")]
        spread: f64,
        /// Seed.
        #[serde(default)]
        seed: u64,
    },
    /// Fold every RMSNorm gain into the matrices reading it and set it to 1; the final norm goes
    /// into the output head, untied from the embedding if needed. Function unchanged.
    FoldGains,
    /// Fold the gains, then rotate the residual stream by a seeded random orthogonal matrix
    /// (QuaRot / SliceGPT style). Function unchanged; permutation alignments cannot undo it.
    RotateHidden {
        /// Seed.
        #[serde(default)]
        seed: u64,
    },
    /// SliceGPT: fold, rotate into `basis`, delete the last `fraction` of residual coordinates.
    /// Not exact: the error grows with `fraction`.
    SliceHidden {
        /// Share of residual coordinates deleted, in [0, 1).
        fraction: f64,
        /// `pca` (embedding principal axes) or `random`.
        #[serde(default)]
        basis: super::obfuscate::SliceBasis,
        /// Seed (random basis).
        #[serde(default)]
        seed: u64,
    },
    /// Quantise 2-D weights and dequantise back (round trip, stored in the original dtype).
    Quantize {
        /// Scheme.
        scheme: QuantScheme,
        /// Block size for 4-bit.
        #[serde(default = "d_block")]
        block: usize,
        /// Also quantise embeddings and the output head.
        #[serde(default)]
        include_embeddings: bool,
    },
    /// Independent model: a pristine lab model is regenerated from its recipe with this seed; any
    /// other model has every tensor's values shuffled (same marginals, no shared coordinates).
    Independent {
        /// Seed.
        seed: u64,
    },
    /// Copy tensors whose name contains `pattern` from another model (a spec model name or a folder).
    Graft {
        /// Model name (in a spec) or folder path.
        from: String,
        /// Substring selecting tensors, e.g. `embed_tokens`.
        pattern: String,
        /// Also take the donor's tokenizer.
        #[serde(default)]
        tokenizer: bool,
    },
}

fn d_ft() -> f64 {
    0.01
}
fn d_cpt() -> f64 {
    0.3
}
fn d_drift() -> f64 {
    0.2
}
fn d_spread() -> f64 {
    0.5
}
fn d_block() -> usize {
    32
}

impl TransformSpec {
    /// The `op` name.
    pub fn op(&self) -> &'static str {
        match self {
            TransformSpec::Copy => "copy",
            TransformSpec::Cast { .. } => "cast",
            TransformSpec::Reshard { .. } => "reshard",
            TransformSpec::Reorder { .. } => "reorder",
            TransformSpec::RenameArch { .. } => "rename_arch",
            TransformSpec::RenameScheme { .. } => "rename_scheme",
            TransformSpec::Rename { .. } => "rename",
            TransformSpec::FineTune { .. } => "fine_tune",
            TransformSpec::ContinuedPretrain { .. } => "continued_pretrain",
            TransformSpec::InsertLayers { .. } => "insert_layers",
            TransformSpec::RemoveLayers { .. } => "remove_layers",
            TransformSpec::SubsetLayers { .. } => "subset_layers",
            TransformSpec::PermuteLayers { .. } => "permute_layers",
            TransformSpec::PermuteHidden { .. } => "permute_hidden",
            TransformSpec::PermuteHeads { .. } => "permute_heads",
            TransformSpec::PermuteExperts { .. } => "permute_experts",
            TransformSpec::VocabShift { .. } => "vocab_shift",
            TransformSpec::VocabPermute { .. } => "vocab_permute",
            TransformSpec::VocabPrune { .. } => "vocab_prune",
            TransformSpec::VocabExtend { .. } => "vocab_extend",
            TransformSpec::TruncateHeads { .. } => "truncate_heads",
            TransformSpec::FoldNorm { .. } => "fold_norm",
            TransformSpec::FoldGains => "fold_gains",
            TransformSpec::RotateHidden { .. } => "rotate_hidden",
            TransformSpec::SliceHidden { .. } => "slice_hidden",
            TransformSpec::Quantize { .. } => "quantize",
            TransformSpec::Independent { .. } => "independent",
            TransformSpec::Graft { .. } => "graft",
        }
    }

    /// Every op name (documentation and coverage tests).
    pub const OPS: [&'static str; 28] = [
        "copy",
        "cast",
        "reshard",
        "reorder",
        "rename_arch",
        "rename",
        "rename_scheme",
        "fine_tune",
        "continued_pretrain",
        "insert_layers",
        "remove_layers",
        "subset_layers",
        "permute_layers",
        "permute_hidden",
        "permute_heads",
        "permute_experts",
        "vocab_shift",
        "vocab_permute",
        "vocab_prune",
        "vocab_extend",
        "truncate_heads",
        "fold_norm",
        "fold_gains",
        "rotate_hidden",
        "slice_hidden",
        "quantize",
        "independent",
        "graft",
    ];
}

/// Parse transforms: a TOML file/string with `[[transform]]` tables (or `transforms = [...]`), or the
/// inline form `op(key=value,...)+op(...)`, e.g. `fine_tune(rel=0.02,seed=1)+permute_hidden(seed=3)`.
pub fn parse_transforms(text: &str) -> Result<Vec<TransformSpec>> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default, alias = "transforms")]
        transform: Vec<TransformSpec>,
    }
    let t = text.trim();
    if t.contains('=') && (t.contains('\n') || t.starts_with('[') || t.starts_with("transforms")) {
        let f: File = toml::from_str(t).context("parsing transform TOML")?;
        return Ok(f.transform);
    }
    let mut out = Vec::new();
    for part in t.split('+').map(str::trim).filter(|p| !p.is_empty()) {
        let (op, args) = match part.split_once('(') {
            Some((op, rest)) => (
                op.trim(),
                rest.strip_suffix(')')
                    .ok_or_else(|| anyhow!("missing ')' in {part:?}"))?,
            ),
            None => (part, ""),
        };
        let mut toml_text = format!("op = {:?}\n", op);
        for kv in split_args(args) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("expected key=value in {part:?}, got {kv:?}"))?;
            let v = v.trim();
            let is_literal = v.parse::<f64>().is_ok()
                || v == "true"
                || v == "false"
                || v.starts_with('[')
                || v.starts_with('"');
            let v = if is_literal {
                v.to_string()
            } else {
                format!("{v:?}")
            };
            toml_text.push_str(&format!("{} = {}\n", k.trim(), v));
        }
        let spec: TransformSpec =
            toml::from_str(&toml_text).with_context(|| format!("parsing transform {part:?}"))?;
        out.push(spec);
    }
    Ok(out)
}

fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_string());
                }
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Geometry read from `config.json` (falling back to tensor shapes).
#[derive(Clone, Debug, PartialEq)]
pub struct Dims {
    /// Residual width.
    pub hidden: usize,
    /// Regular layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Head width.
    pub head_dim: usize,
}

impl Dims {
    /// Read dimensions of `m`.
    pub fn of(m: &Model) -> Result<Dims> {
        let hidden = match m.cfg_usize("hidden_size") {
            Some(h) => h,
            None => m
                .tensors
                .iter()
                .find(|(n, _)| n.contains("embed_tokens") || n.contains("word_embeddings"))
                .and_then(|(_, t)| t.shape.get(1).copied())
                .ok_or_else(|| {
                    anyhow!("config.json has no hidden_size and no embedding tensor was found")
                })?,
        };
        let layers = match m.cfg_usize("num_hidden_layers") {
            Some(l) => l,
            None => m
                .tensors
                .keys()
                .filter_map(|n| name_parts(n).layer)
                .max()
                .map(|x| x + 1)
                .unwrap_or(0),
        };
        let heads = m.cfg_usize("num_attention_heads").unwrap_or(0);
        let kv_heads = m.cfg_usize("num_key_value_heads").unwrap_or(heads);
        let head_dim = m
            .cfg_usize("head_dim")
            .unwrap_or(hidden.checked_div(heads).unwrap_or(0));
        Ok(Dims {
            hidden,
            layers,
            heads,
            kv_heads,
            head_dim,
        })
    }

    fn need_heads(&self) -> Result<()> {
        if self.heads == 0
            || self.kv_heads == 0
            || self.head_dim == 0
            || !self.heads.is_multiple_of(self.kv_heads)
        {
            bail!(
                "config.json: need num_attention_heads, num_key_value_heads (dividing it) and head_dim (got {}, {}, {})",
                self.heads,
                self.kv_heads,
                self.head_dim
            );
        }
        Ok(())
    }
}

/// Apply `specs` in order to an in-memory model. `resolve` loads models named by `graft`.
pub fn apply_all(
    model: &mut Model,
    specs: &[TransformSpec],
    resolve: &dyn Fn(&str) -> Result<Model>,
) -> Result<()> {
    for s in specs {
        apply(model, s, resolve).with_context(|| format!("transform {}", s.op()))?;
    }
    Ok(())
}

/// Apply one transform in memory.
pub fn apply(
    m: &mut Model,
    spec: &TransformSpec,
    resolve: &dyn Fn(&str) -> Result<Model>,
) -> Result<()> {
    use TransformSpec as T;
    if !matches!(spec, T::Copy | T::Independent { .. }) {
        m.recipe = None;
    }
    match spec {
        T::Copy => Ok(()),
        T::Cast { dtype, pattern } => {
            let dt = DType::parse(dtype)?;
            if !dt.is_float() {
                bail!("cast: target dtype {dtype} is not F32/BF16/F16");
            }
            for (n, t) in m.tensors.iter_mut() {
                if t.dtype.is_float() && pattern.as_ref().is_none_or(|p| n.contains(p.as_str())) {
                    t.dtype = dt;
                    if let Data::F32(v) = &mut t.data {
                        super::model::round_values(dt, v);
                    }
                }
            }
            if pattern.is_none() {
                let s = match dt {
                    DType::F32 => "float32",
                    DType::F16 => "float16",
                    _ => "bfloat16",
                };
                m.set_cfg("torch_dtype", json!(s));
            }
            Ok(())
        }
        T::Reshard { shards } => {
            if *shards == 0 {
                bail!("reshard: shards must be ≥ 1");
            }
            m.layout.shards = *shards;
            m.layout.assign.clear();
            Ok(())
        }
        T::Reorder { seed } => {
            let mut order = m.write_order();
            Rng::new(*seed, "reorder").shuffle(&mut order);
            m.layout.order = order;
            Ok(())
        }
        T::RenameArch { to } => rename_arch(m, *to),
        T::RenameScheme { scheme } => super::scheme::rename_scheme(m, *scheme),
        T::Rename { from, to } => {
            if from.is_empty() {
                bail!("rename: empty pattern");
            }
            m.rename_all(|n| n.replace(from.as_str(), to))
        }
        T::FineTune { rel, seed } => {
            noise(m, *seed, "fine_tune", |_, _| (1.0, *rel));
            Ok(())
        }
        T::ContinuedPretrain { rel, drift, seed } => {
            let layers = Dims::of(m)?.layers.max(1);
            let (seed, drift) = (*seed, *drift);
            noise(m, seed, "continued_pretrain", |name, _| {
                let t = name_parts(name)
                    .layer
                    .map(|l| (l as f64 / layers as f64).min(1.0))
                    .unwrap_or(0.5);
                let z = Rng::new(seed, &format!("cpt-drift/{name}")).normal();
                ((1.0 + drift * (t + 0.5 * z)).max(0.05), *rel)
            });
            Ok(())
        }
        T::InsertLayers { after, mode, seed } => {
            let d = Dims::of(m)?;
            for a in after {
                if *a >= d.layers {
                    bail!(
                        "insert_layers: layer {a} does not exist ({} layers)",
                        d.layers
                    );
                }
            }
            let mut plan = Vec::new();
            for l in 0..d.layers {
                plan.push((l, false));
                if after.contains(&l) {
                    plan.push((l, *mode == InsertMode::Random));
                }
            }
            rebuild_layers(m, d.layers, &plan, *seed)
        }
        T::RemoveLayers { layers } => {
            let d = Dims::of(m)?;
            let plan: Vec<(usize, bool)> = (0..d.layers)
                .filter(|l| !layers.contains(l))
                .map(|l| (l, false))
                .collect();
            rebuild_layers(m, d.layers, &plan, 0)
        }
        T::SubsetLayers { every, offset } => {
            let d = Dims::of(m)?;
            if *every == 0 {
                bail!("subset_layers: every must be ≥ 1");
            }
            let plan: Vec<(usize, bool)> = (0..d.layers)
                .filter(|l| l % every == offset % every)
                .map(|l| (l, false))
                .collect();
            rebuild_layers(m, d.layers, &plan, 0)
        }
        T::PermuteLayers { seed } => {
            let d = Dims::of(m)?;
            let dense = leading_dense(m, d.layers);
            let mut rest: Vec<usize> = (dense..d.layers).collect();
            Rng::new(*seed, "permute_layers").shuffle(&mut rest);
            let plan: Vec<(usize, bool)> = (0..dense).chain(rest).map(|l| (l, false)).collect();
            rebuild_layers(m, d.layers, &plan, 0)
        }
        T::PermuteHidden { seed, sign_flips } => permute_hidden(m, *seed, *sign_flips),
        T::PermuteHeads { seed } => permute_heads(m, *seed),
        T::PermuteExperts { seed } => permute_experts(m, *seed),
        T::VocabShift { n, seed } => vocab_shift(m, *n, *seed),
        T::VocabPermute { seed } => vocab_permute(m, *seed),
        T::VocabPrune { fraction, seed } => vocab_prune(m, *fraction, *seed),
        T::VocabExtend { n, seed } => vocab_extend(m, *n, *seed),
        T::TruncateHeads { q_heads } => truncate_heads(m, *q_heads),
        T::FoldNorm { spread, seed } => fold_norm(m, *spread, *seed),
        T::FoldGains => super::obfuscate::fold_gains(m),
        T::RotateHidden { seed } => super::obfuscate::rotate_hidden(m, *seed),
        T::SliceHidden {
            fraction,
            basis,
            seed,
        } => super::obfuscate::slice_hidden(m, *fraction, *basis, *seed),
        T::Quantize {
            scheme,
            block,
            include_embeddings,
        } => quantize(m, *scheme, *block, *include_embeddings),
        T::Independent { seed } => {
            if let Some(r) = m.recipe.clone() {
                let mut r = r;
                r.seed = *seed;
                let layout = m.layout.clone();
                *m = super::weights::generate(&r)?;
                m.layout = layout;
            } else {
                for (n, t) in m.tensors.iter_mut() {
                    if let Data::F32(v) = &mut t.data {
                        Rng::new(*seed, &format!("independent/{n}")).shuffle(v);
                    }
                }
            }
            Ok(())
        }
        T::Graft {
            from,
            pattern,
            tokenizer,
        } => {
            let donor = resolve(from)?;
            let mut n = 0;
            for (name, t) in &donor.tensors {
                if !name.contains(pattern.as_str()) {
                    continue;
                }
                let mine = m
                    .get_mut(name)
                    .with_context(|| format!("graft from {from}"))?;
                if mine.shape != t.shape {
                    bail!(
                        "graft: tensor {name} has shape {:?} here and {:?} in {from}",
                        mine.shape,
                        t.shape
                    );
                }
                *mine = t.clone();
                n += 1;
            }
            if n == 0 {
                bail!("graft: no tensor of {from} matches {pattern:?}");
            }
            if *tokenizer {
                m.tokenizer = donor.tokenizer.clone();
                if let Some(b) = donor.files.get("tokenizer_config.json") {
                    m.files.insert("tokenizer_config.json".into(), b.clone());
                }
            }
            Ok(())
        }
    }
}

/// Transform a model folder into `out_dir`. A lone `copy` copies every file byte for byte.
pub fn transform_dir(in_dir: &Path, specs: &[TransformSpec], out_dir: &Path) -> Result<()> {
    let a = in_dir
        .canonicalize()
        .with_context(|| format!("{}: cannot open", in_dir.display()))?;
    if let Ok(b) = out_dir.canonicalize()
        && a == b
    {
        bail!("output folder {} is the input folder", out_dir.display());
    }
    if specs.iter().all(|s| *s == TransformSpec::Copy) {
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("creating {}", out_dir.display()))?;
        for f in super::model::list_files(in_dir)? {
            let name = f
                .file_name()
                .ok_or_else(|| anyhow!("bad file name {}", f.display()))?;
            std::fs::copy(&f, out_dir.join(name))
                .with_context(|| format!("copying {}", f.display()))?;
        }
        return Ok(());
    }
    let mut m = read_model(in_dir)?;
    let resolve = |p: &str| read_model(Path::new(p));
    apply_all(&mut m, specs, &resolve)?;
    write_model(&m, out_dir)
}

// ---------------------------------------------------------------------------------------------

/// Standard deviation around the mean: noise relative to a tensor's spread keeps the marginals of
/// positive norm gains (mean and sign) while perturbing coordinates.
fn centred_std(v: &[f32]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let n = v.len() as f64;
    let mean = v.iter().map(|x| *x as f64).sum::<f64>() / n;
    (v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

fn rms(v: &[f32]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
}

/// `v ← v·scale + rel·rms(v)·N(0,1)` per tensor, noise from per-row streams.
fn noise(m: &mut Model, seed: u64, label: &str, f: impl Fn(&str, &Tensor) -> (f64, f64) + Sync) {
    use rayon::prelude::*;
    m.tensors.par_iter_mut().for_each(|(name, t)| {
        let (scale, rel) = f(name, t);
        let (rows, cols) = t.dims2();
        if let Data::F32(v) = &mut t.data {
            let sd = rel * centred_std(v);
            for r in 0..rows {
                let mut g = Rng::indexed(seed, &format!("{label}/{name}"), r as u64);
                for x in &mut v[r * cols..(r + 1) * cols] {
                    *x = (*x as f64 * scale + sd * g.normal()) as f32;
                }
            }
        }
    });
}

fn is_dense_layer(m: &Model, l: usize) -> bool {
    !m.tensors.iter().any(|(n, t)| {
        name_parts(n).layer == Some(l) && classify(n, &t.shape, usize::MAX) == Role::Router
    })
}

fn leading_dense(m: &Model, layers: usize) -> usize {
    if !m
        .tensors
        .iter()
        .any(|(n, t)| classify(n, &t.shape, usize::MAX) == Role::Router)
    {
        return 0;
    }
    (0..layers).take_while(|l| is_dense_layer(m, *l)).count()
}

/// Rebuild regular layers from `plan` (new index → (source layer, fresh values)); MTP layers
/// (index ≥ `layers`) move to follow the new last layer.
fn rebuild_layers(m: &mut Model, layers: usize, plan: &[(usize, bool)], seed: u64) -> Result<()> {
    if plan.is_empty() {
        bail!("no layers would remain");
    }
    let has_router = m
        .tensors
        .iter()
        .any(|(n, t)| classify(n, &t.shape, usize::MAX) == Role::Router);
    let old = std::mem::take(&mut m.tensors);
    let mut by_layer: BTreeMap<usize, Vec<(String, Tensor)>> = BTreeMap::new();
    for (n, t) in old {
        match name_parts(&n).layer {
            Some(l) => by_layer.entry(l).or_default().push((n, t)),
            None => {
                m.tensors.insert(n, t);
            }
        }
    }
    let mut order_map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (new_l, (src, fresh)) in plan.iter().enumerate() {
        let Some(ts) = by_layer.get(src) else {
            bail!("layer {src} has no tensors")
        };
        for (n, t) in ts {
            let nn = with_layer(n, new_l);
            let mut t = t.clone();
            if *fresh && let Data::F32(v) = &mut t.data {
                let mut r = Rng::new(seed, &format!("insert/{nn}"));
                if t.shape.len() == 1 {
                    r.shuffle(v);
                } else {
                    let mean = v.iter().map(|x| *x as f64).sum::<f64>() / v.len().max(1) as f64;
                    let sd = (v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>()
                        / v.len().max(1) as f64)
                        .sqrt();
                    v.iter_mut()
                        .for_each(|x| *x = (mean + sd * r.normal()) as f32);
                }
            }
            order_map.entry(n.clone()).or_default().push(nn.clone());
            m.tensors.insert(nn, t);
        }
    }
    let new_layers = plan.len();
    for (l, ts) in by_layer.range(layers..) {
        for (n, t) in ts {
            let nn = with_layer(n, new_layers + (l - layers));
            order_map.entry(n.clone()).or_default().push(nn.clone());
            m.tensors.insert(nn, t.clone());
        }
    }
    let order = std::mem::take(&mut m.layout.order);
    m.layout.order = order
        .iter()
        .flat_map(|n| order_map.get(n).cloned().unwrap_or_else(|| vec![n.clone()]))
        .collect();
    m.set_cfg("num_hidden_layers", json!(new_layers));
    if has_router {
        let dense = leading_dense(m, new_layers);
        if (dense..new_layers).any(|l| is_dense_layer(m, l)) {
            bail!(
                "the new layer order puts a dense layer after a MoE layer, which first_k_dense_replace cannot express"
            );
        }
        if m.config.get("first_k_dense_replace").is_some() {
            m.set_cfg("first_k_dense_replace", json!(dense));
        }
    }
    Ok(())
}

fn rename_arch(m: &mut Model, to: ArchKind) -> Result<()> {
    let is_bert = |s: &str| s.contains("encoder.layer.");
    if to == ArchKind::Bert || m.tensors.keys().any(|k| is_bert(k)) {
        bail!("rename_arch between BERT and decoder naming is not supported");
    }
    let phi = to == ArchKind::Phimoe;
    m.rename_all(|n| {
        if phi {
            if name_parts(n).expert.is_some() && n.contains(".mlp.experts.") {
                n.replace(".mlp.experts.", ".block_sparse_moe.experts.")
                    .replace(".gate_proj.", ".w1.")
                    .replace(".up_proj.", ".w3.")
                    .replace(".down_proj.", ".w2.")
            } else {
                n.replace(".mlp.gate.", ".block_sparse_moe.gate.")
                    .replace(".mlp.shared_experts.", ".block_sparse_moe.shared_experts.")
            }
        } else if n.contains(".block_sparse_moe.experts.") {
            n.replace(".block_sparse_moe.experts.", ".mlp.experts.")
                .replace(".w1.", ".gate_proj.")
                .replace(".w3.", ".up_proj.")
                .replace(".w2.", ".down_proj.")
        } else {
            n.replace(".block_sparse_moe.", ".mlp.")
        }
    })?;
    m.set_cfg("model_type", json!(to.model_type()));
    let arch = match to {
        ArchKind::Glm4Moe => "Glm4MoeForCausalLM",
        ArchKind::SolarOpen => "SolarOpenForCausalLM",
        ArchKind::Phimoe => "PhiMoEForCausalLM",
        _ => "LlamaForCausalLM",
    };
    m.set_cfg("architectures", json!([arch]));
    Ok(())
}

/// Gather columns: new col `i` = sign[i]·old col `src[i]`, for the column ranges `segments` (start, len).
fn permute_cols(
    v: &mut [f32],
    rows: usize,
    cols: usize,
    start: usize,
    src: &[usize],
    sign: &[f32],
) {
    let n = src.len();
    let mut tmp = vec![0f32; n];
    for r in 0..rows {
        let row = &mut v[r * cols + start..r * cols + start + n];
        for i in 0..n {
            tmp[i] = sign[i] * row[src[i]];
        }
        row.copy_from_slice(&tmp);
    }
}

fn permute_rows(v: &mut Vec<f32>, cols: usize, src: &[usize], sign: &[f32]) {
    let mut out = Vec::with_capacity(v.len());
    for (i, s) in src.iter().enumerate() {
        out.extend(v[s * cols..(s + 1) * cols].iter().map(|x| x * sign[i]));
    }
    out.extend_from_slice(&v[src.len() * cols..]);
    *v = out;
}

fn permute_hidden(m: &mut Model, seed: u64, sign_flips: bool) -> Result<()> {
    let h = Dims::of(m)?.hidden;
    let mut r = Rng::new(seed, "permute_hidden");
    let src = r.permutation(h);
    let sign: Vec<f32> = (0..h)
        .map(|_| {
            if sign_flips && r.uniform() < 0.5 {
                -1.0
            } else {
                1.0
            }
        })
        .collect();
    let ones = vec![1.0f32; h];
    if sign_flips
        && m.tensors
            .iter()
            .any(|(n, t)| classify(n, &t.shape, h) == Role::NormBias)
    {
        bail!(
            "permute_hidden: sign flips do not commute with LayerNorm (mean subtraction); use sign_flips = false"
        );
    }
    for (name, t) in m.tensors.iter_mut() {
        let role = classify(name, &t.shape, h);
        let shape = t.shape.clone();
        let (rows, cols) = t.dims2();
        let Data::F32(v) = &mut t.data else {
            if shape.contains(&h) {
                bail!(
                    "permute_hidden: tensor {name} ({}) has a hidden axis but is not a float tensor",
                    t.dtype.name()
                );
            }
            continue;
        };
        let want_cols = |ok: bool| -> Result<()> {
            if !ok {
                bail!(
                    "permute_hidden: tensor {name} has shape {shape:?}, expected a hidden axis of {h}"
                );
            }
            Ok(())
        };
        match role {
            Role::Embed
            | Role::LmHead
            | Role::PosEmbed
            | Role::Q
            | Role::K
            | Role::V
            | Role::MlpIn
            | Role::Router
            | Role::Pooler => {
                want_cols(shape.len() == 2 && cols == h)?;
                permute_cols(v, rows, cols, 0, &src, &sign);
            }
            Role::O | Role::MlpOut => {
                want_cols(shape.len() == 2 && rows == h)?;
                permute_rows(v, cols, &src, &sign);
            }
            Role::OBias | Role::MlpOutBias | Role::NormBias => {
                want_cols(shape == [h])?;
                permute_rows(v, 1, &src, &sign);
            }
            Role::Norm(_) => {
                want_cols(shape == [h])?;
                permute_rows(v, 1, &src, &ones);
            }
            Role::EhProj => {
                want_cols(shape.len() == 2 && rows == h && cols == 2 * h)?;
                permute_cols(v, rows, cols, 0, &src, &sign);
                permute_cols(v, rows, cols, h, &src, &sign);
                permute_rows(v, cols, &src, &sign);
            }
            Role::Other if shape.len() == 2 && cols == h => {
                permute_cols(v, rows, cols, 0, &src, &sign)
            }
            Role::Other if shape.len() == 2 && rows == h => permute_rows(v, cols, &src, &sign),
            Role::Other if shape == [h] => bail!(
                "permute_hidden: don't know how tensor {name} [{h}] relates to the residual stream"
            ),
            _ => {}
        }
    }
    Ok(())
}

fn permute_heads(m: &mut Model, seed: u64) -> Result<()> {
    let d = Dims::of(m)?;
    d.need_heads()?;
    let group = d.heads / d.kv_heads;
    let hd = d.head_dim;
    for (name, t) in m.tensors.iter_mut() {
        let role = classify(name, &t.shape, d.hidden);
        if !matches!(
            role,
            Role::Q | Role::K | Role::V | Role::O | Role::QBias | Role::KBias | Role::VBias
        ) {
            continue;
        }
        let layer = name_parts(name)
            .layer
            .ok_or_else(|| anyhow!("permute_heads: {name} is outside a layer"))?;
        let mut r = Rng::indexed(seed, "permute_heads", layer as u64);
        let kv_perm = r.permutation(d.kv_heads);
        let in_group: Vec<Vec<usize>> = (0..d.kv_heads).map(|_| r.permutation(group)).collect();
        // head-level sources
        let q_src: Vec<usize> = (0..d.heads)
            .map(|i| kv_perm[i / group] * group + in_group[i / group][i % group])
            .collect();
        let expand = |heads: &[usize]| -> Vec<usize> {
            heads
                .iter()
                .flat_map(|h| (0..hd).map(move |j| h * hd + j))
                .collect()
        };
        let (rows, cols) = t.dims2();
        let shape = t.shape.clone();
        let v = t.values_mut(name)?;
        let (src, by_rows) = match role {
            Role::Q | Role::QBias => (expand(&q_src), true),
            Role::K | Role::V | Role::KBias | Role::VBias => (expand(&kv_perm), true),
            _ => (expand(&q_src), false),
        };
        let ones = vec![1.0f32; src.len()];
        if by_rows {
            let n = if shape.len() == 1 { shape[0] } else { rows };
            if n != src.len() {
                bail!(
                    "permute_heads: tensor {name} has {n} rows, expected {}",
                    src.len()
                );
            }
            permute_rows(v, if shape.len() == 1 { 1 } else { cols }, &src, &ones);
        } else {
            if cols != src.len() {
                bail!(
                    "permute_heads: tensor {name} has {cols} columns, expected {}",
                    src.len()
                );
            }
            permute_cols(v, rows, cols, 0, &src, &ones);
        }
    }
    Ok(())
}

fn permute_experts(m: &mut Model, seed: u64) -> Result<()> {
    let h = Dims::of(m)?.hidden;
    // per layer permutation: new expert e' takes old expert perm[e']
    let mut perms: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (name, t) in &m.tensors {
        if classify(name, &t.shape, h) == Role::Router {
            if t.shape.len() != 2 {
                bail!(
                    "permute_experts: router {name} has shape {:?}, expected 2-D",
                    t.shape
                );
            }
            let l = name_parts(name)
                .layer
                .ok_or_else(|| anyhow!("router {name} outside a layer"))?;
            perms.insert(
                l,
                Rng::indexed(seed, "permute_experts", l as u64).permutation(t.shape[0]),
            );
        }
    }
    if perms.is_empty() {
        bail!("permute_experts: the model has no router");
    }
    for (name, t) in m.tensors.iter_mut() {
        let role = classify(name, &t.shape, h);
        if matches!(role, Role::Router | Role::RouterBias) {
            let l = name_parts(name).layer.unwrap_or(usize::MAX);
            let Some(p) = perms.get(&l) else { continue };
            let cols = t.dims2().1;
            let cols = if t.shape.len() == 1 { 1 } else { cols };
            let ones = vec![1.0f32; p.len()];
            permute_rows(t.values_mut(name)?, cols, p, &ones);
        }
    }
    let inv: BTreeMap<usize, Vec<usize>> = perms
        .iter()
        .map(|(l, p)| {
            let mut inv = vec![0; p.len()];
            for (new, old) in p.iter().enumerate() {
                inv[*old] = new;
            }
            (*l, inv)
        })
        .collect();
    m.rename_all(|n| {
        let parts = name_parts(n);
        match (parts.layer, parts.expert) {
            (Some(l), Some(e)) => match inv.get(&l).and_then(|inv| inv.get(e)) {
                Some(ne) => with_expert(n, *ne),
                None => n.to_string(),
            },
            _ => n.to_string(),
        }
    })
}

/// Source of one row after re-indexing.
#[derive(Clone, Copy, Debug)]
enum RowSrc {
    Old(usize),
    Fresh,
}

/// Re-index vocabulary rows of embeddings / output heads and fix config ids.
fn reindex_vocab(
    m: &mut Model,
    plan: &[RowSrc],
    id_map: &BTreeMap<u32, u32>,
    seed: u64,
) -> Result<()> {
    let h = Dims::of(m)?.hidden;
    let mut touched = 0;
    for (name, t) in m.tensors.iter_mut() {
        let role = classify(name, &t.shape, h);
        if !matches!(role, Role::Embed | Role::LmHead | Role::LmHeadBias) {
            continue;
        }
        touched += 1;
        let want = if role == Role::LmHeadBias { 1 } else { 2 };
        if t.shape.len() != want {
            bail!(
                "vocab: tensor {name} has shape {:?}, expected {want}-D",
                t.shape
            );
        }
        let (rows, cols) = t.dims2();
        let (rows, cols) = if t.shape.len() == 1 {
            (t.shape[0], 1)
        } else {
            (rows, cols)
        };
        let v = t.values_mut(name)?;
        let sd = rms(v);
        let mut out = Vec::with_capacity(plan.len() * cols);
        for (i, p) in plan.iter().enumerate() {
            match p {
                RowSrc::Old(o) if *o < rows => out.extend_from_slice(&v[o * cols..(o + 1) * cols]),
                RowSrc::Old(o) => bail!("vocab: row {o} out of range in {name} ({rows} rows)"),
                RowSrc::Fresh => {
                    let mut r = Rng::indexed(seed, &format!("vocab/{name}"), i as u64);
                    out.extend((0..cols).map(|_| (sd * r.normal()) as f32));
                }
            }
        }
        *v = out;
        t.shape[0] = plan.len();
    }
    if touched == 0 {
        bail!("vocab: no embedding tensor found");
    }
    m.set_cfg("vocab_size", json!(plan.len()));
    let remap = |v: &mut Value| -> Result<()> {
        for key in [
            "bos_token_id",
            "eos_token_id",
            "pad_token_id",
            "decoder_start_token_id",
        ] {
            let Some(x) = v.get_mut(key) else { continue };
            let map_one = |x: &Value| -> Result<Value> {
                match x.as_u64() {
                    Some(id) => id_map
                        .get(&(id as u32))
                        .map(|n| json!(n))
                        .ok_or_else(|| anyhow!("vocab: special id {id} ({key}) was removed")),
                    None => Ok(x.clone()),
                }
            };
            let new = match &*x {
                Value::Array(a) => Value::Array(a.iter().map(map_one).collect::<Result<_>>()?),
                other => map_one(other)?,
            };
            *x = new;
        }
        Ok(())
    };
    remap(&mut m.config)?;
    if let Some(b) = m.files.get("generation_config.json").cloned()
        && let Ok(mut g) = serde_json::from_slice::<Value>(&b)
    {
        remap(&mut g)?;
        m.files
            .insert("generation_config.json".into(), json_bytes(&g));
    }
    Ok(())
}

fn vocab_rows(m: &Model) -> Result<usize> {
    let h = Dims::of(m)?.hidden;
    m.tensors
        .iter()
        .find(|(n, t)| classify(n, &t.shape, h) == Role::Embed && t.shape.len() == 2)
        .map(|(_, t)| t.shape[0])
        .ok_or_else(|| anyhow!("vocab: no embedding tensor found"))
}

fn tok_view(m: &Model) -> Result<TokView> {
    TokView::parse(
        m.tokenizer
            .as_ref()
            .ok_or_else(|| anyhow!("vocab transforms need tokenizer.json"))?,
    )
}

fn store_view(m: &mut Model, view: &TokView) -> Result<()> {
    let t = m
        .tokenizer
        .as_mut()
        .ok_or_else(|| anyhow!("vocab transforms need tokenizer.json"))?;
    view.store(t)
}

fn vocab_shift(m: &mut Model, n: usize, seed: u64) -> Result<()> {
    let rows = vocab_rows(m)?;
    let mut view = tok_view(m)?;
    let plan: Vec<RowSrc> = (0..n)
        .map(|_| RowSrc::Fresh)
        .chain((0..rows).map(RowSrc::Old))
        .collect();
    let id_map: BTreeMap<u32, u32> = (0..rows as u32).map(|i| (i, i + n as u32)).collect();
    let mut ids = BTreeMap::new();
    for (id, v) in std::mem::take(&mut view.ids) {
        ids.insert(id + n as u32, v);
    }
    let mut k = 0;
    for i in 0..n {
        let text = loop {
            let t = format!("<|lab_extra_{k}|>");
            k += 1;
            if !ids.values().any(|(s, _)| *s == t) {
                break t;
            }
        };
        ids.insert(i as u32, (text, true));
    }
    view.ids = ids;
    reindex_vocab(m, &plan, &id_map, seed)?;
    store_view(m, &view)
}

fn vocab_permute(m: &mut Model, seed: u64) -> Result<()> {
    let rows = vocab_rows(m)?;
    let mut view = tok_view(m)?;
    let present: Vec<u32> = view
        .ids
        .keys()
        .copied()
        .filter(|i| (*i as usize) < rows)
        .collect();
    let mut shuffled = present.clone();
    Rng::new(seed, "vocab_permute").shuffle(&mut shuffled);
    let mut plan: Vec<RowSrc> = (0..rows).map(RowSrc::Old).collect();
    let mut id_map: BTreeMap<u32, u32> = (0..rows as u32).map(|i| (i, i)).collect();
    for (old, new) in present.iter().zip(shuffled.iter()) {
        plan[*new as usize] = RowSrc::Old(*old as usize);
        id_map.insert(*old, *new);
    }
    view.ids = std::mem::take(&mut view.ids)
        .into_iter()
        .map(|(id, v)| (id_map.get(&id).copied().unwrap_or(id), v))
        .collect();
    reindex_vocab(m, &plan, &id_map, seed)?;
    store_view(m, &view)
}

fn vocab_prune(m: &mut Model, fraction: f64, seed: u64) -> Result<()> {
    if !(0.0..1.0).contains(&fraction) {
        bail!("vocab_prune: fraction must be in [0, 1)");
    }
    let rows = vocab_rows(m)?;
    let mut view = tok_view(m)?;
    let products: BTreeSet<String> = view.merges.iter().map(|(a, b)| format!("{a}{b}")).collect();
    let candidates: Vec<String> = view
        .ids
        .values()
        .filter(|(s, added)| !added && products.contains(s))
        .map(|(s, _)| s.clone())
        .collect();
    let mut r = Rng::new(seed, "vocab_prune");
    let mut removed: BTreeSet<String> = candidates
        .into_iter()
        .filter(|_| r.uniform() < fraction)
        .collect();
    loop {
        let before = removed.len();
        for (a, b) in &view.merges {
            if removed.contains(a) || removed.contains(b) {
                removed.insert(format!("{a}{b}"));
            }
        }
        if removed.len() == before {
            break;
        }
    }
    view.merges.retain(|(a, b)| {
        !removed.contains(a) && !removed.contains(b) && !removed.contains(&format!("{a}{b}"))
    });
    let removed_ids: BTreeSet<u32> = view
        .ids
        .iter()
        .filter(|(_, (s, _))| removed.contains(s))
        .map(|(i, _)| *i)
        .collect();
    let mut plan = Vec::new();
    let mut id_map = BTreeMap::new();
    for old in 0..rows as u32 {
        if !removed_ids.contains(&old) {
            id_map.insert(old, plan.len() as u32);
            plan.push(RowSrc::Old(old as usize));
        }
    }
    let dropped = removed_ids.len() as u32;
    view.ids = std::mem::take(&mut view.ids)
        .into_iter()
        .filter_map(|(id, v)| {
            if id as usize >= rows {
                // tokenizer ids past the embedding rows keep their distance to the end
                Some((id - dropped, v))
            } else {
                id_map.get(&id).map(|n| (*n, v))
            }
        })
        .collect();
    reindex_vocab(m, &plan, &id_map, seed)?;
    store_view(m, &view)
}

fn vocab_extend(m: &mut Model, n: usize, seed: u64) -> Result<()> {
    let rows = vocab_rows(m)?;
    let mut view = tok_view(m)?;
    let mut texts: BTreeSet<String> = view.ids.values().map(|(s, _)| s.clone()).collect();
    let pool: Vec<String> = view
        .ids
        .values()
        .filter(|(s, a)| !a && s.chars().count() <= 6)
        .map(|(s, _)| s.clone())
        .collect();
    if pool.len() < 2 {
        bail!("vocab_extend: tokenizer has too few base tokens");
    }
    let mut r = Rng::new(seed, "vocab_extend");
    let mut next = rows.max(
        view.ids
            .keys()
            .next_back()
            .map(|i| *i as usize + 1)
            .unwrap_or(0),
    );
    let mut plan: Vec<RowSrc> = (0..rows).map(RowSrc::Old).collect();
    let mut added = 0;
    let mut guard = 0;
    while added < n {
        guard += 1;
        if guard > 1000 * (n + 10) {
            bail!("vocab_extend: could not find {n} new merges");
        }
        let a = &pool[r.below(pool.len())];
        let b = &pool[r.below(pool.len())];
        let prod = format!("{a}{b}");
        if texts.contains(&prod) {
            continue;
        }
        texts.insert(prod.clone());
        view.merges.push((a.clone(), b.clone()));
        while plan.len() < next {
            plan.push(RowSrc::Fresh);
        }
        view.ids.insert(next as u32, (prod, false));
        plan.push(RowSrc::Fresh);
        next += 1;
        added += 1;
    }
    let id_map: BTreeMap<u32, u32> = (0..rows as u32).map(|i| (i, i)).collect();
    reindex_vocab(m, &plan, &id_map, seed)?;
    store_view(m, &view)
}

fn truncate_heads(m: &mut Model, q_heads: usize) -> Result<()> {
    let d = Dims::of(m)?;
    d.need_heads()?;
    if q_heads == 0 || q_heads > d.heads || !q_heads.is_multiple_of(d.kv_heads) {
        bail!(
            "truncate_heads: q_heads {q_heads} must be in 1..={} and a multiple of {} kv heads",
            d.heads,
            d.kv_heads
        );
    }
    let keep = q_heads * d.head_dim;
    for (name, t) in m.tensors.iter_mut() {
        let role = classify(name, &t.shape, d.hidden);
        let (rows, cols) = t.dims2();
        let ok = match role {
            Role::Q => t.shape.len() == 2 && rows == d.heads * d.head_dim,
            Role::QBias => t.shape == [d.heads * d.head_dim],
            Role::O => t.shape.len() == 2 && cols == d.heads * d.head_dim,
            _ => true,
        };
        if !ok {
            bail!(
                "truncate_heads: tensor {name} has shape {:?}, inconsistent with {} heads of {}",
                t.shape,
                d.heads,
                d.head_dim
            );
        }
        match role {
            Role::Q => {
                let v = t.values_mut(name)?;
                v.truncate(keep * cols);
                t.shape[0] = keep;
            }
            Role::QBias => {
                t.values_mut(name)?.truncate(keep);
                t.shape[0] = keep;
            }
            Role::O => {
                let v = t.values_mut(name)?;
                let mut out = Vec::with_capacity(rows * keep);
                for r in 0..rows {
                    out.extend_from_slice(&v[r * cols..r * cols + keep]);
                }
                *v = out;
                t.shape[1] = keep;
            }
            _ => {}
        }
    }
    m.set_cfg("num_attention_heads", json!(q_heads));
    Ok(())
}

fn fold_norm(m: &mut Model, spread: f64, seed: u64) -> Result<()> {
    let h = Dims::of(m)?.hidden;
    if m.tensors.keys().any(|k| k.contains("encoder.layer.")) {
        bail!("fold_norm needs a pre-norm decoder (BERT's post-norm output feeds the residual)");
    }
    let tied = m
        .config
        .get("tie_word_embeddings")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // (norm gain name) -> consumers
    let names: Vec<(String, Role)> = m
        .tensors
        .iter()
        .map(|(n, t)| (n.clone(), classify(n, &t.shape, h)))
        .collect();
    let mut folds: Vec<(String, Option<String>, Vec<String>)> = Vec::new();
    for (n, role) in &names {
        let (slot_ok, consumers): (bool, Vec<String>) = match role {
            Role::Norm(NormSlot::Input) => {
                let l = name_parts(n).layer;
                (
                    true,
                    names
                        .iter()
                        .filter(|(c, r)| {
                            matches!(r, Role::Q | Role::K | Role::V) && name_parts(c).layer == l
                        })
                        .map(|(c, _)| c.clone())
                        .collect(),
                )
            }
            Role::Norm(NormSlot::PostAttention) => {
                let l = name_parts(n).layer;
                (
                    true,
                    names
                        .iter()
                        .filter(|(c, r)| {
                            matches!(r, Role::MlpIn | Role::Router) && name_parts(c).layer == l
                        })
                        .map(|(c, _)| c.clone())
                        .collect(),
                )
            }
            Role::Norm(NormSlot::Final) if name_parts(n).layer.is_none() && !tied => (
                true,
                names
                    .iter()
                    .filter(|(_, r)| *r == Role::LmHead)
                    .map(|(c, _)| c.clone())
                    .collect(),
            ),
            _ => (false, vec![]),
        };
        if !slot_ok || consumers.is_empty() {
            continue;
        }
        let bias = n
            .strip_suffix(".weight")
            .map(|p| format!("{p}.bias"))
            .filter(|b| m.tensors.contains_key(b));
        folds.push((n.clone(), bias, consumers));
    }
    if folds.is_empty() {
        bail!("fold_norm: no foldable norm found");
    }
    for (gain, bias, consumers) in folds {
        let mut r = Rng::new(seed, &format!("fold_norm/{gain}"));
        let s: Vec<f32> = (0..h)
            .map(|_| super::rng::exp(spread * r.normal()) as f32)
            .collect();
        for x in [Some(gain.clone()), bias].into_iter().flatten() {
            let v = m.get_mut(&x)?.values_mut(&x)?;
            v.iter_mut().zip(&s).for_each(|(a, b)| *a *= b);
        }
        for c in consumers {
            let t = m.get_mut(&c)?;
            let (rows, cols) = t.dims2();
            if cols != h {
                bail!("fold_norm: {c} has {cols} columns, expected {h}");
            }
            let v = t.values_mut(&c)?;
            for r in 0..rows {
                v[r * cols..(r + 1) * cols]
                    .iter_mut()
                    .zip(&s)
                    .for_each(|(a, b)| *a /= b);
            }
        }
    }
    Ok(())
}

/// Quantise-dequantise one row-major buffer.
pub fn quant_roundtrip(v: &mut [f32], cols: usize, scheme: QuantScheme, block: usize) {
    let (chunk, qmax, qmin) = match scheme {
        QuantScheme::Int8Row => (cols.max(1), 127.0f32, -127.0f32),
        QuantScheme::Int4Block => (block.max(1), 7.0, -8.0),
    };
    for c in v.chunks_mut(chunk) {
        let amax = c.iter().fold(0f32, |a, x| a.max(x.abs()));
        if amax == 0.0 {
            continue;
        }
        let scale = amax / qmax;
        for x in c.iter_mut() {
            *x = (*x / scale).round().clamp(qmin, qmax) * scale;
        }
    }
}

fn quantize(
    m: &mut Model,
    scheme: QuantScheme,
    block: usize,
    include_embeddings: bool,
) -> Result<()> {
    let h = Dims::of(m).map(|d| d.hidden).unwrap_or(0);
    for (name, t) in m.tensors.iter_mut() {
        if t.shape.len() != 2 || !t.dtype.is_float() {
            continue;
        }
        let role = classify(name, &t.shape, h);
        if !include_embeddings && matches!(role, Role::Embed | Role::LmHead | Role::PosEmbed) {
            continue;
        }
        let cols = t.shape[1];
        quant_roundtrip(t.values_mut(name)?, cols, scheme, block);
    }
    Ok(())
}
