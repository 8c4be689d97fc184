//! Prefetch bookkeeping: the predictor of the run, its guesses for the next layer, the
//! transfers they started, and what became of them when the next layer routed (useful,
//! wrong and cancelled, wrong and wasted).
//!
//! A prefetch is the next step's lookup made early: the policy sees it once, when it is made,
//! and the step's own lookup of that expert does not reach the policy again (`prefetched`).

use super::copies::Status;
use super::prefetch::{PredictInput, Predictor};
use super::process::Sim;
use super::setup::OnWrongPrefetch;
use super::timeline::SpanKind;
use super::transfers::Kind;
use crate::cache::Lookup;
use crate::router::top_k_by;

/// The prefetcher's state.
#[derive(Debug, Default)]
pub(super) struct Prefetching {
    pub predictor: Option<Box<dyn Predictor>>,
    /// The last prediction.
    pub predicted: Vec<u16>,
    /// Prefetches for the next step: (object, transfer, generation).
    pub pending: Vec<(u32, u32, u32)>,
    /// Objects whose next lookup the predictor made early (prefetched or resident).
    pub touched: Vec<u32>,
    /// The step about to run was predicted.
    pub next_predicted: bool,
    /// The next layer's standard selection (the oracle's knowledge).
    pub next_standard: Vec<u16>,
}

impl Prefetching {
    /// Forgets what was pending (the caches were emptied).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.touched.clear();
        self.next_predicted = false;
    }
}

