//! E3q re-quantisation identity: is B's quantised model A's weights run through llama.cpp's
//! quantiser?
//!
//! **The test.** When one side of a pair stores block-quantised GGUF tensors (Q8_0, Q4_0,
//! K-quants, …) and the other plain floats, the float side's rows are quantised with the
//! quantised side's scheme ([`quants::quantize`], llama.cpp's reference quantisers, no importance
//! matrix) and compared block by block with the stored blocks: `identical` blocks are equal bit
//! for bit, `near` ones differ but every code is within one step (what an importance matrix,
//! another rounding or an f16 intermediate gives). The reference quantisers are deterministic,
//! so a plain requant of A matches B's blocks exactly, while a fine-tune of A or an unrelated
//! model matches at chance.
//!
//! Converters often pass through an intermediate file (BF16 → F16 GGUF → `llama-quantize`), so
//! the float rows are also tried rounded to F16 and to BF16 first; the variant with most
//! identical blocks is reported, its null computed the same way.
//!
//! ONNX int8/uint8 weights (onnxruntime's `quantize_dynamic` and static Q/DQ: per tensor or
//! per row, symmetric or with zero points) carry their scales and zero points beside the
//! codes, so the float rows are quantised with B's own parameters as `QuantizeLinear` does
//! (`rint(x / scale) + zero_point`, saturated) and compared with B's codes in runs of
//! [`INT_BLOCK`] along a row. A run is identical only if all its codes are: each value of A
//! then lies within half a quantisation step of B's, 32 times over.
//!
//! **The null.** The same rows of A quantised the same way against B's blocks of *another*
//! tensor of the same shape and type (another layer): blocks that match there match for
//! reasons other than ancestry (zeros, constants, saturated codes). Reference blocks whose
//! values are all equal are left out of both counts. `log10_p` is the binomial tail of the
//! identical count at the null's rate (with a +1/+2 prior, so an empty null is not a rate of
//! zero); `excess_identical` (identical share minus the null's) is what the rubric reads.
//!
//! **What it cannot see.** A scheme the tool cannot reproduce (lattice IQ types, an importance
//! matrix that moved scales) gives no identical blocks — the near share and every dequantised
//! experiment still apply; the pair's `status` says when nothing could be compared. K-quants
//! made by a llama.cpp build with fused multiply-add (Apple, aarch64) differ from the
//! reference in a few per cent of blocks. Identity says B's blocks were computed from A's
//! values: not who quantised, nor that A is the original rather than a shared ancestor.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{Data, Experiment, Output, Plan, Sample, Subjects, round9};
use crate::dtype::Dtype;
use crate::formats::gguf::quants::{self, GgmlType};
use crate::model::{IntCodes, Model, TensorInfo};
use crate::stats;

/// E3q's parameters (`[params.e3q]`); every field has a default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Seed of the rows read.
    pub seed: u64,
    /// Quantised tensors compared per pair (evenly spaced over the sorted names).
    pub max_tensors: usize,
    /// Rows read per tensor (seeded).
    pub rows_per_tensor: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            seed: 0,
            max_tensors: 48,
            rows_per_tensor: 8,
        }
    }
}

/// E3q, re-quantisation identity: the float side's rows quantised as the other side stores them, compared block by block.
#[derive(Default)]
pub struct Requant {
    /// Its parameters.
    pub params: Params,
}

/// One tensor of one pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TensorRow {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// The quantised tensor's name.
    pub tensor: String,
    /// Its quantisation scheme (`Q8_0`, `Q4_K`, `int8`, …).
    pub scheme: String,
    /// The tensor of the quantised side whose blocks served as the null.
    pub null_tensor: String,
    /// Informative blocks compared.
    pub blocks: u64,
    /// Of those, blocks identical bit for bit.
    pub identical: u64,
    /// Of those, blocks that differ with every code within one step.
    pub near: u64,
    /// Informative blocks compared against the null tensor.
    pub null_blocks: u64,
    /// Of those, blocks identical bit for bit.
    pub null_identical: u64,
}

