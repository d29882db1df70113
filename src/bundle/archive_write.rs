//! Writes the bundle zip so that the same files give the same bytes: entries sorted by name,
//! stored (no compression: deflate output may change between encoder versions), one fixed
//! timestamp, Unix "made by" with mode 0644, no extra fields, no data descriptors.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};

use anyhow::{Context, Result, ensure};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, System, ZipWriter};

/// A zip timestamp (UTC civil time, 2-second resolution, 1980–2107).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZipTime {
    /// Year, 1980–2107.
    pub year: u16,
    /// Month, 1–12.
    pub month: u8,
    /// Day of the month, 1–31.
    pub day: u8,
    /// Hour, 0–23.
    pub hour: u8,
    /// Minute, 0–59.
    pub minute: u8,
    /// Second, 0–58 (even: zip stores two-second steps).
    pub second: u8,
}

impl ZipTime {
    /// The zip epoch, used when `SOURCE_DATE_EPOCH` is not set.
    pub const DEFAULT: ZipTime = ZipTime {
        year: 1980,
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
    };

    /// Converts Unix seconds to UTC civil time, clamped to what zip can store (a
    /// `SOURCE_DATE_EPOCH` of 0 becomes 1980-01-01; seconds round down to even).
    pub fn from_unix(secs: i64) -> ZipTime {
        const MIN: i64 = 315_532_800; // 1980-01-01T00:00:00Z
        const MAX: i64 = 4_354_819_198; // 2107-12-31T23:59:58Z
        let secs = secs.clamp(MIN, MAX);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Civil-from-days (Howard Hinnant's algorithm), valid for the proleptic Gregorian calendar.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        ZipTime {
            year: year as u16,
            month: month as u8,
            day: day as u8,
            hour: (rem / 3600) as u8,
            minute: (rem % 3600 / 60) as u8,
            second: (rem % 60 / 2 * 2) as u8,
        }
    }

    /// `SOURCE_DATE_EPOCH` when set (reproducible-builds convention), else the default.
    pub fn from_env() -> Result<ZipTime> {
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) => {
                let secs: i64 = v
                    .trim()
                    .parse()
                    .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a whole number"))?;
                Ok(ZipTime::from_unix(secs))
            }
            Err(_) => Ok(ZipTime::DEFAULT),
        }
    }
}

/// The zip image of `files` (name → content), in name order.
pub fn write(files: &BTreeMap<String, Vec<u8>>, time: ZipTime) -> Result<Vec<u8>> {
    let stamp = DateTime::from_date_and_time(
        time.year,
        time.month,
        time.day,
        time.hour,
        time.minute,
        time.second,
    )
    .map_err(|e| anyhow::anyhow!("zip timestamp {time:?}: {e}"))?;
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(stamp)
        .system(System::Unix)
        .unix_permissions(0o644)
        .large_file(false);
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in files {
        ensure!(
            super::archive_read::check_name(name).is_ok(),
            "refusing to write a bundle entry named {name:?}"
        );
        zip.start_file(name.as_str(), options)
            .with_context(|| format!("zip entry {name}"))?;
        zip.write_all(bytes)
            .with_context(|| format!("zip entry {name}"))?;
    }
    Ok(zip.finish().context("finishing the zip")?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_to_civil_utc() {
        assert_eq!(ZipTime::from_unix(0), ZipTime::DEFAULT);
        assert_eq!(
            ZipTime::from_unix(1_700_000_001),
            ZipTime {
                year: 2023,
                month: 11,
                day: 14,
                hour: 22,
                minute: 13,
                second: 20
            }
        );
        // Leap day.
        assert_eq!(ZipTime::from_unix(951_782_400).month, 2);
        assert_eq!(ZipTime::from_unix(951_782_400).day, 29);
        assert_eq!(ZipTime::from_unix(i64::MAX).year, 2107);
    }

    #[test]
    fn same_files_same_bytes() {
        let mut files = BTreeMap::new();
        files.insert("b".to_string(), b"2".to_vec());
        files.insert("a/c.csv".to_string(), b"1".to_vec());
        let one = write(&files, ZipTime::DEFAULT).unwrap();
        let two = write(&files, ZipTime::DEFAULT).unwrap();
        assert_eq!(one, two);
        let other = write(&files, ZipTime::from_unix(1_700_000_000)).unwrap();
        assert_ne!(one, other);
    }
}
