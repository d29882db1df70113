//! `manifest.json`: what a bundle is. The tool and version that wrote it, the pinned
//! inputs, the experiments and parameters (seeds included), the rubric's and the
//! calibration's hashes, the verdict,
//! and every other file with its size and sha256 (`SHA256SUMS` and its signature excepted,
//! as they are written after it).

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use super::sums::sha256_hex;

/// The schema this code writes and reads.
pub const FORMAT: &str = "weight-audit-bundle/1";
/// The manifest's file name in the bundle.
pub const MANIFEST: &str = "manifest.json";
/// The checksum file's name (coreutils `sha256sum` format).
pub const SUMS: &str = "SHA256SUMS";
/// The minisign signature of `SHA256SUMS`.
pub const SIGNATURE: &str = "SHA256SUMS.minisig";

/// The program that wrote the bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// Always `weight-audit`.
    pub name: String,
    /// The crate version that wrote the bundle.
    pub version: String,
}

/// One audited model, pinned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// `A`, `B`, `C1`, …
    pub label: String,
    /// As the user gave it.
    pub reference: String,
    /// What was read: `hf:org/name@<commit>` or a local folder.
    pub pinned: String,
    /// The Hub commit read, for Hub inputs (absent for local folders).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub commit: Option<String>,
}

/// A version and hash naming the rubric or calibration a verdict was decided with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RubricRef {
    /// Its declared version.
    pub version: String,
    /// SHA-256 of its canonical text, lowercase hex.
    pub sha256: String,
}

/// One file of the bundle with its size and hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// Path inside the bundle.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

/// The content of `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `FORMAT`.
    pub format: String,
    /// The bundle's name (also in the signature's trusted comment).
    pub name: String,
    /// The program and version that wrote the bundle.
    pub tool: Tool,
    /// The audited models, A, B, then the controls.
    pub inputs: Vec<Input>,
    /// Experiment ids, in the order run.
    pub experiments: Vec<String>,
    /// Everything else that determines the result (sample sizes, seeds, …).
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// The rubric the verdict was decided by.
    pub rubric: RubricRef,
    /// The calibration the rubric's thresholds came from.
    pub calibration: RubricRef,
    /// The verdict, one of `VERDICTS`.
    pub verdict: String,
    /// Every other file of the bundle, sorted by name.
    pub files: Vec<FileRecord>,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A bundle name: one printable line without tabs (it goes into the trusted comment).
pub fn check_bundle_name(name: &str) -> Result<()> {
    ensure!(
        !name.is_empty() && name.len() <= 200 && !name.chars().any(char::is_control),
        "bundle name {name:?}: one printable line of at most 200 bytes, no tabs"
    );
    Ok(())
}

/// The verdicts a manifest may record, strongest first.
pub const VERDICTS: [&str; 4] = [
    "DERIVED",
    "LIKELY DERIVED",
    "INCONCLUSIVE",
    "NOT SUPPORTED BY WEIGHTS",
];

impl Manifest {
    /// The file records for `files` (name → content), sorted.
    pub fn records<'a, B: AsRef<[u8]> + 'a>(
        files: impl IntoIterator<Item = (&'a String, &'a B)>,
    ) -> Vec<FileRecord> {
        files
            .into_iter()
            .map(|(name, bytes)| (name, bytes.as_ref()))
            .map(|(name, bytes)| FileRecord {
                name: name.clone(),
                size: bytes.len() as u64,
                sha256: sha256_hex(bytes),
            })
            .collect()
    }

