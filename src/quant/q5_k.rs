//! ggml Q5_K: super-blocks of 256 weights, `d: f16, dmin: f16, scales: u8[12], qh: u8[32],
//! qs: u8[128]` (176 bytes, 5.5 bpw); eight sub-blocks of 32 with 6-bit scales and mins packed
//! as Q4_K's, `x̂ = (d · sc_j) · q − (dmin · m_j)`, q in 0..31. The low four bits of element e
//! sit as in Q4_K (byte `32·(e/64) + e%32`, low nibble when `e % 64 < 32`), the fifth in bit
//! `e/32` of `qh[e % 32]`. Quantizer: ggml's `quantize_row_q5_K_ref` (Q4_K's sub-block fit with
//! 31 levels, 16 candidate scales from `rmin = −0.5`).

use super::f16::read_f16;
use super::gemv::block_kernels;
use super::kquant::{fit_super_block_with_mins, scale_min_k4, scales_and_mins_dot};

pub(crate) const BLOCK: usize = 256;
pub(crate) const BYTES: usize = 176;

pub(crate) fn quantize_row(x: &[f32], out: &mut [u8]) {
    let mut l = [0u8; 256];
    for (xb, yb) in x.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BYTES)) {
        fit_super_block_with_mins(xb, 31, -0.5, 15, &mut yb[..16], &mut l);
        let (qh, qs) = yb[16..176].split_at_mut(32);
        qh.iter_mut().for_each(|b| *b = 0);
        for c in 0..4 {
            for j in 0..32 {
                let (mut l1, mut l2) = (l[64 * c + j], l[64 * c + 32 + j]);
                if l1 > 15 {
                    l1 -= 16;
                    qh[j] |= 1 << (2 * c);
                }
                if l2 > 15 {
                    l2 -= 16;
                    qh[j] |= 2 << (2 * c);
                }
                qs[32 * c + j] = l1 | (l2 << 4);
            }
        }
    }
}

#[inline(always)]
fn dequantize_block(yb: &[u8], ob: &mut [f32; BLOCK]) {
    let (d, min) = (read_f16(&yb[0..2]), read_f16(&yb[2..4]));
    let s = &yb[4..16];
    let qh = &yb[16..48];
    let qs = &yb[48..176];
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, s);
        let (dj, mj) = (d * sc as f32, min * m as f32);
        let (c, shift) = (j / 2, 4 * (j % 2));
        for i in 0..32 {
            let q = ((qs[32 * c + i] >> shift) & 0xf) | (((qh[i] >> j) & 1) << 4);
            ob[32 * j + i] = dj * q as f32 - mj;
        }
    }
}

block_kernels!(dequantize_block);

/// The integer kernel: Q5_K weights against the activation in Q8_K super-blocks (Q4_K's with
/// the fifth bit); the minimum terms come from the activation's sums per 16.
#[inline(always)]
fn int_dot_row(row: &[u8], qs: &[i8], d: &[f32], bsums: &[i16]) -> f32 {
    let mut acc = 0.0f32;
    for (b, (yb, &da)) in row.chunks_exact(BYTES).zip(d).enumerate() {
        let (dw, dmin) = (read_f16(&yb[0..2]) * da, read_f16(&yb[2..4]) * da);
        let (qh, q) = (&yb[16..48], &yb[48..176]);
        let a = &qs[BLOCK * b..BLOCK * b + BLOCK];
        let (sc, mins) = scales_and_mins_dot(&yb[4..16], &bsums[16 * b..16 * b + 16]);
        let mut sumi = 0i32;
        for (j, &s) in sc.iter().enumerate() {
            let (c, shift) = (j / 2, 4 * (j % 2));
            let mut v = [0u8; 32];
            for i in 0..32 {
                v[i] = ((q[32 * c + i] >> shift) & 0xf) | (((qh[i] >> j) & 1) << 4);
            }
            sumi += s as i32 * super::act::dot32_u8_i8(&v, &a[32 * j..32 * j + 32]);
        }
        acc += dw * sumi as f32 - dmin * mins as f32;
    }
    acc
}

/// [`int_dot_row`] with AVX2: Q4_K's nibbles with the fifth bit or-ed in as 16 (codes ≤ 31,
/// `vpmaddubsw` at most 2 · 31 · 127).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
fn int_dot_row_avx2(row: &[u8], qs: &[i8], d: &[f32], bsums: &[i16]) -> f32 {
    use super::avx2::{hsum_ps, load32, load32_i8, maddubs};
    use std::arch::x86_64::*;
    let mut acc = _mm256_setzero_ps();
    let mut acc_min = 0.0f32;
    let (low, sixteen) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(16));
    for (b, (yb, &da)) in row.chunks_exact(BYTES).zip(d).enumerate() {
        let (dw, dmin) = (read_f16(&yb[0..2]) * da, read_f16(&yb[2..4]) * da);
        let hb = load32(&yb[16..48]);
        let q = &yb[48..176];
        let a = &qs[BLOCK * b..BLOCK * b + BLOCK];
        let (sc, mins) = scales_and_mins_dot(&yb[4..16], &bsums[16 * b..16 * b + 16]);
        // The fifth bit of sub-block j as 16 in each byte.
        let fifth = |j: usize| {
            let bit = _mm256_set1_epi8(1i8 << j);
            _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, bit), bit), sixteen)
        };
        let mut sumi = _mm256_setzero_si256();
        for c in 0..4 {
            let bits = load32(&q[32 * c..]);
            let lo = _mm256_or_si256(_mm256_and_si256(bits, low), fifth(2 * c));
            let hi = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(bits), low),
                fifth(2 * c + 1),
            );
            let p1 = maddubs(lo, load32_i8(&a[64 * c..]));
            let p2 = maddubs(hi, load32_i8(&a[64 * c + 32..]));
            let p1 = _mm256_madd_epi16(p1, _mm256_set1_epi16(sc[2 * c]));
            let p2 = _mm256_madd_epi16(p2, _mm256_set1_epi16(sc[2 * c + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p1, p2));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dw), _mm256_cvtepi32_ps(sumi), acc);
        acc_min += dmin * mins as f32;
    }
    hsum_ps(acc) - acc_min
}

#[cfg(target_arch = "x86_64")]
super::act::int_row_kernels!(int_dot_row, int_dot_row_avx2);
#[cfg(not(target_arch = "x86_64"))]
super::act::int_row_kernels!(int_dot_row);
