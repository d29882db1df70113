//! E10 MLP unit matching: an independence test with p-values from the MLP's hidden-unit
//! symmetry (Zhu, Ahmed, Kuditipudi, Liang, "Independence Tests for Language Models", ICML
//! 2025; their code `salzhu/model-tracing`, statistics `csu` and `match`).
//!
//! **Null hypothesis.** A and B were trained from independent random initialisations, in the
//! paper's *constrained setting*: each model's initialisation distribution is unchanged by
//! permuting the hidden units of an MLP (rows of gate and up, columns of down, together), and
//! training is equivariant to such permutations, so the units of every MLP layer are
//! exchangeable. Standard i.i.d. initialisation with SGD/Adam satisfies this. The training data
//! may be anything, identical included.
//!
//! **The test.** Per layer (paired by index over the first min(L_A, L_B) layers), B's units are
//! matched to A's twice, by cosine of their weight vectors and a maximum-weight assignment
//! (`lsap`, through [`crate::assignment::hungarian_assignment`]): once on the gate rows and once on the up
//! rows (a plain BERT/GPT-style MLP: up rows and down columns). Shared ancestry makes the two
//! matchings agree; the one-sided Spearman correlation of the two permutations gives a p-value
//! per layer ([`stats::spearman_upper_ln_p`]), Fisher's method combines the layers
//! ([`stats::fisher_ln`]). A unit permutation of B (function unchanged) relabels both matchings
//! alike and leaves ρ unchanged, so it cannot hide a derivation.
//!
//! **Which statistic is exact, under which null.**
//! - `in_place_*` (the paper's `csu`): the up-row matching against the identity. Relabelling A's
//!   units by a uniform random permutation π leaves A's distribution unchanged (null) and is
//!   independent of B, and it composes the matching with π: the matching is a uniform random
//!   permutation and its Spearman p-value is exact (the Spearman tail itself is enumerated for
//!   n ≤ 9 and normal above, conservative in the far tail). Layers use disjoint symmetries, so
//!   their p-values are independent and Fisher is exact too. But B permuting its own units
//!   sends this matching to a uniform permutation as well: evaded for free. Reported, not the
//!   headline.
//! - `p_value` (gate~up, the headline; the paper's `match` statistic computed on weights
//!   instead of activations): *not* exact from the symmetry alone. Relabelling A's units
//!   conjugates τ = σ_up ∘ σ_gate⁻¹ and relabelling B's leaves τ unchanged, so the symmetry never
//!   changes τ's cycle type (its fixed points are the `agreement`). More generally, the symmetry
//!   that yields exact p-values is the one an adversary uses: no statistic blind to a unit
//!   permutation of B can be exact by symmetry alone. The gate~up p-value is exact under the
//!   stronger null that in one of the models the gate rows and the up rows are independent and
//!   each exchangeable (then the two matchings are independent and one is uniform): true at
//!   initialisation, approximately true after training unless the gate and up rows of a unit
//!   are aligned in both models. The paper reports that the activation version "behaves like a
//!   p-value" empirically; the lab's independent pairs check calibration here.
//!
//! One-sided: only agreement (ρ > 0) is evidence; a derivation never produces anti-agreement,
//! and the paper's two-sided scipy p-value would double every p.
//!
//! **What the test cannot see.** The row cosines compare coordinates of the residual stream, so
//! a rotated, mixed or permuted residual stream (`rotate_hidden`, SliceGPT, `permute_hidden`)
//! makes the two matchings independent and the p-value uniform: E8 (aligned CKA) covers those.
//! Models whose MLP widths differ (units or hidden width), or gated against plain MLPs, are not
//! applicable: the pair is skipped with the reason. MoE experts are E9's. A degenerate layer
//! (zero or constant rows, so some unit is equally similar to every unit of the other model and
//! the matching is arbitrary) is reported and left out of Fisher's combination.
//!
//! **Bytes.** Tensors are read whole while a model's MLP matrices fit `max_mlp_bytes`; above
//! it, a seeded subset of hidden (input) coordinates is read, in blocks of `column_block`, the
//! same coordinates for every model of that hidden width and every unit (the matching is over
//! units, so all units stay; a subset of coordinates applied to every unit keeps the null
//! exact). `column_fraction` records the share read. The cosine matrix is units² f64, so pairs
//! wider than `max_units` are skipped rather than allocating gigabytes.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::e10_layers::{Axis, MlpLayer, Side, mlp_layers};
use super::{Data, Experiment, Output, Plan, Sample, Subjects, round9};
use crate::cka::MatRef;
use crate::hidden_alignment;
use crate::{sampling, stats};

