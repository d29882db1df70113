//! Small ONNX graphs built in memory for the unit tests (encoded with the same `prost`
//! messages the reader decodes), and the tests of naming and dequantisation on them.

use bytes::Bytes;
use prost::Message;

use super::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
};
use super::*;

/// A node.
pub(crate) fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// The node with an integer attribute.
pub(crate) fn with_attr(mut n: NodeProto, name: &str, i: i64) -> NodeProto {
    n.attribute.push(AttributeProto {
        name: name.into(),
        i: Some(i),
        r#type: 2,
    });
    n
}

/// A tensor with `raw_data`.
pub(crate) fn raw(name: &str, dims: &[i64], dtype: DataType, bytes: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: dtype.code(),
        raw_data: Some(Bytes::from(bytes)),
        ..Default::default()
    }
}

/// An f32 tensor in `raw_data`.
pub(crate) fn f32s(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    raw(
        name,
        dims,
        DataType::Float,
        values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
}

/// An int8 tensor in `raw_data`.
pub(crate) fn i8s(name: &str, dims: &[i64], values: &[i8]) -> TensorProto {
    raw(
        name,
        dims,
        DataType::Int8,
        values.iter().map(|&v| v as u8).collect(),
    )
}

/// An encoded model of these nodes and initializers.
pub(crate) fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>) -> Bytes {
    ModelProto {
        ir_version: 8,
        producer_name: "test".into(),
        producer_version: "1".into(),
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: inits,
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
    }
    .encode_to_vec()
    .into()
}

/// Parses with no external files.
pub(crate) fn parse_local(bytes: &Bytes) -> OnnxModel {
    match parse(bytes.clone(), &|_| None) {
        Ok(m) => m,
        Err(e) => panic!("{e:#}"),
    }
}

/// A weight's Hugging Face values.
fn values(m: &OnnxModel, file: &Bytes, name: &str) -> Vec<f32> {
    let Some(w) = m.tensor(name) else {
        panic!(
            "no {name}: {:?}",
            m.tensors.iter().map(|t| &t.name).collect::<Vec<_>>()
        )
    };
    decode(w, &w.local_bytes(file).unwrap()).unwrap()
}

const W: [f32; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [in 2, out 3]
const W_T: [f32; 6] = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]; // [out 3, in 2]

/// A torch.onnx-style linear layer: `x @ onnx::MatMul_7` → `Add(layer.q.bias)`.
#[test]
fn an_anonymous_matmul_weight_is_named_by_its_bias() {
    let file = model(
        vec![
            node(
                "MatMul",
                "/layer/q/MatMul",
                &["x", "onnx::MatMul_7"],
                &["mm"],
            ),
            node("Add", "/layer/q/Add", &["layer.q.bias", "mm"], &["y"]),
        ],
        vec![
            f32s("layer.q.bias", &[3], &[0.5, 0.25, 0.125]),
            f32s("onnx::MatMul_7", &[2, 3], &W),
        ],
    );
    let m = parse_local(&file);
    assert!(m.problems.is_empty(), "{:?}", m.problems);
    assert_eq!(
        (m.producer.as_str(), m.opset, m.ir_version),
        ("test 1", Some(17), 8)
    );
    let w = m.tensor("layer.q.weight").unwrap();
    assert_eq!((w.naming, w.transposed), (Naming::Bias, true));
    assert_eq!(
        (w.shape.clone(), w.onnx_shape.clone()),
        (vec![3, 2], vec![2, 3])
    );
    let Location::Inline { begin, end } = w.location else {
        panic!("{:?}", w.location)
    };
    let stored: Vec<u8> = W.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(&file[begin as usize..end as usize], stored.as_slice());
    assert_eq!(values(&m, &file, "layer.q.weight"), W_T);
    assert_eq!(m.tensor("layer.q.bias").unwrap().naming, Naming::Kept);
}

