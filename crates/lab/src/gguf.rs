//! Writing a lab model as a GGUF file, the way llama.cpp's `convert_hf_to_gguf.py` and
//! `llama-quantize` would: llama.cpp's tensor names, experts stacked per layer, Llama's Q/K
//! rows interleaved per rotary head, the vocabulary in `tokenizer.ggml.*`, 2-D weights
//! quantised with the reference quantisers (no importance matrix), vectors kept in F32.
//!
//! A type stands for one plain type, like `llama-quantize --pure`: every 2-D weight in it, not
//! a mixture such as Q4_K_M (which moves `output`, a tied `token_embd`, and some `attn_v` and
//! `ffn_down` to Q6_K). What `--pure` still does is kept: a row length (ggml's `ne[0]`) the
//! type's block does not divide falls back to another type (see [`GgufQuant::fallback`]).
//!
//! Written from the GGUF specification (ggml's `docs/gguf.md`) and the converter's behaviour,
//! with none of `weight-audit`'s code: the tool's reader is checked against it, and both
//! against llama.cpp's own Python package `gguf` in the tests.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::gguf_kquant::{self, QK_K};
use crate::model::Model;

/// How the 2-D weights are stored.
#[allow(non_camel_case_types)] // ggml's spelling
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufQuant {
    /// 32-bit floats.
    F32,
    /// IEEE half.
    F16,
    /// Blocks of 32: an f16 scale and 32 signed bytes.
    Q8_0,
    /// Blocks of 32: an f16 scale and 32 nibbles (value = scale · (q − 8)).
    Q4_0,
    /// Blocks of 32: an f16 scale, 32 fifth bits and 32 nibbles (value = scale · (q − 16));
    /// what `llama-quantize` uses for Q4_K rows that 256 does not divide.
    Q5_0,
    /// Super-blocks of 256: f16 scale and min, 6-bit scales and mins of 8 sub-blocks, 4-bit
    /// codes (see [`crate::gguf_kquant`]).
    Q4_K,
    /// Super-blocks of 256: 6-bit codes, i8 scales of 16 sub-blocks, an f16 scale.
    Q6_K,
}

/// Every type the lab writes, in [`GgufQuant::parse`]'s order.
pub const ALL: [GgufQuant; 7] = [
    GgufQuant::F32,
    GgufQuant::F16,
    GgufQuant::Q8_0,
    GgufQuant::Q4_0,
    GgufQuant::Q5_0,
    GgufQuant::Q4_K,
    GgufQuant::Q6_K,
];

