//! The calibration: what pairs of known lineage — real checkpoints above all, and the lab's
//! synthetic families — score on every rule of the rubric. Data, like the rubric: versioned,
//! hashed into every result, carried in every bundle, re-checked by `verify`.
//!
//! A threshold is not a bare number: it is where the calibration's *independent* pairs stop,
//! at a stated false-positive rate. Three things are computed from the bank, all of them
//! deterministic functions of (rubric, calibration):
//!
//! - per rule, the spread of the independent pairs' scores and the threshold that follows
//!   from it ([`RuleBank`]): beyond every independent value and beyond Cantelli's one-sided
//!   Chebyshev bound at the rule's allotted rate (a tail model that assumes no distribution
//!   shape, so a small bank gives a conservative threshold, never an optimistic one);
//! - per rule, the rate measured by leave-one-model-out: how many independent pairs exceed a
//!   threshold computed without their two models, with an exact Clopper–Pearson bound;
//! - for the verdict, the same leave-one-model-out count of independent pairs that would be
//!   accused ([`BankValidation`]).
//!
//! Scores are oriented so that larger means more evidence: a rule that asks `value < t`
//! (p-values) is scored as −log10(value).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::experiments::e0_config::Result0;
use crate::stats;

/// The calibration shipped with the tool (rebuilt by `audit calibrate`, see the README).
pub const DEFAULT_CALIBRATION: &str = include_str!("../calibration/default.json");

/// The schema this code writes and reads.
pub const FORMAT: &str = "weight-audit-calibration/1";

/// Largest calibration file accepted (the shipped one is a few hundred kB).
pub const MAX_CALIBRATION_BYTES: u64 = 16 << 20;

/// What is known of a calibration pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truth {
    /// B is known to derive from A (or both from one parent).
    Derived,
    /// The two models are known to be unrelated.
    Independent,
}

/// Where a calibration model comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A real pretrained checkpoint (pinned by package==version or Hub commit).
    Real,
    /// A model the lab makes (pinned by its spec and seed).
    Synthetic,
}

/// One model of the bank.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankModel {
    /// The model's id, referred to by the pairs.
    pub id: String,
    /// A real checkpoint or a lab-made model.
    pub origin: Origin,
    /// How to get it again: `package==version (registry) path`, `hf:org/name@commit`, or the
    /// lab suite and model it comes from.
    pub pin: String,
    /// sha256 over the sorted (relative path, size, sha256) of the files read.
    pub sha256: String,
}

/// One labelled pair of the bank.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankPair {
    /// The pair's id (`<suite>/<pair>`).
    pub id: String,
    /// Model A's id (one of `models`).
    pub a: String,
    /// Model B's id (one of `models`).
    pub b: String,
    /// Whether B derives from A.
    pub truth: Truth,
    /// How the pair was made (`same_name`, `independent_real`, `requant_q8_0`, …).
    pub relation: String,
    /// What the two configs say the models are, so an audited pair can be told how many
    /// calibration pairs are of its own kind.
    #[serde(default)]
    pub kind: PairKind,
}

/// The kind of a pair as the two config.json files state it: the residual widths and the
/// model types, each pair of values in ascending order (so A~B and B~A are one kind). `None`
/// where a config does not say.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairKind {
    /// The two residual widths, ascending.
    pub widths: Option<[u64; 2]>,
    /// The two `model_type`s, ascending.
    pub model_types: Option<[String; 2]>,
}

impl PairKind {
    /// The kind of the audited pair (A~B) from E0's config comparison in `experiments` (the
    /// values as E0 wrote them: each side's JSON text).
    pub fn of(experiments: &BTreeMap<String, serde_json::Value>) -> PairKind {
        let e0: Option<Result0> = experiments
            .get("e0")
            .and_then(|e| crate::experiments::readback::from_value(e).ok());
        let Some(pair) = e0.as_ref().and_then(|e| e.pairs.iter().find(|p| p.primary)) else {
            return PairKind::default();
        };
        PairKind::from_lookup(|side, k| {
            let field = pair.config.iter().find(|e| e.key == k)?;
            let text = if side == "a" { &field.a } else { &field.b };
            text.as_deref()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        })
    }

    /// The kind of a pair from its two config.json objects (what E0 compares).
    pub fn from_configs(a: Option<&serde_json::Value>, b: Option<&serde_json::Value>) -> PairKind {
        PairKind::from_lookup(|side, k| if side == "a" { a } else { b }?.get(k).cloned())
    }

