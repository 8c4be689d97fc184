//! Error measurement and the synthetic weight matrices it runs on.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal, StudentT};

/// How far a reconstruction is from the original.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorStats {
    /// `10 · log10(Σx² / Σ(x − x̂)²)`, dB.
    pub sqnr_db: f64,
    /// `‖x − x̂‖ / ‖x‖`.
    pub rel_rmse: f64,
    /// `max |x − x̂|`.
    pub max_abs: f64,
}

/// Errors of `xhat` against `x`, accumulated in f64.
pub fn error_stats(x: &[f32], xhat: &[f32]) -> ErrorStats {
    assert_eq!(x.len(), xhat.len());
    let (mut sig, mut err, mut max) = (0.0f64, 0.0f64, 0.0f64);
    for (&a, &b) in x.iter().zip(xhat) {
        let e = a as f64 - b as f64;
        sig += (a as f64) * (a as f64);
        err += e * e;
        max = max.max(e.abs());
    }
    ErrorStats {
        sqnr_db: if err == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (sig / err).log10()
        },
        rel_rmse: if sig == 0.0 {
            f64::NAN
        } else {
            (err / sig).sqrt()
        },
        max_abs: max,
    }
}

/// A distribution of synthetic weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightDistribution {
    /// N(0, 1).
    Gaussian,
    /// Student-t with `df` degrees of freedom (heavy tails; df = 4 in `quantization.md`).
    StudentT(f64),
    /// N(0, 1) with outlier channels: every element whose index is 7 modulo 64 is
    /// [`OUTLIER_FACTOR`] times larger, so in a row-major matrix whose rows are a multiple of 64
    /// wide, columns 7, 71, 135, ... (1 in 64) are outliers in every row, the way a few input
    /// channels of LLM layers carry large values.
    OutlierColumns,
}

/// How much larger the outlier columns of [`WeightDistribution::OutlierColumns`] are.
pub const OUTLIER_FACTOR: f32 = 20.0;

impl WeightDistribution {
    /// The short name (`gaussian`, `student-t4`).
    pub fn name(&self) -> String {
        match self {
            WeightDistribution::Gaussian => "gaussian".into(),
            WeightDistribution::StudentT(df) => format!("student-t{df}"),
            WeightDistribution::OutlierColumns => "outlier-columns".into(),
        }
    }
}

/// `n` weights drawn from `dist` with `seed`.
pub fn sample(dist: WeightDistribution, n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    match dist {
        WeightDistribution::Gaussian => (0..n)
            .map(|_| StandardNormal.sample(&mut rng))
            .map(|v: f64| v as f32)
            .collect(),
        WeightDistribution::StudentT(df) => {
            let t = StudentT::new(df).expect("df > 0");
            (0..n).map(|_| t.sample(&mut rng) as f32).collect()
        }
        WeightDistribution::OutlierColumns => (0..n)
            .map(|i| {
                let v: f64 = StandardNormal.sample(&mut rng);
                let factor = if i % 64 == 7 { OUTLIER_FACTOR } else { 1.0 };
                v as f32 * factor
            })
            .collect(),
    }
}
