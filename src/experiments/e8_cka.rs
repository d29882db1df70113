//! E8 CKA: the AWM weight-matrix fingerprint (see [`crate::cka`]). Hidden dimensions are lined
//! up by a linear assignment on embedding columns over a seeded sample of shared tokens (rows
//! read by Range), then debiased linear CKA compares Q and K projections per layer, layers
//! paired by index or by a Hungarian assignment when depths differ.
//!
//! Obfuscation: before the Grams, Q and K are put in canonical form (input-norm gains folded
//! into their columns, [`super::canonical`]), so channel rescaling and gain folding change
//! nothing. Two hidden alignments are fitted on the even half of the shared tokens: AWM's signed
//! permutation and an orthogonal Procrustes map ([`crate::procrustes`], which undoes residual
//! rotations and, rectangular, slicing). The one carrying the odd half's embedding rows onto each
//! other better (by more than [`Params::procrustes_margin`], since a rotation also fits noise
//! better) decides, is refitted on all tokens and gives `score`/`score_assigned`. The
//! permutation-only score on raw matrices, AWM as published, stays as `score_awm*`.
//!
//! Every score is reported beside a null measured in the same run: the control pairs
//! (independent by choice of the auditor). AWM's own z against its hard-coded constants is
//! reported too, labelled as such. `row_fraction` < 1 reads a seeded subset of Q/K rows (in
//! blocks of `row_block`): CKA is over the input dimension, so any rows are valid features.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::canonical::{self, Form};
use super::roles::{Proj, projections_of};
use super::tokens::{VocabCache, pair_rows};
use super::{Data, Experiment, Output, Plan, Sample, Subjects, Table, fmt, round9};
use crate::arch::Family;
use crate::cka::{
    self, AwmOptions, DEFAULT_LAP_CAP, HiddenAlignment, LapMethod, LayerPairing, MatRef, QkLayer,
    Side,
};
use crate::model::Model;
use crate::procrustes::{self, Procrustes};
use crate::sampling;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub seed: u64,
    /// Shared tokens whose embedding rows fit the hidden-dimension alignment.
    pub vocab_rows: usize,
    /// Fraction of each Q/K projection's rows read (seeded blocks); 1 = all.
    pub row_fraction: f64,
    /// Rows per block when `row_fraction` < 1.
    pub row_block: u64,
    /// Largest hidden width aligned with the exact Hungarian assignment (greedy above).
    pub lap_cap: usize,
    /// See [`AwmOptions`]: hidden dims of the layer-assignment matrix (0 = all).
    pub assignment_dims: usize,
    /// Also pair layers by assignment at equal depth (`score_assigned`).
    pub always_assign: bool,
    /// Consider an orthogonal Procrustes alignment beside the permutation.
    pub procrustes: bool,
    /// Procrustes decides only when its held-out row cosine beats the permutation's by this much.
    pub procrustes_margin: f64,
    /// Widest hidden size Procrustes is tried at: its d×d decomposition is O(d³) and takes
    /// minutes at 4096 with nalgebra, so wider pairs use the permutation unless raised.
    pub procrustes_max_width: usize,
    /// Most bytes of Q/K rows read per model: above it the row fraction shrinks to fit (the
    /// fraction used is reported), so peak memory and transfer stay bounded at 100B scale.
    /// Rows are held decoded as f32, so memory is about twice this per model (BF16 on disk):
    /// 128 MiB keeps a two-model GLM-4.5-Air-class audit's E8 near 1.5 GiB and still reads a
    /// few hundred rows of every Q and K (2.5 % of GLM-4.5-Air's).
    pub max_qk_bytes: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            seed: 0,
            vocab_rows: 8192,
            row_fraction: 1.0,
            row_block: 64,
            lap_cap: DEFAULT_LAP_CAP,
            assignment_dims: AwmOptions::default().assignment_dims,
            always_assign: true,
            procrustes: true,
            procrustes_margin: 0.05,
            procrustes_max_width: 1024,
            max_qk_bytes: 128 << 20,
        }
    }
}

#[derive(Default)]
pub struct Cka {
    pub params: Params,
    vocabs: VocabCache,
}

impl Cka {
    pub fn new(params: Params) -> Cka {
        Cka {
            params,
            vocabs: VocabCache::default(),
        }
    }
}

