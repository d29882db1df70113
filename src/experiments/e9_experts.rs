//! E9 experts: permutation-invariant matching of MoE experts. A derived model may store its
//! experts in another order (the function is unchanged), so expert `e` of B is compared with
//! every expert of A and matched one-to-one by assignment (Hungarian, maximising the cosine of
//! L2-normalised rows). Two kinds of rows per layer:
//!
//! - **router**: the rows of the router matrix (one per expert, oriented `(experts, hidden)`),
//!   read whole, for every layer both models have at the same index;
//! - **experts**: per expert, seeded windows of its gate, up and down matrices concatenated
//!   (the same element offsets for every expert of every model), for a seeded subset of at
//!   most `expert_layers` layers (so the bytes read stay bounded).
//!
//! The assignment maximises, so it is biased above zero even for unrelated rows: 128 random
//! rows in 4096 dims score ≈ 0.038. Every score is reported beside the **coordinate-permutation
//! null** of its own rows: B's rows with one seeded permutation of their coordinates (the same
//! for every row of B), matched to A's rows again, `null_draws` times. A permutation applied to
//! all of B's rows keeps every cosine among them, so experts upcycled from one MLP (sharing a
//! component) or routers with a common mean row stay as they are, and only the correspondence
//! of B's coordinates to A's is destroyed: the null is "B's rows as they are, in a basis
//! unrelated to A's". (A null of i.i.d. Gaussian rows would take shared components for
//! evidence.) The control pairs are shown beside. The recovered permutation (for each expert of
//! B, the expert of A it matched) is reported too.
//!
//! Analytically, the assignment score of independent random directions is bounded above by the
//! mean row maximum without the one-to-one constraint, σ·E[max of E_a standard normals] with
//! σ = 1/√d (`null_row_max_bound`, by numerical integration): 0.0405 for 128 rows in 4096 dims,
//! against the measured 0.038.

use std::collections::BTreeSet;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::roles::by_role;
use super::{Data, Experiment, Output, Plan, Sample, Subjects, Table, fmt, round9};
use crate::align::{Matrix, hungarian};
use crate::arch::Family;
use crate::model::{Model, TensorInfo};
use crate::{sampling, stats};
use rayon::prelude::*;

/// E9's parameters (`[params.e9]`); every field has a default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Seed of the layers, windows and null permutations.
    pub seed: u64,
    /// Layers whose expert matrices are sampled (a seeded subset of the MoE layers).
    pub expert_layers: usize,
    /// Windows per expert matrix (gate, up, down each).
    pub window_elems: u64,
    /// Windows read per expert matrix.
    pub windows: u64,
    /// Draws of the coordinate-permutation null per layer.
    pub null_draws: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            seed: 0,
            expert_layers: 4,
            window_elems: 2048,
            windows: 2,
            null_draws: 20,
        }
    }
}

/// E9, experts: MoE experts and router rows matched one-to-one across models by assignment.
#[derive(Default)]
pub struct Experts {
    /// Its parameters.
    pub params: Params,
}

/// One layer's expert (or router row) matching for one pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerMatch {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// Layer key (the same index in A and B).
    pub layer: u32,
    /// `router` or `experts`.
    pub kind: String,
    /// Experts (rows) in A.
    pub experts_a: usize,
    /// Experts (rows) in B.
    pub experts_b: usize,
    /// Length of each compared row.
    pub dims: usize,
    /// Mean cosine over the assignment, and the same with experts matched by index.
    pub score: f64,
    /// Mean cosine with experts matched by index.
    pub same_index_score: f64,
    /// Mean and sd of the coordinate-permutation null of this layer's rows.
    pub null_mean: f64,
    /// Standard deviation of that null.
    pub null_sd: f64,
    /// Analytic upper bound of the null mean (see the module documentation).
    pub null_row_max_bound: f64,
    /// (score − null mean) / null sd (NaN when the null has no spread).
    pub z: f64,
    /// Fraction of B's experts matched to A's expert with the same id.
    pub identity_rate: f64,
    /// For each expert of B, the expert of A it matched.
    pub permutation: Vec<Option<u32>>,
}

