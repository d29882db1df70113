//! Obfuscating reparameterisations of the residual stream, the tricks a plagiarist who knows the
//! published fingerprints would use (QuaRot / SliceGPT style):
//!
//! - [`fold_gains`]: every pre-norm RMSNorm gain is multiplied into the columns of the matrices
//!   that read the norm's output and set to 1. The final norm folds into the output head, which
//!   is untied from the embedding first when the two were tied. Function unchanged.
//! - [`rotate_hidden`]: gains folded, then the residual stream is expressed in a seeded Haar-random
//!   orthogonal basis `Q`: readers `W ← W·Q`, writers `W ← Qᵀ·W`, embedding rows `e ← Qᵀe`.
//!   RMSNorm commutes with an orthogonal map only once its gain is 1 (`‖Qᵀx‖ = ‖x‖`), which is why
//!   the folding comes first. Function unchanged.
//! - [`slice_hidden`]: like the rotation, then the last `fraction` of the new residual coordinates
//!   are deleted (SliceGPT). Not exact: the lab's forward pass measures the error.
//!
//! Convention: a `d × k` map `M` with orthonormal columns takes the residual `x` to `x' = Mᵀx`
//! (`k = d` and `M` orthogonal for the rotation). Only pre-norm decoders with RMSNorm are
//! supported: a LayerNorm's mean subtraction does not commute with a rotation.

use anyhow::{Result, anyhow, bail};
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::arch::{NormSlot, Role, classify, name_parts};
use super::dims::Dims;
use super::model::{Model, Tensor};
use super::rng::Rng;

/// Basis [`slice_hidden`] rotates into before deleting coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SliceBasis {
    /// Principal axes of the embedding rows, largest variance first (SliceGPT keeps the
    /// high-variance directions of the residual stream; the embedding is its first state).
    #[default]
    Pca,
    /// A seeded random orthogonal basis: slicing it throws away information evenly.
    Random,
}

