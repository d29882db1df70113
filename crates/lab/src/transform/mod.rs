//! Composable transforms with known ground truth. Each works on any model folder the lab can read
//! (lab output or a real checkpoint) and says in its doc what property it preserves.
//!
//! [`spec`](TransformSpec) says what a transform is and parses `op(k=v,…)+op(…)`; this file
//! applies them (dispatch, the small transforms, noise) on the geometry [`crate::dims::Dims`]
//! reads; the larger transforms live by what they change: `layers` (the stack, the architecture
//! name), `permute` (hidden coordinates, heads, experts), `vocab` (token ids and the tokenizer)
//! and `values` (heads truncated, norms folded, quantisation). The obfuscations and the naming
//! schemes live in [`crate::obfuscate`] and [`crate::scheme`], which do not depend on this file.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;

mod layers;
mod permute;
mod spec;
mod values;
mod vocab;

pub use spec::{InsertMode, QuantScheme, TransformSpec, parse_transforms};
pub use values::quant_roundtrip;

use layers::{leading_dense, rebuild_layers, rename_arch};
use permute::{permute_experts, permute_heads, permute_hidden};
use values::{fold_norm, quantize, truncate_heads};
use vocab::{vocab_extend, vocab_permute, vocab_prune, vocab_shift};

use super::arch::name_parts;
use super::dims::Dims;
use super::dtype::DType;
use super::model::{Data, Model, Tensor, read_model, write_model};
use super::rng::Rng;

/// Apply `specs` in order to an in-memory model. `resolve` loads models named by `graft`.
pub fn apply_all(
    model: &mut Model,
    specs: &[TransformSpec],
    resolve: &dyn Fn(&str) -> Result<Model>,
) -> Result<()> {
    for s in specs {
        apply(model, s, resolve).with_context(|| format!("transform {}", s.op()))?;
    }
    Ok(())
}

/// Apply one transform in memory.
pub fn apply(
    m: &mut Model,
    spec: &TransformSpec,
    resolve: &dyn Fn(&str) -> Result<Model>,
) -> Result<()> {
    use TransformSpec as T;
    if !matches!(spec, T::Copy | T::Independent { .. }) {
        m.recipe = None;
    }
    match spec {
        T::Copy => Ok(()),
        T::Cast { dtype, pattern } => cast(m, dtype, pattern.as_deref()),
        T::Reshard { shards } => {
            if *shards == 0 {
                bail!("reshard: shards must be ≥ 1");
            }
            m.layout.shards = *shards;
            m.layout.assign.clear();
            Ok(())
        }
        T::Reorder { seed } => {
            let mut order = m.write_order();
            Rng::new(*seed, "reorder").shuffle(&mut order);
            m.layout.order = order;
            Ok(())
        }
        T::RenameArch { to } => rename_arch(m, *to),
        T::RenameScheme { scheme } => super::scheme::rename_scheme(m, *scheme),
        T::Rename { from, to } => {
            if from.is_empty() {
                bail!("rename: empty pattern");
            }
            m.rename_all(|n| n.replace(from.as_str(), to))
        }
        T::FineTune { rel, seed } => {
            noise(m, *seed, "fine_tune", |_, _| (1.0, *rel));
            Ok(())
        }
        T::ContinuedPretrain { rel, drift, seed } => continued_pretrain(m, *rel, *drift, *seed),
        T::InsertLayers { after, mode, seed } => insert_layers(m, after, *mode, *seed),
        T::RemoveLayers { layers } => {
            let d = Dims::of(m)?;
            let plan: Vec<(usize, bool)> = (0..d.layers)
                .filter(|l| !layers.contains(l))
                .map(|l| (l, false))
                .collect();
            rebuild_layers(m, d.layers, &plan, 0)
        }
        T::SubsetLayers { every, offset } => {
            let d = Dims::of(m)?;
            if *every == 0 {
                bail!("subset_layers: every must be ≥ 1");
            }
            let plan: Vec<(usize, bool)> = (0..d.layers)
                .filter(|l| l % every == offset % every)
                .map(|l| (l, false))
                .collect();
            rebuild_layers(m, d.layers, &plan, 0)
        }
        T::PermuteLayers { seed } => {
            let d = Dims::of(m)?;
            let dense = leading_dense(m, d.layers);
            let mut rest: Vec<usize> = (dense..d.layers).collect();
            Rng::new(*seed, "permute_layers").shuffle(&mut rest);
            let plan: Vec<(usize, bool)> = (0..dense).chain(rest).map(|l| (l, false)).collect();
            rebuild_layers(m, d.layers, &plan, 0)
        }
        T::PermuteHidden { seed, sign_flips } => permute_hidden(m, *seed, *sign_flips),
        T::PermuteHeads { seed } => permute_heads(m, *seed),
        T::PermuteExperts { seed } => permute_experts(m, *seed),
        T::VocabShift { n, seed } => vocab_shift(m, *n, *seed),
        T::VocabPermute { seed } => vocab_permute(m, *seed),
        T::VocabPrune { fraction, seed } => vocab_prune(m, *fraction, *seed),
        T::VocabExtend { n, seed } => vocab_extend(m, *n, *seed),
        T::TruncateHeads { q_heads } => truncate_heads(m, *q_heads),
        T::FoldNorm { spread, seed } => fold_norm(m, *spread, *seed),
        T::FoldGains => super::obfuscate::fold_gains(m),
        T::RotateHidden { seed } => super::obfuscate::rotate_hidden(m, *seed),
        T::SliceHidden {
            fraction,
            basis,
            seed,
        } => super::obfuscate::slice_hidden(m, *fraction, *basis, *seed),
        T::Quantize {
            scheme,
            block,
            include_embeddings,
        } => quantize(m, *scheme, *block, *include_embeddings),
        T::Independent { seed } => independent(m, *seed),
        T::Graft {
            from,
            pattern,
            tokenizer,
        } => graft(m, &resolve(from)?, from, pattern, *tokenizer),
    }
}

