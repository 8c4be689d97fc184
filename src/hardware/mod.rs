//! What a device is: its memory tiers, the links that copy between them, and its compute.
//!
//! [`HardwareProfile`] is the validated runtime form of a `hardware-profiles/*.toml` file
//! ([`spec::HardwareProfileSpec`]). It is pure data plus closed-form helpers (expert budgets,
//! the time of one transfer); it schedules nothing. Queueing and contention are the
//! simulator's business.

pub mod compose;
pub mod fit;
pub mod presets;
pub mod runtime;
pub mod spec;
pub mod time_distribution;

pub use spec::{Calibration, HardwareProfileSpec, SlowdownSpec, TierKind};

use crate::error::{Error, InputError, Result};
use crate::quant::format::{ComputeClass, WeightFormat};

/// A validated hardware profile.
#[derive(Debug, Clone)]
pub struct HardwareProfile {
    /// Short identifier.
    pub name: String,
    /// One sentence on the device.
    pub description: String,
    /// Citations for the figures.
    pub sources: Vec<String>,
    /// Memory tiers, fastest first.
    pub tiers: Vec<Tier>,
    /// Directed copy paths.
    pub links: Vec<Link>,
    /// The compute units; the first is the primary one (dense parts, router, LM head, and the
    /// experts paged into its tier).
    pub units: Vec<ComputeUnit>,
    /// Index of the tier the primary unit reads from.
    pub compute_tier: usize,
    /// Static power, if the profile states it.
    pub power: Option<Power>,
    /// The software stack's achieved fraction of these figures (`ideal` as loaded; see
    /// [`runtime::Runtime::apply`]).
    pub runtime: runtime::Runtime,
}

/// Static (idle and leakage) power.
#[derive(Debug, Clone)]
pub struct Power {
    /// Watts drawn while powered, computing or not.
    pub static_w: f64,
    /// What the figure covers.
    pub covers: String,
    /// How it was obtained.
    pub calibrated: Calibration,
}

/// A memory tier.
#[derive(Debug, Clone)]
pub struct Tier {
    /// Unique name.
    pub name: String,
    /// Physical kind.
    pub kind: TierKind,
    /// Total capacity.
    pub capacity_bytes: u64,
    /// Bytes not available to experts.
    pub reserved_bytes: u64,
    /// Sustained read bandwidth.
    pub read_bandwidth_bytes_per_s: f64,
    /// Sustained write bandwidth.
    pub write_bandwidth_bytes_per_s: f64,
    /// Latency to the first byte.
    pub latency_ns: f64,
    /// Access granularity.
    pub granularity_bytes: u64,
    /// Energy per byte accessed.
    pub energy_pj_per_byte: f64,
    /// Whether experts may be stored here.
    pub holds_experts: bool,
    /// Provenance of the figures.
    pub calibrated: Calibration,
}

impl Tier {
    /// Bytes available for experts: capacity minus reserved, or zero if experts may not live here.
    pub fn expert_budget_bytes(&self) -> u64 {
        if self.holds_experts {
            self.capacity_bytes - self.reserved_bytes
        } else {
            0
        }
    }
}

/// A directed copy path between two tiers.
#[derive(Debug, Clone)]
pub struct Link {
    /// Source tier index.
    pub from: usize,
    /// Destination tier index.
    pub to: usize,
    /// Bandwidth of one channel.
    pub bandwidth_bytes_per_s: f64,
    /// Latency to the first byte.
    pub latency_ns: f64,
    /// Transfer granularity.
    pub granularity_bytes: u64,
    /// Concurrent transfers.
    pub channels: u32,
    /// The largest request served in one go: a transfer is `ceil(bytes / request_bytes)`
    /// requests, each paying the latency (none: one request).
    pub request_bytes: Option<u64>,
    /// Provenance of the figures.
    pub calibrated: Calibration,
    /// How transfer times vary around the fixed figures (none: they do not).
    pub time_distribution: Option<time_distribution::TimeDistribution>,
}

/// Requests of at most `request_bytes` (none: no limit) a transfer of `bytes` takes (at least
/// one).
pub fn requests(bytes: u64, request_bytes: Option<u64>) -> u64 {
    request_bytes.map_or(1, |r| bytes.div_ceil(r.max(1)).max(1))
}

impl Link {
    /// Time of one uncontended transfer of `bytes`:
    /// `requests · latency + ceil(bytes / granularity) · granularity / bandwidth`.
    pub fn transfer_time_ns(&self, bytes: u64) -> f64 {
        let rounded = bytes.div_ceil(self.granularity_bytes) * self.granularity_bytes;
        requests(bytes, self.request_bytes) as f64 * self.latency_ns
            + rounded as f64 / self.bandwidth_bytes_per_s * 1e9
    }
}

