//! How numbers are written in summary tables: a few significant digits, `mean ± ci`, and an
//! empty CSV field for a figure that was not measured.

/// `mean ± ci` in a few significant digits (the mean alone when there is no interval).
pub fn pm((m, c): (f64, f64)) -> String {
    if c.is_finite() {
        format!("{} ± {}", sig(m), sig(c))
    } else {
        sig(m)
    }
}

/// A number for a CSV field: empty when not finite.
pub fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        String::new()
    }
}

/// A number in about four significant digits; `-` when not finite.
pub fn sig(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x != 0.0 && (x.abs() >= 1e5 || x.abs() < 1e-3) {
        format!("{x:.3e}")
    } else {
        format!("{:.4}", x)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// [`pm`] for a metric whose values lie in `range`: an interval reaching past it is written as
/// `m (a to b)`, clamped; the flag says whether it was.
pub fn pm_within((m, c): (f64, f64), (lo, hi): (f64, f64)) -> (String, bool) {
    if c.is_finite() && m.is_finite() && (m - c < lo || m + c > hi) {
        (
            format!(
                "{} ({} to {})",
                sig(m),
                sig((m - c).max(lo)),
                sig((m + c).min(hi))
            ),
            true,
        )
    } else {
        (pm((m, c)), false)
    }
}
