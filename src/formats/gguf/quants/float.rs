//! The plain number types (F32, F16, BF16, F64 and the integers I8, I16, I32), one element per
//! "block", and their conversions to and from f32.
//!
//! gguf-py reads F32 and F16 with numpy views and casts, BF16 by shifting its bits into the top
//! half of an f32; writing F16 and BF16 it rounds to nearest even with numpy's NaN rules. These
//! functions reproduce those bit for bit, NaN payloads included where gguf-py defines them.

pub(super) fn f32_value(b: &[u8; 4], y: &mut [f32; 1]) {
    y[0] = f32::from_le_bytes(*b);
}

pub(super) fn f16_value(b: &[u8; 2], y: &mut [f32; 1]) {
    y[0] = half::f16::from_bits(u16::from_le_bytes(*b)).to_f32();
}

pub(super) fn bf16_value(b: &[u8; 2], y: &mut [f32; 1]) {
    y[0] = f32::from_bits(u32::from(u16::from_le_bytes(*b)) << 16);
}

pub(super) fn f64_value(b: &[u8; 8], y: &mut [f32; 1]) {
    y[0] = f64::from_le_bytes(*b) as f32;
}

pub(super) fn i8_value(b: &[u8; 1], y: &mut [f32; 1]) {
    y[0] = f32::from(b[0] as i8);
}

pub(super) fn i16_value(b: &[u8; 2], y: &mut [f32; 1]) {
    y[0] = f32::from(i16::from_le_bytes(*b));
}

pub(super) fn i32_value(b: &[u8; 4], y: &mut [f32; 1]) {
    y[0] = i32::from_le_bytes(*b) as f32;
}

pub(super) fn f32_bytes(x: &[f32; 1], y: &mut [u8; 4]) {
    *y = x[0].to_le_bytes();
}

/// numpy's `astype(float16)`: round to nearest even; a NaN keeps its sign and the top ten bits
/// of its payload, and stays a NaN (payload 1) when those are all zero.
pub(super) fn f16_bytes(x: &[f32; 1], y: &mut [u8; 2]) {
    let v = x[0];
    let bits = if v.is_nan() {
        let b = v.to_bits();
        let payload = ((b & 0x007F_FFFF) >> 13) as u16;
        ((b >> 16) as u16 & 0x8000) | 0x7C00 | payload.max(1)
    } else {
        half::f16::from_f32(v).to_bits()
    };
    *y = bits.to_le_bytes();
}

/// gguf-py's BF16 quantiser (ggml's `ggml_compute_fp32_to_bf16`): a NaN becomes quiet, anything
/// else rounds to nearest even.
pub(super) fn bf16_bytes(x: &[f32; 1], y: &mut [u8; 2]) {
    let n = x[0].to_bits();
    let bits = if n & 0x7FFF_FFFF > 0x7F80_0000 {
        (n >> 16) | 64
    } else {
        ((u64::from(n) + 0x7FFF + u64::from((n >> 16) & 1)) >> 16) as u32
    };
    *y = (bits as u16).to_le_bytes();
}

#[cfg(test)]
mod tests {
    use super::super::{GgmlType, dequantize, quantize};

    fn round_trip(t: GgmlType, v: f32) -> (Vec<u8>, f32) {
        let mut b = Vec::new();
        quantize(t, &[v], &mut b).unwrap();
        let mut y = Vec::new();
        dequantize(t, &b, &mut y).unwrap();
        (b, y[0])
    }

    #[test]
    fn halves_round_to_nearest_even() {
        // 1 + 2^-11 is halfway between f16 1.0 and its successor: ties go to the even 1.0.
        assert_eq!(
            round_trip(GgmlType::F16, 1.0 + 2f32.powi(-11)),
            (vec![0x00, 0x3C], 1.0)
        );
        assert_eq!(round_trip(GgmlType::F16, 65520.0).1, f32::INFINITY);
        // bf16: 1 + 2^-8 ties to 1.0; 1 + 3·2^-8 ties up to 1 + 2^-6.
        assert_eq!(
            round_trip(GgmlType::Bf16, 1.0 + 2f32.powi(-8)),
            (vec![0x80, 0x3F], 1.0)
        );
        assert_eq!(
            round_trip(GgmlType::Bf16, 1.0 + 3.0 * 2f32.powi(-8)).1,
            1.0 + 2f32.powi(-6)
        );
    }

    #[test]
    fn nans_follow_numpy_and_ggml() {
        let signalling = f32::from_bits(0x7F80_0001);
        assert_eq!(round_trip(GgmlType::F16, signalling).0, [0x01, 0x7C]);
        assert_eq!(round_trip(GgmlType::Bf16, signalling).0, [0xC0, 0x7F]);
        assert_eq!(
            round_trip(GgmlType::Bf16, f32::from_bits(0xFFA0_1234)).0,
            [0xE0, 0xFF]
        );
    }

    #[test]
    fn integers_and_doubles_become_nearest_f32() {
        let mut y = Vec::new();
        dequantize(GgmlType::I8, &[0xFF, 0x7F], &mut y).unwrap();
        assert_eq!(y, [-1.0, 127.0]);
        dequantize(GgmlType::I16, &(-300i16).to_le_bytes(), &mut y).unwrap();
        assert_eq!(y, [-300.0]);
        dequantize(GgmlType::I32, &16_777_217i32.to_le_bytes(), &mut y).unwrap();
        assert_eq!(y, [16_777_216.0]);
        dequantize(GgmlType::F64, &0.1f64.to_le_bytes(), &mut y).unwrap();
        assert_eq!(y, [0.1f32]);
        dequantize(GgmlType::Bf16, &[0x80, 0xBF], &mut y).unwrap();
        assert_eq!(y, [-1.0]);
    }
}
