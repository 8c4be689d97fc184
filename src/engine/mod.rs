//! A generic discrete-event core: a clock, an event queue and FIFO resources. It knows nothing
//! of MoE, caches or hardware; `sim` builds the inference model on top of it.
//!
//! Time is integer nanoseconds ([`TimeNs`]). Events are ordered by `(time, sequence number)`,
//! the sequence number counting calls to [`Scheduler::schedule_at`], so events scheduled for
//! the same instant come out in the order they were scheduled, whatever the payload: a run is
//! a pure function of its inputs. This is SimPy's rule too (its queue orders by time, then
//! priority, then an insertion counter), which is what makes the two comparable event by
//! event.
//!
//! The model owns its state and drives the loop:
//!
//! ```
//! use moesim::engine::Scheduler;
//! let mut s = Scheduler::new();
//! s.schedule_in(5, "b");
//! s.schedule_in(5, "c");
//! s.schedule_in(1, "a");
//! let mut order = Vec::new();
//! while let Some((t, ev)) = s.pop() {
//!     order.push((t, ev));
//! }
//! assert_eq!(order, [(1, "a"), (5, "b"), (5, "c")]);
//! ```

mod resource;

use std::cmp::Ordering;
use std::collections::BinaryHeap;

pub use resource::FifoResource;

/// Simulated time in nanoseconds.
pub type TimeNs = u64;

/// One pending event.
#[derive(Debug)]
struct Entry<E> {
    time: TimeNs,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    /// Reversed, so that the max-heap pops the earliest `(time, seq)` first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

/// The clock and the event queue.
#[derive(Debug)]
pub struct Scheduler<E> {
    now: TimeNs,
    seq: u64,
    heap: BinaryHeap<Entry<E>>,
    processed: u64,
    overflowed: bool,
}

impl<E> Default for Scheduler<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> Scheduler<E> {
    /// An empty queue at time 0.
    pub fn new() -> Scheduler<E> {
        Scheduler {
            now: 0,
            seq: 0,
            heap: BinaryHeap::new(),
            processed: 0,
            overflowed: false,
        }
    }

    /// The current time: the time of the last event popped.
    #[inline]
    pub fn now(&self) -> TimeNs {
        self.now
    }

    /// Schedules `event` at absolute time `time`, which must not be in the past.
    #[inline]
    pub fn schedule_at(&mut self, time: TimeNs, event: E) {
        assert!(
            time >= self.now,
            "event scheduled in the past ({time} < {})",
            self.now
        );
        self.heap.push(Entry {
            time,
            seq: self.seq,
            event,
        });
        self.seq += 1;
    }

    /// Schedules `event` `delay` nanoseconds from now. A time past the end of the clock
    /// (2^64 ns, 584 years) is held at the end and recorded: the model checks
    /// [`Scheduler::overflowed`] when the run ends and reports it instead of a wrapped time.
    #[inline]
    pub fn schedule_in(&mut self, delay: TimeNs, event: E) {
        let time = match self.now.checked_add(delay) {
            Some(t) => t,
            None => {
                self.overflowed = true;
                TimeNs::MAX
            }
        };
        self.schedule_at(time, event);
    }

    /// Whether some event was due after the end of the clock (see [`Scheduler::schedule_in`]).
    pub fn overflowed(&self) -> bool {
        self.overflowed || self.now == TimeNs::MAX
    }

    /// Removes the earliest event, advances the clock to it and returns it.
    #[inline]
    pub fn pop(&mut self) -> Option<(TimeNs, E)> {
        let e = self.heap.pop()?;
        self.now = e.time;
        self.processed += 1;
        Some((e.time, e.event))
    }

    /// Events pending.
    pub fn pending(&self) -> usize {
        self.heap.len()
    }

    /// Events popped so far.
    pub fn events_processed(&self) -> u64 {
        self.processed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_past_the_end_of_the_clock_is_held_and_recorded() {
        let mut s = Scheduler::new();
        s.schedule_in(TimeNs::MAX - 5, 1);
        assert!(!s.overflowed());
        assert_eq!(s.pop(), Some((TimeNs::MAX - 5, 1)));
        s.schedule_in(10, 2);
        assert!(s.overflowed());
        assert_eq!(s.pop(), Some((TimeNs::MAX, 2)));
    }

    #[test]
    fn same_time_events_keep_schedule_order() {
        let mut s = Scheduler::new();
        for i in 0..100u32 {
            s.schedule_at(u64::from(i % 3), i);
        }
        let mut last = (0, 0);
        let mut n = 0;
        while let Some((t, i)) = s.pop() {
            assert!((t, i) >= last, "{:?} after {:?}", (t, i), last);
            assert_eq!(t, u64::from(i % 3));
            last = (t, i);
            n += 1;
        }
        assert_eq!(n, 100);
        assert_eq!(s.events_processed(), 100);
    }

    #[test]
    fn clock_advances_and_relative_scheduling_uses_it() {
        let mut s = Scheduler::new();
        s.schedule_in(10, 'a');
        assert_eq!(s.pop(), Some((10, 'a')));
        assert_eq!(s.now(), 10);
        s.schedule_in(5, 'b');
        s.schedule_at(12, 'c');
        assert_eq!(s.pop(), Some((12, 'c')));
        assert_eq!(s.pop(), Some((15, 'b')));
        assert_eq!(s.pop(), None);
        assert_eq!(s.now(), 15);
    }

    #[test]
    #[should_panic(expected = "in the past")]
    fn scheduling_in_the_past_is_a_bug() {
        let mut s = Scheduler::new();
        s.schedule_at(10, ());
        s.pop();
        s.schedule_at(9, ());
    }
}
