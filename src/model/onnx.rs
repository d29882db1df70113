//! A model stored as ONNX: one `.onnx` file (with its external data files, if any), its
//! initializers listed under their Hugging Face names ([`onnx::parse`]).
//!
//! The protobuf must be read whole to be parsed (ONNX files hold at most 2 GiB inline; larger
//! models keep their weights in external data, read by range). A weight stored as exported
//! (float, not transposed) is read by range like a safetensors tensor; one that reading must
//! transpose or dequantise (`onnx::MatMul_…` stored `[in, out]`, int8 codes with their scales)
//! is decoded once, whole, into Hugging Face's layout as f32, and served from memory.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use bytes::Bytes;

use super::{Model, ModelOptions, TensorInfo, WeightFormat};
use crate::arch::{self, ArchHints};
use crate::dtype::Dtype;
use crate::formats::gguf::names::Undo;
use crate::formats::onnx::{self, DataType, Dequant, Location, OnnxWeight};
use crate::source::{FetchStats, FileEntry, FileRange, Pin, Reread, Source};

/// Largest `.onnx` file read (protobuf's own limit is 2 GiB).
pub const MAX_ONNX_BYTES: u64 = 2 << 30;
/// Most bytes of weights decoded into memory (transposed or quantised ones).
pub const MAX_DECODED_BYTES: u64 = 8 << 30;

/// The ONNX file that holds the model; `None` when it has none. Several are ambiguous.
pub(super) fn weight_file(source: &dyn Source) -> Result<Option<String>> {
    let found: Vec<&str> = source
        .files()
        .iter()
        .map(|f| f.path.as_str())
        .filter(|p| onnx::is_onnx_path(p))
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.to_string())),
        many => bail!(
            "{}: holds several ONNX files ({}); name one: a path to the file, or hf:org/name@revision:path/in/repo.onnx",
            source.describe(),
            many.join(", ")
        ),
    }
}

/// The ONNX type a tensor is read as, when the tool decodes it.
fn dtype_of(t: DataType) -> Option<Dtype> {
    Some(match t {
        DataType::Float => Dtype::F32,
        DataType::Float16 => Dtype::F16,
        DataType::BFloat16 => Dtype::Bf16,
        DataType::Double => Dtype::F64,
        DataType::Int8 => Dtype::I8,
        DataType::Uint8 => Dtype::U8,
        DataType::Int16 => Dtype::I16,
        DataType::Uint16 => Dtype::U16,
        DataType::Int32 => Dtype::I32,
        DataType::Int64 => Dtype::I64,
        DataType::Bool => Dtype::Bool,
        _ => return None,
    })
}

