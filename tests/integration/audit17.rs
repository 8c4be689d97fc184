//! Inputs an audit of issue 17 found accepted with nonsense results or lost data: each case
//! exits 2 with one line naming what is wrong, and writes nothing.

use std::path::{Path, PathBuf};

use crate::util::{assert_bad_input, moesim, scratch};

const RUN: &str = "schema_version = 1\nname = \"NAME\"\n[hardware]\nprofile = \"esp32-p4\"\n[model]\nspec = \"micro-moe\"\nformat = \"q2_k\"\n[trace]\ngenerator = \"micro-moe\"\nTOKENS\n";

fn experiment(dir: &Path, file: &str, name: &str, tokens: &str, extra: &str) -> PathBuf {
    let p = dir.join(file);
    let text = RUN.replace("NAME", name).replace("TOKENS", tokens) + extra;
    std::fs::write(&p, text).unwrap();
    p
}

const TOKENS: &str = "prefill_tokens = 2\ndecode_tokens = 4";

/// Experiment files whose runs would report nothing real, or write where they should not.
#[test]
fn experiments_that_cannot_mean_anything_are_refused() {
    let dir = scratch("audit17_experiments");
    let cases: [(&str, &str, &str, &[&str]); 5] = [
        // A name that is a path component would write into the current directory.
        (
            "dots.toml",
            "..",
            TOKENS,
            &["dots.toml", "name", "not start with '.'"],
        ),
        ("hidden.toml", ".hidden", TOKENS, &["hidden.toml", "name"]),
        // No tokens at all: "0 requests" and NaN everywhere.
        (
            "none.toml",
            "none",
            "prefill_tokens = 0\ndecode_tokens = 0",
            &["none.toml", "trace.decode_tokens", "at least one token"],
        ),
        // The same value twice would count one point's runs as replicates.
        (
            "twice.toml",
            "twice",
            "prefill_tokens = 2\ndecode_tokens = 4\n[sweep]\naxes = { \"cache.capacity_experts\" = [1, 1] }\nreplicates = 2",
            &[
                "twice.toml",
                "sweep.axes.cache.capacity_experts",
                "listed twice",
            ],
        ),
        (
            "zip.toml",
            "zip",
            "prefill_tokens = 2\ndecode_tokens = 4\n[sweep]\nzip = [{ \"cache.capacity_experts\" = [1, 2, 1], \"router.kind\" = [\"standard\", \"standard\", \"standard\"] }]",
            &["zip.toml", "sweep.zip[0]", "listed twice"],
        ),
    ];
    for (file, name, tokens, needles) in cases {
        let exp = experiment(&dir, file, name, tokens, "");
        let out = dir.join(format!("out-{file}"));
        let r = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert_bad_input(&r, needles);
        assert!(!out.exists(), "{file}: wrote {}", out.display());
    }
    // A zip group may repeat a value in one list when the combinations differ.
    let ok = experiment(
        &dir,
        "zip-ok.toml",
        "zipok",
        "prefill_tokens = 2\ndecode_tokens = 4\n[sweep]\nzip = [{ \"cache.capacity_experts\" = [1, 1], \"cache.policy\" = [\"lru\", \"fifo\"] }]",
        "",
    );
    let r = moesim(["run", ok.to_str().unwrap(), "--list-points"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// Outputs that would overwrite an input, or each other.
#[test]
fn outputs_never_overwrite_inputs_or_each_other() {
    let dir = scratch("audit17_outputs");
    let exp = experiment(&dir, "e.toml", "e", TOKENS, "");
    let before = std::fs::read(&exp).unwrap();
    let r = moesim([
        "run",
        exp.to_str().unwrap(),
        "--out",
        dir.join("o").to_str().unwrap(),
        "--dump-inputs",
        exp.to_str().unwrap(),
    ]);
    assert_bad_input(&r, &["--dump-inputs", "e.toml"]);
    assert_eq!(
        std::fs::read(&exp).unwrap(),
        before,
        "the experiment was overwritten"
    );
    // quant dump with the same path for both outputs.
    let npy = dir.join("w.npy");
    {
        // A 4 x 256 .npy matrix, written by hand.
        let mut data = Vec::new();
        for i in 0..1024 {
            data.extend_from_slice(&((i % 7) as f32 * 0.1).to_le_bytes());
        }
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 256), }";
        let mut h = header.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(h.len() as u16).to_le_bytes());
        bytes.extend_from_slice(h.as_bytes());
        bytes.extend_from_slice(&data);
        std::fs::write(&npy, bytes).unwrap();
    }
    let x = dir.join("x.bin");
    let r = moesim([
        "quant",
        "dump",
        "--format",
        "q8_0",
        "--input",
        npy.to_str().unwrap(),
        "--out",
        x.to_str().unwrap(),
        "--dequantized",
        x.to_str().unwrap(),
    ]);
    assert_bad_input(&r, &["--dequantized", "same file as --out"]);
    assert!(!x.exists());
}

