//! `audit calibrate [--suites lab,adversarial,quant,real] --version V --out FILE` (the library's
//! [`weight_audit::bank`] measures the suites and builds the calibration).

use anyhow::{Context, Result};

use crate::cli::CalibrateArgs;

pub fn run(args: &CalibrateArgs) -> Result<()> {
    let rubric = weight_audit::pipeline::RubricSource::load(args.rubric.as_deref())?;
    let suites: Vec<&str> = args.suites.split(',').map(str::trim).collect();
    let work = match &args.work {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join("weight-audit-calibrate"),
    };
    let ids = weight_audit::experiments::registry::eval_ids();
    let cal = weight_audit::bank::calibrate(&suites, &work, &rubric.rubric, &ids, &args.version)?;
    let text = cal.to_text()?;
    if let Some(parent) = args.out.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&args.out, &text).with_context(|| format!("writing {}", args.out.display()))?;
    let validation = weight_audit::verdict::validate_bank(&rubric.rubric, &cal);
    println!(
        "calibration {} ({} models, {} pairs: {} independent, {} derived) written to {}",
        cal.version,
        cal.models.len(),
        cal.pairs.len(),
        validation.independent_pairs,
        validation.derived_pairs,
        args.out.display()
    );
    println!(
        "leave-one-model-out: {} of {} independent pairs accused (exact {:.0} % upper bound {:.2} %); {} of {} derived pairs found",
        validation.independent_accused,
        validation.independent_pairs,
        validation.confidence * 100.0,
        validation.accused_upper * 100.0,
        validation.derived_detected,
        validation.derived_pairs
    );
    println!(
        "sha256 {}",
        weight_audit::calibration::calibration_hash(&text)
    );
    Ok(())
}
