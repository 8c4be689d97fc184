//! Weight formats and their kernels: quantize, pack, dequantize and a fused dequantize-dot
//! GEMV for each format, a randomized Hadamard rotation, and error measurement.
//!
//! One file per format (`q8_0.rs`, `q6_k.rs`, `q5_1.rs`, `q5_0.rs`, `q5_k.rs`, `q4_1.rs`,
//! `q4_0.rs`, `iq4_nl.rs`, `q4_k.rs`, `iq4_xs.rs`, `mxfp4.rs`, `q3_k.rs`, `q2_k.rs`, `tq2_0.rs`,
//! `tq1_0.rs`, `bitnet.rs`, `pi.rs`, `uniform.rs`, with `grid.rs` the storage PiQ and the
//! uniform baselines share, `f16.rs` and `reference.rs` the float formats); [`WeightFormat`]
//! is the kind enum and `kernels` its one dispatch match. ggml formats use ggml's exact
//! block layouts and reference quantizers (`../shared/reference/quantization.md`).
//! `iquant/` reads ggml's lattice-codebook i-quants (IQ2_XXS … IQ1_M): sizes and dequantization.
//!
//! Measurement: `eval.rs` (error statistics, synthetic matrices), `eval_rows.rs` (every
//! format's error on a set of matrices and the pi-constant verdict, `moesim quant eval`),
//! `bench.rs` (GEMV throughput, `moesim quant bench`), `ggml_reference.rs` (ggml's own
//! figures printed beside ours). Pure functions over slices and timings; no I/O.

pub mod act;
mod avx2;
pub mod bench;
mod bitnet;
pub mod eval;
pub mod eval_rows;
pub mod f16;
pub mod format;
pub mod gemv;
pub mod ggml_reference;
mod grid;
pub mod hadamard;
mod iq4_nl;
mod iq4_xs;
pub mod iquant;
mod kquant;
mod mxfp4;
pub mod pi;
mod q2_k;
mod q3_k;
mod q4_0;
mod q4_1;
mod q4_k;
mod q5_0;
mod q5_1;
mod q5_k;
mod q6_k;
mod q8_0;
mod reference;
mod row_pool;
mod tq1_0;
mod tq2_0;
mod uniform;

use std::borrow::Cow;

use rayon::prelude::*;

pub use format::{ComputeClass, WeightFormat};
pub use hadamard::Rotation;

/// Fused GEMV over whole rows: `(packed, row_bytes, activations, activation_sums, out)`.
pub(crate) type GemvRowsFn = fn(&[u8], usize, &[f32], &[f32], &mut [f32]);

/// What a format provides.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    /// Weights per block.
    pub block: usize,
    /// Bytes per block.
    pub bytes: usize,
    /// Quantizes a row; the `f32` is the tensor's absmean (used by BitNet only).
    pub quantize: fn(&[f32], &mut [u8], f32),
    /// Dequantizes a row.
    pub dequantize: fn(&[u8], &mut [f32]),
    /// Fused GEMV over whole rows.
    pub gemv_rows: GemvRowsFn,
    /// Group size of the activation sums the kernel needs (0: none).
    pub aux_group: usize,
}

