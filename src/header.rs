//! safetensors header parsing and validation.
//!
//! A header is hostile input: its length prefix is checked against a cap and the file size
//! before anything is allocated, and every tensor entry is validated (known dtype, shape
//! product without overflow, byte length = numel × dtype size, inside the file, no overlap,
//! no duplicate names) with an error naming the tensor. The caller adds the file name.
//!
//! The `safetensors` crate's own `Metadata` parser needs the whole file to be present and
//! rejects gaps; we parse header bytes fetched by HTTP Range, so the rules live here and the
//! crate serves as the independent oracle in tests.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, Result, bail};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::dtype::{self, Dtype};

/// Largest header accepted by default (the format's reference implementation uses 100 MB).
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

/// How much of a file's start one read fetches hoping to get the whole header in one request
/// (most headers are smaller; a 50 000-tensor header is a few MB and needs a second read).
pub const HEADER_PROBE_BYTES: u64 = 100_000;

/// One tensor as the header describes it. Offsets are relative to the data section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    /// The tensor's name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions, outermost first.
    pub shape: Vec<u64>,
    /// Number of elements (product of `shape`).
    pub numel: u64,
    /// Start of the data, relative to the data section.
    pub begin: u64,
    /// End of the data, exclusive, relative to the data section.
    pub end: u64,
}

/// A validated header: tensors sorted by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The JSON length `n` from the 8-byte prefix.
    pub json_len: u64,
    /// Every tensor, sorted by name.
    pub tensors: Vec<TensorEntry>,
    /// The `__metadata__` string map (empty when absent).
    pub metadata: BTreeMap<String, String>,
}

impl Header {
    /// Absolute file offset where the data section starts.
    pub fn data_start(&self) -> u64 {
        8 + self.json_len
    }
}

/// Checks the 8-byte length prefix against the cap and the file size.
pub fn check_json_len(json_len: u64, file_size: u64, cap: u64) -> Result<()> {
    if json_len > cap {
        bail!(
            "header length {json_len} exceeds the limit of {cap} bytes (corrupt or hostile file; raise --max-header-bytes only if you trust it)"
        );
    }
    if json_len < 2 {
        bail!("header length {json_len} is too small to hold a JSON object");
    }
    if 8 + json_len > file_size {
        bail!("header length {json_len} runs past the end of the {file_size}-byte file");
    }
    Ok(())
}

/// What a read of a file's first bytes yields: the whole header, or how much more to read.
pub enum Probe {
    /// The probe held the whole header.
    Complete(Header),
    /// The header continues past the probe: read `[have, 8 + json_len)` and call [`finish`].
    NeedMore {
        /// The JSON length from the prefix.
        json_len: u64,
        /// Bytes already read from the start of the file.
        have: u64,
    },
}

/// Interprets the first bytes of a file (`probe`, ideally [`HEADER_PROBE_BYTES`] long).
pub fn from_probe(probe: &[u8], file_size: u64, cap: u64) -> Result<Probe> {
    if file_size < 8 {
        bail!("file is {file_size} bytes, too short for a safetensors header");
    }
    let prefix: [u8; 8] = probe
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .context("short read of the 8-byte header length")?;
    let json_len = u64::from_le_bytes(prefix);
    check_json_len(json_len, file_size, cap)?;
    let wanted = 8 + json_len;
    if (probe.len() as u64) >= wanted {
        return Ok(Probe::Complete(parse_json(
            &probe[8..wanted as usize],
            json_len,
            file_size,
        )?));
    }
    Ok(Probe::NeedMore {
        json_len,
        have: probe.len() as u64,
    })
}

/// Completes a header from the probe and the rest of its bytes.
pub fn finish(probe: &[u8], rest: &[u8], json_len: u64, file_size: u64) -> Result<Header> {
    let missing = 8 + json_len - probe.len() as u64;
    if rest.len() as u64 != missing {
        bail!(
            "short read of the header: got {} of {missing} bytes",
            rest.len()
        );
    }
    let mut json = probe[8..].to_vec();
    json.extend_from_slice(rest);
    parse_json(&json, json_len, file_size)
}

