//! Fused dequantize-dot GEMV throughput on this host (`moesim quant bench`): every format at
//! each shape, on one core and on the whole rayon pool, beside ggml's hand-written kernels,
//! and the all-core rates a hardware profile's `[compute]` section needs.

use std::time::Instant;

use serde::Serialize;

use super::eval::{WeightDistribution, sample};
use super::gemv::simd_level;
use super::{QuantizedMatrix, WeightFormat, ggml_reference};

/// One row of `quant bench`: one format at one shape.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// The format's name.
    pub format: String,
    /// Rows of the matrix (outputs).
    pub rows: usize,
    /// Columns (inputs).
    pub cols: usize,
    /// The SIMD level the kernels ran at.
    pub simd: &'static str,
    /// Weights per second on one thread.
    pub one_core_weights_per_s: f64,
    /// Weights per second on the whole rayon pool.
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

    /// The rows of every format in `formats` on a Gaussian `rows × cols` matrix, in order; the
    /// reason when a format cannot pack rows of `cols` weights.
    pub fn shape(
        &self,
        rows: usize,
        cols: usize,
        formats: &[WeightFormat],
    ) -> Result<Vec<BenchRow>, String> {
        let threads = rayon::current_num_threads();
        let w = sample(WeightDistribution::Gaussian, rows * cols, 1);
        let x = sample(WeightDistribution::Gaussian, cols, 2);
        let mut y = vec![0.0f32; rows];
        let mut out = Vec::new();
        for &f in formats {
            let q = QuantizedMatrix::quantize(f, rows, cols, &w, None)?;
            let single = self.one_core.install(|| {
                measure(rows * cols, self.repeats, self.min_ms, || {
                    q.gemv_serial(&x, &mut y)
                })
            });
            let all = measure(rows * cols, self.repeats, self.min_ms, || {
                q.gemv(&x, &mut y)
            });
            out.push(BenchRow {
                format: f.name().into(),
                rows,
                cols,
                simd: simd_level().name(),
                one_core_weights_per_s: single,
                all_cores_weights_per_s: all,
                threads,
                all_cores_packed_bytes_per_s: all * f.bits_per_weight() / 8.0,
                ggml_one_core_weights_per_s: ggml_reference::vec_dot_one_core_weights_per_s(f),
            });
        }
        Ok(out)
    }
}

/// The all-core rates (weights per second) a profile's `[compute]` section takes, per
/// compute class, measured at one shape.
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

/// The all-core rates of `rows` at `shape`; the formats not measured there when a class is
/// missing (a profile must state every class, and a made-up figure would be worse than none).
pub fn compute_rates(
    rows: &[BenchRow],
    shape: (usize, usize),
) -> Result<ComputeRates, Vec<&'static str>> {
    let rate = |f: &str| {
        rows.iter()
            .find(|r| r.format == f && (r.rows, r.cols) == shape)
            .map(|r| r.all_cores_weights_per_s)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_rates_need_every_class_at_the_shape() {
        let bench = Bench::new(1, 0).unwrap();
        let formats: Vec<WeightFormat> =
            COMPUTE_FORMATS.iter().map(|f| f.parse().unwrap()).collect();
        let rows = bench.shape(4, 256, &formats).unwrap();
        assert_eq!(rows.len(), 6);
        let r = compute_rates(&rows, (4, 256)).unwrap();
        assert_eq!(r.q4, rows[2].all_cores_weights_per_s);
        assert!(compute_rates(&rows, (8, 256)).is_err());
        assert_eq!(compute_rates(&rows[1..], (4, 256)).unwrap_err(), ["f16"]);
        assert!(bench.shape(4, 100, &formats[2..3]).is_err());
    }
}
