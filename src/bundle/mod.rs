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
