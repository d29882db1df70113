//! Tensor roles: which layer, which family and which expert a tensor belongs to, across the
//! namings of Llama/Qwen, GLM-4.5 (glm4_moe), Solar-Open, DeepSeek-V2/V3, Mixtral, Phi-3.5-MoE,
//! Gemma 2/3, Falcon, BLOOM, GPT-NeoX, GPT-2, BERT, ALBERT, DistilBERT, MPNet, T5 and Whisper
//! ([`names`]), with a generic fallback for names no rule knows ([`fallback`]).
//!
//! Experiments compare tensors by role, never by name, so a model renamed into another
//! architecture's naming still lines up.
//!
//! Encoder–decoder models (T5, Whisper) have two layer sequences. Their layers keep one index
//! space: encoder layer `N` is layer `N`, decoder layer `N` is layer [`DECODER_LAYER_BASE`]` + N`,
//! and [`Role::stack`] says which stack a tensor is in. Experiments that pair layers by index
//! (E1, E5, E8 at equal depth, E4's diagonal) therefore compare encoder with encoder and decoder
//! with decoder; E4 aligns each stack on its own. A model whose names mention only one stack
//! (BERT's `encoder.layer.N`, OPT's `decoder.layers.N`) is a single stack: see [`settle_stacks`].
//!
//! ALBERT shares one layer group across depth: each `albert_layer_groups.G.albert_layers.I` is
//! one layer (`G·inner_group_num + I`), so a one-group ALBERT has one layer (E8 runs on it; E4's
//! alignment needs two). Its embedding is factorised (`word_embeddings` 128 wide, then
//! `embedding_hidden_mapping_in` to the hidden width): E1b compares the stored 128-wide rows by
//! token text, but E8's hidden alignment needs embedding columns in the Q/K input basis, so at
//! equal hidden widths it falls back to the identity alignment (sound for un-permuted
//! derivations; mapping the rows through the projection first is not done yet).

mod fallback;
mod names;
mod qkv;
#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use qkv::{QkvLayout, QkvPart};

