//! The service of requests: arrivals queue; up to `serving.max_batch` requests are in service
//! at once (one, by default, in arrival order); each step (one pass through every MoE layer)
//! carries the tokens of the requests it serves, and when it ends the finished requests leave
//! and the queue refills their slots. Caches reset when service resumes after the system ran
//! empty (between requests, at batch 1), and a closed-loop user sends the next request a think
//! time after the previous one completes.
//!
//! A step's members: under `prefill = "alone"` the oldest request with prompt left runs a chunk
//! of it on its own, otherwise every decoding request runs one token (or, with speculative
//! decoding, its drafts and the token after them); under `"chunked"` the decoding requests and
//! up to `scenario.prefill_chunk_tokens` prompt tokens share every step.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::compute::Busy;
use super::process::{Ev, Position, Sim};
use super::resets;
use super::serving::{KvBudget, PrefillMode};
use super::timeline::SpanKind;
use crate::engine::TimeNs;
use crate::seed::derive_seed;

/// The stream of the run's seed that draft acceptance draws from.
const ACCEPTANCE_STREAM: u64 = 0x5350_4543_4143_4350;

/// A request in service.
#[derive(Debug, Clone, Copy)]
pub(super) struct Active {
    pub request: u32,
    /// Prompt tokens processed.
    pub prompt_done: u32,
    /// Decode tokens emitted.
    pub decoded: u32,
    /// When it last emitted a token (or entered service).
    pub last_emit_ns: TimeNs,
}

/// A request's share of the current step.
#[derive(Debug, Clone, Copy)]
pub(super) struct Member {
    /// Index into `Sim::active`.
    pub slot: u32,
    pub request: u32,
    /// Runs prompt tokens (else decode tokens).
    pub prefill: bool,
    /// Its first token this step (prompt position, or decode token index).
    pub token: u32,
    /// Tokens it routes this step (a prompt chunk; 1; or 1 + drafts).
    pub tokens: u32,
    /// Attention time per MoE layer step (0 without a KV model).
    pub attention_ns: TimeNs,
    /// KV bytes attention reads per MoE layer step.
    pub attention_bytes: u64,
}

