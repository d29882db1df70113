//! The model lab: deterministic synthetic model families with known ground truth.
pub mod arch;
pub mod model;
pub mod rng;
pub mod tokenizer;
pub mod weights;
pub mod transform;
