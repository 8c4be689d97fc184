//! Metrics that mean what they say (issue 17): energy and bytes per phase, each over its own
//! tokens; static power charged over simulated time; a block-storage compute tier refused
//! unless asked for; common random numbers across the points of a sweep. Closed forms on a toy
//! device where the figure has one, and the shipped quickstart through `moesim run` otherwise.

use std::path::Path;

use moesim::cache::PolicyKind;
use moesim::cache::replay::{BetweenRequests, Scope};
use moesim::router::replay::RouteWorkload;
use moesim::router::{GateWeights, RouterKind};
use moesim::sim::arrival::ArrivalKind;
use moesim::sim::prefetch::PrefetchKind;
use moesim::sim::setup::{SimLink, SimTier};
use moesim::sim::{CacheCapacity, OnWrongPrefetch, SimOptions, SimReport, SimSetup, SimTrace};
use moesim::trace::generate::{GeneratedEvent, Generator, load_spec};

use crate::util::{assert_bad_input, moesim, scratch};

/// A generated trace of the micro-moe shape (8 layers, 16 experts, top-2).
fn trace(requests: u32, prefill: u32, decode: u32) -> SimTrace {
    let mut spec = load_spec("micro-moe").unwrap();
    spec.prefill_tokens = prefill;
    spec.decode_tokens = decode;
    let g = Generator::new(&spec, 5);
    let mut w = RouteWorkload::new(&spec.meta(5, requests));
    let mut ev = GeneratedEvent::default();
    for r in 0..requests {
        let mut events = g.request(r);
        while events.next_event(&mut ev) {
            w.push(&ev.record);
        }
    }
    SimTrace::new(w, Vec::new()).unwrap()
}

/// The toy device's figures, distinct so that a term counted in the wrong place shows.
const L: u64 = 8;
const K: u64 = 2;
const EXPERT_BYTES: u64 = 1000;
const EXPERT_NS: u64 = 700;
const EXPERT_MACS: u64 = 50;
const DENSE_NS: u64 = 1100;
const DENSE_MACS: u64 = 300;
const DENSE_BYTES: u64 = 40;
const GATE_NS: u64 = 30;
const GATE_MACS: u64 = 20;
const HEAD_NS: u64 = 5000;
const HEAD_MACS: u64 = 900;
const HEAD_BYTES: u64 = 70;
/// pJ per byte of the compute tier and of the home tier.
const PJ_COMPUTE: f64 = 2.0;
const PJ_HOME: f64 = 5.0;
const PJ_MAC: f64 = 0.5;
/// One hop: 500 ns + 1000 B in 64 B granules (1024 B) at 1 GB/s.
const HOP_NS: u64 = 500 + 1024;

