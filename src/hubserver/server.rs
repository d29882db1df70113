//! Listeners, connections, routing and response writing.
//!
//! Each request is first turned into a [`Plan`] (status, headers, body source) by pure routing
//! code; fault rules then inspect and rewrite the plan; finally [`send`] writes it, applying the
//! send-time faults (truncation, stalls). Keeping routing free of I/O keeps faults orthogonal.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::faults::{FaultRules, MAX_DELAY_MS, RequestView};
use super::http::{self, HeadError, RangeRequest, Request};
use super::repo::{Commit, FileEntry, LfsInfo, Repo, info_json};
use super::{Fault, FaultHost, FaultKind, RepoSpec, ServerStats};

/// Accepted sockets inherit this send buffer from the listener. Kept small so that
/// `body_bytes_sent` tracks what a client actually pulled (for `IgnoreRange` with an early
/// hang-up) rather than megabytes of kernel buffering.
const SEND_BUFFER_BYTES: u32 = 256 * 1024;
/// File bodies are read and written in chunks of this size; memory use is bounded by it.
const CHUNK_BYTES: u64 = 256 * 1024;
/// A kept-alive connection idle this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing connection keeps draining client input (see [`close_gracefully`]).
const LINGER: Duration = Duration::from_millis(500);
/// Bytes `ExtraBytes` appends to a 206 body, and their value.
const EXTRA_BYTES: usize = 16;
const EXTRA_FILL: u8 = 0xEE;
/// Key for the CDN URL "signatures": not security, only a check that clients keep the query.
const URL_KEY: &str = "testhub-cdn-url-key";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Hub,
    Cdn,
}

impl Origin {
    fn fault_host(self) -> FaultHost {
        match self {
            Origin::Hub => FaultHost::Hub,
            Origin::Cdn => FaultHost::Cdn,
        }
    }
}

/// An LFS file reachable on the CDN.
#[derive(Debug, Clone)]
struct Blob {
    repo_id: String,
    file: Arc<FileEntry>,
    label: String,
    sha256: String,
}

/// Everything the listeners share. Locks are std locks held for short, await-free sections.
pub(crate) struct State {
    cdn_origin: String,
    repos: RwLock<HashMap<String, Arc<Repo>>>,
    blobs: RwLock<HashMap<String, Blob>>,
    faults: Mutex<FaultRules>,
    stats: Mutex<ServerStats>,
    resolve_cache_redirect: AtomicBool,
}

// A panic elsewhere must not turn every later request into a poisoned-lock panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    pub fn new(cdn_origin: String) -> State {
        State {
            cdn_origin,
            repos: RwLock::default(),
            blobs: RwLock::default(),
            faults: Mutex::default(),
            stats: Mutex::default(),
            resolve_cache_redirect: AtomicBool::new(false),
        }
    }

    pub fn add_repo(&self, spec: &RepoSpec) -> anyhow::Result<String> {
        // Hash outside the locks: it may read gigabytes.
        let repo = Repo::load(spec)?;
        let sha = repo.main_sha().to_string();
        let mut blobs = self.blobs.write().unwrap_or_else(PoisonError::into_inner);
        blobs.retain(|_, b| b.repo_id != repo.id);
        for commit in repo.commits.values() {
            for file in commit.files.values() {
                if let Some(lfs) = &file.lfs {
                    let blob = Blob {
                        repo_id: repo.id.clone(),
                        file: file.clone(),
                        label: file_label(&repo.id, file),
                        sha256: lfs.sha256.clone(),
                    };
                    blobs.insert(blob_key(&repo.id, &commit.sha, &file.rfilename), blob);
                }
            }
        }
        drop(blobs);
        let mut repos = self.repos.write().unwrap_or_else(PoisonError::into_inner);
        repos.insert(repo.id.clone(), Arc::new(repo));
        Ok(sha)
    }

    pub fn set_faults(&self, faults: Vec<Fault>) {
        lock(&self.faults).replace(faults);
    }

    pub fn set_resolve_cache_redirect(&self, on: bool) {
        self.resolve_cache_redirect.store(on, Ordering::SeqCst);
    }

    pub fn stats(&self) -> ServerStats {
        lock(&self.stats).clone()
    }

    pub fn reset_stats(&self) {
        *lock(&self.stats) = ServerStats::default();
    }

    fn bump(&self, f: impl FnOnce(&mut ServerStats)) {
        f(&mut lock(&self.stats));
    }

    fn repo(&self, id: &str) -> Option<Arc<Repo>> {
        let repos = self.repos.read().unwrap_or_else(PoisonError::into_inner);
        repos.get(id).cloned()
    }

    fn blob(&self, key: &str) -> Option<Blob> {
        let blobs = self.blobs.read().unwrap_or_else(PoisonError::into_inner);
        blobs.get(key).cloned()
    }
}

