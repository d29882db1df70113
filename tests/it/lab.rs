//! The model lab: determinism, readers, and each transform's defining property.

use std::collections::BTreeMap;
use std::path::Path;

use weight_audit_lab::arch::{ArchKind, Role, classify};
use weight_audit_lab::forward::{logits, relative_logit_error};
use weight_audit_lab::model::{Model, read_model, write_model};
use weight_audit_lab::spec::{Label, ModelSpec, Spec, SuiteManifest, parse_spec};
use weight_audit_lab::tokenizer::TokView;
use weight_audit_lab::transform::{
    InsertMode, QuantScheme, TransformSpec as T, apply, parse_transforms,
};
use weight_audit_lab::{self as lab, ReplicaOptions, SuiteOptions, weights};

fn spec(arch: ArchKind, hidden: usize, layers: usize, seed: u64) -> ModelSpec {
    ModelSpec {
        name: format!("{arch:?}"),
        arch: Some(arch),
        seed: Some(seed),
        hidden: Some(hidden),
        layers: Some(layers),
        ..Default::default()
    }
}

fn model(arch: ArchKind, hidden: usize, layers: usize, seed: u64) -> Model {
    weights::generate(&spec(arch, hidden, layers, seed).recipe(0, hidden).unwrap()).unwrap()
}

fn no_resolve(_: &str) -> anyhow::Result<Model> {
    anyhow::bail!("no models to resolve")
}

fn tf(m: &Model, ts: &[T]) -> Model {
    let mut m = m.clone();
    for t in ts {
        apply(&mut m, t, &no_resolve).unwrap();
    }
    m
}

fn vals<'a>(m: &'a Model, n: &str) -> &'a [f32] {
    m.get(n).unwrap().values(n).unwrap()
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in walk(dir) {
        let rel = e.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        out.insert(rel, std::fs::read(&e).unwrap());
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v.sort();
    v
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        ab += *x as f64 * *y as f64;
        aa += (*x as f64).powi(2);
        bb += (*y as f64).powi(2);
    }
    ab / (aa.sqrt() * bb.sqrt())
}

fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let ma = a.iter().map(|x| *x as f64).sum::<f64>() / a.len() as f64;
    let mb = b.iter().map(|x| *x as f64).sum::<f64>() / b.len() as f64;
    let ac: Vec<f32> = a.iter().map(|x| (*x as f64 - ma) as f32).collect();
    let bc: Vec<f32> = b.iter().map(|x| (*x as f64 - mb) as f32).collect();
    cosine(&ac, &bc)
}

fn assert_same_function(a: &Model, b: &Model, tol: f64) {
    let err = relative_logit_error(a, b, &[1u32, 7, 300, 42, 5]).unwrap();
    assert!(err < tol, "logits differ: max diff / scale = {err}");
}

const SMALL_SPEC: &str = r#"
seed = 9
hidden = 64
[[model]]
name = "g"
arch = "glm4_moe"
layers = 3
[[model]]
name = "l"
arch = "llama"
layers = 2
[[model]]
name = "l.x"
from = "l"
transforms = [{ op = "fine_tune", rel = 0.05, seed = 1 }, { op = "permute_hidden", seed = 2, sign_flips = true }, { op = "vocab_prune", fraction = 0.2, seed = 3 }]
[[pair]]
id = "p"
a = "l"
b = "l.x"
label = "DERIVED"
relation = "fine_tune"
"#;

#[test]
fn same_spec_and_seed_give_identical_bytes() {
    let d = tempfile::tempdir().unwrap();
    let s = parse_spec(SMALL_SPEC).unwrap();
    lab::generate(&s, &d.path().join("a")).unwrap();
    lab::generate(&s, &d.path().join("b")).unwrap();
    let (fa, fb) = (files(&d.path().join("a")), files(&d.path().join("b")));
    assert!(fa.len() > 10);
    assert_eq!(fa, fb);
    let mut s2 = s.clone();
    s2.seed = 10;
    lab::generate(&s2, &d.path().join("c")).unwrap();
    let fc = files(&d.path().join("c"));
    assert_ne!(
        fa.get("g/model-00001-of-00002.safetensors"),
        fc.get("g/model-00001-of-00002.safetensors")
    );
    // a lab folder re-serialises to the same bytes
    let m = read_model(&d.path().join("a/g")).unwrap();
    write_model(&m, &d.path().join("g2")).unwrap();
    let mut orig = files(&d.path().join("a/g"));
    let again = files(&d.path().join("g2"));
    orig.retain(|k, _| again.contains_key(k));
    assert_eq!(orig, again);
}

