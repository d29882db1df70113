//! llama.cpp's K-quant reference quantisers, Q4_K and Q6_K, for the lab's GGUF writer.
//!
//! `llama-quantize` without an importance matrix stores K-quant blocks with
//! `quantize_row_q4_K_ref` and `quantize_row_q6_K_ref` (ggml's `src/ggml-quants.c`). This is a
//! clean-room port of those functions and their helpers, written from the C reference alone and
//! independent of `weight-audit`'s own quantisers, so the lab can serve as an oracle for them.
//!
//! The search for scales is sensitive to rounding: a scale one ulp off picks other codes. So
//! the float operations are the C ones in the C order, in f32, without fused multiply-add (as
//! llama.cpp's x86-64 build of ggml-base compiles them); `tests/data/gguf/q4_k.bin` and
//! `q6_k.bin`, made by that C, pin the result byte for byte.

use anyhow::{Result, bail};
use half::f16;

/// Values per super-block.
pub const QK_K: usize = 256;
/// Bytes of a Q4_K block: d, dmin (f16), 12 bytes of 6-bit scales and mins, 128 of nibbles.
pub const Q4_K_BYTES: usize = 144;
/// Bytes of a Q6_K block: 128 low nibbles, 64 bytes of high bit pairs, 16 i8 scales, d (f16).
pub const Q6_K_BYTES: usize = 210;

/// ggml's `GROUP_MAX_EPS`: below this a group counts as all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: adding 1.5·2²³ leaves the rounded integer in the low mantissa bits.
/// Reproduced bit for bit rather than with `round_ties_even`, so that even out-of-range or
/// non-finite inputs (where the C only asserts in debug builds) give the C's answer.
fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// `GGML_FP32_TO_FP16` (round to nearest even, like x86's F16C) and back.
fn to_f16(x: f32) -> f16 {
    f16::from_f32(x)
}

/// `make_qkx2_quants` with `use_mad = false`, the only way Q4_K calls it: codes `l` in
/// 0..=`nmax` with `x ≈ scale·l − min`, chosen by least weighted squared error over a sweep of
/// `nstep + 1` trial scales. Returns (scale, min); `l` holds the codes.
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    // the min is subtracted as a non-negative offset, so it can never exceed zero
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l[..n].fill(0);
        return (0.0, -min);
    }
    let code = |iscale: f32, v: f32, min: f32| nearest_int(iscale * (v - min)).clamp(0, nmax) as u8;
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        l[i] = code(iscale, x[i], min);
        let diff = scale * f32::from(l[i]) + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            laux[i] = code(iscale, x[i], min);
            let q = f32::from(laux[i]);
            let w = weights[i];
            sum_l += w * q;
            sum_l2 += w * q * q;
            sum_xl += w * q * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            // the weighted least-squares fit of scale and offset to these codes
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                let diff = this_scale * f32::from(laux[i]) + this_min - x[i];
                cur_error += weights[i] * (diff * diff);
            }
            if cur_error < best_error {
                l[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// `make_qx_quants` with `rmse_type = 1` and no importance weights, the way Q6_K calls it:
/// symmetric codes `l + nmax` in 0..2·`nmax` with `x ≈ scale·l`, the scale chosen among 19
/// trials by the x²-weighted fit. Returns the scale; `l` holds the codes.
fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let code = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    // the weighted sums Σw·x·l and Σw·l² with w = x², as the C accumulates them
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let q = code(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * q;
            suml2 += w * q * q;
        }
        (sumlx, suml2)
    };
    let fill = |iscale: f32, l: &mut [i8]| {
        for (li, &v) in l.iter_mut().zip(x) {
            *li = (code(iscale, v) + nmax) as i8;
        }
    };
    let iscale = -(nmax as f32) / max;
    fill(iscale, l);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        let iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            fill(iscale, l);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// ggml's `get_scale_min_k4`: sub-block `j`'s 6-bit scale and min from the 12 packed bytes.
fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

fn whole_blocks(values: &[f32], what: &str) -> Result<()> {
    if !values.len().is_multiple_of(QK_K) {
        bail!(
            "{what} needs whole blocks of {QK_K} values, not {}",
            values.len()
        );
    }
    Ok(())
}

/// `quantize_row_q4_K_ref`: per 256 values, 8 sub-blocks of 32 with a 6-bit scale and min
/// each (relative to the f16 `d` and `dmin`), and 4-bit codes: `x ≈ d·sc·q − dmin·m`.
pub fn quantise_q4_k(values: &[f32], out: &mut Vec<u8>) -> Result<()> {
    whole_blocks(values, "Q4_K")?;
    for x in values.chunks_exact(QK_K) {
        let mut codes = [0u8; QK_K];
        let mut laux = [0u8; 32];
        let mut weights = [0f32; 32];
        let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
        let (mut max_scale, mut max_min) = (0f32, 0f32);
        for j in 0..8 {
            let sub = &x[32 * j..32 * (j + 1)];
            let mut sum_x2 = 0f32;
            for &v in sub {
                sum_x2 += v * v;
            }
            // weight each value by its size above the sub-block's rms, as the C does
            let av_x = (sum_x2 / 32.0).sqrt();
            for (w, &v) in weights.iter_mut().zip(sub) {
                *w = av_x + v.abs();
            }
            let l = &mut codes[32 * j..32 * (j + 1)];
            (scales[j], mins[j]) = make_qkx2_quants(15, sub, &weights, l, &mut laux, -1.0, 0.1, 20);
            if scales[j] > max_scale {
                max_scale = scales[j];
            }
            if mins[j] > max_min {
                max_min = mins[j];
            }
        }

        let inv_scale = if max_scale > 0.0 {
            63.0 / max_scale
        } else {
            0.0
        };
        let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
        let mut packed = [0u8; 12];
        for j in 0..8 {
            // the C stores the int in a uint8_t before clamping: keep that truncation
            let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
            let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
            if j < 4 {
                packed[j] = ls;
                packed[j + 4] = lm;
            } else {
                packed[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
                packed[j - 4] |= (ls >> 4) << 6;
                packed[j] |= (lm >> 4) << 6;
            }
        }
        let d = to_f16(max_scale / 63.0);
        let dmin = to_f16(max_min / 63.0);

        // requantise against the scales as stored (rounded to 6 bits and f16); a sub-block
        // whose scale rounds to zero keeps the codes of its own search
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, &packed);
            let d = d.to_f32() * f32::from(sc);
            if d == 0.0 {
                continue;
            }
            let dm = dmin.to_f32() * f32::from(m);
            for ii in 0..32 {
                let l = nearest_int((x[32 * j + ii] + dm) / d);
                codes[32 * j + ii] = l.clamp(0, 15) as u8;
            }
        }

        out.extend(d.to_bits().to_le_bytes());
        out.extend(dmin.to_bits().to_le_bytes());
        out.extend(packed);
        // each 64 values make 32 bytes: the first 32 in low nibbles, the next 32 in high
        for chunk in codes.chunks_exact(64) {
            out.extend((0..32).map(|l| chunk[l] | (chunk[l + 32] << 4)));
        }
    }
    Ok(())
}

