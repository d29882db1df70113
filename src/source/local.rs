//! A model in a local folder, read through mmap.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result, bail};
use memmap2::Mmap;
use rayon::prelude::*;
use sha2::Digest;

use super::{FetchStats, FileEntry, FileRange, LocalInputs, LocalPin, Pin, Source};

/// Listing limits: a folder is hostile input too (a symlink loop, a million files).
const MAX_FILES: usize = 100_000;
const MAX_DEPTH: usize = 8;

/// A model folder on disk: its listing, mmapped files and pin.
pub struct LocalSource {
    root: PathBuf,
    files: Vec<FileEntry>,
    maps: Mutex<HashMap<String, Arc<Mmap>>>,
    stats: Mutex<FetchStats>,
    /// Hashing every file is the one full read of a local model: done once, on first use.
    pin: OnceLock<Pin>,
    /// The name the model is pinned under when it is not the folder's (a pinned input found
    /// in a folder named otherwise).
    name: Option<String>,
    /// The weight file the model was named by, when it is one file of the folder.
    single: Option<String>,
}

impl LocalSource {
    /// Opens a model folder, or a weight file (a `.gguf`, with the other parts of a split one):
    /// then the model is that file alone, named by its file name.
    pub fn open(root: &Path) -> Result<LocalSource> {
        if !root.is_dir() {
            return LocalSource::open_file(root);
        }
        let files = list_files(root)?;
        Ok(LocalSource {
            root: root.to_path_buf(),
            files,
            maps: Mutex::new(HashMap::new()),
            stats: Mutex::new(FetchStats::default()),
            pin: OnceLock::new(),
            name: None,
            single: None,
        })
    }

    fn open_file(path: &Path) -> Result<LocalSource> {
        if !is_weight_file(path) {
            bail!(
                "{}: not a regular .gguf or .onnx file (a model is a folder or one weight file)",
                path.display()
            );
        }
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // the folder's other files are not read: only the named file's parts and data
        let mut siblings = Vec::new();
        for entry in
            fs::read_dir(&folder).with_context(|| format!("listing {}", folder.display()))?
        {
            let entry = entry.with_context(|| format!("listing {}", folder.display()))?;
            let n = entry.file_name().to_string_lossy().into_owned();
            let p = entry.path();
            // candidates: split GGUF parts and files named like it (ONNX external data);
            // `files_of_model` keeps the ones that belong to it
            let candidate = crate::formats::gguf::split_name(&n).is_some()
                || n.starts_with(name.split('.').next().unwrap_or(&name));
            if candidate && fs::metadata(&p).is_ok_and(|m| m.is_file()) {
                let size = fs::metadata(&p)
                    .with_context(|| format!("reading {}", p.display()))?
                    .len();
                siblings.push(FileEntry {
                    path: n,
                    size,
                    sha256: None,
                    git_oid: None,
                    lfs: false,
                });
            }
            if siblings.len() > MAX_FILES {
                bail!("{} holds more than {MAX_FILES} files", folder.display());
            }
        }
        siblings.sort_by(|a, b| a.path.cmp(&b.path));
        let files = super::files_of_model(&name, &siblings);
        let single = Some(name.clone());
        let display = if super::is_display_name(&name) {
            name
        } else {
            "model.gguf".to_string()
        };
        Ok(LocalSource {
            root: folder,
            files,
            maps: Mutex::new(HashMap::new()),
            stats: Mutex::new(FetchStats::default()),
            pin: OnceLock::new(),
            name: Some(display),
            single,
        })
    }

    /// The same source, pinned under `name` instead of its folder's base name.
    pub fn named(self, name: &str) -> LocalSource {
        LocalSource {
            name: Some(name.to_string()),
            pin: OnceLock::new(),
            ..self
        }
    }

