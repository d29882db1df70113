//! The part of ONNX's protobuf schema this reader needs, as `prost` messages.
//!
//! Written by hand with `#[derive(prost::Message)]` rather than generated, so the crate needs
//! neither a build script nor `protoc`. Every field mirrors `onnx.proto` of onnx 1.23.2
//! (`syntax = "proto2"`, IR version 14); the field numbers are cited beside each field and the
//! messages keep ONNX's names. Fields left out (doc strings, value infos, training info,
//! functions, sparse initializers, attribute sub-graphs, `string_data` …) are skipped by `prost` as unknown
//! fields: their bytes are checked to be well formed but never kept. Decoding goes through
//! `prost`'s own wire decoder, which checks every length against the bytes that remain before
//! taking them and bounds nesting depth (100).
//!
//! `raw_data` is a [`bytes::Bytes`]: decoded from a `Bytes` input it is a slice of that input
//! (no copy), so its offset in the file is recovered from its pointer (see `tensor.rs`).

use bytes::Bytes;

/// `ModelProto` (onnx.proto: `message ModelProto`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// `optional int64 ir_version = 1;`
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// `optional string producer_name = 2;`
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// `optional string producer_version = 3;`
    #[prost(string, tag = "3")]
    pub producer_version: String,
    /// `optional GraphProto graph = 7;`
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// `repeated OperatorSetIdProto opset_import = 8;`
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
}

/// `OperatorSetIdProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// `optional string domain = 1;` (empty: the default `ai.onnx` domain)
    #[prost(string, tag = "1")]
    pub domain: String,
    /// `optional int64 version = 2;`
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// `GraphProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// `repeated NodeProto node = 1;`
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// `optional string name = 2;`
    #[prost(string, tag = "2")]
    pub name: String,
    /// `repeated TensorProto initializer = 5;`
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
}

/// `NodeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// `repeated string input = 1;` (an empty string: an optional input left out)
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// `repeated string output = 2;`
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// `optional string name = 3;`
    #[prost(string, tag = "3")]
    pub name: String,
    /// `optional string op_type = 4;`
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// `repeated AttributeProto attribute = 5;`
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// `optional string domain = 7;`
    #[prost(string, tag = "7")]
    pub domain: String,
}

/// `AttributeProto`: only the name and the integer value (`axis`, `transB`, `block_size`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    /// `optional string name = 1;`
    #[prost(string, tag = "1")]
    pub name: String,
    /// `optional int64 i = 3;`
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    /// `optional AttributeType type = 20;` (2: `INT`)
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

/// `TensorProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// `repeated int64 dims = 1;`
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// `optional int32 data_type = 2;` (`TensorProto.DataType`)
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// `optional Segment segment = 3;` (refused, as `onnx.numpy_helper.to_array` does)
    #[prost(message, optional, tag = "3")]
    pub segment: Option<Segment>,
    /// `repeated float float_data = 4 [packed = true];`
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// `repeated int32 int32_data = 5 [packed = true];`
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    /// `repeated int64 int64_data = 7 [packed = true];`
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// `optional string name = 8;`
    #[prost(string, tag = "8")]
    pub name: String,
    /// `optional bytes raw_data = 9;` (presence matters: it wins over the typed fields)
    #[prost(bytes = "bytes", optional, tag = "9")]
    pub raw_data: Option<Bytes>,
    /// `repeated double double_data = 10 [packed = true];`
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    /// `repeated uint64 uint64_data = 11 [packed = true];`
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
    /// `repeated StringStringEntryProto external_data = 13;`
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// `optional DataLocation data_location = 14;` (0 `DEFAULT`, 1 `EXTERNAL`)
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

/// `TensorProto.Segment`: only its presence matters.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Segment {}

/// A message whose fields are all skipped unread (kept only to be counted).
///
/// Declared as an empty message, it is zero-sized: a `Vec` of them never allocates.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Skipped {}

/// `StringStringEntryProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    /// `optional string key = 1;`
    #[prost(string, tag = "1")]
    pub key: String,
    /// `optional string value = 2;`
    #[prost(string, tag = "2")]
    pub value: String,
}

/// The model's outline, for counting before the real decode: `graph` (7) with its `node` (1)
/// and `initializer` (5) entries decoded as zero-sized [`Skipped`] messages, so counting a
/// hostile file's millions of empty entries allocates nothing.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelOutline {
    /// `optional GraphProto graph = 7;`
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphOutline>,
}

/// `GraphProto`'s entries, counted (see [`ModelOutline`]).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphOutline {
    /// `repeated NodeProto node = 1;`
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<Skipped>,
    /// `repeated TensorProto initializer = 5;`
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<Skipped>,
}
