//! E4 layer alignment: does layer i of B correspond to layer i of A, or to nothing in
//! particular? Layer×layer similarity per family, aligned by argmax, by assignment and by a
//! monotone alignment that tolerates inserted and removed layers, with a permutation-test
//! p-value against shuffled layer labels.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::roles::{Proj, projections_of};
use super::{
    Data, Experiment, Output, Plan, PlotMatrix, Sample, Subjects, Table, fmt, round_decimals,
    round9,
};
use crate::align::{self, Matrix, Statistic};
use crate::arch::{Family, stack_of_layer};
use crate::metrics::compare;
use crate::sampling;

/// E4's parameters (`[params.e4]`); every field has a default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Seed of the windows and the permutation test.
    pub seed: u64,
    /// Shuffles of B's layer order in the permutation test.
    pub permutations: usize,
    /// Tensor families aligned.
    pub families: Vec<Family>,
    /// Window size and count for projection matrices (norm vectors are read whole).
    pub window_elems: u64,
    /// Windows read per projection matrix.
    pub windows: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            seed: 0,
            permutations: align::DEFAULT_PERMUTATIONS,
            families: vec![
                Family::InputNorm,
                Family::PostAttentionNorm,
                Family::PostMlpNorm,
                Family::AttnK,
                Family::AttnV,
            ],
            window_elems: 16_384,
            windows: 2,
        }
    }
}

/// E4, layer alignment: does layer i of B correspond to layer i of A?
#[derive(Default)]
pub struct Alignment {
    /// Its parameters.
    pub params: Params,
}

/// One family, one metric, one pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FamilyAlignment {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// The tensor family.
    pub family: Family,
    /// `pearson` (centred) or `cosine` (raw).
    pub metric: String,
    /// A's layer keys (columns).
    pub layers_a: Vec<u32>,
    /// B's layer keys (rows).
    pub layers_b: Vec<u32>,
    /// Per B layer (row), the A layer chosen by each method (`null` = unmatched).
    pub argmax: Vec<Option<u32>>,
    /// Per B layer, the A layer of the one-to-one assignment.
    pub hungarian: Vec<Option<u32>>,
    /// Per B layer, the A layer of the monotone alignment (`null` = skipped).
    pub monotone: Vec<Option<u32>>,
    /// Fraction of B layers matched to the A layer with the same index.
    pub identity_rate_argmax: f64,
    /// The same for the assignment.
    pub identity_rate_hungarian: f64,
    /// The same for the monotone alignment.
    pub identity_rate_monotone: f64,
    /// Mean of best-minus-second-best similarity per B layer.
    pub mean_margin: f64,
    /// Mean similarity over the monotone alignment's matched pairs (NaN when none).
    pub monotone_score: f64,
    /// Monotone gain per layer, its null over shuffled B layer order, and the p-value.
    pub observed: f64,
    /// Mean of the null.
    pub null_mean: f64,
    /// Standard deviation of the null.
    pub null_sd: f64,
    /// `(1 + shuffles reaching the observed gain) / (1 + permutations)`; NaN when the gain is NaN.
    pub p_value: f64,
    /// Shuffles with a defined statistic.
    pub permutations: usize,
    /// 1/k! for k B layers: no permutation test on k layers can give a smaller p-value.
    pub min_achievable_p: f64,
    /// Mean same-index similarity and its permutation p-value (equal depths only).
    pub diagonal_mean: Option<f64>,
    /// Permutation p-value of `diagonal_mean`.
    pub diagonal_p_value: Option<f64>,
    /// The similarity matrix (rows: B's layers, columns: A's), capped, for the report's plots;
    /// kept for the centred metric only.
    pub matrix: Option<PlotMatrix>,
    /// The whole similarity matrix (rows: B's layers, columns: A's) at the 6 decimals of
    /// `e4_matrices`, which is derived from it.
    pub similarity: Vec<Vec<f64>>,
}

/// E4's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Result4 {
    /// The parameters it ran with.
    pub params: Params,
    /// Every pair, family and metric, A~B first.
    pub alignments: Vec<FamilyAlignment>,
}

impl Alignment {
    fn sample(&self, family: Family, t: &Proj) -> Sample {
        // Keyed by family only: every layer of every model is read at the same offsets, so
        // any layer can be compared with any other.
        let p = &self.params;
        t.sample(&sampling::windows(
            &family.to_string(),
            p.seed,
            t.numel(),
            p.window_elems,
            p.windows,
        ))
    }