/// Static Q/DQ: int8 codes → DequantizeLinear(axis 1) → MatMul → Q/DQ pair → Add(bias).
#[test]
fn static_qdq_per_axis() {
    let file = model(
        vec![
            with_attr(
                node(
                    "DequantizeLinear",
                    "w_dq",
                    &["onnx::MatMul_9_quantized", "w_scale", "w_zp"],
                    &["w_f"],
                ),
                "axis",
                1,
            ),
            node("MatMul", "/l/lin/MatMul", &["x", "w_f"], &["mm"]),
            node("QuantizeLinear", "q", &["mm", "a_scale", "a_zp"], &["mm_q"]),
            node(
                "DequantizeLinear",
                "dq",
                &["mm_q", "a_scale", "a_zp"],
                &["mm_f"],
            ),
            node("Add", "/l/lin/Add", &["mm_f", "l.lin.bias"], &["y"]),
        ],
        vec![
            i8s("onnx::MatMul_9_quantized", &[2, 3], &[1, 2, 3, -4, -5, -6]),
            f32s("w_scale", &[3], &[0.5, 0.25, 2.0]),
            i8s("w_zp", &[3], &[0, 1, -1]),
            f32s("a_scale", &[], &[0.1]),
            i8s("a_zp", &[], &[0]),
            f32s("l.lin.bias", &[3], &[0.0; 3]),
        ],
    );
    let m = parse_local(&file);
    assert!(m.problems.is_empty(), "{:?}", m.problems);
    let names: Vec<&str> = m.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["l.lin.weight", "l.lin.bias"],
        "scales and zero points are not listed"
    );
    let w = m.tensor("l.lin.weight").unwrap();
    let q = w.quant.as_ref().unwrap();
    assert_eq!(
        (q.axis, q.scheme, w.transposed),
        (Some(1), QuantScheme::StaticQdq, true)
    );
    assert_eq!(w.hf_quant_axis(), Some(0));
    // stored [[0.5, 0.25, 8], [-2, -1.5, -10]], transposed
    assert_eq!(
        values(&m, &file, "l.lin.weight"),
        [0.5, -2.0, 0.25, -1.5, 8.0, -10.0]
    );
}

/// onnxruntime's quantize_dynamic: MatMulInteger → Cast → Mul(Mul(a_scale, w_scale)).
#[test]
fn dynamic_matmul_integer() {
    let dynamic = |bias: bool| {
        let mut nodes = vec![
            node("DynamicQuantizeLinear", "dql", &["x"], &["xq", "xs", "xz"]),
            node(
                "MatMulInteger",
                "/enc/block.0/q/MatMul_quant",
                &[
                    "xq",
                    "onnx::MatMul_5_quantized",
                    "xz",
                    "onnx::MatMul_5_zero_point",
                ],
                &["acc"],
            ),
            node("Cast", "c", &["acc"], &["accf"]),
            node("Mul", "sm", &["xs", "onnx::MatMul_5_scale"], &["scales"]),
            node("Mul", "om", &["accf", "scales"], &["mm"]),
        ];
        let mut inits = vec![
            raw(
                "onnx::MatMul_5_quantized",
                &[2, 3],
                DataType::Uint8,
                vec![128, 130, 0, 255, 127, 128],
            ),
            f32s("onnx::MatMul_5_scale", &[], &[0.5]),
            raw("onnx::MatMul_5_zero_point", &[], DataType::Uint8, vec![128]),
        ];
        if bias {
            nodes.push(node("Add", "a", &["enc.block.0.q.bias", "mm"], &["y"]));
            inits.push(f32s("enc.block.0.q.bias", &[3], &[0.0; 3]));
        }
        model(nodes, inits)
    };
    for bias in [true, false] {
        let file = dynamic(bias);
        let m = parse_local(&file);
        assert!(m.problems.is_empty(), "{:?}", m.problems);
        let w = m.tensor("enc.block.0.q.weight").unwrap();
        let naming = if bias { Naming::Bias } else { Naming::NodePath };
        assert_eq!(
            (w.naming, w.transposed, w.shape.clone()),
            (naming, true, vec![3, 2])
        );
        let q = w.quant.as_ref().unwrap();
        assert_eq!(
            (q.scheme, q.axis, q.zero_point.clone()),
            (QuantScheme::DynamicInteger, None, vec![128])
        );
        // stored [[0, 1, -64], [63.5, -0.5, 0]]
        assert_eq!(
            values(&m, &file, "enc.block.0.q.weight"),
            [0.0, 63.5, 1.0, -0.5, -64.0, 0.0]
        );
        assert_eq!(m.tensors.len(), 1 + usize::from(bias));
    }
}

