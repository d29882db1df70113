//! Layer alignment from a similarity matrix (experiment E4).
//!
//! Every function takes a [`Matrix`] `S` whose rows are the layers of model B and whose columns
//! are the layers of model A, higher = more similar (cosine, Pearson, negated distance…). The
//! module does no I/O and knows nothing about models: it only answers "which A layer does each
//! B layer correspond to, and is that correspondence better than chance?".
//!
//! NaN entries mean "no comparison available". They never panic: [`argmax_alignment`] and
//! [`margins`] skip them (NaN behaves as −∞), [`hungarian`] treats them as worse than every
//! finite entry and reports a row whose only possible partner is a NaN cell as unmatched, and
//! [`monotone_alignment`] never matches a NaN cell.
//!
//! Why three alignments: the argmax is what the published scripts printed; the Hungarian
//! assignment stops several B layers claiming the same A layer; the monotone alignment adds
//! the constraint that real derivations (depth up-scaling, pruning, inserted layers) keep the
//! layer order, which is exactly what unrelated models fail to show. Every statistic here is
//! meant to be read beside [`permutation_test`]'s null.

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix as PfMatrix;

/// Why a [`Matrix`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatrixError {
    /// A row of a nested vector had a different length from the first row.
    #[error("row {row} has {len} entries, expected {expected}")]
    Ragged {
        /// Index of the offending row.
        row: usize,
        /// Its length.
        len: usize,
        /// Length of row 0.
        expected: usize,
    },
    /// The flat data does not hold `rows * cols` values.
    #[error("{len} values do not fill a {rows}x{cols} matrix")]
    Size {
        /// Requested rows.
        rows: usize,
        /// Requested columns.
        cols: usize,
        /// Values supplied.
        len: usize,
    },
}

/// A dense row-major `f64` matrix: rows = layers of model B, columns = layers of model A.
///
/// Fields are private so that `data.len() == rows * cols` always holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Matrix {
    /// Builds a matrix from row-major data; fails unless `data.len() == rows * cols`.
    pub fn new(rows: usize, cols: usize, data: Vec<f64>) -> Result<Self, MatrixError> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(MatrixError::Size {
                rows,
                cols,
                len: data.len(),
            });
        }
        Ok(Self { rows, cols, data })
    }

    /// Builds a matrix from nested rows; an empty slice gives a 0×0 matrix.
    pub fn from_rows(rows: &[Vec<f64>]) -> Result<Self, MatrixError> {
        let cols = rows.first().map_or(0, Vec::len);
        let mut data = Vec::with_capacity(rows.len() * cols);
        for (row, r) in rows.iter().enumerate() {
            if r.len() != cols {
                return Err(MatrixError::Ragged {
                    row,
                    len: r.len(),
                    expected: cols,
                });
            }
            data.extend_from_slice(r);
        }
        Ok(Self {
            rows: rows.len(),
            cols,
            data,
        })
    }

    /// Builds a matrix whose entry `(r, c)` is `f(r, c)`.
    pub fn from_fn(rows: usize, cols: usize, mut f: impl FnMut(usize, usize) -> f64) -> Self {
        let mut data = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for c in 0..cols {
                data.push(f(r, c));
            }
        }
        Self { rows, cols, data }
    }

    /// Number of rows (layers of model B).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (layers of model A).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// All entries, row-major.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    /// Entry `(r, c)`; panics when out of range, like slice indexing.
    pub fn get(&self, r: usize, c: usize) -> f64 {
        assert!(r < self.rows && c < self.cols, "({r}, {c}) out of range");
        self.data[r * self.cols + c]
    }

    /// Row `r` as a slice; panics when out of range.
    pub fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    fn row_mut(&mut self, r: usize) -> &mut [f64] {
        &mut self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// The transpose (A layers as rows).
    pub fn transpose(&self) -> Matrix {
        Matrix::from_fn(self.cols, self.rows, |r, c| self.get(c, r))
    }
}

/// Best column and best/second-best values of a row, NaN skipped, ties to the lowest index.
fn top_two(row: &[f64]) -> (Option<(usize, f64)>, Option<f64>) {
    let mut best: Option<(usize, f64)> = None;
    let mut second: Option<f64> = None;
    for (c, &v) in row.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        match best {
            Some((_, b)) if v <= b => {
                if second.is_none_or(|s| v > s) {
                    second = Some(v);
                }
            }
            _ => {
                second = best.map(|(_, b)| b);
                best = Some((c, v));
            }
        }
    }
    (best, second)
}

/// Per B layer, the A layer of highest similarity (`None` for an all-NaN or empty row).
///
/// Ties go to the lowest column index so the result is deterministic.
pub fn argmax_alignment(s: &Matrix) -> Vec<Option<usize>> {
    (0..s.rows)
        .map(|r| top_two(s.row(r)).0.map(|(c, _)| c))
        .collect()
}

/// Per B layer, best minus second-best similarity; NaN when a row has fewer than two non-NaN entries.
///
/// Small margins everywhere mean "every layer looks like every other layer", the failure mode of
/// raw LayerNorm cosines.
pub fn margins(s: &Matrix) -> Vec<f64> {
    (0..s.rows)
        .map(|r| match top_two(s.row(r)) {
            (Some((_, b)), Some(sec)) => b - sec,
            _ => f64::NAN,
        })
        .collect()
}

