//! MoE model specs: every shipped preset's parameter counts against the published figures, and
//! bad model files.

use crate::util::{assert_bad_input, moesim, scratch};

/// Computed vs published counts of one preset, from `moesim model show --json`.
fn counts(name: &str) -> (f64, f64, Option<f64>, Option<f64>) {
    let run = moesim(["model", "show", name, "--json"]);
    assert_eq!(run.code, 0, "{name}: {}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let p = &v["published"];
    (
        v["total_params"].as_f64().unwrap(),
        p["total_params"].as_f64().unwrap(),
        p["active_params_counted_as_published"].as_f64(),
        p["active_params"].as_f64(),
    )
}

fn relative(computed: f64, published: f64) -> f64 {
    computed / published - 1.0
}

/// Asserts total (and active, where published) within 2 % of the published figure.
fn within_two_percent(name: &str) {
    let (total, published_total, active, published_active) = counts(name);
    let e = relative(total, published_total);
    assert!(
        e.abs() <= 0.02,
        "{name}: total {total} vs published {published_total} ({:+.2}%)",
        100.0 * e
    );
    if let (Some(a), Some(pa)) = (active, published_active) {
        let e = relative(a, pa);
        assert!(
            e.abs() <= 0.02,
            "{name}: active {a} vs published {pa} ({:+.2}%)",
            100.0 * e
        );
    }
}

#[test]
fn micro_moe_counts() {
    within_two_percent("micro-moe");
}

#[test]
fn mixtral_8x7b_counts() {
    within_two_percent("mixtral-8x7b");
}

#[test]
fn mixtral_8x22b_counts() {
    within_two_percent("mixtral-8x22b");
}

#[test]
fn olmoe_counts() {
    within_two_percent("olmoe-1b-7b");
}

#[test]
fn qwen15_moe_counts() {
    within_two_percent("qwen1.5-moe-a2.7b");
}

#[test]
fn qwen3_30b_counts() {
    within_two_percent("qwen3-30b-a3b");
}

#[test]
fn deepseek_moe_16b_counts() {
    within_two_percent("deepseek-moe-16b");
}

#[test]
fn phi35_moe_counts() {
    within_two_percent("phi-3.5-moe");
}

/// DeepSeek-V2-Lite: the total is within 2 %. The published active figure ("2.4B") has two
/// significant digits; our count without the input embedding is 2.451B, 2.14 % above it, and with
/// it 2.66B. The test pins the exact count so any change in counting shows, and records the gap,
/// which the closing note of issue 2 reports.
#[test]
fn deepseek_v2_lite_counts() {
    let (total, published_total, active, published_active) = counts("deepseek-v2-lite");
    assert!(
        relative(total, published_total).abs() <= 0.02,
        "total {total}"
    );
    assert_eq!(active.unwrap(), 2_451_435_008.0);
    let e = relative(active.unwrap(), published_active.unwrap());
    assert!((0.021..0.022).contains(&e), "documented gap changed: {e}");
}

/// Switch-Base-8: only "~0.6B" (one significant digit) is published; our exact count is
/// 619.3M (+3.2 %), which agrees with the 0.62B computed in moe-models.md. The exact count is
/// pinned; the gap is reported in the closing note of issue 2.
#[test]
fn switch_base_8_counts() {
    let (total, published_total, _, _) = counts("switch-base-8");
    assert_eq!(total, 619_339_008.0);
    let e = relative(total, published_total);
    assert!((0.032..0.033).contains(&e), "documented gap changed: {e}");
}

#[test]
fn gpt_oss_20b_counts() {
    within_two_percent("gpt-oss-20b");
}

#[test]
fn gpt_oss_120b_counts() {
    within_two_percent("gpt-oss-120b");
}

#[test]
fn qwen3_235b_counts() {
    within_two_percent("qwen3-235b-a22b");
}

#[test]
fn deepseek_v3_counts() {
    within_two_percent("deepseek-v3");
}

#[test]
fn llama_4_scout_counts() {
    within_two_percent("llama-4-scout-17b-16e");
}

/// GLM-4.5-Air: Zhipu's activated count ("12B") leaves out both the embedding and the output
/// head (`active_excludes_output_head`; the same reading gives GLM-4.5's "32B"): 12.18B, +1.5 %.
#[test]
fn glm_4_5_air_counts() {
    within_two_percent("glm-4.5-air");
}

/// Qwen3-Next-80B-A3B: the total is within 2 %. The published active figure is the rounded
/// "A3B" label ("3B activated"); with the non-expert parameters given as one count (hybrid
/// Gated DeltaNet layers), moesim counts both embedding matrices as active: 3.875B, 29 % above
/// it (3.564B without the input embedding, 3.253B without either matrix). The exact count is
/// pinned and the gap recorded (see the comments in `src/moe/presets/qwen3-next-80b-a3b.toml`).
#[test]
fn qwen3_next_80b_counts() {
    let (total, published_total, active, published_active) = counts("qwen3-next-80b-a3b");
    assert!(
        relative(total, published_total).abs() <= 0.02,
        "total {total}"
    );
    assert_eq!(active.unwrap(), 3_874_929_408.0);
    let e = relative(active.unwrap(), published_active.unwrap());
    assert!((0.291..0.292).contains(&e), "documented gap changed: {e}");
}

#[test]
fn model_list_has_at_least_eight() {
    let run = moesim(["model", "list", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for required in [
        "micro-moe",
        "mixtral-8x7b",
        "olmoe-1b-7b",
        "qwen1.5-moe-a2.7b",
        "qwen3-30b-a3b",
        "deepseek-v2-lite",
        "phi-3.5-moe",
        "switch-base-8",
    ] {
        assert!(
            names.contains(&required),
            "{required} missing from {names:?}"
        );
    }
}

#[test]
fn expert_bytes_use_exact_bits_per_weight() {
    let run = moesim(["model", "show", "mixtral-8x7b", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let params = v["params_per_expert"].as_u64().unwrap();
    assert_eq!(params, 176_160_768);
    for row in v["expert_bytes"].as_array().unwrap() {
        let bpw = row["bits_per_weight"].as_f64().unwrap();
        let bytes = row["expert_bytes"].as_u64().unwrap() as f64;
        assert_eq!(bytes, params as f64 * bpw / 8.0, "{}", row["format"]);
    }
}

const MODEL_BASE: &str = include_str!("../../src/moe/presets/mixtral-8x7b.toml");

fn model_variant(test: &str, from: &str, to: &str) -> std::path::PathBuf {
    assert_eq!(MODEL_BASE.matches(from).count(), 1, "`{from}`");
    let path = scratch(test).join("model.toml");
    std::fs::write(&path, MODEL_BASE.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn user_model_file_loads() {
    let path = model_variant(
        "model_user_file",
        "name = \"mixtral-8x7b\"",
        "name = \"my-mixtral\"",
    );
    let run = moesim(["model", "show", path.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("\"my-mixtral\""));
}

#[test]
fn model_unknown_key_is_rejected() {
    let path = model_variant("model_unknown_key", "top_k = 2", "top_k = 2\ntopk = 3");
    let run = moesim(["model", "show", path.to_str().unwrap()]);
    assert_bad_input(&run, &[path.to_str().unwrap(), "topk", "unknown field"]);
}

#[test]
fn model_top_k_above_experts_is_rejected() {
    let path = model_variant("model_top_k", "top_k = 2", "top_k = 9");
    let run = moesim(["model", "show", path.to_str().unwrap()]);
    assert_bad_input(
        &run,
        &[path.to_str().unwrap(), "top_k", "exceeds routed_experts"],
    );
}

#[test]
fn model_attention_kind_is_checked() {
    let path = model_variant("model_attention_kind", "kind = \"gqa\"", "kind = \"flash\"");
    let run = moesim(["model", "show", path.to_str().unwrap()]);
    assert_bad_input(
        &run,
        &[path.to_str().unwrap(), "dense.attention", "unknown variant"],
    );
}

/// Widths that overflowed silently ("total 63.86 M" for 2^63 - 1; more active than total
/// parameters for 4·10^15) and head layouts grouped-query attention cannot have.
#[test]
fn overflowing_widths_and_impossible_head_layouts_are_refused() {
    let cases = [
        (
            "expert_intermediate_size = 14336",
            "expert_intermediate_size = 9223372036854775807",
            "expert_intermediate_size",
            "more than 10^15 parameters",
        ),
        (
            "expert_intermediate_size = 14336",
            "expert_intermediate_size = 4000000000000000",
            "expert_intermediate_size",
            "more than 10^15 parameters",
        ),
        // An overflow is blamed on the key that caused it (routed_experts was blamed on
        // expert_intermediate_size).
        (
            "routed_experts = 8",
            "routed_experts = 4000000000",
            "routed_experts: gives more than 10^15",
            "multiplied",
        ),
        (
            "hidden_size = 4096",
            "hidden_size = 1000000000000",
            "hidden_size: gives more than 10^15",
            "multiplied",
        ),
        (
            "kv_heads = 8",
            "kv_heads = 0",
            "dense.attention.kv_heads",
            "must be in 1..=32",
        ),
        (
            "kv_heads = 8",
            "kv_heads = 64",
            "dense.attention.kv_heads",
            "divide heads",
        ),
        (
            "kv_heads = 8",
            "kv_heads = 7",
            "dense.attention.kv_heads",
            "divide heads",
        ),
        ("heads = 32", "heads = 0", "dense.attention.heads", "> 0"),
        (
            "head_dim = 128",
            "head_dim = 4611686018427387904",
            "dense.attention",
            "more than 10^15",
        ),
    ];
    for (i, (from, to, key, reason)) in cases.iter().enumerate() {
        let path = model_variant(&format!("model_overflow_{i}"), from, to);
        let run = moesim(["model", "show", path.to_str().unwrap()]);
        assert_bad_input(&run, &[path.to_str().unwrap(), key, reason]);
    }
}
