//! The lab's ONNX releases: its fp32 export and int8 release check out against `onnx` and
//! onnxruntime's own `quantize_dynamic` (tests/py/check_lab_onnx.py), read back through the
//! tool as their safetensors parent, and audits against the parent reach the right verdict,
//! E3q reproducing a plain int8 release code for code.

use std::path::{Path, PathBuf};
use std::process::Command;

use weight_audit::model::Model;
use weight_audit_lab::onnx::{OnnxExport, write_onnx};
use weight_audit_lab::{self as lab, ArchConfig, ArchKind, Recipe};

/// A lab model of `kind` at width `hidden` (seed `seed`, fine-tuned by `tune` first when
/// given): its safetensors folder, and ONNX folders `fp32/` and `int8/`.
fn lab_onnx(
    dir: &Path,
    kind: ArchKind,
    hidden: usize,
    seed: u64,
    tune: Option<&str>,
) -> [PathBuf; 3] {
    let mut m =
        lab::weights::generate(&Recipe::new(ArchConfig::scaled(kind, hidden), seed)).unwrap();
    if let Some(t) = tune {
        let specs = lab::parse_transforms(t).unwrap();
        lab::transform::apply_all(&mut m, &specs, &|p: &str| lab::read_model(Path::new(p)))
            .unwrap();
    }
    let floats = dir.join("safetensors");
    lab::write_model(&m, &floats).unwrap();
    for export in [OnnxExport::Fp32, OnnxExport::Int8] {
        write_onnx(&m, &dir.join(export.name()).join("model.onnx"), export).unwrap();
    }
    [floats, dir.join("fp32"), dir.join("int8")]
}

fn open(dir: &Path) -> Model {
    let source = weight_audit::source::local::LocalSource::open(dir).unwrap();
    Model::open(
        Box::new(source),
        &weight_audit::model::ModelOptions::default(),
    )
    .unwrap()
}

#[test]
fn lab_onnx_files_agree_with_onnx_and_onnxruntime() {
    if !crate::util::python_with(
        "onnx, onnxruntime, numpy, safetensors",
        "the onnxruntime check of the lab's ONNX",
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/check_lab_onnx.py");
    for kind in [ArchKind::Llama, ArchKind::Bert] {
        let dir = d.path().join(kind.model_type());
        let [floats, fp32, int8] = lab_onnx(&dir, kind, 64, 5, None);
        let o = Command::new("python3")
            .arg(&script)
            .arg(fp32.join("model.onnx"))
            .arg(int8.join("model.onnx"))
            .arg(&floats)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "check_lab_onnx.py {kind:?}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// Every weight of the fp32 export reads as the parent's, bit for bit; the int8 release lists
/// the same weights and shapes, each value within half a quantisation step of the parent's.
#[test]
fn lab_onnx_reads_back_as_its_parent() {
    let d = tempfile::tempdir().unwrap();
    for kind in [ArchKind::Llama, ArchKind::Bert] {
        let [floats, fp32, int8] = lab_onnx(&d.path().join(kind.model_type()), kind, 64, 6, None);
        let (parent, fp32, int8) = (open(&floats), open(&fp32), open(&int8));
        let mut compared = 0;
        for t in parent.tensors() {
            let whole = |m: &Model| {
                let u = m
                    .tensor(&t.name)
                    .unwrap_or_else(|| panic!("{kind:?}: {} not in {}", t.name, m.describe()));
                assert_eq!(u.shape, t.shape, "{}", t.name);
                m.read_tensor_f32(&u.name).unwrap()
            };
            let want = parent.read_tensor_f32(&t.name).unwrap();
            let got = whole(&fp32);
            assert!(
                want.iter()
                    .zip(&got)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{kind:?} fp32 {}",
                t.name
            );
            let q = whole(&int8);
            let amax = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = want
                .iter()
                .zip(&q)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            // a per-tensor uint8 step is (max − min) / 255 ≤ 2·amax / 255
            assert!(
                worst <= amax / 127.0,
                "{kind:?} int8 {}: {worst} vs {amax}",
                t.name
            );
            compared += 1;
        }
        assert_eq!(compared, parent.tensors().len());
    }
}

/// The float parent against its int8 release: DERIVED, E3q among the reasons (every run of
/// codes reproduced); against a fine-tune's int8 release: DERIVED or LIKELY DERIVED, E3q
/// silent; against an independent model's int8 release: NOT SUPPORTED BY WEIGHTS.
#[test]
fn audits_of_onnx_int8_releases_reach_the_right_verdict() {
    let d = tempfile::tempdir().unwrap();
    let [floats, _, int8] = lab_onnx(&d.path().join("p"), ArchKind::Llama, 128, 41, None);
    let [_, _, tuned] = lab_onnx(
        &d.path().join("t"),
        ArchKind::Llama,
        128,
        41,
        Some("fine_tune(rel=0.02,seed=5)"),
    );
    let [_, _, other] = lab_onnx(&d.path().join("o"), ArchKind::Llama, 128, 42, None);
    let parent = open(&floats);

    let plain = open(&int8);
    let r = crate::util::e3q(&parent, &plain);
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["quantised"], "B");
    assert_eq!(r["identical_fraction"], 1.0, "{r}");
    assert!(r["null_identical_fraction"].as_f64().unwrap() < 0.01, "{r}");
    assert!(
        r["schemes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "ONNX int8 per-row"),
        "{r}"
    );
    let v = crate::util::verdict(&parent, &plain);
    assert_eq!(v.verdict.label(), "DERIVED", "{:?}", v.reasons);
    let rule = v
        .evidence
        .iter()
        .find(|e| e.rule == "e3q-requantised-blocks")
        .unwrap();
    assert!(
        rule.fired && rule.level == weight_audit::verdict::Level::Accuses,
        "{rule:?}"
    );

    let tuned = open(&tuned);
    let r = crate::util::e3q(&parent, &tuned);
    assert!(r["identical_fraction"].as_f64().unwrap() < 0.2, "{r}");
    let v = crate::util::verdict(&parent, &tuned);
    assert!(
        matches!(v.verdict.label(), "DERIVED" | "LIKELY DERIVED"),
        "{}: {:?}",
        v.verdict.label(),
        v.reasons
    );

    let other = open(&other);
    let r = crate::util::e3q(&parent, &other);
    assert!(r["identical_fraction"].as_f64().unwrap() < 0.01, "{r}");
    let v = crate::util::verdict(&parent, &other);
    assert_eq!(
        v.verdict.label(),
        "NOT SUPPORTED BY WEIGHTS",
        "{:?}",
        v.reasons
    );
}
