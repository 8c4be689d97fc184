//! A sweep's report directory from its CSV: `results.csv` assembled from the per-point parts,
//! then `summary.csv` (mean and 95 % confidence interval over replicates), `summary.md` and the
//! plots, all re-derivable from `results.csv` alone (`moesim plot`). Rows stream: memory does
//! not grow with the number of points.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::plot::{Series, XyChart};
use crate::atomic_file::{AtomicFile, write_atomic};
use crate::error::{Error, InputError, Result};
use crate::quality::mean_ci;

/// The metrics summarised over replicates: (column, label, scale to the label's unit).
pub const KEY_METRICS: &[(&str, &str, f64)] = &[
    ("decode_tokens_per_s", "decode throughput (tokens/s)", 1.0),
    ("hit_rate", "expert hit rate (decode)", 1.0),
    ("token_latency_p50_ns", "p50 token latency (ms)", 1e-6),
    ("token_latency_p99_ns", "p99 token latency (ms)", 1e-6),
    ("energy_per_token_mj", "energy per token (mJ)", 1.0),
    (
        "bytes_loaded_per_decode_token",
        "bytes loaded per token (MB)",
        1e-6,
    ),
    ("decode_stall_ns", "decode stall (s)", 1e-9),
    ("gate_mass_retained", "gate mass retained", 1.0),
    ("topk_agreement", "top-k agreement", 1.0),
    ("output_rel_l2_mean", "output relative L2 error", 1.0),
    ("output_cosine_mean", "output cosine similarity", 1.0),
];

/// Concatenates the part files (`header` + one row each, in `parts` order) into
/// `results.csv`, atomically.
pub fn assemble(dir: &Path, parts: &[PathBuf]) -> Result<()> {
    let mut out = AtomicFile::create(dir.join("results.csv"))?;
    for (i, p) in parts.iter().enumerate() {
        let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
        let mut lines = text.splitn(2, '\n');
        let header = lines.next().unwrap_or_default();
        let row = lines.next().unwrap_or_default();
        let w = out.writer();
        let r = if i == 0 {
            writeln!(w, "{header}").and_then(|_| w.write_all(row.as_bytes()))
        } else {
            w.write_all(row.as_bytes())
        };
        r.map_err(|e| Error::io(dir.join("results.csv"), e))?;
    }
    out.commit()
}

/// One summarised point.
#[derive(Debug, Clone)]
struct PointSummary {
    key: String,
    axes: Vec<String>,
    profile: String,
    n: usize,
    /// Per key metric (absent columns give NaN): mean and CI half-width, scaled.
    stats: Vec<(f64, f64)>,
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Input(InputError::new(path.display().to_string(), reason.into()))
}

