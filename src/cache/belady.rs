//! Belady's MIN: evicts the resident object whose next use is furthest in the future (never
//! used again = +∞), never bypassing the incoming object (libCacheSim's `Belady.c`). Optimal
//! for equal object sizes in sequential semantics among policies that insert every miss. The
//! oracle comes through the constructor: `next_use[i]` is the index of the next lookup of the
//! object of the i-th lookup on this cache; the policy counts its lookups. Ties go to the lower
//! object id.
//!
//! Residents sit in a max-heap keyed by (next use, lower id first) with lazy deletion: a hit
//! pushes a new key and leaves the old one stale; stale keys are skipped when they surface, and
//! the heap is rebuilt when stale keys outnumber live ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use super::policy::EvictionPolicy;

/// Belady's MIN.
#[derive(Debug, Clone)]
pub struct BeladyPolicy {
    next_use: Arc<Vec<u64>>,
    lookup: usize,
    /// Next use of each resident object; `None` when not resident.
    resident_next: Vec<Option<u64>>,
    n_resident: usize,
    pending: u64,
    heap: BinaryHeap<(u64, Reverse<u32>)>,
    held: Vec<(u64, Reverse<u32>)>,
}

impl BeladyPolicy {
    /// A policy for object ids below `n` with the given oracle.
    pub fn new(n: usize, next_use: Arc<Vec<u64>>) -> BeladyPolicy {
        BeladyPolicy {
            next_use,
            lookup: 0,
            resident_next: vec![None; n],
            n_resident: 0,
            pending: 0,
            heap: BinaryHeap::new(),
            held: Vec::new(),
        }
    }

    fn next(&mut self) -> u64 {
        let v = *self
            .next_use
            .get(self.lookup)
            .expect("the oracle covers every lookup");
        self.lookup += 1;
        v
    }

    fn push(&mut self, x: u32, next: u64) {
        self.resident_next[x as usize] = Some(next);
        self.heap.push((next, Reverse(x)));
        if self.heap.len() > 4 * self.n_resident + 64 {
            self.heap = self
                .resident_next
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.map(|n| (n, Reverse(i as u32))))
                .collect();
        }
    }

    fn is_live(&self, entry: &(u64, Reverse<u32>)) -> bool {
        self.resident_next[entry.1.0 as usize] == Some(entry.0)
    }
}

impl EvictionPolicy for BeladyPolicy {
    fn on_hit(&mut self, x: u32) {
        let n = self.next();
        self.push(x, n);
    }

    fn on_miss(&mut self, _x: u32) {
        self.pending = self.next();
    }

    fn on_insert(&mut self, x: u32) {
        self.n_resident += 1;
        self.push(x, self.pending);
    }

    fn evict(&mut self, protected: &[u32]) -> Option<u32> {
        let mut victim = None;
        while let Some(top) = self.heap.pop() {
            if !self.is_live(&top) {
                continue;
            }
            if protected.contains(&top.1.0) {
                self.held.push(top);
                continue;
            }
            victim = Some(top.1.0);
            break;
        }
        for e in self.held.drain(..) {
            self.heap.push(e);
        }
        let v = victim?;
        self.resident_next[v as usize] = None;
        self.n_resident -= 1;
        Some(v)
    }

    fn remove(&mut self, x: u32) {
        if self.resident_next[x as usize].take().is_some() {
            self.n_resident -= 1;
        }
    }

    /// Forgets the residents; the position in the oracle stream is kept.
    fn reset(&mut self) {
        if self.n_resident > 0 {
            self.resident_next.iter_mut().for_each(|n| *n = None);
        }
        self.n_resident = 0;
        self.heap.clear();
    }
}
