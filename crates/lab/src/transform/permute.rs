//! Permutations that preserve the function: hidden coordinates (with sign flips), attention
//! heads, routed experts.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};

use crate::arch::{Role, classify, name_parts, with_expert};
use crate::dims::Dims;
use crate::model::{Data, Model};
use crate::rng::Rng;

/// Gather columns: new col `i` = sign[i]·old col `src[i]`, for the column ranges `segments` (start, len).
pub(super) fn permute_cols(
    v: &mut [f32],
    rows: usize,
    cols: usize,
    start: usize,
    src: &[usize],
    sign: &[f32],
) {
    let n = src.len();
    let mut tmp = vec![0f32; n];
    for r in 0..rows {
        let row = &mut v[r * cols + start..r * cols + start + n];
        for i in 0..n {
            tmp[i] = sign[i] * row[src[i]];
        }
        row.copy_from_slice(&tmp);
    }
}

pub(super) fn permute_rows(v: &mut Vec<f32>, cols: usize, src: &[usize], sign: &[f32]) {
    let mut out = Vec::with_capacity(v.len());
    for (i, s) in src.iter().enumerate() {
        out.extend(v[s * cols..(s + 1) * cols].iter().map(|x| x * sign[i]));
    }
    out.extend_from_slice(&v[src.len() * cols..]);
    *v = out;
}

