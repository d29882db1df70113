//! A model in a local folder, read through mmap.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use memmap2::Mmap;
use rayon::prelude::*;
use sha2::Digest;

use super::{FetchStats, FileEntry, FileRange, Pin, Source};

/// Listing limits: a folder is hostile input too (a symlink loop, a million files).
const MAX_FILES: usize = 100_000;
const MAX_DEPTH: usize = 8;

pub struct LocalSource {
    root: PathBuf,
    files: Vec<FileEntry>,
    maps: Mutex<HashMap<String, Arc<Mmap>>>,
    stats: Mutex<FetchStats>,
}

impl LocalSource {
    pub fn open(root: &Path) -> Result<LocalSource> {
        let files = list_files(root)?;
        Ok(LocalSource {
            root: root.to_path_buf(),
            files,
            maps: Mutex::new(HashMap::new()),
            stats: Mutex::new(FetchStats::default()),
        })
    }

    fn map(&self, path: &str) -> Result<Arc<Mmap>> {
        if self.file(path).is_none() {
            bail!(
                "{}: no file {path:?} in this model folder",
                self.root.display()
            );
        }
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = maps.get(path) {
            return Ok(m.clone());
        }
        let full = self.root.join(path);
        let file = fs::File::open(&full).with_context(|| format!("opening {}", full.display()))?;
        // SAFETY: the map is read-only; a file truncated underneath us by another process
        // is outside what we defend against (documented in SECURITY.md).
        let map =
            unsafe { Mmap::map(&file) }.with_context(|| format!("mapping {}", full.display()))?;
        let map = Arc::new(map);
        maps.insert(path.to_string(), map.clone());
        Ok(map)
    }

    fn count(&self, bytes: u64) {
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .local_bytes += bytes;
    }
}

