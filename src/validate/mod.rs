//! Predictions held against measurements of real systems (`moesim validate`).
//!
//! An experiment's `[[observed]]` rows name a metric (a `results.csv` column), the value a real
//! system measured, the sweep point it belongs to and its source. This module matches the rows
//! to points, runs the points each row needs (never the whole sweep), and compares:
//!
//! - the **datasheet-only** prediction: the hardware profile as it is, runtime `ideal`, nothing
//!   fitted; always reported;
//! - the **prediction**: the experiment's own runtime (`hardware.runtime`, `[runtime]`), or, with
//!   a fit, runtime parameters fitted per system on chosen observations by Nelder–Mead on the
//!   squared log ratio of predicted to observed, and every other observation predicted with
//!   them. A system never gets more parameters than the observations it is fitted on, and at
//!   most two.
//!
//! Errors are relative, `(predicted - observed) / observed`. Rows marked `exclude` are kept and
//! shown but left out of the statistics; rows used for fitting are marked and left out of the
//! fitted statistics.

use rayon::prelude::*;

use crate::error::{Error, InputError, Result};
use crate::experiment::ExperimentSpec;
use crate::hardware::runtime::PARAMS;
use crate::sweep::observed::key;
pub use crate::sweep::observed::{Observation, observations};
use crate::sweep::tables::metrics_row;
use crate::sweep::{Point, Sweep};

/// The observations a `--fit-on` selector picks: `KEY=VALUE[,KEY=VALUE]` where a key is
/// `system`, `metric`, `index` (the row's position) or an axis path; a row is picked when every
/// pair matches.
pub fn select(obs: &[Observation], selector: &str) -> std::result::Result<Vec<usize>, String> {
    let mut pairs = Vec::new();
    for part in selector.split(',') {
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!("`{part}` is not KEY=VALUE"));
        };
        pairs.push((k.trim(), v.trim()));
    }
    let picked: Vec<usize> = obs
        .iter()
        .filter(|o| {
            pairs.iter().all(|&(k, v)| match k {
                "system" => o.system == v,
                "metric" => o.metric == v,
                "index" => o.index.to_string() == v,
                path => o.axes.iter().any(|(p, x)| p == path && x == v),
            })
        })
        .map(|o| o.index)
        .collect();
    if picked.is_empty() {
        return Err("selects no observation".to_string());
    }
    Ok(picked)
}

/// How a fitted parameter is searched: efficiencies as a logistic of the coordinate (so they
/// stay in (0, 1)), fixed costs as 10^coordinate ns.
fn to_value(key: &str, u: f64) -> f64 {
    if key.ends_with("_efficiency") {
        (1.0 / (1.0 + (-u).exp())).clamp(1e-6, 1.0)
    } else {
        10f64.powf(u).min(crate::hardware::runtime::MAX_OVERHEAD_NS)
    }
}

/// Largest rms log error a fit of as many parameters as observations may leave: more means
/// the parameters cannot reach the observations (a bound, or a mechanism they do not move).
pub const EXACT_FIT_RMS_LOG_ERROR: f64 = 0.01;

fn start(key: &str) -> f64 {
    if key.ends_with("_efficiency") {
        1.0
    } else {
        3.0
    }
}

/// Evaluations a fit may spend.
pub const FIT_BUDGET: usize = 120;

/// The parameters fitted for one system.
#[derive(Debug, Clone)]
pub struct SystemFit {
    /// The system.
    pub system: String,
    /// The fitted parameters and their values.
    pub params: Vec<(String, f64)>,
    /// The observations it was fitted on.
    pub on: Vec<usize>,
    /// The root mean square of the log ratios on those observations.
    pub rms_log_error: f64,
    /// Evaluations spent.
    pub evaluations: usize,
}

/// One observation with its predictions.
#[derive(Debug, Clone)]
pub struct Row {
    /// The observation.
    pub obs: Observation,
    /// The datasheet-only prediction (runtime `ideal`).
    pub datasheet: f64,
    /// The prediction (fitted, or with the experiment's runtime).
    pub predicted: f64,
    /// Whether the fit used it.
    pub fitted: bool,
}

impl Row {
    /// Relative error of the datasheet-only prediction.
    pub fn datasheet_error(&self) -> f64 {
        (self.datasheet - self.obs.value) / self.obs.value
    }

