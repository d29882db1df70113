//! The records results.json keeps beside the experiments and the verdict: each model as it was
//! audited, and the rubric and calibration by version and hash. The pipeline writes them; the
//! report reads them back into these same types.

use serde::{Deserialize, Serialize};

/// One audited model as results.json lists it.
#[derive(Serialize, Deserialize)]
pub struct ModelEntry {
    /// `A`, `B`, `C1`, …
    pub label: String,
    /// As the user gave it.
    pub reference: String,
    /// What was read: `hf:org/name@<commit>` or `local:NAME@sha256:…`.
    pub pinned: String,
    /// How its weights are stored (`safetensors`, `gguf`, `onnx`).
    pub format: crate::model::WeightFormat,
}

/// A version and hash naming the rubric or calibration used.
#[derive(Serialize, Deserialize)]
pub struct RubricEntry {
    /// Its declared version.
    pub version: String,
    /// SHA-256 of its text, lowercase hex.
    pub sha256: String,
}
