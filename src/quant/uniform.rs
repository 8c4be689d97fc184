//! The honest baseline for the pi-constant claim: the same integer grid, the same storage
//! (256-weight blocks, one f16 step each), with each block's step chosen to minimise its
//! squared error (`grid::mse_optimal_step`) instead of by a constant. UQ4, UQ3 and UQ2 at
//! 4.0625, 3.0625 and 2.0625 bpw.

use super::f16::{round_f16, write_f16};
use super::grid;

pub(crate) fn quantize_row(bits: u32, x: &[f32], out: &mut [u8]) {
    let mut q = [0i8; 256];
    for (xb, yb) in x
        .chunks_exact(grid::BLOCK)
        .zip(out.chunks_exact_mut(grid::bytes(bits)))
    {
        let step = grid::mse_optimal_step(bits, xb);
        grid::codes_for(bits, xb, round_f16(step), &mut q);
        write_f16(&mut yb[0..2], step);
        grid::pack(bits, &q, yb);
    }
}

pub(crate) fn dequantize_row(bits: u32, b: &[u8], out: &mut [f32]) {
    grid::dequantize_row(bits, 1.0, b, out)
}

macro_rules! uniform_kernels {
    ($name:ident, $bits:literal) => {
        pub(crate) mod $name {
            use super::grid;
            use crate::quant::gemv::row_kernels;

            #[inline(always)]
            fn dot_row(row: &[u8], x: &[f32], _aux: &[f32]) -> f32 {
                grid::dot_row::<$bits>(1.0, row, x)
            }

            row_kernels!(dot_row);
        }
    };
}

uniform_kernels!(uq4, 4);
uniform_kernels!(uq3, 3);
uniform_kernels!(uq2, 2);
