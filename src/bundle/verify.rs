//! Checks a bundle in memory, in order, stopping at the first failure (later checks would
//! only repeat it): the archive's shape and limits, the signature over `SHA256SUMS`, every
//! checksum and the exact file set, the manifest schema and file list, the rubric's hash,
//! the verdict re-derived from `results.json` under the bundled rubric, and the reports
//! re-rendered byte for byte.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::archive_read::{self, Limits};
use super::jsondiff::{self, Tolerance};
use super::manifest::{self, Manifest, RubricRef};
use super::minisign::{PublicKey, Signature};
use super::render_hook;
use super::sums;
use super::write::{self, CALIBRATION, RESULTS, RUBRIC};
use crate::calibration::Calibration;
use crate::rubric::Rubric;

/// How reports are rendered from results (see [`render_hook`]).
pub type Renderer<'a> = &'a dyn Fn(&Value) -> Result<BTreeMap<String, Vec<u8>>>;

/// Every check, in the order run.
pub const CHECKS: [&str; 8] = [
    "archive",
    "signature",
    "checksums",
    "manifest",
    "rubric and calibration",
    "verdict",
    "tables",
    "re-render",
];

/// How to verify a bundle: the key to trust and the reader's limits.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// The signer's public key; required for a signed bundle unless `allow_unsigned`.
    pub public_key: Option<PublicKey>,
    /// Accept a bundle without a signature (or check none): integrity only.
    pub allow_unsigned: bool,
    /// Bounds on the archive's size and entries.
    pub limits: Limits,
}

/// One check's outcome: what was found, or what failed.
#[derive(Clone, Debug)]
pub struct Check {
    /// Short name of the check, as printed.
    pub name: &'static str,
    /// `Ok(what was found)` or `Err(why it failed)`.
    pub outcome: std::result::Result<String, String>,
}

/// A bundle's entries by name, each a slice of the archive bytes.
pub type Files<'a> = BTreeMap<String, &'a [u8]>;

/// What verification found, and the bundle's content for further checks (`--reproduce`).
#[derive(Debug, Default)]
pub struct Verified<'a> {
    /// The checks in the order run; verification stops at the first failure.
    pub checks: Vec<Check>,
    /// The bundle's entries (empty if the archive could not be read).
    pub files: Files<'a>,
    /// The parsed manifest, once its check passed.
    pub manifest: Option<Manifest>,
    /// The parsed results.json, once its check passed.
    pub results: Option<Value>,
}

impl Verified<'_> {
    /// True when at least one check ran and every check passed.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.outcome.is_ok())
    }

    /// The first failed check's message, if any.
    pub fn failure(&self) -> Option<&str> {
        self.checks
            .iter()
            .find_map(|c| c.outcome.as_ref().err().map(String::as_str))
    }

    /// One line per check, as `audit verify` prints them; checks after a failure are
    /// listed as not run.
    pub fn text(&self) -> String {
        let mut lines: Vec<String> = self
            .checks
            .iter()
            .map(|c| match &c.outcome {
                Ok(detail) => format!("ok    {:<10} {detail}", c.name),
                Err(why) => format!("FAIL  {:<10} {why}", c.name),
            })
            .collect();
        for name in CHECKS.iter().skip(self.checks.len()) {
            lines.push(format!("skip  {name:<10} not run: an earlier check failed"));
        }
        lines.join("\n")
    }
}

fn record<T>(v: &mut Verified<'_>, name: &'static str, r: Result<(String, T)>) -> Option<T> {
    match r {
        Ok((detail, t)) => {
            v.checks.push(Check {
                name,
                outcome: Ok(detail),
            });
            Some(t)
        }
        Err(e) => {
            v.checks.push(Check {
                name,
                outcome: Err(format!("{e:#}")),
            });
            None
        }
    }
}

fn text_file<'a>(files: &Files<'a>, name: &str) -> Result<&'a str> {
    let bytes = files
        .get(name)
        .with_context(|| format!("{name} is missing from the bundle"))?;
    std::str::from_utf8(bytes).with_context(|| format!("{name} is not UTF-8 text"))
}

