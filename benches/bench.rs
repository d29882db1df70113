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
    // Whole buffer at once: bound by memory bandwidth (128 MiB in, 256 MiB out).
    let whole = time(7, || {
        decode_f32(Dtype::Bf16, &bytes, &mut out).unwrap();
        out.len()
    });
    // As the streaming comparisons use it: chunks into a reused, cache-resident buffer.
    let chunk = 256 << 10;
    let mut buf = Vec::with_capacity(chunk);
    let chunked = time(7, || {
        let mut sum = 0.0f32;
        for c in bytes.chunks(chunk * 2) {
            decode_f32(Dtype::Bf16, c, &mut buf).unwrap();
            sum += buf[0];
        }
        sum
    });
    let rate = |d: Duration| n as f64 / d.as_secs_f64() / 1e9;
    println!(
        "decode_bf16: {n} elements, 1 core: {:.2} G elements/s in 256 Ki-element chunks, {:.2} G elements/s into one 256 MiB buffer (memory-bound)",
        rate(chunked),
        rate(whole)
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

/// 10 000 reads of 256 bytes spaced 4 KiB apart in one 40 MiB file, from the loopback Hub
/// server, with and without coalescing.
fn bench_ranges_10k() {
    use std::sync::Arc;
    use weight_audit::source::hub::HubSource;
    use weight_audit::source::{ByteRange, FileRange, HubClient, HubOptions, Source};
    use weight_audit_hub::{RepoSpec, TestHub};

    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..40u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("blob.safetensors"), &data).unwrap();
    let hub = TestHub::start().unwrap();
    hub.add_repo(RepoSpec::new("bench/ranges", dir.path()).lfs_sha256(false))
        .unwrap();
    let ranges: Vec<FileRange> = (0..10_000u64)
        .map(|i| FileRange {
            path: "blob.safetensors".into(),
            range: ByteRange::new(i * 4096, i * 4096 + 256),
        })
        .collect();
    for (label, gap) in [
        ("no coalescing", 0u64),
        ("coalescing, gap 128 KiB", 128 * 1024),
    ] {
        let opts = HubOptions {
            endpoint: hub.endpoint(),
            coalesce_gap: gap,
            ..HubOptions::default()
        };
        let client = Arc::new(HubClient::new(opts).unwrap());
        let src = HubSource::open(client, "bench/ranges", "main").unwrap();
        let t = Instant::now();
        let got = src.read_ranges(&ranges).unwrap();
        let d = t.elapsed();
        assert_eq!(got[9999], data[9999 * 4096..9999 * 4096 + 256]);
        let s = src.stats();
        println!(
            "ranges_10k ({label}): {} requests, {} fetched, {:.0} ms",
            s.requests - 1,
            weight_audit::source::human_bytes(s.bytes_fetched),
            d.as_secs_f64() * 1e3
        );
    }
}

/// The full metric set over two BF16 tensors, decode included, one core.
fn bench_metrics_bf16() {
    let n = 16 << 20;
    let a: Vec<u8> = (0..n)
        .flat_map(|i| half::bf16::from_f32(((i * 7919) % 1000) as f32 / 500.0 - 1.0).to_le_bytes())
        .collect();
    let b: Vec<u8> = (0..n)
        .flat_map(|i| half::bf16::from_f32(((i * 7907) % 1000) as f32 / 500.0 - 1.0).to_le_bytes())
        .collect();
    let chunk = 1 << 20;
    let (mut da, mut db) = (Vec::new(), Vec::new());
    let d = time(3, || {
        let mut acc = weight_audit::metrics::PairAccumulator::default();
        for (ca, cb) in a.chunks(chunk * 2).zip(b.chunks(chunk * 2)) {
            decode_f32(Dtype::Bf16, ca, &mut da).unwrap();
            decode_f32(Dtype::Bf16, cb, &mut db).unwrap();
            acc.push(&da, &db);
        }
        acc.finish().cosine
    });
    println!(
        "metrics_bf16: {n} element pairs in {:.0} ms = {:.0} M elements/s (1 core, decode included)",
        d.as_secs_f64() * 1e3,
        n as f64 / d.as_secs_f64() / 1e6
    );
}

fn bf16_matrix(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut r = fastrand::Rng::with_seed(seed);
    let bytes: Vec<u8> = (0..rows * cols)
        .flat_map(|_| half::bf16::from_f32(r.f32() - 0.5).to_le_bytes())
        .collect();
    let mut out = Vec::new();
    decode_f32(Dtype::Bf16, &bytes, &mut out).unwrap();
    out
}

