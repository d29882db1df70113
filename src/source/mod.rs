//! Where model files come from: a local folder or a Hub repository pinned to a commit.
//!
//! Both sources answer the same few questions (which files, the bytes of a small file,
//! the bytes of many ranges) so everything above them is source-agnostic.

pub mod cache;
pub mod coalesce;
pub mod hf_cache;
pub mod hub;
mod hub_http;
pub mod hub_options;
pub mod local;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

pub use hub::HubClient;
pub use hub_options::HubOptions;

/// A half-open byte range `[start, end)` of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl ByteRange {
    /// The range `[start, end)`.
    pub fn new(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    /// Length in bytes (0 when `end ≤ start`).
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True when the range holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for ByteRange {
    /// HTTP spelling, inclusive end.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bytes={}-{}", self.start, self.end.saturating_sub(1))
    }
}

/// One range of one file.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileRange {
    /// The file's path within the model.
    pub path: String,
    /// The bytes wanted.
    pub range: ByteRange,
}

/// A file of a model as its source lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the model's root (`/`-separated).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the content: the LFS oid on the Hub, computed locally by `pin`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha256: Option<String>,
    /// The git blob id the Hub reports (sha1 of the git blob, for non-LFS files).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub git_oid: Option<String>,
    /// Stored in git LFS on the Hub.
    #[serde(default)]
    pub lfs: bool,
}

/// Counters of what reading cost. Reported, never written into results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// HTTP requests sent (every attempt and redirect hop counts).
    pub requests: u64,
    /// Body bytes received over HTTP.
    pub bytes_fetched: u64,
    /// Ranges answered by the on-disk range cache.
    pub cache_hits: u64,
    /// Bytes read from local disk (local folders and the Hub cache).
    pub local_bytes: u64,
    /// Bytes of local files read to hash them for their pin (every file, once).
    pub hashed_bytes: u64,
    /// Attempts that were retried.
    pub retries: u64,
}

impl FetchStats {
    /// Adds another source's counters to these.
    pub fn add(&mut self, o: &FetchStats) {
        self.requests += o.requests;
        self.bytes_fetched += o.bytes_fetched;
        self.cache_hits += o.cache_hits;
        self.local_bytes += o.local_bytes;
        self.hashed_bytes += o.hashed_bytes;
        self.retries += o.retries;
    }

    /// One line for stderr.
    pub fn summary(&self) -> String {
        let hashed = if self.hashed_bytes > 0 {
            format!(
                " ({} more hashed to pin local folders)",
                human_bytes(self.hashed_bytes)
            )
        } else {
            String::new()
        };
        format!(
            "{} requests, {} fetched, {} cache hits, {} read from disk{hashed}, {} retries",
            self.requests,
            human_bytes(self.bytes_fetched),
            self.cache_hits,
            human_bytes(self.local_bytes),
            self.retries
        )
    }
}

/// `n` bytes for people: `512 B`, `1.5 MiB`, … (binary units).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// What a model reference on the command line means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelRef {
    /// A Hub repository (`hf:org/name@rev`).
    Hub {
        /// The repository, `org/name`.
        repo: String,
        /// Branch, tag or commit (`main` when not given).
        revision: String,
        /// One weight file of the repository (`hf:org/name@rev:path/model.gguf`): the model is
        /// that file (with the other parts of a split GGUF), not the repository's folder.
        file: Option<String>,
    },
    /// A local folder, or one weight file (a `.gguf`).
    Local(PathBuf),
    /// A local model named by content, as bundles record it: `local:NAME@sha256:<hex>`.
    /// Where its folder is on this machine comes from [`LocalInputs`].
    Pinned(LocalPin),
}

