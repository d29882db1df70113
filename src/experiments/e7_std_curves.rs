//! E7 std curves: the "intrinsic fingerprint" of per-layer standard deviations (and means
//! and kurtosis), z-scored, the shorter depth interpolated, compared by Pearson and DTW.
//!
//! Published critiques show unrelated models reaching 0.91 on this statistic (std tends to
//! rise with depth in every model), so it is only ever reported beside the same statistic
//! for every control pair, and the rubric treats it as weak evidence at most.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::e7_reference::{CurveSet, ModelCurves};
use super::roles::layers_of;
use super::{Data, Experiment, Output, Plan, Sample, Subjects, Table, fmt, round9};
use crate::arch::Family;
use crate::curves::compare_curves;
use crate::metrics::Moments;
use crate::model::TensorInfo;
use crate::sampling;

/// E7's parameters (`[params.e7]`); every field has a default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Seed of the windows read.
    pub seed: u64,
    /// Tensor families whose per-layer curves are compared.
    pub families: Vec<Family>,
    /// Elements per window read from each tensor.
    pub window_elems: u64,
    /// Windows read per tensor.
    pub windows: u64,
    /// Independent model pairs from the reference (`reference`) to show what unrelated models
    /// reach (0 = none).
    pub lab_null_pairs: u64,
}

impl Default for Params {
    fn default() -> Self {
        use Family::*;
        Params {
            seed: 0,
            families: vec![
                InputNorm,
                PostAttentionNorm,
                PostMlpNorm,
                AttnQ,
                AttnK,
                AttnV,
                AttnO,
                MlpUp,
                MlpDown,
            ],
            window_elems: 65_536,
            windows: 2,
            lab_null_pairs: 3,
        }
    }
}

/// E7, std curves: per-layer std, mean and kurtosis curves compared across models.
pub struct StdCurves {
    /// Its parameters.
    pub params: Params,
    /// Curves of independent models for the null: an input, the experiment makes no models
    /// (the registry gives it [`super::e7_reference::LabCurves`]).
    pub reference: Arc<dyn ModelCurves>,
}

/// Per-layer curves of one family in one model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Curves {
    /// The model's label.
    pub model: String,
    /// The tensor family.
    pub family: Family,
    /// Layer key of each point.
    pub layers: Vec<u32>,
    /// Population standard deviation of each layer's sampled values.
    pub std: Vec<f64>,
    /// Mean of each layer's sampled values.
    pub mean: Vec<f64>,
    /// Excess kurtosis of each layer's sampled values (0 for a normal distribution).
    pub kurtosis: Vec<f64>,
}

/// One statistic's curve comparison for one pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CurvePair {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// The tensor family.
    pub family: Family,
    /// `std`, `mean` or `kurtosis`.
    pub statistic: String,
    /// Pearson r of the z-scored curves, shorter one interpolated (higher = more alike; NaN if undefined).
    pub pearson: f64,
    /// DTW distance of the z-scored curves (lower = more alike; NaN if undefined).
    pub dtw: f64,
    /// Points in A's curve.
    pub len_a: usize,
    /// Points in B's curve.
    pub len_b: usize,
}

/// The audited pair's value beside the control pairs' values.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VersusControls {
    /// The tensor family.
    pub family: Family,
    /// `std`, `mean` or `kurtosis`.
    pub statistic: String,
    /// The audited pair's (A~B) curve Pearson r.
    pub primary_pearson: f64,
    /// Each control pair's curve Pearson r.
    pub control_pearsons: Vec<f64>,
    /// The largest of those (NaN without controls).
    pub max_control_pearson: f64,
    /// The same statistic between independent lab models of one recipe, at A's depth.
    pub lab_null_pearsons: Vec<f64>,
    /// True when the audited pair beats every control pair (never true without controls).
    pub exceeds_controls: bool,
}

