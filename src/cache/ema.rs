//! EMA preference: evicts the resident expert with the lowest exponentially decayed selection
//! score, the seed's long-term preference `H_i(t) = decay · H_i(t−1) + (1 − decay) ·
//! selected_i(t)` (seed doc 04 §2.3). `t` counts events (a token's selection at this cache;
//! single accesses in sequential semantics), and every selected expert counts, resident or not.
//! Scores decay lazily: `H` and the event of its last update are stored, and the current value
//! is `H · decay^(t − last)`. Ties go to the older update, then the lower id.

use super::list::Members;
use super::policy::EvictionPolicy;

/// The seed's default decay (doc 06: `preference_decay = 0.95`).
pub const DEFAULT_DECAY: f64 = 0.95;

/// Lowest decayed selection score.
#[derive(Debug, Clone)]
pub struct EmaPolicy {
    decay: f64,
    score: Vec<f64>,
    last: Vec<u64>,
    event: u64,
    residents: Members,
}

impl EmaPolicy {
    /// A policy for object ids below `n`.
    pub fn new(n: usize, decay: f64) -> EmaPolicy {
        EmaPolicy {
            decay,
            score: vec![0.0; n],
            last: vec![0; n],
            event: 0,
            residents: Members::new(n),
        }
    }

    /// The current score of `x`.
    pub fn current(&self, x: u32) -> f64 {
        let i = x as usize;
        self.score[i]
            * self
                .decay
                .powi((self.event - self.last[i]).min(i32::MAX as u64) as i32)
    }

    fn select(&mut self, x: u32) {
        let h = self.current(x);
        self.score[x as usize] = h + (1.0 - self.decay);
        self.last[x as usize] = self.event;
    }
}

impl EvictionPolicy for EmaPolicy {
    fn begin_event(&mut self) {
        self.event += 1;
    }

    fn on_hit(&mut self, x: u32) {
        self.select(x);
    }

    fn on_miss(&mut self, x: u32) {
        self.select(x);
    }

    fn on_insert(&mut self, x: u32) {
        self.residents.insert(x);
    }

    fn evict(&mut self, protected: &[u32]) -> Option<u32> {
        let mut best: Option<(f64, u64, u32)> = None;
        for &x in self.residents.items() {
            if protected.contains(&x) {
                continue;
            }
            let key = (self.current(x), self.last[x as usize], x);
            let better = match best {
                None => true,
                Some(b) => key.0 < b.0 || (key.0 == b.0 && (key.1, key.2) < (b.1, b.2)),
            };
            if better {
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
        self.score.iter_mut().for_each(|s| *s = 0.0);
        self.last.iter_mut().for_each(|l| *l = 0);
        self.event = 0;
    }
}
