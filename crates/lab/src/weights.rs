//! "Trained-looking" weights with known ground truth.
//!
//! Every model draws its own coordinates from the same *marginal* recipe:
//! - norm gains are positive around a per-model mean with a depth trend (layer 0's input norm is
//!   small and wide, unlike the others), a per-model coordinate profile shared by the model's
//!   layers, and a few outlier coordinates (positions random per model);
//! - projections have per-layer std trends, per-row scales and per-hidden-coordinate column scales
//!   (larger on the outlier coordinates);
//! - embedding row norms follow token frequency rank; padding rows are near zero.
//!
//! Independent models (different seeds) therefore share distributions (raw norm cosine 0.96–0.98,
//! between Solar–GLM's 0.95 and Phi–GLM's 0.99) but no coordinates (Pearson ≈ 0). Derived models
//! inherit coordinates because transforms start from the parent's tensors.

use std::ops::Range;

use anyhow::Result;
use rayon::prelude::*;
use serde_json::json;

use super::arch::{ArchConfig, NormSlot, Role, TensorSpec};
use super::model::{Layout, Model, Tensor, json_bytes};
use super::rng::{Rng, exp, ln};
use super::tokenizer;

pub use crate::recipe::Recipe;

/// Per-model random structure shared by all its tensors.
#[derive(Clone, Debug)]
pub struct ModelStats {
    /// Model-level norm mean (recipe mean with a small per-seed jitter).
    pub norm_mean: f64,
    /// Outlier hidden coordinates.
    pub outliers: Vec<usize>,
    /// Per-hidden-coordinate scale of matrices that read or write the residual.
    pub col_scale: Vec<f32>,
    /// Per-coordinate norm profile shared by this model's layers.
    pub norm_profile: Vec<f32>,
    /// Frequency rank of each embedding row (`None` = padding).
    pub rank: Vec<Option<usize>>,
}

impl ModelStats {
    /// Derive the per-model structure of `recipe`.
    pub fn new(recipe: &Recipe, rank: Vec<Option<usize>>) -> Self {
        let h = recipe.arch.hidden;
        let s = recipe.seed;
        let norm_mean = recipe.norm_mean * (1.0 + 0.05 * Rng::new(s, "model/norm-mean").normal());
        let k = (h / 256).max(1);
        let outliers = Rng::new(s, "model/outliers").permutation(h)[..k].to_vec();
        let mut r = Rng::new(s, "model/col-scale");
        let mut col_scale: Vec<f32> = (0..h).map(|_| exp(0.15 * r.normal()) as f32).collect();
        for &o in &outliers {
            col_scale[o] *= 2.5;
        }
        let mut r = Rng::new(s, "model/norm-profile");
        let norm_profile = (0..h).map(|_| r.normal() as f32).collect();
        ModelStats {
            norm_mean,
            outliers,
            col_scale,
            norm_profile,
            rank,
        }
    }
}

fn depth(arch: &ArchConfig, layer: Option<usize>) -> f64 {
    match layer {
        Some(l) if arch.layers > 1 => (l as f64 / (arch.layers - 1) as f64).min(1.0),
        Some(_) => 0.0,
        None => 1.0,
    }
}

/// `(rows, cols)` of a tensor spec; a vector is one row.
fn rows_cols(spec: &TensorSpec) -> (usize, usize) {
    if spec.shape.len() == 1 {
        (1, spec.shape[0])
    } else {
        (spec.shape[0], spec.shape[1])
    }
}

