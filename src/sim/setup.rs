//! What the simulator needs to know, resolved once from a hardware profile, a model spec and the
//! run's options: every duration in integer nanoseconds, every size in bytes, where each expert
//! lives, and the link chain that brings it to the compute tier.
//!
//! Conventions (documented for users in README.md):
//! - A MoE layer step runs the layer's non-expert work (attention, norms, dense FFN and the
//!   model's extra parameters, spread evenly over the MoE layers), then the router's gate GEMV
//!   (`experts × hidden` MACs) plus the router's extra operations, then the experts.
//! - Compute rates come from the profile: expert kernels at the format's class rate, everything
//!   else at `dense_weights_per_s`; one scalar router or predictor operation costs as much as
//!   one dense weight. Every duration is rounded up to a whole nanosecond.
//! - A transfer hop of `b` bytes on a link costs `latency + ceil(b / g) · g / bandwidth`,
//!   rounded up to a whole nanosecond; a chain of links is store-and-forward.
//! - Each expert is stored once below the compute tier: the expert-holding tiers between the
//!   compute tier and the slowest one (home) take the most used experts of the trace, fastest
//!   tier first (a static placement, as an offline profiling pass would do), and home holds the
//!   rest. Stored copies are never removed, so evicting from the compute tier is free. A
//!   profile whose compute tier is its home (execute-in-place) loads nothing.
//! - A precision plan gives each routed expert its own format (bytes and kernel rate); with
//!   dynamic precision or low-precision-on-miss, home stores a copy of every expert in every
//!   format of the precision ladder, and the storage report counts them all.
//! - Shared experts stay resident in the compute tier when its budget holds them (their bytes
//!   come off the cache budget); otherwise they are streamed from home at every layer.

use std::fmt;

use crate::cache::PolicyKind;
use crate::cache::replay::{BetweenRequests, Scope};
use crate::engine::TimeNs;
use crate::hardware::HardwareProfile;
use crate::moe::MoeSpec;
use crate::precision::dynamic::{Lowering, PrecisionTimeline};
use crate::precision::{DynamicSpec, LowOnMissSpec, PrecisionPlan};
use crate::quant::format::WeightFormat;
use crate::router::{GateWeights, RouterKind};
use crate::units::ceil_ns;

use super::arrival::ArrivalKind;
use super::placement::{HotSet, InPlaceLayers, PlacementMode, PlacementSpec};
use super::prefetch::PrefetchKind;

/// How much of the compute tier the expert cache may use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CacheCapacity {
    /// Experts per layer (shared scope: times the number of layers).
    Experts(f64),
    /// Total bytes over all caches (per-layer scope: split evenly over the layers).
    Bytes(u64),
    /// A fraction of the compute tier's expert budget (after shared experts).
    BudgetFraction(f64),
}

/// What happens to a prefetched expert that the router did not select at the layer it was
/// fetched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnWrongPrefetch {
    /// Cancel it if its transfer has not started; otherwise it stays cached.
    #[default]
    Cancel,
    /// Let it complete and stay cached.
    Keep,
}

/// The options of one simulation, validated.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Storage format of every routed expert (uniform precision).
    pub format: WeightFormat,
    /// One cache per layer, or one shared.
    pub scope: Scope,
    /// Cache capacity.
    pub capacity: CacheCapacity,
    /// Eviction policy.
    pub policy: PolicyKind,
    /// Cache state between requests (router state is always kept).
    pub between: BetweenRequests,
    /// The router.
    pub router: RouterKind,
    /// Gate-weight mode.
    pub gate: GateWeights,
    /// The prefetch strategy.
    pub prefetch: PrefetchKind,
    /// Experts prefetched per layer step (default: top-k).
    pub prefetch_count: Option<u32>,
    /// Wrong prefetches.
    pub on_wrong_prefetch: OnWrongPrefetch,
    /// Request arrivals.
    pub arrival: ArrivalKind,
    /// Record a timeline (Chrome trace events).
    pub timeline: bool,
    /// Seed of every random draw of the run (arrivals).
    pub seed: u64,
    /// Run-time precision changes.
    pub precision: PrecisionOptions,
    /// Where experts run (`[placement]`).
    pub placement: PlacementSpec,
    /// Prompt tokens per prefill step (default: the whole prompt).
    pub prefill_chunk_tokens: Option<u32>,
    /// Batching, the KV cache and speculative decoding (`[serving]`).
    pub serving: super::serving::ServingSpec,
}

/// Run-time precision changes (`[precision.dynamic]` and `[precision.low_on_miss]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrecisionOptions {
    /// Thermal, battery and memory-pressure timeline.
    pub dynamic: Option<DynamicSpec>,
    /// Fetch a low-bit copy for low-weight misses.
    pub low_on_miss: Option<LowOnMissSpec>,
}

/// A format's cost per expert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FormatCost {
    /// The format.
    pub format: WeightFormat,
    /// Bytes of one expert.
    pub bytes: u64,
    /// Kernel time of one expert for one token (batch 1: bound by reading its weights).
    pub compute_ns: TimeNs,
    /// Arithmetic time per token at the unit's peak (the roofline's compute roof).
    pub mac_ns: TimeNs,
}

/// Dynamic precision, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct SimPrecision {
    /// The ladder, fewest bits first.
    pub ladder: Vec<FormatCost>,
    /// Each expert's planned ladder step.
    pub plan_step: Vec<u8>,
    /// The minimum step.
    pub min_step: u8,
    /// The lowering over time.
    pub timeline: PrecisionTimeline,
    /// Low precision on miss: gate-weight threshold and the low copy's step.
    pub low_on_miss: Option<(f32, u8)>,
}

impl SimPrecision {
    /// The step of expert `g` under `lowering`.
    pub fn target(&self, g: usize, lowering: Lowering) -> u8 {
        match lowering {
            Lowering::Steps(k) => self.plan_step[g].saturating_sub(k).max(self.min_step),
            Lowering::ToMinimum => self.min_step,
        }
    }
}

