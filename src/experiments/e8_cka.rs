//! E8 CKA: the AWM weight-matrix fingerprint (see [`crate::awm`]). Hidden dimensions are lined
//! up by a linear assignment on embedding columns over a seeded sample of shared tokens (rows
//! read by Range), then debiased linear CKA compares Q and K projections per layer, layers
//! paired by index or by a Hungarian assignment when depths differ.
//!
//! Obfuscation: before the Grams, Q and K are put in canonical form (input-norm gains folded
//! into their columns, [`super::canonical`]), so channel rescaling and gain folding change
//! nothing. Hidden alignments are fitted on the even half of the shared tokens: AWM's signed
//! permutation and an orthogonal Procrustes map ([`crate::procrustes`], which undoes residual
//! rotations and, rectangular, slicing); equally wide models also have the identity (no
//! re-alignment), which fits nothing. The one carrying the odd half's embedding rows onto each
//! other best decides (a fitted map must beat a simpler one by [`Params::identity_margin`] or
//! [`Params::procrustes_margin`], since it also fits noise), is refitted on all tokens and gives
//! `score`/`score_assigned`. The identity's scores are reported whenever it applies
//! (`score_identity*`): a shared vocabulary with retrained embeddings makes every fitted map
//! random while the layers still match as stored. The permutation-only score on raw matrices,
//! AWM as published, stays as `score_awm*`.
//!
//! An alignment is fitted only on at least [`min_alignment_tokens`] shared tokens; below it,
//! equally wide models are compared as stored (AWM's fallback without a vocabulary) and other
//! pairs are skipped (`skipped: only N shared tokens …`).
//!
//! Every score is reported beside a null measured in the same run: the control pairs
//! (independent by choice of the auditor). AWM's own z against its hard-coded constants is
//! reported too, labelled as such. `row_fraction` < 1 reads a seeded subset of Q/K rows (in
//! blocks of `row_block`): CKA is over the input dimension, so any rows are valid features,
//! but the same rows must be read in A and B (one fraction and one set of windows per pair).
//!
//! Files: this one plans the reads and runs the pairs; [`super::e8_params`] holds the
//! parameters; [`super::e8_align`] chooses the hidden alignment; [`super::e8_tables`] derives
//! the tables from the result.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::canonical::{self, Form};
use super::e8_align::{Choice, Chosen, choose_alignment, mapped, views};
use super::e8_params::Params;
use super::roles::{Proj, projections_of};
use super::tokens::{VocabCache, min_alignment_tokens, pair_rows};
use super::{Data, Experiment, Output, Plan, Sample, Subjects, round9};
use crate::arch::Family;
use crate::awm;
use crate::awm::{AwmOptions, LayerPairing, QkLayer};
use crate::cka::MatRef;
use crate::hidden_alignment;
use crate::hidden_alignment::{HiddenAlignment, LapMethod, Side};
use crate::model::Model;
use crate::sampling;
use crate::stats;

/// E8, Q/K CKA fingerprint (AWM): hidden alignment from the embeddings, then per-layer CKA of Q and K.
#[derive(Default)]
pub struct Cka {
    /// Its parameters.
    pub params: Params,
    vocabs: VocabCache,
}

impl Cka {
    /// E8 with `params`.
    pub fn new(params: Params) -> Cka {
        Cka {
            params,
            vocabs: VocabCache::default(),
        }
    }
}

/// One matched layer pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerRow {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// Layer key in A.
    pub layer_a: u32,
    /// Layer key in B.
    pub layer_b: u32,
    /// Linear CKA of the aligned Q projections, 0–1.
    pub q: f64,
    /// Linear CKA of the aligned K projections, 0–1.
    pub k: f64,
}

