//! How much a link's transfer times vary: an optional `time_distribution` of a link.
//!
//! A link's figures (latency, bandwidth, granularity) give one fixed time per transfer size. Real
//! storage does not: a virtio disk, NVMe under a filesystem, an SD card or UFS has heavy-tailed
//! read times (on the development VM, reads of 1.77 MB spread from 0.8× to 3.3× their median).
//! A link that states a distribution has every transfer's time multiplied by a factor drawn
//! from it, with the run's seed (the `k`-th transfer on link `l` draws from stream `(l, k)`),
//! so a run is deterministic and predicted percentiles follow the measured ones. Without one a
//! link keeps its fixed times, as every datasheet profile does.
//!
//! Kinds:
//! - `empirical`: the factor's quantiles at evenly spaced probabilities `0, 1/(n-1), ..., 1`
//!   (read times over their median, as `moesim host calibrate` writes them), sampled by linear
//!   interpolation between them;
//! - `two-mode`: a fast mode (factor 1) and, with probability `slow_probability`, a slow one
//!   (factor `slow_factor`), e.g. a cache that misses, or reads that queue behind another VM;
//! - `lognormal`: `exp(sigma · z)` with `z` standard normal (median factor 1).

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

/// The most quantiles an empirical distribution may list.
pub const MAX_QUANTILES: usize = 10_001;

/// The largest factor a distribution may produce (a read 1000× slower than its figure is a
/// stalled device, not a distribution).
pub const MAX_FACTOR: f64 = 1000.0;

/// A transfer-time distribution as written in TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TimeDistributionSpec {
    /// The factor's quantiles at evenly spaced probabilities from 0 to 1.
    Empirical {
        /// Nondecreasing positive factors, at least 2.
        quantiles: Vec<f64>,
        /// How many measured times the quantiles summarise (provenance only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        samples: Option<u64>,
    },
    /// Factor 1, or `slow_factor` with probability `slow_probability`.
    TwoMode {
        /// Probability of the slow mode, in [0, 1].
        slow_probability: f64,
        /// Factor of the slow mode, at least 1.
        slow_factor: f64,
    },
    /// `exp(sigma · z)`, `z` standard normal.
    Lognormal {
        /// Standard deviation of the factor's logarithm, in [0, 3].
        sigma: f64,
    },
}

/// A validated transfer-time distribution: the factor as a function of a uniform draw.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeDistribution {
    /// Quantiles at evenly spaced probabilities.
    Empirical(Vec<f64>),
    /// Slow mode probability and factor.
    TwoMode {
        /// Probability of the slow mode.
        slow_probability: f64,
        /// Its factor.
        slow_factor: f64,
    },
    /// Log-normal with median 1.
    Lognormal {
        /// Standard deviation of the logarithm.
        sigma: f64,
    },
}

impl TimeDistributionSpec {
    /// The distribution, or the key under `time_distribution` and the reason it is refused.
    pub fn validate(&self) -> Result<TimeDistribution, (&'static str, String)> {
        match self {
            TimeDistributionSpec::Empirical { quantiles, .. } => {
                if quantiles.len() < 2 || quantiles.len() > MAX_QUANTILES {
                    return Err((
                        "quantiles",
                        format!(
                            "give between 2 and {MAX_QUANTILES} factors, got {}",
                            quantiles.len()
                        ),
                    ));
                }
                if let Some((i, q)) = quantiles
                    .iter()
                    .enumerate()
                    .find(|(_, q)| !(q.is_finite() && **q > 0.0 && **q <= MAX_FACTOR))
                {
                    return Err((
                        "quantiles",
                        format!("factor {i} is {q}; factors must be in (0, {MAX_FACTOR}]"),
                    ));
                }
                if let Some(i) = (1..quantiles.len()).find(|&i| quantiles[i] < quantiles[i - 1]) {
                    return Err((
                        "quantiles",
                        format!(
                            "factors must not decrease: factor {i} ({}) is below factor {} ({})",
                            quantiles[i],
                            i - 1,
                            quantiles[i - 1]
                        ),
                    ));
                }
                Ok(TimeDistribution::Empirical(quantiles.clone()))
            }
            &TimeDistributionSpec::TwoMode {
                slow_probability,
                slow_factor,
            } => {
                if !(0.0..=1.0).contains(&slow_probability) {
                    return Err((
                        "slow_probability",
                        format!("{slow_probability} is not a probability in [0, 1]"),
                    ));
                }
                if !(slow_factor.is_finite() && (1.0..=MAX_FACTOR).contains(&slow_factor)) {
                    return Err((
                        "slow_factor",
                        format!("{slow_factor} is outside [1, {MAX_FACTOR}]"),
                    ));
                }
                Ok(TimeDistribution::TwoMode {
                    slow_probability,
                    slow_factor,
                })
            }
            &TimeDistributionSpec::Lognormal { sigma } => {
                if !(sigma.is_finite() && (0.0..=3.0).contains(&sigma)) {
                    return Err(("sigma", format!("{sigma} is outside [0, 3]")));
                }
                Ok(TimeDistribution::Lognormal { sigma })
            }
        }
    }
}

