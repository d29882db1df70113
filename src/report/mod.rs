//! The report: `report.md`, a self-contained `report.html` and the plots, rendered from
//! results.json alone. Nothing here reads a model, a clock or the environment, so rendering the
//! same results.json again (as `audit verify` does) gives the same bytes.
//!
//! `render` reads results.json back into the pipeline's and the experiments' own types (a part
//! that does not parse is said so in the report, never shown as blanks), builds a view (every
//! number formatted, every plot drawn), then the templates under `templates/` (embedded in the
//! binary) lay it out as Markdown and as HTML.

mod alignment;
mod bytes;
mod calibration;
mod format;
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
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::experiments::e1_layerwise::Result1;
use crate::experiments::readback;
use crate::record::{ModelEntry, RubricEntry};
use crate::verdict::Decision;
use format::num;
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

fn evidence(d: Option<&Decision>) -> (Vec<EvidenceView>, Vec<EvidenceView>) {
    let views = d.into_iter().flat_map(|d| &d.evidence).map(|e| {
        let view = EvidenceView {
            rule: e.rule.clone(),
            experiment: e.experiment.clone(),
            strength: e.strength.as_str().into(),
            value: e.value,
            op: e.op.clone(),
            threshold: e.threshold,
            null: e.null,
            controls_passing: e.controls_passing.join(", "),
            explain: e.explain.clone(),
        };
        (e.fired, view)
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
fn cosine_example(e1: &Result1) -> Option<String> {
    use crate::experiments::e1_layerwise::FamilySummary;
    let mut by_pair: BTreeMap<&str, Vec<&FamilySummary>> = BTreeMap::new();
    for x in e1.summary.iter().filter(|x| layers::is_norm(x.family)) {
        by_pair.entry(x.pair.as_str()).or_default().push(x);
    }
    let pooled = |items: &Vec<&FamilySummary>, get: fn(&FamilySummary) -> f64| {
        format::mean(items.iter().map(|x| get(x)))
    };
    let cosine = |x: &FamilySummary| x.mean_cosine;
    let pick = by_pair
        .iter()
        .filter(|(p, _)| **p != "A~B")
        .max_by(|a, b| pooled(a.1, cosine).total_cmp(&pooled(b.1, cosine)))
        .or_else(|| by_pair.iter().find(|(p, _)| **p == "A~B"))?;
    let (c, n, r) = (
        pooled(pick.1, cosine),
        pooled(pick.1, |x| x.mean_shuffle_null_cosine),
        pooled(pick.1, |x| x.mean_pearson),
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

/// A section that only says why it has no view.
fn note(id: &str, reading: String) -> Section {
    Section {
        id: id.into(),
        title: id.to_uppercase(),
        nav: String::new(),
        question: String::new(),
        null: String::new(),
        reading,
        tables: Vec::new(),
        plots: Vec::new(),
    }
}

/// An experiment's result read back into its own type.
fn typed<T: DeserializeOwned>(result: &Value) -> Result<T, serde_json::Error> {
    readback::from_value(result)
}

/// One experiment's section, from its result read back into its own type: a result that does
/// not parse (a results.json from another version, or tampered) gets a note saying so.
fn section(id: &str, result: &Value, plots: &mut Plots) -> Result<Section> {
    let section = match id {
        "e0" => typed(result).map(|r| Ok(matching::e0(&r))),
        "e0c" => typed(result).map(|r| Ok(matching::e0c(&r))),
        "e1" => typed(result).map(|r| layers::e1(&r, plots)),
        "e1b" => typed(result).map(|r| matching::e1b(&r, plots)),
        "e2" => typed(result).map(|r| layers::e2(&r, plots)),
        "e3" => typed(result).map(|r| bytes::e3(&r, plots)),
        "e3q" => typed(result).map(|r| Ok(requant::e3q(&r))),
        "e4" => typed(result).map(|r| alignment::e4(&r, plots)),
        "e5" => typed(result).map(|r| alignment::e5(&r, plots)),
        "e6" => typed(result).map(|r| matching::e6(&r, plots)),
        "e7" => typed(result).map(|r| layers::e7(&r, plots)),
        "e8" => typed(result).map(|r| matching::e8(&r, plots)),
        "e9" => typed(result).map(|r| matching::e9(&r, plots)),
        "e10" => typed(result).map(|r| mlp::e10(&r, plots)),
        other => {
            return Ok(note(
                other,
                format!("This report has no view of {other}; its findings are in results.json."),
            ));
        }
    };
    section.unwrap_or_else(|e| {
        Ok(note(
            id,
            format!("{id} in results.json does not read as this version's result of {id} ({e}); its findings are in results.json."),
        ))
    })
}

/// The parts of results.json the report shows beside the experiments, each read into the
/// pipeline's own type; an absent or unreadable part reads as `None`.
struct Record {
    tool: Option<BTreeMap<String, String>>,
    models: Vec<ModelEntry>,
    rubric: Option<RubricEntry>,
    calibration: Option<RubricEntry>,
    decision: Option<Decision>,
    /// Why the decision could not be read, when it is there and does not parse.
    decision_error: Option<String>,
}

impl Record {
    fn read(results: &Value) -> Record {
        fn part<T: DeserializeOwned>(results: &Value, key: &str) -> Option<T> {
            results.get(key).and_then(|v| typed(v).ok())
        }
        let decision = results.get("decision").map(typed::<Decision>);
        Record {
            tool: part(results, "tool"),
            models: part(results, "models").unwrap_or_default(),
            rubric: part(results, "rubric"),
            calibration: part(results, "calibration"),
            decision_error: decision.as_ref().and_then(|d| d.as_ref().err()).map(|e| {
                format!(
                    "The decision in results.json does not read as this version's decision ({e})."
                )
            }),
            decision: decision.and_then(Result::ok),
        }
    }
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
    let record = Record::read(results);
    let decision = record.decision.as_ref();
    let (fired, not_fired) = evidence(decision);
    let total = fired.len() + not_fired.len();
    let experiments = &results["experiments"];
    let mut plots = Plots::default();
    let mut sections = Vec::new();
    let present: Vec<&str> = experiments
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let version = |entry: &Option<RubricEntry>| {
        entry
            .as_ref()
            .map(|e| (e.version.clone(), e.sha256.clone()))
            .unwrap_or_default()
    };
    let (calibration_version, calibration_sha256) = version(&record.calibration);
    let (rubric_version, rubric_sha256) = version(&record.rubric);
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
                .take(format::MAX_GROUPS),
        );
    if let Some(d) = decision.filter(|d| !d.evidence.is_empty()) {
        let mut sec = calibration::section(d, &calibration_version, &mut plots)
            .context("report section calibration")?;
        sec.nav = "Calibration".into();
        sections.push(sec);
    }
    for id in ordered {
        let mut sec = section(id, &experiments[id], &mut plots)
            .with_context(|| format!("report section {id}"))?;
        sec.nav = sec.title.split(" · ").next().unwrap_or(id).to_string();
        sections.push(sec);
    }
    let verdict = decision.map_or("", |d| d.verdict.label());
    let text = |get: fn(&Decision) -> &String| decision.map(get).cloned().unwrap_or_default();
    let tool = |key: &str| {
        record
            .tool
            .as_ref()
            .and_then(|t| t.get(key))
            .cloned()
            .unwrap_or_default()
    };
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
        models: record
            .models
            .iter()
            .map(|m| ModelView {
                label: m.label.clone(),
                reference: m.reference.clone(),
                pinned: m.pinned.clone(),
            })
            .collect(),
        tool: format!("{} {}", tool("name"), tool("version")),
        rubric_version,
        rubric_sha256,
        calibration_version,
        calibration_sha256,
        reasons: decision
            .map(|d| d.reasons.clone())
            .or_else(|| record.decision_error.clone().map(|e| vec![e]))
            .unwrap_or_default(),
        error: text(|d| &d.error.statement),
        coverage: text(|d| &d.coverage.statement),
        kind: text(|d| &d.kind_statement),
        meaning: text(|d| &d.meaning),
        sections,
        cosine_example: experiments
            .get("e1")
            .and_then(|v| typed::<Result1>(v).ok())
            .and_then(|e1| cosine_example(&e1)),
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
