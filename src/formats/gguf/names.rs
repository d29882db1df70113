//! llama.cpp's tensor names and layout, turned back into Hugging Face's.
//!
//! `convert_hf_to_gguf.py` renames every tensor (`model.layers.3.self_attn.q_proj.weight` →
//! `blk.3.attn_q.weight`), stacks a layer's experts into one tensor, and changes some values:
//!
//! - Llama-family rotary models (architectures in [`PERMUTED_QK`]) have the rows of Q and K
//!   reordered within each head, the two rotary halves interleaved (`permute` in the
//!   converter): stored row `h·d + 2i + half` is Hugging Face row `h·d + half·d/2 + i`;
//! - Gemma's norms (`*norm.weight`) are stored as `1 + w` (the model multiplies by `1 + w`);
//! - the vocabulary moves into the metadata (`tokenizer.ggml.*`).
//!
//! [`hf_tensors`] undoes the renaming and splits stacked experts into one tensor per expert
//! (each a contiguous byte range of the stack), and says per tensor what reading must undo
//! ([`Undo`]); [`hf_config`] writes the hyperparameters under `config.json`'s keys. Names with
//! no mapping are kept as llama.cpp spells them (the generic role fallback still sees them).

use anyhow::{Result, bail};
use serde_json::{Map, Value, json};

use super::quants::GgmlType;
use super::{GgufHeader, GgufTensor};

/// Architectures whose Q/K rows llama.cpp's converter permutes (classes derived from its
/// `LlamaModel` with `undo_permute`); Qwen, Gemma, Phi-3, GLM and BERT are stored unpermuted.
pub const PERMUTED_QK: [&str; 6] = ["llama", "granite", "granitemoe", "arcee", "smollm3", "deci"];

/// Architectures whose norms are stored as `1 + w`.
pub const SHIFTED_NORMS: [&str; 5] = ["gemma", "gemma2", "gemma3", "gemma3n", "gemma-embedding"];

/// Encoder architectures named after BERT's modules.
const BERT_LIKE: [&str; 5] = [
    "bert",
    "nomic-bert",
    "nomic-bert-moe",
    "jina-bert-v2",
    "neo-bert",
];

/// What reading a stored tensor must undo to give Hugging Face's values.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Undo {
    /// Q/K rows interleaved per rotary head: the number of heads the permutation used.
    pub rotary_heads: Option<u64>,
    /// Subtracted from every stored value (Gemma's `1 + w` norms: 1).
    pub shift: f32,
}

// `shift` is 0 or 1, never NaN: equality is an equivalence.
impl Eq for Undo {}

impl Undo {
    /// The stored row holding Hugging Face row `row` of a tensor with `rows` rows.
    pub fn stored_row(&self, rows: u64, row: u64) -> u64 {
        let Some(heads) = self.rotary_heads.filter(|&h| h > 0) else {
            return row;
        };
        let head_dim = rows / heads;
        if head_dim < 2 || !rows.is_multiple_of(heads) || !head_dim.is_multiple_of(2) {
            return row;
        }
        let (head, within) = (row / head_dim, row % head_dim);
        let half = head_dim / 2;
        let (side, i) = (within / half, within % half);
        head * head_dim + 2 * i + side
    }

    /// Whether reading changes anything.
    pub fn is_identity(&self) -> bool {
        self.rotary_heads.is_none() && self.shift == 0.0
    }
}

/// One tensor under its Hugging Face name, located in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct HfTensor {
    /// The Hugging Face name (`model.layers.0.self_attn.q_proj.weight`).
    pub name: String,
    /// The name in the file (`blk.0.attn_q.weight`; the stack's name for an expert).
    pub gguf_name: String,
    /// Hugging Face's shape (outermost first).
    pub shape: Vec<u64>,
    /// How the elements are stored.
    pub ty: GgmlType,
    /// Number of elements.
    pub numel: u64,
    /// Absolute file offsets of the stored bytes, `[begin, end)`.
    pub begin: u64,
    /// End of the stored bytes (exclusive).
    pub end: u64,
    /// What reading must undo.
    pub undo: Undo,
}

