//! A model: its source, its tensor inventory (E0b) and typed tensor reads.
//!
//! Weights are safetensors shards or a GGUF file ([`gguf`]: one file, or the parts of a split
//! one). Either way a tensor is listed under its Hugging Face name and shape, and reads are by
//! element windows in that order: [`TensorInfo::pieces`] maps a window to the stored bytes
//! (whole blocks of a quantised type, rows reordered where the converter permuted them) and
//! [`TensorInfo::decode`] turns them back into exactly the window's values.

mod gguf;
mod onnx;

pub use onnx::IntCodes;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::arch::{self, ArchHints, Role};
use crate::dtype::{self, Dtype};
use crate::formats::gguf::MetaValue;
use crate::formats::gguf::names::Undo;
use crate::header::{self, Probe};
use crate::source::{ByteRange, FileRange, Source, is_safe_relative_path};

/// Largest JSON side file (config, index, tokenizer config) read whole.
pub const MAX_JSON_FILE_BYTES: u64 = 64 * 1024 * 1024;

const INDEX_FILES: [&str; 2] = [
    "model.safetensors.index.json",
    "pytorch_model.safetensors.index.json",
];

/// One tensor with its absolute location and role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name as stored.
    pub name: String,
    /// Element type as stored.
    pub dtype: Dtype,
    /// Dimensions, outermost first (safetensors order).
    pub shape: Vec<u64>,
    /// Number of elements (product of `shape`; 1 for a scalar).
    pub numel: u64,
    /// The file (shard) holding it, relative to the model's root.
    pub file: String,
    /// Absolute file offsets, `[begin, end)`.
    pub begin: u64,
    /// End of the data, exclusive.
    pub end: u64,
    /// What the tensor is in the architecture (layer, family, expert, …).
    pub role: Role,
    /// What reading undoes of a converter's changes (GGUF: Q/K row order, Gemma's `1 + w`);
    /// nothing for safetensors.
    pub undo: Undo,
}

/// One window's stored pieces, each with its bytes, as [`Model::read_pieces`] reads them.
pub type WindowBytes = Vec<(Piece, Vec<u8>)>;

/// Stored bytes holding part of a window: decode `range`, drop `skip` elements, keep `take`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The stored bytes to decode.
    pub range: ByteRange,
    /// Decoded elements to drop from the front.
    pub skip: u64,
    /// Decoded elements to keep after that.
    pub take: u64,
}

impl TensorInfo {
    /// Stored size in bytes.
    pub fn bytes(&self) -> u64 {
        self.end - self.begin
    }

    /// Rows and columns of a 2-D tensor (1-D tensors are one row).
    pub fn rows_cols(&self) -> (u64, u64) {
        match self.shape.as_slice() {
            [] => (1, 1),
            [n] => (1, *n),
            [r, rest @ ..] => (*r, rest.iter().product()),
        }
    }

    /// The byte range holding stored elements `[start, start + count)`, which must start and
    /// end on block boundaries (bytes for plain types, quantisation blocks for GGML ones).
    pub fn element_range(&self, start: u64, count: u64) -> Result<ByteRange> {
        let end = self.window_end(start, count)?;
        let (elems, bytes) = self.dtype.block();
        if !start.is_multiple_of(elems) || !end.is_multiple_of(elems) {
            bail!(
                "tensor {}: elements [{start}, {end}) of {} do not start and end on whole blocks of {elems}",
                self.name,
                self.dtype
            );
        }
        Ok(ByteRange::new(
            self.begin + start / elems * bytes,
            self.begin + end / elems * bytes,
        ))
    }

    fn window_end(&self, start: u64, count: u64) -> Result<u64> {
        start
            .checked_add(count)
            .filter(|&e| e <= self.numel)
            .with_context(|| {
                format!(
                    "tensor {}: elements [{start}, +{count}) are outside its {} elements",
                    self.name, self.numel
                )
            })
    }

