//! The calibration bank, built: measures every rule of the rubric over labelled pairs — the
//! lab's synthetic families and real checkpoints ([`real`]) — into the calibration file the
//! verdict's thresholds and error rates come from (see [`crate::calibration`] and
//! [`crate::verdict`]); `audit calibrate` writes it and `audit eval` reads the same suites.
//!
//! The default calibration is rebuilt by one command (README, "Calibration"):
//! `audit calibrate --suites lab,adversarial,quant,real --out calibration/default.json`.
//! The same suites and rubric give the same bytes: lab models are generated from fixed seeds,
//! real ones are pinned by package version and content digest, values are rounded to nine
//! significant digits, and nothing about the machine or the time is written.

pub mod real;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::calibration::{
    BankModel, BankPair, Calibration, FORMAT, Origin, PairKind, RuleValues, Truth,
};
use crate::experiments::{self, Experiment, Subjects, round9};
use crate::model::{Model, ModelOptions};
use crate::rubric::{Rubric, evaluate_for};
use crate::source::local::LocalSource;
use weight_audit_lab::{self as lab, Label, SuiteOptions};

/// A labelled suite on disk: a folder with `suite.json`, and how its models are named and
/// pinned in the bank.
pub struct BankSuite {
    /// Prefix of the model and pair ids (`lab`, `adversarial`, `real`).
    pub name: String,
    /// The suite's folder (holds `suite.json`).
    pub dir: PathBuf,
    /// Whether the suite's models are real checkpoints or made by the lab.
    pub origin: Origin,
    /// For real models: each model path (as in suite.json) → (id, pin). Lab models are
    /// named after their folder.
    pub real_models: BTreeMap<String, (String, String)>,
}

impl BankSuite {
    /// A folder of labelled pairs (suite.json) whose models are all synthetic.
    pub fn folder(name: &str, dir: &Path) -> BankSuite {
        BankSuite {
            name: name.into(),
            dir: dir.to_path_buf(),
            origin: Origin::Synthetic,
            real_models: BTreeMap::new(),
        }
    }

    fn model_id(&self, path: &str) -> String {
        match self.real_models.get(path) {
            Some((id, _)) => id.clone(),
            None => format!("{}:{}", self.name, path.trim_start_matches("models/")),
        }
    }

    fn model_pin(&self, path: &str) -> String {
        match self.real_models.get(path) {
            Some((_, pin)) => pin.clone(),
            None => format!("audit lab: the {} suite's model {path}", self.name),
        }
    }

