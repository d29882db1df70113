//! The built-in evaluation suite: labelled model pairs covering every transform, including hard
//! cases (heavy continued training, pruning + fine-tune, permuted hidden dims, quantised copies,
//! cousins sharing only embeddings, independent pairs with identical recipes).

use super::arch::ArchKind;
use super::spec::{Label, ModelSpec, PairSpec, Spec};
use super::transform::{InsertMode, QuantScheme, TransformSpec as T};

/// Options of [`suite_spec`].
#[derive(Clone, Debug, PartialEq)]
pub struct SuiteOptions {
    /// Residual width of every model (multiple of 64; default 256).
    pub hidden: usize,
    /// Base seed (default 0).
    pub seed: u64,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        SuiteOptions {
            hidden: 256,
            seed: 0,
        }
    }
}

pub(crate) fn base(name: &str, arch: ArchKind, seed: u64) -> ModelSpec {
    let mut m = ModelSpec {
        name: name.into(),
        arch: Some(arch),
        seed: Some(seed),
        ..Default::default()
    };
    match arch {
        ArchKind::Llama => {
            m.layers = Some(6);
            m.intermediate = Some(688);
            m.vocab = Some(1024);
        }
        ArchKind::Glm4Moe | ArchKind::SolarOpen => m.layers = Some(6),
        ArchKind::Phimoe => m.layers = Some(4),
        ArchKind::Bert => {}
    }
    m
}

pub(crate) fn derived(name: &str, from: &str, transforms: Vec<T>) -> ModelSpec {
    ModelSpec {
        name: name.into(),
        from: Some(from.into()),
        transforms,
        ..Default::default()
    }
}

pub(crate) fn pair(
    id: &str,
    a: &str,
    b: &str,
    label: Label,
    relation: &str,
    notes: &str,
) -> PairSpec {
    PairSpec {
        id: id.into(),
        a: a.into(),
        b: b.into(),
        label,
        relation: relation.into(),
        notes: notes.into(),
    }
}

