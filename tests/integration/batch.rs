//! More than one token per step (issue 21): continuous batching, the KV cache and speculative
//! decoding. Closed forms on toy systems (a union of disjoint selections costs b loads, of
//! identical ones one; attention's read time at context c; the expected tokens of a
//! verification step), properties (a batch of identical requests never loads more than one
//! request; more cache never lowers LRU's hit rate), and bad input through `moesim run`.

use moesim::moe::kv::{KvFormat, KvShape};
use moesim::router::replay::{Head, RouteWorkload};
use moesim::sim::SimTrace;
use moesim::sim::serving::{Kv, KvBudget, PrefillMode, Serving, Speculative};
use moesim::trace::Phase;
use proptest::prelude::*;

use crate::sim::{Toy, sim, trace};
use crate::util::{assert_bad_input, moesim, scratch};

/// A trace from explicit selections: `requests[r][t][layer]` is decode token t's selection at
/// `layer` (best first); every request has the same layer count and no prompt unless
/// `prompt[r][layer][t]` gives one.
fn handmade(
    layers: u32,
    experts: u32,
    k: u32,
    prompts: &[Vec<Vec<Vec<u16>>>],
    requests: &[Vec<Vec<Vec<u16>>>],
) -> SimTrace {
    let mut w = RouteWorkload {
        layers,
        experts,
        top_k: k,
        restricted: false,
        heads: Vec::new(),
        logits: Vec::new(),
    };
    let mut push = |request: u32, position: u32, layer: u32, phase: Phase, sel: &[u16]| {
        assert_eq!(sel.len(), k as usize);
        w.heads.push(Head {
            request,
            position,
            layer,
            phase,
        });
        let mut row = vec![0.0f32; experts as usize];
        for (rank, &x) in sel.iter().enumerate() {
            row[x as usize] = 10.0 - rank as f32;
        }
        w.logits.extend_from_slice(&row);
    };
    for (r, tokens) in requests.iter().enumerate() {
        let prompt = prompts.get(r).cloned().unwrap_or_default();
        let p = prompt.first().map_or(0, Vec::len) as u32;
        for (layer, per_token) in prompt.iter().enumerate() {
            for (t, sel) in per_token.iter().enumerate() {
                push(r as u32, t as u32, layer as u32, Phase::Prefill, sel);
            }
        }
        for (t, per_layer) in tokens.iter().enumerate() {
            for (layer, sel) in per_layer.iter().enumerate() {
                push(r as u32, p + t as u32, layer as u32, Phase::Decode, sel);
            }
        }
    }
    SimTrace::new(w, Vec::new()).unwrap()
}

fn batch(n: u32) -> Serving {
    Serving {
        max_batch: n,
        ..Serving::default()
    }
}

/// One hop of the toy's link: 500 ns + 1000 B in 64 B granules at 1 GB/s.
const HOP_NS: u64 = 500 + 1024;

#[test]
fn a_union_of_disjoint_selections_costs_b_loads_and_of_identical_ones_one() {
    let b = 4u16;
    // One layer of 8 experts, top-2; each request one decode token.
    let disjoint: Vec<_> = (0..b).map(|i| vec![vec![vec![2 * i, 2 * i + 1]]]).collect();
    let identical: Vec<_> = (0..b).map(|_| vec![vec![vec![3, 5]]]).collect();
    let mut toy = Toy::new();
    toy.serving = batch(b as u32);
    let r = sim(&toy, &handmade(1, 8, 2, &[], &disjoint));
    assert_eq!(r.misses, 2 * b as u64);
    assert_eq!(r.union_experts_mean, 2.0 * b as f64);
    assert_eq!(r.reuse_factor, 1.0);
    // One channel: the loads queue; nothing else costs time.
    assert_eq!(r.makespan_ns, 2 * b as u64 * HOP_NS);
    assert_eq!(r.batch_mean, b as f64);

    let r = sim(&toy, &handmade(1, 8, 2, &[], &identical));
    assert_eq!(r.misses, 2);
    assert_eq!(r.union_experts_mean, 2.0);
    assert_eq!(r.reuse_factor, b as f64);
    assert_eq!(r.makespan_ns, 2 * HOP_NS);
    // Every request's token took the one step.
    assert_eq!(r.token_latencies_ns, vec![2 * HOP_NS; b as usize]);
    assert_eq!(
        r.aggregate_decode_tokens_per_s,
        b as f64 * 1e9 / (2 * HOP_NS) as f64
    );

    // The same requests one at a time: b steps, one load pair each (no cache).
    toy.serving = batch(1);
    let r = sim(&toy, &handmade(1, 8, 2, &[], &identical));
    assert_eq!(r.misses, 2 * b as u64);
    assert_eq!(r.makespan_ns, 2 * b as u64 * HOP_NS);
}

