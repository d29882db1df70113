//! One home for statistics: pure functions, no I/O, no experiment types.
//!
//! Every z-score of the experiments divides by the *sample* standard deviation (n − 1): the
//! nulls they stand against are small samples (a few control pairs, a few dozen wrong-layer
//! pairs), where the population form (n) understates the spread and overstates z.
//!
//! p-values are carried as natural logarithms wherever they can be tiny: a derived model's
//! per-layer p-values fall far below the smallest f64 (`1e-308`), and Fisher's method needs
//! their logarithms, not zeros.

use statrs::distribution::{Beta, ChiSquared, ContinuousCDF};

/// Largest n for which [`spearman_upper_ln_p`] enumerates all n! permutations (9! = 362 880).
pub const SPEARMAN_EXACT_MAX_N: usize = 9;

/// Whether `p` is a permutation of `0..p.len()`.
pub fn is_permutation(p: &[usize]) -> bool {
    let mut seen = vec![false; p.len()];
    for &v in p {
        match seen.get_mut(v) {
            Some(s) if !*s => *s = true,
            _ => return false,
        }
    }
    true
}

/// Σ (a_k − b_k)² of two permutations of `0..n`, the integer behind Spearman's ρ.
fn squared_rank_distance(a: &[usize], b: &[usize]) -> u128 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x.abs_diff(y) as u128;
            d * d
        })
        .sum()
}

/// Spearman's ρ between two permutations of `0..n` read as paired sequences: their values are
/// their own ranks (no ties), so ρ = 1 − 6·Σd² / (n(n² − 1)). `None` unless both are
/// permutations of the same length n ≥ 2.
pub fn spearman_permutations(a: &[usize], b: &[usize]) -> Option<f64> {
    let n = a.len();
    if n < 2 || b.len() != n || !is_permutation(a) || !is_permutation(b) {
        return None;
    }
    let d2 = squared_rank_distance(a, b) as f64;
    let nf = n as f64;
    Some(1.0 - 6.0 * d2 / (nf * (nf * nf - 1.0)))
}

/// ln P(ρ' ≥ ρ) for ρ' the Spearman correlation of a uniformly random permutation of `0..n`
/// with the identity (the one-sided upper tail: only agreement is evidence), and whether it is
/// exact.
///
/// Exact for n ≤ [`SPEARMAN_EXACT_MAX_N`] (all n! permutations counted); otherwise the normal
/// approximation z = ρ·√(n − 1) (ρ has mean 0 and variance 1/(n − 1) under the null). The exact
/// distribution is bounded and lighter-tailed than the normal, so the approximation is
/// conservative in the far tail (at ρ = 1 the exact p is 1/n!, the normal's about e^{−(n−1)/2});
/// around p ≈ 0.05 at n = 9 the two differ by about 10 %.
pub fn spearman_upper_ln_p(rho: f64, n: usize) -> (f64, bool) {
    if n < 2 || rho.is_nan() {
        return (0.0, true);
    }
    if n <= SPEARMAN_EXACT_MAX_N {
        return (exact_upper_ln_p(rho, n), true);
    }
    (normal_upper_ln_p(rho * ((n - 1) as f64).sqrt()), false)
}

/// Exact upper tail by enumeration: ρ' ≥ ρ ⟺ Σd² ≤ D with D from ρ (rounded, since ρ came from
/// an integer D).
fn exact_upper_ln_p(rho: f64, n: usize) -> f64 {
    let nf = n as f64;
    let d_max = ((1.0 - rho) * nf * (nf * nf - 1.0) / 6.0 + 1e-6).floor();
    if d_max < 0.0 {
        return f64::NEG_INFINITY;
    }
    let d_max = d_max as u128;
    fn count(pos: usize, n: usize, used: &mut [bool], acc: u128, limit: u128) -> u64 {
        if acc > limit {
            return 0;
        }
        if pos == n {
            return 1;
        }
        let mut c = 0;
        for v in 0..n {
            if !used[v] {
                used[v] = true;
                let d = pos.abs_diff(v) as u128;
                c += count(pos + 1, n, used, acc + d * d, limit);
                used[v] = false;
            }
        }
        c
    }
    let hits = count(0, n, &mut vec![false; n], 0, d_max);
    let total: f64 = (1..=n).map(|k| k as f64).product();
    (hits as f64).ln() - total.ln()
}

