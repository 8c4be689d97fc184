//! The activation vector quantized to 8 bits, once per matrix-vector product, for the integer
//! kernels: weights stay packed, activations become blocks of `i8` codes with one f32 scale, and
//! a block's dot product is an integer sum times two scales.
//!
//! Two block shapes, as ggml uses them:
//! - [`ActKind::Q8_0`]: 32 codes, `d = amax / 127` rounded through f16 (ggml's
//!   `quantize_row_q8_0`), for Q8_0, Q4_0 and the other 32-weight formats, with the sums of
//!   every 16 codes (Q4_0's x86 kernel takes its offset of 8 through them);
//! - [`ActKind::Q8K`]: 256 codes, `d = max / −127` for the signed value of largest magnitude,
//!   codes clamped to 127, and the sums of every 16 codes (ggml's `quantize_row_q8_K_ref`), for
//!   the K-quants, whose minimum terms need those sums.
//!
//! The rounding changes a product by about `|x| · |w| / 254` per element at worst; `quant eval`
//! reports the error this adds over the f32-activation kernels.

use super::f16::round_f16;

/// Which block shape the activation is quantized to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActKind {
    /// Blocks of 32 with an f16-rounded scale.
    Q8_0,
    /// Super-blocks of 256 with an f32 scale and sums per 16.
    Q8K,
}

impl ActKind {
    /// Codes per block.
    pub fn block(self) -> usize {
        match self {
            ActKind::Q8_0 => 32,
            ActKind::Q8K => 256,
        }
    }
}

/// A quantized activation vector.
#[derive(Debug, Clone, Default)]
pub struct Q8Act {
    /// The codes, one per element.
    pub qs: Vec<i8>,
    /// One scale per block.
    pub d: Vec<f32>,
    /// Sums of every 16 codes (the K-quants' minimum terms; Q4_0's offset of 8).
    pub bsums: Vec<i16>,
}

impl Q8Act {
    /// Quantizes `x` (a whole number of blocks of `kind`) into `self`, reusing its buffers.
    pub fn quantize(&mut self, kind: ActKind, x: &[f32]) {
        let block = kind.block();
        assert!(x.len().is_multiple_of(block), "whole activation blocks");
        self.qs.clear();
        self.d.clear();
        self.bsums.clear();
        self.qs.reserve(x.len());
        match kind {
            ActKind::Q8_0 => {
                for xb in x.chunks_exact(block) {
                    let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    let d = amax / 127.0;
                    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                    self.d.push(round_f16(d));
                    let start = self.qs.len();
                    self.qs.extend(xb.iter().map(|&v| (v * id).round() as i8));
                    self.bsums.extend(
                        self.qs[start..]
                            .chunks_exact(16)
                            .map(|c| c.iter().map(|&q| q as i16).sum::<i16>()),
                    );
                }
            }
            ActKind::Q8K => {
                for xb in x.chunks_exact(block) {
                    let (mut amax, mut max) = (0.0f32, 0.0f32);
                    for &v in xb {
                        if v.abs() > amax {
                            amax = v.abs();
                            max = v;
                        }
                    }
                    if amax == 0.0 {
                        self.d.push(0.0);
                        self.qs.extend(std::iter::repeat_n(0i8, block));
                        self.bsums.extend(std::iter::repeat_n(0i16, block / 16));
                        continue;
                    }
                    let iscale = -127.0 / max;
                    let start = self.qs.len();
                    self.qs.extend(
                        xb.iter()
                            .map(|&v| super::kquant::nearest_int(iscale * v).min(127) as i8),
                    );
                    self.bsums.extend(
                        self.qs[start..]
                            .chunks_exact(16)
                            .map(|c| c.iter().map(|&q| q as i16).sum::<i16>()),
                    );
                    self.d.push(1.0 / iscale);
                }
            }
        }
    }

    /// `x` quantized as `kind`.
    pub fn new(kind: ActKind, x: &[f32]) -> Q8Act {
        let mut a = Q8Act::default();
        a.quantize(kind, x);
        a
    }

    /// The vector borrowed as the kernels take it.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn as_ref(&self) -> ActRef<'_> {
        ActRef {
            qs: &self.qs,
            d: &self.d,
            bsums: &self.bsums,
        }
    }

    /// The quantized vector read back (code times its block's scale).
    pub fn dequantize(&self, kind: ActKind) -> Vec<f32> {
        self.qs
            .chunks_exact(kind.block())
            .zip(&self.d)
            .flat_map(|(q, &d)| q.iter().map(move |&v| v as f32 * d))
            .collect()
    }
}

/// One token's quantized activation, borrowed ([`Q8Act::as_ref`]).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct ActRef<'a> {
    /// The codes.
    pub qs: &'a [i8],
    /// One scale per block.
    pub d: &'a [f32],
    /// Sums of every 16 codes.
    pub bsums: &'a [i16],
}

