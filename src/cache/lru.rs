//! LRU: a hit moves the object to the most-recently-used end; evicts the least recently used.

use super::list::DList;
use super::policy::EvictionPolicy;

/// Least recently used.
#[derive(Debug, Clone)]
pub struct LruPolicy {
    queue: DList,
}

impl LruPolicy {
    /// A policy for object ids below `n`.
    pub fn new(n: usize) -> LruPolicy {
        LruPolicy {
            queue: DList::new(n),
        }
    }
}

impl EvictionPolicy for LruPolicy {
    #[inline]
    fn on_hit(&mut self, x: u32) {
        self.queue.move_to_head(x);
    }

    fn on_insert(&mut self, x: u32) {
        self.queue.push_head(x);
    }

    fn evict(&mut self, protected: &[u32]) -> Option<u32> {
        let v = self.queue.tail_most_unprotected(protected)?;
        self.queue.unlink(v);
        Some(v)
    }

    fn remove(&mut self, x: u32) {
        self.queue.unlink(x);
    }

    fn reset(&mut self) {
        self.queue.clear();
    }
}