/// One pair's matching of one kind, over its layers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairSummary {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// `router` or `experts`.
    pub kind: String,
    /// Layers matched.
    pub layers: usize,
    /// Mean assignment score over those layers.
    pub mean_score: f64,
    /// Mean null mean over those layers.
    pub mean_null: f64,
    /// Mean z over those layers.
    pub mean_z: f64,
    /// Layers where router and expert matching recovered the same permutation.
    pub permutations_agree: Option<usize>,
}

/// E9's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Result9 {
    /// The parameters it ran with.
    pub params: Params,
    /// Every matched layer of every pair, per kind.
    pub layers: Vec<LayerMatch>,
    /// Per pair and kind, the means over layers.
    pub summary: Vec<PairSummary>,
}

const EXPERT_FAMILIES: [Family; 3] = [Family::ExpertGate, Family::ExpertUp, Family::ExpertDown];

/// A layer's experts: per expert id, its (gate, up, down) tensors (those present).
fn experts_of(model: &Model, layer: u32) -> Vec<Vec<&TensorInfo>> {
    let roles = by_role(model);
    let mut out: Vec<Vec<&TensorInfo>> = Vec::new();
    for (k, t) in roles {
        if k.layer != Some(layer) || !EXPERT_FAMILIES.contains(&k.family) {
            continue;
        }
        let Some(e) = k.expert else { continue };
        let e = e as usize;
        if out.len() <= e {
            out.resize_with(e + 1, Vec::new);
        }
        out[e].push(t);
    }
    out
}

fn routers(model: &Model) -> Vec<(u32, &TensorInfo)> {
    by_role(model)
        .into_iter()
        .filter(|(k, t)| k.family == Family::Router && k.expert.is_none() && t.shape.len() == 2)
        .filter_map(|(k, t)| k.layer.map(|l| (l, t)))
        .collect()
}

/// Rows of a 2-D matrix oriented `(experts, hidden)`: transposed when it has more rows.
fn oriented_rows(t: &TensorInfo, v: &[f32]) -> Vec<Vec<f32>> {
    let (r, c) = (t.shape[0] as usize, t.shape[1] as usize);
    if v.len() != r * c {
        return Vec::new();
    }
    if r <= c {
        v.chunks(c).map(<[f32]>::to_vec).collect()
    } else {
        (0..c)
            .map(|j| (0..r).map(|i| v[i * c + j]).collect())
            .collect()
    }
}

