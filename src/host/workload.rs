//! The workload of `moesim host`: a model's experts in an expert store on this host's disk,
//! and the one-request decode experiment that drives both the real decode and its simulation.
//!
//! A store holds synthetic Gaussian experts of the model's shape, seeded like the trace; it is
//! written once per (model, format, seed) and reused. The experiment of a setting is built as
//! an [`ExperimentSpec`] value (one request of `tokens` decode tokens, no prompt, a per-layer
//! cache, no quality sampling) and validated like any experiment file.

use std::path::{Path, PathBuf};

use super::decode::DecodeOptions;
use super::store::{ExpertStore, StoreShape};
use crate::cache::PolicyKind;
use crate::cache::replay::Scope;
use crate::error::{Error, Result};
use crate::experiment::Experiment;
use crate::experiment::spec::{CacheSection, ExperimentSpec};
use crate::moe::MoeSpec;
use crate::quality::proxy::SyntheticExperts;
use crate::quant::WeightFormat;
use crate::quant::eval::WeightDistribution;
use crate::router::{GateWeights, RouterKind};

/// The decode every host command runs: a model, its trace, a seed and the kernel threads.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// A shipped model's name or a model file; its expert shape is what is stored and run.
    pub model: String,
    /// The trace generator (its layers, experts and top-k must match the model).
    pub generator: String,
    /// Decode tokens of the one request (no prompt).
    pub tokens: u32,
    /// Seed of the trace, the weights and the hidden vectors.
    pub seed: u64,
    /// Kernel threads (1: every kernel on the compute thread; reads run on their own thread).
    pub threads: usize,
    /// The expert kernels the decode and the calibration run.
    pub kernel: crate::quant::Kernel,
}

/// The store shape of `model`'s experts in `format`, weights drawn from `seed`; the reason when
/// the widths are not whole K-quant blocks.
pub fn store_shape(model: &MoeSpec, format: WeightFormat, seed: u64) -> Result<StoreShape, String> {
    let ffn = model.expert_intermediate_size as usize;
    let hidden = model.hidden_size as usize;
    if !hidden.is_multiple_of(256) || !ffn.is_multiple_of(256) {
        return Err(format!(
            "hidden {hidden} and expert FFN {ffn} must be multiples of 256 (the K-quant block)"
        ));
    }
    Ok(StoreShape {
        format,
        layers: model.n_moe_layers(),
        experts: model.n_experts,
        hidden,
        ffn,
        seed,
    })
}

/// The synthetic Gaussian experts a store of `shape` holds.
pub fn synthetic_experts(shape: &StoreShape) -> SyntheticExperts {
    SyntheticExperts {
        hidden: shape.hidden,
        ffn: shape.ffn,
        distribution: WeightDistribution::Gaussian,
        outliers: None,
        seed: shape.seed,
        experts_per_layer: shape.experts,
    }
}

/// The store of `model` (a name or a file: its stem names the store) at `shape` in `dir`.
pub fn store_path(dir: &Path, model: &str, shape: &StoreShape) -> PathBuf {
    let name = Path::new(model)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| model.to_string());
    dir.join(format!(
        "{name}-{}-seed{}.experts",
        shape.format, shape.seed
    ))
}

/// Opens the store of `model` at `shape` in `dir` (direct I/O with `direct`), writing it first
/// when it is missing or holds another shape; `writing` is told before a store is written
/// (which takes a while).
pub fn open_store(
    dir: &Path,
    model: &str,
    shape: StoreShape,
    direct: bool,
    writing: &mut dyn FnMut(&Path, &StoreShape),
) -> Result<ExpertStore> {
    let path = store_path(dir, model, &shape);
    if ExpertStore::open(&path, false).ok().map(|s| s.shape) != Some(shape) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        writing(&path, &shape);
        ExpertStore::create(&path, &synthetic_experts(&shape), shape)?;
    }
    ExpertStore::open(&path, direct)
}

