//! The section of E10 (MLP unit matching).

use anyhow::Result;

use super::format::{Cell, num};
use super::plot::{Lines, Plot, Series};
use super::section::{Plots, Section, TableView};
use crate::experiments::e10_mlp_matching::{LayerRow, PairResult, Result10};

/// One-sided 1 % point of the standard normal: Spearman's ρ of two independent random
/// permutations of n units has mean 0 and sd 1/√(n−1), so unrelated layers stay below
/// `Z_99 / √(n−1)` 99 times in 100.
const Z_99: f64 = 2.326_347_874;

fn p_shown(p: Option<f64>, log10_p: Option<f64>) -> String {
    match (p, log10_p) {
        (Some(p), _) if p > 0.0 => num(p),
        (_, Some(l)) if l.is_finite() => format!("10^{l:.0}"),
        _ => "n/a".into(),
    }
}

fn pair_row(x: &PairResult) -> Vec<String> {
    vec![
        x.pair.clone(),
        x.status.clone(),
        x.mlp_kind.clone(),
        format!("{} of {} / {}", x.layers_tested, x.layers_a, x.layers_b),
        format!("{} × {}", x.units, x.hidden),
        num(x.column_fraction),
        x.mean_agreement.cell(),
        p_shown(x.p_value, x.log10_p),
        p_shown(x.in_place_p_value, x.in_place_log10_p),
    ]
}

fn layer_series(rows: &[&LayerRow], pair: &str, colour: usize, dashed: bool) -> Series {
    Series {
        label: pair.to_string(),
        points: rows
            .iter()
            .filter(|x| x.pair == pair)
            .filter_map(|x| x.rho.map(|r| (f64::from(x.layer), r)))
            .collect(),
        dashed,
        colour: Some(colour),
    }
}

pub fn e10(result: &Result10, plots: &mut Plots) -> Result<Section> {
    let table = TableView::new(
        "Hidden-unit matchings of the MLPs: do the two matchings of B's units to A's agree?",
        &[
            "pair",
            "status",
            "MLP",
            "layers tested of A / B",
            "units × hidden",
            "columns read",
            "mean agreement",
            "p (gate~up, Fisher)",
            "p (in place)",
        ],
        result.pairs.iter().map(pair_row).collect(),
        "e10_pairs",
    );
    let ok_layers: Vec<&LayerRow> = result.layers.iter().filter(|x| x.status == "ok").collect();
    let mut series: Vec<Series> = result
        .pairs
        .iter()
        .filter(|x| x.status == "ok")
        .enumerate()
        .map(|(i, x)| layer_series(&ok_layers, &x.pair, i, !x.primary))
        .collect();
    let units = result
        .pairs
        .iter()
        .find(|x| x.primary && x.status == "ok")
        .map(|x| x.units);
    if let Some(n) = units.filter(|&n| n > 1) {
        let bound = Z_99 / ((n - 1) as f64).sqrt();
        let xs: Vec<f64> = ok_layers.iter().map(|x| f64::from(x.layer)).collect();
        let (lo, hi) = xs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        if lo.is_finite() {
            series.push(Series {
                label: "unrelated: 99 % of layers below".into(),
                points: vec![(lo, bound), (hi.max(lo + 1.0), bound)],
                dashed: true,
                colour: Some(series.len()),
            });
        }
    }
    let mut section_plots = Vec::new();
    if series.iter().any(|s| !s.points.is_empty()) {
        section_plots.push(plots.add(
            "e10_layers",
            "Spearman ρ of the two matchings of B's MLP units to A's, per layer (controls dashed); independent models give ρ near 0 with sd 1/√(units − 1).",
            &Plot::Lines(Lines {
                title: "E10 agreement of the two unit matchings per layer".into(),
                x_label: "layer".into(),
                y_label: "Spearman ρ".into(),
                series,
                y_range: None,
            }),
        )?);
    }
    Ok(Section {
        id: "e10".into(),
        title: "E10 · MLP unit matching".into(),
        nav: String::new(),
        question: "Do B's MLP hidden units correspond to A's: do matching them by gate rows and by up rows (or up rows and down columns) give the same permutation?".into(),
        null: "Independent initialisations: each model's hidden units are exchangeable, so the two matchings are unrelated permutations and the Spearman p-value is exact per layer; Fisher's method combines the layers. Control pairs are shown beside.".into(),
        reading: reading(result),
        tables: vec![table],
        plots: section_plots,
    })
}

fn reading(result: &Result10) -> String {
    let Some(primary) = result.pairs.iter().find(|x| x.primary) else {
        return "A~B was not tested.".into();
    };
    if primary.status != "ok" {
        return format!("A~B could not be tested: {}.", primary.status);
    }
    let mut text = format!(
        "Over {} layer(s) of {} {} units each, the two matchings of B's units send {} % of the units to the same unit of A on average; the combined p-value that independent models agree this well is {}.",
        primary.layers_tested,
        primary.mlp_kind,
        primary.units,
        primary.mean_agreement.map(|x| 100.0 * x).cell(),
        p_shown(primary.p_value, primary.log10_p),
    );
    let controls: Vec<&PairResult> = result
        .pairs
        .iter()
        .filter(|x| !x.primary && x.status == "ok")
        .collect();
    if !controls.is_empty() {
        let smallest = controls
            .iter()
            .filter_map(|x| x.log10_p)
            .fold(f64::INFINITY, f64::min);
        text.push_str(&format!(
            " The control pairs' smallest p-value is {}.",
            if smallest.is_finite() {
                p_shown(Some(10f64.powf(smallest)), Some(smallest))
            } else {
                "n/a".into()
            }
        ));
    }
    text.push_str(" A rotated or permuted residual stream hides this test (E8 covers it).");
    text
}