    /// The stored pieces of elements `[start, start + count)` in Hugging Face order: one piece
    /// when rows are stored in order, one per row when the converter reordered them; each
    /// widened to whole blocks of a quantised type (so a raw read of a quantised window is the
    /// whole blocks that hold it).
    pub fn pieces(&self, start: u64, count: u64) -> Result<Vec<Piece>> {
        let end = self.window_end(start, count)?;
        let (elems, _) = self.dtype.block();
        let widen = |s: u64, e: u64| -> Result<Piece> {
            let (ws, we) = (s / elems * elems, e.div_ceil(elems) * elems);
            Ok(Piece {
                range: self.element_range(ws, we.min(self.numel) - ws)?,
                skip: s - ws,
                take: e - s,
            })
        };
        let (rows, cols) = self.rows_cols();
        if self.undo.rotary_heads.is_none() || cols == 0 || count == 0 {
            return Ok(vec![widen(start, end)?]);
        }
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            let (row, col) = (at / cols, at % cols);
            let stop = end.min((row + 1) * cols);
            let stored = self.undo.stored_row(rows, row) * cols;
            out.push(widen(stored + col, stored + col + (stop - at))?);
            at = stop;
        }
        Ok(out)
    }

    /// Appends the values of `pieces` (with their stored `bytes`) to `out`: decoded, trimmed to
    /// the window, with the converter's shift undone.
    pub fn decode(&self, pieces: &[Piece], bytes: &[Vec<u8>], out: &mut Vec<f32>) -> Result<()> {
        let mut buf = Vec::new();
        for (p, b) in pieces.iter().zip(bytes) {
            dtype::decode_f32(self.dtype, b, &mut buf)
                .with_context(|| format!("decoding tensor {}", self.name))?;
            let (skip, take) = (p.skip as usize, p.take as usize);
            let Some(kept) = buf.get(skip..skip + take) else {
                bail!(
                    "tensor {}: {} decoded values hold no window [{skip}, +{take})",
                    self.name,
                    buf.len()
                );
            };
            let from = out.len();
            out.extend_from_slice(kept);
            if self.undo.shift != 0.0 {
                out[from..].iter_mut().for_each(|v| *v -= self.undo.shift);
            }
        }
        Ok(())
    }
}

/// The file format a model's weights are stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightFormat {
    /// safetensors shards (with an index when there are several).
    Safetensors,
    /// llama.cpp's GGUF: one file or the parts of a split one.
    Gguf,
    /// An ONNX export (initializers, external data).
    Onnx,
}

impl WeightFormat {
    /// `safetensors` or `gguf`.
    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::Safetensors => "safetensors",
            WeightFormat::Gguf => "gguf",
            WeightFormat::Onnx => "onnx",
        }
    }
}

/// Options for reading a model's headers.
#[derive(Clone, Debug)]
pub struct ModelOptions {
    /// Largest header accepted, in bytes (safetensors JSON, GGUF metadata).
    pub max_header_bytes: u64,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            max_header_bytes: header::DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

/// A request for elements of one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElementRequest {
    /// The tensor's name.
    pub tensor: String,
    /// First element wanted (row-major index into the tensor).
    pub start: u64,
    /// Number of elements wanted.
    pub count: u64,
}

/// A model opened for reading: its tensors, shards, config and source.
pub struct Model {
    source: Box<dyn Source>,
    tensors: Vec<TensorInfo>,
    shards: Vec<String>,
    config: Option<serde_json::Value>,
    /// Disagreements between the index's weight_map and the shard headers.
    index_problems: Vec<String>,
    /// A GGUF file's `tokenizer.ggml.*` metadata: its vocabulary.
    gguf_tokenizer: Option<BTreeMap<String, MetaValue>>,
    /// An ONNX model's int8/uint8 weights: how their codes were made.
    int_codes: BTreeMap<String, onnx::IntCodes>,
    format: WeightFormat,
}

#[derive(Deserialize)]
struct IndexFile {
    weight_map: BTreeMap<String, String>,
}

