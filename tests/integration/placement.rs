//! Where experts run (issue 19): closed forms on toy systems for each placement mode, the
//! roofline and its crossover, and bad placements refused by name.

use moesim::router::top_k_by;
use moesim::sim::setup::SimLink;
use moesim::sim::{InPlace, PlacementMode, SimTrace, roofline_ns};

use crate::sim::{Toy, link, sim, trace};
use crate::util::{assert_bad_input, moesim, scratch};

const L: u64 = 8;
const K: u64 = 2;
const E: u32 = 16;
/// Activation bytes per token in the toys (one 64-byte granule per token).
const ACT: u64 = 64;

/// The activation link of the toys: 300 ns + 64 B per token at 1 GB/s.
fn act_link() -> SimLink {
    link(0, 1, 300.0, 64, 1e9, 1)
}

/// Time of one activation transfer for `tokens` tokens over `act_link`.
fn act_ns(tokens: u64) -> u64 {
    300 + tokens * ACT
}

/// An in-place unit on the toy's home tier with `kernel_ns` per expert and token.
fn unit(
    mode: PlacementMode,
    kernel_ns: u64,
    sync_ns: u64,
    always: fn(u32, u32) -> bool,
) -> InPlace {
    let n = (L as u32 * E) as usize;
    InPlace {
        mode,
        unit: "cpu".into(),
        tier: 1,
        always: (0..n as u32).map(|g| always(g / E, g % E)).collect(),
        expert_compute_ns: vec![kernel_ns; n],
        expert_mac_ns: vec![kernel_ns; n],
        launch_ns: 0,
        energy_pj_per_mac: 1.0,
        to_unit: vec![act_link()],
        to_primary: vec![act_link()],
        activation_bytes_per_token: ACT,
        sync_ns,
        copy_min_tokens: None,
        load_admitted: false,
        in_place_layers: None,
    }
}

/// The experts the standard router selects for decode token `token` at `layer` of request 0.
fn selected(t: &SimTrace, token: u32, layer: u32) -> Vec<u16> {
    let ev = t.decode_event(&t.requests[0], token, layer);
    let mut experts = Vec::new();
    top_k_by(t.workload.logits_of(ev), K as usize, &mut experts);
    experts
}

fn base() -> Toy {
    Toy {
        dense_ns: 1100,
        gate_ns: 30,
        head_ns: 5000,
        compute_ns: 700,
        ..Toy::new()
    }
}

/// A micro-moe-shaped trace of one request with one expert per token.
pub(crate) fn top1_trace(seed: u64, decode: u32) -> SimTrace {
    use moesim::router::replay::RouteWorkload;
    use moesim::trace::generate::{GeneratedEvent, Generator, load_spec};
    let mut spec = load_spec("micro-moe").unwrap();
    spec.top_k = 1;
    spec.prefill_tokens = 0;
    spec.decode_tokens = decode;
    let g = Generator::new(&spec, seed);
    let mut w = RouteWorkload::new(&spec.meta(seed, 1));
    let mut ev = GeneratedEvent::default();
    let mut events = g.request(0);
    while events.next_event(&mut ev) {
        w.push(&ev.record);
    }
    SimTrace::new(w, Vec::new()).unwrap()
}

