//! E3's evidence test for one block and its chance: which blocks of stored bytes can be
//! evidence at all (zeros, constants, short periods and low byte entropy match by chance), how
//! many identical elements two windows hold against the permutation null of their value
//! histograms, and the outlier fingerprint's coordinates and per-coordinate match probability.

use serde::{Deserialize, Serialize};

/// Why a block is, or is not, evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockInfo {
    /// Can be evidence: none of the reasons below applies.
    Informative,
    /// Every byte zero.
    Zero,
    /// One element value repeated.
    Constant,
    /// A pattern of a few bytes repeated.
    Periodic,
    /// Byte entropy below `min_entropy_bits`.
    LowEntropy,
    /// Shorter than `min_bytes`.
    Short,
}

/// Thresholds of [`classify_block`].
#[derive(Clone, Copy, Debug)]
pub struct InfoThresholds {
    /// Blocks shorter than this many bytes are `Short`.
    pub min_bytes: usize,
    /// Longest repeating pattern, in bytes, that makes a block `Constant` or `Periodic`.
    pub max_period: usize,
    /// Least byte entropy, in bits per byte, of an informative block.
    pub min_entropy_bits: f64,
}

/// Whether a block of stored bytes (elements of `elem_size` bytes) can be evidence of reuse.
pub fn classify_block(bytes: &[u8], elem_size: usize, t: &InfoThresholds) -> BlockInfo {
    if bytes.iter().all(|&b| b == 0) {
        return BlockInfo::Zero;
    }
    let n = bytes.len();
    let period = (1..=t.max_period.min(n / 2)).find(|&p| bytes[p..] == bytes[..n - p]);
    if let Some(p) = period {
        return if elem_size.max(1).is_multiple_of(p) {
            BlockInfo::Constant
        } else {
            BlockInfo::Periodic
        };
    }
    if n < t.min_bytes {
        return BlockInfo::Short;
    }
    if byte_entropy(bytes) < t.min_entropy_bits {
        return BlockInfo::LowEntropy;
    }
    BlockInfo::Informative
}

/// Shannon entropy of the byte histogram, in bits per byte.
pub fn byte_entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut hist = [0u64; 256];
    for &b in bytes {
        hist[b as usize] += 1;
    }
    let n = bytes.len() as f64;
    hist.iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Chance that B holds A's value `value` at one coordinate, estimated from B's own values:
/// `(count of B coordinates equal to value + 1) / (n + 1)` (add-one, so never zero).
pub fn match_probability(value: f32, b: &[f32]) -> f64 {
    let count = b.iter().filter(|&&x| x == value).count();
    (count as f64 + 1.0) / (b.len() as f64 + 1.0)
}

/// Elements identical at the same coordinate, beside the number chance gives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Coincidence {
    /// Elements compared.
    pub elements: u64,
    /// Of those, elements with identical stored bits.
    pub identical: u64,
    /// Mean of `identical` under the permutation null.
    pub expected: f64,
    /// Its variance (binomial approximation: `Σ E_b · (1 − E_b / n_b)` over runs).
    pub variance: f64,
}

impl Coincidence {
    /// Adds another run's counts to these.
    pub fn add(&mut self, o: &Coincidence) {
        self.elements += o.elements;
        self.identical += o.identical;
        self.expected += o.expected;
        self.variance += o.variance;
    }

    /// Identical elements beyond chance, as a share of the elements compared.
    pub fn excess(&self) -> f64 {
        if self.elements == 0 {
            return 0.0;
        }
        (self.identical as f64 - self.expected) / self.elements as f64
    }

    /// Standard deviations beyond chance (the `+ 1` keeps a run with no chance matches finite).
    pub fn z(&self) -> f64 {
        (self.identical as f64 - self.expected) / (self.variance + 1.0).sqrt()
    }
}

/// Compares two equally long runs of stored element bit patterns coordinate by coordinate.
/// Chance is the permutation null: pairing A's elements with B's at random within the run gives
/// `Σ_v count_A(v)·count_B(v) / n` identical elements on average, whatever the value
/// distributions (a quantised grid or a near-constant norm makes chance agreement common, and
/// the null grows with it).
pub fn coincidence(a: &[u64], b: &[u64]) -> Coincidence {
    let n = a.len().min(b.len());
    if n == 0 {
        return Coincidence::default();
    }
    let (a, b) = (&a[..n], &b[..n]);
    let identical = a.iter().zip(b).filter(|(x, y)| x == y).count() as u64;
    let sorted = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v
    };
    let (sa, sb) = (sorted(a), sorted(b));
    // Σ_v count_A(v)·count_B(v) by merging the two sorted runs.
    let (mut x, mut y, mut pairs) = (0, 0, 0u64);
    while x < n && y < n {
        match sa[x].cmp(&sb[y]) {
            std::cmp::Ordering::Less => x += 1,
            std::cmp::Ordering::Greater => y += 1,
            std::cmp::Ordering::Equal => {
                let v = sa[x];
                let ca = sa[x..].iter().take_while(|&&k| k == v).count();
                let cb = sb[y..].iter().take_while(|&&k| k == v).count();
                pairs += (ca * cb) as u64;
                x += ca;
                y += cb;
            }
        }
    }
    let expected = pairs as f64 / n as f64;
    Coincidence {
        elements: n as u64,
        identical,
        expected,
        variance: expected * (1.0 - expected / n as f64),
    }
}