/// One matched layer pair.
#[derive(Clone, Debug, Serialize)]
pub struct LayerRow {
    pub pair: String,
    pub primary: bool,
    pub layer_a: u32,
    pub layer_b: u32,
    pub q: f64,
    pub k: f64,
}

/// The fingerprint of one pair.
#[derive(Clone, Debug, Serialize)]
pub struct PairResult {
    pub pair: String,
    pub primary: bool,
    /// `ok`, or `skipped: <reason>`.
    pub status: String,
    /// How hidden dimensions were lined up for `score*`: `embedding_lap`, `embedding_procrustes`,
    /// or `identity` (no usable vocabulary/embeddings and equal widths: AWM's fallback).
    pub alignment: String,
    /// What chose it: `held_out_fit` (both fitted on half the tokens, judged on the other
    /// half) or `only_option`.
    pub alignment_decided_by: String,
    /// Mean row cosine of the held-out embedding rows after each alignment.
    pub held_out_fit_lap: f64,
    pub held_out_fit_procrustes: f64,
    /// Fraction of Q/K rows read from A and from B (below `row_fraction` when the byte
    /// budget `max_qk_bytes` cut it).
    pub qk_row_fraction: [f64; 2],
    /// Canonical form of the Q/K matrices behind `score*` (see [`super::canonical`]).
    pub canonical: Option<Form>,
    pub base: Option<Side>,
    pub d_base: usize,
    pub d_target: usize,
    pub shared_tokens: usize,
    pub tokens_used: usize,
    /// Mean |cos| of matched embedding columns.
    pub alignment_mean_abs_cos: f64,
    /// Share of target dims matched to the same index with a + sign (1 for unpermuted copies).
    pub alignment_identity_fraction: f64,
    pub lap: Option<LapMethod>,
    pub pairing: Option<LayerPairing>,
    pub layers_a: usize,
    pub layers_b: usize,
    pub layers_matched: usize,
    pub score_q: f64,
    pub score_k: f64,
    /// AWM's `Wq_Wk`: mean of the Q and K scores.
    pub score: f64,
    /// Score with layers paired by assignment even at equal depth (catches permuted layers);
    /// equals `score` when depths differ.
    pub score_assigned: f64,
    /// Assigned layer pairs off the diagonal.
    pub assigned_off_diagonal: usize,
    /// AWM as published: permutation-and-sign alignment on all sampled tokens, raw matrices.
    pub score_awm: f64,
    /// The same with layers paired by assignment.
    pub score_awm_assigned: f64,
    /// z of `score` against the other pairs of this run that are control comparisons
    /// (for a control pair: the remaining control pairs). None with fewer than 2.
    pub z_vs_controls: Option<f64>,
    /// AWM's |z| against its hard-coded null (mean 0.00375, sd 0.0028): not calibrated here.
    pub z_awm_constants: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Result8 {
    pub params: Params,
    pub pairs: Vec<PairResult>,
    pub layers: Vec<LayerRow>,
}

/// Q and K of one layer with the rows planned for each (rows of their own tensors, or of a fused
/// q/k/v tensor: [`projections_of`]).
struct QkPlan<'a> {
    layer: u32,
    q: Proj<'a>,
    k: Proj<'a>,
    q_sample: Sample,
    k_sample: Sample,
    q_rows: usize,
    k_rows: usize,
}

