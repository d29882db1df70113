//! The report: `report.md`, a self-contained `report.html` and the plots, rendered from
//! results.json alone. Nothing here reads a model, a clock or the environment, so rendering the
//! same results.json again (as `audit verify` does) gives the same bytes.
//!
//! `render` builds a view (every number formatted, every plot drawn), then the templates under
//! `templates/` (embedded in the binary) lay it out as Markdown and as HTML.

mod calibration;
mod json;
mod layers;
mod matching;
mod mlp;
pub mod plot;
mod requant;
mod section;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use serde_json::Value;

use json::{arr, f, num, s};
use section::{Plots, Section};

#[derive(Serialize)]
struct EvidenceView {
    rule: String,
    experiment: String,
    strength: String,
    value: f64,
    op: String,
    threshold: f64,
    null: Option<f64>,
    controls_passing: String,
    explain: String,
}

#[derive(Serialize)]
struct ModelView {
    label: String,
    reference: String,
    pinned: String,
}

#[derive(Serialize)]
struct View {
    verdict: String,
    /// CSS class of the verdict banner.
    verdict_class: String,
    summary: String,
    fired: Vec<EvidenceView>,
    not_fired: Vec<EvidenceView>,
    models: Vec<ModelView>,
    tool: String,
    rubric_version: String,
    rubric_sha256: String,
    calibration_version: String,
    calibration_sha256: String,
    /// Why the verdict is what it is.
    reasons: Vec<String>,
    /// The verdict's false-positive statement.
    error: String,
    /// What was examined (or why nothing decisive could run).
    coverage: String,
    /// The pair's kind and the calibration pairs of that kind.
    kind: String,
    /// What DERIVED means and cannot tell apart.
    meaning: String,
    sections: Vec<Section>,
    /// A worked example of the cosine trap from this audit's own numbers, when E1 ran.
    cosine_example: Option<String>,
}

fn evidence(d: &Value) -> (Vec<EvidenceView>, Vec<EvidenceView>) {
    let views = arr(d, "evidence").iter().map(|e| {
        let view = EvidenceView {
            rule: s(e, "rule").into(),
            experiment: s(e, "experiment").into(),
            strength: s(e, "strength").into(),
            value: f(&e["value"]),
            op: s(e, "op").into(),
            threshold: f(&e["threshold"]),
            null: e["null"].as_f64(),
            controls_passing: arr(e, "controls_passing")
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            explain: s(e, "explain").into(),
        };
        (e["fired"] == true, view)
    });
    let (fired, not): (Vec<_>, Vec<_>) = views.partition(|(fired, _)| *fired);
    (
        fired.into_iter().map(|x| x.1).collect(),
        not.into_iter().map(|x| x.1).collect(),
    )
}

fn summary(fired: &[EvidenceView], total: usize) -> String {
    if fired.is_empty() {
        return format!(
            "None of the {total} rules fired: nothing beyond what the nulls and controls show."
        );
    }
    let count = |k: &str| fired.iter().filter(|e| e.strength == k).count();
    format!(
        "{} of {total} rules fired: {} strong, {} supporting, {} weak.",
        fired.len(),
        count("strong"),
        count("supporting"),
        count("weak")
    )
}

fn verdict_class(verdict: &str) -> &'static str {
    match verdict {
        "DERIVED" => "derived",
        "LIKELY DERIVED" => "likely",
        "INCONCLUSIVE" => "inconclusive",
        "NOT SUPPORTED BY WEIGHTS" => "not-supported",
        _ => "unknown",
    }
}

/// The control pair whose norm vectors look most alike by raw cosine, told with its own
/// shuffle null and Pearson (A~B when there is no control).
fn cosine_example(e1: &Value) -> Option<String> {
    let summary = arr(e1, "summary");
    let mut by_pair: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for x in summary.iter().filter(|x| s(x, "family").contains("norm")) {
        by_pair.entry(s(x, "pair")).or_default().push(x);
    }
    let pooled = |items: &Vec<&Value>, k: &str| json::mean(items.iter().map(|x| f(&x[k])));
    let pick = by_pair
        .iter()
        .filter(|(p, _)| **p != "A~B")
        .max_by(|a, b| pooled(a.1, "mean_cosine").total_cmp(&pooled(b.1, "mean_cosine")))
        .or_else(|| by_pair.iter().find(|(p, _)| **p == "A~B"))?;
    let (c, n, r) = (
        pooled(pick.1, "mean_cosine"),
        pooled(pick.1, "mean_shuffle_null_cosine"),
        pooled(pick.1, "mean_pearson"),
    );
    c.is_finite().then(|| {
        format!(
            "In this audit, {}'s norm vectors have a raw cosine of {}; shuffling their coordinates, which destroys any relation, still gives {}; their Pearson correlation is {}.",
            pick.0,
            num(c),
            num(n),
            num(r)
        )
    })
}

