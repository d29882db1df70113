//! E6 rotation-invariant spectra: per layer, the singular values of each projection in canonical
//! form (norm gains folded, [`super::canonical`]), compared across the two models layer by layer
//! and against the null of wrong-layer pairs of the same two models (and the control pairs).
//!
//! Why singular values of *whole* matrices: they are the square roots of the eigenvalues of the
//! Gram `WWᵀ` (= those of `WᵀW`), which no residual rotation (`W·Q` for readers, `Qᵀ·W` for
//! writers), head or row permutation, or sign flip can change, and folding the gains removes
//! channel rescaling. Spectra of a column *subset* are not invariant (a rotation mixes kept and
//! dropped columns), so matrices above `max_elems` are skipped rather than windowed, and the
//! skip is counted. Sliced models (fewer residual dims) keep their leading singular values
//! approximately; spectra are compared over the shorter length.
//!
//! The decision statistic is a rank test per matrix: does A's layer i find its closest B layer
//! (same family) at index i? Under the null each of the `m` candidates is equally likely, so the
//! count of hits over all matrices is compared with its binomial expectation (`z`).
//!
//! The distance compares *shapes*: each log spectrum minus its mean, then the root mean square
//! difference. Overall scale is left to E7: models of one recipe share per-layer scale trends,
//! which would make unrelated models look alike. Random matrices of one shape and recipe still
//! have similar spectra (Marchenko–Pastur), which is why the value is read only against the
//! wrong-layer null: a derived model's layer i matches A's layer i much better than A's other
//! layers; an unrelated model's does not.

use anyhow::Result;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use super::canonical::{self, Form};
use super::roles::layers_of;
use super::{Data, Experiment, Output, Plan, Sample, Subjects, Table, fmt, round9};
use crate::arch::Family;
use crate::model::{Model, TensorInfo};
use crate::stats;

/// E6's parameters (`[params.e6]`); every field has a default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Families compared (readers are folded with their norm's gain).
    pub families: Vec<Family>,
    /// Largest matrix (elements) whose spectrum is computed; larger ones are skipped.
    pub max_elems: u64,
    /// Most bytes read per model: above it only every 2nd, 4th, … layer is compared (the
    /// stride used is in the results), keeping memory and transfer bounded on large models.
    pub max_bytes: u64,
}

impl Default for Params {
    fn default() -> Self {
        use Family::*;
        Params {
            families: vec![AttnQ, AttnK, AttnV, AttnO, MlpGate, MlpUp, MlpDown],
            max_elems: 1 << 22,
            max_bytes: 256 << 20,
        }
    }
}

/// E6, spectra: per-layer singular-value shapes of the canonical projections, against the wrong-layer null.
#[derive(Default)]
pub struct Spectra {
    /// Its parameters.
    pub params: Params,
}

/// One matched (family, layer) of one pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerRow {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// The projection family.
    pub family: Family,
    /// Layer key.
    pub layer: u32,
    /// RMS difference of the mean-centred log spectra of A's and B's layer (0 = same shape).
    pub distance: f64,
    /// Mean distance of A's layer to B's other layers of the family.
    pub wrong_layer_mean: f64,
}

/// E6's findings for one pair of models.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairResult {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// `ok` or `skipped: <reason>`.
    pub status: String,
    /// Canonical form the matrices were compared in (`None` when skipped).
    pub canonical: Option<Form>,
    /// Matrices compared.
    pub matrices: usize,
    /// Matrices above `max_elems` (not compared).
    pub skipped_large: usize,
    /// Mean same-layer distance (0 for identical spectra shapes).
    pub mean_distance: f64,
    /// Wrong-layer distances (A layer i vs B layer j ≠ i, same family): mean and sd.
    pub null_mean_distance: f64,
    /// Standard deviation of the wrong-layer distances.
    pub null_sd_distance: f64,
    /// Matrices whose same-index B layer is strictly the closest of B's layers of the family.
    pub rank1: usize,
    /// Expected `rank1` under the null: Σ 1/(candidates).
    pub rank1_null: f64,
    /// (rank1 − rank1_null) / binomial sd.
    pub z: f64,
    /// Share of wrong-layer distances at or below the mean same-layer distance.
    pub percentile: f64,
    /// z of `z` against the other control pairs of this run (None with fewer than 2).
    pub z_vs_controls: Option<f64>,
}

/// E6's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Result6 {
    /// The parameters it ran with.
    pub params: Params,
    /// Per model (A, B, C1, …): every how many layers were compared (see `max_bytes`).
    pub layer_stride: Vec<u32>,
    /// Each pair's findings, A~B first.
    pub pairs: Vec<PairResult>,
    /// Every compared layer of every pair and family.
    pub layers: Vec<LayerRow>,
}