impl Source for LocalSource {
    fn reread(&self) -> super::Reread {
        super::Reread::Local
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn files(&self) -> &[FileEntry] {
        &self.files
    }

    fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>> {
        let entry = self
            .file(path)
            .with_context(|| format!("{}: no file {path:?}", self.root.display()))?;
        if entry.size > max_bytes {
            bail!(
                "{}: {} is {} bytes, over the {max_bytes}-byte limit for small files",
                self.root.display(),
                path,
                entry.size
            );
        }
        let full = self.root.join(path);
        let mut bytes = Vec::new();
        fs::File::open(&full)
            .and_then(|f| f.take(max_bytes + 1).read_to_end(&mut bytes))
            .with_context(|| format!("reading {}", full.display()))?;
        if bytes.len() as u64 > max_bytes {
            bail!(
                "{} grew past the {max_bytes}-byte limit while reading",
                full.display()
            );
        }
        self.count(bytes.len() as u64);
        Ok(bytes)
    }

    fn read_ranges(&self, ranges: &[FileRange]) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            let map = self.map(&r.path)?;
            if r.range.end > map.len() as u64 || r.range.start > r.range.end {
                bail!(
                    "{}: {} is {} bytes, cannot read {}",
                    self.root.display(),
                    r.path,
                    map.len(),
                    r.range
                );
            }
            out.push(map[r.range.start as usize..r.range.end as usize].to_vec());
            self.count(r.range.len());
        }
        Ok(out)
    }

    fn stats(&self) -> FetchStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pin(&self) -> Result<Pin> {
        let files = self
            .files
            .par_iter()
            .map(|f| {
                let full = self.root.join(&f.path);
                let sha =
                    sha256_file(&full).with_context(|| format!("hashing {}", full.display()))?;
                Ok(FileEntry {
                    sha256: Some(sha),
                    ..f.clone()
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let total: u64 = files.iter().map(|f| f.size).sum();
        self.count(total);
        Ok(Pin {
            reference: self.describe(),
            kind: "local".into(),
            endpoint: None,
            repo: None,
            revision: None,
            sha: None,
            path: Some(self.describe()),
            files,
        })
    }
}

/// Streams a file through sha256.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Lists regular files under `root`, skipping hidden entries, sorted by relative path with `/`
/// separators. Symlinked files are followed only while they stay inside the model: the folder
/// itself, or for a Hugging Face cache snapshot (`models--org--name/snapshots/<sha>/`, whose
/// files link to `../../blobs/<hash>`) the `models--org--name` folder. A link that leaves it
/// is refused, naming both ends: a model folder must not pull another file (a key, a token)
/// into the audit and its signed bundle. A dangling link is skipped: nothing can read it, and
/// the audit may not need it.
pub fn list_files(root: &Path) -> Result<Vec<FileEntry>> {
    let fence = model_fence(root)?;
    let mut files = Vec::new();
    walk(root, root, &fence, 0, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The folder a model's files must resolve into (see [`list_files`]).
fn model_fence(root: &Path) -> Result<PathBuf> {
    let canonical =
        fs::canonicalize(root).with_context(|| format!("resolving {}", root.display()))?;
    let parent = canonical.parent();
    let repo = parent.and_then(Path::parent);
    let is_snapshot = parent
        .and_then(Path::file_name)
        .is_some_and(|n| n == "snapshots")
        && repo
            .and_then(Path::file_name)
            .is_some_and(|n| n.to_string_lossy().starts_with("models--"));
    Ok(match (is_snapshot, repo) {
        (true, Some(repo)) => repo.to_path_buf(),
        _ => canonical,
    })
}

fn walk(
    root: &Path,
    dir: &Path,
    fence: &Path,
    depth: usize,
    files: &mut Vec<FileEntry>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let entries = fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(true);
        if is_link {
            let Ok(target) = fs::canonicalize(&path) else {
                continue; // dangling: nothing to read
            };
            if !target.starts_with(fence) {
                bail!(
                    "{}: a symbolic link to {}, outside the model folder {}: refused (copy the file into the folder if it belongs to the model)",
                    path.display(),
                    target.display(),
                    fence.display()
                );
            }
        }
        let meta = fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        if meta.is_dir() {
            // Directories are not followed through symlinks: that is how loops are made.
            if !is_link {
                walk(root, &path, fence, depth + 1, files)?;
            }
        } else if meta.is_file() {
            if files.len() >= MAX_FILES {
                bail!("{} holds more than {MAX_FILES} files", root.display());
            }
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            files.push(FileEntry {
                lfs: false,
                path: rel,
                size: meta.len(),
                sha256: None,
                git_oid: None,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ByteRange;

    #[test]
    fn lists_reads_and_pins() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/b.txt"), b"hello").unwrap();
        fs::write(dir.path().join("a.bin"), [1u8, 2, 3, 4, 5, 6]).unwrap();
        fs::write(dir.path().join(".hidden"), b"x").unwrap();
        let src = LocalSource::open(dir.path()).unwrap();
        let names: Vec<_> = src.files().iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["a.bin", "sub/b.txt"]);
        let got = src
            .read_ranges(&[FileRange {
                path: "a.bin".into(),
                range: ByteRange::new(2, 5),
            }])
            .unwrap();
        assert_eq!(got, vec![vec![3, 4, 5]]);
        assert!(
            src.read_ranges(&[FileRange {
                path: "a.bin".into(),
                range: ByteRange::new(2, 7)
            }])
            .is_err()
        );
        assert!(
            src.read_ranges(&[FileRange {
                path: "../etc/passwd".into(),
                range: ByteRange::new(0, 1)
            }])
            .is_err()
        );
        assert_eq!(src.read_file("sub/b.txt", 100).unwrap(), b"hello");
        assert!(src.read_file("sub/b.txt", 3).is_err());
        let pin = src.pin().unwrap();
        assert_eq!(
            pin.files[1].sha256.as_deref(),
            Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        );
    }

    #[test]
    fn links_that_leave_the_model_are_refused_and_dangling_ones_skipped() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let (model, elsewhere) = (dir.path().join("model"), dir.path().join("elsewhere"));
        fs::create_dir_all(&model).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        fs::write(elsewhere.join("secret.json"), br#"{"api_key": "SECRET"}"#).unwrap();
        fs::write(model.join("model.safetensors"), b"x").unwrap();
        // a link inside the folder is fine, a dangling one is skipped
        symlink("model.safetensors", model.join("alias.safetensors")).unwrap();
        symlink("nowhere.json", model.join("dangling.json")).unwrap();
        let names: Vec<String> = list_files(&model)
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(names, ["alias.safetensors", "model.safetensors"]);
        // a config that links out is refused, naming the link and where it points
        symlink(elsewhere.join("secret.json"), model.join("config.json")).unwrap();
        let e = format!("{:#}", LocalSource::open(&model).err().unwrap());
        assert!(
            e.contains("config.json") && e.contains("secret.json") && e.contains("outside"),
            "{e}"
        );
    }

    #[test]
    fn a_hub_cache_snapshot_reads_its_blobs() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("hub/models--org--name");
        let snapshot = repo.join("snapshots/0123abcd");
        fs::create_dir_all(&snapshot).unwrap();
        fs::create_dir_all(repo.join("blobs")).unwrap();
        fs::write(repo.join("blobs/aa11"), b"{}").unwrap();
        symlink("../../blobs/aa11", snapshot.join("config.json")).unwrap();
        let src = LocalSource::open(&snapshot).unwrap();
        assert_eq!(src.read_file("config.json", 10).unwrap(), b"{}");
        // the same link from a folder that is not a snapshot leaves that folder
        let plain = repo.join("other/0123abcd");
        fs::create_dir_all(&plain).unwrap();
        symlink("../../blobs/aa11", plain.join("config.json")).unwrap();
        assert!(LocalSource::open(&plain).is_err());
    }
}
