//! The MoE inference model on the event engine: a device decoding requests one token at a
//! time, its experts moving between memory tiers over contended links while its compute unit
//! runs dense work, routing and expert kernels.
//!
//! Inputs: a resolved [`SimSetup`] (durations, sizes, placement, link chains, options) and a
//! [`SimTrace`] (the routing events, in execution order). Output: a [`SimReport`] and, on
//! request, a [`Timeline`]. No I/O happens here.
//!
//! The process, per MoE layer step of a token (decode) or of the whole prompt (prefill):
//! 1. the compute unit runs the layer's non-expert work and the gate (times the tokens);
//! 2. the router chooses experts given the cache as it is; the cache serves the selection as
//!    one atomic event (hits; misses are inserted, evicting by policy, or streamed when the
//!    selection cannot fit); every miss starts a transfer from its home tier along the link
//!    chain, queueing FIFO on each link;
//! 3. a prefetcher, if any, guesses the next layer's experts and starts their transfers (its
//!    cost runs on the compute unit);
//! 4. the compute unit runs each expert as soon as it is both selected and present: shared
//!    experts and hits first, in rank order, then loaded experts in arrival order, so the load
//!    of one expert overlaps the compute of another; while it waits, the token stalls.
//!
//! After the last layer the LM head runs and the token is emitted. In prefill all prompt tokens
//! are routed at each layer, the union of their experts is looked up and loaded once, and each
//! expert runs for the tokens routed to it.

pub mod arrival;
mod compute;
mod copies;
mod counters;
pub mod dump;
mod in_place;
pub mod placement;
pub mod prefetch;
mod prefetching;
mod process;
pub mod report;
mod requests;
mod serve;
pub mod serving;
pub mod setup;
mod step;
mod tier_share;
pub mod timeline;
mod transfers;
mod weights_cache;
pub use weights_cache::random_replacement_share;

pub use placement::{HotSet, InPlaceLayers, PlacementMode, PlacementSpec, Popularity};
pub use process::{TIMELINE_MAX_SPANS, router_scales, run};
pub use report::SimReport;
pub use setup::{
    CacheCapacity, FormatCost, InPlace, OnWrongPrefetch, PrecisionOptions, SetupError, SimOptions,
    SimPrecision, SimSetup, roofline_ns,
};
pub use timeline::Timeline;

use crate::cache::bank::{CacheMap, StreamBuilder};
use crate::cache::replay::{BetweenRequests, Scope, Stream};
use crate::router::replay::RouteWorkload;
use crate::router::top_k_by;
use crate::trace::Phase;

/// One request's events in a [`SimTrace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSpan {
    /// Index of its first event.
    pub first_event: usize,
    /// Prompt tokens (events `first_event + layer · prefill + token`).
    pub prefill_tokens: u32,
    /// Decode tokens (events after the prefill, `layers` per token in layer order).
    pub decode_tokens: u32,
}

/// Routing events laid out for simulation.
#[derive(Debug, Clone)]
pub struct SimTrace {
    /// Heads and logits of every event, in execution order.
    pub workload: RouteWorkload,
    /// The requests, in trace order.
    pub requests: Vec<RequestSpan>,
    /// Per event, `experts` logits of the next layer's router applied to this event's hidden
    /// state (for speculative prefetch); empty when unknown.
    pub speculative: Vec<f32>,
    /// Decode events whose selection and formats the run records for output quality, sorted.
    pub quality_events: Vec<usize>,
    /// The hidden vector each of `quality_events` was routed on (`hidden` floats each), when
    /// the trace has them (generated traces).
    pub quality_hidden: Vec<f32>,
}

