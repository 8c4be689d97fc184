//! ggml's own figures, measured with ggml and gguf on a 2-vCPU x86-64 Debian 12 VM
//! (`../shared/reference/quantization.md`), that `moesim quant eval` and `moesim quant bench`
//! print beside their own: the error of ggml's quantizers (§4) and the speed of its
//! hand-written SIMD `vec_dot` (§7.3).

use super::WeightFormat;

/// The shape the §4 error figures were measured at: 4096 × 256.
pub const SQNR_SHAPE: (usize, usize) = (4096, 256);

/// Whether synthetic matrices of `shape` drawn from `seed` (Gaussian) and `seed + 1`
/// (Student-t with `df` degrees of freedom) are the ones §4 measured: `default_rng(0)` and
/// `default_rng(1)`, t with 4 degrees of freedom, 4096 × 256.
pub fn sqnr_applies(shape: (usize, usize), seed: u64, df: f64) -> bool {
    shape == SQNR_SHAPE && seed == 0 && df == 4.0
}

/// SQNR (dB) of ggml's own quantizer for `format` on the §4 matrices: `source` is
/// `gaussian` or `student-t4`, `hadamard` after a randomized Hadamard rotation (measured on
/// Student-t only). None for formats ggml does not have and settings §4 did not measure.
pub fn sqnr_db(format: WeightFormat, source: &str, hadamard: bool) -> Option<f64> {
    // Gaussian, Student-t(4), Student-t(4) after the rotation.
    let row: [f64; 3] = match format {
        WeightFormat::Q8_0 => [45.42, 42.71, 45.52],
        WeightFormat::Q4_0 => [21.31, 18.71, 21.39],
        WeightFormat::Q4K => [22.94, 21.24, 23.00],
        WeightFormat::Q3K => [16.42, 14.72, 16.49],
        WeightFormat::Q2K => [10.55, 9.31, 10.65],
        WeightFormat::TQ2_0 | WeightFormat::TQ1_0 => [1.86, 1.48, 1.91],
        _ => return None,
    };
    match (source, hadamard) {
        ("gaussian", false) => Some(row[0]),
        ("student-t4", false) => Some(row[1]),
        ("student-t4", true) => Some(row[2]),
        _ => None,
    }
}

/// Weights per second of ggml's hand-written SIMD `vec_dot` for `format` on one core of the
/// reference VM (§7.3: `test-quantize-perf --op vec_dot_q`, working set in cache); None for
/// formats ggml does not have.
pub fn vec_dot_one_core_weights_per_s(format: WeightFormat) -> Option<f64> {
    Some(match format {
        WeightFormat::Q8_0 => 21.3e9,
        WeightFormat::Q4_0 => 21.6e9,
        WeightFormat::Q4K => 13.5e9,
        WeightFormat::Q3K => 16.0e9,
        WeightFormat::Q2K => 16.6e9,
        WeightFormat::TQ2_0 => 32.0e9,
        WeightFormat::TQ1_0 => 24.0e9,
        _ => return None,
    })
}