/// Reads and validates a header through `read(offset, len)`, using at most two reads: one
/// probe of the file's start and, for large headers, the rest.
pub fn read_header(
    file_size: u64,
    cap: u64,
    mut read: impl FnMut(u64, u64) -> Result<Vec<u8>>,
) -> Result<Header> {
    if file_size < 8 {
        bail!("file is {file_size} bytes, too short for a safetensors header");
    }
    let probe = read(0, file_size.min(HEADER_PROBE_BYTES))?;
    match from_probe(&probe, file_size, cap)? {
        Probe::Complete(h) => Ok(h),
        Probe::NeedMore { json_len, have } => {
            let rest = read(have, 8 + json_len - have)?;
            finish(&probe, &rest, json_len, file_size)
        }
    }
}

/// Parses and validates the header JSON (`json_len` bytes following the prefix).
pub fn parse_json(json: &[u8], json_len: u64, file_size: u64) -> Result<Header> {
    if json.first() != Some(&b'{') {
        bail!("header does not start with '{{'");
    }
    let text = std::str::from_utf8(json).context("header is not valid UTF-8")?;
    let raw: RawHeader = serde_json::from_str(text.trim_end_matches([' ', '\0']))
        .context("header is not a valid safetensors JSON object")?;
    let data_len = file_size - 8 - json_len;
    let mut tensors = Vec::with_capacity(raw.tensors.len());
    for (name, info) in raw.tensors {
        tensors.push(validate_entry(name, info, data_len)?);
    }
    check_overlaps(&tensors)?;
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Header {
        json_len,
        tensors,
        metadata: raw.metadata,
    })
}

fn validate_entry(name: String, info: RawInfo, data_len: u64) -> Result<TensorEntry> {
    let dtype = Dtype::parse(&info.dtype)
        .with_context(|| format!("tensor {name:?}: unknown dtype {:?}", info.dtype))?;
    let numel = info
        .shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .with_context(|| format!("tensor {name:?}: shape {:?} overflows", info.shape))?;
    let needed = dtype::byte_len(dtype, numel).with_context(|| {
        format!(
            "tensor {name:?}: shape {:?} of {dtype} is not a whole number of bytes or overflows",
            info.shape
        )
    })?;
    let [begin, end] = info.data_offsets;
    if end < begin {
        bail!("tensor {name:?}: data_offsets [{begin}, {end}) end before they begin");
    }
    if end - begin != needed {
        bail!(
            "tensor {name:?}: data_offsets [{begin}, {end}) hold {} bytes but shape {:?} of {dtype} needs {needed}",
            end - begin,
            info.shape
        );
    }
    if end > data_len {
        bail!(
            "tensor {name:?}: data_offsets [{begin}, {end}) run past the end of the {data_len}-byte data section"
        );
    }
    Ok(TensorEntry {
        name,
        dtype,
        shape: info.shape,
        numel,
        begin,
        end,
    })
}