fn section(id: &str, result: &Value, plots: &mut Plots) -> Result<Section> {
    Ok(match id {
        "e0" => matching::e0(result),
        "e0c" => matching::e0c(result),
        "e1" => layers::e1(result, plots)?,
        "e1b" => matching::e1b(result, plots)?,
        "e2" => layers::e2(result, plots)?,
        "e3" => matching::e3(result, plots)?,
        "e3q" => requant::e3q(result)?,
        "e4" => layers::e4(result, plots)?,
        "e5" => layers::e5(result, plots)?,
        "e6" => matching::e6(result, plots)?,
        "e7" => layers::e7(result, plots)?,
        "e8" => matching::e8(result, plots)?,
        "e9" => matching::e9(result, plots)?,
        "e10" => mlp::e10(result, plots)?,
        other => Section {
            id: other.into(),
            title: other.to_uppercase(),
            nav: String::new(),
            question: String::new(),
            null: String::new(),
            reading: format!(
                "This report has no view of {other}; its findings are in results.json."
            ),
            tables: Vec::new(),
            plots: Vec::new(),
        },
    })
}

fn environment() -> Result<Environment<'static>> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()?,
    );
    // The file name decides escaping: HTML-escaped for report.html.j2, none for the others.
    env.add_template("report.md.j2", include_str!("../../templates/report.md.j2"))?;
    env.add_template(
        "report.html.j2",
        include_str!("../../templates/report.html.j2"),
    )?;
    env.add_template("report.css", include_str!("../../templates/report.css"))?;
    env.add_filter("num", |v: minijinja::Value| {
        f64::try_from(v).map_or_else(|_| "n/a".to_string(), num)
    });
    env.add_filter("mdcell", md_cell);
    env.add_filter("md", md_text);
    Ok(env)
}

/// Text that Markdown renderers show as text: without `<` no HTML tag can open.
fn md_text(text: String) -> String {
    text.replace('<', "&lt;")
}

/// Text safe inside a Markdown table cell: no pipe, no line break, no HTML.
fn md_cell(text: String) -> String {
    md_text(text.replace('\\', "\\\\").replace('|', "\\|")).replace(['\n', '\r'], " ")
}

/// Renders the report of one results.json: file name → bytes for `report.md`,
/// `report.html` and every `plots/<name>.svg` / `.png`.
pub fn render(results: &Value) -> Result<BTreeMap<String, Vec<u8>>> {
    if !results.is_object() {
        bail!("results.json must hold an object");
    }
    let decision = &results["decision"];
    let (fired, not_fired) = evidence(decision);
    let total = fired.len() + not_fired.len();
    let experiments = &results["experiments"];
    let mut plots = Plots::default();
    let mut sections = Vec::new();
    let present: Vec<&str> = experiments
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    // Report order is the registry's; an id it does not know comes after, as a plain note.
    let known = crate::experiments::registry::ids(|_| true);
    let ordered = known
        .iter()
        .copied()
        .filter(|id| present.contains(id))
        .chain(
            present
                .iter()
                .copied()
                .filter(|id| !known.contains(id))
                .take(json::MAX_GROUPS),
        );
    if !arr(decision, "evidence").is_empty() {
        let mut sec =
            calibration::section(results, &mut plots).context("report section calibration")?;
        sec.nav = "Calibration".into();
        sections.push(sec);
    }
    for id in ordered {
        let mut sec = section(id, &experiments[id], &mut plots)
            .with_context(|| format!("report section {id}"))?;
        sec.nav = sec.title.split(" · ").next().unwrap_or(id).to_string();
        sections.push(sec);
    }
    let verdict = s(decision, "verdict");
    let view = View {
        verdict: if verdict.is_empty() {
            "NO VERDICT".into()
        } else {
            verdict.into()
        },
        verdict_class: verdict_class(verdict).into(),
        summary: summary(&fired, total),
        fired,
        not_fired,
        models: arr(results, "models")
            .iter()
            .map(|m| ModelView {
                label: s(m, "label").into(),
                reference: s(m, "reference").into(),
                pinned: s(m, "pinned").into(),
            })
            .collect(),
        tool: format!(
            "{} {}",
            s(&results["tool"], "name"),
            s(&results["tool"], "version")
        ),
        rubric_version: s(&results["rubric"], "version").into(),
        rubric_sha256: s(&results["rubric"], "sha256").into(),
        calibration_version: s(&results["calibration"], "version").into(),
        calibration_sha256: s(&results["calibration"], "sha256").into(),
        reasons: arr(decision, "reasons")
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        error: s(&decision["error"], "statement").into(),
        coverage: s(&decision["coverage"], "statement").into(),
        kind: s(decision, "kind_statement").into(),
        meaning: s(decision, "meaning").into(),
        sections,
        cosine_example: cosine_example(&experiments["e1"]),
    };
    let env = environment()?;
    let ctx = minijinja::Value::from(minijinja::value::Serde(&view));
    let mut files = plots.files;
    for (name, template) in [
        ("report.md", "report.md.j2"),
        ("report.html", "report.html.j2"),
    ] {
        let text = env
            .get_template(template)?
            .render(&ctx)
            .with_context(|| format!("rendering {name}"))?;
        files.insert(name.into(), text.into_bytes());
    }
    Ok(files)
}

/// Writes rendered files under `dir`, creating `plots/`.
pub fn write(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    for (name, bytes) in files {
        let rel = Path::new(name);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            bail!(
                "refusing to write report file {name:?} outside {}",
                dir.display()
            );
        }
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
