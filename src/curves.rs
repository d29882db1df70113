//! Std-curve fingerprint math (experiment E7).
//!
//! A "curve" is one number per layer (the std of a tensor family, its mean, kurtosis…). The
//! HonestAGI method z-scores each model's curve, linearly interpolates the shorter one onto the
//! longer one's grid and reports Pearson's r. That statistic is easy to over-read: z-scoring
//! removes scale and any two smooth curves that rise with depth correlate strongly (the test
//! `unrelated_monotone_curves_correlate_highly` reproduces the published 0.9+ for unrelated
//! shapes). Never report it without a null from control models.
//!
//! Conventions: functions never panic. Empty input gives an empty vector or NaN; any NaN in a
//! curve makes the comparison NaN (a missing layer is not silently filled, unlike the original
//! scripts, which wrote 0.0 for missing matrices and mapped a NaN correlation to 0.0).

/// Z-scores `x` with the population standard deviation.
///
/// A constant curve (sd zero, or below 1e-12 of the largest magnitude, i.e. constant up to
/// rounding) gives all zeros, the HonestAGI "centre only" rule. NaN anywhere gives all NaN;
/// empty gives empty.
pub fn zscore(x: &[f64]) -> Vec<f64> {
    if x.is_empty() {
        return Vec::new();
    }
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let sd = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    if sd.is_nan() {
        return vec![f64::NAN; x.len()];
    }
    let scale = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if sd <= 1e-12 * scale {
        return vec![0.0; x.len()];
    }
    x.iter().map(|v| (v - mean) / sd).collect()
}

/// Linearly interpolates a per-layer curve onto `len` evenly spaced points, keeping both endpoints.
///
/// Same grid as `numpy.interp(linspace(0, n-1, len), arange(n), x)`: `len == 1` gives the first
/// value (as `linspace` does), a one-point curve is repeated, an empty curve gives an empty vector.
pub fn interpolate(x: &[f64], len: usize) -> Vec<f64> {
    let n = x.len();
    if n == 0 || len == 0 {
        return Vec::new();
    }
    if n == 1 || len == 1 {
        return vec![x[0]; len];
    }
    (0..len)
        .map(|k| {
            let t = (k * (n - 1)) as f64 / (len - 1) as f64;
            let i = (t.floor() as usize).min(n - 2);
            let frac = t - i as f64;
            // (1 − f)·x[i] + f·x[i+1] hits both knots exactly, unlike x[i] + f·(x[i+1] − x[i]).
            (1.0 - frac) * x[i] + frac * x[i + 1]
        })
        .collect()
}

/// Pearson's r of two equal-length sequences; NaN if shorter than 2, constant, or containing NaN.
fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    if n < 2 || x.len() != y.len() {
        return f64::NAN;
    }
    let mx = x.iter().sum::<f64>() / n as f64;
    let my = y.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0)
}

/// HonestAGI curve correlation: z-score both, interpolate the shorter onto the longer length, Pearson's r.
///
/// NaN when either curve has fewer than two points, is constant, or contains NaN. (Pearson is
/// affine-invariant, so the z-scoring does not change r; it is kept to mirror the method and
/// because [`dtw_distance`] needs it.)
pub fn curve_pearson(a: &[f64], b: &[f64]) -> f64 {
    let (za, zb) = (zscore(a), zscore(b));
    let len = za.len().max(zb.len());
    pearson(&interpolate(&za, len), &interpolate(&zb, len))
}

/// A dynamic-time-warping alignment of two sequences.
#[derive(Debug, Clone, PartialEq)]
pub struct Dtw {
    /// Total |x − y| cost along the warping path.
    pub cost: f64,
    /// `cost / path.len()`, comparable across lengths.
    pub distance: f64,
    /// Warping path of `(index in a, index in b)`, from `(0, 0)` to the two last indices.
    pub path: Vec<(usize, usize)>,
}