/// The fingerprint of one pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairResult {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// `ok`, or `skipped: <reason>` (e.g. `skipped: non-finite values in <tensor>`: a NaN or
    /// infinity in a Q/K row read or an embedding row makes every score NaN).
    pub status: String,
    /// How hidden dimensions were lined up for `score*`: `identity` (as stored: it fitted the
    /// held-out tokens as well as the others, or there was no usable vocabulary and the widths
    /// are equal, AWM's fallback), `embedding_lap` or `embedding_procrustes`.
    pub alignment: String,
    /// What chose it: `held_out_fit` (both fitted on half the tokens, judged on the other
    /// half) or `only_option`.
    pub alignment_decided_by: String,
    /// Mean row cosine of the held-out embedding rows after each alignment (the identity:
    /// as stored, equal widths only).
    pub held_out_fit_identity: f64,
    /// The same after the permutation-and-sign alignment (NaN when not fitted).
    pub held_out_fit_lap: f64,
    /// The same after the Procrustes alignment (NaN when not tried).
    pub held_out_fit_procrustes: f64,
    /// Fraction of Q/K rows read, the same in A and B (below `row_fraction` when the byte
    /// budget `max_qk_bytes` of either model cut it): the same rows of both are read.
    pub qk_row_fraction: [f64; 2],
    /// Canonical form of the Q/K matrices behind `score*` (see [`super::canonical`]).
    pub canonical: Option<Form>,
    /// The wider model, whose hidden basis the other is aligned to (`None` when skipped).
    pub base: Option<Side>,
    /// Hidden width of the base model.
    pub d_base: usize,
    /// Hidden width of the target model.
    pub d_target: usize,
    /// Tokens the two vocabularies share.
    pub shared_tokens: usize,
    /// Shared tokens whose embedding rows were used.
    pub tokens_used: usize,
    /// Mean |cos| of matched embedding columns.
    pub alignment_mean_abs_cos: f64,
    /// Share of target dims matched to the same index with a + sign (1 for unpermuted copies).
    pub alignment_identity_fraction: f64,
    /// How the permutation was solved (exact or greedy), when one was fitted.
    pub lap: Option<LapMethod>,
    /// How layers were paired for `score` (same index, or by assignment when depths differ).
    pub pairing: Option<LayerPairing>,
    /// Layers of A with Q and K.
    pub layers_a: usize,
    /// Layers of B with Q and K.
    pub layers_b: usize,
    /// Layer pairs scored.
    pub layers_matched: usize,
    /// Mean Q CKA over the paired layers, 0–1.
    pub score_q: f64,
    /// Mean K CKA over the paired layers, 0–1.
    pub score_k: f64,
    /// AWM's `Wq_Wk`: mean of the Q and K scores.
    pub score: f64,
    /// Score with layers paired by assignment even at equal depth (catches permuted layers);
    /// equals `score` when depths differ.
    pub score_assigned: f64,
    /// Assigned layer pairs off the diagonal.
    pub assigned_off_diagonal: usize,
    /// `score` and `score_assigned` with no re-alignment (canonical matrices as stored, equal
    /// widths only; NaN otherwise): right when the vocabulary is shared but the embeddings
    /// were retrained, where any alignment fitted on embeddings is random.
    pub score_identity: f64,
    /// `score_identity` with layers paired by assignment.
    pub score_identity_assigned: f64,
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

/// E8's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Result8 {
    /// The parameters it ran with.
    pub params: Params,
    /// Each pair's fingerprint, A~B first.
    pub pairs: Vec<PairResult>,
    /// Every matched layer pair of every pair.
    pub layers: Vec<LayerRow>,
}

/// Q and K of one layer with the rows planned for each.
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

    /// Rows read of one projection family (`key`) in both models of a pair: `None` reads
    /// every row; otherwise seeded windows over the first `rows` rows (the fewest any layer of
    /// either model has), the same for every layer of A and of B. CKA compares `WᵀW` of the
    /// rows read, so only rows read in both models carry what B inherited: windows drawn per
    /// model (per byte total, per layer) shared almost none when depth, dtype or size differed.
    fn pair_windows(&self, key: &str, rows: u64, f: f64) -> Option<Vec<(u64, u64)>> {
        if f >= 1.0 || !f.is_finite() {
            return None;
        }
        let block = self.params.row_block.max(1);
        let want = ((rows as f64 * f.max(0.0)).ceil() as u64).max(1);
        Some(sampling::windows(
            key,
            self.params.seed,
            rows,
            block,
            want.div_ceil(block),
        ))
    }

    /// The Q/K plans of a pair and the one row fraction both models are read at: the smaller
    /// of the two [`Self::row_fraction_for`], so each stays within its byte budget.
    fn qk_pair<'a>(&self, a: &'a Model, b: &'a Model) -> (Vec<QkPlan<'a>>, Vec<QkPlan<'a>>, f64) {
        let (la, lb) = (projections(a), projections(b));
        let f = self.row_fraction_for(a).min(self.row_fraction_for(b));
        let fewest = |k: usize| {
            la.iter()
                .chain(&lb)
                .map(|x| if k == 0 { &x.1 } else { &x.2 }.rows())
                .min()
                .unwrap_or(0)
        };
        let (wq, wk) = (
            self.pair_windows("attn_q", fewest(0), f),
            self.pair_windows("attn_k", fewest(1), f),
        );
        let plans = |layers: Vec<(u32, Proj<'a>, Proj<'a>)>| -> Vec<QkPlan<'a>> {
            layers
                .into_iter()
                .map(|(layer, q, k)| {
                    let (q_sample, q_rows) = rows_sample(&q, wq.as_deref());
                    let (k_sample, k_rows) = rows_sample(&k, wk.as_deref());
                    QkPlan {
                        layer,
                        q,
                        k,
                        q_sample,
                        k_sample,
                        q_rows,
                        k_rows,
                    }
                })
                .collect()
        };
        (plans(la), plans(lb), f)
    }
}

