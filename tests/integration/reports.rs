//! Sweep reports: plots named in `[report]`, the latency and popularity side tables, the seed
//! table, weight SQNR per format, and experiments on imported traces.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::util::{assert_bad_input, moesim, scratch};

const BASE: &str = r#"schema_version = 1
name = "report-sweep"
seed = 3
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
policy = "lru"
capacity_experts = 3
[quality]
samples = 24
"#;

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("exp.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn rows(path: &Path) -> Vec<HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let h: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records()
        .map(|rec| {
            h.iter()
                .cloned()
                .zip(rec.unwrap().iter().map(String::from))
                .collect()
        })
        .collect()
}

#[test]
fn named_plots_are_drawn_and_the_seed_table_reports_measured_numbers() {
    let dir = scratch("report_named");
    let exp = write(
        &dir,
        &format!(
            "{BASE}[report]\nplots = [\"seed-table\", \"miss-ratio\", \"latency-breakdown\", \"latency-cdf\", \"popularity-heatmap\", \"pareto\", \"hit-vs-throughput\"]\n[sweep]\naxes = {{ \"cache.capacity_experts\" = [1, 2], \"router\" = [{{ kind = \"standard\" }}, {{ kind = \"memory-aware\", lambda = 1.0 }}] }}\nreplicates = 2\n"
        ),
    );
    let out = dir.join("out");
    let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for p in [
        "miss-ratio",
        "latency-breakdown",
        "latency-cdf",
        "quality-vs-throughput",
        "hit-rate-vs-throughput",
    ] {
        for ext in ["png", "svg"] {
            assert!(out.join(format!("plots/{p}.{ext}")).is_file(), "{p}.{ext}");
        }
    }
    // Only the named plots: no metric-vs-axis charts.
    assert!(
        !out.join("plots/hit-rate-vs-cache-capacity-experts.png")
            .exists()
    );
    // Standard and memory-aware routing select differently: more than one heatmap.
    let heatmaps = std::fs::read_dir(out.join("plots"))
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            let n = n.to_string_lossy();
            n.starts_with("popularity-") && n.ends_with(".png")
        })
        .count();
    assert!(heatmaps >= 2, "{heatmaps} heatmaps");
    // The seed table quotes the summary's numbers.
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("## Seed §6.3 table, measured"), "{md}");
    assert!(md.contains("| Cache hit rate | 34% | 71% | +37% |"));
    let summary = rows(&out.join("summary.csv"));
    let standard = summary
        .iter()
        .find(|r| r["point"] == "cache.capacity_experts=1,router=kind=standard")
        .expect("point key");
    let hit: f64 = standard["hit_rate_mean"].parse().unwrap();
    assert!(
        md.contains(&format!("| Cache hit rate (decode) | {:.1} %", hit * 100.0)),
        "{md}"
    );
}

#[test]
fn plots_that_do_not_fit_the_axes_are_refused_before_running() {
    let dir = scratch("report_unusable");
    let out = dir.join("out");
    for (plots, needle) in [
        ("[\"hardware-bars\"]", "hardware.profile"),
        ("[\"miss-ratio\"]", "capacity"),
        ("[\"seed-table\"]", "router"),
        ("[\"no-such-plot\"]", "no-such-plot"),
    ] {
        let exp = write(
            &dir,
            &format!(
                "{BASE}[report]\nplots = {plots}\n[sweep]\naxes = {{ \"cache.policy\" = [\"lru\", \"fifo\"] }}\n"
            ),
        );
        let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert_bad_input(&run, &["report.plots", needle]);
        assert!(!out.exists());
    }
}

#[test]
fn the_side_tables_agree_with_the_results() {
    let dir = scratch("report_sides");
    let exp = write(
        &dir,
        &format!(
            "{BASE}[sweep]\naxes = {{ \"cache.policy\" = [\"lru\", \"sieve\"] }}\nreplicates = 2\n"
        ),
    );
    let out = dir.join("out");
    let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let results = rows(&out.join("results.csv"));
    let latency = rows(&out.join("latency.csv"));
    let popularity = rows(&out.join("popularity.csv"));
    assert_eq!(latency.len(), results.len() * 101);
    // micro-moe: 8 layers x 16 experts.
    assert_eq!(popularity.len(), results.len() * 8 * 16);
    for r in &results {
        let of = |t: &[HashMap<String, String>]| -> Vec<HashMap<String, String>> {
            t.iter()
                .filter(|x| x["point"] == r["point"] && x["replicate"] == r["replicate"])
                .cloned()
                .collect()
        };
        let lat = of(&latency);
        let at = |pct: &str| {
            lat.iter().find(|x| x["percentile"] == pct).unwrap()["token_latency_ns"].clone()
        };
        assert_eq!(at("50"), r["token_latency_p50_ns"]);
        assert_eq!(at("99"), r["token_latency_p99_ns"]);
        assert_eq!(at("100"), r["token_latency_max_ns"]);
        // Every layer routes every token of both requests to top-2 experts.
        let pop = of(&popularity);
        for layer in 0..8 {
            let total: u64 = pop
                .iter()
                .filter(|x| x["layer"] == layer.to_string())
                .map(|x| x["selections"].parse::<u64>().unwrap())
                .sum();
            assert_eq!(total, 2 * (4 + 12) * 2, "layer {layer}");
        }
    }
}

