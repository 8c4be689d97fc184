//! Shared pieces of ggml's K-quant reference quantizers (`ggml-quants.c`, paraphrased in
//! `../shared/reference/quantization.md` §2.3–2.5): the asymmetric sub-block fit
//! (`make_qkx2_quants`) and the symmetric 3-bit fit (`make_q3_quants`, RMSE variant), the 2-bit
//! code packing of Q3_K and Q2_K, and the 6-bit scale packing of Q4_K. Arithmetic is f32 in
//! ggml's order, with no fused multiply-add, so codes match an `-ffp-contract=off` build.

/// ggml's `nearest_int`: round half to even (its magic-number trick, valid for |x| < 2^22).
#[inline(always)]
pub(crate) fn nearest_int(x: f32) -> i32 {
    // ggml's trick: adding 1.5 · 2^23 leaves round-half-even(x) in the low mantissa bits
    // (exact for |x| < 2^22), without a call to `rintf` on targets without SSE4.1.
    let bits = (x + 12_582_912.0f32).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// Fits `x ≈ scale · L − min` (returns `(scale, min)` with min ≥ 0, codes in `l`, 0..=nmax)
/// by trying `nstep + 1` inverse scales `(rmin + rdelta · s + nmax) / (max − min)` and solving
/// the weighted least squares for scale and min at each, keeping the lowest weighted error
/// (absolute error when `use_mad`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn fit_scale_min(
    x: &[f32],
    weights: &[f32],
    nmax: i32,
    l: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        min = min.min(x[i]);
        max = max.max(x[i]);
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l[..n].iter_mut().for_each(|v| *v = 0);
        return (0.0, -min);
    }
    let err = |diff: f32| if use_mad { diff.abs() } else { diff * diff };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best = 0.0f32;
    for i in 0..n {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = q as u8;
        let diff = scale * q as f32 + min - x[i];
        best += weights[i] * err(diff);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let (w, qf) = (weights[i], q as f32);
            sum_l += w * qf;
            sum_l2 += w * qf * qf;
            sum_xl += w * qf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur += weights[i] * err(diff);
            }
            if cur < best {
                l[..n].copy_from_slice(&laux[..n]);
                best = cur;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Symmetric fit `x ≈ scale · L` with L in −nmax..nmax−1 (returned offset by nmax in `l`):
/// start from the largest-magnitude value, then up to five passes of coordinate descent on
/// the weighted error with weights x², as `make_q3_quants(.., do_rmse = true)`.
pub(crate) fn fit_symmetric(x: &[f32], nmax: i32, l: &mut [i8]) -> f32 {
    let n = x.len();
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < 1e-15 {
        l[..n].iter_mut().for_each(|v| *v = 0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..n {
        let q = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l[i] = q as i8;
        let w = x[i] * x[i];
        sumlx += w * x[i] * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for i in 0..n {
            let w = x[i] * x[i];
            let li = l[i] as f32;
            let mut slx = sumlx - w * x[i] * li;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * li * li;
                let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != l[i] as i32 {
                    slx += w * x[i] * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    l[..n].iter_mut().for_each(|v| *v += nmax as i8);
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

/// Packs 256 two-bit codes as Q3_K and Q2_K do: element `128h + 32j + l` sits in byte
/// `32h + l`, bits `2j..2j+1`.
pub(crate) fn pack_2bit(codes: &[u8; 256], qs: &mut [u8]) {
    for h in 0..2 {
        for l in 0..32 {
            let e = 128 * h + l;
            qs[32 * h + l] =
                codes[e] | (codes[e + 32] << 2) | (codes[e + 64] << 4) | (codes[e + 96] << 6);
        }
    }
}

/// Scale and min of sub-block `j` of a Q4_K block from its 12 packed bytes (6 bits each).
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// A Q4_K or Q5_K super-block's eight 6-bit scales and the `Σ_j m_j · Σ a` of its minimum
/// terms (from the activation's sums per 16), unpacked once for the integer kernels.
#[inline(always)]
pub(crate) fn scales_and_mins_dot(s: &[u8], bs: &[i16]) -> ([i16; 8], i32) {
    let mut sc = [0i16; 8];
    let mut mins = 0i32;
    for (j, v) in sc.iter_mut().enumerate() {
        let (scale, min) = scale_min_k4(j, s);
        *v = scale as i16;
        mins += min as i32 * (bs[2 * j] as i32 + bs[2 * j + 1] as i32);
    }
    (sc, mins)
}

/// Symmetric fit `x ≈ scale · L` with L in −nmax..nmax−1 (returned offset by nmax in `l`), as
/// `make_qx_quants(.., rmse_type = 1, qw = NULL)`: codes from the largest-magnitude value, the
/// least-squares scale with weights x², then 18 neighbouring inverse scales
/// `−(nmax + 0.1·is) / max` (is = ±1..±9), keeping the one of largest `Σwxl² / Σwl²`.
/// Returns the scale (negative when the largest-magnitude value is positive).
pub(crate) fn fit_symmetric_search(x: &[f32], nmax: i32, l: &mut [i8]) -> f32 {
    let n = x.len();
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        let a = v.abs();
        if a > amax {
            amax = a;
            max = v;
        }
    }
    if amax < 1e-15 {
        l[..n].iter_mut().for_each(|v| *v = 0);
        return 0.0;
    }
    let code = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let q = code(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * q;
            suml2 += w * q * q;
        }
        (sumlx, suml2)
    };
    let mut iscale = -(nmax as f32) / max;
    for (li, &v) in l.iter_mut().zip(x) {
        *li = (nmax + code(iscale, v)) as i8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1f32 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (li, &v) in l.iter_mut().zip(x) {
                *li = (nmax + code(iscale, v)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// The super-block fit Q4_K and Q5_K share (`quantize_row_q{4,5}_K_ref`): each sub-block of 32
/// fitted as `scale · L − min` with importance weights `rms + |x|` ([`fit_scale_min`] with
/// `nmax` levels, `nstep + 1` candidates from `rmin`), the scales and mins requantized to 6 bits
/// against the largest and packed into `head` (`d: f16, dmin: f16, scales: u8[12]`, 16 bytes),
/// then every code recomputed from the stored values into `l` (0..=nmax).
pub(crate) fn fit_super_block_with_mins(
    xb: &[f32],
    nmax: i32,
    rmin: f32,
    nstep: i32,
    head: &mut [u8],
    l: &mut [u8; 256],
) {
    let mut laux = [0u8; 32];
    let mut weights = [0.0f32; 32];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        let sub = &xb[32 * j..32 * j + 32];
        let sum_x2: f32 = sub.iter().fold(0.0, |s, v| s + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, v) in weights.iter_mut().zip(sub) {
            *w = av_x + v.abs();
        }
        let (s, m) = fit_scale_min(
            sub,
            &weights,
            nmax,
            &mut l[32 * j..32 * j + 32],
            &mut laux,
            rmin,
            0.1,
            nstep,
            false,
        );
        scales[j] = s;
        mins[j] = m;
        max_scale = max_scale.max(s);
        max_min = max_min.max(m);
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let s = &mut head[4..16];
    s.iter_mut().for_each(|b| *b = 0);
    for j in 0..8 {
        // ggml stores nearest_int into a uint8_t before the MIN(63, ..).
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            s[j] = ls;
            s[j + 4] = lm;
        } else {
            s[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
            s[j - 4] |= (ls >> 4) << 6;
            s[j] |= (lm >> 4) << 6;
        }
    }
    super::f16::write_f16(&mut head[0..2], max_scale / 63.0);
    super::f16::write_f16(&mut head[2..4], max_min / 63.0);
    let (d_all, m_all) = (
        super::f16::read_f16(&head[0..2]),
        super::f16::read_f16(&head[2..4]),
    );
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &head[4..16]);
        let d = d_all * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = m_all * m as f32;
        for i in 0..32 {
            l[32 * j + i] = nearest_int((xb[32 * j + i] + dm) / d).clamp(0, nmax) as u8;
        }
    }
}
