//! ONNX: models built with the `onnx` Python package (tests/py/onnx_reference.py: BERT- and
//! MPNet-style scopes) read back through the public API under their Hugging Face names, with
//! the values onnx itself reads (`numpy_helper.to_array`, its reference `DequantizeLinear`) bit
//! for bit; hostile files are
//! refused with errors naming the tensor and field; and the real ONNX releases CI fetches read
//! as the bank converter (scripts/real_models/onnx_models.py) converts them.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use serde_json::Value;
use weight_audit::formats::onnx::{self, Location, Naming, OnnxModel, OnnxWeight};

fn have_python(what: &str) -> bool {
    crate::util::python_with("onnx, numpy", what)
}

/// The bytes of a file, mapped (the real models are tens of MB: not counted as allocations,
/// which other tests of this binary measure).
fn map(path: &Path) -> std::io::Result<Bytes> {
    let file = std::fs::File::open(path)?;
    // SAFETY: the test's own files are not modified while mapped.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    Ok(Bytes::from_owner(map))
}

/// Parses a model file, its external data looked up beside it.
fn open(path: &Path) -> anyhow::Result<(OnnxModel, Bytes)> {
    let bytes = map(path)?;
    let dir = path.parent().unwrap().to_path_buf();
    let size = move |f: &str| std::fs::metadata(dir.join(f)).ok().map(|m| m.len());
    Ok((onnx::parse(bytes.clone(), &size)?, bytes))
}

