//! Experiments: a TOML file naming a hardware profile, a model, a trace source, a router, a
//! cache, a prefetcher and a scenario, validated once into an [`Experiment`] that builds the
//! simulation and runs it.
//!
//! Paths inside an experiment file (profiles, models, generator specs, traces) are relative to
//! the file; a name that matches a shipped preset wins.

pub mod spec;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use spec::ExperimentSpec;

use std::sync::Arc;

use crate::error::{Error, InputError, Result};
use crate::hardware::HardwareProfile;
use crate::moe::MoeSpec;
use crate::precision::{AllocationInput, AllocatorKind, PrecisionPlan};
use crate::quality::{
    Outliers, OutputQuality, QualitySample, ReferenceRoute, SyntheticExperts, WeightSource,
};
use crate::quant::eval::WeightDistribution;
use crate::router::replay::RouteWorkload;
use crate::router::{GateWeights as Gate, gate_weights, top_k_by};
use crate::sim::prefetch::PrefetchKind;
use crate::sim::{CacheCapacity, SimOptions, SimReport, SimSetup, SimTrace, Timeline};
use crate::trace::generate::{GeneratedEvent, Generator, GeneratorSpec};
use crate::weights::experts::SafetensorsExperts;
use spec::{ProxyWeightsSpec, SCHEMA_VERSION};

/// The built-in quickstart: the seed's micro-MoE on an ESP32-P4 with a generated trace.
pub const QUICKSTART: &str = include_str!("../../experiments/quickstart.toml");

/// How the built-in quickstart names itself in errors and reports.
pub const QUICKSTART_LABEL: &str = "quickstart (built-in)";

/// Where the routing events come from.
#[derive(Debug, Clone)]
pub enum TraceSource {
    /// The synthetic generator.
    Generator {
        /// Its parameters (prefill and decode lengths resolved).
        spec: GeneratorSpec,
        /// Its seed.
        seed: u64,
        /// Requests to generate.
        requests: u32,
    },
    /// A native trace file.
    File(PathBuf),
    /// A trace imported in memory: its label and its native bytes.
    Imported(String, std::sync::Arc<Vec<u8>>),
}

/// The version of the results' meaning: bumped when a metric's definition or a table's columns
/// change, so that a sweep directory written by another version is not resumed.
pub const RESULTS_SCHEMA: u32 = 2;

/// `[trace] generator = "auto"`: a generator in the model's shape (MoE layers, experts, top-k)
/// with the dynamics of [`AUTO_DYNAMICS`].
pub const AUTO_GENERATOR: &str = "auto";

/// The generator preset whose dynamics `auto` takes.
pub const AUTO_DYNAMICS: &str = "qwen3-like";

/// An input an experiment reads, for the resume hash of a sweep.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InputRef {
    /// A shipped preset: its kind (`hardware`, `model`, `generator`) and name.
    Preset(&'static str, String),
    /// A file, by its resolved path.
    File(PathBuf),
    /// A file of which only the first `bytes` bytes are read (a GGUF file's header), with its
    /// length.
    FileHeader(PathBuf, u64),
}

impl InputRef {
    fn resolve(kind: &'static str, name: &str, is_preset: bool) -> InputRef {
        if is_preset {
            InputRef::Preset(kind, name.to_string())
        } else {
            InputRef::File(PathBuf::from(name))
        }
    }
}

/// A 64-bit FNV-1a digest of every input's content (presets by their compiled-in text, files
/// streamed), with the results schema and the binary's version: what a sweep's parts depend on
/// beyond the experiment file itself.
pub fn fingerprint_inputs<'a>(inputs: impl IntoIterator<Item = &'a InputRef>) -> Result<u64> {
    use std::io::Read;
    let mut h = crate::hash::Fnv::default();
    h.write(
        format!(
            "results-schema {RESULTS_SCHEMA} moesim {}\n",
            env!("CARGO_PKG_VERSION")
        )
        .as_bytes(),
    );
    let mut sorted: Vec<&InputRef> = inputs.into_iter().collect();
    sorted.sort();
    sorted.dedup();
    for i in sorted {
        match i {
            InputRef::Preset(kind, name) => {
                let text = match *kind {
                    "hardware" => crate::hardware::presets::get(name),
                    "model" => crate::moe::presets::get(name),
                    _ => crate::trace::generate::PRESETS
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, t)| *t),
                }
                .unwrap_or("");
                h.write(format!("preset {kind} {name} {}\n", text.len()).as_bytes());
                h.write(text.as_bytes());
            }
            InputRef::File(path) => {
                let mut f = crate::input::open(path)?;
                h.write(format!("file {}\n", path.display()).as_bytes());
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
                    if n == 0 {
                        break;
                    }
                    h.write(&buf[..n]);
                }
            }
            InputRef::FileHeader(path, bytes) => {
                let f = crate::input::open(path)?;
                let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
                h.write(format!("file header {} {len} {bytes}\n", path.display()).as_bytes());
                let mut head = Vec::new();
                f.take(*bytes)
                    .read_to_end(&mut head)
                    .map_err(|e| Error::io(path, e))?;
                h.write(&head);
            }
        }
    }
    Ok(h.finish())
}

/// Where proxy expert weights come from, resolved.
#[derive(Debug, Clone)]
pub enum ProxySource {
    /// Seeded synthetic experts.
    Synthetic(SyntheticExperts),
    /// A real checkpoint.
    Safetensors(Arc<SafetensorsExperts>),
    /// A GGUF file's experts.
    Gguf(Arc<crate::weights::gguf_experts::GgufExperts>),
}

