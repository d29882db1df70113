//! A Hugging Face Hub–compatible HTTP server on loopback, with fault injection, for tests and
//! offline benchmarks. Tests must never touch the network; this gives them a realistic Hub.
//!
//! [`TestHub::start`] binds two listeners on `127.0.0.1`: the **hub** (what `HF_ENDPOINT` points
//! to) and the **cdn** (another port, hence another origin, like `cdn-lfs.hf.co`). The server runs
//! on its own multi-threaded tokio runtime, so it is used from synchronous code and from any async
//! runtime alike; dropping the `TestHub` shuts it down.
//!
//! # Endpoints (hub)
//! - `GET|HEAD /api/models/{org}/{name}` (branch `main`) and
//!   `/api/models/{org}/{name}/revision/{rev}` (`rev` percent-decoded, so `refs%2Fpr%2F1` works),
//!   optional `?blobs=true`: `{"id","modelId","sha","siblings":[…],"gated","private","disabled"}`,
//!   siblings sorted by path; with `blobs=true` each sibling has `size`, `blobId` and, for LFS
//!   files, `lfs: {sha256, size, pointerSize}`. Readable without a token even for gated repos.
//!   Unknown repo: 404 `X-Error-Code: RepoNotFound`; unknown revision: 404 `RevisionNotFound`.
//! - `GET|HEAD /{org}/{name}/resolve/{rev}/{path}`: checks in order repo (404 `RepoNotFound`),
//!   revision (404 `RevisionNotFound`), gate (401 `GatedRepo` without `Authorization: Bearer`,
//!   403 `GatedRepo` with the wrong token), file (404 `EntryNotFound`). Every answer for a known
//!   revision has `X-Repo-Commit`. LFS files (`*.safetensors|bin|pt|gguf|model`, or > 10 MiB):
//!   `302` to an absolute CDN URL `{cdn}/blobs/{opaque}?X-Amz-Expires=3600&X-Amz-Signature=…`
//!   with `X-Linked-Etag: "<sha256>"`, `X-Linked-Size`, `ETag: "<blob oid of the pointer>"` (on
//!   purpose not the sha256: clients must prefer `X-Linked-Etag`) and a short text body. Other
//!   files: 200/206 directly with `ETag: "<blob oid>"`, or, after
//!   [`TestHub::set_resolve_cache_redirect`]`(true)`, a *relative* `307` to
//!   `/api/resolve-cache/models/{org}/{name}/{sha}/{path}`, which serves the file (gated alike).
//! - CDN `GET|HEAD /blobs/{opaque}?…`: needs the signature from the `Location` (else 403, like an
//!   expired presigned URL); never checks `Authorization` but records whether it was sent.
//!   `Range: bytes=a-b | a- | -n` → 206 with `Content-Range: bytes a-b/total`; unsatisfiable
//!   (start ≥ size, `-0`, or `b < a`) → 416 with `Content-Range: bytes */total`; no Range, an
//!   invalid one or a multi-range request → 200 with the whole file (as S3 does).
//!
//! Connections are HTTP/1.1 keep-alive (`Connection: close` and HTTP/1.0 honoured), HEAD gets
//! headers only, heads over 64 KiB or 128 header lines get 431, malformed heads 400, methods
//! other than GET/HEAD 405, unknown paths 404. File bodies are streamed from disk in 1 MiB
//! chunks read at the requested offset, so 5 GB sparse files are fine. See [`TestHub::add_repo`]
//! for how shas are derived and [`Fault`] for fault-rule semantics.
//!
//! # Example
//! ```no_run
//! use weight_audit_hub::{Fault, FaultHost, FaultKind, RepoSpec, TestHub};
//! # fn main() -> anyhow::Result<()> {
//! let hub = TestHub::start()?;
//! let sha = hub.add_repo(RepoSpec::new("org/model", "tests/fixtures/model").gated("hf_x"))?;
//! // Point the client at hub.endpoint() (HF_ENDPOINT); make the CDN fail twice with 503.
//! hub.set_faults(vec![
//!     Fault::new(FaultKind::Status { code: 503, retry_after: None })
//!         .host(FaultHost::Cdn)
//!         .times(2),
//! ]);
//! // ... run the client ...
//! let stats = hub.stats();
//! assert!(!stats.cdn_saw_authorization, "token leaked to the CDN");
//! # let _ = sha;
//! # Ok(())
//! # }
//! ```

mod faults;
mod http;
mod plan;
mod repo;
mod routes;
mod server;
mod state;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::runtime::Runtime;

use state::State;

/// One repository to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSpec {
    /// `org/name`.
    pub id: String,
    /// Files served for branch `main`, recursively (`.git` is skipped).
    pub dir: PathBuf,
    /// If set, the repo is gated and file downloads need `Authorization: Bearer <token>`.
    pub gated_token: Option<String>,
    /// Compute the real sha256 of LFS files (default). `false` for huge sparse replicas, where
    /// a stand-in 64-hex value derived from path and size is reported instead.
    pub lfs_sha256: bool,
    /// Other branches: (branch name, directory); each gets its own commit.
    pub extra_revisions: Vec<(String, PathBuf)>,
}

