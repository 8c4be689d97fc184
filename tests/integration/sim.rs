//! The discrete-event simulation (issue 6): closed forms on toy systems, monotonicity in link
//! bandwidth, the oracle prefetch bound, determinism, and `moesim run` end to end.

use moesim::cache::PolicyKind;
use moesim::cache::replay::{BetweenRequests, Scope};
use moesim::hardware::Replacement;
use moesim::router::replay::RouteWorkload;
use moesim::router::{GateWeights, RouterKind};
use moesim::sim::arrival::ArrivalKind;
use moesim::sim::prefetch::PrefetchKind;
use moesim::sim::setup::{SimLink, SimTier};
use moesim::sim::{CacheCapacity, OnWrongPrefetch, SimOptions, SimReport, SimSetup, SimTrace};
use moesim::trace::generate::{GeneratedEvent, Generator, load_spec};
use proptest::prelude::*;

use crate::util::{assert_bad_input, moesim, scratch};

/// A generated trace of the micro-moe shape (8 layers, 16 experts, top-2).
pub(crate) fn trace(seed: u64, requests: u32, prefill: u32, decode: u32) -> SimTrace {
    let mut spec = load_spec("micro-moe").unwrap();
    spec.prefill_tokens = prefill;
    spec.decode_tokens = decode;
    let g = Generator::new(&spec, seed);
    let mut w = RouteWorkload::new(&spec.meta(seed, requests));
    let mut ev = GeneratedEvent::default();
    for r in 0..requests {
        let mut events = g.request(r);
        while events.next_event(&mut ev) {
            w.push(&ev.record);
        }
    }
    SimTrace::new(w, Vec::new()).unwrap()
}

/// A toy device: tier 0 computes, experts live in tier `n_tiers - 1`, links chain the tiers
/// (`links[i]` copies tier i + 1 to tier i).
#[derive(Debug, Clone)]
pub(crate) struct Toy {
    pub(crate) links: Vec<SimLink>,
    pub(crate) expert_bytes: u64,
    pub(crate) compute_ns: u64,
    pub(crate) dense_ns: u64,
    pub(crate) gate_ns: u64,
    pub(crate) head_ns: u64,
    pub(crate) cache_experts_per_layer: u64,
    pub(crate) all_resident: bool,
    pub(crate) policy: PolicyKind,
    pub(crate) scope: Scope,
    pub(crate) prefetch: PrefetchKind,
    pub(crate) slowdown: f64,
    pub(crate) after_load: f64,
    /// Arithmetic time per token of an expert at the peak (`None`: as `compute_ns`).
    pub(crate) mac_ns: Option<u64>,
    pub(crate) dense_mac_ns: Option<u64>,
    pub(crate) launch_ns: u64,
    /// Time to resume after a stall.
    pub(crate) wake_ns: u64,
    /// Time to hand a transfer to idle links.
    pub(crate) issue_ns: u64,
    /// A second unit computing experts in place, on the home tier.
    pub(crate) in_place: Option<moesim::sim::InPlace>,
    /// Which `(layer, expert)` are resident in tier 0 (overrides `all_resident`).
    pub(crate) resident: Option<fn(u32, u32) -> bool>,
    /// Prompt tokens per prefill step.
    pub(crate) chunk: Option<u32>,
    /// Per tier: read bandwidth shared by its readers (missing or `None`: not shared).
    pub(crate) shared_read_bandwidth: Vec<Option<f64>>,
    /// Batching, KV cache and speculative decoding.
    pub(crate) serving: moesim::sim::serving::Serving,
    /// LM-head arithmetic per token (`None`: as `head_ns`).
    pub(crate) head_mac_ns: Option<u64>,
    /// The unit's last-level cache for expert weights.
    pub(crate) weights_cache: Option<moesim::sim::setup::SimWeightsCache>,
}

impl Toy {
    pub(crate) fn new() -> Toy {
        Toy {
            links: vec![link(1, 0, 500.0, 64, 1e9, 1)],
            expert_bytes: 1000,
            compute_ns: 0,
            dense_ns: 0,
            gate_ns: 0,
            head_ns: 0,
            cache_experts_per_layer: 0,
            all_resident: false,
            policy: PolicyKind::Lru {},
            scope: Scope::PerLayer,
            prefetch: PrefetchKind::None {},
            slowdown: 0.0,
            after_load: 0.0,
            mac_ns: None,
            dense_mac_ns: None,
            launch_ns: 0,
            wake_ns: 0,
            issue_ns: 0,
            in_place: None,
            resident: None,
            chunk: None,
            shared_read_bandwidth: Vec::new(),
            serving: Default::default(),
            head_mac_ns: None,
            weights_cache: None,
        }
    }

