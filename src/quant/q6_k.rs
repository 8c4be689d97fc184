//! ggml Q6_K: super-blocks of 256 weights, `ql: u8[128], qh: u8[64], scales: i8[16], d: f16`
//! (210 bytes, 6.5625 bpw); sixteen sub-blocks of 16 with signed 8-bit scales,
//! `x̂ = (d · sc_j) · (q − 32)`, q in 0..63. In each half h of 128 elements, element
//! `128h + 32g + l` (g = 0..3) keeps its low four bits in `ql[64h + 32(g%2) + l]` (low nibble
//! for g < 2) and its top two in bits `2g..2g+1` of `qh[32h + l]`. Quantizer: ggml's
//! `quantize_row_q6_K_ref` (each sub-block's scale from `make_qx_quants` with weights x², the
//! scales requantized to 8 bits against the one of largest magnitude).

use super::f16::{read_f16, write_f16};
use super::gemv::block_kernels;
use super::kquant::{fit_symmetric_search, nearest_int};

pub(crate) const BLOCK: usize = 256;
pub(crate) const BYTES: usize = 210;

pub(crate) fn quantize_row(x: &[f32], out: &mut [u8]) {
    let mut l = [0i8; 256];
    for (xb, yb) in x.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BYTES)) {
        let mut scales = [0.0f32; 16];
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for (ib, s) in scales.iter_mut().enumerate() {
            *s = fit_symmetric_search(&xb[16 * ib..16 * ib + 16], 32, &mut l[16 * ib..]);
            if s.abs() > max_abs_scale {
                max_abs_scale = s.abs();
                max_scale = *s;
            }
        }
        yb.iter_mut().for_each(|b| *b = 0);
        if max_abs_scale < 1e-15 {
            continue;
        }
        let iscale = -128.0f32 / max_scale;
        write_f16(&mut yb[208..210], 1.0 / iscale);
        for (ib, &s) in scales.iter().enumerate() {
            // ggml: MIN(127, nearest_int(..)) stored in an int8_t.
            yb[192 + ib] = nearest_int(iscale * s).min(127) as i8 as u8;
        }
        let d_all = read_f16(&yb[208..210]);
        for j in 0..16 {
            let d = d_all * (yb[192 + j] as i8) as f32;
            if d == 0.0 {
                continue;
            }
            for i in 0..16 {
                let q = nearest_int(xb[16 * j + i] / d).clamp(-32, 31);
                l[16 * j + i] = (q + 32) as i8;
            }
        }
        let (ql, rest) = yb.split_at_mut(128);
        let qh = &mut rest[..64];
        for h in 0..2 {
            for i in 0..32 {
                let e = |g: usize| l[128 * h + 32 * g + i] as u8;
                ql[64 * h + i] = (e(0) & 0xf) | ((e(2) & 0xf) << 4);
                ql[64 * h + 32 + i] = (e(1) & 0xf) | ((e(3) & 0xf) << 4);
                qh[32 * h + i] =
                    (e(0) >> 4) | ((e(1) >> 4) << 2) | ((e(2) >> 4) << 4) | ((e(3) >> 4) << 6);
            }
        }
    }
}

#[inline(always)]
fn dequantize_block(yb: &[u8], ob: &mut [f32; BLOCK]) {
    let (ql, qh) = (&yb[0..128], &yb[128..192]);
    let d = read_f16(&yb[208..210]);
    let mut dj = [0.0f32; 16];
    for (j, v) in dj.iter_mut().enumerate() {
        *v = d * (yb[192 + j] as i8) as f32;
    }
    for h in 0..2 {
        for g in 0..4 {
            let (lo, shift) = (&ql[64 * h + 32 * (g % 2)..], 4 * (g / 2));
            for i in 0..32 {
                let q = ((lo[i] >> shift) & 0xf) | (((qh[32 * h + i] >> (2 * g)) & 3) << 4);
                let e = 128 * h + 32 * g + i;
                ob[e] = dj[e / 16] * (q as i32 - 32) as f32;
            }
        }
    }
}

block_kernels!(dequantize_block);

