//! `audit lab …` command line.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use weight_audit_lab::arch::ArchKind;

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
        arch: Arch,
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
    /// Write a model folder (llama, glm4_moe or bert) as one GGUF file, as llama.cpp's
    /// converter and `llama-quantize` (no importance matrix) would.
    Gguf {
        /// Input model folder.
        input: PathBuf,
        /// How 2-D weights are stored: F32, F16, Q8_0, Q5_0, Q4_0, Q4_K or Q6_K (vectors stay
        /// F32; K-quant rows not a multiple of 256 fall back as llama-quantize does).
        #[arg(long = "type", default_value = "Q8_0")]
        quant: String,
        /// Output file (`*.gguf`).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a full-size dense model (Llama-3-8B's shapes and vocabulary) as one sparse GGUF:
    /// multi-GB logical size, only the first rows of each weight hold data (the rest are holes).
    SparseGguf {
        /// Architecture (a dense one: llama or bert).
        #[arg(long, value_enum, default_value_t = Arch::Llama)]
        arch: Arch,
        /// How 2-D weights are stored (as for `audit lab gguf`).
        #[arg(long = "type", default_value = "Q8_0")]
        quant: String,
        /// Rows of each weight that hold data.
        #[arg(long, default_value_t = 16)]
        rows: usize,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output file (`*.gguf`).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a model folder (llama or bert) as ONNX, as `torch.onnx.export` would (fp32), or
    /// that export through onnxruntime's `quantize_dynamic` (int8, per output channel), with
    /// `config.json` and `tokenizer.json` beside it.
    Onnx {
        /// Input model folder.
        input: PathBuf,
        /// fp32 or int8.
        #[arg(long = "type", default_value = "fp32")]
        export: String,
        /// Output file (`*.onnx`); its folder gets the config and tokenizer.
        #[arg(long)]
        out: PathBuf,
    },
}

/// The lab's architectures as `--arch` names them (clap stays out of the library, so the
/// binary mirrors [`ArchKind`]; the two matches below keep the lists equal both ways).
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Arch {
    /// GLM-4.5-Air layout (`glm4_moe`).
    Glm4Moe,
    /// Solar-Open-100B layout (`solar_open`).
    SolarOpen,
    /// Phi-3.5-MoE layout (`phimoe`).
    Phimoe,
    /// Dense Llama-3 layout (`llama`).
    Llama,
    /// BERT encoder (`bert`).
    Bert,
}

impl From<Arch> for ArchKind {
    fn from(a: Arch) -> ArchKind {
        match a {
            Arch::Glm4Moe => ArchKind::Glm4Moe,
            Arch::SolarOpen => ArchKind::SolarOpen,
            Arch::Phimoe => ArchKind::Phimoe,
            Arch::Llama => ArchKind::Llama,
            Arch::Bert => ArchKind::Bert,
        }
    }
}

impl From<ArchKind> for Arch {
    fn from(a: ArchKind) -> Arch {
        match a {
            ArchKind::Glm4Moe => Arch::Glm4Moe,
            ArchKind::SolarOpen => Arch::SolarOpen,
            ArchKind::Phimoe => Arch::Phimoe,
            ArchKind::Llama => Arch::Llama,
            ArchKind::Bert => Arch::Bert,
        }
    }
}

/// Run an `audit lab` command.
pub fn run(args: LabArgs) -> Result<()> {
    match args.cmd {
        LabCommand::Generate { spec, out } => {
            let text = std::fs::read_to_string(&spec)
                .with_context(|| format!("reading {}", spec.display()))?;
            let spec = weight_audit_lab::spec::parse_spec(&text)
                .with_context(|| format!("in {}", spec.display()))?;
            let m = weight_audit_lab::generate(&spec, &out)?;
            println!(
                "wrote {} models, {} pairs to {}",
                m.models.len(),
                m.pairs.len(),
                out.display()
            );
        }
        LabCommand::Suite { out, hidden, seed } => {
            let m = weight_audit_lab::generate_suite(
                &out,
                &weight_audit_lab::SuiteOptions { hidden, seed },
            )?;
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
            let spec = weight_audit_lab::spec::ModelSpec {
                name: "model".into(),
                arch: Some(arch.into()),
                seed: Some(seed),
                hidden: Some(hidden),
                ..Default::default()
            };
            weight_audit_lab::generate_model(&spec, &out)?;
            println!("wrote {}", out.display());
        }
        LabCommand::Replica {
            out,
            full_size,
            sparse,
            hidden,
            seed,
        } => {
            let r = weight_audit_lab::replica(
                &out,
                &weight_audit_lab::ReplicaOptions {
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
            let specs = weight_audit_lab::transform::parse_transforms(&text)?;
            weight_audit_lab::transform(&input, &specs, &out)?;
            println!("wrote {}", out.display());
        }
        LabCommand::Gguf { input, quant, out } => {
            let quant = weight_audit_lab::gguf::GgufQuant::parse(&quant)?;
            let model = weight_audit_lab::read_model(&input)?;
            weight_audit_lab::gguf::write_gguf(&model, &out, quant)?;
            println!("wrote {}", out.display());
        }
        LabCommand::SparseGguf {
            arch,
            quant,
            rows,
            seed,
            out,
        } => {
            let quant = weight_audit_lab::gguf::GgufQuant::parse(&quant)?;
            let w = weight_audit_lab::gguf_sparse::write_sparse_gguf(
                ArchKind::from(arch),
                seed,
                quant,
                rows,
                &out,
            )?;
            println!(
                "wrote {}: {} tensors, {:.2} GB logical, {:.1} MB of data",
                out.display(),
                w.tensors,
                w.logical_bytes as f64 / 1e9,
                w.data_bytes as f64 / 1e6
            );
        }
        LabCommand::Onnx { input, export, out } => {
            let export = weight_audit_lab::onnx::OnnxExport::parse(&export)?;
            let model = weight_audit_lab::read_model(&input)?;
            weight_audit_lab::onnx::write_onnx(&model, &out, export)?;
            println!("wrote {}", out.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lab_architecture_has_its_flag_value_and_back() {
        for kind in ArchKind::ALL {
            let arch = Arch::from(kind);
            assert_eq!(ArchKind::from(arch), kind);
            let name = arch.to_possible_value().map(|v| v.get_name().to_string());
            assert_eq!(
                name.as_deref(),
                Some(kind.model_type().replace('_', "-").as_str())
            );
        }
    }
}
