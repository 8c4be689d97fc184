//! How a model's experts fit a device: per tier, how many experts its budget holds, and how
//! long one expert takes to arrive from each slower tier.

use serde::Serialize;

use super::HardwareProfile;
use crate::moe::MoeSpec;
use crate::quant::format::WeightFormat;
use crate::units::format_bytes;

/// The fit of one expert-holding tier at one format.
#[derive(Debug, Clone, Serialize)]
pub struct TierFit {
    /// Tier name.
    pub tier: String,
    /// Bytes available to experts.
    pub expert_budget_bytes: u64,
    /// Whole experts that fit the budget.
    pub experts_fit: u64,
    /// Fraction of all routed experts of the model that fit.
    pub fraction_of_experts: f64,
    /// Uncontended time to bring one expert from each slower expert-holding tier.
    pub load_from: Vec<LoadTime>,
}

/// Time for one expert to arrive from a slower tier.
#[derive(Debug, Clone, Serialize)]
pub struct LoadTime {
    /// Source tier.
    pub from: String,
    /// Uncontended time along the fastest link chain, or `None` when no chain exists.
    pub time_ns: Option<f64>,
    /// Tier names along the chain, source first.
    pub path: Vec<String>,
}

/// Computes the fit of `moe`'s routed experts at `format` on every expert-holding tier.
pub fn expert_fit(profile: &HardwareProfile, moe: &MoeSpec, format: WeightFormat) -> Vec<TierFit> {
    let expert_bytes = moe.expert_bytes(format);
    let all_experts = moe.n_moe_layers() as u64 * moe.n_experts as u64;
    let mut fits = Vec::new();
    for (i, tier) in profile.tiers.iter().enumerate() {
        if !tier.holds_experts {
            continue;
        }
        let budget = tier.expert_budget_bytes();
        let experts_fit = budget / expert_bytes;
        let mut load_from = Vec::new();
        for (j, slower) in profile.tiers.iter().enumerate().skip(i + 1) {
            if !slower.holds_experts {
                continue;
            }
            let (time_ns, path) = match profile.fastest_path(j, i, expert_bytes) {
                Some(p) => {
                    let mut names = vec![profile.tiers[j].name.clone()];
                    names.extend(
                        p.links
                            .iter()
                            .map(|&l| profile.tiers[profile.links[l].to].name.clone()),
                    );
                    (Some(p.time_ns), names)
                }
                None => (None, Vec::new()),
            };
            load_from.push(LoadTime {
                from: slower.name.clone(),
                time_ns,
                path,
            });
        }
        fits.push(TierFit {
            tier: tier.name.clone(),
            expert_budget_bytes: budget,
            experts_fit,
            fraction_of_experts: experts_fit.min(all_experts) as f64 / all_experts as f64,
            load_from,
        });
    }
    fits
}

/// Problems worth a warning when running `moe` on `profile`, one sentence each: the compute
/// tier's expert budget holds no expert at any format (or at `format`), or the home tier cannot
/// hold every expert at `format`.
pub fn fit_warnings(
    profile: &HardwareProfile,
    moe: &MoeSpec,
    format: Option<WeightFormat>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let compute = &profile.tiers[profile.compute_tier];
    let budget = compute.expert_budget_bytes();
    let (smallest_bytes, smallest_format) = WeightFormat::DEPLOYABLE
        .iter()
        .map(|&f| (moe.expert_bytes(f), f))
        .min()
        .expect("formats exist");
    if budget < smallest_bytes {
        warnings.push(format!(
            "the expert budget of compute tier `{}` of {} ({}) holds no expert of {} at any format (smallest: {} at {})",
            compute.name,
            profile.name,
            format_bytes(budget as f64),
            moe.name,
            format_bytes(smallest_bytes as f64),
            smallest_format,
        ));
        return warnings;
    }
    if let Some(format) = format {
        let expert_bytes = moe.expert_bytes(format);
        if budget < expert_bytes {
            warnings.push(format!(
                "the expert budget of compute tier `{}` of {} ({}) holds no {} expert of {} ({})",
                compute.name,
                profile.name,
                format_bytes(budget as f64),
                format,
                moe.name,
                format_bytes(expert_bytes as f64),
            ));
        }
        let home = &profile.tiers[profile.home_tier()];
        let n_all = moe.n_moe_layers() as u64 * moe.n_experts as u64;
        let all_bytes = expert_bytes * n_all;
        if home.expert_budget_bytes() < all_bytes {
            warnings.push(format!(
                "the home tier `{}` of {} cannot hold all {n_all} experts of {} at {} ({} > budget {})",
                home.name,
                profile.name,
                moe.name,
                format,
                format_bytes(all_bytes as f64),
                format_bytes(home.expert_budget_bytes() as f64),
            ));
        }
    }
    warnings
}
