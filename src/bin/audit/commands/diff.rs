//! `audit diff A B`: exit 0 when two audits agree within tolerance, 1 when they differ
//! (the library's [`weight_audit::diff`] compares them).

use anyhow::Result;
use weight_audit::CheckFailed;
use weight_audit::bundle::jsondiff::Tolerance;

use crate::cli::DiffArgs;

pub fn run(args: &DiffArgs) -> Result<()> {
    let tol = Tolerance {
        rel: args.rel_tol,
        abs: args.abs_tol,
    };
    let a = weight_audit::diff::load_results(&args.a)?;
    let b = weight_audit::diff::load_results(&args.b)?;
    let d = weight_audit::diff::diff_results(&a, &b, tol);
    match &d.verdict {
        Some((x, y)) => println!("verdict: {x} → {y}"),
        None => println!(
            "verdict: {} (same)",
            a["decision"]["verdict"].as_str().unwrap_or("(none)")
        ),
    }
    if !d.rules.is_empty() {
        println!("rule outcomes that differ:");
        for r in &d.rules {
            println!("  {r}");
        }
    }
    println!(
        "values that differ beyond tolerance ({tol}): {}",
        d.numbers.len()
    );
    for n in d.numbers.iter().take(50) {
        println!("  {n}");
    }
    if d.numbers.len() > 50 {
        println!("  … and {} more", d.numbers.len() - 50);
    }
    if d.is_empty() {
        Ok(())
    } else {
        Err(CheckFailed(format!(
            "{} and {} differ",
            args.a.display(),
            args.b.display()
        ))
        .into())
    }
}
