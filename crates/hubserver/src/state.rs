//! The loopback Hub's shared state: its repositories, the CDN's blobs by opaque key, the
//! fault rules and the counters. Routing (`routes`) reads it; the listeners (`server`) own it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use super::faults::FaultRules;
use super::repo::{FileEntry, Repo};
use super::{Fault, RepoSpec, ServerStats};

pub(super) fn file_label(repo_id: &str, file: &FileEntry) -> String {
    format!("{repo_id}/{}", file.rfilename)
}

/// The opaque CDN name of one file of one commit.
pub(super) fn blob_key(repo_id: &str, sha: &str, path: &str) -> String {
    let mut h = blake3::Hasher::new();
    for part in [repo_id, sha, path] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    h.finalize().to_hex().to_string()
}

/// An LFS file reachable on the CDN.
#[derive(Debug, Clone)]
pub(super) struct Blob {
    repo_id: String,
    pub(super) file: Arc<FileEntry>,
    pub(super) label: String,
    pub(super) sha256: String,
}

/// Everything the listeners share. Locks are std locks held for short, await-free sections.
pub(crate) struct State {
    pub(super) cdn_origin: String,
    repos: RwLock<HashMap<String, Arc<Repo>>>,
    blobs: RwLock<HashMap<String, Blob>>,
    pub(super) faults: Mutex<FaultRules>,
    stats: Mutex<ServerStats>,
    resolve_cache_redirect: AtomicBool,
}

// A panic elsewhere must not turn every later request into a poisoned-lock panic.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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

    pub(super) fn resolve_cache_redirect(&self) -> bool {
        self.resolve_cache_redirect.load(Ordering::SeqCst)
    }

    pub fn stats(&self) -> ServerStats {
        lock(&self.stats).clone()
    }

    pub fn reset_stats(&self) {
        *lock(&self.stats) = ServerStats::default();
    }

    pub(super) fn bump(&self, f: impl FnOnce(&mut ServerStats)) {
        f(&mut lock(&self.stats));
    }

    pub(super) fn repo(&self, id: &str) -> Option<Arc<Repo>> {
        let repos = self.repos.read().unwrap_or_else(PoisonError::into_inner);
        repos.get(id).cloned()
    }

    pub(super) fn blob(&self, key: &str) -> Option<Blob> {
        let blobs = self.blobs.read().unwrap_or_else(PoisonError::into_inner);
        blobs.get(key).cloned()
    }
}
