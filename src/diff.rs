//! What changed between two audits (bundles or results folders), as `audit diff` shows it:
//! the verdict, each rule's outcome, and every number beyond tolerance, with JSON paths. A
//! bundle is read with the same strict reader as `verify`, but its signature is not checked
//! here.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::bundle::archive_read::{self, Limits};
use crate::bundle::jsondiff::{self, Difference, Tolerance};

/// results.json of a results folder or a bundle.
pub fn load_results(path: &Path) -> Result<Value> {
    let bytes = if path.is_dir() {
        let p = path.join("results.json");
        crate::files::read_limited(&p, Limits::default().max_total_bytes)?
    } else {
        eprintln!(
            "diff: reading {} without checking its signature (audit verify does that)",
            path.display()
        );
        let limits = Limits::default();
        let zip = crate::bundle::read_bundle(path, &limits)?;
        archive_read::read(&zip, &limits)
            .with_context(|| format!("reading bundle {}", path.display()))?
            .into_iter()
            .find(|e| e.name == "results.json")
            .with_context(|| format!("{}: no results.json in the bundle", path.display()))?
            .data
            .to_vec()
    };
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: results.json is not JSON", path.display()))
}

/// What differs between two results files.
#[derive(Debug, Default)]
pub struct ResultsDiff {
    /// (A's verdict, B's verdict) when they differ.
    pub verdict: Option<(String, String)>,
    /// One line per rule whose outcome or value differs.
    pub rules: Vec<String>,
    /// Every number beyond tolerance, with its JSON path.
    pub numbers: Vec<Difference>,
}

impl ResultsDiff {
    /// True when nothing differs.
    pub fn is_empty(&self) -> bool {
        self.verdict.is_none() && self.rules.is_empty() && self.numbers.is_empty()
    }
}

fn evidence(results: &Value) -> Vec<(String, &Value)> {
    results["decision"]["evidence"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|x| (x["rule"].as_str().unwrap_or("?").to_string(), x))
                .collect()
        })
        .unwrap_or_default()
}

/// Compares two results.json values: verdict, rule outcomes, then every number (`tol`).
pub fn diff_results(a: &Value, b: &Value, tol: Tolerance) -> ResultsDiff {
    let mut out = ResultsDiff::default();
    let verdict = |r: &Value| {
        r["decision"]["verdict"]
            .as_str()
            .unwrap_or("(none)")
            .to_string()
    };
    if verdict(a) != verdict(b) {
        out.verdict = Some((verdict(a), verdict(b)));
    }
    let (ea, eb) = (evidence(a), evidence(b));
    let mut rules: Vec<&String> = ea.iter().chain(&eb).map(|(r, _)| r).collect();
    rules.sort();
    rules.dedup();
    for rule in rules {
        let find =
            |e: &[(String, &Value)]| e.iter().find(|(r, _)| r == rule).map(|(_, v)| (*v).clone());
        match (find(&ea), find(&eb)) {
            (Some(x), Some(y)) => {
                let fired = x["fired"] != y["fired"];
                let value = !jsondiff::diff(&x["value"], &y["value"], tol).is_empty();
                if fired || value {
                    out.rules.push(format!(
                        "{rule}: fired {} → {}, value {} → {}",
                        x["fired"], y["fired"], x["value"], y["value"]
                    ));
                }
            }
            (x, _) => out.rules.push(format!(
                "{rule}: only in {}",
                if x.is_some() { "A" } else { "B" }
            )),
        }
    }
    out.numbers = jsondiff::diff(a, b, tol);
    out
}
