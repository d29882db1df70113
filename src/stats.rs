//! One home for statistics: pure functions, no I/O, no experiment types.
//!
//! Every z-score of the experiments divides by the *sample* standard deviation (n − 1): the
//! nulls they stand against are small samples (a few control pairs, a few dozen wrong-layer
//! pairs), where the population form (n) understates the spread and overstates z.

/// Arithmetic mean; NaN for no values. Values are taken as given (a NaN propagates): callers
/// that want only finite values filter first, as [`z_against`] does.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// Sample standard deviation (divides by n − 1); NaN for fewer than two values.
pub fn sample_sd(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return f64::NAN;
    }
    let m = mean(values);
    (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt()
}

/// `(value − mean) / sample sd` of the finite null values; `None` with fewer than two of them
/// or no spread.
pub fn z_against(value: f64, null_values: &[f64]) -> Option<f64> {
    let finite: Vec<f64> = null_values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if finite.len() < 2 {
        return None;
    }
    let sd = sample_sd(&finite);
    (sd > 0.0).then(|| (value - mean(&finite)) / sd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_sd_by_hand() {
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, squared deviations sum to 32, sd √(32/7)
        let v = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(mean(&v), 5.0);
        assert!((sample_sd(&v) - (32.0f64 / 7.0).sqrt()).abs() < 1e-15);
        assert!(mean(&[]).is_nan());
        assert!(sample_sd(&[1.0]).is_nan());
    }

    #[test]
    fn z_against_by_hand() {
        // null 1, 2, 3: mean 2, sample sd 1
        assert_eq!(z_against(3.0, &[1.0, 2.0, 3.0]), Some(1.0));
        // null 0, 4: mean 2, sample sd √8 (the population form would give 2)
        let z = z_against(10.0, &[0.0, 4.0]).unwrap();
        assert!((z - 8.0 / 8f64.sqrt()).abs() < 1e-12, "{z}");
        // non-finite null values are left out, and too few or constant nulls give none
        assert_eq!(z_against(3.0, &[1.0, f64::NAN, 2.0, 3.0]), Some(1.0));
        assert_eq!(z_against(3.0, &[1.0]), None);
        assert_eq!(z_against(3.0, &[1.0, 1.0]), None);
    }
}
