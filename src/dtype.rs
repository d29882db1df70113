//! Element types of stored tensors and their decoding to `f32`: every dtype of the safetensors
//! format, plus GGUF's block-quantised GGML types ([`Dtype::Ggml`]; GGUF's plain F32/F16/BF16
//! and integer tensors are the safetensors types of the same name).
//!
//! Decoding works on raw little-endian bytes at any alignment, so it runs directly on
//! mmap'd files and on HTTP Range bodies without copying into typed buffers first.

use std::fmt;

use anyhow::{Result, bail};

use crate::formats::gguf::quants::{self, GgmlType};

/// Every dtype the safetensors format defines (0.8), by its header spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dtype {
    /// Boolean, one byte.
    Bool,
    /// 4-bit float (FP4 E2M1).
    F4,
    /// 6-bit float, 2 exponent and 3 mantissa bits (MX FP6).
    F6E2M3,
    /// 6-bit float, 3 exponent and 2 mantissa bits (MX FP6).
    F6E3M2,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// 8-bit float, 5 exponent and 2 mantissa bits (OCP FP8).
    F8E5M2,
    /// 8-bit float, 4 exponent and 3 mantissa bits (OCP FP8, no infinities).
    F8E4M3,
    /// 8-bit power-of-two scale, exponent only (MX block scales).
    F8E8M0,
    /// `F8E4M3` variant with no negative zero (`0x80` is NaN), exponent bias 8.
    F8E4M3Fnuz,
    /// `F8E5M2` variant with no negative zero (`0x80` is NaN), exponent bias 16.
    F8E5M2Fnuz,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// IEEE half precision.
    F16,
    /// bfloat16: f32's exponent, 7 mantissa bits.
    Bf16,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// IEEE single precision.
    F32,
    /// Complex of two f32 (real, imaginary).
    C64,
    /// IEEE double precision.
    F64,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
    /// A block-quantised GGML type of a GGUF file (`Q4_K`, `Q8_0`, …): elements are stored
    /// in blocks of [`GgmlType::block_elems`] and only whole blocks can be read.
    Ggml(GgmlType),
}

const ALL: [(Dtype, &str, u32); 22] = [
    (Dtype::Bool, "BOOL", 8),
    (Dtype::F4, "F4", 4),
    (Dtype::F6E2M3, "F6_E2M3", 6),
    (Dtype::F6E3M2, "F6_E3M2", 6),
    (Dtype::U8, "U8", 8),
    (Dtype::I8, "I8", 8),
    (Dtype::F8E5M2, "F8_E5M2", 8),
    (Dtype::F8E4M3, "F8_E4M3", 8),
    (Dtype::F8E8M0, "F8_E8M0", 8),
    (Dtype::F8E4M3Fnuz, "F8_E4M3FNUZ", 8),
    (Dtype::F8E5M2Fnuz, "F8_E5M2FNUZ", 8),
    (Dtype::I16, "I16", 16),
    (Dtype::U16, "U16", 16),
    (Dtype::F16, "F16", 16),
    (Dtype::Bf16, "BF16", 16),
    (Dtype::I32, "I32", 32),
    (Dtype::U32, "U32", 32),
    (Dtype::F32, "F32", 32),
    (Dtype::C64, "C64", 64),
    (Dtype::F64, "F64", 64),
    (Dtype::I64, "I64", 64),
    (Dtype::U64, "U64", 64),
];

impl Dtype {
    /// Parses the header spelling (`"BF16"`, `"F8_E4M3"`, …).
    pub fn parse(s: &str) -> Option<Dtype> {
        ALL.iter()
            .find(|(_, name, _)| *name == s)
            .map(|(d, _, _)| *d)
    }

