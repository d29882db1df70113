//! E2 baselines: the answer to "is 0.99 high?". For every norm family, layer×layer matrices
//! within each model and across every pair, and the distributions a cross-model value must
//! beat: the within-model values (layer 0 apart: it is unlike every other layer), the
//! cross-model off-diagonal values (the same models, wrong layers), and the shuffle null.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::roles::layers_of;
use super::{
    Data, Experiment, Output, Plan, PlotMatrix, Sample, Subjects, Table, fmt, mean_finite,
    round_decimals, round9,
};
use crate::arch::Family;
use crate::metrics::compare;
use crate::model::TensorInfo;
use crate::stats;

/// Norm vectors larger than this are not norm gains; they are left out.
const MAX_NORM_ELEMS: u64 = 1 << 20;

/// E2, baselines: layer×layer norm matrices within and across models, and the nulls a cross-model value must beat.
pub struct Baselines;

/// Layered norm families with one vector per layer.
fn norm_families() -> [Family; 6] {
    [
        Family::InputNorm,
        Family::PostAttentionNorm,
        Family::PostMlpNorm,
        Family::InputNormBias,
        Family::PostAttentionNormBias,
        Family::PostMlpNormBias,
    ]
}

fn vectors<'m>(subjects: &Subjects<'m>, m: usize, family: Family) -> BTreeMap<u32, &'m TensorInfo> {
    layers_of(subjects.models[m].model, family)
        .into_iter()
        .filter(|(_, t)| t.numel <= MAX_NORM_ELEMS && t.shape.len() == 1)
        .collect()
}

/// Summary of a set of values.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Dist {
    /// Number of finite values.
    pub n: usize,
    /// Their mean (NaN when none).
    pub mean: f64,
    /// Sample standard deviation (n − 1).
    pub sd: f64,
    /// 5th percentile (linear interpolation).
    pub p05: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Largest value.
    pub max: f64,
}

impl Dist {
    /// The summary of the finite values of `values` (NaN fields when none).
    pub fn of(values: &[f64]) -> Dist {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Dist {
                n: 0,
                mean: f64::NAN,
                sd: f64::NAN,
                p05: f64::NAN,
                p50: f64::NAN,
                p95: f64::NAN,
                max: f64::NAN,
            };
        }
        v.sort_by(f64::total_cmp);
        let (mean, sd) = (stats::mean(&v), stats::sample_sd(&v));
        let q = |p: f64| {
            let pos = p * (v.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
        };
        Dist {
            n: v.len(),
            mean: round9(mean),
            sd: round9(sd),
            p05: round9(q(0.05)),
            p50: round9(q(0.5)),
            p95: round9(q(0.95)),
            max: round9(v[v.len() - 1]),
        }
    }

    /// Fraction of the distribution at or below `x` (empirical percentile).
    pub fn percentile_of(values: &[f64], x: f64) -> f64 {
        let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() || !x.is_finite() {
            return f64::NAN;
        }
        round9(v.iter().filter(|&&y| y <= x).count() as f64 / v.len() as f64)
    }
}

/// Mean of the same-index values against the off-diagonal ones (sample sd, as every z of
/// the project); NaN when the off-diagonal values have no spread or fewer than two.
pub fn z_vs_off_diagonal(same: &[f64], off: &[f64]) -> f64 {
    let same: Vec<f64> = same.iter().copied().filter(|x| x.is_finite()).collect();
    stats::z_against(stats::mean(&same), off).unwrap_or(f64::NAN)
}

/// One metric of one pair in one family, beside its nulls.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CrossStat {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// The norm family compared.
    pub family: Family,
    /// `cosine` or `pearson`.
    pub metric: String,
    /// Same-index values, layer 0 left out.
    pub same_index: Dist,
    /// The layer-0 value (left out of `same_index`; NaN when absent).
    pub layer0: f64,
    /// Same models, different layers: what the value is worth without layer correspondence.
    pub off_diagonal: Dist,
    /// Within-model values of both models (layer 0 left out).
    pub within: Dist,
    /// (mean same-index − mean off-diagonal) / sd off-diagonal.
    pub z_vs_off_diagonal: f64,
    /// Where the mean same-index value falls in the within-model distribution.
    pub percentile_in_within: f64,
    /// For cosine: the expected value after shuffling coordinates (no coordinate relation).
    pub shuffle_null_mean: f64,
}

