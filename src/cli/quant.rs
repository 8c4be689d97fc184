//! `moesim quant eval|dump|bench`: quantization error of every format (and the verdict on the
//! seed's pi-constant claim), packed bytes for other tools, and fused-GEMV throughput on this
//! host with a compute section for a hardware profile.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Subcommand;
use rayon::prelude::*;
use serde::Serialize;

use super::table::{Align, Table};
use super::{emit, emit_json};
use crate::atomic_file::write_atomic;
use crate::error::{Error, InputError, Result};
use crate::quant::eval::{ErrorStats, WeightDistribution, error_stats, sample};
use crate::quant::gemv::simd_level;
use crate::quant::{QuantizedMatrix, Rotation, WeightFormat, pi_fitted_round_trip};
use crate::report::flat_csv::to_csv;
use crate::report::plot::{Series, XyChart};

/// `moesim quant …`
#[derive(Debug, Subcommand)]
pub enum QuantCommand {
    /// Quantization error of every format, with and without a Hadamard rotation, on synthetic
    /// or real weights; CSV, a plot, and the verdict on PiQ3 against the uniform baseline.
    Eval(EvalArgs),
    /// Quantize a matrix and write its packed bytes (ggml's layout where one exists).
    Dump(DumpArgs),
    /// Fused dequantize-dot GEMV throughput of every format on this host, one core and all
    /// cores, with a compute section for a hardware profile.
    Bench(BenchArgs),
}

/// Arguments of `quant eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Shape of the synthetic matrices, ROWSxCOLS (COLS a multiple of 256).
    #[arg(long, default_value = "4096x256", value_parser = parse_shape)]
    pub shape: (usize, usize),
    /// Seed of the synthetic matrices.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Synthetic distributions: gaussian, student-t.
    #[arg(long, value_delimiter = ',', default_value = "gaussian,student-t")]
    pub dist: Vec<String>,
    /// Degrees of freedom of the Student-t matrices.
    #[arg(long, default_value_t = 4.0)]
    pub df: f64,
    /// A real weight matrix instead: .npy (f32 or f16, 2-D) or .safetensors (with --tensor).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// The tensor to read from a .safetensors file.
    #[arg(long)]
    pub tensor: Option<String>,
    /// Formats (default: every format but f32).
    #[arg(long, value_delimiter = ',')]
    pub formats: Vec<WeightFormat>,
    /// Seed of the Hadamard rotation's random signs.
    #[arg(long, default_value_t = 1)]
    pub hadamard_seed: u64,
    /// Skip the rotated variants.
    #[arg(long)]
    pub no_hadamard: bool,
    /// Output directory for CSV, plots and summary.
    #[arg(long, default_value = "reports/quant-eval")]
    pub out: PathBuf,
    /// Print the rows as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `quant dump`.
#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    /// The format.
    #[arg(long)]
    pub format: WeightFormat,
    /// The matrix: .npy (f32 or f16, 2-D) or .safetensors (with --tensor).
    #[arg(long)]
    pub input: PathBuf,
    /// The tensor to read from a .safetensors file.
    #[arg(long)]
    pub tensor: Option<String>,
    /// Where to write the packed bytes (rows one after another).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the dequantized matrix as f32 .npy.
    #[arg(long)]
    pub dequantized: Option<PathBuf>,
    /// Quantize in a randomized Hadamard basis with this seed (the dump is then in that basis).
    #[arg(long)]
    pub hadamard_seed: Option<u64>,
}

