//! One audit from question to bundle, as `audit run` runs it: pin every input (E0a), open and inventory every
//! model (E0b), plan every byte range the suite needs before fetching any, fetch one batch
//! per model, run the suite, apply the rubric, render the reports, write the bundle.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::bundle::SecretKey;
use crate::config::{self, AuditConfig, Effective, Models};
use crate::experiments::estimate::{Coalescing, Estimate, estimate};
use crate::experiments::{self, Output, Subjects};
use crate::model::{Model, ModelOptions};
use crate::pipeline::{Results, RubricSource};
use crate::progress::{Console, Progress, Silent};
use crate::source::{FetchStats, ModelRef, Opener, Pin, Revisions, SourceOptions, human_bytes};

/// What a finished audit holds before it is packaged.
pub struct Audit {
    /// The pipeline's results (results.json).
    pub results: Results,
    /// Each experiment's output (tables and figures).
    pub outputs: Vec<Output>,
    /// Each input's pin (`revisions.json`).
    pub revisions: Revisions,
    /// The effective configuration (pinned models, every parameter).
    pub audit_toml: String,
    /// The rubric and calibration the verdict was decided by.
    pub rubric: RubricSource,
    /// The experiments and parameters it ran with.
    pub effective: Effective,
    /// What reading cost, over all models.
    pub stats: FetchStats,
}

/// The models and settings of a run, after the command line has been applied to the
/// configuration file.
pub struct Request {
    /// The configuration with the command line applied.
    pub config: AuditConfig,
    /// The rubric and calibration to decide by.
    pub rubric: RubricSource,
}

impl Request {
    /// A request from a configuration: its rubric and calibration are loaded here (the
    /// built-in ones when it names none).
    pub fn new(config: AuditConfig) -> Result<Request> {
        let rubric =
            RubricSource::load_with(config.rubric.as_deref(), config.calibration.as_deref())?;
        Ok(Request { config, rubric })
    }

    /// References in subject order: A, B, controls.
    pub fn references(&self) -> Result<Vec<String>> {
        let m = &self.config.models;
        let (Some(a), Some(b)) = (&m.a, &m.b) else {
            bail!("name the models to audit: `audit run A B` or [models] a and b in --config");
        };
        let mut refs = vec![a.clone(), b.clone()];
        refs.extend(m.controls.iter().cloned());
        Ok(refs)
    }
}

/// A model opened for the audit, with its pin.
pub struct Opened {
    /// The opened model.
    pub model: Model,
    /// What was read, pinned.
    pub pin: Pin,
}

/// Pins and opens every model (E0a + E0b).
pub fn open_all(
    references: &[String],
    source: &SourceOptions,
    options: &ModelOptions,
) -> Result<(Opener, Vec<Opened>)> {
    let opener = Opener::new(source.clone());
    let mut opened = Vec::new();
    for reference in references {
        let src = opener.open(&ModelRef::parse(reference)?)?;
        let mut pin = src.pin().with_context(|| format!("pinning {reference}"))?;
        pin.reference = pin.display_reference(reference);
        let model = Model::open(src, options).with_context(|| format!("opening {reference}"))?;
        opened.push(Opened { model, pin });
    }
    Ok((opener, opened))
}

/// Runs the audit a request describes.
pub fn audit(
    request: &Request,
    source: &SourceOptions,
    options: &ModelOptions,
    show_progress: bool,
) -> Result<Audit> {
    let references = request.references()?;
    let (built, effective) = request.config.build_experiments()?;
    let (_opener, opened) = open_all(&references, source, options)?;
    let models: Vec<&Model> = opened.iter().map(|o| &o.model).collect();
    let subjects = Subjects::new(models[0], models[1], &models[2..]);
    let steps = experiments::fetched_models(&subjects, &built) + built.len();
    let console = show_progress.then(|| Console::new(steps as u64));
    let progress: &dyn Progress = match &console {
        Some(c) => c,
        None => &Silent,
    };
    let computed = crate::pipeline::compare_subjects(
        &subjects,
        &references,
        &built,
        &request.rubric,
        progress,
    );
    if let Some(c) = &console {
        c.finish();
    }
    let (results, outputs) = computed?;
    let pinned = Models {
        a: Some(opened[0].pin.pinned_reference()),
        b: Some(opened[1].pin.pinned_reference()),
        controls: opened[2..]
            .iter()
            .map(|o| o.pin.pinned_reference())
            .collect(),
    };
    let audit_toml = config::effective_toml(&pinned, &effective, &results.rubric.sha256)?;
    let mut stats = FetchStats::default();
    for o in &opened {
        stats.add(&o.model.source().stats());
    }
    Ok(Audit {
        results,
        outputs,
        revisions: Revisions {
            models: opened.into_iter().map(|o| o.pin).collect(),
        },
        audit_toml,
        rubric: request.rubric.clone(),
        effective,
        stats,
    })
}

