//! ggml Q5_1: blocks of 32 weights, `d: f16, m: f16, qh: u32, qs: u8[16]` (24 bytes, 6 bpw),
//! five-bit codes packed as Q5_0's. Quantize: `d = (max − min) / 31`, codes
//! `min(31, trunc((x − min) / d + 0.5))` (ggml's `quantize_row_q5_1_ref`, and `gguf.quants`);
//! dequantize `q · d + m`.

use super::f16::{read_f16, write_f16};
use super::gemv::block_kernels;
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

block_kernels!(dequantize_block);

/// The integer kernel: Q5_1 weights against the activation in Q8_0 blocks,
/// `Σ (d · q + m) · a = d · Σ q · a + m · Σ a`.
#[inline(always)]
fn int_dot_row(row: &[u8], qs: &[i8], d: &[f32], _bsums: &[i16]) -> f32 {
    use super::act::{dot32_u8_i8, sum32_i8};
    let mut acc = 0.0f32;
    for ((wb, ab), &da) in row.chunks_exact(BYTES).zip(qs.chunks_exact(BLOCK)).zip(d) {
        let (dw, m) = (read_f16(&wb[0..2]) * da, read_f16(&wb[2..4]) * da);
        let q = unpack5(&wb[4..8], &wb[8..24]);
        acc += dw * dot32_u8_i8(&q, ab) as f32 + m * sum32_i8(ab) as f32;
    }
    acc
}

/// [`int_dot_row`] with AVX2: Q4_1's with the fifth bit or-ed in as 16 (codes ≤ 31).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
fn int_dot_row_avx2(row: &[u8], qs: &[i8], d: &[f32], _bsums: &[i16]) -> f32 {
    use super::avx2::{bits_to_bytes, hsum_ps, load16, load32_i8, maddubs, nibbles, sum_i16_pairs};
    use std::arch::x86_64::*;
    let (mut acc, mut acc_m) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let (ones, sixteen) = (_mm256_set1_epi8(1), _mm256_set1_epi8(16));
    for ((wb, ab), &da) in row.chunks_exact(BYTES).zip(qs.chunks_exact(BLOCK)).zip(d) {
        let (dw, m) = (read_f16(&wb[0..2]) * da, read_f16(&wb[2..4]) * da);
        let h = u32::from_le_bytes([wb[4], wb[5], wb[6], wb[7]]);
        let q = _mm256_or_si256(
            nibbles(load16(&wb[8..24])),
            _mm256_and_si256(bits_to_bytes(h), sixteen),
        );
        let a = load32_i8(ab);
        let p = sum_i16_pairs(maddubs(q, a));
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
