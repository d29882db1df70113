//! What a verdict records (results.json's `decision`): the verdict, each rule's evidence and
//! calibration, what was examined and the error bound.

use serde::{Deserialize, Serialize};

use crate::calibration::{PairKind, Scale};
use crate::experiments::round9;
use crate::rubric::Strength;

/// The audit's conclusion about A and B.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum Verdict {
    /// Strong rules accuse from at least the rubric's number of groups.
    #[serde(rename = "DERIVED")]
    Derived,
    /// Strong rules accuse from fewer groups than DERIVED takes.
    #[serde(rename = "LIKELY DERIVED")]
    LikelyDerived,
    /// Signals beyond the unrelated range but no accusation, or too little examined to acquit.
    #[serde(rename = "INCONCLUSIVE")]
    Inconclusive,
    /// Nothing examined exceeds what unrelated pairs reach, and enough was examined.
    #[serde(rename = "NOT SUPPORTED BY WEIGHTS")]
    NotSupported,
}

impl Verdict {
    /// The verdict as written in results and reports (`LIKELY DERIVED`, …).
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Derived => "DERIVED",
            Verdict::LikelyDerived => "LIKELY DERIVED",
            Verdict::Inconclusive => "INCONCLUSIVE",
            Verdict::NotSupported => "NOT SUPPORTED BY WEIGHTS",
        }
    }

    /// True for DERIVED and LIKELY DERIVED.
    pub fn is_derived(self) -> bool {
        matches!(self, Verdict::Derived | Verdict::LikelyDerived)
    }
}

/// Where a rule's value stands against the calibration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// The experiment did not produce a value for the pair.
    NotApplicable,
    /// Within what unrelated pairs reach (or short of the rubric's floor).
    WithinUnrelated,
    /// Beyond the unrelated range, too weak to accuse.
    BeyondUnrelated,
    /// Beyond the rule's calibrated threshold (strong rules only).
    Accuses,
}

impl Level {
    /// The level as results.json names it (`beyond_unrelated`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::NotApplicable => "not_applicable",
            Level::WithinUnrelated => "within_unrelated",
            Level::BeyondUnrelated => "beyond_unrelated",
            Level::Accuses => "accuses",
        }
    }
}

/// What the calibration says about one rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleCalibration {
    /// `calibrated`, or why not.
    pub status: String,
    /// True when the bank holds enough independent pairs to set this rule's thresholds.
    pub calibrated: bool,
    /// How the value becomes a score (the value, or −log10 for p-values).
    pub scale: Scale,
    /// Independent pairs behind the threshold (and how many of them are real checkpoints).
    pub independent_pairs: usize,
    /// Of those, pairs of real checkpoints.
    pub independent_real: usize,
    /// Derived pairs with a value for this rule.
    pub derived_pairs: usize,
    /// Spread of the independent pairs' scores (in score units: −log10 for p-values).
    pub independent_mean: f64,
    /// Sample standard deviation of the independent scores.
    pub independent_sd: f64,
    /// Largest independent score.
    pub independent_max: f64,
    /// Every independent and every derived pair's score, ascending (score units), so a
    /// reader sees the distributions and not only their summary.
    pub independent_scores: Vec<f64>,
    /// Every derived pair's score, ascending (score units).
    pub derived_scores: Vec<f64>,
    /// The rate allotted to this rule: its share of the family rate (strong rules) or the
    /// beyond-unrelated rate.
    pub target_rate: f64,
    /// The thresholds in the value's own units.
    pub threshold: f64,
    /// The value past which the rule finds a pair beyond the unrelated range.
    pub beyond_unrelated_threshold: f64,
    /// Leave-one-model-out: independent pairs beyond a threshold computed without their
    /// models, of how many, and the exact upper bound of that rate.
    pub lomo_false_positives: usize,
    /// Independent pairs in that leave-one-model-out count.
    pub lomo_independent: usize,
    /// Exact (Clopper–Pearson) upper bound of the leave-one-model-out false-positive rate.
    pub false_positive_upper: f64,
    /// Leave-one-model-out: derived pairs beyond the threshold, of how many.
    pub lomo_detected: usize,
    /// Derived pairs in that leave-one-model-out count.
    pub lomo_derived: usize,
    /// Of the independent pairs behind the threshold, those of the audited pair's widths and
    /// of its model types (`None` when A's and B's configs do not state them).
    pub independent_same_widths: Option<usize>,
    /// Of those independent pairs, those of the audited pair's model types.
    pub independent_same_model_types: Option<usize>,
    /// The audited pair's score against the bank: Cantelli's bound and the conformal
    /// p-value (1 + independent pairs at or above) / (n + 1).
    pub tail_p: f64,
    /// Conformal p-value of the audited pair's score against the independent pairs.
    pub conformal_p: f64,
}