/// The kernels of `format`: the one place formats are dispatched.
pub(crate) fn kernels(format: WeightFormat) -> Kernels {
    use WeightFormat as F;
    let k = |block, bytes, quantize, dequantize, gemv_rows, aux_group| Kernels {
        block,
        bytes,
        quantize,
        dequantize,
        gemv_rows,
        aux_group,
    };
    match format {
        F::F32 => k(
            1,
            4,
            |x, o, _| reference::quantize_row(x, o),
            reference::dequantize_row,
            reference::gemv_rows,
            0,
        ),
        F::F16 => k(
            1,
            2,
            |x, o, _| f16::format::quantize_row(x, o),
            f16::format::dequantize_row,
            f16::format::gemv_rows,
            0,
        ),
        F::Q8_0 => k(
            q8_0::BLOCK,
            q8_0::BYTES,
            |x, o, _| q8_0::quantize_row(x, o),
            q8_0::dequantize_row,
            q8_0::gemv_rows,
            0,
        ),
        F::Q4_0 => k(
            q4_0::BLOCK,
            q4_0::BYTES,
            |x, o, _| q4_0::quantize_row(x, o),
            q4_0::dequantize_row,
            q4_0::gemv_rows,
            0,
        ),
        F::Q4_1 => k(
            q4_1::BLOCK,
            q4_1::BYTES,
            |x, o, _| q4_1::quantize_row(x, o),
            q4_1::dequantize_row,
            q4_1::gemv_rows,
            0,
        ),
        F::Q5_0 => k(
            q5_0::BLOCK,
            q5_0::BYTES,
            |x, o, _| q5_0::quantize_row(x, o),
            q5_0::dequantize_row,
            q5_0::gemv_rows,
            0,
        ),
        F::Q5_1 => k(
            q5_1::BLOCK,
            q5_1::BYTES,
            |x, o, _| q5_1::quantize_row(x, o),
            q5_1::dequantize_row,
            q5_1::gemv_rows,
            0,
        ),
        F::Q5K => k(
            q5_k::BLOCK,
            q5_k::BYTES,
            |x, o, _| q5_k::quantize_row(x, o),
            q5_k::dequantize_row,
            q5_k::gemv_rows,
            0,
        ),
        F::Q6K => k(
            q6_k::BLOCK,
            q6_k::BYTES,
            |x, o, _| q6_k::quantize_row(x, o),
            q6_k::dequantize_row,
            q6_k::gemv_rows,
            0,
        ),
        F::Iq4Nl => k(
            iq4_nl::BLOCK,
            iq4_nl::BYTES,
            |x, o, _| iq4_nl::quantize_row(x, o),
            iq4_nl::dequantize_row,
            iq4_nl::gemv_rows,
            0,
        ),
        F::Iq4Xs => k(
            iq4_xs::BLOCK,
            iq4_xs::BYTES,
            |x, o, _| iq4_xs::quantize_row(x, o),
            iq4_xs::dequantize_row,
            iq4_xs::gemv_rows,
            0,
        ),
        F::Mxfp4 => k(
            mxfp4::BLOCK,
            mxfp4::BYTES,
            |x, o, _| mxfp4::quantize_row(x, o),
            mxfp4::dequantize_row,
            mxfp4::gemv_rows,
            0,
        ),
        F::Q4K => k(
            q4_k::BLOCK,
            q4_k::BYTES,
            |x, o, _| q4_k::quantize_row(x, o),
            q4_k::dequantize_row,
            q4_k::gemv_rows,
            q4_k::AUX_GROUP,
        ),
        F::Q3K => k(
            q3_k::BLOCK,
            q3_k::BYTES,
            |x, o, _| q3_k::quantize_row(x, o),
            q3_k::dequantize_row,
            q3_k::gemv_rows,
            0,
        ),
        F::Q2K => k(
            q2_k::BLOCK,
            q2_k::BYTES,
            |x, o, _| q2_k::quantize_row(x, o),
            q2_k::dequantize_row,
            q2_k::gemv_rows,
            q2_k::AUX_GROUP,
        ),
        F::TQ2_0 => k(
            tq2_0::BLOCK,
            tq2_0::BYTES,
            |x, o, _| tq2_0::quantize_row(x, o),
            tq2_0::dequantize_row,
            tq2_0::gemv_rows,
            0,
        ),
        F::TQ1_0 => k(
            tq1_0::BLOCK,
            tq1_0::BYTES,
            |x, o, _| tq1_0::quantize_row(x, o),
            tq1_0::dequantize_row,
            tq1_0::gemv_rows,
            0,
        ),
        F::Bitnet => k(
            tq2_0::BLOCK,
            tq2_0::BYTES,
            |x, o, g| bitnet::quantize_row(g, x, o),
            tq2_0::dequantize_row,
            tq2_0::gemv_rows,
            0,
        ),
        F::Piq3 => k(
            grid::BLOCK,
            grid::bytes(3),
            |x, o, _| pi::quantize_row(3, 4, pi::Calibration::Seed, x, o),
            |b, o| pi::dequantize_row(3, 4, b, o),
            pi::piq3::gemv_rows,
            0,
        ),
        F::Piq2 => k(
            grid::BLOCK,
            grid::bytes(2),
            |x, o, _| pi::quantize_row(2, 3, pi::Calibration::Seed, x, o),
            |b, o| pi::dequantize_row(2, 3, b, o),
            pi::piq2::gemv_rows,
            0,
        ),
        F::Uq4 => k(
            grid::BLOCK,
            grid::bytes(4),
            |x, o, _| uniform::quantize_row(4, x, o),
            |b, o| uniform::dequantize_row(4, b, o),
            uniform::uq4::gemv_rows,
            0,
        ),
        F::Uq3 => k(
            grid::BLOCK,
            grid::bytes(3),
            |x, o, _| uniform::quantize_row(3, x, o),
            |b, o| uniform::dequantize_row(3, b, o),
            uniform::uq3::gemv_rows,
            0,
        ),
        F::Uq2 => k(
            grid::BLOCK,
            grid::bytes(2),
            |x, o, _| uniform::quantize_row(2, x, o),
            |b, o| uniform::dequantize_row(2, b, o),
            uniform::uq2::gemv_rows,
            0,
        ),
    }
}