/// E8's per-layer work: debiased CKA over 4096 hidden dims of two BF16 projections, through
/// the n×n Grams (K = WᵀW, f64 GEMM via nalgebra) and through [`projection_cka`], which takes
/// the row space when rows < 4096 (E8's sampled rows at 100B scale: a few hundred).
///
/// [`projection_cka`]: weight_audit::cka::projection_cka
fn bench_e8_cka() {
    use weight_audit::cka::{
        MatRef, center_gram_unbiased, cka_centered, column_gram, projection_cka,
    };
    let d = 4096;
    for rows in [320usize, 1024, 8192] {
        let a = bf16_matrix(rows, d, 1);
        let b = bf16_matrix(rows, d, 2);
        let (ma, mb) = (
            MatRef::new(&a, rows, d).unwrap(),
            MatRef::new(&b, rows, d).unwrap(),
        );
        let grams = time(2, || {
            let mut ka = column_gram(ma);
            let mut kb = column_gram(mb);
            center_gram_unbiased(&mut ka, d).unwrap();
            center_gram_unbiased(&mut kb, d).unwrap();
            cka_centered(&ka, &kb)
        });
        let auto = time(2, || projection_cka(ma, mb).unwrap());
        println!(
            "e8_cka: two {rows}x{d} BF16 projections -> unbiased CKA over {d} hidden dims: Grams {:.2} s, projection_cka {:.3} s ({} threads)",
            grams.as_secs_f64(),
            auto.as_secs_f64(),
            rayon::current_num_threads()
        );
    }
}