impl TimeDistribution {
    /// The kind's name as written in TOML.
    pub fn kind_name(&self) -> &'static str {
        match self {
            TimeDistribution::Empirical(_) => "empirical",
            TimeDistribution::TwoMode { .. } => "two-mode",
            TimeDistribution::Lognormal { .. } => "lognormal",
        }
    }

    /// The factor at probability `u` in [0, 1) (the inverse of the factor's distribution).
    pub fn factor(&self, u: f64) -> f64 {
        match self {
            TimeDistribution::Empirical(q) => {
                let x = u.clamp(0.0, 1.0) * (q.len() - 1) as f64;
                let i = (x.floor() as usize).min(q.len() - 2);
                let w = x - i as f64;
                q[i] + w * (q[i + 1] - q[i])
            }
            TimeDistribution::TwoMode {
                slow_probability,
                slow_factor,
            } => {
                if u >= 1.0 - slow_probability {
                    *slow_factor
                } else {
                    1.0
                }
            }
            TimeDistribution::Lognormal { sigma } => {
                // Keep u inside (0, 1): the normal's quantile is infinite at its ends.
                let u = u.clamp(1e-12, 1.0 - 1e-12);
                let z = Normal::new(0.0, 1.0).expect("standard").inverse_cdf(u);
                (sigma * z).exp().min(MAX_FACTOR)
            }
        }
    }

    /// The mean factor (the mean transfer time over the fixed one).
    pub fn mean(&self) -> f64 {
        match self {
            // Piecewise linear between the quantiles: the mean of each segment's ends.
            TimeDistribution::Empirical(q) => {
                q.windows(2).map(|w| (w[0] + w[1]) / 2.0).sum::<f64>() / (q.len() - 1) as f64
            }
            TimeDistribution::TwoMode {
                slow_probability,
                slow_factor,
            } => 1.0 + slow_probability * (slow_factor - 1.0),
            TimeDistribution::Lognormal { sigma } => (sigma * sigma / 2.0).exp(),
        }
    }

    /// The spec that states this distribution.
    pub fn spec(&self) -> TimeDistributionSpec {
        match self {
            TimeDistribution::Empirical(q) => TimeDistributionSpec::Empirical {
                quantiles: q.clone(),
                samples: None,
            },
            &TimeDistribution::TwoMode {
                slow_probability,
                slow_factor,
            } => TimeDistributionSpec::TwoMode {
                slow_probability,
                slow_factor,
            },
            &TimeDistribution::Lognormal { sigma } => TimeDistributionSpec::Lognormal { sigma },
        }
    }

    /// An empirical distribution of measured times relative to their median: `points` evenly
    /// spaced quantiles (linear interpolation between order statistics), except at the two
    /// ends. `None` for fewer than 2 positive finite times.
    ///
    /// Draws interpolate linearly between quantiles, so the last segment spreads its share of
    /// draws evenly up to the end quantile. With the largest time there, a heavy tail is far
    /// overstated: on the development VM one read 10.9 times the median made the top 1 % of
    /// draws average 6.2 times the median, and every draw 5 % longer than the reads were on
    /// average. Each end quantile is placed instead so that its segment's draws average what
    /// the times in its band did (with as many points as times, that is the smallest and the
    /// largest time), and the distribution's mean is the times' mean.
    pub fn from_times(times: &[f64], points: usize) -> Option<TimeDistribution> {
        let mut s: Vec<f64> = times
            .iter()
            .copied()
            .filter(|t| t.is_finite() && *t > 0.0)
            .collect();
        if s.len() < 2 || points < 2 {
            return None;
        }
        s.sort_by(f64::total_cmp);
        let median = crate::stats::median(&s);
        let at = |p: f64| {
            let x = p * (s.len() - 1) as f64;
            let i = (x.floor() as usize).min(s.len() - 2);
            let w = x - i as f64;
            (s[i] + w * (s[i + 1] - s[i])) / median
        };
        let mut q: Vec<f64> = (0..points)
            .map(|i| at(i as f64 / (points - 1) as f64).clamp(f64::MIN_POSITIVE, MAX_FACTOR))
            .collect();
        // The mean of the times whose rank position j / (n - 1) lies in [lo, hi], over the
        // median.
        let n = s.len();
        let band_mean = |lo: f64, hi: f64| {
            let last = (n - 1) as f64;
            let first = (lo * last - 1e-9).ceil().max(0.0) as usize;
            let end = ((hi * last + 1e-9).floor() as usize).min(n - 1);
            let band = &s[first..=end.max(first)];
            band.iter().sum::<f64>() / band.len() as f64 / median
        };
        let step = 1.0 / (points - 1) as f64;
        let top = band_mean(1.0 - step, 1.0);
        let below_top = q[points - 2];
        q[points - 1] = (2.0 * top - below_top).clamp(below_top, MAX_FACTOR);
        let bottom = band_mean(0.0, step);
        let above_bottom = q[1];
        q[0] = (2.0 * bottom - above_bottom).clamp(f64::MIN_POSITIVE, above_bottom);
        Some(TimeDistribution::Empirical(q))
    }
}