/// Integer GEMV over whole rows: `(packed, row_bytes, quantized activation, out)`.
pub(crate) type IntGemvRowsFn = fn(&[u8], usize, &act::Q8Act, &mut [f32]);
/// Integer GEMM over whole rows: `(packed, row_bytes, quantized activations, out)`, out
/// row-major by weight row (`rows × tokens`).
pub(crate) type IntGemmRowsFn = fn(&[u8], usize, &[act::Q8Act], &mut [f32]);

/// A format's integer kernels.
#[derive(Clone, Copy)]
pub(crate) struct IntKernels {
    /// The activation blocks they take.
    pub act: act::ActKind,
    /// One token.
    pub gemv_rows: IntGemvRowsFn,
    /// Several tokens, each row reused across them.
    pub gemm_rows: IntGemmRowsFn,
}

/// Which kernel a matrix-vector product runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Weights dequantized against the f32 activation: the reference (exact up to f32
    /// rounding).
    F32,
    /// The activation quantized to 8-bit blocks once per product, integer dot products with
    /// the packed weights, one scale multiply per block (as ggml does). Q8_0, Q6_K, Q5_1,
    /// Q5_0, Q5_K, Q4_1, Q4_0, IQ4_NL, Q4_K, IQ4_XS, MXFP4, Q3_K and Q2_K; other formats fall
    /// back to [`Kernel::F32`].
    Int8,
}

impl Kernel {
    /// The name reports use.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::F32 => "f32",
            Kernel::Int8 => "int8",
        }
    }

    /// The kernel `format` actually runs when `self` is asked for.
    pub fn for_format(self, format: WeightFormat) -> Kernel {
        match self {
            Kernel::Int8 if int_kernels(format).is_some() => Kernel::Int8,
            _ => Kernel::F32,
        }
    }
}

impl std::str::FromStr for Kernel {
    type Err = String;

    fn from_str(s: &str) -> Result<Kernel, String> {
        match s {
            "f32" => Ok(Kernel::F32),
            "int8" => Ok(Kernel::Int8),
            _ => Err(format!("`{s}`: expected f32 or int8")),
        }
    }
}

/// The integer kernel of `format` and the activation blocks it takes, if it has one.
pub(crate) fn int_kernels(format: WeightFormat) -> Option<IntKernels> {
    use WeightFormat as F;
    use act::ActKind as A;
    let k = |act, gemv_rows, gemm_rows| {
        Some(IntKernels {
            act,
            gemv_rows,
            gemm_rows,
        })
    };
    match format {
        F::Q8_0 => k(A::Q8_0, q8_0::int_gemv_rows, q8_0::int_gemm_rows),
        F::Q5_1 => k(A::Q8_0, q5_1::int_gemv_rows, q5_1::int_gemm_rows),
        F::Q5_0 => k(A::Q8_0, q5_0::int_gemv_rows, q5_0::int_gemm_rows),
        F::Q4_1 => k(A::Q8_0, q4_1::int_gemv_rows, q4_1::int_gemm_rows),
        F::Q4_0 => k(A::Q8_0, q4_0::int_gemv_rows, q4_0::int_gemm_rows),
        F::Iq4Nl => k(A::Q8_0, iq4_nl::int_gemv_rows, iq4_nl::int_gemm_rows),
        F::Iq4Xs => k(A::Q8K, iq4_xs::int_gemv_rows, iq4_xs::int_gemm_rows),
        F::Mxfp4 => k(A::Q8_0, mxfp4::int_gemv_rows, mxfp4::int_gemm_rows),
        F::Q6K => k(A::Q8K, q6_k::int_gemv_rows, q6_k::int_gemm_rows),
        F::Q5K => k(A::Q8K, q5_k::int_gemv_rows, q5_k::int_gemm_rows),
        F::Q4K => k(A::Q8K, q4_k::int_gemv_rows, q4_k::int_gemm_rows),
        F::Q3K => k(A::Q8K, q3_k::int_gemv_rows, q3_k::int_gemm_rows),
        F::Q2K => k(A::Q8K, q2_k::int_gemv_rows, q2_k::int_gemm_rows),
        _ => None,
    }
}