impl Workload {
    /// The experiment of one setting on the profile `profile` (a name or a file): experts in
    /// `format`, `capacity_experts` per layer's cache under `policy` (as on the command line),
    /// the standard router at `lambda` 0 and the memory-aware router at `lambda` otherwise.
    pub fn experiment(
        &self,
        format: WeightFormat,
        profile: &str,
        capacity_experts: u32,
        policy: &str,
        lambda: f64,
    ) -> Result<Experiment> {
        let router = if lambda == 0.0 {
            RouterKind::Standard {}
        } else {
            RouterKind::MemoryAware {
                lambda,
                hot_bonus: 1.0,
                evict_penalty: 0.0,
                warmup_rate: None,
                gate: GateWeights::default(),
            }
        };
        let policy: crate::cache::PolicyKind = policy
            .parse()
            .map_err(|e: String| crate::error::Error::usage(format!("--policy {policy}: {e}")))?;
        let mut spec = ExperimentSpec::in_code(
            "host",
            profile,
            &self.model,
            format,
            &self.generator,
            (1, 0, self.tokens),
            self.seed,
        );
        spec.router = router;
        spec.cache = CacheSection {
            policy,
            scope: Scope::PerLayer,
            capacity_experts: Some(capacity_experts as f64),
            ..CacheSection::default()
        };
        Experiment::from_spec(spec, "moesim host", Path::new("."))
    }

    /// How to decode `exp` for real with `policy` and `capacity_experts` per layer.
    pub fn decode_options(
        &self,
        exp: &Experiment,
        capacity_experts: u32,
        policy: PolicyKind,
    ) -> DecodeOptions {
        DecodeOptions {
            capacity_experts,
            policy,
            router: exp.options.router.clone(),
            gate: exp.options.gate,
            threads: self.threads,
            kernel: self.kernel,
            hidden_seed: self.seed,
        }
    }
}

/// Token latency statistics of a decode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenLatency {
    /// Mean token latency.
    pub mean_ns: f64,
    /// Median token latency.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// Tokens per second over the decode.
    pub tokens_per_s: f64,
}

impl TokenLatency {
    /// The statistics of `latencies_ns`, one per token.
    pub fn of(latencies_ns: &[u64]) -> TokenLatency {
        let mut s = latencies_ns.to_vec();
        s.sort_unstable();
        let total: u64 = s.iter().sum();
        TokenLatency {
            mean_ns: total as f64 / s.len().max(1) as f64,
            p50_ns: crate::stats::quantile(&s, 0.5),
            p99_ns: crate::stats::quantile(&s, 0.99),
            tokens_per_s: s.len() as f64 / (total as f64 * 1e-9),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nano() -> Workload {
        Workload {
            model: concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/experiments/models/nano-moe.toml"
            )
            .into(),
            generator: "micro-moe".into(),
            tokens: 12,
            seed: 4,
            threads: 1,
            kernel: crate::quant::Kernel::F32,
        }
    }

    /// The experiment built as a value is the one the same settings give as a file.
    #[test]
    fn experiment_equals_the_file_form() {
        let w = nano();
        for (lambda, router) in [
            (0.0, "kind = \"standard\"".to_string()),
            (0.5, "kind = \"memory-aware\"\nlambda = 0.5".to_string()),
        ] {
            let text = format!(
                "schema_version = 1\nname = \"host\"\nseed = 4\n[hardware]\nprofile = \"host\"\n[model]\nspec = {:?}\nformat = \"q2_k\"\n[trace]\ngenerator = \"micro-moe\"\nrequests = 1\nprefill_tokens = 0\ndecode_tokens = 12\n[router]\n{router}\n[cache]\npolicy = \"lfu\"\nscope = \"per-layer\"\ncapacity_experts = 3\n[quality]\nsamples = 0\n",
                w.model
            );
            let parsed = Experiment::parse("moesim host", &text, Path::new(".")).unwrap();
            let built = w
                .experiment(WeightFormat::Q2K, "host", 3, "lfu", lambda)
                .unwrap();
            assert_eq!(format!("{built:?}"), format!("{parsed:?}"));
        }
    }

    #[test]
    fn stores_are_named_after_the_model_and_need_whole_blocks() {
        let w = nano();
        let model = crate::moe::load(&w.model).unwrap();
        let shape = store_shape(&model, WeightFormat::Q4K, 9).unwrap();
        assert_eq!((shape.layers, shape.experts, shape.hidden), (8, 16, 256));
        assert_eq!(
            store_path(Path::new("d"), &w.model, &shape),
            Path::new("d/nano-moe-q4_k-seed9.experts")
        );
        let mut odd = model.clone();
        odd.hidden_size = 320;
        let e = store_shape(&odd, WeightFormat::Q4K, 9).unwrap_err();
        assert!(e.contains("hidden 320"), "{e}");
    }

    #[test]
    fn token_latency_statistics() {
        let t = TokenLatency::of(&[3_000_000, 1_000_000, 2_000_000]);
        assert_eq!(t.mean_ns, 2e6);
        assert_eq!(t.p50_ns, 2_000_000);
        assert!((t.tokens_per_s - 500.0).abs() < 1e-9);
    }
}
