//! E3 byte identity: are stored bytes of A found in B? The strongest evidence of reuse, and
//! the cheapest to check, in tiers:
//!
//! 1. **Sampled blocks.** Every tensor is cut into a grid of blocks (`block_bytes`, 4 KiB by
//!    default). Tensors of at most `small_tensor_bytes` (norms, biases, routers) are read
//!    whole; larger ones are read at `blocks_per_tensor` grid cells chosen from a hash of the
//!    tensor's dtype and shape and the seed. Every tensor of one dtype and shape, in every
//!    model, is therefore read at the same cells, so a block of A can be looked up among all
//!    blocks of B by (dtype, shape, cell, blake3): renamed, moved and permuted copies (expert
//!    `3` stored as expert `5`) are found without trusting names. Blocks are compared as
//!    raw bytes (planned with [`Plan::add_raw`]), never as decoded values.
//! 2. **Full hashes.** Any tensor pair with an identical informative block is confirmed by a
//!    blake3 of both whole tensors: direct for tensors read whole, streamed in chunks through
//!    [`Model::read_raw`] otherwise (bounded by `tier2_budget_bytes` per pair; a tier-2 read
//!    depends on tier-1 results, so it cannot be planned up front).
//! 3. **Element agreement.** Same-role tensors of equal shape are compared element by element
//!    inside their sampled informative blocks (stored bits; for different float dtypes, the
//!    values cast to the narrower one, in the cast windows): how many are identical at the same
//!    coordinate, against the permutation null (pairing the block's elements at
//!    random gives `Σ_v count_A(v)·count_B(v) / n` identical ones). A BF16 fine-tune keeps every
//!    element whose update stayed below half a rounding step, so it shares no whole block with
//!    its base yet keeps a large share of its elements (GLM-4.5-Air → INTELLECT-3 changed under
//!    10 % of the values of its deeper norms); unrelated models agree only as often as their
//!    value histograms make chance agreement likely.
//! 4. **Permuted copies.** Same-role tensors read whole whose bytes differ but whose values
//!    are exactly A's in another order, and whose order is one coordinate permutation shared
//!    with another tensor: what permuting the hidden dimension leaves in the norms (see
//!    [`super::e3_permuted`]; a per-tensor shuffle of the values is its null).
//!
//! **Buffers** (non-learned tensors stored with the weights: position ids, causal masks, the
//! rotary `inv_freq` table, see [`is_buffer`]) are functions of the config, byte-identical in
//! unrelated checkpoints of one architecture. They never count as evidence (no tier counts
//! them) and are reported apart: `buffers_identical` and `buffers`.
//!
//! Low-information blocks (all zeros, one repeated element, a repeated pattern of at most
//! `max_period_bytes`, byte entropy below `min_entropy_bits`, or shorter than
//! `min_block_bytes`) match by chance across unrelated models and never count; the report
//! says how many were excluded and why.
//!
//! Beside byte identity, and never counted as it: **identical values under a dtype cast**
//! (same-role tensors of the same shape stored in different float dtypes, e.g. B in F32 holding
//! exactly A's BF16 values), compared on decoded windows and confirmed by streaming; and the
//! **outlier fingerprint** (the repro plan's human-checkable signal): the `top_k` most extreme
//! coordinates of each of A's norm vectors, checked for identical values at the same indices
//! in B, with the chance probability of the observed number of matches under B's own value
//! histogram (a Poisson-binomial tail).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::e3_permuted::{Candidate, Permuted, Thresholds, element_keys, permuted};
use super::roles::{RoleKey, by_role};
use super::{Data, Experiment, Output, Plan, Sample, Subjects, Table, fmt, round9};
use crate::arch::Family;
use crate::dtype::Dtype;
use crate::model::{ElementRequest, Model, TensorInfo};
use crate::sampling;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub seed: u64,
    /// Grid block size in bytes (rounded down to whole groups of 8 elements).
    pub block_bytes: u64,
    /// Blocks read per tensor larger than `small_tensor_bytes`.
    pub blocks_per_tensor: u64,
    /// Tensors up to this size are read and hashed whole.
    pub small_tensor_bytes: u64,
    /// Experts read per layer (a seeded subset of expert ids, the same in every model).
    pub experts_per_layer: usize,
    /// Tier-2 streaming budget per pair and model, and its chunk size.
    pub tier2_budget_bytes: u64,
    pub chunk_bytes: u64,
    /// Dtype-cast check: windows of decoded values per tensor.
    pub cast_window_elems: u64,
    pub cast_windows: u64,
    /// Outlier fingerprint: coordinates per norm vector.
    pub top_k: usize,
    /// Low-information thresholds.
    pub min_block_bytes: usize,
    pub max_period_bytes: usize,
    pub min_entropy_bits: f64,
    /// Longest list of matched tensors kept per pair (counts are always complete).
    pub max_listed: usize,
    /// Element agreement: a tensor agrees when its identical elements exceed chance by this
    /// share of the elements compared and by `agreement_min_z` standard deviations.
    pub agreement_min_excess: f64,
    pub agreement_min_z: f64,
    /// Permuted copies: two tensors share a permutation when B holds exactly A's pairs of
    /// values at one coordinate in another order, pinning down at least
    /// `permutation_min_coordinates` coordinates (pairs that occur once); each tensor is tried
    /// against `permutation_partners` others of its length.
    pub permutation_min_coordinates: u64,
    pub permutation_partners: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            seed: 0,
            block_bytes: 4096,
            blocks_per_tensor: 16,
            small_tensor_bytes: 1 << 20,
            experts_per_layer: 8,
            tier2_budget_bytes: 256 << 20,
            chunk_bytes: 16 << 20,
            cast_window_elems: 1024,
            cast_windows: 8,
            top_k: 8,
            min_block_bytes: 64,
            max_period_bytes: 64,
            min_entropy_bits: 2.0,
            max_listed: 2000,
            agreement_min_excess: 0.01,
            agreement_min_z: 6.0,
            permutation_min_coordinates: 16,
            permutation_partners: 8,
        }
    }
}

#[derive(Default)]
pub struct ByteIdentity {
    pub params: Params,
}

