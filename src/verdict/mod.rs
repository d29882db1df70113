//! Rubric + calibration → evidence → verdict with its error bound.
//!
//! Each rule's value for the audited pair is read as the rubric says ([`crate::rubric`]) and
//! placed against the calibration's independent pairs ([`crate::calibration`]):
//!
//! - **accuses** (strong rules only): beyond the rule's floor in the rubric, beyond every
//!   independent pair of the bank, and beyond Cantelli's bound at the rule's share of the
//!   family-wise false-positive rate. The family rate is split evenly over the groups of
//!   strong rules (correlated experiments share a group) and within a group over its rules:
//!   a Bonferroni split, valid whatever the dependence between rules, so the chance that an
//!   unrelated pair is accused by any rule is at most the family rate under the tail model;
//! - **beyond unrelated**: beyond the floor, every independent pair and Cantelli's bound at
//!   the (looser) beyond-unrelated rate. Such a signal makes a verdict INCONCLUSIVE at most;
//! - **within unrelated**: what unrelated pairs reach. It moves nothing.
//!
//! A rule with fewer independent calibration pairs than the rubric asks for says so and can
//! make a verdict INCONCLUSIVE at most. Controls keep their veto. A verdict acquits only what
//! it examined: without a decisive experiment that compared the layers, it is INCONCLUSIVE.

mod bank;
mod coverage;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::calibration::{
    BankPair, Calibration, PairKind, RuleValues, Scale, Spread, Truth, bank_scores,
};
use crate::experiments::round9;
use crate::rubric::{Rubric, Rule, Strength, evaluate_for};
use crate::stats;

pub use bank::{bank_verdicts, rule_lomo, validate_bank};
use coverage::coverage;

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

/// What DERIVED means, stated with every verdict.
pub const MEANING: &str = "DERIVED means shared parameter ancestry: some of B's weights descend from A's (or both from one source). The weights cannot tell the direction of descent, a common ancestor, a shared initialisation, or a shared third-party component (embeddings, tokenizer, a vision tower) apart. NOT SUPPORTED BY WEIGHTS means nothing examined exceeds what the calibration's unrelated pairs reach; it speaks only of what was examined.";

/// A rule's thresholds in score units, from the bank less the `excluded` models.
struct Thresholds {
    spread: Spread,
    independent: Vec<f64>,
    /// Independent pairs of real checkpoints among them.
    independent_real: usize,
    derived: Vec<f64>,
    accuse: f64,
    beyond: f64,
    calibrated: bool,
    status: String,
}

/// Finite scores, rounded and in ascending order.
fn sorted_scores(scores: &[f64]) -> Vec<f64> {
    let mut out: Vec<f64> = scores
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .map(round9)
        .collect();
    out.sort_by(f64::total_cmp);
    out
}

fn thresholds(
    rubric: &Rubric,
    cal: &Calibration,
    rule: &Rule,
    rate: f64,
    excluded: &[&str],
) -> Thresholds {
    let scale = Scale::for_op(&rule.op);
    let empty = || Thresholds {
        spread: Spread::of(&[]),
        independent: Vec::new(),
        independent_real: 0,
        derived: Vec::new(),
        accuse: f64::INFINITY,
        beyond: f64::INFINITY,
        calibrated: false,
        status: String::new(),
    };
    let Some(values) = cal.values_of(&rule.id) else {
        return Thresholds {
            status: "uncalibrated: the calibration has no values for this rule".into(),
            ..empty()
        };
    };
    if values.selector != rule.selector() {
        return Thresholds {
            status: "uncalibrated: the rule reads other values than the calibration recorded"
                .into(),
            ..empty()
        };
    }
    let (independent, derived) = bank_scores(cal, values, scale, excluded);
    let independent_real = behind_threshold(cal, values, excluded, |i, _| cal.is_real(i));
    let spread = Spread::of(&independent);
    let min = rubric.calibration.min_independent;
    if spread.n < min {
        return Thresholds {
            status: format!(
                "uncalibrated: {} independent pair(s) in the calibration, {min} needed",
                spread.n
            ),
            spread,
            independent,
            independent_real,
            derived,
            ..empty()
        };
    }
    Thresholds {
        accuse: spread.threshold(rate),
        beyond: spread.threshold(rubric.calibration.beyond_unrelated_rate),
        spread,
        independent,
        independent_real,
        derived,
        calibrated: true,
        status: "calibrated".into(),
    }
}

