//! The simulator against the real decode (`moesim host validate`): a grid of settings
//! (format × policy × router × cache size) decoded for real, each decode predicted by the
//! simulator on a calibrated profile, and one [`ValidateRow`] per grid point.
//!
//! Without a given profile, calibration rounds are interleaved with the decodes (one before
//! each decode of a grid point and one after its last), and each decode is predicted with the
//! profile fitted from the two rounds around it: this VM's disk and memory speeds drift by
//! 10-40 % over seconds to minutes, so a profile measured in another stretch of time predicts a
//! different machine. The rounds are also pooled into one profile, whose predictions are
//! counted beside. A point reports, of its decodes, the one whose prediction error in mean
//! latency is the median.

use serde::Serialize;

use super::calibrate::KernelBench;
use super::decode::{DecodeReport, decode};
use super::profile::fit_profile;
use super::samples::{RoundBudget, Samples, calibration_round};
use super::store::ExpertStore;
use super::workload::{TokenLatency, Workload};
use crate::cache::PolicyKind;
use crate::error::{Error, Result};
use crate::experiment::Experiment;
use crate::hardware::HardwareProfile;
use crate::quant::WeightFormat;
use crate::sim::{SimReport, SimSetup, SimTrace};

/// The grid of settings, run on every store (one per format).
#[derive(Debug, Clone)]
pub struct Grid {
    /// Eviction policies, each with the name it was given as (the rows' label).
    pub policies: Vec<(String, PolicyKind)>,
    /// The memory-aware λ; every point runs with the standard router and with this.
    pub lambda: f64,
    /// Cache sizes, as shares of the experts per layer.
    pub cache_shares: Vec<f64>,
    /// Real decodes per point.
    pub repeats: u32,
    /// Calibrate around each decode with rounds of this budget; none when a profile is given.
    pub calibration: Option<RoundBudget>,
}

/// One real decode and what it is predicted with.
#[derive(Debug)]
struct Run {
    real: DecodeReport,
    /// The profile fitted from the rounds around it (none without calibration, or when those
    /// rounds could not be fitted: then the pooled profile predicts it).
    fitted: Option<HardwareProfile>,
    /// The spread of the expert reads in the rounds around it, and whether they were noisy.
    window_spread: Option<f64>,
    noisy: bool,
}

/// The decodes of one grid point, each with the profile fitted around it when calibrating.
#[derive(Debug)]
pub struct MeasuredPoint {
    format: WeightFormat,
    policy: String,
    share: f64,
    capacity: u32,
    runs: Vec<Run>,
    /// The setting (its profile replaced for each prediction) and its trace.
    exp: Experiment,
    trace: SimTrace,
    /// The read size the calibration windows know best (the first store's expert): where a
    /// window's link keeps its own time (`with_pooled_distributions`).
    level_bytes: u64,
}

/// The real side of a validation.
#[derive(Debug)]
pub struct Measurements {
    /// One per grid point, in grid order (format, policy, router, cache size).
    pub points: Vec<MeasuredPoint>,
    /// Every calibration round, pooled.
    pub samples: Samples,
    /// Decodes whose surrounding rounds could not be fitted (they are predicted with the
    /// pooled profile instead), with the last reason.
    pub unfitted: (usize, Option<String>),
}