/// A problem resolving the setup: the option it concerns and why.
#[derive(Debug, Clone, PartialEq)]
pub struct SetupError {
    /// Dotted key of the option (in the experiment file).
    pub key: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

fn err<T>(key: &'static str, reason: impl Into<String>) -> Result<T, SetupError> {
    Err(SetupError {
        key,
        reason: reason.into(),
    })
}

/// A memory tier as the simulator sees it.
#[derive(Debug, Clone)]
pub struct SimTier {
    /// Name.
    pub name: String,
    /// Energy per byte read or written.
    pub energy_pj_per_byte: f64,
    /// Read bandwidth shared by the tier's readers (hops out of it, the in-place unit's
    /// kernels), when they can ask for more than it gives; `None`: they never can, and each
    /// runs at its own speed.
    pub shared_read_bandwidth_bytes_per_s: Option<f64>,
}

/// A link as the simulator sees it.
#[derive(Debug, Clone)]
pub struct SimLink {
    /// Source tier.
    pub from: usize,
    /// Destination tier.
    pub to: usize,
    /// Latency to the first byte.
    pub latency_ns: f64,
    /// Transfer granularity.
    pub granularity_bytes: u64,
    /// Bandwidth of one channel.
    pub bandwidth_bytes_per_s: f64,
    /// Concurrent transfers.
    pub channels: u32,
    /// The largest request served in one go (`hardware::Link::request_bytes`; none: one request
    /// per hop).
    pub request_bytes: Option<u64>,
    /// How hop times vary: each hop's time is multiplied by a factor drawn from it (none: fixed).
    pub time_distribution: Option<crate::hardware::time_distribution::TimeDistribution>,
}

impl SimLink {
    /// Duration of one hop of `bytes`: `ceil(requests · latency + ceil(b / g) · g / bandwidth)`
    /// ns.
    #[inline]
    pub fn hop_ns(&self, bytes: u64) -> TimeNs {
        let rounded = bytes.div_ceil(self.granularity_bytes) * self.granularity_bytes;
        ceil_ns(self.latency_of(bytes) + rounded as f64 * 1e9 / self.bandwidth_bytes_per_s)
    }

    /// The latency a hop of `bytes` pays: once per request.
    #[inline]
    pub fn latency_of(&self, bytes: u64) -> f64 {
        crate::hardware::requests(bytes, self.request_bytes) as f64 * self.latency_ns
    }
}

/// Shared experts of one layer.
#[derive(Debug, Clone, Copy)]
pub struct SharedExperts {
    /// Bytes of the layer's shared experts.
    pub bytes: u64,
    /// Compute of one token (batch 1).
    pub compute_ns: TimeNs,
    /// Arithmetic time per token at the dense peak.
    pub mac_ns: TimeNs,
    /// MACs per token.
    pub macs: u64,
    /// Whether they stay resident in the compute tier.
    pub resident: bool,
}

/// Everything the simulator needs, resolved.
#[derive(Debug, Clone)]
pub struct SimSetup {
    /// MoE layers.
    pub layers: u32,
    /// Routed experts per layer.
    pub experts: u32,
    /// Experts selected per token.
    pub top_k: u32,
    /// Hidden width.
    pub hidden: u64,
    /// Per (layer, expert), `layer * experts + expert`: its planned format.
    pub expert_format: Vec<WeightFormat>,
    /// Per (layer, expert): stored bytes in its planned format.
    pub expert_bytes: Vec<u64>,
    /// Per (layer, expert): kernel time for one token on the primary unit.
    pub expert_compute_ns: Vec<TimeNs>,
    /// Per (layer, expert): arithmetic time per token at the primary unit's peak.
    pub expert_mac_ns: Vec<TimeNs>,
    /// Per (layer, expert): MACs per token.
    pub expert_macs: Vec<u64>,
    /// Per (layer, expert): the tier holding its home copy.
    pub placement: Vec<u8>,
    /// Shared experts of each layer, if the model has any.
    pub shared: Option<SharedExperts>,
    /// Non-expert compute of one token per layer.
    pub dense_ns: TimeNs,
    /// Non-expert arithmetic per token per layer at the dense peak.
    pub dense_mac_ns: TimeNs,
    /// Gate arithmetic per token at the dense peak.
    pub gate_mac_ns: TimeNs,
    /// Fixed cost of one kernel launch on the primary unit.
    pub launch_ns: TimeNs,
    /// Time the primary unit takes to resume after a stall, from the arrival that ends it.
    pub wake_ns: TimeNs,
    /// Time the primary unit spends issuing a transfer while no link moves anything.
    pub issue_ns: TimeNs,
    /// Non-expert MACs per token per layer.
    pub dense_macs: u64,
    /// Non-expert weight bytes read per layer step.
    pub dense_bytes: u64,
    /// The gate GEMV per token.
    pub gate_ns: TimeNs,
    /// Gate MACs per token.
    pub gate_macs: u64,
    /// Time of one scalar router or predictor operation (fractional; rounded per call).
    pub op_ns: f64,
    /// The LM head per emitted token.
    pub head_ns: TimeNs,
    /// LM-head arithmetic per token at the dense peak.
    pub head_mac_ns: TimeNs,
    /// LM-head MACs per emitted token.
    pub head_macs: u64,
    /// LM-head weight bytes per emitted token.
    pub head_bytes: u64,
    /// Tiers, fastest first.
    pub tiers: Vec<SimTier>,
    /// Links.
    pub links: Vec<SimLink>,
    /// Per tier, the links from it to the compute tier (empty for the compute tier itself and
    /// for tiers with no chain).
    pub paths: Vec<Vec<u16>>,
    /// The tier kernels read from.
    pub compute_tier: usize,
    /// The slowest expert-holding tier (shared experts stream from it).
    pub home_tier: usize,
    /// Energy per MAC.
    pub energy_pj_per_mac: f64,
    /// Static power, charged over simulated time (0 when the profile states none).
    pub static_power_w: f64,
    /// Bytes of each cache.
    pub cache_bytes: u64,
    /// Number of caches (layers in per-layer scope, 1 when shared).
    pub n_caches: u32,
    /// The compute tier's expert budget (before shared experts).
    pub compute_budget_bytes: u64,
    /// Dynamic precision and low-precision-on-miss, if on.
    pub precision: Option<SimPrecision>,
    /// Bytes of routed-expert copies stored in each tier (the compute tier: its cache, or
    /// every expert when it is home).
    pub storage_bytes: Vec<u64>,
    /// Of those, the bytes of extra precision copies (dynamic precision, low-on-miss).
    pub extra_copy_bytes: u64,
    /// Expert kernels take `1 + this` times as long while any link transfers, per compute
    /// class (indexed as `ComputeClass::ALL`).
    pub expert_slowdown_while_transferring: [f64; 6],
    /// The first kernel on an expert after it arrives takes `1 + this` times as long, per
    /// compute class (indexed as `ComputeClass::ALL`).
    pub expert_slowdown_after_load: [f64; 6],
    /// The primary unit's last-level cache for expert weights, if its profile states one.
    pub weights_cache: Option<SimWeightsCache>,
    /// Experts computed where they are stored, when the placement says so.
    pub in_place: Option<InPlace>,
    /// The runtime's fixed cost of every layer step on the primary unit (0 for `ideal`).
    pub layer_overhead_ns: TimeNs,
    /// The runtime's fixed cost of every token, paid with the LM head (0 for `ideal`).
    pub token_overhead_ns: TimeNs,
    /// The primary compute unit's name.
    pub primary_unit: String,
    /// Batching, the KV cache and speculative decoding, resolved.
    pub serving: super::serving::Serving,
    /// The options.
    pub options: SimOptions,
}

/// The primary unit's last-level cache for expert weights: a kernel on an expert whose last
/// kernel ended within `capacity_bytes` of expert weights computed since runs in
/// `time_factor` times its memory time (the uncached rate over the cached one, per compute
/// class, indexed as `ComputeClass::ALL`).
#[derive(Debug, Clone, PartialEq)]
pub struct SimWeightsCache {
    /// The cache's capacity for expert weights, as `replacement` reads it.
    pub capacity_bytes: u64,
    /// How weights leave the cache.
    pub replacement: crate::hardware::Replacement,
    /// Under random replacement, the mean time cached weights survive other tenants'
    /// evictions (`hardware::WeightsCache::lifetime_ns`).
    pub lifetime_ns: Option<f64>,
    /// Memory time on cached weights over memory time from the compute tier.
    pub time_factor: [f64; 6],
    /// Transfers into the compute tier by how recently their destination was computed on
    /// (`hardware::WeightsCache::landing`).
    pub landing: Vec<(u64, f64)>,
}

impl SimWeightsCache {
    /// From a unit's figures.
    pub fn of(c: &crate::hardware::Compute) -> Option<SimWeightsCache> {
        let w = c.weights_cache.as_ref()?;
        let mut time_factor = [1.0; 6];
        for (i, f) in time_factor.iter_mut().enumerate() {
            *f = c.expert_weights_per_s[i] / w.expert_weights_per_s[i];
        }
        Some(SimWeightsCache {
            capacity_bytes: w.capacity_bytes,
            replacement: w.replacement,
            lifetime_ns: w.lifetime_ns,
            time_factor,
            landing: w.landing.clone(),
        })
    }