/// Why a block is, or is not, evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockInfo {
    Informative,
    Zero,
    /// One element value repeated.
    Constant,
    /// A pattern of a few bytes repeated.
    Periodic,
    LowEntropy,
    Short,
}

/// Thresholds of [`classify_block`].
#[derive(Clone, Copy, Debug)]
pub struct InfoThresholds {
    pub min_bytes: usize,
    pub max_period: usize,
    pub min_entropy_bits: f64,
}

impl From<&Params> for InfoThresholds {
    fn from(p: &Params) -> Self {
        InfoThresholds {
            min_bytes: p.min_block_bytes,
            max_period: p.max_period_bytes,
            min_entropy_bits: p.min_entropy_bits,
        }
    }
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
    pub elements: u64,
    pub identical: u64,
    /// Mean of `identical` under the permutation null.
    pub expected: f64,
    /// Its variance (binomial approximation: `Σ E_b · (1 − E_b / n_b)` over runs).
    pub variance: f64,
}

impl Coincidence {
    fn add(&mut self, o: &Coincidence) {
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

/// Where a tensor is read: its grid and the cells taken.
struct Layout {
    block_elems: u64,
    cells: Vec<u64>,
    whole: bool,
}

/// Tier-1 blocks of one tensor of one model.
struct Blocks<'m> {
    t: &'m TensorInfo,
    /// (cell, blake3, information) per block.
    blocks: Vec<(u64, [u8; 32], BlockInfo)>,
    /// blake3 of the whole tensor, when it was read whole.
    whole: Option<[u8; 32]>,
}

type ShapeKey = (Dtype, Vec<u64>);

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SameRole {
    /// Same-role tensors with equal dtype and shape, and their blocks at identical cells.
    pub tensors_compared: u64,
    pub blocks_compared: u64,
    pub blocks_identical: u64,
    pub blocks_excluded: u64,
    /// Same-role tensors of equal shape and different dtype (see `dtype_cast`).
    pub dtype_differs: u64,
    pub shape_differs: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TensorMatch {
    pub tensor_a: String,
    pub tensor_b: String,
    /// `same_name`, `same_role` (renamed) or `moved` (another role, e.g. a permuted expert).
    pub relation: String,
    pub bytes: u64,
    pub blocks_matched: u64,
    pub blocks_informative: u64,
    /// `full_hash` (whole tensors identical), `partial` (some blocks identical, the whole
    /// differs) or `unconfirmed` (tier-2 budget exhausted).
    pub status: String,
}

/// A buffer of A byte-identical to one of B: reported, never evidence.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BufferMatch {
    pub tensor_a: String,
    pub tensor_b: String,
    pub bytes: u64,
}

/// Non-learned tensors stored beside the weights: buffers by role (position ids, GPT-2's
/// causal masks) and config-derived tables by name (rotary `inv_freq`, cached cos/sin). A
/// learned tensor, `relative_attention_bias` included, is never one.
pub fn is_buffer(t: &TensorInfo) -> bool {
    t.role.family == Family::Buffer
        || matches!(
            t.name.rsplit('.').next().unwrap_or(""),
            "inv_freq"
                | "position_ids"
                | "token_type_ids"
                | "masked_bias"
                | "_float_tensor"
                | "cos_cached"
                | "sin_cached"
        )
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CastMatch {
    pub tensor_a: String,
    pub tensor_b: String,
    pub dtype_a: String,
    pub dtype_b: String,
    pub windows_informative: u64,
    pub windows_identical: u64,
    /// `full_values` (every element equal after decoding), `partial`, `differs` or `unconfirmed`.
    pub status: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TensorAgreement {
    pub tensor_a: String,
    pub tensor_b: String,
    pub elements: u64,
    pub identical: u64,
    pub expected: f64,
    pub excess: f64,
    pub z: f64,
}

/// Element agreement of same-role tensors of equal shape: stored bits inside the sampled
/// informative blocks when the dtypes are equal, values cast to the narrower dtype inside the
/// informative cast windows when they differ.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ElementAgreement {
    pub tensors_compared: u64,
    pub elements_compared: u64,
    pub elements_identical: u64,
    /// Identical elements expected by chance (permutation null), and as a share.
    pub expected_identical: f64,
    pub identical_fraction: f64,
    pub expected_fraction: f64,
    /// (identical − expected) / compared, and in standard deviations of the null.
    pub excess_fraction: f64,
    pub z: f64,
    /// The tensor agreeing most, in standard deviations of its own null (unrelated models: the
    /// largest of `tensors_compared` draws near N(0, 1), about 2–4).
    pub max_tensor_z: f64,
    pub max_tensor: String,
    /// Tensors whose own agreement clears both `agreement_min_excess` and `agreement_min_z`.
    pub tensors_agreeing: u64,
    /// The agreeing tensors (at most `max_listed`, in role order).
    pub agreeing: Vec<TensorAgreement>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Fingerprint {
    pub vectors: u64,
    pub coordinates: u64,
    pub matches: u64,
    /// Expected matches by chance (sum of per-coordinate probabilities) and P(≥ matches).
    pub expected: f64,
    pub p_value: f64,
    pub vectors_with_match: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairBytes {
    pub pair: String,
    pub primary: bool,
    /// Blocks of A, and how many of the informative ones B holds at the same cell of a tensor of
    /// the same dtype and shape (any name).
    pub blocks_a: u64,
    pub blocks_informative: u64,
    pub blocks_excluded: u64,
    pub excluded_by_reason: BTreeMap<String, u64>,
    pub blocks_found_in_b: u64,
    pub same_role: SameRole,
    pub identical_tensors: u64,
    pub identical_bytes: u64,
    pub identical_renamed_or_moved: u64,
    pub partial_tensors: u64,
    pub unconfirmed_tensors: u64,
    pub matches: Vec<TensorMatch>,
    /// Buffers ([`is_buffer`]) read whole and byte-identical in A and B, apart from every
    /// count above: they match across unrelated models.
    pub buffers_identical: u64,
    pub buffers: Vec<BufferMatch>,
    pub cast_identical_tensors: u64,
    pub casts: Vec<CastMatch>,
    pub element_agreement: ElementAgreement,
    pub permuted: Permuted,
    pub fingerprint: Fingerprint,
    /// Bytes streamed for tier 2 (both models).
    pub tier2_bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelBytes {
    pub model: String,
    /// Bytes E3 plans to read from this model (tier 1, casts, norms), before tier 2.
    pub planned_bytes: u64,
    pub tensors_whole: u64,
    pub tensors_sampled: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Result3 {
    pub params: Params,
    pub models: Vec<ModelBytes>,
    pub pairs: Vec<PairBytes>,
}

fn hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

fn key_hash(s: &str) -> u64 {
    let h = blake3::hash(s.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

fn shape_key(t: &TensorInfo) -> ShapeKey {
    (t.dtype, t.shape.clone())
}

fn elem_size(d: Dtype) -> usize {
    d.byte_size().unwrap_or(1)
}

/// Partners of model `m` in the pairs compared.
fn partners(subjects: &Subjects, m: usize) -> Vec<usize> {
    subjects
        .pairs()
        .into_iter()
        .filter_map(|(i, j)| {
            if i == m {
                Some(j)
            } else if j == m {
                Some(i)
            } else {
                None
            }
        })
        .collect()
}

impl ByteIdentity {
    fn layout(&self, t: &TensorInfo) -> Layout {
        let p = &self.params;
        let bits = u64::from(t.dtype.bits()).max(1);
        let block_elems = ((p.block_bytes * 8 / bits) / 8 * 8).max(8);
        let whole = t.bytes() <= p.small_tensor_bytes;
        let ncells = t.numel.div_ceil(block_elems);
        if whole {
            return Layout {
                block_elems,
                cells: (0..ncells).collect(),
                whole,
            };
        }
        let full = t.numel / block_elems;
        let count = p.blocks_per_tensor.min(full).max(1);
        let stratum = (full / count).max(1);
        let key = format!("{}|{:?}|{}", t.dtype, t.shape, p.seed);
        let cells = (0..count)
            .map(|s| s * stratum + key_hash(&format!("{key}|{s}")) % stratum)
            .filter(|&c| c < full)
            .collect();
        Layout {
            block_elems,
            cells,
            whole,
        }
    }

    /// Bytes of one grid block of `t` (at least 1).
    fn block_bytes(&self, t: &TensorInfo) -> usize {
        let bits = u64::from(t.dtype.bits()).max(1);
        ((self.layout(t).block_elems * bits / 8) as usize).max(1)
    }

    fn raw_sample(&self, t: &TensorInfo) -> Sample {
        let l = self.layout(t);
        let windows = if l.whole {
            vec![(0, t.numel)]
        } else {
            l.cells
                .iter()
                .map(|&c| (c * l.block_elems, l.block_elems))
                .collect()
        };
        Sample {
            tensor: t.name.clone(),
            windows,
        }
    }

    fn cast_sample(&self, t: &TensorInfo) -> Sample {
        let p = &self.params;
        Sample {
            tensor: t.name.clone(),
            windows: sampling::windows(
                &format!("cast|{:?}", t.shape),
                p.seed,
                t.numel,
                p.cast_window_elems,
                p.cast_windows,
            ),
        }
    }

    /// Expert ids read in layer `layer`: a seeded subset of the ids any model has.
    fn expert_subset(&self, subjects: &Subjects, layer: Option<u32>) -> BTreeSet<u32> {
        let n = subjects
            .models
            .iter()
            .flat_map(|s| s.model.tensors())
            .filter(|t| t.role.layer == layer)
            .filter_map(|t| t.role.expert)
            .max()
            .map_or(0, |e| e + 1);
        let mut ids: Vec<u32> = (0..n).collect();
        ids.sort_by_key(|e| key_hash(&format!("experts|{}|{layer:?}|{e}", self.params.seed)));
        ids.into_iter()
            .take(self.params.experts_per_layer)
            .collect()
    }

    /// Tensors of model `m` read for tier 1: those whose dtype and shape some partner has,
    /// leaving out experts outside the sampled subset.
    fn tier1_tensors<'m>(&self, subjects: &Subjects<'m>, m: usize) -> Vec<&'m TensorInfo> {
        let shapes: BTreeSet<ShapeKey> = partners(subjects, m)
            .into_iter()
            .flat_map(|o| subjects.models[o].model.tensors().iter().map(shape_key))
            .collect();
        let mut subsets: HashMap<Option<u32>, BTreeSet<u32>> = HashMap::new();
        subjects.models[m]
            .model
            .tensors()
            .iter()
            .filter(|t| t.numel > 0 && shapes.contains(&shape_key(t)))
            .filter(|t| match t.role.expert {
                None => true,
                Some(e) => subsets
                    .entry(t.role.layer)
                    .or_insert_with(|| self.expert_subset(subjects, t.role.layer))
                    .contains(&e),
            })
            .collect()
    }

    /// Same-role tensor pairs of equal shape and different decodable float dtypes.
    fn cast_pairs<'m>(
        &self,
        subjects: &Subjects<'m>,
        i: usize,
        j: usize,
    ) -> Vec<(&'m TensorInfo, &'m TensorInfo)> {
        let (ra, rb) = (
            by_role(subjects.models[i].model),
            by_role(subjects.models[j].model),
        );
        ra.iter()
            .filter_map(|(k, ta)| rb.get(k).map(|tb| (*ta, *tb)))
            .filter(|(a, b)| {
                !is_buffer(a)
                    && !is_buffer(b)
                    && a.shape == b.shape
                    && a.dtype != b.dtype
                    && a.dtype.is_float()
                    && b.dtype.is_float()
                    && a.dtype.decodable()
                    && b.dtype.decodable()
            })
            .collect()
    }

    /// Same-role norm vectors of equal length (any dtype): the outlier fingerprint's input.
    fn norm_pairs<'m>(
        &self,
        subjects: &Subjects<'m>,
        i: usize,
        j: usize,
    ) -> Vec<(RoleKey, &'m TensorInfo, &'m TensorInfo)> {
        let (ra, rb) = (
            by_role(subjects.models[i].model),
            by_role(subjects.models[j].model),
        );
        ra.iter()
            .filter(|(k, t)| {
                k.family.is_norm()
                    && t.dtype.decodable()
                    && t.bytes() <= self.params.small_tensor_bytes
            })
            .filter_map(|(k, ta)| rb.get(k).map(|tb| (*k, *ta, *tb)))
            .filter(|(_, a, b)| a.numel == b.numel && b.dtype.decodable())
            .collect()
    }

    fn blocks<'m>(&self, data: &Data, m: usize, t: &'m TensorInfo) -> Result<Blocks<'m>> {
        let raw = data.raw(m, &self.raw_sample(t))?;
        let l = self.layout(t);
        let th = InfoThresholds::from(&self.params);
        let blocks = raw
            .chunks(self.block_bytes(t))
            .zip(&l.cells)
            .map(|(b, &c)| (c, hash(b), classify_block(b, elem_size(t.dtype), &th)))
            .collect();
        Ok(Blocks {
            t,
            blocks,
            whole: l.whole.then(|| hash(raw)),
        })
    }
}

/// blake3 of a whole tensor, streamed in chunks of whole groups of 8 elements.
fn stream_hash(model: &Model, t: &TensorInfo, chunk_bytes: u64) -> Result<[u8; 32]> {
    let bits = u64::from(t.dtype.bits()).max(1);
    let chunk = ((chunk_bytes * 8 / bits) / 8 * 8).max(8);
    let mut h = blake3::Hasher::new();
    let mut start = 0;
    while start < t.numel {
        let count = chunk.min(t.numel - start);
        let req = ElementRequest {
            tensor: t.name.clone(),
            start,
            count,
        };
        for b in model.read_raw(&[req])? {
            h.update(&b);
        }
        start += count;
    }
    Ok(*h.finalize().as_bytes())
}

/// Whether two tensors hold equal values after decoding, streamed in chunks.
fn stream_values_equal(
    a: &Model,
    ta: &TensorInfo,
    b: &Model,
    tb: &TensorInfo,
    chunk_elems: u64,
) -> Result<bool> {
    let chunk = (chunk_elems / 8 * 8).max(8);
    let mut start = 0;
    while start < ta.numel {
        let count = chunk.min(ta.numel - start);
        let va = a.read_f32(&ta.name, start, count)?;
        let vb = b.read_f32(&tb.name, start, count)?;
        if !values_equal_under_cast(&va, ta.dtype, &vb, tb.dtype) {
            return Ok(false);
        }
        start += count;
    }
    Ok(true)
}

/// A value as it reads back after a cast to `dtype` (round to nearest even, as PyTorch's
/// `.to()` and safetensors converters do); dtypes at least as wide as f32 keep it.
fn through(dtype: Dtype, x: f32) -> f32 {
    match dtype {
        Dtype::Bf16 => half::bf16::from_f32(x).to_f32(),
        Dtype::F16 => half::f16::from_f32(x).to_f32(),
        _ => x,
    }
}

/// Whether two tensors of different float dtypes hold the same values up to one cast: the
/// wider side, cast to the narrower dtype, gives the narrower side exactly (an F32 model
/// re-saved as BF16 matches; a fine-tune saved as BF16 does not).
fn values_equal_under_cast(a: &[f32], da: Dtype, b: &[f32], db: Dtype) -> bool {
    let same = |x: &[f32], y: &[f32], d: Dtype| {
        x.iter()
            .zip(y)
            .all(|(p, q)| through(d, *p).to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()))
    };
    a.len() == b.len() && (same(a, b, db) || same(b, a, da))
}

/// Element agreement of two windows stored in different float dtypes: both sides as they read
/// back after a cast to the narrower dtype (an F32 fine-tune of a BF16 model keeps A's value
/// wherever its update stayed under half a BF16 step, as a BF16 fine-tune would).
fn cast_coincidence(a: &[f32], da: Dtype, b: &[f32], db: Dtype) -> Coincidence {
    let narrow = if da.bits() <= db.bits() { da } else { db };
    let keys = |v: &[f32]| -> Vec<u64> {
        v.iter()
            .map(|&x| u64::from(through(narrow, x).to_bits()))
            .collect()
    };
    coincidence(&keys(a), &keys(b))
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl Experiment for ByteIdentity {
    fn id(&self) -> &'static str {
        "e3"
    }

    fn plan(&self, subjects: &Subjects, plan: &mut Plan) {
        for m in 0..subjects.models.len() {
            for t in self.tier1_tensors(subjects, m) {
                plan.add_raw(m, self.raw_sample(t));
            }
        }
        for (i, j) in subjects.pairs() {
            for (a, b) in self.cast_pairs(subjects, i, j) {
                plan.add(i, self.cast_sample(a));
                plan.add(j, self.cast_sample(b));
            }
            for (_, a, b) in self.norm_pairs(subjects, i, j) {
                plan.add(i, Sample::whole(&a.name, a.numel));
                plan.add(j, Sample::whole(&b.name, b.numel));
            }
        }
    }

    fn run(&self, subjects: &Subjects, data: &Data) -> Result<Output> {
        let mut own = Plan::default();
        self.plan(subjects, &mut own);
        let planned = own.bytes(subjects);
        let mut models = Vec::new();
        let mut blocks: Vec<Vec<Blocks>> = Vec::new();
        for (m, &planned_bytes) in planned.iter().enumerate() {
            let ts = self.tier1_tensors(subjects, m);
            let bs = ts
                .iter()
                .map(|t| self.blocks(data, m, t))
                .collect::<Result<Vec<_>>>()?;
            models.push(ModelBytes {
                model: subjects.models[m].label.clone(),
                planned_bytes,
                tensors_whole: bs.iter().filter(|b| b.whole.is_some()).count() as u64,
                tensors_sampled: bs.iter().filter(|b| b.whole.is_none()).count() as u64,
            });
            blocks.push(bs);
        }
        let mut full_hashes: HashMap<(usize, String), [u8; 32]> = HashMap::new();
        let mut pairs = Vec::new();
        for (i, j) in subjects.pairs() {
            pairs.push(self.pair(subjects, data, &blocks, (i, j), &mut full_hashes)?);
        }
        Output::new(
            "e3",
            &Result3 {
                params: self.params.clone(),
                models,
                pairs,
            },
        )
    }
}

impl ByteIdentity {
    fn pair(
        &self,
        subjects: &Subjects,
        data: &Data,
        blocks: &[Vec<Blocks>],
        (i, j): (usize, usize),
        full_hashes: &mut HashMap<(usize, String), [u8; 32]>,
    ) -> Result<PairBytes> {
        let p = &self.params;
        let (ma, mb) = (subjects.models[i].model, subjects.models[j].model);
        // B's informative blocks by (dtype, shape, cell, hash): learned tensors, and buffers
        // apart (matched only to A's buffers, never counted).
        let mut index: HashMap<(ShapeKey, u64, [u8; 32]), Vec<usize>> = HashMap::new();
        let mut buffer_index: HashMap<(ShapeKey, u64, [u8; 32]), Vec<usize>> = HashMap::new();
        for (k, tb) in blocks[j].iter().enumerate() {
            let target = if is_buffer(tb.t) {
                &mut buffer_index
            } else {
                &mut index
            };
            for &(cell, h, info) in &tb.blocks {
                if info == BlockInfo::Informative {
                    target
                        .entry((shape_key(tb.t), cell, h))
                        .or_default()
                        .push(k);
                }
            }
        }
        let mut out = PairBytes {
            pair: subjects.pair_label(i, j),
            primary: Subjects::is_primary(i, j),
            blocks_a: 0,
            blocks_informative: 0,
            blocks_excluded: 0,
            excluded_by_reason: BTreeMap::new(),
            blocks_found_in_b: 0,
            same_role: SameRole::default(),
            identical_tensors: 0,
            identical_bytes: 0,
            identical_renamed_or_moved: 0,
            partial_tensors: 0,
            unconfirmed_tensors: 0,
            matches: Vec::new(),
            buffers_identical: 0,
            buffers: Vec::new(),
            cast_identical_tensors: 0,
            casts: Vec::new(),
            element_agreement: ElementAgreement::default(),
            permuted: Permuted::default(),
            fingerprint: Fingerprint::default(),
            tier2_bytes: 0,
        };
        // (A tensor, B tensor) → informative blocks matched.
        let mut hits: BTreeMap<(usize, usize), u64> = BTreeMap::new();
        let mut buffer_hits: BTreeSet<(usize, usize)> = BTreeSet::new();
        for (ka, ta) in blocks[i].iter().enumerate() {
            if is_buffer(ta.t) {
                for &(cell, h, _) in ta.blocks.iter().filter(|b| b.2 == BlockInfo::Informative) {
                    for &kb in buffer_index
                        .get(&(shape_key(ta.t), cell, h))
                        .into_iter()
                        .flatten()
                    {
                        buffer_hits.insert((ka, kb));
                    }
                }
                continue;
            }
            for &(cell, h, info) in &ta.blocks {
                out.blocks_a += 1;
                if info != BlockInfo::Informative {
                    out.blocks_excluded += 1;
                    *out.excluded_by_reason
                        .entry(serde_json::to_value(info)?.as_str().unwrap_or("").into())
                        .or_default() += 1;
                    continue;
                }
                out.blocks_informative += 1;
                if let Some(bs) = index.get(&(shape_key(ta.t), cell, h)) {
                    out.blocks_found_in_b += 1;
                    for &kb in bs {
                        *hits.entry((ka, kb)).or_default() += 1;
                    }
                }
            }
        }
        // Same-role comparison at identical cells.
        let (ra, rb) = (by_role(ma), by_role(mb));
        let pos = |m: usize| -> HashMap<&str, usize> {
            blocks[m]
                .iter()
                .enumerate()
                .map(|(k, b)| (b.t.name.as_str(), k))
                .collect()
        };
        let (pa, pb) = (pos(i), pos(j));
        let mut agreement = Vec::new();
        let (mut reordered, mut whole_differing) = (Vec::new(), 0);
        for (key, ta) in &ra {
            let Some(tb) = rb.get(key) else { continue };
            if is_buffer(ta) || is_buffer(tb) {
                continue;
            }
            if ta.shape != tb.shape {
                out.same_role.shape_differs += 1;
                continue;
            }
            if ta.dtype != tb.dtype {
                out.same_role.dtype_differs += 1;
                continue;
            }
            let (Some(&ka), Some(&kb)) = (pa.get(ta.name.as_str()), pb.get(tb.name.as_str()))
            else {
                continue; // an expert outside the sampled subset
            };
            out.same_role.tensors_compared += 1;
            let (raw_a, raw_b) = (
                data.raw(i, &self.raw_sample(ta))?,
                data.raw(j, &self.raw_sample(tb))?,
            );
            let block_bytes = self.block_bytes(ta);
            let size = elem_size(ta.dtype);
            let mut tensor = Coincidence::default();
            for ((x, y), (ba, bb)) in blocks[i][ka]
                .blocks
                .iter()
                .zip(&blocks[j][kb].blocks)
                .zip(raw_a.chunks(block_bytes).zip(raw_b.chunks(block_bytes)))
            {
                if x.2 != BlockInfo::Informative || y.2 != BlockInfo::Informative {
                    out.same_role.blocks_excluded += 1;
                } else {
                    out.same_role.blocks_compared += 1;
                    if x.1 == y.1 {
                        out.same_role.blocks_identical += 1;
                    }
                    tensor.add(&coincidence(
                        &element_keys(ba, size),
                        &element_keys(bb, size),
                    ));
                }
            }
            agreement.push((ta.name.clone(), tb.name.clone(), tensor));
            if let (Some(ha), Some(hb)) = (blocks[i][ka].whole, blocks[j][kb].whole)
                && ha != hb
            {
                whole_differing += 1;
                reordered.extend(Candidate::reordered(
                    (&ta.name, raw_a),
                    (&tb.name, raw_b),
                    size,
                ));
            }
        }
        out.permuted = permuted(
            whole_differing,
            &reordered,
            &Thresholds {
                min_coordinates: p.permutation_min_coordinates,
                partners: p.permutation_partners,
                max_listed: p.max_listed,
            },
        );
        // Tier 2 on every hit.
        let (mut budget_a, mut budget_b) = (p.tier2_budget_bytes, p.tier2_budget_bytes);
        for (&(ka, kb), &matched) in &hits {
            let (ba, bb) = (&blocks[i][ka], &blocks[j][kb]);
            let informative = ba
                .blocks
                .iter()
                .filter(|b| b.2 == BlockInfo::Informative)
                .count() as u64;
            let mut full = |m: usize,
                            model: &Model,
                            b: &Blocks,
                            budget: &mut u64,
                            streamed: &mut u64|
             -> Result<Option<[u8; 32]>> {
                if let Some(h) = b.whole {
                    return Ok(Some(h));
                }
                if let Some(h) = full_hashes.get(&(m, b.t.name.clone())) {
                    return Ok(Some(*h));
                }
                if b.t.bytes() > *budget {
                    return Ok(None);
                }
                *budget -= b.t.bytes();
                *streamed += b.t.bytes();
                let h = stream_hash(model, b.t, p.chunk_bytes)?;
                full_hashes.insert((m, b.t.name.clone()), h);
                Ok(Some(h))
            };
            let mut streamed = 0;
            let ha = full(i, ma, ba, &mut budget_a, &mut streamed)?;
            let hb = full(j, mb, bb, &mut budget_b, &mut streamed)?;
            out.tier2_bytes += streamed;
            let status = match (ha, hb) {
                (Some(x), Some(y)) if x == y => "full_hash",
                (Some(_), Some(_)) => "partial",
                _ => "unconfirmed",
            };
            let relation = if ba.t.name == bb.t.name {
                "same_name"
            } else if ba.t.role == bb.t.role {
                "same_role"
            } else {
                "moved"
            };
            match status {
                "full_hash" => {
                    out.identical_tensors += 1;
                    out.identical_bytes += ba.t.bytes();
                    if relation != "same_name" {
                        out.identical_renamed_or_moved += 1;
                    }
                }
                "partial" => out.partial_tensors += 1,
                _ => out.unconfirmed_tensors += 1,
            }
            if out.matches.len() < p.max_listed {
                out.matches.push(TensorMatch {
                    tensor_a: ba.t.name.clone(),
                    tensor_b: bb.t.name.clone(),
                    relation: relation.into(),
                    bytes: ba.t.bytes(),
                    blocks_matched: matched,
                    blocks_informative: informative,
                    status: status.into(),
                });
            }
        }
        for &(ka, kb) in &buffer_hits {
            let (ba, bb) = (&blocks[i][ka], &blocks[j][kb]);
            if ba.whole.is_some() && ba.whole == bb.whole {
                out.buffers_identical += 1;
                if out.buffers.len() < p.max_listed {
                    out.buffers.push(BufferMatch {
                        tensor_a: ba.t.name.clone(),
                        tensor_b: bb.t.name.clone(),
                        bytes: ba.t.bytes(),
                    });
                }
            }
        }
        self.casts(subjects, data, (i, j), &mut out, &mut agreement)?;
        out.element_agreement = self.element_agreement(agreement);
        out.fingerprint = self.fingerprint(subjects, data, (i, j))?;
        Ok(out)
    }

