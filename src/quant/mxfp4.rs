//! MXFP4 (OCP microscaling, as ggml stores it): blocks of 32 weights, `e: u8, qs: u8[16]`
//! (17 bytes, 4.25 bpw): a shared power-of-two scale (E8M0 exponent) and 32 FP4 (E2M1) codes,
//! byte j holding element j (low nibble) and j + 16 (high). ggml keeps the E2M1 values doubled
//! (0, ±1, ±2, ±3, ±4, ±6, ±8, ±12) and halves the scale instead. Quantize (ggml's
//! `quantize_row_mxfp4_ref`, and `gguf.quants`): `e = floor(log2(amax)) − 2 + 127`, each weight
//! to the level of least absolute error (first on ties). gpt-oss ships its experts in it.

use super::gemv::block_kernels;

pub(crate) const BLOCK: usize = 32;
pub(crate) const BYTES: usize = 17;

/// The doubled E2M1 values (ggml's `kvalues_mxfp4`).
const LEVELS: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// Half of `2^(e − 127)` (ggml's `ggml_e8m0_to_fp32_half`): the scale of the doubled levels.
#[inline(always)]
fn half_scale(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        (e as u32 - 1) << 23
    };
    f32::from_bits(bits)
}

pub(crate) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BYTES)) {
        let amax = xb
            .iter()
            .fold(0.0f32, |m, v| if m < v.abs() { v.abs() } else { m });
        // The C cast of the float exponent to uint8_t; weights are finite and at most 2^128,
        // so the value lies in −149 − 2 + 127 ..= 252 and wraps like the C conversion on x86.
        let e = if amax > 0.0 {
            (amax.log2().floor() - 2.0 + 127.0) as i32 as u8
        } else {
            0
        };
        let d = half_scale(e);
        yb[0] = e;
        let best = |v: f32| {
            let mut best = (0usize, (LEVELS[0] as f32 * d - v).abs());
            for (i, &k) in LEVELS.iter().enumerate().skip(1) {
                let err = (k as f32 * d - v).abs();
                if err < best.1 {
                    best = (i, err);
                }
            }
            best.0 as u8
        };
        for j in 0..16 {
            yb[1 + j] = best(xb[j]) | (best(xb[16 + j]) << 4);
        }
    }
}

#[inline(always)]
fn dequantize_block(yb: &[u8], ob: &mut [f32; BLOCK]) {
    let d = half_scale(yb[0]);
    for j in 0..16 {
        ob[j] = d * LEVELS[(yb[1 + j] & 15) as usize] as f32;
        ob[16 + j] = d * LEVELS[(yb[1 + j] >> 4) as usize] as f32;
    }
}

block_kernels!(dequantize_block);

/// The integer kernel: MXFP4 weights against the activation in Q8_0 blocks, the doubled E2M1
/// levels looked up and dotted with the activation's codes, times the E8M0 half scale.
#[inline(always)]
fn int_dot_row(row: &[u8], qs: &[i8], d: &[f32], _bsums: &[i16]) -> f32 {
    use super::act::{dot32_lut_i8, unpack_nibbles};
    let mut acc = 0.0f32;
    for ((wb, ab), &da) in row.chunks_exact(BYTES).zip(qs.chunks_exact(BLOCK)).zip(d) {
        let sumi = dot32_lut_i8(&unpack_nibbles(&wb[1..17]), &LEVELS, ab);
        acc += half_scale(wb[0]) * da * sumi as f32;
    }
    acc
}

/// [`int_dot_row`] with AVX2: the levels by a byte shuffle of the nibbles, then the signed dot.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
fn int_dot_row_avx2(row: &[u8], qs: &[i8], d: &[f32], _bsums: &[i16]) -> f32 {
    use super::avx2::{dot_i8_i8, hsum_ps, load16, load32_i8, lookup16, nibbles, table16};
    use std::arch::x86_64::*;
    let mut acc = _mm256_setzero_ps();
    let levels = table16(&LEVELS);
    for ((wb, ab), &da) in row.chunks_exact(BYTES).zip(qs.chunks_exact(BLOCK)).zip(d) {
        let w = lookup16(levels, nibbles(load16(&wb[1..17])));
        let p = dot_i8_i8(w, load32_i8(ab));
        acc = _mm256_fmadd_ps(
            _mm256_set1_ps(half_scale(wb[0]) * da),
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
