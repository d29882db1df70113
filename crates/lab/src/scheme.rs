//! `rename_scheme`: rewrites a lab model into the tensor names, layouts and `config.json` of
//! another family, so the tool's role rules can be tested on the names real checkpoints use.
//! The names here are written from the families' published checkpoints, independently of the
//! tool's classifier (`crate::arch`), which must recognise them.
//!
//! Sources: a Llama-style decoder (`model.layers.N.self_attn.q_proj`, gated MLP, RMS norms) for
//! the decoder and encoder–decoder schemes, a BERT encoder for ALBERT and DistilBERT; any model
//! for `nonsense`. Tensors a family lacks are dropped (the gated MLP's gate for Falcon, BLOOM,
//! GPT-NeoX, Whisper); tensors it has and the source lacks are made from the model's own weights
//! (reversed copies: weight-derived, so derived pairs share them and independent ones do not).
//! Q/K/V keep their values: fused tensors hold exactly the source's rows in the family's layout
//! (grouped-query K/V heads repeated per query head where the family is multi-head), so derived
//! pairs stay derived and independent ones independent. The result is not a function-preserving
//! conversion (dropped gates, Gemma's norms re-stored as `g − 1`), only real names and shapes.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::dims::Dims;
use super::model::{Model, Tensor};

/// Target naming of [`rename_scheme`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// ALBERT (`albert.encoder.albert_layer_groups.N.albert_layers.0.*`, factorised embedding).
    Albert,
    /// DistilBERT (`distilbert.transformer.layer.N.attention.q_lin`, `ffn.lin1`).
    Distilbert,
    /// T5 v1.1 (`encoder.block.N.layer.0.SelfAttention.q`, decoder `EncDecAttention`, `shared`).
    T5,
    /// Whisper (`model.encoder.layers.N.self_attn.q_proj`, decoder `encoder_attn`, `fc1`).
    Whisper,
    /// Falcon-40B layout (`transformer.h.N.self_attention.query_key_value`, grouped per KV head).
    Falcon,
    /// BLOOM (`h.N.self_attention.query_key_value`, per-head interleaved q/k/v).
    Bloom,
    /// GPT-NeoX (`gpt_neox.layers.N.attention.query_key_value`, per-head interleaved q/k/v).
    GptNeox,
    /// Gemma 3 text (sandwich norms, `q_norm`/`k_norm`, norms stored as `w` for a gain `1 + w`).
    Gemma3,
    /// Names no family rule knows but the fallback can read (`net.stages.N.attn.query`).
    Generic,
    /// Every tensor renamed to a meaningless token: nothing can be placed.
    Nonsense,
}

/// One source layer of a Llama-style decoder.
struct Layer {
    input_norm: Tensor,
    post_norm: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

/// Rewrites `m` into `scheme`'s naming (see the module doc).
pub fn rename_scheme(m: &mut Model, scheme: Scheme) -> Result<()> {
    if scheme == Scheme::Nonsense {
        return m.rename_all(|n| {
            let h = blake3::hash(n.as_bytes()).to_hex();
            format!("x{}", &h[..16])
        });
    }
    let encoder = m.tensors.keys().any(|k| k.contains("encoder.layer."));
    let wants_encoder = matches!(scheme, Scheme::Albert | Scheme::Distilbert);
    if encoder != wants_encoder {
        bail!(
            "rename_scheme({scheme:?}) needs a {} source model",
            if wants_encoder {
                "BERT"
            } else {
                "Llama-style decoder"
            }
        );
    }
    let d = Dims::of(m)?;
    let old = std::mem::take(&mut m.tensors);
    let mut src = Source(old);
    let mut out = BTreeMap::new();
    let config = if wants_encoder {
        encoder_scheme(scheme, &mut src, &mut out, &d)?
    } else {
        decoder_scheme(scheme, &mut src, &mut out, &d)?
    };
    let mut config = config;
    for k in ["bos_token_id", "eos_token_id", "pad_token_id", "vocab_size"] {
        if let (Some(v), Value::Object(c)) = (m.config.get(k), &mut config) {
            c.insert(k.into(), v.clone());
        }
    }
    m.tensors = out;
    m.config = config;
    m.layout.order.clear();
    m.layout.assign.clear();
    Ok(())
}

struct Source(BTreeMap<String, Tensor>);

impl Source {
    fn take(&mut self, name: &str) -> Result<Tensor> {
        self.0
            .remove(name)
            .with_context(|| format!("rename_scheme: the source has no tensor {name}"))
    }