/// A toy device: tier 0 computes, experts live in tier 1 (or all in tier 0 when `resident`),
/// one link; no cache, so every use of a non-resident expert is a load.
fn toy(t: &SimTrace, resident: bool, static_w: f64, arrival: ArrivalKind) -> SimSetup {
    let n = (t.workload.layers * t.workload.experts) as usize;
    SimSetup {
        layers: t.workload.layers,
        experts: t.workload.experts,
        top_k: t.workload.top_k,
        hidden: 64,
        expert_format: vec![moesim::quant::format::WeightFormat::Q4K; n],
        expert_bytes: vec![EXPERT_BYTES; n],
        expert_compute_ns: vec![EXPERT_NS; n],
        expert_mac_ns: vec![EXPERT_NS; n],
        expert_macs: vec![EXPERT_MACS; n],
        placement: vec![if resident { 0 } else { 1 }; n],
        shared: None,
        dense_ns: DENSE_NS,
        dense_mac_ns: DENSE_NS,
        gate_mac_ns: GATE_NS,
        launch_ns: 0,
        wake_ns: 0,
        issue_ns: 0,
        dense_macs: DENSE_MACS,
        dense_bytes: DENSE_BYTES,
        gate_ns: GATE_NS,
        gate_macs: GATE_MACS,
        op_ns: 0.0,
        head_ns: HEAD_NS,
        head_mac_ns: HEAD_NS,
        head_macs: HEAD_MACS,
        head_bytes: HEAD_BYTES,
        tiers: [PJ_COMPUTE, PJ_HOME]
            .iter()
            .enumerate()
            .map(|(i, &pj)| SimTier {
                name: format!("t{i}"),
                energy_pj_per_byte: pj,
                shared_read_bandwidth_bytes_per_s: None,
            })
            .collect(),
        links: vec![SimLink {
            from: 1,
            to: 0,
            latency_ns: 500.0,
            granularity_bytes: 64,
            bandwidth_bytes_per_s: 1e9,
            channels: 1,
            request_bytes: None,
            time_distribution: None,
        }],
        paths: vec![Vec::new(), vec![0]],
        compute_tier: 0,
        home_tier: 1,
        energy_pj_per_mac: PJ_MAC,
        static_power_w: static_w,
        cache_bytes: 0,
        n_caches: L as u32,
        compute_budget_bytes: u64::MAX,
        precision: None,
        storage_bytes: vec![0; 2],
        extra_copy_bytes: 0,
        expert_slowdown_while_transferring: [0.0; 6],
        expert_slowdown_after_load: [0.0; 6],
        weights_cache: None,
        primary_unit: "toy".into(),
        in_place: None,
        layer_overhead_ns: 0,
        token_overhead_ns: 0,
        serving: Default::default(),
        options: SimOptions {
            format: moesim::quant::format::WeightFormat::Q4K,
            scope: Scope::PerLayer,
            capacity: CacheCapacity::Bytes(0),
            policy: PolicyKind::Lru {},
            between: BetweenRequests::Reset,
            router: RouterKind::Standard {},
            gate: GateWeights::Renormalized,
            prefetch: PrefetchKind::None {},
            prefetch_count: None,
            on_wrong_prefetch: OnWrongPrefetch::Cancel,
            arrival,
            timeline: false,
            seed: 1,
            precision: Default::default(),
            placement: Default::default(),
            prefill_chunk_tokens: None,
            serving: Default::default(),
        },
    }
}

fn run(setup: &SimSetup, t: &SimTrace) -> SimReport {
    moesim::sim::run(setup, t).unwrap().0
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()),
        "{what}: {a} vs {b}"
    );
}

/// Dynamic energy (pJ) of one decode token whose expert uses read `loaded` bytes over the link.
fn decode_dynamic_pj(loaded: u64) -> f64 {
    let layer = DENSE_BYTES as f64 * PJ_COMPUTE
        + (DENSE_MACS + GATE_MACS) as f64 * PJ_MAC
        + K as f64 * (EXPERT_BYTES as f64 * PJ_COMPUTE + EXPERT_MACS as f64 * PJ_MAC);
    L as f64 * layer
        + HEAD_BYTES as f64 * PJ_COMPUTE
        + HEAD_MACS as f64 * PJ_MAC
        + loaded as f64 * (PJ_HOME + PJ_COMPUTE)
}

/// Dynamic energy (pJ) of a prefill of `p` tokens with `lookups` distinct experts over its layer
/// steps (each read once per step, computed for every token routed to it) and `loaded` bytes
/// over the link.
fn prefill_dynamic_pj(p: u64, lookups: u64, loaded: u64) -> f64 {
    L as f64 * DENSE_BYTES as f64 * PJ_COMPUTE
        + (p * L * (DENSE_MACS + GATE_MACS)) as f64 * PJ_MAC
        + (lookups * EXPERT_BYTES) as f64 * PJ_COMPUTE
        + (p * L * K * EXPERT_MACS) as f64 * PJ_MAC
        + HEAD_BYTES as f64 * PJ_COMPUTE
        + HEAD_MACS as f64 * PJ_MAC
        + loaded as f64 * (PJ_HOME + PJ_COMPUTE)
}

