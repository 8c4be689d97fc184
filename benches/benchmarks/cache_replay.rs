//! Cache replay throughput: a 10-million-lookup trace through per-layer caches of 8, 32 and
//! 128 experts (out of 256 per layer), one policy and capacity per benchmark, on one core.
//!
//! The workload: 32 layers x 256 experts, top-8, 39,072 tokens in 38 requests of 1,024 tokens
//! (10,002,432 lookups). Each token keeps each expert of its previous selection with
//! probability 1/2 and draws the rest from a skewed popularity (rank r chosen with weight
//! 1 / (r + 8)), from a fixed seed. Atomic semantics, caches reset between requests. The
//! next-use oracle of Belady is computed once, outside the timed loop.

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use moesim::cache::PolicyKind;
use moesim::cache::replay::{
    BetweenRequests, Capacity, ReplayOptions, Scope, Semantics, Stream, Workload, replay,
};

pub fn workload(layers: u32, experts: u32, top_k: u32, tokens: u32, request_len: u32) -> Workload {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let weights: Vec<f64> = (0..experts).map(|r| 1.0 / (r as f64 + 8.0)).collect();
    let total: f64 = weights.iter().sum();
    let cdf: Vec<f64> = weights
        .iter()
        .scan(0.0, |acc, w| {
            *acc += w / total;
            Some(*acc)
        })
        .collect();
    let mut streams = Vec::new();
    for l in 0..layers {
        let mut s = Stream {
            layer: Some(l),
            ..Stream::default()
        };
        let mut prev: Vec<u32> = Vec::new();
        for t in 0..tokens {
            if t % request_len == 0 {
                s.request_start.push(s.event_end.len() as u32);
                prev.clear();
            }
            let mut sel: Vec<u32> = prev.iter().copied().filter(|_| next() % 2 == 0).collect();
            while sel.len() < top_k as usize {
                let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
                let e = cdf.partition_point(|&c| c < u).min(experts as usize - 1) as u32;
                // Rotate the ranking per layer so layers prefer different experts.
                let e = (e + l * 37) % experts;
                if !sel.contains(&e) {
                    sel.push(e);
                }
            }
            s.objects.extend_from_slice(&sel);
            s.event_end.push(s.objects.len() as u32);
            prev = sel;
        }
        streams.push(s);
    }
    Workload {
        scope: Scope::PerLayer,
        layers,
        experts,
        n_objects: experts,
        sizes: Arc::new(vec![1; experts as usize]),
        expert_bytes: 1,
        streams,
    }
}

fn cache_replay(c: &mut Criterion) {
    let w = workload(32, 256, 8, 39_072, 1_024);
    let opts = ReplayOptions {
        semantics: Semantics::Atomic,
        between: BetweenRequests::Reset,
        warm: None,
    };
    let policies: Vec<PolicyKind> = ["lru", "fifo", "arc", "belady", "lfu", "sieve"]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    let oracles = w.oracles(&policies, opts.between);
    let mut g = c.benchmark_group("cache_replay");
    g.throughput(Throughput::Elements(w.accesses()));
    g.sample_size(10);
    for p in &policies {
        for cap in [8.0, 32.0, 128.0] {
            g.bench_with_input(
                BenchmarkId::new(p.to_string(), cap as u32),
                &cap,
                |b, &cap| b.iter(|| replay(&w, &oracles, p, Capacity::Experts(cap), opts).unwrap()),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, cache_replay);
