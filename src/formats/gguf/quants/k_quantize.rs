//! llama.cpp's reference K-quant quantisers without an importance matrix
//! (`quantize_row_q{2,3,4,5,6}_K_ref` in ggml-quants.c), which `llama-quantize` runs when it is
//! given no imatrix.
//!
//! Each is a translation that keeps the C's f32 arithmetic: the same loops, the same operation
//! order (`w*x*l` is `(w*x)*l`), `nearest_int`'s magic-number rounding, the same casts to 8-bit
//! integers (wrapping, then clamping). Rust never fuses a multiply and an add, so the result is
//! the C built without FMA contraction, as ggml-base is on x86-64 (it gets no `-march` flags).
//! A build that contracts gives other bytes: with x86-64 `-march=native` and GCC's default
//! `-ffp-contract=fast`, 13% of 28 000 varied Q2_K blocks differed, 3–5% of Q4_K, Q5_K and
//! Q6_K, almost no Q3_K; aarch64 builds, where FMA is baseline, likely behave alike.
//! tests/data/gguf/ pins the non-contracted C's bytes.

use super::k::scales_and_mins;
use super::{f16_at, put_f16};

/// ggml's `GROUP_MAX_EPS`: a group whose largest magnitude is below it is all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: adding 1.5·2^23 leaves the rounded integer (ties to even) in the low
/// mantissa bits. Meaningful for |v| ≤ 2^22, like the C (whose assert is compiled out).
fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0).to_bits() as i32;
    (bits & 0x007F_FFFF) - 0x0040_0000
}

/// The first value of largest magnitude and that magnitude (`ax > amax` loops).
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