/// A matrix of `rows × cols` weights packed in a format, rows contiguous (the ggml layout
/// where the format has one), optionally quantized in a rotated basis.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedMatrix {
    /// The format.
    pub format: WeightFormat,
    /// Output dimension.
    pub rows: usize,
    /// Input dimension (a multiple of the format's block).
    pub cols: usize,
    /// Packed rows.
    pub data: Vec<u8>,
    /// The rotation the rows were quantized in, if any.
    pub rotation: Option<Rotation>,
}

impl QuantizedMatrix {
    /// Quantizes `w` (row-major `rows × cols`) to `format`, after rotating every row by
    /// `rotation` if given. Rows are quantized in parallel; the result does not depend on the
    /// thread count. Fails (with the reason) when `cols` is not a whole number of blocks.
    /// Refuses non-finite weights, naming the row and column of the first (see
    /// [`QuantizedMatrix::check_representable`] for weights too large for a format).
    pub fn quantize(
        format: WeightFormat,
        rows: usize,
        cols: usize,
        w: &[f32],
        rotation: Option<Rotation>,
    ) -> Result<QuantizedMatrix, String> {
        assert_eq!(w.len(), rows * cols, "weights are rows × cols");
        let k = kernels(format);
        if cols == 0 || !cols.is_multiple_of(k.block) {
            return Err(format!(
                "{format} packs rows in blocks of {} weights; a row of {cols} is not a whole number of blocks",
                k.block
            ));
        }
        if let Some(r) = &rotation {
            assert_eq!(r.len(), cols, "rotation length");
        }
        let row_bytes = cols / k.block * k.bytes;
        let rotated: Option<Vec<f32>> = rotation.as_ref().map(|r| {
            let mut v = w.to_vec();
            v.par_chunks_mut(cols).for_each(|row| r.rotate(row));
            v
        });
        let source = rotated.as_deref().unwrap_or(w);
        if let Some(i) = w.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "row {}, column {}: {} is not a finite weight",
                i / cols,
                i % cols,
                w[i]
            ));
        }
        let gamma = if format == WeightFormat::Bitnet {
            bitnet::absmean(source)
        } else {
            0.0
        };
        let mut data = vec![0u8; rows * row_bytes];
        data.par_chunks_mut(row_bytes)
            .zip(source.par_chunks(cols))
            .for_each(|(out, row)| (k.quantize)(row, out, gamma));
        Ok(QuantizedMatrix {
            format,
            rows,
            cols,
            data,
            rotation,
        })
    }

    /// Refuses a matrix whose stored values overflowed: every format but f32 stores f16 values
    /// (the f16 format itself, and the f16 block scales of the ggml formats), and weights large
    /// enough to overflow one dequantize to infinity or NaN. ggml quantizes them so (and
    /// [`QuantizedMatrix::quantize`] matches it byte for byte); the input boundaries call this
    /// to refuse such a matrix in one line, naming the row and block. `w` is the matrix given
    /// to `quantize`.
    pub fn check_representable(&self, w: &[f32]) -> Result<(), String> {
        if self.format == WeightFormat::F32 || self.data.is_empty() {
            return Ok(());
        }
        let (cols, k) = (self.cols, kernels(self.format));
        let bad = self
            .data
            .par_chunks(self.row_bytes())
            .enumerate()
            .find_map_first(|(r, bytes)| {
                let mut back = vec![0.0f32; cols];
                (k.dequantize)(bytes, &mut back);
                back.iter().position(|v| !v.is_finite()).map(|c| (r, c))
            });
        let Some((r, c)) = bad else {
            return Ok(());
        };
        let block = c / k.block * k.block;
        let big = w[r * cols + block..r * cols + block + k.block]
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()));
        Err(if k.block == 1 {
            format!(
                "row {r}, column {c}: {} exceeds 65504, the largest value {} can store",
                crate::param::show32(w[r * cols + c]),
                self.format
            )
        } else {
            format!(
                "row {r}, columns {block}..{}: values up to {}{} overflow the f16 scale (largest 65504) {} stores the block with",
                block + k.block,
                crate::param::show32(big),
                if self.rotation.is_some() {
                    " (before the Hadamard rotation)"
                } else {
                    ""
                },
                self.format
            )
        })
    }

    /// Bytes of one packed row.
    pub fn row_bytes(&self) -> usize {
        let k = kernels(self.format);
        self.cols / k.block * k.bytes
    }

    /// Row `r` dequantized, in the original (unrotated) basis.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let k = kernels(self.format);
        let rb = self.row_bytes();
        (k.dequantize)(&self.data[r * rb..(r + 1) * rb], out);
        if let Some(rot) = &self.rotation {
            rot.unrotate(out);
        }
    }

    /// The whole matrix dequantized, in the original basis.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows * self.cols];
        if out.is_empty() {
            return out;
        }
        out.par_chunks_mut(self.cols)
            .enumerate()
            .for_each(|(r, row)| self.dequantize_row(r, row));
        out
    }

    /// The whole matrix dequantized in the basis it is stored in: the rotated one when it was
    /// quantized with a rotation (what `moesim quant dump --dequantized` writes beside the
    /// packed bytes), else the original.
    pub fn dequantize_stored(&self) -> Vec<f32> {
        let k = kernels(self.format);
        let mut out = vec![0.0f32; self.rows * self.cols];
        out.par_chunks_mut(self.cols)
            .zip(self.data.par_chunks(self.row_bytes()))
            .for_each(|(row, bytes)| (k.dequantize)(bytes, row));
        out
    }

    /// `x` in the basis the rows were quantized in (borrowed when there is no rotation).
    fn rotated<'a>(&self, x: &'a [f32]) -> Cow<'a, [f32]> {
        assert_eq!(x.len(), self.cols, "x has the matrix's input dimension");
        match &self.rotation {
            Some(r) => {
                let mut xr = x.to_vec();
                r.rotate(&mut xr);
                Cow::Owned(xr)
            }
            None => Cow::Borrowed(x),
        }
    }

    fn prepare<'a>(&self, x: &'a [f32]) -> (Cow<'a, [f32]>, Vec<f32>) {
        let xr = self.rotated(x);
        let mut aux = Vec::new();
        let group = kernels(self.format).aux_group;
        if group > 0 {
            gemv::group_sums(&xr, group, &mut aux);
        }
        (xr, aux)
    }

    /// `y = W · x` with the fused kernel, rows split over the row pool (as many threads as the
    /// rayon pool has).
    pub fn gemv(&self, x: &[f32], y: &mut [f32]) {
        assert_eq!(y.len(), self.rows, "y has the matrix's output dimension");
        let (xr, aux) = self.prepare(x);
        let k = kernels(self.format);
        let rb = self.row_bytes();
        if rb == 0 {
            // Rows of no weights.
            y.fill(0.0);
            return;
        }
        split_rows(&self.data, rb, y, 1, true, |rows, ys| {
            (k.gemv_rows)(rows, rb, &xr, &aux, ys)
        });
    }

    /// `y = W · x` with `kernel` (falling back to f32 where the format has no integer
    /// kernel), rows split over the row pool when `parallel`.
    pub fn gemv_with(&self, kernel: Kernel, x: &[f32], y: &mut [f32], parallel: bool) {
        match (kernel, int_kernels(self.format)) {
            (Kernel::Int8, Some(ik)) => {
                assert_eq!(y.len(), self.rows, "y has the matrix's output dimension");
                let act = act::Q8Act::new(ik.act, &self.rotated(x));
                int_gemv(
                    &self.data,
                    self.row_bytes(),
                    &act,
                    ik.gemv_rows,
                    y,
                    parallel,
                );
            }
            _ if parallel => self.gemv(x, y),
            _ => self.gemv_serial(x, y),
        }
    }

    /// `Y = W · X` for `n` tokens: `xs` holds them token-major (`n × cols`), `ys` receives
    /// `n × rows`. The integer kernel reads each packed row once for all tokens; the f32
    /// kernel runs `n` matrix-vector products (the reference).
    pub fn gemm_with(&self, kernel: Kernel, xs: &[f32], ys: &mut [f32], parallel: bool) {
        assert!(
            self.cols > 0 && xs.len().is_multiple_of(self.cols),
            "whole tokens"
        );
        let n = xs.len() / self.cols;
        assert_eq!(ys.len(), n * self.rows, "one output per token and row");
        if n == 1 {
            return self.gemv_with(kernel, xs, ys, parallel);
        }
        match (kernel, int_kernels(self.format)) {
            (Kernel::Int8, Some(ik)) if self.row_bytes() > 0 => {
                let quantize = |x: &[f32]| act::Q8Act::new(ik.act, &self.rotated(x));
                let acts: Vec<act::Q8Act> = if parallel {
                    xs.par_chunks_exact(self.cols).map(quantize).collect()
                } else {
                    xs.chunks_exact(self.cols).map(quantize).collect()
                };
                int_gemm(&self.data, self.row_bytes(), &acts, ik, ys, parallel);
            }
            _ => {
                for (x, y) in xs
                    .chunks_exact(self.cols)
                    .zip(ys.chunks_exact_mut(self.rows))
                {
                    if parallel {
                        self.gemv(x, y)
                    } else {
                        self.gemv_serial(x, y)
                    }
                }
            }
        }
    }

    /// `y = W · x` on the calling thread only.
    pub fn gemv_serial(&self, x: &[f32], y: &mut [f32]) {
        assert_eq!(y.len(), self.rows, "y has the matrix's output dimension");
        let (xr, aux) = self.prepare(x);
        if self.row_bytes() == 0 {
            y.fill(0.0);
            return;
        }
        (kernels(self.format).gemv_rows)(&self.data, self.row_bytes(), &xr, &aux, y);
    }
}