#[test]
fn continuous_batching_refills_a_finished_slot_at_the_next_step() {
    // Requests of 1, 3 and 2 decode tokens, two slots: step 1 serves r0 and r1; r0 leaves and
    // r2 takes its slot for steps 2 and 3. Every expert resident, each kernel 100 ns.
    let tok = |x: u16| vec![vec![x, x + 1]];
    let reqs = vec![
        vec![tok(0)],
        vec![tok(2), tok(2), tok(2)],
        vec![tok(4), tok(4)],
    ];
    let mut toy = Toy::new();
    toy.all_resident = true;
    toy.compute_ns = 100;
    toy.serving = batch(2);
    let r = sim(&toy, &handmade(1, 8, 2, &[], &reqs));
    // Every step has a union of 4 experts: 400 ns.
    assert_eq!(r.makespan_ns, 3 * 400);
    assert_eq!(r.batch_mean, 2.0);
    assert_eq!(r.union_experts_mean, 4.0);
    // Latencies in emission order: step 1 (r0, r1), step 2 (r1, r2), step 3 (r1, r2); r2
    // entered service at the end of step 1, so its first token took one step too.
    assert_eq!(r.token_latencies_ns, vec![400; 6]);
    assert_eq!(r.aggregate_decode_tokens_per_s, 6.0 * 1e9 / 1200.0);
}

#[test]
fn a_prompt_runs_alone_or_in_chunks_beside_the_decoding_requests() {
    // Two requests, each a 4-token prompt and 2 decode tokens, one layer; every expert resident
    // and costing 100 ns whatever its token count (memory-bound).
    let prompt = vec![vec![vec![0u16, 1]; 4]];
    let decode = vec![vec![vec![0u16, 1]]; 2];
    let prompts = vec![prompt.clone(), prompt];
    let reqs = vec![decode.clone(), decode];
    let mut toy = Toy::new();
    toy.all_resident = true;
    toy.compute_ns = 100;
    toy.mac_ns = Some(1);
    toy.serving = batch(2);
    let t = handmade(1, 8, 2, &prompts, &reqs);
    // Alone: prompt r0 (200), prompt r1 (200), then two decode steps of both (200 each).
    let r = sim(&toy, &t);
    assert_eq!(r.makespan_ns, 800);
    assert_eq!(r.ttft_mean_ns, (200.0 + 400.0) / 2.0);
    // r0 waited for r1's prompt before its first decode token.
    assert_eq!(r.token_latencies_ns, vec![400, 200, 200, 200]);
    // Chunked, 4 prompt tokens per step: r0's prompt, then r1's prompt beside r0's first decode
    // token, then both decode.
    toy.serving.prefill = PrefillMode::Chunked;
    toy.chunk = Some(4);
    let r = sim(&toy, &t);
    assert_eq!(r.makespan_ns, 200 * 4);
    assert_eq!(r.ttft_mean_ns, (200.0 + 400.0) / 2.0);
    assert_eq!(r.token_latencies_ns.len(), 4);
    assert_eq!(
        r.token_latencies_ns[0], 200,
        "r0's first token rode with r1's prompt"
    );
}

