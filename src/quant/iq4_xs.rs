//! ggml IQ4_XS: super-blocks of 256 weights, `d: f16, scales_h: u16, scales_l: u8[4],
//! qs: u8[128]` (136 bytes, 4.25 bpw): IQ4_NL's 16 levels in eight sub-blocks of 32, each with
//! a 6-bit signed scale (low nibble in `scales_l`, two high bits in `scales_h`, offset by 32),
//! `x̂ = (d · (s_j − 32)) · LEVELS[q]`. Quantizer: IQ4_NL's search over the super-block
//! (ggml's `quantize_iq4_xs` without an importance matrix).

use super::f16::{read_f16, write_f16};
use super::gemv::block_kernels;
use super::iq4_nl::{LEVELS, fit_blocks, pack_nibbles};

pub(crate) const BLOCK: usize = 256;
pub(crate) const BYTES: usize = 136;

pub(crate) fn quantize_row(x: &[f32], out: &mut [u8]) {
    let mut l = [0u8; 256];
    for (xb, yb) in x.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BYTES)) {
        let mut sub = [0u8; 8];
        let d = fit_blocks(xb, &mut l, &mut sub);
        write_f16(&mut yb[0..2], d);
        let mut h = 0u16;
        for (ib, &s) in sub.iter().enumerate() {
            h |= ((s >> 4) as u16) << (2 * ib);
        }
        yb[2..4].copy_from_slice(&h.to_le_bytes());
        for i in 0..4 {
            yb[4 + i] = (sub[2 * i] & 0xf) | ((sub[2 * i + 1] & 0xf) << 4);
        }
        pack_nibbles(&l, &mut yb[8..136]);
    }
}

#[inline(always)]
fn dequantize_block(yb: &[u8], ob: &mut [f32; BLOCK]) {
    let d = read_f16(&yb[0..2]);
    let h = u16::from_le_bytes([yb[2], yb[3]]);
    for ib in 0..8 {
        let s = ((yb[4 + ib / 2] >> (4 * (ib % 2))) & 0xf) | ((((h >> (2 * ib)) & 3) as u8) << 4);
        let dl = d * (s as i32 - 32) as f32;
        let qs = &yb[8 + 16 * ib..8 + 16 * ib + 16];
        for j in 0..16 {
            ob[32 * ib + j] = dl * LEVELS[(qs[j] & 15) as usize] as f32;
            ob[32 * ib + 16 + j] = dl * LEVELS[(qs[j] >> 4) as usize] as f32;
        }
    }
}

block_kernels!(dequantize_block);

/// Sub-block `ib`'s scale, `s_j − 32` (−32..31).
#[inline(always)]
fn sub_scale(yb: &[u8], h: u16, ib: usize) -> i16 {
    let s = ((yb[4 + ib / 2] >> (4 * (ib % 2))) & 0xf) | ((((h >> (2 * ib)) & 3) as u8) << 4);
    s as i16 - 32
}

/// The integer kernel: IQ4_XS weights against the activation in Q8_K super-blocks (as ggml
/// pairs them), IQ4_NL's levels per sub-block of 32 times its scale.
#[inline(always)]
fn int_dot_row(row: &[u8], qs: &[i8], d: &[f32], _bsums: &[i16]) -> f32 {
    use super::act::{dot32_lut_i8, unpack_nibbles};
    let mut acc = 0.0f32;
    for (b, (yb, &da)) in row.chunks_exact(BYTES).zip(d).enumerate() {
        let h = u16::from_le_bytes([yb[2], yb[3]]);
        let a = &qs[BLOCK * b..BLOCK * b + BLOCK];
        let mut sumi = 0i32;
        for ib in 0..8 {
            let q = unpack_nibbles(&yb[8 + 16 * ib..8 + 16 * ib + 16]);
            sumi += sub_scale(yb, h, ib) as i32 * dot32_lut_i8(&q, &LEVELS, &a[32 * ib..]);
        }
        acc += read_f16(&yb[0..2]) * da * sumi as f32;
    }
    acc
}

/// [`int_dot_row`] with AVX2: the levels by a byte shuffle, `|level| · (a · sign level)` by
/// `vpmaddubsw` (at most 2 · 127 · 127), the sub-block scale in the widening multiply-add.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
fn int_dot_row_avx2(row: &[u8], qs: &[i8], d: &[f32], _bsums: &[i16]) -> f32 {
    use super::avx2::{hsum_ps, load16, load32_i8, lookup16, maddubs, nibbles, table16};
    use std::arch::x86_64::*;
    let mut acc = _mm256_setzero_ps();
    let levels = table16(&LEVELS);
    for (b, (yb, &da)) in row.chunks_exact(BYTES).zip(d).enumerate() {
        let h = u16::from_le_bytes([yb[2], yb[3]]);
        let a = &qs[BLOCK * b..BLOCK * b + BLOCK];
        let mut sumi = _mm256_setzero_si256();
        for ib in 0..8 {
            let w = lookup16(levels, nibbles(load16(&yb[8 + 16 * ib..])));
            let y = load32_i8(&a[32 * ib..]);
            let p = maddubs(_mm256_sign_epi8(w, w), _mm256_sign_epi8(y, w));
            let p = _mm256_madd_epi16(p, _mm256_set1_epi16(sub_scale(yb, h, ib)));
            sumi = _mm256_add_epi32(sumi, p);
        }
        acc = _mm256_fmadd_ps(
            _mm256_set1_ps(read_f16(&yb[0..2]) * da),
            _mm256_cvtepi32_ps(sumi),
            acc,
        );
    }
    hsum_ps(acc)
}

#[cfg(target_arch = "x86_64")]
super::act::int_row_kernels!(int_dot_row, int_dot_row_avx2);
#[cfg(not(target_arch = "x86_64"))]
super::act::int_row_kernels!(int_dot_row);
