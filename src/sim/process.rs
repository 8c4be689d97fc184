//! The inference process as an event-driven state machine (see the module docs of `sim`): the
//! event loop, the flow of requests, layer steps and tokens, and the route step.
//!
//! Three kinds of events drive it: a request arrives, the compute unit finishes what it was
//! doing, a transfer finishes one hop on a link. Everything else happens synchronously inside
//! those handlers, so the order of decisions is fixed by the event order alone. The concerns
//! live in components beside this file: `transfers.rs` (links and transfers), `compute.rs` (the
//! compute unit and link contention), `copies.rs` (the state of every expert's copy),
//! `serve.rs` (the cache serving a step), `prefetching.rs` (guesses and their outcomes),
//! `step.rs` (a step's work) and `counters.rs` (the counters and the report); the caches are
//! a [`CacheBank`], the route-and-serve step shared with `moesim route` and the host decode.

use std::collections::VecDeque;

use super::SimTrace;
use super::compute::ComputeUnit;
use super::copies::Copies;
use super::counters::{Breakdown, Counters};
use super::in_place::InPlaceUnit;
use super::prefetching::Prefetching;
use super::report::SimReport;
use super::requests::{Active, Member};
use super::setup::SimSetup;
use super::step::{Step, Union};
use super::timeline::{Span, SpanKind, Timeline};
use super::transfers::Transfers;
use crate::cache::bank::{CacheBank, CacheMap, Oracles};
use crate::engine::{Scheduler, TimeNs};
use crate::quality::QualitySample;
use crate::quant::WeightFormat;
use crate::router::metrics::{QualityAcc, StandardRef};
use crate::router::{GateWeights, RouteInput, Router, Selection, gate_weights, top_k_by};

/// Spans recorded at most; a longer run's timeline is cut and says so.
pub const TIMELINE_MAX_SPANS: usize = 2_000_000;

/// The events of the process.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ev {
    Arrive(u32),
    /// The compute unit finishes what it started (the generation of its schedule: a kernel
    /// slowed or sped up by link contention is rescheduled, and the old event ignored).
    ComputeDone(u32),
    HopDone(u32),
    /// The in-place unit finishes its current phase.
    InPlaceDone,
    /// The system was idle and requests arrived: the next step starts (after every arrival
    /// at the same instant).
    StartStep,
}

/// The step in progress: its layer, and whether every member runs prompt tokens.
#[derive(Debug, Clone, Copy)]
pub(super) struct Position {
    pub layer: u32,
    pub prefill: bool,
}

/// The simulated system: its components and the request in service.
pub(super) struct Sim<'a> {
    pub s: &'a SimSetup,
    pub t: &'a SimTrace,
    pub q: Scheduler<Ev>,
    pub transfers: Transfers,
    pub compute: ComputeUnit,
    pub in_place: InPlaceUnit,
    pub bank: CacheBank,
    pub copies: Copies,
    /// When each expert's weights were last computed (the profile's `weights_cache` only).
    pub weights_cache: super::weights_cache::WeightsCacheState,
    pub prefetch: Prefetching,
    pub router: Box<dyn Router>,
    pub arrival_ns: Vec<TimeNs>,
    pub waiting: VecDeque<u32>,
    pub served: u32,
    /// A `StartStep` event is pending.
    pub start_pending: bool,
    /// Requests in service, in admission order.
    pub active: Vec<Active>,
    /// The current step's share of each request it serves.
    pub members: Vec<Member>,
    /// Tokens the current step routes per layer (over its members).
    pub step_tokens: u32,
    /// When the current step started.
    pub step_start: TimeNs,
    /// Quality samples from this index on were recorded by the current step.
    pub step_samples_from: usize,
    pub pos: Option<Position>,
    pub step: Step,
    pub selection: Selection,
    /// The experts of the current step's tokens.
    pub union: Union,
    /// Formats computed for the union members, in union order.
    pub step_formats: Vec<WeightFormat>,
    /// Quality samples recorded (decode events listed in the trace's `quality_events`).
    pub samples: Vec<QualitySample>,
    /// The previous layer's union of the current decode token.
    pub previous: Vec<u16>,
    pub standard: Selection,
    pub quality: QualityAcc,
    pub c: Counters,
    pub timeline: Option<Timeline>,
    pub timeline_truncated: bool,
}

