//! `audit.toml`: everything that determines an audit's result — the models (pinned), the
//! experiments, their parameters and the rubric. How bytes are fetched (endpoint, cache,
//! concurrency) is not in it: it changes cost, never results.
//!
//! The bundle carries the *effective* configuration: every parameter written out, defaults
//! included, and every model reference pinned to a commit, so re-running it reproduces the
//! audit even after the tool's defaults change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::experiments::{self, Experiment};

/// The models of an audit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Models {
    /// The possible origin.
    pub a: Option<String>,
    /// The suspect.
    pub b: Option<String>,
    /// Models known to be unrelated to both.
    #[serde(default)]
    pub controls: Vec<String>,
}

/// `audit.toml` as a user writes it: every field optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Models A, B and the controls.
    #[serde(default)]
    pub models: Models,
    /// Experiment ids in the order they run (default: the whole suite).
    pub experiments: Option<Vec<String>>,
    /// Rubric file, relative to the configuration file (default: the built-in rubric).
    pub rubric: Option<PathBuf>,
    /// Calibration file, relative to the configuration file (default: the built-in one).
    pub calibration: Option<PathBuf>,
    /// Per-experiment parameters (`[params.e8]`), overriding the defaults.
    #[serde(default)]
    pub params: BTreeMap<String, toml::Table>,
}

impl AuditConfig {
    /// Parses `text` as `audit.toml`; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<AuditConfig> {
        toml::from_str(text).with_context(|| format!("{origin}: not a valid audit configuration"))
    }

    /// Reads a configuration file; relative rubric and calibration paths are resolved next to it.
    pub fn load(path: &Path) -> Result<AuditConfig> {
        let text = crate::files::read_text_limited(path, crate::files::MAX_SMALL_FILE_BYTES)
            .with_context(|| format!("reading configuration {}", path.display()))?;
        let mut config = AuditConfig::parse(&text, &path.display().to_string())?;
        let beside = |r: &Option<PathBuf>| match r {
            Some(r) if r.is_relative() => Some(path.parent().unwrap_or(Path::new(".")).join(r)),
            other => other.clone(),
        };
        config.rubric = beside(&config.rubric);
        config.calibration = beside(&config.calibration);
        Ok(config)
    }

    /// The experiment ids, validated, in order.
    pub fn experiment_ids(&self) -> Result<Vec<String>> {
        let ids: Vec<String> = match &self.experiments {
            Some(ids) => ids.iter().map(|i| i.trim().to_string()).collect(),
            None => crate::experiments::registry::default_ids(),
        };
        if ids.is_empty() {
            bail!("the configuration names no experiments");
        }
        for id in self.params.keys() {
            if !ids.contains(id) {
                bail!("[params.{id}] is given but experiment {id} does not run");
            }
        }
        Ok(ids)
    }

    /// Builds every experiment with its parameters, and the parameters in effect.
    pub fn build_experiments(&self) -> Result<(Vec<Box<dyn Experiment>>, Effective)> {
        let ids = self.experiment_ids()?;
        let mut built = Vec::new();
        let mut params = BTreeMap::new();
        for id in &ids {
            let (e, p) = experiments::configured(id, self.params.get(id))?;
            built.push(e);
            params.insert(id.clone(), p);
        }
        Ok((
            built,
            Effective {
                experiments: ids,
                params,
            },
        ))
    }
}

/// The experiments and parameters an audit actually ran with.
#[derive(Clone, Debug, PartialEq)]
pub struct Effective {
    /// Experiment ids in the order they ran.
    pub experiments: Vec<String>,
    /// Every experiment's parameters, defaults included, by experiment id.
    pub params: BTreeMap<String, toml::Table>,
}

/// Writes the effective `audit.toml` that goes into a bundle: pinned models, the experiments,
/// every parameter, and the bundled rubric and calibration.
pub fn effective_toml(
    pinned: &Models,
    effective: &Effective,
    rubric_sha256: &str,
) -> Result<String> {
    let config = AuditConfig {
        models: pinned.clone(),
        experiments: Some(effective.experiments.clone()),
        rubric: Some(PathBuf::from("rubric.toml")),
        calibration: Some(PathBuf::from("calibration.json")),
        params: effective.params.clone(),
    };
    let body = toml::to_string(&config).context("writing audit.toml")?;
    Ok(format!(
        "# Everything that determined this audit's result (models pinned to revisions, every\n\
         # parameter written out). Re-run it with: audit run --config audit.toml --out AUDIT.zip\n\
         # rubric.toml sha256: {rubric_sha256}\n\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_override_defaults_and_unknown_keys_are_refused() {
        let c = AuditConfig::parse(
            "experiments = [\"e1\", \"e8\"]\n[params.e8]\nrow_fraction = 0.5\n",
            "t",
        )
        .unwrap();
        let (built, eff) = c.build_experiments().unwrap();
        assert_eq!(built.len(), 2);
        assert_eq!(eff.params["e8"]["row_fraction"].as_float(), Some(0.5));
        // Defaults are written out too.
        assert_eq!(eff.params["e1"]["windows"].as_integer(), Some(4));

        let typo = AuditConfig::parse("[params.e8]\nrow_fractoin = 0.5\n", "t").unwrap();
        let err = format!("{:#}", typo.build_experiments().err().unwrap());
        assert!(err.contains("e8") && err.contains("row_fractoin"), "{err}");

        let not_run =
            AuditConfig::parse("experiments = [\"e1\"]\n[params.e8]\nseed = 1\n", "t").unwrap();
        assert!(not_run.build_experiments().is_err());
        assert!(AuditConfig::parse("colour = 1\n", "t").is_err());
        assert!(
            AuditConfig::parse("experiments = [\"e42\"]\n", "t")
                .unwrap()
                .build_experiments()
                .is_err()
        );
    }

    #[test]
    fn the_effective_configuration_reads_back_as_the_same_audit() {
        let c = AuditConfig::parse("[params.e4]\npermutations = 2000\n", "t").unwrap();
        let (_, eff) = c.build_experiments().unwrap();
        let models = Models {
            a: Some("hf:o/a@0123".into()),
            b: Some("hf:o/b@4567".into()),
            controls: vec!["hf:o/c@89ab".into()],
        };
        let text = effective_toml(&models, &eff, "00").unwrap();
        let back = AuditConfig::parse(&text, "t").unwrap();
        assert_eq!(back.models, models);
        let (_, eff2) = back.build_experiments().unwrap();
        assert_eq!(eff2, eff);
        assert_eq!(eff2.params["e4"]["permutations"].as_integer(), Some(2000));
        // Same inputs, same bytes.
        assert_eq!(text, effective_toml(&models, &eff, "00").unwrap());
    }
}
