//! The experiment framework: each experiment declares the samples it needs, the runner
//! fetches them for every model in one batch (so sources coalesce and parallelise reads),
//! then each experiment computes a typed result and its tables from the fetched data.
//!
//! Experiments never do I/O of their own and know nothing of how results are packaged.

pub mod canonical;
pub mod e0_config;
pub mod e0c_code;
pub mod e1_layerwise;
pub mod e1b_embeddings;
pub mod e2_baselines;
pub mod e3_bytes;
pub mod e4_alignment;
pub mod e5_projections;
pub mod e6_spectra;
pub mod e7_std_curves;
pub mod e8_cka;
pub mod e9_experts;
pub mod roles;
pub mod tokens;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::model::{ElementRequest, Model};

/// One model taking part, with its label in results (`A`, `B`, `C1`, …).
pub struct Subject<'a> {
    pub label: String,
    pub model: &'a Model,
}

/// The models of an audit: A (the possible origin), B (the suspect), then controls.
pub struct Subjects<'a> {
    pub models: Vec<Subject<'a>>,
}

impl<'a> Subjects<'a> {
    pub fn new(a: &'a Model, b: &'a Model, controls: &[&'a Model]) -> Subjects<'a> {
        let mut models = vec![
            Subject {
                label: "A".into(),
                model: a,
            },
            Subject {
                label: "B".into(),
                model: b,
            },
        ];
        for (i, c) in controls.iter().enumerate() {
            models.push(Subject {
                label: format!("C{}", i + 1),
                model: c,
            });
        }
        Subjects { models }
    }

    /// The pairs compared: A~B first, then each model against each control.
    pub fn pairs(&self) -> Vec<(usize, usize)> {
        let mut pairs = vec![(0, 1)];
        for c in 2..self.models.len() {
            pairs.push((0, c));
            pairs.push((1, c));
        }
        pairs
    }

    pub fn pair_label(&self, i: usize, j: usize) -> String {
        format!("{}~{}", self.models[i].label, self.models[j].label)
    }

    /// Whether a pair is the audited one (A~B) rather than a control comparison.
    pub fn is_primary(i: usize, j: usize) -> bool {
        (i, j) == (0, 1)
    }
}

/// Elements of one tensor: the concatenation of its windows `(start, len)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sample {
    pub tensor: String,
    pub windows: Vec<(u64, u64)>,
}

impl Sample {
    pub fn whole(tensor: &str, numel: u64) -> Sample {
        Sample {
            tensor: tensor.to_string(),
            windows: vec![(0, numel)],
        }
    }
}

/// What every experiment needs, per model (deduplicated).
///
/// Samples come in two kinds, fetched in the same batch per model: decoded (`add`, read back
/// as f32 with [`Data::get`]) and raw (`add_raw`, read back as the stored bytes with
/// [`Data::raw`]). Raw samples exist for byte-identity tests (E3), where decoding would hide
/// the difference between a tensor and its re-serialisation in another dtype.
#[derive(Default, Debug)]
pub struct Plan {
    per_model: BTreeMap<usize, BTreeSet<Sample>>,
    raw_per_model: BTreeMap<usize, BTreeSet<Sample>>,
}

impl Plan {
    pub fn add(&mut self, model: usize, sample: Sample) {
        self.per_model.entry(model).or_default().insert(sample);
    }

    /// Asks for the raw stored bytes of a sample (its windows must start and end on byte
    /// boundaries, which every dtype of 8 bits or more does).
    pub fn add_raw(&mut self, model: usize, sample: Sample) {
        self.raw_per_model.entry(model).or_default().insert(sample);
    }

