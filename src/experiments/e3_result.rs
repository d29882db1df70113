//! E3's parameters and its typed result, as results.json records them (the tables and the
//! report read these types; `e3_bytes` computes them).

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::e3_permuted::Permuted;

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
    /// Buffers ([`super::e3_bytes::is_buffer`]) read whole and byte-identical in A and B, apart from every
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
