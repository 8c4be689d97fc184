//! The metrics a sweep report summarises over replicates and plots ([`METRICS`], each a
//! column of `results.csv` or one derived from it), what each column of `results.csv` may
//! hold ([`ValueCheck`]) and the physical range of each metric (confidence bands never leave
//! it), and [`PointSummary`], one summarised point.

/// Where a summarised metric comes from in a results row.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// A column.
    Column(&'static str),
    /// A column divided by `decode_tokens`.
    PerDecodeToken(&'static str),
}

/// A metric summarised over replicates.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Its name in `summary.csv` (`<name>_mean`, `<name>_ci95`), in the column's unit.
    pub name: &'static str,
    /// Its label, in the plotted unit.
    pub label: &'static str,
    /// Factor from the column's unit to the label's.
    pub scale: f64,
    /// Where it comes from.
    pub source: Source,
    /// Whether `summary.md` shows it.
    pub in_markdown: bool,
}

const fn metric(name: &'static str, label: &'static str, scale: f64, md: bool) -> Metric {
    Metric {
        name,
        label,
        scale,
        source: Source::Column(name),
        in_markdown: md,
    }
}

/// The metrics summarised over replicates.
pub const METRICS: &[Metric] = &[
    metric(
        "decode_tokens_per_s",
        "decode throughput (tokens/s)",
        1.0,
        true,
    ),
    metric("hit_rate", "expert hit rate (decode)", 1.0, true),
    metric(
        "aggregate_decode_tokens_per_s",
        "decode throughput, all requests (tokens/s)",
        1.0,
        false,
    ),
    metric(
        "union_experts_mean",
        "distinct experts per layer step",
        1.0,
        false,
    ),
    metric(
        "verify_tokens_per_step",
        "tokens per verification step",
        1.0,
        false,
    ),
    metric(
        "expert_cache_min_bytes",
        "smallest expert cache (GB)",
        1e-9,
        false,
    ),
    metric(
        "prefill_tokens_per_s",
        "prefill throughput (tokens/s)",
        1.0,
        false,
    ),
    metric("ttft_mean_ns", "mean time to first token (ms)", 1e-6, false),
    metric("token_latency_p50_ns", "p50 token latency (ms)", 1e-6, true),
    metric("token_latency_p99_ns", "p99 token latency (ms)", 1e-6, true),
    metric(
        "energy_per_decode_token_mj",
        "energy per decode token (mJ)",
        1.0,
        true,
    ),
    metric(
        "energy_per_prefill_token_mj",
        "energy per prompt token (mJ)",
        1.0,
        false,
    ),
    metric(
        "bytes_loaded_per_decode_token",
        "bytes loaded per token (MB)",
        1e-6,
        true,
    ),
    metric("decode_stall_ns", "decode stall (s)", 1e-9, false),
    metric("gate_mass_retained", "gate mass retained", 1.0, true),
    metric("topk_agreement", "top-k agreement", 1.0, true),
    metric("utilisation", "expert utilisation", 1.0, false),
    metric("output_rel_l2_mean", "output relative L2 error", 1.0, true),
    metric("output_cosine_mean", "output cosine similarity", 1.0, true),
    metric("weight_sqnr_db", "proxy weight SQNR (dB)", 1.0, false),
    metric(
        "plan_bits_per_weight_mean",
        "bits per weight (plan)",
        1.0,
        false,
    ),
    Metric {
        name: "decode_compute_ns_per_token",
        label: "compute per token (ms)",
        scale: 1e-6,
        source: Source::PerDecodeToken("decode_compute_ns"),
        in_markdown: false,
    },
    Metric {
        name: "decode_routing_ns_per_token",
        label: "routing per token (ms)",
        scale: 1e-6,
        source: Source::PerDecodeToken("decode_routing_ns"),
        in_markdown: false,
    },
    Metric {
        name: "decode_stall_ns_per_token",
        label: "expert-load stall per token (ms)",
        scale: 1e-6,
        source: Source::PerDecodeToken("decode_stall_ns"),
        in_markdown: false,
    },
];

