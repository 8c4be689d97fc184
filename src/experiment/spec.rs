//! The experiment file, first layer: its shape (`ExperimentSpec`, `deny_unknown_fields`
//! everywhere). `super::Experiment::from_spec` gives it meaning.

use serde::{Deserialize, Serialize};

use crate::cache::PolicyKind;
use crate::cache::replay::{BetweenRequests, Scope};
use crate::precision::{AllocatorKind, DynamicSpec, LowOnMissSpec};
use crate::quant::format::WeightFormat;
use crate::router::{GateWeights, RouterKind};
use crate::sim::arrival::ArrivalKind;
use crate::sim::prefetch::PrefetchKind;
use crate::sim::{OnWrongPrefetch, PlacementSpec};

/// The current schema version.
pub const SCHEMA_VERSION: u32 = 1;

/// One simulation point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Must be 1.
    pub schema_version: u32,
    /// Names the output directory `reports/<name>/`.
    pub name: String,
    /// What the experiment asks.
    #[serde(default)]
    pub description: String,
    /// Seed of every random draw (the generated trace unless it has its own, arrivals).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The device.
    pub hardware: HardwareSection,
    /// The model and its precision.
    pub model: ModelSection,
    /// Where the routing events come from.
    pub trace: TraceSection,
    /// The router (`kind` and its parameters).
    #[serde(default = "standard_router")]
    pub router: RouterKind,
    /// How gate weights are computed.
    #[serde(default)]
    pub gate_weights: GateWeights,
    /// The expert cache.
    #[serde(default)]
    pub cache: CacheSection,
    /// Prefetching.
    #[serde(default)]
    pub prefetch: PrefetchSection,
    /// Where experts run: moved to the primary unit, or computed in place.
    #[serde(default, skip_serializing_if = "PlacementSpec::is_default")]
    pub placement: PlacementSpec,
    /// Runtime parameters over `hardware.runtime` (what `moesim validate --fit` varies).
    #[serde(
        default,
        skip_serializing_if = "crate::hardware::runtime::RuntimeParamsSpec::is_empty"
    )]
    pub runtime: crate::hardware::runtime::RuntimeParamsSpec,
    /// Request arrivals.
    #[serde(default)]
    pub scenario: ScenarioSection,
    /// Batching, the KV cache and speculative decoding.
    #[serde(
        default,
        skip_serializing_if = "crate::sim::serving::ServingSpec::is_default"
    )]
    pub serving: crate::sim::serving::ServingSpec,
    /// Per-expert precision: the planner and run-time changes.
    #[serde(default)]
    pub precision: PrecisionSection,
    /// Output quality through proxy experts.
    #[serde(default)]
    pub quality: QualitySection,
    /// Extra outputs.
    #[serde(default)]
    pub output: OutputSection,
    /// Which plots and tables a sweep's report draws.
    #[serde(
        default,
        skip_serializing_if = "crate::report::kind::ReportSection::is_automatic"
    )]
    pub report: crate::report::kind::ReportSection,
    /// Sweep axes (see `super::sweep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepSection>,
    /// Measurements of real systems this experiment predicts (`moesim validate`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observed: Vec<ObservedSpec>,
}

impl ExperimentSpec {
    /// An experiment built in code (by `moesim host` and `moesim plan`): `name`, the device,
    /// the model in `format`, a generated trace of `requests` requests of `prefill` and `decode`
    /// tokens from `generator`, and every other section at its default, output quality off.
    pub fn in_code(
        name: &str,
        profile: &str,
        model: &str,
        format: WeightFormat,
        generator: &str,
        (requests, prefill, decode): (u32, u32, u32),
        seed: u64,
    ) -> ExperimentSpec {
        ExperimentSpec {
            schema_version: SCHEMA_VERSION,
            name: name.into(),
            description: String::new(),
            seed,
            hardware: HardwareSection {
                profile: profile.into(),
                runtime: None,
            },
            model: ModelSection {
                spec: model.into(),
                gguf: None,
                mix: None,
                format,
            },
            trace: TraceSection {
                generator: Some(generator.into()),
                file: None,
                import: None,
                requests: Some(requests),
                prefill_tokens: Some(prefill),
                decode_tokens: Some(decode),
                seed: None,
                truncate_to_whole_tokens: false,
            },
            router: standard_router(),
            gate_weights: Default::default(),
            cache: CacheSection::default(),
            prefetch: Default::default(),
            placement: Default::default(),
            runtime: Default::default(),
            scenario: Default::default(),
            serving: Default::default(),
            precision: Default::default(),
            quality: QualitySection {
                samples: 0,
                ..QualitySection::default()
            },
            output: Default::default(),
            report: Default::default(),
            sweep: None,
            observed: Vec::new(),
        }
    }
}

