//! The loopback Hub test server: endpoints, ranges, gating, errors, faults, keep-alive, stats,
//! malformed input and huge sparse files. Clients are reqwest (as the real client uses) or raw
//! sockets where the bytes on the wire matter.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Client, Response, StatusCode, redirect::Policy};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use weight_audit_hub::{Fault, FaultHost, FaultKind, RepoSpec, TestHub};

const REPO: &str = "org/model";
const CONFIG: &[u8] = br#"{"model_type":"llama","hidden_size":8}"#;

/// Deterministic non-repeating-looking bytes so off-by-one ranges are caught.
fn pattern(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 251) as u8)
        .collect()
}

fn write(dir: &Path, rel: &str, bytes: &[u8]) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

struct Fixture {
    hub: TestHub,
    sha: String,
    weights: Vec<u8>,
    _dir: TempDir,
}

/// A repo with an LFS weight file, small files, a nested file and one needing URL encoding.
fn fixture_dir() -> (TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let weights = pattern(4096, 7);
    write(dir.path(), "model.safetensors", &weights);
    write(dir.path(), "config.json", CONFIG);
    write(dir.path(), "tokenizer/tokenizer.json", b"{\"vocab\":{}}");
    write(dir.path(), "dir/a b.json", b"spaced");
    write(dir.path(), "README.md", b"# model\n");
    (dir, weights)
}

fn fixture() -> Fixture {
    fixture_with(|spec| spec)
}

fn fixture_with(f: impl FnOnce(RepoSpec) -> RepoSpec) -> Fixture {
    let (dir, weights) = fixture_dir();
    let hub = TestHub::start().unwrap();
    let sha = hub.add_repo(f(RepoSpec::new(REPO, dir.path()))).unwrap();
    Fixture {
        hub,
        sha,
        weights,
        _dir: dir,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn no_redirect() -> Client {
    Client::builder().redirect(Policy::none()).build().unwrap()
}

fn header(resp: &Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.hub.endpoint())
    }

    fn resolve(&self, rev: &str, file: &str) -> String {
        self.url(&format!("/{REPO}/resolve/{rev}/{file}"))
    }

    /// The CDN URL the hub redirects `model.safetensors` to.
    async fn cdn_url(&self) -> String {
        let resp = no_redirect()
            .get(self.resolve("main", "model.safetensors"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND);
        header(&resp, "location")
    }
}

async fn get_range(client: &Client, url: &str, range: &str) -> Response {
    client.get(url).header("Range", range).send().await.unwrap()
}

async fn json(resp: Response) -> Value {
    assert_eq!(resp.status(), StatusCode::OK);
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}

/// Writes raw bytes to `endpoint` and returns everything the server sends until it closes.
fn raw(endpoint: &str, request: &[u8]) -> String {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server may answer and close before reading all of an oversized request.
    let _ = s.write_all(request);
    // Half-close so a server waiting for more of an incomplete head sees EOF at once.
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn test_hub_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TestHub>();
}

/// Tests written as `#[tokio::test]` may start and drop a hub inside their own runtime.
#[tokio::test]
async fn test_hub_starts_and_drops_inside_an_async_test() {
    let (dir, _) = fixture_dir();
    let hub = TestHub::start().unwrap();
    let sha = hub.add_repo(RepoSpec::new(REPO, dir.path())).unwrap();
    let url = format!("{}/{REPO}/resolve/{sha}/config.json", hub.endpoint());
    let body = Client::new()
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], CONFIG);
    drop(hub);
}

