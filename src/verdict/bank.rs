//! The bank judged by itself: each calibration pair's verdict and each rule's outcome by
//! leave-one-model-out (a pair judged by thresholds set without its models).

use std::collections::BTreeSet;

use super::{BankValidation, Level, Verdict, level_of, rule_rates, thresholds};
use crate::calibration::{Calibration, Scale, Truth};
use crate::rubric::{Rubric, Rule, Strength, value_passes};
use crate::stats;

/// Each bank pair's verdict from its rule values alone, leave-one-model-out: judged by a
/// calibration that holds neither of its models. The bank has no controls and no coverage
/// record, so no veto applies and every pair counts as examined.
pub fn bank_verdicts(rubric: &Rubric, cal: &Calibration) -> Vec<Verdict> {
    let rates = rule_rates(rubric);
    cal.pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let excluded = [p.a.as_str(), p.b.as_str()];
            let mut accusing = BTreeSet::new();
            let mut beyond = false;
            for rule in &rubric.rules {
                let Some(value) = cal.values_of(&rule.id).and_then(|v| v.values[i]) else {
                    continue;
                };
                let t = thresholds(rubric, cal, rule, rates[&rule.id], &excluded);
                let score = Scale::for_op(&rule.op).score(value);
                match level_of(score, value_passes(rule, value), &t, rule.strength) {
                    Level::Accuses => {
                        accusing.insert(rule.group());
                    }
                    Level::BeyondUnrelated => beyond = true,
                    _ => {}
                }
            }
            if accusing.len() >= rubric.ladder.derived_groups {
                Verdict::Derived
            } else if !accusing.is_empty() {
                Verdict::LikelyDerived
            } else if beyond {
                Verdict::Inconclusive
            } else {
                Verdict::NotSupported
            }
        })
        .collect()
}

/// The leave-one-model-out validation of the bank: how many independent pairs would be
/// accused, and how many derived pairs found.
pub fn validate_bank(rubric: &Rubric, cal: &Calibration) -> BankValidation {
    let verdicts = bank_verdicts(rubric, cal);
    let mut v = BankValidation {
        independent_pairs: 0,
        independent_accused: 0,
        accused_upper: 1.0,
        real_independent_pairs: 0,
        real_independent_accused: 0,
        derived_pairs: 0,
        derived_detected: 0,
        real_derived_pairs: 0,
        real_derived_detected: 0,
        confidence: rubric.calibration.confidence,
    };
    for (i, (p, verdict)) in cal.pairs.iter().zip(&verdicts).enumerate() {
        let accused = verdict.is_derived();
        let real = cal.is_real(i);
        match p.truth {
            Truth::Independent => {
                v.independent_pairs += 1;
                v.independent_accused += usize::from(accused);
                v.real_independent_pairs += usize::from(real);
                v.real_independent_accused += usize::from(real && accused);
            }
            Truth::Derived => {
                v.derived_pairs += 1;
                v.derived_detected += usize::from(accused);
                v.real_derived_pairs += usize::from(real);
                v.real_derived_detected += usize::from(real && accused);
            }
        }
    }
    v.accused_upper = stats::clopper_pearson_upper(
        v.independent_accused,
        v.independent_pairs,
        rubric.calibration.confidence,
    );
    v
}

/// Leave-one-model-out counts of one rule over the bank pairs `keep` accepts: (independent
/// beyond, of, derived beyond, of).
pub fn rule_lomo(
    rubric: &Rubric,
    cal: &Calibration,
    rule: &Rule,
    rate: f64,
    keep: &dyn Fn(usize) -> bool,
) -> (usize, usize, usize, usize) {
    let Some(values) = cal.values_of(&rule.id) else {
        return (0, 0, 0, 0);
    };
    let scale = Scale::for_op(&rule.op);
    let (mut fp, mut ni, mut tp, mut nd) = (0, 0, 0, 0);
    for (i, (p, v)) in cal.pairs.iter().zip(&values.values).enumerate() {
        let Some(v) = v else { continue };
        if !keep(i) {
            continue;
        }
        let t = thresholds(rubric, cal, rule, rate, &[p.a.as_str(), p.b.as_str()]);
        if !t.calibrated {
            continue;
        }
        let floor = value_passes(rule, *v);
        let hit = floor
            && scale.score(*v)
                > if rule.strength == Strength::Strong {
                    t.accuse
                } else {
                    t.beyond
                };
        match p.truth {
            Truth::Independent => {
                ni += 1;
                fp += usize::from(hit);
            }
            Truth::Derived => {
                nd += 1;
                tp += usize::from(hit);
            }
        }
    }
    (fp, ni, tp, nd)
}
