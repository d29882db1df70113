//! Architectures: real tensor names, shapes, `config.json`, and a name classifier that also works
//! on real checkpoints (llama-style, GLM/Solar MoE, Phi-MoE, BERT naming). This file holds the
//! architectures, their sizes and `config.json`; `tensors.rs` their tensor tables; `names.rs` the
//! roles, name parsing and the classifier.

mod names;
mod tensors;

pub use names::{
    NameParts, NormSlot, Role, TensorSpec, classify, name_parts, with_expert, with_layer,
};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Architectures the lab can generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchKind {
    /// GLM-4.5-Air layout (`glm4_moe`).
    Glm4Moe,
    /// Solar-Open-100B layout (`solar_open`).
    SolarOpen,
    /// Phi-3.5-MoE layout (`phimoe`).
    Phimoe,
    /// Dense Llama-3 layout (`llama`).
    Llama,
    /// BERT encoder (`bert`).
    Bert,
}

impl ArchKind {
    /// `model_type` string.
    pub fn model_type(self) -> &'static str {
        match self {
            ArchKind::Glm4Moe => "glm4_moe",
            ArchKind::SolarOpen => "solar_open",
            ArchKind::Phimoe => "phimoe",
            ArchKind::Llama => "llama",
            ArchKind::Bert => "bert",
        }
    }

    /// All kinds.
    pub const ALL: [ArchKind; 5] = [
        ArchKind::Glm4Moe,
        ArchKind::SolarOpen,
        ArchKind::Phimoe,
        ArchKind::Llama,
        ArchKind::Bert,
    ];
}

/// Every size of one architecture instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchConfig {
    /// Which architecture.
    pub kind: ArchKind,
    /// Residual width.
    pub hidden: usize,
    /// Transformer layers (MTP layers not counted).
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// Dense MLP width.
    pub intermediate: usize,
    /// Routed/shared expert MLP width.
    pub moe_intermediate: usize,
    /// Routed experts (0 = dense).
    pub experts: usize,
    /// Experts per token.
    pub experts_per_tok: usize,
    /// Shared experts.
    pub shared_experts: usize,
    /// Leading dense layers.
    pub first_k_dense: usize,
    /// Multi-token-prediction layers appended at index `layers..`.
    pub nextn_layers: usize,
    /// Embedding rows.
    pub vocab: usize,
    /// q/k/v (and for phimoe o) biases.
    pub attention_bias: bool,
    /// LayerNorm with bias instead of RMSNorm.
    pub layer_norm: bool,
    /// Rotary fraction of each head.
    pub partial_rotary_factor: f64,
}

fn round_to(x: f64, m: usize) -> usize {
    (((x / m as f64).round() as usize).max(1)) * m
}

impl ArchConfig {
    /// The real full-size configuration (GLM-4.5-Air, Solar-Open-100B, Phi-3.5-MoE, Llama-3-8B, BERT-base).
    pub fn real(kind: ArchKind) -> Self {
        match kind {
            ArchKind::Glm4Moe => ArchConfig {
                kind,
                hidden: 4096,
                layers: 46,
                heads: 96,
                kv_heads: 8,
                head_dim: 128,
                intermediate: 10944,
                moe_intermediate: 1408,
                experts: 128,
                experts_per_tok: 8,
                shared_experts: 1,
                first_k_dense: 1,
                nextn_layers: 1,
                vocab: 151552,
                attention_bias: true,
                layer_norm: false,
                partial_rotary_factor: 0.5,
            },
            ArchKind::SolarOpen => ArchConfig {
                kind,
                hidden: 4096,
                layers: 48,
                heads: 64,
                kv_heads: 8,
                head_dim: 128,
                intermediate: 10240,
                moe_intermediate: 1280,
                experts: 128,
                experts_per_tok: 8,
                shared_experts: 1,
                first_k_dense: 0,
                nextn_layers: 0,
                vocab: 196608,
                attention_bias: false,
                layer_norm: false,
                partial_rotary_factor: 1.0,
            },
            ArchKind::Phimoe => ArchConfig {
                kind,
                hidden: 4096,
                layers: 32,
                heads: 32,
                kv_heads: 8,
                head_dim: 128,
                intermediate: 6400,
                moe_intermediate: 6400,
                experts: 16,
                experts_per_tok: 2,
                shared_experts: 0,
                first_k_dense: 0,
                nextn_layers: 0,
                vocab: 32064,
                attention_bias: true,
                layer_norm: true,
                partial_rotary_factor: 1.0,
            },
            ArchKind::Llama => ArchConfig {
                kind,
                hidden: 4096,
                layers: 32,
                heads: 32,
                kv_heads: 8,
                head_dim: 128,
                intermediate: 14336,
                moe_intermediate: 0,
                experts: 0,
                experts_per_tok: 0,
                shared_experts: 0,
                first_k_dense: 0,
                nextn_layers: 0,
                vocab: 128256,
                attention_bias: false,
                layer_norm: false,
                partial_rotary_factor: 1.0,
            },
            ArchKind::Bert => ArchConfig {
                kind,
                hidden: 768,
                layers: 12,
                heads: 12,
                kv_heads: 12,
                head_dim: 64,
                intermediate: 3072,
                moe_intermediate: 0,
                experts: 0,
                experts_per_tok: 0,
                shared_experts: 0,
                first_k_dense: 0,
                nextn_layers: 0,
                vocab: 30522,
                attention_bias: true,
                layer_norm: true,
                partial_rotary_factor: 1.0,
            },
        }
    }

