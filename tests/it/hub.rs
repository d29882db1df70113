//! The Hub source against the loopback Hub-compatible server: pinning, Range reads, faults,
//! tokens, caches and coalescing. Make a repo, serve it, read, compare.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weight_audit::model::{Model, ModelOptions};
use weight_audit::source::hub::HubSource;
use weight_audit::source::{ByteRange, FileRange, HubClient, HubOptions, Source};
use weight_audit_hub::{Fault, FaultHost, FaultKind, RepoSpec, TestHub};

use crate::util::*;

fn options(hub: &TestHub) -> HubOptions {
    HubOptions {
        endpoint: hub.endpoint(),
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        max_attempts: 4,
        ..HubOptions::default()
    }
}

fn client(opts: HubOptions) -> Arc<HubClient> {
    Arc::new(HubClient::new(opts).unwrap())
}

fn open(c: &Arc<HubClient>, repo: &str) -> anyhow::Result<HubSource> {
    HubSource::open(c.clone(), repo, "main")
}

/// A served repo with a GLM-like model (multi-MB shards) and a 32 MiB opaque blob.
fn served(dir: &Path) -> (TestHub, String) {
    glm_like(dir, 3, 20_000);
    let blob = fs::File::create(dir.join("big.bin")).unwrap();
    blob.set_len(32 << 20).unwrap();
    fs::write(dir.join("README.md"), "# test model\n").unwrap();
    let hub = TestHub::start().unwrap();
    let sha = hub.add_repo(RepoSpec::new("org/model", dir)).unwrap();
    (hub, sha)
}

fn range(path: &str, start: u64, end: u64) -> FileRange {
    FileRange {
        path: path.into(),
        range: ByteRange::new(start, end),
    }
}

/// [`served`] plus a source opened on it with the test options.
fn served_source() -> (tempfile::TempDir, TestHub, HubSource) {
    let dir = tmp();
    let (hub, _) = served(dir.path());
    let src = open(&client(options(&hub)), "org/model").unwrap();
    (dir, hub, src)
}

const SHARD: &str = "model-00001-of-00003.safetensors";

#[test]
fn hub_and_local_inventories_are_identical_and_only_headers_are_fetched() {
    let dir = tmp();
    let (hub, sha) = served(dir.path());
    let local = run(&["inventory", &path_str(dir.path())]);
    let remote = run(&[
        "inventory",
        "hf:org/model",
        "--endpoint",
        &hub.endpoint(),
        "--no-cache",
    ]);
    assert!(remote.status.success(), "{}", stderr(&remote));
    assert_eq!(stdout(&local), stdout(&remote));
    assert!(
        stderr(&remote).contains(&format!("hf:org/model@{sha}")),
        "{}",
        stderr(&remote)
    );

    // Bytes: the pin listing, config and index whole, and one header probe per shard.
    let stats = hub.stats();
    let small: u64 = ["config.json", "model.safetensors.index.json"]
        .iter()
        .map(|f| fs::metadata(dir.path().join(f)).unwrap().len())
        .sum();
    let shard_total: u64 = (1..=3)
        .map(|i| {
            fs::metadata(
                dir.path()
                    .join(format!("model-0000{i}-of-00003.safetensors")),
            )
            .unwrap()
            .len()
        })
        .sum();
    let file_bytes: u64 = stats.ranges.iter().map(|(_, a, b)| b - a + 1).sum();
    assert_eq!(
        stats.ranges.len(),
        3,
        "one ranged read per shard: {:?}",
        stats.ranges
    );
    for (path, first, last) in &stats.ranges {
        let size = fs::metadata(dir.path().join(path.trim_start_matches("org/model/")))
            .unwrap()
            .len();
        assert_eq!(
            (*first, *last + 1),
            (0, size.min(weight_audit::header::HEADER_PROBE_BYTES)),
            "{path}"
        );
    }
    assert!(
        file_bytes * 10 < shard_total,
        "headers are a small part of the shards"
    );
    assert!(
        stats.body_bytes_sent < file_bytes + small + 64 * 1024,
        "{stats:?}"
    );
}

