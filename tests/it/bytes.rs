//! E3 (byte identity), E9 (experts) and E0c (code lineage) on lab models of known lineage.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use weight_audit::arch::Family;
use weight_audit::experiments::{self, Experiment, Subjects};
use weight_audit::model::Model;
use weight_audit_lab as lab;

use crate::experiments::open;
use crate::util::*;

/// The lab suite at hidden 128, generated once per test binary.
fn bytes_suite() -> &'static Path {
    &crate::util::lab_suite_at(128).0
}

fn lab_model(name: &str) -> Model {
    open(&bytes_suite().join(name))
}

/// Runs one experiment on A, B and controls; returns its result JSON.
fn run(id: &str, a: &Model, b: &Model, controls: &[&Model]) -> Value {
    let subjects = Subjects::new(a, b, controls);
    let e: Box<dyn Experiment> = experiments::by_id(id).unwrap();
    let out = experiments::run_all(&subjects, &[e]).unwrap();
    out.into_iter().next().unwrap().result
}

fn u(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} in {v}"))
}

fn f(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} in {v}"))
}

fn pair<'v>(r: &'v Value, label: &str) -> &'v Value {
    r["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pair"] == label)
        .unwrap_or_else(|| panic!("no pair {label}"))
}

/// No byte evidence at all: nothing found, nothing identical, no cast match.
fn assert_no_evidence(p: &Value) {
    assert_eq!(u(p, "/blocks_found_in_b"), 0, "{p:#}");
    assert_eq!(u(p, "/identical_tensors"), 0, "{p:#}");
    assert_eq!(u(p, "/partial_tensors"), 0, "{p:#}");
    assert_eq!(u(p, "/same_role/blocks_identical"), 0, "{p:#}");
    assert_eq!(u(p, "/cast_identical_tensors"), 0, "{p:#}");
    assert_eq!(u(p, "/permuted/tensors_permuted"), 0, "{p:#}");
    assert_eq!(u(p, "/element_agreement/tensors_agreeing"), 0, "{p:#}");
    assert!(f(p, "/element_agreement/max_tensor_z") < 6.0, "{p:#}");
    assert!(
        f(p, "/element_agreement/excess_fraction").abs() < 1e-3,
        "{p:#}"
    );
}

/// Every informative block of A is found in B and every hit is a confirmed whole tensor.
fn assert_full_copy(p: &Value) {
    assert!(u(p, "/blocks_informative") > 50, "{p:#}");
    assert_eq!(
        u(p, "/blocks_found_in_b"),
        u(p, "/blocks_informative"),
        "{p:#}"
    );
    assert!(u(p, "/identical_tensors") > 20, "{p:#}");
    assert_eq!(u(p, "/partial_tensors"), 0, "{p:#}");
    assert_eq!(u(p, "/unconfirmed_tensors"), 0, "{p:#}");
    assert!(f(p, "/fingerprint/p_value") < 1e-20, "{p:#}");
    assert!(u(p, "/element_agreement/tensors_agreeing") > 20, "{p:#}");
    assert!(
        f(p, "/element_agreement/identical_fraction") > 0.99,
        "{p:#}"
    );
}

#[test]
fn e3_finds_exact_resharded_and_renamed_copies() {
    let a = lab_model("llama-a");
    let control = lab_model("llama-b");
    for name in ["llama-a.copy", "llama-a.reshard", "llama-a.renamed"] {
        let b = lab_model(name);
        let r = run("e3", &a, &b, &[&control]);
        let ab = pair(&r, "A~B");
        assert_full_copy(ab);
        if name == "llama-a.renamed" {
            assert!(u(ab, "/identical_renamed_or_moved") > 20, "{ab:#}");
        } else {
            let s = &ab["same_role"];
            assert_eq!(u(s, "/blocks_identical"), u(s, "/blocks_compared"), "{s}");
            assert_eq!(u(ab, "/identical_renamed_or_moved"), 0);
        }
        for c in ["A~C1", "B~C1"] {
            assert_no_evidence(pair(&r, c));
        }
    }
    // GLM tensors stored under Phi-MoE names.
    let r = run(
        "e3",
        &lab_model("glm-a"),
        &lab_model("glm-a.phi-names"),
        &[&lab_model("glm-b")],
    );
    assert_full_copy(pair(&r, "A~B"));
    assert_no_evidence(pair(&r, "A~C1"));
}

