//! Sections of the experiments that compare models layer by layer: E1, E2 and E7 (E4 and E5,
//! which line layers and heads up, are in `alignment`).

use anyhow::Result;

use super::format::{Cell, distinct, max, mean, num};
use super::plot::{Heatmap, IntervalRow, Intervals, Lines, Plot, Series};
use super::section::{Plots, Section, TableView};
use crate::arch::Family;
use crate::experiments::PlotMatrix;
use crate::experiments::e1_layerwise::Result1;
use crate::experiments::e2_baselines::{CrossStat, Result2};
use crate::experiments::e7_std_curves::Result7;

/// The pairs in the order they appear (A~B first).
pub(super) fn pairs<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    distinct(
        names
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(str::to_string),
    )
}

/// Whether a family's name says it is a norm (its gain or bias).
pub(super) fn is_norm(family: Family) -> bool {
    family.as_str().contains("norm")
}

pub fn e1(r: &Result1, plots: &mut Plots) -> Result<Section> {
    let summary = &r.summary;
    let rows = summary
        .iter()
        .filter(|x| x.primary)
        .map(|x| {
            vec![
                x.family.cell(),
                x.compared.cell(),
                x.mean_cosine.cell(),
                x.mean_shuffle_null_cosine.cell(),
                x.mean_pearson.cell(),
                x.min_pearson.cell(),
                x.mean_rel_l2.cell(),
                x.shape_mismatches.cell(),
            ]
        })
        .collect();
    let table = TableView::new(
        "A~B, per tensor family (means over layers)",
        &[
            "family",
            "tensors",
            "cosine",
            "shuffle-null cosine",
            "Pearson",
            "min Pearson",
            "rel. L2",
            "shape mismatches",
        ],
        rows,
        "e1_summary",
    );
    // Per pair, the norm families pooled: the comparison the public dispute was about.
    let pooled: Vec<(String, f64, f64, f64)> = pairs(summary.iter().map(|x| x.pair.as_str()))
        .into_iter()
        .map(|p| {
            let items: Vec<_> = summary
                .iter()
                .filter(|x| x.pair == p && is_norm(x.family))
                .collect();
            let (c, n, r) = (
                mean(items.iter().map(|x| x.mean_cosine)),
                mean(items.iter().map(|x| x.mean_shuffle_null_cosine)),
                mean(items.iter().map(|x| x.mean_pearson)),
            );
            (p, c, n, r)
        })
        .collect();
    let mut irows = Vec::new();
    for (p, c, n, r) in &pooled {
        irows.push(IntervalRow::beside(
            format!("{p} cosine"),
            None,
            Some(*n),
            *c,
        ));
        irows.push(IntervalRow::beside(
            format!("{p} Pearson"),
            None,
            Some(0.0),
            *r,
        ));
    }
    let plot = plots.add(
        "e1_norms",
        "Norm vectors, pooled over norm families: raw cosine beside its shuffle null, and Pearson beside 0.",
        &Plot::Intervals(Intervals::new(
            [
                "E1 norm vectors: raw cosine vs Pearson",
                "similarity (mean over layers and norm families)",
                "",
                "null (shuffled coordinates; 0 for Pearson)",
                "observed",
            ],
            irows,
        )),
    )?;
    Ok(Section {
        id: "e1".into(),
        title: "E1 · Layer-wise tensor comparison".into(),
        nav: String::new(),
        question: "Do tensors with the same name and layer agree coordinate by coordinate?".into(),
        null: "For cosine: the cosine after shuffling coordinates (what positive vectors give with no relation). For Pearson: 0. Control pairs show what unrelated models reach.".into(),
        reading: e1_reading(&pooled),
        tables: vec![table],
        plots: vec![plot],
    })
}

fn e1_reading(pooled: &[(String, f64, f64, f64)]) -> String {
    let Some((_, c, n, p)) = pooled.iter().find(|x| x.0 == "A~B") else {
        return "A~B has no norm tensors to compare.".into();
    };
    let controls: Vec<_> = pooled.iter().filter(|x| x.0 != "A~B").collect();
    let mut text = format!(
        "Over the norm families, A~B's raw cosine is {} while shuffling coordinates alone gives {}; its Pearson correlation is {}.",
        num(*c),
        num(*n),
        num(*p)
    );
    if controls.is_empty() {
        text.push_str(
            " No control pair was run, so only the shuffle null stands beside these numbers.",
        );
        return text;
    }
    let cmax = max(controls.iter().map(|x| x.1));
    let pmax = max(controls.iter().map(|x| x.3));
    text.push_str(&format!(
        " The control pairs reach a cosine of up to {} and a Pearson of up to {}.",
        num(cmax),
        num(pmax)
    ));
    let verdict = if *p > pmax + 0.2 {
        " Pearson separates the audited pair from the controls; raw cosine, near its null for every pair, does not carry that information."
    } else if *p > pmax {
        " Pearson is above the controls, but by little."
    } else {
        " Pearson does not separate the audited pair from the controls."
    };
    text.push_str(verdict);
    text
}