    fn layer(&mut self, l: usize) -> Result<Layer> {
        let p = format!("model.layers.{l}.");
        let mut t = |n: &str| self.take(&format!("{p}{n}.weight"));
        Ok(Layer {
            input_norm: t("input_layernorm")?,
            post_norm: t("post_attention_layernorm")?,
            q: t("self_attn.q_proj")?,
            k: t("self_attn.k_proj")?,
            v: t("self_attn.v_proj")?,
            o: t("self_attn.o_proj")?,
            gate: t("mlp.gate_proj")?,
            up: t("mlp.up_proj")?,
            down: t("mlp.down_proj")?,
        })
    }
}

fn values(t: &Tensor) -> &[f32] {
    match &t.data {
        super::model::Data::F32(v) => v,
        super::model::Data::Raw(_) => &[],
    }
}

/// The tensor with its rows (or, for a vector, its values) in reverse order.
fn reversed(t: &Tensor) -> Tensor {
    let (rows, cols) = t.dims2();
    let v = values(t);
    let out = (0..rows)
        .rev()
        .flat_map(|r| {
            let row = &v[r * cols..(r + 1) * cols];
            let row: Vec<f32> = if rows == 1 {
                row.iter().rev().copied().collect()
            } else {
                row.to_vec()
            };
            row
        })
        .collect();
    Tensor::new(t.dtype, t.shape.clone(), out)
}

/// A norm re-stored Gemma's way: `w = g − 1`.
fn minus_one(t: &Tensor) -> Tensor {
    Tensor::new(
        t.dtype,
        t.shape.clone(),
        values(t).iter().map(|g| g - 1.0).collect(),
    )
}

/// Rows `[start, start + n)` of head-major blocks of `hd` rows, for head `h`.
fn head(t: &Tensor, h: usize, hd: usize) -> &[f32] {
    let cols = t.dims2().1;
    &values(t)[h * hd * cols..(h + 1) * hd * cols]
}

/// K or V with its grouped-query heads repeated so each query head has its own.
fn per_query_head(t: &Tensor, d: &Dims) -> Tensor {
    let cols = t.dims2().1;
    let group = d.heads / d.kv_heads.max(1);
    let v: Vec<f32> = (0..d.heads)
        .flat_map(|h| head(t, h / group.max(1), d.head_dim).to_vec())
        .collect();
    Tensor::new(t.dtype, vec![d.heads * d.head_dim, cols], v)
}

/// Fused q/k/v rows grouped per key/value head: `[group's q heads; k; v]` per group.
fn fused_grouped(q: &Tensor, k: &Tensor, v: &Tensor, groups: usize, d: &Dims) -> Tensor {
    let cols = q.dims2().1;
    let per = d.heads / groups.max(1);
    let mut out = Vec::with_capacity((d.heads + 2 * groups) * d.head_dim * cols);
    for g in 0..groups {
        for h in g * per..(g + 1) * per {
            out.extend_from_slice(head(q, h, d.head_dim));
        }
        out.extend_from_slice(head(k, g, d.head_dim));
        out.extend_from_slice(head(v, g, d.head_dim));
    }
    Tensor::new(
        q.dtype,
        vec![(d.heads + 2 * groups) * d.head_dim, cols],
        out,
    )
}

/// The tensors of a Llama-style decoder, taken out of the source model.
struct DecoderParts {
    embed: Tensor,
    final_norm: Tensor,
    lm_head: Option<Tensor>,
    layers: Vec<Layer>,
    /// Width of the dense MLP (0 without layers).
    intermediate: usize,
}

fn decoder_scheme(
    scheme: Scheme,
    src: &mut Source,
    out: &mut BTreeMap<String, Tensor>,
    d: &Dims,
) -> Result<Value> {
    if d.heads == 0 || d.kv_heads == 0 || d.head_dim == 0 || !d.heads.is_multiple_of(d.kv_heads) {
        bail!("rename_scheme({scheme:?}): config.json needs head counts");
    }
    let embed = src.take("model.embed_tokens.weight")?;
    let final_norm = src.take("model.norm.weight")?;
    let lm_head = src.take("lm_head.weight").ok();
    let layers = (0..d.layers)
        .map(|l| src.layer(l))
        .collect::<Result<Vec<_>>>()?;
    let intermediate = layers.first().map_or(0, |l| l.up.dims2().0);
    let parts = DecoderParts {
        embed,
        final_norm,
        lm_head,
        layers,
        intermediate,
    };
    match scheme {
        Scheme::Falcon | Scheme::Bloom | Scheme::GptNeox => fused_qkv_scheme(scheme, parts, out, d),
        Scheme::Gemma3 => gemma3_scheme(parts, out, d),
        Scheme::Generic => generic_scheme(parts, out, d),
        Scheme::T5 | Scheme::Whisper => seq2seq_scheme(scheme, parts, out, d),
        _ => bail!("rename_scheme({scheme:?}) needs a BERT source model"),
    }
}

/// Falcon, BLOOM and GPT-NeoX: one fused `query_key_value` per layer (grouped per KV head, or per query head).
fn fused_qkv_scheme(
    scheme: Scheme,
    parts: DecoderParts,
    out: &mut BTreeMap<String, Tensor>,
    d: &Dims,
) -> Result<Value> {
    let DecoderParts {
        embed,
        final_norm,
        lm_head,
        layers,
        intermediate,
    } = parts;
    let mut put = |n: String, t: Tensor| {
        out.insert(n, t);
    };
    let h = d.hidden;
    let (prefix, layer, attn, vocab_name) = match scheme {
        Scheme::Falcon => ("transformer.", "h", "self_attention", "word_embeddings"),
        Scheme::Bloom => ("", "h", "self_attention", "word_embeddings"),
        _ => ("gpt_neox.", "layers", "attention", "embed_in"),
    };
    put(format!("{prefix}{vocab_name}.weight"), embed);
    for (l, x) in layers.into_iter().enumerate() {
        let p = format!("{prefix}{layer}.{l}.");
        let qkv = if scheme == Scheme::Falcon {
            fused_grouped(&x.q, &x.k, &x.v, d.kv_heads, d)
        } else {
            let (k, v) = (per_query_head(&x.k, d), per_query_head(&x.v, d));
            fused_grouped(&x.q, &k, &v, d.heads, d)
        };
        put(format!("{p}{attn}.query_key_value.weight"), qkv);
        put(format!("{p}{attn}.dense.weight"), x.o);
        let (n1, n2) = if scheme == Scheme::Falcon {
            ("ln_attn", "ln_mlp")
        } else {
            ("input_layernorm", "post_attention_layernorm")
        };
        put(format!("{p}{n1}.weight"), x.input_norm);
        put(format!("{p}{n2}.weight"), x.post_norm);
        put(format!("{p}mlp.dense_h_to_4h.weight"), x.up);
        put(format!("{p}mlp.dense_4h_to_h.weight"), x.down);
    }
    match scheme {
        Scheme::Falcon => {
            put("transformer.ln_f.weight".into(), final_norm);
            if let Some(t) = lm_head {
                put("lm_head.weight".into(), t);
            }
            Ok(
                json!({"architectures": ["FalconForCausalLM"], "model_type": "falcon",
                "hidden_size": h, "num_hidden_layers": d.layers,
                "num_attention_heads": d.heads, "num_kv_heads": d.kv_heads,
                "new_decoder_architecture": true, "multi_query": true,
                "parallel_attn": true, "bias": false}),
            )
        }
        Scheme::Bloom => {
            put(
                "word_embeddings_layernorm.weight".into(),
                reversed(&final_norm),
            );
            put("ln_f.weight".into(), final_norm);
            Ok(
                json!({"architectures": ["BloomForCausalLM"], "model_type": "bloom",
                "hidden_size": h, "n_layer": d.layers, "n_head": d.heads}),
            )
        }
        _ => {
            put("gpt_neox.final_layer_norm.weight".into(), final_norm);
            if let Some(t) = lm_head {
                put("embed_out.weight".into(), t);
            }
            Ok(
                json!({"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox",
                "hidden_size": h, "num_hidden_layers": d.layers,
                "num_attention_heads": d.heads, "intermediate_size": intermediate,
                "use_parallel_residual": true, "rotary_pct": 0.25}),
            )
        }
    }
}

/// Gemma 3: sandwich norms stored as `w` for a gain `1 + w`, `q_norm`/`k_norm` taken from the layer norms.
fn gemma3_scheme(
    parts: DecoderParts,
    out: &mut BTreeMap<String, Tensor>,
    d: &Dims,
) -> Result<Value> {
    let DecoderParts {
        embed,
        final_norm,
        layers,
        intermediate,
        ..
    } = parts;
    let mut put = |n: String, t: Tensor| {
        out.insert(n, t);
    };
    let h = d.hidden;
    put("model.embed_tokens.weight".into(), embed);
    for (l, x) in layers.into_iter().enumerate() {
        let p = format!("model.layers.{l}.");
        let hd = d.head_dim;
        let q_norm = Tensor::new(x.q.dtype, vec![hd], values(&x.input_norm)[..hd].to_vec());
        let k_norm = Tensor::new(x.q.dtype, vec![hd], values(&x.post_norm)[..hd].to_vec());
        put(format!("{p}self_attn.q_norm.weight"), minus_one(&q_norm));
        put(format!("{p}self_attn.k_norm.weight"), minus_one(&k_norm));
        put(
            format!("{p}post_attention_layernorm.weight"),
            minus_one(&reversed(&x.input_norm)),
        );
        put(
            format!("{p}post_feedforward_layernorm.weight"),
            minus_one(&reversed(&x.post_norm)),
        );
        put(
            format!("{p}input_layernorm.weight"),
            minus_one(&x.input_norm),
        );
        put(
            format!("{p}pre_feedforward_layernorm.weight"),
            minus_one(&x.post_norm),
        );
        for (n, t) in [
            ("self_attn.q_proj", x.q),
            ("self_attn.k_proj", x.k),
            ("self_attn.v_proj", x.v),
            ("self_attn.o_proj", x.o),
            ("mlp.gate_proj", x.gate),
            ("mlp.up_proj", x.up),
            ("mlp.down_proj", x.down),
        ] {
            put(format!("{p}{n}.weight"), t);
        }
    }
    put("model.norm.weight".into(), minus_one(&final_norm));
    Ok(
        json!({"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
        "hidden_size": h, "num_hidden_layers": d.layers, "num_attention_heads": d.heads,
        "num_key_value_heads": d.kv_heads, "head_dim": d.head_dim,
        "intermediate_size": intermediate, "rms_norm_eps": 1e-6}),
    )
}

/// Names no family rule knows (`net.stages.N.attn.query`).
fn generic_scheme(
    parts: DecoderParts,
    out: &mut BTreeMap<String, Tensor>,
    d: &Dims,
) -> Result<Value> {
    let DecoderParts {
        embed,
        final_norm,
        layers,
        ..
    } = parts;
    let mut put = |n: String, t: Tensor| {
        out.insert(n, t);
    };
    let h = d.hidden;
    put("net.tok_embed.weight".into(), embed);
    for (l, x) in layers.into_iter().enumerate() {
        let p = format!("net.stages.{l}.");
        for (n, t) in [
            ("norm1", x.input_norm),
            ("norm2", x.post_norm),
            ("attn.query", x.q),
            ("attn.key", x.k),
            ("attn.value", x.v),
            ("attn.proj", x.o),
            ("mlp.gate", x.gate),
            ("mlp.fc1", x.up),
            ("mlp.fc2", x.down),
        ] {
            put(format!("{p}{n}.weight"), t);
        }
    }
    put("net.head_norm.weight".into(), final_norm);
    Ok(json!({"hidden_size": h, "num_attention_heads": d.heads}))
}

/// T5 and Whisper: the first half of the layers as the encoder, the rest as the decoder with a weight-derived cross-attention.
fn seq2seq_scheme(
    scheme: Scheme,
    parts: DecoderParts,
    out: &mut BTreeMap<String, Tensor>,
    d: &Dims,
) -> Result<Value> {
    let DecoderParts {
        embed,
        final_norm,
        lm_head,
        layers,
        intermediate,
    } = parts;
    let mut put = |n: String, t: Tensor| {
        out.insert(n, t);
    };
    let h = d.hidden;
    let t5 = scheme == Scheme::T5;
    let n_enc = d.layers.div_ceil(2);
    let n_dec = d.layers - n_enc;
    for (l, x) in layers.into_iter().enumerate() {
        let (dec, n) = (l >= n_enc, if l >= n_enc { l - n_enc } else { l });
        let (k, v) = (per_query_head(&x.k, d), per_query_head(&x.v, d));
        // cross-attention: the layer's own projections, rows reversed (weight-derived)
        let cross = dec.then(|| [reversed(&x.q), reversed(&k), reversed(&v), reversed(&x.o)]);
        let cross_norm = dec.then(|| reversed(&x.input_norm));
        if t5 {
            let p = format!(
                "{}.block.{n}.layer.",
                if dec { "decoder" } else { "encoder" }
            );
            let mlp = if dec { 2 } else { 1 };
            for (s, t) in [("q", x.q), ("k", k), ("v", v), ("o", x.o)] {
                put(format!("{p}0.SelfAttention.{s}.weight"), t);
            }
            put(format!("{p}0.layer_norm.weight"), x.input_norm);
            if let (Some(c), Some(cn)) = (cross, cross_norm) {
                for (s, t) in ["q", "k", "v", "o"].into_iter().zip(c) {
                    put(format!("{p}1.EncDecAttention.{s}.weight"), t);
                }
                put(format!("{p}1.layer_norm.weight"), cn);
            }
            put(format!("{p}{mlp}.DenseReluDense.wi_0.weight"), x.gate);
            put(format!("{p}{mlp}.DenseReluDense.wi_1.weight"), x.up);
            put(format!("{p}{mlp}.DenseReluDense.wo.weight"), x.down);
            put(format!("{p}{mlp}.layer_norm.weight"), x.post_norm);
        } else {
            let p = format!(
                "model.{}.layers.{n}.",
                if dec { "decoder" } else { "encoder" }
            );
            for (s, t) in [
                ("q_proj", x.q),
                ("k_proj", k),
                ("v_proj", v),
                ("out_proj", x.o),
            ] {
                put(format!("{p}self_attn.{s}.weight"), t);
            }
            put(format!("{p}self_attn_layer_norm.weight"), x.input_norm);
            if let (Some(c), Some(cn)) = (cross, cross_norm) {
                for (s, t) in ["q_proj", "k_proj", "v_proj", "out_proj"]
                    .into_iter()
                    .zip(c)
                {
                    put(format!("{p}encoder_attn.{s}.weight"), t);
                }
                put(format!("{p}encoder_attn_layer_norm.weight"), cn);
            }
            put(format!("{p}fc1.weight"), x.up);
            put(format!("{p}fc2.weight"), x.down);
            put(format!("{p}final_layer_norm.weight"), x.post_norm);
        }
    }
    let dec_norm = reversed(&final_norm);
    if t5 {
        put("shared.weight".into(), embed);
        put("encoder.final_layer_norm.weight".into(), final_norm);
        put("decoder.final_layer_norm.weight".into(), dec_norm);
        if let Some(t) = lm_head {
            put("lm_head.weight".into(), t);
        }
        Ok(
            json!({"architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
            "d_model": h, "d_kv": d.head_dim, "d_ff": intermediate, "num_layers": n_enc,
            "num_decoder_layers": n_dec, "num_heads": d.heads, "is_encoder_decoder": true,
            "feed_forward_proj": "gated-gelu"}),
        )
    } else {
        put("model.decoder.embed_tokens.weight".into(), embed);
        put("model.encoder.layer_norm.weight".into(), final_norm);
        put("model.decoder.layer_norm.weight".into(), dec_norm);
        Ok(json!({"architectures": ["WhisperForConditionalGeneration"],
            "model_type": "whisper", "d_model": h, "encoder_layers": n_enc,
            "decoder_layers": n_dec, "encoder_attention_heads": d.heads,
            "decoder_attention_heads": d.heads, "encoder_ffn_dim": intermediate,
            "decoder_ffn_dim": intermediate, "is_encoder_decoder": true}))
    }
}

fn encoder_scheme(
    scheme: Scheme,
    src: &mut Source,
    out: &mut BTreeMap<String, Tensor>,
    d: &Dims,
) -> Result<Value> {
    let h = d.hidden;
    let heads = (h / 64).max(1);
    let mut names: Vec<String> = src.0.keys().cloned().collect();
    names.sort();
    let intermediate = src
        .0
        .get("encoder.layer.0.intermediate.dense.weight")
        .map_or(0, |t| t.dims2().0);
    let distil = scheme == Scheme::Distilbert;
    let e = h / 2;
    for name in names {
        let t = src.take(&name)?;
        let parts: Vec<&str> = name.splitn(4, '.').collect();
        let new = match parts.as_slice() {
            ["encoder", "layer", l, rest] => {
                let (ending, rest) = match rest.rsplit_once('.') {
                    Some((r, e)) => (e, r),
                    None => continue,
                };
                let mapped = if distil {
                    match rest {
                        "attention.self.query" => "attention.q_lin",
                        "attention.self.key" => "attention.k_lin",
                        "attention.self.value" => "attention.v_lin",
                        "attention.output.dense" => "attention.out_lin",
                        "attention.output.LayerNorm" => "sa_layer_norm",
                        "intermediate.dense" => "ffn.lin1",
                        "output.dense" => "ffn.lin2",
                        "output.LayerNorm" => "output_layer_norm",
                        _ => continue,
                    }
                } else {
                    match rest {
                        "attention.self.query" => "attention.query",
                        "attention.self.key" => "attention.key",
                        "attention.self.value" => "attention.value",
                        "attention.output.dense" => "attention.dense",
                        "attention.output.LayerNorm" => "attention.LayerNorm",
                        "intermediate.dense" => "ffn",
                        "output.dense" => "ffn_output",
                        "output.LayerNorm" => "full_layer_layer_norm",
                        _ => continue,
                    }
                };
                if distil {
                    format!("distilbert.transformer.layer.{l}.{mapped}.{ending}")
                } else {
                    format!(
                        "albert.encoder.albert_layer_groups.{l}.albert_layers.0.{mapped}.{ending}"
                    )
                }
            }
            ["embeddings", ..] if distil && name.contains("token_type") => continue,
            ["embeddings", ..] if distil => format!("distilbert.{name}"),
            ["embeddings", ..] => {
                if name == "embeddings.word_embeddings.weight" {
                    // the factorised embedding: E = hidden/2 columns, and a map back to hidden
                    // made of other columns of the same rows (weight-derived)
                    let (rows, cols) = t.dims2();
                    if rows < h {
                        bail!("rename_scheme(albert): fewer embedding rows than the hidden width");
                    }
                    let v = values(&t);
                    let map: Vec<f32> = (0..h)
                        .flat_map(|r| v[r * cols + e..r * cols + 2 * e].to_vec())
                        .collect();
                    out.insert(
                        "albert.encoder.embedding_hidden_mapping_in.weight".into(),
                        Tensor::new(t.dtype, vec![h, e], map),
                    );
                }
                let sliced = first_cols(&t, e);
                out.insert(format!("albert.{name}"), sliced);
                continue;
            }
            ["pooler", ..] if distil => continue,
            ["pooler", "dense", ending] => format!("albert.pooler.{ending}"),
            _ => continue,
        };
        out.insert(new, t);
    }
    Ok(if distil {
        json!({"architectures": ["DistilBertModel"], "model_type": "distilbert", "dim": h,
            "n_layers": d.layers, "n_heads": heads, "hidden_dim": intermediate})
    } else {
        json!({"architectures": ["AlbertModel"], "model_type": "albert", "hidden_size": h,
            "embedding_size": e, "num_hidden_layers": d.layers, "num_hidden_groups": d.layers,
            "inner_group_num": 1, "num_attention_heads": heads, "intermediate_size": intermediate})
    })
}

/// The first `n` columns of a matrix (the first `n` values of a vector).
fn first_cols(t: &Tensor, n: usize) -> Tensor {
    let (rows, cols) = t.dims2();
    let n = n.min(cols);
    let v = values(t);
    let out = (0..rows)
        .flat_map(|r| v[r * cols..r * cols + n].to_vec())
        .collect();
    let shape = if t.shape.len() == 1 {
        vec![n]
    } else {
        vec![rows, n]
    };
    Tensor::new(t.dtype, shape, out)
}
