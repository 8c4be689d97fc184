//! `moesim host run | calibrate | validate`: the flags of a real paged-expert decode on this
//! machine, of the calibration of a hardware profile and of the comparison of the simulator's
//! prediction with the real run over a grid of settings, and their presentation (tables, the
//! profile file, `validate.csv`, `summary.md`, the predicted-vs-measured plot). The work is
//! `crate::host`'s.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::emit;
use super::table::{Align, Table};
use crate::atomic_file::write_atomic;
use crate::cache::PolicyKind;
use crate::error::{Error, Result};
use crate::host::decode::decode;
use crate::host::profile::{Fitted, fit_profile};
use crate::host::samples::{RoundBudget, Samples};
use crate::host::store::ExpertStore;
use crate::host::validate::{
    DiskNoise, Grid, ValidateRow, ValidateSummary, compare, measure, summarize,
};
use crate::host::workload::{TokenLatency, Workload, open_store, store_shape};
use crate::quant::WeightFormat;

/// `moesim host` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum HostCommand {
    /// Decode a generated trace for real, paging experts from a file on this machine's disk.
    Run(RunArgs),
    /// Measure this host (disk reads, memory copies, expert kernels) into a hardware profile.
    Calibrate(CalibrateArgs),
    /// Real decode against simulation on the calibrated profile, over a grid of settings.
    Validate(ValidateArgs),
}

/// The workload and where the experts live.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkloadArgs {
    /// Model (a shipped name or a model file); its expert shape is what is stored and run.
    #[arg(long, default_value = "micro-moe")]
    pub model: String,
    /// Trace generator (its layers, experts and top-k must match the model).
    #[arg(long, default_value = "micro-moe")]
    pub generator: String,
    /// Decode tokens (one request, no prompt).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub tokens: u32,
    /// Seed of the trace, the weights and the hidden vectors.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory of the expert stores (one file per model, format and seed; written once).
    #[arg(long, default_value = "target/moesim-host")]
    pub store_dir: PathBuf,
    /// Kernel threads (1: every kernel on the compute thread; reads run on their own thread).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: u32,
    /// Read through the page cache instead of direct I/O.
    #[arg(long)]
    pub buffered: bool,
    /// Expert kernels: int8 (8-bit activations, integer dots: the fast ones, and the
    /// configuration of the committed fidelity run) or f32 (the reference).
    #[arg(long, default_value = "int8", value_parser = str::parse::<crate::quant::Kernel>)]
    pub kernel: crate::quant::Kernel,
}

/// Arguments of `host run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Expert format.
    #[arg(long, default_value = "q4_k")]
    format: WeightFormat,
    /// Experts each layer's cache holds.
    #[arg(long, default_value_t = 4)]
    capacity_experts: u32,
    /// Eviction policy (no oracle policies).
    #[arg(long, default_value = "lru")]
    policy: String,
    /// Memory-aware routing bonus λ (0: the standard router).
    #[arg(long, default_value_t = 0.0)]
    lambda: f64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `host calibrate`.
#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Expert formats to measure the kernels of (the first also sets the read size).
    #[arg(long, value_delimiter = ',', default_value = "q4_k,q2_k")]
    formats: Vec<WeightFormat>,
    /// Reads of each size the 5 rounds start with, in all (rounds add reads until their median
    /// is known to ±3 % or their budget is spent).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(15..=1_000_000))]
    reads: u64,
    /// Wall time a round may spend adding reads and kernel runs, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    round_budget_ms: u64,
    /// The profile file to write.
    #[arg(long, default_value = "hardware-profiles/host-calibrated.toml")]
    out: PathBuf,
}

/// Arguments of `host validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    workload: WorkloadArgs,
    /// The two (or more) formats of the grid.
    #[arg(long, value_delimiter = ',', default_value = "q4_k,q2_k")]
    formats: Vec<WeightFormat>,
    /// Eviction policies of the grid.
    #[arg(long, value_delimiter = ',', default_value = "lru,lfu")]
    policies: Vec<String>,
    /// Memory-aware λ of the grid's memory-aware points.
    #[arg(long, default_value_t = 1.0)]
    lambda: f64,
    /// Cache sizes of the grid, as shares of the experts per layer.
    #[arg(long, value_delimiter = ',', default_value = "0.25,0.5,1.0")]
    cache_shares: Vec<f64>,
    /// A calibrated profile to predict with (default: calibrate first, into OUT/host-calibrated.toml).
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Reads of each size when calibrating, per 5 rounds (each round starts with a fifth and
    /// adds reads until their median is known to ±3 % or its budget is spent).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(15..=1_000_000))]
    reads: u64,
    /// Wall time a calibration round may spend adding reads and kernel runs, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    round_budget_ms: u64,
    /// Real decodes per grid point; the point reports the one whose prediction error is the median.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeats: u32,
    /// Report directory.
    #[arg(long, default_value = "reports/host-validate")]
    out: PathBuf,
}

