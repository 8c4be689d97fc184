//! Hardware profiles: the shipped set, and one test per bad-input case of issue 2. Every bad
//! file must exit 2 with one line naming the file, the key path (and line where the TOML parser
//! knows it) and the reason.

use std::path::PathBuf;

use crate::util::{assert_bad_input, moesim, scratch};

const BASE: &str = include_str!("../../hardware-profiles/esp32-p4.toml");

/// Writes `BASE` with `from` replaced by `to` (which must occur exactly once) into a scratch file.
fn variant(test: &str, from: &str, to: &str) -> PathBuf {
    assert_eq!(
        BASE.matches(from).count(),
        1,
        "`{from}` must occur once in the base profile"
    );
    let path = scratch(test).join("profile.toml");
    std::fs::write(&path, BASE.replacen(from, to, 1)).unwrap();
    path
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in text")
        + 1
}

fn check(path: &std::path::Path) -> crate::util::Run {
    moesim(["profile", "check", path.to_str().unwrap()])
}

#[test]
fn shipped_profiles_list_at_least_ten() {
    let run = moesim(["profile", "list", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    for required in [
        "esp32-s3",
        "esp32-p4",
        "stm32h743",
        "alif-e7",
        "rp2350",
        "raspberry-pi-5",
        "jetson-orin-nano",
        "snapdragon-8-gen-3",
        "apple-m2",
        "pc-rtx4090-pcie4",
    ] {
        assert!(
            names.contains(&required),
            "{required} missing from {names:?}"
        );
    }
}

#[test]
fn every_shipped_profile_checks_ok() {
    for entry in
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/hardware-profiles")).unwrap()
    {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // hardware-profiles/runtimes/: runtime profiles, checked by the validate tests.
            continue;
        }
        let run = check(&path);
        assert_eq!(run.code, 0, "{}: {}", path.display(), run.stderr);
        assert!(run.stdout.starts_with("ok: "), "{}", run.stdout);
    }
}

#[test]
fn show_prints_budget_fit_and_load_times() {
    let run = moesim([
        "profile",
        "show",
        "esp32-p4",
        "--model",
        "micro-moe",
        "--format",
        "q2_k",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let fit = &v["model_fit"]["formats"][0];
    assert_eq!(fit["format"], "q2_k");
    // 3 x 1024 x 1024 weights in Q2_K blocks of 256 weights / 84 bytes, per matrix.
    assert_eq!(fit["expert_bytes"], 3 * (1024 * 1024 / 256) * 84);
    let psram = fit["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tier"] == "psram")
        .unwrap();
    let budget = 33_554_432u64 - 4_194_304;
    assert_eq!(psram["expert_budget_bytes"], budget);
    assert_eq!(psram["experts_fit"], budget / (3 * 4096 * 84));
    // One expert from the SD card to PSRAM: 200 us + 1,032,192 B rounded to 512 B blocks at 25 MB/s.
    let load = psram["load_from"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["from"] == "sdcard")
        .unwrap();
    let expected_ns = 200_000.0 + (1_032_192f64 / 512.0).ceil() * 512.0 / 25e6 * 1e9;
    assert!(
        (load["time_ns"].as_f64().unwrap() - expected_ns).abs() < 1e-6,
        "{load}"
    );

    let text = moesim([
        "profile",
        "show",
        "esp32-p4",
        "--model",
        "micro-moe",
        "--format",
        "q2_k",
    ]);
    assert_eq!(text.code, 0);
    assert!(
        text.stdout.contains("experts that fit each tier's budget"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("time to load one expert"),
        "{}",
        text.stdout
    );
}

#[test]
fn bad_toml_syntax_names_file_and_line() {
    let path = variant(
        "profile_syntax",
        "capacity_bytes = 655_360",
        "capacity_bytes = 655_360 x",
    );
    let line = line_of(&std::fs::read_to_string(&path).unwrap(), "655_360 x");
    let run = check(&path);
    assert_bad_input(&run, &[path.to_str().unwrap(), &format!(":{line}:")]);
}

#[test]
fn unknown_key_names_key_path_and_line() {
    let path = variant(
        "profile_unknown_key",
        "name = \"l2mem\"",
        "name = \"l2mem\"\ncolour = \"red\"",
    );
    let line = line_of(&std::fs::read_to_string(&path).unwrap(), "colour");
    let run = check(&path);
    assert_bad_input(
        &run,
        &[
            path.to_str().unwrap(),
            &format!(":{line}:"),
            "tiers[0].colour",
            "unknown field",
        ],
    );
}

#[test]
fn missing_field_names_key_path() {
    let path = variant(
        "profile_missing_field",
        "latency_ns = 5 ",
        "# latency removed ",
    );
    let run = check(&path);
    assert_bad_input(
        &run,
        &[
            path.to_str().unwrap(),
            "tiers[0].latency_ns",
            "missing field",
        ],
    );
}

#[test]
fn contention_fractions_out_of_range_are_rejected() {
    let path = variant(
        "profile_bad_contention",
        "[compute]\ncores = 2",
        "[compute]\ncores = 2\nexpert_slowdown_while_transferring = -0.5",
    );
    assert_bad_input(
        &check(&path),
        &[
            path.to_str().unwrap(),
            "compute.expert_slowdown_while_transferring",
            "[0, 10]",
        ],
    );
    let path = variant(
        "profile_bad_after_load",
        "[compute]\ncores = 2",
        "[compute]\ncores = 2\nexpert_slowdown_after_load = { q4 = inf }",
    );
    assert_bad_input(
        &check(&path),
        &[
            path.to_str().unwrap(),
            "compute.expert_slowdown_after_load.q4",
            "[-0.9, 10]",
        ],
    );
    let path = variant(
        "profile_bad_after_load_speedup",
        "[compute]\ncores = 2",
        "[compute]\ncores = 2\nexpert_slowdown_after_load = { q2 = -0.95 }",
    );
    assert_bad_input(
        &check(&path),
        &[
            path.to_str().unwrap(),
            "compute.expert_slowdown_after_load.q2",
            "[-0.9, 10]",
            "-0.95",
        ],
    );
    // Valid fractions check OK.
    let path = variant(
        "profile_good_contention",
        "[compute]\ncores = 2",
        "[compute]\ncores = 2\nexpert_slowdown_while_transferring = 0.1\nexpert_slowdown_after_load = { q4 = 0.05 }",
    );
    let run = check(&path);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // `profile show` states them.
    let run = moesim(["profile", "show", path.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("expert kernels while a link transfers: 10.0 % slower"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("first kernel after a load") && run.stdout.contains("+5.0 %"),
        "{}",
        run.stdout
    );
    // The time to hand a transfer to idle links: a latency, checked, and said.
    let path = variant(
        "profile_bad_issue",
        "[compute]\ncores = 2",
        "[compute]\ncores = 2\nissue_ns = -5",
    );
    assert_bad_input(&check(&path), &[path.to_str().unwrap(), "compute.issue_ns"]);
    let path = variant(
        "profile_good_issue",
        "[compute]\ncores = 2",
        "[compute]\ncores = 2\nissue_ns = 150000",
    );
    assert_eq!(check(&path).code, 0, "{}", check(&path).stderr);
    let run = moesim(["profile", "show", path.to_str().unwrap()]);
    assert!(
        run.stdout
            .contains("150.00 µs to hand a transfer to idle links"),
        "{}",
        run.stdout
    );
    // A last-level cache for weights: its capacity and every class's cached rate are checked.
    let cache = "[compute]\ncores = 2\nweights_cache = { capacity_bytes = 6.4e7, expert_weights_per_s = { f16 = 2e10, q8 = 2e10, q4 = 3.3e10, q3 = 3e10, q2 = 3.6e10, ternary = 3e10 } }";
    for (name, bad, key) in [
        (
            "profile_bad_weights_cache",
            cache.replace("6.4e7", "0"),
            "compute.weights_cache.capacity_bytes",
        ),
        (
            "profile_bad_weights_cache_rate",
            cache.replace("q2 = 3.6e10", "q2 = -1"),
            "compute.weights_cache.expert_weights_per_s.q2",
        ),
        (
            "profile_unknown_weights_cache_key",
            cache.replace("capacity_bytes", "size_bytes"),
            "size_bytes",
        ),
        (
            "profile_bad_weights_cache_replacement",
            cache.replace("capacity_bytes", "replacement = \"fifo\", capacity_bytes"),
            "fifo",
        ),
    ] {
        let path = variant(name, "[compute]\ncores = 2", &bad);
        assert_bad_input(&check(&path), &[path.to_str().unwrap(), key]);
    }
    let path = variant("profile_good_weights_cache", "[compute]\ncores = 2", cache);
    assert_eq!(check(&path).code, 0);
    let run = moesim(["profile", "show", path.to_str().unwrap()]);
    assert!(
        run.stdout.contains("last-level cache for expert weights")
            && run.stdout.contains("64.00 MB"),
        "{}",
        run.stdout
    );
    // Random replacement is said as such.
    let random = cache.replace("capacity_bytes", "replacement = \"random\", capacity_bytes");
    let path = variant(
        "profile_random_weights_cache",
        "[compute]\ncores = 2",
        &random,
    );
    assert_eq!(check(&path).code, 0, "{}", check(&path).stderr);
    let run = moesim(["profile", "show", path.to_str().unwrap()]);
    assert!(
        run.stdout.contains("64.00 MB under random replacement"),
        "{}",
        run.stdout
    );
    // A lifetime: said; positive, and for random replacement only.
    let lived = random.replace("capacity_bytes", "lifetime_ns = 1.5e7, capacity_bytes");
    let path = variant(
        "profile_lifetime_weights_cache",
        "[compute]\ncores = 2",
        &lived,
    );
    assert_eq!(check(&path).code, 0, "{}", check(&path).stderr);
    let run = moesim(["profile", "show", path.to_str().unwrap()]);
    assert!(
        run.stdout
            .contains("64.00 MB under random replacement, lifetime 15.000 ms"),
        "{}",
        run.stdout
    );
    for (name, bad) in [
        ("profile_bad_lifetime", lived.replace("1.5e7", "-1")),
        (
            "profile_lru_lifetime",
            cache.replace("capacity_bytes", "lifetime_ns = 1.5e7, capacity_bytes"),
        ),
    ] {
        let path = variant(name, "[compute]\ncores = 2", &bad);
        assert_bad_input(
            &check(&path),
            &[path.to_str().unwrap(), "compute.weights_cache.lifetime_ns"],
        );
    }
    // Where transfers land: points in increasing distance, factors in (0, 10].
    let landing = cache.replace(
        " } }",
        " }, landing = [{ within_bytes = 1e6, time_factor = 0.9 }, { within_bytes = 5e7, time_factor = 1.0 }] }",
    );
    let path = variant("profile_good_landing", "[compute]\ncores = 2", &landing);
    assert_eq!(check(&path).code, 0, "{}", check(&path).stderr);
    let run = moesim(["profile", "show", path.to_str().unwrap()]);
    assert!(
        run.stdout
            .contains("transfers landing in a buffer computed on within 1.00 MB: -10.0 %"),
        "{}",
        run.stdout
    );
    for (name, bad, key) in [
        (
            "profile_bad_landing_order",
            landing.replace("5e7", "1e5"),
            "landing[1].within_bytes",
        ),
        (
            "profile_bad_landing_factor",
            landing.replace("0.9", "0"),
            "landing[0].time_factor",
        ),
        (
            "profile_bad_landing_key",
            landing.replace("time_factor = 0.9", "factor = 0.9"),
            "factor",
        ),
    ] {
        let path = variant(name, "[compute]\ncores = 2", &bad);
        assert_bad_input(&check(&path), &[path.to_str().unwrap(), key]);
    }
    // A speed-up after a load (weights left warm by the copy) is valid and shown signed.
    let path = variant(
        "profile_good_after_load_speedup",
        "[compute]\ncores = 2",
        "[compute]\ncores = 2\nexpert_slowdown_after_load = { q4 = -0.2 }",
    );
    assert_eq!(check(&path).code, 0);
    let run = moesim(["profile", "show", path.to_str().unwrap()]);
    assert!(
        run.stdout.contains("first kernel after a load") && run.stdout.contains("-20.0 %"),
        "{}",
        run.stdout
    );
}

#[test]
fn zero_bandwidth_is_rejected() {
    let path = variant(
        "profile_zero_bandwidth",
        "read_bandwidth_bytes_per_s = 400e6",
        "read_bandwidth_bytes_per_s = 0",
    );
    let run = check(&path);
    assert_bad_input(
        &run,
        &[
            path.to_str().unwrap(),
            "tiers[1].read_bandwidth_bytes_per_s",
            "outside the accepted range",
        ],
    );
}

#[test]
fn negative_capacity_is_rejected() {
    let path = variant(
        "profile_negative_capacity",
        "capacity_bytes = 33_554_432",
        "capacity_bytes = -33_554_432",
    );
    let run = check(&path);
    assert_bad_input(
        &run,
        &[
            path.to_str().unwrap(),
            "tiers[1].capacity_bytes",
            "outside the accepted range",
        ],
    );
}

#[test]
fn zero_link_bandwidth_is_rejected() {
    let path = variant(
        "profile_zero_link_bandwidth",
        "bandwidth_bytes_per_s = 400e6           # [U, E13]",
        "bandwidth_bytes_per_s = 0.0             # [U, E13]",
    );
    let run = check(&path);
    assert_bad_input(
        &run,
        &[
            path.to_str().unwrap(),
            "links[1].bandwidth_bytes_per_s",
            "outside the accepted range",
        ],
    );
}

#[test]
fn reserved_above_capacity_is_rejected() {
    let path = variant(
        "profile_reserved",
        "reserved_bytes = 4_194_304              # assumed: KV cache",
        "reserved_bytes = 40_000_000             # assumed: KV cache",
    );
    let run = check(&path);
    assert_bad_input(
        &run,
        &[
            path.to_str().unwrap(),
            "tiers[1].reserved_bytes",
            "exceeds capacity_bytes",
        ],
    );
}

#[test]
fn link_to_missing_tier_is_rejected() {
    let path = variant(
        "profile_missing_tier",
        "from = \"flash\"\nto = \"psram\"",
        "from = \"flash\"\nto = \"hyperram\"",
    );
    let run = check(&path);
    assert_bad_input(
        &run,
        &[
            path.to_str().unwrap(),
            "links[0].to",
            "no tier named `hyperram`",
        ],
    );
}

#[test]
fn tiers_out_of_order_are_rejected() {
    // Make L2MEM slower than the PSRAM below it.
    let path = variant(
        "profile_out_of_order",
        "read_bandwidth_bytes_per_s = 1.6e9",
        "read_bandwidth_bytes_per_s = 1.0e6",
    );
    let run = check(&path);
    assert_bad_input(
        &run,
        &[
            path.to_str().unwrap(),
            "tiers[1].read_bandwidth_bytes_per_s",
            "fastest to slowest",
        ],
    );
}

#[test]
fn budget_holding_no_expert_warns_on_show() {
    let run = moesim(["profile", "show", "esp32-s3", "--model", "mixtral-8x7b"]);
    assert_eq!(run.code, 0, "a warning is not an error: {}", run.stderr);
    assert!(
        run.stderr.contains(
            "warning: the expert budget of compute tier `psram` of esp32-s3 (7.34 MB) holds no expert of \
             mixtral-8x7b at any format"
        ),
        "{}",
        run.stderr
    );
    let run = moesim([
        "profile",
        "check",
        "hardware-profiles/esp32-s3.toml",
        "--model",
        "mixtral-8x7b",
    ]);
    assert_eq!(run.code, 0);
    assert!(
        run.stderr
            .contains("holds no expert of mixtral-8x7b at any format"),
        "{}",
        run.stderr
    );
}

#[test]
fn unknown_profile_or_missing_file_exits_2() {
    let run = moesim(["profile", "show", "no-such-device"]);
    assert_bad_input(
        &run,
        &["no-such-device", "no such hardware profile preset or file"],
    );
}

#[test]
fn bad_cli_arguments_exit_2() {
    let run = moesim([
        "profile",
        "show",
        "esp32-p4",
        "--model",
        "micro-moe",
        "--format",
        "q9_k",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("unknown weight format `q9_k`"),
        "{}",
        run.stderr
    );
    let run = moesim(["profile", "show", "esp32-p4", "--format", "q4_k"]);
    assert_bad_input(&run, &["--format needs --model"]);
}

/// Figures that parse and are positive but far outside any device: before the ranges they
/// crashed the engine ("event scheduled in the past") or wrapped the clock. Each is refused at
/// validation, naming the key, for `profile check` and for an experiment that uses it.
#[test]
fn physical_figures_outside_their_ranges_are_refused_by_key() {
    let cases: [(&str, &str, &str, &str); 10] = [
        (
            "bandwidth_bytes_per_s = 400e6           # [U, E13] (raw 800 MB/s [D])",
            "bandwidth_bytes_per_s = 1e-3",
            "links[1].bandwidth_bytes_per_s",
            "0.001 is outside the accepted range [1000, 1e14] B/s",
        ),
        (
            "latency_ns = 200_000                    # [D, P4]",
            "latency_ns = 1e300",
            "links[3].latency_ns",
            "1e300 is outside",
        ),
        (
            "q2 = 2.5e9,",
            "q2 = 1e-300,",
            "compute.expert_weights_per_s.q2",
            "1e-300 is outside",
        ),
        (
            "dense_weights_per_s = 3.2e9",
            "dense_weights_per_s = 1e300",
            "compute.dense_weights_per_s",
            "1e300 is outside",
        ),
        (
            "channels = 1                            # one GDMA channel assumed",
            "channels = 100000",
            "links[1].channels",
            "100000 is outside",
        ),
        (
            "energy_pj_per_mac = 0.3",
            "energy_pj_per_mac = 1e30",
            "compute.energy_pj_per_mac",
            "1e30 is outside",
        ),
        // A link's transfer-time distribution (issue 24).
        (
            "channels = 1                            # one GDMA channel assumed",
            "channels = 1\ntime_distribution = { kind = \"two-mode\", slow_probability = 1.5, slow_factor = 3 }",
            "links[1].time_distribution.slow_probability",
            "1.5 is not a probability",
        ),
        (
            "channels = 1                            # one GDMA channel assumed",
            "channels = 1\ntime_distribution = { kind = \"empirical\", quantiles = [0.8, 1.0, 0.9] }",
            "links[1].time_distribution.quantiles",
            "must not decrease",
        ),
        (
            "channels = 1                            # one GDMA channel assumed",
            "channels = 1\ntime_distribution = { kind = \"lognormal\", sigma = -1 }",
            "links[1].time_distribution.sigma",
            "-1 is outside",
        ),
        // A request limit (issue 23).
        (
            "channels = 1                            # one GDMA channel assumed",
            "channels = 1\nrequest_bytes = 0",
            "links[1].request_bytes",
            "0 is outside",
        ),
    ];
    for (i, (from, to, key, reason)) in cases.iter().enumerate() {
        let path = variant(&format!("profile_range_{i}"), from, to);
        assert_bad_input(&check(&path), &[path.to_str().unwrap(), key, reason]);
        let exp = path.with_file_name("exp.toml");
        std::fs::write(
            &exp,
            "schema_version = 1\nname = \"r\"\n[hardware]\nprofile = \"profile.toml\"\n[model]\nspec = \"micro-moe\"\nformat = \"q2_k\"\n[trace]\ngenerator = \"micro-moe\"\ndecode_tokens = 2\nprefill_tokens = 1\n",
        )
        .unwrap();
        let out = path.with_file_name("out");
        let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert_bad_input(&run, &["hardware.profile", key]);
        assert!(!out.exists());
    }
}

/// A link's request limit: said by `profile show`, in its JSON, and in transfer times.
#[test]
fn a_link_request_limit_is_shown() {
    let path = variant(
        "profile_request_bytes",
        "channels = 1                            # one GDMA channel assumed",
        "channels = 1\nrequest_bytes = 1040384",
    );
    assert_eq!(check(&path).code, 0, "{}", check(&path).stderr);
    let run = moesim(["profile", "show", path.to_str().unwrap()]);
    assert!(
        run.stdout
            .contains("requests of at most 1.04 MB, each paying the latency"),
        "{}",
        run.stdout
    );
    let run = moesim(["profile", "show", path.to_str().unwrap(), "--json"]);
    assert!(
        run.stdout.contains("\"request_bytes\": 1040384"),
        "{}",
        run.stdout
    );
}
