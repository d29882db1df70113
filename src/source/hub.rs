//! A Hub repository pinned to one commit, read through HTTP Range requests.
//!
//! The revision is resolved to a commit sha once (`/api/models/{repo}/revision/{rev}`), and
//! every file is then read at `/{repo}/resolve/{sha}/{path}`, never at a branch name, so a
//! moving branch cannot mix two commits into one audit. Redirects are followed by hand: the
//! `X-Repo-Commit` of the Hub's own answer is checked against the pin, and the token is only
//! ever sent to the endpoint's origin, never to the blob host a redirect points to.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};
use memmap2::Mmap;
use serde::Deserialize;

use super::cache::{FileKey, RangeCache};
use super::coalesce::coalesce;
use super::hub_http::{Counters, Http};
use super::hub_options::HubOptions;
use super::{
    ByteRange, FetchStats, FileEntry, FileRange, Pin, Source, hf_cache, is_commit_sha,
    is_safe_relative_path,
};

/// A Hub client: HTTP connection pool, its runtime, and the caches.
pub struct HubClient {
    http: Arc<Http>,
    rt: tokio::runtime::Runtime,
    cache: Option<RangeCache>,
}

impl HubClient {
    /// A client for the endpoint in `opts`, with its own runtime and range cache.
    pub fn new(opts: HubOptions) -> Result<HubClient> {
        let endpoint = reqwest::Url::parse(&opts.endpoint)
            .with_context(|| format!("invalid Hub endpoint {:?}", opts.endpoint))?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            bail!("Hub endpoint {:?} must be http or https", opts.endpoint);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(opts.connect_timeout)
            .read_timeout(opts.read_timeout)
            .user_agent(concat!("weight-audit/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let cache = opts.cache_dir.clone().map(RangeCache::new);
        Ok(HubClient {
            http: Arc::new(Http {
                opts,
                client,
                endpoint,
                blob_urls: Mutex::new(HashMap::new()),
            }),
            rt,
            cache,
        })
    }

    /// The options the client was made with.
    pub fn options(&self) -> &HubOptions {
        &self.http.opts
    }
}

/// What the pin endpoint answers (only the fields we use).
#[derive(Deserialize)]
struct ApiModel {
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<ApiSibling>,
}

#[derive(Deserialize)]
struct ApiSibling {
    rfilename: String,
    size: Option<u64>,
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    lfs: Option<ApiLfs>,
}

#[derive(Deserialize)]
struct ApiLfs {
    sha256: Option<String>,
    size: Option<u64>,
}

/// A repository pinned to a commit.
pub struct HubSource {
    client: Arc<HubClient>,
    repo: String,
    revision: String,
    sha: String,
    files: Vec<FileEntry>,
    /// The weight file the model was named by, when it is one file of the repository.
    file: Option<String>,
    counters: Arc<Counters>,
    snapshot_maps: Mutex<HashMap<String, Arc<Mmap>>>,
}

impl HubSource {
    /// Pins `repo@revision` to a commit and lists its files (from the API, or offline from
    /// the caches).
    pub fn open(client: Arc<HubClient>, repo: &str, revision: &str) -> Result<HubSource> {
        super::validate_repo_id(repo)?;
        let counters = Arc::new(Counters::default());
        let opts = &client.http.opts;
        // the listing at a commit never changes: a cached one saves the request
        let cached_at_commit = is_commit_sha(revision)
            .then(|| cached_listing(&client, repo, revision, revision))
            .flatten()
            .and_then(Result::ok)
            .filter(|(sha, _)| sha == revision);
        let (sha, files) = if opts.offline {
            pin_offline(&client, repo, revision)?
        } else if let Some(pinned) = cached_at_commit {
            pinned
        } else {
            let url = format!(
                "{}/api/models/{repo}/revision/{}?blobs=true",
                opts.endpoint.trim_end_matches('/'),
                encode_segment(revision)
            );
            let http = client.http.clone();
            let c = counters.clone();
            let body = client.rt.block_on(async move {
                http.get_with_retries(&url, None, None, http.opts.max_api_bytes, &c)
                    .await
            })?;
            let (sha, files) = parse_pin(&body, repo, revision)?;
            if is_commit_sha(revision) && sha != revision {
                bail!("hf:{repo}@{revision}: the Hub resolved the commit to {sha}");
            }
            if let Some(cache) = &client.cache
                && let Err(e) = cache.put_pin(&opts.endpoint, repo, revision, &sha, &body)
            {
                eprintln!("warning: {e:#}");
            }
            (sha, files)
        };
        Ok(HubSource {
            client,
            repo: repo.to_string(),
            revision: revision.to_string(),
            sha,
            files,
            file: None,
            counters,
            snapshot_maps: Mutex::new(HashMap::new()),
        })
    }

    /// The same commit, narrowed to one weight file (with the other parts of a split GGUF):
    /// a `*-GGUF` repository holds one model per quantisation.
    pub fn only(self, file: &str) -> Result<HubSource> {
        let files = super::files_of_model(file, &self.files);
        if files.is_empty() {
            bail!(
                "hf:{}@{}: no file {file:?} in the repository",
                self.repo,
                self.sha
            );
        }
        Ok(HubSource {
            files,
            file: Some(file.to_string()),
            ..self
        })
    }

    /// The commit sha the revision resolved to.
    pub fn sha(&self) -> &str {
        &self.sha
    }

    fn url(&self, path: &str) -> String {
        let encoded: Vec<String> = path.split('/').map(encode_segment).collect();
        format!(
            "{}/{}/resolve/{}/{}",
            self.client.http.opts.endpoint.trim_end_matches('/'),
            self.repo,
            self.sha,
            encoded.join("/")
        )
    }

    fn key<'a>(&'a self, path: &'a str) -> FileKey<'a> {
        FileKey {
            endpoint: &self.client.http.opts.endpoint,
            repo: &self.repo,
            sha: &self.sha,
            path,
        }
    }

    /// A file already downloaded by the Python client, mapped from disk.
    fn snapshot_map(&self, path: &str) -> Option<Arc<Mmap>> {
        let cache = self.client.http.opts.hub_cache.as_ref()?;
        let mut maps = self.snapshot_maps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = maps.get(path) {
            return Some(m.clone());
        }
        let file = hf_cache::snapshot_file(cache, &self.repo, &self.sha, path)?;
        let f = std::fs::File::open(file).ok()?;
        // SAFETY: read-only map of a cache file nobody should be writing to.
        let map = Arc::new(unsafe { Mmap::map(&f) }.ok()?);
        let listed = self.file(path).map(|e| e.size);
        if listed.is_some_and(|s| s != map.len() as u64) {
            return None; // incomplete or different download: fall back to the network
        }
        maps.insert(path.to_string(), map.clone());
        Some(map)
    }

    fn entry(&self, path: &str) -> Result<&FileEntry> {
        self.file(path).with_context(|| {
            format!(
                "hf:{}@{}: no file {path:?} in the repository",
                self.repo, self.sha
            )
        })
    }
}

impl Source for HubSource {
    fn reread(&self) -> super::Reread {
        if self.client.cache.is_some() && !self.client.http.opts.offline {
            super::Reread::Cached
        } else if self.client.cache.is_some() {
            super::Reread::Local
        } else {
            super::Reread::Refetch
        }
    }

    fn describe(&self) -> String {
        format!("hf:{}@{}", self.repo, self.sha)
    }

    fn files(&self) -> &[FileEntry] {
        &self.files
    }

    fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>> {
        let size = self.entry(path)?.size;
        if size > max_bytes {
            bail!(
                "{}: {path} is {size} bytes, over the {max_bytes}-byte limit for small files",
                self.describe()
            );
        }
        if size == 0 {
            return Ok(Vec::new());
        }
        let whole = ByteRange::new(0, size);
        if let Some(map) = self.snapshot_map(path) {
            self.counters.local_bytes.fetch_add(size, Ordering::Relaxed);
            return Ok(map.to_vec());
        }
        if let Some(bytes) = self
            .client
            .cache
            .as_ref()
            .and_then(|c| c.get(&self.key(path), whole))
        {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(bytes);
        }
        if self.client.http.opts.offline {
            bail!("offline: {path} of {} is not in the cache", self.describe());
        }
        let url = self.url(path);
        let http = self.client.http.clone();
        let c = self.counters.clone();
        let sha = self.sha.clone();
        let body = self.client.rt.block_on(async move {
            http.get_with_retries(&url, None, Some(&sha), max_bytes, &c)
                .await
        })?;
        if body.len() as u64 != size {
            bail!(
                "{}: {path} is listed as {size} bytes but the server sent {}",
                self.describe(),
                body.len()
            );
        }
        self.store(path, whole, &body);
        Ok(body)
    }

    fn read_ranges(&self, ranges: &[FileRange]) -> Result<Vec<Vec<u8>>> {
        let mut out: Vec<Option<Vec<u8>>> = vec![None; ranges.len()];
        let mut missing: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, r) in ranges.iter().enumerate() {
            let size = self.entry(&r.path)?.size;
            if r.range.start > r.range.end || r.range.end > size {
                bail!(
                    "{}: {} is {size} bytes, cannot read {}",
                    self.describe(),
                    r.path,
                    r.range
                );
            }
            if r.range.is_empty() {
                out[i] = Some(Vec::new());
            } else if let Some(map) = self.snapshot_map(&r.path) {
                out[i] = Some(map[r.range.start as usize..r.range.end as usize].to_vec());
                self.counters
                    .local_bytes
                    .fetch_add(r.range.len(), Ordering::Relaxed);
            } else if let Some(b) = self
                .client
                .cache
                .as_ref()
                .and_then(|c| c.get(&self.key(&r.path), r.range))
            {
                out[i] = Some(b);
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            } else {
                missing.entry(r.path.as_str()).or_default().push(i);
            }
        }
        if !missing.is_empty() {
            if self.client.http.opts.offline {
                let (path, idx) = missing
                    .iter()
                    .next()
                    .map(|(p, v)| (*p, v[0]))
                    .unwrap_or(("", 0));
                bail!(
                    "offline: {path} {} of {} is not in the cache",
                    ranges[idx].range,
                    self.describe()
                );
            }
            // Plan every request first, then run them all with bounded concurrency.
            let opts = &self.client.http.opts;
            let mut jobs: Vec<(String, ByteRange, Vec<usize>)> = Vec::new();
            for (path, idx) in &missing {
                let wanted: Vec<ByteRange> = idx.iter().map(|&i| ranges[i].range).collect();
                for span in coalesce(&wanted, opts.coalesce_gap, opts.max_span) {
                    let members = span.members.iter().map(|&m| idx[m]).collect();
                    jobs.push((path.to_string(), span.range, members));
                }
            }
            let requests: Vec<(String, String, ByteRange)> = jobs
                .iter()
                .map(|(p, r, _)| (p.clone(), self.url(p), *r))
                .collect();
            let bodies = self.fetch_all(requests)?;
            for ((_, span, members), body) in jobs.into_iter().zip(bodies) {
                for m in members {
                    let r = ranges[m].range;
                    let from = (r.start - span.start) as usize;
                    out[m] = Some(body[from..from + r.len() as usize].to_vec());
                }
            }
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }

    fn stats(&self) -> FetchStats {
        self.counters.snapshot()
    }

    fn pin(&self) -> Result<Pin> {
        Ok(Pin {
            reference: match &self.file {
                Some(file) => format!("hf:{}@{}:{file}", self.repo, self.revision),
                None => format!("hf:{}@{}", self.repo, self.revision),
            },
            kind: "hub".into(),
            endpoint: Some(self.client.http.opts.endpoint.clone()),
            repo: Some(self.repo.clone()),
            revision: Some(self.revision.clone()),
            sha: Some(self.sha.clone()),
            name: None,
            digest: None,
            file: self.file.clone(),
            files: self.files.clone(),
        })
    }
}

impl HubSource {
    fn store(&self, path: &str, range: ByteRange, bytes: &[u8]) {
        if let Some(cache) = &self.client.cache
            && let Err(e) = cache.put(&self.key(path), range, bytes)
        {
            eprintln!("warning: {e:#}");
        }
    }

    /// Fetches `(path, url, range)` requests with at most `concurrency` in flight; fails on
    /// the first request that cannot be completed. Each body goes into the range cache as
    /// soon as it arrives, so a run interrupted halfway resumes with what it already had.
    fn fetch_all(&self, requests: Vec<(String, String, ByteRange)>) -> Result<Vec<Vec<u8>>> {
        let http = self.client.http.clone();
        let counters = self.counters.clone();
        let sha = self.sha.clone();
        self.client.rt.block_on(async move {
            let permits = Arc::new(tokio::sync::Semaphore::new(http.opts.concurrency.max(1)));
            let mut set = tokio::task::JoinSet::new();
            let n = requests.len();
            let targets: Vec<(String, ByteRange)> =
                requests.iter().map(|(p, _, r)| (p.clone(), *r)).collect();
            for (i, (_, url, range)) in requests.into_iter().enumerate() {
                let (http, counters, sha, permits) =
                    (http.clone(), counters.clone(), sha.clone(), permits.clone());
                set.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let body = http
                        .get_with_retries(&url, Some(range), Some(&sha), range.len(), &counters)
                        .await;
                    (i, body)
                });
            }
            let mut out = vec![Vec::new(); n];
            while let Some(joined) = set.join_next().await {
                let (i, body) = joined.map_err(|e| anyhow!("fetch task failed: {e}"))?;
                let body = body?;
                self.store(&targets[i].0, targets[i].1, &body);
                out[i] = body;
            }
            Ok(out)
        })
    }
}

