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
