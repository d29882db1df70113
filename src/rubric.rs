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

/// How much a rule's finding may weigh in the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// Low-information signals (raw cosine, curve shape): INCONCLUSIVE at most.
    Weak,
    /// May find a value beyond the unrelated range, never accuse.
    Supporting,
    /// May accuse, at its share of the family-wise false-positive rate.
    Strong,
}

impl Strength {
    /// The strength as the rubric and results.json name it (`supporting`).
    pub fn as_str(self) -> &'static str {
        match self {
            Strength::Weak => "weak",
            Strength::Supporting => "supporting",
            Strength::Strong => "strong",
        }
    }
}

/// How a rule combines the values of its selected items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The mean value.
    Mean,
    /// How many selected items pass the comparison.
    Count,
}

/// One rule of the rubric: which values of which experiment it reads, and how they are judged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The rule's id (referred to by the calibration and the evidence).
    pub id: String,
    /// Id of the experiment whose result it reads.
    pub experiment: String,
    /// The array in the experiment's result holding the items.
    pub list: String,
    /// Equality filters on item fields (strings, numbers, booleans; a list = any of).
    #[serde(default)]
    pub filter: BTreeMap<String, toml::Value>,
    /// The item field compared (dots reach into nested objects).
    pub value: String,
    /// How the selected items' values are combined.
    pub aggregate: Aggregate,
    /// `<`, `<=`, `>` or `>=`.
    pub op: String,
    /// The fixed threshold the value is compared with (`op`); the calibration sets the ones that decide.
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
    /// How much the rule may weigh in the verdict.
    pub strength: Strength,
    /// Rules reading correlated findings share a group (the experiment's id by default): the
    /// verdict counts groups, not rules, and splits the false-positive rate over groups.
    #[serde(default)]
    pub group: Option<String>,
    /// If any control pair also passes, the rule does not count (a value every pair reaches proves nothing).
    #[serde(default)]
    pub controls_must_not: bool,
    /// What a passing value means, in words, for the report.
    pub explain: String,
}

impl Rule {
    /// The rule's group: `group` if set, else its experiment's id.
    pub fn group(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.experiment)
    }

    /// What the rule reads, as a short digest: a calibration recorded for one selector does
    /// not calibrate a rule that reads something else. Thresholds, strengths and texts are
    /// left out (they do not change the values read).
    pub fn selector(&self) -> String {
        let what = serde_json::json!({
            "experiment": self.experiment,
            "list": self.list,
            "filter": self.filter,
            "value": self.value,
            "aggregate": self.aggregate,
            "op": self.op,
            "min_count": self.min_count,
            "threshold_for_count": if self.aggregate == Aggregate::Count { Some(self.threshold) } else { None },
        });
        rubric_hash(&what.to_string())[..16].to_string()
    }
}

/// How many accusing groups a verdict of DERIVED takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ladder {
    /// DERIVED when strong rules accuse from at least this many groups; LIKELY DERIVED
    /// from one.
    pub derived_groups: usize,
}

/// How the calibration turns into thresholds (see [`crate::verdict`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationParams {
    /// The family-wise rate at which an unrelated pair may be accused, split over the
    /// groups of strong rules and then over each group's rules.
    pub family_rate: f64,
    /// The rate past which a value counts as beyond the unrelated range (INCONCLUSIVE at
    /// most).
    pub beyond_unrelated_rate: f64,
    /// Independent calibration pairs a rule needs before it may accuse.
    pub min_independent: usize,
    /// Confidence of the exact (Clopper–Pearson) bounds stated.
    pub confidence: f64,
}

/// A decisive experiment: one that compares the layers themselves, without which a verdict
/// cannot acquit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decisive {
    /// Id of the experiment.
    pub experiment: String,
    /// The result list holding one item per compared unit or pair.
    pub list: String,
    /// A field summed over A~B's items as the units examined (default: count the items).
    #[serde(default)]
    pub units: Option<String>,
    /// A field saying why the experiment could not run (`skipped: …`).
    #[serde(default)]
    pub status: Option<String>,
}

/// Which experiments must have run, and how much, for the verdict to acquit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverageSpec {
    /// The decisive experiments (any one suffices).
    pub decisive: Vec<Decisive>,
    /// Units a decisive experiment must have examined for the verdict to acquit.
    pub min_units: usize,
}

/// The rubric: rules, the verdict ladder, and how the calibration sets thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rubric {
    /// The rubric's version, recorded with every verdict.
    pub version: String,
    /// How findings become a verdict.
    pub ladder: Ladder,
    /// How the calibration turns into thresholds.
    pub calibration: CalibrationParams,
    /// What a verdict needs before it may acquit.
    pub coverage: CoverageSpec,
    /// The rules, in the order of the file's `[[rule]]` tables.
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
        let c = &r.calibration;
        for (name, rate) in [
            ("family_rate", c.family_rate),
            ("beyond_unrelated_rate", c.beyond_unrelated_rate),
            ("confidence", c.confidence),
        ] {
            if !(rate > 0.0 && rate < 1.0) {
                bail!("rubric [calibration] {name} must be between 0 and 1, not {rate}");
            }
        }
        if r.ladder.derived_groups == 0 {
            bail!("rubric [ladder] derived_groups must be at least 1");
        }
        Ok(r)
    }

    /// The rubric shipped with the tool.
    pub fn default_rubric() -> Result<Rubric> {
        Rubric::parse(DEFAULT_RUBRIC)
    }
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

