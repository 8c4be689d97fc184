//! Fused dequantize-dot GEMV throughput on this host (`moesim quant bench`): every format at
//! each shape, on one core and on the whole rayon pool, beside ggml's hand-written kernels,
//! and the all-core rates a hardware profile's `[compute]` section needs.

use std::time::Instant;

use serde::Serialize;

use super::eval::{WeightDistribution, sample};
use super::gemv::{int_level, simd_level};
use super::{Kernel, QuantizedMatrix, WeightFormat, ggml_reference};

/// One row of `quant bench`: one format at one shape.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// The format's name.
    pub format: String,
    /// Rows of the matrix (outputs).
    pub rows: usize,
    /// Columns (inputs).
    pub cols: usize,
    /// The SIMD level the kernels ran at (for the int8 kernels, their [`super::gemv::IntLevel`]).
    pub simd: &'static str,
    /// The kernel (`f32` reference or `int8`, see [`Kernel`]).
    pub kernel: &'static str,
    /// Tokens per product (1: matrix-vector; more: each row reused across the tokens).
    pub batch: usize,
    /// Weight-token products per second on one thread (weights per second at batch 1).
    pub one_core_weights_per_s: f64,
    /// Weight-token products per second on the whole rayon pool.
    pub all_cores_weights_per_s: f64,
    /// Threads of the pool.
    pub threads: usize,
    /// Packed bytes per second on the whole pool.
    pub all_cores_packed_bytes_per_s: f64,
    /// ggml's hand-written SIMD vec_dot on one core of the reference host (quantization.md §7.3).
    pub ggml_one_core_weights_per_s: Option<f64>,
}

