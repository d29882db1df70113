//! Orthogonal Procrustes: the hidden-basis alignment that undoes rotations, where AWM's
//! permutation-and-sign assignment ([`crate::hidden_alignment::align_hidden`]) cannot.
//!
//! Given the same samples (shared-token embedding rows) in two bases, `X_b` (n × d_b) and `X_t`
//! (n × d_t, d_t ≤ d_b), find `R` (d_b × d_t, `RᵀR = I`) minimising `‖X_b·R − X_t‖_F`. With
//! `X_bᵀX_t = UΣVᵀ` (thin SVD), `R = UVᵀ` (Schönemann 1966), computed as the polar factor. Square `R` is a rotation (or
//! reflection); rectangular `R` is semi-orthogonal: the map of a model whose residual stream was
//! rotated and then sliced (SliceGPT). The rectangular case maximises `tr(RᵀX_bᵀX_t)` rather than
//! minimising the residual exactly (that "unbalanced" problem has no closed form); the two agree
//! when the kept directions are principal axes of `X_b`, as SliceGPT's PCA slicing makes them,
//! and the fit stays close for other slices.
//!
//! A rotation has d² free parameters against d for a signed permutation, so it also fits noise
//! better: callers fit on some tokens and judge the fit on others ([`mean_row_cosine`]).
//! All arithmetic is f64 (nalgebra). No I/O.

use anyhow::{Result, bail};
use nalgebra::DMatrix;
use serde::Serialize;

use crate::cka::MatRef;
use crate::hidden_alignment::Side;

/// A fitted semi-orthogonal map from the base's hidden basis to the target's.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Procrustes {
    /// The wider model (A on ties).
    pub base: Side,
    /// Hidden size of the base model.
    pub d_base: usize,
    /// Hidden size of the target model.
    pub d_target: usize,
    /// Rows it was fitted on.
    pub rows: usize,
    /// `R`, `d_base × d_target`, row-major.
    #[serde(skip)]
    pub map: Vec<f64>,
    /// Σ singular values / (‖X_b‖·‖X_t‖): 1 when the target is an exact rotation of the base.
    pub fit: f64,
}

fn to_dmatrix(m: MatRef) -> DMatrix<f64> {
    DMatrix::from_row_iterator(m.rows, m.cols, m.data.iter().map(|&v| f64::from(v)))
}

/// `R` minimising `‖base·R − target‖_F` over `RᵀR = I` (needs `target.cols ≤ base.cols`).
pub fn procrustes(base: MatRef, target: MatRef) -> Result<Procrustes> {
    if base.rows != target.rows {
        bail!(
            "Procrustes needs the same samples: {} vs {} rows",
            base.rows,
            target.rows
        );
    }
    if target.cols > base.cols || target.cols == 0 {
        bail!(
            "Procrustes maps the wider basis onto the narrower one: {} → {} columns",
            base.cols,
            target.cols
        );
    }
    let (xb, xt) = (to_dmatrix(base), to_dmatrix(target));
    let m = xb.transpose() * &xt; // d_base × d_target
    let (r, singular_sum) = polar_factor(&m);
    let denom = xb.norm() * xt.norm();
    let fit = if denom > 0.0 {
        singular_sum / denom
    } else {
        f64::NAN
    };
    let mut map = Vec::with_capacity(base.cols * target.cols);
    for i in 0..base.cols {
        map.extend((0..target.cols).map(|j| r[(i, j)]));
    }
    Ok(Procrustes {
        base: Side::A,
        d_base: base.cols,
        d_target: target.cols,
        rows: base.rows,
        map,
        fit,
    })
}

/// The orthogonal polar factor `UVᵀ` of `m` (`rows ≥ cols`) and the sum of its singular values,
/// from the symmetric eigendecomposition `mᵀm = VΛVᵀ`: `UVᵀ = m·VΛ^{-1/2}Vᵀ`. Measured several
/// times faster than nalgebra's SVD at these sizes. Directions with `λ` below 1e-24 of the
/// largest (rank deficiency: the map is undetermined there) are left out.
fn polar_factor(m: &DMatrix<f64>) -> (DMatrix<f64>, f64) {
    let eig = (m.transpose() * m).symmetric_eigen();
    let top = eig.eigenvalues.iter().cloned().fold(0.0, f64::max);
    let mut scaled = eig.eigenvectors.clone();
    let mut singular_sum = 0.0;
    for (j, &l) in eig.eigenvalues.iter().enumerate() {
        let keep = l > top * 1e-24 && l > 0.0;
        let f = if keep { 1.0 / l.sqrt() } else { 0.0 };
        if keep {
            singular_sum += l.sqrt();
        }
        scaled.column_mut(j).scale_mut(f);
    }
    (m * (scaled * eig.eigenvectors.transpose()), singular_sum)
}

/// Procrustes between two models' embedding rows of the same shared tokens, the wider model as
/// the base (A on ties), as [`crate::hidden_alignment::align_hidden`] does.
pub fn align_hidden_procrustes(emb_a: MatRef, emb_b: MatRef) -> Result<Procrustes> {
    if emb_b.cols > emb_a.cols {
        let mut p = procrustes(emb_b, emb_a)?;
        p.base = Side::B;
        Ok(p)
    } else {
        procrustes(emb_a, emb_b)
    }
}

impl Procrustes {
    /// `W·R` for a base-side matrix `w` (rows × d_base): the same rows in the target's basis.
    pub fn apply(&self, w: MatRef) -> Result<Vec<f32>> {
        if w.cols != self.d_base {
            bail!(
                "matrix has {} columns, the map's base has {}",
                w.cols,
                self.d_base
            );
        }
        let r = DMatrix::from_row_slice(self.d_base, self.d_target, &self.map);
        let p = to_dmatrix(w) * r;
        let mut out = Vec::with_capacity(w.rows * self.d_target);
        for i in 0..w.rows {
            out.extend((0..self.d_target).map(|j| p[(i, j)] as f32));
        }
        Ok(out)
    }
}