/// `make_qx_quants` with `rmse_type = 1` and no weights (Q6_K): symmetric codes in
/// `0..2·nmax` (offset by `nmax`), the scale searched over 19 candidates for the least
/// x²-weighted squared error.
fn make_qx_quants(nmax: i32, x: &[f32; 16], l_out: &mut [u8; 16]) -> f32 {
    let (max, amax) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        *l_out = [0; 16];
        return 0.0;
    }
    let code = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let l = code(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let fill = |iscale: f32, l_out: &mut [u8; 16]| {
        for (o, &v) in l_out.iter_mut().zip(x) {
            *o = (nmax + code(iscale, v)) as u8;
        }
    };
    let iscale = -(nmax as f32) / max;
    fill(iscale, l_out);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        let iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            fill(iscale, l_out);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// `make_q3_quants` with `do_rmse` (Q3_K): symmetric codes in `-nmax..nmax`, refined one
/// element at a time for up to five passes; returns codes offset by `nmax`.
fn make_q3_quants(nmax: i32, x: &[f32; 16], l_out: &mut [u8; 16]) -> f32 {
    let (max, amax) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        *l_out = [0; 16];
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let mut l = [0i32; 16];
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (l, &v) in l.iter_mut().zip(x) {
        *l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        let w = v * v;
        sumlx += w * v * *l as f32;
        suml2 += w * *l as f32 * *l as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for (li, &v) in l.iter_mut().zip(x) {
            let w = v * v;
            let mut slx = sumlx - w * v * *li as f32;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * *li as f32 * *li as f32;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != *li {
                    slx += w * v * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *li = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for (o, l) in l_out.iter_mut().zip(l) {
        *o = (l + nmax) as u8;
    }
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

/// The search grid of `make_qkx2_quants`: candidates `(rmin + rdelta·is + nmax) / (max − min)`
/// for `is` in `0..=nstep`, and whether errors are absolute (`use_mad`) or squared.
struct Search {
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
}

/// `make_qkx2_quants` (Q2_K, Q4_K, Q5_K): asymmetric codes in `0..=nmax` with a scale and a
/// minimum fitted by weighted least squares over a grid of candidate scales. Returns the scale
/// and `-min` (the offset subtracted when decoding).
fn make_qkx2_quants<const N: usize>(
    nmax: i32,
    x: &[f32; N],
    weights: &[f32; N],
    l_out: &mut [u8; N],
    search: &Search,
) -> (f32, f32) {
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for (&v, &w) in x.iter().zip(weights).skip(1) {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
        sum_w += w;
        sum_x += w * v;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        *l_out = [0; N];
        return (0.0, -min);
    }
    let error = |scale: f32, min: f32, l: &[u8; N]| {
        let mut e = 0f32;
        for ((&l, &v), &w) in l.iter().zip(x).zip(weights) {
            let diff = scale * f32::from(l) + min - v;
            e += w * if search.use_mad {
                diff.abs()
            } else {
                diff * diff
            };
        }
        e
    };
    let codes = |iscale: f32, min: f32, l: &mut [u8; N]| {
        for (l, &v) in l.iter_mut().zip(x) {
            *l = nearest_int(iscale * (v - min)).clamp(0, nmax) as u8;
        }
    };
    let iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    codes(iscale, min, l_out);
    let mut best_error = error(scale, min, l_out);
    let mut laux = [0u8; N];
    for is in 0..=search.nstep {
        let iscale = (search.rmin + search.rdelta * is as f32 + nmax as f32) / (max - min);
        codes(iscale, min, &mut laux);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for ((&l, &v), &w) in laux.iter().zip(x).zip(weights) {
            let l = f32::from(l);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * v;
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let cur_error = error(this_scale, this_min, &laux);
            if cur_error < best_error {
                *l_out = laux;
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Packs four 2-bit codes per byte: element `128h + 32s + l` into bits `2s` of byte `32h + l`.
fn pack_crumbs(l: &[u8; 256], qs: &mut [u8]) {
    for (i, q) in qs.iter_mut().enumerate() {
        let (h, l0) = (i / 32, i % 32);
        let at = |s: usize| l[128 * h + 32 * s + l0];
        *q = at(0) | (at(1) << 2) | (at(2) << 4) | (at(3) << 6);
    }
}

/// Sub-blocks of `S` values of a 256-element block.
fn groups<const S: usize, const G: usize>(x: &[f32; 256]) -> [&[f32; S]; G] {
    let (chunks, _) = x.as_chunks::<S>();
    std::array::from_fn(|j| &chunks[j])
}

fn groups_mut<const S: usize>(l: &mut [u8; 256]) -> &mut [[u8; S]] {
    l.as_chunks_mut::<S>().0
}

pub(super) fn quantize_q2_k(x: &[f32; 256], y: &mut [u8; 84]) {
    const Q4SCALE: f32 = 15.0;
    let search = Search {
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: true,
    };
    let mut l = [0u8; 256];
    let (mut scales, mut mins) = ([0f32; 16], [0f32; 16]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for (j, (x, lj)) in groups::<16, 16>(x)
        .into_iter()
        .zip(groups_mut::<16>(&mut l))
        .enumerate()
    {
        let weights = x.map(f32::abs);
        (scales[j], mins[j]) = make_qkx2_quants(3, x, &weights, lj, &search);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let mut sc = [0u8; 16];
    if max_scale > 0.0 {
        let iscale = Q4SCALE / max_scale;
        for (s, &scale) in sc.iter_mut().zip(&scales) {
            *s = nearest_int(iscale * scale) as u8;
        }
        put_f16(y, 80, max_scale / Q4SCALE);
    } else {
        put_f16(y, 80, 0.0);
    }
    if max_min > 0.0 {
        let iscale = Q4SCALE / max_min;
        for (s, &min) in sc.iter_mut().zip(&mins) {
            *s |= (nearest_int(iscale * min) << 4) as u8;
        }
        put_f16(y, 82, max_min / Q4SCALE);
    } else {
        put_f16(y, 82, 0.0);
    }
    y[..16].copy_from_slice(&sc);
    let (d_all, dmin_all) = (f16_at(y, 80), f16_at(y, 82));
    for (j, (x, lj)) in groups::<16, 16>(x)
        .into_iter()
        .zip(groups_mut::<16>(&mut l))
        .enumerate()
    {
        let d = d_all * f32::from(sc[j] & 0x0F);
        if d == 0.0 {
            continue;
        }
        let dm = dmin_all * f32::from(sc[j] >> 4);
        for (l, &v) in lj.iter_mut().zip(x) {
            *l = nearest_int((v + dm) / d).clamp(0, 3) as u8;
        }
    }
    pack_crumbs(&l, &mut y[16..80]);
}

/// Q3_K's 6-bit scale `j` (0..16) as the C packs it: low nibble in byte `j % 8` (high half
/// for `j ≥ 8`), two high bits in byte `8 + j % 4` at bit `2·(j / 4)`.
fn put_q3_k_scale(s: &mut [u8], j: usize, l: u8) {
    if j < 8 {
        s[j] = l & 0x0F;
    } else {
        s[j - 8] |= (l & 0x0F) << 4;
    }
    s[8 + j % 4] |= (l >> 4) << (2 * (j / 4));
}

fn q3_k_scale(s: &[u8], j: usize) -> i8 {
    let low = if j < 8 { s[j] & 0x0F } else { s[j - 8] >> 4 };
    (low | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i8 - 32
}

pub(super) fn quantize_q3_k(x: &[f32; 256], y: &mut [u8; 110]) {
    let mut l = [0u8; 256];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut amax) = (0f32, 0f32);
    for (j, (x, lj)) in groups::<16, 16>(x)
        .into_iter()
        .zip(groups_mut::<16>(&mut l))
        .enumerate()
    {
        scales[j] = make_q3_quants(4, x, lj);
        if scales[j].abs() > amax {
            amax = scales[j].abs();
            max_scale = scales[j];
        }
    }
    let mut sc = [0u8; 12];
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for (j, &scale) in scales.iter().enumerate() {
            let q = (nearest_int(iscale * scale) as i8).clamp(-32, 31) + 32;
            put_q3_k_scale(&mut sc, j, q as u8);
        }
        put_f16(y, 108, 1.0 / iscale);
    } else {
        put_f16(y, 108, 0.0);
    }
    y[96..108].copy_from_slice(&sc);
    let d_all = f16_at(y, 108);
    for (j, (x, lj)) in groups::<16, 16>(x)
        .into_iter()
        .zip(groups_mut::<16>(&mut l))
        .enumerate()
    {
        let d = d_all * f32::from(q3_k_scale(&sc, j));
        if d == 0.0 {
            continue;
        }
        for (l, &v) in lj.iter_mut().zip(x) {
            *l = (nearest_int(v / d).clamp(-4, 3) + 4) as u8;
        }
    }
    // The high bit of element j goes to bit j / 32 of hmask byte j % 32.
    let mut hmask = [0u8; 32];
    for (j, l) in l.iter_mut().enumerate() {
        if *l > 3 {
            hmask[j % 32] |= 1 << (j / 32);
            *l -= 4;
        }
    }
    y[..32].copy_from_slice(&hmask);
    pack_crumbs(&l, &mut y[32..96]);
}

/// Q4_K's and Q5_K's common part: per 32-element sub-block a `make_qkx2_quants` fit weighted by
/// `rms + |x|`, the 6-bit scales and minimums packed at bytes 4..16 under f16 `d` and `dmin`,
/// then the codes recomputed from the stored scales. Returns the codes.
fn quantize_scale_min_k(x: &[f32; 256], y: &mut [u8], nmax: i32, search: &Search) -> [u8; 256] {
    let mut l = [0u8; 256];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for (j, (x, lj)) in groups::<32, 8>(x)
        .into_iter()
        .zip(groups_mut::<32>(&mut l))
        .enumerate()
    {
        let sum_x2 = x.iter().fold(0f32, |s, v| s + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights = x.map(|v| av_x + v.abs());
        (scales[j], mins[j]) = make_qkx2_quants(nmax, x, &weights, lj, search);
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
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0x0F) | ((lm & 0x0F) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let mut head = [0u8; 16];
    put_f16(&mut head, 0, max_scale / 63.0);
    put_f16(&mut head, 2, max_min / 63.0);
    head[4..].copy_from_slice(&packed);
    y[..16].copy_from_slice(&head);
    let (sc, m) = scales_and_mins(&packed);
    let (d_all, dmin_all) = (f16_at(&head, 0), f16_at(&head, 2));
    for (j, (x, lj)) in groups::<32, 8>(x)
        .into_iter()
        .zip(groups_mut::<32>(&mut l))
        .enumerate()
    {
        let d = d_all * f32::from(sc[j]);
        if d == 0.0 {
            continue;
        }
        let dm = dmin_all * f32::from(m[j]);
        for (l, &v) in lj.iter_mut().zip(x) {
            *l = nearest_int((v + dm) / d).clamp(0, nmax) as u8;
        }
    }
    l
}

pub(super) fn quantize_q4_k(x: &[f32; 256], y: &mut [u8; 144]) {
    let search = Search {
        rmin: -1.0,
        rdelta: 0.1,
        nstep: 20,
        use_mad: false,
    };
    let l = quantize_scale_min_k(x, y, 15, &search);
    for (i, q) in y[16..].iter_mut().enumerate() {
        let (c, l0) = (i / 32, i % 32);
        *q = l[64 * c + l0] | (l[64 * c + 32 + l0] << 4);
    }
}

pub(super) fn quantize_q5_k(x: &[f32; 256], y: &mut [u8; 176]) {
    let search = Search {
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: false,
    };
    let l = quantize_scale_min_k(x, y, 31, &search);
    let mut qh = [0u8; 32];
    for (i, q) in y[48..].iter_mut().enumerate() {
        let (c, l0) = (i / 32, i % 32);
        let (lo, hi) = (l[64 * c + l0], l[64 * c + 32 + l0]);
        qh[l0] |= ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1));
        *q = (lo & 0x0F) | ((hi & 0x0F) << 4);
    }
    y[16..48].copy_from_slice(&qh);
}

pub(super) fn quantize_q6_k(x: &[f32; 256], y: &mut [u8; 210]) {
    let mut l = [0u8; 256];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
    for (j, (x, lj)) in groups::<16, 16>(x)
        .into_iter()
        .zip(groups_mut::<16>(&mut l))
        .enumerate()
    {
        scales[j] = make_qx_quants(32, x, lj);
        if scales[j].abs() > max_abs_scale {
            max_abs_scale = scales[j].abs();
            max_scale = scales[j];
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        *y = [0; 210];
        return;
    }
    let iscale = -128.0 / max_scale;
    put_f16(y, 208, 1.0 / iscale);
    let sc = scales.map(|s| nearest_int(iscale * s).min(127) as i8);
    for (s, &v) in y[192..208].iter_mut().zip(&sc) {
        *s = v as u8;
    }
    let d_all = f16_at(y, 208);
    for (j, (x, lj)) in groups::<16, 16>(x)
        .into_iter()
        .zip(groups_mut::<16>(&mut l))
        .enumerate()
    {
        let d = d_all * f32::from(sc[j]);
        if d == 0.0 {
            continue;
        }
        for (l, &v) in lj.iter_mut().zip(x) {
            *l = (nearest_int(v / d).clamp(-32, 31) + 32) as u8;
        }
    }
    // Element 128h + 32s + l: low nibble into ql[64h + l + 32·(s % 2)] (high half for s ≥ 2),
    // top two bits into qh[32h + l] at bit 2s.
    let (ql, rest) = y.split_at_mut(128);
    let qh = &mut rest[..64];
    ql.fill(0);
    qh.fill(0);
    for (e, &q) in l.iter().enumerate() {
        let (h, s, l0) = (e / 128, (e / 32) % 4, e % 32);
        ql[64 * h + l0 + 32 * (s % 2)] |= (q & 0x0F) << (4 * (s / 2));
        qh[32 * h + l0] |= (q >> 4) << (2 * s);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{GgmlType, block_codes, dequantize, quantize};
    use super::nearest_int;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        let got = [0.5f32, 1.5, 2.5, -0.5, -1.5, 2.4999998, -7.7].map(nearest_int);
        assert_eq!(got, [0, 2, 2, 0, -2, 2, -8]);
    }

    #[test]
    fn zero_blocks_quantise_to_zero() {
        for t in [
            GgmlType::Q2K,
            GgmlType::Q3K,
            GgmlType::Q4K,
            GgmlType::Q5K,
            GgmlType::Q6K,
        ] {
            let mut b = Vec::new();
            quantize(t, &[0.0; 256], &mut b).unwrap();
            let mut y = Vec::new();
            dequantize(t, &b, &mut y).unwrap();
            assert!(y.iter().all(|&v| v == 0.0), "{t}");
        }
    }

    #[test]
    fn q6_k_gives_each_sub_blocks_extreme_the_extra_negative_code() {
        // make_qx_quants maps a sub-block's largest magnitude to −32 whatever its sign (the
        // sub-block scale's sign follows), so both ends of a ramp from −1 to 1 get code −32.
        let x: Vec<f32> = (0..256).map(|i| (i as f32 - 128.0) / 128.0).collect();
        let mut b = Vec::new();
        quantize(GgmlType::Q6K, &x, &mut b).unwrap();
        let mut c = Vec::new();
        block_codes(GgmlType::Q6K, &b, &mut c).unwrap();
        assert_eq!((c[0], c[255]), (-32, -32));
        let mut y = Vec::new();
        dequantize(GgmlType::Q6K, &b, &mut y).unwrap();
        assert!(
            (y[0] + 1.0).abs() < 0.01 && (y[255] - x[255]).abs() < 0.01,
            "{} {}",
            y[0],
            y[255]
        );
    }
}