/// Finite similarities are scaled to integers in `[-ASSIGNMENT_SCALE, ASSIGNMENT_SCALE]` for the assignment solver.
///
/// The factor is `ASSIGNMENT_SCALE / max|finite S|`, so the solver sees nine significant digits
/// relative to the largest similarity whatever the metric's units; differences smaller than
/// that are ties. NaN and −∞ become `-2 * ASSIGNMENT_SCALE` (below every finite entry), +∞
/// becomes `ASSIGNMENT_SCALE`. With at most a few thousand rows the i64 sums cannot overflow.
pub const ASSIGNMENT_SCALE: f64 = 1e9;

fn scaled_weights(s: &Matrix) -> PfMatrix<i64> {
    let max_abs = s
        .data
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let factor = if max_abs > 0.0 {
        ASSIGNMENT_SCALE / max_abs
    } else {
        0.0
    };
    let floor = -2 * ASSIGNMENT_SCALE as i64;
    let values = s
        .data
        .iter()
        .map(|&v| {
            if v.is_finite() {
                (v * factor).round() as i64
            } else if v == f64::INFINITY {
                ASSIGNMENT_SCALE as i64
            } else {
                floor
            }
        })
        .collect();
    PfMatrix::from_vec(s.rows, s.cols, values).expect("dimensions checked by Matrix")
}

/// One-to-one assignment of B layers to A layers maximising total similarity (Kuhn–Munkres).
///
/// Rectangular matrices are fine: with more rows than columns the surplus rows get `None`.
/// A row assigned to a NaN cell also gets `None` (the solver had nothing better to give it).
/// Similarities are scaled to i64 as described at [`ASSIGNMENT_SCALE`]; the solver is
/// deterministic, so equal inputs give equal assignments.
pub fn hungarian(s: &Matrix) -> Vec<Option<usize>> {
    let mut out = vec![None; s.rows];
    if s.rows == 0 || s.cols == 0 {
        return out;
    }
    // pathfinding requires rows <= columns: solve on the transpose when B is deeper.
    let transposed = s.rows > s.cols;
    let weights = if transposed {
        scaled_weights(&s.transpose())
    } else {
        scaled_weights(s)
    };
    let (_, assignment) = kuhn_munkres(&weights);
    for (r, c) in assignment.into_iter().enumerate() {
        let (b, a) = if transposed { (c, r) } else { (r, c) };
        if !s.get(b, a).is_nan() {
            out[b] = Some(a);
        }
    }
    out
}

/// An order-preserving partial matching of B layers to A layers.
#[derive(Debug, Clone, PartialEq)]
pub struct MonotoneAlignment {
    /// Matched `(b_layer, a_layer)` pairs, strictly increasing in both coordinates.
    pub path: Vec<(usize, usize)>,
    /// Per B layer, its matched A layer (`None` = skipped, e.g. an inserted layer).
    pub matched: Vec<Option<usize>>,
    /// Mean similarity over matched pairs; NaN when nothing is matched.
    pub score: f64,
    /// The threshold τ subtracted from every similarity (see [`monotone_alignment`]).
    pub threshold: f64,
    /// The maximised objective Σ (S − τ) over matched pairs (0 when nothing is matched).
    pub gain: f64,
}