/// Arguments of `quant bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Matrix shapes ROWSxCOLS (rows = outputs).
    #[arg(long, value_delimiter = ',', default_value = "1024x2816,4096x14336", value_parser = parse_shape)]
    pub shapes: Vec<(usize, usize)>,
    /// Formats (default: every format but f32).
    #[arg(long, value_delimiter = ',')]
    pub formats: Vec<WeightFormat>,
    /// Timed repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Minimum time of one repetition, in milliseconds.
    #[arg(long, default_value_t = 150)]
    pub min_ms: u64,
    /// The shape whose all-core rates go into the printed compute section.
    #[arg(long, default_value = "1024x2816", value_parser = parse_shape)]
    pub profile_shape: (usize, usize),
    /// Print the rows as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_shape(s: &str) -> std::result::Result<(usize, usize), String> {
    let (r, c) = s
        .split_once('x')
        .ok_or_else(|| format!("`{s}`: expected ROWSxCOLS, e.g. 4096x256"))?;
    let p = |v: &str| v.trim().parse::<usize>().ok().filter(|&n| n > 0);
    match (p(r), p(c)) {
        (Some(r), Some(c)) => {
            // The f32 matrix and its quantized copies.
            let bytes = (r as u64)
                .checked_mul(c as u64)
                .and_then(|n| n.checked_mul(8));
            crate::units::check_working_bytes(&format!("`{s}`"), bytes)?;
            Ok((r, c))
        }
        _ => Err(format!("`{s}`: expected ROWSxCOLS with positive integers")),
    }
}

/// Runs `moesim quant …`.
pub fn run(cmd: QuantCommand, out: &mut dyn Write) -> Result<()> {
    match cmd {
        QuantCommand::Eval(a) => eval_cmd(a, out),
        QuantCommand::Dump(a) => dump_cmd(a, out),
        QuantCommand::Bench(a) => bench_cmd(a, out),
    }
}

fn default_formats(given: &[WeightFormat]) -> Vec<WeightFormat> {
    if given.is_empty() {
        WeightFormat::ALL
            .iter()
            .copied()
            .filter(|&f| f != WeightFormat::F32)
            .collect()
    } else {
        given.to_vec()
    }
}

// ---- eval ----------------------------------------------------------------------------------

/// One row of `quant-eval.csv`.
#[derive(Debug, Clone, Serialize)]
struct EvalRow {
    source: String,
    rows: usize,
    cols: usize,
    quantizer: String,
    family: String,
    hadamard: bool,
    bits_per_weight: f64,
    rel_rmse: f64,
    sqnr_db: f64,
    max_abs_error: f64,
    /// The figure `quantization.md` §4 measured with ggml/gguf on the same distribution and shape.
    reference_sqnr_db: Option<f64>,
}

/// SQNR (dB) of ggml's own quantizers on 4096×256 matrices, from `../shared/reference/quantization.md`
/// §4 (Gaussian, Student-t(4), Student-t(4) after a randomized Hadamard rotation).
fn reference_sqnr(format: WeightFormat, source: &str, hadamard: bool) -> Option<f64> {
    let row: [f64; 3] = match format {
        WeightFormat::Q8_0 => [45.42, 42.71, 45.52],
        WeightFormat::Q4_0 => [21.31, 18.71, 21.39],
        WeightFormat::Q4K => [22.94, 21.24, 23.00],
        WeightFormat::Q3K => [16.42, 14.72, 16.49],
        WeightFormat::Q2K => [10.55, 9.31, 10.65],
        WeightFormat::TQ2_0 | WeightFormat::TQ1_0 => [1.86, 1.48, 1.91],
        _ => return None,
    };
    match (source, hadamard) {
        ("gaussian", false) => Some(row[0]),
        ("student-t4", false) => Some(row[1]),
        ("student-t4", true) => Some(row[2]),
        _ => None,
    }
}