/// E2's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Result2 {
    /// The norm families compared.
    pub families: Vec<Family>,
    /// Each pair's statistics per family and metric, A~B first.
    pub stats: Vec<CrossStat>,
    /// Within-model distributions per model, family and metric (layer 0 apart).
    pub within: Vec<WithinStat>,
    /// The within-model and cross-model matrices themselves, capped for the report's plots.
    pub matrices: Vec<MatrixPlot>,
    /// Every matrix in full at the tables' precision: `e2_matrices` is derived from these.
    pub cells: Vec<MatrixCells>,
}

/// One within- or cross-model matrix in full (rows `layers_a`, columns `layers_b`), values
/// rounded to the 6 decimals its table shows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MatrixCells {
    /// The norm family.
    pub family: Family,
    /// `within` or `cross`, as in [`MatrixPlot`].
    pub kind: String,
    /// Row model's label.
    pub model_a: String,
    /// Column model's label.
    pub model_b: String,
    /// Layer of each row.
    pub layers_a: Vec<u32>,
    /// Layer of each column.
    pub layers_b: Vec<u32>,
    /// Cosine of each row and column vector pair (NaN where undefined).
    pub cosine: Vec<Vec<f64>>,
    /// Pearson r of each row and column vector pair (NaN where undefined).
    pub pearson: Vec<Vec<f64>>,
}

/// One layer×layer matrix of one metric: rows are `model_a`'s layers, columns `model_b`'s.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MatrixPlot {
    /// The norm family.
    pub family: Family,
    /// `within` (a model against itself) or `cross` (a pair).
    pub kind: String,
    /// Row model's label.
    pub model_a: String,
    /// Column model's label.
    pub model_b: String,
    /// `cosine` or `pearson`.
    pub metric: String,
    /// The matrix, capped and rounded for plotting.
    pub matrix: PlotMatrix,
}

/// One model's within-model values of one family and metric.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WithinStat {
    /// The model's label.
    pub model: String,
    /// The norm family.
    pub family: Family,
    /// `cosine` or `pearson`.
    pub metric: String,
    /// Values between different layers, layer 0 left out.
    pub off_diagonal: Dist,
    /// Mean value between layer 0 and the other layers.
    pub layer0_mean: f64,
}

/// A layer×layer matrix of one metric between two lists of vectors.
struct Matrix {
    layers_a: Vec<u32>,
    layers_b: Vec<u32>,
    cosine: Vec<Vec<f64>>,
    pearson: Vec<Vec<f64>>,
    shuffle: Vec<Vec<f64>>,
}

fn matrix(a: &[(u32, &[f32])], b: &[(u32, &[f32])]) -> Matrix {
    let mut m = Matrix {
        layers_a: a.iter().map(|x| x.0).collect(),
        layers_b: b.iter().map(|x| x.0).collect(),
        cosine: Vec::new(),
        pearson: Vec::new(),
        shuffle: Vec::new(),
    };
    for (_, va) in a {
        let rows: Vec<_> = b.iter().map(|(_, vb)| compare(va, vb)).collect();
        m.cosine.push(rows.iter().map(|r| r.cosine).collect());
        m.pearson.push(rows.iter().map(|r| r.pearson).collect());
        m.shuffle
            .push(rows.iter().map(|r| r.shuffle_null_cosine_mean).collect());
    }
    m
}