fn file_label(repo_id: &str, file: &FileEntry) -> String {
    format!("{repo_id}/{}", file.rfilename)
}

/// The opaque CDN name of one file of one commit.
fn blob_key(repo_id: &str, sha: &str, path: &str) -> String {
    let mut h = blake3::Hasher::new();
    for part in [repo_id, sha, path] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    h.finalize().to_hex().to_string()
}

fn url_signature(key: &str) -> String {
    blake3::keyed_hash(blake3::hash(URL_KEY.as_bytes()).as_bytes(), key.as_bytes()).to_hex()[..32]
        .to_string()
}

pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_send_buffer_size(SEND_BUFFER_BYTES)?;
    // Lets `serve_blocking` restart on a fixed port while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

pub(crate) async fn accept_loop(listener: TcpListener, origin: Origin, state: Arc<State>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                state.bump(|s| s.connections += 1);
                // Heads and bodies go out in separate writes; with Nagle's algorithm the second
                // write would wait for a delayed ACK (40 ms) on every kept-alive request.
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(stream, origin, state.clone()));
            }
            // E.g. out of file descriptors: back off and keep serving rather than die silently.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn serve_connection(stream: TcpStream, origin: Origin, state: Arc<State>) {
    let mut conn = BufReader::new(stream);
    loop {
        let req = match tokio::time::timeout(IDLE_TIMEOUT, http::read_request(&mut conn)).await {
            Ok(Ok(Some(req))) => req,
            Ok(Err(HeadError::Io)) => return,
            Ok(Err(e)) => {
                if reject(conn.get_mut(), &e).await.is_ok() {
                    close_gracefully(conn).await;
                }
                return;
            }
            Ok(Ok(None)) | Err(_) => break,
        };
        if discard_body(&mut conn, req.content_length).await.is_err() {
            return;
        }
        match handle(&mut conn, &req, origin, &state).await {
            Ok(true) if req.keep_alive => continue,
            Ok(_) => break,
            Err(_) => return,
        }
    }
    close_gracefully(conn).await;
}

/// Sends FIN and drains input briefly before the socket is dropped: closing a socket with unread
/// input makes the kernel send RST, which can destroy an answer the client has not read yet.
async fn close_gracefully(mut conn: BufReader<TcpStream>) {
    let _ = conn.get_mut().shutdown().await;
    let mut input = (&mut conn).take(1 << 20);
    let mut sink = tokio::io::sink();
    let _ = tokio::time::timeout(LINGER, tokio::io::copy(&mut input, &mut sink)).await;
}

async fn reject(stream: &mut TcpStream, err: &HeadError) -> io::Result<()> {
    let (status, msg) = match err {
        HeadError::TooLarge => (431, "request head too large".to_string()),
        HeadError::BodyTooLarge => (413, "request body not accepted".to_string()),
        HeadError::Malformed(why) => (400, format!("malformed request: {why}")),
        HeadError::Io => return Ok(()),
    };
    let head = http::response_head(status, &text_headers(), msg.len() as u64, true);
    stream.write_all(&head).await?;
    stream.write_all(msg.as_bytes()).await
}

async fn discard_body(conn: &mut BufReader<TcpStream>, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let copied = tokio::io::copy(&mut (&mut *conn).take(len), &mut tokio::io::sink()).await?;
    if copied == len {
        Ok(())
    } else {
        Err(io::ErrorKind::UnexpectedEof.into())
    }
}

