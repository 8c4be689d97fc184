//! `moesim plan`: will model M run on hardware H, and with which settings?
//!
//! A verdict from sizes alone ([`verdict`]: fits entirely, runs with offloading, streams from
//! storage, or will not run, with the reason), then a search: every placement the device can
//! run (an LRU expert cache paged into the primary unit's memory, every `--n-cpu-moe` block
//! split from the fewest that fit to all, every expert on the second unit, a static or
//! LRU-managed hot set, the per-miss rule) at every weight format with a kernel, each simulated
//! on a generated trace in the model's shape (`[trace] generator = "auto"`) with the requested
//! context (reserved KV cache) and batch. Candidates are ranked by the objective; the ones
//! llama.cpp can run get its command line.

use rayon::prelude::*;

use crate::error::Result;
use crate::experiment::spec::{CacheSection, ExperimentSpec};
use crate::experiment::{Experiment, Outcome};
use crate::gguf::mix::Mix;
use crate::hardware::HardwareProfile;
use crate::moe::MoeSpec;
use crate::moe::kv::KvFormat;
use crate::quant::format::WeightFormat;
use crate::sim::SimTrace;
use crate::sim::placement::{InPlaceLayers, PlacementMode, PlacementSpec};
use crate::sim::serving::{KvBudget, KvSpec, ServingSpec};

/// What the best setting is best at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// Decode tokens/s.
    Decode,
    /// Prompt tokens/s.
    Prefill,
    /// The geometric mean of both.
    Balanced,
}

/// The verdict's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fit {
    /// Every weight and the KV cache fit the primary unit's memory.
    FitsEntirely,
    /// The experts need the next tier (host RAM) too.
    RunsWithOffloading,
    /// The experts exceed every RAM tier: they stream from storage.
    StreamsFromStorage,
    /// Not even one token's experts, or the model at all, fit.
    WillNotRun,
}

impl Fit {
    /// The words printed.
    pub fn words(self) -> &'static str {
        match self {
            Fit::FitsEntirely => "fits entirely",
            Fit::RunsWithOffloading => "runs with offloading",
            Fit::StreamsFromStorage => "streams from storage",
            Fit::WillNotRun => "will not run",
        }
    }
}

/// The verdict at one format: its class and the reason in one line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    /// The class.
    pub fit: Fit,
    /// Why, with the sizes.
    pub reason: String,
}

fn gb(b: u64) -> String {
    crate::units::format_bytes(b as f64)
}

/// The verdict for `moe` in `format` on `profile` with `context` tokens of KV cache per request
/// and `batch` requests, from sizes alone.
pub fn verdict(
    profile: &HardwareProfile,
    moe: &MoeSpec,
    format: WeightFormat,
    context: u64,
    batch: u32,
) -> Verdict {
    let layers = moe.n_moe_layers() as u64;
    // A mix's layers differ: one token needs the largest layer's experts, the total is theirs.
    let (expert, routed) = match &moe.layer_expert_bytes {
        Some(b) => (
            b.iter().copied().max().unwrap_or(0),
            b.iter().sum::<u64>() * moe.n_experts as u64,
        ),
        None => {
            let e = moe.expert_bytes(format);
            (e, e * layers * moe.n_experts as u64)
        }
    };
    let experts = routed + moe.shared_expert_bytes(format) * moe.n_shared_experts as u64 * layers;
    let dense = format.bytes_for(moe.non_expert_params() - moe.params.shared_experts);
    let kv = moe.kv.bytes_at(context, crate::moe::kv::KvFormat::F16) * batch as u64;
    let primary = profile.compute_tier;
    let budget = |t: usize| profile.tiers[t].capacity_bytes - profile.tiers[t].reserved_bytes;
    let primary_room = budget(primary);
    let one_token = expert * moe.top_k as u64;
    // The profile's reserved bytes hold the non-expert weights and the runtime's buffers
    // (each profile says what it reserves); the KV cache and the experts share the rest.
    if kv > primary_room || dense > profile.tiers[primary].capacity_bytes - kv {
        return Verdict {
            fit: Fit::WillNotRun,
            reason: format!(
                "the non-expert weights ({}) and the KV cache ({} for {batch} x {context} tokens) do not fit the {} tier ({} beside its reserved bytes)",
                gb(dense),
                gb(kv),
                profile.tiers[primary].name,
                gb(primary_room)
            ),
        };
    }
    let cache_room = primary_room - kv;
    if cache_room < one_token {
        return Verdict {
            fit: Fit::WillNotRun,
            reason: format!(
                "one layer step needs {} of experts ({} x {}) but at most {} can be cached beside the KV cache: every token misses everything",
                gb(one_token),
                moe.top_k,
                gb(expert),
                gb(cache_room)
            ),
        };
    }
    if experts <= cache_room {
        return Verdict {
            fit: Fit::FitsEntirely,
            reason: format!(
                "all {} of experts and {} of KV cache fit the {}'s {} beside its reserved bytes (which hold the {} of other weights)",
                gb(experts),
                gb(kv),
                profile.tiers[primary].name,
                gb(primary_room),
                gb(dense)
            ),
        };
    }
    let ram: u64 = profile
        .tiers
        .iter()
        .enumerate()
        .filter(|(i, t)| *i != primary && t.holds_experts && t.kind.is_memory())
        .map(|(i, _)| budget(i))
        .sum();
    if experts <= cache_room + ram {
        return Verdict {
            fit: Fit::RunsWithOffloading,
            reason: format!(
                "{} of experts: {} fit beside the KV cache in {}, the rest in {} of host memory",
                gb(experts),
                gb(cache_room),
                profile.tiers[primary].name,
                gb(ram)
            ),
        };
    }
    let storage = profile
        .tiers
        .iter()
        .enumerate()
        .any(|(i, t)| i != primary && t.holds_experts && !t.kind.is_memory());
    if storage {
        Verdict {
            fit: Fit::StreamsFromStorage,
            reason: format!(
                "{} of experts exceed the {} of memory: the rest stream from storage at every miss",
                gb(experts),
                gb(cache_room + ram)
            ),
        }
    } else {
        Verdict {
            fit: Fit::WillNotRun,
            reason: format!(
                "{} of experts exceed the {} of memory and no storage tier holds experts",
                gb(experts),
                gb(cache_room + ram)
            ),
        }
    }
}

