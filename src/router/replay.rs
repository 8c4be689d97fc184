//! Replaying a trace through router × eviction policy × capacity: the router chooses each
//! token's experts given the cache state, the cache then serves the selection (atomic
//! semantics), and the quality metrics compare the choice with standard routing.
//!
//! Routers re-route from the trace's logits. A trace with only the recorded top-k ids and
//! weights is *restricted*: the candidates are the recorded experts, with logits `ln(weight)`
//! (or their rank order when weights are missing), and every other expert is out of reach. On
//! such a trace a router can reorder the recorded experts but, when it must select as many as
//! were recorded, not change the set; the output says so.

use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;

use super::metrics::{QualityAcc, QualitySummary, StandardRef};
use super::{GateWeights, RouteInput, RouterKind, Selection, top_k_by};
use crate::cache::bank::{CacheBank, CacheMap, Oracles, StreamBuilder};
use crate::cache::replay::{BetweenRequests, Capacity, Scope, Stream, Workload};
use crate::cache::{Lookup, PolicyKind};
use crate::error::{Error, Result};
use crate::trace::RoutingRecord;
use crate::trace::native::TraceReader;
use crate::trace::token_memory::TokenMemory;

/// Fixed fields of one routing event.
#[derive(Debug, Clone, Copy)]
pub struct Head {
    /// Request id.
    pub request: u32,
    /// Token position.
    pub position: u32,
    /// MoE layer.
    pub layer: u32,
    /// Prefill or decode.
    pub phase: crate::trace::Phase,
}

/// A trace in memory for routing: heads and one row of logits per event.
#[derive(Debug, Clone)]
pub struct RouteWorkload {
    /// MoE layers.
    pub layers: u32,
    /// Experts per layer.
    pub experts: u32,
    /// Top-k.
    pub top_k: u32,
    /// Whether the trace lacks full logits (re-routing restricted to recorded candidates).
    pub restricted: bool,
    /// Events in execution order.
    pub heads: Vec<Head>,
    /// `experts` logits per event.
    pub logits: Vec<f32>,
}

impl RouteWorkload {
    /// Loads a native trace.
    pub fn from_trace(path: &std::path::Path) -> Result<RouteWorkload> {
        RouteWorkload::from_reader(TraceReader::open(path)?)
    }

    /// Reads a whole native trace from `reader`.
    pub fn from_reader<R: std::io::Read>(mut reader: TraceReader<R>) -> Result<RouteWorkload> {
        let meta = reader.meta().clone();
        let mut w = RouteWorkload::new(&meta);
        let mut r = RoutingRecord::default();
        while reader.next_record(&mut r)? {
            w.push(&r);
        }
        if w.heads.is_empty() {
            return Err(crate::error::InputError::new(
                reader.name().to_string(),
                "the trace holds no routing records",
            )
            .into());
        }
        Ok(w)
    }

    /// An empty workload shaped like `meta`.
    pub fn new(meta: &crate::trace::TraceMeta) -> RouteWorkload {
        RouteWorkload {
            layers: meta.layers,
            experts: meta.experts,
            top_k: meta.top_k,
            restricted: false,
            heads: Vec::new(),
            logits: Vec::new(),
        }
    }

    /// Appends a (validated, in-order) record.
    pub fn push(&mut self, r: &RoutingRecord) {
        let e = self.experts as usize;
        self.heads.push(Head {
            request: r.request,
            position: r.position,
            layer: r.layer,
            phase: r.phase,
        });
        if r.logits.len() == e {
            self.logits.extend_from_slice(&r.logits);
        } else {
            self.restricted = true;
            let start = self.logits.len();
            self.logits.resize(start + e, f32::NEG_INFINITY);
            for (rank, &x) in r.experts.iter().enumerate() {
                self.logits[start + x as usize] = match r.weights.get(rank) {
                    Some(&p) if p > 0.0 => p.ln(),
                    // Unknown or zero weight: keep the recorded rank order.
                    _ => -(rank as f32) - 100.0,
                };
            }
        }
    }

    /// The logits of event `i`.
    pub fn logits_of(&self, i: usize) -> &[f32] {
        let e = self.experts as usize;
        &self.logits[i * e..(i + 1) * e]
    }
}

/// One (router, policy, capacity) combination.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteJob {
    /// The router.
    pub router: RouterKind,
    /// The eviction policy.
    pub policy: PolicyKind,
    /// The capacity.
    pub capacity: Capacity,
}

/// Options shared by every job.
#[derive(Debug, Clone, Copy)]
pub struct RouteOptions {
    /// Per-layer or shared caches.
    pub scope: Scope,
    /// Reset or keep caches between requests (router state is always kept).
    pub between: BetweenRequests,
    /// Bytes of one expert.
    pub expert_bytes: u64,
    /// Gate-weight mode.
    pub gate: GateWeights,
}