struct Source {
    name: String,
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

fn eval_cmd(a: EvalArgs, out: &mut dyn Write) -> Result<()> {
    let formats = default_formats(&a.formats);
    let mut sources = Vec::new();
    if let Some(path) = &a.input {
        let m = crate::weights::read_matrix(path, a.tensor.as_deref())?;
        let name = match &a.tensor {
            Some(t) => format!("{}:{t}", path.display()),
            None => path.display().to_string(),
        };
        sources.push(Source {
            name,
            rows: m.rows,
            cols: m.cols,
            data: m.data,
        });
    } else {
        if a.tensor.is_some() {
            return Err(Error::usage("--tensor needs --input FILE.safetensors"));
        }
        crate::param::within("--df", a.df, 1.0, 1e6)
            .map_err(|e| Error::usage(format!("--df {}: {}", e.value, e.reason)))?;
        let (rows, cols) = a.shape;
        for d in &a.dist {
            let dist = match d.as_str() {
                "gaussian" => WeightDistribution::Gaussian,
                "student-t" => WeightDistribution::StudentT(a.df),
                other => {
                    return Err(Error::usage(format!(
                        "--dist {other}: expected gaussian or student-t"
                    )));
                }
            };
            // The Student-t matrix draws from the next seed, as quantization.md §4 does.
            let seed = if matches!(dist, WeightDistribution::Gaussian) {
                a.seed
            } else {
                a.seed + 1
            };
            sources.push(Source {
                name: dist.name(),
                rows,
                cols,
                data: sample(dist, rows * cols, seed),
            });
        }
    }
    for s in &sources {
        if let Some(f) = formats
            .iter()
            .find(|f| s.cols % crate::quant::kernels(**f).block != 0)
        {
            let reason = format!(
                "rows of {} weights are not whole {}-weight blocks of {f}; pick a shape or formats that fit",
                s.cols,
                crate::quant::kernels(*f).block
            );
            return Err(match &a.input {
                Some(p) => Error::Input(InputError::new(p.display().to_string(), reason)),
                None => Error::usage(format!("--shape {}x{}: {reason}", s.rows, s.cols)),
            });
        }
    }
    let rotations: Vec<bool> = if a.no_hadamard {
        vec![false]
    } else {
        vec![false, true]
    };
    let standard_shape = a.input.is_none() && a.shape == (4096, 256) && a.seed == 0 && a.df == 4.0;
    let mut rows: Vec<EvalRow> = Vec::new();
    for s in &sources {
        let rotation = Rotation::new(s.cols, a.hadamard_seed);
        let mut push = |quantizer: String,
                        family: &str,
                        bpw: f64,
                        had: bool,
                        e: ErrorStats,
                        reference: Option<f64>| {
            rows.push(EvalRow {
                source: s.name.clone(),
                rows: s.rows,
                cols: s.cols,
                quantizer,
                family: family.to_string(),
                hadamard: had,
                bits_per_weight: bpw,
                rel_rmse: e.rel_rmse,
                sqnr_db: e.sqnr_db,
                max_abs_error: e.max_abs,
                reference_sqnr_db: reference,
            });
        };
        for &f in &formats {
            for &had in &rotations {
                let q = QuantizedMatrix::quantize(
                    f,
                    s.rows,
                    s.cols,
                    &s.data,
                    had.then(|| rotation.clone()),
                )
                .and_then(|q| q.check_representable(&s.data).map(|()| q))
                .map_err(|r| match &a.input {
                    Some(p) => Error::Input(InputError::new(p.display().to_string(), r)),
                    None => Error::usage(format!("{}: {r}", s.name)),
                })?;
                let e = error_stats(&s.data, &q.dequantize());
                let reference = if standard_shape {
                    reference_sqnr(f, &s.name, had)
                } else {
                    None
                };
                push(
                    f.name().to_string(),
                    f.family(),
                    f.bits_per_weight(),
                    had,
                    e,
                    reference,
                );
            }
        }
        // PiQ with α fitted per block: π cancels into the scale.
        for (bits, k, name, bpw_format) in [
            (3, 4, "piq3-fit", WeightFormat::Piq3),
            (2, 3, "piq2-fit", WeightFormat::Piq2),
        ] {
            if !formats.contains(&bpw_format) || s.cols % 256 != 0 {
                continue;
            }
            for &had in &rotations {
                let r = pi_fitted_round_trip(
                    bits,
                    k,
                    s.rows,
                    s.cols,
                    &s.data,
                    had.then_some(&rotation),
                );
                push(
                    name.to_string(),
                    "pi-constant, α fitted",
                    bpw_format.bits_per_weight(),
                    had,
                    error_stats(&s.data, &r),
                    None,
                );
            }
        }
    }

    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;
    write_atomic(a.out.join("quant-eval.csv"), &to_csv(&rows))?;
    let mut plots = Vec::new();
    for s in &sources {
        let stem = a.out.join(format!("sqnr-vs-bpw-{}", sanitize(&s.name)));
        plot_source(&rows, &s.name, &stem)?;
        plots.push(stem);
    }
    let verdicts: Vec<String> = sources
        .iter()
        .flat_map(|s| verdict(&rows, &s.name))
        .collect();
    let text = eval_text(&rows, &verdicts, standard_shape);
    write_atomic(
        a.out.join("summary.md"),
        eval_markdown(&a, &rows, &verdicts).as_bytes(),
    )?;
    if a.json {
        return emit_json(out, &rows);
    }
    let mut s = text;
    s.push_str(&format!(
        "\nwrote {}/ (quant-eval.csv, summary.md, {})\n",
        a.out.display(),
        plots
            .iter()
            .map(|p| format!(
                "{}.png/.svg",
                p.file_name().unwrap_or_default().to_string_lossy()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    emit(out, &s)
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `piq3` → `PiQ3`, `uq3` → `UQ3`.
fn display_name(q: &str) -> String {
    match q.strip_prefix("piq") {
        Some(rest) => format!("PiQ{rest}"),
        None => q.to_uppercase(),
    }
}

fn find<'r>(rows: &'r [EvalRow], source: &str, q: &str, had: bool) -> Option<&'r EvalRow> {
    rows.iter()
        .find(|r| r.source == source && r.quantizer == q && r.hadamard == had)
}

/// The plain-language verdicts on PiQ3 and PiQ2 for one source.
fn verdict(rows: &[EvalRow], source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (pi, uq, fit, claim) in [
        ("piq3", "uq3", "piq3-fit", true),
        ("piq2", "uq2", "piq2-fit", false),
    ] {
        let (Some(p), Some(u)) = (find(rows, source, pi, false), find(rows, source, uq, false))
        else {
            continue;
        };
        let d = p.sqnr_db - u.sqnr_db;
        let mut v = format!(
            "{source}: {} ({} bpw) vs {} (same grid and storage, MSE-optimal step): {:.2} dB against {:.2} dB, {:+.2} dB = {:+.3} bit: {}",
            display_name(pi),
            p.bits_per_weight,
            display_name(uq),
            p.sqnr_db,
            u.sqnr_db,
            d,
            d / 6.02,
            if d > 0.0 {
                format!("{} beats the uniform baseline", display_name(pi))
            } else {
                format!("{} does not beat the uniform baseline", display_name(pi))
            }
        );
        if claim {
            v.push_str("; the seed claims +0.5 bit (+3.01 dB)");
        }
        v.push('.');
        if let Some(f) = find(rows, source, fit, false) {
            v.push_str(&format!(
                " With α fitted per block instead of the seed's calibration it reaches {:.2} dB ({:+.2} dB against {}): π cancels into the fitted scale.",
                f.sqnr_db,
                f.sqnr_db - u.sqnr_db,
                display_name(uq)
            ));
        }
        out.push(v);
    }
    out
}

fn db(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "inf".into()
    }
}

fn eval_text(rows: &[EvalRow], verdicts: &[String], with_reference: bool) -> String {
    let mut s = String::new();
    let mut sources: Vec<&str> = Vec::new();
    for r in rows {
        if !sources.contains(&r.source.as_str()) {
            sources.push(&r.source);
        }
    }
    for src in sources {
        let first = rows
            .iter()
            .find(|r| r.source == src)
            .expect("source has rows");
        s.push_str(&format!("\n{src} ({} x {}):\n", first.rows, first.cols));
        let mut headers = vec![
            ("quantizer", Align::Left),
            ("family", Align::Left),
            ("bpw", Align::Right),
            ("rel RMSE", Align::Right),
            ("SQNR dB", Align::Right),
            ("max |err|", Align::Right),
            ("+Hadamard SQNR", Align::Right),
        ];
        if with_reference {
            headers.push(("ggml ref (§4)", Align::Right));
        }
        let mut t = Table::new(&headers);
        for r in rows.iter().filter(|r| r.source == src && !r.hadamard) {
            let had = find(rows, src, &r.quantizer, true);
            let mut cells = vec![
                r.quantizer.clone(),
                r.family.clone(),
                format!("{:.4}", r.bits_per_weight),
                format!("{:.4}", r.rel_rmse),
                db(r.sqnr_db),
                format!("{:.4}", r.max_abs_error),
                had.map_or("-".into(), |h| db(h.sqnr_db)),
            ];
            if with_reference {
                let reference = [Some(r), had]
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.reference_sqnr_db.map(|v| (x.hadamard, v)));
                cells.push(
                    reference
                        .map(|(h, v)| {
                            if h {
                                format!("+H {v:.2}")
                            } else {
                                format!("{v:.2}")
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" / "),
                );
            }
            t.row(cells);
        }
        s.push_str(&t.render());
    }
    s.push_str("\nverdict on the seed's pi-constant quantizer (6.02 dB = 1 bit):\n");
    for v in verdicts {
        s.push_str(&format!("- {v}\n"));
    }
    s
}

fn eval_markdown(a: &EvalArgs, rows: &[EvalRow], verdicts: &[String]) -> String {
    let mut s = String::from("# Quantization error by format\n\n");
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(first) = args.first_mut() {
        *first = "moesim".into();
    }
    let cmd = args.join(" ");
    s.push_str(&format!(
        "Produced by `{cmd}` (moesim {}); every figure below was measured by that run.\n\n",
        env!("CARGO_PKG_VERSION")
    ));
    let _ = a;
    s.push_str("## Verdict on the pi-constant quantizer\n\n");
    for v in verdicts {
        s.push_str(&format!("- {v}\n"));
    }
    s.push_str("\n## All quantizers\n\n| source | quantizer | family | bpw | rel RMSE | SQNR dB | max abs err | Hadamard | ggml reference dB |\n|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {:.4} | {:.4} | {} | {:.4} | {} | {} |\n",
            r.source,
            r.quantizer,
            r.family,
            r.bits_per_weight,
            r.rel_rmse,
            db(r.sqnr_db),
            r.max_abs_error,
            if r.hadamard { "yes" } else { "no" },
            r.reference_sqnr_db
                .map_or("-".into(), |v| format!("{v:.2}"))
        ));
    }
    s
}

fn plot_source(rows: &[EvalRow], source: &str, stem: &Path) -> Result<()> {
    let mut series: Vec<Series> = Vec::new();
    let mut add = |name: String, filter: &dyn Fn(&EvalRow) -> bool| {
        let mut pts: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.source == source && r.bits_per_weight <= 9.0 && filter(r))
            .map(|r| (r.bits_per_weight, r.sqnr_db))
            .collect();
        pts.sort_by(|a, b| a.partial_cmp(b).expect("finite bpw"));
        if !pts.is_empty() {
            series.push(Series {
                name,
                points: pts,
                ..Default::default()
            });
        }
    };
    for family in [
        "ggml legacy",
        "ggml k-quant",
        "ternary",
        "pi-constant (seed)",
        "pi-constant, α fitted",
        "uniform, MSE-optimal step",
    ] {
        add(family.to_string(), &|r| r.family == family && !r.hadamard);
    }
    add("ggml k-quant + Hadamard".into(), &|r| {
        r.family == "ggml k-quant" && r.hadamard
    });
    XyChart {
        title: format!("SQNR against bits per weight: {source}"),
        x_label: "bits per weight (scales included)".into(),
        y_label: "SQNR (dB)".into(),
        series,
        ..Default::default()
    }
    .write(stem)
}

// ---- dump ----------------------------------------------------------------------------------

fn dump_cmd(a: DumpArgs, out: &mut dyn Write) -> Result<()> {
    crate::atomic_file::refuse_overwriting_inputs(&a.out, &[&a.input], "--out")?;
    if let Some(d) = &a.dequantized {
        crate::atomic_file::refuse_overwriting_inputs(d, &[&a.input, &a.out], "--dequantized")?;
    }
    let m = crate::weights::read_matrix(&a.input, a.tensor.as_deref())?;
    let rotation = a.hadamard_seed.map(|s| Rotation::new(m.cols, s));
    let q = QuantizedMatrix::quantize(a.format, m.rows, m.cols, &m.data, rotation)
        .map_err(|r| Error::Input(InputError::new(a.input.display().to_string(), r)))?;
    // The dump mirrors ggml byte for byte, overflowing scales included (gguf's quantizer writes
    // them too): such a matrix is dumped, with a warning naming the block.
    if let Err(r) = q.check_representable(&m.data) {
        super::warn(&format!(
            "{}: {r}; the dump holds ggml's bytes, which dequantize to inf or NaN there",
            a.input.display()
        ));
    }
    write_atomic(&a.out, &q.data)?;
    if let Some(path) = &a.dequantized {
        let d = if q.rotation.is_some() {
            // In the rotated basis, as stored.
            let k = crate::quant::kernels(a.format);
            let mut v = vec![0.0f32; m.rows * m.cols];
            v.par_chunks_mut(m.cols)
                .zip(q.data.par_chunks(q.row_bytes()))
                .for_each(|(o, b)| (k.dequantize)(b, o));
            v
        } else {
            q.dequantize()
        };
        write_atomic(path, &crate::weights::npy::write_f32(m.rows, m.cols, &d))?;
    }
    emit(
        out,
        &format!(
            "wrote {}: {} x {} at {} ({} bytes, {} bpw){}\n",
            a.out.display(),
            m.rows,
            m.cols,
            a.format,
            q.data.len(),
            a.format.bits_per_weight(),
            a.dequantized.as_ref().map_or(String::new(), |p| format!(
                "; dequantized to {}",
                p.display()
            ))
        ),
    )
}

// ---- bench ---------------------------------------------------------------------------------

/// One row of `quant bench`.
#[derive(Debug, Clone, Serialize)]
struct BenchRow {
    format: String,
    rows: usize,
    cols: usize,
    simd: &'static str,
    one_core_weights_per_s: f64,
    all_cores_weights_per_s: f64,
    threads: usize,
    all_cores_packed_bytes_per_s: f64,
    /// ggml's hand-written SIMD vec_dot on one core of the reference host (quantization.md §7.3).
    ggml_one_core_weights_per_s: Option<f64>,
}

fn ggml_rate(f: WeightFormat) -> Option<f64> {
    Some(match f {
        WeightFormat::Q8_0 => 21.3e9,
        WeightFormat::Q4_0 => 21.6e9,
        WeightFormat::Q4K => 13.5e9,
        WeightFormat::Q3K => 16.0e9,
        WeightFormat::Q2K => 16.6e9,
        WeightFormat::TQ2_0 => 32.0e9,
        WeightFormat::TQ1_0 => 24.0e9,
        _ => return None,
    })
}

/// Median weights per second of `run` (one GEMV per call) over `repeats` timed batches.
fn measure(weights: usize, repeats: usize, min_ms: u64, mut run: impl FnMut()) -> f64 {
    // Warm up and size a batch.
    let t = Instant::now();
    run();
    let once = t.elapsed().as_secs_f64().max(1e-7);
    let batch = ((min_ms as f64 / 1000.0 / once).ceil() as usize).max(1);
    let mut rates: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                run();
            }
            (weights * batch) as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(|a, b| a.partial_cmp(b).expect("finite rates"));
    rates[rates.len() / 2]
}