    /// The rule the simulator's cache state follows.
    pub(super) fn rule(&self) -> super::weights_cache::CacheRule {
        super::weights_cache::CacheRule {
            replacement: self.replacement,
            capacity_bytes: self.capacity_bytes,
            lifetime_ns: self.lifetime_ns,
        }
    }

    /// The memory time of a kernel on cached weights in `format` whose uncached memory time is
    /// `memory_ns`.
    pub fn cached_ns(&self, memory_ns: TimeNs, format: WeightFormat) -> TimeNs {
        let Some(class) = format.compute_class() else {
            return memory_ns;
        };
        (memory_ns as f64 * self.time_factor[crate::hardware::class_index(class)]).ceil() as TimeNs
    }
}

/// The unit that computes experts in place, and what it costs to use it.
#[derive(Debug, Clone)]
pub struct InPlace {
    /// The placement mode.
    pub mode: PlacementMode,
    /// The unit's name.
    pub unit: String,
    /// The tier it reads weights from.
    pub tier: usize,
    /// Per (layer, expert): whether it always runs in place (`in-place`, `layers`, static hot
    /// set); otherwise it runs in place only on a miss (`hot-set`, `per-miss`).
    pub always: Vec<bool>,
    /// Per (layer, expert): kernel time for one token on this unit.
    pub expert_compute_ns: Vec<TimeNs>,
    /// Per (layer, expert): arithmetic time per token at this unit's peak.
    pub expert_mac_ns: Vec<TimeNs>,
    /// Fixed cost of one kernel launch on this unit.
    pub launch_ns: TimeNs,
    /// Energy per MAC on this unit.
    pub energy_pj_per_mac: f64,
    /// Links carrying activations to the unit, and back.
    pub to_unit: Vec<SimLink>,
    /// Links carrying the results back to the primary unit.
    pub to_primary: Vec<SimLink>,
    /// Activation bytes per token crossing each way (hidden × bytes per value).
    pub activation_bytes_per_token: u64,
    /// Synchronisation cost per layer step that uses the unit.
    pub sync_ns: TimeNs,
    /// `per-miss`: fetch when a kernel has at least this many tokens (else predicted finish).
    pub copy_min_tokens: Option<u32>,
    /// `hot-set` with a policy-managed cache: a miss the policy admits is also copied.
    pub load_admitted: bool,
    /// `layers` mode: the blocks whose experts run in place (resolved when given as `"fit"`).
    pub in_place_layers: Option<u32>,
}

impl InPlace {
    /// Time to move `tokens` tokens' activations over `path` (store-and-forward).
    pub fn activation_ns(&self, path: &[SimLink], tokens: u32) -> TimeNs {
        let bytes = tokens as u64 * self.activation_bytes_per_token;
        path.iter().map(|l| l.hop_ns(bytes)).sum()
    }

    /// Kernel time of expert `g` on `tokens` tokens on this unit.
    #[inline]
    pub fn kernel_ns(&self, g: usize, tokens: u32) -> TimeNs {
        roofline_ns(
            self.launch_ns,
            self.expert_compute_ns[g],
            self.expert_mac_ns[g],
            tokens,
        )
    }
}

/// A kernel on `tokens` tokens: `launch + max(memory time, tokens · arithmetic time)`. With
/// no stated peak (`mac_ns = memory_ns`) and no launch cost, `tokens · memory_ns`.
#[inline]
pub fn roofline_ns(launch_ns: TimeNs, memory_ns: TimeNs, mac_ns: TimeNs, tokens: u32) -> TimeNs {
    launch_ns + memory_ns.max(tokens as TimeNs * mac_ns)
}

impl SimSetup {
    /// A kernel on the primary unit.
    #[inline]
    pub fn kernel_ns(&self, memory_ns: TimeNs, mac_ns: TimeNs, tokens: u32) -> TimeNs {
        roofline_ns(self.launch_ns, memory_ns, mac_ns, tokens)
    }

