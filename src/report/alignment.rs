//! Sections of the experiments that line layers and heads up across models: E4 (layer
//! alignment paths against a permutation null) and E5 (attention projections, the prefix test).

use anyhow::Result;

use super::format::{Cell, distinct, max, mean, num};
use super::layers::{heatmap_of, pairs};
use super::plot::{IntervalRow, Intervals, Lines, Plot, Series};
use super::section::{Plots, Section, TableView};
use crate::experiments::e4_alignment::{FamilyAlignment, Result4};
use crate::experiments::e5_projections::{ProjectionRow, Result5};

/// Where `layer` falls among `layers` (ascending), as a fractional position: a capped
/// matrix keeps only some layers, and a path through the others lies between them.
fn position(layers: &[u32], layer: f64) -> f64 {
    let l: Vec<f64> = layers.iter().map(|&x| f64::from(x)).collect();
    if let Some(i) = l.iter().position(|&x| x == layer) {
        return i as f64;
    }
    match l.iter().position(|&x| x > layer) {
        Some(i) if i > 0 && l[i - 1] < layer => {
            (i - 1) as f64 + (layer - l[i - 1]) / (l[i] - l[i - 1])
        }
        _ => f64::NAN,
    }
}

/// An alignment path (B layer → A layer) in the cell units of a capped matrix.
fn path_in_cells(
    a: &FamilyAlignment,
    path: &[Option<u32>],
    label: &str,
    markers_only: bool,
) -> Series {
    let (rows, cols) = a.matrix.as_ref().map_or((&[][..], &[][..]), |m| {
        (&m.row_layers[..], &m.col_layers[..])
    });
    let points = a
        .layers_b
        .iter()
        .zip(path)
        .map(|(&lb, la)| {
            (
                position(cols, la.map_or(f64::NAN, f64::from)),
                position(rows, f64::from(lb)),
            )
        })
        .collect();
    Series {
        label: label.into(),
        points,
        dashed: markers_only,
        colour: None,
    }
}

pub fn e4(r: &Result4, plots: &mut Plots) -> Result<Section> {
    let al = &r.alignments;
    let table = TableView::of(
        "Layer alignment per pair, family and metric",
        "e4_alignment",
        al,
        &[
            ("pair", &|x: &FamilyAlignment| x.pair.clone()),
            ("family", &|x| x.family.cell()),
            ("metric", &|x| x.metric.clone()),
            ("same index (argmax)", &|x| x.identity_rate_argmax.cell()),
            ("same index (Hungarian)", &|x| {
                x.identity_rate_hungarian.cell()
            }),
            ("same index (monotone)", &|x| {
                x.identity_rate_monotone.cell()
            }),
            ("monotone gain", &|x| x.observed.cell()),
            ("permutation null", &|x| {
                format!("{} ± {}", num(x.null_mean), num(x.null_sd))
            }),
            ("p", &|x| x.p_value.cell()),
            ("smallest possible p", &|x| x.min_achievable_p.cell()),
        ],
    );
    let best = best_alignment(al, "A~B");
    let mut views = e4_path_maps(al, best, plots)?;
    let irows = al
        .iter()
        .filter(|x| x.metric == "pearson")
        .map(|x| {
            IntervalRow::beside_two_sd(
                format!("{} {}", x.pair, x.family),
                x.null_mean,
                x.null_sd,
                x.observed,
            )
        })
        .collect();
    views.push(plots.add(
        "e4_observed_vs_null",
        "Monotone alignment gain of each pair and family (Pearson) beside the same statistic over shuffled layer orders.",
        &Plot::Intervals(Intervals::new(
            [
                "E4 alignment gain vs permutation null",
                "monotone alignment gain",
                "null mean ± 2 sd",
                "null mean",
                "observed",
            ],
            irows,
        )),
    )?);
    Ok(Section {
        id: "e4".into(),
        title: "E4 · Layer alignment".into(),
        nav: String::new(),
        question: "Which of A's layers does each of B's layers resemble most, and does that map follow depth more than chance would?".into(),
        null: "The same statistic over random orderings of B's layers (permutation test), and the control pairs.".into(),
        reading: e4_reading(al, best),
        tables: vec![table],
        plots: views,
    })
}