/// What a tensor is for. `*Bias` families are the bias of the weight family of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Token embedding matrix (`embed_tokens`, `word_embeddings`, `wte`).
    Embedding,
    /// ALBERT's `embedding_hidden_mapping_in`: the factorised embedding's map to the hidden width.
    EmbeddingProjection,
    /// Bias of `EmbeddingProjection`.
    EmbeddingProjectionBias,
    /// Learned absolute position embeddings.
    PositionEmbedding,
    /// Token type (segment) embeddings (BERT).
    TokenTypeEmbedding,
    /// The norm applied to the embeddings (BERT's `embeddings.LayerNorm`).
    EmbeddingNorm,
    /// Bias of `EmbeddingNorm`.
    EmbeddingNormBias,
    /// Output projection to the vocabulary (`lm_head`), when not tied.
    LmHead,
    /// The norm after the last layer.
    FinalNorm,
    /// Bias of `FinalNorm`.
    FinalNormBias,
    /// The norm attention reads (pre-norm), e.g. `input_layernorm`, T5 `layer.0.layer_norm`.
    InputNorm,
    /// Bias of `InputNorm`.
    InputNormBias,
    /// The norm between attention and MLP: Llama's `post_attention_layernorm` (the MLP input),
    /// BERT's `attention.output.LayerNorm` (post-norm). Gemma 2/3 apply theirs to the attention
    /// output and feed the MLP from [`Family::PreMlpNorm`].
    PostAttentionNorm,
    /// Bias of `PostAttentionNorm`.
    PostAttentionNormBias,
    /// A separate MLP input norm: Gemma's `pre_feedforward_layernorm`, Falcon-40B's `ln_mlp`.
    PreMlpNorm,
    /// Bias of `PreMlpNorm`.
    PreMlpNormBias,
    /// The norm on the MLP's output: Gemma's `post_feedforward_layernorm`, BERT's `output.LayerNorm`.
    PostMlpNorm,
    /// Bias of `PostMlpNorm`.
    PostMlpNormBias,
    /// The norm cross-attention reads (decoder of an encoder–decoder model).
    CrossAttnNorm,
    /// Bias of `CrossAttnNorm`.
    CrossAttnNormBias,
    /// Self-attention query projection.
    AttnQ,
    /// Self-attention key projection.
    AttnK,
    /// Self-attention value projection.
    AttnV,
    /// Self-attention output projection.
    AttnO,
    /// Bias of `AttnQ`.
    AttnQBias,
    /// Bias of `AttnK`.
    AttnKBias,
    /// Bias of `AttnV`.
    AttnVBias,
    /// Bias of `AttnO`.
    AttnOBias,
    /// Fused q/k/v rows; [`Role::qkv`] says how they split when the layout is known.
    AttnQkv,
    /// Bias of `AttnQkv`.
    AttnQkvBias,
    /// Per-head norm of the queries (Qwen3, Gemma 3 `q_norm`).
    AttnQNorm,
    /// Per-head norm of the keys (Qwen3, Gemma 3 `k_norm`).
    AttnKNorm,
    /// Cross-attention (decoder reading the encoder): T5 `EncDecAttention`, Whisper `encoder_attn`.
    CrossAttnQ,
    /// Cross-attention key projection.
    CrossAttnK,
    /// Cross-attention value projection.
    CrossAttnV,
    /// Cross-attention output projection.
    CrossAttnO,
    /// Bias of `CrossAttnQ`.
    CrossAttnQBias,
    /// Bias of `CrossAttnK`.
    CrossAttnKBias,
    /// Bias of `CrossAttnV`.
    CrossAttnVBias,
    /// Bias of `CrossAttnO`.
    CrossAttnOBias,
    /// Multi-head latent attention (DeepSeek): the low-rank query/key-value projections.
    AttnQA,
    /// Norm between the query's down- and up-projections (`q_a_layernorm`).
    AttnQANorm,
    /// Query up-projection from the latent (`q_b_proj`).
    AttnQB,
    /// Key-value down-projection to the latent (`kv_a_proj_with_mqa`).
    AttnKvA,
    /// Norm of the key-value latent (`kv_a_layernorm`).
    AttnKvANorm,
    /// Key-value up-projection from the latent (`kv_b_proj`).
    AttnKvB,
    /// T5's relative position bias table.
    RelativeAttentionBias,
    /// MoE router: scores the experts for each token.
    Router,
    /// Bias of `Router` (or its score correction).
    RouterBias,
    /// A routed expert's gate projection.
    ExpertGate,
    /// A routed expert's up projection.
    ExpertUp,
    /// A routed expert's down projection.
    ExpertDown,
    /// The shared (always-on) expert's gate projection.
    SharedExpertGate,
    /// The shared expert's up projection.
    SharedExpertUp,
    /// The shared expert's down projection.
    SharedExpertDown,
    /// The shared expert's gate scalar per token (Qwen-MoE `shared_expert_gate`).
    SharedExpertRouter,
    /// Dense MLP gate projection (gated MLPs).
    MlpGate,
    /// Dense MLP up projection (the first linear of a plain MLP).
    MlpUp,
    /// Dense MLP down projection.
    MlpDown,
    /// Bias of `MlpUp`.
    MlpUpBias,
    /// Bias of `MlpDown`.
    MlpDownBias,
    /// Next-n (multi-token prediction) layer parts that ordinary layers do not have.
    MtpEmbedNorm,
    /// MTP norm of the previous hidden state (`hnorm`).
    MtpHiddenNorm,
    /// MTP projection of the concatenated embedding and hidden state (`eh_proj`).
    MtpProj,
    /// MTP shared head's norm.
    MtpHeadNorm,
    /// MTP shared head's output projection.
    MtpHead,
    /// The pooler's dense layer (BERT's `pooler.dense`).
    Pooler,
    /// Bias of `Pooler`.
    PoolerBias,
    /// Non-learned buffers stored with the weights (position ids, causal masks, rotary tables).
    Buffer,
    /// Nothing a rule or the fallback recognises.
    Other,
}

impl Family {
    /// The family's snake_case name, as serialised.
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Norm gains and biases: the 1-D vectors the published dispute compared.
    pub fn is_norm(self) -> bool {
        use Family::*;
        matches!(
            self,
            InputNorm
                | InputNormBias
                | PostAttentionNorm
                | PostAttentionNormBias
                | PreMlpNorm
                | PreMlpNormBias
                | PostMlpNorm
                | PostMlpNormBias
                | CrossAttnNorm
                | CrossAttnNormBias
                | FinalNorm
                | FinalNormBias
                | EmbeddingNorm
                | EmbeddingNormBias
                | AttnQNorm
                | AttnKNorm
                | AttnQANorm
                | AttnKvANorm
                | MtpEmbedNorm
                | MtpHiddenNorm
                | MtpHeadNorm
        )
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// Which layer sequence of an encoder–decoder model a tensor belongs to.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Stack {
    /// A model with one layer sequence (every decoder-only or encoder-only model).
    #[default]
    Main,
    /// The encoder of an encoder–decoder model.
    Encoder,
    /// The decoder of an encoder–decoder model.
    Decoder,
}

impl Stack {
    /// The stack's name (`encoder`, `decoder`; empty for `Main`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stack::Main => "",
            Stack::Encoder => "encoder",
            Stack::Decoder => "decoder",
        }
    }
}