    /// Relative error of the prediction.
    pub fn error(&self) -> f64 {
        (self.predicted - self.obs.value) / self.obs.value
    }
}

/// A validation.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Every observation, in file order.
    pub rows: Vec<Row>,
    /// The fits, one per system fitted.
    pub fits: Vec<SystemFit>,
}

/// What to fit.
#[derive(Debug, Clone, Default)]
pub struct FitRequest {
    /// Runtime parameters (names of [`PARAMS`]).
    pub keys: Vec<String>,
    /// The observations to fit on.
    pub on: Vec<usize>,
}

/// Checks a fit request against the observations: known keys, at most two, and per system no
/// more keys than the observations it is fitted on.
pub fn check_fit(obs: &[Observation], fit: &FitRequest) -> std::result::Result<(), String> {
    for k in &fit.keys {
        if !PARAMS.contains(&k.as_str()) {
            return Err(format!(
                "--fit {k}: not a runtime parameter (one of {})",
                PARAMS.join(", ")
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for k in &fit.keys {
        if !seen.insert(k) {
            return Err(format!("--fit names {k} twice"));
        }
    }
    if fit.keys.len() > 2 {
        return Err(format!(
            "--fit names {} parameters; at most two are fitted per system",
            fit.keys.len()
        ));
    }
    for system in systems(obs) {
        let n = fit
            .on
            .iter()
            .filter(|&&i| obs[i].system == system && obs[i].exclude.is_none())
            .count();
        if n > 0 && fit.keys.len() > n {
            return Err(format!(
                "--fit-on picks {n} observation(s) of system {system}: too few to fit {} parameters",
                fit.keys.len()
            ));
        }
    }
    if let Some((i, why)) = fit
        .on
        .iter()
        .find_map(|&i| obs[i].exclude.as_deref().map(|why| (i, why)))
    {
        return Err(format!(
            "--fit-on picks observed[{i}], which is excluded ({why})"
        ));
    }
    Ok(())
}

/// The systems of `obs`, in order of first appearance.
pub fn systems<'a>(obs: impl IntoIterator<Item = &'a Observation>) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for o in obs {
        if !v.contains(&o.system) {
            v.push(o.system.clone());
        }
    }
    v
}

/// The runs of `sweep` at point `key` (every replicate).
fn runs_of<'a>(sweep: &'a Sweep, key: &str) -> Vec<&'a Point> {
    sweep.points.iter().filter(|p| p.key == key).collect()
}

/// Every column of `results.csv` a run of `sweep` at point `key` gives, with `overrides`, as
/// (name, value), averaged over replicates.
fn run_point(sweep: &Sweep, key: &str, overrides: &[(String, toml::Value)]) -> Result<Columns> {
    let mut sums: Columns = Vec::new();
    let runs = runs_of(sweep, key);
    for p in &runs {
        let exp = sweep.experiment_with(p, overrides)?;
        let o = exp.run()?;
        let bytes = crate::report::flat_csv::to_csv(&[metrics_row(&exp, &o)]);
        let mut r = csv::Reader::from_reader(bytes.as_slice());
        let headers = r.headers().expect("a header").clone();
        let rec = r.records().next().expect("one row").expect("a row");
        if sums.is_empty() {
            sums = headers.iter().map(|h| (h.to_string(), Some(0.0))).collect();
        }
        for (s, v) in sums.iter_mut().zip(rec.iter()) {
            s.1 = match (s.1, v.parse::<f64>()) {
                (Some(a), Ok(x)) if x.is_finite() => Some(a + x),
                _ => None,
            };
        }
    }
    for s in &mut sums {
        s.1 = s.1.map(|x| x / runs.len() as f64);
    }
    Ok(sums)
}

/// A run's `results.csv` columns: (name, value when it is a finite number).
type Columns = Vec<(String, Option<f64>)>;

/// The value of `o`'s metric among a run's columns.
fn metric(cols: &[(String, Option<f64>)], o: &Observation, label: &str) -> Result<f64> {
    match cols.iter().find(|(n, _)| *n == o.metric) {
        None => Err(Error::Input(InputError::at_key(
            label,
            key(o.index, "metric"),
            format!("`{}` is not a column of results.csv", o.metric),
        ))),
        Some((_, None)) => Err(Error::Input(InputError::at_key(
            label,
            key(o.index, "metric"),
            format!(
                "`{}` is not a number at point {} (not measured there)",
                o.metric, o.point
            ),
        ))),
        Some((_, Some(v))) => Ok(*v),
    }
}