    /// `get(side, key)`: side `a`'s or `b`'s value of a top-level config key.
    fn from_lookup(get: impl Fn(&str, &str) -> Option<serde_json::Value>) -> PairKind {
        let width = |side: &str| {
            ["hidden_size", "d_model", "n_embd", "dim"]
                .iter()
                .find_map(|k| get(side, k)?.as_u64())
        };
        let model_type = |side: &str| get(side, "model_type")?.as_str().map(str::to_string);
        PairKind {
            widths: width("a").zip(width("b")).map(|(a, b)| sorted([a, b])),
            model_types: model_type("a")
                .zip(model_type("b"))
                .map(|(a, b)| sorted([a, b])),
        }
    }

    /// "widths 768/768, model types bert/mpnet", or what is unknown.
    pub fn describe(&self) -> String {
        let widths = self.widths.map_or("widths unknown".to_string(), |[a, b]| {
            format!("widths {a}/{b}")
        });
        let types = self
            .model_types
            .as_ref()
            .map_or("model types unknown".to_string(), |[a, b]| {
                format!("model types {a}/{b}")
            });
        format!("{widths}, {types}")
    }
}

fn sorted<T: Ord>(mut pair: [T; 2]) -> [T; 2] {
    pair.sort();
    pair
}

/// Every pair's value of one rule (None: the rule did not apply to that pair).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleValues {
    /// The rule's id in the rubric.
    pub rule: String,
    /// What the value was read from ([`crate::rubric::Rule::selector`]): a rule whose
    /// selector changed since is not calibrated by these values.
    pub selector: String,
    /// The rule's value for each pair, in the order of `pairs` (`None`: did not apply).
    pub values: Vec<Option<f64>>,
}

/// The calibration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Always `FORMAT`.
    pub format: String,
    /// The calibration's version, recorded with every verdict.
    pub version: String,
    /// Every model the pairs use.
    pub models: Vec<BankModel>,
    /// The labelled pairs.
    pub pairs: Vec<BankPair>,
    /// Each rule's values over the pairs.
    pub rules: Vec<RuleValues>,
}

impl Calibration {
    /// Parses and validates a calibration, with errors that name the pair or rule.
    pub fn parse(text: &str) -> Result<Calibration> {
        ensure!(
            text.len() as u64 <= MAX_CALIBRATION_BYTES,
            "calibration is {} bytes, more than the {MAX_CALIBRATION_BYTES} accepted",
            text.len()
        );
        let c: Calibration =
            serde_json::from_str(text).context("calibration is not JSON of the expected shape")?;
        ensure!(
            c.format == FORMAT,
            "calibration format {:?} is not {FORMAT:?}",
            c.format
        );
        let mut models = BTreeSet::new();
        for m in &c.models {
            ensure!(
                models.insert(m.id.as_str()),
                "calibration: model {:?} listed twice",
                m.id
            );
        }
        let mut pairs = BTreeSet::new();
        for p in &c.pairs {
            ensure!(
                pairs.insert(p.id.as_str()),
                "calibration: pair {:?} listed twice",
                p.id
            );
            for m in [&p.a, &p.b] {
                ensure!(
                    models.contains(m.as_str()),
                    "calibration pair {:?}: model {m:?} is not in the models list",
                    p.id
                );
            }
            ensure!(
                p.a != p.b,
                "calibration pair {:?} compares a model with itself",
                p.id
            );
        }
        let mut rules = BTreeSet::new();
        for r in &c.rules {
            ensure!(
                rules.insert(r.rule.as_str()),
                "calibration: rule {:?} listed twice",
                r.rule
            );
            ensure!(
                r.values.len() == c.pairs.len(),
                "calibration rule {:?} has {} values for {} pairs",
                r.rule,
                r.values.len(),
                c.pairs.len()
            );
            if let Some(i) = r
                .values
                .iter()
                .position(|v| v.is_some_and(|x| !x.is_finite()))
            {
                bail!(
                    "calibration rule {:?}: the value of pair {:?} is not finite",
                    r.rule,
                    c.pairs[i].id
                );
            }
        }
        Ok(c)
    }

    /// The calibration shipped with the tool.
    pub fn default_calibration() -> Result<Calibration> {
        Calibration::parse(DEFAULT_CALIBRATION).context("the built-in calibration")
    }

    /// Deterministic JSON text (what gets hashed and bundled).
    pub fn to_text(&self) -> Result<String> {
        let mut s = serde_json::to_string_pretty(self)?;
        s.push('\n');
        Ok(s)
    }

    /// The model with id `id`, if any.
    pub fn model(&self, id: &str) -> Option<&BankModel> {
        self.models.iter().find(|m| m.id == id)
    }

    /// Whether pair `i` is made of real checkpoints only.
    pub fn is_real(&self, i: usize) -> bool {
        let p = &self.pairs[i];
        [&p.a, &p.b]
            .iter()
            .all(|m| self.model(m).is_some_and(|m| m.origin == Origin::Real))
    }

