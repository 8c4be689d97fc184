//! Model quality measured through real quantized experts.
//!
//! For sampled decode (token, layer) events of a generated trace, the MoE layer output the run
//! actually produced (the router's selection and gate weights, each expert in the format it was
//! computed in, through the real GEMV kernels) is compared with the reference output (standard
//! top-k routing, renormalised gate weights, f32 experts) on the generator's hidden vector.
//! The experts are [`proxy`] SwiGLU FFNs. No I/O happens here.

pub mod proxy;

use rayon::prelude::*;
use serde::Serialize;

use crate::quant::WeightFormat;
use crate::seed::derive_seed;
pub use crate::stats::mean_ci;
pub use proxy::{ExpertWeights, Outliers, QuantExpert, SyntheticExperts, WeightSource};

/// What the run did at one sampled decode (token, layer) event.
#[derive(Debug, Clone, PartialEq)]
pub struct QualitySample {
    /// Index of the event in the trace.
    pub event: usize,
    /// MoE layer.
    pub layer: u32,
    /// Selected experts, in rank order.
    pub experts: Vec<u16>,
    /// Their gate weights.
    pub weights: Vec<f32>,
    /// The format each was computed in.
    pub formats: Vec<WeightFormat>,
}

/// The reference routing of one event: standard top-k and renormalised gate weights.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceRoute {
    /// Experts.
    pub experts: Vec<u16>,
    /// Gate weights.
    pub weights: Vec<f32>,
}

/// Output error statistics over the samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OutputQuality {
    /// Samples measured.
    pub output_samples: usize,
    /// Mean of `‖y − y_ref‖ / ‖y_ref‖`.
    pub output_rel_l2_mean: f64,
    /// Half-width of its 95 % confidence interval (Student t).
    pub output_rel_l2_ci95: f64,
    /// Its 95th percentile.
    pub output_rel_l2_p95: f64,
    /// Its worst sample.
    pub output_rel_l2_max: f64,
    /// Mean cosine similarity of `y` and `y_ref`.
    pub output_cosine_mean: f64,
    /// Half-width of its 95 % confidence interval.
    pub output_cosine_ci95: f64,
    /// Its 5th percentile (the worst 5 %).
    pub output_cosine_p5: f64,
    /// Its worst sample.
    pub output_cosine_min: f64,
    /// SQNR of the quantized proxy weights the samples computed with, pooled over every
    /// distinct (layer, expert, format): `10 log10(Σ w² / Σ (w − ŵ)²)` (infinite when every
    /// sample computed in f32).
    pub weight_sqnr_db: f64,
}

impl OutputQuality {
    /// No measurement: zero samples, every statistic NaN (empty CSV cells).
    pub fn missing() -> OutputQuality {
        summarize(&[])
    }
}

/// Per-sample errors, in sample order: `(relative L2 error, cosine similarity)`.
pub fn sample_errors(
    source: &dyn WeightSource,
    samples: &[QualitySample],
    reference: &[ReferenceRoute],
    hidden: &[f32],
) -> Result<Vec<(f64, f64)>, String> {
    sample_errors_and_sqnr(source, samples, reference, hidden).map(|(e, _)| e)
}

