//! `audit lab …` command line.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::arch::ArchKind;

/// `audit lab`: deterministic synthetic model families with known ground truth.
#[derive(Args, Debug)]
pub struct LabArgs {
    #[command(subcommand)]
    cmd: LabCommand,
}

#[derive(Subcommand, Debug)]
enum LabCommand {
    /// Generate the models and pairs of a TOML spec.
    Generate {
        /// Spec file (TOML: [[model]] and [[pair]] tables).
        #[arg(long)]
        spec: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Generate the built-in evaluation suite (models + suite.json + spec.toml).
    Suite {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Residual width (multiple of 64).
        #[arg(long, default_value_t = 256)]
        hidden: usize,
        /// Base seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Generate one model of an architecture.
    Model {
        /// Architecture.
        #[arg(long, value_enum)]
        arch: ArchKind,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Residual width (multiple of 64).
        #[arg(long, default_value_t = 256)]
        hidden: usize,
        /// Weight seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Write the GLM-4.5-Air / Solar-Open-100B / Phi-3.5-MoE replicas.
    Replica {
        /// Output folder (gets glm-4.5-air/, solar-open-100b/ and phi-3.5-moe/).
        #[arg(long)]
        out: PathBuf,
        /// Real 4096-wide shapes (needs --sparse).
        #[arg(long)]
        full_size: bool,
        /// Sparse files: only the documented tensors hold data.
        #[arg(long)]
        sparse: bool,
        /// Residual width when not --full-size.
        #[arg(long, default_value_t = 256)]
        hidden: usize,
        /// Base seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Transform any model folder (lab or real).
    Transform {
        /// Input model folder.
        input: PathBuf,
        /// Transforms: a TOML file with [[transform]] tables, or inline `op(k=v,…)+op(…)`
        /// (e.g. `fine_tune(rel=0.02,seed=1)+rename_scheme(scheme=t5)`; schemes: albert,
        /// distilbert, t5, whisper, falcon, bloom, gpt_neox, gemma3, generic, nonsense).
        #[arg(long = "with")]
        with: String,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Run an `audit lab` command.
pub fn run(args: LabArgs) -> Result<()> {
    match args.cmd {
        LabCommand::Generate { spec, out } => {
            let text = std::fs::read_to_string(&spec)
                .with_context(|| format!("reading {}", spec.display()))?;
            let spec =
                super::spec::parse_spec(&text).with_context(|| format!("in {}", spec.display()))?;
            let m = super::generate(&spec, &out)?;
            println!(
                "wrote {} models, {} pairs to {}",
                m.models.len(),
                m.pairs.len(),
                out.display()
            );
        }
        LabCommand::Suite { out, hidden, seed } => {
            let m = super::generate_suite(&out, &super::SuiteOptions { hidden, seed })?;
            println!(
                "wrote {} models, {} labelled pairs to {}",
                m.models.len(),
                m.pairs.len(),
                out.join("suite.json").display()
            );
        }
        LabCommand::Model {
            arch,
            out,
            hidden,
            seed,
        } => {
            let spec = super::spec::ModelSpec {
                name: "model".into(),
                arch: Some(arch),
                seed: Some(seed),
                hidden: Some(hidden),
                ..Default::default()
            };
            super::generate_model(&spec, &out)?;
            println!("wrote {}", out.display());
        }
        LabCommand::Replica {
            out,
            full_size,
            sparse,
            hidden,
            seed,
        } => {
            let r = super::replica(
                &out,
                &super::ReplicaOptions {
                    full_size,
                    sparse,
                    hidden,
                    seed,
                },
            )?;
            for m in r {
                println!(
                    "{}: {} shards, {} tensors, {:.2} GB logical, {:.3} GB of data -> {}",
                    m.name,
                    m.shards,
                    m.tensors,
                    m.logical_bytes as f64 / 1e9,
                    m.data_bytes as f64 / 1e9,
                    m.dir.display()
                );
            }
        }
        LabCommand::Transform { input, with, out } => {
            let text = if std::path::Path::new(&with).is_file() {
                std::fs::read_to_string(&with).with_context(|| format!("reading {with}"))?
            } else {
                with.clone()
            };
            let specs = super::transform::parse_transforms(&text)?;
            super::transform(&input, &specs, &out)?;
            println!("wrote {}", out.display());
        }
    }
    Ok(())
}
