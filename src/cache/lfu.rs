//! LFU with libCacheSim's semantics (`LFU.c`): an object's count starts at 1 on insertion, rises
//! by one per hit while it is resident, and is forgotten on eviction (no aging). The victim has
//! the lowest count; among equal counts, the object that reached that count earliest (LRU
//! order within a frequency bucket).

use super::list::Members;
use super::policy::EvictionPolicy;

/// Least frequently used, while resident.
#[derive(Debug, Clone)]
pub struct LfuPolicy {
    freq: Vec<u64>,
    /// The tick at which the object reached its current count.
    reached: Vec<u64>,
    tick: u64,
    residents: Members,
}

impl LfuPolicy {
    /// A policy for object ids below `n`.
    pub fn new(n: usize) -> LfuPolicy {
        LfuPolicy {
            freq: vec![0; n],
            reached: vec![0; n],
            tick: 0,
            residents: Members::new(n),
        }
    }
}

impl EvictionPolicy for LfuPolicy {
    fn on_hit(&mut self, x: u32) {
        self.tick += 1;
        self.freq[x as usize] += 1;
        self.reached[x as usize] = self.tick;
    }

    fn on_insert(&mut self, x: u32) {
        self.tick += 1;
        self.freq[x as usize] = 1;
        self.reached[x as usize] = self.tick;
        self.residents.insert(x);
    }

    fn evict(&mut self, protected: &[u32]) -> Option<u32> {
        let mut best: Option<(u64, u64, u32)> = None;
        for &x in self.residents.items() {
            if protected.contains(&x) {
                continue;
            }
            let key = (self.freq[x as usize], self.reached[x as usize], x);
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        let (_, _, v) = best?;
        self.residents.remove(v);
        Some(v)
    }

    fn remove(&mut self, x: u32) {
        self.residents.remove(x);
    }

    fn reset(&mut self) {
        self.residents.clear();
    }
}