#[test]
fn in_place_only_costs_dense_plus_in_place_experts_plus_activations() {
    let (prefill, decode) = (5u64, 20u32);
    let t = trace(3, 1, prefill as u32, decode);
    let toy = Toy {
        in_place: Some(unit(PlacementMode::InPlace, 900, 50, |_, _| true)),
        ..base()
    };
    let r = sim(&toy, &t);
    // Every layer: dense and gate on the primary, then activations out, k kernels on the
    // in-place unit, results back and the synchronisation, while the primary waits.
    let layer = 1100 + 30 + act_ns(1) + K * 900 + act_ns(1) + 50;
    let token = L * layer + 5000;
    assert!(
        r.token_latencies_ns.iter().all(|&x| x == token),
        "{:?} vs {token}",
        &r.token_latencies_ns[..3]
    );
    assert_eq!(r.decode_tokens_per_s, 1e9 / token as f64);
    // Prefill: every prompt token's k experts run in place, n tokens per kernel.
    let layer = prefill * (1100 + 30) + act_ns(prefill) + prefill * K * 900 + act_ns(prefill) + 50;
    assert_eq!(r.ttft_p50_ns, L * layer + 5000);
    assert_eq!(r.in_place_uses, decode as u64 * L * K);
    assert_eq!(r.hits + r.misses, 0, "no cache is consulted");
    assert_eq!(r.bytes_loaded, 0, "no expert crosses a link");
    assert_eq!(r.activation_bytes, 2 * ACT * L * (prefill + decode as u64));
    assert_eq!(r.in_place_busy_ns, L * K * 900 * (prefill + decode as u64));
    // The waiting shows as stall: the breakdown still adds up to the token latencies.
    let total: u64 = r.token_latencies_ns.iter().sum();
    assert_eq!(
        r.decode_compute_ns + r.decode_routing_ns + r.decode_stall_ns,
        total
    );
}

/// A hot set managed by LRU on a top-1 trace: every first use of an expert is computed in
/// place while its copy is fetched in the background, both reading the home tier.
fn shared_tier_toy(budget_bytes_per_s: Option<f64>) -> Toy {
    let mut ip = unit(PlacementMode::HotSet, 1000, 0, |_, _| false);
    ip.load_admitted = true;
    Toy {
        cache_experts_per_layer: 1,
        in_place: Some(ip),
        shared_read_bandwidth: vec![None, budget_bytes_per_s],
        ..base()
    }
}

#[test]
fn a_copy_and_an_in_place_kernel_share_the_tier_they_read() {
    let t = top1_trace(11, 4);
    // Per layer of the first token (every expert a miss): dense and gate (1130 ns), then the
    // copy starts (500 ns latency + 1024 B at 1 B/ns) while the activations cross (364 ns);
    // the kernel (1000 B in 1000 ns) then streams at 1 B/ns beside the copy's 1 B/ns.
    let free = sim(&shared_tier_toy(Some(2e9)), &t);
    let layer = 1130 + act_ns(1) + 1000 + act_ns(1);
    assert_eq!(free.token_latencies_ns[0], L * layer + 5000);
    assert_eq!(free.tier_contended_ns, 0);
    // Unbounded and exactly sufficient budgets change nothing, to the nanosecond.
    let untracked = sim(&shared_tier_toy(None), &t);
    assert_eq!(free.token_latencies_ns, untracked.token_latencies_ns);
    assert_eq!(free.ttft_p50_ns, untracked.ttft_p50_ns);
    // A tier giving 1 B/ns: both get half of what they ask while they overlap. The kernel takes
    // 2000 ns; the copy, 136 ns of its latency left when the kernel starts, has done
    // (2000 - 136) / 2 = 932 of its 1024 bytes when the kernel ends, and ends 92 ns later,
    // before the layer's results are back, so the next layer starts on an idle tier.
    let shared = sim(&shared_tier_toy(Some(1e9)), &t);
    let layer = 1130 + act_ns(1) + 2000 + act_ns(1);
    assert_eq!(shared.token_latencies_ns[0], L * layer + 5000);
    assert!(shared.tiers[1].contended_ns >= L * 2000);
    assert_eq!(shared.tier_contended_ns, shared.tiers[1].contended_ns);
    assert_eq!(
        shared.bytes_loaded, free.bytes_loaded,
        "the same copies, only slower"
    );
}

