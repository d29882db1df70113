//! Names → roles, one test per naming family.

use super::*;
use Family::*;

fn role(name: &str) -> (Option<u32>, Family, Option<u32>, bool) {
    let hints = ArchHints {
        model_type: Some("glm4_moe".into()),
        num_hidden_layers: Some(46),
        num_nextn_predict_layers: Some(1),
        ..Default::default()
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

/// Roles of one model's names (with shapes), stacks settled as [`crate::model::Model`] does.
fn model_roles(names: &[(&str, &[u64])], hints: &ArchHints) -> Vec<Role> {
    let mut roles: Vec<Role> = names
        .iter()
        .map(|(n, s)| classify_shaped(n, s, hints))
        .collect();
    settle_stacks(&mut roles.iter_mut().collect::<Vec<_>>());
    roles
}

fn hints(model_type: &str) -> ArchHints {
    ArchHints {
        model_type: Some(model_type.into()),
        ..Default::default()
    }
}

/// (name, layer, family) for names of one family; none is inferred, all on a single stack.
fn check(model_type: &str, cases: &[(&str, Option<u32>, Family)]) {
    let h = hints(model_type);
    for (name, layer, family) in cases {
        let r = classify(name, &h);
        assert_eq!((r.layer, r.family), (*layer, *family), "{name}");
        assert!(!r.inferred, "{name}");
    }
}

#[test]
fn albert_layer_groups_are_layers() {
    let p = "albert.encoder.albert_layer_groups";
    check(
        "albert",
        &[
            ("albert.embeddings.word_embeddings.weight", None, Embedding),
            (
                "albert.encoder.embedding_hidden_mapping_in.weight",
                None,
                EmbeddingProjection,
            ),
            (
                "albert.encoder.embedding_hidden_mapping_in.bias",
                None,
                EmbeddingProjectionBias,
            ),
            ("albert.embeddings.LayerNorm.weight", None, EmbeddingNorm),
            (
                &format!("{p}.0.albert_layers.0.attention.query.weight"),
                Some(0),
                AttnQ,
            ),
            (
                &format!("{p}.0.albert_layers.0.attention.key.bias"),
                Some(0),
                AttnKBias,
            ),
            (
                &format!("{p}.2.albert_layers.0.attention.dense.weight"),
                Some(2),
                AttnO,
            ),
            (
                &format!("{p}.2.albert_layers.0.attention.LayerNorm.weight"),
                Some(2),
                PostAttentionNorm,
            ),
            (&format!("{p}.1.albert_layers.0.ffn.weight"), Some(1), MlpUp),
            (
                &format!("{p}.1.albert_layers.0.ffn_output.weight"),
                Some(1),
                MlpDown,
            ),
            (
                &format!("{p}.1.albert_layers.0.full_layer_layer_norm.weight"),
                Some(1),
                PostMlpNorm,
            ),
        ],
    );
    // two layers per group: group 1, layer 1 is the fourth layer
    let h = ArchHints {
        inner_group_num: Some(2),
        ..hints("albert")
    };
    let r = classify(&format!("{p}.1.albert_layers.1.attention.query.weight"), &h);
    assert_eq!((r.layer, r.family), (Some(3), AttnQ));
}

#[test]
fn distilbert_names() {
    let p = "distilbert.transformer.layer.4";
    check(
        "distilbert",
        &[
            (
                "distilbert.embeddings.word_embeddings.weight",
                None,
                Embedding,
            ),
            (
                "distilbert.embeddings.position_embeddings.weight",
                None,
                PositionEmbedding,
            ),
            (
                "distilbert.embeddings.LayerNorm.bias",
                None,
                EmbeddingNormBias,
            ),
            (&format!("{p}.attention.q_lin.weight"), Some(4), AttnQ),
            (&format!("{p}.attention.k_lin.bias"), Some(4), AttnKBias),
            (&format!("{p}.attention.v_lin.weight"), Some(4), AttnV),
            (&format!("{p}.attention.out_lin.weight"), Some(4), AttnO),
            (
                &format!("{p}.sa_layer_norm.weight"),
                Some(4),
                PostAttentionNorm,
            ),
            (&format!("{p}.ffn.lin1.weight"), Some(4), MlpUp),
            (&format!("{p}.ffn.lin2.bias"), Some(4), MlpDownBias),
            (
                &format!("{p}.output_layer_norm.weight"),
                Some(4),
                PostMlpNorm,
            ),
        ],
    );
}

#[test]
fn t5_stacks_sublayers_and_norms() {
    let names: Vec<(String, Family, Option<u32>, Stack)> = vec![
        ("shared.weight".into(), Embedding, None, Stack::Main),
        (
            "encoder.block.0.layer.0.SelfAttention.q.weight".into(),
            AttnQ,
            Some(0),
            Stack::Encoder,
        ),
        (
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight".into(),
            RelativeAttentionBias,
            Some(0),
            Stack::Encoder,
        ),
        (
            "encoder.block.2.layer.0.SelfAttention.k.weight".into(),
            AttnK,
            Some(2),
            Stack::Encoder,
        ),
        (
            "encoder.block.2.layer.0.SelfAttention.o.weight".into(),
            AttnO,
            Some(2),
            Stack::Encoder,
        ),
        (
            "encoder.block.2.layer.0.layer_norm.weight".into(),
            InputNorm,
            Some(2),
            Stack::Encoder,
        ),
        (
            "encoder.block.2.layer.1.DenseReluDense.wi_0.weight".into(),
            MlpGate,
            Some(2),
            Stack::Encoder,
        ),
        (
            "encoder.block.2.layer.1.DenseReluDense.wi_1.weight".into(),
            MlpUp,
            Some(2),
            Stack::Encoder,
        ),
        (
            "encoder.block.2.layer.1.DenseReluDense.wo.weight".into(),
            MlpDown,
            Some(2),
            Stack::Encoder,
        ),
        (
            "encoder.block.2.layer.1.layer_norm.weight".into(),
            PostAttentionNorm,
            Some(2),
            Stack::Encoder,
        ),
        (
            "encoder.final_layer_norm.weight".into(),
            FinalNorm,
            None,
            Stack::Encoder,
        ),
        (
            "decoder.block.1.layer.0.SelfAttention.q.weight".into(),
            AttnQ,
            Some(1001),
            Stack::Decoder,
        ),
        (
            "decoder.block.1.layer.1.EncDecAttention.k.weight".into(),
            CrossAttnK,
            Some(1001),
            Stack::Decoder,
        ),
        (
            "decoder.block.1.layer.1.layer_norm.weight".into(),
            CrossAttnNorm,
            Some(1001),
            Stack::Decoder,
        ),
        (
            "decoder.block.1.layer.2.DenseReluDense.wi.weight".into(),
            MlpUp,
            Some(1001),
            Stack::Decoder,
        ),
        (
            "decoder.block.1.layer.2.layer_norm.weight".into(),
            PostAttentionNorm,
            Some(1001),
            Stack::Decoder,
        ),
        ("lm_head.weight".into(), LmHead, None, Stack::Main),
    ];
    let input: Vec<(&str, &[u64])> = names.iter().map(|n| (n.0.as_str(), &[][..])).collect();
    let roles = model_roles(&input, &hints("t5"));
    for ((name, family, layer, stack), r) in names.iter().zip(&roles) {
        assert_eq!(
            (r.family, r.layer, r.stack),
            (*family, *layer, *stack),
            "{name}"
        );
        assert!(!r.inferred, "{name}");
    }
}

#[test]
fn single_stack_models_keep_plain_layer_numbers() {
    // BERT names its only stack "encoder", OPT its only stack "decoder"
    for name in [
        "encoder.layer.3.attention.self.query.weight",
        "model.decoder.layers.3.self_attn.q_proj.weight",
    ] {
        let roles = model_roles(&[(name, &[])], &ArchHints::default());
        assert_eq!(
            (roles[0].layer, roles[0].stack, roles[0].family),
            (Some(3), Stack::Main, AttnQ),
            "{name}"
        );
    }
}

#[test]
fn whisper_encoder_and_decoder() {
    let e = "model.encoder.layers.2";
    let d = "model.decoder.layers.2";
    let names: Vec<(String, Family, Option<u32>)> = vec![
        (format!("{e}.self_attn.q_proj.weight"), AttnQ, Some(2)),
        (format!("{e}.self_attn.k_proj.weight"), AttnK, Some(2)),
        (format!("{e}.self_attn.out_proj.bias"), AttnOBias, Some(2)),
        (
            format!("{e}.self_attn_layer_norm.weight"),
            InputNorm,
            Some(2),
        ),
        (
            format!("{e}.final_layer_norm.weight"),
            PostAttentionNorm,
            Some(2),
        ),
        (format!("{e}.fc1.weight"), MlpUp, Some(2)),
        (format!("{e}.fc2.bias"), MlpDownBias, Some(2)),
        (format!("{d}.self_attn.v_proj.weight"), AttnV, Some(1002)),
        (
            format!("{d}.encoder_attn.q_proj.weight"),
            CrossAttnQ,
            Some(1002),
        ),
        (
            format!("{d}.encoder_attn.out_proj.weight"),
            CrossAttnO,
            Some(1002),
        ),
        (
            format!("{d}.encoder_attn_layer_norm.weight"),
            CrossAttnNorm,
            Some(1002),
        ),
        ("model.encoder.layer_norm.weight".into(), FinalNorm, None),
        (
            "model.encoder.embed_positions.weight".into(),
            PositionEmbedding,
            None,
        ),
        ("model.decoder.embed_tokens.weight".into(), Embedding, None),
        ("model.encoder.conv1.weight".into(), Other, None),
    ];
    let input: Vec<(&str, &[u64])> = names.iter().map(|n| (n.0.as_str(), &[][..])).collect();
    let roles = model_roles(&input, &hints("whisper"));
    for ((name, family, layer), r) in names.iter().zip(&roles) {
        assert_eq!((r.family, r.layer), (*family, *layer), "{name}");
        assert!(!r.inferred, "{name}");
    }
}

#[test]
fn gemma3_sandwich_norms() {
    let p = "model.language_model.layers.5";
    check(
        "gemma3",
        &[
            (&format!("{p}.input_layernorm.weight"), Some(5), InputNorm),
            (
                &format!("{p}.post_attention_layernorm.weight"),
                Some(5),
                PostAttentionNorm,
            ),
            (
                &format!("{p}.pre_feedforward_layernorm.weight"),
                Some(5),
                PreMlpNorm,
            ),
            (
                &format!("{p}.post_feedforward_layernorm.weight"),
                Some(5),
                PostMlpNorm,
            ),
            (&format!("{p}.self_attn.q_norm.weight"), Some(5), AttnQNorm),
            (&format!("{p}.self_attn.k_norm.weight"), Some(5), AttnKNorm),
            (&format!("{p}.mlp.gate_proj.weight"), Some(5), MlpGate),
            ("model.language_model.embed_tokens.weight", None, Embedding),
            ("model.language_model.norm.weight", None, FinalNorm),
        ],
    );
}

#[test]
fn falcon_bloom_neox_fused_qkv_layouts() {
    let falcon = |mq: Option<bool>, new: Option<bool>, kv: Option<u32>| ArchHints {
        heads: Some(8),
        kv_heads: kv,
        multi_query: mq,
        new_decoder_architecture: new,
        ..hints("falcon")
    };
    let name = "transformer.h.3.self_attention.query_key_value.weight";
    // Falcon-7B: multi-query, 8 query heads of 32, one K and one V head after them
    let r = classify_shaped(name, &[320, 256], &falcon(None, None, None));
    assert_eq!((r.layer, r.family), (Some(3), AttnQkv));
    let mq = QkvLayout::Blocks {
        q_rows: 256,
        kv_rows: 32,
    };
    assert_eq!(r.qkv, Some(mq));
    assert_eq!(mq.runs(QkvPart::K), vec![(256, 32)]);
    // Falcon-40B: 2 groups of 4 query heads + k + v
    let r = classify_shaped(name, &[384, 256], &falcon(Some(false), Some(true), Some(2)));
    let g = QkvLayout::Grouped {
        groups: 2,
        q_per_group: 4,
        head_dim: 32,
    };
    assert_eq!(r.qkv, Some(g));
    assert_eq!(g.runs(QkvPart::Q), vec![(0, 128), (192, 128)]);
    assert_eq!(g.runs(QkvPart::V), vec![(160, 32), (352, 32)]);
    // a shape that does not fit the config gets no split
    assert_eq!(
        classify_shaped(name, &[768, 256], &falcon(None, None, None)).qkv,
        None
    );
    // BLOOM and GPT-NeoX: per head [q; k; v]
    let per_head = QkvLayout::Grouped {
        groups: 8,
        q_per_group: 1,
        head_dim: 32,
    };
    for (mt, n) in [
        ("bloom", "h.0.self_attention.query_key_value.weight"),
        (
            "gpt_neox",
            "gpt_neox.layers.0.attention.query_key_value.weight",
        ),
    ] {
        let h = ArchHints {
            heads: Some(8),
            ..hints(mt)
        };
        let r = classify_shaped(n, &[768, 256], &h);
        assert_eq!(
            (r.layer, r.family, r.qkv),
            (Some(0), AttnQkv, Some(per_head)),
            "{n}"
        );
        assert_eq!(per_head.runs(QkvPart::K)[1], (96 + 32, 32));
    }
    check(
        "bloom",
        &[
            ("word_embeddings.weight", None, Embedding),
            ("word_embeddings_layernorm.weight", None, EmbeddingNorm),
            ("h.1.input_layernorm.weight", Some(1), InputNorm),
            ("h.1.self_attention.dense.weight", Some(1), AttnO),
            (
                "h.1.post_attention_layernorm.bias",
                Some(1),
                PostAttentionNormBias,
            ),
            ("h.1.mlp.dense_h_to_4h.weight", Some(1), MlpUp),
            ("h.1.mlp.dense_4h_to_h.weight", Some(1), MlpDown),
            ("ln_f.weight", None, FinalNorm),
        ],
    );
    check(
        "falcon",
        &[
            ("transformer.word_embeddings.weight", None, Embedding),
            ("transformer.h.2.ln_attn.weight", Some(2), InputNorm),
            ("transformer.h.2.ln_mlp.weight", Some(2), PreMlpNorm),
            (
                "transformer.h.2.self_attention.dense.weight",
                Some(2),
                AttnO,
            ),
        ],
    );
    check(
        "gpt_neox",
        &[
            ("gpt_neox.embed_in.weight", None, Embedding),
            ("gpt_neox.layers.1.attention.dense.weight", Some(1), AttnO),
            (
                "gpt_neox.layers.1.attention.rotary_emb.inv_freq",
                Some(1),
                Buffer,
            ),
            ("gpt_neox.layers.1.attention.bias", Some(1), Buffer),
            (
                "gpt_neox.layers.1.mlp.dense_h_to_4h.bias",
                Some(1),
                MlpUpBias,
            ),
            ("gpt_neox.final_layer_norm.weight", None, FinalNorm),
            ("embed_out.weight", None, LmHead),
        ],
    );
}

#[test]
fn fallback_places_plausible_names_and_marks_them() {
    let cases: [(&str, &[u64], Option<u32>, Family); 7] = [
        ("net.stages.3.attn.query.weight", &[64, 64], Some(3), AttnQ),
        ("net.stages.3.attn.key.weight", &[64, 64], Some(3), AttnK),
        ("trunk.block.2.mixer.wq.weight", &[64, 64], Some(2), AttnQ),
        ("trunk.units.1.mlp.fc1.weight", &[256, 64], Some(1), MlpUp),
        ("trunk.units.1.mlp.fc2.bias", &[64], Some(1), MlpDownBias),
        ("trunk.units.1.norm1.weight", &[64], Some(1), InputNorm),
        ("trunk.units.1.attn.proj.weight", &[64, 64], Some(1), AttnO),
    ];
    for (name, shape, layer, family) in cases {
        let r = classify_shaped(name, shape, &ArchHints::default());
        assert_eq!((r.layer, r.family), (layer, family), "{name}");
        assert!(r.inferred, "{name}");
    }
    // shapes veto: a "query" that is 1-D is no projection, a 2-D "norm1" no norm
    let r = classify_shaped(
        "net.stages.3.attn.query.weight",
        &[64],
        &ArchHints::default(),
    );
    assert_eq!(r.family, Other);
    let r = classify_shaped(
        "trunk.units.1.norm1.weight",
        &[64, 64],
        &ArchHints::default(),
    );
    assert_eq!(r.family, Other);
    // nonsense names, and known names, are never inferred
    for name in ["t3f9a0c1d", "zz.qq.weight", "blob.7.zork.weight"] {
        let r = classify_shaped(name, &[64, 64], &ArchHints::default());
        assert_eq!((r.family, r.inferred), (Other, false), "{name}");
    }
    assert!(
        !classify(
            "model.layers.0.self_attn.q_proj.weight",
            &ArchHints::default()
        )
        .inferred
    );
}