/// Layers with a Q and a K matrix (their own tensors, or rows of a fused q/k/v tensor:
/// [`projections_of`]).
fn projections(model: &Model) -> Vec<(u32, Proj<'_>, Proj<'_>)> {
    let (qs, mut ks) = (
        projections_of(model, Family::AttnQ),
        projections_of(model, Family::AttnK),
    );
    qs.into_iter()
        .filter_map(|(l, q)| {
            let k = ks.remove(&l)?;
            Some((l, q, k))
        })
        .collect()
}

/// The rows of `t` in `windows` (all rows when `None`) as a sample, and how many.
fn rows_sample(t: &Proj, windows: Option<&[(u64, u64)]>) -> (Sample, usize) {
    let (rows, cols) = (t.rows(), t.cols);
    let windows = windows.map_or_else(|| vec![(0, rows)], <[_]>::to_vec);
    let n = sampling::covered(&windows) as usize;
    let elements: Vec<(u64, u64)> = windows
        .into_iter()
        .map(|(s, l)| (s * cols, l * cols))
        .collect();
    (t.sample(&elements), n)
}

/// Q and K of every planned layer as views into the fetched data. With `gains` (the canonical
/// form: [`canonical::gain_vectors`]), each layer carries its input-norm gain (folded in per
/// layer by [`awm::awm`], see [`super::canonical`]), and the form says whether every layer had
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

/// The first tensor among `samples` whose read values include a NaN or an infinity: CKA of
/// such a matrix is NaN, which no threshold catches, so the pair is skipped by name instead.
fn non_finite<'s>(
    data: &Data,
    m: usize,
    samples: impl IntoIterator<Item = &'s Sample>,
) -> Result<Option<String>> {
    for s in samples {
        if data.get(m, s)?.iter().any(|v| !v.is_finite()) {
            return Ok(Some(s.tensor.clone()));
        }
    }
    Ok(None)
}

fn skipped(subjects: &Subjects, i: usize, j: usize, why: String) -> PairResult {
    PairResult {
        pair: subjects.pair_label(i, j),
        primary: Subjects::is_primary(i, j),
        status: format!("skipped: {why}"),
        alignment: String::new(),
        alignment_decided_by: String::new(),
        held_out_fit_identity: f64::NAN,
        held_out_fit_lap: f64::NAN,
        held_out_fit_procrustes: f64::NAN,
        qk_row_fraction: [f64::NAN; 2],
        canonical: None,
        score_awm: f64::NAN,
        score_awm_assigned: f64::NAN,
        score_identity: f64::NAN,
        score_identity_assigned: f64::NAN,
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
        // a model in several pairs (controls) is read at the union of its pairs' rows
        for (i, j) in subjects.pairs() {
            let (pa, pb, _) = self.qk_pair(subjects.models[i].model, subjects.models[j].model);
            for (m, plans) in [(i, pa), (j, pb)] {
                for q in plans {
                    plan.add(m, q.q_sample);
                    plan.add(m, q.k_sample);
                }
            }
        }
        for m in 0..subjects.models.len() {
            canonical::plan_gains(subjects.models[m].model, m, Family::AttnQ, plan);
        }
    }

    fn run(&self, subjects: &Subjects, data: &Data) -> Result<Output> {
        let mut pairs = Vec::new();
        let mut layers = Vec::new();
        for (i, j) in subjects.pairs() {
            pairs.push(self.pair(subjects, data, (i, j), &mut layers)?);
        }
        z_vs_controls(&mut pairs);
        Output::new(
            "e8",
            &Result8 {
                params: self.params.clone(),
                pairs,
                layers,
            },
        )
    }
}

/// The hidden alignment a pair is scored under, and the tokens behind it.
struct Aligned {
    align: HiddenAlignment,
    how: &'static str,
    shared: usize,
    used: usize,
    choice: Option<Choice>,
}

/// A pair's scores: under the chosen alignment, as stored, and AWM's as published.
struct Scored {
    r: awm::AwmResult,
    published: awm::AwmResult,
    as_stored: Option<Result<awm::AwmResult>>,
    kind: Chosen,
    form_a: Form,
    form_b: Form,
}

