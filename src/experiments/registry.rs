//! The one list of experiments: each id with whether it runs by default and in `eval`, how
//! it is built from its parameters, and how its tables derive from its result. The CLI's
//! defaults, `audit.toml` validation, `verify`'s table check, the report's section order and
//! `eval` all read this list; an experiment added here is known everywhere.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    Experiment, Table, e0_config, e0c_code, e1_layerwise, e1b_embeddings, e2_baselines, e3_bytes,
    e3_tables, e3q_requant, e3q_tables, e4_alignment, e5_projections, e6_spectra, e7_reference,
    e7_std_curves, e8_cka, e8_tables, e9_experts, e10_mlp_matching, e10_tables,
};

/// An experiment built from its parameters, and the parameters it runs with (defaults
/// included, so they can be recorded beside the results).
pub type Configured = (Box<dyn Experiment>, toml::Table);

/// One experiment as the tool knows it.
pub struct Entry {
    /// Short id as in the repro plan (`e1`, `e1b`, …), in report order.
    pub id: &'static str,
    /// Run by `compare`, `run` and `demo` when no list is given.
    pub default: bool,
    /// Run by `eval` (and `calibrate`) on every pair: the experiments whose scores are
    /// measured against labels (E0 and E0c record configuration and code, not scores).
    pub eval: bool,
    /// Builds the experiment, its parameters overridden by a table (`[params.eN]`).
    pub configure: fn(Option<&toml::Table>) -> Result<Configured>,
    /// Its tables (`data/*.csv`), derived from its result as results.json records it.
    pub tables: fn(&Value) -> Result<Vec<Table>>,
}

/// Every experiment, in report order.
pub const EXPERIMENTS: [Entry; 14] = [
    Entry {
        id: "e0",
        default: true,
        eval: false,
        configure: |o| build("e0", o, e0_config::ConfigTokenizer::new),
        tables: e0_config::tables,
    },
    Entry {
        id: "e0c",
        default: true,
        eval: false,
        configure: |o| build("e0c", o, |params| e0c_code::CodeLineage { params }),
        tables: e0c_code::tables,
    },
    Entry {
        id: "e1",
        default: true,
        eval: true,
        configure: |o| build("e1", o, |params| e1_layerwise::Layerwise { params }),
        tables: e1_layerwise::tables,
    },
    Entry {
        id: "e1b",
        default: true,
        eval: true,
        configure: |o| build("e1b", o, e1b_embeddings::Embeddings::new),
        tables: e1b_embeddings::tables,
    },
    Entry {
        id: "e2",
        default: true,
        eval: true,
        configure: |o| {
            if o.is_some_and(|t| !t.is_empty()) {
                bail!("e2 takes no parameters");
            }
            Ok((Box::new(e2_baselines::Baselines), toml::Table::new()))
        },
        tables: e2_baselines::tables,
    },
    Entry {
        id: "e3",
        default: true,
        eval: true,
        configure: |o| build("e3", o, |params| e3_bytes::ByteIdentity { params }),
        tables: e3_tables::tables,
    },
    Entry {
        id: "e3q",
        default: true,
        eval: true,
        configure: |o| build("e3q", o, |params| e3q_requant::Requant { params }),
        tables: e3q_tables::tables,
    },
    Entry {
        id: "e4",
        default: true,
        eval: true,
        configure: |o| build("e4", o, |params| e4_alignment::Alignment { params }),
        tables: e4_alignment::tables,
    },
    Entry {
        id: "e5",
        default: true,
        eval: true,
        configure: |o| build("e5", o, |params| e5_projections::Projections { params }),
        tables: e5_projections::tables,
    },
    Entry {
        id: "e6",
        default: true,
        eval: true,
        configure: |o| build("e6", o, |params| e6_spectra::Spectra { params }),
        tables: e6_spectra::tables,
    },
    Entry {
        id: "e7",
        default: true,
        eval: true,
        configure: |o| {
            build("e7", o, |params| e7_std_curves::StdCurves {
                params,
                reference: std::sync::Arc::new(e7_reference::LabCurves),
            })
        },
        tables: e7_std_curves::tables,
    },
    Entry {
        id: "e8",
        default: true,
        eval: true,
        configure: |o| build("e8", o, e8_cka::Cka::new),
        tables: e8_tables::tables,
    },
    Entry {
        id: "e9",
        default: true,
        eval: true,
        configure: |o| build("e9", o, |params| e9_experts::Experts { params }),
        tables: e9_experts::tables,
    },
    Entry {
        id: "e10",
        default: true,
        eval: true,
        configure: |o| build("e10", o, |params| e10_mlp_matching::MlpMatching { params }),
        tables: e10_tables::tables,
    },
];

/// The entry of `id`, or an error listing the known ids.
pub fn entry(id: &str) -> Result<&'static Entry> {
    EXPERIMENTS.iter().find(|e| e.id == id).with_context(|| {
        format!(
            "unknown experiment {id:?} (known: {})",
            ids(|_| true).join(", ")
        )
    })
}

/// The ids of the entries `keep` selects, in report order.
pub fn ids(keep: impl Fn(&Entry) -> bool) -> Vec<&'static str> {
    EXPERIMENTS
        .iter()
        .filter(|e| keep(e))
        .map(|e| e.id)
        .collect()
}

/// What `compare`, `run` and `demo` run when no list is given.
pub fn default_ids() -> Vec<String> {
    ids(|e| e.default).into_iter().map(str::to_string).collect()
}

/// What `eval` and `calibrate` run on every pair.
pub fn eval_ids() -> Vec<&'static str> {
    ids(|e| e.eval)
}

fn build<P, E>(
    id: &str,
    overrides: Option<&toml::Table>,
    make: impl FnOnce(P) -> E,
) -> Result<Configured>
where
    P: Serialize + DeserializeOwned + Default,
    E: Experiment + 'static,
{
    let params: P = match overrides {
        Some(t) => t
            .clone()
            .try_into()
            .with_context(|| format!("parameters of {id}"))?,
        None => P::default(),
    };
    let effective = toml::Table::try_from(&params)
        .with_context(|| format!("recording the parameters of {id}"))?;
    Ok((Box::new(make(params)), effective))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each entry builds the experiment of its own id, with parameters that round-trip.
    #[test]
    fn every_entry_builds_its_own_experiment() {
        for e in &EXPERIMENTS {
            let (built, params) = (e.configure)(None).unwrap();
            assert_eq!(built.id(), e.id);
            let (_, again) = (e.configure)(Some(&params)).unwrap();
            assert_eq!(params, again, "{}", e.id);
        }
        let mut seen = std::collections::BTreeSet::new();
        assert!(
            EXPERIMENTS.iter().all(|e| seen.insert(e.id)),
            "duplicate id"
        );
        let err = format!("{:#}", entry("e11").err().unwrap());
        assert!(err.contains("e0, e0c, e1") && err.contains("e10"), "{err}");
    }
}