impl Sim<'_> {
    pub(super) fn on_arrive(&mut self, r: u32) {
        self.arrival_ns[r as usize] = self.now();
        self.waiting.push_back(r);
        if self.pos.is_none() {
            if self.s.serving.max_batch == 1 {
                self.start_step();
            } else if !self.start_pending {
                // Requests arriving at this same instant join the first step: it starts after
                // them (same-time events run in the order they were scheduled).
                self.start_pending = true;
                self.q.schedule_in(0, Ev::StartStep);
            }
        }
    }

    pub(super) fn on_start_step(&mut self) {
        self.start_pending = false;
        if self.pos.is_none() {
            self.start_step();
        }
    }

    /// Admits waiting requests into free slots, chooses the step's members and starts it; with
    /// nothing to run, the system goes idle.
    pub(super) fn start_step(&mut self) {
        let s = self.s;
        let now = self.now();
        while self.active.len() < s.serving.max_batch as usize {
            let Some(r) = self.waiting.pop_front() else {
                break;
            };
            if self.active.is_empty() && self.served > 0 && resets(s.options.between) {
                self.reset_caches();
            }
            self.served += 1;
            let span = self.t.requests[r as usize];
            if span.prefill_tokens == 0 && span.decode_tokens == 0 {
                self.request_done(r);
                continue;
            }
            self.active.push(super::requests::Active {
                request: r,
                prompt_done: 0,
                decoded: 0,
                last_emit_ns: now,
            });
        }
        self.choose_members();
        if self.members.is_empty() {
            self.pos = None;
            self.compute.busy = Busy::Idle;
            return;
        }
        self.step_tokens = self.members.iter().map(|m| m.tokens).sum();
        self.step_start = now;
        self.previous.clear();
        let prefill = self.members.iter().all(|m| m.prefill);
        self.pos = Some(Position { layer: 0, prefill });
        self.size_kv();
        let draft_ns = self.draft_ns();
        if draft_ns > 0 {
            // The draft source proposes before the verification step starts.
            self.span(SpanKind::Draft, 0, now, draft_ns, 0, None);
            self.c.decode.compute = self.c.decode.compute.saturating_add(draft_ns);
            self.compute.start(&mut self.q, Busy::Draft, draft_ns);
            return;
        }
        self.begin_step();
    }

    /// The members of the next step.
    fn choose_members(&mut self) {
        let s = self.s;
        let t = self.t;
        self.members.clear();
        let chunk = s.options.prefill_chunk_tokens;
        let decode_tokens = |a: &Active| -> u32 {
            let left = t.requests[a.request as usize].decode_tokens - a.decoded;
            let want = 1 + s.serving.speculative.as_ref().map_or(0, |sp| sp.drafts);
            want.min(left)
        };
        let member = |slot: usize, a: &Active, prefill: bool, token: u32, tokens: u32| Member {
            slot: slot as u32,
            request: a.request,
            prefill,
            token,
            tokens,
            attention_ns: 0,
            attention_bytes: 0,
        };
        let prompt_left =
            |a: &Active| t.requests[a.request as usize].prefill_tokens - a.prompt_done;
        match s.serving.prefill {
            PrefillMode::Alone => {
                if let Some((i, a)) = self
                    .active
                    .iter()
                    .enumerate()
                    .find(|(_, a)| prompt_left(a) > 0)
                {
                    let n = chunk.map_or(prompt_left(a), |c| c.min(prompt_left(a)));
                    self.members.push(member(i, a, true, a.prompt_done, n));
                    return;
                }
                for (i, a) in self.active.iter().enumerate() {
                    self.members
                        .push(member(i, a, false, a.decoded, decode_tokens(a)));
                }
            }
            PrefillMode::Chunked => {
                let mut budget = chunk.unwrap_or(u32::MAX);
                for (i, a) in self.active.iter().enumerate() {
                    let left = prompt_left(a);
                    if left > 0 {
                        if budget > 0 {
                            let n = left.min(budget);
                            budget -= n;
                            self.members.push(member(i, a, true, a.prompt_done, n));
                        }
                    } else {
                        self.members
                            .push(member(i, a, false, a.decoded, decode_tokens(a)));
                    }
                }
            }
        }
    }

    /// Attention's cost per member and, under `shrink`, the expert caches' capacity for the
    /// contexts the step leaves.
    fn size_kv(&mut self) {
        let s = self.s;
        let Some(kv) = &s.serving.kv else { return };
        let mut live = 0u64;
        let mut attention: TimeNs = 0;
        for m in self.members.iter_mut() {
            let a = &self.active[m.slot as usize];
            let prompt = self.t.requests[a.request as usize].prefill_tokens as u64;
            let context = kv.prior_context_tokens
                + if m.prefill {
                    m.token as u64
                } else {
                    prompt + m.token as u64
                };
            let (ns, bytes) = kv.attention_ns(context, m.tokens as u64);
            m.attention_ns = ns;
            m.attention_bytes = bytes;
            attention = attention.saturating_add(ns);
        }
        self.c.attention_ns = self
            .c
            .attention_ns
            .saturating_add(attention.saturating_mul(s.layers as u64));
        // Every request in service keeps its context (members after this step's tokens).
        for (i, a) in self.active.iter().enumerate() {
            let span = &self.t.requests[a.request as usize];
            let step = self
                .members
                .iter()
                .find(|m| m.slot as usize == i)
                .map_or(0, |m| m.tokens as u64);
            let context = kv.prior_context_tokens
                + a.prompt_done as u64
                + if a.prompt_done == span.prefill_tokens {
                    a.decoded as u64
                } else {
                    0
                }
                + step;
            live = live.saturating_add(kv.bytes_at(context));
        }
        self.c.kv_peak_bytes = self.c.kv_peak_bytes.max(live);
        if kv.budget == KvBudget::Shrink {
            let total = kv
                .shared_budget_bytes
                .saturating_sub(live)
                .min(s.cache_bytes * s.n_caches as u64);
            let per_cache = total / s.n_caches as u64;
            let mut evicted = Vec::new();
            self.bank.set_capacity(per_cache, &mut evicted);
            for g in evicted {
                self.copies.evicted(g, &mut self.transfers);
            }
            let now_total = per_cache * s.n_caches as u64;
            self.c.cache_min_bytes = Some(
                self.c
                    .cache_min_bytes
                    .map_or(now_total, |m: u64| m.min(now_total)),
            );
        }
    }

    /// The draft source's time before a verification step: as many draft steps as the most
    /// drafts any member proposes, each for every member that drafts.
    fn draft_ns(&self) -> TimeNs {
        let Some(sp) = &self.s.serving.speculative else {
            return 0;
        };
        let drafting: Vec<u32> = self
            .members
            .iter()
            .filter(|m| !m.prefill && m.tokens > 1)
            .map(|m| m.tokens - 1)
            .collect();
        let Some(&steps) = drafting.iter().max() else {
            return 0;
        };
        (0..steps).fold(0, |a: TimeNs, i| {
            a.saturating_add(sp.step_ns(drafting.iter().filter(|&&d| d > i).count() as u32))
        })
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

    /// The step ended (after its LM head, if any token was emitted): members advance, emit
    /// tokens and latencies, finished requests leave, and the next step starts.
    pub(super) fn finish_step(&mut self) {
        let s = self.s;
        let now = self.now();
        let step_ns = now - self.step_start;
        let p = self.pos();
        if p.prefill {
            self.c.prefill_time += step_ns;
        } else {
            self.c.decode_wall_ns += step_ns;
            self.c.decode_steps += 1;
            self.c.decode_step_requests +=
                self.members.iter().filter(|m| !m.prefill).count() as u64;
        }
        for i in 0..self.members.len() {
            let m = self.members[i];
            let span = self.t.requests[m.request as usize];
            let arrival = self.arrival_ns[m.request as usize];
            let a = &mut self.active[m.slot as usize];
            if m.prefill {
                a.prompt_done += m.tokens;
                if a.prompt_done == span.prefill_tokens {
                    // The prompt's last chunk emits the first token.
                    self.c.ttfts.push(now - arrival);
                    a.last_emit_ns = now;
                }
                continue;
            }
            let emitted = match &s.serving.speculative {
                Some(sp) if m.tokens > 1 => {
                    let mut rng = StdRng::seed_from_u64(derive_seed(
                        derive_seed(s.options.seed, ACCEPTANCE_STREAM),
                        (m.request as u64) << 32 | m.token as u64,
                    ));
                    let accepted = sp.accepted(m.tokens - 1, || rng.random::<f64>());
                    self.c.drafted += (m.tokens - 1) as u64;
                    self.c.accepted += accepted as u64;
                    if m.tokens == sp.drafts + 1 {
                        self.c.full_verify_steps += 1;
                        self.c.full_verify_tokens += accepted as u64 + 1;
                    }
                    accepted + 1
                }
                _ => 1,
            };
            if emitted < m.tokens {
                // Quality samples of rejected drafts: those tokens are routed again.
                let t = self.t;
                let lo = t.decode_event(&span, m.token + emitted, 0);
                let hi = t.decode_event(&span, m.token + m.tokens, 0);
                let from = self.step_samples_from;
                let mut k = from;
                while k < self.samples.len() {
                    if (lo..hi).contains(&self.samples[k].event) {
                        self.samples.remove(k);
                    } else {
                        k += 1;
                    }
                }
            }
            if span.prefill_tokens == 0 && a.decoded == 0 {
                self.c.ttfts.push(now - arrival);
            }
            // The gap since its last token, spread over the tokens it emitted now.
            let gap = now - a.last_emit_ns;
            let each = gap / emitted as u64;
            self.c.token_latencies.push(each + gap % emitted as u64);
            for _ in 1..emitted {
                self.c.token_latencies.push(each);
            }
            a.decoded += emitted;
            a.last_emit_ns = now;
        }
        // Finished requests leave, in slot order.
        let mut i = 0;
        while i < self.active.len() {
            let a = self.active[i];
            let span = &self.t.requests[a.request as usize];
            if a.prompt_done == span.prefill_tokens && a.decoded == span.decode_tokens {
                self.active.remove(i);
                self.request_done(a.request);
            } else {
                i += 1;
            }
        }
        self.pos = None;
        self.compute.busy = Busy::Idle;
        self.start_step();
    }

    /// Request `r` completed: a closed-loop user sends the next one after its think time.
    fn request_done(&mut self, r: u32) {
        if let crate::sim::arrival::ArrivalKind::ClosedLoop { think_time_ns } =
            self.s.options.arrival
            && (r as usize) + 1 < self.t.requests.len()
        {
            self.q.schedule_in(think_time_ns, Ev::Arrive(r + 1));
        }
    }
}
