//! Composed profiles: the GPU side of one profile on the host side of another, written
//! `GPU+HOST` wherever a hardware profile is named, so that users need not write the
//! combination.
//!
//! The composition is made on the specs, before validation, and the result is validated once
//! like any profile. The rules:
//!
//! - The **GPU side** of the first profile is its GPU memory (every tier of kind `vram` or
//!   `hbm`), the compute units that read from it, and its links that touch it. It must have
//!   GPU memory, a unit on it, and a link between it and its own DRAM (the PCIe or NVLink-C2C
//!   link the profile's figures were written for).
//! - The **host side** of the second profile is all of it: every tier (DRAM, storage), link and
//!   compute unit. It must have no GPU memory (two GPU profiles do not compose) and exactly one
//!   DRAM tier, which the GPU's links join.
//! - **Tiers**: the GPU's, then the host's, each in its own order; the GPU's memory must read
//!   at least as fast as every host tier (tiers are ordered fastest first).
//! - **Links**: the GPU profile's links that touch its GPU memory, with their DRAM end moved to
//!   the host's DRAM tier (figures unchanged: the link is the GPU's), then the host's links. A
//!   GPU link to anything but DRAM or GPU memory (GPUDirect storage, say) is refused.
//! - **Units**: the GPU's (the first is the primary unit), then the host's. A single
//!   `[compute]` section becomes a unit called `gpu` on the GPU side, `cpu` on the host side.
//! - **Names** of tiers and units must not clash between the sides.
//! - `compute_from_storage` is the host's; there is no `[power]`: each profile's static power
//!   covers its whole machine, so neither is the composition's.
//! - `name` is `GPU_NAME+HOST_NAME`; `sources` are the GPU's then the host's, each prefixed with
//!   its profile's name.

use crate::units::format_bandwidth;

use super::spec::{ComputeSpec, HardwareProfileSpec, LinkSpec, PROFILE_SCHEMA_VERSION, TierKind};

/// Whether tiers of this kind are GPU memory.
pub fn is_gpu_memory(kind: TierKind) -> bool {
    matches!(kind, TierKind::Vram | TierKind::Hbm)
}

/// The units of `spec` as `[[compute_units]]` entries (name and tier set); a single
/// `[compute]` section becomes one unit called `single_name` on `compute_tier`.
fn units(spec: &HardwareProfileSpec, single_name: &str) -> Vec<ComputeSpec> {
    match &spec.compute {
        Some(c) => {
            let mut unit = c.clone();
            unit.name = Some(single_name.to_string());
            unit.tier = spec.compute_tier.clone();
            vec![unit]
        }
        None => spec.compute_units.clone(),
    }
}