impl ProxySource {
    /// As a weight source.
    pub fn source(&self) -> &dyn WeightSource {
        match self {
            ProxySource::Synthetic(s) => s,
            ProxySource::Safetensors(s) => s.as_ref(),
            ProxySource::Gguf(s) => s.as_ref(),
        }
    }
}

/// Output quality settings, resolved.
#[derive(Debug, Clone)]
pub struct QualityConfig {
    /// Decode events sampled (0: off).
    pub samples: u32,
    /// The proxy experts.
    pub proxy: ProxySource,
    /// Seed of the sample and the error probes.
    pub seed: u64,
}

/// A validated experiment.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// The spec with every default filled in (what `config.resolved.toml` shows).
    pub resolved: ExperimentSpec,
    /// Where it came from (a file, or `quickstart (built-in)`).
    pub label: String,
    /// The device.
    pub profile: HardwareProfile,
    /// The model.
    pub model: MoeSpec,
    /// The trace source.
    pub source: TraceSource,
    /// The simulation options.
    pub options: SimOptions,
    /// The precision planner.
    pub allocator: AllocatorKind,
    /// Output quality.
    pub quality: QualityConfig,
    /// Every input it reads (profile, model, generator spec, trace, weights).
    pub inputs: Vec<InputRef>,
}

/// One run's results.
#[derive(Debug)]
pub struct Outcome {
    /// The metrics.
    pub report: SimReport,
    /// The timeline, if asked for.
    pub timeline: Option<Timeline>,
    /// Whether the timeline hit its span limit.
    pub timeline_truncated: bool,
    /// The resolved setup (sizes and durations).
    pub setup: SimSetup,
    /// Wall time of the simulation alone (trace building excluded).
    pub simulate_wall_s: f64,
    /// Whether the trace lacked full logits.
    pub restricted: bool,
    /// The precision plan the run used.
    pub plan: PrecisionPlan,
    /// Usage-weighted mean bits per weight of the plan (usage from the profiling pass).
    pub plan_bits_weighted: f64,
    /// Output quality through proxy experts, when measured.
    pub output_quality: Option<OutputQuality>,
    /// Why output quality is missing, when it is.
    pub quality_note: Option<String>,
    /// Wall time of planning and of the quality measurement.
    pub quality_wall_s: f64,
}

fn at(label: &str, key: &str, reason: impl Into<String>) -> Error {
    Error::Input(InputError::at_key(label, key, reason))
}

/// A refused plug-in parameter of `section`, as `FILE: section.key: value: reason`.
fn param_at(label: &str, section: &str, e: crate::param::ParamError) -> Error {
    let e = e.in_section(section);
    at(label, &e.key, format!("{}: {}", e.value, e.reason))
}

/// A preset name, or a path relative to `base`.
/// Imports `imp`'s files in memory: the native bytes and the (layers, experts, top-k) shape.
fn import_trace(imp: &spec::TraceImportSpec, base: &Path) -> Result<(Vec<u8>, (u32, u32, u32))> {
    use crate::trace::import::{Destination, ImportFormat, ImportOptions, import};
    let format = match imp.format.as_str() {
        "jsonl" => ImportFormat::Jsonl,
        "moe-cache-lab" => ImportFormat::MoeCacheLab,
        other => {
            return Err(Error::usage(format!(
                "format `{other}`: expected `jsonl` or `moe-cache-lab`"
            )));
        }
    };
    let paths: Vec<PathBuf> = imp
        .files
        .iter()
        .map(|f| PathBuf::from(resolve(base, f, false)))
        .collect();
    let inputs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let maps: Vec<(String, String)> = imp.map.clone().into_iter().collect();
    let options = ImportOptions {
        experts: imp.experts,
        top_k: imp.top_k,
        ..Default::default()
    };
    let result = import(
        format,
        &inputs,
        &maps,
        &options,
        Destination::Memory(1 << 20),
        false,
    )?;
    let mut bytes = result.bytes.expect("memory destination");
    if imp.truncate_to_whole_tokens {
        bytes = crate::trace::import::truncate_to_whole_tokens(&bytes)?;
    }
    let meta = crate::trace::native::TraceReader::new("import".into(), &bytes[..])?
        .meta()
        .clone();
    Ok((bytes, (meta.layers, meta.experts, meta.top_k)))
}

/// `path` made absolute (symbolic links and `..` resolved when it exists), for
/// `config.resolved.toml`, which must reproduce the run from any directory.
fn absolute(path: &str) -> String {
    let p = Path::new(path);
    std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|_| path.to_string())
}

fn resolve(base: &Path, s: &str, is_preset: bool) -> String {
    let p = Path::new(s);
    if is_preset || p.is_absolute() {
        s.to_string()
    } else {
        base.join(p).to_string_lossy().into_owned()
    }
}

