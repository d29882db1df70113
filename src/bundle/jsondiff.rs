//! One comparison of results, shared by `verify` (exactly, for the verdict; within
//! tolerance, for `--reproduce`), `audit diff` and the golden-output tests.
//!
//! Numbers match when `|a − b| <= abs + rel · max(|a|, |b|)`; everything else (strings,
//! booleans, nulls, array lengths, object keys) must be equal. Each difference carries its
//! JSON path (`$.experiments.e4.alignments[3].p_value`).

use serde_json::Value;

/// How far two numbers may differ and still match: `|a − b| ≤ abs + rel·max(|a|, |b|)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Relative tolerance.
    pub rel: f64,
    /// Absolute tolerance.
    pub abs: f64,
}

impl Tolerance {
    /// Re-runs on another machine: results are rounded to 9 significant digits, but the
    /// last bits of floating point sums differ between CPUs and can move a rounded digit.
    pub const RERUN: Tolerance = Tolerance {
        rel: 1e-6,
        abs: 1e-9,
    };
    /// Bit-for-bit equality (same machine, same build).
    pub const EXACT: Tolerance = Tolerance { rel: 0.0, abs: 0.0 };

    /// True when `a` and `b` are equal or within the tolerance.
    pub fn numbers_match(&self, a: f64, b: f64) -> bool {
        a == b || (a - b).abs() <= self.abs + self.rel * a.abs().max(b.abs())
    }
}

impl std::fmt::Display for Tolerance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "relative {:e}, absolute {:e}", self.rel, self.abs)
    }
}

/// One value that differs between two JSON documents.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    /// JSON path of the value (`$.experiments.e4.alignments[3].p_value`).
    pub path: String,
    /// The values as compact JSON (`(absent)` when a key is missing on one side).
    pub a: String,
    /// B's value as compact JSON (`(absent)` when missing).
    pub b: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} vs {}", self.path, self.a, self.b)
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 80 {
                format!("{}…", s.chars().take(77).collect::<String>())
            } else {
                s
            }
        }
    }
}

fn key_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_string()))
    }
}

fn walk(a: &Value, b: &Value, tol: Tolerance, path: &str, out: &mut Vec<Difference>) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let same = match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => tol.numbers_match(x, y),
                _ => x == y,
            };
            if !same {
                out.push(Difference {
                    path: path.to_string(),
                    a: show(Some(a)),
                    b: show(Some(b)),
                });
            }
        }
        (Value::Array(xs), Value::Array(ys)) => {
            if xs.len() != ys.len() {
                out.push(Difference {
                    path: format!("{path} (length)"),
                    a: xs.len().to_string(),
                    b: ys.len().to_string(),
                });
            }
            for (i, (x, y)) in xs.iter().zip(ys).enumerate() {
                walk(x, y, tol, &format!("{path}[{i}]"), out);
            }
        }
        (Value::Object(xs), Value::Object(ys)) => {
            let keys: std::collections::BTreeSet<&String> = xs.keys().chain(ys.keys()).collect();
            for k in keys {
                let p = key_path(path, k);
                match (xs.get(k), ys.get(k)) {
                    (Some(x), Some(y)) => walk(x, y, tol, &p, out),
                    (x, y) => out.push(Difference {
                        path: p,
                        a: show(x),
                        b: show(y),
                    }),
                }
            }
        }
        _ => {
            if a != b {
                out.push(Difference {
                    path: path.to_string(),
                    a: show(Some(a)),
                    b: show(Some(b)),
                });
            }
        }
    }
}

/// Every difference between `a` and `b` beyond `tol`, in document order.
pub fn diff(a: &Value, b: &Value, tol: Tolerance) -> Vec<Difference> {
    let mut out = Vec::new();
    walk(a, b, tol, "$", &mut out);
    out
}

/// A CSV file as JSON (an array of rows; cells that parse as finite numbers become
/// numbers), so tables compare with the same tolerance and paths as results.
pub fn csv_as_json(bytes: &[u8]) -> anyhow::Result<Value> {
    let mut rows = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    for record in reader.records() {
        let record = record?;
        rows.push(Value::Array(
            record
                .iter()
                .map(|cell| match cell.parse::<f64>() {
                    Ok(x) if x.is_finite() => serde_json::json!(x),
                    _ => Value::String(cell.to_string()),
                })
                .collect(),
        ));
    }
    Ok(Value::Array(rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_within_tolerance_match_and_others_do_not() {
        let a = json!({"x": 1.0, "y": [1, 2, {"z": "s"}], "n": null, "w.v": 0.0});
        let b = json!({"x": 1.0 + 1e-8, "y": [1, 2, {"z": "t"}], "n": 0.5, "w.v": 1e-8});
        let d = diff(&a, &b, Tolerance::RERUN);
        let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["$.n", "$[\"w.v\"]", "$.y[2].z"]);
        assert_eq!(diff(&a, &b, Tolerance::EXACT).len(), 4);
        assert!(diff(&a, &a, Tolerance::EXACT).is_empty());
    }

    #[test]
    fn missing_keys_and_lengths_are_differences() {
        let d = diff(
            &json!({"a": [1, 2], "b": 1}),
            &json!({"a": [1], "c": 1}),
            Tolerance::RERUN,
        );
        let text: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            text,
            [
                "$.a (length): 2 vs 1",
                "$.b: 1 vs (absent)",
                "$.c: (absent) vs 1"
            ]
        );
    }

    #[test]
    fn tolerance_is_relative_and_absolute() {
        let t = Tolerance::RERUN;
        assert!(t.numbers_match(1e6, 1e6 + 0.5));
        assert!(!t.numbers_match(1e6, 1e6 + 2.0));
        assert!(t.numbers_match(0.0, 5e-10));
        assert!(!t.numbers_match(0.0, 2e-9));
    }

    #[test]
    fn csv_cells_become_numbers() {
        let v = csv_as_json(b"name,value\na,0.500000\nb,\n").unwrap();
        assert_eq!(v, json!([["name", "value"], ["a", 0.5], ["b", ""]]));
    }
}