/// Reads `results.csv` and writes `summary.csv`, `summary.md` and `plots/`; returns the
/// markdown summary. `title` names the experiment.
pub fn finish(dir: &Path, title: &str) -> Result<String> {
    let path = dir.join("results.csv");
    let mut rd = csv::Reader::from_path(&path).map_err(|e| bad(&path, e.to_string()))?;
    let headers = rd.headers().map_err(|e| bad(&path, e.to_string()))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let point_col =
        col("point").ok_or_else(|| bad(&path, "no `point` column: not a sweep's results.csv"))?;
    let profile_col = col("profile");
    let axis_cols: Vec<(usize, String)> = headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.strip_prefix("axis.").map(|p| (i, p.to_string())))
        .collect();
    let metric_cols: Vec<Option<usize>> = KEY_METRICS.iter().map(|(c, _, _)| col(c)).collect();
    let mut points: Vec<PointSummary> = Vec::new();
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); KEY_METRICS.len()];
    let mut current: Option<(String, Vec<String>, String)> = None;
    let flush = |cur: &Option<(String, Vec<String>, String)>,
                 values: &mut Vec<Vec<f64>>,
                 points: &mut Vec<PointSummary>| {
        if let Some((key, axes, profile)) = cur {
            let stats = values
                .iter()
                .zip(KEY_METRICS)
                .map(|(v, (_, _, scale))| {
                    let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
                    let (m, c) = mean_ci(&finite);
                    (m * scale, c * scale)
                })
                .collect();
            points.push(PointSummary {
                key: key.clone(),
                axes: axes.clone(),
                profile: profile.clone(),
                n: values[0].len(),
                stats,
            });
        }
        values.iter_mut().for_each(|v| v.clear());
    };
    for rec in rd.records() {
        let rec = rec.map_err(|e| bad(&path, e.to_string()))?;
        let key = rec.get(point_col).unwrap_or_default().to_string();
        if current.as_ref().is_none_or(|c| c.0 != key) {
            flush(&current, &mut values, &mut points);
            current = Some((
                key,
                axis_cols
                    .iter()
                    .map(|(i, _)| rec.get(*i).unwrap_or_default().to_string())
                    .collect(),
                profile_col
                    .and_then(|i| rec.get(i))
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
        for (v, c) in values.iter_mut().zip(&metric_cols) {
            v.push(
                c.and_then(|i| rec.get(i))
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(f64::NAN),
            );
        }
    }
    flush(&current, &mut values, &mut points);
    if points.is_empty() {
        return Err(bad(&path, "no rows"));
    }

    // summary.csv
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head = vec!["point".to_string()];
    head.extend(axis_cols.iter().map(|(_, p)| format!("axis.{p}")));
    head.push("replicates".into());
    for (c, _, _) in KEY_METRICS {
        head.push(format!("{c}_mean"));
        head.push(format!("{c}_ci95"));
    }
    w.write_record(&head).expect("memory");
    for p in &points {
        let mut r = vec![p.key.clone()];
        r.extend(p.axes.iter().cloned());
        r.push(p.n.to_string());
        for (i, (m, c)) in p.stats.iter().enumerate() {
            // Back to the column's own unit.
            let s = KEY_METRICS[i].2;
            r.push(num(m / s));
            r.push(num(c / s));
        }
        w.write_record(&r).expect("memory");
    }
    write_atomic(dir.join("summary.csv"), &w.into_inner().expect("memory"))?;

    // summary.md
    let present: Vec<usize> = (0..KEY_METRICS.len())
        .filter(|&i| points.iter().any(|p| p.stats[i].0.is_finite()))
        .collect();
    let mut md = format!(
        "# {title}\n\n{} points × {} replicate(s); mean ± 95 % CI (Student t) over replicates.\n\n| point |",
        points.len(),
        points.iter().map(|p| p.n).max().unwrap_or(0)
    );
    for &i in &present {
        md.push_str(&format!(" {} |", KEY_METRICS[i].1));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(present.len()));
    md.push('\n');
    for p in &points {
        md.push_str(&format!("| {} |", p.key));
        for &i in &present {
            let (m, c) = p.stats[i];
            if c.is_finite() {
                md.push_str(&format!(" {} ± {} |", sig(m), sig(c)));
            } else {
                md.push_str(&format!(" {} |", sig(m)));
            }
        }
        md.push('\n');
    }
    let plots = render_plots(dir, title, &axis_cols, &points, &present)?;
    if !plots.is_empty() {
        md.push_str("\n## Plots\n\n");
        for p in &plots {
            md.push_str(&format!("![{p}](plots/{p}.png)\n\n"));
        }
    }
    write_atomic(dir.join("summary.md"), md.as_bytes())?;
    Ok(md)
}

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        String::new()
    }
}