    /// Bytes the plan reads from each model.
    pub fn bytes(&self, subjects: &Subjects) -> Vec<u64> {
        (0..subjects.models.len())
            .map(|m| {
                let model = subjects.models[m].model;
                [&self.per_model, &self.raw_per_model]
                    .iter()
                    .filter_map(|kind| kind.get(&m))
                    .flatten()
                    .filter_map(|s| {
                        let t = model.tensor(&s.tensor)?;
                        let bits = u64::from(t.dtype.bits());
                        Some(s.windows.iter().map(|w| w.1 * bits / 8).sum::<u64>())
                    })
                    .sum()
            })
            .collect()
    }
}

/// Fetched and decoded samples.
#[derive(Default)]
pub struct Data {
    samples: HashMap<(usize, Sample), Vec<f32>>,
    raw: HashMap<(usize, Sample), Vec<u8>>,
}

impl Data {
    pub fn get(&self, model: usize, sample: &Sample) -> Result<&[f32]> {
        self.samples
            .get(&(model, sample.clone()))
            .map(Vec::as_slice)
            .with_context(|| format!("sample of {} was not planned", sample.tensor))
    }

    /// The raw stored bytes of a sample planned with [`Plan::add_raw`] (windows concatenated).
    pub fn raw(&self, model: usize, sample: &Sample) -> Result<&[u8]> {
        self.raw
            .get(&(model, sample.clone()))
            .map(Vec::as_slice)
            .with_context(|| format!("raw sample of {} was not planned", sample.tensor))
    }
}

/// Reads every planned sample, decoded and raw alike, one batch per model.
pub fn fetch(subjects: &Subjects, plan: &Plan) -> Result<Data> {
    let mut data = Data::default();
    let models: BTreeSet<usize> = plan
        .per_model
        .keys()
        .chain(plan.raw_per_model.keys())
        .copied()
        .collect();
    let empty = BTreeSet::new();
    for m in models {
        let model = subjects.models[m].model;
        let decoded: Vec<&Sample> = plan.per_model.get(&m).unwrap_or(&empty).iter().collect();
        let raw: Vec<&Sample> = plan
            .raw_per_model
            .get(&m)
            .unwrap_or(&empty)
            .iter()
            .collect();
        let requests: Vec<ElementRequest> = decoded
            .iter()
            .chain(&raw)
            .flat_map(|s| {
                s.windows.iter().map(|&(start, count)| ElementRequest {
                    tensor: s.tensor.clone(),
                    start,
                    count,
                })
            })
            .collect();
        let mut bytes = model.read_raw(&requests)?.into_iter();
        for s in decoded {
            let t = model
                .tensor(&s.tensor)
                .with_context(|| format!("{}: no tensor {:?}", model.describe(), s.tensor))?;
            let (mut values, mut window) = (Vec::new(), Vec::new());
            for _ in &s.windows {
                let b = bytes.next().unwrap_or_default();
                crate::dtype::decode_f32(t.dtype, &b, &mut window)
                    .with_context(|| format!("decoding tensor {}", t.name))?;
                values.extend_from_slice(&window);
            }
            data.samples.insert((m, s.clone()), values);
        }
        for s in raw {
            let mut out = Vec::new();
            for _ in &s.windows {
                out.extend(bytes.next().unwrap_or_default());
            }
            data.raw.insert((m, s.clone()), out);
        }
    }
    Ok(data)
}

/// A CSV table an experiment produces.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(name: &str, columns: &[&str]) -> Table {
        Table {
            name: name.to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn to_csv(&self) -> Result<Vec<u8>> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&self.columns)?;
        for r in &self.rows {
            w.write_record(r)?;
        }
        w.into_inner().context("writing CSV")
    }
}

/// Fixed formatting for numbers in tables: 6 decimals, empty for NaN.
pub fn fmt(v: f64) -> String {
    if v.is_nan() {
        String::new()
    } else {
        format!("{v:.6}")
    }
}

/// Mean of the finite values (NaN when there are none): an experiment that did not apply to
/// some items must not drag an average to NaN or to zero.
pub fn mean_finite(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .filter(|x| x.is_finite())
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// Rounds to 9 significant digits, so results do not carry the last bits of floating point
/// summation order (which differ between CPUs) and compare cleanly across machines.
pub fn round9(v: f64) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return v;
    }
    let digits = 8 - v.abs().log10().floor() as i32;
    let p = 10f64.powi(digits);
    (v * p).round() / p
}

