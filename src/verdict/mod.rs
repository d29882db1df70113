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
mod decision;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::calibration::{
    BankPair, Calibration, PairKind, RuleValues, Scale, Spread, Truth, bank_scores,
};
use crate::experiments::round9;
use crate::rubric::{Rubric, Rule, Strength, evaluate_for};
use crate::stats;

pub use bank::{bank_verdicts, rule_lomo, validate_bank};
use coverage::coverage;
pub use decision::{
    BankValidation, Coverage, Decision, ErrorBound, Evidence, Examined, Level, RuleCalibration,
    Verdict,
};

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

#[cfg(test)]
mod tests;
