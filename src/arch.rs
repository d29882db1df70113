//! Tensor roles: which layer, which family and which expert a tensor belongs to, across the
//! namings of Llama/Qwen, GLM-4.5 (glm4_moe), Solar-Open, DeepSeek-V2/V3, Mixtral,
//! Phi-3.5-MoE, BERT, MPNet and GPT-2.
//!
//! Experiments compare tensors by role, never by name, so a model renamed into another
//! architecture's naming still lines up.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a tensor is for. `*Bias` families are the bias of the weight family of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Embedding,
    PositionEmbedding,
    TokenTypeEmbedding,
    EmbeddingNorm,
    EmbeddingNormBias,
    LmHead,
    FinalNorm,
    FinalNormBias,
    InputNorm,
    InputNormBias,
    PostAttentionNorm,
    PostAttentionNormBias,
    PostMlpNorm,
    PostMlpNormBias,
    AttnQ,
    AttnK,
    AttnV,
    AttnO,
    AttnQBias,
    AttnKBias,
    AttnVBias,
    AttnOBias,
    AttnQkv,
    AttnQkvBias,
    AttnQNorm,
    AttnKNorm,
    /// Multi-head latent attention (DeepSeek): the low-rank query/key-value projections.
    AttnQA,
    AttnQANorm,
    AttnQB,
    AttnKvA,
    AttnKvANorm,
    AttnKvB,
    RelativeAttentionBias,
    Router,
    RouterBias,
    ExpertGate,
    ExpertUp,
    ExpertDown,
    SharedExpertGate,
    SharedExpertUp,
    SharedExpertDown,
    SharedExpertRouter,
    MlpGate,
    MlpUp,
    MlpDown,
    MlpUpBias,
    MlpDownBias,
    /// Next-n (multi-token prediction) layer parts that ordinary layers do not have.
    MtpEmbedNorm,
    MtpHiddenNorm,
    MtpProj,
    MtpHeadNorm,
    MtpHead,
    Pooler,
    PoolerBias,
    /// Non-learned buffers stored with the weights (position ids, causal masks).
    Buffer,
    Other,
}