/// The rate allotted to each rule: strong rules share the family rate (split over their
/// groups, then over the rules of a group); others get the beyond-unrelated rate.
pub fn rule_rates(rubric: &Rubric) -> BTreeMap<String, f64> {
    let mut per_group: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rubric
        .rules
        .iter()
        .filter(|r| r.strength == Strength::Strong)
    {
        *per_group.entry(r.group()).or_default() += 1;
    }
    let groups = per_group.len().max(1) as f64;
    rubric
        .rules
        .iter()
        .map(|r| {
            let rate = if r.strength == Strength::Strong {
                rubric.calibration.family_rate / groups / per_group[r.group()] as f64
            } else {
                rubric.calibration.beyond_unrelated_rate
            };
            (r.id.clone(), rate)
        })
        .collect()
}

/// The level a score reaches under thresholds (the floor checked separately).
fn level_of(score: f64, floor_passed: bool, t: &Thresholds, strength: Strength) -> Level {
    if !score.is_finite() {
        return Level::NotApplicable;
    }
    if !floor_passed {
        return Level::WithinUnrelated;
    }
    if !t.calibrated {
        // Past its floor, but nobody measured what unrelated pairs reach here.
        return Level::BeyondUnrelated;
    }
    if strength == Strength::Strong && score > t.accuse {
        Level::Accuses
    } else if score > t.beyond {
        Level::BeyondUnrelated
    } else {
        Level::WithinUnrelated
    }
}

/// Applies the rubric under the calibration to the `experiments` map of a results file.
/// `excluded` names calibration models left out of the thresholds (leave-one-model-out,
/// when the audited models are themselves in the bank).
pub fn decide(
    rubric: &Rubric,
    cal: &Calibration,
    experiments: &BTreeMap<String, Value>,
    control_pairs: &[String],
    excluded: &[&str],
) -> Decision {
    let rates = rule_rates(rubric);
    let kind = PairKind::of(experiments);
    let inputs = Inputs {
        rubric,
        cal,
        experiments,
        control_pairs,
        excluded,
    };
    let mut evidence = Vec::new();
    for rule in &rubric.rules {
        let rate = rates[&rule.id];
        evidence.push(rule_evidence(inputs, rule, rate, &kind));
    }
    let (verdict, reasons, coverage) = ladder(rubric, experiments, &evidence);
    let kind_statement = kind_statement(&kind, &evidence, rubric.calibration.min_independent);
    Decision {
        verdict,
        rubric_version: rubric.version.clone(),
        calibration_version: cal.version.clone(),
        reasons,
        error: error_bound(rubric, cal),
        coverage,
        kind,
        kind_statement,
        meaning: MEANING.into(),
        evidence,
    }
}

/// What [`decide`] judges by: the rubric, the calibration, the results, the control pairs
/// and the calibration models left out.
#[derive(Clone, Copy)]
struct Inputs<'a> {
    rubric: &'a Rubric,
    cal: &'a Calibration,
    experiments: &'a BTreeMap<String, Value>,
    control_pairs: &'a [String],
    excluded: &'a [&'a str],
}

/// One rule judged on the audited pair and the controls, with its calibration.
fn rule_evidence(inputs: Inputs, rule: &Rule, rate: f64, kind: &PairKind) -> Evidence {
    let Inputs {
        rubric,
        cal,
        experiments,
        control_pairs,
        excluded,
    } = inputs;
    let scale = Scale::for_op(&rule.op);
    let t = thresholds(rubric, cal, rule, rate, excluded);
    let judge = |pair: &str| {
        let (value, null, raw) = evaluate_for(rule, experiments, pair);
        // `raw`: past the rubric's own threshold and null margin.
        let level = level_of(scale.score(value), raw, &t, rule.strength);
        (value, null, level)
    };
    let (value, null, level) = judge("A~B");
    // A control vetoes a rule when it reaches the level the audited pair's claim rests on:
    // accusing, or (for a signal short of that) beyond the unrelated range.
    let target = if level == Level::Accuses {
        Level::Accuses
    } else {
        Level::BeyondUnrelated
    };
    let counts = |l: Level| l >= target;
    let mut controls_passing = Vec::new();
    let mut controls_not_evaluated = Vec::new();
    for c in control_pairs {
        let (_, _, l) = judge(c);
        if l == Level::NotApplicable {
            controls_not_evaluated.push(c.clone());
        } else if counts(l) {
            controls_passing.push(c.clone());
        }
    }
    let vetoed = rule.controls_must_not && !controls_passing.is_empty();
    let (calibration, floor) = rule_calibration(inputs, rule, rate, &t, scale, value, kind);
    let fired = counts(level) && !vetoed;
    Evidence {
        rule: rule.id.clone(),
        experiment: rule.experiment.clone(),
        group: rule.group().to_string(),
        strength: rule.strength,
        fired,
        level,
        value: round9(value),
        op: rule.op.clone(),
        threshold: calibration.threshold,
        floor,
        null: null.map(round9),
        null_margin: rule.null_margin,
        controls_passing,
        controls_not_evaluated,
        calibration,
        explain: rule.explain.clone(),
    }
}

