//! Sections of the experiments that match things across models: E0 (config and tokenizer),
//! E0c (shipped code), E1b (embeddings by token text), E8 (CKA), E9 (experts) and E6 (spectra);
//! E3 (bytes) is in `bytes`.

use anyhow::Result;

use super::format::{Cell, distinct, max, num};
use super::plot::{IntervalRow, Intervals, Lines, Plot, Series};
use super::section::{Plots, Section, TableView};
use crate::experiments::e0_config::{Result0, TokenizerStats};
use crate::experiments::e0c_code::Result0c;
use crate::experiments::e1b_embeddings::{PairResult as E1bPair, Result1b, RowStats};
use crate::experiments::e6_spectra::Result6;
use crate::experiments::e8_cka::{LayerRow, Result8};
use crate::experiments::e9_experts::Result9;

/// The audited pair's item and the control pairs' items of a per-pair list.
pub(super) fn split<T>(items: &[T], primary: impl Fn(&T) -> bool) -> (Option<&T>, Vec<&T>) {
    (
        items.iter().find(|x| primary(x)),
        items.iter().filter(|x| !primary(x)).collect(),
    )
}

pub fn e0(r: &Result0) -> Section {
    let pairs = &r.pairs;
    let rows = pairs
        .iter()
        .map(|x| {
            let t = |cell: fn(&TokenizerStats) -> String| {
                x.tokenizer.as_ref().map_or_else(|| "n/a".into(), cell)
            };
            vec![
                x.pair.clone(),
                format!(
                    "{} / {} / {} / {}",
                    x.config_equal.cell(),
                    x.config_different.cell(),
                    x.config_only_a.cell(),
                    x.config_only_b.cell()
                ),
                x.tokenizer_status.clone(),
                format!("{} / {}", t(|t| t.vocab_a.cell()), t(|t| t.vocab_b.cell())),
                t(|t| t.jaccard.cell()),
                t(|t| t.same_id_ratio.cell()),
                format!(
                    "{} ({})",
                    t(|t| t.best_offset.cell()),
                    t(|t| t.best_offset_count.cell())
                ),
                t(|t| t.longest_run.cell()),
                t(|t| t.merges_overlap_vs_smaller.cell()),
            ]
        })
        .collect();
    let table = TableView::new(
        "Config fields and tokenizers",
        &[
            "pair",
            "config equal / different / only A / only B",
            "tokenizer",
            "vocab A / B",
            "vocab Jaccard",
            "same id",
            "best id offset (tokens)",
            "longest aligned run",
            "merges overlap",
        ],
        rows,
        "e0_config",
    );
    let (p, controls) = split(pairs, |x| x.primary);
    let reading = match p {
        None => "A~B's configs and tokenizers were not compared.".into(),
        Some(p) => {
            let t = p.tokenizer.as_ref();
            let mut text = format!(
                "A and B agree on {} config fields and differ on {}. Their vocabularies overlap with Jaccard {}; the share of shared tokens with the same id is {}, and shifting ids by {} aligns {} tokens.",
                p.config_equal.cell(),
                p.config_different.cell(),
                t.map(|t| t.jaccard).cell(),
                t.map(|t| t.same_id_ratio).cell(),
                t.and_then(|t| t.best_offset).cell(),
                t.map(|t| t.best_offset_count).cell(),
            );
            let cj = max(controls
                .iter()
                .map(|c| c.tokenizer.as_ref().map_or(f64::NAN, |t| t.jaccard)));
            if cj.is_finite() {
                text.push_str(&format!(
                    " The control pairs' vocabularies overlap with Jaccard up to {}.",
                    num(cj)
                ));
            }
            text.push_str(" Shared configs and tokenizers are weak evidence: models of one family share them by design, and a derivative can change them.");
            text
        }
    };
    Section {
        id: "e0".into(),
        title: "E0 · Config and tokenizer".into(),
        nav: String::new(),
        question: "How do the models' config.json fields and tokenizers compare (vocabulary overlap, ids, merges, special tokens)?".into(),
        null: "The control pairs.".into(),
        reading,
        tables: vec![table],
        plots: Vec::new(),
    }
}

