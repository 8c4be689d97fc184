//! `moesim host run | calibrate | validate`: a real paged-expert decode on this machine, the
//! calibration of a hardware profile from microbenchmarks, and the comparison of the simulator's
//! prediction with the real run over a grid of settings.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::emit;
use super::table::{Align, Table};
use crate::atomic_file::write_atomic;
use crate::cache::PolicyKind;
use crate::error::{Error, Result};
use crate::experiment::Experiment;
use crate::host::calibrate;
use crate::host::decode::{DecodeOptions, DecodeReport, decode};
use crate::host::store::{ExpertStore, StoreShape};
use crate::quality::proxy::SyntheticExperts;
use crate::quant::WeightFormat;
use crate::quant::eval::WeightDistribution;
use crate::sim::{SimReport, SimSetup, SimTrace};

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
pub struct Workload {
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
}

/// Arguments of `host run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    workload: Workload,
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
    workload: Workload,
    /// Expert formats to measure the kernels of (the first also sets the read size).
    #[arg(long, value_delimiter = ',', default_value = "q4_k,q2_k")]
    formats: Vec<WeightFormat>,
    /// Reads of each size.
    #[arg(long, default_value_t = 200)]
    reads: usize,
    /// The profile file to write.
    #[arg(long, default_value = "hardware-profiles/host-calibrated.toml")]
    out: PathBuf,
}

/// Arguments of `host validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    workload: Workload,
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
    /// Reads of each size when calibrating.
    #[arg(long, default_value_t = 200)]
    reads: usize,
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
        HostCommand::Calibrate(a) => {
            let text = calibrate_profile(&a.workload, &a.formats, a.reads, &a.out)?;
            emit(out, &text)
        }
        HostCommand::Validate(a) => validate(a, out),
    }
}

fn shape_of(w: &Workload, format: WeightFormat) -> Result<StoreShape> {
    let model = crate::moe::load(&w.model)?;
    let ffn = model.expert_intermediate_size as usize;
    let hidden = model.hidden_size as usize;
    if !hidden.is_multiple_of(256) || !ffn.is_multiple_of(256) {
        return Err(Error::usage(format!(
            "--model {}: hidden {hidden} and expert FFN {ffn} must be multiples of 256 (the K-quant block)",
            w.model
        )));
    }
    Ok(StoreShape {
        format,
        layers: model.n_moe_layers(),
        experts: model.n_experts,
        hidden,
        ffn,
        seed: w.seed,
    })
}

fn source_of(shape: &StoreShape) -> SyntheticExperts {
    SyntheticExperts {
        hidden: shape.hidden,
        ffn: shape.ffn,
        distribution: WeightDistribution::Gaussian,
        outliers: None,
        seed: shape.seed,
        experts_per_layer: shape.experts,
    }
}

/// Opens the store of `format`, writing it first if it does not exist.
fn store(w: &Workload, format: WeightFormat) -> Result<ExpertStore> {
    let shape = shape_of(w, format)?;
    let name = Path::new(&w.model)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| w.model.clone());
    let path = w
        .store_dir
        .join(format!("{name}-{format}-seed{}.experts", w.seed));
    if ExpertStore::open(&path, false).ok().map(|s| s.shape) != Some(shape) {
        std::fs::create_dir_all(&w.store_dir).map_err(|e| Error::io(&w.store_dir, e))?;
        eprintln!(
            "writing {} ({} experts of {} bytes)",
            path.display(),
            shape.layers * shape.experts,
            shape.expert_bytes()
        );
        ExpertStore::create(&path, &source_of(&shape), shape)?;
    }
    ExpertStore::open(&path, !w.buffered)
}

fn policy(s: &str) -> Result<PolicyKind> {
    s.parse::<PolicyKind>()
        .map_err(|e| Error::usage(format!("--policy {s}: {e}")))
}