/// `Gather(codes)` → `DequantizeLinear`: an embedding keeps its name, less `_quantized`.
#[test]
fn a_gathered_embedding_keeps_its_name() {
    let file = model(
        vec![
            node(
                "Gather",
                "/emb/Gather",
                &["emb.word_embeddings.weight_quantized", "ids"],
                &["g"],
            ),
            node(
                "DequantizeLinear",
                "dq",
                &[
                    "g",
                    "emb.word_embeddings.weight_scale",
                    "emb.word_embeddings.weight_zero_point",
                ],
                &["e"],
            ),
        ],
        vec![
            i8s(
                "emb.word_embeddings.weight_quantized",
                &[2, 2],
                &[1, 2, 3, 4],
            ),
            f32s("emb.word_embeddings.weight_scale", &[], &[0.5]),
            i8s("emb.word_embeddings.weight_zero_point", &[], &[1]),
        ],
    );
    let m = parse_local(&file);
    assert!(m.problems.is_empty(), "{:?}", m.problems);
    let w = m.tensor("emb.word_embeddings.weight").unwrap();
    assert_eq!((w.naming, w.transposed), (Naming::Kept, false));
    assert_eq!(
        w.quant.as_ref().unwrap().scheme,
        QuantScheme::GatherDequantize
    );
    assert_eq!(
        values(&m, &file, "emb.word_embeddings.weight"),
        [0.0, 0.5, 1.0, 1.5]
    );
}

#[test]
fn gemm_layouts_follow_trans_b() {
    for trans_b in [0, 1] {
        let dims: &[i64] = if trans_b == 1 { &[3, 2] } else { &[2, 3] };
        let file = model(
            vec![with_attr(
                node(
                    "Gemm",
                    "/head/Gemm",
                    &["x", "onnx::Gemm_3", "head.bias"],
                    &["y"],
                ),
                "transB",
                trans_b,
            )],
            vec![
                f32s("onnx::Gemm_3", dims, &W),
                f32s("head.bias", &[3], &[0.0; 3]),
            ],
        );
        let m = parse_local(&file);
        assert!(m.problems.is_empty(), "{:?}", m.problems);
        let w = m.tensor("head.weight").unwrap();
        assert_eq!((w.transposed, w.shape.clone()), (trans_b == 0, vec![3, 2]));
    }
}

#[test]
fn conflicts_are_reported_not_guessed() {
    // bias and node path disagree: the bias wins, and it is said
    let file = model(
        vec![
            node(
                "MatMul",
                "/a/other/MatMul",
                &["x", "onnx::MatMul_1"],
                &["mm"],
            ),
            node("Add", "add", &["mm", "a.q.bias"], &["y"]),
        ],
        vec![
            f32s("onnx::MatMul_1", &[2, 3], &W),
            f32s("a.q.bias", &[3], &[0.0; 3]),
        ],
    );
    let m = parse_local(&file);
    assert!(m.tensor("a.q.weight").is_some());
    assert!(
        m.problems.iter().any(|p| p.contains("a.other")),
        "{:?}",
        m.problems
    );
    // two weights found under one name: the second keeps its ONNX name
    let file = model(
        vec![
            node("MatMul", "/a/q/MatMul", &["x", "onnx::MatMul_1"], &["m1"]),
            node("MatMul", "/a/q/MatMul_1", &["x", "onnx::MatMul_2"], &["m2"]),
        ],
        vec![
            f32s("onnx::MatMul_1", &[2, 3], &W),
            f32s("onnx::MatMul_2", &[2, 3], &W),
        ],
    );
    let m = parse_local(&file);
    assert_eq!(m.tensor("a.q.weight").unwrap().onnx_name, "onnx::MatMul_1");
    let second = m.tensor("onnx::MatMul_2").unwrap();
    assert_eq!((second.naming, second.transposed), (Naming::Unnamed, false));
    assert!(
        m.problems.iter().any(|p| p.contains("already taken")),
        "{:?}",
        m.problems
    );
    // a weight nothing names
    let file = model(
        vec![node(
            "MatMul",
            "MatMul_4",
            &["x", "onnx::MatMul_1"],
            &["m1"],
        )],
        vec![
            f32s("onnx::MatMul_1", &[2, 3], &W),
            raw("onnx::Reshape_2", &[1], DataType::Int64, vec![0; 8]),
        ],
    );
    let m = parse_local(&file);
    assert_eq!(m.problems.len(), 1, "{:?}", m.problems);
    assert!(m.problems[0].contains("onnx::MatMul_1"));
    assert_eq!(m.tensor("onnx::Reshape_2").unwrap().naming, Naming::Unnamed);
}

