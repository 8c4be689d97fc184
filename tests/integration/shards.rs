//! Sharded sweeps: `--shard I/N`, `--list-points` and `moesim merge`, against an unsharded run.

use std::path::{Path, PathBuf};

use crate::util::{assert_bad_input, moesim, scratch};

const SWEEP: &str = r#"schema_version = 1
name = "shard-sweep"
seed = 9
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
samples = 12
[sweep]
axes = { "router.lambda" = [0.0, 0.5, 1.0], "cache.policy" = ["lru", "fifo", "sieve"] }
replicates = 2
"#;

const FILES: [&str; 5] = [
    "results.csv",
    "summary.csv",
    "latency.csv",
    "popularity.csv",
    "summary.md",
];

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("sweep.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn run(args: &[&str]) -> crate::util::Run {
    let r = moesim(args.iter().copied());
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    r
}

fn shard(exp: &Path, i: usize, dir: &Path, threads: &str) -> PathBuf {
    let out = dir.join(format!("part{i}"));
    run(&[
        "run",
        exp.to_str().unwrap(),
        "--shard",
        &format!("{i}/3"),
        "--out",
        out.to_str().unwrap(),
        "--threads",
        threads,
    ]);
    out
}

fn same_report(a: &Path, b: &Path) {
    for f in FILES {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn merged_shards_equal_an_unsharded_run_byte_for_byte() {
    let dir = scratch("shards_equal");
    let exp = write(&dir, SWEEP);
    let e = exp.to_str().unwrap();
    let whole = dir.join("whole");
    run(&["run", e, "--out", whole.to_str().unwrap()]);
    // The shards partition the runs, whole points at a time.
    let all = run(&["run", e, "--list-points"]).stdout;
    let mut listed: Vec<String> = Vec::new();
    for i in 0..3 {
        let s = run(&["run", e, "--list-points", "--shard", &format!("{i}/3")]).stdout;
        listed.extend(s.lines().skip(1).map(String::from));
    }
    listed.sort_by_key(|l| l.split('\t').next().unwrap().parse::<usize>().unwrap());
    assert_eq!(listed, all.lines().skip(1).collect::<Vec<_>>());
    assert_eq!(listed.len(), 18);
    let parts: Vec<PathBuf> = (0..3)
        .map(|i| shard(&exp, i, &dir, ["1", "2", "1"][i]))
        .collect();
    assert!(!parts[0].join("results.csv").exists());
    let merged = dir.join("merged");
    // Any order of the parts.
    run(&[
        "merge",
        parts[2].to_str().unwrap(),
        parts[0].to_str().unwrap(),
        parts[1].to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    same_report(&whole, &merged);
    assert!(merged.join("plots/hit-rate-vs-router-lambda.png").is_file());
}

#[test]
fn merge_names_missing_points_and_refuses_disagreeing_parts() {
    let dir = scratch("shards_failures");
    let exp = write(&dir, SWEEP);
    let e = exp.to_str().unwrap();
    let whole = dir.join("whole");
    run(&["run", e, "--out", whole.to_str().unwrap()]);
    let p0 = shard(&exp, 0, &dir, "2");
    let p2 = shard(&exp, 2, &dir, "2");
    let merged = dir.join("merged");
    let m = merged.to_str().unwrap();
    // Shard 1 never ran: merge fails, naming its points and the shard.
    let shard1 = run(&["run", e, "--list-points", "--shard", "1/3"]).stdout;
    let key = shard1.lines().nth(1).unwrap().split('\t').nth(2).unwrap();
    let r = moesim([
        "merge",
        p0.to_str().unwrap(),
        p2.to_str().unwrap(),
        "--out",
        m,
    ]);
    assert_bad_input(&r, &["6 of 18 runs are missing", "shard 1/3", key]);
    assert!(!merged.exists());
    // Re-running the failed shard and merging again succeeds.
    let p1 = shard(&exp, 1, &dir, "1");
    let parts = [
        p0.to_str().unwrap(),
        p1.to_str().unwrap(),
        p2.to_str().unwrap(),
    ];
    run(&["merge", parts[0], parts[1], parts[2], "--out", m]);
    same_report(&whole, &merged);
    // A copy of shard 0 whose results differ in one run is an error, not a silent pick.
    let forged = dir.join("forged");
    std::fs::create_dir_all(forged.join("points")).unwrap();
    for f in std::fs::read_dir(&p0).unwrap() {
        let f = f.unwrap();
        if f.file_type().unwrap().is_file() {
            std::fs::copy(f.path(), forged.join(f.file_name())).unwrap();
        }
    }
    for f in std::fs::read_dir(p0.join("points")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), forged.join("points").join(f.file_name())).unwrap();
    }
    let part = forged.join("points/000000.csv");
    let text = std::fs::read_to_string(&part).unwrap();
    let (head, row) = text.split_once('\n').unwrap();
    let fields: Vec<&str> = row.trim_end().split(',').collect();
    let hit = head.split(',').position(|h| h == "hits").unwrap();
    let mut changed: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
    changed[hit] = (fields[hit].parse::<u64>().unwrap() + 1).to_string();
    std::fs::write(&part, format!("{head}\n{}\n", changed.join(","))).unwrap();
    let r = moesim([
        "merge",
        parts[0],
        forged.to_str().unwrap(),
        parts[1],
        parts[2],
        "--out",
        dir.join("merged2").to_str().unwrap(),
    ]);
    assert_bad_input(&r, &["different results", "run 0"]);
    // A part of another version of the experiment file.
    let other_dir = dir.join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = write(&other_dir, &SWEEP.replace("seed = 9", "seed = 10"));
    let q = shard(&other, 1, &other_dir, "2");
    let r = moesim([
        "merge",
        parts[0],
        q.to_str().unwrap(),
        parts[2],
        "--out",
        dir.join("merged3").to_str().unwrap(),
    ]);
    assert_bad_input(&r, &["different experiment file"]);
    let r = moesim(["merge", dir.join("nowhere").to_str().unwrap(), "--out", m]);
    assert_bad_input(&r, &["not a sweep run directory"]);
}

#[test]
fn bad_shard_arguments_fail_on_one_line() {
    let dir = scratch("shards_args");
    let exp = write(&dir, SWEEP);
    let e = exp.to_str().unwrap();
    for (arg, needle) in [
        ("3/3", "0 <= I < N"),
        ("1", "expected I/N"),
        ("a/3", "not a number"),
    ] {
        let r = moesim(["run", e, "--shard", arg, "--list-points"]);
        assert_eq!(r.code, 2, "{arg}");
        assert!(r.stderr.contains(needle), "{arg}: {}", r.stderr);
    }
    let r = moesim([
        "run",
        "--shard",
        "0/2",
        "--out",
        dir.join("q").to_str().unwrap(),
    ]);
    assert_bad_input(&r, &["apply to sweeps"]);
}