    /// The header spelling (`"BF16"`, `"F8_E4M3"`, …; GGML types by their GGML name).
    pub fn name(self) -> &'static str {
        if let Dtype::Ggml(t) = self {
            return t.name();
        }
        ALL.iter()
            .find(|(d, _, _)| *d == self)
            .map_or("?", |(_, n, _)| n)
    }

    /// The type a GGUF tensor's GGML type is: its plain twin when it has one.
    pub fn from_ggml(t: GgmlType) -> Dtype {
        match t {
            GgmlType::F32 => Dtype::F32,
            GgmlType::F16 => Dtype::F16,
            GgmlType::Bf16 => Dtype::Bf16,
            GgmlType::F64 => Dtype::F64,
            GgmlType::I8 => Dtype::I8,
            GgmlType::I16 => Dtype::I16,
            GgmlType::I32 => Dtype::I32,
            GgmlType::I64 => Dtype::I64,
            q => Dtype::Ggml(q),
        }
    }

    /// Size of one element in bits (sub-byte types exist: F4, F6); for a block-quantised type
    /// the average, rounded up (use [`Dtype::block`] for exact sizes).
    pub fn bits(self) -> u32 {
        if let Dtype::Ggml(t) = self {
            return (t.block_bytes() * 8).div_ceil(t.block_elems().max(1)) as u32;
        }
        ALL.iter()
            .find(|(d, _, _)| *d == self)
            .map_or(0, |(_, _, b)| *b)
    }

    /// The smallest readable unit: (elements, bytes). One element for whole-byte types, the
    /// elements that fill whole bytes for sub-byte ones, a quantisation block for GGML types.
    pub fn block(self) -> (u64, u64) {
        if let Dtype::Ggml(t) = self {
            return (t.block_elems().max(1), t.block_bytes());
        }
        let bits = u64::from(self.bits());
        let elems = 8 / gcd(bits, 8);
        (elems, elems * bits / 8)
    }

    /// Stored bytes of `count` elements, rounded up to whole blocks (for estimates and
    /// budgets; [`byte_len`] is exact).
    pub fn bytes_for(self, count: u64) -> u64 {
        let (elems, bytes) = self.block();
        count.div_ceil(elems).saturating_mul(bytes)
    }

    /// Size of one element in bytes, for whole-byte types.
    pub fn byte_size(self) -> Option<usize> {
        if matches!(self, Dtype::Ggml(_)) {
            return None;
        }
        let bits = self.bits();
        bits.is_multiple_of(8).then_some((bits / 8) as usize)
    }

    /// Floating-point types whose values are weights (as opposed to ids, masks or buffers).
    pub fn is_float(self) -> bool {
        if let Dtype::Ggml(t) = self {
            return t.is_float_weight();
        }
        !matches!(
            self,
            Dtype::Bool
                | Dtype::U8
                | Dtype::I8
                | Dtype::I16
                | Dtype::U16
                | Dtype::I32
                | Dtype::U32
                | Dtype::I64
                | Dtype::U64
        )
    }

    /// Whether [`decode_f32`] can decode this type.
    pub fn decodable(self) -> bool {
        if let Dtype::Ggml(t) = self {
            return t.dequantizable();
        }
        !matches!(self, Dtype::F4 | Dtype::F6E2M3 | Dtype::F6E3M2 | Dtype::C64)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Number of bytes that `numel` elements of `dtype` occupy, or `None` on overflow or a
/// count that does not fill whole blocks (sub-byte totals that do not end on a byte boundary,
/// partial quantisation blocks).
pub fn byte_len(dtype: Dtype, numel: u64) -> Option<u64> {
    let (elems, bytes) = dtype.block();
    numel
        .is_multiple_of(elems)
        .then(|| (numel / elems).checked_mul(bytes))
        .flatten()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

/// Decodes little-endian `bytes` of `dtype` into `out`, which ends up holding exactly the
/// decoded elements (its allocation is reused: allocating per chunk costs more than the
/// conversion itself).
pub fn decode_f32(dtype: Dtype, bytes: &[u8], out: &mut Vec<f32>) -> Result<()> {
    if let Dtype::Ggml(t) = dtype {
        return quants::dequantize(t, bytes, out);
    }
    let Some(size) = dtype.byte_size() else {
        bail!("decoding {dtype} to f32 is not supported");
    };
    if !bytes.len().is_multiple_of(size) {
        bail!(
            "{} bytes is not a whole number of {dtype} elements",
            bytes.len()
        );
    }
    let n = bytes.len() / size;
    // Sized once and written in place: `extend` through an iterator adaptor keeps the loop
    // from vectorising, and a reused buffer of the right length is not zero-filled again.
    out.resize(n, 0.0);
    macro_rules! each {
        ($w:literal, |$b:ident| $e:expr) => {
            for (o, $b) in out.iter_mut().zip(bytes.chunks_exact($w)) {
                *o = $e;
            }
        };
    }
    match dtype {
        Dtype::Bf16 => each!(2, |b| f32::from_bits(
            u32::from(u16::from_le_bytes([b[0], b[1]])) << 16
        )),
        Dtype::F16 => each!(2, |b| half::f16::from_bits(u16::from_le_bytes([
            b[0], b[1]
        ]))
        .to_f32()),
        Dtype::F32 => each!(4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        Dtype::F64 => each!(8, |b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8]))
            as f32),
        Dtype::F8E4M3 => each!(1, |b| f8_e4m3fn(b[0])),
        Dtype::F8E5M2 => each!(1, |b| f8_e5m2(b[0])),
        Dtype::F8E4M3Fnuz => each!(1, |b| f8_fnuz(b[0], 3, 8)),
        Dtype::F8E5M2Fnuz => each!(1, |b| f8_fnuz(b[0], 2, 16)),
        Dtype::F8E8M0 => each!(1, |b| f8_e8m0(b[0])),
        Dtype::Bool | Dtype::U8 => each!(1, |b| f32::from(b[0])),
        Dtype::I8 => each!(1, |b| f32::from(b[0] as i8)),
        Dtype::I16 => each!(2, |b| f32::from(i16::from_le_bytes([b[0], b[1]]))),
        Dtype::U16 => each!(2, |b| f32::from(u16::from_le_bytes([b[0], b[1]]))),
        Dtype::I32 => each!(4, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32),
        Dtype::U32 => each!(4, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32),
        Dtype::I64 => each!(8, |b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8]))
            as f32),
        Dtype::U64 => each!(8, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))
            as f32),
        Dtype::F4 | Dtype::F6E2M3 | Dtype::F6E3M2 | Dtype::C64 | Dtype::Ggml(_) => {
            bail!("decoding {dtype} to f32 is not supported")
        }
    }
    Ok(())
}

