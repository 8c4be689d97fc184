//! A hardware profile of this host from calibration samples (`moesim host calibrate`, and the
//! profiles `moesim host validate` predicts with): the samples fitted into [`Figures`] (the
//! disk link, RAM bandwidth, kernel rates and slowdowns), written over the shipped `host`
//! profile as measured figures, and checked to be a valid profile.

use super::calibrate::{self, KernelBench, LinkFit};
use super::samples::{COPY_BYTES, RoundBudget, Samples, calibration_round};
use super::store::{ALIGN, ExpertStore, StoreShape};
use super::workload::Workload;
use crate::error::{Error, Result};
use crate::hardware::HardwareProfile;
use crate::hardware::time_distribution::TimeDistribution;
use crate::quant::WeightFormat;

/// The fitted figures of a calibrated profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// The disk → DRAM link.
    pub link: LinkFit,
    /// RAM copy bandwidth: the DRAM tier's.
    pub copy_bytes_per_s: f64,
    /// Expert kernel rates (weights per second), per format.
    pub rates: Vec<(WeightFormat, f64)>,
    /// Batched expert kernel rates (weight-token products per second, at
    /// [`calibrate::BATCH_TOKENS`] tokens), per format: the profile's `peak_macs_per_s`.
    pub batched_rates: Vec<(WeightFormat, f64)>,
    /// Kernels during reads, as a fraction, per format.
    pub slowdown_while_transferring: Vec<(WeightFormat, f64)>,
    /// Kernels on bytes just read, as a fraction (negative: faster), per format.
    pub slowdown_after_load: Vec<(WeightFormat, f64)>,
    /// Expert kernel rates on cached weights (cycling through a few experts), per format.
    pub cached_rates: Vec<(WeightFormat, f64)>,
    /// The last-level cache for expert weights, its capacity and lifetime
    /// ([`calibrate::fit_weights_cache`]); none when the kernels showed no cache.
    pub weights_cache: Option<calibrate::CacheFit>,
    /// The compute unit's resumption after a read it waited for: the mean over the reads the
    /// compute thread blocked for (the mean, since the total wait is what it adds to; 0 with
    /// none).
    pub wake_ns: f64,
    /// The compute unit's time handing a read to the idle I/O thread: the mean over every
    /// expert read (0 with none).
    pub issue_ns: f64,
    /// Where expert reads land, per format ([`calibrate::fit_landing`]).
    pub landing_by_format: Vec<(WeightFormat, Vec<(f64, f64)>)>,
    /// The profile's `weights_cache.landing`: the formats' points averaged (the first format's
    /// when they have different numbers of points).
    pub landing: Vec<(f64, f64)>,
    /// Expert read times over their round's median, as the disk link's time distribution
    /// (none from fewer than 10 reads).
    pub read_time_distribution: Option<TimeDistribution>,
    /// Figures whose samples were noisy (spread above [`calibrate::NOISY_SPREAD`]) or whose
    /// median is imprecise, each with its figures: kept, and said.
    pub noisy: Vec<String>,
}

/// Quantiles in a calibrated read-time distribution (every 1 %).
pub const DISTRIBUTION_POINTS: usize = 101;

/// A profile fitted from calibration samples.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// The profile file's text.
    pub text: String,
    /// The profile.
    pub profile: HardwareProfile,
    /// What was fitted.
    pub figures: Figures,
}

/// Calibration rounds and the profile they fit.
#[derive(Debug)]
pub struct Calibration {
    /// The samples of every round.
    pub samples: Samples,
    /// The profile.
    pub fit: Fitted,
}

