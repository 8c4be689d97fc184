//! ggml Q4_1: blocks of 32 weights, `d: f16, m: f16, qs: u8[16]` (20 bytes, 5 bpw). Byte j holds
//! element j in its low nibble and element j + 16 in its high nibble.
//! Quantize: `d = (max − min) / 15`, codes `min(15, trunc((x − min) / d + 0.5))` (ggml's
//! `quantize_row_q4_1_ref`, and `gguf.quants`); dequantize `q · d + m`.

use super::f16::{read_f16, write_f16};
use super::gemv::block_kernels;

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

block_kernels!(dequantize_block);

/// The integer kernel: Q4_1 weights against the activation in Q8_0 blocks,
/// `Σ (d · q + m) · a = d · Σ q · a + m · Σ a`.
#[inline(always)]
fn int_dot_row(row: &[u8], qs: &[i8], d: &[f32], _bsums: &[i16]) -> f32 {
    use super::act::{dot32_u8_i8, sum32_i8, unpack_nibbles};
    let mut acc = 0.0f32;
    for ((wb, ab), &da) in row.chunks_exact(BYTES).zip(qs.chunks_exact(BLOCK)).zip(d) {
        let (dw, m) = (read_f16(&wb[0..2]) * da, read_f16(&wb[2..4]) * da);
        let q = unpack_nibbles(&wb[4..20]);
        acc += dw * dot32_u8_i8(&q, ab) as f32 + m * sum32_i8(ab) as f32;
    }
    acc
}

/// [`int_dot_row`] with AVX2: the nibbles unsigned against the activation, and `Σ a` as a
/// multiply-add by ones.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
fn int_dot_row_avx2(row: &[u8], qs: &[i8], d: &[f32], _bsums: &[i16]) -> f32 {
    use super::avx2::{hsum_ps, load16, load32_i8, maddubs, nibbles, sum_i16_pairs};
    use std::arch::x86_64::*;
    let (mut acc, mut acc_m) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let ones = _mm256_set1_epi8(1);
    for ((wb, ab), &da) in row.chunks_exact(BYTES).zip(qs.chunks_exact(BLOCK)).zip(d) {
        let (dw, m) = (read_f16(&wb[0..2]) * da, read_f16(&wb[2..4]) * da);
        let a = load32_i8(ab);
        let p = sum_i16_pairs(maddubs(nibbles(load16(&wb[4..20])), a));
        let s = sum_i16_pairs(maddubs(ones, a));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dw), _mm256_cvtepi32_ps(p), acc);
        acc_m = _mm256_fmadd_ps(_mm256_set1_ps(m), _mm256_cvtepi32_ps(s), acc_m);
    }
    hsum_ps(acc) + hsum_ps(acc_m)
}

#[cfg(target_arch = "x86_64")]
super::act::int_row_kernels!(int_dot_row, int_dot_row_avx2);
#[cfg(not(target_arch = "x86_64"))]
super::act::int_row_kernels!(int_dot_row);
