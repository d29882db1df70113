//! GGML tensor types: their block layouts, dequantisation to f32, and llama.cpp's reference
//! quantisers.
//!
//! A GGUF tensor is stored in one of ggml's types: plain numbers (F32, F16, BF16, …) or blocks
//! of a fixed number of elements sharing scales (Q4_0, Q4_K, IQ4_XS, …). Auditing provenance
//! means comparing those numbers with the weights they claim to come from, so this module turns
//! any block into f32 exactly as the reference tools do and can redo a quantisation to compare
//! byte for byte or code by code.
//!
//! - Dequantisation is bit-for-bit equal to gguf-py's `gguf.quants.dequantize` (float32 numpy,
//!   its operation order), the reference the project's acceptance tests use.
//! - Quantisation mirrors llama.cpp's `quantize_row_*_ref` (no importance matrix) operation by
//!   operation in f32, as built for x86-64 without FMA contraction.
//!
//! The module is pure: bytes in, numbers out, no I/O, and it imports nothing from the crate.
//! Whatever the bytes, it returns a value or an error; it never panics, and it allocates no more
//! than the output that the input's length implies.

mod float;
mod iq;
mod k;
mod k_quantize;
mod legacy;
mod ternary;

use anyhow::{Result, bail, ensure};

pub use iq::{IQ4_NL_VALUES, MXFP4_VALUES};

/// A ggml tensor type, numbered as in ggml's `enum ggml_type` and GGUF files.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GgmlType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// 32 elements: f16 scale, 4-bit codes centred on 8.
    Q4_0,
    /// 32 elements: f16 scale and minimum, 4-bit codes.
    Q4_1,
    /// 32 elements: f16 scale, 5-bit codes centred on 16.
    Q5_0,
    /// 32 elements: f16 scale and minimum, 5-bit codes.
    Q5_1,
    /// 32 elements: f16 scale, i8 codes.
    Q8_0,
    /// 32 elements: f16 scale, f16 sum, i8 codes (an activation type of ggml's dot products).
    Q8_1,
    /// 256 elements: 16 sub-blocks with 4-bit scales and minimums, 2-bit codes.
    Q2K,
    /// 256 elements: 16 sub-blocks with 6-bit scales, 3-bit codes.
    Q3K,
    /// 256 elements: 8 sub-blocks with 6-bit scales and minimums, 4-bit codes.
    Q4K,
    /// 256 elements: 8 sub-blocks with 6-bit scales and minimums, 5-bit codes.
    Q5K,
    /// 256 elements: 16 sub-blocks with i8 scales, 6-bit codes centred on 32.
    Q6K,
    /// 256 elements: f32 scale, i8 codes, i16 sums of 16 (ggml's activation type for K-quants).
    Q8K,
    /// 256 elements on a lattice of 2.06 bits per weight.
    Iq2Xxs,
    /// 256 elements on a lattice of 2.31 bits per weight.
    Iq2Xs,
    /// 256 elements on a lattice of 3.06 bits per weight.
    Iq3Xxs,
    /// 256 elements on a lattice of 1.56 bits per weight.
    Iq1S,
    /// 32 elements: f16 scale, 4-bit indices into a non-linear table.
    Iq4Nl,
    /// 256 elements on a lattice of 3.44 bits per weight.
    Iq3S,
    /// 256 elements on a lattice of 2.5 bits per weight.
    Iq2S,
    /// 256 elements: 8 sub-blocks with 6-bit scales, 4-bit indices into IQ4_NL's table.
    Iq4Xs,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// IEEE binary64.
    F64,
    /// 256 elements on a lattice of 1.75 bits per weight.
    Iq1M,
    /// bfloat16: the top half of an f32.
    Bf16,
    /// 256 ternary elements packed five to a byte, f16 scale.
    Tq1_0,
    /// 256 ternary elements packed in 2 bits, f16 scale.
    Tq2_0,
    /// 32 elements: power-of-two scale (E8M0), 4-bit E2M1 codes (OCP microscaling).
    Mxfp4,
}

/// What ggml and GGUF say about a type: its number, name and block geometry.
struct Info {
    id: u32,
    name: &'static str,
    block_elems: u64,
    block_bytes: u64,
}

const fn info(id: u32, name: &'static str, block_elems: u64, block_bytes: u64) -> Info {
    Info {
        id,
        name,
        block_elems,
        block_bytes,
    }
}

