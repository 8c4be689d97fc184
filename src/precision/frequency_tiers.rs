//! The seed's §4.1 frequency rule: the most used experts at 4 bits, the middle at 3, the rare
//! at 2.
//!
//! The seed gives usage shares with no thresholds between them; its later allocator (ADR-092,
//! `seeds.md`) takes thresholds as fractions of the highest count: per layer, with `max` the
//! count of the layer's most used expert, an expert is *hot* when its count is at least
//! `ceil(max · hot_pct)`, *cold* when at most `floor(max · cold_pct)`, and *warm* otherwise.
//! A layer no token used is all cold. Defaults are ADR-092's: 0.9 and 0.3 to Q4_K, Q3_K, Q2_K.
//! There is no memory budget: the plan's bytes follow from the usage.

use super::{AllocationError, AllocationInput, Allocator, PrecisionPlan};
use crate::quant::WeightFormat;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct FrequencyTiersAllocator {
    /// Hot threshold, a fraction of the layer's highest count.
    pub hot_pct: f64,
    /// Cold threshold, a fraction of the layer's highest count.
    pub cold_pct: f64,
    /// Format of hot experts.
    pub hot: WeightFormat,
    /// Format of warm experts.
    pub warm: WeightFormat,
    /// Format of cold experts.
    pub cold: WeightFormat,
}

impl Allocator for FrequencyTiersAllocator {
    fn allocate(&self, input: &AllocationInput) -> Result<PrecisionPlan, AllocationError> {
        let e = input.experts as usize;
        let mut formats = Vec::with_capacity(input.usage.len());
        for layer in input.usage.chunks(e) {
            let max = layer.iter().copied().max().unwrap_or(0);
            let hot = (max as f64 * self.hot_pct).ceil() as u64;
            let cold = (max as f64 * self.cold_pct).floor() as u64;
            formats.extend(layer.iter().map(|&c| {
                if max == 0 || c <= cold {
                    self.cold
                } else if c >= hot {
                    self.hot
                } else {
                    self.warm
                }
            }));
        }
        Ok(PrecisionPlan {
            layers: input.layers,
            experts: input.experts,
            formats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_fractions_of_the_layer_maximum() {
        let a = FrequencyTiersAllocator {
            hot_pct: 0.9,
            cold_pct: 0.3,
            hot: WeightFormat::Q4K,
            warm: WeightFormat::Q3K,
            cold: WeightFormat::Q2K,
        };
        // Layer 0: max 100 → hot ≥ 90, cold ≤ 30. Layer 1 unused.
        let usage = [100, 90, 89, 31, 30, 0, 0, 0, 0, 0, 0, 0];
        let plan = a
            .allocate(&AllocationInput {
                layers: 2,
                experts: 6,
                usage: &usage,
                params_per_expert: 256,
                error: None,
            })
            .unwrap();
        use WeightFormat::*;
        assert_eq!(
            plan.formats,
            vec![Q4K, Q4K, Q3K, Q3K, Q2K, Q2K, Q2K, Q2K, Q2K, Q2K, Q2K, Q2K]
        );
        assert_eq!(plan.census(), "q4_k:2,q3_k:2,q2_k:8");
    }
}