/// One pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairResult {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// `ok`, or `not applicable: <why>`.
    pub status: String,
    /// Which model's tensors are quantised (`A`, `B`, `C1`, …), and their schemes.
    pub quantised: String,
    /// The quantisation schemes of the quantised side's tensors.
    pub schemes: Vec<String>,
    /// The float rows' rounding that matched best: `as stored`, `via F16` or `via BF16`.
    pub variant: String,
    /// Tensors compared.
    pub tensors: usize,
    /// Informative blocks compared (reference blocks of one repeated value left out).
    pub blocks: u64,
    /// Of those, blocks identical bit for bit.
    pub identical: u64,
    /// Of those, blocks that differ with every code within one step.
    pub near: u64,
    /// `identical / blocks`, 0–1 (NaN when nothing was compared).
    #[serde(deserialize_with = "super::nan_if_null")]
    pub identical_fraction: f64,
    /// `near / blocks`, 0–1 (NaN when nothing was compared).
    #[serde(deserialize_with = "super::nan_if_null")]
    pub near_fraction: f64,
    /// Informative blocks compared against the null tensors.
    pub null_blocks: u64,
    /// Of those, blocks identical bit for bit.
    pub null_identical: u64,
    /// Of those, blocks within one step.
    pub null_near: u64,
    /// `null_identical / null_blocks`, 0–1 (NaN when empty).
    #[serde(deserialize_with = "super::nan_if_null")]
    pub null_identical_fraction: f64,
    /// `null_near / null_blocks`, 0–1 (NaN when empty).
    #[serde(deserialize_with = "super::nan_if_null")]
    pub null_near_fraction: f64,
    /// Identical share beyond the null's (what the rubric reads).
    #[serde(deserialize_with = "super::nan_if_null")]
    pub excess_identical: f64,
    /// log10 of the binomial tail of `identical` at the null's rate.
    pub log10_p: Option<f64>,
}

/// E3q's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResultQ {
    /// Each pair's findings, A~B first.
    pub pairs: Vec<PairResult>,
    /// Every tensor compared, per pair.
    pub tensors: Vec<TensorRow>,
}

/// Codes of an ONNX integer weight compared at once: a run of a row as long as llama.cpp's
/// smallest block, so "identical" means as much for both formats.
pub const INT_BLOCK: usize = 32;

/// How one side stores a tensor the float side can be quantised into.
#[derive(Clone, Copy)]
enum Scheme<'m> {
    /// A GGUF block type, compared block by block in its bytes.
    Ggml(GgmlType),
    /// ONNX integer codes with their scales, compared in runs of [`INT_BLOCK`] codes.
    Int(&'m IntCodes),
}

impl Scheme<'_> {
    fn name(&self) -> String {
        match self {
            Scheme::Ggml(ty) => ty.name().to_string(),
            Scheme::Int(c) => c.scheme(),
        }
    }
}

/// The scheme `t` of model `m` is stored in, when E3q can reproduce it.
fn scheme_of<'m>(m: &'m Model, t: &TensorInfo) -> Option<Scheme<'m>> {
    if t.shape.len() != 2 {
        return None;
    }
    match t.dtype {
        Dtype::Ggml(ty) if ty.quantizable() => Some(Scheme::Ggml(ty)),
        _ => m.int_codes(&t.name).map(Scheme::Int),
    }
}

/// A comparable tensor: quantised on one side, plain float on the other, with a null partner.
struct Match<'m> {
    q: &'m TensorInfo,
    r: &'m TensorInfo,
    null: &'m TensorInfo,
    scheme: Scheme<'m>,
    null_scheme: Scheme<'m>,
    rows: Vec<u64>,
}

/// Roundings of the float side tried before quantising.
const VARIANTS: [&str; 3] = ["as stored", "via F16", "via BF16"];

fn round_variant(values: &[f32], variant: usize) -> Vec<f32> {
    match variant {
        1 => values
            .iter()
            .map(|&v| half::f16::from_f32(v).to_f32())
            .collect(),
        2 => values
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_f32())
            .collect(),
        _ => values.to_vec(),
    }
}