/// Fits `samples`, read from a store of `shape` (with direct I/O or not), into a profile;
/// refuses measurements that cannot describe the host (`calibration of WHAT: reason`).
/// Noisy samples are fitted through their medians and listed in [`Figures::noisy`].
pub fn fit_profile(
    w: &Workload,
    shape: StoreShape,
    direct: bool,
    samples: &Samples,
) -> Result<Fitted> {
    let bad = |what: &str, r: String| Error::usage(format!("calibration of {what}: {r}"));
    // The link through the expert sizes a decode reads when there are several; through the
    // 4 KiB reads otherwise, or when the expert sizes give no positive line.
    let copy = calibrate::fit_rate(COPY_BYTES as f64, &samples.copy_ns, "RAM copy")
        .map_err(|r| bad("RAM copies", r))?;
    let link = match calibrate::fit_link_through_sizes(
        shape.stride(),
        &samples.large_ns,
        &samples.other_large_ns,
        samples.request_bytes,
        copy,
    ) {
        Some(f) => f,
        None => calibrate::fit_link(
            ALIGN as u64,
            &samples.small_ns,
            shape.stride(),
            &samples.large_ns,
        )
        .map_err(|r| bad("disk reads", r))?,
    };
    let mut noisy = Vec::new();
    if link.noisy() {
        noisy.push(format!(
            "disk reads of {} bytes: spread (p90 - p10) / median {:.2}, median known to ±{:.1} % over {} reads",
            shape.stride(),
            link.spread,
            100.0 * link.precision,
            samples.large_ns.len()
        ));
    }
    let params = (3 * shape.hidden * shape.ffn) as f64;
    let mut rates: Vec<(WeightFormat, f64)> = Vec::new();
    for (f, ns) in &samples.kernel_ns {
        let rate = calibrate::fit_kernel_rate(params, ns, &format!("{f} kernels"))
            .map_err(|r| bad(&format!("{f} kernels"), r))?;
        let (spread, precision) = (calibrate::spread(ns), crate::stats::median_precision(ns));
        if spread > calibrate::NOISY_SPREAD || precision > super::samples::KERNEL_PRECISION {
            noisy.push(format!(
                "{f} kernels: spread {spread:.2}, median known to ±{:.1} % over {} runs",
                100.0 * precision,
                ns.len()
            ));
        }
        rates.push((*f, rate));
    }
    let mut batched_rates: Vec<(WeightFormat, f64)> = Vec::new();
    for (f, ns) in &samples.batched_kernel_ns {
        let what = format!("{f} batched kernels");
        let rate = calibrate::fit_kernel_rate(params * calibrate::BATCH_TOKENS as f64, ns, &what)
            .map_err(|r| bad(&what, r))?;
        batched_rates.push((*f, rate));
    }
    let alone_of = |format: WeightFormat| {
        samples
            .kernel_ns
            .iter()
            .find(|(f, _)| *f == format)
            .map_or(&[][..], |(_, ns)| &ns[..])
    };
    let alone = alone_of(shape.format);
    // Kernels during reads, per format; a format with too few overlapping kernels in these
    // rounds takes the first format's figure, and says so.
    let mut slowdown_while_transferring: Vec<(WeightFormat, f64)> = Vec::new();
    let first = samples
        .contended_kernel_ns
        .iter()
        .find(|(f, _)| *f == shape.format)
        .map_or(&[][..], |(_, ns)| &ns[..]);
    let first_x = calibrate::fit_slowdown("during reads", first, alone)
        .map_err(|r| bad("kernels during reads", r))?;
    slowdown_while_transferring.push((shape.format, first_x));
    for (f, ns) in &samples.kernel_ns {
        if *f == shape.format {
            continue;
        }
        let during = samples
            .contended_kernel_ns
            .iter()
            .find(|(g, _)| g == f)
            .map_or(&[][..], |(_, ns)| &ns[..]);
        let x = match calibrate::fit_slowdown("during reads", during, ns) {
            Ok(x) => x,
            Err(r) => {
                noisy.push(format!(
                    "{f} kernels during reads: {r}; the {} figure is used",
                    shape.format
                ));
                first_x
            }
        };
        slowdown_while_transferring.push((*f, x));
    }
    let mut slowdown_after_load = Vec::new();
    for (f, ns) in &samples.loaded_kernel_ns {
        let x = calibrate::fit_change("on bytes just read", ns, alone_of(*f))
            .map_err(|r| bad(&format!("{f} kernels on bytes just read"), r))?;
        slowdown_after_load.push((*f, x));
    }
    let mut cached_rates: Vec<(WeightFormat, f64)> = Vec::new();
    for (f, ns) in &samples.warm_kernel_ns {
        let what = format!("{f} kernels on cached weights");
        cached_rates.push((
            *f,
            calibrate::fit_kernel_rate(params, ns, &what).map_err(|r| bad(&what, r))?,
        ));
    }
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let weights_cache = calibrate::fit_weights_cache(
        alone,
        samples
            .warm_kernel_ns
            .iter()
            .find(|(f, _)| *f == shape.format)
            .map_or(&[][..], |(_, ns)| &ns[..]),
        calibrate::Draws {
            kernel_ns: &samples.random_kernel_ns,
            interval_ns: mean(&samples.random_interval_ns),
        },
        Some(calibrate::Draws {
            kernel_ns: &samples.paced_kernel_ns,
            interval_ns: mean(&samples.paced_interval_ns),
        }),
        ((shape.layers * shape.experts) as usize).div_ceil(2),
        shape.expert_bytes(),
    );
    let landing_by_format: Vec<(WeightFormat, Vec<(f64, f64)>)> = samples
        .landing
        .iter()
        .map(|(f, l)| {
            let warm: [(&[f64], &[f64]); 1] = [(&l.warm_ns, &l.warm_distance_bytes)];
            // A cold buffer's distance is at least the pool's bytes.
            let fallback = calibrate::LANDING_COLD_BYTES as f64;
            (
                *f,
                calibrate::fit_landing(&l.cold_ns, &l.cold_distance_bytes, &warm, fallback),
            )
        })
        .collect();
    let landing = average_points(&landing_by_format);
    let figures = Figures {
        wake_ns: mean(&samples.wake_ns),
        issue_ns: mean(&samples.issue_ns),
        landing_by_format,
        landing,
        link,
        cached_rates,
        weights_cache,
        copy_bytes_per_s: copy,
        rates,
        batched_rates,
        slowdown_while_transferring,
        slowdown_after_load,
        read_time_distribution: (samples.large_over_median.len() >= 10)
            .then(|| {
                TimeDistribution::from_times(
                    &samples.large_over_median,
                    samples.large_over_median.len().min(DISTRIBUTION_POINTS),
                )
            })
            .flatten(),
        noisy,
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

/// The formats' landing points averaged point by point; the first format's when their numbers
/// of points differ.
fn average_points(by_format: &[(WeightFormat, Vec<(f64, f64)>)]) -> Vec<(f64, f64)> {
    let Some((_, first)) = by_format.first() else {
        return Vec::new();
    };
    if by_format.iter().any(|(_, p)| p.len() != first.len()) {
        return first.clone();
    }
    let n = by_format.len() as f64;
    (0..first.len())
        .map(|i| {
            let d = by_format.iter().map(|(_, p)| p[i].0).sum::<f64>() / n;
            let f = by_format.iter().map(|(_, p)| p[i].1).sum::<f64>() / n;
            (d, f)
        })
        .collect()
}

/// Calibrates this host on `stores` (the first sets the read size; every format's kernels are
/// timed): 5 rounds back to back, each starting with `budget.reads` reads of each size and
/// extended within its budget, fitted into a profile. Samples that do not yet describe a link
/// (expert reads no slower than 4 KiB ones, too few kernels overlapping a read) get up to 5
/// more rounds before the reason is returned.
pub fn calibrate(
    w: &Workload,
    stores: &[ExpertStore],
    budget: &RoundBudget,
) -> Result<Calibration> {
    let mut benches: Vec<KernelBench> = stores
        .iter()
        .map(|s| KernelBench::new(s, w.threads, w.kernel))
        .collect::<Result<_>>()?;
    let mut samples = Samples::default();
    loop {
        calibration_round(stores, &mut benches, budget, w.seed, &mut samples)?;
        if samples.rounds < 5 {
            continue;
        }
        match fit_profile(w, stores[0].shape, stores[0].direct, &samples) {
            Ok(fit) => return Ok(Calibration { samples, fit }),
            Err(e) if samples.rounds >= 10 => return Err(e),
            Err(_) => {}
        }
    }
}

/// The profile file: the shipped `host` profile with the measured figures written over its
/// DRAM and disk tiers, its links and its compute section (formats not measured keep the
/// shipped values).
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
        "this host as `moesim host calibrate` measured it: experts of {} on the disk, read at queue depth 1 ({}), {} kernel thread(s), {} kernels",
        w.model,
        if direct { "direct I/O" } else { "buffered" },
        w.threads,
        w.kernel.name()
    );
    spec.sources = vec![format!(
        "M1: moesim host calibrate --model {} --threads {} --kernel {} ({} rounds: {} reads of {} and 4096 bytes in the decode's regime, half during a kernel; kernels at {} x {}, alone and during reads), moesim {}",
        w.model,
        w.threads,
        w.kernel.name(),
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
                // Reads that queue behind another reader cost nearly the same at every size,
                // and a line through their medians can be steeper than RAM: the link keeps its
                // fit (it times every transfer), the tier's own figure stays below DRAM's, as
                // the profile's tier order requires.
                t.read_bandwidth_bytes_per_s = link.bandwidth_bytes_per_s.min(copy);
                t.latency_ns = link.latency_ns;
                t.calibrated = measured;
            }
            _ => {}
        }
    }
    for l in &mut spec.links {
        l.bandwidth_bytes_per_s = link.bandwidth_bytes_per_s;
        l.latency_ns = link.latency_ns;
        l.request_bytes = link.request_bytes.map(|r| r as i64);
        l.granularity_bytes = 1;
        l.channels = 1;
        l.calibrated = measured;
        l.time_distribution = figures.read_time_distribution.as_ref().map(|d| {
            let mut spec = d.spec();
            if let crate::hardware::time_distribution::TimeDistributionSpec::Empirical {
                samples: n,
                ..
            } = &mut spec
            {
                *n = Some(samples.large_over_median.len() as u64);
            }
            spec
        });
    }
    let c = spec
        .compute
        .as_mut()
        .expect("the shipped host preset has one [compute] section");
    c.cores = w.threads as i64;
    // Per class: classes not measured take the first format's figure.
    let mut during = crate::hardware::spec::FormatFractionSpec::default();
    let first = figures.slowdown_while_transferring[0].1;
    for class in crate::quant::format::ComputeClass::ALL {
        *during.get_mut(class) = first;
    }
    for &(f, x) in &figures.slowdown_while_transferring {
        if let Some(class) = f.compute_class() {
            *during.get_mut(class) = x;
        }
    }
    c.expert_slowdown_while_transferring = crate::hardware::SlowdownSpec::PerClass(during);
    for &(f, x) in &figures.slowdown_after_load {
        if let Some(class) = f.compute_class() {
            *c.expert_slowdown_after_load.get_mut(class) = x;
        }
    }
    for &(f, r) in rates {
        // A 5- or 6-bit format's rate is no class's column (profiles interpolate it).
        if let Some(class) = f
            .compute_class()
            .filter(|_| f.rate_between_q4_and_q8().is_none())
        {
            *c.expert_weights_per_s.get_mut(class) = r;
        }
    }
    // The batched peak per class: the measured batched rate (never below the class's batch-1
    // rate, as a profile requires); classes not measured claim no batching gain.
    c.peak_macs_per_s = Some(raised(&c.expert_weights_per_s, &figures.batched_rates));
    // The last-level cache for weights: the cached rate of the formats measured (never below
    // their rate from memory), the others claim no gain.
    c.weights_cache = figures
        .weights_cache
        .map(|fit| crate::hardware::spec::WeightsCacheSpec {
            capacity_bytes: fit.capacity_bytes,
            replacement: crate::hardware::Replacement::Random,
            lifetime_ns: fit.lifetime_ns,
            expert_weights_per_s: raised(&c.expert_weights_per_s, &figures.cached_rates),
            landing: figures
                .landing
                .iter()
                .map(
                    |&(within_bytes, time_factor)| crate::hardware::spec::LandingPointSpec {
                        within_bytes,
                        time_factor,
                    },
                )
                .collect(),
        });
    c.wake_ns = figures.wake_ns;
    c.issue_ns = figures.issue_ns;
    c.calibrated = measured;
    // Written as one compute unit on the tier it reads, with no launch cost.
    let mut unit = spec.compute.take().expect("taken above");
    unit.name = Some("cpu".into());
    unit.tier = Some(
        spec.compute_tier
            .take()
            .expect("the shipped host preset names its compute tier"),
    );
    spec.compute_units = vec![unit];
    let body = toml::to_string(&spec).expect("specs serialize");
    Ok(format!(
        "# Generated by `moesim host calibrate` on the machine that ran it: measured figures of that\n\
         # machine (disk reads, RAM copies, expert kernels), not datasheet figures. Formats not\n\
         # measured keep the shipped host profile's values. The cpu unit's peak_macs_per_s is the\n\
         # batched SwiGLU's rate ({} tokens per expert, one GEMM per product) for the formats\n\
         # measured, the batch-1 rate for the others.\n{body}",
        calibrate::BATCH_TOKENS
    ))
}

/// `base` with each measured format's class raised to its rate in `rates` (never lowered: a
/// batched or cached rate below the batch-1 one claims no gain). A 5- or 6-bit format's rate is
/// no class's column.
fn raised(
    base: &crate::hardware::spec::FormatThroughputSpec,
    rates: &[(WeightFormat, f64)],
) -> crate::hardware::spec::FormatThroughputSpec {
    let mut out = base.clone();
    for &(f, r) in rates {
        if let Some(class) = f
            .compute_class()
            .filter(|_| f.rate_between_q4_and_q8().is_none())
        {
            let slot = out.get_mut(class);
            *slot = r.max(*slot);
        }
    }
    out
}