/// `cast`: re-store float tensors (all, or those whose name contains `pattern`) as `dtype`.
fn cast(m: &mut Model, dtype: &str, pattern: Option<&str>) -> Result<()> {
    let dt = DType::parse(dtype)?;
    if !dt.is_float() {
        bail!("cast: target dtype {dtype} is not F32/BF16/F16");
    }
    for (n, t) in m.tensors.iter_mut() {
        if t.dtype.is_float() && pattern.is_none_or(|p| n.contains(p)) {
            t.dtype = dt;
            if let Data::F32(v) = &mut t.data {
                super::model::round_values(dt, v);
            }
        }
    }
    if pattern.is_none() {
        let s = match dt {
            DType::F32 => "float32",
            DType::F16 => "float16",
            _ => "bfloat16",
        };
        m.set_cfg("torch_dtype", json!(s));
    }
    Ok(())
}

/// `continued_pretrain`: a per-tensor multiplicative drift growing with depth, plus noise.
fn continued_pretrain(m: &mut Model, rel: f64, drift: f64, seed: u64) -> Result<()> {
    let layers = Dims::of(m)?.layers.max(1);
    noise(m, seed, "continued_pretrain", |name, _| {
        let t = name_parts(name)
            .layer
            .map(|l| (l as f64 / layers as f64).min(1.0))
            .unwrap_or(0.5);
        let z = Rng::new(seed, &format!("cpt-drift/{name}")).normal();
        ((1.0 + drift * (t + 0.5 * z)).max(0.05), rel)
    });
    Ok(())
}

/// `insert_layers`: a copy (or a fresh random layer) after each layer listed in `after`.
fn insert_layers(m: &mut Model, after: &[usize], mode: InsertMode, seed: u64) -> Result<()> {
    let d = Dims::of(m)?;
    for a in after {
        if *a >= d.layers {
            bail!(
                "insert_layers: layer {a} does not exist ({} layers)",
                d.layers
            );
        }
    }
    let mut plan = Vec::new();
    for l in 0..d.layers {
        plan.push((l, false));
        if after.contains(&l) {
            plan.push((l, mode == InsertMode::Random));
        }
    }
    rebuild_layers(m, d.layers, &plan, seed)
}