fn sig(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x != 0.0 && (x.abs() >= 1e5 || x.abs() < 1e-3) {
        format!("{x:.3e}")
    } else {
        format!("{:.4}", x)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn render_plots(
    dir: &Path,
    title: &str,
    axis_cols: &[(usize, String)],
    points: &[PointSummary],
    present: &[usize],
) -> Result<Vec<String>> {
    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(|e| Error::io(&plots_dir, e))?;
    let mut profiles: Vec<&str> = points.iter().map(|p| p.profile.as_str()).collect();
    profiles.sort_unstable();
    profiles.dedup();
    let on = if profiles.len() == 1 {
        format!(" on {}", profiles[0])
    } else {
        " on several profiles".to_string()
    };
    let mut written = Vec::new();
    let metric = |name: &str| KEY_METRICS.iter().position(|(c, _, _)| *c == name);
    let chart_metrics: Vec<usize> = [
        "hit_rate",
        "decode_tokens_per_s",
        "token_latency_p50_ns",
        "token_latency_p99_ns",
        "energy_per_token_mj",
        "output_rel_l2_mean",
    ]
    .iter()
    .filter_map(|m| metric(m))
    .filter(|i| present.contains(i))
    .collect();
    // Metric against each numeric axis, one line per combination of the other axes.
    for (a, (_, axis)) in axis_cols.iter().enumerate() {
        let xs: Vec<Option<f64>> = points.iter().map(|p| p.axes[a].parse().ok()).collect();
        let mut distinct: Vec<f64> = xs.iter().flatten().copied().collect();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        if xs.iter().any(|x| x.is_none()) || distinct.len() < 2 {
            continue;
        }
        for &m in &chart_metrics {
            let mut series: Vec<Series> = Vec::new();
            for (p, x) in points.iter().zip(&xs) {
                let others: Vec<String> = axis_cols
                    .iter()
                    .enumerate()
                    .filter(|&(b, _)| b != a)
                    .map(|(b, (_, path))| format!("{}={}", short(path), p.axes[b]))
                    .collect();
                let name = if others.is_empty() {
                    "all".into()
                } else {
                    others.join(", ")
                };
                let s = match series.iter_mut().find(|s| s.name == name) {
                    Some(s) => s,
                    None => {
                        series.push(Series {
                            name,
                            ..Default::default()
                        });
                        series.last_mut().expect("pushed")
                    }
                };
                let (mean, ci) = p.stats[m];
                let x = x.expect("numeric");
                s.points.push((x, mean));
                if ci.is_finite() {
                    s.band.push((x, mean - ci, mean + ci));
                }
            }
            for s in &mut series {
                s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
                s.band.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
            let (col, label, _) = KEY_METRICS[m];
            let stem = format!("{}-vs-{}", slug(col), slug(axis));
            XyChart {
                title: format!("{title}: {label} vs {}{on}", short(axis)),
                x_label: axis.clone(),
                y_label: label.to_string(),
                series,
            }
            .write(&plots_dir.join(&stem))?;
            written.push(stem);
        }
    }
    // Quality against throughput, with the Pareto front.
    if let (Some(q), Some(t)) = (metric("output_rel_l2_mean"), metric("decode_tokens_per_s"))
        && present.contains(&q)
        && points.len() >= 2
    {
        let pts: Vec<(f64, f64, &str)> = points
            .iter()
            .filter(|p| p.stats[q].0.is_finite() && p.stats[t].0.is_finite())
            .map(|p| (p.stats[t].0, p.stats[q].0, p.key.as_str()))
            .collect();
        let mut order: Vec<usize> = (0..pts.len()).collect();
        order.sort_by(|&a, &b| {
            pts[b]
                .0
                .total_cmp(&pts[a].0)
                .then(pts[a].1.total_cmp(&pts[b].1))
        });
        let mut front = Vec::new();
        let mut best = f64::INFINITY;
        for i in order {
            if pts[i].1 < best {
                best = pts[i].1;
                front.push((pts[i].0, pts[i].1));
            }
        }
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut series: Vec<Series> = if pts.len() <= 10 {
            pts.iter()
                .map(|&(x, y, k)| Series {
                    name: k.to_string(),
                    points: vec![(x, y)],
                    scatter: true,
                    ..Default::default()
                })
                .collect()
        } else {
            vec![Series {
                name: "points".into(),
                points: pts.iter().map(|&(x, y, _)| (x, y)).collect(),
                scatter: true,
                ..Default::default()
            }]
        };
        series.push(Series {
            name: "Pareto front".into(),
            points: front,
            ..Default::default()
        });
        let stem = "quality-vs-throughput".to_string();
        XyChart {
            title: format!("{title}: output error vs decode throughput{on}"),
            x_label: "decode throughput (tokens/s)".into(),
            y_label: "output relative L2 error (lower is better)".into(),
            series,
        }
        .write(&plots_dir.join(&stem))?;
        written.push(stem);
    }
    // Without a numeric axis: hit rate against throughput, one marker per point.
    if written.is_empty()
        && points.len() >= 2
        && let (Some(h), Some(t)) = (metric("hit_rate"), metric("decode_tokens_per_s"))
    {
        let series = points
            .iter()
            .take(10)
            .map(|p| Series {
                name: p.key.clone(),
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
        }
        .write(&plots_dir.join(&stem))?;
        written.push(stem);
    }
    Ok(written)
}

/// The last component of a dotted path.
fn short(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}
