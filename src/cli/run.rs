//! `moesim run [EXPERIMENT.toml]`: simulate one experiment point and write its report
//! directory. Without an argument it runs the built-in quickstart.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::emit;
use super::table::{Align, Table};
use crate::atomic_file::write_atomic;
use crate::error::{Error, Result};
use crate::experiment::{Experiment, Outcome};
use crate::report::flat_csv::to_csv;
use crate::sim::SimSetup;
use crate::sweep::Sweep;
use crate::sweep::tables::{metrics_row, scope_name};
use crate::units::{format_bytes, format_duration_ns};

/// Where `moesim run` writes without `--out`: `moesim-reports/<name>/`, a directory of the
/// user's own (the repository ignores it), so running never rewrites the committed
/// `reports/`.
pub const DEFAULT_OUT: &str = "moesim-reports";

/// Arguments of `moesim run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The experiment file (default: the built-in quickstart, experiments/quickstart.toml).
    pub experiment: Option<PathBuf>,
    /// Output directory (default: moesim-reports/<name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the metrics as JSON instead of the summary (single-point experiments).
    #[arg(long)]
    pub json: bool,
    /// Worker threads for a sweep's points (default: all cores). Results do not depend on it.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub threads: Option<u32>,
    /// Run only shard I of N (0 <= I < N) of a sweep's points, into a part directory that
    /// `moesim merge` combines with the others. Points are dealt to shards in turn, in expansion
    /// order, all replicates of a point together.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
    /// Print a sweep's runs (run number, replicate, point key; with --shard, that shard's only)
    /// instead of running them, for external schedulers.
    #[arg(long)]
    pub list_points: bool,
    /// Also write the simulator's resolved inputs (durations, sizes, routes) as JSON, for
    /// independent re-implementations such as scripts/simpy_crosscheck.py. Standard router only.
    #[arg(long)]
    pub dump_inputs: Option<PathBuf>,
}

