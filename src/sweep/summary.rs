//! A sweep's summary from its `results.csv`: `summary.csv` (mean and 95 % confidence interval
//! over replicates per point), `summary.md` (with paired differences from a baseline point) and
//! the plots, all re-derivable from `results.csv` alone (`moesim plot`). Rows stream: memory
//! does not grow with the number of runs.

use std::path::Path;

use super::store;
use super::tables::{DirTables, require_column};
use crate::atomic_file::write_atomic;
use crate::error::{Error, InputError, Result};
use crate::report::kind::{PlotKind, ReportSection};
use crate::report::metrics::{
    METRICS, PointSummary, Source, ValueCheck, physical_range, value_check,
};
use crate::report::numbers::{num, pm, pm_within};
use crate::report::plots::{self, PlotData, automatic};
use crate::report::seed_table::seed_table;
use crate::stats::mean_ci;

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Input(InputError::new(path.display().to_string(), reason.into()))
}

/// Reads `results.csv` (and `latency.csv`, `popularity.csv` when a plot needs them) and
/// writes `summary.csv`, `summary.md` and `plots/`; returns the markdown summary. `title`
/// names the experiment when `results.csv` has no `name` column. The plots are those the
/// directory's `experiment.toml` names in `[report] plots`, or else chosen from the axes.
pub fn finish(dir: &Path, title: &str) -> Result<String> {
    let report = store::report_section(dir)?;
    summarize(dir, title, &report)
}