fn normalised(rows: &[Vec<f32>]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|r| {
            let n = r.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt() + 1e-9;
            r.iter().map(|&x| f64::from(x) / n).collect()
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Assignment of B's rows to A's rows maximising cosine: (mean cosine, matches).
pub fn assignment_score(a: &[Vec<f64>], b: &[Vec<f64>]) -> (f64, Vec<Option<usize>>) {
    let s = Matrix::from_fn(b.len(), a.len(), |r, c| dot(&b[r], &a[c]));
    let m = hungarian(&s);
    let vals: Vec<f64> = m
        .iter()
        .enumerate()
        .filter_map(|(r, c)| c.map(|c| s.get(r, c)))
        .collect();
    let score = if vals.is_empty() {
        f64::NAN
    } else {
        vals.iter().sum::<f64>() / vals.len() as f64
    };
    (score, m)
}

/// E[max of n independent standard normals] = ∫ x·n·φ(x)·Φ(x)^(n−1) dx (trapezoid on [−12, 12]).
pub fn expected_max_normal(n: usize) -> f64 {
    if n == 0 {
        return f64::NAN;
    }
    let (lo, hi, steps) = (-12.0f64, 12.0f64, 24_000usize);
    let h = (hi - lo) / steps as f64;
    let nf = n as f64;
    let f = |x: f64| {
        let phi = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        x * nf * phi * stats::normal_cdf(x).powf(nf - 1.0)
    };
    let mut sum = 0.5 * (f(lo) + f(hi));
    for k in 1..steps {
        sum += f(lo + k as f64 * h);
    }
    sum * h
}

/// The coordinate-permutation null of an assignment score: mean and sample sd over `draws`
/// seeded permutations of the coordinates of B's unit rows (one permutation for all of B's
/// rows per draw), each matched to A's unit rows again.
pub fn permutation_null(na: &[Vec<f64>], nb: &[Vec<f64>], draws: usize, seed: u64) -> (f64, f64) {
    let d = nb.first().map_or(0, Vec::len);
    let mut rng = fastrand::Rng::with_seed(seed);
    let orders: Vec<Vec<usize>> = (0..draws)
        .map(|_| {
            let mut order: Vec<usize> = (0..d).collect();
            rng.shuffle(&mut order);
            order
        })
        .collect();
    let scores: Vec<f64> = orders
        .par_iter()
        .map(|order| {
            let permuted: Vec<Vec<f64>> = nb
                .iter()
                .map(|row| order.iter().map(|&k| row[k]).collect())
                .collect();
            assignment_score(na, &permuted).0
        })
        .collect();
    (stats::mean(&scores), stats::sample_sd(&scores))
}

impl Experts {
    fn window(&self, family: Family, t: &TensorInfo) -> Sample {
        let p = &self.params;
        Sample {
            tensor: t.name.clone(),
            windows: sampling::windows(
                &format!("e9|{family}|{:?}", t.shape),
                p.seed,
                t.numel,
                p.window_elems,
                p.windows,
            ),
        }
    }

    /// MoE layers (by index) whose experts are sampled in model `m`: a seeded subset of the
    /// layers with experts, the same subset for every model of the same depth.
    fn expert_layers(&self, model: &Model) -> Vec<u32> {
        let layers: BTreeSet<u32> = model
            .tensors()
            .iter()
            .filter(|t| t.role.expert.is_some() && !t.role.mtp)
            .filter(|t| EXPERT_FAMILIES.contains(&t.role.family))
            .filter_map(|t| t.role.layer)
            .collect();
        let mut v: Vec<u32> = layers.into_iter().collect();
        v.sort_by_key(|l| {
            let h = blake3::hash(format!("e9|layers|{}|{l}", self.params.seed).as_bytes());
            let mut b = [0u8; 8];
            b.copy_from_slice(&h.as_bytes()[..8]);
            u64::from_le_bytes(b)
        });
        v.truncate(self.params.expert_layers);
        v.sort_unstable();
        v
    }

    /// Per expert, the concatenated windows of gate, up and down (`None` if incomplete).
    fn expert_rows(
        &self,
        data: &Data,
        m: usize,
        model: &Model,
        layer: u32,
    ) -> Option<Vec<Vec<f32>>> {
        let experts = experts_of(model, layer);
        if experts.is_empty() || experts.iter().any(Vec::is_empty) {
            return None;
        }
        let mut rows = Vec::new();
        for ts in &experts {
            let mut row = Vec::new();
            for t in ts {
                row.extend_from_slice(data.get(m, &self.window(t.role.family, t)).ok()?);
            }
            rows.push(row);
        }
        let d = rows[0].len();
        rows.iter().all(|r| r.len() == d && d > 0).then_some(rows)
    }

    #[allow(clippy::too_many_arguments)]
    fn layer_match(
        &self,
        subjects: &Subjects,
        (i, j): (usize, usize),
        layer: u32,
        kind: &str,
        a: &[Vec<f32>],
        b: &[Vec<f32>],
    ) -> Option<LayerMatch> {
        let d = a.first()?.len();
        if d == 0 || b.first()?.len() != d {
            return None;
        }
        let (na, nb) = (normalised(a), normalised(b));
        let (score, m) = assignment_score(&na, &nb);
        let same: Vec<f64> = nb.iter().zip(&na).map(|(x, y)| dot(x, y)).collect();
        let kind_seed = if kind == "router" { 1 } else { 2 };
        let null = permutation_null(
            &na,
            &nb,
            self.params.null_draws,
            self.params.seed ^ (u64::from(layer) << 8) ^ kind_seed,
        );
        let identity = m
            .iter()
            .enumerate()
            .filter(|(r, c)| **c == Some(*r))
            .count() as f64
            / b.len() as f64;
        Some(LayerMatch {
            pair: subjects.pair_label(i, j),
            primary: Subjects::is_primary(i, j),
            layer,
            kind: kind.into(),
            experts_a: a.len(),
            experts_b: b.len(),
            dims: d,
            score: round9(score),
            same_index_score: round9(same.iter().sum::<f64>() / same.len().max(1) as f64),
            null_mean: round9(null.0),
            null_sd: round9(null.1),
            null_row_max_bound: round9(expected_max_normal(a.len()) / (d as f64).sqrt()),
            z: round9(if null.1 > 0.0 {
                (score - null.0) / null.1
            } else {
                f64::NAN
            }),
            identity_rate: round9(identity),
            permutation: m.iter().map(|c| c.map(|c| c as u32)).collect(),
        })
    }
}

impl Experiment for Experts {
    fn id(&self) -> &'static str {
        "e9"
    }

    fn plan(&self, subjects: &Subjects, plan: &mut Plan) {
        for (m, s) in subjects.models.iter().enumerate() {
            for (_, t) in routers(s.model) {
                plan.add(m, Sample::whole(&t.name, t.numel));
            }
            for l in self.expert_layers(s.model) {
                for ts in experts_of(s.model, l) {
                    for t in ts {
                        plan.add(m, self.window(t.role.family, t));
                    }
                }
            }
        }
    }

    fn run(&self, subjects: &Subjects, data: &Data) -> Result<Output> {
        let mut layers = Vec::new();
        for (i, j) in subjects.pairs() {
            let (ma, mb) = (subjects.models[i].model, subjects.models[j].model);
            let rb = routers(mb);
            for (l, ta) in routers(ma) {
                let Some((_, tb)) = rb.iter().find(|(lb, _)| *lb == l) else {
                    continue;
                };
                let a = oriented_rows(ta, data.get(i, &Sample::whole(&ta.name, ta.numel))?);
                let b = oriented_rows(tb, data.get(j, &Sample::whole(&tb.name, tb.numel))?);
                layers.extend(self.layer_match(subjects, (i, j), l, "router", &a, &b));
            }
            let lb = self.expert_layers(mb);
            for l in self.expert_layers(ma) {
                if !lb.contains(&l) {
                    continue;
                }
                let (Some(a), Some(b)) = (
                    self.expert_rows(data, i, ma, l),
                    self.expert_rows(data, j, mb, l),
                ) else {
                    continue;
                };
                layers.extend(self.layer_match(subjects, (i, j), l, "experts", &a, &b));
            }
        }
        let summary = summarise(subjects, &layers);
        Output::new(
            "e9",
            &Result9 {
                params: self.params.clone(),
                layers,
                summary,
            },
        )
    }
}

fn summarise(subjects: &Subjects, layers: &[LayerMatch]) -> Vec<PairSummary> {
    let mut out = Vec::new();
    for (i, j) in subjects.pairs() {
        let pair = subjects.pair_label(i, j);
        for kind in ["router", "experts"] {
            let ls: Vec<&LayerMatch> = layers
                .iter()
                .filter(|l| l.pair == pair && l.kind == kind)
                .collect();
            if ls.is_empty() {
                continue;
            }
            let n = ls.len() as f64;
            let mean = |f: fn(&LayerMatch) -> f64| round9(ls.iter().map(|l| f(l)).sum::<f64>() / n);
            let agree = (kind == "experts").then(|| {
                ls.iter()
                    .filter(|e| {
                        layers.iter().any(|r| {
                            r.pair == pair
                                && r.kind == "router"
                                && r.layer == e.layer
                                && r.permutation == e.permutation
                        })
                    })
                    .count()
            });
            out.push(PairSummary {
                pair: pair.clone(),
                primary: Subjects::is_primary(i, j),
                kind: kind.into(),
                layers: ls.len(),
                mean_score: mean(|l| l.score),
                mean_null: mean(|l| l.null_mean),
                mean_z: mean(|l| l.z),
                permutations_agree: agree,
            });
        }
    }
    out
}

/// This experiment's tables, from its result as results.json records it.
pub fn tables(result: &serde_json::Value) -> Result<Vec<Table>> {
    let r: Result9 = super::readback::from_value(result)?;
    Ok(build_tables(&r.layers, &r.summary))
}

fn build_tables(layers: &[LayerMatch], summary: &[PairSummary]) -> Vec<Table> {
    let mut t = Table::new(
        "e9_experts",
        &[
            "pair",
            "primary",
            "layer",
            "kind",
            "experts_a",
            "experts_b",
            "dims",
            "score",
            "same_index_score",
            "null_mean",
            "null_sd",
            "null_row_max_bound",
            "z",
            "identity_rate",
            "permutation",
        ],
    );
    for l in layers {
        let perm: Vec<String> = l
            .permutation
            .iter()
            .map(|p| p.map_or_else(|| "-".into(), |v| v.to_string()))
            .collect();
        t.rows.push(vec![
            l.pair.clone(),
            l.primary.to_string(),
            l.layer.to_string(),
            l.kind.clone(),
            l.experts_a.to_string(),
            l.experts_b.to_string(),
            l.dims.to_string(),
            fmt(l.score),
            fmt(l.same_index_score),
            fmt(l.null_mean),
            fmt(l.null_sd),
            fmt(l.null_row_max_bound),
            fmt(l.z),
            fmt(l.identity_rate),
            perm.join(" "),
        ]);
    }
    let mut s = Table::new(
        "e9_summary",
        &[
            "pair",
            "primary",
            "kind",
            "layers",
            "mean_score",
            "mean_null",
            "mean_z",
            "permutations_agree",
        ],
    );
    for r in summary {
        s.rows.push(vec![
            r.pair.clone(),
            r.primary.to_string(),
            r.kind.clone(),
            r.layers.to_string(),
            fmt(r.mean_score),
            fmt(r.mean_null),
            fmt(r.mean_z),
            r.permutations_agree
                .map(|v| v.to_string())
                .unwrap_or_default(),
        ]);
    }
    vec![t, s]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Standard normal draws (Box–Muller) from a seeded generator.
    struct Gauss {
        rng: fastrand::Rng,
        spare: Option<f64>,
    }

    impl Gauss {
        fn new(seed: u64) -> Gauss {
            Gauss {
                rng: fastrand::Rng::with_seed(seed),
                spare: None,
            }
        }

        fn next(&mut self) -> f64 {
            if let Some(s) = self.spare.take() {
                return s;
            }
            let u1 = 1.0 - self.rng.f64(); // (0, 1]
            let u2 = self.rng.f64();
            let r = (-2.0 * u1.ln()).sqrt();
            let t = std::f64::consts::TAU * u2;
            self.spare = Some(r * t.sin());
            r * t.cos()
        }
    }

    fn gaussian_rows(g: &mut Gauss, n: usize, d: usize) -> Vec<Vec<f32>> {
        (0..n)
            .map(|_| (0..d).map(|_| g.next() as f32).collect())
            .collect()
    }

    #[test]
    fn permutation_null_of_random_rows_matches_the_published_value() {
        // 128 random rows in 4096 dims: ≈ 0.038 (methods digest §2: 0.0379 ± 0.0004).
        let mut g = Gauss::new(7);
        let (a, b) = (
            gaussian_rows(&mut g, 128, 4096),
            gaussian_rows(&mut g, 128, 4096),
        );
        let (mean, sd) = permutation_null(&normalised(&a), &normalised(&b), 4, 7);
        assert!((mean - 0.0379).abs() < 0.002, "{mean} ± {sd}");
    }

    #[test]
    fn unrelated_upcycled_experts_stay_in_the_permutation_null() {
        // Each model's experts were upcycled from its own MLP: rows = a shared component +
        // noise. Unrelated pairs differ only in how the two shared components happen to line
        // up, which shifts every cosine alike. Against i.i.d. Gaussian rows that shift reads as
        // a match (|z| in the tens); the coordinate-permutation null moves the shared component
        // with B's rows and keeps z at the scale of one. A derived B stays far beyond.
        let (n, d, draws) = (16, 256, 40);
        let upcycled = |g: &mut Gauss| -> Vec<Vec<f64>> {
            let shared: Vec<f32> = (0..d).map(|_| 2.0 * g.next() as f32).collect();
            let rows: Vec<Vec<f32>> = gaussian_rows(g, n, d)
                .into_iter()
                .map(|r| r.iter().zip(&shared).map(|(x, s)| x + s).collect())
                .collect();
            normalised(&rows)
        };
        let mut g = Gauss::new(5);
        let gaussian: Vec<f64> = (0..draws)
            .map(|_| {
                let (a, b) = (gaussian_rows(&mut g, n, d), gaussian_rows(&mut g, n, d));
                assignment_score(&normalised(&a), &normalised(&b)).0
            })
            .collect();
        let (gm, gsd) = (stats::mean(&gaussian), stats::sample_sd(&gaussian));
        let (mut z_perm, mut z_gauss) = (Vec::new(), Vec::new());
        for seed in 0..30 {
            let mut g = Gauss::new(100 + seed);
            let (a, b) = (upcycled(&mut g), upcycled(&mut g));
            let (score, _) = assignment_score(&a, &b);
            let (m, sd) = permutation_null(&a, &b, draws, seed);
            z_perm.push((score - m) / sd);
            z_gauss.push((score - gm) / gsd);
        }
        let worst = |z: &[f64]| z.iter().fold(0.0f64, |w, x| w.max(x.abs()));
        assert!(worst(&z_perm) < 5.0, "{z_perm:?}");
        assert!(worst(&z_gauss) > 10.0, "{z_gauss:?}");
        // a derived B: A's experts reordered, with fine-tuning noise
        let mut g = Gauss::new(77);
        let a = upcycled(&mut g);
        let b: Vec<Vec<f64>> = (0..n)
            .map(|i| a[(i + 5) % n].iter().map(|x| x + 0.02 * g.next()).collect())
            .collect();
        let b = normalised(
            &b.iter()
                .map(|r| r.iter().map(|&x| x as f32).collect())
                .collect::<Vec<Vec<f32>>>(),
        );
        let (score, m) = assignment_score(&a, &b);
        let (mean, sd) = permutation_null(&a, &b, draws, 1);
        assert!((score - mean) / sd > 10.0, "{score} vs {mean} ± {sd}");
        assert_eq!(m[0], Some(5));
    }

    #[test]
    fn expected_maximum_of_normals() {
        assert!(expected_max_normal(1).abs() < 1e-9);
        // 1/√π for two normals; 1.16296 for five (tabulated).
        assert!((expected_max_normal(2) - 1.0 / std::f64::consts::PI.sqrt()).abs() < 1e-6);
        assert!((expected_max_normal(5) - 1.16296).abs() < 1e-4);
        let bound = expected_max_normal(128) / 64.0;
        assert!(bound > 0.0379 && bound < 0.042, "{bound}");
    }

    #[test]
    fn assignment_recovers_a_permutation() {
        let mut g = Gauss::new(3);
        let a: Vec<Vec<f32>> = (0..6)
            .map(|_| (0..32).map(|_| g.next() as f32).collect())
            .collect();
        let perm = [3usize, 0, 5, 1, 4, 2];
        let b: Vec<Vec<f32>> = perm.iter().map(|&p| a[p].clone()).collect();
        let (score, m) = assignment_score(&normalised(&a), &normalised(&b));
        assert!((score - 1.0).abs() < 1e-6);
        assert_eq!(m, perm.iter().map(|&p| Some(p)).collect::<Vec<_>>());
    }
}