fn check_archive<'a>(zip: &'a [u8], limits: &Limits) -> Result<(String, Files<'a>)> {
    let entries = archive_read::read(zip, limits)?;
    let n = entries.len();
    let bytes: usize = entries.iter().map(|e| e.data.len()).sum();
    let files = entries.into_iter().map(|e| (e.name, e.data)).collect();
    Ok((
        format!("{n} entries, {bytes} bytes; names, types, sizes and CRCs are sound"),
        files,
    ))
}

fn check_signature(files: &Files, opts: &VerifyOptions) -> Result<(String, Option<Signature>)> {
    let sums = files
        .get(manifest::SUMS)
        .with_context(|| format!("{} is missing from the bundle", manifest::SUMS))?;
    let Some(sig_bytes) = files.get(manifest::SIGNATURE) else {
        ensure!(
            opts.allow_unsigned,
            "the bundle is unsigned (no {}); pass --allow-unsigned to check its integrity only",
            manifest::SIGNATURE
        );
        return Ok((
            "unsigned (allowed): nothing proves who wrote it".into(),
            None,
        ));
    };
    let text = std::str::from_utf8(sig_bytes)
        .with_context(|| format!("{} is not UTF-8 text", manifest::SIGNATURE))?;
    let sig = Signature::parse(text).with_context(|| manifest::SIGNATURE.to_string())?;
    let Some(pk) = &opts.public_key else {
        ensure!(
            opts.allow_unsigned,
            "the bundle is signed by key {} but no public key was given (--pubkey FILE or -P KEY)",
            sig.key_id
        );
        return Ok((
            format!(
                "signed by key {}, NOT CHECKED (no public key given)",
                sig.key_id
            ),
            Some(sig),
        ));
    };
    pk.verify(sums, &sig, false)
        .with_context(|| format!("{} over {}", manifest::SIGNATURE, manifest::SUMS))?;
    Ok((
        format!(
            "{} signed by key {}; trusted comment: {}",
            manifest::SUMS,
            pk.id,
            sig.trusted_comment
        ),
        Some(sig),
    ))
}

fn check_sums(files: &Files) -> Result<(String, ())> {
    let listed = sums::parse(text_file(files, manifest::SUMS)?)?;
    for own in [manifest::SUMS, manifest::SIGNATURE] {
        ensure!(
            !listed.contains_key(own),
            "{} lists {own}, which it cannot cover",
            manifest::SUMS
        );
    }
    for (name, digest) in &listed {
        let bytes = files.get(name).with_context(|| {
            format!("{name} is listed in SHA256SUMS but missing from the bundle")
        })?;
        let actual = sums::sha256_hex(bytes);
        ensure!(
            &actual == digest,
            "{name}: sha256 {actual} differs from SHA256SUMS ({digest})"
        );
    }
    for name in files.keys() {
        if name != manifest::SUMS && name != manifest::SIGNATURE && !listed.contains_key(name) {
            bail!("{name} is in the bundle but not listed in SHA256SUMS");
        }
    }
    Ok((
        format!(
            "{} files match SHA256SUMS; none missing or unlisted",
            listed.len()
        ),
        (),
    ))
}