/// Decodes every point of `grid` for real on `stores`, `grid.repeats` times, calibrating
/// around each decode when asked. A noisy or unfittable window never stops the grid: its
/// decode is marked, or predicted with the pooled profile.
pub fn measure(w: &Workload, stores: &[ExpertStore], grid: &Grid) -> Result<Measurements> {
    let experts = stores.first().map_or(1, |s| s.shape.experts);
    let mut samples = Samples::default();
    let mut benches: Vec<KernelBench> = if grid.calibration.is_some() {
        stores
            .iter()
            .map(|s| KernelBench::new(s, w.threads, w.kernel))
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    let mut unfitted = (0usize, None);
    let mut points: Vec<MeasuredPoint> = Vec::new();
    for (store_index, st) in stores.iter().enumerate() {
        let format = st.shape.format;
        for (p, pk) in &grid.policies {
            for lambda in [0.0, grid.lambda] {
                for &share in &grid.cache_shares {
                    let capacity = ((share * experts as f64).round() as u32).clamp(1, experts);
                    let exp = w.experiment(format, "host", capacity, p, lambda)?;
                    let trace = exp.build_trace()?;
                    let options = w.decode_options(&exp, capacity, pk.clone());
                    // One round, its reads placed by the seed and the round's number.
                    let mut round =
                        |benches: &mut [KernelBench], budget: &RoundBudget| -> Result<Samples> {
                            let mut r = Samples::default();
                            let seed = crate::seed::derive_seed(w.seed, samples.rounds as u64);
                            calibration_round(stores, benches, budget, seed, &mut r)?;
                            samples.extend(&r);
                            Ok(r)
                        };
                    let mut before = match &grid.calibration {
                        Some(b) => Some(round(&mut benches, b)?),
                        None => None,
                    };
                    let mut runs = Vec::new();
                    for _ in 0..grid.repeats {
                        // The decode reads into the memory the calibration reads into.
                        let mut buffers = match benches.get_mut(store_index) {
                            Some(b) => b.lend_buffers(0),
                            None => Vec::new(),
                        };
                        let real = decode(st, &trace, &options, &mut buffers, None);
                        if let Some(b) = benches.get_mut(store_index) {
                            b.return_buffers(buffers);
                        }
                        let real = real?;
                        let (Some(mut pair), Some(budget)) = (before.take(), &grid.calibration)
                        else {
                            runs.push(Run {
                                real,
                                fitted: None,
                                window_spread: None,
                                noisy: false,
                            });
                            continue;
                        };
                        let after = round(&mut benches, budget)?;
                        pair.extend(&after);
                        before = Some(after);
                        let window_spread = Some(crate::stats::spread(&pair.large_ns));
                        match fit_profile(w, stores[0].shape, stores[0].direct, &pair) {
                            Ok(f) => runs.push(Run {
                                real,
                                noisy: !f.figures.noisy.is_empty(),
                                fitted: Some(f.profile),
                                window_spread,
                            }),
                            Err(e) => {
                                unfitted.0 += 1;
                                unfitted.1 = Some(format!(
                                    "grid point {format} {capacity}/{experts} {p} lambda {lambda}: {e}"
                                ));
                                runs.push(Run {
                                    real,
                                    fitted: None,
                                    window_spread,
                                    noisy: true,
                                });
                            }
                        }
                    }
                    points.push(MeasuredPoint {
                        format,
                        policy: p.clone(),
                        share,
                        capacity,
                        runs,
                        exp,
                        trace,
                        level_bytes: stores[0].shape.stride(),
                    });
                }
            }
        }
    }
    Ok(Measurements {
        points,
        samples,
        unfitted,
    })
}

/// One grid point's comparison (a row of `validate.csv`).
#[derive(Debug, Clone, Serialize)]
pub struct ValidateRow {
    /// Expert format.
    pub format: String,
    /// Experts each layer's cache holds.
    pub capacity_experts: u32,
    /// The cache as a share of the experts per layer.
    pub cache_share: f64,
    /// Eviction policy, as given.
    pub policy: String,
    /// Router.
    pub router: String,
    /// Mean token latency of the reported decode.
    pub measured_token_latency_mean_ns: f64,
    /// Its prediction (NaN when no profile could predict the point).
    pub predicted_token_latency_mean_ns: f64,
    /// `(predicted − measured) / measured`.
    pub mean_rel_error: f64,
    /// Lower end of the 95 % interval (Student t) of the mean error in mean latency over the
    /// point's decodes: how far the error moves with the machine's noise, in the decodes and in
    /// the calibration rounds around each.
    pub mean_rel_error_ci_lo: f64,
    /// Its upper end.
    pub mean_rel_error_ci_hi: f64,
    /// Lowest error in mean latency over the point's decodes.
    pub mean_rel_error_min: f64,
    /// Highest error in mean latency over the point's decodes.
    pub mean_rel_error_max: f64,
    /// 99th-percentile token latency of the reported decode.
    pub measured_token_latency_p99_ns: u64,
    /// Its prediction.
    pub predicted_token_latency_p99_ns: u64,
    /// `(predicted − measured) / measured`.
    pub p99_rel_error: f64,
    /// 95 % interval of the mean p99 error over the point's decodes, lower end.
    pub p99_rel_error_ci_lo: f64,
    /// Its upper end.
    pub p99_rel_error_ci_hi: f64,
    /// Decode tokens per second.
    pub measured_tokens_per_s: f64,
    /// Its prediction.
    pub predicted_tokens_per_s: f64,
    /// `(predicted − measured) / measured`.
    pub tokens_per_s_rel_error: f64,
    /// 95 % interval of the mean tokens/s error over the point's decodes, lower end.
    pub tokens_per_s_rel_error_ci_lo: f64,
    /// Its upper end.
    pub tokens_per_s_rel_error_ci_hi: f64,
    /// Kernel time per token of the reported decode (its compute thread's kernels).
    pub measured_compute_ns_per_token: f64,
    /// Its prediction (kernels, slowed by transfers and cold weights as modelled).
    pub predicted_compute_ns_per_token: f64,
    /// Time per token the real decode's compute thread waited for reads.
    pub measured_wait_ns_per_token: f64,
    /// The predicted stall per token.
    pub predicted_stall_ns_per_token: f64,
    /// The real decode's read time per miss (its I/O thread's wall time per expert read).
    pub measured_read_ns_per_miss: f64,
    /// The predicted link time per transfer (its channel's busy time per transfer).
    pub predicted_read_ns_per_miss: f64,
    /// Cache hits of the real decode.
    pub measured_hits: u64,
    /// Cache hits of the simulation (equal: the same cache code in the same order).
    pub predicted_hits: u64,
    /// Misses of the real decode.
    pub misses: u64,
    /// Whether reads bypassed the page cache.
    pub direct_io: bool,
    /// Decodes predicted (each on the rounds around it, or on the pooled profile).
    pub decodes: u32,
    /// Of them, predicted with the pooled profile because their rounds could not be fitted.
    pub decodes_on_pooled: u32,
    /// Decodes whose calibration rounds were noisy (a figure's spread above 1, or a median
    /// not known to its target precision).
    pub noisy_windows: u32,
    /// Median over the decodes of the spread `(p90 − p10) / median` of the expert reads in the
    /// rounds around each (NaN without calibration).
    pub window_read_spread: f64,
    /// The point's interval is wider than ±10 % or most of its windows were noisy: its error is
    /// not a 10 % claim.
    pub marked: bool,
}

/// What the validation says overall.
#[derive(Debug, Clone, Serialize)]
pub struct ValidateSummary {
    /// Grid points.
    pub points: usize,
    /// Points with a prediction.
    pub predicted_points: usize,
    /// Points whose mean latency and tokens/s are both within 10 %.
    pub within_10_percent: usize,
    /// Points whose p99 is within 20 %.
    pub p99_within_20_percent: usize,
    /// Median |error| in mean latency over the points.
    pub median_abs_mean_error: f64,
    /// Median |error| in tokens/s.
    pub median_abs_tokens_per_s_error: f64,
    /// Median |error| in p99.
    pub median_abs_p99_error: f64,
    /// Worst |error| in mean latency, p99 and tokens/s.
    pub worst_abs_mean_error: f64,
    /// Worst |error| in p99.
    pub worst_abs_p99_error: f64,
    /// Worst |error| in tokens/s.
    pub worst_abs_tokens_per_s_error: f64,
    /// Points whose whole mean-latency interval lies within ±10 %.
    pub intervals_within_10_percent: usize,
    /// Points whose whole interval lies outside ±10 %.
    pub intervals_outside_10_percent: usize,
    /// Median half-width of the points' mean-latency intervals.
    pub median_interval_half_width: f64,
    /// Points marked (see [`ValidateRow::marked`]).
    pub marked: usize,
    /// Points whose hit counts agree.
    pub hits_equal: usize,
    /// Every calibration round's expert reads, pooled (none with a given profile).
    pub disk: Option<DiskNoise>,
    /// One plain sentence: whether this machine supports a 10 % claim, with the figures.
    pub verdict: String,
}

/// How the disk's expert reads varied over every calibration round.
#[derive(Debug, Clone, Serialize)]
pub struct DiskNoise {
    /// Expert reads timed.
    pub reads: usize,
    /// Of them, added to rounds to reach the target precision.
    pub extra_reads: usize,
    /// Rounds.
    pub rounds: u32,
    /// Rounds whose budget ran out before their medians were precise.
    pub imprecise_rounds: u32,
    /// 10th percentile read time.
    pub p10_ns: f64,
    /// Median.
    pub p50_ns: f64,
    /// 90th percentile.
    pub p90_ns: f64,
    /// 99th percentile.
    pub p99_ns: f64,
    /// `(p90 − p10) / median`.
    pub spread: f64,
    /// The same within rounds (each read over its round's median): the spread left when the
    /// drift between rounds is taken out.
    pub spread_within_rounds: f64,
}

impl DiskNoise {
    /// The disk noise of `samples` (none without expert reads).
    pub fn of(samples: &Samples) -> Option<DiskNoise> {
        let v = &samples.large_ns;
        if v.is_empty() {
            return None;
        }
        let q = |p| crate::stats::quantile_f64(v, p);
        Some(DiskNoise {
            reads: v.len(),
            extra_reads: samples.extra_reads,
            rounds: samples.rounds,
            imprecise_rounds: samples.imprecise_rounds,
            p10_ns: q(0.1),
            p50_ns: crate::stats::median(v),
            p90_ns: q(0.9),
            p99_ns: q(0.99),
            spread: crate::stats::spread(v),
            spread_within_rounds: crate::stats::spread(&samples.large_over_median),
        })
    }
}

/// The comparison of every grid point.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// One row per point, in grid order.
    pub rows: Vec<ValidateRow>,
    /// Points whose prediction on the pooled (or given) profile is within 10 % in mean latency
    /// and in tokens per second.
    pub pooled_within: usize,
}

