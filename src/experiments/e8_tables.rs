//! E8's tables (`data/e8_*.csv`), derived from its result as results.json records it.

use anyhow::Result;

use super::e8_cka::{LayerRow, PairResult, Result8};
use super::{Table, fmt};

/// This experiment's tables, from its result as results.json records it.
pub fn tables(result: &serde_json::Value) -> Result<Vec<Table>> {
    let r: Result8 = super::readback::from_value(result)?;
    Ok(vec![summary_table(&r.pairs), layers_table(&r.layers)])
}

fn summary_table(rows: &[PairResult]) -> Table {
    let mut t = Table::new(
        "e8_cka",
        &[
            "pair",
            "primary",
            "status",
            "alignment",
            "held_out_fit_identity",
            "held_out_fit_lap",
            "held_out_fit_procrustes",
            "canonical",
            "d_base",
            "d_target",
            "shared_tokens",
            "tokens_used",
            "alignment_mean_abs_cos",
            "pairing",
            "layers_matched",
            "score_q",
            "score_k",
            "score",
            "score_assigned",
            "score_identity",
            "score_awm",
            "score_awm_assigned",
            "z_vs_controls",
            "z_awm_constants",
        ],
    );
    for r in rows {
        t.rows.push(vec![
            r.pair.clone(),
            r.primary.to_string(),
            r.status.clone(),
            r.alignment.clone(),
            fmt(r.held_out_fit_identity),
            fmt(r.held_out_fit_lap),
            fmt(r.held_out_fit_procrustes),
            super::e6_spectra::form_name(r.canonical),
            r.d_base.to_string(),
            r.d_target.to_string(),
            r.shared_tokens.to_string(),
            r.tokens_used.to_string(),
            fmt(r.alignment_mean_abs_cos),
            r.pairing
                .map(|p| format!("{p:?}").to_lowercase())
                .unwrap_or_default(),
            r.layers_matched.to_string(),
            fmt(r.score_q),
            fmt(r.score_k),
            fmt(r.score),
            fmt(r.score_assigned),
            fmt(r.score_identity),
            fmt(r.score_awm),
            fmt(r.score_awm_assigned),
            r.z_vs_controls.map(fmt).unwrap_or_default(),
            fmt(r.z_awm_constants),
        ]);
    }
    t
}

fn layers_table(rows: &[LayerRow]) -> Table {
    let mut t = Table::new(
        "e8_cka_layers",
        &["pair", "primary", "layer_a", "layer_b", "q_cka", "k_cka"],
    );
    for r in rows {
        t.rows.push(vec![
            r.pair.clone(),
            r.primary.to_string(),
            r.layer_a.to_string(),
            r.layer_b.to_string(),
            fmt(r.q),
            fmt(r.k),
        ]);
    }
    t
}
