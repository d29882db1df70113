//! Similarity metrics between two aligned tensors, and moments of one tensor.
//!
//! Everything streams: feed decoded chunks of any size, in order, and read the statistics at
//! the end, so a 1 GiB tensor never has to be held whole. Accumulation is in f64 with
//! pairwise-stable co-moment merging (Chan et al.), so norm gains near 1 with tiny spread do
//! not lose their Pearson correlation to cancellation.
//!
//! "Centred cosine" is always the mean-centred one (= Pearson r). The "minus one" centring
//! used by one published script assumes gains near 1 and is wrong for real models; it does
//! not exist here.

use serde::{Deserialize, Serialize};

/// Values kept exactly for quantiles before switching to a histogram.
const EXACT_QUANTILE_LIMIT: usize = 1 << 20;
/// Histogram of |x| keyed by the top bits of the f32 representation: 8 exponent bits and
/// 11 mantissa bits, i.e. bins of relative width 2^-11 (≈ 0.05 %).
const HIST_SHIFT: u32 = 12;
const HIST_BINS: usize = 1 << (31 - HIST_SHIFT);

/// Streaming |x| quantiles: exact (linear interpolation, as numpy/torch) up to a limit, then
/// a fixed-size histogram with bounded relative error.
#[derive(Clone, Debug, Default)]
pub struct AbsQuantiles {
    exact: Vec<f32>,
    hist: Option<Vec<u64>>,
    n: u64,
}

impl AbsQuantiles {
    /// Adds the magnitudes of `chunk`.
    pub fn push(&mut self, chunk: &[f32]) {
        self.n += chunk.len() as u64;
        if self.hist.is_none() && self.exact.len() + chunk.len() <= EXACT_QUANTILE_LIMIT {
            self.exact.extend(chunk.iter().map(|v| v.abs()));
            return;
        }
        let hist = self.hist.get_or_insert_with(|| vec![0; HIST_BINS]);
        for v in self.exact.drain(..).chain(chunk.iter().map(|v| v.abs())) {
            if v.is_finite() {
                hist[(v.to_bits() >> HIST_SHIFT) as usize] += 1;
            }
        }
    }

    /// Whether [`quantile`](Self::quantile) is exact.
    pub fn is_exact(&self) -> bool {
        self.hist.is_none()
    }

    /// The q-quantile of |x| (NaN when empty).
    pub fn quantile(&self, q: f64) -> f64 {
        match &self.hist {
            None => {
                let mut v: Vec<f32> = self.exact.iter().copied().filter(|x| !x.is_nan()).collect();
                if v.is_empty() {
                    return f64::NAN;
                }
                v.sort_by(f32::total_cmp);
                let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
                let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
                let frac = pos - lo as f64;
                f64::from(v[lo]) * (1.0 - frac) + f64::from(v[hi]) * frac
            }
            Some(hist) => {
                let total: u64 = hist.iter().sum();
                if total == 0 {
                    return f64::NAN;
                }
                let target = q.clamp(0.0, 1.0) * (total - 1) as f64;
                let mut seen = 0u64;
                for (bin, &count) in hist.iter().enumerate() {
                    if count > 0 && (seen + count) as f64 > target {
                        // Interpolate within the bin between its lower and upper edge.
                        let lo = f64::from(f32::from_bits((bin as u32) << HIST_SHIFT));
                        let hi = f64::from(f32::from_bits(((bin as u32) + 1) << HIST_SHIFT));
                        let frac = (target - seen as f64 + 0.5) / count as f64;
                        return lo + (hi - lo) * frac.clamp(0.0, 1.0);
                    }
                    seen += count;
                }
                f64::NAN
            }
        }
    }
}

/// Streaming moments of one tensor: mean, variance, skewness and kurtosis (Pébay's update).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moments {
    /// Number of values seen.
    pub n: u64,
    mean: f64,
    m2: f64,
    m3: f64,
    m4: f64,
    /// Σ x² (the squared L2 norm).
    pub sum_sq: f64,
}

