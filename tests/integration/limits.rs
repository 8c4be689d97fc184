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

/// A `.safetensors` file holding one F32 tensor `w` of `shape` and no data.
fn empty_safetensors(path: &Path, shape: &[usize]) {
    let h = serde_json::json!({"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}});
    let h = serde_json::to_vec(&h).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    std::fs::write(path, out).unwrap();
}

/// Empty weight matrices (issue 17 audit): a 0-row matrix panicked in `quant` ("chunk_size
/// must not be zero") and a 0-column one in the Hadamard rotation, with exit code 101. Both
/// readers refuse them, naming the file, the tensor and the shape, for every command that reads
/// weights.
#[test]
fn empty_weight_matrices_are_refused_where_they_are_read() {
    let dir = scratch("limits_empty");
    let mut files: Vec<(std::path::PathBuf, Option<&str>, &str)> = Vec::new();
    for (name, rows, cols, needle) in [
        ("rows0.npy", 0, 256, "shape (0, 256) has no rows"),
        ("cols0.npy", 4, 0, "shape (4, 0) has no columns"),
    ] {
        let p = dir.join(name);
        npy(&p, rows, cols, |_| 0.0);
        files.push((p, None, needle));
    }
    for (name, shape, needle) in [
        (
            "rows0.safetensors",
            &[0usize, 256][..],
            "tensor `w`: shape [0, 256] has no rows",
        ),
        (
            "cols0.safetensors",
            &[4, 0][..],
            "tensor `w`: shape [4, 0] has no columns",
        ),
        (
            "mid0.safetensors",
            &[2, 0, 256][..],
            "tensor `w`: shape [2, 0, 256] has no rows",
        ),
    ] {
        let p = dir.join(name);
        empty_safetensors(&p, shape);
        files.push((p, Some("w"), needle));
    }
    for (path, tensor, needle) in &files {
        let f = path.to_str().unwrap();
        let out = dir.join("out");
        let dump = dir.join("dump.bin");
        let mut commands: Vec<Vec<&str>> = vec![
            vec![
                "quant",
                "eval",
                "--input",
                f,
                "--out",
                out.to_str().unwrap(),
            ],
            vec![
                "quant",
                "eval",
                "--no-hadamard",
                "--input",
                f,
                "--out",
                out.to_str().unwrap(),
            ],
            vec![
                "quant",
                "dump",
                "--format",
                "q8_0",
                "--input",
                f,
                "--out",
                dump.to_str().unwrap(),
            ],
            vec![
                "quant",
                "dump",
                "--format",
                "q4_k",
                "--hadamard-seed",
                "3",
                "--input",
                f,
                "--out",
                dump.to_str().unwrap(),
            ],
        ];
        if let Some(t) = tensor {
            for c in &mut commands {
                c.extend(["--tensor", t]);
            }
        }
        for c in commands {
            let run = moesim(&c);
            assert_bad_input(&run, &[f, needle]);
            assert!(!out.exists() && !dump.exists(), "{c:?}: partial output");
        }
    }
}

/// The quantization library itself never panics on an empty matrix, whatever path one reaches
/// it by: 0 rows quantize to an empty matrix that dequantizes, multiplies and checks as one; 0
/// columns are refused with a reason; a rotation of length 0 is the identity.
#[test]
fn the_quant_library_takes_empty_matrices_without_panicking() {
    use moesim::quant::{QuantizedMatrix, Rotation, WeightFormat, gemv_packed};
    let r0 = Rotation::new(0, 7);
    assert!(r0.is_empty());
    let mut empty: [f32; 0] = [];
    r0.rotate(&mut empty);
    r0.unrotate(&mut empty);
    for format in WeightFormat::ALL {
        let block = format.weights_per_block() as usize;
        for (rows, cols) in [(0usize, block), (0, 4 * block), (3, 0), (0, 0)] {
            let w = vec![0.5f32; rows * cols];
            for rotation in [None, Some(Rotation::new(cols, 1))] {
                let q = QuantizedMatrix::quantize(format, rows, cols, &w, rotation);
                let q = match q {
                    Err(reason) => {
                        assert_eq!(cols, 0, "{format} {rows}x{cols}: {reason}");
                        assert!(reason.contains("a row of 0"), "{reason}");
                        continue;
                    }
                    Ok(q) => q,
                };
                assert!(q.check_representable(&w).is_ok(), "{format} {rows}x{cols}");
                assert!(q.dequantize().is_empty());
                let x = vec![1.0f32; cols];
                let mut y = vec![0.0f32; rows];
                q.gemv(&x, &mut y);
                q.gemv_serial(&x, &mut y);
                if q.rotation.is_none() {
                    gemv_packed(format, &q.data, cols, &x, &mut y, true);
                    gemv_packed(format, &q.data, cols, &x, &mut y, false);
                }
            }
        }
        // Packed rows of no weights multiply to zeros.
        let mut y = vec![1.0f32; 3];
        gemv_packed(format, &[], 0, &[], &mut y, true);
        assert_eq!(y, [0.0; 3]);
    }
    assert!(moesim::quant::pi_fitted_round_trip(3, 4, 0, 256, &[], None).is_empty());
    assert!(moesim::quant::pi_fitted_round_trip(3, 4, 2, 0, &[], None).is_empty());
}

/// Trace headers inside the documented limits (2^24 (layer, expert) pairs): 65,536 layers x 256
/// experts made `trace stats` and `trace fit` abort on a 34 GB allocation (exit 134), the
/// co-selection counts of every expert pair in consecutive layers. They are sized first and
/// refused on one line naming the file; a shape whose statistics fit still runs.
#[test]
fn trace_statistics_at_the_documented_limits_are_sized_before_allocating() {
    let dir = scratch("limits_trace_stats");
    let trace = |name: &str, layers: u32, experts: u32| {
        let p = dir.join(name);
        std::fs::write(
            &p,
            format!(
                "{{\"format\":\"moesim-trace\",\"version\":1,\"layers\":{layers},\"experts\":{experts},\"top_k\":2,\"logits\":false}}\n\
                 {{\"request\":0,\"phase\":\"decode\",\"position\":0,\"layer\":0,\"experts\":[7,0]}}\n"
            ),
        )
        .unwrap();
        p
    };
    let big = trace("wide.jsonl", 65536, 256);
    let b = big.to_str().unwrap();
    let fitted = dir.join("fitted.toml");
    for args in [
        vec!["trace", "stats", b],
        vec!["trace", "stats", b, "--json"],
        vec![
            "trace",
            "fit",
            b,
            "--evaluations",
            "6",
            "--out",
            fitted.to_str().unwrap(),
        ],
    ] {
        let run = moesim(&args);
        assert_bad_input(
            &run,
            &[
                b,
                "65536 layers x 256 experts",
                "co-selection",
                "would need 34.67 GB",
                "more than the 8.59 GB",
            ],
        );
        assert!(!fitted.exists());
    }
    let two = trace("two-layers.jsonl", 2, 65536);
    assert_bad_input(
        &moesim(["trace", "stats", two.to_str().unwrap()]),
        &[
            two.to_str().unwrap(),
            "2 layers x 65536 experts",
            "would need",
        ],
    );
    // The most layers the format allows, with statistics that fit (134 MB of co-selections).
    let deep = trace("deep.jsonl", 65536, 16);
    let run = moesim(["trace", "stats", deep.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["summary"]["events"], 1);
    assert_eq!(v["layers"].as_array().unwrap().len(), 65536);
}

/// Generator figures that overflow f32 (issue 17 audit): `temperature = 1e-40`, `noise = 1e38`
/// or `centroid_scale = 1e300` made non-finite logits, so `moesim run` reported impossible
/// numbers with exit code 0 and `trace generate` wrote a trace its own reader refused. Every
/// real figure has a documented range; a value outside it is refused by key, in the generator
/// file and through an experiment, and the edges of the ranges give traces that read back.
#[test]
fn generator_figures_outside_their_ranges_are_refused() {
    let dir = scratch("limits_generator");
    let cases = [
        (
            "temperature = 0.9555",
            "temperature = 1e-40",
            "temperature: 1e-40",
        ),
        (
            "temperature = 0.9555",
            "temperature = 1e-300",
            "temperature: 1e-300",
        ),
        (
            "temperature = 0.9555",
            "temperature = 0.0001",
            "temperature: 0.0001",
        ),
        (
            "temperature = 0.9555",
            "temperature = 1e4",
            "temperature: 10000",
        ),
        (
            "temperature = 0.9555",
            "temperature = nan",
            "temperature: NaN",
        ),
        ("noise = 1.4086", "noise = 1e38", "noise: 1e38"),
        ("noise = 1.4086", "noise = 1001", "noise: 1001"),
        ("noise = 1.4086", "noise = -1", "noise: -1"),
        (
            "centroid_scale = 1.0",
            "centroid_scale = 1e300",
            "centroid_scale: 1e300",
        ),
        (
            "centroid_scale = 1.0",
            "centroid_scale = inf",
            "centroid_scale: inf",
        ),
        (
            "bias_skew = 0.1687",
            "bias_skew = 1e300",
            "bias_skew: 1e300",
        ),
        ("bias_skew = 0.1687", "bias_skew = 2e3", "bias_skew: 2000"),
        ("zipf_s = 0.4294", "zipf_s = 1e300", "zipf_s: 1e300"),
        ("zipf_s = 0.4294", "zipf_s = 11", "zipf_s: 11"),
        ("p_stay = 0.8691", "p_stay = 1.5", "p_stay: 1.5"),
    ];
    for (i, (from, to, needle)) in cases.iter().enumerate() {
        assert!(GENERATOR.contains(from), "{from}");
        let spec = dir.join(format!("gen{i}.toml"));
        std::fs::write(&spec, GENERATOR.replacen(from, to, 1)).unwrap();
        let s = spec.to_str().unwrap();
        let out = dir.join("gen.jsonl");
        let run = moesim([
            "trace",
            "generate",
            "--preset",
            s,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_bad_input(&run, &[s, needle, "must be in ["]);
        assert!(!out.exists(), "{to}: partial output");
        let exp = dir.join(format!("exp{i}.toml"));
        std::fs::write(
            &exp,
            format!(
                "schema_version = 1\nname = \"g\"\n[hardware]\nprofile = \"esp32-p4\"\n[model]\nspec = \"micro-moe\"\nformat = \"q2_k\"\n[trace]\ngenerator = \"gen{i}.toml\"\nrequests = 1\nprefill_tokens = 2\ndecode_tokens = 4\n"
            ),
        )
        .unwrap();
        let o = dir.join("o");
        let run = moesim(["run", exp.to_str().unwrap(), "--out", o.to_str().unwrap()]);
        assert_bad_input(
            &run,
            &[
                exp.to_str().unwrap(),
                "trace.generator",
                needle,
                "must be in [",
            ],
        );
        assert!(!o.exists(), "{to}: partial output");
    }
    // The edges of every range: the trace reads back and the run reports finite figures.
    let edges = GENERATOR
        .replacen("temperature = 0.9555", "temperature = 0.001", 1)
        .replacen("noise = 1.4086", "noise = 1000", 1)
        .replacen("centroid_scale = 1.0", "centroid_scale = 1000", 1)
        .replacen("bias_skew = 0.1687", "bias_skew = 1000", 1)
        .replacen("zipf_s = 0.4294", "zipf_s = 10", 1);
    let spec = dir.join("edges.toml");
    std::fs::write(&spec, edges).unwrap();
    let out = dir.join("edges.jsonl");
    let run = moesim([
        "trace",
        "generate",
        "--preset",
        spec.to_str().unwrap(),
        "--requests",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = moesim(["trace", "stats", out.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let top1 = v["summary"]["top1_weight"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&top1), "{top1}");
    let exp = dir.join("edges-exp.toml");
    std::fs::write(
        &exp,
        "schema_version = 1\nname = \"g\"\n[hardware]\nprofile = \"esp32-p4\"\n[model]\nspec = \"micro-moe\"\nformat = \"q2_k\"\n[trace]\ngenerator = \"edges.toml\"\nrequests = 1\nprefill_tokens = 2\ndecode_tokens = 4\n",
    )
    .unwrap();
    let run = moesim([
        "run",
        exp.to_str().unwrap(),
        "--out",
        dir.join("edges-out").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let hit = v["hit_rate"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&hit), "{hit}");
    assert!(v["bytes_loaded"].as_f64().unwrap() > 0.0, "{v}");
}

/// A float where an integer belongs is echoed as a user would write it (`think_time_ns =
/// 1e300` printed 301 digits).
#[test]
fn a_float_in_an_error_is_shown_short() {
    let dir = scratch("limits_float_echo");
    let exp = dir.join("exp.toml");
    std::fs::write(
        &exp,
        "schema_version = 1\nname = \"f\"\n[hardware]\nprofile = \"esp32-p4\"\n[model]\nspec = \"micro-moe\"\nformat = \"q2_k\"\n[trace]\ngenerator = \"micro-moe\"\n[scenario]\narrival = { kind = \"closed-loop\", think_time_ns = 1e300 }\n",
    )
    .unwrap();
    let run = moesim([
        "run",
        exp.to_str().unwrap(),
        "--out",
        dir.join("o").to_str().unwrap(),
    ]);
    assert_bad_input(
        &run,
        &[
            "exp.toml:11",
            "scenario.arrival",
            "floating point `1e300`, expected u64",
        ],
    );
    assert!(run.stderr.len() < 150, "{}", run.stderr);
}
