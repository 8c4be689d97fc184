//! LFRU, frequency-weighted recency: the victim has the lowest `count / age`, where `count` is
//! one plus the hits since insertion and `age` is the number of lookups on this cache since the
//! object's last use, plus one. A hot expert survives a few idle lookups that would push it out
//! of an LRU list; a once-used expert ages out as in LRU. Ties go to the least recently used.
//!
//! vLLM PR #37190 (`--moe-expert-cache-size`) describes its GPU expert cache as "LFRU
//! (frequency-weighted LRU)" without publishing a formula; this is our definition of one.

use super::list::Members;
use super::policy::EvictionPolicy;

/// Frequency-weighted recency.
#[derive(Debug, Clone)]
pub struct LfruPolicy {
    count: Vec<u64>,
    last: Vec<u64>,
    tick: u64,
    residents: Members,
}

impl LfruPolicy {
    /// A policy for object ids below `n`.
    pub fn new(n: usize) -> LfruPolicy {
        LfruPolicy {
            count: vec![0; n],
            last: vec![0; n],
            tick: 0,
            residents: Members::new(n),
        }
    }
}

impl EvictionPolicy for LfruPolicy {
    fn on_hit(&mut self, x: u32) {
        self.tick += 1;
        self.count[x as usize] += 1;
        self.last[x as usize] = self.tick;
    }

    fn on_miss(&mut self, _x: u32) {
        self.tick += 1;
    }

    fn on_insert(&mut self, x: u32) {
        self.count[x as usize] = 1;
        self.last[x as usize] = self.tick;
        self.residents.insert(x);
    }

    fn evict(&mut self, protected: &[u32]) -> Option<u32> {
        // Compare count_a / age_a < count_b / age_b as count_a · age_b < count_b · age_a.
        let mut best: Option<(u64, u64, u32)> = None;
        for &x in self.residents.items() {
            if protected.contains(&x) {
                continue;
            }
            let (count, last) = (self.count[x as usize], self.last[x as usize]);
            let age = self.tick - last + 1;
            let better = match best {
                None => true,
                Some((bc, ba, bx)) => {
                    let (lhs, rhs) = (count as u128 * ba as u128, bc as u128 * age as u128);
                    lhs < rhs || (lhs == rhs && (last, x) < (self.last[bx as usize], bx))
                }
            };
            if better {
                best = Some((count, age, x));
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