/// Whether a value passes the rule's own threshold (for a count: at least `min_count`).
pub fn value_passes(rule: &Rule, value: f64) -> bool {
    match rule.aggregate {
        Aggregate::Count => value >= rule.min_count.unwrap_or(1) as f64,
        _ => value.is_finite() && passes(&rule.op, value, rule.threshold),
    }
}

pub(crate) fn passes(op: &str, v: f64, t: f64) -> bool {
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
pub(crate) fn beats_null(rule: &Rule, value: f64, null: Option<f64>) -> bool {
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

/// Evaluates one rule for one pair label (`A~B`, `A~C1`, …): its aggregated value, its
/// null, and whether the value passes the rubric's own threshold and null margin.
pub fn evaluate_for(
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
    (
        value,
        null,
        value_passes(rule, value) && beats_null(rule, value, null),
    )
}

/// sha256 of the rubric text, recorded with every verdict.
pub fn rubric_hash(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A small rubric: one strong p-value rule with a control veto, one weak cosine rule.
    pub fn rubric(extra: &str) -> String {
        format!(
            r#"version = "test"
[ladder]
derived_groups = 2
[calibration]
family_rate = 0.01
beyond_unrelated_rate = 0.05
min_independent = 4
confidence = 0.95
[coverage]
decisive = [{{ experiment = "e4", list = "alignments" }}]
min_units = 1
{extra}"#
        )
    }

    pub const RULES: &str = r#"
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

    pub fn results(p_ab: f64, p_ac: f64, cos: f64) -> BTreeMap<String, Value> {
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
    fn rules_read_their_list_filter_field_and_aggregate() {
        let r = Rubric::parse(&rubric(RULES)).unwrap();
        let res = results(0.001, 0.5, 0.99);
        // The filter keeps the pearson row only (the cosine row's p = 0 is not read).
        assert_eq!(
            evaluate_for(&r.rules[0], &res, "A~B"),
            (0.001, Some(0.2), true)
        );
        assert_eq!(
            evaluate_for(&r.rules[0], &res, "A~C1"),
            (0.5, Some(0.2), false)
        );
        let (v, _, pass) = evaluate_for(&r.rules[1], &res, "A~B");
        assert_eq!((v, pass), (0.99, true));
        // A missing experiment gives NaN and never passes.
        let (v, _, pass) = evaluate_for(&r.rules[0], &BTreeMap::new(), "A~B");
        assert!(v.is_nan() && !pass);
        assert_eq!(r.rules[0].group(), "e4");
    }

    #[test]
    fn a_null_margin_keeps_a_value_that_does_not_beat_its_null_from_passing() {
        let with_margin = RULES.replace(
            "explain = \"raw cosine is high (so is the shuffle null)\"",
            "null = \"shuffle\"\nnull_margin = 0.01\nexplain = \"raw cosine is high\"",
        );
        let r = Rubric::parse(&rubric(&with_margin)).unwrap();
        let with_null = |cos: f64, shuffle: f64| {
            let m: BTreeMap<String, Value> = [(
                "e1".to_string(),
                json!({"summary": [{"pair": "A~B", "mean_cosine": cos, "shuffle": shuffle}]}),
            )]
            .into();
            evaluate_for(&r.rules[1], &m, "A~B").2
        };
        // 0.980 vs a null of 0.979: high, but no higher than chance.
        assert!(!with_null(0.980, 0.979));
        // 0.997 vs 0.975 clears the margin.
        assert!(with_null(0.997, 0.975));
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
    fn the_selector_changes_with_what_is_read_not_with_thresholds_or_texts() {
        let r = Rubric::parse(&rubric(RULES)).unwrap();
        let mut other = r.rules[0].clone();
        other.threshold = 0.5;
        other.explain = "changed".into();
        other.strength = Strength::Weak;
        assert_eq!(other.selector(), r.rules[0].selector());
        other.value = "q_value".into();
        assert_ne!(other.selector(), r.rules[0].selector());
        assert_eq!(r.rules[0].selector().len(), 16);
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
        let bad_rate = rubric(RULES).replace("family_rate = 0.01", "family_rate = 1.5");
        assert!(format!("{:#}", Rubric::parse(&bad_rate).unwrap_err()).contains("family_rate"));
    }

    #[test]
    fn the_default_rubric_parses() {
        let r = Rubric::default_rubric().unwrap();
        assert!(r.rules.iter().any(|x| x.strength == Strength::Strong));
        assert_eq!(rubric_hash("x").len(), 64);
    }
}
