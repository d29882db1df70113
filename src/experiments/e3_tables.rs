//! E3's tables (`data/e3_*.csv`), derived from its result as results.json records it.

use anyhow::Result;

use super::e3_result::{PairBytes, Result3};
use super::{Table, fmt};

/// This experiment's tables, from its result as results.json records it.
pub fn tables(result: &serde_json::Value) -> Result<Vec<Table>> {
    let r: Result3 = super::readback::from_value(result)?;
    Ok(build_tables(&r.pairs))
}

fn build_tables(pairs: &[PairBytes]) -> Vec<Table> {
    let mut summary = summary_table();
    let [mut matches, mut casts, mut agreeing, mut reordered] = detail_tables();
    for p in pairs {
        summary.rows.push(summary_row(p));
        detail_rows(p, [&mut matches, &mut casts, &mut agreeing, &mut reordered]);
    }
    vec![summary, matches, casts, agreeing, reordered]
}

/// `e3_bytes`, one row per pair, empty.
fn summary_table() -> Table {
    Table::new(
        "e3_bytes",
        &[
            "pair",
            "primary",
            "blocks_a",
            "blocks_informative",
            "blocks_excluded",
            "excluded_by_reason",
            "blocks_found_in_b",
            "same_role_tensors",
            "same_role_blocks_compared",
            "same_role_blocks_identical",
            "identical_tensors",
            "identical_bytes",
            "identical_renamed_or_moved",
            "partial_tensors",
            "unconfirmed_tensors",
            "cast_identical_tensors",
            "agreement_tensors",
            "agreement_elements",
            "agreement_identical",
            "agreement_expected",
            "agreement_excess_fraction",
            "agreement_z",
            "agreement_tensors_agreeing",
            "agreement_max_tensor_z",
            "agreement_max_tensor",
            "permuted_same_values",
            "permuted_tensors",
            "fingerprint_coordinates",
            "fingerprint_matches",
            "fingerprint_expected",
            "fingerprint_p_value",
            "tier2_bytes",
        ],
    )
}

/// `e3_tensors`, `e3_casts`, `e3_agreement` and `e3_permuted`, empty.
fn detail_tables() -> [Table; 4] {
    let matches = Table::new(
        "e3_tensors",
        &[
            "pair",
            "tensor_a",
            "tensor_b",
            "relation",
            "bytes",
            "blocks_matched",
            "blocks_informative",
            "status",
        ],
    );
    let casts = Table::new(
        "e3_casts",
        &[
            "pair",
            "tensor_a",
            "tensor_b",
            "dtype_a",
            "dtype_b",
            "windows_informative",
            "windows_identical",
            "status",
        ],
    );
    let agreeing = Table::new(
        "e3_agreement",
        &[
            "pair",
            "tensor_a",
            "tensor_b",
            "elements",
            "identical",
            "expected",
            "excess",
            "z",
        ],
    );
    let reordered = Table::new(
        "e3_permuted",
        &[
            "pair",
            "tensor_a",
            "tensor_b",
            "elements",
            "distinct_values",
            "shares_with",
            "coordinates_mapped",
        ],
    );
    [matches, casts, agreeing, reordered]
}

/// A pair's row of `e3_bytes`.
fn summary_row(p: &PairBytes) -> Vec<String> {
    let s = &p.same_role;
    let f = &p.fingerprint;
    let e = &p.element_agreement;
    vec![
        p.pair.clone(),
        p.primary.to_string(),
        p.blocks_a.to_string(),
        p.blocks_informative.to_string(),
        p.blocks_excluded.to_string(),
        p.excluded_by_reason
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(" "),
        p.blocks_found_in_b.to_string(),
        s.tensors_compared.to_string(),
        s.blocks_compared.to_string(),
        s.blocks_identical.to_string(),
        p.identical_tensors.to_string(),
        p.identical_bytes.to_string(),
        p.identical_renamed_or_moved.to_string(),
        p.partial_tensors.to_string(),
        p.unconfirmed_tensors.to_string(),
        p.cast_identical_tensors.to_string(),
        e.tensors_compared.to_string(),
        e.elements_compared.to_string(),
        e.elements_identical.to_string(),
        fmt(e.expected_identical),
        fmt(e.excess_fraction),
        fmt(e.z),
        e.tensors_agreeing.to_string(),
        fmt(e.max_tensor_z),
        e.max_tensor.clone(),
        p.permuted.same_values.to_string(),
        p.permuted.tensors_permuted.to_string(),
        f.coordinates.to_string(),
        f.matches.to_string(),
        fmt(f.expected),
        // p-values of copies are far below what six decimals show.
        format!("{:.3e}", f.p_value),
        p.tier2_bytes.to_string(),
    ]
}

/// A pair's rows of the detail tables ([`detail_tables`]' order).
fn detail_rows(p: &PairBytes, [matches, casts, agreeing, reordered]: [&mut Table; 4]) {
    let e = &p.element_agreement;
    for m in &p.matches {
        matches.rows.push(vec![
            p.pair.clone(),
            m.tensor_a.clone(),
            m.tensor_b.clone(),
            m.relation.clone(),
            m.bytes.to_string(),
            m.blocks_matched.to_string(),
            m.blocks_informative.to_string(),
            m.status.clone(),
        ]);
    }
    for t in &e.agreeing {
        agreeing.rows.push(vec![
            p.pair.clone(),
            t.tensor_a.clone(),
            t.tensor_b.clone(),
            t.elements.to_string(),
            t.identical.to_string(),
            fmt(t.expected),
            fmt(t.excess),
            fmt(t.z),
        ]);
    }
    for t in &p.permuted.tensors {
        reordered.rows.push(vec![
            p.pair.clone(),
            t.tensor_a.clone(),
            t.tensor_b.clone(),
            t.elements.to_string(),
            t.distinct_values.to_string(),
            t.shares_with.clone(),
            t.coordinates_mapped.to_string(),
        ]);
    }
    for c in &p.casts {
        casts.rows.push(vec![
            p.pair.clone(),
            c.tensor_a.clone(),
            c.tensor_b.clone(),
            c.dtype_a.clone(),
            c.dtype_b.clone(),
            c.windows_informative.to_string(),
            c.windows_identical.to_string(),
            c.status.clone(),
        ]);
    }
}