    pub(crate) fn setup(&self, t: &SimTrace) -> SimSetup {
        let (l, e) = (t.workload.layers, t.workload.experts);
        let n = (l * e) as usize;
        let n_tiers = self.links.len() + 1;
        let home = n_tiers - 1;
        let mut paths = vec![Vec::new(); n_tiers];
        for (tier, path) in paths.iter_mut().enumerate().skip(1) {
            // tier -> tier-1 -> ... -> 0
            *path = (0..tier as u16).rev().collect();
        }
        let per_layer = self.scope == Scope::PerLayer;
        let n_caches = if per_layer { l } else { 1 };
        let cache_bytes =
            self.cache_experts_per_layer * self.expert_bytes * if per_layer { 1 } else { l as u64 };
        SimSetup {
            layers: l,
            experts: e,
            top_k: t.workload.top_k,
            hidden: 64,
            expert_format: vec![moesim::quant::format::WeightFormat::Q4K; n],
            expert_bytes: vec![self.expert_bytes; n],
            expert_compute_ns: vec![self.compute_ns; n],
            expert_mac_ns: vec![self.mac_ns.unwrap_or(self.compute_ns); n],
            expert_macs: vec![1; n],
            placement: (0..n as u32)
                .map(|g| {
                    let resident = match self.resident {
                        Some(f) => f(g / e, g % e),
                        None => self.all_resident,
                    };
                    if resident { 0 } else { home as u8 }
                })
                .collect(),
            shared: None,
            dense_ns: self.dense_ns,
            dense_mac_ns: self.dense_mac_ns.unwrap_or(self.dense_ns),
            gate_mac_ns: self.gate_ns,
            launch_ns: self.launch_ns,
            wake_ns: self.wake_ns,
            issue_ns: self.issue_ns,
            dense_macs: 1,
            dense_bytes: 1,
            gate_ns: self.gate_ns,
            gate_macs: 1,
            op_ns: 0.0,
            head_ns: self.head_ns,
            head_mac_ns: self.head_mac_ns.unwrap_or(self.head_ns),
            head_macs: 1,
            head_bytes: 1,
            tiers: (0..n_tiers)
                .map(|i| SimTier {
                    name: format!("t{i}"),
                    energy_pj_per_byte: 1.0,
                    shared_read_bandwidth_bytes_per_s: self
                        .shared_read_bandwidth
                        .get(i)
                        .copied()
                        .flatten(),
                })
                .collect(),
            links: self.links.clone(),
            paths,
            compute_tier: 0,
            home_tier: home,
            energy_pj_per_mac: 1.0,
            static_power_w: 0.0,
            cache_bytes,
            n_caches,
            compute_budget_bytes: u64::MAX,
            precision: None,
            storage_bytes: vec![0; n_tiers],
            extra_copy_bytes: 0,
            expert_slowdown_while_transferring: [self.slowdown; 6],
            expert_slowdown_after_load: [self.after_load; 6],
            weights_cache: self.weights_cache.clone(),
            primary_unit: "toy".into(),
            in_place: self.in_place.clone(),
            layer_overhead_ns: 0,
            token_overhead_ns: 0,
            serving: self.serving.clone(),
            options: SimOptions {
                format: moesim::quant::format::WeightFormat::Q4K,
                scope: self.scope,
                capacity: CacheCapacity::Bytes(cache_bytes * n_caches as u64),
                policy: self.policy.clone(),
                between: BetweenRequests::Reset,
                router: RouterKind::Standard {},
                gate: GateWeights::Renormalized,
                prefetch: self.prefetch.clone(),
                prefetch_count: None,
                on_wrong_prefetch: OnWrongPrefetch::Cancel,
                arrival: ArrivalKind::AllAtOnce {},
                timeline: false,
                seed: 1,
                precision: Default::default(),
                placement: Default::default(),
                prefill_chunk_tokens: self.chunk,
                serving: Default::default(),
            },
        }
    }
}

pub(crate) fn link(
    from: usize,
    to: usize,
    latency_ns: f64,
    granularity_bytes: u64,
    bandwidth: f64,
    channels: u32,
) -> SimLink {
    SimLink {
        from,
        to,
        latency_ns,
        granularity_bytes,
        bandwidth_bytes_per_s: bandwidth,
        channels,
        request_bytes: None,
        time_distribution: None,
    }
}

pub(crate) fn sim(toy: &Toy, t: &SimTrace) -> SimReport {
    moesim::sim::run(&toy.setup(t), t).unwrap().0
}

/// Decode time is fully accounted: compute + routing + stall = the sum of token latencies.
fn assert_breakdown(r: &SimReport) {
    let total: u64 = r.token_latencies_ns.iter().sum();
    assert_eq!(
        r.decode_compute_ns + r.decode_routing_ns + r.decode_stall_ns,
        total,
        "decode breakdown"
    );
}

#[test]
fn every_expert_resident_costs_the_sum_of_compute_times() {
    let t = trace(3, 1, 5, 20);
    let toy = Toy {
        all_resident: true,
        compute_ns: 700,
        dense_ns: 1100,
        gate_ns: 30,
        head_ns: 5000,
        ..Toy::new()
    };
    let r = sim(&toy, &t);
    let (l, k) = (8u64, 2u64);
    let token = l * (1100 + 30 + k * 700) + 5000;
    assert_eq!(r.token_latencies_ns.len(), 20);
    assert!(
        r.token_latencies_ns.iter().all(|&x| x == token),
        "{:?} vs {token}",
        &r.token_latencies_ns[..3]
    );
    // Prefill: 5 tokens through every layer, each routed expert computed per token routed to it.
    let prefill = l * (5 * (1100 + 30) + 5 * k * 700) + 5000;
    assert_eq!(r.ttft_p50_ns, prefill);
    assert_eq!(r.makespan_ns, prefill + 20 * token);
    assert_eq!((r.misses, r.bytes_loaded, r.decode_stall_ns), (0, 0, 0));
    assert_breakdown(&r);
}

