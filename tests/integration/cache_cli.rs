//! `moesim cache replay` (issue 4): miss-ratio curves on a real trace, CSV columns, determinism
//! across thread counts, and bad arguments.

use std::path::PathBuf;

use crate::util::{assert_bad_input, moesim, scratch};

fn mixtral_real(dir: &std::path::Path) -> PathBuf {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/traces/Mario928-speculative-moe");
    let out = dir.join("mixtral.jsonl");
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
        shared.join("humaneval_2_routing.jsonl").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    out
}

#[test]
fn replay_of_the_real_mixtral_trace_prints_curves_with_belady_on_top() {
    let dir = scratch("cache_replay_real");
    let trace = mixtral_real(&dir);
    let csv = dir.join("mrc.csv");
    let run = moesim([
        "cache",
        "replay",
        trace.to_str().unwrap(),
        "--capacity",
        "2,3,4,6",
        "--semantics",
        "sequential",
        "--model",
        "mixtral-8x7b",
        "--weight-format",
        "q4_k",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let table_start = lines.iter().position(|l| l.starts_with("policy")).unwrap();
    assert!(
        lines[table_start + 2].starts_with("belady"),
        "{}",
        run.stdout
    );
    for p in [
        "fifo",
        "lru",
        "lfu",
        "lfru",
        "arc",
        "sieve",
        "least-stale",
        "pinned",
        "ema:0.95",
        "belady",
    ] {
        assert!(
            run.stdout.contains(&format!("\n{p} ")),
            "{p} missing:\n{}",
            run.stdout
        );
    }
    assert!(run.stdout.contains("gap captured"));

    let text = std::fs::read_to_string(&csv).unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = rdr.headers().unwrap().iter().map(str::to_string).collect();
    for col in [
        "policy",
        "capacity_experts",
        "capacity_bytes",
        "layer",
        "accesses",
        "hits",
        "hit_rate",
        "byte_hit_rate",
        "evictions",
    ] {
        assert!(
            headers.iter().any(|h| h == col),
            "column {col} missing: {headers:?}"
        );
    }
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    // 10 policies x 4 capacities x (32 layers + all).
    assert_eq!(rows.len(), 10 * 4 * 33);
    let all: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[col("layer")] == "all").collect();
    assert_eq!(all.len(), 40);
    // Belady tops every demand-insertion policy at every capacity (sequential semantics).
    let cap_of = |r: &csv::StringRecord| r[col("capacity_experts")].parse::<f64>().unwrap();
    for cap in [2.0, 3.0, 4.0, 6.0] {
        let hits = |p: &str| -> u64 {
            all.iter()
                .find(|r| &r[col("policy")] == p && cap_of(r) == cap)
                .unwrap()[col("hits")]
            .parse()
            .unwrap()
        };
        for p in [
            "fifo",
            "lru",
            "lfu",
            "lfru",
            "arc",
            "sieve",
            "least-stale",
            "ema:0.95",
        ] {
            assert!(hits(p) <= hits("belady"), "{p} beats Belady at {cap}");
        }
    }
    // Byte capacity: 4 experts per layer x 32 layers of Q4_K Mixtral experts.
    let r4 = all
        .iter()
        .find(|r| &r[col("policy")] == "lru" && cap_of(r) == 4.0)
        .unwrap();
    assert_eq!(
        r4[col("capacity_bytes")].parse::<u64>().unwrap(),
        4 * 32 * 3 * (4096 * 14336 / 256) * 144
    );
}

#[test]
fn replay_csv_is_identical_for_one_and_two_threads() {
    let dir = scratch("cache_replay_threads");
    let trace = dir.join("t.jsonl");
    let run = moesim([
        "trace",
        "generate",
        "--preset",
        "olmoe-like",
        "--requests",
        "3",
        "--tokens",
        "40",
        "--out",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut outputs = Vec::new();
    for threads in ["1", "2"] {
        let csv = dir.join(format!("t{threads}.csv"));
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_moesim"))
            .args([
                "cache",
                "replay",
                trace.to_str().unwrap(),
                "--capacity",
                "4,8,16",
                "--scope",
                "shared",
            ])
            .args(["--out", csv.to_str().unwrap()])
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        outputs.push(std::fs::read(&csv).unwrap());
    }
    assert_eq!(outputs[0], outputs[1]);
}

#[test]
fn warm_tier_adds_promotions() {
    let dir = scratch("cache_replay_warm");
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
        "cache",
        "replay",
        trace.to_str().unwrap(),
        "--capacity",
        "2,3",
        "--warm-capacity",
        "3",
        "--policy",
        "lru",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let all: Vec<&serde_json::Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["layer"] == "all")
        .collect();
    assert!(
        all.iter().all(|r| r["policy"] != "belady"),
        "Belady is not defined with tiers"
    );
    assert!(
        all.iter().any(|r| r["warm_hits"].as_u64().unwrap() > 0),
        "{all:?}"
    );
}

/// Every policy runs in a two-tier hierarchy with caches reset between requests (ARC once
/// looped forever there), and `--timing --out` writes a rectangular CSV on a multi-layer trace.
#[test]
fn every_policy_runs_with_a_warm_tier_and_timing_rows_are_rectangular() {
    let dir = scratch("cache_replay_warm_all");
    let trace = dir.join("t.jsonl");
    let run = moesim([
        "trace",
        "generate",
        "--preset",
        "micro-moe",
        "--requests",
        "3",
        "--seed",
        "3",
        "--out",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let csv_path = dir.join("replay.csv");
    let run = moesim([
        "cache",
        "replay",
        trace.to_str().unwrap(),
        "--capacity",
        "3",
        "--warm-capacity",
        "2",
        "--between-requests",
        "reset",
        "--no-reference",
        "--policy",
        "fifo,lru,lfu,lfru,arc,sieve,least-stale,pinned,ema",
        "--timing",
        "--out",
        csv_path.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(&csv_path).unwrap();
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    let h = rd.headers().unwrap().clone();
    let t = h.iter().position(|c| c == "replay_seconds").unwrap();
    let l = h.iter().position(|c| c == "layer").unwrap();
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    assert!(rows.len() > 9, "per-layer rows and `all` rows");
    for r in &rows {
        assert_eq!(r.len(), h.len());
        assert_eq!(r[l] == *"all", !r[t].is_empty(), "{r:?}");
    }
}

#[test]
fn bad_replay_arguments_exit_2() {
    let dir = scratch("cache_replay_bad");
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
    assert_eq!(run.code, 0);
    let t = trace.to_str().unwrap();
    assert_bad_input(
        &moesim(["cache", "replay", t]),
        &["give --capacity and/or --capacity-bytes"],
    );
    let run = moesim(["cache", "replay", t, "--capacity", "2", "--policy", "mru"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown policy `mru`"),
        "{}",
        run.stderr
    );
    assert_bad_input(
        &moesim(["cache", "replay", t, "--capacity", "0"]),
        &["capacities must be > 0"],
    );
    let bogus = dir.join("bogus.bin");
    std::fs::write(&bogus, [0u8; 25]).unwrap();
    assert_bad_input(
        &moesim([
            "cache",
            "replay",
            bogus.to_str().unwrap(),
            "--input-format",
            "oracle-general",
            "--capacity",
            "2",
        ]),
        &["not a whole number of 24-byte oracleGeneral records"],
    );
}
