//! Writes a bundle: the audit's files, `manifest.json`, `SHA256SUMS` over all of them, and
//! `SHA256SUMS.minisig`, into a reproducible zip.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::archive_write::{self, ZipTime};
use super::manifest::{self, FileRecord, Input, Manifest, RubricRef, Tool};
use super::minisign::SecretKey;
use super::{render_hook, sums};

/// Everything a bundle holds, as bytes, plus what the manifest records.
#[derive(Clone, Debug, Default)]
pub struct BundleInputs {
    /// Names the bundle in the manifest and the signature's trusted comment.
    pub name: String,
    /// `results.json`, as `compare` writes it.
    pub results_json: Vec<u8>,
    /// Rendered reports: `report.md`, `report.html`, `plots/*`.
    pub rendered: BTreeMap<String, Vec<u8>>,
    /// Tables: `data/*.csv`.
    pub data: BTreeMap<String, Vec<u8>>,
    /// `revisions.json`: each input's pin.
    pub revisions_json: Vec<u8>,
    /// `rubric.toml`, the rubric used, verbatim.
    pub rubric_toml: String,
    /// `calibration.json`, the calibration used, verbatim.
    pub calibration_json: String,
    /// `audit.toml`, the effective configuration.
    pub audit_toml: String,
    /// The audited models as the manifest records them.
    pub inputs: Vec<Input>,
    /// Experiment ids, in the order run.
    pub experiments: Vec<String>,
    /// Everything else that determines the result (seeds, sample sizes, …).
    pub parameters: BTreeMap<String, Value>,
}

/// File name of the results in the bundle.
pub const RESULTS: &str = "results.json";
/// File name of the inputs' pins in the bundle.
pub const REVISIONS: &str = "revisions.json";
/// File name of the rubric in the bundle.
pub const RUBRIC: &str = "rubric.toml";
/// File name of the calibration in the bundle.
pub const CALIBRATION: &str = "calibration.json";
/// File name of the effective configuration in the bundle.
pub const AUDIT_TOML: &str = "audit.toml";

/// The signed one-line comment: bundle name, what is signed, the verdict with its
/// false-positive bound and the calibration it rests on, the tool. No timestamp, so the same
/// inputs and key give the same signature.
pub fn trusted_comment(name: &str, summary: &Summary) -> String {
    format!(
        "bundle:{name}\tfile:{}\tverdict:{}\tfpr:{}\tcalibration:{}\ttool:weight-audit {}",
        manifest::SUMS,
        summary.verdict,
        summary.false_positive_bound,
        &summary.calibration.sha256[..16.min(summary.calibration.sha256.len())],
        env!("CARGO_PKG_VERSION")
    )
}

/// What results.json says of its verdict and of the rubric and calibration behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The verdict, as results.json states it.
    pub verdict: String,
    /// The verdict's false-positive bound as written in results.json.
    pub false_positive_bound: String,
    /// Version and hash of the rubric results.json names.
    pub rubric: RubricRef,
    /// Version and hash of the calibration results.json names.
    pub calibration: RubricRef,
}

/// A field of a trusted comment written by [`trusted_comment`].
pub fn trusted_field<'a>(comment: &'a str, key: &str) -> Option<&'a str> {
    comment
        .split('\t')
        .find_map(|f| f.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
}

/// The verdict, its bound, and the rubric and calibration references recorded in
/// results.json.
pub fn results_summary(results: &Value) -> Result<Summary> {
    let verdict = results["decision"]["verdict"]
        .as_str()
        .context("results.json has no decision.verdict")?
        .to_string();
    let reference = |key: &str| -> Result<RubricRef> {
        Ok(RubricRef {
            version: results[key]["version"]
                .as_str()
                .with_context(|| format!("results.json has no {key}.version"))?
                .to_string(),
            sha256: results[key]["sha256"]
                .as_str()
                .with_context(|| format!("results.json has no {key}.sha256"))?
                .to_string(),
        })
    };
    let bound = &results["decision"]["error"]["false_positive_bound"];
    ensure!(
        bound.is_number(),
        "results.json has no decision.error.false_positive_bound"
    );
    Ok(Summary {
        verdict,
        false_positive_bound: bound.to_string(),
        rubric: reference("rubric")?,
        calibration: reference("calibration")?,
    })
}

