//! The audit pipeline: subjects and experiments in, typed results and the verdict out.
//!
//! Every way to run an audit (`compare`, `run`, `demo`, `verify --reproduce`) goes through
//! [`compare_subjects`]: it runs the experiments over one fetch, pins every input (a Hub
//! model at its commit, a local folder by name and content digest), applies the rubric and
//! its calibration, and returns [`Results`] (what `results.json` holds) with each
//! experiment's [`Output`]. [`write_results`] writes a results folder.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::calibration::Calibration;
use crate::experiments::{self, Experiment, Output, Subjects};
use crate::model::Model;
use crate::progress::{Progress, Silent};
use crate::record::{ModelEntry, RubricEntry};
use crate::rubric::Rubric;
use crate::verdict::Decision;

/// `results.json`: the models, every experiment's result and the verdict.
#[derive(Serialize)]
pub struct Results {
    /// `name` and `version` of the tool that ran.
    pub tool: BTreeMap<String, String>,
    /// The audited models, A, B, then the controls.
    pub models: Vec<ModelEntry>,
    /// Each experiment's result as JSON, by experiment id.
    pub experiments: BTreeMap<String, serde_json::Value>,
    /// The rubric the verdict was decided by.
    pub rubric: RubricEntry,
    /// The calibration the rubric's thresholds came from.
    pub calibration: RubricEntry,
    /// The verdict and the evidence for it.
    pub decision: Decision,
}

/// The rubric and the calibration in use, with their texts (the texts are what get hashed
/// and bundled).
#[derive(Clone)]
pub struct RubricSource {
    /// The parsed rubric.
    pub rubric: Rubric,
    /// The rubric's TOML text, as hashed and bundled.
    pub text: String,
    /// The parsed calibration.
    pub calibration: Calibration,
    /// The calibration's JSON text, as hashed and bundled.
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

    /// The calibration's version and hash, as results.json records them.
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
                format: s.model.format(),
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
