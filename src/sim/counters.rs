//! The run's counters (time per phase and kind, hits, bytes, energy, prefetch outcomes) and
//! the [`SimReport`] made from them at the end.

use super::process::Sim;
use super::report::{LinkReport, SimReport, TierReport};
use crate::quant::WeightFormat;
use crate::stats::quantile;

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Breakdown {
    pub compute: u64,
    pub routing: u64,
    pub stall: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub decode: Breakdown,
    pub prefill: Breakdown,
    pub expert_uses: u64,
    pub hits: u64,
    pub prefetch_hits: u64,
    pub misses: u64,
    pub misses_on_predicted_steps: u64,
    pub prefill_lookups: u64,
    pub prefill_hits: u64,
    /// Decode expert uses computed in place.
    pub in_place_uses: u64,
    /// Prefill lookups computed in place.
    pub prefill_in_place: u64,
    /// Per phase (prefill, decode): bytes delivered, transfer and weight-read energy, MACs;
    /// charged to the phase running when they happen.
    pub bytes_loaded: [u64; 2],
    pub energy_transfer_pj: [f64; 2],
    pub energy_weight_read_pj: [f64; 2],
    pub macs: [f64; 2],
    /// Energy of the in-place unit's MACs, per phase.
    pub in_place_mac_pj: [f64; 2],
    pub prefetch_issued: u64,
    pub prefetch_useful: u64,
    pub prefetch_wrong: u64,
    pub prefetch_cancelled: u64,
    pub prefetch_wasted_bytes: u64,
    pub link_transfers: Vec<u64>,
    pub link_bytes: Vec<u64>,
    pub tier_read: Vec<u64>,
    pub tier_written: Vec<u64>,
    pub tier_served: Vec<u64>,
    pub token_latencies: Vec<u64>,
    pub ttfts: Vec<u64>,
    pub prefill_time: u64,
    pub precision_switches: u64,
    pub low_precision_loads: u64,
    /// Decode expert uses per format computed.
    pub format_uses: Vec<(WeightFormat, u64)>,
    /// Time of steps that carried decode tokens.
    pub decode_wall_ns: u64,
    /// Steps that carried decode tokens, and the decoding requests they served.
    pub decode_steps: u64,
    pub decode_step_requests: u64,
    /// Decode layer steps, the experts of their unions and the (token, expert) uses.
    pub decode_layer_steps: u64,
    pub union_experts: u64,
    pub union_token_uses: u64,
    /// Speculative decoding: drafts proposed and accepted; steps with every draft proposed
    /// and the tokens they emitted.
    pub drafted: u64,
    pub accepted: u64,
    pub full_verify_steps: u64,
    pub full_verify_tokens: u64,
    /// KV cache: the most bytes live at once, attention time, the smallest expert caches.
    pub kv_peak_bytes: u64,
    pub attention_ns: u64,
    pub cache_min_bytes: Option<u64>,
}

impl Sim<'_> {
    pub(super) fn report(&mut self) -> SimReport {
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
                    + c.in_place_mac_pj[p]
                    + static_pj_per_ns * phase_time[p] as f64
            })
            .collect();
        let energy_mac_pj = (c.macs[0] + c.macs[1]) * s.energy_pj_per_mac
            + c.in_place_mac_pj[0]
            + c.in_place_mac_pj[1];
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
                let busy = self.transfers.busy_channel_ns(i, makespan) as u64;
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
                contended_ns: self.transfers.share.contended_ns(i),
            })
            .collect();
        let quality = self.quality.summary();
        let primary_busy =
            c.decode.compute + c.decode.routing + c.prefill.compute + c.prefill.routing;
        let ip = &self.in_place;
        let mut units = vec![super::report::UnitReport {
            unit: s.primary_unit.clone(),
            tier: s.tiers[s.compute_tier].name.clone(),
            busy_ns: primary_busy,
            utilisation: ratio(primary_busy, makespan),
            in_place_kernels: 0,
        }];
        if let Some(u) = &s.in_place {
            units.push(super::report::UnitReport {
                unit: u.unit.clone(),
                tier: s.tiers[u.tier].name.clone(),
                busy_ns: ip.busy_ns,
                utilisation: ratio(ip.busy_ns, makespan),
                in_place_kernels: ip.kernels,
            });
        }
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
            in_place_uses: c.in_place_uses,
            prefill_in_place: c.prefill_in_place,
            activation_bytes: ip.activation_bytes,
            primary_busy_ns: primary_busy,
            in_place_busy_ns: ip.busy_ns,
            in_place_utilisation: if s.in_place.is_some() {
                ratio(ip.busy_ns, makespan)
            } else {
                0.0
            },
            aggregate_decode_tokens_per_s: per_s(decode_tokens, c.decode_wall_ns),
            batch_mean: ratio(c.decode_step_requests, c.decode_steps),
            union_experts_mean: ratio(c.union_experts, c.decode_layer_steps),
            reuse_factor: ratio(c.union_token_uses, c.union_experts),
            verify_tokens_per_step: ratio(c.full_verify_tokens, c.full_verify_steps),
            draft_acceptance: ratio(c.accepted, c.drafted),
            kv_peak_bytes: c.kv_peak_bytes,
            attention_ns: c.attention_ns,
            expert_cache_min_bytes: c
                .cache_min_bytes
                .unwrap_or(s.cache_bytes * s.n_caches as u64),
            tier_contended_ns: (0..s.tiers.len())
                .map(|t| self.transfers.share.contended_ns(t))
                .sum(),
            quality,
            links,
            tiers,
            units,
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