fn tied(m: &Model) -> bool {
    m.config
        .get("tie_word_embeddings")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn roles(m: &Model, h: usize) -> Vec<(String, Role)> {
    m.tensors
        .iter()
        .map(|(n, t)| (n.clone(), classify(n, &t.shape, h)))
        .collect()
}

fn refuse_layernorm(m: &Model, h: usize, op: &str) -> Result<()> {
    if m.tensors.keys().any(|k| k.contains("encoder.layer.")) {
        bail!("{op}: needs a pre-norm decoder (BERT is post-norm)");
    }
    if let Some((n, _)) = roles(m, h).into_iter().find(|(_, r)| *r == Role::NormBias) {
        bail!(
            "{op}: {n} is a LayerNorm bias; mean subtraction does not commute with the transform"
        );
    }
    Ok(())
}

/// Gives the model its own output head when it reads the embedding through tied weights.
fn untie(m: &mut Model, h: usize) -> Result<()> {
    let has_head = roles(m, h).iter().any(|(_, r)| *r == Role::LmHead);
    if has_head {
        m.set_cfg("tie_word_embeddings", json!(false));
        return Ok(());
    }
    let emb = roles(m, h)
        .into_iter()
        .find(|(_, r)| *r == Role::Embed)
        .map(|(n, _)| n)
        .ok_or_else(|| anyhow!("no embedding tensor to untie"))?;
    let t = m.get(&emb)?.clone();
    m.tensors.insert("lm_head.weight".into(), t);
    m.set_cfg("tie_word_embeddings", json!(false));
    Ok(())
}

/// Multiplies columns `[start, start + g.len())` of every row of `name` by `g`.
fn scale_cols(m: &mut Model, name: &str, start: usize, g: &[f32]) -> Result<()> {
    let t = m.get_mut(name)?;
    let (rows, cols) = t.dims2();
    if t.shape.len() != 2 || cols < start + g.len() {
        bail!(
            "{name} has shape {:?}, cannot scale {} columns from {start}",
            t.shape,
            g.len()
        );
    }
    let v = t.values_mut(name)?;
    for r in 0..rows {
        v[r * cols + start..r * cols + start + g.len()]
            .iter_mut()
            .zip(g)
            .for_each(|(a, b)| *a *= b);
    }
    Ok(())
}

/// Folds every pre-norm RMSNorm gain into its readers and sets it to 1 (see the module doc).
/// The MTP `shared_head.norm` feeds the shared output head, which also reads the final norm,
/// so it cannot be folded: models with one are refused.
pub fn fold_gains(m: &mut Model) -> Result<()> {
    let h = Dims::of(m)?.hidden;
    refuse_layernorm(m, h, "fold_gains")?;
    if tied(m) || !roles(m, h).iter().any(|(_, r)| *r == Role::LmHead) {
        untie(m, h)?;
    }
    let names = roles(m, h);
    for (n, role) in &names {
        let Role::Norm(slot) = role else { continue };
        let layer = name_parts(n).layer;
        let same_layer = |c: &str| name_parts(c).layer == layer;
        // (reader, first column) pairs
        let readers: Vec<(String, usize)> = match slot {
            NormSlot::Input => names
                .iter()
                .filter(|(c, r)| matches!(r, Role::Q | Role::K | Role::V) && same_layer(c))
                .map(|(c, _)| (c.clone(), 0))
                .collect(),
            NormSlot::PostAttention => names
                .iter()
                .filter(|(c, r)| matches!(r, Role::MlpIn | Role::Router) && same_layer(c))
                .map(|(c, _)| (c.clone(), 0))
                .collect(),
            NormSlot::Final if layer.is_none() => names
                .iter()
                .filter(|(_, r)| *r == Role::LmHead)
                .map(|(c, _)| (c.clone(), 0))
                .collect(),
            NormSlot::Other => {
                // MTP: eh_proj reads [enorm(embedding); hnorm(hidden)]
                let start = if n.contains("enorm") { 0 } else { h };
                names
                    .iter()
                    .filter(|(c, r)| *r == Role::EhProj && same_layer(c))
                    .map(|(c, _)| (c.clone(), start))
                    .collect()
            }
            NormSlot::Final => Vec::new(),
        };
        if readers.is_empty() {
            bail!("fold_gains: no matrix reads {n}, so its gain cannot be folded");
        }
        let g = m.get(n)?.values(n)?.to_vec();
        for (c, start) in readers {
            scale_cols(m, &c, start, &g)?;
        }
        m.get_mut(n)?
            .values_mut(n)?
            .iter_mut()
            .for_each(|x| *x = 1.0);
    }
    Ok(())
}

/// A seeded Haar-random `d × d` orthogonal matrix: Q of the QR factorisation of a Gaussian
/// matrix, columns signed by R's diagonal so the distribution is uniform.
pub fn random_orthogonal(d: usize, seed: u64, label: &str) -> DMatrix<f64> {
    let mut r = Rng::new(seed, label);
    let g = DMatrix::from_fn(d, d, |_, _| r.normal());
    let qr = g.qr();
    let (mut q, rr) = (qr.q(), qr.r());
    for j in 0..d {
        if rr[(j, j)] < 0.0 {
            q.column_mut(j).neg_mut();
        }
    }
    q
}

/// Principal axes (columns, descending variance) of the rows of `emb` (`vocab × d`, uncentred:
/// the residual stream is not mean-free either).
fn pca_basis(emb: &[f32], d: usize) -> Result<DMatrix<f64>> {
    if d == 0 || !emb.len().is_multiple_of(d) {
        bail!("embedding does not have {d} columns");
    }
    let rows = emb.len() / d;
    let e = DMatrix::from_row_iterator(rows, d, emb.iter().map(|&v| f64::from(v)));
    let eig = (e.transpose() * &e).symmetric_eigen();
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| {
        eig.eigenvalues[b]
            .total_cmp(&eig.eigenvalues[a])
            .then(a.cmp(&b))
    });
    Ok(DMatrix::from_fn(d, d, |i, j| {
        eig.eigenvectors[(i, order[j])]
    }))
}

/// `W·M` for a row-major `rows × d` matrix (readers, embeddings): `rows × k`.
fn right_mul(v: &[f32], rows: usize, d: usize, m: &DMatrix<f64>) -> Vec<f32> {
    let w = DMatrix::from_row_iterator(rows, d, v.iter().map(|&x| f64::from(x)));
    let p = w * m;
    let k = m.ncols();
    let mut out = Vec::with_capacity(rows * k);
    for r in 0..rows {
        out.extend((0..k).map(|c| p[(r, c)] as f32));
    }
    out
}

/// `Mᵀ·W` for a row-major `d × cols` matrix (writers, biases with cols = 1): `k × cols`.
fn left_mul(v: &[f32], d: usize, cols: usize, m: &DMatrix<f64>) -> Vec<f32> {
    let w = DMatrix::from_row_iterator(d, cols, v.iter().map(|&x| f64::from(x)));
    let p = m.transpose() * w;
    let mut out = Vec::with_capacity(m.ncols() * cols);
    for r in 0..m.ncols() {
        out.extend((0..cols).map(|c| p[(r, c)] as f32));
    }
    out
}

