//! E10's tables (`data/e10_*.csv`), derived from its result as results.json records it.

use anyhow::Result;

use super::e10_mlp_matching::{LayerRow, PairResult, Result10};
use super::{Table, fmt};

/// p-values in scientific notation: 6 decimals would print every small one as 0.
fn sci(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.6e}")).unwrap_or_default()
}

/// This experiment's tables, from its result as results.json records it.
pub fn tables(result: &serde_json::Value) -> Result<Vec<Table>> {
    let r: Result10 = super::readback::from_value(result)?;
    Ok(build_tables(&r.pairs, &r.layers))
}

fn build_tables(pairs: &[PairResult], layers: &[LayerRow]) -> Vec<Table> {
    let mut p = Table::new(
        "e10_pairs",
        &[
            "pair",
            "primary",
            "status",
            "mlp_kind",
            "layers_a",
            "layers_b",
            "layers_tested",
            "layers_degenerate",
            "units",
            "hidden",
            "column_fraction",
            "spearman_tail",
            "fisher_chi2",
            "dof",
            "p_value",
            "log10_p",
            "mean_agreement",
            "in_place_p_value",
            "in_place_log10_p",
        ],
    );
    for r in pairs {
        p.rows.push(vec![
            r.pair.clone(),
            r.primary.to_string(),
            r.status.clone(),
            r.mlp_kind.clone(),
            r.layers_a.to_string(),
            r.layers_b.to_string(),
            r.layers_tested.to_string(),
            r.layers_degenerate.to_string(),
            r.units.to_string(),
            r.hidden.to_string(),
            fmt(r.column_fraction),
            r.spearman_tail.clone(),
            opt(r.fisher_chi2),
            r.dof.to_string(),
            sci(r.p_value),
            opt(r.log10_p),
            opt(r.mean_agreement),
            sci(r.in_place_p_value),
            opt(r.in_place_log10_p),
        ]);
    }
    let mut l = Table::new(
        "e10_layers",
        &[
            "pair",
            "primary",
            "layer",
            "status",
            "rho",
            "p_value",
            "log10_p",
            "agreement",
            "in_place_rho",
            "in_place_log10_p",
        ],
    );
    for r in layers {
        l.rows.push(vec![
            r.pair.clone(),
            r.primary.to_string(),
            r.layer.to_string(),
            r.status.clone(),
            opt(r.rho),
            sci(r.p_value),
            opt(r.log10_p),
            opt(r.agreement),
            opt(r.in_place_rho),
            opt(r.in_place_log10_p),
        ]);
    }
    vec![p, l]
}

/// An optional value at the tables' six decimals, empty when absent.
fn opt(v: Option<f64>) -> String {
    v.map(fmt).unwrap_or_default()
}
