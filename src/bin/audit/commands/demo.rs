//! `audit demo [--out DIR]`: the built-in audit, no network (models from
//! [`weight_audit::demo`]); the key findings, the verdict and the verified bundle are printed.

use anyhow::Result;
use weight_audit::demo::{DemoRun, findings};

use crate::cli::DemoArgs;

pub fn run(args: &DemoArgs) -> Result<()> {
    let out = args.out.clone();
    eprintln!(
        "demo: generating the lab's GLM-like base, Solar-like suspect and independent control in {}",
        out.display()
    );
    let demo = DemoRun::run(&out)?;
    let results_dir = out.join("results");
    weight_audit::pipeline::write_results(&results_dir, &demo.results, &demo.outputs)?;
    let typed = weight_audit::experiments::typed::TypedResults::read(&demo.results.experiments)?;
    println!("{}", findings(&typed));
    println!("{}", super::compare::verdict_text(&demo.results.decision));
    println!("results: {}", results_dir.join("results.json").display());
    println!("report: {}", results_dir.join("report.html").display());
    let bundle = weight_audit::bundle::demo::write_demo_bundle(&out, &demo.audit())?;
    println!(
        "bundle verified: {} (signed with the public demo key {})",
        bundle.display(),
        out.join("demo.pub").display()
    );
    Ok(())
}