/// Runs a `moesim host` command.
pub fn run(cmd: HostCommand, out: &mut dyn Write) -> Result<()> {
    match cmd {
        HostCommand::Run(a) => run_cmd(a, out),
        HostCommand::Calibrate(a) => calibrate_cmd(a, out),
        HostCommand::Validate(a) => validate(a, out),
    }
}

impl WorkloadArgs {
    /// The library's workload.
    fn workload(&self) -> Workload {
        Workload {
            model: self.model.clone(),
            generator: self.generator.clone(),
            tokens: self.tokens,
            seed: self.seed,
            threads: self.threads as usize,
            kernel: self.kernel,
        }
    }

    /// Opens the store of each format, writing it first if it does not exist.
    fn stores(&self, formats: &[WeightFormat]) -> Result<Vec<ExpertStore>> {
        formats
            .iter()
            .map(|&format| {
                let model = crate::moe::load(&self.model)?;
                let shape = store_shape(&model, format, self.seed)
                    .map_err(|r| Error::usage(format!("--model {}: {r}", self.model)))?;
                open_store(
                    &self.store_dir,
                    &self.model,
                    shape,
                    !self.buffered,
                    &mut |path, shape| {
                        eprintln!(
                            "writing {} ({} experts of {} bytes)",
                            path.display(),
                            shape.layers * shape.experts,
                            shape.expert_bytes()
                        )
                    },
                )
            })
            .collect()
    }
}

fn policy(s: &str) -> Result<PolicyKind> {
    s.parse::<PolicyKind>()
        .map_err(|e| Error::usage(format!("--policy {s}: {e}")))
}

#[derive(Serialize)]
struct RunRow {
    model: String,
    format: String,
    capacity_experts: u32,
    policy: String,
    router: String,
    threads: u32,
    direct_io: bool,
    decode_tokens: usize,
    token_latency_mean_ns: f64,
    token_latency_p50_ns: u64,
    token_latency_p99_ns: u64,
    decode_tokens_per_s: f64,
    expert_uses: u64,
    hits: u64,
    misses: u64,
    bytes_read: u64,
    read_ns: u64,
    compute_ns: u64,
    wait_ns: u64,
}

fn run_cmd(a: RunArgs, out: &mut dyn Write) -> Result<()> {
    let args = &a.workload;
    let w = args.workload();
    let st = args.stores(&[a.format])?.remove(0);
    let exp = w.experiment(a.format, "host", a.capacity_experts, &a.policy, a.lambda)?;
    let trace = exp.build_trace()?;
    let r = decode(
        &st,
        &trace,
        &w.decode_options(&exp, a.capacity_experts, policy(&a.policy)?),
        &mut Vec::new(),
        None,
    )?;
    let TokenLatency {
        mean_ns: mean,
        p50_ns: p50,
        p99_ns: p99,
        tokens_per_s: tps,
    } = TokenLatency::of(&r.token_latencies_ns);
    let row = RunRow {
        model: args.model.clone(),
        format: a.format.to_string(),
        capacity_experts: a.capacity_experts,
        policy: a.policy.clone(),
        router: exp.options.router.name().to_string(),
        threads: args.threads,
        direct_io: r.direct,
        decode_tokens: r.token_latencies_ns.len(),
        token_latency_mean_ns: mean,
        token_latency_p50_ns: p50,
        token_latency_p99_ns: p99,
        decode_tokens_per_s: tps,
        expert_uses: r.expert_uses,
        hits: r.hits,
        misses: r.misses,
        bytes_read: r.bytes_read,
        read_ns: r.read_ns,
        compute_ns: r.compute_ns,
        wait_ns: r.wait_ns,
    };
    if a.json {
        return super::emit_json(out, &row);
    }
    emit(
        out,
        &format!(
            "real decode of {} tokens: {} at {} on this host, {} experts per layer cached ({}), {} router, {} kernel thread(s), {}\n\
             token latency mean {:.3} ms, p50 {:.3} ms, p99 {:.3} ms; {:.2} tokens/s\n\
             {} expert uses: {} hits, {} misses ({:.1}% hits); {:.1} MB read in {:.3} s, kernels {:.3} s\n",
            row.decode_tokens,
            args.model,
            a.format,
            a.capacity_experts,
            a.policy,
            row.router,
            args.threads,
            if r.direct {
                "direct I/O (reads reach the disk)"
            } else {
                "buffered reads (the page cache may serve them)"
            },
            mean * 1e-6,
            p50 as f64 * 1e-6,
            p99 as f64 * 1e-6,
            tps,
            r.expert_uses,
            r.hits,
            r.misses,
            100.0 * r.hits as f64 / r.expert_uses.max(1) as f64,
            r.bytes_read as f64 * 1e-6,
            r.read_ns as f64 * 1e-9,
            r.compute_ns as f64 * 1e-9
        ),
    )
}

