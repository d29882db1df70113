//! GGML (de)quantisation against its references: gguf-py (`tests/py/gguf_quants_reference.py`)
//! for dequantising every type both support and for the quantisers gguf-py has, and bytes from
//! llama.cpp's own C reference quantisers (`tests/data/gguf/`) for the K-quants.

use std::path::{Path, PathBuf};
use std::process::Command;

use weight_audit::formats::gguf::quants::{GgmlType, block_codes, dequantize, quantize};

/// The types both this tool and gguf-py dequantise (gguf-py lacks Q8_K; this tool lacks the
/// lattice IQ types).
const PY_DEQUANT: [GgmlType; 18] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Bf16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Iq4Nl,
    GgmlType::Iq4Xs,
    GgmlType::Tq1_0,
    GgmlType::Tq2_0,
    GgmlType::Mxfp4,
];

/// Types whose quantisation gguf-py implements as llama.cpp's reference does.
const PY_QUANT: [GgmlType; 8] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Bf16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
];

/// Byte offsets of each type's f16 scale fields: kept finite so the comparison exercises the
/// arithmetic rather than NaN propagation.
fn f16_fields(t: GgmlType) -> &'static [usize] {
    match t {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::Iq4Nl | GgmlType::Iq4Xs => {
            &[0]
        }
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::Q2K => &[80, 82],
        GgmlType::Q3K => &[108],
        GgmlType::Q6K => &[208],
        GgmlType::Tq1_0 => &[52],
        GgmlType::Tq2_0 => &[64],
        _ => &[],
    }
}

/// xorshift64*: the same sequence everywhere, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 56) as u8).collect()
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Roughly normal (a sum of four uniforms), mean 0, deviation `sigma`.
    fn normal(&mut self, sigma: f32) -> f32 {
        ((0..4).map(|_| self.unit()).sum::<f32>() - 2.0) * 1.732 * sigma
    }
}

/// `n` blocks of type `t`: random bytes with finite random f16 scales, after five edge blocks
/// (all zero; all codes at their maximum under scale 1; scale −0.5; scale 0; scale −0).
fn blocks(t: GgmlType, n: usize, rng: &mut Rng) -> Vec<u8> {
    let size = t.block_bytes() as usize;
    let mut out = Vec::with_capacity(n * size);
    for i in 0..n {
        let mut b = match i {
            0 => vec![0; size],
            1 => vec![0xFF; size],
            _ => rng.bytes(size),
        };
        for &at in f16_fields(t) {
            let bits: u16 = match i {
                0 => 0,
                1 => 0x3C00,
                2 => 0xB800,
                3 => 0x0000,
                4 => 0x8000,
                _ => {
                    let r = rng.next() as u16;
                    if r & 0x7C00 == 0x7C00 { r & !0x4000 } else { r }
                }
            };
            b[at..at + 2].copy_from_slice(&bits.to_le_bytes());
        }
        out.extend_from_slice(&b);
    }
    out
}

/// `n` values in blocks of `block` that look like weights: normal with a per-block scale
/// (1e-4 to 10), some with outliers, one block all zero, one constant, one of ± ties, and one of
/// tiny values.
fn weights(n: usize, block: usize, rng: &mut Rng) -> Vec<f32> {
    let mut x = Vec::with_capacity(n);
    for b in 0..n / block {
        let sigma = 10f32.powf(rng.unit() * 5.0 - 4.0);
        for i in 0..block {
            x.push(match b {
                0 => 0.0,
                1 => 0.75,
                2 => [0.5, -0.5, 0.25, -0.25][i % 4],
                3 => rng.normal(1e-6),
                _ if b % 3 == 0 && i % 37 == 5 => rng.normal(sigma) * 30.0,
                _ => rng.normal(sigma),
            });
        }
    }
    x
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    let (chunks, _) = bytes.as_chunks::<4>();
    chunks.iter().map(|c| f32::from_le_bytes(*c)).collect()
}

fn same_bits(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/gguf_quants_reference.py")
}

fn have_python(what: &str) -> bool {
    crate::util::python_with("gguf, numpy", what)
}

/// Runs the reference script once over `(op, type, input)` jobs; returns each job's output.
fn reference(jobs: &[(&str, GgmlType, Vec<u8>)]) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![script().display().to_string()];
    for (i, (op, t, input)) in jobs.iter().enumerate() {
        let src = dir.path().join(format!("{i}.in"));
        std::fs::write(&src, input).unwrap();
        let dst = dir.path().join(format!("{i}.out"));
        args.extend([op.to_string(), t.name().into(), src.display().to_string()]);
        args.push(dst.display().to_string());
    }
    let status = Command::new("python3").args(&args).status().unwrap();
    assert!(status.success(), "reference script failed");
    (0..jobs.len())
        .map(|i| std::fs::read(dir.path().join(format!("{i}.out"))).unwrap())
        .collect()
}