/// Answers one request. `Ok(true)` if the connection may carry another request.
async fn handle(
    conn: &mut BufReader<TcpStream>,
    req: &Request,
    origin: Origin,
    state: &State,
) -> io::Result<bool> {
    record_request(state, req, origin);
    let mut plan = match origin {
        Origin::Hub => hub_plan(req, state),
        Origin::Cdn => cdn_plan(req, state),
    };
    let head_only = req.method == "HEAD";
    let selection = lock(&state.faults).select(&plan.view(origin, req, head_only));
    if selection.fired > 0 {
        state.bump(|s| s.faults_fired += selection.fired);
    }
    if selection.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(selection.latency_ms)).await;
    }
    let effects = match selection.kind {
        Some(kind) => match apply_fault(kind, &mut plan) {
            Some(effects) => effects,
            None => return Ok(false),
        },
        None => SendEffects::default(),
    };
    send(
        conn.get_mut(),
        plan,
        head_only,
        effects,
        !req.keep_alive,
        state,
    )
    .await
}

fn record_request(state: &State, req: &Request, origin: Origin) {
    let auth = req.header("authorization").is_some();
    let kind = classify_hub_path(&req.path);
    state.bump(|s| {
        s.requests += 1;
        match origin {
            Origin::Cdn => {
                s.cdn_requests += 1;
                s.cdn_saw_authorization |= auth;
            }
            Origin::Hub => {
                s.auth_headers_seen_at_hub += u64::from(auth);
                match kind {
                    HubPathKind::Api => s.api_requests += 1,
                    HubPathKind::Resolve => s.resolve_requests += 1,
                    HubPathKind::Other => {}
                }
            }
        }
    });
}

enum HubPathKind {
    Api,
    Resolve,
    Other,
}

fn classify_hub_path(path: &str) -> HubPathKind {
    if path.starts_with("/api/models/") {
        HubPathKind::Api
    } else if path.starts_with("/api/resolve-cache/") || path.split('/').nth(3) == Some("resolve") {
        HubPathKind::Resolve
    } else {
        HubPathKind::Other
    }
}

// ---------------------------------------------------------------------------------------------
// Plans

/// A response not yet written.
#[derive(Debug)]
struct Plan {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
    /// `org/name/path` of the repo file concerned, for fault matching.
    label: Option<String>,
}

#[derive(Debug)]
enum Body {
    Bytes(Vec<u8>),
    File(FileBody),
}

#[derive(Debug)]
struct FileBody {
    path: PathBuf,
    label: String,
    total: u64,
    start: u64,
    len: u64,
    /// Bytes of [`EXTRA_FILL`] sent after the file bytes (the `ExtraBytes` fault).
    extra: u64,
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::File(f) => f.len + f.extra,
        }
    }
}

fn text_headers() -> Vec<(String, String)> {
    vec![("Content-Type".into(), "text/plain; charset=utf-8".into())]
}

impl Plan {
    fn text(status: u16, body: impl Into<String>) -> Plan {
        Plan {
            status,
            headers: text_headers(),
            body: Body::Bytes(body.into().into_bytes()),
            label: None,
        }
    }

    fn json(status: u16, value: &Value) -> Plan {
        Plan {
            status,
            headers: vec![(
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            )],
            // Serialising a `Value` cannot fail.
            body: Body::Bytes(serde_json::to_vec(value).unwrap_or_default()),
            label: None,
        }
    }

    /// A Hub error as `huggingface_hub` parses it: `X-Error-Code`, `X-Error-Message`, JSON body.
    fn hub_error(status: u16, code: &str, message: &str) -> Plan {
        Plan::json(status, &json!({ "error": message }))
            .header("X-Error-Code", code)
            .header("X-Error-Message", message)
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Plan {
        self.set_header(name, value);
        self
    }

    fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.remove_header(name);
        self.headers.push((name.to_string(), value.into()));
    }

    fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn with_label(mut self, label: String) -> Plan {
        self.label = Some(label);
        self
    }

