//! The inference process as an event-driven state machine (see the module docs of `sim`).
//!
//! Three kinds of events drive it: a request arrives, the compute unit finishes what it was
//! doing, a transfer finishes one hop on a link. Everything else happens synchronously inside
//! those handlers, so the order of decisions is fixed by the event order alone.

use std::collections::VecDeque;

use super::prefetch::{PredictInput, Predictor, PrefetchKind};
use super::report::{LinkReport, SimReport, TierReport};
use super::setup::{OnWrongPrefetch, SimSetup};
use super::timeline::{Span, SpanKind, Timeline};
use super::{RequestSpan, SimTrace, resets};
use crate::cache::replay::{Scope, next_use};
use crate::cache::{ExpertCache, Lookup, PolicyContext};
use crate::engine::{FifoResource, Scheduler, TimeNs};
use crate::quality::QualitySample;
use crate::quant::WeightFormat;
use crate::router::metrics::{QualityAcc, StandardRef};
use crate::router::{
    GateWeights, Residency, RouteInput, Router, RouterKind, Selection, gate_weights, top_k_by,
};
use crate::stats::quantile;

/// Spans recorded at most; a longer run's timeline is cut and says so.
pub const TIMELINE_MAX_SPANS: usize = 2_000_000;

#[derive(Debug, Clone, Copy)]
enum Ev {
    Arrive(u32),
    /// The compute unit finishes what it started (the generation of its schedule: a kernel
    /// slowed or sped up by link contention is rescheduled, and the old event ignored).
    ComputeDone(u32),
    HopDone(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Absent,
    InFlight(u32),
    Ready,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Demand,
    Prefetch,
    Shared,
}

#[derive(Debug, Clone, Copy)]
struct Transfer {
    /// Global object (`layer * experts + expert`), or the layer for shared experts.
    object: u32,
    bytes: u64,
    from: u8,
    hop: u8,
    /// The current hop holds a channel.
    started: bool,
    kind: Kind,
    /// Slot of the current step waiting for it.
    waiter: Option<u16>,
    /// Evicted while in flight: its arrival is dropped.
    orphan: bool,
    hop_start: TimeNs,
    generation: u32,
    live: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Waiting,
    Ready,
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Global object, or `SHARED`.
    object: u32,
    tokens: u32,
    state: SlotState,
    /// The copy computed: its bytes and kernel time per token.
    bytes: u64,
    compute_ns: TimeNs,
    /// Extra kernel time if the copy just arrived.
    cold_ns: TimeNs,
}

const SHARED: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    Idle,
    /// Dense work and the gate of the current step.
    Prologue,
    Predict,
    Expert(u16),
    LmHead,
}

#[derive(Debug, Clone, Copy)]
struct Position {
    request: u32,
    prefill: bool,
    token: u32,
    layer: u32,
}

#[derive(Debug, Default)]
struct Step {
    slots: Vec<Slot>,
    ready: VecDeque<u16>,
    remaining: u32,
    experts_phase: bool,
    stall_since: Option<TimeNs>,
    /// The previous layer predicted this step (for prefetch recall).
    predicted: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Breakdown {
    compute: u64,
    routing: u64,
    stall: u64,
}

#[derive(Debug, Default)]
struct Counters {
    decode: Breakdown,
    prefill: Breakdown,
    expert_uses: u64,
    hits: u64,
    prefetch_hits: u64,
    misses: u64,
    misses_on_predicted_steps: u64,
    prefill_lookups: u64,
    prefill_hits: u64,
    /// Per phase (prefill, decode): bytes delivered, transfer and weight-read energy, MACs;
    /// charged to the phase running when they happen.
    bytes_loaded: [u64; 2],
    energy_transfer_pj: [f64; 2],
    energy_weight_read_pj: [f64; 2],
    macs: [f64; 2],
    prefetch_issued: u64,
    prefetch_useful: u64,
    prefetch_wrong: u64,
    prefetch_cancelled: u64,
    prefetch_wasted_bytes: u64,
    link_transfers: Vec<u64>,
    link_bytes: Vec<u64>,
    tier_read: Vec<u64>,
    tier_written: Vec<u64>,
    tier_served: Vec<u64>,
    token_latencies: Vec<u64>,
    ttfts: Vec<u64>,
    prefill_time: u64,
    precision_switches: u64,
    low_precision_loads: u64,
    /// Decode expert uses per format computed.
    format_uses: Vec<(WeightFormat, u64)>,
}

struct Sim<'a> {
    s: &'a SimSetup,
    t: &'a SimTrace,
    q: Scheduler<Ev>,
    links: Vec<FifoResource<u32>>,
    transfers: Vec<Transfer>,
    free: Vec<u32>,
    caches: Vec<ExpertCache>,
    status: Vec<Status>,
    /// Inserted by a prefetch and not used yet: its first use is the lookup the prefetch made
    /// early, so it does not reach the policy again.
    prefetched: Vec<bool>,
    router: Box<dyn Router>,
    predictor: Option<Box<dyn Predictor>>,
    arrival_ns: Vec<TimeNs>,
    waiting: VecDeque<u32>,
    served: u32,
    pos: Option<Position>,
    busy: Busy,
    busy_since: TimeNs,
    step: Step,
    request_start: TimeNs,
    token_start: TimeNs,
    selection: Selection,
    union: Vec<u16>,
    union_tokens: Vec<u32>,
    /// Largest gate weight of each union member over the step's tokens.
    union_weight: Vec<f32>,
    /// Formats computed for the union members, in union order.
    step_formats: Vec<WeightFormat>,
    /// Ladder step of each object's resident copy (dynamic precision).
    resident_step: Vec<u8>,
    /// Quality samples recorded (decode events listed in the trace's `quality_events`).
    samples: Vec<QualitySample>,
    previous: Vec<u16>,
    predicted: Vec<u16>,
    /// Prefetches for the next step: (object, transfer, generation).
    pending_prefetch: Vec<(u32, u32, u32)>,
    /// Objects whose next lookup the predictor made early (prefetched or resident).
    touched: Vec<u32>,
    next_predicted: bool,
    protected: Vec<u32>,
    evicted: Vec<u32>,
    standard: Selection,
    quality: QualityAcc,
    standard_router: bool,
    c: Counters,
    timeline: Option<Timeline>,
    timeline_truncated: bool,
    /// Generation of the pending `ComputeDone`.
    compute_generation: u32,
    /// Hops in flight on all links.
    hops_in_flight: u32,
    /// The expert kernel running under link contention, if any.
    contended: Option<ContendedKernel>,
    /// Arrived over a link and not computed since (`expert_slowdown_after_load > 0` only).
    cold: Vec<bool>,
}