/// A pair's Pearson alignment of smallest p.
fn best_alignment<'a>(al: &'a [FamilyAlignment], pair: &str) -> Option<&'a FamilyAlignment> {
    al.iter()
        .filter(|x| x.pair == pair && x.metric == "pearson")
        .min_by(|a, b| a.p_value.total_cmp(&b.p_value))
}

/// The similarity map of A~B's best family with its three alignment paths, and the first
/// control pair's map of the same family beside it.
fn e4_path_maps(
    al: &[FamilyAlignment],
    best: Option<&FamilyAlignment>,
    plots: &mut Plots,
) -> Result<Vec<super::section::PlotView>> {
    let mut views = Vec::new();
    let Some(b) = best else {
        return Ok(views);
    };
    let family = b.family;
    let mut shown = vec![b];
    if let Some(c) = pairs(al.iter().map(|x| x.pair.as_str()))
        .into_iter()
        .find(|p| p != "A~B")
        .and_then(|c| {
            al.iter()
                .find(|x| x.pair == c && x.family == family && x.metric == "pearson")
        })
    {
        shown.push(c);
    }
    for x in shown {
        let pair = x.pair.as_str();
        let (a, bl) = pair.split_once('~').unwrap_or(("A", "B"));
        let mut h = heatmap_of(
            &format!("E4 {family} Pearson {pair}: alignment paths"),
            x.matrix.as_ref(),
            &format!("{a} layer"),
            &format!("{bl} layer"),
        );
        h.paths = vec![
            path_in_cells(x, &x.argmax, "argmax", true),
            path_in_cells(x, &x.hungarian, "Hungarian", true),
            path_in_cells(x, &x.monotone, "monotone", false),
        ];
        views.push(plots.add(
            &format!("e4_{family}_{}", pair.replace('~', "_")),
            &format!("{family}, Pearson, {pair}: similarity of every {bl} layer (rows) to every {a} layer (columns), with the argmax, Hungarian and monotone alignments."),
            &Plot::Heatmap(h),
        )?);
    }
    Ok(views)
}

fn e4_reading(al: &[FamilyAlignment], best: Option<&FamilyAlignment>) -> String {
    let Some(b) = best else {
        return "No layered family could be aligned for A~B (fewer than two layers, or widths differ)."
            .into();
    };
    let ctrl = max(al
        .iter()
        .filter(|x| x.pair != "A~B" && x.metric == "pearson")
        .map(|x| -x.p_value));
    let mut t = format!(
        "The strongest A~B alignment is in {}: the monotone path maps {} of B's layers to A's same index, with a gain of {} against {} ± {} for shuffled layer orders (p = {}; the smallest p the permutation count allows is {}).",
        b.family,
        num(b.identity_rate_monotone),
        num(b.observed),
        num(b.null_mean),
        num(b.null_sd),
        num(b.p_value),
        num(b.min_achievable_p),
    );
    if ctrl.is_finite() {
        t.push_str(&format!(
            " The control pairs' smallest p is {}.",
            num(-ctrl)
        ));
    }
    t
}

/// E5's rows of one (pair, family, relation) group.
struct Group<'a> {
    key: (String, String, String),
    rows: Vec<&'a ProjectionRow>,
}

/// The suffix Pearson of a row (the prefix test's null), NaN when it has none.
fn suffix(x: &ProjectionRow) -> f64 {
    x.suffix_pearson.unwrap_or(f64::NAN)
}

