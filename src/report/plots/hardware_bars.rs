//! Decode throughput and energy per decode token per hardware profile, as grouped bars on
//! a log axis when the values span decades.

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
    let mut written = Vec::new();
    let a = d
        .axis_paths
        .iter()
        .position(|p| p == "hardware.profile")
        .expect("checked by unusable");
    // Axes that vary with the profile (zipped with it) name the category too.
    let mut categories: Vec<String> = Vec::new();
    let mut cat_of = Vec::new();
    for p in &d.points {
        let c = if p.model.is_empty() {
            p.axes[a].clone()
        } else {
            format!("{} ({})", p.axes[a], p.model)
        };
        let i = categories.iter().position(|x| *x == c).unwrap_or_else(|| {
            categories.push(c);
            categories.len() - 1
        });
        cat_of.push(i);
    }
    // Axes that the profile determines (zipped with it) are part of the category.
    let skip: Vec<usize> = (0..d.axis_paths.len())
        .filter(|&b| {
            b == a
                || d.points.iter().all(|p| {
                    d.points
                        .iter()
                        .filter(|q| q.axes[a] == p.axes[a])
                        .all(|q| q.axes[b] == p.axes[b])
                })
        })
        .collect();
    let mut names: Vec<String> = Vec::new();
    for p in &d.points {
        let n = others(d, p, &skip);
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let panel = |m: &str, y_label: &str| {
        let m = metric_index(m);
        let mut series = Vec::new();
        let mut errors = Vec::new();
        for n in &names {
            let mut v = vec![f64::NAN; categories.len()];
            let mut e = vec![f64::NAN; categories.len()];
            for (p, &c) in d.points.iter().zip(&cat_of) {
                if others(d, p, &skip) == *n {
                    v[c] = p.stats[m].0;
                    e[c] = p.stats[m].1;
                }
            }
            series.push((n.clone(), v));
            errors.push(e);
        }
        BarPanel {
            y_label: y_label.into(),
            series,
            errors,
            stacked: false,
            value_labels: true,
        }
    };
    let stem = "hardware-bars".to_string();
    let panels = vec![
        panel("decode_tokens_per_s", "decode throughput (tokens/s)"),
        panel("energy_per_decode_token_mj", "energy per decode token (mJ)"),
    ];
    BarChart {
        title: format!("{title}: decode throughput and energy per token by device"),
        categories,
        x_label: "hardware profile (model)".into(),
        panels,
    }
    .write(&plots_dir.join(&stem))?;
    written.push(stem);
    Ok(written)
}
