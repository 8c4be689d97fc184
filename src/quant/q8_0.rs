//! ggml Q8_0: blocks of 32 weights, `d: f16, qs: i8[32]` (34 bytes, 8.5 bpw).
//! Quantize: `d = amax / 127`, codes `roundf(x / d)` with the f32 reciprocal (ggml's
//! `quantize_row_q8_0_ref`); dequantize `q · d` with d read back from f16.

use super::f16::{read_f16, write_f16};
use super::gemv::row_kernels;

pub(crate) const BLOCK: usize = 32;
pub(crate) const BYTES: usize = 34;

pub(crate) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BYTES)) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(yb, d);
        for (q, &v) in yb[2..].iter_mut().zip(xb) {
            *q = ((v * id).round() as i8) as u8;
        }
    }
}

pub(crate) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (yb, ob) in b.chunks_exact(BYTES).zip(out.chunks_exact_mut(BLOCK)) {
        let d = read_f16(yb);
        for (o, &q) in ob.iter_mut().zip(&yb[2..]) {
            *o = (q as i8) as f32 * d;
        }
    }
}

#[inline(always)]
fn dot_row(row: &[u8], x: &[f32], _aux: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    for (yb, xb) in row.chunks_exact(BYTES).zip(x.chunks_exact(BLOCK)) {
        let d = read_f16(yb);
        let q = &yb[2..34];
        let mut t = [0.0f32; 16];
        for j in 0..16 {
            t[j] = (q[j] as i8) as f32 * xb[j] + (q[16 + j] as i8) as f32 * xb[16 + j];
        }
        for j in 0..16 {
            acc[j] += d * t[j];
        }
    }
    acc.iter().sum()
}

row_kernels!(dot_row);

/// The integer kernel: Q8_0 weights against the activation in Q8_0 blocks.
#[inline(always)]
fn int_dot_row(row: &[u8], qs: &[i8], d: &[f32], _bsums: &[i16]) -> f32 {
    let mut acc = 0.0f32;
    for ((wb, ab), &da) in row.chunks_exact(BYTES).zip(qs.chunks_exact(BLOCK)).zip(d) {
        let sumi = super::act::dot32_i8_i8(&wb[2..34], ab);
        acc += read_f16(wb) * da * sumi as f32;
    }
    acc
}

/// [`int_dot_row`] on x86 over a tile of `N` tokens: each block's magnitudes are taken once
/// and multiplied with every token's codes (signs moved onto the activation).
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
    use super::avx2::{dot_u8_i8_acc, f16x2_at, hsum_each, load32_at, prefetch_ahead};
    use std::arch::x86_64::*;
    let nb = row.len() / BYTES;
    let super::act::TilePtrs { qs, ds, bsums: _ } =
        super::act::TilePtrs::new(acts, nb, BLOCK, false);
    // Two accumulators per token, even and odd blocks: one fused multiply-add per 32 weights
    // would otherwise wait on the last one's latency.
    let mut acc = unsafe { [[_mm256_setzero_ps(); N]; 2] };

    // Blocks in pairs, k = 0, 1 each into its own accumulator (indices LLVM resolves, so
    // the accumulators stay in registers).
    for pair in 0..nb.div_ceil(2) {
        // Indexed by k on purpose: constant indices after unrolling keep acc in registers.
        #[allow(clippy::needless_range_loop)]
        for k in 0..2 {
            let i = 2 * pair + k;
            if i == nb {
                break;
            }
            // SAFETY: block i of the row is in bounds (i < nb), and every activation holds nb
            // blocks of codes and scales (checked above).
            unsafe {
                let b = row.as_ptr().add(i * BYTES);
                prefetch_ahead(b, BYTES);
                let (dw, _) = f16x2_at(b);
                let vdw = _mm256_set1_ps(dw);
                let w = load32_at(b.add(2));
                let mag = _mm256_sign_epi8(w, w);
                for t in 0..N {
                    let a = _mm256_sign_epi8(load32_at(qs[t].add(BLOCK * i)), w);
                    let p = dot_u8_i8_acc::<VNNI>(_mm256_setzero_si256(), mag, a);
                    let s = _mm256_mul_ps(vdw, _mm256_broadcast_ss(&*ds[t].add(i)));
                    acc[k][t] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(p), acc[k][t]);
                }
            }
        }
    }
    let [even, odd] = acc;
    let mut sum = even;
    for (s, o) in sum.iter_mut().zip(odd) {
        // SAFETY: the caller's contract.
        *s = unsafe { _mm256_add_ps(*s, o) };
    }
    // SAFETY: the caller's contract.
    unsafe { hsum_each(sum) }
}

#[cfg(target_arch = "x86_64")]
super::act::int_row_kernels!(int_dot_row, tile: int_tile);
#[cfg(not(target_arch = "x86_64"))]
super::act::int_row_kernels!(int_dot_row);
