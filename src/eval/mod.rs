//! Evaluation over labelled pairs (what `audit eval` prints and writes): every continuous score
//! over a labelled set of pairs, with ROC AUC and partial AUC (false-positive rate ≤ 0.05) and
//! the span independent pairs reach, so anyone can see which signals separate derived from
//! independent models and which are traps. `builtin` (the default) evaluates the lab suite and
//! the adversarial suite and sets their AUCs side by side. [`calibration`] holds the tables of
//! the calibration itself (leave-one-model-out rates).

pub mod calibration;

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::bank::{BankSuite, Measured, measure};
use crate::experiments::typed::TypedResults;
use crate::experiments::{self, Table, fmt, mean_finite};
use crate::pipeline::RubricSource;
use crate::report::plot::{Lines, Plot, Series};
use crate::roc;
use crate::verdict::{Verdict, decide};

/// The permutation-only AWM score (as published), shown beside the verdict.
pub const AWM_PUBLISHED: &str = "e8_cka_awm_published";

type Extract = fn(&TypedResults) -> f64;

/// A continuous score read from one pair's results (higher = more likely derived).
pub struct Score {
    /// The score's column name in eval's tables.
    pub name: &'static str,
    /// Reads the score from one pair's typed results (NaN: the experiment did not apply).
    pub extract: Extract,
}

const NORMS: [&str; 3] = ["input_norm", "post_attention_norm", "post_mlp_norm"];

/// An item of a per-pair list in an experiment's result.
trait PairItem {
    fn pair(&self) -> &str;
    fn primary(&self) -> bool;
}

macro_rules! pair_items {
    ($($t:ty),* $(,)?) => {$(
        impl PairItem for $t {
            fn pair(&self) -> &str {
                &self.pair
            }
            fn primary(&self) -> bool {
                self.primary
            }
        }
    )*};
}

pair_items!(
    experiments::e1_layerwise::FamilySummary,
    experiments::e1b_embeddings::PairResult,
    experiments::e2_baselines::CrossStat,
    experiments::e3_result::PairBytes,
    experiments::e4_alignment::FamilyAlignment,
    experiments::e5_projections::ProjectionRow,
    experiments::e6_spectra::PairResult,
    experiments::e7_std_curves::CurvePair,
    experiments::e8_cka::PairResult,
    experiments::e9_experts::PairSummary,
);

/// The audited pair's items of a list (none when the experiment did not run).
fn primary<T: PairItem>(items: Option<&Vec<T>>) -> impl Iterator<Item = &T> {
    items
        .into_iter()
        .flatten()
        .filter(|x| x.primary() || x.pair() == "A~B")
}

/// The largest value `of` gives over the audited pair's items (NaN when there are none).
fn max_of<T: PairItem>(items: Option<&Vec<T>>, of: impl Fn(&T) -> f64) -> f64 {
    primary(items).map(of).fold(f64::NAN, f64::max)
}

/// The scores eval reports.
pub fn scores() -> Vec<Score> {
    vec![
        Score {
            name: "raw_norm_cosine",
            extract: |r| {
                mean_finite(
                    primary(r.e1.as_ref().map(|e| &e.summary))
                        .filter(|s| NORMS.contains(&s.family.as_str().as_str()))
                        .map(|s| s.mean_cosine),
                )
            },
        },
        Score {
            name: "norm_pearson",
            extract: |r| {
                mean_finite(
                    primary(r.e1.as_ref().map(|e| &e.summary))
                        .filter(|s| NORMS.contains(&s.family.as_str().as_str()))
                        .map(|s| s.mean_pearson),
                )
            },
        },
        Score {
            name: "e2_norm_pearson_z",
            extract: |r| {
                primary(r.e2.as_ref().map(|e| &e.stats))
                    .filter(|s| s.metric == "pearson")
                    .map(|s| s.z_vs_off_diagonal)
                    .filter(|x| x.is_finite())
                    .fold(f64::NAN, f64::max)
            },
        },
        Score {
            name: "e4_alignment",
            extract: |r| {
                let p = primary(r.e4.as_ref().map(|e| &e.alignments))
                    .filter(|a| a.metric == "pearson")
                    .map(|a| a.p_value)
                    .filter(|x| x.is_finite())
                    .fold(f64::NAN, f64::min);
                1.0 - p
            },
        },
        Score {
            name: "e5_projection_pearson",
            extract: |r| mean_finite(primary(r.e5.as_ref().map(|e| &e.rows)).map(|x| x.pearson)),
        },
        // Tensors holding exactly A's values: in place, after a dtype cast, or moved by a
        // permutation they share.
        Score {
            name: "e3_identical_tensors",
            extract: |r| {
                max_of(r.e3.as_ref().map(|e| &e.pairs), |p| {
                    p.identical_tensors as f64
                        + p.cast_identical_tensors as f64
                        + p.permuted.tensors_permuted as f64
                })
            },
        },
        Score {
            name: "e3_element_agreement",
            extract: |r| {
                max_of(r.e3.as_ref().map(|e| &e.pairs), |p| {
                    p.element_agreement.excess_fraction
                })
            },
        },
        Score {
            name: "e3_agreement_max_z",
            extract: |r| {
                max_of(r.e3.as_ref().map(|e| &e.pairs), |p| {
                    p.element_agreement.max_tensor_z
                })
            },
        },
        Score {
            name: "e9_expert_z",
            extract: |r| {
                primary(r.e9.as_ref().map(|e| &e.summary))
                    .filter(|s| s.kind == "experts")
                    .map(|s| s.mean_z)
                    .fold(f64::NAN, f64::max)
            },
        },
        Score {
            name: "e8_cka",
            extract: |r| max_of(r.e8.as_ref().map(|e| &e.pairs), |p| p.score_assigned),
        },
        Score {
            name: AWM_PUBLISHED,
            extract: |r| max_of(r.e8.as_ref().map(|e| &e.pairs), |p| p.score_awm_assigned),
        },
        Score {
            name: "e1b_embeddings_z",
            extract: |r| {
                max_of(r.e1b.as_ref().map(|e| &e.pairs), |p| {
                    let z = |s: Option<&experiments::e1b_embeddings::RowStats>| {
                        s.map_or(f64::NAN, |s| s.z)
                    };
                    z(p.direct.as_ref()).max(z(p.aligned.as_ref()))
                })
            },
        },
        Score {
            name: "e6_spectra_z",
            extract: |r| max_of(r.e6.as_ref().map(|e| &e.pairs), |p| p.z),
        },
        Score {
            name: "e7_std_curve",
            extract: |r| {
                mean_finite(
                    primary(r.e7.as_ref().map(|e| &e.pairs))
                        .filter(|p| p.statistic == "std")
                        .map(|p| p.pearson),
                )
            },
        },
    ]
}

