//! ggml's original 32-element block types Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0: an f16 scale (and
//! minimum), then the codes.
//!
//! Dequantisation repeats gguf-py's float32 expressions (`d * q`, `d * q + m`); quantisation
//! repeats llama.cpp's `quantize_row_*_ref`, which gguf-py mirrors bit for bit: pick the scale
//! from the block's extreme, multiply by its inverse, add a rounding offset and truncate.

use super::{f16_at, put_f16, split_nibbles};

/// The 5th bits of Q5_0/Q5_1: bit j of the little-endian u32 belongs to element j.
fn high_bits(qh: [u8; 4]) -> u32 {
    u32::from_le_bytes(qh)
}

fn five_bit_codes(qh: [u8; 4], qs: &[u8; 16]) -> [u8; 32] {
    let qh = high_bits(qh);
    let mut q = split_nibbles(qs);
    for (j, q) in q.iter_mut().enumerate() {
        *q |= (((qh >> j) & 1) as u8) << 4;
    }
    q
}

fn sub<const B: usize, const N: usize>(block: &[u8; B], at: usize) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&block[at..at + N]);
    a
}

pub(super) fn codes_q4_0(b: &[u8; 18]) -> [i8; 32] {
    split_nibbles(&sub(b, 2)).map(|q| q as i8 - 8)
}

pub(super) fn codes_q4_1(b: &[u8; 20]) -> [i8; 32] {
    split_nibbles(&sub(b, 4)).map(|q| q as i8)
}

pub(super) fn codes_q5_0(b: &[u8; 22]) -> [i8; 32] {
    five_bit_codes(sub(b, 2), &sub(b, 6)).map(|q| q as i8 - 16)
}

pub(super) fn codes_q5_1(b: &[u8; 24]) -> [i8; 32] {
    five_bit_codes(sub(b, 4), &sub(b, 8)).map(|q| q as i8)
}

pub(super) fn codes_q8_0(b: &[u8; 34]) -> [i8; 32] {
    sub::<34, 32>(b, 2).map(|q| q as i8)
}

fn scaled(d: f32, q: [i8; 32], y: &mut [f32; 32]) {
    for (y, q) in y.iter_mut().zip(q) {
        *y = d * f32::from(q);
    }
}

fn scaled_plus_min(d: f32, m: f32, q: [i8; 32], y: &mut [f32; 32]) {
    for (y, q) in y.iter_mut().zip(q) {
        *y = d * f32::from(q) + m;
    }
}

pub(super) fn dequantize_q4_0(b: &[u8; 18], y: &mut [f32; 32]) {
    scaled(f16_at(b, 0), codes_q4_0(b), y);
}

pub(super) fn dequantize_q4_1(b: &[u8; 20], y: &mut [f32; 32]) {
    scaled_plus_min(f16_at(b, 0), f16_at(b, 2), codes_q4_1(b), y);
}

pub(super) fn dequantize_q5_0(b: &[u8; 22], y: &mut [f32; 32]) {
    scaled(f16_at(b, 0), codes_q5_0(b), y);
}

pub(super) fn dequantize_q5_1(b: &[u8; 24], y: &mut [f32; 32]) {
    scaled_plus_min(f16_at(b, 0), f16_at(b, 2), codes_q5_1(b), y);
}

pub(super) fn dequantize_q8_0(b: &[u8; 34], y: &mut [f32; 32]) {
    scaled(f16_at(b, 0), codes_q8_0(b), y);
}

