//! E3's parameters and its typed result, as results.json records them (the tables and the
//! report read these types; `e3_bytes` computes them).

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::e3_permuted::Permuted;

/// E3's parameters (`[params.e3]`); every field has a default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Seed of the grid cells and expert subsets read.
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
    /// Chunk size in bytes when streaming a tensor for its full hash.
    pub chunk_bytes: u64,
    /// Dtype-cast check: windows of decoded values per tensor.
    pub cast_window_elems: u64,
    /// Cast windows per tensor.
    pub cast_windows: u64,
    /// Outlier fingerprint: coordinates per norm vector.
    pub top_k: usize,
    /// Low-information thresholds.
    pub min_block_bytes: usize,
    /// Longest repeating pattern in bytes that makes a block periodic (low information).
    pub max_period_bytes: usize,
    /// Least byte entropy in bits for a block to be informative.
    pub min_entropy_bits: f64,
    /// Longest list of matched tensors kept per pair (counts are always complete).
    pub max_listed: usize,
    /// Element agreement: a tensor agrees when its identical elements exceed chance by this
    /// share of the elements compared and by `agreement_min_z` standard deviations.
    pub agreement_min_excess: f64,
    /// Least z of a tensor's excess agreement over its null.
    pub agreement_min_z: f64,
    /// Permuted copies: two tensors share a permutation when B holds exactly A's pairs of
    /// values at one coordinate in another order, pinning down at least
    /// `permutation_min_coordinates` coordinates (pairs that occur once); each tensor is tried
    /// against `permutation_partners` others of its length.
    pub permutation_min_coordinates: u64,
    /// Other tensors of the same length each tensor is tried against.
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

/// Same-role tensors of A and B compared block by block at the same grid cells.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SameRole {
    /// Same-role tensors with equal dtype and shape, and their blocks at identical cells.
    pub tensors_compared: u64,
    /// Informative blocks compared.
    pub blocks_compared: u64,
    /// Of those, blocks with identical bytes.
    pub blocks_identical: u64,
    /// Blocks left out as low-information (zero, constant, periodic, low-entropy, short).
    pub blocks_excluded: u64,
    /// Same-role tensors of equal shape and different dtype (see `dtype_cast`).
    pub dtype_differs: u64,
    /// Same-role tensors of different shape (not compared).
    pub shape_differs: u64,
}

/// A tensor of A and a tensor of B sharing identical informative blocks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TensorMatch {
    /// The tensor's name in A.
    pub tensor_a: String,
    /// The tensor's name in B.
    pub tensor_b: String,
    /// `same_name`, `same_role` (renamed) or `moved` (another role, e.g. a permuted expert).
    pub relation: String,
    /// Stored size of A's tensor in bytes.
    pub bytes: u64,
    /// Informative blocks of A's tensor found in B's.
    pub blocks_matched: u64,
    /// Informative blocks of A's tensor.
    pub blocks_informative: u64,
    /// `full_hash` (whole tensors identical), `partial` (some blocks identical, the whole
    /// differs) or `unconfirmed` (tier-2 budget exhausted).
    pub status: String,
}

/// A buffer of A byte-identical to one of B: reported, never evidence.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BufferMatch {
    /// The buffer's name in A.
    pub tensor_a: String,
    /// The buffer's name in B.
    pub tensor_b: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// A same-role tensor pair stored in different dtypes, compared as values cast to the narrower one.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CastMatch {
    /// The tensor's name in A.
    pub tensor_a: String,
    /// The tensor's name in B.
    pub tensor_b: String,
    /// A's dtype.
    pub dtype_a: String,
    /// B's dtype.
    pub dtype_b: String,
    /// Informative cast windows compared.
    pub windows_informative: u64,
    /// Of those, windows whose cast values are all identical.
    pub windows_identical: u64,
    /// `full_values` (every element equal after decoding), `partial`, `differs` or `unconfirmed`.
    pub status: String,
}

/// Element agreement of one tensor pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TensorAgreement {
    /// The tensor's name in A.
    pub tensor_a: String,
    /// The tensor's name in B.
    pub tensor_b: String,
    /// Elements compared.
    pub elements: u64,
    /// Of those, identical elements (bits, or cast values).
    pub identical: u64,
    /// Identical elements expected by chance (permutation null).
    pub expected: f64,
    /// (identical − expected) / elements.
    pub excess: f64,
    /// The excess in standard deviations of the null.
    pub z: f64,
}