#[test]
fn copy_is_byte_identical_and_reserialisation_keeps_values() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    lab::generate_model(&spec(ArchKind::Glm4Moe, 64, 2, 1), &src).unwrap();
    lab::transform(&src, &[T::Copy], &d.path().join("copy")).unwrap();
    assert_eq!(files(&src), files(&d.path().join("copy")));

    let ts = parse_transforms(
        "cast(dtype=F32)+reshard(shards=3)+reorder(seed=4)+rename_arch(to=phimoe)",
    )
    .unwrap();
    lab::transform(&src, &ts, &d.path().join("re")).unwrap();
    let a = read_model(&src).unwrap();
    let b = read_model(&d.path().join("re")).unwrap();
    assert_eq!(b.layout.shards, 3);
    let layers: Vec<usize> = b
        .layout
        .order
        .iter()
        .filter_map(|n| weight_audit_lab::arch::name_parts(n).layer)
        .collect();
    assert!(
        layers.windows(2).any(|w| w[0] > w[1]),
        "tensor order was shuffled"
    );
    let layers_a: Vec<usize> = a
        .layout
        .order
        .iter()
        .filter_map(|n| weight_audit_lab::arch::name_parts(n).layer)
        .collect();
    assert!(layers_a.windows(2).all(|w| w[0] <= w[1]));
    assert!(
        b.tensors
            .keys()
            .any(|k| k.contains("block_sparse_moe.experts.0.w1"))
    );
    assert!(b.tensors.values().all(|t| t.dtype.name() == "F32"));
    let back =
        lab::transform::parse_transforms("rename_arch(to=glm4_moe)+cast(dtype=BF16)").unwrap();
    lab::transform(&d.path().join("re"), &back, &d.path().join("back")).unwrap();
    let c = read_model(&d.path().join("back")).unwrap();
    assert_eq!(a.tensors.len(), c.tensors.len());
    for (n, t) in &a.tensors {
        let u = &c.tensors[n];
        if t.dtype.name() == "F32" {
            assert!(n.ends_with("e_score_correction_bias"));
            continue;
        }
        assert_eq!(t.to_bytes(), u.to_bytes(), "{n}");
        assert_eq!(t.dtype, u.dtype, "{n}");
    }
}

#[test]
fn independent_models_share_marginals_not_coordinates() {
    let a = model(ArchKind::Llama, 256, 6, 1);
    let b = model(ArchKind::Llama, 256, 6, 2);
    let (mut cos, mut pr, mut n) = (0.0, 0.0f64, 0.0);
    for (name, t) in &a.tensors {
        if matches!(classify(name, &t.shape, 256), Role::Norm(_))
            && !name.contains("layers.0.input")
        {
            cos += cosine(vals(&a, name), vals(&b, name));
            pr += pearson(vals(&a, name), vals(&b, name)).abs();
            n += 1.0;
        }
    }
    let (cos, pr) = (cos / n, pr / n);
    assert!(cos > 0.95, "raw norm cosine {cos}");
    assert!(pr < 0.2, "|pearson| {pr}");
    // layer 0's input norm is unlike the others
    let l0 = vals(&a, "model.layers.0.input_layernorm.weight");
    let l3 = vals(&a, "model.layers.3.input_layernorm.weight");
    assert!(l0.iter().sum::<f32>() < 0.5 * l3.iter().sum::<f32>());
    // same recipe → same tokenizer, different weights
    assert_eq!(a.tokenizer, b.tokenizer);
    let q = "model.layers.2.self_attn.q_proj.weight";
    assert!(pearson(vals(&a, q), vals(&b, q)).abs() < 0.05);
    // the marginal-preserving fallback (non-pristine model)
    let c = tf(
        &a,
        &[
            T::Cast {
                dtype: "BF16".into(),
                pattern: None,
            },
            T::Independent { seed: 3 },
        ],
    );
    let g = "model.layers.3.post_attention_layernorm.weight";
    assert!(cosine(vals(&a, g), vals(&c, g)) > 0.95);
    assert!(pearson(vals(&a, g), vals(&c, g)).abs() < 0.3);
    let mut sa = vals(&a, g).to_vec();
    let mut sc = vals(&c, g).to_vec();
    sa.sort_by(f32::total_cmp);
    sc.sort_by(f32::total_cmp);
    assert_eq!(sa, sc);
    // pristine model regenerates from its recipe
    let d = tf(&a, &[T::Independent { seed: 2 }]);
    assert_eq!(vals(&d, q), vals(&b, q));
}

#[test]
fn fine_tune_and_continued_pretraining_keep_decreasing_correlation() {
    let a = model(ArchKind::Llama, 128, 2, 1);
    let q = "model.layers.1.self_attn.q_proj.weight";
    let ft = tf(&a, &[T::FineTune { rel: 0.01, seed: 1 }]);
    let cpt = tf(
        &a,
        &[T::ContinuedPretrain {
            rel: 0.3,
            drift: 0.2,
            seed: 1,
        }],
    );
    let heavy = tf(
        &a,
        &[T::ContinuedPretrain {
            rel: 1.2,
            drift: 0.5,
            seed: 1,
        }],
    );
    let (p1, p2, p3) = (
        pearson(vals(&a, q), vals(&ft, q)),
        pearson(vals(&a, q), vals(&cpt, q)),
        pearson(vals(&a, q), vals(&heavy, q)),
    );
    assert!(
        p1 > 0.999 && p1 > p2 && p2 > p3 && p2 > 0.9 && p3 > 0.4 && p3 < 0.9,
        "{p1} {p2} {p3}"
    );
}