/// The suite as a spec (also written next to the models as `spec.toml`).
pub fn suite_spec(opts: &SuiteOptions) -> Spec {
    use ArchKind::*;
    use Label::*;
    let la = "llama-a";
    let mut models = vec![
        base(la, Llama, 1),
        base("llama-b", Llama, 2),
        base("glm-a", Glm4Moe, 11),
        base("glm-b", Glm4Moe, 12),
        base("solar-a", SolarOpen, 21),
        base("phi-a", Phimoe, 31),
        base("bert-a", Bert, 41),
    ];
    let ft = |rel: f64, seed: u64| T::FineTune { rel, seed };
    let d = |n: &str, ts: Vec<T>| derived(&format!("{la}.{n}"), la, ts);
    models.extend([
        d("copy", vec![T::Copy]),
        d(
            "f32",
            vec![T::Cast {
                dtype: "F32".into(),
                pattern: None,
            }],
        ),
        d(
            "reshard",
            vec![T::Reshard { shards: 3 }, T::Reorder { seed: 5 }],
        ),
        d("ft", vec![ft(0.01, 101)]),
        d(
            "cpt",
            vec![T::ContinuedPretrain {
                rel: 0.3,
                drift: 0.2,
                seed: 102,
            }],
        ),
        d(
            "cpt-heavy",
            vec![T::ContinuedPretrain {
                rel: 1.2,
                drift: 0.5,
                seed: 103,
            }],
        ),
        d(
            "dus",
            vec![
                T::InsertLayers {
                    after: vec![2, 4],
                    mode: InsertMode::Duplicate,
                    seed: 0,
                },
                ft(0.02, 104),
            ],
        ),
        d(
            "insert-random",
            vec![T::InsertLayers {
                after: vec![1],
                mode: InsertMode::Random,
                seed: 105,
            }],
        ),
        d("remove", vec![T::RemoveLayers { layers: vec![1, 4] }]),
        d(
            "every2",
            vec![T::SubsetLayers {
                every: 2,
                offset: 0,
            }],
        ),
        d("layer-perm", vec![T::PermuteLayers { seed: 106 }]),
        d(
            "hidden-perm",
            vec![T::PermuteHidden {
                seed: 107,
                sign_flips: true,
            }],
        ),
        d("vocab-shift", vec![T::VocabShift { n: 64, seed: 108 }]),
        d("vocab-perm", vec![T::VocabPermute { seed: 109 }]),
        d(
            "vocab-prune",
            vec![T::VocabPrune {
                fraction: 0.3,
                seed: 110,
            }],
        ),
        d("vocab-extend", vec![T::VocabExtend { n: 128, seed: 111 }]),
        d(
            "fold",
            vec![T::FoldNorm {
                spread: 0.5,
                seed: 112,
            }],
        ),
        d(
            "int8",
            vec![T::Quantize {
                scheme: QuantScheme::Int8Row,
                block: 32,
                include_embeddings: false,
            }],
        ),
        d(
            "int4",
            vec![T::Quantize {
                scheme: QuantScheme::Int4Block,
                block: 32,
                include_embeddings: true,
            }],
        ),
        d(
            "prune-ft",
            vec![
                T::SubsetLayers {
                    every: 2,
                    offset: 1,
                },
                T::VocabPrune {
                    fraction: 0.2,
                    seed: 113,
                },
                ft(0.05, 114),
            ],
        ),
        d(
            "hidden-perm-int4",
            vec![
                T::PermuteHidden {
                    seed: 115,
                    sign_flips: true,
                },
                T::Quantize {
                    scheme: QuantScheme::Int4Block,
                    block: 32,
                    include_embeddings: false,
                },
            ],
        ),
        d(
            "marginal",
            vec![
                T::Cast {
                    dtype: "BF16".into(),
                    pattern: None,
                },
                T::Independent { seed: 116 },
            ],
        ),
        d(
            "renamed",
            vec![
                T::Rename {
                    from: "model.".into(),
                    to: "transformer.".into(),
                },
                T::Reshard { shards: 1 },
            ],
        ),
    ]);
    let mut c1 = base("cousin-1", Llama, 3);
    c1.transforms = vec![T::Graft {
        from: la.into(),
        pattern: "embed_tokens".into(),
        tokenizer: true,
    }];
    let mut c2 = base("cousin-2", Llama, 4);
    c2.transforms = vec![T::Graft {
        from: la.into(),
        pattern: "embed_tokens".into(),
        tokenizer: true,
    }];
    models.extend([c1, c2]);
    let g = |n: &str, ts: Vec<T>| derived(&format!("glm-a.{n}"), "glm-a", ts);
    models.extend([
        g("phi-names", vec![T::RenameArch { to: Phimoe }]),
        g("head-perm", vec![T::PermuteHeads { seed: 201 }]),
        g("expert-perm", vec![T::PermuteExperts { seed: 202 }]),
        g("trunc", vec![T::TruncateHeads { q_heads: 16 }]),
        derived(
            "solar-from-glm",
            "glm-a",
            vec![
                T::TruncateHeads { q_heads: 16 },
                T::InsertLayers {
                    after: vec![5],
                    mode: InsertMode::Duplicate,
                    seed: 0,
                },
                T::VocabShift { n: 64, seed: 203 },
                T::PermuteExperts { seed: 204 },
                T::ContinuedPretrain {
                    rel: 0.6,
                    drift: 0.3,
                    seed: 205,
                },
            ],
        ),
        derived(
            "phi-a.hidden-perm",
            "phi-a",
            vec![T::PermuteHidden {
                seed: 301,
                sign_flips: false,
            }],
        ),
        derived("bert-a.ft", "bert-a", vec![ft(0.02, 401)]),
    ]);
    let dp = |id: &str, b: &str, rel: &str, notes: &str| {
        pair(id, la, &format!("{la}.{b}"), Derived, rel, notes)
    };
    let pairs = vec![
        dp("d01-copy", "copy", "exact_copy", "byte-identical files"),
        dp(
            "d02-cast-f32",
            "f32",
            "reserialised_dtype",
            "BF16 -> F32, values identical",
        ),
        dp(
            "d03-reshard",
            "reshard",
            "reserialised_layout",
            "3 shards, shuffled tensor order",
        ),
        dp(
            "d04-renamed",
            "renamed",
            "reserialised_renamed",
            "model.* renamed transformer.*, one file",
        ),
        pair(
            "d05-rename-arch",
            "glm-a",
            "glm-a.phi-names",
            Derived,
            "reserialised_renamed",
            "GLM tensors under Phi-MoE names",
        ),
        dp("d06-fine-tune", "ft", "fine_tune", "1% relative noise"),
        dp(
            "d07-cpt",
            "cpt",
            "continued_pretrain",
            "30% noise, 20% drift",
        ),
        dp(
            "d08-cpt-heavy",
            "cpt-heavy",
            "continued_pretrain_heavy",
            "hard: 120% noise, 50% drift",
        ),
        dp(
            "d09-layer-insert",
            "dus",
            "layer_insertion",
            "layers 2 and 4 duplicated, then fine-tuned",
        ),
        dp(
            "d10-layer-insert-random",
            "insert-random",
            "layer_insertion",
            "a fresh layer after layer 1",
        ),
        dp(
            "d11-layer-remove",
            "remove",
            "layer_removal",
            "layers 1 and 4 removed",
        ),
        dp(
            "d12-layer-subset",
            "every2",
            "layer_subset",
            "every second layer",
        ),
        dp(
            "d13-layer-perm",
            "layer-perm",
            "layer_permutation",
            "layers shuffled",
        ),
        dp(
            "d14-hidden-perm",
            "hidden-perm",
            "hidden_permutation",
            "hard: hidden dims permuted with sign flips, function unchanged",
        ),
        pair(
            "d15-head-perm",
            "glm-a",
            "glm-a.head-perm",
            Derived,
            "head_permutation",
            "function unchanged",
        ),
        pair(
            "d16-expert-perm",
            "glm-a",
            "glm-a.expert-perm",
            Derived,
            "expert_permutation",
            "function unchanged",
        ),
        dp(
            "d17-vocab-shift",
            "vocab-shift",
            "vocab_shift",
            "ids shifted by 64",
        ),
        dp(
            "d18-vocab-perm",
            "vocab-perm",
            "vocab_permutation",
            "ids permuted; compare rows by token text",
        ),
        dp(
            "d19-vocab-prune",
            "vocab-prune",
            "vocab_pruning",
            "30% of merge tokens removed",
        ),
        dp(
            "d20-vocab-extend",
            "vocab-extend",
            "vocab_extension",
            "128 new tokens appended",
        ),
        pair(
            "d21-head-trunc",
            "glm-a",
            "glm-a.trunc",
            Derived,
            "head_truncation",
            "24 -> 16 q heads (prefix)",
        ),
        dp(
            "d22-norm-fold",
            "fold",
            "norm_folding",
            "norm gains rescaled, next matrices inverse-scaled; function unchanged up to BF16 rounding",
        ),
        dp(
            "d23-int8",
            "int8",
            "quantised_int8",
            "int8 per-row round trip",
        ),
        dp(
            "d24-int4",
            "int4",
            "quantised_int4",
            "hard: 4-bit blockwise round trip incl. embeddings",
        ),
        dp(
            "d25-prune-ft",
            "prune-ft",
            "pruned_fine_tuned",
            "hard: odd layers kept, 20% vocab pruned, 5% fine-tune",
        ),
        dp(
            "d26-hidden-perm-int4",
            "hidden-perm-int4",
            "hidden_permutation_quantised",
            "hard: permuted + sign flips + 4-bit",
        ),
        pair(
            "d27-cousin",
            la,
            "cousin-1",
            Derived,
            "shared_embeddings",
            "hard: only embed_tokens (and tokenizer) reused",
        ),
        pair(
            "d28-cousins",
            "cousin-1",
            "cousin-2",
            Derived,
            "cousins_shared_embeddings",
            "hard: common ancestor of the embeddings only",
        ),
        pair(
            "d29-solar-from-glm",
            "glm-a",
            "solar-from-glm",
            Derived,
            "initialised_from",
            "hard: head truncation, layer insertion, vocab shift, expert permutation, continued pretraining",
        ),
        pair(
            "d30-phi-hidden-perm",
            "phi-a",
            "phi-a.hidden-perm",
            Derived,
            "hidden_permutation",
            "LayerNorm model, permutation without sign flips",
        ),
        pair(
            "d31-bert-ft",
            "bert-a",
            "bert-a.ft",
            Derived,
            "fine_tune",
            "encoder",
        ),
        pair(
            "d32-siblings",
            "llama-a.ft",
            "llama-a.cpt",
            Derived,
            "siblings",
            "common ancestor llama-a",
        ),
        pair(
            "i01-same-recipe-llama",
            la,
            "llama-b",
            Independent,
            "independent_same_recipe",
            "hard: identical recipe and tokenizer, different seed",
        ),
        pair(
            "i02-same-recipe-glm",
            "glm-a",
            "glm-b",
            Independent,
            "independent_same_recipe",
            "hard: identical recipe and tokenizer, different seed",
        ),
        pair(
            "i03-glm-vs-solar",
            "glm-a",
            "solar-a",
            Independent,
            "independent_different_arch",
            "the dispute's null: similar MoE layouts, no shared weights",
        ),
        pair(
            "i04-glm-vs-phi",
            "glm-a",
            "phi-a",
            Independent,
            "independent_control",
            "control",
        ),
        pair(
            "i05-solar-vs-phi",
            "solar-a",
            "phi-a",
            Independent,
            "independent_control",
            "control",
        ),
        pair(
            "i06-vs-derivative",
            "llama-b",
            "llama-a.ft",
            Independent,
            "independent_vs_derivative",
            "B is a fine-tune of an unrelated model",
        ),
        pair(
            "i07-same-marginals",
            la,
            "llama-a.marginal",
            Independent,
            "independent_same_marginals",
            "hard: every tensor's values shuffled (same distribution, no coordinates)",
        ),
        pair(
            "i08-solar-vs-glm-derivative",
            "solar-a",
            "solar-from-glm",
            Independent,
            "independent_vs_derivative",
            "Solar-shaped GLM derivative vs an independent Solar",
        ),
        pair(
            "i09-vs-cousin",
            "llama-b",
            "cousin-1",
            Independent,
            "independent_same_recipe",
            "cousin-1 shares embeddings with llama-a, not llama-b",
        ),
        pair(
            "i10-bert-vs-llama",
            "bert-a",
            la,
            Independent,
            "independent_different_arch",
            "encoder vs decoder",
        ),
        // More unrelated MoE and differently-headed pairs, so the expert and head-prefix rules
        // have enough independent pairs to be calibrated.
        pair(
            "i12-glm-b-vs-solar",
            "glm-b",
            "solar-a",
            Independent,
            "independent_different_arch",
            "similar MoE layouts, no shared weights",
        ),
        pair(
            "i13-glm-b-vs-phi",
            "glm-b",
            "phi-a",
            Independent,
            "independent_control",
            "control",
        ),
        pair(
            "i14-bert-vs-llama-b",
            "bert-a",
            "llama-b",
            Independent,
            "independent_different_arch",
            "encoder vs decoder",
        ),
    ];
    Spec {
        seed: opts.seed,
        hidden: opts.hidden,
        models,
        pairs,
    }
}