/// [`sample_errors`], and the pooled SQNR (dB) of the quantized weights the samples computed
/// with ([`OutputQuality::weight_sqnr_db`]), from the same quantized kernels.
pub fn sample_errors_and_sqnr(
    source: &dyn WeightSource,
    samples: &[QualitySample],
    reference: &[ReferenceRoute],
    hidden: &[f32],
) -> Result<(Vec<(f64, f64)>, f64), String> {
    let (mut signal, mut noise) = (0.0, 0.0);
    let d = source.hidden();
    assert_eq!(samples.len(), reference.len());
    assert_eq!(
        hidden.len(),
        samples.len() * d,
        "one hidden vector per sample"
    );
    // Per layer: the (expert, format) kernels its samples need, built once.
    let mut layers: Vec<u32> = samples.iter().map(|s| s.layer).collect();
    layers.sort_unstable();
    layers.dedup();
    let mut out = vec![(0.0, 0.0); samples.len()];
    for layer in layers {
        let idx: Vec<usize> = (0..samples.len())
            .filter(|&i| samples[i].layer == layer)
            .collect();
        let mut need: Vec<(u16, WeightFormat)> = Vec::new();
        for &i in &idx {
            need.extend(
                samples[i]
                    .experts
                    .iter()
                    .zip(&samples[i].formats)
                    .map(|(&x, &f)| (x, f)),
            );
            need.extend(reference[i].experts.iter().map(|&x| (x, WeightFormat::F32)));
        }
        need.sort_unstable_by_key(|&(x, f)| (x, f.name()));
        need.dedup();
        let mut experts: Vec<u16> = need.iter().map(|&(x, _)| x).collect();
        experts.dedup();
        let weights: Vec<ExpertWeights> = experts
            .par_iter()
            .map(|&x| source.expert(layer, x as u32))
            .collect::<Result<_, _>>()?;
        let kernels: Vec<QuantExpert> = need
            .par_iter()
            .map(|&(x, f)| {
                let w = &weights[experts.binary_search(&x).expect("listed")];
                QuantExpert::new(w, f)
            })
            .collect::<Result<_, _>>()?;
        let sums: Vec<(f64, f64)> = need
            .par_iter()
            .zip(&kernels)
            .filter(|((_, f), _)| *f != WeightFormat::F32)
            .map(|(&(x, _), k)| {
                k.squared_error(&weights[experts.binary_search(&x).expect("listed")])
            })
            .collect();
        for (a, b) in sums {
            signal += a;
            noise += b;
        }
        drop(weights);
        let kernel = |x: u16, f: WeightFormat| {
            let j = need
                .binary_search_by_key(&(x, f.name()), |&(y, g)| (y, g.name()))
                .expect("built above");
            &kernels[j]
        };
        let errs: Vec<(f64, f64)> = idx
            .par_iter()
            .map(|&i| {
                let h = &hidden[i * d..(i + 1) * d];
                let mut tmp = vec![0.0f32; d];
                let mut y = vec![0.0f64; d];
                let mut r = vec![0.0f64; d];
                let s = &samples[i];
                for ((&x, &w), &f) in s.experts.iter().zip(&s.weights).zip(&s.formats) {
                    kernel(x, f).forward(h, &mut tmp);
                    y.iter_mut()
                        .zip(&tmp)
                        .for_each(|(a, &b)| *a += w as f64 * b as f64);
                }
                let re = &reference[i];
                for (&x, &w) in re.experts.iter().zip(&re.weights) {
                    kernel(x, WeightFormat::F32).forward(h, &mut tmp);
                    r.iter_mut()
                        .zip(&tmp)
                        .for_each(|(a, &b)| *a += w as f64 * b as f64);
                }
                compare(&y, &r)
            })
            .collect();
        for (&i, e) in idx.iter().zip(errs) {
            out[i] = e;
        }
    }
    Ok((out, pooled_sqnr_db(signal, noise)))
}

fn pooled_sqnr_db(signal: f64, noise: f64) -> f64 {
    if noise > 0.0 {
        10.0 * (signal / noise).log10()
    } else if signal > 0.0 {
        f64::INFINITY
    } else {
        f64::NAN
    }
}

/// `(‖y − r‖ / ‖r‖, cos(y, r))`.
fn compare(y: &[f64], r: &[f64]) -> (f64, f64) {
    let (mut dd, mut rr, mut yy, mut yr) = (0.0, 0.0, 0.0, 0.0);
    for (&a, &b) in y.iter().zip(r) {
        dd += (a - b) * (a - b);
        rr += b * b;
        yy += a * a;
        yr += a * b;
    }
    let rel = if rr > 0.0 {
        (dd / rr).sqrt()
    } else if dd == 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    let cos = if yy > 0.0 && rr > 0.0 {
        yr / (yy.sqrt() * rr.sqrt())
    } else if dd == 0.0 {
        1.0
    } else {
        0.0
    };
    (rel, cos)
}