pub fn e5(r: &Result5, plots: &mut Plots) -> Result<Section> {
    let rows_in = &r.rows;
    // (pair, family, relation) groups in order of appearance.
    let groups: Vec<Group> = distinct(
        rows_in
            .iter()
            .map(|x| (x.pair.clone(), x.family.as_str(), x.relation.clone())),
    )
    .into_iter()
    .map(|key| Group {
        rows: rows_in
            .iter()
            .filter(|x| x.pair == key.0 && x.family.as_str() == key.1 && x.relation == key.2)
            .collect(),
        key,
    })
    .collect();
    let table = TableView::of(
        "Same-position windows of the attention projections, means over layers",
        "e5_projections",
        &groups,
        &[
            ("pair", &|g: &Group| g.key.0.clone()),
            ("family", &|g| g.key.1.clone()),
            ("relation", &|g| g.key.2.clone()),
            ("layers", &|g| g.rows.len().to_string()),
            ("Pearson", &|g| num(mean(g.rows.iter().map(|x| x.pearson)))),
            ("z = r·√n", &|g| num(mean(g.rows.iter().map(|x| x.z)))),
            ("suffix Pearson (prefix null)", &|g| {
                num(mean(g.rows.iter().map(|x| suffix(x))))
            }),
        ],
    );
    let plot = plots.add(
        "e5_layers",
        "Pearson of same-position windows per layer, averaged over the projection families; dashed: the prefix test's null (A's last rows).",
        &Plot::Lines(Lines {
            title: "E5 projection windows per layer".into(),
            x_label: "layer".into(),
            y_label: "Pearson".into(),
            series: e5_series(rows_in),
            y_range: None,
        }),
    )?;
    Ok(Section {
        id: "e5".into(),
        title: "E5 · Attention projections".into(),
        nav: String::new(),
        question: "Do windows at the same positions of q/k/v/o agree, and does B keep a prefix of A's heads?".into(),
        null: "z = r·√n is N(0, 1) for unrelated matrices; for the prefix test, A's last rows; the control pairs.".into(),
        reading: e5_reading(rows_in),
        tables: vec![table],
        plots: vec![plot],
    })
}

/// Per pair, the mean Pearson per layer, and the prefix test's null dashed beside it.
fn e5_series(rows_in: &[ProjectionRow]) -> Vec<Series> {
    let mut series = Vec::new();
    for (k, p) in pairs(rows_in.iter().map(|x| x.pair.as_str()))
        .into_iter()
        .enumerate()
    {
        let mut by_layer: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
        let mut suffix: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
        for x in rows_in.iter().filter(|x| x.pair == p) {
            let l = u64::from(x.layer);
            by_layer.entry(l).or_default().push(x.pearson);
            if let Some(v) = x.suffix_pearson {
                suffix.entry(l).or_default().push(v);
            }
        }
        let pts = |m: std::collections::BTreeMap<u64, Vec<f64>>| {
            m.into_iter()
                .map(|(l, v)| (l as f64, mean(v)))
                .collect::<Vec<_>>()
        };
        let has_suffix = !suffix.is_empty();
        series.push(Series {
            label: p.clone(),
            points: pts(by_layer),
            dashed: false,
            colour: Some(k),
        });
        if has_suffix {
            series.push(Series {
                label: format!("{p} A's last rows (null)"),
                points: pts(suffix),
                dashed: true,
                colour: Some(k),
            });
        }
    }
    series
}

fn e5_reading(rows_in: &[ProjectionRow]) -> String {
    let primary: Vec<_> = rows_in.iter().filter(|x| x.primary).collect();
    if primary.is_empty() {
        return "No attention projection could be compared for A~B.".into();
    }
    let mut t = format!(
        "Same-position windows of A's and B's projections correlate at a mean Pearson of {} (mean z = {}, where unrelated matrices give z near 0 with sd 1).",
        num(mean(primary.iter().map(|x| x.pearson))),
        num(mean(primary.iter().map(|x| x.z)))
    );
    let prefix: Vec<_> = primary.iter().filter(|x| x.relation == "prefix").collect();
    if !prefix.is_empty() {
        t.push_str(&format!(
            " Head counts differ, so B's rows were compared with a prefix of A's rows: Pearson {} against {} for A's last rows.",
            num(mean(prefix.iter().map(|x| x.pearson))),
            num(mean(prefix.iter().map(|x| suffix(x))))
        ));
    }
    let ctrl = mean(rows_in.iter().filter(|x| !x.primary).map(|x| x.pearson));
    if ctrl.is_finite() {
        t.push_str(&format!(" The control pairs average {}.", num(ctrl)));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_interpolate_between_kept_layers() {
        assert_eq!(position(&[0, 1, 2], 1.0), 1.0);
        assert_eq!(position(&[0, 4, 8], 6.0), 1.5);
        assert!(position(&[0, 4, 8], 9.0).is_nan());
        assert!(position(&[], 1.0).is_nan());
    }
}
