//! The one owner of every output table's columns: `metrics.csv` of a single run and
//! `results.csv` of a sweep (the same row, after the point's key and axis values), and the side
//! tables `latency.csv` and `popularity.csv`. Writers build the rows here, and the readers of
//! the summary and the plots look columns up here, where a missing column is an error naming
//! it.

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, InputError, Result};
use crate::experiment::{Experiment, Outcome};
use crate::quality::OutputQuality;
use crate::report::plots::{Popularity, SideTables};
use crate::sim::SimReport;

/// The row of `metrics.csv`: what was run, then what was measured.
#[derive(Debug, Serialize)]
pub struct MetricsRow<'a> {
    /// The results schema (1).
    pub schema_version: u32,
    /// The experiment's name.
    pub name: &'a str,
    /// The hardware profile.
    pub profile: &'a str,
    /// The model.
    pub model: &'a str,
    /// The routed experts' storage format.
    pub format: String,
    /// The router.
    pub router: &'a str,
    /// The router's parameters (`name=value` pairs).
    pub router_params: String,
    /// The eviction policy (as on the command line).
    pub policy: String,
    /// `per-layer` or `shared` caches.
    pub scope: String,
    /// Bytes of all caches.
    pub cache_bytes_total: u64,
    /// The prefetch strategy.
    pub prefetch: &'a str,
    /// The run's seed.
    pub seed: u64,
    /// Whether the trace had top-k ids only.
    pub restricted_trace: bool,
    /// The precision planner.
    pub precision_allocator: &'a str,
    /// Its parameters.
    pub precision_params: String,
    /// The plan's census of formats.
    pub plan_formats: String,
    /// Mean bits per routed-expert weight of the plan.
    pub plan_bits_per_weight_mean: f64,
    /// The same, weighted by usage.
    pub plan_bits_per_weight_usage: f64,
    /// Whether precision changes at run time.
    pub dynamic_precision: bool,
    /// Low precision on miss: the gate-weight threshold.
    pub low_on_miss_gate_below: Option<f64>,
    /// Where experts run (`placement.mode`).
    pub placement_mode: &'static str,
    /// `layers` mode: the blocks whose experts run in place (resolved when given as `"fit"`).
    pub in_place_layers: Option<u32>,
    /// What the simulation measured.
    #[serde(flatten)]
    pub report: &'a SimReport,
    /// Output quality through proxy experts (empty when not measured).
    #[serde(flatten)]
    pub output: OutputQuality,
    /// Why output quality is missing, when it is.
    pub quality_note: &'a str,
}

/// The `metrics.csv` (and `results.csv`) row of a run of `exp`.
pub fn metrics_row<'a>(exp: &'a Experiment, o: &'a Outcome) -> MetricsRow<'a> {
    let opts = &exp.options;
    MetricsRow {
        schema_version: 1,
        name: &exp.resolved.name,
        profile: &exp.profile.name,
        model: &exp.model.name,
        format: opts.format.to_string(),
        router: opts.router.name(),
        router_params: opts.router.params(),
        policy: opts.policy.to_string(),
        scope: scope_name(opts.scope).to_string(),
        cache_bytes_total: o.setup.cache_bytes * o.setup.n_caches as u64,
        prefetch: opts.prefetch.name(),
        seed: opts.seed,
        restricted_trace: o.restricted,
        precision_allocator: exp.allocator.name(),
        precision_params: exp.allocator.params(),
        plan_formats: o.plan.census(),
        plan_bits_per_weight_mean: o.plan.mean_bits(),
        plan_bits_per_weight_usage: o.plan_bits_weighted,
        dynamic_precision: opts.precision.dynamic.is_some(),
        low_on_miss_gate_below: opts.precision.low_on_miss.as_ref().map(|l| l.gate_below),
        placement_mode: opts.placement.mode.name(),
        in_place_layers: o.setup.in_place.as_ref().and_then(|ip| ip.in_place_layers),
        report: &o.report,
        output: o.output_quality.unwrap_or_else(OutputQuality::missing),
        quality_note: o.quality_note.as_deref().unwrap_or(""),
    }
}