/// A processor that computes experts where they are stored: a GPU from VRAM, a CPU from DRAM,
/// an NPU from SRAM.
#[derive(Debug, Clone)]
pub struct ComputeUnit {
    /// Unique name (`compute` for a profile with one `[compute]` section).
    pub name: String,
    /// The tier it reads weights from.
    pub tier: usize,
    /// Its figures.
    pub compute: Compute,
}

/// Compute throughput and energy.
#[derive(Debug, Clone)]
pub struct Compute {
    /// Cores the figures assume.
    pub cores: u32,
    /// Expert GEMV throughput per [`ComputeClass`], in weights per second (indexed as `ComputeClass::ALL`).
    pub expert_weights_per_s: [f64; 6],
    /// Non-expert throughput in weights per second.
    pub dense_weights_per_s: f64,
    /// Peak multiply-accumulates per second for batched expert kernels, per [`ComputeClass`]
    /// (never below the batch-1 rate; equal to it when the profile states no peak).
    pub peak_macs_per_s: [f64; 6],
    /// Peak multiply-accumulates per second of the dense part.
    pub dense_peak_macs_per_s: f64,
    /// Fixed cost of one kernel launch or dispatch.
    pub launch_ns: f64,
    /// Time to resume after waiting for a transfer, from the transfer's end.
    pub wake_ns: f64,
    /// Time spent handing a transfer to links with nothing in flight.
    pub issue_ns: f64,
    /// Energy per multiply-accumulate.
    pub energy_pj_per_mac: f64,
    /// Expert kernels take `1 + this` times as long while a link transfers, per
    /// [`ComputeClass`] (indexed as `ComputeClass::ALL`).
    pub expert_slowdown_while_transferring: [f64; 6],
    /// The first kernel on an expert after it arrives over a link takes `1 + this` times as
    /// long (negative: shorter), per [`ComputeClass`] (indexed as `ComputeClass::ALL`).
    pub expert_slowdown_after_load: [f64; 6],
    /// The last-level cache for expert weights, if the profile states one.
    pub weights_cache: Option<WeightsCache>,
    /// Provenance of the energy figure.
    pub energy_calibrated: Calibration,
    /// Provenance of the throughput figures.
    pub calibrated: Calibration,
}

/// A compute unit's last-level cache as it serves expert weights: whether an expert's weights
/// are still cached when its next kernel runs, by the [`Replacement`] rule and `capacity_bytes`.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightsCache {
    /// The cache's capacity for expert weights, as the replacement rule reads it.
    pub capacity_bytes: u64,
    /// How weights leave the cache.
    pub replacement: Replacement,
    /// Under [`Replacement::Random`], the mean time cached weights survive other tenants'
    /// evictions: weights also leave with probability `1 - exp(-t / lifetime_ns)` over `t` of
    /// wall time (none: only this unit's fetches evict).
    pub lifetime_ns: Option<f64>,
    /// Expert GEMV throughput on cached weights per [`ComputeClass`] (indexed as
    /// `ComputeClass::ALL`).
    pub expert_weights_per_s: [f64; 6],
    /// Transfers into the compute tier by how recently their destination was computed on:
    /// `(within_bytes, time_factor)` in increasing distance ([`landing_factor`]).
    pub landing: Vec<(u64, f64)>,
}

/// How expert weights leave a compute unit's last-level cache (`compute.weights_cache.replacement`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Replacement {
    /// A kernel runs at the cached rate when at most `capacity_bytes` of expert weights were
    /// computed (repeats counted) since the end of the same expert's last kernel, at the rate
    /// from memory otherwise: an LRU stack on a clock of bytes.
    #[default]
    Lru,
    /// Every byte of weights fetched from memory evicts a cached byte at random, so an expert's
    /// weights are still cached with probability `exp(-f / capacity_bytes)`, `f` the bytes
    /// fetched from memory since its last kernel; its kernel takes that mix of the cached and
    /// the memory time, and fetches the rest. The development VM's last-level cache behaved
    /// so: under random draws from 48 to 128 experts a kernel's time followed the fetched
    /// bytes since, not the bytes computed since (`examples/kernel_reuse.rs`, BENCHMARKS.md).
    Random,
}

impl Replacement {
    /// Whether this is the default ([`Replacement::Lru`]), which profiles need not write.
    pub fn is_lru(&self) -> bool {
        *self == Replacement::Lru
    }
}