/// Mean, 95 % CI half-width, p95 and worst of the relative error, and the same (p5, minimum)
/// for the cosine.
pub fn summarize(errors: &[(f64, f64)]) -> OutputQuality {
    let n = errors.len();
    let rel: Vec<f64> = errors.iter().map(|e| e.0).collect();
    let cos: Vec<f64> = errors.iter().map(|e| e.1).collect();
    let (rm, rc) = mean_ci(&rel);
    let (cm, cc) = mean_ci(&cos);
    let mut rs = rel.clone();
    rs.sort_by(f64::total_cmp);
    let mut cs = cos.clone();
    cs.sort_by(f64::total_cmp);
    let q = |v: &[f64], p: f64| {
        if v.is_empty() {
            f64::NAN
        } else {
            let rank = (p * v.len() as f64).ceil().max(1.0) as usize;
            v[rank.min(v.len()) - 1]
        }
    };
    OutputQuality {
        output_samples: n,
        output_rel_l2_mean: rm,
        output_rel_l2_ci95: rc,
        output_rel_l2_p95: q(&rs, 0.95),
        output_rel_l2_max: rs.last().copied().unwrap_or(f64::NAN),
        output_cosine_mean: cm,
        output_cosine_ci95: cc,
        output_cosine_p5: q(&cs, 0.05),
        output_cosine_min: cs.first().copied().unwrap_or(f64::NAN),
        weight_sqnr_db: f64::NAN,
    }
}

/// Probe vectors for [`expert_errors`]: N(0, 1) entries.
pub const PROBES: usize = 8;

/// Measured error of every expert in every candidate format: the mean over [`PROBES`] N(0, I)
/// inputs of `‖FFN_q(h) − FFN(h)‖² / ‖FFN(h)‖²`, row-major `expert × candidate` with experts
/// numbered `layer · experts + expert`. Experts run in parallel; the result does not depend on
/// the thread count.
pub fn expert_errors(
    source: &dyn WeightSource,
    layers: u32,
    experts: u32,
    formats: &[WeightFormat],
    seed: u64,
) -> Result<Vec<f64>, String> {
    let d = source.hidden();
    let probes = crate::quant::eval::sample(
        crate::quant::eval::WeightDistribution::Gaussian,
        PROBES * d,
        derive_seed(seed, 0x9e0b),
    );
    let rows: Vec<Vec<f64>> = (0..layers * experts)
        .into_par_iter()
        .map(|o| {
            let w = source.expert(o / experts, o % experts)?;
            let reference = QuantExpert::new(&w, WeightFormat::F32)?;
            let mut refs = vec![0.0f32; PROBES * d];
            for p in 0..PROBES {
                reference.forward(&probes[p * d..(p + 1) * d], &mut refs[p * d..(p + 1) * d]);
            }
            let mut y = vec![0.0f32; d];
            formats
                .iter()
                .map(|&f| {
                    let q = QuantExpert::new(&w, f)?;
                    let mut total = 0.0;
                    for p in 0..PROBES {
                        q.forward(&probes[p * d..(p + 1) * d], &mut y);
                        let r = &refs[p * d..(p + 1) * d];
                        let (mut dd, mut rr) = (0.0f64, 0.0f64);
                        for (&a, &b) in y.iter().zip(r) {
                            dd += (a as f64 - b as f64).powi(2);
                            rr += (b as f64).powi(2);
                        }
                        total += if rr > 0.0 { dd / rr } else { 0.0 };
                    }
                    Ok(total / PROBES as f64)
                })
                .collect()
        })
        .collect::<Result<_, String>>()?;
    Ok(rows.concat())
}