pub fn e0c(r: &Result0c) -> Section {
    let pairs = &r.pairs;
    let rows = pairs
        .iter()
        .map(|x| {
            vec![
                x.pair.clone(),
                format!("{} / {}", x.files_a.cell(), x.files_b.cell()),
                x.files_in_both.cell(),
                x.files_identical.cell(),
                x.py_shared_defs_count.cell(),
            ]
        })
        .collect();
    let table = TableView::new(
        "Shipped text files (never executed)",
        &[
            "pair",
            "files A / B",
            "in both",
            "identical",
            "shared Python definitions",
        ],
        rows,
        "e0c_files",
    );
    let (p, controls) = split(pairs, |x| x.primary);
    let reading = match p {
        None => "A~B's shipped files were not compared.".into(),
        Some(p) => {
            let mut text = format!(
                "Of the text files both models ship ({}), {} are identical and {} Python definitions are shared.",
                p.files_in_both.cell(),
                p.files_identical.cell(),
                p.py_shared_defs_count.cell()
            );
            let ci = max(controls.iter().map(|c| c.files_identical as f64));
            if ci.is_finite() {
                text.push_str(&format!(
                    " Control pairs have up to {} identical files.",
                    num(ci)
                ));
            }
            text.push_str(" Code and configs are copied between unrelated projects too; this only says where text came from, not weights.");
            text
        }
    };
    Section {
        id: "e0c".into(),
        title: "E0c · Code lineage".into(),
        nav: String::new(),
        question: "How similar are the code, config and README files the repositories ship?".into(),
        null: "The control pairs.".into(),
        reading,
        tables: vec![table],
        plots: Vec::new(),
    }
}

/// A side's number, NaN when that side was not computed.
fn of(side: Option<&RowStats>, get: fn(&RowStats) -> f64) -> f64 {
    side.map_or(f64::NAN, get)
}

/// One side's Pearson beside its null and z, as a cell.
fn side_cell(k: Option<&RowStats>) -> String {
    format!(
        "{} (null {} ± {}; z {})",
        num(of(k, |s| s.mean_pearson)),
        num(of(k, |s| s.null_mean_pearson)),
        num(of(k, |s| s.null_sd_pearson)),
        num(of(k, |s| s.z))
    )
}

pub fn e1b(r: &Result1b, plots: &mut Plots) -> Result<Section> {
    let pairs = &r.pairs;
    let table = TableView::of(
        "Embedding rows of the same token text",
        "e1b_embeddings",
        pairs,
        &[
            ("pair", &|x: &E1bPair| x.pair.clone()),
            ("status", &|x| x.status.clone()),
            ("shared tokens", &|x| x.shared_tokens.cell()),
            ("same id", &|x| x.same_id_fraction.cell()),
            ("Pearson, direct", &|x| side_cell(x.direct.as_ref())),
            ("Pearson, hidden dims aligned", &|x| {
                side_cell(x.aligned.as_ref())
            }),
        ],
    );
    let mut irows = Vec::new();
    for x in pairs {
        for (k, side) in [
            ("direct", x.direct.as_ref()),
            ("aligned", x.aligned.as_ref()),
        ] {
            irows.push(IntervalRow::beside_two_sd(
                format!("{} {k}", x.pair),
                of(side, |s| s.null_mean_pearson),
                of(side, |s| s.null_sd_pearson),
                of(side, |s| s.mean_pearson),
            ));
        }
    }
    let plot = plots.add(
        "e1b_embeddings",
        "Mean Pearson of same-text embedding rows beside rows of random token pairings.",
        &Plot::Intervals(Intervals::new(
            [
                "E1b embeddings by token text vs random pairings",
                "Pearson of embedding rows",
                "random pairings, mean ± 2 sd of one row",
                "random pairings, mean",
                "same token text, mean",
            ],
            irows,
        )),
    )?;
    let (p, controls) = split(pairs, |x| x.primary);
    let reading = match p {
        None => "A~B's embeddings were not compared.".into(),
        Some(p) if p.status != "ok" => {
            format!("A~B's embeddings could not be compared: {}.", p.status)
        }
        Some(p) => {
            let (direct, aligned) = (p.direct.as_ref(), p.aligned.as_ref());
            let basis =
                |get: fn(&RowStats) -> Option<f64>| direct.and_then(get).unwrap_or(f64::NAN);
            let mut text = format!(
                "Over {} tokens whose text both vocabularies hold, the embedding rows of the same text correlate at a mean Pearson of {}, against {} for random pairings (z = {}); after aligning hidden dimensions, {} (z = {}). As stored and taken about each model's mean row, their mean cosine is {}, which is z = {} against B's hidden basis randomly rotated (the null of an unrelated basis: mean 0, sd {}).",
                p.shared_tokens.cell(),
                num(of(direct, |s| s.mean_pearson)),
                num(of(direct, |s| s.null_mean_pearson)),
                num(of(direct, |s| s.z)),
                num(of(aligned, |s| s.mean_pearson)),
                num(of(aligned, |s| s.z)),
                num(basis(|s| s.basis_mean_cosine)),
                num(basis(|s| s.basis_z)),
                num(basis(|s| s.basis_null_sd)),
            );
            let cz = max(controls.iter().map(|c| {
                c.direct
                    .as_ref()
                    .and_then(|s| s.basis_z)
                    .unwrap_or(f64::NAN)
            }));
            if cz.is_finite() {
                text.push_str(&format!(
                    " The control pairs reach a basis z of {}.",
                    num(cz)
                ));
            }
            text
        }
    };
    Ok(Section {
        id: "e1b".into(),
        title: "E1b · Embeddings by token text".into(),
        nav: String::new(),
        question: "Are the embedding rows of tokens with the same text alike, wherever the vocabularies put them?".into(),
        null: "For the claim (a shared hidden basis): B's basis randomly rotated, pairing and token geometry kept. For \"better than random rows\": random pairings of tokens, which unrelated models trained on similar text pass. Aligned similarity is weak evidence: models trained on similar text reach it too. The control pairs.".into(),
        reading,
        tables: vec![table],
        plots: vec![plot],
    })
}