#[test]
fn layer_transforms_move_whole_layers() {
    let g = model(ArchKind::Glm4Moe, 64, 4, 1);
    let lay = |m: &Model, l: usize, t: &str| vals(m, &format!("model.layers.{l}.{t}")).to_vec();
    let q = "self_attn.q_proj.weight";
    let ins = tf(
        &g,
        &[T::InsertLayers {
            after: vec![1],
            mode: InsertMode::Duplicate,
            seed: 0,
        }],
    );
    assert_eq!(ins.cfg_usize("num_hidden_layers"), Some(5));
    assert_eq!(lay(&ins, 2, q), lay(&g, 1, q));
    assert_eq!(lay(&ins, 3, q), lay(&g, 2, q));
    assert_eq!(
        lay(&ins, 5, "eh_proj.weight"),
        lay(&g, 4, "eh_proj.weight"),
        "MTP layer follows the last layer"
    );
    let rnd = tf(
        &g,
        &[T::InsertLayers {
            after: vec![1],
            mode: InsertMode::Random,
            seed: 1,
        }],
    );
    assert!(pearson(&lay(&rnd, 2, q), &lay(&g, 1, q)).abs() < 0.1);
    let rem = tf(&g, &[T::RemoveLayers { layers: vec![2] }]);
    assert_eq!(rem.cfg_usize("num_hidden_layers"), Some(3));
    assert_eq!(lay(&rem, 2, q), lay(&g, 3, q));
    let sub = tf(
        &g,
        &[T::SubsetLayers {
            every: 2,
            offset: 1,
        }],
    );
    assert_eq!(lay(&sub, 0, q), lay(&g, 1, q));
    assert_eq!(lay(&sub, 1, q), lay(&g, 3, q));
    assert_eq!(sub.cfg_usize("first_k_dense_replace"), Some(0));
    let perm = tf(&g, &[T::PermuteLayers { seed: 3 }]);
    assert_eq!(lay(&perm, 0, q), lay(&g, 0, q), "leading dense layer stays");
    let mut moved: Vec<Vec<f32>> = (1..4).map(|l| lay(&perm, l, q)).collect();
    let mut orig: Vec<Vec<f32>> = (1..4).map(|l| lay(&g, l, q)).collect();
    assert_ne!(moved, orig);
    moved.sort_by(|a, b| a[0].total_cmp(&b[0]));
    orig.sort_by(|a, b| a[0].total_cmp(&b[0]));
    assert_eq!(moved, orig);
    assert_eq!(perm.tensors.len(), g.tensors.len());
}

#[test]
fn hidden_permutation_with_sign_flips_preserves_function() {
    for (arch, signs) in [
        (ArchKind::Llama, true),
        (ArchKind::Glm4Moe, true),
        (ArchKind::SolarOpen, true),
        (ArchKind::Phimoe, false),
    ] {
        let a = model(arch, 64, 2, 5);
        let b = tf(
            &a,
            &[T::PermuteHidden {
                seed: 7,
                sign_flips: signs,
            }],
        );
        let e = "model.embed_tokens.weight";
        assert_ne!(vals(&a, e), vals(&b, e));
        assert_same_function(&a, &b, 1e-9);
    }
    let mut p = model(ArchKind::Phimoe, 64, 1, 5);
    let err = apply(
        &mut p,
        &T::PermuteHidden {
            seed: 1,
            sign_flips: true,
        },
        &no_resolve,
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("LayerNorm"));
}

#[test]
fn head_and_expert_permutations_preserve_function() {
    for arch in [ArchKind::Glm4Moe, ArchKind::Llama, ArchKind::Phimoe] {
        let a = model(arch, 64, 2, 6);
        let b = tf(&a, &[T::PermuteHeads { seed: 8 }]);
        assert_ne!(
            vals(&a, "model.layers.1.self_attn.q_proj.weight"),
            vals(&b, "model.layers.1.self_attn.q_proj.weight")
        );
        assert_same_function(&a, &b, 1e-9);
    }
    for arch in [ArchKind::Glm4Moe, ArchKind::Phimoe] {
        let a = model(arch, 64, 2, 6);
        let b = tf(&a, &[T::PermuteExperts { seed: 9 }]);
        assert_same_function(&a, &b, 1e-9);
        let router = if arch == ArchKind::Phimoe {
            "model.layers.1.block_sparse_moe.gate.weight"
        } else {
            "model.layers.1.mlp.gate.weight"
        };
        assert_ne!(vals(&a, router), vals(&b, router));
    }
    let mut l = model(ArchKind::Llama, 64, 1, 1);
    assert!(apply(&mut l, &T::PermuteExperts { seed: 1 }, &no_resolve).is_err());
}

#[test]
fn norm_folding_preserves_function() {
    for arch in [ArchKind::Llama, ArchKind::Glm4Moe, ArchKind::Phimoe] {
        let a = model(arch, 64, 2, 3);
        let b = tf(
            &a,
            &[T::FoldNorm {
                spread: 0.5,
                seed: 2,
            }],
        );
        let g = "model.layers.1.input_layernorm.weight";
        assert!(pearson(vals(&a, g), vals(&b, g)) < 0.9);
        assert_same_function(&a, &b, 1e-5);
    }
    let mut bert = model(ArchKind::Bert, 64, 1, 1);
    assert!(
        apply(
            &mut bert,
            &T::FoldNorm {
                spread: 0.5,
                seed: 2
            },
            &no_resolve
        )
        .is_err()
    );
}

fn rows_by_text(m: &Model, tensor: &str) -> BTreeMap<String, Vec<f32>> {
    let view = TokView::parse(m.tokenizer.as_ref().unwrap()).unwrap();
    let t = m.get(tensor).unwrap();
    let cols = t.shape[1];
    let v = t.values(tensor).unwrap();
    view.ids
        .iter()
        .filter(|(id, _)| (**id as usize) < t.shape[0])
        .map(|(id, (s, _))| {
            (
                s.clone(),
                v[*id as usize * cols..(*id as usize + 1) * cols].to_vec(),
            )
        })
        .collect()
}