impl Experiment for Baselines {
    fn id(&self) -> &'static str {
        "e2"
    }

    fn plan(&self, subjects: &Subjects, plan: &mut Plan) {
        for m in 0..subjects.models.len() {
            for f in norm_families() {
                for t in vectors(subjects, m, f).values() {
                    plan.add(m, Sample::whole(&t.name, t.numel));
                }
            }
        }
    }

    fn run(&self, subjects: &Subjects, data: &Data) -> Result<Output> {
        let mut stats = Vec::new();
        let mut within_stats = Vec::new();
        let mut families = Vec::new();
        let mut plots = Vec::new();
        let mut cells = Vec::new();
        for family in norm_families() {
            let mut vecs: Vec<Vec<(u32, &[f32])>> = Vec::new();
            for m in 0..subjects.models.len() {
                let mut v = Vec::new();
                for (l, t) in vectors(subjects, m, family) {
                    v.push((l, data.get(m, &Sample::whole(&t.name, t.numel))?));
                }
                vecs.push(v);
            }
            if vecs[0].is_empty() && vecs[1].is_empty() {
                continue;
            }
            families.push(family);
            // Within-model matrices.
            let mut within: Vec<Matrix> = Vec::new();
            for (m, v) in vecs.iter().enumerate() {
                let w = matrix(v, v);
                cells.push(cells_of(
                    family,
                    "within",
                    &subjects.models[m].label,
                    &subjects.models[m].label,
                    &w,
                ));
                let label = &subjects.models[m].label;
                plots.extend(matrix_plots(family, "within", label, label, &w));
                for (metric, mat) in [("cosine", &w.cosine), ("pearson", &w.pearson)] {
                    let (off, l0) = split_within(&w.layers_a, mat);
                    within_stats.push(WithinStat {
                        model: subjects.models[m].label.clone(),
                        family,
                        metric: metric.into(),
                        off_diagonal: Dist::of(&off),
                        layer0_mean: round9(mean_finite(l0.iter().copied())),
                    });
                }
                within.push(w);
            }
            for (i, j) in subjects.pairs() {
                let (va, vb) = (&vecs[i], &vecs[j]);
                if va.is_empty() || vb.is_empty() || va[0].1.len() != vb[0].1.len() {
                    continue;
                }
                let x = matrix(va, vb);
                cells.push(cells_of(
                    family,
                    "cross",
                    &subjects.models[i].label,
                    &subjects.models[j].label,
                    &x,
                ));
                plots.extend(matrix_plots(
                    family,
                    "cross",
                    &subjects.models[i].label,
                    &subjects.models[j].label,
                    &x,
                ));
                for (metric, mat) in [("cosine", &x.cosine), ("pearson", &x.pearson)] {
                    let (same, l0, off) = split_cross(&x.layers_a, &x.layers_b, mat);
                    let (wa, _) = split_within(
                        &within[i].layers_a,
                        if metric == "cosine" {
                            &within[i].cosine
                        } else {
                            &within[i].pearson
                        },
                    );
                    let (wb, _) = split_within(
                        &within[j].layers_a,
                        if metric == "cosine" {
                            &within[j].cosine
                        } else {
                            &within[j].pearson
                        },
                    );
                    let within_all: Vec<f64> = wa.into_iter().chain(wb).collect();
                    let same_d = Dist::of(&same);
                    let off_d = Dist::of(&off);
                    let shuffle = if metric == "cosine" {
                        let (s, _, _) = split_cross(&x.layers_a, &x.layers_b, &x.shuffle);
                        round9(mean_finite(s.iter().copied()))
                    } else {
                        0.0
                    };
                    stats.push(CrossStat {
                        pair: subjects.pair_label(i, j),
                        primary: Subjects::is_primary(i, j),
                        family,
                        metric: metric.into(),
                        z_vs_off_diagonal: round9(z_vs_off_diagonal(&same, &off)),
                        percentile_in_within: Dist::percentile_of(&within_all, same_d.mean),
                        within: Dist::of(&within_all),
                        same_index: same_d,
                        layer0: round9(mean_finite(l0.iter().copied())),
                        off_diagonal: off_d,
                        shuffle_null_mean: shuffle,
                    });
                }
            }
        }
        Output::new(
            "e2",
            &Result2 {
                families,
                stats,
                within: within_stats,
                matrices: plots,
                cells,
            },
        )
    }
}

/// Off-diagonal values not involving layer 0, and values involving layer 0.
fn split_within(layers: &[u32], m: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let (mut off, mut l0) = (Vec::new(), Vec::new());
    for (r, &la) in layers.iter().enumerate() {
        for (c, &lb) in layers.iter().enumerate() {
            if c <= r {
                continue;
            }
            if la == 0 || lb == 0 {
                l0.push(m[r][c])
            } else {
                off.push(m[r][c])
            }
        }
    }
    (off, l0)
}

/// Same-index values (layer ≥ 1), the layer-0 value, and off-diagonal values (layers ≥ 1).
fn split_cross(la: &[u32], lb: &[u32], m: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut same, mut l0, mut off) = (Vec::new(), Vec::new(), Vec::new());
    for (r, &a) in la.iter().enumerate() {
        for (c, &b) in lb.iter().enumerate() {
            match (a == b, a == 0 || b == 0) {
                (true, true) => l0.push(m[r][c]),
                (true, false) => same.push(m[r][c]),
                (false, false) => off.push(m[r][c]),
                (false, true) => {}
            }
        }
    }
    (same, l0, off)
}

