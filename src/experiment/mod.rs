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

use crate::cache::PolicyKind;
use crate::error::{Error, InputError, Result};
use crate::hardware::HardwareProfile;
use crate::moe::MoeSpec;
use crate::router::replay::RouteWorkload;
use crate::sim::prefetch::PrefetchKind;
use crate::sim::{CacheCapacity, SimOptions, SimReport, SimSetup, SimTrace, Timeline};
use crate::trace::generate::{GeneratedEvent, Generator, GeneratorSpec};
use spec::{PrefetchName, SCHEMA_VERSION};

/// The built-in quickstart: the seed's micro-MoE on an ESP32-P4 with a generated trace.
pub const QUICKSTART: &str = include_str!("../../experiments/quickstart.toml");

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
}

fn at(label: &str, key: &str, reason: impl Into<String>) -> Error {
    Error::Input(InputError::at_key(label, key, reason))
}

/// A preset name, or a path relative to `base`.
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
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Experiment::parse(&path.display().to_string(), &text, base)
    }

    /// The built-in quickstart.
    pub fn quickstart() -> Result<Experiment> {
        Experiment::parse("quickstart (built-in)", QUICKSTART, Path::new("."))
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
            || !spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(at(
                label,
                "name",
                "must be non-empty and use only letters, digits, '-', '_' and '.' (it names a directory)",
            ));
        }
        let mut resolved = spec.clone();
        let profile_name = resolve(
            base,
            &spec.hardware.profile,
            crate::hardware::presets::get(&spec.hardware.profile).is_some(),
        );
        let profile = crate::hardware::load(&profile_name)
            .map_err(|e| at(label, "hardware.profile", e.to_string()))?;
        let model_name = resolve(
            base,
            &spec.model.spec,
            crate::moe::presets::get(&spec.model.spec).is_some(),
        );
        let model =
            crate::moe::load(&model_name).map_err(|e| at(label, "model.spec", e.to_string()))?;
        if profile
            .compute
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
        let (source, shape) = match (&t.generator, &t.file) {
            (Some(g), None) => {
                let is_preset = crate::trace::generate::PRESETS.iter().any(|(n, _)| n == g);
                let mut gspec = crate::trace::generate::load_spec(&resolve(base, g, is_preset))
                    .map_err(|e| at(label, "trace.generator", e.to_string()))?;
                if let Some(p) = t.prefill_tokens {
                    gspec.prefill_tokens = p;
                }
                if let Some(d) = t.decode_tokens {
                    gspec.decode_tokens = d;
                }
                let requests = t.requests.unwrap_or(1);
                if requests == 0 {
                    return Err(at(label, "trace.requests", "must be > 0"));
                }
                let seed = t.seed.unwrap_or(spec.seed);
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
            (None, Some(f)) => {
                for (key, v) in [
                    ("trace.requests", t.requests.is_some()),
                    ("trace.prefill_tokens", t.prefill_tokens.is_some()),
                    ("trace.decode_tokens", t.decode_tokens.is_some()),
                    ("trace.seed", t.seed.is_some()),
                ] {
                    if v {
                        return Err(at(
                            label,
                            key,
                            "applies to a generated trace only (this one reads trace.file)",
                        ));
                    }
                }
                let path = PathBuf::from(resolve(base, f, false));
                let meta = crate::trace::native::TraceReader::open(&path)
                    .map_err(|e| at(label, "trace.file", e.to_string()))?
                    .meta()
                    .clone();
                (
                    TraceSource::File(path),
                    (meta.layers, meta.experts, meta.top_k),
                )
            }
            _ => {
                return Err(at(
                    label,
                    "trace",
                    "give exactly one of `generator` and `file`",
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

        // Cache.
        let c = &spec.cache;
        let policy: PolicyKind = c
            .policy
            .parse()
            .map_err(|e: String| at(label, "cache.policy", e))?;
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
        if p.decay.is_some() && p.kind != PrefetchName::History {
            return Err(at(
                label,
                "prefetch.decay",
                "applies to kind = \"history\" only",
            ));
        }
        let prefetch = match p.kind {
            PrefetchName::None => PrefetchKind::None {},
            PrefetchName::Speculative => {
                if !matches!(source, TraceSource::Generator { .. }) {
                    return Err(at(
                        label,
                        "prefetch.kind",
                        "speculative prefetch applies the next layer's router to the hidden state, which only a generated trace has (trace files carry no hidden states); use history or oracle",
                    ));
                }
                PrefetchKind::Speculative {}
            }
            PrefetchName::History => PrefetchKind::History {
                decay: p.decay.unwrap_or(0.9),
            },
            PrefetchName::Oracle => PrefetchKind::Oracle {},
        };
        prefetch.validate().map_err(|r| at(label, "prefetch", r))?;
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
            .map_err(|r| at(label, "scenario.arrival", r))?;
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
        };
        // Resolve the setup once with a neutral popularity to report option errors now, not
        // after the trace is built.
        let n = model.n_moe_layers() as usize * model.n_experts as usize;
        SimSetup::new(&profile, &model, options.clone(), &vec![0; n])
            .map_err(|e| at(label, e.key, e.reason))?;
        Ok(Experiment {
            resolved,
            label: label.to_string(),
            profile,
            model,
            source,
            options,
        })
    }

    /// Builds the simulation's trace: generates it, or reads the file.
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
                let mut spec_logits = Vec::new();
                let mut ev = GeneratedEvent::default();
                let mut next = Vec::with_capacity(e);
                for r in 0..*requests {
                    let mut events = g.request(r);
                    while events.next_event(&mut ev) {
                        w.push(&ev.record);
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
                SimTrace::new(w, spec_logits)
                    .map_err(|r| Error::usage(format!("{}: trace: {r}", self.label)))?
            }
            TraceSource::File(path) => {
                let w = RouteWorkload::from_trace(path)?;
                SimTrace::new(w, Vec::new())
                    .map_err(|r| Error::usage(format!("{}: {r}", path.display())))?
            }
        };
        Ok(trace)
    }

    /// Builds the trace and simulates.
    pub fn run(&self) -> Result<Outcome> {
        self.simulate(&self.build_trace()?)
    }

    /// Simulates `trace` (from [`Experiment::build_trace`]).
    pub fn simulate(&self, trace: &SimTrace) -> Result<Outcome> {
        let setup = SimSetup::new(
            &self.profile,
            &self.model,
            self.options.clone(),
            &trace.popularity(),
        )
        .map_err(|e| at(&self.label, e.key, e.reason))?;
        let start = Instant::now();
        let (report, timeline, timeline_truncated) = crate::sim::run(&setup, trace);
        let simulate_wall_s = start.elapsed().as_secs_f64();
        Ok(Outcome {
            report,
            timeline,
            timeline_truncated,
            setup,
            simulate_wall_s,
            restricted: trace.workload.restricted,
        })
    }
}