/// `quantize_row_q6_K_ref`: per 256 values, 16 sub-blocks of 16 with an i8 scale (relative to
/// the f16 `d`) and 6-bit codes: `x ≈ d·sc·(q − 32)`.
pub fn quantise_q6_k(values: &[f32], out: &mut Vec<u8>) -> Result<()> {
    whole_blocks(values, "Q6_K")?;
    for x in values.chunks_exact(QK_K) {
        let mut codes = [0i8; QK_K];
        let mut scales = [0f32; 16];
        let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
        for ib in 0..16 {
            let (sub, l) = (
                &x[16 * ib..16 * (ib + 1)],
                &mut codes[16 * ib..16 * (ib + 1)],
            );
            let scale = make_qx_quants(32, sub, l);
            scales[ib] = scale;
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            // an all-zero block, d = +0 included
            out.extend([0u8; Q6_K_BYTES]);
            continue;
        }

        // the largest scale maps to −128 so its sign is carried by d
        let iscale = -128.0 / max_scale;
        let d = to_f16(1.0 / iscale);
        let mut sc = [0i8; 16];
        for (s, &scale) in sc.iter_mut().zip(&scales) {
            *s = nearest_int(iscale * scale).min(127) as i8;
        }
        // requantise against the stored scales; a zero scale keeps its sub-block's codes
        for j in 0..16 {
            let d = d.to_f32() * f32::from(sc[j]);
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let l = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
                codes[16 * j + ii] = (l + 32) as i8;
            }
        }

        // per 128 values: low nibbles of 0..64 and 64..128 share 64 bytes, the high bit pairs
        // of the four 32-value quarters share 32 bytes
        let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
        for (half, q) in codes.chunks_exact(128).enumerate() {
            let q = |i: usize| q[i] as u8;
            for l in 0..32 {
                ql[64 * half + l] = (q(l) & 0xf) | ((q(l + 64) & 0xf) << 4);
                ql[64 * half + l + 32] = (q(l + 32) & 0xf) | ((q(l + 96) & 0xf) << 4);
                qh[32 * half + l] = (q(l) >> 4)
                    | ((q(l + 32) >> 4) << 2)
                    | ((q(l + 64) >> 4) << 4)
                    | ((q(l + 96) >> 4) << 6);
            }
        }
        out.extend(ql);
        out.extend(qh);
        out.extend(sc.iter().map(|&s| s as u8));
        out.extend(d.to_bits().to_le_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../../tests/data/gguf/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn input() -> Vec<f32> {
        fixture("kquant_input.f32")
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    /// Block by block, so a mismatch names the block (see the fixtures' README).
    fn matches_fixture(quantise: fn(&[f32], &mut Vec<u8>) -> Result<()>, file: &str, size: usize) {
        let (x, want) = (input(), fixture(file));
        assert_eq!(x.len(), 6 * QK_K);
        assert_eq!(want.len(), 6 * size);
        for (b, (x, want)) in x.chunks(QK_K).zip(want.chunks(size)).enumerate() {
            let mut got = Vec::new();
            quantise(x, &mut got).unwrap();
            assert_eq!(got, want, "{file}: block {b}");
        }
    }

    #[test]
    fn q4_k_matches_the_c_reference() {
        matches_fixture(quantise_q4_k, "q4_k.bin", Q4_K_BYTES);
    }

    #[test]
    fn q6_k_matches_the_c_reference() {
        matches_fixture(quantise_q6_k, "q6_k.bin", Q6_K_BYTES);
    }

    #[test]
    fn nearest_int_rounds_ties_to_even() {
        for (x, want) in [
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (-0.0, 0),
        ] {
            assert_eq!(nearest_int(x), want, "{x}");
        }
        assert_eq!(nearest_int(7.49), 7);
        assert_eq!(nearest_int(-7.51), -8);
    }

    #[test]
    fn zero_blocks_are_zero_bytes() {
        let mut out = Vec::new();
        quantise_q4_k(&[0.0; QK_K], &mut out).unwrap();
        assert_eq!(out, vec![0; Q4_K_BYTES]);
        out.clear();
        quantise_q6_k(&[0.0; QK_K], &mut out).unwrap();
        assert_eq!(out, vec![0; Q6_K_BYTES]);
    }

    #[test]
    fn partial_blocks_are_refused() {
        let mut out = Vec::new();
        assert!(quantise_q4_k(&[1.0; 100], &mut out).is_err());
        assert!(quantise_q6_k(&[1.0; 300], &mut out).is_err());
    }

    /// Sub-block j of 32 values is 0, 1, …, 15 (times 1, the same in every sub-block): codes
    /// equal to the values fit exactly with scale 1 and min 0, so d = 1/63, sc = 63,
    /// dmin = 0 and every code is its value.
    #[test]
    fn q4_k_by_hand() {
        let x: Vec<f32> = (0..QK_K).map(|i| (i % 16) as f32).collect();
        let mut b = Vec::new();
        quantise_q4_k(&x, &mut b).unwrap();
        assert_eq!(b.len(), Q4_K_BYTES);
        let d = f16::from_bits(u16::from_le_bytes([b[0], b[1]]));
        assert_eq!(d, to_f16(1.0 / 63.0));
        assert_eq!(u16::from_le_bytes([b[2], b[3]]), 0, "dmin");
        let packed: [u8; 12] = b[4..16].try_into().unwrap();
        for j in 0..8 {
            assert_eq!(scale_min_k4(j, &packed), (63, 0), "sub-block {j}");
        }
        // value i of each 64: low nibble of byte i (i < 32), high nibble of byte i − 32
        let qs = &b[16..];
        for (i, &v) in x.iter().enumerate() {
            let (group, k) = (i / 64, i % 64);
            let byte = qs[32 * group + k % 32];
            let q = if k < 32 { byte & 0xf } else { byte >> 4 };
            assert_eq!(f32::from(q), v, "value {i}");
            // and it dequantises back: d·sc·q − dmin·m
            assert!((d.to_f32() * 63.0 * f32::from(q) - v).abs() < 1e-2);
        }
    }

    /// Sub-block j (16 values) is −32, −31, …, −17 times 2^−(j mod 4): its largest magnitude
    /// is negative, so make_qx_quants picks scale 2^−(j mod 4) with codes −32…−17 exactly;
    /// the block's largest scale 1 maps to sc = −128 with d = −1/128, the others to −64, −32,
    /// −16, and every value dequantises exactly as d·sc·(q − 32).
    #[test]
    fn q6_k_by_hand() {
        let x: Vec<f32> = (0..QK_K)
            .map(|i| ((i % 16) as f32 - 32.0) / (1 << (i / 16 % 4)) as f32)
            .collect();
        let mut b = Vec::new();
        quantise_q6_k(&x, &mut b).unwrap();
        assert_eq!(b.len(), Q6_K_BYTES);
        let (ql, qh, sc) = (&b[..128], &b[128..192], &b[192..208]);
        let d = f16::from_bits(u16::from_le_bytes([b[208], b[209]])).to_f32();
        assert_eq!(d, -1.0 / 128.0);
        for (j, &s) in sc.iter().enumerate() {
            assert_eq!(s as i8, -128 >> (j % 4), "sub-block {j}");
        }
        for i in 0..QK_K {
            let (half, k) = (i / 128, i % 128);
            let (quarter, l) = (k / 32, k % 32);
            let low = ql[64 * half + l + 32 * (quarter % 2)] >> (4 * (quarter / 2)) & 0xf;
            let high = (qh[32 * half + l] >> (2 * quarter)) & 3;
            let q = i32::from(low | (high << 4)) - 32;
            let v = d * f32::from(sc[i / 16] as i8) * q as f32;
            assert_eq!(v, x[i], "value {i}");
        }
    }
}