/// Every tensor of a GGUF header under its Hugging Face name (see the module doc).
pub fn hf_tensors(h: &GgufHeader) -> Result<Vec<HfTensor>> {
    let arch = h.architecture().unwrap_or("");
    let bert = BERT_LIKE.contains(&arch);
    // Gemma 2/3 have a norm after attention, so their `ffn_norm` is the MLP's own input norm.
    let sandwich = h
        .tensors
        .iter()
        .any(|t| t.name.contains(".post_attention_norm."));
    let mut out = Vec::with_capacity(h.tensors.len());
    for t in &h.tensors {
        let (stem, suffix) = match t.name.rsplit_once('.') {
            Some((s, x @ ("weight" | "bias"))) => (s, x),
            _ => (t.name.as_str(), ""),
        };
        let with_suffix = |n: String| {
            if suffix.is_empty() {
                n
            } else {
                format!("{n}.{suffix}")
            }
        };
        let mut undo = Undo::default();
        if SHIFTED_NORMS.contains(&arch) && t.name.ends_with("norm.weight") {
            undo.shift = 1.0;
        }
        let Some((layer, part)) = layer_part(stem) else {
            let name = global_name(stem, bert).map_or_else(|| t.name.clone(), with_suffix);
            out.push(whole(t, name, undo));
            continue;
        };
        if let Some(proj) = part.strip_suffix("_exps") {
            out.extend(experts(t, layer, proj, suffix)?);
            continue;
        }
        if PERMUTED_QK.contains(&arch) && suffix == "weight" {
            let heads = |key: &str| {
                h.arch_value(key).and_then(|v| match v.as_array() {
                    Some(per_layer) => per_layer.get(layer as usize).and_then(|x| x.as_u64()),
                    None => v.as_u64(),
                })
            };
            undo.rotary_heads = match part {
                "attn_q" => heads("attention.head_count"),
                "attn_k" => heads("attention.head_count_kv").or(heads("attention.head_count")),
                _ => None,
            };
        }
        // the bias already names its parameter: it is not `…gate.e_score_correction_bias.bias`
        let name = match layer_name(part, bert, sandwich) {
            Some(n) if part == "exp_probs_b" => format!("{}.{layer}.{n}", layer_prefix(bert)),
            Some(n) => with_suffix(format!("{}.{layer}.{n}", layer_prefix(bert))),
            None => t.name.clone(),
        };
        out.push(whole(t, name, undo));
    }
    Ok(out)
}

fn whole(t: &GgufTensor, name: String, undo: Undo) -> HfTensor {
    HfTensor {
        name,
        gguf_name: t.name.clone(),
        shape: t.shape(),
        ty: t.ty,
        numel: t.numel,
        begin: t.begin,
        end: t.end,
        undo,
    }
}

/// `blk.N.<part>` → (N, part).
fn layer_part(stem: &str) -> Option<(u32, &str)> {
    let rest = stem.strip_prefix("blk.")?;
    let (n, part) = rest.split_once('.')?;
    Some((n.parse().ok()?, part))
}

fn layer_prefix(bert: bool) -> &'static str {
    if bert {
        "encoder.layer"
    } else {
        "model.layers"
    }
}

fn global_name(stem: &str, bert: bool) -> Option<String> {
    let n = match (stem, bert) {
        ("token_embd", false) => "model.embed_tokens",
        ("token_embd", true) => "embeddings.word_embeddings",
        ("token_types", _) => "embeddings.token_type_embeddings",
        ("position_embd", _) => "embeddings.position_embeddings",
        ("token_embd_norm", _) => "embeddings.LayerNorm",
        ("output_norm", _) => "model.norm",
        ("output", _) => "lm_head",
        _ => return None,
    };
    Some(n.to_string())
}