impl ModelRef {
    /// Parses `hf:org/name[@rev][:path/in/repo]`, `local:NAME@sha256:<hex>`, or a local folder
    /// or file path.
    pub fn parse(s: &str) -> Result<ModelRef> {
        if s.starts_with(LocalPin::PREFIX) {
            return Ok(ModelRef::Pinned(LocalPin::parse(s)?));
        }
        if let Some(rest) = s.strip_prefix("hf:") {
            // neither repository ids nor git revisions can hold ':', so the first one starts
            // the path
            let (rest, file) = match rest.split_once(':') {
                Some((r, f)) => {
                    if !is_safe_relative_path(f) {
                        bail!("model reference {s:?}: invalid path {f:?} in the repository");
                    }
                    (r, Some(f.to_string()))
                }
                None => (rest, None),
            };
            let (repo, revision) = match rest.split_once('@') {
                Some((r, rev)) => (r, rev),
                None => (rest, "main"),
            };
            validate_repo_id(repo).map_err(|e| anyhow::anyhow!("model reference {s:?}: {e}"))?;
            if revision.is_empty()
                || revision.len() > 256
                || revision
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
                || revision.split('/').any(|p| p == ".." || p == ".")
            {
                bail!("model reference {s:?}: invalid revision {revision:?}");
            }
            return Ok(ModelRef::Hub {
                repo: repo.to_string(),
                revision: revision.to_string(),
                file,
            });
        }
        let path = Path::new(s);
        let looks_like_path = s.starts_with('/') || s.starts_with('.') || path.exists();
        if !looks_like_path {
            bail!(
                "unrecognised model reference {s:?}: use hf:org/name[@revision][:file] for the Hub or a path to a local folder or .gguf file"
            );
        }
        if !path.is_dir() && !local::is_weight_file(path) {
            bail!("model {s:?} does not exist or is neither a folder nor a regular .gguf file");
        }
        Ok(ModelRef::Local(path.to_path_buf()))
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelRef::Hub {
                repo,
                revision,
                file: None,
            } => write!(f, "hf:{repo}@{revision}"),
            ModelRef::Hub {
                repo,
                revision,
                file: Some(file),
            } => write!(f, "hf:{repo}@{revision}:{file}"),
            ModelRef::Local(p) => write!(f, "{}", p.display()),
            ModelRef::Pinned(p) => write!(f, "{p}"),
        }
    }
}

/// `org/name` with the Hub's character set; nothing that could escape a URL path segment.
pub fn validate_repo_id(repo: &str) -> Result<()> {
    let parts: Vec<&str> = repo.split('/').collect();
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && !p.starts_with(['-', '.'])
            && !p.contains("..")
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if parts.len() != 2 || !parts.iter().all(|p| ok_part(p)) {
        bail!("invalid repository id {repo:?} (expected org/name)");
    }
    Ok(())
}

/// A 40-hex lowercase git commit id.
pub fn is_commit_sha(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The files that make up the model named by one of them: every part of the split GGUF it is
/// a part of (`-00001-of-00003.gguf`); an ONNX file with the files of its folder whose names
/// start with its stem (external data: `model.onnx_data`, `model.onnx.data`); else the file.
pub fn files_of_model(file: &str, files: &[FileEntry]) -> Vec<FileEntry> {
    use crate::formats::{gguf, onnx};
    let stem = |p: &str| gguf::split_name(p).map(|(s, _, c)| (s.to_string(), c));
    if let Some(key) = stem(file) {
        return files
            .iter()
            .filter(|f| stem(&f.path).as_ref() == Some(&key))
            .cloned()
            .collect();
    }
    if onnx::is_onnx_path(file) {
        let (dir, name) = file.rsplit_once('/').unwrap_or(("", file));
        let base = name.split('.').next().unwrap_or(name);
        return files
            .iter()
            .filter(|f| {
                let (d, n) = f.path.rsplit_once('/').unwrap_or(("", &f.path));
                f.path == file
                    || (d == dir
                        && n.starts_with(base)
                        && !onnx::is_onnx_path(n)
                        && !gguf::is_gguf_path(n)
                        && !n.ends_with(".safetensors"))
            })
            .cloned()
            .collect();
    }
    files.iter().filter(|f| f.path == file).cloned().collect()
}

/// A relative path inside a model that cannot escape it.
pub fn is_safe_relative_path(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 4096
        && !p.starts_with('/')
        && !p.contains('\\')
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// What reading a range again costs a source (see [`Source::reread`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reread {
    /// Local disk: read on demand, nothing to fetch ahead.
    Local,
    /// Fetched once into the range cache, then read from disk.
    Cached,
    /// Every read goes to the network again.
    Refetch,
}

/// Where the bytes of a pinned model come from.
pub trait Source: Send + Sync {
    /// The pinned reference (`hf:org/name@<sha>` or the folder path).
    fn describe(&self) -> String;
    /// Every file of the model, sorted by path.
    fn files(&self) -> &[FileEntry];
    /// The whole content of a small file, refusing files over `max_bytes`.
    fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>>;
    /// The bytes of many ranges, in the order asked. Sources batch, coalesce and fetch
    /// concurrently, so callers should ask for everything they need at once.
    fn read_ranges(&self, ranges: &[FileRange]) -> Result<Vec<Vec<u8>>>;
    /// What reading has cost so far.
    fn stats(&self) -> FetchStats;
    /// The pin record: commit and per-file sizes and hashes (computed locally if needed).
    fn pin(&self) -> Result<Pin>;
    /// How reading the same bytes a second time costs: free (a local file, or a remote one
    /// whose ranges land in the on-disk cache) or another network fetch.
    fn reread(&self) -> Reread {
        Reread::Refetch
    }

    /// The listed file at `path`, if any (`files` is sorted by path).
    fn file(&self, path: &str) -> Option<&FileEntry> {
        let files = self.files();
        files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &files[i])
    }
}

