//! `audit demo [--out DIR]`: the built-in audit, no network (models from
//! [`weight_audit::demo`]); the key findings, the verdict and the verified bundle are printed.

use std::path::Path;

use anyhow::Result;
use weight_audit::demo::{findings, generate_models};
use weight_audit::model::{Model, ModelOptions};
use weight_audit::source::local::LocalSource;

use crate::cli::DemoArgs;

fn open(dir: &Path) -> Result<Model> {
    Model::open(Box::new(LocalSource::open(dir)?), &ModelOptions::default())
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let out = args.out.clone();
    eprintln!(
        "demo: generating the lab's GLM-like base, Solar-like suspect and independent control in {}",
        out.display()
    );
    let paths = generate_models(&out)?;
    let models = paths.iter().map(|p| open(p)).collect::<Result<Vec<_>>>()?;
    let references: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let ids = weight_audit::experiments::registry::default_ids();
    let rubric = weight_audit::pipeline::RubricSource::load(None)?;
    let (results, outputs) = weight_audit::pipeline::compare_models(
        &models[0],
        &models[1],
        &[&models[2]],
        &references,
        &ids,
        &rubric,
    )?;
    let results_dir = out.join("results");
    weight_audit::pipeline::write_results(&results_dir, &results, &outputs)?;
    println!("{}", findings(&results.experiments));
    println!("{}", super::compare::verdict_text(&results.decision));
    println!("results: {}", results_dir.join("results.json").display());
    println!("report: {}", results_dir.join("report.html").display());
    let audit = weight_audit::bundle::demo::DemoAudit {
        models: &models,
        references: &references,
        experiments: &ids,
        rubric: &rubric,
        results: &results,
        outputs: &outputs,
    };
    let bundle = weight_audit::bundle::demo::write_demo_bundle(&out, &audit)?;
    println!(
        "bundle verified: {} (signed with the public demo key {})",
        bundle.display(),
        out.join("demo.pub").display()
    );
    Ok(())
}