/// Singular values (descending) of a row-major `rows × cols` matrix, from the eigenvalues of
/// its smaller Gram.
pub fn singular_values(w: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    if rows == 0 || cols == 0 || w.len() != rows * cols {
        return Vec::new();
    }
    let m = DMatrix::from_row_iterator(rows, cols, w.iter().map(|&v| f64::from(v)));
    let g = if rows <= cols {
        &m * m.transpose()
    } else {
        m.transpose() * &m
    };
    let mut s: Vec<f64> = g
        .symmetric_eigenvalues()
        .iter()
        .map(|e| e.max(0.0).sqrt())
        .collect();
    s.sort_by(|a, b| b.total_cmp(a));
    s
}

/// Shape distance of two spectra: RMS difference of the mean-centred log singular values over
/// the leading `min(len)` values (values below 1e-9 of the largest are floored there).
pub fn spectrum_distance(a: &[f64], b: &[f64]) -> f64 {
    let k = a.len().min(b.len());
    if k < 2 {
        return f64::NAN;
    }
    let logs = |s: &[f64]| -> Vec<f64> {
        let floor = s[0].max(f64::MIN_POSITIVE) * 1e-9;
        let l: Vec<f64> = s[..k].iter().map(|v| v.max(floor).ln()).collect();
        let mean = l.iter().sum::<f64>() / k as f64;
        l.into_iter().map(|v| v - mean).collect()
    };
    let (la, lb) = (logs(a), logs(b));
    (la.iter()
        .zip(&lb)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        / k as f64)
        .sqrt()
}

/// One model's spectra, `(family, layer, singular values)`, and the canonical form used.
type ModelSpectra = (Vec<(Family, u32, Vec<f64>)>, Form);

impl Spectra {
    /// Per family: layer → matrix, for matrices small enough, on every `stride`-th layer.
    fn matrices<'a>(&self, model: &'a Model) -> Vec<(Family, u32, &'a TensorInfo)> {
        let stride = self.layer_stride(model);
        self.all_matrices(model)
            .into_iter()
            .filter(|(_, l, _)| l % stride == 0)
            .collect()
    }

    fn all_matrices<'a>(&self, model: &'a Model) -> Vec<(Family, u32, &'a TensorInfo)> {
        let mut out = Vec::new();
        for &f in &self.params.families {
            for (l, t) in layers_of(model, f) {
                if t.shape.len() == 2 && t.numel <= self.params.max_elems {
                    out.push((f, l, t));
                }
            }
        }
        out
    }

    /// 1 when every matrix fits in `max_bytes`, else the smallest power of two that makes
    /// the kept layers fit (a power of two, so models of similar size keep the same layers).
    pub fn layer_stride(&self, model: &Model) -> u32 {
        let bytes: u64 = self
            .all_matrices(model)
            .iter()
            .map(|(_, _, t)| t.dtype.bytes_for(t.numel))
            .sum();
        let mut stride = 1u32;
        while stride < 1024 && bytes / u64::from(stride) > self.params.max_bytes.max(1) {
            stride *= 2;
        }
        stride
    }

    fn skipped_large(&self, model: &Model) -> usize {
        self.params
            .families
            .iter()
            .flat_map(|&f| layers_of(model, f).into_values())
            .filter(|t| t.shape.len() == 2 && t.numel > self.params.max_elems)
            .count()
    }

    /// Canonical spectra of one model: (family, layer) → singular values, and the form.
    fn spectra(&self, data: &Data, m: usize, model: &Model) -> Result<ModelSpectra> {
        let mut out = Vec::new();
        let mut forms = Vec::new();
        for (f, l, t) in self.matrices(model) {
            let (rows, cols) = t.rows_cols();
            let w = data.get(m, &Sample::whole(&t.name, t.numel))?;
            let s = if canonical::gain_family(f).is_some() {
                let gains = canonical::gains(model, f);
                let offset = canonical::gain_offset(model);
                let gain = gains.get(&l).copied();
                let (w, form) = canonical::fold(data, m, gain, offset, w, cols as usize);
                forms.push(form);
                singular_values(&w, rows as usize, cols as usize)
            } else {
                singular_values(w, rows as usize, cols as usize)
            };
            out.push((f, l, s));
        }
        Ok((out, canonical::combine(forms)))
    }
}

