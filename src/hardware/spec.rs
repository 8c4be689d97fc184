//! `HardwareProfileSpec`: the serde shape of a `hardware-profiles/*.toml` file, and its
//! validation into a [`HardwareProfile`].
//!
//! Physical numbers have no defaults: a profile states every capacity, bandwidth, latency and
//! energy, and says per figure group how it was obtained ([`Calibration`]).

use serde::{Deserialize, Serialize};

use super::{Compute, ComputeUnit, HardwareProfile, Link, Tier};
use crate::error::InputError;
use crate::quant::format::ComputeClass;

/// The schema version this build reads.
pub const PROFILE_SCHEMA_VERSION: u32 = 1;

/// A hardware profile as written in TOML.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareProfileSpec {
    /// Must equal [`PROFILE_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Short identifier, e.g. `esp32-p4`.
    pub name: String,
    /// One sentence on the device and the configuration modelled.
    pub description: String,
    /// Citations for the figures, `ID: title, address`.
    pub sources: Vec<String>,
    /// The tier expert kernels read their weights from; experts elsewhere must be copied here.
    /// Goes with `[compute]`; a profile with `[[compute_units]]` names each unit's tier instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_tier: Option<String>,
    /// Memory tiers, fastest first.
    pub tiers: Vec<TierSpec>,
    /// Directed copy paths between tiers.
    #[serde(default)]
    pub links: Vec<LinkSpec>,
    /// Compute throughput and energy of the one compute unit, on `compute_tier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<ComputeSpec>,
    /// Several compute units (instead of `[compute]`), each reading weights from its own tier;
    /// the first is the primary unit, which runs the dense parts, the router and the LM head,
    /// and whose tier is where moved experts are paged in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compute_units: Vec<ComputeSpec>,
    /// Allow a block-storage tier (NVMe, UFS, SD/NAND) as the compute tier, whose kernels would
    /// then read weights straight from storage; refused unless set, since no device computes
    /// from a block device.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compute_from_storage: bool,
    /// Static power (idle and leakage), charged over simulated time. Without it, energies
    /// count dynamic energy only, and `profile show` says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<PowerSpec>,
}

/// `[power]`: what the device draws while powered, whether or not it computes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerSpec {
    /// Static power of the modelled configuration (SoC, board or card, as the profile's
    /// description says), in watts.
    pub static_w: f64,
    /// What the figure covers, in a few words (`"SoC in run mode at 240 MHz, WiFi off"`).
    pub covers: String,
    /// How the figure was obtained.
    pub calibrated: Calibration,
}

/// How a figure group was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Calibration {
    /// From a vendor datasheet, specification or configuration file.
    Datasheet,
    /// Measured, by a third party or by `moesim host calibrate`.
    Measured,
    /// Computed from datasheet or measured figures by a formula stated in the profile.
    Derived,
    /// Not found in any source: a documented, conservative placeholder.
    Assumed,
}

impl Calibration {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Calibration::Datasheet => "datasheet",
            Calibration::Measured => "measured",
            Calibration::Derived => "derived",
            Calibration::Assumed => "assumed",
        }
    }

    /// Whether the figures were checked against the device (datasheet or measurement).
    pub fn is_calibrated(self) -> bool {
        matches!(self, Calibration::Datasheet | Calibration::Measured)
    }
}

/// The physical kind of a memory tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierKind {
    /// Level-1 CPU cache.
    L1,
    /// Level-2 (or last-level) CPU cache.
    L2,
    /// Tightly coupled memory of a microcontroller.
    Tcm,
    /// On-chip SRAM.
    Sram,
    /// Pseudo-static RAM on a serial bus.
    Psram,
    /// DRAM (DDR, LPDDR).
    Dram,
    /// Graphics memory.
    Vram,
    /// High-bandwidth memory.
    Hbm,
    /// Non-volatile MRAM.
    Mram,
    /// Serial NOR flash.
    FlashNor,
    /// Raw NAND flash or an SD card.
    FlashNand,
    /// UFS storage.
    Ufs,
    /// NVMe SSD.
    Nvme,
}

impl TierKind {
    /// Whether it is memory (random access at memory speed) rather than storage (flash, SSD).
    pub fn is_memory(self) -> bool {
        !matches!(
            self,
            TierKind::FlashNor | TierKind::FlashNand | TierKind::Ufs | TierKind::Nvme
        )
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            TierKind::L1 => "l1",
            TierKind::L2 => "l2",
            TierKind::Tcm => "tcm",
            TierKind::Sram => "sram",
            TierKind::Psram => "psram",
            TierKind::Dram => "dram",
            TierKind::Vram => "vram",
            TierKind::Hbm => "hbm",
            TierKind::Mram => "mram",
            TierKind::FlashNor => "flash_nor",
            TierKind::FlashNand => "flash_nand",
            TierKind::Ufs => "ufs",
            TierKind::Nvme => "nvme",
        }
    }
}

