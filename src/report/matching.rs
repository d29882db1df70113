//! Sections of the experiments that match things across models: E0 (config and tokenizer),
//! E0c (shipped code), E1b (embeddings by token text), E3 (bytes), E8 (CKA) and E9 (experts).

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::Value;

use super::json::{arr, distinct, f, fp, is_primary, max, num, s, show};
use super::plot::{Heatmap, IntervalRow, Intervals, Lines, Plot, Series};
use super::section::{Plots, Section, TableView};

/// The audited pair's item and the control pairs' items of a per-pair list.
fn split(items: &[Value]) -> (Option<&Value>, Vec<&Value>) {
    (
        items.iter().find(|x| is_primary(x)),
        items.iter().filter(|x| !is_primary(x)).collect(),
    )
}

pub fn e0(r: &Value) -> Section {
    let pairs = arr(r, "pairs");
    let rows = pairs
        .iter()
        .map(|x| {
            let t = &x["tokenizer"];
            vec![
                s(x, "pair").into(),
                format!(
                    "{} / {} / {} / {}",
                    show(&x["config_equal"]),
                    show(&x["config_different"]),
                    show(&x["config_only_a"]),
                    show(&x["config_only_b"])
                ),
                s(x, "tokenizer_status").into(),
                format!("{} / {}", show(&t["vocab_a"]), show(&t["vocab_b"])),
                show(&t["jaccard"]),
                show(&t["same_id_ratio"]),
                format!(
                    "{} ({})",
                    show(&t["best_offset"]),
                    show(&t["best_offset_count"])
                ),
                show(&t["longest_run"]),
                show(&t["merges_overlap_vs_smaller"]),
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
    let (p, controls) = split(pairs);
    let reading = match p {
        None => "A~B's configs and tokenizers were not compared.".into(),
        Some(p) => {
            let t = &p["tokenizer"];
            let mut text = format!(
                "A and B agree on {} config fields and differ on {}. Their vocabularies overlap with Jaccard {}; the share of shared tokens with the same id is {}, and shifting ids by {} aligns {} tokens.",
                show(&p["config_equal"]),
                show(&p["config_different"]),
                num(f(&t["jaccard"])),
                num(f(&t["same_id_ratio"])),
                show(&t["best_offset"]),
                show(&t["best_offset_count"]),
            );
            let cj = max(controls.iter().map(|c| fp(c, "tokenizer.jaccard")));
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

pub fn e0c(r: &Value) -> Section {
    let pairs = arr(r, "pairs");
    let rows = pairs
        .iter()
        .map(|x| {
            vec![
                s(x, "pair").into(),
                format!("{} / {}", show(&x["files_a"]), show(&x["files_b"])),
                show(&x["files_in_both"]),
                show(&x["files_identical"]),
                show(&x["py_shared_defs_count"]),
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
    let (p, controls) = split(pairs);
    let reading = match p {
        None => "A~B's shipped files were not compared.".into(),
        Some(p) => {
            let mut text = format!(
                "Of the text files both models ship ({}), {} are identical and {} Python definitions are shared.",
                show(&p["files_in_both"]),
                show(&p["files_identical"]),
                show(&p["py_shared_defs_count"])
            );
            let ci = max(controls.iter().map(|c| f(&c["files_identical"])));
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

pub fn e1b(r: &Value, plots: &mut Plots) -> Result<Section> {
    let pairs = arr(r, "pairs");
    let rows = pairs
        .iter()
        .map(|x| {
            let side = |k: &str| {
                format!(
                    "{} (null {} ± {}; z {})",
                    num(fp(x, &format!("{k}.mean_pearson"))),
                    num(fp(x, &format!("{k}.null_mean_pearson"))),
                    num(fp(x, &format!("{k}.null_sd_pearson"))),
                    num(fp(x, &format!("{k}.z")))
                )
            };
            vec![
                s(x, "pair").into(),
                s(x, "status").into(),
                show(&x["shared_tokens"]),
                show(&x["same_id_fraction"]),
                side("direct"),
                side("aligned"),
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
        for k in ["direct", "aligned"] {
            let (m, sd) = (
                fp(x, &format!("{k}.null_mean_pearson")),
                fp(x, &format!("{k}.null_sd_pearson")),
            );
            irows.push(IntervalRow {
                reference: Vec::new(),
                contrast: Vec::new(),
                label: format!("{} {k}", s(x, "pair")),
                band: Some((m - 2.0 * sd, m + 2.0 * sd)),
                center: Some(m),
                observed: Some(fp(x, &format!("{k}.mean_pearson"))),
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
    let (p, controls) = split(pairs);
    let reading = match p {
        None => "A~B's embeddings were not compared.".into(),
        Some(p) if s(p, "status") != "ok" => format!(
            "A~B's embeddings could not be compared: {}.",
            s(p, "status")
        ),
        Some(p) => {
            let mut text = format!(
                "Over {} tokens whose text both vocabularies hold, the embedding rows of the same text correlate at a mean Pearson of {}, against {} for random pairings (z = {}); after aligning hidden dimensions, {} (z = {}). As stored and taken about each model's mean row, their mean cosine is {}, which is z = {} against B's hidden basis randomly rotated (the null of an unrelated basis: mean 0, sd {}).",
                show(&p["shared_tokens"]),
                num(fp(p, "direct.mean_pearson")),
                num(fp(p, "direct.null_mean_pearson")),
                num(fp(p, "direct.z")),
                num(fp(p, "aligned.mean_pearson")),
                num(fp(p, "aligned.z")),
                num(fp(p, "direct.basis_mean_cosine")),
                num(fp(p, "direct.basis_z")),
                num(fp(p, "direct.basis_null_sd")),
            );
            let cz = max(controls.iter().map(|c| fp(c, "direct.basis_z")));
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
pub fn block_map(pair: &str, matches: &[Value], informative: f64) -> Heatmap {
    let mut cells: BTreeMap<(String, Option<u64>), f64> = BTreeMap::new();
    for m in matches {
        let (layer, kind) = layer_and_kind(s(m, "tensor_a"));
        let share = if s(m, "status") == "full_hash" {
            1.0
        } else {
            f(&m["blocks_matched"]) / f(&m["blocks_informative"])
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

pub fn e3(r: &Value, plots: &mut Plots) -> Result<Section> {
    let pairs = arr(r, "pairs");
    let rows = pairs
        .iter()
        .map(|x| {
            vec![
                s(x, "pair").into(),
                show(&x["blocks_informative"]),
                show(&x["blocks_found_in_b"]),
                format!(
                    "{} / {}",
                    show(&x["same_role"]["blocks_identical"]),
                    show(&x["same_role"]["blocks_compared"])
                ),
                show(&x["identical_tensors"]),
                show(&x["identical_renamed_or_moved"]),
                show(&x["partial_tensors"]),
                show(&x["cast_identical_tensors"]),
                format!(
                    "{} (chance {}; {} tensors)",
                    num(fp(x, "element_agreement.identical_fraction")),
                    num(fp(x, "element_agreement.expected_fraction")),
                    show(&x["element_agreement"]["tensors_agreeing"])
                ),
                format!(
                    "{} ({} with the same values in another order)",
                    show(&x["permuted"]["tensors_permuted"]),
                    show(&x["permuted"]["same_values"])
                ),
                format!(
                    "{} (expected {}, p {})",
                    show(&x["fingerprint"]["matches"]),
                    num(fp(x, "fingerprint.expected")),
                    num(fp(x, "fingerprint.p_value"))
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
    let (p, controls) = split(pairs);
    let mut views = Vec::new();
    if let Some(p) = p {
        views.push(plots.add(
            "e3_block_map",
            "A's tensors that B holds byte for byte (rows: tensor kind, shortened; columns: layer; colour: share of informative blocks found; grey: no match listed).",
            &Plot::Heatmap(block_map("A~B", arr(p, "matches"), f(&p["blocks_informative"]))),
        )?);
    }
    let reading = match p {
        None => "A~B's bytes were not compared.".into(),
        Some(p) => {
            let mut text = format!(
                "Of A's {} informative sampled blocks, B holds {}; {} tensors are byte-identical in full ({} under another name or place) and {} identical after a dtype cast. The outlier-coordinate fingerprint matches {} times where chance gives {} (p = {}).",
                show(&p["blocks_informative"]),
                show(&p["blocks_found_in_b"]),
                show(&p["identical_tensors"]),
                show(&p["identical_renamed_or_moved"]),
                show(&p["cast_identical_tensors"]),
                show(&p["fingerprint"]["matches"]),
                num(fp(p, "fingerprint.expected")),
                num(fp(p, "fingerprint.p_value")),
            );
            let e = &p["element_agreement"];
            text.push_str(&format!(
                " Element by element, {} of the {} sampled values of same-role tensors are identical in place, where chance gives {}; {} tensors agree beyond chance.",
                num(f(&e["identical_fraction"])),
                show(&e["elements_compared"]),
                num(f(&e["expected_fraction"])),
                show(&e["tensors_agreeing"]),
            ));
            let m = &p["permuted"];
            if f(&m["same_values"]) > 0.0 {
                text.push_str(&format!(
                    " {} tensors read whole hold A's values in another order; {} of them share one coordinate permutation.",
                    show(&m["same_values"]),
                    show(&m["tensors_permuted"]),
                ));
            }
            let cb = max(controls.iter().map(|c| f(&c["blocks_found_in_b"])));
            if cb.is_finite() {
                text.push_str(&format!(" Control pairs share up to {} blocks.", num(cb)));
            }
            text.push_str(if f(&p["blocks_found_in_b"]) > 0.0 {
                " Identical informative blocks do not arise by chance: they were copied."
            } else if f(&p["permuted"]["tensors_permuted"]) > 0.0 {
                " No block was reused in place, yet tensors hold A's exact values in one shared new order: the mark of a permuted hidden dimension, which keeps the function and moves every value."
            } else if f(&e["tensors_agreeing"]) > 0.0 {
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

pub fn e8(r: &Value, plots: &mut Plots) -> Result<Section> {
    let pairs = arr(r, "pairs");
    let rows = pairs
        .iter()
        .map(|x| {
            vec![
                s(x, "pair").into(),
                s(x, "status").into(),
                format!(
                    "{} ({})",
                    s(x, "alignment"),
                    num(f(&x["alignment_mean_abs_cos"]))
                ),
                format!(
                    "{} of {} / {}",
                    show(&x["layers_matched"]),
                    show(&x["layers_a"]),
                    show(&x["layers_b"])
                ),
                show(&x["score_q"]),
                show(&x["score_k"]),
                show(&x["score"]),
                show(&x["z_vs_controls"]),
                show(&x["z_awm_constants"]),
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
    let layers = arr(r, "layers");
    let mut series = Vec::new();
    let seen = distinct(layers.iter().map(|l| s(l, "pair").to_string()));
    for (i, p) in seen.iter().enumerate() {
        let of: Vec<&Value> = layers.iter().filter(|l| s(l, "pair") == p).collect();
        for (k, dashed) in [("q", false), ("k", true)] {
            series.push(Series {
                label: format!("{p} {}", k.to_uppercase()),
                points: of.iter().map(|l| (f(&l["layer_b"]), f(&l[k]))).collect(),
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
    let (p, controls) = split(pairs);
    let reading = match p {
        None => "A~B was not compared with CKA.".into(),
        Some(p) if s(p, "status") != "ok" => {
            format!("CKA could not be computed for A~B: {}.", s(p, "status"))
        }
        Some(p) => {
            let mut text = format!(
                "After aligning hidden dimensions on {} shared-vocabulary embeddings, A~B's Q and K projections reach a debiased CKA of {} over {} matched layers (z = {} against the controls, {} against the published AWM constants).",
                show(&p["tokens_used"]),
                num(f(&p["score"])),
                show(&p["layers_matched"]),
                num(f(&p["z_vs_controls"])),
                num(f(&p["z_awm_constants"])),
            );
            let c = max(controls.iter().map(|c| f(&c["score"])));
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

pub fn e9(r: &Value, plots: &mut Plots) -> Result<Section> {
    let summary = arr(r, "summary");
    let rows = summary
        .iter()
        .map(|x| {
            vec![
                s(x, "pair").into(),
                s(x, "kind").into(),
                show(&x["layers"]),
                show(&x["mean_score"]),
                show(&x["mean_null"]),
                show(&x["mean_z"]),
                show(&x["permutations_agree"]),
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
    let irows = arr(r, "layers")
        .iter()
        .map(|x| {
            let (m, sd) = (f(&x["null_mean"]), f(&x["null_sd"]));
            IntervalRow {
                reference: Vec::new(),
                contrast: Vec::new(),
                label: format!("{} {} L{}", s(x, "pair"), s(x, "kind"), show(&x["layer"])),
                band: Some((m - 2.0 * sd, m + 2.0 * sd)),
                center: Some(m),
                observed: Some(f(&x["score"])),
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
    let primary: Vec<&Value> = summary.iter().filter(|x| is_primary(x)).collect();
    let reading = if primary.is_empty() {
        "No router or expert could be matched for A~B (not a mixture-of-experts pair, or shapes differ).".into()
    } else {
        let mut parts: Vec<String> = primary
            .iter()
            .map(|x| {
                format!(
                    "{}: mean score {} against a null of {} (mean z = {})",
                    s(x, "kind"),
                    num(f(&x["mean_score"])),
                    num(f(&x["mean_null"])),
                    num(f(&x["mean_z"]))
                )
            })
            .collect();
        let cz = max(summary
            .iter()
            .filter(|x| !is_primary(x))
            .map(|x| f(&x["mean_z"])));
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

pub fn e6(r: &Value, plots: &mut Plots) -> Result<Section> {
    let pairs = arr(r, "pairs");
    let rows = pairs
        .iter()
        .map(|x| {
            vec![
                s(x, "pair").into(),
                s(x, "status").into(),
                show(&x["matrices"]),
                show(&x["rank1"]),
                show(&x["rank1_null"]),
                show(&x["z"]),
                show(&x["mean_distance"]),
                show(&x["null_mean_distance"]),
                show(&x["skipped_large"]),
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
            let (m, sd) = (f(&x["null_mean_distance"]), f(&x["null_sd_distance"]));
            IntervalRow {
                reference: Vec::new(),
                contrast: Vec::new(),
                label: s(x, "pair").into(),
                band: Some((m - 2.0 * sd, m + 2.0 * sd)),
                center: Some(m),
                observed: Some(f(&x["mean_distance"])),
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
    let (primary, controls) = split(pairs);
    let reading = match primary {
        Some(p) if f(&p["z"]).is_finite() => {
            let cz = max(controls.iter().map(|x| f(&x["z"])));
            format!(
                "{} of A~B's {} canonical matrices have their same-layer counterpart as the closest spectrum, against {} expected by chance (z = {}){}. Spectra survive rotations and permutations of the hidden basis, but trained models share depth trends, so this is weak evidence on its own.",
                show(&p["rank1"]),
                show(&p["matrices"]),
                num(f(&p["rank1_null"])),
                num(f(&p["z"])),
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
        let matches = serde_json::json!([
            {"tensor_a": "model.layers.0.self_attn.q_proj.weight", "status": "full_hash",
             "blocks_matched": 16, "blocks_informative": 16},
            {"tensor_a": "model.layers.2.self_attn.q_proj.weight", "status": "partial",
             "blocks_matched": 4, "blocks_informative": 16},
        ]);
        let h = block_map("A~B", matches.as_array().unwrap(), 32.0);
        assert_eq!(h.col_labels, vec!["0", "2"]);
        assert_eq!(h.values, vec![vec![1.0, 0.25]]);
    }
}
