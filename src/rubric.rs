//! The rubric: versioned data (`rubric/default.toml`) that turns experiment findings into
//! evidence items and a verdict. Code here only interprets it: every threshold, every
//! strength and the verdict ladder live in the file, whose hash goes into results.
//!
//! A rule selects values from one experiment's result (a list, equality filters, a field,
//! an aggregate), compares the audited pair's value to a threshold, and states the null the
//! value is to be read against. With `controls_must_not = true` a rule fires only when no
//! control pair passes the same test: evidence that controls also show is no evidence.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The rubric shipped with the tool.
pub const DEFAULT_RUBRIC: &str = include_str!("../rubric/default.toml");

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// Low-information signals (raw cosine, curve shape): INCONCLUSIVE at most.
    Weak,
    Supporting,
    Strong,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    #[serde(rename = "DERIVED")]
    Derived,
    #[serde(rename = "LIKELY DERIVED")]
    LikelyDerived,
    #[serde(rename = "INCONCLUSIVE")]
    Inconclusive,
    #[serde(rename = "NOT SUPPORTED BY WEIGHTS")]
    NotSupported,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Derived => "DERIVED",
            Verdict::LikelyDerived => "LIKELY DERIVED",
            Verdict::Inconclusive => "INCONCLUSIVE",
            Verdict::NotSupported => "NOT SUPPORTED BY WEIGHTS",
        }
    }

    pub fn is_derived(self) -> bool {
        matches!(self, Verdict::Derived | Verdict::LikelyDerived)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    Min,
    Max,
    Mean,
    /// How many selected items pass the comparison.
    Count,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub experiment: String,
    /// The array in the experiment's result holding the items.
    pub list: String,
    /// Equality filters on item fields (strings, numbers, booleans; a list = any of).
    #[serde(default)]
    pub filter: BTreeMap<String, toml::Value>,
    /// The item field compared (dots reach into nested objects).
    pub value: String,
    pub aggregate: Aggregate,
    /// `<`, `<=`, `>` or `>=`.
    pub op: String,
    pub threshold: f64,
    /// For `count`: items must pass `op threshold` each, and at least this many must.
    #[serde(default)]
    pub min_count: Option<usize>,
    /// The item field holding the value's null, shown beside it (optional).
    #[serde(default)]
    pub null: Option<String>,
    /// The value must also beat its null by this much in the direction of `op`: a statistic
    /// that is high for every pair (raw cosine of positive gains) says nothing until it does.
    #[serde(default)]
    pub null_margin: Option<f64>,
    pub strength: Strength,
    #[serde(default)]
    pub controls_must_not: bool,
    pub explain: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ladder {
    /// DERIVED when at least this many strong items fire, from at least
    /// `derived_experiments` different experiments.
    pub derived_strong: usize,
    pub derived_experiments: usize,
    /// LIKELY DERIVED with this many strong items, or this many supporting ones.
    pub likely_strong: usize,
    pub likely_supporting: usize,
    /// INCONCLUSIVE with this many supporting or weak items; otherwise NOT SUPPORTED.
    pub inconclusive_any: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rubric {
    pub version: String,
    pub ladder: Ladder,
    #[serde(rename = "rule")]
    pub rules: Vec<Rule>,
}

impl Rubric {
    /// Parses and validates a rubric, with errors that name the rule.
    pub fn parse(text: &str) -> Result<Rubric> {
        let r: Rubric =
            toml::from_str(text).context("rubric is not valid TOML of the expected shape")?;
        let mut seen = std::collections::BTreeSet::new();
        for rule in &r.rules {
            if !seen.insert(rule.id.clone()) {
                bail!("rubric: rule id {:?} appears twice", rule.id);
            }
            if !matches!(rule.op.as_str(), "<" | "<=" | ">" | ">=") {
                bail!(
                    "rubric rule {:?}: op must be <, <=, > or >=, not {:?}",
                    rule.id,
                    rule.op
                );
            }
            if !rule.threshold.is_finite() {
                bail!("rubric rule {:?}: threshold must be a number", rule.id);
            }
            if let Some(m) = rule.null_margin {
                if rule.null.is_none() {
                    bail!("rubric rule {:?}: null_margin needs a null field", rule.id);
                }
                if !m.is_finite() || m < 0.0 {
                    bail!(
                        "rubric rule {:?}: null_margin must be a number >= 0",
                        rule.id
                    );
                }
            }
            if rule.aggregate == Aggregate::Count && rule.min_count.is_none() {
                bail!("rubric rule {:?}: a count needs min_count", rule.id);
            }
        }
        if r.rules.is_empty() {
            bail!("rubric has no rules");
        }
        Ok(r)
    }

    pub fn default_rubric() -> Result<Rubric> {
        Rubric::parse(DEFAULT_RUBRIC)
    }
}

/// One rule's outcome for the audited pair.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evidence {
    pub rule: String,
    pub experiment: String,
    pub strength: Strength,
    pub fired: bool,
    /// The audited pair's aggregated value (NaN: the experiment did not apply).
    pub value: f64,
    pub op: String,
    pub threshold: f64,
    /// The null beside it (aggregated the same way), when the rule names one.
    pub null: Option<f64>,
    /// How far beyond its null the value had to be (when the rule asks for a margin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub null_margin: Option<f64>,
    /// Control pairs that pass the same test (they veto the rule when it says so).
    pub controls_passing: Vec<String>,
    pub explain: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub rubric_version: String,
    pub evidence: Vec<Evidence>,
}

fn equals(got: &Value, want: &toml::Value) -> bool {
    match want {
        toml::Value::String(s) => got.as_str() == Some(s.as_str()),
        toml::Value::Boolean(b) => got.as_bool() == Some(*b),
        toml::Value::Integer(i) => got.as_i64() == Some(*i),
        toml::Value::Float(f) => got.as_f64() == Some(*f),
        // A list of values means any of them.
        toml::Value::Array(any) => any.iter().any(|w| equals(got, w)),
        _ => false,
    }
}

fn matches(item: &Value, filter: &BTreeMap<String, toml::Value>) -> bool {
    filter.iter().all(|(k, want)| equals(&item[k], want))
}

/// A field of an item; dots reach into nested objects (`fingerprint.p_value`).
fn field<'a>(item: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(item, |v, k| &v[k])
}

