//! `moesim validate` (issue 20): observed rows matched to sweep points, runtime profiles, one
//! parameter fitted on one observation recovering a known runtime, and bad input by name.

use std::path::Path;

use crate::util::{assert_bad_input, moesim, scratch};

/// A micro-MoE sweep over the cache size on an ESP32-P4; `extra` is appended (runtime, axes).
fn experiment(extra: &str) -> String {
    format!(
        r#"schema_version = 1
name = "toy-validation"
seed = 1
[hardware]
profile = "esp32-p4"
[model]
spec = "micro-moe"
format = "q2_k"
[trace]
generator = "micro-moe"
requests = 1
prefill_tokens = 8
decode_tokens = 32
[cache]
policy = "lru"
capacity_experts = 2
[quality]
samples = 0
[sweep]
axes = {{ "cache.capacity_experts" = [1, 2, 3] }}
{extra}
"#
    )
}

/// Decode tokens/s per cache size of `text` run by `moesim run`.
fn run_sweep(dir: &Path, text: &str) -> Vec<(String, f64)> {
    let file = dir.join("truth.toml");
    std::fs::write(&file, text).unwrap();
    let out = dir.join("truth-out");
    let r = moesim([
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut rd = csv::Reader::from_path(out.join("results.csv")).unwrap();
    let h = rd.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    rd.records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[col("axis.cache.capacity_experts")].to_string(),
                r[col("decode_tokens_per_s")].parse().unwrap(),
            )
        })
        .collect()
}

/// `[[observed]]` rows of system `toy` from `(capacity, tokens/s)`.
fn observed(values: &[(String, f64)]) -> String {
    values
        .iter()
        .map(|(c, v)| {
            format!(
                "[[observed]]\nsystem = \"toy\"\nmetric = \"decode_tokens_per_s\"\nvalue = {v:?}\n\
                 point = {{ \"cache.capacity_experts\" = {c} }}\nsource = \"moesim run with a known runtime\"\n"
            )
        })
        .collect()
}

fn validation_csv(dir: &Path) -> Vec<csv::StringRecord> {
    let mut rd = csv::Reader::from_path(dir.join("validation.csv")).unwrap();
    rd.records().map(|r| r.unwrap()).collect()
}

