//! The quantization error of every format on a set of weight matrices (`moesim quant eval`):
//! one [`EvalRow`] per (matrix, quantizer, rotation), with ggml's own figure beside where
//! `quantization.md` §4 measured one, and the verdict on the seed's pi-constant quantizer
//! against the uniform baseline on the same grid.

use serde::Serialize;

use super::eval::{WeightDistribution, error_stats, sample};
use super::{
    Kernel, QuantizedMatrix, Rotation, WeightFormat, ggml_reference, pi_fitted_round_trip,
};

/// A weight matrix to evaluate, row-major.
#[derive(Debug, Clone)]
pub struct EvalMatrix {
    /// Its name in the rows: the distribution's (`gaussian`, `student-t4`) or the file's.
    pub name: String,
    /// Rows.
    pub rows: usize,
    /// Columns (the quantized dimension).
    pub cols: usize,
    /// `rows × cols` weights.
    pub data: Vec<f32>,
}

impl EvalMatrix {
    /// A `rows × cols` matrix drawn from `dist`. The Student-t matrix draws from `seed + 1`, as
    /// `quantization.md` §4 does, so the default seeds give §4's matrices.
    pub fn synthetic(dist: WeightDistribution, rows: usize, cols: usize, seed: u64) -> EvalMatrix {
        let seed = match dist {
            WeightDistribution::Gaussian => seed,
            WeightDistribution::StudentT(_) => seed + 1,
            WeightDistribution::OutlierColumns => seed + 2,
        };
        EvalMatrix {
            name: dist.name(),
            rows,
            cols,
            data: sample(dist, rows * cols, seed),
        }
    }

    /// The reason when a row is not a whole number of blocks of one of `formats`.
    pub fn check_blocks(&self, formats: &[WeightFormat]) -> Result<(), String> {
        match formats
            .iter()
            .find(|f| !self.cols.is_multiple_of(super::kernels(**f).block))
        {
            Some(f) => Err(format!(
                "rows of {} weights are not whole {}-weight blocks of {f}; pick a shape or formats that fit",
                self.cols,
                super::kernels(*f).block
            )),
            None => Ok(()),
        }
    }
}

/// One row of `quant-eval.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct EvalRow {
    /// The matrix's name.
    pub source: String,
    /// Its rows.
    pub rows: usize,
    /// Its columns.
    pub cols: usize,
    /// The format's name, or `piq3-fit` / `piq2-fit` for PiQ with α fitted per block.
    pub quantizer: String,
    /// The format's family (`ggml k-quant`, `pi-constant (seed)`, ...).
    pub family: String,
    /// Quantized in a randomized Hadamard basis (errors measured after rotating back).
    pub hadamard: bool,
    /// Bits per weight, scales included.
    pub bits_per_weight: f64,
    /// `‖x − x̂‖ / ‖x‖`.
    pub rel_rmse: f64,
    /// Signal to quantization noise, dB.
    pub sqnr_db: f64,
    /// `max |x − x̂|`.
    pub max_abs_error: f64,
    /// The figure `quantization.md` §4 measured with ggml/gguf on the same distribution and shape.
    pub reference_sqnr_db: Option<f64>,
    /// SQNR of the matrix-vector products `W · x` (against the unquantized weights and exact
    /// arithmetic, over [`OUTPUT_VECTORS`] Gaussian vectors) with the f32 kernel: the weights'
    /// error as a layer sees it.
    pub output_sqnr_db: f64,
    /// The same with the int8 kernel (the activation quantized to 8-bit blocks too), where
    /// the format has one: the difference from `output_sqnr_db` is what quantizing the
    /// activation costs.
    pub output_sqnr_int8_db: Option<f64>,
}

/// Activation vectors the output errors are measured on.
pub const OUTPUT_VECTORS: usize = 8;

/// `W · x` for every vector of `xs` (token-major), in f64: the exact products.
fn exact_products(w: &[f32], cols: usize, xs: &[f32]) -> Vec<f64> {
    xs.chunks_exact(cols)
        .flat_map(|x| {
            w.chunks_exact(cols).map(move |row| {
                row.iter()
                    .zip(x)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>()
            })
        })
        .collect()
}

/// SQNR in dB of `got` against `exact`.
fn sqnr_db(exact: &[f64], got: &[f32]) -> f64 {
    let (signal, noise) = exact
        .iter()
        .zip(got)
        .fold((0.0f64, 0.0f64), |(s, n), (&e, &g)| {
            (s + e * e, n + (e - g as f64).powi(2))
        });
    10.0 * (signal / noise).log10()
}