fn check_manifest(files: &Files) -> Result<(String, (Manifest, Value))> {
    let bytes = files
        .get(manifest::MANIFEST)
        .context("manifest.json is missing from the bundle")?;
    let m = Manifest::parse(bytes)?;
    let actual = Manifest::records(files.iter().filter(|(n, _)| {
        ![manifest::MANIFEST, manifest::SUMS, manifest::SIGNATURE].contains(&n.as_str())
    }));
    let listed: BTreeMap<&str, &manifest::FileRecord> =
        m.files.iter().map(|f| (f.name.as_str(), f)).collect();
    for rec in &actual {
        match listed.get(rec.name.as_str()) {
            None => bail!("{} is in the bundle but not in manifest.json", rec.name),
            Some(l) if *l != rec => bail!(
                "{}: size or sha256 differs from manifest.json (listed {} bytes {}, actual {} bytes {})",
                rec.name,
                l.size,
                l.sha256,
                rec.size,
                rec.sha256
            ),
            Some(_) => {}
        }
    }
    let names: BTreeSet<&str> = actual.iter().map(|r| r.name.as_str()).collect();
    if let Some(missing) = m.files.iter().find(|f| !names.contains(f.name.as_str())) {
        bail!(
            "manifest.json lists {} but the bundle has no such file",
            missing.name
        );
    }
    let results: Value = serde_json::from_slice(
        files
            .get(RESULTS)
            .context("results.json is missing from the bundle")?,
    )
    .context("results.json is not valid JSON")?;
    let models = results["models"]
        .as_array()
        .context("results.json has no models list")?;
    ensure!(
        models.len() == m.inputs.len(),
        "manifest.json has {} inputs but results.json {} models",
        m.inputs.len(),
        models.len()
    );
    for (input, model) in m.inputs.iter().zip(models) {
        ensure!(
            model["label"] == input.label.as_str()
                && model["reference"] == input.reference.as_str()
                && model["pinned"] == input.pinned.as_str(),
            "manifest.json input {} differs from results.json's model entry",
            input.label
        );
    }
    Ok((
        format!(
            "{} (tool {} {}), {} inputs, {} files listed with sizes and sha256",
            manifest::FORMAT,
            m.tool.name,
            m.tool.version,
            m.inputs.len(),
            m.files.len()
        ),
        (m, results),
    ))
}

/// The rubric and the calibration a bundle's verdict rests on.
pub struct VerdictInputs {
    /// The bundled rubric, parsed.
    pub rubric: Rubric,
    /// The bundled calibration, parsed.
    pub calibration: Calibration,
}

/// A bundled data file (rubric or calibration) whose sha256 must be what results.json and
/// manifest.json record; checked before the file is parsed.
fn check_hash(
    name: &str,
    text: &str,
    recorded: &RubricRef,
    manifest: &RubricRef,
) -> Result<String> {
    // Rubric and calibration texts are hashed alike (sha256 of the text).
    let hash = crate::rubric::rubric_hash(text);
    ensure!(
        hash == recorded.sha256,
        "{name} hashes to {hash} but results.json records sha256 {}",
        recorded.sha256
    );
    ensure!(
        hash == manifest.sha256,
        "{name} hashes to {hash} but manifest.json records {}",
        manifest.sha256
    );
    Ok(hash)
}

/// The version a parsed rubric or calibration states must be the one recorded.
fn check_version(
    name: &str,
    version: &str,
    recorded: &RubricRef,
    manifest: &RubricRef,
) -> Result<()> {
    ensure!(
        version == recorded.version && version == manifest.version,
        "{name} is version {version:?} but results.json says {:?} and manifest.json {:?}",
        recorded.version,
        manifest.version
    );
    Ok(())
}

fn check_rubric(files: &Files, m: &Manifest, results: &Value) -> Result<(String, VerdictInputs)> {
    let recorded = write::results_summary(results)?;
    let text = text_file(files, RUBRIC)?;
    let hash = check_hash(RUBRIC, text, &recorded.rubric, &m.rubric)?;
    let rubric = Rubric::parse(text).context("rubric.toml")?;
    check_version(RUBRIC, &rubric.version, &recorded.rubric, &m.rubric)?;
    let cal_text = text_file(files, CALIBRATION)?;
    let cal_hash = check_hash(CALIBRATION, cal_text, &recorded.calibration, &m.calibration)?;
    let calibration = Calibration::parse(cal_text).context("calibration.json")?;
    check_version(
        CALIBRATION,
        &calibration.version,
        &recorded.calibration,
        &m.calibration,
    )?;
    Ok((
        format!(
            "rubric.toml (version {}) has sha256 {hash}; calibration.json (version {}, {} pairs) has sha256 {cal_hash}",
            rubric.version,
            calibration.version,
            calibration.pairs.len()
        ),
        VerdictInputs {
            rubric,
            calibration,
        },
    ))
}