/// An expert kernel whose speed follows the links (`expert_slowdown_while_transferring > 0`).
#[derive(Debug, Clone, Copy)]
struct ContendedKernel {
    start: TimeNs,
    /// When `work_left_ns` was last brought up to date.
    last: TimeNs,
    /// Kernel time left at full speed.
    work_left_ns: f64,
    kind: SpanKind,
    layer: u32,
    expert: Option<u32>,
}

/// Simulates `trace` on `setup`. Deterministic: the same inputs give the same report and
/// timeline.
/// Simulates `trace` on `setup`. Fails only when simulated time runs past the end of the
/// clock (2^64 ns), which validation makes impossible for any single figure but a very long
/// trace of very slow steps can still reach.
pub fn run(
    setup: &SimSetup,
    trace: &SimTrace,
) -> Result<(SimReport, Option<Timeline>, bool), String> {
    let mut sim = Sim::new(setup, trace);
    sim.start();
    while let Some((_, ev)) = sim.q.pop() {
        match ev {
            Ev::Arrive(r) => sim.on_arrive(r),
            Ev::ComputeDone(generation) => {
                if generation == sim.compute_generation {
                    sim.on_compute_done()
                }
            }
            Ev::HopDone(tid) => sim.on_hop_done(tid),
        }
    }
    assert!(
        sim.pos.is_none() && sim.waiting.is_empty(),
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
    /// The phase energy and bytes are charged to: 0 while a prefill step runs, 1 otherwise
    /// (decode, and transfers that land between requests).
    fn phase(&self) -> usize {
        match self.pos {
            Some(p) if p.prefill => 0,
            _ => 1,
        }
    }

    fn new(s: &'a SimSetup, t: &'a SimTrace) -> Sim<'a> {
        let (l, e) = (s.layers, s.experts);
        let o = &s.options;
        let per_layer = o.scope == Scope::PerLayer;
        let n_objects_per_cache = if per_layer { e } else { l * e };
        let needs_streams =
            o.policy.needs_oracle() || matches!(o.policy, crate::cache::PolicyKind::Pinned {});
        let streams = needs_streams.then(|| t.standard_streams(o.scope));
        let expert_bytes =
            (s.expert_bytes.iter().sum::<u64>() / s.expert_bytes.len().max(1) as u64).max(1);
        let caches = (0..s.n_caches as usize)
            .map(|ci| {
                let stream = streams.as_ref().map(|st| &st[ci]);
                let ctx = PolicyContext {
                    n_objects: n_objects_per_cache,
                    experts_per_layer: if per_layer { n_objects_per_cache } else { e },
                    capacity_objects: (s.cache_bytes / expert_bytes).min(u32::MAX as u64) as u32,
                    next_use: stream.filter(|_| o.policy.needs_oracle()).map(|st| {
                        std::sync::Arc::new(next_use(st, n_objects_per_cache, o.between))
                    }),
                    popularity: stream.map(|st| {
                        let mut p = vec![0u64; n_objects_per_cache as usize];
                        for &x in &st.objects {
                            p[x as usize] += 1;
                        }
                        std::sync::Arc::new(p)
                    }),
                };
                ExpertCache::new(
                    s.cache_bytes,
                    n_objects_per_cache as usize,
                    o.policy.build(&ctx),
                )
            })
            .collect();
        let mut status = vec![Status::Absent; (l * e) as usize];
        for (g, st) in status.iter_mut().enumerate() {
            if s.placement[g] as usize == s.compute_tier {
                *st = Status::Ready;
            }
        }
        let timeline = o.timeline.then(|| {
            let mut tracks = vec!["compute".to_string()];
            tracks.extend(s.links.iter().map(|k| {
                format!(
                    "{} -> {} ({} ch)",
                    s.tiers[k.from].name, s.tiers[k.to].name, k.channels
                )
            }));
            Timeline {
                tracks,
                spans: Vec::new(),
            }
        });
        let n_tiers = s.tiers.len();
        Sim {
            s,
            t,
            q: Scheduler::new(),
            links: s
                .links
                .iter()
                .map(|k| FifoResource::new(k.channels))
                .collect(),
            transfers: Vec::new(),
            free: Vec::new(),
            caches,
            prefetched: vec![false; (l * e) as usize],
            status,
            router: o.router.build(l, e, &router_scales(t), o.gate),
            predictor: o.prefetch.build(l, e),
            arrival_ns: vec![0; t.requests.len()],
            waiting: VecDeque::new(),
            served: 0,
            pos: None,
            busy: Busy::Idle,
            busy_since: 0,
            step: Step::default(),
            request_start: 0,
            token_start: 0,
            selection: Selection::default(),
            union: Vec::new(),
            union_tokens: Vec::new(),
            union_weight: Vec::new(),
            step_formats: Vec::new(),
            resident_step: vec![0; (l * e) as usize],
            samples: Vec::new(),
            previous: Vec::new(),
            predicted: Vec::new(),
            pending_prefetch: Vec::new(),
            touched: Vec::new(),
            next_predicted: false,
            protected: Vec::new(),
            evicted: Vec::new(),
            standard: Selection::default(),
            quality: QualityAcc::new(l, e),
            standard_router: o.router == RouterKind::Standard {},
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
            compute_generation: 0,
            hops_in_flight: 0,
            contended: None,
            cold: vec![
                false;
                if s.expert_slowdown_after_load.iter().any(|&f| f > 0.0) {
                    (l * e) as usize
                } else {
                    0
                }
            ],
        }
    }

    fn start(&mut self) {
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

    fn now(&self) -> TimeNs {
        self.q.now()
    }

    fn span(
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
        let (request, position) = match self.pos {
            Some(p) => (
                p.request,
                if p.prefill {
                    0
                } else {
                    self.t.requests[p.request as usize].prefill_tokens + p.token
                },
            ),
            None => (0, 0),
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

    fn pos(&self) -> Position {
        self.pos.expect("a request is in service")
    }

    fn request(&self) -> &'a RequestSpan {
        &self.t.requests[self.pos().request as usize]
    }

    fn breakdown(&mut self) -> &mut Breakdown {
        if self.pos().prefill {
            &mut self.c.prefill
        } else {
            &mut self.c.decode
        }
    }

    // ---- requests -------------------------------------------------------------------------

    fn on_arrive(&mut self, r: u32) {
        self.arrival_ns[r as usize] = self.now();
        self.waiting.push_back(r);
        if self.pos.is_none() {
            self.start_next_request();
        }
    }

    fn start_next_request(&mut self) {
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

    fn reset_caches(&mut self) {
        for c in &mut self.caches {
            c.reset();
        }
        for g in 0..self.status.len() {
            match self.status[g] {
                Status::InFlight(tid) => {
                    self.transfers[tid as usize].orphan = true;
                    self.status[g] = Status::Absent;
                }
                Status::Ready if self.s.placement[g] as usize != self.s.compute_tier => {
                    self.status[g] = Status::Absent
                }
                _ => {}
            }
        }
        self.pending_prefetch.clear();
        self.touched.clear();
        self.prefetched.iter_mut().for_each(|p| *p = false);
        self.next_predicted = false;
    }

    fn request_done(&mut self) {
        let r = self.pos().request;
        self.pos = None;
        self.busy = Busy::Idle;
        if let crate::sim::arrival::ArrivalKind::ClosedLoop { think_time_ns } =
            self.s.options.arrival
            && (r as usize) + 1 < self.t.requests.len()
        {
            self.q.schedule_in(think_time_ns, Ev::Arrive(r + 1));
        }
        self.start_next_request();
    }

    // ---- steps ----------------------------------------------------------------------------

    fn step_tokens(&self) -> u32 {
        let p = self.pos();
        if p.prefill {
            self.request().prefill_tokens
        } else {
            1
        }
    }

    fn begin_step(&mut self) {
        let p = self.pos();
        let tokens = self.step_tokens() as u64;
        let now = self.now();
        if !p.prefill && p.layer == 0 {
            self.token_start = now;
            self.previous.clear();
        }
        let s = self.s;
        let e = s.experts as usize;
        let extra = self.router.extra_ops_per_call(e, s.top_k as usize);
        let dense = tokens * s.dense_ns;
        let route = tokens * (s.gate_ns + s.ops_ns(extra));
        self.span(SpanKind::Dense, 0, now, dense, p.layer, None);
        self.span(SpanKind::Route, 0, now + dense, route, p.layer, None);
        let b = self.breakdown();
        b.compute += dense;
        b.routing += route;
        let ct = s.compute_tier;
        self.c.tier_read[ct] += s.dense_bytes;
        let ph = self.phase();
        self.c.energy_weight_read_pj[ph] += s.dense_bytes as f64 * s.tiers[ct].energy_pj_per_byte;
        self.c.macs[ph] += (tokens * (s.dense_macs + s.gate_macs) + tokens * extra) as f64;
        self.busy = Busy::Prologue;
        self.busy_since = now;
        self.q
            .schedule_in(dense + route, Ev::ComputeDone(self.compute_generation));
    }

    fn on_compute_done(&mut self) {
        match std::mem::replace(&mut self.busy, Busy::Idle) {
            Busy::Prologue => self.route_step(),
            Busy::Predict => {
                self.issue_prefetches();
                self.step.experts_phase = true;
                self.next_compute();
            }
            Busy::Expert(slot) => {
                if let Some(k) = self.contended.take() {
                    let now = self.now();
                    self.span(k.kind, 0, k.start, now - k.start, k.layer, k.expert);
                    self.breakdown().compute += now - k.start;
                }
                self.step.slots[slot as usize].state = SlotState::Done;
                self.step.remaining -= 1;
                self.next_compute();
            }
            Busy::LmHead => self.head_done(),
            Busy::Idle => unreachable!("compute finished while idle"),
        }
    }

    /// Routes the step's tokens, serves the selection from the cache, starts loads and the
    /// prefetcher.
    fn route_step(&mut self) {
        let p = self.pos();
        let s = self.s;
        let t = self.t;
        let w = &t.workload;
        let e = s.experts;
        let k = s.top_k as usize;
        let layer = p.layer;
        let per_layer = s.options.scope == Scope::PerLayer;
        let ci = if per_layer { layer as usize } else { 0 };
        let base = if per_layer { 0 } else { layer * e };
        let span = *self.request();

        // 1. Routing, with the cache as it is now.
        self.union.clear();
        self.union_tokens.clear();
        self.union_weight.clear();
        let n_events = if p.prefill { span.prefill_tokens } else { 1 };
        for j in 0..n_events {
            let ev = if p.prefill {
                t.prefill_event(&span, layer, j)
            } else {
                t.decode_event(&span, p.token, layer)
            };
            let logits = w.logits_of(ev);
            let previous = (!p.prefill && layer > 0).then_some(&self.previous[..]);
            let input = RouteInput {
                layer,
                logits,
                top_k: k,
                previous_layer: previous,
            };
            {
                let cache = &self.caches[ci];
                let resident = &cache.resident_bytes()[base as usize..(base + e) as usize];
                let room = cache.used_bytes() + s.expert_bytes[(layer * e) as usize]
                    <= cache.capacity_bytes();
                self.router.route(
                    &input,
                    &Residency::from_resident_bytes(resident, room),
                    &mut self.selection,
                );
            }
            if self.standard_router {
                self.quality.add_standard(layer, &self.selection);
            } else {
                let q = &mut self.quality;
                top_k_by(logits, k, &mut self.standard.experts);
                gate_weights(
                    GateWeights::Renormalized,
                    logits,
                    logits,
                    &mut self.standard,
                );
                let (top_logit, mass) = StandardRef::top_and_mass(logits, &self.standard.experts);
                let sr = StandardRef {
                    experts: &self.standard.experts,
                    weights: &self.standard.weights,
                    top_logit,
                    mass,
                };
                q.add(layer, logits, &sr, &self.selection);
            }
            for (&x, &w) in self.selection.experts.iter().zip(&self.selection.weights) {
                match self.union.iter().position(|&u| u == x) {
                    Some(i) => {
                        self.union_tokens[i] += 1;
                        self.union_weight[i] = self.union_weight[i].max(w);
                    }
                    None => {
                        self.union.push(x);
                        self.union_tokens.push(1);
                        self.union_weight.push(w);
                    }
                }
            }
        }

        // 2. Wrong and useful prefetches for this step.
        self.step.predicted = std::mem::take(&mut self.next_predicted);
        for i in 0..self.touched.len() {
            let g = self.touched[i];
            if !self.union.contains(&((g % e) as u16)) {
                // Guessed but not selected: a later use is an ordinary lookup.
                self.prefetched[g as usize] = false;
            }
        }
        self.touched.clear();
        if !self.pending_prefetch.is_empty() {
            let pending = std::mem::take(&mut self.pending_prefetch);
            for &(g, tid, generation) in &pending {
                let x = (g % e) as u16;
                if self.union.contains(&x) {
                    self.c.prefetch_useful += 1;
                    continue;
                }
                self.c.prefetch_wrong += 1;
                let tr = self.transfers[tid as usize];
                let live = tr.live && tr.generation == generation;
                let queued = live && tr.hop == 0 && !tr.started;
                if queued && s.options.on_wrong_prefetch == OnWrongPrefetch::Cancel {
                    let first_link = s.paths[tr.from as usize][0] as usize;
                    let cancelled = self.links[first_link].cancel(&tid);
                    debug_assert!(cancelled);
                    self.free_transfer(tid);
                    if self.status[g as usize] == Status::InFlight(tid) {
                        let local = if per_layer { g % e } else { g };
                        self.caches[ci_of(per_layer, g / e)].remove(local);
                        self.status[g as usize] = Status::Absent;
                    }
                    self.c.prefetch_cancelled += 1;
                } else {
                    self.c.prefetch_wasted_bytes += tr.bytes;
                }
            }
        }

        // 3. The cache serves the selection as one event.
        if let Some(pr) = &mut self.predictor
            && !p.prefill
        {
            pr.observe(
                layer,
                (layer > 0).then_some(&self.previous[..]),
                &self.union,
            );
        }
        self.step.slots.clear();
        self.step.ready.clear();
        self.step.stall_since = None;
        if let Some(sh) = s.shared {
            let slot = self.step.slots.len() as u16;
            let tokens = self.step_tokens();
            if sh.resident {
                self.step.slots.push(Slot {
                    object: SHARED,
                    tokens,
                    state: SlotState::Ready,
                    bytes: sh.bytes,
                    compute_ns: sh.compute_ns,
                    cold_ns: 0,
                });
                self.step.ready.push_back(slot);
            } else {
                self.step.slots.push(Slot {
                    object: SHARED,
                    tokens,
                    state: SlotState::Waiting,
                    bytes: sh.bytes,
                    compute_ns: sh.compute_ns,
                    cold_ns: 0,
                });
                self.issue(Kind::Shared, layer, sh.bytes, s.home_tier as u8, Some(slot));
            }
        }
        self.protected.clear();
        self.protected
            .extend(self.union.iter().map(|&x| base + x as u32));
        self.caches[ci].begin_event();
        self.step_formats.clear();
        let lowering = s.precision.as_ref().map(|pr| pr.timeline.at(self.now()));
        for i in 0..self.union.len() {
            let x = self.union[i] as u32;
            let g = layer * e + x;
            let gu = g as usize;
            let tokens = self.union_tokens[i];
            let slot = self.step.slots.len() as u16;
            let home = s.placement[gu];
            if !p.prefill {
                self.c.expert_uses += 1;
            } else {
                self.c.prefill_lookups += 1;
            }
            // The copy this use wants: the plan's, or (dynamic precision) the ladder step the
            // device state allows, or (low precision on miss) the low copy.
            let mut want = None;
            if let (Some(pr), Some(lowering)) = (&s.precision, lowering) {
                let target = pr.target(gu, lowering);
                let present = home as usize == s.compute_tier || self.status[gu] != Status::Absent;
                if home as usize != s.compute_tier && present && self.resident_step[gu] > target {
                    // Above the ceiling: drop it and fetch the lower copy.
                    self.c.precision_switches += 1;
                    if let Status::InFlight(tid) = self.status[gu] {
                        self.transfers[tid as usize].orphan = true;
                    }
                    self.caches[ci].remove(base + x);
                    self.status[gu] = Status::Absent;
                    self.prefetched[gu] = false;
                }
                let mut step = target;
                if home as usize != s.compute_tier
                    && self.status[gu] == Status::Absent
                    && let Some((below, low)) = pr.low_on_miss
                    && self.union_weight[i] < below
                    && low < step
                {
                    step = low;
                    self.c.low_precision_loads += 1;
                }
                want = Some(step);
            }
            let (bytes, compute_ns, format) = match want {
                Some(step) => {
                    let c = s.precision.as_ref().expect("dynamic").ladder[step as usize];
                    (c.bytes, c.compute_ns, c.format)
                }
                None => (
                    s.expert_bytes[gu],
                    s.expert_compute_ns[gu],
                    s.expert_format[gu],
                ),
            };
            if home as usize == s.compute_tier {
                // Stored in the compute tier: always present.
                self.step.slots.push(Slot {
                    object: g,
                    tokens,
                    state: SlotState::Ready,
                    bytes,
                    compute_ns,
                    cold_ns: 0,
                });
                self.step.ready.push_back(slot);
                self.count_hit(p.prefill, home);
                self.note_format(p.prefill, format);
                continue;
            }
            let lookup = if std::mem::take(&mut self.prefetched[gu]) {
                // The prefetch made this lookup early (miss and insertion); the policy has seen it.
                debug_assert!(self.caches[ci].contains(base + x));
                Lookup::Hit
            } else {
                self.evicted.clear();
                let lookup =
                    self.caches[ci].lookup(base + x, bytes, &self.protected, &mut self.evicted);
                self.handle_evicted(per_layer, layer);
                lookup
            };
            // A hit computes the resident copy, whatever its format.
            let (bytes, compute_ns, format) = match (lookup, &s.precision) {
                (Lookup::Hit, Some(pr)) => {
                    let c = pr.ladder[self.resident_step[gu] as usize];
                    (c.bytes, c.compute_ns, c.format)
                }
                _ => (bytes, compute_ns, format),
            };
            self.note_format(p.prefill, format);
            let cold_ns = if self.cold.is_empty() {
                0
            } else {
                s.cold_extra_ns(compute_ns, format)
            };
            match (lookup, self.status[gu]) {
                (Lookup::Hit, Status::Ready) => {
                    self.step.slots.push(Slot {
                        object: g,
                        tokens,
                        state: SlotState::Ready,
                        bytes,
                        compute_ns,
                        cold_ns,
                    });
                    self.step.ready.push_back(slot);
                    self.count_hit(p.prefill, s.compute_tier as u8);
                }
                (Lookup::Hit, Status::InFlight(tid)) => {
                    self.step.slots.push(Slot {
                        object: g,
                        tokens,
                        state: SlotState::Waiting,
                        bytes,
                        compute_ns,
                        cold_ns,
                    });
                    self.transfers[tid as usize].waiter = Some(slot);
                    if !p.prefill {
                        self.c.prefetch_hits += 1;
                        self.c.tier_served[self.transfers[tid as usize].from as usize] += 1;
                    }
                }
                (Lookup::Hit, Status::Absent) => {
                    unreachable!("cache and status disagree on object {g}")
                }
                (Lookup::Miss { inserted }, _) => {
                    self.step.slots.push(Slot {
                        object: g,
                        tokens,
                        state: SlotState::Waiting,
                        bytes,
                        compute_ns,
                        cold_ns,
                    });
                    let tid = self.issue(Kind::Demand, g, bytes, home, Some(slot));
                    if inserted {
                        self.status[gu] = Status::InFlight(tid);
                        if let Some(step) = want {
                            self.resident_step[gu] = step;
                        }
                    }
                    if !p.prefill {
                        self.c.misses += 1;
                        self.c.tier_served[home as usize] += 1;
                        if self.step.predicted {
                            self.c.misses_on_predicted_steps += 1;
                        }
                    }
                }
            }
            self.step_formats.push(format);
        }
        self.record_sample();
        self.step.remaining = self.step.slots.len() as u32;

        // 4. The prefetcher, for the next layer of this token.
        if !p.prefill {
            self.previous.clear();
            self.previous.extend_from_slice(&self.union);
        }
        if !p.prefill && layer + 1 < s.layers && self.predictor.is_some() {
            let ev = t.decode_event(&span, p.token, layer);
            let spec = (!t.speculative.is_empty())
                .then(|| &t.speculative[ev * e as usize..(ev + 1) * e as usize]);
            let oracle = matches!(s.options.prefetch, PrefetchKind::Oracle {});
            if oracle {
                top_k_by(
                    w.logits_of(t.decode_event(&span, p.token, layer + 1)),
                    k,
                    &mut self.standard.experts,
                );
            }
            let input = PredictInput {
                layer,
                selection: &self.union,
                speculative_logits: spec,
                next_standard: oracle.then_some(&self.standard.experts[..]),
                count: s.prefetch_count(),
            };
            let pr = self.predictor.as_mut().expect("checked above");
            pr.predict(&input, &mut self.predicted);
            let ops = pr.ops_per_call(e as u64, s.hidden, k as u64);
            let predict_ns = s.ops_ns(ops);
            let ph = self.phase();
            self.c.macs[ph] += ops as f64;
            if predict_ns > 0 {
                let now = self.now();
                self.span(SpanKind::Predict, 0, now, predict_ns, layer, None);
                self.c.decode.routing += predict_ns;
                self.busy = Busy::Predict;
                self.q
                    .schedule_in(predict_ns, Ev::ComputeDone(self.compute_generation));
                return;
            }
            self.issue_prefetches();
        }
        self.step.experts_phase = true;
        self.next_compute();
    }

    fn count_hit(&mut self, prefill: bool, tier: u8) {
        if prefill {
            self.c.prefill_hits += 1;
        } else {
            self.c.hits += 1;
            self.c.tier_served[tier as usize] += 1;
        }
    }

    /// Counts a decode use computed in `format`.
    fn note_format(&mut self, prefill: bool, format: WeightFormat) {
        if prefill {
            return;
        }
        match self.c.format_uses.iter_mut().find(|(f, _)| *f == format) {
            Some((_, n)) => *n += 1,
            None => self.c.format_uses.push((format, 1)),
        }
    }

    /// Records the current decode step if the trace asks for it.
    fn record_sample(&mut self) {
        let p = self.pos();
        if p.prefill || self.t.quality_events.is_empty() {
            return;
        }
        let span = *self.request();
        let ev = self.t.decode_event(&span, p.token, p.layer);
        if self.t.quality_events.binary_search(&ev).is_ok() {
            self.samples.push(QualitySample {
                event: ev,
                layer: p.layer,
                experts: self.selection.experts.clone(),
                weights: self.selection.weights.clone(),
                formats: self.step_formats.clone(),
            });
        }
    }

    /// Starts prefetches for the next layer of the current decode token.
    fn issue_prefetches(&mut self) {
        let p = self.pos();
        let s = self.s;
        let e = s.experts;
        let next = p.layer + 1;
        let per_layer = s.options.scope == Scope::PerLayer;
        let ci = ci_of(per_layer, next);
        let base = if per_layer { 0 } else { next * e };
        self.next_predicted = !self.predicted.is_empty();
        self.protected.clear();
        self.protected
            .extend(self.predicted.iter().map(|&x| base + x as u32));
        if !per_layer {
            let cur = p.layer * e;
            self.protected
                .extend(self.union.iter().map(|&x| cur + x as u32));
        }
        for i in 0..self.predicted.len() {
            let x = self.predicted[i] as u32;
            let g = next * e + x;
            let home = s.placement[g as usize];
            if home as usize == s.compute_tier || self.prefetched[g as usize] {
                continue;
            }
            let mut want = None;
            if let Some(pr) = &s.precision {
                let target = pr.target(g as usize, pr.timeline.at(self.now()));
                if self.status[g as usize] != Status::Absent
                    && self.resident_step[g as usize] > target
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
            self.evicted.clear();
            let lookup =
                self.caches[ci].lookup(base + x, bytes, &self.protected, &mut self.evicted);
            self.handle_evicted(per_layer, next);
            match lookup {
                Lookup::Hit => {
                    self.prefetched[g as usize] = true;
                    self.touched.push(g);
                }
                Lookup::Miss { inserted: true } => {
                    self.prefetched[g as usize] = true;
                    self.touched.push(g);
                    let tid = self.issue(Kind::Prefetch, g, bytes, home, None);
                    self.status[g as usize] = Status::InFlight(tid);
                    if let Some(step) = want {
                        self.resident_step[g as usize] = step;
                    }
                    let generation = self.transfers[tid as usize].generation;
                    self.pending_prefetch.push((g, tid, generation));
                    self.c.prefetch_issued += 1;
                }
                Lookup::Miss { inserted: false } => {}
            }
        }
    }

    /// Objects the cache just evicted (local ids of the cache of `layer`).
    fn handle_evicted(&mut self, per_layer: bool, layer: u32) {
        let e = self.s.experts;
        for i in 0..self.evicted.len() {
            let local = self.evicted[i];
            let g = if per_layer { layer * e + local } else { local } as usize;
            if let Status::InFlight(tid) = self.status[g] {
                self.transfers[tid as usize].orphan = true;
            }
            self.status[g] = Status::Absent;
            self.prefetched[g] = false;
        }
    }

    /// Runs the next ready expert, or waits, or ends the step.
    fn next_compute(&mut self) {
        if self.busy != Busy::Idle || !self.step.experts_phase {
            return;
        }
        let now = self.now();
        let layer = self.pos().layer;
        if let Some(slot) = self.step.ready.pop_front() {
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
                    sl.tokens as u64 * sh.compute_ns,
                    sh.bytes,
                    sh.macs,
                    SpanKind::Shared,
                    None,
                )
            } else {
                let g = sl.object as usize;
                // The first pass over weights that just arrived is slower (once: the kernel's
                // other tokens find them warm).
                let mut cold_ns = 0;
                if self.cold.get(g).copied().unwrap_or(false) {
                    self.cold[g] = false;
                    cold_ns = sl.cold_ns;
                }
                (
                    sl.tokens as u64 * sl.compute_ns + cold_ns,
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
            self.busy = Busy::Expert(slot);
            if s.expert_slowdown_while_transferring > 0.0 {
                // Its length depends on the links: span and breakdown when it ends.
                self.contended = Some(ContendedKernel {
                    start: now,
                    last: now,
                    work_left_ns: duration as f64,
                    kind,
                    layer,
                    expert,
                });
                self.schedule_contended();
            } else {
                self.span(kind, 0, now, duration, layer, expert);
                self.breakdown().compute += duration;
                self.q
                    .schedule_in(duration, Ev::ComputeDone(self.compute_generation));
            }
        } else if self.step.remaining > 0 {
            if self.step.stall_since.is_none() {
                self.step.stall_since = Some(now);
            }
        } else {
            self.end_step();
        }
    }

    /// Schedules the end of the contended kernel at the links' current state (superseding any
    /// earlier schedule).
    fn schedule_contended(&mut self) {
        let k = self.contended.expect("a contended kernel runs");
        let factor = if self.hops_in_flight > 0 {
            1.0 + self.s.expert_slowdown_while_transferring
        } else {
            1.0
        };
        self.compute_generation = self.compute_generation.wrapping_add(1);
        let left = (k.work_left_ns * factor).ceil().max(0.0) as TimeNs;
        self.q
            .schedule_in(left, Ev::ComputeDone(self.compute_generation));
    }

    /// Counts a hop starting (`+1`) or ending (`-1`); when the links go from idle to busy or
    /// back, a contended kernel's progress is brought up to date and its end rescheduled.
    #[inline]
    fn hops_change(&mut self, delta: i32) {
        let before = self.hops_in_flight;
        self.hops_in_flight = before.checked_add_signed(delta).expect("hop count");
        if (before > 0) == (self.hops_in_flight > 0) {
            return;
        }
        let now = self.now();
        let slowed = 1.0 + self.s.expert_slowdown_while_transferring;
        if let Some(k) = self.contended.as_mut() {
            let elapsed = (now - k.last) as f64;
            let done = if before > 0 {
                elapsed / slowed
            } else {
                elapsed
            };
            k.work_left_ns = (k.work_left_ns - done).max(0.0);
            k.last = now;
            self.schedule_contended();
        }
    }

    fn end_step(&mut self) {
        self.step.experts_phase = false;
        let mut p = self.pos();
        if p.layer + 1 < self.s.layers {
            p.layer += 1;
            self.pos = Some(p);
            self.begin_step();
            return;
        }
        // The LM head emits the token (the first one, for a prefill).
        let s = self.s;
        let now = self.now();
        self.span(SpanKind::Head, 0, now, s.head_ns, p.layer, None);
        self.breakdown().compute += s.head_ns;
        let ct = s.compute_tier;
        self.c.tier_read[ct] += s.head_bytes;
        let ph = self.phase();
        self.c.energy_weight_read_pj[ph] += s.head_bytes as f64 * s.tiers[ct].energy_pj_per_byte;
        self.c.macs[ph] += s.head_macs as f64;
        self.busy = Busy::LmHead;
        self.q
            .schedule_in(s.head_ns, Ev::ComputeDone(self.compute_generation));
    }

    fn head_done(&mut self) {
        let now = self.now();
        let mut p = self.pos();
        let span = *self.request();
        let arrival = self.arrival_ns[p.request as usize];
        if p.prefill {
            self.c.ttfts.push(now - arrival);
            self.c.prefill_time += now - self.request_start;
            p.prefill = false;
            p.layer = 0;
            p.token = 0;
        } else {
            self.c.token_latencies.push(now - self.token_start);
            if span.prefill_tokens == 0 && p.token == 0 {
                self.c.ttfts.push(now - arrival);
            }
            p.token += 1;
            p.layer = 0;
        }
        self.pos = Some(p);
        if p.token < span.decode_tokens {
            self.begin_step();
        } else {
            self.request_done();
        }
    }

    // ---- transfers ------------------------------------------------------------------------

    fn issue(&mut self, kind: Kind, object: u32, bytes: u64, from: u8, waiter: Option<u16>) -> u32 {
        let tr = Transfer {
            object,
            bytes,
            from,
            hop: 0,
            started: false,
            kind,
            waiter,
            orphan: false,
            hop_start: 0,
            generation: 0,
            live: true,
        };
        let tid = match self.free.pop() {
            Some(tid) => {
                let generation = self.transfers[tid as usize].generation + 1;
                self.transfers[tid as usize] = Transfer { generation, ..tr };
                tid
            }
            None => {
                self.transfers.push(tr);
                (self.transfers.len() - 1) as u32
            }
        };
        let link = self.s.paths[from as usize][0] as usize;
        let now = self.now();
        if let Some(started) = self.links[link].arrive(now, tid) {
            self.start_hop(started);
        }
        tid
    }

    fn start_hop(&mut self, tid: u32) {
        let now = self.now();
        let tr = &mut self.transfers[tid as usize];
        tr.started = true;
        tr.hop_start = now;
        let link = self.s.paths[tr.from as usize][tr.hop as usize] as usize;
        let d = self.s.links[link].hop_ns(tr.bytes);
        self.q.schedule_in(d, Ev::HopDone(tid));
        self.hops_change(1);
    }

    fn free_transfer(&mut self, tid: u32) {
        self.transfers[tid as usize].live = false;
        self.free.push(tid);
    }

    fn on_hop_done(&mut self, tid: u32) {
        let now = self.now();
        let s = self.s;
        let tr = self.transfers[tid as usize];
        let path = &s.paths[tr.from as usize];
        let link = path[tr.hop as usize] as usize;
        let (from, to) = (s.links[link].from, s.links[link].to);
        self.hops_change(-1);
        self.c.link_transfers[link] += 1;
        self.c.link_bytes[link] += tr.bytes;
        self.c.tier_read[from] += tr.bytes;
        self.c.tier_written[to] += tr.bytes;
        let ph = self.phase();
        self.c.energy_transfer_pj[ph] +=
            tr.bytes as f64 * (s.tiers[from].energy_pj_per_byte + s.tiers[to].energy_pj_per_byte);
        if self.timeline.is_some() {
            let kind = match tr.kind {
                Kind::Demand => SpanKind::Load,
                Kind::Prefetch => SpanKind::Prefetch,
                Kind::Shared => SpanKind::SharedLoad,
            };
            let (layer, expert) = if tr.kind == Kind::Shared {
                (tr.object, None)
            } else {
                (tr.object / s.experts, Some(tr.object % s.experts))
            };
            self.span(
                kind,
                1 + link as u16,
                tr.hop_start,
                now - tr.hop_start,
                layer,
                expert,
            );
        }
        if let Some(next) = self.links[link].release(now) {
            self.start_hop(next);
        }
        if (tr.hop as usize) + 1 < path.len() {
            let t = &mut self.transfers[tid as usize];
            t.hop += 1;
            t.started = false;
            let next_link = path[t.hop as usize] as usize;
            if let Some(started) = self.links[next_link].arrive(now, tid) {
                self.start_hop(started);
            }
            return;
        }
        // Arrived in the compute tier.
        let ph = self.phase();
        self.c.bytes_loaded[ph] += tr.bytes;
        if tr.kind != Kind::Shared
            && let Some(c) = self.cold.get_mut(tr.object as usize)
        {
            *c = true;
        }
        if tr.kind != Kind::Shared
            && !tr.orphan
            && self.status[tr.object as usize] == Status::InFlight(tid)
        {
            self.status[tr.object as usize] = Status::Ready;
        }
        self.free_transfer(tid);
        if let Some(slot) = tr.waiter {
            self.step.slots[slot as usize].state = SlotState::Ready;
            self.step.ready.push_back(slot);
            self.next_compute();
        }
    }

    // ---- results --------------------------------------------------------------------------

    fn report(&mut self) -> SimReport {
        let s = self.s;
        let c = &mut self.c;
        let makespan = self.q.now();
        let (prefill_tokens, decode_tokens) = self.t.tokens();
        let decode_time: u64 = c.token_latencies.iter().sum();
        let latencies = c.token_latencies.clone();
        let mut sorted = c.token_latencies.clone();
        sorted.sort_unstable();
        let mut ttfts = c.ttfts.clone();
        ttfts.sort_unstable();
        let ratio = |a: u64, b: u64| {
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        let per_s = |tokens: u64, ns: u64| {
            if ns == 0 {
                f64::NAN
            } else {
                tokens as f64 * 1e9 / ns as f64
            }
        };
        // Dynamic energy per phase, plus static power over the phase's time; idle time between
        // requests draws static power too, counted in the total only.
        let static_pj_per_ns = s.static_power_w * 1e3;
        let phase_time = [c.prefill_time, decode_time];
        let phase_pj: Vec<f64> = (0..2)
            .map(|p| {
                c.energy_transfer_pj[p]
                    + c.energy_weight_read_pj[p]
                    + c.macs[p] * s.energy_pj_per_mac
                    + static_pj_per_ns * phase_time[p] as f64
            })
            .collect();
        let energy_mac_pj = (c.macs[0] + c.macs[1]) * s.energy_pj_per_mac;
        let energy_static_pj = static_pj_per_ns * makespan as f64;
        let total_pj = c.energy_transfer_pj.iter().sum::<f64>()
            + c.energy_weight_read_pj.iter().sum::<f64>()
            + energy_mac_pj
            + energy_static_pj;
        let per_token_mj = |pj: f64, tokens: u64| {
            if tokens == 0 {
                f64::NAN
            } else {
                pj / tokens as f64 * 1e-9
            }
        };
        let uses = c.expert_uses;
        let links = s
            .links
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let busy = self.links[i].busy_channel_ns(makespan) as u64;
                LinkReport {
                    from: s.tiers[k.from].name.clone(),
                    to: s.tiers[k.to].name.clone(),
                    transfers: c.link_transfers[i],
                    bytes: c.link_bytes[i],
                    busy_channel_ns: busy,
                    utilisation: ratio(busy, makespan * k.channels as u64),
                }
            })
            .collect();
        let tiers = s
            .tiers
            .iter()
            .enumerate()
            .map(|(i, t)| TierReport {
                tier: t.name.clone(),
                decode_uses_served: c.tier_served[i],
                share: ratio(c.tier_served[i], uses),
                bytes_read: c.tier_read[i],
                bytes_written: c.tier_written[i],
                energy_pj: (c.tier_read[i] + c.tier_written[i]) as f64 * t.energy_pj_per_byte,
                expert_storage_bytes: s.storage_bytes[i],
            })
            .collect();
        let quality = self.quality.summary();
        SimReport {
            requests: self.t.requests.len() as u32,
            prefill_tokens,
            decode_tokens,
            makespan_ns: makespan,
            events: self.q.events_processed(),
            prefill_tokens_per_s: per_s(prefill_tokens, c.prefill_time),
            decode_tokens_per_s: per_s(decode_tokens, decode_time),
            ttft_mean_ns: if ttfts.is_empty() {
                f64::NAN
            } else {
                ttfts.iter().sum::<u64>() as f64 / ttfts.len() as f64
            },
            ttft_p50_ns: quantile(&ttfts, 0.5),
            ttft_p95_ns: quantile(&ttfts, 0.95),
            token_latency_mean_ns: ratio(decode_time, sorted.len() as u64),
            token_latency_p50_ns: quantile(&sorted, 0.5),
            token_latency_p95_ns: quantile(&sorted, 0.95),
            token_latency_p99_ns: quantile(&sorted, 0.99),
            token_latency_max_ns: sorted.last().copied().unwrap_or(0),
            decode_compute_ns: c.decode.compute,
            decode_routing_ns: c.decode.routing,
            decode_stall_ns: c.decode.stall,
            prefill_compute_ns: c.prefill.compute,
            prefill_routing_ns: c.prefill.routing,
            prefill_stall_ns: c.prefill.stall,
            expert_uses: uses,
            hits: c.hits,
            prefetch_hits: c.prefetch_hits,
            misses: c.misses,
            hit_rate: ratio(c.hits, uses),
            prefill_lookups: c.prefill_lookups,
            prefill_hits: c.prefill_hits,
            bytes_loaded: c.bytes_loaded[0] + c.bytes_loaded[1],
            bytes_loaded_prefill: c.bytes_loaded[0],
            bytes_loaded_decode: c.bytes_loaded[1],
            bytes_loaded_per_prefill_token: ratio(c.bytes_loaded[0], prefill_tokens),
            bytes_loaded_per_decode_token: ratio(c.bytes_loaded[1], decode_tokens),
            energy_transfer_pj: c.energy_transfer_pj.iter().sum(),
            energy_weight_read_pj: c.energy_weight_read_pj.iter().sum(),
            energy_mac_pj,
            energy_static_pj,
            energy_prefill_pj: phase_pj[0],
            energy_decode_pj: phase_pj[1],
            energy_per_prefill_token_mj: per_token_mj(phase_pj[0], prefill_tokens),
            energy_per_decode_token_mj: per_token_mj(phase_pj[1], decode_tokens),
            energy_total_mj: total_pj * 1e-9,
            prefetch_issued: c.prefetch_issued,
            prefetch_useful: c.prefetch_useful,
            prefetch_wrong: c.prefetch_wrong,
            prefetch_cancelled: c.prefetch_cancelled,
            prefetch_precision: ratio(c.prefetch_useful, c.prefetch_issued),
            prefetch_recall: ratio(
                c.prefetch_useful,
                c.prefetch_useful + c.misses_on_predicted_steps,
            ),
            prefetch_wasted_bytes: c.prefetch_wasted_bytes,
            decode_bits_per_weight_mean: {
                let n: u64 = c.format_uses.iter().map(|u| u.1).sum();
                let bits: f64 = c
                    .format_uses
                    .iter()
                    .map(|&(f, k)| f.bits_per_weight() * k as f64)
                    .sum();
                if n == 0 { f64::NAN } else { bits / n as f64 }
            },
            precision_switches: c.precision_switches,
            low_precision_loads: c.low_precision_loads,
            expert_storage_bytes: s.storage_bytes.iter().sum(),
            extra_copy_bytes: s.extra_copy_bytes,
            quality,
            links,
            tiers,
            token_latencies_ns: latencies,
            expert_selections: self.quality.selections().to_vec(),
            format_uses: {
                let mut v = c.format_uses.clone();
                v.sort_by(|a, b| b.0.bits_per_weight().total_cmp(&a.0.bits_per_weight()));
                v
            },
            quality_samples: {
                let mut v = std::mem::take(&mut self.samples);
                v.sort_by_key(|q| q.event);
                v
            },
        }
    }
}

fn ci_of(per_layer: bool, layer: u32) -> usize {
    if per_layer { layer as usize } else { 0 }
}

/// Per-layer logit scales of the trace, as the routers of `moesim route` use them.
pub fn router_scales(t: &SimTrace) -> Vec<f32> {
    crate::router::replay::RoutePlan::new(
        &t.workload,
        Scope::PerLayer,
        crate::cache::replay::BetweenRequests::Keep,
        false,
    )
    .scales()
    .to_vec()
}