/// Every score of one pair's results, in [`scores`]' order.
pub fn pair_scores(
    results: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<Vec<f64>> {
    let typed = TypedResults::read(results)?;
    Ok(scores().iter().map(|s| (s.extract)(&typed)).collect())
}

/// Per pair: id, label, relation and each score.
pub struct EvalRow {
    /// The pair's id in its suite.
    pub id: String,
    /// Whether the pair is derived by construction (its label).
    pub derived: bool,
    /// How the pair was made (`fine_tune`, `independent`, …).
    pub relation: String,
    /// Each score of [`scores`], in that order (NaN: not applicable).
    pub scores: Vec<f64>,
    /// The verdict, decided leave-one-model-out.
    pub verdict: Verdict,
}

/// Runs the eval over a labelled suite. Each verdict is decided leave-one-model-out: by the
/// calibration less every pair that holds either of the pair's models, so no pair is judged
/// by thresholds it helped set.
pub fn evaluate(suite: &BankSuite, rubric: &RubricSource) -> Result<Vec<EvalRow>> {
    let ids: Vec<_> = experiments::registry::eval_ids()
        .iter()
        .map(|i| experiments::by_id(i))
        .collect::<Result<_>>()?;
    rows(&measure(suite, &ids)?, rubric)
}

/// The eval rows of pairs already measured.
pub fn rows(measured: &[Measured], rubric: &RubricSource) -> Result<Vec<EvalRow>> {
    measured
        .iter()
        .map(|m| {
            let excluded = [m.pair.a.as_str(), m.pair.b.as_str()];
            let verdict = decide(
                &rubric.rubric,
                &rubric.calibration,
                &m.results,
                &[],
                &excluded,
            )
            .verdict;
            Ok(EvalRow {
                verdict,
                id: m.id.clone(),
                derived: m.pair.truth == crate::calibration::Truth::Derived,
                relation: m.pair.relation.clone(),
                scores: pair_scores(&m.results)
                    .with_context(|| format!("the scores of pair {}", m.id))?,
            })
        })
        .collect()
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
            "independent_min",
            "independent_max",
        ],
    );
    for (k, s) in scores().iter().enumerate() {
        let v: Vec<f64> = rows.iter().map(|r| r.scores[k]).collect();
        // What unrelated models reach: the null a derived pair's value is read against.
        let null = || {
            v.iter()
                .zip(&labels)
                .filter(|(x, d)| !**d && x.is_finite())
                .map(|(x, _)| *x)
        };
        t.rows.push(vec![
            s.name.into(),
            fmt(roc::auc(&v, &labels)),
            fmt(roc::partial_auc(&v, &labels, 0.05)),
            labels.iter().filter(|x| **x).count().to_string(),
            labels.iter().filter(|x| !**x).count().to_string(),
            v.iter().filter(|x| x.is_nan()).count().to_string(),
            fmt(null().fold(f64::NAN, f64::min)),
            fmt(null().fold(f64::NAN, f64::max)),
        ]);
    }
    t
}

