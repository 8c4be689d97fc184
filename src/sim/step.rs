//! One layer step of the inference process: the union of the experts its tokens selected, the
//! slots of work the compute unit runs for it (shared experts, then the selected experts as
//! they become present), and the flow from step to step: the prologue (dense work and the
//! gate), the experts in the order they become ready, the LM head after the last layer.

use std::collections::VecDeque;

use super::compute::{Busy, ContendedKernel};
use super::process::Sim;
use super::timeline::SpanKind;
use crate::engine::TimeNs;
use crate::router::Selection;

/// A slot's object when it holds the layer's shared experts.
pub(super) const SHARED: u32 = u32::MAX;

/// Where a slot's weights are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SlotState {
    Waiting,
    Ready,
    /// Computed by the in-place unit.
    InPlace,
    Done,
}

/// One piece of expert work of a step.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    /// Global object, or [`SHARED`].
    pub object: u32,
    pub tokens: u32,
    pub state: SlotState,
    /// The copy computed: its bytes, kernel time for one token and arithmetic time per token.
    pub bytes: u64,
    pub compute_ns: TimeNs,
    pub mac_ns: TimeNs,
    /// Kernel time added (negative: saved) if the copy just arrived.
    pub after_load_ns: i64,
    /// Kernel time for one token when the weights are in the unit's last-level cache (the
    /// profile's `weights_cache`; `compute_ns` without one).
    pub cached_ns: TimeNs,
}

/// The expert work of the current layer step.
#[derive(Debug, Default)]
pub(super) struct Step {
    pub slots: Vec<Slot>,
    pub ready: VecDeque<u16>,
    pub remaining: u32,
    pub experts_phase: bool,
    pub stall_since: Option<TimeNs>,
    /// The unit is resuming from that stall (the profile's `wake_ns`).
    pub waking: bool,
    /// The previous layer predicted this step (for prefetch recall).
    pub predicted: bool,
}

impl Step {
    /// Starts the slots of a new step.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.ready.clear();
        self.stall_since = None;
        self.waking = false;
    }

    /// Adds a slot; `ready` ones queue for the compute unit at once. Returns its index.
    pub fn push(&mut self, slot: Slot) -> u16 {
        let i = self.slots.len() as u16;
        let ready = slot.state == SlotState::Ready;
        self.slots.push(slot);
        if ready {
            self.ready.push_back(i);
        }
        i
    }
}

/// The union of a step's selections: each expert once, in order of first selection, with the
/// tokens routed to it and its largest gate weight.
#[derive(Debug, Default)]
pub(super) struct Union {
    pub experts: Vec<u16>,
    pub tokens: Vec<u32>,
    pub weight: Vec<f32>,
}

impl Union {
    pub fn clear(&mut self) {
        self.experts.clear();
        self.tokens.clear();
        self.weight.clear();
    }

    /// Adds one token's selection.
    pub fn add(&mut self, selection: &Selection) {
        for (&x, &w) in selection.experts.iter().zip(&selection.weights) {
            match self.experts.iter().position(|&u| u == x) {
                Some(i) => {
                    self.tokens[i] += 1;
                    self.weight[i] = self.weight[i].max(w);
                }
                None => {
                    self.experts.push(x);
                    self.tokens.push(1);
                    self.weight.push(w);
                }
            }
        }
    }

    #[inline]
    pub fn contains(&self, x: u16) -> bool {
        self.experts.contains(&x)
    }
}

