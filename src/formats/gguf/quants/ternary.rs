//! The ternary types TQ1_0 and TQ2_0 (BitNet-style weights in {−1, 0, 1} under an f16 scale).
//!
//! TQ1_0 packs five trits per byte as a fixed-point fraction of 243 (a trit is recovered by
//! multiplying by a power of three in u8 arithmetic and keeping the top of `3 · q`), four in
//! each byte of its last four; TQ2_0 uses two bits per trit. Decoding is gguf-py's `d * (t − 1)`.

use super::f16_at;

/// The trit in position `n` (0-based, most significant first) of a TQ1_0 byte.
fn trit(byte: u8, n: usize) -> i8 {
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    let q = byte.wrapping_mul(POW3[n]);
    ((u16::from(q) * 3) >> 8) as i8 - 1
}

/// TQ1_0's element order: 32 bytes × 5 trits (trit-major), 16 bytes × 5 trits, then the last
/// 4 bytes × 4 trits.
pub(super) fn codes_tq1_0(b: &[u8; 54]) -> [i8; 256] {
    let mut q = [0; 256];
    let mut e = 0;
    for (bytes, trits) in [(&b[..32], 5), (&b[32..48], 5), (&b[48..52], 4)] {
        for n in 0..trits {
            for &byte in bytes {
                q[e] = trit(byte, n);
                e += 1;
            }
        }
    }
    q
}

/// TQ2_0's element order: element `128h + 32s + l` is bits `2s..2s+2` of byte `32h + l`.
pub(super) fn codes_tq2_0(b: &[u8; 66]) -> [i8; 256] {
    std::array::from_fn(|e| {
        let (h, s, l) = (e / 128, (e / 32) % 4, e % 32);
        ((b[32 * h + l] >> (2 * s)) & 3) as i8 - 1
    })
}

fn scaled(d: f32, q: [i8; 256], y: &mut [f32; 256]) {
    for (y, q) in y.iter_mut().zip(q) {
        *y = d * f32::from(q);
    }
}

pub(super) fn dequantize_tq1_0(b: &[u8; 54], y: &mut [f32; 256]) {
    scaled(f16_at(b, 52), codes_tq1_0(b), y);
}

pub(super) fn dequantize_tq2_0(b: &[u8; 66], y: &mut [f32; 256]) {
    scaled(f16_at(b, 64), codes_tq2_0(b), y);
}

#[cfg(test)]
mod tests {
    use super::super::{GgmlType, dequantize};

    #[test]
    fn ternary_by_hand() {
        // TQ1_0: a byte holding trits t0..t4 is ceil((Σ t_i·3^(4−i)) · 256 / 243). Trits
        // (2, 0, 1, 0, 0) → 2·81 + 9 = 171 → ceil(171·256/243) = 181.
        let mut b = vec![0u8; 54];
        b[0] = 181;
        b[52..].copy_from_slice(&[0x00, 0x40]); // d = 2
        let mut y = Vec::new();
        dequantize(GgmlType::Tq1_0, &b, &mut y).unwrap();
        // Element 32n is trit n of byte 0: (2, 0, 1, 0, 0) − 1, times 2.
        assert_eq!(
            [y[0], y[32], y[64], y[96], y[128]],
            [2.0, -2.0, 0.0, -2.0, -2.0]
        );

        // TQ2_0: byte 0 = 0b10_01_00_10: elements 0, 32, 64, 96 → 2, 0, 1, 2 → −1 gives 1, −1, 0, 1.
        let mut b = vec![0u8; 66];
        b[0] = 0b1001_0010;
        b[64..].copy_from_slice(&[0x00, 0x3C]);
        dequantize(GgmlType::Tq2_0, &b, &mut y).unwrap();
        assert_eq!(
            [y[0], y[32], y[64], y[96], y[1]],
            [1.0, -1.0, 0.0, 1.0, -1.0]
        );
    }
}