#[test]
fn pin_over_the_hub_records_commit_and_lfs_hashes() {
    let dir = tmp();
    let (hub, sha) = served(dir.path());
    let out = run(&[
        "pin",
        "hf:org/model",
        "--endpoint",
        &hub.endpoint(),
        "--no-cache",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pins: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let m = &pins["models"][0];
    assert_eq!(m["sha"], sha.as_str());
    assert_eq!(m["revision"], "main");
    let shard = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == SHARD)
        .unwrap();
    let expected = weight_audit::source::local::sha256_file(&dir.path().join(SHARD)).unwrap();
    assert_eq!(shard["sha256"], expected.as_str());
    assert_eq!(shard["lfs"], true);
    assert!(stderr(&out).contains("1 requests"), "{}", stderr(&out));
}

#[test]
fn transient_faults_are_retried() {
    let (dir, hub, src) = served_source();
    hub.set_faults(vec![
        Fault::new(FaultKind::Status {
            code: 503,
            retry_after: None,
        })
        .host(FaultHost::Cdn)
        .times(1),
        Fault::new(FaultKind::CloseConnection)
            .host(FaultHost::Cdn)
            .times(1),
        Fault::new(FaultKind::TruncateBody { after: 10 })
            .host(FaultHost::Cdn)
            .times(1),
    ]);
    let got = src.read_ranges(&[range(SHARD, 100, 200)]).unwrap();
    let file = fs::read(dir.path().join(SHARD)).unwrap();
    assert_eq!(got[0], file[100..200]);
    assert_eq!(src.stats().retries, 3);
    assert_eq!(hub.stats().faults_fired, 3);
}

#[test]
fn retry_after_is_honoured() {
    let (_dir, hub, src) = served_source();
    hub.set_faults(vec![
        Fault::new(FaultKind::Status {
            code: 429,
            retry_after: Some("1".into()),
        })
        .times(1),
    ]);
    let t = Instant::now();
    src.read_ranges(&[range(SHARD, 0, 8)]).unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        t.elapsed()
    );
    // A Retry-After beyond what we accept fails at once with the reason.
    let c = client(HubOptions {
        retry_after_max: Duration::from_secs(5),
        ..options(&hub)
    });
    let src = open(&c, "org/model").unwrap();
    hub.set_faults(vec![Fault::new(FaultKind::Status {
        code: 429,
        retry_after: Some("3600".into()),
    })]);
    let e = format!("{:#}", src.read_ranges(&[range(SHARD, 0, 8)]).unwrap_err());
    assert!(e.contains("3600s"), "{e}");
}

#[test]
fn persistent_failures_name_the_url_and_range() {
    let dir = tmp();
    let (hub, sha) = served(dir.path());
    let c = client(options(&hub));
    let src = open(&c, "org/model").unwrap();
    hub.set_faults(vec![Fault::new(FaultKind::Status {
        code: 503,
        retry_after: None,
    })]);
    let e = format!(
        "{:#}",
        src.read_ranges(&[range(SHARD, 10, 20)]).unwrap_err()
    );
    assert!(
        e.contains(&format!("/org/model/resolve/{sha}/{SHARD}")),
        "{e}"
    );
    assert!(
        e.contains("bytes=10-19") && e.contains("gave up after 4 attempts"),
        "{e}"
    );
    hub.set_faults(vec![
        Fault::new(FaultKind::TruncateBody { after: 3 }).host(FaultHost::Cdn),
    ]);
    let e = format!(
        "{:#}",
        src.read_ranges(&[range(SHARD, 10, 20)]).unwrap_err()
    );
    assert!(e.contains("bytes") && e.contains("gave up"), "{e}");
}

