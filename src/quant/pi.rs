//! The seed's pi-constant quantizers (RuVector PR #255 doc 07, ADR-090;
//! `../shared/reference/seeds.md`, `quantization.md` §6.1): `w_q = round(w / (α·π/k)) · (α·π/k)`
//! with the integer clamped to [−2^(b−1), 2^(b−1) − 1]; PiQ3 is b = 3 with k = 4, PiQ2 b = 2
//! with k = 3. α is per 256-weight block, stored as f16, and calibrated as the seed's
//! implementation does (`ruvllm` `pi_quant.rs`): `α = max|w| / ((2^(b−1) − 0.5) · π/k)`, so the
//! largest weight lands half a step inside the grid. `round` is half away from zero.
//!
//! With that calibration the step is `max|w| / (2^(b−1) − 0.5)`: π and k cancel, and the format
//! is an absmax-scaled uniform quantizer. [`Calibration::Fitted`] instead picks α to minimise
//! each block's squared error (the "fitted scale" `quantization.md` §6.5 asks for); it then
//! equals the MSE-optimal uniform baseline up to where the f16 rounding falls.

use std::f32::consts::PI;

use super::f16::{round_f16, write_f16};
use super::gemv::row_kernels;
use super::grid;

/// How α is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calibration {
    /// The seed's absmax calibration.
    Seed,
    /// α minimising each block's squared error.
    Fitted,
}

/// The step multiplier π/k.
pub(crate) const fn multiplier(k: u32) -> f32 {
    PI / k as f32
}

/// Quantizes a row at `bits` bits with constant k.
pub(crate) fn quantize_row(bits: u32, k: u32, cal: Calibration, x: &[f32], out: &mut [u8]) {
    let mult = multiplier(k);
    let half = (1i32 << (bits - 1)) as f32;
    let mut q = [0i8; 256];
    for (xb, yb) in x
        .chunks_exact(grid::BLOCK)
        .zip(out.chunks_exact_mut(grid::bytes(bits)))
    {
        let alpha = match cal {
            Calibration::Seed => {
                let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                amax / ((half - 0.5) * mult)
            }
            Calibration::Fitted => grid::mse_optimal_step(bits, xb) / mult,
        };
        let step = round_f16(alpha) * mult;
        grid::codes_for(bits, xb, step, &mut q);
        write_f16(&mut yb[0..2], alpha);
        grid::pack(bits, &q, yb);
    }
}

pub(crate) fn dequantize_row(bits: u32, k: u32, b: &[u8], out: &mut [f32]) {
    grid::dequantize_row(bits, multiplier(k), b, out)
}

pub(crate) mod piq3 {
    use super::*;

    #[inline(always)]
    fn dot_row(row: &[u8], x: &[f32], _aux: &[f32]) -> f32 {
        grid::dot_row::<3>(multiplier(4), row, x)
    }

    row_kernels!(dot_row);
}

pub(crate) mod piq2 {
    use super::*;

    #[inline(always)]
    fn dot_row(row: &[u8], x: &[f32], _aux: &[f32]) -> f32 {
        grid::dot_row::<2>(multiplier(3), row, x)
    }

    row_kernels!(dot_row);
}
