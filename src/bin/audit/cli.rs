//! Command-line definitions (clap) only; behaviour lives in `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "audit",
    version,
    about = "Reproducible, signed audits of LLM weight provenance",
    long_about = "audit answers one question with evidence a stranger can check: was model B derived from model A, or trained independently?\n\nModels are `hf:org/name[@revision]` (Hugging Face Hub, pinned to a commit, read with HTTP Range requests) or a local folder of safetensors files. Exit codes: 0 ok, 1 a check failed, 2 usage or input error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Pin models to commits and record their files with sizes and sha256 (E0a)
    Pin(PinArgs),
    /// List every tensor of a model with dtype, shape, byte range and role (E0b)
    Inventory(InventoryArgs),
    /// Audit B against A end to end: pin, plan, fetch, run the suite, decide, write a signed bundle
    Run(RunArgs),
    /// Compare aligned tensors of two models and controls; write results.json and CSVs
    Compare(CompareArgs),
    /// The built-in audit on lab models (no network): GLM-like base, Solar-like suspect, control
    Demo(DemoArgs),
    /// Every continuous score over a labelled suite, with ROC AUC: which signals separate
    Eval(EvalArgs),
    /// Measure every rule over labelled pairs and write the calibration the verdict rests on
    Calibrate(CalibrateArgs),
    /// Generate synthetic model families with known lineage (the lab)
    Lab(crate::lab_cli::LabArgs),
    /// Serve folders of models as a Hub-compatible endpoint on loopback (tests, benchmarks)
    #[cfg(feature = "hub-server")]
    HubServe(HubServeArgs),
    /// Make a minisign-compatible key pair for signing bundles
    Keygen(KeygenArgs),
    /// Check a bundle: signature, checksums, safety, schema, verdict, reports (--reproduce: re-run)
    Verify(VerifyArgs),
    /// Compare two bundles or results folders: verdict, rule outcomes, numbers beyond tolerance
    Diff(DiffArgs),
}

/// How models are read: shared by every command that opens models.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// Hub endpoint [default: $HF_ENDPOINT or https://huggingface.co]
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Range cache folder [default: the user cache folder/weight-audit]
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not read or write the range cache
    #[arg(long)]
    pub no_cache: bool,
    /// Never touch the network: read only the range cache and the Hub cache (also HF_HUB_OFFLINE=1)
    #[arg(long)]
    pub offline: bool,
    /// HTTP requests in flight at once
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub concurrency: usize,
    /// Merge ranges of one file closer than this many bytes into one request
    #[arg(long, default_value_t = 128 * 1024, value_name = "BYTES")]
    pub coalesce_gap: u64,
    /// Attempts per request before giving up (connection errors, 5xx, 429, short bodies)
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub max_attempts: u32,
    /// Refuse safetensors and GGUF headers larger than this
    #[arg(long, default_value_t = weight_audit::header::DEFAULT_MAX_HEADER_BYTES, value_name = "BYTES")]
    pub max_header_bytes: u64,
    /// Where a local model pinned by content (local:NAME@sha256:…, as bundles and audit.toml
    /// record it) is on this machine; its files are hashed and must match the pin (repeatable)
    #[arg(long = "input", value_name = "NAME=PATH", value_parser = parse_named_input)]
    pub inputs: Vec<(String, PathBuf)>,
    /// Also look for pinned local models as NAME under this folder (repeatable; `verify
    /// --reproduce` always looks next to the bundle and in its models/ folder)
    #[arg(long = "inputs-dir", value_name = "DIR")]
    pub inputs_dirs: Vec<PathBuf>,
}

fn parse_named_input(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=PATH"))?;
    if !weight_audit::source::is_display_name(name) || path.is_empty() {
        return Err(format!(
            "{s:?}: expected NAME=PATH with NAME a model's folder name"
        ));
    }
    Ok((name.to_string(), PathBuf::from(path)))
}