fn calibrate_cmd(a: CalibrateArgs, out: &mut dyn Write) -> Result<()> {
    if a.formats.is_empty() {
        return Err(Error::usage("--formats: give at least one"));
    }
    let stores = a.workload.stores(&a.formats)?;
    let c = crate::host::profile::calibrate(
        &a.workload.workload(),
        &stores,
        &round_budget(a.reads, a.round_budget_ms),
    )?;
    write_profile(&a.out, &c.fit)?;
    emit(
        out,
        &calibration_summary(&a.out, a.workload.threads, &stores[0], &c.samples, &c.fit),
    )
}

/// The budget of one calibration round: a fifth of `reads` to start with, `ms` to extend.
fn round_budget(reads: u64, ms: u64) -> RoundBudget {
    RoundBudget {
        reads: (reads as usize).div_ceil(5),
        time: std::time::Duration::from_millis(ms),
        max_factor: 8,
    }
}

/// Writes the profile file (its directory too).
fn write_profile(path: &Path, fit: &Fitted) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    write_atomic(path, fit.text.as_bytes())
}

/// What a calibration measured, for the terminal; `store` is the one that set the read size.
fn calibration_summary(
    path: &Path,
    threads: u32,
    store: &ExpertStore,
    samples: &Samples,
    fit: &Fitted,
) -> String {
    let shape = store.shape;
    let mut s = format!(
        "calibrated this host into {} ({} rounds; {} reads added to make medians precise, {} rounds stopped by their budget first; {} reads, queue depth 1)\n",
        path.display(),
        samples.rounds,
        samples.extra_reads,
        samples.imprecise_rounds,
        if store.direct { "direct" } else { "buffered" }
    );
    s.push_str(&format!(
        "disk -> dram: latency {:.1} µs{}, {:.3} GB/s (through the median reads of {}{} in the decode's regime; reads of {} bytes: spread (p90 - p10) / median {:.2}, median known to ±{:.1} %)\n",
        fit.figures.link.latency_ns * 1e-3,
        match fit.figures.link.request_bytes {
            Some(r) => format!(
                " per request of at most {r} bytes (the device's limit; {} bytes: {} requests)",
                shape.stride(),
                crate::hardware::requests(shape.stride(), Some(r))
            ),
            None => String::new(),
        },
        fit.figures.link.bandwidth_bytes_per_s * 1e-9,
        if samples.other_large_ns.is_empty() { "4096 and " } else { "" },
        std::iter::once(shape.stride())
            .chain(samples.other_large_ns.iter().map(|(b, _)| *b))
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        shape.stride(),
        fit.figures.link.spread,
        100.0 * fit.figures.link.precision
    ));
    for (bytes, ns) in &samples.other_large_ns {
        let link = &fit.figures.link;
        s.push_str(&format!(
            "  expert reads of {bytes} bytes: median {:.0} µs, {:.0} µs on the fitted link ({} reads)\n",
            crate::stats::median(ns) * 1e-3,
            link.time_ns(*bytes) * 1e-3,
            ns.len()
        ));
    }
    if let Some(d) = &fit.figures.read_time_distribution {
        let q = |u: f64| d.factor(u);
        s.push_str(&format!(
            "disk read times as the link's time distribution (over the round's median, {} reads): p10 {:.2}, p50 {:.2}, p90 {:.2}, p99 {:.2}, p100 {:.2} (placed so that the last segment averages as the reads did); mean {:.3}\n",
            samples.large_over_median.len(),
            q(0.1),
            q(0.5),
            q(0.9),
            q(0.99),
            q(1.0),
            d.mean()
        ));
    }
    s.push_str(&format!(
        "RAM copy: {:.2} GB/s\n",
        fit.figures.copy_bytes_per_s * 1e-9
    ));
    for (f, r) in &fit.figures.rates {
        s.push_str(&format!(
            "{f} expert kernels ({} x {} SwiGLU, {} thread(s), weights from memory): {:.3} G weights/s\n",
            shape.hidden, shape.ffn, threads, r * 1e-9
        ));
    }
    for (f, x) in &fit.figures.slowdown_while_transferring {
        let n = samples
            .contended_kernel_ns
            .iter()
            .find(|(g, _)| g == f)
            .map_or(0, |(_, ns)| ns.len());
        s.push_str(&format!(
            "{f} expert kernels while an expert read is in flight: {:.1} % slower ({n} kernels)\n",
            100.0 * x
        ));
    }
    for ((f, x), (_, ns)) in fit
        .figures
        .slowdown_after_load
        .iter()
        .zip(&samples.loaded_kernel_ns)
    {
        s.push_str(&format!(
            "{f} expert kernels on the bytes just read: {:.1} % {} ({} kernels)\n",
            100.0 * x.abs(),
            if *x < 0.0 { "faster" } else { "slower" },
            ns.len()
        ));
    }
    for (f, r) in &fit.figures.cached_rates {
        s.push_str(&format!(
            "{f} expert kernels cycling through {} experts (weights in the last-level cache): {:.3} G weights/s\n",
            crate::host::calibrate::WARM_EXPERTS,
            r * 1e-9
        ));
    }
    match fit.figures.weights_cache {
        Some(c) => s.push_str(&format!(
            "last-level cache for expert weights: {:.1} MB under random replacement, {} (from {} kernels on experts drawn at random back to back, {:.0} % cached, one per {:.0} us; {} paced by sleeps, {}, one per {:.0} us)\n",
            c.capacity_bytes * 1e-6,
            match c.lifetime_ns {
                Some(t) => format!("its weights also evicted by other tenants with a mean lifetime of {:.1} ms", t * 1e-6),
                None => "evicted by this unit's fetches only (paced draws as often cached)".into(),
            },
            samples.random_kernel_ns.len(),
            c.shares.0 * 100.0,
            c.intervals_ns.0 * 1e-3,
            samples.paced_kernel_ns.len(),
            c.shares
                .1
                .map_or("not fitted".into(), |h| format!("{:.0} % cached", h * 100.0)),
            c.intervals_ns.1 * 1e-3
        )),
        None => s.push_str(
            "last-level cache for expert weights: none measured (random visits ran no faster than the scattered one)\n",
        ),
    }
    // Per-read times of the compute thread: the profile takes their mean, the median beside it.
    for (what, mean_ns, ns) in [
        (
            "resuming after a read it waited for",
            fit.figures.wake_ns,
            &samples.wake_ns,
        ),
        (
            "handing a read to the idle I/O thread",
            fit.figures.issue_ns,
            &samples.issue_ns,
        ),
    ] {
        let median_ns = if ns.is_empty() {
            0.0
        } else {
            crate::stats::median(ns)
        };
        s.push_str(&format!(
            "{what}: {:.1} µs on average (median {:.1} µs, {} reads)\n",
            mean_ns * 1e-3,
            median_ns * 1e-3,
            ns.len()
        ));
    }
    for (f, points) in &fit.figures.landing_by_format {
        let l = &samples
            .landing
            .iter()
            .find(|(g, _)| g == f)
            .expect("fitted from these")
            .1;
        let cold = crate::stats::median(&l.cold_ns);
        let parts: Vec<String> = points
            .iter()
            .map(|&(d, x)| {
                format!(
                    "{:.1} MB ago {:+.1} % ({:+.0} us)",
                    d * 1e-6,
                    100.0 * (x - 1.0),
                    (x - 1.0) * cold * 1e-3
                )
            })
            .collect();
        s.push_str(&format!(
            "{f} expert reads by how recently their destination was computed on: {} ({} cold reads, median {:.0} us)\n",
            parts.join(", "),
            l.cold_ns.len(),
            cold * 1e-3
        ));
    }
    if fit.figures.weights_cache.is_none() && !fit.figures.landing.is_empty() {
        // The profile states landing points within its weights cache (they share its clock).
        s.push_str(
            "reads by destination not written to the profile: it states them within compute.weights_cache, and no cache was measured\n",
        );
    }
    for n in &fit.figures.noisy {
        s.push_str(&format!("noisy (kept, through medians): {n}\n"));
    }
    s
}