/// What one experiment returns.
pub struct Output {
    pub id: &'static str,
    pub result: serde_json::Value,
    pub tables: Vec<Table>,
}

impl Output {
    pub fn new<T: Serialize>(id: &'static str, result: &T, tables: Vec<Table>) -> Result<Output> {
        Ok(Output {
            id,
            result: serde_json::to_value(result)?,
            tables,
        })
    }
}

pub trait Experiment {
    /// Short id as in the repro plan (`e1`, `e2`, …).
    fn id(&self) -> &'static str;
    /// Declares the samples needed.
    fn plan(&self, subjects: &Subjects, plan: &mut Plan);
    /// Computes the result from fetched data.
    fn run(&self, subjects: &Subjects, data: &Data) -> Result<Output>;
}

/// Experiment ids `by_id` knows.
pub const KNOWN: &str = "e0, e0c, e1, e1b, e2, e3, e4, e5, e6, e7, e8, e9";

/// The experiments `compare` knows, by id.
pub fn by_id(id: &str) -> Result<Box<dyn Experiment>> {
    Ok(match id {
        "e0c" => Box::new(e0c_code::CodeLineage::default()),
        "e1" => Box::new(e1_layerwise::Layerwise::default()),
        "e2" => Box::new(e2_baselines::Baselines),
        "e3" => Box::new(e3_bytes::ByteIdentity::default()),
        "e4" => Box::new(e4_alignment::Alignment::default()),
        "e5" => Box::new(e5_projections::Projections::default()),
        "e6" => Box::new(e6_spectra::Spectra::default()),
        "e7" => Box::new(e7_std_curves::StdCurves::default()),
        "e0" => Box::new(e0_config::ConfigTokenizer::default()),
        "e1b" => Box::new(e1b_embeddings::Embeddings::default()),
        "e8" => Box::new(e8_cka::Cka::default()),
        "e9" => Box::new(e9_experts::Experts::default()),
        other => bail!("unknown experiment {other:?} (known: {KNOWN})"),
    })
}

/// Plans, fetches once, and runs every experiment.
pub fn run_all(subjects: &Subjects, experiments: &[Box<dyn Experiment>]) -> Result<Vec<Output>> {
    let mut plan = Plan::default();
    for e in experiments {
        e.plan(subjects, &mut plan);
    }
    let data = fetch(subjects, &plan)?;
    experiments.iter().map(|e| e.run(subjects, &data)).collect()
}

/// Compares two whole tensors chunk by chunk: memory stays at a few chunks whatever the
/// tensor size (`chunk_elems` elements of each, raw and decoded, plus the quantile state).
pub fn compare_streaming(
    a: &Model,
    tensor_a: &str,
    b: &Model,
    tensor_b: &str,
    chunk_elems: u64,
) -> Result<crate::metrics::PairMetrics> {
    let (ta, tb) = (
        a.tensor(tensor_a)
            .with_context(|| format!("{}: no tensor {tensor_a:?}", a.describe()))?,
        b.tensor(tensor_b)
            .with_context(|| format!("{}: no tensor {tensor_b:?}", b.describe()))?,
    );
    if ta.numel != tb.numel {
        bail!(
            "{tensor_a} has {} elements and {tensor_b} {}",
            ta.numel,
            tb.numel
        );
    }
    let mut acc = crate::metrics::PairAccumulator::default();
    let chunk = chunk_elems.max(1);
    let mut start = 0;
    while start < ta.numel {
        let count = chunk.min(ta.numel - start);
        let va = a.read_f32(tensor_a, start, count)?;
        let vb = b.read_f32(tensor_b, start, count)?;
        acc.push(&va, &vb);
        start += count;
    }
    Ok(acc.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_keeps_nine_significant_digits() {
        assert_eq!(round9(0.123456789123), 0.123456789);
        assert_eq!(round9(123456.7891234), 123456.789);
        assert_eq!(round9(-2.0e-7 / 3.0), -6.66666667e-8);
        assert!(round9(f64::NAN).is_nan());
        assert_eq!(fmt(f64::NAN), "");
        assert_eq!(fmt(0.5), "0.500000");
    }
}
