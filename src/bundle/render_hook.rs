//! The one place that says how reports are rendered from `results.json`: the bundle writer
//! puts what this returns into the bundle, and `verify` calls it again and requires the
//! same bytes.
//!
//! INTEGRATION SEAM: the report renderer (`crate::report::render`, issue #6) is not part of
//! this branch yet. Until it is wired here, this renders nothing: bundles hold no report
//! files and verify's re-render check covers no files (it says so in its output). Wiring it
//! is one line: `crate::report::render(results)`.

use std::collections::BTreeMap;

use anyhow::Result;

/// Renders the report files (`report.md`, `report.html`, `plots/*`) from results.
pub fn render(results: &serde_json::Value) -> Result<BTreeMap<String, Vec<u8>>> {
    let _ = results;
    Ok(BTreeMap::new())
}

/// Which bundle entries are rendered reports (and so must re-render identically).
pub fn is_rendered(name: &str) -> bool {
    name.starts_with("report.") || name.starts_with("plots/")
}
