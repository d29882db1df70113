//! The element types of stored tensors (safetensors spelling), shared by the architecture
//! tables, the model reader/writer and the exporters; its own file so that those modules can
//! name a dtype without depending on each other.

use anyhow::{Result, bail};

/// Element type of a stored tensor (safetensors spelling).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// bfloat16.
    BF16,
    /// IEEE half.
    F16,
    /// Any other safetensors dtype, kept as raw bytes.
    Other(&'static str, usize),
}

impl DType {
    /// safetensors name, e.g. `"BF16"`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::BF16 => "BF16",
            DType::F16 => "F16",
            DType::Other(n, _) => n,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::BF16 | DType::F16 => 2,
            DType::Other(_, s) => s,
        }
    }

    /// Parse a safetensors dtype name.
    pub fn parse(s: &str) -> Result<DType> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "F32" => DType::F32,
            "BF16" => DType::BF16,
            "F16" => DType::F16,
            "F64" => DType::Other("F64", 8),
            "I64" => DType::Other("I64", 8),
            "U64" => DType::Other("U64", 8),
            "I32" => DType::Other("I32", 4),
            "U32" => DType::Other("U32", 4),
            "I16" => DType::Other("I16", 2),
            "U16" => DType::Other("U16", 2),
            "I8" => DType::Other("I8", 1),
            "U8" => DType::Other("U8", 1),
            "BOOL" => DType::Other("BOOL", 1),
            "F8_E4M3" => DType::Other("F8_E4M3", 1),
            "F8_E5M2" => DType::Other("F8_E5M2", 1),
            other => bail!("unsupported dtype {other:?}"),
        })
    }

    /// True for dtypes the lab decodes to f32 and can transform.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::BF16 | DType::F16)
    }
}
