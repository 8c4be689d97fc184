//! IEEE half precision: conversion to and from f32 with round-to-nearest-even (as numpy's
//! `astype(np.float16)` and ggml's `GGML_FP32_TO_FP16`), subnormals included, and the f16
//! weight format.

/// f32 → f16 bits, round to nearest, ties to even; NaN stays NaN (quiet), overflow goes to ±inf.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x007f_ffff;
    if exp == 0xff {
        // Inf or NaN.
        return sign
            | 0x7c00
            | if mant != 0 {
                0x0200 | (mant >> 13) as u16
            } else {
                0
            };
    }
    // Unbiased exponent, rebiased for f16.
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // Subnormal (or zero) in f16: shift the full significand right, rounding to even.
        if e < -10 {
            return sign;
        }
        let m = mant | 0x0080_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rem = m & ((1u32 << shift) - 1);
        let mut h = m >> shift;
        if rem > half || (rem == half && (h & 1) == 1) {
            h += 1;
        }
        return sign | h as u16;
    }
    let mut h = ((e as u32) << 10) | (mant >> 13);
    let rem = mant & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && (h & 1) == 1) {
        // May carry into the exponent, up to infinity: still correct.
        h += 1;
    }
    sign | h as u16
}

/// f16 bits → f32, exact.
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let em = (h as u32) & 0x7fff;
    let v = if em >= 0x7c00 {
        // Inf or NaN.
        0x7f80_0000 | ((em & 0x03ff) << 13)
    } else {
        // Normals and subnormals alike: place the bits, then scale by 2^112, exactly.
        (f32::from_bits(em << 13) * f32::from_bits(0x7780_0000)).to_bits()
    };
    f32::from_bits(sign | v)
}

/// Reads a little-endian f16 at `b[0..2]` as f32.
#[inline(always)]
pub fn read_f16(b: &[u8]) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[0], b[1]]))
}

/// Writes `x` as a little-endian f16 into `b[0..2]`.
#[inline(always)]
pub fn write_f16(b: &mut [u8], x: f32) {
    b[..2].copy_from_slice(&f32_to_f16(x).to_le_bytes());
}

/// The value `x` takes after a round trip through f16.
pub fn round_f16(x: f32) -> f32 {
    f16_to_f32(f32_to_f16(x))
}

/// The f16 weight format: one little-endian half per weight.
pub(crate) mod format {
    use super::{f16_to_f32, f32_to_f16};
    use crate::quant::gemv::row_kernels;

    pub(crate) fn quantize_row(x: &[f32], out: &mut [u8]) {
        for (o, &v) in out.chunks_exact_mut(2).zip(x) {
            o.copy_from_slice(&f32_to_f16(v).to_le_bytes());
        }
    }

    pub(crate) fn dequantize_row(b: &[u8], out: &mut [f32]) {
        for (o, h) in out.iter_mut().zip(b.chunks_exact(2)) {
            *o = f16_to_f32(u16::from_le_bytes([h[0], h[1]]));
        }
    }

    #[inline(always)]
    fn dot_row(row: &[u8], x: &[f32], _aux: &[f32]) -> f32 {
        let mut acc = [0.0f32; 16];
        for (hb, xb) in row.chunks_exact(32).zip(x.chunks_exact(16)) {
            for j in 0..16 {
                acc[j] += f16_to_f32(u16::from_le_bytes([hb[2 * j], hb[2 * j + 1]])) * xb[j];
            }
        }
        let mut s: f32 = acc.iter().sum();
        let done = row.len() / 32 * 16;
        for (hb, xv) in row[2 * done..].chunks_exact(2).zip(&x[done..]) {
            s += f16_to_f32(u16::from_le_bytes([hb[0], hb[1]])) * xv;
        }
        s
    }

    row_kernels!(dot_row);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        for (x, h) in [
            (0.0f32, 0x0000u16),
            (-0.0, 0x8000),
            (1.0, 0x3c00),
            (-2.0, 0xc000),
            (65504.0, 0x7bff),
            (65520.0, 0x7c00),        // rounds up to infinity
            (6.103_515_6e-5, 0x0400), // smallest normal
            (5.960_464_5e-8, 0x0001), // smallest subnormal
            (2.980_232_2e-8, 0x0000), // half of it: tie to even (zero)
            (8.940_697e-8, 0x0002),   // 1.5 ulp: tie to even (2)
            (1.000_488_3, 0x3c00),    // 1 + 2^-11: tie to even (1.0)
            (1.001_464_8, 0x3c02),    // 1 + 3·2^-11: tie to even (1 + 2^-9)
            (f32::INFINITY, 0x7c00),
        ] {
            assert_eq!(f32_to_f16(x), h, "{x}");
        }
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
    }

    #[test]
    fn every_f16_round_trips() {
        for h in 0..=u16::MAX {
            let x = f16_to_f32(h);
            if x.is_nan() {
                assert!((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0);
                continue;
            }
            assert_eq!(f32_to_f16(x), h, "{h:#06x} -> {x}");
        }
    }

    #[test]
    fn rounding_is_to_nearest_even_everywhere() {
        // Between every pair of neighbouring finite f16 values, the midpoint goes to the even one
        // and points just off it go to the nearer one.
        for h in 0u16..0x7bff {
            let (a, b) = (f16_to_f32(h) as f64, f16_to_f32(h + 1) as f64);
            let mid = ((a + b) / 2.0) as f32;
            let even = if h % 2 == 0 { h } else { h + 1 };
            if mid as f64 == (a + b) / 2.0 {
                assert_eq!(f32_to_f16(mid), even, "midpoint of {h:#06x}");
            }
            let below = f32::from_bits(mid.to_bits() - 1);
            assert_eq!(f32_to_f16(below), h, "below midpoint of {h:#06x}");
        }
    }
}