/// E7's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Result7 {
    /// The parameters it ran with.
    pub params: Params,
    /// Every model's curves per family.
    pub curves: Vec<Curves>,
    /// Every pair's comparison per family and statistic, A~B first.
    pub pairs: Vec<CurvePair>,
    /// A~B against the control pairs, per family and statistic.
    pub versus_controls: Vec<VersusControls>,
}

impl StdCurves {
    fn sample(&self, family: Family, t: &TensorInfo) -> Sample {
        let p = &self.params;
        Sample {
            tensor: t.name.clone(),
            windows: sampling::windows(
                &format!("{family}/{}", t.role.layer.unwrap_or(0)),
                p.seed,
                t.numel,
                p.window_elems,
                p.windows,
            ),
        }
    }
}

impl Experiment for StdCurves {
    fn id(&self) -> &'static str {
        "e7"
    }

    fn plan(&self, subjects: &Subjects, plan: &mut Plan) {
        for m in 0..subjects.models.len() {
            for &f in &self.params.families {
                for t in layers_of(subjects.models[m].model, f).values() {
                    plan.add(m, self.sample(f, t));
                }
            }
        }
    }

    fn run(&self, subjects: &Subjects, data: &Data) -> Result<Output> {
        let mut curves: BTreeMap<(usize, Family), Curves> = BTreeMap::new();
        for m in 0..subjects.models.len() {
            for &f in &self.params.families {
                let layers = layers_of(subjects.models[m].model, f);
                if layers.len() < 3 {
                    continue;
                }
                let mut c = Curves {
                    model: subjects.models[m].label.clone(),
                    family: f,
                    layers: Vec::new(),
                    std: Vec::new(),
                    mean: Vec::new(),
                    kurtosis: Vec::new(),
                };
                for (l, t) in layers {
                    let mo = Moments::of(data.get(m, &self.sample(f, t))?);
                    c.layers.push(l);
                    c.std.push(round9(mo.std()));
                    c.mean.push(round9(mo.mean()));
                    c.kurtosis.push(round9(mo.kurtosis()));
                }
                curves.insert((m, f), c);
            }
        }
        let mut pairs = Vec::new();
        for (i, j) in subjects.pairs() {
            for &f in &self.params.families {
                let (Some(a), Some(b)) = (curves.get(&(i, f)), curves.get(&(j, f))) else {
                    continue;
                };
                for (stat, ca, cb) in [
                    ("std", &a.std, &b.std),
                    ("mean", &a.mean, &b.mean),
                    ("kurtosis", &a.kurtosis, &b.kurtosis),
                ] {
                    let cmp = compare_curves(ca, cb);
                    pairs.push(CurvePair {
                        pair: subjects.pair_label(i, j),
                        primary: Subjects::is_primary(i, j),
                        family: f,
                        statistic: stat.into(),
                        pearson: round9(cmp.pearson),
                        dtw: round9(cmp.dtw),
                        len_a: cmp.len_a,
                        len_b: cmp.len_b,
                    });
                }
            }
        }
        let depth = layers_of(subjects.models[0].model, Family::InputNorm)
            .len()
            .max(layers_of(subjects.models[0].model, Family::AttnQ).len());
        let lab_null = reference_null(
            self.reference.as_ref(),
            self.params.lab_null_pairs,
            depth,
            self.params.seed,
        )?;
        let versus_controls = versus_controls(&pairs, &lab_null);
        let result = Result7 {
            params: self.params.clone(),
            curves: curves.into_values().collect(),
            pairs,
            versus_controls,
        };
        Output::new("e7", &result)
    }
}

/// This experiment's tables, from its result as results.json records it.
pub fn tables(result: &serde_json::Value) -> Result<Vec<Table>> {
    let r: Result7 = super::readback::from_value(result)?;
    Ok(vec![curves_table(r.curves.iter()), pairs_table(&r.pairs)])
}

