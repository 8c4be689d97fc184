//! ggml IQ1_M (type 29): blocks of 256 values, `qs: u8[32], qh: u8[16], scales: u8[8]` (56
//! bytes, 1.75 bits per weight), no separate scale: the block's f16 scale is the four high
//! nibbles of the little-endian u16 `scales` words, first word lowest. Group `k` of 8 values
//! indexes `iq1s_grid` with `qs[k]` plus bits 0–2 of nibble `k % 2` of `qh[k / 2]` as bits 8–10;
//! bit 3 of that nibble is the sign of its shift. The 3-bit scale of the 16 values `16m..16m+15`
//! is bits `3(m % 4)..` of word `m / 4`. Value: `d · (2·scale + 1) · (grid ± 1/8)` (ggml's
//! `dequantize_row_iq1_m`, which uses `IQ1S_DELTA`).

use super::grids::IQ1S_GRID;
use super::{BLOCK_VALUES, IQ1S_DELTA, shifted8, u16_at};
use crate::quant::f16::f16_to_f32;

/// Bytes per block.
pub(super) const BYTES: usize = 56;

/// Dequantizes whole blocks (lengths checked by the caller).
pub(super) fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    let (blocks, _) = bytes.as_chunks::<BYTES>();
    let (values, _) = out.as_chunks_mut::<BLOCK_VALUES>();
    for (b, y) in blocks.iter().zip(values) {
        let sc = [u16_at(b, 48), u16_at(b, 50), u16_at(b, 52), u16_at(b, 54)];
        let d = f16_to_f32(
            (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000),
        );
        for (k, y) in y.chunks_exact_mut(8).enumerate() {
            let m = k / 2;
            let scale = (sc[m / 4] >> (3 * (m % 4))) & 7;
            let dl = d * (2 * scale + 1) as f32;
            let nibble = (b[32 + k / 2] >> (4 * (k % 2))) as usize;
            let delta = if nibble & 8 != 0 {
                -IQ1S_DELTA
            } else {
                IQ1S_DELTA
            };
            let index = b[k] as usize | ((nibble & 7) << 8);
            shifted8(y, dl, &IQ1S_GRID[index], delta);
        }
    }
}
