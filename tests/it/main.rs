//! The one integration-test binary: `cargo test` builds and links it once.

mod adversarial;
mod alloc_probe;
mod bounded;
mod bundle;
mod bytes;
mod calibration;
mod cka;
mod e10;
mod experiments;
mod families;
mod gguf;
mod gguf_quants;
mod header_props;
mod hub;
mod hubserver;
mod inventory;
mod lab;
mod layers;
mod onnx;
mod onnx_lab;
mod real;
mod report;
mod run;
mod stat_faults;
mod util;

#[global_allocator]
static ALLOCATOR: alloc_probe::Probe = alloc_probe::Probe;