/// `--plan`: what the run would read, per experiment and model, without reading it.
pub fn plan(
    request: &Request,
    source: &SourceOptions,
    options: &ModelOptions,
) -> Result<(Estimate, FetchStats)> {
    let references = request.references()?;
    let (built, _) = request.config.build_experiments()?;
    let (opener, opened) = open_all(&references, source, options)?;
    let models: Vec<&Model> = opened.iter().map(|o| &o.model).collect();
    let subjects = Subjects::new(models[0], models[1], &models[2..]);
    let hub = opener.options().hub.clone();
    let est = estimate(
        &subjects,
        &built,
        Coalescing {
            gap: hub.coalesce_gap,
            max_span: hub.max_span,
        },
    )?;
    let mut stats = FetchStats::default();
    for o in &opened {
        stats.add(&o.model.source().stats());
    }
    Ok((est, stats))
}

/// The plan as a table.
pub fn plan_text(est: &Estimate, coalesce_gap: u64) -> String {
    let mut lines = vec![format!(
        "{:<10} {:<5} {:>8} {:>11} {:>9} {:>11}",
        "experiment", "model", "ranges", "bytes", "requests", "transfer"
    )];
    let row = |name: &str, label: &str, c: &crate::experiments::estimate::Cost| {
        format!(
            "{:<10} {:<5} {:>8} {:>11} {:>9} {:>11}",
            name,
            label,
            c.ranges,
            human_bytes(c.bytes),
            c.requests,
            human_bytes(c.transfer_bytes)
        )
    };
    for e in &est.experiments {
        for (label, c) in est.labels.iter().zip(&e.models) {
            if c.ranges > 0 {
                lines.push(row(&e.id, label, c));
            }
        }
    }
    for (label, c) in est.labels.iter().zip(&est.total) {
        lines.push(row("total", label, c));
    }
    let planned: u64 = est.total.iter().map(|c| c.transfer_bytes).sum();
    let logical: u64 = est.logical_bytes.iter().sum();
    let requests: usize = est.total.iter().map(|c| c.requests).sum();
    lines.push(format!(
        "total: {requests} requests, {} of {} of weights ({:.3} %), ranges closer than {} merged",
        human_bytes(planned),
        human_bytes(logical),
        100.0 * planned as f64 / logical.max(1) as f64,
        human_bytes(coalesce_gap),
    ));
    lines.push(
        "also read, outside the plan: config, tokenizer and code files (E0, E0c, E1b, E8), and \
         E3's tier-2 confirmation hashes, only for tensors whose sampled blocks matched"
            .into(),
    );
    lines.join("\n")
}

/// Packages an audit as a bundle at `out`; returns its size.
pub fn write_bundle(audit: &Audit, key: Option<&SecretKey>, out: &Path) -> Result<u64> {
    let zip = bundle_bytes(audit, &bundle_name(out), key)?;
    std::fs::write(out, &zip).with_context(|| format!("writing {}", out.display()))?;
    Ok(zip.len() as u64)
}

/// The bundle's name: its file name without `.audit.zip` / `.zip`.
pub fn bundle_name(out: &Path) -> String {
    let file = out
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "audit".into());
    let stem = file
        .strip_suffix(".audit.zip")
        .or_else(|| file.strip_suffix(".zip"))
        .unwrap_or(&file);
    if stem.is_empty() {
        "audit".into()
    } else {
        stem.to_string()
    }
}

/// The bundle's bytes: the same audit, name and key always give the same bytes.
pub fn bundle_bytes(audit: &Audit, name: &str, key: Option<&SecretKey>) -> Result<Vec<u8>> {
    let parameters = audit
        .effective
        .params
        .iter()
        .map(|(id, p)| Ok((id.clone(), serde_json::to_value(p)?)))
        .collect::<Result<_>>()?;
    let inputs = crate::bundle::assemble_audit(&crate::bundle::AuditRecord {
        name: name.to_string(),
        results: &audit.results,
        outputs: &audit.outputs,
        rubric: &audit.rubric,
        audit_toml: audit.audit_toml.clone(),
        revisions: &audit.revisions.models,
        experiments: &audit.effective.experiments,
        parameters,
    })?;
    crate::bundle::write_bundle(&inputs, key)
}

/// Pins every model: Hub references to a commit with the listing's sizes and LFS hashes,
/// local folders with every file's size and streamed sha256 (E0a, what `audit pin` prints).
pub fn pin_all(references: &[String], source: &SourceOptions) -> Result<(Revisions, FetchStats)> {
    let opener = Opener::new(source.clone());
    let mut models = Vec::new();
    let mut stats = FetchStats::default();
    for reference in references {
        let src = opener.open(&ModelRef::parse(reference)?)?;
        let mut pin = src.pin()?;
        pin.reference = pin.display_reference(reference);
        stats.add(&src.stats());
        models.push(pin);
    }
    Ok((Revisions { models }, stats))
}
