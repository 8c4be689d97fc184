//! Hit rate against decode throughput, one marker per point.

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
    Ok(written)
}
