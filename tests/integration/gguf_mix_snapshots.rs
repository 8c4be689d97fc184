//! llama.cpp's own quantization-type snapshots (tests/snapshots/*.schema of its
//! test-quant-type-selection.cpp: twelve real models, from Qwen3-0.6B to DeepSeek-V3.1)
//! as test vectors for moesim's mix rules. tests/data/ggml-mix/snapshots/ holds them
//! (scripts/ggml_mix_snapshots.py): each model's metadata and tensors, and per mix the
//! tensors whose type differs from the mix's default.
//!
//! Expanded as the C++ test does: every tensor it lists (the quantizable ones, all F32)
//! gets the section's type for it, else the default; the tensors it leaves out (norms,
//! routers, biases, 1-D) must keep their F32.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use moesim::gguf::mix::{self, Mix};
use moesim::gguf::read::{GgufHeader, TensorInfo, Value};
use moesim::gguf::types::{GgmlType, TYPES};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ggml-mix/snapshots")
}

fn ggml_type(name: &str) -> GgmlType {
    *TYPES
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("unknown ggml type {name}"))
}

/// The names a fixture pattern stands for: `blk.{0-2,5}.attn_v.weight` is blocks 0, 1, 2
/// and 5 (the script's `expand`); any other name is itself.
fn expand(pattern: &str) -> Vec<String> {
    let Some((set, rest)) = pattern
        .strip_prefix("blk.{")
        .and_then(|p| p.split_once("}."))
    else {
        return vec![pattern.to_string()];
    };
    let mut names = Vec::new();
    for part in set.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
        names.extend((a..=b).map(|i| format!("blk.{i}.{rest}")));
    }
    names
}

/// `[[pattern, ne], ...]` as `(name, ne)` pairs.
fn tensor_list(v: &serde_json::Value) -> Vec<(String, Vec<u64>)> {
    let mut out = Vec::new();
    for row in v.as_array().unwrap() {
        let dims: Vec<u64> = row[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        for name in expand(row[0].as_str().unwrap()) {
            out.push((name, dims.clone()));
        }
    }
    out
}

/// The header the C++ test builds: the model's metadata and every tensor as F32.
fn header(fixture: &serde_json::Value, tensors: &[(String, Vec<u64>)]) -> GgufHeader {
    let md = &fixture["metadata"];
    let arch = md["general.architecture"].as_str().unwrap().to_string();
    let mut metadata = vec![("general.architecture".to_string(), Value::Str(arch.clone()))];
    for (key, gguf_key) in [
        ("block_count", "block_count"),
        ("expert_count", "expert_count"),
        ("head_count", "attention.head_count"),
        ("head_count_kv", "attention.head_count_kv"),
    ] {
        if let Some(v) = md[key].as_u64() {
            metadata.push((format!("{arch}.{gguf_key}"), Value::U64(v)));
        }
    }
    let f32t = ggml_type("F32");
    let tensors = tensors
        .iter()
        .map(|(name, dims)| TensorInfo {
            name: name.clone(),
            dims: dims.clone(),
            ggml_type: f32t,
            offset: 0,
            bytes: dims.iter().product::<u64>() * 4,
        })
        .collect();
    GgufHeader {
        version: 3,
        metadata,
        tensors,
        data_offset: 0,
        file_bytes: 0,
    }
}

#[test]
fn mix_rules_give_llama_cpps_snapshot_types() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let (mut sections, mut checked) = (0usize, 0usize);
    let mut models = Vec::new();
    let mut wrong = Vec::new();
    for path in &files {
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let model = path.file_stem().unwrap().to_string_lossy().to_string();
        let listed = tensor_list(&fixture["tensors"]);
        let kept = tensor_list(&fixture["kept"]);
        let all: Vec<(String, Vec<u64>)> = listed.iter().chain(&kept).cloned().collect();
        let h = header(&fixture, &all);
        let is_listed: HashMap<&str, bool> = listed
            .iter()
            .map(|(n, _)| (n.as_str(), true))
            .chain(kept.iter().map(|(n, _)| (n.as_str(), false)))
            .collect();
        assert_eq!(is_listed.len(), all.len(), "{model}: a tensor twice");

        // The sections moesim does not model are refused by it.
        for mix_name in fixture["skipped"].as_object().unwrap().keys() {
            assert!(
                mix_name.parse::<Mix>().is_err(),
                "{model}: {mix_name} skipped, but moesim has it"
            );
        }
        let mixes = fixture["mixes"].as_object().unwrap();
        for m in Mix::ALL {
            assert!(mixes.contains_key(m.name()), "{model}: no section {m}");
        }
        for (mix_name, section) in mixes {
            let mix: Mix = mix_name.parse().unwrap();
            let default = section["default"].as_str().unwrap();
            assert_eq!(
                mix.default_type().name,
                default,
                "{model} {mix_name} default"
            );
            let mut expected: BTreeMap<String, &str> = BTreeMap::new();
            for (ty, patterns) in section["types"].as_object().unwrap() {
                for p in patterns.as_array().unwrap() {
                    for name in expand(p.as_str().unwrap()) {
                        // The C++ test also fails a section naming a tensor it does not list.
                        assert_eq!(
                            is_listed.get(name.as_str()),
                            Some(&true),
                            "{model} {mix_name}: {name} is not a listed tensor"
                        );
                        assert!(expected.insert(name, ty.as_str()).is_none());
                    }
                }
            }
            let got = mix::types(mix, &h).unwrap();
            for (t, g) in h.tensors.iter().zip(&got) {
                let want = if is_listed[t.name.as_str()] {
                    expected.get(&t.name).copied().unwrap_or(default)
                } else {
                    "F32"
                };
                if g.name != want {
                    wrong.push(format!(
                        "{model} {mix_name} {}: moesim {}, llama.cpp {want}",
                        t.name, g.name
                    ));
                }
            }
            checked += got.len();
            sections += 1;
        }
        models.push(model);
    }
    assert!(
        wrong.is_empty(),
        "{} wrong of {checked}: {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(40)]
    );
    // Twelve models, from the test's model_specs (DeepSeek-V3.1, GLM-4.6V, gpt-oss-120b,
    // Nemotron-3-Nano, Qwen3-Coder-Next, Qwen3.5-397B-A17B, Step-3.5-Flash: MoE).
    assert_eq!(models.len(), 12, "{models:?}");
    assert_eq!(sections, 12 * Mix::ALL.len());
    assert!(checked > 150_000, "{checked} tensor types checked");
}

#[test]
fn patterns_expand_to_blocks() {
    assert_eq!(
        expand("blk.{0-2,5}.attn_v.weight"),
        [
            "blk.0.attn_v.weight",
            "blk.1.attn_v.weight",
            "blk.2.attn_v.weight",
            "blk.5.attn_v.weight"
        ]
    );
    assert_eq!(expand("blk.7.ffn_up.weight"), ["blk.7.ffn_up.weight"]);
    assert_eq!(expand("output.weight"), ["output.weight"]);
}
