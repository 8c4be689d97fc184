//! Routers (issue 5): exact equivalences (λ = 0 is standard, a huge λ is the hard mask, EMA with
//! β = γ = 0 is standard), the monotone trade-off of the memory-aware router on every shipped
//! generated preset, and `moesim route` on generated and top-k-only traces.

use moesim::cache::PolicyKind;
use moesim::cache::replay::{BetweenRequests, Capacity, Scope};
use moesim::router::replay::{RouteJob, RouteOptions, RouteWorkload, run_all};
use moesim::router::{GateWeights, Residency, RouteInput, RouterKind, Selection, top_k_by};
use moesim::trace::generate::{GeneratedEvent, Generator, PRESETS, load_spec};
use proptest::prelude::*;

use crate::util::{assert_bad_input, moesim, scratch};

struct Resident {
    tiers: Vec<u8>,
    room: bool,
}

impl Resident {
    fn new(n: usize, mask_bits: u64, room: bool) -> Resident {
        let tiers = (0..n)
            .map(|i| {
                if mask_bits >> (i % 64) & 1 == 1 {
                    0
                } else {
                    Residency::NOT_RESIDENT
                }
            })
            .collect();
        Resident { tiers, room }
    }
}

fn route(kind: &RouterKind, logits: &[f32], k: usize, residency: &Resident) -> Selection {
    let scales = vec![1.7f32; 4];
    let mut router = kind.build(4, logits.len() as u32, &scales, GateWeights::Renormalized);
    let mut out = Selection::default();
    let input = RouteInput {
        layer: 2,
        logits,
        top_k: k,
        previous_layer: None,
    };
    router.route(
        &input,
        &Residency::from_tiers(&residency.tiers, residency.room),
        &mut out,
    );
    out
}

