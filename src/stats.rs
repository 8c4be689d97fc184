//! Small statistics every part of moesim shares: nearest-rank quantiles, medians, the spread
//! of a sample and the Student-t confidence interval of a mean.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// The nearest-rank `q` quantile of sorted `v` (0 when empty).
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// The nearest-rank `q` quantile of `v`, in any order (NaN when empty).
pub fn quantile_f64(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1]
}

/// The median of `v`, in any order (the mean of the middle two for an even count; NaN when
/// empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The spread `(p90 − p10) / median` of `v`.
pub fn spread(v: &[f64]) -> f64 {
    (quantile_f64(v, 0.9) - quantile_f64(v, 0.1)) / median(v)
}

/// The distribution-free confidence interval of the median of `v` (any order) at about 95 %
/// (order statistics `n/2 ∓ 0.98·√n`, the normal approximation of the binomial), or the whole
/// range for small samples; NaN when empty.
pub fn median_ci(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    let half = 0.98 * n.sqrt();
    let lo = ((n / 2.0 - half).floor() as isize).clamp(1, s.len() as isize) as usize;
    let hi = ((n / 2.0 + half).ceil() as isize + 1).clamp(1, s.len() as isize) as usize;
    (s[lo - 1], s[hi - 1])
}

/// The half-width of [`median_ci`] relative to the median: how precisely `v` gives its median.
pub fn median_precision(v: &[f64]) -> f64 {
    let (lo, hi) = median_ci(v);
    (hi - lo) / 2.0 / median(v)
}

/// Mean and the half-width of its 95 % confidence interval (Student t, n − 1 degrees of
/// freedom; NaN below two samples).
pub fn mean_ci(v: &[f64]) -> (f64, f64) {
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, f64::NAN);
    }
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .expect("n > 1")
        .inverse_cdf(0.975);
    (mean, t * (var / n as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_interval_is_the_textbook_one() {
        // n = 100: the 95 % interval of the median is [x(40), x(61)].
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(median_ci(&v), (40.0, 61.0));
        assert!((median_precision(&v) - 10.5 / 50.5).abs() < 1e-12);
        // Small samples give their whole range; one value is its own interval.
        assert_eq!(median_ci(&[3.0, 1.0, 2.0]), (1.0, 3.0));
        assert_eq!(median_ci(&[5.0]), (5.0, 5.0));
        assert!(median_ci(&[]).0.is_nan());
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.95), 95);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[7], 0.5), 7);
        assert_eq!(quantile(&[], 0.5), 0);
        let f: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        assert_eq!(quantile_f64(&f, 0.9), 9.0);
        assert_eq!(median(&f), 5.5);
        assert_eq!(spread(&[1.0, 1.0, 1.0]), 0.0);
    }

    #[test]
    fn student_t_interval() {
        let (m, h) = mean_ci(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        // t(0.975, 3) = 3.182446; s = 1.290994; h = t s / 2.
        assert!((h - 3.182446 * 1.290994 / 2.0).abs() < 1e-5, "{h}");
        assert!(mean_ci(&[1.0]).1.is_nan());
    }
}
