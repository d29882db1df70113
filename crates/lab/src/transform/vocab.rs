//! Vocabulary transforms: ids shifted, permuted, pruned or extended, the embedding rows and the
//! tokenizer kept consistent.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};

use super::rms;
use crate::arch::{Role, classify};
use crate::dims::Dims;
use crate::model::{Model, json_bytes};
use crate::rng::Rng;
use crate::tokenizer::TokView;

/// Source of one row after re-indexing.
#[derive(Clone, Copy, Debug)]
pub(super) enum RowSrc {
    Old(usize),
    Fresh,
}

/// Re-index vocabulary rows of embeddings / output heads and fix config ids.
pub(super) fn reindex_vocab(
    m: &mut Model,
    plan: &[RowSrc],
    id_map: &BTreeMap<u32, u32>,
    seed: u64,
) -> Result<()> {
    let h = Dims::of(m)?.hidden;
    let mut touched = 0;
    for (name, t) in m.tensors.iter_mut() {
        let role = classify(name, &t.shape, h);
        if !matches!(role, Role::Embed | Role::LmHead | Role::LmHeadBias) {
            continue;
        }
        touched += 1;
        let want = if role == Role::LmHeadBias { 1 } else { 2 };
        if t.shape.len() != want {
            bail!(
                "vocab: tensor {name} has shape {:?}, expected {want}-D",
                t.shape
            );
        }
        let (rows, cols) = t.dims2();
        let (rows, cols) = if t.shape.len() == 1 {
            (t.shape[0], 1)
        } else {
            (rows, cols)
        };
        let v = t.values_mut(name)?;
        let sd = rms(v);
        let mut out = Vec::with_capacity(plan.len() * cols);
        for (i, p) in plan.iter().enumerate() {
            match p {
                RowSrc::Old(o) if *o < rows => out.extend_from_slice(&v[o * cols..(o + 1) * cols]),
                RowSrc::Old(o) => bail!("vocab: row {o} out of range in {name} ({rows} rows)"),
                RowSrc::Fresh => {
                    let mut r = Rng::indexed(seed, &format!("vocab/{name}"), i as u64);
                    out.extend((0..cols).map(|_| (sd * r.normal()) as f32));
                }
            }
        }
        *v = out;
        t.shape[0] = plan.len();
    }
    if touched == 0 {
        bail!("vocab: no embedding tensor found");
    }
    m.set_cfg("vocab_size", json!(plan.len()));
    let remap = |v: &mut Value| -> Result<()> {
        for key in [
            "bos_token_id",
            "eos_token_id",
            "pad_token_id",
            "decoder_start_token_id",
        ] {
            let Some(x) = v.get_mut(key) else { continue };
            let map_one = |x: &Value| -> Result<Value> {
                match x.as_u64() {
                    Some(id) => id_map
                        .get(&(id as u32))
                        .map(|n| json!(n))
                        .ok_or_else(|| anyhow!("vocab: special id {id} ({key}) was removed")),
                    None => Ok(x.clone()),
                }
            };
            let new = match &*x {
                Value::Array(a) => Value::Array(a.iter().map(map_one).collect::<Result<_>>()?),
                other => map_one(other)?,
            };
            *x = new;
        }
        Ok(())
    };
    remap(&mut m.config)?;
    if let Some(b) = m.files.get("generation_config.json").cloned()
        && let Ok(mut g) = serde_json::from_slice::<Value>(&b)
    {
        remap(&mut g)?;
        m.files
            .insert("generation_config.json".into(), json_bytes(&g));
    }
    Ok(())
}

pub(super) fn vocab_rows(m: &Model) -> Result<usize> {
    let h = Dims::of(m)?.hidden;
    m.tensors
        .iter()
        .find(|(n, t)| classify(n, &t.shape, h) == Role::Embed && t.shape.len() == 2)
        .map(|(_, t)| t.shape[0])
        .ok_or_else(|| anyhow!("vocab: no embedding tensor found"))
}

pub(super) fn tok_view(m: &Model) -> Result<TokView> {
    TokView::parse(
        m.tokenizer
            .as_ref()
            .ok_or_else(|| anyhow!("vocab transforms need tokenizer.json"))?,
    )
}

pub(super) fn store_view(m: &mut Model, view: &TokView) -> Result<()> {
    let t = m
        .tokenizer
        .as_mut()
        .ok_or_else(|| anyhow!("vocab transforms need tokenizer.json"))?;
    view.store(t)
}

pub(super) fn vocab_shift(m: &mut Model, n: usize, seed: u64) -> Result<()> {
    let rows = vocab_rows(m)?;
    let mut view = tok_view(m)?;
    let plan: Vec<RowSrc> = (0..n)
        .map(|_| RowSrc::Fresh)
        .chain((0..rows).map(RowSrc::Old))
        .collect();
    let id_map: BTreeMap<u32, u32> = (0..rows as u32).map(|i| (i, i + n as u32)).collect();
    let mut ids = BTreeMap::new();
    for (id, v) in std::mem::take(&mut view.ids) {
        ids.insert(id + n as u32, v);
    }
    let mut k = 0;
    for i in 0..n {
        let text = loop {
            let t = format!("<|lab_extra_{k}|>");
            k += 1;
            if !ids.values().any(|(s, _)| *s == t) {
                break t;
            }
        };
        ids.insert(i as u32, (text, true));
    }
    view.ids = ids;
    reindex_vocab(m, &plan, &id_map, seed)?;
    store_view(m, &view)
}

