//! The tensor tables of the architectures: every tensor's name, shape, role and stored dtype, in
//! the natural order the checkpoints list them (that order is the write order, so it is part of
//! the bytes the lab writes).

use super::{ArchConfig, ArchKind, NormSlot, Role, TensorSpec};
use crate::dtype::DType;

/// The tensors listed so far.
struct List(Vec<TensorSpec>);

impl List {
    /// Appends one tensor. Everything is stored as BF16 except the router's score correction
    /// bias, which GLM-style checkpoints keep in F32.
    fn push(&mut self, name: String, shape: Vec<usize>, role: Role, layer: Option<usize>) {
        let dtype = if role == Role::RouterBias {
            DType::F32
        } else {
            DType::BF16
        };
        self.0.push(TensorSpec {
            name,
            shape,
            dtype,
            role,
            layer,
        });
    }
}

impl ArchConfig {
    /// All tensors in natural order with their roles.
    pub fn tensors(&self) -> Vec<TensorSpec> {
        let mut v = List(Vec::new());
        if self.kind == ArchKind::Bert {
            self.bert_tensors(&mut v);
            return v.0;
        }
        let h = self.hidden;
        v.push(
            "model.embed_tokens.weight".into(),
            vec![self.vocab, h],
            Role::Embed,
            None,
        );
        for l in 0..self.layers + self.nextn_layers {
            let p = self.layer_prefix(l);
            self.decoder_norms(&mut v, &p, Some(l));
            self.decoder_attention(&mut v, &p, Some(l));
            if self.kind == ArchKind::Phimoe {
                self.phimoe_experts(&mut v, &p, Some(l));
            } else if self.is_moe_layer(l) {
                self.moe_mlp(&mut v, &p, Some(l));
            } else {
                self.dense_mlp(&mut v, &p, Some(l));
            }
            if l >= self.layers {
                self.mtp_extras(&mut v, &p, Some(l));
            }
        }
        v.push(
            "model.norm.weight".into(),
            vec![h],
            Role::Norm(NormSlot::Final),
            None,
        );
        if self.layer_norm {
            v.push("model.norm.bias".into(), vec![h], Role::NormBias, None);
        }
        v.push(
            "lm_head.weight".into(),
            vec![self.vocab, h],
            Role::LmHead,
            None,
        );
        if self.kind == ArchKind::Phimoe {
            v.push(
                "lm_head.bias".into(),
                vec![self.vocab],
                Role::LmHeadBias,
                None,
            );
        }
        v.0
    }