/// E10's parameters (`[params.e10]`); every field has a default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Seed of the hidden-coordinate blocks read when the budget cuts.
    pub seed: u64,
    /// Most bytes of MLP matrices read per model; above it a fraction of the hidden coordinates
    /// is read (the same for every model of one hidden width).
    pub max_mlp_bytes: u64,
    /// Hidden coordinates per sampled block when the budget cuts.
    pub column_block: u64,
    /// Widest MLP matched: each matching holds a units × units f64 cosine matrix (512 MiB at
    /// 8192) and the assignment is cubic in it.
    pub max_units: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            seed: 0,
            max_mlp_bytes: 256 << 20,
            column_block: 128,
            max_units: 8192,
        }
    }
}

/// E10, MLP matching: do two independent matchings of B's MLP units to A's agree?
#[derive(Default)]
pub struct MlpMatching {
    /// Its parameters.
    pub params: Params,
}

/// One layer of one pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerRow {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// Layer key.
    pub layer: u32,
    /// `ok`, or `degenerate: <reason>` (then left out of the combination).
    pub status: String,
    /// Spearman ρ of the two matchings (gate~up, or up~down for a plain MLP).
    pub rho: Option<f64>,
    /// One-sided p-value of `rho` (only agreement is evidence).
    pub p_value: Option<f64>,
    /// log10 of `p_value`.
    pub log10_p: Option<f64>,
    /// Fraction of B's units the two matchings send to the same unit of A.
    pub agreement: Option<f64>,
    /// The up matching against the identity (`csu`): exact, but blind after a unit permutation.
    pub in_place_rho: Option<f64>,
    /// log10 of the one-sided p-value of `in_place_rho`.
    pub in_place_log10_p: Option<f64>,
}

/// The test of one pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairResult {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// `ok`, or `skipped: <reason>`.
    pub status: String,
    /// `gated` (gate and up rows matched) or `plain` (up rows and down columns).
    pub mlp_kind: String,
    /// MLP layers of A.
    pub layers_a: usize,
    /// MLP layers of B.
    pub layers_b: usize,
    /// Layers combined (common depth, degenerate layers left out).
    pub layers_tested: usize,
    /// Layers left out as degenerate.
    pub layers_degenerate: usize,
    /// Hidden units per MLP (d_ff) and the residual width.
    pub units: usize,
    /// Residual width.
    pub hidden: usize,
    /// Share of hidden coordinates read (1 = whole tensors).
    #[serde(deserialize_with = "super::nan_if_null")]
    pub column_fraction: f64,
    /// How the per-layer p-values were computed: `exact` (n ≤ 9) or `normal`.
    pub spearman_tail: String,
    /// Fisher's statistic −2 Σ ln p over the tested layers.
    pub fisher_chi2: Option<f64>,
    /// Its degrees of freedom, 2 × layers tested.
    pub dof: usize,
    /// Combined p-value; 0 when below the smallest f64, `log10_p` keeps the magnitude.
    pub p_value: Option<f64>,
    /// log10 of the combined p-value.
    pub log10_p: Option<f64>,
    /// Mean per-layer `agreement` over the tested layers.
    pub mean_agreement: Option<f64>,
    /// Fisher's combination of the `in_place` layer p-values (exact under the null; evaded by a
    /// unit permutation of B).
    pub in_place_p_value: Option<f64>,
    /// log10 of `in_place_p_value`.
    pub in_place_log10_p: Option<f64>,
}

/// E10's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Result10 {
    /// The parameters it ran with.
    pub params: Params,
    /// Each pair's test, A~B first.
    pub pairs: Vec<PairResult>,
    /// Every layer of every pair.
    pub layers: Vec<LayerRow>,
}

