//! Randomized Hadamard rotation (QuIP#, Tseng et al. 2024): multiply by random ±1 signs, then
//! by the normalised Walsh–Hadamard matrix, in O(n log n) with the in-place butterfly
//! `(a, b) → (a + b, a − b)`. The rotation `R = H·D / √n` is orthogonal, so quantizing the
//! rotated rows `R w` and rotating the activations the same way, `R x`, leaves `w · x`
//! unchanged; `D·H / √n` undoes it.
//!
//! Lengths that are not a power of two are rotated in blocks: the largest power of two that
//! divides the length (a block-diagonal Hadamard, still orthogonal; 14336 → blocks of 2048).

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// In-place unnormalised fast Walsh–Hadamard transform; `v.len()` must be a power of two.
pub fn fwht(v: &mut [f32]) {
    let n = v.len();
    debug_assert!(n.is_power_of_two());
    let mut h = 1;
    while h < n {
        for chunk in v.chunks_exact_mut(2 * h) {
            let (a, b) = chunk.split_at_mut(h);
            for (x, y) in a.iter_mut().zip(b.iter_mut()) {
                let (s, d) = (*x + *y, *x - *y);
                *x = s;
                *y = d;
            }
        }
        h *= 2;
    }
}

/// A seeded random rotation of vectors of one length.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    signs: Vec<f32>,
    block: usize,
    scale: f32,
}

impl Rotation {
    /// A rotation of length `n` with signs drawn from `seed` (of length 0: the identity on
    /// empty vectors).
    pub fn new(n: usize, seed: u64) -> Rotation {
        let block = if n == 0 {
            1
        } else {
            1usize << n.trailing_zeros()
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let signs = (0..n)
            .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
            .collect();
        Rotation {
            signs,
            block,
            scale: 1.0 / (block as f32).sqrt(),
        }
    }

    /// The length it rotates.
    pub fn len(&self) -> usize {
        self.signs.len()
    }

    /// Whether it rotates empty vectors.
    pub fn is_empty(&self) -> bool {
        self.signs.is_empty()
    }

    /// The Hadamard block size.
    pub fn block(&self) -> usize {
        self.block
    }

    /// `v ← H·D·v / √b`.
    pub fn rotate(&self, v: &mut [f32]) {
        assert_eq!(v.len(), self.signs.len());
        for (x, s) in v.iter_mut().zip(&self.signs) {
            *x *= s;
        }
        for c in v.chunks_exact_mut(self.block) {
            fwht(c);
        }
        for x in v.iter_mut() {
            *x *= self.scale;
        }
    }

    /// `v ← D·H·v / √b`, the inverse of [`Rotation::rotate`].
    pub fn unrotate(&self, v: &mut [f32]) {
        assert_eq!(v.len(), self.signs.len());
        for c in v.chunks_exact_mut(self.block) {
            fwht(c);
        }
        for (x, s) in v.iter_mut().zip(&self.signs) {
            *x *= s * self.scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fwht_matches_the_matrix() {
        // H_4 rows: ++++, +-+-, ++--, +--+.
        let mut v = [1.0f32, 2.0, 3.0, 4.0];
        fwht(&mut v);
        assert_eq!(v, [10.0, -2.0, -4.0, 0.0]);
    }

    #[test]
    fn rotation_is_orthogonal_and_invertible() {
        for n in [1usize, 8, 256, 4096, 14336, 1000] {
            let r = Rotation::new(n, 7);
            let v: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
                .collect();
            let mut w = v.clone();
            r.rotate(&mut w);
            let norm = |a: &[f32]| a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>();
            assert!((norm(&w) / norm(&v) - 1.0).abs() < 1e-5, "n = {n}");
            r.unrotate(&mut w);
            let err = v
                .iter()
                .zip(&w)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 1e-5, "n = {n}: {err}");
        }
        assert_eq!(Rotation::new(14336, 1).block(), 2048);
    }
}
