//! The quantised-release suite: GGUF files of lab models as llama.cpp would make them and int8
//! ONNX files as onnxruntime would, paired with their float parents and with other seeds'
//! models (see [`quant_spec`]).

use super::arch::ArchKind;
use super::spec::{Label, ModelSpec, Spec};
use super::suite::{SuiteOptions, base, derived, pair};
use super::transform::TransformSpec as T;

/// The quantised-release suite: four independent Llama models (safetensors) and GGUF files
/// made from them as llama.cpp's converter and reference quantiser would: plain Q8_0 and Q4_0
/// requants and a fine-tune quantised to Q8_0 (derived), the same for ONNX int8 releases as
/// onnxruntime's `quantize_dynamic` makes them (plain and fine-tuned first: derived), and every
/// model against other seeds' quants (independent). What E3q's rule is calibrated on, and the cross-format pairs of every
/// other rule.
pub fn quant_spec(opts: &SuiteOptions) -> Spec {
    let seeds = [1u64, 2, 3, 4];
    let mut models = Vec::new();
    let mut pairs = Vec::new();
    let gguf = |name: String, from: &str, q: &str, transforms: Vec<T>| ModelSpec {
        gguf: Some(q.into()),
        ..derived(&name, from, transforms)
    };
    let int8 = |name: String, from: &str, transforms: Vec<T>| ModelSpec {
        onnx: Some("int8".into()),
        ..derived(&name, from, transforms)
    };
    for &s in &seeds {
        let p = format!("p{s}");
        models.push(base(&p, ArchKind::Llama, 300 + s));
        models.push(gguf(format!("p{s}-q8_0"), &p, "Q8_0", vec![]));
        models.push(gguf(format!("p{s}-q4_0"), &p, "Q4_0", vec![]));
        models.push(gguf(
            format!("p{s}-ft-q8_0"),
            &p,
            "Q8_0",
            vec![T::FineTune { rel: 0.02, seed: s }],
        ));
        models.push(int8(format!("p{s}-int8"), &p, vec![]));
        models.push(int8(
            format!("p{s}-ft-int8"),
            &p,
            vec![T::FineTune { rel: 0.02, seed: s }],
        ));
        let d = Label::Derived;
        pairs.push(pair(
            &format!("q{s}-int8"),
            &p,
            &format!("p{s}-int8"),
            d,
            "requant_onnx_int8",
            "the float model and its ONNX int8 release (onnxruntime quantize_dynamic)",
        ));
        pairs.push(pair(
            &format!("q{s}-ft-int8"),
            &p,
            &format!("p{s}-ft-int8"),
            d,
            "fine_tune_then_quantise",
            "fine-tuned (rel 0.02), then ONNX int8",
        ));
        pairs.push(pair(
            &format!("q{s}-q8"),
            &p,
            &format!("p{s}-q8_0"),
            d,
            "requant_q8_0",
            "the float model and its plain Q8_0 GGUF",
        ));
        pairs.push(pair(
            &format!("q{s}-q4"),
            &p,
            &format!("p{s}-q4_0"),
            d,
            "requant_q4_0",
            "the float model and its plain Q4_0 GGUF",
        ));
        pairs.push(pair(
            &format!("q{s}-ft"),
            &p,
            &format!("p{s}-ft-q8_0"),
            d,
            "fine_tune_then_quantise",
            "fine-tuned (rel 0.02), then Q8_0",
        ));
        for &t in seeds.iter().filter(|&&t| t != s) {
            pairs.push(pair(
                &format!("q{s}-i{t}-q8"),
                &p,
                &format!("p{t}-q8_0"),
                Label::Independent,
                "independent_quant",
                "another seed's Q8_0 GGUF",
            ));
        }
        let t = s % 4 + 1;
        pairs.push(pair(
            &format!("q{s}-i{t}-q4"),
            &p,
            &format!("p{t}-q4_0"),
            Label::Independent,
            "independent_quant",
            "another seed's Q4_0 GGUF",
        ));
        pairs.push(pair(
            &format!("q{s}-i{t}-int8"),
            &p,
            &format!("p{t}-int8"),
            Label::Independent,
            "independent_quant",
            "another seed's ONNX int8 release",
        ));
    }
    Spec {
        seed: opts.seed,
        hidden: opts.hidden,
        models,
        pairs,
    }
}