/// Classic DTW with |x − y| cost and steps (1,0), (0,1), (1,1) on the raw values (no z-scoring).
///
/// NaN cost and distance with an empty path when either input is empty or contains NaN, since
/// a `min` over NaN costs would silently route around missing layers. Ties prefer the diagonal
/// step, then advancing in `a`, so the path is deterministic.
pub fn dtw(a: &[f64], b: &[f64]) -> Dtw {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 || a.iter().chain(b).any(|v| v.is_nan()) {
        return Dtw {
            cost: f64::NAN,
            distance: f64::NAN,
            path: Vec::new(),
        };
    }
    let mut acc = vec![f64::INFINITY; n * m];
    for i in 0..n {
        for j in 0..m {
            let prev = if i == 0 && j == 0 {
                0.0
            } else {
                let diag = if i > 0 && j > 0 {
                    acc[(i - 1) * m + j - 1]
                } else {
                    f64::INFINITY
                };
                let up = if i > 0 {
                    acc[(i - 1) * m + j]
                } else {
                    f64::INFINITY
                };
                let left = if j > 0 {
                    acc[i * m + j - 1]
                } else {
                    f64::INFINITY
                };
                diag.min(up).min(left)
            };
            acc[i * m + j] = prev + (a[i] - b[j]).abs();
        }
    }
    let mut path = vec![(n - 1, m - 1)];
    let (mut i, mut j) = (n - 1, m - 1);
    while i > 0 || j > 0 {
        (i, j) = if i == 0 {
            (0, j - 1)
        } else if j == 0 {
            (i - 1, 0)
        } else {
            let diag = acc[(i - 1) * m + j - 1];
            let up = acc[(i - 1) * m + j];
            let left = acc[i * m + j - 1];
            if diag <= up && diag <= left {
                (i - 1, j - 1)
            } else if up <= left {
                (i - 1, j)
            } else {
                (i, j - 1)
            }
        };
        path.push((i, j));
    }
    path.reverse();
    let cost = acc[n * m - 1];
    Dtw {
        cost,
        distance: cost / path.len() as f64,
        path,
    }
}

/// DTW distance between the z-scored curves, normalised by path length; NaN as for [`dtw`].
///
/// Unlike [`curve_pearson`] this needs no interpolation and tolerates inserted or dropped layers.
pub fn dtw_distance(a: &[f64], b: &[f64]) -> f64 {
    dtw(&zscore(a), &zscore(b)).distance
}

/// Both curve statistics for a pair of per-layer curves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurveComparison {
    /// [`curve_pearson`] (higher = more alike; NaN if undefined).
    pub pearson: f64,
    /// [`dtw_distance`] (lower = more alike; NaN if undefined).
    pub dtw: f64,
    /// Number of layers in curve `a`.
    pub len_a: usize,
    /// Number of layers in curve `b`.
    pub len_b: usize,
}

