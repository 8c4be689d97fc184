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
use super::samples::{Samples, calibration_round};
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
    /// Calibrate around each decode with this many reads of each size per 5 rounds; none when
    /// a profile is given.
    pub calibration_reads: Option<usize>,
}

/// The decodes of one grid point, each with the profile fitted around it when calibrating.
#[derive(Debug)]
pub struct MeasuredPoint {
    format: WeightFormat,
    policy: String,
    share: f64,
    capacity: u32,
    runs: Vec<(DecodeReport, Option<HardwareProfile>)>,
    /// The setting (its profile replaced for each prediction) and its trace.
    exp: Experiment,
    trace: SimTrace,
}

/// The real side of a validation.
#[derive(Debug)]
pub struct Measurements {
    /// One per grid point, in grid order (format, policy, router, cache size).
    pub points: Vec<MeasuredPoint>,
    /// Every calibration round, pooled.
    pub samples: Samples,
    /// Decodes dropped because the rounds around them were too noisy to fit.
    pub dropped: usize,
}

/// Decodes every point of `grid` for real on `stores`, `grid.repeats` times, calibrating
/// around each decode when asked.
pub fn measure(w: &Workload, stores: &[ExpertStore], grid: &Grid) -> Result<Measurements> {
    let experts = stores.first().map_or(1, |s| s.shape.experts);
    let mut samples = Samples::default();
    let mut benches: Vec<KernelBench> = if grid.calibration_reads.is_some() {
        stores
            .iter()
            .map(|s| KernelBench::new(s, w.threads))
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    let round_reads = grid.calibration_reads.map_or(0, |r| r.div_ceil(5).max(10));
    let mut dropped = 0usize;
    let mut points: Vec<MeasuredPoint> = Vec::new();
    for st in stores {
        let format = st.shape.format;
        for (p, pk) in &grid.policies {
            for lambda in [0.0, grid.lambda] {
                for &share in &grid.cache_shares {
                    let capacity = ((share * experts as f64).round() as u32).clamp(1, experts);
                    let exp = w.experiment(format, "host", capacity, p, lambda)?;
                    let trace = exp.build_trace()?;
                    let options = w.decode_options(&exp, capacity, pk.clone());
                    let mut round = |benches: &mut [KernelBench]| -> Result<Samples> {
                        let mut r = Samples::default();
                        calibration_round(stores, benches, round_reads, w.seed, &mut r)?;
                        samples.extend(&r);
                        Ok(r)
                    };
                    let mut before = if grid.calibration_reads.is_some() {
                        Some(round(&mut benches)?)
                    } else {
                        None
                    };
                    let mut runs = Vec::new();
                    let mut refused: Option<Error> = None;
                    for _ in 0..grid.repeats {
                        let real = decode(st, &trace, &options, None)?;
                        match before.take() {
                            Some(mut pair) => {
                                let after = round(&mut benches)?;
                                pair.extend(&after);
                                before = Some(after);
                                // A window too noisy to fit drops its decode: the host was not
                                // one machine while it ran.
                                match fit_profile(w, stores, &pair) {
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
                    points.push(MeasuredPoint {
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
    Ok(Measurements {
        points,
        samples,
        dropped,
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
    /// Its prediction.
    pub predicted_token_latency_mean_ns: f64,
    /// `(predicted − measured) / measured`.
    pub mean_rel_error: f64,
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
    /// Decode tokens per second.
    pub measured_tokens_per_s: f64,
    /// Its prediction.
    pub predicted_tokens_per_s: f64,
    /// `(predicted − measured) / measured`.
    pub tokens_per_s_rel_error: f64,
    /// Cache hits of the real decode.
    pub measured_hits: u64,
    /// Cache hits of the simulation (equal: the same cache code in the same order).
    pub predicted_hits: u64,
    /// Misses of the real decode.
    pub misses: u64,
    /// Whether reads bypassed the page cache.
    pub direct_io: bool,
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

/// Predicts every decode of `points` and compares: a decode measured with its own calibration
/// is predicted on that profile, one without on `pooled` (which must then be given). `pooled`
/// is also what [`Comparison::pooled_within`] counts.
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
        let mut pairs: Vec<(f64, DecodeReport, SimReport)> = Vec::new();
        for (real, fitted) in m.runs {
            let sim = match fitted {
                Some(f) => {
                    exp.profile = f;
                    predict(&exp, &m.trace)?
                }
                None => pooled_report.clone().expect("a given profile"),
            };
            let error = rel(
                sim.token_latency_mean_ns,
                TokenLatency::of(&real.token_latencies_ns).mean_ns,
            );
            pairs.push((error, real, sim));
        }
        pairs.sort_by(|x, y| x.0.total_cmp(&y.0));
        let error_range = (pairs[0].0, pairs[pairs.len() - 1].0);
        let (_, real, sim) = pairs.swap_remove(pairs.len() / 2);
        let t = TokenLatency::of(&real.token_latencies_ns);
        let (mean, p99, tps) = (t.mean_ns, t.p99_ns, t.tokens_per_s);
        if pooled_report.as_ref().is_some_and(|pooled| {
            rel(pooled.token_latency_mean_ns, mean).abs() <= 0.1
                && rel(pooled.decode_tokens_per_s, tps).abs() <= 0.1
        }) {
            pooled_within += 1;
        }
        rows.push(ValidateRow {
            format: m.format.to_string(),
            capacity_experts: m.capacity,
            cache_share: m.share,
            policy: m.policy,
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
    Ok(Comparison {
        rows,
        pooled_within,
    })
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
    setup.dense_ns = 0;
    setup.gate_ns = 0;
    setup.head_ns = 0;
    Ok(crate::sim::run(&setup, trace).map_err(Error::usage)?.0)
}

/// The relative error `(predicted − measured) / measured`.
pub fn rel(predicted: f64, measured: f64) -> f64 {
    (predicted - measured) / measured
}