/// Layer key offset of a decoder stack's layers in an encoder–decoder model.
pub const DECODER_LAYER_BASE: u32 = 1000;

/// The stack a layer key belongs to (for experiments that align each stack on its own).
pub fn stack_of_layer(layer: u32) -> u32 {
    layer / DECODER_LAYER_BASE
}

/// The role of one tensor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Role {
    /// Layer key: the layer index, plus [`DECODER_LAYER_BASE`] in a decoder stack.
    pub layer: Option<u32>,
    /// What the tensor is for.
    pub family: Family,
    /// The routed expert's index, for expert tensors.
    pub expert: Option<u32>,
    /// True for tensors of a next-n / MTP layer (GLM-4.5, DeepSeek-V3 put it at index
    /// `num_hidden_layers`); experiments keep it out of layer-by-layer comparisons.
    pub mtp: bool,
    /// Which layer sequence it is in.
    pub stack: Stack,
    /// How a fused q/k/v tensor's rows split into Q, K and V, when the layout is known.
    pub qkv: Option<QkvLayout>,
    /// Placed by the generic fallback (name patterns and shape), not by a known naming's rule.
    pub inferred: bool,
}

/// What a config.json tells the classifier.
#[derive(Clone, Debug, Default)]
pub struct ArchHints {
    /// `model_type`.
    pub model_type: Option<String>,
    /// Number of layers (`num_hidden_layers`, `n_layer`, …).
    pub num_hidden_layers: Option<u32>,
    /// Next-n (MTP) layers after the ordinary ones (`num_nextn_predict_layers`).
    pub num_nextn_predict_layers: Option<u32>,
    /// Query heads (`num_attention_heads`, `n_head`, `num_heads`).
    pub heads: Option<u32>,
    /// Key/value heads (`num_key_value_heads`, `num_kv_heads`, `n_head_kv`).
    pub kv_heads: Option<u32>,
    /// Width of one attention head (`head_dim`).
    pub head_dim: Option<u32>,
    /// Falcon: one key/value head shared by all query heads (`multi_query`, default true).
    pub multi_query: Option<bool>,
    /// Falcon-40B/180B: q/k/v rows grouped per key/value head.
    pub new_decoder_architecture: Option<bool>,
    /// ALBERT: layers per layer group.
    pub inner_group_num: Option<u32>,
}

impl ArchHints {
    /// The hints of a config.json (sizes read from `text_config` when present).
    pub fn from_config(config: &serde_json::Value) -> ArchHints {
        // multimodal wrappers (Gemma 3) keep the language model's sizes in `text_config`
        let text = config.get("text_config");
        let get = |k: &str| {
            config
                .get(k)
                .or_else(|| text.and_then(|t| t.get(k)))
                .filter(|v| !v.is_null())
        };
        let int = |keys: &[&str]| {
            keys.iter().find_map(|k| {
                get(k)
                    .and_then(serde_json::Value::as_u64)
                    .and_then(|v| u32::try_from(v).ok())
            })
        };
        let flag = |k: &str| get(k).and_then(serde_json::Value::as_bool);
        ArchHints {
            model_type: config
                .get("model_type")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            num_hidden_layers: int(&["num_hidden_layers", "n_layer", "num_layers"]),
            num_nextn_predict_layers: int(&["num_nextn_predict_layers"]),
            heads: int(&["num_attention_heads", "n_head", "num_heads", "n_heads"]),
            kv_heads: int(&["num_key_value_heads", "num_kv_heads", "n_head_kv"]),
            head_dim: int(&["head_dim"]),
            multi_query: flag("multi_query"),
            new_decoder_architecture: flag("new_decoder_architecture"),
            inner_group_num: int(&["inner_group_num"]),
        }
    }

    fn is(&self, prefixes: &[&str]) -> bool {
        self.model_type
            .as_deref()
            .is_some_and(|t| prefixes.iter().any(|p| t.starts_with(p)))
    }
}

