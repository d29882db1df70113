//! The Hugging Face environment: endpoint, token and the Python client's cache layout
//! (`$HF_HOME/hub/models--org--name/{refs,snapshots}`), read-only.

use std::path::{Path, PathBuf};

use super::{FileEntry, is_commit_sha, is_safe_relative_path, local};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub fn hf_home() -> Option<PathBuf> {
    env("HF_HOME").map(PathBuf::from).or_else(|| {
        env("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(dirs::cache_dir)
            .map(|c| c.join("huggingface"))
    })
}

/// `HF_HUB_CACHE`, else `$HF_HOME/hub`.
pub fn hub_cache_dir() -> Option<PathBuf> {
    env("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| hf_home().map(|h| h.join("hub")))
}

/// `HF_TOKEN`, else the file `HF_TOKEN_PATH`, else `$HF_HOME/token`.
pub fn token() -> Option<String> {
    if let Some(t) = env("HF_TOKEN") {
        return Some(t.trim().to_string());
    }
    let path = env("HF_TOKEN_PATH")
        .map(PathBuf::from)
        .or_else(|| hf_home().map(|h| h.join("token")))?;
    let t = std::fs::read_to_string(path).ok()?;
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// `HF_HUB_OFFLINE` set to a true value.
pub fn offline_from_env() -> bool {
    env("HF_HUB_OFFLINE")
        .is_some_and(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes" | "ON" | "on"))
}

fn repo_folder(cache: &Path, repo: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--")))
}

/// The commit a branch or tag pointed to when the Python client last resolved it.
pub fn cached_ref(cache: &Path, repo: &str, rev: &str) -> Option<String> {
    if !is_safe_relative_path(rev) {
        return None;
    }
    let sha = std::fs::read_to_string(repo_folder(cache, repo).join("refs").join(rev)).ok()?;
    let sha = sha.trim();
    is_commit_sha(sha).then(|| sha.to_string())
}

/// The snapshot folder of a commit, if present.
pub fn snapshot_dir(cache: &Path, repo: &str, sha: &str) -> Option<PathBuf> {
    let dir = repo_folder(cache, repo).join("snapshots").join(sha);
    (is_commit_sha(sha) && dir.is_dir()).then_some(dir)
}

/// A file of a snapshot, if downloaded.
pub fn snapshot_file(cache: &Path, repo: &str, sha: &str, path: &str) -> Option<PathBuf> {
    if !is_safe_relative_path(path) {
        return None;
    }
    let f = snapshot_dir(cache, repo, sha)?.join(path);
    f.is_file().then_some(f)
}

/// The files of a snapshot (what was downloaded, which may be a subset of the repository).
pub fn snapshot_listing(cache: &Path, repo: &str, sha: &str) -> Option<Vec<FileEntry>> {
    local::list_files(&snapshot_dir(cache, repo, sha)?).ok()
}