/// The time factor of a transfer whose destination last held weights computed
/// `distance_bytes` of expert weights ago (`None`: a buffer never computed on), over `points`
/// (`WeightsCache::landing`): the first point's factor up to its distance, linear between
/// points, 1 beyond the last.
pub fn landing_factor(points: &[(u64, f64)], distance_bytes: Option<u64>) -> f64 {
    let Some(d) = distance_bytes else { return 1.0 };
    let Some(&(first, f0)) = points.first() else {
        return 1.0;
    };
    if d <= first {
        return f0;
    }
    for w in points.windows(2) {
        let ((d0, f0), (d1, f1)) = (w[0], w[1]);
        if d <= d1 {
            return f0 + (f1 - f0) * (d - d0) as f64 / (d1 - d0) as f64;
        }
    }
    1.0
}

impl Compute {
    /// Throughput of an expert kernel of class `class`, in weights per second.
    pub fn weights_per_s(&self, class: ComputeClass) -> f64 {
        self.expert_weights_per_s[class_index(class)]
    }

    /// Throughput for a weight format, or `None` for the untimed f32 reference. The 5- and
    /// 6-bit formats, which profiles give no column of, take a time per weight interpolated
    /// between q4's and q8's by bits per weight ([`WeightFormat::rate_between_q4_and_q8`]).
    pub fn format_weights_per_s(&self, format: WeightFormat) -> Option<f64> {
        if let Some(f) = format.rate_between_q4_and_q8() {
            let (q4, q8) = (
                self.weights_per_s(ComputeClass::Q4),
                self.weights_per_s(ComputeClass::Q8),
            );
            return Some(1.0 / ((1.0 - f) / q4 + f / q8));
        }
        format.compute_class().map(|c| self.weights_per_s(c))
    }

    /// Peak multiply-accumulates per second for batched kernels of class `class`.
    pub fn peak_macs_per_s(&self, class: ComputeClass) -> f64 {
        self.peak_macs_per_s[class_index(class)]
    }

    /// The roofline's crossover for an expert kernel of class `class`: the token count at
    /// which reading the weights once (`weights / rate`) takes as long as the arithmetic
    /// (`n · weights / peak`), i.e. `peak / rate`. Below it a kernel is bound by memory and
    /// extra tokens are nearly free; above it each token costs its MACs.
    pub fn crossover_tokens(&self, class: ComputeClass) -> f64 {
        self.peak_macs_per_s(class) / self.weights_per_s(class)
    }

    /// The dense part's crossover token count.
    pub fn dense_crossover_tokens(&self) -> f64 {
        self.dense_peak_macs_per_s / self.dense_weights_per_s
    }
}

pub(crate) fn class_index(class: ComputeClass) -> usize {
    ComputeClass::ALL
        .iter()
        .position(|&c| c == class)
        .expect("every class is in ALL")
}

/// One way to move bytes from one tier to another, link by link.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferPath {
    /// Link indices in the order bytes traverse them.
    pub links: Vec<usize>,
    /// Total uncontended time for the bytes it was computed for (store-and-forward per hop).
    pub time_ns: f64,
}

impl HardwareProfile {
    /// The primary compute unit's figures.
    pub fn compute(&self) -> &Compute {
        &self.units[0].compute
    }

    /// The unit called `name`.
    pub fn unit_index(&self, name: &str) -> Option<usize> {
        self.units.iter().position(|u| u.name == name)
    }

    /// The units' names, comma-separated (for messages naming what exists).
    pub fn unit_names(&self) -> String {
        let names: Vec<&str> = self.units.iter().map(|u| u.name.as_str()).collect();
        names.join(", ")
    }

    /// The tiers' names, comma-separated.
    pub fn tier_names(&self) -> String {
        let names: Vec<&str> = self.tiers.iter().map(|t| t.name.as_str()).collect();
        names.join(", ")
    }

    /// Index of the tier called `name`.
    pub fn tier_index(&self, name: &str) -> Option<usize> {
        self.tiers.iter().position(|t| t.name == name)
    }

    /// The fastest chain of links carrying `bytes` from tier `from` to tier `to`, with each hop
    /// completing before the next starts. `None` if no chain exists.
    pub fn fastest_path(&self, from: usize, to: usize, bytes: u64) -> Option<TransferPath> {
        let mut best: Option<TransferPath> = None;
        let mut stack = Vec::new();
        let mut visited = vec![false; self.tiers.len()];
        visited[from] = true;
        self.search_paths(from, to, bytes, 0.0, &mut visited, &mut stack, &mut best);
        best
    }

