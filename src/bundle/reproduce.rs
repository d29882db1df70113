//! `verify --reproduce`: re-runs the audit a bundle records (same pinned inputs: Hub models
//! at their commit, local ones found by name and checked by content digest; same
//! experiments, the bundled rubric) and compares every number of `results.json` and of
//! every table with the re-run, within [`Tolerance::RERUN`].

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use super::jsondiff::{self, Difference, Tolerance};
use super::manifest::Input;
use super::manifest::Manifest;
use super::write::{CALIBRATION, RESULTS, REVISIONS, RUBRIC};
use crate::config::AuditConfig;
use crate::experiments::Subjects;
use crate::model::{Model, ModelOptions};
use crate::pipeline::{RubricSource, compare_subjects};
use crate::progress::Silent;
use crate::source::{ModelRef, Opener, Pin, Revisions, Source, SourceOptions, local};

/// Opens one recorded input: a Hub model at its pinned commit; a local one (pinned by
/// content) from the folder `--input NAME=PATH` names, else `NAME` under a search folder,
/// after checking its files against the pin (naming each file that differs).
fn open_input(
    opener: &Opener,
    input: &Input,
    recorded: Option<&Pin>,
    model_options: &ModelOptions,
) -> Result<Model> {
    let reference = ModelRef::parse(&input.pinned)?;
    let src: Box<dyn Source> = match &reference {
        ModelRef::Pinned(pin) => Box::new(local::open_pinned(
            pin,
            &opener.options().local,
            recorded.map(|p| p.files.as_slice()),
        )?),
        other => opener.open(other)?,
    };
    Model::open(src, model_options)
}

/// Re-runs the audit and returns every difference beyond `tol` (empty: reproduced).
pub fn reproduce(
    files: &super::verify::Files,
    manifest: &Manifest,
    bundle_dir: &Path,
    source: SourceOptions,
    model_options: &ModelOptions,
    tol: Tolerance,
) -> Result<Vec<Difference>> {
    let text = std::str::from_utf8(files.get(RUBRIC).context("rubric.toml is missing")?)
        .context("rubric.toml is not UTF-8")?;
    let calibration_text = std::str::from_utf8(
        files
            .get(CALIBRATION)
            .context("calibration.json is missing")?,
    )
    .context("calibration.json is not UTF-8")?;
    let rubric = RubricSource {
        rubric: crate::rubric::Rubric::parse(text).context("rubric.toml")?,
        text: text.to_string(),
        calibration: crate::calibration::Calibration::parse(calibration_text)
            .context("calibration.json")?,
        calibration_text: calibration_text.to_string(),
    };
    let mut options = source;
    options
        .local
        .search
        .extend([bundle_dir.to_path_buf(), bundle_dir.join("models")]);
    let opener = Opener::new(options);
    let revisions: Option<Revisions> = files
        .get(REVISIONS)
        .map(|b| serde_json::from_slice(b).context("revisions.json"))
        .transpose()?;
    let models = manifest
        .inputs
        .iter()
        .map(|i| {
            let recorded = revisions
                .as_ref()
                .and_then(|r| r.models.iter().find(|p| p.pinned_reference() == i.pinned));
            open_input(&opener, i, recorded, model_options)
                .with_context(|| format!("opening input {} ({})", i.label, i.pinned))
        })
        .collect::<Result<Vec<Model>>>()?;
    let references: Vec<String> = manifest
        .inputs
        .iter()
        .map(|i| i.reference.clone())
        .collect();
    // The bundled audit.toml carries every parameter the run used; the manifest's list of
    // experiments stands in for bundles whose audit.toml names none.
    let mut config = match files.get("audit.toml") {
        Some(b) => AuditConfig::parse(
            std::str::from_utf8(b).context("audit.toml is not UTF-8")?,
            "audit.toml",
        )?,
        None => AuditConfig::default(),
    };
    if config.experiments.is_none() {
        config.experiments = Some(manifest.experiments.clone());
    }
    let (experiments, _) = config.build_experiments()?;
    let controls: Vec<&Model> = models[2..].iter().collect();
    let subjects = Subjects::new(&models[0], &models[1], &controls);
    let (results, outputs) =
        compare_subjects(&subjects, &references, &experiments, &rubric, &Silent)?;
    let fresh: Value = serde_json::from_slice(&super::assemble::results_json(&results)?)?;
    let bundled: Value =
        serde_json::from_slice(files.get(RESULTS).context("results.json is missing")?)?;
    let mut out: Vec<Difference> = jsondiff::diff(&bundled, &fresh, tol)
        .into_iter()
        .map(|d| Difference {
            path: format!("{RESULTS}{}", d.path.trim_start_matches('$')),
            ..d
        })
        .collect();
    let mut tables = BTreeMap::new();
    for o in &outputs {
        for t in &o.tables {
            tables.insert(format!("data/{}.csv", t.name), t.to_csv()?);
        }
    }
    let bundled_tables = files.keys().filter(|n| n.starts_with("data/"));
    for name in bundled_tables
        .chain(tables.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (a, b) = (files.get(name), tables.get(name));
        let (Some(a), Some(b)) = (a, b) else {
            out.push(Difference {
                path: name.clone(),
                a: if a.is_some() { "present" } else { "(absent)" }.into(),
                b: if b.is_some() { "present" } else { "(absent)" }.into(),
            });
            continue;
        };
        let (a, b) = (jsondiff::csv_as_json(a)?, jsondiff::csv_as_json(b)?);
        out.extend(jsondiff::diff(&a, &b, tol).into_iter().map(|d| Difference {
            path: format!("{name}{}", d.path.trim_start_matches('$')),
            ..d
        }));
    }
    Ok(out)
}