    /// The family's layers (K and V also from fused q/k/v tensors).
    fn layers<'m>(
        &self,
        subjects: &Subjects<'m>,
        m: usize,
        family: Family,
    ) -> Vec<(u32, Proj<'m>)> {
        projections_of(subjects.models[m].model, family)
            .into_iter()
            .collect()
    }
}

fn positions_to_layers(v: &[Option<usize>], layers: &[u32]) -> Vec<Option<u32>> {
    v.iter()
        .map(|p| p.and_then(|i| layers.get(i).copied()))
        .collect()
}

/// Expected match of each B layer: the A layer with the same index, if A has it.
fn same_index(layers_b: &[u32], layers_a: &[u32]) -> Vec<Option<usize>> {
    layers_b
        .iter()
        .map(|lb| layers_a.iter().position(|la| la == lb))
        .collect()
}

impl Experiment for Alignment {
    fn id(&self) -> &'static str {
        "e4"
    }

    fn plan(&self, subjects: &Subjects, plan: &mut Plan) {
        for m in 0..subjects.models.len() {
            for &f in &self.params.families {
                for (_, t) in self.layers(subjects, m, f) {
                    plan.add(m, self.sample(f, &t));
                }
            }
        }
    }

    fn run(&self, subjects: &Subjects, data: &Data) -> Result<Output> {
        let mut alignments = Vec::new();
        for (i, j) in subjects.pairs() {
            // each stack of an encoder–decoder model is aligned on its own (see crate::arch)
            let stacks = |m: usize, family| -> BTreeMap<u32, Vec<(u32, Proj)>> {
                let mut by: BTreeMap<u32, Vec<(u32, Proj)>> = BTreeMap::new();
                for (l, t) in self.layers(subjects, m, family) {
                    by.entry(stack_of_layer(l)).or_default().push((l, t));
                }
                by
            };
            for (family, la, lb) in self.params.families.iter().flat_map(|&family| {
                let (mut sa, sb) = (stacks(i, family), stacks(j, family));
                sb.into_iter()
                    .filter_map(|(s, lb)| Some((family, sa.remove(&s)?, lb)))
                    .collect::<Vec<_>>()
            }) {
                if la.len() < 2 || lb.len() < 2 {
                    continue;
                }
                let numel = la[0].1.numel();
                if la.iter().chain(&lb).any(|(_, t)| t.numel() != numel) {
                    continue; // widths differ: no layer-to-layer comparison is possible
                }
                let get = |m: usize, t: &Proj| data.get(m, &self.sample(family, t));
                let va = la
                    .iter()
                    .map(|(_, t)| get(i, t))
                    .collect::<Result<Vec<_>>>()?;
                let vb = lb
                    .iter()
                    .map(|(_, t)| get(j, t))
                    .collect::<Result<Vec<_>>>()?;
                let metrics: Vec<Vec<_>> = vb
                    .iter()
                    .map(|b| va.iter().map(|a| compare(b, a)).collect())
                    .collect();
                let layers_a: Vec<u32> = la.iter().map(|x| x.0).collect();
                let layers_b: Vec<u32> = lb.iter().map(|x| x.0).collect();
                for metric in ["pearson", "cosine"] {
                    let s = Matrix::from_fn(vb.len(), va.len(), |r, c| {
                        let m = &metrics[r][c];
                        if metric == "pearson" {
                            m.pearson
                        } else {
                            m.cosine
                        }
                    });
                    alignments.push(self.align_one(
                        subjects,
                        (i, j),
                        family,
                        metric,
                        &s,
                        &layers_a,
                        &layers_b,
                    ));
                }
            }
        }
        Output::new(
            "e4",
            &Result4 {
                params: self.params.clone(),
                alignments,
            },
        )
    }
}

/// `e4_alignment` and `e4_matrices`, from the result as results.json records it.
pub fn tables(result: &serde_json::Value) -> Result<Vec<Table>> {
    let r: Result4 = super::readback::from_value(result)?;
    Ok(vec![
        summary_table(&r.alignments),
        matrices_table(&r.alignments),
    ])
}