/// The hidden-dimension assignment (scipy's shortest augmenting path via `lsap`) at 1024 and 4096, on a
/// planted permutation (a derived pair) and on unrelated columns (an independent pair), and the
/// greedy fallback at 4096.
fn bench_lap() {
    use weight_audit::assignment::{greedy_assignment, hungarian_assignment};
    let sizes: Vec<usize> = std::env::var("LAP_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![1024, 4096]);
    for d in sizes {
        let mut r = fastrand::Rng::with_seed(3);
        let random: Vec<f64> = (0..d * d).map(|_| r.f64() * 0.05).collect();
        let mut planted = random.clone();
        let mut perm: Vec<usize> = (0..d).collect();
        r.shuffle(&mut perm);
        for (i, &p) in perm.iter().enumerate() {
            planted[i * d + p] = 0.9;
        }
        for (what, w) in [("planted", &planted), ("unrelated", &random)] {
            let t = Instant::now();
            let a = hungarian_assignment(w, d, d).unwrap();
            let h = t.elapsed();
            let t = Instant::now();
            let g = greedy_assignment(w, d, d).unwrap();
            let gr = t.elapsed();
            println!(
                "lap: {d}x{d} {what}: hungarian {:.2} s, greedy {:.2} s (greedy = hungarian: {})",
                h.as_secs_f64(),
                gr.as_secs_f64(),
                a == g
            );
        }
    }
}

/// E8's hidden-dimension alignment: column cosines of two 8192-token × 4096 embedding samples
/// (one f64 GEMM) and the exact assignment, for a sign-flipped permuted copy.
fn bench_e8_align() {
    use weight_audit::cka::MatRef;
    use weight_audit::hidden_alignment::align_hidden;
    let (rows, d) = (8192usize, 4096usize);
    let a = bf16_matrix(rows, d, 4);
    let mut perm: Vec<usize> = (0..d).collect();
    fastrand::Rng::with_seed(5).shuffle(&mut perm);
    let b: Vec<f32> = a
        .chunks(d)
        .flat_map(|row| perm.iter().map(|&i| -row[i]).collect::<Vec<_>>())
        .collect();
    let t = Instant::now();
    let al = align_hidden(
        MatRef::new(&a, rows, d).unwrap(),
        MatRef::new(&b, rows, d).unwrap(),
        weight_audit::hidden_alignment::DEFAULT_LAP_CAP,
    )
    .unwrap();
    println!(
        "e8_align: {rows}x{d} embedding samples, permuted copy: aligned in {:.2} s (recovered: {})",
        t.elapsed().as_secs_f64(),
        al.target_to_base == perm
    );
}

/// What the Procrustes alignment adds to E8 for a 4096-wide pair (8192 shared-token rows of a
/// rotated copy): the fit on all rows (one f64 GEMM for `X_bᵀX_t`, one SVD), the held-out choice
/// (a Procrustes fit and the permutation LAP on half the rows, both judged on the other half), and
/// re-basing one q_proj-sized matrix (`W·R`, done per Q/K matrix of the base model). It reads no
/// extra bytes: the same embedding rows serve both alignments (canonical folding adds the input
/// norm gains, `hidden × 2` bytes per layer). `PROCRUSTES_D=1024` for a quicker run.
fn bench_procrustes_4096() {
    use weight_audit::cka::MatRef;
    use weight_audit::hidden_alignment::align_hidden;
    use weight_audit::procrustes::{align_hidden_procrustes, mean_row_cosine};
    let d: usize = std::env::var("PROCRUSTES_D")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4096);
    let rows = 2 * d;
    let a = bf16_matrix(rows, d, 6);
    let q = weight_audit_lab::obfuscate::random_orthogonal(d, 7, "bench");
    let am = nalgebra::DMatrix::from_row_iterator(rows, d, a.iter().map(|&v| f64::from(v)));
    let bm = am * &q;
    let b: Vec<f32> = (0..rows)
        .flat_map(|i| (0..d).map(move |j| (i, j)))
        .map(|(i, j)| bm[(i, j)] as f32)
        .collect();
    let (ea, eb) = (
        MatRef::new(&a, rows, d).unwrap(),
        MatRef::new(&b, rows, d).unwrap(),
    );
    let t = Instant::now();
    let p = align_hidden_procrustes(ea, eb).unwrap();
    let fit = t.elapsed();
    let half = rows / 2 * d;
    let (fa, fb) = (
        MatRef::new(&a[..half], rows / 2, d).unwrap(),
        MatRef::new(&b[..half], rows / 2, d).unwrap(),
    );
    let (va, vb) = (
        MatRef::new(&a[half..], rows / 2, d).unwrap(),
        MatRef::new(&b[half..], rows / 2, d).unwrap(),
    );
    let t = Instant::now();
    let ph = align_hidden_procrustes(fa, fb).unwrap();
    let fit_p = mean_row_cosine(
        MatRef::new(&ph.apply(va).unwrap(), rows / 2, d).unwrap(),
        vb,
    )
    .unwrap();
    let pro_half = t.elapsed();
    let t = Instant::now();
    let lap = align_hidden(fa, fb, weight_audit::hidden_alignment::DEFAULT_LAP_CAP).unwrap();
    let fit_l = mean_row_cosine(
        MatRef::new(&lap.apply(va).unwrap(), rows / 2, d).unwrap(),
        vb,
    )
    .unwrap();
    let lap_half = t.elapsed();
    let w = bf16_matrix(d, d, 8);
    let t = Instant::now();
    let _ = p.apply(MatRef::new(&w, d, d).unwrap()).unwrap();
    let apply = t.elapsed();
    println!(
        "procrustes_4096: {rows}x{d} rows of a rotated copy: fit {:.2} s (fit quality {:.6}); held-out choice: Procrustes on half {:.2} s (held-out cosine {fit_p:.4}), LAP on half {:.2} s ({fit_l:.4}); re-basing one {d}x{d} matrix {:.2} s; extra bytes read: 0",
        fit.as_secs_f64(),
        p.fit,
        pro_half.as_secs_f64(),
        lap_half.as_secs_f64(),
        apply.as_secs_f64()
    );
}

/// The scaled GLM-4.5-Air and Solar-Open-100B replicas, written to `dir` and opened.
fn replica_models(
    dir: &std::path::Path,
) -> (weight_audit::model::Model, weight_audit::model::Model) {
    use weight_audit::model::{Model, ModelOptions};
    use weight_audit::source::local::LocalSource;
    let models = weight_audit_lab::replica(dir, &Default::default()).unwrap();
    let open = |p: &std::path::Path| {
        Model::open(
            Box::new(LocalSource::open(p).unwrap()),
            &ModelOptions::default(),
        )
        .unwrap()
    };
    (open(&models[0].dir), open(&models[1].dir))
}

/// E1+E2+E4+E5+E7 on the scaled GLM-4.5-Air / Solar-Open-100B replica (real depths and
/// names, width 256), read from local folders.
fn bench_suite_replica() {
    use weight_audit::experiments::{self as ex, Subjects};

    let dir = tempfile::tempdir().unwrap();
    let (a, b) = replica_models(dir.path());
    let subjects = Subjects::new(&a, &b, &[]);
    let ids = ["e1", "e2", "e4", "e5", "e7"];
    let exps: Vec<_> = ids.iter().map(|i| ex::by_id(i).unwrap()).collect();
    let t = Instant::now();
    let out = ex::run_all(&subjects, &exps).unwrap();
    let d = t.elapsed();
    let bytes = a.source().stats().local_bytes + b.source().stats().local_bytes;
    println!(
        "suite_replica (glm-4.5-air vs solar-open-100b): {} experiments in {:.2} s, {} read",
        out.len(),
        d.as_secs_f64(),
        weight_audit::source::human_bytes(bytes)
    );
}