/// Median of the non-NaN entries of `s` (mean of the two middle values for an even count); NaN if none.
pub fn median(s: &Matrix) -> f64 {
    let mut v: Vec<f64> = s.data.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    let (len, mid) = (v.len(), v.len() / 2);
    let (lower, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if len % 2 == 1 {
        m
    } else {
        let below = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        0.5 * (below + m)
    }
}

/// Order-preserving alignment with the threshold τ = [`median`] of `s`.
///
/// Formulation: choose pairs `(b, a)`, each row and column used at most once, strictly
/// increasing in both `b` and `a`, maximising Σ (S[b][a] − τ). Equivalently, a Needleman–Wunsch
/// global alignment with match score S and a gap score of τ/2 per skipped layer on either side:
/// a pair is worth matching only when it is more similar than leaving both layers unmatched.
///
/// Why the median: with plain max-sum and positive similarities (raw LayerNorm cosines are
/// ~0.99 everywhere) the DP would match as many pairs as the shapes allow, so unrelated models
/// would "align" perfectly. Subtracting the median removes that common offset; the median, not
/// the mean, because the true diagonal is at most `min(rows, cols)` of `rows * cols` cells and
/// must not drag the reference level up. Consequences, all intended: a constant matrix matches
/// nothing (no contrast, no evidence) and so does a 1×1 matrix; a B layer inserted between two
/// matched layers has no free column in between and stays unmatched.
pub fn monotone_alignment(s: &Matrix) -> MonotoneAlignment {
    monotone_alignment_with_threshold(s, median(s))
}

/// Order-preserving alignment maximising Σ (S − `threshold`); see [`monotone_alignment`].
///
/// Only cells with `S > threshold` can be matched, so a NaN threshold matches nothing.
/// Ties are broken deterministically (skip a B layer, then skip an A layer, then match).
pub fn monotone_alignment_with_threshold(s: &Matrix, threshold: f64) -> MonotoneAlignment {
    const SKIP_ROW: u8 = 0;
    const SKIP_COL: u8 = 1;
    const MATCH: u8 = 2;
    let (n, m) = (s.rows, s.cols);
    let w = m + 1;
    // best[i][j]: optimum over the first i B layers and first j A layers.
    let mut best = vec![0.0f64; (n + 1) * w];
    let mut step = vec![SKIP_ROW; (n + 1) * w];
    // Row 0 can only be reached by skipping A layers.
    step[1..=m].fill(SKIP_COL);
    for i in 1..=n {
        let row = s.row(i - 1);
        for j in 1..=m {
            let mut v = best[(i - 1) * w + j];
            let mut d = SKIP_ROW;
            let left = best[i * w + j - 1];
            if left > v {
                v = left;
                d = SKIP_COL;
            }
            // NaN cells and cells at or below the threshold fail this test and are never matched.
            let g = row[j - 1] - threshold;
            if g > 0.0 {
                let diag = best[(i - 1) * w + j - 1] + g;
                if diag > v {
                    v = diag;
                    d = MATCH;
                }
            }
            best[i * w + j] = v;
            step[i * w + j] = d;
        }
    }
    let mut path = Vec::new();
    let (mut i, mut j) = (n, m);
    while i > 0 && j > 0 {
        match step[i * w + j] {
            MATCH => {
                path.push((i - 1, j - 1));
                i -= 1;
                j -= 1;
            }
            SKIP_COL => j -= 1,
            _ => i -= 1,
        }
    }
    path.reverse();
    let mut matched = vec![None; n];
    for &(b, a) in &path {
        matched[b] = Some(a);
    }
    let score = if path.is_empty() {
        f64::NAN
    } else {
        path.iter().map(|&(b, a)| s.get(b, a)).sum::<f64>() / path.len() as f64
    };
    MonotoneAlignment {
        path,
        matched,
        score,
        threshold,
        gain: best[n * w + m],
    }
}

/// Fraction of rows whose match equals the expected one; NaN when both are empty.
///
/// Rows missing from the shorter slice count as `None`, so a length mismatch costs agreement
/// instead of being silently ignored. `expected` may hold `None` for layers that should stay
/// unmatched (inserted layers); matching them to anything counts as a miss.
pub fn alignment_rate(matched: &[Option<usize>], expected: &[Option<usize>]) -> f64 {
    let n = matched.len().max(expected.len());
    if n == 0 {
        return f64::NAN;
    }
    let at = |v: &[Option<usize>], i: usize| v.get(i).copied().flatten();
    let hits = (0..n)
        .filter(|&i| at(matched, i) == at(expected, i))
        .count();
    hits as f64 / n as f64
}

/// The identity mapping for a `rows`×`cols` matrix: row `i` ↦ column `i` while `i < cols`.
pub fn identity_mapping(rows: usize, cols: usize) -> Vec<Option<usize>> {
    (0..rows).map(|i| (i < cols).then_some(i)).collect()
}

/// A statistic of a similarity matrix used by [`permutation_test`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Statistic {
    /// Mean of the non-NaN `S[i][i]` for `i < min(rows, cols)`.
    DiagonalMean,
    /// [`MonotoneAlignment::score`] of [`monotone_alignment`].
    ///
    /// A mean over matched pairs only: a short path through a few strong cells scores as high as
    /// a full diagonal, so on small matrices its null is wide. Prefer [`Statistic::MonotoneGain`].
    MonotoneScore,
    /// [`MonotoneAlignment::gain`] divided by `min(rows, cols)`: mean excess similarity per
    /// alignable layer, which rewards coverage as well as strength.
    MonotoneGain,
    /// Mean similarity over the non-NaN pairs of the [`hungarian`] assignment.
    HungarianMean,
}

/// How the null matrices of a [`permutation_test`] are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NullModel {
    /// Shuffle the rows of S (B's layer order), keeping columns: "does layer order matter?".
    RowLabels,
    /// Shuffle the entries of each row independently: "is there a one-to-one structure at all?".
    WithinRows,
}

impl Statistic {
    /// Computes the statistic on `s`; NaN when undefined (empty matrix, nothing matched).
    pub fn compute(self, s: &Matrix) -> f64 {
        match self {
            Statistic::DiagonalMean => mean_finite((0..s.rows.min(s.cols)).map(|i| s.get(i, i))),
            Statistic::MonotoneScore => monotone_alignment(s).score,
            Statistic::MonotoneGain => {
                let al = monotone_alignment(s);
                let k = s.rows.min(s.cols);
                if k == 0 || al.threshold.is_nan() {
                    f64::NAN
                } else {
                    al.gain / k as f64
                }
            }
            Statistic::HungarianMean => mean_finite(
                hungarian(s)
                    .into_iter()
                    .enumerate()
                    .filter_map(|(b, a)| a.map(|a| s.get(b, a))),
            ),
        }
    }