impl Requant {
    /// The comparable tensors of `q` (quantised side) against `r` (float side).
    fn matches<'m>(&self, q: &'m Model, r: &'m Model) -> Vec<Match<'m>> {
        let candidates: Vec<(&TensorInfo, &TensorInfo, Scheme)> = q
            .tensors()
            .iter()
            .filter_map(|tq| {
                let scheme = scheme_of(q, tq)?;
                let tr = r.tensor(&tq.name)?;
                let plain = tr.dtype.is_float()
                    && tr.dtype.decodable()
                    && !matches!(tr.dtype, Dtype::Ggml(_))
                    && r.int_codes(&tr.name).is_none();
                (plain && tr.shape == tq.shape).then_some((tq, tr, scheme))
            })
            .collect();
        let picked = evenly(candidates.len(), self.params.max_tensors);
        picked
            .into_iter()
            .filter_map(|i| {
                let (tq, tr, scheme) = candidates[i];
                let (null, null_scheme) = candidates
                    .iter()
                    .filter(|o| {
                        o.0.name != tq.name
                            && o.0.shape == tq.shape
                            && o.0.dtype == tq.dtype
                            && o.2.name() == scheme.name()
                    })
                    .map(|o| (o.0, o.2))
                    .min_by_key(|(o, _)| (o.role.family != tq.role.family, o.name.clone()))?;
                let (rows, _) = tq.rows_cols();
                let n = self.params.rows_per_tensor.min(rows);
                let rows: Vec<u64> = if n >= rows {
                    (0..rows).collect()
                } else {
                    crate::sampling::windows(
                        &format!("e3q|{}", tq.name),
                        self.params.seed,
                        rows,
                        1,
                        n,
                    )
                    .into_iter()
                    .map(|w| w.0)
                    .collect()
                };
                Some(Match {
                    q: tq,
                    r: tr,
                    null,
                    scheme,
                    null_scheme,
                    rows,
                })
            })
            .collect()
    }

    /// Which side is quantised: (quantised index, float index), or why neither.
    fn sides(
        subjects: &Subjects,
        i: usize,
        j: usize,
    ) -> std::result::Result<(usize, usize), String> {
        let quantised = |m: usize| {
            let model = subjects.models[m].model;
            model
                .tensors()
                .iter()
                .any(|t| scheme_of(model, t).is_some())
        };
        match (quantised(i), quantised(j)) {
            (false, true) => Ok((j, i)),
            (true, false) => Ok((i, j)),
            (true, true) => {
                Err("not applicable: both models are quantised (E3 compares their bytes)".into())
            }
            (false, false) => Err("not applicable: neither model stores quantised tensors".into()),
        }
    }
}

/// `k` indices spread evenly over `0..n` (all of them when `k ≥ n`).
fn evenly(n: usize, k: usize) -> Vec<usize> {
    if k == 0 || n == 0 {
        return Vec::new();
    }
    if k >= n {
        return (0..n).collect();
    }
    (0..k).map(|i| i * n / k).collect()
}

fn row_sample(t: &TensorInfo, rows: &[u64]) -> Sample {
    let (_, cols) = t.rows_cols();
    Sample {
        tensor: t.name.clone(),
        windows: rows.iter().map(|&r| (r * cols, cols)).collect(),
    }
}

/// Counts of one comparison: (informative blocks, identical, near).
#[derive(Clone, Copy, Default)]
struct Counts {
    blocks: u64,
    identical: u64,
    near: u64,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.blocks += o.blocks;
        self.identical += o.identical;
        self.near += o.near;
    }
}

/// Quantises `reference` (one row, shifted as the quantised side stores it) with `ty` and
/// compares block by block with `stored`.
fn compare_row(ty: GgmlType, reference: &[f32], shift: f32, stored: &[u8]) -> Result<Counts> {
    let values: Vec<f32> = reference.iter().map(|v| v + shift).collect();
    let mut ours = Vec::with_capacity(stored.len());
    quants::quantize(ty, &values, &mut ours)?;
    let (elems, bytes) = (ty.block_elems() as usize, ty.block_bytes() as usize);
    let mut c = Counts::default();
    let (mut ca, mut cb) = (Vec::new(), Vec::new());
    for ((mine, theirs), vals) in ours
        .chunks(bytes)
        .zip(stored.chunks(bytes))
        .zip(values.chunks(elems))
    {
        if vals.iter().all(|v| *v == vals[0]) {
            continue;
        }
        c.blocks += 1;
        if mine == theirs {
            c.identical += 1;
        } else if ty.has_codes()
            && quants::block_codes(ty, mine, &mut ca).is_ok()
            && quants::block_codes(ty, theirs, &mut cb).is_ok()
            && ca.iter().zip(&cb).all(|(x, y)| (x - y).abs() <= 1)
        {
            c.near += 1;
        }
    }
    Ok(c)
}

