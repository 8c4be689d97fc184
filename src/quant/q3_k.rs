//! ggml Q3_K: super-blocks of 256 weights, `hmask: u8[32], qs: u8[64], scales: u8[12], d: f16`
//! (110 bytes, 3.4375 bpw); sixteen sub-blocks of 16 with 6-bit signed scales,
//! `x̂ = d · (sc_j − 32) · q`, q in −4..3: the two low bits from `qs`, minus 4 unless the
//! element's bit in `hmask` is set. Quantizer: ggml's `quantize_row_q3_K_ref` (symmetric
//! RMSE fit per sub-block, 6-bit scales against the largest, division-based requantization).

use super::f16::{read_f16, write_f16};
use super::gemv::row_kernels;
use super::kquant::{fit_symmetric, nearest_int, pack_2bit};

pub(crate) const BLOCK: usize = 256;
pub(crate) const BYTES: usize = 110;

/// The sixteen 6-bit scales of a block (before subtracting 32).
#[inline(always)]
fn unpack_scales(s: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 { s[j] & 0xf } else { s[j - 8] >> 4 };
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = (low | (high << 4)) as i8;
    }
    out
}

pub(crate) fn quantize_row(x: &[f32], out: &mut [u8]) {
    let mut l = [0i8; 256];
    for (xb, yb) in x.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BYTES)) {
        let mut scales = [0.0f32; 16];
        let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
        for j in 0..16 {
            scales[j] = fit_symmetric(&xb[16 * j..16 * j + 16], 4, &mut l[16 * j..16 * j + 16]);
            if scales[j].abs() > amax {
                amax = scales[j].abs();
                max_scale = scales[j];
            }
        }
        yb.iter_mut().for_each(|b| *b = 0);
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            let s = &mut yb[96..108];
            for j in 0..16 {
                let mut v = (nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32;
                if j < 8 {
                    s[j] = (v & 0xf) as u8;
                } else {
                    s[j - 8] |= ((v & 0xf) as u8) << 4;
                }
                v >>= 4;
                s[j % 4 + 8] |= (v as u8) << (2 * (j / 4));
            }
            write_f16(&mut yb[108..110], 1.0 / iscale);
        } else {
            write_f16(&mut yb[108..110], 0.0);
        }
        let d_all = read_f16(&yb[108..110]);
        let sc = unpack_scales(&yb[96..108]);
        for j in 0..16 {
            let d = d_all * (sc[j] - 32) as f32;
            if d == 0.0 {
                continue;
            }
            for i in 0..16 {
                l[16 * j + i] = (nearest_int(xb[16 * j + i] / d).clamp(-4, 3) + 4) as i8;
            }
        }
        // High bits: element e in hmask[e % 32], bit e / 32; then the low two bits.
        let mut codes = [0u8; 256];
        for (e, c) in codes.iter_mut().enumerate() {
            let mut v = l[e] as u8;
            if v > 3 {
                yb[e % 32] |= 1 << (e / 32);
                v -= 4;
            }
            *c = v;
        }
        pack_2bit(&codes, &mut yb[32..96]);
    }
}

