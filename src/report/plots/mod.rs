//! The plots of a sweep report, one file per [`PlotKind`] behind one [`draw`] dispatch. Each
//! draws from [`PlotData`] (the summarised points and, on request, the per-run tables) into
//! PNG and SVG files and returns their stems.
//!
//! Add a plot: (1) a `PlotKind` variant in `report/kind.rs` (its name, and in `unusable` the
//! axes it needs); (2) a file here with `draw`; (3) its arm in [`draw`] (the compiler points
//! there); (4) a line in GUIDE.md's list of plots.

mod hardware_bars;
mod hit_vs_throughput;
mod latency_breakdown;
mod latency_cdf;
mod metric_vs_axis;
mod miss_ratio;
mod pareto;
mod placement;
mod popularity_heatmap;
mod sqnr_vs_bits;

use std::path::Path;

use super::kind::{PlotKind, capacity_axis};
use super::metrics::{METRICS, PointSummary, metric_index, physical_range};
use super::plot::Series;
use crate::error::Result;

/// One point's selections: key, layers, experts and the layer-major grid of counts summed
/// over replicates.
pub type Popularity = (String, usize, usize, Vec<f64>);

/// The per-run tables beside `results.csv`, read only when a plot needs them.
pub trait SideTables {
    /// Whether `latency.csv` exists.
    fn has_latency(&self) -> bool;
    /// Whether `popularity.csv` exists.
    fn has_popularity(&self) -> bool;
    /// Per point key, the mean over replicates of each percentile (0..=100) of decode-token
    /// latency, in ns.
    fn latency(&self) -> Result<Vec<(String, Vec<f64>)>>;
    /// The selections of each of `keys` found in `popularity.csv`.
    fn popularity(&self, keys: &[&str]) -> Result<Vec<Popularity>>;
}

/// What the plots are drawn from.
#[allow(missing_debug_implementations)]
pub struct PlotData<'a> {
    /// The report directory (named in messages).
    pub dir: &'a Path,
    /// The per-run tables beside `results.csv`, read when a plot needs them.
    pub tables: &'a dyn SideTables,
    /// The experiment's name.
    pub title: String,
    /// ` on PROFILE` (or ` on several profiles`) for titles.
    pub on: String,
    /// The sweep's axes, as dotted paths.
    pub axis_paths: Vec<String>,
    /// The axes of `metric-vs-axis` charts (None: every numeric axis).
    pub chart_axes: Option<Vec<String>>,
    /// The summarised points, in sweep order.
    pub points: Vec<PointSummary>,
    /// The metrics (indices in `METRICS`) some point measured.
    pub present: Vec<usize>,
}

/// Draws one kind (a table kind draws nothing); returns the file stems written.
pub fn draw(d: &PlotData<'_>, kind: PlotKind, plots_dir: &Path) -> Result<Vec<String>> {
    match kind {
        PlotKind::MetricVsAxis => metric_vs_axis::draw(d, plots_dir),
        PlotKind::Pareto => pareto::draw(d, plots_dir),
        PlotKind::MissRatio => miss_ratio::draw(d, plots_dir),
        PlotKind::HardwareBars => hardware_bars::draw(d, plots_dir),
        PlotKind::PopularityHeatmap => popularity_heatmap::draw(d, plots_dir),
        PlotKind::LatencyBreakdown => latency_breakdown::draw(d, plots_dir),
        PlotKind::LatencyCdf => latency_cdf::draw(d, plots_dir),
        PlotKind::SqnrVsBits => sqnr_vs_bits::draw(d, plots_dir),
        PlotKind::HitVsThroughput => hit_vs_throughput::draw(d, plots_dir),
        PlotKind::Placement => placement::draw(d, plots_dir),
        PlotKind::SeedTable => Ok(Vec::new()),
    }
}

/// The plots chosen from the axes and the measured columns.
pub fn automatic(d: &PlotData<'_>) -> Vec<PlotKind> {
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
    if PlotKind::Placement.unusable(&d.axis_paths).is_none() {
        k.push(PlotKind::Placement);
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
    if n <= 8 && d.tables.has_latency() {
        k.push(PlotKind::LatencyCdf);
    }
    if n <= 4 && d.tables.has_popularity() {
        k.push(PlotKind::PopularityHeatmap);
    }
    if !numeric_axis && n >= 2 && !k.contains(&PlotKind::HardwareBars) {
        k.push(PlotKind::HitVsThroughput);
    }
    k
}

/// Axis `a`'s values as numbers, if every point has a number and there are two or more.
pub fn numeric(d: &PlotData<'_>, a: usize) -> Option<Vec<f64>> {
    let xs: Option<Vec<f64>> = d.points.iter().map(|p| p.axes[a].parse().ok()).collect();
    let xs = xs?;
    let mut distinct = xs.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    (distinct.len() >= 2).then_some(xs)
}

/// `s` as a file-name stem: alphanumerics, runs of anything else as one `-`.
pub fn slug(s: &str) -> String {
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
pub fn short(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// `path=value, ...` of a point's axes other than `skip`.
pub fn others(d: &PlotData<'_>, p: &PointSummary, skip: &[usize]) -> String {
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
pub fn point_label(d: &PlotData<'_>, p: &PointSummary) -> String {
    if d.axis_paths.is_empty() {
        p.key.clone()
    } else {
        p.axes.join(" / ")
    }
}

/// The sweep's axes as a short list for legends (`α / β / γ`: the last path segment of each).
pub fn axis_names(d: &PlotData<'_>) -> String {
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

/// Lines of metric `m` (mean, CI band) against axis `a` (values `xs`), one per combination of
/// the other axes; `f` maps (mean, ci) to the plotted (y, half-width).
pub fn lines_against(
    d: &PlotData<'_>,
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