    /// The values recorded for rule `rule`, if any.
    pub fn values_of(&self, rule: &str) -> Option<&RuleValues> {
        self.rules.iter().find(|r| r.rule == rule)
    }
}

/// sha256 of the calibration text, recorded with every verdict.
pub fn calibration_hash(text: &str) -> String {
    crate::rubric::rubric_hash(text)
}

/// How a rule's value becomes a score where larger means more evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// `value > t` rules: the value itself.
    Value,
    /// `value < t` rules (p-values): −log10(value).
    NegLog10,
}

impl Scale {
    /// The scale for a rule's comparison: `NegLog10` for `<`/`<=`, else `Value`.
    pub fn for_op(op: &str) -> Scale {
        if op.starts_with('<') {
            Scale::NegLog10
        } else {
            Scale::Value
        }
    }

    /// The score of `value` on this scale (NaN stays NaN; p-values floored at 1e-300).
    pub fn score(self, value: f64) -> f64 {
        if value.is_nan() {
            return f64::NAN;
        }
        match self {
            Scale::Value => value,
            Scale::NegLog10 => -(value.max(1e-300)).log10(),
        }
    }

    /// The value a score stands for (inverse of `score`).
    pub fn value(self, score: f64) -> f64 {
        match self {
            Scale::Value => score,
            Scale::NegLog10 => 10f64.powf(-score),
        }
    }
}

/// The independent and derived scores of one rule, without the pairs that touch `excluded`
/// models (leave-one-model-out), split by truth.
pub fn bank_scores(
    cal: &Calibration,
    values: &RuleValues,
    scale: Scale,
    excluded: &[&str],
) -> (Vec<f64>, Vec<f64>) {
    let (mut independent, mut derived) = (Vec::new(), Vec::new());
    for (p, v) in cal.pairs.iter().zip(&values.values) {
        let Some(v) = v else { continue };
        if excluded.contains(&p.a.as_str()) || excluded.contains(&p.b.as_str()) {
            continue;
        }
        match p.truth {
            Truth::Independent => independent.push(scale.score(*v)),
            Truth::Derived => derived.push(scale.score(*v)),
        }
    }
    (independent, derived)
}

/// Where a rule's independent scores stop, and the thresholds that follow.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Spread {
    /// Number of independent scores.
    pub n: usize,
    /// Their mean (NaN when none).
    pub mean: f64,
    /// Their sample standard deviation (0 when fewer than two).
    pub sd: f64,
    /// The largest (NaN when none).
    pub max: f64,
}

impl Spread {
    /// The spread of the independent pairs' scores of one rule.
    pub fn of(independent: &[f64]) -> Spread {
        let sd = stats::sample_sd(independent);
        Spread {
            n: independent.len(),
            mean: stats::mean(independent),
            sd: if sd.is_nan() { 0.0 } else { sd },
            max: independent.iter().copied().fold(f64::NAN, f64::max),
        }
    }

    /// The score a pair must exceed to be beyond this spread at `rate`: above every
    /// independent value and above Cantelli's bound (mean + √(1/rate − 1)·sd).
    pub fn threshold(&self, rate: f64) -> f64 {
        let tail = self.mean + stats::cantelli_k(rate) * self.sd;
        if self.max.is_nan() {
            tail
        } else {
            tail.max(self.max)
        }
    }