fn bench_cmd(a: BenchArgs, out: &mut dyn Write) -> Result<()> {
    let formats = default_formats(&a.formats);
    let threads = rayon::current_num_threads();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| Error::usage(e.to_string()))?;
    let mut rows = Vec::new();
    let mut shapes = a.shapes.clone();
    if !shapes.contains(&a.profile_shape) {
        shapes.push(a.profile_shape);
    }
    for &(r, c) in &shapes {
        let w = sample(WeightDistribution::Gaussian, r * c, 1);
        let x = sample(WeightDistribution::Gaussian, c, 2);
        let mut y = vec![0.0f32; r];
        for &f in &formats {
            let q = QuantizedMatrix::quantize(f, r, c, &w, None)
                .map_err(|e| Error::usage(format!("--shapes {r}x{c}: {e}")))?;
            let single =
                one.install(|| measure(r * c, a.repeats, a.min_ms, || q.gemv_serial(&x, &mut y)));
            let all = measure(r * c, a.repeats, a.min_ms, || q.gemv(&x, &mut y));
            rows.push(BenchRow {
                format: f.name().into(),
                rows: r,
                cols: c,
                simd: simd_level().name(),
                one_core_weights_per_s: single,
                all_cores_weights_per_s: all,
                threads,
                all_cores_packed_bytes_per_s: all * f.bits_per_weight() / 8.0,
                ggml_one_core_weights_per_s: ggml_rate(f),
            });
        }
    }
    if a.json {
        return emit_json(out, &rows);
    }
    let g = |x: f64| format!("{:.2}", x / 1e9);
    let mut t = Table::new(&[
        ("format", Align::Left),
        ("shape", Align::Left),
        ("1 core G w/s", Align::Right),
        (&format!("{threads} cores G w/s"), Align::Right),
        ("GB/s packed", Align::Right),
        ("ggml 1-core G w/s", Align::Right),
        ("ratio to ggml", Align::Right),
    ]);
    for r in &rows {
        t.row(vec![
            r.format.clone(),
            format!("{}x{}", r.rows, r.cols),
            g(r.one_core_weights_per_s),
            g(r.all_cores_weights_per_s),
            g(r.all_cores_packed_bytes_per_s),
            r.ggml_one_core_weights_per_s.map_or("-".into(), g),
            r.ggml_one_core_weights_per_s.map_or("-".into(), |v| {
                format!("{:.2}", r.one_core_weights_per_s / v)
            }),
        ]);
    }
    let mut s = format!(
        "fused dequantize-dot GEMV, f32 activations, kernels at {} (MOESIM_SIMD to force a level), medians of {} repetitions\n\n",
        simd_level().name(),
        a.repeats
    );
    s.push_str(&t.render());
    s.push_str(&profile_section(&rows, a.profile_shape, threads));
    emit(out, &s)
}

