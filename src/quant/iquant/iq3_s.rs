//! ggml IQ3_S (type 21): blocks of 256 values, `d: f16, qs: u8[64], qh: u8[8], signs: u8[32],
//! scales: u8[4]` (110 bytes, 3.4375 bits per weight). Entry `k` of sub-block `ib` (4 values,
//! 8 entries per sub-block) indexes `iq3s_grid` with `qs[8ib + k]` plus bit `k` of `qh[ib]` as
//! bit 8; each sign byte covers 8 values (bit `j`: value `j`). The 4-bit scale of sub-block `ib`
//! is nibble `ib % 2` of `scales[ib / 2]`, low first. Value: `d · (1 + 2·scale) · grid · sign`
//! (ggml's `dequantize_row_iq3_s`).

use super::grids::IQ3S_GRID;
use super::{BLOCK_VALUES, signed8};
use crate::quant::f16::read_f16;

/// Bytes per block.
pub(super) const BYTES: usize = 110;

/// Dequantizes whole blocks (lengths checked by the caller).
pub(super) fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
    let (blocks, _) = bytes.as_chunks::<BYTES>();
    let (values, _) = out.as_chunks_mut::<BLOCK_VALUES>();
    for (b, y) in blocks.iter().zip(values) {
        let d = read_f16(&b[..2]);
        let (qs, qh, signs, scales) = (&b[2..66], &b[66..74], &b[74..106], &b[106..110]);
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let scale = (scales[ib / 2] >> (4 * (ib % 2))) & 0xf;
            let db = d * (1 + 2 * scale as u32) as f32;
            let high = qh[ib] as usize;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let k = 8 * ib + 2 * l;
                let lo = IQ3S_GRID[qs[k] as usize | ((high << (8 - 2 * l)) & 256)];
                let hi = IQ3S_GRID[qs[k + 1] as usize | ((high << (7 - 2 * l)) & 256)];
                let grid = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]];
                signed8(y, db, &grid, signs[4 * ib + l]);
            }
        }
    }
}
