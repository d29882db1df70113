//! E5 projections: attention q/k/v/o compared on shared seeded windows, the prefix test for
//! head-count truncation (is B's q_proj a row prefix of A's?), and per-layer Frobenius norm
//! curves. Projection matrices carry far more information per tensor than norm gains.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::roles::{Proj, projections_of};
use super::{Data, Experiment, Output, Plan, Sample, Subjects, Table, fmt, round9};
use crate::arch::Family;
use crate::curves::compare_curves;
use crate::metrics::{Moments, compare};
use crate::sampling;

/// E5's parameters (`[params.e5]`); every field has a default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Seed of the windows read.
    pub seed: u64,
    /// Projection families compared.
    pub families: Vec<Family>,
    /// Elements per window.
    pub window_elems: u64,
    /// Windows read per matrix.
    pub windows: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            seed: 0,
            families: vec![Family::AttnQ, Family::AttnK, Family::AttnV, Family::AttnO],
            window_elems: 65_536,
            windows: 3,
        }
    }
}

/// E5, projections: attention projections compared on shared windows, the prefix test, and Frobenius-norm curves.
#[derive(Default)]
pub struct Projections {
    /// Its parameters.
    pub params: Params,
}

/// One layer's projection compared across a pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProjectionRow {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// The projection family.
    pub family: Family,
    /// Layer key.
    pub layer: u32,
    /// `same_shape`, or `prefix` when B has fewer rows of the same width (head truncation).
    pub relation: String,
    /// Elements compared.
    pub n: u64,
    /// Pearson r over the compared elements.
    pub pearson: f64,
    /// Raw cosine over the compared elements.
    pub cosine: f64,
    /// pearson·√n: about N(0, 1) for unrelated matrices.
    pub z: f64,
    /// For `prefix`: the same comparison against A's last rows instead (the null).
    pub suffix_pearson: Option<f64>,
}

/// Frobenius-norm curves of one family compared across a pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NormCurve {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// The projection family.
    pub family: Family,
    /// Pearson r of the z-scored per-layer norm curves (NaN if undefined).
    pub pearson: f64,
    /// DTW distance of the z-scored curves (lower = more alike; NaN if undefined).
    pub dtw: f64,
}

/// E5's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Result5 {
    /// The parameters it ran with.
    pub params: Params,
    /// Every compared layer of every pair and family.
    pub rows: Vec<ProjectionRow>,
    /// Each pair's norm curves per family.
    pub norm_curves: Vec<NormCurve>,
    /// Per model, family and layer: estimated Frobenius norm (√(numel·mean x²) over windows).
    pub norms: Vec<(String, Family, u32, f64)>,
}

impl Projections {
    fn windows(&self, family: Family, layer: u32, numel: u64) -> Vec<(u64, u64)> {
        let p = &self.params;
        sampling::windows(
            &format!("{family}/L{layer}"),
            p.seed,
            numel,
            p.window_elems,
            p.windows,
        )
    }

    fn shifted(windows: &[(u64, u64)], by: u64) -> Vec<(u64, u64)> {
        windows.iter().map(|&(s, l)| (s + by, l)).collect()
    }

    /// For a pair of tensors: the windows each is read at, and the relation.
    fn layout(&self, family: Family, layer: u32, ta: &Proj, tb: &Proj) -> Option<Layout> {
        let (ra, ca) = (ta.rows(), ta.cols);
        let (rb, cb) = (tb.rows(), tb.cols);
        if (ra, ca) == (rb, cb) {
            let w = self.windows(family, layer, ta.numel());
            return Some(Layout {
                a: w.clone(),
                b: w,
                suffix: None,
                relation: "same_shape",
            });
        }
        if ca == cb && rb < ra {
            let w = self.windows(family, layer, tb.numel());
            let suffix = Self::shifted(&w, ta.numel() - tb.numel());
            return Some(Layout {
                a: w.clone(),
                b: w,
                suffix: Some(suffix),
                relation: "prefix",
            });
        }
        None
    }
}

struct Layout {
    a: Vec<(u64, u64)>,
    b: Vec<(u64, u64)>,
    suffix: Option<Vec<(u64, u64)>>,
    relation: &'static str,
}

/// One layer of one family compared across one pair, with the samples each side is read at.
struct Comparison {
    pair: (usize, usize),
    family: Family,
    layer: u32,
    a: Sample,
    b: Sample,
    /// A's last rows, the null of the prefix test.
    suffix: Option<Sample>,
    relation: &'static str,
}

impl Projections {
    /// Every comparison, in the order rows are reported: planning and running walk the same list.
    fn comparisons(&self, subjects: &Subjects) -> Vec<Comparison> {
        let mut out = Vec::new();
        for (i, j) in subjects.pairs() {
            for &f in &self.params.families {
                let la = projections_of(subjects.models[i].model, f);
                let lb = projections_of(subjects.models[j].model, f);
                for (l, ta) in &la {
                    let Some(tb) = lb.get(l) else { continue };
                    let Some(layout) = self.layout(f, *l, ta, tb) else {
                        continue;
                    };
                    out.push(Comparison {
                        pair: (i, j),
                        family: f,
                        layer: *l,
                        a: ta.sample(&layout.a),
                        b: tb.sample(&layout.b),
                        suffix: layout.suffix.map(|w| ta.sample(&w)),
                        relation: layout.relation,
                    });
                }
            }
        }
        out
    }