impl Experiment {
    /// Reads and validates an experiment file.
    pub fn load(path: &Path) -> Result<Experiment> {
        let text = crate::input::read_to_string(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Experiment::parse(&path.display().to_string(), &text, base)
    }

    /// The built-in quickstart.
    pub fn quickstart() -> Result<Experiment> {
        Experiment::parse(QUICKSTART_LABEL, QUICKSTART, Path::new("."))
    }

    /// Parses and validates `text`; `label` names it in errors, `base` anchors relative paths.
    pub fn parse(label: &str, text: &str, base: &Path) -> Result<Experiment> {
        let spec: ExperimentSpec = crate::config::parse_toml(label, text)?;
        Experiment::from_spec(spec, label, base)
    }

    /// Validates a spec.
    pub fn from_spec(spec: ExperimentSpec, label: &str, base: &Path) -> Result<Experiment> {
        if spec.schema_version != SCHEMA_VERSION {
            return Err(at(
                label,
                "schema_version",
                format!(
                    "{} is not supported (expected {SCHEMA_VERSION})",
                    spec.schema_version
                ),
            ));
        }
        if spec.name.is_empty()
            || spec.name.starts_with('.')
            || !spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(at(
                label,
                "name",
                "must be non-empty, use only letters, digits, '-', '_' and '.', and not start with '.' (it names a directory)",
            ));
        }
        let mut resolved = spec.clone();
        let mut inputs = Vec::new();
        // One profile, or `GPU+HOST`: each part a preset or a file relative to the experiment.
        let profile_arg = spec.hardware.profile.as_str();
        let exists_at_base = |name: &str| {
            crate::hardware::presets::get(name).is_some()
                || Path::new(&resolve(base, name, false)).exists()
        };
        let parts = match crate::hardware::ProfileRef::parse(profile_arg, exists_at_base)
            .map_err(|e| at(label, "hardware.profile", e.to_string()))?
        {
            crate::hardware::ProfileRef::One(name) => vec![name],
            crate::hardware::ProfileRef::Composed { gpu, host } => vec![gpu, host],
        };
        let mut part_names = Vec::with_capacity(parts.len());
        let mut resolved_parts = Vec::with_capacity(parts.len());
        for part in parts {
            let is_preset = crate::hardware::presets::get(part).is_some();
            let name = resolve(base, part, is_preset);
            inputs.push(InputRef::resolve("hardware", &name, is_preset));
            resolved_parts.push(if is_preset {
                name.clone()
            } else {
                absolute(&name)
            });
            part_names.push(name);
        }
        resolved.hardware.profile = resolved_parts.join("+");
        let profile = match &part_names[..] {
            [gpu, host] => crate::hardware::compose_parts(profile_arg, gpu, host)
                .and_then(|(l, s)| s.validate(&l).map_err(Error::from)),
            _ => crate::hardware::load(&part_names[0]),
        }
        .map_err(|e| at(label, "hardware.profile", e.to_string()))?;
        let runtime = match spec.hardware.runtime.as_deref() {
            None | Some("ideal") => crate::hardware::runtime::Runtime::ideal(),
            Some(file) => {
                let path = resolve(base, file, false);
                inputs.push(InputRef::resolve("runtime", &path, false));
                resolved.hardware.runtime = Some(absolute(&path));
                crate::hardware::runtime::load(&path)
                    .map_err(|e| at(label, "hardware.runtime", e.to_string()))?
            }
        };
        let runtime = runtime.with(&spec.runtime, label, "runtime.")?;
        let profile = runtime.apply(profile);
        let model = match (spec.model.spec.is_empty(), &spec.model.gguf) {
            (false, None) => {
                let model_is_preset = crate::moe::presets::get(&spec.model.spec).is_some();
                let model_name = resolve(base, &spec.model.spec, model_is_preset);
                inputs.push(InputRef::resolve("model", &model_name, model_is_preset));
                if !model_is_preset {
                    resolved.model.spec = absolute(&model_name);
                }
                let mut m = crate::moe::load(&model_name)
                    .map_err(|e| at(label, "model.spec", e.to_string()))?;
                if let Some(mix) = &spec.model.mix {
                    let mix: crate::gguf::mix::Mix =
                        mix.parse().map_err(|e| at(label, "model.mix", e))?;
                    let (_, file) = crate::moe::load_spec_file(&model_name)
                        .map_err(|e| at(label, "model.spec", e.to_string()))?;
                    m.layer_expert_bytes = Some(
                        crate::gguf::mix::layer_expert_bytes(mix, &file)
                            .map_err(|e| at(label, "model.mix", e))?,
                    );
                }
                m
            }
            (true, Some(file)) => {
                // The model and its experts' exact bytes from a GGUF file's header.
                let path = PathBuf::from(resolve(base, file, false));
                let (header, m) = crate::gguf::file::read(&path)
                    .map_err(|e| at(label, "model.gguf", e.to_string()))?;
                inputs.push(InputRef::FileHeader(path.clone(), header.data_offset));
                resolved.model.gguf = Some(absolute(&path.to_string_lossy()));
                let m = match &spec.model.mix {
                    None => m,
                    Some(mix) => {
                        let mix: crate::gguf::mix::Mix =
                            mix.parse().map_err(|e| at(label, "model.mix", e))?;
                        let mixed =
                            crate::gguf::mix::apply(mix, &header).map_err(|(key, reason)| {
                                at(label, "model.mix", format!("{key}: {reason}"))
                            })?;
                        crate::gguf::GgufModel::from_header(&mixed, "model").map_err(
                            |(key, reason)| at(label, "model.mix", format!("{key}: {reason}")),
                        )?
                    }
                };
                m.to_moe_spec(&path.display().to_string())
                    .map_err(|e| at(label, "model.gguf", e))?
            }
            _ => {
                return Err(at(
                    label,
                    "model",
                    "give either `spec` (a model name or spec file) or `gguf` (a GGUF file)",
                ));
            }
        };
        if profile
            .compute()
            .format_weights_per_s(spec.model.format)
            .is_none()
        {
            return Err(at(
                label,
                "model.format",
                "f32 is the untimed quality reference; pick a deployable format",
            ));
        }

        // The trace source, and its shape against the model.
        let t = &spec.trace;
        // Keys that shape a generated trace, refused for a trace read from `source_key`.
        let generated_only = |source_key: &str| -> Result<()> {
            for (key, set) in [
                ("trace.requests", t.requests.is_some()),
                ("trace.prefill_tokens", t.prefill_tokens.is_some()),
                ("trace.decode_tokens", t.decode_tokens.is_some()),
                ("trace.seed", t.seed.is_some()),
            ] {
                if set {
                    return Err(at(
                        label,
                        key,
                        format!("applies to a generated trace only (this one reads {source_key})"),
                    ));
                }
            }
            Ok(())
        };
        if t.truncate_to_whole_tokens && t.file.is_none() {
            return Err(at(
                label,
                "trace.truncate_to_whole_tokens",
                "applies to `trace.file` (for `[trace.import]`, set it in that table)",
            ));
        }
        let (source, shape) = match (&t.generator, &t.file, &t.import) {
            (None, None, Some(imp)) => {
                generated_only("trace.import")?;
                let (bytes, shape) = import_trace(imp, base)
                    .map_err(|e| at(label, "trace.import", e.to_string()))?;
                let name = imp.files.join(", ");
                inputs.extend(
                    imp.files
                        .iter()
                        .map(|f| InputRef::File(PathBuf::from(resolve(base, f, false)))),
                );
                if let Some(r) = resolved.trace.import.as_mut() {
                    r.files = imp
                        .files
                        .iter()
                        .map(|f| absolute(&resolve(base, f, false)))
                        .collect();
                }
                (
                    TraceSource::Imported(name, std::sync::Arc::new(bytes)),
                    shape,
                )
            }
            (Some(g), None, None) => {
                // `auto`: the qwen3-like dynamics in the model's shape.
                let auto = g == AUTO_GENERATOR;
                let g = if auto { AUTO_DYNAMICS } else { g.as_str() };
                let is_preset = crate::trace::generate::PRESETS.iter().any(|(n, _)| *n == g);
                let gname = resolve(base, g, is_preset);
                inputs.push(InputRef::resolve("generator", &gname, is_preset));
                if !is_preset {
                    resolved.trace.generator = Some(absolute(&gname));
                }
                let mut gspec = crate::trace::generate::load_spec(&gname)
                    .map_err(|e| at(label, "trace.generator", e.to_string()))?;
                if auto {
                    gspec.name = format!("auto ({AUTO_DYNAMICS} dynamics, {} shape)", model.name);
                    gspec.layers = model.n_moe_layers();
                    gspec.experts = model.n_experts;
                    gspec.top_k = model.top_k;
                }
                if let Some(p) = t.prefill_tokens {
                    gspec.prefill_tokens = p;
                }
                if let Some(d) = t.decode_tokens {
                    gspec.decode_tokens = d;
                }
                if gspec.prefill_tokens == 0 && gspec.decode_tokens == 0 {
                    return Err(at(
                        label,
                        "trace.decode_tokens",
                        "a generated request needs at least one token (prefill_tokens and decode_tokens are both 0)",
                    ));
                }
                let requests = t.requests.unwrap_or(1);
                if requests == 0 {
                    return Err(at(label, "trace.requests", "must be > 0"));
                }
                let seed = t.seed.unwrap_or(spec.seed);
                // The simulation holds every event's logits in memory.
                let bytes = (requests as u64)
                    .checked_mul(gspec.prefill_tokens as u64 + gspec.decode_tokens as u64)
                    .and_then(|n| n.checked_mul(gspec.layers as u64))
                    .and_then(|n| n.checked_mul(gspec.experts as u64 * 4 + 16));
                crate::units::check_working_bytes("the generated trace", bytes).map_err(|r| {
                    at(
                        label,
                        "trace.requests",
                        format!("{r}; generate fewer requests or tokens"),
                    )
                })?;
                resolved.trace.requests = Some(requests);
                resolved.trace.prefill_tokens = Some(gspec.prefill_tokens);
                resolved.trace.decode_tokens = Some(gspec.decode_tokens);
                resolved.trace.seed = Some(seed);
                let shape = (gspec.layers, gspec.experts, gspec.top_k);
                (
                    TraceSource::Generator {
                        spec: gspec,
                        seed,
                        requests,
                    },
                    shape,
                )
            }
            (None, Some(f), None) => {
                generated_only("trace.file")?;
                let path = PathBuf::from(resolve(base, f, false));
                inputs.push(InputRef::File(path.clone()));
                resolved.trace.file = Some(absolute(&path.to_string_lossy()));
                let meta = crate::trace::native::TraceReader::open(&path)
                    .map_err(|e| at(label, "trace.file", e.to_string()))?
                    .meta()
                    .clone();
                let shape = (meta.layers, meta.experts, meta.top_k);
                if t.truncate_to_whole_tokens {
                    let bytes = crate::input::read(&path)?;
                    let cut = crate::trace::import::truncate_to_whole_tokens(&bytes)
                        .map_err(|e| at(label, "trace.file", e.to_string()))?;
                    (
                        TraceSource::Imported(path.display().to_string(), Arc::new(cut)),
                        shape,
                    )
                } else {
                    (TraceSource::File(path), shape)
                }
            }
            _ => {
                return Err(at(
                    label,
                    "trace",
                    "give exactly one of `generator`, `file` and `import`",
                ));
            }
        };
        let want = (model.n_moe_layers(), model.n_experts, model.top_k);
        if shape != want {
            return Err(at(
                label,
                "trace",
                format!(
                    "the trace has {} MoE layers x {} experts, top-{}; the model {} has {} x {}, top-{}",
                    shape.0, shape.1, shape.2, model.name, want.0, want.1, want.2
                ),
            ));
        }

        // Plug-in parameters: one check per kind, the same that sweep axes and flags meet.
        let model_shape = crate::param::ModelShape {
            layers: want.0,
            experts: want.1,
            top_k: want.2,
        };
        spec.router
            .validate(&model_shape)
            .map_err(|e| param_at(label, "router", e))?;

        // Cache.
        let c = &spec.cache;
        let policy = c.policy.clone();
        policy
            .validate()
            .map_err(|e| param_at(label, "cache.policy", e))?;
        if policy.needs_oracle() && spec.router != (crate::router::RouterKind::Standard {}) {
            return Err(at(
                label,
                "cache.policy",
                "Belady's oracle is the standard route sequence: it runs with the standard router only",
            ));
        }
        let capacity = match (c.capacity_experts, c.capacity_bytes, c.budget_fraction) {
            (Some(n), None, None) => CacheCapacity::Experts(n),
            (None, Some(b), None) => CacheCapacity::Bytes(b),
            (None, None, f) => {
                resolved.cache.budget_fraction = Some(f.unwrap_or(1.0));
                CacheCapacity::BudgetFraction(f.unwrap_or(1.0))
            }
            _ => {
                return Err(at(
                    label,
                    "cache",
                    "give at most one of capacity_experts, capacity_bytes and budget_fraction",
                ));
            }
        };

        // Prefetch.
        let p = &spec.prefetch;
        let prefetch = p.strategy.clone();
        if prefetch == (PrefetchKind::Speculative {})
            && !matches!(source, TraceSource::Generator { .. })
        {
            return Err(at(
                label,
                "prefetch.kind",
                "speculative prefetch applies the next layer's router to the hidden state, which only a generated trace has (trace files carry no hidden states); use history or oracle",
            ));
        }
        prefetch
            .validate(&model_shape)
            .map_err(|e| param_at(label, "prefetch", e))?;
        if let Some(n) = p.count {
            crate::param::int_within(
                "count",
                n as u64,
                1,
                model_shape.experts as u64,
                "experts per layer",
            )
            .map_err(|e| param_at(label, "prefetch", e))?;
        }
        if policy.needs_oracle() && prefetch != (PrefetchKind::None {}) {
            return Err(at(
                label,
                "prefetch.kind",
                "Belady's oracle is the demand lookup order, which prefetching changes: use no prefetch with Belady",
            ));
        }
        spec.scenario
            .arrival
            .validate()
            .map_err(|e| param_at(label, "scenario.arrival", e))?;
        if spec.scenario.prefill_chunk_tokens == Some(0) {
            return Err(at(
                label,
                "scenario.prefill_chunk_tokens",
                "must be at least 1 (leave it out to run the whole prompt in one step)",
            ));
        }
        // Precision.
        let pr = &spec.precision;
        let allocator = pr.allocator.clone().unwrap_or(AllocatorKind::Uniform {
            format: spec.model.format,
        });
        allocator
            .validate()
            .map_err(|e| param_at(label, "precision.allocator", e))?;
        resolved.precision.allocator = Some(allocator.clone());
        if let Some(d) = &pr.dynamic {
            d.validate()
                .map_err(|e| param_at(label, "precision.dynamic", e))?;
        }
        if let Some(l) = &pr.low_on_miss {
            l.validate()
                .map_err(|e| param_at(label, "precision.low_on_miss", e))?;
        }

        // Output quality.
        let q = &spec.quality;
        let seed_q = q.seed.unwrap_or(spec.seed);
        resolved.quality.seed = Some(seed_q);
        let generator_hidden = match &source {
            TraceSource::Generator { spec, .. } => Some(spec.hidden_dim),
            TraceSource::File(_) | TraceSource::Imported(..) => None,
        };
        if let (Some(g), Some(h)) = (generator_hidden, q.hidden_dim)
            && g != h
        {
            return Err(at(
                label,
                "quality.hidden_dim",
                format!(
                    "{h} differs from the generator's hidden_dim {g}; leave it out for a generated trace"
                ),
            ));
        }
        let hidden = generator_hidden.or(q.hidden_dim).unwrap_or(256) as usize;
        if q.samples > 1_000_000 {
            return Err(at(
                label,
                "quality.samples",
                format!("{}: must be at most 1000000", q.samples),
            ));
        }
        if q.ffn_dim > 65_536 {
            return Err(at(
                label,
                "quality.ffn_dim",
                format!(
                    "{}: must be at most 65536 (proxy experts are stand-ins; timing uses the model's own sizes)",
                    q.ffn_dim
                ),
            ));
        }
        if let Some(h) = q.hidden_dim
            && h > 65_536
        {
            return Err(at(
                label,
                "quality.hidden_dim",
                format!("{h}: must be at most 65536"),
            ));
        }
        if q.samples > 0 {
            // One layer's proxy experts in f32 and in their quantized forms, at most.
            let bytes = (model.n_experts as u64)
                .checked_mul(3 * 4 * 2)
                .and_then(|b| b.checked_mul(hidden as u64))
                .and_then(|b| b.checked_mul(q.ffn_dim as u64));
            crate::units::check_working_bytes("one layer of proxy experts", bytes)
                .map_err(|r| at(label, "quality.ffn_dim", r))?;
        }
        if q.ffn_dim == 0 || !q.ffn_dim.is_multiple_of(256) {
            return Err(at(
                label,
                "quality.ffn_dim",
                "must be a positive multiple of 256 (the K-quant super-block)",
            ));
        }
        if !hidden.is_multiple_of(256) {
            return Err(at(
                label,
                if generator_hidden.is_some() {
                    "trace.generator"
                } else {
                    "quality.hidden_dim"
                },
                format!(
                    "a hidden width of {hidden} is not a multiple of 256, which proxy experts in K-quant formats need"
                ),
            ));
        }
        if let Some(o) = &q.outliers
            && !((0.0..=1.0).contains(&o.experts)
                && (0.0..=1.0).contains(&o.channels)
                && o.scale.is_finite()
                && o.scale > 0.0
                && o.scale <= 1e6)
        {
            return Err(at(
                label,
                "quality.outliers",
                "experts and channels must be in [0, 1] and scale in (0, 10^6]",
            ));
        }
        let synthetic = |distribution| {
            ProxySource::Synthetic(SyntheticExperts {
                hidden,
                ffn: q.ffn_dim as usize,
                distribution,
                outliers: q.outliers.as_ref().map(|o| Outliers {
                    experts: o.experts,
                    channels: o.channels,
                    scale: o.scale,
                }),
                seed: seed_q,
                experts_per_layer: model.n_experts,
            })
        };
        let proxy = match &q.weights {
            ProxyWeightsSpec::Gaussian {} => synthetic(WeightDistribution::Gaussian),
            ProxyWeightsSpec::StudentT { df } => {
                crate::param::within("df", *df, 1.0, 1e6)
                    .map_err(|e| param_at(label, "quality.weights", e))?;
                synthetic(WeightDistribution::StudentT(*df))
            }
            ProxyWeightsSpec::Safetensors { file, w1, w2, w3 } => {
                if q.outliers.is_some() {
                    return Err(at(
                        label,
                        "quality.outliers",
                        "applies to synthetic weights only",
                    ));
                }
                let path = PathBuf::from(resolve(base, file, false));
                inputs.push(InputRef::File(path.clone()));
                if let ProxyWeightsSpec::Safetensors { file, .. } = &mut resolved.quality.weights {
                    *file = absolute(&path.to_string_lossy());
                }
                let st = SafetensorsExperts::open(&path, w1, w2, w3)
                    .map_err(|e| at(label, "quality.weights", e.to_string()))?;
                if let Some(g) = generator_hidden
                    && st.hidden() != g as usize
                    && q.samples > 0
                {
                    return Err(at(
                        label,
                        "quality.weights",
                        format!(
                            "its experts take hidden vectors of {}, the generator's are {g}",
                            st.hidden()
                        ),
                    ));
                }
                ProxySource::Safetensors(Arc::new(st))
            }
            ProxyWeightsSpec::Gguf { file } => {
                if q.outliers.is_some() {
                    return Err(at(
                        label,
                        "quality.outliers",
                        "applies to synthetic weights only",
                    ));
                }
                let path = match (file, &resolved.model.gguf) {
                    (Some(f), _) => PathBuf::from(resolve(base, f, false)),
                    (None, Some(model_file)) => PathBuf::from(model_file),
                    (None, None) => {
                        return Err(at(
                            label,
                            "quality.weights",
                            "give `file`, or a GGUF model in `[model] gguf`",
                        ));
                    }
                };
                if let ProxyWeightsSpec::Gguf { file } = &mut resolved.quality.weights {
                    *file = Some(absolute(&path.to_string_lossy()));
                }
                let g = crate::weights::gguf_experts::GgufExperts::open(&path)
                    .map_err(|e| at(label, "quality.weights", e.to_string()))?;
                // As for `[model] gguf`: sweeps hash the file's header, not its tensors.
                inputs.push(InputRef::FileHeader(path.clone(), g.data_offset()));
                if g.layers() != model.n_moe_layers() as usize
                    || g.experts() != model.n_experts as u64
                {
                    return Err(at(
                        label,
                        "quality.weights",
                        format!(
                            "{}: {} MoE layers of {} experts, the model has {} of {}",
                            path.display(),
                            g.layers(),
                            g.experts(),
                            model.n_moe_layers(),
                            model.n_experts
                        ),
                    ));
                }
                if let Some(gh) = generator_hidden
                    && g.hidden() != gh as usize
                    && q.samples > 0
                {
                    return Err(at(
                        label,
                        "quality.weights",
                        format!(
                            "its experts take hidden vectors of {}, the generator's are {gh}",
                            g.hidden()
                        ),
                    ));
                }
                ProxySource::Gguf(Arc::new(g))
            }
        };
        let quality = QualityConfig {
            samples: q.samples,
            proxy,
            seed: seed_q,
        };

        let options = SimOptions {
            format: spec.model.format,
            scope: c.scope,
            capacity,
            policy,
            between: c.between_requests,
            router: spec.router.clone(),
            gate: spec.gate_weights,
            prefetch,
            prefetch_count: p.count,
            on_wrong_prefetch: p.on_wrong,
            arrival: spec.scenario.arrival.clone(),
            timeline: spec.output.timeline,
            seed: spec.seed,
            precision: crate::sim::PrecisionOptions {
                dynamic: pr.dynamic.clone(),
                low_on_miss: pr.low_on_miss.clone(),
            },
            placement: spec.placement.clone(),
            prefill_chunk_tokens: spec.scenario.prefill_chunk_tokens,
            serving: spec.serving.clone(),
        };
        if options.placement.popularity == crate::sim::placement::Popularity::HeldOut
            && !matches!(source, TraceSource::Generator { .. })
        {
            return Err(at(
                label,
                "placement.popularity",
                "\"held-out\" needs a generated trace (a trace file has no other requests)",
            ));
        }
        // Resolve the setup once with a neutral popularity to report option errors now, not
        // after the trace is built.
        let n = model.n_moe_layers() as usize * model.n_experts as usize;
        let neutral = match &allocator {
            AllocatorKind::Uniform { format } => {
                PrecisionPlan::uniform(model.n_moe_layers(), model.n_experts, *format)
            }
            _ => PrecisionPlan::uniform(model.n_moe_layers(), model.n_experts, spec.model.format),
        };
        SimSetup::new(
            &profile,
            &model,
            options.clone(),
            &vec![0; n],
            Some(&neutral),
        )
        .map_err(|e| at(label, e.key, e.reason))?;
        Ok(Experiment {
            resolved,
            label: label.to_string(),
            profile,
            model,
            source,
            options,
            allocator,
            quality,
            inputs,
        })
    }