fn passes(op: &str, v: f64, t: f64) -> bool {
    match op {
        "<" => v < t,
        "<=" => v <= t,
        ">" => v > t,
        ">=" => v >= t,
        _ => false,
    }
}

fn aggregate(values: &[f64], how: Aggregate, rule: &Rule) -> f64 {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    match how {
        Aggregate::Min => v.iter().copied().fold(f64::INFINITY, f64::min),
        Aggregate::Max => v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Aggregate::Mean => v.iter().sum::<f64>() / v.len() as f64,
        Aggregate::Count => v
            .iter()
            .filter(|x| passes(&rule.op, **x, rule.threshold))
            .count() as f64,
    }
}

/// Whether the value clears its null by the rule's margin (always, when there is no margin).
/// A missing null fails a rule that asks for a margin: the claim cannot be checked.
fn beats_null(rule: &Rule, value: f64, null: Option<f64>) -> bool {
    let Some(margin) = rule.null_margin else {
        return true;
    };
    match null {
        Some(n) if n.is_finite() => match rule.op.as_str() {
            "<" | "<=" => n - value >= margin,
            _ => value - n >= margin,
        },
        _ => false,
    }
}

/// Evaluates one rule for one pair label (`A~B`, `A~C1`, …).
fn evaluate_for(
    rule: &Rule,
    experiments: &BTreeMap<String, Value>,
    pair: &str,
) -> (f64, Option<f64>, bool) {
    let items: Vec<&Value> = experiments
        .get(&rule.experiment)
        .and_then(|e| e[&rule.list].as_array())
        .map(|a| {
            a.iter()
                .filter(|i| i["pair"] == pair && matches(i, &rule.filter))
                .collect()
        })
        .unwrap_or_default();
    let values: Vec<f64> = items
        .iter()
        .map(|i| field(i, &rule.value).as_f64().unwrap_or(f64::NAN))
        .collect();
    let value = aggregate(&values, rule.aggregate, rule);
    let null = rule.null.as_ref().map(|n| {
        let nulls: Vec<f64> = items
            .iter()
            .map(|i| field(i, n).as_f64().unwrap_or(f64::NAN))
            .collect();
        aggregate(
            &nulls,
            if rule.aggregate == Aggregate::Count {
                Aggregate::Mean
            } else {
                rule.aggregate
            },
            rule,
        )
    });
    let fired = match rule.aggregate {
        Aggregate::Count => value >= rule.min_count.unwrap_or(1) as f64,
        _ => value.is_finite() && passes(&rule.op, value, rule.threshold),
    };
    (value, null, fired && beats_null(rule, value, null))
}