/// One rule's outcome for the audited pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The rule's id.
    pub rule: String,
    /// The experiment it reads.
    pub experiment: String,
    /// The rule's group (correlated rules share one).
    pub group: String,
    /// The rule's strength in the rubric.
    pub strength: Strength,
    /// Whether the rule counts toward the verdict: its value is beyond the unrelated range
    /// (accusing, for a strong rule past its threshold) and no control reaches the same.
    pub fired: bool,
    /// Where the value stands against the calibration.
    pub level: Level,
    /// The audited pair's aggregated value (NaN: the experiment did not apply).
    pub value: f64,
    /// The comparison, `<`, `<=`, `>` or `>=`.
    pub op: String,
    /// The threshold the value had to pass for the rule to fire (calibrated when the rule
    /// is; otherwise the rubric's floor).
    pub threshold: f64,
    /// The rubric's own threshold: the value must at least beat its null by this.
    pub floor: f64,
    /// The null beside it (aggregated the same way), when the rule names one.
    pub null: Option<f64>,
    /// How much the value had to beat its null by, when the rule says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub null_margin: Option<f64>,
    /// Control pairs that pass the same test (they veto the rule when it says so).
    pub controls_passing: Vec<String>,
    /// Control pairs the rule could not be evaluated on (no value): reported, not ignored.
    pub controls_not_evaluated: Vec<String>,
    /// What the calibration says about the rule.
    pub calibration: RuleCalibration,
    /// The rubric's words for what a firing rule means.
    pub explain: String,
}

/// One decisive experiment and how much of the pair it examined.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Examined {
    /// The experiment's id.
    pub experiment: String,
    /// Units compared for A~B (layers or tensor windows, as the rubric names them).
    pub units: f64,
    /// `ok`, or what the experiment said when it could not run.
    pub status: String,
}

/// What the verdict examined: the decisive experiments and how much each compared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    /// Each decisive experiment of the rubric, with its units and status.
    pub decisive: Vec<Examined>,
    /// Whether enough was examined to acquit.
    pub assessed: bool,
    /// One sentence: what was examined, or why the verdict cannot acquit.
    pub statement: String,
}

/// The leave-one-model-out outcome of the bank under this rubric and calibration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BankValidation {
    /// Independent pairs of the bank judged.
    pub independent_pairs: usize,
    /// Of those, pairs accused (leave-one-model-out).
    pub independent_accused: usize,
    /// Exact upper bound (at `confidence`) of the rate at which unrelated pairs are accused.
    pub accused_upper: f64,
    /// Independent pairs of real checkpoints.
    pub real_independent_pairs: usize,
    /// Of those, pairs accused.
    pub real_independent_accused: usize,
    /// Derived pairs of the bank judged.
    pub derived_pairs: usize,
    /// Of those, pairs found DERIVED or LIKELY DERIVED.
    pub derived_detected: usize,
    /// Derived pairs of real checkpoints.
    pub real_derived_pairs: usize,
    /// Of those, pairs detected.
    pub real_derived_detected: usize,
    /// Confidence of the exact bounds (the rubric's).
    pub confidence: f64,
}

/// The verdict's own false-positive statement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBound {
    /// The family-wise rate at which an unrelated pair is accused, under the tail model.
    pub family_rate: f64,
    /// Groups of strong rules the family rate is split over.
    pub strong_groups: Vec<String>,
    /// The bank's leave-one-model-out outcome.
    pub validation: BankValidation,
    /// The bound stated with the verdict: the larger of the tail model's rate and the
    /// bank's exact upper bound.
    pub false_positive_bound: f64,
    /// The bound in words, as reports print it.
    pub statement: String,
}

/// The verdict with its reasons, error bound, coverage and evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The verdict.
    pub verdict: Verdict,
    /// Version of the rubric it was decided by.
    pub rubric_version: String,
    /// Version of the calibration behind the thresholds.
    pub calibration_version: String,
    /// Why the verdict is what it is, in a sentence or two.
    pub reasons: Vec<String>,
    /// The verdict's false-positive bound.
    pub error: ErrorBound,
    /// What the verdict examined.
    pub coverage: Coverage,
    /// The audited pair's kind, and how many calibration pairs of that kind the strong rules
    /// rest on.
    pub kind: PairKind,
    /// The pair's kind in words, with the calibration pairs of that kind.
    pub kind_statement: String,
    /// What DERIVED means and cannot tell apart.
    pub meaning: String,
    /// Every rule's outcome, in the rubric's order.
    pub evidence: Vec<Evidence>,
}

impl RuleCalibration {
    /// A score of this rule (mean, max) in the value's own units.
    pub fn scale_value(&self, score: f64) -> f64 {
        round9(self.scale.value(score))
    }
}
