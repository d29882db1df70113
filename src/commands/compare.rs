//! `audit compare A B [--control C]… [--experiments e1,e2,…] --out DIR`
//!
//! Runs experiments on aligned tensors and writes `results.json` and `data/*.csv`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::CompareArgs;
use crate::experiments::{self, Output, Subjects};
use crate::model::Model;
use crate::source::FetchStats;

/// The experiments `compare` runs when none are named.
pub const DEFAULT_EXPERIMENTS: &str = "e0,e1,e1b,e2,e4,e5,e7,e8";

#[derive(Serialize)]
pub struct ModelEntry {
    pub label: String,
    pub reference: String,
    pub pinned: String,
}

#[derive(Serialize)]
pub struct Results {
    pub tool: BTreeMap<String, String>,
    pub models: Vec<ModelEntry>,
    pub experiments: BTreeMap<String, serde_json::Value>,
}

/// Runs `ids` over A, B and the controls.
pub fn compare_models(
    a: &Model,
    b: &Model,
    controls: &[&Model],
    references: &[String],
    ids: &[String],
) -> Result<(Results, Vec<Output>)> {
    let subjects = Subjects::new(a, b, controls);
    let experiments = ids
        .iter()
        .map(|id| experiments::by_id(id.trim()))
        .collect::<Result<Vec<_>>>()?;
    let outputs = experiments::run_all(&subjects, &experiments)?;
    let models = subjects
        .models
        .iter()
        .zip(references)
        .map(|(s, r)| ModelEntry {
            label: s.label.clone(),
            reference: r.clone(),
            pinned: s.model.describe(),
        })
        .collect();
    let mut tool = BTreeMap::new();
    tool.insert("name".into(), "weight-audit".into());
    tool.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    let results = Results {
        tool,
        models,
        experiments: outputs
            .iter()
            .map(|o| (o.id.to_string(), o.result.clone()))
            .collect(),
    };
    Ok((results, outputs))
}

/// Writes `results.json` and one CSV per table under `data/`.
pub fn write_results(dir: &Path, results: &Results, outputs: &[Output]) -> Result<()> {
    std::fs::create_dir_all(dir.join("data"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let mut json = serde_json::to_string_pretty(results)?;
    json.push('\n');
    std::fs::write(dir.join("results.json"), json).context("writing results.json")?;
    for o in outputs {
        for t in &o.tables {
            let path = dir.join("data").join(format!("{}.csv", t.name));
            std::fs::write(&path, t.to_csv()?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

pub fn run(args: &CompareArgs) -> Result<()> {
    let ids: Vec<String> = args.experiments.split(',').map(str::to_string).collect();
    for id in &ids {
        experiments::by_id(id.trim())?; // fail on a typo before reading any model
    }
    let opener = super::opener(&args.source);
    let mut references = vec![args.a.clone(), args.b.clone()];
    references.extend(args.control.iter().cloned());
    let models = references
        .iter()
        .map(|r| super::open_model(&opener, r, &args.source))
        .collect::<Result<Vec<_>>>()?;
    let controls: Vec<&Model> = models[2..].iter().collect();
    let (results, outputs) = compare_models(&models[0], &models[1], &controls, &references, &ids)?;
    write_results(&args.out, &results, &outputs)?;
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