    /// Builds the simulation's trace: generates it, or reads the file. For a generated trace
    /// it also draws the decode events sampled for output quality and keeps their hidden
    /// vectors.
    pub fn build_trace(&self) -> Result<SimTrace> {
        let speculative = matches!(self.options.prefetch, PrefetchKind::Speculative {});
        let trace = match &self.source {
            TraceSource::Generator {
                spec,
                seed,
                requests,
            } => {
                let g = Generator::new(spec, *seed);
                let mut w = RouteWorkload::new(&spec.meta(*seed, *requests));
                let e = spec.experts as usize;
                let l = spec.layers as usize;
                let per_request = (spec.prefill_tokens as usize + spec.decode_tokens as usize) * l;
                let decode_events: Vec<usize> = (0..*requests as usize)
                    .flat_map(|r| {
                        let first = r * per_request + spec.prefill_tokens as usize * l;
                        first..(r + 1) * per_request
                    })
                    .collect();
                let sampled =
                    sample_events(&decode_events, self.quality.samples, self.quality.seed);
                let mut hidden = Vec::with_capacity(sampled.len() * spec.hidden_dim as usize);
                let mut cursor = 0;
                let mut index = 0usize;
                let mut spec_logits = Vec::new();
                let mut ev = GeneratedEvent::default();
                let mut next = Vec::with_capacity(e);
                for r in 0..*requests {
                    let mut events = g.request(r);
                    while events
                        .try_next_event(&mut ev)
                        .map_err(|e| at(&self.label, "trace.generator", e))?
                    {
                        w.push(&ev.record);
                        if cursor < sampled.len() && sampled[cursor] == index {
                            hidden.extend_from_slice(&ev.hidden);
                            cursor += 1;
                        }
                        index += 1;
                        if speculative {
                            let l = ev.record.layer as usize;
                            if l + 1 < spec.layers as usize {
                                g.router_logits(l + 1, &ev.hidden, &mut next);
                                spec_logits.extend_from_slice(&next);
                            } else {
                                spec_logits.resize(spec_logits.len() + e, f32::NEG_INFINITY);
                            }
                        }
                    }
                }
                let mut t = SimTrace::new(w, spec_logits)
                    .map_err(|r| Error::usage(format!("{}: trace: {r}", self.label)))?;
                t.quality_events = sampled;
                t.quality_hidden = hidden;
                t
            }
            TraceSource::File(path) => {
                let w = RouteWorkload::from_trace(path)?;
                SimTrace::new(w, Vec::new())
                    .map_err(|r| Error::usage(format!("{}: {r}", path.display())))?
            }
            TraceSource::Imported(name, bytes) => {
                let reader = crate::trace::native::TraceReader::new(name.clone(), &bytes[..])?;
                let w = RouteWorkload::from_reader(reader)?;
                SimTrace::new(w, Vec::new()).map_err(|r| Error::usage(format!("{name}: {r}")))?
            }
        };
        if trace.tokens() == (0, 0) {
            return Err(at(
                &self.label,
                "trace",
                "the requests hold no tokens (no prompt and nothing generated): there is nothing to simulate",
            ));
        }
        Ok(trace)
    }

