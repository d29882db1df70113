//! Sections of the experiments that match things across models: E0 (config and tokenizer),
//! E0c (shipped code), E1b (embeddings by token text), E3 (bytes), E8 (CKA) and E9 (experts).

use std::collections::BTreeMap;

use anyhow::Result;

use super::format::{Cell, distinct, max, num};
use super::plot::{Heatmap, IntervalRow, Intervals, Lines, Plot, Series};
use super::section::{Plots, Section, TableView};
use crate::experiments::e0_config::{Result0, TokenizerStats};
use crate::experiments::e0c_code::Result0c;
use crate::experiments::e1b_embeddings::{Result1b, RowStats};
use crate::experiments::e3_result::{Result3, TensorMatch};
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

pub fn e1b(r: &Result1b, plots: &mut Plots) -> Result<Section> {
    let pairs = &r.pairs;
    // A side's number, NaN when that side was not computed.
    let of = |side: Option<&RowStats>, get: fn(&RowStats) -> f64| side.map_or(f64::NAN, get);
    let rows = pairs
        .iter()
        .map(|x| {
            let side = |k: Option<&RowStats>| {
                format!(
                    "{} (null {} ± {}; z {})",
                    num(of(k, |s| s.mean_pearson)),
                    num(of(k, |s| s.null_mean_pearson)),
                    num(of(k, |s| s.null_sd_pearson)),
                    num(of(k, |s| s.z))
                )
            };
            vec![
                x.pair.clone(),
                x.status.clone(),
                x.shared_tokens.cell(),
                x.same_id_fraction.cell(),
                side(x.direct.as_ref()),
                side(x.aligned.as_ref()),
            ]
        })
        .collect();
    let table = TableView::new(
        "Embedding rows of the same token text",
        &[
            "pair",
            "status",
            "shared tokens",
            "same id",
            "Pearson, direct",
            "Pearson, hidden dims aligned",
        ],
        rows,
        "e1b_embeddings",
    );
    let mut irows = Vec::new();
    for x in pairs {
        for (k, side) in [
            ("direct", x.direct.as_ref()),
            ("aligned", x.aligned.as_ref()),
        ] {
            let (m, sd) = (
                of(side, |s| s.null_mean_pearson),
                of(side, |s| s.null_sd_pearson),
            );
            irows.push(IntervalRow {
                reference: Vec::new(),
                contrast: Vec::new(),
                label: format!("{} {k}", x.pair),
                band: Some((m - 2.0 * sd, m + 2.0 * sd)),
                center: Some(m),
                observed: Some(of(side, |s| s.mean_pearson)),
            });
        }
    }
    let plot = plots.add(
        "e1b_embeddings",
        "Mean Pearson of same-text embedding rows beside rows of random token pairings.",
        &Plot::Intervals(Intervals {
            reference_label: String::new(),
            contrast_label: String::new(),
            title: "E1b embeddings by token text vs random pairings".into(),
            x_label: "Pearson of embedding rows".into(),
            band_label: "random pairings, mean ± 2 sd of one row".into(),
            center_label: "random pairings, mean".into(),
            observed_label: "same token text, mean".into(),
            rows: irows,
        }),
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

/// The first all-digit part of a dotted tensor name (its layer) and the name with that part
/// replaced by `*` (its kind).
fn layer_and_kind(name: &str) -> (Option<u64>, String) {
    let parts: Vec<&str> = name.split('.').collect();
    match parts
        .iter()
        .position(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        Some(i) => {
            let mut kind = parts.clone();
            kind[i] = "*";
            (parts[i].parse().ok(), kind.join("."))
        }
        None => (None, name.to_string()),
    }
}

/// A tensor kind without its path up to the layer (`self_attn.q_proj.weight`), at most 28
/// characters (the start is kept).
fn short_kind(kind: &str) -> String {
    let tail = kind.split_once("*.").map_or(kind, |(_, t)| t);
    tail.chars().take(28).collect()
}

/// Tensor kinds shown in the block-match map, at most.
const MAP_KINDS: usize = 40;

/// A map of A's tensors (rows: kind, columns: layer) by the share of their informative
/// blocks B holds, built from the listed matches.
pub fn block_map(pair: &str, matches: &[TensorMatch], informative: f64) -> Heatmap {
    let mut cells: BTreeMap<(String, Option<u64>), f64> = BTreeMap::new();
    for m in matches {
        let (layer, kind) = layer_and_kind(&m.tensor_a);
        let share = if m.status == "full_hash" {
            1.0
        } else {
            m.blocks_matched as f64 / m.blocks_informative as f64
        };
        let e = cells.entry((kind, layer)).or_insert(f64::NAN);
        *e = if e.is_nan() { share } else { e.max(share) };
    }
    let mut kinds: Vec<String> = cells.keys().map(|k| k.0.clone()).collect();
    kinds.dedup();
    kinds.truncate(MAP_KINDS);
    let mut layers: Vec<Option<u64>> = cells.keys().map(|k| k.1).collect();
    layers.sort();
    layers.dedup();
    let title = format!("E3 blocks of A found in B, {pair}");
    let values = kinds
        .iter()
        .map(|k| {
            layers
                .iter()
                .map(|l| cells.get(&(k.clone(), *l)).copied().unwrap_or(f64::NAN))
                .collect()
        })
        .collect();
    Heatmap {
        title,
        empty_note: if matches.is_empty() {
            format!(
                "B holds none of A's {} informative sampled blocks",
                num(informative)
            )
        } else {
            "no listed match counts informative blocks".into()
        },
        x_label: "layer".into(),
        y_label: String::new(),
        col_labels: layers
            .iter()
            .map(|l| l.map_or_else(|| "–".into(), |l| l.to_string()))
            .collect(),
        row_labels: kinds.iter().map(|k| short_kind(k)).collect(),
        values,
        range: (0.0, 1.0),
        paths: Vec::new(),
    }
}

pub fn e3(r: &Result3, plots: &mut Plots) -> Result<Section> {
    let pairs = &r.pairs;
    let rows = pairs
        .iter()
        .map(|x| {
            vec![
                x.pair.clone(),
                x.blocks_informative.cell(),
                x.blocks_found_in_b.cell(),
                format!(
                    "{} / {}",
                    x.same_role.blocks_identical.cell(),
                    x.same_role.blocks_compared.cell()
                ),
                x.identical_tensors.cell(),
                x.identical_renamed_or_moved.cell(),
                x.partial_tensors.cell(),
                x.cast_identical_tensors.cell(),
                format!(
                    "{} (chance {}; {} tensors)",
                    num(x.element_agreement.identical_fraction),
                    num(x.element_agreement.expected_fraction),
                    x.element_agreement.tensors_agreeing.cell()
                ),
                format!(
                    "{} ({} with the same values in another order)",
                    x.permuted.tensors_permuted.cell(),
                    x.permuted.same_values.cell()
                ),
                format!(
                    "{} (expected {}, p {})",
                    x.fingerprint.matches.cell(),
                    num(x.fingerprint.expected),
                    num(x.fingerprint.p_value)
                ),
            ]
        })
        .collect();
    let table = TableView::new(
        "Byte identity (constant, periodic and low-entropy blocks never count)",
        &[
            "pair",
            "informative blocks of A",
            "found in B",
            "same-role blocks identical",
            "identical tensors",
            "renamed or moved",
            "partial",
            "identical after a dtype cast",
            "share of elements identical in place (chance; agreeing tensors)",
            "tensors permuted alike",
            "outlier fingerprint matches",
        ],
        rows,
        "e3_bytes",
    );
    let (p, controls) = split(pairs, |x| x.primary);
    let mut views = Vec::new();
    if let Some(p) = p {
        views.push(plots.add(
            "e3_block_map",
            "A's tensors that B holds byte for byte (rows: tensor kind, shortened; columns: layer; colour: share of informative blocks found; grey: no match listed).",
            &Plot::Heatmap(block_map("A~B", &p.matches, p.blocks_informative as f64)),
        )?);
    }
    let reading = match p {
        None => "A~B's bytes were not compared.".into(),
        Some(p) => {
            let mut text = format!(
                "Of A's {} informative sampled blocks, B holds {}; {} tensors are byte-identical in full ({} under another name or place) and {} identical after a dtype cast. The outlier-coordinate fingerprint matches {} times where chance gives {} (p = {}).",
                p.blocks_informative.cell(),
                p.blocks_found_in_b.cell(),
                p.identical_tensors.cell(),
                p.identical_renamed_or_moved.cell(),
                p.cast_identical_tensors.cell(),
                p.fingerprint.matches.cell(),
                num(p.fingerprint.expected),
                num(p.fingerprint.p_value),
            );
            let e = &p.element_agreement;
            text.push_str(&format!(
                " Element by element, {} of the {} sampled values of same-role tensors are identical in place, where chance gives {}; {} tensors agree beyond chance.",
                num(e.identical_fraction),
                e.elements_compared.cell(),
                num(e.expected_fraction),
                e.tensors_agreeing.cell(),
            ));
            let m = &p.permuted;
            if m.same_values > 0 {
                text.push_str(&format!(
                    " {} tensors read whole hold A's values in another order; {} of them share one coordinate permutation.",
                    m.same_values.cell(),
                    m.tensors_permuted.cell(),
                ));
            }
            let cb = max(controls.iter().map(|c| c.blocks_found_in_b as f64));
            if cb.is_finite() {
                text.push_str(&format!(" Control pairs share up to {} blocks.", num(cb)));
            }
            text.push_str(if p.blocks_found_in_b > 0 {
                " Identical informative blocks do not arise by chance: they were copied."
            } else if m.tensors_permuted > 0 {
                " No block was reused in place, yet tensors hold A's exact values in one shared new order: the mark of a permuted hidden dimension, which keeps the function and moves every value."
            } else if e.tensors_agreeing > 0 {
                " No whole block was reused, yet values stayed in place far beyond chance: the mark of training that changed only part of the weights (a fine-tune saved in BF16 keeps every value whose update was under half a rounding step)."
            } else {
                " No byte was reused as is, and values agree only as often as chance: training changed every weight, so this does not rule derivation out."
            });
            text
        }
    };
    Ok(Section {
        id: "e3".into(),
        title: "E3 · Byte identity".into(),
        nav: String::new(),
        question: "Does B contain blocks, tensors, values in place or outlier coordinates of A byte for byte?".into(),
        null: "Chance collisions of informative 4 KiB blocks are negligible; constant and low-information blocks are excluded; element agreement is set against the permutation null of each block pair's value histograms; a permutation counts only when several tensors share it, which values shuffled tensor by tensor do not; the fingerprint has an exact chance expectation; the control pairs.".into(),
        reading,
        tables: vec![table],
        plots: views,
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
            let (m, sd) = (x.null_mean, x.null_sd);
            IntervalRow {
                reference: Vec::new(),
                contrast: Vec::new(),
                label: format!("{} {} L{}", x.pair, x.kind, x.layer.cell()),
                band: Some((m - 2.0 * sd, m + 2.0 * sd)),
                center: Some(m),
                observed: Some(x.score),
            }
        })
        .collect();
    let plot = plots.add(
        "e9_score_vs_null",
        "Assignment score of each layer's routers and experts beside the assignment null of unrelated rows.",
        &Plot::Intervals(Intervals {
reference_label: String::new(), contrast_label: String::new(),
            title: "E9 expert matching vs null".into(),
            x_label: "mean similarity after assignment".into(),
            band_label: "null mean ± 2 sd".into(),
            center_label: "null mean".into(),
            observed_label: "observed".into(),
            rows: irows,
        }),
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
            let (m, sd) = (x.null_mean_distance, x.null_sd_distance);
            IntervalRow {
                reference: Vec::new(),
                contrast: Vec::new(),
                label: x.pair.clone(),
                band: Some((m - 2.0 * sd, m + 2.0 * sd)),
                center: Some(m),
                observed: Some(x.mean_distance),
            }
        })
        .collect();
    let plot = plots.add(
        "e6_spectra_vs_null",
        "Mean distance between same-layer singular-value spectra beside the wrong-layer distances.",
        &Plot::Intervals(Intervals {
            reference_label: String::new(),
            contrast_label: String::new(),
            title: "E6 spectra: same layer vs wrong layer".into(),
            x_label: "spectrum shape distance".into(),
            band_label: "wrong-layer mean ± 2 sd".into(),
            center_label: "wrong-layer mean".into(),
            observed_label: "same layer".into(),
            rows: irows,
        }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_names_split_into_layer_and_kind() {
        assert_eq!(
            layer_and_kind("model.layers.12.mlp.experts.3.up_proj.weight"),
            (
                Some(12),
                "model.layers.*.mlp.experts.3.up_proj.weight".into()
            )
        );
        assert_eq!(
            layer_and_kind("lm_head.weight"),
            (None, "lm_head.weight".into())
        );
    }

    #[test]
    fn block_map_places_matches_by_kind_and_layer() {
        let m = |layer: u32, status: &str, matched: u64| TensorMatch {
            tensor_a: format!("model.layers.{layer}.self_attn.q_proj.weight"),
            tensor_b: String::new(),
            relation: "same_name".into(),
            bytes: 0,
            blocks_matched: matched,
            blocks_informative: 16,
            status: status.into(),
        };
        let matches = [m(0, "full_hash", 16), m(2, "partial", 4)];
        let h = block_map("A~B", &matches, 32.0);
        assert_eq!(h.col_labels, vec!["0", "2"]);
        assert_eq!(h.values, vec![vec![1.0, 0.25]]);
    }
}
