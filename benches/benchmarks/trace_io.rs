//! Trace import and statistics throughput, in memory (no file I/O), on one core.
//!
//! Input: 1,000,032 records of generic JSONL in the shape of the Mixtral decode trace
//! (`{"dataset", "problem_id", "layer", "experts", "gating_probs", "token_idx"}`, grouped by
//! (request, layer), 20 requests x 32 layers x 1563 tokens), generated here from a fixed seed.

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use moesim::trace::import::ImportOptions;
use moesim::trace::import::jsonl::import_bytes;
use moesim::trace::stats::stats_of_reader;

pub fn generic_jsonl(requests: u32, layers: u32, tokens: u32) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity((requests * layers * tokens) as usize * 150);
    for r in 0..requests {
        for l in 0..layers {
            for t in 0..tokens {
                let a = next() % 8;
                let b = (a + 1 + next() % 7) % 8;
                let w = 0.5 + (next() % 1_000_000) as f64 / 2e6;
                out.extend_from_slice(
                    format!(
                        "{{\"dataset\": \"gsm8k\", \"problem_id\": {r}, \"layer\": {l}, \"experts\": [{a}, {b}], \
                         \"gating_probs\": [{w:?}, {:?}], \"token_idx\": {t}}}\n",
                        1.0 - w
                    )
                    .as_bytes(),
                );
            }
        }
    }
    out
}

fn maps() -> Vec<(String, String)> {
    [
        ("request", "problem_id"),
        ("layer", "layer"),
        ("position", "token_idx"),
        ("experts", "experts"),
        ("weights", "gating_probs"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

fn trace_io(c: &mut Criterion) {
    let (requests, layers, tokens) = (20, 32, 1563);
    let n = (requests * layers * tokens) as u64;
    let input = generic_jsonl(requests, layers, tokens);
    let options = ImportOptions {
        experts: Some(8),
        top_k: Some(2),
        layers: Some(32),
        model: None,
    };
    let native = import_bytes(&input, &maps(), &options, false)
        .unwrap()
        .bytes
        .unwrap();

    let mut g = c.benchmark_group("trace_io");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.bench_function("import_jsonl", |b| {
        b.iter_batched(
            || (),
            |_| import_bytes(&input, &maps(), &options, false).unwrap(),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("import_jsonl_with_stats", |b| {
        b.iter_batched(
            || (),
            |_| import_bytes(&input, &maps(), &options, true).unwrap(),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("native_read_stats", |b| {
        b.iter(|| stats_of_reader("bench", &native[..]).unwrap())
    });
    g.finish();
}

criterion_group!(benches, trace_io);