/// Reads and parses the file, and lists every readable weight.
pub(super) fn open(source: Box<dyn Source>, file: String, _opts: &ModelOptions) -> Result<Model> {
    let who = source.describe();
    let bytes = Bytes::from(
        source
            .read_file(&file, MAX_ONNX_BYTES)
            .with_context(|| format!("{who}: reading {file}"))?,
    );
    let folder = file.rsplit_once('/').map_or("", |(d, _)| d);
    let in_folder = |f: &str| {
        if folder.is_empty() {
            f.to_string()
        } else {
            format!("{folder}/{f}")
        }
    };
    let sizes = |f: &str| source.file(&in_folder(f)).map(|e| e.size);
    let parsed = onnx::parse(bytes.clone(), &sizes)
        .with_context(|| format!("{who}: {file}: invalid ONNX model"))?;
    let config = super::read_config(source.as_ref())?;
    let hints = config
        .as_ref()
        .map(ArchHints::from_config)
        .unwrap_or_default();

    let mut problems = parsed.problems.clone();
    let mut memory: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut decoded_bytes = 0u64;
    let mut tensors: Vec<TensorInfo> = Vec::new();
    let mut int_codes = BTreeMap::new();
    for w in &parsed.tensors {
        if let Some(why) = &w.unreadable {
            problems.push(format!("{} ({}): not read: {why}", w.name, w.onnx_name));
            continue;
        }
        let Some(stored) = dtype_of(w.dtype) else {
            continue;
        };
        let plain = !w.transposed && w.quant.is_none();
        let (dtype, file, begin, end) = match (&w.location, plain) {
            (Location::Inline { begin, end }, true) => (stored, file.clone(), *begin, *end),
            (
                Location::External {
                    file: f,
                    begin,
                    end,
                },
                true,
            ) => (stored, in_folder(f), *begin, *end),
            _ => {
                let values = decode_whole(source.as_ref(), &bytes, w, &in_folder)
                    .with_context(|| format!("{who}: {file}: tensor {}", w.onnx_name))?;
                decoded_bytes += values.len() as u64 * 4;
                if decoded_bytes > MAX_DECODED_BYTES {
                    bail!(
                        "{who}: {file}: more than {MAX_DECODED_BYTES} bytes of transposed or quantised weights to decode"
                    );
                }
                let path = format!("{file}#{}", w.onnx_name);
                let end = values.len() as u64 * 4;
                memory.insert(
                    path.clone(),
                    values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                );
                (Dtype::F32, path, 0, end)
            }
        };
        if let Some(q) = &w.quant
            && onnx::code_range(w.dtype).is_some()
        {
            int_codes.insert(
                w.name.clone(),
                IntCodes {
                    code: w.dtype,
                    axis: w.hf_quant_axis(),
                    shape: w.shape.clone(),
                    dequant: q.clone(),
                },
            );
        }
        tensors.push(TensorInfo {
            role: arch::classify_shaped(&w.name, &w.shape, &hints),
            name: w.name.clone(),
            dtype,
            shape: w.shape.clone(),
            numel: w.numel,
            file,
            begin,
            end,
            undo: Undo::default(),
        });
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(w) = tensors.windows(2).find(|w| w[0].name == w[1].name) {
        bail!(
            "{who}: {file}: two initializers are both named {:?}",
            w[0].name
        );
    }
    arch::settle_stacks(&mut tensors.iter_mut().map(|t| &mut t.role).collect::<Vec<_>>());
    Ok(Model {
        source: Box::new(Decoded {
            inner: source,
            memory,
        }),
        tensors,
        shards: vec![file],
        config,
        index_problems: problems,
        gguf_tokenizer: None,
        int_codes,
        format: WeightFormat::Onnx,
    })
}

/// How a quantised ONNX weight's values came from integer codes, in Hugging Face's layout:
/// what E3q needs to quantise another model's values the same way.
#[derive(Clone, Debug, PartialEq)]
pub struct IntCodes {
    /// The stored code type (`INT8`, `UINT8`, …).
    pub code: DataType,
    /// The axis of Hugging Face's layout the scales run along; `None`: one scale.
    pub axis: Option<usize>,
    /// Hugging Face's shape.
    pub shape: Vec<u64>,
    /// Scales, zero points and the pattern that gave them.
    pub dequant: Dequant,
}

impl IntCodes {
    /// `int8 per-row`, `uint8 per-tensor`, … : the scheme as E3q reports it.
    pub fn scheme(&self) -> String {
        let per = match (self.axis, self.shape.len()) {
            (None, _) => "per-tensor".to_string(),
            (Some(0), 2) => "per-row".to_string(),
            (Some(1), 2) => "per-column".to_string(),
            (Some(a), _) => format!("per-axis-{a}"),
        };
        format!("ONNX {} {per}", self.code.name().to_ascii_lowercase())
    }

    /// The scale and zero point of element (`row`, `col`) of a 2-D weight.
    pub fn params(&self, row: u64, col: u64) -> Option<(f32, i32)> {
        let i = match self.axis {
            None => 0,
            Some(0) => row,
            Some(1) => col,
            Some(_) => return None,
        };
        let i = usize::try_from(i).ok()?;
        Some((
            *self.dequant.scale.get(i)?,
            *self.dequant.zero_point.get(i)?,
        ))
    }

    /// The code element (`row`, `col`) gets when `value` is quantised with its parameters,
    /// as `QuantizeLinear` and onnxruntime's quantisers compute it.
    pub fn quantize(&self, value: f32, row: u64, col: u64) -> Option<i64> {
        let (scale, zp) = self.params(row, col)?;
        onnx::quantize(value, scale, zp, self.code)
    }

    /// The stored code behind a dequantised `value` of element (`row`, `col`): the code that
    /// dequantises to exactly `value`, or `None` when none does.
    pub fn code_of(&self, value: f32, row: u64, col: u64) -> Option<i64> {
        let (scale, zp) = self.params(row, col)?;
        let (lo, hi) = onnx::code_range(self.code)?;
        let guess = (f64::from(value) / f64::from(scale)).round() + f64::from(zp);
        if !guess.is_finite() {
            return None;
        }
        let guess = (guess as i64).clamp(lo, hi);
        let wide = self.code == DataType::Int32;
        (guess - 1..=guess + 1).find(|&q| {
            (lo..=hi).contains(&q)
                && onnx::dequantize(q, zp, scale, self.dequant.output, wide).to_bits()
                    == value.to_bits()
        })
    }
}

/// The whole of `w` in Hugging Face's layout, dequantised.
fn decode_whole(
    source: &dyn Source,
    onnx_file: &Bytes,
    w: &OnnxWeight,
    in_folder: &dyn Fn(&str) -> String,
) -> Result<Vec<f32>> {
    let stored = match &w.location {
        Location::External { file, begin, end } => {
            let range = FileRange {
                path: in_folder(file),
                range: crate::source::ByteRange::new(*begin, *end),
            };
            Bytes::from(source.read_ranges(&[range])?.pop().unwrap_or_default())
        }
        _ => w
            .local_bytes(onnx_file)
            .context("its bytes are outside the file")?,
    };
    onnx::decode(w, &stored)
}

/// The model's source, plus the weights decoded into memory at open (read as virtual files
/// `<file.onnx>#<initializer>`); everything else goes to the real source.
struct Decoded {
    inner: Box<dyn Source>,
    memory: BTreeMap<String, Vec<u8>>,
}

impl Source for Decoded {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn files(&self) -> &[FileEntry] {
        self.inner.files()
    }

    fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>> {
        self.inner.read_file(path, max_bytes)
    }

    fn read_ranges(&self, ranges: &[FileRange]) -> Result<Vec<Vec<u8>>> {
        let outside: Vec<FileRange> = ranges
            .iter()
            .filter(|r| !self.memory.contains_key(&r.path))
            .cloned()
            .collect();
        let mut fetched = self.inner.read_ranges(&outside)?.into_iter();
        ranges
            .iter()
            .map(|r| match self.memory.get(&r.path) {
                Some(m) => {
                    let (s, e) = (r.range.start as usize, r.range.end as usize);
                    m.get(s..e).map(<[u8]>::to_vec).with_context(|| {
                        format!("{}: {} has no bytes {}", self.describe(), r.path, r.range)
                    })
                }
                None => Ok(fetched.next().unwrap_or_default()),
            })
            .collect()
    }

    fn stats(&self) -> FetchStats {
        self.inner.stats()
    }

    fn pin(&self) -> Result<Pin> {
        self.inner.pin()
    }

    fn reread(&self) -> Reread {
        self.inner.reread()
    }
}