impl SimTrace {
    /// Lays out `workload` (checking that every token passes every layer: prefill layer-major,
    /// decode token-major). `speculative` is empty or has `experts` floats per event.
    pub fn new(workload: RouteWorkload, speculative: Vec<f32>) -> Result<SimTrace, String> {
        let l = workload.layers as usize;
        let e = workload.experts as usize;
        assert!(speculative.is_empty() || speculative.len() == workload.heads.len() * e);
        let heads = &workload.heads;
        let mut requests = Vec::new();
        let mut i = 0;
        while i < heads.len() {
            let first = i;
            let request = heads[i].request;
            let mut end = i;
            while end < heads.len() && heads[end].request == request {
                end += 1;
            }
            let prefill_events = heads[first..end]
                .iter()
                .take_while(|h| h.phase == Phase::Prefill)
                .count();
            let decode_events = end - first - prefill_events;
            if prefill_events % l != 0 || decode_events % l != 0 {
                return Err(format!(
                    "request {request}: {prefill_events} prefill and {decode_events} decode events are not whole \
                     tokens of {l} layers; the simulator needs every layer of every token (for a trace whose \
                     collector dropped events, set `truncate_to_whole_tokens = true` in [trace] or [trace.import])"
                ));
            }
            let p = prefill_events / l;
            for (j, h) in heads[first..end].iter().enumerate() {
                let (layer, phase) = if j < prefill_events {
                    (j / p, Phase::Prefill)
                } else {
                    ((j - prefill_events) % l, Phase::Decode)
                };
                if h.layer as usize != layer || h.phase != phase {
                    return Err(format!(
                        "request {request}, event {}: layer {} ({:?}) where the simulator expects layer {layer} \
                         ({phase:?}): prefill must be layer-major and decode token-major, every layer present",
                        first + j,
                        h.layer,
                        h.phase
                    ));
                }
            }
            requests.push(RequestSpan {
                first_event: first,
                prefill_tokens: p as u32,
                decode_tokens: (decode_events / l) as u32,
            });
            i = end;
        }
        Ok(SimTrace {
            workload,
            requests,
            speculative,
            quality_events: Vec::new(),
            quality_hidden: Vec::new(),
        })
    }

    /// Index of the event of prefill token `token` at `layer` of request `r`.
    #[inline]
    pub fn prefill_event(&self, r: &RequestSpan, layer: u32, token: u32) -> usize {
        r.first_event + layer as usize * r.prefill_tokens as usize + token as usize
    }

    /// Index of the event of decode token `token` at `layer` of request `r`.
    #[inline]
    pub fn decode_event(&self, r: &RequestSpan, token: u32, layer: u32) -> usize {
        let l = self.workload.layers as usize;
        r.first_event + l * r.prefill_tokens as usize + token as usize * l + layer as usize
    }

    /// Prefill plus decode tokens over all requests.
    pub fn tokens(&self) -> (u64, u64) {
        self.requests.iter().fold((0, 0), |(p, d), r| {
            (p + r.prefill_tokens as u64, d + r.decode_tokens as u64)
        })
    }

    /// The cache lookups the simulator makes under standard routing, one stream per cache, in
    /// its order (a prefill layer step looks up the union of its tokens' experts in order of
    /// first appearance; a decode step its selection). Belady's oracle and the popularity of
    /// experts (for the pinned policy and the static placement) come from these.
    pub fn standard_streams(&self, scope: Scope) -> Vec<Stream> {
        let w = &self.workload;
        let (l, k) = (w.layers, w.top_k as usize);
        let mut streams = StreamBuilder::new(CacheMap::new(scope, l, w.experts));
        let mut top = Vec::new();
        let mut union: Vec<u16> = Vec::new();
        for (ri, r) in self.requests.iter().enumerate() {
            let ri = ri as u32;
            for layer in (0..l).filter(|_| r.prefill_tokens > 0) {
                union.clear();
                for t in 0..r.prefill_tokens {
                    top_k_by(w.logits_of(self.prefill_event(r, layer, t)), k, &mut top);
                    for &x in &top {
                        if !union.contains(&x) {
                            union.push(x);
                        }
                    }
                }
                streams.push(ri, layer, union.iter().map(|&x| x as u32));
            }
            for t in 0..r.decode_tokens {
                for layer in 0..l {
                    top_k_by(w.logits_of(self.decode_event(r, t, layer)), k, &mut top);
                    streams.push(ri, layer, top.iter().map(|&x| x as u32));
                }
            }
        }
        streams.finish()
    }

    /// Uses of each (layer, expert) under standard routing, `layer * experts + expert`.
    pub fn popularity(&self) -> Vec<u64> {
        let w = &self.workload;
        let mut counts = vec![0u64; w.layers as usize * w.experts as usize];
        let mut top = Vec::new();
        for (i, h) in w.heads.iter().enumerate() {
            top_k_by(w.logits_of(i), w.top_k as usize, &mut top);
            for &x in &top {
                counts[h.layer as usize * w.experts as usize + x as usize] += 1;
            }
        }
        counts
    }
}

/// Whether caches reset when a request starts.
pub(crate) fn resets(between: BetweenRequests) -> bool {
    between == BetweenRequests::Reset
}
