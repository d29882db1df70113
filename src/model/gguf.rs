//! A model stored as GGUF: one file, or the parts of a split one (`-00001-of-00003.gguf`).
//!
//! Its tensors are listed under their Hugging Face names ([`names::hf_tensors`]), its
//! hyperparameters stand in for `config.json` ([`names::hf_config`]) and its vocabulary is the
//! `tokenizer.ggml.*` metadata. A folder holding several GGUF models (a `*-GGUF` repository
//! ships one per quantisation) is ambiguous: the user names the file.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};

use super::{Model, ModelOptions, TensorInfo, WeightFormat};
use crate::arch::{self, ArchHints};
use crate::dtype::Dtype;
use crate::formats::gguf::{self, GgufHeader, names, read};
use crate::source::{ByteRange, FileRange, Source};

/// The GGUF files that hold the model, parts in order; `None` when the model is safetensors
/// (safetensors weights win when a folder has both) or has no GGUF file.
pub(super) fn weight_files(source: &dyn Source) -> Result<Option<Vec<String>>> {
    let files = source.files();
    if super::has_safetensors(source) {
        return Ok(None);
    }
    // one model per split stem, or per unsplit file
    let mut models: BTreeMap<String, Vec<(u32, u32, String)>> = BTreeMap::new();
    for f in files.iter().filter(|f| gguf::is_gguf_path(&f.path)) {
        let (key, part) = match gguf::split_name(&f.path) {
            Some((stem, part, count)) => (stem.to_string(), (part, count, f.path.clone())),
            None => (f.path.clone(), (1, 1, f.path.clone())),
        };
        models.entry(key).or_default().push(part);
    }
    let mut models = models.into_values();
    let (Some(mut parts), None) = (models.next(), models.next()) else {
        if files.iter().filter(|f| gguf::is_gguf_path(&f.path)).count() == 0 {
            return Ok(None);
        }
        let names: Vec<&str> = files
            .iter()
            .filter(|f| gguf::is_gguf_path(&f.path))
            .map(|f| f.path.as_str())
            .collect();
        bail!(
            "{}: holds several GGUF models ({}); name one: a path to the file, or hf:org/name@revision:path/in/repo.gguf",
            source.describe(),
            names.join(", ")
        );
    };
    parts.sort();
    let count = parts[0].1;
    let numbers: Vec<u32> = parts.iter().map(|p| p.0).collect();
    if parts.iter().any(|p| p.1 != count) || numbers != (1..=count).collect::<Vec<_>>() {
        bail!(
            "{}: split GGUF {} has parts {numbers:?} of {count}; every part is needed",
            source.describe(),
            parts[0].2
        );
    }
    Ok(Some(parts.into_iter().map(|p| p.2).collect()))
}

/// Reads every part's header and lists the tensors under Hugging Face names.
pub(super) fn open(
    source: Box<dyn Source>,
    files: Vec<String>,
    opts: &ModelOptions,
) -> Result<Model> {
    let who = source.describe();
    let mut headers = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        let h = read_header(source.as_ref(), file, opts.max_header_bytes)
            .with_context(|| format!("{who}: {file}: invalid GGUF header"))?;
        let expected = (i as u64, files.len() as u64);
        match h.split() {
            Some(found) if found != expected => bail!(
                "{who}: {file}: says it is part {} of {}, expected part {} of {}",
                found.0 + 1,
                found.1,
                expected.0 + 1,
                expected.1
            ),
            None if files.len() > 1 => {
                bail!("{who}: {file}: a part of a split GGUF without split.no/split.count")
            }
            _ => {}
        }
        headers.push(h);
    }
    let first = headers
        .first()
        .with_context(|| format!("{who}: no GGUF file"))?;
    let config = names::hf_config(first);
    let hints = ArchHints::from_config(&config);
    let tokenizer: BTreeMap<_, _> = first
        .metadata
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer.ggml."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();

    let mut tensors = Vec::new();
    let mut seen = BTreeSet::new();
    for (file, h) in files.iter().zip(&headers) {
        for t in names::hf_tensors(h).with_context(|| format!("{who}: {file}"))? {
            if !seen.insert(t.name.clone()) {
                bail!("{who}: tensor {:?} ({}) appears twice", t.name, t.gguf_name);
            }
            tensors.push(TensorInfo {
                role: arch::classify_shaped(&t.name, &t.shape, &hints),
                dtype: Dtype::from_ggml(t.ty),
                name: t.name,
                shape: t.shape,
                numel: t.numel,
                file: file.clone(),
                begin: t.begin,
                end: t.end,
                undo: t.undo,
            });
        }
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    arch::settle_stacks(&mut tensors.iter_mut().map(|t| &mut t.role).collect::<Vec<_>>());
    Ok(Model {
        source,
        tensors,
        shards: files,
        config: Some(config),
        index_problems: Vec::new(),
        gguf_tokenizer: (!tokenizer.is_empty()).then_some(tokenizer),
        int_codes: BTreeMap::new(),
        format: WeightFormat::Gguf,
    })
}

/// One file's header, fetched in growing chunks through the source (by range on the Hub).
fn read_header(source: &dyn Source, file: &str, cap: u64) -> Result<GgufHeader> {
    let size = source.file(file).map_or(0, |f| f.size);
    let mut fetch = |start: u64, len: u64| -> Result<Vec<u8>> {
        let range = FileRange {
            path: file.to_string(),
            range: ByteRange::new(start, start + len),
        };
        Ok(source.read_ranges(&[range])?.pop().unwrap_or_default())
    };
    read::parse(size, cap, &mut fetch)
}
