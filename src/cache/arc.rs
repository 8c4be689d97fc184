//! ARC, the adaptive replacement cache (Megiddo & Modha, FAST 2003), counted in objects.
//!
//! T1 holds objects seen once recently, T2 objects seen at least twice; B1 and B2 are their
//! ghost lists (ids only). A miss that hits a ghost adapts the target size `p` of T1 (up for
//! B1, down for B2, by `max(|other ghost| / |this ghost|, 1)` as a float, as libCacheSim does
//! after cross-checking a Python ARC) and re-enters the object in T2. When room is needed after
//! a ghost hit, REPLACE runs; after a complete miss: if |T1| + |B1| reaches the capacity, drop
//! the oldest B1 ghost and REPLACE (or, with B1 empty, evict T1's oldest without a ghost);
//! otherwise drop the oldest B2 ghost once all four lists hold 2c entries, and REPLACE.
//! REPLACE moves the oldest of T1 (if |T1| > p, or = p when the object came from B2, or when T2
//! is empty) or else of T2 to the head of its ghost list. This bookkeeping follows the `ARC.c`
//! of libCacheSim shipped in the `libcachesim` 0.3.5 wheel, and the cross-check test finds
//! identical hit counts in object-slot mode.
//!
//! Difference from libCacheSim: sizes are counted in objects, so byte-mode results differ when
//! object sizes differ (libCacheSim's ARC counts bytes).

use super::list::DList;
use super::policy::EvictionPolicy;

/// Adaptive replacement cache.
#[derive(Debug, Clone)]
pub struct ArcPolicy {
    t1: DList,
    t2: DList,
    b1: DList,
    b2: DList,
    p: f64,
    c: f64,
    from_b1: bool,
    from_b2: bool,
    /// A ghost hit asked for one REPLACE.
    replace_pending: bool,
}

impl ArcPolicy {
    /// A policy for object ids below `n` and a capacity of `capacity` objects.
    pub fn new(n: usize, capacity: u32) -> ArcPolicy {
        ArcPolicy {
            t1: DList::new(n),
            t2: DList::new(n),
            b1: DList::new(n),
            b2: DList::new(n),
            p: 0.0,
            c: capacity.max(1) as f64,
            from_b1: false,
            from_b2: false,
            replace_pending: false,
        }
    }

    /// The target size of T1 (for tests).
    pub fn target_t1(&self) -> f64 {
        self.p
    }

    fn replace(&mut self, protected: &[u32]) -> Option<u32> {
        let t1 = self.t1.len() as f64;
        let from_t1 =
            (t1 > 0.0 && (t1 > self.p || (t1 == self.p && self.from_b2))) || self.t2.is_empty();
        let order: [bool; 2] = if from_t1 {
            [true, false]
        } else {
            [false, true]
        };
        for use_t1 in order {
            let (list, ghost) = if use_t1 {
                (&mut self.t1, &mut self.b1)
            } else {
                (&mut self.t2, &mut self.b2)
            };
            if let Some(v) = list.tail_most_unprotected(protected) {
                list.unlink(v);
                // A resident object never has a ghost: promotions clear it (`begin_insert`).
                assert!(
                    !ghost.contains(v),
                    "ARC: object {v} is resident and a ghost"
                );
                ghost.push_head(v);
                return Some(v);
            }
        }
        None
    }
}

impl EvictionPolicy for ArcPolicy {
    fn on_hit(&mut self, x: u32) {
        if self.t1.contains(x) {
            self.t1.unlink(x);
            self.t2.push_head(x);
        } else {
            self.t2.move_to_head(x);
        }
    }

    /// An object entering without a lookup (promoted from a slower tier) was referenced
    /// again: if its ghost is still here, that is ARC's ghost hit (adapt `p`, REPLACE, enter
    /// T2); otherwise it is new. State a miss left without inserting is dropped first.
    fn begin_insert(&mut self, x: u32) {
        self.on_miss(x);
    }

    fn on_miss(&mut self, x: u32) {
        self.replace_pending = false;
        self.from_b1 = self.b1.contains(x);
        self.from_b2 = self.b2.contains(x);
        if self.from_b1 {
            let delta = (self.b2.len() as f64 / self.b1.len() as f64).max(1.0);
            self.p = (self.p + delta).min(self.c);
            self.b1.unlink(x);
            self.replace_pending = true;
        } else if self.from_b2 {
            let delta = (self.b1.len() as f64 / self.b2.len() as f64).max(1.0);
            self.p = (self.p - delta).max(0.0);
            self.b2.unlink(x);
            self.replace_pending = true;
        }
    }

    fn on_insert(&mut self, x: u32) {
        assert!(
            !self.b1.contains(x) && !self.b2.contains(x),
            "ARC: object {x} inserted while still a ghost"
        );
        if self.from_b1 || self.from_b2 {
            self.t2.push_head(x);
        } else {
            self.t1.push_head(x);
        }
        self.from_b1 = false;
        self.from_b2 = false;
        self.replace_pending = false;
    }

    fn evict(&mut self, protected: &[u32]) -> Option<u32> {
        if self.replace_pending {
            self.replace_pending = false;
            return self.replace(protected);
        }
        let (t1, b1) = (self.t1.len() as f64, self.b1.len() as f64);
        if t1 + b1 + 1.0 > self.c {
            if b1 > 0.0 {
                self.b1.pop_tail();
                self.replace(protected)
            } else {
                // T1 fills the cache and B1 is empty: evict T1's oldest outright.
                let v = self.t1.tail_most_unprotected(protected)?;
                self.t1.unlink(v);
                Some(v)
            }
        } else {
            let total = t1 + b1 + self.t2.len() as f64 + self.b2.len() as f64;
            if total >= 2.0 * self.c {
                self.b2.pop_tail();
            }
            self.replace(protected)
        }
    }

    fn remove(&mut self, x: u32) {
        if self.t1.contains(x) {
            self.t1.unlink(x);
        } else {
            self.t2.unlink(x);
        }
    }

    fn reset(&mut self) {
        self.t1.clear();
        self.t2.clear();
        self.b1.clear();
        self.b2.clear();
        self.p = 0.0;
        self.from_b1 = false;
        self.from_b2 = false;
        self.replace_pending = false;
    }
}
