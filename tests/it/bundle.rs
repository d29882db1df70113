//! Bundles: reproducible bytes, verification, tampering, hostile zips, minisign interop,
//! golden results, `audit keygen`/`verify`/`diff`.
//!
//! The demo audit runs once per test binary (`demo()`); the many tamper cases use a small
//! synthetic bundle whose verdict genuinely follows from its (empty) results.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{Value, json};
use weight_audit::bundle::archive_read::{self, Limits};
use weight_audit::bundle::archive_write::{self, ZipTime};
use weight_audit::bundle::demo::demo_key;
use weight_audit::bundle::jsondiff::{self, Tolerance};
use weight_audit::bundle::manifest::{Input, Manifest};
use weight_audit::bundle::minisign::KeyId;
use weight_audit::bundle::{
    BundleInputs, PublicKey, SecretKey, Signature, VerifyOptions, seckey, sums, verify_bundle,
    write,
};

use crate::util::{path_str, run, stderr, stdout, tmp};

// ---------------------------------------------------------------------------------------
// Fixtures

struct Demo {
    dir: PathBuf,
    zip: Vec<u8>,
    results: Value,
}

fn compare_demo(dir: &Path) -> (Vec<u8>, Value) {
    let demo = weight_audit::demo::DemoRun::run(dir).unwrap();
    let zip = demo.bundle_bytes().unwrap();
    (zip, serde_json::to_value(&demo.results).unwrap())
}

/// The demo audit and its bundle, made once per test run.
fn demo() -> &'static Demo {
    static DEMO: OnceLock<Demo> = OnceLock::new();
    DEMO.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bundle-demo");
        let _ = std::fs::remove_dir_all(&dir);
        let (zip, results) = compare_demo(&dir);
        std::fs::write(dir.join("demo.audit.zip"), &zip).unwrap();
        std::fs::write(dir.join("demo.pub"), demo_key().public_key().to_file_text()).unwrap();
        Demo { dir, zip, results }
    })
}

fn demo_opts() -> VerifyOptions {
    VerifyOptions {
        public_key: Some(demo_key().public_key()),
        ..Default::default()
    }
}

/// The report renderer bundles are written with (what `audit verify` uses).
fn real_reports(results: &Value) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    weight_audit::report::render(results)
}

/// A small deterministic renderer standing in for the report renderer.
fn test_render(results: &Value) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let verdict = results["decision"]["verdict"].as_str().unwrap_or("?");
    let rules = results["decision"]["evidence"]
        .as_array()
        .map_or(0, Vec::len);
    let mut out = BTreeMap::new();
    out.insert(
        "report.md".to_string(),
        format!("# Audit\n\nverdict: {verdict}\n{rules} rules\n").into_bytes(),
    );
    out.insert(
        "plots/rules.svg".to_string(),
        format!("<svg><text>{rules}</text></svg>\n").into_bytes(),
    );
    Ok(out)
}

fn key() -> SecretKey {
    SecretKey::from_seed(&[42u8; 32], KeyId(*b"testkey!"))
}

/// A valid bundle's inputs: three models, no experiments, the default rubric's decision.
fn synthetic() -> BundleInputs {
    let text = weight_audit::rubric::DEFAULT_RUBRIC;
    let source = weight_audit::pipeline::RubricSource::load(None).unwrap();
    let rubric = &source.rubric;
    let decision = source.decide(&BTreeMap::new(), &["A~C1".to_string(), "B~C1".to_string()]);
    let inputs: Vec<Input> = ["A", "B", "C1"]
        .iter()
        .map(|l| Input {
            label: l.to_string(),
            reference: format!("/models/{l}"),
            pinned: format!("/models/{l}"),
            commit: None,
        })
        .collect();
    let results = json!({
        "tool": {"name": "weight-audit", "version": "0.1.0"},
        "models": inputs.iter().map(|i| json!({"label": i.label, "reference": i.reference, "pinned": i.pinned})).collect::<Vec<_>>(),
        "experiments": {},
        "rubric": {"version": rubric.version, "sha256": weight_audit::rubric::rubric_hash(text)},
        "calibration": source.calibration_entry(),
        "decision": decision,
    });
    // No experiments, so no tables: every data/*.csv must derive from results.json.
    let data = BTreeMap::new();
    BundleInputs {
        name: "synthetic test bundle".into(),
        results_json: serde_json::to_vec_pretty(&results).unwrap(),
        rendered: test_render(&results).unwrap(),
        data,
        revisions_json: b"{\"models\": []}\n".to_vec(),
        rubric_toml: text.to_string(),
        calibration_json: source.calibration_text.clone(),
        audit_toml: "# defaults\n".into(),
        inputs,
        experiments: vec!["e1".into()],
        parameters: BTreeMap::new(),
    }
}

fn synthetic_zip() -> Vec<u8> {
    write::write_bundle_at(&synthetic(), Some(&key()), ZipTime::DEFAULT).unwrap()
}

fn synthetic_sig_text() -> String {
    key()
        .sign(b"m", "bundle:x\tverdict:DERIVED", "u")
        .unwrap()
        .to_file_text()
}

fn opts() -> VerifyOptions {
    VerifyOptions {
        public_key: Some(key().public_key()),
        ..Default::default()
    }
}

/// Verifies with the test renderer; Err(message of the first failure).
fn check(zip: &[u8]) -> Result<(), String> {
    let v = verify_bundle(zip, &opts(), &test_render);
    match v.failure() {
        None if v.passed() => Ok(()),
        None => Err("no checks ran".into()),
        Some(f) => Err(f.to_string()),
    }
}

fn files_of(zip: &[u8]) -> BTreeMap<String, Vec<u8>> {
    archive_read::read(zip, &Limits::default())
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.data.to_vec()))
        .collect()
}