/// The `[compute]` section of a hardware profile from the all-core rates at `shape`; none
/// when a class it needs was not measured (a `--formats` subset), since a profile must state
/// every class and a made-up figure would be worse than none.
fn profile_section(rows: &[BenchRow], shape: (usize, usize), threads: usize) -> String {
    let rate = |f: &str| {
        rows.iter()
            .find(|r| r.format == f && (r.rows, r.cols) == shape)
            .map(|r| r.all_cores_weights_per_s)
    };
    let needed = ["f16", "q8_0", "q4_k", "q3_k", "q2_k", "tq2_0"];
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|f| rate(f).is_none())
        .collect();
    if !missing.is_empty() {
        return format!(
            "\n# No [compute] section: a profile needs a rate for every class, and {} was not measured at {}x{} (measure the default formats, or give them with --formats).\n",
            missing.join(", "),
            shape.0,
            shape.1
        );
    }
    let fmt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{:.3e}", v));
    format!(
        "\n# Paste into a hardware profile: measured on this host by `moesim quant bench` (moesim {}),\n\
         # all {threads} cores, {}x{} matrices, kernels at {}; q4 = Q4_K, q3 = Q3_K, q2 = Q2_K, ternary = TQ2_0,\n\
         # dense = Q8_0. energy_pj_per_mac is not measured: give it a source and set energy_calibrated.\n\
         [compute]\n\
         cores = {threads}\n\
         expert_weights_per_s = {{ f16 = {}, q8 = {}, q4 = {}, q3 = {}, q2 = {}, ternary = {} }}\n\
         dense_weights_per_s = {}\n\
         energy_pj_per_mac = 1.0                 # assumed: replace with a sourced figure\n\
         energy_calibrated = \"assumed\"\n\
         calibrated = \"measured\"\n",
        env!("CARGO_PKG_VERSION"),
        shape.0,
        shape.1,
        simd_level().name(),
        fmt(rate("f16")),
        fmt(rate("q8_0")),
        fmt(rate("q4_k")),
        fmt(rate("q3_k")),
        fmt(rate("q2_k")),
        fmt(rate("tq2_0")),
        fmt(rate("q8_0")),
    )
}