impl Cka {
    /// The fraction of Q/K rows read from a model: `row_fraction`, shrunk so the reads fit
    /// in `max_qk_bytes`.
    pub fn row_fraction_for(&self, model: &Model) -> f64 {
        let bytes: u64 = [Family::AttnQ, Family::AttnK]
            .iter()
            .flat_map(|f| projections_of(model, *f).into_values())
            .map(|p| p.bytes())
            .sum();
        let f = self.params.row_fraction;
        let f = if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            1.0
        };
        if bytes == 0 || (bytes as f64) * f <= self.params.max_qk_bytes as f64 {
            f
        } else {
            self.params.max_qk_bytes as f64 / bytes as f64
        }
    }

    fn rows_of(&self, t: &Proj, key: &str, f: f64) -> (Sample, usize) {
        let (rows, cols) = (t.rows(), t.cols);
        let windows = if f >= 1.0 || !f.is_finite() {
            vec![(0, rows)]
        } else {
            let block = self.params.row_block.max(1);
            let want = ((rows as f64 * f.max(0.0)).ceil() as u64).max(1);
            sampling::windows(key, self.params.seed, rows, block, want.div_ceil(block))
        };
        let n = sampling::covered(&windows) as usize;
        let elements: Vec<(u64, u64)> = windows
            .into_iter()
            .map(|(s, l)| (s * cols, l * cols))
            .collect();
        (t.sample(&elements), n)
    }

    fn qk<'a>(&self, model: &'a Model) -> Vec<QkPlan<'a>> {
        let (qs, mut ks) = (
            projections_of(model, Family::AttnQ),
            projections_of(model, Family::AttnK),
        );
        let f = self.row_fraction_for(model);
        qs.into_iter()
            .filter_map(|(l, q)| {
                let k = ks.remove(&l)?;
                let (q_sample, q_rows) = self.rows_of(&q, &format!("attn_q/L{l}"), f);
                let (k_sample, k_rows) = self.rows_of(&k, &format!("attn_k/L{l}"), f);
                Some(QkPlan {
                    layer: l,
                    q,
                    k,
                    q_sample,
                    k_sample,
                    q_rows,
                    k_rows,
                })
            })
            .collect()
    }
}