fn layer_name(part: &str, bert: bool, sandwich: bool) -> Option<&'static str> {
    let n = match (part, bert) {
        ("attn_q", false) => "self_attn.q_proj",
        ("attn_k", false) => "self_attn.k_proj",
        ("attn_v", false) => "self_attn.v_proj",
        ("attn_qkv", false) => "self_attn.qkv_proj",
        ("attn_output", false) => "self_attn.o_proj",
        ("attn_q", true) => "attention.self.query",
        ("attn_k", true) => "attention.self.key",
        ("attn_v", true) => "attention.self.value",
        ("attn_qkv", true) => "attention.self.Wqkv",
        ("attn_output", true) => "attention.output.dense",
        ("attn_output_norm", _) => "attention.output.LayerNorm",
        ("layer_output_norm", _) => "output.LayerNorm",
        ("attn_q_norm", _) => "self_attn.q_norm",
        ("attn_k_norm", _) => "self_attn.k_norm",
        ("attn_norm", _) => "input_layernorm",
        ("post_attention_norm", _) => "post_attention_layernorm",
        ("ffn_norm", _) if sandwich => "pre_feedforward_layernorm",
        ("ffn_norm", _) => "post_attention_layernorm",
        ("post_ffw_norm", _) => "post_feedforward_layernorm",
        ("ffn_gate", _) => "mlp.gate_proj",
        ("ffn_up", false) => "mlp.up_proj",
        ("ffn_down", false) => "mlp.down_proj",
        ("ffn_up", true) => "intermediate.dense",
        ("ffn_down", true) => "output.dense",
        ("ffn_gate_inp", _) => "mlp.gate",
        ("exp_probs_b", _) => "mlp.gate.e_score_correction_bias",
        ("ffn_gate_inp_shexp", _) => "mlp.shared_expert_gate",
        ("ffn_gate_shexp", _) => "mlp.shared_experts.gate_proj",
        ("ffn_up_shexp", _) => "mlp.shared_experts.up_proj",
        ("ffn_down_shexp", _) => "mlp.shared_experts.down_proj",
        ("attn_q_a", _) => "self_attn.q_a_proj",
        ("attn_q_a_norm", _) => "self_attn.q_a_layernorm",
        ("attn_q_b", _) => "self_attn.q_b_proj",
        ("attn_kv_a_mqa", _) => "self_attn.kv_a_proj_with_mqa",
        ("attn_kv_a_norm", _) => "self_attn.kv_a_layernorm",
        ("attn_kv_b", _) => "self_attn.kv_b_proj",
        _ => return None,
    };
    Some(n)
}

/// A stack of experts `[n_expert, rows, cols]` as one tensor per expert, each the contiguous
/// bytes of its slice.
fn experts(t: &GgufTensor, layer: u32, proj: &str, suffix: &str) -> Result<Vec<HfTensor>> {
    let hf_proj = match proj {
        "ffn_gate" => "gate_proj",
        "ffn_up" => "up_proj",
        "ffn_down" => "down_proj",
        _ => {
            // an unknown stack keeps its name, whole
            return Ok(vec![whole(t, t.name.clone(), Undo::default())]);
        }
    };
    let shape = t.shape();
    let [n_expert, rest @ ..] = shape.as_slice() else {
        bail!("tensor {:?}: an expert stack without dimensions", t.name);
    };
    if *n_expert == 0 || rest.is_empty() {
        bail!("tensor {:?}: expert stack of shape {shape:?}", t.name);
    }
    let per_numel = t.numel / n_expert;
    let per_bytes = (t.end - t.begin) / n_expert;
    let name = |e: u64| {
        let base = format!("model.layers.{layer}.mlp.experts.{e}.{hf_proj}");
        if suffix.is_empty() {
            base
        } else {
            format!("{base}.{suffix}")
        }
    };
    Ok((0..*n_expert)
        .map(|e| HfTensor {
            name: name(e),
            gguf_name: t.name.clone(),
            shape: rest.to_vec(),
            ty: t.ty,
            numel: per_numel,
            begin: t.begin + e * per_bytes,
            end: t.begin + (e + 1) * per_bytes,
            undo: Undo::default(),
        })
        .collect())
}