/// The integer kernel: Q6_K weights against the activation in Q8_K super-blocks. The codes stay
/// unsigned (0..63) and `32 · Σ a` per sub-block of 16 comes off through the activation's sums,
/// `Σ sc · (q − 32) · a = Σ sc · q · a − 32 · Σ sc · bsum` (ggml's arithmetic).
#[inline(always)]
fn int_dot_row(row: &[u8], qs: &[i8], d: &[f32], bsums: &[i16]) -> f32 {
    let mut acc = 0.0f32;
    for (b, (yb, &da)) in row.chunks_exact(BYTES).zip(d).enumerate() {
        let dw = read_f16(&yb[208..210]) * da;
        let (ql, qh, sc) = (&yb[0..128], &yb[128..192], &yb[192..208]);
        let a = &qs[BLOCK * b..BLOCK * b + BLOCK];
        let bs = &bsums[16 * b..16 * b + 16];
        let mut sumi = 0i32;
        for h in 0..2 {
            for g in 0..4 {
                let (lo, shift) = (&ql[64 * h + 32 * (g % 2)..], 4 * (g / 2));
                let mut v = [0u8; 32];
                for i in 0..32 {
                    v[i] = ((lo[i] >> shift) & 0xf) | (((qh[32 * h + i] >> (2 * g)) & 3) << 4);
                }
                let (e, k) = (128 * h + 32 * g, 8 * h + 2 * g);
                sumi += (sc[k] as i8) as i32 * super::act::dot16_u8_i8(&v[..16], &a[e..e + 16])
                    + (sc[k + 1] as i8) as i32
                        * super::act::dot16_u8_i8(&v[16..], &a[e + 16..e + 32]);
            }
        }
        let corr: i32 = sc
            .iter()
            .zip(bs)
            .map(|(&s, &b)| (s as i8) as i32 * b as i32)
            .sum();
        acc += dw * (sumi - 32 * corr) as f32;
    }
    acc
}

/// How far ahead the x86 tile prefetches the packed weights, in bytes: nearer than
/// [`PREFETCH_BYTES`](super::avx2::PREFETCH_BYTES), as measured there.
#[cfg(target_arch = "x86_64")]
const PREFETCH_AHEAD_BYTES: usize = 2048;

/// [`int_dot_row`] on x86 over a tile of `N` tokens: each super-block's 6-bit codes (low
/// nibble plane and 2-bit high plane) and its scales are built once, then multiplied with every
/// token's codes; the codes are stored offset by 32, which comes off through the activation's
/// sums per 16.
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
        broadcast_i16_lanes, f16x2_at, hsum_each, load16_at, load32_at, madd_i16_acc, prefetch_at,
        scale_halves,
    };
    use std::arch::x86_64::*;
    let nb = row.len() / BYTES;
    let super::act::TilePtrs { qs, ds, bsums } = super::act::TilePtrs::new(acts, nb, BLOCK, true);
    let mut acc = unsafe { [_mm256_setzero_ps(); N] };
    let (m4, m2) = unsafe { (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(3)) };
    for i in 0..nb {
        // SAFETY: block i of the row is in bounds (i < nb), and every activation holds nb
        // super-blocks of codes, scales and sums (checked above).
        unsafe {
            let b = row.as_ptr().add(i * BYTES);
            prefetch_at::<PREFETCH_AHEAD_BYTES>(b, BYTES);
            // d is the last two bytes of the block: read with the two before it.
            let (_, dw) = f16x2_at(b.add(206));
            let scales = _mm256_cvtepi8_epi16(load16_at(b.add(192)));
            let mut sumi = [_mm256_setzero_si256(); N];
            for t in 0..N {
                // The offset of 32: 32 · Σ_k scale_k · (sum of the 16 codes of sub-block k).
                let corr = _mm256_madd_epi16(scales, load32_at(bsums[t].add(16 * i)));
                sumi[t] = _mm256_sub_epi32(sumi[t], _mm256_slli_epi32::<5>(corr));
            }
            // The eight scales of each half in both 128-bit lanes.
            let halves = scale_halves(scales);
            for (h, &half) in halves.iter().enumerate() {
                let l0 = load32_at(b.add(64 * h));
                let l1 = load32_at(b.add(64 * h + 32));
                let hb = load32_at(b.add(128 + 32 * h));
                let nibs = [
                    _mm256_and_si256(l0, m4),
                    _mm256_and_si256(l1, m4),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(l0), m4),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(l1), m4),
                ];
                let highs = [
                    _mm256_slli_epi16::<4>(_mm256_and_si256(hb, m2)),
                    _mm256_slli_epi16::<2>(_mm256_and_si256(hb, _mm256_set1_epi8(0x0c))),
                    _mm256_and_si256(hb, _mm256_set1_epi8(0x30)),
                    _mm256_srli_epi16::<2>(_mm256_and_si256(hb, _mm256_set1_epi8(0xc0u8 as i8))),
                ];
                for g in 0..4 {
                    let codes = _mm256_or_si256(nibs[g], highs[g]);
                    // Scale 2g of the half on the first sixteen weights, 2g + 1 on the last.
                    let s = broadcast_i16_lanes(half, 2 * g, 2 * g + 1);
                    for t in 0..N {
                        let a = load32_at(qs[t].add(BLOCK * i + 128 * h + 32 * g));
                        let p = _mm256_maddubs_epi16(codes, a);
                        sumi[t] = madd_i16_acc::<VNNI>(sumi[t], p, s);
                    }
                }
            }
            for t in 0..N {
                let s = _mm256_mul_ps(_mm256_set1_ps(dw), _mm256_broadcast_ss(&*ds[t].add(i)));
                acc[t] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(sumi[t]), acc[t]);
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
