//! A sweep's report directory from its CSV: `results.csv` assembled from the per-point parts,
//! then `summary.csv` (mean and 95 % confidence interval over replicates), `summary.md` and the
//! plots, all re-derivable from `results.csv` alone (`moesim plot`). Rows stream: memory does
//! not grow with the number of points.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::plot::{BarChart, BarPanel, Heatmap, Series, XyChart};
use crate::atomic_file::{AtomicFile, write_atomic};
use crate::error::{Error, InputError, Result};
use crate::stats::mean_ci;

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

/// The plots and tables a sweep report can hold (`[report] plots`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlotKind {
    /// Each key metric against each numeric axis, one line per combination of the other axes,
    /// with 95 % CI bands.
    MetricVsAxis,
    /// Output error against decode throughput, with the Pareto front.
    Pareto,
    /// Miss ratio against cache capacity (the numeric `cache.*` axis), one line per policy.
    MissRatio,
    /// Decode throughput and energy per token per hardware profile.
    HardwareBars,
    /// Per-layer expert popularity of each point (prefill and decode selections).
    PopularityHeatmap,
    /// Per-token decode time split into compute, routing and expert-load stall.
    LatencyBreakdown,
    /// The distribution of decode-token latencies per point.
    LatencyCdf,
    /// Proxy weight SQNR against bits per weight, one line per quantizer family.
    SqnrVsBits,
    /// Hit rate against throughput, one marker per point.
    HitVsThroughput,
    /// The shape of the seed's §6.3 table, standard against memory-aware routing (a table in
    /// summary.md, not a plot).
    SeedTable,
}

impl PlotKind {
    /// Every kind.
    pub const ALL: [PlotKind; 10] = [
        PlotKind::MetricVsAxis,
        PlotKind::Pareto,
        PlotKind::MissRatio,
        PlotKind::HardwareBars,
        PlotKind::PopularityHeatmap,
        PlotKind::LatencyBreakdown,
        PlotKind::LatencyCdf,
        PlotKind::SqnrVsBits,
        PlotKind::HitVsThroughput,
        PlotKind::SeedTable,
    ];

    /// Why this kind cannot be drawn for a sweep over `axes` (dotted paths), if it cannot.
    pub fn unusable(self, axes: &[String]) -> Option<String> {
        match self {
            PlotKind::MetricVsAxis if axes.is_empty() => Some("the sweep has no axis".into()),
            PlotKind::MissRatio if capacity_axis(axes).is_none() => Some(
                "needs a numeric cache capacity axis (cache.capacity_experts, cache.capacity_bytes or cache.budget_fraction)"
                    .into(),
            ),
            PlotKind::HardwareBars if !axes.iter().any(|a| a == "hardware.profile") => {
                Some("needs a `hardware.profile` axis".into())
            }
            PlotKind::SeedTable if !axes.iter().any(|a| a == "router" || a == "router.kind") => {
                Some("needs a `router` (or `router.kind`) axis with standard and memory-aware values".into())
            }
            _ => None,
        }
    }
}

/// The axis giving cache capacity, if any.
fn capacity_axis(axes: &[String]) -> Option<usize> {
    axes.iter().position(|a| {
        matches!(
            a.as_str(),
            "cache.capacity_experts" | "cache.capacity_bytes" | "cache.budget_fraction"
        )
    })
}

/// Concatenates the part files (`header` + rows each, in `parts` order) into `dir/name`,
/// atomically.
pub fn assemble(dir: &Path, name: &str, parts: &[PathBuf]) -> Result<()> {
    let target = dir.join(name);
    let mut out = AtomicFile::create(&target)?;
    for (i, p) in parts.iter().enumerate() {
        let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
        let mut lines = text.splitn(2, '\n');
        let header = lines.next().unwrap_or_default();
        let rows = lines.next().unwrap_or_default();
        let w = out.writer();
        let r = if i == 0 {
            writeln!(w, "{header}").and_then(|_| w.write_all(rows.as_bytes()))
        } else {
            w.write_all(rows.as_bytes())
        };
        r.map_err(|e| Error::io(&target, e))?;
    }
    out.commit()
}

/// One summarised point.
#[derive(Debug, Clone)]
struct PointSummary {
    key: String,
    axes: Vec<String>,
    profile: String,
    model: String,
    format: String,
    router: String,
    n: usize,
    /// Per metric (absent columns give NaN): mean and CI half-width, in the label's unit.
    stats: Vec<(f64, f64)>,
    /// Per metric, the value of each replicate in replicate order (NaN when missing), in the
    /// label's unit: for paired differences.
    samples: Vec<Vec<f64>>,
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Input(InputError::new(path.display().to_string(), reason.into()))
}

/// What the plots are drawn from.
struct Data<'a> {
    dir: &'a Path,
    title: String,
    on: String,
    axis_paths: Vec<String>,
    /// The axes of `metric-vs-axis` charts (None: every numeric axis).
    chart_axes: Option<Vec<String>>,
    points: Vec<PointSummary>,
    present: Vec<usize>,
}

fn metric_index(name: &str) -> usize {
    METRICS
        .iter()
        .position(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} is in METRICS"))
}

/// `[report]` of `dir/experiment.toml`, if the file exists.
fn report_section(dir: &Path) -> Result<crate::experiment::spec::ReportSection> {
    let path = dir.join("experiment.toml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Default::default());
    };
    let spec: crate::experiment::ExperimentSpec =
        crate::config::parse_toml(&path.display().to_string(), &text)?;
    Ok(spec.report)
}

