//! Never lose or mix data (issue 17): writers refuse an output that is one of their inputs,
//! report directories never mix two runs, failed and interrupted commands leave no temporary
//! files, resume notices changed inputs, and `moesim plot` refuses damaged results.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{assert_bad_input, moesim, scratch};

fn generate(dir: &Path, name: &str, tokens: &str) -> PathBuf {
    let trace = dir.join(name);
    let run = moesim([
        "trace",
        "generate",
        "--preset",
        "micro-moe",
        "--requests",
        "1",
        "--tokens",
        tokens,
        "--out",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    trace
}

/// No `.NAME.PID.tmp` anywhere under `dir`.
fn assert_no_temporaries(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "left {}", e.path().display());
        if e.file_type().unwrap().is_dir() {
            assert_no_temporaries(&e.path());
        }
    }
}

#[test]
fn every_writer_refuses_an_output_that_is_its_input() {
    let dir = scratch("safety_inputs");
    let trace = generate(&dir, "t.jsonl", "4");
    let t = trace.to_str().unwrap();
    let original = std::fs::read(&trace).unwrap();
    let npy = dir.join("w.npy");
    std::fs::write(&npy, moesim::weights::npy::write_f32(2, 256, &[0.5; 512])).unwrap();
    let w = npy.to_str().unwrap();
    // The same file under another name: ./t.jsonl from the directory, via a hard link.
    let link = dir.join("link.jsonl");
    std::fs::hard_link(&trace, &link).unwrap();
    let l = link.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "trace",
            "import",
            "--format",
            "moe-cache-lab",
            t,
            "--out",
            t,
        ],
        vec![
            "trace",
            "export",
            "--format",
            "libcachesim-csv",
            t,
            "--out",
            l,
        ],
        vec!["trace", "stats", t, "--out", t],
        vec!["trace", "fit", t, "--out", l],
        vec!["cache", "replay", t, "--capacity", "2", "--out", t],
        vec!["route", t, "--capacity", "2", "--out", l],
        vec![
            "quant", "dump", "--format", "q8_0", "--input", w, "--out", w,
        ],
        vec![
            "quant",
            "dump",
            "--format",
            "q8_0",
            "--input",
            w,
            "--out",
            "x.bin",
            "--dequantized",
            w,
        ],
    ];
    for args in &cases {
        let run = moesim(args);
        assert_bad_input(&run, &["would destroy the input"]);
        assert_eq!(
            std::fs::read(&trace).unwrap(),
            original,
            "{args:?} changed its input"
        );
    }
    // An output path that is a directory: refused, and no temporary file beside it.
    let sub = dir.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let run = moesim([
        "trace",
        "export",
        "--format",
        "libcachesim-csv",
        t,
        "--out",
        sub.to_str().unwrap(),
    ]);
    assert_bad_input(&run, &["is a directory"]);
    assert_no_temporaries(&dir);
}

const RUN: &str = "schema_version = 1\nname = \"NAME\"\n[hardware]\nprofile = \"PROFILE\"\n[model]\nspec = \"micro-moe\"\nformat = \"q2_k\"\n[trace]\ngenerator = \"micro-moe\"\nprefill_tokens = 2\ndecode_tokens = 4\n";

fn experiment(dir: &Path, file: &str, name: &str, extra: &str) -> PathBuf {
    let p = dir.join(file);
    std::fs::write(
        &p,
        format!(
            "{}{extra}",
            RUN.replace("NAME", name).replace("PROFILE", "esp32-p4")
        ),
    )
    .unwrap();
    p
}

