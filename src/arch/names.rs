//! The naming rules of the families the tool knows: what follows a layer index, and the names
//! outside layers.

use super::{Family, Stack};

pub(super) fn is_bias(parts: &[&str]) -> bool {
    matches!(parts.last(), Some(&"bias") | Some(&"beta"))
}

/// The family of what follows `…layers.N.` (`rest`) in the given stack.
pub(super) fn layer_family(rest: &[&str], stack: Stack) -> Family {
    use Family::*;
    let bias = is_bias(rest);
    let pick = |w: Family, b: Family| if bias { b } else { w };
    let has = |s: &str| rest.contains(&s);
    let joined = rest.join(".");

    // MTP-only parts (GLM-4.5 / DeepSeek-V3 next-n layer).
    match rest.first().copied() {
        Some("enorm") => return MtpEmbedNorm,
        Some("hnorm") => return MtpHiddenNorm,
        Some("eh_proj") => return MtpProj,
        Some("shared_head") => return if has("norm") { MtpHeadNorm } else { MtpHead },
        _ => {}
    }
    // Buffers: GPT-2 / GPT-NeoX causal masks, rotary tables.
    if matches!(
        joined.as_str(),
        "attn.bias" | "attn.masked_bias" | "attention.bias" | "attention.masked_bias"
    ) || rest.iter().any(|p| *p == "inv_freq" || *p == "rotary_emb")
    {
        return Buffer;
    }
    // T5: `block.N.layer.S.<sublayer>`; the sublayer index says which norm a `layer_norm` is.
    if let [first, sub, tail @ ..] = rest
        && (*first == "layer")
        && let Ok(s) = sub.parse::<u32>()
    {
        return t5_sublayer(s, tail, stack, bias);
    }
    // Experts before anything else: their projections reuse the dense MLP names.
    if let Some(pos) = rest.iter().position(|p| *p == "experts") {
        let proj = rest.get(pos + 2).copied().unwrap_or("");
        return match proj {
            "gate_proj" | "w1" => ExpertGate,
            "up_proj" | "w3" => ExpertUp,
            "down_proj" | "w2" => ExpertDown,
            _ => Other,
        };
    }
    if has("shared_experts") || has("shared_expert") {
        return match rest.iter().find(|p| p.ends_with("_proj")).copied() {
            Some("gate_proj") => SharedExpertGate,
            Some("up_proj") => SharedExpertUp,
            Some("down_proj") => SharedExpertDown,
            _ => Other,
        };
    }
    if has("shared_expert_gate") {
        return SharedExpertRouter;
    }
    // Routers: `mlp.gate.weight` (DeepSeek/GLM/Solar/Qwen-MoE), `block_sparse_moe.gate`.
    if let Some(pos) = rest.iter().position(|p| *p == "gate")
        && pos > 0
        && matches!(rest[pos - 1], "mlp" | "block_sparse_moe" | "moe")
    {
        return if rest.last() == Some(&"e_score_correction_bias") {
            RouterBias
        } else {
            pick(Router, RouterBias)
        };
    }
    if let Some(f) = layer_norm(rest, &joined) {
        return f.pick(bias);
    }
    // Attention.
    let last = rest
        .iter()
        .rev()
        .find(|p| !matches!(**p, "weight" | "bias"))
        .copied()
        .unwrap_or("");
    match rest.first().copied() {
        Some("self_attn" | "attention" | "attn" | "self_attention") => {
            return self_attention(last, bias);
        }
        Some("encoder_attn" | "crossattention" | "cross_attn") => {
            return cross_attention(last, bias);
        }
        _ => {}
    }
    // Dense MLP (Llama gate/up/down, Phi-3 fused gate_up, GPT-2 c_fc/c_proj, BERT, Falcon/BLOOM/
    // GPT-NeoX dense_h_to_4h, DistilBERT ffn.lin*, Whisper fc1/fc2, ALBERT ffn/ffn_output,
    // Llama's original feed_forward.w1/w2/w3).
    match rest {
        ["mlp", "gate_proj", ..] | ["feed_forward", "w1", ..] => MlpGate,
        [
            "mlp" | "ffn",
            "up_proj" | "c_fc" | "fc1" | "gate_up_proj" | "dense_h_to_4h" | "lin1",
            ..,
        ]
        | ["fc1", ..]
        | ["ffn", "weight" | "bias"]
        | ["feed_forward", "w3", ..]
        | ["intermediate", "dense", ..] => pick(MlpUp, MlpUpBias),
        [
            "mlp" | "ffn",
            "down_proj" | "c_proj" | "fc2" | "dense_4h_to_h" | "lin2",
            ..,
        ]
        | ["fc2" | "ffn_output", ..]
        | ["feed_forward", "w2", ..]
        | ["output", "dense", ..] => pick(MlpDown, MlpDownBias),
        _ => Other,
    }
}

