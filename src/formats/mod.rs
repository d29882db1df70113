//! Weight file formats other than safetensors, read as data (never executed): GGUF
//! (llama.cpp). Parsing does not care where bytes come from: the caller fetches them.

pub mod gguf;
