//! The K-quant super-blocks (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K): 256 elements in sub-blocks of
//! 16 or 32, each sub-block with its own small integer scale (and minimum) under the block's f16
//! scales. Unpacking the codes and decoding to f32.
//!
//! Element order and arithmetic follow gguf-py's `dequantize_blocks` (which agree with
//! llama.cpp's `dequantize_row_*`): the sub-block scale is formed first (`d * sc`, `dmin * m`),
//! then `scale * q - min`, each step rounded to f32. Q8_K is not in gguf-py; it is
//! llama.cpp's `d * q` with an f32 `d`.

use super::f16_at;

/// The 6-bit scales and minimums of Q4_K and Q5_K's eight sub-blocks, packed in 12 bytes:
/// bytes 0–3 hold scales 0–3 (low 6 bits) and the top bits of scales 4–7, bytes 4–7 likewise
/// for minimums, bytes 8–11 the low nibbles of scales and minimums 4–7.
pub(super) fn scales_and_mins(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut m) = ([0; 8], [0; 8]);
    for j in 0..4 {
        sc[j] = s[j] & 0x3F;
        m[j] = s[j + 4] & 0x3F;
        sc[j + 4] = (s[j + 8] & 0x0F) | ((s[j] >> 2) & 0x30);
        m[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 2) & 0x30);
    }
    (sc, m)
}

/// Q3_K's sixteen 6-bit scales packed in 12 bytes (low nibbles in bytes 0–7, two high bits each
/// in bytes 8–11), minus 32.
fn q3_k_scales(s: &[u8]) -> [i8; 16] {
    let mut out = [0; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let low = (s[i % 8] >> (4 * (i / 8))) & 0x0F;
        let high = (s[8 + i % 4] >> (2 * (i / 4))) & 0x03;
        *o = (low | (high << 4)) as i8 - 32;
    }
    out
}

/// Two-bit fields as Q2_K and Q3_K pack them: element `128h + 32s + l` is bits `2s..2s+2` of
/// byte `32h + l`.
fn crumbs(qs: &[u8]) -> [u8; 256] {
    let mut q = [0; 256];
    for (e, q) in q.iter_mut().enumerate() {
        let (h, s, l) = (e / 128, (e / 32) % 4, e % 32);
        *q = (qs[32 * h + l] >> (2 * s)) & 3;
    }
    q
}

/// Nibbles as Q4_K and Q5_K pack them: element `64c + 32h + l` is nibble `h` of byte `32c + l`.
fn nibbles(qs: &[u8]) -> [u8; 256] {
    let mut q = [0; 256];
    for (e, q) in q.iter_mut().enumerate() {
        let (c, h, l) = (e / 64, (e / 32) % 2, e % 32);
        *q = (qs[32 * c + l] >> (4 * h)) & 0x0F;
    }
    q
}

/// One bit per element: element `32b + l` is bit `b` of byte `l` (Q3_K's hmask, Q5_K's qh).
fn bit_planes(bits: &[u8]) -> [u8; 256] {
    let mut q = [0; 256];
    for (e, q) in q.iter_mut().enumerate() {
        *q = (bits[e % 32] >> (e / 32)) & 1;
    }
    q
}

pub(super) fn codes_q2_k(b: &[u8; 84]) -> [i8; 256] {
    crumbs(&b[16..80]).map(|q| q as i8)
}

pub(super) fn codes_q3_k(b: &[u8; 110]) -> [i8; 256] {
    let high = bit_planes(&b[..32]);
    let mut q = crumbs(&b[32..96]).map(|q| q as i8);
    // The offset is 4 when the high bit is clear: codes run -4..=3.
    for (q, h) in q.iter_mut().zip(high) {
        *q -= 4 * (1 - h as i8);
    }
    q
}

pub(super) fn codes_q4_k(b: &[u8; 144]) -> [i8; 256] {
    nibbles(&b[16..]).map(|q| q as i8)
}

pub(super) fn codes_q5_k(b: &[u8; 176]) -> [i8; 256] {
    let high = bit_planes(&b[16..48]);
    let mut q = nibbles(&b[48..]).map(|q| q as i8);
    for (q, h) in q.iter_mut().zip(high) {
        *q |= (h as i8) << 4;
    }
    q
}

pub(super) fn codes_q6_k(b: &[u8; 210]) -> [i8; 256] {
    let (ql, qh) = (&b[..128], &b[128..192]);
    let mut q = [0; 256];
    for (e, q) in q.iter_mut().enumerate() {
        // Element 128h + 64n + l (l < 64) takes nibble n of ql[64h + l] and, as element
        // 128h + 32s + l' (l' < 32), bits 2s..2s+2 of qh[32h + l'].
        let (h, r) = (e / 128, e % 128);
        let low = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0F;
        let high = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
        *q = (low | (high << 4)) as i8 - 32;
    }
    q
}

