//! ggml IQ1_S (type 19): blocks of 256 values, `d: f16, qs: u8[32], qh: u16[8]` (50 bytes,
//! 1.5625 bits per weight). Group `4·ib + l` of 8 values indexes `iq1s_grid` (values −1, 0, 1)
//! with `qs[4ib + l]` plus bits `3l..3l+2` of the little-endian `qh[ib]` as bits 8–10; bits
//! 12–14 of `qh[ib]` are sub-block `ib`'s 3-bit scale and bit 15 the sign of its shift.
//! Value: `d · (2·scale + 1) · (grid ± 1/8)` (ggml's `dequantize_row_iq1_s`).

use super::grids::IQ1S_GRID;
use super::{BLOCK_VALUES, IQ1S_DELTA, shifted8, u16_at};
use crate::quant::f16::read_f16;

/// Bytes per block.
pub(super) const BYTES: usize = 50;

/// Dequantizes whole blocks (lengths checked by the caller).
pub(super) fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    let (blocks, _) = bytes.as_chunks::<BYTES>();
    let (values, _) = out.as_chunks_mut::<BLOCK_VALUES>();
    for (b, y) in blocks.iter().zip(values) {
        let d = read_f16(&b[..2]);
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let qh = u16_at(b, 34 + 2 * ib) as usize;
            let dl = d * (2 * ((qh >> 12) & 7) + 1) as f32;
            let delta = if qh & 0x8000 != 0 {
                -IQ1S_DELTA
            } else {
                IQ1S_DELTA
            };
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let index = b[2 + 4 * ib + l] as usize | (((qh >> (3 * l)) & 7) << 8);
                shifted8(y, dl, &IQ1S_GRID[index], delta);
            }
        }
    }
}
