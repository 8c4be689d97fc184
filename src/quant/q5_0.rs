//! ggml Q5_0: blocks of 32 weights, `d: f16, qh: u32, qs: u8[16]` (22 bytes, 5.5 bpw): the low
//! four bits of element j in byte j (j < 16, low nibble) or j − 16 (high nibble), its fifth bit
//! in bit j of `qh` (little-endian). Quantize: `d = m / −16` with m the signed value of largest
//! magnitude, codes `min(31, trunc(x / d + 16.5))` (ggml's `quantize_row_q5_0_ref`, and
//! `gguf.quants`); dequantize `(q − 16) · d`.

use super::f16::{read_f16, write_f16};
use super::gemv::block_kernels;

pub(crate) const BLOCK: usize = 32;
pub(crate) const BYTES: usize = 22;

/// Packs 32 five-bit codes: high bits in `qh` (4 bytes), nibbles in `qs` (16 bytes).
pub(crate) fn pack5(q: &[u8; 32], qh: &mut [u8], qs: &mut [u8]) {
    let mut h = 0u32;
    for (j, &v) in q.iter().enumerate() {
        h |= ((v as u32 >> 4) & 1) << j;
    }
    qh.copy_from_slice(&h.to_le_bytes());
    for j in 0..16 {
        qs[j] = (q[j] & 15) | ((q[16 + j] & 15) << 4);
    }
}

/// The 32 five-bit codes of `qh` and `qs`.
#[inline(always)]
pub(crate) fn unpack5(qh: &[u8], qs: &[u8]) -> [u8; 32] {
    let h = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = (qs[j] & 15) | ((((h >> j) & 1) as u8) << 4);
        q[16 + j] = (qs[j] >> 4) | ((((h >> (16 + j)) & 1) as u8) << 4);
    }
    q
}

pub(crate) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BYTES)) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in xb {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(&mut yb[0..2], d);
        let mut q = [0u8; 32];
        for (qj, &v) in q.iter_mut().zip(xb) {
            // The value is at least 0.5 here, so the truncating cast never wraps.
            *qj = ((v * id + 16.5) as i8).min(31) as u8;
        }
        let (qh, qs) = yb[2..].split_at_mut(4);
        pack5(&q, qh, qs);
    }
}

#[inline(always)]
fn dequantize_block(yb: &[u8], ob: &mut [f32; BLOCK]) {
    let d = read_f16(&yb[0..2]);
    let q = unpack5(&yb[2..6], &yb[6..22]);
    for (o, &v) in ob.iter_mut().zip(&q) {
        *o = d * (v as i32 - 16) as f32;
    }
}

block_kernels!(dequantize_block);

/// The integer kernel: Q5_0 weights against the activation in Q8_0 blocks,
/// `Σ (q − 16) · a = Σ q · a − 16 · Σ a`.
#[inline(always)]
fn int_dot_row(row: &[u8], qs: &[i8], d: &[f32], _bsums: &[i16]) -> f32 {
    use super::act::{dot32_u8_i8, sum32_i8};
    let mut acc = 0.0f32;
    for ((wb, ab), &da) in row.chunks_exact(BYTES).zip(qs.chunks_exact(BLOCK)).zip(d) {
        let q = unpack5(&wb[2..6], &wb[6..22]);
        let sumi = dot32_u8_i8(&q, ab) - 16 * sum32_i8(ab);
        acc += read_f16(&wb[0..2]) * da * sumi as f32;
    }
    acc
}

/// [`int_dot_row`] with AVX2: codes minus 16 as signed bytes, then the signed dot.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
fn int_dot_row_avx2(row: &[u8], qs: &[i8], d: &[f32], _bsums: &[i16]) -> f32 {
    use super::avx2::{bits_to_bytes, dot_i8_i8, hsum_ps, load16, load32_i8, nibbles};
    use std::arch::x86_64::*;
    let mut acc = _mm256_setzero_ps();
    let sixteen = _mm256_set1_epi8(16);
    for ((wb, ab), &da) in row.chunks_exact(BYTES).zip(qs.chunks_exact(BLOCK)).zip(d) {
        let h = u32::from_le_bytes([wb[2], wb[3], wb[4], wb[5]]);
        let q = _mm256_or_si256(
            nibbles(load16(&wb[6..22])),
            _mm256_and_si256(bits_to_bytes(h), sixteen),
        );
        let p = dot_i8_i8(_mm256_sub_epi8(q, sixteen), load32_i8(ab));
        acc = _mm256_fmadd_ps(
            _mm256_set1_ps(read_f16(&wb[0..2]) * da),
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