/// Reads `results.csv` (and `latency.csv`, `popularity.csv` when a plot needs them) and
/// writes `summary.csv`, `summary.md` and `plots/`; returns the markdown summary. `title`
/// names the experiment when `results.csv` has no `name` column. The plots are those
/// `experiment.toml` names in `[report] plots`, or else chosen from the axes.
pub fn finish(dir: &Path, title: &str) -> Result<String> {
    let path = dir.join("results.csv");
    // Every table moesim writes ends with a newline: a file that does not was cut mid-row.
    let ends_whole = {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
        let mut last = [0u8; 1];
        len > 0
            && f.seek(SeekFrom::End(-1)).is_ok()
            && f.read_exact(&mut last).is_ok()
            && last[0] == b'\n'
    };
    if !ends_whole {
        return Err(bad(
            &path,
            "truncated: the last row does not end with a newline (an interrupted copy or write?)",
        ));
    }
    let mut rd = csv::Reader::from_path(&path).map_err(|e| bad(&path, e.to_string()))?;
    let headers = rd.headers().map_err(|e| bad(&path, e.to_string()))?.clone();
    let checks: Vec<ValueCheck> = headers.iter().map(value_check).collect();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let point_col =
        col("point").ok_or_else(|| bad(&path, "no `point` column: not a sweep's results.csv"))?;
    let text_cols = ["profile", "model", "format", "router"].map(col);
    let name_col = col("name");
    let axis_cols: Vec<(usize, String)> = headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.strip_prefix("axis.").map(|p| (i, p.to_string())))
        .collect();
    let decode_tokens_col = col("decode_tokens");
    let metric_cols: Vec<Option<usize>> = METRICS
        .iter()
        .map(|m| match m.source {
            Source::Column(c) | Source::PerDecodeToken(c) => col(c),
        })
        .collect();
    let mut points: Vec<PointSummary> = Vec::new();
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); METRICS.len()];
    let mut current: Option<PointSummary> = None;
    let mut experiment_name: Option<String> = None;
    let flush = |cur: &mut Option<PointSummary>,
                 values: &mut Vec<Vec<f64>>,
                 points: &mut Vec<PointSummary>| {
        if let Some(mut p) = cur.take() {
            p.n = values[0].len();
            p.samples = values
                .iter()
                .zip(METRICS)
                .map(|(v, m)| v.iter().map(|x| x * m.scale).collect())
                .collect();
            p.stats = values
                .iter()
                .zip(METRICS)
                .map(|(v, m)| {
                    let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
                    let (mean, ci) = mean_ci(&finite);
                    (mean * m.scale, ci * m.scale)
                })
                .collect();
            points.push(p);
        }
        values.iter_mut().for_each(|v| v.clear());
    };
    let get = |rec: &csv::StringRecord, c: Option<usize>| {
        c.and_then(|i| rec.get(i)).unwrap_or_default().to_string()
    };
    for rec in rd.records() {
        let rec = rec.map_err(|e| bad(&path, e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        for ((value, check), name) in rec.iter().zip(&checks).zip(headers.iter()) {
            if let Err(why) = check.test(value) {
                return Err(Error::Input(crate::error::InputError {
                    file: path.display().to_string(),
                    line: Some(line),
                    key: Some(name.to_string()),
                    reason: why,
                }));
            }
        }
        let key = rec.get(point_col).unwrap_or_default().to_string();
        if experiment_name.is_none() {
            experiment_name = name_col.and_then(|i| rec.get(i)).map(str::to_string);
        }
        if current.as_ref().is_none_or(|c| c.key != key) {
            flush(&mut current, &mut values, &mut points);
            current = Some(PointSummary {
                key,
                axes: axis_cols
                    .iter()
                    .map(|(i, _)| rec.get(*i).unwrap_or_default().to_string())
                    .collect(),
                profile: get(&rec, text_cols[0]),
                model: get(&rec, text_cols[1]),
                format: get(&rec, text_cols[2]),
                router: get(&rec, text_cols[3]),
                n: 0,
                stats: Vec::new(),
                samples: Vec::new(),
            });
        }
        let tokens = decode_tokens_col
            .and_then(|i| rec.get(i))
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        for ((v, c), m) in values.iter_mut().zip(&metric_cols).zip(METRICS) {
            let x = c
                .and_then(|i| rec.get(i))
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(f64::NAN);
            v.push(match m.source {
                Source::Column(_) => x,
                Source::PerDecodeToken(_) if tokens > 0.0 => x / tokens,
                Source::PerDecodeToken(_) => f64::NAN,
            });
        }
    }
    flush(&mut current, &mut values, &mut points);
    if points.is_empty() {
        return Err(bad(&path, "no rows"));
    }
    let title = experiment_name.unwrap_or_else(|| title.to_string());

    // summary.csv
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head = vec!["point".to_string()];
    head.extend(axis_cols.iter().map(|(_, p)| format!("axis.{p}")));
    head.push("replicates".into());
    for m in METRICS {
        head.push(format!("{}_mean", m.name));
        head.push(format!("{}_ci95", m.name));
    }
    w.write_record(&head).expect("memory");
    for p in &points {
        let mut r = vec![p.key.clone()];
        r.extend(p.axes.iter().cloned());
        r.push(p.n.to_string());
        for ((mean, ci), m) in p.stats.iter().zip(METRICS) {
            // Back to the column's own unit.
            r.push(num(mean / m.scale));
            r.push(num(ci / m.scale));
        }
        w.write_record(&r).expect("memory");
    }
    write_atomic(dir.join("summary.csv"), &w.into_inner().expect("memory"))?;

    // summary.md
    let present: Vec<usize> = (0..METRICS.len())
        .filter(|&i| points.iter().any(|p| p.stats[i].0.is_finite()))
        .collect();
    let shown: Vec<usize> = present
        .iter()
        .copied()
        .filter(|&i| METRICS[i].in_markdown)
        .collect();
    let mut md = format!(
        "# {title}\n\n{} points × {} replicate(s); mean ± 95 % CI (Student t) over replicates.\n\n| point |",
        points.len(),
        points.iter().map(|p| p.n).max().unwrap_or(0)
    );
    for &i in &shown {
        md.push_str(&format!(" {} |", METRICS[i].label));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(shown.len()));
    md.push('\n');
    for p in &points {
        md.push_str(&format!("| {} |", p.key));
        for &i in &shown {
            md.push_str(&format!(" {} |", pm(p.stats[i])));
        }
        md.push('\n');
    }
    let mut profiles: Vec<&str> = points.iter().map(|p| p.profile.as_str()).collect();
    profiles.sort_unstable();
    profiles.dedup();
    let on = if profiles.len() == 1 {
        format!(" on {}", profiles[0])
    } else {
        " on several profiles".to_string()
    };
    let report = report_section(dir)?;
    md.push_str(&paired_differences(
        &points,
        &shown,
        report.baseline.as_deref(),
    ));
    let data = Data {
        dir,
        title,
        on,
        axis_paths: axis_cols.iter().map(|(_, p)| p.clone()).collect(),
        chart_axes: report.axes.clone(),
        points,
        present,
    };
    let kinds = match report.plots {
        Some(k) => {
            for kind in &k {
                if let Some(why) = kind.unusable(&data.axis_paths) {
                    return Err(bad(
                        &dir.join("experiment.toml"),
                        format!("report.plots: {}: {why}", plot_name(*kind)),
                    ));
                }
            }
            k
        }
        None => automatic(&data),
    };
    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(|e| Error::io(&plots_dir, e))?;
    let mut written = Vec::new();
    for kind in kinds {
        match kind {
            PlotKind::SeedTable => md.push_str(&seed_table(&data)),
            _ => written.extend(draw(&data, kind, &plots_dir)?),
        }
    }
    // Plots an earlier report drew that this one does not are removed: plots/ shows this
    // report only.
    for entry in std::fs::read_dir(&plots_dir).map_err(|e| Error::io(&plots_dir, e))? {
        let entry = entry.map_err(|e| Error::io(&plots_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let stem = name
            .strip_suffix(".png")
            .or_else(|| name.strip_suffix(".svg"));
        if stem.is_some_and(|s| !written.iter().any(|w| w == s)) {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    if !written.is_empty() {
        md.push_str("\n## Plots\n\n");
        for p in &written {
            md.push_str(&format!("![{p}](plots/{p}.png)\n\n"));
        }
    }
    if let Ok(source) = std::fs::read_to_string(dir.join("experiment.source"))
        && !source.trim().is_empty()
    {
        md.push_str(&format!(
            "Reproduce: `moesim run {}` (moesim {}; add `--out DIR` to write elsewhere than moesim-reports/; `moesim plot DIR` redraws the summary and plots from results.csv).\n",
            source.trim(),
            env!("CARGO_PKG_VERSION"),
        ));
    }
    write_atomic(dir.join("summary.md"), md.as_bytes())?;
    Ok(md)
}

/// What a results column may hold.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ValueCheck {
    /// Text, or a number of any sign (seeds, axis values, SQNR, cosines).
    Any,
    /// Empty (not measured) or a finite number in [0, 1].
    Fraction,
    /// Empty or a finite number >= 0 (times, rates, counts, bytes, energies).
    NonNegative,
}

/// The check of column `name`.
fn value_check(name: &str) -> ValueCheck {
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
    fn test(self, value: &str) -> std::result::Result<(), String> {
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

fn plot_name(kind: PlotKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The plots chosen from the axes and the measured columns.
fn automatic(d: &Data<'_>) -> Vec<PlotKind> {
    let has = |m: &str| d.present.contains(&metric_index(m));
    let n = d.points.len();
    let numeric_axis = (0..d.axis_paths.len()).any(|a| numeric(d, a).is_some());
    let mut k = Vec::new();
    if numeric_axis {
        k.push(PlotKind::MetricVsAxis);
    }
    if capacity_axis(&d.axis_paths).is_some_and(|a| numeric(d, a).is_some()) {
        k.push(PlotKind::MissRatio);
    }
    if d.axis_paths.iter().any(|a| a == "hardware.profile") {
        k.push(PlotKind::HardwareBars);
    }
    if has("output_rel_l2_mean") && n >= 2 {
        k.push(PlotKind::Pareto);
    }
    if has("weight_sqnr_db") && d.axis_paths.iter().any(|a| a == "model.format") {
        k.push(PlotKind::SqnrVsBits);
    }
    if (2..=16).contains(&n) {
        k.push(PlotKind::LatencyBreakdown);
    }
    if n <= 8 && d.dir.join("latency.csv").exists() {
        k.push(PlotKind::LatencyCdf);
    }
    if n <= 4 && d.dir.join("popularity.csv").exists() {
        k.push(PlotKind::PopularityHeatmap);
    }
    if !numeric_axis && n >= 2 && !k.contains(&PlotKind::HardwareBars) {
        k.push(PlotKind::HitVsThroughput);
    }
    k
}

/// Axis `a`'s values as numbers, if every point has a number and there are two or more.
fn numeric(d: &Data<'_>, a: usize) -> Option<Vec<f64>> {
    let xs: Option<Vec<f64>> = d.points.iter().map(|p| p.axes[a].parse().ok()).collect();
    let xs = xs?;
    let mut distinct = xs.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    (distinct.len() >= 2).then_some(xs)
}

fn pm((m, c): (f64, f64)) -> String {
    if c.is_finite() {
        format!("{} ± {}", sig(m), sig(c))
    } else {
        sig(m)
    }
}

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        String::new()
    }
}

fn sig(x: f64) -> String {
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

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// The last component of a dotted path.
fn short(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// `path=value, ...` of a point's axes other than `skip`.
fn others(d: &Data<'_>, p: &PointSummary, skip: &[usize]) -> String {
    let v: Vec<String> = d
        .axis_paths
        .iter()
        .enumerate()
        .filter(|(b, _)| !skip.contains(b))
        .map(|(b, path)| format!("{}={}", short(path), p.axes[b]))
        .collect();
    if v.is_empty() {
        "all".into()
    } else {
        v.join(", ")
    }
}

/// A short label of a point: its axis values.
fn point_label(d: &Data<'_>, p: &PointSummary) -> String {
    if d.axis_paths.is_empty() {
        p.key.clone()
    } else {
        p.axes.join(" / ")
    }
}

/// With replicates, the paired differences of every point from the baseline (the `[report]
/// baseline` point, else the first): replicate r of every point shares its seed (common
/// random numbers), so the difference of replicate r's values isolates what the axes change;
/// mean ± 95 % CI of those differences.
fn paired_differences(points: &[PointSummary], shown: &[usize], baseline: Option<&str>) -> String {
    let Some(base) = (match baseline {
        Some(k) => points.iter().find(|p| p.key == k),
        None => points.first(),
    }) else {
        return String::new();
    };
    if points.len() < 2 || base.n < 2 {
        return String::new();
    }
    let mut md = format!(
        "\n## Paired differences from `{}`\n\nReplicate r of every point shares its seed \
         (common random numbers), so each difference below is the mean ± 95 % CI of the \
         per-replicate differences point − baseline.\n\n| point |",
        base.key
    );
    for &i in shown {
        md.push_str(&format!(" Δ {} |", METRICS[i].label));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(shown.len()));
    md.push('\n');
    for p in points.iter().filter(|p| p.key != base.key) {
        md.push_str(&format!("| {} |", p.key));
        for &i in shown {
            let d: Vec<f64> = p.samples[i]
                .iter()
                .zip(&base.samples[i])
                .map(|(a, b)| a - b)
                .filter(|x| x.is_finite())
                .collect();
            md.push_str(&format!(" {} |", pm(mean_ci(&d))));
        }
        md.push('\n');
    }
    md
}

/// The sweep's axes as a short list for legends (`α / β / γ`: the last path segment of each).
fn axis_names(d: &Data<'_>) -> String {
    d.axis_paths
        .iter()
        .map(|p| p.rsplit('.').next().unwrap_or(p).to_string())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// An axis path as words with its unit, for axis labels (`cache.capacity_experts` →
/// "cache capacity (experts per layer)"); paths not listed become their words.
pub fn axis_words(path: &str) -> String {
    let known = [
        (
            "cache.capacity_experts",
            "cache capacity (experts per layer)",
        ),
        ("cache.capacity_bytes", "cache capacity (bytes)"),
        (
            "cache.budget_fraction",
            "cache budget (fraction of the compute tier)",
        ),
        ("router.lambda", "residency bonus λ (logit scales)"),
        ("router.gamma", "residency weight γ"),
        ("router.alpha", "relevance weight α"),
        ("router.beta", "history weight β"),
        ("router.decay", "history decay per token"),
        ("router.hot_bonus", "bonus of a resident expert M"),
        ("router.keep", "standard experts kept J"),
        ("router.rank_limit", "rank limit"),
        ("prefetch.count", "experts prefetched per layer step"),
        ("prefetch.decay", "history decay per observation"),
        ("trace.decode_tokens", "decode tokens per request"),
        ("trace.prefill_tokens", "prompt tokens per request"),
        ("trace.requests", "requests"),
        ("scenario.arrival.rate_per_s", "arrival rate (requests/s)"),
        ("quality.samples", "quality samples"),
    ];
    if let Some((_, words)) = known.iter().find(|(p, _)| *p == path) {
        return words.to_string();
    }
    let last = path.rsplit('.').next().unwrap_or(path);
    let units = [
        ("_bytes", " (bytes)"),
        ("_ns", " (ns)"),
        ("_per_s", " (per second)"),
        ("_pct", " (%)"),
    ];
    for (suffix, unit) in units {
        if let Some(stem) = last.strip_suffix(suffix) {
            return format!("{}{unit}", stem.replace('_', " "));
        }
    }
    last.replace('_', " ")
}

/// The values metric `name` can take, in its plotted unit.
fn physical_range(name: &str) -> (f64, f64) {
    match value_check(name) {
        ValueCheck::Fraction => (0.0, 1.0),
        _ if name.starts_with("output_cosine") => (-1.0, 1.0),
        _ if name == "weight_sqnr_db" => (f64::NEG_INFINITY, f64::INFINITY),
        _ => (0.0, f64::INFINITY),
    }
}

/// Lines of metric `m` (mean, CI band) against axis `a` (values `xs`), one per combination of
/// the other axes; `f` maps (mean, ci) to the plotted (y, half-width).
fn lines_against(
    d: &Data<'_>,
    a: usize,
    xs: &[f64],
    m: usize,
    f: impl Fn(f64, f64) -> (f64, f64),
) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    for (p, &x) in d.points.iter().zip(xs) {
        let s = Series::named(&mut series, &others(d, p, &[a]), false);
        let (y, ci) = f(p.stats[m].0, p.stats[m].1);
        s.points.push((x, y));
        if ci.is_finite() {
            // A confidence band never leaves the metric's physical range (a hit rate above 1,
            // a negative latency).
            let (lo, hi) = physical_range(METRICS[m].name);
            s.band.push((x, (y - ci).max(lo), (y + ci).min(hi)));
        }
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        s.band.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    series
}

/// Draws one kind; returns the stems written.
fn draw(d: &Data<'_>, kind: PlotKind, plots_dir: &Path) -> Result<Vec<String>> {
    let title = &d.title;
    let on = &d.on;
    let mut written = Vec::new();
    let present = |m: &str| d.present.contains(&metric_index(m));
    match kind {
        PlotKind::MetricVsAxis => {
            let chart_metrics: Vec<usize> = [
                "hit_rate",
                "decode_tokens_per_s",
                "token_latency_p50_ns",
                "token_latency_p99_ns",
                "energy_per_decode_token_mj",
                "output_rel_l2_mean",
            ]
            .iter()
            .map(|m| metric_index(m))
            .filter(|i| d.present.contains(i))
            .collect();
            for (a, axis) in d.axis_paths.iter().enumerate() {
                if d.chart_axes.as_ref().is_some_and(|c| !c.contains(axis)) {
                    continue;
                }
                let Some(xs) = numeric(d, a) else { continue };
                for &m in &chart_metrics {
                    let stem = format!("{}-vs-{}", slug(METRICS[m].name), slug(axis));
                    XyChart {
                        title: format!("{title}: {} vs {}{on}", METRICS[m].label, short(axis)),
                        x_label: axis_words(axis),
                        y_label: METRICS[m].label.to_string(),
                        series: lines_against(d, a, &xs, m, |y, c| (y, c)),
                        ..Default::default()
                    }
                    .write(&plots_dir.join(&stem))?;
                    written.push(stem);
                }
            }
        }
        PlotKind::MissRatio => {
            let a = capacity_axis(&d.axis_paths).expect("checked by unusable");
            let xs = numeric(d, a).ok_or_else(|| {
                bad(
                    d.dir,
                    format!("miss-ratio: axis {} is not numeric", d.axis_paths[a]),
                )
            })?;
            let stem = "miss-ratio".to_string();
            XyChart {
                title: format!("{title}: miss-ratio curves{on}"),
                x_label: axis_words(&d.axis_paths[a]),
                y_label: "decode miss ratio (1 − hit rate)".into(),
                series: lines_against(d, a, &xs, metric_index("hit_rate"), |y, c| (1.0 - y, c)),
                ..Default::default()
            }
            .write(&plots_dir.join(&stem))?;
            written.push(stem);
        }
        PlotKind::HardwareBars => {
            let a = d
                .axis_paths
                .iter()
                .position(|p| p == "hardware.profile")
                .expect("checked by unusable");
            // Axes that vary with the profile (zipped with it) name the category too.
            let mut categories: Vec<String> = Vec::new();
            let mut cat_of = Vec::new();
            for p in &d.points {
                let c = if p.model.is_empty() {
                    p.axes[a].clone()
                } else {
                    format!("{} ({})", p.axes[a], p.model)
                };
                let i = categories.iter().position(|x| *x == c).unwrap_or_else(|| {
                    categories.push(c);
                    categories.len() - 1
                });
                cat_of.push(i);
            }
            // Axes that the profile determines (zipped with it) are part of the category.
            let skip: Vec<usize> = (0..d.axis_paths.len())
                .filter(|&b| {
                    b == a
                        || d.points.iter().all(|p| {
                            d.points
                                .iter()
                                .filter(|q| q.axes[a] == p.axes[a])
                                .all(|q| q.axes[b] == p.axes[b])
                        })
                })
                .collect();
            let mut names: Vec<String> = Vec::new();
            for p in &d.points {
                let n = others(d, p, &skip);
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            let panel = |m: &str, y_label: &str| {
                let m = metric_index(m);
                let mut series = Vec::new();
                let mut errors = Vec::new();
                for n in &names {
                    let mut v = vec![f64::NAN; categories.len()];
                    let mut e = vec![f64::NAN; categories.len()];
                    for (p, &c) in d.points.iter().zip(&cat_of) {
                        if others(d, p, &skip) == *n {
                            v[c] = p.stats[m].0;
                            e[c] = p.stats[m].1;
                        }
                    }
                    series.push((n.clone(), v));
                    errors.push(e);
                }
                BarPanel {
                    y_label: y_label.into(),
                    series,
                    errors,
                    stacked: false,
                    value_labels: true,
                }
            };
            let stem = "hardware-bars".to_string();
            let panels = vec![
                panel("decode_tokens_per_s", "decode throughput (tokens/s)"),
                panel("energy_per_decode_token_mj", "energy per decode token (mJ)"),
            ];
            BarChart {
                title: format!("{title}: decode throughput and energy per token by device"),
                categories,
                x_label: "hardware profile (model)".into(),
                panels,
            }
            .write(&plots_dir.join(&stem))?;
            written.push(stem);
        }
        PlotKind::Pareto => {
            if !(present("output_rel_l2_mean") && present("decode_tokens_per_s")) {
                return Ok(written);
            }
            let (q, t) = (
                metric_index("output_rel_l2_mean"),
                metric_index("decode_tokens_per_s"),
            );
            let pts: Vec<(f64, f64, String)> = d
                .points
                .iter()
                .filter(|p| p.stats[q].0.is_finite() && p.stats[t].0.is_finite())
                .map(|p| (p.stats[t].0, p.stats[q].0, point_label(d, p)))
                .collect();
            let mut order: Vec<usize> = (0..pts.len()).collect();
            order.sort_by(|&a, &b| {
                pts[b]
                    .0
                    .total_cmp(&pts[a].0)
                    .then(pts[a].1.total_cmp(&pts[b].1))
            });
            let mut front = Vec::new();
            let mut on_front = vec![false; pts.len()];
            let mut best = f64::INFINITY;
            for i in order {
                if pts[i].1 < best {
                    best = pts[i].1;
                    front.push((pts[i].0, pts[i].1));
                    on_front[i] = true;
                }
            }
            front.sort_by(|a, b| a.0.total_cmp(&b.0));
            // The front is a dashed guide under the points; with many points only those on
            // the front are labelled, with their axis values.
            let mut series = vec![Series {
                name: "Pareto front".into(),
                points: front,
                guide: true,
                ..Default::default()
            }];
            if pts.len() <= 10 {
                series.extend(pts.iter().map(|(x, y, k)| Series {
                    name: k.clone(),
                    points: vec![(*x, *y)],
                    scatter: true,
                    ..Default::default()
                }));
            } else {
                series.push(Series {
                    name: format!("points ({}; labelled on the front)", axis_names(d)),
                    points: pts.iter().map(|&(x, y, _)| (x, y)).collect(),
                    scatter: true,
                    labels: pts
                        .iter()
                        .zip(&on_front)
                        .map(|((_, _, k), &f)| if f { k.clone() } else { String::new() })
                        .collect(),
                    ..Default::default()
                });
            }
            let stem = "quality-vs-throughput".to_string();
            XyChart {
                title: format!("{title}: output error vs decode throughput{on}"),
                x_label: "decode throughput (tokens/s)".into(),
                y_label: "output relative L2 error (lower is better)".into(),
                series,
                ..Default::default()
            }
            .write(&plots_dir.join(&stem))?;
            written.push(stem);
        }
        PlotKind::HitVsThroughput => {
            let (h, t) = (
                metric_index("hit_rate"),
                metric_index("decode_tokens_per_s"),
            );
            let series = d
                .points
                .iter()
                .map(|p| Series {
                    name: point_label(d, p),
                    points: vec![(p.stats[t].0, p.stats[h].0)],
                    scatter: true,
                    ..Default::default()
                })
                .collect();
            let stem = "hit-rate-vs-throughput".to_string();
            XyChart {
                title: format!("{title}: hit rate vs decode throughput{on}"),
                x_label: "decode throughput (tokens/s)".into(),
                y_label: "expert hit rate (decode)".into(),
                series,
                ..Default::default()
            }
            .write(&plots_dir.join(&stem))?;
            written.push(stem);
        }
        PlotKind::LatencyBreakdown => {
            let parts = [
                ("decode_compute_ns_per_token", "compute"),
                ("decode_routing_ns_per_token", "routing"),
                ("decode_stall_ns_per_token", "expert-load stall"),
            ];
            let series = parts
                .iter()
                .map(|(m, name)| {
                    let m = metric_index(m);
                    (
                        name.to_string(),
                        d.points.iter().map(|p| p.stats[m].0).collect(),
                    )
                })
                .collect();
            let stem = "latency-breakdown".to_string();
            BarChart {
                title: format!("{title}: where a decode token's time goes{on}"),
                categories: d.points.iter().map(|p| point_label(d, p)).collect(),
                x_label: if d.axis_paths.is_empty() {
                    "point".into()
                } else {
                    d.axis_paths.join(" / ")
                },
                panels: vec![BarPanel {
                    y_label: "time per decode token (ms)".into(),
                    series,
                    errors: Vec::new(),
                    stacked: true,
                    value_labels: false,
                }],
            }
            .write(&plots_dir.join(&stem))?;
            written.push(stem);
        }
        PlotKind::LatencyCdf => {
            let quantiles = read_latency(d.dir)?;
            let series = d
                .points
                .iter()
                .filter_map(|p| {
                    let q = quantiles.iter().find(|(k, _)| *k == p.key)?;
                    Some(Series {
                        name: point_label(d, p),
                        points: q
                            .1
                            .iter()
                            .enumerate()
                            .map(|(pct, &ns)| (ns * 1e-6, pct as f64 / 100.0))
                            .collect(),
                        ..Default::default()
                    })
                })
                .collect();
            let stem = "latency-cdf".to_string();
            XyChart {
                title: format!("{title}: decode-token latency CDF{on}"),
                x_label: "decode-token latency (ms)".into(),
                y_label: "share of tokens at or below".into(),
                series,
                ..Default::default()
            }
            .write(&plots_dir.join(&stem))?;
            written.push(stem);
        }
        PlotKind::PopularityHeatmap => {
            let keys: Vec<&str> = d.points.iter().map(|p| p.key.as_str()).collect();
            // Points with identical selections (a standard-router sweep over caches) share one map.
            let mut grids: Vec<(String, usize, usize, Vec<f64>, usize)> = Vec::new();
            for (key, layers, experts, counts) in read_popularity(d.dir, &keys)? {
                match grids
                    .iter_mut()
                    .find(|g| g.1 == layers && g.2 == experts && g.3 == counts)
                {
                    Some(g) => g.4 += 1,
                    None => grids.push((key, layers, experts, counts, 1)),
                }
            }
            for (key, layers, experts, counts, same) in grids {
                let mut shares = vec![0.0; counts.len()];
                for l in 0..layers {
                    let row = &counts[l * experts..(l + 1) * experts];
                    let total: f64 = row.iter().sum();
                    for (e, &c) in row.iter().enumerate() {
                        shares[l * experts + e] = if total > 0.0 { c / total } else { 0.0 };
                    }
                }
                let p = d.points.iter().find(|p| p.key == key).expect("listed");
                let stem = if d.points.len() == 1 || same == d.points.len() {
                    "popularity".to_string()
                } else {
                    format!("popularity-{}", slug(&point_label(d, p)))
                };
                let which = if same == d.points.len() && same > 1 {
                    "every point (identical selections)".to_string()
                } else if same > 1 {
                    format!(
                        "{} and {} more with identical selections",
                        point_label(d, p),
                        same - 1
                    )
                } else {
                    point_label(d, p)
                };
                Heatmap {
                    title: format!("{title}: share of each layer's selections, {which}{on}"),
                    x_label: "expert".into(),
                    y_label: "MoE layer".into(),
                    value_label: "share of the layer's selections".into(),
                    values: shares,
                    rows: layers,
                    cols: experts,
                }
                .write(&plots_dir.join(&stem))?;
                written.push(stem);
            }
        }
        PlotKind::SqnrVsBits => {
            let (x, y) = (
                metric_index("plan_bits_per_weight_mean"),
                metric_index("weight_sqnr_db"),
            );
            let mut series: Vec<Series> = Vec::new();
            for p in &d.points {
                let family = p
                    .format
                    .parse::<crate::quant::WeightFormat>()
                    .map(|f| f.family().to_string())
                    .unwrap_or_else(|_| p.format.clone());
                Series::named(&mut series, &family, false)
                    .points
                    .push((p.stats[x].0, p.stats[y].0));
            }
            for s in &mut series {
                s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
            let stem = "sqnr-vs-bits".to_string();
            XyChart {
                title: format!("{title}: proxy weight SQNR vs bits per weight (proxy experts){on}"),
                x_label: "bits per weight".into(),
                y_label: "weight SQNR (dB, higher is better)".into(),
                series,
                ..Default::default()
            }
            .write(&plots_dir.join(&stem))?;
            written.push(stem);
        }
        PlotKind::SeedTable => {}
    }
    Ok(written)
}

/// Per point key: the mean over replicates of each percentile (0..=100) of decode-token
/// latency, in ns, from `latency.csv`.
fn read_latency(dir: &Path) -> Result<Vec<(String, Vec<f64>)>> {
    let path = dir.join("latency.csv");
    let mut rd = csv::Reader::from_path(&path).map_err(|e| bad(&path, e.to_string()))?;
    let mut out: Vec<(String, Vec<f64>, Vec<u32>)> = Vec::new();
    for rec in rd.records() {
        let rec = rec.map_err(|e| bad(&path, e.to_string()))?;
        let field = |i: usize| rec.get(i).unwrap_or_default();
        let pct: usize = field(2)
            .parse()
            .ok()
            .filter(|&q: &usize| q <= 100)
            .ok_or_else(|| bad(&path, format!("bad percentile `{}`", field(2))))?;
        let ns: f64 = field(3)
            .parse()
            .map_err(|_| bad(&path, format!("bad latency `{}`", field(3))))?;
        let key = field(0);
        if out.last().is_none_or(|l| l.0 != key) {
            out.push((key.to_string(), vec![0.0; 101], vec![0; 101]));
        }
        let l = out.last_mut().expect("pushed");
        l.1[pct] += ns;
        l.2[pct] += 1;
    }
    Ok(out
        .into_iter()
        .map(|(k, sums, counts)| {
            let means = sums
                .iter()
                .zip(&counts)
                .map(|(&s, &c)| if c > 0 { s / c as f64 } else { f64::NAN })
                .collect();
            (k, means)
        })
        .collect())
}

/// For each of `keys` found in `popularity.csv`: (key, layers, experts, selections summed over
/// replicates, layer-major).
/// One point's selections: key, layers, experts and the layer-major grid.
type Popularity = (String, usize, usize, Vec<f64>);

fn read_popularity(dir: &Path, keys: &[&str]) -> Result<Vec<Popularity>> {
    let path = dir.join("popularity.csv");
    let mut rd = csv::Reader::from_path(&path).map_err(|e| bad(&path, e.to_string()))?;
    type Cells = Vec<(usize, usize, f64)>;
    let mut out: Vec<(String, Cells)> = Vec::new();
    for rec in rd.records() {
        let rec = rec.map_err(|e| bad(&path, e.to_string()))?;
        let key = rec.get(0).unwrap_or_default();
        if !keys.contains(&key) {
            continue;
        }
        let n = |i: usize| -> Result<usize> {
            let f = rec.get(i).unwrap_or_default();
            f.parse()
                .map_err(|_| bad(&path, format!("bad number `{f}` in column {}", i + 1)))
        };
        let (l, e, c) = (n(2)?, n(3)?, n(4)?);
        if l >= 1 << 16 || e >= 1 << 16 {
            return Err(bad(
                &path,
                format!("layer {l} or expert {e} is beyond 65535: not a moesim popularity table"),
            ));
        }
        if out.last().is_none_or(|o| o.0 != key) {
            out.push((key.to_string(), Vec::new()));
        }
        out.last_mut().expect("pushed").1.push((l, e, c as f64));
    }
    Ok(out
        .into_iter()
        .map(|(k, cells)| {
            let layers = cells.iter().map(|c| c.0 + 1).max().unwrap_or(0);
            let experts = cells.iter().map(|c| c.1 + 1).max().unwrap_or(0);
            let mut grid = vec![0.0; layers * experts];
            for (l, e, c) in cells {
                grid[l * experts + e] += c;
            }
            (k, layers, experts, grid)
        })
        .collect())
}

/// The seed's §6.3 evaluation table (doc 04; `../shared/reference/seeds.md`, entry A7), as
/// printed there: (metric, standard, memory-aware, delta).
const SEED_TABLE: [(&str, &str, &str, &str); 5] = [
    ("Expert utilization", "62%", "78%", "+16%"),
    ("Cache hit rate", "34%", "71%", "+37%"),
    ("Average load latency", "12.3ms", "4.1ms", "-67%"),
    ("Task accuracy (MMLU)", "45.3%", "44.8%", "-0.5%"),
    ("Token throughput", "1200/s", "1850/s", "+54%"),
];

/// The seed table's shape with measured numbers: the standard point against each
/// memory-aware point, then a sentence comparing them with the seed's figures.
fn seed_table(d: &Data<'_>) -> String {
    let Some(base) = d.points.iter().find(|p| p.router == "standard") else {
        return "\n## Seed §6.3 table\n\nNo point uses the standard router: nothing to compare against.\n"
            .into();
    };
    let aware: Vec<&PointSummary> = d
        .points
        .iter()
        .filter(|p| p.router == "memory-aware")
        .collect();
    if aware.is_empty() {
        return "\n## Seed §6.3 table\n\nNo point uses the memory-aware router.\n".into();
    }
    let rows: [(&str, &str, f64, bool); 6] = [
        (
            "utilisation",
            "Expert utilisation (share of (layer, expert) pairs with ≥ 1 % of the layer's selections)",
            100.0,
            true,
        ),
        ("hit_rate", "Cache hit rate (decode)", 100.0, true),
        (
            "decode_stall_ns_per_token",
            "Expert-load stall per decode token (ms)",
            1.0,
            false,
        ),
        (
            "output_rel_l2_mean",
            "Output error (relative L2 of the MoE output, proxy experts)",
            1.0,
            false,
        ),
        (
            "topk_agreement",
            "Top-k agreement with standard routing",
            100.0,
            true,
        ),
        (
            "decode_tokens_per_s",
            "Decode throughput (tokens/s)",
            1.0,
            false,
        ),
    ];
    let mut s = format!(
        "\n## Seed §6.3 table, measured\n\nThe shape of the seed's table (doc 04 §6.3) for {} on {}; mean ± 95 % CI over {} replicate(s).\n\n| metric | standard |",
        base.model, base.profile, base.n
    );
    for p in &aware {
        s.push_str(&format!(" {} | change |", point_label(d, p)));
    }
    s.push_str("\n|---|---|");
    s.push_str(&"---|---|".repeat(aware.len()));
    s.push('\n');
    let fmt = |(m, c): (f64, f64), pct: bool| {
        if pct {
            if c.is_finite() {
                format!("{:.1} % ± {:.1}", m * 100.0, c * 100.0)
            } else {
                format!("{:.1} %", m * 100.0)
            }
        } else {
            pm((m, c))
        }
    };
    for (name, label, _, pct) in rows {
        let m = metric_index(name);
        s.push_str(&format!("| {label} | {} |", fmt(base.stats[m], pct)));
        for p in &aware {
            let (a, b) = (base.stats[m].0, p.stats[m].0);
            let change = if pct {
                format!("{:+.1} points", (b - a) * 100.0)
            } else if a != 0.0 && a.is_finite() && b.is_finite() {
                format!("{:+.1} %", (b / a - 1.0) * 100.0)
            } else {
                "-".into()
            };
            s.push_str(&format!(" {} | {change} |", fmt(p.stats[m], pct)));
        }
        s.push('\n');
    }
    s.push_str("\nThe seed's table, for comparison (no model, workload, cache size, bonus or hardware given):\n\n| metric | standard | memory-aware | delta |\n|---|---|---|---|\n");
    for (m, a, b, c) in SEED_TABLE {
        s.push_str(&format!("| {m} | {a} | {b} | {c} |\n"));
    }
    let hit = metric_index("hit_rate");
    let tps = metric_index("decode_tokens_per_s");
    let err = metric_index("output_rel_l2_mean");
    let agree = metric_index("topk_agreement");
    let best = aware
        .iter()
        .max_by(|a, b| a.stats[tps].0.total_cmp(&b.stats[tps].0))
        .expect("non-empty");
    s.push_str(&format!(
        "\nMeasured here: the hit rate goes from {:.1} % to {:.1} % with {} (the seed claims 34 % → 71 %), decode throughput from {} to {} tokens/s ({:+.0} %; the seed claims +54 %), while top-k agreement with standard routing falls to {:.1} % and the output error rises from {} to {} (the seed claims −0.5 % MMLU; moesim measures output error on proxy experts, not task accuracy). The seed's figures come with no method (seeds.md A7), so only their direction can be compared.\n",
        base.stats[hit].0 * 100.0,
        best.stats[hit].0 * 100.0,
        point_label(d, best),
        sig(base.stats[tps].0),
        sig(best.stats[tps].0),
        (best.stats[tps].0 / base.stats[tps].0 - 1.0) * 100.0,
        best.stats[agree].0 * 100.0,
        sig(base.stats[err].0),
        sig(best.stats[err].0),
    ));
    s
}
