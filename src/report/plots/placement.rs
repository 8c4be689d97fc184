//! Decode and prefill throughput against `placement.in_place_layers` (llama.cpp's
//! `--n-cpu-moe`), with every other placement of the sweep (in place, hot set, per miss, move)
//! as a dashed level across the same axes: which placement is fastest at this VRAM.

use std::path::Path;

use super::PlotData;
use crate::error::Result;
use crate::report::metrics::{METRICS, metric_index};
use crate::report::plot::{Series, XyChart};

/// What a point's placement axis value says: the blocks in place (`layers` mode), or a label.
fn parse(axis_path: &str, value: &str) -> Result<(Option<f64>, String), String> {
    if axis_path == "placement.in_place_layers" {
        return value
            .parse()
            .map(|n| (Some(n), String::new()))
            .map_err(|_| format!("in_place_layers `{value}` is not a number"));
    }
    // A table rendered as `mode=layers in_place_layers=20`, or a mode name.
    let mut n = None;
    let mut words = Vec::new();
    for part in value.split(' ') {
        match part.split_once('=') {
            Some(("in_place_layers", "fit")) => words.push("fewest that fit".to_string()),
            Some(("in_place_layers", v)) => {
                n = Some(
                    v.parse()
                        .map_err(|_| format!("in_place_layers `{v}` is not a number"))?,
                )
            }
            Some(("mode", v)) => words.insert(0, v.to_string()),
            Some((k, v)) => words.push(format!("{k}={v}")),
            None => words.push(part.to_string()),
        }
    }
    Ok((n, words.join(" ")))
}

/// A placement's label in words (`hot-set hot_set=static` → `static hot set`).
fn words(label: &str) -> String {
    let known = [
        ("in-place", "all experts in place (--cpu-moe)"),
        ("hot-set hot_set=static", "static hot set"),
        ("hot-set", "hot set (cache policy)"),
        ("per-miss", "per miss, predicted finish"),
        ("move", "paged cache (move)"),
        (
            "layers fewest that fit",
            "--n-cpu-moe: fewest blocks that fit",
        ),
    ];
    if let Some(rest) = label.strip_prefix("per-miss copy_min_tokens=") {
        return format!("per miss, copy at >= {rest} tokens");
    }
    known
        .iter()
        .find(|(k, _)| *k == label)
        .map_or_else(|| label.to_string(), |(_, w)| w.to_string())
}

/// Draws the plot; returns the file stems written.
pub(super) fn draw(d: &PlotData<'_>, plots_dir: &Path) -> Result<Vec<String>> {
    let a = d
        .axis_paths
        .iter()
        .position(|p| p == "placement" || p == "placement.mode" || p == "placement.in_place_layers")
        .expect("usable: the sweep has a placement axis");
    let path = &d.axis_paths[a];
    let mut parsed = Vec::with_capacity(d.points.len());
    for p in &d.points {
        let (n, label) = parse(path, &p.axes[a])
            .map_err(|e| crate::error::InputError::new(d.dir.display().to_string(), e))?;
        // Other axes (a profile, a model) split the lines.
        let rest: Vec<&str> = p
            .axes
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != a)
            .map(|(_, v)| v.as_str())
            .collect();
        parsed.push((n, label, rest.join(" / ")));
    }
    let xs: Vec<f64> = parsed.iter().filter_map(|p| p.0).collect();
    let (lo, hi) = match (
        xs.iter().copied().reduce(f64::min),
        xs.iter().copied().reduce(f64::max),
    ) {
        (Some(lo), Some(hi)) if hi > lo => (lo, hi),
        (Some(x), Some(_)) => (x - 1.0, x + 1.0),
        _ => (0.0, 1.0),
    };
    let mut written = Vec::new();
    for (metric, stem) in [
        ("decode_tokens_per_s", "placement-decode"),
        ("prefill_tokens_per_s", "placement-prefill"),
    ] {
        let m = metric_index(metric);
        if !d.present.contains(&m) {
            continue;
        }
        let mut series: Vec<Series> = Vec::new();
        for (p, (n, label, rest)) in d.points.iter().zip(&parsed) {
            let (y, ci) = p.stats[m];
            if !y.is_finite() {
                continue;
            }
            let suffix = if rest.is_empty() {
                String::new()
            } else {
                format!(" ({rest})")
            };
            match n {
                Some(n) => {
                    let s = Series::named(&mut series, &format!("layers in place{suffix}"), false);
                    s.points.push((*n, y));
                    if ci.is_finite() && ci > 0.0 {
                        s.band.push((*n, (y - ci).max(0.0), y + ci));
                    }
                }
                None => series.push(Series {
                    name: format!("{}{suffix}", words(label)),
                    points: vec![(lo, y), (hi, y)],
                    ..Default::default()
                }),
            }
        }
        for s in &mut series {
            let mut order: Vec<usize> = (0..s.points.len()).collect();
            order.sort_by(|&i, &j| s.points[i].0.total_cmp(&s.points[j].0));
            s.points = order.iter().map(|&i| s.points[i]).collect();
            s.band.sort_by(|x, y| x.0.total_cmp(&y.0));
        }
        XyChart {
            title: format!(
                "{}: {} vs blocks with experts in place{}",
                d.title, METRICS[m].label, d.on
            ),
            x_label: "blocks whose experts run in place (--n-cpu-moe)".into(),
            y_label: METRICS[m].label.to_string(),
            series,
            ..Default::default()
        }
        .write(&plots_dir.join(stem))?;
        written.push(stem.to_string());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn axis_values_give_the_layer_count_or_a_label() {
        assert_eq!(
            parse("placement", "in_place_layers=20 mode=layers").unwrap(),
            (Some(20.0), "layers".into())
        );
        assert_eq!(
            parse("placement", "hot_set=static mode=hot-set").unwrap(),
            (None, "hot-set hot_set=static".into())
        );
        assert_eq!(
            parse("placement.in_place_layers", "7").unwrap(),
            (Some(7.0), String::new())
        );
        assert!(parse("placement.in_place_layers", "x").is_err());
    }
}