/// `I/N` with `0 <= I < N`.
fn parse_shard(s: &str) -> std::result::Result<(usize, usize), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}`: expected I/N, such as 0/4"))?;
    let i: usize = i
        .parse()
        .map_err(|_| format!("`{s}`: shard index `{i}` is not a number"))?;
    let n: usize = n
        .parse()
        .map_err(|_| format!("`{s}`: shard count `{n}` is not a number"))?;
    if n == 0 || i >= n {
        return Err(format!("`{s}`: need 0 <= I < N"));
    }
    Ok((i, n))
}

/// Runs `moesim run`.
pub fn run(args: RunArgs, out: &mut dyn Write) -> Result<()> {
    if let Some(path) = &args.experiment
        && is_sweep(path)?
    {
        return run_sweep(Sweep::load(path)?, &args, out);
    }
    if args.shard.is_some() || args.list_points {
        return Err(Error::usage(
            "--shard and --list-points apply to sweeps (an experiment file with a [sweep] table)",
        ));
    }
    let exp = match &args.experiment {
        Some(path) => Experiment::load(path)?,
        None => Experiment::quickstart()?,
    };
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new(DEFAULT_OUT).join(&exp.resolved.name));
    crate::sweep::store::check_single_run_dir(&dir, &exp.resolved.name)?;
    let trace = exp.build_trace()?;
    if let Some(path) = &args.dump_inputs {
        if exp.options.router != (crate::router::RouterKind::Standard {}) {
            return Err(Error::usage(
                "--dump-inputs records standard routes: use the standard router",
            ));
        }
        let setup = SimSetup::new(
            &exp.profile,
            &exp.model,
            exp.options.clone(),
            &exp.setup_popularity(&trace)?,
            Some(&exp.plan(&trace)?),
        )
        .map_err(|e| Error::usage(format!("{}: {e}", exp.label)))?;
        let mut inputs: Vec<&Path> = args.experiment.iter().map(PathBuf::as_path).collect();
        inputs.extend(exp.inputs.iter().filter_map(|i| match i {
            crate::experiment::InputRef::File(p)
            | crate::experiment::InputRef::FileHeader(p, _) => Some(p.as_path()),
            crate::experiment::InputRef::Preset(..) => None,
        }));
        crate::atomic_file::refuse_overwriting_inputs(path, &inputs, "--dump-inputs")?;
        write_atomic(
            path,
            crate::sim::dump::inputs_json(&setup, &trace).as_bytes(),
        )?;
    }
    let outcome = exp.simulate(&trace)?;
    write_report(&exp, &outcome, &dir)?;
    let r = &outcome.report;
    if args.json {
        return super::emit_json(out, &metrics_row(&exp, &outcome));
    }
    let mut s = summary_text(&exp, &outcome);
    s.push_str(&format!(
        "\nsimulated {} events in {:.6} s ({:.2} M events/s); wrote {}/ (config.resolved.toml, metrics.csv, links.csv, tiers.csv, units.csv, summary.md{})\n",
        r.events,
        outcome.simulate_wall_s,
        r.events as f64 / outcome.simulate_wall_s.max(1e-9) / 1e6,
        dir.display(),
        if outcome.timeline.is_some() { ", timeline.json" } else { "" }
    ));
    emit(out, &s)
}

/// Whether the experiment file has a `[sweep]` table.
fn is_sweep(path: &Path) -> Result<bool> {
    let text = crate::input::read_to_string(path)?;
    let spec: crate::experiment::ExperimentSpec =
        crate::config::parse_toml(&path.display().to_string(), &text)?;
    Ok(spec.sweep.is_some())
}

/// A progress bar on a terminal, nothing otherwise.
struct Bar(indicatif::ProgressBar);

impl crate::sweep::Progress for Bar {
    fn start(&self, total: u64, done: u64) {
        self.0.set_length(total);
        self.0.set_position(done);
    }
    fn advance(&self) {
        self.0.inc(1);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// Runs every pending point of a sweep in parallel, then writes the report directory.
fn run_sweep(sweep: Sweep, args: &RunArgs, out: &mut dyn Write) -> Result<()> {
    use indicatif::{ProgressBar, ProgressStyle};
    use std::io::IsTerminal;
    if args.json || args.dump_inputs.is_some() {
        return Err(Error::usage(
            "--json and --dump-inputs apply to single-point experiments; a sweep writes results.csv",
        ));
    }
    if args.list_points {
        let mut s = String::from("run\treplicate\tpoint\n");
        for p in sweep
            .points
            .iter()
            .filter(|p| crate::sweep::exec::in_shard(&sweep, p, args.shard))
        {
            s.push_str(&format!("{}\t{}\t{}\n", p.index, p.replicate, p.key));
        }
        return emit(out, &s);
    }
    let dir = args.out.clone().unwrap_or_else(|| match args.shard {
        Some((i, n)) => Path::new(DEFAULT_OUT).join(format!("{}.shard-{i}-of-{n}", sweep.name)),
        None => Path::new(DEFAULT_OUT).join(&sweep.name),
    });
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} points, {elapsed} elapsed, ETA {eta}",
            )
            .expect("template"),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let opts = crate::sweep::ExecOptions {
        shard: args.shard,
        threads: args.threads,
    };
    let done = crate::sweep::run_points(&sweep, &dir, &opts, &Bar(bar))?;
    match (args.shard, done.summary_md) {
        (Some((i, n)), _) => emit(
            out,
            &format!(
                "ran {} of shard {i}/{n}'s {} runs ({} already done; the sweep has {}) in {:.2} s; wrote {}/\nmerge the shard directories with `moesim merge DIR... --out reports/{}`\n",
                done.ran,
                done.mine,
                done.skipped,
                done.total,
                done.elapsed_s,
                dir.display(),
                sweep.name
            ),
        ),
        (None, md) => {
            let mut s = md.unwrap_or_default();
            s.push_str(&format!(
                "\nran {} of {} runs ({} already done) in {:.2} s; wrote {}/ (results.csv, summary.csv, summary.md, plots/)\n",
                done.ran,
                done.total,
                done.skipped,
                done.elapsed_s,
                dir.display()
            ));
            emit(out, &s)
        }
    }
}

/// Runs `moesim merge`.
pub fn merge(args: MergeArgs, out: &mut dyn Write) -> Result<()> {
    let name = crate::sweep::merge(&args.parts, &args.out)?;
    let mut s = crate::sweep::summary::finish(&args.out, &name)?;
    s.push_str(&format!(
        "\nmerged {} part directories into {}/ (results.csv, summary.csv, summary.md, plots/)\n",
        args.parts.len(),
        args.out.display()
    ));
    emit(out, &s)
}

/// Arguments of `moesim merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Part directories written by `moesim run SWEEP.toml --shard I/N`, in any order.
    #[arg(required = true)]
    pub parts: Vec<PathBuf>,
    /// The merged report directory.
    #[arg(long)]
    pub out: PathBuf,
}

