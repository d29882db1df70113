//! `audit pin MODEL… [--out revisions.json]` (E0a)

use crate::cli::PinArgs;
use crate::source::{FetchStats, ModelRef, Revisions};
use anyhow::{Context, Result};

/// Pins every model: Hub references to a commit with the listing's sizes and LFS hashes,
/// local folders with every file's size and streamed sha256.
pub fn pin_all(args: &PinArgs) -> Result<(Revisions, FetchStats)> {
    let opener = super::opener(&args.source);
    let mut models = Vec::new();
    let mut stats = FetchStats::default();
    for reference in &args.models {
        let r = ModelRef::parse(reference)?;
        let source = opener.open(&r)?;
        let mut pin = source.pin()?;
        pin.reference = pin.display_reference(reference);
        stats.add(&source.stats());
        models.push(pin);
    }
    Ok((Revisions { models }, stats))
}

pub fn run(args: &PinArgs) -> Result<()> {
    let (revisions, stats) = pin_all(args)?;
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