impl GgufQuant {
    /// The name `llama-quantize` and `gguf` use.
    pub fn name(self) -> &'static str {
        match self {
            GgufQuant::F32 => "F32",
            GgufQuant::F16 => "F16",
            GgufQuant::Q8_0 => "Q8_0",
            GgufQuant::Q4_0 => "Q4_0",
            GgufQuant::Q5_0 => "Q5_0",
            GgufQuant::Q4_K => "Q4_K",
            GgufQuant::Q6_K => "Q6_K",
        }
    }

    /// Parses a name as [`GgufQuant::name`] spells it (any case).
    pub fn parse(s: &str) -> Result<GgufQuant> {
        ALL.into_iter()
            .find(|q| q.name().eq_ignore_ascii_case(s))
            .with_context(|| {
                let names: Vec<&str> = ALL.iter().map(|q| q.name()).collect();
                format!(
                    "unknown GGUF type {s:?} (the lab writes {})",
                    names.join(", ")
                )
            })
    }

    /// ggml's type id.
    fn id(self) -> u32 {
        match self {
            GgufQuant::F32 => 0,
            GgufQuant::F16 => 1,
            GgufQuant::Q8_0 => 8,
            GgufQuant::Q4_0 => 2,
            GgufQuant::Q5_0 => 6,
            GgufQuant::Q4_K => 12,
            GgufQuant::Q6_K => 14,
        }
    }

    /// Values per block.
    pub fn block(self) -> usize {
        match self {
            GgufQuant::F32 | GgufQuant::F16 => 1,
            GgufQuant::Q8_0 | GgufQuant::Q4_0 | GgufQuant::Q5_0 => 32,
            GgufQuant::Q4_K | GgufQuant::Q6_K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgufQuant::F32 => 4,
            GgufQuant::F16 => 2,
            GgufQuant::Q8_0 => 34,
            GgufQuant::Q4_0 => 18,
            GgufQuant::Q5_0 => 22,
            GgufQuant::Q4_K => gguf_kquant::Q4_K_BYTES,
            GgufQuant::Q6_K => gguf_kquant::Q6_K_BYTES,
        }
    }

    /// What `llama-quantize` stores a K-quant row in when 256 does not divide its length:
    /// llama.cpp's `tensor_type_fallback` (`src/llama-quant.cpp`, master at commit
    /// 007dbbf3fd17eefe9b47fee45f48f7ba5e62b714; `llama_tensor_get_type` applies it even under
    /// `--pure`) maps Q4_K → Q5_0 and Q6_K → Q8_0, and takes F16 when 32 does not divide the
    /// row either.
    /// It defines no fallback for the legacy types (it refuses the tensor); the lab keeps
    /// such rows in F32, as it always has.
    pub fn fallback(self) -> Option<GgufQuant> {
        match self {
            GgufQuant::Q4_K => Some(GgufQuant::Q5_0),
            GgufQuant::Q6_K => Some(GgufQuant::Q8_0),
            _ => None,
        }
    }

    /// The type a tensor of ggml dims `dims` (innermost first) is stored in when the model is
    /// written in `self`: vectors in F32, 2-D and stacked weights in `self` or its fallback.
    pub fn for_tensor(self, dims: &[usize]) -> GgufQuant {
        let row = dims.first().copied().unwrap_or(1);
        if dims.len() < 2 {
            return GgufQuant::F32;
        }
        if row.is_multiple_of(self.block()) {
            return self;
        }
        match self.fallback() {
            Some(f) if row.is_multiple_of(f.block()) => f,
            Some(_) => GgufQuant::F16,
            None => GgufQuant::F32,
        }
    }
}

const ALIGNMENT: usize = 32;

/// One metadata value.
pub(crate) enum Meta {
    U32(u32),
    F32(f32),
    Str(String),
    Strs(Vec<String>),
    I32s(Vec<i32>),
}

/// A layer's experts of one projection: expert index → (shape, values).
type Experts = BTreeMap<usize, (Vec<usize>, Vec<f32>)>;

/// llama.cpp's architecture name for a lab `model_type`.
pub(crate) fn arch_name(model_type: &str) -> Result<&'static str> {
    Ok(match model_type {
        "llama" => "llama",
        "glm4_moe" => "glm4moe",
        "bert" => "bert",
        other => bail!("the lab writes GGUF for llama, glm4_moe and bert models, not {other}"),
    })
}

/// llama.cpp's name of a Hugging Face tensor name (`None`: not written, like the converter's
/// skipped tensors), and for experts the (layer, projection, expert) it stacks into.
pub(crate) enum Target {
    Plain(String),
    Expert {
        layer: usize,
        proj: &'static str,
        expert: usize,
    },
}

