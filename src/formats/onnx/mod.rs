//! ONNX model files read as data (the graph is never run): every initializer, located in the
//! file (or in a side file of external data), named the way Hugging Face names the parameter
//! it came from, with what reading must undo (a transposition, a dequantisation).
//!
//! Exporters lose names and layouts: `torch.onnx.export` and Optimum keep an `nn.Linear`'s bias
//! under its module's name (`bert.encoder.layer.0.attention.self.query.bias`) but fold its
//! weight, transposed to `[in, out]`, into an anonymous `onnx::MatMul_123`; onnxruntime's
//! quantisers then store int8 codes (`…_quantized`) whose scale and zero point sit on a
//! `DequantizeLinear` node (static Q/DQ) or on the `Mul` after a `MatMulInteger` (dynamic).
//! [`parse`] finds all of that in the graph:
//!
//! - `proto` declares the part of `onnx.proto` needed, decoded by `prost`;
//! - `tensor` validates each initializer (dims, data type, byte lengths, external paths) and
//!   locates its bytes;
//! - `index` lists, for every value, the nodes consuming and producing it and its
//!   initializer;
//! - `graph` finds each weight's dequantisation, `names` its name and layout (see
//!   [`Naming`]);
//! - [`mod@decode`] turns stored bytes into Hugging Face's float values.
//!
//! The file is hostile input: every length is checked before it is used, nothing is
//! allocated from an unchecked count, and no input panics. Initializers of sub-graphs (the
//! bodies of `If`/`Loop` nodes) are not read.

pub mod decode;
mod graph;
mod index;
mod names;
mod proto;
mod tensor;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use prost::Message;

pub use decode::{
    code_range, codes_f32, decode, decode_stored, dequantize, hf_to_stored_index, quantize,
};

/// Most nodes a graph may have (the largest published exports have a few hundred thousand).
pub const MAX_NODES: usize = 1 << 22;
/// Most initializers a graph may have.
pub const MAX_INITIALIZERS: usize = 1 << 21;

/// `TensorProto.DataType`: how a tensor's elements are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `FLOAT` (1): IEEE f32.
    Float,
    /// `UINT8` (2)
    Uint8,
    /// `INT8` (3)
    Int8,
    /// `UINT16` (4)
    Uint16,
    /// `INT16` (5)
    Int16,
    /// `INT32` (6)
    Int32,
    /// `INT64` (7)
    Int64,
    /// `BOOL` (9): one byte per element.
    Bool,
    /// `FLOAT16` (10): IEEE half.
    Float16,
    /// `DOUBLE` (11)
    Double,
    /// `UINT32` (12)
    Uint32,
    /// `UINT64` (13)
    Uint64,
    /// `BFLOAT16` (16)
    BFloat16,
    /// Any other code: listed, but reading it fails with its name (see [`DataType::name`]).
    Other(i32),
}

impl DataType {
    /// The type of an ONNX `data_type` code.
    pub fn from_code(code: i32) -> DataType {
        match code {
            1 => DataType::Float,
            2 => DataType::Uint8,
            3 => DataType::Int8,
            4 => DataType::Uint16,
            5 => DataType::Int16,
            6 => DataType::Int32,
            7 => DataType::Int64,
            9 => DataType::Bool,
            10 => DataType::Float16,
            11 => DataType::Double,
            12 => DataType::Uint32,
            13 => DataType::Uint64,
            16 => DataType::BFloat16,
            other => DataType::Other(other),
        }
    }

    /// The ONNX `data_type` code.
    pub fn code(self) -> i32 {
        match self {
            DataType::Float => 1,
            DataType::Uint8 => 2,
            DataType::Int8 => 3,
            DataType::Uint16 => 4,
            DataType::Int16 => 5,
            DataType::Int32 => 6,
            DataType::Int64 => 7,
            DataType::Bool => 9,
            DataType::Float16 => 10,
            DataType::Double => 11,
            DataType::Uint32 => 12,
            DataType::Uint64 => 13,
            DataType::BFloat16 => 16,
            DataType::Other(code) => code,
        }
    }