/// What the weights are stored in: one format for every expert, or a llama.cpp mix (whose
/// experts are timed by its default type's kernel class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quant {
    /// The format (a mix's default type).
    pub format: WeightFormat,
    /// The mix, if any.
    pub mix: Option<Mix>,
}

impl Quant {
    /// One format for every expert.
    pub fn uniform(format: WeightFormat) -> Quant {
        Quant { format, mix: None }
    }

    /// A llama.cpp mix; `None` when its default type has no moesim kernel class (IQ3_S).
    pub fn of_mix(mix: Mix) -> Option<Quant> {
        let format = mix
            .default_type()
            .name
            .to_ascii_lowercase()
            .parse::<WeightFormat>()
            .ok()?;
        Some(Quant {
            format,
            mix: Some(mix),
        })
    }
}

impl std::fmt::Display for Quant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.mix {
            Some(m) => write!(f, "{m}"),
            None => write!(f, "{}", self.format),
        }
    }
}

impl serde::Serialize for Quant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One setting tried.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Candidate {
    /// The weights: a format (`q4_k`) or a llama.cpp mix (`Q4_K_M`).
    pub format: Quant,
    /// The placement, as `[placement]` says it.
    pub placement: String,
    /// `in_place_layers` of a layer split.
    pub in_place_layers: Option<u32>,
    /// The KV cache's element format.
    pub kv_format: KvFormat,
    /// Prompt tokens per step (llama.cpp's `-ub`).
    pub ubatch: u32,
    /// Predicted decode tokens/s (one request's), prompt tokens/s and time to first token.
    pub decode_tokens_per_s: f64,
    /// Prompt tokens/s.
    pub prefill_tokens_per_s: f64,
    /// Time to first token of the planned prompt.
    pub ttft_s: f64,
    /// Bytes of the primary unit's memory used: experts kept there, the KV cache and the
    /// profile's reserved bytes (non-expert weights, buffers).
    pub primary_bytes: u64,
    /// Bytes of experts in the other tiers.
    pub other_bytes: u64,
    /// The score the objective ranks by.
    pub score: f64,
    /// The llama.cpp command line that realises it, when llama.cpp can.
    pub llama_cpp: Option<String>,
}

/// What `moesim plan` is asked.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// A hardware profile name or file.
    pub hardware: String,
    /// A model name or spec file.
    pub model: String,
    /// Context tokens per request (KV cache reserved for it).
    pub context: u64,
    /// Requests served at once.
    pub batch: u32,
    /// What to rank by.
    pub objective: Objective,
    /// Prompt and generated tokens of the simulated request.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub decode_tokens: u32,
    /// The formats and mixes to try.
    pub formats: Vec<Quant>,
    /// KV cache formats: every setting runs at the first; the best few are tried again at the
    /// others (a smaller cache leaves room for experts, at some cost in accuracy).
    pub kv_formats: Vec<KvFormat>,
    /// Micro-batch sizes (prompt tokens per step, llama.cpp's `-ub`): every setting runs at
    /// the first; the best few (after the KV stage) again at the others.
    pub ubatches: Vec<u32>,
}