impl Experiment for Spectra {
    fn id(&self) -> &'static str {
        "e6"
    }

    fn plan(&self, subjects: &Subjects, plan: &mut Plan) {
        for (m, s) in subjects.models.iter().enumerate() {
            for (_, _, t) in self.matrices(s.model) {
                plan.add(m, Sample::whole(&t.name, t.numel));
            }
            for &f in &self.params.families {
                canonical::plan_gains(s.model, m, f, plan);
            }
        }
    }

    fn run(&self, subjects: &Subjects, data: &Data) -> Result<Output> {
        let spectra: Vec<ModelSpectra> = subjects
            .models
            .iter()
            .enumerate()
            .map(|(m, s)| self.spectra(data, m, s.model))
            .collect::<Result<_>>()?;
        let mut pairs = Vec::new();
        let mut layers = Vec::new();
        for (i, j) in subjects.pairs() {
            pairs.push(self.pair(subjects, &spectra, (i, j), &mut layers));
        }
        z_vs_controls(&mut pairs);
        Output::new(
            "e6",
            &Result6 {
                params: self.params.clone(),
                layer_stride: subjects
                    .models
                    .iter()
                    .map(|s| self.layer_stride(s.model))
                    .collect(),
                pairs,
                layers,
            },
        )
    }
}

impl Spectra {
    /// One pair's spectra compared layer by layer against the wrong-layer null; its layer rows
    /// go to `layers`.
    fn pair(
        &self,
        subjects: &Subjects,
        spectra: &[ModelSpectra],
        (i, j): (usize, usize),
        layers: &mut Vec<LayerRow>,
    ) -> PairResult {
        let label = subjects.pair_label(i, j);
        let primary = Subjects::is_primary(i, j);
        let (sa, sb) = (&spectra[i].0, &spectra[j].0);
        let Compared {
            same,
            wrong,
            rank1,
            expect,
            var,
        } = compare_layers(sa, sb, &label, primary, layers);
        let skipped_large = self.skipped_large(subjects.models[i].model)
            + self.skipped_large(subjects.models[j].model);
        if same.is_empty() || wrong.len() < 2 {
            return PairResult {
                pair: label,
                primary,
                status: "skipped: no matched layers with a wrong-layer null".into(),
                canonical: None,
                matrices: same.len(),
                skipped_large,
                mean_distance: f64::NAN,
                null_mean_distance: f64::NAN,
                null_sd_distance: f64::NAN,
                rank1,
                rank1_null: f64::NAN,
                z: f64::NAN,
                percentile: f64::NAN,
                z_vs_controls: None,
            };
        }
        let (mean, nm, nsd) = (
            stats::mean(&same),
            stats::mean(&wrong),
            stats::sample_sd(&wrong),
        );
        let z = if var > 0.0 {
            (rank1 as f64 - expect) / var.sqrt()
        } else {
            f64::NAN
        };
        PairResult {
            pair: label,
            primary,
            status: "ok".into(),
            canonical: Some(canonical::combine([spectra[i].1, spectra[j].1])),
            matrices: same.len(),
            skipped_large,
            mean_distance: round9(mean),
            null_mean_distance: round9(nm),
            null_sd_distance: round9(nsd),
            rank1,
            rank1_null: round9(expect),
            z: round9(z),
            percentile: round9(
                wrong.iter().filter(|x| **x <= mean).count() as f64 / wrong.len() as f64,
            ),
            z_vs_controls: None,
        }
    }
}

/// The same-layer distances of a pair, the wrong-layer ones, and the rank-1 count with its
/// expectation and variance under the null.
struct Compared {
    same: Vec<f64>,
    wrong: Vec<f64>,
    rank1: usize,
    expect: f64,
    var: f64,
}

/// Each layer of A against the same layer of B and B's other layers of that family; the
/// layer rows go to `layers`.
fn compare_layers(
    sa: &[(Family, u32, Vec<f64>)],
    sb: &[(Family, u32, Vec<f64>)],
    label: &str,
    primary: bool,
    layers: &mut Vec<LayerRow>,
) -> Compared {
    let (mut same, mut wrong) = (Vec::new(), Vec::new());
    let (mut rank1, mut expect, mut var) = (0usize, 0.0f64, 0.0f64);
    for (f, l, a) in sa {
        let Some((_, _, b)) = sb.iter().find(|(g, m, _)| g == f && m == l) else {
            continue;
        };
        let d = spectrum_distance(a, b);
        let others: Vec<f64> = sb
            .iter()
            .filter(|(g, m, _)| g == f && m != l)
            .map(|(_, _, b)| spectrum_distance(a, b))
            .filter(|x| x.is_finite())
            .collect();
        if !d.is_finite() {
            continue;
        }
        if !others.is_empty() {
            let p = 1.0 / (others.len() + 1) as f64;
            expect += p;
            var += p * (1.0 - p);
            rank1 += usize::from(others.iter().all(|o| d < *o));
        }
        let wrong_mean = if others.is_empty() {
            f64::NAN
        } else {
            others.iter().sum::<f64>() / others.len() as f64
        };
        layers.push(LayerRow {
            pair: label.to_string(),
            primary,
            family: *f,
            layer: *l,
            distance: round9(d),
            wrong_layer_mean: round9(wrong_mean),
        });
        same.push(d);
        wrong.extend(others);
    }
    Compared {
        same,
        wrong,
        rank1,
        expect,
        var,
    }
}

