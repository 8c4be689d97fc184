//! Each key metric against each numeric axis, one line per combination of the other axes, with
//! 95 % confidence bands clamped to the metric's physical range.

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
    let chart_metrics: Vec<usize> = [
        "hit_rate",
        "decode_tokens_per_s",
        "token_latency_p50_ns",
        "token_latency_p99_ns",
        "energy_per_decode_token_mj",
        "output_rel_l2_mean",
    ]
    .iter()
    .map(|m| metric_index(m))
    .filter(|i| d.present.contains(i))
    .collect();
    for (a, axis) in d.axis_paths.iter().enumerate() {
        if d.chart_axes.as_ref().is_some_and(|c| !c.contains(axis)) {
            continue;
        }
        let Some(xs) = numeric(d, a) else { continue };
        // Against a prompt axis, the prefill metrics too.
        let mut metrics = chart_metrics.clone();
        if matches!(
            axis.as_str(),
            "trace.prefill_tokens" | "scenario.prefill_chunk_tokens"
        ) {
            metrics.extend(
                ["prefill_tokens_per_s", "ttft_mean_ns"]
                    .iter()
                    .map(|m| metric_index(m))
                    .filter(|i| d.present.contains(i)),
            );
        }
        // Against a serving axis, what batches, contexts and drafts change.
        if axis.starts_with("serving.") {
            metrics.extend(
                [
                    "aggregate_decode_tokens_per_s",
                    "union_experts_mean",
                    "verify_tokens_per_step",
                    "expert_cache_min_bytes",
                ]
                .iter()
                .map(|m| metric_index(m))
                .filter(|i| d.present.contains(i)),
            );
        }
        for &m in &metrics {
            let stem = format!("{}-vs-{}", slug(METRICS[m].name), slug(axis));
            XyChart {
                title: format!("{title}: {} vs {}{on}", METRICS[m].label, short(axis)),
                x_label: axis_words(axis),
                y_label: METRICS[m].label.to_string(),
                series: lines_against(d, a, &xs, m, |y, c| (y, c)),
                ..Default::default()
            }
            .write(&plots_dir.join(&stem))?;
            written.push(stem);
        }
    }
    Ok(written)
}
