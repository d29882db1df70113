//! `audit pin MODEL… [--out revisions.json]` (E0a)

use anyhow::{Context, Result};

use crate::cli::PinArgs;

pub fn run(args: &PinArgs) -> Result<()> {
    let (revisions, stats) =
        weight_audit::audit::pin_all(&args.models, &super::source_options(&args.source))?;
    let mut json = serde_json::to_string_pretty(&revisions)?;
    json.push('\n');
    match &args.out {
        Some(path) => {
            std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{json}"),
    }
    eprintln!(
        "pin: {} model(s); {}",
        revisions.models.len(),
        stats.summary()
    );
    Ok(())
}
