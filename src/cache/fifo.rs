//! FIFO: evicts the object inserted longest ago; hits change nothing.

use super::list::DList;
use super::policy::EvictionPolicy;

/// First in, first out.
#[derive(Debug, Clone)]
pub struct FifoPolicy {
    queue: DList,
}

impl FifoPolicy {
    /// A policy for object ids below `n`.
    pub fn new(n: usize) -> FifoPolicy {
        FifoPolicy {
            queue: DList::new(n),
        }
    }
}

impl EvictionPolicy for FifoPolicy {
    #[inline]
    fn on_hit(&mut self, _x: u32) {}

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