/// Every file of the bundle except `SHA256SUMS` and its signature.
pub fn content_files(inputs: &BundleInputs) -> Result<BTreeMap<String, Vec<u8>>> {
    manifest::check_bundle_name(&inputs.name)?;
    let results: Value =
        serde_json::from_slice(&inputs.results_json).context("results.json is not JSON")?;
    let summary = results_summary(&results)?;
    ensure!(
        crate::rubric::rubric_hash(&inputs.rubric_toml) == summary.rubric.sha256,
        "rubric.toml does not hash to the rubric sha256 recorded in results.json"
    );
    ensure!(
        crate::calibration::calibration_hash(&inputs.calibration_json)
            == summary.calibration.sha256,
        "calibration.json does not hash to the calibration sha256 recorded in results.json"
    );
    let mut files = BTreeMap::new();
    files.insert(RESULTS.to_string(), inputs.results_json.clone());
    files.insert(REVISIONS.to_string(), inputs.revisions_json.clone());
    files.insert(RUBRIC.to_string(), inputs.rubric_toml.as_bytes().to_vec());
    files.insert(
        CALIBRATION.to_string(),
        inputs.calibration_json.as_bytes().to_vec(),
    );
    files.insert(
        AUDIT_TOML.to_string(),
        inputs.audit_toml.as_bytes().to_vec(),
    );
    for (name, bytes) in &inputs.rendered {
        ensure!(
            render_hook::is_rendered(name),
            "rendered file {name:?}: reports are report.* or plots/*"
        );
        files.insert(name.clone(), bytes.clone());
    }
    for (name, bytes) in &inputs.data {
        ensure!(
            name.starts_with("data/") && name.ends_with(".csv"),
            "table {name:?}: tables are data/*.csv"
        );
        if files.insert(name.clone(), bytes.clone()).is_some() {
            bail!("{name} given twice");
        }
    }
    let records: Vec<FileRecord> = Manifest::records(&files);
    let m = Manifest {
        format: manifest::FORMAT.into(),
        name: inputs.name.clone(),
        tool: Tool {
            name: "weight-audit".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        inputs: inputs.inputs.clone(),
        experiments: inputs.experiments.clone(),
        parameters: inputs.parameters.clone(),
        rubric: summary.rubric,
        calibration: summary.calibration,
        verdict: summary.verdict,
        files: records,
    };
    m.validate()
        .context("the manifest being written is invalid")?;
    files.insert(manifest::MANIFEST.to_string(), m.to_bytes()?);
    Ok(files)
}

/// The bundle's zip bytes, signed with `key` when given (else unsigned: `verify` then
/// fails unless told `--allow-unsigned`). Timestamps come from `SOURCE_DATE_EPOCH` or are
/// 1980-01-01.
pub fn write_bundle(inputs: &BundleInputs, key: Option<&SecretKey>) -> Result<Vec<u8>> {
    write_bundle_at(inputs, key, ZipTime::from_env()?)
}

/// `write_bundle` with an explicit zip timestamp.
pub fn write_bundle_at(
    inputs: &BundleInputs,
    key: Option<&SecretKey>,
    time: ZipTime,
) -> Result<Vec<u8>> {
    let mut files = content_files(inputs)?;
    let sums = sums::write(&files)?;
    if let Some(key) = key {
        let results: Value = serde_json::from_slice(&inputs.results_json)?;
        let summary = results_summary(&results)?;
        let sig = key.sign(
            sums.as_bytes(),
            &trusted_comment(&inputs.name, &summary),
            &format!("signature from weight-audit key {}", key.id),
        )?;
        files.insert(
            manifest::SIGNATURE.to_string(),
            sig.to_file_text().into_bytes(),
        );
    }
    files.insert(manifest::SUMS.to_string(), sums.into_bytes());
    archive_write::write(&files, time)
}
