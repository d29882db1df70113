//! The AWM weight-matrix fingerprint (Zeng et al., arXiv 2510.06738) over [`crate::cka`]'s
//! debiased CKA and [`crate::hidden_alignment`]'s aligned hidden dimensions: per layer, the
//! Gram matrices over the input dimension of the Q and K projections are compared, layers are
//! paired by index when depths agree and by an assignment otherwise, and the score is the mean
//! of the Q and K CKAs. No I/O.

use std::borrow::Cow;

use anyhow::{Result, bail};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::align::{Matrix, hungarian};
use crate::cka::{
    MatRef, center_gram_unbiased, cka_centered, column_gram, fold_columns, projection_cka,
};
use crate::hidden_alignment::{HiddenAlignment, Side};

/// AWM's hard-coded negative-pair statistics (`main.py`): mean 0.375 %, sd 0.28 % (the sd "was not
/// specified" per the code's own comment). Reported for comparison only; E8's own z uses a null
/// measured on independent pairs.
pub const AWM_NULL_MEAN: f64 = 0.00375;
/// AWM's hard-coded negative-pair standard deviation (see `AWM_NULL_MEAN`).
pub const AWM_NULL_SD: f64 = 0.0028;

/// Q and K projections of one layer (`[out, in]` layout, `in` = hidden width). Either may hold
/// a subset of the output rows (CKA is over the input dimension, so any rows are features).
#[derive(Clone, Copy, Debug)]
pub struct QkLayer<'a> {
    /// Q projection, `[out, in]`.
    pub q: MatRef<'a>,
    /// K projection, `[out, in]`.
    pub k: MatRef<'a>,
    /// The norm gain both read (length = their columns), folded into the columns before the
    /// comparison: the canonical form, computed per layer so no folded copy of the model is
    /// held. `None` compares the matrices as stored.
    pub gain: Option<&'a [f32]>,
}

/// How layers were paired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerPairing {
    /// Layer i of A with layer i of B (same depth).
    SameIndex,
    /// By a Hungarian assignment on mean(Q, K) CKA (depths differ, or asked for).
    Hungarian,
}

/// CKA of one layer pair (indices into the slices given to [`awm`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerCka {
    /// Layer index in A.
    pub layer_a: usize,
    /// Layer index in B.
    pub layer_b: usize,
    /// Linear CKA of the Q projections, after the hidden alignment (0–1).
    pub q: f64,
    /// Linear CKA of the K projections, after the hidden alignment (0–1).
    pub k: f64,
}

/// AWM (attention weight matching): hidden alignment, then per-layer Q/K CKA.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AwmResult {
    /// How B's hidden dimensions were matched to A's.
    pub alignment: HiddenAlignment,
    /// How layers were paired for `layers`.
    pub pairing: LayerPairing,
    /// CKA of each paired layer.
    pub layers: Vec<LayerCka>,
    /// Mean Q CKA, mean K CKA, and their mean: AWM's `Wq_Wk` score.
    pub score_q: f64,
    /// Mean K CKA over `layers`.
    pub score_k: f64,
    /// Mean of `score_q` and `score_k`.
    pub score: f64,
    /// Layers paired by assignment (when depths differ — then the same as `layers` — or when
    /// [`AwmOptions::always_assign`]).
    pub assigned: Option<Assigned>,
}

/// Options of [`awm`].
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwmOptions {
    /// Hidden dims (evenly spaced, of the target's) used to build the layer×layer matrix the layer
    /// assignment is solved on; 0 = all. Matched pairs are then scored on all dims. Bounds the
    /// memory of the all-pairs matrix: (La + Lb) · 2 Grams of this size.
    pub assignment_dims: usize,
    /// Also pair layers by assignment when depths are equal (AWM pairs by index then), reported
    /// as [`AwmResult::assigned`]: catches permuted layers.
    pub always_assign: bool,
}

impl Default for AwmOptions {
    fn default() -> Self {
        AwmOptions {
            assignment_dims: 512,
            always_assign: true,
        }
    }
}

/// One projection as the comparison sees it: the layer's gain folded into its columns (the
/// canonical form), then, on the base side, put in the target's basis (rows × d_target). The
/// target side without a gain is borrowed, not copied.
fn prepared<'a>(
    w: MatRef<'a>,
    gain: Option<&[f32]>,
    align: &HiddenAlignment,
    is_base: bool,
) -> Result<Cow<'a, [f32]>> {
    let folded: Cow<[f32]> = match gain {
        Some(g) if g.len() == w.cols => Cow::Owned(fold_columns(w.data, w.cols, g)),
        Some(g) => bail!(
            "gain has {} values, the projection {} columns",
            g.len(),
            w.cols
        ),
        None => Cow::Borrowed(w.data),
    };
    if is_base && !align.is_identity() {
        return Ok(Cow::Owned(
            align.apply(MatRef::new(&folded, w.rows, w.cols)?)?,
        ));
    }
    if w.cols != align.d_target {
        bail!(
            "projection has {} columns, expected {}",
            w.cols,
            align.d_target
        );
    }
    Ok(folded)
}