    /// How much slower a kernel on weights in `format` runs while a link transfers.
    pub fn slowdown_while_transferring(&self, format: WeightFormat) -> f64 {
        format.compute_class().map_or(0.0, |class| {
            self.expert_slowdown_while_transferring[crate::hardware::class_index(class)]
        })
    }

    /// Time added to the first kernel (per token) on a copy in `format` after it arrives;
    /// negative when the arrival leaves the weights warm (the kernel is shorter).
    pub fn after_load_ns(&self, compute_ns: TimeNs, format: WeightFormat) -> i64 {
        let Some(class) = format.compute_class() else {
            return 0;
        };
        let f = self.expert_slowdown_after_load[crate::hardware::class_index(class)];
        (compute_ns as f64 * f).ceil() as i64
    }

    /// The kernel time for one token on weights in `format` held in the unit's last-level
    /// cache, whose time from the compute tier is `compute_ns` (that, without a weights cache).
    pub fn cached_ns(&self, compute_ns: TimeNs, format: WeightFormat) -> TimeNs {
        self.weights_cache
            .as_ref()
            .map_or(compute_ns, |w| w.cached_ns(compute_ns, format))
    }

    /// Resolves `options` for `moe` on `profile`. `popularity[layer * experts + e]` is how
    /// often each expert is used in the trace (for the static placement in intermediate tiers).
    /// `plan` gives each routed expert its format (default: every expert in `options.format`).
    pub fn new(
        profile: &HardwareProfile,
        moe: &MoeSpec,
        options: SimOptions,
        popularity: &[u64],
        plan: Option<&PrecisionPlan>,
    ) -> Result<SimSetup, SetupError> {
        let layers = moe.n_moe_layers();
        let experts = moe.n_experts;
        let n_objects = layers as usize * experts as usize;
        assert_eq!(
            popularity.len(),
            n_objects,
            "popularity per (layer, expert)"
        );
        let format = options.format;
        let Some(rate) = profile.compute().format_weights_per_s(format) else {
            return err(
                "model.format",
                "f32 is the untimed quality reference; pick a deployable format",
            );
        };
        let per_expert_params = moe.params_per_expert();
        let cost_of = |f: WeightFormat| -> Result<FormatCost, SetupError> {
            let Some(rate) = profile.compute().format_weights_per_s(f) else {
                return err(
                    "precision",
                    format!("{f} is the untimed quality reference; pick a deployable format"),
                );
            };
            let class = f.compute_class().expect("a timed format has a class");
            Ok(FormatCost {
                format: f,
                bytes: moe.expert_bytes(f),
                compute_ns: ceil_ns(per_expert_params as f64 * 1e9 / rate),
                mac_ns: ceil_ns(
                    per_expert_params as f64 * 1e9 / profile.compute().peak_macs_per_s(class),
                ),
            })
        };
        let expert_format = match plan {
            Some(p) => {
                assert_eq!(p.formats.len(), n_objects, "a format per routed expert");
                p.formats.clone()
            }
            None => vec![format; n_objects],
        };
        let mut costs: Vec<FormatCost> = Vec::new();
        for &f in &expert_format {
            if !costs.iter().any(|c| c.format == f) {
                costs.push(cost_of(f)?);
            }
        }
        let cost = |f: WeightFormat| *costs.iter().find(|c| c.format == f).expect("listed");
        let mut expert_bytes: Vec<u64> = expert_format.iter().map(|&f| cost(f).bytes).collect();
        let mut expert_compute_ns: Vec<TimeNs> =
            expert_format.iter().map(|&f| cost(f).compute_ns).collect();
        // A model read from a GGUF file: experts in the run's format are the file's own copies,
        // with each layer's exact bytes (its mix of formats); their kernels read those bytes at
        // the rate the format's class implies (the profile's rates are bandwidth over bytes per
        // weight).
        if let Some(layer_bytes) = &moe.layer_expert_bytes {
            for g in 0..n_objects {
                if expert_format[g] == format {
                    let b = layer_bytes[g / experts as usize];
                    let c = cost(format);
                    expert_compute_ns[g] =
                        ceil_ns(c.compute_ns as f64 * b as f64 / c.bytes.max(1) as f64);
                    expert_bytes[g] = b;
                }
            }
        }
        let expert_mac_ns: Vec<TimeNs> = expert_format.iter().map(|&f| cost(f).mac_ns).collect();
        let mean_expert_bytes = (expert_bytes.iter().sum::<u64>() / n_objects.max(1) as u64).max(1);

        // Dynamic precision: the ladder every expert can be fetched in.
        let precision = resolve_precision(&options.precision, &expert_format, &cost_of)?;
        // Bytes home stores for each expert (every ladder copy when precision changes at run
        // time).
        let stored_bytes = |g: usize| -> u64 {
            match &precision {
                Some(p) => p.ladder.iter().map(|c| c.bytes).sum(),
                None => expert_bytes[g],
            }
        };
        let compute_tier = profile.compute_tier;
        let home = profile.home_tier();
        let mut serving = super::serving::resolve(&options.serving, profile, moe)
            .map_err(|(key, reason)| SetupError { key, reason })?;
        if (serving.max_batch > 1 || serving.speculative.is_some())
            && options.prefetch != (PrefetchKind::None {})
        {
            return err(
                "prefetch.kind",
                "prefetching is modelled for one token per step; set serving.max_batch = 1 and leave out serving.speculative",
            );
        }
        // A reserved KV cache comes off its tier's expert budget before anything is placed.
        let kv_reserved = |t: usize| -> u64 {
            serving
                .kv
                .as_ref()
                .filter(|k| k.tier == t)
                .map_or(0, |k| k.reserved_bytes)
        };
        let expert_budget = |t: usize| -> u64 {
            profile.tiers[t]
                .expert_budget_bytes()
                .saturating_sub(kv_reserved(t))
        };
        let compute_budget = expert_budget(compute_tier);

        // Shared experts first: they come off the cache budget when they fit.
        let shared = (moe.n_shared_experts > 0).then(|| {
            let bytes = moe.n_shared_experts as u64 * moe.shared_expert_bytes(format);
            let params = moe.n_shared_experts as u64 * moe.params_per_shared_expert();
            SharedExperts {
                bytes,
                compute_ns: ceil_ns(params as f64 * 1e9 / rate),
                mac_ns: ceil_ns(
                    params as f64 * 1e9
                        / profile.compute().peak_macs_per_s(
                            format.compute_class().expect("a timed format has a class"),
                        ),
                ),
                macs: params,
                resident: home == compute_tier || bytes * layers as u64 <= compute_budget,
            }
        });
        let shared_resident_bytes = shared
            .filter(|s| s.resident)
            .map_or(0, |s| s.bytes * layers as u64);
        let cache_budget = compute_budget - shared_resident_bytes;
        let n_caches = if options.scope == Scope::PerLayer {
            layers
        } else {
            1
        };
        let total_cache_bytes = match options.capacity {
            CacheCapacity::Experts(n) => {
                if !(n.is_finite() && n >= 0.0) {
                    return err("cache.capacity_experts", "must be a number >= 0");
                }
                (n * mean_expert_bytes as f64).floor() as u64 * layers as u64
            }
            CacheCapacity::Bytes(b) => b,
            CacheCapacity::BudgetFraction(f) => {
                if !(f.is_finite() && (0.0..=1.0).contains(&f)) {
                    return err("cache.budget_fraction", "must be in [0, 1]");
                }
                (f * cache_budget as f64).floor() as u64
            }
        };
        if total_cache_bytes > cache_budget {
            return err(
                "cache",
                format!(
                    "the cache needs {} but the {} tier of {} has {} for routed experts{}{}",
                    crate::units::format_bytes(total_cache_bytes as f64),
                    profile.tiers[compute_tier].name,
                    profile.name,
                    crate::units::format_bytes(cache_budget as f64),
                    if shared_resident_bytes > 0 {
                        " after the resident shared experts"
                    } else {
                        ""
                    },
                    match kv_reserved(compute_tier) {
                        0 => String::new(),
                        kv => format!(
                            " and the {} reserved for the KV cache (serving.kv: max_batch x max_context_tokens)",
                            crate::units::format_bytes(kv as f64)
                        ),
                    }
                ),
            );
        }
        let cache_bytes = total_cache_bytes / n_caches as u64;

        // Static placement: the expert-holding tiers between the compute tier and the home tier
        // take the most used experts, fastest tier first; the home tier holds the rest.
        let mut placement = vec![home as u8; n_objects];
        let mut storage_bytes = vec![0u64; profile.tiers.len()];
        if home == compute_tier {
            // The compute tier holds every expert: nothing is ever loaded.
            placement.iter_mut().for_each(|p| *p = compute_tier as u8);
            let all: u64 = (0..n_objects).map(stored_bytes).sum();
            if all > compute_budget {
                return err(
                    "hardware",
                    format!(
                        "{} cannot store the model's experts in {}: they need {}, it holds {}",
                        profile.name,
                        profile.tiers[compute_tier].name,
                        crate::units::format_bytes(all as f64),
                        crate::units::format_bytes(compute_budget as f64)
                    ),
                );
            }
            storage_bytes[compute_tier] = all;
        } else {
            storage_bytes[compute_tier] = cache_bytes * n_caches as u64;
            let mut order: Vec<usize> = (0..n_objects).collect();
            order.sort_by(|&a, &b| popularity[b].cmp(&popularity[a]).then(a.cmp(&b)));
            let mut next = 0;
            #[allow(clippy::needless_range_loop)]
            for t in compute_tier + 1..home {
                let tier = &profile.tiers[t];
                if !tier.holds_experts {
                    continue;
                }
                let mut left = expert_budget(t);
                while next < n_objects && stored_bytes(order[next]) <= left {
                    let o = order[next];
                    left -= stored_bytes(o);
                    storage_bytes[t] += stored_bytes(o);
                    placement[o] = t as u8;
                    next += 1;
                }
            }
            let rest_bytes: u64 = order[next..].iter().map(|&o| stored_bytes(o)).sum();
            let home_budget = expert_budget(home);
            if rest_bytes > home_budget {
                return err(
                    "hardware",
                    format!(
                        "{} cannot store the model's experts: {} left for the home tier {}, which holds {}",
                        profile.name,
                        crate::units::format_bytes(rest_bytes as f64),
                        profile.tiers[home].name,
                        crate::units::format_bytes(home_budget as f64)
                    ),
                );
            }
            storage_bytes[home] = rest_bytes;
        }
        // Placement modes that compute experts where they are stored: every expert not kept
        // on the primary unit is stored on the in-place unit's tier.
        let pl = &options.placement;
        pl.validate()
            .map_err(|(key, reason)| SetupError { key, reason })?;
        let mut in_place_plan: Option<(usize, Vec<bool>, bool)> = None;
        let mut fitted_layers: Option<u32> = None;
        let mut cache_bytes = cache_bytes;
        if pl.mode != PlacementMode::Move {
            let names = || profile.unit_names();
            let unit = match &pl.unit {
                Some(name) => match profile.unit_index(name) {
                    Some(0) => {
                        return err(
                            "placement.unit",
                            format!(
                                "`{name}` is the primary unit of {}; experts run in place on another unit",
                                profile.name
                            ),
                        );
                    }
                    Some(u) => u,
                    None => {
                        return err(
                            "placement.unit",
                            format!(
                                "{} has no compute unit `{name}` (units: {})",
                                profile.name,
                                names()
                            ),
                        );
                    }
                },
                None => match profile.units.iter().skip(1).position(|u| u.tier == home) {
                    Some(i) => i + 1,
                    None if profile.units.len() > 1 => 1,
                    None => {
                        return err(
                            "placement.mode",
                            format!(
                                "mode = \"{}\" computes experts in place, but {} has one compute unit ({}); declare [[compute_units]] with a unit on the tier that stores the experts",
                                pl.mode.name(),
                                profile.name,
                                names()
                            ),
                        );
                    }
                },
            };
            let ut = profile.units[unit].tier;
            if precision.is_some() {
                return err(
                    "placement.mode",
                    "dynamic precision and low precision on miss need mode = \"move\"",
                );
            }
            // Which experts stay on the primary unit, resident.
            let mut resident = vec![false; n_objects];
            match pl.mode {
                PlacementMode::Layers => {
                    let layer_bytes = |l: usize| -> u64 {
                        let e = experts as usize;
                        expert_bytes[l * e..(l + 1) * e].iter().sum()
                    };
                    let n = match pl.in_place_layers.expect("validated") {
                        InPlaceLayers::Count(n) => n,
                        // The fewest blocks in place that leave the rest fitting.
                        InPlaceLayers::Fit => (0..=moe.n_layers)
                            .find(|&n| {
                                let kept: u64 = moe
                                    .moe_layers
                                    .iter()
                                    .enumerate()
                                    .filter(|&(_, &b)| b >= n)
                                    .map(|(l, _)| layer_bytes(l))
                                    .sum();
                                kept <= cache_budget
                            })
                            .expect("with every block in place nothing is kept"),
                    };
                    fitted_layers = Some(n);
                    if n > moe.n_layers {
                        return err(
                            "placement.in_place_layers",
                            format!("{n} is above the model's {} blocks", moe.n_layers),
                        );
                    }
                    for (l, &block) in moe.moe_layers.iter().enumerate() {
                        if block >= n {
                            let e = experts as usize;
                            resident[l * e..(l + 1) * e]
                                .iter_mut()
                                .for_each(|r| *r = true);
                        }
                    }
                    let bytes: u64 = (0..n_objects)
                        .filter(|&g| resident[g])
                        .map(|g| expert_bytes[g])
                        .sum();
                    if bytes > cache_budget {
                        let kept = moe.moe_layers.iter().filter(|&&b| b >= n).count();
                        return err(
                            "placement.in_place_layers",
                            format!(
                                "{n} leaves the experts of {kept} MoE layers on {}: they need {}, but its tier {} has {} for routed experts{}",
                                profile.units[0].name,
                                crate::units::format_bytes(bytes as f64),
                                profile.tiers[compute_tier].name,
                                crate::units::format_bytes(cache_budget as f64),
                                if shared_resident_bytes > 0 {
                                    " after the resident shared experts"
                                } else {
                                    ""
                                }
                            ),
                        );
                    }
                }
                PlacementMode::HotSet if pl.hot_set == HotSet::Static => {
                    // The most used experts, as many as the cache's bytes hold.
                    let mut order: Vec<usize> = (0..n_objects).collect();
                    order.sort_by(|&a, &b| popularity[b].cmp(&popularity[a]).then(a.cmp(&b)));
                    let mut left = total_cache_bytes;
                    for g in order {
                        if expert_bytes[g] <= left {
                            left -= expert_bytes[g];
                            resident[g] = true;
                        }
                    }
                }
                _ => {}
            }
            let always_in_place = matches!(pl.mode, PlacementMode::InPlace | PlacementMode::Layers)
                || (pl.mode == PlacementMode::HotSet && pl.hot_set == HotSet::Static);
            let mut on_unit = 0u64;
            let mut on_primary = 0u64;
            for g in 0..n_objects {
                if resident[g] {
                    placement[g] = compute_tier as u8;
                    on_primary += stored_bytes(g);
                } else {
                    placement[g] = ut as u8;
                    on_unit += stored_bytes(g);
                }
            }
            let unit_budget = expert_budget(ut);
            if ut != compute_tier && on_unit > unit_budget {
                return err(
                    "placement.unit",
                    format!(
                        "the experts computed in place need {} in tier {} of unit {}, which holds {}",
                        crate::units::format_bytes(on_unit as f64),
                        profile.tiers[ut].name,
                        profile.units[unit].name,
                        crate::units::format_bytes(unit_budget as f64)
                    ),
                );
            }
            storage_bytes.iter_mut().for_each(|b| *b = 0);
            if always_in_place {
                // No cache: the primary unit keeps its resident experts, nothing is paged.
                cache_bytes = 0;
                storage_bytes[compute_tier] = on_primary;
            } else {
                storage_bytes[compute_tier] = cache_bytes * n_caches as u64;
            }
            storage_bytes[ut] += on_unit;
            let always: Vec<bool> = (0..n_objects)
                .map(|g| always_in_place && !resident[g])
                .collect();
            in_place_plan = Some((
                unit,
                always,
                !always_in_place && pl.mode == PlacementMode::HotSet,
            ));
        }
        if let Some(kv) = serving.kv.as_mut()
            && kv.budget == super::serving::KvBudget::Shrink
        {
            if home == compute_tier || cache_bytes == 0 {
                return err(
                    "serving.kv.budget",
                    "shrink gives the expert cache's memory to the KV cache, but this placement keeps no expert cache in the primary unit's tier",
                );
            }
            // The caches and the live contexts share what the resident shared experts leave.
            kv.shared_budget_bytes = cache_budget;
        }
        let extra_copy_bytes = match &precision {
            Some(_) => (0..n_objects)
                .map(|g| stored_bytes(g) - expert_bytes[g])
                .sum(),
            None => 0,
        };
        let expert_bytes_for_paths = mean_expert_bytes;

        let links: Vec<SimLink> = profile
            .links
            .iter()
            .map(|l| SimLink {
                from: l.from,
                to: l.to,
                latency_ns: l.latency_ns,
                granularity_bytes: l.granularity_bytes,
                bandwidth_bytes_per_s: l.bandwidth_bytes_per_s,
                channels: l.channels,
                request_bytes: l.request_bytes,
                time_distribution: l.time_distribution.clone(),
            })
            .collect();
        let mut paths = vec![Vec::new(); profile.tiers.len()];
        for (t, path) in paths.iter_mut().enumerate() {
            // Tiers holding home copies, and the home tier (shared experts stream from it).
            let used = t == home || placement.iter().any(|&p| p as usize == t);
            if t == compute_tier || !used {
                continue;
            }
            match profile.fastest_path(t, compute_tier, expert_bytes_for_paths) {
                Some(p) => *path = p.links.iter().map(|&l| l as u16).collect(),
                None => {
                    return err(
                        "hardware",
                        format!(
                            "{} has no link chain from {} to the compute tier {}",
                            profile.name, profile.tiers[t].name, profile.tiers[compute_tier].name
                        ),
                    );
                }
            }
        }

        let dense_rate = profile.compute().dense_weights_per_s;
        let p = &moe.params;
        let dense_params_per_layer =
            (p.attention + p.norms + p.dense_ffn + p.extra) / layers.max(1) as u64;
        let gate_macs = experts as u64 * moe.hidden_size;
        let head_params = p.output_embedding;
        let bytes_of = |params: u64| format.bytes_for(params);
        if let Some(c) = options.prefetch_count.filter(|&c| c == 0 || c > experts) {
            return err("prefetch.count", format!("{c}: must be in 1..={experts}"));
        }
        // Every single duration must fit one event (units::MAX_DURATION_NS), so that no figure
        // the profile's ranges accept can overflow the clock for this model.
        let long = |ns: f64, what: String| -> Result<(), SetupError> {
            if ns.is_finite() && ns <= crate::units::MAX_DURATION_NS {
                Ok(())
            } else {
                err(
                    "hardware.profile",
                    format!(
                        "{what} takes {} ns, more than the 10^15 ns (11.6 days) one step may last: a figure of {} is far too slow for {}",
                        crate::param::show(ns),
                        profile.name,
                        moe.name
                    ),
                )
            }
        };
        for c in &costs {
            long(
                per_expert_params as f64 * 1e9
                    / profile
                        .compute()
                        .format_weights_per_s(c.format)
                        .unwrap_or(1.0),
                format!(
                    "one expert kernel in {} (compute.expert_weights_per_s)",
                    c.format
                ),
            )?;
        }
        let dense_f = |params: u64| params as f64 * 1e9 / dense_rate;
        long(
            dense_f(dense_params_per_layer),
            "one layer's dense part (compute.dense_weights_per_s)".into(),
        )?;
        long(
            dense_f(head_params),
            "the LM head (compute.dense_weights_per_s)".into(),
        )?;
        let largest = (0..n_objects).map(stored_bytes).max().unwrap_or(0);
        for (i, l) in links.iter().enumerate() {
            let rounded = largest.div_ceil(l.granularity_bytes) as f64 * l.granularity_bytes as f64;
            long(
                l.latency_of(largest) + rounded * 1e9 / l.bandwidth_bytes_per_s,
                format!("moving one expert over links[{i}]"),
            )?;
        }
        let in_place = match in_place_plan {
            None => None,
            Some((unit, always, load_admitted)) => {
                let u = &profile.units[unit];
                let mut memory = Vec::with_capacity(n_objects);
                let mut mac = Vec::with_capacity(n_objects);
                for &f in &expert_format {
                    let class = f.compute_class().expect("a timed format has a class");
                    let rate = u
                        .compute
                        .format_weights_per_s(f)
                        .expect("a timed format has a rate");
                    let memory_ns = per_expert_params as f64 * 1e9 / rate;
                    long(
                        memory_ns,
                        format!(
                            "one expert kernel in {f} on unit {} (expert_weights_per_s)",
                            u.name
                        ),
                    )?;
                    memory.push(ceil_ns(memory_ns));
                    mac.push(ceil_ns(
                        per_expert_params as f64 * 1e9 / u.compute.peak_macs_per_s(class),
                    ));
                }
                let hidden_bytes =
                    moe.hidden_size * options.placement.activation_bytes_per_value as u64;
                let path = |from: usize, to: usize| -> Option<Vec<SimLink>> {
                    profile
                        .fastest_path(from, to, hidden_bytes)
                        .map(|p| p.links.iter().map(|&l| links[l].clone()).collect())
                };
                let (to_unit, to_primary) = match (
                    path(compute_tier, u.tier),
                    path(u.tier, compute_tier),
                ) {
                    (Some(a), Some(b)) => (a, b),
                    // One direction declared: activations use the same links both ways.
                    (Some(a), None) => (a.clone(), a),
                    (None, Some(b)) => (b.clone(), b),
                    (None, None) if u.tier == compute_tier => (Vec::new(), Vec::new()),
                    (None, None) => {
                        return err(
                            "placement.unit",
                            format!(
                                "{} has no link between {} and {} to carry activations to unit {}",
                                profile.name,
                                profile.tiers[compute_tier].name,
                                profile.tiers[u.tier].name,
                                u.name
                            ),
                        );
                    }
                };
                Some(InPlace {
                    mode: options.placement.mode,
                    unit: u.name.clone(),
                    tier: u.tier,
                    always,
                    expert_compute_ns: memory,
                    expert_mac_ns: mac,
                    launch_ns: ceil_ns(u.compute.launch_ns),
                    energy_pj_per_mac: u.compute.energy_pj_per_mac,
                    to_unit,
                    to_primary,
                    activation_bytes_per_token: hidden_bytes,
                    sync_ns: ceil_ns(options.placement.sync_ns),
                    copy_min_tokens: options.placement.copy_min_tokens,
                    load_admitted,
                    in_place_layers: fitted_layers,
                })
            }
        };
        // A tier's readers share its read bandwidth only when together they can ask for more
        // than it gives: every channel of every link out of it that some path uses, plus the
        // in-place unit streaming its fastest expert from it.
        let mut link_used = vec![false; links.len()];
        for path in &paths {
            for &l in path {
                link_used[l as usize] = true;
            }
        }
        let tiers: Vec<SimTier> = profile
            .tiers
            .iter()
            .enumerate()
            .map(|(t, spec)| {
                let mut demand: f64 = links
                    .iter()
                    .zip(&link_used)
                    .filter(|(l, used)| **used && l.from == t)
                    .map(|(l, _)| l.bandwidth_bytes_per_s * l.channels as f64)
                    .sum();
                if let Some(ip) = in_place.as_ref().filter(|ip| ip.tier == t) {
                    demand += (0..n_objects)
                        .map(|g| stored_bytes(g) as f64 * 1e9 / ip.expert_compute_ns[g] as f64)
                        .fold(0.0, f64::max);
                }
                SimTier {
                    name: spec.name.clone(),
                    energy_pj_per_byte: spec.energy_pj_per_byte,
                    shared_read_bandwidth_bytes_per_s: (demand > spec.read_bandwidth_bytes_per_s)
                        .then_some(spec.read_bandwidth_bytes_per_s),
                }
            })
            .collect();
        let c0 = profile.compute();
        Ok(SimSetup {
            layers,
            experts,
            top_k: moe.top_k,
            hidden: moe.hidden_size,
            expert_format,
            expert_bytes,
            expert_compute_ns,
            expert_mac_ns,
            expert_macs: vec![per_expert_params; n_objects],
            placement,
            shared,
            dense_ns: ceil_ns(dense_params_per_layer as f64 * 1e9 / dense_rate),
            dense_mac_ns: ceil_ns(dense_params_per_layer as f64 * 1e9 / c0.dense_peak_macs_per_s),
            gate_mac_ns: ceil_ns(gate_macs as f64 * 1e9 / c0.dense_peak_macs_per_s),
            launch_ns: ceil_ns(c0.launch_ns),
            wake_ns: ceil_ns(c0.wake_ns),
            issue_ns: ceil_ns(c0.issue_ns),
            dense_macs: dense_params_per_layer,
            dense_bytes: bytes_of(dense_params_per_layer),
            gate_ns: ceil_ns(gate_macs as f64 * 1e9 / dense_rate),
            gate_macs,
            op_ns: 1e9 / dense_rate,
            head_ns: ceil_ns(head_params as f64 * 1e9 / dense_rate),
            head_mac_ns: ceil_ns(head_params as f64 * 1e9 / c0.dense_peak_macs_per_s),
            head_macs: head_params,
            head_bytes: bytes_of(head_params),
            tiers,
            links,
            paths,
            compute_tier,
            home_tier: home,
            energy_pj_per_mac: profile.compute().energy_pj_per_mac,
            static_power_w: profile.power.as_ref().map_or(0.0, |p| p.static_w),
            cache_bytes,
            n_caches,
            compute_budget_bytes: compute_budget,
            precision,
            storage_bytes,
            extra_copy_bytes,
            expert_slowdown_while_transferring: profile
                .compute()
                .expert_slowdown_while_transferring,
            expert_slowdown_after_load: profile.compute().expert_slowdown_after_load,
            weights_cache: SimWeightsCache::of(profile.compute()),
            primary_unit: profile.units[0].name.clone(),
            in_place,
            layer_overhead_ns: ceil_ns(profile.runtime.layer_overhead_ns),
            token_overhead_ns: ceil_ns(profile.runtime.token_overhead_ns),
            serving,
            options,
        })
    }