    fn hash_files(&self) -> Result<Pin> {
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
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .hashed_bytes += total;
        let name = match &self.name {
            Some(n) => n.clone(),
            None => display_name(&self.root)?,
        };
        Ok(Pin {
            reference: name.clone(),
            kind: "local".into(),
            endpoint: None,
            repo: None,
            revision: None,
            sha: None,
            name: Some(name),
            digest: Some(content_digest(&files)),
            file: None,
            files,
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
        match &self.single {
            Some(file) => self.root.join(file).display().to_string(),
            None => self.root.display().to_string(),
        }
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
        if let Some(pin) = self.pin.get() {
            return Ok(pin.clone());
        }
        let pin = self.hash_files()?;
        Ok(self.pin.get_or_init(|| pin).clone())
    }
}

/// A regular file (not a folder, pipe or device) named `*.gguf` or `*.onnx`: a model by itself.
pub fn is_weight_file(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    name.is_some_and(|n| {
        crate::formats::gguf::is_gguf_path(&n) || crate::formats::onnx::is_onnx_path(&n)
    }) && fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// A local model's name in pins and results: its folder's base name (for a Hugging Face
/// cache snapshot, the `models--org--name` folder's), with anything that is not a plain
/// file-name character replaced by `_`.
pub fn display_name(root: &Path) -> Result<String> {
    let fence = model_fence(root)?;
    let canonical =
        fs::canonicalize(root).with_context(|| format!("resolving {}", root.display()))?;
    let folder = if fence != canonical {
        &fence
    } else {
        &canonical
    };
    let base = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = base
        .chars()
        .map(|c| if c == '\\' || c.is_control() { '_' } else { c })
        .collect();
    Ok(if super::is_display_name(&name) {
        name
    } else {
        "model".to_string()
    })
}

/// The digest a local model is pinned by: sha256 over one line per file, sorted by path,
/// of `path`, size and the file's sha256, tab-separated. Paths are relative to the model
/// folder, so the same files give the same digest in any folder.
pub fn content_digest(files: &[FileEntry]) -> String {
    let mut sorted: Vec<&FileEntry> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut hasher = sha2::Sha256::new();
    for f in sorted {
        hasher.update(f.path.as_bytes());
        hasher.update(b"\t");
        hasher.update(f.size.to_string().as_bytes());
        hasher.update(b"\t");
        hasher.update(f.sha256.as_deref().unwrap_or("").as_bytes());
        hasher.update(b"\n");
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Where a pinned local model is: the folder named for it, else `NAME` under the first
/// search folder that has it.
pub fn locate(pin: &LocalPin, inputs: &LocalInputs) -> Result<PathBuf> {
    if let Some(path) = inputs.named.get(&pin.name) {
        return Ok(path.clone());
    }
    for dir in &inputs.search {
        let candidate = dir.join(&pin.name);
        if candidate.is_dir() || is_weight_file(&candidate) {
            return Ok(candidate);
        }
    }
    let looked: Vec<String> = inputs
        .search
        .iter()
        .map(|d| d.join(&pin.name).display().to_string())
        .collect();
    bail!(
        "local input {} ({pin}) was not found{}: give its folder with --input {}=PATH",
        pin.name,
        if looked.is_empty() {
            String::new()
        } else {
            format!(" (looked in {})", looked.join(", "))
        },
        pin.name
    )
}

/// Opens the folder holding a pinned local model and checks its content is what was pinned.
/// With the pinned file list (a bundle's `revisions.json`), a mismatch names each file that
/// differs.
pub fn open_pinned(
    pin: &LocalPin,
    inputs: &LocalInputs,
    pinned_files: Option<&[FileEntry]>,
) -> Result<LocalSource> {
    let path = locate(pin, inputs)?;
    let source = LocalSource::open(&path)
        .with_context(|| format!("local input {} ({})", pin.name, path.display()))?
        .named(&pin.name);
    let found = source.pin()?;
    if found.digest.as_deref() != Some(pin.digest.as_str()) {
        let detail = pinned_files
            .map(|files| differences(files, &found.files))
            .unwrap_or_default()
            .into_iter()
            .map(|line| format!("\n  {line}"))
            .collect::<String>();
        bail!(
            "local input {}: {} holds different files (digest {}, pinned {}); name the right folder with --input {}=PATH{detail}",
            pin.name,
            path.display(),
            found.digest.unwrap_or_default(),
            pin.digest,
            pin.name
        );
    }
    Ok(source)
}

/// What differs between the files a pin records and the files found, one line each
/// (missing, extra, other size, other content); empty when they agree.
pub fn differences(pinned: &[FileEntry], found: &[FileEntry]) -> Vec<String> {
    let index = |files: &[FileEntry]| -> std::collections::BTreeMap<String, FileEntry> {
        files.iter().map(|f| (f.path.clone(), f.clone())).collect()
    };
    let (pinned, found) = (index(pinned), index(found));
    let mut out = Vec::new();
    for (path, p) in &pinned {
        match found.get(path) {
            None => out.push(format!("{path}: missing")),
            Some(f) if f.size != p.size => {
                out.push(format!("{path}: {} bytes, pinned {}", f.size, p.size))
            }
            Some(f) if f.sha256 != p.sha256 => out.push(format!(
                "{path}: sha256 {}, pinned {}",
                f.sha256.as_deref().unwrap_or("?"),
                p.sha256.as_deref().unwrap_or("?")
            )),
            Some(_) => {}
        }
    }
    for path in found.keys().filter(|p| !pinned.contains_key(*p)) {
        out.push(format!("{path}: not in the pin"));
    }
    out
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
        // The digest, computed independently (Python hashlib over the same lines).
        assert_eq!(
            pin.digest.as_deref(),
            Some("sha256:c9eb69a1a431c590935973bcce697632b5ef76138223a7c5c0e81ccaf22959aa")
        );
    }

    /// Writes the same small model into `parent/name`.
    fn model_in(parent: &Path, name: &str) -> PathBuf {
        let root = parent.join(name);
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("sub/b.txt"), b"hello").unwrap();
        fs::write(root.join("a.bin"), [1u8, 2, 3, 4, 5, 6]).unwrap();
        root
    }

    #[test]
    fn the_same_files_in_any_folder_pin_the_same() {
        let (x, y) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = LocalSource::open(&model_in(x.path(), "glm"))
            .unwrap()
            .pin()
            .unwrap();
        let b = LocalSource::open(&model_in(&y.path().join("deep/er"), "glm"))
            .unwrap()
            .pin()
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.name.as_deref(), Some("glm"));
        let text = serde_json::to_string(&a).unwrap();
        assert!(!text.contains(&x.path().display().to_string()), "{text}");
        assert!(a.pinned_reference().starts_with("local:glm@sha256:"));
        assert_eq!(a.display_reference("/home/alice/glm"), "glm");
        // Another name, the same content: the same digest.
        let c = LocalSource::open(&model_in(x.path(), "other"))
            .unwrap()
            .pin()
            .unwrap();
        assert_eq!(c.digest, a.digest);
    }

    #[test]
    fn pinned_inputs_are_found_checked_and_differences_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = model_in(&dir.path().join("models"), "glm");
        let pin = LocalSource::open(&root).unwrap().pin().unwrap();
        let want = LocalPin::parse(&pin.pinned_reference()).unwrap();
        // Found under a search folder, or named explicitly.
        let search = LocalInputs {
            search: vec![dir.path().to_path_buf(), dir.path().join("models")],
            ..Default::default()
        };
        assert!(open_pinned(&want, &search, None).is_ok());
        let named = LocalInputs {
            named: [("glm".to_string(), root.clone())].into(),
            ..Default::default()
        };
        assert!(open_pinned(&want, &named, None).is_ok());
        // Found in a folder named otherwise, it keeps its pinned name (and so its results).
        let renamed = model_in(dir.path(), "renamed");
        let elsewhere = LocalInputs {
            named: [("glm".to_string(), renamed)].into(),
            ..Default::default()
        };
        let found = open_pinned(&want, &elsewhere, None).unwrap().pin().unwrap();
        assert_eq!(found.pinned_reference(), pin.pinned_reference());
        // Missing: the error names the input and the flag that supplies it.
        let err = format!(
            "{:#}",
            open_pinned(&want, &LocalInputs::default(), None)
                .err()
                .unwrap()
        );
        assert!(
            err.contains("local input glm") && err.contains("--input glm=PATH"),
            "{err}"
        );
        // Changed content: refused, and the differing file is named.
        fs::write(root.join("sub/b.txt"), b"HELLO").unwrap();
        fs::write(root.join("new.txt"), b"x").unwrap();
        let err = format!(
            "{:#}",
            open_pinned(&want, &named, Some(&pin.files)).err().unwrap()
        );
        assert!(
            err.contains("holds different files") && err.contains("\n  sub/b.txt: sha256"),
            "{err}"
        );
        let found = LocalSource::open(&root).unwrap().pin().unwrap();
        assert_eq!(
            differences(&pin.files, &found.files),
            [
                format!(
                    "sub/b.txt: sha256 {}, pinned {}",
                    found.files[2].sha256.as_deref().unwrap(),
                    pin.files[1].sha256.as_deref().unwrap()
                ),
                "new.txt: not in the pin".to_string()
            ]
        );
        fs::remove_file(root.join("a.bin")).unwrap();
        let found = LocalSource::open(&root).unwrap().pin().unwrap();
        assert!(differences(&pin.files, &found.files).contains(&"a.bin: missing".to_string()));
    }

    #[test]
    fn pinned_references_parse_strictly() {
        let hex = "ab".repeat(32);
        let p = LocalPin::parse(&format!("local:glm@a@sha256:{hex}")).unwrap();
        assert_eq!(p.name, "glm@a");
        assert_eq!(p.to_string(), format!("local:glm@a@sha256:{hex}"));
        for bad in [
            format!("local:../x@sha256:{hex}"),
            format!("local:a/b@sha256:{hex}"),
            format!("local:@sha256:{hex}"),
            format!("local:..@sha256:{hex}"),
            "local:glm@sha256:ABC".to_string(),
            format!("local:glm@sha256:{}", "AB".repeat(32)),
            "local:glm".to_string(),
        ] {
            assert!(LocalPin::parse(&bad).is_err(), "{bad}");
        }
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