/// `independent`: regenerate a lab model with another seed, or shuffle every tensor's values.
fn independent(m: &mut Model, seed: u64) -> Result<()> {
    if let Some(r) = m.recipe.clone() {
        let mut r = r;
        r.seed = seed;
        let layout = m.layout.clone();
        *m = super::weights::generate(&r)?;
        m.layout = layout;
    } else {
        for (n, t) in m.tensors.iter_mut() {
            if let Data::F32(v) = &mut t.data {
                Rng::new(seed, &format!("independent/{n}")).shuffle(v);
            }
        }
    }
    Ok(())
}

/// `graft`: copy the tensors whose name contains `pattern` (and optionally the tokenizer) from
/// `donor`, the model named `from`.
fn graft(m: &mut Model, donor: &Model, from: &str, pattern: &str, tokenizer: bool) -> Result<()> {
    let mut n = 0;
    for (name, t) in &donor.tensors {
        if !name.contains(pattern) {
            continue;
        }
        let mine = m
            .get_mut(name)
            .with_context(|| format!("graft from {from}"))?;
        if mine.shape != t.shape {
            bail!(
                "graft: tensor {name} has shape {:?} here and {:?} in {from}",
                mine.shape,
                t.shape
            );
        }
        *mine = t.clone();
        n += 1;
    }
    if n == 0 {
        bail!("graft: no tensor of {from} matches {pattern:?}");
    }
    if tokenizer {
        m.tokenizer = donor.tokenizer.clone();
        if let Some(b) = donor.files.get("tokenizer_config.json") {
            m.files.insert("tokenizer_config.json".into(), b.clone());
        }
    }
    Ok(())
}

/// Transform a model folder into `out_dir`. A lone `copy` copies every file byte for byte.
pub fn transform_dir(in_dir: &Path, specs: &[TransformSpec], out_dir: &Path) -> Result<()> {
    let a = in_dir
        .canonicalize()
        .with_context(|| format!("{}: cannot open", in_dir.display()))?;
    if let Ok(b) = out_dir.canonicalize()
        && a == b
    {
        bail!("output folder {} is the input folder", out_dir.display());
    }
    if specs.iter().all(|s| *s == TransformSpec::Copy) {
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("creating {}", out_dir.display()))?;
        for f in super::model::list_files(in_dir)? {
            let name = f
                .file_name()
                .ok_or_else(|| anyhow!("bad file name {}", f.display()))?;
            std::fs::copy(&f, out_dir.join(name))
                .with_context(|| format!("copying {}", f.display()))?;
        }
        return Ok(());
    }
    let mut m = read_model(in_dir)?;
    let resolve = |p: &str| read_model(Path::new(p));
    apply_all(&mut m, specs, &resolve)?;
    write_model(&m, out_dir)
}

// ---------------------------------------------------------------------------------------------

/// Standard deviation around the mean: noise relative to a tensor's spread keeps the marginals of
/// positive norm gains (mean and sign) while perturbing coordinates.
fn centred_std(v: &[f32]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let n = v.len() as f64;
    let mean = v.iter().map(|x| *x as f64).sum::<f64>() / n;
    (v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

fn rms(v: &[f32]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
}

/// `v ← v·scale + rel·rms(v)·N(0,1)` per tensor, noise from per-row streams.
fn noise(m: &mut Model, seed: u64, label: &str, f: impl Fn(&str, &Tensor) -> (f64, f64) + Sync) {
    use rayon::prelude::*;
    m.tensors.par_iter_mut().for_each(|(name, t)| {
        let (scale, rel) = f(name, t);
        let (rows, cols) = t.dims2();
        if let Data::F32(v) = &mut t.data {
            let sd = rel * centred_std(v);
            for r in 0..rows {
                let mut g = Rng::indexed(seed, &format!("{label}/{name}"), r as u64);
                for x in &mut v[r * cols..(r + 1) * cols] {
                    *x = (*x as f64 * scale + sd * g.normal()) as f32;
                }
            }
        }
    });
}