    /// ONNX's spelling (`FLOAT16`, `INT8`, `FLOAT8E4M3FN`, …; `UNKNOWN` for codes onnx 1.23
    /// does not define).
    pub fn name(self) -> &'static str {
        const NAMES: [&str; 29] = [
            "UNDEFINED",
            "FLOAT",
            "UINT8",
            "INT8",
            "UINT16",
            "INT16",
            "INT32",
            "INT64",
            "STRING",
            "BOOL",
            "FLOAT16",
            "DOUBLE",
            "UINT32",
            "UINT64",
            "COMPLEX64",
            "COMPLEX128",
            "BFLOAT16",
            "FLOAT8E4M3FN",
            "FLOAT8E4M3FNUZ",
            "FLOAT8E5M2",
            "FLOAT8E5M2FNUZ",
            "UINT4",
            "INT4",
            "FLOAT4E2M1",
            "FLOAT8E8M0",
            "UINT2",
            "INT2",
            "FLOAT6E2M3",
            "FLOAT6E3M2",
        ];
        usize::try_from(self.code())
            .ok()
            .and_then(|i| NAMES.get(i).copied())
            .unwrap_or("UNKNOWN")
    }

    /// Bytes per element of the types this reader decodes; `None` for the others.
    pub fn size(self) -> Option<u64> {
        Some(match self {
            DataType::Uint8 | DataType::Int8 | DataType::Bool => 1,
            DataType::Uint16 | DataType::Int16 | DataType::Float16 | DataType::BFloat16 => 2,
            DataType::Float | DataType::Int32 | DataType::Uint32 => 4,
            DataType::Int64 | DataType::Double | DataType::Uint64 => 8,
            DataType::Other(_) => return None,
        })
    }

    /// Bytes that `numel` elements take in `raw_data` (sub-byte types packed, as onnx packs
    /// them); `None` for types without a fixed layout (`STRING`, `UNDEFINED`, unknown codes)
    /// or on overflow.
    pub fn stored_len(self, numel: u64) -> Option<u64> {
        if let Some(size) = self.size() {
            return numel.checked_mul(size);
        }
        let DataType::Other(code) = self else {
            return None;
        };
        match code {
            14 => numel.checked_mul(8),
            15 => numel.checked_mul(16),
            17..=20 | 24 => Some(numel),
            21..=23 => Some(numel.div_ceil(2)),
            25 | 26 => Some(numel.div_ceil(4)),
            27 | 28 => numel.checked_mul(6).map(|bits| bits.div_ceil(8)),
            _ => None,
        }
    }

    /// Whether the elements are integers (the codes of a quantised weight are).
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            DataType::Uint8
                | DataType::Int8
                | DataType::Uint16
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::Uint32
                | DataType::Uint64
        )
    }
}

/// Where a tensor's stored bytes are (little-endian, in the stored layout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// `raw_data`: bytes `[begin, end)` of the `.onnx` file itself.
    Inline {
        /// First byte (absolute offset in the file).
        begin: u64,
        /// End (exclusive).
        end: u64,
    },
    /// External data: bytes `[begin, end)` of another file.
    External {
        /// The file, relative to the folder holding the `.onnx` file; checked to stay inside
        /// it (no `..`, no absolute path, no backslash, colon or NUL; `.` parts removed).
        file: String,
        /// First byte.
        begin: u64,
        /// End (exclusive), within the file's size.
        end: u64,
    },
    /// Values the file stores in `TensorProto`'s typed fields (`float_data`, `int32_data`, …),
    /// re-encoded as the little-endian bytes `raw_data` would hold (values kept to their
    /// type's width exactly as `onnx.numpy_helper.to_array` keeps them).
    Memory(Bytes),
}

/// How a weight's integer codes become values: `y = (q − zero_point) · scale`, as ONNX's
/// `DequantizeLinear` computes it (see [`mod@decode`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Dequant {
    /// One scale (per tensor), or one per index of `axis`.
    pub scale: Vec<f32>,
    /// As many zero points as scales (zeros when the file gives none).
    pub zero_point: Vec<i32>,
    /// The axis of the **stored** (ONNX) layout the scales run along; `None`: per tensor.
    /// For a transposed weight the Hugging Face axis is the other one
    /// ([`OnnxWeight::hf_quant_axis`]).
    pub axis: Option<usize>,
    /// The type of `DequantizeLinear`'s output, the scale's type: [`DataType::Float`], or
    /// `FLOAT16`/`BFLOAT16`, to which each value is rounded.
    pub output: DataType,
    /// Which pattern gave the scale.
    pub scheme: QuantScheme,
}

