//! On-disk cache of fetched byte ranges and pins, so re-runs and `verify --reproduce` fetch
//! nothing they already have.
//!
//! Layout under the cache root:
//! `ranges/<endpoint key>/<org>--<name>/<sha>/<file key>/<start>-<end>-<blake3 prefix>` holds the
//! bytes `[start, end)` of one file at one commit, and `pins/<endpoint key>/<org>--<name>/<sha>.json`
//! and `refs/<endpoint key>/<org>--<name>/<rev key>` hold pins for offline use. Writes go to a
//! temporary file then rename, so an interrupted run never leaves a partial entry; every read
//! checks the content hash in the name, so a damaged entry is refetched, never trusted.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

use super::ByteRange;

/// A cached block: `[start, end)` and its file name.
type Block = (u64, u64, String);

/// The on-disk cache of byte ranges and pins under one root folder.
pub struct RangeCache {
    root: PathBuf,
    /// Known blocks per file directory, listed from disk once and kept up to date.
    index: Mutex<HashMap<PathBuf, Vec<Block>>>,
    /// Blocks whose content hash this process has checked: later reads of a small part of a
    /// large block read just that part instead of the whole block again.
    verified: Mutex<HashSet<PathBuf>>,
}

/// Identifies one file at one commit of one repository on one endpoint.
#[derive(Clone, Debug)]
pub struct FileKey<'a> {
    /// The Hub endpoint's URL.
    pub endpoint: &'a str,
    /// The repository, `org/name`.
    pub repo: &'a str,
    /// The commit sha.
    pub sha: &'a str,
    /// The file's path in the repository.
    pub path: &'a str,
}

fn short_hash(s: &str) -> String {
    blake3::hash(s.as_bytes()).to_hex()[..16].to_string()
}

fn repo_dir(repo: &str) -> String {
    repo.replace('/', "--")
}

impl RangeCache {
    /// A cache rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> RangeCache {
        RangeCache {
            root: root.into(),
            index: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// The cache's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file_dir(&self, key: &FileKey) -> PathBuf {
        self.root
            .join("ranges")
            .join(short_hash(key.endpoint))
            .join(repo_dir(key.repo))
            .join(key.sha)
            .join(&blake3::hash(key.path.as_bytes()).to_hex()[..32])
    }

    fn blocks(&self, dir: &Path) -> Vec<(u64, u64, String)> {
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        index
            .entry(dir.to_path_buf())
            .or_insert_with(|| list_blocks(dir))
            .clone()
    }

    /// Returns the bytes of `range` if a cached block covers it.
    pub fn get(&self, key: &FileKey, range: ByteRange) -> Option<Vec<u8>> {
        let dir = self.file_dir(key);
        let blocks = self.blocks(&dir);
        let (start, end, name) = blocks
            .iter()
            .filter(|(s, e, _)| *s <= range.start && range.end <= *e)
            .min_by_key(|(s, e, _)| e - s)?;
        let path = dir.join(name);
        let from = range.start - start;
        let checked = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&path);
        if checked && let Some(part) = read_part(&path, from, range.len()) {
            return Some(part);
        }
        let bytes = fs::read(&path).ok()?;
        let intact = bytes.len() as u64 == end - start
            && blake3::hash(&bytes).to_hex()[..16] == *name.rsplit('-').next()?;
        if !intact {
            // A damaged entry is dropped so the caller refetches it.
            let _ = fs::remove_file(dir.join(name));
            let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(list) = index.get_mut(&dir) {
                list.retain(|b| &b.2 != name);
            }
            return None;
        }
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path);
        let from = from as usize;
        Some(bytes[from..from + range.len() as usize].to_vec())
    }

    /// Stores the bytes of `range` (atomically: temp file + rename).
    pub fn put(&self, key: &FileKey, range: ByteRange, bytes: &[u8]) -> Result<()> {
        let dir = self.file_dir(key);
        let name = format!(
            "{}-{}-{}",
            range.start,
            range.end,
            &blake3::hash(bytes).to_hex()[..16]
        );
        write_atomic(&dir, &name, bytes)?;
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let list = index
            .entry(dir.clone())
            .or_insert_with(|| list_blocks(&dir));
        if !list.iter().any(|b| b.2 == name) {
            list.push((range.start, range.end, name));
        }
        Ok(())
    }

    fn pin_path(&self, endpoint: &str, repo: &str, sha: &str) -> PathBuf {
        self.root
            .join("pins")
            .join(short_hash(endpoint))
            .join(repo_dir(repo))
            .join(format!("{sha}.json"))
    }

    fn ref_path(&self, endpoint: &str, repo: &str, rev: &str) -> PathBuf {
        self.root
            .join("refs")
            .join(short_hash(endpoint))
            .join(repo_dir(repo))
            .join(short_hash(rev))
    }

    /// Stores a pin (`json`) for `repo` at commit `sha`, and records that `rev` resolved to `sha`.
    pub fn put_pin(
        &self,
        endpoint: &str,
        repo: &str,
        rev: &str,
        sha: &str,
        json: &[u8],
    ) -> Result<()> {
        let pin = self.pin_path(endpoint, repo, sha);
        write_atomic(
            pin.parent().unwrap_or(&self.root),
            &format!("{sha}.json"),
            json,
        )?;
        let r = self.ref_path(endpoint, repo, rev);
        write_atomic(
            r.parent().unwrap_or(&self.root),
            &short_hash(rev),
            sha.as_bytes(),
        )
    }

    /// The cached pin of `repo` at commit `sha`, if any.
    pub fn get_pin(&self, endpoint: &str, repo: &str, sha: &str) -> Option<Vec<u8>> {
        fs::read(self.pin_path(endpoint, repo, sha)).ok()
    }

    /// The commit `rev` of `repo` last resolved to, if cached.
    pub fn get_ref(&self, endpoint: &str, repo: &str, rev: &str) -> Option<String> {
        let s = fs::read_to_string(self.ref_path(endpoint, repo, rev)).ok()?;
        super::is_commit_sha(s.trim()).then(|| s.trim().to_string())
    }
}

