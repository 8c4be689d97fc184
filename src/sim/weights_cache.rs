//! The primary unit's last-level cache as it serves expert weights (the profile's
//! `compute.weights_cache`), by its replacement rule (`hardware::Replacement`):
//!
//! - LRU: an expert whose last kernel ended within `capacity_bytes` of expert weights computed
//!   since finds its weights still cached and runs at the cached rate. The distance counts
//!   every kernel's bytes, repeats included (a reuse distance on a clock of bytes computed, not
//!   an LRU stack of distinct experts).
//! - Random: every byte fetched from memory evicts a cached byte at random, so an expert's
//!   weights survive `f` bytes fetched since its last kernel with probability
//!   `exp(-f / capacity_bytes)`; the kernel takes that mix of the cached and the memory time
//!   (an expectation: no draw, the same every run) and fetches the rest. With a `lifetime_ns`,
//!   other tenants of the cache evict too, at their own pace: the weights also survive `t` of
//!   wall time since that kernel's start with probability `exp(-t / lifetime_ns)`.
//!
//! One counter and two stamps per expert, O(1) per kernel. `host calibrate` fits the capacity
//! (and the lifetime) under the rule it writes.

use crate::engine::TimeNs;
use crate::hardware::Replacement;

/// Never computed.
const NEVER: u64 = u64::MAX;

/// The rule a unit's weights cache follows (from `SimWeightsCache`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct CacheRule {
    pub replacement: Replacement,
    pub capacity_bytes: u64,
    /// Under random replacement, the mean survival time against other tenants' evictions.
    pub lifetime_ns: Option<f64>,
}

/// Per expert, the clocks at its last kernel.
#[derive(Debug, Default)]
pub(super) struct WeightsCacheState {
    /// Bytes computed, at each expert's last kernel's end.
    last: Vec<u64>,
    clock: u64,
    /// Bytes fetched from memory (in expectation), at each expert's last kernel's end.
    last_fetched: Vec<f64>,
    fetched: f64,
    /// Wall time at each expert's last kernel's start.
    last_ns: Vec<TimeNs>,
}

impl WeightsCacheState {
    /// For `n` experts (0 without a weights cache).
    pub fn new(n: usize) -> WeightsCacheState {
        WeightsCacheState {
            last: vec![NEVER; n],
            clock: 0,
            last_fetched: vec![0.0; n],
            fetched: 0.0,
            last_ns: vec![0; n],
        }
    }

    /// Bytes of expert weights computed since the end of expert `g`'s last kernel (`None`:
    /// never computed).
    pub fn distance(&self, g: usize) -> Option<u64> {
        let last = *self.last.get(g)?;
        (last != NEVER).then(|| self.clock - last)
    }

    /// Under random replacement by `rule`, the probability that expert `g`'s weights are still
    /// cached at `now` (0 if never computed): `exp(-fetched since / capacity - time since /
    /// lifetime)`.
    pub fn still_cached(&self, g: usize, rule: CacheRule, now: TimeNs) -> f64 {
        match self.last.get(g) {
            Some(&last) if last != NEVER => survival(
                self.fetched - self.last_fetched[g],
                rule.capacity_bytes.max(1) as f64,
                aged(rule.lifetime_ns, now.saturating_sub(self.last_ns[g])),
            ),
            _ => 0.0,
        }
    }

