//! What a tensor does, read from its name: the roles transforms need ([`Role`], [`NormSlot`]),
//! a name's layer and expert numbers ([`name_parts`], [`with_layer`], [`with_expert`]) and the
//! classifier ([`classify`]) that also works on real checkpoints.

use crate::dtype::DType;

/// Which norm a gain vector is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NormSlot {
    /// Before attention (BERT: after attention).
    Input,
    /// Before the MLP (BERT: after the MLP).
    PostAttention,
    /// Final norm (and BERT's embedding norm).
    Final,
    /// Other hidden-size norms (MTP `enorm`/`hnorm`).
    Other,
}

/// What a tensor does, as far as transforms need to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Token embedding `[vocab, hidden]`.
    Embed,
    /// Output head `[vocab, hidden]`.
    LmHead,
    /// Output head bias `[vocab]`.
    LmHeadBias,
    /// Position / token-type embedding `[n, hidden]`.
    PosEmbed,
    /// Norm gain `[hidden]`.
    Norm(NormSlot),
    /// Norm bias `[hidden]`.
    NormBias,
    /// Query projection `[heads*head_dim, hidden]`.
    Q,
    /// Key projection.
    K,
    /// Value projection.
    V,
    /// Attention output `[hidden, heads*head_dim]`.
    O,
    /// Query bias.
    QBias,
    /// Key bias.
    KBias,
    /// Value bias.
    VBias,
    /// Attention output bias `[hidden]`.
    OBias,
    /// MLP input (gate/up/w1/w3) `[inter, hidden]`.
    MlpIn,
    /// MLP input bias `[inter]`.
    MlpInBias,
    /// MLP output (down/w2) `[hidden, inter]`.
    MlpOut,
    /// MLP output bias `[hidden]`.
    MlpOutBias,
    /// MoE router `[experts, hidden]`.
    Router,
    /// Router score-correction bias `[experts]` (F32).
    RouterBias,
    /// GLM MTP `eh_proj` `[hidden, 2*hidden]`.
    EhProj,
    /// BERT pooler `[hidden, hidden]` (reads the residual).
    Pooler,
    /// BERT pooler bias.
    PoolerBias,
    /// Anything else (left alone by hidden-space transforms).
    Other,
}

/// One tensor of an architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    /// Full name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Storage dtype.
    pub dtype: DType,
    /// Role.
    pub role: Role,
    /// Layer index if inside a layer.
    pub layer: Option<usize>,
}

/// Parsed position of a tensor name: layer index (segment after `layers`/`layer`/`h`/`blocks`) and
/// expert index (segment after `experts`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameParts {
    /// Layer index.
    pub layer: Option<usize>,
    /// Byte range of the layer number in the name.
    pub layer_span: Option<(usize, usize)>,
    /// Routed expert index.
    pub expert: Option<usize>,
    /// Byte range of the expert number in the name.
    pub expert_span: Option<(usize, usize)>,
}

/// Split a name into layer and expert positions.
pub fn name_parts(name: &str) -> NameParts {
    let mut p = NameParts {
        layer: None,
        layer_span: None,
        expert: None,
        expert_span: None,
    };
    let mut pos = 0;
    let segs: Vec<&str> = name.split('.').collect();
    let mut starts = Vec::with_capacity(segs.len());
    for s in &segs {
        starts.push(pos);
        pos += s.len() + 1;
    }
    for i in 1..segs.len() {
        let Ok(n) = segs[i].parse::<usize>() else {
            continue;
        };
        let span = (starts[i], starts[i] + segs[i].len());
        match segs[i - 1] {
            "layers" | "layer" | "h" | "blocks" if p.layer.is_none() => {
                p.layer = Some(n);
                p.layer_span = Some(span);
            }
            "experts" if p.expert.is_none() => {
                p.expert = Some(n);
                p.expert_span = Some(span);
            }
            _ => {}
        }
    }
    p
}

/// Replace the layer number in `name` (no-op when there is none).
pub fn with_layer(name: &str, l: usize) -> String {
    match name_parts(name).layer_span {
        Some((a, b)) => format!("{}{}{}", &name[..a], l, &name[b..]),
        None => name.to_string(),
    }
}

/// Replace the expert number in `name`.
pub fn with_expert(name: &str, e: usize) -> String {
    match name_parts(name).expert_span {
        Some((a, b)) => format!("{}{}{}", &name[..a], e, &name[b..]),
        None => name.to_string(),
    }
}

/// Classify a tensor name (lab or real checkpoint) into a [`Role`]. `hidden` disambiguates
/// norms over other widths (e.g. DeepSeek `kv_a_layernorm`), which are `Role::Other`.
pub fn classify(name: &str, shape: &[usize], hidden: usize) -> Role {
    let n = name;
    let is_w = n.ends_with(".weight");
    let is_b = n.ends_with(".bias");
    let lower = n.to_ascii_lowercase();
    if n.ends_with("e_score_correction_bias") {
        return Role::RouterBias;
    }
    if lower.contains("norm") {
        if shape != [hidden] {
            return Role::Other;
        }
        let slot = if n.contains("input_layernorm") || n.contains("attention.output.LayerNorm") {
            NormSlot::Input
        } else if n.contains("post_attention_layernorm") || n.contains("output.LayerNorm") {
            NormSlot::PostAttention
        } else if n.contains("enorm") || n.contains("hnorm") {
            NormSlot::Other
        } else {
            NormSlot::Final
        };
        return if is_b {
            Role::NormBias
        } else {
            Role::Norm(slot)
        };
    }
    let has = |s: &str| n.contains(s);
    if has("embed_tokens") || has("word_embeddings") || has("wte.") || has("embed_in") {
        return Role::Embed;
    }
    if has("position_embeddings") || has("token_type_embeddings") || has("wpe.") {
        return Role::PosEmbed;
    }
    if has("lm_head") || has("embed_out") || has("shared_head.head") {
        return if is_b { Role::LmHeadBias } else { Role::LmHead };
    }
    if has("eh_proj") {
        return Role::EhProj;
    }
    if has("pooler") {
        return if is_b { Role::PoolerBias } else { Role::Pooler };
    }
    let pick = |w: Role, b: Role| {
        if is_b {
            b
        } else if is_w {
            w
        } else {
            Role::Other
        }
    };
    if has("q_proj") || has("attention.self.query") {
        return pick(Role::Q, Role::QBias);
    }
    if has("k_proj") || has("attention.self.key") {
        return pick(Role::K, Role::KBias);
    }
    if has("v_proj") || has("attention.self.value") {
        return pick(Role::V, Role::VBias);
    }
    if has("o_proj") || has("attention.output.dense") {
        return pick(Role::O, Role::OBias);
    }
    if n.ends_with("mlp.gate.weight")
        || n.ends_with("block_sparse_moe.gate.weight")
        || has("router.weight")
    {
        return Role::Router;
    }
    if has("gate_proj")
        || has("up_proj")
        || n.ends_with(".w1.weight")
        || n.ends_with(".w3.weight")
        || has("intermediate.dense")
    {
        return pick(Role::MlpIn, Role::MlpInBias);
    }
    if has("down_proj") || n.ends_with(".w2.weight") || has("output.dense") {
        return pick(Role::MlpOut, Role::MlpOutBias);
    }
    Role::Other
}