/// Applies the rubric to the `experiments` map of a results file.
pub fn decide(
    rubric: &Rubric,
    experiments: &BTreeMap<String, Value>,
    control_pairs: &[String],
) -> Decision {
    let mut evidence = Vec::new();
    for rule in &rubric.rules {
        let (value, null, passed) = evaluate_for(rule, experiments, "A~B");
        let controls_passing: Vec<String> = control_pairs
            .iter()
            .filter(|p| evaluate_for(rule, experiments, p).2)
            .cloned()
            .collect();
        let vetoed = rule.controls_must_not && !controls_passing.is_empty();
        let fired = passed && !vetoed;
        evidence.push(Evidence {
            rule: rule.id.clone(),
            experiment: rule.experiment.clone(),
            strength: rule.strength,
            fired,
            value: crate::experiments::round9(value),
            op: rule.op.clone(),
            threshold: rule.threshold,
            null: null.map(crate::experiments::round9),
            null_margin: rule.null_margin,
            controls_passing,
            explain: rule.explain.clone(),
        });
    }
    let fired = |s: Strength| {
        evidence
            .iter()
            .filter(|e| e.fired && e.strength == s)
            .count()
    };
    let strong_experiments: std::collections::BTreeSet<&str> = evidence
        .iter()
        .filter(|e| e.fired && e.strength == Strength::Strong)
        .map(|e| e.experiment.as_str())
        .collect();
    let l = &rubric.ladder;
    let verdict = if fired(Strength::Strong) >= l.derived_strong
        && strong_experiments.len() >= l.derived_experiments
    {
        Verdict::Derived
    } else if fired(Strength::Strong) >= l.likely_strong
        || fired(Strength::Supporting) >= l.likely_supporting
    {
        Verdict::LikelyDerived
    } else if fired(Strength::Supporting) + fired(Strength::Weak) >= l.inconclusive_any {
        Verdict::Inconclusive
    } else {
        Verdict::NotSupported
    };
    Decision {
        verdict,
        rubric_version: rubric.version.clone(),
        evidence,
    }
}

