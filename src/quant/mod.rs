//! Numeric weight formats and, later, their kernels.
//!
//! Owns what a weight format is (block layout, bits per weight) and how weights are quantized,
//! packed and multiplied. Pure functions over slices; no I/O.

pub mod format;

pub use format::{ComputeClass, WeightFormat};