#[test]
fn vocabulary_reindexing_keeps_rows_with_their_text() {
    let a = model(ArchKind::Llama, 64, 1, 4);
    let base = rows_by_text(&a, "model.embed_tokens.weight");
    let base_head = rows_by_text(&a, "lm_head.weight");
    let rows = a.get("model.embed_tokens.weight").unwrap().shape[0];
    let eos_text = |m: &Model| {
        let v = TokView::parse(m.tokenizer.as_ref().unwrap()).unwrap();
        v.ids[&(m.cfg_usize("eos_token_id").unwrap() as u32)]
            .0
            .clone()
    };
    for (t, check_rows) in [
        (T::VocabShift { n: 64, seed: 1 }, rows + 64),
        (T::VocabPermute { seed: 2 }, rows),
        (
            T::VocabPrune {
                fraction: 0.3,
                seed: 3,
            },
            0,
        ),
        (T::VocabExtend { n: 50, seed: 4 }, rows + 50),
    ] {
        let b = tf(&a, std::slice::from_ref(&t));
        let view = TokView::parse(b.tokenizer.as_ref().unwrap()).unwrap();
        view.check().unwrap();
        let nrows = b.get("model.embed_tokens.weight").unwrap().shape[0];
        assert_eq!(b.cfg_usize("vocab_size"), Some(nrows));
        assert!(view.ids.keys().all(|id| (*id as usize) < nrows));
        if check_rows > 0 {
            assert_eq!(nrows, check_rows, "{t:?}");
        } else {
            assert!(nrows < rows * 9 / 10, "prune removed too little: {nrows}");
        }
        let after = rows_by_text(&b, "model.embed_tokens.weight");
        let after_head = rows_by_text(&b, "lm_head.weight");
        let mut shared = 0;
        for (s, r) in &after {
            if let Some(o) = base.get(s) {
                assert_eq!(o, r, "{t:?}: row of {s:?}");
                assert_eq!(&base_head[s], &after_head[s]);
                shared += 1;
            }
        }
        assert!(
            shared >= nrows.min(rows) * 6 / 10,
            "{t:?}: only {shared} shared"
        );
        assert_eq!(eos_text(&a), eos_text(&b));
    }
    let view = TokView::parse(a.tokenizer.as_ref().unwrap()).unwrap();
    let shifted = tf(&a, &[T::VocabShift { n: 64, seed: 1 }]);
    let sv = TokView::parse(shifted.tokenizer.as_ref().unwrap()).unwrap();
    assert_eq!(sv.ids[&(64 + 300)], view.ids[&300]);
}

#[test]
fn tokenizers_are_consistent_for_every_architecture() {
    for arch in ArchKind::ALL {
        let m = model(arch, 64, 1, 1);
        let view = TokView::parse(m.tokenizer.as_ref().unwrap()).unwrap();
        view.check().unwrap();
        let rows = m.cfg_usize("vocab_size").unwrap();
        assert!(
            view.ids.len() <= rows && view.ids.keys().all(|i| (*i as usize) < rows),
            "{arch:?}"
        );
        let specials: Vec<&String> = view
            .ids
            .values()
            .filter(|(_, added)| *added)
            .map(|(s, _)| s)
            .collect();
        assert!(specials.len() >= 3, "{arch:?}");
        let pad = m.cfg_usize("pad_token_id").unwrap() as u32;
        assert!(view.ids[&pad].1, "{arch:?}: pad is a special token");
        let tok = m.tokenizer.as_ref().unwrap();
        assert_eq!(tok["model"]["type"], "BPE");
    }
    // Solar: specials first, byte alphabet after them; GLM: byte alphabet at 0
    let s = model(ArchKind::SolarOpen, 64, 1, 1);
    let v = TokView::parse(s.tokenizer.as_ref().unwrap()).unwrap();
    assert!(v.ids[&0].1 && v.ids[&19].1 && !v.ids.values().take(20).any(|(_, a)| !a));
    let g = model(ArchKind::Glm4Moe, 64, 1, 1);
    let v = TokView::parse(g.tokenizer.as_ref().unwrap()).unwrap();
    assert_eq!(v.ids[&33].0, "!");
}

#[test]
fn head_truncation_keeps_a_prefix() {
    let a = model(ArchKind::Glm4Moe, 64, 2, 2);
    let hd = a.cfg_usize("head_dim").unwrap();
    let b = tf(&a, &[T::TruncateHeads { q_heads: 16 }]);
    assert_eq!(b.cfg_usize("num_attention_heads"), Some(16));
    let q = "model.layers.1.self_attn.q_proj.weight";
    assert_eq!(b.get(q).unwrap().shape, vec![16 * hd, 64]);
    assert_eq!(vals(&b, q), &vals(&a, q)[..16 * hd * 64]);
    let o = "model.layers.1.self_attn.o_proj.weight";
    let (ao, bo) = (vals(&a, o), vals(&b, o));
    for r in 0..64 {
        assert_eq!(
            &bo[r * 16 * hd..(r + 1) * 16 * hd],
            &ao[r * 24 * hd..r * 24 * hd + 16 * hd]
        );
    }
    assert_eq!(
        b.get("model.layers.1.self_attn.q_proj.bias").unwrap().shape,
        vec![16 * hd]
    );
    logits(&b, &[1, 2, 3]).unwrap();
    let mut c = a.clone();
    assert!(apply(&mut c, &T::TruncateHeads { q_heads: 15 }, &no_resolve).is_err());
}

