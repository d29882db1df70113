//! E3 tier 4, **permuted copies**: tensors that B holds with exactly A's values in another
//! order, where that order is one coordinate permutation shared by several tensors.
//!
//! Permuting the hidden dimension (with any sign flips) keeps a model's function and moves
//! every stored value away from its coordinate, so neither a block hash nor element agreement
//! sees it. A norm gain, though, keeps its values: only their order changes, and every norm of
//! the model changes order by the same permutation. Identical multisets alone prove little: a
//! model whose values were shuffled tensor by tensor has them too. What a shared permutation
//! leaves, and a shuffle does not, is that the *pairs* of values two tensors hold at one
//! coordinate also move together: B holds exactly A's multiset of pairs
//! `(x[i], y[i])`. BF16 gains repeat values a lot, so the test asks for at least
//! `min_coordinates` pairs that occur once (coordinates whose new place the two tensors pin
//! down together, and at least one of them moved); a vector of few distinct values, or a
//! constant one, can never pass.
//!
//! Each tensor is tested against the next `partners` tensors of its length (in role order):
//! a hidden permutation is shared by all of them, so the first partner already shows it.

use serde::{Deserialize, Serialize};

/// splitmix64's finaliser: a bijective scramble of 64 bits.
fn mix(z: u64) -> u64 {
    let z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An order-free digest of a multiset of keys: equal multisets give equal digests, so unequal
/// digests rule a reordering out in one pass, before any sort. Power sums are cheap and
/// vectorise; a rare collision only costs the exact check that follows.
fn multiset_digest(keys: impl Iterator<Item = u64>) -> (u64, u64) {
    keys.fold((0u64, 0u64), |(s1, s2), k| {
        (s1.wrapping_add(k), s2.wrapping_add(k.wrapping_mul(k)))
    })
}

/// [`multiset_digest`] of stored elements, with the common widths read directly.
fn digest_of(bytes: &[u8], elem_size: usize) -> (u64, u64) {
    match elem_size {
        2 => multiset_digest(
            bytes
                .chunks_exact(2)
                .map(|c| u64::from(u16::from_le_bytes([c[0], c[1]]))),
        ),
        4 => multiset_digest(
            bytes
                .chunks_exact(4)
                .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        ),
        _ => multiset_digest(keys_of(bytes, elem_size)),
    }
}

/// Where B holds each of A's values, when B holds exactly A's values in another order: for
/// each coordinate of A whose value occurs once, the coordinate of B holding it (`None` for
/// repeated values). `None` when the two are different multisets.
pub fn value_map(a: &[u64], b: &[u64]) -> Option<Vec<Option<u32>>> {
    if a.len() != b.len()
        || u32::try_from(a.len()).is_err()
        || multiset_digest(a.iter().copied()) != multiset_digest(b.iter().copied())
    {
        return None;
    }
    let sorted = |v: &[u64]| {
        let mut s: Vec<(u64, u32)> = v.iter().zip(0u32..).map(|(&x, i)| (x, i)).collect();
        s.sort_unstable();
        s
    };
    let (sa, sb) = (sorted(a), sorted(b));
    if sa.iter().zip(&sb).any(|(x, y)| x.0 != y.0) {
        return None;
    }
    let mut map = vec![None; a.len()];
    for (k, (&(value, i), &(_, j))) in sa.iter().zip(&sb).enumerate() {
        let repeated =
            (k > 0 && sa[k - 1].0 == value) || sa.get(k + 1).is_some_and(|n| n.0 == value);
        if !repeated {
            map[i as usize] = Some(j);
        }
    }
    Some(map)
}

/// How many coordinates a map places, and how many of those it moves.
fn mapped_and_moved(map: &[Option<u32>]) -> (u64, u64) {
    map.iter()
        .zip(0u32..)
        .filter_map(|(j, i)| j.map(|j| u64::from(i != j)))
        .fold((0, 0), |(n, moved), m| (n + 1, moved + m))
}

/// One key per coordinate for the pair of values two tensors hold there (a 64-bit hash of the
/// pair: a collision among a few million pairs has a chance near 1e-7).
fn joint(x: impl Iterator<Item = u64>, y: impl Iterator<Item = u64>) -> Vec<u64> {
    x.zip(y)
        .map(|(p, q)| mix(mix(p) ^ q.rotate_left(32)))
        .collect()
}

/// One same-role tensor pair holding the same values in another order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PermutedTensor {
    /// The tensor's name in A.
    pub tensor_a: String,
    /// The tensor's name in B.
    pub tensor_b: String,
    /// Elements per tensor.
    pub elements: u64,
    /// Distinct values in A's tensor.
    pub distinct_values: u64,
    /// The tensor whose values moved the same way, and on how many coordinates the two pin
    /// that permutation down (empty and 0 when none did).
    pub shares_with: String,
    /// Coordinates on which the two pin that permutation down.
    pub coordinates_mapped: u64,
}

