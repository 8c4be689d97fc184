//! Every expert in one format: the baseline every mixed plan is compared with.

use super::{AllocationError, AllocationInput, Allocator, PrecisionPlan};
use crate::quant::WeightFormat;

/// Every expert in `format`.
#[derive(Debug, Clone)]
pub struct UniformAllocator {
    /// The format.
    pub format: WeightFormat,
}

impl Allocator for UniformAllocator {
    fn allocate(&self, input: &AllocationInput) -> Result<PrecisionPlan, AllocationError> {
        Ok(PrecisionPlan::uniform(
            input.layers,
            input.experts,
            self.format,
        ))
    }
}