/// `profile` with the read-time distributions of `pooled`'s links (the same links of the same
/// host), their shape (latency per request against bandwidth, scaled so that a read of
/// `level_bytes` takes the window's own time), its reads by destination
/// (`weights_cache.landing`), its resumption after a read (`wake_ns`, two modes of 2 and 45 µs
/// on the development VM) and its time handing a read to the I/O thread (`issue_ns`, as
/// spread): a window of two rounds has too few reads to know the tail, the few percent between
/// destinations, the modes' shares or the time of the second store's size (about 20 cold reads
/// of it, against over 80 of the first's), every round pooled does; the window keeps the disk's
/// speed at the first store's size, which drifts.
fn with_pooled_distributions(
    mut profile: HardwareProfile,
    pooled: &HardwareProfile,
    level_bytes: u64,
) -> HardwareProfile {
    for (l, p) in profile.links.iter_mut().zip(&pooled.links) {
        if p.time_distribution.is_some() {
            l.time_distribution = p.time_distribution.clone();
        }
        let scale = l.transfer_time_ns(level_bytes) / p.transfer_time_ns(level_bytes);
        if scale.is_finite() && scale > 0.0 {
            l.latency_ns = p.latency_ns * scale;
            l.bandwidth_bytes_per_s = p.bandwidth_bytes_per_s / scale;
            l.granularity_bytes = p.granularity_bytes;
            l.request_bytes = p.request_bytes;
            // The disk tier reads as its one link does (as `fit_profile` writes it): a tier
            // slower than its link would bound every read as a shared bottleneck.
            let tier = &mut profile.tiers[l.from];
            tier.read_bandwidth_bytes_per_s = l.bandwidth_bytes_per_s;
            tier.latency_ns = l.latency_ns;
        }
    }
    for (u, p) in profile.units.iter_mut().zip(&pooled.units) {
        u.compute.wake_ns = p.compute.wake_ns;
        u.compute.issue_ns = p.compute.issue_ns;
        if let (Some(w), Some(pw)) = (&mut u.compute.weights_cache, &p.compute.weights_cache) {
            w.landing = pw.landing.clone();
        }
    }
    profile
}