/// Centred Grams (Q, K) of one layer of one side, after the alignment for the base side,
/// restricted to the target dims `dims` (all when `None`).
fn centred_grams(
    l: &QkLayer,
    align: &HiddenAlignment,
    is_base: bool,
    dims: Option<&[usize]>,
) -> Result<[Vec<f64>; 2]> {
    let d = align.d_target;
    let mut pair = [Vec::new(), Vec::new()];
    for (slot, w) in pair.iter_mut().zip([l.q, l.k]) {
        let full = prepared(w, l.gain, align, is_base)?;
        let (mat, n): (Cow<[f32]>, usize) = match dims {
            Some(dims) => (
                Cow::Owned(
                    full.chunks_exact(d)
                        .flat_map(|row| dims.iter().map(move |&c| row[c]))
                        .collect(),
                ),
                dims.len(),
            ),
            None => (full, d),
        };
        let mut g = column_gram(MatRef::new(&mat, w.rows, n)?);
        center_gram_unbiased(&mut g, n)?;
        *slot = g;
    }
    Ok(pair)
}

fn layer_cka(a: &QkLayer, b: &QkLayer, align: &HiddenAlignment) -> Result<(f64, f64)> {
    let d = align.d_target;
    let mut out = [0.0; 2];
    for (slot, (wa, wb)) in out.iter_mut().zip([(a.q, b.q), (a.k, b.k)]) {
        let pa = prepared(wa, a.gain, align, align.base == Side::A)?;
        let pb = prepared(wb, b.gain, align, align.base == Side::B)?;
        *slot = projection_cka(MatRef::new(&pa, wa.rows, d)?, MatRef::new(&pb, wb.rows, d)?)?;
    }
    Ok((out[0], out[1]))
}

/// Matched `(layer_a, layer_b)` pairs and the (Q, K) CKA of every cell (row-major, B × A).
type LayerAssignment = (Vec<(usize, usize)>, Vec<(f64, f64)>);

/// Layers paired by a Hungarian assignment on mean(Q, K) CKA over `dims` (rows = B layers).
fn assign_layers(
    a: &[QkLayer],
    b: &[QkLayer],
    align: &HiddenAlignment,
    dims: Option<&[usize]>,
) -> Result<LayerAssignment> {
    let ga = a
        .iter()
        .map(|l| centred_grams(l, align, align.base == Side::A, dims))
        .collect::<Result<Vec<_>>>()?;
    let gb = b
        .iter()
        .map(|l| centred_grams(l, align, align.base == Side::B, dims))
        .collect::<Result<Vec<_>>>()?;
    let cells: Vec<(f64, f64)> = (0..b.len() * a.len())
        .into_par_iter()
        .map(|x| {
            let (j, i) = (x / a.len(), x % a.len());
            (
                cka_centered(&ga[i][0], &gb[j][0]),
                cka_centered(&ga[i][1], &gb[j][1]),
            )
        })
        .collect();
    let s = Matrix::from_fn(b.len(), a.len(), |j, i| {
        let (q, k) = cells[j * a.len() + i];
        (q + k) / 2.0
    });
    let mut pairs: Vec<(usize, usize)> = hungarian(&s)
        .into_iter()
        .enumerate()
        .filter_map(|(j, m)| m.map(|i| (i, j)))
        .collect();
    pairs.sort_unstable();
    Ok((pairs, cells))
}

fn summarise(layers: &[LayerCka]) -> (f64, f64, f64) {
    let n = layers.len().max(1) as f64;
    let q = layers.iter().map(|l| l.q).sum::<f64>() / n;
    let k = layers.iter().map(|l| l.k).sum::<f64>() / n;
    (q, k, (q + k) / 2.0)
}

/// Layers paired by assignment, and their score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assigned {
    /// CKA of each assigned layer pair.
    pub layers: Vec<LayerCka>,
    /// Mean of mean Q CKA and mean K CKA over those pairs.
    pub score: f64,
    /// Pairs matched off the diagonal.
    pub off_diagonal: usize,
}