    /// A kernel on expert `g`'s `bytes` of weights starting at `now` under `rule`: its memory
    /// time, between `cached_ns` (weights cached) and `memory_ns` (from memory). Only a kernel
    /// that `may_hit` can find its weights cached (weights that just arrived are as the
    /// after-load figure says). Advances the clocks and stamps `g`.
    #[allow(clippy::too_many_arguments)]
    pub fn kernel(
        &mut self,
        g: usize,
        bytes: u64,
        may_hit: bool,
        rule: CacheRule,
        now: TimeNs,
        memory_ns: TimeNs,
        cached_ns: TimeNs,
    ) -> TimeNs {
        let last = self.last[g];
        let seen = may_hit && last != NEVER;
        let computed_since = self.clock.wrapping_sub(last);
        self.clock = self.clock.saturating_add(bytes);
        self.last[g] = self.clock;
        match rule.replacement {
            Replacement::Lru => {
                if seen && computed_since <= rule.capacity_bytes {
                    cached_ns
                } else {
                    memory_ns
                }
            }
            Replacement::Random => {
                let aged = aged(rule.lifetime_ns, now.saturating_sub(self.last_ns[g]));
                self.last_ns[g] = now;
                let cached = self.random_cached(
                    g,
                    bytes as f64,
                    seen,
                    rule.capacity_bytes.max(1) as f64,
                    aged,
                );
                let ns = memory_ns as f64 + cached * (cached_ns as f64 - memory_ns as f64);
                ns.round() as TimeNs
            }
        }
    }

    /// Under random replacement with `capacity`, the probability that expert `g`'s weights
    /// are still cached (0 unless it was `seen` and may hit), `aged` (its time since over the
    /// lifetime) taken off too; fetches the rest of its `bytes` on the fetched clock and stamps
    /// `g` there. (Bytes and capacity in any one unit.)
    fn random_cached(&mut self, g: usize, bytes: f64, seen: bool, capacity: f64, aged: f64) -> f64 {
        let cached = if seen {
            survival(self.fetched - self.last_fetched[g], capacity, aged)
        } else {
            0.0
        };
        self.fetched += (1.0 - cached) * bytes;
        self.last_fetched[g] = self.fetched;
        cached
    }
}

/// The survival probability after `fetched` bytes fetched and `aged` lifetimes.
fn survival(fetched: f64, capacity: f64, aged: f64) -> f64 {
    (-(fetched / capacity) - aged).exp()
}

/// `elapsed_ns` in lifetimes (0 without one).
fn aged(lifetime_ns: Option<f64>, elapsed_ns: TimeNs) -> f64 {
    lifetime_ns.map_or(0.0, |t| elapsed_ns as f64 / t)
}