fn rezip(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    archive_write::write(files, ZipTime::DEFAULT).unwrap()
}

/// Rewrites manifest.json, SHA256SUMS and the signature after editing content, as a
/// forger holding the key would: only checks beyond integrity can then catch the edit.
fn reseal(mut files: BTreeMap<String, Vec<u8>>, key: &SecretKey) -> Vec<u8> {
    files.remove("SHA256SUMS");
    files.remove("SHA256SUMS.minisig");
    let mut m = Manifest::parse(&files.remove("manifest.json").unwrap()).unwrap();
    m.files = Manifest::records(&files);
    let results: Value = serde_json::from_slice(&files["results.json"]).unwrap();
    m.verdict = results["decision"]["verdict"].as_str().unwrap().to_string();
    files.insert("manifest.json".into(), m.to_bytes().unwrap());
    let sums = sums::write(&files).unwrap();
    let sig = key
        .sign(
            sums.as_bytes(),
            &write::trusted_comment(&m.name, &write::results_summary(&results).unwrap()),
            "resealed",
        )
        .unwrap();
    files.insert("SHA256SUMS".into(), sums.into_bytes());
    files.insert("SHA256SUMS.minisig".into(), sig.to_file_text().into_bytes());
    rezip(&files)
}

/// (name, data start, data length) of each entry, from the local headers.
fn entry_spans(zip: &[u8]) -> Vec<(String, usize, usize)> {
    let u16_at = |at: usize| u16::from_le_bytes([zip[at], zip[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(zip[at..at + 4].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    let mut at = 0;
    while u32_at(at) == 0x0403_4b50 {
        let (n, m, size) = (u16_at(at + 26), u16_at(at + 28), u32_at(at + 18));
        let name = String::from_utf8(zip[at + 30..at + 30 + n].to_vec()).unwrap();
        let start = at + 30 + n + m;
        out.push((name, start, size));
        at = start + size;
    }
    out
}

// ---------------------------------------------------------------------------------------
// Reproducibility, verification, golden results

#[test]
fn the_demo_bundle_verifies_and_is_byte_reproducible() {
    let d = demo();
    let v = verify_bundle(&d.zip, &demo_opts(), &real_reports);
    assert!(v.passed(), "{}", v.text());
    let names: Vec<&str> = v.checks.iter().map(|c| c.name).collect();
    assert_eq!(names, weight_audit::bundle::verify::CHECKS, "{}", v.text());
}

/// Two demo audits in different folders, one through the CLI: the same bundle bytes, and
/// no entry names a folder of this machine (local inputs are pinned by name and content).
#[test]
fn demo_bundles_made_in_different_folders_are_identical_and_name_no_path() {
    let d = demo();
    let out = tmp();
    let elsewhere = out.path().join("some/deeper/folder");
    // Another user: another home folder, another output folder.
    let bob = out.path().join("home/bob");
    std::fs::create_dir_all(&bob).unwrap();
    let o = crate::util::audit()
        .env("HOME", &bob)
        .args(["demo", "--out", &path_str(&elsewhere)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("E4 post_attention_norm A~B") && text.contains("A~C1"),
        "{text}"
    );
    assert!(elsewhere.join("results/results.json").exists());
    let zip = std::fs::read(elsewhere.join("demo.audit.zip")).unwrap();
    assert!(
        zip == d.zip,
        "two demo audits in different folders gave different bundles"
    );
    let mut machine = vec![path_str(&d.dir), path_str(out.path()), path_str(&bob)];
    if let Some(home) = std::env::var_os("HOME").filter(|h| h.len() > 1) {
        machine.push(home.to_string_lossy().into_owned());
    }
    for e in archive_read::read(&zip, &Limits::default()).unwrap() {
        let text = String::from_utf8_lossy(e.data);
        for m in &machine {
            assert!(!text.contains(m.as_str()), "{} names {m}", e.name);
        }
    }
    let models = &d.results["models"];
    assert_eq!(models[0]["reference"], "glm-a", "{models}");
    assert!(
        models[0]["pinned"]
            .as_str()
            .unwrap()
            .starts_with("local:glm-a@sha256:"),
        "{models}"
    );
}

#[test]
fn the_demo_bundle_verifies_and_reproduces_from_the_cli() {
    let d = demo();
    let zip = path_str(&d.dir.join("demo.audit.zip"));
    let pubkey = path_str(&d.dir.join("demo.pub"));
    let o = run(&[
        "verify",
        &zip,
        "--pubkey",
        &pubkey,
        "--reproduce",
        "--no-cache",
        "--accept-demo-key",
    ]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("ok    reproduce"), "{out}");
    assert!(out.contains("bundle verified"), "{out}");
    assert!(stderr(&o).contains("WARNING"), "{}", stderr(&o));
    // The demo key's signature proves nothing about who signed: without the flag it fails.
    let o = run(&["verify", &zip, "--pubkey", &pubkey]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("public demo key") && stderr(&o).contains("--accept-demo-key"),
        "{}",
        stderr(&o)
    );
    // The same with the key given inline, and the wrong key.
    let b64 = demo_key().public_key().to_base64();
    assert!(
        run(&["verify", &zip, "-P", &b64, "--accept-demo-key"])
            .status
            .success()
    );
    let other = key().public_key().to_base64();
    let o = run(&["verify", &zip, "-P", &other]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("made by key"), "{}", stderr(&o));
    assert!(stdout(&o).contains("FAIL  signature"), "{}", stdout(&o));
    assert!(stdout(&o).contains("skip  checksums"), "{}", stdout(&o));
    // No key at all is a usage error, not a silent pass.
    assert_eq!(run(&["verify", &zip]).status.code(), Some(2));
}

/// `verify --reproduce` away from the models: a missing local input is named with the flag
/// that supplies it, and a folder holding other files is refused file by file, before
/// anything is re-run.
#[test]
fn reproducing_names_missing_and_different_local_inputs() {
    let d = demo();
    let dir = tmp();
    let zip = dir.path().join("demo.audit.zip");
    std::fs::write(&zip, &d.zip).unwrap();
    let pubkey = path_str(&d.dir.join("demo.pub"));
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            zip.to_str().unwrap(),
            "--pubkey",
            &pubkey,
            "--accept-demo-key",
            "--reproduce",
            "--no-cache",
        ];
        args.extend(extra);
        run(&args)
    };
    // Not a failed check (the bundle is intact): the re-run cannot start, exit 2.
    let o = verify(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("local input glm-a") && err.contains("--input glm-a=PATH"),
        "{err}"
    );
    // A folder of that name with other content: each differing file is named.
    let fake = dir.path().join("fake");
    std::fs::create_dir(&fake).unwrap();
    std::fs::copy(
        d.dir.join("models/glm-a/config.json"),
        fake.join("config.json"),
    )
    .unwrap();
    std::fs::write(fake.join("notes.txt"), "x").unwrap();
    let named = format!("glm-a={}", path_str(&fake));
    let o = verify(&["--input", &named]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("holds different files"), "{err}");
    assert!(err.contains("notes.txt: not in the pin"), "{err}");
    assert!(err.contains(".safetensors: missing"), "{err}");
    assert!(!err.contains("\n  config.json"), "{err}");
    // A malformed --input is a usage error.
    assert_eq!(verify(&["--input", "glm-a"]).status.code(), Some(2));
    assert_eq!(verify(&["--input", "../x=/tmp"]).status.code(), Some(2));
}

/// `UPDATE_GOLDEN=1` rewrites `golden/`; otherwise results must match within tolerance.
fn golden(name: &str, actual: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut text = serde_json::to_string_pretty(actual).unwrap();
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    let expected: Value = serde_json::from_str(&text).unwrap();
    let diffs = jsondiff::diff(&expected, actual, Tolerance::RERUN);
    let shown: Vec<String> = diffs.iter().take(15).map(|d| d.to_string()).collect();
    assert!(
        diffs.is_empty(),
        "{} differs from golden/{name} in {} place(s) beyond {} (UPDATE_GOLDEN=1 rewrites it after review):\n{}",
        "the regenerated result",
        diffs.len(),
        Tolerance::RERUN,
        shown.join("\n")
    );
}

/// Replaces each local input's content digest by a stand-in: the lab's models are the same
/// bytes on every machine only as far as its floating point is, which is why the numbers
/// compare within a tolerance; the digest itself is checked against a hand-computed value in
/// `source::local`, and byte-equal bundles are checked above.
fn without_digests(v: &Value) -> Value {
    let mut v = v.clone();
    for m in v["models"].as_array_mut().into_iter().flatten() {
        if let Some((name, _)) = m["pinned"].as_str().and_then(|p| p.rsplit_once("@sha256:")) {
            m["pinned"] = Value::String(format!("{name}@sha256:<digest>"));
        }
    }
    v
}

#[test]
fn demo_results_match_the_golden_file() {
    let d = demo();
    golden("demo/results.json", &without_digests(&d.results));
}

// ---------------------------------------------------------------------------------------
// Tampering

/// Verifying reads entries in place: a bundle costs its own size and a small constant, not
/// a copy per check (a 1 GB bundle once peaked at 2.95 GB).
#[test]
fn verifying_a_large_bundle_copies_none_of_its_entries() {
    let mut inputs = synthetic();
    let big = 48usize << 20;
    let line = "# a long comment line of the audit configuration, repeated\n";
    inputs.audit_toml = line.repeat(big / line.len());
    let zip = write::write_bundle_at(&inputs, Some(&key()), ZipTime::DEFAULT).unwrap();
    let (v, extra) =
        crate::alloc_probe::peak_extra(|| verify_bundle(&zip, &opts(), &test_render).passed());
    assert!(v, "the large bundle should verify");
    assert!(
        extra < big / 8,
        "verifying a {} MiB bundle allocated {} MiB beyond it",
        zip.len() >> 20,
        extra >> 20
    );
}

/// Plain `verify` derives every `data/*.csv` from results.json again: a table edited (or
/// added) and resealed with the key, so that checksums, manifest and signature all agree,
/// fails by name.
#[test]
fn tables_that_do_not_derive_from_the_results_fail_even_when_resealed() {
    let d = demo();
    let files = files_of(&d.zip);
    let v = verify_bundle(&d.zip, &demo_opts(), &real_reports);
    let tables = v.checks.iter().find(|c| c.name == "tables").unwrap();
    assert!(
        tables.outcome.as_ref().unwrap().contains("30 table(s)"),
        "{:?}",
        tables.outcome
    );
    // The first failure of the resealed bundle, and every check's line.
    let failure = |files: BTreeMap<String, Vec<u8>>| -> (String, String) {
        let zip = reseal(files, &demo_key());
        let v = verify_bundle(&zip, &demo_opts(), &real_reports);
        (v.failure().unwrap_or_default().to_string(), v.text())
    };
    let name = "data/e1_layerwise.csv";
    let mut edited = files.clone();
    let text = String::from_utf8(edited[name].clone()).unwrap();
    let at = text.find("0.9").unwrap();
    let forged = format!("{}0.8{}", &text[..at], &text[at + 3..]);
    edited.insert(name.into(), forged.into_bytes());
    let (why, all) = failure(edited);
    assert!(
        why.contains("data/e1_layerwise.csv differs from the table derived from results.json"),
        "{all}"
    );
    let mut added = files.clone();
    added.insert("data/extra.csv".into(), b"pair\nA~B\n".to_vec());
    let (why, all) = failure(added);
    assert!(
        why.contains(
            "data/extra.csv is in the bundle but no experiment in results.json derives it"
        ),
        "{all}"
    );
    let mut removed = files;
    removed.remove("data/e4_matrices.csv");
    let (why, all) = failure(removed);
    assert!(
        why.contains(
            "data/e4_matrices.csv derives from results.json but is missing from the bundle"
        ),
        "{all}"
    );
}

#[test]
fn the_synthetic_bundle_verifies_and_is_reproducible() {
    check(&synthetic_zip()).unwrap();
    assert_eq!(synthetic_zip(), synthetic_zip());
    // SOURCE_DATE_EPOCH-style timestamps change the bytes but not validity.
    let later =
        write::write_bundle_at(&synthetic(), Some(&key()), ZipTime::from_unix(1.7e9 as i64))
            .unwrap();
    assert_ne!(later, synthetic_zip());
    check(&later).unwrap();
}

/// The probe's payload: a signed bundle with bytes appended as the archive comment (nothing
/// any entry reads changes) no longer verifies.
#[test]
fn a_signed_bundle_with_an_archive_comment_is_refused() {
    let mut zip = synthetic_zip();
    let payload = b"HIDDEN-PAYLOAD".repeat(70);
    let n = zip.len();
    zip[n - 2..].copy_from_slice(&(payload.len() as u16).to_le_bytes());
    zip.extend_from_slice(&payload);
    let e = check(&zip).unwrap_err();
    assert!(e.contains("comment"), "{e}");
}

#[test]
fn a_flipped_byte_in_any_entry_fails_naming_that_entry() {
    let d = demo();
    let spans = entry_spans(&d.zip);
    assert!(spans.len() > 20, "{spans:?}");
    let mut messages = std::collections::BTreeSet::new();
    for (name, start, len) in &spans {
        let mut zip = d.zip.clone();
        zip[start + len / 2] ^= 0x20;
        let v = verify_bundle(&zip, &demo_opts(), &real_reports);
        let why = v
            .failure()
            .unwrap_or_else(|| panic!("{name}: tampering passed"));
        assert!(
            why.contains(name.as_str()) && why.contains("CRC"),
            "{name}: {why}"
        );
        messages.insert(why.to_string());
    }
    assert_eq!(messages.len(), spans.len());
}

#[test]
fn an_edited_entry_with_a_valid_crc_fails_its_checksum_or_the_signature() {
    let zip = synthetic_zip();
    let files = files_of(&zip);
    let mut messages = std::collections::BTreeSet::new();
    for name in files.keys() {
        let mut edited = files.clone();
        let bytes = edited.get_mut(name).unwrap();
        let at = bytes.len() / 2;
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
        let why = check(&rezip(&edited)).unwrap_err();
        let expected = match name.as_str() {
            "SHA256SUMS" => "signature does not match".to_string(),
            "SHA256SUMS.minisig" => "SHA256SUMS.minisig".to_string(),
            other => format!("{other}: sha256"),
        };
        assert!(why.contains(&expected), "{name}: {why}");
        messages.insert(why);
    }
    assert_eq!(messages.len(), files.len());
}

#[test]
fn added_removed_and_renamed_entries_fail() {
    let files = files_of(&synthetic_zip());
    let mut added = files.clone();
    added.insert("notes.txt".into(), b"hi".to_vec());
    let why = check(&rezip(&added)).unwrap_err();
    assert!(
        why.contains("notes.txt is in the bundle but not listed"),
        "{why}"
    );

    let mut removed = files.clone();
    removed.remove("rubric.toml");
    let why = check(&rezip(&removed)).unwrap_err();
    assert!(
        why.contains("rubric.toml is listed in SHA256SUMS but missing"),
        "{why}"
    );

    let mut renamed = files.clone();
    let revisions = renamed.remove("revisions.json").unwrap();
    renamed.insert("revisions.jsn".into(), revisions);
    let why = check(&rezip(&renamed)).unwrap_err();
    assert!(
        why.contains("revisions.json is listed in SHA256SUMS but missing"),
        "{why}"
    );

    let mut unsigned = files.clone();
    unsigned.remove("SHA256SUMS.minisig");
    let why = check(&rezip(&unsigned)).unwrap_err();
    assert!(why.contains("unsigned"), "{why}");
    let allowed = VerifyOptions {
        allow_unsigned: true,
        ..opts()
    };
    assert!(verify_bundle(&rezip(&unsigned), &allowed, &test_render).passed());
}

#[test]
fn a_swapped_public_key_fails() {
    let zip = synthetic_zip();
    let other = SecretKey::from_seed(&[1u8; 32], KeyId(*b"otherkey"));
    let v = verify_bundle(
        &zip,
        &VerifyOptions {
            public_key: Some(other.public_key()),
            ..Default::default()
        },
        &test_render,
    );
    assert!(v.failure().unwrap().contains("made by key"), "{}", v.text());
    // An impostor key claiming the same id fails on the signature itself.
    let impostor = SecretKey::from_seed(&[1u8; 32], key().id);
    let v = verify_bundle(
        &zip,
        &VerifyOptions {
            public_key: Some(impostor.public_key()),
            ..Default::default()
        },
        &test_render,
    );
    assert!(
        v.failure().unwrap().contains("signature does not match"),
        "{}",
        v.text()
    );
    // Re-signed by someone else entirely: the signer's key no longer verifies it.
    let forged = reseal(files_of(&zip), &other);
    assert!(check(&forged).unwrap_err().contains("made by key"));
}

#[test]
fn a_verdict_that_does_not_follow_fails_even_when_resealed_with_the_key() {
    let files = files_of(&synthetic_zip());
    // Claim DERIVED with no evidence, then fix manifest, SHA256SUMS and the signature.
    let mut results: Value = serde_json::from_slice(&files["results.json"]).unwrap();
    results["decision"]["verdict"] = json!("DERIVED");
    let mut edited = files.clone();
    edited.insert(
        "results.json".into(),
        serde_json::to_vec_pretty(&results).unwrap(),
    );
    let mut rendered = edited.clone();
    rendered.extend(test_render(&results).unwrap());
    let why = check(&reseal(rendered, &key())).unwrap_err();
    assert!(
        why.contains("does not follow") && why.contains("decision.verdict"),
        "{why}"
    );
    // An evidence value edited so that the rule would not fire: caught the same way.
    let mut results: Value = serde_json::from_slice(&files["results.json"]).unwrap();
    results["decision"]["evidence"][0]["fired"] = json!(true);
    edited.insert(
        "results.json".into(),
        serde_json::to_vec_pretty(&results).unwrap(),
    );
    let why = check(&reseal(edited, &key())).unwrap_err();
    assert!(why.contains("decision.evidence[0].fired"), "{why}");
}

#[test]
fn reports_that_do_not_re_render_fail() {
    let mut files = files_of(&synthetic_zip());
    files.insert(
        "report.md".into(),
        b"# Audit\n\nverdict: DERIVED\n".to_vec(),
    );
    let why = check(&reseal(files.clone(), &key())).unwrap_err();
    assert!(
        why.contains("report.md differs from a fresh render"),
        "{why}"
    );
    files.remove("report.md");
    let why = check(&reseal(files.clone(), &key())).unwrap_err();
    assert!(
        why.contains("report.md renders from results.json but is missing"),
        "{why}"
    );
    files.extend(test_render(&serde_json::from_slice(&files["results.json"]).unwrap()).unwrap());
    files.insert("plots/extra.svg".into(), b"<svg/>".to_vec());
    let why = check(&reseal(files, &key())).unwrap_err();
    assert!(
        why.contains("plots/extra.svg is in the bundle but the renderer does not produce it"),
        "{why}"
    );
}

#[test]
fn a_rubric_edit_fails_on_its_hash() {
    let mut files = files_of(&synthetic_zip());
    let text = String::from_utf8(files["rubric.toml"].clone()).unwrap();
    files.insert(
        "rubric.toml".into(),
        text.replacen("threshold = ", "threshold = 0", 1)
            .into_bytes(),
    );
    let why = check(&reseal(files, &key())).unwrap_err();
    assert!(why.contains("rubric.toml hashes to"), "{why}");
}

#[test]
fn a_calibration_edit_fails_on_its_hash_and_a_consistent_forgery_on_the_verdict() {
    // An edited calibration, resealed by a key holder: its hash no longer matches results.json.
    let mut files = files_of(&synthetic_zip());
    let text = String::from_utf8(files["calibration.json"].clone()).unwrap();
    let edited = text.replacen("\"version\"", "\"version\" ", 1);
    files.insert("calibration.json".into(), edited.into_bytes());
    let why = check(&reseal(files, &key())).unwrap_err();
    assert!(why.contains("calibration.json hashes to"), "{why}");

    // A forger who also rewrites the hashes in results.json and manifest.json: the recorded
    // decision (its thresholds and bound) no longer follows from the edited calibration.
    let mut files = files_of(&synthetic_zip());
    let mut cal: Value = serde_json::from_slice(&files["calibration.json"]).unwrap();
    let values = cal["rules"][0]["values"].as_array_mut().unwrap();
    for v in values.iter_mut().filter(|v| v.is_number()) {
        *v = json!(1e6);
    }
    let cal_text = serde_json::to_string_pretty(&cal).unwrap() + "\n";
    let hash = weight_audit::calibration::calibration_hash(&cal_text);
    files.insert("calibration.json".into(), cal_text.into_bytes());
    let mut results: Value = serde_json::from_slice(&files["results.json"]).unwrap();
    results["calibration"]["sha256"] = json!(hash);
    files.insert(
        "results.json".into(),
        serde_json::to_vec_pretty(&results).unwrap(),
    );
    files.extend(test_render(&results).unwrap());
    let mut m = Manifest::parse(&files["manifest.json"]).unwrap();
    m.calibration.sha256 = hash;
    files.insert("manifest.json".into(), m.to_bytes().unwrap());
    let why = check(&reseal(files, &key())).unwrap_err();
    assert!(
        why.contains("does not follow from its experiments under rubric.toml and calibration.json"),
        "{why}"
    );
}

#[test]
fn the_signature_carries_the_verdicts_false_positive_bound_and_calibration() {
    let files = files_of(&synthetic_zip());
    let sig = String::from_utf8(files["SHA256SUMS.minisig"].clone()).unwrap();
    let results: Value = serde_json::from_slice(&files["results.json"]).unwrap();
    let bound = results["decision"]["error"]["false_positive_bound"].to_string();
    let cal = results["calibration"]["sha256"].as_str().unwrap();
    assert!(sig.contains(&format!("\tfpr:{bound}\t")), "{sig}");
    assert!(
        sig.contains(&format!("\tcalibration:{}\t", &cal[..16])),
        "{sig}"
    );
}

// ---------------------------------------------------------------------------------------
// Hostile zips

fn zip_with_extra(add: impl FnOnce(&mut zip::ZipWriter<Cursor<Vec<u8>>>)) -> Vec<u8> {
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .system(zip::System::Unix)
        .unix_permissions(0o644);
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in files_of(&synthetic_zip()) {
        w.start_file(name, opts).unwrap();
        w.write_all(&bytes).unwrap();
    }
    add(&mut w);
    w.finish().unwrap().into_inner()
}

fn file_opts() -> zip::write::SimpleFileOptions {
    zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .system(zip::System::Unix)
        .unix_permissions(0o644)
}

#[test]
fn path_escapes_symlinks_and_directories_fail_with_their_own_messages() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            zip_with_extra(|w| {
                w.start_file("../evil.sh", file_opts()).unwrap();
                w.write_all(b"x").unwrap();
            }),
            "\"../evil.sh\": `..` path component",
        ),
        (
            "absolute",
            zip_with_extra(|w| {
                w.start_file("/etc/cron.d/x", file_opts()).unwrap();
                w.write_all(b"x").unwrap();
            }),
            "\"/etc/cron.d/x\": absolute path",
        ),
        (
            "symlink",
            zip_with_extra(|w| {
                w.add_symlink("link", "/etc/passwd", file_opts()).unwrap();
            }),
            "\"link\": symbolic link",
        ),
        (
            "backslash",
            zip_with_extra(|w| {
                w.start_file("a\\b", file_opts()).unwrap();
                w.write_all(b"x").unwrap();
            }),
            "backslash",
        ),
        (
            "directory",
            zip_with_extra(|w| {
                w.add_directory("plots/", file_opts()).unwrap();
            }),
            "\"plots/\": directory entry",
        ),
    ];
    for (what, zip, expected) in cases {
        let why = check(&zip).unwrap_err();
        assert!(why.contains(expected), "{what}: {why}");
    }
}

