//! A small f64 reference forward pass for the lab's decoders (llama / glm4_moe / solar_open / phimoe
//! naming): embedding → norm → causal GQA attention with RoPE and optional biases → residual → norm →
//! dense gated MLP or routed MoE (+ shared experts) → residual → final norm → output head.
//! It is a test oracle for function-preserving transforms, not an inference engine.

use anyhow::{Result, anyhow, bail};
use serde_json::Value;

use super::dims::Dims;
use super::model::Model;

fn mat<'a>(m: &'a Model, name: &str) -> Result<(&'a [f32], usize, usize)> {
    let t = m.get(name)?;
    let (r, c) = t.dims2();
    Ok((t.values(name)?, r, c))
}

fn opt<'a>(m: &'a Model, name: &str) -> Option<&'a [f32]> {
    m.tensors.get(name).and_then(|t| t.values(name).ok())
}

fn matvec(w: &[f32], rows: usize, cols: usize, x: &[f64], bias: Option<&[f32]>) -> Vec<f64> {
    (0..rows)
        .map(|r| {
            let row = &w[r * cols..(r + 1) * cols];
            let s: f64 = row.iter().zip(x).map(|(a, b)| *a as f64 * b).sum();
            s + bias.map(|b| b[r] as f64).unwrap_or(0.0)
        })
        .collect()
}