impl MlpMatching {
    /// Per hidden width: the hidden-coordinate windows every model of that width reads.
    fn columns(&self, subjects: &Subjects) -> BTreeMap<u64, Vec<(u64, u64)>> {
        let mut fraction: BTreeMap<u64, f64> = BTreeMap::new();
        for s in &subjects.models {
            let Ok(layers) = mlp_layers(s.model) else {
                continue;
            };
            let bytes: u64 = layers
                .iter()
                .map(|l| l.first.t.bytes() + l.second.t.bytes())
                .sum();
            let f = if bytes == 0 {
                1.0
            } else {
                (self.params.max_mlp_bytes as f64 / bytes as f64).min(1.0)
            };
            for l in &layers {
                let e = fraction.entry(l.hidden).or_insert(1.0);
                *e = e.min(f);
            }
        }
        fraction
            .into_iter()
            .map(|(d, f)| {
                let windows = if f >= 1.0 {
                    vec![(0, d)]
                } else {
                    let block = self.params.column_block.max(1);
                    let want = ((d as f64 * f).ceil() as u64).max(1);
                    sampling::windows(
                        &format!("e10|columns|{d}"),
                        self.params.seed,
                        d,
                        block,
                        want.div_ceil(block),
                    )
                };
                (d, windows)
            })
            .collect()
    }
}

/// The sample of one matrix reading the hidden coordinates `cols` of every unit.
fn sample(side: Side, units: u64, hidden: u64, cols: &[(u64, u64)]) -> Sample {
    if cols == [(0, hidden)] {
        return Sample::whole(&side.t.name, side.t.numel);
    }
    let windows = match side.axis {
        Axis::Rows => (0..units)
            .flat_map(|r| cols.iter().map(move |&(c, len)| (r * hidden + c, len)))
            .collect(),
        Axis::Cols => cols
            .iter()
            .map(|&(c, len)| (c * units, len * units))
            .collect(),
    };
    Sample {
        tensor: side.t.name.clone(),
        windows,
    }
}

/// A matrix as `features × units` (row-major): each column is one unit's weight vector.
fn by_units(side: Side, values: &[f32], units: usize, features: usize) -> Result<Vec<f32>> {
    if values.len() != units * features {
        bail!(
            "{}: {} values read, expected {units} units x {features} coordinates",
            side.t.name,
            values.len()
        );
    }
    Ok(match side.axis {
        Axis::Cols => values.to_vec(),
        Axis::Rows => {
            let mut out = vec![0.0; values.len()];
            for (u, row) in values.chunks_exact(features).enumerate() {
                for (f, &v) in row.iter().enumerate() {
                    out[f * units + u] = v;
                }
            }
            out
        }
    })
}

/// Below this spread a unit's cosines to every unit of the other model count as constant.
const DEGENERATE_SPREAD: f64 = 1e-9;

/// For each unit of B, the unit of A matched by cosine and assignment; `Err` with the reason
/// when some unit is equally similar to every unit of the other model (zero or constant rows).
fn match_units(
    a: &[f32],
    b: &[f32],
    units: usize,
    features: usize,
) -> Result<std::result::Result<Vec<usize>, String>> {
    let s = hidden_alignment::column_cosines(
        MatRef::new(b, features, units)?,
        MatRef::new(a, features, units)?,
    )?;
    // NaN cosines (never produced from finite weights) count as no spread too
    let varies = |vals: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        hi - lo > DEGENERATE_SPREAD
    };
    for k in 0..units {
        if !varies(&mut s[k * units..(k + 1) * units].iter().copied()) {
            return Ok(Err(format!(
                "unit {k} of B is equally similar to every unit of A"
            )));
        }
        if !varies(&mut (0..units).map(|r| s[r * units + k])) {
            return Ok(Err(format!(
                "unit {k} of A is equally similar to every unit of B"
            )));
        }
    }
    Ok(Ok(crate::assignment::hungarian_assignment(
        &s, units, units,
    )?))
}

/// Pure per-layer statistics from the two matchings (`first`, `second`: B unit → A unit) and
/// which one is the up projection's: (ρ, ln p, exact tail, agreement, in-place ρ, in-place ln p).
pub fn layer_statistics(
    first: &[usize],
    second: &[usize],
    up_is_first: bool,
) -> Option<(f64, f64, bool, f64, f64, f64)> {
    let n = first.len();
    let rho = stats::spearman_permutations(first, second)?;
    let (ln_p, exact) = stats::spearman_upper_ln_p(rho, n);
    let agreement = first.iter().zip(second).filter(|(x, y)| x == y).count() as f64 / n as f64;
    let identity: Vec<usize> = (0..n).collect();
    let up = if up_is_first { first } else { second };
    let in_place = stats::spearman_permutations(up, &identity)?;
    let (in_place_ln_p, _) = stats::spearman_upper_ln_p(in_place, n);
    Some((rho, ln_p, exact, agreement, in_place, in_place_ln_p))
}

fn log10(ln: f64) -> f64 {
    ln / std::f64::consts::LN_10
}