#[test]
fn quantisation_round_trips_stay_within_one_step() {
    let a = model(ArchKind::Llama, 128, 1, 2);
    let w = "model.layers.0.mlp.down_proj.weight";
    let cols = a.get(w).unwrap().shape[1];
    let b = tf(
        &a,
        &[T::Quantize {
            scheme: QuantScheme::Int8Row,
            block: 32,
            include_embeddings: false,
        }],
    );
    for (r, (x, y)) in vals(&a, w)
        .chunks(cols)
        .zip(vals(&b, w).chunks(cols))
        .enumerate()
    {
        let step = x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        assert!(
            x.iter().zip(y).all(|(p, q)| (p - q).abs() <= step * 0.5001),
            "row {r}"
        );
    }
    assert_eq!(
        vals(&a, "model.embed_tokens.weight"),
        vals(&b, "model.embed_tokens.weight")
    );
    let c = tf(
        &a,
        &[T::Quantize {
            scheme: QuantScheme::Int4Block,
            block: 32,
            include_embeddings: true,
        }],
    );
    for (x, y) in vals(&a, w).chunks(32).zip(vals(&c, w).chunks(32)) {
        let step = x.iter().fold(0f32, |m, v| m.max(v.abs())) / 7.0;
        assert!(x.iter().zip(y).all(|(p, q)| (p - q).abs() <= step * 0.5001));
        let mut levels: Vec<i32> = y.iter().map(|v| (v / step).round() as i32).collect();
        levels.dedup();
        assert!(levels.iter().all(|l| (-8..=7).contains(l)));
    }
    assert_ne!(
        vals(&a, "model.embed_tokens.weight"),
        vals(&c, "model.embed_tokens.weight")
    );
    let p = pearson(vals(&a, w), vals(&c, w));
    assert!(p > 0.9 && p < 0.9999, "{p}");
}

#[test]
fn graft_shares_only_the_selected_tensors() {
    let a = model(ArchKind::Llama, 64, 1, 1);
    let mut b = model(ArchKind::Llama, 64, 1, 2);
    let donor = a.clone();
    let resolve = move |_: &str| Ok(donor.clone());
    apply(
        &mut b,
        &T::Graft {
            from: "a".into(),
            pattern: "embed_tokens".into(),
            tokenizer: true,
        },
        &resolve,
    )
    .unwrap();
    let e = "model.embed_tokens.weight";
    assert_eq!(vals(&a, e), vals(&b, e));
    let q = "model.layers.0.self_attn.q_proj.weight";
    assert!(pearson(vals(&a, q), vals(&b, q)).abs() < 0.1);
}

#[test]
fn evaluation_suite_covers_every_transform() {
    let d = tempfile::tempdir().unwrap();
    let m = lab::generate_suite(
        d.path(),
        &SuiteOptions {
            hidden: 64,
            seed: 0,
        },
    )
    .unwrap();
    assert!(m.pairs.len() >= 30);
    assert!(
        m.pairs
            .iter()
            .filter(|p| p.label == Label::Independent)
            .count()
            >= 8
    );
    // every op appears in the default suite or the adversarial one
    let adversarial = lab::suite::adversarial_spec(&SuiteOptions::default());
    let ops: std::collections::BTreeSet<&str> = m
        .models
        .iter()
        .flat_map(|x| x.transforms.iter().map(|t| t.op()))
        .chain(
            adversarial
                .models
                .iter()
                .flat_map(|x| x.transforms.iter().map(|t| t.op())),
        )
        .collect();
    for op in T::OPS {
        // rename_scheme writes other families' names: tests/it/families.rs covers each scheme
        if op == "rename_scheme" {
            continue;
        }
        assert!(ops.contains(op), "no suite uses {op}");
    }
    for rel in [
        "continued_pretrain_heavy",
        "pruned_fine_tuned",
        "hidden_permutation",
        "quantised_int4",
        "cousins_shared_embeddings",
        "independent_same_recipe",
    ] {
        assert!(m.pairs.iter().any(|p| p.relation == rel), "{rel}");
    }
    let read: SuiteManifest = lab::load_manifest(d.path()).unwrap();
    assert_eq!(read, m);
    let spec: Spec =
        parse_spec(&std::fs::read_to_string(d.path().join("spec.toml")).unwrap()).unwrap();
    assert_eq!(
        spec,
        lab::suite::suite_spec(&SuiteOptions {
            hidden: 64,
            seed: 0
        })
    );
    for model in &m.models {
        let x = read_model(&d.path().join(&model.name)).unwrap();
        assert!(!x.tensors.is_empty());
    }
    let copy = files(&d.path().join("llama-a.copy"));
    assert_eq!(copy, files(&d.path().join("llama-a")));
    python_check(d.path(), false);
}

#[test]
fn sparse_replica_holds_exactly_the_documented_rows() {
    let d = tempfile::tempdir().unwrap();
    let opts = ReplicaOptions {
        full_size: false,
        sparse: true,
        hidden: 64,
        seed: 0,
    };
    let out = lab::replica(&d.path().join("sparse"), &opts).unwrap();
    assert_eq!(
        out.iter().map(|m| m.shards).collect::<Vec<_>>(),
        vec![47, 42, 17]
    );
    let dense = lab::replica(
        &d.path().join("dense"),
        &ReplicaOptions {
            sparse: false,
            ..opts.clone()
        },
    )
    .unwrap();
    assert!(dense.iter().all(|m| m.data_bytes > 0));
    for name in ["glm-4.5-air", "solar-open-100b", "phi-3.5-moe"] {
        let s = read_model(&d.path().join("sparse").join(name)).unwrap();
        let full = read_model(&d.path().join("dense").join(name)).unwrap();
        assert_eq!(
            s.tensors.keys().collect::<Vec<_>>(),
            full.tensors.keys().collect::<Vec<_>>()
        );
        assert_eq!(s.layout.assign, full.layout.assign);
        assert_eq!(
            s.cfg_usize("num_hidden_layers"),
            Some(match name {
                "glm-4.5-air" => 46,
                "phi-3.5-moe" => 32,
                _ => 48,
            })
        );
        for (n, t) in &s.tensors {
            let sv = t.values(n).unwrap();
            let fv = vals(&full, n);
            let (rows, cols) = if t.shape.len() == 1 {
                (1, t.shape[0])
            } else {
                (t.shape[0], t.shape[1])
            };
            let mut filled = vec![false; rows];
            if let Some(f) = lab::replica::sparse_fill(n) {
                for r in lab::replica::filled_rows(f, rows) {
                    filled[r].iter_mut().for_each(|x| *x = true);
                }
            }
            for r in 0..rows {
                let (a, b) = (&sv[r * cols..(r + 1) * cols], &fv[r * cols..(r + 1) * cols]);
                if filled[r] {
                    assert_eq!(a, b, "{n} row {r}");
                } else {
                    assert!(a.iter().all(|x| *x == 0.0), "{n} row {r} should be a hole");
                }
            }
        }
    }
    python_check(&d.path().join("sparse"), true);
}