/// What `audit pin` records for one model (E0a).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The reference as the user gave it.
    pub reference: String,
    /// `hub` or `local`.
    pub kind: String,
    /// The Hub endpoint the model was read from (Hub models only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub endpoint: Option<String>,
    /// The repository, `org/name` (Hub models only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub repo: Option<String>,
    /// The revision as asked for (Hub models only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub revision: Option<String>,
    /// The commit sha the revision resolved to (Hub models only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha: Option<String>,
    /// A local model's display name (its folder's base name); never a path, so the pin is
    /// the same in any folder on any machine.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// A local model's content digest ([`local::content_digest`] of `files`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub digest: Option<String>,
    /// The weight file a Hub model was named by (`hf:org/name@rev:file`); `files` then lists
    /// only it and the other parts of a split GGUF.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub file: Option<String>,
    /// Every file of the model with its size and hashes, sorted by path.
    pub files: Vec<FileEntry>,
}

impl Pin {
    /// The reference that names exactly what was audited: a Hub model at its commit, a local
    /// one by name and content digest.
    pub fn pinned_reference(&self) -> String {
        match (&self.repo, &self.sha, &self.name, &self.digest) {
            (Some(repo), Some(sha), _, _) => match &self.file {
                Some(file) => format!("hf:{repo}@{sha}:{file}"),
                None => format!("hf:{repo}@{sha}"),
            },
            (_, _, Some(name), Some(digest)) => LocalPin {
                name: name.clone(),
                digest: digest.clone(),
            }
            .to_string(),
            _ => self.reference.clone(),
        }
    }

    /// How a model given as `given` is named in results and bundles: Hub references as
    /// given, local folders by their display name (the path stays on this machine).
    pub fn display_reference(&self, given: &str) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => given.to_string(),
        }
    }
}

/// `revisions.json`: the pin of every audited model, A, B, then the controls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revisions {
    /// A, B, then the controls.
    pub models: Vec<Pin>,
}

/// A local model named by content: its display name and the digest of its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPin {
    /// The model's display name, one safe path component.
    pub name: String,
    /// `sha256:` and 64 lowercase hex digits.
    pub digest: String,
}

impl LocalPin {
    /// What a pinned local reference starts with.
    pub const PREFIX: &'static str = "local:";

    /// Parses `local:NAME@sha256:<64 hex>`; the name must be one safe path component.
    pub fn parse(s: &str) -> Result<LocalPin> {
        let rest = s.strip_prefix(Self::PREFIX).unwrap_or(s);
        let Some((name, hex)) = rest.rsplit_once("@sha256:") else {
            bail!(
                "model reference {s:?}: a pinned local model is local:NAME@sha256:<64 hex digits>"
            );
        };
        if !is_display_name(name) {
            bail!(
                "model reference {s:?}: {name:?} is not a folder name (one path component, no separators)"
            );
        }
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            bail!("model reference {s:?}: the digest must be 64 lowercase hex digits");
        }
        Ok(LocalPin {
            name: name.to_string(),
            digest: format!("sha256:{hex}"),
        })
    }
}

impl fmt::Display for LocalPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}@{}", Self::PREFIX, self.name, self.digest)
    }
}

/// A name usable as one folder name: what [`local::display_name`] makes and what a bundle
/// may name (it is joined to search folders, so nothing that could climb out of one).
pub fn is_display_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.chars().any(char::is_control)
}

