//! Static pinning: the "keep the top-N experts" baseline that llama.cpp users set up by hand.
//! The N most popular objects over the whole trace (N = the capacity in objects; ties to the
//! lower id) are the only ones ever admitted; every other lookup misses and streams the expert
//! without caching it. Popularity comes from a profiling pass over the trace, so this is an
//! offline placement. Cold misses count, as for every policy: a pinned expert is loaded on its
//! first use.

use super::list::DList;
use super::policy::EvictionPolicy;

/// Static top-N pinning.
#[derive(Debug, Clone)]
pub struct PinnedPolicy {
    pinned: Vec<bool>,
    lru: DList,
}

impl PinnedPolicy {
    /// Pins the `n_pinned` most popular of `n` objects.
    pub fn new(n: usize, popularity: &[u64], n_pinned: u32) -> PinnedPolicy {
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by(|&a, &b| {
            popularity[b as usize]
                .cmp(&popularity[a as usize])
                .then(a.cmp(&b))
        });
        let mut pinned = vec![false; n];
        for &x in order.iter().take(n_pinned as usize) {
            pinned[x as usize] = true;
        }
        PinnedPolicy {
            pinned,
            lru: DList::new(n),
        }
    }

    /// Whether `x` is pinned.
    pub fn is_pinned(&self, x: u32) -> bool {
        self.pinned[x as usize]
    }
}

impl EvictionPolicy for PinnedPolicy {
    fn on_hit(&mut self, x: u32) {
        self.lru.move_to_head(x);
    }

    fn admit(&mut self, x: u32) -> bool {
        self.pinned[x as usize]
    }

    fn on_insert(&mut self, x: u32) {
        self.lru.push_head(x);
    }

    fn evict(&mut self, protected: &[u32]) -> Option<u32> {
        let v = self.lru.tail_most_unprotected(protected)?;
        self.lru.unlink(v);
        Some(v)
    }

    fn remove(&mut self, x: u32) {
        self.lru.unlink(x);
    }

    fn reset(&mut self) {
        self.lru.clear();
    }
}