/// `[[observed]]`: one measurement of a real system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedSpec {
    /// A column of `results.csv` (`decode_tokens_per_s`, `hit_rate`, `ttft_mean_ns`, ...).
    pub metric: String,
    /// The measured value.
    pub value: f64,
    /// The sweep point it belongs to: axis path = value, for every axis of the sweep (empty
    /// without a sweep).
    #[serde(default)]
    pub point: toml::Table,
    /// The system measured (groups observations for fitting and in the plot; default `all`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Where the value comes from: paper or repository, table or file.
    pub source: String,
    /// Kept but left out of the error statistics, with the reason (a likely typo, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<String>,
}

/// `[precision]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrecisionSection {
    /// The planner (default: every expert in `model.format`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocator: Option<AllocatorKind>,
    /// Thermal, battery and memory-pressure timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<DynamicSpec>,
    /// HOBBIT-style low precision on miss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_on_miss: Option<LowOnMissSpec>,
}

/// Where proxy expert weights come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ProxyWeightsSpec {
    /// N(0, 1/fan-in).
    Gaussian {},
    /// Student-t draws scaled by 1/sqrt(fan-in).
    StudentT {
        /// Degrees of freedom.
        #[serde(default = "default_df")]
        df: f64,
    },
    /// Real weights from a safetensors file; `{layer}` and `{expert}` in the names are
    /// replaced by the MoE layer and expert index.
    Safetensors {
        /// The file (relative to the experiment file).
        file: String,
        /// Gate projection name template (`ffn × hidden`).
        w1: String,
        /// Down projection name template (`hidden × ffn`).
        w2: String,
        /// Up projection name template (`ffn × hidden`).
        w3: String,
    },
    /// Real expert weights from a GGUF file, dequantized from its own bytes (each sampled
    /// expert's slices read on demand).
    Gguf {
        /// The file (relative to the experiment file); default: `[model] gguf`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
    },
}

fn default_df() -> f64 {
    4.0
}

impl Default for ProxyWeightsSpec {
    fn default() -> Self {
        ProxyWeightsSpec::Gaussian {}
    }
}

/// `[quality.outliers]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutliersSpec {
    /// Share of experts with outlier input channels.
    pub experts: f64,
    /// Share of those experts' input channels that are outliers.
    pub channels: f64,
    /// Factor their weights are multiplied by.
    pub scale: f64,
}

fn default_samples() -> u32 {
    256
}

fn default_ffn_dim() -> u32 {
    256
}

/// `[quality]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualitySection {
    /// Decode (token, layer) events sampled for output quality (0: off).
    #[serde(default = "default_samples")]
    pub samples: u32,
    /// Proxy FFN width (a multiple of 256). Timing still uses the real model's sizes.
    #[serde(default = "default_ffn_dim")]
    pub ffn_dim: u32,
    /// Proxy hidden width for trace files (a generated trace uses its generator's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_dim: Option<u32>,
    /// Proxy weights.
    #[serde(default)]
    pub weights: ProxyWeightsSpec,
    /// Outlier channels in synthetic experts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outliers: Option<OutliersSpec>,
    /// Seed of the proxy weights and the sample (default: the experiment's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Default for QualitySection {
    fn default() -> Self {
        QualitySection {
            samples: default_samples(),
            ffn_dim: default_ffn_dim(),
            hidden_dim: None,
            weights: ProxyWeightsSpec::default(),
            outliers: None,
            seed: None,
        }
    }
}

fn default_seed() -> u64 {
    1
}

fn standard_router() -> RouterKind {
    RouterKind::Standard {}
}

/// `[hardware]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareSection {
    /// A shipped profile's name or a profile file (relative to the experiment file), or
    /// `GPU+HOST`: two of them composed (`hardware::compose`).
    pub profile: String,
    /// The software stack's runtime profile: `ideal` (default: no overhead) or a runtime file
    /// (relative to the experiment file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A shipped model's name or a model file (empty when `gguf` is given).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub spec: String,
    /// A GGUF file: the model's shape and each layer's exact expert bytes come from its header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gguf: Option<String>,
    /// A llama.cpp quantization mix (`q4_k_m`): each layer's experts take the bytes of the
    /// types llama-quantize's mix gives them (a `Q4_K_M` file keeps some layers' down
    /// projections in Q6_K); `format` still names the kernel class that times them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix: Option<String>,
    /// Storage format of every routed expert.
    pub format: WeightFormat,
}

/// `[trace] import`: a trace in another format, imported in memory on every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceImportSpec {
    /// `jsonl` or `moe-cache-lab` (as `moesim trace import --format`).
    pub format: String,
    /// Input files, in order (relative to the experiment file).
    pub files: Vec<String>,
    /// `jsonl`: role → field name (as `--map ROLE=FIELD`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub map: std::collections::BTreeMap<String, String>,
    /// Experts per layer (`jsonl` has no metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experts: Option<u32>,
    /// Top-k (`jsonl` has no metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Cut every request's decode to whole tokens: each layer keeps its first `m` decode
    /// events, `m` the fewest any layer has, renumbered 0..m. For traces whose collector
    /// dropped events (per-layer order stays right; after a gap, layers pair up tokens one off).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncate_to_whole_tokens: bool,
}