/// Q and K of every planned layer as views into the fetched data. With `gains` (the canonical
/// form: [`canonical::gain_vectors`]), each layer carries its input-norm gain (folded in per
/// layer by [`cka::awm`], see [`super::canonical`]), and the form says whether every layer had
/// one.
fn qk_layers<'d>(
    data: &'d Data,
    m: usize,
    plans: &[QkPlan],
    gains: Option<&'d BTreeMap<u32, Vec<f32>>>,
) -> Result<(Vec<QkLayer<'d>>, Form)> {
    let mut forms = Vec::with_capacity(plans.len());
    let layers = plans
        .iter()
        .map(|p| {
            let cols = p.q.cols as usize;
            let gain = gains
                .and_then(|g| g.get(&p.layer))
                .map(Vec::as_slice)
                .filter(|g| g.len() == cols && p.k.cols as usize == cols);
            forms.push(if gain.is_some() {
                Form::NormGainsFolded
            } else {
                Form::Raw
            });
            Ok(QkLayer {
                q: MatRef::new(data.get(m, &p.q_sample)?, p.q_rows, cols)?,
                k: MatRef::new(data.get(m, &p.k_sample)?, p.k_rows, p.k.cols as usize)?,
                gain,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((layers, canonical::combine(forms)))
}

/// One projection, owned: a layer's matrix folded and re-expressed in the target's basis.
struct Owned {
    data: Vec<f32>,
    rows: usize,
    cols: usize,
}

/// The layers with gains folded and columns mapped by a Procrustes fit (`W·diag(g)·R`). Only
/// taken at widths up to `procrustes_max_width`, so the copies stay small.
fn mapped(layers: &[QkLayer], map: &Procrustes) -> Result<Vec<Owned>> {
    let mut out = Vec::with_capacity(layers.len() * 2);
    for l in layers {
        for w in [l.q, l.k] {
            let folded = match l.gain {
                Some(g) => std::borrow::Cow::Owned(canonical::fold_columns(w.data, w.cols, g)),
                None => std::borrow::Cow::Borrowed(w.data),
            };
            out.push(Owned {
                data: map.apply(MatRef::new(&folded, w.rows, w.cols)?)?,
                rows: w.rows,
                cols: map.d_target,
            });
        }
    }
    Ok(out)
}

fn views(owned: &[Owned]) -> Result<Vec<QkLayer<'_>>> {
    owned
        .chunks_exact(2)
        .map(|qk| {
            Ok(QkLayer {
                q: MatRef::new(&qk[0].data, qk[0].rows, qk[0].cols)?,
                k: MatRef::new(&qk[1].data, qk[1].rows, qk[1].cols)?,
                gain: None,
            })
        })
        .collect()
}

/// Both alignments fitted on the even-ranked tokens and judged on the odd ones.
struct Choice {
    fit_lap: f64,
    fit_procrustes: f64,
    /// Refitted on every token, when it decided.
    procrustes: Option<Procrustes>,
}

fn choose_alignment(ea: MatRef, eb: MatRef, lap_cap: usize, margin: f64) -> Result<Option<Choice>> {
    let n = ea.rows;
    if n < 16 {
        return Ok(None);
    }
    let pick = |m: MatRef, rows: &[usize]| -> Vec<f32> {
        rows.iter()
            .flat_map(|&r| m.data[r * m.cols..(r + 1) * m.cols].iter().copied())
            .collect()
    };
    let fit: Vec<usize> = (0..n).step_by(2).collect();
    let eval: Vec<usize> = (1..n).step_by(2).collect();
    let (fa, fb) = (pick(ea, &fit), pick(eb, &fit));
    let (va, vb) = (pick(ea, &eval), pick(eb, &eval));
    let (fa, fb) = (
        MatRef::new(&fa, fit.len(), ea.cols)?,
        MatRef::new(&fb, fit.len(), eb.cols)?,
    );
    let (va, vb) = (
        MatRef::new(&va, eval.len(), ea.cols)?,
        MatRef::new(&vb, eval.len(), eb.cols)?,
    );
    // the base side (the wider model) is mapped onto the target's basis
    let held_out = |base: Side, mapped: Vec<f32>, d: usize| -> Result<f64> {
        let mapped = MatRef::new(&mapped, eval.len(), d)?;
        procrustes::mean_row_cosine(mapped, if base == Side::A { vb } else { va })
    };
    let lap = cka::align_hidden(fa, fb, lap_cap)?;
    let base_rows = |s: Side| if s == Side::A { va } else { vb };
    let fit_lap = held_out(lap.base, lap.apply(base_rows(lap.base))?, lap.d_target)?;
    let pro = procrustes::align_hidden_procrustes(fa, fb)?;
    let fit_procrustes = held_out(pro.base, pro.apply(base_rows(pro.base))?, pro.d_target)?;
    let wins =
        fit_procrustes > fit_lap + margin || (fit_procrustes.is_finite() && fit_lap.is_nan());
    Ok(Some(Choice {
        fit_lap,
        fit_procrustes,
        procrustes: if wins {
            Some(procrustes::align_hidden_procrustes(ea, eb)?)
        } else {
            None
        },
    }))
}

fn skipped(subjects: &Subjects, i: usize, j: usize, why: String) -> PairResult {
    PairResult {
        pair: subjects.pair_label(i, j),
        primary: Subjects::is_primary(i, j),
        status: format!("skipped: {why}"),
        alignment: String::new(),
        alignment_decided_by: String::new(),
        held_out_fit_lap: f64::NAN,
        held_out_fit_procrustes: f64::NAN,
        qk_row_fraction: [f64::NAN; 2],
        canonical: None,
        score_awm: f64::NAN,
        score_awm_assigned: f64::NAN,
        base: None,
        d_base: 0,
        d_target: 0,
        shared_tokens: 0,
        tokens_used: 0,
        alignment_mean_abs_cos: f64::NAN,
        alignment_identity_fraction: f64::NAN,
        lap: None,
        pairing: None,
        layers_a: 0,
        layers_b: 0,
        layers_matched: 0,
        score_q: f64::NAN,
        score_k: f64::NAN,
        score: f64::NAN,
        score_assigned: f64::NAN,
        assigned_off_diagonal: 0,
        z_vs_controls: None,
        z_awm_constants: f64::NAN,
    }
}

impl Experiment for Cka {
    fn id(&self) -> &'static str {
        "e8"
    }

    fn plan(&self, subjects: &Subjects, plan: &mut Plan) {
        let p = &self.params;
        for (i, j) in subjects.pairs() {
            if let Ok(rows) = pair_rows(subjects, &self.vocabs, i, j, p.vocab_rows, p.seed) {
                plan.add(i, rows.a);
                plan.add(j, rows.b);
            }
        }
        for m in 0..subjects.models.len() {
            let model = subjects.models[m].model;
            for q in self.qk(model) {
                plan.add(m, q.q_sample);
                plan.add(m, q.k_sample);
            }
            canonical::plan_gains(model, m, Family::AttnQ, plan);
        }
    }

    fn run(&self, subjects: &Subjects, data: &Data) -> Result<Output> {
        let p = &self.params;
        let mut pairs = Vec::new();
        let mut layers = Vec::new();
        for (i, j) in subjects.pairs() {
            let (pa, pb) = (
                self.qk(subjects.models[i].model),
                self.qk(subjects.models[j].model),
            );
            if pa.is_empty() || pb.is_empty() {
                pairs.push(skipped(subjects, i, j, "no Q/K projections".into()));
                continue;
            }
            let (wa, wb) = (pa[0].q.cols as usize, pb[0].q.cols as usize);
            let (align, how, shared, used, choice) =
                match pair_rows(subjects, &self.vocabs, i, j, p.vocab_rows, p.seed) {
                    Ok(rows) if rows.cols_a == wa && rows.cols_b == wb => {
                        let n = rows.tokens.len();
                        let ea = MatRef::new(data.get(i, &rows.a)?, n, rows.cols_a)?;
                        let eb = MatRef::new(data.get(j, &rows.b)?, n, rows.cols_b)?;
                        let choice = if p.procrustes && wa.max(wb) <= p.procrustes_max_width {
                            choose_alignment(ea, eb, p.lap_cap, p.procrustes_margin)?
                        } else {
                            None
                        };
                        (
                            cka::align_hidden(ea, eb, p.lap_cap)?,
                            "embedding_lap",
                            rows.shared,
                            n,
                            choice,
                        )
                    }
                    Ok(_) | Err(_) if wa == wb => {
                        (HiddenAlignment::identity(wa), "identity", 0, 0, None)
                    }
                    Ok(_) => {
                        pairs.push(skipped(
                            subjects,
                            i,
                            j,
                            "embedding width differs from the Q/K input width".into(),
                        ));
                        continue;
                    }
                    Err(e) => {
                        pairs.push(skipped(subjects, i, j, e));
                        continue;
                    }
                };
            let opts = AwmOptions {
                assignment_dims: p.assignment_dims,
                always_assign: p.always_assign,
            };
            // AWM as published: raw matrices, signed permutation
            let (ma, mb) = (subjects.models[i].model, subjects.models[j].model);
            let (la, _) = qk_layers(data, i, &pa, None)?;
            let (lb, _) = qk_layers(data, j, &pb, None)?;
            let published = cka::awm(&la, &lb, &align, &opts);
            // the project's score: canonical matrices, the alignment that fits held-out rows best
            let gains_a = canonical::gain_vectors(data, i, ma, Family::AttnQ);
            let gains_b = canonical::gain_vectors(data, j, mb, Family::AttnQ);
            let (mut ca, form_a) = qk_layers(data, i, &pa, Some(&gains_a))?;
            let (mut cb, form_b) = qk_layers(data, j, &pb, Some(&gains_b))?;
            let use_procrustes = choice.as_ref().is_some_and(|c| c.procrustes.is_some());
            let owned;
            let chosen = if let Some(Choice {
                procrustes: Some(map),
                ..
            }) = &choice
            {
                let base = if map.base == Side::A {
                    &mut ca
                } else {
                    &mut cb
                };
                owned = mapped(base, map)?;
                *base = views(&owned)?;
                HiddenAlignment::identity(map.d_target)
            } else {
                align.clone()
            };
            let (va, vb) = (&ca, &cb);
            let result = cka::awm(va, vb, &chosen, &opts);
            let (r, published) = match (result, published) {
                (Ok(r), Ok(pbl)) => (r, pbl),
                (Err(e), _) | (_, Err(e)) => {
                    pairs.push(skipped(subjects, i, j, format!("{e:#}")));
                    continue;
                }
            };
            let identity = align
                .target_to_base
                .iter()
                .zip(&align.sign)
                .enumerate()
                .filter(|(t, (b, s))| *t == **b && **s > 0.0)
                .count() as f64
                / align.d_target.max(1) as f64;
            for l in &r.layers {
                layers.push(LayerRow {
                    pair: subjects.pair_label(i, j),
                    primary: Subjects::is_primary(i, j),
                    layer_a: pa[l.layer_a].layer,
                    layer_b: pb[l.layer_b].layer,
                    q: round9(l.q),
                    k: round9(l.k),
                });
            }
            let assigned = |r: &cka::AwmResult| r.assigned.as_ref().map_or(f64::NAN, |x| x.score);
            pairs.push(PairResult {
                pair: subjects.pair_label(i, j),
                primary: Subjects::is_primary(i, j),
                status: "ok".into(),
                alignment: if use_procrustes {
                    "embedding_procrustes".into()
                } else {
                    how.into()
                },
                alignment_decided_by: if choice.is_some() {
                    "held_out_fit"
                } else {
                    "only_option"
                }
                .into(),
                held_out_fit_lap: round9(choice.as_ref().map_or(f64::NAN, |c| c.fit_lap)),
                held_out_fit_procrustes: round9(
                    choice.as_ref().map_or(f64::NAN, |c| c.fit_procrustes),
                ),
                qk_row_fraction: [
                    round9(self.row_fraction_for(subjects.models[i].model)),
                    round9(self.row_fraction_for(subjects.models[j].model)),
                ],
                canonical: Some(canonical::combine([form_a, form_b])),
                base: Some(align.base),
                d_base: align.d_base,
                d_target: align.d_target,
                shared_tokens: shared,
                tokens_used: used,
                alignment_mean_abs_cos: round9(align.mean_abs_cos),
                alignment_identity_fraction: round9(identity),
                lap: (how == "embedding_lap").then_some(align.method),
                pairing: Some(r.pairing),
                layers_a: pa.len(),
                layers_b: pb.len(),
                layers_matched: r.layers.len(),
                score_q: round9(r.score_q),
                score_k: round9(r.score_k),
                score: round9(r.score),
                score_assigned: round9(assigned(&r)),
                assigned_off_diagonal: r.assigned.as_ref().map_or(0, |x| x.off_diagonal),
                score_awm: round9(published.score),
                score_awm_assigned: round9(assigned(&published)),
                z_vs_controls: None,
                z_awm_constants: round9(cka::awm_constant_z(published.score)),
            });
        }
        // nulls: the control pairs of this run
        let controls: Vec<(usize, f64)> = pairs
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.primary && r.score.is_finite())
            .map(|(k, r)| (k, r.score))
            .collect();
        for (k, r) in pairs.iter_mut().enumerate() {
            let null: Vec<f64> = controls
                .iter()
                .filter(|(c, _)| *c != k)
                .map(|(_, s)| *s)
                .collect();
            if r.score.is_finite() {
                r.z_vs_controls = cka::z_against(r.score, &null).map(round9);
            }
        }
        let tables = vec![summary_table(&pairs), layers_table(&layers)];
        Output::new(
            "e8",
            &Result8 {
                params: self.params.clone(),
                pairs,
                layers,
            },
            tables,
        )
    }
}

fn summary_table(rows: &[PairResult]) -> Table {
    let mut t = Table::new(
        "e8_cka",
        &[
            "pair",
            "primary",
            "status",
            "alignment",
            "held_out_fit_lap",
            "held_out_fit_procrustes",
            "canonical",
            "d_base",
            "d_target",
            "shared_tokens",
            "tokens_used",
            "alignment_mean_abs_cos",
            "pairing",
            "layers_matched",
            "score_q",
            "score_k",
            "score",
            "score_assigned",
            "score_awm",
            "score_awm_assigned",
            "z_vs_controls",
            "z_awm_constants",
        ],
    );
    for r in rows {
        t.rows.push(vec![
            r.pair.clone(),
            r.primary.to_string(),
            r.status.clone(),
            r.alignment.clone(),
            fmt(r.held_out_fit_lap),
            fmt(r.held_out_fit_procrustes),
            super::e6_spectra::form_name(r.canonical),
            r.d_base.to_string(),
            r.d_target.to_string(),
            r.shared_tokens.to_string(),
            r.tokens_used.to_string(),
            fmt(r.alignment_mean_abs_cos),
            r.pairing
                .map(|p| format!("{p:?}").to_lowercase())
                .unwrap_or_default(),
            r.layers_matched.to_string(),
            fmt(r.score_q),
            fmt(r.score_k),
            fmt(r.score),
            fmt(r.score_assigned),
            fmt(r.score_awm),
            fmt(r.score_awm_assigned),
            r.z_vs_controls.map(fmt).unwrap_or_default(),
            fmt(r.z_awm_constants),
        ]);
    }
    t
}

fn layers_table(rows: &[LayerRow]) -> Table {
    let mut t = Table::new(
        "e8_cka_layers",
        &["pair", "primary", "layer_a", "layer_b", "q_cka", "k_cka"],
    );
    for r in rows {
        t.rows.push(vec![
            r.pair.clone(),
            r.primary.to_string(),
            r.layer_a.to_string(),
            r.layer_b.to_string(),
            fmt(r.q),
            fmt(r.k),
        ]);
    }
    t
}
