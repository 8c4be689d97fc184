//! Storage and kernels of the uniform-grid formats (the seed's pi-constant quantizers and the
//! uniform baselines): blocks of 256 weights on the integer grid −2^(b−1)..2^(b−1)−1 times
//! one step per block, stored as an f16 `scale` followed by b-bit codes (`q + 2^(b−1)`);
//! `step = scale · multiplier` (π/k for PiQ, 1 for the uniform baselines).
//!
//! Code layouts (b = 2, 3, 4 → 66, 98, 130 bytes, 2.0625 / 3.0625 / 4.0625 bpw, the sizes the
//! seed gives for its 256-weight blocks):
//! - low two bits of element `128h + 32n + m` in byte `32h + m`, bits `2n` (TQ2_0's layout);
//! - b = 3: the third bit of element e in byte `64 + e % 32`, bit `e / 32` (Q3_K's hmask);
//! - b = 4: element e < 128 in the low nibble of byte e, element e + 128 in its high nibble.

use super::f16::read_f16;

/// Weights per block.
pub(crate) const BLOCK: usize = 256;

/// Bytes per block at `bits` bits per code.
pub(crate) const fn bytes(bits: u32) -> usize {
    2 + 32 * bits as usize
}

/// Writes codes `q` (in −half..half−1) after the 2 scale bytes of `out`.
pub(crate) fn pack(bits: u32, q: &[i8; 256], out: &mut [u8]) {
    let half = 1i8 << (bits - 1);
    let codes = &mut out[2..bytes(bits)];
    codes.iter_mut().for_each(|b| *b = 0);
    let c = |e: usize| (q[e] + half) as u8;
    match bits {
        4 => {
            for (e, code) in codes.iter_mut().enumerate().take(128) {
                *code = c(e) | (c(e + 128) << 4);
            }
        }
        _ => {
            for h in 0..2 {
                for n in 0..4 {
                    for m in 0..32 {
                        let e = 128 * h + 32 * n + m;
                        codes[32 * h + m] |= (c(e) & 3) << (2 * n);
                        if bits == 3 {
                            codes[64 + e % 32] |= ((c(e) >> 2) & 1) << (e / 32);
                        }
                    }
                }
            }
        }
    }
}

/// Integer codes of one block (in −half..half−1).
#[inline(always)]
pub(crate) fn code(bits: u32, codes: &[u8], e: usize) -> i32 {
    let half = 1i32 << (bits - 1);
    let raw = match bits {
        4 => {
            if e < 128 {
                codes[e] & 15
            } else {
                codes[e - 128] >> 4
            }
        }
        _ => {
            let (h, n, m) = (e / 128, (e % 128) / 32, e % 32);
            let low = (codes[32 * h + m] >> (2 * n)) & 3;
            if bits == 3 {
                low | (((codes[64 + m] >> (e / 32)) & 1) << 2)
            } else {
                low
            }
        }
    };
    raw as i32 - half
}

/// Dequantizes a row with step multiplier `mult`.
pub(crate) fn dequantize_row(bits: u32, mult: f32, b: &[u8], out: &mut [f32]) {
    for (yb, ob) in b.chunks_exact(bytes(bits)).zip(out.chunks_exact_mut(BLOCK)) {
        let step = read_f16(&yb[0..2]) * mult;
        let codes = &yb[2..];
        for (e, o) in ob.iter_mut().enumerate() {
            *o = code(bits, codes, e) as f32 * step;
        }
    }
}

/// The fused row kernel for `BITS`.
#[inline(always)]
pub(crate) fn dot_row<const BITS: u32>(mult: f32, row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 32];
    for (yb, xb) in row.chunks_exact(bytes(BITS)).zip(x.chunks_exact(BLOCK)) {
        let step = read_f16(&yb[0..2]) * mult;
        let codes = &yb[2..];
        let mut t = [0.0f32; 32];
        if BITS == 4 {
            for g in 0..4 {
                let q = &codes[32 * g..32 * g + 32];
                let (xl, xh) = (
                    &xb[32 * g..32 * g + 32],
                    &xb[128 + 32 * g..128 + 32 * g + 32],
                );
                for m in 0..32 {
                    t[m] += ((q[m] & 15) as i32 - 8) as f32 * xl[m]
                        + ((q[m] >> 4) as i32 - 8) as f32 * xh[m];
                }
            }
        } else {
            let half = 1i32 << (BITS - 1);
            for h in 0..2 {
                let q = &codes[32 * h..32 * h + 32];
                for n in 0..4 {
                    let xs = &xb[128 * h + 32 * n..128 * h + 32 * n + 32];
                    let bit = 4 * h + n;
                    for m in 0..32 {
                        let mut v = ((q[m] >> (2 * n)) & 3) as i32;
                        if BITS == 3 {
                            v |= (((codes[64 + m] >> bit) & 1) as i32) << 2;
                        }
                        t[m] += (v - half) as f32 * xs[m];
                    }
                }
            }
        }
        for m in 0..32 {
            acc[m] += step * t[m];
        }
    }
    acc.iter().sum()
}

/// Sum of squared errors of block `x` on the grid with `step` (nearest level, clamped).
pub(crate) fn block_sse(bits: u32, x: &[f32], step: f32) -> f64 {
    let half = (1i32 << (bits - 1)) as f32;
    if step == 0.0 {
        return x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    }
    x.iter()
        .map(|&v| {
            let q = (v / step).round().clamp(-half, half - 1.0);
            let e = (v - q * step) as f64;
            e * e
        })
        .sum()
}

/// Codes of block `x` for `step` (round half away from zero, clamped).
pub(crate) fn codes_for(bits: u32, x: &[f32], step: f32, q: &mut [i8; 256]) {
    let half = (1i32 << (bits - 1)) as f32;
    for (o, &v) in q.iter_mut().zip(x) {
        *o = if step == 0.0 {
            0
        } else {
            (v / step).round().clamp(-half, half - 1.0) as i8
        };
    }
}

/// The step minimising the block's squared error on the grid: the best of 51 candidates
/// `t · absmax / half` for t in [0.05, 1.05], refined by golden-section search within one
/// grid step of it.
pub(crate) fn mse_optimal_step(bits: u32, x: &[f32]) -> f32 {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if amax == 0.0 {
        return 0.0;
    }
    let half = (1i32 << (bits - 1)) as f32;
    let sse = |t: f32| block_sse(bits, x, t * amax / half);
    let (mut best_t, mut best) = (1.0f32, f64::INFINITY);
    for i in 0..=50 {
        let t = 0.05 + i as f32 * 0.02;
        let e = sse(t);
        if e < best {
            best = e;
            best_t = t;
        }
    }
    // Golden-section search on [best_t − 0.02, best_t + 0.02].
    let (mut a, mut b) = (best_t - 0.02, best_t + 0.02);
    let g = 0.618_034f32;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (sse(c), sse(d));
    for _ in 0..28 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = sse(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = sse(d);
        }
    }
    let (t, e) = if fc < fd { (c, fc) } else { (d, fd) };
    let t = if e < best { t } else { best_t };
    t * amax / half
}
