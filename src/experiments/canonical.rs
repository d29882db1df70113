//! Canonical forms of the matrices experiments compare, so that reparameterisations which keep
//! the network's function cannot change the statistics.
//!
//! In a pre-norm decoder a norm's gain `g` multiplies the columns of every matrix reading the
//! norm's output: the network only ever uses `W·diag(g)`. Rescaling a channel (`g·s`, `W/s`) or
//! folding the gain into the readers (`g = 1`, `W·diag(g)`) leaves that product unchanged, so
//! experiments compare `W·diag(g)` (the *folded* form): Q/K/V with the input norm, MLP inputs and
//! the router with the norm the MLP reads (Llama's post-attention norm; Gemma 2/3's
//! pre-feed-forward norm). The gain is what the network multiplies by: Gemma stores `w` for a
//! gain of `1 + w` ([`gain_offset`]). Post-norm encoders (BERT, ALBERT, DistilBERT) put the norm
//! after the residual add, where folding is not function-preserving: their matrices stay raw.
//!
//! Pure functions over fetched data; the planning helpers name the gain tensors to fetch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::roles::layers_of;
use super::{Data, Plan, Sample};
use crate::arch::Family;
use crate::model::{Model, TensorInfo};

/// Which canonical form a comparison used (reported in results).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// Pre-norm gains multiplied into the columns of their readers.
    NormGainsFolded,
    /// Matrices as stored: a post-norm model, or a norm gain missing or of the wrong width.
    Raw,
}

/// Whether `model` is a post-norm encoder (norm after the residual add). Without a config,
/// a model with per-layer norms none of which is an attention input norm is post-norm.
pub fn is_post_norm(model: &Model) -> bool {
    let kind = model_type(model);
    if matches!(
        kind,
        "bert" | "roberta" | "xlm-roberta" | "electra" | "distilbert" | "albert" | "mpnet"
    ) || model
        .tensors()
        .iter()
        .any(|t| t.name.contains("encoder.layer."))
    {
        return true;
    }
    let layered = |f: Family| {
        model
            .tensors()
            .iter()
            .any(|t| t.role.family == f && t.role.layer.is_some())
    };
    kind.is_empty() && !layered(Family::InputNorm) && layered(Family::PostAttentionNorm)
}

fn model_type(model: &Model) -> &str {
    let c = model.config();
    c.and_then(|c| c.get("model_type"))
        .and_then(|v| v.as_str())
        .unwrap_or("")
}

/// What is added to a stored norm weight to get the gain the network multiplies by: Gemma's
/// RMSNorm computes `x·(1 + w)` and stores `w` (so a stored 0 is a gain of 1); everyone else
/// stores the gain.
pub fn gain_offset(model: &Model) -> f32 {
    let text_type = model
        .config()
        .and_then(|c| c.get("text_config"))
        .and_then(|t| t.get("model_type"))
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let gemma = |t: &str| t.starts_with("gemma") || t == "recurrent_gemma";
    // Gemma 2/3 without a config: the sandwich norms only they have
    let named = model_type(model).is_empty()
        && model
            .tensors()
            .iter()
            .any(|t| t.name.contains("pre_feedforward_layernorm"));
    if gemma(model_type(model)) || gemma(text_type) || named {
        1.0
    } else {
        0.0
    }
}

/// The norm whose output the readers of `family` see (for the MLP, the separate MLP input norm
/// when a model has one, see [`gains`]).
pub fn gain_family(family: Family) -> Option<Family> {
    use Family::*;
    match family {
        AttnQ | AttnK | AttnV => Some(InputNorm),
        MlpGate | MlpUp | Router => Some(PostAttentionNorm),
        _ => None,
    }
}

/// Per layer, the gain vectors (whole tensors) a model's readers of `family` are folded with.
/// The MLP reads `pre_feedforward_layernorm` in Gemma 2/3 (and `ln_mlp` in Falcon-40B): their
/// `post_attention_layernorm` normalises the attention output instead.
pub fn gains(model: &Model, family: Family) -> BTreeMap<u32, &TensorInfo> {
    let vectors = |g: Family| -> BTreeMap<u32, &TensorInfo> {
        layers_of(model, g)
            .into_iter()
            .filter(|(_, t)| t.shape.len() == 1)
            .collect()
    };
    match gain_family(family) {
        Some(_) if is_post_norm(model) => BTreeMap::new(),
        Some(Family::PostAttentionNorm) => {
            let pre = vectors(Family::PreMlpNorm);
            if pre.is_empty() {
                vectors(Family::PostAttentionNorm)
            } else {
                pre
            }
        }
        Some(g) => vectors(g),
        None => BTreeMap::new(),
    }
}