/// llama.cpp architecture → Hugging Face `model_type`, where they differ.
fn model_type(arch: &str) -> &str {
    match arch {
        "qwen2moe" => "qwen2_moe",
        "qwen3moe" => "qwen3_moe",
        "gemma3" => "gemma3_text",
        "glm4moe" => "glm4_moe",
        "deepseek2" => "deepseek_v3",
        "nomic-bert" => "nomic_bert",
        "phi3" => "phi3",
        other => other,
    }
}

/// The hyperparameters under `config.json`'s names, so E0 compares them with a safetensors
/// model's config and the role classifier gets its hints. Keys the file lacks are left out.
pub fn hf_config(h: &GgufHeader) -> Value {
    let mut c = Map::new();
    if let Some(arch) = h.architecture() {
        c.insert("model_type".into(), json!(model_type(arch)));
        c.insert("gguf_architecture".into(), json!(arch));
    }
    let ints = [
        ("block_count", "num_hidden_layers"),
        ("embedding_length", "hidden_size"),
        ("feed_forward_length", "intermediate_size"),
        ("attention.head_count", "num_attention_heads"),
        ("attention.head_count_kv", "num_key_value_heads"),
        ("attention.key_length", "head_dim"),
        ("context_length", "max_position_embeddings"),
        ("vocab_size", "vocab_size"),
        ("expert_count", "num_experts"),
        ("expert_used_count", "num_experts_per_tok"),
        ("expert_feed_forward_length", "moe_intermediate_size"),
        ("nextn_predict_layers", "num_nextn_predict_layers"),
    ];
    for (key, hf) in ints {
        if let Some(v) = h.arch_u64(key) {
            c.insert(hf.into(), json!(v));
        }
    }
    let floats = [
        ("attention.layer_norm_rms_epsilon", "rms_norm_eps"),
        ("attention.layer_norm_epsilon", "layer_norm_eps"),
        ("rope.freq_base", "rope_theta"),
    ];
    for (key, hf) in floats {
        if let Some(v) = h.arch_value(key).and_then(|v| v.as_f64()) {
            c.insert(hf.into(), json!(v));
        }
    }
    if !c.contains_key("vocab_size")
        && let Some(n) = h
            .metadata
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.as_array())
    {
        c.insert("vocab_size".into(), json!(n.len()));
    }
    Value::Object(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotary_rows_by_hand() {
        // one head of 4 rows: HF rows [a0, a1, b0, b1] are stored interleaved [a0, b0, a1, b1]
        let u = Undo {
            rotary_heads: Some(1),
            shift: 0.0,
        };
        let stored: Vec<u64> = (0..4).map(|r| u.stored_row(4, r)).collect();
        assert_eq!(stored, vec![0, 2, 1, 3]);
        // two heads of 4: the second head's rows stay in rows 4..8
        let u = Undo {
            rotary_heads: Some(2),
            shift: 0.0,
        };
        let stored: Vec<u64> = (0..8).map(|r| u.stored_row(8, r)).collect();
        assert_eq!(stored, vec![0, 2, 1, 3, 4, 6, 5, 7]);
        assert_eq!(Undo::default().stored_row(8, 5), 5);
    }

    #[test]
    fn names_by_hand() {
        assert_eq!(layer_part("blk.12.attn_q"), Some((12, "attn_q")));
        assert_eq!(layer_part("token_embd"), None);
        assert_eq!(
            layer_name("ffn_norm", false, false),
            Some("post_attention_layernorm")
        );
        assert_eq!(
            layer_name("ffn_norm", false, true),
            Some("pre_feedforward_layernorm")
        );
        assert_eq!(
            layer_name("ffn_up", true, false),
            Some("intermediate.dense")
        );
        assert_eq!(
            global_name("token_embd", true).as_deref(),
            Some("embeddings.word_embeddings")
        );
    }
}
