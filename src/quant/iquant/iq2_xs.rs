//! ggml IQ2_XS (type 17): blocks of 256 values, `d: f16, qs: u16[32], scales: u8[8]` (74 bytes,
//! 2.3125 bits per weight). Each little-endian u16 of `qs` covers 8 values: its low 9 bits index
//! `iq2xs_grid`, its high 7 bits are a sign group expanded by `ksigns_iq2xs`. `scales[ib]` holds
//! the 4-bit scales of the two halves (16 values each) of sub-block `ib`, low nibble first.
//! Value: `d · (0.5 + scale) · 0.25 · grid · sign` (ggml's `dequantize_row_iq2_xs`).

use super::grids::IQ2XS_GRID;
use super::{BLOCK_VALUES, KSIGNS, signed8, u16_at};
use crate::quant::f16::read_f16;

/// Bytes per block.
pub(super) const BYTES: usize = 74;

/// Dequantizes whole blocks (lengths checked by the caller).
pub(super) fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    let (blocks, _) = bytes.as_chunks::<BYTES>();
    let (values, _) = out.as_chunks_mut::<BLOCK_VALUES>();
    for (b, y) in blocks.iter().zip(values) {
        let d = read_f16(&b[..2]);
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let scales = b[66 + ib];
            let db = [
                d * (0.5 + (scales & 0xf) as f32) * 0.25,
                d * (0.5 + (scales >> 4) as f32) * 0.25,
            ];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let q = u16_at(b, 2 + 2 * (4 * ib + l));
                let grid = &IQ2XS_GRID[(q & 511) as usize];
                signed8(y, db[l / 2], grid, KSIGNS[(q >> 9) as usize]);
            }
        }
    }
}