/// The quantisation patterns recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantScheme {
    /// Static Q/DQ: initializer → `DequantizeLinear(scale, zero_point, axis)`.
    StaticQdq,
    /// Dynamic: `MatMulInteger`/`ConvInteger(…, weight, …, weight_zero_point)` → `Cast` →
    /// `Mul` by `Mul(activation_scale, weight_scale)` (onnxruntime's `quantize_dynamic`).
    DynamicInteger,
    /// Dynamic embedding: `Gather(weight, ids)` → `DequantizeLinear(scale, zero_point)`.
    GatherDequantize,
}

/// How a weight got its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// The initializer's own name (less onnxruntime's `_quantized`) is a parameter name.
    Kept,
    /// Named after the bias its layer adds: `<module>.bias` → `<module>.weight`.
    Bias,
    /// Named after the scope path of the node using it: `/a/b.0/q/MatMul` → `a.b.0.q.weight`.
    NodePath,
    /// No name found: listed under its ONNX name. Anonymous constants of the graph (shapes,
    /// indices) are listed so too; a weight-like one is also reported in
    /// [`OnnxModel::problems`].
    Unnamed,
}

/// One initializer, under its Hugging Face name.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxWeight {
    /// The Hugging Face name (`bert.encoder.layer.0.attention.self.query.weight`); the ONNX
    /// name when [`Naming::Unnamed`].
    pub name: String,
    /// The initializer's name in the file (`onnx::MatMul_123_quantized`).
    pub onnx_name: String,
    /// Hugging Face's shape (outermost first): the stored shape, reversed when transposed.
    pub shape: Vec<u64>,
    /// The stored (ONNX) shape.
    pub onnx_shape: Vec<u64>,
    /// Number of elements.
    pub numel: u64,
    /// Type of the stored elements (the codes, for a quantised weight).
    pub dtype: DataType,
    /// Where the stored bytes are.
    pub location: Location,
    /// Stored `[in, out]` for Hugging Face's `[out, in]`: reading transposes.
    pub transposed: bool,
    /// The dequantisation of a quantised weight.
    pub quant: Option<Dequant>,
    /// How the name was found.
    pub naming: Naming,
    /// Why reading this weight fails, when it must (an unsupported data type or
    /// quantisation); [`decode()`] refuses it with this text.
    pub unreadable: Option<String>,
}

impl OnnxWeight {
    /// The stored bytes when they are in memory: a slice of `onnx_file` (the bytes given to
    /// [`parse`]) for [`Location::Inline`], the values for [`Location::Memory`]; `None` for
    /// external data or a range outside `onnx_file`.
    pub fn local_bytes(&self, onnx_file: &Bytes) -> Option<Bytes> {
        match &self.location {
            Location::Inline { begin, end } => {
                let (b, e) = (usize::try_from(*begin).ok()?, usize::try_from(*end).ok()?);
                (b <= e && e <= onnx_file.len()).then(|| onnx_file.slice(b..e))
            }
            Location::Memory(b) => Some(b.clone()),
            Location::External { .. } => None,
        }
    }

    /// The axis of Hugging Face's layout the per-axis scales run along.
    pub fn hf_quant_axis(&self) -> Option<usize> {
        let axis = self.quant.as_ref()?.axis?;
        if self.transposed {
            self.onnx_shape.len().checked_sub(1 + axis)
        } else {
            Some(axis)
        }
    }
}

/// A parsed ONNX model.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxModel {
    /// Every initializer but the quantisation parameters (scales and zero points), in file
    /// order.
    pub tensors: Vec<OnnxWeight>,
    /// `producer_name` and `producer_version` (`pytorch 2.1.0`, `onnx.quantize 0.1.0`).
    pub producer: String,
    /// The default (`ai.onnx`) domain's opset version.
    pub opset: Option<i64>,
    /// `ir_version`.
    pub ir_version: i64,
    /// What could not be done, one sentence each: weights left unnamed, names that disagree,
    /// quantisations not understood, initializers skipped (strings).
    pub problems: Vec<String>,
}

