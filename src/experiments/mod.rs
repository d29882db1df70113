//! The experiment framework: each experiment declares the samples it needs, the runner
//! fetches them for every model in one batch (so sources coalesce and parallelise reads),
//! then each experiment computes a typed result and its tables from the fetched data.
//!
//! Experiments never do I/O of their own and know nothing of how results are packaged.

pub mod canonical;
pub mod e0_config;
pub mod e0c_code;
pub mod e10_layers;
pub mod e10_mlp_matching;
pub mod e10_tables;
pub mod e1_layerwise;
pub mod e1b_embeddings;
pub mod e2_baselines;
pub mod e3_blocks;
pub mod e3_bytes;
pub mod e3_casts;
pub mod e3_permuted;
pub mod e3_result;
pub mod e3_tables;
pub mod e3_values;
pub mod e3q_requant;
pub mod e3q_tables;
pub mod e4_alignment;
pub mod e5_projections;
pub mod e6_spectra;
pub mod e7_reference;
pub mod e7_std_curves;
pub mod e8_align;
pub mod e8_cka;
pub mod e8_params;
pub mod e8_tables;
pub mod e9_experts;
pub mod estimate;
pub mod readback;
pub mod registry;
pub mod roles;
pub mod tokens;
pub mod typed;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::{ElementRequest, Model};
use crate::progress::{Progress, Silent, Step};
use crate::source::Reread;

/// One model taking part, with its label in results (`A`, `B`, `C1`, …).
pub struct Subject<'a> {
    /// `A`, `B`, `C1`, …
    pub label: String,
    /// The opened model.
    pub model: &'a Model,
}

/// The models of an audit: A (the possible origin), B (the suspect), then controls.
pub struct Subjects<'a> {
    /// A, B, then the controls, in that order.
    pub models: Vec<Subject<'a>>,
}

impl<'a> Subjects<'a> {
    /// A and B, then the controls labelled `C1`, `C2`, …
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

    /// `A~B`-style label of the pair of models `i` and `j`.
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
    /// The tensor's name.
    pub tensor: String,
    /// `(first element, count)` windows, in the order read.
    pub windows: Vec<(u64, u64)>,
}

impl Sample {
    /// All `numel` elements of `tensor`, as one window.
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
    /// Asks for a sample of model `model` (an index into the subjects), decoded to f32.
    pub fn add(&mut self, model: usize, sample: Sample) {
        self.per_model.entry(model).or_default().insert(sample);
    }

    /// Asks for the raw stored bytes of a sample (its windows must start and end on byte
    /// boundaries, which every dtype of 8 bits or more does).
    pub fn add_raw(&mut self, model: usize, sample: Sample) {
        self.raw_per_model.entry(model).or_default().insert(sample);
    }

    /// The models the plan reads from.
    pub fn models(&self) -> BTreeSet<usize> {
        self.per_model
            .keys()
            .chain(self.raw_per_model.keys())
            .copied()
            .collect()
    }

