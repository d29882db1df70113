//! The repository model: a directory on disk becomes a commit with Hub-style file metadata.
//!
//! Hashes, and how they differ from the real Hub (documented so nobody mistakes them for git's):
//! - **blob oid** of a regular file: the first 40 hex digits of
//!   `sha256("blob {len}\0" ‖ content)`. Git uses SHA-1 over the same bytes; the crate has no SHA-1,
//!   and clients only need a stable, content-derived 40-hex id.
//! - **LFS sha256**: the real sha256 of the content (as the Hub's `lfs.sha256` / `X-Linked-Etag`),
//!   unless the spec sets `lfs_sha256 = false` (huge sparse replicas); then it is
//!   `blake3("testhub-unhashed-lfs\0" ‖ path ‖ "\0" ‖ size)` in hex, which is 64 hex digits but
//!   **not** the content hash.
//! - **LFS blob oid**: the blob oid (above) of the LFS pointer file text, as on the Hub, where
//!   `blobId` of an LFS file is the git oid of its pointer.
//! - **commit sha**: the first 40 hex digits of blake3 over the repo id and, for each file sorted by
//!   path, `path \0 size \0 (lfs sha256 or blob oid) \n`. Deterministic across restarts; any
//!   change of id, path, size or content (where hashed) changes it.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::RepoSpec;