/// Mean cosine of corresponding rows (rows with a zero norm are skipped; NaN when none is left):
/// how well an alignment carries held-out samples onto each other.
pub fn mean_row_cosine(a: MatRef, b: MatRef) -> Result<f64> {
    if a.rows != b.rows || a.cols != b.cols {
        bail!(
            "row cosines need equal shapes: {}x{} vs {}x{}",
            a.rows,
            a.cols,
            b.rows,
            b.cols
        );
    }
    let (mut sum, mut n) = (0.0, 0usize);
    for (ra, rb) in a
        .data
        .chunks_exact(a.cols.max(1))
        .zip(b.data.chunks_exact(b.cols.max(1)))
    {
        let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
        for (x, y) in ra.iter().zip(rb) {
            let (x, y) = (f64::from(*x), f64::from(*y));
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        if aa > 0.0 && bb > 0.0 {
            sum += ab / (aa * bb).sqrt();
            n += 1;
        }
    }
    Ok(if n == 0 { f64::NAN } else { sum / n as f64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian(seed: u64, n: usize) -> Vec<f32> {
        let mut r = weight_audit_lab::rng::Rng::new(seed, "procrustes-test");
        (0..n).map(|_| r.normal() as f32).collect()
    }

    fn rotation(d: usize, seed: u64) -> DMatrix<f64> {
        weight_audit_lab::obfuscate::random_orthogonal(d, seed, "procrustes-test")
    }

    fn times(x: &[f32], rows: usize, q: &DMatrix<f64>) -> Vec<f32> {
        let p = DMatrix::from_row_iterator(rows, q.nrows(), x.iter().map(|&v| f64::from(v))) * q;
        (0..rows)
            .flat_map(|i| (0..q.ncols()).map(move |j| (i, j)))
            .map(|(i, j)| p[(i, j)] as f32)
            .collect()
    }

    #[test]
    fn a_known_rotation_is_recovered() {
        let (n, d) = (40, 8);
        let x = gaussian(1, n * d);
        let q = rotation(d, 2);
        let y = times(&x, n, &q);
        let p = procrustes(
            MatRef::new(&x, n, d).unwrap(),
            MatRef::new(&y, n, d).unwrap(),
        )
        .unwrap();
        let r = DMatrix::from_row_slice(d, d, &p.map);
        assert!((r - &q).abs().max() < 1e-5, "R equals the planted rotation");
        assert!((p.fit - 1.0).abs() < 1e-6);
        let mapped = p.apply(MatRef::new(&x, n, d).unwrap()).unwrap();
        let c = mean_row_cosine(
            MatRef::new(&mapped, n, d).unwrap(),
            MatRef::new(&y, n, d).unwrap(),
        )
        .unwrap();
        assert!((c - 1.0).abs() < 1e-6);
    }

    #[test]
    fn a_rotated_and_sliced_basis_gets_a_semi_orthogonal_map() {
        let (n, d, k) = (60, 10, 6);
        let x = gaussian(3, n * d);
        // SliceGPT keeps principal axes (here of the rows themselves), then may rotate them
        let xm = DMatrix::from_row_iterator(n, d, x.iter().map(|&v| f64::from(v)));
        let eig = (xm.transpose() * &xm).symmetric_eigen();
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let top = DMatrix::from_fn(d, k, |i, j| eig.eigenvectors[(i, order[j])]);
        let q = top * rotation(k, 4);
        let y = times(&x, n, &q);
        // B is the narrower model: the base is A, whichever order they come in
        let p = align_hidden_procrustes(
            MatRef::new(&y, n, k).unwrap(),
            MatRef::new(&x, n, d).unwrap(),
        )
        .unwrap();
        assert_eq!((p.base, p.d_base, p.d_target), (Side::B, d, k));
        let r = DMatrix::from_row_slice(d, k, &p.map);
        assert!(
            ((r.transpose() * &r) - DMatrix::<f64>::identity(k, k))
                .abs()
                .max()
                < 1e-9
        );
        assert!((r - &q).abs().max() < 1e-5, "recovers the slice map");
    }

    #[test]
    fn unrelated_bases_fit_badly_on_held_out_rows() {
        let (n, d) = (200, 8);
        let (x, y) = (gaussian(5, n * d), gaussian(6, n * d));
        let half = n / 2 * d;
        let p = procrustes(
            MatRef::new(&x[..half], n / 2, d).unwrap(),
            MatRef::new(&y[..half], n / 2, d).unwrap(),
        )
        .unwrap();
        let mapped = p.apply(MatRef::new(&x[half..], n / 2, d).unwrap()).unwrap();
        let c = mean_row_cosine(
            MatRef::new(&mapped, n / 2, d).unwrap(),
            MatRef::new(&y[half..], n / 2, d).unwrap(),
        )
        .unwrap();
        assert!(c.abs() < 0.15, "held-out cosine {c}");
        assert!(
            procrustes(
                MatRef::new(&x[..d], 1, d).unwrap(),
                MatRef::new(&y, n, d).unwrap()
            )
            .is_err()
        );
    }

    #[test]
    fn row_cosine_by_hand() {
        let a = [1.0f32, 0.0, 0.0, 1.0];
        let b = [1.0f32, 1.0, 0.0, -2.0];
        let c = mean_row_cosine(
            MatRef::new(&a, 2, 2).unwrap(),
            MatRef::new(&b, 2, 2).unwrap(),
        )
        .unwrap();
        assert!((c - (1.0 / 2f64.sqrt() - 1.0) / 2.0).abs() < 1e-12);
    }
}
