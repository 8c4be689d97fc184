//! llama.cpp's quantization mixes (issue 22): the types moesim's mix rules give every tensor
//! equal the types `llama-quantize` wrote (tests/data/ggml-mix/, from
//! scripts/ggml_mix_fixtures.sh: four small MoE models, 19 mixes, F32 inputs), and
//! `moesim model show --mix`.

use std::path::{Path, PathBuf};

use moesim::gguf::mix::{self, Mix};
use moesim::gguf::read::{GgufHeader, TensorInfo, Value};
use moesim::gguf::types::TYPES;

use crate::util::moesim;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ggml-mix")
}

/// The F32 header scripts/write_f32_moe_gguf.py wrote for `model` (its shapes), with the
/// tensor names llama-quantize listed.
fn header(model: &serde_json::Value, names: &[String]) -> GgufHeader {
    let g = |k: &str| model[k].as_u64().unwrap();
    let arch = model["arch"].as_str().unwrap().to_string();
    let (hidden, ffn, experts, heads, kv) = (
        g("hidden"),
        g("expert_ffn"),
        g("experts"),
        g("heads"),
        g("kv_heads"),
    );
    let head_dim = if arch == "llama" { hidden / heads } else { 64 };
    let vocab = 3 + 256;
    let f32t = *TYPES.iter().find(|t| t.name == "F32").unwrap();
    let tensors = names
        .iter()
        .map(|n| {
            let s = n.rsplit_once("blk.").map_or(n.as_str(), |(_, r)| {
                r.split_once('.').map_or(r, |(_, rest)| rest)
            });
            let dims: Vec<u64> = match s {
                "token_embd.weight" | "output.weight" => vec![hidden, vocab],
                "attn_q.weight" => vec![hidden, heads * head_dim],
                "attn_k.weight" | "attn_v.weight" => vec![hidden, kv * head_dim],
                "attn_output.weight" => vec![heads * head_dim, hidden],
                "ffn_gate_inp.weight" => vec![hidden, experts],
                "ffn_gate_exps.weight" | "ffn_up_exps.weight" => vec![hidden, ffn, experts],
                "ffn_down_exps.weight" => vec![ffn, hidden, experts],
                "attn_q_norm.weight" | "attn_k_norm.weight" => vec![head_dim],
                other if other.ends_with("norm.weight") => vec![hidden],
                other => panic!("unexpected tensor {other}"),
            };
            let values: u64 = dims.iter().product();
            TensorInfo {
                name: n.clone(),
                dims,
                ggml_type: f32t,
                offset: 0,
                bytes: values * 4,
            }
        })
        .collect();
    let u = |v: u64| Value::U64(v);
    GgufHeader {
        version: 3,
        metadata: vec![
            ("general.architecture".into(), Value::Str(arch.clone())),
            (format!("{arch}.block_count"), u(g("layers"))),
            (format!("{arch}.expert_count"), u(experts)),
            (format!("{arch}.expert_used_count"), u(g("top_k"))),
            (format!("{arch}.embedding_length"), u(hidden)),
            (format!("{arch}.attention.head_count"), u(heads)),
            (format!("{arch}.attention.head_count_kv"), u(kv)),
        ],
        tensors,
        data_offset: 0,
        file_bytes: 0,
    }
}

#[test]
fn mix_rules_give_llama_quantizes_types() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("MANIFEST.json")).unwrap())
            .unwrap();
    let (mut files, mut tensors, mut quantized) = (0, 0, 0);
    let mut wrong = Vec::new();
    for (model_name, results) in manifest["results"].as_object().unwrap() {
        let model = &manifest["models"][model_name];
        for (mix_name, r) in results.as_object().unwrap() {
            if r["status"] != "ok" {
                // Refused by llama-quantize (an importance matrix needed): refused by moesim.
                assert!(mix_name.parse::<Mix>().is_err(), "{model_name} {mix_name}");
                continue;
            }
            let mix: Mix = mix_name.parse().unwrap();
            let fixture: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(dir().join(r["file"].as_str().unwrap())).unwrap(),
            )
            .unwrap();
            let want = fixture["tensors"].as_object().unwrap();
            let names: Vec<String> = want.keys().cloned().collect();
            let h = header(model, &names);
            let got = mix::types(mix, &h).unwrap();
            for (n, t) in names.iter().zip(&got) {
                let expected = want[n].as_str().unwrap();
                if t.name != expected {
                    wrong.push(format!(
                        "{model_name} {mix_name} {n}: {} != {expected}",
                        t.name
                    ));
                }
                quantized += usize::from(expected != "F32");
            }
            tensors += names.len();
            files += 1;
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong: {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(30)]
    );
    assert_eq!(files, 4 * 19, "four models x 19 mixes");
    assert!(
        tensors > 16_000 && quantized > 9_000,
        "{tensors} tensors, {quantized} quantized"
    );
}

