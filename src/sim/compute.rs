//! The compute unit: what it is busy with, and when it will be done.
//!
//! The unit runs one thing at a time (a layer's prologue, a prediction, an expert kernel, the
//! LM head) and announces its end with a `ComputeDone` event carrying a generation number: a
//! kernel slowed or sped up by link contention is rescheduled, and the superseded event is
//! ignored when it comes out of the queue.
//!
//! Link contention: with `compute.expert_slowdown_while_transferring = s > 0` for its format's
//! class, an expert kernel does its work at `1 / (1 + s)` speed while any hop is in flight. When the links go from idle
//! to busy or back, [`ComputeUnit::links_changed`] brings the kernel's progress up to date and
//! schedules its new end.

use super::process::Ev;
use super::timeline::SpanKind;
use crate::engine::{Scheduler, TimeNs};

/// What the unit is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Busy {
    Idle,
    /// Dense work and the gate of the current step.
    Prologue,
    Predict,
    Expert(u16),
    LmHead,
    /// The draft source proposing before a verification step.
    Draft,
    /// Resuming after a stall (not work: the stall lasts through it).
    Wake,
    /// Handing transfers to idle links (the profile's `issue_ns`).
    Issue,
}

/// An expert kernel whose speed follows the links (`expert_slowdown_while_transferring > 0`).
#[derive(Debug, Clone, Copy)]
pub(super) struct ContendedKernel {
    pub start: TimeNs,
    /// When `work_left_ns` was last brought up to date.
    pub last: TimeNs,
    /// Kernel time left at full speed.
    pub work_left_ns: f64,
    pub kind: SpanKind,
    pub layer: u32,
    pub expert: Option<u32>,
    /// It takes `1 + this` times as long while a link transfers (its format's figure).
    pub slowdown: f64,
}

/// One compute unit.
#[derive(Debug)]
pub(super) struct ComputeUnit {
    pub busy: Busy,
    /// Generation of the pending `ComputeDone`.
    generation: u32,
    /// The expert kernel running under link contention, if any.
    contended: Option<ContendedKernel>,
    /// Some kernels slow down while a link transfers.
    contends: bool,
}

impl ComputeUnit {
    /// A unit whose kernels of each class take `1 + slowdowns[class]` as long while a link
    /// transfers.
    pub fn new(slowdowns: &[f64]) -> ComputeUnit {
        ComputeUnit {
            busy: Busy::Idle,
            generation: 0,
            contended: None,
            contends: slowdowns.iter().any(|&x| x > 0.0),
        }
    }

    /// Whether a `ComputeDone(generation)` event is the current one.
    #[inline]
    pub fn is_current(&self, generation: u32) -> bool {
        generation == self.generation
    }

    /// Whether kernels slow down while links transfer.
    #[inline]
    pub fn contends_with_links(&self) -> bool {
        self.contends
    }

    /// Starts `busy`, done in `duration_ns`.
    #[inline]
    pub fn start(&mut self, q: &mut Scheduler<Ev>, busy: Busy, duration_ns: TimeNs) {
        self.busy = busy;
        q.schedule_in(duration_ns, Ev::ComputeDone(self.generation));
    }

    /// Starts kernel `k` whose length depends on the links (`links_busy` now).
    pub fn start_contended(
        &mut self,
        q: &mut Scheduler<Ev>,
        busy: Busy,
        k: ContendedKernel,
        links_busy: bool,
    ) {
        self.busy = busy;
        self.contended = Some(k);
        self.reschedule(q, links_busy);
    }

    /// The contended kernel that just ended, if the finished work was one.
    pub fn take_contended(&mut self) -> Option<ContendedKernel> {
        self.contended.take()
    }

    /// Schedules the end of the contended kernel at the links' current state (superseding
    /// any earlier schedule).
    fn reschedule(&mut self, q: &mut Scheduler<Ev>, links_busy: bool) {
        let k = self.contended.expect("a contended kernel runs");
        let factor = if links_busy { 1.0 + k.slowdown } else { 1.0 };
        self.generation = self.generation.wrapping_add(1);
        let left = (k.work_left_ns * factor).ceil().max(0.0) as TimeNs;
        q.schedule_in(left, Ev::ComputeDone(self.generation));
    }

    /// The links went busy (`links_busy`) or idle at `now`: a contended kernel's progress is
    /// brought up to date and its end rescheduled.
    pub fn links_changed(&mut self, q: &mut Scheduler<Ev>, now: TimeNs, links_busy: bool) {
        if let Some(k) = self.contended.as_mut() {
            let slowed = 1.0 + k.slowdown;
            let elapsed = (now - k.last) as f64;
            // Before the change the links were in the other state.
            let done = if !links_busy {
                elapsed / slowed
            } else {
                elapsed
            };
            k.work_left_ns = (k.work_left_ns - done).max(0.0);
            k.last = now;
            self.reschedule(q, links_busy);
        }
    }
}