/// The outcome of one job.
#[derive(Debug, Clone, Serialize)]
pub struct RouteResult {
    /// Router name.
    pub router: String,
    /// Swept bonus (λ, or γ for EMA).
    pub bonus: Option<f64>,
    /// Every router parameter (`name=value` pairs).
    pub router_params: String,
    /// Policy name.
    pub policy: String,
    /// Capacity in experts per layer.
    pub capacity_experts: f64,
    /// Capacity in bytes over all caches.
    pub capacity_bytes: u64,
    /// Expert lookups.
    pub accesses: u64,
    /// Hits.
    pub hits: u64,
    /// Hits over lookups.
    pub hit_rate: f64,
    /// Bytes loaded from the home tier (misses, inserted or streamed).
    pub bytes_loaded: u64,
    /// Quality against standard routing.
    #[serde(flatten)]
    pub quality: QualitySummary,
    /// Router operations per call beyond the gate GEMV.
    pub router_extra_ops_per_call: u64,
}

/// The standard route sequence as cache streams (for Belady's oracle and popularity), from
/// the standard top-k of every event (`top_k` slots, padded with [`PAD`]).
fn standard_streams(w: &RouteWorkload, standard: &[u16], map: CacheMap) -> Vec<Stream> {
    let k = w.top_k as usize;
    let mut streams = StreamBuilder::new(map);
    for (i, h) in w.heads.iter().enumerate() {
        let top = &standard[i * k..(i + 1) * k];
        streams.push(
            h.request,
            h.layer,
            top.iter().take_while(|&&x| x != PAD).map(|&x| x as u32),
        );
    }
    streams.finish()
}

/// Everything the jobs of one trace share, computed once: the logit scales, the standard
/// decision of every event (for the quality metrics), and the standard route sequence as cache
/// streams (for Belady's oracle and the popularity of the pinned policies).
#[derive(Debug, Clone)]
pub struct RoutePlan {
    scope: Scope,
    between: BetweenRequests,
    scales: Vec<f32>,
    /// Standard top-k per event, `top_k` slots, padded with [`PAD`].
    standard: Vec<u16>,
    standard_weights: Vec<f32>,
    top_logit: Vec<f32>,
    standard_mass: Vec<f64>,
    map: CacheMap,
    oracles: Oracles,
}

const PAD: u16 = u16::MAX;

impl RoutePlan {
    /// Prepares `w` for jobs with this scope and request boundary; `oracle` also prepares
    /// Belady's next-use table.
    pub fn new(
        w: &RouteWorkload,
        scope: Scope,
        between: BetweenRequests,
        oracle: bool,
    ) -> RoutePlan {
        let k = w.top_k as usize;
        let n = w.heads.len();
        let mut plan = RoutePlan {
            scope,
            between,
            scales: Vec::new(),
            standard: Vec::with_capacity(n * k),
            standard_weights: Vec::with_capacity(n * k),
            top_logit: Vec::with_capacity(n),
            standard_mass: Vec::with_capacity(n),
            map: CacheMap::new(scope, w.layers, w.experts),
            oracles: Oracles::default(),
        };
        // One ranking per event gives the standard top-k and the top-1 − top-k gap (top-2 when
        // k = 1) of the logit scale.
        let k_gap = k.max(2);
        let mut gap_sums = vec![0.0f64; w.layers as usize];
        let mut gap_counts = vec![0u64; w.layers as usize];
        let mut ranked = Vec::new();
        let mut sel = Selection::default();
        for (i, h) in w.heads.iter().enumerate() {
            let logits = w.logits_of(i);
            top_k_by(logits, k_gap, &mut ranked);
            if ranked.len() == k_gap {
                let gap = logits[ranked[0] as usize] - logits[ranked[k_gap - 1] as usize];
                if gap.is_finite() {
                    gap_sums[h.layer as usize] += gap as f64;
                    gap_counts[h.layer as usize] += 1;
                }
            }
            sel.experts.clear();
            sel.experts
                .extend_from_slice(&ranked[..ranked.len().min(k)]);
            super::gate_weights(GateWeights::Renormalized, logits, logits, &mut sel);
            let (top, mass) = StandardRef::top_and_mass(logits, &sel.experts);
            plan.standard.extend_from_slice(&sel.experts);
            plan.standard.resize((i + 1) * k, PAD);
            plan.standard_weights.extend_from_slice(&sel.weights);
            plan.standard_weights.resize((i + 1) * k, 0.0);
            plan.top_logit.push(top);
            plan.standard_mass.push(mass);
        }
        plan.scales = gap_sums
            .iter()
            .zip(&gap_counts)
            .map(|(&s, &n)| {
                if n > 0 && s > 0.0 {
                    (s / n as f64) as f32
                } else {
                    1.0
                }
            })
            .collect();
        let streams = standard_streams(w, &plan.standard, plan.map);
        plan.oracles = Oracles::from_streams(&streams, plan.map.n_objects(), oracle, true, between);
        plan
    }