    /// Every sample planned for one model, decoded and raw alike (a sample asked both ways
    /// appears twice).
    pub fn samples(&self, model: usize) -> impl Iterator<Item = &Sample> {
        [&self.per_model, &self.raw_per_model]
            .into_iter()
            .filter_map(move |kind| kind.get(&model))
            .flatten()
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
                        Some(
                            s.windows
                                .iter()
                                .map(|w| t.dtype.bytes_for(w.1))
                                .sum::<u64>(),
                        )
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
    /// The decoded values of a planned sample of model `model`; an error if it was not planned.
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
    fetch_with(subjects, plan, &Silent)
}

/// [`fetch`], reporting each model's batch to `progress`.
pub fn fetch_with(subjects: &Subjects, plan: &Plan, progress: &dyn Progress) -> Result<Data> {
    let planned_bytes = plan.bytes(subjects);
    let mut data = Data::default();
    let models = plan.models();
    let empty = BTreeSet::new();
    for m in models {
        let model = subjects.models[m].model;
        progress.step(Step::Fetching {
            label: &subjects.models[m].label,
            bytes: planned_bytes[m],
        });
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
        let mut pieces = model.read_pieces(&requests)?.into_iter();
        let mut requests = requests.iter();
        let mut scales = BTreeMap::new();
        for s in decoded {
            let mut values = Vec::new();
            for _ in &s.windows {
                let (Some(req), Some(p)) = (requests.next(), pieces.next()) else {
                    break;
                };
                // decoded samples are weights: FP8 codes times their block scale (raw stay raw)
                model.decode_window(req, p, &mut scales, &mut values)?;
            }
            data.samples.insert((m, s.clone()), values);
        }
        for s in raw {
            let mut out = Vec::new();
            for _ in &s.windows {
                out.extend(pieces.next().into_iter().flatten().flat_map(|(_, b)| b));
            }
            data.raw.insert((m, s.clone()), out);
        }
        progress.step(Step::Done);
    }
    Ok(data)
}

/// A layer×layer matrix kept in results for the report's plots. Deep models would make
/// results.json large, so at most `max_layers` evenly spaced layers (first and last included)
/// are kept per side and values are rounded to `decimals` places; full matrices are in the
/// experiments' own results at table precision (E2's `cells`, E4's `matrices`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlotMatrix {
    /// At most this many layers kept per side.
    pub max_layers: usize,
    /// Decimal places the values are rounded to.
    pub decimals: u32,
    /// The layer of each row and each column.
    pub row_layers: Vec<u32>,
    /// The layer of each column (see `row_layers`).
    pub col_layers: Vec<u32>,
    /// `values[row][col]`; NaN (JSON null) where the metric is undefined.
    pub values: Vec<Vec<f64>>,
}

/// Layers kept per side in a [`PlotMatrix`].
pub const PLOT_MATRIX_MAX_LAYERS: usize = 32;

impl PlotMatrix {
    /// Keeps at most [`PLOT_MATRIX_MAX_LAYERS`] rows and columns of `value(row, col)`.
    pub fn capped(rows: &[u32], cols: &[u32], value: impl Fn(usize, usize) -> f64) -> PlotMatrix {
        const DECIMALS: u32 = 4;
        let (r, c) = (
            evenly_spaced(rows.len(), PLOT_MATRIX_MAX_LAYERS),
            evenly_spaced(cols.len(), PLOT_MATRIX_MAX_LAYERS),
        );
        PlotMatrix {
            max_layers: PLOT_MATRIX_MAX_LAYERS,
            decimals: DECIMALS,
            row_layers: r.iter().map(|&i| rows[i]).collect(),
            col_layers: c.iter().map(|&j| cols[j]).collect(),
            values: r
                .iter()
                .map(|&i| {
                    c.iter()
                        .map(|&j| round_decimals(value(i, j), DECIMALS))
                        .collect()
                })
                .collect(),
        }
    }
}

/// `min(n, max)` indices spread evenly over `0..n`, first and last included.
fn evenly_spaced(n: usize, max: usize) -> Vec<usize> {
    if n <= max || max < 2 {
        return (0..n.min(max)).collect();
    }
    (0..max).map(|k| k * (n - 1) / (max - 1)).collect()
}

/// A CSV table an experiment produces.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// File name stem (`data/<name>.csv`).
    pub name: String,
    /// Column headers.
    pub columns: Vec<String>,
    /// Rows of cells, as written.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(name: &str, columns: &[&str]) -> Table {
        Table {
            name: name.to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// The table as CSV bytes (header first).
    pub fn to_csv(&self) -> Result<Vec<u8>> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(self.columns.iter().map(|c| csv_cell(c)))?;
        for r in &self.rows {
            w.write_record(r.iter().map(|c| csv_cell(c)))?;
        }
        w.into_inner().context("writing CSV")
    }
}

