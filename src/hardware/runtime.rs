//! Runtime profiles: what a software stack achieves on a device, kept apart from the hardware
//! profile (datasheet figures only).
//!
//! A runtime is a handful of named parameters: the fraction of every link's bandwidth a
//! transfer achieves and a fixed cost per transfer (so the achieved bandwidth grows with the
//! transfer's size), the fraction of its roofline every compute unit's kernels reach, and fixed
//! costs per layer step and per token (framework, kernel launches, synchronisation, sampling).
//! `ideal` (efficiencies 1, costs 0, built in) changes nothing. Runtimes are files beside the
//! hardware profiles (`hardware-profiles/runtimes/*.toml`), each saying where its figures come
//! from; an experiment names one with `hardware.runtime` (a file relative to it, or `ideal`)
//! and may override any parameter in `[runtime]`, which is what `moesim validate --fit` varies.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::HardwareProfile;
use crate::error::InputError;

/// The parameters, by the name `[runtime]` and `--fit` use.
pub const PARAMS: [&str; 5] = [
    "link_efficiency",
    "transfer_overhead_ns",
    "compute_efficiency",
    "layer_overhead_ns",
    "token_overhead_ns",
];

/// Runtime parameters as written (`[params]` of a runtime file, or an experiment's
/// `[runtime]`); a missing one keeps the value underneath (the named runtime's, or ideal's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeParamsSpec {
    /// Fraction of each link's bandwidth a transfer achieves, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_efficiency: Option<f64>,
    /// Fixed cost added to every transfer hop (driver, copy set-up), in ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_overhead_ns: Option<f64>,
    /// Fraction of its roofline every compute unit's kernels reach, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_efficiency: Option<f64>,
    /// Fixed cost of every layer step on the primary unit (framework, launches, sync), in ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_overhead_ns: Option<f64>,
    /// Fixed cost of every token (sampling, framework), in ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_overhead_ns: Option<f64>,
}

impl RuntimeParamsSpec {
    /// Whether it overrides nothing.
    pub fn is_empty(&self) -> bool {
        *self == RuntimeParamsSpec::default()
    }
}

/// A runtime file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSpec {
    /// Must be 1.
    pub schema_version: u32,
    /// Short identifier.
    pub name: String,
    /// What software stack it describes.
    pub description: String,
    /// Where the figures come from: fitted on which observation (with the command), or
    /// measured how.
    pub provenance: String,
    /// The parameters (missing ones ideal).
    #[serde(default)]
    pub params: RuntimeParamsSpec,
}

/// Validated runtime parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Runtime {
    /// Name (`ideal` for the default).
    pub name: String,
    /// Where the figures come from.
    pub provenance: String,
    /// Fraction of each link's bandwidth a transfer achieves.
    pub link_efficiency: f64,
    /// Fixed cost added to every transfer hop, in ns.
    pub transfer_overhead_ns: f64,
    /// Fraction of its roofline every compute unit's kernels reach.
    pub compute_efficiency: f64,
    /// Fixed cost of every layer step on the primary unit, in ns.
    pub layer_overhead_ns: f64,
    /// Fixed cost of every token, in ns.
    pub token_overhead_ns: f64,
}

/// Largest fixed cost accepted (10 s).
pub const MAX_OVERHEAD_NS: f64 = 1e10;

impl Runtime {
    /// Efficiencies 1, costs 0: the hardware profile's figures as they are.
    pub fn ideal() -> Runtime {
        Runtime {
            name: "ideal".into(),
            provenance: "no software overhead: the hardware profile's figures as they are".into(),
            link_efficiency: 1.0,
            transfer_overhead_ns: 0.0,
            compute_efficiency: 1.0,
            layer_overhead_ns: 0.0,
            token_overhead_ns: 0.0,
        }
    }

    /// Whether it changes nothing.
    pub fn is_ideal(&self) -> bool {
        self.link_efficiency == 1.0
            && self.transfer_overhead_ns == 0.0
            && self.compute_efficiency == 1.0
            && self.layer_overhead_ns == 0.0
            && self.token_overhead_ns == 0.0
    }

    /// Parameter `key` (one of [`PARAMS`]).
    pub fn get(&self, key: &str) -> Option<f64> {
        Some(match key {
            "link_efficiency" => self.link_efficiency,
            "transfer_overhead_ns" => self.transfer_overhead_ns,
            "compute_efficiency" => self.compute_efficiency,
            "layer_overhead_ns" => self.layer_overhead_ns,
            "token_overhead_ns" => self.token_overhead_ns,
            _ => return None,
        })
    }