fn skipped(subjects: &Subjects, (i, j): (usize, usize), why: String) -> PairResult {
    PairResult {
        pair: subjects.pair_label(i, j),
        primary: Subjects::is_primary(i, j),
        status: format!("skipped: {why}"),
        mlp_kind: String::new(),
        layers_a: 0,
        layers_b: 0,
        layers_tested: 0,
        layers_degenerate: 0,
        units: 0,
        hidden: 0,
        column_fraction: f64::NAN,
        spearman_tail: String::new(),
        fisher_chi2: None,
        dof: 0,
        p_value: None,
        log10_p: None,
        mean_agreement: None,
        in_place_p_value: None,
        in_place_log10_p: None,
    }
}

impl Experiment for MlpMatching {
    fn id(&self) -> &'static str {
        "e10"
    }

    fn plan(&self, subjects: &Subjects, plan: &mut Plan) {
        let columns = self.columns(subjects);
        for (m, s) in subjects.models.iter().enumerate() {
            let Ok(layers) = mlp_layers(s.model) else {
                continue;
            };
            for l in &layers {
                let Some(cols) = columns.get(&l.hidden) else {
                    continue;
                };
                for side in [l.first, l.second] {
                    plan.add(m, sample(side, l.units, l.hidden, cols));
                }
            }
        }
    }

    fn run(&self, subjects: &Subjects, data: &Data) -> Result<Output> {
        let columns = self.columns(subjects);
        let mut pairs = Vec::new();
        let mut layers = Vec::new();
        for (i, j) in subjects.pairs() {
            let (pair, rows) = self.pair(subjects, data, &columns, (i, j))?;
            pairs.push(pair);
            layers.extend(rows);
        }
        Output::new(
            "e10",
            &Result10 {
                params: self.params.clone(),
                pairs,
                layers,
            },
        )
    }
}

impl MlpMatching {
    fn pair(
        &self,
        subjects: &Subjects,
        data: &Data,
        columns: &BTreeMap<u64, Vec<(u64, u64)>>,
        (i, j): (usize, usize),
    ) -> Result<(PairResult, Vec<LayerRow>)> {
        let (ma, mb) = (subjects.models[i].model, subjects.models[j].model);
        let (la, lb) = match (mlp_layers(ma), mlp_layers(mb)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) => return Ok((skipped(subjects, (i, j), format!("A side: {e}")), vec![])),
            (_, Err(e)) => return Ok((skipped(subjects, (i, j), format!("B side: {e}")), vec![])),
        };
        let (a0, b0) = (&la[0], &lb[0]);
        if a0.kind != b0.kind {
            let why = format!(
                "MLP kinds differ ({} vs {}): no common units to match",
                a0.kind.name(),
                b0.kind.name()
            );
            return Ok((skipped(subjects, (i, j), why), vec![]));
        }
        let pairs = match common_layers(&la, &lb) {
            Ok(pairs) => pairs,
            Err(why) => return Ok((skipped(subjects, (i, j), why), vec![])),
        };
        let Some((first_a, _)) = pairs.first() else {
            return Ok((
                skipped(subjects, (i, j), "no layer index in common".into()),
                vec![],
            ));
        };
        let (units, hidden) = (first_a.units as usize, first_a.hidden);
        if units > self.params.max_units {
            let why = format!(
                "{units} units exceed max_units = {} (raise [params.e10] max_units: the cosine \
                 matrix is units² f64)",
                self.params.max_units
            );
            return Ok((skipped(subjects, (i, j), why), vec![]));
        }
        let cols = columns
            .get(&hidden)
            .with_context(|| format!("no column plan for hidden width {hidden}"))?;
        let features = sampling::covered(cols) as usize;
        let label = subjects.pair_label(i, j);
        let primary = Subjects::is_primary(i, j);
        let Tested {
            rows,
            ln_ps,
            in_place,
            agree,
            exact_tail,
        } = test_layers(
            data,
            (i, j),
            &pairs,
            cols,
            (units, features),
            &label,
            primary,
        )?;
        let fisher = stats::fisher_ln(&ln_ps);
        let fisher_in_place = stats::fisher_ln(&in_place);
        let status = if fisher.is_some() {
            "ok".to_string()
        } else {
            "skipped: every layer is degenerate".to_string()
        };
        let result = PairResult {
            pair: label,
            primary,
            status,
            mlp_kind: a0.kind.name().into(),
            layers_a: la.len(),
            layers_b: lb.len(),
            layers_tested: ln_ps.len(),
            layers_degenerate: rows.len() - ln_ps.len(),
            units,
            hidden: hidden as usize,
            column_fraction: round9(features as f64 / hidden as f64),
            spearman_tail: if exact_tail { "exact" } else { "normal" }.into(),
            fisher_chi2: fisher.map(|f| round9(f.chi2)),
            dof: fisher.map_or(0, |f| f.dof),
            p_value: fisher.map(|f| round9(f.p_value())),
            log10_p: fisher.map(|f| round9(f.log10_p())),
            mean_agreement: (!agree.is_empty())
                .then(|| round9(agree.iter().sum::<f64>() / agree.len() as f64)),
            in_place_p_value: fisher_in_place.map(|f| round9(f.p_value())),
            in_place_log10_p: fisher_in_place.map(|f| round9(f.log10_p())),
        };
        Ok((result, rows))
    }
}