impl Moments {
    /// Adds the values of `chunk`.
    pub fn push(&mut self, chunk: &[f32]) {
        for &v in chunk {
            let x = f64::from(v);
            let n1 = self.n as f64;
            self.n += 1;
            let n = self.n as f64;
            let delta = x - self.mean;
            let dn = delta / n;
            let dn2 = dn * dn;
            let term1 = delta * dn * n1;
            self.mean += dn;
            self.m4 +=
                term1 * dn2 * (n * n - 3.0 * n + 3.0) + 6.0 * dn2 * self.m2 - 4.0 * dn * self.m3;
            self.m3 += term1 * dn * (n - 2.0) - 3.0 * dn * self.m2;
            self.m2 += term1;
            self.sum_sq += x * x;
        }
    }

    /// The moments of `values`.
    pub fn of(values: &[f32]) -> Moments {
        let mut m = Moments::default();
        m.push(values);
        m
    }

    /// Mean (NaN when empty).
    pub fn mean(&self) -> f64 {
        if self.n == 0 { f64::NAN } else { self.mean }
    }

    /// Population standard deviation (as torch `unbiased=False` and numpy's default).
    pub fn std(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            (self.m2 / self.n as f64).sqrt()
        }
    }

    /// Excess kurtosis (0 for a normal distribution).
    pub fn kurtosis(&self) -> f64 {
        if self.n == 0 || self.m2 == 0.0 {
            f64::NAN
        } else {
            self.n as f64 * self.m4 / (self.m2 * self.m2) - 3.0
        }
    }
}

/// Streaming accumulator for a pair of aligned tensors.
#[derive(Clone, Debug, Default)]
pub struct PairAccumulator {
    n: u64,
    mean_a: f64,
    mean_b: f64,
    m2_a: f64,
    m2_b: f64,
    c_ab: f64,
    sum_aa: f64,
    sum_bb: f64,
    sum_ab: f64,
    sum_abs_diff: f64,
    sum_sq_diff: f64,
    q_a: AbsQuantiles,
    q_b: AbsQuantiles,
}

