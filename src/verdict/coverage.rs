//! What a verdict examined: the decisive experiments (those comparing the layers
//! themselves), how many units each compared for A~B, and why one could not run.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Coverage, Examined};
use crate::rubric::Rubric;

/// Units a decisive experiment examined for A~B, and its status.
fn examined(experiments: &BTreeMap<String, Value>, d: &crate::rubric::Decisive) -> Examined {
    let Some(result) = experiments.get(&d.experiment) else {
        return Examined {
            experiment: d.experiment.clone(),
            units: 0.0,
            status: "not run".into(),
        };
    };
    let items: Vec<&Value> = result[&d.list]
        .as_array()
        .map(|a| a.iter().filter(|i| i["pair"] == "A~B").collect())
        .unwrap_or_default();
    let units: f64 = match &d.units {
        Some(field) => items
            .iter()
            .filter_map(|i| i[field.as_str()].as_f64())
            .filter(|x| x.is_finite())
            .sum(),
        None => items.len() as f64,
    };
    let status = d
        .status
        .as_ref()
        .and_then(|f| items.iter().find_map(|i| i[f.as_str()].as_str()))
        .map(str::to_string)
        .unwrap_or_else(|| {
            if items.is_empty() {
                "nothing to compare for A~B".into()
            } else {
                "ok".into()
            }
        });
    Examined {
        experiment: d.experiment.clone(),
        units,
        status,
    }
}

pub(super) fn coverage(rubric: &Rubric, experiments: &BTreeMap<String, Value>) -> Coverage {
    let c = &rubric.coverage;
    let decisive: Vec<Examined> = c
        .decisive
        .iter()
        .map(|d| examined(experiments, d))
        .collect();
    let ran: Vec<&Examined> = decisive
        .iter()
        .filter(|e| e.units >= c.min_units as f64)
        .collect();
    let assessed = !ran.is_empty();
    let statement = if assessed {
        format!(
            "examined: {}",
            ran.iter()
                .map(|e| format!("{} ({} units)", e.experiment, e.units))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!(
            "not assessed: no decisive experiment compared at least {} layers or windows ({})",
            c.min_units,
            decisive
                .iter()
                .map(|e| format!("{}: {}", e.experiment, e.status))
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    Coverage {
        decisive,
        assessed,
        statement,
    }
}