    fn view<'a>(&'a self, origin: Origin, req: &'a Request, head_only: bool) -> RequestView<'a> {
        RequestView {
            host: origin.fault_host(),
            target: &req.target,
            file_label: self.label.as_deref(),
            body_len: if head_only { 0 } else { self.body.len() },
            partial_file: self.status == 206 && matches!(self.body, Body::File(_)),
            has_commit: self.get_header("X-Repo-Commit").is_some(),
        }
    }
}

fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

fn method_not_allowed() -> Plan {
    Plan::text(405, "only GET and HEAD are served").header("Allow", "GET, HEAD")
}

fn hub_plan(req: &Request, state: &State) -> Plan {
    if !matches!(req.method.as_str(), "GET" | "HEAD") {
        return method_not_allowed();
    }
    let segs: Vec<&str> = req.path.split('/').skip(1).collect();
    match segs.as_slice() {
        ["api", "models", org, name, rest @ ..] => api_plan(req, state, org, name, rest),
        ["api", "resolve-cache", "models", org, name, sha, path @ ..] if !path.is_empty() => {
            resolve_cache_plan(req, state, org, name, sha, path)
        }
        [org, name, "resolve", rev, path @ ..] if !path.is_empty() => {
            resolve_plan(req, state, org, name, rev, path)
        }
        _ => Plan::text(404, "Not Found"),
    }
}

fn bad_request() -> Plan {
    Plan::text(400, "malformed percent-encoding in the path")
}

/// Decodes the raw `org`, `name` segments into a repo id.
fn repo_id(org: &str, name: &str) -> Option<String> {
    Some(format!(
        "{}/{}",
        http::percent_decode(org)?,
        http::percent_decode(name)?
    ))
}

/// Decodes raw path segments into a repo file path.
fn decode_path(segs: &[&str]) -> Option<String> {
    let parts: Option<Vec<String>> = segs.iter().map(|s| http::percent_decode(s)).collect();
    parts.map(|p| p.join("/"))
}

fn repo_not_found() -> Plan {
    Plan::hub_error(404, "RepoNotFound", "Repository not found")
}

fn revision_not_found(rev: &str) -> Plan {
    Plan::hub_error(404, "RevisionNotFound", &format!("Invalid rev id: {rev}"))
}

fn api_plan(req: &Request, state: &State, org: &str, name: &str, rest: &[&str]) -> Plan {
    let rev = match rest {
        [] | [""] => Some("main".to_string()),
        ["revision", rev @ ..] if !rev.is_empty() => decode_path(rev),
        _ => return Plan::text(404, "Not Found"),
    };
    let (Some(id), Some(rev)) = (repo_id(org, name), rev) else {
        return bad_request();
    };
    let Some(repo) = state.repo(&id) else {
        return repo_not_found();
    };
    let Some(commit) = repo.resolve(&rev) else {
        return revision_not_found(&rev);
    };
    let info = info_json(&repo, commit, req.query_flag("blobs", "true"));
    Plan::json(200, &info).header("X-Repo-Commit", commit.sha.as_str())
}

fn resolve_plan(
    req: &Request,
    state: &State,
    org: &str,
    name: &str,
    rev: &str,
    path: &[&str],
) -> Plan {
    let (Some(id), Some(rev), Some(path)) = (
        repo_id(org, name),
        http::percent_decode(rev),
        decode_path(path),
    ) else {
        return bad_request();
    };
    let Some(repo) = state.repo(&id) else {
        return repo_not_found();
    };
    let Some(commit) = repo.resolve(&rev) else {
        return revision_not_found(&rev);
    };
    let plan = match gated_file(req, &repo, commit, &path) {
        Err(denied) => *denied,
        Ok(file) => match &file.lfs {
            Some(lfs) => lfs_redirect(state, &repo, commit, file, lfs),
            None if state.resolve_cache_redirect.load(Ordering::SeqCst) => {
                resolve_cache_redirect(&repo, commit, file)
            }
            None => file_plan(
                file,
                file_label(&repo.id, file),
                req.header("range"),
                &file.blob_id,
            ),
        },
    };
    plan.header("X-Repo-Commit", commit.sha.as_str())
}

