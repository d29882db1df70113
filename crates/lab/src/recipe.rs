//! The recipe of a generated model: its architecture, seeds, norm mean and shard count.
//! Its own file because a model carries the recipe it came from ([`crate::model::Model::recipe`])
//! and the generator ([`crate::weights`]) builds models from it: here, below both, the model
//! file need not depend on the generator.

use serde::{Deserialize, Serialize};

use crate::arch::{ArchConfig, ArchKind};

/// Everything that determines a generated model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// Architecture and sizes.
    pub arch: ArchConfig,
    /// Weight seed: the only thing that differs between independent models of one recipe.
    pub seed: u64,
    /// Tokenizer seed (same recipe → same tokenizer by default).
    pub tokenizer_seed: u64,
    /// Mean of the norm gains (before the per-model jitter).
    pub norm_mean: f64,
    /// Shards to write.
    pub shards: usize,
}

impl Recipe {
    /// Default recipe for an architecture config and seed.
    pub fn new(arch: ArchConfig, seed: u64) -> Self {
        let tokenizer_seed = 1000 + arch.kind as u64;
        let norm_mean = match arch.kind {
            ArchKind::Glm4Moe => 0.45,
            ArchKind::SolarOpen => 0.5,
            ArchKind::Phimoe => 0.6,
            ArchKind::Llama => 0.4,
            ArchKind::Bert => 0.85,
        };
        Recipe {
            arch,
            seed,
            tokenizer_seed,
            norm_mean,
            shards: 2,
        }
    }
}