/// A weight's Hugging Face values, its stored bytes read wherever they are.
fn values(w: &OnnxWeight, file: &Bytes, dir: &Path) -> Vec<f32> {
    let got = match &w.location {
        Location::External { file, begin, end } => {
            let mut f = std::fs::File::open(dir.join(file)).unwrap();
            f.seek(SeekFrom::Start(*begin)).unwrap();
            let mut buf = vec![0u8; (end - begin) as usize];
            f.read_exact(&mut buf).unwrap();
            onnx::decode(w, &buf)
        }
        _ => onnx::decode(w, &w.local_bytes(file).unwrap()),
    };
    got.unwrap_or_else(|e| panic!("{}: {e:#}", w.name))
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn json_bits(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Every model tests/py/onnx_reference.py builds reads as onnx reads it: names, shapes,
/// layouts, quantisation parameters and values bit for bit.
#[test]
fn python_built_models_read_as_onnx_reads_them() {
    if !have_python("the ONNX reference comparison") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/onnx_reference.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg(d.path())
        .status()
        .unwrap();
    assert!(status.success(), "onnx_reference.py failed");
    let expected: Value =
        serde_json::from_slice(&std::fs::read(d.path().join("expected.json")).unwrap()).unwrap();
    let models = expected["models"].as_object().unwrap();
    assert_eq!(models.len(), 8);
    for (file, want) in models {
        let (m, bytes) = open(&d.path().join(file)).unwrap_or_else(|e| panic!("{file}: {e:#}"));
        assert!(m.problems.is_empty(), "{file}: {:?}", m.problems);
        assert_eq!(m.opset, Some(17), "{file}");
        assert_eq!(m.producer, "pytorch 2.1.0", "{file}");
        let tensors = want["tensors"].as_array().unwrap();
        for t in tensors {
            let hf = t["hf"].as_str().unwrap();
            let w = m
                .tensor(hf)
                .unwrap_or_else(|| panic!("{file}: {hf} is not listed"));
            assert_eq!(w.onnx_name, t["onnx"].as_str().unwrap(), "{file}: {hf}");
            let shape: Vec<u64> = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect();
            assert_eq!(w.shape, shape, "{file}: {hf}");
            assert_eq!(
                w.transposed,
                t["transposed"].as_bool().unwrap(),
                "{file}: {hf}"
            );
            assert_eq!(w.dtype.name(), t["dtype"].as_str().unwrap(), "{file}: {hf}");
            let naming = match t["naming"].as_str().unwrap() {
                "kept" => Naming::Kept,
                "bias" => Naming::Bias,
                _ => Naming::NodePath,
            };
            assert_eq!(w.naming, naming, "{file}: {hf}");
            match (&w.quant, t["quant"].is_null()) {
                (None, true) => {}
                (Some(q), false) => {
                    let want_scale = json_bits(&t["quant"]["scale"]);
                    assert_eq!(bits(&q.scale), want_scale, "{file}: {hf} scales");
                    let zp: Vec<i32> = t["quant"]["zero_point"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_i64().unwrap() as i32)
                        .collect();
                    assert_eq!(q.zero_point, zp, "{file}: {hf} zero points");
                    let axis = t["quant"]["axis"].as_u64().map(|a| a as usize);
                    assert_eq!(q.axis, axis, "{file}: {hf} axis");
                }
                (q, _) => panic!("{file}: {hf}: quantisation {q:?}, expected {}", t["quant"]),
            }
            let got = values(w, &bytes, d.path());
            assert!(
                bits(&got) == json_bits(&t["values"]),
                "{file}: {hf}: values differ from onnx's"
            );
            if file == "bert_external.onnx" && w.name.ends_with("query.weight") {
                assert!(
                    matches!(&w.location, Location::External { file, .. } if file == "bert_external.onnx.data")
                );
            }
        }
        // scales and zero points are not weights; the only other initializer is a shape
        let listed: BTreeSet<&str> = m.tensors.iter().map(|w| w.onnx_name.as_str()).collect();
        for a in want["absent"].as_array().unwrap() {
            assert!(
                !listed.contains(a.as_str().unwrap()),
                "{file}: {a} is listed"
            );
        }
        let extra: Vec<&OnnxWeight> = m
            .tensors
            .iter()
            .filter(|w| !tensors.iter().any(|t| t["hf"] == w.name.as_str()))
            .collect();
        assert_eq!(extra.len(), 1, "{file}: {extra:?}");
        assert_eq!(
            (extra[0].name.as_str(), extra[0].naming),
            ("onnx::Reshape_90", Naming::Unnamed)
        );
    }
    for (file, want) in expected["errors"].as_object().unwrap() {
        let e = match open(&d.path().join(file)) {
            Ok(_) => panic!("{file} was accepted"),
            Err(e) => format!("{e:#}"),
        };
        for s in want.as_array().unwrap() {
            assert!(
                e.contains(s.as_str().unwrap()),
                "{file}: {e:?} does not say {s}"
            );
        }
    }
    // a model cut short is refused, never half read
    let whole = std::fs::read(d.path().join("bert_qdq_axis.onnx")).unwrap();
    for cut in [whole.len() / 4, whole.len() / 2, whole.len() * 3 / 4] {
        assert!(
            onnx::parse(Bytes::copy_from_slice(&whole[..cut]), &|_| None).is_err(),
            "cut at {cut}"
        );
    }
}

/// The real-model root, or `None` (skipped) when WEIGHT_AUDIT_REAL_MODELS is unset.
fn real_file(rel: &str) -> Option<PathBuf> {
    let Some(root) = std::env::var_os("WEIGHT_AUDIT_REAL_MODELS") else {
        eprintln!("skipped: WEIGHT_AUDIT_REAL_MODELS not set (run .ci/run to download the models)");
        return None;
    };
    let path = PathBuf::from(root).join(rel);
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide {}: it is missing",
        path.display()
    );
    eprintln!("skipped: {} is missing", path.display());
    None
}

/// Compares every tensor of the bank converter's safetensors (`<id>/model.safetensors`) with
/// this reader's, found by `name(converter's name)` → (model, name here).
fn same_as_converter<'m>(
    id: &str,
    name: impl Fn(&str) -> (&'m (OnnxModel, Bytes), String),
) -> usize {
    let Some(reference) = real_file(&format!("{id}/model.safetensors")) else {
        return 0;
    };
    let data = map(&reference).unwrap();
    let st = safetensors::SafeTensors::deserialize(&data).unwrap();
    let mut n = 0;
    for (conv_name, view) in st.tensors() {
        let ((m, bytes), here) = name(&conv_name);
        let w = m
            .tensor(&here)
            .unwrap_or_else(|| panic!("{id}: {conv_name} ({here}) is not listed"));
        let shape: Vec<u64> = view.shape().iter().map(|&d| d as u64).collect();
        assert_eq!(w.shape, shape, "{id}: {here}");
        assert_eq!(view.dtype(), safetensors::Dtype::F32, "{id}: {conv_name}");
        let got = values(w, bytes, Path::new("."));
        let want = view.data().chunks_exact(4);
        assert!(
            got.len() == want.len()
                && got
                    .iter()
                    .zip(want)
                    .all(|(g, c)| g.to_bits() == u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            "{id}: {here}: values differ from the converter's"
        );
        n += 1;
    }
    n
}

/// quire-grammar's DistilBERT tagger (static Q/DQ int8): the same 102 tensors, names and
/// values as `convert_distilbert`, with no problem.
#[test]
fn real_distilbert_qdq_reads_as_the_converter_reads_it() {
    let Some(path) = real_file("sources/tagger.onnx") else {
        return;
    };
    let tagger = open(&path).unwrap();
    assert!(tagger.0.problems.is_empty(), "{:?}", tagger.0.problems);
    assert_eq!(tagger.0.tensors.len(), 102);
    assert!(tagger.0.tensors.iter().all(|w| w.naming != Naming::Unnamed));
    let q = tagger
        .0
        .tensor("distilbert.transformer.layer.3.ffn.lin1.weight")
        .unwrap();
    assert_eq!(
        (q.naming, q.transposed, q.shape.clone()),
        (Naming::Bias, true, vec![3072, 768])
    );
    let n = same_as_converter("distilbert-cased-gector", |name| {
        (&tagger, name.to_string())
    });
    assert!(n == 0 || n == 102, "{n}");
}

/// traceforge's flan-t5-small (dynamic int8, no biases): named by node paths, under the
/// export's wrappers `enc.` (encoder) and `m.` (decoder), as `convert_t5` names them.
#[test]
fn real_t5_dynamic_reads_as_the_converter_reads_it() {
    let (Some(enc), Some(dec)) = (
        real_file("sources/encoder.onnx"),
        real_file("sources/decoder.onnx"),
    ) else {
        return;
    };
    let (enc, dec) = (open(&enc).unwrap(), open(&dec).unwrap());
    for m in [&enc, &dec] {
        assert!(m.0.problems.is_empty(), "{:?}", m.0.problems);
        assert!(m.0.tensors.iter().all(|w| w.naming != Naming::Unnamed));
    }
    let n = same_as_converter("flan-t5-small-kd", |name| {
        match name.strip_prefix("encoder.") {
            Some(rest) => (&enc, format!("enc.{rest}")),
            None => (&dec, format!("m.{name}")),
        }
    });
    assert!(n == 0 || n == 190, "{n}");
}

/// Kokoro's ALBERT (dynamic int8, per-channel, one layer shared by twelve calls): the text
/// encoder's tensors as `convert_albert` gives them, under the export's `encoder.bert.`.
#[test]
fn real_kokoro_albert_reads_as_the_converter_reads_it() {
    let Some(path) = real_file("sources/kokoro-v1.0.int8.onnx") else {
        return;
    };
    let kokoro = open(&path).unwrap();
    let q = kokoro
        .0
        .tensor("encoder.bert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight")
        .unwrap();
    assert_eq!(q.quant.as_ref().unwrap().axis, Some(1));
    // the LSTMs' DynamicQuantizeLSTM scales are not read: said, not guessed
    assert!(
        kokoro.0.problems.iter().all(|p| p.contains("onnx::LSTM_")),
        "{:?}",
        kokoro.0.problems
    );
    let n = same_as_converter("kokoro-albert", |name| {
        (&kokoro, format!("encoder.bert.{name}"))
    });
    assert!(n == 0 || n == 23, "{n}");
}

/// The tagger as a model the audit reads (`./tagger.onnx`): every tensor of the bank
/// converter's safetensors under the same name with the same values (dequantised, transposed
/// back), and an audit of the two finds them derived.
#[test]
fn a_real_onnx_file_is_a_model_the_audit_reads() {
    let Some(path) = real_file("sources/tagger.onnx") else {
        return;
    };
    let open_model = |p: &Path| {
        weight_audit::model::Model::open(
            Box::new(weight_audit::source::local::LocalSource::open(p).unwrap()),
            &weight_audit::model::ModelOptions::default(),
        )
        .unwrap()
    };
    let onnx_model = open_model(&path);
    assert_eq!(onnx_model.format(), weight_audit::model::WeightFormat::Onnx);
    let converted = open_model(
        &path
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("distilbert-cased-gector"),
    );
    let mut compared = 0;
    for t in converted.tensors() {
        let Some(o) = onnx_model.tensor(&t.name) else {
            continue;
        };
        assert_eq!(o.shape, t.shape, "{}", t.name);
        let (a, b) = (
            converted.read_tensor_f32(&t.name).unwrap(),
            onnx_model.read_tensor_f32(&t.name).unwrap(),
        );
        assert!(a == b, "{}: values differ", t.name);
        // a window inside a transposed, dequantised tensor reads as the whole does
        if t.numel > 100 {
            assert_eq!(onnx_model.read_f32(&t.name, 37, 50).unwrap(), b[37..87]);
        }
        compared += 1;
    }
    assert!(compared >= 100, "{compared} tensors compared");
    let ids = weight_audit::experiments::registry::default_ids();
    let refs = vec!["A".to_string(), "B".to_string()];
    let rubric = weight_audit::pipeline::RubricSource::load(None).unwrap();
    let (r, _) =
        weight_audit::pipeline::compare_models(&converted, &onnx_model, &[], &refs, &ids, &rubric)
            .unwrap();
    assert_eq!(
        r.decision.verdict.label(),
        "DERIVED",
        "{:?}",
        r.decision.reasons
    );
}