/// sha256 of the rubric text, recorded with every verdict.
pub fn rubric_hash(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rubric(extra: &str) -> String {
        format!(
            r#"version = "test"
[ladder]
derived_strong = 2
derived_experiments = 2
likely_strong = 1
likely_supporting = 2
inconclusive_any = 1
{extra}"#
        )
    }

    const RULES: &str = r#"
[[rule]]
id = "align"
experiment = "e4"
list = "alignments"
filter = { metric = "pearson" }
value = "p_value"
aggregate = "min"
op = "<"
threshold = 0.01
null = "null_mean"
strength = "strong"
controls_must_not = true
explain = "layers line up"

[[rule]]
id = "cosine"
experiment = "e1"
list = "summary"
value = "mean_cosine"
aggregate = "mean"
op = ">"
threshold = 0.95
strength = "weak"
explain = "raw cosine is high (so is the shuffle null)"
"#;

    fn results(p_ab: f64, p_ac: f64, cos: f64) -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        m.insert(
            "e4".into(),
            json!({"alignments": [
                {"pair": "A~B", "metric": "pearson", "p_value": p_ab, "null_mean": 0.2},
                {"pair": "A~B", "metric": "cosine", "p_value": 0.0},
                {"pair": "A~C1", "metric": "pearson", "p_value": p_ac, "null_mean": 0.2},
            ]}),
        );
        m.insert(
            "e1".into(),
            json!({"summary": [{"pair": "A~B", "mean_cosine": cos}]}),
        );
        m
    }

    #[test]
    fn the_ladder_follows_the_fired_rules() {
        let r = Rubric::parse(&rubric(RULES)).unwrap();
        let controls = vec!["A~C1".to_string()];
        let d = decide(&r, &results(0.001, 0.5, 0.99), &controls);
        assert_eq!(d.verdict, Verdict::LikelyDerived, "{d:?}");
        assert_eq!(d.evidence[0].null, Some(0.2));
        // A control showing the same alignment vetoes it: only the weak signal is left.
        let d = decide(&r, &results(0.001, 0.001, 0.99), &controls);
        assert_eq!(d.verdict, Verdict::Inconclusive);
        assert_eq!(d.evidence[0].controls_passing, vec!["A~C1".to_string()]);
        // Nothing at all.
        let d = decide(&r, &results(0.5, 0.5, 0.5), &controls);
        assert_eq!(d.verdict, Verdict::NotSupported);
        // A missing experiment never fires.
        let d = decide(&r, &BTreeMap::new(), &controls);
        assert_eq!(d.verdict, Verdict::NotSupported);
        assert!(d.evidence[0].value.is_nan());
    }

    #[test]
    fn a_null_margin_keeps_a_value_that_does_not_beat_its_null_from_firing() {
        let with_margin = RULES.replace(
            "explain = \"raw cosine is high (so is the shuffle null)\"",
            "null = \"shuffle\"\nnull_margin = 0.01\nexplain = \"raw cosine is high\"",
        );
        let r = Rubric::parse(&rubric(&with_margin)).unwrap();
        let with_null = |cos: f64, shuffle: f64| {
            let mut m = results(0.5, 0.5, cos);
            m.insert(
                "e1".into(),
                json!({"summary": [{"pair": "A~B", "mean_cosine": cos, "shuffle": shuffle}]}),
            );
            decide(&r, &m, &[])
        };
        // 0.980 vs a null of 0.979: high, but no higher than chance.
        let d = with_null(0.980, 0.979);
        assert_eq!(d.verdict, Verdict::NotSupported, "{d:?}");
        assert_eq!(d.evidence[1].null_margin, Some(0.01));
        // 0.997 vs 0.975 clears the margin: weak evidence.
        assert_eq!(with_null(0.997, 0.975).verdict, Verdict::Inconclusive);
        // A margin without a null field is refused.
        let no_null = RULES.replace(
            "explain = \"raw cosine is high (so is the shuffle null)\"",
            "null_margin = 0.01\nexplain = \"x\"",
        );
        let err = format!("{:#}", Rubric::parse(&rubric(&no_null)).unwrap_err());
        assert!(
            err.contains("\"cosine\"") && err.contains("null_margin"),
            "{err}"
        );
    }

    #[test]
    fn invalid_rubrics_are_refused_with_the_rule_named() {
        assert!(Rubric::parse("not toml [").is_err());
        let bad_op = rubric(&RULES.replace("op = \"<\"", "op = \"=~\""));
        assert!(format!("{:#}", Rubric::parse(&bad_op).unwrap_err()).contains("\"align\""));
        let dup = rubric(&format!(
            "{RULES}{}",
            &RULES[..RULES.find("[[rule]]\nid = \"cosine\"").unwrap()]
        ));
        assert!(format!("{:#}", Rubric::parse(&dup).unwrap_err()).contains("twice"));
        let unknown =
            rubric(&RULES.replace("strength = \"weak\"", "strength = \"weak\"\ncolour = 1"));
        assert!(Rubric::parse(&unknown).is_err());
    }

    #[test]
    fn the_default_rubric_parses() {
        let r = Rubric::default_rubric().unwrap();
        assert!(r.rules.iter().any(|x| x.strength == Strength::Strong));
        assert_eq!(rubric_hash("x").len(), 64);
    }
}