/// Simulates `trace` on `setup`. Deterministic: the same inputs give the same report and
/// timeline. Fails only when simulated time runs past the end of the clock (2^64 ns), which
/// validation makes impossible for any single figure but a very long trace of very slow steps
/// can still reach.
pub fn run(
    setup: &SimSetup,
    trace: &SimTrace,
) -> Result<(SimReport, Option<Timeline>, bool), String> {
    if let Some(kv) = &setup.serving.kv {
        for (r, span) in trace.requests.iter().enumerate() {
            let context =
                kv.prior_context_tokens + span.prefill_tokens as u64 + span.decode_tokens as u64;
            if context > kv.max_context_tokens {
                return Err(format!(
                    "serving.kv.max_context_tokens: request {r} reaches {context} tokens of context ({} prior, {} prompt, {} decode), more than the {} each request may keep",
                    kv.prior_context_tokens,
                    span.prefill_tokens,
                    span.decode_tokens,
                    kv.max_context_tokens
                ));
            }
        }
    }
    let mut sim = Sim::new(setup, trace);
    sim.start();
    while let Some((_, ev)) = sim.q.pop() {
        match ev {
            Ev::Arrive(r) => sim.on_arrive(r),
            Ev::ComputeDone(generation) => {
                if sim.compute.is_current(generation) {
                    sim.on_compute_done()
                }
            }
            Ev::HopDone(tid) => sim.on_hop_done(tid),
            Ev::InPlaceDone => sim.on_in_place_done(),
            Ev::StartStep => sim.on_start_step(),
        }
    }
    assert!(
        sim.pos.is_none() && sim.waiting.is_empty() && sim.active.is_empty(),
        "the run ended with work left"
    );
    if sim.q.overflowed() {
        return Err(format!(
            "simulated time ran past the end of the clock (2^64 ns, 584 years) after {} events: \
             the trace is too long for the profile's slowest figures",
            sim.q.events_processed()
        ));
    }
    let report = sim.report();
    Ok((report, sim.timeline, sim.timeline_truncated))
}

