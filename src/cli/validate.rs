//! `moesim validate`: an experiment's `[[observed]]` measurements against its predictions,
//! datasheet-only and fitted (the work is `crate::validate`); this file reads the arguments
//! and writes `validation.csv`, `summary.md` and the predicted-vs-observed plot.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::atomic_file::write_atomic;
use crate::error::{Error, Result};
use crate::experiment::ExperimentSpec;
use crate::report::plot::{AxisScale, Series, XyChart};
use crate::sweep::Sweep;
use crate::validate::{FitRequest, Validation, observations, select, statistics};

/// Arguments of `moesim validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The experiment (or sweep) file with `[[observed]]` rows.
    pub experiment: PathBuf,
    /// Runtime parameters to fit, comma-separated: link_efficiency, transfer_overhead_ns,
    /// compute_efficiency, layer_overhead_ns, token_overhead_ns (at most two per system).
    #[arg(long, value_delimiter = ',')]
    pub fit: Vec<String>,
    /// The observations to fit on: KEY=VALUE[,KEY=VALUE] where KEY is system, metric, index or
    /// an axis path; repeat to add more. Each system is fitted on its own picked rows.
    #[arg(long)]
    pub fit_on: Vec<String>,
    /// Output directory (default moesim-reports/<name>-validation).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the rows and statistics as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long)]
    pub threads: Option<u32>,
}

/// A row of `validation.csv`.
#[derive(Debug, Serialize)]
struct CsvRow<'a> {
    index: usize,
    system: &'a str,
    point: &'a str,
    metric: &'a str,
    observed: f64,
    datasheet_predicted: f64,
    datasheet_rel_error: f64,
    predicted: f64,
    rel_error: f64,
    role: &'static str,
    excluded: &'a str,
    source: &'a str,
}

/// The statistics of one system, for JSON.
#[derive(Debug, Serialize)]
struct JsonStats<'a> {
    system: &'a str,
    counted: usize,
    excluded: usize,
    datasheet_median_abs_rel_error: f64,
    datasheet_max_abs_rel_error: f64,
    predicted_rows: usize,
    median_abs_rel_error: f64,
    max_abs_rel_error: f64,
    fitted: Vec<(String, f64)>,
    fitted_on: Vec<usize>,
}

#[derive(Debug, Serialize)]
struct JsonOut<'a> {
    experiment: String,
    rows: Vec<CsvRow<'a>>,
    systems: Vec<JsonStats<'a>>,
}

fn role(r: &crate::validate::Row) -> &'static str {
    if r.obs.exclude.is_some() {
        "excluded"
    } else if r.fitted {
        "fitted"
    } else {
        "predicted"
    }
}

fn csv_rows(v: &Validation) -> Vec<CsvRow<'_>> {
    v.rows
        .iter()
        .map(|r| CsvRow {
            index: r.obs.index,
            system: &r.obs.system,
            point: &r.obs.point,
            metric: &r.obs.metric,
            observed: r.obs.value,
            datasheet_predicted: r.datasheet,
            datasheet_rel_error: r.datasheet_error(),
            predicted: r.predicted,
            rel_error: r.error(),
            role: role(r),
            excluded: r.obs.exclude.as_deref().unwrap_or(""),
            source: &r.obs.source,
        })
        .collect()
}