    /// The precision plan for `trace` (usage from a profiling pass over it; the measured
    /// per-expert error when the planner needs it).
    pub fn plan(&self, trace: &SimTrace) -> Result<PrecisionPlan> {
        let usage = trace.popularity();
        let allocator = self.allocator.build();
        let candidates = allocator.candidates();
        let error = if candidates.is_empty() {
            None
        } else {
            Some(
                crate::quality::expert_errors(
                    self.quality.proxy.source(),
                    self.model.n_moe_layers(),
                    self.model.n_experts,
                    &candidates,
                    self.quality.seed,
                )
                .map_err(|r| at(&self.label, "quality.weights", r))?,
            )
        };
        allocator
            .allocate(&AllocationInput {
                layers: self.model.n_moe_layers(),
                experts: self.model.n_experts,
                usage: &usage,
                params_per_expert: self.model.params_per_expert(),
                error: error.as_deref(),
            })
            .map_err(|e| at(&self.label, "precision.allocator", e.0))
    }

    /// Builds the trace and simulates.
    pub fn run(&self) -> Result<Outcome> {
        self.simulate(&self.build_trace()?)
    }

    /// The usage counts behind the setup's static choices (a static hot set, experts kept in
    /// the primary tier): `trace`'s own, or with `placement.popularity = "held-out"` those of
    /// the generator's next requests (request ids `requests..2 * requests`: the same model,
    /// requests the run does not contain).
    pub fn setup_popularity(&self, trace: &SimTrace) -> Result<Vec<u64>> {
        if self.options.placement.popularity == crate::sim::placement::Popularity::Trace {
            return Ok(trace.popularity());
        }
        let TraceSource::Generator {
            spec,
            seed,
            requests,
        } = &self.source
        else {
            return Err(at(
                &self.label,
                "placement.popularity",
                "\"held-out\" needs a generated trace (a trace file has no other requests)",
            ));
        };
        let g = Generator::new(spec, *seed);
        let e = spec.experts as usize;
        let mut counts = vec![0u64; spec.layers as usize * e];
        let mut ev = GeneratedEvent::default();
        let mut top = Vec::new();
        for r in *requests..requests.saturating_mul(2) {
            let mut events = g.request(r);
            while events
                .try_next_event(&mut ev)
                .map_err(|e| at(&self.label, "trace.generator", e))?
            {
                top_k_by(&ev.record.logits, spec.top_k as usize, &mut top);
                for &x in &top {
                    counts[ev.record.layer as usize * e + x as usize] += 1;
                }
            }
        }
        Ok(counts)
    }