    #[allow(clippy::too_many_arguments)]
    fn search_paths(
        &self,
        at: usize,
        to: usize,
        bytes: u64,
        time_ns: f64,
        visited: &mut [bool],
        stack: &mut Vec<usize>,
        best: &mut Option<TransferPath>,
    ) {
        if at == to {
            if best.as_ref().is_none_or(|b| time_ns < b.time_ns) {
                *best = Some(TransferPath {
                    links: stack.clone(),
                    time_ns,
                });
            }
            return;
        }
        for (i, link) in self.links.iter().enumerate() {
            if link.from == at && !visited[link.to] {
                visited[link.to] = true;
                stack.push(i);
                self.search_paths(
                    link.to,
                    to,
                    bytes,
                    time_ns + link.transfer_time_ns(bytes),
                    visited,
                    stack,
                    best,
                );
                stack.pop();
                visited[link.to] = false;
            }
        }
    }

    /// The slowest tier that may hold experts: where every expert lives before it is loaded.
    pub fn home_tier(&self) -> usize {
        self.tiers
            .iter()
            .rposition(|t| t.holds_experts)
            .expect("validation guarantees the compute tier holds experts")
    }

    /// Figure groups: one per tier and link, the compute throughput, and the compute energy
    /// when its provenance is given separately.
    pub fn figure_groups(&self) -> usize {
        let energy = self
            .units
            .iter()
            .filter(|u| u.compute.energy_calibrated != u.compute.calibrated)
            .count();
        self.tiers.len()
            + self.links.len()
            + self.units.len()
            + energy
            + usize::from(self.power.is_some())
    }

    /// Every figure group that is not datasheet or measured, as `(group, calibration)`.
    pub fn uncalibrated_groups(&self) -> Vec<(String, Calibration)> {
        let mut groups = Vec::new();
        for t in &self.tiers {
            if !t.calibrated.is_calibrated() {
                groups.push((format!("tier {}", t.name), t.calibrated));
            }
        }
        for l in &self.links {
            if !l.calibrated.is_calibrated() {
                groups.push((
                    format!(
                        "link {} -> {}",
                        self.tiers[l.from].name, self.tiers[l.to].name
                    ),
                    l.calibrated,
                ));
            }
        }
        for u in &self.units {
            let label = if self.units.len() == 1 {
                "compute".to_string()
            } else {
                format!("compute unit {}", u.name)
            };
            let c = &u.compute;
            if !c.calibrated.is_calibrated() {
                groups.push((label.clone(), c.calibrated));
            }
            if c.energy_calibrated != c.calibrated && !c.energy_calibrated.is_calibrated() {
                groups.push((format!("{label} energy"), c.energy_calibrated));
            }
        }
        if let Some(p) = &self.power
            && !p.calibrated.is_calibrated()
        {
            groups.push(("static power".to_string(), p.calibrated));
        }
        groups
    }
}

/// Loads a profile by preset name or file path, or a composition `GPU+HOST` of two
/// ([`compose`]). A name that matches a shipped preset wins; anything else is read as a file.
pub fn load(name_or_path: &str) -> Result<HardwareProfile> {
    let (label, spec) = load_spec(name_or_path)?;
    spec.validate(&label).map_err(Error::from)
}

/// The spec `load` validates, with the label that names it in errors: one profile's, or the
/// composition of two (each part validated on its own first, so that its errors name its file).
pub fn load_spec(name_or_path: &str) -> Result<(String, HardwareProfileSpec)> {
    match ProfileRef::parse(name_or_path, exists_here)? {
        ProfileRef::One(name) => read_spec(name),
        ProfileRef::Composed { gpu, host } => compose_parts(name_or_path, gpu, host),
    }
}

/// Whether `name` is a shipped preset or an existing path (relative to the working directory):
/// the `exists` of [`ProfileRef::parse`] for command-line arguments.
pub fn exists_here(name: &str) -> bool {
    presets::get(name).is_some() || std::path::Path::new(name).exists()
}

/// A hardware-profile argument: one profile, or `GPU+HOST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileRef<'a> {
    /// A preset name or a file path.
    One(&'a str),
    /// The GPU side of `gpu` on the host side of `host`.
    Composed {
        /// The GPU profile, as given.
        gpu: &'a str,
        /// The host profile, as given.
        host: &'a str,
    },
}