#[test]
fn a_range_ignoring_server_never_costs_more_than_a_mebibyte() {
    let (_dir, hub, src) = served_source();
    hub.set_faults(vec![Fault::new(FaultKind::IgnoreRange)]);
    let e = format!(
        "{:#}",
        src.read_ranges(&[range("big.bin", 1 << 20, (1 << 20) + 100)])
            .unwrap_err()
    );
    assert!(e.contains("ignored the Range header"), "{e}");
    assert!(src.stats().bytes_fetched <= 1 << 20, "{:?}", src.stats());
    // From byte 0 the asked prefix is usable: keep it, hang up on the rest.
    let got = src.read_ranges(&[range("big.bin", 0, 4096)]).unwrap();
    assert_eq!(got[0].len(), 4096);
    assert!(
        src.stats().bytes_fetched <= 4096 + (1 << 20),
        "{:?}",
        src.stats()
    );
}

#[test]
fn lying_servers_are_refused() {
    let dir = tmp();
    let (hub, _) = served(dir.path());
    for (kind, want) in [
        (FaultKind::WrongContentRange, "does not match the requested"),
        (FaultKind::ExtraBytes, "bytes"),
        (FaultKind::WrongCommit, "X-Repo-Commit"),
    ] {
        // A fresh client each time: a known blob URL skips the Hub (and its commit header).
        let c = client(options(&hub));
        let src = open(&c, "org/model").unwrap();
        hub.set_faults(vec![Fault::new(kind.clone())]);
        let e = format!("{:#}", src.read_ranges(&[range(SHARD, 0, 64)]).unwrap_err());
        assert!(e.contains(want), "{kind:?}: {e}");
        assert!(!e.contains("gave up"), "{kind:?} is not retried: {e}");
    }
}

#[test]
fn blob_urls_are_reused_and_refreshed_when_they_expire() {
    let (dir, hub, src) = served_source();
    src.read_ranges(&[range(SHARD, 0, 64)]).unwrap();
    hub.reset_stats();
    src.read_ranges(&[range(SHARD, 1000, 1064)]).unwrap();
    let s = hub.stats();
    assert_eq!((s.resolve_requests, s.cdn_requests), (0, 1), "{s:?}");
    // The CDN refuses the old URL once: back through the Hub, transparently.
    hub.set_faults(vec![
        Fault::new(FaultKind::Status {
            code: 403,
            retry_after: None,
        })
        .host(FaultHost::Cdn)
        .times(1),
    ]);
    hub.reset_stats();
    let got = src.read_ranges(&[range(SHARD, 2000, 2064)]).unwrap();
    assert_eq!(
        got[0],
        fs::read(dir.path().join(SHARD)).unwrap()[2000..2064]
    );
    let s = hub.stats();
    assert_eq!((s.resolve_requests, s.cdn_requests), (1, 2), "{s:?}");
}

#[test]
fn a_stalled_body_times_out_and_is_retried() {
    let dir = tmp();
    let (hub, _) = served(dir.path());
    let c = client(HubOptions {
        read_timeout: Duration::from_millis(300),
        ..options(&hub)
    });
    let src = open(&c, "org/model").unwrap();
    hub.set_faults(vec![
        Fault::new(FaultKind::Stall { ms: 3000 })
            .host(FaultHost::Cdn)
            .times(1),
    ]);
    let got = src.read_ranges(&[range(SHARD, 0, 64)]).unwrap();
    assert_eq!(got[0].len(), 64);
    assert_eq!(src.stats().retries, 1);
}