    /// BERT: embeddings with their LayerNorm, post-norm encoder layers, the pooler.
    fn bert_tensors(&self, v: &mut List) {
        let h = self.hidden;
        v.push(
            "embeddings.word_embeddings.weight".into(),
            vec![self.vocab, h],
            Role::Embed,
            None,
        );
        v.push(
            "embeddings.position_embeddings.weight".into(),
            vec![512, h],
            Role::PosEmbed,
            None,
        );
        v.push(
            "embeddings.token_type_embeddings.weight".into(),
            vec![2, h],
            Role::PosEmbed,
            None,
        );
        v.push(
            "embeddings.LayerNorm.weight".into(),
            vec![h],
            Role::Norm(NormSlot::Final),
            None,
        );
        v.push(
            "embeddings.LayerNorm.bias".into(),
            vec![h],
            Role::NormBias,
            None,
        );
        for l in 0..self.layers {
            let p = self.layer_prefix(l);
            let ly = Some(l);
            for (n, r, rb) in [
                ("query", Role::Q, Role::QBias),
                ("key", Role::K, Role::KBias),
                ("value", Role::V, Role::VBias),
            ] {
                v.push(format!("{p}attention.self.{n}.weight"), vec![h, h], r, ly);
                v.push(format!("{p}attention.self.{n}.bias"), vec![h], rb, ly);
            }
            v.push(
                format!("{p}attention.output.dense.weight"),
                vec![h, h],
                Role::O,
                ly,
            );
            v.push(
                format!("{p}attention.output.dense.bias"),
                vec![h],
                Role::OBias,
                ly,
            );
            v.push(
                format!("{p}attention.output.LayerNorm.weight"),
                vec![h],
                Role::Norm(NormSlot::Input),
                ly,
            );
            v.push(
                format!("{p}attention.output.LayerNorm.bias"),
                vec![h],
                Role::NormBias,
                ly,
            );
            v.push(
                format!("{p}intermediate.dense.weight"),
                vec![self.intermediate, h],
                Role::MlpIn,
                ly,
            );
            v.push(
                format!("{p}intermediate.dense.bias"),
                vec![self.intermediate],
                Role::MlpInBias,
                ly,
            );
            v.push(
                format!("{p}output.dense.weight"),
                vec![h, self.intermediate],
                Role::MlpOut,
                ly,
            );
            v.push(
                format!("{p}output.dense.bias"),
                vec![h],
                Role::MlpOutBias,
                ly,
            );
            v.push(
                format!("{p}output.LayerNorm.weight"),
                vec![h],
                Role::Norm(NormSlot::PostAttention),
                ly,
            );
            v.push(
                format!("{p}output.LayerNorm.bias"),
                vec![h],
                Role::NormBias,
                ly,
            );
        }
        v.push("pooler.dense.weight".into(), vec![h, h], Role::Pooler, None);
        v.push("pooler.dense.bias".into(), vec![h], Role::PoolerBias, None);
    }

    /// A decoder layer's two norms (with biases when they are LayerNorms).
    fn decoder_norms(&self, v: &mut List, p: &str, ly: Option<usize>) {
        let h = self.hidden;
        v.push(
            format!("{p}input_layernorm.weight"),
            vec![h],
            Role::Norm(NormSlot::Input),
            ly,
        );
        v.push(
            format!("{p}post_attention_layernorm.weight"),
            vec![h],
            Role::Norm(NormSlot::PostAttention),
            ly,
        );
        if self.layer_norm {
            v.push(
                format!("{p}input_layernorm.bias"),
                vec![h],
                Role::NormBias,
                ly,
            );
            v.push(
                format!("{p}post_attention_layernorm.bias"),
                vec![h],
                Role::NormBias,
                ly,
            );
        }
    }

    /// A decoder layer's attention projections (and their biases, where the family has them).
    fn decoder_attention(&self, v: &mut List, p: &str, ly: Option<usize>) {
        let h = self.hidden;
        let q = self.heads * self.head_dim;
        let kv = self.kv_heads * self.head_dim;
        v.push(
            format!("{p}self_attn.q_proj.weight"),
            vec![q, h],
            Role::Q,
            ly,
        );
        v.push(
            format!("{p}self_attn.k_proj.weight"),
            vec![kv, h],
            Role::K,
            ly,
        );
        v.push(
            format!("{p}self_attn.v_proj.weight"),
            vec![kv, h],
            Role::V,
            ly,
        );
        v.push(
            format!("{p}self_attn.o_proj.weight"),
            vec![h, q],
            Role::O,
            ly,
        );
        if self.attention_bias {
            v.push(
                format!("{p}self_attn.q_proj.bias"),
                vec![q],
                Role::QBias,
                ly,
            );
            v.push(
                format!("{p}self_attn.k_proj.bias"),
                vec![kv],
                Role::KBias,
                ly,
            );
            v.push(
                format!("{p}self_attn.v_proj.bias"),
                vec![kv],
                Role::VBias,
                ly,
            );
            if self.kind == ArchKind::Phimoe {
                v.push(
                    format!("{p}self_attn.o_proj.bias"),
                    vec![h],
                    Role::OBias,
                    ly,
                );
            }
        }
    }

