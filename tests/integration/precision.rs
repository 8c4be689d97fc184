//! Per-expert precision and output quality through real quantized proxy experts (issue 8).

use std::path::Path;

use moesim::experiment::Experiment;
use moesim::precision::budget_optimal::{Knapsack, greedy_gap_bound};
use moesim::precision::{AllocatorKind, BudgetScope, PrecisionPlan, Solver};
use moesim::quality::{QualitySample, ReferenceRoute, SyntheticExperts, WeightSource};
use moesim::quant::WeightFormat;
use moesim::quant::eval::WeightDistribution;

use crate::util::{assert_bad_input, moesim, scratch};

const ALLOCATORS: [&str; 4] = [
    "uniform-q4k",
    "uniform-q2k",
    "frequency-tiers",
    "budget-optimal",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shipped(name: &str) -> String {
    std::fs::read_to_string(root().join(format!("experiments/precision-{name}.toml"))).unwrap()
}

/// The shipped experiment `name` with its `allocator = ...` line replaced.
fn with_allocator(name: &str, allocator: &str) -> Experiment {
    let text: String = shipped(name)
        .lines()
        .map(|l| {
            if l.starts_with("allocator = ") {
                format!("allocator = {allocator}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    Experiment::parse("test", &text, &root().join("experiments")).unwrap()
}

fn json_run(exp: &Path, out: &Path) -> serde_json::Value {
    let run = moesim([
        "run",
        exp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

#[test]
fn each_allocator_writes_the_joined_row() {
    let dir = scratch("precision_joined");
    for name in ALLOCATORS {
        let out = dir.join(name);
        let v = json_run(
            &root().join(format!("experiments/precision-{name}.toml")),
            &out,
        );
        assert_eq!(v["output_samples"], 256, "{name}");
        for key in [
            "output_rel_l2_mean",
            "output_rel_l2_ci95",
            "output_rel_l2_p95",
            "output_rel_l2_max",
            "output_cosine_mean",
            "output_cosine_p5",
            "gate_mass_retained",
            "topk_agreement",
            "hit_rate",
            "token_latency_p50_ns",
            "token_latency_p99_ns",
            "decode_tokens_per_s",
            "energy_per_decode_token_mj",
            "plan_bits_per_weight_mean",
        ] {
            let x = v[key].as_f64().unwrap_or(f64::NAN);
            assert!(x.is_finite() && x > 0.0, "{name}: {key} = {}", v[key]);
        }
        assert!(v["bytes_loaded"].as_u64().unwrap() > 0);
        assert!(v["expert_storage_bytes"].as_u64().unwrap() > 0);
        assert_eq!(v["quality_note"], "");
        let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
        let header = csv.lines().next().unwrap();
        for col in [
            "precision_allocator",
            "plan_formats",
            "output_rel_l2_mean",
            "output_cosine_min",
            "hit_rate",
            "energy_per_decode_token_mj",
            "expert_storage_bytes",
        ] {
            assert!(header.split(',').any(|c| c == col), "{col} not in {header}");
        }
        let tiers = std::fs::read_to_string(out.join("tiers.csv")).unwrap();
        assert!(
            tiers
                .lines()
                .next()
                .unwrap()
                .contains("expert_storage_bytes")
        );
    }
}

#[test]
fn fewer_bits_mean_more_hits_and_more_error_on_the_shipped_cases() {
    let dir = scratch("precision_tradeoff");
    let run = |name: &str| {
        json_run(
            &root().join(format!("experiments/precision-{name}.toml")),
            &dir.join(name),
        )
    };
    let (q4, q2) = (run("uniform-q4k"), run("uniform-q2k"));
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
    assert!(f(&q2, "hit_rate") > f(&q4, "hit_rate"));
    assert!(f(&q2, "decode_tokens_per_s") > f(&q4, "decode_tokens_per_s"));
    assert!(f(&q2, "output_rel_l2_mean") > f(&q4, "output_rel_l2_mean"));
    assert!(f(&q2, "output_cosine_mean") < f(&q4, "output_cosine_mean"));
}

fn source() -> SyntheticExperts {
    SyntheticExperts {
        hidden: 256,
        ffn: 256,
        distribution: WeightDistribution::Gaussian,
        outliers: None,
        seed: 3,
        experts_per_layer: 4,
    }
}

/// 40 samples over 2 layers of 4 experts, top-2, each computed in `format`.
fn samples(format: WeightFormat) -> (Vec<QualitySample>, Vec<ReferenceRoute>, Vec<f32>) {
    let hidden = moesim::quant::eval::sample(WeightDistribution::Gaussian, 40 * 256, 9);
    let mut s = Vec::new();
    let mut r = Vec::new();
    for i in 0..40u16 {
        let experts = vec![i % 4, (i + 1) % 4];
        let weights = vec![0.7, 0.3];
        s.push(QualitySample {
            event: i as usize,
            layer: (i % 2) as u32,
            experts: experts.clone(),
            weights: weights.clone(),
            formats: vec![format; 2],
        });
        r.push(ReferenceRoute { experts, weights });
    }
    (s, r, hidden)
}

#[test]
fn f32_experts_give_zero_output_error() {
    let src = source();
    let (s, r, h) = samples(WeightFormat::F32);
    let e = moesim::quality::sample_errors(&src, &s, &r, &h).unwrap();
    assert!(
        e.iter().all(|&(rel, cos)| rel == 0.0 && cos >= 1.0 - 1e-12),
        "{e:?}"
    );
    // The same samples in Q8_0 do have an error: the measurement can fail.
    let (s, r, h) = samples(WeightFormat::Q8_0);
    let e = moesim::quality::sample_errors(&src, &s, &r, &h).unwrap();
    assert!(e.iter().all(|&(rel, _)| rel > 0.0 && rel < 0.05), "{e:?}");
}

#[test]
fn output_error_does_not_increase_with_bits_per_weight() {
    let src = source();
    let mut last = f64::INFINITY;
    for f in [
        WeightFormat::TQ1_0,
        WeightFormat::Q2K,
        WeightFormat::Q3K,
        WeightFormat::Q4K,
        WeightFormat::Q8_0,
        WeightFormat::F16,
        WeightFormat::F32,
    ] {
        let (s, r, h) = samples(f);
        let e = moesim::quality::sample_errors(&src, &s, &r, &h).unwrap();
        let q = moesim::quality::summarize(&e);
        assert!(
            q.output_rel_l2_mean <= last,
            "{f}: {} after {last}",
            q.output_rel_l2_mean
        );
        last = q.output_rel_l2_mean;
    }
    assert_eq!(last, 0.0);
    // Through the simulator: the same routing (standard router), more bits, less error.
    let mut last = f64::INFINITY;
    for f in ["q2_k", "q3_k", "q4_k", "q8_0", "f16"] {
        let exp = with_allocator(
            "uniform-q4k",
            &format!("{{ kind = \"uniform\", format = \"{f}\" }}"),
        );
        let o = exp.run().unwrap();
        let q = o.output_quality.unwrap();
        assert!(
            q.output_rel_l2_mean < last,
            "{f}: {} after {last}",
            q.output_rel_l2_mean
        );
        last = q.output_rel_l2_mean;
    }
}

/// `Σ usage · err` of `plan`, with the errors measured for `candidates`.
fn objective(plan: &PrecisionPlan, usage: &[u64], err: &[f64], candidates: &[WeightFormat]) -> f64 {
    let m = candidates.len();
    plan.formats
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let c = candidates.iter().position(|g| g == f).unwrap();
            usage[i] as f64 * err[i * m + c]
        })
        .sum()
}

#[test]
fn budget_optimal_is_never_worse_than_uniform_at_equal_or_fewer_bytes() {
    let candidates = [WeightFormat::Q2K, WeightFormat::Q3K, WeightFormat::Q4K];
    // The shipped case, and the same with outlier channels in a quarter of the experts (so the
    // measured error differs from expert to expert).
    let plain = shipped("budget-optimal");
    let outliers = plain.replace(
        "weights = { kind = \"gaussian\" }",
        "weights = { kind = \"gaussian\" }\noutliers = { experts = 0.25, channels = 0.02, scale = 12.0 }",
    );
    assert_ne!(plain, outliers);
    for (label, text) in [("gaussian", plain), ("outliers", outliers)] {
        let base = Experiment::parse(label, &text, &root().join("experiments")).unwrap();
        let trace = base.build_trace().unwrap();
        let usage = trace.popularity();
        let err = moesim::quality::expert_errors(
            base.quality.proxy.source(),
            8,
            16,
            &candidates,
            base.quality.seed,
        )
        .unwrap();
        let params = base.model.params_per_expert();
        for f in candidates {
            let uniform = PrecisionPlan::uniform(8, 16, f);
            let bytes = uniform.total_bytes(|g| g.bytes_for(params));
            for (scope, solver) in [
                (BudgetScope::Global, Solver::Greedy),
                (BudgetScope::Global, Solver::Dp),
                (BudgetScope::PerLayer, Solver::Greedy),
                (BudgetScope::PerLayer, Solver::Dp),
            ] {
                let kind = AllocatorKind::BudgetOptimal {
                    formats: candidates.to_vec(),
                    budget_bits_per_weight: None,
                    budget_bytes: Some(bytes),
                    scope,
                    solver,
                };
                let plan = kind
                    .build()
                    .allocate(&moesim::precision::AllocationInput {
                        layers: 8,
                        experts: 16,
                        usage: &usage,
                        params_per_expert: params,
                        error: Some(&err),
                    })
                    .unwrap();
                assert!(plan.total_bytes(|g| g.bytes_for(params)) <= bytes);
                let (ob, ou) = (
                    objective(&plan, &usage, &err, &candidates),
                    objective(&uniform, &usage, &err, &candidates),
                );
                assert!(
                    ob <= ou + 1e-12,
                    "{label} {f} {scope:?} {solver:?}: {ob} > {ou}"
                );
            }
        }
    }
}

#[test]
fn greedy_and_dp_agree_on_the_micro_moe_within_the_bound() {
    let exp = with_allocator(
        "budget-optimal",
        "{ kind = \"uniform\", format = \"q4_k\" }",
    );
    let trace = exp.build_trace().unwrap();
    let usage = trace.popularity();
    let candidates = [WeightFormat::Q2K, WeightFormat::Q3K, WeightFormat::Q4K];
    let err =
        moesim::quality::expert_errors(exp.quality.proxy.source(), 8, 16, &candidates, 1).unwrap();
    let params = exp.model.params_per_expert();
    let bytes: Vec<u64> = candidates.iter().map(|f| f.bytes_for(params)).collect();
    let m = candidates.len();
    let cost: Vec<f64> = (0..usage.len() * m)
        .map(|j| usage[j / m] as f64 * err[j])
        .collect();
    for bpw in [2.8, 3.0, 3.2, 3.5, 4.0, 4.4] {
        let budget = (bpw * params as f64 * 128.0 / 8.0) as u64;
        let k = Knapsack {
            bytes: &bytes,
            cost: &cost,
            budget,
        };
        let (g, d) = (k.greedy().unwrap(), k.dp().unwrap());
        let (og, od) = (k.objective(&g), k.objective(&d));
        assert!(od <= og + 1e-9, "{bpw}: dp {od} > greedy {og}");
        assert!(
            og - od <= greedy_gap_bound(&k) + 1e-9,
            "{bpw}: gap {}",
            og - od
        );
        // On this case the gap is tiny next to the objective.
        assert!(og - od <= 0.02 * od, "{bpw}: greedy {og}, dp {od}");
    }
}

#[test]
fn critical_thermal_state_uses_only_the_minimum_precision() {
    let dir = scratch("precision_dynamic");
    let base = shipped("frequency-tiers");
    let variants = [
        (
            "critical",
            "timeline = [{ at_ms = 0, thermal = \"critical\" }]",
        ),
        ("normal", "timeline = [{ at_ms = 0, thermal = \"normal\" }]"),
        (
            "switch",
            "timeline = [{ at_ms = 0, thermal = \"normal\" }, { at_ms = 30000, thermal = \"critical\" }]",
        ),
    ];
    let mut rows = Vec::new();
    for (name, timeline) in variants {
        let text = format!(
            "{}\n[precision.dynamic]\nladder = [\"q2_k\", \"q3_k\", \"q4_k\"]\n{timeline}\n",
            base.replace(
                "name = \"precision-frequency-tiers\"",
                &format!("name = \"dyn-{name}\"")
            )
        );
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        rows.push(json_run(&path, &dir.join(name)));
        // The library view: every sampled decode event of the critical run computed Q2_K only.
        if name == "critical" {
            let exp = Experiment::load(&path).unwrap();
            let trace = exp.build_trace().unwrap();
            let plan = exp.plan(&trace).unwrap();
            let setup = moesim::sim::SimSetup::new(
                &exp.profile,
                &exp.model,
                exp.options.clone(),
                &trace.popularity(),
                Some(&plan),
            )
            .unwrap();
            let (r, _, _) = moesim::sim::run(&setup, &trace).unwrap();
            assert_eq!(r.format_uses.len(), 1, "{:?}", r.format_uses);
            assert_eq!(r.format_uses[0].0, WeightFormat::Q2K);
            assert!(!r.quality_samples.is_empty());
            assert!(
                r.quality_samples
                    .iter()
                    .all(|s| s.formats.iter().all(|&f| f == WeightFormat::Q2K))
            );
        }
    }
    let bits = |v: &serde_json::Value| v["decode_bits_per_weight_mean"].as_f64().unwrap();
    assert_eq!(bits(&rows[0]), WeightFormat::Q2K.bits_per_weight());
    assert!(bits(&rows[1]) > bits(&rows[0]) + 0.3);
    assert_eq!(rows[1]["precision_switches"], 0);
    assert!(bits(&rows[2]) < bits(&rows[1]) && bits(&rows[2]) > bits(&rows[0]));
    assert!(rows[2]["precision_switches"].as_u64().unwrap() > 0);
    // The ladder copies are stored and reported.
    assert!(rows[0]["extra_copy_bytes"].as_u64().unwrap() > 0);
    // Lower precision, lower output quality.
    let rel = |v: &serde_json::Value| v["output_rel_l2_mean"].as_f64().unwrap();
    assert!(rel(&rows[0]) > rel(&rows[1]));
}

#[test]
fn low_precision_on_miss_fetches_low_copies_for_low_gate_weights() {
    let dir = scratch("precision_low_on_miss");
    let base = shipped("uniform-q4k");
    let text = format!(
        "{}\n[precision.low_on_miss]\ngate_below = 0.45\nformat = \"q2_k\"\n",
        base.replace("name = \"precision-uniform-q4k\"", "name = \"low-on-miss\"")
    );
    let path = dir.join("low.toml");
    std::fs::write(&path, text).unwrap();
    let low = json_run(&path, &dir.join("low"));
    let plain = json_run(
        &root().join("experiments/precision-uniform-q4k.toml"),
        &dir.join("plain"),
    );
    let n = low["low_precision_loads"].as_u64().unwrap();
    assert!(n > 0);
    assert!(low["bytes_loaded"].as_u64() < plain["bytes_loaded"].as_u64());
    assert!(
        low["decode_bits_per_weight_mean"].as_f64() < plain["decode_bits_per_weight_mean"].as_f64()
    );
    assert!(low["output_rel_l2_mean"].as_f64() > plain["output_rel_l2_mean"].as_f64());
    // Both copies of every expert are stored: the Q2_K copies on top of the Q4_K ones.
    let params = 3 * 1024 * 1024u64;
    assert_eq!(
        low["extra_copy_bytes"].as_u64().unwrap(),
        128 * WeightFormat::Q2K.bytes_for(params)
    );
}

#[test]
fn quality_is_identical_at_any_thread_count() {
    let dir = scratch("precision_threads");
    let exp = root().join("experiments/precision-budget-optimal.toml");
    let mut csvs = Vec::new();
    for threads in ["1", "2"] {
        let out = dir.join(threads);
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_moesim"))
            .args(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .env("RAYON_NUM_THREADS", threads)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(o.status.success());
        csvs.push(std::fs::read(out.join("metrics.csv")).unwrap());
    }
    assert_eq!(csvs[0], csvs[1]);
}

#[test]
fn a_trace_file_gets_the_weight_free_metrics_only_and_says_so() {
    let dir = scratch("precision_trace_file");
    let trace = dir.join("t.jsonl");
    let run = moesim([
        "trace",
        "generate",
        "--preset",
        "micro-moe",
        "--requests",
        "1",
        "--tokens",
        "8",
        "--out",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let exp = dir.join("f.toml");
    std::fs::write(
        &exp,
        format!(
            "schema_version = 1\nname = \"f\"\n[hardware]\nprofile = \"esp32-p4\"\n[model]\nspec = \"micro-moe\"\nformat = \"q2_k\"\n[trace]\nfile = \"{}\"\n",
            trace.display()
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("weight-free routing metrics only"),
        "{}",
        run.stdout
    );
    let v = json_run(&exp, &dir.join("out2"));
    assert_eq!(v["output_samples"], 0);
    assert!(v["output_rel_l2_mean"].is_null());
    assert!(
        v["quality_note"]
            .as_str()
            .unwrap()
            .contains("hidden vectors")
    );
    assert!(v["gate_mass_retained"].as_f64().is_some());
}

/// A `.safetensors` file of F32 tensors.
fn safetensors(tensors: &[(&str, usize, usize, &[f32])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, r, c, data) in tensors {
        assert_eq!(data.len(), r * c);
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": [r, c], "data_offsets": [offset, offset + data.len() * 4]}),
        );
        offset += data.len() * 4;
    }
    let h = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    for (_, _, _, data) in tensors {
        for v in data.iter() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

#[test]
fn proxy_experts_load_from_safetensors() {
    let dir = scratch("precision_safetensors");
    // The synthetic expert (0, 0), written out: every expert of the file run reads it.
    let w = source().expert(0, 0).unwrap();
    std::fs::write(
        dir.join("e.safetensors"),
        safetensors(&[
            ("w1", 256, 256, &w.w1),
            ("w2", 256, 256, &w.w2),
            ("w3", 256, 256, &w.w3),
        ]),
    )
    .unwrap();
    let body = shipped("uniform-q2k")
        .replace("weights = { kind = \"gaussian\" }", "weights = { kind = \"safetensors\", file = \"e.safetensors\", w1 = \"w1\", w2 = \"w2\", w3 = \"w3\" }")
        .replace("samples = 256", "samples = 32");
    std::fs::write(dir.join("st.toml"), &body).unwrap();
    let v = json_run(&dir.join("st.toml"), &dir.join("out"));
    assert_eq!(v["output_samples"], 32);
    let rel = v["output_rel_l2_mean"].as_f64().unwrap();
    assert!(rel > 0.1 && rel < 1.0, "{rel}");
    // A tensor of the wrong shape is refused on one line naming it.
    std::fs::write(
        dir.join("bad.safetensors"),
        safetensors(&[
            ("w1", 256, 256, &w.w1),
            ("w2", 256, 256, &w.w2),
            ("w3", 128, 512, &w.w3),
        ]),
    )
    .unwrap();
    std::fs::write(
        dir.join("bad.toml"),
        body.replace("e.safetensors", "bad.safetensors"),
    )
    .unwrap();
    let run = moesim([
        "run",
        dir.join("bad.toml").to_str().unwrap(),
        "--out",
        dir.join("o2").to_str().unwrap(),
    ]);
    assert_bad_input(&run, &["quality.weights", "`w3`", "128 × 512"]);
    assert!(!dir.join("o2").exists());
}

#[test]
fn bad_precision_and_quality_settings_fail_on_one_line() {
    let dir = scratch("precision_bad");
    let base = shipped("uniform-q4k");
    let cases: [(&str, &str, &[&str]); 7] = [
        (
            "allocator = { kind = \"uniform\", format = \"q4_k\" }",
            "allocator = { kind = \"fancy\" }",
            &["precision.allocator", "fancy"],
        ),
        (
            "allocator = { kind = \"uniform\", format = \"q4_k\" }",
            "allocator = { kind = \"budget-optimal\", budget_bytes = 1, budget_bits_per_weight = 3.0 }",
            &["precision.allocator", "exactly one"],
        ),
        (
            "allocator = { kind = \"uniform\", format = \"q4_k\" }",
            "allocator = { kind = \"frequency-tiers\", hot_pct = 0.3, cold_pct = 0.5 }",
            &["precision.allocator", "cold_pct"],
        ),
        (
            "allocator = { kind = \"uniform\", format = \"q4_k\" }",
            "allocator = { kind = \"budget-optimal\", budget_bits_per_weight = 1.0 }",
            &["precision.allocator", "below"],
        ),
        (
            "weights = { kind = \"gaussian\" }",
            "weights = { kind = \"gaussian\" }\n[precision.dynamic]\ntimeline = [{ at_ms = 5 }, { at_ms = 1 }]",
            &[
                "precision.dynamic.timeline[1].at_ms",
                "not before the previous entry",
            ],
        ),
        (
            "ffn_dim = 256",
            "ffn_dim = 300",
            &["quality.ffn_dim", "multiple of 256"],
        ),
        (
            "allocator = { kind = \"uniform\", format = \"q4_k\" }",
            "allocator = { kind = \"uniform\", format = \"f32\" }",
            &["precision.allocator", "untimed"],
        ),
    ];
    for (i, (from, to, needles)) in cases.iter().enumerate() {
        assert!(base.contains(from), "{from}");
        let path = dir.join(format!("bad{i}.toml"));
        std::fs::write(&path, base.replace(from, to)).unwrap();
        let out = dir.join(format!("out{i}"));
        let run = moesim([
            "run",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_bad_input(&run, needles);
        assert!(!out.exists(), "case {i} left output");
    }
}
