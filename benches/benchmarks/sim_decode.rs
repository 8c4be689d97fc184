//! Discrete-event simulation throughput: engine events per second on one core, for the
//! Mixtral-8x7B-shaped system of `experiments/mixtral-4090-offload.toml` (32 layers, 8 experts,
//! top-2, per-layer LRU caches of 4 experts, no prefetch; 4 requests of 32 prompt and 256
//! generated tokens from the `mixtral-like` generator). The trace and the setup are built once,
//! outside the timed loop; the loop runs the whole simulation, report included.

use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use moesim::experiment::Experiment;
use moesim::sim::{SimSetup, SimTrace};

fn load(file: &str, edit: impl Fn(&mut moesim::sim::SimOptions)) -> (SimSetup, SimTrace) {
    load_with(file, edit, |_| {})
}

/// As [`load`], after `spec_edit` changes the experiment file's spec (sweep removed, shorter
/// trace).
fn load_with(
    file: &str,
    edit: impl Fn(&mut moesim::sim::SimOptions),
    spec_edit: impl Fn(&mut moesim::experiment::ExperimentSpec),
) -> (SimSetup, SimTrace) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut spec: moesim::experiment::ExperimentSpec = toml::from_str(&text).unwrap();
    spec_edit(&mut spec);
    let mut exp = Experiment::from_spec(spec, file, root.join("experiments").as_path()).unwrap();
    edit(&mut exp.options);
    let trace = exp.build_trace().unwrap();
    let setup = SimSetup::new(
        &exp.profile,
        &exp.model,
        exp.options.clone(),
        &trace.popularity(),
        None,
    )
    .unwrap();
    (setup, trace)
}

fn sim_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("sim_decode");
    g.sample_size(20);
    type Edit = fn(&mut moesim::sim::SimOptions);
    let variants: [(&str, Edit); 3] = [
        ("standard-lru", |_| {}),
        ("memory-aware-lru", |o| {
            o.router = moesim::router::RouterKind::MemoryAware {
                lambda: 1.0,
                hot_bonus: 1.0,
                evict_penalty: 0.0,
                warmup_rate: None,
                gate: moesim::router::GateWeights::Renormalized,
            }
        }),
        ("standard-lru-oracle-prefetch", |o| {
            o.prefetch = moesim::sim::prefetch::PrefetchKind::Oracle {}
        }),
    ];
    for (name, edit) in variants {
        let (setup, trace) = load("experiments/mixtral-4090-offload.toml", edit);
        bench(&mut g, name, setup, trace);
    }
    // Link contention and cold weights (calibrated-host figures): kernels rescheduled whenever
    // the links go busy or idle.
    let (mut setup, trace) = load("experiments/mixtral-4090-offload.toml", |_| {});
    setup.expert_slowdown_while_transferring = [0.15; 6];
    setup.expert_slowdown_after_load = [0.09; 6];
    bench(&mut g, "standard-lru-contention", setup, trace);
    g.finish();

    // Placement (issue 19): Qwen3-30B-A3B Q4_K on the 16 GB desktop of
    // `experiments/n-cpu-moe.toml`, 1 request of 32 prompt and 128 generated tokens.
    let mut g = c.benchmark_group("sim_placement");
    g.sample_size(10);
    let variants: [(&str, Edit); 4] = [
        ("in-place", |o| {
            o.placement = toml::from_str("mode = \"in-place\"").unwrap()
        }),
        ("layers-24", |o| {
            o.placement = toml::from_str("mode = \"layers\"\nin_place_layers = 24").unwrap()
        }),
        ("hot-set", |o| {
            o.placement = toml::from_str("mode = \"hot-set\"").unwrap()
        }),
        ("per-miss", |o| {
            o.placement = toml::from_str("mode = \"per-miss\"").unwrap()
        }),
    ];
    for (name, edit) in variants {
        let (setup, trace) = load_with("experiments/n-cpu-moe.toml", edit, |spec| {
            spec.sweep = None;
            spec.trace.requests = Some(1);
            spec.trace.prefill_tokens = Some(32);
            spec.trace.decode_tokens = Some(128);
        });
        bench_named(&mut g, "qwen3-30b-4060ti", name, setup, trace);
    }
    // The LRU hot set on the DDR4 desktop, whose DRAM the CPU's expert reads and the copies
    // share (every kernel and hop joins and leaves the tier's share).
    let (setup, trace) = load_with(
        "experiments/n-cpu-moe.toml",
        |o| o.placement = toml::from_str("mode = \"hot-set\"").unwrap(),
        |spec| {
            spec.sweep = None;
            spec.hardware.profile = "pc-rtx3060-12gb-ddr4".into();
            spec.trace.requests = Some(1);
            spec.trace.prefill_tokens = Some(32);
            spec.trace.decode_tokens = Some(128);
        },
    );
    assert!(
        setup
            .tiers
            .iter()
            .any(|t| t.shared_read_bandwidth_bytes_per_s.is_some()),
        "the DDR4 desktop's DRAM is shared"
    );
    bench_named(
        &mut g,
        "qwen3-30b-3060-ddr4",
        "hot-set-shared-dram",
        setup,
        trace,
    );
    g.finish();

    // Batches (issue 21): the Mixtral system of `experiments/mixtral-4090-offload.toml` with 16
    // requests of 32 prompt and 128 generated tokens served 16 at a time (each decode step
    // routes 16 tokens and loads their union once); with the KV cache at a 1,024-token prior
    // context; and with three drafts per verification step.
    let mut g = c.benchmark_group("sim_batch");
    g.sample_size(10);
    let batched = |spec: &mut moesim::experiment::ExperimentSpec, serving: &str| {
        spec.trace.requests = Some(16);
        spec.trace.prefill_tokens = Some(32);
        spec.trace.decode_tokens = Some(128);
        spec.serving = toml::from_str(serving).unwrap();
    };
    let variants: [(&str, &str); 3] = [
        ("batch-16", "max_batch = 16"),
        (
            "batch-16-kv",
            "max_batch = 16\n[kv]\nmax_context_tokens = 2048\nprior_context_tokens = 1024",
        ),
        (
            "batch-16-drafts-3",
            "max_batch = 16\n[speculative]\ndrafts = 3\nacceptance = 0.7\ndraft = { kind = \"mtp\", step_ns = 200000 }",
        ),
    ];
    for (name, serving) in variants {
        let (setup, trace) = load_with(
            "experiments/mixtral-4090-offload.toml",
            |_| {},
            |spec| batched(spec, serving),
        );
        bench(&mut g, name, setup, trace);
    }
    g.finish();
}

fn bench(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    setup: SimSetup,
    trace: SimTrace,
) {
    bench_named(g, "mixtral-4090-offload", name, setup, trace)
}

fn bench_named(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    system: &str,
    name: &str,
    setup: SimSetup,
    trace: SimTrace,
) {
    {
        let events = moesim::sim::run(&setup, &trace).unwrap().0.events;
        g.throughput(Throughput::Elements(events));
        g.bench_with_input(
            BenchmarkId::new(system, name),
            &(setup, trace),
            |b, (s, t)| b.iter(|| moesim::sim::run(s, t)),
        );
    }
}

criterion_group!(benches, sim_decode);
