//! The unit that computes experts where they are stored (a CPU computing from DRAM while the
//! GPU runs everything else), working on the same layer step as the primary unit.
//!
//! Per layer step that has in-place work: the step's activations cross to the unit (the
//! `to_unit` links, uncontended), the unit runs its experts one after another, each at the
//! roofline cost of its token count, then the results cross back (`to_primary`) and the
//! synchronisation cost is paid; only then are its slots done. The primary unit meanwhile
//! runs its own slots; the step ends when both have finished.

use std::collections::VecDeque;

use super::process::{Ev, Sim};
use super::step::SlotState;
use super::tier_share::Reader;
use super::timeline::SpanKind;
use crate::engine::{Scheduler, TimeNs};

/// What the in-place unit is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Phase {
    #[default]
    Idle,
    /// The step's activations are on their way to it.
    ActivationsIn,
    /// Running the kernel of this slot.
    Kernel(u16),
    /// Its results are on their way back (and the synchronisation).
    ResultsBack,
}

/// The in-place unit's state and counters.
#[derive(Debug, Default)]
pub(super) struct InPlaceUnit {
    pub phase: Phase,
    /// Slots of the current step still to run, in order.
    pub queue: VecDeque<u16>,
    /// Slots of the current step it owns.
    pub slots: u32,
    /// Kernel time queued and not yet started (for per-miss estimates).
    pub queued_ns: TimeNs,
    /// When the current phase started.
    started: TimeNs,
    /// When the current phase is scheduled to end.
    end_at: TimeNs,
    /// `InPlaceDone` events superseded by a later schedule (its tier's bandwidth was shared)
    /// and not yet out of the queue.
    stale: u32,
    /// Busy time (kernels only).
    pub busy_ns: u64,
    /// Activation and result transfers' time.
    pub activation_ns: u64,
    /// Kernels run.
    pub kernels: u64,
    /// Bytes of activations moved, both ways.
    pub activation_bytes: u64,
}

impl InPlaceUnit {
    /// Adds a slot with `kernel_ns` of work to the current step.
    pub fn push(&mut self, slot: u16, kernel_ns: TimeNs) {
        self.queue.push_back(slot);
        self.slots += 1;
        self.queued_ns += kernel_ns;
    }

    /// Schedules the end of the current phase at `end`.
    fn schedule(&mut self, q: &mut Scheduler<Ev>, end: TimeNs) {
        self.end_at = end;
        q.schedule_at(end, Ev::InPlaceDone);
    }

    /// Moves the end of the running kernel to `end` (its tier's share changed).
    pub fn reschedule(&mut self, q: &mut Scheduler<Ev>, end: TimeNs) {
        self.stale += 1;
        self.schedule(q, end);
    }

    /// Whether an `InPlaceDone` popped at `now` ends the current phase; if not, it is a
    /// superseded schedule and is forgotten.
    pub fn due(&mut self, now: TimeNs) -> bool {
        if self.phase != Phase::Idle && self.end_at == now {
            return true;
        }
        self.stale -= 1;
        false
    }
}

impl Sim<'_> {
    /// Starts the in-place unit on the current step, if it has work.
    pub(super) fn start_in_place(&mut self) {
        let Some(ip) = &self.s.in_place else { return };
        if self.in_place.slots == 0 || self.in_place.phase != Phase::Idle {
            return;
        }
        let tokens = self.step_tokens;
        let ns = ip.activation_ns(&ip.to_unit, tokens);
        let u = &mut self.in_place;
        u.phase = Phase::ActivationsIn;
        u.started = self.q.now();
        u.activation_bytes += tokens as u64 * ip.activation_bytes_per_token;
        let end = self.q.now().saturating_add(ns);
        u.schedule(&mut self.q, end);
    }

    /// The in-place unit finished its current phase.
    pub(super) fn on_in_place_done(&mut self) {
        let s = self.s;
        let ip = s.in_place.as_ref().expect("an in-place unit runs");
        let now = self.now();
        if !self.in_place.due(now) {
            return;
        }
        let layer = self.pos().layer;
        let track = self.in_place_track();
        let started = self.in_place.started;
        match self.in_place.phase {
            Phase::Idle => unreachable!("the in-place unit finished while idle"),
            Phase::ActivationsIn | Phase::ResultsBack => {
                self.span(
                    SpanKind::Activation,
                    track,
                    started,
                    now - started,
                    layer,
                    None,
                );
                self.in_place.activation_ns += now - started;
            }
            Phase::Kernel(slot) => {
                let sl = self.step.slots[slot as usize];
                self.span(
                    SpanKind::Expert,
                    track,
                    started,
                    now - started,
                    layer,
                    Some(sl.object % s.experts),
                );
                self.in_place.busy_ns += now - started;
                self.in_place.kernels += 1;
                if self.transfers.share.tracks(ip.tier) {
                    self.transfers.share.leave(now, ip.tier, Reader::InPlace);
                    self.transfers.apply_moved(&mut self.q, &mut self.in_place);
                }
            }
        }
        if self.in_place.phase == Phase::ResultsBack {
            // The step's in-place slots are done.
            let n = self.in_place.slots;
            for sl in &mut self.step.slots {
                if sl.state == SlotState::InPlace {
                    sl.state = SlotState::Done;
                }
            }
            self.in_place.slots = 0;
            self.in_place.phase = Phase::Idle;
            self.step.remaining -= n;
            self.next_compute();
            return;
        }
        self.in_place.started = now;
        match self.in_place.queue.pop_front() {
            Some(slot) => {
                let sl = self.step.slots[slot as usize];
                let g = sl.object as usize;
                let ns = ip.kernel_ns(g, sl.tokens);
                self.in_place.queued_ns -= ns;
                self.in_place.phase = Phase::Kernel(slot);
                self.c.tier_read[ip.tier] += sl.bytes;
                let ph = self.phase();
                self.c.energy_weight_read_pj[ph] +=
                    sl.bytes as f64 * s.tiers[ip.tier].energy_pj_per_byte;
                self.c.in_place_mac_pj[ph] +=
                    (sl.tokens as u64 * s.expert_macs[g]) as f64 * ip.energy_pj_per_mac;
                let end = if self.transfers.share.tracks(ip.tier) {
                    // The weights stream from the tier over the roofline body.
                    let body_ns = ns - ip.launch_ns;
                    let demand = sl.bytes as f64 * 1e9 / body_ns.max(1) as f64;
                    let end = self.transfers.share.join(
                        now,
                        ip.tier,
                        Reader::InPlace,
                        demand,
                        ip.launch_ns as f64,
                        body_ns as f64,
                    );
                    self.transfers.apply_moved(&mut self.q, &mut self.in_place);
                    end
                } else {
                    now.saturating_add(ns)
                };
                self.in_place.schedule(&mut self.q, end);
            }
            None => {
                let tokens = self.step_tokens;
                let ns = ip.activation_ns(&ip.to_primary, tokens) + ip.sync_ns;
                self.in_place.activation_bytes += tokens as u64 * ip.activation_bytes_per_token;
                self.in_place.phase = Phase::ResultsBack;
                self.in_place.schedule(&mut self.q, now.saturating_add(ns));
            }
        }
    }

    /// The timeline track of the in-place unit (after the compute unit and the links).
    pub(super) fn in_place_track(&self) -> u16 {
        1 + self.s.links.len() as u16
    }
}