#[test]
fn unreadable_quantisations_are_marked() {
    let file = model(
        vec![
            node(
                "MatMulInteger",
                "/a/q/MatMul_quant",
                &["xq", "onnx::MatMul_1_quantized"],
                &["acc"],
            ),
            node("Relu", "r", &["acc"], &["y"]),
            node(
                "DynamicQuantizeLSTM",
                "lstm",
                &["x", "onnx::LSTM_2_quantized"],
                &["h"],
            ),
        ],
        vec![
            i8s("onnx::MatMul_1_quantized", &[2, 3], &[0; 6]),
            i8s("onnx::LSTM_2_quantized", &[1, 2, 2], &[0; 4]),
            raw("f8", &[1], DataType::from_code(17), vec![0]),
        ],
    );
    let m = parse_local(&file);
    let mm = m.tensor("a.q.weight").unwrap();
    assert!(mm.unreadable.as_ref().unwrap().contains("no scale found"));
    assert!(decode(mm, &[0; 6]).is_err());
    let lstm = m.tensor("onnx::LSTM_2_quantized").unwrap();
    assert!(lstm.unreadable.is_some() && lstm.naming == Naming::Unnamed);
    let f8 = m.tensor("f8").unwrap();
    assert!(
        decode(f8, &[0])
            .unwrap_err()
            .to_string()
            .contains("FLOAT8E4M3FN")
    );
    assert_eq!(m.problems.len(), 2, "{:?}", m.problems);
}

#[test]
fn external_data_is_located() {
    use super::proto::StringStringEntryProto;
    let mut t = f32s("enc.layer.0.w.weight", &[2, 3], &[]);
    t.raw_data = None;
    t.data_location = 1;
    t.external_data = [
        ("location", "./model.onnx_data"),
        ("offset", "8"),
        ("length", "24"),
    ]
    .iter()
    .map(|(k, v)| StringStringEntryProto {
        key: (*k).into(),
        value: (*v).into(),
    })
    .collect();
    let file = model(vec![], vec![t]);
    let m = parse(file.clone(), &|f| (f == "model.onnx_data").then_some(32)).unwrap();
    let w = &m.tensors[0];
    assert_eq!(
        w.location,
        Location::External {
            file: "model.onnx_data".into(),
            begin: 8,
            end: 32
        }
    );
    assert_eq!(w.local_bytes(&file), None);
    let e = parse(file, &|_| Some(16)).unwrap_err().to_string();
    assert!(
        e.contains("enc.layer.0.w.weight") && e.contains("external_data"),
        "{e}"
    );
}