pub(super) fn permute_hidden(m: &mut Model, seed: u64, sign_flips: bool) -> Result<()> {
    let h = Dims::of(m)?.hidden;
    let mut r = Rng::new(seed, "permute_hidden");
    let src = r.permutation(h);
    let sign: Vec<f32> = (0..h)
        .map(|_| {
            if sign_flips && r.uniform() < 0.5 {
                -1.0
            } else {
                1.0
            }
        })
        .collect();
    let ones = vec![1.0f32; h];
    if sign_flips
        && m.tensors
            .iter()
            .any(|(n, t)| classify(n, &t.shape, h) == Role::NormBias)
    {
        bail!(
            "permute_hidden: sign flips do not commute with LayerNorm (mean subtraction); use sign_flips = false"
        );
    }
    for (name, t) in m.tensors.iter_mut() {
        let role = classify(name, &t.shape, h);
        let shape = t.shape.clone();
        let (rows, cols) = t.dims2();
        let Data::F32(v) = &mut t.data else {
            if shape.contains(&h) {
                bail!(
                    "permute_hidden: tensor {name} ({}) has a hidden axis but is not a float tensor",
                    t.dtype.name()
                );
            }
            continue;
        };
        let want_cols = |ok: bool| -> Result<()> {
            if !ok {
                bail!(
                    "permute_hidden: tensor {name} has shape {shape:?}, expected a hidden axis of {h}"
                );
            }
            Ok(())
        };
        match role {
            Role::Embed
            | Role::LmHead
            | Role::PosEmbed
            | Role::Q
            | Role::K
            | Role::V
            | Role::MlpIn
            | Role::Router
            | Role::Pooler => {
                want_cols(shape.len() == 2 && cols == h)?;
                permute_cols(v, rows, cols, 0, &src, &sign);
            }
            Role::O | Role::MlpOut => {
                want_cols(shape.len() == 2 && rows == h)?;
                permute_rows(v, cols, &src, &sign);
            }
            Role::OBias | Role::MlpOutBias | Role::NormBias => {
                want_cols(shape == [h])?;
                permute_rows(v, 1, &src, &sign);
            }
            Role::Norm(_) => {
                want_cols(shape == [h])?;
                permute_rows(v, 1, &src, &ones);
            }
            Role::EhProj => {
                want_cols(shape.len() == 2 && rows == h && cols == 2 * h)?;
                permute_cols(v, rows, cols, 0, &src, &sign);
                permute_cols(v, rows, cols, h, &src, &sign);
                permute_rows(v, cols, &src, &sign);
            }
            Role::Other if shape.len() == 2 && cols == h => {
                permute_cols(v, rows, cols, 0, &src, &sign)
            }
            Role::Other if shape.len() == 2 && rows == h => permute_rows(v, cols, &src, &sign),
            Role::Other if shape == [h] => bail!(
                "permute_hidden: don't know how tensor {name} [{h}] relates to the residual stream"
            ),
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn permute_heads(m: &mut Model, seed: u64) -> Result<()> {
    let d = Dims::of(m)?;
    d.need_heads()?;
    let group = d.heads / d.kv_heads;
    let hd = d.head_dim;
    for (name, t) in m.tensors.iter_mut() {
        let role = classify(name, &t.shape, d.hidden);
        if !matches!(
            role,
            Role::Q | Role::K | Role::V | Role::O | Role::QBias | Role::KBias | Role::VBias
        ) {
            continue;
        }
        let layer = name_parts(name)
            .layer
            .ok_or_else(|| anyhow!("permute_heads: {name} is outside a layer"))?;
        let mut r = Rng::indexed(seed, "permute_heads", layer as u64);
        let kv_perm = r.permutation(d.kv_heads);
        let in_group: Vec<Vec<usize>> = (0..d.kv_heads).map(|_| r.permutation(group)).collect();
        // head-level sources
        let q_src: Vec<usize> = (0..d.heads)
            .map(|i| kv_perm[i / group] * group + in_group[i / group][i % group])
            .collect();
        let expand = |heads: &[usize]| -> Vec<usize> {
            heads
                .iter()
                .flat_map(|h| (0..hd).map(move |j| h * hd + j))
                .collect()
        };
        let (rows, cols) = t.dims2();
        let shape = t.shape.clone();
        let v = t.values_mut(name)?;
        let (src, by_rows) = match role {
            Role::Q | Role::QBias => (expand(&q_src), true),
            Role::K | Role::V | Role::KBias | Role::VBias => (expand(&kv_perm), true),
            _ => (expand(&q_src), false),
        };
        let ones = vec![1.0f32; src.len()];
        if by_rows {
            let n = if shape.len() == 1 { shape[0] } else { rows };
            if n != src.len() {
                bail!(
                    "permute_heads: tensor {name} has {n} rows, expected {}",
                    src.len()
                );
            }
            permute_rows(v, if shape.len() == 1 { 1 } else { cols }, &src, &ones);
        } else {
            if cols != src.len() {
                bail!(
                    "permute_heads: tensor {name} has {cols} columns, expected {}",
                    src.len()
                );
            }
            permute_cols(v, rows, cols, 0, &src, &ones);
        }
    }
    Ok(())
}

pub(super) fn permute_experts(m: &mut Model, seed: u64) -> Result<()> {
    let h = Dims::of(m)?.hidden;
    // per layer permutation: new expert e' takes old expert perm[e']
    let mut perms: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (name, t) in &m.tensors {
        if classify(name, &t.shape, h) == Role::Router {
            if t.shape.len() != 2 {
                bail!(
                    "permute_experts: router {name} has shape {:?}, expected 2-D",
                    t.shape
                );
            }
            let l = name_parts(name)
                .layer
                .ok_or_else(|| anyhow!("router {name} outside a layer"))?;
            perms.insert(
                l,
                Rng::indexed(seed, "permute_experts", l as u64).permutation(t.shape[0]),
            );
        }
    }
    if perms.is_empty() {
        bail!("permute_experts: the model has no router");
    }
    for (name, t) in m.tensors.iter_mut() {
        let role = classify(name, &t.shape, h);
        if matches!(role, Role::Router | Role::RouterBias) {
            let l = name_parts(name).layer.unwrap_or(usize::MAX);
            let Some(p) = perms.get(&l) else { continue };
            let cols = t.dims2().1;
            let cols = if t.shape.len() == 1 { 1 } else { cols };
            let ones = vec![1.0f32; p.len()];
            permute_rows(t.values_mut(name)?, cols, p, &ones);
        }
    }
    let inv: BTreeMap<usize, Vec<usize>> = perms
        .iter()
        .map(|(l, p)| {
            let mut inv = vec![0; p.len()];
            for (new, old) in p.iter().enumerate() {
                inv[*old] = new;
            }
            (*l, inv)
        })
        .collect();
    m.rename_all(|n| {
        let parts = name_parts(n);
        match (parts.layer, parts.expert) {
            (Some(l), Some(e)) => match inv.get(&l).and_then(|inv| inv.get(e)) {
                Some(ne) => with_expert(n, *ne),
                None => n.to_string(),
            },
            _ => n.to_string(),
        }
    })
}
