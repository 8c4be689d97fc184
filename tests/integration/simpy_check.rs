//! The event engine against SimPy (PyPI `simpy==4.1.2`): `scripts/simpy_crosscheck.py`
//! re-simulates, in SimPy, the inputs moesim dumps for two shipped experiments (the quickstart
//! on an ESP32-P4, and Mixtral-8x7B offloaded on an RTX 4090), and two placements that compute
//! experts in place on a desktop's CPU and batched decode (`tests/data/simpy-*.toml`). The semantics are the same, so
//! decode-token latencies, time to first token and makespan must agree exactly (the script
//! itself fails at a 1 % difference). Skipped, with a printed SKIP line, only when
//! `MOESIM_SKIP_PYTHON=1`.

use std::process::Command;

use crate::libcachesim_check::python;

#[test]
fn simpy_gives_the_same_latencies() {
    let Some(py) = python() else { return };
    let root = env!("CARGO_MANIFEST_DIR");
    for exp in [
        "experiments/quickstart.toml",
        "experiments/mixtral-4090-offload.toml",
        // Issue 19: experts computed in place on a second unit, prompts in micro-batches.
        "tests/data/simpy-in-place.toml",
        "tests/data/simpy-layers.toml",
        // Issue 21: four requests per step, continuous batching, prompts alone.
        "tests/data/simpy-batch.toml",
    ] {
        let out = Command::new(&py)
            .arg(format!("{root}/scripts/simpy_crosscheck.py"))
            .args([
                env!("CARGO_BIN_EXE_moesim"),
                &format!("{root}/{exp}"),
                "--repeat",
                "1",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{exp}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        println!("{exp}: {}", v["relative_difference"]);
        for key in [
            "token_latency_mean_ns",
            "token_latency_p50_ns",
            "token_latency_p95_ns",
            "ttft_mean_ns",
            "makespan_ns",
        ] {
            assert_eq!(v["moesim"][key], v["simpy"][key], "{exp}: {key}");
        }
        assert!(v["decode_tokens"].as_u64().unwrap() >= 128);
    }
}