/// Writes the report directory; every file atomically, all after the run succeeded.
fn write_report(exp: &Experiment, o: &Outcome, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let config = format!(
        "# moesim {} resolved configuration of {} (every default filled in)\n{}",
        env!("CARGO_PKG_VERSION"),
        exp.label,
        toml::to_string(&exp.resolved).expect("specs serialize")
    );
    write_atomic(dir.join("config.resolved.toml"), config.as_bytes())?;
    write_atomic(dir.join("metrics.csv"), &to_csv(&[metrics_row(exp, o)]))?;
    write_atomic(dir.join("links.csv"), &to_csv(&o.report.links))?;
    write_atomic(dir.join("tiers.csv"), &to_csv(&o.report.tiers))?;
    write_atomic(dir.join("units.csv"), &to_csv(&o.report.units))?;
    write_atomic(dir.join("summary.md"), summary_markdown(exp, o).as_bytes())?;
    match &o.timeline {
        Some(t) => write_atomic(dir.join("timeline.json"), t.to_chrome_json().as_bytes())?,
        // An earlier run's timeline would not belong to this one.
        None => match std::fs::remove_file(dir.join("timeline.json")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(dir.join("timeline.json"), e));
            }
            _ => {}
        },
    }
    Ok(())
}

/// The command that computes this report again from the experiment labelled `label` (a file
/// path as the user gave it, or the built-in quickstart). It names no output directory, so
/// that a report's bytes do not depend on where it was written.
pub(crate) fn reproduce_command(label: &str) -> String {
    if label == crate::experiment::QUICKSTART_LABEL {
        "moesim run".to_string()
    } else {
        format!("moesim run {label}")
    }
}

fn ms(ns: f64) -> String {
    finite_or_dash(ns, format_duration_ns)
}

/// `f(x)`, or `-` for a figure that was not measured (a phase with no tokens).
fn finite_or_dash(x: f64, f: impl Fn(f64) -> String) -> String {
    if x.is_finite() { f(x) } else { "-".into() }
}

fn rate(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "-".into()
    }
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}%", 100.0 * x)
    } else {
        "-".into()
    }
}