fn kv(shape: KvShape, prior: u64, budget: KvBudget, shared: u64, moe_layers: u32) -> Kv {
    Kv {
        shape,
        format: KvFormat::F16,
        tier: 0,
        budget,
        max_context_tokens: 1 << 40,
        prior_context_tokens: prior,
        read_bytes_per_s: 1e9,
        peak_macs_per_s: 1e15,
        moe_layers,
        reserved_bytes: 0,
        shared_budget_bytes: shared,
    }
}

fn shape() -> KvShape {
    KvShape {
        max_tokens: None,
        full_layers: 4,
        values_per_token: 512,
        macs_per_pair: 2,
        window_layers: 0,
        window_tokens: 0,
        linear_layers: 0,
        linear_state_values: 0,
    }
}

#[test]
fn attention_reads_the_context_at_the_kv_tiers_bandwidth() {
    // 4 layers x 512 values x 2 bytes = 4 KiB per token; 1 GB/s; every expert resident, free.
    let t = trace(1, 1, 0, 1);
    for c in [0u64, 1000, 100_000] {
        let mut toy = Toy::new();
        toy.all_resident = true;
        let layers = t.workload.layers;
        toy.serving.kv = Some(kv(shape(), c, KvBudget::Reserve, 0, layers));
        let r = sim(&toy, &t);
        // The token reads c earlier tokens and its own, (c + 1) x 4096 B at 1 GB/s, spread
        // evenly over the MoE layer steps.
        let bytes = (c + 1) * 4096;
        let per_layer = (bytes as f64 / layers as f64).ceil() as u64;
        assert_eq!(r.kv_peak_bytes, bytes, "context {c}");
        assert_eq!(r.attention_ns, layers as u64 * per_layer, "context {c}");
        assert_eq!(r.makespan_ns, layers as u64 * per_layer, "context {c}");
    }
}

#[test]
fn a_shrinking_expert_cache_gives_way_to_the_growing_context() {
    let t = trace(2, 1, 0, 64);
    let mut toy = Toy::new();
    toy.cache_experts_per_layer = 6;
    let layers = t.workload.layers as u64;
    let cache_total = 6 * 1000 * layers;
    let reserve = sim(&toy, &t);
    // 4 layers x 16 values x 2 bytes = 128 B per token: after its 64 tokens the context holds
    // 8,192 B of the 48,000 B the caches and the context share.
    toy.serving.kv = Some(kv(
        KvShape {
            values_per_token: 16,
            ..shape()
        },
        0,
        KvBudget::Shrink,
        cache_total,
        t.workload.layers,
    ));
    let r = sim(&toy, &t);
    let kv_end = 64 * 128;
    assert_eq!(r.kv_peak_bytes, kv_end);
    let per_cache = (cache_total - kv_end) / layers;
    assert_eq!(r.expert_cache_min_bytes, per_cache * layers);
    assert_eq!(per_cache / 1000, 4, "four experts per layer left of six");
    assert!(
        r.hit_rate < reserve.hit_rate,
        "a cache that shrank to {} B hit {} vs {}",
        r.expert_cache_min_bytes,
        r.hit_rate,
        reserve.hit_rate
    );
}

