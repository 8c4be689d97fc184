//! Units: simulated time, and human-readable formatting of bytes, durations and rates.
//!
//! Serialized fields carry their unit in their name (`capacity_bytes`, `latency_ns`); simulated
//! time is integer nanoseconds ([`crate::engine::TimeNs`]). Decimal prefixes
//! (MB = 10^6 B, GB/s = 10^9 B/s) are used throughout, as in `../shared/reference/hardware.md`.

/// The longest single duration the simulator accepts: 10^15 ns (11.6 days). Every figure that
/// becomes one event's duration (a load, a kernel, an arrival gap, a think time) is checked
/// against it at validation time, so a run of any realistic length fits the u64 clock
/// (584 years) and a nonsense figure is refused by name instead of overflowing.
pub const MAX_DURATION_NS: f64 = 1e15;

/// The most memory one input may make moesim allocate for a single structure (a trace
/// header's layer table, a generated model, one layer's proxy experts, a benchmark matrix):
/// 8 GiB. Sizes computed from input are checked against it before allocating, so an absurd
/// count is refused in one line instead of aborting the process.
pub const MAX_WORKING_BYTES: u64 = 8 << 30;

/// Checks that `bytes` (computed with checked arithmetic; `None` on overflow) is within
/// [`MAX_WORKING_BYTES`]; the error says what needs them.
pub fn check_working_bytes(what: &str, bytes: Option<u64>) -> Result<u64, String> {
    match bytes {
        Some(b) if b <= MAX_WORKING_BYTES => Ok(b),
        Some(b) => Err(format!(
            "{what} would need {}, more than the {} one structure may take",
            format_bytes(b as f64),
            format_bytes(MAX_WORKING_BYTES as f64)
        )),
        None => Err(format!("{what} would need more memory than can be counted")),
    }
}

/// Rounds a non-negative duration in nanoseconds (a float from a rate model) up to whole
/// nanoseconds, so that no positive cost rounds to zero.
pub fn ceil_ns(duration_ns: f64) -> u64 {
    debug_assert!(
        duration_ns >= 0.0 && duration_ns.is_finite(),
        "bad duration {duration_ns}"
    );
    duration_ns.ceil() as u64
}

/// `1234567` → `"1.23 MB"`.
pub fn format_bytes(bytes: f64) -> String {
    scaled(bytes, "B")
}

/// `2.5e9` → `"2.50 GB/s"`.
pub fn format_bandwidth(bytes_per_s: f64) -> String {
    scaled(bytes_per_s, "B/s")
}

/// A count per second with a decimal prefix: `3.2e9` → `"3.20 G/s"`.
pub fn format_rate(per_s: f64) -> String {
    scaled(per_s, "/s")
}

/// A count with a decimal prefix: `46.7e9` → `"46.70 G"`.
pub fn format_count(n: f64) -> String {
    scaled(n, "")
}

fn scaled(value: f64, unit: &str) -> String {
    const PREFIXES: [(f64, &str); 5] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, "")];
    let magnitude = value.abs();
    for (scale, prefix) in PREFIXES {
        if magnitude >= scale {
            return format!("{:.2} {prefix}{unit}", value / scale)
                .trim_end()
                .to_string();
        }
    }
    format!("{value:.2} {unit}").trim_end().to_string()
}

/// A duration in nanoseconds with the most readable unit: `1500.0` → `"1.50 µs"`.
pub fn format_duration_ns(ns: f64) -> String {
    let magnitude = ns.abs();
    if magnitude >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if magnitude >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if magnitude >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_bytes(8_257_536.0), "8.26 MB");
        assert_eq!(format_bytes(512.0), "512.00 B");
        assert_eq!(format_bandwidth(4.0e7), "40.00 MB/s");
        assert_eq!(format_duration_ns(1500.0), "1.50 µs");
        assert_eq!(format_duration_ns(206_438_400.0), "206.438 ms");
        assert_eq!(format_count(46.7e9), "46.70 G");
        assert_eq!(ceil_ns(0.2), 1);
    }
}