/// `[trace]`: exactly one of `generator`, `file` and `import`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceSection {
    /// A generator preset or spec file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    /// A native trace file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A trace in another format, imported in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<TraceImportSpec>,
    /// Generated requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u32>,
    /// Prompt tokens per generated request (default: the generator's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill_tokens: Option<u32>,
    /// Decode tokens per generated request (default: the generator's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_tokens: Option<u32>,
    /// Seed of the generated trace (default: the experiment's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// `file`: cut every request's decode to whole tokens, as `[trace.import]`'s option of the
    /// same name does (for an imported trace whose collector dropped events).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncate_to_whole_tokens: bool,
}

/// `[cache]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Eviction policy: a name as on the command line (`lru`, `ema:0.9`) or a table
    /// (`{ kind = "ema", decay = 0.9 }`).
    #[serde(
        default = "default_policy",
        deserialize_with = "crate::config::name_or_table",
        serialize_with = "crate::config::by_name"
    )]
    pub policy: PolicyKind,
    /// One cache per layer, or one shared.
    #[serde(default = "default_scope")]
    pub scope: Scope,
    /// Capacity in experts per layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_experts: Option<f64>,
    /// Capacity in bytes, over all caches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    /// Capacity as a fraction of the compute tier's expert budget (default 1 when no capacity
    /// is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_fraction: Option<f64>,
    /// Reset or keep caches between requests.
    #[serde(default = "default_between")]
    pub between_requests: BetweenRequests,
}

fn default_policy() -> PolicyKind {
    PolicyKind::Lru {}
}

fn default_scope() -> Scope {
    Scope::PerLayer
}

fn default_between() -> BetweenRequests {
    BetweenRequests::Reset
}

impl Default for CacheSection {
    fn default() -> Self {
        CacheSection {
            policy: default_policy(),
            scope: default_scope(),
            capacity_experts: None,
            capacity_bytes: None,
            budget_fraction: None,
            between_requests: default_between(),
        }
    }
}

/// `[prefetch]`: the strategy (`kind` and its parameters, a [`PrefetchKind`] written inline)
/// and the settings every strategy shares.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PrefetchSection {
    /// The strategy and its parameters.
    pub strategy: PrefetchKind,
    /// Experts prefetched per layer step (default: top-k).
    pub count: Option<u32>,
    /// What to do with a wrong guess.
    pub on_wrong: OnWrongPrefetch,
}

impl Serialize for PrefetchSection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut t = match toml::Value::try_from(&self.strategy).map_err(S::Error::custom)? {
            toml::Value::Table(t) => t,
            _ => unreachable!("a tagged enum serializes as a table"),
        };
        if let Some(c) = self.count {
            t.insert("count".into(), toml::Value::Integer(c.into()));
        }
        t.insert(
            "on_wrong".into(),
            toml::Value::try_from(self.on_wrong).map_err(S::Error::custom)?,
        );
        t.serialize(s)
    }
}

impl<'de> Deserialize<'de> for PrefetchSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut t = toml::Table::deserialize(d)?;
        let field =
            |e: toml::de::Error, key: &str| D::Error::custom(format!("{key}: {}", e.message()));
        let count = match t.remove("count") {
            Some(v) => Some(v.try_into::<u32>().map_err(|e| field(e, "count"))?),
            None => None,
        };
        let on_wrong = match t.remove("on_wrong") {
            Some(v) => v
                .try_into::<OnWrongPrefetch>()
                .map_err(|e| field(e, "on_wrong"))?,
            None => OnWrongPrefetch::default(),
        };
        if !t.contains_key("kind") {
            t.insert("kind".into(), toml::Value::String("none".into()));
        }
        let strategy = toml::Value::Table(t)
            .try_into::<PrefetchKind>()
            .map_err(|e| D::Error::custom(e.message()))?;
        Ok(PrefetchSection {
            strategy,
            count,
            on_wrong,
        })
    }
}

/// `[scenario]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSection {
    /// How requests arrive.
    #[serde(default)]
    pub arrival: ArrivalKind,
    /// Run a prompt in chunks of at most this many tokens (llama.cpp's micro-batch,
    /// `--ubatch-size`); default: the whole prompt in one step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill_chunk_tokens: Option<u32>,
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// Write `timeline.json` (Chrome trace events).
    #[serde(default)]
    pub timeline: bool,
}

/// `[sweep]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSection {
    /// Dotted path → values; the cartesian product.
    #[serde(default)]
    pub axes: toml::Table,
    /// Groups of paths whose equal-length value lists vary together.
    #[serde(default)]
    pub zip: Vec<toml::Table>,
    /// Runs per point (1).
    #[serde(default = "one")]
    pub replicates: u32,
}

fn one() -> u32 {
    1
}