/// Patches a field of every local and central header of entry `name`.
fn patch_headers(zip: &mut [u8], name: &str, local_at: usize, central_at: usize, value: u16) {
    let n = name.as_bytes();
    let mut i = 0;
    while i + 4 <= zip.len() {
        let sig = u32::from_le_bytes(zip[i..i + 4].try_into().unwrap());
        let (hdr, field, name_at) = match sig {
            0x0403_4b50 => (30, local_at, i + 30),
            0x0201_4b50 => (46, central_at, i + 46),
            _ => {
                i += 1;
                continue;
            }
        };
        if zip.get(name_at..name_at + n.len()) == Some(n) && i + hdr <= zip.len() {
            zip[i + field..i + field + 2].copy_from_slice(&value.to_le_bytes());
        }
        i += 1;
    }
}

#[test]
fn encrypted_compressed_duplicate_and_oversized_entries_fail() {
    let zip = synthetic_zip();
    let mut encrypted = zip.clone();
    patch_headers(&mut encrypted, "audit.toml", 6, 8, 1);
    assert!(
        check(&encrypted)
            .unwrap_err()
            .contains("\"audit.toml\": encrypted")
    );
    let mut deflated = zip.clone();
    patch_headers(&mut deflated, "audit.toml", 8, 10, 8);
    assert!(
        check(&deflated)
            .unwrap_err()
            .contains("\"audit.toml\": compressed with method 8")
    );
    // Two entries with the same name: add a same-length twin, then rename it in place.
    let mut files = files_of(&zip);
    files.insert("audit.tomm".into(), b"x = 1\n".to_vec());
    let mut dup = rezip(&files);
    let (from, to) = (b"audit.tomm", b"audit.toml");
    for i in 0..dup.len() - from.len() {
        if &dup[i..i + from.len()] == from {
            dup[i..i + to.len()].copy_from_slice(to);
        }
    }
    assert!(
        check(&dup)
            .unwrap_err()
            .contains("\"audit.toml\": appears twice")
    );
    // Zip-bomb limits.
    let tight = VerifyOptions {
        limits: Limits {
            max_total_bytes: 10_000,
            ..Limits::default()
        },
        ..opts()
    };
    let v = verify_bundle(&zip, &tight, &test_render);
    assert!(
        v.failure().unwrap().contains("limit of 10000 bytes"),
        "{}",
        v.text()
    );
    let tight = VerifyOptions {
        limits: Limits {
            max_entries: 5,
            ..Limits::default()
        },
        ..opts()
    };
    let v = verify_bundle(&zip, &tight, &test_render);
    assert!(
        v.failure().unwrap().contains("too many entries"),
        "{}",
        v.text()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_bytes_never_verify_and_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let v = verify_bundle(&bytes, &opts(), &test_render);
        prop_assert!(!v.passed());
    }

    #[test]
    fn hostile_key_and_signature_files_are_errors_not_panics(
        text in "(untrusted comment: [ -~]{0,20}\n)?[A-Za-z0-9+/=\n]{0,300}(trusted comment: [ -~]{0,20}\n)?[A-Za-z0-9+/=]{0,100}",
        cut in 0usize..400,
        flip in 0usize..400,
    ) {
        let _ = Signature::parse(&text);
        let _ = PublicKey::parse(&text);
        // Without a password no scrypt runs, whatever limits the file claims.
        let _ = seckey::decode(&text, None);
        // Damaged copies of real files fail cleanly too.
        let real = synthetic_sig_text();
        let cut = cut % (real.len() + 1);
        let _ = Signature::parse(&real[..cut]);
        let mut bytes = real.clone().into_bytes();
        let at = flip % bytes.len();
        bytes[at] = bytes[at].wrapping_add(1) & 0x7f;
        if let Ok(sig) = Signature::parse(&String::from_utf8_lossy(&bytes)) {
            let _ = key().public_key().verify(b"m", &sig, false);
        }
    }

    #[test]
    fn truncated_bundles_fail(cut in 0usize..1_000_000) {
        let zip = synthetic_zip();
        let cut = cut % zip.len();
        let v = verify_bundle(&zip[..cut], &opts(), &test_render);
        prop_assert!(!v.passed());
    }

    #[test]
    fn mutated_bundles_fail_unless_the_content_is_unchanged(at in 0usize..1_000_000, xor in 1u8..=255) {
        let zip = synthetic_zip();
        let mut bad = zip.clone();
        let at = at % bad.len();
        bad[at] ^= xor;
        let v = verify_bundle(&bad, &opts(), &test_render);
        if v.passed() {
            // Only bytes no reader interprets (e.g. "version needed") may change silently.
            prop_assert_eq!(files_of(&bad), files_of(&zip));
        }
    }
}