/// The scope's name in tables.
pub fn scope_name(scope: crate::cache::replay::Scope) -> &'static str {
    match scope {
        crate::cache::replay::Scope::PerLayer => "per-layer",
        crate::cache::replay::Scope::Shared => "shared",
    }
}

/// A sweep row: the point, its axis values, then the metrics.
#[derive(Debug, Serialize)]
pub struct SweepRow<'a> {
    /// The point's key.
    pub point: &'a str,
    /// The replicate.
    pub replicate: u32,
    /// The axis values, as `axis.PATH` columns.
    #[serde(flatten)]
    pub axes: AxisColumns<'a>,
    /// The run's metrics.
    #[serde(flatten)]
    pub metrics: MetricsRow<'a>,
}

/// A point's axis values, serialized as `axis.PATH` columns.
#[derive(Debug)]
pub struct AxisColumns<'a>(pub &'a [(String, String)]);

impl Serialize for AxisColumns<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(&format!("axis.{k}"), v)?;
        }
        m.end()
    }
}

/// A row of `latency.csv`: one percentile of a run's decode-token latencies.
#[derive(Debug, Serialize)]
pub struct LatencyRow<'a> {
    /// The point's key.
    pub point: &'a str,
    /// The replicate.
    pub replicate: u32,
    /// 0 to 100.
    pub percentile: u32,
    /// That percentile of the run's decode-token latencies.
    pub token_latency_ns: u64,
}

/// Percentiles 0 (the fastest token) to 100 (the slowest) of `latencies_ns`.
pub fn latency_rows<'a>(key: &'a str, replicate: u32, latencies_ns: &[u64]) -> Vec<LatencyRow<'a>> {
    let mut sorted = latencies_ns.to_vec();
    sorted.sort_unstable();
    (0..=100)
        .map(|q| LatencyRow {
            point: key,
            replicate,
            percentile: q,
            token_latency_ns: crate::stats::quantile(&sorted, q as f64 / 100.0),
        })
        .collect()
}

/// A row of `popularity.csv`: how often the router picked one expert of one layer.
#[derive(Debug, Serialize)]
pub struct PopularityRow<'a> {
    /// The point's key.
    pub point: &'a str,
    /// The replicate.
    pub replicate: u32,
    /// The MoE layer.
    pub layer: u32,
    /// The expert.
    pub expert: u32,
    /// Times the router picked it (prefill and decode).
    pub selections: u64,
}

/// The `popularity.csv` rows of a run: selections per (layer, expert).
pub fn popularity_rows<'a>(key: &'a str, replicate: u32, o: &Outcome) -> Vec<PopularityRow<'a>> {
    let e = o.setup.experts as usize;
    o.report
        .expert_selections
        .iter()
        .enumerate()
        .map(|(i, &n)| PopularityRow {
            point: key,
            replicate,
            layer: (i / e) as u32,
            expert: (i % e) as u32,
            selections: n,
        })
        .collect()
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Input(InputError::new(path.display().to_string(), reason.into()))
}

/// A column of a table read back, looked up by name: a column the reader needs and the file
/// lacks is an error naming it, never a silent default.
pub fn require_column(path: &Path, headers: &csv::StringRecord, name: &str) -> Result<usize> {
    headers.iter().position(|h| h == name).ok_or_else(|| {
        bad(
            path,
            format!(
                "no `{name}` column: written by another version of moesim, or not a moesim table"
            ),
        )
    })
}

/// The side tables of a sweep's report directory, read from disk when a plot asks.
#[derive(Debug)]
pub struct DirTables<'a> {
    /// The report directory.
    pub dir: &'a Path,
}

impl SideTables for DirTables<'_> {
    fn has_latency(&self) -> bool {
        self.dir.join("latency.csv").exists()
    }

    fn has_popularity(&self) -> bool {
        self.dir.join("popularity.csv").exists()
    }

    fn latency(&self) -> Result<Vec<(String, Vec<f64>)>> {
        read_latency(self.dir)
    }

    fn popularity(&self, keys: &[&str]) -> Result<Vec<Popularity>> {
        read_popularity(self.dir, keys)
    }
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