#[test]
fn gated_repositories_need_the_token_and_it_never_leaves_the_hub() {
    let dir = tmp();
    glm_like(dir.path(), 2, 100);
    let hub = TestHub::start().unwrap();
    hub.add_repo(RepoSpec::new("org/gated", dir.path()).gated("hf_secret"))
        .unwrap();
    // Metadata is public, files are not.
    let anon = client(options(&hub));
    let e = format!(
        "{:#}",
        Model::open(
            Box::new(open(&anon, "org/gated").unwrap()),
            &ModelOptions::default()
        )
        .err()
        .unwrap()
    );
    assert!(e.contains("gated") && e.contains("HF_TOKEN"), "{e}");
    let wrong = client(HubOptions {
        token: Some("hf_wrong".into()),
        ..options(&hub)
    });
    let e = format!(
        "{:#}",
        Model::open(
            Box::new(open(&wrong, "org/gated").unwrap()),
            &ModelOptions::default()
        )
        .err()
        .unwrap()
    );
    assert!(e.contains("403"), "{e}");
    hub.reset_stats();
    let good = client(HubOptions {
        token: Some("hf_secret".into()),
        ..options(&hub)
    });
    let m = Model::open(
        Box::new(open(&good, "org/gated").unwrap()),
        &ModelOptions::default(),
    )
    .unwrap();
    assert!(!m.tensors().is_empty());
    let stats = hub.stats();
    assert!(stats.auth_headers_seen_at_hub > 0);
    assert!(
        stats.cdn_requests > 0 && !stats.cdn_saw_authorization,
        "{stats:?}"
    );
    // Through the CLI the token comes from HF_TOKEN, and never shows in output.
    let out = audit()
        .args([
            "inventory",
            "hf:org/gated",
            "--endpoint",
            &hub.endpoint(),
            "--no-cache",
        ])
        .env("HF_TOKEN", "hf_secret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hf_secret") && !stdout(&out).contains("hf_secret"));
}

#[test]
fn missing_repositories_and_revisions_are_named() {
    let dir = tmp();
    let (hub, _) = served(dir.path());
    let c = client(options(&hub));
    let e = format!("{:#}", open(&c, "org/nothing").err().unwrap());
    assert!(
        e.contains("repository does not exist") && e.contains("/api/models/org/nothing"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        HubSource::open(c.clone(), "org/model", "v9").err().unwrap()
    );
    assert!(e.contains("revision does not exist"), "{e}");
    let e = format!(
        "{:#}",
        open(&c, "org/model")
            .unwrap()
            .read_file("nope.json", 100)
            .unwrap_err()
    );
    assert!(e.contains("no file \"nope.json\""), "{e}");
}

#[test]
fn revisions_pin_to_their_own_commits() {
    let (a, b) = (tmp(), tmp());
    glm_like(a.path(), 1, 100);
    glm_like(b.path(), 2, 100);
    let hub = TestHub::start().unwrap();
    let main_sha = hub
        .add_repo(RepoSpec::new("org/m", a.path()).revision("dev", b.path()))
        .unwrap();
    let c = client(options(&hub));
    let dev = HubSource::open(c.clone(), "org/m", "dev").unwrap();
    assert_ne!(dev.sha(), main_sha);
    assert!(dev.file("model.safetensors.index.json").is_some());
    let by_sha = HubSource::open(c.clone(), "org/m", &main_sha).unwrap();
    assert_eq!(by_sha.sha(), main_sha);
    assert!(by_sha.file("model.safetensors").is_some());
}

#[test]
fn the_range_cache_serves_reruns_and_offline_runs() {
    let dir = tmp();
    let cache = tmp();
    let (hub, _) = served(dir.path());
    let with_cache = HubOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..options(&hub)
    };
    let first = {
        let c = client(with_cache.clone());
        Model::open(
            Box::new(open(&c, "org/model").unwrap()),
            &ModelOptions::default(),
        )
        .unwrap();
        let src = open(&c, "org/model").unwrap();
        src.read_ranges(&[range(SHARD, 1000, 5000), range(SHARD, 6000, 9000)])
            .unwrap()
    };
    hub.reset_stats();
    let c = client(HubOptions {
        offline: true,
        ..with_cache
    });
    let m = Model::open(
        Box::new(open(&c, "org/model").unwrap()),
        &ModelOptions::default(),
    )
    .unwrap();
    assert!(!m.tensors().is_empty());
    let src = open(&c, "org/model").unwrap();
    // Sub-ranges of cached blocks are served too.
    let again = src
        .read_ranges(&[range(SHARD, 1000, 5000), range(SHARD, 7000, 8000)])
        .unwrap();
    assert_eq!(again[0], first[0]);
    assert_eq!(again[1], first[1][1000..2000]);
    assert_eq!(hub.stats().requests, 0, "offline means no request at all");
    assert!(src.stats().cache_hits >= 2);
    let e = format!(
        "{:#}",
        src.read_ranges(&[range(SHARD, 2_000_000, 2_000_010)])
            .unwrap_err()
    );
    assert!(
        e.contains("offline") && e.contains("not in the cache"),
        "{e}"
    );
    // Offline without ever having pinned: a clear error.
    let empty = tmp();
    let c = client(HubOptions {
        offline: true,
        cache_dir: Some(empty.path().into()),
        ..options(&hub)
    });
    let e = format!("{:#}", open(&c, "org/model").err().unwrap());
    assert!(e.contains("never been resolved"), "{e}");
}