/// Weights a parallel task should at least hold, in packed bytes per token: enough that the
/// task's scheduling (tens of nanoseconds on a worker that is already awake) is lost in it.
const MIN_TASK_BYTES: usize = 64 * 1024;

/// Tasks per thread at most: a few, so that one busy or slower core does not hold up the
/// product, and no more, so that a small matrix is not cut into crumbs.
const TASKS_PER_THREAD: usize = 4;

/// Rows per parallel task of a product over `rows` packed rows of `row_bytes`, each used for
/// `tokens` tokens, on a pool of `threads`: the rows cut into at most `TASKS_PER_THREAD` tasks
/// per thread, each at least `MIN_TASK_BYTES` of work; `rows` (one task: no split) when the
/// matrix is too small to share.
fn rows_per_task(rows: usize, row_bytes: usize, tokens: usize, threads: usize) -> usize {
    let min_rows = (MIN_TASK_BYTES / (row_bytes * tokens).max(1)).max(1);
    let tasks = (threads * TASKS_PER_THREAD).max(1);
    rows.div_ceil(tasks).max(min_rows).min(rows.max(1))
}

/// The integer GEMV over `data`, split by rows over the pool when `parallel` and there is
/// more than one task's worth of rows.
fn int_gemv(
    data: &[u8],
    row_bytes: usize,
    act: &act::Q8Act,
    rows_fn: IntGemvRowsFn,
    y: &mut [f32],
    parallel: bool,
) {
    if row_bytes == 0 {
        y.fill(0.0);
        return;
    }
    split_rows(data, row_bytes, y, 1, parallel, |rows, ys| {
        rows_fn(rows, row_bytes, act, ys)
    });
}