    /// Sums per-tensor agreements and picks out the tensors that agree beyond chance.
    fn element_agreement(&self, tensors: Vec<(String, String, Coincidence)>) -> ElementAgreement {
        let p = &self.params;
        let mut total = Coincidence::default();
        let mut out = ElementAgreement::default();
        for (tensor_a, tensor_b, c) in tensors {
            if c.elements == 0 {
                continue;
            }
            out.tensors_compared += 1;
            total.add(&c);
            if out.max_tensor.is_empty() || c.z() > out.max_tensor_z {
                out.max_tensor_z = c.z();
                out.max_tensor = tensor_a.clone();
            }
            if c.excess() >= p.agreement_min_excess && c.z() >= p.agreement_min_z {
                out.tensors_agreeing += 1;
                if out.agreeing.len() < p.max_listed {
                    out.agreeing.push(TensorAgreement {
                        tensor_a,
                        tensor_b,
                        elements: c.elements,
                        identical: c.identical,
                        expected: round9(c.expected),
                        excess: round9(c.excess()),
                        z: round9(c.z()),
                    });
                }
            }
        }
        let share = |x: f64| {
            if total.elements == 0 {
                0.0
            } else {
                round9(x / total.elements as f64)
            }
        };
        out.elements_compared = total.elements;
        out.elements_identical = total.identical;
        out.expected_identical = round9(total.expected);
        out.identical_fraction = share(total.identical as f64);
        out.expected_fraction = share(total.expected);
        out.excess_fraction = round9(total.excess());
        out.z = round9(total.z());
        out.max_tensor_z = round9(out.max_tensor_z);
        out
    }

