//! The distribution of decode-token latencies per point (from `latency.csv`).

use std::path::Path;

#[allow(unused_imports)]
use super::{
    PlotData, axis_names, axis_words, lines_against, numeric, others, point_label, short, slug,
};
#[allow(unused_imports)]
use crate::error::{Error, InputError, Result};
#[allow(unused_imports)]
use crate::report::kind::capacity_axis;
#[allow(unused_imports)]
use crate::report::metrics::{METRICS, metric_index};
#[allow(unused_imports)]
use crate::report::plot::{BarChart, BarPanel, Heatmap, Series, XyChart};

/// Draws the plot; returns the file stems written.
pub(super) fn draw(d: &PlotData<'_>, plots_dir: &Path) -> Result<Vec<String>> {
    let title = &d.title;
    let on = &d.on;
    let mut written = Vec::new();
    let quantiles = d.tables.latency()?;
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
    Ok(written)
}