fn resolve_cache_plan(
    req: &Request,
    state: &State,
    org: &str,
    name: &str,
    sha: &str,
    path: &[&str],
) -> Plan {
    let (Some(id), Some(path)) = (repo_id(org, name), decode_path(path)) else {
        return bad_request();
    };
    let Some(repo) = state.repo(&id) else {
        return repo_not_found();
    };
    // The cache is addressed by commit sha only, never by branch name.
    let Some(commit) = repo.commits.get(sha) else {
        return revision_not_found(sha);
    };
    let plan = match gated_file(req, &repo, commit, &path) {
        Err(denied) => *denied,
        Ok(file) => file_plan(
            file,
            file_label(&repo.id, file),
            req.header("range"),
            &file.blob_id,
        ),
    };
    plan.header("X-Repo-Commit", commit.sha.as_str())
}

/// The gate, then the file lookup, with the Hub's error codes and messages.
fn gated_file<'c>(
    req: &Request,
    repo: &Repo,
    commit: &'c Commit,
    path: &str,
) -> Result<&'c Arc<FileEntry>, Box<Plan>> {
    if let Some(token) = &repo.gated_token {
        let presented = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match presented {
            None => {
                let msg = format!(
                    "Access to model {} is restricted. You must have access to it and be authenticated to access it. Please log in.",
                    repo.id
                );
                return Err(Box::new(Plan::hub_error(401, "GatedRepo", &msg)));
            }
            Some(t) if t != token => {
                let msg = format!(
                    "Access to model {} is restricted and you are not in the authorized list.",
                    repo.id
                );
                return Err(Box::new(Plan::hub_error(403, "GatedRepo", &msg)));
            }
            Some(_) => {}
        }
    }
    commit.files.get(path).ok_or_else(|| {
        let msg = format!("Entry not found: {path}");
        Box::new(Plan::hub_error(404, "EntryNotFound", &msg))
    })
}

fn lfs_redirect(
    state: &State,
    repo: &Repo,
    commit: &Commit,
    file: &FileEntry,
    lfs: &LfsInfo,
) -> Plan {
    let key = blob_key(&repo.id, &commit.sha, &file.rfilename);
    let location = format!(
        "{}/blobs/{key}?X-Amz-Expires=3600&X-Amz-Signature={}",
        state.cdn_origin,
        url_signature(&key)
    );
    Plan::text(302, format!("Found. Redirecting to {location}"))
        .header("Location", location)
        .header("X-Linked-Etag", quoted(&lfs.sha256))
        .header("X-Linked-Size", file.size.to_string())
        .header("ETag", quoted(&file.blob_id))
        .with_label(file_label(&repo.id, file))
}

fn resolve_cache_redirect(repo: &Repo, commit: &Commit, file: &FileEntry) -> Plan {
    let location = format!(
        "/api/resolve-cache/models/{}/{}/{}",
        repo.id,
        commit.sha,
        http::percent_encode_path(&file.rfilename)
    );
    Plan::text(
        307,
        format!("Temporary Redirect. Redirecting to {location}"),
    )
    .header("Location", location)
    .header("ETag", quoted(&file.blob_id))
    .with_label(file_label(&repo.id, file))
}

/// A file answer honouring `Range` (see [`http::parse_range`]).
fn file_plan(file: &FileEntry, label: String, range: Option<&str>, etag: &str) -> Plan {
    let total = file.size;
    let body = |start, len| {
        Body::File(FileBody {
            path: file.abs.clone(),
            label: label.clone(),
            total,
            start,
            len,
            extra: 0,
        })
    };
    let plan = match http::parse_range(range, total) {
        RangeRequest::Whole => Plan {
            status: 200,
            headers: Vec::new(),
            body: body(0, total),
            label: None,
        },
        RangeRequest::Partial(a, b) => Plan {
            status: 206,
            headers: vec![("Content-Range".into(), format!("bytes {a}-{b}/{total}"))],
            body: body(a, b - a + 1),
            label: None,
        },
        RangeRequest::Unsatisfiable => Plan::text(416, "Requested Range Not Satisfiable")
            .header("Content-Range", format!("bytes */{total}")),
    };
    let plan = if plan.status == 416 {
        plan
    } else {
        plan.header("Content-Type", "application/octet-stream")
    };
    plan.header("Accept-Ranges", "bytes")
        .header("ETag", quoted(etag))
        .with_label(label)
}

