//! What a run will read, before it reads anything: per experiment and per model, the byte
//! ranges, their bytes, and how many HTTP requests they become once coalesced the way the Hub
//! source coalesces them. `audit run --plan` prints it; nothing is fetched to compute it.

use std::collections::BTreeSet;

use anyhow::Result;
use serde::Serialize;

use super::{Experiment, Plan, Sample, Subjects};
use crate::source::ByteRange;
use crate::source::coalesce::coalesce;

/// How requests are formed: the Hub source's coalescing settings.
#[derive(Clone, Copy, Debug)]
pub struct Coalescing {
    /// Ranges closer than this many bytes are merged.
    pub gap: u64,
    /// A merged request never grows beyond this many bytes.
    pub max_span: u64,
}

/// One model's share of a plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Cost {
    /// Element windows asked for.
    pub ranges: usize,
    /// Bytes those windows hold (overlaps counted once).
    pub bytes: u64,
    /// Requests after coalescing (for a remote source; a local one reads from disk).
    pub requests: usize,
    /// Bytes those requests transfer, gaps included.
    pub transfer_bytes: u64,
}

/// What one experiment's plan costs.
#[derive(Clone, Debug, Serialize)]
pub struct ExperimentCost {
    /// The experiment's id.
    pub id: String,
    /// One entry per model, in subject order.
    pub models: Vec<Cost>,
}

/// What an audit would read, per experiment and in total, without reading it.
#[derive(Clone, Debug, Serialize)]
pub struct Estimate {
    /// Model labels, A, B, then the controls.
    pub labels: Vec<String>,
    /// Bytes of each model's safetensors shards.
    pub logical_bytes: Vec<u64>,
    /// Each experiment's plan on its own.
    pub experiments: Vec<ExperimentCost>,
    /// The whole plan: one batch per model, shared windows read once.
    pub total: Vec<Cost>,
}

/// Plans every experiment, alone and together, and prices the plans.
pub fn estimate(
    subjects: &Subjects,
    experiments: &[Box<dyn Experiment>],
    coalescing: Coalescing,
) -> Result<Estimate> {
    let mut union = Plan::default();
    let mut per_experiment = Vec::new();
    for e in experiments {
        let mut plan = Plan::default();
        e.plan(subjects, &mut plan);
        e.plan(subjects, &mut union);
        per_experiment.push(ExperimentCost {
            id: e.id().to_string(),
            models: price(subjects, &plan, coalescing)?,
        });
    }
    let logical_bytes = subjects
        .models
        .iter()
        .map(|s| {
            let shards: BTreeSet<&str> = s.model.shards().iter().map(String::as_str).collect();
            s.model
                .source()
                .files()
                .iter()
                .filter(|f| shards.contains(f.path.as_str()))
                .map(|f| f.size)
                .sum()
        })
        .collect();
    Ok(Estimate {
        labels: subjects.models.iter().map(|s| s.label.clone()).collect(),
        logical_bytes,
        experiments: per_experiment,
        total: price(subjects, &union, coalescing)?,
    })
}

fn price(subjects: &Subjects, plan: &Plan, coalescing: Coalescing) -> Result<Vec<Cost>> {
    (0..subjects.models.len())
        .map(|m| {
            let model = subjects.models[m].model;
            let samples: BTreeSet<&Sample> = plan.samples(m).collect();
            // Ranges per file, in file byte offsets.
            let mut by_file: std::collections::BTreeMap<&str, Vec<ByteRange>> = Default::default();
            for s in samples {
                let Some(t) = model.tensor(&s.tensor) else {
                    continue; // the run reports the missing tensor; the estimate skips it
                };
                for &(start, count) in &s.windows {
                    let ranges = by_file.entry(t.file.as_str()).or_default();
                    ranges.extend(t.pieces(start, count)?.into_iter().map(|p| p.range));
                }
            }
            let mut cost = Cost::default();
            for ranges in by_file.values() {
                cost.ranges += ranges.len();
                cost.bytes += union_len(ranges);
                for span in coalesce(ranges, coalescing.gap, coalescing.max_span) {
                    cost.requests += 1;
                    cost.transfer_bytes += span.range.end - span.range.start;
                }
            }
            Ok(cost)
        })
        .collect()
}

/// Bytes covered by a set of ranges, overlaps counted once.
fn union_len(ranges: &[ByteRange]) -> u64 {
    let mut sorted: Vec<ByteRange> = ranges.to_vec();
    sorted.sort_by_key(|r| (r.start, r.end));
    let (mut total, mut covered_to) = (0u64, 0u64);
    for r in sorted {
        let start = r.start.max(covered_to);
        if r.end > start {
            total += r.end - start;
        }
        covered_to = covered_to.max(r.end);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_ranges_count_once() {
        let r = |start, end| ByteRange { start, end };
        assert_eq!(union_len(&[r(0, 10), r(5, 15), r(20, 30), r(22, 25)]), 25);
        assert_eq!(union_len(&[]), 0);
    }
}