/// Bytes a full E8 plans on the scaled GLM-4.5-Air / Solar-Open-100B replica at row fractions
/// 1, 1/4 and 1/16, with its score at each.
fn bench_e8_fractions() {
    use weight_audit::experiments::{Experiment, Plan, Subjects, fetch};
    use weight_audit::experiments::{e8_cka::Cka, e8_params::Params};

    let dir = tempfile::tempdir().unwrap();
    let (a, b) = replica_models(dir.path());
    let subjects = Subjects::new(&a, &b, &[]);
    for fraction in [1.0, 0.25, 0.0625] {
        let e8 = Cka::new(Params {
            row_fraction: fraction,
            ..Params::default()
        });
        let mut plan = Plan::default();
        e8.plan(&subjects, &mut plan);
        let bytes = plan.bytes(&subjects);
        let t = Instant::now();
        let out = e8
            .run(&subjects, &fetch(&subjects, &plan).unwrap())
            .unwrap();
        let score = out.result["pairs"][0]["score_assigned"]
            .as_f64()
            .unwrap_or(f64::NAN);
        println!(
            "e8_fractions: row fraction {fraction}: {} + {} planned, score {score:.4}, {:.2} s",
            weight_audit::source::human_bytes(bytes[0]),
            weight_audit::source::human_bytes(bytes[1]),
            t.elapsed().as_secs_f64()
        );
    }
}

/// Verifying the demo bundle in memory: every check `audit verify` runs without --reproduce.
fn bench_verify_demo() {
    let dir = tempfile::tempdir().unwrap();
    let zip = weight_audit::demo::DemoRun::run(dir.path())
        .unwrap()
        .bundle_bytes()
        .unwrap();
    let opts = weight_audit::bundle::VerifyOptions {
        public_key: Some(weight_audit::bundle::demo::demo_key().public_key()),
        ..Default::default()
    };
    let d = time(9, || {
        let v = weight_audit::bundle::verify_bundle_default(&zip, &opts);
        assert!(v.passed(), "{}", v.text());
    });
    println!(
        "verify_demo: {} KiB bundle verified in memory in {:.1} ms (goal < 1 s)",
        zip.len() / 1024,
        d.as_secs_f64() * 1e3
    );
}

/// Rendering the demo audit's report (markdown, HTML, every plot as SVG and PNG) from its
/// results.json.
fn bench_report_render() {
    let dir = tempfile::tempdir().unwrap();
    let results = weight_audit::demo::DemoRun::run(dir.path())
        .unwrap()
        .results;
    let value = serde_json::to_value(&results).unwrap();
    let files = weight_audit::report::render(&value).unwrap();
    let d = time(5, || weight_audit::report::render(&value).unwrap().len());
    let size = |ext: &str| -> usize {
        files
            .iter()
            .filter(|(k, _)| k.ends_with(ext))
            .map(|(_, v)| v.len())
            .sum()
    };
    println!(
        "report_render (demo): {} files in {:.0} ms; report.html {} KiB, report.md {} KiB, SVG {} KiB, PNG {} KiB, total {} KiB (results.json {} KiB)",
        files.len(),
        d.as_secs_f64() * 1e3,
        files["report.html"].len() / 1024,
        files["report.md"].len() / 1024,
        size(".svg") / 1024,
        size(".png") / 1024,
        files.values().map(Vec::len).sum::<usize>() / 1024,
        serde_json::to_string_pretty(&results).unwrap().len() / 1024,
    );
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let benches: [(&str, fn()); 12] = [
        ("decode_bf16", bench_decode_bf16),
        ("header_50k", bench_header_50k),
        ("ranges_10k", bench_ranges_10k),
        ("metrics_bf16", bench_metrics_bf16),
        ("suite_replica", bench_suite_replica),
        ("e8_fractions", bench_e8_fractions),
        ("e8_cka", bench_e8_cka),
        ("lap", bench_lap),
        ("e8_align", bench_e8_align),
        ("verify_demo", bench_verify_demo),
        ("report_render", bench_report_render),
        ("procrustes_4096", bench_procrustes_4096),
    ];
    for (name, f) in benches {
        if filter.is_empty() || filter.iter().any(|x| name.contains(x.as_str())) {
            f();
        }
    }
}