/// A rule's calibration as reported (thresholds, bank scores, leave-one-model-out counts,
/// p-values of the audited pair's `value`), and the rubric's floor.
fn rule_calibration(
    inputs: Inputs,
    rule: &Rule,
    rate: f64,
    t: &Thresholds,
    scale: Scale,
    value: f64,
    kind: &PairKind,
) -> (RuleCalibration, f64) {
    let Inputs {
        rubric,
        cal,
        excluded,
        ..
    } = inputs;
    let score = scale.score(value);
    let (lfp, lni, ltp, lnd) = if t.calibrated {
        rule_lomo(rubric, cal, rule, rate, &|_| true)
    } else {
        (0, 0, 0, 0)
    };
    // The thresholds shown are the stricter of the rubric's floor and the calibration's.
    let floor = match rule.aggregate {
        crate::rubric::Aggregate::Count => rule.min_count.unwrap_or(1) as f64,
        _ => rule.threshold,
    };
    let effective = |calibrated: f64| {
        if t.calibrated {
            scale.value(calibrated.max(scale.score(floor)))
        } else {
            floor
        }
    };
    let (accuse, beyond) = (effective(t.accuse), effective(t.beyond));
    let calibration = RuleCalibration {
        status: t.status.clone(),
        calibrated: t.calibrated,
        scale,
        independent_pairs: t.spread.n,
        independent_real: t.independent_real,
        derived_pairs: t.derived.len(),
        independent_mean: round9(t.spread.mean),
        independent_sd: round9(t.spread.sd),
        independent_max: round9(t.spread.max),
        independent_scores: sorted_scores(&t.independent),
        derived_scores: sorted_scores(&t.derived),
        target_rate: round9(rate),
        threshold: round9(if rule.strength == Strength::Strong {
            accuse
        } else {
            beyond
        }),
        beyond_unrelated_threshold: round9(beyond),
        lomo_false_positives: lfp,
        lomo_independent: lni,
        false_positive_upper: round9(stats::clopper_pearson_upper(
            lfp,
            lni,
            rubric.calibration.confidence,
        )),
        lomo_detected: ltp,
        lomo_derived: lnd,
        independent_same_widths: kind
            .widths
            .map(|_| same_kind(cal, rule, excluded, |k| k.widths == kind.widths)),
        independent_same_model_types: kind
            .model_types
            .as_ref()
            .map(|_| same_kind(cal, rule, excluded, |k| k.model_types == kind.model_types)),
        tail_p: round9(if t.calibrated && score.is_finite() {
            t.spread.tail(score)
        } else {
            f64::NAN
        }),
        conformal_p: round9(if score.is_finite() && !t.independent.is_empty() {
            stats::conformal_p(score, &t.independent)
        } else {
            f64::NAN
        }),
    };
    (calibration, floor)
}

/// The verdict the fired rules reach up the ladder, its reasons (vetoes included), and the
/// coverage it rests on.
fn ladder(
    rubric: &Rubric,
    experiments: &BTreeMap<String, Value>,
    evidence: &[Evidence],
) -> (Verdict, Vec<String>, Coverage) {
    let accusing: BTreeSet<&str> = evidence
        .iter()
        .filter(|e| e.fired && e.level == Level::Accuses)
        .map(|e| e.group.as_str())
        .collect();
    let beyond: Vec<&str> = evidence
        .iter()
        .filter(|e| e.fired && e.level != Level::Accuses)
        .map(|e| e.rule.as_str())
        .collect();
    let coverage = coverage(rubric, experiments);
    let mut reasons = Vec::new();
    let verdict = if accusing.len() >= rubric.ladder.derived_groups {
        reasons.push(format!(
            "strong evidence beyond the calibrated thresholds from {} independent groups of experiments ({})",
            accusing.len(),
            accusing.iter().copied().collect::<Vec<_>>().join(", ")
        ));
        Verdict::Derived
    } else if !accusing.is_empty() {
        reasons.push(format!(
            "strong evidence beyond the calibrated threshold from one group of experiments ({}); DERIVED needs {}",
            accusing.iter().copied().collect::<Vec<_>>().join(", "),
            rubric.ladder.derived_groups
        ));
        Verdict::LikelyDerived
    } else if !beyond.is_empty() {
        reasons.push(format!(
            "signals beyond what the calibration's unrelated pairs reach, too weak or too little calibrated to accuse: {}",
            beyond.join(", ")
        ));
        Verdict::Inconclusive
    } else if !coverage.assessed {
        reasons.push(coverage.statement.clone());
        Verdict::Inconclusive
    } else {
        reasons.push(format!(
            "nothing exceeds what the calibration's unrelated pairs reach; {}",
            coverage.statement
        ));
        Verdict::NotSupported
    };
    let vetoed: Vec<&str> = evidence
        .iter()
        .filter(|e| !e.fired && !e.controls_passing.is_empty() && e.level > Level::WithinUnrelated)
        .map(|e| e.rule.as_str())
        .collect();
    if !vetoed.is_empty() {
        reasons.push(format!(
            "vetoed because a control pair shows the same: {}",
            vetoed.join(", ")
        ));
    }
    (verdict, reasons, coverage)
}

