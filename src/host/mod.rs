//! Real runs on this host, to validate the simulator's predictions (`moesim host`).
//!
//! `store` writes a model's experts, quantized with the real kernels, into one file that acts as
//! the home tier; `decode` decodes a trace for real against it, with the simulator's cache,
//! eviction policy and router implementations; `calibrate` measures the host (storage reads,
//! memory copies, expert kernels) for a hardware profile. The CLI's `host validate` runs both
//! the real decode and the simulation of the same workload on the calibrated profile.

pub mod calibrate;
pub mod decode;
pub mod store;
