//! Reading files named by the user (rubric, calibration, configuration, keys, passwords,
//! bundles, results) with a bound enforced while reading, so a pipe or a device given as a file
//! cannot make the tool read without end.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Rubrics, configurations and other small text inputs larger than this are refused.
pub const MAX_SMALL_FILE_BYTES: u64 = 4 << 20;

/// Key and password files larger than this are refused (a minisign key is under 1 KiB).
pub const MAX_KEY_FILE_BYTES: u64 = 64 << 10;

/// Reads a file of at most `max` bytes. The limit is enforced while reading, so it holds for
/// pipes and devices (whose metadata says 0 bytes) as much as for regular files.
pub fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!("{} is larger than the {max} bytes accepted", path.display());
    }
    Ok(bytes)
}

/// Reads a UTF-8 text file of at most `max` bytes; the limit holds for pipes and devices too.
pub fn read_text_limited(path: &Path, max: u64) -> Result<String> {
    String::from_utf8(read_limited(path, max)?)
        .with_context(|| format!("{} is not UTF-8 text", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_or_a_large_file_is_refused_at_the_limit() {
        let err = read_text_limited(Path::new("/dev/zero"), 1000).unwrap_err();
        assert!(format!("{err:#}").contains("/dev/zero"), "{err:#}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.toml");
        std::fs::write(&p, "abc").unwrap();
        assert_eq!(read_text_limited(&p, 3).unwrap(), "abc");
        assert!(read_text_limited(&p, 2).is_err());
        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        assert!(format!("{:#}", read_text_limited(&p, 10).unwrap_err()).contains("UTF-8"));
    }
}
