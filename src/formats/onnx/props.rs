//! Property tests: no input makes the reader panic. Random bytes, and valid models (every
//! pattern the reader knows) with bytes flipped, cut, or inserted, are parsed; whatever
//! parses is decoded tensor by tensor.

use bytes::Bytes;
use proptest::prelude::*;

use super::testutil::{f32s, i8s, model, node, raw, with_attr};
use super::*;

/// A model touching every path: Q/DQ, MatMulInteger, Gather, Gemm, external data, typed
/// fields.
fn seed() -> Bytes {
    let mut typed = f32s("typed.weight", &[2], &[]);
    typed.raw_data = None;
    typed.float_data = vec![1.0, 2.0];
    let mut ext = f32s("ext.weight", &[2], &[]);
    ext.raw_data = None;
    ext.data_location = 1;
    ext.external_data = vec![proto::StringStringEntryProto {
        key: "location".into(),
        value: "w.bin".into(),
    }];
    model(
        vec![
            with_attr(
                node(
                    "DequantizeLinear",
                    "dq",
                    &["onnx::MatMul_1_quantized", "s", "z"],
                    &["wf"],
                ),
                "axis",
                1,
            ),
            node("MatMul", "/a/q/MatMul", &["x", "wf"], &["m"]),
            node("Add", "add", &["m", "a.q.bias"], &["y"]),
            node(
                "MatMulInteger",
                "/a/k/MatMul_quant",
                &["xq", "onnx::MatMul_2_quantized", "xz", "z"],
                &["acc"],
            ),
            node("Cast", "c", &["acc"], &["accf"]),
            node("Mul", "sm", &["xs", "s"], &["sc"]),
            node("Mul", "om", &["accf", "sc"], &["k"]),
            node(
                "Gather",
                "/e/Gather",
                &["e.weight_quantized", "ids"],
                &["g"],
            ),
            node("DequantizeLinear", "gdq", &["g", "s1", "z1"], &["ge"]),
            with_attr(
                node("Gemm", "/h/Gemm", &["x", "onnx::Gemm_3", "h.bias"], &["o"]),
                "transB",
                1,
            ),
        ],
        vec![
            i8s("onnx::MatMul_1_quantized", &[2, 3], &[1, 2, 3, 4, 5, 6]),
            i8s("onnx::MatMul_2_quantized", &[2, 3], &[1, 2, 3, 4, 5, 6]),
            f32s("s", &[3], &[0.5, 1.0, 2.0]),
            i8s("z", &[3], &[0, 1, 2]),
            f32s("s1", &[], &[0.5]),
            i8s("z1", &[], &[3]),
            f32s("a.q.bias", &[3], &[0.0; 3]),
            i8s("e.weight_quantized", &[2, 2], &[1, 2, 3, 4]),
            f32s("onnx::Gemm_3", &[3, 2], &[1.0; 6]),
            f32s("h.bias", &[3], &[0.0; 3]),
            raw("h16", &[2], DataType::Float16, vec![0, 60, 0, 64]),
            typed,
            ext,
        ],
    )
}

/// Parses and decodes everything; panics are the failure.
fn exercise(bytes: Bytes) {
    let sizes = |f: &str| (f == "w.bin").then_some(8u64);
    if let Ok(m) = parse(bytes.clone(), &sizes) {
        for w in &m.tensors {
            if let Some(b) = w.local_bytes(&bytes) {
                let _ = decode(w, &b);
                let _ = decode_stored(w, 1, &b);
                let _ = hf_to_stored_index(w, w.numel.saturating_sub(1));
            }
            let _ = w.hf_quant_axis();
        }
    }
}

#[test]
fn the_seed_parses_cleanly() {
    let bytes = seed();
    let m = parse(bytes.clone(), &|f| (f == "w.bin").then_some(8)).unwrap();
    assert!(m.problems.is_empty(), "{:?}", m.problems);
    for name in [
        "a.q.weight",
        "a.k.weight",
        "e.weight",
        "h.weight",
        "typed.weight",
        "h16",
    ] {
        let w = m.tensor(name).unwrap();
        decode(w, &w.local_bytes(&bytes).unwrap()).unwrap();
    }
    assert!(m.tensor("ext.weight").is_some());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(Bytes::from(bytes));
    }

    #[test]
    fn mutated_models_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        insert in proptest::collection::vec(any::<u8>(), 0..6),
        at in any::<prop::sample::Index>(),
        how in 0..3u8,
    ) {
        let mut b = seed().to_vec();
        match how {
            0 => for (i, v) in flips { let i = i.index(b.len()); b[i] = v; },
            1 => b.truncate(cut.index(b.len() + 1)),
            _ => { let i = at.index(b.len() + 1); b.splice(i..i, insert); }
        }
        exercise(Bytes::from(b));
    }
}