/// Files larger than this are LFS files whatever their extension (the Hub's default threshold).
pub(crate) const LFS_SIZE_THRESHOLD: u64 = 10 * 1024 * 1024;
const LFS_EXTENSIONS: [&str; 5] = [".safetensors", ".bin", ".pt", ".gguf", ".model"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileEntry {
    /// Repo-relative path with `/` separators.
    pub rfilename: String,
    pub abs: PathBuf,
    pub size: u64,
    pub blob_id: String,
    pub lfs: Option<LfsInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LfsInfo {
    pub sha256: String,
    pub pointer_size: u64,
}

#[derive(Debug)]
pub(crate) struct Commit {
    pub sha: String,
    pub files: BTreeMap<String, Arc<FileEntry>>,
}

#[derive(Debug)]
pub(crate) struct Repo {
    pub id: String,
    pub gated_token: Option<String>,
    /// Branch name → commit sha; always contains `main`.
    pub branches: BTreeMap<String, String>,
    pub commits: HashMap<String, Arc<Commit>>,
}

impl Repo {
    pub fn load(spec: &RepoSpec) -> anyhow::Result<Repo> {
        validate_repo_id(&spec.id)?;
        let mut branches = BTreeMap::new();
        let mut commits = HashMap::new();
        let revisions = std::iter::once(("main", &spec.dir))
            .chain(spec.extra_revisions.iter().map(|(b, d)| (b.as_str(), d)));
        for (branch, dir) in revisions {
            if branch.is_empty() || branch.len() == 40 && is_hex(branch) {
                bail!("branch name {branch:?} of {} would be ambiguous", spec.id);
            }
            let commit = load_commit(&spec.id, dir, spec.lfs_sha256).with_context(|| {
                format!(
                    "loading {} revision {branch} from {}",
                    spec.id,
                    dir.display()
                )
            })?;
            branches.insert(branch.to_string(), commit.sha.clone());
            commits.insert(commit.sha.clone(), Arc::new(commit));
        }
        Ok(Repo {
            id: spec.id.clone(),
            gated_token: spec.gated_token.clone(),
            branches,
            commits,
        })
    }

    /// A revision is a branch name or the full sha of one of this repo's commits.
    pub fn resolve(&self, rev: &str) -> Option<&Arc<Commit>> {
        let sha = self.branches.get(rev).map(String::as_str).unwrap_or(rev);
        self.commits.get(sha)
    }

    pub fn main_sha(&self) -> &str {
        self.branches
            .get("main")
            .map(String::as_str)
            .unwrap_or_default()
    }
}

fn validate_repo_id(id: &str) -> anyhow::Result<()> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    match id.split_once('/') {
        Some((org, name)) if ok_part(org) && ok_part(name) => Ok(()),
        _ => bail!("repo id {id:?} is not `org/name`"),
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn load_commit(repo_id: &str, dir: &Path, hash_lfs: bool) -> anyhow::Result<Commit> {
    let mut files = BTreeMap::new();
    for (rfilename, abs, size) in scan_dir(dir)? {
        let entry = file_entry(rfilename, abs, size, hash_lfs)?;
        files.insert(entry.rfilename.clone(), Arc::new(entry));
    }
    let sha = commit_sha(repo_id, files.values().map(|f| f.as_ref()));
    Ok(Commit { sha, files })
}

/// Lists regular files under `dir` recursively as (relative path, absolute path, size), sorted.
/// `.git` and symlinked directories are skipped; symlinked files are followed (fixtures may link
/// to shared weight files).
pub(crate) fn scan_dir(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf, u64)>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs_dir, rel_dir)) = stack.pop() {
        let entries = std::fs::read_dir(&abs_dir)
            .with_context(|| format!("reading directory {}", abs_dir.display()))?;
        for entry in entries {
            let entry =
                entry.with_context(|| format!("reading directory {}", abs_dir.display()))?;
            let name = entry.file_name().into_string().map_err(|n| {
                anyhow::anyhow!("non-UTF-8 file name {n:?} in {}", abs_dir.display())
            })?;
            if name == ".git" {
                continue;
            }
            let rel = if rel_dir.is_empty() {
                name
            } else {
                format!("{rel_dir}/{name}")
            };
            let meta = std::fs::metadata(entry.path())
                .with_context(|| format!("stat {}", entry.path().display()))?;
            // Symlinked directories are not entered, so a link cycle cannot loop forever.
            let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
            if meta.is_dir() && !is_link {
                stack.push((entry.path(), rel));
            } else if meta.is_file() {
                out.push((rel, entry.path(), meta.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn is_lfs(path: &str, size: u64) -> bool {
    size > LFS_SIZE_THRESHOLD || LFS_EXTENSIONS.iter().any(|ext| path.ends_with(ext))
}

fn file_entry(
    rfilename: String,
    abs: PathBuf,
    size: u64,
    hash_lfs: bool,
) -> anyhow::Result<FileEntry> {
    let (blob_id, lfs) = if is_lfs(&rfilename, size) {
        let sha256 = if hash_lfs {
            sha256_file(&abs)?
        } else {
            unhashed_lfs_sha256(&rfilename, size)
        };
        let pointer = lfs_pointer(&sha256, size);
        let info = LfsInfo {
            sha256,
            pointer_size: pointer.len() as u64,
        };
        (blob_oid(pointer.as_bytes()), Some(info))
    } else {
        let content = std::fs::read(&abs).with_context(|| format!("reading {}", abs.display()))?;
        (blob_oid(&content), None)
    };
    Ok(FileEntry {
        rfilename,
        abs,
        size,
        blob_id,
        lfs,
    })
}

/// Git-style blob id, truncated sha256 (see the module docs).
pub(crate) fn blob_oid(content: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content);
    hex::encode(h.finalize())[..40].to_string()
}

/// The text git-lfs stores in git in place of the file.
pub(crate) fn lfs_pointer(sha256: &str, size: u64) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n")
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn unhashed_lfs_sha256(path: &str, size: u64) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"testhub-unhashed-lfs\0");
    h.update(path.as_bytes());
    h.update(b"\0");
    h.update(size.to_string().as_bytes());
    h.finalize().to_hex().to_string()
}

pub(crate) fn commit_sha<'a>(repo_id: &str, files: impl Iterator<Item = &'a FileEntry>) -> String {
    let mut h = blake3::Hasher::new();
    h.update(repo_id.as_bytes());
    h.update(b"\n");
    for f in files {
        let digest = f
            .lfs
            .as_ref()
            .map_or(f.blob_id.as_str(), |l| l.sha256.as_str());
        h.update(format!("{}\0{}\0{}\n", f.rfilename, f.size, digest).as_bytes());
    }
    h.finalize().to_hex()[..40].to_string()
}

/// The `/api/models/...` answer. Sibling order is the BTreeMap's, i.e. sorted by path.
pub(crate) fn info_json(repo: &Repo, commit: &Commit, blobs: bool) -> Value {
    let siblings: Vec<Value> = commit
        .files
        .values()
        .map(|f| sibling_json(f, blobs))
        .collect();
    json!({
        "_id": &commit.sha[..24],
        "id": repo.id,
        "modelId": repo.id,
        "sha": commit.sha,
        "siblings": siblings,
        "gated": if repo.gated_token.is_some() { json!("manual") } else { json!(false) },
        "private": false,
        "disabled": false,
    })
}

fn sibling_json(f: &FileEntry, blobs: bool) -> Value {
    if !blobs {
        return json!({ "rfilename": f.rfilename });
    }
    let mut v = json!({ "rfilename": f.rfilename, "size": f.size, "blobId": f.blob_id });
    if let Some(lfs) = &f.lfs {
        v["lfs"] = json!({ "sha256": lfs.sha256, "size": f.size, "pointerSize": lfs.pointer_size });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path) -> RepoSpec {
        RepoSpec::new("org/m", dir)
    }

    #[test]
    fn lfs_classification() {
        assert!(is_lfs("model.safetensors", 10));
        assert!(is_lfs("a/pytorch_model.bin", 10));
        assert!(is_lfs("tokenizer.model", 10));
        assert!(is_lfs("x.gguf", 0));
        assert!(is_lfs("big.json", LFS_SIZE_THRESHOLD + 1));
        assert!(!is_lfs("config.json", LFS_SIZE_THRESHOLD));
        assert!(!is_lfs("model.safetensors.index.json", 100));
    }

    #[test]
    fn hashes_are_stable_and_documented_shapes() {
        // The empty blob; pins the construction so a refactor cannot silently change every sha.
        assert_eq!(
            blob_oid(b""),
            "473a0f4c3be8a93681a267e3b1e9a7dcda1185436fe141f7749120a303721813"[..40]
        );
        let p = lfs_pointer(&"ab".repeat(32), 5);
        assert!(p.starts_with("version https://git-lfs.github.com/spec/v1\noid sha256:abab"));
        assert!(p.ends_with("\nsize 5\n"));
        assert_eq!(unhashed_lfs_sha256("a", 1).len(), 64);
    }

    #[test]
    fn commit_depends_on_id_and_content() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("config.json"), b"{}").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/w.safetensors"), b"weights").unwrap();
        std::fs::create_dir(d.path().join(".git")).unwrap();
        std::fs::write(d.path().join(".git/HEAD"), b"ref").unwrap();

        let a = Repo::load(&spec(d.path())).unwrap();
        let again = Repo::load(&spec(d.path())).unwrap();
        assert_eq!(a.main_sha(), again.main_sha());
        assert_eq!(a.main_sha().len(), 40);
        let commit = a.resolve("main").unwrap();
        let names: Vec<_> = commit.files.keys().cloned().collect();
        assert_eq!(names, ["config.json", "sub/w.safetensors"]);
        let w = &commit.files["sub/w.safetensors"];
        let lfs = w.lfs.as_ref().unwrap();
        assert_eq!(lfs.sha256, hex::encode(Sha256::digest(b"weights")));
        assert_eq!(w.blob_id, blob_oid(lfs_pointer(&lfs.sha256, 7).as_bytes()));
        assert!(a.resolve(a.main_sha()).is_some());
        assert!(a.resolve("nope").is_none());

        let other_id = Repo::load(&RepoSpec::new("org/other", d.path())).unwrap();
        assert_ne!(a.main_sha(), other_id.main_sha());
        std::fs::write(d.path().join("config.json"), b"{ }").unwrap();
        let changed = Repo::load(&spec(d.path())).unwrap();
        assert_ne!(a.main_sha(), changed.main_sha());
    }

    #[cfg(unix)]
    #[test]
    fn follows_file_links_but_not_directory_links() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("real.bin"), b"x").unwrap();
        std::os::unix::fs::symlink(d.path().join("real.bin"), d.path().join("link.bin")).unwrap();
        std::os::unix::fs::symlink(d.path(), d.path().join("loop")).unwrap();
        let names: Vec<String> = scan_dir(d.path())
            .unwrap()
            .into_iter()
            .map(|f| f.0)
            .collect();
        assert_eq!(names, ["link.bin", "real.bin"]);
    }

    #[test]
    fn rejects_bad_ids_and_branches() {
        let d = tempfile::tempdir().unwrap();
        for id in ["noslash", "a/b/c", "../x", "a/", "a b/c"] {
            assert!(Repo::load(&RepoSpec::new(id, d.path())).is_err(), "{id}");
        }
        let mut s = spec(d.path());
        s.extra_revisions
            .push(("a".repeat(40), d.path().to_path_buf()));
        assert!(Repo::load(&s).is_err());
    }
}
