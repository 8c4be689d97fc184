//! ggml TQ2_0: blocks of 256 ternary weights, `qs: u8[64], d: f16` (66 bytes, 2.0625 bpw);
//! element `128h + 32n + m` sits in byte `32h + m`, bits `2n..2n+1`, as `q + 1`.
//! Quantize (ggml's `quantize_row_tq2_0_ref`): `d = absmax`, `q = lroundf(x / d)` in −1..1.
//! Dequantize `(q − 1) · d`. Meant for weights that are already ternary (BitNet); the `bitnet`
//! format writes absmean-ternarized weights in this layout.

use super::f16::{read_f16, write_f16};
use super::gemv::row_kernels;

pub(crate) const BLOCK: usize = 256;
pub(crate) const BYTES: usize = 66;

/// Packs 256 ternary codes (0..=2) and the scale.
pub(crate) fn pack(codes: &[u8; 256], d: f32, out: &mut [u8]) {
    for h in 0..2 {
        for m in 0..32 {
            let mut q = 0u8;
            for n in 0..4 {
                q |= (codes[128 * h + 32 * n + m] & 3) << (2 * n);
            }
            out[32 * h + m] = q;
        }
    }
    write_f16(&mut out[64..66], d);
}

pub(crate) fn quantize_row(x: &[f32], out: &mut [u8]) {
    let mut codes = [0u8; 256];
    for (xb, yb) in x.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BYTES)) {
        let d = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for (c, &v) in codes.iter_mut().zip(xb) {
            *c = ((v * id).round() as i32 + 1) as u8;
        }
        pack(&codes, d, yb);
    }
}

pub(crate) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (yb, ob) in b.chunks_exact(BYTES).zip(out.chunks_exact_mut(BLOCK)) {
        let d = read_f16(&yb[64..66]);
        for h in 0..2 {
            for n in 0..4 {
                for m in 0..32 {
                    let q = ((yb[32 * h + m] >> (2 * n)) & 3) as i8;
                    ob[128 * h + 32 * n + m] = (q - 1) as f32 * d;
                }
            }
        }
    }
}

#[inline(always)]
fn dot_row(row: &[u8], x: &[f32], _aux: &[f32]) -> f32 {
    let mut acc = [0.0f32; 32];
    for (yb, xb) in row.chunks_exact(BYTES).zip(x.chunks_exact(BLOCK)) {
        let d = read_f16(&yb[64..66]);
        let mut t = [0.0f32; 32];
        for h in 0..2 {
            let q = &yb[32 * h..32 * h + 32];
            for n in 0..4 {
                let xs = &xb[128 * h + 32 * n..128 * h + 32 * n + 32];
                for m in 0..32 {
                    t[m] += (((q[m] >> (2 * n)) & 3) as i32 - 1) as f32 * xs[m];
                }
            }
        }
        for m in 0..32 {
            acc[m] += d * t[m];
        }
    }
    acc.iter().sum()
}

row_kernels!(dot_row);