/// Side of the square blocks of a block-scaled FP8 weight (DeepSeek-V3's `weight_block_size`).
pub const FP8_BLOCK: u64 = 128;

/// Multiplies decoded FP8 codes by their block's scale: element `start + k` of a row-major
/// matrix `cols` wide is `w[r, c]`, scaled by `scale[(r / block) · ⌈cols / block⌉ + c / block]`
/// (the `weight_scale_inv` layout: despite the name, it multiplies the codes back to the
/// weight). An index outside `scale` is an error, not a panic.
pub fn apply_block_scale(
    values: &mut [f32],
    start: u64,
    cols: u64,
    scale: &[f32],
    block: u64,
) -> Result<()> {
    if cols == 0 || block == 0 {
        bail!("block scaling needs a width and a block size");
    }
    let scale_cols = cols.div_ceil(block);
    for (k, v) in values.iter_mut().enumerate() {
        let e = start + k as u64;
        let (r, c) = (e / cols, e % cols);
        let at = (r / block) * scale_cols + c / block;
        let Some(s) = usize::try_from(at).ok().and_then(|i| scale.get(i)) else {
            bail!(
                "element {e} needs scale {at}, the scale tensor has {}",
                scale.len()
            );
        };
        *v *= s;
    }
    Ok(())
}

/// OCP FP8 E4M3 ("fn": no infinities, only S.1111.111 is NaN), bias 7.
fn f8_e4m3fn(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((b >> 3) & 0x0f);
    let man = f32::from(b & 0x07);
    if exp == 0x0f && b & 0x07 == 0x07 {
        return f32::NAN;
    }
    if exp == 0 {
        sign * man / 8.0 * 2f32.powi(-6)
    } else {
        sign * (1.0 + man / 8.0) * 2f32.powi(exp - 7)
    }
}

/// OCP FP8 E5M2 (IEEE-like: infinities and NaNs), bias 15.
fn f8_e5m2(b: u8) -> f32 {
    half::f16::from_bits(u16::from(b) << 8).to_f32()
}

/// The "fnuz" FP8 variants: no negative zero (0x80 is the only NaN), no infinities,
/// exponent bias one larger than the OCP types.
fn f8_fnuz(b: u8, man_bits: u32, bias: i32) -> f32 {
    if b == 0x80 {
        return f32::NAN;
    }
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let man_mask = (1u8 << man_bits) - 1;
    let exp = i32::from((b & 0x7f) >> man_bits);
    let man = f32::from(b & man_mask) / (1u32 << man_bits) as f32;
    if exp == 0 {
        sign * man * 2f32.powi(1 - bias)
    } else {
        sign * (1.0 + man) * 2f32.powi(exp - bias)
    }
}

