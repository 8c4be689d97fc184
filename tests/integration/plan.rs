//! `moesim plan` (issue 22, item 5): a verdict from sizes, then the placements the device can
//! run, simulated and ranked, with llama.cpp's command line where llama.cpp has one.

use serde_json::Value;

use crate::util::{assert_bad_input, moesim};

fn plan(args: &[&str]) -> Value {
    let mut all = vec!["plan"];
    all.extend_from_slice(args);
    all.push("--json");
    let run = moesim(all);
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

fn fit(p: &Value) -> &str {
    p["verdicts"][0][1]["fit"].as_str().unwrap()
}

#[test]
fn a_small_model_fits_a_big_gpu_and_runs_with_every_weight_in_vram() {
    let p = plan(&[
        "--hardware",
        "pc-rtx4090-pcie4",
        "--model",
        "micro-moe",
        "--formats",
        "q4_k",
    ]);
    assert_eq!(fit(&p), "fits-entirely");
    let best = &p["candidates"][0];
    assert!(best["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    let cmd = best["llama_cpp"].as_str().unwrap();
    assert!(cmd.contains("-ngl 99") && cmd.contains("-c 4096"), "{cmd}");
}

#[test]
fn qwen3_30b_on_a_12_gb_card_offloads_and_gets_an_n_cpu_moe_command_line() {
    let p = plan(&[
        "--hardware",
        "pc-rtx3060-12gb-ddr5",
        "--model",
        "qwen3-30b-a3b",
        "--formats",
        "q4_k",
        "--context",
        "8192",
    ]);
    assert_eq!(fit(&p), "runs-with-offloading");
    let c = p["candidates"].as_array().unwrap();
    // Best first.
    let scores: Vec<f64> = c.iter().map(|x| x["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // The best layer split is llama.cpp's --n-cpu-moe, at the fewest blocks that fit, with the
    // context asked for.
    let split = c
        .iter()
        .find(|x| {
            x["llama_cpp"]
                .as_str()
                .is_some_and(|s| s.contains("--n-cpu-moe"))
        })
        .expect("a layer split runs");
    let cmd = split["llama_cpp"].as_str().unwrap();
    assert!(cmd.contains("-c 8192"), "{cmd}");
    let n: u64 = cmd
        .split("--n-cpu-moe ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let splits: Vec<u64> = c
        .iter()
        .filter_map(|x| x["in_place_layers"].as_u64())
        .collect();
    assert_eq!(
        n,
        *splits.iter().min().unwrap(),
        "the fewest blocks on the CPU decode fastest"
    );
    // Every setting fits the card.
    for x in c {
        assert!(
            x["primary_bytes"].as_u64().unwrap() <= 12_884_901_888,
            "{x}"
        );
    }
}

#[test]
fn too_large_a_model_streams_from_storage_or_will_not_run() {
    let p = plan(&[
        "--hardware",
        "jetson-orin-nano",
        "--model",
        "qwen3-30b-a3b",
        "--formats",
        "q4_k",
    ]);
    assert_eq!(fit(&p), "streams-from-storage");
    assert!(!p["candidates"].as_array().unwrap().is_empty());
    let args = [
        "--hardware",
        "pc-rtx3060-12gb-ddr5",
        "--model",
        "deepseek-v3",
        "--formats",
        "q2_k",
    ];
    let p = plan(&args);
    assert_eq!(fit(&p), "will-not-run");
    assert!(p["candidates"].as_array().unwrap().is_empty());
    let reason = p["verdicts"][0][1]["reason"].as_str().unwrap();
    assert!(reason.contains("no storage tier"), "{reason}");
    let run = moesim(std::iter::once("plan").chain(args));
    assert_eq!(run.code, 0);
    assert!(
        run.stdout
            .starts_with("deepseek-v3 on pc-rtx3060-12gb-ddr5 at q2_k: WILL NOT RUN (")
    );
}

#[test]
fn bad_plan_arguments_fail_on_one_line() {
    let base = ["plan", "--hardware", "pc-rtx4090-pcie4", "--model"];
    for (extra, needle) in [
        (&["micro-moe", "--batch", "0"][..], "--batch"),
        (&["no-such-model"][..], "no-such-model"),
        (&["micro-moe", "--formats", "f32"][..], "--formats"),
        (&["micro-moe", "--context", "0"][..], "--context"),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        assert_bad_input(&moesim(args), &[needle]);
    }
}