// ---------------------------------------------------------------------------------------
// minisign interop

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/minisign")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(data(name)).unwrap()
}

#[test]
fn signatures_check_with_the_minisign_verify_crate() {
    let files = files_of(&demo().zip);
    let pk = minisign_verify::PublicKey::from_base64(&demo_key().public_key().to_base64()).unwrap();
    let sig = minisign_verify::Signature::decode(
        std::str::from_utf8(&files["SHA256SUMS.minisig"]).unwrap(),
    )
    .unwrap();
    pk.verify(&files["SHA256SUMS"], &sig, false).unwrap();
    assert!(pk.verify(b"other", &sig, false).is_err());
    assert!(sig.trusted_comment().contains("verdict:"));
}

#[test]
fn keys_and_signatures_made_by_the_minisign_cli_work() {
    // Checked-in output of the stock CLI (see tests/data/minisign/README.md).
    let pk = PublicKey::parse(&read("nopassword.pub")).unwrap();
    let msg = std::fs::read(data("hello.txt")).unwrap();
    let sig = Signature::parse(&read("hello.txt.minisig")).unwrap();
    pk.verify(&msg, &sig, false).unwrap();
    assert_eq!(sig.trusted_comment, "signed by the minisign 0.11 CLI");
    let legacy = Signature::parse(&read("legacy.txt.minisig")).unwrap();
    let e = pk.verify(&msg, &legacy, false).unwrap_err();
    assert!(e.to_string().contains("legacy"), "{e}");
    pk.verify(&msg, &legacy, true).unwrap();
    // The CLI's secret keys load, plain and password-protected, and sign for their pubkey.
    let sk = seckey::decode(&read("nopassword.key"), None).unwrap();
    assert_eq!(sk.public_key(), pk);
    let ours = sk.sign(b"x", "t", "u").unwrap();
    pk.verify(b"x", &ours, false).unwrap();
    let protected = read("password-pw.key");
    assert!(seckey::is_encrypted(&protected).unwrap());
    assert!(seckey::decode(&protected, None).is_err());
    let sk = seckey::decode(&protected, Some(b"pw")).unwrap();
    assert_eq!(
        sk.public_key(),
        PublicKey::parse(&read("password-pw.pub")).unwrap()
    );
}

