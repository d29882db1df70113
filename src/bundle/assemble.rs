//! Turns a finished audit (results, tables, rubric, pins) into [`BundleInputs`]: the one
//! path `audit demo` and `audit run` take to a bundle.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::Value;

use super::manifest::Input;
use super::render_hook;
use super::write::BundleInputs;
use crate::experiments::Output;
use crate::pipeline::{Results, RubricSource};
use crate::source::Pin;

/// A finished audit, as `compare_models` returns it, with what else the bundle records.
pub struct AuditRecord<'a> {
    /// The bundle's name (manifest and trusted comment).
    pub name: String,
    /// The pipeline's results (results.json).
    pub results: &'a Results,
    /// Each experiment's output (tables and figures).
    pub outputs: &'a [Output],
    /// The rubric the verdict was decided by, bundled as `rubric.toml`.
    pub rubric: &'a RubricSource,
    /// The run's configuration file, verbatim (empty when defaults were used).
    pub audit_toml: String,
    /// Each input's pin (E0a), A, B, then the controls.
    pub revisions: &'a [Pin],
    /// Ids of the experiments that ran, in order.
    pub experiments: &'a [String],
    /// Everything else that determines the result (seeds, sample sizes, …).
    pub parameters: BTreeMap<String, Value>,
}

/// `results.json` exactly as `compare` writes it: pretty JSON and a final newline.
pub fn results_json(results: &Results) -> Result<Vec<u8>> {
    let mut json = serde_json::to_string_pretty(results)?;
    json.push('\n');
    Ok(json.into_bytes())
}

/// The commit of a pinned Hub reference (`hf:org/name@<40 hex>`).
fn commit_of(pinned: &str) -> Option<String> {
    let (_, rev) = pinned.strip_prefix("hf:")?.rsplit_once('@')?;
    (rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())).then(|| rev.to_lowercase())
}

/// Everything the bundle holds; reports are rendered here, through the render hook, so the
/// bundle and `verify` always use the same renderer.
pub fn assemble_audit(record: &AuditRecord) -> Result<BundleInputs> {
    let results_json = results_json(record.results)?;
    let results_value: Value = serde_json::from_slice(&results_json)?;
    let rendered = render_hook::render(&results_value)?;
    let mut data = BTreeMap::new();
    for o in record.outputs {
        for t in &o.tables {
            data.insert(format!("data/{}.csv", t.name), t.to_csv()?);
        }
    }
    let mut revisions = serde_json::to_string_pretty(&crate::source::Revisions {
        models: record.revisions.to_vec(),
    })?;
    revisions.push('\n');
    let inputs = record
        .results
        .models
        .iter()
        .map(|m| Input {
            label: m.label.clone(),
            reference: m.reference.clone(),
            pinned: m.pinned.clone(),
            commit: commit_of(&m.pinned),
        })
        .collect();
    Ok(BundleInputs {
        name: record.name.clone(),
        results_json,
        rendered,
        data,
        revisions_json: revisions.into_bytes(),
        rubric_toml: record.rubric.text.clone(),
        calibration_json: record.rubric.calibration_text.clone(),
        audit_toml: record.audit_toml.clone(),
        inputs,
        experiments: record.experiments.to_vec(),
        parameters: record.parameters.clone(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn commits_come_from_pinned_hub_references() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            super::commit_of(&format!("hf:org/name@{sha}")).as_deref(),
            Some(sha)
        );
        assert_eq!(super::commit_of("hf:org/name@main"), None);
        assert_eq!(super::commit_of("/models/a"), None);
    }
}