/// Parses and validates the pin answer: a commit sha and a listing with safe paths and sizes.
fn parse_pin(body: &[u8], repo: &str, revision: &str) -> Result<(String, Vec<FileEntry>)> {
    let what = format!("hf:{repo}@{revision}");
    let api: ApiModel = serde_json::from_slice(body)
        .with_context(|| format!("{what}: the Hub's model info is not valid JSON"))?;
    let sha = api
        .sha
        .filter(|s| is_commit_sha(s))
        .with_context(|| format!("{what}: the Hub's model info has no valid commit sha"))?;
    let mut files = Vec::with_capacity(api.siblings.len());
    for s in api.siblings {
        if !is_safe_relative_path(&s.rfilename) {
            bail!(
                "{what}: the Hub listed an unsafe file path {:?}",
                s.rfilename
            );
        }
        let size = s
            .lfs
            .as_ref()
            .and_then(|l| l.size)
            .or(s.size)
            .with_context(|| {
                format!(
                    "{what}: no size for {} (the endpoint ignored ?blobs=true)",
                    s.rfilename
                )
            })?;
        files.push(FileEntry {
            lfs: s.lfs.is_some(),
            sha256: s.lfs.and_then(|l| l.sha256),
            git_oid: s.blob_id,
            path: s.rfilename,
            size,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    Ok((sha, files))
}

/// Pins from the caches alone: our pin records first, then the Python client's snapshot.
fn pin_offline(client: &HubClient, repo: &str, revision: &str) -> Result<(String, Vec<FileEntry>)> {
    let opts = &client.http.opts;
    let hub_cache = opts.hub_cache.as_deref();
    let sha = if is_commit_sha(revision) {
        Some(revision.to_string())
    } else {
        client
            .cache
            .as_ref()
            .and_then(|c| c.get_ref(&opts.endpoint, repo, revision))
            .or_else(|| hub_cache.and_then(|h| hf_cache::cached_ref(h, repo, revision)))
    };
    let sha = sha.with_context(|| {
        format!("offline: hf:{repo}@{revision} has never been resolved to a commit here; run once online or pass the commit sha")
    })?;
    if let Some(listing) = cached_listing(client, repo, revision, &sha) {
        return listing;
    }
    let files = hub_cache
        .and_then(|h| hf_cache::snapshot_listing(h, repo, &sha))
        .with_context(|| format!("offline: no cached file list for hf:{repo}@{sha}"))?;
    Ok((sha, files))
}

/// The file listing of `repo` at commit `sha` from our pin records, if one was stored.
fn cached_listing(
    client: &HubClient,
    repo: &str,
    revision: &str,
    sha: &str,
) -> Option<Result<(String, Vec<FileEntry>)>> {
    let body = client
        .cache
        .as_ref()?
        .get_pin(&client.http.opts.endpoint, repo, sha)?;
    Some(parse_pin(&body, repo, revision))
}

/// Percent-encodes one URL path segment (everything but unreserved characters).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_path_segments() {
        assert_eq!(encode_segment("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(
            encode_segment("model-00001.safetensors"),
            "model-00001.safetensors"
        );
        assert_eq!(encode_segment("a b"), "a%20b");
    }

    #[test]
    fn parses_pins_and_rejects_unsafe_listings() {
        let sha = "a".repeat(40);
        let body = format!(
            r#"{{"sha":"{sha}","siblings":[{{"rfilename":"b.safetensors","size":10,"lfs":{{"sha256":"{}","size":10}}}},{{"rfilename":"a.json","size":3,"blobId":"x"}}]}}"#,
            "c".repeat(64)
        );
        let (s, files) = parse_pin(body.as_bytes(), "o/m", "main").unwrap();
        assert_eq!(s, sha);
        assert_eq!(files[0].path, "a.json");
        assert!(files[1].lfs);
        let evil = format!(r#"{{"sha":"{sha}","siblings":[{{"rfilename":"../x","size":1}}]}}"#);
        assert!(
            parse_pin(evil.as_bytes(), "o/m", "main")
                .unwrap_err()
                .to_string()
                .contains("unsafe")
        );
        let nosha = r#"{"siblings":[]}"#;
        assert!(parse_pin(nosha.as_bytes(), "o/m", "main").is_err());
    }
}
