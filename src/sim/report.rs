//! What one simulation measured.

use serde::Serialize;

use crate::router::metrics::QualitySummary;

/// The outputs of one run. Times are simulated nanoseconds; energies picojoules unless the
/// name says otherwise.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SimReport {
    /// Requests served.
    pub requests: u32,
    /// Prompt tokens.
    pub prefill_tokens: u64,
    /// Generated tokens (decode steps).
    pub decode_tokens: u64,
    /// From time 0 to the last token.
    pub makespan_ns: u64,
    /// Engine events processed.
    pub events: u64,
    /// Prompt tokens over the time spent in prefill.
    pub prefill_tokens_per_s: f64,
    /// Decode tokens over the sum of their latencies: one request's decode speed (with a batch,
    /// see `aggregate_decode_tokens_per_s` for all requests together).
    pub decode_tokens_per_s: f64,
    /// Time to first token (arrival to the end of the prefill, or of the first decode step
    /// without a prompt), mean over requests.
    pub ttft_mean_ns: f64,
    /// Median time to first token.
    pub ttft_p50_ns: u64,
    /// 95th percentile of the time to first token.
    pub ttft_p95_ns: u64,
    /// Mean decode-token latency.
    pub token_latency_mean_ns: f64,
    /// Median decode-token latency.
    pub token_latency_p50_ns: u64,
    /// 95th percentile of the decode-token latency.
    pub token_latency_p95_ns: u64,
    /// 99th percentile of the decode-token latency.
    pub token_latency_p99_ns: u64,
    /// Longest decode token.
    pub token_latency_max_ns: u64,
    /// Decode: time computing (dense, experts, LM head).
    pub decode_compute_ns: u64,
    /// Decode: time routing (gate, router work, predictor, issuing transfers to idle links).
    pub decode_routing_ns: u64,
    /// Decode: time waiting for experts to arrive.
    pub decode_stall_ns: u64,
    /// Prefill: time computing.
    pub prefill_compute_ns: u64,
    /// Prefill: time routing.
    pub prefill_routing_ns: u64,
    /// Prefill: time waiting for experts.
    pub prefill_stall_ns: u64,
    /// Decode expert uses (tokens × layers × k).
    pub expert_uses: u64,
    /// Uses whose expert was resident and present when routed.
    pub hits: u64,
    /// Uses whose expert was already on its way, fetched by a prefetch.
    pub prefetch_hits: u64,
    /// Uses that started a demand load.
    pub misses: u64,
    /// `hits / expert_uses` (decode).
    pub hit_rate: f64,
    /// Prefill lookups (distinct experts per layer step).
    pub prefill_lookups: u64,
    /// Prefill lookups that hit.
    pub prefill_hits: u64,
    /// Bytes delivered to the compute tier (demand loads, prefetches, shared experts).
    pub bytes_loaded: u64,
    /// Of those, delivered while a prefill step ran.
    pub bytes_loaded_prefill: u64,
    /// Of those, delivered while decoding (or between requests).
    pub bytes_loaded_decode: u64,
    /// Prefill bytes per prompt token.
    pub bytes_loaded_per_prefill_token: f64,
    /// Decode bytes per generated token.
    pub bytes_loaded_per_decode_token: f64,
    /// Energy of transfers: bytes × (source + destination pJ/B) per hop.
    pub energy_transfer_pj: f64,
    /// Energy of reading weights from the compute tier for compute.
    pub energy_weight_read_pj: f64,
    /// Energy of MACs.
    pub energy_mac_pj: f64,
    /// Static power over the whole simulated time (0 when the profile states none).
    pub energy_static_pj: f64,
    /// Energy of the prefill phase: its transfers, weight reads and MACs, and static power
    /// over its time.
    pub energy_prefill_pj: f64,
    /// Energy of the decode phase, likewise.
    pub energy_decode_pj: f64,
    /// Prefill energy per prompt token, in millijoules.
    pub energy_per_prefill_token_mj: f64,
    /// Decode energy per generated token, in millijoules.
    pub energy_per_decode_token_mj: f64,
    /// All energy of the run (both phases and idle static power), in millijoules.
    pub energy_total_mj: f64,
    /// Prefetches started.
    pub prefetch_issued: u64,
    /// Prefetches the router then selected.
    pub prefetch_useful: u64,
    /// Prefetches it did not select (including cancelled ones).
    pub prefetch_wrong: u64,
    /// Wrong prefetches cancelled before their transfer started.
    pub prefetch_cancelled: u64,
    /// `useful / issued`.
    pub prefetch_precision: f64,
    /// `useful / (useful + demand misses)` over decode steps that had a prediction.
    pub prefetch_recall: f64,
    /// Bytes of wrong prefetches that were transferred.
    pub prefetch_wasted_bytes: u64,
    /// Bits per weight of the expert copies decode computed, mean over uses.
    pub decode_bits_per_weight_mean: f64,
    /// Resident copies dropped because the device state lowered their precision.
    pub precision_switches: u64,
    /// Misses that fetched the low-bit copy (low precision on miss).
    pub low_precision_loads: u64,
    /// Bytes of routed-expert copies stored over all tiers (the compute tier: its cache).
    pub expert_storage_bytes: u64,
    /// Of those, the extra precision copies dynamic precision and low-on-miss need.
    pub extra_copy_bytes: u64,
    /// Decode expert uses computed in place (by the unit where the expert is stored).
    pub in_place_uses: u64,
    /// Prefill lookups computed in place.
    pub prefill_in_place: u64,
    /// Activation bytes moved to and from the in-place unit, both phases.
    pub activation_bytes: u64,
    /// Time the primary unit computed or routed, both phases.
    pub primary_busy_ns: u64,
    /// Time the in-place unit ran kernels (0 without one).
    pub in_place_busy_ns: u64,
    /// `in_place_busy_ns` over the makespan (0 without an in-place unit).
    pub in_place_utilisation: f64,
    /// Time, summed over tiers, during which a tier's readers (transfers out of it and the
    /// in-place unit's kernels) asked for more than its read bandwidth and were slowed.
    pub tier_contended_ns: u64,
    /// Decode tokens over the time of the steps that carried them, all requests together
    /// (equal to `decode_tokens_per_s` when one request is served at a time).
    pub aggregate_decode_tokens_per_s: f64,
    /// Decoding requests per decode step, mean.
    pub batch_mean: f64,
    /// Distinct experts per decode layer step (the union of its tokens' selections), mean.
    pub union_experts_mean: f64,
    /// Tokens served per expert weight pass: (token, expert) uses over union members.
    pub reuse_factor: f64,
    /// Speculative decoding: tokens emitted per verification step that proposed every draft.
    pub verify_tokens_per_step: f64,
    /// Speculative decoding: accepted drafts over proposed ones.
    pub draft_acceptance: f64,
    /// KV cache: the most bytes the requests in service kept at once.
    pub kv_peak_bytes: u64,
    /// Attention's time over every step's context (0 without a KV model).
    pub attention_ns: u64,
    /// The smallest the expert caches became (bytes over all caches; `shrink` lowers it).
    pub expert_cache_min_bytes: u64,
    /// Routing quality against the standard router (1, 1, 0 for the standard router).
    #[serde(flatten)]
    pub quality: QualitySummary,
    /// Per link.
    #[serde(skip)]
    pub links: Vec<LinkReport>,
    /// Per tier.
    #[serde(skip)]
    pub tiers: Vec<TierReport>,
    /// Per compute unit in use.
    #[serde(skip)]
    pub units: Vec<UnitReport>,
    /// Every decode-token latency, in order.
    #[serde(skip)]
    pub token_latencies_ns: Vec<u64>,
    /// Routing selections per `[layer][expert]` (layer-major; every routed step).
    #[serde(skip)]
    pub expert_selections: Vec<u64>,
    /// Decode expert uses per format computed, most bits first.
    #[serde(skip)]
    pub format_uses: Vec<(crate::quant::WeightFormat, u64)>,
    /// The decode events sampled for output quality, in event order.
    #[serde(skip)]
    pub quality_samples: Vec<crate::quality::QualitySample>,
}