#[test]
fn report_directories_never_mix_runs() {
    let dir = scratch("safety_mix");
    let a = experiment(&dir, "a.toml", "a", "[output]\ntimeline = true\n");
    let b = experiment(&dir, "b.toml", "b", "");
    let sweep = experiment(
        &dir,
        "s.toml",
        "s",
        "[sweep]\naxes = { \"cache.capacity_experts\" = [2, 3] }\n",
    );
    let out = dir.join("out");
    let o = out.to_str().unwrap();
    let run = |e: &Path| moesim(["run", e.to_str().unwrap(), "--out", o]);
    assert_eq!(run(&a).code, 0);
    assert!(out.join("timeline.json").exists());
    // The same experiment again: allowed, and replaces its own files.
    assert_eq!(run(&a).code, 0);
    // Another experiment, or a sweep, into a's directory: refused, nothing changed.
    let before = std::fs::read(out.join("metrics.csv")).unwrap();
    assert_bad_input(&run(&b), &["holds the output of experiment `a`, not `b`"]);
    assert_bad_input(&run(&sweep), &["a single run's output"]);
    assert_eq!(std::fs::read(out.join("metrics.csv")).unwrap(), before);
    // A run into a sweep's directory: refused.
    let sout = dir.join("sweep-out");
    assert_eq!(
        moesim([
            "run",
            sweep.to_str().unwrap(),
            "--out",
            sout.to_str().unwrap()
        ])
        .code,
        0
    );
    assert_bad_input(
        &moesim(["run", a.to_str().unwrap(), "--out", sout.to_str().unwrap()]),
        &["a sweep's output"],
    );
    // A run into a directory of unrelated files: refused.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    assert_bad_input(
        &moesim(["run", a.to_str().unwrap(), "--out", other.to_str().unwrap()]),
        &["holds other files (`notes.txt`"],
    );
    // A timeline from an earlier run does not survive a run that writes none.
    let a2 = experiment(&dir, "a2.toml", "a", "");
    assert_eq!(moesim(["run", a2.to_str().unwrap(), "--out", o]).code, 0);
    assert!(!out.join("timeline.json").exists());
    assert_no_temporaries(&dir);
}