#[test]
fn a_layer_split_adds_resident_layers_and_in_place_layers() {
    let t = trace(5, 1, 0, 16);
    // Experts of even layers resident on the primary, odd layers in place.
    let toy = Toy {
        resident: Some(|layer, _| layer % 2 == 0),
        in_place: Some(unit(PlacementMode::Layers, 2500, 0, |layer, _| {
            layer % 2 == 1
        })),
        ..base()
    };
    let r = sim(&toy, &t);
    let even = 1100 + 30 + K * 700;
    let odd = 1100 + 30 + act_ns(1) + K * 2500 + act_ns(1);
    let token = L / 2 * (even + odd) + 5000;
    assert!(
        r.token_latencies_ns.iter().all(|&x| x == token),
        "{:?} vs {token}",
        &r.token_latencies_ns[..3]
    );
    assert_eq!(r.hits, 16 * L / 2 * K);
    assert_eq!(r.in_place_uses, 16 * L / 2 * K);
}

#[test]
fn a_hot_set_layer_takes_the_longer_of_the_two_units() {
    let decode = 24u32;
    let t = trace(7, 1, 0, decode);
    // The first half of each layer's experts is hot (resident), the rest run in place.
    let toy = Toy {
        resident: Some(|_, x| x < E / 2),
        in_place: Some(unit(PlacementMode::HotSet, 2000, 100, |_, x| x >= E / 2)),
        ..base()
    };
    let r = sim(&toy, &t);
    let mut both_busy = 0;
    for token in 0..decode {
        let mut expected = 5000;
        for layer in 0..L as u32 {
            let sel = selected(&t, token, layer);
            let hot = sel.iter().filter(|&&x| (x as u32) < E / 2).count() as u64;
            let cold = K - hot;
            let primary = hot * 700;
            let other = if cold > 0 {
                act_ns(1) + cold * 2000 + act_ns(1) + 100
            } else {
                0
            };
            both_busy += u64::from(hot > 0 && cold > 0);
            expected += 1100 + 30 + primary.max(other);
        }
        assert_eq!(
            r.token_latencies_ns[token as usize], expected,
            "token {token}"
        );
    }
    assert!(
        both_busy > 0,
        "the trace never used both units in one layer"
    );
}

#[test]
fn per_miss_fetches_or_computes_in_place_whichever_is_obviously_cheaper() {
    let t = trace(9, 1, 0, 12);
    let uses = 12 * L * K;
    // In place is cheap (100 ns kernels) and the link slow (1 MB/s): every miss in place.
    let slow_link = Toy {
        links: vec![link(1, 0, 500.0, 64, 1e6, 1)],
        in_place: Some(unit(PlacementMode::PerMiss, 100, 0, |_, _| false)),
        ..base()
    };
    let r = sim(&slow_link, &t);
    assert_eq!((r.misses, r.in_place_uses, r.bytes_loaded), (uses, uses, 0));
    // In place is slow (1 ms kernels) and the link fast: every miss fetched.
    let slow_unit = Toy {
        in_place: Some(unit(PlacementMode::PerMiss, 1_000_000, 0, |_, _| false)),
        ..base()
    };
    let r = sim(&slow_unit, &t);
    assert_eq!((r.misses, r.in_place_uses), (uses, 0));
    assert_eq!(r.bytes_loaded, uses * 1000);
    // llama.cpp's rule: copy only kernels of at least 32 tokens, so decode stays in place.
    let mut rule = unit(PlacementMode::PerMiss, 1_000_000, 0, |_, _| false);
    rule.copy_min_tokens = Some(32);
    let r = sim(
        &Toy {
            in_place: Some(rule),
            ..base()
        },
        &t,
    );
    assert_eq!(r.in_place_uses, uses);
}

