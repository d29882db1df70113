//! One initializer, validated and located: its dims (non-negative, product without
//! overflow), its data type, and where its bytes are: `raw_data` (a range of the file),
//! external data (a range of a side file whose path is checked to stay in the model's folder
//! and whose size bounds the range), or the typed fields (`float_data`, `int32_data`, …,
//! re-encoded as `raw_data` would hold them). Every byte length is checked against what the
//! dims and type require; errors name the tensor and the field.

use anyhow::{Result, bail};
use bytes::Bytes;

use super::proto::TensorProto;
use super::{DataType, Location};

/// An initializer as stored.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Stored {
    /// The initializer's name.
    pub name: String,
    /// The element type.
    pub dtype: DataType,
    /// ONNX dims, outermost first.
    pub dims: Vec<u64>,
    /// Number of elements.
    pub numel: u64,
    /// Where the bytes are.
    pub location: Location,
}

/// What reading an initializer gave.
#[derive(Debug)]
pub(super) enum Read {
    /// A tensor with its bytes located.
    Stored(Stored),
    /// A tensor that is no weight and is left out (a string tensor), with the reason.
    Skipped(String),
}

/// `TensorProto.DataLocation.EXTERNAL`.
const EXTERNAL: i32 = 1;

/// Validates and locates an initializer. `file` is the whole `.onnx` file (the buffer the
/// model was decoded from); `external_size` gives a side file's size.
pub(super) fn read(
    t: &TensorProto,
    file: &Bytes,
    external_size: &dyn Fn(&str) -> Option<u64>,
) -> Result<Read> {
    let name = &t.name;
    if name.is_empty() {
        bail!("an initializer has no name (TensorProto.name, field 8)");
    }
    if t.segment.is_some() {
        bail!("tensor {name:?}: segment (field 3) is not supported");
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    let mut numel: u64 = 1;
    for &d in &t.dims {
        let Ok(d) = u64::try_from(d) else {
            bail!(
                "tensor {name:?}: dims (field 1) {:?} has a negative dimension",
                t.dims
            );
        };
        numel = numel.checked_mul(d).ok_or_else(|| {
            anyhow::anyhow!(
                "tensor {name:?}: dims (field 1) {:?} overflow 64 bits",
                t.dims
            )
        })?;
        dims.push(d);
    }
    let dtype = DataType::from_code(t.data_type);
    let Some(len) = dtype.stored_len(numel) else {
        if matches!(dtype.name(), "UNDEFINED" | "UNKNOWN" | "STRING") {
            return Ok(Read::Skipped(format!(
                "tensor {name:?}: data_type (field 2) {} ({}) has no fixed layout, not a weight: left out",
                t.data_type,
                dtype.name()
            )));
        }
        // a byte size past 64 bits
        bail!(
            "tensor {name:?}: {numel} elements of {} overflow 64 bits",
            dtype.name()
        );
    };
    let location = if t.data_location == EXTERNAL {
        external(t, len, external_size)?
    } else if t.data_location != 0 {
        bail!(
            "tensor {name:?}: data_location (field 14) {} is neither DEFAULT nor EXTERNAL",
            t.data_location
        );
    } else if let Some(raw) = &t.raw_data {
        if raw.len() as u64 != len {
            bail!(
                "tensor {name:?}: raw_data (field 9) holds {} bytes, dims {dims:?} of {} need {len}",
                raw.len(),
                dtype.name()
            );
        }
        inline(name, raw, file)?
    } else {
        match typed(t, dtype, numel)? {
            Some(bytes) => Location::Memory(bytes),
            None if numel == 0 => Location::Memory(Bytes::new()),
            None if dtype.size().is_none() => {
                return Ok(Read::Skipped(format!(
                    "tensor {name:?}: {} values in typed fields are not read: left out",
                    dtype.name()
                )));
            }
            None => bail!(
                "tensor {name:?}: {numel} elements but no data (no raw_data, field 9; no {}; no external data)",
                typed_field(dtype)
            ),
        }
    };
    Ok(Read::Stored(Stored {
        name: name.clone(),
        dtype,
        dims,
        numel,
        location,
    }))
}

/// The range `raw` takes in `file`, which it is a slice of (prost decodes a `Bytes` input
/// without copying).
fn inline(name: &str, raw: &Bytes, file: &Bytes) -> Result<Location> {
    if raw.is_empty() {
        return Ok(Location::Memory(Bytes::new()));
    }
    let base = file.as_ptr() as usize;
    let begin = (raw.as_ptr() as usize).checked_sub(base);
    match begin {
        Some(begin)
            if begin
                .checked_add(raw.len())
                .is_some_and(|e| e <= file.len()) =>
        {
            Ok(Location::Inline {
                begin: begin as u64,
                end: (begin + raw.len()) as u64,
            })
        }
        // cannot happen with a `Bytes` input; refused rather than guessed
        _ => bail!("tensor {name:?}: raw_data (field 9) is not a slice of the file"),
    }
}

/// The field ONNX stores values of `dtype` in, for messages.
fn typed_field(dtype: DataType) -> &'static str {
    match dtype {
        DataType::Float => "float_data (field 4)",
        DataType::Double => "double_data (field 10)",
        DataType::Int64 => "int64_data (field 7)",
        DataType::Uint32 | DataType::Uint64 => "uint64_data (field 11)",
        _ => "int32_data (field 5)",
    }
}

