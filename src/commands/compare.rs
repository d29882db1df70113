//! `audit compare A B [--control C]… [--experiments e1,e2,…] --out DIR`
//!
//! Runs experiments on aligned tensors and writes `results.json` and `data/*.csv`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::CompareArgs;
use crate::experiments::{self, Experiment, Output, Subjects};
use crate::model::Model;
use crate::progress::{Progress, Silent};
use crate::rubric::{Decision, Rubric};
use crate::source::FetchStats;

/// The experiments `compare` runs when none are named.
pub const DEFAULT_EXPERIMENTS: &str = "e0,e0c,e1,e1b,e2,e3,e4,e5,e6,e7,e8,e9,e10";

#[derive(Serialize)]
pub struct ModelEntry {
    pub label: String,
    pub reference: String,
    pub pinned: String,
}

#[derive(Serialize)]
pub struct RubricEntry {
    pub version: String,
    pub sha256: String,
}

#[derive(Serialize)]
pub struct Results {
    pub tool: BTreeMap<String, String>,
    pub models: Vec<ModelEntry>,
    pub experiments: BTreeMap<String, serde_json::Value>,
    pub rubric: RubricEntry,
    pub decision: Decision,
}

/// The rubric in use and its text (the text is what gets hashed).
pub struct RubricSource {
    pub rubric: Rubric,
    pub text: String,
}

impl RubricSource {
    pub fn load(path: Option<&Path>) -> Result<RubricSource> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p)
                .with_context(|| format!("reading rubric {}", p.display()))?,
            None => crate::rubric::DEFAULT_RUBRIC.to_string(),
        };
        let rubric = Rubric::parse(&text).with_context(|| match path {
            Some(p) => format!("rubric {}", p.display()),
            None => "the built-in rubric".into(),
        })?;
        Ok(RubricSource { rubric, text })
    }
}

/// Runs `ids` over A, B and the controls.
pub fn compare_models(
    a: &Model,
    b: &Model,
    controls: &[&Model],
    references: &[String],
    ids: &[String],
    rubric: &RubricSource,
) -> Result<(Results, Vec<Output>)> {
    let experiments = ids
        .iter()
        .map(|id| experiments::by_id(id.trim()))
        .collect::<Result<Vec<_>>>()?;
    let subjects = Subjects::new(a, b, controls);
    compare_subjects(&subjects, references, &experiments, rubric, &Silent)
}

/// Runs built experiments over the subjects and applies the rubric.
pub fn compare_subjects(
    subjects: &Subjects,
    references: &[String],
    experiments: &[Box<dyn Experiment>],
    rubric: &RubricSource,
    progress: &dyn Progress,
) -> Result<(Results, Vec<Output>)> {
    let outputs = experiments::run_all_with(subjects, experiments, progress)?;
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
    let experiments: BTreeMap<String, serde_json::Value> = outputs
        .iter()
        .map(|o| (o.id.to_string(), o.result.clone()))
        .collect();
    let control_pairs: Vec<String> = subjects
        .pairs()
        .into_iter()
        .skip(1)
        .map(|(i, j)| subjects.pair_label(i, j))
        .collect();
    let decision = crate::rubric::decide(&rubric.rubric, &experiments, &control_pairs);
    let results = Results {
        tool,
        models,
        experiments,
        rubric: RubricEntry {
            version: rubric.rubric.version.clone(),
            sha256: crate::rubric::rubric_hash(&rubric.text),
        },
        decision,
    };
    Ok((results, outputs))
}

/// Writes `results.json`, one CSV per table under `data/`, and the report rendered from
/// results.json (`report.md`, `report.html`, `plots/`).
pub fn write_results(dir: &Path, results: &Results, outputs: &[Output]) -> Result<()> {
    std::fs::create_dir_all(dir.join("data"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let mut json = serde_json::to_string_pretty(results)?;
    json.push('\n');
    std::fs::write(dir.join("results.json"), &json).context("writing results.json")?;
    for o in outputs {
        for t in &o.tables {
            let path = dir.join("data").join(format!("{}.csv", t.name));
            std::fs::write(&path, t.to_csv()?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    // Rendered from the JSON text as written, exactly as `verify` re-renders it from a bundle.
    let report = crate::report::render(&serde_json::from_str(&json)?)?;
    crate::report::write(dir, &report)
}

pub fn run(args: &CompareArgs) -> Result<()> {
    let ids: Vec<String> = args.experiments.split(',').map(str::to_string).collect();
    for id in &ids {
        experiments::by_id(id.trim())?; // fail on a typo before reading any model
    }
    let rubric = RubricSource::load(args.rubric.as_deref())?;
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

/// The verdict and the evidence that decided it, one line each.
pub fn verdict_text(d: &Decision) -> String {
    let mut lines = vec![format!("verdict: {}", d.verdict.label())];
    for e in d.evidence.iter().filter(|e| e.fired) {
        let null = e.null.map(|n| format!(", null {n}")).unwrap_or_default();
        lines.push(format!(
            "  [{:?}] {}: {} {} {}{} — {}",
            e.strength, e.rule, e.value, e.op, e.threshold, null, e.explain
        ));
    }
    if d.evidence.iter().all(|e| !e.fired) {
        lines.push("  no rule fired: nothing beyond what the nulls and controls show".into());
    }
    lines.join("\n")
}
