//! Proxy experts: SwiGLU FFNs whose weights are drawn from a seeded distribution or supplied
//! by a [`WeightSource`] (real weight files are read outside the core, by `crate::weights`).
//!
//! Expert `i` of layer `l` computes `y = W2 · (silu(W1 · h) ⊙ (W3 · h))`, with `W1` and `W3` of
//! `ffn × hidden` and `W2` of `hidden × ffn` (row-major, one output per row, as the GEMV
//! kernels take them). Synthetic weights are N(0, 1) or Student-t draws scaled by
//! `1/sqrt(fan-in)`, so activations stay of order one; an optional share of experts gets
//! outlier input channels, scaled up, as real checkpoints have.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::quant::eval::{WeightDistribution, sample};
use crate::quant::{QuantizedMatrix, WeightFormat};
use crate::seed::derive_seed;

/// One expert's weights.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpertWeights {
    /// Hidden width d.
    pub hidden: usize,
    /// FFN width f.
    pub ffn: usize,
    /// Gate projection, `ffn × hidden`.
    pub w1: Vec<f32>,
    /// Down projection, `hidden × ffn`.
    pub w2: Vec<f32>,
    /// Up projection, `ffn × hidden`.
    pub w3: Vec<f32>,
}

/// Where expert weights come from.
pub trait WeightSource: Sync {
    /// Hidden width.
    fn hidden(&self) -> usize;
    /// FFN width.
    fn ffn(&self) -> usize;
    /// The weights of expert `expert` of MoE layer `layer`.
    fn expert(&self, layer: u32, expert: u32) -> Result<ExpertWeights, String>;
}

/// Experts with outlier channels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outliers {
    /// Share of experts that have them.
    pub experts: f64,
    /// Share of their input channels that are outliers.
    pub channels: f64,
    /// Factor the outlier channels' weights are multiplied by.
    pub scale: f64,
}

/// Seeded synthetic experts.
#[derive(Debug, Clone)]
pub struct SyntheticExperts {
    /// Hidden width (a multiple of 256).
    pub hidden: usize,
    /// FFN width (a multiple of 256).
    pub ffn: usize,
    /// Weight distribution.
    pub distribution: WeightDistribution,
    /// Outlier channels, if any.
    pub outliers: Option<Outliers>,
    /// Seed; expert `(l, i)` draws from a stream derived from it.
    pub seed: u64,
    /// Experts per layer (to number the streams).
    pub experts_per_layer: u32,
}

impl WeightSource for SyntheticExperts {
    fn hidden(&self) -> usize {
        self.hidden
    }

    fn ffn(&self) -> usize {
        self.ffn
    }

    fn expert(&self, layer: u32, expert: u32) -> Result<ExpertWeights, String> {
        let (d, f) = (self.hidden, self.ffn);
        let id = layer as u64 * self.experts_per_layer as u64 + expert as u64;
        let stream = derive_seed(self.seed, id);
        let draw = |n: usize, k: u64, fan_in: usize| {
            let mut v = sample(self.distribution, n, derive_seed(stream, k));
            let s = 1.0 / (fan_in as f32).sqrt();
            v.iter_mut().for_each(|x| *x *= s);
            v
        };
        let mut w1 = draw(f * d, 1, d);
        let w2 = draw(d * f, 2, f);
        let mut w3 = draw(f * d, 3, d);
        if let Some(o) = self.outliers {
            let mut rng = StdRng::seed_from_u64(derive_seed(stream, 4));
            if rng.random::<f64>() < o.experts {
                let s = o.scale as f32;
                for c in 0..d {
                    if rng.random::<f64>() < o.channels {
                        for r in 0..f {
                            w1[r * d + c] *= s;
                            w3[r * d + c] *= s;
                        }
                    }
                }
            }
        }
        Ok(ExpertWeights {
            hidden: d,
            ffn: f,
            w1,
            w2,
            w3,
        })
    }
}

/// An expert in one format, ready to run.
#[derive(Debug, Clone)]
pub struct QuantExpert {
    w1: QuantizedMatrix,
    w2: QuantizedMatrix,
    w3: QuantizedMatrix,
}

impl QuantExpert {
    /// Quantizes `w` to `format` with the real kernels.
    pub fn new(w: &ExpertWeights, format: WeightFormat) -> Result<QuantExpert, String> {
        let (d, f) = (w.hidden, w.ffn);
        let quantize = |name: &str, rows, cols, x: &[f32]| {
            let q = QuantizedMatrix::quantize(format, rows, cols, x, None)
                .and_then(|q| q.check_representable(x).map(|()| q));
            q.map_err(|r| format!("{name}: {r}"))
        };
        Ok(QuantExpert {
            w1: quantize("w1", f, d, &w.w1)?,
            w2: quantize("w2", d, f, &w.w2)?,
            w3: quantize("w3", f, d, &w.w3)?,
        })
    }

