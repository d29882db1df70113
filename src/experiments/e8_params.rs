//! E8's parameters (`[params.e8]`): the token sample, the Q/K rows read, and the margins
//! by which a fitted hidden alignment must win. Shared by [`super::e8_cka`], which runs the
//! pairs, and [`super::e8_align`], which chooses the alignment.

use serde::{Deserialize, Serialize};

use crate::awm::AwmOptions;
use crate::hidden_alignment::DEFAULT_LAP_CAP;

/// E8's parameters (`[params.e8]`); every field has a default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Seed of the token sample and the Q/K row blocks read.
    pub seed: u64,
    /// Shared tokens whose embedding rows fit the hidden-dimension alignment.
    pub vocab_rows: usize,
    /// Fraction of each Q/K projection's rows read (seeded blocks); 1 = all.
    pub row_fraction: f64,
    /// Rows per block when `row_fraction` < 1.
    pub row_block: u64,
    /// Largest hidden width aligned with the exact Hungarian assignment (greedy above).
    pub lap_cap: usize,
    /// See [`AwmOptions`]: hidden dims of the layer-assignment matrix (0 = all).
    pub assignment_dims: usize,
    /// Also pair layers by assignment at equal depth (`score_assigned`).
    pub always_assign: bool,
    /// Consider an orthogonal Procrustes alignment beside the permutation.
    pub procrustes: bool,
    /// Procrustes decides only when its held-out row cosine beats the permutation's (or the
    /// identity's, when that was kept) by this much.
    pub procrustes_margin: f64,
    /// The LAP replaces the identity (equal widths) only when its held-out row cosine beats
    /// the identity's by this much: the identity fits nothing, the LAP also fits noise.
    pub identity_margin: f64,
    /// Widest hidden size Procrustes is tried at: its d×d decomposition is O(d³) and takes
    /// minutes at 4096 with nalgebra, so wider pairs use the permutation unless raised.
    pub procrustes_max_width: usize,
    /// Most bytes of Q/K rows read per model: above it the row fraction shrinks to fit (the
    /// fraction used is reported), so peak memory and transfer stay bounded at 100B scale.
    /// Rows are held decoded as f32, so memory is about twice this per model (BF16 on disk):
    /// 128 MiB keeps a two-model GLM-4.5-Air-class audit's E8 near 1.5 GiB and still reads a
    /// few hundred rows of every Q and K (2.5 % of GLM-4.5-Air's).
    pub max_qk_bytes: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            seed: 0,
            vocab_rows: 8192,
            row_fraction: 1.0,
            row_block: 64,
            lap_cap: DEFAULT_LAP_CAP,
            assignment_dims: AwmOptions::default().assignment_dims,
            always_assign: true,
            procrustes: true,
            procrustes_margin: 0.05,
            identity_margin: 0.05,
            procrustes_max_width: 1024,
            max_qk_bytes: 128 << 20,
        }
    }
}