/// Runs `moesim validate`.
pub fn run(a: ValidateArgs, out: &mut dyn Write) -> Result<()> {
    if a.fit.is_empty() != a.fit_on.is_empty() {
        return Err(Error::usage(
            "--fit and --fit-on go together: name the parameters and the observations to fit them on",
        ));
    }
    let sweep = Sweep::load(&a.experiment)?;
    let spec: ExperimentSpec = crate::config::parse_toml(&sweep.label, &sweep.text)?;
    if spec.observed.is_empty() {
        return Err(Error::usage(format!(
            "{}: no [[observed]] rows to validate against",
            a.experiment.display()
        )));
    }
    let obs = observations(&sweep, &spec.observed)?;
    let fit = if a.fit.is_empty() {
        None
    } else {
        let mut on = Vec::new();
        for s in &a.fit_on {
            for i in select(&obs, s).map_err(|r| Error::usage(format!("--fit-on {s}: {r}")))? {
                if !on.contains(&i) {
                    on.push(i);
                }
            }
        }
        on.sort_unstable();
        let req = FitRequest {
            keys: a.fit.clone(),
            on,
        };
        Some(req)
    };
    let dir = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("moesim-reports/{}-validation", sweep.name)));
    if dir.is_file() {
        return Err(Error::usage(format!(
            "--out {}: is a file; give a directory",
            dir.display()
        )));
    }
    for f in [
        "validation.csv",
        "summary.md",
        "predicted-vs-observed.png",
        "predicted-vs-observed.svg",
    ] {
        crate::atomic_file::refuse_overwriting_inputs(
            &dir.join(f),
            &[a.experiment.as_path()],
            "--out",
        )?;
    }
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = a.threads {
        builder = builder.num_threads(n as usize);
    }
    let pool = builder
        .build()
        .map_err(|e| Error::usage(format!("--threads: {e}")))?;
    let v = pool.install(|| crate::validate::validate(&sweep, &obs, fit.as_ref()))?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let rows = csv_rows(&v);
    write_atomic(
        dir.join("validation.csv"),
        &crate::report::flat_csv::to_csv(&rows),
    )?;
    let command = command_line(&a);
    let md = summary_md(&sweep.name, &v, &command);
    write_atomic(dir.join("summary.md"), md.as_bytes())?;
    plot(&sweep.name, &v, &dir.join("predicted-vs-observed"))?;
    if a.json {
        let stats = statistics(&v);
        let systems = stats
            .iter()
            .map(|s| {
                let f = v.fits.iter().find(|f| f.system == s.system);
                JsonStats {
                    system: &s.system,
                    counted: s.counted,
                    excluded: s.excluded,
                    datasheet_median_abs_rel_error: s.datasheet.0,
                    datasheet_max_abs_rel_error: s.datasheet.1,
                    predicted_rows: s.predicted_rows,
                    median_abs_rel_error: s.predicted.0,
                    max_abs_rel_error: s.predicted.1,
                    fitted: f.map(|f| f.params.clone()).unwrap_or_default(),
                    fitted_on: f.map(|f| f.on.clone()).unwrap_or_default(),
                }
            })
            .collect();
        return super::emit_json(
            out,
            &JsonOut {
                experiment: a.experiment.display().to_string(),
                rows,
                systems,
            },
        );
    }
    super::emit(out, &md)?;
    super::emit(
        out,
        &format!(
            "\nwrote {}/ (validation.csv, summary.md, predicted-vs-observed.png)\n",
            dir.display()
        ),
    )
}

/// The command that reproduces the report.
fn command_line(a: &ValidateArgs) -> String {
    let mut c = format!("moesim validate {}", a.experiment.display());
    if !a.fit.is_empty() {
        c.push_str(&format!(" --fit {}", a.fit.join(",")));
    }
    for s in &a.fit_on {
        c.push_str(&format!(" --fit-on '{s}'"));
    }
    if let Some(o) = &a.out {
        c.push_str(&format!(" --out {}", o.display()));
    }
    c
}

fn pct(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{:+.1} %", x * 100.0)
    }
}

fn abs_pct(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{:.1} %", x * 100.0)
    }
}

fn num(x: f64) -> String {
    crate::report::numbers::sig(x)
}