impl Model {
    /// Reads the index (if any), every shard header and config.json.
    pub fn open(source: Box<dyn Source>, opts: &ModelOptions) -> Result<Model> {
        if let Some(files) = gguf::weight_files(source.as_ref())? {
            return gguf::open(source, files, opts);
        }
        if !has_safetensors(source.as_ref())
            && let Some(file) = onnx::weight_file(source.as_ref())?
        {
            return onnx::open(source, file, opts);
        }
        let who = source.describe();
        let config = read_config(source.as_ref())?;
        let hints = config
            .as_ref()
            .map(ArchHints::from_config)
            .unwrap_or_default();
        let (shards, weight_map) = discover_shards(source.as_ref())?;
        let headers = read_headers(source.as_ref(), &shards, opts.max_header_bytes)?;

        let mut tensors = Vec::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (shard, h) in shards.iter().zip(headers) {
            let data_start = h.data_start();
            for t in h.tensors {
                if let Some(other) = seen.insert(t.name.clone(), shard.clone()) {
                    bail!(
                        "{who}: tensor {:?} is stored in both {other} and {shard}",
                        t.name
                    );
                }
                tensors.push(TensorInfo {
                    role: arch::classify_shaped(&t.name, &t.shape, &hints),
                    begin: data_start + t.begin,
                    end: data_start + t.end,
                    file: shard.clone(),
                    name: t.name,
                    dtype: t.dtype,
                    shape: t.shape,
                    numel: t.numel,
                    undo: Undo::default(),
                });
            }
        }
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        arch::settle_stacks(&mut tensors.iter_mut().map(|t| &mut t.role).collect::<Vec<_>>());
        let index_problems = weight_map
            .map(|wm| check_weight_map(&wm, &seen))
            .unwrap_or_default();
        Ok(Model {
            source,
            tensors,
            shards,
            config,
            index_problems,
            gguf_tokenizer: None,
            int_codes: BTreeMap::new(),
            format: WeightFormat::Safetensors,
        })
    }

    /// Where the model's bytes come from.
    pub fn source(&self) -> &dyn Source {
        self.source.as_ref()
    }

    /// The source's name for messages (`hf:org/name@sha` or the local path).
    pub fn describe(&self) -> String {
        self.source.describe()
    }

