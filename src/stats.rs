//! One home for statistics: pure functions, no I/O, no experiment types.

use statrs::distribution::{Beta, ContinuousCDF};

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

#[cfg(test)]
mod tests {
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