/// `summary.md`: statistics per system, the fits, and every row.
fn summary_md(name: &str, v: &Validation, command: &str) -> String {
    let mut s = format!("# {name}: predictions against measurements\n\n");
    s.push_str(
        "Relative error = (predicted - observed) / observed. *Datasheet only*: the hardware \
         profile as it is, runtime `ideal`, nothing fitted. *Predicted*: with the experiment's \
         runtime, or with the parameters fitted per system below; its statistics leave out the \
         rows used for fitting. Excluded rows are shown but counted nowhere.\n\n",
    );
    let mut t = MdTable::new(&[
        "system",
        "rows",
        "excluded",
        "datasheet median abs err",
        "datasheet max abs err",
        "predicted rows",
        "median abs err",
        "max abs err",
    ]);
    for st in statistics(v) {
        t.row(vec![
            st.system.clone(),
            st.counted.to_string(),
            st.excluded.to_string(),
            abs_pct(st.datasheet.0),
            abs_pct(st.datasheet.1),
            st.predicted_rows.to_string(),
            abs_pct(st.predicted.0),
            abs_pct(st.predicted.1),
        ]);
    }
    s.push_str(&t.render());
    if !v.fits.is_empty() {
        s.push_str("\n## Fitted runtime parameters\n\n");
        for f in &v.fits {
            let params: Vec<String> = f
                .params
                .iter()
                .map(|(k, x)| format!("{k} = {}", num(*x)))
                .collect();
            let on: Vec<String> = f.on.iter().map(|i| format!("observed[{i}]")).collect();
            s.push_str(&format!(
                "- {}: {} ({} parameter(s) on {} observation(s): {}; rms log error {:.4}, {} evaluations)\n",
                f.system,
                params.join(", "),
                f.params.len(),
                f.on.len(),
                on.join(", "),
                f.rms_log_error,
                f.evaluations
            ));
        }
    }
    s.push_str("\n## Every observation\n\n");
    let mut t = MdTable::new(&[
        "#",
        "system",
        "point",
        "metric",
        "observed",
        "datasheet",
        "err",
        "predicted",
        "err",
        "role",
    ]);
    for r in &v.rows {
        t.row(vec![
            r.obs.index.to_string(),
            r.obs.system.clone(),
            r.obs.point.clone(),
            r.obs.metric.clone(),
            num(r.obs.value),
            num(r.datasheet),
            pct(r.datasheet_error()),
            num(r.predicted),
            pct(r.error()),
            match &r.obs.exclude {
                Some(why) => format!("excluded: {why}"),
                None => role(r).to_string(),
            },
        ]);
    }
    s.push_str(&t.render());
    s.push_str("\nSources:\n\n");
    let mut sources: Vec<&str> = v.rows.iter().map(|r| r.obs.source.as_str()).collect();
    sources.dedup();
    for src in sources {
        s.push_str(&format!("- {src}\n"));
    }
    s.push_str(&format!(
        "\n![predicted vs observed](predicted-vs-observed.png)\n\nReproduce: `{command}`\n"
    ));
    s
}

/// Predicted against observed, log–log: one marker per system (rows used for fitting labelled
/// `fit`, excluded rows `excluded`), the datasheet-only predictions as a series of their own, the y = x line
/// and a ±10 % band.
fn plot(name: &str, v: &Validation, stem: &Path) -> Result<()> {
    let mut series: Vec<Series> = Vec::new();
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for r in &v.rows {
        for y in [r.obs.value, r.datasheet, r.predicted] {
            lo = lo.min(y);
            hi = hi.max(y);
        }
        let s = Series::named(&mut series, &r.obs.system, true);
        s.points.push((r.obs.value, r.predicted));
        s.labels.push(if r.fitted {
            "fit".into()
        } else if r.obs.exclude.is_some() {
            "excluded".into()
        } else {
            String::new()
        });
    }
    if v.rows.iter().any(|r| r.datasheet != r.predicted) {
        for r in &v.rows {
            Series::named(&mut series, "datasheet only (every system)", true)
                .points
                .push((r.obs.value, r.datasheet));
        }
    }
    let (lo, hi) = (lo / 1.2, hi * 1.2);
    series.push(Series {
        name: "predicted = observed".into(),
        points: vec![(lo, lo), (hi, hi)],
        guide: true,
        ..Default::default()
    });
    series.push(Series {
        name: "±10 %".into(),
        band: vec![(lo, lo * 0.9, lo * 1.1), (hi, hi * 0.9, hi * 1.1)],
        ..Default::default()
    });
    XyChart {
        title: format!("{name}: predicted vs observed"),
        x_label: "observed".into(),
        y_label: "predicted".into(),
        series,
        x_scale: AxisScale::Log,
        y_scale: AxisScale::Log,
    }
    .write(stem)
}

/// A markdown table.
struct MdTable {
    text: String,
}

impl MdTable {
    fn new(header: &[&str]) -> MdTable {
        let mut text = format!("| {} |\n|", header.join(" | "));
        for _ in header {
            text.push_str("---|");
        }
        text.push('\n');
        MdTable { text }
    }

    fn row(&mut self, cells: Vec<String>) {
        let cells: Vec<String> = cells.into_iter().map(|c| c.replace('|', "/")).collect();
        self.text.push_str(&format!("| {} |\n", cells.join(" | ")));
    }

    fn render(&self) -> String {
        self.text.clone()
    }
}
