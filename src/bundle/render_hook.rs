//! The one place that says how reports are rendered from `results.json`: the bundle writer
//! puts what this returns into the bundle, and `verify` calls it again and requires the
//! same bytes.

use std::collections::BTreeMap;

use anyhow::Result;

/// Renders the report files (`report.md`, `report.html`, `plots/*`) from results.
pub fn render(results: &serde_json::Value) -> Result<BTreeMap<String, Vec<u8>>> {
    crate::report::render(results)
}

/// Which bundle entries are rendered reports (and so must re-render identically).
pub fn is_rendered(name: &str) -> bool {
    name.starts_with("report.") || name.starts_with("plots/")
}