impl GgmlType {
    /// Every type this module knows, in ggml's numbering order.
    pub const ALL: [GgmlType; 32] = {
        use GgmlType::*;
        [
            F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2K, Q3K, Q4K, Q5K, Q6K, Q8K, Iq2Xxs,
            Iq2Xs, Iq3Xxs, Iq1S, Iq4Nl, Iq3S, Iq2S, Iq4Xs, I8, I16, I32, I64, F64, Iq1M, Bf16,
            Tq1_0, Tq2_0, Mxfp4,
        ]
    };

    // Sizes are ggml's `sizeof(block_*)`, which gguf-py's GGML_QUANT_SIZES repeats except for
    // Q8_1: gguf-py says 40 bytes (two f32 from an old layout), ggml has used two f16 (36 bytes)
    // since 2023, and a GGUF file's offsets follow ggml.
    const fn info(self) -> Info {
        use GgmlType::*;
        match self {
            F32 => info(0, "F32", 1, 4),
            F16 => info(1, "F16", 1, 2),
            Q4_0 => info(2, "Q4_0", 32, 18),
            Q4_1 => info(3, "Q4_1", 32, 20),
            Q5_0 => info(6, "Q5_0", 32, 22),
            Q5_1 => info(7, "Q5_1", 32, 24),
            Q8_0 => info(8, "Q8_0", 32, 34),
            Q8_1 => info(9, "Q8_1", 32, 36),
            Q2K => info(10, "Q2_K", 256, 84),
            Q3K => info(11, "Q3_K", 256, 110),
            Q4K => info(12, "Q4_K", 256, 144),
            Q5K => info(13, "Q5_K", 256, 176),
            Q6K => info(14, "Q6_K", 256, 210),
            Q8K => info(15, "Q8_K", 256, 292),
            Iq2Xxs => info(16, "IQ2_XXS", 256, 66),
            Iq2Xs => info(17, "IQ2_XS", 256, 74),
            Iq3Xxs => info(18, "IQ3_XXS", 256, 98),
            Iq1S => info(19, "IQ1_S", 256, 50),
            Iq4Nl => info(20, "IQ4_NL", 32, 18),
            Iq3S => info(21, "IQ3_S", 256, 110),
            Iq2S => info(22, "IQ2_S", 256, 82),
            Iq4Xs => info(23, "IQ4_XS", 256, 136),
            I8 => info(24, "I8", 1, 1),
            I16 => info(25, "I16", 1, 2),
            I32 => info(26, "I32", 1, 4),
            I64 => info(27, "I64", 1, 8),
            F64 => info(28, "F64", 1, 8),
            Iq1M => info(29, "IQ1_M", 256, 56),
            Bf16 => info(30, "BF16", 1, 2),
            Tq1_0 => info(34, "TQ1_0", 256, 54),
            Tq2_0 => info(35, "TQ2_0", 256, 66),
            Mxfp4 => info(39, "MXFP4", 32, 17),
        }
    }

    /// The type with ggml's number `id`; `None` for numbers ggml removed (4, 5, 31–33, 36–38) or
    /// that this module does not know.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    /// ggml's number for the type, as stored in a GGUF tensor info.
    pub fn id(self) -> u32 {
        self.info().id
    }

    /// gguf-py's `GGMLQuantizationType` member name: "Q4_K", "IQ4_XS", "BF16", …
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Elements per block: 1 for plain number types, 32 or 256 for block types.
    pub fn block_elems(self) -> u64 {
        self.info().block_elems
    }

    /// Bytes per block (ggml's `ggml_type_size`).
    pub fn block_bytes(self) -> u64 {
        self.info().block_bytes
    }

    /// Whether the type holds weights (floats or quantised floats) rather than integers.
    pub fn is_float_weight(self) -> bool {
        !matches!(
            self,
            GgmlType::I8 | GgmlType::I16 | GgmlType::I32 | GgmlType::I64
        )
    }

    /// Whether [`dequantize`] supports the type.
    pub fn dequantizable(self) -> bool {
        decoder(self).is_some()
    }

    /// Whether [`quantize`] supports the type.
    pub fn quantizable(self) -> bool {
        encoder(self).is_some()
    }

