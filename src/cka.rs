//! Centered kernel alignment (CKA): the Gram matrices over a projection's input dimension,
//! their centring, debiased (Kornblith's unbiased) and biased CKA, and the same in row space
//! when rows are few ([`projection_cka`]). [`crate::awm`] builds the AWM fingerprint of
//! experiment E8 on these; [`crate::hidden_alignment`] lines up the hidden dimensions first.
//!
//! [`center_gram_unbiased`] and [`cka_centered`] follow AWM's `similarity_metrics.py` exactly
//! (methods digest §7.2); [`hsic_unbiased`] is the Song et al. U-statistic written out directly,
//! an independent route to the same number used by the tests. All arithmetic is f64. No I/O.

use anyhow::{Result, bail};
use nalgebra::DMatrix;
use rayon::prelude::*;

/// A borrowed row-major f32 matrix.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    /// The values, `rows × cols`, row-major.
    pub data: &'a [f32],
    /// Number of rows (samples).
    pub rows: usize,
    /// Number of columns (features).
    pub cols: usize,
}

impl<'a> MatRef<'a> {
    /// Borrows `data` as a `rows × cols` matrix; an error if the length does not match.
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

/// Σ aᵢbᵢ.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
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

/// Deterministic pseudo-random values in (−1, 1), for the tests of the CKA, alignment and
/// AWM modules.
#[cfg(test)]
pub(crate) fn test_noise(seed: u64, n: usize) -> Vec<f32> {
    let mut r = fastrand::Rng::with_seed(seed);
    (0..n).map(|_| r.f32() * 2.0 - 1.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_noise as noise;

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
}
