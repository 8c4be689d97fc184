//! ggml Q8_0: blocks of 32 weights, `d: f16, qs: i8[32]` (34 bytes, 8.5 bpw).
//! Quantize: `d = amax / 127`, codes `roundf(x / d)` with the f32 reciprocal (ggml's
//! `quantize_row_q8_0_ref`); dequantize `q · d` with d read back from f16.

use super::f16::{read_f16, write_f16};
use super::gemv::row_kernels;

pub(crate) const BLOCK: usize = 32;
pub(crate) const BYTES: usize = 34;

pub(crate) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BYTES)) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(yb, d);
        for (q, &v) in yb[2..].iter_mut().zip(xb) {
            *q = ((v * id).round() as i8) as u8;
        }
    }
}

pub(crate) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (yb, ob) in b.chunks_exact(BYTES).zip(out.chunks_exact_mut(BLOCK)) {
        let d = read_f16(yb);
        for (o, &q) in ob.iter_mut().zip(&yb[2..]) {
            *o = (q as i8) as f32 * d;
        }
    }
}

#[inline(always)]
fn dot_row(row: &[u8], x: &[f32], _aux: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    for (yb, xb) in row.chunks_exact(BYTES).zip(x.chunks_exact(BLOCK)) {
        let d = read_f16(yb);
        let q = &yb[2..34];
        let mut t = [0.0f32; 16];
        for j in 0..16 {
            t[j] = (q[j] as i8) as f32 * xb[j] + (q[16 + j] as i8) as f32 * xb[16 + j];
        }
        for j in 0..16 {
            acc[j] += d * t[j];
        }
    }
    acc.iter().sum()
}

row_kernels!(dot_row);

/// The integer kernel: Q8_0 weights against the activation in Q8_0 blocks.
#[inline(always)]
fn int_dot_row(row: &[u8], qs: &[i8], d: &[f32], _bsums: &[i16]) -> f32 {
    let mut acc = 0.0f32;
    for ((wb, ab), &da) in row.chunks_exact(BYTES).zip(qs.chunks_exact(BLOCK)).zip(d) {
        let sumi = super::act::dot32_i8_i8(&wb[2..34], ab);
        acc += read_f16(wb) * da * sumi as f32;
    }
    acc
}

/// [`int_dot_row`] with AVX2.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
fn int_dot_row_avx2(row: &[u8], qs: &[i8], d: &[f32], _bsums: &[i16]) -> f32 {
    use super::avx2::{dot_i8_i8, hsum_ps, load32, load32_i8};
    use std::arch::x86_64::*;
    let mut acc = _mm256_setzero_ps();
    for ((wb, ab), &da) in row.chunks_exact(BYTES).zip(qs.chunks_exact(BLOCK)).zip(d) {
        let p = dot_i8_i8(load32(&wb[2..34]), load32_i8(ab));
        acc = _mm256_fmadd_ps(
            _mm256_set1_ps(read_f16(wb) * da),
            _mm256_cvtepi32_ps(p),
            acc,
        );
    }
    hsum_ps(acc)
}

#[cfg(target_arch = "x86_64")]
super::act::int_row_kernels!(int_dot_row, int_dot_row_avx2);
#[cfg(not(target_arch = "x86_64"))]
super::act::int_row_kernels!(int_dot_row);
