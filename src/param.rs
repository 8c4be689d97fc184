//! Checks of plug-in parameters, shared by every way a value arrives.
//!
//! A router's `alpha`, a policy's `decay` or an arrival's `rate_per_s` can come from an
//! experiment file, from a sweep axis or from a command-line flag. Each plug-in kind has one
//! `validate` that returns a [`ParamError`] naming the parameter by its field name; the caller
//! adds where it came from (`router.alpha` in a file, `--ema-alpha` on the command line), so
//! the same value is refused everywhere with the same reason.

use std::fmt;

/// A refused parameter: its field name, the value as given, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    /// The parameter's field name inside its plug-in (`alpha`, `rate_per_s`).
    pub key: String,
    /// The value, as displayed.
    pub value: String,
    /// What is wrong, e.g. "must be a finite number >= 0".
    pub reason: String,
}

impl ParamError {
    /// A refusal of `value` at `key`.
    pub fn new(
        key: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        ParamError {
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// `"alpha = NaN: must be a finite number >= 0"`.
    pub fn message(&self) -> String {
        format!("{} = {}: {}", self.key, self.value, self.reason)
    }

    /// The key prefixed with the section it sits in (`router` → `router.alpha`).
    pub fn in_section(mut self, section: &str) -> ParamError {
        if !section.is_empty() {
            self.key = format!("{section}.{}", self.key);
        }
        self
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// What a plug-in's parameters are checked against: the shape of the model it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape {
    /// MoE layers.
    pub layers: u32,
    /// Routed experts per layer.
    pub experts: u32,
    /// Experts selected per token.
    pub top_k: u32,
}

/// A number as a user would write it: plain in the usual range, in exponent form when very
/// large or small (`1e-300`, not three hundred zeros).
pub fn show(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 || !x.is_finite() || (1e-4..1e9).contains(&a) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// [`show`] for an `f32`, without the digits a widening to `f64` would add.
pub fn show32(x: f32) -> String {
    let a = x.abs();
    if x == 0.0 || !x.is_finite() || (1e-4..1e9).contains(&a) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// `x` finite and `>= 0`.
pub fn non_negative(key: &str, x: f64) -> Result<(), ParamError> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(ParamError::new(
            key,
            show(x),
            "must be a finite number >= 0",
        ))
    }
}

/// `x` finite and `> 0`.
pub fn positive(key: &str, x: f64) -> Result<(), ParamError> {
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        Err(ParamError::new(key, show(x), "must be a finite number > 0"))
    }
}

/// `x` in `[0, 1)`, as a decay per step must be (1 would never forget, more would grow).
pub fn decay(key: &str, x: f64) -> Result<(), ParamError> {
    if (0.0..1.0).contains(&x) {
        Ok(())
    } else {
        Err(ParamError::new(key, show(x), "must be in [0, 1)"))
    }
}

/// `x` in the closed range `[lo, hi]` (finite).
pub fn within(key: &str, x: f64, lo: f64, hi: f64) -> Result<(), ParamError> {
    if x.is_finite() && (lo..=hi).contains(&x) {
        Ok(())
    } else {
        Err(ParamError::new(
            key,
            show(x),
            format!("must be in [{}, {}]", show(lo), show(hi)),
        ))
    }
}

/// An integer `n` in `[lo, hi]`.
pub fn int_within(key: &str, n: u64, lo: u64, hi: u64, what: &str) -> Result<(), ParamError> {
    if (lo..=hi).contains(&n) {
        Ok(())
    } else {
        Err(ParamError::new(
            key,
            n,
            format!("must be in {lo}..={hi} ({what})"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_refuse_non_finite_and_out_of_range_values() {
        assert!(non_negative("a", 0.0).is_ok());
        for bad in [f64::NAN, f64::INFINITY, -1.0, f64::NEG_INFINITY] {
            assert!(non_negative("a", bad).is_err(), "{bad}");
        }
        assert!(positive("a", 0.0).is_err());
        assert!(decay("d", 0.99).is_ok());
        assert!(decay("d", 1.0).is_err());
        assert!(decay("d", f64::NAN).is_err());
        assert!(within("x", 0.5, 0.0, 1.0).is_ok());
        assert!(within("x", f64::NAN, 0.0, 1.0).is_err());
        assert!(int_within("k", 0, 1, 8, "experts").is_err());
        assert_eq!(show(1e-300), "1e-300");
        assert_eq!(show(0.5), "0.5");
        assert_eq!(show(f64::NAN), "NaN");
        let e = non_negative("alpha", f64::NAN)
            .unwrap_err()
            .in_section("router");
        assert_eq!(e.key, "router.alpha");
        assert_eq!(
            e.message(),
            "router.alpha = NaN: must be a finite number >= 0"
        );
    }
}