#[test]
fn without_a_cache_every_use_costs_latency_plus_bytes_over_bandwidth() {
    let t = trace(4, 2, 0, 15);
    // 1000 B in 64 B granules = 1024 B at 1 GB/s = 1024 ns, + 500 ns latency.
    let hop = 500 + 1024;
    let toy = Toy::new();
    let r = sim(&toy, &t);
    assert!(
        r.token_latencies_ns.iter().all(|&x| x == 8 * 2 * hop),
        "{:?}",
        &r.token_latencies_ns[..3]
    );
    assert_eq!(r.misses, r.expert_uses);
    assert_eq!(r.bytes_loaded, r.expert_uses * 1000);
    assert_breakdown(&r);
    // With compute shorter than a transfer, the second load overlaps the first expert's
    // compute: a layer costs dense + gate + k transfers + one expert.
    let toy = Toy {
        compute_ns: 300,
        dense_ns: 40,
        gate_ns: 2,
        head_ns: 9,
        ..Toy::new()
    };
    let r = sim(&toy, &t);
    let token = 8 * (40 + 2 + 2 * hop + 300) + 9;
    assert!(
        r.token_latencies_ns.iter().all(|&x| x == token),
        "{:?} vs {token}",
        &r.token_latencies_ns[..3]
    );
    assert_breakdown(&r);
}

#[test]
fn one_channel_serialises_two_transfers_two_channels_overlap() {
    let t = trace(5, 1, 0, 10);
    let hop = 500 + 1024;
    let one = sim(&Toy::new(), &t);
    assert!(one.token_latencies_ns.iter().all(|&x| x == 8 * 2 * hop));
    let two = sim(
        &Toy {
            links: vec![link(1, 0, 500.0, 64, 1e9, 2)],
            ..Toy::new()
        },
        &t,
    );
    assert!(
        two.token_latencies_ns.iter().all(|&x| x == 8 * hop),
        "{:?}",
        &two.token_latencies_ns[..3]
    );
    assert!(one.links[0].utilisation > 0.999 && two.links[0].utilisation > 0.999);
}

#[test]
fn kernels_slow_down_only_while_a_link_transfers() {
    let t = trace(6, 1, 0, 12);
    let hop = 500 + 1024;
    // No transfers (every expert resident): the slowdown changes nothing.
    let resident = Toy {
        all_resident: true,
        compute_ns: 2000,
        dense_ns: 40,
        ..Toy::new()
    };
    let base = sim(&resident, &t);
    let slowed = sim(
        &Toy {
            slowdown: 0.5,
            ..resident.clone()
        },
        &t,
    );
    assert_eq!(base.token_latencies_ns, slowed.token_latencies_ns);
    // No cache, kernels longer than a transfer: per layer, the first load; then the first
    // expert's kernel runs while the second loads, at 1 / 1.5 speed for the hop's 1524 ns
    // (1016 ns of work), the remaining 984 ns at full speed; then the second expert alone.
    let toy = Toy {
        compute_ns: 2000,
        dense_ns: 40,
        gate_ns: 2,
        head_ns: 9,
        ..Toy::new()
    };
    let plain = sim(&toy, &t);
    let token = 8 * (42 + hop + 2000 + 2000) + 9;
    assert!(plain.token_latencies_ns.iter().all(|&x| x == token));
    let r = sim(
        &Toy {
            slowdown: 0.5,
            ..toy.clone()
        },
        &t,
    );
    let token = 8 * (42 + hop + hop + 984 + 2000) + 9;
    assert!(
        r.token_latencies_ns.iter().all(|&x| x == token),
        "{:?} vs {token}",
        &r.token_latencies_ns[..3]
    );
    assert_eq!(r.hits, plain.hits);
    assert_breakdown(&r);
    // The kernel time grew by the contended stretch.
    assert_eq!(
        r.decode_compute_ns - plain.decode_compute_ns,
        12 * 8 * (hop + 984 - 2000)
    );
}

#[test]
fn the_first_kernel_after_a_load_is_slower_or_faster_once() {
    let t = trace(7, 1, 0, 12);
    let hop = 500 + 1024;
    // Every expert resident: nothing ever arrives, nothing is cold.
    let resident = Toy {
        all_resident: true,
        compute_ns: 300,
        ..Toy::new()
    };
    assert_eq!(
        sim(&resident, &t).token_latencies_ns,
        sim(
            &Toy {
                after_load: 0.5,
                ..resident.clone()
            },
            &t
        )
        .token_latencies_ns
    );
    // No cache: every kernel runs on weights that just arrived, 450 ns instead of 300; the
    // first overlaps the second load (1524 ns) and hides, the second adds 450.
    let toy = Toy {
        compute_ns: 300,
        dense_ns: 40,
        gate_ns: 2,
        head_ns: 9,
        after_load: 0.5,
        ..Toy::new()
    };
    let r = sim(&toy, &t);
    let token = 8 * (42 + 2 * hop + 450) + 9;
    assert!(
        r.token_latencies_ns.iter().all(|&x| x == token),
        "{:?} vs {token}",
        &r.token_latencies_ns[..3]
    );
    let warm = |toy: &Toy| {
        sim(
            &Toy {
                after_load: 0.0,
                ..toy.clone()
            },
            &t,
        )
    };
    assert_eq!(
        r.decode_compute_ns - warm(&toy).decode_compute_ns,
        r.expert_uses * 150
    );
    assert_breakdown(&r);
    // A cache big enough for every expert: each is cold once, at its first use, then warm.
    let cached = Toy {
        cache_experts_per_layer: 8,
        ..toy.clone()
    };
    let r = sim(&cached, &t);
    assert_eq!(
        r.decode_compute_ns - warm(&cached).decode_compute_ns,
        r.misses * 150,
        "misses {}",
        r.misses
    );
    assert!(r.misses > 0 && r.misses < r.expert_uses);
    // A negative figure: the arrival left the weights warm, every kernel on them runs in 150 ns
    // instead of 300; the second kernel of each layer adds 150 after its load.
    let warm_arrivals = Toy {
        after_load: -0.5,
        ..toy.clone()
    };
    let r = sim(&warm_arrivals, &t);
    let token = 8 * (42 + 2 * hop + 150) + 9;
    assert!(
        r.token_latencies_ns.iter().all(|&x| x == token),
        "{:?} vs {token}",
        &r.token_latencies_ns[..3]
    );
    assert_eq!(
        warm(&warm_arrivals).decode_compute_ns - r.decode_compute_ns,
        r.expert_uses * 150
    );
    assert_breakdown(&r);
}