/// Plans the whole gain vector of every layer's norm for `family` of model `m`.
pub fn plan_gains(model: &Model, m: usize, family: Family, plan: &mut Plan) {
    for t in gains(model, family).values() {
        plan.add(m, Sample::whole(&t.name, t.numel));
    }
}

/// The fetched gain of one norm as the network applies it (stored weight + `offset`, see
/// [`gain_offset`]), when it is `cols` wide (a norm of another width cannot be folded into
/// these columns).
pub fn gain_of_width<'d>(
    data: &'d Data,
    m: usize,
    gain: Option<&TensorInfo>,
    cols: usize,
    offset: f32,
) -> Option<std::borrow::Cow<'d, [f32]>> {
    let stored = gain
        .and_then(|t| data.get(m, &Sample::whole(&t.name, t.numel)).ok())
        .filter(|g| g.len() == cols && cols > 0)?;
    Some(if offset == 0.0 {
        std::borrow::Cow::Borrowed(stored)
    } else {
        std::borrow::Cow::Owned(stored.iter().map(|w| w + offset).collect())
    })
}

/// Per layer, the gains of `family`'s readers of model `m` as the network applies them.
pub fn gain_vectors(
    data: &Data,
    m: usize,
    model: &Model,
    family: Family,
) -> BTreeMap<u32, Vec<f32>> {
    let offset = gain_offset(model);
    gains(model, family)
        .into_iter()
        .filter_map(|(l, t)| {
            let g = gain_of_width(data, m, Some(t), t.numel as usize, offset)?;
            Some((l, g.into_owned()))
        })
        .collect()
}

/// `W·diag(g)` for a row-major `rows × cols` matrix, or `W` unchanged with [`Form::Raw`] when
/// there is no gain of width `cols` for this layer.
pub fn fold<'d>(
    data: &'d Data,
    m: usize,
    gain: Option<&TensorInfo>,
    offset: f32,
    w: &'d [f32],
    cols: usize,
) -> (std::borrow::Cow<'d, [f32]>, Form) {
    match gain_of_width(data, m, gain, cols, offset) {
        Some(g) => (
            std::borrow::Cow::Owned(crate::cka::fold_columns(w, cols, &g)),
            Form::NormGainsFolded,
        ),
        _ => (std::borrow::Cow::Borrowed(w), Form::Raw),
    }
}

/// One form for a set of comparisons: folded only when every matrix was.
pub fn combine(forms: impl IntoIterator<Item = Form>) -> Form {
    let mut any = false;
    for f in forms {
        any = true;
        if f == Form::Raw {
            return Form::Raw;
        }
    }
    if any {
        Form::NormGainsFolded
    } else {
        Form::Raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_undoes_a_channel_rescaling() {
        // W = [[1, 2], [3, 4]], g = [2, 0.5]; rescaled: g·s, W/s with s = [4, 0.25]
        let (w, g) = ([1.0f32, 2.0, 3.0, 4.0], [2.0f32, 0.5]);
        let s = [4.0f32, 0.25];
        let ws: Vec<f32> = w.iter().enumerate().map(|(i, x)| x / s[i % 2]).collect();
        let gs: Vec<f32> = g.iter().zip(&s).map(|(a, b)| a * b).collect();
        assert_eq!(
            crate::cka::fold_columns(&w, 2, &g),
            vec![2.0, 1.0, 6.0, 2.0]
        );
        assert_eq!(
            crate::cka::fold_columns(&ws, 2, &gs),
            crate::cka::fold_columns(&w, 2, &g)
        );
        assert_eq!(combine([Form::NormGainsFolded, Form::Raw]), Form::Raw);
        assert_eq!(combine([]), Form::Raw);
    }
}