/// Predicts every decode of `points` and compares: a decode measured with its own calibration
/// is predicted on that profile (with the read-time distribution of every round pooled), one
/// without on `pooled`. A point that no profile can predict gets NaN predictions. `pooled` is
/// also what [`Comparison::pooled_within`] counts.
pub fn compare(points: Vec<MeasuredPoint>, pooled: Option<&HardwareProfile>) -> Result<Comparison> {
    let mut rows: Vec<ValidateRow> = Vec::new();
    let mut pooled_within = 0usize;
    for m in points {
        // The same setting on the calibrated profile; the trace does not depend on the profile.
        let mut exp = m.exp;
        let pooled_report = match pooled {
            Some(pr) => {
                exp.profile = pr.clone();
                Some(predict(&exp, &m.trace)?)
            }
            None => None,
        };
        // Each decode against its own prediction; the point reports the pair whose error in
        // mean latency is the median of the point's.
        let mut pairs: Vec<([f64; 3], DecodeReport, SimReport)> = Vec::new();
        let (mut on_pooled, mut noisy, mut spreads) = (0u32, 0u32, Vec::new());
        let mut unpredicted: Option<DecodeReport> = None;
        for run in m.runs {
            noisy += u32::from(run.noisy);
            spreads.extend(run.window_spread);
            let sim = match (run.fitted, pooled) {
                (Some(f), Some(pr)) => {
                    exp.profile = with_pooled_distributions(f, pr, m.level_bytes);
                    predict(&exp, &m.trace)?
                }
                (Some(f), None) => {
                    exp.profile = f;
                    predict(&exp, &m.trace)?
                }
                (None, _) => match &pooled_report {
                    Some(r) => {
                        on_pooled += 1;
                        r.clone()
                    }
                    None => {
                        unpredicted = Some(run.real);
                        continue;
                    }
                },
            };
            // Errors in mean latency, p99 and tokens/s.
            let t = TokenLatency::of(&run.real.token_latencies_ns);
            let errors = [
                rel(sim.token_latency_mean_ns, t.mean_ns),
                rel(sim.token_latency_p99_ns as f64, t.p99_ns as f64),
                rel(sim.decode_tokens_per_s, t.tokens_per_s),
            ];
            pairs.push((errors, run.real, sim));
        }
        let interval = |v: &[f64]| {
            let (mean, half) = crate::stats::mean_ci(v);
            // One decode gives no interval.
            if half.is_finite() {
                (mean - half, mean + half)
            } else {
                (f64::NAN, f64::NAN)
            }
        };
        let errors = |i: usize| -> Vec<f64> { pairs.iter().map(|p| p.0[i]).collect() };
        let (mean_errors, p99_errors, tps_errors) = (errors(0), errors(1), errors(2));
        let (mean_ci, p99_ci, tps_ci) = (
            interval(&mean_errors),
            interval(&p99_errors),
            interval(&tps_errors),
        );
        pairs.sort_by(|x, y| x.0[0].total_cmp(&y.0[0]));
        let decodes = pairs.len() as u32;
        let window_read_spread = if spreads.is_empty() {
            f64::NAN
        } else {
            crate::stats::median(&spreads)
        };
        let (real, sim) = match pairs.is_empty() {
            false => {
                let (_, real, sim) = pairs.swap_remove(pairs.len() / 2);
                (real, Some(sim))
            }
            true => (unpredicted.expect("a point has decodes"), None),
        };
        let error_range = (
            mean_errors.iter().copied().fold(f64::NAN, f64::min),
            mean_errors.iter().copied().fold(f64::NAN, f64::max),
        );
        let t = TokenLatency::of(&real.token_latencies_ns);
        let (mean, p99, tps) = (t.mean_ns, t.p99_ns, t.tokens_per_s);
        if pooled_report.as_ref().is_some_and(|pooled| {
            rel(pooled.token_latency_mean_ns, mean).abs() <= 0.1
                && rel(pooled.decode_tokens_per_s, tps).abs() <= 0.1
        }) {
            pooled_within += 1;
        }
        let nan = f64::NAN;
        let (p_mean, p_p99, p_tps, p_hits) = sim.as_ref().map_or((nan, 0, nan, 0), |s| {
            (
                s.token_latency_mean_ns,
                s.token_latency_p99_ns,
                s.decode_tokens_per_s,
                s.hits,
            )
        });
        let tokens = real.token_latencies_ns.len().max(1) as f64;
        let per_sim_token = |x: u64| {
            sim.as_ref()
                .map_or(nan, |s| x as f64 / s.decode_tokens.max(1) as f64)
        };
        let half_width = (mean_ci.1 - mean_ci.0) / 2.0;
        rows.push(ValidateRow {
            format: m.format.to_string(),
            capacity_experts: m.capacity,
            cache_share: m.share,
            policy: m.policy,
            router: exp.options.router.name().to_string(),
            measured_token_latency_mean_ns: mean,
            predicted_token_latency_mean_ns: p_mean,
            mean_rel_error: rel(p_mean, mean),
            mean_rel_error_ci_lo: mean_ci.0,
            mean_rel_error_ci_hi: mean_ci.1,
            mean_rel_error_min: error_range.0,
            mean_rel_error_max: error_range.1,
            measured_token_latency_p99_ns: p99,
            predicted_token_latency_p99_ns: p_p99,
            p99_rel_error: if sim.is_some() {
                rel(p_p99 as f64, p99 as f64)
            } else {
                f64::NAN
            },
            p99_rel_error_ci_lo: p99_ci.0,
            p99_rel_error_ci_hi: p99_ci.1,
            measured_tokens_per_s: tps,
            predicted_tokens_per_s: p_tps,
            tokens_per_s_rel_error: rel(p_tps, tps),
            tokens_per_s_rel_error_ci_lo: tps_ci.0,
            tokens_per_s_rel_error_ci_hi: tps_ci.1,
            measured_compute_ns_per_token: real.compute_ns as f64 / tokens,
            predicted_compute_ns_per_token: per_sim_token(
                sim.as_ref().map_or(0, |s| s.decode_compute_ns),
            ),
            measured_wait_ns_per_token: real.wait_ns as f64 / tokens,
            predicted_stall_ns_per_token: per_sim_token(
                sim.as_ref().map_or(0, |s| s.decode_stall_ns),
            ),
            measured_read_ns_per_miss: real.read_ns as f64 / real.misses.max(1) as f64,
            predicted_read_ns_per_miss: sim.as_ref().map_or(nan, |s| {
                let (busy, n) = s.links.iter().fold((0u64, 0u64), |(b, n), l| {
                    (b + l.busy_channel_ns, n + l.transfers)
                });
                busy as f64 / n.max(1) as f64
            }),
            measured_hits: real.hits,
            predicted_hits: p_hits,
            misses: real.misses,
            direct_io: real.direct,
            decodes,
            decodes_on_pooled: on_pooled,
            noisy_windows: noisy,
            window_read_spread,
            marked: sim.is_none()
                || half_width.is_nan()
                || half_width > 0.1
                || 2 * noisy > decodes.max(1),
        });
    }
    Ok(Comparison {
        rows,
        pooled_within,
    })
}