#[test]
fn the_roofline_crosses_over_where_bytes_over_bandwidth_equal_macs_over_peak() {
    // 800 ns to read an expert's weights, 100 ns of arithmetic per token: crossover at 8.
    for n in 1..=8 {
        assert_eq!(roofline_ns(0, 800, 100, n), 800, "{n} tokens");
    }
    assert_eq!(roofline_ns(0, 800, 100, 9), 900);
    assert_eq!(roofline_ns(25, 800, 100, 16), 1625);
    // In the simulator: a prefill layer charges each expert max(800, n·100) for its n tokens.
    let prefill = 40u32;
    let t = trace(11, 1, prefill, 1);
    let r = sim(&roofline_toy(), &t);
    // One chunk: the whole prompt through every layer at once.
    assert_eq!(r.ttft_p50_ns, chunked_prefill_ns(&t, prefill, prefill));
}

/// Resident experts of 800 ns memory time and 100 ns of arithmetic per token; dense 2000 ns
/// memory, 250 ns arithmetic per token.
fn roofline_toy() -> Toy {
    Toy {
        all_resident: true,
        compute_ns: 800,
        mac_ns: Some(100),
        dense_ns: 2000,
        dense_mac_ns: Some(250),
        ..base()
    }
}

/// The prefill of `t`'s request 0 with the toy of the roofline test, in chunks of `chunk`.
fn chunked_prefill_ns(t: &SimTrace, prefill: u32, chunk: u32) -> u64 {
    let mut expected = 5000u64;
    let mut start = 0;
    while start < prefill {
        let n = chunk.min(prefill - start);
        for layer in 0..L as u32 {
            let mut tokens = vec![0u64; E as usize];
            for j in start..start + n {
                let ev = t.prefill_event(&t.requests[0], layer, j);
                let mut sel = Vec::new();
                top_k_by(t.workload.logits_of(ev), K as usize, &mut sel);
                for x in sel {
                    tokens[x as usize] += 1;
                }
            }
            let experts: u64 = tokens
                .iter()
                .filter(|&&m| m > 0)
                .map(|&m| 800u64.max(m * 100))
                .sum();
            expected += 2000u64.max(n as u64 * 250) + n as u64 * 30 + experts;
        }
        start += n;
    }
    expected
}

#[test]
fn a_prompt_in_chunks_runs_each_chunk_through_every_layer_and_the_head_once() {
    let prefill = 40u32;
    let t = trace(13, 1, prefill, 1);
    for chunk in [1, 7, 16, 40, 64] {
        let toy = Toy {
            chunk: Some(chunk),
            ..roofline_toy()
        };
        let r = sim(&toy, &t);
        assert_eq!(
            r.ttft_p50_ns,
            chunked_prefill_ns(&t, prefill, chunk),
            "chunk {chunk}"
        );
        assert_eq!(r.prefill_tokens, prefill as u64);
    }
    // Smaller chunks re-read the weights more often: never faster.
    assert!(chunked_prefill_ns(&t, prefill, 7) >= chunked_prefill_ns(&t, prefill, 40));
}

const DESKTOP: &str = r#"
schema_version = 1
name = "toy-desktop"
description = "a GPU with VRAM and a CPU with DRAM"
sources = ["none: a test profile"]

[[tiers]]
name = "vram"
kind = "vram"
capacity_bytes = 2_000_000_000
reserved_bytes = 0
read_bandwidth_bytes_per_s = 500e9
write_bandwidth_bytes_per_s = 500e9
latency_ns = 500
granularity_bytes = 128
energy_pj_per_byte = 10
holds_experts = true
calibrated = "assumed"

[[tiers]]
name = "dram"
kind = "dram"
capacity_bytes = 64_000_000_000
reserved_bytes = 0
read_bandwidth_bytes_per_s = 60e9
write_bandwidth_bytes_per_s = 60e9
latency_ns = 100
granularity_bytes = 64
energy_pj_per_byte = 20
holds_experts = true
calibrated = "assumed"

[[links]]
from = "dram"
to = "vram"
bandwidth_bytes_per_s = 25e9
latency_ns = 10000
granularity_bytes = 4096
channels = 1
calibrated = "assumed"