/// The verdicts in the order the confusion table lists them.
pub const VERDICTS: [Verdict; 4] = [
    Verdict::Derived,
    Verdict::LikelyDerived,
    Verdict::Inconclusive,
    Verdict::NotSupported,
];

/// Truth × verdict counts.
pub fn confusion_table(rows: &[EvalRow]) -> Table {
    let mut cols = vec!["truth"];
    cols.extend(VERDICTS.iter().map(|v| v.label()));
    let mut t = Table::new("eval_confusion", &cols);
    for (truth, derived) in [("DERIVED", true), ("INDEPENDENT", false)] {
        let mut cells = vec![truth.to_string()];
        for v in VERDICTS {
            let n = rows
                .iter()
                .filter(|r| r.derived == derived && r.verdict == v)
                .count();
            cells.push(n.to_string());
        }
        t.rows.push(cells);
    }
    t
}

/// Per relation: pairs, and how many got the right side (derived or not).
pub fn relation_table(rows: &[EvalRow]) -> Table {
    let mut by: BTreeMap<(&str, bool), (usize, usize)> = BTreeMap::new();
    for r in rows {
        let e = by.entry((r.relation.as_str(), r.derived)).or_default();
        e.0 += 1;
        e.1 += usize::from(r.verdict.is_derived() == r.derived);
    }
    let mut t = Table::new(
        "eval_relations",
        &["relation", "truth", "pairs", "correct", "accuracy"],
    );
    for ((rel, derived), (n, ok)) in by {
        t.rows.push(vec![
            rel.into(),
            if derived { "DERIVED" } else { "INDEPENDENT" }.into(),
            n.to_string(),
            ok.to_string(),
            fmt(ok as f64 / n as f64),
        ]);
    }
    t
}

/// One row per pair: its label, relation, verdict and every score.
pub fn pairs_table(rows: &[EvalRow]) -> Table {
    let names: Vec<&str> = scores().iter().map(|s| s.name).collect();
    let mut cols = vec!["pair", "label", "relation", "verdict"];
    cols.extend(&names);
    let mut t = Table::new("eval_pairs", &cols);
    for r in rows {
        let mut cells = vec![
            r.id.clone(),
            if r.derived { "DERIVED" } else { "INDEPENDENT" }.into(),
            r.relation.clone(),
            r.verdict.label().into(),
        ];
        cells.extend(r.scores.iter().map(|v| fmt(*v)));
        t.rows.push(cells);
    }
    t
}

/// The ROC curve of every score, as a table (score, point, fpr, tpr) and a plot.
pub fn roc_curves(rows: &[EvalRow]) -> (Table, Plot) {
    let labels: Vec<bool> = rows.iter().map(|r| r.derived).collect();
    let mut t = Table::new("eval_roc", &["score", "point", "fpr", "tpr"]);
    let mut series = Vec::new();
    for (k, s) in scores().iter().enumerate() {
        let v: Vec<f64> = rows.iter().map(|r| r.scores[k]).collect();
        let points = roc::roc(&v, &labels);
        for (i, (x, y)) in points.iter().enumerate() {
            t.rows
                .push(vec![s.name.into(), i.to_string(), fmt(*x), fmt(*y)]);
        }
        series.push(Series {
            label: format!("{} (AUC {:.3})", s.name, roc::auc(&v, &labels)),
            points,
            dashed: false,
            colour: None,
        });
    }
    series.push(Series {
        label: "chance".into(),
        points: vec![(0.0, 0.0), (1.0, 1.0)],
        dashed: true,
        colour: None,
    });
    let plot = Plot::Lines(Lines {
        title: format!("ROC of each score over {} labelled pairs", rows.len()),
        x_label: "false-positive rate (independent pairs called derived)".into(),
        y_label: "true-positive rate".into(),
        series,
        y_range: Some((0.0, 1.02)),
    });
    (t, plot)
}

/// The built-in suites `--suite builtin` evaluates, in order.
pub const BUILTIN_SUITES: [&str; 2] = ["lab", "adversarial"];

/// One row per score, the AUC of each suite side by side: a signal that separates only where
/// derivatives kept A's tensors untouched (raw norm cosine) shows up next to one that separates
/// everywhere.
pub fn summary_table(aucs: &[(&str, Table)]) -> Table {
    let mut cols = vec!["score".to_string()];
    cols.extend(aucs.iter().map(|(name, _)| format!("auc_{name}")));
    let refs: Vec<&str> = cols.iter().map(String::as_str).collect();
    let mut t = Table::new("eval_summary", &refs);
    for s in scores() {
        let mut cells = vec![s.name.to_string()];
        for (_, auc) in aucs {
            cells.push(
                auc.rows
                    .iter()
                    .find(|r| r[0] == s.name)
                    .map_or_else(|| fmt(f64::NAN), |r| r[1].clone()),
            );
        }
        t.rows.push(cells);
    }
    t
}