/// The share of kernels that find their weights cached under [`Replacement::Random`] (the
/// mean of the cached probabilities) when each draws one of `experts` equally sized experts
/// uniformly at random, the cache holds `capacity_experts` experts' bytes and each draw ages
/// the cached weights by `aged_per_draw` lifetimes (0: no lifetime): the rule replayed on 64
/// draws per expert after a warm-up of 4 per expert (a fixed sequence: the same share every
/// call). What `host calibrate` inverts to fit the capacity and the lifetime from its random
/// draws, back to back and paced.
pub fn random_replacement_share(experts: usize, capacity_experts: f64, aged_per_draw: f64) -> f64 {
    let n = experts.max(1);
    let mut w = WeightsCacheState::new(n);
    let mut seen = vec![false; n];
    let mut last_draw = vec![0usize; n];
    let (warm_up, draws) = (4 * n, 64 * n);
    let mut share = 0.0;
    for k in 0..warm_up + draws {
        let g = (crate::seed::derive_seed(0x5EED_CAC4E, k as u64) % n as u64) as usize;
        // In units of one expert's bytes.
        let aged = (k - last_draw[g]) as f64 * aged_per_draw;
        let cached = w.random_cached(g, 1.0, seen[g], capacity_experts.max(1e-9), aged);
        seen[g] = true;
        last_draw[g] = k;
        if k >= warm_up {
            share += cached;
        }
    }
    share / draws as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_lru_an_expert_is_cached_while_its_reuse_distance_fits() {
        let mut w = WeightsCacheState::new(4);
        let rule = CacheRule {
            replacement: Replacement::Lru,
            capacity_bytes: 25,
            lifetime_ns: None,
        };
        let mut k = |g, may_hit| w.kernel(g, 10, may_hit, rule, 0, 100, 40);
        // First use: from memory.
        assert_eq!(k(0, true), 100);
        // 20 bytes of others since: cached (capacity 25).
        assert_eq!(k(1, true), 100);
        assert_eq!(k(2, true), 100);
        assert_eq!(k(0, true), 40);
        // Expert 1: 30 bytes computed since its kernel (experts 2, 0 and 3): from memory.
        assert_eq!(k(3, true), 100);
        assert_eq!(k(1, true), 100);
        // Just arrived: never a hit, but stamped.
        assert_eq!(k(3, false), 100);
        assert_eq!(k(3, true), 40);
    }

    #[test]
    fn under_random_replacement_weights_survive_the_bytes_fetched_since() {
        let mut w = WeightsCacheState::new(2);
        let rule = CacheRule {
            replacement: Replacement::Random,
            capacity_bytes: 100,
            lifetime_ns: None,
        };
        let mut k = |g, may_hit| w.kernel(g, 10, may_hit, rule, 0, 100, 40);
        // First uses fetch every byte: 20 bytes fetched.
        assert_eq!(k(0, true), 100);
        assert_eq!(k(1, true), 100);
        // Expert 0: 10 bytes fetched since (expert 1's), cached with probability e^-0.1:
        // 100 - 0.905 * 60 = 45.7; it fetches the other 9.5 % of its bytes.
        assert_eq!(k(0, true), 46);
        // Nothing fetched since: wholly cached, fetching nothing.
        assert_eq!(k(0, true), 40);
        // Expert 1: 0.95 bytes fetched since (expert 0's share): e^-0.0095.
        let p = (-(10.0 * (1.0 - (-0.1f64).exp())) / 100.0).exp();
        assert_eq!(k(1, true), (100.0 - 60.0 * p).round() as TimeNs);
        // Just arrived: from memory, all of it fetched (10 bytes); expert 0 is then e^-0.1
        // cached again, whatever was computed (not fetched) between.
        assert_eq!(k(1, false), 100);
        assert_eq!(k(1, true), 40);
        let p0 = (-(10.0 * (1.0 - p) + 10.0) / 100.0).exp();
        assert_eq!(k(0, true), (100.0 - 60.0 * p0).round() as TimeNs);
    }

    #[test]
    fn with_a_lifetime_weights_also_leave_with_wall_time() {
        let rule = CacheRule {
            replacement: Replacement::Random,
            capacity_bytes: 100,
            lifetime_ns: Some(1000.0),
        };
        let mut w = WeightsCacheState::new(2);
        // Expert 0 at t = 0, expert 1 at 10 (10 bytes fetched).
        assert_eq!(w.kernel(0, 10, true, rule, 0, 100, 40), 100);
        assert_eq!(w.kernel(1, 10, true, rule, 10, 100, 40), 100);
        // Expert 0 at t = 500: 10 bytes and half a lifetime since: e^(-0.1 - 0.5).
        let p: f64 = (-0.6f64).exp();
        assert!((w.still_cached(0, rule, 500) - p).abs() < 1e-12);
        assert_eq!(
            w.kernel(0, 10, true, rule, 500, 100, 40),
            (100.0 - 60.0 * p).round() as TimeNs
        );
        // Again at once: nothing fetched, no time since, wholly cached.
        assert_eq!(w.kernel(0, 10, true, rule, 500, 100, 40), 40);
        // Without the lifetime, time alone evicts nothing.
        let timeless = CacheRule {
            lifetime_ns: None,
            ..rule
        };
        assert_eq!(w.kernel(0, 10, true, timeless, 1_000_000, 100, 40), 40);
    }

    #[test]
    fn aging_each_draw_lowers_the_share_of_random_draws_cached() {
        let base = random_replacement_share(32, 8.0, 0.0);
        let aged = random_replacement_share(32, 8.0, 0.02);
        let more = random_replacement_share(32, 8.0, 0.1);
        assert!(
            base > aged && aged > more && more > 0.0,
            "{base} {aged} {more}"
        );
        // A cache as large as the draws' experts, aged by nothing, holds nearly all.
        assert!(random_replacement_share(32, 1e6, 0.0) > 0.99);
        // Aged by a lifetime per draw: about e^-32 for the typical reuse 32 draws later.
        assert!(random_replacement_share(32, 1e6, 1.0) < 0.05);
    }
}