/// A CSV cell a spreadsheet shows as text: a string that would start a formula (`=`, `+`,
/// `-`, `@`, or a tab or carriage return before one) gets a leading `'`, as OWASP advises; a
/// number (`-0.5`, `+3`) stays a number. Tensor names and config values come from the model,
/// which is hostile input.
pub fn csv_cell(cell: &str) -> String {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && cell.parse::<f64>().is_err() {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

#[cfg(test)]
mod csv_tests {
    use super::csv_cell;

    #[test]
    fn formula_cells_become_text_and_numbers_stay_numbers() {
        for (cell, want) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+cmd", "'+cmd"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("-0.5", "-0.5"),
            ("+3", "+3"),
            ("-inf", "-inf"),
            (
                "model.layers.0.q_proj.weight",
                "model.layers.0.q_proj.weight",
            ),
            ("", ""),
        ] {
            assert_eq!(csv_cell(cell), want, "{cell:?}");
        }
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

/// Reads back a number that results.json holds as `null` because it was NaN (serde_json writes
/// every non-finite f64 as null): for `#[serde(deserialize_with = "nan_if_null")]`.
pub fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Rounds to `decimals` places (NaN and infinities unchanged).
pub fn round_decimals(v: f64, decimals: u32) -> f64 {
    let scale = 10f64.powi(decimals as i32);
    (v * scale).round() / scale
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
    /// The experiment's id (`e1`, …).
    pub id: &'static str,
    /// The typed result as JSON, as results.json records it.
    pub result: serde_json::Value,
    /// Its tables, derived from `result`.
    pub tables: Vec<Table>,
}

impl Output {
    /// The result and its tables, derived from the result as `results.json` records it
    /// ([`tables_of`]): the one derivation `verify` repeats on a bundle, so a table can never
    /// say what the signed results do not.
    pub fn new<T: Serialize>(id: &'static str, result: &T) -> Result<Output> {
        let result = serde_json::to_value(result)?;
        let tables = tables_of(id, &result)?;
        Ok(Output { id, result, tables })
    }
}

/// The tables (`data/*.csv`) of an experiment's result, read back into its own typed result
/// ([`readback::from_value`]).
pub fn tables_of(id: &str, result: &serde_json::Value) -> Result<Vec<Table>> {
    (registry::entry(id)?.tables)(result)
        .with_context(|| format!("the tables of {id}, from its result"))
}

/// One experiment: what it reads (`plan`) and what it computes from that (`run`).
pub trait Experiment {
    /// Short id as in the repro plan (`e1`, `e2`, …).
    fn id(&self) -> &'static str;
    /// Declares the samples needed.
    fn plan(&self, subjects: &Subjects, plan: &mut Plan);
    /// Computes the result from fetched data.
    fn run(&self, subjects: &Subjects, data: &Data) -> Result<Output>;
}

/// The experiments `compare` knows, by id, with default parameters.
pub fn by_id(id: &str) -> Result<Box<dyn Experiment>> {
    Ok(configured(id, None)?.0)
}

/// An experiment with its parameters overridden by a table (`[params.e8]` of `audit.toml`;
/// unknown keys are refused), and the parameters it will run with, defaults included, so
/// they can be recorded beside the results.
pub fn configured(
    id: &str,
    overrides: Option<&toml::Table>,
) -> Result<(Box<dyn Experiment>, toml::Table)> {
    (registry::entry(id)?.configure)(overrides)
}

/// Plans, fetches once, and runs every experiment.
pub fn run_all(subjects: &Subjects, experiments: &[Box<dyn Experiment>]) -> Result<Vec<Output>> {
    run_all_with(subjects, experiments, &Silent)
}

/// Models [`run_all_with`] fetches from: one progress step each, before the experiments.
pub fn fetched_models(subjects: &Subjects, experiments: &[Box<dyn Experiment>]) -> usize {
    let mut plan = Plan::default();
    for e in experiments {
        e.plan(subjects, &mut plan);
    }
    plan.models().len()
}

/// [`run_all`], reporting each fetch and each experiment to `progress`.
///
/// Every byte range of every experiment is planned first and fetched in one coalesced batch
/// per model. Where a second read is cheap (local files, or a remote model with the range
/// cache on), the batch only fills the cache, in slices of at most [`PREFETCH_SLICE_BYTES`],
/// and each experiment then reads its own samples back and drops them before the next one
/// runs: peak memory is one experiment's decoded samples plus one slice, not the whole plan.
/// Without a cache the whole plan is held in memory at once.
pub fn run_all_with(
    subjects: &Subjects,
    experiments: &[Box<dyn Experiment>],
    progress: &dyn Progress,
) -> Result<Vec<Output>> {
    let mut plan = Plan::default();
    for e in experiments {
        e.plan(subjects, &mut plan);
    }
    let staged = subjects
        .models
        .iter()
        .all(|s| s.model.source().reread() != Reread::Refetch);
    let shared = if staged {
        prefetch(subjects, &plan, progress)?;
        None
    } else {
        Some(fetch_with(subjects, &plan, progress)?)
    };
    experiments
        .iter()
        .map(|e| {
            progress.step(Step::Running { id: e.id() });
            let out = match &shared {
                Some(data) => e.run(subjects, data),
                None => {
                    let mut own = Plan::default();
                    e.plan(subjects, &mut own);
                    fetch(subjects, &own).and_then(|data| e.run(subjects, &data))
                }
            };
            progress.step(Step::Done);
            out.with_context(|| format!("experiment {}", e.id()))
        })
        .collect()
}

/// Largest slice of a prefetch held in memory at once.
pub const PREFETCH_SLICE_BYTES: u64 = 256 << 20;

/// Fetches every planned range of the remote models into the range cache, in file order and
/// in slices, so coalescing still merges neighbours and memory stays bounded.
fn prefetch(subjects: &Subjects, plan: &Plan, progress: &dyn Progress) -> Result<()> {
    let planned_bytes = plan.bytes(subjects);
    let models = plan.models();
    for m in models {
        let model = subjects.models[m].model;
        progress.step(Step::Fetching {
            label: &subjects.models[m].label,
            bytes: planned_bytes[m],
        });
        if model.source().reread() == Reread::Cached {
            let mut requests: Vec<(String, u64, u64, ElementRequest)> = Vec::new();
            for s in plan.samples(m) {
                let t = model
                    .tensor(&s.tensor)
                    .with_context(|| format!("{}: no tensor {:?}", model.describe(), s.tensor))?;
                for &(start, count) in &s.windows {
                    let pieces = t.pieces(start, count)?;
                    let first = pieces.first().map_or(0, |p| p.range.start);
                    requests.push((
                        t.file.clone(),
                        first,
                        pieces.iter().map(|p| p.range.len()).sum(),
                        ElementRequest {
                            tensor: s.tensor.clone(),
                            start,
                            count,
                        },
                    ));
                }
            }
            requests.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
            let mut slice: Vec<ElementRequest> = Vec::new();
            let mut slice_bytes = 0;
            for (_, _, len, req) in requests {
                if slice_bytes + len > PREFETCH_SLICE_BYTES && !slice.is_empty() {
                    model.read_raw(&slice)?;
                    slice.clear();
                    slice_bytes = 0;
                }
                slice.push(req);
                slice_bytes += len;
            }
            if !slice.is_empty() {
                model.read_raw(&slice)?;
            }
        }
        progress.step(Step::Done);
    }
    Ok(())
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

#[cfg(test)]
mod plot_matrix_tests {
    use super::*;

    #[test]
    fn capped_matrix_keeps_first_and_last_layers_and_rounds() {
        let layers: Vec<u32> = (0..100).collect();
        let m = PlotMatrix::capped(&layers, &layers[..3], |r, c| r as f64 + c as f64 / 3.0);
        assert_eq!(m.row_layers.len(), PLOT_MATRIX_MAX_LAYERS);
        assert_eq!((m.row_layers[0], m.row_layers[31]), (0, 99));
        assert_eq!(m.col_layers, vec![0, 1, 2]);
        // Row 1 is index 1·99/31 = 3, so the value is 3 + 1/3, rounded to 4 places.
        assert_eq!(m.row_layers[1], 3);
        assert_eq!(m.values[1][1], 3.3333);
        assert_eq!(evenly_spaced(5, 5), vec![0, 1, 2, 3, 4]);
        assert_eq!(evenly_spaced(10, 4), vec![0, 3, 6, 9]);
    }
}