impl PairAccumulator {
    /// Adds the next aligned chunks (equal lengths; a mismatch is a programming error upstream
    /// and the surplus is ignored).
    pub fn push(&mut self, a: &[f32], b: &[f32]) {
        let len = a.len().min(b.len());
        let (a, b) = (&a[..len], &b[..len]);
        // Chunk statistics first, then a Chan merge: stable and order-independent enough that
        // the chunk size does not change the result beyond rounding.
        let n = len as f64;
        if len == 0 {
            return;
        }
        let (mut sa, mut sb) = (0.0, 0.0);
        for (&x, &y) in a.iter().zip(b) {
            sa += f64::from(x);
            sb += f64::from(y);
        }
        let (ma, mb) = (sa / n, sb / n);
        let (mut m2a, mut m2b, mut cab) = (0.0, 0.0, 0.0);
        let (mut aa, mut bb, mut ab, mut ad, mut sd) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&x, &y) in a.iter().zip(b) {
            let (x, y) = (f64::from(x), f64::from(y));
            let (dx, dy) = (x - ma, y - mb);
            m2a += dx * dx;
            m2b += dy * dy;
            cab += dx * dy;
            aa += x * x;
            bb += y * y;
            ab += x * y;
            let d = x - y;
            ad += d.abs();
            sd += d * d;
        }
        let n0 = self.n as f64;
        let total = n0 + n;
        let (da, db) = (ma - self.mean_a, mb - self.mean_b);
        self.m2_a += m2a + da * da * n0 * n / total;
        self.m2_b += m2b + db * db * n0 * n / total;
        self.c_ab += cab + da * db * n0 * n / total;
        self.mean_a += da * n / total;
        self.mean_b += db * n / total;
        self.n += len as u64;
        self.sum_aa += aa;
        self.sum_bb += bb;
        self.sum_ab += ab;
        self.sum_abs_diff += ad;
        self.sum_sq_diff += sd;
        self.q_a.push(a);
        self.q_b.push(b);
    }

    /// The metrics of everything pushed (NaN where undefined: empty input, a zero vector).
    pub fn finish(&self) -> PairMetrics {
        let n = self.n as f64;
        let norm_a = self.sum_aa.sqrt();
        let norm_b = self.sum_bb.sqrt();
        let nan_if_empty = |v: f64| if self.n == 0 { f64::NAN } else { v };
        let cosine = if norm_a == 0.0 || norm_b == 0.0 {
            f64::NAN
        } else {
            self.sum_ab / (norm_a * norm_b)
        };
        let pearson = {
            let d = (self.m2_a * self.m2_b).sqrt();
            if d <= 1e-300 { f64::NAN } else { self.c_ab / d }
        };
        let (std_a, std_b) = ((self.m2_a / n).sqrt(), (self.m2_b / n).sqrt());
        let cv = |s: f64, m: f64| s / m.abs().max(1e-12);
        // The coefficient of variation means nothing when the mean is ~0 (k/v projections
        // gave 20 to 17 510 in a published comparison): flag it instead of hiding it.
        let cv_meaningful = self.mean_a.abs() >= 0.1 * std_a && self.mean_b.abs() >= 0.1 * std_b;
        // Independent shuffles keep only the means: E[cos] = n·ā·b̄ / (‖a‖‖b‖), with
        // sd ≈ √n·σa·σb / (‖a‖‖b‖) (exact for large n).
        let denom = norm_a * norm_b;
        let (shuffle_mean, shuffle_sd) = if denom > 0.0 {
            (
                n * self.mean_a * self.mean_b / denom,
                n.sqrt() * std_a * std_b / denom,
            )
        } else {
            (f64::NAN, f64::NAN)
        };
        PairMetrics {
            n: self.n,
            cosine,
            pearson,
            rel_l2: nan_if_empty(self.sum_sq_diff.sqrt() / norm_a.max(1e-12)),
            mad: nan_if_empty(self.sum_abs_diff / n),
            rmse: nan_if_empty((self.sum_sq_diff / n).sqrt()),
            p99_abs_diff: (self.q_a.quantile(0.99) - self.q_b.quantile(0.99)).abs(),
            p99_exact: self.q_a.is_exact() && self.q_b.is_exact(),
            cv_diff: nan_if_empty((cv(std_a, self.mean_a) - cv(std_b, self.mean_b)).abs()),
            cv_meaningful,
            shuffle_null_cosine_mean: shuffle_mean,
            shuffle_null_cosine_sd: shuffle_sd,
            mean_a: nan_if_empty(self.mean_a),
            mean_b: nan_if_empty(self.mean_b),
            std_a: nan_if_empty(std_a),
            std_b: nan_if_empty(std_b),
        }
    }
}

/// The full metric set for one aligned pair.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairMetrics {
    /// Number of element pairs compared.
    pub n: u64,
    /// Raw cosine of a and b (NaN when either is all zero).
    pub cosine: f64,
    /// Mean-centred cosine, i.e. Pearson r.
    pub pearson: f64,
    /// ‖a − b‖ / ‖a‖ (asymmetric: normalised by the first tensor).
    pub rel_l2: f64,
    /// Mean absolute difference, mean |a − b|.
    pub mad: f64,
    /// Root mean squared difference.
    pub rmse: f64,
    /// |Q99(|a|) − Q99(|b|)|: compares tail scale only, not coordinates.
    pub p99_abs_diff: f64,
    /// True when both 99th percentiles are exact (else from a histogram, ≈0.05 % relative error).
    pub p99_exact: bool,
    /// |CV(a) − CV(b)|, the coefficients of variation std/|mean|.
    pub cv_diff: f64,
    /// False when either mean is tiny against its spread, where cv_diff is meaningless.
    pub cv_meaningful: bool,
    /// Expected cosine after independent shuffles of a and b, and its spread: the value
    /// raw cosine reaches with no coordinate-wise relation at all.
    pub shuffle_null_cosine_mean: f64,
    /// Standard deviation of that shuffle-null cosine.
    pub shuffle_null_cosine_sd: f64,
    /// Mean of a.
    pub mean_a: f64,
    /// Mean of b.
    pub mean_b: f64,
    /// Population standard deviation of a.
    pub std_a: f64,
    /// Population standard deviation of b.
    pub std_b: f64,
}

