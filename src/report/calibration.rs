//! The report's calibration section: every rule's value for the audited pair set against what
//! the calibration's independent pairs reach, the threshold that follows, and the error rates
//! measured on the calibration by leave-one-model-out.

use anyhow::Result;

use super::format::num;
use super::plot::{IntervalRow, Intervals, Plot};
use super::section::{Plots, Section, TableView};
use crate::verdict::Decision;

/// Display positions beyond this many thresholds are clamped (the plot says so).
const CLAMP: f64 = 3.0;

fn percent(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1} %", v * 100.0)
    } else {
        "n/a".into()
    }
}

/// A score on the axis where the independent pairs' mean is 0 and the threshold 1.
fn placed(score: f64, mean: f64, threshold: f64) -> Option<f64> {
    let span = threshold - mean;
    (score.is_finite() && span.is_finite() && span > 0.0)
        .then(|| ((score - mean) / span).clamp(-CLAMP, CLAMP))
}

/// The calibration section of a verdict; `version` is the calibration's.
pub fn section(decision: &Decision, version: &str, plots: &mut Plots) -> Result<Section> {
    let mut rows = Vec::new();
    let mut irows = Vec::new();
    for e in &decision.evidence {
        let c = &e.calibration;
        // The rule's scale (a value, or −log10 of a p-value).
        let scale = c.scale;
        let unrelated = if c.calibrated {
            let same = match c.independent_same_widths {
                Some(k) => format!(", {k} of these widths"),
                None => String::new(),
            };
            format!(
                "max {} over {} ({} real{same})",
                num(scale.value(c.independent_max)),
                c.independent_pairs,
                c.independent_real
            )
        } else {
            c.status.clone()
        };
        rows.push(vec![
            e.rule.clone(),
            e.strength.as_str().to_string(),
            num(e.value),
            format!("{} {}", e.op, num(e.threshold)),
            percent(c.target_rate),
            unrelated,
            format!(
                "{} of {} (≤ {})",
                c.lomo_false_positives,
                c.lomo_independent,
                percent(c.false_positive_upper)
            ),
            format!("{} of {}", c.lomo_detected, c.lomo_derived),
            e.level.as_str().replace('_', " "),
        ]);
        if c.calibrated {
            let mean = c.independent_mean;
            let threshold = scale.score(e.threshold);
            let min_indep = mean - c.independent_sd;
            let placed_all = |scores: &[f64]| -> Vec<f64> {
                scores
                    .iter()
                    .filter_map(|&v| placed(v, mean, threshold))
                    .collect()
            };
            irows.push(IntervalRow {
                reference: placed_all(&c.independent_scores),
                contrast: placed_all(&c.derived_scores),
                label: e.rule.clone(),
                band: placed(min_indep, mean, threshold).zip(placed(
                    c.independent_max,
                    mean,
                    threshold,
                )),
                center: Some(1.0),
                observed: placed(scale.score(e.value), mean, threshold),
            });
        }
    }
    let mut plot_views = Vec::new();
    if !irows.is_empty() {
        plot_views.push(plots.add(
            "calibration",
            "Each rule's value for A~B on a common axis: 0 is the mean of the calibration's independent pairs, 1 the rule's threshold; the band runs from one standard deviation below their mean to the largest independent pair, and every calibration pair is a small dot (grey above the row: independent; green below: derived). Positions beyond ±3 are drawn at ±3.",
            &Plot::Intervals(Intervals {
                reference_label: "an independent pair".into(),
                contrast_label: "a derived pair".into(),
                title: "A~B against the calibration's unrelated and derived pairs".into(),
                x_label: "(score − independent mean) / (threshold − independent mean)".into(),
                band_label: "independent pairs (mean − sd to max)".into(),
                center_label: "threshold".into(),
                observed_label: "A~B".into(),
                rows: irows,
            }),
        )?);
    }
    let table = TableView::new(
        "Every rule against the calibration (leave-one-model-out rates on the calibration's pairs)",
        &[
            "rule",
            "strength",
            "A~B",
            "threshold",
            "rate allotted",
            "unrelated pairs",
            "false positives",
            "derived found",
            "level",
        ],
        rows,
        "calibration",
    );
    Ok(Section {
        id: "calibration".into(),
        title: "Calibration · what unrelated models reach".into(),
        nav: String::new(),
        question: "Is each value beyond what models of no common descent reach, and how often would the threshold be wrong?".into(),
        null: format!(
            "The calibration's independent pairs (real checkpoints and the lab's families; calibration {}), each rule's threshold set beyond all of them and beyond Cantelli's one-sided bound at the rate allotted to it. Rates are measured by leave-one-model-out: a pair is judged by thresholds set without its models.",
            version
        ),
        reading: format!(
            "{} {} {}",
            decision.error.statement, decision.kind_statement, decision.coverage.statement
        ),
        tables: vec![table],
        plots: plot_views,
    })
}
