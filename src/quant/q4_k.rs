//! ggml Q4_K: super-blocks of 256 weights, `d: f16, dmin: f16, scales: u8[12], qs: u8[128]`
//! (144 bytes, 4.5 bpw); eight sub-blocks of 32 with 6-bit scales and mins,
//! `x̂ = (d · sc_j) · q − (dmin · m_j)`, q in 0..15. Element e sits in byte `32·(e/64) + e%32`,
//! low nibble when `e % 64 < 32`. Quantizer: ggml's `quantize_row_q4_K_ref` (importance
//! weights `rms + |x|`, 21 candidate scales, weighted least squares, then a division-based
//! requantization).

use super::f16::read_f16;
use super::gemv::row_kernels;
use super::kquant::{fit_super_block_with_mins, scale_min_k4, scales_and_mins_dot};

pub(crate) const BLOCK: usize = 256;
pub(crate) const BYTES: usize = 144;
/// Activation sums per 32 elements.
pub(crate) const AUX_GROUP: usize = 32;

pub(crate) fn quantize_row(x: &[f32], out: &mut [u8]) {
    let mut l = [0u8; 256];
    for (xb, yb) in x.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BYTES)) {
        fit_super_block_with_mins(xb, 15, -1.0, 20, &mut yb[..16], &mut l);
        let qs = &mut yb[16..144];
        for c in 0..4 {
            for i in 0..32 {
                qs[32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
            }
        }
    }
}

pub(crate) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (yb, ob) in b.chunks_exact(BYTES).zip(out.chunks_exact_mut(BLOCK)) {
        let (d, min) = (read_f16(&yb[0..2]), read_f16(&yb[2..4]));
        let s = &yb[4..16];
        let qs = &yb[16..144];
        for c in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * c, s);
            let (sc2, m2) = scale_min_k4(2 * c + 1, s);
            let (d1, mm1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, mm2) = (d * sc2 as f32, min * m2 as f32);
            for i in 0..32 {
                let q = qs[32 * c + i];
                ob[64 * c + i] = d1 * (q & 0xf) as f32 - mm1;
                ob[64 * c + 32 + i] = d2 * (q >> 4) as f32 - mm2;
            }
        }
    }
}

#[inline(always)]
fn dot_row(row: &[u8], x: &[f32], aux: &[f32]) -> f32 {
    let mut acc = [0.0f32; 32];
    let mut mins = 0.0f32;
    for (b, (yb, xb)) in row
        .chunks_exact(BYTES)
        .zip(x.chunks_exact(BLOCK))
        .enumerate()
    {
        let (d, min) = (read_f16(&yb[0..2]), read_f16(&yb[2..4]));
        let s = &yb[4..16];
        let qs = &yb[16..144];
        let sums = &aux[8 * b..8 * b + 8];
        for c in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * c, s);
            let (sc2, m2) = scale_min_k4(2 * c + 1, s);
            let (d1, d2) = (d * sc1 as f32, d * sc2 as f32);
            mins += min * m1 as f32 * sums[2 * c] + min * m2 as f32 * sums[2 * c + 1];
            let q = &qs[32 * c..32 * c + 32];
            let (xl, xh) = (&xb[64 * c..64 * c + 32], &xb[64 * c + 32..64 * c + 64]);
            for i in 0..32 {
                acc[i] += d1 * ((q[i] & 0xf) as f32 * xl[i]) + d2 * ((q[i] >> 4) as f32 * xh[i]);
            }
        }
    }
    acc.iter().sum::<f32>() - mins
}

row_kernels!(dot_row);

