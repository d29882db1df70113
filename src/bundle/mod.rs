//! Signed, byte-reproducible audit bundles that strangers can check.
//!
//! A bundle is a flat zip of stored entries (`archive_write`, read back strictly by
//! `archive_read`): `manifest.json` (`manifest`), `results.json`, reports, `data/*.csv`,
//! `revisions.json`, `rubric.toml`, `audit.toml`, then `SHA256SUMS` over every other file
//! (`sums`) and `SHA256SUMS.minisig`, a minisign signature (`minisign`, keys in `seckey`).
//! `assemble` + `write` make one; `verify` checks one; `reproduce` re-runs one;
//! `jsondiff` is the one tolerance comparison of results.

pub mod archive_read;
pub mod archive_write;
pub mod assemble;
pub mod demo;
pub mod jsondiff;
pub mod manifest;
pub mod minisign;
pub mod render_hook;
pub mod reproduce;
pub mod seckey;
pub mod sums;
pub mod verify;
pub mod write;

pub use assemble::{AuditRecord, assemble_audit};
pub use minisign::{PublicKey, SecretKey, Signature};
pub use verify::{Renderer, Verified, VerifyOptions, verify_bundle, verify_bundle_default};
pub use write::{BundleInputs, write_bundle};

/// Reads a bundle file, refusing one over the size limit before reading it, and anything but
/// a regular file (a pipe or a device could only be read up to the limit, a gigabyte, to fail).
pub fn read_bundle(
    path: &std::path::Path,
    limits: &archive_read::Limits,
) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        return Err(crate::CheckFailed(format!(
            "{}: not a regular file (a bundle is read from a file, not a pipe or a device)",
            path.display()
        ))
        .into());
    }
    if meta.len() > limits.max_archive_bytes {
        return Err(crate::CheckFailed(format!(
            "{}: {} bytes, over the bundle size limit of {}",
            path.display(),
            meta.len(),
            limits.max_archive_bytes
        ))
        .into());
    }
    crate::files::read_limited(path, limits.max_archive_bytes)
}
