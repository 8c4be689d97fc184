//! A resource with `n` identical channels and one FIFO queue (SimPy's `Resource`): a job that
//! arrives while every channel is busy waits; a channel that frees takes the oldest waiting
//! job. The resource does no timing itself: the model starts a job when [`FifoResource::arrive`]
//! or [`FifoResource::release`] hands it back, and schedules its completion.

use std::collections::VecDeque;

use super::TimeNs;

/// `channels` servers sharing one FIFO queue of jobs `J`.
#[derive(Debug, Clone)]
pub struct FifoResource<J> {
    channels: u32,
    busy: u32,
    queue: VecDeque<J>,
    busy_since: TimeNs,
    /// Integral of busy channels over time, in channel·ns, up to `busy_since`.
    busy_channel_ns: u128,
}

impl<J: PartialEq> FifoResource<J> {
    /// A resource with `channels` (≥ 1) channels.
    pub fn new(channels: u32) -> FifoResource<J> {
        assert!(channels >= 1, "a resource needs at least one channel");
        FifoResource {
            channels,
            busy: 0,
            queue: VecDeque::new(),
            busy_since: 0,
            busy_channel_ns: 0,
        }
    }

    fn account(&mut self, now: TimeNs) {
        self.busy_channel_ns += u128::from(self.busy) * u128::from(now - self.busy_since);
        self.busy_since = now;
    }

    /// `job` arrives at `now`. Returns it back if a channel is free (the caller starts it
    /// now); otherwise it waits.
    pub fn arrive(&mut self, now: TimeNs, job: J) -> Option<J> {
        if self.busy < self.channels {
            self.account(now);
            self.busy += 1;
            Some(job)
        } else {
            self.queue.push_back(job);
            None
        }
    }

    /// A job finished at `now` and freed its channel. Returns the next waiting job, which
    /// takes the channel (the caller starts it now).
    pub fn release(&mut self, now: TimeNs) -> Option<J> {
        assert!(self.busy > 0, "release of an idle resource");
        match self.queue.pop_front() {
            Some(job) => Some(job),
            None => {
                self.account(now);
                self.busy -= 1;
                None
            }
        }
    }

    /// Removes `job` from the queue if it is still waiting; `true` if it was.
    pub fn cancel(&mut self, job: &J) -> bool {
        match self.queue.iter().position(|j| j == job) {
            Some(i) => {
                self.queue.remove(i);
                true
            }
            None => false,
        }
    }

    /// Busy channels.
    pub fn busy(&self) -> u32 {
        self.busy
    }

    /// Jobs waiting.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    /// Channel-nanoseconds spent busy up to `now`.
    pub fn busy_channel_ns(&self, now: TimeNs) -> u128 {
        self.busy_channel_ns
            + u128::from(self.busy) * u128::from(now.saturating_sub(self.busy_since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_channel_serialises_two_overlap() {
        let mut one = FifoResource::new(1);
        assert_eq!(one.arrive(0, 'a'), Some('a'));
        assert_eq!(one.arrive(0, 'b'), None);
        assert_eq!(one.arrive(1, 'c'), None);
        assert_eq!(one.release(10), Some('b'));
        assert_eq!(one.release(20), Some('c'));
        assert_eq!(one.release(30), None);
        assert_eq!(one.busy_channel_ns(40), 30);

        let mut two = FifoResource::new(2);
        assert_eq!(two.arrive(0, 'a'), Some('a'));
        assert_eq!(two.arrive(0, 'b'), Some('b'));
        assert_eq!(two.arrive(0, 'c'), None);
        assert_eq!(two.release(10), Some('c'));
        assert_eq!(two.release(10), None);
        assert_eq!(two.release(20), None);
        assert_eq!(two.busy_channel_ns(20), 30);
    }

    #[test]
    fn cancel_removes_only_waiting_jobs() {
        let mut r = FifoResource::new(1);
        r.arrive(0, 1);
        r.arrive(0, 2);
        r.arrive(0, 3);
        assert!(!r.cancel(&1), "running jobs cannot be cancelled");
        assert!(r.cancel(&2));
        assert_eq!(r.release(5), Some(3));
        assert_eq!(r.waiting(), 0);
    }
}
