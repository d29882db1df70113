//! The generic fallback for names no family rule knows: a layer index from the first numbered
//! segment (`…stages.3.…`), an attention or MLP role from the words around it (`attn`, `q`,
//! `query`, `mlp`, `fc1`, `norm1`, …) checked against the shape (projections are 2-D, norms
//! 1-D). What it places is marked [`Role::inferred`]: the tool can say it guessed.

use super::names::is_bias;
use super::{Family, Role, stack_named};

/// Fills `role` from name patterns when the rules left it `Other`; leaves it alone when nothing
/// plausible fits or no layer index can be found (a per-layer role without a layer lines up
/// with nothing).
pub(super) fn infer(parts: &[&str], shape: &[u64], role: &mut Role) {
    let (layer, stack, rest) = match role.layer {
        Some(l) => (l, role.stack, tail_after_number(parts).unwrap_or(parts)),
        None => match first_number(parts) {
            Some((i, n)) => (n, stack_named(&parts[..i]), &parts[i + 1..]),
            None => return,
        },
    };
    let Some(family) = guess(rest, shape) else {
        return;
    };
    role.layer = Some(layer);
    role.stack = stack;
    role.family = family;
    role.inferred = true;
}

/// The first purely numeric segment that follows a word (not an expert index).
fn first_number(parts: &[&str]) -> Option<(usize, u32)> {
    (1..parts.len()).find_map(|i| {
        let prev = parts[i - 1];
        if prev == "experts" || prev.parse::<u32>().is_ok() {
            return None;
        }
        parts[i].parse::<u32>().ok().map(|n| (i, n))
    })
}

fn tail_after_number<'a, 'b>(parts: &'b [&'a str]) -> Option<&'b [&'a str]> {
    first_number(parts).map(|(i, _)| &parts[i + 1..])
}

fn guess(rest: &[&str], shape: &[u64]) -> Option<Family> {
    use Family::*;
    let words: Vec<String> = rest
        .iter()
        .filter(|p| !matches!(**p, "weight" | "bias" | "gamma" | "beta"))
        .map(|p| p.to_ascii_lowercase())
        .collect();
    let last = words.last()?.as_str();
    let bias = is_bias(rest);
    let pick = |w: Family, b: Family| Some(if bias { b } else { w });
    let any = |f: &dyn Fn(&str) -> bool| words.iter().any(|w| f(w));
    let attn = any(&|w| w.contains("attn") || w.contains("attention") || w == "mha");
    let mlp = any(&|w| {
        w.contains("mlp")
            || w.contains("ffn")
            || w.contains("feed_forward")
            || w.contains("feedforward")
            || w == "ff"
    });
    let matrix = shape.is_empty() || shape.len() == 2 || bias;
    let vector = shape.is_empty() || shape.len() == 1;

    if last.contains("norm") || last.starts_with("ln") {
        if !vector {
            return None;
        }
        return if last.ends_with('1') || attn {
            pick(InputNorm, InputNormBias)
        } else if last.ends_with('2') || mlp {
            pick(PostAttentionNorm, PostAttentionNormBias)
        } else {
            None
        };
    }
    if !matrix {
        return None;
    }
    let is = |set: &[&str]| set.contains(&last);
    if is(&[
        "qkv",
        "wqkv",
        "qkv_proj",
        "to_qkv",
        "in_proj",
        "in_proj_weight",
    ]) {
        return pick(AttnQkv, AttnQkvBias);
    }
    if is(&[
        "q",
        "query",
        "wq",
        "q_proj",
        "to_q",
        "query_proj",
        "proj_q",
        "q_lin",
    ]) {
        return pick(AttnQ, AttnQBias);
    }
    if is(&[
        "k", "key", "wk", "k_proj", "to_k", "key_proj", "proj_k", "k_lin",
    ]) {
        return pick(AttnK, AttnKBias);
    }
    if is(&[
        "v",
        "value",
        "wv",
        "v_proj",
        "to_v",
        "value_proj",
        "proj_v",
        "v_lin",
    ]) {
        return pick(AttnV, AttnVBias);
    }
    let out = [
        "o", "out", "wo", "o_proj", "out_proj", "to_out", "proj", "dense", "output",
    ];
    if attn && !mlp && is(&out) {
        return pick(AttnO, AttnOBias);
    }
    if mlp {
        if is(&["gate", "gate_proj", "w_gate", "wg"]) {
            return Some(MlpGate);
        }
        if is(&[
            "up", "up_proj", "fc1", "w1", "wi", "lin1", "fc_in", "c_fc", "w_in", "in",
        ]) {
            return pick(MlpUp, MlpUpBias);
        }
        if is(&[
            "down",
            "down_proj",
            "fc2",
            "w2",
            "lin2",
            "fc_out",
            "w_out",
            "c_proj",
        ]) || is(&out)
        {
            return pick(MlpDown, MlpDownBias);
        }
    }
    None
}
