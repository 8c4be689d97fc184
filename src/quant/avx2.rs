//! AVX2 building blocks of the integer kernels (x86-64 only): unsigned-by-signed byte
//! multiply-adds (`vpmaddubsw`), widening to 32-bit sums (`vpmaddwd`), and horizontal sums.
//! Each format's kernel (`int_dot_row_avx2` in its file) is written with these; the scalar
//! `int_dot_row` beside it is the same arithmetic and runs everywhere else.
//!
//! Saturation: `vpmaddubsw` adds two `u8 · i8` products into an `i16`, which saturates past
//! 32767. Every caller keeps the unsigned side small enough: nibbles (≤ 15), 2- and 3-bit codes
//! (≤ 7), 5- and 6-bit codes (≤ 63, at most 2 · 63 · 127), or magnitudes of Q8_0 codes (≤ 128,
//! so two products reach at most 2 · 128 · 127).
#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

/// The horizontal sum of eight `f32` lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn hsum_ps(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps::<1>(v);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// 32 bytes from `p` (no alignment needed).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn load32(p: &[u8]) -> __m256i {
    assert!(p.len() >= 32);
    // SAFETY: 32 readable bytes (checked above); loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(p.as_ptr() as *const __m256i) }
}

/// 32 signed bytes from `p`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn load32_i8(p: &[i8]) -> __m256i {
    assert!(p.len() >= 32);
    // SAFETY: 32 readable bytes (checked above); loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(p.as_ptr() as *const __m256i) }
}

/// 16 bytes from `p`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn load16(p: &[u8]) -> __m128i {
    assert!(p.len() >= 16);
    // SAFETY: 16 readable bytes (checked above); loadu has no alignment requirement.
    unsafe { _mm_loadu_si128(p.as_ptr() as *const __m128i) }
}

/// Pairwise `u8 · i8` products summed into 16 `i16` lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn maddubs(u: __m256i, s: __m256i) -> __m256i {
    _mm256_maddubs_epi16(u, s)
}

/// Sixteen `i16` lanes summed pairwise into eight `i32` lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn sum_i16_pairs(v: __m256i) -> __m256i {
    _mm256_madd_epi16(v, _mm256_set1_epi16(1))
}

/// The eight-lane `i32` dot products of 32 signed bytes `a` with 32 signed bytes `b`, via
/// `|a| · (b · sign a)`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn dot_i8_i8(a: __m256i, b: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(a, a);
    let sy = _mm256_sign_epi8(b, a);
    sum_i16_pairs(maddubs(ax, sy))
}

/// 16 packed bytes split into 32 nibbles: the low nibbles in the first 16 bytes, the high in
/// the last 16.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn nibbles(b: __m128i) -> __m256i {
    let hi = _mm_srli_epi16::<4>(b);
    let both = _mm256_set_m128i(hi, b);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// A 32-bit mask spread over 32 bytes: byte j is `0xff` where bit j of `m` is set, else 0 (the
/// fifth bits of Q5_0 and Q5_1).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn bits_to_bytes(m: u32) -> __m256i {
    let v = _mm256_set1_epi32(m as i32);
    // Byte j takes byte j / 8 of m (the shuffle works within each 128-bit lane, and both lanes
    // hold m in every dword).
    let spread = _mm256_shuffle_epi8(
        v,
        _mm256_setr_epi64x(
            0,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        ),
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit)
}

/// A 16-entry table of signed levels in both 128-bit lanes, for [`lookup16`].
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn table16(levels: &[i8; 16]) -> __m256i {
    let bytes: [u8; 16] = levels.map(|v| v as u8);
    _mm256_broadcastsi128_si256(load16(&bytes))
}

/// `levels[v]` for each byte of `v` (each 0..15), `levels` from [`table16`]: the non-uniform
/// 4-bit formats' codes become their signed levels in one byte shuffle.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn lookup16(levels: __m256i, v: __m256i) -> __m256i {
    _mm256_shuffle_epi8(levels, v)
}