#[test]
fn weights_computed_recently_run_at_the_cached_rate() {
    use moesim::sim::setup::SimWeightsCache;
    let t = trace(7, 1, 0, 12);
    // A peak well above the cached rate (the roofline bounds a cached kernel too).
    let resident = Toy {
        all_resident: true,
        compute_ns: 300,
        mac_ns: Some(100),
        ..Toy::new()
    };
    let plain = sim(&resident, &t);
    let aging = |replacement, capacity_bytes: u64, lifetime_ns| {
        sim(
            &Toy {
                weights_cache: Some(SimWeightsCache {
                    capacity_bytes,
                    replacement,
                    lifetime_ns,
                    time_factor: [0.5; 6],
                    landing: Vec::new(),
                }),
                ..resident.clone()
            },
            &t,
        )
    };
    let cached_under = |replacement, capacity_bytes| aging(replacement, capacity_bytes, None);
    // The first use of each expert comes from memory; with a cache holding everything every
    // later use takes half as long.
    let distinct = {
        let mut seen = std::collections::HashSet::new();
        for r in &t.requests {
            for tok in 0..r.decode_tokens {
                for layer in 0..t.workload.layers {
                    let ev = t.decode_event(r, tok, layer);
                    let logits = t.workload.logits_of(ev);
                    let mut idx: Vec<usize> = (0..logits.len()).collect();
                    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
                    for &x in &idx[..t.workload.top_k as usize] {
                        seen.insert((layer, x));
                    }
                }
            }
        }
        seen.len() as u64
    };
    let cached = |capacity_bytes| cached_under(Replacement::Lru, capacity_bytes);
    let all = cached(u64::MAX / 2);
    assert_eq!(all.hits, plain.hits);
    assert_eq!(
        all.decode_compute_ns,
        distinct * 300 + (plain.expert_uses - distinct) * 150,
        "{distinct} distinct of {} uses",
        plain.expert_uses
    );
    assert_breakdown(&all);
    // A cache of one expert's bytes: an expert is cached only when it ran just before, which
    // top-2 over 8 layers never gives; a small cache lies in between.
    assert_eq!(cached(1000).decode_compute_ns, plain.decode_compute_ns);
    let some = cached(16 * 1000).decode_compute_ns;
    assert!(
        some < plain.decode_compute_ns && some > all.decode_compute_ns,
        "{some} vs {} and {}",
        plain.decode_compute_ns,
        all.decode_compute_ns
    );
    // Random replacement: a capacity far above the bytes fetched keeps every expert (each
    // later use at the cached time, as LRU holding everything); one of a single byte keeps
    // none (every kernel fetched since is at least an expert's bytes); between, between, and
    // the larger capacity is the faster.
    let random = |capacity_bytes| cached_under(Replacement::Random, capacity_bytes);
    let everything = random(u64::MAX / 2);
    assert_eq!(everything.decode_compute_ns, all.decode_compute_ns);
    assert_eq!(everything.hits, plain.hits);
    assert_eq!(random(1).decode_compute_ns, plain.decode_compute_ns);
    let (small, large) = (
        random(4 * 1000).decode_compute_ns,
        random(16 * 1000).decode_compute_ns,
    );
    assert!(
        plain.decode_compute_ns > small && small > large && large > all.decode_compute_ns,
        "{} > {small} > {large} > {}",
        plain.decode_compute_ns,
        all.decode_compute_ns
    );
    assert_breakdown(&random(16 * 1000));
    // A lifetime: other tenants evict with wall time too. One far longer than the run keeps
    // everything (to the rounding of each kernel's mix); one of a nanosecond keeps nothing a
    // token (~10 µs) later; between, the shorter the slower.
    let lived = |lifetime_ns: f64| {
        aging(Replacement::Random, u64::MAX / 2, Some(lifetime_ns)).decode_compute_ns
    };
    let forever = lived(1e30);
    assert!(forever.abs_diff(all.decode_compute_ns) <= plain.expert_uses);
    assert_eq!(lived(1.0), plain.decode_compute_ns);
    let (short, long) = (lived(2_000.0), lived(20_000.0));
    assert!(
        plain.decode_compute_ns > short && short > long && long > forever,
        "{} > {short} > {long} > {forever}",
        plain.decode_compute_ns
    );
}

