//! Sweeps: an experiment file with a `[sweep]` table expands into points.
//!
//! ```toml
//! [sweep]
//! axes = { "router.lambda" = [0.0, 0.5, 1.0], "cache.policy" = ["lru", "lfu"] }
//! zip = [{ "hardware.profile" = ["esp32-p4", "rpi5"], "model.spec" = ["micro-moe", "olmoe"] }]
//! replicates = 3
//! ```
//!
//! Every `axes` entry is a dotted path into the experiment file with a list of values; points
//! are the cartesian product of the axes (sorted by path, the first varying slowest) and of the
//! `zip` groups, whose lists vary together. Each point runs `replicates` times. Replicate `r`
//! of every point seeds from the experiment seed and `r` alone (common random numbers: the
//! points of one replicate see the same trace and arrivals, so their differences are paired),
//! never from thread order; a single replicate keeps the experiment seed, so a one-point sweep
//! reproduces a plain run.
//! Every point is validated before anything runs.

use std::path::Path;

use crate::error::{Error, InputError, Result};
use crate::experiment::{Experiment, ExperimentSpec};
use crate::hash::{Fnv, fnv1a};
use crate::seed::derive_seed;

/// One run of a sweep.
#[derive(Debug, Clone)]
pub struct Point {
    /// Position in the expansion (point-major, replicate-minor).
    pub index: usize,
    /// `path=value,...` of its axis values (`base` without axes).
    pub key: String,
    /// Replicate number.
    pub replicate: u32,
    /// Axis values, in axis order: (path, rendered value).
    pub axes: Vec<(String, String)>,
    /// The point's values by path, and its seed when it has its own.
    values: Vec<(String, toml::Value)>,
    seed: Option<u64>,
}

/// An expanded sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The experiment name.
    pub name: String,
    /// The axis paths, in order.
    pub axis_paths: Vec<String>,
    /// Replicates per point.
    pub replicates: u32,
    /// Every run.
    pub points: Vec<Point>,
    /// FNV-1a 64 of the experiment file's bytes and of every input its points read (profiles,
    /// models, generator specs, trace files, weights), with the results schema and version:
    /// a directory holding parts of another hash is not resumed.
    pub content_hash: u64,
    /// The experiment file's text.
    pub text: String,
    /// The file without `[sweep]`, and what builds each point from it.
    table: toml::Table,
    /// The experiment file as the user named it.
    pub label: String,
    base: std::path::PathBuf,
}

/// A value as it appears in point keys and axis columns: strings bare, tables as
/// space-separated `key=value` pairs (`kind=memory-aware lambda=1.0`), arrays bracketed.
pub(crate) fn render(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Table(t) => t
            .iter()
            .map(|(k, v)| format!("{k}={}", render(v)))
            .collect::<Vec<_>>()
            .join(" "),
        toml::Value::Array(a) => {
            format!("[{}]", a.iter().map(render).collect::<Vec<_>>().join(" "))
        }
        other => other.to_string(),
    }
}

pub(crate) fn set_path(
    t: &mut toml::Table,
    path: &str,
    v: toml::Value,
) -> std::result::Result<(), String> {
    let mut parts = path.split('.').peekable();
    let mut cur = t;
    while let Some(p) = parts.next() {
        if p.is_empty() {
            return Err(format!("`{path}` is not a dotted path"));
        }
        if parts.peek().is_none() {
            cur.insert(p.to_string(), v);
            return Ok(());
        }
        let next = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match next {
            toml::Value::Table(t) => t,
            _ => return Err(format!("`{path}`: `{p}` is not a table")),
        };
    }
    Ok(())
}