impl Cka {
    /// One pair's fingerprint, or why it was skipped; its matched layers go to `layers`.
    fn pair(
        &self,
        subjects: &Subjects,
        data: &Data,
        (i, j): (usize, usize),
        layers: &mut Vec<LayerRow>,
    ) -> Result<PairResult> {
        let (pa, pb, row_fraction) =
            self.qk_pair(subjects.models[i].model, subjects.models[j].model);
        if pa.is_empty() || pb.is_empty() {
            return Ok(skipped(subjects, i, j, "no Q/K projections".into()));
        }
        let bad = match non_finite(data, i, pa.iter().flat_map(|p| [&p.q_sample, &p.k_sample]))? {
            Some(t) => Some(t),
            None => non_finite(data, j, pb.iter().flat_map(|p| [&p.q_sample, &p.k_sample]))?,
        };
        if let Some(t) = bad {
            return Ok(skipped(subjects, i, j, format!("non-finite values in {t}")));
        }
        let (wa, wb) = (pa[0].q.cols as usize, pb[0].q.cols as usize);
        let aligned = match self.alignment(subjects, data, (i, j), (wa, wb))? {
            Ok(a) => a,
            Err(skip) => return Ok(skip),
        };
        let scored = match self.scores(subjects, data, (i, j), (&pa, &pb), (wa, wb), &aligned)? {
            Ok(s) => s,
            Err(skip) => return Ok(skip),
        };
        Ok(pair_result(
            subjects,
            (i, j),
            (&pa, &pb),
            row_fraction,
            aligned,
            scored,
            layers,
        ))
    }

    /// The hidden alignment of a pair: fitted on the shared tokens' embedding rows, or the
    /// identity (AWM's fallback) for equal widths with too few tokens; else why it is skipped.
    fn alignment(
        &self,
        subjects: &Subjects,
        data: &Data,
        (i, j): (usize, usize),
        (wa, wb): (usize, usize),
    ) -> Result<std::result::Result<Aligned, PairResult>> {
        let p = &self.params;
        let need = min_alignment_tokens(wa.max(wb));
        let (align, how, shared, used, choice) =
            match pair_rows(subjects, &self.vocabs, i, j, p.vocab_rows, p.seed) {
                Ok(rows) if rows.cols_a == wa && rows.cols_b == wb && rows.shared >= need => {
                    let n = rows.tokens.len();
                    let bad = match non_finite(data, i, [&rows.a])? {
                        Some(t) => Some(t),
                        None => non_finite(data, j, [&rows.b])?,
                    };
                    if let Some(t) = bad {
                        let why = format!("non-finite values in {t}");
                        return Ok(Err(skipped(subjects, i, j, why)));
                    }
                    let ea = MatRef::new(data.get(i, &rows.a)?, n, rows.cols_a)?;
                    let eb = MatRef::new(data.get(j, &rows.b)?, n, rows.cols_b)?;
                    let choice = choose_alignment(ea, eb, p)?;
                    (
                        hidden_alignment::align_hidden(ea, eb, p.lap_cap)?,
                        "embedding_lap",
                        rows.shared,
                        n,
                        choice,
                    )
                }
                // too few tokens to fit an alignment: equal widths keep AWM's fallback
                Ok(rows) if wa == wb => (
                    HiddenAlignment::identity(wa),
                    "identity",
                    rows.shared,
                    0,
                    None,
                ),
                Err(_) if wa == wb => (HiddenAlignment::identity(wa), "identity", 0, 0, None),
                Ok(rows) if rows.cols_a == wa && rows.cols_b == wb => {
                    let why = format!(
                        "only {} shared tokens (an alignment of {} dimensions needs {need})",
                        rows.shared,
                        wa.max(wb)
                    );
                    return Ok(Err(skipped(subjects, i, j, why)));
                }
                Ok(_) => {
                    return Ok(Err(skipped(
                        subjects,
                        i,
                        j,
                        "embedding width differs from the Q/K input width".into(),
                    )));
                }
                Err(e) => {
                    return Ok(Err(skipped(subjects, i, j, e)));
                }
            };
        Ok(Ok(Aligned {
            align,
            how,
            shared,
            used,
            choice,
        }))
    }

