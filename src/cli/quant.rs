//! `moesim quant eval|dump|bench`: quantization error of every format (and the verdict on the
//! seed's pi-constant claim), packed bytes for other tools, and fused-GEMV throughput on this
//! host with a compute section for a hardware profile.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::table::{Align, Table};
use super::{emit, emit_json};
use crate::atomic_file::write_atomic;
use crate::error::{Error, InputError, Result};
use crate::quant::bench::{Bench, BenchRow, compute_rates, peak_rates};
use crate::quant::eval::WeightDistribution;
use crate::quant::eval_rows::{EvalMatrix, EvalOptions, EvalRow, eval_matrix, find_row, verdicts};
use crate::quant::gemv::simd_level;
use crate::quant::{Kernel, QuantizedMatrix, Rotation, WeightFormat, ggml_reference};
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
    /// Synthetic distributions: gaussian, student-t, outlier-columns (Gaussian with every
    /// 64th column 20 times larger).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "gaussian,student-t,outlier-columns"
    )]
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
    /// Kernels to time: f32 (the reference) and int8 (8-bit activations, integer dots; formats
    /// without one are timed with f32 only).
    #[arg(long, value_delimiter = ',', default_value = "f32,int8", value_parser = str::parse::<Kernel>)]
    pub kernels: Vec<Kernel>,
    /// Tokens per product: 1 is a matrix-vector product (decode); more time the batched
    /// kernels (prefill, batched decode), whose best all-core rate becomes the printed
    /// section's peak_macs_per_s.
    #[arg(long, value_delimiter = ',', default_value = "1", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub batches: Vec<u32>,
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