    /// The per-layer logit scale `s`: the mean gap between the top-1 and the top-k logit (top-2
    /// when k = 1) under standard routing, over the layer's events; 1 when undefined.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    fn standard_of(&self, i: usize, k: usize) -> StandardRef<'_> {
        let experts = &self.standard[i * k..(i + 1) * k];
        let len = experts.iter().position(|&e| e == PAD).unwrap_or(k);
        StandardRef {
            experts: &experts[..len],
            weights: &self.standard_weights[i * k..i * k + len],
            top_logit: self.top_logit[i],
            mass: self.standard_mass[i],
        }
    }
}

/// Runs every job in parallel; results in job order whatever the thread count. Belady is only
/// defined with the standard router (its oracle is the standard route sequence).
pub fn run_all(
    w: &RouteWorkload,
    jobs: &[RouteJob],
    opts: RouteOptions,
) -> Result<Vec<RouteResult>> {
    check_jobs(jobs)?;
    let plan = RoutePlan::new(
        w,
        opts.scope,
        opts.between,
        jobs.iter().any(|j| j.policy.needs_oracle()),
    );
    Ok(jobs
        .par_iter()
        .map(|job| run_job(w, &plan, job, opts))
        .collect())
}

/// Rejects combinations that are not defined.
pub fn check_jobs(jobs: &[RouteJob]) -> Result<()> {
    if let Some(j) = jobs
        .iter()
        .find(|j| j.policy.needs_oracle() && j.router != RouterKind::Standard {})
    {
        return Err(Error::usage(format!(
            "Belady needs the route sequence in advance, so it runs with the standard router only (got {})",
            j.router.name()
        )));
    }
    Ok(())
}

/// Runs one job on a prepared trace (`plan` from [`RoutePlan::new`] with the same workload,
/// scope and request boundary as `opts`, and with the oracle if the policy needs it).
pub fn run_job(
    w: &RouteWorkload,
    plan: &RoutePlan,
    job: &RouteJob,
    opts: RouteOptions,
) -> RouteResult {
    assert!(
        plan.scope == opts.scope && plan.between == opts.between,
        "plan prepared for other options"
    );
    let shell = Workload {
        scope: opts.scope,
        layers: w.layers,
        experts: w.experts,
        n_objects: plan.map.n_objects(),
        sizes: Arc::new(Vec::new()),
        expert_bytes: opts.expert_bytes,
        streams: vec![Stream::default(); plan.map.n_caches()],
    };
    let cap_bytes = job.capacity.per_cache_bytes(&shell);
    assert!(
        !job.policy.needs_oracle() || plan.oracles.has_next_use(),
        "plan prepared without the oracle"
    );
    let mut bank = CacheBank::new(
        plan.map,
        cap_bytes,
        opts.expert_bytes,
        &job.policy,
        &plan.oracles,
    );
    let mut router = job
        .router
        .build(w.layers, w.experts, &plan.scales, opts.gate);
    let keep_previous = router.uses_previous_layer();
    let k = w.top_k as usize;
    let mut quality = QualityAcc::new(w.layers, w.experts);
    let mut memory = TokenMemory::new(w.layers, w.top_k);
    let (mut accesses, mut hits, mut loaded) = (0u64, 0u64, 0u64);
    let mut chosen = Selection::default();
    let mut request = None;
    for (i, h) in w.heads.iter().enumerate() {
        if request != Some(h.request) {
            if request.is_some() && opts.between == BetweenRequests::Reset {
                bank.reset();
            }
            memory.clear();
            request = Some(h.request);
        }
        let logits = w.logits_of(i);
        let previous = if keep_previous && h.layer > 0 {
            memory.get(h.layer - 1, h.position)
        } else {
            None
        };
        let input = RouteInput {
            layer: h.layer,
            logits,
            top_k: k,
            previous_layer: previous,
        };
        bank.route(router.as_mut(), &input, opts.expert_bytes, &mut chosen);
        quality.add(h.layer, logits, &plan.standard_of(i, k), &chosen);
        if keep_previous {
            memory.record(h.layer, h.position, &chosen.experts);
        }
        bank.begin_event(h.layer, &chosen.experts);
        for &x in &chosen.experts {
            accesses += 1;
            if bank.lookup(h.layer, x as u32, opts.expert_bytes) == Lookup::Hit {
                hits += 1;
            } else {
                loaded += opts.expert_bytes;
            }
        }
    }
    RouteResult {
        router: job.router.name().to_string(),
        bonus: job.router.bonus(),
        router_params: job.router.params(),
        policy: job.policy.to_string(),
        capacity_experts: job.capacity.experts_per_layer(&shell),
        capacity_bytes: job.capacity.total_bytes(&shell),
        accesses,
        hits,
        hit_rate: if accesses == 0 {
            f64::NAN
        } else {
            hits as f64 / accesses as f64
        },
        bytes_loaded: loaded,
        quality: quality.summary(),
        router_extra_ops_per_call: router.extra_ops_per_call(w.experts as usize, w.top_k as usize),
    }
}