    /// AWM as published (raw matrices, signed permutation), the project's score (canonical
    /// matrices, the alignment chosen) and the identity's; else why the pair is skipped.
    fn scores(
        &self,
        subjects: &Subjects,
        data: &Data,
        (i, j): (usize, usize),
        (pa, pb): (&[QkPlan], &[QkPlan]),
        (wa, wb): (usize, usize),
        aligned: &Aligned,
    ) -> Result<std::result::Result<Scored, PairResult>> {
        let p = &self.params;
        let (align, how, choice) = (&aligned.align, aligned.how, &aligned.choice);
        let opts = AwmOptions {
            assignment_dims: p.assignment_dims,
            always_assign: p.always_assign,
        };
        // AWM as published: raw matrices, signed permutation
        let (ma, mb) = (subjects.models[i].model, subjects.models[j].model);
        let (la, _) = qk_layers(data, i, pa, None)?;
        let (lb, _) = qk_layers(data, j, pb, None)?;
        let published = awm::awm(&la, &lb, align, &opts);
        // the project's score: canonical matrices, the alignment that fits held-out rows best
        let gains_a = canonical::gain_vectors(data, i, ma, Family::AttnQ);
        let gains_b = canonical::gain_vectors(data, j, mb, Family::AttnQ);
        let (mut ca, form_a) = qk_layers(data, i, pa, Some(&gains_a))?;
        let (mut cb, form_b) = qk_layers(data, j, pb, Some(&gains_b))?;
        let kind = choice.as_ref().map_or(
            if how == "identity" {
                Chosen::Identity
            } else {
                Chosen::Lap
            },
            |c| c.chosen,
        );
        // the identity is scored too whenever it applies, on the matrices before any map
        let as_stored = (wa == wb && kind != Chosen::Identity)
            .then(|| awm::awm(&ca, &cb, &HiddenAlignment::identity(wa), &opts));
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
        } else if kind == Chosen::Identity {
            HiddenAlignment::identity(wa)
        } else {
            align.clone()
        };
        let (va, vb) = (&ca, &cb);
        let result = awm::awm(va, vb, &chosen, &opts);
        let (r, published) = match (result, published) {
            (Ok(r), Ok(pbl)) => (r, pbl),
            (Err(e), _) | (_, Err(e)) => {
                return Ok(Err(skipped(subjects, i, j, format!("{e:#}"))));
            }
        };
        Ok(Ok(Scored {
            r,
            published,
            as_stored,
            kind,
            form_a,
            form_b,
        }))
    }
}

/// The result row of a scored pair; its matched layers go to `layers`.
fn pair_result(
    subjects: &Subjects,
    (i, j): (usize, usize),
    (pa, pb): (&[QkPlan], &[QkPlan]),
    row_fraction: f64,
    aligned: Aligned,
    scored: Scored,
    layers: &mut Vec<LayerRow>,
) -> PairResult {
    let Aligned {
        align,
        how,
        shared,
        used,
        choice,
    } = aligned;
    let Scored {
        r,
        published,
        as_stored,
        kind,
        form_a,
        form_b,
    } = scored;
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
    let assigned = |r: &awm::AwmResult| r.assigned.as_ref().map_or(f64::NAN, |x| x.score);
    let (score_identity, score_identity_assigned) = match &as_stored {
        _ if kind == Chosen::Identity => (r.score, assigned(&r)),
        Some(Ok(x)) => (x.score, assigned(x)),
        _ => (f64::NAN, f64::NAN),
    };
    PairResult {
        pair: subjects.pair_label(i, j),
        primary: Subjects::is_primary(i, j),
        status: "ok".into(),
        alignment: kind.name().into(),
        alignment_decided_by: if choice.is_some() {
            "held_out_fit"
        } else {
            "only_option"
        }
        .into(),
        held_out_fit_identity: round9(
            choice
                .as_ref()
                .and_then(|c| c.fit_identity)
                .unwrap_or(f64::NAN),
        ),
        held_out_fit_lap: round9(choice.as_ref().map_or(f64::NAN, |c| c.fit_lap)),
        held_out_fit_procrustes: round9(
            choice
                .as_ref()
                .and_then(|c| c.fit_procrustes)
                .unwrap_or(f64::NAN),
        ),
        qk_row_fraction: [round9(row_fraction); 2],
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
        score_identity: round9(score_identity),
        score_identity_assigned: round9(score_identity_assigned),
        score_awm: round9(published.score),
        score_awm_assigned: round9(assigned(&published)),
        z_vs_controls: None,
        z_awm_constants: round9(awm::awm_constant_z(published.score)),
    }
}

/// z of each pair's score against the control pairs of this run (itself left out).
fn z_vs_controls(pairs: &mut [PairResult]) {
    let values: Vec<f64> = pairs.iter().map(|r| r.score).collect();
    let is_control: Vec<bool> = pairs.iter().map(|r| !r.primary).collect();
    let zs = stats::z_against_other_controls(&values, &is_control);
    for (r, z) in pairs.iter_mut().zip(zs) {
        if r.score.is_finite() {
            r.z_vs_controls = z.map(round9);
        }
    }
}