/// The control pairs of an audit, as `compare` labels them: A~C1, B~C1, A~C2, …
pub fn control_pairs(results: &Value) -> Result<Vec<String>> {
    let models = results["models"]
        .as_array()
        .context("results.json has no models list")?;
    let mut pairs = Vec::new();
    for m in models.iter().skip(2) {
        let label = m["label"].as_str().context("a model without a label")?;
        pairs.push(format!("A~{label}"));
        pairs.push(format!("B~{label}"));
    }
    Ok(pairs)
}

/// Re-derives the decision from results.json's experiments under the rubric and calibration.
pub fn rederive(inputs: &VerdictInputs, results: &Value) -> Result<Value> {
    let experiments: BTreeMap<String, Value> = results["experiments"]
        .as_object()
        .context("results.json has no experiments object")?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let decision = crate::verdict::decide(
        &inputs.rubric,
        &inputs.calibration,
        &experiments,
        &control_pairs(results)?,
        &[],
    );
    Ok(serde_json::to_value(decision)?)
}

fn check_verdict(
    rubric: &VerdictInputs,
    m: &Manifest,
    results: &Value,
    sig: Option<&Signature>,
) -> Result<(String, ())> {
    let derived = rederive(rubric, results)?;
    let recorded = &results["decision"];
    let diffs = jsondiff::diff(recorded, &derived, Tolerance::EXACT);
    if let Some(first) = diffs.first() {
        bail!(
            "results.json: the recorded decision does not follow from its experiments under rubric.toml and calibration.json ({} difference(s); first at decision{}: recorded {}, re-derived {})",
            diffs.len(),
            first.path.trim_start_matches('$'),
            first.a,
            first.b
        );
    }
    let verdict = recorded["verdict"].as_str().unwrap_or_default();
    ensure!(
        m.verdict == verdict,
        "manifest.json says verdict {:?} but results.json {verdict:?}",
        m.verdict
    );
    if let Some(sig) = sig {
        let signed = write::trusted_field(&sig.trusted_comment, "verdict");
        ensure!(
            signed == Some(verdict),
            "the signed trusted comment says verdict {:?} but results.json {verdict:?}",
            signed.unwrap_or("(none)")
        );
        let summary = write::results_summary(results)?;
        let signed_bound = write::trusted_field(&sig.trusted_comment, "fpr");
        ensure!(
            signed_bound == Some(summary.false_positive_bound.as_str()),
            "the signed trusted comment states a false-positive bound of {:?} but results.json {:?}",
            signed_bound.unwrap_or("(none)"),
            summary.false_positive_bound
        );
        let signed_cal = write::trusted_field(&sig.trusted_comment, "calibration");
        ensure!(
            signed_cal.is_some_and(|c| !c.is_empty() && summary.calibration.sha256.starts_with(c)),
            "the signed trusted comment names calibration {:?} but results.json {:?}",
            signed_cal.unwrap_or("(none)"),
            summary.calibration.sha256
        );
        let name = write::trusted_field(&sig.trusted_comment, "bundle");
        ensure!(
            name == Some(m.name.as_str()),
            "the signed trusted comment names bundle {:?} but manifest.json {:?}",
            name.unwrap_or("(none)"),
            m.name
        );
    }
    let fired = recorded["evidence"]
        .as_array()
        .map_or(0, |e| e.iter().filter(|e| e["fired"] == true).count());
    Ok((
        format!(
            "{verdict} follows from results.json under the bundled rubric and calibration ({fired} rule(s) fired; false-positive bound {})",
            recorded["error"]["false_positive_bound"]
        ),
        (),
    ))
}

/// How [`check_derived`] words what it checks: "{name} {made} but is missing", "{name}
/// differs from {fresh}", "{name} is in the bundle but {unmade}".
struct Derivation<'a> {
    made: &'a str,
    fresh: &'a str,
    unmade: &'a str,
}

