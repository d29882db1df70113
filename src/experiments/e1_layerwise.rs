//! E1 layerwise: every tensor family both models have (norms, router, q/k/v/o, biases, dense
//! MLP), compared at the same role with the full metric set, for A~B and every control pair.
//! Large tensors are compared on shared seeded windows; the fraction read is reported.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::roles::{RoleKey, by_role};
use super::{Data, Experiment, Output, Plan, Sample, Subjects, Table, fmt, mean_finite, round9};
use crate::arch::Family;
use crate::metrics::{PairMetrics, compare};
use crate::sampling;

/// E1's parameters (`[params.e1]`); every field has a default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Seed of the windows read.
    pub seed: u64,
    /// Elements per window for tensors too large to compare whole.
    pub window_elems: u64,
    /// Windows per large tensor.
    pub windows: u64,
    /// Compare routed experts at the same index too (off by default: expert order is
    /// arbitrary, E9 matches experts by assignment).
    pub include_experts: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            seed: 0,
            window_elems: 65_536,
            windows: 4,
            include_experts: false,
        }
    }
}

/// E1, layerwise: same-role tensors compared with the full metric set.
#[derive(Default)]
pub struct Layerwise {
    /// Its parameters.
    pub params: Params,
}

fn compared_family(f: Family, include_experts: bool) -> bool {
    use Family::*;
    match f {
        Embedding | PositionEmbedding | TokenTypeEmbedding | LmHead | Buffer | Other => false,
        ExpertGate | ExpertUp | ExpertDown => include_experts,
        _ => !matches!(
            f,
            MtpEmbedNorm | MtpHiddenNorm | MtpProj | MtpHeadNorm | MtpHead
        ),
    }
}

/// One compared (or not comparable) role of one pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// The role's key, as shown in tables.
    pub role: String,
    /// The tensor family.
    pub family: Family,
    /// Layer key (`None` outside layers).
    pub layer: Option<u32>,
    /// Routed expert index (`None` for non-expert tensors).
    pub expert: Option<u32>,
    /// The tensor's name in A.
    pub tensor_a: String,
    /// The tensor's name in B.
    pub tensor_b: String,
    /// A's tensor's shape.
    pub shape_a: Vec<u64>,
    /// B's tensor's shape.
    pub shape_b: Vec<u64>,
    /// `compared` or `shape_mismatch`.
    pub status: String,
    /// Fraction of the tensor's elements read.
    pub fraction: f64,
    /// The metrics over the elements read (absent on a shape mismatch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<PairMetrics>,
}

/// Per pair and family: the averages a reader compares across pairs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FamilySummary {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// The tensor family.
    pub family: Family,
    /// Roles compared.
    pub compared: usize,
    /// Roles skipped for differing shapes.
    pub shape_mismatches: usize,
    /// Mean raw cosine over the compared roles.
    pub mean_cosine: f64,
    /// Mean Pearson r over the compared roles.
    pub mean_pearson: f64,
    /// Smallest Pearson r over the compared roles.
    pub min_pearson: f64,
    /// Mean ‖a − b‖ / ‖a‖ over the compared roles.
    pub mean_rel_l2: f64,
    /// The shuffle null of raw cosine averaged over the family: raw cosine at this level
    /// says nothing about coordinates.
    pub mean_shuffle_null_cosine: f64,
}

/// E1's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Result1 {
    /// The parameters it ran with.
    pub params: Params,
    /// Every role of every pair.
    pub rows: Vec<Row>,
    /// Per pair and family, the means over roles.
    pub summary: Vec<FamilySummary>,
    /// Families only one model of a pair has: `pair → (label → families)`.
    pub unmatched_families: BTreeMap<String, BTreeMap<String, Vec<Family>>>,
}

impl Layerwise {
    fn window(&self, key: &RoleKey, numel: u64) -> Vec<(u64, u64)> {
        let p = &self.params;
        sampling::windows(&key.to_string(), p.seed, numel, p.window_elems, p.windows)
    }
}