fn norm(m: &Model, prefix: &str, x: &[f64], eps: f64) -> Result<Vec<f64>> {
    let g = m.get(&format!("{prefix}.weight"))?.values(prefix)?;
    let n = x.len() as f64;
    Ok(match opt(m, &format!("{prefix}.bias")) {
        Some(b) => {
            let mean = x.iter().sum::<f64>() / n;
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            let inv = 1.0 / (var + eps).sqrt();
            x.iter()
                .enumerate()
                .map(|(i, v)| (v - mean) * inv * g[i] as f64 + b[i] as f64)
                .collect()
        }
        None => {
            let ms = x.iter().map(|v| v * v).sum::<f64>() / n;
            let inv = 1.0 / (ms + eps).sqrt();
            x.iter()
                .enumerate()
                .map(|(i, v)| v * inv * g[i] as f64)
                .collect()
        }
    })
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

fn gated(m: &Model, gate: &str, up: &str, down: &str, x: &[f64]) -> Result<Vec<f64>> {
    let (wg, r, c) = mat(m, gate)?;
    let (wu, ru, cu) = mat(m, up)?;
    let (wd, rd, cd) = mat(m, down)?;
    let g = matvec(wg, r, c, x, None);
    let u = matvec(wu, ru, cu, x, None);
    let a: Vec<f64> = g.iter().zip(&u).map(|(g, u)| silu(*g) * u).collect();
    Ok(matvec(wd, rd, cd, &a, None))
}

fn rope(v: &mut [f64], pos: usize, head_dim: usize, rot: usize, theta: f64) {
    let half = rot / 2;
    for i in 0..half {
        let freq = 1.0 / theta.powf(2.0 * i as f64 / rot as f64);
        let (s, c) = (pos as f64 * freq).sin_cos();
        let (a, b) = (v[i], v[i + half]);
        v[i] = a * c - b * s;
        v[i + half] = a * s + b * c;
    }
    let _ = head_dim;
}

/// The decoder settings read from `config.json` (with a default for each missing key).
struct Settings {
    eps: f64,
    theta: f64,
    /// Rotated dimensions per head (partial rotary), even.
    rot: usize,
    top_k: usize,
    scaling: f64,
    /// Query heads per KV head.
    group: usize,
    hd: usize,
}

/// Logits for `ids` (one causal sequence). Errors name missing tensors.
pub fn logits(m: &Model, ids: &[u32]) -> Result<Vec<Vec<f64>>> {
    let d = Dims::of(m)?;
    let cfg = |k: &str| m.config.get(k).and_then(Value::as_f64);
    let s = Settings {
        eps: cfg("rms_norm_eps").unwrap_or(1e-5),
        theta: cfg("rope_theta").unwrap_or(10000.0),
        rot: ((d.head_dim as f64 * cfg("partial_rotary_factor").unwrap_or(1.0)) as usize) & !1,
        top_k: cfg("num_experts_per_tok").unwrap_or(2.0) as usize,
        scaling: cfg("routed_scaling_factor").unwrap_or(1.0),
        group: d.heads / d.kv_heads.max(1),
        hd: d.head_dim,
    };
    let eps = s.eps;
    let (emb, vocab, h) = mat(m, "model.embed_tokens.weight")?;
    if h != d.hidden {
        bail!("embedding width {h} != hidden_size {}", d.hidden);
    }
    let mut xs: Vec<Vec<f64>> = ids
        .iter()
        .map(|&i| {
            let i = i as usize;
            if i >= vocab {
                return Err(anyhow!("token id {i} out of range"));
            }
            Ok(emb[i * h..(i + 1) * h].iter().map(|v| *v as f64).collect())
        })
        .collect::<Result<_>>()?;
    for l in 0..d.layers {
        let p = format!("model.layers.{l}.");
        attention(m, &p, &mut xs, &s)?;
        for x in xs.iter_mut() {
            let hn = norm(m, &format!("{p}post_attention_layernorm"), x, eps)?;
            let out = mlp(m, &p, l, &hn, &s)?;
            x.iter_mut().zip(&out).for_each(|(a, b)| *a += b);
        }
    }
    let head = if m.tensors.contains_key("lm_head.weight") {
        "lm_head.weight"
    } else {
        "model.embed_tokens.weight"
    };
    let (wh, r, c) = mat(m, head)?;
    xs.iter()
        .map(|x| {
            let hn = norm(m, "model.norm", x, eps)?;
            Ok(matvec(wh, r, c, &hn, opt(m, "lm_head.bias")))
        })
        .collect()
}

/// One layer's causal GQA attention with RoPE (and optional biases), added to the residual `xs`.
fn attention(m: &Model, p: &str, xs: &mut [Vec<f64>], s: &Settings) -> Result<()> {
    let (eps, theta, rot, group, hd) = (s.eps, s.theta, s.rot, s.group, s.hd);
    let hn: Vec<Vec<f64>> = xs
        .iter()
        .map(|x| norm(m, &format!("{p}input_layernorm"), x, eps))
        .collect::<Result<_>>()?;
    let proj = |n: &str, x: &[f64]| -> Result<Vec<f64>> {
        let (w, r, c) = mat(m, &format!("{p}self_attn.{n}.weight"))?;
        Ok(matvec(
            w,
            r,
            c,
            x,
            opt(m, &format!("{p}self_attn.{n}.bias")),
        ))
    };
    let mut qs = Vec::new();
    let mut ks = Vec::new();
    let mut vs = Vec::new();
    for (pos, x) in hn.iter().enumerate() {
        let mut q = proj("q_proj", x)?;
        let mut k = proj("k_proj", x)?;
        for hh in 0..q.len() / hd {
            rope(&mut q[hh * hd..(hh + 1) * hd], pos, hd, rot, theta);
        }
        for hh in 0..k.len() / hd {
            rope(&mut k[hh * hd..(hh + 1) * hd], pos, hd, rot, theta);
        }
        qs.push(q);
        ks.push(k);
        vs.push(proj("v_proj", x)?);
    }
    let nq = qs[0].len() / hd;
    for t in 0..xs.len() {
        let mut ctx = vec![0.0; nq * hd];
        for qh in 0..nq {
            let kh = qh / group;
            // Causal: position t sees positions 0..=t.
            attend(
                &qs[t][qh * hd..(qh + 1) * hd],
                (&ks[..=t], &vs[..=t]),
                kh,
                &mut ctx[qh * hd..(qh + 1) * hd],
            );
        }
        let (wo, r, c) = mat(m, &format!("{p}self_attn.o_proj.weight"))?;
        let o = matvec(wo, r, c, &ctx, opt(m, &format!("{p}self_attn.o_proj.bias")));
        xs[t].iter_mut().zip(&o).for_each(|(a, b)| *a += b);
    }
    Ok(())
}

/// One head's scaled dot-product attention: `q` against head `head` of each position's keys,
/// the softmax-weighted values of that head added into `out` (as long as `q`).
fn attend(q: &[f64], (keys, values): (&[Vec<f64>], &[Vec<f64>]), head: usize, out: &mut [f64]) {
    let hd = q.len();
    let slot = head * hd..(head + 1) * hd;
    let scores: Vec<f64> = keys
        .iter()
        .map(|k| {
            q.iter()
                .zip(&k[slot.clone()])
                .map(|(a, b)| a * b)
                .sum::<f64>()
                / (hd as f64).sqrt()
        })
        .collect();
    let mx = scores.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = scores.iter().map(|s| (s - mx).exp()).collect();
    let z: f64 = e.iter().sum();
    for (s, w) in e.iter().enumerate() {
        for j in 0..hd {
            out[j] += w / z * values[s][head * hd + j];
        }
    }
}

/// One layer's MLP on the normed `hn`: dense gated, or routed MoE (+ shared experts).
fn mlp(m: &Model, p: &str, l: usize, hn: &[f64], s: &Settings) -> Result<Vec<f64>> {
    if m.tensors.contains_key(&format!("{p}mlp.gate_proj.weight")) {
        gated(
            m,
            &format!("{p}mlp.gate_proj.weight"),
            &format!("{p}mlp.up_proj.weight"),
            &format!("{p}mlp.down_proj.weight"),
            hn,
        )
    } else if let Some((router, moe, phi)) = [
        (format!("{p}mlp.gate.weight"), format!("{p}mlp."), false),
        (
            format!("{p}block_sparse_moe.gate.weight"),
            format!("{p}block_sparse_moe."),
            true,
        ),
    ]
    .into_iter()
    .find(|(r, _, _)| m.tensors.contains_key(r))
    {
        moe_mlp(m, &router, &moe, phi, hn, s)
    } else {
        bail!("layer {l}: no MLP found");
    }
}

/// A routed MoE block: softmax (Phi-MoE) or sigmoid with correction bias (GLM/Solar) routing,
/// top-k experts, plus the shared experts when present.
fn moe_mlp(
    m: &Model,
    router: &str,
    moe: &str,
    phi: bool,
    hn: &[f64],
    set: &Settings,
) -> Result<Vec<f64>> {
    let (top_k, scaling) = (set.top_k, set.scaling);
    let (wr, e, c) = mat(m, router)?;
    let logits = matvec(wr, e, c, hn, None);
    let (scores, select): (Vec<f64>, Vec<f64>) = if phi {
        let mx = logits.iter().cloned().fold(f64::MIN, f64::max);
        let ex: Vec<f64> = logits.iter().map(|v| (v - mx).exp()).collect();
        let z: f64 = ex.iter().sum();
        let s: Vec<f64> = ex.iter().map(|v| v / z).collect();
        (s.clone(), s)
    } else {
        let s: Vec<f64> = logits.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect();
        let b = opt(m, &format!("{moe}gate.e_score_correction_bias"));
        let sel = s
            .iter()
            .enumerate()
            .map(|(i, v)| v + b.map(|b| b[i] as f64).unwrap_or(0.0))
            .collect();
        (s, sel)
    };
    let mut order: Vec<usize> = (0..e).collect();
    order.sort_by(|a, b| select[*b].total_cmp(&select[*a]).then(a.cmp(b)));
    let chosen = &order[..top_k.min(e)];
    let z: f64 = chosen.iter().map(|i| scores[*i]).sum();
    let mut acc = vec![0.0; hn.len()];
    for &i in chosen {
        let w = scores[i] / z * if phi { 1.0 } else { scaling };
        let y = if phi {
            gated(
                m,
                &format!("{moe}experts.{i}.w1.weight"),
                &format!("{moe}experts.{i}.w3.weight"),
                &format!("{moe}experts.{i}.w2.weight"),
                hn,
            )?
        } else {
            gated(
                m,
                &format!("{moe}experts.{i}.gate_proj.weight"),
                &format!("{moe}experts.{i}.up_proj.weight"),
                &format!("{moe}experts.{i}.down_proj.weight"),
                hn,
            )?
        };
        acc.iter_mut().zip(&y).for_each(|(a, b)| *a += w * b);
    }
    if m.tensors
        .contains_key(&format!("{moe}shared_experts.gate_proj.weight"))
    {
        let y = gated(
            m,
            &format!("{moe}shared_experts.gate_proj.weight"),
            &format!("{moe}shared_experts.up_proj.weight"),
            &format!("{moe}shared_experts.down_proj.weight"),
            hn,
        )?;
        acc.iter_mut().zip(&y).for_each(|(a, b)| *a += b);
    }
    Ok(acc)
}

/// Largest absolute logit difference between `a` and `b` on `ids`, relative to the largest
/// |logit| of `a`: the function error of a transform (0 for an exact reparameterisation).
pub fn relative_logit_error(a: &Model, b: &Model, ids: &[u32]) -> Result<f64> {
    let (la, lb) = (logits(a, ids)?, logits(b, ids)?);
    let scale = la.iter().flatten().fold(0f64, |m, x| m.max(x.abs()));
    let diff = la
        .iter()
        .flatten()
        .zip(lb.iter().flatten())
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
    if scale == 0.0 || la.iter().map(Vec::len).ne(lb.iter().map(Vec::len)) {
        bail!("logits are not comparable (zero scale or different vocabularies)");
    }
    Ok(diff / scale)
}

fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + (0.797_884_560_802_865_4 * (x + 0.044715 * x * x * x)).tanh())
}