/// A norm family with its bias twin.
#[derive(Clone, Copy)]
pub(super) struct NormPair(Family, Family);

impl NormPair {
    pub(super) fn pick(self, bias: bool) -> Family {
        if bias { self.1 } else { self.0 }
    }
}

const INPUT: NormPair = NormPair(Family::InputNorm, Family::InputNormBias);
const POST_ATTN: NormPair = NormPair(Family::PostAttentionNorm, Family::PostAttentionNormBias);
const PRE_MLP: NormPair = NormPair(Family::PreMlpNorm, Family::PreMlpNormBias);
const POST_MLP: NormPair = NormPair(Family::PostMlpNorm, Family::PostMlpNormBias);
const CROSS: NormPair = NormPair(Family::CrossAttnNorm, Family::CrossAttnNormBias);

/// Per-layer norms by name.
fn layer_norm(rest: &[&str], joined: &str) -> Option<NormPair> {
    let f = match rest.first().copied()? {
        "input_layernorm" | "ln_1" | "ln_attn" | "self_attn_layer_norm" | "attention_norm" => INPUT,
        // Llama's post_attention_layernorm and friends feed the MLP; DistilBERT's sa_layer_norm
        // is its post-norm after attention.
        "post_attention_layernorm" | "ln_2" | "sa_layer_norm" | "ffn_norm" => POST_ATTN,
        // Whisper's per-layer final_layer_norm is the MLP input norm.
        "final_layer_norm" => POST_ATTN,
        "pre_feedforward_layernorm" | "ln_mlp" => PRE_MLP,
        "output_layer_norm" | "full_layer_layer_norm" | "post_feedforward_layernorm" => POST_MLP,
        "encoder_attn_layer_norm" => CROSS,
        _ if joined.starts_with("attention.output.LayerNorm")
            || joined.starts_with("attention.LayerNorm") =>
        {
            POST_ATTN
        }
        _ if joined.starts_with("output.LayerNorm") => POST_MLP,
        _ => return None,
    };
    Some(f)
}

fn self_attention(proj: &str, bias: bool) -> Family {
    use Family::*;
    let pick = |w: Family, b: Family| if bias { b } else { w };
    match proj {
        "q_proj" | "query" | "q" | "q_lin" | "wq" => pick(AttnQ, AttnQBias),
        "k_proj" | "key" | "k" | "k_lin" | "wk" => pick(AttnK, AttnKBias),
        "v_proj" | "value" | "v" | "v_lin" | "wv" => pick(AttnV, AttnVBias),
        "o_proj" | "o" | "c_proj" | "out_proj" | "dense" | "out_lin" | "wo" => {
            pick(AttnO, AttnOBias)
        }
        "c_attn" | "query_key_value" | "qkv_proj" | "Wqkv" => pick(AttnQkv, AttnQkvBias),
        "q_norm" => AttnQNorm,
        "k_norm" => AttnKNorm,
        "q_a_proj" => AttnQA,
        "q_a_layernorm" => AttnQANorm,
        "q_b_proj" => AttnQB,
        "kv_a_proj_with_mqa" => AttnKvA,
        "kv_a_layernorm" => AttnKvANorm,
        "kv_b_proj" => AttnKvB,
        "relative_attention_bias" => RelativeAttentionBias,
        _ => Other,
    }
}

