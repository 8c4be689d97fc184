//! Proxy weight SQNR against bits per weight, one line per quantizer family.

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
    Ok(written)
}