    /// Phi-MoE's `block_sparse_moe`: the router and `w1`/`w2`/`w3` per expert.
    fn phimoe_experts(&self, v: &mut List, p: &str, ly: Option<usize>) {
        let (h, mi) = (self.hidden, self.moe_intermediate);
        v.push(
            format!("{p}block_sparse_moe.gate.weight"),
            vec![self.experts, h],
            Role::Router,
            ly,
        );
        for e in 0..self.experts {
            v.push(
                format!("{p}block_sparse_moe.experts.{e}.w1.weight"),
                vec![mi, h],
                Role::MlpIn,
                ly,
            );
            v.push(
                format!("{p}block_sparse_moe.experts.{e}.w2.weight"),
                vec![h, mi],
                Role::MlpOut,
                ly,
            );
            v.push(
                format!("{p}block_sparse_moe.experts.{e}.w3.weight"),
                vec![mi, h],
                Role::MlpIn,
                ly,
            );
        }
    }

    /// A GLM/Solar MoE layer: router, correction bias, routed experts, shared experts.
    fn moe_mlp(&self, v: &mut List, p: &str, ly: Option<usize>) {
        let (h, mi) = (self.hidden, self.moe_intermediate);
        v.push(
            format!("{p}mlp.gate.weight"),
            vec![self.experts, h],
            Role::Router,
            ly,
        );
        v.push(
            format!("{p}mlp.gate.e_score_correction_bias"),
            vec![self.experts],
            Role::RouterBias,
            ly,
        );
        for e in 0..self.experts {
            v.push(
                format!("{p}mlp.experts.{e}.gate_proj.weight"),
                vec![mi, h],
                Role::MlpIn,
                ly,
            );
            v.push(
                format!("{p}mlp.experts.{e}.up_proj.weight"),
                vec![mi, h],
                Role::MlpIn,
                ly,
            );
            v.push(
                format!("{p}mlp.experts.{e}.down_proj.weight"),
                vec![h, mi],
                Role::MlpOut,
                ly,
            );
        }
        if self.shared_experts > 0 {
            let si = mi * self.shared_experts;
            v.push(
                format!("{p}mlp.shared_experts.gate_proj.weight"),
                vec![si, h],
                Role::MlpIn,
                ly,
            );
            v.push(
                format!("{p}mlp.shared_experts.up_proj.weight"),
                vec![si, h],
                Role::MlpIn,
                ly,
            );
            v.push(
                format!("{p}mlp.shared_experts.down_proj.weight"),
                vec![h, si],
                Role::MlpOut,
                ly,
            );
        }
    }

    /// A dense gated MLP.
    fn dense_mlp(&self, v: &mut List, p: &str, ly: Option<usize>) {
        let h = self.hidden;
        let i = self.intermediate;
        v.push(
            format!("{p}mlp.gate_proj.weight"),
            vec![i, h],
            Role::MlpIn,
            ly,
        );
        v.push(
            format!("{p}mlp.up_proj.weight"),
            vec![i, h],
            Role::MlpIn,
            ly,
        );
        v.push(
            format!("{p}mlp.down_proj.weight"),
            vec![h, i],
            Role::MlpOut,
            ly,
        );
    }

    /// GLM's multi-token-prediction layers: the extra projection and norms.
    fn mtp_extras(&self, v: &mut List, p: &str, ly: Option<usize>) {
        let h = self.hidden;
        v.push(
            format!("{p}eh_proj.weight"),
            vec![h, 2 * h],
            Role::EhProj,
            ly,
        );
        v.push(
            format!("{p}enorm.weight"),
            vec![h],
            Role::Norm(NormSlot::Other),
            ly,
        );
        v.push(
            format!("{p}hnorm.weight"),
            vec![h],
            Role::Norm(NormSlot::Other),
            ly,
        );
        v.push(
            format!("{p}shared_head.norm.weight"),
            vec![h],
            Role::Norm(NormSlot::Final),
            ly,
        );
    }
}
