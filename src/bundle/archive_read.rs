//! Reads a bundle zip in memory, strictly, never extracting anything.
//!
//! A bundle is written by one program in one way (see `archive_write`), so the reader
//! accepts only that shape and says exactly what is wrong with anything else: each problem
//! has its own message naming the entry. Refused: zip64 and multi-disk archives, encrypted
//! or compressed entries, directories, symlinks and other non-regular files, names that are
//! absolute, contain `..`, backslashes or control characters, duplicate names, local
//! headers that disagree with the central directory, overlapping entries or bytes that no
//! entry accounts for (hidden data), CRC mismatches, and too many or too large entries.

use anyhow::{Result, bail, ensure};

/// Bounds on what a bundle may hold (zip bombs, memory).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest archive accepted, in bytes (default 1 GiB).
    pub max_archive_bytes: u64,
    /// Most entries accepted (default 10 000).
    pub max_entries: usize,
    /// Largest uncompressed entry, in bytes (default 512 MiB).
    pub max_entry_bytes: u64,
    /// Largest total uncompressed size, in bytes (default 1 GiB).
    pub max_total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_archive_bytes: 1 << 30,
            max_entries: 10_000,
            max_entry_bytes: 512 << 20,
            max_total_bytes: 1 << 30,
        }
    }
}

/// One file of the archive: its bytes are a slice of the archive, never a copy, so reading
/// a bundle costs its size and little more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The entry's path in the archive.
    pub name: String,
    /// The entry's bytes, borrowed from the archive (stored, not compressed).
    pub data: &'a [u8],
}

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
const UNIX: u8 = 3;
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Whether an entry name is a safe relative path (also used by the writer).
pub fn check_name(name: &str) -> Result<()> {
    ensure!(!name.is_empty(), "an entry has an empty name");
    ensure!(
        !name.contains('\\'),
        "entry {name:?}: backslash in the name (a Windows path separator)"
    );
    ensure!(
        !(name.starts_with('/') || (name.len() >= 2 && name.as_bytes()[1] == b':')),
        "entry {name:?}: absolute path"
    );
    ensure!(
        !name.chars().any(char::is_control),
        "entry {name:?}: control character in the name"
    );
    for part in name.split('/') {
        ensure!(part != "..", "entry {name:?}: `..` path component");
        ensure!(
            !part.is_empty() && part != ".",
            "entry {name:?}: empty or `.` path component"
        );
    }
    Ok(())
}

struct Central {
    name: String,
    flags: u16,
    method: u16,
    crc: u32,
    size: u64,
    offset: u64,
}

fn find_end_record(zip: &[u8]) -> Result<usize> {
    ensure!(
        zip.len() >= 22,
        "not a zip: {} bytes is too short",
        zip.len()
    );
    let lowest = zip.len().saturating_sub(22 + 0xffff);
    // The end record's comment length must reach exactly to the end of the file.
    let at = (lowest..=zip.len() - 22)
        .rev()
        .find(|&at| {
            u32_at(zip, at) == Some(EOCD_SIG)
                && u16_at(zip, at + 20).map(usize::from) == Some(zip.len() - at - 22)
        })
        .ok_or_else(|| anyhow::anyhow!("not a zip: no end of central directory record"))?;
    // Nothing a bundle holds lives in a comment: bytes there are signed by nothing.
    let comment = zip.len() - at - 22;
    ensure!(
        comment == 0,
        "the archive carries a {comment}-byte comment: bytes no signed entry accounts for (the writer never emits one)"
    );
    Ok(at)
}

