//! What a sweep report may hold: the [`PlotKind`]s (plots and tables, chosen by name in an
//! experiment's `[report]` section or from the axes) and the [`ReportSection`] itself.
//!
//! **Architecture Invariant:** this module is a leaf: the experiment spec embeds it, and the
//! report receives it as an argument; nothing here reads a file or knows of experiments.

use serde::{Deserialize, Serialize};

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
    /// Decode and prefill throughput against `placement.in_place_layers`, with the sweep's other
    /// placements as levels on the same axes.
    Placement,
    /// The shape of the seed's §6.3 table, standard against memory-aware routing (a table in
    /// summary.md, not a plot).
    SeedTable,
}

impl PlotKind {
    /// Every kind.
    pub const ALL: [PlotKind; 11] = [
        PlotKind::MetricVsAxis,
        PlotKind::Pareto,
        PlotKind::MissRatio,
        PlotKind::HardwareBars,
        PlotKind::PopularityHeatmap,
        PlotKind::LatencyBreakdown,
        PlotKind::LatencyCdf,
        PlotKind::SqnrVsBits,
        PlotKind::HitVsThroughput,
        PlotKind::Placement,
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
            PlotKind::Placement
                if !axes.iter().any(|a| {
                    a == "placement" || a == "placement.mode" || a == "placement.in_place_layers"
                }) =>
            {
                Some("needs a `placement` (or `placement.mode`, `placement.in_place_layers`) axis".into())
            }
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
pub fn capacity_axis(axes: &[String]) -> Option<usize> {
    axes.iter().position(|a| {
        matches!(
            a.as_str(),
            "cache.capacity_experts" | "cache.capacity_bytes" | "cache.budget_fraction"
        )
    })
}

impl PlotKind {
    /// The name used in `[report] plots` (`metric-vs-axis`, `seed-table`).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Whether it is a table in summary.md rather than a plot.
    pub fn is_table(self) -> bool {
        self == PlotKind::SeedTable
    }
}

/// `[report]`: a sweep's plots and tables, by name; without `plots`, they are chosen from the
/// axes (see `crate::report::plots`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSection {
    /// The plots and tables to draw, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plots: Option<Vec<PlotKind>>,
    /// The axes `metric-vs-axis` charts run along (default: every numeric axis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub axes: Option<Vec<String>>,
    /// The point (its key, as in `results.csv`) paired differences are taken from, when the
    /// sweep has replicates (default: the first point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
}

impl ReportSection {
    /// Whether nothing is named (the plots follow the axes).
    pub fn is_automatic(&self) -> bool {
        self.plots.is_none() && self.axes.is_none() && self.baseline.is_none()
    }
}