    fn casts(
        &self,
        subjects: &Subjects,
        data: &Data,
        (i, j): (usize, usize),
        out: &mut PairBytes,
        agreement: &mut Vec<(String, String, Coincidence)>,
    ) -> Result<()> {
        let p = &self.params;
        let th = InfoThresholds::from(p);
        let (ma, mb) = (subjects.models[i].model, subjects.models[j].model);
        let mut budget = p.tier2_budget_bytes;
        for (ta, tb) in self.cast_pairs(subjects, i, j) {
            let (sa, sb) = (self.cast_sample(ta), self.cast_sample(tb));
            let (va, vb) = (data.get(i, &sa)?, data.get(j, &sb)?);
            let (mut informative, mut identical, mut offset) = (0u64, 0u64, 0usize);
            let mut tensor = Coincidence::default();
            for &(_, len) in &sa.windows {
                let end = offset + len as usize;
                let (wa, wb) = (
                    va.get(offset..end)
                        .context("cast window outside its sample")?,
                    vb.get(offset..end)
                        .context("cast window outside its sample")?,
                );
                offset = end;
                if classify_block(&f32_bytes(wa), 4, &th) != BlockInfo::Informative {
                    continue;
                }
                informative += 1;
                if values_equal_under_cast(wa, ta.dtype, wb, tb.dtype) {
                    identical += 1;
                }
                tensor.add(&cast_coincidence(wa, ta.dtype, wb, tb.dtype));
            }
            agreement.push((ta.name.clone(), tb.name.clone(), tensor));
            if identical == 0 {
                continue;
            }
            let status = if identical < informative {
                "partial"
            } else {
                let cost = ta.bytes() + tb.bytes();
                if cost > budget {
                    "unconfirmed"
                } else {
                    budget -= cost;
                    out.tier2_bytes += cost;
                    let chunk = p.chunk_bytes / 4;
                    if stream_values_equal(ma, ta, mb, tb, chunk)? {
                        "full_values"
                    } else {
                        "differs"
                    }
                }
            };
            if status == "full_values" {
                out.cast_identical_tensors += 1;
            }
            if out.casts.len() < p.max_listed {
                out.casts.push(CastMatch {
                    tensor_a: ta.name.clone(),
                    tensor_b: tb.name.clone(),
                    dtype_a: ta.dtype.to_string(),
                    dtype_b: tb.dtype.to_string(),
                    windows_informative: informative,
                    windows_identical: identical,
                    status: status.into(),
                });
            }
        }
        Ok(())
    }

