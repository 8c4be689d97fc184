//! One validation for every way a plug-in parameter arrives (issue 17): the same bad value is
//! refused, with exit code 2 and a message naming where it came from, whether it is written in
//! an experiment file, given as a sweep axis, or passed as a `moesim route` flag. One table:
//! (value, where it came from, expected key and message).

use std::path::Path;

use crate::util::{assert_bad_input, moesim, scratch};

/// An experiment with every plug-in section left to the case.
const BASE: &str = r#"schema_version = 1
name = "params"
seed = 3
[hardware]
profile = "esp32-p4"
[model]
spec = "micro-moe"
format = "q2_k"
[trace]
generator = "micro-moe"
requests = 1
prefill_tokens = 2
decode_tokens = 3
"#;

/// Where a value comes from.
enum From {
    /// These sections appended to `BASE`.
    File(&'static str),
    /// A sweep: these sections and the `[sweep]` table appended to `BASE`.
    Sweep(&'static str),
    /// `moesim route TRACE --capacity 3` with these flags.
    Route(&'static [&'static str]),
}

/// (value, where it came from, substrings the error line must hold).
const CASES: &[(&str, From, &[&str])] = &[
    // ema router: α NaN ran with 0 experts used and 340.91 tokens/s before this check.
    (
        "alpha = nan",
        From::File("[router]\nkind = \"ema\"\nalpha = nan\nbeta = 0.1\ngamma = 0.1\ndecay = 0.9\n"),
        &["router.alpha", "NaN", "finite number >= 0"],
    ),
    (
        "decay = 1.5",
        From::File("[router]\nkind = \"ema\"\nalpha = 1.0\nbeta = 0.1\ngamma = 0.1\ndecay = 1.5\n"),
        &["router.decay", "1.5", "[0, 1)"],
    ),
    (
        "beta = -1",
        From::File(
            "[router]\nkind = \"ema\"\nalpha = 1.0\nbeta = -1.0\ngamma = 0.1\ndecay = 0.5\n",
        ),
        &["router.beta", "-1"],
    ),
    (
        "alpha = beta = gamma = 0",
        From::File("[router]\nkind = \"ema\"\nalpha = 0.0\nbeta = 0.0\ngamma = 0.0\ndecay = 0.5\n"),
        &["router.alpha", "all 0"],
    ),
    (
        "alpha = nan (sweep axis)",
        From::Sweep(
            "[router]\nkind = \"ema\"\nalpha = 1.0\nbeta = 0.1\ngamma = 0.1\ndecay = 0.9\n[sweep]\naxes = { \"router.alpha\" = [1.0, nan] }\n",
        ),
        &["router.alpha", "NaN", "finite number >= 0"],
    ),
    (
        "decay = 1.5 (sweep axis)",
        From::Sweep(
            "[router]\nkind = \"ema\"\nalpha = 1.0\nbeta = 0.1\ngamma = 0.1\ndecay = 0.9\n[sweep]\naxes = { \"router.decay\" = [0.5, 1.5] }\n",
        ),
        &["router.decay", "1.5"],
    ),
    (
        "--ema-alpha NaN",
        From::Route(&["--router", "ema", "--ema-alpha", "NaN"]),
        &["--ema-alpha NaN", "finite number >= 0"],
    ),
    (
        "--ema-decay 1.5",
        From::Route(&["--router", "ema", "--ema-decay", "1.5"]),
        &["--ema-decay 1.5", "[0, 1)"],
    ),
    (
        "--router-table ema alpha = nan",
        From::Route(&[
            "--router-table",
            "{ kind = \"ema\", alpha = nan, beta = 0.1, gamma = 1, decay = 0.5 }",
        ]),
        &["--router-table", "ema: alpha = NaN", "finite number >= 0"],
    ),
    (
        "--router-table cross-layer lambda = -1",
        From::Route(&[
            "--router-table",
            "{ kind = \"cross-layer\", lambda = -1.0 }",
        ]),
        &["--router-table", "cross-layer: lambda = -1"],
    ),
    // memory-aware router.
    (
        "lambda = nan",
        From::File("[router]\nkind = \"memory-aware\"\nlambda = nan\n"),
        &["router.lambda", "NaN"],
    ),
    (
        "lambda = inf",
        From::File("[router]\nkind = \"memory-aware\"\nlambda = inf\n"),
        &["router.lambda", "inf"],
    ),
    (
        "lambda = -1",
        From::File("[router]\nkind = \"memory-aware\"\nlambda = -1.0\n"),
        &["router.lambda", "-1"],
    ),
    (
        "hot_bonus = nan",
        From::File("[router]\nkind = \"memory-aware\"\nlambda = 1.0\nhot_bonus = nan\n"),
        &["router.hot_bonus", "NaN"],
    ),
    (
        "warmup_rate = 0",
        From::File("[router]\nkind = \"memory-aware\"\nlambda = 1.0\nwarmup_rate = 0.0\n"),
        &["router.warmup_rate", "> 0"],
    ),
    (
        "lambda = inf (sweep axis)",
        From::Sweep(
            "[router]\nkind = \"memory-aware\"\nlambda = 0.0\n[sweep]\naxes = { \"router.lambda\" = [0.0, inf] }\n",
        ),
        &["router.lambda", "inf"],
    ),
    (
        "--bonus inf",
        From::Route(&["--router", "memory-aware", "--bonus", "inf"]),
        &["--bonus inf"],
    ),
    (
        "--hot-bonus NaN",
        From::Route(&["--router", "memory-aware", "--hot-bonus", "NaN"]),
        &["--hot-bonus NaN"],
    ),
    // cross-layer router: λ = -inf ran with 0 expert uses.
    (
        "lambda = -inf",
        From::File("[router]\nkind = \"cross-layer\"\nlambda = -inf\n"),
        &["router.lambda", "-inf"],
    ),
    (
        "--bonus=-inf",
        From::Route(&["--router", "cross-layer", "--bonus=-inf"]),
        &["--bonus -inf"],
    ),
    // max-rank router: keep 9 of top-2, rank limit 0.
    (
        "keep = 9",
        From::File("[router]\nkind = \"max-rank\"\nkeep = 9\nrank_limit = 4\n"),
        &["router.keep", "9", "top-2"],
    ),
    (
        "rank_limit = 0",
        From::File("[router]\nkind = \"max-rank\"\nkeep = 1\nrank_limit = 0\n"),
        &["router.rank_limit", "0"],
    ),
    (
        "rank_limit = 17 of 16",
        From::File("[router]\nkind = \"max-rank\"\nkeep = 1\nrank_limit = 17\n"),
        &["router.rank_limit", "17", "16 experts"],
    ),
    (
        "keep = 9 (sweep axis)",
        From::Sweep(
            "[router]\nkind = \"max-rank\"\nkeep = 1\nrank_limit = 4\n[sweep]\naxes = { \"router.keep\" = [1, 9] }\n",
        ),
        &["router.keep", "9"],
    ),
    (
        "--max-rank-keep 9",
        From::Route(&["--router", "max-rank", "--max-rank-keep", "9"]),
        &["--max-rank-keep 9", "top-2"],
    ),
    (
        "--max-rank-limit 0",
        From::Route(&["--router", "max-rank", "--max-rank-limit", "0"]),
        &["--max-rank-limit 0"],
    ),
    // eviction policy.
    (
        "policy = ema:1.5",
        From::File("[cache]\npolicy = \"ema:1.5\"\n"),
        &["cache.policy", "1.5", "[0, 1)"],
    ),
    (
        "policy = ema:nan",
        From::File("[cache]\npolicy = \"ema:nan\"\n"),
        &["cache.policy", "NaN"],
    ),
    (
        "policy = ema:1.5 (sweep axis)",
        From::Sweep("[sweep]\naxes = { \"cache.policy\" = [\"lru\", \"ema:1.5\"] }\n"),
        &["cache.policy", "1.5"],
    ),
    (
        "--policy ema:1.5",
        From::Route(&["--policy", "ema:1.5"]),
        &["ema:1.5", "[0, 1)"],
    ),
    (
        "capacity_experts = nan",
        From::File("[cache]\ncapacity_experts = nan\n"),
        &["cache.capacity_experts"],
    ),
    // prefetch.
    (
        "history decay = 1",
        From::File("[prefetch]\nkind = \"history\"\ndecay = 1.0\n"),
        &["prefetch.decay", "[0, 1)"],
    ),
    (
        "count = 0",
        From::File("[prefetch]\nkind = \"oracle\"\ncount = 0\n"),
        &["prefetch.count", "0"],
    ),
    (
        "count = 17 of 16",
        From::File("[prefetch]\nkind = \"oracle\"\ncount = 17\n"),
        &["prefetch.count", "17"],
    ),
    (
        "history decay = nan (sweep axis)",
        From::Sweep(
            "[prefetch]\nkind = \"history\"\n[sweep]\naxes = { \"prefetch.decay\" = [0.5, nan] }\n",
        ),
        &["prefetch.decay", "NaN"],
    ),
    // arrivals.
    (
        "rate_per_s = 0",
        From::File("[scenario]\narrival = { kind = \"poisson\", rate_per_s = 0.0 }\n"),
        &["scenario.arrival.rate_per_s", "0"],
    ),
    (
        "rate_per_s = 1e-300",
        From::File("[scenario]\narrival = { kind = \"poisson\", rate_per_s = 1e-300 }\n"),
        &["scenario.arrival.rate_per_s", "1e-300"],
    ),
    (
        "think_time_ns = 1e19",
        From::File(
            "[scenario]\narrival = { kind = \"closed-loop\", think_time_ns = 10000000000000000000 }\n",
        ),
        &["scenario.arrival.think_time_ns"],
    ),
    // precision planners and run-time precision.
    (
        "hot_pct = nan",
        From::File(
            "[precision]\nallocator = { kind = \"frequency-tiers\", hot_pct = nan, cold_pct = 0.1, hot = \"q4_k\", warm = \"q3_k\", cold = \"q2_k\" }\n",
        ),
        &["precision.allocator.hot_pct", "NaN"],
    ),
    (
        "budget_bits_per_weight = inf",
        From::File(
            "[precision]\nallocator = { kind = \"budget-optimal\", formats = [\"q2_k\", \"q4_k\"], budget_bits_per_weight = inf }\n",
        ),
        &["precision.allocator.budget_bits_per_weight", "inf"],
    ),
    (
        "gate_below = 2",
        From::File("[precision]\nlow_on_miss = { gate_below = 2.0 }\n"),
        &["precision.low_on_miss.gate_below", "2"],
    ),
    (
        "at_ms = 1e300",
        From::File(
            "[precision.dynamic]\nbattery_low_pct = 20.0\nmemory_pressure_high = 0.9\ntimeline = [{ at_ms = 1e300, thermal = \"critical\" }]\n",
        ),
        &["precision.dynamic.timeline[0].at_ms", "1e300"],
    ),
    // quality settings.
    (
        "ffn_dim = 100000000",
        From::File("[quality]\nffn_dim = 100000000\n"),
        &["quality.ffn_dim", "65536"],
    ),
    (
        "df = nan",
        From::File("[quality]\nweights = { kind = \"student-t\", df = nan }\n"),
        &["quality.weights.df", "NaN"],
    ),
    (
        "outliers scale = inf",
        From::File("[quality]\noutliers = { experts = 0.5, channels = 0.1, scale = inf }\n"),
        &["quality.outliers"],
    ),
    (
        "samples = 10^7",
        From::File("[quality]\nsamples = 10000000\n"),
        &["quality.samples"],
    ),
];

fn trace(dir: &Path) -> String {
    let trace = dir.join("t.jsonl");
    let run = moesim([
        "trace",
        "generate",
        "--preset",
        "micro-moe",
        "--requests",
        "1",
        "--tokens",
        "4",
        "--out",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    trace.to_string_lossy().into_owned()
}

#[test]
fn every_bad_plugin_parameter_is_refused_wherever_it_comes_from() {
    let dir = scratch("params_table");
    let t = trace(&dir);
    let out = dir.join("out");
    for (i, (value, from, needles)) in CASES.iter().enumerate() {
        let run = match from {
            From::File(sections) | From::Sweep(sections) => {
                let exp = dir.join(format!("case{i}.toml"));
                std::fs::write(&exp, format!("{BASE}{sections}")).unwrap();
                moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()])
            }
            From::Route(flags) => {
                let mut args = vec!["route", t.as_str(), "--capacity", "3"];
                args.extend_from_slice(flags);
                moesim(&args)
            }
        };
        println!("{value}: {}", run.stderr.trim());
        assert_bad_input(&run, needles);
        if let From::File(_) | From::Sweep(_) = from {
            assert!(
                run.stderr.contains(&format!("case{i}.toml")),
                "{value}: the error names the file: {}",
                run.stderr
            );
        }
        assert!(
            !out.exists(),
            "{value}: a refused run wrote {}",
            out.display()
        );
    }
}

/// The good values next to each bad one run: the checks refuse what is wrong, not the kind.
#[test]
fn the_good_neighbours_of_the_table_run() {
    let dir = scratch("params_good");
    let cases = [
        "[router]\nkind = \"ema\"\nalpha = 1.0\nbeta = 0.1\ngamma = 0.1\ndecay = 0.9\n",
        "[router]\nkind = \"memory-aware\"\nlambda = 1.0\nhot_bonus = 1.0\nwarmup_rate = 0.5\n",
        "[router]\nkind = \"cross-layer\"\nlambda = 0.5\n",
        "[router]\nkind = \"max-rank\"\nkeep = 2\nrank_limit = 16\n",
        "[cache]\npolicy = \"ema:0.5\"\n[prefetch]\nkind = \"history\"\ndecay = 0.5\ncount = 16\n",
        "[scenario]\narrival = { kind = \"poisson\", rate_per_s = 1e-6 }\n[quality]\nsamples = 4\nffn_dim = 512\n",
    ];
    for (i, sections) in cases.iter().enumerate() {
        let exp = dir.join(format!("good{i}.toml"));
        std::fs::write(&exp, format!("{BASE}{sections}")).unwrap();
        let out = dir.join(format!("out{i}"));
        let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{sections}: {}", run.stderr);
    }
}
