//! ggml IQ2_S (type 22): blocks of 256 values, `d: f16, qs: u8[32], signs: u8[32], qh: u8[8],
//! scales: u8[8]` (82 bytes, 2.5625 bits per weight; ggml declares `qs[64]`, the grid bytes then
//! the sign bytes). Group `4·ib + l` of 8 values indexes `iq2s_grid` with `qs[4ib + l]` plus bits
//! `2l..2l+1` of `qh[ib]` as bits 8–9, and takes its 8 signs from one byte (bit `j`: value `j`).
//! `scales[ib]` holds the 4-bit scales of sub-block `ib`'s halves, low nibble first.
//! Value: `d · (0.5 + scale) · 0.25 · grid · sign` (ggml's `dequantize_row_iq2_s`).

use super::grids::IQ2S_GRID;
use super::{BLOCK_VALUES, signed8};
use crate::quant::f16::read_f16;

/// Bytes per block.
pub(super) const BYTES: usize = 82;

/// Dequantizes whole blocks (lengths checked by the caller).
pub(super) fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    let (blocks, _) = bytes.as_chunks::<BYTES>();
    let (values, _) = out.as_chunks_mut::<BLOCK_VALUES>();
    for (b, y) in blocks.iter().zip(values) {
        let d = read_f16(&b[..2]);
        let (qs, signs, qh, scales) = (&b[2..34], &b[34..66], &b[66..74], &b[74..82]);
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let db = [
                d * (0.5 + (scales[ib] & 0xf) as f32) * 0.25,
                d * (0.5 + (scales[ib] >> 4) as f32) * 0.25,
            ];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let k = 4 * ib + l;
                let index = qs[k] as usize | (((qh[ib] as usize) << (8 - 2 * l)) & 0x300);
                signed8(y, db[l / 2], &IQ2S_GRID[index], signs[k]);
            }
        }
    }
}
