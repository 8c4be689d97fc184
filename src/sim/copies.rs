//! Where each routed expert's copy in the compute tier stands: absent, on its way (the
//! transfer carrying it) or present; which copies a prefetch looked up early, which arrived and
//! were not computed since (cold), and which ladder step a copy holds under dynamic precision.
//! Indexed by the flat expert index `layer · experts + expert`.

use super::transfers::Transfers;

/// The compute tier's copy of one expert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Absent,
    InFlight(u32),
    Ready,
}

/// The state of every expert's copy.
#[derive(Debug)]
pub(super) struct Copies {
    pub status: Vec<Status>,
    /// Inserted by a prefetch and not used yet: its first use is the lookup the prefetch made
    /// early, so it does not reach the policy again.
    pub prefetched: Vec<bool>,
    /// Ladder step of each copy (dynamic precision).
    pub resident_step: Vec<u8>,
    /// Arrived over a link and not computed since (`expert_slowdown_after_load != 0` only;
    /// empty otherwise).
    pub cold: Vec<bool>,
}

impl Copies {
    /// `n` experts; those stored in the compute tier (`in_compute_tier`) are always present.
    pub fn new(n: usize, in_compute_tier: impl Fn(usize) -> bool, track_cold: bool) -> Copies {
        Copies {
            status: (0..n)
                .map(|g| {
                    if in_compute_tier(g) {
                        Status::Ready
                    } else {
                        Status::Absent
                    }
                })
                .collect(),
            prefetched: vec![false; n],
            resident_step: vec![0; n],
            cold: if track_cold {
                vec![false; n]
            } else {
                Vec::new()
            },
        }
    }

    /// The cache dropped expert `g`: a transfer still bringing it is orphaned.
    #[inline]
    pub fn evicted(&mut self, g: usize, transfers: &mut Transfers) {
        if let Status::InFlight(tid) = self.status[g] {
            transfers.get_mut(tid).orphan = true;
        }
        self.status[g] = Status::Absent;
        self.prefetched[g] = false;
    }

    /// Every cache was emptied (a new request): copies outside the compute tier's own store
    /// are gone, transfers on their way are orphaned.
    pub fn reset(&mut self, in_compute_tier: impl Fn(usize) -> bool, transfers: &mut Transfers) {
        for g in 0..self.status.len() {
            match self.status[g] {
                Status::InFlight(tid) => {
                    transfers.get_mut(tid).orphan = true;
                    self.status[g] = Status::Absent;
                }
                Status::Ready if !in_compute_tier(g) => self.status[g] = Status::Absent,
                _ => {}
            }
        }
        self.prefetched.iter_mut().for_each(|p| *p = false);
    }
}