/// Traces with no routing records give no tables of NaN.
#[test]
fn empty_traces_are_refused() {
    let dir = scratch("audit17_empty");
    let header = dir.join("h.jsonl");
    std::fs::write(
        &header,
        "{\"format\":\"moesim-trace\",\"version\":1,\"layers\":2,\"experts\":8,\"top_k\":2,\"logits\":false}\n",
    )
    .unwrap();
    let og = dir.join("empty.og");
    std::fs::write(&og, b"").unwrap();
    let cases: [(Vec<&str>, Vec<&str>); 3] = [
        (
            vec![
                "cache",
                "replay",
                header.to_str().unwrap(),
                "--capacity",
                "2",
            ],
            vec!["h.jsonl", "no routing records"],
        ),
        (
            vec![
                "cache",
                "replay",
                og.to_str().unwrap(),
                "--input-format",
                "oracle-general",
                "--capacity",
                "2",
            ],
            vec!["empty.og", "no records"],
        ),
        (
            vec!["route", header.to_str().unwrap(), "--capacity", "2"],
            vec!["h.jsonl", "no routing records"],
        ),
    ];
    for (args, needles) in cases {
        assert_bad_input(&moesim(&args), &needles);
    }
}

/// `moesim plot` on a results.csv with a whole run cut out, or an emptied decode figure.
#[test]
fn plot_notices_missing_runs_and_emptied_figures() {
    let dir = scratch("audit17_plot");
    let exp = experiment(
        &dir,
        "s.toml",
        "s",
        TOKENS,
        "[sweep]\naxes = { \"cache.capacity_experts\" = [2, 3] }\nreplicates = 2\n",
    );
    let out = dir.join("out");
    let r = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let results = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let summary = std::fs::read(out.join("summary.md")).unwrap();
    let lines: Vec<&str> = results.lines().collect();
    let without_last = lines[..lines.len() - 1].join("\n") + "\n";
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "decode_tokens_per_s")
        .unwrap();
    let emptied = {
        let mut l: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        let mut f: Vec<&str> = lines[1].split(',').collect();
        f[col] = "";
        l[1] = f.join(",");
        l.join("\n") + "\n"
    };
    // With the manifest (runs.csv) and without it (a committed report keeps only the tables).
    for keep_manifest in [true, false] {
        if !keep_manifest {
            std::fs::remove_file(out.join("runs.csv")).unwrap();
        }
        for (text, needles) in [
            (
                without_last.clone(),
                if keep_manifest {
                    vec!["results.csv", "missing", "runs.csv"]
                } else {
                    vec!["results.csv", "replicates", "rows are missing"]
                },
            ),
            (
                emptied.clone(),
                vec!["results.csv:2", "decode_tokens_per_s", "empty"],
            ),
        ] {
            std::fs::write(out.join("results.csv"), text).unwrap();
            assert_bad_input(&moesim(["plot", out.to_str().unwrap()]), &needles);
            assert_eq!(std::fs::read(out.join("summary.md")).unwrap(), summary);
        }
        std::fs::write(out.join("results.csv"), &results).unwrap();
        let r = moesim(["plot", out.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
}

/// An interval reaching past a metric's range is written clamped in summary.md.
#[test]
fn summary_intervals_stay_within_the_metric_range() {
    let m = moesim::report::numbers::pm_within((0.1406, 0.5956), (0.0, 1.0));
    assert_eq!(m, ("0.1406 (0 to 0.7362)".to_string(), true));
    let m = moesim::report::numbers::pm_within((0.5, 0.1), (0.0, 1.0));
    assert_eq!(m, ("0.5 ± 0.1".to_string(), false));
    let m = moesim::report::numbers::pm_within((487.2, 527.1), (0.0, f64::INFINITY));
    assert!(m.1 && m.0.starts_with("487.2 (0 to "), "{}", m.0);
}

/// `quant bench --repeats 0` printed "medians of 0 repetitions" with numbers.
#[test]
fn a_benchmark_of_zero_repetitions_is_refused() {
    let run = moesim(["quant", "bench", "--repeats", "0"]);
    assert_bad_input(&run, &["--repeats 0", "at least one"]);
}
