//! The demo's bundle: signed with a key anyone can recreate, written next to the demo's
//! results, and verified at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use blake2::{Blake2b256, Digest};

use super::assemble::{AuditRecord, assemble_audit};
use super::minisign::{KeyId, SecretKey};
use super::verify::{VerifyOptions, verify_bundle_default};
use super::write::write_bundle;
use crate::experiments::Output;
use crate::model::Model;
use crate::pipeline::{Results, RubricSource};

/// The demo key. Its seed is derived from this public text, so it is NOT SECRET: anyone can
/// sign with it. A demo signature shows the machinery works; it proves nothing about who
/// wrote a bundle.
pub const DEMO_KEY_SEED_TEXT: &str =
    "weight-audit demo key: public, not secret; signatures by it prove nothing";

/// The demo's signing key, derived from `DEMO_KEY_SEED_TEXT` (public, so not secret).
pub fn demo_key() -> SecretKey {
    let seed: [u8; 32] = Blake2b256::digest(DEMO_KEY_SEED_TEXT.as_bytes()).into();
    let id_hash = Blake2b256::digest(format!("{DEMO_KEY_SEED_TEXT} (key id)").as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&id_hash[..8]);
    SecretKey::from_seed(&seed, KeyId(id))
}

/// The audit the demo ran, for its bundle.
pub struct DemoAudit<'a> {
    /// The models audited, A, B, then the controls.
    pub models: &'a [Model],
    /// Each model's reference as the demo named it.
    pub references: &'a [String],
    /// Ids of the experiments that ran, in order.
    pub experiments: &'a [String],
    /// The rubric the verdict was decided by.
    pub rubric: &'a RubricSource,
    /// The pipeline's results.
    pub results: &'a Results,
    /// Each experiment's output (tables and figures).
    pub outputs: &'a [Output],
}

/// The demo's bundle bytes (deterministic: same models, same bytes).
pub fn demo_bundle_bytes(audit: &DemoAudit) -> Result<Vec<u8>> {
    let revisions = audit
        .models
        .iter()
        .zip(audit.references)
        .map(|(m, r)| {
            let mut pin = m.source().pin()?;
            pin.reference = pin.display_reference(r);
            Ok(pin)
        })
        .collect::<Result<Vec<_>>>()?;
    let suite = weight_audit_lab::SuiteOptions::default();
    let mut parameters = BTreeMap::new();
    parameters.insert(
        "lab_suite".to_string(),
        serde_json::json!({"hidden": suite.hidden, "seed": suite.seed}),
    );
    let audit_toml = format!(
        "# audit demo: the lab's built-in models, every experiment, the built-in rubric\nexperiments = {:?}\n",
        audit.experiments
    );
    let inputs = assemble_audit(&AuditRecord {
        name: "demo".into(),
        results: audit.results,
        outputs: audit.outputs,
        rubric: audit.rubric,
        audit_toml,
        revisions: &revisions,
        experiments: audit.experiments,
        parameters,
    })?;
    write_bundle(&inputs, Some(&demo_key()))
}

/// Writes `out/demo.audit.zip` and `out/demo.pub`, then verifies the bundle in-process.
pub fn write_demo_bundle(out: &Path, audit: &DemoAudit) -> Result<PathBuf> {
    let zip = demo_bundle_bytes(audit)?;
    let path = out.join("demo.audit.zip");
    std::fs::write(&path, &zip).with_context(|| format!("writing {}", path.display()))?;
    let pk = demo_key().public_key();
    let pub_path = out.join("demo.pub");
    std::fs::write(&pub_path, pk.to_file_text())
        .with_context(|| format!("writing {}", pub_path.display()))?;
    let verified = verify_bundle_default(
        &zip,
        &VerifyOptions {
            public_key: Some(pk),
            ..Default::default()
        },
    );
    if !verified.passed() {
        return Err(crate::CheckFailed(format!(
            "the demo bundle does not verify:\n{}",
            verified.text()
        ))
        .into());
    }
    Ok(path)
}