/// The two f16 values at `p` and `p + 2` as f32 (F16C's `vcvtph2ps`, exact). The four bytes
/// come in with one `vmovd` load, which depends on nothing before it: converting a half put
/// into an arbitrary register would tie each block's scale to whatever that register held
/// (in the kernels, an accumulator's chain of multiply-adds).
///
/// # Safety
/// `p` points at four readable bytes; the CPU has F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f16x2_at(p: *const u8) -> (f32, f32) {
    let h: __m128i;
    // SAFETY: four readable bytes at p (the caller's contract); no alignment needed. The load
    // is written out because LLVM, seeing one lane used, otherwise merges the half into a
    // live register (`vpinsrw`), which is the dependency this function exists to avoid.
    unsafe {
        std::arch::asm!(
            "vmovd {h}, dword ptr [{p}]",
            p = in(reg) p,
            h = out(xmm_reg) h,
            options(pure, readonly, nostack, preserves_flags)
        );
    }
    let v = _mm_cvtph_ps(h);
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
}

/// The little-endian `u32` at `p`.
///
/// # Safety
/// `p` points at four readable bytes.
#[inline(always)]
pub(crate) unsafe fn u32_at(p: *const u8) -> u32 {
    // SAFETY: four readable bytes at p (the caller's contract).
    u32::from_le(unsafe { std::ptr::read_unaligned(p as *const u32) })
}

/// 32 bytes at `p` (no alignment needed).
///
/// # Safety
/// `p` points at 32 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn load32_at<T>(p: *const T) -> __m256i {
    // SAFETY: 32 readable bytes at p (the caller's contract); loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// 16 bytes at `p` (no alignment needed).
///
/// # Safety
/// `p` points at 16 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn load16_at<T>(p: *const T) -> __m128i {
    // SAFETY: 16 readable bytes at p (the caller's contract); loadu has no alignment requirement.
    unsafe { _mm_loadu_si128(p as *const __m128i) }
}

/// A vector of sixteen `i16` lanes each equal to lane `k` (0..8) of a vector holding eight
/// `i16` values in both 128-bit halves: one byte shuffle, no trip through a general register.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn broadcast_i16_lane(v: __m256i, k: usize) -> __m256i {
    let pair = (2 * k as i16) | ((2 * k as i16 + 1) << 8);
    _mm256_shuffle_epi8(v, _mm256_set1_epi16(pair))
}

/// Like [`broadcast_i16_lane`], lane `lo` on the first eight `i16` lanes and `hi` on the last.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn broadcast_i16_lanes(v: __m256i, lo: usize, hi: usize) -> __m256i {
    let pair = |k: usize| (2 * k as i16) | ((2 * k as i16 + 1) << 8);
    _mm256_shuffle_epi8(
        v,
        _mm256_set_m128i(_mm_set1_epi16(pair(hi)), _mm_set1_epi16(pair(lo))),
    )
}

/// The horizontal sum of each of `N` accumulators.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum_each<const N: usize>(acc: [__m256; N]) -> [f32; N] {
    let mut out = [0.0f32; N];
    for (o, a) in out.iter_mut().zip(acc) {
        *o = hsum_ps(a);
    }
    out
}

/// `acc` plus the products of unsigned bytes `u` and signed bytes `s` summed in fours (eight
/// `i32` lanes): one `vpdpbusd` with VNNI, else `vpmaddubsw` (pairs into `i16`, which the
/// callers keep from saturating, see the module notes) and `vpmaddwd` by ones. Equal results.
///
/// # Safety
/// Inlined only into a function with AVX2 (and, when `VNNI`, AVX-512 VNNI and VL) enabled,
/// on a CPU that has them.
#[inline(always)]
pub(crate) unsafe fn dot_u8_i8_acc<const VNNI: bool>(
    acc: __m256i,
    u: __m256i,
    s: __m256i,
) -> __m256i {
    // SAFETY: the caller's contract.
    unsafe {
        if VNNI {
            _mm256_dpbusd_epi32(acc, u, s)
        } else {
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
            _mm256_add_epi32(acc, p)
        }
    }
}

