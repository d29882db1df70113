//! Weight file formats other than safetensors, read as data (never executed): GGUF
//! (llama.cpp) and ONNX (initializers; the graph is only read to name them). Parsing does not
//! care where bytes come from: the caller fetches them.

pub mod gguf;
pub mod onnx;