/// Predictions for `obs` at every point they name, with `overrides`; points run in parallel,
/// results in observation order.
fn predict(
    sweep: &Sweep,
    obs: &[&Observation],
    overrides: &[(String, toml::Value)],
) -> Result<Vec<f64>> {
    let mut keys: Vec<&str> = obs.iter().map(|o| o.point.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut all = base_overrides(obs);
    all.extend(overrides.iter().cloned());
    let runs: Vec<Result<Columns>> = keys.par_iter().map(|k| run_point(sweep, k, &all)).collect();
    let mut by_key = Vec::with_capacity(keys.len());
    for (k, r) in keys.iter().zip(runs) {
        by_key.push((*k, r?));
    }
    obs.iter()
        .map(|o| {
            let cols = &by_key
                .iter()
                .find(|(k, _)| *k == o.point)
                .expect("every point ran")
                .1;
            metric(cols, o, &sweep.label)
        })
        .collect()
}

/// Overrides every run of a validation gets: no output-quality sampling unless an observation
/// is an output-quality metric (it costs more than the simulation and changes no timing).
fn base_overrides(obs: &[&Observation]) -> Vec<(String, toml::Value)> {
    if obs.iter().any(|o| o.metric.starts_with("output_")) {
        Vec::new()
    } else {
        vec![("quality.samples".into(), toml::Value::Integer(0))]
    }
}

/// The overrides that force the ideal runtime.
fn ideal() -> Vec<(String, toml::Value)> {
    vec![
        (
            "hardware.runtime".into(),
            toml::Value::String("ideal".into()),
        ),
        ("runtime".into(), toml::Value::Table(toml::Table::new())),
    ]
}

/// The overrides that set runtime parameters `keys` to `values` over the experiment's runtime.
fn with_params(keys: &[String], values: &[f64]) -> Vec<(String, toml::Value)> {
    keys.iter()
        .zip(values)
        .map(|(k, &v)| (format!("runtime.{k}"), toml::Value::Float(v)))
        .collect()
}

/// Runs the validation: the datasheet-only prediction of every observation, and the
/// prediction with the experiment's runtime or, with `fit`, with parameters fitted per system.
pub fn validate(
    sweep: &Sweep,
    obs: &[Observation],
    fit: Option<&FitRequest>,
) -> Result<Validation> {
    if let Some(fit) = fit {
        // Refused before any run.
        check_fit(obs, fit).map_err(|r| Error::Input(InputError::new(&sweep.label, r)))?;
    }
    let all: Vec<&Observation> = obs.iter().collect();
    let datasheet = predict(sweep, &all, &ideal())?;
    let spec: ExperimentSpec = crate::config::parse_toml(&sweep.label, &sweep.text)?;
    let own_runtime = spec
        .hardware
        .runtime
        .as_deref()
        .is_some_and(|r| r != "ideal")
        || !spec.runtime.is_empty()
        || sweep
            .axis_paths
            .iter()
            .any(|p| p == "hardware.runtime" || p.starts_with("runtime"));
    let mut predicted = if own_runtime {
        predict(sweep, &all, &[])?
    } else {
        datasheet.clone()
    };
    let mut fits = Vec::new();
    let mut fitted = vec![false; obs.len()];
    if let Some(fit) = fit {
        for system in systems(obs) {
            let on: Vec<&Observation> = fit
                .on
                .iter()
                .map(|&i| &obs[i])
                .filter(|o| o.system == system)
                .collect();
            if on.is_empty() {
                continue;
            }
            let f = fit_system(sweep, &system, &on, &fit.keys)?;
            let values: Vec<f64> = f.params.iter().map(|p| p.1).collect();
            let mine: Vec<&Observation> = obs.iter().filter(|o| o.system == system).collect();
            let p = predict(sweep, &mine, &with_params(&fit.keys, &values))?;
            for (o, v) in mine.iter().zip(p) {
                predicted[o.index] = v;
            }
            for o in &on {
                fitted[o.index] = true;
            }
            fits.push(f);
        }
    }
    let rows = obs
        .iter()
        .map(|o| Row {
            obs: o.clone(),
            datasheet: datasheet[o.index],
            predicted: predicted[o.index],
            fitted: fitted[o.index],
        })
        .collect();
    Ok(Validation { rows, fits })
}

/// Fits `keys` for `system` on `on`.
fn fit_system(
    sweep: &Sweep,
    system: &str,
    on: &[&Observation],
    keys: &[String],
) -> Result<SystemFit> {
    let mut evaluations = 0usize;
    let mut failure: Option<Error> = None;
    let x0: Vec<f64> = keys.iter().map(|k| start(k)).collect();
    let best = crate::optimize::nelder_mead(&x0, 1.0, 1e-10, |u| {
        if evaluations >= FIT_BUDGET || failure.is_some() {
            return None;
        }
        evaluations += 1;
        let values: Vec<f64> = keys.iter().zip(u).map(|(k, &x)| to_value(k, x)).collect();
        match predict(sweep, on, &with_params(keys, &values)) {
            Ok(p) => Some(
                on.iter()
                    .zip(p)
                    .map(|(o, v)| (v / o.value).ln().powi(2))
                    .sum::<f64>(),
            ),
            Err(e) => {
                failure = Some(e);
                None
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let fail = |r: String| Error::Input(InputError::new(&sweep.label, r));
    let Some((u, loss)) = best else {
        return Err(fail(format!(
            "the fit for system {system} evaluated nothing"
        )));
    };
    if evaluations >= FIT_BUDGET {
        return Err(fail(format!(
            "the fit of {} for system {system} did not converge in {FIT_BUDGET} evaluations (rms log error {:.3})",
            keys.join(","),
            (loss / on.len() as f64).sqrt()
        )));
    }
    let rms_log_error = (loss / on.len() as f64).sqrt();
    let values: Vec<String> = keys
        .iter()
        .zip(&u)
        .map(|(k, &x)| format!("{k} = {:.4e}", to_value(k, x)))
        .collect();
    if keys.len() == on.len() && rms_log_error > EXACT_FIT_RMS_LOG_ERROR {
        return Err(fail(format!(
            "the fit of {} for system {system} did not converge to its observation(s): the best, {}, \
             still misses them by a factor {:.3} (rms); the parameter(s) cannot move the prediction \
             that far (a bound: efficiencies stop at 1, costs at 0 and {:e} ns)",
            keys.join(","),
            values.join(", "),
            rms_log_error.exp(),
            crate::hardware::runtime::MAX_OVERHEAD_NS
        )));
    }
    Ok(SystemFit {
        system: system.to_string(),
        params: keys
            .iter()
            .zip(&u)
            .map(|(k, &x)| (k.clone(), to_value(k, x)))
            .collect(),
        on: on.iter().map(|o| o.index).collect(),
        rms_log_error,
        evaluations,
    })
}

/// Median and largest absolute relative error of `errors` (NaN for none).
pub fn median_max(errors: &[f64]) -> (f64, f64) {
    if errors.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let abs: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
    (
        crate::stats::median(&abs),
        abs.iter().copied().fold(0.0, f64::max),
    )
}

/// Error statistics per system, over the rows not excluded.
pub fn statistics(v: &Validation) -> Vec<SystemStats> {
    systems(v.rows.iter().map(|r| &r.obs))
        .into_iter()
        .map(|system| {
            let rows: Vec<&Row> = v
                .rows
                .iter()
                .filter(|r| r.obs.system == system && r.obs.exclude.is_none())
                .collect();
            let ds: Vec<f64> = rows.iter().map(|r| r.datasheet_error()).collect();
            let pr: Vec<f64> = rows
                .iter()
                .filter(|r| !r.fitted)
                .map(|r| r.error())
                .collect();
            SystemStats {
                counted: rows.len(),
                datasheet: median_max(&ds),
                predicted_rows: pr.len(),
                predicted: median_max(&pr),
                excluded: v
                    .rows
                    .iter()
                    .filter(|r| r.obs.system == system && r.obs.exclude.is_some())
                    .count(),
                system,
            }
        })
        .collect()
}

/// Error statistics of one system.
#[derive(Debug, Clone)]
pub struct SystemStats {
    /// The system.
    pub system: String,
    /// Rows counted (not excluded).
    pub counted: usize,
    /// Rows excluded.
    pub excluded: usize,
    /// Datasheet-only: median and largest absolute relative error.
    pub datasheet: (f64, f64),
    /// Rows of the prediction not used for fitting.
    pub predicted_rows: usize,
    /// The prediction on them: median and largest absolute relative error.
    pub predicted: (f64, f64),
}