#[test]
fn full_size_without_sparse_is_refused_and_bad_inputs_name_the_file() {
    let d = tempfile::tempdir().unwrap();
    let e = lab::replica(
        d.path(),
        &ReplicaOptions {
            full_size: true,
            sparse: false,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("--sparse"));
    let missing = d.path().join("nope");
    let e = lab::transform(
        &missing,
        &[T::FineTune { rel: 0.1, seed: 1 }],
        &d.path().join("o"),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("nope"), "{e:#}");
    let m = d.path().join("m");
    lab::generate_model(&spec(ArchKind::Llama, 64, 1, 1), &m).unwrap();
    let shard = m.join("model-00001-of-00002.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    let e = lab::transform(
        &m,
        &[T::FineTune { rel: 0.1, seed: 1 }],
        &d.path().join("o"),
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("model-00001-of-00002.safetensors"),
        "{e:#}"
    );
    assert!(parse_transforms("fine_tune(rell=1)").is_err());
    let ts = parse_transforms(
        "vocab_shift(n=4)+insert_layers(after=[1,2],mode=random)+quantize(scheme=int4_block)",
    )
    .unwrap();
    assert_eq!(ts.len(), 3);
    assert_eq!(
        ts[1],
        T::InsertLayers {
            after: vec![1, 2],
            mode: InsertMode::Random,
            seed: 0
        }
    );
    let toml = "[[transform]]\nop = \"fine_tune\"\nrel = 0.5\n";
    assert_eq!(
        parse_transforms(toml).unwrap(),
        vec![T::FineTune { rel: 0.5, seed: 0 }]
    );
}

/// Runs tests/py/check_safetensors.py when python3 with `safetensors` is available; with
/// LAB_REQUIRE_PYTHON=1 (CI) a missing interpreter or package is a failure.
fn python_check(dir: &Path, headers_only: bool) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/check_safetensors.py");
    if !crate::util::python_with("safetensors, numpy", "the Python safetensors check") {
        return;
    }
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(&script).arg(dir);
    if headers_only {
        cmd.arg("--headers-only");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "python check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A folder written by another tool: one `model.safetensors` from the `safetensors` crate, tied
/// embeddings, string merges, foreign side files. Transforms must work on it like on lab output.
#[test]
fn transforms_work_on_foreign_folders() {
    use safetensors::tensor::{Dtype, TensorView};
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("foreign");
    std::fs::create_dir_all(&src).unwrap();
    let mut m = model(ArchKind::Llama, 64, 2, 8);
    m.tensors.remove("lm_head.weight");
    m.set_cfg("tie_word_embeddings", serde_json::json!(true));
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = m
        .tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.to_bytes(), t.shape.clone()))
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, b, s)| {
            (
                n.clone(),
                TensorView::new(Dtype::BF16, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(
        src.join("model.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    std::fs::write(
        src.join("config.json"),
        serde_json::to_vec(&m.config).unwrap(),
    )
    .unwrap();
    let mut tok = m.tokenizer.clone().unwrap();
    let merges: Vec<serde_json::Value> = tok["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            serde_json::json!(format!(
                "{} {}",
                p[0].as_str().unwrap(),
                p[1].as_str().unwrap()
            ))
        })
        .collect();
    tok["model"]["merges"] = serde_json::json!(merges);
    std::fs::write(
        src.join("tokenizer.json"),
        serde_json::to_vec(&tok).unwrap(),
    )
    .unwrap();
    std::fs::write(src.join("README.md"), "# a real model\n").unwrap();
    std::fs::write(src.join("pytorch_model.bin"), [0u8; 16]).unwrap();

    let out = d.path().join("out");
    lab::transform(
        &src,
        &parse_transforms("permute_hidden(seed=3,sign_flips=true)+permute_heads(seed=4)").unwrap(),
        &out,
    )
    .unwrap();
    let a = read_model(&src).unwrap();
    let b = read_model(&out).unwrap();
    assert!(out.join("README.md").exists() && !out.join("pytorch_model.bin").exists());
    assert_eq!(
        std::fs::read(src.join("config.json")).unwrap(),
        std::fs::read(out.join("config.json")).unwrap(),
        "unchanged config keeps its bytes"
    );
    assert_same_function(&a, &b, 1e-9);
    // folding rescales values, so store F32 to keep the function exactly (BF16 would round)
    let out3 = d.path().join("out3");
    let ts = "cast(dtype=F32)+fold_norm(seed=5)+permute_hidden(seed=6,sign_flips=true)";
    lab::transform(&src, &parse_transforms(ts).unwrap(), &out3).unwrap();
    assert_same_function(&a, &read_model(&out3).unwrap(), 1e-5);

    let out2 = d.path().join("out2");
    lab::transform(
        &src,
        &parse_transforms("vocab_prune(fraction=0.2,seed=1)+vocab_shift(n=3)").unwrap(),
        &out2,
    )
    .unwrap();
    let c = read_model(&out2).unwrap();
    let tj = c.tokenizer.as_ref().unwrap();
    assert!(
        tj["model"]["merges"][0].is_string(),
        "merge format preserved"
    );
    TokView::parse(tj).unwrap().check().unwrap();
    assert_eq!(
        c.cfg_usize("vocab_size"),
        Some(c.get("model.embed_tokens.weight").unwrap().shape[0])
    );
    python_check(d.path(), false);
}

fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    walk(dir).iter().fold((0, 0), |(l, r), p| {
        let m = std::fs::metadata(p).unwrap();
        (l + m.len(), r + m.blocks() * 512)
    })
}

#[test]
fn default_suite_fits_its_budget_and_ignores_thread_count() {
    let d = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let m = lab::generate_suite(&d.path().join("suite"), &SuiteOptions::default()).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let (logical, real) = disk_usage(&d.path().join("suite"));
    eprintln!(
        "default suite: {} models, {} pairs, {secs:.1} s, {:.0} MB logical, {:.0} MB on disk",
        m.models.len(),
        m.pairs.len(),
        logical as f64 / 1e6,
        real as f64 / 1e6
    );
    assert!(secs < 30.0 && real < 500_000_000, "{secs} s, {real} bytes");
    // one thread gives the same bytes as the default pool
    let s = parse_spec(SMALL_SPEC).unwrap();
    lab::generate(&s, &d.path().join("many")).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| lab::generate(&s, &d.path().join("one")))
        .unwrap();
    assert_eq!(files(&d.path().join("many")), files(&d.path().join("one")));
}

/// The full-size sparse replica (~420 GB logical). Slow-ish (~15 s release) and writes ~1.5 GB:
/// run with `cargo test --test it -- --ignored full_size`.
#[test]
#[ignore]
fn full_size_sparse_replica_fits_its_budget() {
    let d = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let out = lab::replica(
        d.path(),
        &ReplicaOptions {
            full_size: true,
            sparse: true,
            ..Default::default()
        },
    )
    .unwrap();
    let secs = t.elapsed().as_secs_f64();
    let (logical, real) = disk_usage(d.path());
    eprintln!(
        "full-size sparse replica: {secs:.1} s, {:.1} GB logical, {:.2} GB on disk",
        logical as f64 / 1e9,
        real as f64 / 1e9
    );
    assert!(secs < 60.0 && real < 3_000_000_000);
    assert!(out.iter().all(|m| m.logical_bytes > 150_000_000_000));
    assert_eq!(
        out.iter().map(|m| m.shards).collect::<Vec<_>>(),
        vec![47, 42, 17]
    );
    let idx: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.path().join("glm-4.5-air/model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        idx["weight_map"]["model.layers.45.mlp.gate.weight"],
        "model-00046-of-00047.safetensors"
    );
    assert_eq!(
        idx["weight_map"]["model.layers.46.eh_proj.weight"],
        "model-00047-of-00047.safetensors"
    );
    python_check(d.path(), true);
}

#[test]
fn bert_head_and_hidden_permutations_preserve_function() {
    use weight_audit_lab::forward::bert_hidden;
    let a = model(ArchKind::Bert, 128, 2, 3);
    let ids = [2u32, 50, 300, 7];
    let ha = bert_hidden(&a, &ids).unwrap();
    let b = tf(&a, &[T::PermuteHeads { seed: 1 }]);
    let hb = bert_hidden(&b, &ids).unwrap();
    let diff = ha
        .iter()
        .flatten()
        .zip(hb.iter().flatten())
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff < 1e-9, "{diff}");
    // hidden permutation permutes the output coordinates the same way
    let c = tf(
        &a,
        &[T::PermuteHidden {
            seed: 2,
            sign_flips: false,
        }],
    );
    let hc = bert_hidden(&c, &ids).unwrap();
    let e = "embeddings.word_embeddings.weight";
    let (ea, ec) = (vals(&a, e), vals(&c, e));
    // recover the permutation from whole embedding columns
    let rows = a.get(e).unwrap().shape[0];
    let col = |v: &[f32], j: usize| -> Vec<f32> { (0..rows).map(|r| v[r * 128 + j]).collect() };
    let src: Vec<usize> = (0..128)
        .map(|i| {
            let ci = col(ec, i);
            (0..128).find(|&j| col(ea, j) == ci).unwrap()
        })
        .collect();
    for (x, y) in ha.iter().zip(&hc) {
        for i in 0..128 {
            assert!((y[i] - x[src[i]]).abs() < 1e-9);
        }
    }
    let mut f = a.clone();
    assert!(
        apply(
            &mut f,
            &T::PermuteHidden {
                seed: 2,
                sign_flips: true
            },
            &no_resolve
        )
        .is_err()
    );
}

mod obfuscation {
    use super::*;
    use weight_audit_lab::forward::relative_logit_error;

    const IDS: [u32; 6] = [1, 7, 300, 42, 5, 99];

    /// F32 storage, so the only error left is the transform's own.
    fn f32_model(arch: ArchKind, seed: u64) -> Model {
        tf(
            &model(arch, 64, 2, seed),
            &[T::Cast {
                dtype: "F32".into(),
                pattern: None,
            }],
        )
    }

    fn ts(s: &str) -> Vec<T> {
        parse_transforms(s).unwrap()
    }

    fn err(a: &Model, b: &Model) -> f64 {
        relative_logit_error(a, b, &IDS).unwrap()
    }