/// Prefill and decode figures are each over their own tokens: with 0, 8 and 64 prompt tokens
/// and the same 16 generated, the decode figures per generated token are the same closed form,
/// and the prefill figures are the prefill's totals over the prompt tokens. Before, energy per
/// token divided all energy by all tokens and bytes per decode token divided all bytes
/// (prefill included) by the generated tokens.
#[test]
fn energy_and_bytes_per_phase_are_each_over_their_own_tokens() {
    let s = 0.25; // W: 250 pJ per ns
    let static_pj_per_ns = s * 1e3;
    let decode_ns = L * (DENSE_NS + GATE_NS + K * EXPERT_NS) + HEAD_NS;
    for p in [0u64, 8, 64] {
        let t = trace(1, p as u32, 16);
        // Every expert resident: times and energies are closed forms.
        let r = run(&toy(&t, true, s, ArrivalKind::AllAtOnce {}), &t);
        assert_eq!((r.prefill_tokens, r.decode_tokens), (p, 16));
        assert!(r.token_latencies_ns.iter().all(|&x| x == decode_ns));
        let per_decode_pj = decode_dynamic_pj(0) + static_pj_per_ns * decode_ns as f64;
        close(r.energy_decode_pj, 16.0 * per_decode_pj, "decode energy");
        close(
            r.energy_per_decode_token_mj,
            per_decode_pj * 1e-9,
            &format!("energy per decode token, {p} prompt tokens"),
        );
        assert_eq!(r.bytes_loaded, 0);
        if p == 0 {
            assert_eq!(r.energy_prefill_pj, 0.0);
            assert!(r.energy_per_prefill_token_mj.is_nan());
            assert!(r.bytes_loaded_per_prefill_token.is_nan());
        } else {
            let prefill_ns = L * (p * (DENSE_NS + GATE_NS) + p * K * EXPERT_NS) + HEAD_NS;
            assert_eq!(r.ttft_p50_ns, prefill_ns);
            let prefill_pj =
                prefill_dynamic_pj(p, r.prefill_lookups, 0) + static_pj_per_ns * prefill_ns as f64;
            close(r.energy_prefill_pj, prefill_pj, "prefill energy");
            close(
                r.energy_per_prefill_token_mj,
                prefill_pj / p as f64 * 1e-9,
                &format!("energy per prompt token, {p} prompt tokens"),
            );
        }
        // One request back to back: the phases are the whole run.
        close(
            r.energy_total_mj * 1e9,
            r.energy_prefill_pj + r.energy_decode_pj,
            "total energy",
        );

        // Every expert loaded at every use: bytes per phase.
        let r = run(&toy(&t, false, s, ArrivalKind::AllAtOnce {}), &t);
        assert_eq!(r.misses, r.expert_uses);
        let per_decode_bytes = L * K * EXPERT_BYTES;
        assert_eq!(r.bytes_loaded_decode, 16 * per_decode_bytes);
        assert_eq!(
            r.bytes_loaded_per_decode_token, per_decode_bytes as f64,
            "bytes per decode token, {p} prompt tokens"
        );
        assert_eq!(r.bytes_loaded_prefill, r.prefill_lookups * EXPERT_BYTES);
        assert_eq!(
            r.bytes_loaded,
            r.bytes_loaded_prefill + r.bytes_loaded_decode
        );
        let decode_time: u64 = r.token_latencies_ns.iter().sum();
        // Expert kernels are shorter than a load: a layer costs its prologue, k loads and the
        // last expert.
        assert_eq!(
            decode_time,
            16 * (L * (DENSE_NS + GATE_NS + K * HOP_NS + EXPERT_NS) + HEAD_NS)
        );
        close(
            r.energy_per_decode_token_mj,
            (decode_dynamic_pj(per_decode_bytes) + static_pj_per_ns * decode_time as f64 / 16.0)
                * 1e-9,
            &format!("energy per decode token with loads, {p} prompt tokens"),
        );
        if p > 0 {
            assert_eq!(
                r.bytes_loaded_per_prefill_token,
                (r.prefill_lookups * EXPERT_BYTES) as f64 / p as f64
            );
            let prefill_ns = r.ttft_p50_ns;
            close(
                r.energy_per_prefill_token_mj * p as f64 * 1e9,
                prefill_dynamic_pj(p, r.prefill_lookups, r.prefill_lookups * EXPERT_BYTES)
                    + static_pj_per_ns * prefill_ns as f64,
                &format!("energy per prompt token with loads, {p} prompt tokens"),
            );
        }
    }
}