pub fn e8(r: &Result8, plots: &mut Plots) -> Result<Section> {
    let pairs = &r.pairs;
    let rows = pairs
        .iter()
        .map(|x| {
            vec![
                x.pair.clone(),
                x.status.clone(),
                format!("{} ({})", x.alignment, num(x.alignment_mean_abs_cos)),
                format!(
                    "{} of {} / {}",
                    x.layers_matched.cell(),
                    x.layers_a.cell(),
                    x.layers_b.cell()
                ),
                x.score_q.cell(),
                x.score_k.cell(),
                x.score.cell(),
                x.z_vs_controls.cell(),
                x.z_awm_constants.cell(),
            ]
        })
        .collect();
    let table = TableView::new(
        "Debiased linear CKA of Q and K after aligning hidden dimensions",
        &[
            "pair",
            "status",
            "alignment (mean |cos|)",
            "layers matched of A / B",
            "CKA Q",
            "CKA K",
            "score",
            "z vs controls",
            "z vs AWM constants",
        ],
        rows,
        "e8_cka",
    );
    let layers = &r.layers;
    let mut series = Vec::new();
    let seen = distinct(layers.iter().map(|l| l.pair.clone()));
    for (i, p) in seen.iter().enumerate() {
        let of: Vec<_> = layers.iter().filter(|l| &l.pair == p).collect();
        for (k, dashed) in [("Q", false), ("K", true)] {
            let value = |l: &LayerRow| if dashed { l.k } else { l.q };
            series.push(Series {
                label: format!("{p} {k}"),
                points: of
                    .iter()
                    .map(|l| (f64::from(l.layer_b), value(l)))
                    .collect(),
                dashed,
                colour: Some(i),
            });
        }
    }
    let plot = plots.add(
        "e8_cka_layers",
        "Debiased CKA per matched layer (by B's layer), Q solid and K dashed, for every pair.",
        &Plot::Lines(Lines {
            title: "E8 CKA per layer".into(),
            x_label: "layer of the second model".into(),
            y_label: "debiased linear CKA".into(),
            series,
            y_range: None,
        }),
    )?;
    let (p, controls) = split(pairs, |x| x.primary);
    let reading = match p {
        None => "A~B was not compared with CKA.".into(),
        Some(p) if p.status != "ok" => {
            format!("CKA could not be computed for A~B: {}.", p.status)
        }
        Some(p) => {
            let mut text = format!(
                "After aligning hidden dimensions on {} shared-vocabulary embeddings, A~B's Q and K projections reach a debiased CKA of {} over {} matched layers (z = {} against the controls, {} against the published AWM constants).",
                p.tokens_used.cell(),
                num(p.score),
                p.layers_matched.cell(),
                p.z_vs_controls.cell(),
                num(p.z_awm_constants),
            );
            let c = max(controls.iter().map(|c| c.score));
            if c.is_finite() {
                text.push_str(&format!(" The control pairs reach {}.", num(c)));
            }
            text
        }
    };
    Ok(Section {
        id: "e8".into(),
        title: "E8 · CKA after alignment".into(),
        nav: String::new(),
        question: "Once hidden dimensions are matched through the embeddings, do A's and B's attention projections represent the same thing, layer by layer?".into(),
        null: "Independent models score near 0; z against the control pairs and against the AWM paper's constants.".into(),
        reading,
        tables: vec![table],
        plots: vec![plot],
    })
}