impl RepoSpec {
    pub fn new(id: impl Into<String>, dir: impl Into<PathBuf>) -> RepoSpec {
        RepoSpec {
            id: id.into(),
            dir: dir.into(),
            gated_token: None,
            lfs_sha256: true,
            extra_revisions: Vec::new(),
        }
    }

    pub fn gated(mut self, token: impl Into<String>) -> RepoSpec {
        self.gated_token = Some(token.into());
        self
    }

    pub fn lfs_sha256(mut self, compute: bool) -> RepoSpec {
        self.lfs_sha256 = compute;
        self
    }

    pub fn revision(mut self, branch: impl Into<String>, dir: impl Into<PathBuf>) -> RepoSpec {
        self.extra_revisions.push((branch.into(), dir.into()));
        self
    }
}

/// Which listener a fault rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultHost {
    Hub,
    Cdn,
    Any,
}

/// An injected misbehaviour; each kind says which answers it can change (see [`Fault`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with this status (and `Retry-After` if given) instead; the connection stays open.
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    /// Send the correct head (full `Content-Length`), then only `after` body bytes, then close.
    /// Applies to GET answers with a body longer than `after`.
    TruncateBody { after: u64 },
    /// Answer a ranged file request with 200 and the whole file, streamed; a client that hangs
    /// up stops the transfer. Applies to answers that would be 206.
    IgnoreRange,
    /// Wait this long before answering (capped at 60 s). Latency rules accumulate and do not
    /// prevent another rule from firing on the same request.
    Latency { ms: u64 },
    /// Send the head, then wait this long (capped at 60 s) before the body. Applies to GET
    /// answers with a body.
    Stall { ms: u64 },
    /// `X-Repo-Commit` names another (well-formed, unknown) sha.
    WrongCommit,
    /// A 206 whose `Content-Range` does not match the request (the body is the requested bytes).
    WrongContentRange,
    /// A 206 whose body has 16 bytes more than asked (`Content-Length` counts them).
    ExtraBytes,
    /// Read the request, then close the connection without answering.
    CloseConnection,
}

/// A fault rule: `kind` fires on requests to `host` whose target (or, for opaque CDN URLs, the
/// `org/name/path` of the file behind it) contains `path_contains`, at most `times` times.
///
/// Rules are tried in order. A rule fires when it matches, has uses left, and its kind can change
/// this answer (a `WrongContentRange` cannot change a JSON answer, so it waits for a 206 and keeps
/// its count). `Latency` rules never end the search: every matching one adds its delay, then the
/// first matching applicable other rule fires. Each firing uses one of the rule's `times` and
/// counts in [`ServerStats::faults_fired`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub path_contains: Option<String>,
    pub host: FaultHost,
    pub kind: FaultKind,
    /// `None` = forever.
    pub times: Option<u32>,
}

impl Fault {
    /// A rule for every request on both hosts, forever; narrow it with the builder methods.
    pub fn new(kind: FaultKind) -> Fault {
        Fault {
            path_contains: None,
            host: FaultHost::Any,
            kind,
            times: None,
        }
    }

    pub fn host(mut self, host: FaultHost) -> Fault {
        self.host = host;
        self
    }

    pub fn path_contains(mut self, s: impl Into<String>) -> Fault {
        self.path_contains = Some(s.into());
        self
    }

    pub fn times(mut self, n: u32) -> Fault {
        self.times = Some(n);
        self
    }
}

/// Counters since start or the last [`TestHub::reset_stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Requests whose head parsed, on both listeners.
    pub requests: u64,
    /// `/api/models/...` requests.
    pub api_requests: u64,
    /// `/{repo}/resolve/...` and `/api/resolve-cache/...` requests.
    pub resolve_requests: u64,
    /// Requests on the CDN listener.
    pub cdn_requests: u64,
    /// Body bytes accepted by the kernel for sending (heads excluded; HEAD answers add nothing).
    pub body_bytes_sent: u64,
    /// Every 206 file answer to a GET, as (`org/name/path`, first, last) with `last` inclusive.
    pub ranges: Vec<(String, u64, u64)>,
    /// Fault-rule firings (a request can fire a latency rule and one other rule).
    pub faults_fired: u64,
    /// Whether any CDN request carried an `Authorization` header (credentials must not leak
    /// cross-origin).
    pub cdn_saw_authorization: bool,
    /// Hub requests that carried an `Authorization` header.
    pub auth_headers_seen_at_hub: u64,
    /// TCP connections accepted on both listeners (shows keep-alive reuse).
    pub connections: u64,
}

/// A running test hub; shuts down when dropped.
pub struct TestHub {
    state: Arc<State>,
    hub_addr: SocketAddr,
    cdn_addr: SocketAddr,
    runtime: Option<Runtime>,
}

impl TestHub {
    /// Starts a hub and a CDN listener, each on an ephemeral port of 127.0.0.1.
    pub fn start() -> anyhow::Result<TestHub> {
        TestHub::start_on("127.0.0.1:0")
    }