fn memory_aware(lambda: f64, evict_penalty: f64) -> RouterKind {
    RouterKind::MemoryAware {
        lambda,
        hot_bonus: 1.0,
        evict_penalty,
        warmup_rate: None,
        gate: GateWeights::Renormalized,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn lambda_zero_equals_standard(
        logits in prop::collection::vec(-8.0f32..8.0, 8..64),
        mask_bits in any::<u64>(),
        room in any::<bool>(),
        k in 1usize..8,
    ) {
        let n = logits.len();
        let r = Resident::new(n, mask_bits, room);
        let std = route(&RouterKind::Standard {}, &logits, k, &r);
        prop_assert_eq!(route(&memory_aware(0.0, 0.5), &logits, k, &r), std.clone());
        let ema = RouterKind::Ema { alpha: 1.0, beta: 0.0, gamma: 0.0, decay: 0.9 };
        prop_assert_eq!(route(&ema, &logits, k, &r), std.clone());
        prop_assert_eq!(route(&RouterKind::CrossLayer { lambda: 0.0 }, &logits, k, &r), std);
    }

    #[test]
    fn top_k_matches_a_full_sort(
        scores in prop::collection::vec(prop_oneof![8 => (-4i32..4).prop_map(|x| x as f32), 1 => Just(f32::NEG_INFINITY), 1 => Just(f32::NAN)], 0..64),
        k in 0usize..10,
    ) {
        let mut reference: Vec<u16> = (0..scores.len() as u16).filter(|&i| scores[i as usize].is_finite()).collect();
        // Stable sort by descending score keeps the lower index first among ties.
        reference.sort_by(|&a, &b| scores[b as usize].partial_cmp(&scores[a as usize]).unwrap());
        reference.truncate(k);
        let mut out = Vec::new();
        top_k_by(&scores, k, &mut out);
        prop_assert_eq!(out, reference);
    }

    #[test]
    fn huge_lambda_equals_hard_mask(
        logits in prop::collection::vec(-8.0f32..8.0, 8..64),
        mask_bits in any::<u64>(),
        room in any::<bool>(),
        penalty in 0.0f64..2.0,
        k in 1usize..8,
    ) {
        let n = logits.len();
        let r = Resident::new(n, mask_bits, room);
        let hard = route(&RouterKind::HardMask {}, &logits, k, &r);
        prop_assert_eq!(route(&memory_aware(1e6, penalty), &logits, k, &r), hard);
    }
}

fn workload(preset: &str, seed: u64, requests: u32, tokens: u32) -> RouteWorkload {
    let mut spec = load_spec(preset).unwrap();
    spec.prefill_tokens = 0;
    spec.decode_tokens = tokens;
    let meta = spec.meta(seed, requests);
    let g = Generator::new(&spec, seed);
    let mut w = RouteWorkload::new(&meta);
    let mut ev = GeneratedEvent::default();
    for r in 0..requests {
        let mut events = g.request(r);
        while events.next_event(&mut ev) {
            w.push(&ev.record);
        }
    }
    w
}

/// From λ = 0 to 0.5 to 1 to 2, the mean over 5 seeds of the hit rate does not decrease and the
/// mean gate mass retained does not increase, on every shipped generated preset (LRU per-layer
/// caches of twice top-k experts).
#[test]
fn memory_aware_trade_off_is_monotone_on_every_preset() {
    let lambdas = [0.0, 0.5, 1.0, 2.0];
    for (preset, _) in PRESETS {
        let spec = load_spec(preset).unwrap();
        let capacity = Capacity::Experts(2.0 * spec.top_k as f64);
        let tokens = if spec.experts > 16 { 24 } else { 64 };
        let mut hit = [0.0f64; 4];
        let mut mass = [0.0f64; 4];
        for seed in 1..=5u64 {
            let w = workload(preset, seed, 2, tokens);
            let jobs: Vec<RouteJob> = lambdas
                .iter()
                .map(|&l| RouteJob {
                    router: memory_aware(l, 0.0),
                    policy: PolicyKind::Lru {},
                    capacity,
                })
                .collect();
            let opts = RouteOptions {
                scope: Scope::PerLayer,
                between: BetweenRequests::Reset,
                expert_bytes: 1,
                gate: GateWeights::Renormalized,
            };
            let results = run_all(&w, &jobs, opts).unwrap();
            for (i, r) in results.iter().enumerate() {
                hit[i] += r.hit_rate / 5.0;
                mass[i] += r.quality.gate_mass_retained / 5.0;
            }
        }
        for i in 1..4 {
            assert!(
                hit[i] >= hit[i - 1],
                "{preset}: hit rate fell from λ={} to λ={}: {hit:?}",
                lambdas[i - 1],
                lambdas[i]
            );
            assert!(
                mass[i] <= mass[i - 1],
                "{preset}: gate mass rose from λ={} to λ={}: {mass:?}",
                lambdas[i - 1],
                lambdas[i]
            );
        }
        assert!(
            hit[3] > hit[0],
            "{preset}: λ=2 should raise the hit rate: {hit:?}"
        );
    }
}

#[test]
fn route_prints_the_seed_table_on_a_generated_trace() {
    let dir = scratch("route_generated");
    let trace = dir.join("t.jsonl");
    let run = moesim([
        "trace",
        "generate",
        "--preset",
        "mixtral-like",
        "--requests",
        "2",
        "--tokens",
        "64",
        "--out",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0);
    let csv = dir.join("route.csv");
    let run = moesim([
        "route",
        trace.to_str().unwrap(),
        "--router",
        "standard,memory-aware,ema,max-rank,hard-mask,cross-layer",
        "--bonus",
        "0,0.5,1",
        "--policy",
        "lru,belady",
        "--capacity",
        "3,4",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for needle in [
        "seed §6.3 shape, measured",
        "expert utilisation",
        "cache hit rate",
        "gate mass retained",
        "reference: Belady on the standard route sequence",
    ] {
        assert!(
            run.stdout.contains(needle),
            "`{needle}` missing:\n{}",
            run.stdout
        );
    }
    assert!(
        !run.stdout.contains("restricted"),
        "a generated trace has full logits"
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let header = text.lines().next().unwrap();
    for col in [
        "router",
        "bonus",
        "policy",
        "capacity_experts",
        "hit_rate",
        "gate_mass_retained",
        "topk_agreement",
        "kl",
        "utilisation",
        "bytes_loaded",
    ] {
        assert!(
            header.split(',').any(|h| h == col),
            "column {col} missing: {header}"
        );
    }
}

#[test]
fn route_on_a_top_k_only_trace_states_the_restriction() {
    let dir = scratch("route_restricted");
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/traces/Mario928-speculative-moe");
    let trace = dir.join("gsm8k.jsonl");
    let run = moesim([
        "trace",
        "import",
        "--format",
        "jsonl",
        "--map",
        "request=problem_id",
        "--map",
        "layer=layer",
        "--map",
        "position=token_idx",
        "--map",
        "experts=experts",
        "--map",
        "weights=gating_probs",
        "--experts",
        "8",
        "--top-k",
        "2",
        shared.join("gsm8k_2_routing.jsonl").to_str().unwrap(),
        "--out",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = moesim([
        "route",
        trace.to_str().unwrap(),
        "--capacity",
        "3",
        "--bonus",
        "0,1",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["restricted"] == true)
    );
    // With two candidates for two slots no router can change the set (it may reorder it, which
    // changes the order of cache updates slightly): agreement and retained mass stay exactly 1.
    for r in rows.as_array().unwrap() {
        assert_eq!(r["topk_agreement"].as_f64().unwrap(), 1.0, "{r}");
        assert_eq!(r["gate_mass_retained"].as_f64().unwrap(), 1.0, "{r}");
    }
    let text = moesim(["route", trace.to_str().unwrap(), "--capacity", "3"]);
    assert!(
        text.stdout
            .contains("re-routing is restricted to the recorded top-2 candidates"),
        "{}",
        text.stdout
    );
}

#[test]
fn belady_with_a_memory_aware_router_is_refused() {
    let w = workload("micro-moe", 1, 1, 8);
    let job = RouteJob {
        router: memory_aware(1.0, 0.0),
        policy: PolicyKind::Belady {},
        capacity: Capacity::Experts(2.0),
    };
    let opts = RouteOptions {
        scope: Scope::PerLayer,
        between: BetweenRequests::Reset,
        expert_bytes: 1,
        gate: GateWeights::Renormalized,
    };
    let e = run_all(&w, &[job], opts).unwrap_err().to_string();
    assert!(e.contains("standard router only"), "{e}");
}

#[test]
fn route_output_is_identical_at_any_thread_count() {
    let dir = scratch("route_threads");
    let trace = dir.join("t.jsonl");
    let run = moesim([
        "trace",
        "generate",
        "--preset",
        "qwen3-like",
        "--requests",
        "2",
        "--tokens",
        "48",
        "--out",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut outputs = Vec::new();
    for threads in ["1", "2"] {
        let csv = dir.join(format!("t{threads}.csv"));
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_moesim"))
            .args([
                "route",
                trace.to_str().unwrap(),
                "--router",
                "standard,memory-aware,ema,cross-layer",
            ])
            .args([
                "--policy",
                "lru,arc,belady",
                "--capacity",
                "8,16",
                "--out",
                csv.to_str().unwrap(),
            ])
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        outputs.push((std::fs::read(&csv).unwrap(), o.stdout));
    }
    assert_eq!(outputs[0], outputs[1]);
}

#[test]
fn route_rejects_bad_arguments_without_partial_output() {
    let dir = scratch("route_bad");
    let trace = dir.join("t.jsonl");
    let run = moesim([
        "trace",
        "generate",
        "--preset",
        "mixtral-like",
        "--requests",
        "1",
        "--tokens",
        "4",
        "--out",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let t = trace.to_str().unwrap();
    let csv = dir.join("out.csv");
    let c = csv.to_str().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (&["--router", "psychic"], "unknown router `psychic`"),
        (&["--bonus=-1"], "--bonus -1"),
        (&["--ema-decay", "1"], "--ema-decay 1"),
        (&["--warmup-rate", "0"], "--warmup-rate 0"),
        (&["--router", "max-rank", "--max-rank-keep", "3"], "top-2"),
        (
            &["--router", "max-rank", "--max-rank-limit", "1"],
            "--max-rank-limit 1",
        ),
        (&["--capacity", "0"], "capacities must be > 0"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["route", t, "--out", c];
        if !extra.contains(&"--capacity") {
            args.extend(["--capacity", "3"]);
        }
        args.extend_from_slice(extra);
        crate::util::assert_bad_input(&moesim(&args), &[needle]);
        assert!(!csv.exists(), "a failed run left {c}");
    }
    // clap's own errors are one line too.
    crate::util::assert_bad_input(&moesim(["route"]), &["--capacity", "<TRACE>"]);
    crate::util::assert_bad_input(
        &moesim(["route", t, "--capacity", "three"]),
        &["'three'", "--capacity"],
    );
    crate::util::assert_bad_input(
        &moesim(["route", t, "--capacity", "3", "--bonus", "-1"]),
        &["'-1'"],
    );
    let broken = dir.join("broken.jsonl");
    let mut text = std::fs::read_to_string(&trace).unwrap();
    text.push_str("{\"request\": 0, \"layer\": oops}\n");
    std::fs::write(&broken, text).unwrap();
    let run = moesim([
        "route",
        broken.to_str().unwrap(),
        "--capacity",
        "3",
        "--out",
        c,
    ]);
    crate::util::assert_bad_input(&run, &["broken.jsonl"]);
    assert!(!csv.exists(), "a failed run left {c}");
}

/// The published systems' router variants (issue 20): a bonus on the gate probabilities and a
/// frequency-derived logit penalty; with no bonus both route as the standard router, and a full
/// bonus keeps more of the route in the cache.
#[test]
fn probability_bonus_and_frequency_penalty_route_from_the_command_line() {
    let dir = scratch("route_variants");
    let trace = dir.join("t.jsonl");
    let run = moesim([
        "trace",
        "generate",
        "--preset",
        "mixtral-like",
        "--requests",
        "2",
        "--tokens",
        "64",
        "--out",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0);
    let run = moesim([
        "route",
        trace.to_str().unwrap(),
        "--router",
        "standard,prob-bonus,frequency-penalty",
        "--bonus",
        "0,1",
        "--capacity",
        "3",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let hit = |router: &str, bonus: f64| {
        rows.iter()
            .find(|r| r["router"] == router && (router == "standard" || r["bonus"] == bonus))
            .unwrap_or_else(|| panic!("{router} {bonus} in {rows:?}"))["hit_rate"]
            .as_f64()
            .unwrap()
    };
    let standard = hit("standard", 0.0);
    assert_eq!(hit("prob-bonus", 0.0), standard);
    assert_eq!(hit("frequency-penalty", 0.0), standard);
    assert!(hit("prob-bonus", 1.0) > standard);
    assert!(hit("frequency-penalty", 1.0) > standard);
    // A probability bonus above 1 is refused by the flag that set it.
    assert_bad_input(
        &moesim([
            "route",
            trace.to_str().unwrap(),
            "--router",
            "prob-bonus",
            "--bonus",
            "2",
            "--capacity",
            "3",
        ]),
        &["--bonus", "at most 1"],
    );
}
