use std::process::ExitCode;

use clap::Parser;
use weight_audit::{CheckFailed, cli::Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match weight_audit::run(cli) {
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