/// ln(1 − Φ(z)) for the standard normal, accurate far beyond where 1 − Φ underflows.
pub fn normal_upper_ln_p(z: f64) -> f64 {
    if z.is_nan() {
        return 0.0;
    }
    // erfc is accurate until it underflows near z = 38; past 37 the asymptotic (Mills ratio)
    // series has relative error below 1e-12 with the terms kept.
    if z < 37.0 {
        return (0.5 * statrs::function::erf::erfc(z / std::f64::consts::SQRT_2)).ln();
    }
    let z2 = z * z;
    let series =
        1.0 - 1.0 / z2 + 3.0 / (z2 * z2) - 15.0 / (z2 * z2 * z2) + 105.0 / (z2 * z2 * z2 * z2);
    -0.5 * z2 - z.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln() + series.ln()
}

/// Fisher's combination of independent p-values given as natural logarithms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fisher {
    /// −2 Σ ln p.
    pub chi2: f64,
    /// 2 × the number of p-values.
    pub dof: usize,
    /// ln of the combined p-value, P(χ²_dof ≥ chi2).
    pub ln_p: f64,
}

impl Fisher {
    /// The combined p-value, `exp(ln_p)` (may underflow to 0).
    pub fn p_value(&self) -> f64 {
        self.ln_p.exp()
    }

    /// log10 of the combined p-value (finite where `p_value` underflows).
    pub fn log10_p(&self) -> f64 {
        self.ln_p / std::f64::consts::LN_10
    }
}

/// Fisher's method on `ln_ps` (each ≤ 0; non-finite or positive entries are refused: `None`,
/// as is an empty list).
pub fn fisher_ln(ln_ps: &[f64]) -> Option<Fisher> {
    if ln_ps.is_empty() || ln_ps.iter().any(|l| l.is_nan() || *l > 0.0) {
        return None;
    }
    let chi2 = -2.0 * ln_ps.iter().sum::<f64>();
    let dof = 2 * ln_ps.len();
    Some(Fisher {
        chi2,
        dof,
        ln_p: chi2_upper_ln_p(chi2, dof),
    })
}

/// [`fisher_ln`] on plain p-values (each in (0, 1]).
pub fn fisher(ps: &[f64]) -> Option<Fisher> {
    if ps.iter().any(|p| !(*p > 0.0 && *p <= 1.0)) {
        return None;
    }
    fisher_ln(&ps.iter().map(|p| p.ln()).collect::<Vec<_>>())
}

/// ln P(χ²_dof ≥ x): statrs' survival function while it is representable; below that, for even
/// dof = 2k (all Fisher needs), the closed form Q = e^{−x/2} Σ_{j<k} (x/2)^j / j! in log space.
pub fn chi2_upper_ln_p(x: f64, dof: usize) -> f64 {
    if x.is_infinite() && x > 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_nan() || x <= 0.0 || dof == 0 {
        return 0.0;
    }
    if let Ok(c) = ChiSquared::new(dof as f64) {
        let sf = c.sf(x);
        if sf > 1e-280 {
            return sf.ln();
        }
    }
    if dof.is_multiple_of(2) {
        return chi2_even_upper_ln_p(x, dof / 2);
    }
    f64::NEG_INFINITY
}

/// ln of e^{−x/2} Σ_{j<k} (x/2)^j / j! (the χ² tail with 2k degrees of freedom).
fn chi2_even_upper_ln_p(x: f64, k: usize) -> f64 {
    let h = x / 2.0;
    let terms: Vec<f64> = (0..k)
        .map(|j| j as f64 * h.ln() - statrs::function::gamma::ln_gamma(j as f64 + 1.0))
        .collect();
    let m = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    -h + m + terms.iter().map(|t| (t - m).exp()).sum::<f64>().ln()
}

/// Mean of the values (NaN when empty).
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// Sample standard deviation (divides by n − 1; NaN below two values): the one convention
/// for a spread estimated from a sample.
pub fn sample_sd(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return f64::NAN;
    }
    let m = mean(values);
    let ss: f64 = values.iter().map(|x| (x - m) * (x - m)).sum();
    (ss / (values.len() - 1) as f64).sqrt()
}

/// `(value − mean) / sample sd` of the finite null values; `None` with fewer than two of them
/// or no spread.
pub fn z_against(value: f64, null_values: &[f64]) -> Option<f64> {
    let finite: Vec<f64> = null_values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if finite.len() < 2 {
        return None;
    }
    let sd = sample_sd(&finite);
    (sd > 0.0).then(|| (value - mean(&finite)) / sd)
}