/// What to evaluate on each matrix.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The formats, in row order.
    pub formats: Vec<WeightFormat>,
    /// Also quantize in a randomized Hadamard basis.
    pub hadamard: bool,
    /// Seed of the rotation's random signs.
    pub hadamard_seed: u64,
    /// The matrices are §4's (see [`ggml_reference::sqnr_applies`]): give ggml's figures.
    pub with_reference: bool,
}

/// The rows of `m`: every format, plain and (with `hadamard`) rotated, then PiQ with α fitted
/// per block where PiQ3 or PiQ2 is asked for; the reason when a format cannot represent `m`
/// (a non-finite weight, a scale that overflows).
pub fn eval_matrix(m: &EvalMatrix, opts: &EvalOptions) -> Result<Vec<EvalRow>, String> {
    let rotations: &[bool] = if opts.hadamard {
        &[false, true]
    } else {
        &[false]
    };
    let rotation = Rotation::new(m.cols, opts.hadamard_seed);
    let xs = sample(WeightDistribution::Gaussian, OUTPUT_VECTORS * m.cols, 9);
    let exact = exact_products(&m.data, m.cols, &xs);
    let mut ys = vec![0.0f32; OUTPUT_VECTORS * m.rows];
    // With a packed matrix, the products through each kernel; without (PiQ fitted), through
    // the dequantized weights in f32.
    let mut output_sqnr = |q: Option<&QuantizedMatrix>, xhat: &[f32]| -> (f64, Option<f64>) {
        match q {
            Some(q) => {
                q.gemm_with(Kernel::F32, &xs, &mut ys, true);
                let f32_db = sqnr_db(&exact, &ys);
                let int8 = (Kernel::Int8.for_format(q.format) == Kernel::Int8).then(|| {
                    q.gemm_with(Kernel::Int8, &xs, &mut ys, true);
                    sqnr_db(&exact, &ys)
                });
                (f32_db, int8)
            }
            None => {
                let got: Vec<f32> = exact_products(xhat, m.cols, &xs)
                    .into_iter()
                    .map(|v| v as f32)
                    .collect();
                (sqnr_db(&exact, &got), None)
            }
        }
    };
    let mut rows = Vec::new();
    let mut push = |quantizer: String,
                    family: &str,
                    bpw: f64,
                    hadamard: bool,
                    xhat: &[f32],
                    reference: Option<f64>,
                    outputs: (f64, Option<f64>)| {
        let e = error_stats(&m.data, xhat);
        rows.push(EvalRow {
            source: m.name.clone(),
            rows: m.rows,
            cols: m.cols,
            quantizer,
            family: family.to_string(),
            hadamard,
            bits_per_weight: bpw,
            rel_rmse: e.rel_rmse,
            sqnr_db: e.sqnr_db,
            max_abs_error: e.max_abs,
            reference_sqnr_db: reference,
            output_sqnr_db: outputs.0,
            output_sqnr_int8_db: outputs.1,
        });
    };
    for &f in &opts.formats {
        for &had in rotations {
            let q = QuantizedMatrix::quantize(
                f,
                m.rows,
                m.cols,
                &m.data,
                had.then(|| rotation.clone()),
            )
            .and_then(|q| q.check_representable(&m.data).map(|()| q))?;
            let xhat = q.dequantize();
            let outputs = output_sqnr(Some(&q), &xhat);
            push(
                f.name().to_string(),
                f.family(),
                f.bits_per_weight(),
                had,
                &xhat,
                opts.with_reference
                    .then(|| ggml_reference::sqnr_db(f, &m.name, had))
                    .flatten(),
                outputs,
            );
        }
    }
    // PiQ with α fitted per block: π cancels into the scale.
    for (bits, k, name, bpw_format) in [
        (3, 4, "piq3-fit", WeightFormat::Piq3),
        (2, 3, "piq2-fit", WeightFormat::Piq2),
    ] {
        if !opts.formats.contains(&bpw_format) || !m.cols.is_multiple_of(256) {
            continue;
        }
        for &had in rotations {
            let xhat =
                pi_fitted_round_trip(bits, k, m.rows, m.cols, &m.data, had.then_some(&rotation));
            let outputs = output_sqnr(None, &xhat);
            push(
                name.to_string(),
                "pi-constant, α fitted",
                bpw_format.bits_per_weight(),
                had,
                &xhat,
                None,
                outputs,
            );
        }
    }
    Ok(rows)
}