[[compute_units]]
name = "gpu"
tier = "vram"
cores = 64
expert_weights_per_s = { f16 = 250e9, q8 = 470e9, q4 = 880e9, q3 = 1100e9, q2 = 1500e9, ternary = 2300e9 }
peak_macs_per_s = { f16 = 50e12, q8 = 50e12, q4 = 50e12, q3 = 50e12, q2 = 50e12, ternary = 50e12 }
dense_weights_per_s = 250e9
dense_peak_macs_per_s = 50e12
launch_ns = 5000
energy_pj_per_mac = 1
calibrated = "assumed"

[[compute_units]]
name = "cpu"
tier = "dram"
cores = 8
expert_weights_per_s = { f16 = 30e9, q8 = 56e9, q4 = 100e9, q3 = 130e9, q2 = 170e9, ternary = 250e9 }
peak_macs_per_s = { f16 = 1e12, q8 = 1e12, q4 = 1e12, q3 = 1e12, q2 = 1e12, ternary = 1e12 }
dense_weights_per_s = 30e9
energy_pj_per_mac = 5
calibrated = "assumed"
"#;

fn experiment(profile: &std::path::Path, placement: &str) -> String {
    format!(
        r#"
[hardware]
profile = "{}"
[model]
spec = "micro-moe"
format = "q4_k"
[trace]
generator = "micro-moe"
requests = 1
prefill_tokens = 16
decode_tokens = 8
[cache]
capacity_experts = 4
{placement}
"#,
        profile.display()
    )
}

