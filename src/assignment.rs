//! The one assignment solver: a maximum-weight one-to-one matching of rows to columns, exact
//! (scipy's `linear_sum_assignment`, shortest augmenting path, through `lsap`), and a greedy
//! pass for sizes the exact solver would take too long on. Layer alignment (E4, E8), hidden
//! dimensions (E1b, E8), experts (E9) and MLP units (E10) all match through it. No I/O.

use anyhow::{Result, bail};
use rayon::prelude::*;

/// Maximum-weight assignment of every row to a distinct column (`rows ≤ cols`), exact: scipy's
/// `linear_sum_assignment` (what AWM calls) through the `lsap` translation. Non-finite weights
/// count as 0.
pub fn hungarian_assignment(w: &[f64], rows: usize, cols: usize) -> Result<Vec<usize>> {
    if rows > cols || w.len() != rows * cols {
        bail!("assignment needs rows ≤ cols and a full {rows}x{cols} matrix");
    }
    if rows == 0 {
        return Ok(Vec::new());
    }
    let finite: Vec<f64> = w
        .iter()
        .map(|&v| if v.is_finite() { v } else { 0.0 })
        .collect();
    let (r, c) = lsap::solve(rows, cols, &finite, true)
        .map_err(|e| anyhow::anyhow!("linear assignment of a {rows}x{cols} matrix: {e:?}"))?;
    let mut out = vec![usize::MAX; rows];
    for (i, j) in r.into_iter().zip(c) {
        if let Some(slot) = out.get_mut(i) {
            *slot = j;
        }
    }
    if out.contains(&usize::MAX) {
        bail!("linear assignment of a {rows}x{cols} matrix left a row unassigned");
    }
    Ok(out)
}

/// Greedy assignment, `rows ≤ cols`: repeatedly the largest remaining weight whose row and
/// column are both free (ties by index). Not optimal, but exact on true permutations, where
/// every row's best partner is unique and far above the rest; for dimensions past what the
/// exact solver does in seconds.
pub fn greedy_assignment(w: &[f64], rows: usize, cols: usize) -> Result<Vec<usize>> {
    if rows > cols || w.len() != rows * cols {
        bail!("assignment needs rows ≤ cols and a full {rows}x{cols} matrix");
    }
    let mut order: Vec<usize> = (0..w.len()).collect();
    let key = |i: usize| if w[i].is_finite() { w[i] } else { f64::MIN };
    order.par_sort_unstable_by(|&x, &y| key(y).total_cmp(&key(x)).then(x.cmp(&y)));
    let mut out = vec![usize::MAX; rows];
    let mut used = vec![false; cols];
    let mut left = rows;
    for i in order {
        if left == 0 {
            break;
        }
        let (r, c) = (i / cols, i % cols);
        if out[r] == usize::MAX && !used[c] {
            out[r] = c;
            used[c] = true;
            left -= 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cka::test_noise as noise;

    /// The exact assignment reaches the brute-force optimum, square and wide.
    #[test]
    fn exact_assignment_is_optimal_by_brute_force() {
        fn best(w: &[f64], rows: usize, cols: usize) -> f64 {
            fn go(w: &[f64], r: usize, rows: usize, cols: usize, used: &mut Vec<bool>) -> f64 {
                if r == rows {
                    return 0.0;
                }
                let mut top = f64::NEG_INFINITY;
                for c in 0..cols {
                    if !used[c] {
                        used[c] = true;
                        top = top.max(w[r * cols + c] + go(w, r + 1, rows, cols, used));
                        used[c] = false;
                    }
                }
                top
            }
            go(w, 0, rows, cols, &mut vec![false; cols])
        }
        for (seed, rows, cols) in [(50, 5, 5), (51, 6, 6), (52, 3, 7), (53, 1, 4)] {
            let w: Vec<f64> = noise(seed, rows * cols)
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let a = hungarian_assignment(&w, rows, cols).unwrap();
            let mut seen = a.clone();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), rows, "{a:?} is not one-to-one");
            let got: f64 = a.iter().enumerate().map(|(r, &c)| w[r * cols + c]).sum();
            assert!((got - best(&w, rows, cols)).abs() < 1e-12, "{rows}x{cols}");
        }
        // a NaN weight counts as 0 instead of failing the solve
        let w = [f64::NAN, 1.0, 1.0, 0.0];
        assert_eq!(hungarian_assignment(&w, 2, 2).unwrap(), vec![1, 0]);
    }

    #[test]
    fn assignments_recover_a_permutation() {
        let d = 40;
        let perm: Vec<usize> = {
            let mut p: Vec<usize> = (0..d).collect();
            fastrand::Rng::with_seed(5).shuffle(&mut p);
            p
        };
        let mut w = vec![0.0; d * d];
        let r = noise(6, d * d);
        for i in 0..d {
            for j in 0..d {
                w[i * d + j] = f64::from(r[i * d + j]).abs() * 0.1;
            }
            w[i * d + perm[i]] = 0.9;
        }
        assert_eq!(hungarian_assignment(&w, d, d).unwrap(), perm);
        assert_eq!(greedy_assignment(&w, d, d).unwrap(), perm);
        assert!(hungarian_assignment(&w, d, d - 1).is_err());
    }
}
