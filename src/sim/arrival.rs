//! When requests arrive. The device serves one request at a time, in arrival order; a request
//! that arrives while another is being served waits, and the wait counts in its time to first
//! token.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::engine::TimeNs;
use crate::seed::derive_seed;

/// The stream of the run's seed that arrivals draw from.
const ARRIVAL_STREAM: u64 = 0xA221_7A15;

/// How requests arrive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ArrivalKind {
    /// Every request at time 0 (a batch queue).
    AllAtOnce {},
    /// A Poisson process of `rate_per_s` requests per second (open loop).
    Poisson {
        /// Mean arrivals per second.
        rate_per_s: f64,
    },
    /// One user: the next request arrives `think_time_ns` after the previous one completes.
    ClosedLoop {
        /// Pause between a completion and the next arrival.
        #[serde(default)]
        think_time_ns: u64,
    },
}

impl Default for ArrivalKind {
    fn default() -> Self {
        ArrivalKind::AllAtOnce {}
    }
}

impl ArrivalKind {
    /// The short name (`all-at-once`, `poisson`, `closed-loop`).
    pub fn name(&self) -> &'static str {
        match self {
            ArrivalKind::AllAtOnce {} => "all-at-once",
            ArrivalKind::Poisson { .. } => "poisson",
            ArrivalKind::ClosedLoop { .. } => "closed-loop",
        }
    }

    /// Every parameter, as `name=value` pairs separated by spaces.
    pub fn params(&self) -> String {
        match self {
            ArrivalKind::AllAtOnce {} => String::new(),
            ArrivalKind::Poisson { rate_per_s } => format!("rate_per_s={rate_per_s}"),
            ArrivalKind::ClosedLoop { think_time_ns } => format!("think_time_ns={think_time_ns}"),
        }
    }

    /// Checks parameters; the error names the field. A mean gap must fit one event's
    /// duration ([`crate::units::MAX_DURATION_NS`]): rates below 10^-6 per second (one request
    /// in 11.6 days) are refused, as are rates above 10^9 per second.
    pub fn validate(&self) -> Result<(), crate::param::ParamError> {
        match self {
            ArrivalKind::Poisson { rate_per_s } => {
                crate::param::within("rate_per_s", *rate_per_s, 1e-6, 1e9)
            }
            ArrivalKind::ClosedLoop { think_time_ns } => crate::param::int_within(
                "think_time_ns",
                *think_time_ns,
                0,
                crate::units::MAX_DURATION_NS as u64,
                "at most 10^15 ns, 11.6 days",
            ),
            ArrivalKind::AllAtOnce {} => Ok(()),
        }
    }

    /// Arrival times fixed in advance (all-at-once and Poisson); `None` for closed loop, whose
    /// arrivals follow completions. Poisson draws come from the run's seed alone.
    pub fn open_loop_times(&self, requests: u32, seed: u64) -> Option<Vec<TimeNs>> {
        match *self {
            ArrivalKind::AllAtOnce {} => Some(vec![0; requests as usize]),
            ArrivalKind::Poisson { rate_per_s } => {
                let mut rng = StdRng::seed_from_u64(derive_seed(seed, ARRIVAL_STREAM));
                let mut t = 0.0f64;
                let times = (0..requests)
                    .map(|i| {
                        if i > 0 {
                            // Exponential inter-arrival by inversion; 1 - u is in (0, 1].
                            let u: f64 = rng.random();
                            t += -(1.0 - u).ln() / rate_per_s * 1e9;
                        }
                        t.round() as TimeNs
                    })
                    .collect();
                Some(times)
            }
            ArrivalKind::ClosedLoop { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_is_seeded_and_has_the_right_mean() {
        let a = ArrivalKind::Poisson { rate_per_s: 4.0 };
        let t = a.open_loop_times(20_001, 7).unwrap();
        assert_eq!(t, a.open_loop_times(20_001, 7).unwrap());
        assert_ne!(t, a.open_loop_times(20_001, 8).unwrap());
        assert_eq!(t[0], 0);
        let mean_gap_s = t[20_000] as f64 / 20_000.0 / 1e9;
        // Mean 0.25 s; the standard error of 20,000 exponential gaps is 0.25 / sqrt(20,000).
        assert!(
            (mean_gap_s - 0.25).abs() < 5.0 * 0.25 / (20_000f64).sqrt(),
            "{mean_gap_s}"
        );
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
    }
}