#[test]
fn a_verification_step_emits_the_geometric_sum_of_accepted_drafts() {
    let t = trace(3, 1, 0, 4000);
    for acceptance in [vec![0.6; 3], vec![0.9, 0.5, 0.2], vec![0.3; 1]] {
        let d = acceptance.len() as u32;
        let mut toy = Toy::new();
        toy.all_resident = true;
        toy.serving.speculative = Some(Speculative {
            drafts: d,
            acceptance: acceptance.clone(),
            step_launch_ns: 0,
            step_memory_ns: 0,
            step_mac_ns: 0,
        });
        let r = sim(&toy, &t);
        // Tokens per step T: P(T > j) = a_0 ... a_{j-1}; E[T] and Var[T] from those.
        let mut p = 1.0;
        let (mut mean, mut second) = (0.0, 0.0);
        for j in 0..=d as usize {
            let a = acceptance.get(j).copied();
            // T = j + 1 when positions 0..j were accepted and position j was not (or j = d).
            let pj = p * a.map_or(1.0, |a| 1.0 - a);
            mean += pj * (j + 1) as f64;
            second += pj * ((j + 1) * (j + 1)) as f64;
            p *= a.unwrap_or(1.0);
        }
        let var = second - mean * mean;
        let steps = 4000.0 / mean;
        let se = (var / steps).sqrt();
        assert!(
            (r.verify_tokens_per_step - mean).abs() < 4.0 * se,
            "{acceptance:?}: {} tokens per step, expected {mean} (se {se})",
            r.verify_tokens_per_step
        );
        let closed = {
            let mut q = 1.0;
            1.0 + acceptance
                .iter()
                .map(|a| {
                    q *= a;
                    q
                })
                .sum::<f64>()
        };
        assert!((closed - mean).abs() < 1e-12);
        assert_eq!(r.token_latencies_ns.len(), 4000, "every token emitted once");
    }
}