#[test]
fn profile_show_gives_each_unit_and_its_crossover() {
    let dir = scratch("placement_show");
    let profile = dir.join("desktop.toml");
    std::fs::write(&profile, DESKTOP).unwrap();
    let run = moesim(["profile", "show", profile.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("compute unit gpu on vram"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("compute unit cpu on dram"),
        "{}",
        run.stdout
    );
    // q4 on the GPU: 50e12 / 880e9 = 56.8 tokens.
    assert!(run.stdout.contains("56.8"), "{}", run.stdout);
    let json = moesim(["profile", "show", profile.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["units"].as_array().unwrap().len(), 2);
    assert_eq!(v["units"][1]["name"], "cpu");
}

#[test]
fn every_mode_runs_end_to_end_on_a_two_unit_profile() {
    let dir = scratch("placement_modes");
    let profile = dir.join("desktop.toml");
    std::fs::write(&profile, DESKTOP).unwrap();
    for (i, placement) in [
        "[placement]\nmode = \"move\"",
        "[placement]\nmode = \"in-place\"",
        "[placement]\nmode = \"layers\"\nin_place_layers = 3",
        "[placement]\nmode = \"hot-set\"",
        "[placement]\nmode = \"hot-set\"\nhot_set = \"static\"",
        "[placement]\nmode = \"per-miss\"",
        "[placement]\nmode = \"per-miss\"\ncopy_min_tokens = 32\nsync_ns = 2000",
    ]
    .iter()
    .enumerate()
    {
        let exp = crate::sim::write_experiment(&dir, "p", &experiment(&profile, placement));
        let out = dir.join(format!("out{i}"));
        let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{placement}: {}", run.stderr);
        let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
        assert!(csv.contains("in_place_uses"), "{csv}");
    }
}

#[test]
fn bad_placements_are_refused_by_name() {
    let dir = scratch("placement_bad");
    let profile = dir.join("desktop.toml");
    std::fs::write(&profile, DESKTOP).unwrap();
    let single = dir.join("single.toml");
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unit_tier",
            DESKTOP.replace("tier = \"dram\"", "tier = \"hbm\""),
            vec!["compute_units[1].tier", "no tier named `hbm`"],
        ),
        (
            "unit_name",
            DESKTOP.replace("name = \"cpu\"", "name = \"gpu\""),
            vec!["compute_units[1].name", "duplicate"],
        ),
        (
            "peak",
            DESKTOP.replace(
                "peak_macs_per_s = { f16 = 1e12",
                "peak_macs_per_s = { f16 = 1e9",
            ),
            vec!["compute_units[1].peak_macs_per_s.f16", "below"],
        ),
        (
            "both_forms",
            format!("compute_tier = \"vram\"\n{DESKTOP}"),
            vec!["compute_tier", "each unit names its tier"],
        ),
    ];
    for (name, text, needles) in &cases {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let run = moesim(["profile", "check", path.to_str().unwrap()]);
        assert_bad_input(&run, needles);
    }
    std::fs::write(&single, "").unwrap();
    let experiments: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "missing_unit",
            experiment(&profile, "[placement]\nmode = \"in-place\"\nunit = \"npu\""),
            vec!["placement.unit", "no compute unit `npu`"],
        ),
        (
            "primary_unit",
            experiment(&profile, "[placement]\nmode = \"in-place\"\nunit = \"gpu\""),
            vec!["placement.unit", "primary"],
        ),
        (
            "too_many_layers",
            experiment(
                &profile,
                "[placement]\nmode = \"layers\"\nin_place_layers = 9",
            ),
            vec!["placement.in_place_layers", "above the model's 8 blocks"],
        ),
        (
            "one_unit",
            experiment(&profile, "[placement]\nmode = \"in-place\"")
                .replace(profile.to_str().unwrap(), "esp32-p4")
                .replace("capacity_experts = 4", "capacity_experts = 1"),
            vec!["placement.mode", "one compute unit"],
        ),
        (
            "hot_set_too_big",
            experiment(
                &profile,
                "[placement]\nmode = \"hot-set\"\nhot_set = \"static\"",
            )
            .replace("capacity_experts = 4", "capacity_experts = 1e9"),
            vec!["cache"],
        ),
        (
            "layers_without_count",
            experiment(&profile, "[placement]\nmode = \"layers\""),
            vec!["placement.in_place_layers", "missing"],
        ),
    ];
    for (name, body, needles) in &experiments {
        let exp = crate::sim::write_experiment(&dir, name, body);
        let out = dir.join(format!("{name}-out"));
        let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert_bad_input(&run, needles);
        assert!(!out.exists(), "{name}: partial output");
    }
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn toy(dense: u64, gpu: u64, cpu: u64, latency: f64, mode: PlacementMode) -> Toy {
        let mut ip = unit(mode, cpu, 0, |_, x| x % 3 != 0);
        ip.to_unit = vec![link(0, 1, latency, 64, 1e9, 1)];
        ip.to_primary = ip.to_unit.clone();
        Toy {
            dense_ns: dense,
            gate_ns: 10,
            head_ns: 1000,
            compute_ns: gpu,
            resident: Some(|_, x| x % 3 == 0),
            in_place: Some(ip),
            ..Toy::new()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// A faster in-place unit, a faster activation link or a faster primary never makes a
        /// token slower, in every placement whose decisions are fixed (in place, layers,
        /// static hot set).
        #[test]
        fn faster_units_and_links_never_slow_a_token(
            seed in 0u64..1000,
            dense in 100u64..5000,
            gpu in 50u64..3000,
            cpu in 50u64..20_000,
            latency in 0.0f64..20_000.0,
            mode in prop::sample::select(vec![PlacementMode::InPlace, PlacementMode::Layers, PlacementMode::HotSet]),
        ) {
            let t = trace(seed, 1, 4, 6);
            let slow = sim(&toy(dense, gpu, cpu, latency, mode), &t);
            for faster in [
                toy(dense, gpu, cpu / 2 + 1, latency, mode),
                toy(dense, gpu, cpu, latency / 2.0, mode),
                toy(dense, gpu / 2 + 1, cpu, latency, mode),
            ] {
                let fast = sim(&faster, &t);
                for (a, b) in fast.token_latencies_ns.iter().zip(&slow.token_latencies_ns) {
                    prop_assert!(a <= b, "{a} > {b}");
                }
                prop_assert!(fast.ttft_p50_ns <= slow.ttft_p50_ns);
            }
        }

        /// More read bandwidth in the tier that copies and in-place kernels share never makes
        /// a token slower (hot set managed by LRU, and plain paging over two channels).
        #[test]
        fn more_tier_bandwidth_never_slows_a_token(
            seed in 0u64..1000,
            budget in 2e8f64..4e9,
            cpu in 200u64..5000,
            hot_set in any::<bool>(),
        ) {
            let t = trace(seed, 1, 3, 6);
            let toy = |b: f64| {
                let mut ip = unit(PlacementMode::HotSet, cpu, 0, |_, _| false);
                ip.load_admitted = true;
                Toy {
                    cache_experts_per_layer: 3,
                    links: vec![link(1, 0, 500.0, 64, 1e9, 2)],
                    in_place: hot_set.then_some(ip),
                    shared_read_bandwidth: vec![None, Some(b)],
                    ..base()
                }
            };
            let slow = sim(&toy(budget), &t);
            let fast = sim(&toy(budget * 2.0), &t);
            for (a, b) in fast.token_latencies_ns.iter().zip(&slow.token_latencies_ns) {
                prop_assert!(a <= b, "{a} > {b}");
            }
            prop_assert!(fast.ttft_p50_ns <= slow.ttft_p50_ns);
        }

        /// With one expert per token and no cache, per-miss decisions cannot interact (each
        /// layer's miss finds the link and the in-place unit idle, so both predictions are
        /// exact): every token is at least as fast as with every miss fetched and with every
        /// miss computed in place.
        #[test]
        fn per_miss_is_never_slower_than_both_pure_strategies(
            seed in 0u64..1000,
            cpu in 50u64..20_000,
            act_latency in 0.0f64..5_000.0,
            link_latency in 0.0f64..5_000.0,
            bandwidth in 1e8f64..1e10,
        ) {
            let t = top1_trace(seed, 6);
            let toy = |mode: Option<PlacementMode>| {
                let mut ip = unit(mode.unwrap_or(PlacementMode::PerMiss), cpu, 0, |_, _| false);
                ip.to_unit = vec![link(0, 1, act_latency, 64, 1e9, 1)];
                ip.to_primary = ip.to_unit.clone();
                if mode == Some(PlacementMode::InPlace) {
                    ip.always = vec![true; ip.always.len()];
                }
                Toy {
                    links: vec![link(1, 0, link_latency, 64, bandwidth, 1)],
                    compute_ns: 700,
                    in_place: mode.map(|_| ip),
                    ..base()
                }
            };
            let moved = sim(&toy(None), &t);
            let here = sim(&toy(Some(PlacementMode::InPlace)), &t);
            let chosen = sim(&toy(Some(PlacementMode::PerMiss)), &t);
            for i in 0..chosen.token_latencies_ns.len() {
                let best = moved.token_latencies_ns[i].min(here.token_latencies_ns[i]);
                prop_assert!(
                    chosen.token_latencies_ns[i] <= best,
                    "token {i}: per-miss {} > {best}", chosen.token_latencies_ns[i]
                );
            }
        }

        /// Every expert resident on the primary unit (layers mode with no block in place)
        /// reproduces `move` with every expert resident, exactly.
        #[test]
        fn all_experts_resident_reproduces_move_exactly(
            seed in 0u64..1000,
            dense in 100u64..5000,
            gpu in 50u64..3000,
        ) {
            let t = trace(seed, 2, 5, 8);
            let moved = Toy { dense_ns: dense, compute_ns: gpu, all_resident: true, ..Toy::new() };
            let layers = Toy {
                in_place: Some(unit(PlacementMode::Layers, 999, 0, |_, _| false)),
                ..moved.clone()
            };
            let (a, b) = (sim(&moved, &t), sim(&layers, &t));
            prop_assert_eq!(&a.token_latencies_ns, &b.token_latencies_ns);
            prop_assert_eq!(a.ttft_p50_ns, b.ttft_p50_ns);
            prop_assert_eq!(a.hits, b.hits);
            prop_assert_eq!(b.in_place_uses, 0);
        }
    }
}

