//! Centered kernel alignment (CKA) and the AWM weight-matrix fingerprint (experiment E8).
//!
//! AWM (Zeng et al., arXiv 2510.06738) compares two models' attention Q and K projections with
//! *debiased* linear CKA, taking the hidden (input) dimensions as the samples:
//!
//! 1. the hidden dimensions of the two models are lined up by a linear assignment on the columns
//!    of their embedding matrices over shared tokens (cost `1 − |cos|`, keeping the sign), so a
//!    hidden-dimension permutation with sign flips cannot hide a derivation;
//! 2. per layer, the Gram matrices over the input dimension, `K = WᵀW` (d×d), of the aligned
//!    base projection and of the target projection are compared with Kornblith's unbiased CKA —
//!    invariant to any orthogonal transform and scaling of the output rows, and to head counts;
//! 3. layers are paired by index when depths agree, by a Hungarian assignment otherwise;
//! 4. score = (mean Q CKA + mean K CKA) / 2.
//!
//! [`center_gram_unbiased`] and [`cka_centered`] follow AWM's `similarity_metrics.py` exactly
//! (methods digest §7.2); [`hsic_unbiased`] is the Song et al. U-statistic written out directly,
//! an independent route to the same number used by the tests. All arithmetic is f64. No I/O.

use std::borrow::Cow;

use anyhow::{Result, bail};
use nalgebra::DMatrix;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::align::{Matrix, hungarian};

/// AWM's hard-coded negative-pair statistics (`main.py`): mean 0.375 %, sd 0.28 % (the sd "was not
/// specified" per the code's own comment). Reported for comparison only; E8's own z uses a null
/// measured on independent pairs.
pub const AWM_NULL_MEAN: f64 = 0.00375;
pub const AWM_NULL_SD: f64 = 0.0028;

/// Default largest dimension solved with the exact assignment; larger ones use
/// [`greedy_assignment`]. Measured (`cargo bench -- lap`, 2 cores), scipy's algorithm via `lsap`:
/// 0.02 s (planted permutation) / 0.12 s (unrelated columns) at 1024 and 0.42 s / 3.0 s at 4096,
/// where the greedy pass (a sort of d² entries) takes 2.4–3.2 s. On the full-size replica's
/// embedding columns at 4096, pathfinding's Kuhn–Munkres (used before) took 50–70 s per pair.
pub const DEFAULT_LAP_CAP: usize = 8192;

/// A borrowed row-major f32 matrix.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
}

impl<'a> MatRef<'a> {
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Result<MatRef<'a>> {
        if rows.checked_mul(cols) != Some(data.len()) {
            bail!("{} values do not fill a {rows}x{cols} matrix", data.len());
        }
        Ok(MatRef { data, rows, cols })
    }
}

/// Multiplies column `j` of every row by `g[j]` (a norm gain folded into the matrix that
/// reads the normalised vector: the canonical form of `experiments::canonical`).
pub fn fold_columns(w: &[f32], cols: usize, g: &[f32]) -> Vec<f32> {
    w.chunks_exact(cols.max(1))
        .flat_map(|row| row.iter().zip(g).map(|(a, b)| a * b))
        .collect()
}

/// `K = WᵀW` (cols × cols, row-major, f64): the Gram matrix over the columns of `w`, i.e. with
/// the columns (hidden dimensions) as samples and the rows as features.
///
/// Memory is the Gram and one block of [`GRAM_ROW_BLOCK`] rows in f64, whatever the number of
/// rows: each row block is converted once and its outer product added to column blocks of K
/// in parallel (f64 GEMMs, nalgebra/matrixmultiply). An f64 copy of all of W and a Gram per
/// thread, as a first version did, cost gigabytes at 100B scale for what reads 128 MiB. Each
/// entry sums the row blocks in order, so the result does not depend on the thread count.
pub fn column_gram(w: MatRef) -> Vec<f64> {
    let d = w.cols;
    let mut k = vec![0.0; d * d];
    if d == 0 || w.rows == 0 {
        return k;
    }
    let col_block = d.div_ceil(rayon::current_num_threads().max(1) * 4).max(32);
    for rows in w.data.chunks(GRAM_ROW_BLOCK * d) {
        let r = rows.len() / d;
        // Row-major r×d data is the column-major d×r matrix Wᵀ of this block.
        let wt = DMatrix::from_iterator(d, r, rows.iter().map(|&v| f64::from(v)));
        k.par_chunks_mut(col_block * d)
            .enumerate()
            .for_each(|(b, chunk)| {
                let (c0, n) = (b * col_block, chunk.len() / d);
                let mut kb = nalgebra::DMatrixViewMut::from_slice(chunk, d, n);
                let block_rows = wt.rows(c0, n).transpose();
                kb.gemm(1.0, &wt, &block_rows, 1.0);
            });
    }
    // symmetric, so column-major storage is also the row-major matrix
    k
}