    /// Cantelli's bound on the chance an independent pair scores at least `score`.
    pub fn tail(&self, score: f64) -> f64 {
        stats::cantelli_tail(score, self.mean, self.sd)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_pair_kind_reads_alike_from_configs_and_from_e0() {
        let a = serde_json::json!({"hidden_size": 768, "model_type": "bert"});
        let b = serde_json::json!({"d_model": 512, "model_type": "t5"});
        let from_configs = PairKind::from_configs(Some(&b), Some(&a));
        assert_eq!(from_configs.widths, Some([512, 768]));
        assert_eq!(
            from_configs.model_types,
            Some(["bert".to_string(), "t5".to_string()])
        );
        // E0 writes each side's value as JSON text, one row per key.
        let e0 = Result0 {
            params: Default::default(),
            pairs: vec![crate::experiments::e0_config::test_pair(
                "A~B",
                true,
                &[
                    ("d_model", "null", "512"),
                    ("hidden_size", "768", "null"),
                    ("model_type", "\"bert\"", "\"t5\""),
                ],
            )],
        };
        let experiments = BTreeMap::from([("e0".to_string(), serde_json::to_value(&e0).unwrap())]);
        assert_eq!(PairKind::of(&experiments), from_configs);
        // A side without a width leaves the widths unknown.
        let c = serde_json::json!({"model_type": "x"});
        assert_eq!(PairKind::from_configs(Some(&a), Some(&c)).widths, None);
        assert_eq!(PairKind::from_configs(None, Some(&c)), PairKind::default());
    }

    use super::*;

    pub fn bank(values: &[(&str, &str, Truth, Option<f64>)]) -> Calibration {
        let mut models: Vec<String> = values
            .iter()
            .flat_map(|(a, b, _, _)| [a.to_string(), b.to_string()])
            .collect();
        models.sort();
        models.dedup();
        Calibration {
            format: FORMAT.into(),
            version: "test".into(),
            models: models
                .iter()
                .map(|m| BankModel {
                    id: m.clone(),
                    origin: Origin::Synthetic,
                    pin: "test".into(),
                    sha256: "0".repeat(64),
                })
                .collect(),
            pairs: values
                .iter()
                .enumerate()
                .map(|(i, (a, b, t, _))| BankPair {
                    id: format!("p{i}"),
                    a: a.to_string(),
                    b: b.to_string(),
                    truth: *t,
                    relation: "test".into(),
                    kind: PairKind::default(),
                })
                .collect(),
            rules: vec![RuleValues {
                rule: "r".into(),
                selector: "s".into(),
                values: values.iter().map(|v| v.3).collect(),
            }],
        }
    }

    #[test]
    fn scores_leave_out_the_pairs_of_excluded_models() {
        use Truth::*;
        let c = bank(&[
            ("a", "b", Independent, Some(1.0)),
            ("a", "c", Independent, Some(2.0)),
            ("c", "d", Independent, Some(3.0)),
            ("d", "e", Derived, Some(9.0)),
            ("b", "e", Independent, None),
        ]);
        let r = &c.rules[0];
        let (ind, der) = bank_scores(&c, r, Scale::Value, &[]);
        assert_eq!((ind, der), (vec![1.0, 2.0, 3.0], vec![9.0]));
        let (ind, der) = bank_scores(&c, r, Scale::Value, &["a", "e"]);
        assert_eq!((ind, der), (vec![3.0], vec![]));
        let (ind, _) = bank_scores(&c, r, Scale::NegLog10, &["c"]);
        assert_eq!(ind, vec![0.0]);
    }

    #[test]
    fn the_threshold_is_beyond_every_independent_value_and_the_tail_bound() {
        let s = Spread::of(&[1.0, 2.0, 3.0]);
        assert_eq!((s.n, s.mean, s.sd, s.max), (3, 2.0, 1.0, 3.0));
        // Cantelli at 0.2 is mean + 2 sd = 4 > max 3.
        assert!((s.threshold(0.2) - 4.0).abs() < 1e-12);
        // At 0.5 the tail gives mean + 1 sd = 3 = max.
        assert!((s.threshold(0.5) - 3.0).abs() < 1e-12);
        assert!((s.tail(4.0) - 0.2).abs() < 1e-12);
        // No spread: the largest value is the threshold.
        let flat = Spread::of(&[0.0, 0.0]);
        assert_eq!(flat.threshold(0.001), 0.0);
    }

    #[test]
    fn scales_round_trip() {
        let s = Scale::for_op("<");
        assert_eq!(s, Scale::NegLog10);
        assert!((s.score(1e-6) - 6.0).abs() < 1e-12);
        assert!((s.value(6.0) - 1e-6).abs() < 1e-18);
        assert_eq!(Scale::for_op(">=").score(2.5), 2.5);
        assert_eq!(Scale::NegLog10.score(0.0), 300.0);
        // A missing p-value is not the strongest one.
        assert!(Scale::NegLog10.score(f64::NAN).is_nan());
    }

    #[test]
    fn hostile_calibrations_are_refused_with_the_item_named() {
        use Truth::*;
        let good = bank(&[("a", "b", Independent, Some(1.0))]);
        let text = good.to_text().unwrap();
        assert_eq!(Calibration::parse(&text).unwrap(), good);
        let err = |c: &Calibration| {
            format!(
                "{:#}",
                Calibration::parse(&c.to_text().unwrap()).unwrap_err()
            )
        };
        let mut c = good.clone();
        c.rules[0].values.push(Some(2.0));
        assert!(err(&c).contains("\"r\""), "{}", err(&c));
        let mut c = good.clone();
        c.pairs[0].b = "zz".into();
        assert!(err(&c).contains("\"zz\""));
        let mut c = good.clone();
        c.format = "other".into();
        assert!(err(&c).contains("format"));
        assert!(Calibration::parse("{").is_err());
        assert!(Calibration::parse(&text.replace("\"values\"", "\"valeurs\"")).is_err());
        // A non-finite value cannot be written as JSON, and null means "not applicable".
        assert!(Calibration::parse(&text.replace("1.0", "1e999")).is_err());
    }
}