pub(crate) fn target(name: &str, bert: bool) -> Option<Target> {
    let (stem, suffix) = name.rsplit_once('.')?;
    let global = match stem {
        "model.embed_tokens" | "embeddings.word_embeddings" => Some("token_embd"),
        "embeddings.position_embeddings" => Some("position_embd"),
        "embeddings.token_type_embeddings" => Some("token_types"),
        "embeddings.LayerNorm" => Some("token_embd_norm"),
        "model.norm" => Some("output_norm"),
        "lm_head" => Some("output"),
        _ => None,
    };
    if let Some(g) = global {
        return Some(Target::Plain(format!("{g}.{suffix}")));
    }
    let rest = stem
        .strip_prefix("model.layers.")
        .or_else(|| stem.strip_prefix("encoder.layer."))?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    if let Some(e) = part.strip_prefix("mlp.experts.") {
        let (expert, proj) = e.split_once('.')?;
        let proj = match proj {
            "gate_proj" => "ffn_gate_exps",
            "up_proj" => "ffn_up_exps",
            "down_proj" => "ffn_down_exps",
            _ => return None,
        };
        return Some(Target::Expert {
            layer,
            proj,
            expert: expert.parse().ok()?,
        });
    }
    let short = match (part, bert) {
        ("self_attn.q_proj", _) | ("attention.self.query", _) => "attn_q",
        ("self_attn.k_proj", _) | ("attention.self.key", _) => "attn_k",
        ("self_attn.v_proj", _) | ("attention.self.value", _) => "attn_v",
        ("self_attn.o_proj", _) | ("attention.output.dense", _) => "attn_output",
        ("attention.output.LayerNorm", _) => "attn_output_norm",
        ("output.LayerNorm", _) => "layer_output_norm",
        ("intermediate.dense", _) => "ffn_up",
        ("output.dense", _) => "ffn_down",
        ("input_layernorm", _) => "attn_norm",
        ("post_attention_layernorm", _) => "ffn_norm",
        ("mlp.gate_proj", _) => "ffn_gate",
        ("mlp.up_proj", _) => "ffn_up",
        ("mlp.down_proj", _) => "ffn_down",
        ("mlp.gate", _) => "ffn_gate_inp",
        ("mlp.shared_experts.gate_proj", _) => "ffn_gate_shexp",
        ("mlp.shared_experts.up_proj", _) => "ffn_up_shexp",
        ("mlp.shared_experts.down_proj", _) => "ffn_down_shexp",
        _ => return None,
    };
    if part == "mlp.gate" && suffix == "e_score_correction_bias" {
        return Some(Target::Plain(format!("blk.{layer}.exp_probs_b.bias")));
    }
    Some(Target::Plain(format!("blk.{layer}.{short}.{suffix}")))
}

/// The converter's Q/K permutation: within each of `heads` heads, the rows of the two rotary
/// halves are interleaved (row `half·d/2 + i` moves to `2i + half`).
fn permute_rows(values: &[f32], rows: usize, cols: usize, heads: usize) -> Result<Vec<f32>> {
    if heads == 0 || !rows.is_multiple_of(heads) || !(rows / heads).is_multiple_of(2) {
        bail!("cannot permute {rows} rows over {heads} heads");
    }
    let d = rows / heads;
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        let (h, within) = (r / d, r % d);
        let (half, i) = (within / (d / 2), within % (d / 2));
        let to = h * d + 2 * i + half;
        out[to * cols..(to + 1) * cols].copy_from_slice(&values[r * cols..(r + 1) * cols]);
    }
    Ok(out)
}

