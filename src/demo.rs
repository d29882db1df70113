//! The built-in demo's models and headline findings. The lab writes a GLM-like base, a
//! Solar-like suspect initialised from it (head truncation, an inserted layer, a shifted
//! vocabulary, permuted experts, continued pre-training) and an independent Solar-like
//! control; `audit demo` compares them, prints [`findings`] and writes a demo bundle
//! ([`crate::bundle::demo`]).

use std::path::{Path, PathBuf};

use crate::arch::Family;
use crate::experiments::typed::TypedResults;
use anyhow::{Context, Result};
use weight_audit_lab::{self as lab, SuiteOptions};

use crate::bundle::demo::{DemoAudit, demo_bundle_bytes};
use crate::experiments::Output;
use crate::model::{Model, ModelOptions};
use crate::pipeline::{Results, RubricSource, compare_models};
use crate::source::local::LocalSource;

/// The lab models the demo uses: origin, suspect, control.
pub const DEMO_MODELS: [&str; 3] = ["glm-a", "solar-from-glm", "solar-a"];

/// Writes the three demo models under `dir/models`.
pub fn generate_models(dir: &Path) -> Result<[PathBuf; 3]> {
    let mut spec = lab::suite::suite_spec(&SuiteOptions::default());
    spec.models
        .retain(|m| DEMO_MODELS.contains(&m.name.as_str()));
    spec.pairs
        .retain(|p| DEMO_MODELS.contains(&p.a.as_str()) && DEMO_MODELS.contains(&p.b.as_str()));
    let models = dir.join("models");
    lab::generate(&spec, &models).context("generating the demo models")?;
    Ok(DEMO_MODELS.map(|m| models.join(m)))
}

/// The demo audit, run: the three models as opened, how they are named, and what the pipeline
/// made of them (every default experiment, the built-in rubric and calibration). `audit
/// demo`, the tests and the benchmarks all run it through [`DemoRun::run`].
pub struct DemoRun {
    /// Origin, suspect and control, as opened.
    pub models: Vec<Model>,
    /// How each model is named in results (`glm-a`, …).
    pub references: Vec<String>,
    /// The experiments run (every default one).
    pub experiments: Vec<String>,
    /// The built-in rubric and calibration.
    pub rubric: RubricSource,
    /// What `results.json` holds.
    pub results: Results,
    /// Each experiment's output (its result and tables).
    pub outputs: Vec<Output>,
}

impl DemoRun {
    /// Writes the demo models under `dir/models` and compares them.
    pub fn run(dir: &Path) -> Result<DemoRun> {
        let paths = generate_models(dir)?;
        let models = paths
            .iter()
            .map(|p| Model::open(Box::new(LocalSource::open(p)?), &ModelOptions::default()))
            .collect::<Result<Vec<_>>>()?;
        let references: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        let experiments = crate::experiments::registry::default_ids();
        let rubric = RubricSource::load(None)?;
        let (results, outputs) = compare_models(
            &models[0],
            &models[1],
            &[&models[2]],
            &references,
            &experiments,
            &rubric,
        )?;
        Ok(DemoRun {
            models,
            references,
            experiments,
            rubric,
            results,
            outputs,
        })
    }

    /// The audit as the demo bundle records it.
    pub fn audit(&self) -> DemoAudit<'_> {
        DemoAudit {
            models: &self.models,
            references: &self.references,
            experiments: &self.experiments,
            rubric: &self.rubric,
            results: &self.results,
            outputs: &self.outputs,
        }
    }

    /// The demo bundle's bytes (signed with the public demo key; same models, same bytes).
    pub fn bundle_bytes(&self) -> Result<Vec<u8>> {
        demo_bundle_bytes(&self.audit())
    }
}

/// A number to three decimals, "n/a" when undefined.
fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "n/a".into()
    }
}

/// The headline findings, each beside its control, as plain text.
pub fn findings(results: &TypedResults) -> String {
    let mut lines = vec![
        "A = GLM-like base, B = Solar-like suspect, C1 = independent Solar-like control"
            .to_string(),
    ];
    if let Some(e2) = &results.e2 {
        for s in e2.stats.iter().filter(|s| s.family == Family::InputNorm) {
            lines.push(format!(
                "E2 input_norm {:7} {}: same-layer mean {} vs wrong-layer {} (z {})",
                s.metric,
                s.pair,
                num(s.same_index.mean),
                num(s.off_diagonal.mean),
                num(s.z_vs_off_diagonal),
            ));
        }
    }
    if let Some(e4) = &results.e4 {
        for a in e4
            .alignments
            .iter()
            .filter(|a| a.metric == "pearson" && a.family == Family::PostAttentionNorm)
        {
            lines.push(format!(
                "E4 post_attention_norm {}: monotone alignment p = {} ({} of B's layers matched to A's same index)",
                a.pair,
                num(a.p_value),
                num(a.identity_rate_monotone),
            ));
        }
    }
    if let Some(e5) = &results.e5 {
        let prefix: Vec<_> = e5
            .rows
            .iter()
            .filter(|r| r.relation == "prefix" && r.primary)
            .collect();
        if let Some(r) = prefix.first() {
            lines.push(format!(
                "E5 attn_q prefix test A~B: B's q_proj vs A's first rows pearson {} (vs A's last rows {}), {} layers",
                num(r.pearson),
                num(r.suffix_pearson.unwrap_or(f64::NAN)),
                prefix.len()
            ));
        }
    }
    lines.join("\n")
}