/// z of each pair against the control pairs of this run (itself left out).
fn z_vs_controls(pairs: &mut [PairResult]) {
    let values: Vec<f64> = pairs.iter().map(|r| r.z).collect();
    let is_control: Vec<bool> = pairs.iter().map(|r| !r.primary).collect();
    let zs = stats::z_against_other_controls(&values, &is_control);
    for (r, z) in pairs.iter_mut().zip(zs) {
        if r.z.is_finite() {
            r.z_vs_controls = z.map(round9);
        }
    }
}

/// This experiment's tables, from its result as results.json records it.
pub fn tables(result: &serde_json::Value) -> Result<Vec<Table>> {
    let r: Result6 = super::readback::from_value(result)?;
    Ok(vec![summary_table(&r.pairs), layers_table(&r.layers)])
}

/// The name a canonical form has in results and tables.
pub fn form_name(f: Option<Form>) -> String {
    match f {
        Some(Form::NormGainsFolded) => "norm_gains_folded".into(),
        Some(Form::Raw) => "raw".into(),
        None => String::new(),
    }
}

fn summary_table(rows: &[PairResult]) -> Table {
    let mut t = Table::new(
        "e6_spectra",
        &[
            "pair",
            "primary",
            "status",
            "canonical",
            "matrices",
            "skipped_large",
            "mean_distance",
            "null_mean_distance",
            "null_sd_distance",
            "rank1",
            "rank1_null",
            "z",
            "percentile",
            "z_vs_controls",
        ],
    );
    for r in rows {
        t.rows.push(vec![
            r.pair.clone(),
            r.primary.to_string(),
            r.status.clone(),
            form_name(r.canonical),
            r.matrices.to_string(),
            r.skipped_large.to_string(),
            fmt(r.mean_distance),
            fmt(r.null_mean_distance),
            fmt(r.null_sd_distance),
            r.rank1.to_string(),
            fmt(r.rank1_null),
            fmt(r.z),
            fmt(r.percentile),
            r.z_vs_controls.map(fmt).unwrap_or_default(),
        ]);
    }
    t
}

fn layers_table(rows: &[LayerRow]) -> Table {
    let mut t = Table::new(
        "e6_spectra_layers",
        &[
            "pair",
            "primary",
            "family",
            "layer",
            "distance",
            "wrong_layer_mean",
        ],
    );
    for r in rows {
        t.rows.push(vec![
            r.pair.clone(),
            r.primary.to_string(),
            r.family.to_string(),
            r.layer.to_string(),
            fmt(r.distance),
            fmt(r.wrong_layer_mean),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spectrum_of_a_two_by_two_by_hand_and_its_invariances() {
        // W = [[3, 0], [0, 4]]: singular values 4, 3
        let w = [3.0f32, 0.0, 0.0, 4.0];
        let s = singular_values(&w, 2, 2);
        assert!(
            (s[0] - 4.0).abs() < 1e-12 && (s[1] - 3.0).abs() < 1e-12,
            "{s:?}"
        );
        // rotate the columns by 30°: W·R has the same singular values
        let (c, n) = (
            30f64.to_radians().cos() as f32,
            30f64.to_radians().sin() as f32,
        );
        let wr = [3.0 * c, -3.0 * n, 4.0 * n, 4.0 * c];
        let sr = singular_values(&wr, 2, 2);
        assert!(
            (sr[0] - 4.0).abs() < 1e-6 && (sr[1] - 3.0).abs() < 1e-6,
            "{sr:?}"
        );
        // swap rows (a head permutation): same
        let sp = singular_values(&[0.0, 4.0, 3.0, 0.0], 2, 2);
        assert_eq!(sp, s);
        assert!(spectrum_distance(&s, &sr) < 1e-6);
        // shape only: a scaled copy has distance 0; [4, 1] vs [4, 3] by hand
        assert!(spectrum_distance(&s, &[8.0, 6.0]) < 1e-12);
        let d = spectrum_distance(&s, &[4.0, 1.0]);
        let want = (3f64.ln() - 1f64.ln()) / 2.0; // centred logs differ by ±ln3/2
        assert!((d - want).abs() < 1e-12, "{d} vs {want}");
        assert!(spectrum_distance(&[1.0], &[1.0]).is_nan());
    }
}