impl Sim<'_> {
    pub(super) fn begin_step(&mut self) {
        let p = self.pos();
        let tokens = self.step_tokens as u64;
        let now = self.now();
        let s = self.s;
        let e = s.experts as usize;
        let extra = self.router.extra_ops_per_call(e, s.top_k as usize);
        let n = tokens as u32;
        // Attention over each member's context (with a KV model), on the primary unit.
        let attention: TimeNs = self
            .members
            .iter()
            .fold(0, |a: TimeNs, m| a.saturating_add(m.attention_ns));
        let dense = (s.kernel_ns(s.dense_ns, s.dense_mac_ns, n) + s.layer_overhead_ns)
            .saturating_add(attention);
        let route = s.kernel_ns(s.gate_ns, s.gate_mac_ns, n) + tokens * s.ops_ns(extra);
        self.span(SpanKind::Dense, 0, now, dense, p.layer, None);
        self.span(
            SpanKind::Route,
            0,
            now.saturating_add(dense),
            route,
            p.layer,
            None,
        );
        let b = self.breakdown();
        b.compute = b.compute.saturating_add(dense);
        b.routing += route;
        let ct = s.compute_tier;
        self.c.tier_read[ct] += s.dense_bytes;
        let ph = self.phase();
        self.c.energy_weight_read_pj[ph] += s.dense_bytes as f64 * s.tiers[ct].energy_pj_per_byte;
        if let Some(kv) = &s.serving.kv {
            let bytes = self
                .members
                .iter()
                .fold(0u64, |a, m| a.saturating_add(m.attention_bytes));
            self.c.tier_read[kv.tier] = self.c.tier_read[kv.tier].saturating_add(bytes);
            self.c.energy_weight_read_pj[ph] += bytes as f64 * s.tiers[kv.tier].energy_pj_per_byte;
        }
        self.c.macs[ph] += (tokens * (s.dense_macs + s.gate_macs) + tokens * extra) as f64;
        self.compute
            .start(&mut self.q, Busy::Prologue, dense.saturating_add(route));
    }

    pub(super) fn on_compute_done(&mut self) {
        match std::mem::replace(&mut self.compute.busy, Busy::Idle) {
            Busy::Prologue => self.route_step(),
            Busy::Predict => {
                self.issue_prefetches();
                self.step.experts_phase = true;
                self.next_compute();
            }
            Busy::Expert(slot) => {
                if let Some(k) = self.compute.take_contended() {
                    let now = self.now();
                    self.span(k.kind, 0, k.start, now - k.start, k.layer, k.expert);
                    self.breakdown().compute += now - k.start;
                }
                self.step.slots[slot as usize].state = SlotState::Done;
                self.step.remaining -= 1;
                self.next_compute();
            }
            Busy::LmHead => self.finish_step(),
            Busy::Wake | Busy::Issue => self.next_compute(),
            Busy::Draft => self.begin_step(),
            Busy::Idle => unreachable!("compute finished while idle"),
        }
    }

    /// Runs the next ready expert, or waits, or ends the step.
    pub(super) fn next_compute(&mut self) {
        if self.compute.busy != Busy::Idle || !self.step.experts_phase {
            return;
        }
        let now = self.now();
        let layer = self.pos().layer;
        // Transfers this unit just issued to idle links (a demand load, a prefetch) hold it
        // for `issue_ns` each before its next work.
        let issues = self.transfers.take_idle_issues() as TimeNs;
        if issues > 0 && self.s.issue_ns > 0 {
            let ns = issues.saturating_mul(self.s.issue_ns);
            self.span(SpanKind::Issue, 0, now, ns, layer, None);
            self.breakdown().routing += ns;
            self.compute.start(&mut self.q, Busy::Issue, ns);
            return;
        }
        // A stalled unit resumes `wake_ns` after the arrival that ends its stall; the stall
        // lasts until then.
        if self.s.wake_ns > 0
            && self.step.stall_since.is_some()
            && !self.step.waking
            && !self.step.ready.is_empty()
        {
            self.step.waking = true;
            self.compute.start(&mut self.q, Busy::Wake, self.s.wake_ns);
            return;
        }
        if let Some(slot) = self.step.ready.pop_front() {
            self.step.waking = false;
            if let Some(since) = self.step.stall_since.take() {
                self.span(SpanKind::Stall, 0, since, now - since, layer, None);
                self.breakdown().stall += now - since;
            }
            let s = self.s;
            let sl = self.step.slots[slot as usize];
            let ct = s.compute_tier;
            let (duration, bytes, macs, kind, expert) = if sl.object == SHARED {
                let sh = s.shared.expect("shared slot without shared experts");
                (
                    s.kernel_ns(sh.compute_ns, sh.mac_ns, sl.tokens),
                    sh.bytes,
                    sh.macs,
                    SpanKind::Shared,
                    None,
                )
            } else {
                let g = sl.object as usize;
                // The first pass over weights that just arrived is slower, or faster (once: the
                // kernel's other tokens find them as the first pass left them).
                let mut after_load_ns = 0;
                let arrived = self.copies.cold.get(g).copied().unwrap_or(false);
                if arrived {
                    self.copies.cold[g] = false;
                    after_load_ns = sl.after_load_ns;
                }
                // Weights computed recently enough are still in the last-level cache (weights
                // that just arrived are as the after-load figure says).
                let mut memory_ns = sl.compute_ns;
                if let Some(wc) = &s.weights_cache {
                    memory_ns = self.weights_cache.kernel(
                        g,
                        sl.bytes,
                        !arrived,
                        wc.rule(),
                        now,
                        sl.compute_ns,
                        sl.cached_ns,
                    );
                }
                (
                    s.kernel_ns(memory_ns, sl.mac_ns, sl.tokens)
                        .saturating_add_signed(after_load_ns),
                    sl.bytes,
                    s.expert_macs[g],
                    SpanKind::Expert,
                    Some(sl.object % s.experts),
                )
            };
            self.c.tier_read[ct] += bytes;
            let ph = self.phase();
            self.c.energy_weight_read_pj[ph] += bytes as f64 * s.tiers[ct].energy_pj_per_byte;
            self.c.macs[ph] += (sl.tokens as u64 * macs) as f64;
            if self.compute.contends_with_links() {
                // Its length depends on the links: span and breakdown when it ends.
                let format = if sl.object == SHARED {
                    s.options.format
                } else {
                    s.expert_format[sl.object as usize]
                };
                let k = ContendedKernel {
                    start: now,
                    last: now,
                    work_left_ns: duration as f64,
                    kind,
                    layer,
                    expert,
                    slowdown: s.slowdown_while_transferring(format),
                };
                let links_busy = self.transfers.links_busy();
                self.compute
                    .start_contended(&mut self.q, Busy::Expert(slot), k, links_busy);
            } else {
                self.span(kind, 0, now, duration, layer, expert);
                self.breakdown().compute += duration;
                self.compute
                    .start(&mut self.q, Busy::Expert(slot), duration);
            }
        } else if self.step.remaining > 0 {
            if self.step.stall_since.is_none() {
                self.step.stall_since = Some(now);
            }
        } else {
            // Waiting for the in-place unit's results is a stall too.
            if let Some(since) = self.step.stall_since.take() {
                self.span(SpanKind::Stall, 0, since, now - since, layer, None);
                self.breakdown().stall += now - since;
            }
            self.end_step();
        }
    }

    pub(super) fn end_step(&mut self) {
        self.step.experts_phase = false;
        let mut p = self.pos();
        if p.layer + 1 < self.s.layers {
            p.layer += 1;
            self.pos = Some(p);
            self.begin_step();
            return;
        }
        // The LM head runs for every token that can be emitted: each decode token (a
        // verification step's drafts too) and the last chunk of a prompt.
        let t = self.t;
        let head_tokens: u32 = self
            .members
            .iter()
            .map(|m| {
                if !m.prefill {
                    m.tokens
                } else {
                    let span = &t.requests[m.request as usize];
                    u32::from(m.token + m.tokens == span.prefill_tokens)
                }
            })
            .sum();
        if head_tokens == 0 {
            // A prompt chunk that is not the last: the next step follows at once.
            self.finish_step();
            return;
        }
        let s = self.s;
        let now = self.now();
        let head_ns = s.kernel_ns(s.head_ns, s.head_mac_ns, head_tokens) + s.token_overhead_ns;
        self.span(SpanKind::Head, 0, now, head_ns, p.layer, None);
        self.breakdown().compute += head_ns;
        let ct = s.compute_tier;
        self.c.tier_read[ct] += s.head_bytes;
        let ph = self.phase();
        self.c.energy_weight_read_pj[ph] += s.head_bytes as f64 * s.tiers[ct].energy_pj_per_byte;
        self.c.macs[ph] += (s.head_macs * head_tokens as u64) as f64;
        self.compute.start(&mut self.q, Busy::LmHead, head_ns);
    }
}