    fn model_path(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

/// The sha256 over the sorted (relative path, size, sha256) of what the audit reads from a
/// model folder: its top-level `*.safetensors`, `*.gguf` and `*.json` files.
pub fn content_digest(dir: &Path) -> Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for f in crate::source::local::list_files(dir)? {
        let top = !f.path.contains('/');
        let weights = [".safetensors", ".gguf", ".json"];
        if !(top && weights.iter().any(|e| f.path.ends_with(e))) {
            continue;
        }
        let sum = crate::source::local::sha256_file(&dir.join(&f.path))
            .with_context(|| format!("hashing {}", dir.join(&f.path).display()))?;
        h.update(format!("{}\t{}\t{sum}\n", f.path, f.size).as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

fn open(dir: &Path) -> Result<Model> {
    Model::open(Box::new(LocalSource::open(dir)?), &ModelOptions::default())
}

/// One labelled pair's results, with the bank ids of its models.
pub struct Measured {
    /// The pair's id in its suite (the bank's id is prefixed with the suite's name).
    pub id: String,
    /// The pair as the bank records it: model ids, kind and truth.
    pub pair: BankPair,
    /// Each experiment's results for the pair, by experiment id.
    pub results: BTreeMap<String, Value>,
}

/// Runs `experiments` over every pair of a suite, one pair at a time.
pub fn measure(suite: &BankSuite, experiments: &[Box<dyn Experiment>]) -> Result<Vec<Measured>> {
    measure_where(suite, experiments, &|_| true)
}

/// [`measure`] over the pairs whose suite id `keep` accepts.
pub fn measure_where(
    suite: &BankSuite,
    experiments: &[Box<dyn Experiment>],
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<Measured>> {
    let manifest = lab::load_manifest(&suite.dir)?;
    let mut out = Vec::new();
    for pair in manifest.pairs.iter().filter(|p| keep(&p.id)) {
        let (a, b) = (
            open(&suite.model_path(&pair.a))?,
            open(&suite.model_path(&pair.b))?,
        );
        let subjects = Subjects::new(&a, &b, &[]);
        let results = experiments::run_all(&subjects, experiments)
            .with_context(|| format!("{} pair {}", suite.name, pair.id))?
            .into_iter()
            .map(|o| (o.id.to_string(), o.result))
            .collect();
        out.push(Measured {
            id: pair.id.clone(),
            pair: BankPair {
                id: format!("{}:{}", suite.name, pair.id),
                a: suite.model_id(&pair.a),
                b: suite.model_id(&pair.b),
                truth: match pair.label {
                    Label::Derived => Truth::Derived,
                    Label::Independent => Truth::Independent,
                },
                relation: pair.relation.clone(),
                kind: PairKind::from_configs(a.config(), b.config()),
            },
            results,
        });
    }
    Ok(out)
}

/// The models of a suite as the bank lists them (pinned and content-hashed).
pub fn bank_models(suite: &BankSuite) -> Result<Vec<BankModel>> {
    let manifest = lab::load_manifest(&suite.dir)?;
    let mut paths: Vec<&str> = manifest
        .pairs
        .iter()
        .flat_map(|p| [p.a.as_str(), p.b.as_str()])
        .collect();
    paths.sort();
    paths.dedup();
    let mut models = Vec::new();
    for p in paths {
        let origin = if suite.real_models.contains_key(p) {
            Origin::Real
        } else {
            Origin::Synthetic
        };
        models.push(BankModel {
            id: suite.model_id(p),
            origin,
            pin: suite.model_pin(p),
            sha256: content_digest(&suite.model_path(p))?,
        });
    }
    Ok(models)
}

/// Builds a calibration from measured pairs: every rule's value on every pair.
pub fn build(
    rubric: &Rubric,
    version: &str,
    models: Vec<BankModel>,
    measured: &[Measured],
) -> Result<Calibration> {
    let mut by_id: BTreeMap<String, BankModel> = BTreeMap::new();
    for m in models {
        if let Some(seen) = by_id.get(&m.id)
            && seen.sha256 != m.sha256
        {
            bail!(
                "calibration model {:?} appears twice with different content",
                m.id
            );
        }
        by_id.insert(m.id.clone(), m);
    }
    let pairs: Vec<BankPair> = measured.iter().map(|m| m.pair.clone()).collect();
    let rules = rubric
        .rules
        .iter()
        .map(|rule| RuleValues {
            rule: rule.id.clone(),
            selector: rule.selector(),
            values: measured
                .iter()
                .map(|m| {
                    let v = evaluate_for(rule, &m.results, "A~B").0;
                    v.is_finite().then(|| round9(v))
                })
                .collect(),
        })
        .collect();
    let c = Calibration {
        format: FORMAT.into(),
        version: version.into(),
        models: by_id.into_values().collect(),
        pairs,
        rules,
    };
    // What is written must read back.
    Calibration::parse(&c.to_text()?).context("the calibration just built")?;
    Ok(c)
}

/// Generates (lab, adversarial) or prepares (real) a suite under `work`.
pub fn prepare_suite(name: &str, work: &Path) -> Result<BankSuite> {
    let dir = work.join(name);
    match name {
        "lab" => {
            lab::generate_suite(&dir, &SuiteOptions::default())?;
            Ok(BankSuite::folder(name, &dir))
        }
        "adversarial" | "quant" => {
            let narrow = SuiteOptions {
                hidden: 128,
                ..SuiteOptions::default()
            };
            if name == "adversarial" {
                lab::generate_adversarial_suite(&dir, &narrow)?;
            } else {
                lab::generate_quant_suite(&dir, &narrow)?;
            }
            Ok(BankSuite::folder(name, &dir))
        }
        "real" => {
            let models = real::RealModels::from_env()?;
            let dir = real::prepare(&models, &dir)?;
            Ok(BankSuite {
                name: name.into(),
                dir,
                origin: Origin::Real,
                real_models: models.bank_names(),
            })
        }
        other => {
            bail!("unknown calibration suite {other:?} (known: lab, adversarial, quant, real)")
        }
    }
}

/// Measures the named suites and builds the calibration.
pub fn calibrate(
    suites: &[&str],
    work: &Path,
    rubric: &Rubric,
    experiment_ids: &[&str],
    version: &str,
) -> Result<Calibration> {
    let experiments: Vec<Box<dyn Experiment>> = experiment_ids
        .iter()
        .map(|id| experiments::by_id(id))
        .collect::<Result<_>>()?;
    let mut models = Vec::new();
    let mut measured = Vec::new();
    for name in suites {
        eprintln!("calibrate: measuring the {name} suite");
        let suite = prepare_suite(name, work)?;
        models.extend(bank_models(&suite)?);
        measured.extend(measure(&suite, &experiments)?);
    }
    build(rubric, version, models, &measured)
}