pub(super) fn vocab_permute(m: &mut Model, seed: u64) -> Result<()> {
    let rows = vocab_rows(m)?;
    let mut view = tok_view(m)?;
    let present: Vec<u32> = view
        .ids
        .keys()
        .copied()
        .filter(|i| (*i as usize) < rows)
        .collect();
    let mut shuffled = present.clone();
    Rng::new(seed, "vocab_permute").shuffle(&mut shuffled);
    let mut plan: Vec<RowSrc> = (0..rows).map(RowSrc::Old).collect();
    let mut id_map: BTreeMap<u32, u32> = (0..rows as u32).map(|i| (i, i)).collect();
    for (old, new) in present.iter().zip(shuffled.iter()) {
        plan[*new as usize] = RowSrc::Old(*old as usize);
        id_map.insert(*old, *new);
    }
    view.ids = std::mem::take(&mut view.ids)
        .into_iter()
        .map(|(id, v)| (id_map.get(&id).copied().unwrap_or(id), v))
        .collect();
    reindex_vocab(m, &plan, &id_map, seed)?;
    store_view(m, &view)
}

pub(super) fn vocab_prune(m: &mut Model, fraction: f64, seed: u64) -> Result<()> {
    if !(0.0..1.0).contains(&fraction) {
        bail!("vocab_prune: fraction must be in [0, 1)");
    }
    let rows = vocab_rows(m)?;
    let mut view = tok_view(m)?;
    let products: BTreeSet<String> = view.merges.iter().map(|(a, b)| format!("{a}{b}")).collect();
    let candidates: Vec<String> = view
        .ids
        .values()
        .filter(|(s, added)| !added && products.contains(s))
        .map(|(s, _)| s.clone())
        .collect();
    let mut r = Rng::new(seed, "vocab_prune");
    let mut removed: BTreeSet<String> = candidates
        .into_iter()
        .filter(|_| r.uniform() < fraction)
        .collect();
    loop {
        let before = removed.len();
        for (a, b) in &view.merges {
            if removed.contains(a) || removed.contains(b) {
                removed.insert(format!("{a}{b}"));
            }
        }
        if removed.len() == before {
            break;
        }
    }
    view.merges.retain(|(a, b)| {
        !removed.contains(a) && !removed.contains(b) && !removed.contains(&format!("{a}{b}"))
    });
    let removed_ids: BTreeSet<u32> = view
        .ids
        .iter()
        .filter(|(_, (s, _))| removed.contains(s))
        .map(|(i, _)| *i)
        .collect();
    let mut plan = Vec::new();
    let mut id_map = BTreeMap::new();
    for old in 0..rows as u32 {
        if !removed_ids.contains(&old) {
            id_map.insert(old, plan.len() as u32);
            plan.push(RowSrc::Old(old as usize));
        }
    }
    let dropped = removed_ids.len() as u32;
    view.ids = std::mem::take(&mut view.ids)
        .into_iter()
        .filter_map(|(id, v)| {
            if id as usize >= rows {
                // tokenizer ids past the embedding rows keep their distance to the end
                Some((id - dropped, v))
            } else {
                id_map.get(&id).map(|n| (*n, v))
            }
        })
        .collect();
    reindex_vocab(m, &plan, &id_map, seed)?;
    store_view(m, &view)
}

pub(super) fn vocab_extend(m: &mut Model, n: usize, seed: u64) -> Result<()> {
    let rows = vocab_rows(m)?;
    let mut view = tok_view(m)?;
    let mut texts: BTreeSet<String> = view.ids.values().map(|(s, _)| s.clone()).collect();
    let pool: Vec<String> = view
        .ids
        .values()
        .filter(|(s, a)| !a && s.chars().count() <= 6)
        .map(|(s, _)| s.clone())
        .collect();
    if pool.len() < 2 {
        bail!("vocab_extend: tokenizer has too few base tokens");
    }
    let mut r = Rng::new(seed, "vocab_extend");
    let mut next = rows.max(
        view.ids
            .keys()
            .next_back()
            .map(|i| *i as usize + 1)
            .unwrap_or(0),
    );
    let mut plan: Vec<RowSrc> = (0..rows).map(RowSrc::Old).collect();
    let mut added = 0;
    let mut guard = 0;
    while added < n {
        guard += 1;
        if guard > 1000 * (n + 10) {
            bail!("vocab_extend: could not find {n} new merges");
        }
        let a = &pool[r.below(pool.len())];
        let b = &pool[r.below(pool.len())];
        let prod = format!("{a}{b}");
        if texts.contains(&prod) {
            continue;
        }
        texts.insert(prod.clone());
        view.merges.push((a.clone(), b.clone()));
        while plan.len() < next {
            plan.push(RowSrc::Fresh);
        }
        view.ids.insert(next as u32, (prod, false));
        plan.push(RowSrc::Fresh);
        next += 1;
        added += 1;
    }
    let id_map: BTreeMap<u32, u32> = (0..rows as u32).map(|i| (i, i)).collect();
    reindex_vocab(m, &plan, &id_map, seed)?;
    store_view(m, &view)
}