    /// Experts prefetched per layer step.
    pub fn prefetch_count(&self) -> usize {
        self.options.prefetch_count.unwrap_or(self.top_k) as usize
    }

    /// Time of `ops` scalar operations.
    pub fn ops_ns(&self, ops: u64) -> TimeNs {
        ceil_ns(ops as f64 * self.op_ns)
    }
}

/// Resolves the precision ladder, or `None` when precision is static.
fn resolve_precision(
    o: &PrecisionOptions,
    plan: &[WeightFormat],
    cost_of: &dyn Fn(WeightFormat) -> Result<FormatCost, SetupError>,
) -> Result<Option<SimPrecision>, SetupError> {
    if o.dynamic.is_none() && o.low_on_miss.is_none() {
        return Ok(None);
    }
    let dynamic = o.dynamic.clone().unwrap_or(DynamicSpec {
        ladder: None,
        min: None,
        battery_low_pct: 0.0,
        memory_pressure_high: 1.0,
        timeline: Vec::new(),
    });
    // Without a timeline, the ladder is the plan's formats and the low copy's.
    let mut ladder: Vec<WeightFormat> = match (&o.dynamic, &dynamic.ladder) {
        (_, Some(l)) => l.clone(),
        (Some(_), None) => vec![WeightFormat::Q2K, WeightFormat::Q3K, WeightFormat::Q4K],
        (None, None) => Vec::new(),
    };
    let explicit = dynamic.ladder.is_some();
    for &f in plan {
        if !ladder.contains(&f) {
            if explicit {
                return err(
                    "precision.dynamic.ladder",
                    format!("the plan uses {f}, which the ladder does not list"),
                );
            }
            ladder.push(f);
        }
    }
    if let Some(l) = &o.low_on_miss {
        let f = l.format.unwrap_or(WeightFormat::Q2K);
        if !ladder.contains(&f) {
            ladder.push(f);
        }
    }
    crate::precision::sort_by_bits(&mut ladder);
    ladder.dedup();
    if ladder.len() > u8::MAX as usize {
        return err("precision.dynamic.ladder", "too many formats");
    }
    let step_of = |f: WeightFormat| ladder.iter().position(|&g| g == f).expect("listed") as u8;
    let min_step = match dynamic.min {
        Some(m) => {
            let Some(i) = ladder.iter().position(|&g| g == m) else {
                return err(
                    "precision.dynamic.min",
                    format!("{m} is not on the precision ladder"),
                );
            };
            i as u8
        }
        None => 0,
    };
    let plan_step: Vec<u8> = plan.iter().map(|&f| step_of(f)).collect();
    if let Some(&lowest) = plan_step.iter().min()
        && lowest < min_step
    {
        return err(
            "precision.dynamic.min",
            format!(
                "the plan stores some experts in {}, below the minimum {}",
                ladder[lowest as usize], ladder[min_step as usize]
            ),
        );
    }
    let low_on_miss = match &o.low_on_miss {
        Some(l) => {
            if !(l.gate_below.is_finite() && (0.0..=1.0).contains(&l.gate_below)) {
                return err("precision.low_on_miss.gate_below", "must be in [0, 1]");
            }
            Some((
                l.gate_below as f32,
                l.format
                    .map(step_of)
                    .unwrap_or(if o.dynamic.is_some() { min_step } else { 0 }),
            ))
        }
        None => None,
    };
    Ok(Some(SimPrecision {
        ladder: ladder
            .iter()
            .map(|&f| cost_of(f))
            .collect::<Result<_, _>>()?,
        plan_step,
        min_step,
        timeline: dynamic.resolve(),
        low_on_miss,
    }))
}