impl OnnxModel {
    /// The tensor of a Hugging Face name.
    pub fn tensor(&self, name: &str) -> Option<&OnnxWeight> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Parses an ONNX model file held in `bytes` (zero-copy: [`Location::Inline`] ranges index
/// these bytes). `external_size(file)` gives the size of a file of external data, `file`
/// relative to the `.onnx` file's folder (already checked to stay inside it), or `None` when
/// it does not exist.
///
/// Fails on a file that is not a valid ONNX protobuf, and on any initializer whose dims, data
/// or external data are inconsistent, naming the tensor and the field; what cannot be named
/// or dequantised is reported in [`OnnxModel::problems`] instead.
pub fn parse(bytes: Bytes, external_size: &dyn Fn(&str) -> Option<u64>) -> Result<OnnxModel> {
    // Count first, allocating nothing per entry, so millions of tiny entries are refused
    // before they are decoded into structures a hundred times their size.
    let outline = proto::ModelOutline::decode(bytes.clone())
        .map_err(|e| anyhow::anyhow!("not an ONNX model: invalid protobuf: {e}"))?;
    let Some(g) = outline.graph else {
        bail!("not an ONNX model: ModelProto has no graph (field 7)");
    };
    if g.node.len() > MAX_NODES {
        bail!(
            "the graph has {} nodes (at most {MAX_NODES} accepted)",
            g.node.len()
        );
    }
    if g.initializer.len() > MAX_INITIALIZERS {
        bail!(
            "the graph has {} initializers (at most {MAX_INITIALIZERS} accepted)",
            g.initializer.len()
        );
    }
    let model = proto::ModelProto::decode(bytes.clone())
        .map_err(|e| anyhow::anyhow!("not an ONNX model: invalid protobuf: {e}"))?;
    let graph = model
        .graph
        .context("not an ONNX model: ModelProto has no graph (field 7)")?;
    let opset = model
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max();
    let producer = format!("{} {}", model.producer_name, model.producer_version)
        .trim()
        .to_string();
    let mut problems = Vec::new();
    let mut stored = Vec::with_capacity(graph.initializer.len());
    let mut seen = std::collections::HashSet::new();
    for t in &graph.initializer {
        if !seen.insert(t.name.as_str()) {
            bail!("initializer {:?} appears twice in the graph", t.name);
        }
        match tensor::read(t, &bytes, external_size)? {
            tensor::Read::Stored(s) => stored.push(s),
            tensor::Read::Skipped(why) => problems.push(why),
        }
    }
    let tensors = graph::weights(&graph.node, stored, &bytes, &mut problems);
    Ok(OnnxModel {
        tensors,
        producer,
        opset,
        ir_version: model.ir_version,
        problems,
    })
}

/// Whether a file name is an ONNX model (`.onnx`, any case).
pub fn is_onnx_path(path: &str) -> bool {
    path.rsplit_once('.')
        .is_some_and(|(_, e)| e.eq_ignore_ascii_case("onnx"))
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod testutil;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_type_names_and_sizes() {
        for code in 0..30 {
            let t = DataType::from_code(code);
            assert_eq!(t.code(), code);
        }
        assert_eq!(DataType::from_code(17).name(), "FLOAT8E4M3FN");
        assert_eq!(DataType::from_code(99).name(), "UNKNOWN");
        assert_eq!(DataType::from_code(-1).name(), "UNKNOWN");
        assert_eq!(DataType::BFloat16.name(), "BFLOAT16");
        assert_eq!(DataType::Float16.stored_len(3), Some(6));
        assert_eq!(DataType::from_code(22).stored_len(3), Some(2));
        assert_eq!(DataType::from_code(25).stored_len(5), Some(2));
        assert_eq!(DataType::from_code(27).stored_len(3), Some(3));
        assert_eq!(DataType::from_code(8).stored_len(3), None);
        assert_eq!(DataType::Double.stored_len(u64::MAX), None);
        assert!(DataType::Int8.is_integer() && !DataType::Float.is_integer());
        assert!(is_onnx_path("a/model.ONNX") && !is_onnx_path("onnx"));
    }
}