fn validate(a: ValidateArgs, out: &mut dyn Write) -> Result<()> {
    let args = &a.workload;
    let w = args.workload();
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;
    let model = crate::moe::load(&args.model)?;
    let experts = model.n_experts;
    let stores = args.stores(&a.formats)?;
    let calibrating = a.profile.is_none();
    let grid = Grid {
        policies: a
            .policies
            .iter()
            .map(|p| Ok((p.clone(), policy(p)?)))
            .collect::<Result<_>>()?,
        lambda: a.lambda,
        cache_shares: a.cache_shares.clone(),
        repeats: a.repeats,
        calibration: calibrating.then(|| round_budget(a.reads, a.round_budget_ms)),
    };
    // Real decodes first (with calibration rounds around each, without --profile).
    let measured = measure(&w, &stores, &grid)?;
    // The profile of the pooled rounds (or the one given), written as OUT/host-calibrated.toml.
    // When calibrating, a pooled fit the spread check refuses (the VM drifted too far over the
    // run) is reported, not fatal: every prediction uses the rounds around its decode.
    let mut notes = String::new();
    let profile = match &a.profile {
        Some(p) => Some(crate::hardware::load(&p.display().to_string())?),
        None => {
            let p = a.out.join("host-calibrated.toml");
            match fit_profile(&w, stores[0].shape, stores[0].direct, &measured.samples)
                .and_then(|fit| write_profile(&p, &fit).map(|()| fit))
            {
                Ok(fit) => {
                    notes =
                        calibration_summary(&p, args.threads, &stores[0], &measured.samples, &fit);
                    Some(fit.profile)
                }
                Err(e) => {
                    notes = format!("the pooled rounds give no profile: {e}\n");
                    None
                }
            }
        }
    };
    let profile_label = match &a.profile {
        Some(p) => p.display().to_string(),
        None => a.out.join("host-calibrated.toml").display().to_string(),
    };
    let comparison = compare(measured.points, profile.as_ref())?;
    let rows = &comparison.rows;
    write_atomic(
        a.out.join("validate.csv"),
        &crate::report::flat_csv::to_csv(rows),
    )?;
    let stats = summarize(rows, DiskNoise::of(&measured.samples));
    write_atomic(
        a.out.join("summary.json"),
        serde_json::to_string_pretty(&stats)
            .expect("summaries serialize")
            .as_bytes(),
    )?;
    let mut summary = validate_summary(&stats);
    if calibrating {
        summary.push_str(&format!(
            "(each decode predicted with the calibration rounds run just before and after it, and the read-time distribution of every round pooled; {}; {} of {} decodes' rounds could not be fitted ({}){})\n",
            if profile.is_some() {
                format!(
                    "with one profile pooled from every round, {} of {} points are within 10%",
                    comparison.pooled_within,
                    rows.len()
                )
            } else {
                "the pooled rounds gave no profile".to_string()
            },
            measured.unfitted.0,
            a.repeats as usize * rows.len(),
            if profile.is_some() {
                "predicted on the pooled profile instead"
            } else {
                "and, with no pooled profile, not predicted"
            },
            measured
                .unfitted
                .1
                .as_ref()
                .map_or(String::new(), |e| format!("; last: {e}"))
        ));
    }
    let predicted_on = if calibrating {
        format!(
            "profiles calibrated around each decode ({} of them; every round pooled: `{}`); each point reports, of its {} decodes, the one whose prediction error in mean latency is the median, with its prediction",
            a.repeats as usize * rows.len(),
            profile_label,
            a.repeats
        )
    } else {
        format!(
            "the profile `{}`; each point reports the median of its {} decodes",
            profile_label, a.repeats
        )
    };
    let md = validate_markdown(rows, experts, args, &predicted_on, &summary, &a.out);
    write_atomic(a.out.join("summary.md"), md.as_bytes())?;
    plot_predicted_vs_measured(rows, &args.model, &a.out.join("predicted-vs-measured"))?;
    let mut s = notes;
    s.push('\n');
    s.push_str(&validate_table(rows, experts).render());
    s.push('\n');
    s.push_str(&summary);
    s.push_str(&format!(
        "wrote {}/ (validate.csv, summary.md, summary.json, predicted-vs-measured.png)\n",
        a.out.display()
    ));
    emit(out, &s)
}