    /// Whether [`block_codes`] supports the type.
    pub fn has_codes(self) -> bool {
        code_reader(self).is_some()
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Decodes `bytes` as values of type `ty` into `out`, which ends up holding exactly the elements
/// (its allocation is reused). `bytes` must be a whole number of blocks. The integer types I8,
/// I16 and I32 are converted to the nearest f32; F64 is rounded to f32.
///
/// The result is bit-for-bit what `gguf.quants.dequantize` returns for every type gguf-py
/// supports (NaN payloads aside). Never panics, whatever the bytes.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut Vec<f32>) -> Result<()> {
    let Some(decode) = decoder(ty) else {
        bail!("GGUF type {ty} cannot be dequantised by this tool");
    };
    check_whole_blocks(ty, bytes.len())?;
    decode(bytes, out);
    Ok(())
}

/// Quantises `values` to type `ty` the way llama.cpp's reference quantiser does
/// (`quantize_row_*_ref`, no importance matrix), appending the blocks to `out`.
///
/// `values.len()` must be a multiple of the block size. For block types every value must be
/// finite: the reference quantisers give meaningless (and compiler-dependent) bytes otherwise.
pub fn quantize(ty: GgmlType, values: &[f32], out: &mut Vec<u8>) -> Result<()> {
    let Some(encode) = encoder(ty) else {
        bail!("GGUF type {ty} cannot be quantised by this tool");
    };
    let elems = ty.block_elems() as usize;
    ensure!(
        values.len().is_multiple_of(elems),
        "{ty} quantisation needs a multiple of {elems} values, got {}",
        values.len()
    );
    if elems > 1
        && let Some(i) = values.iter().position(|v| !v.is_finite())
    {
        bail!(
            "{ty} quantisation needs finite values, value {i} is {}",
            values[i]
        );
    }
    encode(values, out);
    Ok(())
}

/// The integer codes of a block of type `ty` (or of several blocks back to back), one per
/// element, before scales and minimums are applied, for comparing two quantisations code by
/// code: Q4_0's nibble − 8, Q4_1's nibble, Q5_0's 5 bits − 16, Q8_0's i8, Q2_K's 2 bits, Q3_K's
/// 3 bits − 4, Q4_K's and Q5_K's unsigned bits, Q6_K's 6 bits − 32, Q8_K's i8, TQ1_0's and
/// TQ2_0's trit − 1. For table types the code is the position in the value table (IQ4_NL and
/// IQ4_XS: 0..=15, ascending values), and for MXFP4 the E2M1 magnitude index with its sign
/// (−7..=7), so that neighbouring codes are one quantisation step apart.
///
/// `out` is replaced. Errors for types without integer codes and for partial blocks.
pub fn block_codes(ty: GgmlType, block: &[u8], out: &mut Vec<i32>) -> Result<()> {
    let Some(read) = code_reader(ty) else {
        bail!("GGUF type {ty} has no integer codes");
    };
    check_whole_blocks(ty, block.len())?;
    read(block, out);
    Ok(())
}

fn check_whole_blocks(ty: GgmlType, len: usize) -> Result<()> {
    let block = ty.block_bytes();
    ensure!(
        (len as u64).is_multiple_of(block),
        "GGUF type {ty} data of {len} bytes is not a whole number of {block}-byte blocks"
    );
    Ok(())
}

/// Decodes whole blocks into the output buffer (the caller has checked the length).
type Decoder = fn(&[u8], &mut Vec<f32>);
/// Appends the encoding of whole blocks of values.
type Encoder = fn(&[f32], &mut Vec<u8>);
/// Replaces the output with the codes of whole blocks.
type CodeReader = fn(&[u8], &mut Vec<i32>);

fn decoder(ty: GgmlType) -> Option<Decoder> {
    use GgmlType::*;
    Some(match ty {
        F32 => |b, o| decode(b, o, float::f32_value),
        F16 => |b, o| decode(b, o, float::f16_value),
        Bf16 => |b, o| decode(b, o, float::bf16_value),
        F64 => |b, o| decode(b, o, float::f64_value),
        I8 => |b, o| decode(b, o, float::i8_value),
        I16 => |b, o| decode(b, o, float::i16_value),
        I32 => |b, o| decode(b, o, float::i32_value),
        Q4_0 => |b, o| decode(b, o, legacy::dequantize_q4_0),
        Q4_1 => |b, o| decode(b, o, legacy::dequantize_q4_1),
        Q5_0 => |b, o| decode(b, o, legacy::dequantize_q5_0),
        Q5_1 => |b, o| decode(b, o, legacy::dequantize_q5_1),
        Q8_0 => |b, o| decode(b, o, legacy::dequantize_q8_0),
        Q2K => |b, o| decode(b, o, k::dequantize_q2_k),
        Q3K => |b, o| decode(b, o, k::dequantize_q3_k),
        Q4K => |b, o| decode(b, o, k::dequantize_q4_k),
        Q5K => |b, o| decode(b, o, k::dequantize_q5_k),
        Q6K => |b, o| decode(b, o, k::dequantize_q6_k),
        Q8K => |b, o| decode(b, o, k::dequantize_q8_k),
        Iq4Nl => |b, o| decode(b, o, iq::dequantize_iq4_nl),
        Iq4Xs => |b, o| decode(b, o, iq::dequantize_iq4_xs),
        Mxfp4 => |b, o| decode(b, o, iq::dequantize_mxfp4),
        Tq1_0 => |b, o| decode(b, o, ternary::dequantize_tq1_0),
        Tq2_0 => |b, o| decode(b, o, ternary::dequantize_tq2_0),
        Q8_1 | Iq2Xxs | Iq2Xs | Iq3Xxs | Iq1S | Iq3S | Iq2S | I64 | Iq1M => return None,
    })
}

fn encoder(ty: GgmlType) -> Option<Encoder> {
    use GgmlType::*;
    Some(match ty {
        F32 => |v, o| encode(v, o, float::f32_bytes),
        F16 => |v, o| encode(v, o, float::f16_bytes),
        Bf16 => |v, o| encode(v, o, float::bf16_bytes),
        Q4_0 => |v, o| encode(v, o, legacy::quantize_q4_0),
        Q4_1 => |v, o| encode(v, o, legacy::quantize_q4_1),
        Q5_0 => |v, o| encode(v, o, legacy::quantize_q5_0),
        Q5_1 => |v, o| encode(v, o, legacy::quantize_q5_1),
        Q8_0 => |v, o| encode(v, o, legacy::quantize_q8_0),
        Q2K => |v, o| encode(v, o, k_quantize::quantize_q2_k),
        Q3K => |v, o| encode(v, o, k_quantize::quantize_q3_k),
        Q4K => |v, o| encode(v, o, k_quantize::quantize_q4_k),
        Q5K => |v, o| encode(v, o, k_quantize::quantize_q5_k),
        Q6K => |v, o| encode(v, o, k_quantize::quantize_q6_k),
        _ => return None,
    })
}

fn code_reader(ty: GgmlType) -> Option<CodeReader> {
    use GgmlType::*;
    Some(match ty {
        Q4_0 => |b, o| codes(b, o, legacy::codes_q4_0),
        Q4_1 => |b, o| codes(b, o, legacy::codes_q4_1),
        Q5_0 => |b, o| codes(b, o, legacy::codes_q5_0),
        Q5_1 => |b, o| codes(b, o, legacy::codes_q5_1),
        Q8_0 => |b, o| codes(b, o, legacy::codes_q8_0),
        Q2K => |b, o| codes(b, o, k::codes_q2_k),
        Q3K => |b, o| codes(b, o, k::codes_q3_k),
        Q4K => |b, o| codes(b, o, k::codes_q4_k),
        Q5K => |b, o| codes(b, o, k::codes_q5_k),
        Q6K => |b, o| codes(b, o, k::codes_q6_k),
        Q8K => |b, o| codes(b, o, k::codes_q8_k),
        Iq4Nl => |b, o| codes(b, o, iq::codes_iq4_nl),
        Iq4Xs => |b, o| codes(b, o, iq::codes_iq4_xs),
        Mxfp4 => |b, o| codes(b, o, iq::codes_mxfp4),
        Tq1_0 => |b, o| codes(b, o, ternary::codes_tq1_0),
        Tq2_0 => |b, o| codes(b, o, ternary::codes_tq2_0),
        _ => return None,
    })
}

// The three drivers below see blocks as fixed-size arrays, so every index inside a block
// function is checked at compile time and a short tail (already refused) cannot be reached.

fn decode<const B: usize, const E: usize>(
    bytes: &[u8],
    out: &mut Vec<f32>,
    block: impl Fn(&[u8; B], &mut [f32; E]),
) {
    let (blocks, _) = bytes.as_chunks::<B>();
    out.clear();
    out.resize(blocks.len() * E, 0.0);
    let (ys, _) = out.as_chunks_mut::<E>();
    for (b, y) in blocks.iter().zip(ys) {
        block(b, y);
    }
}

fn encode<const E: usize, const B: usize>(
    values: &[f32],
    out: &mut Vec<u8>,
    block: impl Fn(&[f32; E], &mut [u8; B]),
) {
    let (xs, _) = values.as_chunks::<E>();
    let start = out.len();
    out.resize(start + xs.len() * B, 0);
    let (ys, _) = out[start..].as_chunks_mut::<B>();
    for (x, y) in xs.iter().zip(ys) {
        block(x, y);
    }
}

fn codes<const B: usize, const E: usize>(
    bytes: &[u8],
    out: &mut Vec<i32>,
    block: impl Fn(&[u8; B]) -> [i8; E],
) {
    let (blocks, _) = bytes.as_chunks::<B>();
    out.clear();
    out.reserve(blocks.len() * E);
    for b in blocks {
        out.extend(block(b).map(i32::from));
    }
}

/// The f16 at `at` in a block, as f32 (exact).
fn f16_at<const B: usize>(block: &[u8; B], at: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([block[at], block[at + 1]])).to_f32()
}

