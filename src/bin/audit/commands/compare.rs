//! `audit compare A B [--control C]… [--experiments e1,e2,…] --out DIR`
//!
//! Runs experiments on aligned tensors and writes `results.json` and `data/*.csv`.

use anyhow::Result;

use crate::cli::CompareArgs;
use weight_audit::experiments;
use weight_audit::model::Model;
use weight_audit::pipeline::{RubricSource, compare_models, write_results};
use weight_audit::source::FetchStats;
use weight_audit::verdict::Decision;

pub fn run(args: &CompareArgs) -> Result<()> {
    let ids: Vec<String> = match &args.experiments {
        Some(list) => list.split(',').map(str::to_string).collect(),
        None => experiments::registry::default_ids(),
    };
    for id in &ids {
        experiments::by_id(id.trim())?; // fail on a typo before reading any model
    }
    let rubric = RubricSource::load_with(args.rubric.as_deref(), args.calibration.as_deref())?;
    let opener = super::opener(&args.source);
    let mut references = vec![args.a.clone(), args.b.clone()];
    references.extend(args.control.iter().cloned());
    let models = references
        .iter()
        .map(|r| super::open_model(&opener, r, &args.source))
        .collect::<Result<Vec<_>>>()?;
    let controls: Vec<&Model> = models[2..].iter().collect();
    let (results, outputs) = compare_models(
        &models[0],
        &models[1],
        &controls,
        &references,
        &ids,
        &rubric,
    )?;
    write_results(&args.out, &results, &outputs)?;
    println!("{}", verdict_text(&results.decision));
    let mut stats = FetchStats::default();
    for m in &models {
        stats.add(&m.source().stats());
    }
    eprintln!(
        "compare: {} experiment(s) over {} model(s) written to {}; {}",
        outputs.len(),
        models.len(),
        args.out.display(),
        stats.summary()
    );
    Ok(())
}

/// The verdict, why, its error bound and coverage, and the evidence that decided it.
pub fn verdict_text(d: &Decision) -> String {
    use weight_audit::verdict::Level;
    let mut lines = vec![format!("verdict: {}", d.verdict.label())];
    for r in &d.reasons {
        lines.push(format!("  because {r}"));
    }
    for e in d.evidence.iter().filter(|e| e.fired) {
        let c = &e.calibration;
        let null = e
            .null
            .map(|n| format!(", null {}", number(n)))
            .unwrap_or_default();
        let lomo = if c.lomo_independent == 0 {
            "leave-one-model-out not measurable (without either model of a pair, too few independent pairs remain)".to_string()
        } else {
            format!(
                "leave-one-model-out false positives {} of {} (≤ {:.1} %)",
                c.lomo_false_positives,
                c.lomo_independent,
                c.false_positive_upper * 100.0
            )
        };
        let against = if c.calibrated {
            format!(
                "; unrelated pairs: max {} over {} ({} real), {lomo}",
                number(c.scale_value(c.independent_max)),
                c.independent_pairs,
                c.independent_real,
            )
        } else {
            format!("; {}", c.status)
        };
        let level = match e.level {
            Level::Accuses => "accuses",
            _ => "beyond the unrelated range",
        };
        lines.push(format!(
            "  [{:?}, {level}] {}: {} {} {}{null}{against}",
            e.strength,
            e.rule,
            number(e.value),
            e.op,
            number(e.threshold)
        ));
    }
    lines.push(format!("  error rate: {}", d.error.statement));
    lines.push(format!("  coverage: {}", d.coverage.statement));
    lines.join("\n")
}

/// A value as the verdict lines show it: in full where plain decimals read well, in
/// scientific notation where they would run to dozens of zeros (p-values of 1e-150).
fn number(x: f64) -> String {
    if x == 0.0 || !x.is_finite() || (1e-4..1e9).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn verdict_numbers_are_plain_in_range_and_scientific_beyond() {
        assert_eq!(number(447.276375), "447.276375");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(0.0109470578), "0.0109470578");
        assert_eq!(number(1.22252184e-19), "1.22252184e-19");
        assert_eq!(number(-2.5e-7), "-2.5e-7");
        assert_eq!(number(3.0e12), "3e12");
        assert_eq!(number(f64::NAN), "NaN");
    }
}