/// Writes `model` to `path` as one GGUF v3 file with 2-D weights in `quant` (or, tensor by
/// tensor, its fallback: [`GgufQuant::for_tensor`]).
pub fn write_gguf(model: &Model, path: &Path, quant: GgufQuant) -> Result<()> {
    let model_type = model
        .config
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    let arch = arch_name(model_type)?;
    let bert = arch == "bert";
    let cfg = |k: &str| model.cfg_usize(k);
    let heads = cfg("num_attention_heads").unwrap_or(1);
    let kv_heads = cfg("num_key_value_heads").unwrap_or(heads);

    // tensors: (gguf name, ggml dims innermost first, values, 2-D?)
    let mut out: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut stacks: BTreeMap<(usize, &'static str), Experts> = BTreeMap::new();
    for (name, t) in &model.tensors {
        let Some(target) = target(name, bert) else {
            continue;
        };
        // the values as the checkpoint stores them (what the converter reads)
        let mut values = t.values(name)?.to_vec();
        crate::model::round_values(t.dtype, &mut values);
        match target {
            Target::Expert {
                layer,
                proj,
                expert,
            } => {
                stacks
                    .entry((layer, proj))
                    .or_default()
                    .insert(expert, (t.shape.clone(), values));
            }
            Target::Plain(g) => {
                let (rows, cols) = t.dims2();
                let values = if arch == "llama" && g.ends_with("attn_q.weight") {
                    permute_rows(&values, rows, cols, heads)?
                } else if arch == "llama" && g.ends_with("attn_k.weight") {
                    permute_rows(&values, rows, cols, kv_heads)?
                } else {
                    values
                };
                out.push((g, t.shape.iter().rev().copied().collect(), values));
            }
        }
    }
    for ((layer, proj), experts) in stacks {
        let n = experts.len();
        let Some((shape, _)) = experts.values().next() else {
            continue;
        };
        let mut dims: Vec<usize> = shape.iter().rev().copied().collect();
        dims.push(n);
        let mut values = Vec::new();
        for (i, (e, (_, v))) in experts.iter().enumerate() {
            if i != *e {
                bail!("layer {layer}: experts of {proj} are not numbered 0..{n}");
            }
            values.extend_from_slice(v);
        }
        out.push((format!("blk.{layer}.{proj}.weight"), dims, values));
    }
    out.sort_by(|a, b| crate::model::natural_cmp(&a.0, &b.0));

    let meta = metadata(model, arch)?;
    let bytes = encode_file(&meta, &out, quant)?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn metadata(model: &Model, arch: &str) -> Result<Vec<(String, Meta)>> {
    let mut m: Vec<(String, Meta)> = vec![
        ("general.architecture".into(), Meta::Str(arch.into())),
        ("general.name".into(), Meta::Str("lab model".into())),
    ];
    let keys = [
        ("num_hidden_layers", "block_count"),
        ("hidden_size", "embedding_length"),
        ("intermediate_size", "feed_forward_length"),
        ("num_attention_heads", "attention.head_count"),
        ("num_key_value_heads", "attention.head_count_kv"),
        ("max_position_embeddings", "context_length"),
        ("n_routed_experts", "expert_count"),
        ("num_experts_per_tok", "expert_used_count"),
        ("moe_intermediate_size", "expert_feed_forward_length"),
    ];
    for (hf, g) in keys {
        if let Some(v) = model.cfg_usize(hf) {
            m.push((format!("{arch}.{g}"), Meta::U32(u32::try_from(v)?)));
        }
    }
    if let Some(eps) = model.config.get("rms_norm_eps").and_then(Value::as_f64) {
        m.push((
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            Meta::F32(eps as f32),
        ));
    }
    if let Some(tok) = &model.tokenizer {
        let (tokens, types, merges) = vocabulary(tok)?;
        m.push(("tokenizer.ggml.model".into(), Meta::Str("gpt2".into())));
        m.push(("tokenizer.ggml.tokens".into(), Meta::Strs(tokens)));
        m.push(("tokenizer.ggml.token_type".into(), Meta::I32s(types)));
        m.push(("tokenizer.ggml.merges".into(), Meta::Strs(merges)));
    }
    Ok(m)
}

/// Tokens by id (gaps filled with `[PAD<id>]`, as the converter does), their types (1 normal,
/// 3 control for special added tokens) and the merges, from a byte-level `tokenizer.json`.
fn vocabulary(tok: &Value) -> Result<(Vec<String>, Vec<i32>, Vec<String>)> {
    let mut by_id: BTreeMap<u64, (String, i32)> = BTreeMap::new();
    if let Some(Value::Object(v)) = tok.pointer("/model/vocab") {
        for (text, id) in v {
            let id = id
                .as_u64()
                .context("tokenizer.json: a token id is not a number")?;
            by_id.insert(id, (text.clone(), 1));
        }
    }
    if let Some(Value::Array(added)) = tok.get("added_tokens") {
        for t in added {
            let (Some(id), Some(text)) = (
                t.get("id").and_then(Value::as_u64),
                t.get("content").and_then(Value::as_str),
            ) else {
                continue;
            };
            let special = t.get("special").and_then(Value::as_bool).unwrap_or(false);
            by_id.insert(id, (text.to_string(), if special { 3 } else { 4 }));
        }
    }
    let n = by_id.keys().next_back().map_or(0, |k| k + 1);
    let (mut tokens, mut types) = (Vec::new(), Vec::new());
    for id in 0..n {
        let (t, ty) = by_id
            .remove(&id)
            .unwrap_or_else(|| (format!("[PAD{id}]"), 5));
        tokens.push(t);
        types.push(ty);
    }
    let merges = match tok.pointer("/model/merges") {
        Some(Value::Array(list)) => list
            .iter()
            .map(|m| match m {
                Value::String(s) => s.clone(),
                Value::Array(p) => p
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => String::new(),
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok((tokens, types, merges))
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

/// A tensor's place in the file: name, ggml dims (innermost first), type, offset in the data
/// section.
pub(crate) type TensorSlot = (String, Vec<usize>, GgufQuant, u64);

/// The header of a GGUF v3 file: metadata and tensor infos (name, ggml dims, type, offset
/// in the data section), padded to the alignment: the data section starts right after it.
pub(crate) fn encode_header(
    meta: &[(String, Meta)],
    infos: &[(String, Vec<usize>, GgufQuant, u64)],
) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&(infos.len() as u64).to_le_bytes());
    b.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    for (k, v) in meta {
        put_str(&mut b, k);
        match v {
            Meta::U32(x) => {
                b.extend_from_slice(&4u32.to_le_bytes());
                b.extend_from_slice(&x.to_le_bytes());
            }
            Meta::F32(x) => {
                b.extend_from_slice(&6u32.to_le_bytes());
                b.extend_from_slice(&x.to_le_bytes());
            }
            Meta::Str(s) => {
                b.extend_from_slice(&8u32.to_le_bytes());
                put_str(&mut b, s);
            }
            Meta::Strs(list) => {
                b.extend_from_slice(&9u32.to_le_bytes());
                b.extend_from_slice(&8u32.to_le_bytes());
                b.extend_from_slice(&(list.len() as u64).to_le_bytes());
                for s in list {
                    put_str(&mut b, s);
                }
            }
            Meta::I32s(list) => {
                b.extend_from_slice(&9u32.to_le_bytes());
                b.extend_from_slice(&5u32.to_le_bytes());
                b.extend_from_slice(&(list.len() as u64).to_le_bytes());
                for x in list {
                    b.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
    }
    for (name, dims, ty, offset) in infos {
        put_str(&mut b, name);
        b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            b.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        b.extend_from_slice(&ty.id().to_le_bytes());
        b.extend_from_slice(&offset.to_le_bytes());
    }
    while !b.len().is_multiple_of(ALIGNMENT) {
        b.push(0);
    }
    b
}

/// Each tensor's type (the model's, or its fallback) and aligned offset in the data section,
/// and the data section's length.
pub(crate) fn layout(tensors: &[(String, Vec<usize>)], quant: GgufQuant) -> (Vec<TensorSlot>, u64) {
    let mut at = 0u64;
    let mut infos = Vec::with_capacity(tensors.len());
    for (name, dims) in tensors {
        let ty = quant.for_tensor(dims);
        at = at.next_multiple_of(ALIGNMENT as u64);
        infos.push((name.clone(), dims.clone(), ty, at));
        let count: usize = dims.iter().product();
        at += (count / ty.block() * ty.block_bytes()) as u64;
    }
    (infos, at)
}

fn encode_file(
    meta: &[(String, Meta)],
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    quant: GgufQuant,
) -> Result<Vec<u8>> {
    let shapes: Vec<(String, Vec<usize>)> = tensors
        .iter()
        .map(|(n, d, _)| (n.clone(), d.clone()))
        .collect();
    let (infos, data_len) = layout(&shapes, quant);
    let mut b = encode_header(meta, &infos);
    let start = b.len();
    b.reserve(usize::try_from(data_len)?);
    for ((name, dims, values), (_, _, ty, offset)) in tensors.iter().zip(&infos) {
        let count: usize = dims.iter().product();
        if values.len() != count {
            bail!("{name}: {} values for dims {dims:?}", values.len());
        }
        let bytes = quantise(*ty, values).with_context(|| format!("quantising {name}"))?;
        if bytes.len() != count / ty.block() * ty.block_bytes() {
            bail!("{name}: {} bytes of {}", bytes.len(), ty.name());
        }
        b.resize(start + *offset as usize, 0);
        b.extend(bytes);
    }
    Ok(b)
}

/// llama.cpp's reference quantisers (`quantize_row_q8_0_ref`, `…_q4_0_ref`, `…_q5_0_ref`;
/// the K-quants in [`crate::gguf_kquant`]). `values` must be whole blocks of `ty`.
pub fn quantise(ty: GgufQuant, values: &[f32]) -> Result<Vec<u8>> {
    if !values.len().is_multiple_of(ty.block()) {
        bail!(
            "{} needs whole blocks of {} values, not {}",
            ty.name(),
            ty.block(),
            values.len()
        );
    }
    let f16 = |x: f32| half::f16::from_f32(x).to_bits().to_le_bytes();
    let mut out = Vec::with_capacity(values.len() / ty.block() * ty.block_bytes());
    match ty {
        GgufQuant::F32 => values.iter().for_each(|v| out.extend(v.to_le_bytes())),
        GgufQuant::F16 => values.iter().for_each(|v| out.extend(f16(*v))),
        GgufQuant::Q8_0 => {
            for block in values.chunks_exact(32) {
                let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend(f16(d));
                out.extend(block.iter().map(|v| (v * id).round() as i8 as u8));
            }
        }
        GgufQuant::Q4_0 | GgufQuant::Q5_0 => {
            // 16 levels either side of zero for Q5_0, 8 for Q4_0
            let half_levels = if ty == GgufQuant::Q5_0 { 16.0 } else { 8.0 };
            let top = 2 * half_levels as i32 - 1;
            for block in values.chunks_exact(32) {
                // the value of largest magnitude, with its sign
                let (mut amax, mut max) = (0f32, 0f32);
                for &v in block {
                    if v.abs() > amax {
                        amax = v.abs();
                        max = v;
                    }
                }
                let d = max / -half_levels;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend(f16(d));
                // the C converts to int8_t (truncating) before clamping
                let q = |v: f32| i32::from((v * id + (half_levels + 0.5)) as i8).min(top) as u8;
                let (lo, hi) = block.split_at(16);
                if ty == GgufQuant::Q5_0 {
                    // the fifth bits, value j at bit j, in a little-endian u32
                    let mut qh = 0u32;
                    for (j, (&a, &b)) in lo.iter().zip(hi).enumerate() {
                        qh |= u32::from(q(a) >> 4) << j;
                        qh |= u32::from(q(b) >> 4) << (j + 16);
                    }
                    out.extend(qh.to_le_bytes());
                }
                out.extend(
                    lo.iter()
                        .zip(hi)
                        .map(|(&a, &b)| (q(a) & 0xf) | ((q(b) & 0xf) << 4)),
                );
            }
        }
        GgufQuant::Q4_K => gguf_kquant::quantise_q4_k(values, &mut out)?,
        GgufQuant::Q6_K => gguf_kquant::quantise_q6_k(values, &mut out)?,
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_by_hand() {
        // amax 127 → d = 1, codes are the values
        let mut v: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        v[0] = 127.0;
        let b = quantise(GgufQuant::Q8_0, &v).unwrap();
        assert_eq!(b.len(), 34);
        assert_eq!(&b[..2], &half::f16::from_f32(1.0).to_bits().to_le_bytes());
        assert_eq!(b[2] as i8, 127);
        assert_eq!(b[3] as i8, -15);
    }

    #[test]
    fn q4_0_by_hand() {
        // max −8 → d = 1; q = v + 8 (v = −8 → 0, v = 7 → 15)
        let mut v = vec![0f32; 32];
        v[0] = -8.0;
        v[16] = 7.0;
        let b = quantise(GgufQuant::Q4_0, &v).unwrap();
        assert_eq!(b.len(), 18);
        assert_eq!(&b[..2], &half::f16::from_f32(1.0).to_bits().to_le_bytes());
        assert_eq!(b[2], 15 << 4, "low nibble 0, high nibble 15");
        assert_eq!(b[3], 8 | (8 << 4));
    }

    #[test]
    fn q5_0_by_hand() {
        // max −16 → d = 1; q = v + 16 (v = −16 → 0, v = 15 → 31: fifth bit set at 16)
        let mut v = vec![0f32; 32];
        v[0] = -16.0;
        v[16] = 15.0;
        v[1] = -3.0;
        let b = quantise(GgufQuant::Q5_0, &v).unwrap();
        assert_eq!(b.len(), 22);
        assert_eq!(&b[..2], &half::f16::from_f32(1.0).to_bits().to_le_bytes());
        // the zeros get code 16 (fifth bit set); value 0 → 0, value 1 → 13
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        assert_eq!(qh, !0b11, "values 0 and 1 have codes below 16");
        assert_eq!(b[6], 15 << 4, "value 0: low nibble 0; value 16: 31 → 15");
        assert_eq!(b[7], 13, "value 1: 13; value 17: 16 → nibble 0");
        assert!(quantise(GgufQuant::Q5_0, &v[..31]).is_err());
    }

    #[test]
    fn k_quant_rows_fall_back_as_llama_quantize_does() {
        use GgufQuant::*;
        assert_eq!(Q4_K.for_tensor(&[512, 3]), Q4_K);
        assert_eq!(Q4_K.for_tensor(&[448, 3]), Q5_0);
        assert_eq!(Q6_K.for_tensor(&[128, 3, 2]), Q8_0);
        assert_eq!(Q6_K.for_tensor(&[100, 3]), F16);
        assert_eq!(Q4_K.for_tensor(&[512]), F32);
        assert_eq!(Q4_0.for_tensor(&[100, 3]), F32);
        assert_eq!(F16.for_tensor(&[100, 3]), F16);
    }

    #[test]
    fn types_parse_by_name() {
        for q in ALL {
            assert_eq!(GgufQuant::parse(&q.name().to_lowercase()).unwrap(), q);
        }
        let e = GgufQuant::parse("Q5_K").unwrap_err().to_string();
        assert!(e.contains("Q4_K, Q6_K"), "{e}");
    }

    /// Tensor infos name each tensor's own type and their offsets step by its byte size.
    #[test]
    fn tensors_carry_their_own_type() {
        let tensors = vec![
            ("a".to_string(), vec![256, 2], vec![0.5; 512]),
            ("b".to_string(), vec![64, 2], vec![0.5; 128]),
            ("c".to_string(), vec![4], vec![0.5; 4]),
        ];
        let b = encode_file(&[], &tensors, GgufQuant::Q4_K).unwrap();
        // header 24 bytes, then per tensor: name (8 + 1), n_dims 4, dims, type 4, offset 8
        let mut at = 24;
        let mut infos = Vec::new();
        for (_, dims, _) in &tensors {
            at += 9 + 4 + 8 * dims.len();
            let ty = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
            let off = u64::from_le_bytes(b[at + 4..at + 12].try_into().unwrap());
            infos.push((ty, off));
            at += 12;
        }
        // Q4_K: 2 blocks of 144; Q5_0: 4 blocks of 22 (288 is already aligned); F32 at 384
        assert_eq!(infos, vec![(12, 0), (6, 288), (0, 384)]);
        let data = at.next_multiple_of(ALIGNMENT);
        assert_eq!(b.len(), data + 384 + 16);
    }

    #[test]
    fn permutation_interleaves_halves() {
        // one head, 4 rows of 1: [a0 a1 b0 b1] → [a0 b0 a1 b1]
        let v = permute_rows(&[0.0, 1.0, 2.0, 3.0], 4, 1, 1).unwrap();
        assert_eq!(v, vec![0.0, 2.0, 1.0, 3.0]);
    }
}