/// The integer kernel: Q4_K weights against the activation in Q8_K super-blocks; the minimum
/// terms come from the activation's sums per 16.
#[inline(always)]
fn int_dot_row(row: &[u8], qs: &[i8], d: &[f32], bsums: &[i16]) -> f32 {
    let mut acc = 0.0f32;
    for (b, (yb, &da)) in row.chunks_exact(BYTES).zip(d).enumerate() {
        let (dw, dmin) = (read_f16(&yb[0..2]) * da, read_f16(&yb[2..4]) * da);
        let s = &yb[4..16];
        let q = &yb[16..144];
        let a = &qs[BLOCK * b..BLOCK * b + BLOCK];
        let bs = &bsums[16 * b..16 * b + 16];
        let (sc, mins) = scales_and_mins_dot(s, bs);
        let mut sumi = 0i32;
        for c in 0..4 {
            let (sc1, sc2) = (sc[2 * c], sc[2 * c + 1]);
            let qc = &q[32 * c..32 * c + 32];
            let (mut lo, mut hi) = ([0u8; 32], [0u8; 32]);
            for i in 0..32 {
                lo[i] = qc[i] & 0xf;
                hi[i] = qc[i] >> 4;
            }
            sumi += sc1 as i32 * super::act::dot32_u8_i8(&lo, &a[64 * c..64 * c + 32])
                + sc2 as i32 * super::act::dot32_u8_i8(&hi, &a[64 * c + 32..64 * c + 64]);
        }
        acc += dw * sumi as f32 - dmin * mins as f32;
    }
    acc
}

/// How far ahead the x86 tile prefetches the packed weights, in bytes: nearer than
/// [`PREFETCH_BYTES`](super::avx2::PREFETCH_BYTES), as measured there.
#[cfg(target_arch = "x86_64")]
const PREFETCH_AHEAD_BYTES: usize = 1024;

