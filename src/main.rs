//! Throwaway entry point for the lab branch (replaced at merge).
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "audit")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Synthetic model families with known ground truth.
    Lab(weight_audit::lab::cli::LabArgs),
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Lab(a) => weight_audit::lab::cli::run(a),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}