fn check_overlaps(tensors: &[TensorEntry]) -> Result<()> {
    let mut by_offset: Vec<&TensorEntry> = tensors.iter().filter(|t| t.end > t.begin).collect();
    by_offset.sort_by_key(|t| (t.begin, t.end));
    for pair in by_offset.windows(2) {
        if pair[1].begin < pair[0].end {
            bail!(
                "tensors {:?} [{}, {}) and {:?} [{}, {}) overlap",
                pair[0].name,
                pair[0].begin,
                pair[0].end,
                pair[1].name,
                pair[1].begin,
                pair[1].end
            );
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct RawInfo {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

struct RawHeader {
    tensors: Vec<(String, RawInfo)>,
    metadata: BTreeMap<String, String>,
}

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RawHeaderVisitor)
    }
}

struct RawHeaderVisitor;

impl<'de> Visitor<'de> for RawHeaderVisitor {
    type Value = RawHeader;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of tensor names to {dtype, shape, data_offsets}")
    }

    // A hand-written visitor because a duplicated tensor name is a parser-differential trap
    // (two readers may pick different entries) and a derived map silently keeps the last one.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader, A::Error> {
        let mut seen = std::collections::HashSet::new();
        let mut tensors = Vec::new();
        let mut metadata = None;
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            if key == "__metadata__" {
                let value: serde_json::Value = map.next_value()?;
                let parsed = serde_json::from_value(value).map_err(|e| {
                    de::Error::custom(format!("__metadata__ must map strings to strings: {e}"))
                })?;
                metadata = Some(parsed);
            } else {
                let value: serde_json::Value = map.next_value()?;
                let info = serde_json::from_value(value)
                    .map_err(|e| de::Error::custom(format!("tensor {key:?}: {e}")))?;
                tensors.push((key, info));
            }
        }
        Ok(RawHeader {
            tensors,
            metadata: metadata.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(json: &str, data_len: usize) -> Vec<u8> {
        let mut f = (json.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(json.as_bytes());
        f.resize(f.len() + data_len, 0);
        f
    }

    fn parse(file: &[u8]) -> Result<Header> {
        read_header(file.len() as u64, DEFAULT_MAX_HEADER_BYTES, |off, len| {
            let end = (off + len).min(file.len() as u64);
            Ok(file[off as usize..end as usize].to_vec())
        })
    }

    fn err(file: &[u8]) -> String {
        format!("{:#}", parse(file).unwrap_err())
    }

    #[test]
    fn parses_sorted_with_metadata() {
        let json = r#"{"b":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[],"data_offsets":[12,16]}}  "#;
        let h = parse(&file_with(json, 16)).unwrap();
        assert_eq!(h.tensors[0].name, "a");
        assert_eq!(h.tensors[0].numel, 1);
        assert_eq!(h.tensors[1].shape, vec![2, 3]);
        assert_eq!(h.metadata["format"], "pt");
        assert_eq!(h.data_start(), 8 + json.len() as u64);
    }

    #[test]
    fn rejects_each_malformation_with_a_named_reason() {
        let cases: &[(&str, usize, &str)] = &[
            (
                r#"{"x":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}}"#,
                4,
                "unknown dtype",
            ),
            (
                r#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
                8,
                "needs 8",
            ),
            (
                r#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#,
                8,
                "end before",
            ),
            (
                r#"{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
                8,
                "past the end",
            ),
            (
                r#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                12,
                "overlap",
            ),
            (
                r#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                8,
                "duplicate key",
            ),
            (
                r#"{"x":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#,
                8,
                "overflows",
            ),
            (
                r#"{"x":{"dtype":"F32","shape":"big","data_offsets":[0,4]}}"#,
                4,
                "tensor \"x\"",
            ),
            (r#"{"__metadata__":{"a":1}}"#, 0, "strings to strings"),
            (r#"[1,2,3]"#, 0, "start with"),
            (r#"{"x": "#, 0, "valid safetensors JSON"),
        ];
        for (json, data, want) in cases {
            let msg = err(&file_with(json, *data));
            assert!(msg.contains(want), "{json}: got {msg:?}, want {want:?}");
        }
    }

    #[test]
    fn rejects_absurd_lengths_before_allocating() {
        let mut f = (1u64 << 63).to_le_bytes().to_vec();
        f.extend_from_slice(b"{}");
        assert!(err(&f).contains("exceeds the limit"));
        let mut f = 1000u64.to_le_bytes().to_vec();
        f.extend_from_slice(b"{}");
        assert!(err(&f).contains("past the end"));
        assert!(err(&[1, 2, 3]).contains("too short"));
    }

    #[test]
    fn large_header_takes_a_second_read() {
        let mut entries = Vec::new();
        let mut off = 0;
        for i in 0..5000 {
            entries.push(format!(
                r#""t{i:05}":{{"dtype":"F16","shape":[3],"data_offsets":[{off},{}]}}"#,
                off + 6
            ));
            off += 6;
        }
        let json = format!("{{{}}}", entries.join(","));
        assert!(json.len() as u64 > HEADER_PROBE_BYTES);
        let file = file_with(&json, off);
        let mut reads = 0;
        let h = read_header(file.len() as u64, DEFAULT_MAX_HEADER_BYTES, |o, l| {
            reads += 1;
            Ok(file[o as usize..(o + l) as usize].to_vec())
        })
        .unwrap();
        assert_eq!(reads, 2);
        assert_eq!(h.tensors.len(), 5000);
    }
}
