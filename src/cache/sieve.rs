//! SIEVE (Zhang et al., NSDI 2024), with libCacheSim's `Sieve.c` semantics: objects enter at
//! the head of one queue with their visited bit clear; a hit sets the bit. To evict, a hand
//! walks from its last position (initially the tail) towards the head, wrapping to the tail,
//! clearing visited bits until it finds an unvisited object; that object is evicted and the
//! hand stays at its neighbour towards the head. Protected objects are stepped over unchanged.

use super::list::{DList, NIL};
use super::policy::EvictionPolicy;

/// SIEVE.
#[derive(Debug, Clone)]
pub struct SievePolicy {
    queue: DList,
    visited: Vec<bool>,
    hand: u32,
}

impl SievePolicy {
    /// A policy for object ids below `n`.
    pub fn new(n: usize) -> SievePolicy {
        SievePolicy {
            queue: DList::new(n),
            visited: vec![false; n],
            hand: NIL,
        }
    }

    fn step(&self, x: u32) -> u32 {
        let p = self.queue.prev(x);
        if p == NIL { self.queue.tail() } else { p }
    }
}

impl EvictionPolicy for SievePolicy {
    #[inline]
    fn on_hit(&mut self, x: u32) {
        self.visited[x as usize] = true;
    }

    fn on_insert(&mut self, x: u32) {
        self.queue.push_head(x);
        self.visited[x as usize] = false;
    }

    fn evict(&mut self, protected: &[u32]) -> Option<u32> {
        if self.queue.is_empty() {
            return None;
        }
        let mut x = if self.hand == NIL {
            self.queue.tail()
        } else {
            self.hand
        };
        // Two full turns clear every visited bit, so a third finds a victim if one exists.
        let mut steps = 3 * self.queue.len() as usize + 1;
        loop {
            if steps == 0 {
                return None;
            }
            steps -= 1;
            if protected.contains(&x) {
                x = self.step(x);
            } else if self.visited[x as usize] {
                self.visited[x as usize] = false;
                x = self.step(x);
            } else {
                break;
            }
        }
        self.hand = self.queue.prev(x);
        self.queue.unlink(x);
        Some(x)
    }

    fn remove(&mut self, x: u32) {
        if self.hand == x {
            self.hand = self.queue.prev(x);
        }
        self.queue.unlink(x);
    }

    fn reset(&mut self) {
        self.queue.clear();
        self.hand = NIL;
    }
}