/// The typed field's values as little-endian bytes of `dtype`, when the field holds any;
/// values wider than the type keep their low bits, as `onnx.numpy_helper.to_array` does.
fn typed(t: &TensorProto, dtype: DataType, numel: u64) -> Result<Option<Bytes>> {
    let count = match dtype {
        DataType::Float => t.float_data.len(),
        DataType::Double => t.double_data.len(),
        DataType::Int64 => t.int64_data.len(),
        DataType::Uint32 | DataType::Uint64 => t.uint64_data.len(),
        DataType::Other(_) => 0,
        _ => t.int32_data.len(),
    };
    if count == 0 {
        return Ok(None);
    }
    if count as u64 != numel {
        bail!(
            "tensor {:?}: {} holds {count} values, dims of {numel} elements",
            t.name,
            typed_field(dtype)
        );
    }
    // `count` values were decoded from the file, so the allocation is bounded by its size
    let size = dtype.size().unwrap_or(1) as usize;
    let mut out = Vec::with_capacity(count.saturating_mul(size));
    match dtype {
        DataType::Float => t
            .float_data
            .iter()
            .for_each(|v| out.extend(v.to_le_bytes())),
        DataType::Double => t
            .double_data
            .iter()
            .for_each(|v| out.extend(v.to_le_bytes())),
        DataType::Int64 => t
            .int64_data
            .iter()
            .for_each(|v| out.extend(v.to_le_bytes())),
        DataType::Uint64 => t
            .uint64_data
            .iter()
            .for_each(|v| out.extend(v.to_le_bytes())),
        DataType::Uint32 => t
            .uint64_data
            .iter()
            .for_each(|&v| out.extend((v as u32).to_le_bytes())),
        DataType::Int32 => t
            .int32_data
            .iter()
            .for_each(|v| out.extend(v.to_le_bytes())),
        DataType::Int8 | DataType::Uint8 | DataType::Bool => {
            t.int32_data.iter().for_each(|&v| out.push(v as u8))
        }
        DataType::Int16 | DataType::Uint16 | DataType::Float16 | DataType::BFloat16 => t
            .int32_data
            .iter()
            .for_each(|&v| out.extend((v as u16).to_le_bytes())),
        DataType::Other(_) => return Ok(None),
    }
    Ok(Some(Bytes::from(out)))
}

