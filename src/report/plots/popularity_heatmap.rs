//! Per-layer expert popularity of each point (from `popularity.csv`); points with identical
//! selections share one map.

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
    let keys: Vec<&str> = d.points.iter().map(|p| p.key.as_str()).collect();
    // Points with identical selections (a standard-router sweep over caches) share one map.
    let mut grids: Vec<(String, usize, usize, Vec<f64>, usize)> = Vec::new();
    for (key, layers, experts, counts) in d.tables.popularity(&keys)? {
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
    Ok(written)
}