/// Re-expresses the residual stream through `map` (`d × k`, orthonormal columns). Norm gains
/// must already be 1; they become `gain` (of length k).
fn apply_residual_map(m: &mut Model, map: &DMatrix<f64>, gain: f32) -> Result<()> {
    let d = Dims::of(m)?;
    let h = d.hidden;
    let k = map.ncols();
    for (name, role) in roles(m, h) {
        let t = m.get_mut(&name)?;
        let (rows, cols) = t.dims2();
        let shape = t.shape.clone();
        let bad = || anyhow!("tensor {name} has shape {shape:?}, expected a hidden axis of {h}");
        let new: Option<(Vec<f32>, Vec<usize>)> = match role {
            Role::Embed
            | Role::LmHead
            | Role::PosEmbed
            | Role::Q
            | Role::K
            | Role::V
            | Role::MlpIn
            | Role::Router => {
                if shape.len() != 2 || cols != h {
                    return Err(bad());
                }
                Some((right_mul(t.values(&name)?, rows, h, map), vec![rows, k]))
            }
            Role::O | Role::MlpOut => {
                if shape.len() != 2 || rows != h {
                    return Err(bad());
                }
                Some((left_mul(t.values(&name)?, h, cols, map), vec![k, cols]))
            }
            Role::OBias | Role::MlpOutBias => {
                if shape != [h] {
                    return Err(bad());
                }
                Some((left_mul(t.values(&name)?, h, 1, map), vec![k]))
            }
            Role::Norm(_) => {
                let v = t.values(&name)?;
                if shape != [h] || v.iter().any(|x| *x != 1.0) {
                    bail!("{name}: norm gains must be folded (all 1) before a rotation");
                }
                Some((vec![gain; k], vec![k]))
            }
            Role::EhProj => {
                if shape.len() != 2 || rows != h || cols != 2 * h {
                    return Err(bad());
                }
                // columns: two stacked residual vectors; rows: a residual write
                let v = t.values(&name)?;
                let w = DMatrix::from_row_iterator(h, 2 * h, v.iter().map(|&x| f64::from(x)));
                let mut block = DMatrix::<f64>::zeros(2 * h, 2 * k);
                block.view_mut((0, 0), (h, k)).copy_from(map);
                block.view_mut((h, k), (h, k)).copy_from(map);
                let p = map.transpose() * w * block;
                let mut out = Vec::with_capacity(k * 2 * k);
                for r in 0..k {
                    out.extend((0..2 * k).map(|c| p[(r, c)] as f32));
                }
                Some((out, vec![k, 2 * k]))
            }
            Role::Other if shape.contains(&h) => {
                bail!("tensor {name} {shape:?}: unknown relation to the residual stream")
            }
            _ => None,
        };
        if let Some((values, shape)) = new {
            let dtype = t.dtype;
            *t = Tensor::new(dtype, shape, values);
        }
    }
    if k != h {
        if m.cfg_usize("head_dim").is_none() && d.head_dim > 0 {
            m.set_cfg("head_dim", json!(d.head_dim));
        }
        m.set_cfg("hidden_size", json!(k));
    }
    Ok(())
}

/// Folds the gains, then rotates the residual stream by a seeded random orthogonal matrix.
pub fn rotate_hidden(m: &mut Model, seed: u64) -> Result<()> {
    fold_gains(m)?;
    let h = Dims::of(m)?.hidden;
    let q = random_orthogonal(h, seed, "rotate_hidden");
    apply_residual_map(m, &q, 1.0)
}

/// Folds the gains, rotates into `basis`, and deletes the last `fraction` of the residual
/// coordinates. The remaining norms get gain `√(d/k)`: RMSNorm divides by the root mean square
/// over the k kept coordinates, so without it every normalised vector would shrink by `√(k/d)`.
pub fn slice_hidden(m: &mut Model, fraction: f64, basis: SliceBasis, seed: u64) -> Result<()> {
    if !(0.0..1.0).contains(&fraction) {
        bail!("slice_hidden: fraction must be in [0, 1)");
    }
    fold_gains(m)?;
    let d = Dims::of(m)?;
    let h = d.hidden;
    let k = h - ((h as f64 * fraction).round() as usize).min(h - 1);
    let full = match basis {
        SliceBasis::Random => random_orthogonal(h, seed, "slice_hidden"),
        SliceBasis::Pca => {
            let emb = roles(m, h)
                .into_iter()
                .find(|(_, r)| *r == Role::Embed)
                .map(|(n, _)| n)
                .ok_or_else(|| anyhow!("slice_hidden: no embedding for the PCA basis"))?;
            pca_basis(m.get(&emb)?.values(&emb)?, h)?
        }
    };
    let map = full.columns(0, k).into_owned();
    apply_residual_map(m, &map, (h as f64 / k as f64).sqrt() as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_orthogonal_is_orthogonal_and_seeded() {
        let q = random_orthogonal(17, 3, "t");
        let i = q.transpose() * &q;
        assert!((i - DMatrix::<f64>::identity(17, 17)).abs().max() < 1e-12);
        assert_eq!(q, random_orthogonal(17, 3, "t"));
        assert_ne!(q, random_orthogonal(17, 4, "t"));
    }

    #[test]
    fn pca_basis_orders_by_variance() {
        // rows spread 3× more along the second axis than the first
        let emb: Vec<f32> = (0..50)
            .flat_map(|i| {
                let t = i as f32 - 24.5;
                [0.1 * t, 3.0 * t]
            })
            .collect();
        let b = pca_basis(&emb, 2).unwrap();
        assert!(b[(1, 0)].abs() > 0.999, "first axis is the wide one: {b}");
    }
}