pub(super) fn codes_q8_k(b: &[u8; 292]) -> [i8; 256] {
    let mut q = [0; 256];
    for (q, &byte) in q.iter_mut().zip(&b[4..260]) {
        *q = byte as i8;
    }
    q
}

/// `scale[g] * q - min[g]` for sub-blocks of `E / G` elements, or `scale[g] * q` without
/// minimums (gguf-py has no `- 0` there, and `-0.0 - 0` would not be `-0.0`).
fn affine<const G: usize>(
    scale: [f32; G],
    min: Option<[f32; G]>,
    q: [i8; 256],
    y: &mut [f32; 256],
) {
    let per = 256 / G;
    for (e, (y, q)) in y.iter_mut().zip(q).enumerate() {
        let v = scale[e / per] * f32::from(q);
        *y = match min {
            Some(m) => v - m[e / per],
            None => v,
        };
    }
}

fn mul<const G: usize>(d: f32, by: [u8; G]) -> [f32; G] {
    by.map(|s| d * f32::from(s))
}

pub(super) fn dequantize_q2_k(b: &[u8; 84], y: &mut [f32; 256]) {
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    let sc: [u8; 16] = std::array::from_fn(|j| b[j]);
    let scale = mul(d, sc.map(|s| s & 0x0F));
    let min = mul(dmin, sc.map(|s| s >> 4));
    affine(scale, Some(min), codes_q2_k(b), y);
}

pub(super) fn dequantize_q3_k(b: &[u8; 110], y: &mut [f32; 256]) {
    let d = f16_at(b, 108);
    let scale = q3_k_scales(&b[96..108]).map(|s| d * f32::from(s));
    affine(scale, None, codes_q3_k(b), y);
}

pub(super) fn dequantize_q4_k(b: &[u8; 144], y: &mut [f32; 256]) {
    let (sc, m) = scales_and_mins(&b[4..16]);
    affine(
        mul(f16_at(b, 0), sc),
        Some(mul(f16_at(b, 2), m)),
        codes_q4_k(b),
        y,
    );
}

pub(super) fn dequantize_q5_k(b: &[u8; 176], y: &mut [f32; 256]) {
    let (sc, m) = scales_and_mins(&b[4..16]);
    affine(
        mul(f16_at(b, 0), sc),
        Some(mul(f16_at(b, 2), m)),
        codes_q5_k(b),
        y,
    );
}

pub(super) fn dequantize_q6_k(b: &[u8; 210], y: &mut [f32; 256]) {
    let d = f16_at(b, 208);
    let scale: [f32; 16] = std::array::from_fn(|j| d * f32::from(b[192 + j] as i8));
    affine(scale, None, codes_q6_k(b), y);
}

pub(super) fn dequantize_q8_k(b: &[u8; 292], y: &mut [f32; 256]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    affine([d], None, codes_q8_k(b), y);
}

#[cfg(test)]
mod tests {
    use super::super::tests::deq;
    use super::super::{GgmlType, block_codes};

    fn codes(t: GgmlType, b: &[u8]) -> Vec<i32> {
        let mut c = Vec::new();
        block_codes(t, b, &mut c).unwrap();
        c
    }

    #[test]
    fn q4_k_by_hand() {
        // d = 0.5, dmin = 0.25. Sub-block 0: scale 3, min 2 (bytes 4, 8 of the scale field).
        // Sub-block 4: scale 0x25 = 37 (low nibble 5 in byte 12, top bits 10 in byte 4),
        // min 0x13 = 19 (nibble 3 in byte 12, top bits 01 in byte 8).
        let mut b = vec![0u8; 144];
        b[..4].copy_from_slice(&[0x00, 0x38, 0x00, 0x34]);
        b[4] = 3 | (0b10 << 6);
        b[8] = 2 | (0b01 << 6);
        b[12] = 0x35;
        // Codes: element 0 = 9 (low nibble of qs[0]), element 32 = 4 (its high nibble);
        // element 128 = 7 (low nibble of qs[64], sub-block 4).
        b[16] = 0x49;
        b[16 + 64] = 0x07;
        let y = deq(GgmlType::Q4K, &b);
        // 0.5·3·9 − 0.25·2 = 13; sub-block 1 (scale 0, min 0) gives 0·4 − 0 = 0;
        // 0.5·37·7 − 0.25·19 = 129.5 − 4.75 = 124.75; element 129 is 0·18.5 − 4.75.
        assert_eq!(
            [y[0], y[1], y[32], y[128], y[129]],
            [13.0, -0.5, 0.0, 124.75, -4.75]
        );
        let c = codes(GgmlType::Q4K, &b);
        assert_eq!([c[0], c[32], c[128], c[255]], [9, 4, 7, 0]);
    }

