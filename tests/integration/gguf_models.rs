//! GGUF files in (issue 22, item 2): `moesim model show FILE.gguf` and `model import` on small
//! files of eight architectures written at test time by the `gguf` package's writer with real
//! metadata keys, tensor names and shapes (`scripts/gguf_moe_fixtures.py`): shape, MoE blocks,
//! each block's expert formats and bytes and the total parameter count must be exactly what the
//! writer wrote; the imported spec must count the same parameters. Damaged files (truncated, a
//! tensor past the end, an unknown type, an absurd count, not GGUF) exit 2 on one line naming the
//! file and the tensor or key. The ggml type table is checked against `gguf`'s.

use std::process::Command;

use serde_json::Value;

use crate::libcachesim_check::python;
use crate::util::{assert_bad_input, moesim, scratch};

/// The fixtures, written into a scratch directory of their own for test `tag`.
fn fixtures(tag: &str) -> Option<std::path::PathBuf> {
    let py = python()?;
    let dir = scratch(&format!("gguf_models_{tag}"));
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(py)
        .arg(format!("{root}/scripts/gguf_moe_fixtures.py"))
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(dir)
}

const ARCHS: [&str; 8] = [
    "qwen3moe",
    "mixtral",
    "deepseek2",
    "gpt-oss",
    "qwen2moe",
    "glm4moe",
    "olmoe",
    "phimoe",
];

#[test]
fn every_fixture_reads_back_its_shape_formats_and_bytes() {
    let Some(dir) = fixtures("read") else { return };
    for name in ARCHS {
        let file = dir.join(format!("{name}.gguf"));
        let expect: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        let run = moesim(["model", "show", file.to_str().unwrap(), "--json"]);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        let got: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(got["architecture"], expect["architecture"], "{name}");
        assert_eq!(got["layers"], expect["layers"], "{name}");
        assert_eq!(got["routed_experts"], expect["experts"], "{name}");
        assert_eq!(got["top_k"], expect["top_k"], "{name}");
        assert_eq!(
            got["expert_intermediate_size"], expect["expert_ffn"],
            "{name}"
        );
        assert_eq!(got["shared_experts"], expect["shared_experts"], "{name}");
        assert_eq!(got["total_params"], expect["total_params"], "{name}");
        assert_eq!(got["max_context_tokens"], expect["max_tokens"], "{name}");
        assert_eq!(
            got["moe_layers"], expect["moe_layers"],
            "{name}: per-block formats and bytes"
        );

        // The imported spec counts the same parameters and keeps the KV shape.
        let spec = dir.join(format!("{name}.toml"));
        let run = moesim([
            "model",
            "import",
            file.to_str().unwrap(),
            "--out",
            spec.to_str().unwrap(),
        ]);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        let run = moesim(["model", "show", spec.to_str().unwrap(), "--json"]);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        let shown: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(
            shown["total_params"], expect["total_params"],
            "{name}: imported spec"
        );
        let moe: Vec<u64> = expect["moe_layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["layer"].as_u64().unwrap())
            .collect();
        let shown_moe: Vec<u64> = shown["moe_layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_u64().unwrap())
            .collect();
        assert_eq!(shown_moe, moe, "{name}: MoE blocks");
        let text = std::fs::read_to_string(&spec).unwrap();
        let toml: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            toml["context"]["values_per_token"].as_integer().unwrap() as u64,
            expect["kv_values_per_token"].as_u64().unwrap(),
            "{name}: KV values per token"
        );
        if let Some(w) = expect.get("sliding_window_layers") {
            assert_eq!(
                toml["context"]["sliding_window_layers"]
                    .as_integer()
                    .unwrap() as u64,
                w.as_u64().unwrap(),
                "{name}"
            );
        }
    }
}

#[test]
fn the_type_table_is_ggufs() {
    let Some(dir) = fixtures("types") else { return };
    let sizes: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("quant_sizes.json")).unwrap())
            .unwrap();
    let sizes = sizes.as_object().unwrap();
    for t in moesim::gguf::types::TYPES {
        let v = &sizes[t.name];
        if t.name == "Q8_1" {
            // gguf 0.19 still lists Q8_1's old layout (two f32, 40 bytes); ggml's block_q8_1
            // holds two halves and 32 int8 (36 bytes, a static_assert in ggml-common.h). Q8_1
            // is an activation type that files do not store.
            assert_eq!((v[1].as_u64().unwrap(), t.block_bytes), (40, 36));
            continue;
        }
        assert_eq!(v[0].as_u64().unwrap(), t.block_values, "{}", t.name);
        assert_eq!(v[1].as_u64().unwrap(), t.block_bytes, "{}", t.name);
        assert_eq!(v[2].as_u64().unwrap(), t.id as u64, "{}", t.name);
    }
    assert_eq!(
        sizes.len(),
        moesim::gguf::types::TYPES.len(),
        "every type gguf knows"
    );
}

