//! ROC AUC and partial AUC of a continuous score against binary labels, for `audit eval`.
//! Higher scores should mean "derived"; NaN scores (the experiment did not apply) rank
//! below every number, so a signal that is often silent is not flattered.

/// Area under the ROC curve: the probability that a random positive outscores a random
/// negative, ties counting one half (the Mann–Whitney statistic). NaN without both classes.
pub fn auc(scores: &[f64], positive: &[bool]) -> f64 {
    let key = |s: f64| if s.is_nan() { f64::NEG_INFINITY } else { s };
    let pos: Vec<f64> = scores
        .iter()
        .zip(positive)
        .filter(|p| *p.1)
        .map(|p| key(*p.0))
        .collect();
    let neg: Vec<f64> = scores
        .iter()
        .zip(positive)
        .filter(|p| !*p.1)
        .map(|p| key(*p.0))
        .collect();
    if pos.is_empty() || neg.is_empty() {
        return f64::NAN;
    }
    let mut wins = 0.0;
    for p in &pos {
        for n in &neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (pos.len() * neg.len()) as f64
}

/// The ROC curve as (false-positive rate, true-positive rate) points, thresholds descending,
/// tied scores taken together.
pub fn roc(scores: &[f64], positive: &[bool]) -> Vec<(f64, f64)> {
    let key = |s: f64| if s.is_nan() { f64::NEG_INFINITY } else { s };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| key(scores[b]).total_cmp(&key(scores[a])));
    let p = positive.iter().filter(|x| **x).count() as f64;
    let n = positive.len() as f64 - p;
    let mut points = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let s = key(scores[order[i]]);
        while i < order.len() && key(scores[order[i]]) == s {
            if positive[order[i]] {
                tp += 1.0
            } else {
                fp += 1.0
            }
            i += 1;
        }
        points.push((
            if n > 0.0 { fp / n } else { 0.0 },
            if p > 0.0 { tp / p } else { 0.0 },
        ));
    }
    points
}

/// Area under the ROC curve for false-positive rates up to `max_fpr`, divided by `max_fpr`
/// (1 = every positive found before any false positive).
pub fn partial_auc(scores: &[f64], positive: &[bool], max_fpr: f64) -> f64 {
    if max_fpr <= 0.0 || !positive.iter().any(|x| *x) || positive.iter().all(|x| *x) {
        return f64::NAN;
    }
    let pts = roc(scores, positive);
    let mut area = 0.0;
    for w in pts.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x0 >= max_fpr {
            break;
        }
        let x_end = x1.min(max_fpr);
        if x1 > x0 {
            let y_end = y0 + (y1 - y0) * (x_end - x0) / (x1 - x0);
            area += (x_end - x0) * (y0 + y_end) / 2.0;
        }
    }
    area / max_fpr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_random_and_inverted_scores() {
        let labels = [true, true, false, false];
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &labels), 1.0);
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &labels), 0.0);
        assert_eq!(auc(&[0.5, 0.5, 0.5, 0.5], &labels), 0.5);
        // One positive below one negative: 3 of 4 pairs ordered.
        assert_eq!(auc(&[0.9, 0.3, 0.4, 0.1], &labels), 0.75);
        assert!(auc(&[1.0], &[true]).is_nan());
    }

    #[test]
    fn nan_scores_rank_last() {
        assert_eq!(auc(&[f64::NAN, 0.9, 0.1], &[true, true, false]), 0.5);
    }

    #[test]
    fn partial_auc_counts_only_the_low_false_positive_region() {
        let labels = [true, true, false, false];
        assert_eq!(partial_auc(&[0.9, 0.8, 0.2, 0.1], &labels, 0.05), 1.0);
        // The first thing ranked is a negative: no positive found below FPR 0.05.
        assert_eq!(partial_auc(&[0.8, 0.1, 0.9, 0.2], &labels, 0.05), 0.0);
        // Roc points: (0,0) → (0,0.5) → (0.5,0.5) → …: half the positives at zero FPR.
        assert!((partial_auc(&[0.9, 0.3, 0.4, 0.1], &labels, 0.05) - 0.5).abs() < 1e-12);
        assert_eq!(
            roc(&[0.9, 0.3, 0.4, 0.1], &labels),
            vec![(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
        );
    }
}