    /// Canonical bytes: pretty JSON, keys in struct order and maps sorted, final newline.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut s = serde_json::to_string_pretty(self)?;
        s.push('\n');
        Ok(s.into_bytes())
    }

    /// Parses and validates the schema.
    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes)
            .context("manifest.json does not match the bundle schema")?;
        m.validate()?;
        Ok(m)
    }

    /// Checks the format, names, verdict and hashes; an error names the first problem.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.format == FORMAT,
            "manifest.json: format {:?}, expected {FORMAT:?}",
            self.format
        );
        check_bundle_name(&self.name)?;
        ensure!(
            self.tool.name == "weight-audit",
            "manifest.json: written by {:?}, not weight-audit",
            self.tool.name
        );
        ensure!(
            self.inputs.len() >= 2,
            "manifest.json: an audit has at least two inputs, found {}",
            self.inputs.len()
        );
        for (i, input) in self.inputs.iter().enumerate() {
            let want = match i {
                0 => "A".to_string(),
                1 => "B".to_string(),
                n => format!("C{}", n - 1),
            };
            ensure!(
                input.label == want,
                "manifest.json: input {i} is labelled {:?}, expected {want:?}",
                input.label
            );
            if let Some(c) = &input.commit {
                ensure!(
                    is_hex(c, 40),
                    "manifest.json: input {want} commit {c:?} is not a 40-hex sha"
                );
            }
        }
        ensure!(
            !self.experiments.is_empty(),
            "manifest.json: no experiments"
        );
        ensure!(
            is_hex(&self.rubric.sha256, 64),
            "manifest.json: rubric sha256 is not 64 lowercase hex digits"
        );
        ensure!(
            is_hex(&self.calibration.sha256, 64),
            "manifest.json: calibration sha256 is not 64 lowercase hex digits"
        );
        ensure!(
            VERDICTS.contains(&self.verdict.as_str()),
            "manifest.json: unknown verdict {:?}",
            self.verdict
        );
        let mut previous: Option<&str> = None;
        for f in &self.files {
            super::archive_read::check_name(&f.name)?;
            if [MANIFEST, SUMS, SIGNATURE].contains(&f.name.as_str()) {
                bail!(
                    "manifest.json lists {} (it cannot list itself or the checksums)",
                    f.name
                );
            }
            ensure!(
                is_hex(&f.sha256, 64),
                "manifest.json: {} has a malformed sha256",
                f.name
            );
            if let Some(p) = previous {
                ensure!(
                    p < f.name.as_str(),
                    "manifest.json: {} is out of order or listed twice",
                    f.name
                );
            }
            previous = Some(&f.name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut files = BTreeMap::new();
        files.insert("results.json".to_string(), b"{}".to_vec());
        Manifest {
            format: FORMAT.into(),
            name: "x".into(),
            tool: Tool {
                name: "weight-audit".into(),
                version: "0.1.0".into(),
            },
            inputs: ["A", "B"]
                .map(|l| Input {
                    label: l.into(),
                    reference: "r".into(),
                    pinned: "p".into(),
                    commit: None,
                })
                .to_vec(),
            experiments: vec!["e1".into()],
            parameters: BTreeMap::new(),
            rubric: RubricRef {
                version: "1".into(),
                sha256: "0".repeat(64),
            },
            calibration: RubricRef {
                version: "1".into(),
                sha256: "1".repeat(64),
            },
            verdict: "DERIVED".into(),
            files: Manifest::records(&files),
        }
    }

    #[test]
    fn round_trips_and_validates() {
        let m = sample();
        assert_eq!(Manifest::parse(&m.to_bytes().unwrap()).unwrap(), m);
        let mut bad = sample();
        bad.inputs[1].label = "C1".into();
        assert!(Manifest::parse(&bad.to_bytes().unwrap()).is_err());
        let mut bad = sample();
        bad.files[0].name = "../x".into();
        assert!(Manifest::parse(&bad.to_bytes().unwrap()).is_err());
        let mut bad = sample();
        bad.verdict = "PROBABLY".into();
        assert!(Manifest::parse(&bad.to_bytes().unwrap()).is_err());
        let text = String::from_utf8(sample().to_bytes().unwrap()).unwrap();
        let extra = text.replacen("{", "{\"surprise\": 1,", 1);
        assert!(Manifest::parse(extra.as_bytes()).is_err());
    }
}
