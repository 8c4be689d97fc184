//! BitNet b1.58 absmean ternarization (Ma et al. 2024, arXiv 2402.17764):
//! `γ = mean|W|` over the whole matrix, `W̃ = RoundClip(W / (γ + ε), −1, 1)`, stored in TQ2_0
//! blocks with `d = γ` (2.0625 bpw; dequantized `W̃ · γ`, the TQ2_0 kernel). Post-training, on
//! weights that were not trained ternary, this loses most of the signal (about 5.8 dB SQNR on
//! Gaussian data, `quantization.md` §5.1); it is meant for ternary-trained checkpoints.

use super::tq2_0;

/// ε of the paper's RoundClip.
const EPS: f32 = 1e-6;

/// `γ`, the mean absolute value of the whole matrix.
pub(crate) fn absmean(w: &[f32]) -> f32 {
    let s: f64 = w.iter().map(|v| v.abs() as f64).sum();
    (s / w.len().max(1) as f64) as f32
}

pub(crate) fn quantize_row(gamma: f32, x: &[f32], out: &mut [u8]) {
    let mut codes = [0u8; 256];
    let inv = 1.0 / (gamma + EPS);
    for (xb, yb) in x
        .chunks_exact(tq2_0::BLOCK)
        .zip(out.chunks_exact_mut(tq2_0::BYTES))
    {
        for (c, &v) in codes.iter_mut().zip(xb) {
            *c = ((v * inv).round_ties_even().clamp(-1.0, 1.0) as i32 + 1) as u8;
        }
        tq2_0::pack(&codes, gamma, yb);
    }
}