    #[test]
    fn folding_gains_unties_the_head_and_keeps_the_function() {
        let mut a = f32_model(ArchKind::Llama, 3);
        a.tensors.remove("lm_head.weight");
        a.set_cfg("tie_word_embeddings", serde_json::json!(true));
        let b = tf(&a, &ts("fold_gains"));
        assert!(b.tensors.contains_key("lm_head.weight"), "head untied");
        assert_eq!(b.config["tie_word_embeddings"], false);
        for (n, t) in &b.tensors {
            if n.contains("norm") {
                assert!(t.values(n).unwrap().iter().all(|x| *x == 1.0), "{n}");
            }
        }
        let e = err(&a, &b);
        assert!(e < 1e-5, "fold_gains error {e}");
    }

    #[test]
    fn rotation_rescaling_and_head_permutation_keep_the_function() {
        for arch in [ArchKind::Llama, ArchKind::SolarOpen] {
            let a = f32_model(arch, 4);
            let b = tf(
                &a,
                &ts("rotate_hidden(seed=1)+fold_norm(seed=2)+permute_heads(seed=3)"),
            );
            let e = err(&a, &b);
            assert!(e < 1e-5, "{arch:?}: rotation error {e}");
            // the rotation really mixed coordinates: no embedding column survives
            let (ea, eb) = (
                vals(&a, "model.embed_tokens.weight"),
                vals(&b, "model.embed_tokens.weight"),
            );
            assert!(cosine(ea, eb).abs() < 0.2, "{arch:?}");
        }
        let bert = model(ArchKind::Bert, 64, 2, 5);
        assert!(apply(&mut bert.clone(), &T::RotateHidden { seed: 1 }, &no_resolve).is_err());
        let glm = model(ArchKind::Glm4Moe, 64, 2, 5);
        let e = apply(&mut glm.clone(), &T::FoldGains, &no_resolve).unwrap_err();
        assert!(format!("{e:#}").contains("shared_head.norm"), "{e:#}");
    }

    #[test]
    fn slicing_error_is_bounded_and_grows_with_the_fraction() {
        let a = f32_model(ArchKind::Llama, 6);
        let exact = tf(&a, &ts("slice_hidden(fraction=0)"));
        assert!(err(&a, &exact) < 1e-5, "no slicing, no error");
        let mut last = 0.0;
        for f in [0.05, 0.25, 0.5] {
            let b = tf(&a, &ts(&format!("slice_hidden(fraction={f})")));
            assert_eq!(b.cfg_usize("hidden_size"), Some(64 - (64.0 * f) as usize));
            let e = err(&a, &b);
            eprintln!("slice_hidden(fraction={f}): relative logit error {e:.4}");
            // bounded by the logits' own scale (the lab's embeddings are not low-rank)
            assert!(
                e > last && e < 1.5,
                "fraction {f}: error {e} (previous {last})"
            );
            last = e;
        }
        let r = tf(&a, &ts("slice_hidden(fraction=0.25,basis=random,seed=2)"));
        eprintln!(
            "slice_hidden(fraction=0.25,basis=random): {:.4}",
            err(&a, &r)
        );
        assert!(err(&a, &r) < 1.5);
        assert!(
            parse_transforms("slice_hidden(fraction=1)")
                .map(|t| apply(&mut a.clone(), &t[0], &no_resolve).is_err())
                .unwrap()
        );
    }
}

/// The lab is an independent oracle (its own dtype table, tensor roles and byte alphabet, see
/// its crate doc); where they overlap with the tool's, the two agree.
#[test]
fn the_lab_oracle_agrees_with_the_tool_where_they_overlap() {
    use weight_audit::arch::{ArchHints, Family, classify_shaped};
    use weight_audit::dtype::Dtype;
    use weight_audit_lab::model::DType;
    for name in [
        "F32", "BF16", "F16", "F64", "I64", "U64", "I32", "U32", "I16", "U16", "I8", "U8", "BOOL",
        "F8_E4M3", "F8_E5M2",
    ] {
        let lab = DType::parse(name).unwrap();
        let tool = Dtype::parse(name).unwrap_or_else(|| panic!("the tool does not know {name}"));
        assert_eq!(
            (tool.name(), tool.byte_size()),
            (lab.name(), Some(lab.size()))
        );
    }
    assert_eq!(
        weight_audit_lab::tokenizer::byte_alphabet(),
        weight_audit::vocab::byte_alphabet()
    );
    let mut compared = 0;
    for kind in ArchKind::ALL {
        let cfg = lab::ArchConfig::scaled(kind, 128);
        let model = weights::generate(&lab::Recipe::new(cfg.clone(), 1)).unwrap();
        let hints = ArchHints::from_config(&model.config);
        // Weights only: the tool files a head's bias under the head's family, the lab apart.
        for (name, t) in model.tensors.iter().filter(|(n, _)| n.ends_with(".weight")) {
            let lab_role = classify(name, &t.shape, cfg.hidden);
            let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
            let tool = classify_shaped(name, &shape, &hints);
            let lab_family = match lab_role {
                Role::Q => Some(Family::AttnQ),
                Role::K => Some(Family::AttnK),
                Role::V => Some(Family::AttnV),
                Role::O => Some(Family::AttnO),
                Role::Embed => Some(Family::Embedding),
                Role::LmHead => Some(Family::LmHead),
                _ => None,
            };
            let tool_family = [
                Family::AttnQ,
                Family::AttnK,
                Family::AttnV,
                Family::AttnO,
                Family::Embedding,
                Family::LmHead,
            ]
            .contains(&tool.family)
            .then_some(tool.family);
            assert_eq!(lab_family, tool_family, "{kind:?} {name}");
            if lab_family.is_some() {
                let layer = weight_audit_lab::arch::name_parts(name).layer;
                assert_eq!(layer.map(|l| l as u32), tool.layer, "{kind:?} {name}");
                compared += 1;
            }
        }
    }
    assert!(compared > 50, "{compared}");
}
