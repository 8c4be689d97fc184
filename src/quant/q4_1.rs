//! ggml Q4_1: blocks of 32 weights, `d: f16, m: f16, qs: u8[16]` (20 bytes, 5 bpw). Byte j holds
//! element j in its low nibble and element j + 16 in its high nibble.
//! Quantize: `d = (max − min) / 15`, codes `min(15, trunc((x − min) / d + 0.5))` (ggml's
//! `quantize_row_q4_1_ref`, and `gguf.quants`); dequantize `q · d + m`.

use super::f16::{read_f16, write_f16};
use super::gemv::{dot_by_blocks, row_kernels};

pub(crate) const BLOCK: usize = 32;
pub(crate) const BYTES: usize = 20;

/// The smallest and largest value of a block (ggml starts from ±FLT_MAX).
pub(crate) fn min_max(xb: &[f32]) -> (f32, f32) {
    xb.iter()
        .fold((f32::MAX, -f32::MAX), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

pub(crate) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BYTES)) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(&mut yb[0..2], d);
        write_f16(&mut yb[2..4], min);
        for j in 0..16 {
            let q0 = (((xb[j] - min) * id + 0.5) as i8).min(15) as u8;
            let q1 = (((xb[16 + j] - min) * id + 0.5) as i8).min(15) as u8;
            yb[4 + j] = q0 | (q1 << 4);
        }
    }
}

#[inline(always)]
fn dequantize_block(yb: &[u8], ob: &mut [f32; BLOCK]) {
    let (d, m) = (read_f16(&yb[0..2]), read_f16(&yb[2..4]));
    for j in 0..16 {
        ob[j] = (yb[4 + j] & 15) as f32 * d + m;
        ob[16 + j] = (yb[4 + j] >> 4) as f32 * d + m;
    }
}

pub(crate) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (yb, ob) in b.chunks_exact(BYTES).zip(out.chunks_exact_mut(BLOCK)) {
        dequantize_block(yb, ob.try_into().expect("a block"));
    }
}

#[inline(always)]
fn dot_row(row: &[u8], x: &[f32], _aux: &[f32]) -> f32 {
    dot_by_blocks(row, BYTES, x, dequantize_block)
}

row_kernels!(dot_row);