/// `acc` plus the products of the `i16` lanes of `a` and `b` summed in pairs: one `vpdpwssd`
/// with VNNI, else `vpmaddwd` and an add.
///
/// # Safety
/// As [`dot_u8_i8_acc`].
#[inline(always)]
pub(crate) unsafe fn madd_i16_acc<const VNNI: bool>(
    acc: __m256i,
    a: __m256i,
    b: __m256i,
) -> __m256i {
    // SAFETY: the caller's contract.
    unsafe {
        if VNNI {
            _mm256_dpwssd_epi32(acc, a, b)
        } else {
            _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
        }
    }
}

/// How far ahead of the block being multiplied the kernels prefetch packed weights, in bytes.
/// Measured on the 2-vCPU Xeon of BENCHMARKS.md: a Q8_0 4096 × 14336 product on one core ran
/// at 7.5 G weights/s without prefetching, 11-15 at 512-1024 bytes, 20-22 at 2048 and 24 at
/// 4096 (the hardware prefetcher alone does not cover this machine's memory latency).
///
/// The K-quants prefetch nearer, each by its own `PREFETCH_AHEAD_BYTES`: Q4_K and Q3_K 1024,
/// Q6_K and Q2_K 2048. A sweep of 1024, 2048, 3072 and 4096 bytes on the same machine
/// (`moesim quant bench --shapes 4096x14336 --formats q8_0,q4_0,q4_k,q6_k,q3_k,q2_k --kernels
/// int8 --batches 1`, two rounds; BENCHMARKS.md) had the K-quants fastest at 1-2 KiB (at the
/// distances kept, against 4 KiB, on one thread and on two: Q4_K 16-28 % faster, Q6_K 8-16 %,
/// Q3_K 6-12 %, Q2_K 1-4 %), where Q8_0 on one thread ran 3-34 % slower than at 4 KiB.
pub(crate) const PREFETCH_BYTES: usize = 4096;

/// Prefetches, into L1, the `bytes`-long block that starts [`PREFETCH_BYTES`] after `b`: one
/// hint per 64-byte line. Past the end of the weights this is a hint about memory never read,
/// which the CPU drops.
#[inline(always)]
pub(crate) fn prefetch_ahead(b: *const u8, bytes: usize) {
    prefetch_at::<PREFETCH_BYTES>(b, bytes)
}

/// [`prefetch_ahead`] at `AHEAD` bytes instead of [`PREFETCH_BYTES`].
#[inline(always)]
pub(crate) fn prefetch_at<const AHEAD: usize>(b: *const u8, bytes: usize) {
    let mut off = 0;
    while off < bytes {
        // SAFETY: a prefetch never faults and reads nothing into the program; SSE is part of
        // x86-64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(AHEAD + off) as *const i8) };
        off += 64;
    }
}

/// Sixteen `i16` lanes (a super-block's 16 scales) as two vectors, each holding eight of them in
/// both 128-bit halves: the scales of the block's first 128 weights, then of its last, ready
/// for [`broadcast_i16_lanes`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn scale_halves(v: __m256i) -> [__m256i; 2] {
    [
        _mm256_permute4x64_epi64::<0x44>(v),
        _mm256_permute4x64_epi64::<0xee>(v),
    ]
}

/// The four 2-bit planes of 32 bytes (bits 0-1, 2-3, 4-5, 6-7 of each byte), each as bytes
/// 0..3: the low bits of Q2_K's and Q3_K's codes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn planes2(bits: __m256i) -> [__m256i; 4] {
    let m2 = _mm256_set1_epi8(3);
    [
        _mm256_and_si256(bits, m2),
        _mm256_and_si256(_mm256_srli_epi16::<2>(bits), m2),
        _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m2),
        _mm256_and_si256(_mm256_srli_epi16::<6>(bits), m2),
    ]
}