/// The key results as (label, value) pairs, shared by the terminal and markdown summaries.
fn key_results(o: &Outcome) -> Vec<(&'static str, String)> {
    let r = &o.report;
    let decode_total =
        (r.decode_compute_ns + r.decode_routing_ns + r.decode_stall_ns).max(1) as f64;
    let share = |x: u64| {
        format!(
            "{} ({:.1}%)",
            ms(x as f64 / r.decode_tokens.max(1) as f64),
            100.0 * x as f64 / decode_total
        )
    };
    let mut rows = vec![
        (
            "decode throughput",
            format!("{} tokens/s", rate(r.decode_tokens_per_s)),
        ),
        (
            "prefill throughput",
            format!("{} tokens/s", rate(r.prefill_tokens_per_s)),
        ),
        (
            "time to first token (mean / p95)",
            format!("{} / {}", ms(r.ttft_mean_ns), ms(r.ttft_p95_ns as f64)),
        ),
        (
            "token latency p50 / p95 / p99",
            if r.decode_tokens == 0 {
                "-".to_string()
            } else {
                format!(
                    "{} / {} / {}",
                    ms(r.token_latency_p50_ns as f64),
                    ms(r.token_latency_p95_ns as f64),
                    ms(r.token_latency_p99_ns as f64)
                )
            },
        ),
        ("per token: compute", share(r.decode_compute_ns)),
        ("per token: routing", share(r.decode_routing_ns)),
        ("per token: transfer stall", share(r.decode_stall_ns)),
        ("expert hit rate (decode)", pct(r.hit_rate)),
        (
            "bytes loaded per decode token",
            finite_or_dash(r.bytes_loaded_per_decode_token, format_bytes),
        ),
        (
            "energy per decode token",
            finite_or_dash(r.energy_per_decode_token_mj, |x| format!("{x:.3} mJ")),
        ),
        (
            "energy per prompt token",
            finite_or_dash(r.energy_per_prefill_token_mj, |x| format!("{x:.3} mJ")),
        ),
        (
            "energy of the run",
            format!(
                "{:.3} mJ{}",
                r.energy_total_mj,
                if o.setup.static_power_w > 0.0 {
                    format!(" ({:.3} mJ static)", r.energy_static_pj * 1e-9)
                } else {
                    " (dynamic only: no static power)".to_string()
                }
            ),
        ),
    ];
    let serving = &o.setup.serving;
    if !serving.is_single() {
        let at = 1;
        let mut extra = vec![
            (
                "decode throughput, all requests",
                format!("{} tokens/s", rate(r.aggregate_decode_tokens_per_s)),
            ),
            (
                "requests per step / experts per layer step",
                format!(
                    "{} / {} (each pass serves {} tokens)",
                    rate(r.batch_mean),
                    rate(r.union_experts_mean),
                    rate(r.reuse_factor)
                ),
            ),
        ];
        if serving.speculative.is_some() {
            extra.push((
                "tokens per verification step",
                format!(
                    "{} ({} of drafts accepted)",
                    rate(r.verify_tokens_per_step),
                    pct(r.draft_acceptance)
                ),
            ));
        }
        if serving.kv.is_some() {
            extra.push((
                "KV cache peak / smallest expert cache",
                format!(
                    "{} / {}",
                    format_bytes(r.kv_peak_bytes as f64),
                    format_bytes(r.expert_cache_min_bytes as f64)
                ),
            ));
        }
        for (k, row) in extra.into_iter().enumerate() {
            rows.insert(at + k, row);
        }
    }
    rows.push((
        "expert precision (plan)",
        format!(
            "{} ({:.3} bits/weight, {:.3} usage-weighted)",
            o.plan.census(),
            o.plan.mean_bits(),
            o.plan_bits_weighted
        ),
    ));
    if o.setup.precision.is_some() {
        rows.push((
            "bits/weight computed (decode)",
            format!(
                "{:.3} ({} switches down, {} low-bit loads, {} of extra copies)",
                r.decode_bits_per_weight_mean,
                r.precision_switches,
                r.low_precision_loads,
                format_bytes(r.extra_copy_bytes as f64)
            ),
        ));
    }
    match &o.output_quality {
        Some(q) => {
            rows.push((
                "output rel. L2 error: mean ±95% CI / p95 / max",
                format!(
                    "{:.4} ±{:.4} / {:.4} / {:.4} (n = {})",
                    q.output_rel_l2_mean,
                    q.output_rel_l2_ci95,
                    q.output_rel_l2_p95,
                    q.output_rel_l2_max,
                    q.output_samples
                ),
            ));
            rows.push((
                "output cosine: mean ±95% CI / p5 / min",
                format!(
                    "{:.5} ±{:.5} / {:.5} / {:.5}",
                    q.output_cosine_mean,
                    q.output_cosine_ci95,
                    q.output_cosine_p5,
                    q.output_cosine_min
                ),
            ));
        }
        None => rows.push(("output quality", o.quality_note.clone().unwrap_or_default())),
    }
    rows.push((
        "routing: gate mass kept / top-k agreement",
        format!(
            "{} / {}",
            pct(r.quality.gate_mass_retained),
            pct(r.quality.topk_agreement)
        ),
    ));
    if r.prefetch_issued > 0 || r.prefetch_hits > 0 {
        rows.push((
            "prefetch precision / recall",
            format!(
                "{} / {} ({} wasted)",
                pct(r.prefetch_precision),
                pct(r.prefetch_recall),
                format_bytes(r.prefetch_wasted_bytes as f64)
            ),
        ));
    }
    if o.restricted {
        rows.push((
            "note",
            "trace has top-k ids only: re-routing restricted to the recorded candidates".into(),
        ));
    }
    if o.setup.home_tier == o.setup.compute_tier {
        rows.push((
            "note",
            "every expert is stored in the compute tier (execute in place): nothing is loaded"
                .into(),
        ));
    }
    rows
}