fn cdn_plan(req: &Request, state: &State) -> Plan {
    if !matches!(req.method.as_str(), "GET" | "HEAD") {
        return method_not_allowed();
    }
    let Some(key) = req.path.strip_prefix("/blobs/") else {
        return Plan::text(404, "Not Found");
    };
    let Some(blob) = state.blob(key) else {
        return Plan::text(404, "NoSuchKey");
    };
    if !req.query_flag("X-Amz-Signature", &url_signature(key)) {
        return Plan::text(403, "AccessDenied: missing or bad signature").with_label(blob.label);
    }
    file_plan(&blob.file, blob.label, req.header("range"), &blob.sha256)
}

// ---------------------------------------------------------------------------------------------
// Faults applied to plans

/// Send-time effects of a fault.
#[derive(Debug, Default, Clone, Copy)]
struct SendEffects {
    truncate_after: Option<u64>,
    stall_ms: u64,
}

/// Rewrites `plan` for `kind`; `None` means close the connection without answering.
fn apply_fault(kind: FaultKind, plan: &mut Plan) -> Option<SendEffects> {
    let mut effects = SendEffects::default();
    match kind {
        FaultKind::CloseConnection => return None,
        FaultKind::Status { code, retry_after } => {
            let mut injected = Plan::json(
                code,
                &json!({ "error": format!("injected fault: status {code}") }),
            );
            if let Some(after) = retry_after {
                injected.set_header("Retry-After", after);
            }
            *plan = injected;
        }
        FaultKind::TruncateBody { after } => effects.truncate_after = Some(after),
        FaultKind::Stall { ms } => effects.stall_ms = ms.min(MAX_DELAY_MS),
        // Applied before the plan was built (a delay); nothing to rewrite.
        FaultKind::Latency { .. } => {}
        FaultKind::WrongCommit => {
            let real = plan.get_header("X-Repo-Commit").unwrap_or_default();
            let wrong =
                blake3::hash(format!("wrong-commit:{real}").as_bytes()).to_hex()[..40].to_string();
            plan.set_header("X-Repo-Commit", wrong);
        }
        FaultKind::IgnoreRange => {
            if let Body::File(f) = &mut plan.body {
                f.start = 0;
                f.len = f.total;
                plan.status = 200;
                plan.remove_header("Content-Range");
            }
        }
        FaultKind::WrongContentRange => {
            if let Body::File(f) = &plan.body {
                // Shift the announced window by one byte: a plausible off-by-one server bug.
                let (a, b) = if f.start > 0 {
                    (f.start - 1, f.start + f.len - 2)
                } else {
                    (1, f.len)
                };
                let total = f.total;
                plan.set_header("Content-Range", format!("bytes {a}-{b}/{total}"));
            }
        }
        FaultKind::ExtraBytes => {
            if let Body::File(f) = &mut plan.body {
                f.extra = EXTRA_BYTES as u64;
            }
        }
    }
    Some(effects)
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Writes the answer; `Ok(true)` if the connection is still usable.
async fn send(
    stream: &mut TcpStream,
    plan: Plan,
    head_only: bool,
    effects: SendEffects,
    close: bool,
    state: &State,
) -> io::Result<bool> {
    let head = http::response_head(plan.status, &plan.headers, plan.body.len(), close);
    stream.write_all(&head).await?;
    if head_only {
        return Ok(true);
    }
    if effects.stall_ms > 0 {
        stream.flush().await?;
        tokio::time::sleep(Duration::from_millis(effects.stall_ms)).await;
    }
    let mut budget = effects.truncate_after.unwrap_or(u64::MAX);
    match plan.body {
        Body::Bytes(bytes) => write_counted(stream, &bytes, &mut budget, state).await?,
        Body::File(file) => {
            if plan.status == 206 {
                let last = file.start + file.len - 1;
                state.bump(|s| s.ranges.push((file.label.clone(), file.start, last)));
            }
            stream_file(stream, &file, &mut budget, state).await?;
            let extra = vec![EXTRA_FILL; file.extra as usize];
            write_counted(stream, &extra, &mut budget, state).await?;
        }
    }
    Ok(effects.truncate_after.is_none())
}

/// Writes at most `budget` bytes of `bytes`, counting them in the stats.
async fn write_counted(
    stream: &mut TcpStream,
    bytes: &[u8],
    budget: &mut u64,
    state: &State,
) -> io::Result<()> {
    let n = (bytes.len() as u64).min(*budget) as usize;
    if n == 0 {
        return Ok(());
    }
    stream.write_all(&bytes[..n]).await?;
    *budget -= n as u64;
    state.bump(|s| s.body_bytes_sent += n as u64);
    Ok(())
}

/// Streams the file region chunk by chunk so memory stays bounded for any file size, and a
/// client hanging up ends the transfer at the next write.
async fn stream_file(
    stream: &mut TcpStream,
    body: &FileBody,
    budget: &mut u64,
    state: &State,
) -> io::Result<()> {
    let mut remaining = body.len.min(*budget);
    if remaining == 0 {
        return Ok(());
    }
    let path = body.path.clone();
    let mut file = blocking(move || File::open(path)).await?;
    let mut buf = Vec::new();
    let mut offset = body.start;
    while remaining > 0 {
        let n = remaining.min(CHUNK_BYTES) as usize;
        (file, buf) = blocking(move || read_at(file, offset, buf, n)).await?;
        write_counted(stream, &buf, budget, state).await?;
        remaining -= n as u64;
        offset += n as u64;
    }
    Ok(())
}

fn read_at(mut file: File, offset: u64, mut buf: Vec<u8>, n: usize) -> io::Result<(File, Vec<u8>)> {
    file.seek(SeekFrom::Start(offset))?;
    buf.resize(n, 0);
    file.read_exact(&mut buf)?;
    Ok((file, buf))
}

/// Runs blocking file I/O off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_body(start: u64, len: u64, total: u64) -> Plan {
        Plan {
            status: 206,
            headers: vec![(
                "Content-Range".into(),
                format!("bytes {start}-{}/{total}", start + len - 1),
            )],
            body: Body::File(FileBody {
                path: PathBuf::new(),
                label: "o/n/f".into(),
                total,
                start,
                len,
                extra: 0,
            }),
            label: None,
        }
    }

    #[test]
    fn wrong_content_range_never_matches_the_request() {
        for (start, len) in [(0, 10), (5, 1), (90, 10)] {
            let mut plan = file_body(start, len, 100);
            let right = plan.get_header("Content-Range").map(str::to_string);
            apply_fault(FaultKind::WrongContentRange, &mut plan);
            assert_ne!(plan.get_header("Content-Range").map(str::to_string), right);
        }
    }

    #[test]
    fn ignore_range_and_extra_bytes_rewrite_the_body() {
        let mut plan = file_body(10, 5, 100);
        apply_fault(FaultKind::IgnoreRange, &mut plan);
        assert_eq!((plan.status, plan.body.len()), (200, 100));
        assert!(plan.get_header("Content-Range").is_none());
        let mut plan = file_body(10, 5, 100);
        apply_fault(FaultKind::ExtraBytes, &mut plan);
        assert_eq!(plan.body.len(), 5 + EXTRA_BYTES as u64);
        assert!(apply_fault(FaultKind::CloseConnection, &mut plan).is_none());
    }

    #[test]
    fn classifies_hub_paths() {
        assert!(matches!(
            classify_hub_path("/api/models/o/n"),
            HubPathKind::Api
        ));
        assert!(matches!(
            classify_hub_path("/o/n/resolve/main/x"),
            HubPathKind::Resolve
        ));
        assert!(matches!(
            classify_hub_path("/api/resolve-cache/models/o/n/s/x"),
            HubPathKind::Resolve
        ));
        assert!(matches!(
            classify_hub_path("/o/n/blob/main/x"),
            HubPathKind::Other
        ));
    }
}