impl Sim<'_> {
    /// Settles the guesses made for this step against its union: useful ones count, a wrong
    /// guess still queued for its first link is cancelled (by default), others are wasted.
    pub(super) fn settle_prefetches(&mut self) {
        let s = self.s;
        let e = s.experts;
        self.step.predicted = std::mem::take(&mut self.prefetch.next_predicted);
        for i in 0..self.prefetch.touched.len() {
            let g = self.prefetch.touched[i];
            if !self.union.contains((g % e) as u16) {
                // Guessed but not selected: a later use is an ordinary lookup.
                self.copies.prefetched[g as usize] = false;
            }
        }
        self.prefetch.touched.clear();
        if self.prefetch.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.prefetch.pending);
        for &(g, tid, generation) in &pending {
            let x = (g % e) as u16;
            if self.union.contains(x) {
                self.c.prefetch_useful += 1;
                continue;
            }
            self.c.prefetch_wrong += 1;
            let tr = *self.transfers.get(tid);
            let live = tr.live && tr.generation == generation;
            let queued = live && tr.hop == 0 && !tr.started;
            if queued && s.options.on_wrong_prefetch == OnWrongPrefetch::Cancel {
                let cancelled = self.transfers.cancel_queued(s, tid);
                debug_assert!(cancelled);
                if self.copies.status[g as usize] == Status::InFlight(tid) {
                    self.bank.remove(g / e, g % e);
                    self.copies.status[g as usize] = Status::Absent;
                }
                self.c.prefetch_cancelled += 1;
            } else {
                self.c.prefetch_wasted_bytes += tr.bytes;
            }
        }
    }

    /// Lets the predictor learn this decode step's union.
    pub(super) fn observe_step(&mut self, layer: u32) {
        if let Some(pr) = &mut self.prefetch.predictor {
            pr.observe(
                layer,
                (layer > 0).then_some(&self.previous[..]),
                &self.union.experts,
            );
        }
    }

    /// Guesses the next layer's experts of the current decode token. Returns `true` when the
    /// guess costs compute time (the prefetches start when it is done), `false` when they
    /// started already.
    pub(super) fn predict_next(&mut self) -> bool {
        let p = self.pos();
        let s = self.s;
        let t = self.t;
        let e = s.experts;
        let k = s.top_k as usize;
        let layer = p.layer;
        // Prefetching runs with one request and one token per step (checked in setup).
        let m = self.members[0];
        let span = t.requests[m.request as usize];
        let ev = t.decode_event(&span, m.token, layer);
        let spec = (!t.speculative.is_empty())
            .then(|| &t.speculative[ev * e as usize..(ev + 1) * e as usize]);
        let pr = self
            .prefetch
            .predictor
            .as_mut()
            .expect("a predictor is set");
        let oracle = pr.needs_next_standard();
        if oracle {
            top_k_by(
                t.workload
                    .logits_of(t.decode_event(&span, m.token, layer + 1)),
                k,
                &mut self.prefetch.next_standard,
            );
        }
        let input = PredictInput {
            layer,
            selection: &self.union.experts,
            speculative_logits: spec,
            next_standard: oracle.then_some(&self.prefetch.next_standard[..]),
            count: s.prefetch_count(),
        };
        pr.predict(&input, &mut self.prefetch.predicted);
        let ops = pr.ops_per_call(e as u64, s.hidden, k as u64);
        let predict_ns = s.ops_ns(ops);
        let ph = self.phase();
        self.c.macs[ph] += ops as f64;
        if predict_ns > 0 {
            let now = self.now();
            self.span(SpanKind::Predict, 0, now, predict_ns, layer, None);
            self.c.decode.routing += predict_ns;
            self.compute
                .start(&mut self.q, super::compute::Busy::Predict, predict_ns);
            return true;
        }
        self.issue_prefetches();
        false
    }

    /// Starts prefetches for the next layer of the current decode token.
    pub(super) fn issue_prefetches(&mut self) {
        let p = self.pos();
        let s = self.s;
        let e = s.experts;
        let next = p.layer + 1;
        self.prefetch.next_predicted = !self.prefetch.predicted.is_empty();
        // Neither this step's experts (a shared cache) nor the other guesses may be evicted.
        self.bank.protect(next, &self.prefetch.predicted);
        self.bank.protect_also(p.layer, &self.union.experts);
        for i in 0..self.prefetch.predicted.len() {
            let x = self.prefetch.predicted[i] as u32;
            let g = next * e + x;
            let home = s.placement[g as usize];
            if home as usize == s.compute_tier || self.copies.prefetched[g as usize] {
                continue;
            }
            let mut want = None;
            if let Some(pr) = &s.precision {
                let target = pr.target(g as usize, pr.timeline.at(self.now()));
                if self.copies.status[g as usize] != Status::Absent
                    && self.copies.resident_step[g as usize] > target
                {
                    // The step's own lookup will switch it down.
                    continue;
                }
                want = Some(target);
            }
            let bytes = match want {
                Some(step) => s.precision.as_ref().expect("dynamic").ladder[step as usize].bytes,
                None => s.expert_bytes[g as usize],
            };
            // A prediction is the next step's lookup made early, hits included: the policy
            // sees it now, and the step's own lookup of the expert will not reach it again.
            let lookup = self.bank.lookup(next, x, bytes);
            let landing = self.handle_evicted();
            match lookup {
                Lookup::Hit => {
                    self.copies.prefetched[g as usize] = true;
                    self.prefetch.touched.push(g);
                }
                Lookup::Miss { inserted: true } => {
                    self.copies.prefetched[g as usize] = true;
                    self.prefetch.touched.push(g);
                    let tid = self.transfers.issue(
                        s,
                        &mut self.q,
                        &mut self.compute,
                        &mut self.in_place,
                        Kind::Prefetch,
                        g,
                        bytes,
                        home,
                        None,
                        landing,
                    );
                    self.copies.status[g as usize] = Status::InFlight(tid);
                    if let Some(step) = want {
                        self.copies.resident_step[g as usize] = step;
                    }
                    let generation = self.transfers.get(tid).generation;
                    self.prefetch.pending.push((g, tid, generation));
                    self.c.prefetch_issued += 1;
                }
                Lookup::Miss { inserted: false } => {}
            }
        }
    }
}
