//! `audit eval`'s tables of the calibration itself: per rule and per verdict, the true- and
//! false-positive rates on the calibration's pairs by leave-one-model-out (a pair is never
//! judged by thresholds its own models helped set), with exact (Clopper–Pearson) intervals,
//! for the real and the synthetic pairs separately.

use crate::calibration::Truth;
use crate::experiments::{Table, fmt};
use crate::pipeline::RubricSource;
use crate::stats::{clopper_pearson_lower, clopper_pearson_upper};
use crate::verdict::{Verdict, bank_verdicts, rule_lomo, rule_rates};

/// The subsets reported: every pair, the real ones, the synthetic ones.
const SUBSETS: [&str; 3] = ["all", "real", "synthetic"];

fn keep(rubric: &RubricSource, subset: &str, i: usize) -> bool {
    match subset {
        "real" => rubric.calibration.is_real(i),
        "synthetic" => !rubric.calibration.is_real(i),
        _ => true,
    }
}

/// A rate with its exact interval: `k`, `n`, `k/n`, lower, upper.
fn rate_cells(k: usize, n: usize, confidence: f64) -> Vec<String> {
    vec![
        k.to_string(),
        n.to_string(),
        fmt(if n == 0 {
            f64::NAN
        } else {
            k as f64 / n as f64
        }),
        fmt(if n == 0 {
            f64::NAN
        } else {
            clopper_pearson_lower(k, n, confidence)
        }),
        fmt(if n == 0 {
            f64::NAN
        } else {
            clopper_pearson_upper(k, n, confidence)
        }),
    ]
}

/// `eval_rules`: per rule and subset, leave-one-model-out false and true positives.
pub fn rules_table(rubric: &RubricSource) -> Table {
    let r = &rubric.rubric;
    let conf = r.calibration.confidence;
    let rates = rule_rates(r);
    let mut t = Table::new(
        "eval_rules",
        &[
            "rule",
            "strength",
            "group",
            "pairs",
            "target_rate",
            "false_positives",
            "independent",
            "fpr",
            "fpr_lower",
            "fpr_upper",
            "true_positives",
            "derived",
            "tpr",
            "tpr_lower",
            "tpr_upper",
        ],
    );
    for rule in &r.rules {
        for subset in SUBSETS {
            let (fp, ni, tp, nd) = rule_lomo(r, &rubric.calibration, rule, rates[&rule.id], &|i| {
                keep(rubric, subset, i)
            });
            let mut row = vec![
                rule.id.clone(),
                format!("{:?}", rule.strength).to_lowercase(),
                rule.group().to_string(),
                subset.to_string(),
                fmt(rates[&rule.id]),
            ];
            row.extend(rate_cells(fp, ni, conf));
            row.extend(rate_cells(tp, nd, conf));
            t.rows.push(row);
        }
    }
    t
}

/// `eval_verdicts`: per subset and truth, how many bank pairs got each verdict (leave one
/// model out), and the rate at which they were called derived with its exact interval.
pub fn verdicts_table(rubric: &RubricSource) -> Table {
    let conf = rubric.rubric.calibration.confidence;
    let verdicts = bank_verdicts(&rubric.rubric, &rubric.calibration);
    let mut t = Table::new(
        "eval_verdicts",
        &[
            "pairs",
            "truth",
            "DERIVED",
            "LIKELY DERIVED",
            "INCONCLUSIVE",
            "NOT SUPPORTED BY WEIGHTS",
            "called_derived",
            "of",
            "rate",
            "rate_lower",
            "rate_upper",
        ],
    );
    for subset in SUBSETS {
        for truth in [Truth::Independent, Truth::Derived] {
            let chosen: Vec<Verdict> = rubric
                .calibration
                .pairs
                .iter()
                .enumerate()
                .filter(|(i, p)| p.truth == truth && keep(rubric, subset, *i))
                .map(|(i, _)| verdicts[i])
                .collect();
            let count = |v: Verdict| chosen.iter().filter(|x| **x == v).count().to_string();
            let mut row = vec![
                subset.to_string(),
                format!("{truth:?}").to_lowercase(),
                count(Verdict::Derived),
                count(Verdict::LikelyDerived),
                count(Verdict::Inconclusive),
                count(Verdict::NotSupported),
            ];
            let called = chosen.iter().filter(|v| v.is_derived()).count();
            row.extend(rate_cells(called, chosen.len(), conf));
            t.rows.push(row);
        }
    }
    t
}