    /// Simulates `trace` (from [`Experiment::build_trace`]): plans precision, runs the
    /// simulation, then measures output quality on the sampled events.
    pub fn simulate(&self, trace: &SimTrace) -> Result<Outcome> {
        let plan_start = Instant::now();
        let plan = self.plan(trace)?;
        let mut quality_wall_s = plan_start.elapsed().as_secs_f64();
        let usage = trace.popularity();
        let setup = SimSetup::new(
            &self.profile,
            &self.model,
            self.options.clone(),
            &self.setup_popularity(trace)?,
            Some(&plan),
        )
        .map_err(|e| at(&self.label, e.key, e.reason))?;
        let start = Instant::now();
        let (mut report, timeline, timeline_truncated) = crate::sim::run(&setup, trace)
            .map_err(|r| Error::usage(format!("{}: {r}", self.label)))?;
        let simulate_wall_s = start.elapsed().as_secs_f64();
        let q_start = Instant::now();
        let (output_quality, quality_note) =
            self.measure_quality(trace, &report.quality_samples)?;
        report.quality_samples.clear();
        quality_wall_s += q_start.elapsed().as_secs_f64();
        Ok(Outcome {
            report,
            timeline,
            timeline_truncated,
            setup,
            simulate_wall_s,
            restricted: trace.workload.restricted,
            plan_bits_weighted: plan.mean_bits_weighted(&usage),
            plan,
            output_quality,
            quality_note,
            quality_wall_s,
        })
    }

