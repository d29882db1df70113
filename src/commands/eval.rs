//! `audit eval [--suite lab|DIR] [--out DIR]`: every continuous score over a labelled set of
//! pairs, with ROC AUC and partial AUC (false-positive rate ≤ 0.05), so anyone can see which
//! signals separate derived from independent models and which are traps.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cli::EvalArgs;
use crate::experiments::{self, Subjects, Table, fmt};
use crate::lab::{self, Label, SuiteOptions};
use crate::model::{Model, ModelOptions};
use crate::roc;
use crate::source::local::LocalSource;

/// Experiments eval runs on every pair.
pub const EVAL_EXPERIMENTS: [&str; 5] = ["e1", "e2", "e4", "e5", "e7"];

type Extract = fn(&BTreeMap<String, Value>) -> f64;

/// A continuous score read from one pair's results (higher = more likely derived).
pub struct Score {
    pub name: &'static str,
    pub extract: Extract,
}

const NORMS: [&str; 3] = ["input_norm", "post_attention_norm", "post_mlp_norm"];

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn primary<'a>(r: &'a BTreeMap<String, Value>, exp: &str, list: &str) -> Vec<&'a Value> {
    r.get(exp)
        .and_then(|e| e[list].as_array())
        .map(|a| {
            a.iter()
                .filter(|x| x["primary"] == true || x["pair"] == "A~B")
                .collect()
        })
        .unwrap_or_default()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// The scores eval reports.
pub fn scores() -> Vec<Score> {
    vec![
        Score {
            name: "raw_norm_cosine",
            extract: |r| {
                mean(
                    primary(r, "e1", "summary")
                        .into_iter()
                        .filter(|s| NORMS.contains(&s["family"].as_str().unwrap_or("")))
                        .map(|s| num(&s["mean_cosine"])),
                )
            },
        },
        Score {
            name: "norm_pearson",
            extract: |r| {
                mean(
                    primary(r, "e1", "summary")
                        .into_iter()
                        .filter(|s| NORMS.contains(&s["family"].as_str().unwrap_or("")))
                        .map(|s| num(&s["mean_pearson"])),
                )
            },
        },
        Score {
            name: "e2_norm_pearson_z",
            extract: |r| {
                primary(r, "e2", "stats")
                    .into_iter()
                    .filter(|s| s["metric"] == "pearson")
                    .map(|s| num(&s["z_vs_off_diagonal"]))
                    .filter(|x| x.is_finite())
                    .fold(f64::NAN, f64::max)
            },
        },
        Score {
            name: "e4_alignment",
            extract: |r| {
                let p = primary(r, "e4", "alignments")
                    .into_iter()
                    .filter(|a| a["metric"] == "pearson")
                    .map(|a| num(&a["p_value"]))
                    .filter(|x| x.is_finite())
                    .fold(f64::NAN, f64::min);
                1.0 - p
            },
        },
        Score {
            name: "e5_projection_pearson",
            extract: |r| {
                mean(
                    primary(r, "e5", "rows")
                        .into_iter()
                        .map(|x| num(&x["pearson"])),
                )
            },
        },
        Score {
            name: "e7_std_curve",
            extract: |r| {
                mean(
                    primary(r, "e7", "pairs")
                        .into_iter()
                        .filter(|p| p["statistic"] == "std")
                        .map(|p| num(&p["pearson"])),
                )
            },
        },
    ]
}

fn open(dir: &Path) -> Result<Model> {
    Model::open(Box::new(LocalSource::open(dir)?), &ModelOptions::default())
}

/// Per pair: id, label, relation and each score.
pub struct EvalRow {
    pub id: String,
    pub derived: bool,
    pub relation: String,
    pub scores: Vec<f64>,
}

/// Runs the eval over a labelled folder (one with `suite.json`).
pub fn evaluate(dir: &Path) -> Result<Vec<EvalRow>> {
    let manifest = lab::load_manifest(dir)?;
    let score_defs = scores();
    let ids: Vec<_> = EVAL_EXPERIMENTS
        .iter()
        .map(|i| experiments::by_id(i))
        .collect::<Result<_>>()?;
    let mut rows = Vec::new();
    for pair in &manifest.pairs {
        let (a, b) = (open(&dir.join(&pair.a))?, open(&dir.join(&pair.b))?);
        let subjects = Subjects::new(&a, &b, &[]);
        let out =
            experiments::run_all(&subjects, &ids).with_context(|| format!("pair {}", pair.id))?;
        let results: BTreeMap<String, Value> = out
            .into_iter()
            .map(|o| (o.id.to_string(), o.result))
            .collect();
        rows.push(EvalRow {
            id: pair.id.clone(),
            derived: pair.label == Label::Derived,
            relation: pair.relation.clone(),
            scores: score_defs.iter().map(|s| (s.extract)(&results)).collect(),
        });
    }
    Ok(rows)
}

/// AUC and partial AUC per score.
pub fn auc_table(rows: &[EvalRow]) -> Table {
    let labels: Vec<bool> = rows.iter().map(|r| r.derived).collect();
    let mut t = Table::new(
        "eval_auc",
        &[
            "score",
            "auc",
            "partial_auc_fpr_0.05",
            "derived",
            "independent",
            "not_applicable",
        ],
    );
    for (k, s) in scores().iter().enumerate() {
        let v: Vec<f64> = rows.iter().map(|r| r.scores[k]).collect();
        t.rows.push(vec![
            s.name.into(),
            fmt(roc::auc(&v, &labels)),
            fmt(roc::partial_auc(&v, &labels, 0.05)),
            labels.iter().filter(|x| **x).count().to_string(),
            labels.iter().filter(|x| !**x).count().to_string(),
            v.iter().filter(|x| x.is_nan()).count().to_string(),
        ]);
    }
    t
}

pub fn pairs_table(rows: &[EvalRow]) -> Table {
    let names: Vec<&str> = scores().iter().map(|s| s.name).collect();
    let mut cols = vec!["pair", "label", "relation"];
    cols.extend(&names);
    let mut t = Table::new("eval_pairs", &cols);
    for r in rows {
        let mut cells = vec![
            r.id.clone(),
            if r.derived { "DERIVED" } else { "INDEPENDENT" }.into(),
            r.relation.clone(),
        ];
        cells.extend(r.scores.iter().map(|v| fmt(*v)));
        t.rows.push(cells);
    }
    t
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let suite_dir = if args.suite == "lab" {
        let dir = args.out.join("suite");
        eprintln!(
            "eval: generating the lab's evaluation suite in {}",
            dir.display()
        );
        lab::generate_suite(&dir, &SuiteOptions::default())?;
        dir
    } else {
        args.suite.clone().into()
    };
    let rows = evaluate(&suite_dir)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let auc = auc_table(&rows);
    for t in [&auc, &pairs_table(&rows)] {
        std::fs::write(args.out.join(format!("{}.csv", t.name)), t.to_csv()?)?;
    }
    println!("{:<24} {:>7} {:>12}", "score", "AUC", "pAUC@0.05");
    for r in &auc.rows {
        println!("{:<24} {:>7} {:>12}", r[0], &r[1], &r[2]);
    }
    println!("{} pairs; tables in {}", rows.len(), args.out.display());
    Ok(())
}
