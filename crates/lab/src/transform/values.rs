//! Transforms of values in place: head truncation, norm folding, quantisation round trips.

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::QuantScheme;
use crate::arch::{NormSlot, Role, classify, name_parts};
use crate::dims::Dims;
use crate::model::Model;
use crate::rng::Rng;

pub(super) fn truncate_heads(m: &mut Model, q_heads: usize) -> Result<()> {
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

pub(super) fn fold_norm(m: &mut Model, spread: f64, seed: u64) -> Result<()> {
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
            .map(|_| crate::rng::exp(spread * r.normal()) as f32)
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

pub(super) fn quantize(
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