impl Experiment for Layerwise {
    fn id(&self) -> &'static str {
        "e1"
    }

    fn plan(&self, subjects: &Subjects, plan: &mut Plan) {
        for (i, j) in subjects.pairs() {
            let (ra, rb) = (
                by_role(subjects.models[i].model),
                by_role(subjects.models[j].model),
            );
            for (key, ta) in &ra {
                let Some(tb) = rb.get(key) else { continue };
                if !compared_family(key.family, self.params.include_experts) || ta.shape != tb.shape
                {
                    continue;
                }
                let w = self.window(key, ta.numel);
                plan.add(
                    i,
                    Sample {
                        tensor: ta.name.clone(),
                        windows: w.clone(),
                    },
                );
                plan.add(
                    j,
                    Sample {
                        tensor: tb.name.clone(),
                        windows: w,
                    },
                );
            }
        }
    }

    fn run(&self, subjects: &Subjects, data: &Data) -> Result<Output> {
        let mut rows = Vec::new();
        let mut unmatched = BTreeMap::new();
        for (i, j) in subjects.pairs() {
            let pair = subjects.pair_label(i, j);
            let (ra, rb) = (
                by_role(subjects.models[i].model),
                by_role(subjects.models[j].model),
            );
            let fam = |r: &BTreeMap<RoleKey, _>| -> BTreeSet<Family> {
                r.keys()
                    .map(|k: &RoleKey| k.family)
                    .filter(|f| compared_family(*f, self.params.include_experts))
                    .collect()
            };
            let (fa, fb) = (fam(&ra), fam(&rb));
            let mut only = BTreeMap::new();
            only.insert(
                subjects.models[i].label.clone(),
                fa.difference(&fb).copied().collect(),
            );
            only.insert(
                subjects.models[j].label.clone(),
                fb.difference(&fa).copied().collect(),
            );
            unmatched.insert(pair.clone(), only);
            for (key, ta) in &ra {
                let Some(tb) = rb.get(key) else { continue };
                if !compared_family(key.family, self.params.include_experts) {
                    continue;
                }
                let mut row = Row {
                    pair: pair.clone(),
                    role: key.to_string(),
                    family: key.family,
                    layer: key.layer,
                    expert: key.expert,
                    tensor_a: ta.name.clone(),
                    tensor_b: tb.name.clone(),
                    shape_a: ta.shape.clone(),
                    shape_b: tb.shape.clone(),
                    status: "shape_mismatch".into(),
                    fraction: 0.0,
                    metrics: None,
                };
                if ta.shape == tb.shape {
                    let w = self.window(key, ta.numel);
                    let a = data.get(
                        i,
                        &Sample {
                            tensor: ta.name.clone(),
                            windows: w.clone(),
                        },
                    )?;
                    let b = data.get(
                        j,
                        &Sample {
                            tensor: tb.name.clone(),
                            windows: w.clone(),
                        },
                    )?;
                    row.status = "compared".into();
                    row.fraction = round9(sampling::covered(&w) as f64 / ta.numel.max(1) as f64);
                    row.metrics = Some(rounded(compare(a, b)));
                }
                rows.push(row);
            }
        }
        let summary = summarise(subjects, &rows);
        let result = Result1 {
            params: self.params.clone(),
            rows,
            summary,
            unmatched_families: unmatched,
        };
        Output::new("e1", &result)
    }
}

/// This experiment's tables, from its result as results.json records it.
pub fn tables(result: &serde_json::Value) -> Result<Vec<Table>> {
    let r: Result1 = super::readback::from_value(result)?;
    Ok(vec![rows_table(&r.rows), summary_table(&r.summary)])
}

fn rounded(m: PairMetrics) -> PairMetrics {
    PairMetrics {
        cosine: round9(m.cosine),
        pearson: round9(m.pearson),
        rel_l2: round9(m.rel_l2),
        mad: round9(m.mad),
        rmse: round9(m.rmse),
        p99_abs_diff: round9(m.p99_abs_diff),
        cv_diff: round9(m.cv_diff),
        shuffle_null_cosine_mean: round9(m.shuffle_null_cosine_mean),
        shuffle_null_cosine_sd: round9(m.shuffle_null_cosine_sd),
        mean_a: round9(m.mean_a),
        mean_b: round9(m.mean_b),
        std_a: round9(m.std_a),
        std_b: round9(m.std_b),
        ..m
    }
}