/// Quantises `reference` (row `row` of the float side) with the parameters of row `row` of an
/// ONNX integer weight whose dequantised values are `stored`, and compares the codes in runs
/// of [`INT_BLOCK`]. A stored value no code dequantises to (not this scheme's output) makes
/// its run differ.
fn compare_int_row(codes: &IntCodes, row: u64, reference: &[f32], stored: &[f32]) -> Counts {
    let mut c = Counts::default();
    for (k, (vals, ys)) in reference
        .chunks(INT_BLOCK)
        .zip(stored.chunks(INT_BLOCK))
        .enumerate()
    {
        if vals.iter().all(|v| *v == vals[0]) {
            continue;
        }
        c.blocks += 1;
        let mut worst = 0i64;
        for (j, (&a, &y)) in vals.iter().zip(ys).enumerate() {
            let col = (k * INT_BLOCK + j) as u64;
            let step = match (codes.quantize(a, row, col), codes.code_of(y, row, col)) {
                (Some(x), Some(z)) => (x - z).abs(),
                _ => i64::MAX,
            };
            worst = worst.max(step);
        }
        match worst {
            0 => c.identical += 1,
            1 => c.near += 1,
            _ => {}
        }
    }
    c
}

fn fraction(k: u64, n: u64) -> f64 {
    if n == 0 {
        f64::NAN
    } else {
        k as f64 / n as f64
    }
}

impl Experiment for Requant {
    fn id(&self) -> &'static str {
        "e3q"
    }

    fn plan(&self, subjects: &Subjects, plan: &mut Plan) {
        for (i, j) in subjects.pairs() {
            let Ok((qi, ri)) = Self::sides(subjects, i, j) else {
                continue;
            };
            let (q, r) = (subjects.models[qi].model, subjects.models[ri].model);
            for m in self.matches(q, r) {
                plan.add(ri, row_sample(m.r, &m.rows));
                for t in [m.q, m.null] {
                    match m.scheme {
                        Scheme::Ggml(_) => plan.add_raw(qi, row_sample(t, &m.rows)),
                        Scheme::Int(_) => plan.add(qi, row_sample(t, &m.rows)),
                    }
                }
            }
        }
    }

    fn run(&self, subjects: &Subjects, data: &Data) -> Result<Output> {
        let mut pairs = Vec::new();
        let mut tensors = Vec::new();
        for (i, j) in subjects.pairs() {
            let label = subjects.pair_label(i, j);
            let primary = Subjects::is_primary(i, j);
            let (qi, ri) = match Self::sides(subjects, i, j) {
                Ok(s) => s,
                Err(why) => {
                    pairs.push(empty(label, primary, why));
                    continue;
                }
            };
            let (q, r) = (subjects.models[qi].model, subjects.models[ri].model);
            let matches = self.matches(q, r);
            if matches.is_empty() {
                pairs.push(empty(
                    label,
                    primary,
                    "not applicable: no quantised tensor of a type the tool can reproduce has a float tensor of the same name and shape on the other side".into(),
                ));
                continue;
            }
            // per variant: (totals, null totals, per-tensor rows)
            let mut best: Option<(usize, Counts, Counts, Vec<TensorRow>)> = None;
            for variant in 0..VARIANTS.len() {
                let (mut all, mut null) = (Counts::default(), Counts::default());
                let mut rows = Vec::new();
                for m in &matches {
                    let (t, tn) = compare_match(m, data, qi, ri, variant)?;
                    all.add(t);
                    null.add(tn);
                    rows.push(TensorRow {
                        pair: label.clone(),
                        tensor: m.q.name.clone(),
                        scheme: m.scheme.name(),
                        null_tensor: m.null.name.clone(),
                        blocks: t.blocks,
                        identical: t.identical,
                        near: t.near,
                        null_blocks: tn.blocks,
                        null_identical: tn.identical,
                    });
                }
                if best.as_ref().is_none_or(|b| all.identical > b.1.identical) {
                    best = Some((variant, all, null, rows));
                }
            }
            let Some((variant, all, null, rows)) = best else {
                continue;
            };
            let schemes: Vec<String> = matches
                .iter()
                .map(|m| m.scheme.name())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let null_rate = (null.identical as f64 + 1.0) / (null.blocks as f64 + 2.0);
            let (f, nf) = (
                fraction(all.identical, all.blocks),
                fraction(null.identical, null.blocks),
            );
            pairs.push(PairResult {
                pair: label,
                primary,
                status: "ok".into(),
                quantised: subjects.models[qi].label.clone(),
                schemes,
                variant: VARIANTS[variant].into(),
                tensors: matches.len(),
                blocks: all.blocks,
                identical: all.identical,
                near: all.near,
                identical_fraction: round9(f),
                near_fraction: round9(fraction(all.near, all.blocks)),
                null_blocks: null.blocks,
                null_identical: null.identical,
                null_near: null.near,
                null_identical_fraction: round9(nf),
                null_near_fraction: round9(fraction(null.near, null.blocks)),
                excess_identical: round9(f - if nf.is_nan() { 0.0 } else { nf }),
                log10_p: Some(round9(stats::binomial_upper_log10_p(
                    all.identical,
                    all.blocks,
                    null_rate,
                )))
                .filter(|p| p.is_finite()),
            });
            tensors.extend(rows);
        }
        Output::new("e3q", &ResultQ { pairs, tensors })
    }
}