/// `in_place_layers = "fit"` resolves to the fewest blocks in place that leave the rest fitting
/// the GPU: on the 16 GB desktop with Qwen3-30B-A3B at Q4_K, 7 (and 6 does not fit).
#[test]
fn fit_resolves_to_the_fewest_blocks_that_fit() {
    let dir = scratch("placement_fit");
    let body = |n: &str| {
        format!(
            "[hardware]\nprofile = \"pc-rtx4060ti-16gb-ddr5\"\n[model]\nspec = \"qwen3-30b-a3b\"\nformat = \"q4_k\"\n\
             [trace]\ngenerator = \"qwen3-like\"\nrequests = 1\nprefill_tokens = 4\ndecode_tokens = 4\n\
             [cache]\nbudget_fraction = 1.0\n[placement]\nmode = \"layers\"\nin_place_layers = {n}\n"
        )
    };
    let exp = crate::sim::write_experiment(&dir, "fit", &body("\"fit\""));
    let out = dir.join("fit-out");
    let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|&h| h == "in_place_layers").unwrap();
    assert_eq!(row[col], "7");
    let exp = crate::sim::write_experiment(&dir, "six", &body("6"));
    let out = dir.join("six-out");
    let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_bad_input(
        &run,
        &[
            "placement.in_place_layers",
            "6 leaves the experts of 42 MoE layers",
        ],
    );
}