impl<'a> Sim<'a> {
    fn new(s: &'a SimSetup, t: &'a SimTrace) -> Sim<'a> {
        let (l, e) = (s.layers, s.experts);
        let o = &s.options;
        let map = CacheMap::new(o.scope, l, e);
        let oracles = Oracles::for_policies(
            [&o.policy],
            map.n_caches(),
            map.n_objects(),
            o.between,
            || t.standard_streams(o.scope),
        );
        let expert_bytes =
            (s.expert_bytes.iter().sum::<u64>() / s.expert_bytes.len().max(1) as u64).max(1);
        let bank = CacheBank::new(map, s.cache_bytes, expert_bytes, &o.policy, &oracles);
        let timeline = o.timeline.then(|| {
            let mut tracks = vec!["compute".to_string()];
            tracks.extend(s.links.iter().map(|k| {
                format!(
                    "{} -> {} ({} ch)",
                    s.tiers[k.from].name, s.tiers[k.to].name, k.channels
                )
            }));
            if let Some(ip) = &s.in_place {
                tracks.push(format!("unit {} (in place)", ip.unit));
            }
            Timeline {
                tracks,
                spans: Vec::new(),
            }
        });
        let n_tiers = s.tiers.len();
        let n = (l * e) as usize;
        Sim {
            s,
            t,
            q: Scheduler::new(),
            transfers: Transfers::new(s),
            compute: ComputeUnit::new(&s.expert_slowdown_while_transferring),
            in_place: InPlaceUnit::default(),
            bank,
            copies: Copies::new(
                n,
                |g| s.placement[g] as usize == s.compute_tier,
                s.expert_slowdown_after_load.iter().any(|&f| f != 0.0) || s.weights_cache.is_some(),
            ),
            weights_cache: super::weights_cache::WeightsCacheState::new(
                if s.weights_cache.is_some() { n } else { 0 },
            ),
            prefetch: Prefetching {
                predictor: o.prefetch.build(l, e),
                ..Prefetching::default()
            },
            router: o.router.build(l, e, &router_scales(t), o.gate),
            arrival_ns: vec![0; t.requests.len()],
            waiting: VecDeque::new(),
            served: 0,
            start_pending: false,
            active: Vec::new(),
            members: Vec::new(),
            step_tokens: 0,
            step_start: 0,
            step_samples_from: 0,
            pos: None,
            step: Step::default(),
            selection: Selection::default(),
            union: Union::default(),
            step_formats: Vec::new(),
            samples: Vec::new(),
            previous: Vec::new(),
            standard: Selection::default(),
            quality: QualityAcc::new(l, e),
            c: Counters {
                link_transfers: vec![0; s.links.len()],
                link_bytes: vec![0; s.links.len()],
                tier_read: vec![0; n_tiers],
                tier_written: vec![0; n_tiers],
                tier_served: vec![0; n_tiers],
                ..Counters::default()
            },
            timeline,
            timeline_truncated: false,
        }
    }

    pub(super) fn start(&mut self) {
        let n = self.t.requests.len() as u32;
        match self
            .s
            .options
            .arrival
            .open_loop_times(n, self.s.options.seed)
        {
            Some(times) => {
                for (r, &at) in times.iter().enumerate() {
                    self.q.schedule_at(at, Ev::Arrive(r as u32));
                }
            }
            None if n > 0 => self.q.schedule_at(0, Ev::Arrive(0)),
            None => {}
        }
    }

    #[inline]
    pub(super) fn now(&self) -> TimeNs {
        self.q.now()
    }

    /// The phase energy and bytes are charged to: 0 while a prefill step runs, 1 otherwise
    /// (decode, and transfers that land between requests).
    #[inline]
    pub(super) fn phase(&self) -> usize {
        match self.pos {
            Some(p) if p.prefill => 0,
            _ => 1,
        }
    }

    pub(super) fn span(
        &mut self,
        kind: SpanKind,
        track: u16,
        start: TimeNs,
        duration: TimeNs,
        layer: u32,
        expert: Option<u32>,
    ) {
        let Some(tl) = &mut self.timeline else { return };
        if duration == 0 {
            return;
        }
        if tl.spans.len() >= TIMELINE_MAX_SPANS {
            self.timeline_truncated = true;
            return;
        }
        let (request, position) = match (self.pos, self.members.first()) {
            (Some(_), Some(m)) => (
                m.request,
                if m.prefill {
                    0
                } else {
                    self.t.requests[m.request as usize].prefill_tokens + m.token
                },
            ),
            _ => (0, 0),
        };
        tl.spans.push(Span {
            kind,
            track,
            start_ns: start,
            duration_ns: duration,
            request,
            position,
            layer,
            expert,
        });
    }

    #[inline]
    pub(super) fn pos(&self) -> Position {
        self.pos.expect("a request is in service")
    }

    pub(super) fn breakdown(&mut self) -> &mut Breakdown {
        if self.pos().prefill {
            &mut self.c.prefill
        } else {
            &mut self.c.decode
        }
    }

    /// Routes the step's tokens, serves the union from the cache, starts loads and the
    /// prefetcher.
    pub(super) fn route_step(&mut self) {
        let p = self.pos();
        // 1. Routing, with the cache as it is now.
        self.route_tokens(p);
        // 2. What became of the guesses made for this step.
        self.settle_prefetches();
        // 3. The cache serves the union as one event; misses start their transfers.
        if !p.prefill {
            self.observe_step(p.layer);
        }
        self.open_step(p);
        self.serve_union(p);
        self.fill_sample_formats();
        self.step.remaining = self.step.slots.len() as u32;
        // The in-place unit starts on its experts as soon as the activations are out.
        self.start_in_place();
        // 4. The prefetcher, for the next layer of this token.
        if !p.prefill {
            self.previous.clear();
            self.previous.extend_from_slice(&self.union.experts);
            if p.layer + 1 < self.s.layers
                && self.prefetch.predictor.is_some()
                && self.predict_next()
            {
                // The prediction runs on the compute unit; the experts wait for it.
                return;
            }
        }
        self.step.experts_phase = true;
        self.next_compute();
    }

    /// Routes every token of the step (each member's prompt chunk or decode tokens) and gathers
    /// the union of their selections; the routing metrics compare each with standard routing.
    /// Decode tokens the trace samples for output quality are recorded.
    fn route_tokens(&mut self, p: Position) {
        let s = self.s;
        let t = self.t;
        let w = &t.workload;
        let k = s.top_k as usize;
        let layer = p.layer;
        let load_bytes = s.expert_bytes[(layer * s.experts) as usize];
        let standard_router = self.router.is_standard();
        self.union.clear();
        if layer == 0 {
            self.step_samples_from = self.samples.len();
        }
        for m in 0..self.members.len() {
            let mem = self.members[m];
            let span = t.requests[mem.request as usize];
            for j in 0..mem.tokens {
                let ev = if mem.prefill {
                    t.prefill_event(&span, layer, mem.token + j)
                } else {
                    t.decode_event(&span, mem.token + j, layer)
                };
                let logits = w.logits_of(ev);
                let previous = (!mem.prefill && layer > 0).then_some(&self.previous[..]);
                let input = RouteInput {
                    layer,
                    logits,
                    top_k: k,
                    previous_layer: previous,
                };
                self.bank.route(
                    self.router.as_mut(),
                    &input,
                    load_bytes,
                    &mut self.selection,
                );
                if standard_router {
                    self.quality.add_standard(layer, &self.selection);
                } else {
                    top_k_by(logits, k, &mut self.standard.experts);
                    gate_weights(
                        GateWeights::Renormalized,
                        logits,
                        logits,
                        &mut self.standard,
                    );
                    let (top_logit, mass) =
                        StandardRef::top_and_mass(logits, &self.standard.experts);
                    let sr = StandardRef {
                        experts: &self.standard.experts,
                        weights: &self.standard.weights,
                        top_logit,
                        mass,
                    };
                    self.quality.add(layer, logits, &sr, &self.selection);
                }
                self.union.add(&self.selection);
                if !mem.prefill
                    && !t.quality_events.is_empty()
                    && t.quality_events.binary_search(&ev).is_ok()
                {
                    self.samples.push(QualitySample {
                        event: ev,
                        layer,
                        experts: self.selection.experts.clone(),
                        weights: self.selection.weights.clone(),
                        formats: Vec::new(),
                    });
                }
            }
        }
        if !p.prefill {
            self.c.decode_layer_steps += 1;
            self.c.union_experts += self.union.experts.len() as u64;
            self.c.union_token_uses += self.union.tokens.iter().map(|&n| n as u64).sum::<u64>();
        }
    }

    /// The samples this layer step recorded get the formats their experts were computed in.
    fn fill_sample_formats(&mut self) {
        let layer = self.pos().layer;
        for sample in self.samples[self.step_samples_from..]
            .iter_mut()
            .filter(|x| x.layer == layer && x.formats.is_empty())
        {
            sample.formats = sample
                .experts
                .iter()
                .map(|x| {
                    let i = self
                        .union
                        .experts
                        .iter()
                        .position(|u| u == x)
                        .expect("a token's experts are in the step's union");
                    self.step_formats[i]
                })
                .collect();
        }
    }
}

/// Per-layer logit scales of the trace, as the routers of `moesim route` use them.
pub fn router_scales(t: &SimTrace) -> Vec<f32> {
    crate::router::replay::RoutePlan::new(
        &t.workload,
        crate::cache::replay::Scope::PerLayer,
        crate::cache::replay::BetweenRequests::Keep,
        false,
    )
    .scales()
    .to_vec()
}