#[test]
fn a_stalled_unit_resumes_its_wake_time_after_the_arrival() {
    let t = trace(7, 1, 0, 12);
    let hop = 500 + 1024;
    // No cache: per layer the first expert's arrival ends a stall (it resumes after the wake,
    // then computes while the second loads); the second's arrival ends another, whose wake
    // adds to the layer.
    let toy = |wake_ns| Toy {
        compute_ns: 300,
        dense_ns: 40,
        gate_ns: 2,
        head_ns: 9,
        wake_ns,
        ..Toy::new()
    };
    for wake in [0, 70] {
        let r = sim(&toy(wake), &t);
        let token = 8 * (42 + 2 * hop + 300 + wake) + 9;
        assert!(
            r.token_latencies_ns.iter().all(|&x| x == token),
            "wake {wake}: {:?} vs {token}",
            &r.token_latencies_ns[..3]
        );
        assert_eq!(
            r.decode_stall_ns,
            r.token_latencies_ns.len() as u64 * 8 * (2 * hop - 300 + wake)
        );
        assert_breakdown(&r);
    }
    // Everything resident: nothing stalls, nothing wakes.
    let resident = |wake_ns| Toy {
        all_resident: true,
        ..toy(wake_ns)
    };
    assert_eq!(
        sim(&resident(70), &t).token_latencies_ns,
        sim(&resident(0), &t).token_latencies_ns
    );
}

#[test]
fn a_link_with_a_request_limit_pays_its_latency_per_request() {
    let t = trace(7, 1, 0, 12);
    // 1000-byte experts over requests of at most 512 bytes: two requests, two latencies
    // (the bytes still round to 64-byte units); a limit of 1000 bytes or more, one.
    let toy = |request_bytes| Toy {
        links: vec![SimLink {
            request_bytes,
            ..link(1, 0, 500.0, 64, 1e9, 1)
        }],
        compute_ns: 300,
        dense_ns: 40,
        gate_ns: 2,
        head_ns: 9,
        ..Toy::new()
    };
    for (request_bytes, hop) in [
        (None, 500 + 1024),
        (Some(1000), 500 + 1024),
        (Some(512), 2 * 500 + 1024),
        (Some(333), 4 * 500 + 1024),
    ] {
        let r = sim(&toy(request_bytes), &t);
        let token = 8 * (42 + 2 * hop + 300) + 9;
        assert!(
            r.token_latencies_ns.iter().all(|&x| x == token),
            "{request_bytes:?}: {:?} vs {token}",
            &r.token_latencies_ns[..3]
        );
        assert_breakdown(&r);
    }
}

#[test]
fn a_transfer_issued_to_idle_links_holds_the_unit_for_its_issue_time() {
    let t = trace(7, 1, 0, 12);
    let hop = 500 + 1024;
    // No cache: per layer two misses; the first finds the link idle (one issue), the second
    // finds the first in flight (none). The issue runs while the first expert loads.
    let toy = |issue_ns| Toy {
        compute_ns: 300,
        dense_ns: 40,
        gate_ns: 2,
        head_ns: 9,
        issue_ns,
        ..Toy::new()
    };
    let plain = sim(&toy(0), &t);
    let tokens = plain.token_latencies_ns.len() as u64;
    assert_eq!(plain.token_latencies_ns[0], 8 * (42 + 2 * hop + 300) + 9);
    // Shorter than the loads: the same latencies, the issue taken from the stall.
    let short = sim(&toy(70), &t);
    assert_eq!(short.token_latencies_ns, plain.token_latencies_ns);
    assert_eq!(
        short.decode_routing_ns,
        plain.decode_routing_ns + tokens * 8 * 70
    );
    assert_eq!(
        short.decode_stall_ns,
        plain.decode_stall_ns - tokens * 8 * 70
    );
    assert_breakdown(&short);
    // Longer than both loads: each layer's experts wait for it.
    let long = sim(&toy(3000), &t);
    let token = 8 * (42 + 3000 + 2 * 300) + 9;
    assert!(
        long.token_latencies_ns.iter().all(|&x| x == token),
        "{:?} vs {token}",
        &long.token_latencies_ns[..3]
    );
    assert_eq!(long.decode_stall_ns, 0);
    assert_breakdown(&long);
    // Nothing transferred: nothing issued.
    let resident = |issue_ns| Toy {
        all_resident: true,
        ..toy(issue_ns)
    };
    assert_eq!(
        sim(&resident(3000), &t).token_latencies_ns,
        sim(&resident(0), &t).token_latencies_ns
    );
}