/// The value of largest magnitude (the first one on ties), as the reference loops find it.
fn signed_absmax(x: &[f32; 32]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(x: &[f32; 32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

fn inverse(d: f32) -> f32 {
    if d != 0.0 { 1.0 / d } else { 0.0 }
}

/// Codes of `(x − min) · id + offset`, truncated as C's cast to an integer type does, at most
/// `top`.
fn truncated_codes(x: &[f32; 32], min: f32, id: f32, offset: f32, top: u8) -> [u8; 32] {
    x.map(|v| (((v - min) * id + offset) as i8).clamp(0, top as i8) as u8)
}

fn put_nibbles(qs: &mut [u8], q: &[u8; 32]) {
    for j in 0..16 {
        qs[j] = (q[j] & 0x0F) | (q[j + 16] << 4);
    }
}

fn put_high_bits(qh: &mut [u8], q: &[u8; 32]) {
    let bits = q
        .iter()
        .enumerate()
        .fold(0u32, |h, (j, &q)| h | (u32::from(q >> 4) << j));
    qh.copy_from_slice(&bits.to_le_bytes());
}

// The reference scales subtract nothing (`x * id`) for the symmetric types; `- 0.0` is exact,
// so one helper serves both.

pub(super) fn quantize_q4_0(x: &[f32; 32], y: &mut [u8; 18]) {
    let d = signed_absmax(x) / -8.0;
    put_f16(y, 0, d);
    let q = truncated_codes(x, 0.0, inverse(d), 8.5, 15);
    put_nibbles(&mut y[2..], &q);
}

pub(super) fn quantize_q4_1(x: &[f32; 32], y: &mut [u8; 20]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    put_f16(y, 0, d);
    put_f16(y, 2, min);
    let q = truncated_codes(x, min, inverse(d), 0.5, 15);
    put_nibbles(&mut y[4..], &q);
}

pub(super) fn quantize_q5_0(x: &[f32; 32], y: &mut [u8; 22]) {
    let d = signed_absmax(x) / -16.0;
    put_f16(y, 0, d);
    let q = truncated_codes(x, 0.0, inverse(d), 16.5, 31);
    put_high_bits(&mut y[2..6], &q);
    put_nibbles(&mut y[6..], &q);
}

pub(super) fn quantize_q5_1(x: &[f32; 32], y: &mut [u8; 24]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    put_f16(y, 0, d);
    put_f16(y, 2, min);
    let q = truncated_codes(x, min, inverse(d), 0.5, 31);
    put_high_bits(&mut y[4..8], &q);
    put_nibbles(&mut y[8..], &q);
}

pub(super) fn quantize_q8_0(x: &[f32; 32], y: &mut [u8; 34]) {
    let amax = x
        .iter()
        .fold(0f32, |m, v| if m > v.abs() { m } else { v.abs() });
    let d = amax / 127.0;
    put_f16(y, 0, d);
    let id = inverse(d);
    for (q, &v) in y[2..].iter_mut().zip(x) {
        // roundf: halves away from zero, which is what Rust's `round` does.
        *q = (v * id).round() as i8 as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::deq;
    use super::super::{GgmlType, block_codes, quantize};

    #[test]
    fn q8_0_by_hand() {
        // d = 0.5 (f16 0x3800); codes 0, 1, -1, 127, -128, then zeros.
        let mut b = vec![0x00, 0x38, 0, 1, 0xFF, 0x7F, 0x80];
        b.resize(34, 0);
        let y = deq(GgmlType::Q8_0, &b);
        assert_eq!(y[..5], [0.0, 0.5, -0.5, 63.5, -64.0]);
        assert!(y[5..].iter().all(|&v| v == 0.0));
        let mut c = Vec::new();
        block_codes(GgmlType::Q8_0, &b, &mut c).unwrap();
        assert_eq!(c[..5], [0, 1, -1, 127, -128]);
    }

    #[test]
    fn q4_0_by_hand() {
        // d = -2 (f16 0xC000). Byte 0 = 0x9F: element 0 is nibble 15 → (15-8)·-2 = -14,
        // element 16 is nibble 9 → -2. Byte 1 = 0x08: element 1 → 0, element 17 → (0-8)·-2 = 16.
        let mut b = vec![0x00, 0xC0, 0x9F, 0x08];
        b.resize(18, 0x88);
        let y = deq(GgmlType::Q4_0, &b);
        assert_eq!(
            [y[0], y[16], y[1], y[17], y[2]],
            [-14.0, -2.0, 0.0, 16.0, -0.0]
        );
        let mut c = Vec::new();
        block_codes(GgmlType::Q4_0, &b, &mut c).unwrap();
        assert_eq!([c[0], c[16], c[1], c[17]], [7, 1, 0, -8]);
    }

    #[test]
    fn q4_1_and_q5_add_the_minimum_and_the_fifth_bit() {
        // Q4_1: d = 1, m = -0.5; element 0 nibble 3 → 2.5.
        let mut b = vec![0x00, 0x3C, 0x00, 0xB8, 0x03];
        b.resize(20, 0);
        assert_eq!(deq(GgmlType::Q4_1, &b)[..2], [2.5, -0.5]);
        // Q5_0: d = 1; qh bit 0 set, low nibble 15 → 31 - 16 = 15; element 1 → 0 - 16.
        let mut b = vec![0x00, 0x3C, 0x01, 0, 0, 0, 0x0F];
        b.resize(22, 0);
        assert_eq!(deq(GgmlType::Q5_0, &b)[..2], [15.0, -16.0]);
        // Q5_1: d = 0.5, m = 1; qh bit 31 set → element 31 = 16·0.5 + 1.
        let mut b = vec![0x00, 0x38, 0x00, 0x3C, 0, 0, 0, 0x80];
        b.resize(24, 0);
        assert_eq!(deq(GgmlType::Q5_1, &b)[30..], [1.0, 9.0]);
    }

    #[test]
    fn quantisers_pick_the_reference_scale() {
        // Q4_0 scales by the signed extreme / -8: max -4 → d = 0.5, and -4 → code 0 (-8).
        let mut x = [0.25f32; 32];
        x[5] = -4.0;
        let mut b = Vec::new();
        quantize(GgmlType::Q4_0, &x, &mut b).unwrap();
        assert_eq!(b[..2], [0x00, 0x38]);
        let mut c = Vec::new();
        block_codes(GgmlType::Q4_0, &b, &mut c).unwrap();
        // 0.25 / 0.5 + 8.5 = 9 → code 1; -4 / 0.5 + 8.5 = 0.5 → code -8.
        assert_eq!((c[5], c[0]), (-8, 1));
        // Q8_0 of an all-zero block: d = 0 and codes 0.
        b.clear();
        quantize(GgmlType::Q8_0, &[0.0; 32], &mut b).unwrap();
        assert_eq!(b, [0; 34]);
    }
}