/// [`int_dot_row`] on x86 over a tile of `N` tokens: each super-block's nibbles are unpacked
/// and its scales spread once, then multiplied with every token's codes. The 6-bit scales and
/// mins come apart in four 32-bit words (scales in the low 8 bytes, mins in the high); the mins'
/// term is one multiply-add with the activation's sums per 32. With VNNI, each pair of
/// sub-blocks takes three multiplies per token instead of four (`vpdpbusd` twice, a pack to
/// i16, one `vpdpwssd`): on the development VM's Xeon (`moesim quant bench --shapes 4096x14336
/// --formats q4_k --kernels int8 --batches 1,32`, three alternating rounds against the
/// four-multiply body) batch 32 ran 1-4 % faster in every round, batch 1 from 1 % slower to 10 %
/// faster. (A 512-bit body with a third as many multiplies ran 10 % slower at batch 32: these
/// CPUs run 512-bit integer multiplies on one port, 256-bit ones on two.)
///
/// # Safety
/// Inlined only into a function with AVX2, FMA and F16C enabled (and AVX-512 VNNI and VL when
/// `VNNI`), on a CPU that has them.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn int_tile<const N: usize, const VNNI: bool>(
    row: &[u8],
    acts: &[super::act::ActRef<'_>; N],
) -> [f32; N] {
    use super::avx2::{
        broadcast_i16_lane, dot_u8_i8_acc, f16x2_at, hsum_each, load32_at, madd_i16_acc,
        prefetch_at, u32_at,
    };
    use std::arch::x86_64::*;
    let nb = row.len() / BYTES;
    let super::act::TilePtrs { qs, ds, bsums } = super::act::TilePtrs::new(acts, nb, BLOCK, true);
    let mut acc = unsafe { [_mm256_setzero_ps(); N] };
    let m4 = unsafe { _mm256_set1_epi8(0x0f) };
    // The byte-shuffle index that copies i16 lane k of a 128-bit lane.
    let pair = |k: usize| (2 * k as i16) | ((2 * k as i16 + 1) << 8);
    for i in 0..nb {
        // SAFETY: block i of the row is in bounds (i < nb), and every activation holds nb
        // super-blocks of codes, scales and sums (checked above).
        unsafe {
            let b = row.as_ptr().add(i * BYTES);
            prefetch_at::<PREFETCH_AHEAD_BYTES>(b, BYTES);
            let (dw, dmin) = f16x2_at(b);
            let (w0, w1, w2) = (u32_at(b.add(4)), u32_at(b.add(8)), u32_at(b.add(12)));
            let sc_lo = w0 & 0x3f3f_3f3f;
            let sc_hi = (w2 & 0x0f0f_0f0f) | (((w0 >> 6) & 0x0303_0303) << 4);
            let mn_lo = w1 & 0x3f3f_3f3f;
            let mn_hi = ((w2 >> 4) & 0x0f0f_0f0f) | (((w1 >> 6) & 0x0303_0303) << 4);
            let sm = _mm256_cvtepu8_epi16(_mm_setr_epi32(sc_lo as i32, sc_hi as i32, 0, 0));
            let scales = _mm256_permute4x64_epi64::<0x44>(sm);
            // Each min twice, against the activation's two sums of 16 in its sub-block.
            let mn = _mm_setr_epi32(mn_lo as i32, mn_hi as i32, 0, 0);
            let mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn, mn));
            let (vdw, vdmin) = (_mm256_set1_ps(dw), _mm256_set1_ps(dmin));
            let q = b.add(16);
            let mut sumi = [_mm256_setzero_si256(); N];
            for j in 0..4 {
                let bits = load32_at(q.add(32 * j));
                let lo = _mm256_and_si256(bits, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
                if VNNI {
                    // Three multiplies per 64 codes, not four: each sub-block's products
                    // summed in fours by `vpdpbusd` (at most 4 · 15 · 128 in magnitude: they
                    // fit i16), the two sub-blocks packed into one vector of i16 (per 128-bit
                    // lane four of the low nibbles' sums, then four of the high's), and one
                    // `vpdpwssd` against their scales laid out the same way.
                    let (l, h) = (pair(2 * j), pair(2 * j + 1));
                    let s = _mm256_shuffle_epi8(
                        scales,
                        _mm256_setr_epi16(l, l, l, l, h, h, h, h, l, l, l, l, h, h, h, h),
                    );
                    for t in 0..N {
                        let a = qs[t].add(BLOCK * i + 64 * j);
                        let zero = _mm256_setzero_si256();
                        let pl = dot_u8_i8_acc::<true>(zero, lo, load32_at(a));
                        let ph = dot_u8_i8_acc::<true>(zero, hi, load32_at(a.add(32)));
                        sumi[t] = madd_i16_acc::<true>(sumi[t], s, _mm256_packs_epi32(pl, ph));
                    }
                } else {
                    let sl = broadcast_i16_lane(scales, 2 * j);
                    let sh = broadcast_i16_lane(scales, 2 * j + 1);
                    for t in 0..N {
                        let a = qs[t].add(BLOCK * i + 64 * j);
                        let pl = _mm256_maddubs_epi16(lo, load32_at(a));
                        let ph = _mm256_maddubs_epi16(hi, load32_at(a.add(32)));
                        sumi[t] = madd_i16_acc::<false>(sumi[t], sl, pl);
                        sumi[t] = madd_i16_acc::<false>(sumi[t], sh, ph);
                    }
                }
            }
            for t in 0..N {
                let da = _mm256_broadcast_ss(&*ds[t].add(i));
                let m = _mm256_madd_epi16(mins, load32_at(bsums[t].add(16 * i)));
                let (s, smin) = (_mm256_mul_ps(vdw, da), _mm256_mul_ps(vdmin, da));
                acc[t] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(sumi[t]), acc[t]);
                acc[t] = _mm256_fnmadd_ps(smin, _mm256_cvtepi32_ps(m), acc[t]);
            }
        }
    }
    // SAFETY: the caller's contract.
    unsafe { hsum_each(acc) }
}

#[cfg(target_arch = "x86_64")]
super::act::int_row_kernels!(int_dot_row, tile: int_tile);
#[cfg(not(target_arch = "x86_64"))]
super::act::int_row_kernels!(int_dot_row);