#[test]
fn files_in_the_hub_cache_are_read_from_disk() {
    let dir = tmp();
    let (hub, sha) = served(dir.path());
    let hf = tmp();
    let snap = hf.path().join("models--org--model/snapshots").join(&sha);
    fs::create_dir_all(&snap).unwrap();
    fs::copy(dir.path().join(SHARD), snap.join(SHARD)).unwrap();
    let c = client(HubOptions {
        hub_cache: Some(hf.path().into()),
        ..options(&hub)
    });
    let src = open(&c, "org/model").unwrap();
    hub.reset_stats();
    let got = src.read_ranges(&[range(SHARD, 0, 100)]).unwrap();
    assert_eq!(got[0], fs::read(dir.path().join(SHARD)).unwrap()[..100]);
    assert_eq!(hub.stats().requests, 0);
    assert_eq!(src.stats().local_bytes, 100);
}

#[test]
fn coalescing_turns_many_small_reads_into_few_requests() {
    let dir = tmp();
    let (hub, _) = served(dir.path());
    let ranges: Vec<FileRange> = (0..200)
        .map(|i| range(SHARD, i * 1024, i * 1024 + 100))
        .collect();
    let read = |gap: u64| {
        let c = client(HubOptions {
            coalesce_gap: gap,
            ..options(&hub)
        });
        let src = open(&c, "org/model").unwrap();
        hub.reset_stats();
        let got = src.read_ranges(&ranges).unwrap();
        (got, hub.stats().cdn_requests)
    };
    let (apart, n_apart) = read(0);
    let (merged, n_merged) = read(64 * 1024);
    assert_eq!(apart, merged);
    assert_eq!(n_apart, 200);
    assert_eq!(n_merged, 1);
    let file = fs::read(dir.path().join(SHARD)).unwrap();
    assert_eq!(merged[7], file[7 * 1024..7 * 1024 + 100]);
}

#[test]
fn small_files_behind_a_relative_redirect_are_followed() {
    let dir = tmp();
    let (hub, _) = served(dir.path());
    hub.set_resolve_cache_redirect(true);
    let c = client(options(&hub));
    let src = open(&c, "org/model").unwrap();
    assert_eq!(src.read_file("README.md", 1000).unwrap(), b"# test model\n");
}

#[test]
fn added_latency_slows_but_never_breaks_reads() {
    let dir = tmp();
    let (hub, _) = served(dir.path());
    let c = client(HubOptions {
        coalesce_gap: 0,
        ..options(&hub)
    });
    let src = open(&c, "org/model").unwrap();
    hub.set_faults(vec![Fault::new(FaultKind::Latency { ms: 50 })]);
    let ranges: Vec<FileRange> = (0..16)
        .map(|i| range(SHARD, i * 4096, i * 4096 + 64))
        .collect();
    let got = src.read_ranges(&ranges).unwrap();
    assert_eq!(got.len(), 16);
    assert_eq!(src.stats().retries, 0);
    assert!(hub.stats().faults_fired >= 16);
}