/// Rows of W per step of [`column_gram`] (8 MiB of f64 at width 4096).
pub const GRAM_ROW_BLOCK: usize = 256;

/// AWM's `_center_gram(G, unbiased=True)`: zero the diagonal; `means = colsum / (n−2)`;
/// `means −= Σmeans / (2(n−1))`; `G[i,j] −= means[i] + means[j]`; zero the diagonal again.
/// With this centering, `Σ Kc∘Lc` is `n(n−3)` times the unbiased HSIC estimator.
pub fn center_gram_unbiased(g: &mut [f64], n: usize) -> Result<()> {
    if n < 4 {
        bail!("unbiased CKA needs at least 4 samples, got {n}");
    }
    if g.len() != n * n {
        bail!("{} values do not fill a {n}x{n} Gram matrix", g.len());
    }
    for i in 0..n {
        g[i * n + i] = 0.0;
    }
    let mut means = vec![0.0f64; n];
    for row in g.chunks_exact(n) {
        for (m, v) in means.iter_mut().zip(row) {
            *m += v;
        }
    }
    for m in &mut means {
        *m /= (n - 2) as f64;
    }
    let shift = means.iter().sum::<f64>() / (2.0 * (n - 1) as f64);
    for m in &mut means {
        *m -= shift;
    }
    for (i, row) in g.chunks_exact_mut(n).enumerate() {
        let mi = means[i];
        for (v, mj) in row.iter_mut().zip(&means) {
            *v -= mi + mj;
        }
        row[i] = 0.0;
    }
    Ok(())
}

