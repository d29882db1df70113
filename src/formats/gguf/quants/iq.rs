//! The 4-bit table types IQ4_NL, IQ4_XS and MXFP4: each code indexes a fixed table of 16
//! integer values (a non-linear grid for IQ4, the doubled E2M1 values for MXFP4) which a block
//! or sub-block scale multiplies.
//!
//! Decoding follows gguf-py: `d * table[q]` in f32, with IQ4_XS forming `d * (ls − 32)` first and
//! MXFP4 using ggml's `e8m0_to_fp32_half` for its power-of-two scale.

use super::{f16_at, split_nibbles};

/// IQ4_NL's and IQ4_XS's value table (`kvalues_iq4nl`), ascending.
pub const IQ4_NL_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// MXFP4's E2M1 values, doubled so they are integers (`kvalues_mxfp4`): codes 0–7 are
/// 0, 0.5, 1, 1.5, 2, 3, 4, 6 and codes 8–15 their negatives.
pub const MXFP4_VALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

fn looked_up(d: f32, table: &[i8; 16], q: &[u8], y: &mut [f32]) {
    for (y, &q) in y.iter_mut().zip(q) {
        *y = d * f32::from(table[usize::from(q & 0x0F)]);
    }
}

fn qs16<const B: usize>(b: &[u8; B], at: usize) -> [u8; 16] {
    std::array::from_fn(|j| b[at + j])
}

pub(super) fn codes_iq4_nl(b: &[u8; 18]) -> [i8; 32] {
    split_nibbles(&qs16(b, 2)).map(|q| q as i8)
}

pub(super) fn dequantize_iq4_nl(b: &[u8; 18], y: &mut [f32; 32]) {
    looked_up(f16_at(b, 0), &IQ4_NL_VALUES, &split_nibbles(&qs16(b, 2)), y);
}

/// IQ4_XS: f16 d, u16 of 2-bit scale tops, 4 bytes of 4-bit scale bottoms, 8 × 16 bytes of
/// nibbles (each 16 bytes one 32-element group, low nibbles first).
fn iq4_xs_nibbles(b: &[u8; 136]) -> [u8; 256] {
    let mut q = [0; 256];
    for (g, group) in q.chunks_exact_mut(32).enumerate() {
        group.copy_from_slice(&split_nibbles(&qs16(b, 8 + 16 * g)));
    }
    q
}

pub(super) fn codes_iq4_xs(b: &[u8; 136]) -> [i8; 256] {
    iq4_xs_nibbles(b).map(|q| q as i8)
}

pub(super) fn dequantize_iq4_xs(b: &[u8; 136], y: &mut [f32; 256]) {
    let d = f16_at(b, 0);
    let high = u16::from_le_bytes([b[2], b[3]]);
    let q = iq4_xs_nibbles(b);
    for (g, (y, q)) in y.chunks_exact_mut(32).zip(q.chunks_exact(32)).enumerate() {
        let low = (b[4 + g / 2] >> (4 * (g % 2))) & 0x0F;
        let top = ((high >> (2 * g)) & 3) as u8;
        let dl = d * f32::from((low | (top << 4)) as i8 - 32);
        looked_up(dl, &IQ4_NL_VALUES, q, y);
    }
}

/// ggml's `ggml_e8m0_to_fp32_half`: 2^(e − 128), exact, subnormal below e = 2.
fn e8m0_half(e: u8) -> f32 {
    if e < 2 {
        f32::from_bits(0x0020_0000 << e)
    } else {
        f32::from_bits(u32::from(e - 1) << 23)
    }
}

pub(super) fn codes_mxfp4(b: &[u8; 17]) -> [i8; 32] {
    // Sign and magnitude index, so that adjacent codes are adjacent grid points.
    split_nibbles(&qs16(b, 1)).map(|q| {
        let magnitude = (q & 7) as i8;
        if q & 8 == 0 { magnitude } else { -magnitude }
    })
}

pub(super) fn dequantize_mxfp4(b: &[u8; 17], y: &mut [f32; 32]) {
    looked_up(
        e8m0_half(b[0]),
        &MXFP4_VALUES,
        &split_nibbles(&qs16(b, 1)),
        y,
    );
}

#[cfg(test)]
mod tests {
    use super::super::tests::deq;
    use super::super::{GgmlType, block_codes};

    #[test]
    fn iq4_nl_by_hand() {
        // d = 0.5; byte 0 = 0xF0: element 0 → table[0] = −127 → −63.5, element 16 → table[15]
        // = 113 → 56.5; byte 1 = 0x78: element 1 → table[8] = 1 → 0.5, element 17 → −10 → −5.
        let mut b = vec![0x00, 0x38, 0xF0, 0x78];
        b.resize(18, 0);
        let y = deq(GgmlType::Iq4Nl, &b);
        assert_eq!([y[0], y[16], y[1], y[17]], [-63.5, 56.5, 0.5, -5.0]);
        let mut c = Vec::new();
        block_codes(GgmlType::Iq4Nl, &b, &mut c).unwrap();
        assert_eq!([c[0], c[16], c[1], c[17]], [0, 15, 8, 7]);
    }

    #[test]
    fn iq4_xs_by_hand() {
        // d = 1; group 0 scale: low nibble 1 (byte 4), top bits 2 (u16 bits 0..2) → 33 − 32 = 1;
        // group 1: low nibble 0 (high half of byte 4), top 0 → −32; group 7: top bits 3 → 48 − 32.
        let mut b = vec![0u8; 136];
        b[..2].copy_from_slice(&[0x00, 0x3C]);
        b[2..4].copy_from_slice(&(2u16 | (3 << 14)).to_le_bytes());
        b[4] = 0x01;
        b[8] = 0xC3; // group 0: element 0 → table[3] = −65, element 16 → table[12] = 53
        b[8 + 16] = 0x09; // group 1: element 32 → table[9] = 13
        b[8 + 7 * 16] = 0x0F; // group 7: element 224 → 113
        let y = deq(GgmlType::Iq4Xs, &b);
        assert_eq!([y[0], y[16], y[32], y[224]], [-65.0, 53.0, -416.0, 1808.0]);
    }

    #[test]
    fn mxfp4_by_hand() {
        // e = 128 → half-scale 2^0 = 1: code 5 → doubled value 6 (E2M1 3.0 times 2^(128−127)),
        // code 13 → −6.
        let mut b = vec![128u8, 0xD5];
        b.resize(17, 0);
        let y = deq(GgmlType::Mxfp4, &b);
        assert_eq!([y[0], y[16], y[1]], [6.0, -6.0, 0.0]);
        let mut c = Vec::new();
        block_codes(GgmlType::Mxfp4, &b, &mut c).unwrap();
        assert_eq!([c[0], c[16]], [5, -5]);
        // e = 0 and 1 are the subnormals 2^-128 and 2^-127.
        assert_eq!(super::e8m0_half(0), 2f32.powi(-128));
        assert_eq!(super::e8m0_half(1), 2f32.powi(-127));
        assert_eq!(super::e8m0_half(255), 2f32.powi(127));
    }
}
