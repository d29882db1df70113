//! Value-stable seeded pseudo-random numbers.
//!
//! Every stream is keyed by `(seed, label[, index])` through BLAKE3, then driven by xoshiro256++,
//! so a tensor (or one row of it) always gets the same numbers whatever the thread schedule,
//! and sparse writers can regenerate any row without generating the rows before it.

/// xoshiro256++ generator with a Box–Muller normal sampler.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
    spare: Option<f64>,
}

impl Rng {
    /// Stream for `(seed, label)`.
    pub fn new(seed: u64, label: &str) -> Self {
        Self::keyed(seed, label, None)
    }

    /// Stream for `(seed, label, index)`, e.g. one row of a tensor.
    pub fn indexed(seed: u64, label: &str, index: u64) -> Self {
        Self::keyed(seed, label, Some(index))
    }

    fn keyed(seed: u64, label: &str, index: Option<u64>) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"weight-audit/lab/rng/v1\0");
        h.update(&seed.to_le_bytes());
        h.update(&(label.len() as u64).to_le_bytes());
        h.update(label.as_bytes());
        if let Some(i) = index {
            h.update(&i.to_le_bytes());
        }
        let out = h.finalize();
        let b = out.as_bytes();
        let mut s = [0u64; 4];
        for (i, w) in s.iter_mut().enumerate() {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i * 8..i * 8 + 8]);
            *w = u64::from_le_bytes(x);
        }
        if s == [0; 4] {
            s[0] = 0x9E37_79B9_7F4A_7C15;
        }
        Rng { s, spare: None }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = (self.s[0].wrapping_add(self.s[3]))
            .rotate_left(23)
            .wrapping_add(self.s[0]);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `[0, n)` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Standard normal.
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }

    /// A uniformly random permutation of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        self.shuffle(&mut p);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_stable_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(1, "x").next_u64()).collect();
        assert!(a.iter().all(|v| *v == a[0]));
        assert_ne!(Rng::new(1, "x").next_u64(), Rng::new(2, "x").next_u64());
        assert_ne!(
            Rng::indexed(1, "x", 0).next_u64(),
            Rng::indexed(1, "x", 1).next_u64()
        );
        let mut r = Rng::new(7, "n");
        let n = 20000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05);
    }
}
