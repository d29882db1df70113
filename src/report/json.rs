//! Reading results.json leniently (a missing or mistyped field reads as absent, never as a
//! panic) and writing numbers the one fixed way every report uses.

use serde_json::Value;

/// The array at `key`, or an empty slice.
pub fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A number (NaN when absent, null or not a number).
pub fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// A field reached by a dotted path (`direct.z`), as a number.
pub fn fp(v: &Value, path: &str) -> f64 {
    f(path.split('.').fold(v, |v, k| &v[k]))
}

/// A string field, or "".
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Whether an item belongs to the audited pair (A~B) rather than a control pair.
pub fn is_primary(v: &Value) -> bool {
    v["primary"] == true
}

/// A number as the report shows it: integers as integers, otherwise three decimals, and
/// scientific notation for very large or very small magnitudes. "n/a" when undefined.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let a = x.abs();
    if x == x.trunc() && a < 1e9 {
        format!("{x:.0}")
    } else if !(1e-3..1e5).contains(&a) {
        format!("{x:.2e}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

/// `num` of a JSON value; strings and booleans are shown as they are.
pub fn show(v: &Value) -> String {
    match v {
        Value::Number(_) => num(f(v)),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Null => "n/a".into(),
        other => other.to_string(),
    }
}

/// Groups (pairs, families…) a report shows at most. A results.json from a stranger may list
/// millions of distinct keys; past this many, rendering would only get slow.
pub const MAX_GROUPS: usize = 64;

/// The distinct items in order of first appearance, at most [`MAX_GROUPS`].
pub fn distinct<T: Ord + Clone>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for x in items {
        if out.len() == MAX_GROUPS {
            break;
        }
        if seen.insert(x.clone()) {
            out.push(x);
        }
    }
    out
}

/// The mean of the finite values, NaN when there are none.
pub fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    crate::experiments::mean_finite(values)
}

/// The largest finite value, NaN when there are none.
pub fn max(values: impl IntoIterator<Item = f64>) -> f64 {
    values
        .into_iter()
        .filter(|x| x.is_finite())
        .fold(f64::NAN, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_one_fixed_form() {
        assert_eq!(num(f64::NAN), "n/a");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(-0.0304), "-0.030");
        assert_eq!(num(0.99727), "0.997");
        assert_eq!(num(647.82841), "647.8");
        assert_eq!(num(0.000198412698), "1.98e-4");
        assert_eq!(num(264474.4), "2.64e5");
        assert_eq!(show(&serde_json::json!(true)), "yes");
        assert_eq!(fp(&serde_json::json!({"a": {"b": 2.5}}), "a.b"), 2.5);
        assert!(fp(&serde_json::json!({"a": 1}), "a.b").is_nan());
        assert_eq!(distinct([3, 1, 3, 2, 1]), vec![3, 1, 2]);
        assert_eq!(distinct(0..1_000_000).len(), MAX_GROUPS);
    }
}