/// The row of `quantizer` on `source`, plain or rotated.
pub fn find_row<'r>(
    rows: &'r [EvalRow],
    source: &str,
    quantizer: &str,
    hadamard: bool,
) -> Option<&'r EvalRow> {
    rows.iter()
        .find(|r| r.source == source && r.quantizer == quantizer && r.hadamard == hadamard)
}

/// `piq3` → `PiQ3`, `uq3` → `UQ3`.
fn display_name(q: &str) -> String {
    match q.strip_prefix("piq") {
        Some(rest) => format!("PiQ{rest}"),
        None => q.to_uppercase(),
    }
}

/// The plain-language verdicts on PiQ3 and PiQ2 against the uniform baseline for one source
/// (6.02 dB = 1 bit); none for a pair not evaluated.
pub fn verdicts(rows: &[EvalRow], source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (pi, uq, fit, claim) in [
        ("piq3", "uq3", "piq3-fit", true),
        ("piq2", "uq2", "piq2-fit", false),
    ] {
        let (Some(p), Some(u)) = (
            find_row(rows, source, pi, false),
            find_row(rows, source, uq, false),
        ) else {
            continue;
        };
        let d = p.sqnr_db - u.sqnr_db;
        let mut v = format!(
            "{source}: {} ({} bpw) vs {} (same grid and storage, MSE-optimal step): {:.2} dB against {:.2} dB, {:+.2} dB = {:+.3} bit: {}",
            display_name(pi),
            p.bits_per_weight,
            display_name(uq),
            p.sqnr_db,
            u.sqnr_db,
            d,
            d / 6.02,
            if d > 0.0 {
                format!("{} beats the uniform baseline", display_name(pi))
            } else {
                format!("{} does not beat the uniform baseline", display_name(pi))
            }
        );
        if claim {
            v.push_str("; the seed claims +0.5 bit (+3.01 dB)");
        }
        v.push('.');
        if let Some(f) = find_row(rows, source, fit, false) {
            v.push_str(&format!(
                " With α fitted per block instead of the seed's calibration it reaches {:.2} dB ({:+.2} dB against {}): π cancels into the fitted scale.",
                f.sqnr_db,
                f.sqnr_db - u.sqnr_db,
                display_name(uq)
            ));
        }
        out.push(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_figures_sit_beside_the_standard_matrices_only() {
        let m = EvalMatrix::synthetic(WeightDistribution::StudentT(4.0), 64, 256, 0);
        assert_eq!(m.name, "student-t4");
        let opts = |with_reference| EvalOptions {
            formats: vec![WeightFormat::Q4K, WeightFormat::Piq3, WeightFormat::Uq3],
            hadamard: true,
            hadamard_seed: 1,
            with_reference,
        };
        let rows = eval_matrix(&m, &opts(true)).unwrap();
        // Three formats plain and rotated, then PiQ3 with α fitted, plain and rotated.
        assert_eq!(rows.len(), 8);
        let q4k = find_row(&rows, "student-t4", "q4_k", true).unwrap();
        assert_eq!(q4k.reference_sqnr_db, Some(23.00));
        assert_eq!(
            find_row(&rows, "student-t4", "piq3", false)
                .unwrap()
                .reference_sqnr_db,
            None
        );
        let rows = eval_matrix(&m, &opts(false)).unwrap();
        assert!(rows.iter().all(|r| r.reference_sqnr_db.is_none()));
        let v = verdicts(&rows, "student-t4");
        assert_eq!(v.len(), 1, "PiQ2 was not evaluated");
        assert!(
            v[0].starts_with("student-t4: PiQ3 (3.0625 bpw) vs UQ3"),
            "{}",
            v[0]
        );
    }

    #[test]
    fn blocks_that_do_not_divide_the_rows_are_refused() {
        let m = EvalMatrix::synthetic(WeightDistribution::Gaussian, 4, 96, 0);
        assert!(m.check_blocks(&[WeightFormat::Q8_0]).is_ok());
        let e = m
            .check_blocks(&[WeightFormat::Q8_0, WeightFormat::Q4K])
            .unwrap_err();
        assert!(e.contains("256-weight blocks of q4_k"), "{e}");
    }
}
