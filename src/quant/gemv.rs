//! Fused dequantize-dot GEMV: `y = W · x` with W packed in its format and x in f32, row by row.
//!
//! Each format writes one scalar row kernel (`dot_row`), in plain Rust shaped so that LLVM
//! vectorises it: per-lane accumulators kept across blocks, no horizontal sum per block. The
//! `row_kernels!` macro compiles that one source three times, for the baseline x86-64 target
//! (SSE2), for AVX2 + FMA and for AVX-512, and [`simd_level`] picks one at run time from the
//! CPU's features, so the binary stays portable (no `target-cpu=native`) and still uses the
//! host's vector units. `MOESIM_SIMD=baseline|avx2|avx512` forces a level (benchmarks, tests).
//! Results may differ in the last bits between levels (FMA contracts a multiply and an add);
//! on one machine they are deterministic.

use std::sync::OnceLock;

/// The instruction-set level kernels run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Baseline x86-64 (SSE2) or any non-x86 target.
    Baseline,
    /// AVX2 with FMA and F16C.
    Avx2,
    /// AVX-512 (F, BW, VL) with FMA.
    Avx512,
}

impl SimdLevel {
    /// The name used by `MOESIM_SIMD` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Baseline => "baseline",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }
}

fn detect() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            return SimdLevel::Avx512;
        }
        // F16C (half-precision scale conversion in the integer kernels) came with every AVX2
        // CPU; it is checked all the same, since a virtual machine may mask features.
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Baseline
}

/// The level in use: the best the CPU has, or `MOESIM_SIMD` if set (never above what the CPU
/// has).
pub fn simd_level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let best = detect();
        match std::env::var("MOESIM_SIMD").as_deref() {
            Ok("baseline") => SimdLevel::Baseline,
            Ok("avx2") => best.min(SimdLevel::Avx2),
            Ok("avx512") => best.min(SimdLevel::Avx512),
            _ => best,
        }
    })
}

/// The instruction set the integer (8-bit activation) kernels run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IntLevel {
    /// Portable Rust (no AVX2, or `MOESIM_SIMD=baseline`).
    Scalar,
    /// AVX2 `vpmaddubsw`/`vpmaddwd` multiply-adds.
    Avx2,
    /// The same kernels with AVX-512 VNNI's fused multiply-accumulates on 256-bit vectors
    /// (`vpdpbusd`, `vpdpwssd`): at the AVX-512 level, where the CPU has VNNI.
    Avx512Vnni,
}

impl IntLevel {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            IntLevel::Scalar => "scalar",
            IntLevel::Avx2 => "avx2",
            IntLevel::Avx512Vnni => "avx512-vnni",
        }
    }
}

/// The integer kernels' level: from [`simd_level`] (so `MOESIM_SIMD` lowers it too), with VNNI
/// where the CPU has it.
pub fn int_level() -> IntLevel {
    static LEVEL: OnceLock<IntLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| match simd_level() {
        SimdLevel::Baseline => IntLevel::Scalar,
        SimdLevel::Avx2 => IntLevel::Avx2,
        SimdLevel::Avx512 => {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512vnni") {
                return IntLevel::Avx512Vnni;
            }
            IntLevel::Avx2
        }
    })
}

/// Generates `pub(crate) fn gemv_rows(rows: &[u8], row_bytes, x, aux, y)` from a row kernel
/// `fn(row: &[u8], x: &[f32], aux: &[f32]) -> f32`, compiled for each [`SimdLevel`].
macro_rules! row_kernels {
    ($dot:path) => {
        /// `y[r] = dot(row r, x)` for every row of `rows` (`row_bytes` each).
        pub(crate) fn gemv_rows(
            rows: &[u8],
            row_bytes: usize,
            x: &[f32],
            aux: &[f32],
            y: &mut [f32],
        ) {
            #[inline(always)]
            fn body(rows: &[u8], row_bytes: usize, x: &[f32], aux: &[f32], y: &mut [f32]) {
                for (row, yr) in rows.chunks_exact(row_bytes).zip(y.iter_mut()) {
                    *yr = $dot(row, x, aux);
                }
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2(rows: &[u8], row_bytes: usize, x: &[f32], aux: &[f32], y: &mut [f32]) {
                body(rows, row_bytes, x, aux, y)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
            fn avx512(rows: &[u8], row_bytes: usize, x: &[f32], aux: &[f32], y: &mut [f32]) {
                body(rows, row_bytes, x, aux, y)
            }
            match $crate::quant::gemv::simd_level() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: simd_level() returns Avx512 only when the CPU has these features.
                $crate::quant::gemv::SimdLevel::Avx512 => unsafe {
                    avx512(rows, row_bytes, x, aux, y)
                },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: simd_level() returns Avx2 only when the CPU has AVX2 and FMA.
                $crate::quant::gemv::SimdLevel::Avx2 => unsafe { avx2(rows, row_bytes, x, aux, y) },
                _ => body(rows, row_bytes, x, aux, y),
            }
        }
    };
}

pub(crate) use row_kernels;

/// For a format file with `BLOCK`, `BYTES` and `dequantize_block(&[u8], &mut [f32; BLOCK])`:
/// generates `dequantize_row` (block by block) and the fused `gemv_rows` through
/// [`dot_by_blocks`] at every [`SimdLevel`].
macro_rules! block_kernels {
    ($dequantize_block:path) => {
        pub(crate) fn dequantize_row(b: &[u8], out: &mut [f32]) {
            for (yb, ob) in b.chunks_exact(BYTES).zip(out.chunks_exact_mut(BLOCK)) {
                $dequantize_block(yb, ob.try_into().expect("chunks of BLOCK values"));
            }
        }

        #[inline(always)]
        fn dot_row(row: &[u8], x: &[f32], _aux: &[f32]) -> f32 {
            $crate::quant::gemv::dot_by_blocks(row, BYTES, x, $dequantize_block)
        }

        $crate::quant::gemv::row_kernels!(dot_row);
    };
}

pub(crate) use block_kernels;

/// Sums of `x` over consecutive groups of `group` elements (activation-side terms of the
/// formats with a per-sub-block minimum).
pub fn group_sums(x: &[f32], group: usize, out: &mut Vec<f32>) {
    out.clear();
    out.extend(x.chunks(group).map(|c| c.iter().sum::<f32>()));
}

/// `Σ w·x` over a row of packed blocks (`bytes` each, `B` weights), each block dequantized
/// into a stack buffer by `dequantize` and dotted with per-lane accumulators (the fused kernel
/// of formats whose codes go through a table or several bit planes).
#[inline(always)]
pub(crate) fn dot_by_blocks<const B: usize>(
    row: &[u8],
    bytes: usize,
    x: &[f32],
    dequantize: impl Fn(&[u8], &mut [f32; B]),
) -> f32 {
    let mut acc = [0.0f32; 16];
    let mut w = [0.0f32; B];
    for (yb, xb) in row.chunks_exact(bytes).zip(x.chunks_exact(B)) {
        dequantize(yb, &mut w);
        for (wc, xc) in w.chunks_exact(16).zip(xb.chunks_exact(16)) {
            for i in 0..16 {
                acc[i] += wc[i] * xc[i];
            }
        }
    }
    acc.iter().sum()
}