    fn fingerprint(
        &self,
        subjects: &Subjects,
        data: &Data,
        (i, j): (usize, usize),
    ) -> Result<Fingerprint> {
        let mut f = Fingerprint::default();
        let mut ps = Vec::new();
        for (_, ta, tb) in self.norm_pairs(subjects, i, j) {
            let a = data.get(i, &Sample::whole(&ta.name, ta.numel))?;
            let b = data.get(j, &Sample::whole(&tb.name, tb.numel))?;
            let coords = outlier_coordinates(a, self.params.top_k);
            if coords.is_empty() {
                continue;
            }
            f.vectors += 1;
            let mut any = false;
            for c in coords {
                f.coordinates += 1;
                ps.push(match_probability(a[c], b));
                if a[c] == b[c] {
                    f.matches += 1;
                    any = true;
                }
            }
            f.vectors_with_match += u64::from(any);
        }
        f.expected = round9(ps.iter().sum());
        f.p_value = round9(crate::stats::poisson_binomial_tail(&ps, f.matches as usize));
        Ok(f)
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

/// This experiment's tables, from its result as results.json records it.
pub fn tables(result: &serde_json::Value) -> Result<Vec<Table>> {
    let r: Result3 = super::readback::from_value(result)?;
    Ok(build_tables(&r.pairs))
}

fn build_tables(pairs: &[PairBytes]) -> Vec<Table> {
    let mut summary = Table::new(
        "e3_bytes",
        &[
            "pair",
            "primary",
            "blocks_a",
            "blocks_informative",
            "blocks_excluded",
            "excluded_by_reason",
            "blocks_found_in_b",
            "same_role_tensors",
            "same_role_blocks_compared",
            "same_role_blocks_identical",
            "identical_tensors",
            "identical_bytes",
            "identical_renamed_or_moved",
            "partial_tensors",
            "unconfirmed_tensors",
            "cast_identical_tensors",
            "agreement_tensors",
            "agreement_elements",
            "agreement_identical",
            "agreement_expected",
            "agreement_excess_fraction",
            "agreement_z",
            "agreement_tensors_agreeing",
            "agreement_max_tensor_z",
            "agreement_max_tensor",
            "permuted_same_values",
            "permuted_tensors",
            "fingerprint_coordinates",
            "fingerprint_matches",
            "fingerprint_expected",
            "fingerprint_p_value",
            "tier2_bytes",
        ],
    );
    let mut matches = Table::new(
        "e3_tensors",
        &[
            "pair",
            "tensor_a",
            "tensor_b",
            "relation",
            "bytes",
            "blocks_matched",
            "blocks_informative",
            "status",
        ],
    );
    let mut casts = Table::new(
        "e3_casts",
        &[
            "pair",
            "tensor_a",
            "tensor_b",
            "dtype_a",
            "dtype_b",
            "windows_informative",
            "windows_identical",
            "status",
        ],
    );
    let mut agreeing = Table::new(
        "e3_agreement",
        &[
            "pair",
            "tensor_a",
            "tensor_b",
            "elements",
            "identical",
            "expected",
            "excess",
            "z",
        ],
    );
    let mut reordered = Table::new(
        "e3_permuted",
        &[
            "pair",
            "tensor_a",
            "tensor_b",
            "elements",
            "distinct_values",
            "shares_with",
            "coordinates_mapped",
        ],
    );
    for p in pairs {
        let s = &p.same_role;
        let f = &p.fingerprint;
        let e = &p.element_agreement;
        summary.rows.push(vec![
            p.pair.clone(),
            p.primary.to_string(),
            p.blocks_a.to_string(),
            p.blocks_informative.to_string(),
            p.blocks_excluded.to_string(),
            p.excluded_by_reason
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(" "),
            p.blocks_found_in_b.to_string(),
            s.tensors_compared.to_string(),
            s.blocks_compared.to_string(),
            s.blocks_identical.to_string(),
            p.identical_tensors.to_string(),
            p.identical_bytes.to_string(),
            p.identical_renamed_or_moved.to_string(),
            p.partial_tensors.to_string(),
            p.unconfirmed_tensors.to_string(),
            p.cast_identical_tensors.to_string(),
            e.tensors_compared.to_string(),
            e.elements_compared.to_string(),
            e.elements_identical.to_string(),
            fmt(e.expected_identical),
            fmt(e.excess_fraction),
            fmt(e.z),
            e.tensors_agreeing.to_string(),
            fmt(e.max_tensor_z),
            e.max_tensor.clone(),
            p.permuted.same_values.to_string(),
            p.permuted.tensors_permuted.to_string(),
            f.coordinates.to_string(),
            f.matches.to_string(),
            fmt(f.expected),
            // p-values of copies are far below what six decimals show.
            format!("{:.3e}", f.p_value),
            p.tier2_bytes.to_string(),
        ]);
        for m in &p.matches {
            matches.rows.push(vec![
                p.pair.clone(),
                m.tensor_a.clone(),
                m.tensor_b.clone(),
                m.relation.clone(),
                m.bytes.to_string(),
                m.blocks_matched.to_string(),
                m.blocks_informative.to_string(),
                m.status.clone(),
            ]);
        }
        for t in &e.agreeing {
            agreeing.rows.push(vec![
                p.pair.clone(),
                t.tensor_a.clone(),
                t.tensor_b.clone(),
                t.elements.to_string(),
                t.identical.to_string(),
                fmt(t.expected),
                fmt(t.excess),
                fmt(t.z),
            ]);
        }
        for t in &p.permuted.tensors {
            reordered.rows.push(vec![
                p.pair.clone(),
                t.tensor_a.clone(),
                t.tensor_b.clone(),
                t.elements.to_string(),
                t.distinct_values.to_string(),
                t.shares_with.clone(),
                t.coordinates_mapped.to_string(),
            ]);
        }
        for c in &p.casts {
            casts.rows.push(vec![
                p.pair.clone(),
                c.tensor_a.clone(),
                c.tensor_b.clone(),
                c.dtype_a.clone(),
                c.dtype_b.clone(),
                c.windows_informative.to_string(),
                c.windows_identical.to_string(),
                c.status.clone(),
            ]);
        }
    }
    vec![summary, matches, casts, agreeing, reordered]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn th() -> InfoThresholds {
        InfoThresholds::from(&Params::default())
    }

    fn bf16_bytes(v: impl Iterator<Item = f32>) -> Vec<u8> {
        v.flat_map(|x| half::bf16::from_f32(x).to_le_bytes())
            .collect()
    }

    #[test]
    fn a_downcast_matches_its_source_and_a_fine_tune_does_not() {
        let f32s = [0.1f32, -1.2345678, 3.0e-5, 65504.0, -0.0];
        let bf16s: Vec<f32> = f32s
            .iter()
            .map(|x| half::bf16::from_f32(*x).to_f32())
            .collect();
        assert!(values_equal_under_cast(
            &f32s,
            Dtype::F32,
            &bf16s,
            Dtype::Bf16
        ));
        assert!(values_equal_under_cast(
            &bf16s,
            Dtype::Bf16,
            &f32s,
            Dtype::F32
        ));
        // One value nudged by one BF16 step: not the same tensor.
        let mut tuned = bf16s.clone();
        tuned[1] = half::bf16::from_bits(half::bf16::from_f32(tuned[1]).to_bits() + 1).to_f32();
        assert!(!values_equal_under_cast(
            &f32s,
            Dtype::F32,
            &tuned,
            Dtype::Bf16
        ));
        // An upcast (BF16 → F32) is exact both ways.
        assert!(values_equal_under_cast(
            &bf16s,
            Dtype::Bf16,
            &bf16s,
            Dtype::F32
        ));
        assert!(!values_equal_under_cast(
            &f32s[..2],
            Dtype::F32,
            &bf16s,
            Dtype::Bf16
        ));
    }

    #[test]
    fn low_information_blocks_are_recognised() {
        let t = th();
        assert_eq!(classify_block(&[0u8; 4096], 2, &t), BlockInfo::Zero);
        let ones = bf16_bytes((0..2048).map(|_| 1.0));
        assert_eq!(classify_block(&ones, 2, &t), BlockInfo::Constant);
        let f32_ones: Vec<u8> = (0..1024).flat_map(|_| 1.0f32.to_le_bytes()).collect();
        assert_eq!(classify_block(&f32_ones, 4, &t), BlockInfo::Constant);
        let pattern = bf16_bytes((0..2048).map(|i| (i % 5) as f32 * 0.25));
        assert_eq!(classify_block(&pattern, 2, &t), BlockInfo::Periodic);
        // Mostly zeros with a few values: low entropy, not periodic.
        let mut sparse = vec![0u8; 4096];
        for k in [17usize, 900, 2049, 3001] {
            sparse[k] = (k % 251) as u8 + 1;
        }
        assert_eq!(classify_block(&sparse, 2, &t), BlockInfo::LowEntropy);
        let short = bf16_bytes([0.1f32, -0.7, 0.3].into_iter());
        assert_eq!(classify_block(&short, 2, &t), BlockInfo::Short);
        // Trained-looking values are informative.
        let mut x = 12345u64;
        let random = bf16_bytes((0..2048).map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.04
        }));
        assert_eq!(classify_block(&random, 2, &t), BlockInfo::Informative);
        assert!(byte_entropy(&random) > 4.0);
        assert_eq!(byte_entropy(&[7u8; 10]), 0.0);
        assert!((byte_entropy(&[0, 1, 2, 3]) - 2.0).abs() < 1e-12);
    }

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
        assert_eq!(element_keys(&[1, 0, 2, 0, 3], 2), vec![1, 2]);
    }

