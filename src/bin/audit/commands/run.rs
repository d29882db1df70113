//! `audit run A B [--control C]… [--config audit.toml] [--key FILE] --out FILE.audit.zip`
//! (the library's [`weight_audit::audit`] does the work).

use anyhow::{Result, bail};
use weight_audit::audit::{Request, audit, plan, plan_text, write_bundle};
use weight_audit::config::AuditConfig;
use weight_audit::source::human_bytes;

use crate::cli::RunArgs;

/// The configuration file (if any) with the command line on top: models given on the
/// command line replace the file's; `--rubric` and `--calibration` replace the file's.
fn request(args: &RunArgs) -> Result<Request> {
    let mut config = match &args.config {
        Some(p) => AuditConfig::load(p)?,
        None => AuditConfig::default(),
    };
    if let Some(a) = &args.a {
        config.models.a = Some(a.clone());
    }
    if let Some(b) = &args.b {
        config.models.b = Some(b.clone());
    }
    if !args.control.is_empty() {
        config.models.controls = args.control.clone();
    }
    if args.rubric.is_some() {
        config.rubric = args.rubric.clone();
    }
    if args.calibration.is_some() {
        config.calibration = args.calibration.clone();
    }
    Request::new(config)
}

pub fn run(args: &RunArgs) -> Result<()> {
    let request = request(args)?;
    let source = super::source_options(&args.source);
    let options = super::model_options(&args.source);
    if args.plan {
        let (est, stats) = plan(&request, &source, &options)?;
        println!("{}", plan_text(&est, args.source.coalesce_gap));
        eprintln!(
            "plan: nothing fetched beyond listings and headers; {}",
            stats.summary()
        );
        return Ok(());
    }
    let Some(out) = &args.out else {
        bail!("--out FILE.audit.zip is required unless --plan is given");
    };
    let key = match &args.key {
        Some(p) => Some(weight_audit::bundle::seckey::load(
            p,
            args.password_file.as_deref(),
        )?),
        None => None,
    };
    let show_progress = true;
    let audit = audit(&request, &source, &options, show_progress)?;
    let zip = write_bundle(&audit, key.as_ref(), out)?;
    println!("{}", super::compare::verdict_text(&audit.results.decision));
    println!("bundle: {} ({})", out.display(), human_bytes(zip));
    if key.is_none() {
        eprintln!("run: the bundle is unsigned (no --key); `audit verify` will say so");
    }
    eprintln!("run: {}", audit.stats.summary());
    Ok(())
}