/// Runs `f(rows, outputs)` over `data`'s packed rows (`row_bytes` each, `per_row` outputs
/// each in `y`): split by rows ([`rows_per_task`]) over this thread and the row pool's
/// helpers (`row_pool.rs`, as many threads in all as the current rayon pool has) when
/// `parallel` and the matrix is large enough to share, else in one call on this thread.
fn split_rows(
    data: &[u8],
    row_bytes: usize,
    y: &mut [f32],
    per_row: usize,
    parallel: bool,
    f: impl Fn(&[u8], &mut [f32]) + Sync,
) {
    let rows = y.len() / per_row.max(1);
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let per = rows_per_task(rows, row_bytes, per_row, threads);
    if threads > 1 && per < rows {
        let tasks = rows.div_ceil(per);
        // Each task writes its own rows of `y`; the pool hands out indices, so the slices
        // are cut here and each is taken by exactly one task.
        let outputs: Vec<std::sync::Mutex<&mut [f32]>> = y
            .chunks_mut(per * per_row)
            .map(std::sync::Mutex::new)
            .collect();
        row_pool::run(threads, tasks, &|i| {
            let mut ys = outputs[i].lock().unwrap_or_else(|e| e.into_inner());
            let start = i * per * row_bytes;
            let end = (start + per * row_bytes).min(data.len());
            f(&data[start..end], &mut ys)
        });
    } else {
        f(data, y);
    }
}