/// Per value, its z ([`z_against`]) against the values marked as controls, itself left out:
/// how a pair stands against the control pairs of its own run. `None` where the value is not
/// finite or the other controls give no z.
pub fn z_against_other_controls(values: &[f64], is_control: &[bool]) -> Vec<Option<f64>> {
    values
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            let null: Vec<f64> = values
                .iter()
                .zip(is_control)
                .enumerate()
                .filter(|&(c, (x, &control))| control && c != k && x.is_finite())
                .map(|(_, (x, _))| *x)
                .collect();
            if v.is_finite() {
                z_against(v, &null)
            } else {
                None
            }
        })
        .collect()
}

/// The null of a mean row cosine when B's hidden basis is unrelated to A's: the standard
/// deviation of `(1/n)·Σ_r cos(a_r, Q·b_r)` over Haar-random orthogonal `Q` (its mean is 0).
/// The statistic is `⟨Q, M⟩` with `M = (1/n)·Σ_r â_r·b̂_rᵀ` (unit rows), and for Haar `Q`
/// `E[Q_ij·Q_kl] = δ_ik·δ_jl / d`, so the variance is exactly `‖M‖_F² / d`. B's token geometry
/// (every cosine among its rows) and the pairing are kept; only the basis is randomised, so a
/// direction both models share with token frequency (not with each other's coordinates) counts
/// as null. `a` and `b` are row-major `rows × cols`; zero rows are left out. NaN without rows.
pub fn rotation_null_sd(a: &[f32], b: &[f32], rows: usize, cols: usize) -> f64 {
    let unit = |m: &[f32], r: usize| -> Option<Vec<f64>> {
        let row: Vec<f64> = m
            .get(r * cols..(r + 1) * cols)?
            .iter()
            .map(|&x| f64::from(x))
            .collect();
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        (norm > 0.0 && norm.is_finite()).then(|| row.iter().map(|x| x / norm).collect())
    };
    let (mut ua, mut ub) = (Vec::new(), Vec::new());
    for r in 0..rows {
        if let (Some(x), Some(y)) = (unit(a, r), unit(b, r)) {
            ua.extend(x);
            ub.extend(y);
        }
    }
    let n = ua.len() / cols.max(1);
    if n == 0 || cols == 0 {
        return f64::NAN;
    }
    let (ma, mb) = (
        nalgebra::DMatrix::from_row_slice(n, cols, &ua),
        nalgebra::DMatrix::from_row_slice(n, cols, &ub),
    );
    // ‖ÂᵀB̂‖_F² = Σ_rs (â_r·â_s)(b̂_r·b̂_s): the cheaper side of the two products.
    let squared = if n < cols {
        (&ma * ma.transpose())
            .component_mul(&(&mb * mb.transpose()))
            .sum()
    } else {
        (ma.transpose() * &mb).norm_squared()
    };
    (squared.max(0.0) / cols as f64).sqrt() / n as f64
}

/// The exact (Clopper–Pearson) upper confidence bound of a binomial rate: with `k` events
/// in `n` trials, the largest rate under which seeing `k` or fewer has probability at least
/// `1 − confidence`. With k = 0 it is `1 − (1 − confidence)^(1/n)`.
pub fn clopper_pearson_upper(k: usize, n: usize, confidence: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    if k >= n {
        return 1.0;
    }
    let alpha = 1.0 - confidence;
    // Upper bound: the (1 − α) quantile of Beta(k + 1, n − k).
    match Beta::new((k + 1) as f64, (n - k) as f64) {
        Ok(b) => b.inverse_cdf(1.0 - alpha),
        Err(_) => 1.0,
    }
}

/// The exact (Clopper–Pearson) lower confidence bound of a binomial rate (0 when k = 0).
pub fn clopper_pearson_lower(k: usize, n: usize, confidence: f64) -> f64 {
    if n == 0 || k == 0 {
        return 0.0;
    }
    if k > n {
        return 1.0;
    }
    let alpha = 1.0 - confidence;
    match Beta::new(k as f64, (n - k + 1) as f64) {
        Ok(b) => b.inverse_cdf(alpha),
        Err(_) => 0.0,
    }
}

/// Cantelli's one-sided Chebyshev bound: for any distribution with mean `mean` and
/// standard deviation `sd`, P(X ≥ x) ≤ sd² / (sd² + (x − mean)²) when x > mean (1 otherwise).
/// No shape is assumed, so it is conservative where a Gaussian tail would be optimistic.
pub fn cantelli_tail(x: f64, mean: f64, sd: f64) -> f64 {
    if !(x.is_finite() && mean.is_finite() && sd.is_finite()) || x <= mean {
        return 1.0;
    }
    if sd <= 0.0 {
        return 0.0;
    }
    let d = x - mean;
    sd * sd / (sd * sd + d * d)
}

