//! `audit inventory MODEL [--out tensors.csv]`

use std::fs::File;
use std::io::BufWriter;

use anyhow::{Context, Result};

use crate::cli::InventoryArgs;
use weight_audit::inventory;

pub fn run(args: &InventoryArgs) -> Result<()> {
    let opener = super::opener(&args.source);
    let model = super::open_model(&opener, &args.model, &args.source)?;
    for p in model.index_problems() {
        eprintln!("warning: {}: {p}", model.describe());
    }
    match &args.out {
        Some(path) => {
            let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
            inventory::write_csv(&model, BufWriter::new(f))?;
        }
        None => inventory::write_csv(&model, std::io::stdout().lock())?,
    }
    eprintln!(
        "inventory: {}: {}; {}",
        model.describe(),
        inventory::summary(&model),
        model.source().stats().summary()
    );
    Ok(())
}
