//! weight-audit: reproducible, signed audits of LLM weight provenance.
//!
//! Layers, each importing only from those before it in this list (checked by
//! `tests/it/layers.rs` over every non-test source file):
//! `formats` (GGUF), `dtype`, `header`, `arch` (parsing); `files`; the math, pure functions: `stats`, `assignment` (the one solver), `metrics`,
//! `sampling`, `align`, `cka`, `hidden_alignment`, `awm`, `procrustes`, `curves`, `roc`; `source` (local folders and the
//! Hub); `progress`; `model` (inventory and tensor reads); `vocab`;
//! `experiments` (one registry; each experiment plans its reads and computes a typed result,
//! its tables derived from that result); `inventory`; `rubric`, `calibration`, `verdict`; `record` (results.json's models, rubric and calibration entries);
//! `report` (rendered from results); `pipeline` (subjects and experiments in, results and the
//! verdict out: every way to run an audit goes through it); `config`; `bundle`; `audit` (a
//! request to a bundle: what `audit run` runs); `diff` (two audits compared); `demo` (the
//! built-in demo's models); `bank` (the calibration bank measured over labelled suites);
//! `eval` (scores, ROC and rates over labelled pairs).
//!
//! Two crates of the workspace are not the product and depend on nothing of it:
//! `weight-audit-lab` (`crates/lab`, synthetic models of known lineage, which the demo, the
//! calibration's synthetic suites and E7's reference curves are made from) and
//! `weight-audit-hub` (`crates/hubserver`, the loopback Hub the tests and `audit hub-serve`
//! use). The command line is not part of the library either: clap's types and one handler per subcommand
//! live with the `audit` binary (`src/bin/audit/`), which only parses, calls this API and
//! prints.

#![deny(missing_docs)]

pub mod align;
pub mod arch;
pub mod assignment;
pub mod audit;
pub mod awm;
pub mod bank;
pub mod bundle;
pub mod calibration;
pub mod cka;
pub mod config;
pub mod curves;
pub mod demo;
pub mod diff;
pub mod dtype;
pub mod eval;
pub mod experiments;
pub mod files;
pub mod formats;
pub mod header;
pub mod hidden_alignment;
pub mod inventory;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod procrustes;
pub mod progress;
pub mod record;
pub mod report;
pub mod roc;
pub mod rubric;
pub mod sampling;
pub mod source;
pub mod stats;
pub mod verdict;
pub mod vocab;

/// A check that ran and failed (exit code 1), as opposed to an input or usage error (2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckFailed(pub String);
