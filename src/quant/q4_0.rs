//! ggml Q4_0: blocks of 32 weights, `d: f16, qs: u8[16]` (18 bytes, 4.5 bpw). Byte j holds
//! element j in its low nibble and element j + 16 in its high nibble.
//! Quantize: `d = m / −8` with m the signed value of largest magnitude, codes
//! `min(15, trunc(x / d + 8.5))` (ggml's `quantize_row_q4_0_ref`); dequantize `(q − 8) · d`.

use super::f16::{read_f16, write_f16};
use super::gemv::row_kernels;

pub(crate) const BLOCK: usize = 32;
pub(crate) const BYTES: usize = 18;

pub(crate) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BYTES)) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in xb {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(yb, d);
        for j in 0..16 {
            // (int8_t) truncates toward zero; the value is ≥ 0.5 − 8 + 8 here, so it never wraps.
            let q0 = ((xb[j] * id + 8.5) as i8).min(15) as u8;
            let q1 = ((xb[16 + j] * id + 8.5) as i8).min(15) as u8;
            yb[2 + j] = q0 | (q1 << 4);
        }
    }
}

pub(crate) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (yb, ob) in b.chunks_exact(BYTES).zip(out.chunks_exact_mut(BLOCK)) {
        let d = read_f16(yb);
        for j in 0..16 {
            ob[j] = ((yb[2 + j] & 15) as i32 - 8) as f32 * d;
            ob[16 + j] = ((yb[2 + j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

#[inline(always)]
fn dot_row(row: &[u8], x: &[f32], _aux: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    for (yb, xb) in row.chunks_exact(BYTES).zip(x.chunks_exact(BLOCK)) {
        let d = read_f16(yb);
        let qs = &yb[2..18];
        let mut t = [0.0f32; 16];
        for j in 0..16 {
            let lo = (qs[j] & 15) as i32 - 8;
            let hi = (qs[j] >> 4) as i32 - 8;
            t[j] = lo as f32 * xb[j] + hi as f32 * xb[16 + j];
        }
        for j in 0..16 {
            acc[j] += d * t[j];
        }
    }
    acc.iter().sum()
}

row_kernels!(dot_row);

/// The integer kernel: Q4_0 weights against the activation in Q8_0 blocks,
/// `Σ (q − 8) · a = Σ q · a − 8 · Σ a`.
#[inline(always)]
fn int_dot_row(row: &[u8], qs: &[i8], d: &[f32], _bsums: &[i16]) -> f32 {
    let mut acc = 0.0f32;
    for ((wb, ab), &da) in row.chunks_exact(BYTES).zip(qs.chunks_exact(BLOCK)).zip(d) {
        let q = &wb[2..18];
        let mut nib = [0u8; 32];
        for j in 0..16 {
            nib[j] = q[j] & 15;
            nib[16 + j] = q[j] >> 4;
        }
        let sumi = super::act::dot32_u8_i8(&nib, ab) - 8 * super::act::sum32_i8(ab);
        acc += read_f16(wb) * da * sumi as f32;
    }
    acc
}

/// [`int_dot_row`] on x86 over a tile of `N` tokens: each block's nibbles are unpacked once
/// and multiplied, unsigned, with every token's codes; the offset of 8 comes from the
/// activation's sums per 16.
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
        dot_u8_i8_acc, f16x2_at, hsum_each, load16_at, load32_at, nibbles, prefetch_ahead,
    };
    use std::arch::x86_64::*;
    let nb = row.len() / BYTES;
    let super::act::TilePtrs { qs, ds, bsums } = super::act::TilePtrs::new(acts, nb, BLOCK, true);
    // Two accumulators per token, even and odd blocks: one fused multiply-add per 32 weights
    // would otherwise wait on the last one's latency.
    let mut acc = unsafe { [[_mm256_setzero_ps(); N]; 2] };
    let minus_eight = unsafe { _mm_set1_epi16(-8) };
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
                // The nibbles unsigned (0..15) against the signed codes; the offset of 8 comes
                // off as −8 · (the block's two sums of 16), started in the accumulator's lane 0.
                let nib = nibbles(load16_at(b.add(2)));
                for t in 0..N {
                    let sums = _mm_loadu_si32(bsums[t].add(2 * i) as *const u8);
                    let offset = _mm256_zextsi128_si256(_mm_madd_epi16(sums, minus_eight));
                    let a = load32_at(qs[t].add(BLOCK * i));
                    let p = dot_u8_i8_acc::<VNNI>(offset, nib, a);
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