/// The biased centering `HKH` (for plain linear CKA).
pub fn center_gram_biased(g: &mut [f64], n: usize) -> Result<()> {
    if n == 0 || g.len() != n * n {
        bail!("{} values do not fill a {n}x{n} Gram matrix", g.len());
    }
    let mut means = vec![0.0f64; n];
    for row in g.chunks_exact(n) {
        for (m, v) in means.iter_mut().zip(row) {
            *m += v;
        }
    }
    for m in &mut means {
        *m /= n as f64;
    }
    let shift = means.iter().sum::<f64>() / (2.0 * n as f64);
    for m in &mut means {
        *m -= shift;
    }
    for (i, row) in g.chunks_exact_mut(n).enumerate() {
        let mi = means[i];
        for (v, mj) in row.iter_mut().zip(&means) {
            *v -= mi + mj;
        }
    }
    Ok(())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// CKA of two centred Gram matrices: `Σ(Kc∘Lc) / √(Σ(Kc∘Kc)·Σ(Lc∘Lc))`, 0 when either self-term
/// is below 1e-8 (as AWM).
pub fn cka_centered(kc: &[f64], lc: &[f64]) -> f64 {
    let (kk, ll) = (dot(kc, kc), dot(lc, lc));
    if kk < 1e-8 || ll < 1e-8 {
        return 0.0;
    }
    dot(kc, lc) / (kk * ll).sqrt()
}

/// Debiased (unbiased-HSIC) linear CKA of two n×n Gram matrices, AWM's way.
pub fn unbiased_cka_gram(k: &[f64], l: &[f64], n: usize) -> Result<f64> {
    let (mut k, mut l) = (k.to_vec(), l.to_vec());
    center_gram_unbiased(&mut k, n)?;
    center_gram_unbiased(&mut l, n)?;
    Ok(cka_centered(&k, &l))
}

/// Biased linear CKA of two n×n Gram matrices.
pub fn linear_cka_gram(k: &[f64], l: &[f64], n: usize) -> Result<f64> {
    let (mut k, mut l) = (k.to_vec(), l.to_vec());
    center_gram_biased(&mut k, n)?;
    center_gram_biased(&mut l, n)?;
    Ok(cka_centered(&k, &l))
}

/// Debiased linear CKA of two feature matrices with the same rows (rows = samples):
/// `K = XXᵀ`, `L = YYᵀ`.
pub fn unbiased_cka_features(x: MatRef, y: MatRef) -> Result<f64> {
    if x.rows != y.rows {
        bail!("CKA needs the same samples: {} vs {} rows", x.rows, y.rows);
    }
    // Gram over rows = column Gram of the transpose.
    let (xt, yt) = (transpose(x), transpose(y));
    let k = column_gram(MatRef::new(&xt, x.cols, x.rows)?);
    let l = column_gram(MatRef::new(&yt, y.cols, y.rows)?);
    unbiased_cka_gram(&k, &l, x.rows)
}

fn transpose(m: MatRef) -> Vec<f32> {
    let mut out = vec![0.0f32; m.data.len()];
    for r in 0..m.rows {
        for c in 0..m.cols {
            out[c * m.rows + r] = m.data[r * m.cols + c];
        }
    }
    out
}

/// The unbiased HSIC estimator of Song et al. (2012), written out as the U-statistic:
/// `[tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3))`, K̃ = K with a zero
/// diagonal. Independent of [`center_gram_unbiased`]; the tests check they agree.
pub fn hsic_unbiased(k: &[f64], l: &[f64], n: usize) -> Result<f64> {
    if n < 4 || k.len() != n * n || l.len() != n * n {
        bail!("unbiased HSIC needs two n×n Gram matrices with n ≥ 4");
    }
    let kt = |i: usize, j: usize| if i == j { 0.0 } else { k[i * n + j] };
    let lt = |i: usize, j: usize| if i == j { 0.0 } else { l[i * n + j] };
    let mut tr = 0.0;
    let (mut sk, mut sl) = (0.0, 0.0);
    let mut kl1 = 0.0;
    let ksum: Vec<f64> = (0..n).map(|i| (0..n).map(|j| kt(i, j)).sum()).collect();
    let lsum: Vec<f64> = (0..n).map(|i| (0..n).map(|j| lt(i, j)).sum()).collect();
    for i in 0..n {
        for j in 0..n {
            tr += kt(i, j) * lt(j, i);
        }
        sk += ksum[i];
        sl += lsum[i];
        kl1 += ksum[i] * lsum[i];
    }
    let nf = n as f64;
    Ok((tr + sk * sl / ((nf - 1.0) * (nf - 2.0)) - 2.0 / (nf - 2.0) * kl1) / (nf * (nf - 3.0)))
}

/// How the hidden-dimension assignment was solved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LapMethod {
    /// Exact maximum of Σ|cos|: scipy's `linear_sum_assignment` (shortest augmenting path) via
    /// `lsap`; named for the problem's usual name, as AWM's code does.
    Hungarian,
    /// Above the cap: repeatedly take the largest remaining |cos| whose row and column are both
    /// free (ties by index). Not optimal, but exact on true permutations, where every column's
    /// best partner is unique and far above the rest.
    Greedy,
}

/// Which model's hidden dimensions are the base of the alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    A,
    B,
}

/// Hidden dimensions of the target model lined up with the base model's (AWM step 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HiddenAlignment {
    /// The wider model (A on ties).
    pub base: Side,
    pub d_base: usize,
    pub d_target: usize,
    /// Shared-token rows the column cosines were measured on.
    pub rows: usize,
    /// For each target dimension, the base dimension matched to it.
    pub target_to_base: Vec<usize>,
    /// Sign of the matched cosine (0 if exactly 0, as `np.sign`).
    pub sign: Vec<f64>,
    /// Mean |cos| over the matched columns (≈1 for a permuted copy, ≈√(2/(π·rows))·… for
    /// unrelated embeddings).
    pub mean_abs_cos: f64,
    pub method: LapMethod,
}