pub(super) fn heatmap_of(
    title: &str,
    matrix: Option<&PlotMatrix>,
    x_label: &str,
    y_label: &str,
) -> Heatmap {
    let labels = |layers: &[u32]| layers.iter().map(Cell::cell).collect::<Vec<_>>();
    Heatmap {
        title: title.into(),
        x_label: x_label.into(),
        y_label: y_label.into(),
        row_labels: matrix.map(|m| labels(&m.row_layers)).unwrap_or_default(),
        col_labels: matrix.map(|m| labels(&m.col_layers)).unwrap_or_default(),
        values: matrix.map(|m| m.values.clone()).unwrap_or_default(),
        range: (-1.0, 1.0),
        paths: Vec::new(),
        empty_note: String::new(),
    }
}

pub fn e2(r: &Result2, plots: &mut Plots) -> Result<Section> {
    let stats = &r.stats;
    let rows = stats
        .iter()
        .map(|x| {
            vec![
                x.pair.clone(),
                x.family.cell(),
                x.metric.clone(),
                x.same_index.mean.cell(),
                format!("{} ± {}", num(x.off_diagonal.mean), num(x.off_diagonal.sd)),
                x.within.mean.cell(),
                x.z_vs_off_diagonal.cell(),
                x.percentile_in_within.cell(),
                if x.metric == "cosine" {
                    x.shuffle_null_mean.cell()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    let table = TableView::new(
        "Same-layer values beside wrong-layer and within-model values (layer 0 apart)",
        &[
            "pair",
            "family",
            "metric",
            "same layer",
            "wrong layers (mean ± sd)",
            "within model",
            "z",
            "percentile in within",
            "shuffle null",
        ],
        rows,
        "e2_baselines",
    );
    let mut views = Vec::new();
    let family = r.families.first().map(Cell::cell).unwrap_or_default();
    let find = |kind: &str, a: &str, b: &str, metric: &str| {
        r.matrices.iter().find(|m| {
            m.family.as_str() == family
                && m.kind == kind
                && m.model_a == a
                && m.model_b == b
                && m.metric == metric
        })
    };
    let control = pairs(stats.iter().map(|x| x.pair.as_str()))
        .into_iter()
        .find(|p| p != "A~B");
    let mut wanted = vec![
        ("cross", "A".to_string(), "B".to_string(), "pearson"),
        ("cross", "A".into(), "B".into(), "cosine"),
        ("within", "A".into(), "A".into(), "pearson"),
    ];
    if let Some((a, b)) = control.as_deref().and_then(|c| c.split_once('~')) {
        wanted.push(("cross", a.into(), b.into(), "pearson"));
    }
    for (kind, a, b, metric) in wanted {
        let Some(m) = find(kind, &a, &b, metric) else {
            continue;
        };
        let title = format!("E2 {family} {metric}: {a} × {b}");
        let name = format!("e2_{family}_{kind}_{a}_{b}_{metric}");
        views.push(plots.add(
            &name,
            &format!(
                "{family}, {metric}, {} (rows: {a}'s layers, columns: {b}'s; colour from −1 to 1).",
                if kind == "within" {
                    "within one model"
                } else {
                    "across models"
                }
            ),
            &Plot::Heatmap(heatmap_of(
                &title,
                Some(&m.matrix),
                &format!("{b} layer"),
                &format!("{a} layer"),
            )),
        )?);
    }
    let irows = stats
        .iter()
        .map(|x| {
            IntervalRow::beside(
                format!("{} {} {}", x.pair, x.family, x.metric),
                Some((x.off_diagonal.p05, x.off_diagonal.p95)),
                Some(x.off_diagonal.mean),
                x.same_index.mean,
            )
        })
        .collect();
    views.push(plots.add(
        "e2_same_vs_wrong_layers",
        "Mean same-layer value of each pair beside the distribution of its wrong-layer values.",
        &Plot::Intervals(Intervals::new(
            [
                "E2 same layer vs wrong layers",
                "similarity",
                "wrong layers, 5th–95th percentile",
                "wrong layers, mean",
                "same layer, mean",
            ],
            irows,
        )),
    )?);
    Ok(Section {
        id: "e2".into(),
        title: "E2 · Baselines: is a high similarity high?".into(),
        nav: String::new(),
        question: "Does layer i of A resemble layer i of B more than it resembles B's other layers, and more than a model's layers resemble each other?".into(),
        null: "The same pair's wrong-layer values (z = (same − wrong mean) / wrong sd), the within-model distribution, and the control pairs.".into(),
        reading: e2_reading(stats),
        tables: vec![table],
        plots: views,
    })
}

fn e2_reading(stats: &[CrossStat]) -> String {
    let z_max = |pair: &dyn Fn(&str) -> bool, metric: &str| {
        max(stats
            .iter()
            .filter(|x| pair(&x.pair) && x.metric == metric)
            .map(|x| x.z_vs_off_diagonal))
    };
    let primary = |p: &str| p == "A~B";
    let control = |p: &str| p != "A~B";
    let (zp, zc) = (z_max(&primary, "pearson"), z_max(&primary, "cosine"));
    if zp.is_nan() && zc.is_nan() {
        return "No norm family could be compared across A and B (missing, or of different widths).".into();
    }
    let mut text = format!(
        "A~B's same-layer values stand above its wrong-layer values by up to z = {} with Pearson and z = {} with cosine.",
        num(zp),
        num(zc)
    );
    let (cp, cc) = (z_max(&control, "pearson"), z_max(&control, "cosine"));
    if cp.is_finite() || cc.is_finite() {
        text.push_str(&format!(
            " The control pairs reach up to z = {} (Pearson) and z = {} (cosine).",
            num(cp),
            num(cc)
        ));
        text.push_str(if zp > cp.max(0.0) + 2.0 {
            " Layer correspondence shows in the audited pair and not in the controls."
        } else {
            " The audited pair's layer correspondence is not clearly beyond the controls'."
        });
    } else {
        text.push_str(" No control pair was run.");
    }
    text
}

pub fn e7(r: &Result7, plots: &mut Plots) -> Result<Section> {
    let vc = &r.versus_controls;
    let rows = vc
        .iter()
        .map(|x| {
            vec![
                x.family.cell(),
                x.statistic.clone(),
                x.primary_pearson.cell(),
                x.max_control_pearson.cell(),
                num(max(x.lab_null_pearsons.iter().copied())),
                x.exceeds_controls.cell(),
            ]
        })
        .collect();
    let table = TableView::new(
        "Curve Pearson of A~B beside the control pairs and the lab's unrelated pairs",
        &[
            "family",
            "statistic",
            "A~B",
            "max control",
            "max lab null",
            "exceeds controls",
        ],
        rows,
        "e7_pairs",
    );
    let curves = &r.curves;
    let families = distinct(curves.iter().map(|c| c.family));
    let mut views = Vec::new();
    for &fam in families.iter().take(2) {
        let series = curves
            .iter()
            .filter(|c| c.family == fam)
            .map(|c| {
                let n = c.layers.len().saturating_sub(1).max(1) as f64;
                Series {
                    label: c.model.clone(),
                    points: c
                        .layers
                        .iter()
                        .enumerate()
                        .zip(&c.std)
                        .map(|((i, _), &v)| (i as f64 / n, v))
                        .collect(),
                    dashed: c.model.starts_with('C'),
                    colour: None,
                }
            })
            .collect();
        views.push(plots.add(
            &format!("e7_std_{fam}"),
            &format!("Per-layer standard deviation of {fam} for every model, against relative depth (controls dashed)."),
            &Plot::Lines(Lines {
                title: format!("E7 std curve: {fam}"),
                x_label: "relative depth".into(),
                y_label: "std".into(),
                series,
                y_range: None,
            }),
        )?);
    }
    let exceed = vc.iter().filter(|x| x.exceeds_controls).count();
    let lab = max(vc.iter().flat_map(|x| x.lab_null_pearsons.iter().copied()));
    let reading = if vc.is_empty() {
        "No curve could be compared against controls (no control model, or no shared family)."
            .into()
    } else {
        format!(
            "A~B's curve correlation exceeds every control pair for {exceed} of {} family/statistic combinations. Curves of unrelated models in the lab reach a Pearson of {}: curve shape follows from architecture and training recipe as much as from lineage, so this is weak evidence either way.",
            vc.len(),
            num(lab)
        )
    };
    Ok(Section {
        id: "e7".into(),
        title: "E7 · Std curves".into(),
        nav: String::new(),
        question: "Do the per-layer statistics (std, mean, kurtosis) of A and B trace the same curve over depth?".into(),
        null: "The control pairs' curve correlations and the lab's unrelated pairs.".into(),
        reading,
        tables: vec![table],
        plots: views,
    })
}
