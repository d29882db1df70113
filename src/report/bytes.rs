//! The section of E3 (byte identity) and its block map: which of A's tensors B holds byte for
//! byte, by tensor kind and layer.

use std::collections::BTreeMap;

use anyhow::Result;

use super::format::{Cell, max, num};
use super::matching::split;
use super::plot::{Heatmap, Plot};
use super::section::{Plots, Section, TableView};
use crate::experiments::e3_result::{PairBytes, Result3, TensorMatch};

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
    let table = TableView::of(
        "Byte identity (constant, periodic and low-entropy blocks never count)",
        "e3_bytes",
        pairs,
        &[
            ("pair", &|x: &PairBytes| x.pair.clone()),
            ("informative blocks of A", &|x| x.blocks_informative.cell()),
            ("found in B", &|x| x.blocks_found_in_b.cell()),
            ("same-role blocks identical", &|x| {
                format!(
                    "{} / {}",
                    x.same_role.blocks_identical.cell(),
                    x.same_role.blocks_compared.cell()
                )
            }),
            ("identical tensors", &|x| x.identical_tensors.cell()),
            ("renamed or moved", &|x| x.identical_renamed_or_moved.cell()),
            ("partial", &|x| x.partial_tensors.cell()),
            ("identical after a dtype cast", &|x| {
                x.cast_identical_tensors.cell()
            }),
            (
                "share of elements identical in place (chance; agreeing tensors)",
                &|x| {
                    format!(
                        "{} (chance {}; {} tensors)",
                        num(x.element_agreement.identical_fraction),
                        num(x.element_agreement.expected_fraction),
                        x.element_agreement.tensors_agreeing.cell()
                    )
                },
            ),
            ("tensors permuted alike", &|x| {
                format!(
                    "{} ({} with the same values in another order)",
                    x.permuted.tensors_permuted.cell(),
                    x.permuted.same_values.cell()
                )
            }),
            ("outlier fingerprint matches", &|x| {
                format!(
                    "{} (expected {}, p {})",
                    x.fingerprint.matches.cell(),
                    num(x.fingerprint.expected),
                    num(x.fingerprint.p_value)
                )
            }),
        ],
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
    let reading = e3_reading(p, &controls);
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

fn e3_reading(p: Option<&PairBytes>, controls: &[&PairBytes]) -> String {
    match p {
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
    }
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