impl Sweep {
    /// Reads, expands and validates `path`.
    pub fn load(path: &Path) -> Result<Sweep> {
        let text = crate::input::read_to_string(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Sweep::parse(&path.display().to_string(), &text, base)
    }

    /// Expands `text`; `label` names it in errors.
    pub fn parse(label: &str, text: &str, base: &Path) -> Result<Sweep> {
        // Parse once as a spec for the line-numbered errors of the file itself.
        let spec: ExperimentSpec = crate::config::parse_toml(label, text)?;
        let bad = |key: &str, reason: String| Error::Input(InputError::at_key(label, key, reason));
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| bad("sweep", e.to_string()))?;
        table.remove("sweep");
        // A file without `[sweep]` is one point, run once.
        let sweep = spec
            .sweep
            .clone()
            .unwrap_or(crate::experiment::spec::SweepSection {
                replicates: 1,
                ..Default::default()
            });
        if sweep.replicates == 0 {
            return Err(bad("sweep.replicates", "must be >= 1".into()));
        }
        // Groups: each axis alone, then each zip group.
        let mut groups: Vec<Vec<(String, Vec<toml::Value>)>> = Vec::new();
        let list = |key: String, v: &toml::Value| match v {
            toml::Value::Array(a) if !a.is_empty() => Ok((key, a.clone())),
            _ => Err(bad(
                &format!("sweep.{key}"),
                "must be a non-empty list of values".into(),
            )),
        };
        // A combination listed twice would run the same point twice and count its runs as
        // replicates of one point: a confidence interval from copies.
        let twice = |key: &str, g: &[(String, Vec<toml::Value>)]| -> Result<()> {
            let n = g[0].1.len();
            for i in 0..n {
                if (0..i).any(|j| g.iter().all(|(_, vs)| vs[j] == vs[i])) {
                    let values: Vec<String> = g.iter().map(|(_, vs)| render(&vs[i])).collect();
                    return Err(bad(
                        key,
                        format!(
                            "`{}` is listed twice; use `replicates` for repeated runs",
                            values.join(", ")
                        ),
                    ));
                }
            }
            Ok(())
        };
        for (k, v) in &sweep.axes {
            let g = vec![list(k.clone(), v)?];
            twice(&format!("sweep.axes.{k}"), &g)?;
            groups.push(g);
        }
        for (i, z) in sweep.zip.iter().enumerate() {
            let g: Vec<(String, Vec<toml::Value>)> = z
                .iter()
                .map(|(k, v)| list(k.clone(), v))
                .collect::<Result<_>>()?;
            if g.is_empty() {
                return Err(bad(&format!("sweep.zip[{i}]"), "is empty".into()));
            }
            if g.iter().any(|(_, vs)| vs.len() != g[0].1.len()) {
                return Err(bad(
                    &format!("sweep.zip[{i}]"),
                    "its lists differ in length".into(),
                ));
            }
            twice(&format!("sweep.zip[{i}]"), &g)?;
            groups.push(g);
        }
        let axis_paths: Vec<String> = groups
            .iter()
            .flat_map(|g| g.iter().map(|(k, _)| k.clone()))
            .collect();
        for (i, p) in axis_paths.iter().enumerate() {
            if axis_paths[..i].contains(p) {
                return Err(bad("sweep", format!("`{p}` is swept twice")));
            }
            if p == "name" || p == "schema_version" || p.starts_with("sweep") {
                return Err(bad("sweep", format!("`{p}` cannot be swept")));
            }
        }
        for kind in spec.report.plots.iter().flatten() {
            if let Some(why) = kind.unusable(&axis_paths) {
                return Err(bad("report.plots", format!("`{}` {why}", kind.name())));
            }
        }
        for a in spec.report.axes.iter().flatten() {
            if !axis_paths.contains(a) {
                return Err(bad("report.axes", format!("`{a}` is not a sweep axis")));
            }
        }
        let n_combos: usize = groups.iter().map(|g| g[0].1.len()).product();
        let baseline = spec.report.baseline.clone();
        if n_combos.saturating_mul(sweep.replicates as usize) > 1_000_000 {
            return Err(bad("sweep", "more than a million runs".into()));
        }
        let content_hash = fnv1a(text.as_bytes());
        let mut points = Vec::new();
        for c in 0..n_combos {
            // Mixed-radix digits, the first group slowest.
            let mut rest = c;
            let mut digits = vec![0usize; groups.len()];
            for (gi, g) in groups.iter().enumerate().rev() {
                let n = g[0].1.len();
                digits[gi] = rest % n;
                rest /= n;
            }
            let mut axes = Vec::new();
            let mut point_values = Vec::new();
            for (g, &d) in groups.iter().zip(&digits) {
                for (path, values) in g {
                    axes.push((path.clone(), render(&values[d])));
                    point_values.push((path.clone(), values[d].clone()));
                }
            }
            let key = if axes.is_empty() {
                "base".to_string()
            } else {
                axes.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            for r in 0..sweep.replicates {
                // Common random numbers: replicate r of every point draws from the same seed
                // (the experiment's and r), so points differ only by what the axes change and
                // comparisons between points are paired.
                let seed = (sweep.replicates > 1).then(|| derive_seed(spec.seed, r as u64) >> 1);
                points.push(Point {
                    index: points.len(),
                    key: key.clone(),
                    replicate: r,
                    axes: axes.clone(),
                    values: point_values.clone(),
                    seed,
                });
            }
        }
        if let Some(b) = &baseline
            && !points.iter().any(|p: &Point| &p.key == b)
        {
            return Err(bad(
                "report.baseline",
                format!(
                    "`{b}` is not a point of this sweep (points are named like `{}`)",
                    points.first().map_or("base", |p| p.key.as_str())
                ),
            ));
        }
        let sweep = Sweep {
            name: spec.name,
            axis_paths,
            replicates: sweep.replicates,
            points,
            content_hash,
            text: text.to_string(),
            table,
            label: label.to_string(),
            base: base.to_path_buf(),
        };
        // Validate every point now; runs rebuild theirs, so memory stays small per point.
        let mut inputs = std::collections::BTreeSet::new();
        for p in &sweep.points {
            inputs.extend(sweep.experiment(p)?.inputs);
        }
        let mut h = Fnv::default();
        h.write(&sweep.content_hash.to_le_bytes());
        h.write(&crate::experiment::fingerprint_inputs(&inputs)?.to_le_bytes());
        let mut sweep = sweep;
        sweep.content_hash = h.finish();
        // Measurements must name points of this sweep (`moesim validate`).
        super::observed::observations(&sweep, &spec.observed)?;
        Ok(sweep)
    }

    /// Builds (and validates) point `p`'s experiment.
    pub fn experiment(&self, p: &Point) -> Result<Experiment> {
        self.experiment_with(p, &[])
    }

    /// Point `p`'s experiment with `overrides` (dotted path, value) set over the point's
    /// values: what `moesim validate` varies (`runtime.*`, `hardware.runtime`).
    pub fn experiment_with(
        &self,
        p: &Point,
        overrides: &[(String, toml::Value)],
    ) -> Result<Experiment> {
        let point_label = format!(
            "{}: point {} (replicate {})",
            self.label, p.key, p.replicate
        );
        let bad =
            |key: &str, reason: String| Error::Input(InputError::at_key(&self.label, key, reason));
        let mut t = self.table.clone();
        for (path, v) in &p.values {
            set_path(&mut t, path, v.clone()).map_err(|r| bad(&format!("sweep.{path}"), r))?;
        }
        for (path, v) in overrides {
            set_path(&mut t, path, v.clone()).map_err(|r| bad(path, r))?;
        }
        if let Some(seed) = p.seed {
            t.insert("seed".into(), toml::Value::Integer(seed as i64));
        }
        let spec: ExperimentSpec = toml::Value::Table(t)
            .try_into()
            .map_err(|e| Error::Input(InputError::new(point_label.clone(), e.to_string())))?;
        Experiment::from_spec(spec, &point_label, &self.base)
    }
}