pub(crate) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (yb, ob) in b.chunks_exact(BYTES).zip(out.chunks_exact_mut(BLOCK)) {
        let d_all = read_f16(&yb[108..110]);
        let sc = unpack_scales(&yb[96..108]);
        let (hm, qs) = (&yb[0..32], &yb[32..96]);
        for h in 0..2 {
            for j in 0..4 {
                let bit = 1u8 << (4 * h + j);
                for half in 0..2 {
                    let dl = d_all * (sc[8 * h + 2 * j + half] - 32) as f32;
                    for i in 16 * half..16 * half + 16 {
                        let low = ((qs[32 * h + i] >> (2 * j)) & 3) as i8;
                        let q = low - if hm[i] & bit != 0 { 0 } else { 4 };
                        ob[128 * h + 32 * j + i] = dl * q as f32;
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn dot_row(row: &[u8], x: &[f32], _aux: &[f32]) -> f32 {
    let mut acc = [0.0f32; 32];
    for (yb, xb) in row.chunks_exact(BYTES).zip(x.chunks_exact(BLOCK)) {
        let d_all = read_f16(&yb[108..110]);
        let sc = unpack_scales(&yb[96..108]);
        let (hm, qs) = (&yb[0..32], &yb[32..96]);
        for h in 0..2 {
            for j in 0..4 {
                let bit = 1u8 << (4 * h + j);
                let d0 = d_all * (sc[8 * h + 2 * j] - 32) as f32;
                let d1 = d_all * (sc[8 * h + 2 * j + 1] - 32) as f32;
                let xs = &xb[128 * h + 32 * j..128 * h + 32 * j + 32];
                let q = &qs[32 * h..32 * h + 32];
                for i in 0..32 {
                    let low = ((q[i] >> (2 * j)) & 3) as i32;
                    let v = low - if hm[i] & bit != 0 { 0 } else { 4 };
                    let dl = if i < 16 { d0 } else { d1 };
                    acc[i] += dl * (v as f32 * xs[i]);
                }
            }
        }
    }
    acc.iter().sum()
}

row_kernels!(dot_row);

/// The integer kernel: Q3_K weights (codes −4..3) against the activation in Q8_K super-blocks.
#[inline(always)]
fn int_dot_row(row: &[u8], qs: &[i8], d: &[f32], _bsums: &[i16]) -> f32 {
    let mut acc = 0.0f32;
    for (b, (yb, &da)) in row.chunks_exact(BYTES).zip(d).enumerate() {
        let dw = read_f16(&yb[108..110]) * da;
        let sc = unpack_scales(&yb[96..108]);
        let (hm, q) = (&yb[0..32], &yb[32..96]);
        let a = &qs[BLOCK * b..BLOCK * b + BLOCK];
        let mut sumi = 0i32;
        for h in 0..2 {
            let qh = &q[32 * h..32 * h + 32];
            for j in 0..4 {
                let bit = 1u8 << (4 * h + j);
                let mut v = [0i8; 32];
                for i in 0..32 {
                    let low = ((qh[i] >> (2 * j)) & 3) as i8;
                    v[i] = low - if hm[i] & bit != 0 { 0 } else { 4 };
                }
                let e = 128 * h + 32 * j;
                sumi += (sc[8 * h + 2 * j] as i32 - 32)
                    * super::act::dot16_i8_i8(&v[..16], &a[e..e + 16])
                    + (sc[8 * h + 2 * j + 1] as i32 - 32)
                        * super::act::dot16_i8_i8(&v[16..], &a[e + 16..e + 32]);
            }
        }
        acc += dw * sumi as f32;
    }
    acc
}

/// How far ahead the x86 tile prefetches the packed weights, in bytes: nearer than
/// [`PREFETCH_BYTES`](super::avx2::PREFETCH_BYTES), as measured there.
#[cfg(target_arch = "x86_64")]
const PREFETCH_AHEAD_BYTES: usize = 1024;

/// [`int_dot_row`] on x86 over a tile of `N` tokens: each super-block's 3-bit codes (two
/// low bits from a plane, the third from the mask) and its signed 6-bit scales are built once,
/// then multiplied with every token's codes; the codes are stored offset by 4, which comes off
/// through the activation's sums per 16.
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
        broadcast_i16_lanes, f16x2_at, hsum_each, load32_at, madd_i16_acc, planes2, prefetch_at,
        scale_halves, u32_at,
    };
    use std::arch::x86_64::*;
    let nb = row.len() / BYTES;
    let super::act::TilePtrs { qs, ds, bsums } = super::act::TilePtrs::new(acts, nb, BLOCK, true);
    let mut acc = unsafe { [_mm256_setzero_ps(); N] };
    let four = unsafe { _mm256_set1_epi8(4) };
    for i in 0..nb {
        // SAFETY: block i of the row is in bounds (i < nb), and every activation holds nb
        // super-blocks of codes, scales and sums (checked above).
        unsafe {
            let b = row.as_ptr().add(i * BYTES);
            prefetch_at::<PREFETCH_AHEAD_BYTES>(b, BYTES);
            // d is the last two bytes of the block: read with the two before it.
            let (_, dw) = f16x2_at(b.add(106));
            // Scale k: low nibble from byte k % 8 (high nibble for k ≥ 8), two high bits from
            // byte 8 + k % 4 at bit 2 · (k / 4).
            let (w0, w1, w2) = (u32_at(b.add(96)), u32_at(b.add(100)), u32_at(b.add(104)));
            let lo = 0x0f0f_0f0f;
            let hi = |s: u32| ((w2 >> s) & 0x0303_0303) << 4;
            let sc = _mm256_sub_epi16(
                _mm256_cvtepu8_epi16(_mm_setr_epi32(
                    ((w0 & lo) | hi(0)) as i32,
                    ((w1 & lo) | hi(2)) as i32,
                    (((w0 >> 4) & lo) | hi(4)) as i32,
                    (((w1 >> 4) & lo) | hi(6)) as i32,
                )),
                _mm256_set1_epi16(32),
            );
            let halves = scale_halves(sc);
            let hm = load32_at(b);
            let mut sumi = [_mm256_setzero_si256(); N];
            for t in 0..N {
                // The offset of 4: 4 · Σ_k scale_k · (sum of the 16 codes of sub-block k).
                let corr = _mm256_madd_epi16(sc, load32_at(bsums[t].add(16 * i)));
                sumi[t] = _mm256_sub_epi32(sumi[t], _mm256_slli_epi32::<2>(corr));
            }
            for (h, &half) in halves.iter().enumerate() {
                let bits = load32_at(b.add(32 + 32 * h));
                let planes = planes2(bits);
                for (j, &plane) in planes.iter().enumerate() {
                    let bit = _mm256_set1_epi8((1u8 << (4 * h + j)) as i8);
                    let high =
                        _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit), four);
                    let codes = _mm256_or_si256(plane, high);
                    let s = broadcast_i16_lanes(half, 2 * j, 2 * j + 1);
                    for t in 0..N {
                        let a = load32_at(qs[t].add(BLOCK * i + 128 * h + 32 * j));
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