    /// The null that makes sense for this statistic (used by [`permutation_test`]).
    ///
    /// The Hungarian optimum is invariant to relabelling rows, so under [`NullModel::RowLabels`]
    /// every null draw equals the observed value and p = 1 whatever the data: it gets
    /// [`NullModel::WithinRows`] instead. The other two depend on layer order and use row labels.
    pub fn default_null(self) -> NullModel {
        match self {
            Statistic::DiagonalMean | Statistic::MonotoneScore | Statistic::MonotoneGain => {
                NullModel::RowLabels
            }
            Statistic::HungarianMean => NullModel::WithinRows,
        }
    }
}

fn mean_finite(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .filter(|v| !v.is_nan())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// Number of null draws recommended for a reported p-value (resolution 1/1001).
pub const DEFAULT_PERMUTATIONS: usize = 1000;

/// Result of a permutation test: the observed statistic beside its null.
#[derive(Debug, Clone, PartialEq)]
pub struct PermutationTest {
    /// The statistic on the unpermuted matrix.
    pub observed: f64,
    /// Mean of the non-NaN null statistics (NaN if none).
    pub null_mean: f64,
    /// Sample standard deviation (n − 1) of the non-NaN null statistics (NaN if fewer than two).
    pub null_sd: f64,
    /// `(1 + #{null ≥ observed}) / (1 + perms)`; NaN when the observed statistic is NaN.
    pub p_value: f64,
    /// Number of null draws with a non-NaN statistic (the requested count unless some were undefined).
    pub perms: usize,
    /// Which null was drawn.
    pub null: NullModel,
}

/// Permutation test of `statistic` on `s` with the statistic's [default null](Statistic::default_null).
///
/// Seeded and deterministic: the same `(s, statistic, perms, seed)` always gives the same result.
pub fn permutation_test(
    s: &Matrix,
    statistic: Statistic,
    perms: usize,
    seed: u64,
) -> PermutationTest {
    permutation_test_with(s, statistic, statistic.default_null(), perms, seed)
}

/// Permutation test of `statistic` on `s` under an explicit null model.
///
/// A null draw counts as "≥ observed" within a relative tolerance of 1e-12, because a statistic
/// invariant under the permutation can come back one rounding step lower after summing in a
/// different order; counting such ties keeps the p-value conservative.
pub fn permutation_test_with(
    s: &Matrix,
    statistic: Statistic,
    null: NullModel,
    perms: usize,
    seed: u64,
) -> PermutationTest {
    let observed = statistic.compute(s);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut order: Vec<usize> = (0..s.rows).collect();
    let mut work = s.clone();
    let mut nulls = Vec::with_capacity(perms);
    for _ in 0..perms {
        match null {
            NullModel::RowLabels => {
                rng.shuffle(&mut order);
                for (dst, &src) in order.iter().enumerate() {
                    work.row_mut(dst).copy_from_slice(s.row(src));
                }
            }
            NullModel::WithinRows => {
                // Shuffling an already shuffled row is still a uniform permutation of the original.
                for r in 0..work.rows {
                    rng.shuffle(work.row_mut(r));
                }
            }
        }
        let v = statistic.compute(&work);
        if !v.is_nan() {
            nulls.push(v);
        }
    }
    let k = nulls.len();
    let null_mean = if k == 0 {
        f64::NAN
    } else {
        nulls.iter().sum::<f64>() / k as f64
    };
    let null_sd = if k < 2 {
        f64::NAN
    } else {
        (nulls.iter().map(|v| (v - null_mean).powi(2)).sum::<f64>() / (k - 1) as f64).sqrt()
    };
    let p_value = if observed.is_nan() {
        f64::NAN
    } else {
        let tol = 1e-12 * observed.abs().max(1.0);
        let ge = nulls.iter().filter(|&&v| v >= observed - tol).count();
        (1 + ge) as f64 / (1 + k) as f64
    };
    PermutationTest {
        observed,
        null_mean,
        null_sd,
        p_value,
        perms: k,
        null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAN: f64 = f64::NAN;
    const ALL_STATISTICS: [Statistic; 4] = [
        Statistic::DiagonalMean,
        Statistic::MonotoneScore,
        Statistic::MonotoneGain,
        Statistic::HungarianMean,
    ];

    fn m(rows: &[&[f64]]) -> Matrix {
        Matrix::from_rows(&rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>()).unwrap()
    }

    fn normal(rng: &mut fastrand::Rng) -> f64 {
        // Box–Muller; 1 - f64() keeps the log argument in (0, 1].
        let u = 1.0 - rng.f64();
        let v = rng.f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    fn cosine(a: &[f64], b: &[f64]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
        dot / (na * nb)
    }

    /// Raw cosines between synthetic "LayerNorm-like" layers: every vector shares a large common
    /// offset (so unrelated layers still score ~0.9), plus a layer-specific part. B's layer `i`
    /// is a lightly perturbed copy of A's layer `sources[i]`, or a fresh layer for `None`.
    fn derived_similarity(a_layers: usize, sources: &[Option<usize>], seed: u64) -> Matrix {
        let dim = 256;
        let mut rng = fastrand::Rng::with_seed(seed);
        let common: Vec<f64> = (0..dim).map(|_| 1.0 + 0.1 * normal(&mut rng)).collect();
        let layer = |rng: &mut fastrand::Rng| -> Vec<f64> {
            common.iter().map(|c| c + 0.3 * normal(rng)).collect()
        };
        let a: Vec<Vec<f64>> = (0..a_layers).map(|_| layer(&mut rng)).collect();
        let b: Vec<Vec<f64>> = sources
            .iter()
            .map(|src| match src {
                Some(k) => a[*k].iter().map(|x| x + 0.1 * normal(&mut rng)).collect(),
                None => layer(&mut rng),
            })
            .collect();
        Matrix::from_fn(b.len(), a.len(), |r, c| cosine(&b[r], &a[c]))
    }

    /// Diagonal `diag`, off-diagonal 0.5 plus uniform noise of half-width `noise`.
    fn noisy_diagonal(n: usize, diag: f64, noise: f64, seed: u64) -> Matrix {
        let mut rng = fastrand::Rng::with_seed(seed);
        Matrix::from_fn(n, n, |r, c| {
            if r == c {
                diag
            } else {
                0.5 + noise * (2.0 * rng.f64() - 1.0)
            }
        })
    }

    fn iid(rows: usize, cols: usize, seed: u64) -> Matrix {
        let mut rng = fastrand::Rng::with_seed(seed);
        Matrix::from_fn(rows, cols, |_, _| normal(&mut rng))
    }

    #[test]
    fn matrix_construction_and_errors() {
        let s = Matrix::new(2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!((s.rows(), s.cols()), (2, 3));
        assert_eq!(s.get(1, 0), 4.0);
        assert_eq!(s.row(1), &[4.0, 5.0, 6.0]);
        let t = s.transpose();
        assert_eq!((t.rows(), t.cols()), (3, 2));
        assert_eq!(t.data(), &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(
            Matrix::new(2, 2, vec![1.0]),
            Err(MatrixError::Size {
                rows: 2,
                cols: 2,
                len: 1
            })
        );
        assert_eq!(
            Matrix::from_rows(&[vec![1.0, 2.0], vec![3.0]]),
            Err(MatrixError::Ragged {
                row: 1,
                len: 1,
                expected: 2
            })
        );
        let empty = Matrix::from_rows(&[]).unwrap();
        assert_eq!((empty.rows(), empty.cols()), (0, 0));
    }

    #[test]
    fn argmax_and_margins_by_hand() {
        let s = m(&[
            &[0.1, 0.9, 0.3],
            &[0.8, 0.2, NAN],
            &[NAN, NAN, NAN],
            &[0.4, 0.4, 0.1],
        ]);
        assert_eq!(argmax_alignment(&s), vec![Some(1), Some(0), None, Some(0)]);
        let mg = margins(&s);
        assert!((mg[0] - 0.6).abs() < 1e-12);
        assert!((mg[1] - 0.6).abs() < 1e-12);
        assert!(mg[2].is_nan());
        assert_eq!(mg[3], 0.0, "a tie has zero margin");
        // The best value first, then a larger one: second best must be the old best.
        let s = m(&[&[0.5, 0.7, 0.6]]);
        assert!((margins(&s)[0] - 0.1).abs() < 1e-12);
    }

    #[test]
    fn margins_nan_for_one_column_and_one_finite_entry() {
        let s = m(&[&[0.3], &[NAN]]);
        assert_eq!(argmax_alignment(&s), vec![Some(0), None]);
        assert!(margins(&s).iter().all(|v| v.is_nan()));
        let s = m(&[&[NAN, 0.2, NAN]]);
        assert_eq!(argmax_alignment(&s), vec![Some(1)]);
        assert!(margins(&s)[0].is_nan());
        let empty = Matrix::new(2, 0, vec![]).unwrap();
        assert_eq!(argmax_alignment(&empty), vec![None, None]);
    }

    #[test]
    fn hungarian_beats_greedy_argmax() {
        // Both rows prefer column 0; the assignment gives 0.8 + 0.85 = 1.65 > 0.9 + 0.1.
        let s = m(&[&[0.9, 0.8], &[0.85, 0.1]]);
        assert_eq!(argmax_alignment(&s), vec![Some(0), Some(0)]);
        assert_eq!(hungarian(&s), vec![Some(1), Some(0)]);
    }

    #[test]
    fn hungarian_rectangular_both_ways() {
        // Fewer rows than columns: 0.9 (r0→c2) + 0.7 (r1→c0) = 1.6 beats 0.9 + 0.6 (r1→c1).
        let wide = m(&[&[0.1, 0.2, 0.9], &[0.7, 0.6, 0.8]]);
        assert_eq!(hungarian(&wide), vec![Some(2), Some(0)]);
        // More rows than columns: the transpose is solved and the worst row is left out.
        let tall = wide.transpose();
        assert_eq!(hungarian(&tall), vec![Some(1), None, Some(0)]);
        assert_eq!(hungarian(&Matrix::new(0, 3, vec![]).unwrap()), vec![]);
        assert_eq!(
            hungarian(&Matrix::new(2, 0, vec![]).unwrap()),
            vec![None, None]
        );
    }

    #[test]
    fn hungarian_nan_is_the_minimum_and_never_reported() {
        let s = m(&[&[NAN, 0.5], &[0.2, NAN]]);
        assert_eq!(hungarian(&s), vec![Some(1), Some(0)]);
        // Row 1 can only take a NaN cell once row 0 has the single finite one.
        let s = m(&[&[NAN, 0.5], &[NAN, NAN]]);
        assert_eq!(hungarian(&s), vec![Some(1), None]);
        let s = m(&[&[NAN, NAN], &[NAN, NAN]]);
        assert_eq!(hungarian(&s), vec![None, None]);
        // −∞ is as bad as NaN: +∞ plus −∞ loses to two zeros.
        let s = m(&[&[f64::INFINITY, 0.0], &[0.0, f64::NEG_INFINITY]]);
        assert_eq!(hungarian(&s), vec![Some(1), Some(0)]);
    }

    #[test]
    fn hungarian_is_scale_free() {
        // Scaling is relative to max |S|, so tiny similarities (a MAD-based score, say) keep their order.
        let s = m(&[&[0.9, 0.8], &[0.85, 0.1]]);
        let tiny = Matrix::from_fn(2, 2, |r, c| s.get(r, c) * 1e-12);
        let huge = Matrix::from_fn(2, 2, |r, c| s.get(r, c) * 1e12);
        assert_eq!(hungarian(&tiny), hungarian(&s));
        assert_eq!(hungarian(&huge), hungarian(&s));
    }

    #[test]
    fn median_by_hand() {
        assert_eq!(median(&m(&[&[3.0, 1.0, 2.0]])), 2.0);
        assert_eq!(median(&m(&[&[4.0, 1.0], &[3.0, 2.0]])), 2.5);
        assert_eq!(median(&m(&[&[NAN, 1.0], &[3.0, NAN]])), 2.0);
        assert!(median(&m(&[&[NAN]])).is_nan());
        assert!(median(&Matrix::from_rows(&[]).unwrap()).is_nan());
    }

    #[test]
    fn monotone_by_hand() {
        // τ = 0.5. Gains: row0 [0.4, 0.3, -0.4], row1 [0.45, -0.5, 0.2].
        // Options: (0,0)+(1,2) = 0.6, (0,1)+(1,2) = 0.5, (1,0) alone = 0.45 → first wins.
        let s = m(&[&[0.9, 0.8, 0.1], &[0.95, 0.0, 0.7]]);
        let al = monotone_alignment_with_threshold(&s, 0.5);
        assert_eq!(al.path, vec![(0, 0), (1, 2)]);
        assert_eq!(al.matched, vec![Some(0), Some(2)]);
        assert!((al.gain - 0.6).abs() < 1e-12);
        assert!((al.score - 0.8).abs() < 1e-12);
        // The median (0.75) as threshold: only 0.9, 0.8 and 0.95 are above it; 0.95 alone wins.
        let al = monotone_alignment(&s);
        assert_eq!(al.threshold, 0.75);
        assert_eq!(al.path, vec![(1, 0)]);
        assert!((al.gain - 0.2).abs() < 1e-12);
    }

    #[test]
    fn monotone_identity_at_equal_depth() {
        let sources: Vec<Option<usize>> = (0..12).map(Some).collect();
        let s = derived_similarity(12, &sources, 1);
        // Raw cosines are high everywhere: this is the trap the threshold is there for.
        assert!(s.data().iter().all(|&v| v > 0.8), "{:?}", s.data());
        let al = monotone_alignment(&s);
        assert_eq!(al.matched, identity_mapping(12, 12));
        assert_eq!(alignment_rate(&al.matched, &sources), 1.0);
    }

    #[test]
    fn monotone_recovers_inserted_layers() {
        // A has 8 layers; B = A with two fresh layers inserted at positions 3 and 6.
        let sources = [
            Some(0),
            Some(1),
            Some(2),
            None,
            Some(3),
            Some(4),
            None,
            Some(5),
            Some(6),
            Some(7),
        ];
        for seed in 0..5 {
            let s = derived_similarity(8, &sources, seed);
            let al = monotone_alignment(&s);
            assert_eq!(al.matched, sources.to_vec(), "seed {seed}");
            // Fresh layers are worse partners than true copies, so the assignment leaves them out too.
            assert_eq!(hungarian(&s), sources.to_vec(), "seed {seed}");
        }
    }

    #[test]
    fn monotone_recovers_duplicated_layers() {
        // Depth up-scaling: B copies A's layers 2 and 5 twice; either copy may be matched, but
        // the rest must follow A in order and exactly two B layers stay unmatched.
        let sources = [
            Some(0),
            Some(1),
            Some(2),
            Some(2),
            Some(3),
            Some(4),
            Some(5),
            Some(5),
            Some(6),
            Some(7),
        ];
        let s = derived_similarity(8, &sources, 3);
        let al = monotone_alignment(&s);
        assert_eq!(al.path.len(), 8);
        for (b, a) in &al.path {
            assert_eq!(sources[*b], Some(*a));
        }
    }

    #[test]
    fn monotone_recovers_removed_layers() {
        // B = A without layers 3 and 6.
        let sources = [Some(0), Some(1), Some(2), Some(4), Some(5), Some(7)];
        let s = derived_similarity(8, &sources, 7);
        let al = monotone_alignment(&s);
        assert_eq!(al.matched, sources.to_vec());
        assert_eq!(al.path.len(), 6);
    }

    #[test]
    fn monotone_recovers_every_second_layer() {
        let sources: Vec<Option<usize>> = (0..16).step_by(2).map(Some).collect();
        let s = derived_similarity(16, &sources, 11);
        let al = monotone_alignment(&s);
        assert_eq!(al.matched, sources);
        assert_eq!(alignment_rate(&al.matched, &sources), 1.0);
    }

    #[test]
    fn monotone_reversed_order_scores_low_and_not_significant() {
        let n = 40;
        let forward = noisy_diagonal(n, 0.9, 0.05, 5);
        let reversed = Matrix::from_fn(n, n, |r, c| forward.get(n - 1 - r, c));
        let fwd = monotone_alignment(&forward);
        let rev = monotone_alignment(&reversed);
        assert_eq!(fwd.matched, identity_mapping(n, n));
        assert!((fwd.score - 0.9).abs() < 1e-12);
        // At most one anti-diagonal cell fits an increasing path; the rest is noise above the median.
        let anti = rev.path.iter().filter(|(b, a)| b + a == n - 1).count();
        assert!(anti <= 1);
        assert!(rev.score < 0.6, "reversed score {}", rev.score);
        // A random row order keeps ~2√n diagonal cells in order, so the reversed order is *below* chance.
        let t = permutation_test(&reversed, Statistic::MonotoneScore, 200, 1);
        assert!(t.p_value > 0.5, "{t:?}");
    }

    #[test]
    fn monotone_degenerate_inputs() {
        let constant = Matrix::from_fn(4, 5, |_, _| 0.99);
        let al = monotone_alignment(&constant);
        assert!(al.path.is_empty(), "no contrast, no evidence");
        assert!(al.score.is_nan());
        assert_eq!(al.gain, 0.0);
        let one = m(&[&[0.7]]);
        assert!(monotone_alignment(&one).path.is_empty());
        let empty = Matrix::new(0, 4, vec![]).unwrap();
        let al = monotone_alignment(&empty);
        assert!(al.matched.is_empty() && al.score.is_nan());
        let all_nan = Matrix::from_fn(3, 3, |_, _| NAN);
        let al = monotone_alignment(&all_nan);
        assert!(al.path.is_empty() && al.threshold.is_nan());
    }

    #[test]
    fn monotone_skips_nan_cells() {
        let mut s = noisy_diagonal(10, 0.9, 0.05, 2);
        s.data[4 * 10 + 4] = NAN;
        s.data[7 * 10 + 2] = NAN;
        let al = monotone_alignment(&s);
        let mut expected = identity_mapping(10, 10);
        expected[4] = None;
        assert_eq!(al.matched, expected);
        assert!((al.score - 0.9).abs() < 1e-12);
    }

    #[test]
    fn alignment_rate_by_hand() {
        let expected = [Some(0), Some(1), None, Some(2)];
        assert_eq!(alignment_rate(&expected, &expected), 1.0);
        assert_eq!(
            alignment_rate(&[Some(0), Some(2), Some(1), Some(2)], &expected),
            0.5
        );
        // Length mismatch: the missing row counts as None and differs from Some(2).
        assert_eq!(alignment_rate(&[Some(0), Some(1), None], &expected), 0.75);
        assert!(alignment_rate(&[], &[]).is_nan());
        assert_eq!(identity_mapping(3, 2), vec![Some(0), Some(1), None]);
    }

    #[test]
    fn statistics_by_hand() {
        let s = m(&[&[0.9, 0.8], &[0.85, 0.1], &[0.3, NAN]]);
        assert!((Statistic::DiagonalMean.compute(&s) - 0.5).abs() < 1e-12);
        // Hungarian: r0→c1 (0.8), r1→c0 (0.85), r2 left out.
        assert!((Statistic::HungarianMean.compute(&s) - 0.825).abs() < 1e-12);
        let nan_diag = m(&[&[NAN, 0.2], &[0.3, 0.6]]);
        assert_eq!(Statistic::DiagonalMean.compute(&nan_diag), 0.6);
        assert!(
            Statistic::DiagonalMean
                .compute(&Matrix::from_rows(&[]).unwrap())
                .is_nan()
        );
    }

    #[test]
    fn noisy_diagonal_is_recovered_and_significant() {
        let s = noisy_diagonal(40, 0.9, 0.1, 42);
        let identity = identity_mapping(40, 40);
        assert_eq!(argmax_alignment(&s), identity);
        assert_eq!(hungarian(&s), identity);
        assert_eq!(monotone_alignment(&s).matched, identity);
        assert!(margins(&s).iter().all(|&v| v > 0.2));
        for stat in ALL_STATISTICS {
            let t = permutation_test(&s, stat, DEFAULT_PERMUTATIONS, 9);
            assert!(t.p_value < 0.01, "{stat:?}: {t:?}");
            assert!((t.p_value - 1.0 / 1001.0).abs() < 1e-15, "{stat:?}: {t:?}");
            assert_eq!(t.perms, DEFAULT_PERMUTATIONS);
            assert!(t.null_mean < t.observed && t.null_sd > 0.0);
        }
    }

    /// The acceptance criterion for independent pairs: over 40 seeds, ~95% have p > 0.05.
    ///
    /// Under an exact null P(p ≤ 0.05) = 0.05, so "at least 38 of 40" sits at the nominal level
    /// and fails for about a third of seed sets (P(Bin(40, 0.05) ≥ 3) = 0.32): with seeds 0..40
    /// DiagonalMean gets 37/40. The bound asserted is the binomial one, at most 4 rejections
    /// (P(≥ 5) = 0.048); `permutation_null_is_calibrated` is the sharper check.
    #[test]
    fn iid_matrix_is_not_significant() {
        for stat in [
            Statistic::DiagonalMean,
            Statistic::MonotoneScore,
            Statistic::MonotoneGain,
        ] {
            let ok = (0..40u64)
                .filter(|&seed| {
                    let s = iid(40, 40, 1000 + seed);
                    permutation_test(&s, stat, DEFAULT_PERMUTATIONS, seed).p_value > 0.05
                })
                .count();
            eprintln!("{stat:?}: {ok}/40 with p > 0.05");
            assert!(ok >= 36, "{stat:?}: only {ok}/40 with p > 0.05");
        }
        // Kuhn–Munkres is O(n³) per draw: a smaller matrix keeps the test quick.
        let ok = (0..40u64)
            .filter(|&seed| {
                let s = iid(15, 15, 2000 + seed);
                permutation_test(&s, Statistic::HungarianMean, 999, seed).p_value > 0.05
            })
            .count();
        eprintln!("HungarianMean: {ok}/40 with p > 0.05");
        assert!(ok >= 36, "HungarianMean: only {ok}/40 with p > 0.05");
    }

    #[test]
    fn permutation_null_is_calibrated() {
        // 300 independent matrices: the rejection rate at 0.05 must be within 3 binomial SE of 0.05.
        let trials = 300;
        let limit = 0.05 + 3.0 * (0.05f64 * 0.95 / trials as f64).sqrt();
        for stat in [
            Statistic::DiagonalMean,
            Statistic::MonotoneScore,
            Statistic::MonotoneGain,
        ] {
            let rejected = (0..trials as u64)
                .filter(|&seed| {
                    let s = iid(20, 16, 5000 + seed);
                    permutation_test(&s, stat, 199, seed).p_value <= 0.05
                })
                .count();
            let rate = rejected as f64 / trials as f64;
            assert!(rate <= limit, "{stat:?}: rejection rate {rate}");
        }
    }

    #[test]
    fn monotone_gain_has_power_where_the_mean_score_has_little() {
        // 10 layers: a random row order still leaves a few diagonal cells in increasing order,
        // and a path through only those has the same mean similarity as the full diagonal.
        let s = noisy_diagonal(10, 0.9, 0.05, 8);
        let score = permutation_test(&s, Statistic::MonotoneScore, 999, 4);
        let gain = permutation_test(&s, Statistic::MonotoneGain, 999, 4);
        eprintln!("score {score:?}\ngain {gain:?}");
        assert!(gain.p_value < 0.01, "{gain:?}");
        assert!(score.p_value > 10.0 * gain.p_value, "{score:?} vs {gain:?}");
    }

    #[test]
    fn hungarian_under_row_labels_is_degenerate() {
        // Why HungarianMean defaults to WithinRows: relabelling rows cannot change the optimum.
        let s = noisy_diagonal(20, 0.9, 0.1, 3);
        let t = permutation_test_with(&s, Statistic::HungarianMean, NullModel::RowLabels, 100, 1);
        assert_eq!(t.p_value, 1.0);
        assert!(t.null_sd < 1e-12);
        assert_eq!(
            permutation_test(&s, Statistic::HungarianMean, 10, 1).null,
            NullModel::WithinRows
        );
    }

    #[test]
    fn permutation_test_is_deterministic_per_seed() {
        let s = iid(12, 10, 77);
        for stat in ALL_STATISTICS {
            let a = permutation_test(&s, stat, 300, 123);
            let b = permutation_test(&s, stat, 300, 123);
            let c = permutation_test(&s, stat, 300, 124);
            assert_eq!(a, b);
            assert_ne!(a.null_mean, c.null_mean, "{stat:?}");
        }
    }

    #[test]
    fn permutation_test_tolerates_nan_and_empty() {
        let mut s = noisy_diagonal(24, 0.9, 0.05, 8);
        s.data[0] = NAN;
        s.data[30] = NAN;
        for stat in ALL_STATISTICS {
            let t = permutation_test(&s, stat, 200, 4);
            assert!(t.p_value < 0.05, "{stat:?}: {t:?}");
        }
        let all_nan = Matrix::from_fn(4, 4, |_, _| NAN);
        let t = permutation_test(&all_nan, Statistic::MonotoneScore, 50, 1);
        assert!(t.observed.is_nan() && t.p_value.is_nan() && t.null_mean.is_nan());
        assert_eq!(t.perms, 0);
        let empty = Matrix::from_rows(&[]).unwrap();
        let t = permutation_test(&empty, Statistic::DiagonalMean, 10, 1);
        assert!(t.p_value.is_nan());
        let t = permutation_test(&s, Statistic::DiagonalMean, 0, 1);
        assert_eq!(t.perms, 0);
        assert_eq!(t.p_value, 1.0);
        assert!(t.null_mean.is_nan() && t.null_sd.is_nan());
    }
}
