//! Benchmarks (not tests): `cargo bench` or `cargo bench -- NAME` to run one.
//! Each prints the median of several runs; numbers go in the closing notes, never in tests.

use std::time::{Duration, Instant};

use weight_audit::dtype::{Dtype, decode_f32};
use weight_audit::header;

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn time<R>(reps: usize, mut f: impl FnMut() -> R) -> Duration {
    let _warm = f();
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

fn bench_decode_bf16() {
    let n = 64 << 20;
    let bytes: Vec<u8> = (0..n * 2).map(|i| (i * 7 % 251) as u8).collect();
    let mut out = Vec::with_capacity(n);
    let d = time(7, || {
        decode_f32(Dtype::Bf16, &bytes, &mut out).unwrap();
        out.len()
    });
    println!(
        "decode_bf16: {n} elements in {:.1} ms = {:.2} G elements/s (1 core)",
        d.as_secs_f64() * 1e3,
        n as f64 / d.as_secs_f64() / 1e9
    );
}

fn bench_header_50k() {
    let mut entries = Vec::new();
    let mut off = 0u64;
    for i in 0..50_000 {
        let len = 4096 * 2;
        entries.push(format!(
            r#""model.layers.{}.mlp.experts.{}.up_proj.weight":{{"dtype":"BF16","shape":[4,1024],"data_offsets":[{off},{}]}}"#,
            i / 128,
            i % 128,
            off + len
        ));
        off += len;
    }
    let json = format!("{{{}}}", entries.join(","));
    let file_size = 8 + json.len() as u64 + off;
    let d = time(5, || {
        header::parse_json(json.as_bytes(), json.len() as u64, file_size)
            .unwrap()
            .tensors
            .len()
    });
    println!(
        "header_50k: {} KiB header, 50000 tensors parsed+validated in {:.1} ms",
        json.len() / 1024,
        d.as_secs_f64() * 1e3
    );
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let benches: [(&str, fn()); 2] = [
        ("decode_bf16", bench_decode_bf16),
        ("header_50k", bench_header_50k),
    ];
    for (name, f) in benches {
        if filter.is_empty() || filter.iter().any(|x| name.contains(x.as_str())) {
            f();
        }
    }
}