/// The counts of one tensor and of its null partner, the float rows rounded by `variant`.
fn compare_match(
    m: &Match,
    data: &Data,
    qi: usize,
    ri: usize,
    variant: usize,
) -> Result<(Counts, Counts)> {
    let reference = data.get(ri, &row_sample(m.r, &m.rows))?;
    let cols = m.r.rows_cols().1 as usize;
    let (mut t, mut tn) = (Counts::default(), Counts::default());
    match (m.scheme, m.null_scheme) {
        (Scheme::Ggml(ty), _) => {
            let stored = data.raw(qi, &row_sample(m.q, &m.rows))?;
            let other = data.raw(qi, &row_sample(m.null, &m.rows))?;
            let row_bytes = (cols as u64 / ty.block_elems() * ty.block_bytes()) as usize;
            for k in 0..m.rows.len() {
                let values = round_variant(&reference[k * cols..(k + 1) * cols], variant);
                let span = k * row_bytes..(k + 1) * row_bytes;
                let (Some(s), Some(o)) = (stored.get(span.clone()), other.get(span)) else {
                    continue;
                };
                t.add(compare_row(ty, &values, m.q.undo.shift, s)?);
                tn.add(compare_row(ty, &values, m.null.undo.shift, o)?);
            }
        }
        (Scheme::Int(codes), null_codes) => {
            let Scheme::Int(null_codes) = null_codes else {
                return Ok((t, tn));
            };
            let stored = data.get(qi, &row_sample(m.q, &m.rows))?;
            let other = data.get(qi, &row_sample(m.null, &m.rows))?;
            for (k, &row) in m.rows.iter().enumerate() {
                let values = round_variant(&reference[k * cols..(k + 1) * cols], variant);
                let span = k * cols..(k + 1) * cols;
                let (Some(s), Some(o)) = (stored.get(span.clone()), other.get(span)) else {
                    continue;
                };
                t.add(compare_int_row(codes, row, &values, s));
                tn.add(compare_int_row(null_codes, row, &values, o));
            }
        }
    }
    Ok((t, tn))
}

fn empty(pair: String, primary: bool, status: String) -> PairResult {
    PairResult {
        pair,
        primary,
        status,
        quantised: String::new(),
        schemes: Vec::new(),
        variant: String::new(),
        tensors: 0,
        blocks: 0,
        identical: 0,
        near: 0,
        identical_fraction: f64::NAN,
        near_fraction: f64::NAN,
        null_blocks: 0,
        null_identical: 0,
        null_near: 0,
        null_identical_fraction: f64::NAN,
        null_near_fraction: f64::NAN,
        excess_identical: f64::NAN,
        log10_p: None,
    }
}