/// Final hidden states of a BERT encoder (post-LayerNorm, bidirectional attention, GELU MLP) for
/// `ids` with token type 0. Test oracle for BERT transforms.
pub fn bert_hidden(m: &Model, ids: &[u32]) -> Result<Vec<Vec<f64>>> {
    let d = Dims::of(m)?;
    let eps = m
        .config
        .get("layer_norm_eps")
        .and_then(Value::as_f64)
        .unwrap_or(1e-12);
    let (emb, vocab, h) = mat(m, "embeddings.word_embeddings.weight")?;
    let (pos, npos, _) = mat(m, "embeddings.position_embeddings.weight")?;
    let (typ, _, _) = mat(m, "embeddings.token_type_embeddings.weight")?;
    if ids.len() > npos {
        bail!("sequence longer than {npos} positions");
    }
    let mut xs: Vec<Vec<f64>> = ids
        .iter()
        .enumerate()
        .map(|(p, &i)| {
            let i = i as usize;
            if i >= vocab {
                return Err(anyhow!("token id {i} out of range"));
            }
            let x: Vec<f64> = (0..h)
                .map(|j| emb[i * h + j] as f64 + pos[p * h + j] as f64 + typ[j] as f64)
                .collect();
            norm(m, "embeddings.LayerNorm", &x, eps)
        })
        .collect::<Result<_>>()?;
    let hd = d.head_dim;
    for l in 0..d.layers {
        let p = format!("encoder.layer.{l}.");
        let lin = |n: &str, x: &[f64]| -> Result<Vec<f64>> {
            let (w, r, c) = mat(m, &format!("{p}{n}.weight"))?;
            Ok(matvec(w, r, c, x, opt(m, &format!("{p}{n}.bias"))))
        };
        let q: Vec<Vec<f64>> = xs
            .iter()
            .map(|x| lin("attention.self.query", x))
            .collect::<Result<_>>()?;
        let k: Vec<Vec<f64>> = xs
            .iter()
            .map(|x| lin("attention.self.key", x))
            .collect::<Result<_>>()?;
        let v: Vec<Vec<f64>> = xs
            .iter()
            .map(|x| lin("attention.self.value", x))
            .collect::<Result<_>>()?;
        let heads = q[0].len() / hd;
        let mut next = Vec::with_capacity(xs.len());
        for t in 0..xs.len() {
            let mut ctx = vec![0.0; heads * hd];
            for hh in 0..heads {
                // Bidirectional: every position sees every position.
                let r = hh * hd..(hh + 1) * hd;
                attend(&q[t][r.clone()], (&k, &v), hh, &mut ctx[r]);
            }
            let a = lin("attention.output.dense", &ctx)?;
            let x1: Vec<f64> = xs[t].iter().zip(&a).map(|(x, y)| x + y).collect();
            let x1 = norm(m, &format!("{p}attention.output.LayerNorm"), &x1, eps)?;
            let inter: Vec<f64> = lin("intermediate.dense", &x1)?
                .into_iter()
                .map(gelu)
                .collect();
            let o = lin("output.dense", &inter)?;
            let x2: Vec<f64> = x1.iter().zip(&o).map(|(x, y)| x + y).collect();
            next.push(norm(m, &format!("{p}output.LayerNorm"), &x2, eps)?);
        }
        xs = next;
    }
    Ok(xs)
}
