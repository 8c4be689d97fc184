//! ggml IQ2_XXS (type 16): blocks of 256 values, `d: f16, qs: u16[32]` (66 bytes, 2.0625 bits
//! per weight). Each of the 8 sub-blocks of 32 values takes 8 bytes, read as two little-endian
//! u32: the first holds 4 indices into `iq2xxs_grid` (one byte each, 8 values each), the second
//! 4 sign groups of 7 bits (bits `7l..7l+6`, expanded by `ksigns_iq2xs`) and the sub-block scale
//! in its top 4 bits. Value: `d · (0.5 + scale) · 0.25 · grid · sign` (ggml's
//! `dequantize_row_iq2_xxs`).

use super::grids::IQ2XXS_GRID;
use super::{BLOCK_VALUES, KSIGNS, signed8, u32_at};
use crate::quant::f16::read_f16;

/// Bytes per block.
pub(super) const BYTES: usize = 66;

/// Dequantizes whole blocks (lengths checked by the caller).
pub(super) fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    let (blocks, _) = bytes.as_chunks::<BYTES>();
    let (values, _) = out.as_chunks_mut::<BLOCK_VALUES>();
    for (b, y) in blocks.iter().zip(values) {
        let d = read_f16(&b[..2]);
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let q = &b[2 + 8 * ib..2 + 8 * ib + 8];
            let aux = u32_at(q, 4);
            let db = d * (0.5 + (aux >> 28) as f32) * 0.25;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let signs = KSIGNS[((aux >> (7 * l)) & 127) as usize];
                signed8(y, db, &IQ2XXS_GRID[q[l] as usize], signs);
            }
        }
    }
}