/// How many of the best settings are tried again at each further KV format.
const KV_RETRIES: usize = 6;

/// The answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// Per format or mix tried, its verdict.
    pub verdicts: Vec<(Quant, Verdict)>,
    /// Every setting simulated, best first.
    pub candidates: Vec<Candidate>,
    /// Settings that could not be set up (placement, format), with the reason.
    pub skipped: Vec<String>,
}

fn experiment(req: &PlanRequest, job: &Job) -> Result<Experiment> {
    let (quant, placement, kv) = (job.quant, &job.placement, job.kv);
    let mut spec = ExperimentSpec::in_code(
        "plan",
        &req.hardware,
        &req.model,
        quant.format,
        crate::experiment::AUTO_GENERATOR,
        (req.batch, req.prompt_tokens, req.decode_tokens),
        1,
    );
    spec.model.mix = quant.mix.map(|m| m.name().to_string());
    spec.scenario.prefill_chunk_tokens = Some(job.ubatch);
    spec.placement = placement.clone();
    spec.cache = CacheSection {
        budget_fraction: Some(1.0),
        ..CacheSection::default()
    };
    spec.serving = ServingSpec {
        max_batch: req.batch,
        kv: Some(KvSpec {
            format: kv,
            tier: None,
            budget: KvBudget::Reserve,
            max_context_tokens: Some(req.context),
            prior_context_tokens: 0,
        }),
        ..ServingSpec::default()
    };
    Experiment::from_spec(spec, "moesim plan", std::path::Path::new("."))
}

/// The placements a profile can run: paging into the primary unit always; with a second unit,
/// every layer split and the in-place rules.
fn placements(profile: &HardwareProfile, blocks: u32) -> Vec<PlacementSpec> {
    let mut v = vec![PlacementSpec::default()];
    if profile.units.len() < 2 {
        return v;
    }
    let p = |mode, layers: Option<u32>, hot: Option<crate::sim::placement::HotSet>| {
        let mut s = PlacementSpec {
            mode,
            in_place_layers: layers.map(InPlaceLayers::Count),
            ..PlacementSpec::default()
        };
        if let Some(h) = hot {
            s.hot_set = h;
        }
        s
    };
    v.push(p(PlacementMode::InPlace, None, None));
    v.push(p(
        PlacementMode::HotSet,
        None,
        Some(crate::sim::placement::HotSet::Static),
    ));
    v.push(p(PlacementMode::HotSet, None, None));
    v.push(p(PlacementMode::PerMiss, None, None));
    for n in 0..=blocks {
        v.push(p(PlacementMode::Layers, Some(n), None));
    }
    v
}

fn describe(p: &PlacementSpec) -> String {
    match p.mode {
        PlacementMode::Move => {
            "LRU expert cache, misses paged in (all resident when they fit)".into()
        }
        PlacementMode::InPlace => "every routed expert on the second unit (--cpu-moe)".into(),
        PlacementMode::Layers => "layer split (--n-cpu-moe)".into(),
        PlacementMode::HotSet if p.hot_set == crate::sim::placement::HotSet::Static => {
            "static hot set, misses on the second unit".into()
        }
        PlacementMode::HotSet => "LRU hot set, misses on the second unit".into(),
        PlacementMode::PerMiss => "each miss fetched or computed in place (Fiddler)".into(),
    }
}

/// The GGUF file a setting runs: `qwen3-30b-a3b-Q4_K_M` for a mix, the bare name for a
/// uniform format (which no common file holds: requantize with `--pure`).
fn gguf_name(model: &str, q: Quant) -> String {
    match q.mix {
        Some(m) => format!("{model}-{m}"),
        None => format!("{model}-{}", q.format.name().to_ascii_uppercase()),
    }
}