/// The `k` coordinates farthest from the vector's mean (ties to the lower index); none for a
/// constant vector, and only coordinates that differ from the mean at all.
pub fn outlier_coordinates(v: &[f32], k: usize) -> Vec<usize> {
    if v.is_empty() {
        return Vec::new();
    }
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    let mut idx: Vec<(f64, usize)> = v
        .iter()
        .enumerate()
        .map(|(i, &x)| ((f64::from(x) - mean).abs(), i))
        .filter(|(d, _)| d.is_finite() && *d > 0.0)
        .collect();
    if v.iter().all(|&x| x == v[0]) {
        return Vec::new();
    }
    idx.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    idx.into_iter().take(k).map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outlier_chance_probability() {
        // Per-coordinate probability from B's histogram, add-one smoothed.
        let b = [1.0, 2.0, 2.0, 3.0];
        assert!((match_probability(2.0, &b) - 3.0 / 5.0).abs() < 1e-12);
        assert!((match_probability(9.0, &b) - 1.0 / 5.0).abs() < 1e-12);
        // A constant B makes every match certain: no evidence.
        let ones = [1.0f32; 16];
        assert_eq!(match_probability(1.0, &ones), 1.0);
        // 24 matches of rare values (p = 2/129 each) are far beyond chance.
        let ps = vec![2.0 / 129.0; 24];
        assert!(crate::stats::poisson_binomial_tail(&ps, 24) < 1e-40);
    }

    /// Every ordering of `v` (Heap's algorithm), for a brute-force permutation null.
    fn permutations(v: &[u64]) -> Vec<Vec<u64>> {
        fn go(k: usize, v: &mut Vec<u64>, out: &mut Vec<Vec<u64>>) {
            if k <= 1 {
                out.push(v.clone());
                return;
            }
            for i in 0..k {
                go(k - 1, v, out);
                let j = if k.is_multiple_of(2) { i } else { 0 };
                v.swap(j, k - 1);
            }
        }
        let mut out = Vec::new();
        go(v.len(), &mut v.to_vec(), &mut out);
        out
    }

    #[test]
    fn chance_agreement_is_the_mean_over_every_pairing() {
        for (a, b) in [
            (vec![1u64, 2, 2, 3, 7, 7], vec![2u64, 2, 7, 1, 9, 9]),
            (vec![5u64; 5], vec![5u64, 5, 1, 5, 2]),
            (
                vec![1u64, 2, 3, 4, 5, 6, 7],
                vec![8u64, 9, 10, 11, 12, 13, 14],
            ),
        ] {
            let perms = permutations(&b);
            let mean = perms
                .iter()
                .map(|p| a.iter().zip(p).filter(|(x, y)| x == y).count() as f64)
                .sum::<f64>()
                / perms.len() as f64;
            let c = coincidence(&a, &b);
            assert!((c.expected - mean).abs() < 1e-12, "{a:?} {b:?}");
            assert_eq!(c.elements, a.len() as u64);
        }
        // By hand: counts {1:1, 2:2, 3:1, 7:2} and {1:1, 2:2, 7:1, 9:2} → (1 + 4 + 2) / 6.
        let c = coincidence(&[1, 2, 2, 3, 7, 7], &[2, 2, 7, 1, 9, 9]);
        assert_eq!(c.identical, 1); // the 2 at index 1
        assert!((c.expected - 7.0 / 6.0).abs() < 1e-12);
        assert!(c.z() < 0.0 && c.excess() < 0.0);
    }

    #[test]
    fn a_copy_agrees_far_beyond_chance_and_a_reshuffle_does_not() {
        let mut x = 99u64;
        let a: Vec<u64> = (0..4096)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // 64 distinct values: chance agreement is common
                x >> 58
            })
            .collect();
        let copy = coincidence(&a, &a);
        assert_eq!(copy.identical, 4096);
        assert!((copy.expected - 64.0).abs() < 16.0, "{}", copy.expected);
        assert!(copy.excess() > 0.95 && copy.z() > 100.0);
        // The same values in another order: as many matches as chance gives.
        let mut shuffled = a.clone();
        shuffled.rotate_left(1000);
        let c = coincidence(&a, &shuffled);
        assert_eq!(c.expected, copy.expected);
        assert!(c.z().abs() < 4.0, "z {}", c.z());
        // Unequal lengths compare the common prefix; nothing compared is no evidence.
        assert_eq!(coincidence(&a[..10], &a).elements, 10);
        assert_eq!(coincidence(&[], &a), Coincidence::default());
        assert_eq!(Coincidence::default().excess(), 0.0);
    }

    #[test]
    fn outliers_are_the_most_extreme_coordinates() {
        let v = [0.5f32, 0.5, 3.0, 0.5, -2.0, 0.6];
        assert_eq!(outlier_coordinates(&v, 2), vec![4, 2]); // mean 0.517: |-2 - m| > |3 - m|
        assert!(outlier_coordinates(&[1.0f32; 8], 3).is_empty());
    }
}