/// Median weights per second of `run` (one GEMV of `weights` weights per call) over `repeats`
/// timed batches, each at least `min_ms` long.
pub fn measure(weights: usize, repeats: usize, min_ms: u64, mut run: impl FnMut()) -> f64 {
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

/// The GEMV benchmark: a one-thread pool beside the global one, and how long to time.
#[derive(Debug)]
pub struct Bench {
    one_core: rayon::ThreadPool,
    /// Timed repetitions per measurement (the median is reported).
    pub repeats: usize,
    /// Minimum time of one repetition, in milliseconds.
    pub min_ms: u64,
}

impl Bench {
    /// A benchmark timing `repeats` repetitions of at least `min_ms` each; the reason when the
    /// one-thread pool cannot be built.
    pub fn new(repeats: usize, min_ms: u64) -> Result<Bench, String> {
        if repeats == 0 {
            return Err("--repeats 0: a median needs at least one repetition".into());
        }
        let one_core = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Bench {
            one_core,
            repeats,
            min_ms,
        })
    }

    /// The rows of every format in `formats` on a Gaussian `rows × cols` matrix, in order: for
    /// each format its f32 kernel and, where it has one, its integer kernel, each at every batch
    /// size in `batches`; the reason when a format cannot pack rows of `cols` weights.
    pub fn shape(
        &self,
        rows: usize,
        cols: usize,
        formats: &[WeightFormat],
        batches: &[usize],
        kernels: &[Kernel],
    ) -> Result<Vec<BenchRow>, String> {
        let threads = rayon::current_num_threads();
        let w = sample(WeightDistribution::Gaussian, rows * cols, 1);
        let mut out = Vec::new();
        for &f in formats {
            let q = QuantizedMatrix::quantize(f, rows, cols, &w, None)?;
            // Each kernel the format runs, once (int8 falls back to f32 where it has none).
            let mut runs: Vec<Kernel> = kernels.iter().map(|k| k.for_format(f)).collect();
            runs.dedup();
            for &kernel in &runs {
                for &n in batches {
                    let xs = sample(WeightDistribution::Gaussian, cols * n, 2);
                    let mut ys = vec![0.0f32; rows * n];
                    let products = rows * cols * n;
                    let single = self.one_core.install(|| {
                        measure(products, self.repeats, self.min_ms, || {
                            q.gemm_with(kernel, &xs, &mut ys, false)
                        })
                    });
                    // Timed on a worker of the global pool (rayon::scope runs its closure
                    // there), so each product splits into that worker's own queue: waking
                    // the pool from an outside thread is not part of a product's time.
                    let all = rayon::scope(|_| {
                        measure(products, self.repeats, self.min_ms, || {
                            q.gemm_with(kernel, &xs, &mut ys, true)
                        })
                    });
                    out.push(BenchRow {
                        format: f.name().into(),
                        rows,
                        cols,
                        simd: match kernel {
                            Kernel::Int8 => int_level().name(),
                            Kernel::F32 => simd_level().name(),
                        },
                        kernel: kernel.name(),
                        batch: n,
                        one_core_weights_per_s: single,
                        all_cores_weights_per_s: all,
                        threads,
                        all_cores_packed_bytes_per_s: all / n as f64 * f.bits_per_weight() / 8.0,
                        ggml_one_core_weights_per_s: (n == 1)
                            .then(|| ggml_reference::vec_dot_one_core_weights_per_s(f))
                            .flatten(),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// The all-core rates (weights per second) a profile's `[compute]` section takes, per
/// compute class, measured at one shape: the fastest kernel at batch 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ComputeRates {
    /// f16 experts.
    pub f16: f64,
    /// Q8_0 experts (`q8`), also the dense layers' rate.
    pub q8: f64,
    /// Q4_K experts (`q4`).
    pub q4: f64,
    /// Q3_K experts (`q3`).
    pub q3: f64,
    /// Q2_K experts (`q2`).
    pub q2: f64,
    /// TQ2_0 experts (`ternary`).
    pub ternary: f64,
}

/// The formats that time each compute class, in [`ComputeRates`]' order.
pub const COMPUTE_FORMATS: [&str; 6] = ["f16", "q8_0", "q4_k", "q3_k", "q2_k", "tq2_0"];

/// The best all-core rate per class over the rows at `shape` that `keep` accepts; the formats
/// with no such row when a class is missing (a profile must state every class, and a made-up
/// figure would be worse than none).
fn best_rates(
    rows: &[BenchRow],
    shape: (usize, usize),
    keep: impl Fn(&BenchRow) -> bool,
) -> Result<ComputeRates, Vec<&'static str>> {
    let rate = |f: &str| {
        rows.iter()
            .filter(|r| r.format == f && (r.rows, r.cols) == shape && keep(r))
            .map(|r| r.all_cores_weights_per_s)
            .max_by(f64::total_cmp)
    };
    let missing: Vec<&str> = COMPUTE_FORMATS
        .iter()
        .copied()
        .filter(|f| rate(f).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    let [f16, q8, q4, q3, q2, ternary] = COMPUTE_FORMATS.map(|f| rate(f).expect("measured"));
    Ok(ComputeRates {
        f16,
        q8,
        q4,
        q3,
        q2,
        ternary,
    })
}

/// The batch-1 (matrix-vector) rates of `rows` at `shape`, the fastest kernel per class.
pub fn compute_rates(
    rows: &[BenchRow],
    shape: (usize, usize),
) -> Result<ComputeRates, Vec<&'static str>> {
    best_rates(rows, shape, |r| r.batch == 1)
}

/// The best weight-token rates at any batch size at `shape` (a profile's `peak_macs_per_s`:
/// one multiply-add per weight and token), or `None` when only batch 1 was measured there.
pub fn peak_rates(rows: &[BenchRow], shape: (usize, usize)) -> Option<ComputeRates> {
    rows.iter()
        .any(|r| (r.rows, r.cols) == shape && r.batch > 1)
        .then(|| best_rates(rows, shape, |_| true).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_rates_need_every_class_at_the_shape() {
        let bench = Bench::new(1, 0).unwrap();
        let formats: Vec<WeightFormat> =
            COMPUTE_FORMATS.iter().map(|f| f.parse().unwrap()).collect();
        let rows = bench
            .shape(4, 256, &formats, &[1], &[Kernel::F32, Kernel::Int8])
            .unwrap();
        // f32 for all six, int8 for q8_0, q4_k, q3_k and q2_k.
        assert_eq!(rows.len(), 10);
        let r = compute_rates(&rows, (4, 256)).unwrap();
        let q4: Vec<f64> = rows
            .iter()
            .filter(|r| r.format == "q4_k")
            .map(|r| r.all_cores_weights_per_s)
            .collect();
        assert_eq!(q4.len(), 2);
        assert_eq!(r.q4, q4[0].max(q4[1]));
        assert!(compute_rates(&rows, (8, 256)).is_err());
        assert_eq!(compute_rates(&rows[1..], (4, 256)).unwrap_err(), ["f16"]);
        assert!(
            bench
                .shape(4, 100, &formats[2..3], &[1], &[Kernel::F32])
                .is_err()
        );
        assert!(peak_rates(&rows, (4, 256)).is_none());
        let batched = bench
            .shape(4, 256, &formats, &[1, 4], &[Kernel::Int8])
            .unwrap();
        let peak = peak_rates(&batched, (4, 256)).unwrap();
        let batch_one = compute_rates(&batched, (4, 256)).unwrap();
        assert!(peak.q4 >= batch_one.q4 && peak.q2 >= batch_one.q2);
    }
}