impl Family {
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Norm gains and biases: the 1-D vectors the published dispute compared.
    pub fn is_norm(self) -> bool {
        matches!(
            self,
            Family::InputNorm
                | Family::InputNormBias
                | Family::PostAttentionNorm
                | Family::PostAttentionNormBias
                | Family::PostMlpNorm
                | Family::PostMlpNormBias
                | Family::FinalNorm
                | Family::FinalNormBias
                | Family::EmbeddingNorm
                | Family::EmbeddingNormBias
                | Family::AttnQNorm
                | Family::AttnKNorm
                | Family::AttnQANorm
                | Family::AttnKvANorm
                | Family::MtpEmbedNorm
                | Family::MtpHiddenNorm
                | Family::MtpHeadNorm
        )
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// The role of one tensor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Role {
    pub layer: Option<u32>,
    pub family: Family,
    pub expert: Option<u32>,
    /// True for tensors of a next-n / MTP layer (GLM-4.5, DeepSeek-V3 put it at index
    /// `num_hidden_layers`); experiments keep it out of layer-by-layer comparisons.
    pub mtp: bool,
}

/// What a config.json tells the classifier.
#[derive(Clone, Debug, Default)]
pub struct ArchHints {
    pub model_type: Option<String>,
    pub num_hidden_layers: Option<u32>,
    pub num_nextn_predict_layers: Option<u32>,
}

impl ArchHints {
    pub fn from_config(config: &serde_json::Value) -> ArchHints {
        let int = |k: &str| {
            config
                .get(k)
                .and_then(serde_json::Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        ArchHints {
            model_type: config
                .get("model_type")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            num_hidden_layers: int("num_hidden_layers").or_else(|| int("n_layer")),
            num_nextn_predict_layers: int("num_nextn_predict_layers"),
        }
    }
}

/// Classifies a tensor name. Unknown names get `Family::Other`, never an error: the inventory
/// must list everything a file holds.
pub fn classify(name: &str, hints: &ArchHints) -> Role {
    let parts: Vec<&str> = name.split('.').collect();
    let (layer, rest) = split_layer(&parts);
    let expert = expert_index(rest);
    let mtp = match (layer, hints.num_hidden_layers) {
        (Some(l), Some(n)) => l >= n && hints.num_nextn_predict_layers.unwrap_or(1) > 0,
        _ => false,
    };
    let family = match layer {
        Some(_) => layer_family(rest),
        None => global_family(&parts),
    };
    Role {
        layer,
        family,
        expert,
        mtp,
    }
}

/// Finds `layers.N` / `layer.N` / `h.N` / `blocks.N` and returns N with what follows it.
fn split_layer<'a, 'b>(parts: &'b [&'a str]) -> (Option<u32>, &'b [&'a str]) {
    for i in 0..parts.len().saturating_sub(1) {
        if matches!(parts[i], "layers" | "layer" | "h" | "blocks")
            && let Ok(n) = parts[i + 1].parse::<u32>()
        {
            return (Some(n), &parts[i + 2..]);
        }
    }
    (None, parts)
}

fn expert_index(rest: &[&str]) -> Option<u32> {
    rest.windows(2)
        .find(|w| w[0] == "experts")
        .and_then(|w| w[1].parse().ok())
}

fn is_bias(rest: &[&str]) -> bool {
    matches!(rest.last(), Some(&"bias") | Some(&"beta"))
}

fn layer_family(rest: &[&str]) -> Family {
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
    // Buffers of GPT-2 style attention.
    if joined == "attn.bias" || joined == "attn.masked_bias" {
        return Buffer;
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
    // Norms.
    match rest.first().copied() {
        Some("input_layernorm") | Some("ln_1") => return pick(InputNorm, InputNormBias),
        Some("post_attention_layernorm") | Some("ln_2") => {
            return pick(PostAttentionNorm, PostAttentionNormBias);
        }
        _ => {}
    }
    if joined.starts_with("attention.output.LayerNorm") || joined.starts_with("attention.LayerNorm")
    {
        return pick(PostAttentionNorm, PostAttentionNormBias);
    }
    if joined.starts_with("output.LayerNorm") {
        return pick(PostMlpNorm, PostMlpNormBias);
    }
    // Attention.
    let attn = matches!(
        rest.first().copied(),
        Some("self_attn") | Some("attention") | Some("attn")
    );
    if attn {
        let proj = rest
            .iter()
            .rev()
            .find(|p| !matches!(**p, "weight" | "bias"))
            .copied()
            .unwrap_or("");
        let f = match proj {
            "q_proj" | "query" | "q" => pick(AttnQ, AttnQBias),
            "k_proj" | "key" | "k" => pick(AttnK, AttnKBias),
            "v_proj" | "value" | "v" => pick(AttnV, AttnVBias),
            "o_proj" | "o" | "c_proj" | "out_proj" | "dense" => pick(AttnO, AttnOBias),
            "c_attn" | "query_key_value" | "qkv_proj" | "Wqkv" => pick(AttnQkv, AttnQkvBias),
            "q_norm" => AttnQNorm,
            "k_norm" => AttnKNorm,
            "q_a_proj" => AttnQA,
            "q_a_layernorm" => AttnQANorm,
            "q_b_proj" => AttnQB,
            "kv_a_proj_with_mqa" => AttnKvA,
            "kv_a_layernorm" => AttnKvANorm,
            "kv_b_proj" => AttnKvB,
            _ => Other,
        };
        return f;
    }
    // Dense MLP (Llama gate/up/down, Phi-3 fused gate_up, GPT-2 c_fc/c_proj, BERT).
    match rest {
        ["mlp", "gate_proj", ..] => MlpGate,
        ["mlp", "up_proj" | "c_fc" | "fc1" | "gate_up_proj", ..] => pick(MlpUp, MlpUpBias),
        ["mlp", "down_proj" | "c_proj" | "fc2", ..] => pick(MlpDown, MlpDownBias),
        ["intermediate", "dense", ..] => pick(MlpUp, MlpUpBias),
        ["output", "dense", ..] => pick(MlpDown, MlpDownBias),
        _ => Other,
    }
}

fn global_family(parts: &[&str]) -> Family {
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
    if joined.ends_with("position_ids") || joined.ends_with("token_type_ids") {
        return Buffer;
    }
    if joined.contains("embeddings.LayerNorm") || joined.contains("embeddings.norm") {
        return pick(EmbeddingNorm, EmbeddingNormBias);
    }
    match last_named {
        "embed_tokens" | "word_embeddings" | "wte" | "embed_in" | "tok_embeddings" => Embedding,
        "position_embeddings" | "wpe" | "embed_positions" => PositionEmbedding,
        "token_type_embeddings" => TokenTypeEmbedding,
        "lm_head" | "embed_out" | "output" => LmHead,
        "norm" | "ln_f" | "final_layernorm" | "final_layer_norm" => pick(FinalNorm, FinalNormBias),
        _ if joined.starts_with("pooler.") || joined.contains(".pooler.") => {
            pick(Pooler, PoolerBias)
        }
        _ => Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Family::*;

    fn role(name: &str) -> (Option<u32>, Family, Option<u32>, bool) {
        let hints = ArchHints {
            model_type: Some("glm4_moe".into()),
            num_hidden_layers: Some(46),
            num_nextn_predict_layers: Some(1),
        };
        let r = classify(name, &hints);
        (r.layer, r.family, r.expert, r.mtp)
    }

    #[test]
    fn decoder_namings() {
        let cases = [
            ("model.embed_tokens.weight", None, Embedding, None),
            ("lm_head.weight", None, LmHead, None),
            ("model.norm.weight", None, FinalNorm, None),
            (
                "model.layers.3.input_layernorm.weight",
                Some(3),
                InputNorm,
                None,
            ),
            (
                "model.layers.3.post_attention_layernorm.weight",
                Some(3),
                PostAttentionNorm,
                None,
            ),
            (
                "model.layers.3.self_attn.q_proj.weight",
                Some(3),
                AttnQ,
                None,
            ),
            (
                "model.layers.3.self_attn.q_proj.bias",
                Some(3),
                AttnQBias,
                None,
            ),
            (
                "model.layers.3.self_attn.k_proj.weight",
                Some(3),
                AttnK,
                None,
            ),
            (
                "model.layers.3.self_attn.v_proj.bias",
                Some(3),
                AttnVBias,
                None,
            ),
            (
                "model.layers.3.self_attn.o_proj.weight",
                Some(3),
                AttnO,
                None,
            ),
            (
                "model.layers.3.self_attn.q_norm.weight",
                Some(3),
                AttnQNorm,
                None,
            ),
            (
                "model.layers.0.mlp.gate_proj.weight",
                Some(0),
                MlpGate,
                None,
            ),
            ("model.layers.0.mlp.up_proj.weight", Some(0), MlpUp, None),
            (
                "model.layers.0.mlp.down_proj.weight",
                Some(0),
                MlpDown,
                None,
            ),
            ("model.layers.5.mlp.gate.weight", Some(5), Router, None),
            (
                "model.layers.5.mlp.gate.e_score_correction_bias",
                Some(5),
                RouterBias,
                None,
            ),
            (
                "model.layers.5.mlp.experts.17.gate_proj.weight",
                Some(5),
                ExpertGate,
                Some(17),
            ),
            (
                "model.layers.5.mlp.experts.17.up_proj.weight",
                Some(5),
                ExpertUp,
                Some(17),
            ),
            (
                "model.layers.5.mlp.experts.17.down_proj.weight",
                Some(5),
                ExpertDown,
                Some(17),
            ),
            (
                "model.layers.5.mlp.shared_experts.gate_proj.weight",
                Some(5),
                SharedExpertGate,
                None,
            ),
            (
                "model.layers.5.mlp.shared_expert.down_proj.weight",
                Some(5),
                SharedExpertDown,
                None,
            ),
            (
                "model.layers.5.mlp.shared_expert_gate.weight",
                Some(5),
                SharedExpertRouter,
                None,
            ),
            // Mixtral / Phi-3.5-MoE
            (
                "model.layers.2.block_sparse_moe.gate.weight",
                Some(2),
                Router,
                None,
            ),
            (
                "model.layers.2.block_sparse_moe.experts.3.w1.weight",
                Some(2),
                ExpertGate,
                Some(3),
            ),
            (
                "model.layers.2.block_sparse_moe.experts.3.w2.weight",
                Some(2),
                ExpertDown,
                Some(3),
            ),
            (
                "model.layers.2.block_sparse_moe.experts.3.w3.weight",
                Some(2),
                ExpertUp,
                Some(3),
            ),
            (
                "model.layers.2.input_layernorm.bias",
                Some(2),
                InputNormBias,
                None,
            ),
            // DeepSeek MLA
            (
                "model.layers.1.self_attn.q_a_proj.weight",
                Some(1),
                AttnQA,
                None,
            ),
            (
                "model.layers.1.self_attn.q_a_layernorm.weight",
                Some(1),
                AttnQANorm,
                None,
            ),
            (
                "model.layers.1.self_attn.kv_a_proj_with_mqa.weight",
                Some(1),
                AttnKvA,
                None,
            ),
            (
                "model.layers.1.self_attn.kv_b_proj.weight",
                Some(1),
                AttnKvB,
                None,
            ),
            // GPT-2
            ("transformer.wte.weight", None, Embedding, None),
            ("transformer.wpe.weight", None, PositionEmbedding, None),
            ("transformer.h.4.ln_1.weight", Some(4), InputNorm, None),
            ("transformer.h.4.attn.c_attn.weight", Some(4), AttnQkv, None),
            ("transformer.h.4.attn.c_proj.bias", Some(4), AttnOBias, None),
            ("transformer.h.4.attn.bias", Some(4), Buffer, None),
            (
                "transformer.h.4.ln_2.bias",
                Some(4),
                PostAttentionNormBias,
                None,
            ),
            ("transformer.h.4.mlp.c_fc.weight", Some(4), MlpUp, None),
            ("transformer.h.4.mlp.c_proj.weight", Some(4), MlpDown, None),
            ("transformer.ln_f.weight", None, FinalNorm, None),
        ];
        for (name, layer, family, expert) in cases {
            assert_eq!(role(name), (layer, family, expert, false), "{name}");
        }
    }

    #[test]
    fn encoder_namings() {
        let cases = [
            ("embeddings.word_embeddings.weight", None, Embedding),
            (
                "bert.embeddings.position_embeddings.weight",
                None,
                PositionEmbedding,
            ),
            (
                "embeddings.token_type_embeddings.weight",
                None,
                TokenTypeEmbedding,
            ),
            ("embeddings.LayerNorm.weight", None, EmbeddingNorm),
            ("embeddings.LayerNorm.beta", None, EmbeddingNormBias),
            ("embeddings.position_ids", None, Buffer),
            (
                "encoder.layer.2.attention.self.query.weight",
                Some(2),
                AttnQ,
            ),
            (
                "encoder.layer.2.attention.self.key.bias",
                Some(2),
                AttnKBias,
            ),
            (
                "encoder.layer.2.attention.self.value.weight",
                Some(2),
                AttnV,
            ),
            (
                "encoder.layer.2.attention.output.dense.weight",
                Some(2),
                AttnO,
            ),
            (
                "encoder.layer.2.attention.output.LayerNorm.weight",
                Some(2),
                PostAttentionNorm,
            ),
            ("encoder.layer.2.intermediate.dense.weight", Some(2), MlpUp),
            ("encoder.layer.2.output.dense.bias", Some(2), MlpDownBias),
            (
                "encoder.layer.2.output.LayerNorm.bias",
                Some(2),
                PostMlpNormBias,
            ),
            ("pooler.dense.weight", None, Pooler),
            // MPNet
            ("encoder.layer.7.attention.attn.q.weight", Some(7), AttnQ),
            ("encoder.layer.7.attention.attn.o.bias", Some(7), AttnOBias),
            (
                "encoder.layer.7.attention.LayerNorm.weight",
                Some(7),
                PostAttentionNorm,
            ),
            (
                "encoder.relative_attention_bias.weight",
                None,
                RelativeAttentionBias,
            ),
        ];
        for (name, layer, family) in cases {
            assert_eq!(role(name), (layer, family, None, false), "{name}");
        }
    }

    #[test]
    fn mtp_layer_is_marked() {
        assert_eq!(
            role("model.layers.46.enorm.weight"),
            (Some(46), MtpEmbedNorm, None, true)
        );
        assert_eq!(
            role("model.layers.46.eh_proj.weight"),
            (Some(46), MtpProj, None, true)
        );
        assert_eq!(
            role("model.layers.46.shared_head.norm.weight"),
            (Some(46), MtpHeadNorm, None, true)
        );
        assert_eq!(
            role("model.layers.46.input_layernorm.weight"),
            (Some(46), InputNorm, None, true)
        );
        assert!(!role("model.layers.45.input_layernorm.weight").3);
    }

    #[test]
    fn unknown_names_are_other() {
        assert_eq!(role("foo.bar").1, Other);
        assert_eq!(Family::PostAttentionNorm.as_str(), "post_attention_norm");
    }
}
