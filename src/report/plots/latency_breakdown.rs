//! Where a decode token's time goes per point: compute, routing and expert-load stall,
//! stacked.

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
    Ok(written)
}
