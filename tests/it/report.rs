//! The rendered report: deterministic, complete, self-contained, escaped, and readable by a
//! real browser (Debian's chromium, headless).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use weight_audit::report;

use crate::util::tmp;

/// The demo audit's results.json (lab models: GLM-like base, Solar-like suspect, control),
/// computed once per test run and written as `compare` writes it.
fn demo_results() -> &'static Value {
    &demo().0
}

fn demo() -> &'static (Value, std::path::PathBuf) {
    static RESULTS: std::sync::OnceLock<(Value, std::path::PathBuf)> = std::sync::OnceLock::new();
    RESULTS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-demo");
        let _ = std::fs::remove_dir_all(&dir);
        let paths = weight_audit::demo::generate_models(&dir).unwrap();
        let open = |p: &Path| {
            weight_audit::model::Model::open(
                Box::new(weight_audit::source::local::LocalSource::open(p).unwrap()),
                &Default::default(),
            )
            .unwrap()
        };
        let models: Vec<_> = paths.iter().map(|p| open(p)).collect();
        let ids: Vec<String> = weight_audit::experiments::registry::default_ids();
        let refs: Vec<String> = ["glm-a", "solar-from-glm", "solar-a"]
            .map(String::from)
            .to_vec();
        let rubric = weight_audit::pipeline::RubricSource::load(None).unwrap();
        let (results, outputs) = weight_audit::pipeline::compare_models(
            &models[0],
            &models[1],
            &[&models[2]],
            &refs,
            &ids,
            &rubric,
        )
        .unwrap();
        let out = dir.join("results");
        weight_audit::pipeline::write_results(&out, &results, &outputs).unwrap();
        (serde_json::to_value(&results).unwrap(), out)
    })
}

fn text(files: &BTreeMap<String, Vec<u8>>, name: &str) -> String {
    String::from_utf8(files[name].clone()).unwrap()
}

/// Every `plots/…` file a report names.
fn referenced_plots(doc: &str) -> Vec<String> {
    doc.match_indices("plots/")
        .map(|(i, _)| {
            doc[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c))
                .collect::<String>()
                .trim_end_matches('.')
                .to_string()
        })
        .collect()
}

#[test]
fn the_demo_report_is_deterministic_complete_and_self_contained() {
    let results = demo_results();
    let files = report::render(results).unwrap();
    assert_eq!(
        files,
        report::render(results).unwrap(),
        "a second render differs"
    );
    let (md, html) = (text(&files, "report.md"), text(&files, "report.html"));
    let verdict = results["decision"]["verdict"].as_str().unwrap();
    assert!(md.contains(&format!("**Verdict: {verdict}.**")), "{md}");
    assert!(html.contains(&format!("<p class=\"verdict-text\">{verdict}</p>")));
    for id in results["experiments"].as_object().unwrap().keys() {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "no section {id}"
        );
        assert!(
            md.contains(&format!("<a id=\"{id}\"></a>")),
            "no md section {id}"
        );
    }
    for id in ["evidence", "inputs", "method", "verify"] {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "no section {id}"
        );
    }
    // Self-contained: no scripts, stylesheets, images or anything fetched from elsewhere.
    for bad in [
        "<script",
        "<link",
        "<img",
        "src=",
        "href=\"http",
        "url(",
        "@import",
    ] {
        assert!(!html.contains(bad), "report.html contains {bad:?}");
    }
    // The only URL is the SVG namespace, which names and fetches nothing.
    let ns = "xmlns=\"http://www.w3.org/2000/svg\"";
    assert_eq!(html.matches("http").count(), html.matches(ns).count());
    // Every plot is inline in the HTML and every file named exists.
    let svgs = files.keys().filter(|k| k.ends_with(".svg")).count();
    assert!(svgs >= 10, "{:?}", files.keys());
    assert_eq!(html.matches("<svg ").count(), svgs);
    for doc in [&md, &html] {
        for p in referenced_plots(doc) {
            assert!(files.contains_key(&p), "{p} is named but not rendered");
        }
    }
    for (name, bytes) in &files {
        if name.ends_with(".png") {
            // Pixels only: no tIME or text chunk that could differ between runs.
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name}");
            for chunk in [b"tIME", b"tEXt", b"iTXt", b"zTXt"] {
                assert!(!bytes.windows(4).any(|w| w == chunk), "{name} has metadata");
            }
        }
    }
    // Numbers are formatted one fixed way (no float noise like 0.30000000000000004).
    assert!(
        !html.contains("0000000"),
        "unformatted float in report.html"
    );
}

