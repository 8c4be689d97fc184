//! Routing traces (issue 3): generation and its round trip, imports, exports, statistics, the
//! fit to the real Mixtral trace, and one test per bad-input case. Every rejected input must
//! exit 2 with `file:line` and leave nothing at `--out`.

use std::path::{Path, PathBuf};

use moesim::trace::native::{TraceWriter, read_all};

use crate::util::{assert_bad_input, moesim, scratch};

const MAPS: [&str; 10] = [
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
];

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The real Mixtral decode traces (no license: read from ../shared, never copied).
fn mixtral_trace(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/traces/Mario928-speculative-moe")
        .join(name);
    assert!(
        p.is_file(),
        "{} is missing: ../shared must sit beside the repository",
        p.display()
    );
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Directory entries other than `keep`, to prove a failed command left no file behind.
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn generated_trace_round_trips_byte_identically() {
    let dir = scratch("trace_round_trip");
    let a = dir.join("a.jsonl");
    let run = moesim(
        [
            "trace",
            "generate",
            "--preset",
            "micro-moe",
            "--requests",
            "3",
            "--tokens",
            "20",
            "--prefill",
            "5",
        ]
        .into_iter()
        .chain(["--seed", "11", "--out", s(&a)]),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let original = std::fs::read(&a).unwrap();
    let (meta, records) = read_all("a", &original[..]).unwrap();
    assert_eq!(records.len(), 3 * (5 + 20) * 8);
    assert!(meta.logits && records.iter().all(|r| r.logits.len() == 16));
    let mut w = TraceWriter::new(Vec::new(), &meta).unwrap();
    for r in &records {
        w.write(r).unwrap();
    }
    assert_eq!(
        w.finish().unwrap(),
        original,
        "write(read(trace)) must equal the trace byte for byte"
    );
}

#[test]
fn generation_is_deterministic_across_thread_counts() {
    let dir = scratch("trace_determinism");
    let mut outputs = Vec::new();
    for threads in ["1", "2"] {
        let out = dir.join(format!("t{threads}.jsonl"));
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_moesim"))
            .args([
                "trace",
                "generate",
                "--preset",
                "mixtral-like",
                "--requests",
                "5",
                "--tokens",
                "16",
                "--seed",
                "3",
            ])
            .args(["--out", s(&out)])
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert!(o.status.success());
        outputs.push(std::fs::read(&out).unwrap());
    }
    assert_eq!(outputs[0], outputs[1]);
    let other = dir.join("seed4.jsonl");
    let run = moesim(
        [
            "trace",
            "generate",
            "--preset",
            "mixtral-like",
            "--requests",
            "5",
            "--tokens",
            "16",
        ]
        .into_iter()
        .chain(["--seed", "4", "--out", s(&other)]),
    );
    assert_eq!(run.code, 0);
    assert_ne!(
        std::fs::read(&other).unwrap(),
        outputs[0],
        "a different seed gives a different trace"
    );
}

#[test]
fn mixtral_like_preset_matches_the_mixtral_statistics() {
    let dir = scratch("trace_mixtral_like");
    let out = dir.join("m.jsonl");
    let run = moesim(
        [
            "trace",
            "generate",
            "--preset",
            "mixtral-like",
            "--requests",
            "8",
            "--tokens",
            "128",
        ]
        .into_iter()
        .chain(["--seed", "1", "--out", s(&out)]),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = moesim(["trace", "stats", s(&out), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let overlap = v["summary"]["adjacent_overlap"].as_f64().unwrap();
    let top1 = v["summary"]["top1_weight"].as_f64().unwrap();
    // ../shared/traces/README.md: adjacent-token overlap of the top-2 sets about 34-40 %,
    // mean top-1 gate weight about 0.7.
    assert!(
        (0.34..=0.40).contains(&overlap),
        "adjacent overlap {overlap}"
    );
    assert!((0.65..=0.75).contains(&top1), "top-1 weight {top1}");
}

#[test]
fn generic_jsonl_imports_and_stats_print() {
    let dir = scratch("trace_import_generic");
    let out = dir.join("imported.jsonl");
    let run = moesim(
        ["trace", "import", "--format", "jsonl"]
            .into_iter()
            .chain(MAPS)
            .chain([
                "--experts",
                "8",
                "--top-k",
                "2",
                &data("generic-mixtral-shape.jsonl"),
                "--out",
                s(&out),
            ]),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("2 requests, 48 records, 4 layers"),
        "{}",
        run.stdout
    );
    // Token-major execution order: request 0, position 0, layers 0..4, then position 1.
    let (meta, records) = read_all("imported", std::fs::File::open(&out).unwrap()).unwrap();
    assert_eq!(
        (meta.layers, meta.experts, meta.top_k, meta.logits),
        (4, 8, 2, false)
    );
    let order: Vec<(u32, u32, u32)> = records
        .iter()
        .take(6)
        .map(|r| (r.request, r.position, r.layer))
        .collect();
    assert_eq!(
        order,
        [
            (0, 0, 0),
            (0, 0, 1),
            (0, 0, 2),
            (0, 0, 3),
            (0, 1, 0),
            (0, 1, 1)
        ]
    );

    let stats = moesim(["trace", "stats", s(&out)]);
    assert_eq!(stats.code, 0, "{}", stats.stderr);
    for needle in [
        "2 requests, 48 routing events (0 prefill, 48 decode)",
        "Gini",
        "adjacent overlap",
        "co-sel",
    ] {
        assert!(
            stats.stdout.contains(needle),
            "`{needle}` missing:\n{}",
            stats.stdout
        );
    }
    // --stats without --layers: the statistics of the written file, equal to `trace stats`.
    let out2 = dir.join("imported2.jsonl");
    let run = moesim(
        ["trace", "import", "--format", "jsonl", "--stats"]
            .into_iter()
            .chain(MAPS)
            .chain([
                "--experts",
                "8",
                "--top-k",
                "2",
                &data("generic-mixtral-shape.jsonl"),
                "--out",
                s(&out2),
            ]),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.ends_with(&stats.stdout), "{}", run.stdout);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap());

    let csv = dir.join("stats.csv");
    let run = moesim(["trace", "stats", s(&out), "--out", s(&csv)]);
    assert_eq!(run.code, 0);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("layer,metric,key,value\n"));
    assert!(
        text.contains("0,reuse_distance,cold,") && text.contains("3,share,7,"),
        "{text}"
    );
}

#[test]
fn real_mixtral_trace_imports_with_stats_in_one_pass() {
    let dir = scratch("trace_import_mixtral");
    let out = dir.join("mixtral.jsonl");
    let gsm = mixtral_trace("gsm8k_2_routing.jsonl");
    let run = moesim(
        ["trace", "import", "--format", "jsonl"]
            .into_iter()
            .chain(MAPS)
            .chain([
                "--experts",
                "8",
                "--top-k",
                "2",
                "--layers",
                "32",
                "--stats",
                s(&gsm),
                "--out",
                s(&out),
            ]),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("2 requests, 7889 records, 32 layers"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("0 prefill, 7889 decode"),
        "{}",
        run.stdout
    );
    // The one-pass statistics equal those of `trace stats` on the written file.
    let separate = moesim(["trace", "stats", s(&out)]);
    assert!(
        run.stdout.ends_with(&separate.stdout),
        "one-pass stats differ:\n{}\n---\n{}",
        run.stdout,
        separate.stdout
    );
}

#[test]
fn fit_matches_the_real_mixtral_trace_within_ten_percent() {
    let dir = scratch("trace_fit");
    let out = dir.join("mixtral.jsonl");
    let run = moesim(
        ["trace", "import", "--format", "jsonl"]
            .into_iter()
            .chain(MAPS)
            .chain([
                "--experts",
                "8",
                "--top-k",
                "2",
                s(&mixtral_trace("gsm8k_2_routing.jsonl")),
                s(&mixtral_trace("humaneval_2_routing.jsonl")),
                "--out",
                s(&out),
            ]),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let spec = dir.join("fitted.toml");
    let run = moesim(["trace", "fit", s(&out), "--seed", "1", "--out", s(&spec)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for metric in [
        "popularity Gini",
        "normalised entropy",
        "adjacent-token overlap",
        "mean top-1 weight",
    ] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with(metric))
            .unwrap_or_else(|| panic!("{}", run.stdout));
        assert!(
            line.trim_end().ends_with("yes"),
            "{metric} not within 10%: {line}"
        );
    }
    // The fitted spec drives the generator.
    let g = dir.join("g.jsonl");
    let run = moesim([
        "trace",
        "generate",
        "--preset",
        s(&spec),
        "--requests",
        "2",
        "--tokens",
        "8",
        "--out",
        s(&g),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn moe_cache_lab_v1_imports_in_its_order() {
    let dir = scratch("trace_import_mcl");
    let out = dir.join("mcl.jsonl");
    let run = moesim([
        "trace",
        "import",
        "--format",
        "moe-cache-lab",
        &data("moe-cache-lab-v1.jsonl"),
        "--out",
        s(&out),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (meta, records) = read_all("mcl", std::fs::File::open(&out).unwrap()).unwrap();
    assert_eq!((meta.layers, meta.experts, meta.top_k), (3, 8, 2));
    assert_eq!(meta.model.as_deref(), Some("synthetic/tiny"));
    assert_eq!(records.len(), 18);
    assert!(
        records[..9]
            .iter()
            .all(|r| r.phase == moesim::trace::Phase::Prefill)
    );
    assert_eq!(records[9].token, Some(103));
}

#[test]
fn moe_cache_lab_chronology_regression_is_rejected() {
    let dir = scratch("trace_mcl_chronology");
    let src = std::fs::read_to_string(data("moe-cache-lab-v1.jsonl")).unwrap();
    let mut lines: Vec<&str> = src.lines().collect();
    lines.swap(11, 12); // file lines 12 and 13: layer 2 now precedes layer 1 at position 3
    let input = dir.join("bad.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.join("out.jsonl");
    let run = moesim([
        "trace",
        "import",
        "--format",
        "moe-cache-lab",
        s(&input),
        "--out",
        s(&out),
    ]);
    assert_bad_input(
        &run,
        &[&format!("{}:13:", s(&input)), "chronology regression"],
    );
    assert_eq!(leftovers(&dir, &["bad.jsonl"]), Vec::<String>::new());
}

#[test]
fn exports_oracle_general_with_next_access_indices() {
    let dir = scratch("trace_export");
    let trace = dir.join("t.jsonl");
    std::fs::write(
        &trace,
        concat!(
            r#"{"format":"moesim-trace","version":1,"layers":2,"experts":4,"top_k":2,"logits":false}"#,
            "\n",
            r#"{"request":0,"phase":"decode","position":0,"layer":0,"experts":[1,2]}"#,
            "\n",
            r#"{"request":0,"phase":"decode","position":0,"layer":1,"experts":[1]}"#,
            "\n",
            r#"{"request":0,"phase":"decode","position":1,"layer":0,"experts":[2,3]}"#,
            "\n",
        ),
    )
    .unwrap();
    let bin = dir.join("t.oracleGeneral.bin");
    let run = moesim([
        "trace",
        "export",
        "--format",
        "oracle-general",
        "--object-bytes",
        "1000",
        s(&trace),
        "--out",
        s(&bin),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let bytes = std::fs::read(&bin).unwrap();
    assert_eq!(bytes.len(), 5 * 24);
    let rec = |i: usize| {
        let r = &bytes[i * 24..(i + 1) * 24];
        (
            u32::from_le_bytes(r[0..4].try_into().unwrap()),
            u64::from_le_bytes(r[4..12].try_into().unwrap()),
            u32::from_le_bytes(r[12..16].try_into().unwrap()),
            i64::from_le_bytes(r[16..24].try_into().unwrap()),
        )
    };
    // Accesses: L0E1, L0E2, L1E1 (id 5), L0E2, L0E3. Object 2 is reused at access 4 (1-based).
    assert_eq!(rec(0), (1, 1, 1000, -1));
    assert_eq!(rec(1), (2, 2, 1000, 4));
    assert_eq!(rec(2), (3, 5, 1000, -1));
    assert_eq!(rec(3), (4, 2, 1000, -1));
    assert_eq!(rec(4), (5, 3, 1000, -1));

    let csv = dir.join("t.csv");
    let run = moesim([
        "trace",
        "export",
        "--format",
        "libcachesim-csv",
        "--layer",
        "0",
        s(&trace),
        "--out",
        s(&csv),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap(),
        "time,obj_id,obj_size\n1,1,1\n2,2,1\n3,2,1\n4,3,1\n"
    );
}

// ---- bad input: one test per case; the reader is exercised through `trace export --out`.

const HEADER: &str =
    r#"{"format":"moesim-trace","version":1,"layers":2,"experts":8,"top_k":2,"logits":false}"#;
const GOOD: &str =
    r#"{"request":0,"phase":"decode","position":0,"layer":0,"experts":[1,2],"weights":[0.7,0.3]}"#;

/// Writes `header` + a good record + `bad` as line 3, exports it, and checks the failure.
fn reject(test: &str, header: &str, bad: &str, bad_line: usize, needles: &[&str]) {
    let dir = scratch(test);
    let input = dir.join("in.jsonl");
    let text = if bad_line == 1 {
        format!("{bad}\n{GOOD}\n")
    } else {
        format!("{header}\n{GOOD}\n{bad}\n")
    };
    std::fs::write(&input, text).unwrap();
    let out = dir.join("out.bin");
    let run = moesim([
        "trace",
        "export",
        "--format",
        "oracle-general",
        s(&input),
        "--out",
        s(&out),
    ]);
    let location = format!("{}:{bad_line}:", s(&input));
    let mut all = vec![location.as_str()];
    all.extend_from_slice(needles);
    assert_bad_input(&run, &all);
    assert_eq!(
        leftovers(&dir, &["in.jsonl"]),
        Vec::<String>::new(),
        "nothing may be written to --out"
    );
}

#[test]
fn expert_id_beyond_count_is_rejected() {
    let bad = r#"{"request":0,"phase":"decode","position":0,"layer":1,"experts":[1,8]}"#;
    reject(
        "bad_expert_id",
        HEADER,
        bad,
        3,
        &["expert id 8 is at or beyond the expert count 8"],
    );
}

#[test]
fn repeated_expert_is_rejected() {
    let bad = r#"{"request":0,"phase":"decode","position":0,"layer":1,"experts":[3,3]}"#;
    reject(
        "bad_repeated_expert",
        HEADER,
        bad,
        3,
        &["expert 3 is repeated within one selection"],
    );
}

#[test]
fn selection_longer_than_top_k_is_rejected() {
    let bad = r#"{"request":0,"phase":"decode","position":0,"layer":1,"experts":[1,2,3]}"#;
    reject(
        "bad_longer_than_top_k",
        HEADER,
        bad,
        3,
        &["longer than top-k 2"],
    );
}

#[test]
fn nan_logit_is_rejected() {
    let bad = r#"{"request":0,"phase":"decode","position":0,"layer":1,"experts":[1,2],"logits":[0,1,NaN,0,0,0,0,0]}"#;
    reject(
        "bad_nan_logit",
        HEADER,
        bad,
        3,
        &["logit NaN is not finite"],
    );
}

#[test]
fn infinite_logit_is_rejected() {
    let bad = r#"{"request":0,"phase":"decode","position":0,"layer":1,"experts":[1,2],"logits":[0,1,2,0,0,0,-Infinity,0]}"#;
    reject(
        "bad_inf_logit",
        HEADER,
        bad,
        3,
        &["logit -inf is not finite"],
    );
}

#[test]
fn negative_gate_weight_is_rejected() {
    let bad = r#"{"request":0,"phase":"decode","position":0,"layer":1,"experts":[1,2],"weights":[1.1,-0.1]}"#;
    reject(
        "bad_negative_weight",
        HEADER,
        bad,
        3,
        &["gate weight -0.1 is negative"],
    );
}

#[test]
fn missing_header_is_rejected() {
    reject("bad_missing_header", HEADER, GOOD, 1, &["missing header"]);
}

#[test]
fn unknown_header_format_is_rejected() {
    let header =
        r#"{"format":"other-trace","version":1,"layers":2,"experts":8,"top_k":2,"logits":false}"#;
    reject(
        "bad_unknown_format",
        header,
        header,
        1,
        &["unknown trace format `other-trace`"],
    );
}

#[test]
fn unknown_version_is_rejected() {
    let header =
        r#"{"format":"moesim-trace","version":2,"layers":2,"experts":8,"top_k":2,"logits":false}"#;
    reject(
        "bad_version",
        header,
        header,
        1,
        &["unsupported trace version 2"],
    );
}

#[test]
fn truncated_last_line_is_rejected() {
    let dir = scratch("bad_truncated");
    let input = dir.join("in.jsonl");
    let cut = &GOOD[..GOOD.len() - 12];
    std::fs::write(&input, format!("{HEADER}\n{GOOD}\n{cut}")).unwrap();
    let out = dir.join("out.bin");
    let run = moesim([
        "trace",
        "export",
        "--format",
        "oracle-general",
        s(&input),
        "--out",
        s(&out),
    ]);
    assert_bad_input(&run, &[&format!("{}:3:", s(&input)), "truncated last line"]);
    assert_eq!(leftovers(&dir, &["in.jsonl"]), Vec::<String>::new());
}

#[test]
fn import_rejects_bad_records_with_file_and_line() {
    let dir = scratch("bad_import_generic");
    let input = dir.join("in.jsonl");
    let good = r#"{"problem_id": 0, "layer": 0, "token_idx": 0, "experts": [1, 2], "gating_probs": [0.6, 0.4]}"#;
    let cases = [
        (
            r#"{"problem_id": 0, "layer": 1, "token_idx": 0, "experts": [1, 9], "gating_probs": [0.6, 0.4]}"#,
            "expert id 9",
        ),
        (
            r#"{"problem_id": 0, "layer": 1, "token_idx": 0, "experts": [4, 4], "gating_probs": [0.6, 0.4]}"#,
            "repeated",
        ),
        (
            r#"{"problem_id": 0, "layer": 1, "token_idx": 0, "experts": [1, 2, 3]}"#,
            "longer than top-k",
        ),
        (
            r#"{"problem_id": 0, "layer": 1, "token_idx": 0, "experts": [1, 2], "gating_probs": [NaN, 0.4]}"#,
            "not finite",
        ),
        (
            r#"{"problem_id": 0, "layer": 1, "token_idx": 0, "experts": [1, 2], "gating_probs": [0.6, -0.4]}"#,
            "negative",
        ),
        (
            r#"{"problem_id": 0, "layer": 0, "token_idx": 0, "experts": [1, 2]}"#,
            "does not follow position 0",
        ),
        (
            r#"{"problem_id": 0, "layer": 1, "token_idx": 0, "experts": [1, 2], "gating_"#,
            "truncated last line",
        ),
    ];
    for (i, (bad, needle)) in cases.iter().enumerate() {
        let newline = if needle.contains("truncated") {
            ""
        } else {
            "\n"
        };
        std::fs::write(&input, format!("{good}\n{bad}{newline}")).unwrap();
        let out = dir.join("out.jsonl");
        let run = moesim(
            ["trace", "import", "--format", "jsonl"]
                .into_iter()
                .chain(MAPS)
                .chain([
                    "--experts",
                    "8",
                    "--top-k",
                    "2",
                    s(&input),
                    "--out",
                    s(&out),
                ]),
        );
        assert_bad_input(&run, &[&format!("{}:2:", s(&input)), needle]);
        assert_eq!(
            leftovers(&dir, &["in.jsonl"]),
            Vec::<String>::new(),
            "case {i} left a file"
        );
    }
}

#[test]
fn import_needs_the_shape_and_required_maps() {
    let dir = scratch("bad_import_args");
    let out = dir.join("o.jsonl");
    let run = moesim(
        ["trace", "import", "--format", "jsonl"]
            .into_iter()
            .chain(MAPS)
            .chain([&data("generic-mixtral-shape.jsonl"), "--out", s(&out)]),
    );
    assert_bad_input(&run, &["give --experts N and --top-k K"]);
    let run = moesim([
        "trace",
        "import",
        "--format",
        "jsonl",
        "--map",
        "layer=layer",
        "--experts",
        "8",
        "--top-k",
        "2",
        &data("generic-mixtral-shape.jsonl"),
        "--out",
        s(&out),
    ]);
    assert_bad_input(&run, &["--map request=FIELD is required"]);
    assert!(!out.exists());
}

/// `trace fit --evaluations 0` ran 6 evaluations (the initial simplex); the budget is exact.
#[test]
fn fit_spends_exactly_its_evaluation_budget() {
    let dir = scratch("trace_fit_budget");
    let t = dir.join("t.jsonl");
    let run = moesim([
        "trace",
        "generate",
        "--preset",
        "micro-moe",
        "--requests",
        "2",
        "--prefill",
        "2",
        "--tokens",
        "4",
        "--out",
        s(&t),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for budget in ["0", "2", "9"] {
        let run = moesim([
            "trace",
            "fit",
            s(&t),
            "--preset",
            "micro-moe",
            "--evaluations",
            budget,
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stdout.contains(&format!(" in {budget} evaluations ")),
            "{budget}: {}",
            run.stdout
        );
    }
}
