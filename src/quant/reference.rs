//! The f32 reference "format": weights stored as little-endian f32, the quality baseline
//! every quantized format is compared with.

use super::gemv::row_kernels;

pub(crate) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(4).zip(x) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}

pub(crate) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (o, v) in out.iter_mut().zip(b.chunks_exact(4)) {
        *o = f32::from_le_bytes([v[0], v[1], v[2], v[3]]);
    }
}

#[inline(always)]
fn dot_row(row: &[u8], x: &[f32], _aux: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let full = x.len() / 16 * 16;
    for (wb, xb) in row.chunks_exact(64).zip(x.chunks_exact(16)) {
        for j in 0..16 {
            acc[j] += f32::from_le_bytes([wb[4 * j], wb[4 * j + 1], wb[4 * j + 2], wb[4 * j + 3]])
                * xb[j];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (wb, xv) in row[4 * full..].chunks_exact(4).zip(&x[full..]) {
        s += f32::from_le_bytes([wb[0], wb[1], wb[2], wb[3]]) * xv;
    }
    s
}

row_kernels!(dot_row);
