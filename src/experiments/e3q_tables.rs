//! E3q's tables (`data/e3q_*.csv`), derived from its result as results.json records it.

use anyhow::Result;

use super::e3q_requant::ResultQ;
use super::{Table, fmt};

/// This experiment's tables, from its result as results.json records it.
pub fn tables(result: &serde_json::Value) -> Result<Vec<Table>> {
    let r: ResultQ = super::readback::from_value(result)?;
    let mut p = Table::new(
        "e3q_pairs",
        &[
            "pair",
            "primary",
            "status",
            "quantised",
            "schemes",
            "variant",
            "tensors",
            "blocks",
            "identical",
            "near",
            "identical_fraction",
            "near_fraction",
            "null_blocks",
            "null_identical",
            "null_near",
            "null_identical_fraction",
            "null_near_fraction",
            "excess_identical",
            "log10_p",
        ],
    );
    for x in &r.pairs {
        p.rows.push(vec![
            x.pair.clone(),
            x.primary.to_string(),
            x.status.clone(),
            x.quantised.clone(),
            x.schemes.join(" "),
            x.variant.clone(),
            x.tensors.to_string(),
            x.blocks.to_string(),
            x.identical.to_string(),
            x.near.to_string(),
            fmt(x.identical_fraction),
            fmt(x.near_fraction),
            x.null_blocks.to_string(),
            x.null_identical.to_string(),
            x.null_near.to_string(),
            fmt(x.null_identical_fraction),
            fmt(x.null_near_fraction),
            fmt(x.excess_identical),
            x.log10_p.map(fmt).unwrap_or_default(),
        ]);
    }
    let mut t = Table::new(
        "e3q_tensors",
        &[
            "pair",
            "tensor",
            "scheme",
            "null_tensor",
            "blocks",
            "identical",
            "near",
            "null_blocks",
            "null_identical",
        ],
    );
    for x in &r.tensors {
        t.rows.push(vec![
            x.pair.clone(),
            x.tensor.clone(),
            x.scheme.clone(),
            x.null_tensor.clone(),
            x.blocks.to_string(),
            x.identical.to_string(),
            x.near.to_string(),
            x.null_blocks.to_string(),
            x.null_identical.to_string(),
        ]);
    }
    Ok(vec![p, t])
}
