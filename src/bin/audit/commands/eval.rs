//! `audit eval [--suite builtin|lab|adversarial|quant|real|calibration|DIR] [--out DIR]` (the
//! library's [`weight_audit::eval`] computes the rows and tables; this writes and prints them).

use std::path::Path;

use anyhow::{Context, Result};
use weight_audit::bank::{BankSuite, prepare_suite};
use weight_audit::eval::calibration::{rules_table, verdicts_table};
use weight_audit::eval::{
    AWM_PUBLISHED, BUILTIN_SUITES, EvalRow, VERDICTS, auc_table, confusion_table, evaluate,
    pairs_table, relation_table, roc_curves, scores, summary_table,
};
use weight_audit::experiments::{Table, fmt};
use weight_audit::pipeline::RubricSource;

use crate::cli::EvalArgs;

pub fn run(args: &EvalArgs) -> Result<()> {
    let rubric = RubricSource::load_with(args.rubric.as_deref(), args.calibration.as_deref())?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let rules = rules_table(&rubric);
    let verdicts = verdicts_table(&rubric);
    for t in [&rules, &verdicts] {
        std::fs::write(args.out.join(format!("{}.csv", t.name)), t.to_csv()?)?;
    }
    print(&rules, &verdicts);
    if args.suite == "calibration" {
        return Ok(());
    }
    if args.suite != "builtin" {
        run_suite(&args.suite, &args.out, &rubric)?;
        return Ok(());
    }
    let mut aucs = Vec::new();
    for name in BUILTIN_SUITES {
        println!("== {name} suite ==");
        let rows = run_suite(name, &args.out.join(name), &rubric)?;
        aucs.push((name, auc_table(&rows)));
        println!();
    }
    let summary = summary_table(&aucs);
    std::fs::write(args.out.join("eval_summary.csv"), summary.to_csv()?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("== which signals separate (ROC AUC per suite) ==");
    let line = |cells: &[String]| {
        let rest: String = cells[1..].iter().map(|c| format!(" {c:>16}")).collect();
        println!("{:<24}{rest}", cells[0]);
    };
    line(&summary.columns);
    for r in &summary.rows {
        line(r);
    }
    println!("summary in {}", args.out.join("eval_summary.csv").display());
    Ok(())
}

/// Generates (for `lab`, `adversarial`, `quant`, `real`) or opens the suite, evaluates it, writes the
/// tables and the ROC plot to `out` and prints the AUC and confusion tables.
fn run_suite(suite: &str, out: &Path, rubric: &RubricSource) -> Result<Vec<EvalRow>> {
    let bank = if ["lab", "adversarial", "quant", "real"].contains(&suite) {
        eprintln!("eval: preparing the {suite} suite in {}", out.display());
        prepare_suite(suite, out)?
    } else {
        BankSuite::folder("suite", Path::new(suite))
    };
    let rows = evaluate(&bank, rubric)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let auc = auc_table(&rows);
    let confusion = confusion_table(&rows);
    let (roc_table, roc_plot) = roc_curves(&rows);
    for t in [
        &auc,
        &pairs_table(&rows),
        &confusion,
        &relation_table(&rows),
        &roc_table,
    ] {
        std::fs::write(out.join(format!("{}.csv", t.name)), t.to_csv()?)?;
    }
    let drawn = roc_plot.render()?;
    std::fs::write(out.join("eval_roc.svg"), drawn.svg)?;
    std::fs::write(out.join("eval_roc.png"), drawn.png)?;
    println!(
        "{:<24} {:>9} {:>12} {:>24}",
        "score", "AUC", "pAUC@0.05", "independent pairs span"
    );
    for r in &auc.rows {
        println!(
            "{:<24} {:>9} {:>12} {:>24}",
            r[0],
            &r[1],
            &r[2],
            format!("{} .. {}", r[6], r[7])
        );
    }
    println!(
        "\n{:<12} {}",
        "truth",
        VERDICTS.map(|v| format!("{:>26}", v.label())).join("")
    );
    for r in &confusion.rows {
        println!(
            "{:<12} {}",
            r[0],
            r[1..]
                .iter()
                .map(|c| format!("{c:>26}"))
                .collect::<String>()
        );
    }
    if suite == "adversarial" {
        print_side_by_side(&rows);
    }
    println!(
        "{} pairs; tables and the ROC plot (eval_roc.svg, eval_roc.png) in {}",
        rows.len(),
        out.display()
    );
    Ok(rows)
}
/// Per pair: AWM as published (permutation-only alignment) beside the project's E8 score
/// (best alignment, canonical form) and verdict.
fn print_side_by_side(rows: &[EvalRow]) {
    let names: Vec<&str> = scores().iter().map(|s| s.name).collect();
    let col = |n: &str| names.iter().position(|x| *x == n);
    let (awm, e8) = (col(AWM_PUBLISHED), col("e8_cka"));
    let cell = |r: &EvalRow, c: Option<usize>| c.map(|c| fmt(r.scores[c])).unwrap_or_default();
    println!(
        "\n{:<22} {:<12} {:>10} {:>10}  verdict",
        "pair", "truth", "AWM", "project"
    );
    for r in rows {
        println!(
            "{:<22} {:<12} {:>10} {:>10}  {}",
            r.id,
            if r.derived { "DERIVED" } else { "INDEPENDENT" },
            cell(r, awm),
            cell(r, e8),
            r.verdict.label()
        );
    }
}

/// Prints the verdict table and the strong rules' rates.
pub fn print(rules: &Table, verdicts: &Table) {
    println!("== the calibration, leave one model out (exact 95 % intervals) ==");
    println!(
        "{:<10} {:<12} {:>8} {:>8} {:>13} {:>15} {:>8}",
        "pairs", "truth", "DERIVED", "LIKELY", "INCONCLUSIVE", "NOT SUPPORTED", "rate"
    );
    for r in &verdicts.rows {
        println!(
            "{:<10} {:<12} {:>8} {:>8} {:>13} {:>15} {:>8} [{}, {}]",
            r[0], r[1], r[2], r[3], r[4], r[5], r[8], r[9], r[10]
        );
    }
    println!(
        "\n{:<40} {:<10} {:>14} {:>14}",
        "rule (all pairs)", "strength", "fpr (fp/n)", "tpr (tp/n)"
    );
    for r in rules.rows.iter().filter(|r| r[3] == "all") {
        println!(
            "{:<40} {:<10} {:>14} {:>14}",
            r[0],
            r[1],
            format!("{}/{}", r[5], r[6]),
            format!("{}/{}", r[10], r[11])
        );
    }
}