pub fn e9(r: &Result9, plots: &mut Plots) -> Result<Section> {
    let summary = &r.summary;
    let rows = summary
        .iter()
        .map(|x| {
            vec![
                x.pair.clone(),
                x.kind.clone(),
                x.layers.cell(),
                x.mean_score.cell(),
                x.mean_null.cell(),
                x.mean_z.cell(),
                x.permutations_agree.cell(),
            ]
        })
        .collect();
    let table = TableView::new(
        "Router and expert matching (Hungarian assignment)",
        &[
            "pair",
            "kind",
            "layers",
            "mean score",
            "mean null",
            "mean z",
            "permutations agree",
        ],
        rows,
        "e9_summary",
    );
    let irows = r
        .layers
        .iter()
        .map(|x| {
            IntervalRow::beside_two_sd(
                format!("{} {} L{}", x.pair, x.kind, x.layer.cell()),
                x.null_mean,
                x.null_sd,
                x.score,
            )
        })
        .collect();
    let plot = plots.add(
        "e9_score_vs_null",
        "Assignment score of each layer's routers and experts beside the assignment null of unrelated rows.",
        &Plot::Intervals(Intervals::new(
            ["E9 expert matching vs null", "mean similarity after assignment", "null mean ± 2 sd", "null mean", "observed"],
            irows,
        )),
    )?;
    let primary: Vec<_> = summary.iter().filter(|x| x.primary).collect();
    let reading = if primary.is_empty() {
        "No router or expert could be matched for A~B (not a mixture-of-experts pair, or shapes differ).".into()
    } else {
        let mut parts: Vec<String> = primary
            .iter()
            .map(|x| {
                format!(
                    "{}: mean score {} against a null of {} (mean z = {})",
                    x.kind,
                    num(x.mean_score),
                    num(x.mean_null),
                    num(x.mean_z)
                )
            })
            .collect();
        let cz = max(summary.iter().filter(|x| !x.primary).map(|x| x.mean_z));
        if cz.is_finite() {
            parts.push(format!("the control pairs reach a mean z of {}", num(cz)));
        }
        format!(
            "After matching experts one to one, A~B's {}.",
            parts.join("; ")
        )
    };
    Ok(Section {
        id: "e9".into(),
        title: "E9 · Experts and routers".into(),
        nav: String::new(),
        question: "Do B's experts and router rows match A's one to one, whatever order they are stored in?".into(),
        null: "The assignment score of unrelated rows (calibrated per layer), and the control pairs.".into(),
        reading,
        tables: vec![table],
        plots: vec![plot],
    })
}

pub fn e6(r: &Result6, plots: &mut Plots) -> Result<Section> {
    let pairs = &r.pairs;
    let rows = pairs
        .iter()
        .map(|x| {
            vec![
                x.pair.clone(),
                x.status.clone(),
                x.matrices.cell(),
                x.rank1.cell(),
                x.rank1_null.cell(),
                x.z.cell(),
                x.mean_distance.cell(),
                x.null_mean_distance.cell(),
                x.skipped_large.cell(),
            ]
        })
        .collect();
    let table = TableView::new(
        "Same-layer spectra that are the closest of their family, against the chance count",
        &[
            "pair",
            "status",
            "matrices",
            "closest at same layer",
            "expected by chance",
            "z",
            "mean same-layer distance",
            "mean wrong-layer distance",
            "skipped (too large)",
        ],
        rows,
        "e6_spectra",
    );
    let irows = pairs
        .iter()
        .map(|x| {
            IntervalRow::beside_two_sd(
                x.pair.clone(),
                x.null_mean_distance,
                x.null_sd_distance,
                x.mean_distance,
            )
        })
        .collect();
    let plot = plots.add(
        "e6_spectra_vs_null",
        "Mean distance between same-layer singular-value spectra beside the wrong-layer distances.",
        &Plot::Intervals(Intervals::new(
            [
                "E6 spectra: same layer vs wrong layer",
                "spectrum shape distance",
                "wrong-layer mean ± 2 sd",
                "wrong-layer mean",
                "same layer",
            ],
            irows,
        )),
    )?;
    let (primary, controls) = split(pairs, |x| x.primary);
    let reading = match primary {
        Some(p) if p.z.is_finite() => {
            let cz = max(controls.iter().map(|x| x.z));
            format!(
                "{} of A~B's {} canonical matrices have their same-layer counterpart as the closest spectrum, against {} expected by chance (z = {}){}. Spectra survive rotations and permutations of the hidden basis, but trained models share depth trends, so this is weak evidence on its own.",
                p.rank1.cell(),
                p.matrices.cell(),
                num(p.rank1_null),
                num(p.z),
                if cz.is_finite() {
                    format!("; the control pairs reach z = {}", num(cz))
                } else {
                    String::new()
                }
            )
        }
        _ => "No matrices of A~B could be compared by spectrum (shapes differ or are too large)."
            .into(),
    };
    Ok(Section {
        id: "e6".into(),
        title: "E6 · Rotation-invariant spectra".into(),
        nav: String::new(),
        question: "Do the singular-value spectra of each layer's matrices line up layer by layer, as they would if B's hidden basis were a rotation of A's?".into(),
        null: "Wrong-layer spectra of the same family (a binomial count of same-layer wins), and the control pairs.".into(),
        reading,
        tables: vec![table],
        plots: vec![plot],
    })
}