fn matrix_plots(family: Family, kind: &str, a: &str, b: &str, m: &Matrix) -> Vec<MatrixPlot> {
    [("cosine", &m.cosine), ("pearson", &m.pearson)]
        .into_iter()
        .map(|(metric, values)| MatrixPlot {
            family,
            kind: kind.into(),
            model_a: a.into(),
            model_b: b.into(),
            metric: metric.into(),
            matrix: PlotMatrix::capped(&m.layers_a, &m.layers_b, |r, c| values[r][c]),
        })
        .collect()
}

fn cells_of(family: Family, kind: &str, a: &str, b: &str, m: &Matrix) -> MatrixCells {
    let round = |rows: &[Vec<f64>]| -> Vec<Vec<f64>> {
        rows.iter()
            .map(|r| r.iter().map(|&v| round_decimals(v, 6)).collect())
            .collect()
    };
    MatrixCells {
        family,
        kind: kind.into(),
        model_a: a.into(),
        model_b: b.into(),
        layers_a: m.layers_a.clone(),
        layers_b: m.layers_b.clone(),
        cosine: round(&m.cosine),
        pearson: round(&m.pearson),
    }
}

fn cells_table(cells: &[MatrixCells]) -> Table {
    let mut t = Table::new(
        "e2_matrices",
        &[
            "family", "kind", "model_a", "model_b", "layer_a", "layer_b", "cosine", "pearson",
        ],
    );
    for m in cells {
        for (r, la) in m.layers_a.iter().enumerate() {
            for (c, lb) in m.layers_b.iter().enumerate() {
                let at = |x: &[Vec<f64>]| x.get(r).and_then(|row| row.get(c)).copied();
                t.rows.push(vec![
                    m.family.to_string(),
                    m.kind.clone(),
                    m.model_a.clone(),
                    m.model_b.clone(),
                    la.to_string(),
                    lb.to_string(),
                    at(&m.cosine).map_or_else(String::new, fmt),
                    at(&m.pearson).map_or_else(String::new, fmt),
                ]);
            }
        }
    }
    t
}

/// This experiment's tables, from its result as results.json records it.
pub fn tables(result: &serde_json::Value) -> Result<Vec<Table>> {
    let r: Result2 = super::readback::from_value(result)?;
    Ok(vec![cells_table(&r.cells), stats_table(&r.stats)])
}

fn stats_table(stats: &[CrossStat]) -> Table {
    let mut t = Table::new(
        "e2_baselines",
        &[
            "pair",
            "primary",
            "family",
            "metric",
            "same_index_mean",
            "layer0",
            "off_diagonal_mean",
            "off_diagonal_sd",
            "within_mean",
            "within_p95",
            "z_vs_off_diagonal",
            "percentile_in_within",
            "shuffle_null_mean",
        ],
    );
    for s in stats {
        t.rows.push(vec![
            s.pair.clone(),
            s.primary.to_string(),
            s.family.to_string(),
            s.metric.clone(),
            fmt(s.same_index.mean),
            fmt(s.layer0),
            fmt(s.off_diagonal.mean),
            fmt(s.off_diagonal.sd),
            fmt(s.within.mean),
            fmt(s.within.p95),
            fmt(s.z_vs_off_diagonal),
            fmt(s.percentile_in_within),
            fmt(s.shuffle_null_mean),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dist_reports_the_sample_sd() {
        // 1, 2, 3, 4: mean 2.5, squared deviations 5, sample sd √(5/3) (not √(5/4))
        let d = Dist::of(&[4.0, 1.0, f64::NAN, 3.0, 2.0]);
        assert_eq!(d.n, 4);
        assert_eq!(d.mean, 2.5);
        assert_eq!(d.sd, round9((5.0f64 / 3.0).sqrt()));
    }

    #[test]
    fn z_vs_off_diagonal_by_hand() {
        // same-index mean 0.9; off-diagonal 0.1, 0.2, 0.3: mean 0.2, sample sd 0.1 → z 7
        let z = z_vs_off_diagonal(&[0.8, 1.0, f64::NAN], &[0.1, 0.2, 0.3]);
        assert!((z - 7.0).abs() < 1e-9, "{z}");
        assert!(z_vs_off_diagonal(&[0.9], &[0.2, 0.2]).is_nan());
    }
}
