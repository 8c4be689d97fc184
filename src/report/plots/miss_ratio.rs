//! Miss-ratio curves: the decode miss ratio against the numeric cache-capacity axis, one line
//! per combination of the other axes (per policy, typically).

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
    let a = capacity_axis(&d.axis_paths).expect("checked by unusable");
    let xs = numeric(d, a).ok_or_else(|| {
        Error::Input(InputError::new(
            d.dir.display().to_string(),
            format!("miss-ratio: axis {} is not numeric", d.axis_paths[a]),
        ))
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
    Ok(written)
}