/// The files a bundle holds that are derived from its results (`fresh`, by name), checked
/// byte for byte; `ours` says which bundle names such a derivation produces, so one the
/// derivation does not make is refused too.
fn check_derived(
    files: &Files,
    fresh: &BTreeMap<String, Vec<u8>>,
    ours: impl Fn(&str) -> bool,
    words: Derivation,
) -> Result<()> {
    for (name, bytes) in fresh {
        let bundled = files
            .get(name)
            .with_context(|| format!("{name} {} but is missing from the bundle", words.made))?;
        if bundled != bytes {
            let at = bundled
                .iter()
                .zip(bytes)
                .position(|(a, b)| a != b)
                .unwrap_or(bundled.len().min(bytes.len()));
            bail!(
                "{name} differs from {} (first difference at byte {at}; bundled {} bytes, fresh {})",
                words.fresh,
                bundled.len(),
                bytes.len()
            );
        }
    }
    if let Some(extra) = files.keys().find(|n| ours(n) && !fresh.contains_key(*n)) {
        bail!("{extra} is in the bundle but {}", words.unmade);
    }
    Ok(())
}

/// `data/*.csv`, derived again from each experiment's result in results.json.
fn check_tables(files: &Files, results: &Value) -> Result<(String, ())> {
    let mut fresh = BTreeMap::new();
    let experiments = results["experiments"].as_object().into_iter().flatten();
    for (id, result) in experiments {
        for t in crate::experiments::tables_of(id, result)? {
            fresh.insert(format!("data/{}.csv", t.name), t.to_csv()?);
        }
    }
    check_derived(
        files,
        &fresh,
        |n| n.starts_with("data/"),
        Derivation {
            made: "derives from results.json",
            fresh: "the table derived from results.json",
            unmade: "no experiment in results.json derives it",
        },
    )?;
    Ok((
        format!(
            "{} table(s) under data/ derive byte-identically from results.json",
            fresh.len()
        ),
        (),
    ))
}

fn check_render(files: &Files, results: &Value, render: Renderer) -> Result<(String, ())> {
    let fresh = render(results).context("re-rendering the reports")?;
    check_derived(
        files,
        &fresh,
        render_hook::is_rendered,
        Derivation {
            made: "renders from results.json",
            fresh: "a fresh render of results.json",
            unmade: "the renderer does not produce it",
        },
    )?;
    Ok((
        if fresh.is_empty() {
            "no report files: this build's renderer produces none, and the bundle holds none".into()
        } else {
            format!("{} report file(s) re-render byte-identically", fresh.len())
        },
        (),
    ))
}

/// Runs every check on the zip bytes of a bundle.
pub fn verify_bundle<'a>(zip: &'a [u8], opts: &VerifyOptions, render: Renderer) -> Verified<'a> {
    let mut v = Verified::default();
    let Some(files) = record(&mut v, "archive", check_archive(zip, &opts.limits)) else {
        return v;
    };
    let r = check_signature(&files, opts);
    v.files = files;
    let Some(sig) = record(&mut v, "signature", r) else {
        return v;
    };
    let r = check_sums(&v.files);
    if record(&mut v, "checksums", r).is_none() {
        return v;
    }
    let r = check_manifest(&v.files);
    let Some((m, results)) = record(&mut v, "manifest", r) else {
        return v;
    };
    let r = check_rubric(&v.files, &m, &results);
    if let Some(rubric) = record(&mut v, "rubric and calibration", r) {
        let r = check_verdict(&rubric, &m, &results, sig.as_ref());
        if record(&mut v, "verdict", r).is_some() {
            let r = check_tables(&v.files, &results);
            if record(&mut v, "tables", r).is_some() {
                let r = check_render(&v.files, &results, render);
                record(&mut v, "re-render", r);
            }
        }
    }
    v.manifest = Some(m);
    v.results = Some(results);
    v
}

/// [`verify_bundle`] with the tool's own renderer.
pub fn verify_bundle_default<'a>(zip: &'a [u8], opts: &VerifyOptions) -> Verified<'a> {
    verify_bundle(zip, opts, &render_hook::render)
}