#[test]
fn hostile_or_sparse_results_render_escaped_without_panicking() {
    assert!(report::render(&json!([1, 2])).is_err());
    let files = report::render(&json!({})).unwrap();
    assert!(text(&files, "report.html").contains("NO VERDICT"));
    let evil = "<script>alert(1)</script>|x";
    let results = json!({
        "models": [{"label": "A", "reference": evil, "pinned": evil, "format": "safetensors"}],
        "decision": {"verdict": evil, "evidence": [{"rule": evil, "fired": true, "value": null,
            "threshold": "x", "null": 1e308, "explain": evil}]},
        "experiments": {
            "e2": {"families": ["input_norm"], "stats": [{"pair": evil}],
                   "matrices": [{"family": "input_norm", "kind": "cross", "model_a": "A",
                                 "model_b": "B", "metric": "pearson",
                                 "matrix": {"row_layers": [0], "col_layers": [], "values": [[]]}}]},
            "e4": {"alignments": [{"pair": "A~B", "metric": "pearson", "p_value": 0.1,
                                   "layers_b": [0, 1], "argmax": [null, 7],
                                   "matrix": {"row_layers": [0, 1], "col_layers": [0, 1],
                                              "values": [[1e308, -1e308], [null, "x"]]}}]},
            "e7": {"curves": [{"family": evil, "model": "A", "layers": [0], "std": [1e300]}]},
            "e3": {"pairs": [{"primary": true, "matches": [{"tensor_a": evil}]}]},
            "e8": "not an object", "e9": {"layers": [{"null_mean": 1e308, "null_sd": 1e308}]},
            "x9": {}
        }
    });
    let files = report::render(&results).unwrap();
    let (md, html) = (text(&files, "report.md"), text(&files, "report.html"));
    assert!(!html.contains("<script"), "unescaped HTML");
    assert!(html.contains("&lt;script&gt;"));
    assert!(!md.contains("<script"), "unescaped HTML in Markdown");
    assert!(
        html.contains("<section id=\"x9\">"),
        "an unknown experiment still gets a section"
    );
    // A result that does not read as its experiment's type is said to, never shown as blanks;
    // so is a decision that does not read as one.
    for id in ["e2", "e3", "e4", "e7", "e8", "e9"] {
        assert!(
            md.contains(&format!(
                "{id} in results.json does not read as this version's result of {id}"
            )),
            "{id}"
        );
    }
    assert!(md.contains("The decision in results.json does not read as this version's decision"));
    assert!(files.values().all(|f| !f.is_empty()));
}

/// The field at a dotted path of an item, when every step of the path is there.
fn at<'a>(item: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(item, |v, k| v.get(k))
}

/// The rubric is data read by path: a path an experiment no longer writes, or a filter no item
/// matches, would make a rule silently never fire. On the demo (every experiment runs, with a
/// control), each rule's list holds items, some item passes its filter, and the value and the
/// null it reads are there on each of those items; each decisive experiment's units and status
/// too. E3q applies to quantised models only, so its rules are read on a lab model beside its
/// Q8_0 GGUF.
#[test]
fn every_path_of_the_default_rubric_resolves_on_the_demo_results() {
    let rubric = weight_audit::rubric::Rubric::parse(weight_audit::rubric::DEFAULT_RUBRIC).unwrap();
    let mut experiments = demo_results()["experiments"].clone();
    let d = tmp();
    let (folder, file) = crate::gguf::lab_pair(
        d.path(),
        "p",
        weight_audit_lab::ArchKind::Llama,
        3,
        weight_audit_lab::gguf::GgufQuant::Q8_0,
    );
    let requant = crate::util::e3q(&crate::gguf::open(&folder), &crate::gguf::open(&file));
    experiments["e3q"] = json!({ "pairs": [requant] });
    let list = |experiment: &str, list: &str| -> Vec<Value> {
        let items = experiments[experiment][list].as_array();
        let items = items.unwrap_or_else(|| panic!("{experiment} has no list {list:?}"));
        assert!(
            !items.is_empty(),
            "{experiment}.{list} is empty on the demo"
        );
        items.clone()
    };
    for rule in &rubric.rules {
        let items = list(&rule.experiment, &rule.list);
        let selected: Vec<&Value> = items
            .iter()
            .filter(|item| {
                rule.filter.iter().all(|(k, want)| {
                    let got = at(item, k).unwrap_or_else(|| panic!("{}: no field {k}", rule.id));
                    let wants: Vec<&toml::Value> = match want {
                        toml::Value::Array(any) => any.iter().collect(),
                        one => vec![one],
                    };
                    wants.iter().any(|w| match w {
                        toml::Value::String(s) => got.as_str() == Some(s.as_str()),
                        toml::Value::Boolean(b) => got.as_bool() == Some(*b),
                        toml::Value::Integer(i) => got.as_i64() == Some(*i),
                        toml::Value::Float(f) => got.as_f64() == Some(*f),
                        _ => false,
                    })
                })
            })
            .collect();
        assert!(
            !selected.is_empty(),
            "{}: no item passes its filter",
            rule.id
        );
        for path in std::iter::once(&rule.value).chain(&rule.null) {
            // A side that was not computed is null; the path must reach a number on some
            // item and be there (as a field or a null parent) on all.
            let first = path.split('.').next().unwrap_or_default();
            assert!(
                selected.iter().all(|i| i.get(first).is_some()),
                "{}: field {first} missing",
                rule.id
            );
            assert!(
                selected
                    .iter()
                    .any(|i| at(i, path).is_some_and(Value::is_number)),
                "{}: {path} is never a number",
                rule.id
            );
        }
    }
    for d in &rubric.coverage.decisive {
        let items = list(&d.experiment, &d.list);
        for path in d.units.iter().chain(&d.status) {
            assert!(
                items.iter().all(|i| at(i, path).is_some()),
                "decisive {}: {path} missing",
                d.experiment
            );
        }
    }
}

