//! `audit compare A B [--control C]… [--experiments e1,e2,…] --out DIR`
//!
//! Runs experiments on aligned tensors and writes `results.json` and `data/*.csv`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::calibration::Calibration;
use crate::cli::CompareArgs;
use crate::experiments::{self, Experiment, Output, Subjects};
use crate::model::Model;
use crate::progress::{Progress, Silent};
use crate::rubric::Rubric;
use crate::source::FetchStats;
use crate::verdict::Decision;

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
    pub calibration: RubricEntry,
    pub decision: Decision,
}

/// The rubric and the calibration in use, with their texts (the texts are what get hashed
/// and bundled).
#[derive(Clone)]
pub struct RubricSource {
    pub rubric: Rubric,
    pub text: String,
    pub calibration: Calibration,
    pub calibration_text: String,
}

impl RubricSource {
    /// The rubric at `path` (default: the built-in one) with the built-in calibration.
    pub fn load(path: Option<&Path>) -> Result<RubricSource> {
        RubricSource::load_with(path, None)
    }

    /// The rubric and the calibration at these paths, or the built-in ones.
    pub fn load_with(path: Option<&Path>, calibration: Option<&Path>) -> Result<RubricSource> {
        let text = match path {
            Some(p) => crate::files::read_text_limited(p, crate::files::MAX_SMALL_FILE_BYTES)
                .with_context(|| format!("reading rubric {}", p.display()))?,
            None => crate::rubric::DEFAULT_RUBRIC.to_string(),
        };
        let rubric = Rubric::parse(&text).with_context(|| match path {
            Some(p) => format!("rubric {}", p.display()),
            None => "the built-in rubric".into(),
        })?;
        let calibration_text = match calibration {
            Some(p) => {
                crate::files::read_text_limited(p, crate::calibration::MAX_CALIBRATION_BYTES)
                    .with_context(|| format!("reading calibration {}", p.display()))?
            }
            None => crate::calibration::DEFAULT_CALIBRATION.to_string(),
        };
        let cal = Calibration::parse(&calibration_text).with_context(|| match calibration {
            Some(p) => format!("calibration {}", p.display()),
            None => "the built-in calibration".into(),
        })?;
        Ok(RubricSource {
            rubric,
            text,
            calibration: cal,
            calibration_text,
        })
    }

    /// The verdict for a results file's experiments.
    pub fn decide(
        &self,
        experiments: &BTreeMap<String, serde_json::Value>,
        control_pairs: &[String],
    ) -> Decision {
        crate::verdict::decide(
            &self.rubric,
            &self.calibration,
            experiments,
            control_pairs,
            &[],
        )
    }

    pub fn calibration_entry(&self) -> RubricEntry {
        RubricEntry {
            version: self.calibration.version.clone(),
            sha256: crate::calibration::calibration_hash(&self.calibration_text),
        }
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
    // Every input is named by its pin: a Hub model at its commit, a local folder by its base
    // name and content digest, so results never hold a path of this machine.
    let models = subjects
        .models
        .iter()
        .zip(references)
        .map(|(s, r)| {
            let pin = s
                .model
                .source()
                .pin()
                .with_context(|| format!("pinning {r}"))?;
            Ok(ModelEntry {
                label: s.label.clone(),
                reference: pin.display_reference(r),
                pinned: pin.pinned_reference(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
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
    let decision = rubric.decide(&experiments, &control_pairs);
    let results = Results {
        tool,
        models,
        experiments,
        rubric: RubricEntry {
            version: rubric.rubric.version.clone(),
            sha256: crate::rubric::rubric_hash(&rubric.text),
        },
        calibration: rubric.calibration_entry(),
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
    use crate::verdict::Level;
    let mut lines = vec![format!("verdict: {}", d.verdict.label())];
    for r in &d.reasons {
        lines.push(format!("  because {r}"));
    }
    for e in d.evidence.iter().filter(|e| e.fired) {
        let c = &e.calibration;
        let null = e.null.map(|n| format!(", null {n}")).unwrap_or_default();
        let against = if c.calibrated {
            format!(
                "; unrelated pairs: max {} over {} ({} real), leave-one-model-out false positives {} of {} (≤ {:.1} %)",
                c.scale_value(c.independent_max),
                c.independent_pairs,
                c.independent_real,
                c.lomo_false_positives,
                c.lomo_independent,
                c.false_positive_upper * 100.0
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
            e.strength, e.rule, e.value, e.op, e.threshold
        ));
    }
    lines.push(format!("  error: {}", d.error.statement));
    lines.push(format!("  coverage: {}", d.coverage.statement));
    lines.join("\n")
}
