//! Output error against decode throughput, with the Pareto front as a dashed guide under
//! the labelled points.

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
    let present = |m: &str| d.present.contains(&metric_index(m));
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
    Ok(written)
}