/// One memory tier as written in TOML.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    /// Unique name within the profile (`sram`, `psram`, `flash`).
    pub name: String,
    /// Physical kind.
    pub kind: TierKind,
    /// Total capacity.
    pub capacity_bytes: i64,
    /// Bytes taken by activations, KV cache and runtime; the expert budget is the rest.
    pub reserved_bytes: i64,
    /// Sustained read bandwidth.
    pub read_bandwidth_bytes_per_s: f64,
    /// Sustained write bandwidth.
    pub write_bandwidth_bytes_per_s: f64,
    /// Latency to the first byte of an access.
    pub latency_ns: f64,
    /// Access granularity: cache line, burst or page.
    pub granularity_bytes: i64,
    /// Energy per byte accessed.
    pub energy_pj_per_byte: f64,
    /// Whether experts may be stored here.
    pub holds_experts: bool,
    /// How these figures were obtained.
    pub calibrated: Calibration,
}

/// A directed copy path between two tiers as written in TOML.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// Source tier name (the slower side, for expert loads).
    pub from: String,
    /// Destination tier name.
    pub to: String,
    /// Sustained bandwidth of one channel.
    pub bandwidth_bytes_per_s: f64,
    /// Latency to the first byte of a transfer.
    pub latency_ns: f64,
    /// Transfer granularity: transfers are rounded up to whole units.
    pub granularity_bytes: i64,
    /// Transfers that can proceed at once (DMA engines, queues, lanes).
    pub channels: i64,
    /// The largest request the link serves in one go (a block device's request limit): a
    /// transfer of `b` bytes is `ceil(b / request_bytes)` requests, each paying `latency_ns`
    /// (default: one request, whatever its size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_bytes: Option<i64>,
    /// How these figures were obtained.
    pub calibrated: Calibration,
    /// How transfer times vary around the fixed figures (default: they do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_distribution: Option<super::time_distribution::TimeDistributionSpec>,
}

/// Compute figures as written in TOML: `[compute]`, or one entry of `[[compute_units]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeSpec {
    /// Name of the unit (`[[compute_units]]` only), e.g. `gpu` or `cpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The tier the unit reads weights from (`[[compute_units]]` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Cores (or streaming multiprocessors) the throughput figures assume.
    pub cores: i64,
    /// Expert GEMV throughput per weight format, in weights (= MACs at batch 1) per second.
    pub expert_weights_per_s: FormatThroughputSpec,
    /// Throughput of the non-expert (dense) part: attention, router, shared experts.
    pub dense_weights_per_s: f64,
    /// Peak arithmetic throughput per weight format for batched work, in multiply-accumulates
    /// per second: a kernel on n tokens takes `max(weights / expert_weights_per_s,
    /// n · weights / peak) + launch_ns`. Default: `expert_weights_per_s` (no batching gain, so
    /// n tokens cost n times one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_macs_per_s: Option<FormatThroughputSpec>,
    /// Peak arithmetic throughput of the dense part for batched work (default:
    /// `dense_weights_per_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dense_peak_macs_per_s: Option<f64>,
    /// Fixed cost of launching or dispatching one kernel, in ns. Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub launch_ns: f64,
    /// Time the unit takes to resume after it waited for a transfer, from the transfer's end
    /// (a blocked thread's wake-up, an interrupt's handling), in ns, on average. Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wake_ns: f64,
    /// Time the unit spends handing a transfer to links with nothing in flight (waking an I/O
    /// thread and submitting its read: on the development VM the woken reader ran on the
    /// issuing core until it blocked in the read), in ns, on average; charged once for each
    /// transfer issued while no link moved anything, before the unit's next work. Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub issue_ns: f64,
    /// Energy per multiply-accumulate.
    pub energy_pj_per_mac: f64,
    /// How much slower expert kernels run while a link transfers (memory contention between
    /// the transfer's writes and the kernels' weight stream), as a fraction: work done during
    /// a transfer takes `1 + s` times as long. One fraction for every class, or a table per
    /// class (memory-bound formats slow more). Default 0 (no contention).
    #[serde(default, skip_serializing_if = "SlowdownSpec::is_zero")]
    pub expert_slowdown_while_transferring: SlowdownSpec,
    /// How much slower the first kernel on an expert's weights runs after they arrive over a
    /// link, as a fraction per compute class: positive when the arrival leaves them cold in this
    /// core's caches (written by DMA or another core), negative when it leaves them warmer than
    /// weights read from memory (a copy that went through the last-level cache). Default 0.
    #[serde(default, skip_serializing_if = "FormatFractionSpec::is_zero")]
    pub expert_slowdown_after_load: FormatFractionSpec,
    /// The unit's last-level cache as it serves expert weights: an expert whose kernel ran
    /// within the last `capacity_bytes` of expert weights computed finds its weights cached and
    /// runs at the cached rate. Default: none (every kernel at `expert_weights_per_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_cache: Option<WeightsCacheSpec>,
    /// How the energy figure was obtained, when it differs from the throughput figures (a
    /// measured throughput with a sourced energy, say); default: as `calibrated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_calibrated: Option<Calibration>,
    /// How these figures were obtained.
    pub calibrated: Calibration,
}