fn read_central(zip: &[u8], limits: &Limits) -> Result<(Vec<Central>, usize)> {
    let eocd = find_end_record(zip)?;
    if eocd >= 20 && u32_at(zip, eocd - 20) == Some(ZIP64_LOCATOR_SIG) {
        bail!("zip64 archive: a bundle never needs one");
    }
    let field = |o: usize| u16_at(zip, eocd + o).unwrap_or(0);
    ensure!(
        field(4) == 0 && field(6) == 0 && field(8) == field(10),
        "multi-disk (spanned) zip archives are not supported"
    );
    let count = usize::from(field(10));
    let cd_size = u32_at(zip, eocd + 12).unwrap_or(0) as usize;
    let cd_offset = u32_at(zip, eocd + 16).unwrap_or(0) as usize;
    ensure!(
        count != 0xffff && cd_size != 0xffff_ffff && cd_offset != 0xffff_ffff,
        "zip64 archive: a bundle never needs one"
    );
    ensure!(
        count <= limits.max_entries,
        "too many entries: {count}, over the limit of {}",
        limits.max_entries
    );
    ensure!(
        cd_offset.checked_add(cd_size) == Some(eocd),
        "the central directory ({cd_size} bytes at {cd_offset}) does not end where the end record starts ({eocd}): damaged or hidden data"
    );
    let mut entries = Vec::with_capacity(count);
    let mut at = cd_offset;
    for i in 0..count {
        let h = zip
            .get(at..at + 46)
            .filter(|h| u32_at(h, 0) == Some(CENTRAL_SIG));
        let Some(h) = h else {
            bail!("central directory entry #{i} at {at} is damaged");
        };
        let made_by_os = h[5];
        let flags = u16_at(h, 8).unwrap_or(0);
        let method = u16_at(h, 10).unwrap_or(0);
        let crc = u32_at(h, 16).unwrap_or(0);
        let csize = u32_at(h, 20).unwrap_or(0);
        let usize_ = u32_at(h, 24).unwrap_or(0);
        let name_len = usize::from(u16_at(h, 28).unwrap_or(0));
        let extra_len = usize::from(u16_at(h, 30).unwrap_or(0));
        let comment_len = usize::from(u16_at(h, 32).unwrap_or(0));
        let disk = u16_at(h, 34).unwrap_or(0);
        let external = u32_at(h, 38).unwrap_or(0);
        let offset = u32_at(h, 42).unwrap_or(0);
        let name_bytes = zip.get(at + 46..at + 46 + name_len);
        let Some(name_bytes) = name_bytes else {
            bail!("central directory entry #{i}: name runs past the directory");
        };
        let Ok(name) = std::str::from_utf8(name_bytes) else {
            bail!("central directory entry #{i}: name is not UTF-8");
        };
        let name = name.to_string();
        ensure!(
            extra_len == 0,
            "entry {name:?}: {extra_len} bytes of central extra fields, which no signed entry accounts for (the writer never emits any)"
        );
        ensure!(
            comment_len == 0,
            "entry {name:?}: a {comment_len}-byte entry comment, which no signed entry accounts for (the writer never emits one)"
        );
        at += 46 + name_len + extra_len + comment_len;
        ensure!(
            at <= eocd,
            "entry {name:?}: central record runs past the directory"
        );
        ensure!(
            csize != 0xffff_ffff && usize_ != 0xffff_ffff && offset != 0xffff_ffff && disk == 0,
            "entry {name:?}: zip64 or multi-disk fields"
        );
        ensure!(
            flags & 0x41 == 0,
            "entry {name:?}: encrypted entry (bundles are never encrypted)"
        );
        ensure!(
            method == 0,
            "entry {name:?}: compressed with method {method} (bundle entries are stored)"
        );
        ensure!(
            !name.ends_with('/'),
            "entry {name:?}: directory entry (bundles hold files only)"
        );
        if made_by_os == UNIX {
            let kind = (external >> 16) & S_IFMT;
            ensure!(kind != S_IFLNK, "entry {name:?}: symbolic link");
            ensure!(
                kind == 0 || kind == S_IFREG,
                "entry {name:?}: not a regular file (unix type {kind:o})"
            );
        }
        check_name(&name)?;
        ensure!(
            csize == usize_,
            "entry {name:?}: stored entry whose compressed size ({csize}) differs from its size ({usize_})"
        );
        ensure!(
            u64::from(usize_) <= limits.max_entry_bytes,
            "entry {name:?}: {usize_} bytes, over the per-entry limit of {}",
            limits.max_entry_bytes
        );
        entries.push(Central {
            name,
            flags,
            method,
            crc,
            size: u64::from(usize_),
            offset: u64::from(offset),
        });
    }
    ensure!(
        at == eocd,
        "the central directory has {} bytes beyond its {count} entries: damaged or hidden data",
        eocd - at
    );
    Ok((entries, cd_offset))
}