#[test]
fn broken_files_are_refused() {
    let file = model(vec![], vec![f32s("a.weight", &[2], &[1.0, 2.0])]);
    for cut in [1, file.len() / 2, file.len() - 1] {
        assert!(parse(file.slice(..cut), &|_| None).is_err(), "cut at {cut}");
    }
    // a length prefix that promises more bytes than there are
    let lying = Bytes::from_static(&[0x3a, 0xff, 0xff, 0x03, 0x2a, 0x00]);
    let e = parse(lying, &|_| None).unwrap_err().to_string();
    assert!(e.contains("invalid protobuf"), "{e}");
    assert!(
        parse(Bytes::new(), &|_| None)
            .unwrap_err()
            .to_string()
            .contains("no graph")
    );
    let dup = model(
        vec![],
        vec![f32s("a", &[1], &[1.0]), f32s("a", &[1], &[1.0])],
    );
    assert!(
        parse(dup, &|_| None)
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
    let short = model(
        vec![],
        vec![raw("a.weight", &[4], DataType::Float, vec![0; 12])],
    );
    let e = parse(short, &|_| None).unwrap_err().to_string();
    assert!(e.contains("a.weight") && e.contains("raw_data"), "{e}");
}

/// ALBERT: one weight used by twelve repeated calls (`query`, `query_1`, …) gets one name.
#[test]
fn a_shared_layer_gets_one_name() {
    let mut nodes = Vec::new();
    for k in 0..3 {
        let module = if k == 0 {
            "query".to_string()
        } else {
            format!("query_{k}")
        };
        nodes.push(node(
            "MatMul",
            &format!("/l/attention/{module}/MatMul"),
            &["x", "onnx::MatMul_8"],
            &[&format!("m{k}")],
        ));
        nodes.push(node(
            "Add",
            &format!("/l/attention/{module}/Add"),
            &["l.attention.query.bias", &format!("m{k}")],
            &[&format!("y{k}")],
        ));
    }
    let file = model(
        nodes,
        vec![
            f32s("onnx::MatMul_8", &[2, 3], &W),
            f32s("l.attention.query.bias", &[3], &[0.0; 3]),
        ],
    );
    let m = parse_local(&file);
    assert!(m.problems.is_empty(), "{:?}", m.problems);
    assert_eq!(
        m.tensor("l.attention.query.weight").unwrap().naming,
        Naming::Bias
    );
}

/// Millions of empty entries are counted, not decoded, and refused.
#[test]
fn too_many_initializers_are_refused_before_decoding() {
    use super::proto::{GraphOutline, ModelOutline, Skipped};
    let outline = ModelOutline {
        graph: Some(GraphOutline {
            node: vec![],
            initializer: vec![Skipped {}; MAX_INITIALIZERS + 1],
        }),
    };
    let bytes = Bytes::from(outline.encode_to_vec());
    let e = parse(bytes, &|_| None).unwrap_err().to_string();
    assert!(e.contains("initializers (at most"), "{e}");
}

/// Empty weights sharing one large scale cannot make the reader keep copies without end.
#[test]
fn shared_scales_are_budgeted() {
    let n = 1000;
    let scale: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let mut nodes = Vec::new();
    let mut inits = vec![f32s("s", &[n as i64], &scale)];
    let count = (1 << 24) / (3 * n) + 10;
    for k in 0..count {
        let w = format!("w{k}.weight_quantized");
        inits.push(i8s(&w, &[0, n as i64], &[]));
        let dq = node(
            "DequantizeLinear",
            &format!("dq{k}"),
            &[&w, "s"],
            &[&format!("o{k}")],
        );
        nodes.push(with_attr(dq, "axis", 1));
    }
    let m = parse_local(&model(nodes, inits));
    assert_eq!(m.tensors.len(), count);
    let refused = m.tensors.iter().filter(|t| t.unreadable.is_some()).count();
    assert!(refused > 0 && refused < count, "{refused} of {count}");
    assert!(m.problems.iter().any(|p| p.contains("exceed")));
}

/// A weight that kept its name is stored as the parameter is (GPT-2's `Conv1D` is
/// `[in, out]` in Hugging Face too), unless onnxruntime rewrote its `Gemm` as a `MatMul`.
#[test]
fn kept_names_keep_their_layout_but_for_rewritten_gemms() {
    let file = model(
        vec![
            node(
                "MatMul",
                "/h/attn/c_attn/MatMul",
                &["x", "h.attn.c_attn.weight"],
                &["a"],
            ),
            node("MatMul", "/fc/Gemm_MatMul", &["x", "fc.weight"], &["b"]),
            node("Add", "/fc/Gemm_Add", &["b", "fc.bias"], &["c"]),
        ],
        vec![
            f32s("h.attn.c_attn.weight", &[2, 3], &W),
            f32s("fc.weight", &[2, 3], &W),
            f32s("fc.bias", &[3], &[0.0; 3]),
        ],
    );
    let m = parse_local(&file);
    assert!(m.problems.is_empty(), "{:?}", m.problems);
    let conv1d = m.tensor("h.attn.c_attn.weight").unwrap();
    assert_eq!(
        (conv1d.transposed, conv1d.shape.clone()),
        (false, vec![2, 3])
    );
    let fc = m.tensor("fc.weight").unwrap();
    assert_eq!(
        (fc.naming, fc.transposed, fc.shape.clone()),
        (Naming::Kept, true, vec![3, 2])
    );
    assert_eq!(values(&m, &file, "fc.weight"), W_T);
}
