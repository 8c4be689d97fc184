//! Real runs on this host, to validate the simulator's predictions (`moesim host`).
//!
//! `store` writes a model's experts, quantized with the real kernels, into one file that acts as
//! the home tier, and `workload` names the store of a model and builds the one-request decode
//! experiment; `decode` decodes a trace for real against it, with the simulator's cache,
//! eviction policy and router implementations. `calibrate` holds the microbenchmarks of the
//! host (storage reads, memory copies, expert kernels) and their fits, `samples` runs them as
//! rounds and pools their samples, and `profile` fits the samples into a hardware profile.
//! `validate` runs the real decode over a grid of settings and predicts each decode with the
//! simulator on the profile calibrated around it.

pub mod calibrate;
pub mod decode;
pub mod profile;
pub mod samples;
pub mod store;
pub mod validate;
pub mod workload;