/// The experiment of one setting: the trace (and, for prediction, the profile) it defines.
fn experiment(
    w: &Workload,
    format: WeightFormat,
    profile: &str,
    capacity: u32,
    policy: &str,
    lambda: f64,
) -> Result<Experiment> {
    let router = if lambda == 0.0 {
        "kind = \"standard\"".to_string()
    } else {
        format!("kind = \"memory-aware\"\nlambda = {lambda:?}")
    };
    let text = format!(
        "schema_version = 1\nname = \"host\"\nseed = {}\n[hardware]\nprofile = {:?}\n[model]\nspec = {:?}\nformat = \"{format}\"\n[trace]\ngenerator = {:?}\nrequests = 1\nprefill_tokens = 0\ndecode_tokens = {}\n[router]\n{router}\n[cache]\npolicy = {:?}\nscope = \"per-layer\"\ncapacity_experts = {capacity}\n[quality]\nsamples = 0\n",
        w.seed, profile, w.model, w.generator, w.tokens, policy
    );
    Experiment::parse("moesim host", &text, Path::new("."))
}

fn decode_options(
    w: &Workload,
    exp: &Experiment,
    capacity: u32,
    policy: PolicyKind,
) -> DecodeOptions {
    DecodeOptions {
        capacity_experts: capacity,
        policy,
        router: exp.options.router.clone(),
        gate: exp.options.gate,
        threads: w.threads as usize,
        hidden_seed: w.seed,
    }
}