    /// This runtime with `p`'s parameters over it, checked; `file` and `prefix` name the keys
    /// in errors (`runtime.link_efficiency`).
    pub fn with(
        &self,
        p: &RuntimeParamsSpec,
        file: &str,
        prefix: &str,
    ) -> Result<Runtime, InputError> {
        let mut r = self.clone();
        let fraction = |v: Option<f64>, key: &str, into: &mut f64| -> Result<(), InputError> {
            if let Some(v) = v {
                if !(v > 0.0 && v <= 1.0) {
                    return Err(InputError::at_key(
                        file,
                        format!("{prefix}{key}"),
                        format!("{v} is not a fraction in (0, 1]"),
                    ));
                }
                *into = v;
            }
            Ok(())
        };
        let cost = |v: Option<f64>, key: &str, into: &mut f64| -> Result<(), InputError> {
            if let Some(v) = v {
                if !(0.0..=MAX_OVERHEAD_NS).contains(&v) {
                    return Err(InputError::at_key(
                        file,
                        format!("{prefix}{key}"),
                        format!("{v} ns is outside 0 to {MAX_OVERHEAD_NS:e} ns"),
                    ));
                }
                *into = v;
            }
            Ok(())
        };
        fraction(p.link_efficiency, "link_efficiency", &mut r.link_efficiency)?;
        cost(
            p.transfer_overhead_ns,
            "transfer_overhead_ns",
            &mut r.transfer_overhead_ns,
        )?;
        fraction(
            p.compute_efficiency,
            "compute_efficiency",
            &mut r.compute_efficiency,
        )?;
        cost(
            p.layer_overhead_ns,
            "layer_overhead_ns",
            &mut r.layer_overhead_ns,
        )?;
        cost(
            p.token_overhead_ns,
            "token_overhead_ns",
            &mut r.token_overhead_ns,
        )?;
        Ok(r)
    }

    /// `profile` as this runtime achieves it: every link's bandwidth times `link_efficiency`
    /// and its latency plus `transfer_overhead_ns`, every unit's rates (batch-1, peak, dense)
    /// times `compute_efficiency`; the per-layer and per-token costs ride along for the
    /// simulator. The ideal runtime returns it unchanged.
    pub fn apply(&self, mut profile: HardwareProfile) -> HardwareProfile {
        for l in &mut profile.links {
            l.bandwidth_bytes_per_s *= self.link_efficiency;
            l.latency_ns += self.transfer_overhead_ns;
        }
        for u in &mut profile.units {
            let c = &mut u.compute;
            for r in c
                .expert_weights_per_s
                .iter_mut()
                .chain(c.peak_macs_per_s.iter_mut())
            {
                *r *= self.compute_efficiency;
            }
            c.dense_weights_per_s *= self.compute_efficiency;
            c.dense_peak_macs_per_s *= self.compute_efficiency;
        }
        profile.runtime = self.clone();
        profile
    }
}

/// Reads and validates a runtime file.
pub fn load(path: &str) -> Result<Runtime, crate::error::Error> {
    let text = crate::input::read_to_string(Path::new(path))?;
    let spec: RuntimeSpec = crate::config::parse_toml(path, &text)?;
    if spec.schema_version != 1 {
        return Err(InputError::at_key(
            path,
            "schema_version",
            format!("{} is not supported (expected 1)", spec.schema_version),
        )
        .into());
    }
    if spec.provenance.trim().is_empty() {
        return Err(
            InputError::at_key(path, "provenance", "must say where the figures come from").into(),
        );
    }
    let mut r = Runtime::ideal().with(&spec.params, path, "params.")?;
    r.name = spec.name;
    r.provenance = spec.provenance;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ideal_runtime_changes_no_figure() {
        let p = crate::hardware::load("pc-rtx3060-12gb-ddr5").unwrap();
        let q = Runtime::ideal().apply(p.clone());
        for (a, b) in p.links.iter().zip(&q.links) {
            assert_eq!(a.bandwidth_bytes_per_s, b.bandwidth_bytes_per_s);
            assert_eq!(a.latency_ns, b.latency_ns);
        }
        for (a, b) in p.units.iter().zip(&q.units) {
            assert_eq!(
                a.compute.expert_weights_per_s,
                b.compute.expert_weights_per_s
            );
            assert_eq!(a.compute.peak_macs_per_s, b.compute.peak_macs_per_s);
        }
    }

    #[test]
    fn parameters_out_of_range_are_refused_by_key() {
        let bad = RuntimeParamsSpec {
            compute_efficiency: Some(1.5),
            ..Default::default()
        };
        let e = Runtime::ideal()
            .with(&bad, "x.toml", "runtime.")
            .unwrap_err();
        assert!(e.to_string().contains("runtime.compute_efficiency"), "{e}");
        let bad = RuntimeParamsSpec {
            layer_overhead_ns: Some(-1.0),
            ..Default::default()
        };
        assert!(Runtime::ideal().with(&bad, "x.toml", "runtime.").is_err());
    }
}
