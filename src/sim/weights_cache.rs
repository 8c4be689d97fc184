//! The primary unit's last-level cache as it serves expert weights (the profile's
//! `compute.weights_cache`): an expert whose last kernel ended within `capacity_bytes` of
//! expert weights computed since finds its weights still cached and runs at the cached rate.
//!
//! The distance counts every kernel's bytes, repeats included (a reuse distance on a clock of
//! bytes computed, not an LRU stack of distinct experts): one counter and one stamp per expert,
//! O(1) per kernel. `host calibrate` fits the capacity under the same rule.

use crate::engine::TimeNs;

/// Never computed.
const NEVER: u64 = u64::MAX;

/// Per expert, the byte clock at the end of its last kernel.
#[derive(Debug, Default)]
pub(super) struct WeightsCacheState {
    last: Vec<u64>,
    clock: u64,
}

impl WeightsCacheState {
    /// For `n` experts (0 without a weights cache).
    pub fn new(n: usize) -> WeightsCacheState {
        WeightsCacheState {
            last: vec![NEVER; n],
            clock: 0,
        }
    }

    /// Bytes of expert weights computed since the end of expert `g`'s last kernel (`None`:
    /// never computed).
    pub fn distance(&self, g: usize) -> Option<u64> {
        let last = *self.last.get(g)?;
        (last != NEVER).then(|| self.clock - last)
    }

    /// A kernel on expert `g`'s `bytes` of weights: `cached_ns` when `may_hit` and its last
    /// kernel ended within `capacity_bytes` of weights computed since, `memory_ns` otherwise.
    /// Advances the clock and stamps `g`.
    pub fn kernel(
        &mut self,
        g: usize,
        bytes: u64,
        may_hit: bool,
        capacity_bytes: u64,
        memory_ns: TimeNs,
        cached_ns: TimeNs,
    ) -> TimeNs {
        let last = self.last[g];
        let hit = may_hit && last != NEVER && self.clock - last <= capacity_bytes;
        self.clock = self.clock.saturating_add(bytes);
        self.last[g] = self.clock;
        if hit { cached_ns } else { memory_ns }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expert_is_cached_while_its_reuse_distance_fits() {
        let mut w = WeightsCacheState::new(4);
        // First use: from memory.
        assert_eq!(w.kernel(0, 10, true, 25, 100, 40), 100);
        // 20 bytes of others since: cached (capacity 25).
        assert_eq!(w.kernel(1, 10, true, 25, 100, 40), 100);
        assert_eq!(w.kernel(2, 10, true, 25, 100, 40), 100);
        assert_eq!(w.kernel(0, 10, true, 25, 100, 40), 40);
        // Expert 1: 30 bytes computed since its kernel (experts 2, 0 and 3): from memory.
        assert_eq!(w.kernel(3, 10, true, 25, 100, 40), 100);
        assert_eq!(w.kernel(1, 10, true, 25, 100, 40), 100);
        // Just arrived: never a hit, but stamped.
        assert_eq!(w.kernel(3, 10, false, 25, 100, 40), 100);
        assert_eq!(w.kernel(3, 10, true, 25, 100, 40), 40);
    }
}