/// Token latency statistics: mean, p50, p99 (ns) and tokens per second.
fn stats(lat: &[u64]) -> (f64, u64, u64, f64) {
    let mut s = lat.to_vec();
    s.sort_unstable();
    let total: u64 = s.iter().sum();
    let mean = total as f64 / s.len().max(1) as f64;
    (
        mean,
        crate::stats::quantile(&s, 0.5),
        crate::stats::quantile(&s, 0.99),
        s.len() as f64 / (total as f64 * 1e-9),
    )
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
    let w = &a.workload;
    let st = store(w, a.format)?;
    let exp = experiment(w, a.format, "host", a.capacity_experts, &a.policy, a.lambda)?;
    let trace = exp.build_trace()?;
    let r = decode(
        &st,
        &trace,
        &decode_options(w, &exp, a.capacity_experts, policy(&a.policy)?),
        None,
    )?;
    let (mean, p50, p99, tps) = stats(&r.token_latencies_ns);
    let row = RunRow {
        model: w.model.clone(),
        format: a.format.to_string(),
        capacity_experts: a.capacity_experts,
        policy: a.policy.clone(),
        router: exp.options.router.name().to_string(),
        threads: w.threads,
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
            w.model,
            a.format,
            a.capacity_experts,
            a.policy,
            row.router,
            w.threads,
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

/// Calibration samples, pooled over rounds.
#[derive(Debug, Default)]
struct Samples {
    small_ns: Vec<f64>,
    large_ns: Vec<f64>,
    /// Kernels of the first format run wholly during an expert read.
    contended_kernel_ns: Vec<f64>,
    /// Kernels of the first format on the bytes just read.
    loaded_kernel_ns: Vec<(WeightFormat, Vec<f64>)>,
    copy_ns: Vec<f64>,
    kernel_ns: Vec<(WeightFormat, Vec<f64>)>,
    rounds: u32,
}

const COPY_BYTES: usize = 64 << 20;

/// One calibration round: `reads` reads of each size in the decode's regime (half of them
/// overlapping a kernel, each followed by a kernel on its bytes), 3 RAM copies, and 100
/// kernel runs per format.
fn calibration_round(
    w: &Workload,
    stores: &[ExpertStore],
    benches: &mut [calibrate::KernelBench],
    reads: usize,
    samples: &mut Samples,
) -> Result<()> {
    let n_reads = reads.max(3);
    let reads = calibrate::measure_reads_in_decode_regime(
        &stores[0],
        &mut benches[0],
        n_reads,
        w.seed.wrapping_add(samples.rounds as u64),
    )?;
    samples.small_ns.extend(reads.small_ns);
    samples.large_ns.extend(reads.large_ns);
    samples
        .contended_kernel_ns
        .extend(reads.contended_kernel_ns);
    push_format(
        &mut samples.loaded_kernel_ns,
        stores[0].shape.format,
        &reads.loaded_kernel_ns,
    );
    // Kernels on bytes just read, for the other formats: a few reads of their stores.
    for (i, st) in stores.iter().enumerate().skip(1) {
        let r = calibrate::measure_reads_in_decode_regime(
            st,
            &mut benches[i],
            (n_reads / 4).max(3),
            w.seed.wrapping_add(samples.rounds as u64),
        )?;
        push_format(
            &mut samples.loaded_kernel_ns,
            st.shape.format,
            &r.loaded_kernel_ns,
        );
    }
    samples
        .copy_ns
        .extend(calibrate::measure_copy(COPY_BYTES, 3));
    for b in benches.iter_mut() {
        let f = b.format();
        push_format(&mut samples.kernel_ns, f, &b.time(100));
    }
    samples.rounds += 1;
    Ok(())
}

impl Samples {
    /// Adds `other`'s samples to these.
    fn extend(&mut self, other: &Samples) {
        self.small_ns.extend(&other.small_ns);
        self.large_ns.extend(&other.large_ns);
        self.contended_kernel_ns.extend(&other.contended_kernel_ns);
        for (f, ns) in &other.loaded_kernel_ns {
            push_format(&mut self.loaded_kernel_ns, *f, ns);
        }
        self.copy_ns.extend(&other.copy_ns);
        for (f, ns) in &other.kernel_ns {
            push_format(&mut self.kernel_ns, *f, ns);
        }
        self.rounds += other.rounds;
    }
}

/// Appends `ns` to the samples of `format`.
fn push_format(samples: &mut Vec<(WeightFormat, Vec<f64>)>, format: WeightFormat, ns: &[f64]) {
    match samples.iter_mut().find(|(f, _)| *f == format) {
        Some((_, v)) => v.extend(ns),
        None => samples.push((format, ns.to_vec())),
    }
}

/// A profile fitted from calibration samples.
struct Fitted {
    /// The profile file's text.
    text: String,
    /// The profile.
    profile: crate::hardware::HardwareProfile,
    figures: Figures,
}

/// The fitted figures of a calibrated profile.
struct Figures {
    link: calibrate::LinkFit,
    copy_bytes_per_s: f64,
    rates: Vec<(WeightFormat, f64)>,
    /// Kernels during reads, as a fraction.
    slowdown_while_transferring: f64,
    /// Kernels on bytes just read, as a fraction, per format.
    slowdown_after_load: Vec<(WeightFormat, f64)>,
}

/// Fits `samples` into a profile (refusing measurements that cannot describe the host).
fn fit_profile(w: &Workload, stores: &[ExpertStore], samples: &Samples) -> Result<Fitted> {
    let shape = stores[0].shape;
    let direct = stores[0].direct;
    let bad = |what: &str, r: String| Error::usage(format!("calibration of {what}: {r}"));
    let link = calibrate::fit_link(
        crate::host::store::ALIGN as u64,
        &samples.small_ns,
        shape.stride(),
        &samples.large_ns,
    )
    .map_err(|r| bad("disk reads", r))?;
    let copy = calibrate::fit_rate(COPY_BYTES as f64, &samples.copy_ns, "RAM copy")
        .map_err(|r| bad("RAM copies", r))?;
    let params = (3 * shape.hidden * shape.ffn) as f64;
    let mut rates: Vec<(WeightFormat, f64)> = Vec::new();
    for (f, ns) in &samples.kernel_ns {
        let rate = calibrate::fit_rate(params, ns, &format!("{f} kernels"))
            .map_err(|r| bad(&format!("{f} kernels"), r))?;
        rates.push((*f, rate));
    }
    let alone_of = |format: WeightFormat| {
        samples
            .kernel_ns
            .iter()
            .find(|(f, _)| *f == format)
            .map_or(&[][..], |(_, ns)| &ns[..])
    };
    let alone = alone_of(shape.format);
    let mut slowdown_after_load = Vec::new();
    for (f, ns) in &samples.loaded_kernel_ns {
        let x = calibrate::fit_slowdown("on bytes just read", ns, alone_of(*f))
            .map_err(|r| bad(&format!("{f} kernels on bytes just read"), r))?;
        slowdown_after_load.push((*f, x));
    }
    let figures = Figures {
        link,
        copy_bytes_per_s: copy,
        rates,
        slowdown_while_transferring: calibrate::fit_slowdown(
            "during reads",
            &samples.contended_kernel_ns,
            alone,
        )
        .map_err(|r| bad("kernels during reads", r))?,
        slowdown_after_load,
    };
    let text = profile_text(w, &shape, direct, samples, &figures)?;
    // What we fit must be a valid profile.
    let profile = crate::hardware::parse("host-calibrated", &text).map_err(Error::from)?;
    Ok(Fitted {
        text,
        profile,
        figures,
    })
}

/// Fits the pooled samples and writes the profile to `path`; returns the printed summary.
fn write_profile(
    w: &Workload,
    stores: &[ExpertStore],
    samples: &Samples,
    path: &Path,
) -> Result<(String, Fitted)> {
    let shape = stores[0].shape;
    let direct = stores[0].direct;
    let fit = fit_profile(w, stores, samples)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    write_atomic(path, fit.text.as_bytes())?;
    let mut s = format!(
        "calibrated this host into {} ({} rounds; {} reads, queue depth 1)\n",
        path.display(),
        samples.rounds,
        if direct { "direct" } else { "buffered" }
    );
    s.push_str(&format!(
        "disk -> dram: latency {:.1} µs, {:.3} GB/s (reads of {} bytes in the decode's regime: spread (p90 - p10) / median {:.2})\n",
        fit.figures.link.latency_ns * 1e-3,
        fit.figures.link.bandwidth_bytes_per_s * 1e-9,
        shape.stride(),
        fit.figures.link.spread
    ));
    s.push_str(&format!(
        "RAM copy: {:.2} GB/s\n",
        fit.figures.copy_bytes_per_s * 1e-9
    ));
    for (f, r) in &fit.figures.rates {
        s.push_str(&format!(
            "{f} expert kernels ({} x {} SwiGLU, {} thread(s), weights from memory): {:.3} G weights/s\n",
            shape.hidden, shape.ffn, w.threads, r * 1e-9
        ));
    }
    s.push_str(&format!(
        "{} expert kernels while an expert read is in flight: {:.1} % slower ({} kernels)\n",
        shape.format,
        100.0 * fit.figures.slowdown_while_transferring,
        samples.contended_kernel_ns.len()
    ));
    for ((f, x), (_, ns)) in fit
        .figures
        .slowdown_after_load
        .iter()
        .zip(&samples.loaded_kernel_ns)
    {
        s.push_str(&format!(
            "{f} expert kernels on the bytes just read: {:.1} % slower ({} kernels)\n",
            100.0 * x,
            ns.len()
        ));
    }
    Ok((s, fit))
}

/// Calibrates (`rounds` rounds back to back) and writes the profile to `path`.
fn calibrate_profile(
    w: &Workload,
    formats: &[WeightFormat],
    reads: usize,
    path: &Path,
) -> Result<String> {
    if formats.is_empty() {
        return Err(Error::usage("--formats: give at least one"));
    }
    let stores: Vec<ExpertStore> = formats
        .iter()
        .map(|&f| store(w, f))
        .collect::<Result<_>>()?;
    let mut benches: Vec<calibrate::KernelBench> = stores
        .iter()
        .map(|s| calibrate::KernelBench::new(s, w.threads as usize))
        .collect::<Result<_>>()?;
    let mut samples = Samples::default();
    for _ in 0..5 {
        calibration_round(w, &stores, &mut benches, reads.div_ceil(5), &mut samples)?;
    }
    Ok(write_profile(w, &stores, &samples, path)?.0)
}

fn profile_text(
    w: &Workload,
    shape: &StoreShape,
    direct: bool,
    samples: &Samples,
    figures: &Figures,
) -> Result<String> {
    let (link, copy, rates) = (&figures.link, figures.copy_bytes_per_s, &figures.rates[..]);
    use crate::hardware::spec::{Calibration, HardwareProfileSpec};
    let base = crate::hardware::presets::get("host").expect("the host preset is shipped");
    let mut spec: HardwareProfileSpec = crate::config::parse_toml("host", base)?;
    let measured = Calibration::Measured;
    spec.name = "host-calibrated".into();
    spec.description = format!(
        "this host as `moesim host calibrate` measured it: experts of {} on the disk, read at queue depth 1 ({}), {} kernel thread(s)",
        w.model,
        if direct { "direct I/O" } else { "buffered" },
        w.threads
    );
    spec.sources = vec![format!(
        "M1: moesim host calibrate --model {} --threads {} ({} rounds: {} reads of {} and 4096 bytes in the decode's regime, half during a kernel; kernels at {} x {}, alone and during reads), moesim {}",
        w.model,
        w.threads,
        samples.rounds,
        samples.large_ns.len(),
        shape.stride(),
        shape.hidden,
        shape.ffn,
        env!("CARGO_PKG_VERSION")
    )];
    for t in &mut spec.tiers {
        match t.name.as_str() {
            "dram" => {
                t.read_bandwidth_bytes_per_s = copy;
                t.write_bandwidth_bytes_per_s = copy;
                t.reserved_bytes = 0;
                t.calibrated = measured;
            }
            "disk" => {
                t.read_bandwidth_bytes_per_s = link.bandwidth_bytes_per_s;
                t.latency_ns = link.latency_ns;
                t.calibrated = measured;
            }
            _ => {}
        }
    }
    for l in &mut spec.links {
        l.bandwidth_bytes_per_s = link.bandwidth_bytes_per_s;
        l.latency_ns = link.latency_ns;
        l.granularity_bytes = 1;
        l.channels = 1;
        l.calibrated = measured;
    }
    let c = &mut spec.compute;
    c.cores = w.threads as i64;
    c.expert_slowdown_while_transferring = figures.slowdown_while_transferring;
    for &(f, x) in &figures.slowdown_after_load {
        if let Some(class) = f.compute_class() {
            *c.expert_slowdown_after_load.get_mut(class) = x;
        }
    }
    for &(f, r) in rates {
        if let Some(class) = f.compute_class() {
            *c.expert_weights_per_s.get_mut(class) = r;
        }
    }
    c.calibrated = measured;
    let body = toml::to_string(&spec).expect("specs serialize");
    Ok(format!(
        "# Generated by `moesim host calibrate` on the machine that ran it: measured figures of that\n\
         # machine (disk reads, RAM copies, expert kernels), not datasheet figures. Formats not\n\
         # measured keep the shipped host profile's values.\n{body}"
    ))
}

/// One grid point's comparison.
#[derive(Debug, Serialize)]
struct ValidateRow {
    format: String,
    capacity_experts: u32,
    cache_share: f64,
    policy: String,
    router: String,
    measured_token_latency_mean_ns: f64,
    predicted_token_latency_mean_ns: f64,
    mean_rel_error: f64,
    /// Lowest and highest error in mean latency over the point's decodes.
    mean_rel_error_min: f64,
    mean_rel_error_max: f64,
    measured_token_latency_p99_ns: u64,
    predicted_token_latency_p99_ns: u64,
    p99_rel_error: f64,
    measured_tokens_per_s: f64,
    predicted_tokens_per_s: f64,
    tokens_per_s_rel_error: f64,
    measured_hits: u64,
    predicted_hits: u64,
    misses: u64,
    direct_io: bool,
}

/// Simulates `exp` on `trace` with the real run's workload: experts only (no dense layers,
/// gate or LM head, which the real decode does not run).
fn predict(exp: &Experiment, trace: &SimTrace) -> Result<SimReport> {
    let plan = exp.plan(trace)?;
    let mut setup = SimSetup::new(
        &exp.profile,
        &exp.model,
        exp.options.clone(),
        &trace.popularity(),
        Some(&plan),
    )
    .map_err(|e| Error::usage(format!("{}: {}", e.key, e.reason)))?;
    setup.dense_ns = 0;
    setup.gate_ns = 0;
    setup.head_ns = 0;
    Ok(crate::sim::run(&setup, trace).map_err(Error::usage)?.0)
}

fn rel(predicted: f64, measured: f64) -> f64 {
    (predicted - measured) / measured
}

fn validate(a: ValidateArgs, out: &mut dyn Write) -> Result<()> {
    let w = &a.workload;
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;
    let model = crate::moe::load(&w.model)?;
    let experts = model.n_experts;
    let stores: Vec<ExpertStore> = a
        .formats
        .iter()
        .map(|&f| store(w, f))
        .collect::<Result<_>>()?;
    // Real decodes first. Without --profile, calibration rounds are interleaved with the
    // decodes (one before each decode of a grid point and one after its last), and each decode
    // is predicted with the profile fitted from the two rounds around it: this VM's disk and
    // memory speeds drift by 10-40 % over seconds to minutes, so a profile measured in another
    // stretch of time predicts a different machine. The rounds are also pooled into one profile,
    // written as OUT/host-calibrated.toml, whose predictions the summary reports beside.
    let calibrating = a.profile.is_none();
    let mut samples = Samples::default();
    let mut benches: Vec<calibrate::KernelBench> = if calibrating {
        stores
            .iter()
            .map(|s| calibrate::KernelBench::new(s, w.threads as usize))
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    let round_reads = a.reads.div_ceil(5).max(10);
    let mut dropped = 0usize;
    struct Measured {
        format: WeightFormat,
        policy: String,
        share: f64,
        capacity: u32,
        /// The decodes, each with the profile fitted around it (when calibrating).
        runs: Vec<(DecodeReport, Option<crate::hardware::HardwareProfile>)>,
        /// The setting (its profile replaced for each prediction) and its trace.
        exp: Experiment,
        trace: SimTrace,
    }
    let mut measured: Vec<Measured> = Vec::new();
    for st in &stores {
        let format = st.shape.format;
        for p in &a.policies {
            let pk = policy(p)?;
            for lambda in [0.0, a.lambda] {
                for &share in &a.cache_shares {
                    let capacity = ((share * experts as f64).round() as u32).clamp(1, experts);
                    let exp = experiment(w, format, "host", capacity, p, lambda)?;
                    let trace = exp.build_trace()?;
                    let options = decode_options(w, &exp, capacity, pk.clone());
                    let mut round = |benches: &mut [calibrate::KernelBench]| -> Result<Samples> {
                        let mut r = Samples::default();
                        calibration_round(w, &stores, benches, round_reads, &mut r)?;
                        samples.extend(&r);
                        Ok(r)
                    };
                    let mut before = if calibrating {
                        Some(round(&mut benches)?)
                    } else {
                        None
                    };
                    let mut runs = Vec::new();
                    let mut refused: Option<Error> = None;
                    for _ in 0..a.repeats {
                        let real = decode(st, &trace, &options, None)?;
                        match before.take() {
                            Some(mut pair) => {
                                let after = round(&mut benches)?;
                                pair.extend(&after);
                                before = Some(after);
                                // A window too noisy to fit drops its decode: the host was not
                                // one machine while it ran.
                                match fit_profile(w, &stores, &pair) {
                                    Ok(f) => runs.push((real, Some(f.profile))),
                                    Err(e) => {
                                        dropped += 1;
                                        refused = Some(e);
                                    }
                                }
                            }
                            None => runs.push((real, None)),
                        }
                    }
                    if runs.is_empty() {
                        return Err(Error::usage(format!(
                            "grid point {format} {capacity}/{experts} {p} lambda {lambda}: no decode had a usable calibration around it; last: {}",
                            refused.map_or_else(String::new, |e| e.to_string())
                        )));
                    }
                    measured.push(Measured {
                        format,
                        policy: p.clone(),
                        share,
                        capacity,
                        runs,
                        exp,
                        trace,
                    });
                }
            }
        }
    }
    // The profile of the pooled rounds (or the one given). When calibrating, a pooled fit the
    // spread check refuses (the VM drifted too far over the run) is reported, not fatal: every
    // prediction uses the rounds around its decode.
    let mut notes = String::new();
    let profile = match &a.profile {
        Some(p) => Some(crate::hardware::load(&p.display().to_string())?),
        None => {
            let p = a.out.join("host-calibrated.toml");
            match write_profile(w, &stores, &samples, &p) {
                Ok((s, fit)) => {
                    notes = s;
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
    let mut rows: Vec<ValidateRow> = Vec::new();
    let mut pooled_within = 0usize;
    for m in measured {
        let (format, p, share, capacity) = (m.format, &m.policy, m.share, m.capacity);
        // The same setting on the calibrated profile; the trace does not depend on the profile.
        let mut exp = m.exp;
        let pooled = match &profile {
            Some(pr) => {
                exp.profile = pr.clone();
                Some(predict(&exp, &m.trace)?)
            }
            None => None,
        };
        // Each decode against its own prediction; the point reports the pair whose error in
        // mean latency is the median of the point's.
        let mut pairs: Vec<(f64, DecodeReport, SimReport)> = Vec::new();
        for (real, fitted) in m.runs {
            let sim = match fitted {
                Some(f) => {
                    exp.profile = f;
                    predict(&exp, &m.trace)?
                }
                None => pooled.clone().expect("a given profile"),
            };
            let error = rel(sim.token_latency_mean_ns, stats(&real.token_latencies_ns).0);
            pairs.push((error, real, sim));
        }
        pairs.sort_by(|x, y| x.0.total_cmp(&y.0));
        let error_range = (pairs[0].0, pairs[pairs.len() - 1].0);
        let (_, real, sim) = pairs.swap_remove(pairs.len() / 2);
        let (mean, _, p99, tps) = stats(&real.token_latencies_ns);
        if pooled.as_ref().is_some_and(|pooled| {
            rel(pooled.token_latency_mean_ns, mean).abs() <= 0.1
                && rel(pooled.decode_tokens_per_s, tps).abs() <= 0.1
        }) {
            pooled_within += 1;
        }
        rows.push(ValidateRow {
            format: format.to_string(),
            capacity_experts: capacity,
            cache_share: share,
            policy: p.clone(),
            router: exp.options.router.name().to_string(),
            measured_token_latency_mean_ns: mean,
            predicted_token_latency_mean_ns: sim.token_latency_mean_ns,
            mean_rel_error: rel(sim.token_latency_mean_ns, mean),
            mean_rel_error_min: error_range.0,
            mean_rel_error_max: error_range.1,
            measured_token_latency_p99_ns: p99,
            predicted_token_latency_p99_ns: sim.token_latency_p99_ns,
            p99_rel_error: rel(sim.token_latency_p99_ns as f64, p99 as f64),
            measured_tokens_per_s: tps,
            predicted_tokens_per_s: sim.decode_tokens_per_s,
            tokens_per_s_rel_error: rel(sim.decode_tokens_per_s, tps),
            measured_hits: real.hits,
            predicted_hits: sim.hits,
            misses: real.misses,
            direct_io: real.direct,
        });
    }
    write_atomic(
        a.out.join("validate.csv"),
        &crate::report::flat_csv::to_csv(&rows),
    )?;
    let mut t = Table::new(&[
        ("format", Align::Left),
        ("cache", Align::Right),
        ("policy", Align::Left),
        ("router", Align::Left),
        ("mean ms real/sim", Align::Right),
        ("err", Align::Right),
        ("p99 ms real/sim", Align::Right),
        ("err", Align::Right),
        ("tok/s real/sim", Align::Right),
        ("err", Align::Right),
        ("hits real/sim", Align::Right),
    ]);
    for r in &rows {
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
    let worst = |f: fn(&ValidateRow) -> f64| rows.iter().map(f).fold(0.0f64, |m, x| m.max(x.abs()));
    let within = rows
        .iter()
        .filter(|r| r.mean_rel_error.abs() <= 0.1 && r.tokens_per_s_rel_error.abs() <= 0.1)
        .count();
    let summary = format!(
        "{} grid points: mean latency within 10% and tokens/s within 10% at {} of them; worst |error|: mean {:.1}%, p99 {:.1}%, tokens/s {:.1}%; hit counts equal at {} of {}\n",
        rows.len(),
        within,
        100.0 * worst(|r| r.mean_rel_error),
        100.0 * worst(|r| r.p99_rel_error),
        100.0 * worst(|r| r.tokens_per_s_rel_error),
        rows.iter()
            .filter(|r| r.measured_hits == r.predicted_hits)
            .count(),
        rows.len()
    ) + &if calibrating {
        format!(
            "(each decode predicted with the calibration rounds run just before and after it; {}; {dropped} of {} decodes dropped because the rounds around them were too noisy to fit)\n",
            if profile.is_some() {
                format!(
                    "with one profile pooled from every round, {pooled_within} of {} points are within 10%",
                    rows.len()
                )
            } else {
                "the pooled rounds gave no profile".to_string()
            },
            a.repeats as usize * rows.len()
        )
    } else {
        String::new()
    };
    let mut md = format!(
        "# host-validate\n\nReal paged-expert decode on this host against moesim's prediction on {}: {} ({} decode tokens, seed {}), {} kernel thread(s), {}.\n\n",
        if calibrating {
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
        },
        w.model,
        w.tokens,
        w.seed,
        w.threads,
        if rows.first().is_some_and(|r| r.direct_io) {
            "direct I/O"
        } else {
            "buffered reads"
        }
    );
    md.push_str("| format | cache | policy | router | mean ms real | mean ms sim | error | error range over decodes | p99 ms real | p99 ms sim | error | tok/s real | tok/s sim | error | hits real | hits sim |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in &rows {
        md.push_str(&format!(
            "| {} | {}/{} | {} | {} | {:.2} | {:.2} | {:+.1} % | {:+.1} to {:+.1} % | {:.2} | {:.2} | {:+.1} % | {:.1} | {:.1} | {:+.1} % | {} | {} |\n",
            r.format,
            r.capacity_experts,
            experts,
            r.policy,
            r.router,
            r.measured_token_latency_mean_ns * 1e-6,
            r.predicted_token_latency_mean_ns * 1e-6,
            100.0 * r.mean_rel_error,
            100.0 * r.mean_rel_error_min,
            100.0 * r.mean_rel_error_max,
            r.measured_token_latency_p99_ns as f64 * 1e-6,
            r.predicted_token_latency_p99_ns as f64 * 1e-6,
            100.0 * r.p99_rel_error,
            r.measured_tokens_per_s,
            r.predicted_tokens_per_s,
            100.0 * r.tokens_per_s_rel_error,
            r.measured_hits,
            r.predicted_hits
        ));
    }
    md.push_str(&format!("\n{summary}\n![predicted vs measured](predicted-vs-measured.png)\n\nReproduce: `moesim host validate --out {}`.\n", a.out.display()));
    write_atomic(a.out.join("summary.md"), md.as_bytes())?;
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
    for r in &rows {
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
            w.model
        ),
        x_label: "measured mean token latency (ms)".into(),
        y_label: "predicted mean token latency (ms)".into(),
        series,
        ..Default::default()
    }
    .write(&a.out.join("predicted-vs-measured"))?;
    let mut s = notes;
    s.push('\n');
    s.push_str(&t.render());
    s.push('\n');
    s.push_str(&summary);
    s.push_str(&format!(
        "wrote {}/ (validate.csv, summary.md, predicted-vs-measured.png)\n",
        a.out.display()
    ));
    emit(out, &s)
}