fn header(exp: &Experiment, o: &Outcome) -> String {
    let s = &o.setup;
    format!(
        "{}: {} at {} on {}; {} router, {} {} caches of {} ({:.2} of {} experts per layer), prefetch {}; {} requests, {} prompt + {} generated tokens",
        exp.resolved.name,
        exp.model.name,
        match &exp.allocator {
            crate::precision::AllocatorKind::Uniform { format } => format.to_string(),
            other => format!("{} precision", other.name()),
        },
        exp.profile.name,
        exp.options.router.name(),
        exp.options.policy,
        scope_name(exp.options.scope),
        format_bytes(s.cache_bytes as f64),
        s.cache_bytes as f64 * s.n_caches as f64
            / s.layers as f64
            / (s.expert_bytes.iter().sum::<u64>() as f64 / s.expert_bytes.len().max(1) as f64),
        s.experts,
        exp.options.prefetch.name(),
        o.report.requests,
        o.report.prefill_tokens,
        o.report.decode_tokens,
    )
}

fn summary_text(exp: &Experiment, o: &Outcome) -> String {
    let mut s = header(exp, o);
    s.push_str("\n\n");
    let mut t = Table::new(&[("metric", Align::Left), ("value", Align::Right)]);
    for (k, v) in key_results(o) {
        t.row(vec![k.to_string(), v]);
    }
    s.push_str(&t.render());
    let mut lt = Table::new(&[
        ("link", Align::Left),
        ("bytes", Align::Right),
        ("transfers", Align::Right),
        ("utilisation", Align::Right),
    ]);
    let mut any = false;
    for l in o.report.links.iter().filter(|l| l.transfers > 0) {
        any = true;
        lt.row(vec![
            format!("{} -> {}", l.from, l.to),
            format_bytes(l.bytes as f64),
            l.transfers.to_string(),
            pct(l.utilisation),
        ]);
    }
    if any {
        s.push('\n');
        s.push_str(&lt.render());
    }
    if o.timeline_truncated {
        s.push_str(&format!(
            "note: the timeline keeps the first {} spans only\n",
            crate::sim::TIMELINE_MAX_SPANS
        ));
    }
    s
}

fn summary_markdown(exp: &Experiment, o: &Outcome) -> String {
    let mut s = format!(
        "# {}\n\n{}\n\n",
        exp.resolved.name, exp.resolved.description
    );
    s.push_str(&header(exp, o));
    s.push_str("\n\n| metric | value |\n|---|---|\n");
    for (k, v) in key_results(o) {
        s.push_str(&format!("| {k} | {v} |\n"));
    }
    s.push_str("\n| link | bytes | transfers | utilisation |\n|---|---|---|---|\n");
    for l in &o.report.links {
        s.push_str(&format!(
            "| {} -> {} | {} | {} | {} |\n",
            l.from,
            l.to,
            l.bytes,
            l.transfers,
            pct(l.utilisation)
        ));
    }
    if o.report.units.len() > 1 {
        s.push_str("\n| compute unit | tier | busy | utilisation | experts computed in place |\n|---|---|---|---|---|\n");
        for u in &o.report.units {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                u.unit,
                u.tier,
                format_duration_ns(u.busy_ns as f64),
                pct(u.utilisation),
                u.in_place_kernels
            ));
        }
    }
    s.push_str(&format!(
        "\nReproduce: `{}` (moesim {}; add `--out DIR` to write elsewhere than {}/{}/). Uncalibrated profile figure groups: {}.\n",
        reproduce_command(&exp.label),
        env!("CARGO_PKG_VERSION"),
        DEFAULT_OUT,
        exp.resolved.name,
        exp.profile
            .uncalibrated_groups()
            .iter()
            .map(|(g, c)| format!("{g} ({})", c.name()))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    s
}