/// Independent calibration pairs with a value for `rule`, none of whose models is excluded,
/// whose kind `like` accepts.
fn same_kind(
    cal: &Calibration,
    rule: &Rule,
    excluded: &[&str],
    like: impl Fn(&PairKind) -> bool,
) -> usize {
    cal.values_of(&rule.id).map_or(0, |values| {
        behind_threshold(cal, values, excluded, |_, p| like(&p.kind))
    })
}

/// The independent pairs a rule's threshold rests on (a value for the rule, neither model
/// excluded) that `keep` accepts (by index and pair).
fn behind_threshold(
    cal: &Calibration,
    values: &RuleValues,
    excluded: &[&str],
    keep: impl Fn(usize, &BankPair) -> bool,
) -> usize {
    cal.pairs
        .iter()
        .zip(&values.values)
        .enumerate()
        .filter(|(i, (p, v))| {
            p.truth == Truth::Independent
                && v.is_some()
                && !excluded.contains(&p.a.as_str())
                && !excluded.contains(&p.b.as_str())
                && keep(*i, p)
        })
        .count()
}

/// How many calibration pairs of the audited pair's widths stand behind each calibrated strong
/// rule that applied: the stated rates are measured mostly on other kinds of models when few.
fn kind_statement(kind: &PairKind, evidence: &[Evidence], min_independent: usize) -> String {
    let Some(_) = kind.widths else {
        return format!(
            "This pair's kind ({}) is not fully stated by its configs, so the calibration's independent pairs cannot be matched to it; the stated rates are measured on the kinds of models the calibration holds.",
            kind.describe()
        );
    };
    let strong: Vec<(&str, usize, usize)> = evidence
        .iter()
        .filter(|e| {
            e.strength == Strength::Strong
                && e.calibration.calibrated
                && e.level != Level::NotApplicable
        })
        .filter_map(|e| {
            let c = &e.calibration;
            Some((
                e.rule.as_str(),
                c.independent_same_widths?,
                c.independent_pairs,
            ))
        })
        .collect();
    if strong.is_empty() {
        return format!(
            "This pair: {}. No calibrated strong rule applied to it.",
            kind.describe()
        );
    }
    let few: Vec<&str> = strong
        .iter()
        .filter(|(_, same, _)| *same < min_independent)
        .map(|(rule, _, _)| *rule)
        .collect();
    let mut text = format!(
        "This pair: {}. Independent calibration pairs of its widths behind each strong rule that applied: {}.",
        kind.describe(),
        strong
            .iter()
            .map(|(rule, same, n)| format!("{rule} {same} of {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !few.is_empty() {
        text.push_str(&format!(
            " Fewer than {min_independent} of its widths for {}: those rates are measured mostly on models of other widths.",
            few.join(", ")
        ));
    }
    text
}

/// The verdict's false-positive statement: the tail model's family rate beside the bank's
/// leave-one-model-out count.
pub fn error_bound(rubric: &Rubric, cal: &Calibration) -> ErrorBound {
    let validation = validate_bank(rubric, cal);
    let strong_groups: Vec<String> = rubric
        .rules
        .iter()
        .filter(|r| r.strength == Strength::Strong)
        .map(|r| r.group().to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let family = rubric.calibration.family_rate;
    let bound = round9(family.max(validation.accused_upper));
    let statement = format!(
        "An unrelated pair is called DERIVED or LIKELY DERIVED at most {:.1} % of the time: the tail model allots {:.2} % over {} groups of strong rules (Bonferroni), and leave-one-model-out on the calibration accused {} of {} independent pairs ({} of {} real), an exact {:.0} % upper bound of {:.1} %. It found {} of {} derived pairs.",
        bound * 100.0,
        family * 100.0,
        strong_groups.len(),
        validation.independent_accused,
        validation.independent_pairs,
        validation.real_independent_accused,
        validation.real_independent_pairs,
        validation.confidence * 100.0,
        validation.accused_upper * 100.0,
        validation.derived_detected,
        validation.derived_pairs,
    );
    ErrorBound {
        family_rate: family,
        strong_groups,
        validation,
        false_positive_bound: bound,
        statement,
    }
}

impl RuleCalibration {
    /// A score of this rule (mean, max) in the value's own units.
    pub fn scale_value(&self, score: f64) -> f64 {
        round9(self.scale.value(score))
    }
}

#[cfg(test)]
mod tests;