    #[test]
    fn cast_agreement_reads_both_sides_in_the_narrower_dtype() {
        let bf16: Vec<f32> = (0..512)
            .map(|i| half::bf16::from_f32(((i * 37 % 101) as f32 - 50.0) * 1e-3).to_f32())
            .collect();
        // Re-saved as F32: every value reads back identical.
        let c = cast_coincidence(&bf16, Dtype::Bf16, &bf16, Dtype::F32);
        assert_eq!(c.identical, 512);
        // An F32 fine-tune whose updates stay under half a BF16 step keeps every BF16 value…
        let small: Vec<f32> = bf16.iter().map(|x| x + x.abs() * 1e-3).collect();
        assert_eq!(
            cast_coincidence(&small, Dtype::F32, &bf16, Dtype::Bf16).identical,
            512
        );
        // …one with large updates keeps none beyond chance.
        let large: Vec<f32> = bf16.iter().map(|x| x * 1.5 + 1e-4).collect();
        let c = cast_coincidence(&bf16, Dtype::Bf16, &large, Dtype::F32);
        assert!(c.excess() < 0.01, "{c:?}");
    }

    #[test]
    fn outliers_are_the_most_extreme_coordinates() {
        let v = [0.5f32, 0.5, 3.0, 0.5, -2.0, 0.6];
        assert_eq!(outlier_coordinates(&v, 2), vec![4, 2]); // mean 0.517: |-2 - m| > |3 - m|
        assert!(outlier_coordinates(&[1.0f32; 8], 3).is_empty());
    }
}