/// Rows `rows` of tensor `spec` (row-major, `rows.len() * cols` values). Any row range gives
/// exactly the values of the same rows of the full tensor.
pub fn generate_rows(
    recipe: &Recipe,
    stats: &ModelStats,
    spec: &TensorSpec,
    rows: Range<usize>,
) -> Vec<f32> {
    let seed = recipe.seed;
    let (nrows, cols) = rows_cols(spec);
    let rows = rows.start.min(nrows)..rows.end.min(nrows);
    let mut out = Vec::with_capacity(rows.len() * cols);
    match spec.role {
        Role::Norm(slot) => {
            norm_gains(recipe, stats, spec, slot, &mut out);
        }
        Role::NormBias
        | Role::OBias
        | Role::MlpOutBias
        | Role::MlpInBias
        | Role::PoolerBias
        | Role::LmHeadBias
        | Role::Other
            if spec.shape.len() == 1 =>
        {
            vector_bias(recipe, stats, spec, &mut out);
        }
        Role::QBias | Role::KBias | Role::VBias => qkv_bias(recipe, spec, &mut out),
        Role::RouterBias => {
            let mut r = Rng::new(seed, &spec.name);
            for _ in 0..cols {
                out.push((1.0 + 0.3 * r.normal()) as f32);
            }
        }
        _ => matrix_rows(recipe, stats, spec, rows, &mut out),
    }
    out
}

/// Norm gains: positive around the model mean with a depth trend, the model's coordinate
/// profile and its outlier coordinates (layer 0's input RMSNorm: small and wide).
fn norm_gains(
    recipe: &Recipe,
    stats: &ModelStats,
    spec: &TensorSpec,
    slot: NormSlot,
    out: &mut Vec<f32>,
) {
    let seed = recipe.seed;
    let arch = &recipe.arch;
    let h = arch.hidden;
    let t = depth(arch, spec.layer);
    let (_, cols) = rows_cols(spec);
    let m = stats.norm_mean;
    let mut r = Rng::new(seed, &spec.name);
    let layer0_input = spec.layer == Some(0) && slot == NormSlot::Input && !arch.layer_norm;
    let (mean, rel) = if layer0_input {
        (m * 0.12, 0.5)
    } else {
        let f = match slot {
            NormSlot::Input => 0.55 + 0.6 * t,
            NormSlot::PostAttention => 0.8 + 0.5 * t,
            NormSlot::Final => 1.6,
            NormSlot::Other => 1.0,
        };
        (m * f, 0.12)
    };
    for i in 0..cols {
        let z = r.normal();
        let p = if cols == h {
            stats.norm_profile[i] as f64
        } else {
            0.0
        };
        let mut g = mean * (1.0 + rel * (0.6 * p + 0.8 * z));
        if !layer0_input && cols == h && stats.outliers.contains(&i) {
            g = mean * 2.5 * (1.0 + 0.1 * z);
        }
        out.push(g.max(mean * 0.02) as f32);
    }
}

/// A bias vector: small noise (norm biases scale with the model's norm mean).
fn vector_bias(recipe: &Recipe, stats: &ModelStats, spec: &TensorSpec, out: &mut Vec<f32>) {
    let seed = recipe.seed;
    let (_, cols) = rows_cols(spec);
    let m = stats.norm_mean;
    let mut r = Rng::new(seed, &spec.name);
    let sd = if spec.role == Role::NormBias {
        0.02 * m
    } else {
        0.02
    };
    for _ in 0..cols {
        out.push((sd * r.normal()) as f32);
    }
}

/// Q/K/V biases: a per-head offset plus noise, with rare large values.
fn qkv_bias(recipe: &Recipe, spec: &TensorSpec, out: &mut Vec<f32>) {
    let seed = recipe.seed;
    let arch = &recipe.arch;
    let (_, cols) = rows_cols(spec);
    let mut r = Rng::new(seed, &spec.name);
    let hd = arch.head_dim.max(1);
    let head_off: Vec<f64> = (0..cols.div_ceil(hd)).map(|_| 0.1 * r.normal()).collect();
    for i in 0..cols {
        let mut v = head_off[i / hd] + 0.08 * r.normal();
        if r.uniform() < 0.01 {
            v *= 10.0;
        }
        out.push(v as f32);
    }
}