/// `len` bytes at `offset` of a file, or `None` if it is shorter than that now.
fn read_part(path: &Path, offset: u64, len: u64) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = fs::File::open(path).ok()?;
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    file.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

fn list_blocks(dir: &Path) -> Vec<(u64, u64, String)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut blocks = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut parts = name.splitn(3, '-');
        let (Some(s), Some(e), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if let (Ok(s), Ok(e)) = (s.parse::<u64>(), e.parse::<u64>())
            && s <= e
        {
            blocks.push((s, e, name));
        }
    }
    blocks.sort();
    blocks
}

/// Writes `bytes` to `dir/name` through a uniquely named temporary file and a rename.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating cache folder {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        fastrand::u64(..)
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        fs::rename(&tmp, dir.join(name))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing cache entry {}", dir.join(name).display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>() -> FileKey<'a> {
        FileKey {
            endpoint: "http://127.0.0.1:1",
            repo: "org/m",
            sha: "0123456789012345678901234567890123456789",
            path: "model.safetensors",
        }
    }

    #[test]
    fn serves_sub_ranges_of_stored_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RangeCache::new(dir.path());
        let data: Vec<u8> = (0..100).collect();
        cache.put(&key(), ByteRange::new(10, 110), &data).unwrap();
        assert_eq!(
            cache.get(&key(), ByteRange::new(20, 25)).unwrap(),
            vec![10, 11, 12, 13, 14]
        );
        assert!(cache.get(&key(), ByteRange::new(100, 120)).is_none());
        // A fresh cache object finds the block on disk.
        let again = RangeCache::new(dir.path());
        assert_eq!(
            again.get(&key(), ByteRange::new(10, 12)).unwrap(),
            vec![0, 1]
        );
    }

    #[test]
    fn damaged_entries_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RangeCache::new(dir.path());
        cache
            .put(&key(), ByteRange::new(0, 4), &[1, 2, 3, 4])
            .unwrap();
        let file_dir = cache.file_dir(&key());
        let entry = fs::read_dir(&file_dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        fs::write(&entry, [9, 9, 9, 9]).unwrap();
        assert!(cache.get(&key(), ByteRange::new(0, 4)).is_none());
        assert!(!entry.exists());
    }

    #[test]
    fn pins_and_refs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RangeCache::new(dir.path());
        let k = key();
        cache
            .put_pin(k.endpoint, k.repo, "main", k.sha, b"{}")
            .unwrap();
        assert_eq!(
            cache.get_ref(k.endpoint, k.repo, "main").as_deref(),
            Some(k.sha)
        );
        assert_eq!(cache.get_pin(k.endpoint, k.repo, k.sha).unwrap(), b"{}");
        assert!(cache.get_ref("http://other", k.repo, "main").is_none());
    }
}