/// A uniform draw in [0, 1) from a 64-bit hash (its top 53 bits).
pub fn unit_interval(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empirical_interpolates_and_its_mean_is_the_area() {
        let d = TimeDistribution::Empirical(vec![0.5, 1.0, 3.0]);
        assert_eq!(d.factor(0.0), 0.5);
        assert_eq!(d.factor(0.25), 0.75);
        assert_eq!(d.factor(0.5), 1.0);
        assert_eq!(d.factor(0.75), 2.0);
        assert_eq!(d.factor(1.0), 3.0);
        assert!((d.mean() - (0.75 + 2.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn two_mode_and_lognormal_have_their_stated_shape() {
        let d = TimeDistribution::TwoMode {
            slow_probability: 0.1,
            slow_factor: 4.0,
        };
        assert_eq!(d.factor(0.89), 1.0);
        assert_eq!(d.factor(0.95), 4.0);
        assert!((d.mean() - 1.3).abs() < 1e-12);
        let l = TimeDistribution::Lognormal { sigma: 0.5 };
        assert!((l.factor(0.5) - 1.0).abs() < 1e-9);
        // The 84.13 % quantile of a log-normal is exp(sigma).
        assert!((l.factor(0.841_344_746) - 0.5f64.exp()).abs() < 1e-6);
    }

    #[test]
    fn from_times_is_relative_to_the_median() {
        let t = [1.0, 2.0, 2.0, 3.0, 10.0];
        let TimeDistribution::Empirical(q) = TimeDistribution::from_times(&t, 5).unwrap() else {
            panic!("empirical");
        };
        assert_eq!(q, vec![0.5, 1.0, 1.0, 1.5, 5.0]);
        assert!(TimeDistribution::from_times(&[1.0], 5).is_none());
    }

    #[test]
    fn a_heavy_tail_keeps_its_mean() {
        // 20,000 reads: most within 10 % of the median, 1 % of them 1.5-3 times it, one 12
        // times. Interpolating up to the largest would make the top 1 % average 6.5.
        let mut t: Vec<f64> = (0..20_000)
            .map(|i| match i % 100 {
                0 => 1.5 + 1.5 * (i as f64 / 20_000.0),
                k => 0.9 + 0.2 * k as f64 / 100.0,
            })
            .collect();
        t[100] = 12.0;
        let median = crate::stats::median(&t);
        let mean = t.iter().sum::<f64>() / t.len() as f64 / median;
        let d = TimeDistribution::from_times(&t, 101).unwrap();
        assert!((d.mean() - mean).abs() < 0.002, "{} vs {mean}", d.mean());
        // The ends sit inside the times' range, the interior quantiles are untouched.
        let TimeDistribution::Empirical(q) = &d else {
            panic!("empirical")
        };
        assert!(q[100] < 12.0 / median && q[100] > q[99], "{q:?}");
        assert!(q[0] <= q[1] && q[0] > 0.0);
        assert!((q[50] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bad_parameters_name_their_key() {
        let bad = [
            (
                TimeDistributionSpec::Empirical {
                    quantiles: vec![1.0],
                    samples: None,
                },
                "quantiles",
            ),
            (
                TimeDistributionSpec::Empirical {
                    quantiles: vec![1.0, 0.5],
                    samples: None,
                },
                "quantiles",
            ),
            (
                TimeDistributionSpec::Empirical {
                    quantiles: vec![0.0, 1.0],
                    samples: None,
                },
                "quantiles",
            ),
            (
                TimeDistributionSpec::TwoMode {
                    slow_probability: 1.5,
                    slow_factor: 2.0,
                },
                "slow_probability",
            ),
            (
                TimeDistributionSpec::TwoMode {
                    slow_probability: 0.5,
                    slow_factor: 0.5,
                },
                "slow_factor",
            ),
            (TimeDistributionSpec::Lognormal { sigma: f64::NAN }, "sigma"),
        ];
        for (spec, key) in bad {
            assert_eq!(spec.validate().unwrap_err().0, key, "{spec:?}");
        }
    }

    #[test]
    fn draws_are_uniform_in_the_unit_interval() {
        assert_eq!(unit_interval(0), 0.0);
        assert!(unit_interval(u64::MAX) < 1.0);
    }
}
