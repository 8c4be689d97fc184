//! The service of requests: arrivals queue, one request is served at a time in arrival order,
//! caches reset between requests (by default), and a closed-loop user sends the next request a
//! think time after the previous one completes.

use super::compute::Busy;
use super::process::{Ev, Position, Sim};
use super::resets;

impl Sim<'_> {
    pub(super) fn on_arrive(&mut self, r: u32) {
        self.arrival_ns[r as usize] = self.now();
        self.waiting.push_back(r);
        if self.pos.is_none() {
            self.start_next_request();
        }
    }

    pub(super) fn start_next_request(&mut self) {
        let Some(r) = self.waiting.pop_front() else {
            return;
        };
        if self.served > 0 && resets(self.s.options.between) {
            self.reset_caches();
        }
        self.served += 1;
        self.request_start = self.now();
        let span = &self.t.requests[r as usize];
        self.pos = Some(Position {
            request: r,
            prefill: span.prefill_tokens > 0,
            token: 0,
            layer: 0,
        });
        if span.prefill_tokens == 0 && span.decode_tokens == 0 {
            self.request_done();
            return;
        }
        self.begin_step();
    }

    pub(super) fn reset_caches(&mut self) {
        let s = self.s;
        self.bank.reset();
        self.copies.reset(
            |g| s.placement[g] as usize == s.compute_tier,
            &mut self.transfers,
        );
        self.prefetch.reset();
    }

    pub(super) fn request_done(&mut self) {
        let r = self.pos().request;
        self.pos = None;
        self.compute.busy = Busy::Idle;
        if let crate::sim::arrival::ArrivalKind::ClosedLoop { think_time_ns } =
            self.s.options.arrival
            && (r as usize) + 1 < self.t.requests.len()
        {
            self.q.schedule_in(think_time_ns, Ev::Arrive(r + 1));
        }
        self.start_next_request();
    }
}