#[test]
fn a_transfer_into_a_recently_computed_buffer_takes_its_landing_factor() {
    use moesim::sim::setup::SimWeightsCache;
    let t = trace(7, 1, 0, 12);
    let hop = 500 + 1024;
    let toy = |landing: Vec<(u64, f64)>| Toy {
        cache_experts_per_layer: 2,
        compute_ns: 300,
        weights_cache: Some(SimWeightsCache {
            capacity_bytes: 0,
            replacement: Replacement::Lru,
            lifetime_ns: None,
            time_factor: [1.0; 6],
            landing,
        }),
        ..Toy::new()
    };
    let plain = sim(&toy(Vec::new()), &t);
    let busy = |r: &moesim::sim::SimReport| r.links[0].busy_channel_ns;
    assert_eq!(busy(&plain), plain.misses * hop);
    // Every victim lands at half: the 16 first loads (2 per layer, nothing evicted yet) land
    // in fresh buffers and take the link's time.
    let half = sim(&toy(vec![(u64::MAX / 2, 0.5)]), &t);
    assert_eq!(half.misses, plain.misses);
    assert!(half.misses > 16);
    assert_eq!(busy(&half), 16 * hop + (half.misses - 16) * hop.div_ceil(2));
    assert!(half.decode_stall_ns < plain.decode_stall_ns);
    assert_breakdown(&half);
    // Only a buffer computed on within 1 byte is warm: an evicted expert never is.
    assert_eq!(
        sim(&toy(vec![(1, 0.5)]), &t).token_latencies_ns,
        plain.token_latencies_ns
    );
    // Under random replacement the nearest point's factor counts as likely as the victim's
    // weights are still cached: a cache far larger than everything fetched keeps them (every
    // victim lands at half, to a nanosecond of rounding per transfer), one of a byte keeps
    // nothing (the link's time).
    let random = |capacity_bytes| Toy {
        weights_cache: Some(SimWeightsCache {
            capacity_bytes,
            replacement: Replacement::Random,
            lifetime_ns: None,
            time_factor: [1.0; 6],
            landing: vec![(1, 0.5)],
        }),
        ..toy(Vec::new())
    };
    let kept = sim(&random(u64::MAX / 4), &t);
    assert_eq!(kept.misses, half.misses);
    let (lo, hi) = (busy(&half), busy(&half) + half.misses);
    assert!(
        (lo..=hi).contains(&busy(&kept)),
        "{} not in {lo}..={hi}",
        busy(&kept)
    );
    let gone = sim(&random(1), &t);
    assert_eq!(busy(&gone), busy(&plain));
    assert_eq!(gone.token_latencies_ns, plain.token_latencies_ns);
    // Between points the factor is linear in the distance.
    let points = [(1000, 0.5), (3000, 0.9)];
    assert!((moesim::hardware::landing_factor(&points, Some(2000)) - 0.7).abs() < 1e-12);
    assert_eq!(moesim::hardware::landing_factor(&points, Some(500)), 0.5);
    assert_eq!(moesim::hardware::landing_factor(&points, Some(3001)), 1.0);
    assert_eq!(moesim::hardware::landing_factor(&points, None), 1.0);
}

