//! ggml TQ1_0: blocks of 256 ternary weights, `qs: u8[48], qh: u8[4], d: f16` (54 bytes,
//! 1.6875 bpw): five trits per byte as a base-3 fixed-point fraction,
//! `byte = ceil(Σ t_k 3^(4−k) · 256 / 243)`, decoded by `((byte · 3^n) mod 256) · 3 >> 8`.
//! Elements 0..160 are bytes 0..32 × 5 trits (element `32n + m`), 160..240 bytes 32..48
//! (element `160 + 16n + m`), 240..256 the four `qh` bytes × 4 trits (element `240 + 4n + j`).
//! Quantize as TQ2_0 (`d = absmax`, `lroundf(x / d)`).

use super::f16::{read_f16, write_f16};
use super::gemv::row_kernels;

pub(crate) const BLOCK: usize = 256;
pub(crate) const BYTES: usize = 54;

const POW3: [u8; 5] = [1, 3, 9, 27, 81];

#[inline(always)]
fn encode(trits: impl Iterator<Item = u8>) -> u8 {
    let q = trits.fold(0u16, |q, t| q * 3 + t as u16);
    (q * 256).div_ceil(243) as u8
}

#[inline(always)]
fn trit(byte: u8, n: usize) -> i32 {
    let q = byte.wrapping_mul(POW3[n]);
    ((q as u16 * 3) >> 8) as i32
}

pub(crate) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BYTES)) {
        let d = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let t = |i: usize| ((xb[i] * id).round() as i32 + 1) as u8;
        for (m, byte) in yb.iter_mut().enumerate().take(32) {
            *byte = encode((0..5).map(|n| t(m + 32 * n)));
        }
        for m in 0..16 {
            yb[32 + m] = encode((0..5).map(|n| t(160 + m + 16 * n)));
        }
        for j in 0..4 {
            // Four trits, shifted up one trit position.
            yb[48 + j] = encode((0..4).map(|n| t(240 + j + 4 * n)).chain(std::iter::once(0)));
        }
        write_f16(&mut yb[52..54], d);
    }
}

pub(crate) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (yb, ob) in b.chunks_exact(BYTES).zip(out.chunks_exact_mut(BLOCK)) {
        let d = read_f16(&yb[52..54]);
        for n in 0..5 {
            for m in 0..32 {
                ob[32 * n + m] = (trit(yb[m], n) - 1) as f32 * d;
            }
            for m in 0..16 {
                ob[160 + 16 * n + m] = (trit(yb[32 + m], n) - 1) as f32 * d;
            }
        }
        for n in 0..4 {
            for j in 0..4 {
                ob[240 + 4 * n + j] = (trit(yb[48 + j], n) - 1) as f32 * d;
            }
        }
    }
}

#[inline(always)]
fn dot_row(row: &[u8], x: &[f32], _aux: &[f32]) -> f32 {
    let mut acc = [0.0f32; 32];
    let mut tail = 0.0f32;
    for (yb, xb) in row.chunks_exact(BYTES).zip(x.chunks_exact(BLOCK)) {
        let d = read_f16(&yb[52..54]);
        let mut t = [0.0f32; 32];
        for n in 0..5 {
            let xs = &xb[32 * n..32 * n + 32];
            for m in 0..32 {
                t[m] += (trit(yb[m], n) - 1) as f32 * xs[m];
            }
            let xs = &xb[160 + 16 * n..160 + 16 * n + 16];
            for m in 0..16 {
                t[m] += (trit(yb[32 + m], n) - 1) as f32 * xs[m];
            }
        }
        let mut s = 0.0f32;
        for n in 0..4 {
            for j in 0..4 {
                s += (trit(yb[48 + j], n) - 1) as f32 * xb[240 + 4 * n + j];
            }
        }
        for m in 0..32 {
            acc[m] += d * t[m];
        }
        tail += d * s;
    }
    acc.iter().sum::<f32>() + tail
}

row_kernels!(dot_row);