/// A tile's activations as raw pointers, checked once before a kernel's block loop (which then
/// reads through them without bounds checks or reloading the slices).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct TilePtrs<const N: usize> {
    /// Each token's codes.
    pub qs: [*const i8; N],
    /// Each token's block scales.
    pub ds: [*const f32; N],
    /// Each token's sums per 16.
    pub bsums: [*const i16; N],
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl<const N: usize> TilePtrs<N> {
    /// The pointers of `acts`; panics unless every activation covers `blocks` weight blocks of
    /// `block` elements, with one scale per `block` elements and sums per 16 when `sums`.
    #[inline(always)]
    pub(crate) fn new(acts: &[ActRef<'_>; N], blocks: usize, block: usize, sums: bool) -> Self {
        let n = blocks * block;
        for a in acts {
            assert!(
                a.qs.len() >= n && a.d.len() >= blocks && (!sums || a.bsums.len() >= n / 16),
                "an activation of at least {n} codes"
            );
        }
        TilePtrs {
            qs: std::array::from_fn(|t| acts[t].qs.as_ptr()),
            ds: std::array::from_fn(|t| acts[t].d.as_ptr()),
            bsums: std::array::from_fn(|t| acts[t].bsums.as_ptr()),
        }
    }
}

/// Tokens per register tile of the integer GEMM with AVX2 (16 vector registers): each
/// unpacked weight block is multiplied with this many activations before the next is unpacked.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const GEMM_TILE: usize = 4;

/// Tokens per register tile with AVX-512 VNNI, whose kernels have 32 vector registers.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const GEMM_TILE_VNNI: usize = 8;

/// Rows of `row_bytes` per panel of the integer GEMM: about 256 KiB of packed weights, a share
/// of a core's L2 cache that leaves room for the tile of activations beside it.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn gemm_panel_rows(row_bytes: usize) -> usize {
    (256 * 1024 / row_bytes.max(1)).max(1)
}