/// How many standard deviations above the mean Cantelli's bound needs to reach `rate`:
/// k = √(1/rate − 1).
pub fn cantelli_k(rate: f64) -> f64 {
    if rate >= 1.0 || rate.is_nan() {
        return 0.0;
    }
    if rate <= 0.0 {
        return f64::INFINITY;
    }
    (1.0 / rate - 1.0).sqrt()
}

/// The conformal p-value of `x` against a sample of null values: (1 + #{null ≥ x}) / (n + 1).
/// Exact when `x` and the sample are exchangeable under the null, whatever the distribution.
pub fn conformal_p(x: f64, null: &[f64]) -> f64 {
    let above = null.iter().filter(|v| **v >= x).count();
    (1 + above) as f64 / (null.len() + 1) as f64
}

/// Standard normal CDF, via the complementary error function (Numerical Recipes `erfcc`,
/// relative error below 1.2e-7).
pub fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 {
        1.0 - 0.5 * erfc
    } else {
        0.5 * erfc
    }
}

/// log10 P(X ≥ k) for X ~ Binomial(n, p): the regularized incomplete beta I_p(k, n − k + 1)
/// while it is representable, else the Chernoff bound −n·KL(k/n ‖ p)/ln 10 (an upper bound,
/// so a p-value in the far tail is never overstated). 0 when k = 0; −∞ when p = 0 < k.
pub fn binomial_upper_log10_p(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 || n == 0 {
        return 0.0;
    }
    if k > n {
        return f64::NEG_INFINITY;
    }
    let p = p.clamp(0.0, 1.0);
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return 0.0;
    }
    let tail = statrs::function::beta::beta_reg(k as f64, (n - k + 1) as f64, p);
    if tail > 1e-280 {
        return tail.min(1.0).log10();
    }
    let q = k as f64 / n as f64;
    let kl = |a: f64, b: f64| if a > 0.0 { a * (a / b).ln() } else { 0.0 };
    -(n as f64) * (kl(q, p) + kl(1.0 - q, 1.0 - p)) / std::f64::consts::LN_10
}

/// P(X ≥ k) for X a sum of independent Bernoulli(p_i) (Poisson-binomial), exact by dynamic
/// programming.
pub fn poisson_binomial_tail(ps: &[f64], k: usize) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > ps.len() {
        return 0.0;
    }
    // dist[j] = P(j successes so far), j < k; dist[k] accumulates P(≥ k).
    let mut dist = vec![0.0f64; k + 1];
    dist[0] = 1.0;
    for &p in ps {
        let p = p.clamp(0.0, 1.0);
        dist[k] += dist[k - 1] * p;
        for j in (1..k).rev() {
            dist[j] = dist[j] * (1.0 - p) + dist[j - 1] * p;
        }
        dist[0] *= 1.0 - p;
    }
    dist[k].clamp(0.0, 1.0)
}