fn matrices_table(alignments: &[FamilyAlignment]) -> Table {
    let mut t = Table::new(
        "e4_matrices",
        &["pair", "family", "metric", "layer_b", "layer_a", "value"],
    );
    for a in alignments {
        for (lb, row) in a.layers_b.iter().zip(&a.similarity) {
            for (la, &v) in a.layers_a.iter().zip(row) {
                t.rows.push(vec![
                    a.pair.clone(),
                    a.family.to_string(),
                    a.metric.clone(),
                    lb.to_string(),
                    la.to_string(),
                    fmt(v),
                ]);
            }
        }
    }
    t
}

impl Alignment {
    #[allow(clippy::too_many_arguments)]
    fn align_one(
        &self,
        subjects: &Subjects,
        (i, j): (usize, usize),
        family: Family,
        metric: &str,
        s: &Matrix,
        layers_a: &[u32],
        layers_b: &[u32],
    ) -> FamilyAlignment {
        let p = &self.params;
        let expected = same_index(layers_b, layers_a);
        let argmax = align::argmax_alignment(s);
        let hungarian = align::hungarian(s);
        let monotone = align::monotone_alignment(s);
        let margins: Vec<f64> = align::margins(s)
            .into_iter()
            .filter(|m| m.is_finite())
            .collect();
        let test = align::permutation_test(s, Statistic::MonotoneGain, p.permutations, p.seed);
        let diagonal = (layers_a == layers_b)
            .then(|| align::permutation_test(s, Statistic::DiagonalMean, p.permutations, p.seed));
        FamilyAlignment {
            pair: subjects.pair_label(i, j),
            primary: Subjects::is_primary(i, j),
            family,
            metric: metric.into(),
            argmax: positions_to_layers(&argmax, layers_a),
            hungarian: positions_to_layers(&hungarian, layers_a),
            monotone: positions_to_layers(&monotone.matched, layers_a),
            identity_rate_argmax: round9(align::alignment_rate(&argmax, &expected)),
            identity_rate_hungarian: round9(align::alignment_rate(&hungarian, &expected)),
            identity_rate_monotone: round9(align::alignment_rate(&monotone.matched, &expected)),
            mean_margin: round9(if margins.is_empty() {
                f64::NAN
            } else {
                margins.iter().sum::<f64>() / margins.len() as f64
            }),
            monotone_score: round9(monotone.score),
            observed: round9(test.observed),
            null_mean: round9(test.null_mean),
            null_sd: round9(test.null_sd),
            p_value: round9(test.p_value),
            permutations: test.perms,
            min_achievable_p: round9(1.0 / (1..=layers_b.len()).map(|k| k as f64).product::<f64>()),
            diagonal_mean: diagonal.as_ref().map(|d| round9(d.observed)),
            diagonal_p_value: diagonal.as_ref().map(|d| round9(d.p_value)),
            layers_a: layers_a.to_vec(),
            layers_b: layers_b.to_vec(),
            matrix: (metric == "pearson")
                .then(|| PlotMatrix::capped(layers_b, layers_a, |r, c| s.get(r, c))),
            similarity: (0..layers_b.len())
                .map(|r| {
                    (0..layers_a.len())
                        .map(|c| round_decimals(s.get(r, c), 6))
                        .collect()
                })
                .collect(),
        }
    }
}

fn summary_table(rows: &[FamilyAlignment]) -> Table {
    let mut t = Table::new(
        "e4_alignment",
        &[
            "pair",
            "primary",
            "family",
            "metric",
            "layers_a",
            "layers_b",
            "identity_rate_argmax",
            "identity_rate_hungarian",
            "identity_rate_monotone",
            "mean_margin",
            "monotone_score",
            "observed",
            "null_mean",
            "null_sd",
            "p_value",
            "diagonal_mean",
            "diagonal_p_value",
        ],
    );
    let opt = |v: Option<f64>| v.map(fmt).unwrap_or_default();
    for r in rows {
        t.rows.push(vec![
            r.pair.clone(),
            r.primary.to_string(),
            r.family.to_string(),
            r.metric.clone(),
            r.layers_a.len().to_string(),
            r.layers_b.len().to_string(),
            fmt(r.identity_rate_argmax),
            fmt(r.identity_rate_hungarian),
            fmt(r.identity_rate_monotone),
            fmt(r.mean_margin),
            fmt(r.monotone_score),
            fmt(r.observed),
            fmt(r.null_mean),
            fmt(r.null_sd),
            fmt(r.p_value),
            opt(r.diagonal_mean),
            opt(r.diagonal_p_value),
        ]);
    }
    t
}
