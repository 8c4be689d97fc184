//! Routing plus cache update throughput: (token, layer) steps per second on one core, for the
//! standard and the memory-aware router with per-layer LRU caches of 2·top-k experts.
//!
//! Workloads from the shipped generator presets (seed 1, decode only): mixtral-like (8
//! experts, top-2; 4 requests × 4,000 tokens × 32 layers = 512,000 steps) and qwen3-like (128
//! experts, top-8; 1 request × 2,000 tokens × 48 layers = 96,000 steps). Each step routes one
//! token at one layer, computes the quality metrics against standard routing and serves the
//! selection from the cache. The per-trace preparation shared by every job of a sweep (logit
//! scales, the standard decisions for the metrics, the standard route streams) is measured on
//! its own as `plan`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use moesim::cache::PolicyKind;
use moesim::cache::replay::{BetweenRequests, Capacity, Scope};
use moesim::router::replay::{RouteJob, RouteOptions, RoutePlan, RouteWorkload, run_job};
use moesim::router::{GateWeights, RouterKind};
use moesim::trace::generate::{GeneratedEvent, Generator, load_spec};

fn workload(preset: &str, requests: u32, tokens: u32) -> RouteWorkload {
    let mut spec = load_spec(preset).unwrap();
    spec.prefill_tokens = 0;
    spec.decode_tokens = tokens;
    let g = Generator::new(&spec, 1);
    let mut w = RouteWorkload::new(&spec.meta(1, requests));
    let mut ev = GeneratedEvent::default();
    for r in 0..requests {
        let mut events = g.request(r);
        while events.next_event(&mut ev) {
            w.push(&ev.record);
        }
    }
    w
}

fn route_replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_replay");
    g.sample_size(10);
    for (preset, requests, tokens) in [("mixtral-like", 4, 4000), ("qwen3-like", 1, 2000)] {
        let w = workload(preset, requests, tokens);
        g.throughput(Throughput::Elements(w.heads.len() as u64));
        let capacity = Capacity::Experts(2.0 * w.top_k as f64);
        let opts = RouteOptions {
            scope: Scope::PerLayer,
            between: BetweenRequests::Reset,
            expert_bytes: 1,
            gate: GateWeights::Renormalized,
        };
        let plan = RoutePlan::new(&w, opts.scope, opts.between, false);
        g.bench_function(BenchmarkId::new(preset, "plan"), |b| {
            b.iter(|| RoutePlan::new(&w, opts.scope, opts.between, false))
        });
        let routers = [
            RouterKind::Standard {},
            RouterKind::MemoryAware {
                lambda: 1.0,
                hot_bonus: 1.0,
                evict_penalty: 0.0,
                warmup_rate: None,
                gate: GateWeights::Renormalized,
            },
        ];
        for router in routers {
            let job = RouteJob {
                router: router.clone(),
                policy: PolicyKind::Lru {},
                capacity,
            };
            g.bench_with_input(BenchmarkId::new(preset, router.name()), &job, |b, job| {
                b.iter(|| run_job(&w, &plan, job, opts))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, route_replay);