/// Throughput per compute class, in weights per second.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatThroughputSpec {
    /// 16-bit float weights.
    pub f16: f64,
    /// 8-bit weights (Q8_0).
    pub q8: f64,
    /// 4-bit weights (Q4_0, Q4_K).
    pub q4: f64,
    /// 3-bit weights (Q3_K).
    pub q3: f64,
    /// 2-bit weights (Q2_K).
    pub q2: f64,
    /// Ternary weights (TQ1_0, TQ2_0).
    pub ternary: f64,
}

/// A compute unit's last-level cache for expert weights, as written in TOML
/// (`[compute.weights_cache]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsCacheSpec {
    /// The cache's capacity for expert weights as `replacement` reads it: an effective
    /// capacity, for weights, not the cache's size.
    pub capacity_bytes: f64,
    /// How weights leave the cache: `"lru"` (default: cached while at most `capacity_bytes`
    /// of weights were computed since the expert's last kernel) or `"random"` (each byte
    /// fetched from memory evicts a cached one at random).
    #[serde(default, skip_serializing_if = "super::Replacement::is_lru")]
    pub replacement: super::Replacement,
    /// Under `"random"` replacement, the mean time cached weights survive while nothing of
    /// this unit's fetches them out: a cache shared with other tenants, which evict at their
    /// own pace (default: none, weights leave only by this unit's fetches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_ns: Option<f64>,
    /// Expert GEMV throughput per class on cached weights, in weights per second.
    pub expert_weights_per_s: FormatThroughputSpec,
    /// How long a transfer into the compute tier takes by how recently its destination was
    /// computed on (default: as long as the link says, wherever it lands).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub landing: Vec<LandingPointSpec>,
}

/// One point of [`WeightsCacheSpec::landing`]: a transfer whose destination buffer last held
/// an expert computed within `within_bytes` of expert weights computed since takes
/// `time_factor` times the link's time (between points, linear in the distance; beyond the
/// last, 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandingPointSpec {
    /// Reuse distance of the destination, in bytes of expert weights computed.
    pub within_bytes: f64,
    /// The transfer's time over the link's.
    pub time_factor: f64,
}

/// A fraction per compute class (missing classes: 0).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatFractionSpec {
    /// 16-bit float weights.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub f16: f64,
    /// 8-bit weights.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub q8: f64,
    /// 4-bit weights.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub q4: f64,
    /// 3-bit weights.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub q3: f64,
    /// 2-bit weights.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub q2: f64,
    /// Ternary weights.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ternary: f64,
}

/// `get` and `get_mut` by compute class, for a spec with one `f64` field per class.
macro_rules! per_class_fields {
    ($spec:ty) => {
        impl $spec {
            /// The figure of `class`.
            pub fn get(&self, class: ComputeClass) -> f64 {
                *match class {
                    ComputeClass::F16 => &self.f16,
                    ComputeClass::Q8 => &self.q8,
                    ComputeClass::Q4 => &self.q4,
                    ComputeClass::Q3 => &self.q3,
                    ComputeClass::Q2 => &self.q2,
                    ComputeClass::Ternary => &self.ternary,
                }
            }

            /// The figure of `class`, to set.
            pub fn get_mut(&mut self, class: ComputeClass) -> &mut f64 {
                match class {
                    ComputeClass::F16 => &mut self.f16,
                    ComputeClass::Q8 => &mut self.q8,
                    ComputeClass::Q4 => &mut self.q4,
                    ComputeClass::Q3 => &mut self.q3,
                    ComputeClass::Q2 => &mut self.q2,
                    ComputeClass::Ternary => &mut self.ternary,
                }
            }
        }
    };
}

