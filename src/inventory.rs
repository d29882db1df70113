//! The tensor inventory (E0b) as CSV: one row per tensor, sorted by name.

use std::io::Write;

use anyhow::Result;

use crate::model::Model;

/// The CSV's header, in column order.
pub const COLUMNS: [&str; 15] = [
    "name",
    "dtype",
    "shape",
    "numel",
    "file",
    "begin",
    "end",
    "bytes",
    "layer",
    "family",
    "expert",
    "mtp",
    "stack",
    "qkv_split",
    "inferred",
];

/// Writes the inventory of `model` as CSV. `begin`/`end` are absolute file offsets, `end`
/// exclusive; `shape` is `x`-separated (empty for scalars). `layer` is the layer key (decoder
/// layers of an encoder–decoder model are `1000 + N`, `stack` says which stack); `qkv_split` is
/// how a fused q/k/v tensor's rows split; `inferred` marks roles placed by the generic fallback.
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
        let row = [
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
            t.role.stack.as_str().to_string(),
            t.role.qkv.map(|q| q.describe()).unwrap_or_default(),
            t.role.inferred.to_string(),
        ];
        w.write_record(row.iter().map(|c| crate::experiments::csv_cell(c)))?;
    }
    w.flush()?;
    Ok(())
}

/// One line: tensor, shard, element and byte counts, and how many tensors got a role only by
/// inference or none at all.
pub fn summary(model: &Model) -> String {
    let elements: u64 = model.tensors().iter().map(|t| t.numel).sum();
    let bytes: u64 = model.tensors().iter().map(|t| t.bytes()).sum();
    let (placed, inferred) = placement(model);
    format!(
        "{} tensors in {} shard(s) ({}), {elements} elements, {}; roles: {placed} placed ({inferred} inferred), {} unplaced",
        model.tensors().len(),
        model.shards().len(),
        model.format().name(),
        crate::source::human_bytes(bytes),
        model.tensors().len() - placed
    )
}

/// Tensors with a role (any family but `other`) and, among them, those placed by inference.
pub fn placement(model: &Model) -> (usize, usize) {
    let placed = model
        .tensors()
        .iter()
        .filter(|t| t.role.family != crate::arch::Family::Other);
    let (mut n, mut inferred) = (0, 0);
    for t in placed {
        n += 1;
        inferred += usize::from(t.role.inferred);
    }
    (n, inferred)
}
