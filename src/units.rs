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

/// A byte count as a user writes it: `2000000000`, `2e9`, `2GB`, `1.5 GiB`, `512MiB`, `4096B`.
/// Decimal units are powers of 1000 (kB, MB, GB, TB), binary ones of 1024 (KiB, MiB, GiB,
/// TiB). The result must be a whole number of bytes that fits in a u64.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)"
            ));
        }
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}`: not a byte count (e.g. 2000000000, 2e9, 2GB, 1.5GiB)"))?;
    let bytes = value * scale;
    if !(bytes.is_finite() && (0.0..1.8e19).contains(&bytes)) {
        return Err(format!("`{text}`: must be a byte count from 0 to 1.8e19"));
    }
    if bytes.fract() != 0.0 {
        return Err(format!(
            "`{text}`: is not a whole number of bytes ({bytes})"
        ));
    }
    Ok(bytes as u64)
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
    fn byte_counts_parse_in_every_written_form() {
        assert_eq!(parse_bytes("2000000000"), Ok(2_000_000_000));
        assert_eq!(parse_bytes("2e9"), Ok(2_000_000_000));
        assert_eq!(parse_bytes("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_bytes("1.5 GiB"), Ok(1_610_612_736));
        assert_eq!(parse_bytes("512MiB"), Ok(536_870_912));
        assert!(parse_bytes("1.5").unwrap_err().contains("whole number"));
        assert!(parse_bytes("-1").is_err());
        assert!(
            parse_bytes("2 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_bytes("1e30").is_err());
        assert!(parse_bytes("nan").is_err());
    }

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
