//! Sizes and values that parse but cannot be served (issue 17): each is refused before any
//! allocation it implies, in one line with exit code 2, naming the file and key or the flag.
//! Before these checks they aborted the process (exit 134), panicked in `quant`, or reported
//! "SQNR inf" with exit code 0.

use std::path::Path;

use crate::util::{assert_bad_input, moesim, scratch};

const GENERATOR: &str = include_str!("../../src/trace/presets/micro-moe.toml");

fn npy(path: &Path, rows: usize, cols: usize, value: impl Fn(usize) -> f32) {
    let data: Vec<f32> = (0..rows * cols).map(value).collect();
    std::fs::write(path, moesim::weights::npy::write_f32(rows, cols, &data)).unwrap();
}

#[test]
fn absurd_sizes_are_refused_before_allocating() {
    let dir = scratch("limits_sizes");
    // A trace header declaring a billion layers.
    let header = dir.join("layers.jsonl");
    std::fs::write(
        &header,
        "{\"format\":\"moesim-trace\",\"version\":1,\"layers\":1000000000,\"experts\":8,\"top_k\":2,\"logits\":false}\n",
    )
    .unwrap();
    let h = header.to_str().unwrap();
    assert_bad_input(
        &moesim(["trace", "stats", h]),
        &[h, "1000000000 layers exceed the supported 65536"],
    );
    assert_bad_input(
        &moesim(["cache", "replay", h, "--capacity", "2"]),
        &[h, "exceed the supported"],
    );
    // Generator specs with 10^8-10^9 topics or hidden widths.
    for (from, to, key) in [
        ("topics = 32", "topics = 1000000000", "topics"),
        ("hidden_dim = 256", "hidden_dim = 100000000", "hidden_dim"),
        ("layers = 8", "layers = 100000", "layers"),
        ("experts = 16", "experts = 70000", "experts"),
    ] {
        let spec = dir.join("gen.toml");
        std::fs::write(&spec, GENERATOR.replacen(from, to, 1)).unwrap();
        let out = dir.join("gen.jsonl");
        let run = moesim([
            "trace",
            "generate",
            "--preset",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_bad_input(&run, &[spec.to_str().unwrap(), key]);
        assert!(!out.exists());
    }
    // A generator whose model alone is 40 GB.
    let spec = dir.join("big.toml");
    std::fs::write(
        &spec,
        GENERATOR
            .replacen("experts = 16", "experts = 65536", 1)
            .replacen("layers = 8", "layers = 200", 1)
            .replacen("hidden_dim = 256", "hidden_dim = 1024", 1),
    )
    .unwrap();
    let run = moesim([
        "trace",
        "generate",
        "--preset",
        spec.to_str().unwrap(),
        "--out",
        dir.join("big.jsonl").to_str().unwrap(),
    ]);
    assert_bad_input(&run, &["big.toml", "hidden_dim", "would need 53.69 GB"]);
    // A generated trace too large to hold in memory.
    let exp = dir.join("exp.toml");
    std::fs::write(
        &exp,
        "schema_version = 1\nname = \"big\"\n[hardware]\nprofile = \"esp32-p4\"\n[model]\nspec = \"micro-moe\"\nformat = \"q2_k\"\n[trace]\ngenerator = \"micro-moe\"\nrequests = 4000000\n",
    )
    .unwrap();
    assert_bad_input(
        &moesim([
            "run",
            exp.to_str().unwrap(),
            "--out",
            dir.join("o").to_str().unwrap(),
        ]),
        &[
            "exp.toml",
            "trace.requests",
            "the generated trace would need",
        ],
    );
    // A benchmark matrix of 10^8 x 256.
    assert_bad_input(
        &moesim(["quant", "bench", "--shapes", "100000000x256"]),
        &["100000000x256", "would need"],
    );
}

#[test]
fn non_finite_and_out_of_range_weights_are_refused_by_row_and_column() {
    let dir = scratch("limits_weights");
    let nan = dir.join("nan.npy");
    npy(&nan, 4, 256, |_| f32::NAN);
    let huge = dir.join("huge.npy");
    npy(&huge, 4, 256, |i| if i == 300 { 3e38 } else { 0.01 });
    let inf = dir.join("inf.npy");
    npy(
        &inf,
        4,
        256,
        |i| if i == 513 { f32::NEG_INFINITY } else { 0.5 },
    );
    let out = dir.join("eval");
    for (file, needles) in [
        (&nan, ["row 0, column 0", "NaN is not a finite weight"]),
        (&inf, ["row 2, column 1", "-inf is not a finite weight"]),
        (&huge, ["row 1, column", "65504"]),
    ] {
        let f = file.to_str().unwrap();
        let run = moesim([
            "quant",
            "eval",
            "--input",
            f,
            "--out",
            out.to_str().unwrap(),
        ]);
        let mut all = vec![f];
        all.extend(needles);
        assert_bad_input(&run, &all);
        assert!(!out.exists(), "{f}: partial output");
        let dump = dir.join("dump.bin");
        let run = moesim([
            "quant",
            "dump",
            "--format",
            "q8_0",
            "--input",
            f,
            "--out",
            dump.to_str().unwrap(),
        ]);
        if file == &huge {
            // The dump mirrors ggml's bytes, overflowing scale included, and says so.
            assert_eq!(run.code, 0, "{}", run.stderr);
            assert!(
                run.stderr.contains("row 1, columns 32..64")
                    && run
                        .stderr
                        .contains("values up to 3e38 overflow the f16 scale"),
                "{}",
                run.stderr
            );
            std::fs::remove_file(&dump).unwrap();
        } else {
            assert_bad_input(&run, &[needles[0]]);
            assert!(!dump.exists());
        }
    }
}