/// AWM steps 2–4 for an alignment from [`crate::hidden_alignment::align_hidden`] (or [`HiddenAlignment::identity`]).
pub fn awm(
    a: &[QkLayer],
    b: &[QkLayer],
    align: &HiddenAlignment,
    opts: &AwmOptions,
) -> Result<AwmResult> {
    if a.is_empty() || b.is_empty() {
        bail!("no Q/K layers to compare");
    }
    let d = align.d_target;
    let mut same = Vec::new();
    if a.len() == b.len() {
        // a layer per thread: memory stays at one layer's prepared matrices (and Grams) each
        same = (0..a.len())
            .into_par_iter()
            .map(|i| {
                let (q, k) = layer_cka(&a[i], &b[i], align)?;
                Ok(LayerCka {
                    layer_a: i,
                    layer_b: i,
                    q,
                    k,
                })
            })
            .collect::<Result<Vec<_>>>()?;
    }
    let mut assigned = None;
    if a.len() != b.len() || opts.always_assign {
        let m = if opts.assignment_dims == 0 {
            d
        } else {
            opts.assignment_dims.min(d)
        };
        let dims: Option<Vec<usize>> = (m < d).then(|| (0..m).map(|i| i * d / m).collect());
        let (pairs, cells) = assign_layers(a, b, align, dims.as_deref())?;
        let layers = pairs
            .into_par_iter()
            .map(|(i, j)| {
                let (q, k) = if let Some(s) = same.get(i).filter(|_| i == j) {
                    (s.q, s.k)
                } else if dims.is_none() {
                    cells[j * a.len() + i]
                } else {
                    layer_cka(&a[i], &b[j], align)?
                };
                Ok(LayerCka {
                    layer_a: i,
                    layer_b: j,
                    q,
                    k,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let off_diagonal = layers.iter().filter(|l| l.layer_a != l.layer_b).count();
        let score = summarise(&layers).2;
        assigned = Some(Assigned {
            layers,
            score,
            off_diagonal,
        });
    }
    let (pairing, layers) = if a.len() == b.len() {
        (LayerPairing::SameIndex, same)
    } else {
        let l = assigned
            .as_ref()
            .map(|x| x.layers.clone())
            .unwrap_or_default();
        (LayerPairing::Hungarian, l)
    };
    let (score_q, score_k, score) = summarise(&layers);
    Ok(AwmResult {
        alignment: align.clone(),
        pairing,
        layers,
        score_q,
        score_k,
        score,
        assigned,
    })
}

/// AWM's absolute z against its hard-coded negative-pair constants.
pub fn awm_constant_z(score: f64) -> f64 {
    ((score - AWM_NULL_MEAN) / AWM_NULL_SD).abs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cka::test_noise as noise;

    /// A gain carried by the layer is the same as multiplying it into the columns beforehand.
    #[test]
    fn layer_gain_equals_prefolded_columns() {
        let (d, r) = (16, 6);
        let (q, k) = (noise(20, r * d), noise(21, 3 * d));
        let g: Vec<f32> = noise(22, d).iter().map(|v| 1.5 + v).collect();
        let (fq, fk) = (fold_columns(&q, d, &g), fold_columns(&k, d, &g));
        let (oq, ok) = (noise(23, r * d), noise(24, 3 * d));
        let other = QkLayer {
            q: MatRef::new(&oq, r, d).unwrap(),
            k: MatRef::new(&ok, 3, d).unwrap(),
            gain: None,
        };
        let with_gain = QkLayer {
            q: MatRef::new(&q, r, d).unwrap(),
            k: MatRef::new(&k, 3, d).unwrap(),
            gain: Some(&g),
        };
        let prefolded = QkLayer {
            q: MatRef::new(&fq, r, d).unwrap(),
            k: MatRef::new(&fk, 3, d).unwrap(),
            gain: None,
        };
        let al = HiddenAlignment::identity(d);
        let x = layer_cka(&with_gain, &other, &al).unwrap();
        let y = layer_cka(&prefolded, &other, &al).unwrap();
        assert!((x.0 - y.0).abs() < 1e-12 && (x.1 - y.1).abs() < 1e-12);
        // and differs from ignoring the gain
        let raw = QkLayer {
            gain: None,
            ..with_gain
        };
        assert!((layer_cka(&raw, &other, &al).unwrap().0 - x.0).abs() > 1e-6);
        // a gain of the wrong width is an error, not a silent raw comparison
        let bad = QkLayer {
            gain: Some(&g[..d - 1]),
            ..with_gain
        };
        assert!(layer_cka(&bad, &other, &al).is_err());
    }

    #[test]
    fn z_scores() {
        assert!((awm_constant_z(0.00375 + 0.0028 * 2.0) - 2.0).abs() < 1e-12);
    }
}