/// Layers of A paired with the layer of B of the same index.
type LayerPairs<'l, 'm> = Vec<(&'l MlpLayer<'m>, &'l MlpLayer<'m>)>;

/// The layers of A and B below the shallower depth, paired by index; or why E10 does not
/// apply (the widths differ).
fn common_layers<'l, 'm>(
    la: &'l [MlpLayer<'m>],
    lb: &'l [MlpLayer<'m>],
) -> std::result::Result<LayerPairs<'l, 'm>, String> {
    let depth = |ls: &[MlpLayer]| ls.iter().map(|l| l.layer + 1).max().unwrap_or(0);
    let common = depth(la).min(depth(lb));
    let pairs: Vec<(&MlpLayer, &MlpLayer)> = la
        .iter()
        .filter(|l| l.layer < common)
        .filter_map(|a| Some((a, lb.iter().find(|b| b.layer == a.layer)?)))
        .collect();
    if let Some((a, b)) = pairs
        .iter()
        .find(|(a, b)| (a.units, a.hidden) != (b.units, b.hidden))
    {
        let why = format!(
            "MLP widths differ at layer {} (A: {} units x {} hidden, B: {} x {}); the unit \
             matching needs equal widths, so E10 does not apply",
            a.layer, a.units, a.hidden, b.units, b.hidden
        );
        return Err(why);
    }
    Ok(pairs)
}

/// What the layers of a pair give: their rows, and the per-layer statistics the pair's
/// result combines.
struct Tested {
    rows: Vec<LayerRow>,
    ln_ps: Vec<f64>,
    in_place: Vec<f64>,
    agree: Vec<f64>,
    exact_tail: bool,
}