/// The index of metric `name` in [`METRICS`] (a bug if it is not there).
pub fn metric_index(name: &str) -> usize {
    METRICS
        .iter()
        .position(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} is in METRICS"))
}

/// One summarised point of a sweep: its axis values, what it ran, and each metric's mean and
/// 95 % CI half-width over its replicates.
#[derive(Debug, Clone)]
pub struct PointSummary {
    /// The point's key (`path=value,...`).
    pub key: String,
    /// The axis values, as `axis.PATH` columns.
    pub axes: Vec<String>,
    /// The hardware profile.
    pub profile: String,
    /// The model.
    pub model: String,
    /// The routed experts' storage format.
    pub format: String,
    /// The router.
    pub router: String,
    /// Replicates.
    pub n: usize,
    /// Per metric (absent columns give NaN): mean and CI half-width, in the label's unit.
    pub stats: Vec<(f64, f64)>,
    /// Per metric, the value of each replicate in replicate order (NaN when missing), in the
    /// label's unit: for paired differences.
    pub samples: Vec<Vec<f64>>,
}

/// What a results column may hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueCheck {
    /// Text, or a number of any sign (seeds, axis values, SQNR, cosines).
    Any,
    /// Empty (not measured) or a finite number in [0, 1].
    Fraction,
    /// Empty or a finite number >= 0 (times, rates, counts, bytes, energies).
    NonNegative,
}

/// The check of column `name`.
pub fn value_check(name: &str) -> ValueCheck {
    const FRACTIONS: [&str; 8] = [
        "hit_rate",
        "topk_agreement",
        "topk_agreement_p5",
        "gate_mass_retained",
        "gate_mass_retained_p5",
        "utilisation",
        "prefetch_precision",
        "prefetch_recall",
    ];
    const NON_NEGATIVE_SUFFIXES: [&str; 14] = [
        "_ns", "_per_s", "_bytes", "_pj", "_mj", "_tokens", "hits", "misses", "events", "uses",
        "_loaded", "_issued", "_useful", "_lookups",
    ];
    if FRACTIONS.contains(&name) {
        ValueCheck::Fraction
    } else if name.starts_with("axis.") {
        ValueCheck::Any
    } else if NON_NEGATIVE_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        ValueCheck::NonNegative
    } else {
        ValueCheck::Any
    }
}

impl ValueCheck {
    /// Whether `value` (a field of `results.csv`) is one this column can hold.
    pub fn test(self, value: &str) -> std::result::Result<(), String> {
        if value.is_empty() || self == ValueCheck::Any {
            // moesim writes a missing figure as an empty field, never as NaN.
            return match value {
                "NaN" | "nan" | "inf" | "-inf" => Err(format!(
                    "`{value}` is not a value moesim writes (missing figures are empty)"
                )),
                _ => Ok(()),
            };
        }
        let Ok(x) = value.parse::<f64>() else {
            return Err(format!("`{value}` is not a number"));
        };
        match self {
            ValueCheck::Fraction if !(x.is_finite() && (0.0..=1.0).contains(&x)) => Err(format!(
                "{value} is impossible for a fraction (outside [0, 1])"
            )),
            ValueCheck::NonNegative if !(x.is_finite() && x >= 0.0) => Err(format!(
                "{value} is impossible here (must be finite and >= 0)"
            )),
            _ => Ok(()),
        }
    }
}

/// The values metric `name` can take, in its plotted unit.
pub fn physical_range(name: &str) -> (f64, f64) {
    match value_check(name) {
        ValueCheck::Fraction => (0.0, 1.0),
        _ if name.starts_with("output_cosine") => (-1.0, 1.0),
        _ if name == "weight_sqnr_db" => (f64::NEG_INFINITY, f64::INFINITY),
        _ => (0.0, f64::INFINITY),
    }
}
