//! The part of `onnx.proto` (onnx/onnx, `onnx/onnx.proto`, proto2) the lab writes, as `prost`
//! messages, with the field numbers of the specification.
//!
//! Declared here rather than shared with the tool's reader (`src/formats/onnx/proto.rs`): the lab
//! is an independent oracle, so a wrong field number on either side shows up as a disagreement
//! instead of cancelling out. Only the fields the lab sets are declared; `prost` skips the
//! others when decoding.
//!
//! proto2 keeps presence: a scalar that is set to its default (`transB = 0`, an attribute's
//! `i = 0`, a zero point of 0) is still on the wire. Those scalars are `Option`s here so that
//! explicit zeros are encoded; strings and lists are plain (empty means absent, as it does for
//! every reader). A `oneof` (`TypeProto.value`, `Dimension.value`) is written as its members'
//! optional fields: the wire format is the same.

use prost::Message;

/// `TensorProto.DataType` values the lab writes.
pub mod data_type {
    /// 32-bit float.
    pub const FLOAT: i32 = 1;
    /// Unsigned byte.
    pub const UINT8: i32 = 2;
    /// Signed byte.
    pub const INT8: i32 = 3;
    /// 32-bit signed integer.
    pub const INT32: i32 = 6;
    /// 64-bit signed integer.
    pub const INT64: i32 = 7;
}

/// `AttributeProto.AttributeType` values the lab writes.
pub mod attr_type {
    /// One float (`f`).
    pub const FLOAT: i32 = 1;
    /// One integer (`i`).
    pub const INT: i32 = 2;
    /// One tensor (`t`).
    pub const TENSOR: i32 = 4;
    /// A list of integers (`ints`).
    pub const INTS: i32 = 7;
}

/// `ModelProto`.
#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    /// IR version (8 for opset 17 exports).
    #[prost(int64, optional, tag = "1")]
    pub ir_version: Option<i64>,
    /// Operator sets the graph uses.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Tool that wrote the file.
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// Its version.
    #[prost(string, tag = "3")]
    pub producer_version: String,
    /// Model namespace.
    #[prost(string, tag = "4")]
    pub domain: String,
    /// Model version.
    #[prost(int64, optional, tag = "5")]
    pub model_version: Option<i64>,
    /// Free text.
    #[prost(string, tag = "6")]
    pub doc_string: String,
    /// The graph.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Key/value metadata.
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// `OperatorSetIdProto`.
#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    /// Empty for the default `ai.onnx` domain.
    #[prost(string, tag = "1")]
    pub domain: String,
    /// Opset version.
    #[prost(int64, optional, tag = "2")]
    pub version: Option<i64>,
}

/// `StringStringEntryProto`.
#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    /// Key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `GraphProto`.
#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    /// Nodes in topological order.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Graph name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Constant tensors (the weights).
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Free text.
    #[prost(string, tag = "10")]
    pub doc_string: String,
    /// Graph inputs.
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Graph outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// Types of intermediate values.
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

/// `NodeProto`.
#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    /// Input value names.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output value names.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Node name.
    #[prost(string, tag = "3")]
    pub name: String,
    /// Operator.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// Operator domain (empty: `ai.onnx`).
    #[prost(string, tag = "7")]
    pub domain: String,
    /// Attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Free text.
    #[prost(string, tag = "6")]
    pub doc_string: String,
}

/// `AttributeProto` (no graphs, sparse tensors or type protos: the lab writes none).
#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    /// Attribute name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Which field below holds the value (see [`attr_type`]).
    #[prost(int32, optional, tag = "20")]
    pub r#type: Option<i32>,
    /// One float.
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    /// One integer.
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    /// One string.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    /// One tensor.
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// Floats (proto2: not packed).
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    /// Integers (proto2: not packed).
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
}

/// `TensorProto` (no segments or external data: the lab writes every tensor inline).
#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    /// Shape (proto2: not packed).
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// Element type (see [`data_type`]).
    #[prost(int32, optional, tag = "2")]
    pub data_type: Option<i32>,
    /// FLOAT values when not in `raw_data`.
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// INT32, INT8, UINT8, … values when not in `raw_data` (one per int32).
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    /// INT64 values when not in `raw_data`.
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// Tensor name.
    #[prost(string, tag = "8")]
    pub name: String,
    /// Free text.
    #[prost(string, tag = "12")]
    pub doc_string: String,
    /// Little-endian values, row-major.
    #[prost(bytes = "vec", optional, tag = "9")]
    pub raw_data: Option<Vec<u8>>,
}

/// `ValueInfoProto`.
#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    /// Value name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its type.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    /// Free text.
    #[prost(string, tag = "3")]
    pub doc_string: String,
}

/// `TypeProto`, tensors only (`tensor_type` is member 1 of its `oneof value`).
#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    /// A tensor type.
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TypeProtoTensor>,
}