/// Reads every entry, in archive order, after checking all of the above.
pub fn read<'a>(zip: &'a [u8], limits: &Limits) -> Result<Vec<Entry<'a>>> {
    ensure!(
        zip.len() as u64 <= limits.max_archive_bytes,
        "the archive is {} bytes, over the limit of {}",
        zip.len(),
        limits.max_archive_bytes
    );
    let (central, cd_offset) = read_central(zip, limits)?;
    let mut seen = std::collections::BTreeSet::new();
    let mut total: u64 = 0;
    for c in &central {
        ensure!(
            seen.insert(c.name.as_str()),
            "entry {:?}: appears twice",
            c.name
        );
        total += c.size;
        ensure!(
            total <= limits.max_total_bytes,
            "entry {:?}: the entries add up to more than the limit of {} bytes",
            c.name,
            limits.max_total_bytes
        );
    }
    // Local records must tile the space before the central directory exactly, in order:
    // no overlaps (one byte range read as two files) and no gaps (hidden data).
    let mut order: Vec<&Central> = central.iter().collect();
    order.sort_by_key(|c| c.offset);
    let mut expected_at = 0usize;
    let mut by_offset = Vec::with_capacity(order.len());
    for c in order {
        let name = &c.name;
        let at = c.offset as usize;
        ensure!(
            at == expected_at,
            "entry {name:?}: local record at {at}, expected at {expected_at} (overlapping entries or hidden data)"
        );
        let h = zip
            .get(at..at + 30)
            .filter(|h| u32_at(h, 0) == Some(LOCAL_SIG));
        let Some(h) = h else {
            bail!("entry {name:?}: local header at {at} is damaged");
        };
        let flags = u16_at(h, 6).unwrap_or(0);
        let method = u16_at(h, 8).unwrap_or(0);
        let crc = u32_at(h, 14).unwrap_or(0);
        let csize = u64::from(u32_at(h, 18).unwrap_or(0));
        let usize_ = u64::from(u32_at(h, 22).unwrap_or(0));
        let name_len = usize::from(u16_at(h, 26).unwrap_or(0));
        let extra_len = usize::from(u16_at(h, 28).unwrap_or(0));
        ensure!(
            extra_len == 0,
            "entry {name:?}: {extra_len} bytes of local extra fields, which no signed entry accounts for (the writer never emits any)"
        );
        let local_name = zip.get(at + 30..at + 30 + name_len);
        let sizes_agree = if flags & 0x08 != 0 {
            // Sizes live in a data descriptor: not something this writer produces.
            false
        } else {
            crc == c.crc && csize == c.size && usize_ == c.size
        };
        ensure!(
            local_name == Some(name.as_bytes())
                && flags == c.flags
                && method == c.method
                && sizes_agree,
            "entry {name:?}: local header disagrees with the central directory"
        );
        let start = at + 30 + name_len + extra_len;
        let end = start.saturating_add(c.size as usize);
        ensure!(
            end <= cd_offset,
            "entry {name:?}: data runs past the start of the central directory"
        );
        let data = &zip[start..end];
        let actual = crc32fast::hash(data);
        ensure!(
            actual == c.crc,
            "entry {name:?}: CRC mismatch (recorded {:08x}, computed {actual:08x})",
            c.crc
        );
        expected_at = end;
        by_offset.push((c.offset, data));
    }
    ensure!(
        expected_at == cd_offset,
        "{} bytes between the last entry and the central directory: hidden data",
        cd_offset - expected_at
    );
    let data_at: std::collections::BTreeMap<u64, &[u8]> = by_offset.into_iter().collect();
    Ok(central
        .iter()
        .map(|c| Entry {
            name: c.name.clone(),
            data: data_at.get(&c.offset).copied().unwrap_or_default(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn files() -> BTreeMap<String, Vec<u8>> {
        let mut f = BTreeMap::new();
        f.insert("a.txt".to_string(), b"alpha".to_vec());
        f.insert("data/b.csv".to_string(), b"x,y\n1,2\n".to_vec());
        f
    }

    #[test]
    fn reads_what_the_writer_writes() {
        let zip = super::super::archive_write::write(
            &files(),
            super::super::archive_write::ZipTime::DEFAULT,
        )
        .unwrap();
        let entries = read(&zip, &Limits::default()).unwrap();
        let got: BTreeMap<String, Vec<u8>> = entries
            .into_iter()
            .map(|e| (e.name, e.data.to_vec()))
            .collect();
        assert_eq!(got, files());
    }

    #[test]
    fn names_are_checked() {
        for (bad, why) in [
            ("../x", "`..`"),
            ("a/../x", "`..`"),
            ("/etc/passwd", "absolute"),
            ("C:/x", "absolute"),
            ("a\\b", "backslash"),
            ("a//b", "empty"),
            ("./a", "`.`"),
            ("a\u{1}", "control"),
        ] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        check_name("plots/e4.svg").unwrap();
    }

    #[test]
    fn limits_are_enforced() {
        let zip = super::super::archive_write::write(
            &files(),
            super::super::archive_write::ZipTime::DEFAULT,
        )
        .unwrap();
        let tight = Limits {
            max_entries: 1,
            ..Limits::default()
        };
        assert!(
            read(&zip, &tight)
                .unwrap_err()
                .to_string()
                .contains("too many entries")
        );
        let tight = Limits {
            max_entry_bytes: 6,
            ..Limits::default()
        };
        assert!(
            read(&zip, &tight)
                .unwrap_err()
                .to_string()
                .contains("per-entry limit")
        );
        let tight = Limits {
            max_total_bytes: 10,
            ..Limits::default()
        };
        assert!(
            read(&zip, &tight)
                .unwrap_err()
                .to_string()
                .contains("add up")
        );
        let tight = Limits {
            max_archive_bytes: 10,
            ..Limits::default()
        };
        assert!(
            read(&zip, &tight)
                .unwrap_err()
                .to_string()
                .contains("archive is")
        );
    }

    /// Where hidden bytes go in [`inject`].
    #[derive(Clone, Copy, Debug)]
    enum Hidden {
        ArchiveComment,
        CentralExtra,
        CentralComment,
        LocalExtra,
    }

    fn put16(b: &mut [u8], at: usize, v: usize) {
        b[at..at + 2].copy_from_slice(&u16::try_from(v).unwrap().to_le_bytes());
    }

    fn put32(b: &mut [u8], at: usize, v: usize) {
        b[at..at + 4].copy_from_slice(&u32::try_from(v).unwrap().to_le_bytes());
    }

    /// The writer's zip with `payload` hidden at `place` of its first entry (or the archive),
    /// every length and offset fixed up so that only the hidden bytes are wrong.
    fn inject(zip: &[u8], place: Hidden, payload: &[u8]) -> Vec<u8> {
        let eocd = zip.len() - 22;
        let cd_offset = u32_at(zip, eocd + 16).unwrap() as usize;
        let cd_size = u32_at(zip, eocd + 12).unwrap() as usize;
        let k = payload.len();
        let mut end = zip[eocd..].to_vec();
        match place {
            Hidden::ArchiveComment => {
                put16(&mut end, 20, k);
                [&zip[..eocd], &end, payload].concat()
            }
            Hidden::CentralExtra | Hidden::CentralComment => {
                let name_len = usize::from(u16_at(zip, cd_offset + 28).unwrap());
                let record_end = cd_offset + 46 + name_len;
                let mut head = zip[cd_offset..record_end].to_vec();
                put16(
                    &mut head,
                    if matches!(place, Hidden::CentralExtra) {
                        30
                    } else {
                        32
                    },
                    k,
                );
                put32(&mut end, 12, cd_size + k);
                [
                    &zip[..cd_offset],
                    &head,
                    payload,
                    &zip[record_end..eocd],
                    &end,
                ]
                .concat()
            }
            Hidden::LocalExtra => {
                let name_len = usize::from(u16_at(zip, 26).unwrap());
                let mut local = zip[..30 + name_len].to_vec();
                put16(&mut local, 28, k);
                let mut central = zip[cd_offset..eocd].to_vec();
                let mut at = 0;
                while at < central.len() {
                    let offset = u32_at(&central, at + 42).unwrap() as usize;
                    if offset > 0 {
                        put32(&mut central, at + 42, offset + k);
                    }
                    let lens: usize = [28, 30, 32]
                        .iter()
                        .map(|o| usize::from(u16_at(&central, at + o).unwrap()))
                        .sum();
                    at += 46 + lens;
                }
                put32(&mut end, 16, cd_offset + k);
                [
                    &local,
                    payload,
                    &zip[30 + name_len..cd_offset],
                    &central,
                    &end,
                ]
                .concat()
            }
        }
    }

    #[test]
    fn hidden_bytes_in_comments_and_extra_fields_are_refused_by_kind() {
        let zip = super::super::archive_write::write(
            &files(),
            super::super::archive_write::ZipTime::DEFAULT,
        )
        .unwrap();
        let payload = b"HIDDEN-PAYLOAD".repeat(70);
        for (place, why) in [
            (Hidden::ArchiveComment, "archive carries a 980-byte comment"),
            (Hidden::CentralExtra, "980 bytes of central extra fields"),
            (Hidden::CentralComment, "a 980-byte entry comment"),
            (Hidden::LocalExtra, "980 bytes of local extra fields"),
        ] {
            let e = read(&inject(&zip, place, &payload), &Limits::default()).unwrap_err();
            assert!(format!("{e:#}").contains(why), "{place:?}: {e:#}");
        }
        // The fix-ups are right: an empty payload reads back as the original.
        for place in [Hidden::CentralExtra, Hidden::LocalExtra] {
            assert_eq!(inject(&zip, place, b""), zip);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn any_hidden_bytes_are_refused(
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..600),
            place in 0usize..4,
        ) {
            let zip = super::super::archive_write::write(
                &files(),
                super::super::archive_write::ZipTime::DEFAULT,
            )
            .unwrap();
            let place = [
                Hidden::ArchiveComment,
                Hidden::CentralExtra,
                Hidden::CentralComment,
                Hidden::LocalExtra,
            ][place];
            proptest::prop_assert!(read(&inject(&zip, place, &payload), &Limits::default()).is_err());
            // trailing bytes after the end record are refused too
            proptest::prop_assert!(read(&[zip.as_slice(), &payload].concat(), &Limits::default()).is_err());
        }
    }
}