#[test]
fn damaged_files_fail_on_one_line_naming_the_tensor_or_key() {
    let Some(dir) = fixtures("damaged") else {
        return;
    };
    let good = std::fs::read(dir.join("qwen3moe.gguf")).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // The tensor infos of token_embd.weight: name, n_dims (u32), dims (u64 each), type (u32).
    let name = b"token_embd.weight";
    let at = good
        .windows(name.len())
        .position(|w| w == name)
        .expect("the first tensor's name");
    let type_at = at + name.len() + 4 + 2 * 8;
    let mut unknown = good.clone();
    unknown[type_at..type_at + 4].copy_from_slice(&99u32.to_le_bytes());
    let mut absurd = good.clone();
    absurd[8..16].copy_from_slice(&(u64::MAX / 3).to_le_bytes());
    let mut three_d = good.clone();
    three_d[at + name.len()..at + name.len() + 4].copy_from_slice(&7u32.to_le_bytes());
    // A control character in the name of a bad tensor (found by fuzzing: the error line must
    // stay one line).
    let mut control = three_d.clone();
    control[at] = b'\n';
    // A u32 metadata value set to `v` (key, then type 4 = u32, then the value). Attention
    // figures near u32::MAX made the KV shape's products overflow (found by fuzzing); a huge
    // model width with a zero-width shared expert made the spec's count overflow.
    let set_u32 = |bytes: &[u8], key: &str, v: u32| {
        let at = bytes
            .windows(key.len())
            .position(|w| w == key.as_bytes())
            .unwrap_or_else(|| panic!("{key} in the fixture"))
            + key.len();
        assert_eq!(bytes[at..at + 4], 4u32.to_le_bytes(), "{key} is a u32");
        let mut out = bytes.to_vec();
        out[at + 4..at + 8].copy_from_slice(&v.to_le_bytes());
        out
    };
    let deepseek = std::fs::read(dir.join("deepseek2.gguf")).unwrap();
    let huge_latent = set_u32(
        &set_u32(&deepseek, "deepseek2.attention.head_count", u32::MAX),
        "deepseek2.attention.kv_lora_rank",
        u32::MAX,
    );
    let huge_key = set_u32(&good, "qwen3moe.attention.key_length", u32::MAX);
    let huge_width = set_u32(&good, "qwen3moe.embedding_length", u32::MAX);
    let cases: Vec<(std::path::PathBuf, Vec<&str>)> = vec![
        (
            write("latent.gguf", &huge_latent),
            vec!["deepseek2.attention.head_count", "larger than any model's"],
        ),
        (
            write("key-length.gguf", &huge_key),
            vec!["qwen3moe.attention.key_length", "larger than any model's"],
        ),
        (
            write("width.gguf", &huge_width),
            vec!["qwen3moe.embedding_length", "not a model width"],
        ),
        (
            write("control.gguf", &control),
            vec!["\\noken_embd.weight", "7 dimensions"],
        ),
        (
            write("half.gguf", &good[..good.len() / 2]),
            vec!["past the end", "truncated"],
        ),
        (write("header-only.gguf", &good[..200]), vec!["truncated"]),
        (
            write("last-bytes.gguf", &good[..good.len() - 10]),
            vec!["output.weight", "past the end"],
        ),
        (
            write("unknown.gguf", &unknown),
            vec!["token_embd.weight", "unknown ggml type 99"],
        ),
        (
            write("absurd.gguf", &absurd),
            vec!["cannot fit", "count corrupt"],
        ),
        (
            write("dims.gguf", &three_d),
            vec!["token_embd.weight", "7 dimensions"],
        ),
        (
            write("text.gguf", b"this is not a model\n"),
            vec!["not a GGUF file"],
        ),
        (write("empty.gguf", b""), vec!["truncated"]),
    ];
    for (path, needles) in &cases {
        let run = moesim(["model", "show", path.to_str().unwrap()]);
        let mut needles = needles.clone();
        let file = path.display().to_string();
        needles.push(&file);
        assert_bad_input(&run, &needles);
        let out = dir.join("never.toml");
        let run = moesim([
            "model",
            "import",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(!out.exists(), "no output from a bad file");
    }
    // Import never overwrites its input.
    let input = dir.join("mixtral.gguf");
    let before = std::fs::read(&input).unwrap();
    let run = moesim([
        "model",
        "import",
        input.to_str().unwrap(),
        "--out",
        input.to_str().unwrap(),
    ]);
    assert_bad_input(&run, &["--out", "input"]);
    assert_eq!(std::fs::read(&input).unwrap(), before);
}

#[test]
fn an_experiment_on_a_gguf_file_pages_its_exact_expert_bytes() {
    let Some(dir) = fixtures("experiment") else {
        return;
    };
    let expect: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("qwen3moe.json")).unwrap()).unwrap();
    let layer_bytes: Vec<u64> = expect["moe_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["expert_bytes"].as_u64().unwrap())
        .collect();
    assert!(
        layer_bytes.iter().any(|&b| b != layer_bytes[0]),
        "the fixture mixes formats across blocks"
    );
    let exp = dir.join("gguf-experiment.toml");
    std::fs::write(
        &exp,
        r#"
schema_version = 1
name = "gguf-experiment"
[hardware]
profile = "pc-rtx4090-pcie4"
[model]
gguf = "qwen3moe.gguf"
format = "q4_k"
[trace]
generator = "micro-moe"
requests = 1
prefill_tokens = 0
decode_tokens = 16
[cache]
capacity_experts = 0
[quality]
samples = 0
"#,
    )
    .unwrap();
    let out = dir.join("out");
    let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Every expert is stored once in DRAM, in the file's bytes.
    let tiers = std::fs::read_to_string(out.join("tiers.csv")).unwrap();
    let mut lines = tiers.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "expert_storage_bytes")
        .unwrap();
    let stored: u64 = lines
        .map(|l| l.split(',').nth(col).unwrap().parse::<u64>().unwrap())
        .sum();
    let experts = expect["experts"].as_u64().unwrap();
    assert_eq!(stored, experts * layer_bytes.iter().sum::<u64>());
    // No cache: every use is a load of that layer's bytes; 16 tokens x 8 layers x 2 experts.
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let mut lines = metrics.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let get = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    let loaded: u64 = get("bytes_loaded").parse().unwrap();
    assert_eq!(get("misses"), "256");
    assert_eq!(loaded, 16 * 2 * layer_bytes.iter().sum::<u64>());

    // Both `spec` and `gguf`, or neither: one line naming the key.
    let bad = dir.join("both.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&exp)
            .unwrap()
            .replace("gguf = ", "spec = \"micro-moe\"\ngguf = "),
    )
    .unwrap();
    let run = moesim([
        "run",
        bad.to_str().unwrap(),
        "--out",
        dir.join("o2").to_str().unwrap(),
    ]);
    assert_bad_input(&run, &["model", "either `spec`"]);
}

