//! GGUF, llama.cpp's single-file format: a header (metadata key/values, which hold the
//! hyperparameters and the vocabulary, then tensor entries) followed by an aligned data
//! section of tensors stored as GGML types, most of them quantised in blocks.
//!
//! - [`read`] parses the header from bytes fetched on demand (so a Hub file is read by range);
//! - [`quants`] knows every GGML type's block layout, dequantises, and re-quantises the way
//!   llama.cpp's reference quantisers do (what E3q compares);
//! - [`names`] turns llama.cpp's tensor names and layout back into Hugging Face's, so a GGUF
//!   release compares with the safetensors checkpoint it was converted from.

pub mod names;
pub mod quants;
pub mod read;

use std::collections::BTreeMap;

use quants::GgmlType;

/// One metadata value, as the file stores it.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    /// `UINT8`
    U8(u8),
    /// `INT8`
    I8(i8),
    /// `UINT16`
    U16(u16),
    /// `INT16`
    I16(i16),
    /// `UINT32`
    U32(u32),
    /// `INT32`
    I32(i32),
    /// `FLOAT32`
    F32(f32),
    /// `BOOL`
    Bool(bool),
    /// `STRING` (UTF-8)
    String(String),
    /// `ARRAY` of values of one type
    Array(Vec<MetaValue>),
    /// `UINT64`
    U64(u64),
    /// `INT64`
    I64(i64),
    /// `FLOAT64`
    F64(f64),
}

impl MetaValue {
    /// The value as an unsigned integer, when it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(u64::from(v)),
            MetaValue::U16(v) => Some(u64::from(v)),
            MetaValue::U32(v) => Some(u64::from(v)),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, when it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(f64::from(v)),
            MetaValue::F64(v) => Some(v),
            MetaValue::I8(v) => Some(f64::from(v)),
            MetaValue::I16(v) => Some(f64::from(v)),
            MetaValue::I32(v) => Some(f64::from(v)),
            MetaValue::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// The value as text, when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, when it is an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One tensor as the header describes it, validated (see [`read::parse`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgufTensor {
    /// llama.cpp's name (`blk.0.attn_q.weight`).
    pub name: String,
    /// ggml's `ne`: the innermost (fastest-varying) dimension first, the reverse of the
    /// Hugging Face shape.
    pub dims: Vec<u64>,
    /// How the elements are stored.
    pub ty: GgmlType,
    /// Number of elements.
    pub numel: u64,
    /// Absolute file offsets of the tensor's bytes, `[begin, end)`.
    pub begin: u64,
    /// End of the tensor's bytes (exclusive).
    pub end: u64,
}

impl GgufTensor {
    /// The shape in Hugging Face's order (outermost first).
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }
}

/// A validated GGUF header.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufHeader {
    /// 2 or 3.
    pub version: u32,
    /// Alignment of the data section and of every tensor offset in it.
    pub alignment: u64,
    /// Every metadata key/value.
    pub metadata: BTreeMap<String, MetaValue>,
    /// Every tensor, in file order.
    pub tensors: Vec<GgufTensor>,
    /// Absolute offset of the data section.
    pub data_start: u64,
}

impl GgufHeader {
    /// `general.architecture` (`llama`, `qwen2`, `gemma3`, `bert`, …).
    pub fn architecture(&self) -> Option<&str> {
        self.metadata
            .get("general.architecture")
            .and_then(MetaValue::as_str)
    }

    /// A per-architecture hyperparameter: `<architecture>.<key>`, e.g. `block_count`.
    pub fn arch_value(&self, key: &str) -> Option<&MetaValue> {
        let arch = self.architecture()?;
        self.metadata.get(&format!("{arch}.{key}"))
    }

    /// A per-architecture hyperparameter as an unsigned integer.
    pub fn arch_u64(&self, key: &str) -> Option<u64> {
        self.arch_value(key).and_then(MetaValue::as_u64)
    }

    /// This file's part of a split model: (`split.no`, `split.count`), zero-based.
    pub fn split(&self) -> Option<(u64, u64)> {
        let no = self.metadata.get("split.no")?.as_u64()?;
        let count = self.metadata.get("split.count")?.as_u64()?;
        Some((no, count))
    }
}

/// Whether a file name is a GGUF file (`.gguf`, any case).
pub fn is_gguf_path(path: &str) -> bool {
    path.rsplit('.')
        .next()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// The parts of a split GGUF file name `<stem>-00001-of-00003.gguf`: (stem, part, count),
/// part one-based as in the name.
pub fn split_name(path: &str) -> Option<(&str, u32, u32)> {
    let stem = path.strip_suffix(".gguf")?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (stem, part) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(part) || !digits(count) {
        return None;
    }
    let (part, count) = (part.parse().ok()?, count.parse().ok()?);
    (part >= 1 && part <= count).then_some((stem, part, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names() {
        assert_eq!(
            split_name("m/Qwen3-Q4_K_M-00002-of-00003.gguf"),
            Some(("m/Qwen3-Q4_K_M", 2, 3))
        );
        assert_eq!(split_name("model.gguf"), None);
        assert_eq!(split_name("m-00004-of-00003.gguf"), None);
        assert_eq!(split_name("m-1-of-3.gguf"), None);
        assert!(is_gguf_path("a/b.GGUF"));
        assert!(!is_gguf_path("a/b.safetensors"));
    }
}
