//! Experiments on models whose answer is known by construction.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use weight_audit::experiments::compare_streaming;
use weight_audit::model::{Model, ModelOptions};
use weight_audit::source::local::LocalSource;

use crate::alloc_probe::peak_extra;
use crate::util::*;

pub fn open(dir: &Path) -> Model {
    Model::open(
        Box::new(LocalSource::open(dir).unwrap()),
        &ModelOptions::default(),
    )
    .unwrap()
}

/// A model folder holding one BF16 tensor of `numel` elements as a sparse file, with
/// `pattern` written at a few places so the comparison is not of zeros alone.
fn sparse_model(dir: &Path, numel: u64, pattern: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    let json = format!(
        r#"{{"w":{{"dtype":"BF16","shape":[{numel}],"data_offsets":[0,{}]}}}}"#,
        numel * 2
    );
    let mut f = fs::File::create(dir.join("model.safetensors")).unwrap();
    f.write_all(&(json.len() as u64).to_le_bytes()).unwrap();
    f.write_all(json.as_bytes()).unwrap();
    let data_start = 8 + json.len() as u64;
    f.set_len(data_start + numel * 2).unwrap();
    for at in [0, numel / 3, numel - (pattern.len() as u64 / 2)] {
        f.seek(SeekFrom::Start(data_start + at * 2)).unwrap();
        f.write_all(pattern).unwrap();
    }
}

#[test]
fn comparing_two_1gib_tensors_streams_in_bounded_memory() {
    let (a, b) = (tmp(), tmp());
    let numel = 512 << 20; // 1 GiB of BF16
    let pattern: Vec<u8> = (0..1 << 20)
        .flat_map(|i: u32| half::bf16::from_f32((i % 97) as f32 - 48.0).to_le_bytes())
        .collect();
    let noisy: Vec<u8> = (0..1 << 20)
        .flat_map(|i: u32| half::bf16::from_f32((i % 97) as f32 - 47.0).to_le_bytes())
        .collect();
    sparse_model(a.path(), numel, &pattern);
    sparse_model(b.path(), numel, &noisy);
    let (ma, mb) = (open(a.path()), open(b.path()));
    let (m, peak) = peak_extra(|| compare_streaming(&ma, "w", &mb, "w", 1 << 20).unwrap());
    assert_eq!(m.n, numel);
    assert!(m.cosine > 0.99 && m.cosine < 1.0, "{m:?}");
    assert!(peak < 64 << 20, "peak extra memory {} MiB", peak >> 20);
}
