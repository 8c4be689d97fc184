//! `[[observed]]` rows (measurements of real systems) matched to a sweep's points: a row whose
//! point is not in the sweep is an error naming it, for `moesim run` as for `moesim validate`.

use super::Sweep;
use super::expand::render;
use crate::error::{Error, InputError, Result};

/// One `[[observed]]` row, matched to its point.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Its position among the `[[observed]]` rows (0-based).
    pub index: usize,
    /// The system measured (`all` when the row names none).
    pub system: String,
    /// The `results.csv` column.
    pub metric: String,
    /// The measured value.
    pub value: f64,
    /// Where it comes from.
    pub source: String,
    /// Why it is left out of the statistics, if it is.
    pub exclude: Option<String>,
    /// The key of its sweep point (`base` without a sweep).
    pub point: String,
    /// Its axis values.
    pub axes: Vec<(String, String)>,
}

/// The key of `[[observed]]` row `i`'s field `field` in errors.
pub fn key(i: usize, field: &str) -> String {
    format!("observed[{i}].{field}")
}

/// Flattens an observation's `point` table into (axis path, rendered value): dotted keys may be
/// written quoted (`"cache.capacity_experts" = 4`) or as nested tables, and a table that is
/// itself an axis's value is taken whole.
fn flatten(
    t: &toml::Table,
    prefix: &str,
    axes: &[String],
    out: &mut Vec<(String, String)>,
) -> std::result::Result<(), String> {
    for (k, v) in t {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if axes.contains(&path) {
            out.push((path, render(v)));
        } else if let toml::Value::Table(inner) = v {
            flatten(inner, &path, axes, out)?;
        } else {
            return Err(format!(
                "`{path}` is not an axis of the sweep (axes: {})",
                if axes.is_empty() {
                    "none".to_string()
                } else {
                    axes.join(", ")
                }
            ));
        }
    }
    Ok(())
}

/// Matches `observed` to `sweep`'s points; a row whose point is not in the sweep, or whose
/// value is not finite and positive, is an error naming it.
pub fn observations(
    sweep: &Sweep,
    observed: &[crate::experiment::spec::ObservedSpec],
) -> Result<Vec<Observation>> {
    let bad =
        |k: String, reason: String| Error::Input(InputError::at_key(&sweep.label, &k, reason));
    let mut out = Vec::with_capacity(observed.len());
    for (i, o) in observed.iter().enumerate() {
        if !(o.value.is_finite() && o.value > 0.0) {
            return Err(bad(
                key(i, "value"),
                format!("{} is not a positive measurement", o.value),
            ));
        }
        if o.metric.trim().is_empty() {
            return Err(bad(key(i, "metric"), "is empty".into()));
        }
        if o.source.trim().is_empty() {
            return Err(bad(
                key(i, "source"),
                "must say where the value comes from".into(),
            ));
        }
        let mut given = Vec::new();
        flatten(&o.point, "", &sweep.axis_paths, &mut given)
            .map_err(|r| bad(key(i, "point"), r))?;
        let mut axes = Vec::with_capacity(sweep.axis_paths.len());
        for path in &sweep.axis_paths {
            match given.iter().find(|(p, _)| p == path) {
                Some(pv) => axes.push(pv.clone()),
                None => {
                    return Err(bad(
                        key(i, "point"),
                        format!("gives no value for the axis `{path}`"),
                    ));
                }
            }
        }
        let Some(p) = sweep.points.iter().find(|p| p.axes == axes) else {
            let want: Vec<String> = axes.iter().map(|(p, v)| format!("{p}={v}")).collect();
            return Err(bad(
                key(i, "point"),
                format!("no point of the sweep has {}", want.join(", ")),
            ));
        };
        out.push(Observation {
            index: i,
            system: o.system.clone().unwrap_or_else(|| "all".into()),
            metric: o.metric.clone(),
            value: o.value,
            source: o.source.clone(),
            exclude: o.exclude.clone(),
            point: p.key.clone(),
            axes,
        });
    }
    Ok(out)
}
