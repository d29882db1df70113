//! `audit verify BUNDLE (--pubkey FILE | -P KEY | --allow-unsigned) [--reproduce] [--accept-demo-key]`
//!
//! Prints each check; exits 0 only when all pass (1 when one fails, naming the file and
//! what differs). With `--reproduce`, re-runs the audit from its pinned inputs and compares
//! every number within [`Tolerance::RERUN`].

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::cli::VerifyArgs;
use weight_audit::CheckFailed;
use weight_audit::bundle::archive_read::Limits;
use weight_audit::bundle::jsondiff::Tolerance;
use weight_audit::bundle::{PublicKey, VerifyOptions, reproduce, verify_bundle_default};

fn public_key(args: &VerifyArgs) -> Result<Option<PublicKey>> {
    if let Some(path) = &args.pubkey {
        let text =
            weight_audit::files::read_text_limited(path, weight_audit::files::MAX_KEY_FILE_BYTES)
                .with_context(|| format!("reading public key {}", path.display()))?;
        return PublicKey::parse(&text)
            .with_context(|| format!("public key {}", path.display()))
            .map(Some);
    }
    if let Some(b64) = &args.pubkey_base64 {
        return PublicKey::from_base64(b64).map(Some);
    }
    if !args.allow_unsigned {
        bail!("give the signer's public key (--pubkey FILE or -P KEY), or --allow-unsigned");
    }
    Ok(None)
}

pub fn run(args: &VerifyArgs) -> Result<()> {
    let limits = Limits::default();
    let opts = VerifyOptions {
        public_key: public_key(args)?,
        allow_unsigned: args.allow_unsigned,
        limits,
    };
    let zip = weight_audit::bundle::read_bundle(&args.bundle, &limits)?;
    let verified = verify_bundle_default(&zip, &opts);
    println!("{}", verified.text());
    if let Some(why) = verified.failure() {
        return Err(CheckFailed(format!("{}: {why}", args.bundle.display())).into());
    }
    if opts.public_key.as_ref() == Some(&weight_audit::bundle::demo::demo_key().public_key()) {
        eprintln!(
            "WARNING: {} is signed by the public demo key. Its secret is published with this tool, so anyone can sign with it: the signature proves the bundle is intact, nothing about who made it.",
            args.bundle.display()
        );
        if !args.accept_demo_key {
            return Err(CheckFailed(format!(
                "{}: signed by the public demo key (pass --accept-demo-key to accept it)",
                args.bundle.display()
            ))
            .into());
        }
    }
    if args.reproduce {
        let manifest = verified
            .manifest
            .as_ref()
            .context("verified bundle without a manifest")?;
        let dir = args
            .bundle
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tol = Tolerance::RERUN;
        eprintln!("reproduce: re-running the audit from its pinned inputs");
        let diffs = reproduce::reproduce(
            &verified.files,
            manifest,
            dir,
            crate::commands::source_options(&args.source),
            &weight_audit::model::ModelOptions {
                max_header_bytes: args.source.max_header_bytes,
            },
            tol,
        )?;
        if !diffs.is_empty() {
            for d in diffs.iter().take(20) {
                println!("FAIL  reproduce  {d}");
            }
            return Err(CheckFailed(format!(
                "{}: the re-run differs in {} value(s) beyond tolerance ({tol}); first: {}",
                args.bundle.display(),
                diffs.len(),
                diffs[0]
            ))
            .into());
        }
        println!(
            "ok    reproduce  every number of results.json and data/*.csv matches a re-run ({tol})"
        );
    }
    println!("bundle verified: {}", args.bundle.display());
    Ok(())
}