/// Writes `v` as the f16 at `at` the way ggml's `GGML_FP32_TO_FP16` does: round to nearest
/// even, and any NaN (only reachable from extreme inputs) becomes the quiet NaN 0x7E00.
fn put_f16<const B: usize>(block: &mut [u8; B], at: usize, v: f32) {
    let bits = if v.is_nan() {
        0x7E00 | (v.to_bits() >> 16) as u16 & 0x8000
    } else {
        half::f16::from_f32(v).to_bits()
    };
    let bytes = bits.to_le_bytes();
    block[at] = bytes[0];
    block[at + 1] = bytes[1];
}

/// The low nibble of each byte, then the high nibbles: the element order of Q4_0, Q4_1,
/// IQ4_NL, MXFP4 and of each 32-element group of IQ4_XS.
fn split_nibbles(qs: &[u8; 16]) -> [u8; 32] {
    let mut q = [0; 32];
    for (j, &b) in qs.iter().enumerate() {
        q[j] = b & 0x0F;
        q[j + 16] = b >> 4;
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bytes` dequantised as `t` (a test helper of every family's module).
    pub(super) fn deq(t: GgmlType, b: &[u8]) -> Vec<f32> {
        let mut y = Vec::new();
        dequantize(t, b, &mut y).unwrap();
        y
    }

    /// A deterministic byte stream (xorshift64*) for blocks of arbitrary content.
    pub(super) fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s >> 12;
                s ^= s << 25;
                s ^= s >> 27;
                (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect()
    }

    /// Weight-like values: sums of uniforms scaled to `sigma`, from the same stream.
    pub(super) fn weights(seed: u64, n: usize, sigma: f32) -> Vec<f32> {
        noise(seed, 4 * n)
            .chunks_exact(4)
            .map(|c| (c.iter().map(|&b| f32::from(b)).sum::<f32>() / 510.0 - 1.0) * 1.7 * sigma)
            .collect()
    }

    #[test]
    fn ids_names_and_sizes_are_ggmls() {
        assert_eq!(GgmlType::from_id(0), Some(GgmlType::F32));
        assert_eq!(GgmlType::from_id(12), Some(GgmlType::Q4K));
        assert_eq!(GgmlType::from_id(30), Some(GgmlType::Bf16));
        assert_eq!(GgmlType::from_id(39), Some(GgmlType::Mxfp4));
        for removed in [4, 5, 31, 32, 33, 36, 37, 38, 40, u32::MAX] {
            assert_eq!(GgmlType::from_id(removed), None, "{removed}");
        }
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
        }
        assert_eq!(GgmlType::Q4K.name(), "Q4_K");
        assert_eq!(GgmlType::Iq4Xs.name(), "IQ4_XS");
        assert_eq!(
            (GgmlType::Q6K.block_elems(), GgmlType::Q6K.block_bytes()),
            (256, 210)
        );
        assert!(!GgmlType::I32.is_float_weight() && GgmlType::Bf16.is_float_weight());
    }

    #[test]
    fn every_decoder_fills_whole_blocks_of_any_bytes() {
        let mut out = vec![1.0; 7];
        for t in GgmlType::ALL.into_iter().filter(|t| t.dequantizable()) {
            for blocks in [0, 1, 3] {
                let bytes = noise(t.id().into(), blocks * t.block_bytes() as usize);
                dequantize(t, &bytes, &mut out).unwrap();
                assert_eq!(out.len(), blocks * t.block_elems() as usize, "{t}");
            }
        }
    }

    #[test]
    fn every_code_reader_gives_one_code_per_element() {
        let mut out = Vec::new();
        for t in GgmlType::ALL.into_iter().filter(|t| t.has_codes()) {
            let bytes = noise(t.id().into(), 2 * t.block_bytes() as usize);
            block_codes(t, &bytes, &mut out).unwrap();
            assert_eq!(out.len(), 2 * t.block_elems() as usize, "{t}");
        }
    }

    #[test]
    fn every_encoder_writes_whole_blocks() {
        for t in GgmlType::ALL.into_iter().filter(|t| t.quantizable()) {
            let values = weights(3, 2 * t.block_elems() as usize, 0.02);
            let mut out = vec![9];
            quantize(t, &values, &mut out).unwrap();
            assert_eq!(out.len(), 1 + 2 * t.block_bytes() as usize, "{t}");
            assert_eq!(out[0], 9, "appends");
        }
    }

    #[test]
    fn partial_blocks_and_unsupported_types_are_refused() {
        let mut f = Vec::new();
        let err = dequantize(GgmlType::Q4_0, &[0; 19], &mut f).unwrap_err();
        assert!(
            err.to_string()
                .contains("not a whole number of 18-byte blocks"),
            "{err}"
        );
        assert!(dequantize(GgmlType::F16, &[0; 3], &mut f).is_err());
        let err = dequantize(GgmlType::Iq2Xxs, &[0; 66], &mut f).unwrap_err();
        assert_eq!(
            err.to_string(),
            "GGUF type IQ2_XXS cannot be dequantised by this tool"
        );
        assert!(dequantize(GgmlType::I64, &[0; 8], &mut f).is_err());

        let mut b = Vec::new();
        assert!(quantize(GgmlType::Q4K, &[0.0; 255], &mut b).is_err());
        assert!(quantize(GgmlType::Iq4Xs, &[0.0; 256], &mut b).is_err());
        assert!(quantize(GgmlType::Q8_0, &[f32::NAN; 32], &mut b).is_err());
        assert!(b.is_empty());
        quantize(GgmlType::F16, &[f32::INFINITY], &mut b).unwrap();
        assert_eq!(b, [0x00, 0x7C]);

        let mut c = Vec::new();
        assert!(block_codes(GgmlType::F32, &[0; 4], &mut c).is_err());
        assert!(block_codes(GgmlType::Q6K, &[0; 209], &mut c).is_err());
    }

    #[test]
    fn round_trips_stay_within_a_step() {
        // Bound: max |x − deq(q(x))| over a block, relative to the block's max |x|: half a step,
        // or a whole one for Q4_0 and Q5_0 whose extreme takes −8 (−16) so that the other
        // side stops at +7 (+15).
        for (t, bound) in [
            (GgmlType::Q4_0, 0.13),
            (GgmlType::Q4_1, 0.07),
            (GgmlType::Q5_0, 0.07),
            (GgmlType::Q5_1, 0.035),
            (GgmlType::Q8_0, 0.005),
            (GgmlType::Q2K, 0.5),
            (GgmlType::Q3K, 0.25),
            (GgmlType::Q4K, 0.1),
            (GgmlType::Q5K, 0.05),
            (GgmlType::Q6K, 0.025),
            (GgmlType::F16, 0.001),
            (GgmlType::Bf16, 0.004),
        ] {
            let n = t.block_elems().max(32) as usize;
            let x = weights(t.id().into(), 8 * n, 0.03);
            let mut q = Vec::new();
            quantize(t, &x, &mut q).unwrap();
            let mut y = Vec::new();
            dequantize(t, &q, &mut y).unwrap();
            for (xb, yb) in x.chunks(n).zip(y.chunks(n)) {
                let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                let err = xb
                    .iter()
                    .zip(yb)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(err <= bound * amax, "{t}: error {err} against max {amax}");
            }
        }
    }
}