/// Cosines between the columns of `base` and `target` (same rows): a `d_base × d_target`
/// row-major matrix, f64, no centring (as AWM).
pub fn column_cosines(base: MatRef, target: MatRef) -> Result<Vec<f64>> {
    if base.rows != target.rows {
        bail!(
            "column cosines need the same rows: {} vs {}",
            base.rows,
            target.rows
        );
    }
    let (rows, db, dt) = (base.rows, base.cols, target.cols);
    // Tᵀ (dt × rows) is the target's row-major data read column-major; B (rows × db) is a
    // transposing copy. Then Tᵀ·B (dt × db, column-major) is laid out exactly as the row-major
    // db × dt result: no further copies (at 100B scale each operand is 256 MiB).
    let mut tt = DMatrix::from_iterator(dt, rows, target.data.iter().map(|&v| f64::from(v)));
    let mut b = DMatrix::from_fn(rows, db, |r, c| f64::from(base.data[r * db + c]));
    for mut row in tt.row_iter_mut() {
        let n = row.norm();
        if n > 0.0 {
            row /= n;
        }
    }
    for mut col in b.column_iter_mut() {
        let n = col.norm();
        if n > 0.0 {
            col /= n;
        }
    }
    let mut out = vec![0.0; db * dt];
    if dt == 0 {
        return Ok(out);
    }
    // each thread fills a block of base columns: a contiguous run of the result
    let per = db.div_ceil(rayon::current_num_threads().max(1)).max(1);
    out.par_chunks_mut(per * dt)
        .enumerate()
        .for_each(|(k, chunk)| {
            let (first, width) = (k * per, chunk.len() / dt);
            let mut c = nalgebra::DMatrixViewMut::from_slice(chunk, dt, width);
            c.gemm(1.0, &tt, &b.columns(first, width), 0.0);
        });
    Ok(out)
}

/// Maximum-weight assignment of every row to a distinct column (`rows ≤ cols`), exact: scipy's
/// `linear_sum_assignment` (what AWM calls) through the `lsap` translation. Non-finite weights
/// count as 0.
pub fn hungarian_assignment(w: &[f64], rows: usize, cols: usize) -> Result<Vec<usize>> {
    if rows > cols || w.len() != rows * cols {
        bail!("assignment needs rows ≤ cols and a full {rows}x{cols} matrix");
    }
    if rows == 0 {
        return Ok(Vec::new());
    }
    let finite: Vec<f64> = w
        .iter()
        .map(|&v| if v.is_finite() { v } else { 0.0 })
        .collect();
    let (r, c) = lsap::solve(rows, cols, &finite, true)
        .map_err(|e| anyhow::anyhow!("linear assignment of a {rows}x{cols} matrix: {e:?}"))?;
    let mut out = vec![usize::MAX; rows];
    for (i, j) in r.into_iter().zip(c) {
        if let Some(slot) = out.get_mut(i) {
            *slot = j;
        }
    }
    if out.contains(&usize::MAX) {
        bail!("linear assignment of a {rows}x{cols} matrix left a row unassigned");
    }
    Ok(out)
}

/// Greedy assignment (see [`LapMethod::Greedy`]), `rows ≤ cols`.
pub fn greedy_assignment(w: &[f64], rows: usize, cols: usize) -> Result<Vec<usize>> {
    if rows > cols || w.len() != rows * cols {
        bail!("assignment needs rows ≤ cols and a full {rows}x{cols} matrix");
    }
    let mut order: Vec<usize> = (0..w.len()).collect();
    let key = |i: usize| if w[i].is_finite() { w[i] } else { f64::MIN };
    order.par_sort_unstable_by(|&x, &y| key(y).total_cmp(&key(x)).then(x.cmp(&y)));
    let mut out = vec![usize::MAX; rows];
    let mut used = vec![false; cols];
    let mut left = rows;
    for i in order {
        if left == 0 {
            break;
        }
        let (r, c) = (i / cols, i % cols);
        if out[r] == usize::MAX && !used[c] {
            out[r] = c;
            used[c] = true;
            left -= 1;
        }
    }
    Ok(out)
}

/// AWM step 1: line up hidden dimensions from embedding rows of the same shared tokens
/// (`emb_a` row i and `emb_b` row i are the same token text). The base is the wider model
/// (A on ties); rectangular when widths differ. `lap_cap`: largest target width solved exactly.
pub fn align_hidden(emb_a: MatRef, emb_b: MatRef, lap_cap: usize) -> Result<HiddenAlignment> {
    let (base, side, target) = if emb_b.cols > emb_a.cols {
        (emb_b, Side::B, emb_a)
    } else {
        (emb_a, Side::A, emb_b)
    };
    let c = column_cosines(base, target)?;
    let (db, dt) = (base.cols, target.cols);
    // assignment rows = target dims, columns = base dims, weights |cos|
    let mut w = vec![0.0; dt * db];
    for i in 0..db {
        for j in 0..dt {
            w[j * db + i] = c[i * dt + j].abs();
        }
    }
    let (assign, method) = if dt <= lap_cap {
        (hungarian_assignment(&w, dt, db)?, LapMethod::Hungarian)
    } else {
        (greedy_assignment(&w, dt, db)?, LapMethod::Greedy)
    };
    let sign: Vec<f64> = assign
        .iter()
        .enumerate()
        .map(|(j, &i)| {
            let v = c[i * dt + j];
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                0.0
            }
        })
        .collect();
    let mean_abs_cos = if dt == 0 {
        f64::NAN
    } else {
        assign
            .iter()
            .enumerate()
            .map(|(j, &i)| c[i * dt + j].abs())
            .sum::<f64>()
            / dt as f64
    };
    Ok(HiddenAlignment {
        base: side,
        d_base: db,
        d_target: dt,
        rows: base.rows,
        target_to_base: assign,
        sign,
        mean_abs_cos,
        method,
    })
}