#[test]
fn api_info_lists_sorted_siblings_with_blob_metadata() {
    let fx = fixture();
    rt().block_on(async {
        let client = Client::new();
        let url = fx.url(&format!("/api/models/{REPO}?blobs=true"));
        let info = json(client.get(&url).send().await.unwrap()).await;
        assert_eq!(info["id"], REPO);
        assert_eq!(info["sha"], fx.sha.as_str());
        assert!(fx.sha.len() == 40 && fx.sha.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(info["gated"], false);
        assert_eq!(info["private"], false);
        assert_eq!(info["disabled"], false);
        let siblings = info["siblings"].as_array().unwrap();
        let names: Vec<&str> = siblings
            .iter()
            .map(|s| s["rfilename"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "README.md",
                "config.json",
                "dir/a b.json",
                "model.safetensors",
                "tokenizer/tokenizer.json"
            ]
        );
        let weights = &siblings[3];
        assert_eq!(weights["size"], 4096);
        assert_eq!(weights["lfs"]["size"], 4096);
        assert_eq!(
            weights["lfs"]["sha256"],
            hex::encode(Sha256::digest(&fx.weights))
        );
        assert!(weights["lfs"]["pointerSize"].as_u64().unwrap() > 100);
        assert_eq!(weights["blobId"].as_str().unwrap().len(), 40);
        let config = &siblings[1];
        assert_eq!(config["size"], CONFIG.len());
        assert!(config.get("lfs").is_none());
        assert_eq!(config["blobId"].as_str().unwrap().len(), 40);

        // Without blobs=true only names; revision forms agree.
        let plain = json(
            client
                .get(fx.url(&format!("/api/models/{REPO}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            plain["siblings"][1],
            serde_json::json!({"rfilename": "config.json"})
        );
        for rev in ["main", fx.sha.as_str()] {
            let url = fx.url(&format!("/api/models/{REPO}/revision/{rev}"));
            let resp = client.get(url).send().await.unwrap();
            assert_eq!(header(&resp, "x-repo-commit"), fx.sha);
            assert_eq!(json(resp).await["sha"], fx.sha.as_str());
        }
    });
}

#[test]
fn shas_are_stable_across_restarts_and_revisions_get_their_own() {
    let (dir, _) = fixture_dir();
    let (dev, _) = fixture_dir();
    write(dev.path(), "config.json", b"{\"dev\":true}");
    let spec = RepoSpec::new(REPO, dir.path())
        .revision("dev", dev.path())
        .revision("refs/pr/1", dev.path());
    let first = TestHub::start().unwrap().add_repo(spec.clone()).unwrap();
    let hub = TestHub::start().unwrap();
    assert_eq!(hub.add_repo(spec).unwrap(), first);
    // Another id with the same files is another commit.
    assert_ne!(
        hub.add_repo(RepoSpec::new("org/other", dir.path()))
            .unwrap(),
        first
    );
    rt().block_on(async {
        let client = Client::new();
        let base = hub.endpoint();
        let dev_info = json(
            client
                .get(format!("{base}/api/models/{REPO}/revision/dev"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let dev_sha = dev_info["sha"].as_str().unwrap().to_string();
        assert_ne!(dev_sha, first);
        let pr = json(
            client
                .get(format!("{base}/api/models/{REPO}/revision/refs%2Fpr%2F1"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(pr["sha"], dev_sha.as_str());
        for rev in ["dev", dev_sha.as_str(), "refs%2Fpr%2F1"] {
            let resp = client
                .get(format!("{base}/{REPO}/resolve/{rev}/config.json"))
                .send()
                .await
                .unwrap();
            assert_eq!(header(&resp, "x-repo-commit"), dev_sha);
            assert_eq!(&resp.bytes().await.unwrap()[..], b"{\"dev\":true}");
        }
    });
}

#[test]
fn lfs_files_redirect_to_the_cdn_with_linked_headers() {
    let fx = fixture();
    rt().block_on(async {
        let client = no_redirect();
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let resp = client
                .request(method.clone(), fx.resolve("main", "model.safetensors"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::FOUND, "{method}");
            let location = header(&resp, "location");
            assert!(location.starts_with(&format!("{}/blobs/", fx.hub.cdn_endpoint())));
            assert_ne!(fx.hub.cdn_endpoint(), fx.hub.endpoint());
            let sha256 = hex::encode(Sha256::digest(&fx.weights));
            assert_eq!(header(&resp, "x-linked-etag"), format!("\"{sha256}\""));
            assert_eq!(header(&resp, "x-linked-size"), "4096");
            assert_eq!(header(&resp, "x-repo-commit"), fx.sha);
            assert!(header(&resp, "etag").starts_with('"'));
            let len: usize = header(&resp, "content-length").parse().unwrap();
            let body = resp.bytes().await.unwrap();
            if method == reqwest::Method::GET {
                assert_eq!(body.len(), len);
                assert!(len < 4096);
            } else {
                assert!(body.is_empty());
            }
        }
        // Following the redirect yields the file; the CDN answer has no X-Repo-Commit.
        let resp = Client::new()
            .get(fx.resolve(&fx.sha, "model.safetensors"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().get("x-repo-commit").is_none());
        assert_eq!(&resp.bytes().await.unwrap()[..], &fx.weights[..]);
    });
}

#[test]
fn cdn_serves_exact_ranges_and_416() {
    let fx = fixture();
    rt().block_on(async {
        let url = fx.cdn_url().await;
        let client = Client::new();
        let w = &fx.weights;
        for (range, first, last) in [
            ("bytes=10-19", 10, 19),
            ("bytes=0-0", 0, 0),
            ("bytes=4000-", 4000, 4095),
            ("bytes=-16", 4080, 4095),
            ("bytes=4090-9999", 4090, 4095),
        ] {
            let resp = get_range(&client, &url, range).await;
            assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
            assert_eq!(
                header(&resp, "content-range"),
                format!("bytes {first}-{last}/4096")
            );
            let body = resp.bytes().await.unwrap();
            assert_eq!(&body[..], &w[first..=last], "{range}");
        }
        for range in ["bytes=4096-", "bytes=5000-6000", "bytes=-0", "bytes=9-3"] {
            let resp = get_range(&client, &url, range).await;
            assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
            assert_eq!(header(&resp, "content-range"), "bytes */4096");
        }
        // No Range, and multi-range (documented: answered whole), give 200 and the file.
        for req in [
            client.get(&url),
            client.get(&url).header("Range", "bytes=0-1,5-6"),
        ] {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(header(&resp, "accept-ranges"), "bytes");
            assert_eq!(&resp.bytes().await.unwrap()[..], &w[..]);
        }
        // The presigned query is required.
        let unsigned = url.split('?').next().unwrap();
        let resp = client.get(unsigned).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let ranges = fx.hub.stats().ranges;
        let label = format!("{REPO}/model.safetensors");
        assert_eq!(ranges[0], (label.clone(), 10, 19));
        assert_eq!(ranges[2], (label, 4000, 4095));
    });
}

#[test]
fn small_files_are_served_directly_with_etag_and_ranges() {
    let fx = fixture();
    rt().block_on(async {
        let client = no_redirect();
        let resp = client
            .get(fx.resolve("main", "config.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "x-repo-commit"), fx.sha);
        assert_eq!(header(&resp, "etag").len(), 42);
        assert_eq!(&resp.bytes().await.unwrap()[..], CONFIG);
        let resp = get_range(&client, &fx.resolve("main", "config.json"), "bytes=2-6").await;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(&resp.bytes().await.unwrap()[..], &CONFIG[2..=6]);
        let nested = client
            .get(fx.resolve("main", "dir/a%20b.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(&nested.bytes().await.unwrap()[..], b"spaced");
    });
}

#[test]
fn gated_repos_need_the_right_token_and_credentials_stay_on_the_hub() {
    let fx = fixture_with(|s| s.gated("hf_good"));
    rt().block_on(async {
        let client = Client::new();
        // Metadata is public, as on the Hub.
        let info = json(
            client
                .get(fx.url(&format!("/api/models/{REPO}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(info["gated"], "manual");
        for file in ["config.json", "model.safetensors"] {
            let resp = client.get(fx.resolve("main", file)).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(header(&resp, "x-error-code"), "GatedRepo");
            assert!(header(&resp, "x-error-message").contains("restricted"));
            assert_eq!(header(&resp, "x-repo-commit"), fx.sha);
            let resp = client
                .get(fx.resolve("main", file))
                .bearer_auth("hf_bad")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::FORBIDDEN);
            assert_eq!(header(&resp, "x-error-code"), "GatedRepo");
        }
        fx.hub.reset_stats();
        // With the token, reqwest follows the 302 to the other origin and drops Authorization.
        let resp = client
            .get(fx.resolve("main", "model.safetensors"))
            .bearer_auth("hf_good")
            .header("Range", "bytes=0-7")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(&resp.bytes().await.unwrap()[..], &fx.weights[..8]);
        let stats = fx.hub.stats();
        assert_eq!(stats.auth_headers_seen_at_hub, 1);
        assert_eq!(stats.cdn_requests, 1);
        assert!(!stats.cdn_saw_authorization);
        // A client that leaks the token to the CDN is caught.
        let location = no_redirect()
            .get(fx.resolve("main", "model.safetensors"))
            .bearer_auth("hf_good")
            .send()
            .await
            .unwrap();
        let leaky = client
            .get(header(&location, "location"))
            .bearer_auth("hf_good")
            .send()
            .await
            .unwrap();
        assert_eq!(leaky.status(), StatusCode::OK);
        assert!(fx.hub.stats().cdn_saw_authorization);
    });
}

#[test]
fn not_found_errors_carry_hub_error_codes() {
    let fx = fixture();
    rt().block_on(async {
        let client = Client::new();
        let cases = [
            ("/api/models/org/missing".to_string(), 404, "RepoNotFound"),
            (
                format!("/api/models/{REPO}/revision/nope"),
                404,
                "RevisionNotFound",
            ),
            (
                "/org/missing/resolve/main/config.json".to_string(),
                404,
                "RepoNotFound",
            ),
            (
                format!("/{REPO}/resolve/nope/config.json"),
                404,
                "RevisionNotFound",
            ),
            (
                format!("/{REPO}/resolve/main/missing.json"),
                404,
                "EntryNotFound",
            ),
            (format!("/{REPO}/blob/main/config.json"), 404, ""),
            ("/favicon.ico".to_string(), 404, ""),
        ];
        for (path, status, code) in cases {
            let resp = client.get(fx.url(&path)).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), status, "{path}");
            assert_eq!(header(&resp, "x-error-code"), code, "{path}");
        }
        let missing = client
            .get(fx.resolve("main", "missing.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&missing, "x-repo-commit"), fx.sha);
        let post = client
            .post(fx.resolve("main", "config.json"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        let cdn_post = client.delete(fx.cdn_url().await).send().await.unwrap();
        assert_eq!(cdn_post.status(), StatusCode::METHOD_NOT_ALLOWED);
    });
}

#[test]
fn resolve_cache_redirect_is_relative_and_keeps_authorization() {
    let fx = fixture_with(|s| s.gated("hf_good"));
    fx.hub.set_resolve_cache_redirect(true);
    rt().block_on(async {
        let resp = no_redirect()
            .get(fx.resolve("main", "dir/a%20b.json"))
            .bearer_auth("hf_good")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(
            header(&resp, "location"),
            format!("/api/resolve-cache/models/{REPO}/{}/dir/a%20b.json", fx.sha)
        );
        assert_eq!(header(&resp, "x-repo-commit"), fx.sha);
        fx.hub.reset_stats();
        let resp = Client::new()
            .get(fx.resolve("main", "config.json"))
            .bearer_auth("hf_good")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(&resp.bytes().await.unwrap()[..], CONFIG);
        let stats = fx.hub.stats();
        assert_eq!(
            (stats.resolve_requests, stats.auth_headers_seen_at_hub),
            (2, 2)
        );
        // The cache path is gated too, and addressed by sha only.
        let cache = fx.url(&format!(
            "/api/resolve-cache/models/{REPO}/{}/config.json",
            fx.sha
        ));
        let resp = Client::new().get(&cache).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let by_branch = fx.url(&format!(
            "/api/resolve-cache/models/{REPO}/main/config.json"
        ));
        let resp = Client::new()
            .get(by_branch)
            .bearer_auth("hf_good")
            .send()
            .await
            .unwrap();
        assert_eq!(header(&resp, "x-error-code"), "RevisionNotFound");
        // LFS files still go to the CDN.
        let lfs = no_redirect()
            .get(fx.resolve("main", "model.safetensors"))
            .bearer_auth("hf_good")
            .send()
            .await
            .unwrap();
        assert_eq!(lfs.status(), StatusCode::FOUND);
    });
}

#[test]
fn status_faults_fire_in_order_with_counts_and_hosts() {
    let fx = fixture();
    fx.hub.set_faults(vec![
        Fault::new(FaultKind::Status {
            code: 503,
            retry_after: None,
        })
        .host(FaultHost::Cdn),
        Fault::new(FaultKind::Status {
            code: 429,
            retry_after: Some("1".into()),
        })
        .path_contains("config.json")
        .times(1),
    ]);
    rt().block_on(async {
        let client = Client::new();
        let resp = client
            .get(fx.resolve("main", "config.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&resp, "retry-after"), "1");
        assert_eq!(header(&resp, "ratelimit"), "\"resolvers\";r=0;t=1");
        let resp = client
            .get(fx.resolve("main", "config.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(&resp.bytes().await.unwrap()[..], CONFIG);
        // The hub still redirects; the CDN answers 503 forever.
        for _ in 0..2 {
            let resp = client
                .get(fx.resolve("main", "model.safetensors"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        assert_eq!(fx.hub.stats().faults_fired, 3);
        fx.hub.set_faults(Vec::new());
        let resp = client
            .get(fx.resolve("main", "model.safetensors"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    });
}

#[test]
fn truncated_bodies_are_detectable_and_counted() {
    let fx = fixture();
    rt().block_on(async {
        let url = fx.cdn_url().await;
        fx.hub.set_faults(vec![
            Fault::new(FaultKind::TruncateBody { after: 100 })
                .host(FaultHost::Cdn)
                .times(1),
        ]);
        fx.hub.reset_stats();
        let resp = Client::new().get(&url).send().await.unwrap();
        assert_eq!(header(&resp, "content-length"), "4096");
        assert!(resp.bytes().await.is_err(), "short body must be an error");
        // The server's bookkeeping runs after the client sees the cut, and the redirect asked
        // for just before may be counted after the reset: bound it rather than race it.
        let mut stats = fx.hub.stats();
        for _ in 0..200 {
            if stats.body_bytes_sent >= 100 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            stats = fx.hub.stats();
        }
        assert_eq!(stats.faults_fired, 1);
        assert!((100..1024).contains(&stats.body_bytes_sent), "{stats:?}");
        let again = Client::new().get(&url).send().await.unwrap();
        assert_eq!(again.bytes().await.unwrap().len(), 4096);
    });
}

#[test]
fn ignore_range_streams_the_whole_file_until_the_client_hangs_up() {
    let dir = tempfile::tempdir().unwrap();
    let big = std::fs::File::create(dir.path().join("big.safetensors")).unwrap();
    big.set_len(256 << 20).unwrap();
    let hub = TestHub::start().unwrap();
    hub.add_repo(RepoSpec::new(REPO, dir.path()).lfs_sha256(false))
        .unwrap();
    hub.set_faults(vec![Fault::new(FaultKind::IgnoreRange)]);
    rt().block_on(async {
        let client = Client::new();
        let url = format!("{}/{REPO}/resolve/main/big.safetensors", hub.endpoint());
        let mut resp = get_range(&client, &url, "bytes=0-99").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().get("content-range").is_none());
        assert_eq!(header(&resp, "content-length"), (256u64 << 20).to_string());
        let chunk = resp.chunk().await.unwrap().unwrap();
        assert!(!chunk.is_empty());
        drop(resp);
        drop(client);
        // The server notices the hang-up at its next write; wait for the count to settle.
        let mut last = u64::MAX;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = hub.stats().body_bytes_sent;
            if now == last {
                break;
            }
            last = now;
        }
        assert!(last < 32 << 20, "streamed {last} bytes after hang-up");
        assert!(hub.stats().ranges.is_empty(), "a 200 records no range");
    });
}

#[test]
fn latency_delays_answers_and_stall_delays_bodies() {
    let fx = fixture();
    rt().block_on(async {
        let url = fx.cdn_url().await;
        fx.hub.set_faults(vec![
            Fault::new(FaultKind::Latency { ms: 150 }).host(FaultHost::Hub),
            Fault::new(FaultKind::Stall { ms: 400 }).host(FaultHost::Cdn),
        ]);
        let client = Client::new();
        let t = Instant::now();
        let resp = client
            .get(fx.url(&format!("/api/models/{REPO}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(t.elapsed() >= Duration::from_millis(150));

        let t = Instant::now();
        let resp = get_range(&client, &url, "bytes=0-9").await;
        let head_time = t.elapsed();
        assert!(head_time < Duration::from_millis(350), "{head_time:?}");
        assert_eq!(resp.bytes().await.unwrap().len(), 10);
        assert!(t.elapsed() >= Duration::from_millis(400));

        let impatient = Client::builder()
            .read_timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        let resp = get_range(&impatient, &url, "bytes=0-9").await;
        assert!(
            resp.bytes().await.is_err(),
            "read timeout must fire during the stall"
        );
    });
}

#[test]
fn wrong_commit_wrong_content_range_and_extra_bytes() {
    let fx = fixture();
    rt().block_on(async {
        let url = fx.cdn_url().await;
        let client = Client::new();
        fx.hub.set_faults(vec![
            Fault::new(FaultKind::WrongCommit).times(1),
            Fault::new(FaultKind::WrongContentRange).times(1),
            Fault::new(FaultKind::ExtraBytes).times(1),
        ]);
        let resp = client
            .get(fx.resolve("main", "config.json"))
            .send()
            .await
            .unwrap();
        let wrong = header(&resp, "x-repo-commit");
        assert!(wrong.len() == 40 && wrong != fx.sha);

        let resp = get_range(&client, &url, "bytes=10-19").await;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
        assert_ne!(header(&resp, "content-range"), "bytes 10-19/4096");
        assert_eq!(&resp.bytes().await.unwrap()[..], &fx.weights[10..20]);

        let resp = get_range(&client, &url, "bytes=10-19").await;
        assert_eq!(header(&resp, "content-range"), "bytes 10-19/4096");
        assert_eq!(header(&resp, "content-length"), "26");
        let body = resp.bytes().await.unwrap();
        assert_eq!((body.len(), &body[..10]), (26, &fx.weights[10..20]));

        let resp = get_range(&client, &url, "bytes=10-19").await;
        assert_eq!(resp.bytes().await.unwrap().len(), 10);
        assert_eq!(fx.hub.stats().faults_fired, 3);
    });
}

#[test]
fn close_connection_drops_without_an_answer() {
    let fx = fixture();
    fx.hub
        .set_faults(vec![Fault::new(FaultKind::CloseConnection).times(1)]);
    rt().block_on(async {
        let url = fx.url(&format!("/api/models/{REPO}"));
        assert!(Client::new().get(&url).send().await.is_err());
        assert_eq!(
            Client::new().get(&url).send().await.unwrap().status(),
            StatusCode::OK
        );
    });
    let raw_answer = {
        fx.hub
            .set_faults(vec![Fault::new(FaultKind::CloseConnection).times(1)]);
        raw(&fx.hub.endpoint(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    };
    assert_eq!(raw_answer, "");
}

#[test]
fn keep_alive_reuses_connections_and_close_is_honoured() {
    let fx = fixture();
    rt().block_on(async {
        let client = Client::new();
        let url = fx.url(&format!("/api/models/{REPO}"));
        fx.hub.reset_stats();
        for _ in 0..5 {
            let resp = client.get(&url).send().await.unwrap();
            resp.bytes().await.unwrap();
        }
        let stats = fx.hub.stats();
        assert_eq!((stats.requests, stats.connections), (5, 1));
    });
    // Two pipelined-in-sequence requests on one raw connection, the second asking to close.
    let answer = raw(
        &fx.hub.endpoint(),
        format!(
            "GET /api/models/{REPO} HTTP/1.1\r\nHost: x\r\n\r\n\
             HEAD /{REPO}/resolve/main/config.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
    let head = answer.rsplit("HTTP/1.1 200 OK").next().unwrap();
    assert!(head.contains("Connection: close"));
    assert!(head.contains(&format!("Content-Length: {}", CONFIG.len())));
    assert!(
        head.ends_with("\r\n\r\n"),
        "HEAD must not send a body: {head:?}"
    );
    // HTTP/1.0 without keep-alive closes too (read_to_end returns).
    let answer = raw(
        &fx.hub.endpoint(),
        b"GET /api/models/org/model HTTP/1.0\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK"));
}

#[test]
fn malformed_requests_get_4xx_and_the_server_survives() {
    let fx = fixture();
    let huge_header = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(70_000));
    let many_headers = format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(500));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"GARBAGE\r\n\r\n".to_vec(), "400"),
        (b"GET /\r\n\r\n".to_vec(), "400"),
        (b"GET / HTTP/9.9\r\n\r\n".to_vec(), "400"),
        (b"GET http://x/ HTTP/1.1\r\n\r\n".to_vec(), "400"),
        (b"\xff\xfe / HTTP/1.1\r\n\r\n".to_vec(), "400"),
        (b"GET / HTTP/1.1\r\nno-colon\r\n\r\n".to_vec(), "400"),
        (huge_header.into_bytes(), "431"),
        (many_headers.into_bytes(), "431"),
        (
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            "413",
        ),
        (
            b"POST /api/models/org/model HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
                .to_vec(),
            "405",
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec(), "400"),
    ];
    for endpoint in [fx.hub.endpoint(), fx.hub.cdn_endpoint()] {
        for (request, status) in &cases {
            let answer = raw(&endpoint, request);
            let expected = if status.is_empty() {
                String::new()
            } else {
                format!("HTTP/1.1 {status} ")
            };
            assert!(
                answer.starts_with(&expected),
                "{:?} -> {answer:?}",
                String::from_utf8_lossy(&request[..request.len().min(40)])
            );
        }
    }
    // Bad percent-encoding matters only where paths are decoded: on the hub.
    let answer = raw(
        &fx.hub.endpoint(),
        b"GET /%zz/x/resolve/main/y HTTP/1.1\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    rt().block_on(async {
        let resp = Client::new()
            .get(fx.url(&format!("/api/models/{REPO}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    });
}

#[test]
fn concurrent_range_requests_get_their_own_bytes() {
    let fx = fixture();
    let weights = std::sync::Arc::new(fx.weights.clone());
    rt().block_on(async {
        let url = fx.cdn_url().await;
        let client = Client::new();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..32usize {
            let (client, url, weights) = (client.clone(), url.clone(), weights.clone());
            tasks.spawn(async move {
                let (a, b) = (i * 100, i * 100 + 99);
                let resp = get_range(&client, &url, &format!("bytes={a}-{b}")).await;
                assert_eq!(&resp.bytes().await.unwrap()[..], &weights[a..=b]);
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        assert_eq!(fx.hub.stats().ranges.len(), 32);
    });
}

#[test]
fn stats_count_each_kind_of_request_and_bytes() {
    let fx = fixture();
    rt().block_on(async {
        let client = no_redirect();
        fx.hub.reset_stats();
        let api = client
            .get(fx.url(&format!("/api/models/{REPO}")))
            .send()
            .await
            .unwrap();
        let api_len = api.bytes().await.unwrap().len();
        let redirect = client
            .get(fx.resolve("main", "model.safetensors"))
            .send()
            .await
            .unwrap();
        let location = header(&redirect, "location");
        let redirect_len = redirect.bytes().await.unwrap().len();
        let part = get_range(&client, &location, "bytes=100-199").await;
        assert_eq!(part.bytes().await.unwrap().len(), 100);
        let head = client.head(&location).send().await.unwrap();
        assert_eq!(header(&head, "content-length"), "4096");
        let stats = fx.hub.stats();
        assert_eq!(stats.requests, 4);
        assert_eq!(stats.api_requests, 1);
        assert_eq!(stats.resolve_requests, 1);
        assert_eq!(stats.cdn_requests, 2);
        assert_eq!(stats.body_bytes_sent, (api_len + redirect_len + 100) as u64);
        assert_eq!(
            stats.ranges,
            vec![(format!("{REPO}/model.safetensors"), 100, 199)]
        );
        assert_eq!(stats.faults_fired, 0);
        fx.hub.reset_stats();
        assert_eq!(fx.hub.stats(), Default::default());
    });
}

#[test]
fn sparse_five_gigabyte_file_is_served_by_range() {
    const SIZE: u64 = 5 << 30;
    let start = crate::alloc_probe::reset_global_peak();
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("model-00001-of-00001.safetensors")).unwrap();
    f.set_len(SIZE).unwrap();
    f.seek(SeekFrom::Start(SIZE - 16)).unwrap();
    f.write_all(b"0123456789abcdef").unwrap();
    drop(f);
    let hub = TestHub::start().unwrap();
    let t = Instant::now();
    hub.add_repo(RepoSpec::new(REPO, dir.path()).lfs_sha256(false))
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "no hashing of the sparse file"
    );
    rt().block_on(async {
        let client = Client::new();
        let info = json(
            client
                .get(format!("{}/api/models/{REPO}?blobs=true", hub.endpoint()))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(info["siblings"][0]["size"], SIZE);
        assert_eq!(
            info["siblings"][0]["lfs"]["sha256"].as_str().unwrap().len(),
            64
        );
        let url = format!(
            "{}/{REPO}/resolve/main/model-00001-of-00001.safetensors",
            hub.endpoint()
        );
        let tail = get_range(&client, &url, "bytes=-16").await;
        assert_eq!(
            header(&tail, "content-range"),
            format!("bytes {}-{}/{SIZE}", SIZE - 16, SIZE - 1)
        );
        assert_eq!(&tail.bytes().await.unwrap()[..], b"0123456789abcdef");
        // Past 4 GiB, to catch 32-bit offsets.
        let mid = get_range(&client, &url, "bytes=4294967296-4294967305").await;
        assert_eq!(mid.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(&mid.bytes().await.unwrap()[..], &[0u8; 10]);
        let head = client.head(&url).send().await.unwrap();
        assert_eq!(header(&head, "content-length"), SIZE.to_string());
    });
    // Allocation, not RSS: other tests in this process map gigabytes of files. The file is
    // 5 GiB, so reading it whole would allocate at least that much.
    let peak = crate::alloc_probe::global_peak() - start;
    assert!(
        peak < 3 << 30,
        "peak allocation {peak} B: something read the whole file"
    );
}