/// The summary of `rows`, with the disk noise of the calibration rounds (none with a given
/// profile).
pub fn summarize(rows: &[ValidateRow], disk: Option<DiskNoise>) -> ValidateSummary {
    let predicted: Vec<&ValidateRow> = rows
        .iter()
        .filter(|r| r.predicted_token_latency_mean_ns.is_finite())
        .collect();
    let abs =
        |f: fn(&ValidateRow) -> f64| -> Vec<f64> { predicted.iter().map(|r| f(r).abs()).collect() };
    let med = |v: Vec<f64>| {
        if v.is_empty() {
            f64::NAN
        } else {
            crate::stats::median(&v)
        }
    };
    let worst = |v: Vec<f64>| v.into_iter().fold(0.0f64, f64::max);
    let half_widths: Vec<f64> = predicted
        .iter()
        .map(|r| (r.mean_rel_error_ci_hi - r.mean_rel_error_ci_lo) / 2.0)
        .filter(|h| h.is_finite())
        .collect();
    let intervals_within = predicted
        .iter()
        .filter(|r| r.mean_rel_error_ci_lo >= -0.1 && r.mean_rel_error_ci_hi <= 0.1)
        .count();
    let intervals_outside = predicted
        .iter()
        .filter(|r| r.mean_rel_error_ci_lo > 0.1 || r.mean_rel_error_ci_hi < -0.1)
        .count();
    let median_half_width = med(half_widths);
    let within = predicted
        .iter()
        .filter(|r| r.mean_rel_error.abs() <= 0.1 && r.tokens_per_s_rel_error.abs() <= 0.1)
        .count();
    let disk_words = disk.as_ref().map_or(String::new(), |d| {
        format!(
            "; the disk's expert reads spread (p90 - p10) / median {:.2} over the run ({:.2} within rounds; p10 {:.0} µs, median {:.0} µs, p90 {:.0} µs, p99 {:.0} µs over {} reads)",
            d.spread,
            d.spread_within_rounds,
            d.p10_ns * 1e-3,
            d.p50_ns * 1e-3,
            d.p90_ns * 1e-3,
            d.p99_ns * 1e-3,
            d.reads
        )
    });
    let verdict = if predicted.is_empty() {
        format!("No point could be predicted: no calibration round gave a profile{disk_words}.")
    } else if median_half_width.is_nan() {
        format!(
            "No point has two predicted decodes, so none has an interval: run --repeats 3 or more (on a quieter machine, if decodes could not be predicted) to see how sure the predictions are{disk_words}."
        )
    } else if median_half_width > 0.1 {
        format!(
            "This machine is too noisy for a 10 % claim: the median point's 95 % interval of the error in mean latency is ±{:.1} % (decodes and the calibrations around them vary that much from one decode to the next){disk_words}.",
            100.0 * median_half_width
        )
    } else {
        format!(
            "The intervals support a 10 % claim at {intervals_within} of {} points (median 95 % interval ±{:.1} %; {intervals_outside} points lie wholly outside ±10 %){disk_words}.",
            predicted.len(),
            100.0 * median_half_width
        )
    };
    ValidateSummary {
        points: rows.len(),
        predicted_points: predicted.len(),
        within_10_percent: within,
        p99_within_20_percent: predicted
            .iter()
            .filter(|r| r.p99_rel_error.abs() <= 0.2)
            .count(),
        median_abs_mean_error: med(abs(|r| r.mean_rel_error)),
        median_abs_tokens_per_s_error: med(abs(|r| r.tokens_per_s_rel_error)),
        median_abs_p99_error: med(abs(|r| r.p99_rel_error)),
        worst_abs_mean_error: worst(abs(|r| r.mean_rel_error)),
        worst_abs_p99_error: worst(abs(|r| r.p99_rel_error)),
        worst_abs_tokens_per_s_error: worst(abs(|r| r.tokens_per_s_rel_error)),
        intervals_within_10_percent: intervals_within,
        intervals_outside_10_percent: intervals_outside,
        median_interval_half_width: median_half_width,
        marked: rows.iter().filter(|r| r.marked).count(),
        hits_equal: predicted
            .iter()
            .filter(|r| r.measured_hits == r.predicted_hits)
            .count(),
        disk,
        verdict,
    }
}