/// Rows `rows` of a matrix: per-role std with a depth trend, per-row scales (embedding rows by
/// token frequency rank) and the model's column scales on the residual coordinates.
fn matrix_rows(
    recipe: &Recipe,
    stats: &ModelStats,
    spec: &TensorSpec,
    rows: Range<usize>,
    out: &mut Vec<f32>,
) {
    let seed = recipe.seed;
    let arch = &recipe.arch;
    let h = arch.hidden;
    let t = depth(arch, spec.layer);
    let (nrows, cols) = rows_cols(spec);
    let (base, trend) = match spec.role {
        Role::Q | Role::K => (1.0, 1.0 + 0.6 * t),
        Role::V => (0.7, 1.0 - 0.3 * t),
        Role::O => (0.7, 1.0 - 0.3 * t + 0.2 * t * t),
        Role::MlpIn => (0.9, 1.0 + 0.2 * t),
        Role::MlpOut => (0.6, 1.0 + 0.3 * t),
        Role::Router => (2.0, 1.0 + 0.5 * t),
        Role::Embed | Role::LmHead => (1.0, 1.0),
        Role::PosEmbed => (0.5, 1.0),
        _ => (0.5, 1.0),
    };
    let expert_scale = if super::arch::name_parts(&spec.name).expert.is_some() {
        exp(0.1 * Rng::new(seed, &format!("{}#expert-scale", spec.name)).normal())
    } else {
        1.0
    };
    let sd = base * trend * expert_scale / (cols as f64).sqrt();
    let reads_residual = cols == h && !matches!(spec.role, Role::O | Role::MlpOut | Role::Other);
    let writes_residual = nrows == h && matches!(spec.role, Role::O | Role::MlpOut | Role::EhProj);
    for row in rows {
        let mut r = Rng::indexed(seed, &spec.name, row as u64);
        let mut rs = exp(0.25 * r.normal());
        if matches!(spec.role, Role::Embed | Role::LmHead) {
            rs *= match stats.rank.get(row).copied().flatten() {
                Some(rank) => 0.5 + 1.0 / (1.0 + ln(1.0 + rank as f64 / 32.0)),
                None => 0.02,
            };
        }
        if writes_residual {
            rs *= (stats.col_scale[row] as f64).sqrt();
        }
        let s = sd * rs;
        if reads_residual {
            for j in 0..cols {
                out.push((s * r.normal() * stats.col_scale[j] as f64) as f32);
            }
        } else {
            for _ in 0..cols {
                out.push((s * r.normal()) as f32);
            }
        }
    }
}

/// Generate a complete model (tensors in parallel, byte-stable).
pub fn generate(recipe: &Recipe) -> Result<Model> {
    let tok = tokenizer::generate(recipe.arch.kind, recipe.arch.vocab, recipe.tokenizer_seed)?;
    let stats = ModelStats::new(recipe, tok.rank.clone());
    let specs = recipe.arch.tensors();
    let tensors: Vec<(String, Tensor)> = specs
        .par_iter()
        .map(|s| {
            let rows = if s.shape.len() == 1 { 1 } else { s.shape[0] };
            let mut v = generate_rows(recipe, &stats, s, 0..rows);
            super::model::round_values(s.dtype, &mut v);
            (s.name.clone(), Tensor::new(s.dtype, s.shape.clone(), v))
        })
        .collect();
    let mut model = Model {
        tensors: tensors.into_iter().collect(),
        config: recipe.arch.config_json(&tok.specials),
        tokenizer: Some(tok.json),
        layout: Layout {
            shards: recipe.shards,
            order: specs.iter().map(|s| s.name.clone()).collect(),
            ..Default::default()
        },
        recipe: Some(recipe.clone()),
        ..Default::default()
    };
    model.metadata.insert("format".into(), "pt".into());
    model
        .files
        .insert("tokenizer_config.json".into(), json_bytes(&tok.config));
    if recipe.arch.kind != super::arch::ArchKind::Bert {
        let gen_cfg = json!({
            "_from_model_config": true,
            "bos_token_id": tok.specials.bos,
            "eos_token_id": tok.specials.eos,
            "pad_token_id": tok.specials.pad,
            "transformers_version": "4.56.0",
        });
        model
            .files
            .insert("generation_config.json".into(), json_bytes(&gen_cfg));
    }
    Ok(model)
}