/// Each layer pair's units matched on both projections and the two matchings compared.
fn test_layers(
    data: &Data,
    (i, j): (usize, usize),
    pairs: &[(&MlpLayer, &MlpLayer)],
    cols: &[(u64, u64)],
    (units, features): (usize, usize),
    label: &str,
    primary: bool,
) -> Result<Tested> {
    let (mut rows, mut ln_ps, mut in_place, mut agree) = (vec![], vec![], vec![], vec![]);
    let mut exact_tail = false;
    for (a, b) in pairs {
        let read = |m: usize, l: &MlpLayer, side: Side| -> Result<Vec<f32>> {
            let v = data.get(m, &sample(side, l.units, l.hidden, cols))?;
            by_units(side, v, units, features)
        };
        let (a1, a2) = (read(i, a, a.first)?, read(i, a, a.second)?);
        let (b1, b2) = (read(j, b, b.first)?, read(j, b, b.second)?);
        let (m1, m2) = rayon::join(
            || match_units(&a1, &b1, units, features),
            || match_units(&a2, &b2, units, features),
        );
        let (m1, m2) = (
            m1.with_context(|| format!("{label} layer {}: matching {}", a.layer, a.first.t.name))?,
            m2.with_context(|| format!("{label} layer {}: matching {}", a.layer, a.second.t.name))?,
        );
        let mut row = LayerRow {
            pair: label.to_string(),
            primary,
            layer: a.layer,
            status: "ok".into(),
            rho: None,
            p_value: None,
            log10_p: None,
            agreement: None,
            in_place_rho: None,
            in_place_log10_p: None,
        };
        let stats = match (&m1, &m2) {
            (Ok(f), Ok(s)) => layer_statistics(f, s, a.up_is_first()),
            _ => None,
        };
        match stats {
            Some((rho, ln_p, exact, agreement, ip_rho, ip_ln_p)) => {
                exact_tail = exact;
                ln_ps.push(ln_p);
                in_place.push(ip_ln_p);
                agree.push(agreement);
                row.rho = Some(round9(rho));
                row.p_value = Some(round9(ln_p.exp()));
                row.log10_p = Some(round9(log10(ln_p)));
                row.agreement = Some(round9(agreement));
                row.in_place_rho = Some(round9(ip_rho));
                row.in_place_log10_p = Some(round9(log10(ip_ln_p)));
            }
            None => {
                let why = [&m1, &m2]
                    .into_iter()
                    .find_map(|m| m.as_ref().err().cloned())
                    .unwrap_or_else(|| "matchings are not permutations".into());
                row.status = format!("degenerate: {why}");
            }
        }
        rows.push(row);
    }
    Ok(Tested {
        rows,
        ln_ps,
        in_place,
        agree,
        exact_tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::e10_layers::unit_axis;
    use crate::model::TensorInfo;

    #[test]
    fn layer_statistics_by_hand() {
        // the two matchings agree on 2 of 4 units: Σd² = 2, ρ = 1 − 12/60 = 0.8
        let (rho, ln_p, exact, agreement, ip, _) =
            layer_statistics(&[1, 0, 2, 3], &[0, 1, 2, 3], false).unwrap();
        assert_eq!((rho, exact, agreement), (0.8, true, 0.5));
        // the in-place statistic reads the up matching (second, for a gated MLP): identity
        assert_eq!(ip, 1.0);
        // P(ρ ≥ 0.8) for n = 4: Σd² ≤ 2 holds for the identity and the 3 adjacent swaps
        assert!((ln_p.exp() - 4.0 / 24.0).abs() < 1e-12);
        let (_, _, _, _, ip_first, _) =
            layer_statistics(&[1, 0, 2, 3], &[0, 1, 2, 3], true).unwrap();
        assert_eq!(ip_first, 0.8);
        assert!(layer_statistics(&[0, 0], &[0, 1], false).is_none());
    }

    #[test]
    fn units_are_read_along_the_right_axis() {
        // a [units=3, hidden=2] matrix and its transpose give the same features × units layout
        let t = |shape: Vec<u64>| TensorInfo {
            name: "w".into(),
            dtype: crate::dtype::Dtype::F32,
            numel: shape.iter().product(),
            shape,
            file: String::new(),
            begin: 0,
            end: 0,
            role: crate::arch::classify("w", &Default::default()),
            undo: Default::default(),
        };
        let (rows, cols) = (t(vec![3, 2]), t(vec![2, 3]));
        let r = Side {
            t: &rows,
            axis: Axis::Rows,
        };
        let c = Side {
            t: &cols,
            axis: Axis::Cols,
        };
        let a = by_units(r, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, 2).unwrap();
        let b = by_units(c, &[1.0, 3.0, 5.0, 2.0, 4.0, 6.0], 3, 2).unwrap();
        assert_eq!(a, vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        assert_eq!(a, b);
        assert!(by_units(r, &[1.0], 3, 2).is_err());
        // the axis follows the hidden width, whichever way the matrix is stored
        assert_eq!(
            unit_axis(&rows, Some(2), Axis::Cols),
            Some((Axis::Rows, 3, 2))
        );
        assert_eq!(
            unit_axis(&cols, Some(2), Axis::Rows),
            Some((Axis::Cols, 3, 2))
        );
        assert_eq!(unit_axis(&cols, Some(5), Axis::Rows), None);
        assert_eq!(unit_axis(&cols, None, Axis::Rows), Some((Axis::Rows, 2, 3)));
    }

    #[test]
    fn a_planted_unit_permutation_is_recovered_and_constant_rows_are_degenerate() {
        let mut r = fastrand::Rng::with_seed(5);
        let (units, features) = (12, 16);
        let a: Vec<f32> = (0..units * features).map(|_| r.f32() - 0.5).collect();
        let perm = [3usize, 7, 0, 11, 1, 9, 2, 10, 4, 8, 5, 6];
        // B's unit k is A's unit perm[k] (features × units layout: column k)
        let mut b = vec![0.0; a.len()];
        for f in 0..features {
            for k in 0..units {
                b[f * units + k] = a[f * units + perm[k]];
            }
        }
        assert_eq!(match_units(&a, &b, units, features).unwrap().unwrap(), perm);
        let flat = vec![1.0; a.len()];
        let why = match_units(&a, &flat, units, features)
            .unwrap()
            .unwrap_err();
        assert!(why.contains("equally similar"), "{why}");
    }
}