    /// Every tensor, sorted by name.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name`, if any.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors
            .binary_search_by(|t| t.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.tensors[i])
    }

    fn require(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor(name)
            .with_context(|| format!("{}: no tensor {name:?}", self.describe()))
    }

    /// How the weights are stored.
    pub fn format(&self) -> WeightFormat {
        self.format
    }

    /// The weight files, in order (safetensors shards or GGUF parts).
    pub fn shards(&self) -> &[String] {
        &self.shards
    }

    /// `config.json`, when the model has one (GGUF: built from its metadata).
    pub fn config(&self) -> Option<&serde_json::Value> {
        self.config.as_ref()
    }

    /// Disagreements between the index's weight_map and the shard headers (empty when consistent).
    pub fn index_problems(&self) -> &[String] {
        &self.index_problems
    }

    /// A GGUF file's `tokenizer.ggml.*` metadata (the vocabulary lives there, not in
    /// `tokenizer.json`); `None` for safetensors models.
    pub fn gguf_tokenizer(&self) -> Option<&BTreeMap<String, MetaValue>> {
        self.gguf_tokenizer.as_ref()
    }

    /// How an ONNX weight's integer codes were made, when it is stored quantised (the
    /// tensor itself reads dequantised).
    pub fn int_codes(&self, name: &str) -> Option<&onnx::IntCodes> {
        self.int_codes.get(name)
    }

    /// The stored pieces of many element windows with their bytes, fetched as one batch.
    pub fn read_pieces(&self, requests: &[ElementRequest]) -> Result<Vec<WindowBytes>> {
        let mut pieces = Vec::with_capacity(requests.len());
        let mut ranges = Vec::new();
        for r in requests {
            let t = self.require(&r.tensor)?;
            let p = t.pieces(r.start, r.count)?;
            ranges.extend(p.iter().map(|p| FileRange {
                path: t.file.clone(),
                range: p.range,
            }));
            pieces.push(p);
        }
        let mut bytes = self
            .source
            .read_ranges(&ranges)
            .with_context(|| format!("reading tensors of {}", self.describe()))?
            .into_iter();
        Ok(pieces
            .into_iter()
            .map(|ps| {
                ps.into_iter()
                    .map(|p| (p, bytes.next().unwrap_or_default()))
                    .collect()
            })
            .collect())
    }

    /// Raw bytes of many element windows, fetched as one batch (a quantised window's whole
    /// blocks, in stored order).
    pub fn read_raw(&self, requests: &[ElementRequest]) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .read_pieces(requests)?
            .into_iter()
            .map(|ps| ps.into_iter().flat_map(|(_, b)| b).collect())
            .collect())
    }

    /// Appends the values of one window read with [`Self::read_pieces`] to `out` (FP8 block
    /// scales applied; `scales` caches each scale tensor read).
    pub fn decode_window(
        &self,
        request: &ElementRequest,
        pieces: WindowBytes,
        scales: &mut BTreeMap<String, Vec<f32>>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let t = self.require(&request.tensor)?;
        let (p, b): (Vec<Piece>, Vec<Vec<u8>>) = pieces.into_iter().unzip();
        let from = out.len();
        t.decode(&p, &b, out)?;
        self.finish_decoded(t, request.start, &mut out[from..], scales)
    }

    /// The block scales of an FP8 (E4M3) weight stored DeepSeek-V3 style: a sibling
    /// `<name>_scale_inv` of shape `[⌈rows/128⌉, ⌈cols/128⌉]`. Its codes alone are not the
    /// weight: two checkpoints with other scales hold other weights under equal codes.
    pub fn block_scale(&self, t: &TensorInfo) -> Option<&TensorInfo> {
        if t.dtype != Dtype::F8E4M3 || t.shape.len() != 2 {
            return None;
        }
        let s = self.tensor(&format!("{}_scale_inv", t.name))?;
        let want = [
            t.shape[0].div_ceil(dtype::FP8_BLOCK),
            t.shape[1].div_ceil(dtype::FP8_BLOCK),
        ];
        (s.shape == want && s.dtype.is_float() && s.dtype.decodable()).then_some(s)
    }

    /// Decoded values of elements `[start, start + len)` of `t`, block scales applied when
    /// [`Self::block_scale`] finds them (`scales` caches each scale tensor read).
    pub fn finish_decoded(
        &self,
        t: &TensorInfo,
        start: u64,
        values: &mut [f32],
        scales: &mut BTreeMap<String, Vec<f32>>,
    ) -> Result<()> {
        let Some(s) = self.block_scale(t) else {
            return Ok(());
        };
        if !scales.contains_key(&s.name) {
            let req = ElementRequest {
                tensor: s.name.clone(),
                start: 0,
                count: s.numel,
            };
            let bytes = self.read_raw(&[req])?.pop().unwrap_or_default();
            let mut out = Vec::new();
            dtype::decode_f32(s.dtype, &bytes, &mut out)
                .with_context(|| format!("decoding tensor {}", s.name))?;
            scales.insert(s.name.clone(), out);
        }
        let scale = scales.get(&s.name).map_or(&[][..], Vec::as_slice);
        dtype::apply_block_scale(values, start, t.shape[1], scale, dtype::FP8_BLOCK)
            .with_context(|| format!("applying {} to {}", s.name, t.name))
    }

    /// Many element ranges decoded to f32 (FP8 block scales applied), fetched as one batch.
    pub fn read_f32_many(&self, requests: &[ElementRequest]) -> Result<Vec<Vec<f32>>> {
        let pieces = self.read_pieces(requests)?;
        let mut scales = BTreeMap::new();
        requests
            .iter()
            .zip(pieces)
            .map(|(r, p)| {
                let mut out = Vec::new();
                self.decode_window(r, p, &mut scales, &mut out)?;
                Ok(out)
            })
            .collect()
    }

    /// Elements `[start, start + count)` of a tensor as f32.
    pub fn read_f32(&self, name: &str, start: u64, count: u64) -> Result<Vec<f32>> {
        let req = ElementRequest {
            tensor: name.to_string(),
            start,
            count,
        };
        Ok(self.read_f32_many(&[req])?.pop().unwrap_or_default())
    }

    /// A whole tensor as f32.
    pub fn read_tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let numel = self.require(name)?.numel;
        self.read_f32(name, 0, numel)
    }

    /// Rows `[row, row + count)` of a 2-D (or higher, flattened) tensor as f32.
    pub fn read_rows_f32(&self, name: &str, row: u64, count: u64) -> Result<Vec<f32>> {
        let (_, cols) = self.require(name)?.rows_cols();
        self.read_f32(name, row * cols, count * cols)
    }
}

/// Whether the model has safetensors weights (which win over any other format it also holds).
fn has_safetensors(source: &dyn Source) -> bool {
    source.files().iter().any(|f| {
        (f.path.ends_with(".safetensors") && !f.path.contains('/'))
            || INDEX_FILES.contains(&f.path.as_str())
    })
}

/// `config.json`, when the model has one.
fn read_config(source: &dyn Source) -> Result<Option<serde_json::Value>> {
    if source.file("config.json").is_none() {
        return Ok(None);
    }
    let bytes = source.read_file("config.json", MAX_JSON_FILE_BYTES)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .with_context(|| format!("{}: config.json is not valid JSON", source.describe()))
}

