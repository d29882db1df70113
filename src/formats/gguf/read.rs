//! Parsing a GGUF header (v2 and v3, little-endian) from bytes fetched on demand.
//!
//! The header is hostile input and can be tens of MB (the vocabulary lives in it), so it is
//! pulled in growing chunks through a caller's fetch function — each byte once, never past
//! the file's end or the cap — and every length is checked against the bytes that remain
//! before anything is allocated from it. Nested arrays are bounded in depth.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};

use super::quants::GgmlType;
use super::{GgufHeader, GgufTensor, MetaValue};

/// `GGUF` read as a little-endian u32.
const MAGIC: [u8; 4] = *b"GGUF";
/// The first fetch: most headers without a vocabulary fit, and a vocabulary needs a few more.
const FIRST_FETCH: u64 = 1 << 20;
/// Nested arrays deeper than this are refused (no published file nests at all).
const MAX_ARRAY_DEPTH: usize = 4;
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// Longest tensor name or metadata key accepted (ggml's own limit for names is 64).
const MAX_NAME_BYTES: u64 = 4096;
/// The data section's default alignment (`general.alignment` overrides it).
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Reads a prefix of a file on demand: `fetch(start, len)` returns exactly those bytes.
struct Reader<'f> {
    buf: Vec<u8>,
    pos: u64,
    file_size: u64,
    cap: u64,
    fetch: &'f mut dyn FnMut(u64, u64) -> Result<Vec<u8>>,
}