/// The terminal table of the grid.
fn validate_table(rows: &[ValidateRow], experts: u32) -> Table {
    let mut t = Table::new(&[
        ("format", Align::Left),
        ("cache", Align::Right),
        ("policy", Align::Left),
        ("router", Align::Left),
        ("mean ms real/sim", Align::Right),
        ("err", Align::Right),
        ("95% interval", Align::Right),
        ("p99 ms real/sim", Align::Right),
        ("err", Align::Right),
        ("tok/s real/sim", Align::Right),
        ("err", Align::Right),
        ("hits real/sim", Align::Right),
    ]);
    for r in rows {
        t.row(vec![
            r.format.clone(),
            format!("{}/{}", r.capacity_experts, experts),
            r.policy.clone(),
            r.router.clone(),
            format!(
                "{:.2}/{:.2}",
                r.measured_token_latency_mean_ns * 1e-6,
                r.predicted_token_latency_mean_ns * 1e-6
            ),
            format!("{:+.1}%", 100.0 * r.mean_rel_error),
            format!(
                "{:+.1}..{:+.1}%{}",
                100.0 * r.mean_rel_error_ci_lo,
                100.0 * r.mean_rel_error_ci_hi,
                if r.marked { " *" } else { "" }
            ),
            format!(
                "{:.2}/{:.2}",
                r.measured_token_latency_p99_ns as f64 * 1e-6,
                r.predicted_token_latency_p99_ns as f64 * 1e-6
            ),
            format!("{:+.1}%", 100.0 * r.p99_rel_error),
            format!(
                "{:.1}/{:.1}",
                r.measured_tokens_per_s, r.predicted_tokens_per_s
            ),
            format!("{:+.1}%", 100.0 * r.tokens_per_s_rel_error),
            format!("{}/{}", r.measured_hits, r.predicted_hits),
        ]);
    }
    t
}