/// `requests` copies of request 0 of `t`, as one trace.
fn copies(t: &SimTrace, requests: u32) -> SimTrace {
    let w = &t.workload;
    let n = t.requests[0].first_event
        + (w.layers * (t.requests[0].prefill_tokens + t.requests[0].decode_tokens)) as usize;
    let mut out = RouteWorkload {
        heads: Vec::new(),
        logits: Vec::new(),
        ..w.clone()
    };
    for r in 0..requests {
        for i in 0..n {
            let mut h = w.heads[i];
            h.request = r;
            out.heads.push(h);
            out.logits.extend_from_slice(w.logits_of(i));
        }
    }
    SimTrace::new(out, Vec::new()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn a_batch_of_identical_requests_never_loads_more_than_one_request(
        seed in 0u64..1000,
        b in 2u32..7,
        cache in 0u64..8,
    ) {
        let one = trace(seed, 1, 0, 24);
        let mut toy = Toy::new();
        toy.cache_experts_per_layer = cache;
        let single = sim(&toy, &one);
        toy.serving = batch(b);
        let r = sim(&toy, &copies(&one, b));
        prop_assert!(r.misses <= single.misses, "{} vs {}", r.misses, single.misses);
        prop_assert_eq!(r.union_experts_mean, single.union_experts_mean);
        prop_assert_eq!(r.bytes_loaded, single.bytes_loaded);
    }

    #[test]
    fn more_cache_never_lowers_lrus_hit_rate_in_batches(
        seed in 0u64..1000,
        b in 1u32..9,
        small in 0u64..7,
        extra in 1u64..4,
    ) {
        let t = trace(seed, 8, 0, 16);
        let mut toy = Toy::new();
        toy.serving = batch(b);
        toy.cache_experts_per_layer = small;
        let a = sim(&toy, &t);
        toy.cache_experts_per_layer = small + extra;
        let z = sim(&toy, &t);
        prop_assert!(z.hits >= a.hits, "{} experts: {} hits, {}: {}", small, a.hits, small + extra, z.hits);
    }
}

#[test]
fn bad_serving_settings_fail_on_one_line_naming_the_key() {
    let dir = scratch("batch_bad_input");
    let base = r#"
schema_version = 1
name = "bad"
[hardware]
profile = "pc-rtx4090-pcie4"
[model]
spec = "mixtral-8x7b"
format = "q4_k"
[trace]
generator = "mixtral-like"
requests = 1
prefill_tokens = 4
decode_tokens = 4
[cache]
capacity_experts = 4
"#;
    let cases: &[(&str, &[&str])] = &[
        ("[serving]\nmax_batch = 0\n", &["serving.max_batch"]),
        (
            "[serving.kv]\nmax_context_tokens = 100000\n",
            &["serving.kv.max_context_tokens", "32768"],
        ),
        (
            "[serving.kv]\nmax_context_tokens = 4\n",
            &["serving.kv.max_context_tokens", "request 0"],
        ),
        (
            "[serving.kv]\ntier = \"nowhere\"\n",
            &["serving.kv.tier", "no tier `nowhere`"],
        ),
        (
            "[serving]\nmax_batch = 64\n[serving.kv]\nmax_context_tokens = 32768\n",
            &["serving.max_batch"],
        ),
        (
            "[serving.speculative]\ndrafts = 2\nacceptance = [0.5]\ndraft = { kind = \"mtp\", step_ns = 1000 }\n",
            &["serving.speculative.acceptance"],
        ),
        (
            "[serving]\nmax_batch = 2\n[prefetch]\nkind = \"history\"\n",
            &["prefetch.kind"],
        ),
        ("[serving]\nmax_batchh = 2\n", &["max_batchh"]),
    ];
    for (i, (extra, needles)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.toml"));
        std::fs::write(&path, format!("{base}{extra}")).unwrap();
        let out = dir.join(format!("out{i}"));
        let run = moesim([
            "run",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_bad_input(&run, needles);
        assert!(!out.exists(), "no partial output");
    }
    // A KV tier that cannot hold one request's maximum context: the ESP32-P4's PSRAM and
    // Mixtral's 32k context (4.3 GB in f16).
    let path = dir.join("tier.toml");
    std::fs::write(
        &path,
        base.replace("pc-rtx4090-pcie4", "esp32-p4") + "[serving.kv]\n",
    )
    .unwrap();
    let out = dir.join("out-tier");
    let run = moesim([
        "run",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_bad_input(
        &run,
        &[
            "serving.kv.tier",
            "cannot hold one request's maximum context",
        ],
    );
    assert!(!out.exists());
}

#[test]
fn tokens_of_one_request_share_more_experts_than_tokens_of_different_requests() {
    // The generator's hidden state drifts slowly within a request and is drawn afresh for each
    // request: four consecutive tokens of one request (a verification step of three drafts,
    // none accepted, so every step routes the next four) select fewer distinct experts per layer
    // than one token of each of four requests.
    let t = trace(7, 4, 0, 64);
    let mut toy = Toy::new();
    toy.all_resident = true;
    toy.serving.speculative = Some(Speculative {
        drafts: 3,
        acceptance: vec![0.0; 3],
        step_launch_ns: 0,
        step_memory_ns: 0,
        step_mac_ns: 0,
    });
    let within = sim(&toy, &t).union_experts_mean;
    toy.serving = batch(4);
    let across = sim(&toy, &t).union_experts_mean;
    assert!(
        within < across,
        "4 tokens of one request: {within} experts per layer; 1 token of 4 requests: {across}"
    );
}

#[test]
fn moesim_run_prints_what_batches_kv_and_drafts_did() {
    let dir = scratch("batch_run_summary");
    let path = dir.join("serving.toml");
    std::fs::write(
        &path,
        r#"
schema_version = 1
name = "serving"
[hardware]
profile = "pc-rtx4090-pcie4"
[model]
spec = "mixtral-8x7b"
format = "q4_k"
[trace]
generator = "mixtral-like"
requests = 4
prefill_tokens = 4
decode_tokens = 16
[cache]
capacity_experts = 4
[quality]
samples = 0
[serving]
max_batch = 4
[serving.kv]
max_context_tokens = 4096
[serving.speculative]
drafts = 2
acceptance = 0.6
draft = { kind = "mtp", step_ns = 1e6 }
"#,
    )
    .unwrap();
    let out = dir.join("out");
    let run = moesim([
        "run",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for needle in [
        "decode throughput, all requests",
        "requests per step / experts per layer step",
        "tokens per verification step",
        "KV cache peak / smallest expert cache",
    ] {
        assert!(
            run.stdout.contains(needle),
            "{needle} missing:\n{}",
            run.stdout
        );
    }
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let mut lines = metrics.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert!(col("batch_mean").parse::<f64>().unwrap() > 1.0);
    assert!(col("kv_peak_bytes").parse::<u64>().unwrap() > 0);
    assert!(col("verify_tokens_per_step").parse::<f64>().unwrap() >= 1.0);
}