/// The adversarial suite (`audit eval --suite adversarial`): derived pairs hidden by
/// function-preserving reparameterisations (gain folding, channel rescaling, head permutation,
/// residual rotation) and by SliceGPT slicing, alone and composed with fine-tuning and
/// quantisation; and independent pairs given the same transforms, so that obfuscation cannot
/// manufacture a match. Llama (dense) and Solar (MoE, no MTP) shapes; small enough to evaluate
/// in seconds.
pub fn adversarial_spec(opts: &SuiteOptions) -> Spec {
    use ArchKind::*;
    use Label::*;
    let ft = |seed: u64| T::FineTune { rel: 0.01, seed };
    let rot = |seed: u64| T::RotateHidden { seed };
    let rescale = |seed: u64| T::FoldNorm { spread: 0.5, seed };
    let heads = |seed: u64| T::PermuteHeads { seed };
    let slice = |fraction: f64| T::SliceHidden {
        fraction,
        basis: super::obfuscate::SliceBasis::Pca,
        seed: 0,
    };
    let int8 = T::Quantize {
        scheme: QuantScheme::Int8Row,
        block: 32,
        include_embeddings: false,
    };
    let int4 = T::Quantize {
        scheme: QuantScheme::Int4Block,
        block: 32,
        include_embeddings: false,
    };
    // (suffix, transforms, relation, notes) applied to both llama-a (derived) and llama-b
    let variants: Vec<(&str, Vec<T>, &str, &str)> = vec![
        (
            "fold",
            vec![T::FoldGains],
            "gain_folding",
            "gains folded into readers, head untied",
        ),
        (
            "rescale-heads",
            vec![rescale(501), heads(502)],
            "rescaling_head_permutation",
            "channels rescaled between norms and readers, heads permuted within KV groups",
        ),
        (
            "rotate",
            vec![rot(503)],
            "rotation",
            "residual stream rotated (gains folded first)",
        ),
        (
            "rotate-ft",
            vec![rot(504), ft(505)],
            "rotation_fine_tune",
            "rotated, then 1% fine-tune noise",
        ),
        (
            "rotate-int8",
            vec![rot(506), int8.clone()],
            "rotation_quantised_int8",
            "rotated, then int8 round trip",
        ),
        (
            "rotate-int4",
            vec![rot(507), int4],
            "rotation_quantised_int4",
            "rotated, then 4-bit round trip",
        ),
        (
            "slice10",
            vec![slice(0.1)],
            "slicing",
            "SliceGPT: 10% of residual dims deleted (PCA)",
        ),
        (
            "slice25-ft",
            vec![slice(0.25), ft(508)],
            "slicing_fine_tune",
            "SliceGPT 25%, then 1% fine-tune noise",
        ),
        (
            "all",
            vec![rescale(509), heads(510), rot(511), ft(512), int8],
            "all_obfuscations",
            "rescaled, heads permuted, rotated, fine-tuned, int8",
        ),
    ];
    let mut models = vec![
        base("llama-a", Llama, 1),
        base("llama-b", Llama, 2),
        base("solar-a", SolarOpen, 21),
        base("solar-b", SolarOpen, 22),
    ];
    let mut pairs = Vec::new();
    for (k, (suffix, ts, relation, notes)) in variants.iter().enumerate() {
        for (src, label) in [("llama-a", Derived), ("llama-b", Independent)] {
            models.push(derived(&format!("{src}.{suffix}"), src, ts.clone()));
            let (prefix, rel) = match label {
                Derived => ("d", relation.to_string()),
                Independent => ("i", format!("independent_{relation}")),
            };
            pairs.push(pair(
                &format!("{prefix}{:02}-{suffix}", k + 1),
                "llama-a",
                &format!("{src}.{suffix}"),
                label,
                &rel,
                notes,
            ));
        }
    }
    let moe = vec![
        rot(601),
        heads(602),
        T::PermuteExperts { seed: 603 },
        ft(604),
    ];
    for (src, label, id, rel) in [
        ("solar-a", Derived, "d10-moe-rotate", "rotation_moe"),
        (
            "solar-b",
            Independent,
            "i10-moe-rotate",
            "independent_rotation_moe",
        ),
    ] {
        models.push(derived(&format!("{src}.rotate"), src, moe.clone()));
        pairs.push(pair(
            id,
            "solar-a",
            &format!("{src}.rotate"),
            label,
            rel,
            "MoE: rotated, heads and experts permuted, fine-tuned",
        ));
    }
    pairs.push(pair(
        "i11-both-rotated",
        "llama-a.rotate",
        "llama-b.rotate",
        Independent,
        "independent_both_rotated",
        "two unrelated models, each rotated",
    ));
    for (id, a, b, rel, notes) in [
        (
            "i12-moe-same-recipe",
            "solar-a",
            "solar-b",
            "independent_same_recipe_moe",
            "hard: identical MoE recipe, different seed",
        ),
        (
            "i13-moe-both-rotated",
            "solar-a.rotate",
            "solar-b.rotate",
            "independent_both_rotated_moe",
            "two unrelated MoE models, each rotated with experts permuted",
        ),
        (
            "i14-moe-rotate-other",
            "solar-b",
            "solar-a.rotate",
            "independent_rotation_moe",
            "MoE: an unrelated model against the other's obfuscated derivative",
        ),
    ] {
        pairs.push(pair(id, a, b, Independent, rel, notes));
    }
    Spec {
        seed: opts.seed,
        hidden: opts.hidden,
        models,
        pairs,
    }
}
