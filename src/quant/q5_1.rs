//! ggml Q5_1: blocks of 32 weights, `d: f16, m: f16, qh: u32, qs: u8[16]` (24 bytes, 6 bpw),
//! five-bit codes packed as Q5_0's. Quantize: `d = (max − min) / 31`, codes
//! `min(31, trunc((x − min) / d + 0.5))` (ggml's `quantize_row_q5_1_ref`, and `gguf.quants`);
//! dequantize `q · d + m`.

use super::f16::{read_f16, write_f16};
use super::gemv::{dot_by_blocks, row_kernels};
use super::q4_1::min_max;
use super::q5_0::{pack5, unpack5};

pub(crate) const BLOCK: usize = 32;
pub(crate) const BYTES: usize = 24;

pub(crate) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BYTES)) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(&mut yb[0..2], d);
        write_f16(&mut yb[2..4], min);
        let mut q = [0u8; 32];
        for (qj, &v) in q.iter_mut().zip(xb) {
            *qj = (((v - min) * id + 0.5) as i8).min(31) as u8;
        }
        let (qh, qs) = yb[4..].split_at_mut(4);
        pack5(&q, qh, qs);
    }
}

#[inline(always)]
fn dequantize_block(yb: &[u8], ob: &mut [f32; BLOCK]) {
    let (d, m) = (read_f16(&yb[0..2]), read_f16(&yb[2..4]));
    let q = unpack5(&yb[4..8], &yb[8..24]);
    for (o, &v) in ob.iter_mut().zip(&q) {
        *o = v as f32 * d + m;
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