/// `TypeProto.Tensor`.
#[derive(Clone, PartialEq, Message)]
pub struct TypeProtoTensor {
    /// Element type (see [`data_type`]).
    #[prost(int32, optional, tag = "1")]
    pub elem_type: Option<i32>,
    /// Shape.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// `TensorShapeProto`.
#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    /// Dimensions.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// `TensorShapeProto.Dimension`: a size or a symbolic name (`oneof value`).
#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    /// Fixed size.
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    /// Symbolic size (`batch_size`).
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

impl TensorProto {
    /// A tensor with its values in `raw_data` (how `torch.onnx.export` and
    /// `numpy_helper.from_array` store them).
    pub fn raw(name: &str, data_type: i32, dims: &[usize], raw: Vec<u8>) -> TensorProto {
        TensorProto {
            name: name.to_string(),
            data_type: Some(data_type),
            dims: dims.iter().map(|&d| d as i64).collect(),
            raw_data: Some(raw),
            ..Default::default()
        }
    }

    /// A FLOAT tensor in `raw_data`.
    pub fn f32(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        TensorProto::raw(name, data_type::FLOAT, dims, raw)
    }

    /// An INT64 tensor in `raw_data`.
    pub fn i64(name: &str, dims: &[usize], values: &[i64]) -> TensorProto {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        TensorProto::raw(name, data_type::INT64, dims, raw)
    }

    /// The FLOAT values of a tensor the lab wrote (`raw_data` or `float_data`).
    pub fn f32_values(&self) -> Option<Vec<f32>> {
        if self.data_type != Some(data_type::FLOAT) {
            return None;
        }
        match &self.raw_data {
            Some(raw) => Some(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            None => Some(self.float_data.clone()),
        }
    }

    /// The shape as sizes (`None` if a dimension is negative).
    pub fn shape(&self) -> Option<Vec<usize>> {
        self.dims.iter().map(|&d| usize::try_from(d).ok()).collect()
    }
}

impl AttributeProto {
    /// An INT attribute.
    pub fn int(name: &str, i: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: Some(attr_type::INT),
            i: Some(i),
            ..Default::default()
        }
    }

    /// A FLOAT attribute.
    pub fn float(name: &str, f: f32) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: Some(attr_type::FLOAT),
            f: Some(f),
            ..Default::default()
        }
    }

    /// An INTS attribute.
    pub fn ints(name: &str, ints: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: Some(attr_type::INTS),
            ints: ints.to_vec(),
            ..Default::default()
        }
    }

    /// A TENSOR attribute.
    pub fn tensor(name: &str, t: TensorProto) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: Some(attr_type::TENSOR),
            t: Some(t),
            ..Default::default()
        }
    }
}

/// One dimension of a declared input or output.
#[derive(Clone, Debug)]
pub enum Dim {
    /// Fixed size.
    Fixed(usize),
    /// Symbolic size.
    Named(&'static str),
}

impl ValueInfoProto {
    /// A tensor value of element type `elem_type` and shape `dims`.
    pub fn tensor(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => Dimension {
                    dim_value: Some(*n as i64),
                    dim_param: None,
                },
                Dim::Named(s) => Dimension {
                    dim_value: None,
                    dim_param: Some((*s).to_string()),
                },
            })
            .collect();
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TypeProtoTensor {
                    elem_type: Some(elem_type),
                    shape: Some(TensorShapeProto { dim }),
                }),
            }),
            doc_string: String::new(),
        }
    }
}

/// Encodes a model as the bytes of a `.onnx` file.
pub fn encode_model(m: &ModelProto) -> Vec<u8> {
    m.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{IR_VERSION, OPSET};

    #[test]
    fn protobuf_round_trip() {
        let t = TensorProto {
            int32_data: vec![0, -3],
            ..TensorProto::raw("w", data_type::INT8, &[2, 1], vec![0xfd, 7])
        };
        let n = NodeProto {
            input: vec!["x".into(), "w".into()],
            output: vec!["y".into()],
            name: "/a/MatMul".into(),
            op_type: "MatMul".into(),
            attribute: vec![
                AttributeProto::int("transB", 0),
                AttributeProto::float("alpha", 0.0),
                AttributeProto::ints("perm", &[0, 2, 1]),
                AttributeProto::tensor("value", TensorProto::f32("", &[], &[2.5])),
            ],
            ..Default::default()
        };
        let m = ModelProto {
            ir_version: Some(IR_VERSION),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: Some(OPSET),
            }],
            producer_name: "pytorch".into(),
            graph: Some(GraphProto {
                node: vec![n],
                initializer: vec![t],
                input: vec![ValueInfoProto::tensor(
                    "x",
                    data_type::FLOAT,
                    &[Dim::Named("batch_size"), Dim::Fixed(2)],
                )],
                ..Default::default()
            }),
            ..Default::default()
        };
        let bytes = encode_model(&m);
        let back = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, m);
        // proto2 presence: an attribute of value 0 is still on the wire
        let g = back.graph.unwrap();
        assert_eq!(g.node[0].attribute[0].i, Some(0));
        assert_eq!(g.node[0].attribute[1].f, Some(0.0));
        // field numbers: ir_version is field 1 (varint), so the file starts 0x08 0x08
        assert_eq!(&bytes[..2], &[0x08, 0x08]);
    }
}