/// The integer GEMM of `acts` (one quantized activation per token) with the packed rows
/// `data` (`row_bytes` each) into `ys` (token-major, `acts.len() × rows`).
fn int_gemm(
    data: &[u8],
    row_bytes: usize,
    acts: &[act::Q8Act],
    ik: IntKernels,
    ys: &mut [f32],
    parallel: bool,
) {
    let n = acts.len();
    let rows = ys.len() / n.max(1);
    let mut by_row = vec![0.0f32; n * rows];
    split_rows(data, row_bytes, &mut by_row, n, parallel, |r, y| {
        (ik.gemm_rows)(r, row_bytes, acts, y)
    });
    for (r, yr) in by_row.chunks_exact(n).enumerate() {
        for (t, &v) in yr.iter().enumerate() {
            ys[t * rows + r] = v;
        }
    }
}

/// `Y = W · X` for `n` tokens on the packed rows `data` of `format` (each `cols` wide, no
/// rotation): `xs` holds the tokens token-major (`n × cols`), `ys` receives `n × rows`. The
/// integer kernel multiplies each unpacked weight block with a tile of tokens (the batched
/// path of [`QuantizedMatrix::gemm_with`], on borrowed bytes); the f32 kernel, and formats
/// without an integer kernel, run `n` matrix-vector products.
pub fn gemm_packed_with(
    kernel: Kernel,
    format: WeightFormat,
    data: &[u8],
    cols: usize,
    xs: &[f32],
    ys: &mut [f32],
    parallel: bool,
) {
    assert!(cols > 0 && xs.len().is_multiple_of(cols), "whole tokens");
    let n = xs.len() / cols;
    assert!(
        n > 0 && ys.len().is_multiple_of(n),
        "one output row per token"
    );
    let rows = ys.len() / n;
    match (kernel, int_kernels(format)) {
        (Kernel::Int8, Some(ik)) if n > 1 => {
            let k = kernels(format);
            assert!(cols.is_multiple_of(k.block), "rows of whole blocks");
            let rb = cols / k.block * k.bytes;
            assert_eq!(data.len(), rows * rb, "one packed row per output");
            if rb == 0 {
                ys.fill(0.0);
                return;
            }
            let quantize = |x: &[f32]| act::Q8Act::new(ik.act, x);
            let acts: Vec<act::Q8Act> = if parallel {
                xs.par_chunks_exact(cols).map(quantize).collect()
            } else {
                xs.chunks_exact(cols).map(quantize).collect()
            };
            int_gemm(data, rb, &acts, ik, ys, parallel);
        }
        _ => {
            for (x, y) in xs.chunks_exact(cols).zip(ys.chunks_exact_mut(rows)) {
                gemv_packed_with(kernel, format, data, cols, x, y, parallel);
            }
        }
    }
}

/// [`gemv_packed`] with a kernel choice: the integer kernel where `format` has one and
/// `kernel` asks for it.
pub fn gemv_packed_with(
    kernel: Kernel,
    format: WeightFormat,
    data: &[u8],
    cols: usize,
    x: &[f32],
    y: &mut [f32],
    parallel: bool,
) {
    match (kernel, int_kernels(format)) {
        (Kernel::Int8, Some(ik)) => {
            let k = kernels(format);
            assert!(cols.is_multiple_of(k.block), "rows of whole blocks");
            let rb = cols / k.block * k.bytes;
            assert_eq!(data.len(), y.len() * rb, "one packed row per output");
            assert_eq!(x.len(), cols, "x has the matrix's input dimension");
            let act = act::Q8Act::new(ik.act, x);
            int_gemv(data, rb, &act, ik.gemv_rows, y, parallel);
        }
        _ => gemv_packed(format, data, cols, x, y, parallel),
    }
}

