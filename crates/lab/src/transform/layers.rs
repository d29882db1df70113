//! Transforms of the layer stack: layers inserted, dropped or reordered, and the model renamed
//! to another architecture.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde_json::json;

use crate::arch::{ArchKind, Role, classify, name_parts, with_layer};
use crate::model::{Data, Model, Tensor};
use crate::rng::Rng;

pub(super) fn is_dense_layer(m: &Model, l: usize) -> bool {
    !m.tensors.iter().any(|(n, t)| {
        name_parts(n).layer == Some(l) && classify(n, &t.shape, usize::MAX) == Role::Router
    })
}

pub(super) fn leading_dense(m: &Model, layers: usize) -> usize {
    if !m
        .tensors
        .iter()
        .any(|(n, t)| classify(n, &t.shape, usize::MAX) == Role::Router)
    {
        return 0;
    }
    (0..layers).take_while(|l| is_dense_layer(m, *l)).count()
}

/// Rebuild regular layers from `plan` (new index → (source layer, fresh values)); MTP layers
/// (index ≥ `layers`) move to follow the new last layer.
pub(super) fn rebuild_layers(
    m: &mut Model,
    layers: usize,
    plan: &[(usize, bool)],
    seed: u64,
) -> Result<()> {
    if plan.is_empty() {
        bail!("no layers would remain");
    }
    let has_router = m
        .tensors
        .iter()
        .any(|(n, t)| classify(n, &t.shape, usize::MAX) == Role::Router);
    let old = std::mem::take(&mut m.tensors);
    let mut by_layer: BTreeMap<usize, Vec<(String, Tensor)>> = BTreeMap::new();
    for (n, t) in old {
        match name_parts(&n).layer {
            Some(l) => by_layer.entry(l).or_default().push((n, t)),
            None => {
                m.tensors.insert(n, t);
            }
        }
    }
    let mut order_map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (new_l, (src, fresh)) in plan.iter().enumerate() {
        let Some(ts) = by_layer.get(src) else {
            bail!("layer {src} has no tensors")
        };
        for (n, t) in ts {
            let nn = with_layer(n, new_l);
            let mut t = t.clone();
            if *fresh && let Data::F32(v) = &mut t.data {
                let mut r = Rng::new(seed, &format!("insert/{nn}"));
                if t.shape.len() == 1 {
                    r.shuffle(v);
                } else {
                    let mean = v.iter().map(|x| *x as f64).sum::<f64>() / v.len().max(1) as f64;
                    let sd = (v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>()
                        / v.len().max(1) as f64)
                        .sqrt();
                    v.iter_mut()
                        .for_each(|x| *x = (mean + sd * r.normal()) as f32);
                }
            }
            order_map.entry(n.clone()).or_default().push(nn.clone());
            m.tensors.insert(nn, t);
        }
    }
    let new_layers = plan.len();
    for (l, ts) in by_layer.range(layers..) {
        for (n, t) in ts {
            let nn = with_layer(n, new_layers + (l - layers));
            order_map.entry(n.clone()).or_default().push(nn.clone());
            m.tensors.insert(nn, t.clone());
        }
    }
    let order = std::mem::take(&mut m.layout.order);
    m.layout.order = order
        .iter()
        .flat_map(|n| order_map.get(n).cloned().unwrap_or_else(|| vec![n.clone()]))
        .collect();
    m.set_cfg("num_hidden_layers", json!(new_layers));
    if has_router {
        let dense = leading_dense(m, new_layers);
        if (dense..new_layers).any(|l| is_dense_layer(m, l)) {
            bail!(
                "the new layer order puts a dense layer after a MoE layer, which first_k_dense_replace cannot express"
            );
        }
        if m.config.get("first_k_dense_replace").is_some() {
            m.set_cfg("first_k_dense_replace", json!(dense));
        }
    }
    Ok(())
}

pub(super) fn rename_arch(m: &mut Model, to: ArchKind) -> Result<()> {
    let is_bert = |s: &str| s.contains("encoder.layer.");
    if to == ArchKind::Bert || m.tensors.keys().any(|k| is_bert(k)) {
        bail!("rename_arch between BERT and decoder naming is not supported");
    }
    let phi = to == ArchKind::Phimoe;
    m.rename_all(|n| {
        if phi {
            if name_parts(n).expert.is_some() && n.contains(".mlp.experts.") {
                n.replace(".mlp.experts.", ".block_sparse_moe.experts.")
                    .replace(".gate_proj.", ".w1.")
                    .replace(".up_proj.", ".w3.")
                    .replace(".down_proj.", ".w2.")
            } else {
                n.replace(".mlp.gate.", ".block_sparse_moe.gate.")
                    .replace(".mlp.shared_experts.", ".block_sparse_moe.shared_experts.")
            }
        } else if n.contains(".block_sparse_moe.experts.") {
            n.replace(".block_sparse_moe.experts.", ".mlp.experts.")
                .replace(".w1.", ".gate_proj.")
                .replace(".w3.", ".up_proj.")
                .replace(".w2.", ".down_proj.")
        } else {
            n.replace(".block_sparse_moe.", ".mlp.")
        }
    })?;
    m.set_cfg("model_type", json!(to.model_type()));
    let arch = match to {
        ArchKind::Glm4Moe => "Glm4MoeForCausalLM",
        ArchKind::SolarOpen => "SolarOpenForCausalLM",
        ArchKind::Phimoe => "PhiMoEForCausalLM",
        _ => "LlamaForCausalLM",
    };
    m.set_cfg("architectures", json!([arch]));
    Ok(())
}