    /// A lab-sized instance at residual width `hidden` (multiple of 64; default 256).
    /// Projection aspect ratios (q rows : hidden, kv rows : hidden, MLP widths) follow the real
    /// model; head_dim = hidden/8 (BERT: 64); experts, layers and vocabulary are scaled down.
    pub fn scaled(kind: ArchKind, hidden: usize) -> Self {
        let real = Self::real(kind);
        let s = hidden as f64 / real.hidden as f64;
        let mut c = real.clone();
        c.hidden = hidden;
        if kind == ArchKind::Bert {
            c.head_dim = 64.min(hidden);
            c.heads = hidden / c.head_dim;
            c.kv_heads = c.heads;
            c.intermediate = 4 * hidden;
            c.layers = 4;
            c.vocab = round_to(real.vocab as f64 * s / 4.0, 64).max(640);
            return c;
        }
        c.head_dim = (hidden / 8).max(8);
        c.heads = real.heads * real.head_dim / real.hidden * hidden / c.head_dim;
        c.kv_heads = (real.kv_heads * real.head_dim * hidden / real.hidden / c.head_dim).max(1);
        c.intermediate = round_to(real.intermediate as f64 * s, 8);
        c.moe_intermediate = if real.moe_intermediate > 0 {
            round_to(real.moe_intermediate as f64 * s, 8)
        } else {
            0
        };
        c.vocab = round_to(real.vocab as f64 * s / 4.0, 64).max(640);
        match kind {
            ArchKind::Glm4Moe | ArchKind::SolarOpen => {
                c.layers = 8;
                c.experts = 8;
                c.experts_per_tok = 2;
            }
            ArchKind::Phimoe => {
                c.layers = 6;
                c.experts = 4;
                c.experts_per_tok = 2;
            }
            _ => c.layers = 6,
        }
        c
    }

    /// True if layer `l` (including MTP layers) has a routed MoE block.
    pub fn is_moe_layer(&self, l: usize) -> bool {
        self.experts > 0 && l >= self.first_k_dense
    }

    /// Name prefix of layer `l`.
    pub fn layer_prefix(&self, l: usize) -> String {
        match self.kind {
            ArchKind::Bert => format!("encoder.layer.{l}."),
            _ => format!("model.layers.{l}."),
        }
    }

    /// `config.json` with the real field names of the architecture.
    pub fn config_json(&self, specials: &SpecialIds) -> Value {
        let c = self;
        let arch_name = match c.kind {
            ArchKind::Glm4Moe => "Glm4MoeForCausalLM",
            ArchKind::SolarOpen => "SolarOpenForCausalLM",
            ArchKind::Phimoe => "PhiMoEForCausalLM",
            ArchKind::Llama => "LlamaForCausalLM",
            ArchKind::Bert => "BertModel",
        };
        let mut v = json!({
            "architectures": [arch_name],
            "model_type": c.kind.model_type(),
            "hidden_size": c.hidden,
            "num_hidden_layers": c.layers,
            "num_attention_heads": c.heads,
            "intermediate_size": c.intermediate,
            "vocab_size": c.vocab,
            "torch_dtype": "bfloat16",
            "transformers_version": "4.56.0",
        });
        let m = v.as_object_mut().expect("literal object");
        let mut set = |k: &str, val: Value| {
            m.insert(k.to_string(), val);
        };
        if c.kind == ArchKind::Bert {
            set("hidden_act", json!("gelu"));
            set("layer_norm_eps", json!(1e-12));
            set("max_position_embeddings", json!(512));
            set("type_vocab_size", json!(2));
            set("position_embedding_type", json!("absolute"));
            set("pad_token_id", json!(specials.pad));
            return v;
        }
        set("num_key_value_heads", json!(c.kv_heads));
        set("head_dim", json!(c.head_dim));
        set("hidden_act", json!("silu"));
        set("attention_bias", json!(c.attention_bias));
        set("attention_dropout", json!(0.0));
        set("max_position_embeddings", json!(131072));
        set(
            "rope_theta",
            json!(if c.kind == ArchKind::Llama {
                500000.0
            } else {
                1000000.0
            }),
        );
        set("tie_word_embeddings", json!(false));
        set("bos_token_id", json!(specials.bos));
        set("eos_token_id", json!(specials.eos));
        set("pad_token_id", json!(specials.pad));
        set("initializer_range", json!(0.02));
        set("use_cache", json!(true));
        if c.layer_norm {
            set("rms_norm_eps", json!(1e-5));
            set("num_local_experts", json!(c.experts));
            set("num_experts_per_tok", json!(c.experts_per_tok));
            set("router_jitter_noise", json!(0.01));
            set("lm_head_bias", json!(true));
        } else {
            set("rms_norm_eps", json!(1e-5));
        }
        if c.partial_rotary_factor != 1.0 {
            set("partial_rotary_factor", json!(c.partial_rotary_factor));
        }
        if matches!(c.kind, ArchKind::Glm4Moe | ArchKind::SolarOpen) {
            set("moe_intermediate_size", json!(c.moe_intermediate));
            set("n_routed_experts", json!(c.experts));
            set("n_shared_experts", json!(c.shared_experts));
            set("num_experts_per_tok", json!(c.experts_per_tok));
            set("first_k_dense_replace", json!(c.first_k_dense));
            set("norm_topk_prob", json!(true));
            set("routed_scaling_factor", json!(1.0));
            set("n_group", json!(1));
            set("topk_group", json!(1));
            set("num_nextn_predict_layers", json!(c.nextn_layers));
            set("use_qk_norm", json!(false));
        }
        v
    }
}

/// Token ids the config refers to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpecialIds {
    /// Beginning of sequence.
    pub bos: u32,
    /// End of sequence.
    pub eos: u32,
    /// Padding.
    pub pad: u32,
}