/// All metrics of two whole vectors.
pub fn compare(a: &[f32], b: &[f32]) -> PairMetrics {
    let mut acc = PairAccumulator::default();
    acc.push(a, b);
    acc.finish()
}

/// Raw cosine of two vectors (NaN when either is all zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    compare(a, b).cosine
}

/// Pearson correlation of two vectors (NaN when either is constant).
pub fn pearson(a: &[f32], b: &[f32]) -> f64 {
    compare(a, b).pearson
}

/// Realised shuffle null: cosines of independently permuted copies (seeded), `reps` times.
pub fn shuffle_null_cosines(a: &[f32], b: &[f32], seed: u64, reps: usize) -> Vec<f64> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut pa = a.to_vec();
    let mut pb = b.to_vec();
    (0..reps)
        .map(|_| {
            rng.shuffle(&mut pa);
            rng.shuffle(&mut pb);
            cosine(&pa, &pb)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn toy_vectors_from_the_dispute() {
        // V1 = [S+D1, S, S+0.02], V2 = [S, S+D2, S+0.02], S=0.7, D1=0.25, D2=0.35.
        let v1 = [0.95f32, 0.7, 0.72];
        let v2 = [0.7f32, 1.05, 0.72];
        let m = compare(&v1, &v2);
        assert!(close(m.cosine, 0.9552, 5e-5), "{}", m.cosine);
        assert!(close(m.pearson, -0.6024, 5e-5), "{}", m.pearson);
    }

    #[test]
    fn hand_computed_metrics() {
        let a = [1.0f32, 2.0, 3.0, 4.0];
        let b = [2.0f32, 2.0, 2.0, 6.0];
        let m = compare(&a, &b);
        // a·b = 2+4+6+24 = 36, ‖a‖ = √30, ‖b‖ = √48
        assert!(close(m.cosine, 36.0 / (30f64.sqrt() * 48f64.sqrt()), 1e-12));
        // a−ā = [-1.5,-.5,.5,1.5], b−b̄ = [-1,-1,-1,3] → cov 1.5+.5-.5+4.5 = 6; √5·√12
        assert!(close(m.pearson, 6.0 / (5f64.sqrt() * 12f64.sqrt()), 1e-12));
        // d = [-1,0,1,-2]: Σ|d| = 4, Σd² = 6
        assert!(close(m.mad, 1.0, 1e-12));
        assert!(close(m.rmse, 1.5f64.sqrt(), 1e-12));
        assert!(close(m.rel_l2, 6f64.sqrt() / 30f64.sqrt(), 1e-12));
        // |a| quantile 0.99 with linear interpolation: pos 2.97 → 3.97; |b| → 2 + .97·4 = 5.88
        assert!(close(m.p99_abs_diff, (3.97 - 5.88f64).abs(), 1e-6));
        // cv: σa = √1.25, ā = 2.5; σb = √3, b̄ = 3
        let cv = (1.25f64.sqrt() / 2.5 - 3f64.sqrt() / 3.0).abs();
        assert!(close(m.cv_diff, cv, 1e-12) && m.cv_meaningful);
        // shuffle null mean: n·ā·b̄/(‖a‖‖b‖) = 4·2.5·3/√1440
        assert!(close(
            m.shuffle_null_cosine_mean,
            30.0 / 1440f64.sqrt(),
            1e-12
        ));
    }

    #[test]
    fn degenerate_inputs_give_nan_not_panics() {
        let z = [0.0f32; 4];
        let m = compare(&z, &[1.0, 2.0, 3.0, 4.0]);
        assert!(m.cosine.is_nan() && m.pearson.is_nan());
        let e = compare(&[], &[]);
        assert!(e.cosine.is_nan() && e.mad.is_nan() && e.p99_abs_diff.is_nan());
        let c = compare(&[1.0, 1.0], &[2.0, 2.0]);
        assert!(close(c.cosine, 1.0, 1e-12) && c.pearson.is_nan());
        assert!(!compare(&[1.0, -1.0], &[2.0, -2.0]).cv_meaningful);
    }

    #[test]
    fn chunking_does_not_change_results() {
        let mut rng = fastrand::Rng::with_seed(3);
        let a: Vec<f32> = (0..10_000)
            .map(|_| 1.0 + 0.01 * (rng.f32() - 0.5))
            .collect();
        let b: Vec<f32> = a.iter().map(|x| x + 0.001 * (rng.f32() - 0.5)).collect();
        let whole = compare(&a, &b);
        let mut acc = PairAccumulator::default();
        for (ca, cb) in a.chunks(777).zip(b.chunks(777)) {
            acc.push(ca, cb);
        }
        let chunked = acc.finish();
        for (x, y) in [
            (whole.cosine, chunked.cosine),
            (whole.pearson, chunked.pearson),
            (whole.rel_l2, chunked.rel_l2),
            (whole.p99_abs_diff, chunked.p99_abs_diff),
        ] {
            assert!(close(x, y, 1e-12), "{x} vs {y}");
        }
        // Gains near 1 with tiny spread: raw cosine ~1 while Pearson sees the coordinates.
        assert!(whole.cosine > 0.9999 && whole.pearson > 0.9 && whole.pearson < 1.0);
    }

    #[test]
    fn moments_match_closed_forms() {
        let m = Moments::of(&[1.0, 2.0, 3.0, 4.0]);
        assert!(close(m.mean(), 2.5, 1e-12));
        assert!(close(m.std(), 1.25f64.sqrt(), 1e-12));
        // Excess kurtosis of [1,2,3,4]: m4 = (5.0625·2 + 0.0625·2)/4 = 2.5625, σ⁴ = 1.5625
        assert!(close(m.kurtosis(), 2.5625 / 1.5625 - 3.0, 1e-12));
        let mut chunked = Moments::default();
        chunked.push(&[1.0, 2.0]);
        chunked.push(&[3.0, 4.0]);
        assert!(close(chunked.kurtosis(), m.kurtosis(), 1e-12));
    }

    #[test]
    fn histogram_quantiles_are_close_to_exact() {
        let mut rng = fastrand::Rng::with_seed(9);
        let values: Vec<f32> = (0..(EXACT_QUANTILE_LIMIT + 5000))
            .map(|_| rng.f32() * 4.0 - 2.0)
            .collect();
        let mut q = AbsQuantiles::default();
        for c in values.chunks(100_000) {
            q.push(c);
        }
        assert!(!q.is_exact());
        let mut exact = AbsQuantiles::default();
        exact.push(&values[..1000]);
        assert!(exact.is_exact());
        let est = q.quantile(0.99);
        assert!(close(est, 1.98, 2e-3), "{est}");
    }

    #[test]
    fn shuffle_null_matches_its_expectation() {
        let mut rng = fastrand::Rng::with_seed(1);
        let a: Vec<f32> = (0..4096).map(|_| 0.5 + rng.f32()).collect();
        let b: Vec<f32> = (0..4096).map(|_| 0.3 + rng.f32()).collect();
        let m = compare(&a, &b);
        let draws = shuffle_null_cosines(&a, &b, 42, 200);
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!(close(
            mean,
            m.shuffle_null_cosine_mean,
            3.0 * m.shuffle_null_cosine_sd
        ));
        assert!(
            m.shuffle_null_cosine_mean > 0.8,
            "positive vectors: raw cosine is high by chance"
        );
    }
}