#[test]
fn e3_reports_a_dtype_round_trip_as_a_cast_not_as_bytes() {
    let a = lab_model("llama-a");
    let b = lab_model("llama-a.f32");
    let r = run("e3", &a, &b, &[&lab_model("llama-b")]);
    let ab = pair(&r, "A~B");
    assert_eq!(u(ab, "/identical_tensors"), 0, "{ab:#}");
    assert_eq!(u(ab, "/blocks_found_in_b"), 0, "{ab:#}");
    let casts = ab["casts"].as_array().unwrap();
    assert!(u(ab, "/same_role/dtype_differs") > 20, "{ab:#}");
    assert_eq!(
        u(ab, "/cast_identical_tensors"),
        u(ab, "/same_role/dtype_differs")
    );
    assert!(
        casts.iter().all(|c| c["status"] == "full_values"
            && c["dtype_a"] == "BF16"
            && c["dtype_b"] == "F32")
    );
    // Identical values at the outlier coordinates, far beyond chance.
    assert!(f(ab, "/fingerprint/p_value") < 1e-20, "{ab:#}");
    // Every value read back in BF16 is A's.
    let e = &ab["element_agreement"];
    assert_eq!(f(e, "/identical_fraction"), 1.0, "{e:#}");
    assert_eq!(u(e, "/tensors_agreeing"), u(ab, "/same_role/dtype_differs"));
    assert_no_evidence(pair(&r, "A~C1"));
}

#[test]
fn e3_finds_a_bf16_fine_tune_by_the_values_it_kept_in_place() {
    // 1 % noise changes every value in f32, but after rounding to BF16 the updates under half
    // a step vanish: no whole block survives, many elements do.
    let a = lab_model("llama-a");
    let r = run("e3", &a, &lab_model("llama-a.ft"), &[&lab_model("llama-b")]);
    let ab = pair(&r, "A~B");
    assert_eq!(u(ab, "/identical_tensors"), 0, "{ab:#}");
    let e = &ab["element_agreement"];
    assert!(u(e, "/tensors_agreeing") > 20, "{e:#}");
    assert!(
        f(e, "/identical_fraction") > 50.0 * f(e, "/expected_fraction"),
        "{e:#}"
    );
    assert!(f(e, "/z") > 100.0, "{e:#}");
    let listed = e["agreeing"].as_array().unwrap();
    assert!(listed.iter().all(|t| t["tensor_a"] == t["tensor_b"]
        && t["excess"].as_f64().unwrap() >= 0.01
        && t["z"].as_f64().unwrap() >= 6.0));
    for c in ["A~C1", "B~C1"] {
        assert_no_evidence(pair(&r, c));
    }
}