#[derive(Args, Debug)]
pub struct PinArgs {
    /// Models: hf:org/name[@rev][:file], local folders, .gguf or .onnx files
    #[arg(required = true, value_name = "MODEL")]
    pub models: Vec<String>,
    /// Write the pins here instead of stdout
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Args, Debug)]
pub struct InventoryArgs {
    /// Model: hf:org/name[@rev][:file], a local folder, a .gguf or .onnx file
    #[arg(value_name = "MODEL")]
    pub model: String,
    /// Write the CSV here instead of stdout
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The possible origin: hf:org/name[@rev][:file], a local folder, a .gguf or .onnx file
    /// [default: from --config]
    #[arg(value_name = "A")]
    pub a: Option<String>,
    /// The suspect [default: from --config]
    #[arg(value_name = "B")]
    pub b: Option<String>,
    /// A model known to be unrelated to both, compared the same way (repeatable; replaces the
    /// configuration's controls)
    #[arg(long, value_name = "MODEL")]
    pub control: Vec<String>,
    /// audit.toml: models, experiments, parameters, rubric (see README)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Rubric file [default: the configuration's, else the built-in rubric/default.toml]
    #[arg(long, value_name = "FILE")]
    pub rubric: Option<PathBuf>,
    /// Calibration file [default: the configuration's, else the built-in calibration/default.json]
    #[arg(long, value_name = "FILE")]
    pub calibration: Option<PathBuf>,
    /// minisign secret key to sign the bundle with (without it the bundle is unsigned)
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// File holding the key's password (for a password-protected key)
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The bundle to write
    #[arg(long, value_name = "FILE.audit.zip", required_unless_present = "plan")]
    pub out: Option<PathBuf>,
    /// Dry run: print the byte ranges, bytes and requests each experiment needs, fetch nothing
    #[arg(long)]
    pub plan: bool,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The possible origin: hf:org/name[@rev][:file], a local folder, a .gguf or .onnx file
    #[arg(value_name = "A")]
    pub a: String,
    /// The suspect
    #[arg(value_name = "B")]
    pub b: String,
    /// A model known to be unrelated to both, compared the same way (repeatable)
    #[arg(long, value_name = "MODEL")]
    pub control: Vec<String>,
    /// Experiments to run, comma-separated [default: every experiment, e0 to e10]
    #[arg(long, value_name = "IDS")]
    pub experiments: Option<String>,
    /// Folder for results.json and data/*.csv
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Rubric file (default: the built-in rubric/default.toml)
    #[arg(long, value_name = "FILE")]
    pub rubric: Option<PathBuf>,
    /// Calibration file [default: the built-in calibration/default.json]
    #[arg(long, value_name = "FILE")]
    pub calibration: Option<PathBuf>,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[cfg(feature = "hub-server")]
#[derive(Args, Debug)]
pub struct HubServeArgs {
    /// Folder holding ORG/NAME/ model folders, each served as the repository ORG/NAME
    #[arg(value_name = "ROOT")]
    pub root: PathBuf,
    /// Loopback address to listen on
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub addr: String,
    /// Added latency per request, in milliseconds
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub latency_ms: u64,
    /// Do not hash LFS files at start (for huge sparse replicas; the listing then carries
    /// stand-in sha256 values)
    #[arg(long)]
    pub no_lfs_sha256: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder for the demo models and results
    #[arg(long, default_value = "audit-demo", value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Suites of labelled pairs, comma-separated: `lab`, `adversarial` and `quant` (the lab's
    /// synthetic families and GGUF releases of them, generated from fixed seeds) and `real`
    /// (real checkpoints under $WEIGHT_AUDIT_REAL_MODELS, see .ci/run)
    #[arg(
        long,
        default_value = "lab,adversarial,quant,real",
        value_name = "NAMES"
    )]
    pub suites: String,
    /// The calibration file to write
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The calibration's version (recorded in every result that uses it)
    #[arg(long, value_name = "TEXT")]
    pub version: String,
    /// Rubric whose rules are measured (default: the built-in rubric/default.toml)
    #[arg(long, value_name = "FILE")]
    pub rubric: Option<PathBuf>,
    /// Folder for the generated suites [default: the temporary folder]
    #[arg(long, value_name = "DIR")]
    pub work: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// `builtin` (both lab suites below, AUCs side by side in eval_summary.csv), `lab` (the lab's
    /// labelled suite), `adversarial` (the lab's obfuscated pairs), `quant` (GGUF releases of lab
    /// models: requants, a fine-tune then quantised, other seeds' quants), `real` (the real
    /// checkpoints under $WEIGHT_AUDIT_REAL_MODELS, see .ci/run), `calibration` (only the
    /// calibration's own leave-one-model-out tables) or a folder holding suite.json and its
    /// models. Every run also writes eval_rules.csv and eval_verdicts.csv: per rule and per
    /// verdict, leave-one-model-out rates on the calibration's pairs with exact intervals
    #[arg(
        long,
        default_value = "builtin",
        value_name = "builtin|lab|adversarial|quant|real|calibration|DIR"
    )]
    pub suite: String,
    /// Folder for the eval_*.csv tables, the ROC plot eval_roc.svg/.png (and the generated
    /// suite); with `builtin`, one subfolder per suite
    #[arg(long, default_value = "audit-eval", value_name = "DIR")]
    pub out: PathBuf,
    /// Rubric file (default: the built-in rubric/default.toml)
    #[arg(long, value_name = "FILE")]
    pub rubric: Option<PathBuf>,
    /// Calibration file [default: the built-in calibration/default.json]
    #[arg(long, value_name = "FILE")]
    pub calibration: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("protection").required(true).args(["password_file", "no_password"])))]
pub struct KeygenArgs {
    /// Writes PREFIX.key (secret, mode 0600) and PREFIX.pub; never overwrites
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
    /// Protect the secret key with the password in this file's first line (as minisign does)
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Write the secret key without a password (like `minisign -G -W`)
    #[arg(long)]
    pub no_password: bool,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("key").args(["pubkey", "pubkey_base64"])))]
pub struct VerifyArgs {
    /// The bundle (.zip)
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
    /// The signer's public key file (minisign format)
    #[arg(long, value_name = "FILE")]
    pub pubkey: Option<PathBuf>,
    /// The signer's public key as its base64 line
    #[arg(short = 'P', long = "pubkey-base64", value_name = "KEY")]
    pub pubkey_base64: Option<String>,
    /// Accept an unsigned bundle, or check no signature: integrity only, not who wrote it
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Also re-run the audit from the pinned inputs and compare every number
    #[arg(long)]
    pub reproduce: bool,
    /// Accept a signature by the public demo key (anyone can sign with it: it proves nothing
    /// about who made the bundle); without this flag such a bundle fails with a warning
    #[arg(long)]
    pub accept_demo_key: bool,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// A bundle (.zip) or a results folder (holding results.json)
    #[arg(value_name = "A")]
    pub a: PathBuf,
    /// The other bundle or results folder
    #[arg(value_name = "B")]
    pub b: PathBuf,
    /// Relative tolerance for numbers
    #[arg(long, default_value_t = 1e-6, value_name = "REL")]
    pub rel_tol: f64,
    /// Absolute tolerance for numbers
    #[arg(long, default_value_t = 1e-9, value_name = "ABS")]
    pub abs_tol: f64,
}