/// The range of an external tensor: `external_data` entries `location` (required), `offset`
/// (default 0) and `length` (default: to the end of the file).
fn external(
    t: &TensorProto,
    len: u64,
    external_size: &dyn Fn(&str) -> Option<u64>,
) -> Result<Location> {
    let name = &t.name;
    let field = "external_data (field 13)";
    let (mut location, mut offset, mut length) = (None, None, None);
    for e in &t.external_data {
        let number = |v: &str| -> Result<u64> {
            if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                bail!(
                    "tensor {name:?}: {field} {:?} is {v:?}, not a byte count",
                    e.key
                );
            }
            v.parse().map_err(|_| {
                anyhow::anyhow!(
                    "tensor {name:?}: {field} {:?} is {v:?}, past 64 bits",
                    e.key
                )
            })
        };
        match e.key.as_str() {
            "location" => location = Some(e.value.as_str()),
            "offset" => offset = Some(number(&e.value)?),
            "length" => length = Some(number(&e.value)?),
            _ => {} // checksum, basepath: not needed
        }
    }
    let Some(location) = location else {
        bail!("tensor {name:?}: {field} has no \"location\"");
    };
    let file = safe_relative_path(location)
        .map_err(|why| anyhow::anyhow!("tensor {name:?}: {field} location {location:?}: {why}"))?;
    let Some(size) = external_size(&file) else {
        bail!("tensor {name:?}: {field} location {file:?}: no such file beside the model");
    };
    let begin = offset.unwrap_or(0);
    if begin > size {
        bail!("tensor {name:?}: {field} offset {begin} is past the end of {file:?} ({size} bytes)");
    }
    let length = length.unwrap_or(size - begin);
    let end = begin.checked_add(length).filter(|&e| e <= size);
    let Some(end) = end else {
        bail!(
            "tensor {name:?}: {field} offset {begin} + length {length} run past the end of {file:?} ({size} bytes)"
        );
    };
    if length != len {
        bail!(
            "tensor {name:?}: {field} length {length} bytes, dims {:?} of {} need {len}",
            t.dims,
            DataType::from_code(t.data_type).name()
        );
    }
    Ok(Location::External { file, begin, end })
}