/// `[quality] weights = { kind = "gguf" }`: the quality path's experts are the file's own,
/// dequantized from its bytes (bit for bit as `gguf.quants.dequantize` decodes them), and a
/// run on them measures their error.
#[test]
fn quality_reads_real_expert_weights_from_a_gguf_file() {
    let Some(py) = python() else { return };
    let dir = scratch("gguf_quality");
    let root = env!("CARGO_MANIFEST_DIR");
    let file = dir.join("m.gguf");
    let out = Command::new(&py)
        .arg(format!("{root}/scripts/write_moe_gguf.py"))
        .arg(&file)
        .args([
            "--layers",
            "8",
            "--experts",
            "16",
            "--top-k",
            "2",
            "--hidden",
            "256",
        ])
        .args(["--expert-ffn", "256", "--format", "q8_0", "--seed", "5"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // gguf's decoding of block 3's expert 5.
    let script = r#"
import sys, numpy as np, gguf
r = gguf.GGUFReader(sys.argv[1])
for t in r.tensors:
    for p in ("gate", "up", "down"):
        if t.name == f"blk.3.ffn_{p}_exps.weight":
            d = gguf.quants.dequantize(t.data, t.tensor_type)
            np.save(f"{sys.argv[2]}/{p}.npy", np.ascontiguousarray(d[5].astype(np.float32)))
"#;
    let out = Command::new(&py)
        .args(["-c", script, file.to_str().unwrap(), dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g = moesim::weights::gguf_experts::GgufExperts::open(&file).unwrap();
    use moesim::quality::WeightSource;
    let e = g.expert(3, 5).unwrap();
    for (p, ours) in [("gate", &e.w1), ("up", &e.w3), ("down", &e.w2)] {
        let m = moesim::weights::npy::read(&std::fs::read(dir.join(format!("{p}.npy"))).unwrap())
            .unwrap();
        assert_eq!(m.data.len(), ours.len(), "{p}");
        let differing = m
            .data
            .iter()
            .zip(ours.iter())
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differing, 0, "{p}: {differing} values differ from gguf");
        assert!(ours.iter().any(|&v| v != 0.0), "{p}: real weights");
    }
    // A quality run on the file's experts (micro-moe's 8 MoE layers x 16 experts).
    let base = std::fs::read_to_string(format!("{root}/experiments/precision-uniform-q2k.toml"))
        .unwrap()
        .replace("samples = 256", "samples = 32");
    let gguf_exp = dir.join("q.toml");
    std::fs::write(
        &gguf_exp,
        base.replace(
            "weights = { kind = \"gaussian\" }",
            "weights = { kind = \"gguf\", file = \"m.gguf\" }",
        ),
    )
    .unwrap();
    let run = moesim([
        "run",
        gguf_exp.to_str().unwrap(),
        "--out",
        dir.join("o").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["output_samples"], 32);
    let rel = v["output_rel_l2_mean"].as_f64().unwrap();
    assert!(rel > 0.0 && rel < 1.0, "{rel}");
    // A file whose experts do not match the model is refused, naming the key.
    let small = dir.join("small.gguf");
    let out = Command::new(&py)
        .arg(format!("{root}/scripts/write_moe_gguf.py"))
        .arg(&small)
        .args([
            "--layers",
            "2",
            "--experts",
            "16",
            "--top-k",
            "2",
            "--hidden",
            "256",
        ])
        .args(["--expert-ffn", "256", "--format", "q8_0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&gguf_exp)
            .unwrap()
            .replace("m.gguf", "small.gguf"),
    )
    .unwrap();
    let run = moesim([
        "run",
        bad.to_str().unwrap(),
        "--out",
        dir.join("o2").to_str().unwrap(),
    ]);
    assert_bad_input(&run, &["quality.weights", "2 MoE layers"]);
}