#[test]
fn weight_sqnr_ranks_the_formats() {
    let dir = scratch("report_sqnr");
    let exp = write(
        &dir,
        &format!(
            "{}[sweep]\naxes = {{ \"model.format\" = [\"q2_k\", \"q3_k\", \"q4_k\", \"uq3\", \"piq3\"] }}\n",
            BASE.replace("capacity_experts = 3", "capacity_experts = 2")
        ),
    );
    let out = dir.join("out");
    let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sqnr: HashMap<String, f64> = rows(&out.join("results.csv"))
        .iter()
        .map(|r| (r["format"].clone(), r["weight_sqnr_db"].parse().unwrap()))
        .collect();
    assert!(
        sqnr["q2_k"] < sqnr["q3_k"] && sqnr["q3_k"] < sqnr["q4_k"],
        "{sqnr:?}"
    );
    // The seed's pi step loses to the MSE-optimal uniform step at 3 bits (quant eval: -2.2 dB).
    assert!(sqnr["piq3"] < sqnr["uq3"] - 1.0, "{sqnr:?}");
    // Gaussian proxies: Q4_K near its 22.9 dB anchor (quantization.md).
    assert!((sqnr["q4_k"] - 22.9).abs() < 0.5, "{sqnr:?}");
    assert!(out.join("plots/sqnr-vs-bits.png").is_file());
}

/// A small JSONL trace in the speculative-moe layout (2 layers, 4 experts, top-2); layer 1 of
/// request 0 lacks its last event.
fn jsonl_trace(dir: &Path) -> PathBuf {
    let mut s = String::new();
    for problem in 0..2 {
        for layer in 0..2 {
            let tokens = if problem == 0 && layer == 1 { 5 } else { 6 };
            for t in 0..tokens {
                let a = (t + layer + problem) % 4;
                let b = (a + 1 + t % 2) % 4;
                s.push_str(&format!(
                    "{{\"problem_id\": {problem}, \"layer\": {layer}, \"token_idx\": {t}, \"experts\": [{a}, {b}], \"gating_probs\": [0.7, 0.3]}}\n"
                ));
            }
        }
    }
    let p = dir.join("routing.jsonl");
    std::fs::write(&p, s).unwrap();
    p
}

#[test]
fn an_experiment_imports_a_jsonl_trace_in_memory() {
    let dir = scratch("report_import");
    jsonl_trace(&dir);
    // A model with 2 MoE layers of 4 experts, top-2.
    let model = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/models/nano-moe.toml"),
    )
    .unwrap()
    .replace("layers = 8", "layers = 2")
    .replace("routed_experts = 16", "routed_experts = 4");
    std::fs::write(dir.join("tiny.toml"), model).unwrap();
    let exp = |truncate: &str| {
        format!(
            r#"schema_version = 1
name = "imported"
[hardware]
profile = "esp32-p4"
[model]
spec = "tiny.toml"
format = "q2_k"
[trace.import]
format = "jsonl"
files = ["routing.jsonl"]
map = {{ request = "problem_id", layer = "layer", position = "token_idx", experts = "experts", weights = "gating_probs" }}
experts = 4
top_k = 2
{truncate}
[cache]
capacity_experts = 2
"#
        )
    };
    let out = dir.join("out");
    let path = write(&dir, &exp(""));
    let run = moesim([
        "run",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_bad_input(&run, &["whole tokens"]);
    let path = write(&dir, &exp("truncate_to_whole_tokens = true"));
    let run = moesim([
        "run",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let m = &rows(&out.join("metrics.csv"))[0];
    // Request 0 keeps 5 tokens, request 1 all 6.
    assert_eq!(m["decode_tokens"], "11");
    assert!(
        m["quality_note"].contains("hidden"),
        "{}",
        m["quality_note"]
    );
    let path = write(
        &dir,
        &exp("truncate_to_whole_tokens = true").replace("\"jsonl\"", "\"csv\""),
    );
    let run = moesim([
        "run",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_bad_input(&run, &["trace.import", "csv"]);
}
