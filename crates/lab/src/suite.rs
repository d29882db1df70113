//! The built-in evaluation suite: labelled model pairs covering every transform, including hard
//! cases (heavy continued training, pruning + fine-tune, permuted hidden dims, quantised copies,
//! cousins sharing only embeddings, independent pairs with identical recipes). Its models and
//! pairs are data, in `suite.toml` next to this file; this file reads it and builds the
//! adversarial suite, whose models are generated from a table of obfuscations.

use super::arch::ArchKind;
use super::spec::{Label, ModelSpec, PairSpec, Spec, parse_spec};
use super::transform::{QuantScheme, TransformSpec as T};

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

/// The suite's models and pairs as a TOML spec ([`crate::spec`]'s format), without `seed` and
/// `hidden`, which come from the options.
const SUITE_TOML: &str = include_str!("suite.toml");

/// The suite as a spec (also written next to the models as `spec.toml`).
pub fn suite_spec(opts: &SuiteOptions) -> Spec {
    // The text is compiled in and `tests::suite_toml_parses` parses it, so a failure here is a
    // bug in this crate, not bad input.
    let spec = parse_spec(SUITE_TOML).expect("the built-in suite.toml is a valid spec");
    Spec {
        seed: opts.seed,
        hidden: opts.hidden,
        ..spec
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
    let variants = adversarial_variants();
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

/// 1% fine-tune noise (the adversarial suite's).
fn ft(seed: u64) -> T {
    T::FineTune { rel: 0.01, seed }
}

/// Residual rotation (gains folded first).
fn rot(seed: u64) -> T {
    T::RotateHidden { seed }
}

/// Channel rescaling between the norms and their readers.
fn rescale(seed: u64) -> T {
    T::FoldNorm { spread: 0.5, seed }
}

/// Head permutation within the KV groups.
fn heads(seed: u64) -> T {
    T::PermuteHeads { seed }
}

/// SliceGPT slicing of `fraction` of the residual dims in the PCA basis.
fn slice(fraction: f64) -> T {
    T::SliceHidden {
        fraction,
        basis: super::obfuscate::SliceBasis::Pca,
        seed: 0,
    }
}

/// One obfuscation of the adversarial suite: (suffix, transforms, relation, notes).
type Variant = (&'static str, Vec<T>, &'static str, &'static str);

/// The obfuscations the adversarial suite applies to both llama-a (derived pairs) and llama-b
/// (independent pairs).
fn adversarial_variants() -> Vec<Variant> {
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
    vec![
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
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn suite_toml_parses_and_pairs_name_its_models() {
        let spec = parse_spec(SUITE_TOML).unwrap();
        // `seed` and `hidden` come from the options, so the file must not set them.
        assert_eq!((spec.seed, spec.hidden), (0, 256));
        let names: BTreeSet<&str> = spec.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names.len(), spec.models.len(), "model names are unique");
        for p in &spec.pairs {
            assert!(
                names.contains(p.a.as_str()) && names.contains(p.b.as_str()),
                "{}",
                p.id
            );
        }
        let opts = SuiteOptions {
            hidden: 128,
            seed: 7,
        };
        let s = suite_spec(&opts);
        assert_eq!((s.seed, s.hidden), (7, 128));
        assert_eq!(s.models, spec.models);
    }
}
