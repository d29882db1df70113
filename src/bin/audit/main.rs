//! The `audit` command line: clap's types (`cli`), one handler per subcommand (`commands`,
//! `lab_cli`), each a thin layer over the `weight_audit` library.

mod cli;
mod commands;
mod lab_cli;

use std::process::ExitCode;

use clap::Parser;
use weight_audit::CheckFailed;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<CheckFailed>().is_some() {
                ExitCode::from(1)
            } else {
                ExitCode::from(2)
            }
        }
    }
}

/// Runs a parsed command line.
fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Pin(a) => commands::pin::run(&a),
        Command::Inventory(a) => commands::inventory::run(&a),
        Command::Run(a) => commands::run::run(&a),
        Command::Compare(a) => commands::compare::run(&a),
        Command::Demo(a) => commands::demo::run(&a),
        Command::Eval(a) => commands::eval::run(&a),
        Command::Calibrate(a) => commands::calibrate::run(&a),
        Command::Lab(a) => lab_cli::run(a),
        Command::Keygen(a) => commands::keygen::run(&a),
        Command::Verify(a) => commands::verify::run(&a),
        Command::Diff(a) => commands::diff::run(&a),
        #[cfg(feature = "hub-server")]
        Command::HubServe(a) => {
            let repos = weight_audit_hub::repos_in_folder(&a.root, !a.no_lfs_sha256)?;
            weight_audit_hub::serve_blocking(&a.addr, repos, a.latency_ms)
        }
    }
}