/// `location` as a relative path that stays inside the model's folder (`.` parts removed), or
/// why not.
pub(super) fn safe_relative_path(location: &str) -> Result<String, String> {
    if location.is_empty() {
        return Err("empty".into());
    }
    if location.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    if location.contains('\\') {
        return Err("contains a backslash".into());
    }
    if location.contains(':') {
        return Err("contains a colon (a drive or stream name)".into());
    }
    if location.starts_with('/') {
        return Err("is an absolute path".into());
    }
    let mut parts = Vec::new();
    for part in location.split('/') {
        match part {
            "." => {}
            ".." => return Err("leaves the model's folder (`..`)".into()),
            "" => return Err("has an empty path component".into()),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err("names no file".into());
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::onnx::proto::StringStringEntryProto;

    fn tensor(name: &str, dims: &[i64], dtype: DataType) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: dtype.code(),
            ..Default::default()
        }
    }

    fn err(t: &TensorProto, sizes: &dyn Fn(&str) -> Option<u64>) -> String {
        match read(t, &Bytes::new(), sizes) {
            Ok(r) => panic!("accepted: {r:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    fn ext(entries: &[(&str, &str)]) -> Vec<StringStringEntryProto> {
        entries
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: (*k).into(),
                value: (*v).into(),
            })
            .collect()
    }

    #[test]
    fn paths_that_escape_are_refused() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a\\b",
            "C:/x",
            "a\0b",
            "",
            "a//b",
            ".",
            "./",
        ] {
            assert!(safe_relative_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(safe_relative_path("./w.bin").unwrap(), "w.bin");
        assert_eq!(safe_relative_path("data/w.bin").unwrap(), "data/w.bin");
    }

    #[test]
    fn external_ranges_are_checked() {
        let size = |f: &str| (f == "w.bin").then_some(100u64);
        let mut t = tensor("w", &[2, 3], DataType::Float);
        t.data_location = EXTERNAL;
        t.external_data = ext(&[("location", "w.bin"), ("offset", "76")]);
        let Read::Stored(s) = read(&t, &Bytes::new(), &size).unwrap() else {
            panic!()
        };
        assert_eq!(
            s.location,
            Location::External {
                file: "w.bin".into(),
                begin: 76,
                end: 100
            }
        );
        t.external_data = ext(&[("location", "w.bin"), ("offset", "80"), ("length", "24")]);
        assert!(
            err(&t, &size).contains("run past the end"),
            "{}",
            err(&t, &size)
        );
        t.external_data = ext(&[("location", "w.bin"), ("offset", "0"), ("length", "20")]);
        assert!(err(&t, &size).contains("need 24"));
        t.external_data = ext(&[("location", "w.bin"), ("offset", "-1")]);
        assert!(err(&t, &size).contains("not a byte count"));
        t.external_data = ext(&[
            ("location", "w.bin"),
            ("length", "18446744073709551615"),
            ("offset", "5"),
        ]);
        assert!(err(&t, &size).contains("run past the end"));
        t.external_data = ext(&[("location", "../w.bin")]);
        let e = err(&t, &size);
        assert!(
            e.contains("\"w\"") && e.contains("external_data") && e.contains(".."),
            "{e}"
        );
        t.external_data = ext(&[("location", "/etc/passwd")]);
        assert!(err(&t, &size).contains("absolute"));
        t.external_data = ext(&[("location", "other.bin")]);
        assert!(err(&t, &size).contains("no such file"));
        t.external_data = ext(&[("offset", "0")]);
        assert!(err(&t, &size).contains("no \"location\""));
    }

    #[test]
    fn dims_and_lengths_are_checked() {
        let none = |_: &str| None;
        let t = tensor("w", &[2, -3], DataType::Float);
        assert!(err(&t, &none).contains("negative"));
        let t = tensor("w", &[1 << 40, 1 << 40], DataType::Float);
        assert!(err(&t, &none).contains("overflow"));
        let t = tensor("w", &[1 << 31, 1 << 31, 4], DataType::Double);
        assert!(err(&t, &none).contains("overflow"));
        let mut t = tensor("w", &[2, 3], DataType::Float);
        t.raw_data = Some(Bytes::from(vec![0u8; 20]));
        let e = err(&t, &none);
        assert!(
            e.contains("raw_data") && e.contains("20 bytes") && e.contains("24"),
            "{e}"
        );
        let mut t = tensor("w", &[2, 3], DataType::Float);
        t.float_data = vec![1.0; 5];
        assert!(err(&t, &none).contains("float_data (field 4) holds 5 values"));
        let t = tensor("w", &[2, 3], DataType::Float);
        assert!(err(&t, &none).contains("no data"));
        for code in [0, 8, 99] {
            let t = tensor("w", &[2], DataType::from_code(code));
            let r = read(&t, &Bytes::new(), &none).unwrap();
            assert!(
                matches!(&r, Read::Skipped(why) if why.contains("data_type")),
                "{r:?}"
            );
        }
        let t = tensor("", &[2], DataType::Float);
        assert!(err(&t, &none).contains("no name"));
        let mut t = tensor("w", &[0], DataType::Float);
        t.data_location = 7;
        assert!(err(&t, &none).contains("data_location"));
    }

    #[test]
    fn typed_fields_keep_low_bits_like_numpy_helper() {
        let none = |_: &str| None;
        let mut t = tensor("w", &[3], DataType::Int8);
        t.int32_data = vec![-1, 127, 300];
        let Read::Stored(s) = read(&t, &Bytes::new(), &none).unwrap() else {
            panic!()
        };
        assert_eq!(
            s.location,
            Location::Memory(Bytes::from(vec![255u8, 127, 44]))
        );
        let mut t = tensor("h", &[2], DataType::Float16);
        t.int32_data = vec![0x3c00, 0x1_c000];
        let Read::Stored(s) = read(&t, &Bytes::new(), &none).unwrap() else {
            panic!()
        };
        assert_eq!(
            s.location,
            Location::Memory(Bytes::from(vec![0, 0x3c, 0, 0xc0]))
        );
        let mut t = tensor("u", &[1], DataType::Uint32);
        t.uint64_data = vec![(1 << 32) + 7];
        let Read::Stored(s) = read(&t, &Bytes::new(), &none).unwrap() else {
            panic!()
        };
        assert_eq!(s.location, Location::Memory(Bytes::from(vec![7, 0, 0, 0])));
        // a scalar of no elements' data, and an empty tensor
        let t = tensor("e", &[0, 4], DataType::Float);
        let Read::Stored(s) = read(&t, &Bytes::new(), &none).unwrap() else {
            panic!()
        };
        assert_eq!((s.numel, s.location), (0, Location::Memory(Bytes::new())));
        let t = tensor("s", &[2], DataType::from_code(8));
        assert!(matches!(
            read(&t, &Bytes::new(), &none).unwrap(),
            Read::Skipped(_)
        ));
    }

    #[test]
    fn raw_data_is_located_in_the_file() {
        let file = Bytes::from(vec![9u8; 64]);
        let mut t = tensor("w", &[4], DataType::Float);
        t.raw_data = Some(file.slice(10..26));
        let Read::Stored(s) = read(&t, &file, &|_| None).unwrap() else {
            panic!()
        };
        assert_eq!(s.location, Location::Inline { begin: 10, end: 26 });
        // bytes that are not the file's are refused, not guessed at
        t.raw_data = Some(Bytes::from(vec![0u8; 16]));
        assert!(read(&t, &file, &|_| None).is_err());
    }
}
