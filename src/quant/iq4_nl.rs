//! ggml IQ4_NL: blocks of 32 weights, `d: f16, qs: u8[16]` (18 bytes, 4.5 bpw), each 4-bit code
//! an index into a fixed non-uniform table of 16 signed levels (denser near zero, as weights
//! are); byte j holds element j (low nibble) and j + 16 (high). Dequantize
//! `d · LEVELS[q]`. Quantizer: ggml's `quantize_iq4_nl` as `ggml_quantize_chunk` (and so
//! `llama-quantize`) runs it without an importance matrix: weights x², nearest level by
//! bisection, a least-squares scale, then 15 neighbouring scales tried. [`fit_blocks`] is the
//! search IQ4_XS shares.

use super::f16::{read_f16, write_f16};
use super::gemv::block_kernels;
use super::kquant::nearest_int;

pub(crate) const BLOCK: usize = 32;
pub(crate) const BYTES: usize = 18;

/// The 16 levels (ggml's `kvalues_iq4nl`).
pub(crate) const LEVELS: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Index of the level nearest `x` (ggml's `best_index_int8`: bisection, ties to the upper).
#[inline(always)]
fn nearest_level(x: f32) -> u8 {
    let v = |i: usize| LEVELS[i] as f32;
    if x <= v(0) {
        return 0;
    }
    if x >= v(15) {
        return 15;
    }
    let (mut lo, mut hi) = (0usize, 15usize);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if x < v(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if x - v(hi - 1) < v(hi) - x {
        (hi - 1) as u8
    } else {
        hi as u8
    }
}

/// Fits one super-block of `x.len()` weights in sub-blocks of 32 (ggml's
/// `quantize_row_iq4_nl_impl` with `ntry = 7` and no importance matrix). Returns the f16 scale
/// `d` as stored; writes the level indices to `l` and, for more than one sub-block, each
/// sub-block's 6-bit scale (offset by 32) to `sub_scales`.
pub(crate) fn fit_blocks(x: &[f32], l: &mut [u8], sub_scales: &mut [u8]) -> f32 {
    const NTRY: i32 = 7;
    let n_sub = x.len() / 32;
    let mut scales = [0.0f32; 8];
    let (mut max_scale, mut amax_scale) = (0.0f32, 0.0f32);
    for ib in 0..n_sub {
        let xb = &x[32 * ib..32 * ib + 32];
        let lb = &mut l[32 * ib..32 * ib + 32];
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax < 1e-15 {
            scales[ib] = 0.0;
            continue;
        }
        let sums = |id: f32, lb: Option<&mut [u8]>| {
            let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
            let mut lb = lb;
            for (j, &v) in xb.iter().enumerate() {
                let k = nearest_level(id * v);
                if let Some(lb) = lb.as_deref_mut() {
                    lb[j] = k;
                }
                let q = LEVELS[k as usize] as f32;
                let w = v * v;
                sumqx += w * q * v;
                sumq2 += w * q * q;
            }
            (sumqx, sumq2)
        };
        let d0 = -max / LEVELS[0] as f32;
        let (sumqx, sumq2) = sums(1.0 / d0, Some(lb));
        let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
        let mut best = d * sumqx;
        for itry in -NTRY..=NTRY {
            let id = (itry + LEVELS[0] as i32) as f32 / max;
            let (sumqx, sumq2) = sums(id, None);
            if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        if d.abs() > amax_scale {
            amax_scale = d.abs();
            max_scale = d;
        }
    }
    let stored;
    if n_sub > 1 {
        let d = -max_scale / 32.0;
        stored = d;
        // ggml stores d as f16 but requantizes the sub-block scales against the f32 value.
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for ib in 0..n_sub {
            let q = nearest_int(id * scales[ib]).clamp(-32, 31);
            let dl = d * q as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            for j in 0..32 {
                l[32 * ib + j] = nearest_level(idl * x[32 * ib + j]);
            }
            sub_scales[ib] = (q + 32) as u8;
        }
    } else {
        stored = scales[0];
        let id = if scales[0] != 0.0 {
            1.0 / scales[0]
        } else {
            0.0
        };
        for (lj, &v) in l.iter_mut().zip(x) {
            *lj = nearest_level(id * v);
        }
    }
    stored
}

/// Packs 32-element groups of 4-bit level indices: byte j of a group holds element j (low
/// nibble) and j + 16 (high).
pub(crate) fn pack_nibbles(l: &[u8], qs: &mut [u8]) {
    for (lg, qg) in l.chunks_exact(32).zip(qs.chunks_exact_mut(16)) {
        for j in 0..16 {
            qg[j] = lg[j] | (lg[16 + j] << 4);
        }
    }
}

pub(crate) fn quantize_row(x: &[f32], out: &mut [u8]) {
    let mut l = [0u8; 32];
    for (xb, yb) in x.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BYTES)) {
        let d = fit_blocks(xb, &mut l, &mut []);
        write_f16(&mut yb[0..2], d);
        pack_nibbles(&l, &mut yb[2..18]);
    }
}

#[inline(always)]
fn dequantize_block(yb: &[u8], ob: &mut [f32; BLOCK]) {
    let d = read_f16(&yb[0..2]);
    for j in 0..16 {
        ob[j] = d * LEVELS[(yb[2 + j] & 15) as usize] as f32;
        ob[16 + j] = d * LEVELS[(yb[2 + j] >> 4) as usize] as f32;
    }
}

block_kernels!(dequantize_block);

/// The integer kernel: IQ4_NL weights against the activation in Q8_0 blocks, each code's
/// level looked up (signed, −127..113) and dotted with the activation's codes.
#[inline(always)]
fn int_dot_row(row: &[u8], qs: &[i8], d: &[f32], _bsums: &[i16]) -> f32 {
    use super::act::{dot32_lut_i8, unpack_nibbles};
    let mut acc = 0.0f32;
    for ((wb, ab), &da) in row.chunks_exact(BYTES).zip(qs.chunks_exact(BLOCK)).zip(d) {
        let sumi = dot32_lut_i8(&unpack_nibbles(&wb[2..18]), &LEVELS, ab);
        acc += read_f16(&wb[0..2]) * da * sumi as f32;
    }
    acc
}

/// [`int_dot_row`] with AVX2: the levels by a byte shuffle of the nibbles, then the signed dot
/// (`|level| ≤ 127`, so `vpmaddubsw` stays below saturation).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
fn int_dot_row_avx2(row: &[u8], qs: &[i8], d: &[f32], _bsums: &[i16]) -> f32 {
    use super::avx2::{dot_i8_i8, hsum_ps, load16, load32_i8, lookup16, nibbles, table16};
    use std::arch::x86_64::*;
    let mut acc = _mm256_setzero_ps();
    let levels = table16(&LEVELS);
    for ((wb, ab), &da) in row.chunks_exact(BYTES).zip(qs.chunks_exact(BLOCK)).zip(d) {
        let w = lookup16(levels, nibbles(load16(&wb[2..18])));
        let p = dot_i8_i8(w, load32_i8(ab));
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