/// The llama.cpp command line of a setting, when llama.cpp has one.
fn llama_cpp(job: &Job, model: &str, context: u64, batch: u32) -> Option<String> {
    let (p, fits_entirely, kv) = (&job.placement, job.fits, job.kv);
    let cache = if kv == KvFormat::F16 {
        String::new()
    } else {
        format!(" -ctk {0} -ctv {0}", kv.name())
    };
    // llama.cpp's logical batch (-b, 2048 by default) must hold the micro-batch.
    let b = if job.ubatch > 2048 {
        format!(" -b {}", job.ubatch)
    } else {
        String::new()
    };
    let base = format!(
        "llama-server -m {model}.gguf -ngl 99 -c {} -fa on{b} -ub {}{cache}",
        context * batch as u64,
        job.ubatch
    );
    let parallel = if batch > 1 {
        format!(" -np {batch}")
    } else {
        String::new()
    };
    match p.mode {
        PlacementMode::Move if fits_entirely => Some(format!("{base}{parallel}")),
        PlacementMode::Layers => match p.in_place_layers {
            Some(InPlaceLayers::Count(0)) => Some(format!("{base}{parallel}")),
            Some(InPlaceLayers::Count(n)) => Some(format!("{base} --n-cpu-moe {n}{parallel}")),
            _ => None,
        },
        PlacementMode::InPlace => Some(format!("{base} --cpu-moe{parallel}")),
        _ => None,
    }
}

/// One setting to simulate.
#[derive(Debug, Clone)]
struct Job {
    quant: Quant,
    placement: PlacementSpec,
    /// Everything fits the primary unit (loaded before serving, nothing paged).
    fits: bool,
    kv: KvFormat,
    /// Prompt tokens per step (llama.cpp's `-ub`).
    ubatch: u32,
}

impl Job {
    fn describe(&self) -> String {
        format!(
            "{} {} (KV {}, -ub {})",
            self.quant,
            describe(&self.placement),
            self.kv.name(),
            self.ubatch
        )
    }
}

/// Simulates `jobs` in parallel: the candidates (with their jobs) and the reasons of those that
/// could not be set up.
fn run_jobs(
    req: &PlanRequest,
    model: &str,
    jobs: &[Job],
    trace: Option<&SimTrace>,
) -> (Vec<(Candidate, Job)>, Vec<String>) {
    let results: Vec<std::result::Result<Candidate, String>> = jobs
        .par_iter()
        .map(|job| {
            let (format, p, fits, kv) = (&job.quant, &job.placement, &job.fits, &job.kv);
            let mut exp = experiment(req, job).map_err(|e| e.to_string())?;
            if *fits && p.mode == PlacementMode::Move {
                // Everything fits the primary unit's memory: the model is loaded there before
                // serving (as llama.cpp does), so no expert is paged in.
                let primary = exp.profile.compute_tier;
                for (i, t) in exp.profile.tiers.iter_mut().enumerate() {
                    if i != primary {
                        t.holds_experts = false;
                    }
                }
            }
            // Every setting replays the same generated requests: built once, shared.
            let o: Outcome = match trace {
                Some(t) => exp.simulate(t),
                None => exp.run(),
            }
            .map_err(|e| e.to_string())?;
            let r = &o.report;
            let s = &o.setup;
            let all_experts: u64 = s.expert_bytes.iter().sum();
            let primary = s.storage_bytes[s.compute_tier].min(all_experts)
                + s.serving.kv.as_ref().map_or(0, |k| k.reserved_bytes)
                + exp.profile.tiers[s.compute_tier].reserved_bytes;
            let other: u64 = s
                .storage_bytes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != s.compute_tier)
                .map(|(_, b)| *b)
                .sum();
            let score = match req.objective {
                Objective::Decode => r.aggregate_decode_tokens_per_s,
                Objective::Prefill => r.prefill_tokens_per_s,
                Objective::Balanced => {
                    (r.aggregate_decode_tokens_per_s * r.prefill_tokens_per_s).sqrt()
                }
            };
            Ok(Candidate {
                format: *format,
                placement: describe(p),
                in_place_layers: s.in_place.as_ref().and_then(|i| i.in_place_layers),
                kv_format: *kv,
                ubatch: job.ubatch,
                decode_tokens_per_s: r.aggregate_decode_tokens_per_s,
                prefill_tokens_per_s: r.prefill_tokens_per_s,
                ttft_s: r.ttft_mean_ns * 1e-9,
                primary_bytes: primary,
                other_bytes: other,
                score,
                llama_cpp: llama_cpp(job, &gguf_name(model, *format), req.context, req.batch),
            })
        })
        .collect();
    let mut candidates = Vec::new();
    let mut skipped = Vec::new();
    for (job, r) in jobs.iter().zip(results) {
        match r {
            Ok(c) if c.score.is_finite() => candidates.push((c, job.clone())),
            Ok(_) => skipped.push(format!("{}: no throughput", job.describe())),
            Err(e) => skipped.push(format!("{}: {e}", job.describe())),
        }
    }
    (candidates, skipped)
}

