//! E8 CKA: the AWM weight-matrix fingerprint (see [`crate::cka`]). Hidden dimensions are lined
//! up by a linear assignment on embedding columns over a seeded sample of shared tokens (rows
//! read by Range), then debiased linear CKA compares Q and K projections per layer, layers
//! paired by index or by a Hungarian assignment when depths differ.
//!
//! Every score is reported beside a null measured in the same run: the control pairs
//! (independent by choice of the auditor). AWM's own z against its hard-coded constants is
//! reported too, labelled as such. `row_fraction` < 1 reads a seeded subset of Q/K rows (in
//! blocks of `row_block`): CKA is over the input dimension, so any rows are valid features.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::roles::layers_of;
use super::tokens::{VocabCache, pair_rows};
use super::{Data, Experiment, Output, Plan, Sample, Subjects, Table, fmt, round9};
use crate::arch::Family;
use crate::cka::{
    self, AwmOptions, DEFAULT_LAP_CAP, HiddenAlignment, LapMethod, LayerPairing, MatRef, QkLayer,
    Side,
};
use crate::model::{Model, TensorInfo};
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
    /// How hidden dimensions were lined up: `embedding_lap`, or `identity` (no usable
    /// vocabulary/embeddings and equal widths: AWM's fallback).
    pub alignment: String,
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

/// Q and K of one layer with the rows planned for each.
struct QkPlan<'a> {
    layer: u32,
    q: &'a TensorInfo,
    k: &'a TensorInfo,
    q_sample: Sample,
    k_sample: Sample,
    q_rows: usize,
    k_rows: usize,
}

impl Cka {
    fn rows_of(&self, t: &TensorInfo, key: &str) -> (Sample, usize) {
        let (rows, cols) = t.rows_cols();
        let f = self.params.row_fraction;
        let windows = if f >= 1.0 || !f.is_finite() {
            vec![(0, rows)]
        } else {
            let block = self.params.row_block.max(1);
            let want = ((rows as f64 * f.max(0.0)).ceil() as u64).max(1);
            sampling::windows(key, self.params.seed, rows, block, want.div_ceil(block))
        };
        let n = sampling::covered(&windows) as usize;
        (
            Sample {
                tensor: t.name.clone(),
                windows: windows
                    .into_iter()
                    .map(|(s, l)| (s * cols, l * cols))
                    .collect(),
            },
            n,
        )
    }

    fn qk<'a>(&self, model: &'a Model) -> Vec<QkPlan<'a>> {
        let (qs, ks) = (
            layers_of(model, Family::AttnQ),
            layers_of(model, Family::AttnK),
        );
        qs.iter()
            .filter(|(_, q)| q.shape.len() == 2)
            .filter_map(|(l, q)| {
                let k = ks.get(l).filter(|k| k.shape.len() == 2)?;
                let (q_sample, q_rows) = self.rows_of(q, &format!("attn_q/L{l}"));
                let (k_sample, k_rows) = self.rows_of(k, &format!("attn_k/L{l}"));
                Some(QkPlan {
                    layer: *l,
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

fn qk_layers<'d>(data: &'d Data, m: usize, plans: &[QkPlan]) -> Result<Vec<QkLayer<'d>>> {
    plans
        .iter()
        .map(|p| {
            Ok(QkLayer {
                q: MatRef::new(
                    data.get(m, &p.q_sample)?,
                    p.q_rows,
                    p.q.rows_cols().1 as usize,
                )?,
                k: MatRef::new(
                    data.get(m, &p.k_sample)?,
                    p.k_rows,
                    p.k.rows_cols().1 as usize,
                )?,
            })
        })
        .collect()
}

fn skipped(subjects: &Subjects, i: usize, j: usize, why: String) -> PairResult {
    PairResult {
        pair: subjects.pair_label(i, j),
        primary: Subjects::is_primary(i, j),
        status: format!("skipped: {why}"),
        alignment: String::new(),
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
            for q in self.qk(subjects.models[m].model) {
                plan.add(m, q.q_sample);
                plan.add(m, q.k_sample);
            }
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
            let (wa, wb) = (
                pa[0].q.rows_cols().1 as usize,
                pb[0].q.rows_cols().1 as usize,
            );
            let (align, how, shared, used) =
                match pair_rows(subjects, &self.vocabs, i, j, p.vocab_rows, p.seed) {
                    Ok(rows) if rows.cols_a == wa && rows.cols_b == wb => {
                        let n = rows.tokens.len();
                        let ea = MatRef::new(data.get(i, &rows.a)?, n, rows.cols_a)?;
                        let eb = MatRef::new(data.get(j, &rows.b)?, n, rows.cols_b)?;
                        (
                            cka::align_hidden(ea, eb, p.lap_cap)?,
                            "embedding_lap",
                            rows.shared,
                            n,
                        )
                    }
                    Ok(_) | Err(_) if wa == wb => (HiddenAlignment::identity(wa), "identity", 0, 0),
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
            let (la, lb) = (qk_layers(data, i, &pa)?, qk_layers(data, j, &pb)?);
            let opts = AwmOptions {
                assignment_dims: p.assignment_dims,
                always_assign: p.always_assign,
            };
            let r = match cka::awm(&la, &lb, &align, &opts) {
                Ok(r) => r,
                Err(e) => {
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
            pairs.push(PairResult {
                pair: subjects.pair_label(i, j),
                primary: Subjects::is_primary(i, j),
                status: "ok".into(),
                alignment: how.into(),
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
                score_assigned: round9(r.assigned.as_ref().map_or(f64::NAN, |x| x.score)),
                assigned_off_diagonal: r.assigned.as_ref().map_or(0, |x| x.off_diagonal),
                z_vs_controls: None,
                z_awm_constants: round9(cka::awm_constant_z(r.score)),
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