/// The summary: how many points are within 10 %, the median and worst errors, equal hit counts,
/// the intervals and the verdict.
fn validate_summary(v: &ValidateSummary) -> String {
    let pct = |x: f64| 100.0 * x;
    if v.predicted_points == 0 {
        return format!(
            "{} grid points, none predicted; {} points marked\n{}\n",
            v.points, v.marked, v.verdict
        );
    }
    format!(
        "{} grid points ({} predicted): mean latency within 10% and tokens/s within 10% at {} of them; p99 within 20% at {}; median |error|: mean {:.1}%, tokens/s {:.1}%, p99 {:.1}%; worst |error|: mean {:.1}%, p99 {:.1}%, tokens/s {:.1}%; hit counts equal at {} of {}\n\
         95% intervals of the mean-latency error: wholly within ±10% at {} points, wholly outside at {}, median half-width {:.1}%; {} points marked (interval wider than ±10%, or most calibration windows noisy)\n\
         {}\n",
        v.points,
        v.predicted_points,
        v.within_10_percent,
        v.p99_within_20_percent,
        pct(v.median_abs_mean_error),
        pct(v.median_abs_tokens_per_s_error),
        pct(v.median_abs_p99_error),
        pct(v.worst_abs_mean_error),
        pct(v.worst_abs_p99_error),
        pct(v.worst_abs_tokens_per_s_error),
        v.hits_equal,
        v.predicted_points,
        v.intervals_within_10_percent,
        v.intervals_outside_10_percent,
        pct(v.median_interval_half_width),
        v.marked,
        v.verdict
    )
}