/// Tier 4 of one pair.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Permuted {
    /// Same-role tensors read whole, of equal dtype and shape, whose bytes differ.
    pub tensors_compared: u64,
    /// Of those, tensors holding exactly A's values in another order (what a per-tensor
    /// shuffle also gives).
    pub same_values: u64,
    /// Of those, tensors whose new order is one permutation shared with another tensor (what
    /// a hidden-dimension permutation gives).
    pub tensors_permuted: u64,
    /// The most coordinates a shared permutation was pinned down on.
    pub max_coordinates_mapped: u64,
    /// Every tensor with the same values in another order (at most `max_listed`).
    pub tensors: Vec<PermutedTensor>,
}

/// A same-role pair of whole tensors that hold the same values in another order, as stored
/// bytes (borrowed: keys are built only while a check runs).
pub struct Candidate<'a> {
    tensor_a: String,
    tensor_b: String,
    a: &'a [u8],
    b: &'a [u8],
    elem_size: usize,
}

impl<'a> Candidate<'a> {
    /// The pair, when its bytes differ and B may hold A's values in another order: an
    /// order-free digest, one pass over each side, drops tensors with other values without
    /// sorting them (the exact check is [`permuted`]'s).
    pub fn reordered(
        (tensor_a, a): (&str, &'a [u8]),
        (tensor_b, b): (&str, &'a [u8]),
        elem_size: usize,
    ) -> Option<Self> {
        let reordered =
            a.len() == b.len() && a != b && digest_of(a, elem_size) == digest_of(b, elem_size);
        reordered.then(|| Candidate {
            tensor_a: tensor_a.into(),
            tensor_b: tensor_b.into(),
            a,
            b,
            elem_size,
        })
    }

    fn elements(&self) -> usize {
        self.a.len() / self.elem_size.clamp(1, 8)
    }

    /// How many distinct values A's tensor holds, when B's holds exactly the same multiset
    /// (the exact check behind the digest); one sort per side.
    fn distinct_if_reordered(&self) -> Option<u64> {
        let sorted = |side: &[u8]| {
            let mut k = element_keys(side, self.elem_size);
            k.sort_unstable();
            k
        };
        let (mut a, b) = (sorted(self.a), sorted(self.b));
        (a == b).then(|| {
            a.dedup();
            a.len() as u64
        })
    }

    fn keys(&self, side: &'a [u8]) -> impl Iterator<Item = u64> + 'a {
        keys_of(side, self.elem_size)
    }
}

/// Limits of the permuted-copy search (from E3's parameters).
pub struct Thresholds {
    /// Least coordinates a shared permutation must pin down to count.
    pub min_coordinates: u64,
    /// Other tensors of the same length each tensor is tried against.
    pub partners: usize,
    /// Longest list of permuted tensors kept.
    pub max_listed: usize,
}

/// Whether tensors `x` and `y` of A moved to B by one permutation: the coordinates it is
/// pinned down on, when it is and moves at least one of them.
fn shared(x: &Candidate, y: &Candidate, min_coordinates: u64) -> Option<u64> {
    let map = value_map(
        &joint(x.keys(x.a), y.keys(y.a)),
        &joint(x.keys(x.b), y.keys(y.b)),
    )?;
    let (mapped, moved) = mapped_and_moved(&map);
    (mapped >= min_coordinates && moved > 0).then_some(mapped)
}

/// Which of the tensors B holds in another order share one permutation; `compared` is how
/// many same-role tensor pairs were looked at in all.
pub fn permuted(compared: u64, candidates: &[Candidate<'_>], th: &Thresholds) -> Permuted {
    // (candidate, distinct values) for the exact reorderings
    let exact: Vec<(&Candidate, u64)> = candidates
        .iter()
        .filter_map(|c| c.distinct_if_reordered().map(|d| (c, d)))
        .collect();
    let reordered: Vec<&Candidate> = exact.iter().map(|(c, _)| *c).collect();
    let mut partner: Vec<Option<(usize, u64)>> = vec![None; reordered.len()];
    for (x, cx) in reordered.iter().enumerate() {
        let same_length = (0..reordered.len())
            .map(|k| (x + 1 + k) % reordered.len())
            .filter(|&y| y != x && reordered[y].elements() == cx.elements())
            .take(th.partners);
        for y in same_length {
            if let Some(n) = shared(cx, reordered[y], th.min_coordinates) {
                partner[x] = Some((y, n));
                break;
            }
        }
    }
    Permuted {
        tensors_compared: compared,
        same_values: reordered.len() as u64,
        tensors_permuted: partner.iter().filter(|p| p.is_some()).count() as u64,
        max_coordinates_mapped: partner.iter().flatten().map(|p| p.1).max().unwrap_or(0),
        tensors: exact
            .iter()
            .zip(&partner)
            .take(th.max_listed)
            .map(|((c, distinct_values), p)| PermutedTensor {
                tensor_a: c.tensor_a.clone(),
                tensor_b: c.tensor_b.clone(),
                elements: c.elements() as u64,
                distinct_values: *distinct_values,
                shares_with: p.map_or(String::new(), |(y, _)| reordered[y].tensor_a.clone()),
                coordinates_mapped: p.map_or(0, |(_, n)| n),
            })
            .collect(),
    }
}

/// Stored elements as bit patterns (little-endian, `elem_size` bytes each; a trailing partial
/// element is dropped).
pub(super) fn element_keys(bytes: &[u8], elem_size: usize) -> Vec<u64> {
    keys_of(bytes, elem_size).collect()
}

/// [`element_keys`] without collecting them.
pub(super) fn keys_of(bytes: &[u8], elem_size: usize) -> impl Iterator<Item = u64> + '_ {
    bytes.chunks_exact(elem_size.clamp(1, 8)).map(|c| {
        let mut k = [0u8; 8];
        k[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(k)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic permutation of `0..n` (multiplicative step coprime with n).
    fn perm(n: usize, step: usize, shift: usize) -> Vec<usize> {
        (0..n).map(|i| (i * step + shift) % n).collect()
    }

    /// `b[p[i]] = a[i]`: A's values moved to the places `p` gives.
    fn apply(a: &[u64], p: &[usize]) -> Vec<u64> {
        let mut b = vec![0; a.len()];
        for (i, &j) in p.iter().enumerate() {
            b[j] = a[i];
        }
        b
    }

    /// A gain-like vector with only `levels` distinct values, as BF16 gains near 1 have.
    fn coarse(n: usize, levels: u64, salt: u64) -> Vec<u64> {
        (0..n as u64)
            .map(|i| mix(salt << 32 | i) % levels)
            .collect()
    }

    /// The candidates that pass [`Candidate::reordered`] (keys stored as 8 bytes each), and
    /// how many were offered.
    fn run(pairs: Vec<(&str, Vec<u64>, Vec<u64>)>) -> Permuted {
        let bytes = |v: &[u64]| -> Vec<u8> { v.iter().flat_map(|k| k.to_le_bytes()).collect() };
        let stored: Vec<(&str, Vec<u8>, Vec<u8>)> = pairs
            .iter()
            .map(|(name, a, b)| (*name, bytes(a), bytes(b)))
            .collect();
        let cands: Vec<Candidate> = stored
            .iter()
            .filter_map(|(name, a, b)| Candidate::reordered((name, a), (name, b), 8))
            .collect();
        permuted(pairs.len() as u64, &cands, &th())
    }

    fn th() -> Thresholds {
        Thresholds {
            min_coordinates: 16,
            partners: 8,
            max_listed: 100,
        }
    }

    fn counts(r: &Permuted) -> (u64, u64, u64) {
        (r.tensors_compared, r.same_values, r.tensors_permuted)
    }

    #[test]
    fn the_map_sends_each_unique_value_to_its_new_place() {
        // by hand: a = [5, 9, 9, 2], b = [9, 2, 5, 9]: 5 goes 0→2, 2 goes 3→1, 9 is repeated
        assert_eq!(
            value_map(&[5, 9, 9, 2], &[9, 2, 5, 9]),
            Some(vec![Some(2), None, None, Some(1)])
        );
        assert_eq!(value_map(&[5, 9, 9, 2], &[9, 2, 5, 5]), None);
        assert_eq!(value_map(&[1, 2], &[1, 2, 3]), None);
        let a: Vec<u64> = (0..64).map(|i| i * 7919 + 1).collect();
        let p = perm(64, 5, 3);
        let map = value_map(&a, &apply(&a, &p)).unwrap();
        assert!(map.iter().zip(&p).all(|(&m, &j)| m == Some(j as u32)));
    }

    #[test]
    fn the_digest_reads_every_width_alike_and_ignores_order() {
        let bytes: Vec<u8> = (0..64u64).map(|i| (mix(i) >> 7) as u8).collect();
        for size in [1, 2, 3, 4, 8] {
            assert_eq!(
                digest_of(&bytes, size),
                multiset_digest(keys_of(&bytes, size)),
                "{size}"
            );
        }
        let mut reversed: Vec<u8> = bytes.chunks_exact(2).rev().flatten().copied().collect();
        assert_eq!(digest_of(&reversed, 2), digest_of(&bytes, 2));
        reversed[0] ^= 1;
        assert_ne!(digest_of(&reversed, 2), digest_of(&bytes, 2));
    }

    #[test]
    fn coarse_gains_moved_by_one_permutation_pin_it_down_together() {
        let n = 256;
        let hidden = perm(n, 5, 3);
        let gains: Vec<Vec<u64>> = (0..4).map(|t| coarse(n, 12, t)).collect();
        // alone, no vector of 12 levels places 16 coordinates; two together place many
        for a in &gains {
            let map = value_map(a, &apply(a, &hidden)).unwrap();
            assert!(mapped_and_moved(&map).0 < 16);
        }
        let names = ["norm.0", "norm.1", "norm.2", "norm.3"];
        let r = run(names
            .iter()
            .zip(&gains)
            .map(|(name, a)| (*name, a.clone(), apply(a, &hidden)))
            .collect());
        assert_eq!(counts(&r), (4, 4, 4));
        assert!(r.max_coordinates_mapped >= 32, "{r:?}");
        assert!(r.tensors.iter().all(|t| !t.shares_with.is_empty()));
        assert_eq!(r.tensors[0].shares_with, "norm.1");
        assert_eq!(r.tensors[0].distinct_values, 12);
    }

    #[test]
    fn values_shuffled_tensor_by_tensor_have_the_same_multisets_and_share_no_permutation() {
        let n = 256;
        let r = run((0..4)
            .map(|t| {
                let a = coarse(n, 12, t);
                let b = apply(&a, &perm(n, [5, 7, 9, 11][t as usize], t as usize));
                ("norm", a, b)
            })
            .collect());
        assert_eq!(counts(&r), (4, 4, 0));
        assert_eq!(r.max_coordinates_mapped, 0);
        assert!(r.tensors.iter().all(|t| t.shares_with.is_empty()));
    }

    #[test]
    fn copies_in_place_changed_values_and_lone_tensors_never_count() {
        let n = 256;
        let hidden = perm(n, 5, 3);
        let a = coarse(n, 12, 0);
        let mut other = apply(&a, &hidden);
        other[0] += 100;
        let r = run(vec![
            ("copy.0", a.clone(), a.clone()),
            ("copy.1", coarse(n, 12, 1), coarse(n, 12, 1)),
            ("fine-tuned.0", a.clone(), other.clone()),
            ("fine-tuned.1", a, other),
            ("other length", coarse(n, 40, 2), coarse(n - 1, 40, 2)),
        ]);
        assert_eq!(counts(&r), (5, 0, 0));
        assert!(r.tensors.is_empty());
        // alone, a reordering is only a shared multiset
        let lone = coarse(n, 40, 9);
        let r = run(vec![("lone", lone.clone(), apply(&lone, &hidden))]);
        assert_eq!(counts(&r), (1, 1, 0));
        assert_eq!(r.tensors[0].coordinates_mapped, 0);
    }
}