#[test]
fn dequantisation_matches_gguf_py_bit_for_bit() {
    if !have_python("the gguf-py dequantisation comparison") {
        return;
    }
    let mut rng = Rng(0x5EED_0001);
    let jobs: Vec<_> = PY_DEQUANT
        .map(|t| ("dequant", t, blocks(t, 205, &mut rng)))
        .into();
    let expected = reference(&jobs);
    let mut ours = Vec::new();
    for ((_, t, input), want) in jobs.iter().zip(expected) {
        dequantize(*t, input, &mut ours).unwrap();
        let want = f32s(&want);
        assert_eq!(ours.len(), want.len(), "{t}: element count");
        let elems = t.block_elems() as usize;
        if let Some(i) = (0..want.len()).find(|&i| !same_bits(ours[i], want[i])) {
            panic!(
                "{t}: element {i} (block {}) is {:e} ({:#010x}), gguf-py says {:e} ({:#010x})",
                i / elems,
                ours[i],
                ours[i].to_bits(),
                want[i],
                want[i].to_bits()
            );
        }
    }
}

#[test]
fn legacy_and_float_quantisation_matches_gguf_py_byte_for_byte() {
    if !have_python("the gguf-py quantisation comparison") {
        return;
    }
    let mut rng = Rng(0x5EED_0002);
    let mut jobs = Vec::new();
    for t in PY_QUANT {
        assert!(t.quantizable(), "{t}");
        let mut x = weights(64 * 32, 32, &mut rng);
        if t.block_elems() == 1 {
            // Plain floats also carry non-finite values and NaN payloads through.
            x[7] = f32::INFINITY;
            x[8] = f32::from_bits(0x7F80_0001);
            x[9] = f32::from_bits(0xFFC1_2345);
            x[10] = 65520.0;
            x[11] = 1e-40;
        }
        let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        jobs.push(("quant", t, bytes));
    }
    let expected = reference(&jobs);
    for ((_, t, input), want) in jobs.iter().zip(expected) {
        let mut ours = Vec::new();
        quantize(*t, &f32s(input), &mut ours).unwrap();
        assert_eq!(ours.len(), want.len(), "{t}: byte count");
        let size = t.block_bytes() as usize;
        if let Some(i) = (0..want.len()).find(|&i| ours[i] != want[i]) {
            let b = i / size;
            panic!(
                "{t}: block {b} differs at byte {}:\n ours    {:02x?}\n gguf-py {:02x?}",
                i % size,
                &ours[b * size..(b + 1) * size],
                &want[b * size..(b + 1) * size]
            );
        }
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/gguf")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn k_quantisation_matches_llama_cpp_reference_bytes() {
    let x = f32s(&fixture("kquant_input.f32"));
    for (t, file) in [
        (GgmlType::Q2K, "q2_k.bin"),
        (GgmlType::Q3K, "q3_k.bin"),
        (GgmlType::Q4K, "q4_k.bin"),
        (GgmlType::Q5K, "q5_k.bin"),
        (GgmlType::Q6K, "q6_k.bin"),
    ] {
        let want = fixture(file);
        let mut ours = Vec::new();
        quantize(t, &x, &mut ours).unwrap();
        assert_eq!(ours.len(), want.len(), "{t}: byte count");
        let size = t.block_bytes() as usize;
        for (b, (o, w)) in ours.chunks(size).zip(want.chunks(size)).enumerate() {
            assert_eq!(
                o, w,
                "{t}: block {b} differs from llama.cpp's quantize_row_*_ref"
            );
        }
    }
}

#[test]
fn q8_k_is_its_scale_times_its_codes() {
    // Not in gguf-py: llama.cpp's dequantize_row_q8_K is `d * q` with an f32 d.
    let mut rng = Rng(0x5EED_0003);
    let mut bytes = Vec::new();
    for _ in 0..8 {
        let d = rng.normal(0.01);
        bytes.extend_from_slice(&d.to_le_bytes());
        bytes.extend(rng.bytes(256 + 32));
    }
    let mut ours = Vec::new();
    dequantize(GgmlType::Q8K, &bytes, &mut ours).unwrap();
    for (block, y) in bytes.chunks(292).zip(ours.chunks(256)) {
        let d = f32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        for (j, &v) in y.iter().enumerate() {
            assert_eq!(v.to_bits(), (d * f32::from(block[4 + j] as i8)).to_bits());
        }
    }
}

#[test]
fn hostile_bytes_never_panic() {
    let mut rng = Rng(0x5EED_0004);
    let (mut f, mut c) = (Vec::new(), Vec::new());
    for t in GgmlType::ALL {
        for len in [
            0,
            1,
            17,
            t.block_bytes() as usize,
            3 * t.block_bytes() as usize + 1,
        ] {
            let bytes = rng.bytes(len);
            let whole = (len as u64).is_multiple_of(t.block_bytes());
            assert_eq!(
                dequantize(t, &bytes, &mut f).is_ok(),
                whole && t.dequantizable(),
                "{t}"
            );
            let codes = block_codes(t, &bytes, &mut c);
            assert_eq!(codes.is_ok(), whole && t.has_codes(), "{t}");
        }
    }
}