/// A static hot set chosen from the run's own trace is the best static set of its size for that
/// trace (every decode use counts); chosen from held-out requests of the same generated model it
/// can only do as well or worse, and a trace file, having no other requests, is refused.
#[test]
fn a_held_out_profile_never_beats_the_in_sample_static_hot_set() {
    let dir = scratch("placement_held_out");
    let profile = dir.join("desktop.toml");
    std::fs::write(&profile, DESKTOP).unwrap();
    let hit_rate = |popularity: &str| {
        let body = experiment(
            &profile,
            &format!(
                "[placement]\nmode = \"hot-set\"\nhot_set = \"static\"\npopularity = \"{popularity}\""
            ),
        )
        .replace("prefill_tokens = 16", "prefill_tokens = 0")
        .replace("decode_tokens = 8", "decode_tokens = 64")
        .replace("requests = 1", "requests = 2");
        let exp = crate::sim::write_experiment(&dir, popularity, &body);
        let out = dir.join(format!("{popularity}-out"));
        let run = moesim([
            "run",
            exp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        v["hit_rate"].as_f64().unwrap()
    };
    let (own, held_out) = (hit_rate("trace"), hit_rate("held-out"));
    assert!(held_out <= own, "held-out {held_out} > in-sample {own}");
    assert!(
        held_out > 0.0 && held_out < own,
        "{held_out} vs {own}: the profiles should differ"
    );
    // A trace file has no other requests to profile.
    let trace = dir.join("t.jsonl");
    let run = moesim([
        "trace",
        "generate",
        "--preset",
        "micro-moe",
        "--requests",
        "1",
        "--tokens",
        "8",
        "--out",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let body = experiment(
        &profile,
        "[placement]\nmode = \"hot-set\"\nhot_set = \"static\"\npopularity = \"held-out\"",
    )
    .replace(
        "generator = \"micro-moe\"\nrequests = 1\nprefill_tokens = 16\ndecode_tokens = 8",
        &format!("file = \"{}\"", trace.display()),
    );
    let exp = crate::sim::write_experiment(&dir, "file", &body);
    let out = dir.join("file-out");
    assert_bad_input(
        &moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]),
        &["placement.popularity", "generated trace"],
    );
    assert!(!out.exists());
}