/// Finds the weight files: the index's shards, or every top-level `*.safetensors`.
/// Tensor name → shard file, as an index file lists it.
type WeightMap = BTreeMap<String, String>;

fn discover_shards(source: &dyn Source) -> Result<(Vec<String>, Option<WeightMap>)> {
    let who = source.describe();
    if let Some(index) = INDEX_FILES.iter().find(|f| source.file(f).is_some()) {
        let bytes = source.read_file(index, MAX_JSON_FILE_BYTES)?;
        let parsed: IndexFile = serde_json::from_slice(&bytes)
            .with_context(|| format!("{who}: {index} is not a valid index (needs a weight_map)"))?;
        let shards: BTreeSet<&String> = parsed.weight_map.values().collect();
        for s in &shards {
            if !is_safe_relative_path(s) {
                bail!("{who}: {index} names an unsafe shard path {s:?}");
            }
            if source.file(s).is_none() {
                bail!("{who}: {index} names shard {s:?}, which the model does not have");
            }
        }
        let shards = shards.into_iter().cloned().collect();
        return Ok((shards, Some(parsed.weight_map)));
    }
    let shards: Vec<String> = source
        .files()
        .iter()
        .filter(|f| f.path.ends_with(".safetensors") && !f.path.contains('/'))
        .map(|f| f.path.clone())
        .collect();
    if shards.is_empty() {
        let pickles = source
            .files()
            .iter()
            .any(|f| f.path.ends_with(".bin") || f.path.ends_with(".pt"));
        if pickles {
            bail!(
                "{who}: no safetensors weights (only pickle files, which this tool never loads: pickles can run code)"
            );
        }
        bail!("{who}: no *.safetensors, model.safetensors.index.json, *.gguf or *.onnx files");
    }
    Ok((shards, None))
}

/// Reads every shard header with at most two batched rounds of reads.
fn read_headers(source: &dyn Source, shards: &[String], cap: u64) -> Result<Vec<header::Header>> {
    let who = source.describe();
    let sizes: Vec<u64> = shards
        .iter()
        .map(|s| source.file(s).map(|f| f.size).unwrap_or(0))
        .collect();
    let probes: Vec<FileRange> = shards
        .iter()
        .zip(&sizes)
        .map(|(s, &size)| FileRange {
            path: s.clone(),
            range: ByteRange::new(0, size.min(header::HEADER_PROBE_BYTES)),
        })
        .collect();
    let probe_bytes = source
        .read_ranges(&probes)
        .with_context(|| format!("{who}: reading safetensors headers"))?;
    let mut out: Vec<Option<header::Header>> = Vec::with_capacity(shards.len());
    let mut more = Vec::new();
    for (i, (shard, probe)) in shards.iter().zip(&probe_bytes).enumerate() {
        match header::from_probe(probe, sizes[i], cap)
            .with_context(|| format!("{who}: {shard}: invalid safetensors header"))?
        {
            Probe::Complete(h) => out.push(Some(h)),
            Probe::NeedMore { json_len, have } => {
                out.push(None);
                more.push((
                    i,
                    json_len,
                    FileRange {
                        path: shard.clone(),
                        range: ByteRange::new(have, 8 + json_len),
                    },
                ));
            }
        }
    }
    if !more.is_empty() {
        let ranges: Vec<FileRange> = more.iter().map(|m| m.2.clone()).collect();
        let rest = source
            .read_ranges(&ranges)
            .with_context(|| format!("{who}: reading safetensors headers"))?;
        for ((i, json_len, _), rest) in more.into_iter().zip(rest) {
            let h = header::finish(&probe_bytes[i], &rest, json_len, sizes[i])
                .with_context(|| format!("{who}: {}: invalid safetensors header", shards[i]))?;
            out[i] = Some(h);
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// Lists every disagreement between the index and the headers, sorted.
fn check_weight_map(
    weight_map: &BTreeMap<String, String>,
    found: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, shard) in weight_map {
        match found.get(name) {
            None => problems.push(format!(
                "index lists tensor {name:?} in {shard}, but no shard header has it"
            )),
            Some(actual) if actual != shard => problems.push(format!(
                "index lists tensor {name:?} in {shard}, but it is stored in {actual}"
            )),
            _ => {}
        }
    }
    for (name, shard) in found {
        if !weight_map.contains_key(name) {
            problems.push(format!(
                "tensor {name:?} in {shard} is missing from the index"
            ));
        }
    }
    problems
}
