//! `audit run`: one command from models to a signed bundle; `--plan`; the configuration file;
//! and a run through the loopback Hub whose second pass reads every weight from the cache.

use std::path::{Path, PathBuf};

use weight_audit::bundle::archive_read::{self, Limits};
use weight_audit_hub::{RepoSpec, TestHub};

use crate::util::{lab_suite_at, path_str, run, stderr, stdout, tmp};

/// A derived pair and an independent control from the shared narrow lab suite.
fn lab_models() -> [PathBuf; 3] {
    let (dir, _) = lab_suite_at(128);
    ["glm-a", "solar-from-glm", "solar-a"].map(|m| dir.join(m))
}

const CONFIG: &str = "experiments = [\"e1\", \"e3\", \"e4\"]\n\n[params.e4]\npermutations = 200\n";

pub fn bundle_file(zip: &[u8], name: &str) -> String {
    let entries = archive_read::read(zip, &Limits::default()).unwrap();
    let e = entries.iter().find(|e| e.name == name).unwrap();
    String::from_utf8(e.data.to_vec()).unwrap()
}

fn keygen(dir: &Path) -> (String, String) {
    let prefix = path_str(&dir.join("audit"));
    let o = run(&["keygen", "--out", &prefix, "--no-password"]);
    assert!(o.status.success(), "{}", stderr(&o));
    (format!("{prefix}.key"), format!("{prefix}.pub"))
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_run_writes_a_signed_bundle_that_verifies_and_records_its_configuration() {
    let [a, b, c] = lab_models();
    let dir = tmp();
    let (key, public) = keygen(dir.path());
    let config = dir.path().join("audit.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let out = |name: &str| path_str(&dir.path().join(name).join("x.audit.zip"));
    let args = |o: &str| -> Vec<String> {
        [
            "run",
            &path_str(&a),
            &path_str(&b),
            "--control",
            &path_str(&c),
            "--config",
            &path_str(&config),
            "--key",
            &key,
            "--out",
            o,
        ]
        .map(str::to_string)
        .to_vec()
    };
    let mut zips = Vec::new();
    for name in ["first", "second"] {
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
        let argv = args(&out(name));
        let o = run(&argv.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        assert!(stdout(&o).contains("verdict: "), "{}", stdout(&o));
        assert!(stdout(&o).contains("bundle: "), "{}", stdout(&o));
        zips.push(std::fs::read(out(name)).unwrap());
    }
    // Same inputs, configuration and key, written in different folders: the same bytes.
    assert!(zips[0] == zips[1], "two runs gave different bundles");
    let v = run(&["verify", &out("first"), "--pubkey", &public]);
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
    // The bundled audit.toml is the effective configuration: local models pinned by name
    // and content digest (never a path), the experiments, the overridden parameter and
    // every default beside it.
    let toml = bundle_file(&zips[0], "audit.toml");
    assert!(toml.contains("permutations = 200"), "{toml}");
    assert!(toml.contains("window_elems"), "{toml}");
    assert!(toml.contains("\"local:glm-a@sha256:"), "{toml}");
    let lab = a.parent().unwrap();
    for name in [
        "audit.toml",
        "results.json",
        "manifest.json",
        "revisions.json",
    ] {
        let text = bundle_file(&zips[0], name);
        assert!(
            !text.contains(&path_str(lab)),
            "{name} names {}",
            lab.display()
        );
    }
    let back = weight_audit::config::AuditConfig::parse(&toml, "bundled audit.toml").unwrap();
    assert_eq!(
        back.experiment_ids().unwrap(),
        vec!["e1".to_string(), "e3".into(), "e4".into()]
    );
    // The same audit re-run from the bundle's own configuration gives the same numbers,
    // with the model folders moved elsewhere: one named with --input, two found by name in
    // a search folder.
    let moved = dir.path().join("moved");
    for m in [&a, &b, &c] {
        copy_folder(m, &moved.join("elsewhere").join(m.file_name().unwrap()));
    }
    std::fs::rename(moved.join("elsewhere/glm-a"), moved.join("renamed-folder")).unwrap();
    let named = format!("glm-a={}", path_str(&moved.join("renamed-folder")));
    let r = run(&[
        "verify",
        &out("first"),
        "--pubkey",
        &public,
        "--reproduce",
        "--input",
        &named,
        "--inputs-dir",
        &path_str(&moved.join("elsewhere")),
    ]);
    assert!(r.status.success(), "{}{}", stdout(&r), stderr(&r));
    assert!(stdout(&r).contains("ok    reproduce"), "{}", stdout(&r));
}

#[test]
fn a_dry_run_prints_the_plan_and_writes_nothing() {
    let [a, b, _] = lab_models();
    let dir = tmp();
    let out = dir.path().join("never.audit.zip");
    let o = run(&[
        "run",
        &path_str(&a),
        &path_str(&b),
        "--plan",
        "--out",
        &path_str(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for id in ["e1 ", "e3 ", "e8 ", "total "] {
        assert!(text.contains(id), "no {id:?} row in\n{text}");
    }
    assert!(text.contains("of weights"), "{text}");
    assert!(!out.exists());
    // Unknown parameters are refused before anything is read.
    std::fs::write(
        dir.path().join("bad.toml"),
        "[params.e8]\nrow_fractoin = 1\n",
    )
    .unwrap();
    let o = run(&[
        "run",
        &path_str(&a),
        &path_str(&b),
        "--plan",
        "--config",
        &path_str(&dir.path().join("bad.toml")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("row_fractoin"), "{}", stderr(&o));
}

#[test]
fn a_second_run_through_the_hub_reads_every_weight_from_the_cache() {
    let [a, b, _] = lab_models();
    let hub = TestHub::start().unwrap();
    hub.add_repo(RepoSpec::new("lab/glm-a", &a)).unwrap();
    hub.add_repo(RepoSpec::new("lab/solar-from-glm", &b))
        .unwrap();
    let dir = tmp();
    let cache = path_str(&dir.path().join("cache"));
    let endpoint = hub.endpoint();
    let audit = |name: &str, a: &str, b: &str| {
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
        let out = path_str(&dir.path().join(name).join("x.audit.zip"));
        let o = run(&[
            "run",
            a,
            b,
            "--endpoint",
            &endpoint,
            "--cache-dir",
            &cache,
            "--out",
            &out,
        ]);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        std::fs::read(out).unwrap()
    };
    let go = |name: &str| audit(name, "hf:lab/glm-a", "hf:lab/solar-from-glm");
    let first = go("first");
    let ranges_first = hub.stats().ranges.len();
    assert!(ranges_first > 0);
    hub.reset_stats();
    let second = go("second");
    // Nothing but the listings is asked again: every range comes from the cache.
    assert_eq!(hub.stats().ranges.len(), 0, "{:?}", hub.stats().ranges);
    assert!(first == second, "the cached run gave a different bundle");
    // Hub inputs are pinned to their commit in the bundle.
    let toml = bundle_file(&first, "audit.toml");
    assert!(toml.contains("hf:lab/glm-a@"), "{toml}");
    // Named by commit, a cached audit asks the Hub nothing at all: listings at a commit
    // are immutable, so they come from the cache too.
    let pinned: Vec<String> = ["lab/glm-a", "lab/solar-from-glm"]
        .iter()
        .map(|r| {
            let at = toml.find(&format!("hf:{r}@")).unwrap() + r.len() + 4;
            format!("hf:{r}@{}", &toml[at..at + 40])
        })
        .collect();
    let by_commit = |name: &str| audit(name, &pinned[0], &pinned[1]);
    let third = by_commit("third");
    hub.reset_stats();
    let fourth = by_commit("fourth");
    assert_eq!(hub.stats().requests, 0, "{:?}", hub.stats());
    assert!(third == fourth, "the cached run gave a different bundle");
}
