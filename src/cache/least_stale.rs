//! Least-Stale: keeps the experts whose layer the forward pass reaches soonest.
//!
//! SpecMD (Hoang et al., arXiv 2602.03921) proposes "Least-Stale" eviction, which "exploits
//! MoE's predictable expert access patterns" and balances temporal and spatial locality; the
//! sources available to us give no pseudocode, so this is our reading. In a cache shared by all
//! layers, experts are used layer by layer, cyclically, token after token. When the current
//! lookup is at layer `c`, an expert of layer `l` cannot be needed before `d = ((l − c − 1)
//! mod L) + 1` more layer steps: experts of the next layer are the freshest (d = 1), those of
//! the current layer the stalest (d = L, the next token). The victim has the largest `d`; ties
//! go to the least recently used. In a per-layer cache every expert has the same `d`, so the
//! policy is LRU.

use super::list::{DList, NIL};
use super::policy::EvictionPolicy;

/// Least-Stale.
#[derive(Debug, Clone)]
pub struct LeastStalePolicy {
    lru: DList,
    experts_per_layer: u32,
    layers: u32,
    current_layer: u32,
}

impl LeastStalePolicy {
    /// A policy for object ids below `n`, object `x` belonging to layer `x / experts_per_layer`.
    pub fn new(n: usize, experts_per_layer: u32) -> LeastStalePolicy {
        let layers = (n as u32).div_ceil(experts_per_layer).max(1);
        LeastStalePolicy {
            lru: DList::new(n),
            experts_per_layer,
            layers,
            current_layer: 0,
        }
    }

    fn distance(&self, x: u32) -> u32 {
        let l = x / self.experts_per_layer;
        (l + 2 * self.layers - self.current_layer - 1) % self.layers + 1
    }
}

impl EvictionPolicy for LeastStalePolicy {
    fn on_hit(&mut self, x: u32) {
        self.current_layer = x / self.experts_per_layer;
        self.lru.move_to_head(x);
    }

    fn on_miss(&mut self, x: u32) {
        self.current_layer = x / self.experts_per_layer;
    }

    fn on_insert(&mut self, x: u32) {
        self.lru.push_head(x);
    }

    fn evict(&mut self, protected: &[u32]) -> Option<u32> {
        // Walk from the LRU end; the first object with the largest distance wins the tie.
        let mut best: Option<(u32, u32)> = None;
        let mut x = self.lru.tail();
        while x != NIL {
            if !protected.contains(&x) {
                let d = self.distance(x);
                if best.is_none_or(|(bd, _)| d > bd) {
                    best = Some((d, x));
                    if d == self.layers {
                        break;
                    }
                }
            }
            x = self.lru.prev(x);
        }
        let (_, v) = best?;
        self.lru.unlink(v);
        Some(v)
    }

    fn remove(&mut self, x: u32) {
        self.lru.unlink(x);
    }

    fn reset(&mut self) {
        self.lru.clear();
        self.current_layer = 0;
    }
}