/// Runs the plan.
pub fn plan(req: &PlanRequest) -> Result<Plan> {
    let profile = crate::hardware::load(&req.hardware)?;
    let moe = crate::moe::load(&req.model)?;
    let spec_file = if req.formats.iter().any(|q| q.mix.is_some()) {
        Some(crate::moe::load_spec_file(&req.model)?.1)
    } else {
        None
    };
    let mut verdicts: Vec<(Quant, Verdict)> = Vec::new();
    for &q in &req.formats {
        let mut m = moe.clone();
        if let (Some(mix), Some(file)) = (q.mix, &spec_file) {
            m.layer_expert_bytes = Some(
                crate::gguf::mix::layer_expert_bytes(mix, file)
                    .map_err(|e| crate::error::Error::usage(format!("--mixes {mix}: {e}")))?,
            );
        }
        verdicts.push((q, verdict(&profile, &m, q.format, req.context, req.batch)));
    }
    let first_kv = req.kv_formats.first().copied().unwrap_or(KvFormat::F16);
    let first_ubatch = req.ubatches.first().copied().unwrap_or(512);
    let jobs: Vec<Job> = verdicts
        .iter()
        .filter(|(_, v)| v.fit != Fit::WillNotRun)
        .flat_map(|(f, v)| {
            placements(&profile, moe.n_layers)
                .into_iter()
                .map(move |p| Job {
                    quant: *f,
                    placement: p,
                    fits: v.fit == Fit::FitsEntirely,
                    kv: first_kv,
                    ubatch: first_ubatch,
                })
        })
        .collect();
    // The trace depends on the model, the request shape and the seed only, not on the setting.
    let trace = jobs
        .first()
        .and_then(|j| experiment(req, j).ok())
        .and_then(|e| e.build_trace().ok());
    let (mut candidates, mut skipped) = run_jobs(req, &moe.name, &jobs, trace.as_ref());
    // The best few again at each further KV format, then at each further micro-batch size.
    for stage in 0..2 {
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&a, &b| candidates[b].0.score.total_cmp(&candidates[a].0.score));
        // The best few, and the best llama.cpp can run.
        let mut best: Vec<usize> = order.iter().copied().take(KV_RETRIES).collect();
        if let Some(&i) = order.iter().find(|&&i| candidates[i].0.llama_cpp.is_some())
            && !best.contains(&i)
        {
            best.push(i);
        }
        let retry: Vec<Job> = if stage == 0 {
            req.kv_formats
                .iter()
                .skip(1)
                .flat_map(|&kv| best.iter().map(move |&i| (i, kv)))
                .flat_map(|(i, kv)| {
                    let job = Job {
                        kv,
                        ..candidates[i].1.clone()
                    };
                    // A smaller cache may leave room for one more layer of experts on the
                    // primary unit.
                    let fewer = match (job.placement.mode, &job.placement.in_place_layers) {
                        (PlacementMode::Layers, Some(InPlaceLayers::Count(n))) if *n > 0 => {
                            Some(Job {
                                placement: PlacementSpec {
                                    in_place_layers: Some(InPlaceLayers::Count(n - 1)),
                                    ..job.placement.clone()
                                },
                                ..job.clone()
                            })
                        }
                        _ => None,
                    };
                    std::iter::once(job).chain(fewer)
                })
                .collect()
        } else {
            let mut v = Vec::new();
            for &ubatch in req.ubatches.iter().skip(1) {
                for &i in &best {
                    v.push(Job {
                        ubatch,
                        ..candidates[i].1.clone()
                    });
                }
            }
            v
        };
        let (more, more_skipped) = run_jobs(req, &moe.name, &retry, trace.as_ref());
        candidates.extend(more);
        skipped.extend(more_skipped);
    }
    let mut candidates: Vec<Candidate> = candidates.into_iter().map(|(c, _)| c).collect();
    // Best first; ties go to the faster prompt, then the faster decode, then to what llama.cpp
    // can run, then the search order (formats as given, placements as listed).
    candidates.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.prefill_tokens_per_s.total_cmp(&a.prefill_tokens_per_s))
            .then(b.decode_tokens_per_s.total_cmp(&a.decode_tokens_per_s))
            .then(b.llama_cpp.is_some().cmp(&a.llama_cpp.is_some()))
    });
    Ok(Plan {
        verdicts,
        candidates,
        skipped,
    })
}