/// Counts by hand-made blocks: ours quantised equals theirs, or off by one code, or unrelated.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_near_and_constant_blocks_by_hand() {
        let values: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) * 0.01).collect();
        let mut stored = Vec::new();
        quants::quantize(GgmlType::Q8_0, &values, &mut stored).unwrap();
        let c = compare_row(GgmlType::Q8_0, &values, 0.0, &stored).unwrap();
        assert_eq!((c.blocks, c.identical, c.near), (2, 2, 0));
        // one code moved by one step: near, not identical
        let mut moved = stored.clone();
        moved[5] = moved[5].wrapping_add(1);
        let c = compare_row(GgmlType::Q8_0, &values, 0.0, &moved).unwrap();
        assert_eq!((c.blocks, c.identical, c.near), (2, 1, 1));
        // a constant reference block is not informative
        let mut flat = values.clone();
        flat[..32].iter_mut().for_each(|v| *v = 0.5);
        let mut s = Vec::new();
        quants::quantize(GgmlType::Q8_0, &flat, &mut s).unwrap();
        let c = compare_row(GgmlType::Q8_0, &flat, 0.0, &s).unwrap();
        assert_eq!((c.blocks, c.identical), (1, 1));
        // a shifted store (Gemma's 1 + w) matches once the shift is applied
        let shifted: Vec<f32> = values.iter().map(|v| v + 1.0).collect();
        let mut s = Vec::new();
        quants::quantize(GgmlType::Q8_0, &shifted, &mut s).unwrap();
        assert_eq!(
            compare_row(GgmlType::Q8_0, &values, 1.0, &s)
                .unwrap()
                .identical,
            2
        );
        assert_eq!(
            compare_row(GgmlType::Q8_0, &values, 0.0, &s)
                .unwrap()
                .identical,
            0
        );
    }

    #[test]
    fn onnx_int8_runs_identical_near_and_constant_by_hand() {
        use crate::formats::onnx::{self, DataType, Dequant, QuantScheme};
        // two rows of 64, per-row scales (HF axis 0)
        let codes = IntCodes {
            code: DataType::Int8,
            axis: Some(0),
            shape: vec![2, 64],
            dequant: Dequant {
                scale: vec![0.01, 0.5],
                zero_point: vec![0, 0],
                axis: Some(1),
                output: DataType::Float,
                scheme: QuantScheme::DynamicInteger,
            },
        };
        let reference: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) * 0.013).collect();
        // B is reference quantised with row 0's scale, then dequantised (what reading gives)
        let stored: Vec<f32> = reference
            .iter()
            .map(|&v| {
                let q = onnx::quantize(v, 0.01, 0, DataType::Int8).unwrap();
                onnx::dequantize(q, 0, 0.01, DataType::Float, false)
            })
            .collect();
        let c = compare_int_row(&codes, 0, &reference, &stored);
        assert_eq!((c.blocks, c.identical, c.near), (2, 2, 0));
        // one code one step off: that run is near
        let mut moved = stored.clone();
        moved[40] = onnx::dequantize(
            codes.code_of(stored[40], 0, 40).unwrap() + 1,
            0,
            0.01,
            DataType::Float,
            false,
        );
        let c = compare_int_row(&codes, 0, &reference, &moved);
        assert_eq!((c.blocks, c.identical, c.near), (2, 1, 1));
        // row 1 has another scale: the same values read as other codes
        let c = compare_int_row(&codes, 1, &reference, &stored);
        assert_eq!(c.identical, 0);
        // a value no int8 code dequantises to differs
        let mut off = stored.clone();
        off[3] += 0.004;
        assert_eq!(codes.code_of(off[3], 0, 3), None);
        let c = compare_int_row(&codes, 0, &reference, &off);
        assert_eq!((c.identical, c.near), (1, 0));
        // constant runs are not counted
        let flat = vec![0.25f32; 64];
        assert_eq!(compare_int_row(&codes, 0, &flat, &stored).blocks, 0);
        assert_eq!(codes.scheme(), "ONNX int8 per-row");
    }

    #[test]
    fn evenly_spread_indices() {
        assert_eq!(evenly(10, 3), vec![0, 3, 6]);
        assert_eq!(evenly(2, 5), vec![0, 1]);
        assert!(evenly(0, 3).is_empty());
    }
}