/// An eval row giving every score the same value.
fn row(derived: bool, score: f64) -> weight_audit::eval::EvalRow {
    weight_audit::eval::EvalRow {
        id: format!("p{score}"),
        derived,
        relation: "r".into(),
        scores: vec![score; weight_audit::eval::scores().len()],
        verdict: weight_audit::verdict::Verdict::Inconclusive,
    }
}

#[test]
fn eval_draws_a_roc_curve_per_score() {
    use weight_audit::eval::{roc_curves, scores};
    let n = scores().len();
    let rows = [
        row(true, 0.9),
        row(true, 0.8),
        row(false, 0.1),
        row(false, 0.85),
    ];
    let (table, plot) = roc_curves(&rows);
    // Per score: the origin plus one point per distinct score.
    assert_eq!(table.rows.len(), n * 5);
    let first: Vec<&str> = table.rows[..5].iter().map(|r| r[3].as_str()).collect();
    assert_eq!(
        first,
        ["0.000000", "0.500000", "0.500000", "1.000000", "1.000000"]
    );
    let drawn = plot.render().unwrap();
    assert!(drawn.svg.contains("AUC 0.750"), "{}", drawn.svg);
}

#[test]
fn eval_sets_each_scores_auc_beside_its_independent_span_and_suites_side_by_side() {
    use weight_audit::eval::{auc_table, scores, summary_table};
    let n = scores().len();
    let separating = auc_table(&[row(true, 0.9), row(false, 0.1), row(false, f64::NAN)]);
    let trap = auc_table(&[row(true, 0.97), row(false, 0.99), row(false, 0.95)]);
    let first = &separating.rows[0];
    assert_eq!(first[0], scores()[0].name);
    // AUC, then the span unrelated pairs reach (a missing score is not part of it).
    assert_eq!(first[1], "1.000000");
    assert_eq!(
        (first[6].as_str(), first[7].as_str()),
        ("0.100000", "0.100000")
    );
    assert_eq!(
        (trap.rows[0][1].as_str(), trap.rows[0][7].as_str()),
        ("0.500000", "0.990000")
    );
    let summary = summary_table(&[("lab", separating), ("adversarial", trap)]);
    assert_eq!(summary.columns, ["score", "auc_lab", "auc_adversarial"]);
    assert_eq!(summary.rows.len(), n);
    assert_eq!(summary.rows[0][1..], ["1.000000", "0.500000"]);
}

/// Loads report.html in headless Chromium and reads back the DOM it built. In CI chromium must
/// be there (`.ci/run` installs it); elsewhere the test says it skipped.
#[test]
fn chromium_renders_the_report_with_every_section_and_no_broken_image() {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have /usr/bin/chromium (.ci/run installs it)"
        );
        eprintln!("skipped: /usr/bin/chromium is not installed");
        return;
    }
    let results = demo_results();
    let files = report::render(results).unwrap();
    let out = tmp();
    report::write(out.path(), &files).unwrap();
    let profile = tmp();
    let o = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!(
            "file://{}",
            out.path().join("report.html").display()
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dom = String::from_utf8_lossy(&o.stdout);
    let verdict = results["decision"]["verdict"].as_str().unwrap();
    assert!(
        dom.contains(&format!("<p class=\"verdict-text\">{verdict}</p>")),
        "{dom}"
    );
    let headings: Vec<&str> = dom
        .match_indices("<h2>")
        .map(|(i, _)| {
            let rest = &dom[i + 4..];
            &rest[..rest.find("</h2>").unwrap()]
        })
        .collect();
    let mut expected = vec!["Evidence that decided it", "Pinned inputs"];
    let prefixes: Vec<String> = results["experiments"]
        .as_object()
        .unwrap()
        .keys()
        .map(|id| format!("E{} · ", &id[1..]))
        .collect();
    expected.extend(["Method notes", "How to verify and reproduce"]);
    for h in &expected {
        assert!(headings.contains(h), "no heading {h:?} in {headings:?}");
    }
    for p in &prefixes {
        assert!(
            headings.iter().any(|h| h.starts_with(p.as_str())),
            "no heading {p:?} in {headings:?}"
        );
    }
    // No image can be broken: there is no <img>, and every plot was parsed as inline SVG.
    assert!(!dom.contains("<img"));
    let svgs = files.keys().filter(|k| k.ends_with(".svg")).count();
    assert_eq!(dom.matches("<svg ").count(), svgs);
}