impl Reader<'_> {
    /// Makes `n` bytes from the current position available, fetching what is missing.
    fn need(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<()> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.file_size);
        let Some(end) = end else {
            bail!(
                "{}: {n} bytes at offset {} run past the end of the {}-byte file",
                what(),
                self.pos,
                self.file_size
            );
        };
        if end > self.cap {
            bail!(
                "{}: the header reaches past {} bytes, the limit (corrupt or hostile file; raise --max-header-bytes only if you trust it)",
                what(),
                self.cap
            );
        }
        let have = self.buf.len() as u64;
        if end <= have {
            return Ok(());
        }
        // Grow geometrically so a 50 MB vocabulary costs a handful of requests, not thousands.
        let want = end
            .max(have.saturating_mul(2))
            .max(FIRST_FETCH)
            .min(self.file_size)
            .min(self.cap);
        let more = (self.fetch)(have, want - have)?;
        if more.len() as u64 != want - have {
            bail!(
                "asked for {} header bytes at offset {have}, got {}",
                want - have,
                more.len()
            );
        }
        self.buf.extend_from_slice(&more);
        Ok(())
    }

    fn bytes(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&[u8]> {
        self.need(n, what)?;
        let start = self.pos as usize;
        self.pos += n;
        Ok(&self.buf[start..start + n as usize])
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let b = self.bytes(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes.
    fn string(&mut self, max: u64, what: &dyn Fn() -> String) -> Result<String> {
        let len = self.u64(what)?;
        if len > max {
            bail!(
                "{}: a string of {len} bytes (at most {max} accepted)",
                what()
            );
        }
        let b = self.bytes(len, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| anyhow::anyhow!("{}: not UTF-8", what()))
    }

    fn remaining(&self) -> u64 {
        self.file_size.min(self.cap).saturating_sub(self.pos)
    }

    fn value(&mut self, ty: u32, depth: usize, what: &dyn Fn() -> String) -> Result<MetaValue> {
        Ok(match ty {
            0 => MetaValue::U8(self.array::<1>(what)?[0]),
            1 => MetaValue::I8(self.array::<1>(what)?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => MetaValue::U32(self.u32(what)?),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => bail!("{}: boolean byte {b} (must be 0 or 1)", what()),
            },
            8 => MetaValue::String(self.string(self.remaining(), what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    bail!(
                        "{}: arrays nested deeper than {MAX_ARRAY_DEPTH} levels",
                        what()
                    );
                }
                let inner = self.u32(what)?;
                let n = self.u64(what)?;
                // Every element takes at least one byte (a string at least its 8-byte length):
                // a count the remaining bytes cannot hold is refused before allocating for it.
                let min = match inner {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    t => bail!("{}: unknown array element type {t}", what()),
                };
                if n.checked_mul(min).is_none_or(|b| b > self.remaining()) {
                    bail!(
                        "{}: an array of {n} elements does not fit in the {} bytes left",
                        what(),
                        self.remaining()
                    );
                }
                let mut items = Vec::with_capacity(n.min(1 << 16) as usize);
                for _ in 0..n {
                    items.push(self.value(inner, depth + 1, what)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(self.u64(what)?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(what)?)),
            t => bail!("{}: unknown value type {t}", what()),
        })
    }
}

/// Parses the header of a GGUF file of `file_size` bytes, reading at most `cap` bytes of it
/// through `fetch(start, len)`. Errors name the field; the caller adds the file name.
pub fn parse(
    file_size: u64,
    cap: u64,
    fetch: &mut dyn FnMut(u64, u64) -> Result<Vec<u8>>,
) -> Result<GgufHeader> {
    let mut r = Reader {
        buf: Vec::new(),
        pos: 0,
        file_size,
        cap,
        fetch,
    };
    let magic: [u8; 4] = r.array(&|| "magic".into())?;
    if magic != MAGIC {
        bail!("not a GGUF file (magic {magic:02x?}, expected \"GGUF\")");
    }
    let version = r.u32(&|| "version".into())?;
    match version {
        2 | 3 => {}
        1 => bail!(
            "GGUF version 1 is not supported (32-bit counts; convert with a current llama.cpp)"
        ),
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            bail!("big-endian GGUF files are not supported (version field reads {v:#x})")
        }
        v => bail!("unknown GGUF version {v}"),
    }
    let tensor_count = r.u64(&|| "tensor count".into())?;
    let kv_count = r.u64(&|| "metadata count".into())?;
    // A metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes, a tensor entry
    // 8 (name length) + 4 (dims) + 4 (type) + 8 (offset): counts beyond that are lies.
    if kv_count.checked_mul(13).is_none_or(|b| b > r.remaining()) {
        bail!("metadata count {kv_count} cannot fit in the file");
    }
    if tensor_count
        .checked_mul(24)
        .is_none_or(|b| b > r.remaining())
    {
        bail!("tensor count {tensor_count} cannot fit in the file");
    }

    let mut metadata = BTreeMap::new();
    for i in 0..kv_count {
        let key = r.string(MAX_NAME_BYTES, &|| format!("metadata entry {i}: key"))?;
        let what = || format!("metadata {key:?}");
        let ty = r.u32(&what)?;
        let value = r.value(ty, 0, &what)?;
        if metadata.insert(key.clone(), value).is_some() {
            bail!("metadata key {key:?} appears twice");
        }
    }
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(MetaValue::U32(a)) if a.is_power_of_two() && *a <= 1 << 20 => u64::from(*a),
        Some(v) => bail!("general.alignment {v:?} is not a power of two up to 1 MiB"),
    };

    let mut infos = Vec::with_capacity(tensor_count.min(1 << 16) as usize);
    for i in 0..tensor_count {
        let name = r.string(MAX_NAME_BYTES, &|| format!("tensor entry {i}: name"))?;
        let what = || format!("tensor {name:?}");
        let n_dims = r.u32(&what)?;
        if n_dims > MAX_DIMS {
            bail!("{}: {n_dims} dimensions (at most {MAX_DIMS})", what());
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(r.u64(&what)?);
        }
        let type_id = r.u32(&what)?;
        let offset = r.u64(&what)?;
        infos.push((name, dims, type_id, offset));
    }
    let data_start = r.pos.div_ceil(alignment).checked_mul(alignment);
    let Some(data_start) = data_start.filter(|&d| d <= file_size) else {
        bail!("the data section would start past the end of the file");
    };

    let mut tensors = Vec::with_capacity(infos.len());
    let mut names = BTreeSet::new();
    for (name, dims, type_id, offset) in infos {
        let t = tensor(
            name, dims, type_id, offset, alignment, data_start, file_size,
        )?;
        if !names.insert(t.name.clone()) {
            bail!("tensor {:?} appears twice", t.name);
        }
        tensors.push(t);
    }
    check_overlaps(&tensors)?;
    Ok(GgufHeader {
        version,
        alignment,
        metadata,
        tensors,
        data_start,
    })
}

/// Validates one tensor entry: known type, whole blocks per row, size without overflow,
/// aligned and inside the file.
fn tensor(
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    offset: u64,
    alignment: u64,
    data_start: u64,
    file_size: u64,
) -> Result<GgufTensor> {
    let Some(ty) = GgmlType::from_id(type_id) else {
        bail!("tensor {name:?}: unknown GGML type id {type_id}");
    };
    let numel = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .with_context(|| format!("tensor {name:?}: dimensions {dims:?} overflow"))?;
    let row = dims.first().copied().unwrap_or(1);
    if !row.is_multiple_of(ty.block_elems()) {
        bail!(
            "tensor {name:?}: rows of {row} elements are not whole {} blocks of {}",
            ty.name(),
            ty.block_elems()
        );
    }
    let bytes = (numel / ty.block_elems())
        .checked_mul(ty.block_bytes())
        .with_context(|| format!("tensor {name:?}: size overflows"))?;
    if !offset.is_multiple_of(alignment) {
        bail!("tensor {name:?}: offset {offset} is not a multiple of the alignment {alignment}");
    }
    let begin = data_start.checked_add(offset);
    let end = begin.and_then(|b| b.checked_add(bytes));
    let (Some(begin), Some(end)) = (begin, end.filter(|&e| e <= file_size)) else {
        bail!(
            "tensor {name:?}: {bytes} bytes at data offset {offset} run past the end of the {file_size}-byte file"
        );
    };
    Ok(GgufTensor {
        name,
        dims,
        ty,
        numel,
        begin,
        end,
    })
}

fn check_overlaps(tensors: &[GgufTensor]) -> Result<()> {
    let mut by_start: Vec<&GgufTensor> = tensors.iter().filter(|t| t.end > t.begin).collect();
    by_start.sort_by_key(|t| t.begin);
    for w in by_start.windows(2) {
        if w[1].begin < w[0].end {
            bail!("tensors {:?} and {:?} overlap", w[0].name, w[1].name);
        }
    }
    Ok(())
}