/// `y = W · x` for the packed rows `data` of `format` (each `cols` wide, no rotation): the same
/// kernels as [`QuantizedMatrix::gemv`], on borrowed bytes (a buffer read from storage). With
/// `parallel`, rows are split over the row pool (`row_pool.rs`, as many threads as the current
/// rayon pool); otherwise the calling thread does all.
pub fn gemv_packed(
    format: WeightFormat,
    data: &[u8],
    cols: usize,
    x: &[f32],
    y: &mut [f32],
    parallel: bool,
) {
    let k = kernels(format);
    assert!(cols.is_multiple_of(k.block), "rows of whole blocks");
    let rb = cols / k.block * k.bytes;
    assert_eq!(data.len(), y.len() * rb, "one packed row per output");
    assert_eq!(x.len(), cols, "x has the matrix's input dimension");
    if rb == 0 {
        y.fill(0.0);
        return;
    }
    let mut aux = Vec::new();
    if k.aux_group > 0 {
        gemv::group_sums(x, k.aux_group, &mut aux);
    }
    split_rows(data, rb, y, 1, parallel, |rows, ys| {
        (k.gemv_rows)(rows, rb, x, &aux, ys)
    });
}

/// Quantizes `w` with the PiQ quantizer at `bits` bits and constant `k` with α fitted per
/// block to minimise squared error (not a storage format of its own: the evaluation's
/// demonstration that π cancels into a fitted scale), and returns it dequantized, in the
/// original basis.
pub fn pi_fitted_round_trip(
    bits: u32,
    k: u32,
    rows: usize,
    cols: usize,
    w: &[f32],
    rotation: Option<&Rotation>,
) -> Vec<f32> {
    assert_eq!(w.len(), rows * cols);
    assert_eq!(cols % grid::BLOCK, 0, "rows of whole 256-weight blocks");
    let row_bytes = cols / grid::BLOCK * grid::bytes(bits);
    let mut out = w.to_vec();
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(cols).for_each(|row| {
        if let Some(r) = rotation {
            r.rotate(row);
        }
        let mut packed = vec![0u8; row_bytes];
        pi::quantize_row(bits, k, pi::Calibration::Fitted, row, &mut packed);
        pi::dequantize_row(bits, k, &packed, row);
        if let Some(r) = rotation {
            r.unrotate(row);
        }
    });
    out
}

/// `y = W · x` for a row-major f32 matrix, in f64 accumulation (the test reference).
pub fn reference_gemv(w: &[f32], cols: usize, x: &[f32], y: &mut [f32]) {
    for (row, yr) in w.chunks_exact(cols).zip(y.iter_mut()) {
        *yr = row
            .iter()
            .zip(x)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum::<f64>() as f32;
    }
}

/// Dequantizes `bytes` of the ggml type `ggml_name` (`Q4_K`, `IQ2_XXS`, `F16`, ...) into `out`
/// (whole blocks: `out.len()` values from exactly their bytes), as llama.cpp and `gguf` decode
/// them; the reason when moesim cannot decode the type or the lengths disagree.
pub fn dequantize_ggml(ggml_name: &str, bytes: &[u8], out: &mut [f32]) -> Result<(), String> {
    let lower = ggml_name.to_ascii_lowercase();
    let fit = |block: usize, block_bytes: usize| -> Result<(), String> {
        if !out.len().is_multiple_of(block) || bytes.len() != out.len() / block * block_bytes {
            return Err(format!(
                "{} values of {ggml_name} take {} bytes, not {}",
                out.len(),
                out.len() / block * block_bytes,
                bytes.len()
            ));
        }
        Ok(())
    };
    if lower == "bf16" {
        fit(1, 2)?;
        for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            *o = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
        }
        return Ok(());
    }
    if let Some(iq) = iquant::IqFormat::ALL
        .into_iter()
        .find(|f| f.name().eq_ignore_ascii_case(ggml_name))
    {
        fit(iq.block_values(), iq.block_bytes())?;
        iq.dequantize_row(bytes, out);
        return Ok(());
    }
    let format = match lower.parse::<WeightFormat>() {
        Ok(f)
            if !matches!(
                f,
                WeightFormat::Bitnet
                    | WeightFormat::Piq3
                    | WeightFormat::Piq2
                    | WeightFormat::Uq4
                    | WeightFormat::Uq3
                    | WeightFormat::Uq2
            ) =>
        {
            f
        }
        _ => return Err(format!("moesim cannot decode ggml type {ggml_name}")),
    };
    let k = kernels(format);
    fit(k.block, k.bytes)?;
    (k.dequantize)(bytes, out);
    Ok(())
}