/// Classifies a tensor name without its shape (fused q/k/v tensors get no split).
pub fn classify(name: &str, hints: &ArchHints) -> Role {
    classify_shaped(name, &[], hints)
}

/// Classifies a tensor name of the given shape. Unknown names get `Family::Other`, never an
/// error: the inventory must list everything a file holds.
pub fn classify_shaped(name: &str, shape: &[u64], hints: &ArchHints) -> Role {
    let parts: Vec<&str> = name.split('.').collect();
    let found = split_layer(&parts, hints);
    let expert = expert_index(found.rest);
    let mtp = match (found.layer, hints.num_hidden_layers) {
        (Some(l), Some(n)) => l >= n && hints.num_nextn_predict_layers.unwrap_or(1) > 0,
        _ => false,
    };
    let family = match found.layer {
        Some(_) => names::layer_family(found.rest, found.stack),
        None => names::global_family(&parts),
    };
    let mut role = Role {
        layer: found.layer,
        family,
        expert,
        mtp,
        stack: found.stack,
        qkv: None,
        inferred: false,
    };
    if role.family == Family::Other {
        fallback::infer(&parts, shape, &mut role);
    }
    if role.family == Family::AttnQkv {
        role.qkv = qkv::layout(name, shape, hints);
    }
    role
}

/// Where the layer index sits in a name.
struct Found<'a, 'b> {
    layer: Option<u32>,
    rest: &'b [&'a str],
    stack: Stack,
}

/// Finds `layers.N` / `layer.N` / `h.N` / `blocks.N` / `block.N` (and ALBERT's
/// `albert_layer_groups.G.albert_layers.I`, layer `G·inner_group_num + I`) and returns N with
/// what follows it, and the stack an `encoder`/`decoder` segment before it names.
fn split_layer<'a, 'b>(parts: &'b [&'a str], hints: &ArchHints) -> Found<'a, 'b> {
    for i in 0..parts.len().saturating_sub(1) {
        let stack = stack_named(&parts[..i]);
        if parts[i] == "albert_layer_groups"
            && let Ok(g) = parts[i + 1].parse::<u32>()
        {
            let inner = match parts.get(i + 2..i + 4) {
                Some(["albert_layers", n]) => n.parse::<u32>().ok(),
                _ => None,
            };
            let per = hints.inner_group_num.unwrap_or(1).max(1);
            let (layer, skip) = match inner {
                Some(n) => (g.saturating_mul(per).saturating_add(n), i + 4),
                None => (g, i + 2),
            };
            return Found {
                layer: Some(layer),
                rest: &parts[skip..],
                stack,
            };
        }
        if matches!(parts[i], "layers" | "layer" | "h" | "blocks" | "block")
            && let Ok(n) = parts[i + 1].parse::<u32>()
        {
            return Found {
                layer: Some(n),
                rest: &parts[i + 2..],
                stack,
            };
        }
    }
    Found {
        layer: None,
        rest: parts,
        stack: stack_named(parts),
    }
}

fn stack_named(parts: &[&str]) -> Stack {
    if parts.contains(&"decoder") {
        Stack::Decoder
    } else if parts.contains(&"encoder") {
        Stack::Encoder
    } else {
        Stack::Main
    }
}

fn expert_index(rest: &[&str]) -> Option<u32> {
    rest.windows(2)
        .find(|w| w[0] == "experts")
        .and_then(|w| w[1].parse().ok())
}

/// Settles the stacks of one model's roles: a model with layers in both an encoder and a decoder
/// stack keeps them apart (decoder layers keyed [`DECODER_LAYER_BASE`]` + N`); any other model is
/// a single stack, whatever its names say (BERT's `encoder.layer.N`, OPT's `decoder.layers.N`).
pub fn settle_stacks(roles: &mut [&mut Role]) {
    let has = |s: Stack, roles: &[&mut Role]| {
        roles
            .iter()
            .any(|r| r.stack == s && r.layer.is_some() && r.family != Family::Other)
    };
    let two = has(Stack::Encoder, roles) && has(Stack::Decoder, roles);
    for r in roles.iter_mut() {
        if !two {
            r.stack = Stack::Main;
        } else if r.stack == Stack::Decoder
            && let Some(l) = r.layer
        {
            r.layer = Some(l.saturating_add(DECODER_LAYER_BASE));
        }
    }
}