/// Traffic on one link.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LinkReport {
    /// Source tier.
    pub from: String,
    /// Destination tier.
    pub to: String,
    /// Hops carried.
    pub transfers: u64,
    /// Bytes carried.
    pub bytes: u64,
    /// Channel-nanoseconds busy.
    pub busy_channel_ns: u64,
    /// Busy share of its channels over the makespan.
    pub utilisation: f64,
}

/// Work of one compute unit.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UnitReport {
    /// Unit name.
    pub unit: String,
    /// The tier it reads weights from.
    pub tier: String,
    /// Time busy (computing or routing), both phases.
    pub busy_ns: u64,
    /// Busy share of the makespan.
    pub utilisation: f64,
    /// Expert kernels it ran in place (0 for the primary unit, whose kernels are counted by
    /// the breakdowns).
    pub in_place_kernels: u64,
}

/// Traffic and hits per tier.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TierReport {
    /// Tier name.
    pub tier: String,
    /// Decode expert uses served from this tier: hits for the compute tier, loads for the others.
    pub decode_uses_served: u64,
    /// Share of all decode expert uses.
    pub share: f64,
    /// Bytes read from it (transfers out, and weights read by compute).
    pub bytes_read: u64,
    /// Bytes written to it (transfers in).
    pub bytes_written: u64,
    /// Energy of those bytes.
    pub energy_pj: f64,
    /// Bytes of routed-expert copies it stores (the compute tier: its cache capacity).
    pub expert_storage_bytes: u64,
    /// Time its readers asked for more than its read bandwidth and were slowed.
    pub contended_ns: u64,
}