#[test]
fn model_show_mix_of_a_preset() {
    let run = moesim(["model", "show", "mixtral-8x7b", "--mix", "q4_k_m"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = &run.stdout;
    // Mixtral (8 experts): attn_k and attn_v in Q8_0, attn_output Q5_K, the output head Q6_K,
    // ffn_down_exps Q6_K in the layers use_more_bits picks of 32 (16 of them), Q4_K elsewhere.
    for needle in [
        "Q4_K_M",
        "attn_v",
        "Q8_0",
        "output",
        "Q6_K",
        "ffn_down_exps",
    ] {
        assert!(out.contains(needle), "`{needle}` missing:\n{out}");
    }
    let row = |role: &str, ty: &str| {
        out.lines()
            .find(|l| l.split_whitespace().take(2).eq([role, ty]))
            .unwrap_or_else(|| panic!("no {role} {ty} row:\n{out}"))
            .to_string()
    };
    assert!(row("ffn_down_exps", "Q6_K").ends_with("0-3, 6, 9, 12, 15, 18, 21, 24, 27-31"));
    assert!(row("ffn_down_exps", "Q4_K").contains("4-5, 7-8"));
    assert!(row("attn_v", "Q8_0").ends_with("0-31"));
    assert!(row("attn_k", "Q8_0").ends_with("0-31"));
    assert!(row("attn_output", "Q5_K").ends_with("0-31"));
    row("output", "Q6_K");
    row("token_embd", "Q4_K");
    // The JSON lists the same.
    let json = moesim(["model", "show", "mixtral-8x7b", "--mix", "Q4_K_M", "--json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["mix"], "Q4_K_M");
    let downs: Vec<_> = v["tensor_types"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["role"] == "ffn_down_exps")
        .collect();
    assert_eq!(downs.len(), 2);
    assert_eq!(
        downs
            .iter()
            .map(|e| e["blocks"].as_array().unwrap().len())
            .sum::<usize>(),
        32
    );
    // A spec with only a dense parameter count has no tensors to lay out.
    let dir = crate::util::scratch("mix_params_only");
    let spec = dir.join("m.toml");
    std::fs::write(
        &spec,
        "schema_version = 1\nname = \"m\"\ndescription = \"d\"\nsources = []\nlayers = 2\nhidden_size = 256\nexpert_intermediate_size = 256\nrouted_experts = 4\ntop_k = 2\nffn = \"swiglu\"\n[dense]\nparams = 1000\n",
    )
    .unwrap();
    let r = moesim(["model", "show", spec.to_str().unwrap(), "--mix", "q4_k_m"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("vocab_size and attention"),
        "{}",
        r.stderr
    );
    let bad = moesim(["model", "show", "mixtral-8x7b", "--mix", "iq2_xxs"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("importance matrix"), "{}", bad.stderr);
    assert_eq!(bad.stderr.lines().count(), 1, "{}", bad.stderr);
}

/// Sizes of published Q4_K_M files (../shared/reference/published-results.md): a shipped
/// preset laid out in llama.cpp's tensors and given the mix's types comes within 2 % (the
/// files add their vocabulary, alignment padding and, for files made with older llama.cpp, the
/// rules of their day).
#[test]
fn q4_k_m_sizes_match_published_files() {
    for (model, published_bytes, what) in [
        ("qwen3-30b-a3b", 18.5e9, "18.5 GB (BigMoeOnEdge #155)"),
        (
            "glm-4.7-flash",
            17.1 * (1u64 << 30) as f64,
            "17.1 GiB (thecodacus/llama.cpp PR #5)",
        ),
    ] {
        let run = moesim(["model", "show", model, "--mix", "q4_k_m", "--json"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let ours = v["file_bytes"].as_u64().unwrap() as f64;
        let err = ours / published_bytes - 1.0;
        assert!(
            err.abs() < 0.02,
            "{model}: {ours} bytes vs published {what}: {:+.2} %",
            100.0 * err
        );
    }
}

/// `[model] mix`: every layer's experts are stored and paged at the bytes of the types the mix
/// gives them, as `model show --mix` lists them.
#[test]
fn an_experiment_with_a_mix_stores_each_layers_mixed_bytes() {
    let show = moesim([
        "model",
        "show",
        "qwen3-30b-a3b",
        "--mix",
        "q4_k_m",
        "--json",
    ]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    let v: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let layer_bytes: Vec<u64> = v["moe_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["expert_bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(layer_bytes.len(), 48);
    assert!(
        layer_bytes.iter().any(|&b| b != layer_bytes[0]),
        "Q6_K and Q4_K blocks"
    );
    let dir = crate::util::scratch("mix_experiment");
    let exp = dir.join("e.toml");
    let write = |mix: &str| {
        std::fs::write(
            &exp,
            format!(
                r#"
schema_version = 1
name = "mix"
[hardware]
profile = "pc-rtx4090-pcie4"
[model]
spec = "qwen3-30b-a3b"
{mix}
format = "q4_k"
[trace]
generator = "auto"
requests = 1
prefill_tokens = 0
decode_tokens = 4
[cache]
capacity_experts = 0
[quality]
samples = 0
"#
            ),
        )
        .unwrap()
    };
    let stored = |out: &Path| -> u64 {
        let tiers = std::fs::read_to_string(out.join("tiers.csv")).unwrap();
        let mut lines = tiers.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let col = header
            .iter()
            .position(|h| *h == "expert_storage_bytes")
            .unwrap();
        lines
            .map(|l| l.split(',').nth(col).unwrap().parse::<u64>().unwrap())
            .sum()
    };
    write("mix = \"q4_k_m\"");
    let out = dir.join("mixed");
    let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(stored(&out), 128 * layer_bytes.iter().sum::<u64>());
    write("");
    let plain = dir.join("plain");
    let run = moesim([
        "run",
        exp.to_str().unwrap(),
        "--out",
        plain.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        stored(&plain) < stored(&out),
        "Q4_K_M stores more than Q4_K"
    );
    // A mix that needs an importance matrix is refused, naming the key.
    write("mix = \"iq2_xxs\"");
    let bad = moesim([
        "run",
        exp.to_str().unwrap(),
        "--out",
        dir.join("bad").to_str().unwrap(),
    ]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("model.mix"), "{}", bad.stderr);
}