    fn measure_quality(
        &self,
        trace: &SimTrace,
        samples: &[QualitySample],
    ) -> Result<(Option<OutputQuality>, Option<String>)> {
        if self.quality.samples == 0 {
            return Ok((
                None,
                Some("output quality off (quality.samples = 0)".into()),
            ));
        }
        if trace.quality_events.is_empty() {
            return Ok((
                None,
                Some(
                    "output quality needs hidden vectors, which only a generated trace has; \
                     this run reports the weight-free routing metrics only"
                        .into(),
                ),
            ));
        }
        let w = &trace.workload;
        let k = w.top_k as usize;
        let d = self.quality.proxy.source().hidden();
        let mut hidden = Vec::with_capacity(samples.len() * d);
        let mut reference = Vec::with_capacity(samples.len());
        for s in samples {
            let i = trace
                .quality_events
                .binary_search(&s.event)
                .expect("the run records listed events only");
            hidden.extend_from_slice(&trace.quality_hidden[i * d..(i + 1) * d]);
            let logits = w.logits_of(s.event);
            let mut sel = crate::router::Selection::default();
            top_k_by(logits, k, &mut sel.experts);
            gate_weights(Gate::Renormalized, logits, logits, &mut sel);
            reference.push(ReferenceRoute {
                experts: sel.experts,
                weights: sel.weights,
            });
        }
        let (errors, sqnr) = crate::quality::sample_errors_and_sqnr(
            self.quality.proxy.source(),
            samples,
            &reference,
            &hidden,
        )
        .map_err(|r| at(&self.label, "quality.weights", r))?;
        let mut q = crate::quality::summarize(&errors);
        q.weight_sqnr_db = sqnr;
        Ok((Some(q), None))
    }
}

/// `n` of `events` drawn without replacement (all of them when `n` is larger), sorted; the
/// draw depends on `seed` only.
fn sample_events(events: &[usize], n: u32, seed: u64) -> Vec<usize> {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    let n = (n as usize).min(events.len());
    let mut v = events.to_vec();
    let mut rng = StdRng::seed_from_u64(crate::seed::derive_seed(seed, 0x5a3e));
    for i in 0..n {
        let j = rng.random_range(i..v.len());
        v.swap(i, j);
    }
    v.truncate(n);
    v.sort_unstable();
    v
}
