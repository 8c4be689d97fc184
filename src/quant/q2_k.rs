//! ggml Q2_K: super-blocks of 256 weights, `scales: u8[16], qs: u8[64], d: f16, dmin: f16`
//! (84 bytes, 2.625 bpw); sixteen sub-blocks of 16, each with a 4-bit scale (low nibble) and
//! min (high nibble), `x̂ = (d · sc_j) · q − dmin · m_j`, q in 0..3, codes packed as Q3_K's low
//! bits. Quantizer: ggml's `quantize_row_q2_K_ref` (weights |x|, 16 candidate scales from
//! −0.5 in steps of 0.1, absolute-error criterion, 4-bit scales and mins, requantization).

use super::f16::{read_f16, write_f16};
use super::gemv::row_kernels;
use super::kquant::{fit_scale_min, nearest_int, pack_2bit};

pub(crate) const BLOCK: usize = 256;
pub(crate) const BYTES: usize = 84;
/// Activation sums per 16 elements.
pub(crate) const AUX_GROUP: usize = 16;

pub(crate) fn quantize_row(x: &[f32], out: &mut [u8]) {
    let mut l = [0u8; 256];
    let mut laux = [0u8; 16];
    let mut weights = [0.0f32; 16];
    for (xb, yb) in x.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BYTES)) {
        let mut scales = [0.0f32; 16];
        let mut mins = [0.0f32; 16];
        let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
        for j in 0..16 {
            let sub = &xb[16 * j..16 * j + 16];
            for (w, v) in weights.iter_mut().zip(sub) {
                *w = v.abs();
            }
            let (s, m) = fit_scale_min(
                sub,
                &weights,
                3,
                &mut l[16 * j..16 * j + 16],
                &mut laux,
                -0.5,
                0.1,
                15,
                true,
            );
            scales[j] = s;
            mins[j] = m;
            max_scale = max_scale.max(s);
            max_min = max_min.max(m);
        }
        let sc = &mut yb[0..16];
        if max_scale > 0.0 {
            let iscale = 15.0 / max_scale;
            for j in 0..16 {
                sc[j] = nearest_int(iscale * scales[j]) as u8;
            }
        } else {
            sc.iter_mut().for_each(|b| *b = 0);
        }
        if max_min > 0.0 {
            let iscale = 15.0 / max_min;
            for j in 0..16 {
                sc[j] |= (nearest_int(iscale * mins[j]) as u8) << 4;
            }
        }
        write_f16(
            &mut yb[80..82],
            if max_scale > 0.0 {
                max_scale / 15.0
            } else {
                0.0
            },
        );
        write_f16(
            &mut yb[82..84],
            if max_min > 0.0 { max_min / 15.0 } else { 0.0 },
        );
        let (d_all, m_all) = (read_f16(&yb[80..82]), read_f16(&yb[82..84]));
        for j in 0..16 {
            let d = d_all * (yb[j] & 0xf) as f32;
            if d == 0.0 {
                continue;
            }
            let dm = m_all * (yb[j] >> 4) as f32;
            for i in 0..16 {
                l[16 * j + i] = nearest_int((xb[16 * j + i] + dm) / d).clamp(0, 3) as u8;
            }
        }
        pack_2bit(&l, &mut yb[16..80]);
    }
}