/// Simulates `exp` on `trace` with the real run's workload: experts only (no dense layers,
/// gate or LM head, which the real decode does not run).
pub fn predict(exp: &Experiment, trace: &SimTrace) -> Result<SimReport> {
    let plan = exp.plan(trace)?;
    let mut setup = SimSetup::new(
        &exp.profile,
        &exp.model,
        exp.options.clone(),
        &trace.popularity(),
        Some(&plan),
    )
    .map_err(|e| Error::usage(format!("{}: {}", e.key, e.reason)))?;
    // Every non-expert cost, at batch 1 and at the roofline's arithmetic bound alike.
    setup.dense_ns = 0;
    setup.dense_mac_ns = 0;
    setup.gate_ns = 0;
    setup.gate_mac_ns = 0;
    setup.head_ns = 0;
    setup.head_mac_ns = 0;
    Ok(crate::sim::run(&setup, trace).map_err(Error::usage)?.0)
}

/// The relative error `(predicted − measured) / measured`.
pub fn rel(predicted: f64, measured: f64) -> f64 {
    (predicted - measured) / measured
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Workload {
        Workload {
            model: "micro-moe".into(),
            generator: "micro-moe".into(),
            tokens: 8,
            seed: 1,
            threads: 1,
            kernel: crate::quant::Kernel::F32,
        }
    }

    #[test]
    fn a_window_keeps_its_time_at_the_level_size_and_takes_the_pooled_shape() {
        let w = workload();
        let exp = w
            .experiment(WeightFormat::Q4K, "host", 4, "lru", 0.0)
            .unwrap();
        // The pooled link: 500 µs per request of at most 1 MB, 2 GB/s. A window whose line
        // through its own (few) reads came out 1 ms + 1 GB/s, no request limit.
        let mut pooled = exp.profile.clone();
        let mut window = exp.profile.clone();
        for l in &mut pooled.links {
            (l.latency_ns, l.bandwidth_bytes_per_s) = (500e3, 2e9);
            l.request_bytes = Some(1 << 20);
            l.granularity_bytes = 1;
        }
        for l in &mut window.links {
            (l.latency_ns, l.bandwidth_bytes_per_s) = (1e6, 1e9);
            l.request_bytes = None;
            l.granularity_bytes = 1;
        }
        let level = 1_769_472u64;
        let own = window.links[0].transfer_time_ns(level);
        let merged = with_pooled_distributions(window, &pooled, level);
        let l = &merged.links[0];
        // The window's time at the level size, the pooled shape: two requests there, and a
        // 1 MB read one request, at the pooled ratio to the level size's time.
        assert!((l.transfer_time_ns(level) / own - 1.0).abs() < 1e-12);
        assert_eq!(l.request_bytes, Some(1 << 20));
        let p = &pooled.links[0];
        let ratio =
            |x: &crate::hardware::Link| x.transfer_time_ns(1 << 20) / x.transfer_time_ns(level);
        assert!((ratio(l) / ratio(p) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_prediction_charges_the_experts_and_nothing_else() {
        // Every expert cached, no slowdowns: compute is exactly the uses times one kernel (the
        // real decode runs no dense layers, gate or head, at batch 1 or at the roofline).
        let w = workload();
        let mut exp = w
            .experiment(WeightFormat::Q4K, "host", 16, "lru", 0.0)
            .unwrap();
        for u in &mut exp.profile.units {
            u.compute.expert_slowdown_while_transferring = [0.0; 6];
            u.compute.expert_slowdown_after_load = [0.0; 6];
        }
        let trace = exp.build_trace().unwrap();
        let r = predict(&exp, &trace).unwrap();
        let params = exp.model.params_per_expert() as f64;
        let rate = exp
            .profile
            .compute()
            .format_weights_per_s(WeightFormat::Q4K)
            .unwrap();
        let kernel_ns = (params * 1e9 / rate).ceil() as u64;
        assert_eq!(r.decode_compute_ns, r.expert_uses * kernel_ns, "{r:?}");
    }

    #[test]
    fn summaries_count_points_and_say_when_the_machine_is_too_noisy() {
        let row = |err: f64, half: f64| ValidateRow {
            format: "q4_k".into(),
            capacity_experts: 4,
            cache_share: 0.25,
            policy: "lru".into(),
            router: "standard".into(),
            measured_token_latency_mean_ns: 1e7,
            predicted_token_latency_mean_ns: 1e7 * (1.0 + err),
            mean_rel_error: err,
            mean_rel_error_ci_lo: err - half,
            mean_rel_error_ci_hi: err + half,
            mean_rel_error_min: err - half,
            mean_rel_error_max: err + half,
            measured_token_latency_p99_ns: 100,
            predicted_token_latency_p99_ns: 130,
            p99_rel_error: 0.3,
            p99_rel_error_ci_lo: 0.3,
            p99_rel_error_ci_hi: 0.3,
            measured_tokens_per_s: 100.0,
            predicted_tokens_per_s: 100.0 / (1.0 + err),
            tokens_per_s_rel_error: 1.0 / (1.0 + err) - 1.0,
            tokens_per_s_rel_error_ci_lo: 0.0,
            tokens_per_s_rel_error_ci_hi: 0.0,
            measured_compute_ns_per_token: 1.0,
            predicted_compute_ns_per_token: 1.0,
            measured_wait_ns_per_token: 0.0,
            predicted_stall_ns_per_token: 0.0,
            measured_read_ns_per_miss: 0.0,
            predicted_read_ns_per_miss: 0.0,
            measured_hits: 1,
            predicted_hits: 1,
            misses: 1,
            direct_io: true,
            decodes: 7,
            decodes_on_pooled: 0,
            noisy_windows: 0,
            window_read_spread: 0.5,
            marked: false,
        };
        let quiet = [row(0.02, 0.03), row(-0.04, 0.02), row(0.15, 0.02)];
        let s = summarize(&quiet, None);
        assert_eq!(
            (
                s.within_10_percent,
                s.intervals_within_10_percent,
                s.intervals_outside_10_percent
            ),
            (2, 2, 1)
        );
        assert!((s.median_abs_mean_error - 0.04).abs() < 1e-12);
        assert_eq!(s.p99_within_20_percent, 0);
        assert!(
            s.verdict.contains("support a 10 % claim at 2 of 3"),
            "{}",
            s.verdict
        );
        let noisy = [row(0.02, 0.3), row(-0.04, 0.2), row(0.05, 0.12)];
        let s = summarize(&noisy, None);
        assert!(
            s.verdict.contains("too noisy for a 10 % claim"),
            "{}",
            s.verdict
        );
        assert!(s.verdict.contains("±20.0 %"), "{}", s.verdict);
    }
}
