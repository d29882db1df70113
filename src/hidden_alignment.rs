//! Lining up two models' hidden dimensions (AWM's step 1): the columns of their embedding
//! matrices over shared tokens are matched by a linear assignment on `|cos|`, keeping the sign,
//! so a hidden-dimension permutation with sign flips cannot hide a derivation. Exact
//! (scipy's algorithm via `lsap`, [`crate::assignment`]) up to a cap, greedy above it. No I/O.

use anyhow::{Result, bail};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use nalgebra::DMatrix;

use crate::assignment;
use crate::cka::MatRef;

/// Default largest dimension solved with the exact assignment; larger ones use
/// [`assignment::greedy_assignment`]. Measured (`cargo bench -- lap`, 2 cores), scipy's algorithm via `lsap`:
/// 0.02 s (planted permutation) / 0.12 s (unrelated columns) at 1024 and 0.42 s / 3.0 s at 4096,
/// where the greedy pass (a sort of d² entries) takes 2.4–3.2 s. On the full-size replica's
/// embedding columns at 4096, pathfinding's Kuhn–Munkres (used before) took 50–70 s per pair.
pub const DEFAULT_LAP_CAP: usize = 8192;

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
    /// Model A.
    A,
    /// Model B.
    B,
}

/// Hidden dimensions of the target model lined up with the base model's (AWM step 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HiddenAlignment {
    /// The wider model (A on ties).
    pub base: Side,
    /// Hidden size of the base model.
    pub d_base: usize,
    /// Hidden size of the target model.
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
    /// How the assignment was solved (exact or greedy).
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
        (
            assignment::hungarian_assignment(&w, dt, db)?,
            LapMethod::Hungarian,
        )
    } else {
        (
            assignment::greedy_assignment(&w, dt, db)?,
            LapMethod::Greedy,
        )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cka::dot;
    use crate::cka::test_noise as noise;

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
}