fn eval_cmd(a: EvalArgs, out: &mut dyn Write) -> Result<()> {
    let formats = default_formats(&a.formats);
    let mut sources = Vec::new();
    if let Some(path) = &a.input {
        let m = crate::weights::read_matrix(path, a.tensor.as_deref())?;
        let name = match &a.tensor {
            Some(t) => format!("{}:{t}", path.display()),
            None => path.display().to_string(),
        };
        sources.push(EvalMatrix {
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
                "outlier-columns" => WeightDistribution::OutlierColumns,
                other => {
                    return Err(Error::usage(format!(
                        "--dist {other}: expected gaussian, student-t or outlier-columns"
                    )));
                }
            };
            sources.push(EvalMatrix::synthetic(dist, rows, cols, a.seed));
        }
    }
    // A reason about a matrix names the file it came from, or the flag that shaped it.
    let bad = |m: &EvalMatrix, shape_flag: bool, reason: String| match &a.input {
        Some(p) => Error::Input(InputError::new(p.display().to_string(), reason)),
        None if shape_flag => Error::usage(format!("--shape {}x{}: {reason}", m.rows, m.cols)),
        None => Error::usage(format!("{}: {reason}", m.name)),
    };
    for m in &sources {
        m.check_blocks(&formats).map_err(|r| bad(m, true, r))?;
    }
    let with_reference = a.input.is_none() && ggml_reference::sqnr_applies(a.shape, a.seed, a.df);
    let options = EvalOptions {
        formats,
        hadamard: !a.no_hadamard,
        hadamard_seed: a.hadamard_seed,
        with_reference,
    };
    let mut rows: Vec<EvalRow> = Vec::new();
    for m in &sources {
        rows.extend(eval_matrix(m, &options).map_err(|r| bad(m, false, r))?);
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
        .flat_map(|s| verdicts(&rows, &s.name))
        .collect();
    let text = eval_text(&rows, &verdicts, with_reference);
    write_atomic(
        a.out.join("summary.md"),
        eval_markdown(&rows, &verdicts).as_bytes(),
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
            ("W·x SQNR f32", Align::Right),
            ("W·x SQNR int8", Align::Right),
        ];
        if with_reference {
            headers.push(("ggml ref (§4)", Align::Right));
        }
        let mut t = Table::new(&headers);
        for r in rows.iter().filter(|r| r.source == src && !r.hadamard) {
            let had = find_row(rows, src, &r.quantizer, true);
            let mut cells = vec![
                r.quantizer.clone(),
                r.family.clone(),
                format!("{:.4}", r.bits_per_weight),
                format!("{:.4}", r.rel_rmse),
                db(r.sqnr_db),
                format!("{:.4}", r.max_abs_error),
                had.map_or("-".into(), |h| db(h.sqnr_db)),
                db(r.output_sqnr_db),
                r.output_sqnr_int8_db.map_or("-".into(), db),
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

fn eval_markdown(rows: &[EvalRow], verdicts: &[String]) -> String {
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
    s.push_str("## Verdict on the pi-constant quantizer\n\n");
    for v in verdicts {
        s.push_str(&format!("- {v}\n"));
    }
    s.push_str(&format!(
        "\n## All quantizers\n\nSQNR dB is the weights' error. *W·x* columns: the error of matrix-vector products against the unquantized weights in exact arithmetic, over {} Gaussian vectors, with the f32 kernel (the weights' error as a layer sees it; the quality path's kernel) and the int8 kernel (the activation quantized to 8-bit blocks too; the host decode's kernel, where the format has one).\n\n| source | quantizer | family | bpw | rel RMSE | SQNR dB | max abs err | Hadamard | ggml reference dB | W·x SQNR f32 | W·x SQNR int8 |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
        crate::quant::eval_rows::OUTPUT_VECTORS
    ));
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {:.4} | {:.4} | {} | {:.4} | {} | {} | {} | {} |\n",
            r.source,
            r.quantizer,
            r.family,
            r.bits_per_weight,
            r.rel_rmse,
            db(r.sqnr_db),
            r.max_abs_error,
            if r.hadamard { "yes" } else { "no" },
            r.reference_sqnr_db
                .map_or("-".into(), |v| format!("{v:.2}")),
            db(r.output_sqnr_db),
            r.output_sqnr_int8_db.map_or("-".into(), db),
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
        "ggml i-quant",
        "microscaling fp4",
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
        // Neither exists yet: compare the paths themselves.
        let same = |x: &std::path::Path, y: &std::path::Path| {
            std::path::absolute(x)
                .ok()
                .zip(std::path::absolute(y).ok())
                .is_some_and(|(x, y)| x == y)
        };
        if same(d, &a.out) {
            return Err(Error::usage(format!(
                "--dequantized {}: is the same file as --out; give two paths",
                d.display()
            )));
        }
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
        let d = q.dequantize_stored();
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

fn bench_cmd(a: BenchArgs, out: &mut dyn Write) -> Result<()> {
    let formats = default_formats(&a.formats);
    let threads = rayon::current_num_threads();
    let bench = Bench::new(a.repeats, a.min_ms).map_err(Error::usage)?;
    let mut rows = Vec::new();
    let mut shapes = a.shapes.clone();
    if !shapes.contains(&a.profile_shape) {
        shapes.push(a.profile_shape);
    }
    let batches: Vec<usize> = a.batches.iter().map(|&b| b as usize).collect();
    if !batches.contains(&1) {
        return Err(Error::usage(
            "--batches must include 1: the profile's rates are matrix-vector rates".to_string(),
        ));
    }
    for &(r, c) in &shapes {
        crate::units::check_working_bytes(
            &format!("--shapes {r}x{c} with --batches"),
            (r.max(c) as u64)
                .checked_mul(*batches.iter().max().unwrap_or(&1) as u64)
                .and_then(|v| v.checked_mul(16)),
        )
        .map_err(Error::usage)?;
        rows.extend(
            bench
                .shape(r, c, &formats, &batches, &a.kernels)
                .map_err(|e| Error::usage(format!("--shapes {r}x{c}: {e}")))?,
        );
    }
    if a.json {
        return emit_json(out, &rows);
    }
    let g = |x: f64| format!("{:.2}", x / 1e9);
    let mut t = Table::new(&[
        ("format", Align::Left),
        ("kernel", Align::Left),
        ("shape", Align::Left),
        ("batch", Align::Right),
        ("1 core G w/s", Align::Right),
        (&format!("{threads} cores G w/s"), Align::Right),
        ("GB/s packed", Align::Right),
        ("ggml 1-core G w/s", Align::Right),
        ("ratio to ggml", Align::Right),
    ]);
    for r in &rows {
        t.row(vec![
            r.format.clone(),
            r.kernel.into(),
            format!("{}x{}", r.rows, r.cols),
            r.batch.to_string(),
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
        "fused kernels on packed weights: f32 (dequantize-dot against f32 activations, the reference) and int8 (activations quantized to 8-bit blocks, integer dots); at batch > 1 a rate counts weight-token products; SIMD level {} (MOESIM_SIMD to force one), medians of {} repetitions\n\n",
        simd_level().name(),
        a.repeats
    );
    s.push_str(&t.render());
    s.push_str(&profile_section(&rows, a.profile_shape, threads));
    emit(out, &s)
}

/// A `[[compute_units]]` entry for a hardware profile from the all-core rates at `shape`; none
/// when a class it needs was not measured (a `--formats` subset), since a profile must state
/// every class and a made-up figure would be worse than none.
fn profile_section(rows: &[BenchRow], shape: (usize, usize), threads: usize) -> String {
    let r = match compute_rates(rows, shape) {
        Ok(r) => r,
        Err(missing) => {
            return format!(
                "\n# No [[compute_units]] entry: a profile needs a rate for every class, and {} was not measured at {}x{} (measure the default formats, or give them with --formats).\n",
                missing.join(", "),
                shape.0,
                shape.1
            );
        }
    };
    let fmt = |v: f64| format!("{v:.3e}");
    let peak = match peak_rates(rows, shape) {
        Some(p) => format!(
            "peak_macs_per_s = {{ f16 = {}, q8 = {}, q4 = {}, q3 = {}, q2 = {}, ternary = {} }}\n\
             dense_peak_macs_per_s = {}\n",
            fmt(p.f16),
            fmt(p.q8),
            fmt(p.q4),
            fmt(p.q3),
            fmt(p.q2),
            fmt(p.ternary),
            fmt(p.q8)
        ),
        None => String::new(),
    };
    let peak_note = if peak.is_empty() {
        "# No peak_macs_per_s (only batch 1 measured): n tokens cost n times one on this unit (the\n\
         # roofline's default); measure --batches 1,32 for the batched kernels' peak."
    } else {
        "# peak_macs_per_s: the best all-core weight-token rate of any measured batch (the batched\n\
         # kernels reuse each packed row across the tokens)."
    };
    format!(
        "\n# Paste into a hardware profile: measured on this host by `moesim quant bench` (moesim {}),\n\
         # all {threads} cores, {}x{} matrices, kernels at {}; q4 = Q4_K, q3 = Q3_K, q2 = Q2_K, ternary = TQ2_0,\n\
         # dense = Q8_0; the fastest kernel of each format. energy_pj_per_mac is not measured: give it\n\
         # a source and set energy_calibrated. No launch_ns (not measured, 0).\n\
         {peak_note}\n\
         # The unit reads weights from the tier named `dram`: rename it to match the profile.\n\
         [[compute_units]]\n\
         name = \"cpu\"\n\
         tier = \"dram\"\n\
         cores = {threads}\n\
         expert_weights_per_s = {{ f16 = {}, q8 = {}, q4 = {}, q3 = {}, q2 = {}, ternary = {} }}\n\
         dense_weights_per_s = {}\n\
         {peak}\
         energy_pj_per_mac = 1.0                 # assumed: replace with a sourced figure\n\
         energy_calibrated = \"assumed\"\n\
         calibrated = \"measured\"\n",
        env!("CARGO_PKG_VERSION"),
        shape.0,
        shape.1,
        simd_level().name(),
        fmt(r.f16),
        fmt(r.q8),
        fmt(r.q4),
        fmt(r.q3),
        fmt(r.q2),
        fmt(r.ternary),
        fmt(r.q8),
    )
}