fn cross_attention(proj: &str, bias: bool) -> Family {
    use Family::*;
    let pick = |w: Family, b: Family| if bias { b } else { w };
    match proj {
        "q_proj" | "query" | "q" => pick(CrossAttnQ, CrossAttnQBias),
        "k_proj" | "key" | "k" => pick(CrossAttnK, CrossAttnKBias),
        "v_proj" | "value" | "v" => pick(CrossAttnV, CrossAttnVBias),
        "o_proj" | "o" | "out_proj" | "dense" => pick(CrossAttnO, CrossAttnOBias),
        _ => Other,
    }
}

/// T5 sublayers: `layer.0` self-attention; in the encoder `layer.1` is the MLP, in the decoder
/// `layer.1` is cross-attention and `layer.2` the MLP. Each sublayer's `layer_norm` is the norm
/// its block reads (pre-norm, RMS).
fn t5_sublayer(sub: u32, tail: &[&str], stack: Stack, bias: bool) -> Family {
    use Family::*;
    let pick = |w: Family, b: Family| if bias { b } else { w };
    let last = tail
        .iter()
        .rev()
        .find(|p| !matches!(**p, "weight" | "bias"))
        .copied()
        .unwrap_or("");
    match tail.first().copied() {
        Some("SelfAttention") => self_attention(last, bias),
        Some("EncDecAttention") => cross_attention(last, bias),
        Some("DenseReluDense") => match last {
            "wi_0" => MlpGate,
            "wi" | "wi_1" => pick(MlpUp, MlpUpBias),
            "wo" => pick(MlpDown, MlpDownBias),
            _ => Other,
        },
        Some("layer_norm") => match (sub, stack) {
            (0, _) => INPUT.pick(bias),
            (1, Stack::Decoder) => CROSS.pick(bias),
            _ => POST_ATTN.pick(bias),
        },
        _ => Other,
    }
}

/// The family of a name outside any layer.
pub(super) fn global_family(parts: &[&str]) -> Family {
    use Family::*;
    let bias = is_bias(parts);
    let pick = |w: Family, b: Family| if bias { b } else { w };
    let last_named = parts
        .iter()
        .rev()
        .find(|p| !matches!(**p, "weight" | "bias" | "gamma" | "beta"))
        .copied()
        .unwrap_or("");
    let joined = parts.join(".");
    if joined.contains("relative_attention_bias") {
        return RelativeAttentionBias;
    }
    if joined.ends_with("position_ids")
        || joined.ends_with("token_type_ids")
        || joined.ends_with("inv_freq")
    {
        return Buffer;
    }
    if joined.contains("embeddings.LayerNorm")
        || joined.contains("embeddings.norm")
        || matches!(
            last_named,
            "word_embeddings_layernorm" | "layernorm_embedding"
        )
    {
        return pick(EmbeddingNorm, EmbeddingNormBias);
    }
    match last_named {
        "embed_tokens" | "word_embeddings" | "wte" | "embed_in" | "tok_embeddings" => Embedding,
        // T5's tied input embedding
        "shared" if parts.len() == 2 => Embedding,
        "embedding_hidden_mapping_in" => pick(EmbeddingProjection, EmbeddingProjectionBias),
        "position_embeddings" | "wpe" | "embed_positions" => PositionEmbedding,
        "token_type_embeddings" => TokenTypeEmbedding,
        "lm_head" | "embed_out" | "output" => LmHead,
        "norm" | "ln_f" | "final_layernorm" | "final_layer_norm" | "layer_norm" => {
            pick(FinalNorm, FinalNormBias)
        }
        _ if joined.starts_with("pooler.") || joined.contains(".pooler.") => {
            pick(Pooler, PoolerBias)
        }
        _ => Other,
    }
}