/// Element agreement of same-role tensors of equal shape: stored bits inside the sampled
/// informative blocks when the dtypes are equal, values cast to the narrower dtype inside the
/// informative cast windows when they differ.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ElementAgreement {
    /// Same-role tensor pairs compared.
    pub tensors_compared: u64,
    /// Elements compared over all of them.
    pub elements_compared: u64,
    /// Of those, identical elements.
    pub elements_identical: u64,
    /// Identical elements expected by chance (permutation null), and as a share.
    pub expected_identical: f64,
    /// Share of compared elements that are identical, 0–1.
    pub identical_fraction: f64,
    /// Share expected by chance, 0–1.
    pub expected_fraction: f64,
    /// (identical − expected) / compared, and in standard deviations of the null.
    pub excess_fraction: f64,
    /// The excess in standard deviations of the null.
    pub z: f64,
    /// The tensor agreeing most, in standard deviations of its own null (unrelated models: the
    /// largest of `tensors_compared` draws near N(0, 1), about 2–4).
    pub max_tensor_z: f64,
    /// Name in A of the tensor with `max_tensor_z` (empty when none).
    pub max_tensor: String,
    /// Tensors whose own agreement clears both `agreement_min_excess` and `agreement_min_z`.
    pub tensors_agreeing: u64,
    /// The agreeing tensors (at most `max_listed`, in role order).
    pub agreeing: Vec<TensorAgreement>,
}

/// Outlier fingerprint of the norm vectors: do B's norms hold A's most extreme values at the same coordinates?
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Same-role norm vector pairs compared.
    pub vectors: u64,
    /// Outlier coordinates checked (A's `top_k` largest |value| per vector).
    pub coordinates: u64,
    /// Of those, coordinates where B holds exactly A's value.
    pub matches: u64,
    /// Expected matches by chance (sum of per-coordinate probabilities) and P(≥ matches).
    pub expected: f64,
    /// P(at least `matches` by chance) (Poisson-binomial tail).
    pub p_value: f64,
    /// Norm vectors with at least one matching coordinate.
    pub vectors_with_match: u64,
}

/// E3's findings for one pair of models.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairBytes {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// Blocks of A, and how many of the informative ones B holds at the same cell of a tensor of
    /// the same dtype and shape (any name).
    pub blocks_a: u64,
    /// Of A's blocks, the informative ones.
    pub blocks_informative: u64,
    /// Of A's blocks, those left out as low-information.
    pub blocks_excluded: u64,
    /// The left-out blocks by reason (`zero`, `constant`, `periodic`, `low_entropy`, `short`).
    pub excluded_by_reason: BTreeMap<String, u64>,
    /// Informative blocks of A found in B (same dtype, shape and cell, any tensor).
    pub blocks_found_in_b: u64,
    /// The same-role comparison at identical cells.
    pub same_role: SameRole,
    /// Tensor pairs confirmed identical by a full hash.
    pub identical_tensors: u64,
    /// Bytes of those identical tensors (A's size).
    pub identical_bytes: u64,
    /// Of the identical tensors, those under another name or role in B.
    pub identical_renamed_or_moved: u64,
    /// Tensor pairs sharing blocks whose full hashes differ.
    pub partial_tensors: u64,
    /// Tensor pairs sharing blocks left unhashed (tier-2 budget spent).
    pub unconfirmed_tensors: u64,
    /// The matched tensor pairs (at most `max_listed`).
    pub matches: Vec<TensorMatch>,
    /// Buffers ([`super::e3_bytes::is_buffer`]) read whole and byte-identical in A and B, apart from every
    /// count above: they match across unrelated models.
    pub buffers_identical: u64,
    /// The identical buffers (at most `max_listed`).
    pub buffers: Vec<BufferMatch>,
    /// Same-role tensors of different dtypes whose values are identical after the cast.
    pub cast_identical_tensors: u64,
    /// The cast comparisons (at most `max_listed`).
    pub casts: Vec<CastMatch>,
    /// Element agreement of same-role tensors of equal shape.
    pub element_agreement: ElementAgreement,
    /// Tensors of B that are permuted copies of A's.
    pub permuted: Permuted,
    /// The outlier fingerprint of the norm vectors.
    pub fingerprint: Fingerprint,
    /// Bytes streamed for tier 2 (both models).
    pub tier2_bytes: u64,
}

/// What E3 reads of one model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelBytes {
    /// The model's label.
    pub model: String,
    /// Bytes E3 plans to read from this model (tier 1, casts, norms), before tier 2.
    pub planned_bytes: u64,
    /// Tensors read and hashed whole (at most `small_tensor_bytes`).
    pub tensors_whole: u64,
    /// Tensors read at sampled grid cells.
    pub tensors_sampled: u64,
}

/// E3's result: parameters, per-model reads and per-pair findings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Result3 {
    /// The parameters it ran with.
    pub params: Params,
    /// What it read of each model, A, B, then the controls.
    pub models: Vec<ModelBytes>,
    /// Each pair's findings, A~B first.
    pub pairs: Vec<PairBytes>,
}