/// `summary.md`: what was compared, the grid, the summary and the plot.
fn validate_markdown(
    rows: &[ValidateRow],
    experts: u32,
    args: &WorkloadArgs,
    predicted_on: &str,
    summary: &str,
    dir: &Path,
) -> String {
    let mut md = format!(
        "# host-validate\n\nReal paged-expert decode on this host against moesim's prediction on {}: {} ({} decode tokens, seed {}), {} kernel thread(s) running the {} kernels, {}.\n\n",
        predicted_on,
        args.model,
        args.tokens,
        args.seed,
        args.threads,
        args.kernel.name(),
        if rows.first().is_some_and(|r| r.direct_io) {
            "direct I/O"
        } else {
            "buffered reads"
        }
    );
    md.push_str("| format | cache | policy | router | mean ms real | mean ms sim | error | 95 % interval | range over decodes | p99 ms real | p99 ms sim | error | p99 interval | tok/s real | tok/s sim | error | tok/s interval | hits real | hits sim | read spread | mark |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let pct = |x: f64| 100.0 * x;
    for r in rows {
        md.push_str(&format!(
            "| {} | {}/{} | {} | {} | {:.2} | {:.2} | {:+.1} % | {:+.1} to {:+.1} % | {:+.1} to {:+.1} % | {:.2} | {:.2} | {:+.1} % | {:+.1} to {:+.1} % | {:.1} | {:.1} | {:+.1} % | {:+.1} to {:+.1} % | {} | {} | {:.2} | {} |\n",
            r.format,
            r.capacity_experts,
            experts,
            r.policy,
            r.router,
            r.measured_token_latency_mean_ns * 1e-6,
            r.predicted_token_latency_mean_ns * 1e-6,
            pct(r.mean_rel_error),
            pct(r.mean_rel_error_ci_lo),
            pct(r.mean_rel_error_ci_hi),
            pct(r.mean_rel_error_min),
            pct(r.mean_rel_error_max),
            r.measured_token_latency_p99_ns as f64 * 1e-6,
            r.predicted_token_latency_p99_ns as f64 * 1e-6,
            pct(r.p99_rel_error),
            pct(r.p99_rel_error_ci_lo),
            pct(r.p99_rel_error_ci_hi),
            r.measured_tokens_per_s,
            r.predicted_tokens_per_s,
            pct(r.tokens_per_s_rel_error),
            pct(r.tokens_per_s_rel_error_ci_lo),
            pct(r.tokens_per_s_rel_error_ci_hi),
            r.measured_hits,
            r.predicted_hits,
            r.window_read_spread,
            if r.marked { "marked" } else { "" }
        ));
    }
    md.push_str(&format!("\n{summary}\n![predicted vs measured](predicted-vs-measured.png)\n\nReproduce: `moesim host validate --out {}`.\n", dir.display()));
    md
}

/// The predicted-vs-measured mean latency chart, with the diagonal and a ±10 % band.
fn plot_predicted_vs_measured(rows: &[ValidateRow], model: &str, stem: &Path) -> Result<()> {
    let lo = rows
        .iter()
        .map(|r| {
            r.measured_token_latency_mean_ns
                .min(r.predicted_token_latency_mean_ns)
                * 1e-6
        })
        .fold(f64::INFINITY, f64::min);
    let hi = rows
        .iter()
        .map(|r| {
            r.measured_token_latency_mean_ns
                .max(r.predicted_token_latency_mean_ns)
                * 1e-6
        })
        .fold(0.0f64, f64::max);
    let mut series: Vec<crate::report::plot::Series> = Vec::new();
    for r in rows {
        let name = format!("{} {}", r.format, r.router);
        crate::report::plot::Series::named(&mut series, &name, true)
            .points
            .push((
                r.measured_token_latency_mean_ns * 1e-6,
                r.predicted_token_latency_mean_ns * 1e-6,
            ));
    }
    series.push(crate::report::plot::Series {
        name: "predicted = measured".into(),
        points: vec![(lo, lo), (hi, hi)],
        ..Default::default()
    });
    series.push(crate::report::plot::Series {
        name: "±10 %".into(),
        points: vec![(lo, lo * 1.1), (hi, hi * 1.1)],
        band: vec![(lo, lo * 0.9, lo * 1.1), (hi, hi * 0.9, hi * 1.1)],
        ..Default::default()
    });
    crate::report::plot::XyChart {
        title: format!(
            "host-validate: predicted vs measured mean token latency ({})",
            model
        ),
        x_label: "measured mean token latency (ms)".into(),
        y_label: "predicted mean token latency (ms)".into(),
        series,
        ..Default::default()
    }
    .write(stem)
}