impl HiddenAlignment {
    /// The base side's matrix with its columns picked and signed into target order:
    /// `(W[:, idx]) · diag(sign)`, rows × d_target.
    pub fn apply(&self, w: MatRef) -> Result<Vec<f32>> {
        if w.cols != self.d_base {
            bail!(
                "matrix has {} columns, the alignment's base has {}",
                w.cols,
                self.d_base
            );
        }
        let mut out = Vec::with_capacity(w.rows * self.d_target);
        for row in w.data.chunks_exact(w.cols) {
            out.extend(
                self.target_to_base
                    .iter()
                    .zip(&self.sign)
                    .map(|(&i, &s)| row[i] * s as f32),
            );
        }
        Ok(out)
    }

    /// Whether applying the alignment leaves a matrix as it is (same width, every column in
    /// place, no sign flipped): then nothing is copied.
    pub fn is_identity(&self) -> bool {
        self.d_base == self.d_target
            && self.target_to_base.iter().enumerate().all(|(t, &b)| t == b)
            && self.sign.iter().all(|&s| s == 1.0)
    }

    /// The identity alignment of two equally wide models (AWM's fallback without embeddings).
    pub fn identity(d: usize) -> HiddenAlignment {
        HiddenAlignment {
            base: Side::A,
            d_base: d,
            d_target: d,
            rows: 0,
            target_to_base: (0..d).collect(),
            sign: vec![1.0; d],
            mean_abs_cos: f64::NAN,
            method: LapMethod::Hungarian,
        }
    }
}

/// Q and K projections of one layer (`[out, in]` layout, `in` = hidden width). Either may hold
/// a subset of the output rows (CKA is over the input dimension, so any rows are features).
#[derive(Clone, Copy, Debug)]
pub struct QkLayer<'a> {
    pub q: MatRef<'a>,
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
    SameIndex,
    Hungarian,
}

