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

/// 16 signed 16-bit values from `p`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn load16_i16(p: &[i16]) -> __m256i {
    assert!(p.len() >= 16);
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

/// `v` shifted right by `2 · j` bits in each 16-bit lane, `j` in 0..4 (the 2-bit code planes).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn plane2(v: __m256i, j: usize) -> __m256i {
    let shifted = _mm256_srl_epi16(v, _mm_cvtsi32_si128(2 * j as i32));
    _mm256_and_si256(shifted, _mm256_set1_epi8(3))
}

/// Sixteen `i16` lanes times two scales (the first eight lanes by `lo`, the last by `hi`),
/// summed pairwise into eight `i32` lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn scale_halves(v: __m256i, lo: i16, hi: i16) -> __m256i {
    _mm256_madd_epi16(v, _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo)))
}