/// Where pinned local models (`local:NAME@sha256:…`) are on this machine: folders named
/// explicitly, then `NAME` under each search folder, first match wins.
#[derive(Clone, Debug, Default)]
pub struct LocalInputs {
    /// Model name → its folder, given explicitly.
    pub named: std::collections::BTreeMap<String, PathBuf>,
    /// Folders to look for `NAME` in, in order.
    pub search: Vec<PathBuf>,
}

/// Options for opening sources.
#[derive(Clone, Debug, Default)]
pub struct SourceOptions {
    /// How the Hub is reached.
    pub hub: HubOptions,
    /// Where pinned local models are.
    pub local: LocalInputs,
}

/// Opens sources, sharing one Hub client (and its connection pool) between them.
pub struct Opener {
    options: SourceOptions,
    hub: std::sync::OnceLock<Arc<HubClient>>,
}

impl Opener {
    /// An opener with no Hub client yet (made on first use).
    pub fn new(options: SourceOptions) -> Opener {
        Opener {
            options,
            hub: std::sync::OnceLock::new(),
        }
    }

    /// The options it opens sources with.
    pub fn options(&self) -> &SourceOptions {
        &self.options
    }

    /// The shared Hub client, made on first call.
    pub fn hub_client(&self) -> Result<Arc<HubClient>> {
        if let Some(c) = self.hub.get() {
            return Ok(c.clone());
        }
        let client = Arc::new(HubClient::new(self.options.hub.clone())?);
        Ok(self.hub.get_or_init(|| client).clone())
    }

    /// Opens the model `reference` names: a local folder or file, a pinned local model, or a Hub repository.
    pub fn open(&self, reference: &ModelRef) -> Result<Box<dyn Source>> {
        match reference {
            ModelRef::Local(path) => Ok(Box::new(local::LocalSource::open(path)?)),
            ModelRef::Pinned(pin) => Ok(Box::new(local::open_pinned(
                pin,
                &self.options.local,
                None,
            )?)),
            ModelRef::Hub {
                repo,
                revision,
                file,
            } => {
                let source = hub::HubSource::open(self.hub_client()?, repo, revision)?;
                Ok(Box::new(match file {
                    Some(file) => source.only(file)?,
                    None => source,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hub_references() {
        assert_eq!(
            ModelRef::parse("hf:zai-org/GLM-4.5-Air").unwrap(),
            ModelRef::Hub {
                repo: "zai-org/GLM-4.5-Air".into(),
                revision: "main".into(),
                file: None,
            }
        );
        assert_eq!(
            ModelRef::parse("hf:a/b@refs/pr/1").unwrap(),
            ModelRef::Hub {
                repo: "a/b".into(),
                revision: "refs/pr/1".into(),
                file: None,
            }
        );
        let r = ModelRef::parse("hf:org/m-GGUF@abc:q4/m-Q4_K_M.gguf").unwrap();
        assert_eq!(
            r,
            ModelRef::Hub {
                repo: "org/m-GGUF".into(),
                revision: "abc".into(),
                file: Some("q4/m-Q4_K_M.gguf".into()),
            }
        );
        assert_eq!(r.to_string(), "hf:org/m-GGUF@abc:q4/m-Q4_K_M.gguf");
        assert!(matches!(
            ModelRef::parse("hf:org/m:m.gguf").unwrap(),
            ModelRef::Hub { file: Some(_), .. }
        ));
        for bad in [
            "hf:noslash",
            "hf:a/b/c",
            "hf:../x",
            "hf:a/b@",
            "hf:a/b@x y",
            "hf:a/b@../x",
            "hf:a/.b",
            "hf:a/b@main:../x.gguf",
            "hf:a/b:/etc/passwd",
        ] {
            assert!(ModelRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_unknown_references_with_a_hint() {
        let e = ModelRef::parse("zai-org-GLM").unwrap_err().to_string();
        assert!(e.contains("hf:org/name"), "{e}");
        let e = ModelRef::parse("./definitely/not/here")
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        assert!(matches!(ModelRef::parse(".").unwrap(), ModelRef::Local(_)));
    }

    #[test]
    fn path_and_sha_checks() {
        assert!(is_safe_relative_path("a/b.safetensors"));
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "a\\b", "./a"] {
            assert!(!is_safe_relative_path(bad), "{bad}");
        }
        assert!(is_commit_sha(&"a".repeat(40)));
        assert!(!is_commit_sha(&"A".repeat(40)));
        assert!(!is_commit_sha("abc"));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(ByteRange::new(0, 8).to_string(), "bytes=0-7");
    }
}
