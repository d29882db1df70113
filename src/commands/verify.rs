//! `audit verify BUNDLE (--pubkey FILE | -P KEY | --allow-unsigned) [--reproduce] [--accept-demo-key]`
//!
//! Prints each check; exits 0 only when all pass (1 when one fails, naming the file and
//! what differs). With `--reproduce`, re-runs the audit from its pinned inputs and compares
//! every number within [`Tolerance::RERUN`].

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::CheckFailed;
use crate::bundle::archive_read::Limits;
use crate::bundle::jsondiff::Tolerance;
use crate::bundle::{PublicKey, VerifyOptions, reproduce, verify_bundle_default};
use crate::cli::VerifyArgs;

/// Reads a bundle file, refusing one over the size limit before reading it, and anything but
/// a regular file (a pipe or a device could only be read up to the limit, a gigabyte, to fail).
pub fn read_bundle(path: &Path, limits: &Limits) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        return Err(CheckFailed(format!(
            "{}: not a regular file (a bundle is read from a file, not a pipe or a device)",
            path.display()
        ))
        .into());
    }
    if meta.len() > limits.max_archive_bytes {
        return Err(CheckFailed(format!(
            "{}: {} bytes, over the bundle size limit of {}",
            path.display(),
            meta.len(),
            limits.max_archive_bytes
        ))
        .into());
    }
    crate::files::read_limited(path, limits.max_archive_bytes)
}

fn public_key(args: &VerifyArgs) -> Result<Option<PublicKey>> {
    if let Some(path) = &args.pubkey {
        let text = crate::files::read_text_limited(path, crate::files::MAX_KEY_FILE_BYTES)
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
    let zip = read_bundle(&args.bundle, &limits)?;
    let verified = verify_bundle_default(&zip, &opts);
    println!("{}", verified.text());
    if let Some(why) = verified.failure() {
        return Err(CheckFailed(format!("{}: {why}", args.bundle.display())).into());
    }
    if opts.public_key.as_ref() == Some(&crate::bundle::demo::demo_key().public_key()) {
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
            &crate::model::ModelOptions {
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