#[test]
fn resume_reruns_nothing_stale_after_an_input_changes() {
    let dir = scratch("safety_resume");
    let profile = dir.join("p.toml");
    let esp = include_str!("../../hardware-profiles/esp32-p4.toml");
    std::fs::write(&profile, esp).unwrap();
    let exp = dir.join("s.toml");
    std::fs::write(
        &exp,
        format!(
            "{}[sweep]\naxes = {{ \"cache.capacity_experts\" = [2, 3] }}\n",
            RUN.replace("NAME", "s").replace("PROFILE", "p.toml")
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let args = ["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()];
    assert_eq!(moesim(args).code, 0);
    let again = moesim(args);
    assert_eq!(again.code, 0);
    assert!(again.stdout.contains("2 already done"), "{}", again.stdout);
    // A faster SD card: the old parts no longer describe this experiment.
    std::fs::write(
        &profile,
        esp.replacen("latency_ns = 200_000", "latency_ns = 100_000", 1),
    )
    .unwrap();
    assert_bad_input(
        &moesim(args),
        &["another version of the experiment file or of an input"],
    );
}

#[test]
fn plot_refuses_damaged_results_and_drops_plots_it_no_longer_draws() {
    let dir = scratch("safety_plot");
    let exp = experiment(
        &dir,
        "s.toml",
        "s",
        "[sweep]\naxes = { \"cache.capacity_experts\" = [2, 3] }\n",
    );
    let out = dir.join("out");
    assert_eq!(
        moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]).code,
        0
    );
    let results = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let summary = std::fs::read(out.join("summary.md")).unwrap();
    let header: Vec<&str> = results.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let set = |name: &str, value: &str| -> String {
        let mut lines: Vec<String> = results.lines().map(str::to_string).collect();
        let mut fields: Vec<String> = lines[1].split(',').map(str::to_string).collect();
        fields[col(name)] = value.to_string();
        lines[1] = fields.join(",");
        lines.join("\n") + "\n"
    };
    let cases = [
        (
            results[..results.len() - 20].to_string(),
            vec!["results.csv", "truncated"],
        ),
        (
            set("hit_rate", "1.7"),
            vec!["results.csv:2", "hit_rate", "1.7 is impossible"],
        ),
        (
            set("decode_tokens_per_s", "-3"),
            vec!["results.csv:2", "decode_tokens_per_s", "-3"],
        ),
        (
            set("token_latency_p50_ns", "NaN"),
            vec!["results.csv:2", "token_latency_p50_ns", "NaN"],
        ),
        // A column the summary needs is missing: named, never read as NaN.
        (
            results
                .lines()
                .map(|l| {
                    let mut f: Vec<&str> = l.split(',').collect();
                    f.remove(col("hit_rate"));
                    f.join(",")
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n",
            vec!["results.csv", "no `hit_rate` column"],
        ),
    ];
    for (text, needles) in cases {
        std::fs::write(out.join("results.csv"), text).unwrap();
        assert_bad_input(&moesim(["plot", out.to_str().unwrap()]), &needles);
        assert_eq!(
            std::fs::read(out.join("summary.md")).unwrap(),
            summary,
            "summary rewritten"
        );
    }
    // A plot the report no longer selects is removed on the next render.
    std::fs::write(out.join("results.csv"), &results).unwrap();
    std::fs::write(out.join("plots").join("old-plot.png"), "x").unwrap();
    std::fs::write(out.join("plots").join("old-plot.svg"), "x").unwrap();
    assert_eq!(moesim(["plot", out.to_str().unwrap()]).code, 0);
    assert!(!out.join("plots").join("old-plot.png").exists());
    assert!(!out.join("plots").join("old-plot.svg").exists());
    assert!(std::fs::read_dir(out.join("plots")).unwrap().count() > 0);
}

/// SIGINT during a long `trace generate` removes the partial output (it reached 925 MB in 20 s
/// before) and exits 130.
#[test]
fn an_interrupted_command_leaves_no_temporary_file() {
    let dir = scratch("safety_sigint");
    let out = dir.join("big.jsonl");
    let child = Command::new(env!("CARGO_BIN_EXE_moesim"))
        .args([
            "trace",
            "generate",
            "--preset",
            "mixtral-like",
            "--requests",
            "100000",
            "--out",
            out.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the temporary file exists and grows, then interrupt.
    let start = std::time::Instant::now();
    loop {
        let tmp_exists = std::fs::read_dir(&dir)
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".tmp"));
        if tmp_exists || start.elapsed().as_secs() > 20 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!out.exists());
    assert_no_temporaries(&dir);
}

/// `config.resolved.toml` reproduces the run from any directory: its file inputs are absolute.
#[test]
fn the_resolved_configuration_reproduces_the_run_from_another_directory() {
    let dir = scratch("safety_resolved");
    let profile = dir.join("my-profile.toml");
    std::fs::write(
        &profile,
        include_str!("../../hardware-profiles/esp32-p4.toml"),
    )
    .unwrap();
    let exp = dir.join("e.toml");
    std::fs::write(
        &exp,
        RUN.replace("NAME", "e")
            .replace("PROFILE", "my-profile.toml"),
    )
    .unwrap();
    let out = dir.join("out");
    assert_eq!(
        moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]).code,
        0
    );
    let resolved = std::fs::read_to_string(out.join("config.resolved.toml")).unwrap();
    assert!(
        resolved.contains(
            &std::fs::canonicalize(&profile)
                .unwrap()
                .display()
                .to_string()
        ),
        "{resolved}"
    );
    // Copied elsewhere and run from another working directory.
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("again.toml"), &resolved).unwrap();
    let again = Command::new(env!("CARGO_BIN_EXE_moesim"))
        .args(["run", "again.toml", "--out", "out2"])
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let metrics = |p: &Path| std::fs::read_to_string(p.join("metrics.csv")).unwrap();
    assert_eq!(metrics(&out), metrics(&elsewhere.join("out2")));
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        summary.contains(&format!("Reproduce: `moesim run {}` (", exp.display())),
        "{summary}"
    );
}

/// An imported trace whose collector dropped events can be named as `[trace] file` with
/// `truncate_to_whole_tokens`; without it the error says which option to set.
#[test]
fn a_trace_file_with_dropped_events_runs_with_the_truncation_option() {
    let dir = scratch("safety_truncate");
    let real = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/traces/Mario928-speculative-moe/gsm8k_2_routing.jsonl");
    let trace = dir.join("mixtral.jsonl");
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
        real.to_str().unwrap(),
        "--out",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = |extra: &str| {
        format!(
            "schema_version = 1\nname = \"t\"\n[hardware]\nprofile = \"pc-rtx4090-pcie4\"\n[model]\nspec = \"mixtral-8x7b\"\nformat = \"q2_k\"\n[trace]\nfile = \"mixtral.jsonl\"\n{extra}[cache]\ncapacity_experts = 4\n[quality]\nsamples = 0\n"
        )
    };
    let exp = dir.join("e.toml");
    std::fs::write(&exp, text("")).unwrap();
    let out = dir.join("out");
    assert_bad_input(
        &moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]),
        &["not whole tokens", "truncate_to_whole_tokens = true"],
    );
    std::fs::write(&exp, text("truncate_to_whole_tokens = true\n")).unwrap();
    let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}
