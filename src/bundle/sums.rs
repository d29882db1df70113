//! `SHA256SUMS` in the coreutils format: `<64 lowercase hex>  <name>\n`, one line per file,
//! sorted by name, so `sha256sum -c SHA256SUMS` checks an extracted bundle.
//!
//! Names that coreutils would have to escape (backslash, newline, carriage return) are
//! refused when writing and when reading.

use std::collections::BTreeMap;

use anyhow::{Result, bail, ensure};
use sha2::{Digest, Sha256};

/// SHA-256 of `bytes` as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn check_name(name: &str) -> Result<()> {
    ensure!(!name.is_empty(), "SHA256SUMS: empty file name");
    ensure!(
        !name.contains(['\\', '\n', '\r', '\0']),
        "SHA256SUMS: file name {name:?} would need escaping"
    );
    Ok(())
}

/// The checksum file for `files` (name → content); BTreeMap order is the sorted order.
pub fn write(files: &BTreeMap<String, Vec<u8>>) -> Result<String> {
    let mut out = String::new();
    for (name, bytes) in files {
        check_name(name)?;
        out.push_str(&sha256_hex(bytes));
        out.push_str("  ");
        out.push_str(name);
        out.push('\n');
    }
    Ok(out)
}

/// Parses a checksum file into name → hex digest. Strict: lowercase hex, two spaces (text
/// mode) or space-star (binary mode), sorted, no duplicates, a final newline.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    ensure!(
        text.is_empty() || text.ends_with('\n'),
        "SHA256SUMS: the last line has no newline"
    );
    let mut previous: Option<&str> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let (digest, rest) = line.split_at_checked(64).unwrap_or((line, ""));
        ensure!(
            digest.len() == 64
                && digest
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "SHA256SUMS line {n}: expected 64 lowercase hex digits"
        );
        let Some(name) = rest.strip_prefix("  ").or_else(|| rest.strip_prefix(" *")) else {
            bail!("SHA256SUMS line {n}: expected two spaces after the digest");
        };
        check_name(name)?;
        if let Some(p) = previous {
            ensure!(
                p < name,
                "SHA256SUMS line {n}: {name:?} is out of order or listed twice"
            );
        }
        previous = Some(name);
        out.insert(name.to_string(), digest.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_coreutils_format() {
        let mut files = BTreeMap::new();
        files.insert("b.txt".to_string(), b"".to_vec());
        files.insert("a/x.csv".to_string(), b"abc".to_vec());
        let text = write(&files).unwrap();
        assert_eq!(
            text,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  a/x.csv\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  b.txt\n"
        );
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed["b.txt"], sha256_hex(b""));
    }

    #[test]
    fn refuses_malformed_lines() {
        let d = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        for bad in [
            format!("{d} a\n"),
            format!("{d}  a"),
            format!("{}  a\n", d.to_uppercase()),
            format!("{d}  b\n{d}  a\n"),
            format!("{d}  a\n{d}  a\n"),
            format!("{d}  a\\b\n"),
            "x\n".to_string(),
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
        let mut files = BTreeMap::new();
        files.insert("a\nb".to_string(), vec![]);
        assert!(write(&files).is_err());
    }
}