    /// The windows each model's own tensors are read at, for the Frobenius estimates.
    fn norm_sample(&self, family: Family, layer: u32, t: &Proj) -> Sample {
        t.sample(&self.windows(family, layer, t.numel()))
    }
}

impl Experiment for Projections {
    fn id(&self) -> &'static str {
        "e5"
    }

    fn plan(&self, subjects: &Subjects, plan: &mut Plan) {
        for c in self.comparisons(subjects) {
            let (i, j) = c.pair;
            plan.add(i, c.a);
            plan.add(j, c.b);
            if let Some(s) = c.suffix {
                plan.add(i, s);
            }
        }
        for m in 0..subjects.models.len() {
            for &f in &self.params.families {
                for (l, t) in projections_of(subjects.models[m].model, f) {
                    plan.add(m, self.norm_sample(f, l, &t));
                }
            }
        }
    }

    fn run(&self, subjects: &Subjects, data: &Data) -> Result<Output> {
        let mut rows = Vec::new();
        for c in self.comparisons(subjects) {
            let (i, j) = c.pair;
            let b = data.get(j, &c.b)?;
            let m = compare(data.get(i, &c.a)?, b);
            let suffix_pearson = match &c.suffix {
                Some(s) => Some(round9(compare(data.get(i, s)?, b).pearson)),
                None => None,
            };
            rows.push(ProjectionRow {
                pair: subjects.pair_label(i, j),
                primary: Subjects::is_primary(i, j),
                family: c.family,
                layer: c.layer,
                relation: c.relation.into(),
                n: m.n,
                pearson: round9(m.pearson),
                cosine: round9(m.cosine),
                z: round9(m.pearson * (m.n as f64).sqrt()),
                suffix_pearson,
            });
        }
        // Frobenius norm estimates per model and the comparison of their curves.
        let mut norms = Vec::new();
        let mut curves: Vec<Vec<(Family, Vec<f64>)>> = Vec::new();
        for m in 0..subjects.models.len() {
            let mut per_family = Vec::new();
            for &f in &self.params.families {
                let mut curve = Vec::new();
                for (l, t) in projections_of(subjects.models[m].model, f) {
                    let v = data.get(m, &self.norm_sample(f, l, &t))?;
                    let mo = Moments::of(v);
                    let est = round9((mo.sum_sq / mo.n.max(1) as f64 * t.numel() as f64).sqrt());
                    norms.push((subjects.models[m].label.clone(), f, l, est));
                    curve.push(est);
                }
                per_family.push((f, curve));
            }
            curves.push(per_family);
        }
        let mut norm_curves = Vec::new();
        for (i, j) in subjects.pairs() {
            for (k, (f, ca)) in curves[i].iter().enumerate() {
                let cb = &curves[j][k].1;
                if ca.len() < 3 || cb.len() < 3 {
                    continue;
                }
                let c = compare_curves(ca, cb);
                norm_curves.push(NormCurve {
                    pair: subjects.pair_label(i, j),
                    primary: Subjects::is_primary(i, j),
                    family: *f,
                    pearson: round9(c.pearson),
                    dtw: round9(c.dtw),
                });
            }
        }
        Output::new(
            "e5",
            &Result5 {
                params: self.params.clone(),
                rows,
                norm_curves,
                norms,
            },
        )
    }
}

/// This experiment's tables, from its result as results.json records it.
pub fn tables(result: &serde_json::Value) -> Result<Vec<Table>> {
    let r: Result5 = super::readback::from_value(result)?;
    Ok(vec![rows_table(&r.rows), norms_table(&r.norms)])
}

fn rows_table(rows: &[ProjectionRow]) -> Table {
    let mut t = Table::new(
        "e5_projections",
        &[
            "pair",
            "primary",
            "family",
            "layer",
            "relation",
            "n",
            "pearson",
            "cosine",
            "z",
            "suffix_pearson",
        ],
    );
    for r in rows {
        t.rows.push(vec![
            r.pair.clone(),
            r.primary.to_string(),
            r.family.to_string(),
            r.layer.to_string(),
            r.relation.clone(),
            r.n.to_string(),
            fmt(r.pearson),
            fmt(r.cosine),
            fmt(r.z),
            r.suffix_pearson.map(fmt).unwrap_or_default(),
        ]);
    }
    t
}

fn norms_table(norms: &[(String, Family, u32, f64)]) -> Table {
    let mut t = Table::new(
        "e5_norms",
        &["model", "family", "layer", "frobenius_estimate"],
    );
    for (m, f, l, v) in norms {
        t.rows
            .push(vec![m.clone(), f.to_string(), l.to_string(), fmt(*v)]);
    }
    t
}