/// z of the mean of `n` matched-row statistics against the null rows, whose mean is itself
/// estimated from `null.len()` draws: `(x̄ − m) / (s·√(1/n + 1/n_null))`, with `m`, `s` the
/// null rows' mean and sample sd. This is the prediction-interval form for a mean (for one
/// value, `s·√(1 + 1/n_null)`): dividing by `s/√n` alone ignored the standard error of `m`
/// and overstated z by √2 when both sides have as many rows, more with few null draws.
pub fn z_mean_vs_null(x_mean: f64, n: usize, null: &[f64]) -> f64 {
    if n == 0 || null.len() < 2 {
        return f64::NAN;
    }
    let (m, s) = (mean(null), sample_sd(null));
    (x_mean - m) / (s * (1.0 / n as f64 + 1.0 / null.len() as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z_against_the_other_controls_by_hand() {
        // The audited value 10 against controls 1, 2, 3 (mean 2, sample sd 1): z = 8. Control 1
        // against 2 and 3 (mean 2.5, sd √½): z = −1.5/√½. A NaN value, or a NaN control, takes
        // no part; a control with fewer than two others has no z.
        let values = [10.0, 1.0, 2.0, 3.0, f64::NAN];
        let controls = [false, true, true, true, true];
        let z = z_against_other_controls(&values, &controls);
        assert_eq!(z[0], Some(8.0));
        assert!((z[1].unwrap() + 1.5 / 0.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(z[4], None);
        let z = z_against_other_controls(&[5.0, 1.0, 2.0], &[false, true, true]);
        assert!((z[0].unwrap() - 3.5 / 0.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(z[1..], [None, None]);
    }

    #[test]
    fn spearman_of_permutations_by_hand() {
        assert_eq!(spearman_permutations(&[0, 1, 2], &[0, 1, 2]), Some(1.0));
        assert_eq!(spearman_permutations(&[0, 1, 2], &[2, 1, 0]), Some(-1.0));
        // Σd² = 1 + 1 + 0 + 0 = 2, n = 4: 1 − 12/60 = 0.8.
        assert_eq!(
            spearman_permutations(&[0, 1, 2, 3], &[1, 0, 2, 3]),
            Some(0.8)
        );
        // paired sequences, not permutations applied to each other: (3,0,1,2) vs (0,1,2,3),
        // Σd² = 9 + 1 + 1 + 1 = 12: 1 − 72/60 = −0.2.
        let r = spearman_permutations(&[3, 0, 1, 2], &[0, 1, 2, 3]).unwrap();
        assert!((r + 0.2).abs() < 1e-12);
        assert_eq!(spearman_permutations(&[0, 0, 1], &[0, 1, 2]), None);
        assert_eq!(spearman_permutations(&[0, 1], &[0, 1, 2]), None);
        assert_eq!(spearman_permutations(&[0, 3], &[0, 1]), None);
        assert_eq!(spearman_permutations(&[0], &[0]), None);
    }

    #[test]
    fn rotation_null_by_hand() {
        // one row pair in 2 dims: M = â·b̂ᵀ has ‖M‖_F = 1, so the sd is 1/√2 (cos of a uniform
        // angle has variance ½).
        let sd = rotation_null_sd(&[3.0, 0.0], &[0.0, 2.0], 1, 2);
        assert!((sd - 0.5f64.sqrt()).abs() < 1e-12, "{sd}");
        // two orthogonal row pairs in 2 dims: M = (e1·e1ᵀ + e2·e2ᵀ)/2, ‖M‖_F² = ½, sd = ½;
        // the same pairs in the other order of products (n ≥ cols) give the same.
        let sd = rotation_null_sd(&[1.0, 0.0, 0.0, 1.0], &[1.0, 0.0, 0.0, 1.0], 2, 2);
        assert!((sd - 0.5).abs() < 1e-12, "{sd}");
        // identical rows add up: ‖M‖_F = 1 whatever n, so the sd does not shrink.
        let sd = rotation_null_sd(
            &[1.0, 0.0, 1.0, 0.0, 1.0, 0.0],
            &[0.0, 1.0, 0.0, 1.0, 0.0, 1.0],
            3,
            2,
        );
        assert!((sd - 0.5f64.sqrt()).abs() < 1e-12, "{sd}");
        // a zero row is left out; nothing left is NaN
        assert!(rotation_null_sd(&[0.0, 0.0], &[1.0, 0.0], 1, 2).is_nan());
    }

    #[test]
    fn rotation_null_matches_random_rotations() {
        // independent check: draw Haar rotations (QR of a Gaussian matrix, signs fixed) and
        // measure the spread of the mean cosine directly.
        let (rows, cols) = (6, 5);
        let mut rng = fastrand::Rng::with_seed(11);
        let mut gauss = || {
            let (u, v) = (rng.f64().max(1e-300), rng.f64());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        };
        let a: Vec<f32> = (0..rows * cols).map(|_| gauss() as f32 + 0.5).collect();
        let b: Vec<f32> = (0..rows * cols).map(|_| gauss() as f32 - 0.3).collect();
        let want = rotation_null_sd(&a, &b, rows, cols);
        let draws: Vec<f64> = (0..20000)
            .map(|_| {
                let g = nalgebra::DMatrix::from_fn(cols, cols, |_, _| gauss());
                let qr = g.qr();
                let (mut q, r) = (qr.q(), qr.r());
                for j in 0..cols {
                    if r[(j, j)] < 0.0 {
                        q.column_mut(j).neg_mut();
                    }
                }
                let mut total = 0.0;
                for r in 0..rows {
                    let ra = nalgebra::DVector::from_iterator(
                        cols,
                        a[r * cols..(r + 1) * cols].iter().map(|&x| f64::from(x)),
                    );
                    let rb = nalgebra::DVector::from_iterator(
                        cols,
                        b[r * cols..(r + 1) * cols].iter().map(|&x| f64::from(x)),
                    );
                    let qb = &q * rb;
                    total += ra.dot(&qb) / (ra.norm() * qb.norm());
                }
                total / rows as f64
            })
            .collect();
        assert!(mean(&draws).abs() < 0.01, "{}", mean(&draws));
        let got = sample_sd(&draws);
        assert!(
            (got / want - 1.0).abs() < 0.03,
            "simulated {got}, formula {want}"
        );
    }

    #[test]
    fn exact_spearman_tail_by_hand() {
        // n = 3: Σd² over the 6 permutations is 0, 2, 2, 6, 6, 8, so ρ = 1 − Σd²/4 takes
        // 1, ½, ½, −½, −½, −1.
        let p = |rho: f64, n: usize| {
            let (l, exact) = spearman_upper_ln_p(rho, n);
            assert!(exact);
            l.exp()
        };
        assert!((p(1.0, 3) - 1.0 / 6.0).abs() < 1e-12);
        assert!((p(0.5, 3) - 0.5).abs() < 1e-12);
        assert!((p(-0.5, 3) - 5.0 / 6.0).abs() < 1e-12);
        assert!((p(-1.0, 3) - 1.0).abs() < 1e-12);
        // ρ = 1 happens once in n! permutations.
        assert!((p(1.0, 7) - 1.0 / 5040.0).abs() < 1e-15);
        // n = 9 tail counted by an independent enumeration (Python itertools): P(ρ ≥ 0.75)
        // = 0.01275 (4625 of 362 880 permutations have Σd² ≤ 30).
        assert!((p(0.75, 9) - 4625.0 / 362_880.0).abs() < 1e-12);
    }

    #[test]
    fn normal_tail_is_conservative_where_it_matters_and_finite_far_out() {
        // n = 9, ρ = 0.75: exact 0.01275, normal Φ̄(0.75·√8) = Φ̄(2.1213) = 0.01695.
        let normal = normal_upper_ln_p(0.75 * 8f64.sqrt()).exp();
        assert!((normal - 0.016947).abs() < 1e-5, "{normal}");
        // large n uses the normal approximation
        let (l, exact) = spearman_upper_ln_p(0.1, 101);
        assert!(!exact);
        assert!((l.exp() - 0.158655).abs() < 1e-5); // Φ̄(1)
        // far tail: continuous across the switch at z = 37 and finite beyond f64's range
        let below = normal_upper_ln_p(37.0 - 1e-9);
        let above = normal_upper_ln_p(37.0);
        // (statrs' erfc is good to a few 1e-8 relative there: ln p ≈ −689 agrees to 1e-6)
        assert!((below - above).abs() < 1e-6, "{below} vs {above}");
        let (far, _) = spearman_upper_ln_p(1.0, 11_008);
        // −z²/2 dominates: z² = 11007
        assert!(far < -5500.0 && far > -5520.0, "{far}");
        assert_eq!(spearman_upper_ln_p(f64::NAN, 10).0, 0.0);
    }

    #[test]
    fn fisher_matches_known_values() {
        // scipy.stats.combine_pvalues([0.01, 0.2]): statistic 12.4292, pvalue 0.014434.
        let f = fisher(&[0.01, 0.2]).unwrap();
        assert!((f.chi2 - 12.429216).abs() < 1e-5, "{}", f.chi2);
        assert_eq!(f.dof, 4);
        assert!((f.p_value() - 0.014434).abs() < 1e-5, "{}", f.p_value());
        // one p-value combines to itself
        let one = fisher(&[0.3]).unwrap();
        assert!((one.p_value() - 0.3).abs() < 1e-12);
        assert!(fisher(&[]).is_none());
        assert!(fisher(&[0.0]).is_none());
        assert!(fisher(&[1.5]).is_none());
        assert!(fisher_ln(&[f64::NAN]).is_none());
    }

    #[test]
    fn chi2_tail_agrees_with_statrs_and_stays_finite_past_underflow() {
        // the closed form and statrs agree where both are representable
        for (x, dof) in [(3.0, 2), (12.43, 4), (80.0, 20), (500.0, 60)] {
            let statrs = ChiSquared::new(dof as f64).unwrap().sf(x).ln();
            let closed = chi2_even_upper_ln_p(x, dof / 2);
            assert!(
                (statrs - closed).abs() < 1e-8,
                "x={x} dof={dof}: {statrs} vs {closed}"
            );
        }
        // dof 2: Q = e^{−x/2} exactly, far past where e^{−x/2} underflows
        assert!((chi2_upper_ln_p(5000.0, 2) + 2500.0).abs() < 1e-9);
        // Fisher of three layers at p = e^{−5000}
        let f = fisher_ln(&[-5000.0; 3]).unwrap();
        assert_eq!(f.chi2, 30_000.0);
        assert!(f.ln_p < -14_900.0 && f.ln_p > -15_000.0, "{}", f.ln_p);
        assert_eq!(f.p_value(), 0.0);
        assert!((f.log10_p() - f.ln_p / std::f64::consts::LN_10).abs() < 1e-9);
    }
}

#[cfg(test)]
mod rate_tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn moments_by_hand() {
        assert_eq!(mean(&[1.0, 2.0, 3.0, 6.0]), 3.0);
        // Deviations −2, −1, 0, 3: squares sum to 14, over n − 1 = 3.
        assert!(close(
            sample_sd(&[1.0, 2.0, 3.0, 6.0]),
            (14.0f64 / 3.0).sqrt(),
            1e-12
        ));
        assert!(sample_sd(&[1.0]).is_nan());
        assert!(mean(&[]).is_nan());
    }

    #[test]
    fn clopper_pearson_matches_closed_forms_and_scipy() {
        // k = 0: 1 − α^(1/n), the "rule of three" region (n = 100 gives 0.0295).
        assert!(close(
            clopper_pearson_upper(0, 100, 0.95),
            1.0 - 0.05f64.powf(0.01),
            1e-9
        ));
        assert!(close(clopper_pearson_upper(0, 10, 0.95), 0.258_866, 1e-5));
        // Independently, by the binomial sums the bounds are defined by: at the upper bound,
        // seeing k or fewer has probability α; at the lower bound, seeing k or more has α.
        let binom_cdf = |k: usize, n: usize, p: f64| -> f64 {
            (0..=k)
                .map(|i| {
                    let c: f64 = (0..i).map(|j| (n - j) as f64 / (j + 1) as f64).product();
                    c * p.powi(i as i32) * (1.0 - p).powi((n - i) as i32)
                })
                .sum()
        };
        for (k, n) in [(1, 10), (2, 10), (3, 40), (7, 25)] {
            let u = clopper_pearson_upper(k, n, 0.95);
            assert!(close(binom_cdf(k, n, u), 0.05, 1e-7), "{k}/{n}: {u}");
            let l = clopper_pearson_lower(k, n, 0.95);
            assert!(
                close(1.0 - binom_cdf(k - 1, n, l), 0.05, 1e-7),
                "{k}/{n}: {l}"
            );
        }
        // By hand for 2 of 10: P(X ≤ 2 | p = 0.507) ≈ 0.05.
        assert!(close(clopper_pearson_upper(2, 10, 0.95), 0.507, 2e-3));
        assert_eq!(clopper_pearson_upper(5, 5, 0.95), 1.0);
        assert_eq!(clopper_pearson_upper(0, 0, 0.95), 1.0);
        assert_eq!(clopper_pearson_lower(0, 7, 0.95), 0.0);
    }

    #[test]
    fn cantelli_by_hand() {
        // Two standard deviations above the mean: 1 / (1 + 4) = 0.2.
        assert!(close(cantelli_tail(5.0, 1.0, 2.0), 0.2, 1e-12));
        assert_eq!(cantelli_tail(0.5, 1.0, 2.0), 1.0);
        assert!(close(cantelli_k(0.2), 2.0, 1e-12));
        assert!(close(cantelli_k(0.01), 99f64.sqrt(), 1e-12));
        assert_eq!(cantelli_tail(f64::NAN, 0.0, 1.0), 1.0);
    }

    #[test]
    fn conformal_p_counts_the_null_at_or_above() {
        let null = [0.1, 0.2, 0.3, 0.4];
        assert!(close(conformal_p(0.35, &null), 2.0 / 5.0, 1e-12));
        assert!(close(conformal_p(0.5, &null), 1.0 / 5.0, 1e-12));
        assert!(close(conformal_p(0.0, &null), 1.0, 1e-12));
    }
}

#[cfg(test)]
mod z_tests {
    use super::*;

    #[test]
    fn mean_and_sample_sd_by_hand() {
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, squared deviations sum to 32, sd √(32/7)
        let v = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(mean(&v), 5.0);
        assert!((sample_sd(&v) - (32.0f64 / 7.0).sqrt()).abs() < 1e-15);
        assert!(mean(&[]).is_nan());
        assert!(sample_sd(&[1.0]).is_nan());
    }

    #[test]
    fn z_against_by_hand() {
        // null 1, 2, 3: mean 2, sample sd 1
        assert_eq!(z_against(3.0, &[1.0, 2.0, 3.0]), Some(1.0));
        // null 0, 4: mean 2, sample sd √8 (the population form would give 2)
        let z = z_against(10.0, &[0.0, 4.0]).unwrap();
        assert!((z - 8.0 / 8f64.sqrt()).abs() < 1e-12, "{z}");
        // non-finite null values are left out, and too few or constant nulls give none
        assert_eq!(z_against(3.0, &[1.0, f64::NAN, 2.0, 3.0]), Some(1.0));
        assert_eq!(z_against(3.0, &[1.0]), None);
        assert_eq!(z_against(3.0, &[1.0, 1.0]), None);
    }

    #[test]
    fn z_counts_the_error_of_the_null_mean() {
        // x̄ 0.5 over 4 rows; null 0, 0.1, −0.1, 0: mean 0, sample sd √(0.02/3);
        // z = 0.5 / (√(0.02/3)·√(1/4 + 1/4)) = 5√3
        let z = z_mean_vs_null(0.5, 4, &[0.0, 0.1, -0.1, 0.0]);
        assert!((z - 5.0 * 3f64.sqrt()).abs() < 1e-12, "{z}");
        // one value against 4 null draws: the prediction interval s·√(1 + 1/4)
        let z = z_mean_vs_null(0.5, 1, &[0.0, 0.1, -0.1, 0.0]);
        assert!((z - 0.5 / ((0.02f64 / 3.0).sqrt() * 1.25f64.sqrt())).abs() < 1e-12);
        assert!(z_mean_vs_null(0.5, 4, &[0.1]).is_nan());
    }

    #[test]
    fn binomial_tail_by_hand() {
        // n = 3, p = 1/2: P(X ≥ 2) = 4/8, P(X ≥ 3) = 1/8
        assert!((binomial_upper_log10_p(2, 3, 0.5) - 0.5f64.log10()).abs() < 1e-12);
        assert!((binomial_upper_log10_p(3, 3, 0.5) - 0.125f64.log10()).abs() < 1e-12);
        assert_eq!(binomial_upper_log10_p(0, 3, 0.5), 0.0);
        assert_eq!(binomial_upper_log10_p(1, 3, 0.0), f64::NEG_INFINITY);
        // all of 10 000 at p = 0.01: 10 000 · log10(0.01) = −20 000, past underflow; the bound
        // equals it exactly when k = n
        assert!((binomial_upper_log10_p(10_000, 10_000, 0.01) + 20_000.0).abs() < 1e-6);
        // agrees with the Poisson-binomial of equal rates
        let exact = poisson_binomial_tail(&[0.2; 12], 5).log10();
        assert!((binomial_upper_log10_p(5, 12, 0.2) - exact).abs() < 1e-9);
    }

    #[test]
    fn poisson_binomial_tail_by_hand() {
        assert_eq!(poisson_binomial_tail(&[0.5, 0.5], 0), 1.0);
        assert!((poisson_binomial_tail(&[0.5, 0.5], 1) - 0.75).abs() < 1e-12);
        assert!((poisson_binomial_tail(&[0.5, 0.5], 2) - 0.25).abs() < 1e-12);
        assert_eq!(poisson_binomial_tail(&[0.5, 0.5], 3), 0.0);
        // P(≥2 of 0.1, 0.2, 0.3) = 0.1·0.2·0.7 + 0.1·0.8·0.3 + 0.9·0.2·0.3 + 0.1·0.2·0.3
        let want = 0.014 + 0.024 + 0.054 + 0.006;
        assert!((poisson_binomial_tail(&[0.1, 0.2, 0.3], 2) - want).abs() < 1e-12);
    }

    /// Against statrs' normal CDF (an independent implementation), within the stated 1.2e-7.
    #[test]
    fn normal_cdf_matches_an_independent_implementation() {
        use statrs::distribution::{ContinuousCDF, Normal};
        let n = Normal::new(0.0, 1.0).unwrap();
        for x in [-8.0, -3.1, -1.0, -0.2, 0.0, 0.7, 1.96, 4.5] {
            let (ours, theirs) = (normal_cdf(x), n.cdf(x));
            assert!(
                (ours - theirs).abs() <= 1.2e-7 * theirs.max(1e-300) + 1e-15,
                "{x}: {ours} vs {theirs}"
            );
        }
    }
}