fn tier_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Composes the GPU side of `gpu` with the host side of `host`. Both specs must be valid
/// profiles on their own (the caller validates them first); `gpu_arg` and `host_arg` are the
/// names the user gave, for messages. The error is the reason, in one line.
pub fn compose(
    gpu: &HardwareProfileSpec,
    gpu_arg: &str,
    host: &HardwareProfileSpec,
    host_arg: &str,
) -> Result<HardwareProfileSpec, String> {
    let gpu_tiers: Vec<_> = gpu.tiers.iter().filter(|t| is_gpu_memory(t.kind)).collect();
    let host_gpu_tiers: Vec<&str> = host
        .tiers
        .iter()
        .filter(|t| is_gpu_memory(t.kind))
        .map(|t| t.name.as_str())
        .collect();
    if gpu_tiers.is_empty() {
        let swap = if host_gpu_tiers.is_empty() {
            String::new()
        } else {
            format!("; the GPU profile comes first: {host_arg}+{gpu_arg}")
        };
        return Err(format!(
            "`{gpu_arg}` has no GPU memory (no tier of kind vram or hbm), so it has no GPU side to compose{swap}"
        ));
    }
    if !host_gpu_tiers.is_empty() {
        return Err(format!(
            "`{host_arg}` has GPU memory (tier {}), so both are GPU profiles: the host side must be a profile without vram or hbm",
            tier_list(&host_gpu_tiers)
        ));
    }
    let host_dram: Vec<&str> = host
        .tiers
        .iter()
        .filter(|t| t.kind == TierKind::Dram)
        .map(|t| t.name.as_str())
        .collect();
    let host_dram = match host_dram[..] {
        [one] => one,
        [] => {
            return Err(format!(
                "`{host_arg}` has no DRAM tier (tiers: {}): the GPU's link needs host DRAM to copy from",
                tier_list(
                    &host
                        .tiers
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                )
            ));
        }
        _ => {
            return Err(format!(
                "`{host_arg}` has {} DRAM tiers ({}): the GPU's link cannot tell which one it joins",
                host_dram.len(),
                tier_list(&host_dram)
            ));
        }
    };

    let is_gpu_tier = |name: &str| gpu_tiers.iter().any(|t| t.name == name);
    let gpu_kind = |name: &str| gpu.tiers.iter().find(|t| t.name == name).map(|t| t.kind);

    // Tiers: the GPU's memory first, then every host tier, which must be no faster.
    let slowest_gpu = gpu_tiers
        .iter()
        .min_by(|a, b| {
            a.read_bandwidth_bytes_per_s
                .total_cmp(&b.read_bandwidth_bytes_per_s)
        })
        .expect("at least one GPU tier");
    if let Some(fast) = host
        .tiers
        .iter()
        .find(|t| t.read_bandwidth_bytes_per_s > slowest_gpu.read_bandwidth_bytes_per_s)
    {
        return Err(format!(
            "`{host_arg}`'s tier `{}` reads at {}, faster than `{gpu_arg}`'s GPU memory `{}` at {}: tiers are ordered fastest first, GPU memory first",
            fast.name,
            format_bandwidth(fast.read_bandwidth_bytes_per_s),
            slowest_gpu.name,
            format_bandwidth(slowest_gpu.read_bandwidth_bytes_per_s)
        ));
    }
    if let Some(clash) = host.tiers.iter().find(|t| is_gpu_tier(&t.name)) {
        return Err(format!(
            "both have a tier named `{}` (`{gpu_arg}`'s GPU memory and `{host_arg}`'s {} tier): rename one",
            clash.name,
            clash.kind.name()
        ));
    }
    let mut tiers: Vec<_> = gpu_tiers.iter().map(|t| (*t).clone()).collect();
    tiers.extend(host.tiers.iter().cloned());

    // Links: the GPU's, its DRAM end moved to the host's DRAM; then the host's.
    let mut links: Vec<LinkSpec> = Vec::new();
    let mut joins_host = false;
    for l in &gpu.links {
        let (from_gpu, to_gpu) = (is_gpu_tier(&l.from), is_gpu_tier(&l.to));
        if !from_gpu && !to_gpu {
            continue; // the GPU profile's own host side
        }
        let mut link = l.clone();
        for (end, on_gpu) in [(&mut link.from, from_gpu), (&mut link.to, to_gpu)] {
            if on_gpu {
                continue;
            }
            match gpu_kind(end) {
                Some(TierKind::Dram) => {
                    *end = host_dram.to_string();
                    joins_host = true;
                }
                kind => {
                    return Err(format!(
                        "`{gpu_arg}`'s link {} -> {} joins its GPU memory to its own {} tier `{end}`, which the host side replaces: only links between GPU memory and DRAM carry over",
                        l.from,
                        l.to,
                        kind.map_or("unknown", TierKind::name)
                    ));
                }
            }
        }
        links.push(link);
    }
    if !joins_host {
        return Err(format!(
            "`{gpu_arg}` has no link between its GPU memory and its DRAM, so nothing would join the GPU to `{host_arg}`'s DRAM"
        ));
    }
    links.extend(host.links.iter().cloned());

    // Units: the GPU's units on its memory, then the host's.
    let mut compute_units: Vec<ComputeSpec> = units(gpu, "gpu")
        .into_iter()
        .filter(|u| u.tier.as_deref().is_some_and(is_gpu_tier))
        .collect();
    if compute_units.is_empty() {
        return Err(format!(
            "`{gpu_arg}` has no compute unit on its GPU memory ({})",
            tier_list(
                &gpu_tiers
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
            )
        ));
    }
    for unit in units(host, "cpu") {
        let name = unit.name.clone().unwrap_or_default();
        if compute_units
            .iter()
            .any(|u| u.name.as_deref() == Some(&name))
        {
            return Err(format!(
                "both have a compute unit named `{name}`: rename one in `{host_arg}`"
            ));
        }
        compute_units.push(unit);
    }

    let mut sources: Vec<String> = gpu
        .sources
        .iter()
        .map(|s| format!("{}: {s}", gpu.name))
        .collect();
    sources.extend(host.sources.iter().map(|s| format!("{}: {s}", host.name)));

    Ok(HardwareProfileSpec {
        schema_version: PROFILE_SCHEMA_VERSION,
        name: format!("{}+{}", gpu.name, host.name),
        description: format!(
            "the GPU side of {} ({}) on the host side of {} ({})",
            gpu.name, gpu.description, host.name, host.description
        ),
        sources,
        compute_tier: None,
        tiers,
        links,
        compute: None,
        compute_units,
        compute_from_storage: host.compute_from_storage,
        power: None,
    })
}