/// The integer GEMM's loop: rows in panels of [`gemm_panel_rows`] that stay in the L2 cache
/// while every tile of `T` tokens passes over them (a tile's codes stay in L1), so each row
/// and each token's codes come from memory once per panel, not once per row; `tile` computes
/// one row against `T` tokens, `one` against the tokens left over.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(crate) fn gemm_tiles<const T: usize>(
    rows: &[u8],
    row_bytes: usize,
    refs: &[ActRef<'_>],
    y: &mut [f32],
    tile: impl Fn(&[u8], &[ActRef<'_>; T]) -> [f32; T],
    one: impl Fn(&[u8], ActRef<'_>) -> f32,
) {
    let n = refs.len();
    let panel = gemm_panel_rows(row_bytes);
    for (prows, py) in rows.chunks(panel * row_bytes).zip(y.chunks_mut(panel * n)) {
        let mut t0 = 0;
        while t0 < n {
            let whole = n - t0 >= T;
            for (row, yr) in prows.chunks_exact(row_bytes).zip(py.chunks_exact_mut(n)) {
                if whole {
                    let t: &[ActRef<'_>; T] = refs[t0..t0 + T].try_into().expect("a whole tile");
                    yr[t0..t0 + T].copy_from_slice(&tile(row, t));
                } else {
                    for (yt, &a) in yr[t0..].iter_mut().zip(&refs[t0..]) {
                        *yt = one(row, a);
                    }
                }
            }
            t0 += if whole { T } else { n - t0 };
        }
    }
}

/// Generates `pub(crate) fn int_gemv_rows(rows: &[u8], row_bytes, act: &Q8Act, y)` from an
/// integer row kernel `fn(row: &[u8], qs: &[i8], d: &[f32], bsums: &[i16]) -> f32`, compiled
/// for each [`super::gemv::SimdLevel`] like `row_kernels!`.
macro_rules! int_row_kernels {
    ($dot:path) => {
        $crate::quant::act::int_row_kernels!($dot, $dot);
    };
    // An x86 kernel over a tile of tokens, `unsafe fn tile<const N: usize, const VNNI: bool>(row,
    // &[ActRef; N]) -> [f32; N]` (inline(always), no target features of its own): one body
    // for the matrix-vector product (N = 1) and the GEMM's register tiles (N = GEMM_TILE), so
    // that a token's sum is the same instructions in the same order alone or in a batch; it is
    // compiled here twice, for AVX2 and for AVX-512 VNNI (`VNNI` selects the fused
    // multiply-accumulates).
    ($dot:path, tile: $tile:ident) => {
        /// `$tile` with AVX2, FMA and F16C.
        ///
        /// # Safety
        /// The CPU has those features.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn int_tile_avx2<const N: usize>(
            row: &[u8],
            acts: &[$crate::quant::act::ActRef<'_>; N],
        ) -> [f32; N] {
            // SAFETY: the features $tile needs are enabled here (the caller's contract).
            unsafe { $tile::<N, false>(row, acts) }
        }

        /// `$tile` with AVX-512 VNNI as well.
        ///
        /// # Safety
        /// The CPU has AVX2, FMA, F16C, AVX-512 VNNI and VL.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
        unsafe fn int_tile_vnni<const N: usize>(
            row: &[u8],
            acts: &[$crate::quant::act::ActRef<'_>; N],
        ) -> [f32; N] {
            // SAFETY: as above.
            unsafe { $tile::<N, true>(row, acts) }
        }

        /// The row kernel at every level this CPU runs, by name (`scalar`, `avx2`,
        /// `avx512-vnni`), for the tests that hold them to one another.
        #[cfg(test)]
        pub(crate) fn int_dot_variants() -> Vec<(&'static str, $crate::quant::act::IntDotFn)> {
            use $crate::quant::gemv::{IntLevel, int_level};
            // Only x86-64 pushes more levels.
            #[allow(unused_mut)]
            let mut v: Vec<(&'static str, $crate::quant::act::IntDotFn)> = vec![("scalar", $dot)];
            #[cfg(target_arch = "x86_64")]
            {
                if int_level() >= IntLevel::Avx2 {
                    v.push(("avx2", |r, qs, d, bsums| {
                        let a = [$crate::quant::act::ActRef { qs, d, bsums }];
                        // SAFETY: the CPU has AVX2, FMA and F16C (int_level checked above).
                        unsafe { int_tile_avx2::<1>(r, &a)[0] }
                    }));
                }
                if int_level() >= IntLevel::Avx512Vnni {
                    v.push(("avx512-vnni", |r, qs, d, bsums| {
                        let a = [$crate::quant::act::ActRef { qs, d, bsums }];
                        // SAFETY: the CPU has AVX-512 VNNI (int_level checked above).
                        unsafe { int_tile_vnni::<1>(r, &a)[0] }
                    }));
                }
            }
            v
        }

        /// `y[r] = dot(row r, act)` for every row of `rows` (`row_bytes` each).
        pub(crate) fn int_gemv_rows(
            rows: &[u8],
            row_bytes: usize,
            act: &$crate::quant::act::Q8Act,
            y: &mut [f32],
        ) {
            use $crate::quant::act::ActRef;
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,f16c")]
            fn avx2(rows: &[u8], row_bytes: usize, a: ActRef<'_>, y: &mut [f32]) {
                for (row, yr) in rows.chunks_exact(row_bytes).zip(y.iter_mut()) {
                    // SAFETY: this function runs only where the CPU has the tile's features.
                    *yr = unsafe { int_tile_avx2::<1>(row, &[a])[0] };
                }
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
            fn vnni(rows: &[u8], row_bytes: usize, a: ActRef<'_>, y: &mut [f32]) {
                for (row, yr) in rows.chunks_exact(row_bytes).zip(y.iter_mut()) {
                    // SAFETY: as above.
                    *yr = unsafe { int_tile_vnni::<1>(row, &[a])[0] };
                }
            }
            match $crate::quant::gemv::int_level() {
                // SAFETY: int_level() returns these levels only when the CPU has their features.
                #[cfg(target_arch = "x86_64")]
                $crate::quant::gemv::IntLevel::Avx512Vnni => unsafe {
                    vnni(rows, row_bytes, act.as_ref(), y)
                },
                #[cfg(target_arch = "x86_64")]
                $crate::quant::gemv::IntLevel::Avx2 => unsafe { avx2(rows, row_bytes, act.as_ref(), y) },
                _ => {
                    for (row, yr) in rows.chunks_exact(row_bytes).zip(y.iter_mut()) {
                        *yr = $dot(row, &act.qs, &act.d, &act.bsums);
                    }
                }
            }
        }

        /// The GEMM with AVX2 tiles of [`GEMM_TILE`]($crate::quant::act::GEMM_TILE) tokens.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma,f16c")]
        fn int_gemm_avx2(
            rows: &[u8],
            row_bytes: usize,
            refs: &[$crate::quant::act::ActRef<'_>],
            y: &mut [f32],
        ) {
            use $crate::quant::act::GEMM_TILE;
            $crate::quant::act::gemm_tiles::<GEMM_TILE>(
                rows,
                row_bytes,
                refs,
                y,
                // SAFETY: this function runs only where the CPU has the tile's features.
                |r, t| unsafe { int_tile_avx2::<GEMM_TILE>(r, t) },
                // SAFETY: as above.
                |r, a| unsafe { int_tile_avx2::<1>(r, &[a])[0] },
            )
        }

        /// The GEMM with AVX-512 VNNI tiles of
        /// [`GEMM_TILE_VNNI`]($crate::quant::act::GEMM_TILE_VNNI) tokens.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
        fn int_gemm_vnni(
            rows: &[u8],
            row_bytes: usize,
            refs: &[$crate::quant::act::ActRef<'_>],
            y: &mut [f32],
        ) {
            use $crate::quant::act::GEMM_TILE_VNNI;
            $crate::quant::act::gemm_tiles::<GEMM_TILE_VNNI>(
                rows,
                row_bytes,
                refs,
                y,
                // SAFETY: this function runs only where the CPU has the tile's features.
                |r, t| unsafe { int_tile_vnni::<GEMM_TILE_VNNI>(r, t) },
                // SAFETY: as above.
                |r, a| unsafe { int_tile_vnni::<1>(r, &[a])[0] },
            )
        }

        /// The GEMM at every level this CPU runs, by name, for the tests.
        #[cfg(test)]
        pub(crate) fn int_gemm_variants() -> Vec<(&'static str, $crate::quant::IntGemmRowsFn)> {
            use $crate::quant::gemv::{IntLevel, int_level};
            #[allow(unused_mut)]
            let mut v: Vec<(&'static str, $crate::quant::IntGemmRowsFn)> =
                vec![("scalar", |rows, row_bytes, acts, y| {
                    let n = acts.len();
                    for (row, yr) in rows.chunks_exact(row_bytes).zip(y.chunks_exact_mut(n)) {
                        for (a, yt) in acts.iter().zip(yr.iter_mut()) {
                            *yt = $dot(row, &a.qs, &a.d, &a.bsums);
                        }
                    }
                })];
            #[cfg(target_arch = "x86_64")]
            {
                if int_level() >= IntLevel::Avx2 {
                    v.push(("avx2", |rows, row_bytes, acts, y| {
                        let refs: Vec<_> = acts.iter().map(|a| a.as_ref()).collect();
                        // SAFETY: the CPU has AVX2, FMA and F16C (int_level checked above).
                        unsafe { int_gemm_avx2(rows, row_bytes, &refs, y) }
                    }));
                }
                if int_level() >= IntLevel::Avx512Vnni {
                    v.push(("avx512-vnni", |rows, row_bytes, acts, y| {
                        let refs: Vec<_> = acts.iter().map(|a| a.as_ref()).collect();
                        // SAFETY: the CPU has AVX-512 VNNI (int_level checked above).
                        unsafe { int_gemm_vnni(rows, row_bytes, &refs, y) }
                    }));
                }
            }
            v
        }

        /// `y[r · n + t] = dot(row r, acts[t])` for every row of `rows` and each of the
        /// `n = acts.len()` tokens: each weight block is unpacked once per tile of tokens and
        /// multiplied with all of them ([`gemm_tiles`]($crate::quant::act::gemm_tiles)).
        pub(crate) fn int_gemm_rows(
            rows: &[u8],
            row_bytes: usize,
            acts: &[$crate::quant::act::Q8Act],
            y: &mut [f32],
        ) {
            let n = acts.len();
            let level = $crate::quant::gemv::int_level();
            if level == $crate::quant::gemv::IntLevel::Scalar {
                for (row, yr) in rows.chunks_exact(row_bytes).zip(y.chunks_exact_mut(n)) {
                    for (a, yt) in acts.iter().zip(yr.iter_mut()) {
                        *yt = $dot(row, &a.qs, &a.d, &a.bsums);
                    }
                }
                return;
            }
            #[cfg(target_arch = "x86_64")]
            {
                let refs: Vec<$crate::quant::act::ActRef<'_>> =
                    acts.iter().map(|a| a.as_ref()).collect();
                if level == $crate::quant::gemv::IntLevel::Avx512Vnni {
                    // SAFETY: int_level() returns Avx512Vnni only when the CPU has VNNI.
                    unsafe { int_gemm_vnni(rows, row_bytes, &refs, y) }
                } else {
                    // SAFETY: int_level() returns Avx2 only when the CPU has AVX2, FMA, F16C.
                    unsafe { int_gemm_avx2(rows, row_bytes, &refs, y) }
                }
            }
        }
    };
    ($dot:path, $avx2_dot:path) => {
        /// The row kernel at every level this CPU runs, by name (`scalar`, `avx2`), for the
        /// tests that hold them to one another.
        #[cfg(test)]
        pub(crate) fn int_dot_variants() -> Vec<(&'static str, $crate::quant::act::IntDotFn)> {
            // Only x86-64 pushes more levels.
            #[allow(unused_mut)]
            let mut v: Vec<(&'static str, $crate::quant::act::IntDotFn)> = vec![("scalar", $dot)];
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                #[allow(unused_unsafe)]
                v.push(("avx2", |r, q, d, b| {
                    // SAFETY: the CPU has AVX2 and FMA (checked above).
                    unsafe { $avx2_dot(r, q, d, b) }
                }));
            }
            v
        }

        /// `y[r] = dot(row r, act)` for every row of `rows` (`row_bytes` each).
        pub(crate) fn int_gemv_rows(
            rows: &[u8],
            row_bytes: usize,
            act: &$crate::quant::act::Q8Act,
            y: &mut [f32],
        ) {
            #[inline(always)]
            fn body(
                rows: &[u8],
                row_bytes: usize,
                qs: &[i8],
                d: &[f32],
                bs: &[i16],
                y: &mut [f32],
            ) {
                for (row, yr) in rows.chunks_exact(row_bytes).zip(y.iter_mut()) {
                    *yr = $dot(row, qs, d, bs);
                }
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2(
                rows: &[u8],
                row_bytes: usize,
                qs: &[i8],
                d: &[f32],
                bs: &[i16],
                y: &mut [f32],
            ) {
                for (row, yr) in rows.chunks_exact(row_bytes).zip(y.iter_mut()) {
                    *yr = $avx2_dot(row, qs, d, bs);
                }
            }
            let (qs, d, bs) = (&act.qs[..], &act.d[..], &act.bsums[..]);
            match $crate::quant::gemv::simd_level() {
                // The AVX2 kernels also serve AVX-512 machines (no wider ones yet).
                #[cfg(target_arch = "x86_64")]
                // SAFETY: simd_level() returns Avx2 or Avx512 only when the CPU has AVX2 and FMA.
                $crate::quant::gemv::SimdLevel::Avx2 | $crate::quant::gemv::SimdLevel::Avx512 => unsafe {
                    avx2(rows, row_bytes, qs, d, bs, y)
                },
                _ => body(rows, row_bytes, qs, d, bs, y),
            }
        }

        /// `y[r · n + t] = dot(row r, acts[t])` for every row of `rows` and each of the
        /// `n = acts.len()` tokens: each packed row is read from memory once and reused, from
        /// the L1 cache, for every token.
        pub(crate) fn int_gemm_rows(
            rows: &[u8],
            row_bytes: usize,
            acts: &[$crate::quant::act::Q8Act],
            y: &mut [f32],
        ) {
            #[inline(always)]
            fn body(
                rows: &[u8],
                row_bytes: usize,
                acts: &[$crate::quant::act::Q8Act],
                y: &mut [f32],
            ) {
                let n = acts.len();
                for (row, yr) in rows.chunks_exact(row_bytes).zip(y.chunks_exact_mut(n)) {
                    for (a, yt) in acts.iter().zip(yr.iter_mut()) {
                        *yt = $dot(row, &a.qs, &a.d, &a.bsums);
                    }
                }
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2(
                rows: &[u8],
                row_bytes: usize,
                acts: &[$crate::quant::act::Q8Act],
                y: &mut [f32],
            ) {
                let n = acts.len();
                for (row, yr) in rows.chunks_exact(row_bytes).zip(y.chunks_exact_mut(n)) {
                    for (a, yt) in acts.iter().zip(yr.iter_mut()) {
                        *yt = $avx2_dot(row, &a.qs, &a.d, &a.bsums);
                    }
                }
            }
            match $crate::quant::gemv::simd_level() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: simd_level() returns Avx2 or Avx512 only when the CPU has AVX2 and FMA.
                $crate::quant::gemv::SimdLevel::Avx2 | $crate::quant::gemv::SimdLevel::Avx512 => unsafe {
                    avx2(rows, row_bytes, acts, y)
                },
                _ => body(rows, row_bytes, acts, y),
            }
        }
    };
}

pub(crate) use int_row_kernels;

/// An integer row kernel: `(packed row, activation codes, activation scales, activation sums
/// per 16) → dot product`.
#[cfg(test)]
pub(crate) type IntDotFn = fn(&[u8], &[i8], &[f32], &[i16]) -> f32;

/// The 32 nibbles of a 16-byte block in element order: the low nibble of byte j is element j,
/// the high one element j + 16 (Q4_0's layout, and Q4_1's, Q5_0's, Q5_1's, IQ4_NL's, MXFP4's).
#[inline(always)]
pub(crate) fn unpack_nibbles(q: &[u8]) -> [u8; 32] {
    let mut v = [0u8; 32];
    for j in 0..16 {
        v[j] = q[j] & 15;
        v[16 + j] = q[j] >> 4;
    }
    v
}

/// `Σ levels[c[i]] · b[i]` over 32 codes `c` (each 0..15) into a table of signed levels.
#[inline(always)]
pub(crate) fn dot32_lut_i8(c: &[u8; 32], levels: &[i8; 16], b: &[i8]) -> i32 {
    dot32_i8_i8(&c.map(|i| levels[i as usize] as u8), b)
}

/// `Σ a[i] · b[i]` over 32 unsigned and signed bytes, shaped for LLVM to vectorise into
/// widening multiply-adds (16-bit products, 32-bit sums).
#[inline(always)]
pub(crate) fn dot32_u8_i8(a: &[u8], b: &[i8]) -> i32 {
    let (a, b) = (&a[..32], &b[..32]);
    let mut s = [0i32; 16];
    for i in 0..16 {
        s[i] = (a[i] as i16 * b[i] as i16) as i32 + (a[16 + i] as i16 * b[16 + i] as i16) as i32;
    }
    s.iter().sum()
}

/// `Σ a[i] · b[i]` over 32 signed bytes, `a` stored as `u8` (two's complement).
#[inline(always)]
pub(crate) fn dot32_i8_i8(a: &[u8], b: &[i8]) -> i32 {
    let (a, b) = (&a[..32], &b[..32]);
    let mut s = [0i32; 16];
    for i in 0..16 {
        s[i] = ((a[i] as i8) as i16 * b[i] as i16) as i32
            + ((a[16 + i] as i8) as i16 * b[16 + i] as i16) as i32;
    }
    s.iter().sum()
}

/// `Σ a[i] · b[i]` over 16 signed bytes.
#[inline(always)]
pub(crate) fn dot16_i8_i8(a: &[i8], b: &[i8]) -> i32 {
    let (a, b) = (&a[..16], &b[..16]);
    let mut s = [0i32; 16];
    for i in 0..16 {
        s[i] = (a[i] as i16 * b[i] as i16) as i32;
    }
    s.iter().sum()
}

/// `Σ b[i]` over 32 signed bytes.
#[inline(always)]
pub(crate) fn sum32_i8(b: &[i8]) -> i32 {
    b[..32].iter().map(|&v| v as i32).sum()
}

/// `Σ a[i] · b[i]` over 16 unsigned and signed bytes.
#[inline(always)]
pub(crate) fn dot16_u8_i8(a: &[u8], b: &[i8]) -> i32 {
    let (a, b) = (&a[..16], &b[..16]);
    let mut s = [0i32; 16];
    for i in 0..16 {
        s[i] = (a[i] as i16 * b[i] as i16) as i32;
    }
    s.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8k_codes_sums_and_scale_follow_the_largest_signed_value() {
        let x: Vec<f32> = (0..256)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let a = Q8Act::new(ActKind::Q8K, &x);
        let (amax_i, _) = x.iter().enumerate().fold((0, 0.0f32), |(bi, bv), (i, v)| {
            if v.abs() > bv { (i, v.abs()) } else { (bi, bv) }
        });
        // The largest magnitude maps to -127 (its sign flipped by the negative scale's sign).
        assert_eq!(
            a.qs[amax_i] as i32 * x[amax_i].signum() as i32 * a.d[0].signum() as i32,
            127
        );
        for (j, s) in a.bsums.iter().enumerate() {
            assert_eq!(
                *s as i32,
                a.qs[16 * j..16 * j + 16]
                    .iter()
                    .map(|&q| q as i32)
                    .sum::<i32>()
            );
        }
        let back = a.dequantize(ActKind::Q8K);
        let step = a.d[0].abs();
        for (v, b) in x.iter().zip(&back) {
            assert!((v - b).abs() <= 0.5 * step + 1e-6, "{v} vs {b}");
        }
    }

    #[test]
    fn q8_0_rounds_within_half_a_step_and_zero_blocks_stay_zero() {
        let mut x: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) * 0.013).collect();
        x[32..].fill(0.0);
        let a = Q8Act::new(ActKind::Q8_0, &x);
        assert_eq!(a.d[1], 0.0);
        assert!(a.qs[32..].iter().all(|&q| q == 0));
        let back = a.dequantize(ActKind::Q8_0);
        for (v, b) in x.iter().zip(&back) {
            assert!((v - b).abs() <= 0.5 * a.d[0] * 1.01 + 1e-7, "{v} vs {b}");
        }
    }

    #[test]
    fn byte_dots_are_exact_at_the_extremes() {
        let a = [255u8; 32];
        let b = [-128i8; 32];
        assert_eq!(dot32_u8_i8(&a, &b), 32 * 255 * -128);
        let c = [-128i8; 32];
        assert_eq!(dot32_i8_i8(&[0x80u8; 32], &c), 32 * 128 * 128);
        assert_eq!(dot16_i8_i8(&c[..16], &c[..16]), 16 * 128 * 128);
        assert_eq!(sum32_i8(&c), -32 * 128);
        assert_eq!(dot16_u8_i8(&a[..16], &b[..16]), 16 * 255 * -128);
    }
}

#[cfg(test)]
mod kernel_tests {
    use super::{IntDotFn, Q8Act};
    use crate::quant::eval::{WeightDistribution, sample};
    use crate::quant::{Kernel, QuantizedMatrix, WeightFormat, int_kernels};

    /// The formats with an integer kernel.
    const INT_FORMATS: [&str; 13] = [
        "q8_0", "q6_k", "q5_1", "q5_0", "q5_k", "q4_1", "q4_0", "iq4_nl", "q4_k", "iq4_xs",
        "mxfp4", "q3_k", "q2_k",
    ];

    /// A format's integer row kernel at every level this CPU runs.
    fn variants(f: WeightFormat) -> Vec<(&'static str, IntDotFn)> {
        use crate::quant::*;
        match f {
            WeightFormat::Q8_0 => q8_0::int_dot_variants(),
            WeightFormat::Q6K => q6_k::int_dot_variants(),
            WeightFormat::Q5_1 => q5_1::int_dot_variants(),
            WeightFormat::Q5_0 => q5_0::int_dot_variants(),
            WeightFormat::Q5K => q5_k::int_dot_variants(),
            WeightFormat::Q4_1 => q4_1::int_dot_variants(),
            WeightFormat::Q4_0 => q4_0::int_dot_variants(),
            WeightFormat::Iq4Nl => iq4_nl::int_dot_variants(),
            WeightFormat::Iq4Xs => iq4_xs::int_dot_variants(),
            WeightFormat::Mxfp4 => mxfp4::int_dot_variants(),
            WeightFormat::Q4K => q4_k::int_dot_variants(),
            WeightFormat::Q3K => q3_k::int_dot_variants(),
            WeightFormat::Q2K => q2_k::int_dot_variants(),
            _ => panic!("{f:?} has no integer kernel"),
        }
    }

    /// `Σ w · a` and `Σ |w · a|` of a dequantized row with a dequantized activation, in f64.
    fn exact_dot(w: &[f32], a: &[f32]) -> (f64, f64) {
        w.iter().zip(a).fold((0.0, 0.0), |(s, m), (&w, &a)| {
            let p = w as f64 * a as f64;
            (s + p, m + p.abs())
        })
    }

    /// The table of integer kernels is exactly [`INT_FORMATS`].
    #[test]
    fn the_integer_kernel_table_lists_the_formats_tested_here() {
        let with: Vec<String> = WeightFormat::ALL
            .into_iter()
            .filter(|&f| int_kernels(f).is_some())
            .map(|f| f.to_string().to_ascii_lowercase())
            .collect();
        let mut want: Vec<String> = INT_FORMATS.iter().map(|s| s.to_string()).collect();
        let mut got = with.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want);
    }

    /// Every level of every integer row kernel (the scalar one the dispatch runs only on CPUs
    /// without AVX2, and the AVX2 one) computes the stored weights times the quantized
    /// activation to f32 rounding (`1e-5 · Σ |w · a|`, the tolerance of the kernel test below),
    /// so the levels agree with one another to twice that: heavy-tailed weights, activations
    /// with outlier channels and constant ones (every code at its extreme, where `vpmaddubsw`
    /// would saturate first).
    #[test]
    fn scalar_and_avx2_integer_row_kernels_agree() {
        let (rows, cols) = (24, 2048);
        for f in INT_FORMATS {
            let f: WeightFormat = f.parse().unwrap();
            let ik = int_kernels(f).unwrap();
            let vs = variants(f);
            for (wd, seed) in [
                (WeightDistribution::Gaussian, 1),
                (WeightDistribution::StudentT(4.0), 2),
                (WeightDistribution::OutlierColumns, 3),
            ] {
                let mut w = sample(wd, rows * cols, seed);
                // One row of equal weights: every code at the top of its range.
                w[..cols].fill(0.75);
                let q = QuantizedMatrix::quantize(f, rows, cols, &w, None).unwrap();
                let deq = q.dequantize();
                let rb = q.row_bytes();
                for x in [
                    sample(WeightDistribution::OutlierColumns, cols, seed + 10),
                    vec![-1.5f32; cols],
                    vec![2.0f32; cols],
                ] {
                    let a = Q8Act::new(ik.act, &x);
                    let xa = a.dequantize(ik.act);
                    for r in 0..rows {
                        let row = &q.data[r * rb..(r + 1) * rb];
                        let (want, scale) = exact_dot(&deq[r * cols..(r + 1) * cols], &xa);
                        let tol = 1e-5 * scale + 1e-6;
                        let got: Vec<f32> = vs
                            .iter()
                            .map(|(_, dot)| dot(row, &a.qs, &a.d, &a.bsums))
                            .collect();
                        for ((name, _), &y) in vs.iter().zip(&got) {
                            assert!(
                                (y as f64 - want).abs() <= tol,
                                "{f:?} {name} {wd:?} row {r}: {y} vs {want}"
                            );
                        }
                        assert!(
                            (got[0] - got[got.len() - 1]).abs() as f64 <= 2.0 * tol,
                            "{f:?} row {r}: levels disagree, {got:?}"
                        );
                    }
                }
            }
        }
    }

    /// The integer product differs from the f32 one by no more than the activation's rounding
    /// moves it, `Σ |w| · |x − x̂|` (plus f32 rounding), for every format with an integer kernel.
    #[test]
    fn integer_products_are_within_the_activation_rounding_of_f32() {
        let (rows, cols) = (64, 1024);
        for f in INT_FORMATS {
            let f: WeightFormat = f.parse().unwrap();
            let ik = int_kernels(f).unwrap();
            let w = sample(WeightDistribution::StudentT(4.0), rows * cols, 21);
            let q = QuantizedMatrix::quantize(f, rows, cols, &w, None).unwrap();
            let deq = q.dequantize();
            for x in [
                sample(WeightDistribution::Gaussian, cols, 22),
                sample(WeightDistribution::OutlierColumns, cols, 23),
            ] {
                let xa = Q8Act::new(ik.act, &x).dequantize(ik.act);
                let (mut y8, mut y32) = (vec![0.0f32; rows], vec![0.0f32; rows]);
                q.gemv_with(Kernel::Int8, &x, &mut y8, false);
                q.gemv_with(Kernel::F32, &x, &mut y32, false);
                let mut moved = 0.0f64;
                for r in 0..rows {
                    let wr = &deq[r * cols..(r + 1) * cols];
                    let bound: f64 = wr
                        .iter()
                        .zip(x.iter().zip(&xa))
                        .map(|(&w, (&x, &a))| (w as f64).abs() * (x as f64 - a as f64).abs())
                        .sum();
                    let (_, s8) = exact_dot(wr, &xa);
                    let (_, s32) = exact_dot(wr, &x);
                    let diff = (y8[r] as f64 - y32[r] as f64).abs();
                    assert!(
                        diff <= bound + 1e-5 * (s8 + s32) + 1e-6,
                        "{f:?} row {r}: int8 {} vs f32 {}, bound {bound}",
                        y8[r],
                        y32[r]
                    );
                    moved += diff;
                }
                assert!(moved > 0.0, "{f:?}: the int8 kernel ran");
            }
        }
    }

    /// The integer kernel computes exactly the dot product of the stored weights with the
    /// quantized activation (up to f32 rounding of the per-block products): every format, a
    /// shape of several super-blocks, one thread and the pool, one token and a batch.
    #[test]
    fn integer_kernels_are_the_stored_weights_times_the_quantized_activation() {
        let (rows, cols) = (150, 1024);
        for dist in [
            WeightDistribution::Gaussian,
            WeightDistribution::StudentT(4.0),
        ] {
            let w = sample(dist, rows * cols, 7);
            for f in INT_FORMATS {
                let f: WeightFormat = f.parse().unwrap();
                let ik = int_kernels(f).expect("an integer kernel");
                let q = QuantizedMatrix::quantize(f, rows, cols, &w, None).unwrap();
                let deq = q.dequantize();
                let n = 3;
                let xs = sample(WeightDistribution::Gaussian, n * cols, 11);
                let mut batched = vec![0.0f32; n * rows];
                q.gemm_with(Kernel::Int8, &xs, &mut batched, true);
                for (t, x) in xs.chunks_exact(cols).enumerate() {
                    let xa = Q8Act::new(ik.act, x).dequantize(ik.act);
                    let mut y1 = vec![0.0f32; rows];
                    let mut yp = vec![0.0f32; rows];
                    q.gemv_with(Kernel::Int8, x, &mut y1, false);
                    q.gemv_with(Kernel::Int8, x, &mut yp, true);
                    assert_eq!(y1, yp, "{f:?}: the split does not change a row's sum");
                    assert_eq!(&batched[t * rows..(t + 1) * rows], &y1[..], "{f:?}: batch");
                    for r in 0..rows {
                        let want: f64 = deq[r * cols..(r + 1) * cols]
                            .iter()
                            .zip(&xa)
                            .map(|(&a, &b)| a as f64 * b as f64)
                            .sum();
                        let scale: f64 = deq[r * cols..(r + 1) * cols]
                            .iter()
                            .zip(&xa)
                            .map(|(&a, &b)| (a as f64 * b as f64).abs())
                            .sum();
                        assert!(
                            (y1[r] as f64 - want).abs() <= 1e-5 * scale + 1e-6,
                            "{f:?} {dist:?} row {r}: {} vs {want}",
                            y1[r]
                        );
                    }
                }
            }
        }
    }

    /// A format's integer GEMM at every level this CPU runs (the tiled formats' x86 kernels).
    #[cfg(target_arch = "x86_64")]
    fn gemm_variants(f: WeightFormat) -> Vec<(&'static str, crate::quant::IntGemmRowsFn)> {
        use crate::quant::*;
        match f {
            WeightFormat::Q8_0 => q8_0::int_gemm_variants(),
            WeightFormat::Q6K => q6_k::int_gemm_variants(),
            WeightFormat::Q4_0 => q4_0::int_gemm_variants(),
            WeightFormat::Q4K => q4_k::int_gemm_variants(),
            WeightFormat::Q3K => q3_k::int_gemm_variants(),
            WeightFormat::Q2K => q2_k::int_gemm_variants(),
            _ => panic!("{f:?} has no tiled GEMM"),
        }
    }

    /// The tiled GEMMs (AVX2 tiles of 4 tokens, VNNI tiles of 8) give every token exactly the
    /// matrix-vector product's result, bit for bit, at every level: 19 tokens make whole tiles
    /// and a remainder, and 300 rows more than one panel of rows.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn tiled_gemms_equal_one_token_at_a_time_at_every_level() {
        let (rows, cols, n) = (300, 4096, 19);
        for f in ["q8_0", "q6_k", "q4_0", "q4_k", "q3_k", "q2_k"] {
            let f: WeightFormat = f.parse().unwrap();
            let ik = int_kernels(f).unwrap();
            let w = sample(WeightDistribution::StudentT(4.0), rows * cols, 31);
            let q = QuantizedMatrix::quantize(f, rows, cols, &w, None).unwrap();
            let rb = q.row_bytes();
            let xs = sample(WeightDistribution::OutlierColumns, n * cols, 32);
            let acts: Vec<Q8Act> = xs
                .chunks_exact(cols)
                .map(|x| Q8Act::new(ik.act, x))
                .collect();
            let dots = variants(f);
            for (name, gemm) in gemm_variants(f) {
                // The same level's row kernel, one token at a time.
                let (_, dot) = dots.iter().find(|(d, _)| *d == name).unwrap();
                let mut y = vec![0.0f32; rows * n];
                gemm(&q.data, rb, &acts, &mut y);
                for r in 0..rows {
                    let row = &q.data[r * rb..(r + 1) * rb];
                    for (t, a) in acts.iter().enumerate() {
                        assert_eq!(
                            y[r * n + t].to_bits(),
                            dot(row, &a.qs, &a.d, &a.bsums).to_bits(),
                            "{f:?} {name} row {r} token {t}"
                        );
                    }
                }
            }
        }
    }

    /// Formats without an integer kernel run the reference.
    #[test]
    fn formats_without_an_integer_kernel_fall_back_to_f32() {
        let f: WeightFormat = "tq2_0".parse().unwrap();
        assert_eq!(Kernel::Int8.for_format(f), Kernel::F32);
        let w = sample(WeightDistribution::Gaussian, 4 * 256, 3);
        let x = sample(WeightDistribution::Gaussian, 256, 4);
        let q = QuantizedMatrix::quantize(f, 4, 256, &w, None).unwrap();
        let (mut a, mut b) = (vec![0.0f32; 4], vec![0.0f32; 4]);
        q.gemv_with(Kernel::Int8, &x, &mut a, false);
        q.gemv_serial(&x, &mut b);
        assert_eq!(a, b);
    }
}