pub(crate) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (yb, ob) in b.chunks_exact(BYTES).zip(out.chunks_exact_mut(BLOCK)) {
        let (d, min) = (read_f16(&yb[80..82]), read_f16(&yb[82..84]));
        let qs = &yb[16..80];
        for h in 0..2 {
            for j in 0..4 {
                for half in 0..2 {
                    let sc = yb[8 * h + 2 * j + half];
                    let (dl, ml) = (d * (sc & 0xf) as f32, min * (sc >> 4) as f32);
                    for i in 16 * half..16 * half + 16 {
                        let q = ((qs[32 * h + i] >> (2 * j)) & 3) as i8;
                        ob[128 * h + 32 * j + i] = dl * q as f32 - ml;
                    }
                }
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
        let (d, min) = (read_f16(&yb[80..82]), read_f16(&yb[82..84]));
        let qs = &yb[16..80];
        let sums = &aux[16 * b..16 * b + 16];
        for (j, &sc) in yb[..16].iter().enumerate() {
            mins += min * (sc >> 4) as f32 * sums[j];
        }
        for h in 0..2 {
            for j in 0..4 {
                let d0 = d * (yb[8 * h + 2 * j] & 0xf) as f32;
                let d1 = d * (yb[8 * h + 2 * j + 1] & 0xf) as f32;
                let xs = &xb[128 * h + 32 * j..128 * h + 32 * j + 32];
                let q = &qs[32 * h..32 * h + 32];
                for i in 0..32 {
                    let v = ((q[i] >> (2 * j)) & 3) as f32;
                    let dl = if i < 16 { d0 } else { d1 };
                    acc[i] += dl * (v * xs[i]);
                }
            }
        }
    }
    acc.iter().sum::<f32>() - mins
}

row_kernels!(dot_row);

/// `Σ_j m_j · Σ a` over the sixteen sub-blocks: the minimum terms of a super-block from its
/// 4-bit mins (high nibbles of the scales) and the activation's sums per 16.
#[inline(always)]
fn mins_dot(sc: &[u8], bs: &[i16]) -> i32 {
    sc[..16]
        .iter()
        .zip(&bs[..16])
        .map(|(&s, &b)| (s >> 4) as i32 * b as i32)
        .sum()
}

/// The integer kernel: Q2_K weights against the activation in Q8_K super-blocks; the minimum
/// terms come from the activation's sums per 16.
#[inline(always)]
fn int_dot_row(row: &[u8], qs: &[i8], d: &[f32], bsums: &[i16]) -> f32 {
    let mut acc = 0.0f32;
    for (b, (yb, &da)) in row.chunks_exact(BYTES).zip(d).enumerate() {
        let (dw, dmin) = (read_f16(&yb[80..82]) * da, read_f16(&yb[82..84]) * da);
        let sc = &yb[..16];
        let q = &yb[16..80];
        let a = &qs[BLOCK * b..BLOCK * b + BLOCK];
        let bs = &bsums[16 * b..16 * b + 16];
        let mut sumi = 0i32;
        for h in 0..2 {
            let qh = &q[32 * h..32 * h + 32];
            for j in 0..4 {
                let mut v = [0u8; 32];
                for i in 0..32 {
                    v[i] = (qh[i] >> (2 * j)) & 3;
                }
                let e = 128 * h + 32 * j;
                sumi += (sc[8 * h + 2 * j] & 0xf) as i32
                    * super::act::dot16_u8_i8(&v[..16], &a[e..e + 16])
                    + (sc[8 * h + 2 * j + 1] & 0xf) as i32
                        * super::act::dot16_u8_i8(&v[16..], &a[e + 16..e + 32]);
            }
        }
        acc += dw * sumi as f32 - dmin * mins_dot(sc, bs) as f32;
    }
    acc
}

/// How far ahead the x86 tile prefetches the packed weights, in bytes: nearer than
/// [`PREFETCH_BYTES`](super::avx2::PREFETCH_BYTES), as measured there.
#[cfg(target_arch = "x86_64")]
const PREFETCH_AHEAD_BYTES: usize = 2048;

/// [`int_dot_row`] on x86 over a tile of `N` tokens: each super-block's 2-bit planes are
/// split and its scales spread once, then multiplied with every token's codes; the mins' term
/// is one multiply-add with the activation's sums per 16.
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
        broadcast_i16_lanes, f16x2_at, hsum_each, load16_at, load32_at, madd_i16_acc, planes2,
        prefetch_at, scale_halves,
    };
    use std::arch::x86_64::*;
    let nb = row.len() / BYTES;
    let super::act::TilePtrs { qs, ds, bsums } = super::act::TilePtrs::new(acts, nb, BLOCK, true);
    let mut acc = unsafe { [_mm256_setzero_ps(); N] };
    let m4 = unsafe { _mm_set1_epi8(0x0f) };
    for i in 0..nb {
        // SAFETY: block i of the row is in bounds (i < nb), and every activation holds nb
        // super-blocks of codes, scales and sums (checked above).
        unsafe {
            let b = row.as_ptr().add(i * BYTES);
            prefetch_at::<PREFETCH_AHEAD_BYTES>(b, BYTES);
            let (dw, dmin) = f16x2_at(b.add(80));
            let (vdw, vdmin) = (_mm256_set1_ps(dw), _mm256_set1_ps(dmin));
            let sc = load16_at(b);
            let scales = _mm256_cvtepu8_epi16(_mm_and_si128(sc, m4));
            let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(sc), m4));
            let halves = scale_halves(scales);
            let mut sumi = [_mm256_setzero_si256(); N];
            for (h, &half) in halves.iter().enumerate() {
                let bits = load32_at(b.add(16 + 32 * h));
                let planes = planes2(bits);
                for (j, &codes) in planes.iter().enumerate() {
                    let s = broadcast_i16_lanes(half, 2 * j, 2 * j + 1);
                    for t in 0..N {
                        let a = load32_at(qs[t].add(BLOCK * i + 128 * h + 32 * j));
                        let p = _mm256_maddubs_epi16(codes, a);
                        sumi[t] = madd_i16_acc::<VNNI>(sumi[t], p, s);
                    }
                }
            }
            for t in 0..N {
                let da = _mm256_broadcast_ss(&*ds[t].add(i));
                let m = _mm256_madd_epi16(mins, load32_at(bsums[t].add(16 * i)));
                acc[t] =
                    _mm256_fmadd_ps(_mm256_mul_ps(vdw, da), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
                acc[t] = _mm256_fnmadd_ps(_mm256_mul_ps(vdmin, da), _mm256_cvtepi32_ps(m), acc[t]);
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
