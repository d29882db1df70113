//! What a transform is: the [`TransformSpec`] list (with each one's defaults and the property
//! it preserves) and its inline syntax `op(k=v,…)+op(…)`.

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};

use crate::arch::ArchKind;

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
    /// Whisper, Falcon, BLOOM, GPT-NeoX, Gemma 3, generic or nonsense names: [`crate::scheme`]).
    RenameScheme {
        /// Target naming.
        scheme: crate::scheme::Scheme,
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
        basis: crate::obfuscate::SliceBasis,
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