#[test]
fn e3_finds_a_hidden_permutation_by_norms_that_moved_together() {
    // Permuting the hidden dimension (with sign flips) moves every value of every matrix; the
    // norms keep their values, reordered by the one permutation.
    let a = lab_model("llama-a");
    let r = run(
        "e3",
        &a,
        &lab_model("llama-a.hidden-perm"),
        &[&lab_model("llama-b")],
    );
    let ab = pair(&r, "A~B");
    assert_eq!(u(ab, "/identical_tensors"), 0, "{ab:#}");
    assert_eq!(u(ab, "/element_agreement/tensors_agreeing"), 0, "{ab:#}");
    let norms = a
        .tensors()
        .iter()
        .filter(|t| t.role.family.is_norm())
        .count() as u64;
    let m = &ab["permuted"];
    assert!(norms >= 9, "{norms}");
    assert_eq!(u(m, "/same_values"), norms, "{m:#}");
    assert_eq!(u(m, "/tensors_permuted"), norms, "{m:#}");
    assert!(u(m, "/max_coordinates_mapped") > 100, "{m:#}");
    assert!(
        m["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["shares_with"] != ""),
        "{m:#}"
    );
    for c in ["A~C1", "B~C1"] {
        assert_no_evidence(pair(&r, c));
    }

    // Every tensor's values shuffled its own way: the same multisets, no shared permutation.
    let r = run("e3", &a, &lab_model("llama-a.marginal"), &[]);
    let m = &pair(&r, "A~B")["permuted"];
    assert!(u(m, "/same_values") >= norms, "{m:#}");
    assert_eq!(u(m, "/tensors_permuted"), 0, "{m:#}");
}

#[test]
fn e3_independent_pairs_give_no_byte_evidence() {
    for (a, b, c) in [
        ("glm-a", "glm-b", "solar-a"),
        ("llama-a", "llama-a.marginal", "llama-b"),
        ("llama-b", "llama-a.ft", "bert-a"),
    ] {
        let r = run("e3", &lab_model(a), &lab_model(b), &[&lab_model(c)]);
        for p in r["pairs"].as_array().unwrap() {
            let label = p["pair"].as_str().unwrap();
            assert_no_evidence(p);
            assert!(u(p, "/element_agreement/elements_compared") > 0, "{p:#}");
            assert!(
                f(p, "/fingerprint/p_value") > 1e-3,
                "{a} {b} {label}: {p:#}"
            );
        }
    }
}

#[test]
fn e3_never_counts_zero_or_constant_tensors() {
    let (a, b) = (tmp(), tmp());
    for dir in [a.path(), b.path()] {
        let zeros = T {
            name: "model.layers.0.mlp.down_proj.weight".into(),
            dtype: "BF16",
            shape: vec![256, 64],
            data: vec![0; 256 * 64 * 2],
        };
        let ones = T {
            name: "model.layers.0.input_layernorm.weight".into(),
            dtype: "BF16",
            shape: vec![4096],
            data: (0..4096)
                .flat_map(|_| half::bf16::from_f32(1.0).to_le_bytes())
                .collect(),
        };
        let ones_f32 = T {
            name: "model.layers.0.post_attention_layernorm.weight".into(),
            dtype: "F32",
            shape: vec![1024],
            data: (0..1024).flat_map(|_| 1.0f32.to_le_bytes()).collect(),
        };
        let pattern = T {
            name: "model.layers.0.mlp.up_proj.weight".into(),
            dtype: "BF16",
            shape: vec![256, 64],
            data: (0..256 * 64)
                .flat_map(|i| half::bf16::from_f32((i % 3) as f32).to_le_bytes())
                .collect(),
        };
        write_model(
            dir,
            vec![zeros, ones, ones_f32, pattern],
            1,
            serde_json::json!({"model_type": "llama", "num_hidden_layers": 1}),
        );
    }
    let (ma, mb) = (open(a.path()), open(b.path()));
    let r = run("e3", &ma, &mb, &[]);
    let ab = pair(&r, "A~B");
    assert_eq!(u(ab, "/blocks_informative"), 0, "{ab:#}");
    assert_eq!(u(ab, "/blocks_excluded"), u(ab, "/blocks_a"));
    assert!(u(ab, "/excluded_by_reason/zero") > 0, "{ab:#}");
    assert!(u(ab, "/excluded_by_reason/constant") > 0, "{ab:#}");
    assert!(u(ab, "/excluded_by_reason/periodic") > 0, "{ab:#}");
    assert_no_evidence(ab);
    assert_eq!(u(ab, "/fingerprint/coordinates"), 0, "{ab:#}");
}

/// `...experts.<e>.` → (layer, e).
fn layer_expert(name: &str) -> Option<(u64, u64)> {
    let num_after = |key: &str| -> Option<u64> {
        let rest = &name[name.find(key)? + key.len()..];
        rest.split('.').next()?.parse().ok()
    };
    Some((num_after("layers.")?, num_after("experts.")?))
}

#[test]
fn e3_and_e9_recover_permuted_experts() {
    let a = lab_model("glm-a");
    let b = lab_model("glm-a.expert-perm");
    let control = lab_model("glm-b");
    let r3 = run("e3", &a, &b, &[&control]);
    let ab = pair(&r3, "A~B");
    // Every block but the routers' (their rows are permuted, so their bytes differ).
    let routers = a
        .tensors()
        .iter()
        .filter(|t| t.role.family == Family::Router)
        .count() as u64;
    assert_eq!(
        u(ab, "/blocks_found_in_b"),
        u(ab, "/blocks_informative") - routers,
        "{ab:#}"
    );
    assert_eq!(u(ab, "/partial_tensors"), 0, "{ab:#}");
    assert!(u(ab, "/identical_renamed_or_moved") > 20, "{ab:#}");
    // The ground truth from byte identity: B's expert e' holds A's expert perm[e'].
    let mut truth: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for m in ab["matches"].as_array().unwrap() {
        if m["status"] != "full_hash" {
            continue;
        }
        let (Some((la, ea)), Some((lb, eb))) = (
            layer_expert(m["tensor_a"].as_str().unwrap()),
            layer_expert(m["tensor_b"].as_str().unwrap()),
        ) else {
            continue;
        };
        assert_eq!(la, lb);
        truth.insert((lb, eb), ea);
    }
    assert!(truth.iter().any(|((_, eb), ea)| eb != ea), "{truth:?}");

    let r9 = run("e9", &a, &b, &[&control]);
    let layers = r9["layers"].as_array().unwrap();
    let mut checked = 0;
    for l in layers.iter().filter(|l| l["pair"] == "A~B") {
        assert!((f(l, "/score") - 1.0).abs() < 1e-6, "{l}");
        assert!(f(l, "/z") > 10.0, "{l}");
        let layer = u(l, "/layer");
        for (eb, ea) in l["permutation"].as_array().unwrap().iter().enumerate() {
            if let Some(want) = truth.get(&(layer, eb as u64)) {
                assert_eq!(ea.as_u64(), Some(*want), "layer {layer} expert {eb}");
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "{checked}");
    let kinds: Vec<&str> = layers
        .iter()
        .filter(|l| l["pair"] == "A~B")
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"router") && kinds.contains(&"experts"));
    // The independent control scores at the assignment null.
    for l in layers.iter().filter(|l| l["pair"] != "A~B") {
        let (score, null, sd) = (f(l, "/score"), f(l, "/null_mean"), f(l, "/null_sd"));
        assert!(null > 0.0 && sd > 0.0, "{l}");
        assert!((score - null).abs() < 5.0 * sd + 0.05, "{l}");
    }
    for s in r9["summary"].as_array().unwrap() {
        eprintln!(
            "e9 {} {}: score {} null {} z {}",
            s["pair"], s["kind"], s["mean_score"], s["mean_null"], s["mean_z"]
        );
    }
}

#[test]
fn e3_bytes_read_on_lab_glm_models() {
    let a = lab_model("glm-a");
    let b = lab_model("glm-a.expert-perm");
    let c = lab_model("glm-b");
    let r = run("e3", &a, &b, &[&c]);
    for m in r["models"].as_array().unwrap() {
        eprintln!("e3 planned {}: {} bytes", m["model"], m["planned_bytes"]);
        assert!(u(m, "/planned_bytes") > 0);
    }
    for p in r["pairs"].as_array().unwrap() {
        eprintln!("e3 tier2 {}: {} bytes", p["pair"], p["tier2_bytes"]);
    }
    // Deterministic: a second run gives the same result.
    assert_eq!(r, run("e3", &a, &b, &[&c]));
}

#[test]
fn e0c_compares_shipped_text_without_executing_it() {
    let (a, b, c) = (tmp(), tmp(), tmp());
    let witness = tmp();
    let marker = witness.path().join("executed");
    let hostile = format!(
        "import os\nopen({:?}, 'w').write('ran')\n\nclass GlmModel:\n    def forward(self, x):\n        return self.layers(x) + self.shared_bias\n\ndef rotate_half(x):\n    return torch.cat((-x[..., 1:], x[..., :1]), dim=-1)\n",
        marker.to_string_lossy()
    );
    for (dir, seed) in [(a.path(), 0), (b.path(), 0), (c.path(), 1)] {
        tiny_glm(dir, 1);
        let readme = if seed == 0 {
            "# GLM\n\nA mixture of experts model trained by us.\n"
        } else {
            "# Other\n\nSomething else entirely, written elsewhere.\n"
        };
        std::fs::write(dir.join("README.md"), readme).unwrap();
    }
    std::fs::write(a.path().join("modeling_glm.py"), &hostile).unwrap();
    let edited =
        hostile.replace("GlmModel", "SolarModel") + "\ndef extra_helper():\n    return 42\n";
    std::fs::write(b.path().join("modeling_glm.py"), edited).unwrap();
    std::fs::write(
        b.path().join("chat_template.jinja"),
        "{% for m in messages %}{{ m }}{% endfor %}",
    )
    .unwrap();
    std::fs::write(
        c.path().join("modeling_other.py"),
        "class Other:\n    def forward(self, x):\n        return x\n",
    )
    .unwrap();
    let (ma, mb, mc) = (open(a.path()), open(b.path()), open(c.path()));
    let r = run("e0c", &ma, &mb, &[&mc]);
    assert!(!marker.exists(), "a model file was executed");
    let ab = pair(&r, "A~B");
    let file = |p: &Value, path: &str| -> Value {
        p["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("no {path} in {p:#}"))
    };
    for same in ["README.md", "config.json", "tokenizer_config.json"] {
        let f = file(ab, same);
        assert_eq!(f["identical"], true, "{f}");
        assert_eq!(f["ratio"], 1.0);
    }
    let py = file(ab, "modeling_glm.py");
    assert_eq!(py["identical"], false);
    let ratio = f(&py, "/ratio");
    assert!(ratio > 0.6 && ratio < 1.0, "{py}");
    assert!(u(&py, "/shared_lines") >= 3, "{py}");
    let jinja = file(ab, "chat_template.jinja");
    assert_eq!(
        (jinja["in_a"].clone(), jinja["in_b"].clone()),
        (false.into(), true.into())
    );
    let shared: Vec<&str> = ab["py_shared_defs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(shared, vec!["forward", "rotate_half"]);
    // The control shares the config layout but not the README or the code.
    let ac = pair(&r, "A~C1");
    assert_eq!(file(ac, "README.md")["identical"], false);
    assert!(f(&file(ac, "README.md"), "/jaccard") < 0.5);
    assert_eq!(u(ac, "/py_shared_defs_count"), 1); // `forward` is everywhere
}

/// E3 on every labelled pair of the suite: copies and re-serialisations are found whole, a
/// dtype round trip is a cast, and no independent pair shows any byte evidence.
#[test]
fn e3_on_every_suite_pair_agrees_with_its_label() {
    let manifest = lab::load_manifest(bytes_suite()).unwrap();
    for p in &manifest.pairs {
        let (a, b) = (lab_model(&p.a), lab_model(&p.b));
        let r = run("e3", &a, &b, &[]);
        let ab = pair(&r, "A~B");
        eprintln!(
            "e3 {} {:?} {}: found {}/{} informative blocks, {} identical tensors ({} renamed/moved, {} partial), {} casts, fingerprint {}/{} p={:e}",
            p.id,
            p.label,
            p.relation,
            u(ab, "/blocks_found_in_b"),
            u(ab, "/blocks_informative"),
            u(ab, "/identical_tensors"),
            u(ab, "/identical_renamed_or_moved"),
            u(ab, "/partial_tensors"),
            u(ab, "/cast_identical_tensors"),
            u(ab, "/fingerprint/matches"),
            u(ab, "/fingerprint/coordinates"),
            f(ab, "/fingerprint/p_value"),
        );
        match (p.label, p.relation.as_str()) {
            (_, "exact_copy" | "reserialised_layout" | "reserialised_renamed") => {
                assert_full_copy(ab)
            }
            (_, "reserialised_dtype") => {
                assert_eq!(u(ab, "/identical_tensors"), 0, "{}", p.id);
                assert!(u(ab, "/cast_identical_tensors") > 20, "{}", p.id);
            }
            (lab::Label::Independent, _) => {
                assert_no_evidence(ab);
                assert!(f(ab, "/fingerprint/p_value") > 1e-3, "{}: {ab:#}", p.id);
            }
            _ => {}
        }
    }
}