/// CKA of one layer pair (indices into the slices given to [`awm`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerCka {
    pub layer_a: usize,
    pub layer_b: usize,
    pub q: f64,
    pub k: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AwmResult {
    pub alignment: HiddenAlignment,
    pub pairing: LayerPairing,
    pub layers: Vec<LayerCka>,
    /// Mean Q CKA, mean K CKA, and their mean: AWM's `Wq_Wk` score.
    pub score_q: f64,
    pub score_k: f64,
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

/// What debiased CKA needs of one side whose Gram `K = WᵀW` (over the n columns) has low rank
/// (r rows < n): the n×n Gram is never formed. With `K̃ = K − diag(K)`:
/// `Σ Kc∘Lc = tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2·(K̃1)·(L̃1)/(n−2)` (Song et al.'s
/// U-statistic times n(n−3), which is what [`center_gram_unbiased`] + [`cka_centered`] compute),
/// and `tr(K̃L̃) = ‖W Vᵀ‖²_F − diag(K)·diag(L)`: O(r_a·r_b·n) work and memory O(r·n) instead of
/// O(r·n²) work and O(n²) memory, which at 100B scale (n = 4096, a few hundred sampled rows)
/// is the difference between minutes and gigabytes, and seconds and megabytes.
struct LowRank {
    /// `Wᵀ`, n × r.
    wt: DMatrix<f64>,
    /// `diag(K)`.
    diag: Vec<f64>,
    /// `K̃1`.
    offdiag_row_sums: Vec<f64>,
    /// `1ᵀK̃1`.
    offdiag_total: f64,
    /// `Σ Kc∘Kc`.
    self_term: f64,
}

impl LowRank {
    fn new(w: MatRef) -> LowRank {
        let n = w.cols;
        // row-major r×n data is the column-major n×r matrix Wᵀ
        let wt = DMatrix::from_iterator(n, w.rows, w.data.iter().map(|&v| f64::from(v)));
        let diag: Vec<f64> = wt.row_iter().map(|r| r.norm_squared()).collect();
        let row_sums = wt.row_sum_tr(); // W·1 (length r)
        let k1 = &wt * &row_sums; // K·1 = Wᵀ(W·1)
        let offdiag_row_sums: Vec<f64> = k1.iter().zip(&diag).map(|(a, b)| a - b).collect();
        let offdiag_total = row_sums.norm_squared() - diag.iter().sum::<f64>();
        let mut side = LowRank {
            wt,
            diag,
            offdiag_row_sums,
            offdiag_total,
            self_term: 0.0,
        };
        side.self_term = side.centred_dot(&side);
        side
    }

    /// `Σ Kc∘Lc`.
    fn centred_dot(&self, other: &LowRank) -> f64 {
        let n = self.diag.len() as f64;
        // ‖W Vᵀ‖²_F = tr(KL); the transpose copy (r × n) keeps this on the blocked GEMM
        let cross = (self.wt.transpose() * &other.wt).norm_squared();
        let trace = cross - dot(&self.diag, &other.diag);
        trace + self.offdiag_total * other.offdiag_total / ((n - 1.0) * (n - 2.0))
            - 2.0 * dot(&self.offdiag_row_sums, &other.offdiag_row_sums) / (n - 2.0)
    }
}

/// Debiased CKA of two prepared projections (rows × n each), through whichever of the n×n
/// Grams or the row space is cheaper; both give [`cka_centered`]'s number (tested).
pub fn projection_cka(a: MatRef, b: MatRef) -> Result<f64> {
    let n = a.cols;
    if n != b.cols {
        bail!("projections have {} and {} columns", a.cols, b.cols);
    }
    if n < 4 {
        bail!("unbiased CKA needs at least 4 samples, got {n}");
    }
    if a.rows.max(b.rows) < n {
        let (la, lb) = (LowRank::new(a), LowRank::new(b));
        if la.self_term < 1e-8 || lb.self_term < 1e-8 {
            return Ok(0.0);
        }
        return Ok(la.centred_dot(&lb) / (la.self_term * lb.self_term).sqrt());
    }
    let mut ka = column_gram(a);
    let mut kb = column_gram(b);
    center_gram_unbiased(&mut ka, n)?;
    center_gram_unbiased(&mut kb, n)?;
    Ok(cka_centered(&ka, &kb))
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
    pub layers: Vec<LayerCka>,
    pub score: f64,
    /// Pairs matched off the diagonal.
    pub off_diagonal: usize,
}

/// AWM steps 2–4 for an alignment from [`align_hidden`] (or [`HiddenAlignment::identity`]).
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

    /// Deterministic pseudo-random values in (−1, 1).
    fn noise(seed: u64, n: usize) -> Vec<f32> {
        let mut r = fastrand::Rng::with_seed(seed);
        (0..n).map(|_| r.f32() * 2.0 - 1.0).collect()
    }

    fn gram_rows(x: &[f32], rows: usize, cols: usize) -> Vec<f64> {
        let mut g = vec![0.0; rows * rows];
        for i in 0..rows {
            for j in 0..rows {
                g[i * rows + j] = (0..cols)
                    .map(|c| f64::from(x[i * cols + c]) * f64::from(x[j * cols + c]))
                    .sum();
            }
        }
        g
    }

    #[test]
    fn column_gram_matches_loops() {
        let w = noise(1, 37 * 11);
        let g = column_gram(MatRef::new(&w, 37, 11).unwrap());
        for i in 0..11 {
            for j in 0..11 {
                let e: f64 = (0..37)
                    .map(|r| f64::from(w[r * 11 + i]) * f64::from(w[r * 11 + j]))
                    .sum();
                assert!((g[i * 11 + j] - e).abs() < 1e-9);
            }
        }
    }

    /// Several row blocks and column blocks (one partial of each): the loops' sums, and the
    /// same bits whatever the thread count.
    #[test]
    fn column_gram_in_blocks_matches_loops_on_any_thread_count() {
        let (rows, cols) = (2 * GRAM_ROW_BLOCK + 37, 70);
        let w = noise(4, rows * cols);
        let m = MatRef::new(&w, rows, cols).unwrap();
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| column_gram(m))
        };
        let g = on(1);
        for i in 0..cols {
            for j in 0..cols {
                let e: f64 = (0..rows)
                    .map(|r| f64::from(w[r * cols + i]) * f64::from(w[r * cols + j]))
                    .sum();
                assert!((g[i * cols + j] - e).abs() < 1e-9, "{i},{j}");
            }
        }
        assert_eq!(g, on(3));
    }

    #[test]
    fn unbiased_cka_equals_the_u_statistic() {
        let (n, p, q) = (9, 5, 7);
        let x = noise(2, n * p);
        let y = noise(3, n * q);
        let (k, l) = (gram_rows(&x, n, p), gram_rows(&y, n, q));
        let h = |a: &[f64], b: &[f64]| hsic_unbiased(a, b, n).unwrap();
        let expect = h(&k, &l) / (h(&k, &k) * h(&l, &l)).sqrt();
        let got = unbiased_cka_gram(&k, &l, n).unwrap();
        assert!((got - expect).abs() < 1e-12, "{got} vs {expect}");
        let via_features = unbiased_cka_features(
            MatRef::new(&x, n, p).unwrap(),
            MatRef::new(&y, n, q).unwrap(),
        )
        .unwrap();
        assert!((via_features - expect).abs() < 1e-9);
        // identical representations: exactly 1
        assert!((unbiased_cka_gram(&k, &k, n).unwrap() - 1.0).abs() < 1e-12);
    }

    /// The row-space route and the n×n Gram route give the same debiased CKA, and both equal
    /// the U-statistic written out on explicit Grams.
    #[test]
    fn low_rank_cka_equals_the_gram_route() {
        let n = 40;
        for (seed, ra, rb) in [(10, 3, 7), (11, 12, 12), (12, 1, 39), (13, 25, 4)] {
            let a = noise(seed, ra * n);
            let mut b = noise(seed + 100, rb * n);
            // share a little structure so the CKA is not near 0
            for (x, y) in b.iter_mut().zip(&a) {
                *x += 0.5 * y;
            }
            let (ma, mb) = (
                MatRef::new(&a, ra, n).unwrap(),
                MatRef::new(&b, rb, n).unwrap(),
            );
            let got = projection_cka(ma, mb).unwrap();
            let (k, l) = (column_gram(ma), column_gram(mb));
            let gram = unbiased_cka_gram(&k, &l, n).unwrap();
            let h = |x: &[f64], y: &[f64]| hsic_unbiased(x, y, n).unwrap();
            let u = h(&k, &l) / (h(&k, &k) * h(&l, &l)).sqrt();
            assert!((got - gram).abs() < 1e-12, "{ra}x{rb}: {got} vs {gram}");
            assert!((got - u).abs() < 1e-12, "{ra}x{rb}: {got} vs {u}");
            // the self-terms agree with the centred Grams' too
            let mut kc = k.clone();
            center_gram_unbiased(&mut kc, n).unwrap();
            let lr = LowRank::new(ma);
            assert!((lr.self_term - dot(&kc, &kc)).abs() <= 1e-9 * dot(&kc, &kc));
        }
        // a projection of zeros: 0, as cka_centered
        let z = vec![0.0f32; 5 * n];
        let a = noise(14, 5 * n);
        let (mz, ma) = (
            MatRef::new(&z, 5, n).unwrap(),
            MatRef::new(&a, 5, n).unwrap(),
        );
        assert_eq!(projection_cka(mz, ma).unwrap(), 0.0);
        // identical projections: 1
        assert!((projection_cka(ma, ma).unwrap() - 1.0).abs() < 1e-12);
    }

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
    fn column_cosines_match_loops() {
        let rows = 11;
        for (db, dt) in [(5, 9), (9, 5), (7, 7), (1, 3)] {
            let (b, t) = (
                noise(30 + db as u64, rows * db),
                noise(40 + dt as u64, rows * dt),
            );
            let got = column_cosines(
                MatRef::new(&b, rows, db).unwrap(),
                MatRef::new(&t, rows, dt).unwrap(),
            )
            .unwrap();
            let col = |x: &[f32], d: usize, c: usize| -> Vec<f64> {
                (0..rows).map(|r| f64::from(x[r * d + c])).collect()
            };
            for i in 0..db {
                for j in 0..dt {
                    let (u, v) = (col(&b, db, i), col(&t, dt, j));
                    let e = dot(&u, &v) / (dot(&u, &u) * dot(&v, &v)).sqrt();
                    assert!((got[i * dt + j] - e).abs() < 1e-12, "{db}x{dt} ({i},{j})");
                }
            }
        }
    }

    /// The exact assignment reaches the brute-force optimum, square and wide.
    #[test]
    fn exact_assignment_is_optimal_by_brute_force() {
        fn best(w: &[f64], rows: usize, cols: usize) -> f64 {
            fn go(w: &[f64], r: usize, rows: usize, cols: usize, used: &mut Vec<bool>) -> f64 {
                if r == rows {
                    return 0.0;
                }
                let mut top = f64::NEG_INFINITY;
                for c in 0..cols {
                    if !used[c] {
                        used[c] = true;
                        top = top.max(w[r * cols + c] + go(w, r + 1, rows, cols, used));
                        used[c] = false;
                    }
                }
                top
            }
            go(w, 0, rows, cols, &mut vec![false; cols])
        }
        for (seed, rows, cols) in [(50, 5, 5), (51, 6, 6), (52, 3, 7), (53, 1, 4)] {
            let w: Vec<f64> = noise(seed, rows * cols)
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let a = hungarian_assignment(&w, rows, cols).unwrap();
            let mut seen = a.clone();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), rows, "{a:?} is not one-to-one");
            let got: f64 = a.iter().enumerate().map(|(r, &c)| w[r * cols + c]).sum();
            assert!((got - best(&w, rows, cols)).abs() < 1e-12, "{rows}x{cols}");
        }
        // a NaN weight counts as 0 instead of failing the solve
        let w = [f64::NAN, 1.0, 1.0, 0.0];
        assert_eq!(hungarian_assignment(&w, 2, 2).unwrap(), vec![1, 0]);
    }

    #[test]
    fn hand_computed_hsic_on_four_samples() {
        // K = L = all-ones off the diagonal: K̃ = J − I, tr(K̃²) = 12, 1ᵀK̃1 = 12,
        // 1ᵀK̃K̃1 = 4·9 = 36 → (12 + 144/6 − 36) / 4 = 0.
        let k: Vec<f64> = (0..16)
            .map(|i| if i % 5 == 0 { 3.0 } else { 1.0 })
            .collect();
        assert!(hsic_unbiased(&k, &k, 4).unwrap().abs() < 1e-12);
        // a constant kernel carries no signal: CKA is 0 by AWM's guard
        assert_eq!(unbiased_cka_gram(&k, &k, 4).unwrap(), 0.0);
        // K = diag-free e1e2ᵀ+e2e1ᵀ: tr(K̃²) = 2, 1ᵀK̃1 = 2, 1ᵀK̃K̃1 = 2
        // → (2 + 4/6 − 2·2/2) / 4 = (2/3) / 4 = 1/6
        let mut k = vec![0.0; 16];
        k[1] = 1.0;
        k[4] = 1.0;
        assert!((hsic_unbiased(&k, &k, 4).unwrap() - 1.0 / 6.0).abs() < 1e-12);
        assert!(center_gram_unbiased(&mut [0.0; 9], 3).is_err());
    }

    #[test]
    fn biased_cka_of_orthogonal_features_is_invariant() {
        let (n, p) = (20, 6);
        let x = noise(4, n * p);
        let k = gram_rows(&x, n, p);
        let scaled: Vec<f64> = k.iter().map(|v| v * 7.5).collect();
        assert!((linear_cka_gram(&k, &scaled, n).unwrap() - 1.0).abs() < 1e-12);
        assert!((unbiased_cka_gram(&k, &scaled, n).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn assignments_recover_a_permutation() {
        let d = 40;
        let perm: Vec<usize> = {
            let mut p: Vec<usize> = (0..d).collect();
            fastrand::Rng::with_seed(5).shuffle(&mut p);
            p
        };
        let mut w = vec![0.0; d * d];
        let r = noise(6, d * d);
        for i in 0..d {
            for j in 0..d {
                w[i * d + j] = f64::from(r[i * d + j]).abs() * 0.1;
            }
            w[i * d + perm[i]] = 0.9;
        }
        assert_eq!(hungarian_assignment(&w, d, d).unwrap(), perm);
        assert_eq!(greedy_assignment(&w, d, d).unwrap(), perm);
        assert!(hungarian_assignment(&w, d, d - 1).is_err());
    }

    #[test]
    fn z_scores() {
        assert!((awm_constant_z(0.00375 + 0.0028 * 2.0) - 2.0).abs() < 1e-12);
    }
}