/// [`finish`] with the report section given.
pub fn summarize(dir: &Path, title: &str, report: &ReportSection) -> Result<String> {
    let path = dir.join("results.csv");
    // Every table moesim writes ends with a newline: a file that does not was cut mid-row.
    let ends_whole = {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
        let mut last = [0u8; 1];
        len > 0
            && f.seek(SeekFrom::End(-1)).is_ok()
            && f.read_exact(&mut last).is_ok()
            && last[0] == b'\n'
    };
    if !ends_whole {
        return Err(bad(
            &path,
            "truncated: the last row does not end with a newline (an interrupted copy or write?)",
        ));
    }
    let mut rd = csv::Reader::from_path(&path).map_err(|e| bad(&path, e.to_string()))?;
    let headers = rd.headers().map_err(|e| bad(&path, e.to_string()))?.clone();
    let checks: Vec<ValueCheck> = headers.iter().map(value_check).collect();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let point_col =
        col("point").ok_or_else(|| bad(&path, "no `point` column: not a sweep's results.csv"))?;
    let text_cols = ["profile", "model", "format", "router"].map(col);
    let name_col = col("name");
    let axis_cols: Vec<(usize, String)> = headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.strip_prefix("axis.").map(|p| (i, p.to_string())))
        .collect();
    // Every summarised metric's column must be there: a missing one is an error, not NaN.
    let metric_cols: Vec<usize> = METRICS
        .iter()
        .map(|m| match m.source {
            Source::Column(c) | Source::PerDecodeToken(c) => require_column(&path, &headers, c),
        })
        .collect::<Result<_>>()?;
    let decode_tokens_col = Some(require_column(&path, &headers, "decode_tokens")?);
    let replicate_col = require_column(&path, &headers, "replicate")?;
    let decode_cols: Vec<(&str, usize)> = DECODE_FIGURES
        .iter()
        .map(|&n| require_column(&path, &headers, n).map(|c| (n, c)))
        .collect::<Result<_>>()?;
    let mut runs_seen: Vec<(String, String)> = Vec::new();
    let mut points: Vec<PointSummary> = Vec::new();
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); METRICS.len()];
    let mut current: Option<PointSummary> = None;
    let mut experiment_name: Option<String> = None;
    let flush = |cur: &mut Option<PointSummary>,
                 values: &mut Vec<Vec<f64>>,
                 points: &mut Vec<PointSummary>| {
        if let Some(mut p) = cur.take() {
            p.n = values[0].len();
            p.samples = values
                .iter()
                .zip(METRICS)
                .map(|(v, m)| v.iter().map(|x| x * m.scale).collect())
                .collect();
            p.stats = values
                .iter()
                .zip(METRICS)
                .map(|(v, m)| {
                    let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
                    let (mean, ci) = mean_ci(&finite);
                    (mean * m.scale, ci * m.scale)
                })
                .collect();
            points.push(p);
        }
        values.iter_mut().for_each(|v| v.clear());
    };
    let get = |rec: &csv::StringRecord, c: Option<usize>| {
        c.and_then(|i| rec.get(i)).unwrap_or_default().to_string()
    };
    for rec in rd.records() {
        let rec = rec.map_err(|e| bad(&path, e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        for ((value, check), name) in rec.iter().zip(&checks).zip(headers.iter()) {
            if let Err(why) = check.test(value) {
                return Err(Error::Input(crate::error::InputError {
                    file: path.display().to_string(),
                    line: Some(line),
                    key: Some(name.to_string()),
                    reason: why,
                }));
            }
        }
        let key = rec.get(point_col).unwrap_or_default().to_string();
        if experiment_name.is_none() {
            experiment_name = name_col.and_then(|i| rec.get(i)).map(str::to_string);
        }
        if current.as_ref().is_none_or(|c| c.key != key) {
            flush(&mut current, &mut values, &mut points);
            current = Some(PointSummary {
                key,
                axes: axis_cols
                    .iter()
                    .map(|(i, _)| rec.get(*i).unwrap_or_default().to_string())
                    .collect(),
                profile: get(&rec, text_cols[0]),
                model: get(&rec, text_cols[1]),
                format: get(&rec, text_cols[2]),
                router: get(&rec, text_cols[3]),
                n: 0,
                stats: Vec::new(),
                samples: Vec::new(),
            });
        }
        let tokens = decode_tokens_col
            .and_then(|i| rec.get(i))
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        // A run that decoded tokens has every decode figure: an empty one was cut out.
        if tokens > 0.0 {
            for &(name, c) in &decode_cols {
                if rec.get(c).is_none_or(str::is_empty) {
                    return Err(Error::Input(crate::error::InputError {
                        file: path.display().to_string(),
                        line: Some(line),
                        key: Some(name.to_string()),
                        reason:
                            "empty, though the run decoded tokens: the file was edited or damaged"
                                .into(),
                    }));
                }
            }
        }
        runs_seen.push((
            rec.get(point_col).unwrap_or_default().to_string(),
            rec.get(replicate_col).unwrap_or_default().to_string(),
        ));
        for ((v, c), m) in values.iter_mut().zip(&metric_cols).zip(METRICS) {
            let x = rec
                .get(*c)
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(f64::NAN);
            v.push(match m.source {
                Source::Column(_) => x,
                Source::PerDecodeToken(_) if tokens > 0.0 => x / tokens,
                Source::PerDecodeToken(_) => f64::NAN,
            });
        }
    }
    flush(&mut current, &mut values, &mut points);
    if points.is_empty() {
        return Err(bad(&path, "no rows"));
    }
    check_runs(dir, &path, &runs_seen, &points)?;
    let title = experiment_name.unwrap_or_else(|| title.to_string());

    // summary.csv
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head = vec!["point".to_string()];
    head.extend(axis_cols.iter().map(|(_, p)| format!("axis.{p}")));
    head.push("replicates".into());
    for m in METRICS {
        head.push(format!("{}_mean", m.name));
        head.push(format!("{}_ci95", m.name));
    }
    w.write_record(&head).expect("memory");
    for p in &points {
        let mut r = vec![p.key.clone()];
        r.extend(p.axes.iter().cloned());
        r.push(p.n.to_string());
        for ((mean, ci), m) in p.stats.iter().zip(METRICS) {
            // Back to the column's own unit.
            r.push(num(mean / m.scale));
            r.push(num(ci / m.scale));
        }
        w.write_record(&r).expect("memory");
    }
    write_atomic(dir.join("summary.csv"), &w.into_inner().expect("memory"))?;

    // summary.md
    let present: Vec<usize> = (0..METRICS.len())
        .filter(|&i| points.iter().any(|p| p.stats[i].0.is_finite()))
        .collect();
    let shown: Vec<usize> = present
        .iter()
        .copied()
        .filter(|&i| METRICS[i].in_markdown)
        .collect();
    let mut md = format!(
        "# {title}\n\n{} points × {} replicate(s); mean ± 95 % CI (Student t) over replicates.\n\n| point |",
        points.len(),
        points.iter().map(|p| p.n).max().unwrap_or(0)
    );
    for &i in &shown {
        md.push_str(&format!(" {} |", METRICS[i].label));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(shown.len()));
    md.push('\n');
    let mut clamped = false;
    for p in &points {
        md.push_str(&format!("| {} |", p.key));
        for &i in &shown {
            let (text, c) = pm_within(p.stats[i], physical_range(METRICS[i].name));
            clamped |= c;
            md.push_str(&format!(" {text} |"));
        }
        md.push('\n');
    }
    if clamped {
        md.push_str(
            "\nA value written `m (a to b)` has a 95 % interval that reaches past what the metric can \
             take (a hit rate below 0, a negative latency): `a to b` is that interval clamped to the \
             metric's range.\n",
        );
    }
    let mut profiles: Vec<&str> = points.iter().map(|p| p.profile.as_str()).collect();
    profiles.sort_unstable();
    profiles.dedup();
    let on = if profiles.len() == 1 {
        format!(" on {}", profiles[0])
    } else {
        " on several profiles".to_string()
    };
    md.push_str(&paired_differences(
        &points,
        &shown,
        report.baseline.as_deref(),
    ));
    let tables = DirTables { dir };
    let data = PlotData {
        dir,
        tables: &tables,
        title,
        on,
        axis_paths: axis_cols.iter().map(|(_, p)| p.clone()).collect(),
        chart_axes: report.axes.clone(),
        points,
        present,
    };
    let kinds = match &report.plots {
        Some(k) => {
            for kind in k {
                if let Some(why) = kind.unusable(&data.axis_paths) {
                    return Err(bad(
                        &dir.join("experiment.toml"),
                        format!("report.plots: {}: {why}", kind.name()),
                    ));
                }
            }
            k.clone()
        }
        None => automatic(&data),
    };
    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(|e| Error::io(&plots_dir, e))?;
    let mut written = Vec::new();
    for kind in kinds {
        match kind {
            PlotKind::SeedTable => md.push_str(&seed_table(&data)),
            _ => written.extend(plots::draw(&data, kind, &plots_dir)?),
        }
    }
    // Plots an earlier report drew that this one does not are removed: plots/ shows this
    // report only.
    for entry in std::fs::read_dir(&plots_dir).map_err(|e| Error::io(&plots_dir, e))? {
        let entry = entry.map_err(|e| Error::io(&plots_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let stem = name
            .strip_suffix(".png")
            .or_else(|| name.strip_suffix(".svg"));
        if stem.is_some_and(|s| !written.iter().any(|w| w == s)) {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    if !written.is_empty() {
        md.push_str("\n## Plots\n\n");
        for p in &written {
            md.push_str(&format!("![{p}](plots/{p}.png)\n\n"));
        }
    }
    if let Ok(source) = std::fs::read_to_string(dir.join("experiment.source"))
        && !source.trim().is_empty()
    {
        md.push_str(&format!(
            "Reproduce: `moesim run {}` (moesim {}; add `--out DIR` to write elsewhere than moesim-reports/; `moesim plot DIR` redraws the summary and plots from results.csv).\n",
            source.trim(),
            env!("CARGO_PKG_VERSION"),
        ));
    }
    write_atomic(dir.join("summary.md"), md.as_bytes())?;
    Ok(md)
}

/// With replicates, the paired differences of every point from the baseline (the `[report]
/// baseline` point, else the first): replicate r of every point shares its seed (common
/// random numbers), so the difference of replicate r's values isolates what the axes change;
/// mean ± 95 % CI of those differences.
fn paired_differences(points: &[PointSummary], shown: &[usize], baseline: Option<&str>) -> String {
    let Some(base) = (match baseline {
        Some(k) => points.iter().find(|p| p.key == k),
        None => points.first(),
    }) else {
        return String::new();
    };
    if points.len() < 2 || base.n < 2 {
        return String::new();
    }
    let mut md = format!(
        "\n## Paired differences from `{}`\n\nReplicate r of every point shares its seed \
         (common random numbers), so each difference below is the mean ± 95 % CI of the \
         per-replicate differences point − baseline.\n\n| point |",
        base.key
    );
    for &i in shown {
        md.push_str(&format!(" Δ {} |", METRICS[i].label));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(shown.len()));
    md.push('\n');
    for p in points.iter().filter(|p| p.key != base.key) {
        md.push_str(&format!("| {} |", p.key));
        for &i in shown {
            let d: Vec<f64> = p.samples[i]
                .iter()
                .zip(&base.samples[i])
                .map(|(a, b)| a - b)
                .filter(|x| x.is_finite())
                .collect();
            md.push_str(&format!(" {} |", pm(mean_ci(&d))));
        }
        md.push('\n');
    }
    md
}

/// The figures every run that decoded tokens has.
const DECODE_FIGURES: [&str; 4] = [
    "decode_tokens_per_s",
    "token_latency_mean_ns",
    "energy_per_decode_token_mj",
    "bytes_loaded_per_decode_token",
];

/// Every run of the sweep is in `results.csv`, once and in order: against the manifest
/// (`runs.csv`) when the directory has it, else every point must have as many replicates as
/// the others. A missing row would make a point's mean and interval silently rest on fewer
/// runs.
fn check_runs(
    dir: &Path,
    path: &Path,
    seen: &[(String, String)],
    points: &[PointSummary],
) -> Result<()> {
    if dir.join("runs.csv").exists() {
        let runs = store::read_manifest(dir)?;
        for (i, e) in runs.iter().enumerate() {
            let found = seen.get(i);
            if found.is_none_or(|(k, r)| *k != e.point || *r != e.replicate.to_string()) {
                return Err(bad(
                    path,
                    format!(
                        "run {} (point {}, replicate {}) is missing or out of place at row {}: the file does not match runs.csv",
                        e.run,
                        e.point,
                        e.replicate,
                        i + 2
                    ),
                ));
            }
        }
        if seen.len() > runs.len() {
            return Err(bad(
                path,
                format!(
                    "{} rows for the {} runs of runs.csv",
                    seen.len(),
                    runs.len()
                ),
            ));
        }
        return Ok(());
    }
    let n = points.iter().map(|p| p.n).max().unwrap_or(0);
    if let Some(p) = points.iter().find(|p| p.n != n) {
        return Err(bad(
            path,
            format!(
                "point {} has {} of the {n} replicates the other points have: rows are missing",
                p.key, p.n
            ),
        ));
    }
    Ok(())
}
