//! Sweeps: expansion, parallel determinism, resume, validation before running, re-plotting.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{assert_bad_input, moesim, scratch};

const SWEEP: &str = r#"schema_version = 1
name = "tiny-sweep"
seed = 5
[hardware]
profile = "esp32-p4"
[model]
spec = "micro-moe"
format = "q2_k"
[trace]
generator = "micro-moe"
requests = 1
prefill_tokens = 4
decode_tokens = 10
[router]
kind = "memory-aware"
lambda = 0.0
[cache]
capacity_experts = 3
[quality]
samples = 16
[sweep]
axes = { "router.lambda" = [0.0, 0.5, 1.0], "cache.policy" = ["lru", "fifo"] }
zip = [{ "prefetch.kind" = ["none", "oracle"], "trace.decode_tokens" = [10, 12] }]
replicates = 2
"#;

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("sweep.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn run_threads(exp: &Path, out: &Path, threads: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_moesim"))
        .args([
            "run",
            exp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--threads",
            threads,
        ])
        .output()
        .unwrap()
}

#[test]
fn a_sweep_is_byte_identical_at_one_and_two_threads() {
    let dir = scratch("sweep_threads");
    let exp = write(&dir, SWEEP);
    let mut files = Vec::new();
    for t in ["1", "2"] {
        let out = dir.join(t);
        let o = run_threads(&exp, &out, t);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        files.push([
            std::fs::read(out.join("results.csv")).unwrap(),
            std::fs::read(out.join("summary.csv")).unwrap(),
        ]);
    }
    assert_eq!(files[0], files[1]);
    let results = String::from_utf8(files[0][0].clone()).unwrap();
    // 3 λ × 2 policies × 2 zipped × 2 replicates.
    assert_eq!(results.lines().count(), 1 + 24);
    let header = results.lines().next().unwrap();
    assert!(header.starts_with("point,replicate,axis.cache.policy,axis.router.lambda,axis.prefetch.kind,axis.trace.decode_tokens,schema_version"), "{header}");
    // Replicates differ (their own seeds), points differ.
    let rows: Vec<&str> = results.lines().skip(1).collect();
    assert_ne!(
        rows[0].split_once(",0,").unwrap().1,
        rows[1].split_once(",1,").unwrap().1
    );
    let summary = String::from_utf8(files[0][1].clone()).unwrap();
    assert_eq!(summary.lines().count(), 1 + 12);
    assert!(summary.lines().next().unwrap().contains("hit_rate_ci95"));
    for p in ["hit-rate-vs-router-lambda", "quality-vs-throughput"] {
        assert!(
            dir.join("1/plots").join(format!("{p}.png")).is_file(),
            "{p}"
        );
        assert!(
            dir.join("1/plots").join(format!("{p}.svg")).is_file(),
            "{p}"
        );
    }
}

#[test]
fn a_killed_sweep_resumes_to_the_same_results() {
    let dir = scratch("sweep_resume");
    let exp = write(&dir, SWEEP);
    let clean = dir.join("clean");
    assert!(run_threads(&exp, &clean, "2").status.success());
    // Kill a run part-way (SIGKILL), then run again into the same directory.
    let out = dir.join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_moesim"))
        .args([
            "run",
            exp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--threads",
            "1",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    child.kill().unwrap();
    child.wait().unwrap();
    let o = run_threads(&exp, &out, "2");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(clean.join("results.csv")).unwrap(),
        std::fs::read(out.join("results.csv")).unwrap()
    );
    // A complete run skips everything.
    let o = run_threads(&exp, &out, "2");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("ran 0 of 24 runs (24 already done)"),
        "{stdout}"
    );
    // Removing two parts reruns exactly those.
    std::fs::remove_file(out.join("points/000003.csv")).unwrap();
    std::fs::remove_file(out.join("points/000017.csv")).unwrap();
    let o = run_threads(&exp, &out, "1");
    assert!(String::from_utf8_lossy(&o.stdout).contains("ran 2 of 24 runs (22 already done)"));
    assert_eq!(
        std::fs::read(clean.join("results.csv")).unwrap(),
        std::fs::read(out.join("results.csv")).unwrap()
    );
    // Another experiment file into the same directory is refused.
    let other = write(&dir, &SWEEP.replace("seed = 5", "seed = 6"));
    let run = moesim([
        "run",
        other.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_bad_input(&run, &["another version of the experiment file"]);
}

#[test]
fn invalid_points_are_reported_before_anything_runs() {
    let dir = scratch("sweep_invalid");
    let exp = write(
        &dir,
        &SWEEP.replace("[\"lru\", \"fifo\"]", "[\"lru\", \"belady\"]"),
    );
    let out = dir.join("out");
    let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_bad_input(
        &run,
        &[
            "point cache.policy=belady",
            "cache.policy",
            "standard router",
        ],
    );
    assert!(!out.exists());
    let exp = write(
        &dir,
        &SWEEP.replace(
            "\"trace.decode_tokens\" = [10, 12]",
            "\"trace.decode_tokens\" = [10]",
        ),
    );
    let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_bad_input(&run, &["sweep.zip[0]", "differ in length"]);
    let exp = write(
        &dir,
        &SWEEP.replace(
            "\"router.lambda\" = [0.0, 0.5, 1.0]",
            "\"router.lambda\" = []",
        ),
    );
    let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_bad_input(&run, &["sweep.router.lambda", "non-empty"]);
    assert!(!out.exists());
}

#[test]
fn plot_rerenders_from_the_csv() {
    let dir = scratch("sweep_plot");
    let exp = write(&dir, SWEEP);
    let out = dir.join("out");
    assert!(run_threads(&exp, &out, "2").status.success());
    let summary = std::fs::read(out.join("summary.csv")).unwrap();
    std::fs::remove_dir_all(out.join("plots")).unwrap();
    std::fs::remove_file(out.join("summary.csv")).unwrap();
    std::fs::remove_dir_all(out.join("points")).unwrap();
    let run = moesim(["plot", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(std::fs::read(out.join("summary.csv")).unwrap(), summary);
    assert!(out.join("plots/hit-rate-vs-router-lambda.png").is_file());
    let run = moesim(["plot", dir.join("nowhere").to_str().unwrap()]);
    assert_bad_input(&run, &["results.csv"]);
}

#[test]
fn the_committed_quickstart_results_equal_a_fresh_run() {
    let dir = scratch("sweep_committed_quickstart");
    let out = dir.join("q");
    let run = moesim(["run", "--out", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &Path| {
        let mut r = csv::Reader::from_path(p).unwrap();
        let h: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
        let row: Vec<String> = r
            .records()
            .next()
            .unwrap()
            .unwrap()
            .iter()
            .map(String::from)
            .collect();
        (h, row)
    };
    let (h0, committed) = read(&root.join("reports/quickstart/metrics.csv"));
    let (h1, fresh) = read(&out.join("metrics.csv"));
    assert_eq!(h0, h1, "the committed report's columns are current");
    for ((name, a), b) in h0.iter().zip(&committed).zip(&fresh) {
        if name.starts_with("output_") || name == "weight_sqnr_db" {
            // Proxy-expert outputs go through the SIMD kernels this CPU selects (AVX-512, AVX2
            // or SSE2), whose summation order differs in the last bits.
            let (x, y): (f64, f64) = (a.parse().unwrap(), b.parse().unwrap());
            assert!(
                (x - y).abs() <= 1e-4 * x.abs().max(1e-9),
                "{name}: {a} vs {b}"
            );
        } else {
            assert_eq!(a, b, "{name}");
        }
    }
}