/// Compares two per-layer curves with [`curve_pearson`] and [`dtw_distance`].
pub fn compare_curves(a: &[f64], b: &[f64]) -> CurveComparison {
    CurveComparison {
        pearson: curve_pearson(a, b),
        dtw: dtw_distance(a, b),
        len_a: a.len(),
        len_b: b.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    #[test]
    fn zscore_by_hand() {
        // mean 2.5, population sd √1.25.
        let z = zscore(&[1.0, 2.0, 3.0, 4.0]);
        let s = 1.25f64.sqrt();
        assert!(close(&z, &[-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s], 1e-12));
        assert!(close(&zscore(&[3.0, 5.0]), &[-1.0, 1.0], 0.0));
    }

    #[test]
    fn zscore_edge_cases() {
        assert!(zscore(&[]).is_empty());
        assert_eq!(zscore(&[7.0]), vec![0.0]);
        // 0.1 does not sum exactly: constant up to rounding still gives zeros.
        assert_eq!(zscore(&[0.1; 7]), vec![0.0; 7]);
        assert!(zscore(&[1.0, f64::NAN, 2.0]).iter().all(|v| v.is_nan()));
    }

    #[test]
    fn interpolate_by_hand() {
        assert_eq!(
            interpolate(&[0.0, 1.0, 2.0], 5),
            vec![0.0, 0.5, 1.0, 1.5, 2.0]
        );
        assert_eq!(interpolate(&[0.0, 10.0], 3), vec![0.0, 5.0, 10.0]);
        // Shrinking 5 → 3 keeps the endpoints and the middle knot.
        assert_eq!(
            interpolate(&[1.0, 2.0, 4.0, 8.0, 16.0], 3),
            vec![1.0, 4.0, 16.0]
        );
        // 3 → 4: grid 0, 2/3, 4/3, 2.
        let v = interpolate(&[0.0, 3.0, 0.0], 4);
        assert!(close(&v, &[0.0, 2.0, 2.0, 0.0], 1e-12), "{v:?}");
        let x = [0.3, -1.7, 2.9, 0.1];
        assert_eq!(interpolate(&x, 4), x.to_vec());
        let long = interpolate(&x, 97);
        assert_eq!((long[0], long[96]), (x[0], x[3]));
    }

    #[test]
    fn interpolate_edge_cases() {
        assert!(interpolate(&[], 4).is_empty());
        assert!(interpolate(&[1.0, 2.0], 0).is_empty());
        assert_eq!(interpolate(&[5.0], 3), vec![5.0; 3]);
        assert_eq!(interpolate(&[5.0, 6.0, 7.0], 1), vec![5.0]);
    }

    #[test]
    fn pearson_of_affine_transform_is_one() {
        let a = [0.2, 0.9, 0.4, 1.3, 0.8, 1.1];
        let b: Vec<f64> = a.iter().map(|x| 3.0 * x - 7.0).collect();
        assert!((curve_pearson(&a, &b) - 1.0).abs() < 1e-12);
        let neg: Vec<f64> = a.iter().map(|x| -0.5 * x).collect();
        assert!((curve_pearson(&a, &neg) + 1.0).abs() < 1e-12);
    }

    #[test]
    fn pearson_interpolates_the_shorter_curve() {
        // A 3-point line against a 5-point line: interpolation makes them identical.
        assert!(
            (curve_pearson(&[0.0, 1.0, 2.0], &[10.0, 20.0, 30.0, 40.0, 50.0]) - 1.0).abs() < 1e-12
        );
        // Hand value: [0,1,0] → 5 points [0,.5,1,.5,0] against [1,0,0,0,1]:
        // deviations (−.4,.1,.6,.1,−.4) and (.6,−.4,−.4,−.4,.6): r = −.8/√(.7·1.2).
        let r = curve_pearson(&[0.0, 1.0, 0.0], &[1.0, 0.0, 0.0, 0.0, 1.0]);
        assert!((r - (-0.8 / (0.7f64 * 1.2).sqrt())).abs() < 1e-12, "{r}");
        // Symmetric in its arguments.
        let a = [0.1, 0.5, 0.2, 0.9];
        let b = [0.3, 0.1, 0.8, 0.4, 0.6, 0.2, 0.7];
        assert!((curve_pearson(&a, &b) - curve_pearson(&b, &a)).abs() < 1e-12);
    }

    #[test]
    fn pearson_degenerate_is_nan() {
        assert!(curve_pearson(&[1.0, 2.0], &[3.0, 3.0, 3.0]).is_nan());
        assert!(curve_pearson(&[1.0], &[2.0]).is_nan());
        assert!(curve_pearson(&[], &[1.0, 2.0]).is_nan());
        assert!(curve_pearson(&[1.0, f64::NAN, 3.0], &[1.0, 2.0, 3.0]).is_nan());
    }

    /// The published trap: z-scored depth profiles of unrelated models correlate at 0.9+ whenever
    /// both rise smoothly with depth (cf. deepseek-llm-7b vs llama2-7b at 0.91). Values checked
    /// against numpy: 0.9339, 0.9161, 0.9899.
    #[test]
    fn unrelated_monotone_curves_correlate_highly() {
        let linear: Vec<f64> = (0..48).map(|i| 0.02 + 0.0005 * i as f64).collect();
        let saturating: Vec<f64> = (0..46)
            .map(|i| 0.5 * (1.0 - (-(i as f64) / 15.0).exp()))
            .collect();
        let logish: Vec<f64> = (0..40)
            .map(|i| (i as f64).ln_1p() + 0.05 * (i as f64).sin())
            .collect();
        let r1 = curve_pearson(&linear, &saturating);
        let r2 = curve_pearson(&linear, &logish);
        let r3 = curve_pearson(&saturating, &logish);
        assert!((r1 - 0.9339231371752772).abs() < 1e-9, "{r1}");
        assert!((r2 - 0.9160857497226178).abs() < 1e-9, "{r2}");
        assert!((r3 - 0.9898992304306867).abs() < 1e-9, "{r3}");
        assert!(r1 > 0.9 && r2 > 0.9 && r3 > 0.9);
    }

    #[test]
    fn dtw_by_hand() {
        // Costs |a_i − b_j|: rows [0,2], [1,1], [2,0]. Best total 1 via (0,0),(1,0),(2,1)
        // (the tie with (1,1) goes to the diagonal predecessor).
        let d = dtw(&[0.0, 1.0, 2.0], &[0.0, 2.0]);
        assert_eq!(d.cost, 1.0);
        assert_eq!(d.path, vec![(0, 0), (1, 0), (2, 1)]);
        assert!((d.distance - 1.0 / 3.0).abs() < 1e-15);
        // Single points: one cell.
        let d = dtw(&[1.0], &[4.0, 4.0]);
        assert_eq!((d.cost, d.path.clone()), (6.0, vec![(0, 0), (0, 1)]));
        assert_eq!(d.distance, 3.0);
    }

    #[test]
    fn dtw_of_curve_with_itself_is_zero() {
        let a = [0.3, 1.2, -0.4, 2.2, 0.9];
        let d = dtw(&a, &a);
        assert_eq!(d.cost, 0.0);
        assert_eq!(d.path, (0..5).map(|i| (i, i)).collect::<Vec<_>>());
        assert_eq!(dtw_distance(&a, &a), 0.0);
        // z-scoring makes it scale- and offset-free.
        let b: Vec<f64> = a.iter().map(|x| 10.0 * x + 3.0).collect();
        assert!(dtw_distance(&a, &b) < 1e-12);
    }

    #[test]
    fn dtw_absorbs_a_duplicated_point() {
        let a = [0.0, 1.0, 3.0, 2.0, 5.0];
        let dup = [0.0, 1.0, 1.0, 3.0, 2.0, 5.0];
        let d = dtw(&a, &dup);
        assert_eq!(d.cost, 0.0);
        assert_eq!(d.path.len(), 6);
        // After z-scoring the duplicate shifts mean and sd a little, so the distance is small, not zero,
        // and far below that of a shuffled curve.
        let near = dtw_distance(&a, &dup);
        let far = dtw_distance(&a, &[5.0, 2.0, 3.0, 1.0, 0.0]);
        assert!(near > 0.0 && near < 0.2, "{near}");
        assert!(far > 5.0 * near, "{far} vs {near}");
        // Pearson cannot absorb it: interpolation shifts every later layer.
        assert!(curve_pearson(&a, &dup) < 0.99);
    }

    #[test]
    fn dtw_degenerate_inputs() {
        assert!(dtw(&[], &[1.0]).cost.is_nan());
        let d = dtw(&[1.0, f64::NAN], &[1.0, 2.0]);
        assert!(d.distance.is_nan() && d.path.is_empty());
        assert!(dtw_distance(&[1.0, f64::NAN], &[1.0, 2.0]).is_nan());
        // Two constant curves z-score to zeros and are at distance 0.
        assert_eq!(dtw_distance(&[2.0; 3], &[5.0; 4]), 0.0);
    }

    #[test]
    fn compare_curves_reports_both() {
        let a = [0.0, 1.0, 2.0];
        let b = [10.0, 20.0, 30.0, 40.0, 50.0];
        let c = compare_curves(&a, &b);
        assert!((c.pearson - 1.0).abs() < 1e-12);
        assert!(c.dtw >= 0.0 && c.dtw < 0.5, "{c:?}");
        assert_eq!((c.len_a, c.len_b), (3, 5));
        let e = compare_curves(&[], &[]);
        assert!(e.pearson.is_nan() && e.dtw.is_nan());
        assert_eq!((e.len_a, e.len_b), (0, 0));
    }
}
