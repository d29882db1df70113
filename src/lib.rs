//! weight-audit: reproducible, signed audits of LLM weight provenance.
//!
//! Layers, each importing only from those before it in this list (checked by
//! `tests/it/layers.rs` over every non-test source file):
//! `dtype`, `header`, `arch` (parsing); `files`; the math, pure functions: `stats`, `metrics`,
//! `sampling`, `align`, `cka`, `procrustes`, `curves`, `roc`; `source` (local folders and the
//! Hub); `progress`; `model` (inventory and tensor reads); `vocab`; `lab` (synthetic models);
//! `experiments` (one registry; each experiment plans its reads and computes a typed result,
//! its tables derived from that result); `inventory`; `rubric`, `calibration`, `verdict`;
//! `report` (rendered from results); `pipeline` (subjects and experiments in, results and the
//! verdict out: every way to run an audit goes through it); `config`; `bundle`; `hubserver`;
//! `cli` (argument definitions); `commands` (what the CLI runs).

pub mod align;
pub mod arch;
pub mod bundle;
pub mod calibration;
pub mod cka;
pub mod cli;
pub mod commands;
pub mod config;
pub mod curves;
pub mod dtype;
pub mod experiments;
pub mod files;
pub mod header;
pub mod hubserver;
pub mod inventory;
pub mod lab;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod procrustes;
pub mod progress;
pub mod report;
pub mod roc;
pub mod rubric;
pub mod sampling;
pub mod source;
pub mod stats;
pub mod verdict;
pub mod vocab;

/// A check that ran and failed (exit code 1), as opposed to an input or usage error (2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckFailed(pub String);

/// Runs a parsed command line.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Pin(a) => commands::pin::run(&a),
        cli::Command::Inventory(a) => commands::inventory::run(&a),
        cli::Command::Run(a) => commands::run::run(&a),
        cli::Command::Compare(a) => commands::compare::run(&a),
        cli::Command::Demo(a) => commands::demo::run(&a),
        cli::Command::Eval(a) => commands::eval::run(&a),
        cli::Command::Calibrate(a) => commands::calibrate::run(&a),
        cli::Command::Lab(a) => lab::cli::run(a),
        cli::Command::Keygen(a) => commands::keygen::run(&a),
        cli::Command::Verify(a) => commands::verify::run(&a),
        cli::Command::Diff(a) => commands::diff::run(&a),
        cli::Command::HubServe(a) => {
            let repos = hubserver::repos_in_folder(&a.root, !a.no_lfs_sha256)?;
            hubserver::serve_blocking(&a.addr, repos, a.latency_ms)
        }
    }
}