impl<'a> ProfileRef<'a> {
    /// Reads an argument. It is one profile when it names a preset or an existing file (`exists`
    /// says which names do, so a path with a `+` in it still works) or holds no `+`; otherwise
    /// it is split at the one `+` that leaves a preset or existing file on both sides.
    pub fn parse(arg: &'a str, exists: impl Fn(&str) -> bool) -> Result<ProfileRef<'a>> {
        if exists(arg) || !arg.contains('+') {
            return Ok(ProfileRef::One(arg));
        }
        let splits: Vec<(&str, &str)> = arg
            .match_indices('+')
            .map(|(i, _)| (&arg[..i], &arg[i + 1..]))
            .collect();
        let both: Vec<&(&str, &str)> = splits
            .iter()
            .filter(|(gpu, host)| exists(gpu) && exists(host))
            .collect();
        let usage = |reason: String| Error::usage(format!("{arg}: {reason}"));
        let presets = || presets::names().join(", ");
        match both[..] {
            [&(gpu, host)] => Ok(ProfileRef::Composed { gpu, host }),
            [] if splits.len() == 1 => {
                let (gpu, host) = splits[0];
                let [(side, part)] = [("GPU", gpu), ("host", host)]
                    .into_iter()
                    .filter(|(_, p)| !exists(p))
                    .collect::<Vec<_>>()[..]
                else {
                    return Err(usage(format!(
                        "composing GPU+HOST, but neither `{gpu}` nor `{host}` is a hardware profile preset or file (presets: {})",
                        presets()
                    )));
                };
                Err(usage(if part.is_empty() {
                    format!("composing GPU+HOST, but the {side} profile is missing")
                } else {
                    format!(
                        "composing GPU+HOST, but the {side} profile `{part}` is no hardware profile preset or file (presets: {})",
                        presets()
                    )
                }))
            }
            [] => {
                let pieces: Vec<&str> = arg.split('+').collect();
                Err(usage(if pieces.iter().all(|p| exists(p)) {
                    format!(
                        "a composed profile is two profiles, GPU+HOST; this names {}",
                        pieces.len()
                    )
                } else {
                    format!(
                        "no hardware profile preset or file, and no `+` in it splits it into two (GPU+HOST) (presets: {})",
                        presets()
                    )
                }))
            }
            _ => Err(usage(format!(
                "composing GPU+HOST is ambiguous: {} each name two profiles; rename a file",
                both.iter()
                    .map(|(g, h)| format!("`{g}` + `{h}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ))),
        }
    }
}

/// Reads one profile's spec (not validated) and its label.
fn read_spec(name_or_path: &str) -> Result<(String, HardwareProfileSpec)> {
    let (label, text) = crate::preset::read_source(
        name_or_path,
        presets::get(name_or_path),
        "hardware profile",
        &presets::names(),
    )?;
    let spec: HardwareProfileSpec = crate::config::parse_toml(&label, &text)?;
    Ok((label, spec))
}

/// Reads, validates and composes `gpu` and `host`; `label` (the argument as given) names the
/// composition in errors.
pub fn compose_parts(label: &str, gpu: &str, host: &str) -> Result<(String, HardwareProfileSpec)> {
    let mut parts = Vec::with_capacity(2);
    for name in [gpu, host] {
        let (part_label, spec) = read_spec(name)?;
        spec.validate(&part_label)?;
        parts.push(spec);
    }
    let spec = compose::compose(&parts[0], gpu, &parts[1], host)
        .map_err(|reason| InputError::new(label, format!("cannot compose: {reason}")))?;
    Ok((label.to_string(), spec))
}

/// Parses and validates the text of a profile; `label` names it in errors.
pub fn parse(label: &str, text: &str) -> Result<HardwareProfile, InputError> {
    let spec: HardwareProfileSpec = crate::config::parse_toml(label, text)?;
    spec.validate(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_validates() {
        for name in presets::names() {
            let profile = load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(profile.name, name, "preset key and `name` field must agree");
        }
    }

    #[test]
    fn transfer_time_rounds_to_granularity() {
        let link = Link {
            from: 1,
            to: 0,
            bandwidth_bytes_per_s: 1e9,
            latency_ns: 100.0,
            granularity_bytes: 64,
            channels: 1,
            request_bytes: None,
            calibrated: Calibration::Assumed,
            time_distribution: None,
        };
        // 65 bytes occupy two 64-byte units: 128 B at 1 GB/s = 128 ns.
        assert_eq!(link.transfer_time_ns(65), 228.0);
        assert_eq!(link.transfer_time_ns(64), 164.0);
        // Requests of at most 64 bytes: 65 bytes are two, each paying the latency.
        let limited = Link {
            request_bytes: Some(64),
            ..link
        };
        assert_eq!(limited.transfer_time_ns(65), 328.0);
        assert_eq!(limited.transfer_time_ns(64), 164.0);
        assert_eq!(requests(0, Some(64)), 1);
        assert_eq!(requests(1 << 20, None), 1);
    }
}