/// Static power is charged over simulated time: `energy_static_pj` is `static_w` times the
/// makespan exactly, idle time between requests included (in the total, not in either phase),
/// and it changes no time and no dynamic energy.
#[test]
fn static_power_is_charged_over_simulated_time() {
    let t = trace(2, 4, 8);
    let think_ns = 3_000_000u64;
    for arrival in [
        ArrivalKind::AllAtOnce {},
        ArrivalKind::ClosedLoop {
            think_time_ns: think_ns,
        },
    ] {
        let idle = match arrival {
            ArrivalKind::ClosedLoop { think_time_ns } => think_time_ns,
            _ => 0,
        };
        let dark = run(&toy(&t, false, 0.0, arrival.clone()), &t);
        assert_eq!(dark.energy_static_pj, 0.0);
        for s in [0.116, 2.5, 40.0] {
            let r = run(&toy(&t, false, s, arrival.clone()), &t);
            assert_eq!(
                r.makespan_ns, dark.makespan_ns,
                "static power changes no time"
            );
            assert_eq!(r.energy_static_pj, s * 1e3 * r.makespan_ns as f64, "{s} W");
            assert_eq!(r.energy_transfer_pj, dark.energy_transfer_pj);
            assert_eq!(r.energy_weight_read_pj, dark.energy_weight_read_pj);
            assert_eq!(r.energy_mac_pj, dark.energy_mac_pj);
            close(
                r.energy_total_mj * 1e9,
                r.energy_transfer_pj
                    + r.energy_weight_read_pj
                    + r.energy_mac_pj
                    + r.energy_static_pj,
                "total = dynamic + static",
            );
            // The phases carry static power over their own time; the think time between the
            // requests is idle, charged in the total only.
            close(
                r.energy_total_mj * 1e9 - (r.energy_prefill_pj + r.energy_decode_pj),
                s * 1e3 * idle as f64,
                &format!("idle static energy at {s} W"),
            );
            close(
                r.energy_decode_pj - dark.energy_decode_pj,
                s * 1e3 * r.token_latencies_ns.iter().sum::<u64>() as f64,
                "decode static energy",
            );
        }
    }
}