    #[test]
    fn q6_k_by_hand() {
        // d = 2 (f16 0x4000) at byte 208; scales[0] = -3, scales[2] = 5 at bytes 192…
        let mut b = vec![0u8; 210];
        b[208..].copy_from_slice(&[0x00, 0x40]);
        b[192] = (-3i8) as u8;
        b[194] = 5;
        // Element 0: low nibble of ql[0] = 0xF, high bits (qh[0] & 3) = 2 → 47 − 32 = 15.
        // Element 32: low nibble of ql[32] = 1, bits 2..4 of qh[0] = 3 → 49 − 32 = 17.
        b[0] = 0x0F;
        b[32] = 0x01;
        b[128] = 0b0000_1110;
        let y = deq(GgmlType::Q6K, &b);
        // 2·(−3)·15 = −90; element 1 has code −32: 2·(−3)·(−32) = 192; 2·5·17 = 170.
        assert_eq!([y[0], y[1], y[32]], [-90.0, 192.0, 170.0]);
        let c = codes(GgmlType::Q6K, &b);
        assert_eq!([c[0], c[1], c[32], c[64]], [15, -32, 17, -32]);
    }

    #[test]
    fn q8_k_by_hand() {
        // Q8_K: f32 d = 0.125, 256 i8 codes, 16 i16 sums (ignored when decoding).
        let mut b = vec![0u8; 292];
        b[..4].copy_from_slice(&0.125f32.to_le_bytes());
        b[4] = 8;
        b[5] = 0x80;
        b[259] = 0x7F;
        b[260..].fill(0xAB);
        let y = deq(GgmlType::Q8K, &b);
        assert_eq!([y[0], y[1], y[2], y[255]], [1.0, -16.0, 0.0, 15.875]);
        assert_eq!(codes(GgmlType::Q8K, &b)[..2], [8, -128]);
    }

    #[test]
    fn q2_k_q3_k_q5_k_by_hand() {
        // Q2_K: scales[0] = 0x21 (scale 1, min 2); d = 1, dmin = 0.5; qs[0] = 0b11_10_01_11:
        // element 0 = 3, 32 = 1, 64 = 2, 96 = 3; sub-block 2 (elements 32..48) has scale 0.
        let mut b = vec![0u8; 84];
        b[0] = 0x21;
        b[16] = 0b1110_0111;
        b[80..].copy_from_slice(&[0x00, 0x3C, 0x00, 0x38]);
        let y = deq(GgmlType::Q2K, &b);
        assert_eq!([y[0], y[1], y[32]], [2.0, -1.0, 0.0]);
        assert_eq!(codes(GgmlType::Q2K, &b)[..1], [3]);
        assert_eq!(codes(GgmlType::Q2K, &b)[96], 3);

        // Q3_K: d = 1; scale 0 = (low 1 | high 2 << 4) − 32 = 1; element 0 has crumb 2 and its
        // hmask bit set → 2; element 1 crumb 0, bit clear → −4.
        let mut b = vec![0u8; 110];
        b[0] = 1;
        b[32] = 2;
        b[96] = 1;
        b[104] = 2;
        b[108..].copy_from_slice(&[0x00, 0x3C]);
        let y = deq(GgmlType::Q3K, &b);
        assert_eq!([y[0], y[1]], [2.0, -4.0]);
        // Scale 1 (elements 16..32) is (0 | 0) − 32: −32 · −4 = 128.
        assert_eq!(y[16], 128.0);
        assert_eq!(codes(GgmlType::Q3K, &b)[..2], [2, -4]);

        // Q5_K: d = 1, dmin = 0; scale 0 = 1; element 0: nibble 3 and qh bit 0 → 19;
        // element 32: bit 1 of qh[0] → 16.
        let mut b = vec![0u8; 176];
        b[..4].copy_from_slice(&[0x00, 0x3C, 0x00, 0x00]);
        b[4] = 1;
        b[16] = 0b11;
        b[48] = 0x03;
        let y = deq(GgmlType::Q5K, &b);
        assert_eq!(y[0], 19.0);
        assert_eq!(codes(GgmlType::Q5K, &b)[32], 16);
    }
}