per_class_fields!(FormatThroughputSpec);
per_class_fields!(FormatFractionSpec);

impl FormatFractionSpec {
    fn is_zero(&self) -> bool {
        ComputeClass::ALL.iter().all(|&c| self.get(c) == 0.0)
    }
}

/// A fraction for every compute class, or one per class.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SlowdownSpec {
    /// The same for every class.
    All(f64),
    /// Per class (missing classes: 0).
    PerClass(FormatFractionSpec),
}

impl Default for SlowdownSpec {
    fn default() -> Self {
        SlowdownSpec::All(0.0)
    }
}

impl SlowdownSpec {
    /// The fraction of `class`.
    pub fn get(&self, class: ComputeClass) -> f64 {
        match self {
            SlowdownSpec::All(x) => *x,
            SlowdownSpec::PerClass(f) => f.get(class),
        }
    }

    fn is_zero(&self) -> bool {
        ComputeClass::ALL.iter().all(|&c| self.get(c) == 0.0)
    }
}

impl HardwareProfileSpec {
    /// Checks every value and builds the runtime profile. `file` names the input in errors.
    pub fn validate(&self, file: &str) -> Result<HardwareProfile, InputError> {
        let err = |key: &str, reason: String| InputError::at_key(file, key, reason);
        if self.schema_version != PROFILE_SCHEMA_VERSION {
            return Err(err(
                "schema_version",
                format!(
                    "unsupported version {} (this build reads {PROFILE_SCHEMA_VERSION})",
                    self.schema_version
                ),
            ));
        }
        if self.name.trim().is_empty() {
            return Err(err("name", "must not be empty".into()));
        }
        if self.sources.is_empty() {
            return Err(err(
                "sources",
                "must cite at least one source for the figures".into(),
            ));
        }
        if self.tiers.is_empty() {
            return Err(err(
                "tiers",
                "a profile needs at least one memory tier".into(),
            ));
        }

        let mut tiers: Vec<Tier> = Vec::with_capacity(self.tiers.len());
        for (i, t) in self.tiers.iter().enumerate() {
            let key = |field: &str| format!("tiers[{i}].{field}");
            if t.name.trim().is_empty() {
                return Err(err(&key("name"), "must not be empty".into()));
            }
            if let Some(j) = tiers.iter().position(|other| other.name == t.name) {
                return Err(err(
                    &key("name"),
                    format!("duplicate tier name `{}` (also tiers[{j}])", t.name),
                ));
            }
            CAPACITY
                .check_int(t.capacity_bytes)
                .map_err(|r| err(&key("capacity_bytes"), r))?;
            if t.reserved_bytes < 0 {
                return Err(err(
                    &key("reserved_bytes"),
                    format!("must be >= 0, got {}", t.reserved_bytes),
                ));
            }
            if t.reserved_bytes > t.capacity_bytes {
                return Err(err(
                    &key("reserved_bytes"),
                    format!(
                        "{} exceeds capacity_bytes {}",
                        t.reserved_bytes, t.capacity_bytes
                    ),
                ));
            }
            BANDWIDTH
                .check(t.read_bandwidth_bytes_per_s)
                .map_err(|r| err(&key("read_bandwidth_bytes_per_s"), r))?;
            BANDWIDTH
                .check(t.write_bandwidth_bytes_per_s)
                .map_err(|r| err(&key("write_bandwidth_bytes_per_s"), r))?;
            LATENCY
                .check(t.latency_ns)
                .map_err(|r| err(&key("latency_ns"), r))?;
            GRANULARITY
                .check_int(t.granularity_bytes)
                .map_err(|r| err(&key("granularity_bytes"), r))?;
            ENERGY_PER_BYTE
                .check(t.energy_pj_per_byte)
                .map_err(|r| err(&key("energy_pj_per_byte"), r))?;
            if let Some(prev) = tiers.last()
                && t.read_bandwidth_bytes_per_s > prev.read_bandwidth_bytes_per_s
            {
                return Err(err(
                    &key("read_bandwidth_bytes_per_s"),
                    format!(
                        "tier `{}` ({} B/s) is faster than the tier before it, `{}` ({} B/s): tiers must be \
                             ordered fastest to slowest by read bandwidth",
                        t.name,
                        t.read_bandwidth_bytes_per_s,
                        prev.name,
                        prev.read_bandwidth_bytes_per_s
                    ),
                ));
            }
            tiers.push(Tier {
                name: t.name.clone(),
                kind: t.kind,
                capacity_bytes: t.capacity_bytes as u64,
                reserved_bytes: t.reserved_bytes as u64,
                read_bandwidth_bytes_per_s: t.read_bandwidth_bytes_per_s,
                write_bandwidth_bytes_per_s: t.write_bandwidth_bytes_per_s,
                latency_ns: t.latency_ns,
                granularity_bytes: t.granularity_bytes as u64,
                energy_pj_per_byte: t.energy_pj_per_byte,
                holds_experts: t.holds_experts,
                calibrated: t.calibrated,
            });
        }

        let tier_index = |name: &str| tiers.iter().position(|t| t.name == name);
        let mut links = Vec::with_capacity(self.links.len());
        for (i, l) in self.links.iter().enumerate() {
            let key = |field: &str| format!("links[{i}].{field}");
            let names = || {
                tiers
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let from = tier_index(&l.from).ok_or_else(|| {
                err(
                    &key("from"),
                    format!("no tier named `{}` (tiers: {})", l.from, names()),
                )
            })?;
            let to = tier_index(&l.to).ok_or_else(|| {
                err(
                    &key("to"),
                    format!("no tier named `{}` (tiers: {})", l.to, names()),
                )
            })?;
            if from == to {
                return Err(err(
                    &key("to"),
                    format!("a link must join two different tiers, got `{}` twice", l.to),
                ));
            }
            if links
                .iter()
                .any(|other: &Link| other.from == from && other.to == to)
            {
                return Err(err(
                    &key("to"),
                    format!("duplicate link `{}` -> `{}`", l.from, l.to),
                ));
            }
            BANDWIDTH
                .check(l.bandwidth_bytes_per_s)
                .map_err(|r| err(&key("bandwidth_bytes_per_s"), r))?;
            LATENCY
                .check(l.latency_ns)
                .map_err(|r| err(&key("latency_ns"), r))?;
            GRANULARITY
                .check_int(l.granularity_bytes)
                .map_err(|r| err(&key("granularity_bytes"), r))?;
            CHANNELS
                .check_int(l.channels)
                .map_err(|r| err(&key("channels"), r))?;
            if let Some(r) = l.request_bytes {
                GRANULARITY
                    .check_int(r)
                    .map_err(|e| err(&key("request_bytes"), e))?;
            }
            let time_distribution = l
                .time_distribution
                .as_ref()
                .map(|d| d.validate())
                .transpose()
                .map_err(|(k, r)| err(&key(&format!("time_distribution.{k}")), r))?;
            links.push(Link {
                from,
                to,
                bandwidth_bytes_per_s: l.bandwidth_bytes_per_s,
                latency_ns: l.latency_ns,
                granularity_bytes: l.granularity_bytes as u64,
                channels: l.channels as u32,
                request_bytes: l.request_bytes.map(|r| r as u64),
                calibrated: l.calibrated,
                time_distribution,
            });
        }

        // The compute units: `[compute]` on `compute_tier`, or `[[compute_units]]`.
        let legacy: Vec<(String, Option<&str>, &ComputeSpec)>;
        let specs: Vec<(String, Option<&str>, &ComputeSpec)> = match (
            &self.compute,
            self.compute_units.is_empty(),
        ) {
            (Some(_), false) => {
                return Err(err(
                    "compute_units",
                    "give either [compute] with compute_tier, or [[compute_units]], not both"
                        .into(),
                ));
            }
            (None, true) => {
                return Err(err(
                    "compute",
                    "missing: give [compute] with compute_tier, or [[compute_units]]".into(),
                ));
            }
            (Some(c), true) => {
                let Some(tier) = &self.compute_tier else {
                    return Err(err(
                        "compute_tier",
                        "missing: [compute] needs the tier its kernels read from".into(),
                    ));
                };
                for (field, given) in [("name", c.name.is_some()), ("tier", c.tier.is_some())] {
                    if given {
                        return Err(err(
                            &format!("compute.{field}"),
                            "belongs to [[compute_units]] entries; [compute] uses compute_tier"
                                .into(),
                        ));
                    }
                }
                legacy = vec![("compute".to_string(), Some(tier.as_str()), c)];
                legacy
            }
            (None, false) => {
                if self.compute_tier.is_some() {
                    return Err(err(
                            "compute_tier",
                            "with [[compute_units]], each unit names its tier (the first unit is the primary)"
                                .into(),
                        ));
                }
                self.compute_units
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("compute_units[{i}]"), c.tier.as_deref(), c))
                    .collect()
            }
        };
        let mut units: Vec<ComputeUnit> = Vec::with_capacity(specs.len());
        for (prefix, tier_name, c) in specs {
            let legacy_form = self.compute.is_some();
            let tier_key = if legacy_form {
                "compute_tier".to_string()
            } else {
                format!("{prefix}.tier")
            };
            let name = if legacy_form {
                "compute".to_string()
            } else {
                match &c.name {
                    Some(n) if !n.trim().is_empty() => n.clone(),
                    Some(_) => {
                        return Err(err(&format!("{prefix}.name"), "must not be empty".into()));
                    }
                    None => {
                        return Err(err(
                            &format!("{prefix}.name"),
                            "missing: name the unit (e.g. \"gpu\", \"cpu\")".into(),
                        ));
                    }
                }
            };
            if let Some(j) = units.iter().position(|u| u.name == name) {
                return Err(err(
                    &format!("{prefix}.name"),
                    format!("duplicate unit name `{name}` (also compute_units[{j}])"),
                ));
            }
            let Some(tier_name) = tier_name else {
                return Err(err(
                    &tier_key,
                    "missing: the tier the unit reads weights from".into(),
                ));
            };
            let tier = tier_index(tier_name).ok_or_else(|| {
                err(
                    &tier_key,
                    format!(
                        "no tier named `{tier_name}` (tiers: {})",
                        tiers
                            .iter()
                            .map(|t| t.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            if matches!(
                tiers[tier].kind,
                TierKind::Nvme | TierKind::Ufs | TierKind::FlashNand
            ) && !self.compute_from_storage
            {
                return Err(err(
                    &tier_key,
                    format!(
                        "tier `{tier_name}` is block storage ({}): kernels cannot execute from it; copy experts to a memory tier over a link, or set compute_from_storage = true to model it anyway",
                        tiers[tier].kind.name()
                    ),
                ));
            }
            if !tiers[tier].holds_experts {
                return Err(err(
                    &tier_key,
                    format!(
                        "tier `{tier_name}` has holds_experts = false, so no expert can be computed from it"
                    ),
                ));
            }
            if let Some(j) = units.iter().position(|u| u.tier == tier) {
                return Err(err(
                    &tier_key,
                    format!(
                        "unit `{}` already reads from tier `{tier_name}`: one unit per tier",
                        units[j].name
                    ),
                ));
            }
            let compute = validate_compute(c, &prefix, &err)?;
            units.push(ComputeUnit {
                name,
                tier,
                compute,
            });
        }
        let compute_tier = units[0].tier;

        let power = match &self.power {
            None => None,
            Some(p) => {
                STATIC_POWER
                    .check(p.static_w)
                    .map_err(|r| err("power.static_w", r))?;
                if p.covers.trim().is_empty() {
                    return Err(err(
                        "power.covers",
                        "say what the figure covers (SoC, board, card, whole system)".into(),
                    ));
                }
                Some(super::Power {
                    static_w: p.static_w,
                    covers: p.covers.clone(),
                    calibrated: p.calibrated,
                })
            }
        };
        Ok(HardwareProfile {
            name: self.name.clone(),
            description: self.description.clone(),
            sources: self.sources.clone(),
            tiers,
            links,
            units,
            compute_tier,
            power,
            runtime: super::runtime::Runtime::ideal(),
        })
    }
}

/// A rate per class, each checked as a kernel throughput (`key.CLASS` names a bad one).
fn checked_rates(
    rates: &FormatThroughputSpec,
    key: &str,
    err: &dyn Fn(&str, String) -> InputError,
) -> Result<[f64; ComputeClass::ALL.len()], InputError> {
    let mut out = [0.0; ComputeClass::ALL.len()];
    for (slot, class) in out.iter_mut().zip(ComputeClass::ALL) {
        let value = rates.get(class);
        WEIGHT_RATE
            .check(value)
            .map_err(|r| err(&format!("{key}.{}", class.name()), r))?;
        *slot = value;
    }
    Ok(out)
}

/// Checks one compute section (`prefix` is `compute` or `compute_units[i]`).
fn validate_compute(
    c: &ComputeSpec,
    prefix: &str,
    err: &dyn Fn(&str, String) -> InputError,
) -> Result<Compute, InputError> {
    let key = |field: &str| format!("{prefix}.{field}");
    CORES
        .check_int(c.cores)
        .map_err(|r| err(&key("cores"), r))?;
    let expert_weights_per_s =
        checked_rates(&c.expert_weights_per_s, &key("expert_weights_per_s"), err)?;
    WEIGHT_RATE
        .check(c.dense_weights_per_s)
        .map_err(|r| err(&key("dense_weights_per_s"), r))?;
    // The roofline's compute roof: at least the batch-1 rate (one token's kernel cannot do
    // more multiply-accumulates per second than the unit's peak).
    let mut peak_macs_per_s = expert_weights_per_s;
    if let Some(peak) = &c.peak_macs_per_s {
        for (i, class) in ComputeClass::ALL.iter().enumerate() {
            let k = key(&format!("peak_macs_per_s.{}", class.name()));
            let value = peak.get(*class);
            WEIGHT_RATE.check(value).map_err(|r| err(&k, r))?;
            if value < expert_weights_per_s[i] {
                return Err(err(
                    &k,
                    format!(
                        "{} is below expert_weights_per_s.{} = {}: the peak bounds the batch-1 rate from above",
                        crate::param::show(value),
                        class.name(),
                        crate::param::show(expert_weights_per_s[i])
                    ),
                ));
            }
            peak_macs_per_s[i] = value;
        }
    }
    let dense_peak_macs_per_s = match c.dense_peak_macs_per_s {
        None => c.dense_weights_per_s,
        Some(value) => {
            let k = key("dense_peak_macs_per_s");
            WEIGHT_RATE.check(value).map_err(|r| err(&k, r))?;
            if value < c.dense_weights_per_s {
                return Err(err(
                    &k,
                    format!(
                        "{} is below dense_weights_per_s = {}: the peak bounds the batch-1 rate from above",
                        crate::param::show(value),
                        crate::param::show(c.dense_weights_per_s)
                    ),
                ));
            }
            value
        }
    };
    LATENCY
        .check(c.launch_ns)
        .map_err(|r| err(&key("launch_ns"), r))?;
    LATENCY
        .check(c.wake_ns)
        .map_err(|r| err(&key("wake_ns"), r))?;
    LATENCY
        .check(c.issue_ns)
        .map_err(|r| err(&key("issue_ns"), r))?;
    ENERGY_PER_MAC
        .check(c.energy_pj_per_mac)
        .map_err(|r| err(&key("energy_pj_per_mac"), r))?;
    let mut fractions = Vec::new();
    let mut expert_slowdown_while_transferring = [0.0; ComputeClass::ALL.len()];
    for (slot, class) in expert_slowdown_while_transferring
        .iter_mut()
        .zip(ComputeClass::ALL)
    {
        *slot = c.expert_slowdown_while_transferring.get(class);
        fractions.push((
            match c.expert_slowdown_while_transferring {
                SlowdownSpec::All(_) => key("expert_slowdown_while_transferring"),
                SlowdownSpec::PerClass(_) => key(&format!(
                    "expert_slowdown_while_transferring.{}",
                    class.name()
                )),
            },
            *slot,
        ));
    }
    for (k, x) in fractions {
        if !(x.is_finite() && (0.0..=10.0).contains(&x)) {
            return Err(err(&k, format!("must be a fraction in [0, 10], got {x}")));
        }
    }
    // After a load the first kernel may also run faster (at most 10 times: -0.9).
    let mut expert_slowdown_after_load = [0.0; ComputeClass::ALL.len()];
    for (slot, class) in expert_slowdown_after_load.iter_mut().zip(ComputeClass::ALL) {
        *slot = c.expert_slowdown_after_load.get(class);
        if !(slot.is_finite() && (-0.9..=10.0).contains(slot)) {
            return Err(err(
                &key(&format!("expert_slowdown_after_load.{}", class.name())),
                format!("must be a fraction in [-0.9, 10], got {slot}"),
            ));
        }
    }
    let weights_cache = match &c.weights_cache {
        None => None,
        Some(w) => {
            CAPACITY
                .check(w.capacity_bytes)
                .map_err(|r| err(&key("weights_cache.capacity_bytes"), r))?;
            let mut landing = Vec::with_capacity(w.landing.len());
            for (i, p) in w.landing.iter().enumerate() {
                let k = |field: &str| key(&format!("weights_cache.landing[{i}].{field}"));
                CAPACITY
                    .check(p.within_bytes)
                    .map_err(|r| err(&k("within_bytes"), r))?;
                if let Some(&(before, _)) = landing.last()
                    && p.within_bytes.round() as u64 <= before
                {
                    return Err(err(
                        &k("within_bytes"),
                        format!(
                            "points must be in increasing distance: {} after {before}",
                            p.within_bytes
                        ),
                    ));
                }
                if !(p.time_factor.is_finite() && p.time_factor > 0.0 && p.time_factor <= 10.0) {
                    return Err(err(
                        &k("time_factor"),
                        format!("must be in (0, 10], got {}", p.time_factor),
                    ));
                }
                landing.push((p.within_bytes.round() as u64, p.time_factor));
            }
            if let Some(t) = w.lifetime_ns {
                if !(t.is_finite() && t > 0.0) {
                    return Err(err(
                        &key("weights_cache.lifetime_ns"),
                        format!("must be a positive time, got {t}"),
                    ));
                }
                if w.replacement != super::Replacement::Random {
                    return Err(err(
                        &key("weights_cache.lifetime_ns"),
                        "applies to replacement = \"random\" only".into(),
                    ));
                }
            }
            Some(super::WeightsCache {
                capacity_bytes: w.capacity_bytes.round() as u64,
                replacement: w.replacement,
                lifetime_ns: w.lifetime_ns,
                expert_weights_per_s: checked_rates(
                    &w.expert_weights_per_s,
                    &key("weights_cache.expert_weights_per_s"),
                    err,
                )?,
                landing,
            })
        }
    };
    Ok(Compute {
        cores: c.cores as u32,
        weights_cache,
        expert_weights_per_s,
        dense_weights_per_s: c.dense_weights_per_s,
        peak_macs_per_s,
        dense_peak_macs_per_s,
        launch_ns: c.launch_ns,
        wake_ns: c.wake_ns,
        issue_ns: c.issue_ns,
        energy_pj_per_mac: c.energy_pj_per_mac,
        expert_slowdown_while_transferring,
        expert_slowdown_after_load,
        energy_calibrated: c.energy_calibrated.unwrap_or(c.calibrated),
        calibrated: c.calibrated,
    })
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// The range a physical figure must lie in. Every figure of a profile is checked against its
/// range, which spans far beyond any real device in both directions (a 1 kB/s serial flash to a
/// 100 TB/s on-package memory; a kernel rate of 1 k to 10^17 weights per second), so that a
/// typing error or a unit mistake is refused by name instead of overflowing the clock.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    /// Smallest accepted value.
    pub min: f64,
    /// Largest accepted value.
    pub max: f64,
    /// The unit, for messages.
    pub unit: &'static str,
}

/// Bandwidth of a tier or a link.
pub const BANDWIDTH: Range = Range {
    min: 1e3,
    max: 1e14,
    unit: "B/s",
};
/// Latency to the first byte.
pub const LATENCY: Range = Range {
    min: 0.0,
    max: 1e10,
    unit: "ns",
};
/// Capacity of a tier (1 PB at most).
pub const CAPACITY: Range = Range {
    min: 1.0,
    max: 1e15,
    unit: "bytes",
};
/// Access or transfer granularity (1 GiB at most).
pub const GRANULARITY: Range = Range {
    min: 1.0,
    max: 1073741824.0,
    unit: "bytes",
};
/// Energy per byte accessed.
pub const ENERGY_PER_BYTE: Range = Range {
    min: 0.0,
    max: 1e6,
    unit: "pJ/B",
};
/// Energy per multiply-accumulate.
pub const ENERGY_PER_MAC: Range = Range {
    min: 0.0,
    max: 1e6,
    unit: "pJ/MAC",
};
/// Kernel throughput.
pub const WEIGHT_RATE: Range = Range {
    min: 1e3,
    max: 1e17,
    unit: "weights/s",
};
/// Concurrent transfers of a link.
pub const CHANNELS: Range = Range {
    min: 1.0,
    max: 4096.0,
    unit: "channels",
};
/// Cores of a compute unit.
pub const CORES: Range = Range {
    min: 1.0,
    max: 1e6,
    unit: "cores",
};
/// Static (idle and leakage) power.
pub const STATIC_POWER: Range = Range {
    min: 0.0,
    max: 1e5,
    unit: "W",
};

impl Range {
    fn check(&self, x: f64) -> Result<(), String> {
        if x.is_finite() && x >= self.min && x <= self.max {
            Ok(())
        } else {
            Err(format!(
                "{} is outside the accepted range [{}, {}] {}",
                crate::param::show(x),
                crate::param::show(self.min),
                crate::param::show(self.max),
                self.unit
            ))
        }
    }

    fn check_int(&self, x: i64) -> Result<(), String> {
        self.check(x as f64).map_err(|_| {
            format!(
                "{x} is outside the accepted range [{}, {}] {}",
                crate::param::show(self.min),
                crate::param::show(self.max),
                self.unit
            )
        })
    }
}