    /// Starts the hub listener on `hub_addr` (a loopback address; port 0 picks one) and the CDN
    /// listener on an ephemeral port of the same IP. Non-loopback addresses are refused: the
    /// server hands out local files without authentication.
    pub fn start_on(hub_addr: &str) -> anyhow::Result<TestHub> {
        let hub_addr = resolve_loopback(hub_addr)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("testhub")
            .enable_all()
            .build()
            .context("starting the test hub runtime")?;
        let _in_runtime = runtime.enter();
        let hub = server::bind(hub_addr).with_context(|| format!("binding {hub_addr}"))?;
        let cdn =
            server::bind(SocketAddr::new(hub_addr.ip(), 0)).context("binding the CDN listener")?;
        let (hub_addr, cdn_addr) = (hub.local_addr()?, cdn.local_addr()?);
        let state = Arc::new(State::new(format!("http://{cdn_addr}")));
        runtime.spawn(server::accept_loop(hub, server::Origin::Hub, state.clone()));
        runtime.spawn(server::accept_loop(cdn, server::Origin::Cdn, state.clone()));
        drop(_in_runtime);
        Ok(TestHub {
            state,
            hub_addr,
            cdn_addr,
            runtime: Some(runtime),
        })
    }

    /// `http://127.0.0.1:PORT` of the hub: the value for `HF_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.hub_addr)
    }

    /// `http://127.0.0.1:PORT` of the CDN listener (a different origin from the hub).
    pub fn cdn_endpoint(&self) -> String {
        format!("http://{}", self.cdn_addr)
    }

    /// Scans and hashes the repo's files and serves them; replaces a repo with the same id.
    /// Returns the commit sha of `main`.
    ///
    /// Hashes (deterministic across restarts; not git's, which needs SHA-1):
    /// - commit sha: first 40 hex digits of blake3 over the repo id and, per file sorted by path,
    ///   `path \0 size \0 (LFS sha256 or blob oid)`;
    /// - blob oid (`blobId`, `ETag` of small files): first 40 hex digits of
    ///   `sha256("blob {len}\0" ‖ content)`; for LFS files, of their LFS pointer text;
    /// - LFS sha256: the real content hash, or with `lfs_sha256: false` a 64-hex stand-in derived
    ///   from path and size (not the content hash).
    pub fn add_repo(&self, repo: RepoSpec) -> anyhow::Result<String> {
        self.state.add_repo(&repo)
    }

    /// Replaces the active fault rules (and their remaining counts).
    pub fn set_faults(&self, faults: Vec<Fault>) {
        self.state.set_faults(faults);
    }

    /// When on, non-LFS files are answered with a relative 307 to `/api/resolve-cache/...`, as
    /// the Hub does since 2025. Off by default.
    pub fn set_resolve_cache_redirect(&self, on: bool) {
        self.state.set_resolve_cache_redirect(on);
    }

    pub fn stats(&self) -> ServerStats {
        self.state.stats()
    }

    pub fn reset_stats(&self) {
        self.state.reset_stats();
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        // `shutdown_background` (not a blocking shutdown) because a TestHub may be dropped inside
        // a test's own async runtime, where blocking on another runtime panics.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn resolve_loopback(addr: &str) -> anyhow::Result<SocketAddr> {
    let sock = addr
        .to_socket_addrs()
        .with_context(|| format!("bad listen address {addr:?}"))?
        .next()
        .with_context(|| format!("{addr:?} resolves to no address"))?;
    if !sock.ip().is_loopback() {
        bail!("refusing to serve on non-loopback address {sock}");
    }
    Ok(sock)
}

/// Every `root/{org}/{name}/` directory as a repo `org/name` (for serving a folder of repos).
pub fn repos_in_folder(root: &Path, lfs_sha256: bool) -> anyhow::Result<Vec<RepoSpec>> {
    let mut repos = Vec::new();
    for org in sorted_subdirs(root)? {
        for name in sorted_subdirs(&root.join(&org))? {
            let id = format!("{org}/{name}");
            repos.push(RepoSpec::new(id, root.join(&org).join(&name)).lfs_sha256(lfs_sha256));
        }
    }
    Ok(repos)
}

fn sorted_subdirs(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if let (true, Ok(name)) = (is_dir, entry.file_name().into_string())
            && !name.starts_with('.')
        {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Serves `repos` on `endpoint_addr` (loopback only, e.g. `127.0.0.1:8080`) until the process
/// ends, adding `latency_ms` to every answer (0 for none). For manual runs and benchmarks
/// (`audit hub-serve`): prints `HF_ENDPOINT=http://…` on stderr once the repos are loaded.
pub fn serve_blocking(
    endpoint_addr: &str,
    repos: Vec<RepoSpec>,
    latency_ms: u64,
) -> anyhow::Result<()> {
    let hub = TestHub::start_on(endpoint_addr)?;
    for repo in repos {
        let id = repo.id.clone();
        let sha = hub.add_repo(repo)?;
        eprintln!("serving {id} @ {sha}");
    }
    if latency_ms > 0 {
        hub.set_faults(vec![Fault::new(FaultKind::Latency { ms: latency_ms })]);
    }
    eprintln!("HF_ENDPOINT={}", hub.endpoint());
    loop {
        std::thread::park();
    }
}