/// E8M0: a pure power of two (used as MX block scales), 0xff is NaN.
fn f8_e8m0(b: u8) -> f32 {
    if b == 0xff {
        f32::NAN
    } else {
        2f32.powi(i32::from(b) - 127)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(dtype: Dtype, bytes: &[u8]) -> Vec<f32> {
        let mut out = Vec::new();
        decode_f32(dtype, bytes, &mut out).unwrap();
        out
    }

    #[test]
    fn names_round_trip() {
        for (d, name, _) in ALL {
            assert_eq!(Dtype::parse(name), Some(d));
            assert_eq!(d.name(), name);
        }
        assert_eq!(Dtype::parse("F7"), None);
    }

    #[test]
    fn byte_lengths() {
        assert_eq!(byte_len(Dtype::Bf16, 3), Some(6));
        assert_eq!(byte_len(Dtype::F4, 3), None, "12 bits is not whole bytes");
        assert_eq!(byte_len(Dtype::F4, 4), Some(2));
        assert_eq!(byte_len(Dtype::F64, u64::MAX / 4), None, "overflow");
        // Q4_0: 32 elements in 18 bytes; only whole blocks have a byte length
        let q = Dtype::Ggml(GgmlType::Q4_0);
        assert_eq!(q.block(), (32, 18));
        assert_eq!(byte_len(q, 64), Some(36));
        assert_eq!(byte_len(q, 40), None);
        assert_eq!(q.bytes_for(40), 36);
        assert_eq!(q.bits(), 5, "4.5 bits rounded up");
        assert_eq!(Dtype::F6E2M3.block(), (4, 3));
        assert_eq!(Dtype::Bf16.block(), (1, 2));
        assert_eq!(Dtype::from_ggml(GgmlType::F16), Dtype::F16);
    }

    #[test]
    fn bf16_is_a_shift() {
        // 1.0 = 0x3f80, -2.0 = 0xc000, 0.5 = 0x3f00
        let v = dec(Dtype::Bf16, &[0x80, 0x3f, 0x00, 0xc0, 0x00, 0x3f]);
        assert_eq!(v, vec![1.0, -2.0, 0.5]);
    }

    #[test]
    fn f16_and_f32_and_f64() {
        assert_eq!(dec(Dtype::F16, &[0x00, 0x3c, 0x00, 0xc0]), vec![1.0, -2.0]);
        assert_eq!(dec(Dtype::F32, &1.5f32.to_le_bytes()), vec![1.5]);
        assert_eq!(dec(Dtype::F64, &(-0.25f64).to_le_bytes()), vec![-0.25]);
    }

    #[test]
    fn integers() {
        assert_eq!(dec(Dtype::I8, &[0xff, 0x02]), vec![-1.0, 2.0]);
        assert_eq!(dec(Dtype::I64, &(-7i64).to_le_bytes()), vec![-7.0]);
        assert_eq!(dec(Dtype::Bool, &[0, 1]), vec![0.0, 1.0]);
    }

    #[test]
    fn block_scales_by_hand() {
        // a 2×3 matrix in blocks of 2: columns 0–1 use scale column 0, column 2 column 1;
        // both rows are in block row 0 → scales [10, 100]
        let mut v = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        apply_block_scale(&mut v, 0, 3, &[10.0, 100.0], 2).unwrap();
        assert_eq!(v, vec![10.0, 20.0, 300.0, 40.0, 50.0, 600.0]);
        // a window starting mid-matrix: elements 4.. of a 4-wide matrix are row 1, and with
        // blocks of 1 the scale grid is 4 wide: row 1 → scales 4..
        let mut w = vec![1.0, 1.0];
        apply_block_scale(
            &mut w,
            4,
            4,
            &(0..8).map(|i| i as f32).collect::<Vec<_>>(),
            1,
        )
        .unwrap();
        assert_eq!(w, vec![4.0, 5.0]);
        assert!(apply_block_scale(&mut [1.0], 9, 3, &[1.0, 1.0], 2).is_err());
    }

    #[test]
    fn fp8_known_values() {
        // E4M3FN: 0x38 = 1.0, 0x40 = 2.0, 0x7e = 448 (max), 0x01 = 2^-9 (min subnormal), 0x7f NaN
        let v = dec(Dtype::F8E4M3, &[0x38, 0x40, 0x7e, 0x01, 0xb8]);
        assert_eq!(v, vec![1.0, 2.0, 448.0, 2f32.powi(-9), -1.0]);
        assert!(dec(Dtype::F8E4M3, &[0x7f])[0].is_nan());
        // E5M2: 0x3c = 1.0, 0x7b = 57344 (max), 0x7c = inf
        let v = dec(Dtype::F8E5M2, &[0x3c, 0x7b, 0x7c]);
        assert_eq!(v, vec![1.0, 57344.0, f32::INFINITY]);
        // FNUZ: bias 8 / 16, 0x80 NaN
        assert_eq!(dec(Dtype::F8E4M3Fnuz, &[0x40]), vec![1.0]);
        assert_eq!(dec(Dtype::F8E5M2Fnuz, &[0x40]), vec![1.0]);
        assert!(dec(Dtype::F8E4M3Fnuz, &[0x80])[0].is_nan());
        assert_eq!(dec(Dtype::F8E8M0, &[127, 130]), vec![1.0, 8.0]);
    }

    #[test]
    fn refuses_partial_elements_and_subbyte() {
        let mut out = Vec::new();
        assert!(decode_f32(Dtype::Bf16, &[1, 2, 3], &mut out).is_err());
        assert!(decode_f32(Dtype::F4, &[1], &mut out).is_err());
    }
}
