//! The Hub's HTTP side: one GET with retries (backoff with jitter, `Retry-After` honoured up
//! to a limit), redirects followed by hand (the token only ever goes to the endpoint's origin,
//! the `X-Repo-Commit` of the Hub's own answer checked against the pin), bodies bounded by
//! what was asked for, and the per-source counters.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use reqwest::header::{self, HeaderMap};

use super::hub_options::HubOptions;
use super::{ByteRange, FetchStats};

/// Per-source counters, shared with the fetch tasks.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) requests: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) cache_hits: AtomicU64,
    pub(super) local_bytes: AtomicU64,
    pub(super) retries: AtomicU64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> FetchStats {
        FetchStats {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_fetched: self.bytes.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            local_bytes: self.local_bytes.load(Ordering::Relaxed),
            hashed_bytes: 0,
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

/// The HTTP side, shared by fetch tasks (kept apart from the runtime that runs them).
pub(super) struct Http {
    pub(super) opts: HubOptions,
    pub(super) client: reqwest::Client,
    pub(super) endpoint: reqwest::Url,
    /// `resolve` URL of a pinned file → the blob URL it redirected to.
    pub(super) blob_urls: Mutex<HashMap<String, reqwest::Url>>,
}

/// Why one attempt failed.
enum Failure {
    /// Worth another attempt (connection trouble, 5xx, 429, a short body).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Final (4xx, a lying server, a commit mismatch).
    Fatal(anyhow::Error),
}

const MAX_REDIRECTS: usize = 5;

impl Http {
    pub(super) async fn get_with_retries(
        &self,
        url: &str,
        range: Option<ByteRange>,
        expect_commit: Option<&str>,
        limit: u64,
        counters: &Counters,
    ) -> Result<Vec<u8>> {
        let what = match range {
            Some(r) => format!("GET {url} {r}"),
            None => format!("GET {url}"),
        };
        let attempts = self.opts.max_attempts.max(1);
        for attempt in 1..=attempts {
            match self
                .attempt(url, range, expect_commit, limit, counters)
                .await
            {
                Ok(body) => return Ok(body),
                Err(Failure::Fatal(e)) => return Err(e.context(what)),
                Err(Failure::Retry { reason, after }) => {
                    if attempt == attempts {
                        bail!("{what}: {reason} (gave up after {attempts} attempts)");
                    }
                    let wait = match after {
                        Some(a) if a > self.opts.retry_after_max => bail!(
                            "{what}: {reason}; the server asks to wait {}s, longer than the {}s we wait",
                            a.as_secs(),
                            self.opts.retry_after_max.as_secs()
                        ),
                        Some(a) => a,
                        None => self.backoff(attempt),
                    };
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                }
            }
        }
        bail!("{what}: no attempt was made")
    }

    /// Exponential backoff with jitter in [50 %, 100 %] of the step, so many clients that
    /// failed together do not retry together.
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        let step = self
            .opts
            .backoff_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.opts.backoff_max);
        step.mul_f64(0.5 + 0.5 * fastrand::f64())
    }

    pub(super) fn blob_url(&self, url: &str) -> Option<reqwest::Url> {
        let urls = self.blob_urls.lock().unwrap_or_else(|e| e.into_inner());
        urls.get(url).cloned()
    }

    pub(super) fn remember_blob_url(&self, url: &str, blob: &reqwest::Url) {
        let mut urls = self.blob_urls.lock().unwrap_or_else(|e| e.into_inner());
        urls.insert(url.to_string(), blob.clone());
    }

    pub(super) fn forget_blob_url(&self, url: &str) {
        let mut urls = self.blob_urls.lock().unwrap_or_else(|e| e.into_inner());
        urls.remove(url);
    }

    pub(super) fn same_origin(&self, url: &reqwest::Url) -> bool {
        url.scheme() == self.endpoint.scheme()
            && url.host_str() == self.endpoint.host_str()
            && url.port_or_known_default() == self.endpoint.port_or_known_default()
    }

    async fn attempt(
        &self,
        url: &str,
        range: Option<ByteRange>,
        expect_commit: Option<&str>,
        limit: u64,
        counters: &Counters,
    ) -> Result<Vec<u8>, Failure> {
        let original =
            reqwest::Url::parse(url).map_err(|e| Failure::Fatal(anyhow!("invalid URL: {e}")))?;
        // A pinned file's blob URL is reused for its later ranges: one request per range
        // instead of a Hub round trip plus a CDN request. The commit was checked on the
        // Hub's answer that gave the URL; an expired (presigned) URL sends us back there.
        let cached = expect_commit.and_then(|_| self.blob_url(url));
        let mut from_cache = cached.is_some();
        let mut current = cached.unwrap_or_else(|| original.clone());
        let mut redirected = false;
        for _ in 0..=MAX_REDIRECTS + 1 {
            let mut req = self
                .client
                .get(current.clone())
                .header(header::ACCEPT_ENCODING, "identity");
            if let Some(r) = range {
                req = req.header(header::RANGE, r.to_string());
            }
            if let Some(token) = &self.opts.token
                && self.same_origin(&current)
            {
                req = req.bearer_auth(token);
            }
            counters.requests.fetch_add(1, Ordering::Relaxed);
            let resp = req.send().await.map_err(|e| Failure::Retry {
                reason: format!("request failed: {}", error_chain(&e)),
                after: None,
            })?;
            let status = resp.status();
            if from_cache && matches!(status.as_u16(), 401 | 403 | 404 | 410) {
                self.forget_blob_url(url);
                (current, from_cache) = (original.clone(), false);
                continue;
            }
            check_commit(resp.headers(), expect_commit)?;
            if status.is_redirection() {
                let location = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| Failure::Fatal(anyhow!("{status} without a Location header")))?;
                current = current.join(location).map_err(|e| {
                    Failure::Fatal(anyhow!("bad redirect Location {location:?}: {e}"))
                })?;
                redirected = true;
                continue;
            }
            if redirected && expect_commit.is_some() && status.is_success() {
                self.remember_blob_url(url, &current);
            }
            return read_response(resp, range, limit, counters).await;
        }
        Err(Failure::Fatal(anyhow!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }
}

fn check_commit(headers: &HeaderMap, expect: Option<&str>) -> Result<(), Failure> {
    let (Some(expect), Some(got)) = (expect, headers.get("x-repo-commit")) else {
        return Ok(());
    };
    let got = got.to_str().unwrap_or("<not text>");
    if got != expect {
        return Err(Failure::Fatal(anyhow!(
            "X-Repo-Commit {got} disagrees with the pinned commit {expect} (the repository changed under us, or a mirror serves another revision)"
        )));
    }
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Seconds to wait from `Retry-After` or the Hub's `RateLimit: …;t=<seconds>`.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(s) = header_str(headers, "retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_secs(s));
    }
    let rl = header_str(headers, "ratelimit")?;
    rl.split(';')
        .find_map(|p| p.trim().strip_prefix("t="))
        .and_then(|t| t.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Turns a non-redirect answer into bytes or a classified failure.
async fn read_response(
    mut resp: reqwest::Response,
    range: Option<ByteRange>,
    limit: u64,
    counters: &Counters,
) -> Result<Vec<u8>, Failure> {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let code = header_str(&headers, "x-error-code").unwrap_or("");
    let message = header_str(&headers, "x-error-message").unwrap_or("");
    let fatal = |s: String| Err(Failure::Fatal(anyhow!(s)));
    match status {
        200 | 206 => {}
        401 if code == "GatedRepo" => {
            return fatal("401: the repository is gated: accept its terms on the Hub, then set HF_TOKEN (or write the token to $HF_HOME/token)".into());
        }
        401 => {
            return fatal(format!(
                "401 Unauthorized: the repository is private or does not exist, or the token is invalid; set HF_TOKEN {message}"
            ));
        }
        403 => {
            return fatal(format!(
                "403 Forbidden: the repository is gated or private and this token has not been granted access: accept the terms on the Hub / set HF_TOKEN {message}"
            ));
        }
        404 => {
            let which = match code {
                "RepoNotFound" => "the repository does not exist",
                "RevisionNotFound" => "the revision does not exist",
                "EntryNotFound" => "the file does not exist at this commit",
                _ => "repository, revision or file not found",
            };
            return fatal(format!("404 Not Found: {which}"));
        }
        416 => {
            return fatal(format!(
                "416 Range Not Satisfiable (file size per server: {})",
                header_str(&headers, "content-range").unwrap_or("unknown")
            ));
        }
        408 | 429 | 500..=599 => {
            return Err(Failure::Retry {
                reason: format!("HTTP {status}"),
                after: retry_after(&headers),
            });
        }
        _ => return fatal(format!("unexpected HTTP {status} {message}")),
    }
    let Some(range) = range else {
        return read_body(&mut resp, limit, counters, None).await;
    };
    if status == 200 {
        // The server ignored Range and is sending the whole file. Starting at 0 we keep
        // the prefix we asked for and hang up; otherwise we hang up at once.
        if range.start == 0 {
            return read_body(&mut resp, range.len(), counters, Some(range.len())).await;
        }
        return fatal(format!(
            "the server ignored the Range header (200 with the whole file instead of 206 for {range}); refusing to download the whole file"
        ));
    }
    let content_range = header_str(&headers, "content-range").unwrap_or("");
    let expected = format!("bytes {}-{}/", range.start, range.end - 1);
    if !content_range.starts_with(&expected) {
        return fatal(format!(
            "Content-Range {content_range:?} does not match the requested {range}"
        ));
    }
    if let Some(len) = resp.content_length()
        && len != range.len()
    {
        return fatal(format!(
            "Content-Length {len} does not match the {} bytes of {range}",
            range.len()
        ));
    }
    read_body(&mut resp, range.len(), counters, None).await
}

/// Reads a body of at most `limit` bytes. With `prefix`, stops once that many bytes are in
/// and discards the rest unread; otherwise a longer body is an error and a shorter one a
/// retryable truncation.
async fn read_body(
    resp: &mut reqwest::Response,
    limit: u64,
    counters: &Counters,
    prefix: Option<u64>,
) -> Result<Vec<u8>, Failure> {
    if prefix.is_none()
        && let Some(len) = resp.content_length()
        && len > limit
    {
        return Err(Failure::Fatal(anyhow!(
            "the server announces {len} bytes, over the {limit}-byte limit"
        )));
    }
    let mut body = Vec::with_capacity(limit.min(64 * 1024 * 1024) as usize);
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                counters
                    .bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                body.extend_from_slice(&chunk);
                if let Some(p) = prefix
                    && body.len() as u64 >= p
                {
                    body.truncate(p as usize);
                    return Ok(body);
                }
                if body.len() as u64 > limit {
                    return Err(Failure::Fatal(anyhow!(
                        "the server sent more than the {limit} bytes asked for"
                    )));
                }
            }
            Ok(None) => break,
            Err(e) => {
                return Err(Failure::Retry {
                    reason: format!(
                        "body interrupted after {} bytes: {}",
                        body.len(),
                        error_chain(&e)
                    ),
                    after: None,
                });
            }
        }
    }
    let expected = prefix.or(resp.content_length());
    if let Some(n) = expected
        && (body.len() as u64) < n
    {
        return Err(Failure::Retry {
            reason: format!("short body: {} of {n} bytes", body.len()),
            after: None,
        });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let http = Http {
            opts: HubOptions {
                backoff_base: Duration::from_millis(100),
                backoff_max: Duration::from_millis(350),
                ..HubOptions::default()
            },
            client: reqwest::Client::new(),
            endpoint: reqwest::Url::parse("http://127.0.0.1:1").unwrap(),
            blob_urls: Mutex::new(HashMap::new()),
        };
        for attempt in 1..10 {
            let d = http.backoff(attempt);
            let step = (100u64 << (attempt - 1)).min(350);
            assert!(
                d.as_millis() as u64 >= step / 2 && d.as_millis() as u64 <= step,
                "{attempt}: {d:?}"
            );
        }
    }
}