fn minisign_cli() -> Option<&'static str> {
    let cli = "/usr/bin/minisign";
    if Path::new(cli).exists() {
        Some(cli)
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have the minisign CLI (.ci/run installs it)"
        );
        None
    }
}

fn sh(cmd: &mut std::process::Command) -> std::process::Output {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

#[test]
fn stock_tools_check_an_extracted_bundle() {
    let Some(minisign) = minisign_cli() else {
        return;
    };
    let d = demo();
    let out = tmp();
    // Extract with Python's zipfile (an independent reader), then coreutils and minisign.
    sh(std::process::Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(d.dir.join("demo.audit.zip"))
        .arg(out.path()));
    sh(std::process::Command::new("sha256sum")
        .args(["--strict", "-c", "SHA256SUMS"])
        .current_dir(out.path()));
    let o = sh(std::process::Command::new(minisign)
        .args(["-Vm", "SHA256SUMS", "-p"])
        .arg(d.dir.join("demo.pub"))
        .current_dir(out.path()));
    assert!(String::from_utf8_lossy(&o.stdout).contains("verdict:"));
    // Tampering is caught by the stock tools too.
    std::fs::write(out.path().join("SHA256SUMS"), b"tampered\n").unwrap();
    let o = std::process::Command::new(minisign)
        .args(["-Vm", "SHA256SUMS", "-p"])
        .arg(d.dir.join("demo.pub"))
        .current_dir(out.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[test]
fn keys_made_by_either_tool_sign_for_the_other() {
    let Some(minisign) = minisign_cli() else {
        return;
    };
    let dir = tmp();
    let p = |n: &str| dir.path().join(n);
    // minisign makes a key and signs; we verify, and load its secret key.
    sh(std::process::Command::new(minisign)
        .args(["-G", "-W", "-p"])
        .arg(p("cli.pub"))
        .arg("-s")
        .arg(p("cli.key")));
    std::fs::write(p("file.txt"), b"payload\n").unwrap();
    sh(std::process::Command::new(minisign)
        .args(["-S", "-W", "-s"])
        .arg(p("cli.key"))
        .arg("-m")
        .arg(p("file.txt")));
    let pk = PublicKey::parse(&std::fs::read_to_string(p("cli.pub")).unwrap()).unwrap();
    let sig = Signature::parse(&std::fs::read_to_string(p("file.txt.minisig")).unwrap()).unwrap();
    pk.verify(b"payload\n", &sig, false).unwrap();
    let sk = seckey::load(&p("cli.key"), None).unwrap();
    assert_eq!(sk.public_key(), pk);
    // `audit keygen` makes a plain key; the library writes a password-protected one (with
    // light scrypt limits: minisign reads them from the file). minisign signs with both and
    // verifies against our public keys.
    let o = run(&["keygen", "--out", &path_str(&p("ours")), "--no-password"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let light = seckey::KdfParams {
        opslimit: 1 << 16,
        memlimit: 1 << 24,
    };
    seckey::write_key_pair(
        &SecretKey::generate().unwrap(),
        &p("locked"),
        Some((b"hunter2", light)),
    )
    .unwrap();
    for (prefix, password) in [("ours", None), ("locked", Some("hunter2\n"))] {
        let mut cmd = std::process::Command::new(minisign);
        cmd.arg("-S")
            .arg("-s")
            .arg(p(&format!("{prefix}.key")))
            .arg("-x")
            .arg(p(&format!("{prefix}.minisig")))
            .arg("-m")
            .arg(p("file.txt"));
        if password.is_none() {
            cmd.arg("-W");
        }
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(pw) = password {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(pw.as_bytes())
                .unwrap();
        } else {
            drop(child.stdin.take());
        }
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "{prefix}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        sh(std::process::Command::new(minisign)
            .args(["-V", "-p"])
            .arg(p(&format!("{prefix}.pub")))
            .arg("-x")
            .arg(p(&format!("{prefix}.minisig")))
            .arg("-m")
            .arg(p("file.txt")));
    }
}

// ---------------------------------------------------------------------------------------
// keygen, diff

#[test]
fn keygen_writes_a_private_key_file_and_never_overwrites() {
    let dir = tmp();
    let prefix = path_str(&dir.path().join("audit"));
    let o = run(&["keygen", "--out", &prefix, "--no-password"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let key_path = dir.path().join("audit.key");
    let text = std::fs::read_to_string(&key_path).unwrap();
    assert!(!stdout(&o).contains(text.lines().nth(1).unwrap()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(seckey::readable_by_others_warning(&key_path).is_none());
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let w = seckey::readable_by_others_warning(&key_path).unwrap();
        assert!(w.contains("readable by other users"), "{w}");
    }
    let sk = seckey::load(&key_path, None).unwrap();
    let pk =
        PublicKey::parse(&std::fs::read_to_string(dir.path().join("audit.pub")).unwrap()).unwrap();
    assert_eq!(sk.public_key(), pk);
    let o = run(&["keygen", "--out", &prefix, "--no-password"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("refusing to overwrite"),
        "{}",
        stderr(&o)
    );
    // One of --password-file / --no-password is required.
    assert_eq!(run(&["keygen", "--out", &prefix]).status.code(), Some(2));
}

#[test]
fn diff_reports_verdict_rules_and_numbers_with_paths() {
    let d = demo();
    let dir = tmp();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(
        a.join("results.json"),
        serde_json::to_vec(&d.results).unwrap(),
    )
    .unwrap();
    let zip = path_str(&d.dir.join("demo.audit.zip"));
    // The bundle and a folder with the same results agree.
    let o = run(&["diff", &zip, &path_str(&a)]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    // A tiny change within tolerance is no difference; a real one is, with its path.
    let mut r = d.results.clone();
    let first = r["decision"]["evidence"][0]["rule"]
        .as_str()
        .unwrap()
        .to_string();
    r["decision"]["verdict"] = json!("INCONCLUSIVE");
    r["decision"]["evidence"][0]["fired"] =
        json!(!r["decision"]["evidence"][0]["fired"].as_bool().unwrap());
    r["experiments"]["e4"]["marker"] = json!(1.0);
    std::fs::write(b.join("results.json"), serde_json::to_vec(&r).unwrap()).unwrap();
    let o = run(&["diff", &zip, &path_str(&b)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("verdict: DERIVED → INCONCLUSIVE"), "{out}");
    assert!(out.contains(&format!("{first}: fired")), "{out}");
    assert!(
        out.contains("$.experiments.e4.marker: (absent) vs 1.0"),
        "{out}"
    );
}

/// Golden results of a few lab pairs (no controls, every experiment): a derived fine-tune,
/// a head permutation, and an independent pair across architectures.
#[test]
fn lab_pair_results_match_their_golden_files() {
    use weight_audit::pipeline::{RubricSource, compare_models};
    let (dir, manifest) = crate::util::lab_suite_at(128);
    let ids: Vec<String> = weight_audit::experiments::registry::default_ids();
    let rubric = RubricSource::load(None).unwrap();
    for id in ["d31-bert-ft", "d15-head-perm", "i10-bert-vs-llama"] {
        let pair = manifest.pairs.iter().find(|p| p.id == id).unwrap();
        let open = |name: &str| {
            weight_audit::model::Model::open(
                Box::new(weight_audit::source::local::LocalSource::open(&dir.join(name)).unwrap()),
                &Default::default(),
            )
            .unwrap()
        };
        let (a, b) = (open(&pair.a), open(&pair.b));
        let references = vec![path_str(&dir.join(&pair.a)), path_str(&dir.join(&pair.b))];
        let (results, _) = compare_models(&a, &b, &[], &references, &ids, &rubric).unwrap();
        let value = serde_json::to_value(&results).unwrap();
        golden(&format!("lab/{id}.json"), &without_digests(&value));
    }
}

#[test]
fn unsigned_bundles_pass_only_when_allowed() {
    let dir = tmp();
    let mut inputs = synthetic();
    // The CLI verifies with the real renderer: give the bundle the reports it renders.
    inputs.rendered = real_reports(&serde_json::from_slice(&inputs.results_json).unwrap()).unwrap();
    let zip = write::write_bundle_at(&inputs, None, ZipTime::DEFAULT).unwrap();
    let path = dir.path().join("unsigned.zip");
    std::fs::write(&path, zip).unwrap();
    let o = run(&["verify", &path_str(&path), "--allow-unsigned"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("unsigned (allowed)"), "{}", stdout(&o));
    let o = run(&[
        "verify",
        &path_str(&path),
        "-P",
        &key().public_key().to_base64(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the bundle is unsigned"),
        "{}",
        stderr(&o)
    );
}
