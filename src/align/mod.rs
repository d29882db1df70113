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

/// The weights the assignment solver sees: finite similarities divided by `max|finite S|`
/// (so the solution does not depend on the metric's units), NaN and −∞ as −2 (below every
/// finite entry, and worse than any two of them), +∞ as 1.
fn normalised_weights(s: &Matrix) -> Vec<f64> {
    let max_abs = s
        .data
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    s.data
        .iter()
        .map(|&v| {
            if v.is_finite() {
                if max_abs > 0.0 { v / max_abs } else { 0.0 }
            } else if v == f64::INFINITY {
                1.0
            } else {
                -2.0
            }
        })
        .collect()
}

/// One-to-one assignment of B layers to A layers maximising total similarity (the exact
/// solver of [`crate::assignment`]).
///
/// Rectangular matrices are fine: with more rows than columns the surplus rows get `None`.
/// A row assigned to a NaN cell also gets `None` (the solver had nothing better to give it).
/// The solver is deterministic, so equal inputs give equal assignments.
pub fn hungarian(s: &Matrix) -> Vec<Option<usize>> {
    let mut out = vec![None; s.rows];
    if s.rows == 0 || s.cols == 0 {
        return out;
    }
    // The solver assigns every row: solve on the transpose when B is deeper.
    let transposed = s.rows > s.cols;
    let (rows, cols, weights) = if transposed {
        (s.cols, s.rows, normalised_weights(&s.transpose()))
    } else {
        (s.rows, s.cols, normalised_weights(s))
    };
    // The solver refuses only non-finite weights, a ragged matrix or more rows than
    // columns, none of which can reach it from here.
    let assignment = crate::assignment::hungarian_assignment(&weights, rows, cols)
        .expect("finite weights of a full matrix with rows <= cols");
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
mod tests;
