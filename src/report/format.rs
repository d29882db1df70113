//! Writing numbers and table cells the one fixed way every report uses, and the small
//! reductions (distinct groups, means, maxima) its sections share.

use crate::arch::Family;

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

/// A value as one table cell shows it: numbers through [`num`], flags as yes/no, text as it
/// is, an absent value as "n/a".
pub trait Cell {
    /// The cell's text.
    fn cell(&self) -> String;
}

impl Cell for f64 {
    fn cell(&self) -> String {
        num(*self)
    }
}

impl Cell for f32 {
    fn cell(&self) -> String {
        num(f64::from(*self))
    }
}

macro_rules! integer_cells {
    ($($t:ty),*) => {$(
        impl Cell for $t {
            fn cell(&self) -> String {
                // As results.json's reader sees an integer: a JSON number, then f64.
                num(*self as f64)
            }
        }
    )*};
}
integer_cells!(u32, u64, usize, i64);

impl Cell for bool {
    fn cell(&self) -> String {
        if *self { "yes" } else { "no" }.into()
    }
}

impl Cell for str {
    fn cell(&self) -> String {
        self.to_string()
    }
}

impl Cell for String {
    fn cell(&self) -> String {
        self.clone()
    }
}

impl Cell for Family {
    fn cell(&self) -> String {
        self.as_str()
    }
}

impl<T: Cell> Cell for Option<T> {
    fn cell(&self) -> String {
        self.as_ref().map_or_else(|| "n/a".into(), Cell::cell)
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
    fn numbers_and_cells_have_one_fixed_form() {
        assert_eq!(num(f64::NAN), "n/a");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(-0.0304), "-0.030");
        assert_eq!(num(0.99727), "0.997");
        assert_eq!(num(647.82841), "647.8");
        assert_eq!(num(0.000198412698), "1.98e-4");
        assert_eq!(num(264474.4), "2.64e5");
        assert_eq!(true.cell(), "yes");
        assert_eq!(7u64.cell(), "7");
        assert_eq!(None::<f64>.cell(), "n/a");
        assert_eq!(Some(0.5).cell(), "0.500");
        assert_eq!(Family::InputNorm.cell(), "input_norm");
        assert_eq!(distinct([3, 1, 3, 2, 1]), vec![3, 1, 2]);
        assert_eq!(distinct(0..1_000_000).len(), MAX_GROUPS);
    }
}
