//! Seeded window sampling shared across models.
//!
//! A window's position depends only on a key (the tensor's role, so renamed copies line up),
//! the seed and the window index, so every model is read at the same element offsets and a
//! rerun reads the same bytes. Windows never overlap and a tensor small enough is read once,
//! whole: published scripts read small tensors once per window and so counted every element
//! three times, inflating their z-scores by √3.

/// Up to `count` non-overlapping windows of `len` elements inside `[0, numel)`, as
/// `(start, len)` sorted by start; the whole range when it is no larger than the windows.
pub fn windows(key: &str, seed: u64, numel: u64, len: u64, count: u64) -> Vec<(u64, u64)> {
    if numel == 0 {
        return Vec::new();
    }
    if len == 0 || count == 0 || numel <= len.saturating_mul(count) {
        return vec![(0, numel)];
    }
    // One window per equal stratum, at a hashed offset inside it: spread over the tensor and
    // disjoint by construction.
    let stratum = numel / count;
    (0..count)
        .map(|w| {
            let h = blake3::hash(format!("{key}|{seed}|{w}").as_bytes());
            let bytes: [u8; 8] = h.as_bytes()[..8].try_into().unwrap_or([0; 8]);
            let slack = stratum.saturating_sub(len) + 1;
            let start = w * stratum + u64::from_le_bytes(bytes) % slack;
            (start, len.min(numel - start))
        })
        .collect()
}

/// Total elements covered by windows.
pub fn covered(windows: &[(u64, u64)]) -> u64 {
    windows.iter().map(|w| w.1).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_tensors_are_read_once_whole() {
        assert_eq!(windows("k", 0, 4096, 65536, 3), vec![(0, 4096)]);
        assert_eq!(windows("k", 0, 0, 10, 3), vec![]);
    }

    #[test]
    fn windows_are_disjoint_deterministic_and_seeded() {
        let w = windows("attn_q/3", 7, 10_000_000, 65536, 4);
        assert_eq!(w.len(), 4);
        for pair in w.windows(2) {
            assert!(pair[0].0 + pair[0].1 <= pair[1].0, "{w:?}");
        }
        assert!(w.iter().all(|(s, l)| s + l <= 10_000_000 && *l == 65536));
        assert_eq!(w, windows("attn_q/3", 7, 10_000_000, 65536, 4));
        assert_ne!(w, windows("attn_q/3", 8, 10_000_000, 65536, 4));
        assert_ne!(w, windows("attn_k/3", 7, 10_000_000, 65536, 4));
        assert_eq!(covered(&w), 4 * 65536);
    }
}