fn toy_strategy() -> impl Strategy<Value = Toy> {
    (
        1usize..=2,
        prop::collection::vec(
            (
                0.0f64..5000.0,
                prop::sample::select(vec![1u64, 64, 512, 4096]),
                1e8f64..4e9,
                1u32..=3,
            ),
            2,
        ),
        100u64..20_000,
        0u64..3000,
        0u64..2000,
        0u64..=6,
        prop::sample::select(vec!["lru", "fifo", "lfu", "sieve"]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(hops, link_params, bytes, compute, dense, cache, policy, shared, oracle)| {
                let links = (0..hops)
                    .map(|i| {
                        let (lat, g, bw, ch) = link_params[i];
                        link(i + 1, i, lat, g, bw, ch)
                    })
                    .collect();
                Toy {
                    links,
                    expert_bytes: bytes,
                    compute_ns: compute,
                    dense_ns: dense,
                    gate_ns: 7,
                    head_ns: 100,
                    cache_experts_per_layer: cache,
                    policy: policy.parse().unwrap(),
                    scope: if shared {
                        Scope::Shared
                    } else {
                        Scope::PerLayer
                    },
                    prefetch: if oracle {
                        PrefetchKind::Oracle {}
                    } else {
                        PrefetchKind::None {}
                    },
                    ..Toy::new()
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn doubling_a_links_bandwidth_never_increases_any_token_latency(toy in toy_strategy(), seed in 0u64..1000) {
        let t = trace(seed, 2, 3, 12);
        let base = sim(&toy, &t);
        assert_breakdown(&base);
        for i in 0..toy.links.len() {
            let mut faster = toy.clone();
            faster.links[i].bandwidth_bytes_per_s *= 2.0;
            let r = sim(&faster, &t);
            for (j, (a, b)) in r.token_latencies_ns.iter().zip(&base.token_latencies_ns).enumerate() {
                prop_assert!(a <= b, "token {j}: {a} ns > {b} ns after doubling link {i}");
            }
            prop_assert!(r.ttft_p95_ns <= base.ttft_p95_ns && r.makespan_ns <= base.makespan_ns);
        }
    }

    #[test]
    fn oracle_prefetch_never_loses_to_no_prefetch(toy in toy_strategy(), seed in 0u64..1000) {
        let t = trace(seed, 2, 3, 12);
        let none = Toy { prefetch: PrefetchKind::None {}, scope: Scope::PerLayer, ..toy.clone() };
        let oracle = Toy { prefetch: PrefetchKind::Oracle {}, ..none.clone() };
        let a = sim(&none, &t);
        let b = sim(&oracle, &t);
        assert_breakdown(&b);
        for (j, (x, y)) in b.token_latencies_ns.iter().zip(&a.token_latencies_ns).enumerate() {
            prop_assert!(x <= y, "token {j}: oracle {x} ns > none {y} ns");
        }
        prop_assert_eq!(b.prefetch_wrong, 0);
        prop_assert!(b.misses <= a.misses && b.hits >= a.hits, "misses {} vs {}, hits {} vs {}", b.misses, a.misses, b.hits, a.hits);
    }

    #[test]
    fn link_contention_slows_tokens_by_at_most_its_factor_and_keeps_hits(toy in toy_strategy(), seed in 0u64..1000, s in 0.0f64..2.0, c in 0.0f64..1.0) {
        let t = trace(seed, 2, 3, 12);
        let toy = Toy { prefetch: PrefetchKind::None {}, ..toy };
        let base = sim(&toy, &t);
        let r = sim(&Toy { slowdown: s, after_load: c, ..toy.clone() }, &t);
        // Every kernel at most (1 + c)(1 + s) times as long.
        let s = (1.0 + c) * (1.0 + s) - 1.0;
        assert_breakdown(&r);
        prop_assert_eq!((r.hits, r.misses, r.bytes_loaded), (base.hits, base.misses, base.bytes_loaded));
        for (j, (a, b)) in r.token_latencies_ns.iter().zip(&base.token_latencies_ns).enumerate() {
            // Never faster; at most every kernel nanosecond stretched by 1 + s (+1 ns rounding
            // per kernel).
            let bound = *b as f64 + s * base.decode_compute_ns as f64 + 1e3;
            prop_assert!(a >= b && (*a as f64) <= bound, "token {j}: {a} ns vs {b} ns without contention");
        }
        prop_assert!(r.decode_compute_ns as f64 <= (1.0 + s) * base.decode_compute_ns as f64 + 1e3);
    }
}

#[test]
fn oracle_prefetch_beats_no_prefetch_when_links_are_the_bottleneck() {
    let t = trace(9, 1, 0, 40);
    let toy = Toy {
        compute_ns: 1500,
        dense_ns: 2000,
        cache_experts_per_layer: 2,
        ..Toy::new()
    };
    let none = sim(&toy, &t);
    let oracle = sim(
        &Toy {
            prefetch: PrefetchKind::Oracle {},
            ..toy.clone()
        },
        &t,
    );
    assert!(
        oracle.token_latency_mean_ns < 0.9 * none.token_latency_mean_ns,
        "{} vs {}",
        oracle.token_latency_mean_ns,
        none.token_latency_mean_ns
    );
    assert_eq!(oracle.prefetch_precision, 1.0);
    assert!(oracle.prefetch_issued > 0);
}

pub(crate) fn write_experiment(
    dir: &std::path::Path,
    name: &str,
    body: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("schema_version = 1\nname = \"{name}\"\n{body}"),
    )
    .unwrap();
    path
}

const SMALL: &str = r#"
[hardware]
profile = "esp32-p4"
[model]
spec = "micro-moe"
format = "q2_k"
[trace]
generator = "micro-moe"
requests = 2
prefill_tokens = 4
decode_tokens = 12
[cache]
capacity_experts = 3
[output]
timeline = true
"#;

#[test]
fn quickstart_runs_and_its_timeline_is_chrome_trace_json() {
    let dir = scratch("sim_quickstart");
    let out = dir.join("report");
    let run = moesim(["run", "--out", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("decode throughput") && run.stdout.contains("tokens/s"),
        "{}",
        run.stdout
    );
    for f in [
        "config.resolved.toml",
        "metrics.csv",
        "links.csv",
        "tiers.csv",
        "summary.md",
        "timeline.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("timeline.json")).unwrap()).unwrap();
    let events = v["traceEvents"].as_array().unwrap();
    let spans: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert!(spans.len() > 1000, "{} spans", spans.len());
    for e in &spans {
        assert!(
            e["ts"].as_f64().unwrap() >= 0.0 && e["dur"].as_f64().unwrap() > 0.0,
            "{e}"
        );
        assert!(
            e["pid"].is_u64() && e["tid"].is_u64() && e["name"].is_string(),
            "{e}"
        );
    }
    assert!(
        spans.iter().any(|e| e["cat"] == "transfer") && spans.iter().any(|e| e["cat"] == "compute")
    );
    assert!(
        events
            .iter()
            .any(|e| e["ph"] == "M" && e["name"] == "thread_name")
    );
    // The resolved config runs as an experiment and reproduces the metrics.
    let again = dir.join("again");
    let run = moesim([
        "run",
        out.join("config.resolved.toml").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        std::fs::read(out.join("metrics.csv")).unwrap(),
        std::fs::read(again.join("metrics.csv")).unwrap()
    );
}

#[test]
fn the_same_seed_gives_byte_identical_outputs() {
    let dir = scratch("sim_determinism");
    let exp = write_experiment(&dir, "det", &format!("seed = 7\n{SMALL}"));
    let mut outputs = Vec::new();
    for i in 0..2 {
        let out = dir.join(format!("out{i}"));
        let run = moesim([
            "run",
            exp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let mut files = Vec::new();
        for f in [
            "config.resolved.toml",
            "metrics.csv",
            "links.csv",
            "tiers.csv",
            "summary.md",
            "timeline.json",
        ] {
            files.push(std::fs::read(out.join(f)).unwrap());
        }
        outputs.push((files, run.stdout));
    }
    assert_eq!(outputs[0], outputs[1]);
    let other = write_experiment(&dir, "det2", &format!("seed = 8\n{SMALL}"));
    let run = moesim([
        "run",
        other.to_str().unwrap(),
        "--out",
        dir.join("out2").to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_ne!(
        std::fs::read(dir.join("out2/metrics.csv")).unwrap(),
        outputs[0].0[1],
        "another seed, another trace"
    );
}

#[test]
fn prefetchers_and_routers_run_end_to_end() {
    let dir = scratch("sim_prefetch");
    for (name, extra) in [
        ("spec", "[prefetch]\nkind = \"speculative\"\n"),
        ("hist", "[prefetch]\nkind = \"history\"\ndecay = 0.8\n"),
        ("oracle", "[prefetch]\nkind = \"oracle\"\n"),
        ("ma", "[router]\nkind = \"memory-aware\"\nlambda = 1.0\n"),
        (
            "poisson",
            "[scenario]\narrival = { kind = \"poisson\", rate_per_s = 0.5 }\n",
        ),
        (
            "closed",
            "[scenario]\narrival = { kind = \"closed-loop\", think_time_ns = 1000000 }\n",
        ),
    ] {
        let exp = write_experiment(&dir, name, &format!("{SMALL}{extra}"));
        let out = dir.join(name);
        let run = moesim([
            "run",
            exp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        let m: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert!(
            m["decode_tokens_per_s"].as_f64().unwrap() > 0.0,
            "{name}: {m}"
        );
        let t = m["decode_compute_ns"].as_u64().unwrap()
            + m["decode_routing_ns"].as_u64().unwrap()
            + m["decode_stall_ns"].as_u64().unwrap();
        let mean = m["token_latency_mean_ns"].as_f64().unwrap();
        assert!(
            (t as f64 / 24.0 - mean).abs() < 1.0,
            "{name}: breakdown {t} vs mean {mean}"
        );
        match name {
            "spec" | "hist" => {
                let p = m["prefetch_precision"].as_f64().unwrap();
                assert!(
                    m["prefetch_issued"].as_u64().unwrap() > 0 && p > 0.0 && p <= 1.0,
                    "{name}: {m}"
                );
            }
            "oracle" => assert_eq!(m["prefetch_precision"].as_f64().unwrap(), 1.0),
            "ma" => assert!(m["gate_mass_retained"].as_f64().unwrap() < 1.0, "{m}"),
            _ => {}
        }
    }
}

#[test]
fn bad_experiments_fail_on_one_line_without_output() {
    let dir = scratch("sim_bad");
    let out = dir.join("never");
    let cases: [(&str, &str, &[&str]); 10] = [
        (
            "unknown_key",
            &format!("{SMALL}[extra]\nx = 1\n"),
            &["unknown field `extra`"],
        ),
        (
            "bad_profile",
            &SMALL.replace("esp32-p4", "esp33"),
            &["hardware.profile", "esp33"],
        ),
        (
            "shape",
            &SMALL.replace("generator = \"micro-moe\"", "generator = \"mixtral-like\""),
            &["trace", "32 MoE layers"],
        ),
        (
            "both",
            &SMALL.replace("[trace]\n", "[trace]\nfile = \"x.jsonl\"\n"),
            &["exactly one of `generator`, `file` and `import`"],
        ),
        (
            "too_big",
            &SMALL.replace("capacity_experts = 3", "capacity_experts = 16"),
            &["cache", "has"],
        ),
        (
            "belady",
            &format!("{SMALL}[router]\nkind = \"hard-mask\"\n")
                .replace("[cache]\n", "[cache]\npolicy = \"belady\"\n"),
            &["cache.policy", "standard router"],
        ),
        (
            "policy",
            &SMALL.replace("[cache]\n", "[cache]\npolicy = \"mru\"\n"),
            &["cache.policy", "unknown policy"],
        ),
        (
            "poisson",
            &format!("{SMALL}[scenario]\narrival = {{ kind = \"poisson\", rate_per_s = 0 }}\n"),
            &["scenario.arrival", "rate_per_s"],
        ),
        ("format", &SMALL.replace("q2_k", "f32"), &["model.format"]),
        (
            "generated_only",
            &SMALL.replace("generator = \"micro-moe\"", "file = \"x.jsonl\""),
            &["trace.requests", "generated trace only", "trace.file"],
        ),
    ];
    for (name, body, needles) in cases {
        let exp = write_experiment(&dir, name, body);
        let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert_bad_input(&run, needles);
        assert!(
            !out.exists(),
            "{name}: a failed run wrote {}",
            out.display()
        );
    }
    // Speculative prefetch needs hidden states, which trace files do not carry.
    let trace = dir.join("t.jsonl");
    let run = moesim([
        "trace",
        "generate",
        "--preset",
        "micro-moe",
        "--requests",
        "1",
        "--tokens",
        "4",
        "--out",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let body = SMALL.replace(
        "generator = \"micro-moe\"\nrequests = 2\nprefill_tokens = 4\ndecode_tokens = 12",
        "file = \"t.jsonl\"",
    ) + "[prefetch]\nkind = \"speculative\"\n";
    let exp = write_experiment(&dir, "spec_file", &body);
    assert_bad_input(
        &moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]),
        &["prefetch.kind", "hidden state"],
    );
    // The same file without speculative prefetch runs (paths are relative to the experiment).
    let exp = write_experiment(
        &dir,
        "file_ok",
        &body.replace("kind = \"speculative\"", "kind = \"history\""),
    );
    let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// A run whose simulated time passes the end of the u64 clock is an error, not a wrapped time
/// or an "event scheduled in the past" panic. Validation bounds every single figure, so this
/// takes a setup built by hand with steps of 2^62 ns.
#[test]
fn a_run_past_the_end_of_the_clock_is_an_error() {
    let t = trace(1, 1, 2, 4);
    let mut toy = Toy::new();
    toy.dense_ns = 1 << 62;
    toy.all_resident = true;
    let e = moesim::sim::run(&toy.setup(&t), &t).unwrap_err();
    assert!(e.contains("ran past the end of the clock"), "{e}");
    toy.dense_ns = 1 << 20;
    assert!(moesim::sim::run(&toy.setup(&t), &t).is_ok());
}
