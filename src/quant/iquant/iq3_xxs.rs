//! ggml IQ3_XXS (type 18): blocks of 256 values, `d: f16, qs: u8[64], scales_and_signs: u32[8]`
//! (98 bytes, 3.0625 bits per weight). Each byte of `qs` indexes `iq3xxs_grid` (4 values); the
//! little-endian u32 of sub-block `ib` (32 values, 8 indices) holds 4 sign groups of 7 bits
//! (bits `7l..7l+6`, expanded by `ksigns_iq2xs`, each covering two grid entries) and the 4-bit
//! scale in its top bits. Value: `d · (0.5 + scale) · 0.5 · grid · sign` (ggml's
//! `dequantize_row_iq3_xxs`).

use super::grids::IQ3XXS_GRID;
use super::{BLOCK_VALUES, KSIGNS, signed8, u32_at};
use crate::quant::f16::read_f16;

/// Bytes per block.
pub(super) const BYTES: usize = 98;

/// Dequantizes whole blocks (lengths checked by the caller).
pub(super) fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    let (blocks, _) = bytes.as_chunks::<BYTES>();
    let (values, _) = out.as_chunks_mut::<BLOCK_VALUES>();
    for (b, y) in blocks.iter().zip(values) {
        let d = read_f16(&b[..2]);
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let qs = &b[2 + 8 * ib..2 + 8 * ib + 8];
            let aux = u32_at(b, 66 + 4 * ib);
            let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let signs = KSIGNS[((aux >> (7 * l)) & 127) as usize];
                let lo = IQ3XXS_GRID[qs[2 * l] as usize];
                let hi = IQ3XXS_GRID[qs[2 * l + 1] as usize];
                let grid = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]];
                signed8(y, db, &grid, signs);
            }
        }
    }
}
