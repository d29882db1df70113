//! The tensor inventory (E0b) as CSV: one row per tensor, sorted by name.

use std::io::Write;

use anyhow::Result;

use crate::model::Model;

pub const COLUMNS: [&str; 12] = [
    "name", "dtype", "shape", "numel", "file", "begin", "end", "bytes", "layer", "family",
    "expert", "mtp",
];

/// Writes the inventory of `model` as CSV. `begin`/`end` are absolute file offsets, `end`
/// exclusive; `shape` is `x`-separated (empty for scalars).
pub fn write_csv<W: Write>(model: &Model, out: W) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(COLUMNS)?;
    for t in model.tensors() {
        let shape = t
            .shape
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("x");
        let opt = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_default();
        w.write_record([
            t.name.clone(),
            t.dtype.to_string(),
            shape,
            t.numel.to_string(),
            t.file.clone(),
            t.begin.to_string(),
            t.end.to_string(),
            t.bytes().to_string(),
            opt(t.role.layer),
            t.role.family.to_string(),
            opt(t.role.expert),
            t.role.mtp.to_string(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// One line: tensor, shard, element and byte counts.
pub fn summary(model: &Model) -> String {
    let elements: u64 = model.tensors().iter().map(|t| t.numel).sum();
    let bytes: u64 = model.tensors().iter().map(|t| t.bytes()).sum();
    format!(
        "{} tensors in {} shard(s), {elements} elements, {}",
        model.tensors().len(),
        model.shards().len(),
        crate::source::human_bytes(bytes)
    )
}
