//! Dynamic precision (the seed's §4.2): a scenario timeline of device state lowers each
//! expert's precision at run time.
//!
//! The seed's rule covers thermal state only: *normal* keeps the planned format, *warm* is one
//! step down the precision ladder, *critical* is the minimum precision. It lists battery level
//! and memory pressure as further triggers without rules; moesim applies one more step down for
//! each of them when past its threshold (`battery_low_pct`, `memory_pressure_high`), never below
//! the minimum. There are no hysteresis or switching costs in the seed; moesim charges the
//! real cost of a switch: a resident copy above the current ceiling is dropped and the lower
//! copy is fetched like any miss.
//!
//! *Low precision on miss* (HOBBIT): when a missed expert's gate weight is below a threshold,
//! its low-bit copy is fetched instead of the planned one. Both features need every ladder
//! copy stored in the home tier; the simulation reports that storage.

use serde::{Deserialize, Serialize};

use crate::engine::TimeNs;
use crate::quant::WeightFormat;

/// Thermal state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Thermal {
    /// Planned precision.
    #[default]
    Normal,
    /// One step down.
    Warm,
    /// Minimum precision.
    Critical,
}

/// One change of device state at `at_ms` of simulated time; fields left out keep their value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateChange {
    /// Simulated time, milliseconds.
    pub at_ms: f64,
    /// Thermal state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thermal: Option<Thermal>,
    /// Battery level, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_pct: Option<f64>,
    /// Share of the compute tier taken by the KV cache and activations, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_pressure: Option<f64>,
}

fn default_battery_low() -> f64 {
    20.0
}
fn default_pressure_high() -> f64 {
    0.8
}

/// `[precision.dynamic]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicSpec {
    /// The precision ladder (default: Q2_K, Q3_K, Q4_K and the plan's formats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ladder: Option<Vec<WeightFormat>>,
    /// The minimum precision (default: the ladder's lowest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<WeightFormat>,
    /// Below this battery level, one step down.
    #[serde(default = "default_battery_low")]
    pub battery_low_pct: f64,
    /// At or above this memory pressure, one step down.
    #[serde(default = "default_pressure_high")]
    pub memory_pressure_high: f64,
    /// The state changes, in time order. The state starts normal, at 100 % battery and no
    /// memory pressure.
    #[serde(default)]
    pub timeline: Vec<StateChange>,
}

/// `[precision.low_on_miss]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LowOnMissSpec {
    /// A missed expert whose gate weight is below this fetches its low copy.
    pub gate_below: f64,
    /// The low copy's format (default: the ladder's minimum with a dynamic timeline, Q2_K
    /// without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<WeightFormat>,
}

impl LowOnMissSpec {
    /// Checks parameters; the error names the field.
    pub fn validate(&self) -> Result<(), crate::param::ParamError> {
        crate::param::within("gate_below", self.gate_below, 0.0, 1.0)?;
        if let Some(f) = self.format
            && f.compute_class().is_none()
        {
            return Err(crate::param::ParamError::new(
                "format",
                f,
                "is the untimed quality reference; pick a deployable format",
            ));
        }
        Ok(())
    }
}

/// How far down the ladder the state puts every expert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lowering {
    /// This many steps (0: the plan).
    Steps(u8),
    /// The minimum precision.
    ToMinimum,
}

/// The resolved timeline: `(from time, lowering)`, sorted by time, starting at 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrecisionTimeline {
    /// The changes.
    pub changes: Vec<(TimeNs, Lowering)>,
}

impl PrecisionTimeline {
    /// The lowering in force at `t`.
    pub fn at(&self, t: TimeNs) -> Lowering {
        let i = self.changes.partition_point(|&(at, _)| at <= t);
        if i == 0 {
            Lowering::Steps(0)
        } else {
            self.changes[i - 1].1
        }
    }
}

impl DynamicSpec {
    /// Checks the spec; the error names the key.
    pub fn validate(&self) -> Result<(), crate::param::ParamError> {
        use crate::param::{ParamError, within};
        within("battery_low_pct", self.battery_low_pct, 0.0, 100.0)?;
        within("memory_pressure_high", self.memory_pressure_high, 0.0, 1.0)?;
        let max_ms = crate::units::MAX_DURATION_NS / 1e6;
        let mut last = 0.0;
        for (i, c) in self.timeline.iter().enumerate() {
            let key = |field: &str| format!("timeline[{i}].{field}");
            if !(c.at_ms.is_finite() && c.at_ms >= last && c.at_ms <= max_ms) {
                return Err(ParamError::new(
                    key("at_ms"),
                    crate::param::show(c.at_ms),
                    format!(
                        "must be finite, not before the previous entry ({last}) and at most 10^9 ms (11.6 days)"
                    ),
                ));
            }
            last = c.at_ms;
            if let Some(b) = c.battery_pct {
                within(&key("battery_pct"), b, 0.0, 100.0)?;
            }
            if let Some(m) = c.memory_pressure {
                within(&key("memory_pressure"), m, 0.0, 1.0)?;
            }
        }
        Ok(())
    }

    /// The lowering over time.
    pub fn resolve(&self) -> PrecisionTimeline {
        let (mut thermal, mut battery, mut pressure) = (Thermal::Normal, 100.0, 0.0);
        let mut changes: Vec<(TimeNs, Lowering)> = Vec::new();
        for c in &self.timeline {
            thermal = c.thermal.unwrap_or(thermal);
            battery = c.battery_pct.unwrap_or(battery);
            pressure = c.memory_pressure.unwrap_or(pressure);
            let lowering = if thermal == Thermal::Critical {
                Lowering::ToMinimum
            } else {
                Lowering::Steps(
                    (thermal == Thermal::Warm) as u8
                        + (battery < self.battery_low_pct) as u8
                        + (pressure >= self.memory_pressure_high) as u8,
                )
            };
            let at = (c.at_ms * 1e6).round() as TimeNs;
            match changes.last_mut() {
                Some(last) if last.0 == at => last.1 = lowering,
                _ => changes.push((at, lowering)),
            }
        }
        PrecisionTimeline { changes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_rule_and_the_added_triggers() {
        let spec: DynamicSpec = toml::from_str(
            r#"
            timeline = [
              { at_ms = 0, thermal = "normal" },
              { at_ms = 10, thermal = "warm" },
              { at_ms = 20, battery_pct = 10 },
              { at_ms = 30, thermal = "critical" },
              { at_ms = 40, thermal = "normal", battery_pct = 90, memory_pressure = 0.9 },
            ]"#,
        )
        .unwrap();
        spec.validate().unwrap();
        let t = spec.resolve();
        assert_eq!(t.at(5_000_000), Lowering::Steps(0));
        assert_eq!(t.at(10_000_000), Lowering::Steps(1));
        assert_eq!(t.at(25_000_000), Lowering::Steps(2));
        assert_eq!(t.at(35_000_000), Lowering::ToMinimum);
        assert_eq!(t.at(45_000_000), Lowering::Steps(1));
    }

    #[test]
    fn out_of_order_entries_are_refused() {
        let spec: DynamicSpec =
            toml::from_str("timeline = [{ at_ms = 5 }, { at_ms = 1 }]").unwrap();
        assert_eq!(spec.validate().unwrap_err().key, "timeline[1].at_ms");
    }
}