/// Curve Pearson between independent reference models (pairs of fresh seeds, one recipe) per
/// family and statistic: the published trap, measured rather than quoted.
fn reference_null(
    reference: &dyn ModelCurves,
    pairs: u64,
    depth: usize,
    seed: u64,
) -> Result<CurveSet> {
    let mut out = CurveSet::new();
    if depth < 3 {
        return Ok(out);
    }
    for k in 0..pairs {
        let (a, b) = (
            reference.curves(depth, seed * 1000 + 2 * k + 1)?,
            reference.curves(depth, seed * 1000 + 2 * k + 2)?,
        );
        for (key, ca) in &a {
            if let Some(cb) = b.get(key) {
                out.entry(key.clone())
                    .or_default()
                    .push(round9(compare_curves(ca, cb).pearson));
            }
        }
    }
    Ok(out)
}

fn versus_controls(
    pairs: &[CurvePair],
    lab_null: &BTreeMap<(Family, String), Vec<f64>>,
) -> Vec<VersusControls> {
    let mut out = Vec::new();
    for p in pairs.iter().filter(|p| p.primary) {
        let controls: Vec<f64> = pairs
            .iter()
            .filter(|c| !c.primary && c.family == p.family && c.statistic == p.statistic)
            .map(|c| c.pearson)
            .collect();
        let max = controls
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .fold(f64::NAN, f64::max);
        out.push(VersusControls {
            family: p.family,
            statistic: p.statistic.clone(),
            primary_pearson: p.pearson,
            exceeds_controls: max.is_finite() && p.pearson > max,
            max_control_pearson: max,
            control_pearsons: controls,
            lab_null_pearsons: lab_null
                .get(&(p.family, p.statistic.clone()))
                .cloned()
                .unwrap_or_default(),
        });
    }
    out
}

fn curves_table<'a>(curves: impl Iterator<Item = &'a Curves>) -> Table {
    let mut t = Table::new(
        "e7_curves",
        &["model", "family", "layer", "std", "mean", "kurtosis"],
    );
    for c in curves {
        for (k, l) in c.layers.iter().enumerate() {
            t.rows.push(vec![
                c.model.clone(),
                c.family.to_string(),
                l.to_string(),
                fmt(c.std[k]),
                fmt(c.mean[k]),
                fmt(c.kurtosis[k]),
            ]);
        }
    }
    t
}

fn pairs_table(pairs: &[CurvePair]) -> Table {
    let mut t = Table::new(
        "e7_pairs",
        &[
            "pair",
            "primary",
            "family",
            "statistic",
            "pearson",
            "dtw",
            "len_a",
            "len_b",
        ],
    );
    for p in pairs {
        t.rows.push(vec![
            p.pair.clone(),
            p.primary.to_string(),
            p.family.to_string(),
            p.statistic.clone(),
            fmt(p.pearson),
            fmt(p.dtw),
            p.len_a.to_string(),
            p.len_b.to_string(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Odd seeds rise with depth, even seeds fall: every reference pair correlates at −1.
    struct Opposite;

    impl ModelCurves for Opposite {
        fn curves(&self, depth: usize, seed: u64) -> Result<CurveSet> {
            let rising: Vec<f64> = (0..depth).map(|l| l as f64).collect();
            let curve = if seed % 2 == 1 {
                rising
            } else {
                rising.into_iter().rev().collect()
            };
            Ok(CurveSet::from([(
                (Family::InputNorm, "std".to_string()),
                curve,
            )]))
        }
    }

    #[test]
    fn the_null_comes_from_the_reference_it_is_given() {
        let key = (Family::InputNorm, "std".to_string());
        assert_eq!(
            reference_null(&Opposite, 3, 6, 0).unwrap()[&key],
            vec![-1.0; 3]
        );
        assert!(reference_null(&Opposite, 3, 2, 0).unwrap().is_empty()); // too shallow
        assert!(reference_null(&Opposite, 0, 6, 0).unwrap().is_empty());
    }
}