    /// `(Σ w², Σ (w − ŵ)²)` over the three matrices, against the original weights `w`.
    pub fn squared_error(&self, w: &ExpertWeights) -> (f64, f64) {
        let mut signal = 0.0;
        let mut noise = 0.0;
        for (q, orig) in [(&self.w1, &w.w1), (&self.w2, &w.w2), (&self.w3, &w.w3)] {
            for (&a, &b) in orig.iter().zip(&q.dequantize()) {
                signal += a as f64 * a as f64;
                noise += (a as f64 - b as f64) * (a as f64 - b as f64);
            }
        }
        (signal, noise)
    }

    /// `y = W2 · (silu(W1 · h) ⊙ (W3 · h))`, on one thread, with the f32 (reference)
    /// kernels: the quality path's arithmetic.
    pub fn forward(&self, h: &[f32], y: &mut [f32]) {
        self.forward_with(crate::quant::Kernel::F32, h, y)
    }

    /// [`QuantExpert::forward`] with the chosen kernel (the host's decode runs the one its
    /// `--kernel` names).
    pub fn forward_with(&self, kernel: crate::quant::Kernel, h: &[f32], y: &mut [f32]) {
        swiglu(
            self.w1.format,
            self.w1.cols,
            self.w1.rows,
            [&self.w1.data, &self.w3.data, &self.w2.data],
            h,
            y,
            false,
            kernel,
        );
    }

    /// The packed bytes `W1 ‖ W3 ‖ W2`, as an expert store holds them (see
    /// [`swiglu_packed`]).
    pub fn packed(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.w1.data.len() * 3);
        v.extend_from_slice(&self.w1.data);
        v.extend_from_slice(&self.w3.data);
        v.extend_from_slice(&self.w2.data);
        v
    }
}

/// `y = W2 · (silu(W1 · h) ⊙ (W3 · h))` for an expert packed as `W1 ‖ W3 ‖ W2` in `format`
/// (hidden width `hidden`, FFN width `ffn`); with [`Kernel::F32`](crate::quant::Kernel) the
/// same arithmetic as [`QuantExpert::forward`].
#[allow(clippy::too_many_arguments)]
pub fn swiglu_packed(
    format: WeightFormat,
    hidden: usize,
    ffn: usize,
    packed: &[u8],
    h: &[f32],
    y: &mut [f32],
    parallel: bool,
    kernel: crate::quant::Kernel,
) {
    let m = format.bytes_for((hidden * ffn) as u64) as usize;
    assert!(packed.len() >= 3 * m, "a whole packed expert");
    swiglu(
        format,
        hidden,
        ffn,
        [&packed[..m], &packed[m..2 * m], &packed[2 * m..3 * m]],
        h,
        y,
        parallel,
        kernel,
    );
}

/// [`swiglu_packed`] for `n` tokens at once: `hs` holds them token-major (`n × hidden`), `ys`
/// receives `n × hidden`. Each of the three products runs as one GEMM
/// ([`crate::quant::gemm_packed_with`]), the batched path of prefill and batched decode.
#[allow(clippy::too_many_arguments)]
pub fn swiglu_packed_batch(
    format: WeightFormat,
    hidden: usize,
    ffn: usize,
    packed: &[u8],
    hs: &[f32],
    ys: &mut [f32],
    parallel: bool,
    kernel: crate::quant::Kernel,
) {
    use crate::quant::gemm_packed_with as gemm;
    let m = format.bytes_for((hidden * ffn) as u64) as usize;
    assert!(packed.len() >= 3 * m, "a whole packed expert");
    assert!(
        hidden > 0 && hs.len().is_multiple_of(hidden),
        "whole tokens"
    );
    assert_eq!(ys.len(), hs.len(), "one output per input");
    let n = hs.len() / hidden;
    let (w1, w3, w2) = (&packed[..m], &packed[m..2 * m], &packed[2 * m..3 * m]);
    let mut a = vec![0.0f32; n * ffn];
    let mut b = vec![0.0f32; n * ffn];
    gemm(kernel, format, w1, hidden, hs, &mut a, parallel);
    gemm(kernel, format, w3, hidden, hs, &mut b, parallel);
    for (x, &u) in a.iter_mut().zip(&b) {
        *x = *x / (1.0 + (-*x).exp()) * u;
    }
    gemm(kernel, format, w2, ffn, &a, ys, parallel);
}

#[allow(clippy::too_many_arguments)]
fn swiglu(
    format: WeightFormat,
    hidden: usize,
    ffn: usize,
    [w1, w3, w2]: [&[u8]; 3],
    h: &[f32],
    y: &mut [f32],
    parallel: bool,
    kernel: crate::quant::Kernel,
) {
    use crate::quant::gemv_packed_with as gemv;
    let mut a = vec![0.0f32; ffn];
    let mut b = vec![0.0f32; ffn];
    gemv(kernel, format, w1, hidden, h, &mut a, parallel);
    gemv(kernel, format, w3, hidden, h, &mut b, parallel);
    for (x, &u) in a.iter_mut().zip(&b) {
        *x = *x / (1.0 + (-*x).exp()) * u;
    }
    gemv(kernel, format, w2, ffn, &a, y, parallel);
}