fn json_run(exp: &Path, out: &Path) -> serde_json::Value {
    let run = moesim([
        "run",
        exp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

const QUICKSTART: &str = include_str!("../../experiments/quickstart.toml");

/// The same through `moesim run` on the quickstart (ESP32-P4, micro-MoE, LRU caches that warm
/// up during the prompt): the decode figures per generated token stay within 20 % of the
/// prompt-less run's while the prompt grows from 0 to 64 tokens (before, "energy per token" fell
/// elevenfold and bytes per decode token grew by 60 %), and the prompt figures are the prefill
/// totals over the prompt tokens.
#[test]
fn moesim_run_reports_each_phase_over_its_own_tokens() {
    let dir = scratch("metrics_phases");
    let mut base: Option<(f64, f64)> = None;
    for p in [0u64, 8, 64] {
        let body = QUICKSTART
            .replacen("requests = 2", "requests = 1", 1)
            .replacen("prefill_tokens = 16", &format!("prefill_tokens = {p}"), 1)
            .replacen("decode_tokens = 64", "decode_tokens = 16", 1)
            + "\n[quality]\nsamples = 0\n";
        assert!(body.contains(&format!("prefill_tokens = {p}\n")));
        let exp = dir.join(format!("p{p}.toml"));
        std::fs::write(&exp, body).unwrap();
        let v = json_run(&exp, &dir.join(format!("o{p}")));
        let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k}: {}", v[k]));
        assert_eq!((f("prefill_tokens"), f("decode_tokens")), (p as f64, 16.0));
        let decode = (
            f("energy_per_decode_token_mj"),
            f("bytes_loaded_per_decode_token"),
        );
        close(
            decode.0,
            f("energy_decode_pj") / 16.0 * 1e-9,
            "decode energy per token",
        );
        close(
            decode.1,
            f("bytes_loaded_decode") / 16.0,
            "decode bytes per token",
        );
        match base {
            None => base = Some(decode),
            Some((e0, b0)) => {
                assert!(
                    (decode.0 / e0 - 1.0).abs() < 0.2,
                    "{p}: {} vs {e0} mJ",
                    decode.0
                );
                assert!(
                    (decode.1 / b0 - 1.0).abs() < 0.2,
                    "{p}: {} vs {b0} B",
                    decode.1
                );
            }
        }
        if p == 0 {
            assert!(v["energy_per_prefill_token_mj"].is_null(), "{v}");
            assert!(v["bytes_loaded_per_prefill_token"].is_null(), "{v}");
            assert_eq!(f("bytes_loaded_prefill"), 0.0);
        } else {
            close(
                f("energy_per_prefill_token_mj") * p as f64,
                f("energy_prefill_pj") * 1e-9,
                "prefill energy per prompt token",
            );
            close(
                f("bytes_loaded_per_prefill_token") * p as f64,
                f("bytes_loaded_prefill"),
                "prefill bytes per prompt token",
            );
        }
        close(
            f("bytes_loaded"),
            f("bytes_loaded_prefill") + f("bytes_loaded_decode"),
            "bytes by phase",
        );
        close(
            f("energy_total_mj") * 1e9,
            f("energy_prefill_pj") + f("energy_decode_pj"),
            "one request: the phases are the run",
        );
    }
}

/// `[power] static_w` through `moesim run`: the static energy is the profile's figure times
/// the makespan, nothing else moves with it, and a profile without `[power]` charges none.
#[test]
fn moesim_run_charges_the_profiles_static_power_over_the_makespan() {
    let dir = scratch("metrics_static");
    let profile = include_str!("../../hardware-profiles/esp32-p4.toml");
    assert!(profile.contains("static_w = 0.116\n"));
    let body = QUICKSTART
        .replacen("profile = \"esp32-p4\"", "profile = \"p.toml\"", 1)
        .replacen(
            "arrival = { kind = \"all-at-once\" }",
            "arrival = { kind = \"closed-loop\", think_time_ns = 5000000 }",
            1,
        )
        .replacen("timeline = true", "timeline = false", 1)
        + "\n[quality]\nsamples = 0\n";
    assert!(body.contains("profile = \"p.toml\"") && body.contains("closed-loop"));
    let mut runs = Vec::new();
    for (i, s) in [Some(0.116), Some(3.0), None].into_iter().enumerate() {
        let text = match s {
            Some(s) => profile.replacen("static_w = 0.116", &format!("static_w = {s}"), 1),
            None => {
                let cut = profile.find("[power]").unwrap();
                profile[..cut].to_string()
            }
        };
        std::fs::write(dir.join("p.toml"), text).unwrap();
        let exp = dir.join("e.toml");
        std::fs::write(&exp, &body).unwrap();
        let v = json_run(&exp, &dir.join(format!("o{i}")));
        let f = |k: &str| v[k].as_f64().unwrap();
        let makespan = f("makespan_ns");
        assert_eq!(
            f("energy_static_pj"),
            s.unwrap_or(0.0) * 1e3 * makespan,
            "{s:?} W"
        );
        // Two requests with 5 ms of thinking between them: idle static power is in the total.
        close(
            f("energy_total_mj") * 1e9 - f("energy_prefill_pj") - f("energy_decode_pj"),
            s.unwrap_or(0.0) * 1e3 * 5e6,
            "idle static energy",
        );
        runs.push(v);
    }
    for k in [
        "makespan_ns",
        "energy_transfer_pj",
        "energy_weight_read_pj",
        "energy_mac_pj",
        "hit_rate",
    ] {
        assert_eq!(runs[0][k], runs[1][k], "{k}");
        assert_eq!(runs[0][k], runs[2][k], "{k}");
    }
}

/// A compute tier that is block storage (NAND flash, UFS, NVMe) is refused, naming the key and
/// the way to allow it, by `profile check` and by `moesim run`; `compute_from_storage = true`
/// allows it.
#[test]
fn a_block_storage_compute_tier_needs_compute_from_storage() {
    let dir = scratch("metrics_storage");
    let cases = [
        (
            include_str!("../../hardware-profiles/esp32-p4.toml"),
            "compute_tier = \"psram\"",
            "sdcard",
            "flash_nand",
        ),
        (
            include_str!("../../hardware-profiles/snapdragon-8-gen-3.toml"),
            "compute_tier = \"dram\"",
            "ufs",
            "ufs",
        ),
        (
            include_str!("../../hardware-profiles/apple-m2.toml"),
            "compute_tier = \"dram\"",
            "ssd",
            "nvme",
        ),
    ];
    for (i, (profile, from, tier, kind)) in cases.iter().enumerate() {
        assert_eq!(profile.matches(from).count(), 1, "{from}");
        let refused = dir.join(format!("refused{i}.toml"));
        std::fs::write(
            &refused,
            profile.replacen(from, &format!("compute_tier = \"{tier}\""), 1),
        )
        .unwrap();
        let allowed = dir.join(format!("allowed{i}.toml"));
        std::fs::write(
            &allowed,
            profile.replacen(
                from,
                &format!("compute_tier = \"{tier}\"\ncompute_from_storage = true"),
                1,
            ),
        )
        .unwrap();
        let r = refused.to_str().unwrap();
        let needles = [
            r,
            "compute_tier",
            tier,
            &format!("is block storage ({kind})"),
            "compute_from_storage = true",
        ];
        assert_bad_input(&moesim(["profile", "check", r]), &needles);
        assert_bad_input(&moesim(["profile", "show", r]), &needles);
        let run = moesim(["profile", "check", allowed.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        // Through an experiment.
        let exp = dir.join(format!("exp{i}.toml"));
        std::fs::write(
            &exp,
            format!(
                "schema_version = 1\nname = \"s\"\n[hardware]\nprofile = \"refused{i}.toml\"\n[model]\nspec = \"micro-moe\"\nformat = \"q2_k\"\n[trace]\ngenerator = \"micro-moe\"\nrequests = 1\nprefill_tokens = 2\ndecode_tokens = 4\n[quality]\nsamples = 0\n"
            ),
        )
        .unwrap();
        let out = dir.join("o");
        let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert_bad_input(
            &run,
            &[
                "hardware.profile",
                "compute_tier",
                "compute_from_storage = true",
            ],
        );
        assert!(!out.exists());
    }
    // The allowed NAND compute tier runs: every expert is "resident" in storage.
    let exp = dir.join("allowed.toml");
    std::fs::write(
        &exp,
        "schema_version = 1\nname = \"s\"\n[hardware]\nprofile = \"allowed0.toml\"\n[model]\nspec = \"micro-moe\"\nformat = \"q2_k\"\n[trace]\ngenerator = \"micro-moe\"\nrequests = 1\nprefill_tokens = 2\ndecode_tokens = 4\n[quality]\nsamples = 0\n",
    )
    .unwrap();
    let v = json_run(&exp, &dir.join("allowed-out"));
    assert_eq!(v["hit_rate"], 1.0);
}

fn csv_rows(path: &Path) -> (csv::StringRecord, Vec<csv::StringRecord>) {
    let mut rdr = csv::Reader::from_path(path).unwrap();
    let header = rdr.headers().unwrap().clone();
    let rows = rdr.records().map(Result::unwrap).collect();
    (header, rows)
}

/// Common random numbers: with `replicates = 2`, replicate r of every point runs on the same
/// seed, so every point of a replicate routes the same trace (identical popularity rows) and
/// points that differ only in what cannot change the cache (the arrival process: cache
/// decisions never depend on time) have the same hit rate and bytes loaded, while the two
/// replicates differ.
#[test]
fn the_points_of_one_replicate_share_their_random_numbers() {
    let dir = scratch("metrics_crn");
    let exp = dir.join("crn.toml");
    std::fs::write(
        &exp,
        r#"schema_version = 1
name = "crn"
seed = 1

[hardware]
profile = "esp32-p4"

[model]
spec = "micro-moe"
format = "q2_k"

[trace]
generator = "micro-moe"
requests = 1
prefill_tokens = 4
decode_tokens = 8

[cache]
capacity_experts = 3

[quality]
samples = 0

[sweep]
axes = { "cache.policy" = ["lru", "lfu"], "scenario.arrival" = [{ kind = "all-at-once" }, { kind = "closed-loop", think_time_ns = 1000000 }] }
replicates = 2
"#,
    )
    .unwrap();
    let out = dir.join("o");
    let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    let (h, rows) = csv_rows(&out.join("results.csv"));
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let (point, rep, policy) = (col("point"), col("replicate"), col("axis.cache.policy"));
    assert_eq!(rows.len(), 8);
    for r in ["0", "1"] {
        let of_rep: Vec<&csv::StringRecord> = rows.iter().filter(|x| &x[rep] == r).collect();
        assert_eq!(of_rep.len(), 4);
        assert!(
            of_rep
                .iter()
                .all(|x| x[col("seed")] == of_rep[0][col("seed")])
        );
        for p in ["lru", "lfu"] {
            let same: Vec<&&csv::StringRecord> =
                of_rep.iter().filter(|x| &x[policy] == p).collect();
            assert_eq!(same.len(), 2);
            for metric in ["hit_rate", "bytes_loaded", "misses"] {
                assert_eq!(
                    same[0][col(metric)],
                    same[1][col(metric)],
                    "replicate {r}, {p}: {metric} of {} and {}",
                    &same[0][point],
                    &same[1][point]
                );
            }
        }
    }
    let seed_of = |r: &str| {
        rows.iter()
            .find(|x| &x[rep] == r)
            .map(|x| x[col("seed")].to_string())
            .unwrap()
    };
    assert_ne!(
        seed_of("0"),
        seed_of("1"),
        "replicates draw different numbers"
    );

    // The selections of every (layer, expert) are the same for every point of a replicate.
    let (h, rows) = csv_rows(&out.join("popularity.csv"));
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let selections = |r: &str, p: &str| -> Vec<String> {
        rows.iter()
            .filter(|x| &x[col("replicate")] == r && &x[col("point")] == p)
            .map(|x| {
                format!(
                    "{},{},{}",
                    &x[col("layer")],
                    &x[col("expert")],
                    &x[col("selections")]
                )
            })
            .collect()
    };
    let points: Vec<String> = {
        let mut v: Vec<String> = rows.iter().map(|x| x[col("point")].to_string()).collect();
        v.dedup();
        v
    };
    assert_eq!(points.len(), 4, "{points:?}");
    for r in ["0", "1"] {
        let first = selections(r, &points[0]);
        assert_eq!(first.len(), 8 * 16);
        for p in &points[1..] {
            assert_eq!(
                selections(r, p),
                first,
                "replicate {r}: {p} vs {}",
                points[0]
            );
        }
    }
    assert_ne!(
        selections("0", &points[0]),
        selections("1", &points[0]),
        "the replicates route different traces"
    );
}
