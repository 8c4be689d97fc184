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
//!   (an expectation: no draw, the same every run) and fetches the rest.
//!
//! One counter and one stamp per expert for each, O(1) per kernel. `host calibrate` fits the
//! capacity under the rule it writes.

use crate::engine::TimeNs;
use crate::hardware::Replacement;

/// Never computed.
const NEVER: u64 = u64::MAX;

/// Per expert, the clocks at the end of its last kernel.
#[derive(Debug, Default)]
pub(super) struct WeightsCacheState {
    /// Bytes computed, at each expert's last kernel's end.
    last: Vec<u64>,
    clock: u64,
    /// Bytes fetched from memory (in expectation), at each expert's last kernel's end.
    last_fetched: Vec<f64>,
    fetched: f64,
}

impl WeightsCacheState {
    /// For `n` experts (0 without a weights cache).
    pub fn new(n: usize) -> WeightsCacheState {
        WeightsCacheState {
            last: vec![NEVER; n],
            clock: 0,
            last_fetched: vec![0.0; n],
            fetched: 0.0,
        }
    }

    /// Bytes of expert weights computed since the end of expert `g`'s last kernel (`None`:
    /// never computed).
    pub fn distance(&self, g: usize) -> Option<u64> {
        let last = *self.last.get(g)?;
        (last != NEVER).then(|| self.clock - last)
    }

    /// Under random replacement with `capacity_bytes`, the probability that expert `g`'s
    /// weights are still cached now (0 if never computed): `exp(-fetched since / capacity)`.
    pub fn still_cached(&self, g: usize, capacity_bytes: u64) -> f64 {
        match self.last.get(g) {
            Some(&last) if last != NEVER => {
                (-(self.fetched - self.last_fetched[g]) / capacity_bytes.max(1) as f64).exp()
            }
            _ => 0.0,
        }
    }

    /// A kernel on expert `g`'s `bytes` of weights under `(replacement, capacity_bytes)`: its
    /// memory time, between `cached_ns` (weights cached) and `memory_ns` (from memory). Only a
    /// kernel that `may_hit` can find its weights cached (weights that just arrived are as the
    /// after-load figure says). Advances the clocks and stamps `g`.
    pub fn kernel(
        &mut self,
        g: usize,
        bytes: u64,
        may_hit: bool,
        (replacement, capacity_bytes): (Replacement, u64),
        memory_ns: TimeNs,
        cached_ns: TimeNs,
    ) -> TimeNs {
        let last = self.last[g];
        let seen = may_hit && last != NEVER;
        let computed_since = self.clock.wrapping_sub(last);
        self.clock = self.clock.saturating_add(bytes);
        self.last[g] = self.clock;
        match replacement {
            Replacement::Lru => {
                if seen && computed_since <= capacity_bytes {
                    cached_ns
                } else {
                    memory_ns
                }
            }
            Replacement::Random => {
                let cached =
                    self.random_cached(g, bytes as f64, seen, capacity_bytes.max(1) as f64);
                let ns = memory_ns as f64 + cached * (cached_ns as f64 - memory_ns as f64);
                ns.round() as TimeNs
            }
        }
    }

    /// Under random replacement with `capacity`, the probability that expert `g`'s weights
    /// are still cached (0 unless it was `seen` and may hit); fetches the rest of its `bytes`
    /// on the fetched clock and stamps `g` there. (Bytes and capacity in any one unit.)
    fn random_cached(&mut self, g: usize, bytes: f64, seen: bool, capacity: f64) -> f64 {
        let cached = if seen {
            (-(self.fetched - self.last_fetched[g]) / capacity).exp()
        } else {
            0.0
        };
        self.fetched += (1.0 - cached) * bytes;
        self.last_fetched[g] = self.fetched;
        cached
    }
}

/// The share of kernels that find their weights cached under [`Replacement::Random`] (the
/// mean of the cached probabilities) when each draws one of `experts` equally sized experts
/// uniformly at random and the cache holds `capacity_experts` experts' bytes: the rule replayed
/// on 64 draws per expert after a warm-up of 4 per expert (a fixed sequence: the same share
/// every call). What `host calibrate` inverts to fit the capacity from its random draws.
pub fn random_replacement_share(experts: usize, capacity_experts: f64) -> f64 {
    let n = experts.max(1);
    let mut w = WeightsCacheState::new(n);
    let mut seen = vec![false; n];
    let (warm_up, draws) = (4 * n, 64 * n);
    let mut share = 0.0;
    for k in 0..warm_up + draws {
        let g = (crate::seed::derive_seed(0x5EED_CAC4E, k as u64) % n as u64) as usize;
        // In units of one expert's bytes.
        let cached = w.random_cached(g, 1.0, seen[g], capacity_experts.max(1e-9));
        seen[g] = true;
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
        let mut k = |g, may_hit| w.kernel(g, 10, may_hit, (Replacement::Lru, 25), 100, 40);
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
        let mut k = |g, may_hit| w.kernel(g, 10, may_hit, (Replacement::Random, 100), 100, 40);
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
}