#[test]
fn one_parameter_fitted_on_one_point_recovers_a_known_runtime_and_predicts_the_rest() {
    let dir = scratch("validate-fit");
    // The "real system": micro-MoE with 250 µs of framework cost per layer step.
    let truth = run_sweep(&dir, &experiment("[runtime]\nlayer_overhead_ns = 250000\n"));
    let file = dir.join("observed.toml");
    std::fs::write(&file, experiment(&observed(&truth))).unwrap();
    let out = dir.join("val");
    let r = moesim([
        "validate",
        file.to_str().unwrap(),
        "--fit",
        "layer_overhead_ns",
        "--fit-on",
        "cache.capacity_experts=1",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let s = &v["systems"][0];
    let fitted = s["fitted"][0][1].as_f64().unwrap();
    assert!((fitted / 250_000.0 - 1.0).abs() < 0.01, "fitted {fitted}");
    assert_eq!(s["fitted_on"][0].as_u64(), Some(0));
    assert_eq!(
        s["predicted_rows"].as_u64(),
        Some(2),
        "the fitted row is left out"
    );
    assert!(s["max_abs_rel_error"].as_f64().unwrap() < 1e-3, "{s}");
    // The datasheet-only prediction misses by what the runtime costs, and is reported.
    assert!(
        s["datasheet_median_abs_rel_error"].as_f64().unwrap() > 1e-3,
        "{s}"
    );
    let rows = validation_csv(&out);
    assert_eq!(rows.len(), 3);
    assert_eq!(&rows[0][9], "fitted");
    assert_eq!(&rows[1][9], "predicted");
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("layer_overhead_ns = ") && md.contains("Reproduce: `moesim validate"));
    assert!(out.join("predicted-vs-observed.png").is_file());
}

#[test]
fn a_runtime_file_predicts_exactly_what_its_parameters_cost() {
    let dir = scratch("validate-runtime-file");
    let truth = run_sweep(
        &dir,
        &experiment("[runtime]\ntoken_overhead_ns = 1e6\nlink_efficiency = 0.5\n"),
    );
    std::fs::write(
        dir.join("rt.toml"),
        "schema_version = 1\nname = \"rt\"\ndescription = \"a test stack\"\n\
         provenance = \"set by hand for the test\"\n[params]\ntoken_overhead_ns = 1e6\nlink_efficiency = 0.5\n",
    )
    .unwrap();
    let text = experiment(&observed(&truth)).replace(
        "profile = \"esp32-p4\"",
        "profile = \"esp32-p4\"\nruntime = \"rt.toml\"",
    );
    let file = dir.join("observed.toml");
    std::fs::write(&file, text).unwrap();
    let out = dir.join("val");
    let r = moesim([
        "validate",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for row in validation_csv(&out) {
        let observed: f64 = row[4].parse().unwrap();
        let predicted: f64 = row[7].parse().unwrap();
        let datasheet: f64 = row[5].parse().unwrap();
        assert_eq!(predicted, observed, "the same model, the same runtime");
        assert!(datasheet > observed * 1.01, "the ideal runtime is faster");
    }
}

#[test]
fn bad_observations_and_fits_are_refused_by_name() {
    let dir = scratch("validate-bad");
    let write = |name: &str, text: String| {
        let f = dir.join(name);
        std::fs::write(&f, text).unwrap();
        f.to_str().unwrap().to_string()
    };
    let row = |metric: &str, point: &str, value: &str| {
        format!(
            "[[observed]]\nmetric = \"{metric}\"\nvalue = {value}\npoint = {{ {point} }}\nsource = \"s\"\n"
        )
    };
    let ok = row(
        "decode_tokens_per_s",
        "\"cache.capacity_experts\" = 1",
        "2.0",
    );
    // A point the sweep lacks: refused by run and validate alike.
    let f = write(
        "missing-point.toml",
        experiment(&row(
            "decode_tokens_per_s",
            "\"cache.capacity_experts\" = 9",
            "2.0",
        )),
    );
    assert_bad_input(
        &moesim(["validate", &f]),
        &["observed[0].point", "capacity_experts=9"],
    );
    assert_bad_input(
        &moesim(["run", &f, "--out", dir.join("o").to_str().unwrap()]),
        &["observed[0].point"],
    );
    let f = write(
        "not-an-axis.toml",
        experiment(&row("decode_tokens_per_s", "\"router.lambda\" = 1", "2.0")),
    );
    assert_bad_input(
        &moesim(["validate", &f]),
        &["observed[0].point", "router.lambda", "not an axis"],
    );
    let f = write(
        "no-metric.toml",
        experiment(&row(
            "tokens_per_minute",
            "\"cache.capacity_experts\" = 1",
            "2.0",
        )),
    );
    assert_bad_input(
        &moesim(["validate", &f]),
        &["observed[0].metric", "tokens_per_minute"],
    );
    let f = write(
        "negative.toml",
        experiment(&row(
            "decode_tokens_per_s",
            "\"cache.capacity_experts\" = 1",
            "-2.0",
        )),
    );
    assert_bad_input(&moesim(["validate", &f]), &["observed[0].value"]);
    let f = write("ok.toml", experiment(&ok));
    assert_bad_input(
        &moesim([
            "validate",
            &f,
            "--fit",
            "warp_factor",
            "--fit-on",
            "index=0",
        ]),
        &["warp_factor", "not a runtime parameter"],
    );
    assert_bad_input(
        &moesim([
            "validate",
            &f,
            "--fit",
            "layer_overhead_ns,link_efficiency",
            "--fit-on",
            "index=0",
        ]),
        &["1 observation", "too few to fit 2"],
    );
    assert_bad_input(
        &moesim(["validate", &f, "--fit", "layer_overhead_ns"]),
        &["--fit-on"],
    );
    assert_bad_input(
        &moesim([
            "validate",
            &f,
            "--fit",
            "layer_overhead_ns",
            "--fit-on",
            "system=nope",
        ]),
        &["--fit-on system=nope", "selects no observation"],
    );
    let f = write(
        "bad-runtime.toml",
        experiment(&format!("{ok}[runtime]\ncompute_efficiency = 1.5\n")),
    );
    assert_bad_input(
        &moesim(["validate", &f]),
        &["runtime.compute_efficiency", "(0, 1]"],
    );
    // A measurement no runtime parameter can reach: 1e-6 tokens/s would need more than 10 s of
    // overhead per layer step.
    let f = write(
        "unreachable.toml",
        experiment(&row(
            "decode_tokens_per_s",
            "\"cache.capacity_experts\" = 1",
            "1e-6",
        )),
    );
    assert_bad_input(
        &moesim([
            "validate",
            &f,
            "--fit",
            "layer_overhead_ns",
            "--fit-on",
            "index=0",
            "--out",
            dir.join("u").to_str().unwrap(),
        ]),
        &["did not converge", "layer_overhead_ns"],
    );
}

/// Splits a command line written in a report (words, and single-quoted words).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Every committed validation report is what its `Reproduce:` command computes today, to the
/// byte: the published errors in README.md and the reports are reproduced in CI.
#[test]
fn committed_validation_reports_are_reproduced() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("reports/validation")).unwrap() {
        let dir = entry.unwrap().path();
        let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
        let line = md
            .lines()
            .find_map(|l| l.strip_prefix("Reproduce: `"))
            .and_then(|l| l.strip_suffix('`'))
            .unwrap_or_else(|| panic!("{}: no Reproduce line", dir.display()));
        let mut args = words(line);
        assert_eq!(args.remove(0), "moesim");
        let out = scratch(&format!(
            "validate-reproduce-{}",
            dir.file_name().unwrap().to_string_lossy()
        ));
        let at = args.iter().position(|a| a == "--out").expect("an --out");
        args[at + 1] = out.to_str().unwrap().to_string();
        let r = moesim(&args);
        assert_eq!(r.code, 0, "{line}: {}", r.stderr);
        for f in ["validation.csv", "summary.md"] {
            let mut fresh = std::fs::read_to_string(out.join(f)).unwrap();
            if f == "summary.md" {
                fresh = fresh.replace(out.to_str().unwrap(), &args_out(line));
            }
            assert_eq!(
                fresh,
                std::fs::read_to_string(dir.join(f)).unwrap(),
                "{}/{f} differs from a fresh `{line}`",
                dir.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 1, "no committed validation report");
}

/// The `--out` value of a command line.
fn args_out(line: &str) -> String {
    let w = words(line);
    let at = w.iter().position(|a| a == "--out").unwrap();
    w[at + 1].clone()
}

/// Every shipped runtime profile loads and states its provenance.
#[test]
fn shipped_runtime_profiles_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("hardware-profiles/runtimes");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let r = moesim::hardware::runtime::load(path.to_str().unwrap())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !r.provenance.is_empty() && !r.is_ideal(),
            "{}",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 2);
}