fn summarise(subjects: &Subjects, rows: &[Row]) -> Vec<FamilySummary> {
    let mut groups: BTreeMap<(String, Family), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((r.pair.clone(), r.family))
            .or_default()
            .push(r);
    }
    let primary = subjects.pair_label(0, 1);
    groups
        .into_iter()
        .map(|((pair, family), rs)| {
            let ms: Vec<&PairMetrics> = rs.iter().filter_map(|r| r.metrics.as_ref()).collect();
            let get = |f: fn(&PairMetrics) -> f64| ms.iter().map(|m| f(m)).collect::<Vec<_>>();
            let pearsons = get(|m| m.pearson);
            FamilySummary {
                primary: pair == primary,
                pair,
                family,
                compared: ms.len(),
                shape_mismatches: rs.len() - ms.len(),
                mean_cosine: round9(mean_finite(get(|m| m.cosine).iter().copied())),
                mean_pearson: round9(mean_finite(pearsons.iter().copied())),
                min_pearson: round9(
                    pearsons
                        .iter()
                        .copied()
                        .filter(|x| x.is_finite())
                        .fold(f64::NAN, f64::min),
                ),
                mean_rel_l2: round9(mean_finite(get(|m| m.rel_l2).iter().copied())),
                mean_shuffle_null_cosine: round9(mean_finite(
                    get(|m| m.shuffle_null_cosine_mean).iter().copied(),
                )),
            }
        })
        .collect()
}

fn rows_table(rows: &[Row]) -> Table {
    let mut t = Table::new(
        "e1_layerwise",
        &[
            "pair",
            "role",
            "family",
            "layer",
            "expert",
            "status",
            "fraction",
            "n",
            "cosine",
            "pearson",
            "rel_l2",
            "mad",
            "rmse",
            "p99_abs_diff",
            "cv_diff",
            "cv_meaningful",
            "shuffle_null_cosine_mean",
            "shuffle_null_cosine_sd",
            "shape_a",
            "shape_b",
        ],
    );
    let opt = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_default();
    let shape = |s: &[u64]| s.iter().map(u64::to_string).collect::<Vec<_>>().join("x");
    for r in rows {
        let mut cells = vec![
            r.pair.clone(),
            r.role.clone(),
            r.family.to_string(),
            opt(r.layer),
            opt(r.expert),
            r.status.clone(),
            fmt(r.fraction),
        ];
        match &r.metrics {
            Some(m) => cells.extend([
                m.n.to_string(),
                fmt(m.cosine),
                fmt(m.pearson),
                fmt(m.rel_l2),
                fmt(m.mad),
                fmt(m.rmse),
                fmt(m.p99_abs_diff),
                fmt(m.cv_diff),
                m.cv_meaningful.to_string(),
                fmt(m.shuffle_null_cosine_mean),
                fmt(m.shuffle_null_cosine_sd),
            ]),
            None => cells.extend(std::iter::repeat_n(String::new(), 11)),
        }
        cells.push(shape(&r.shape_a));
        cells.push(shape(&r.shape_b));
        t.rows.push(cells);
    }
    t
}

fn summary_table(summary: &[FamilySummary]) -> Table {
    let mut t = Table::new(
        "e1_summary",
        &[
            "pair",
            "primary",
            "family",
            "compared",
            "shape_mismatches",
            "mean_cosine",
            "mean_pearson",
            "min_pearson",
            "mean_rel_l2",
            "mean_shuffle_null_cosine",
        ],
    );
    for s in summary {
        t.rows.push(vec![
            s.pair.clone(),
            s.primary.to_string(),
            s.family.to_string(),
            s.compared.to_string(),
            s.shape_mismatches.to_string(),
            fmt(s.mean_cosine),
            fmt(s.mean_pearson),
            fmt(s.min_pearson),
            fmt(s.mean_rel_l2),
            fmt(s.mean_shuffle_null_cosine),
        ]);
    }
    t
}
