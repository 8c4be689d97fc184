//! moesim: a hardware-aware discrete-event simulator and design-space exploration tool for
//! Mixture-of-Experts (MoE) expert caching on edge devices.
//!
//! The inputs are a hardware profile ([`hardware`]), a MoE model spec ([`moe`]) and, in later
//! stages, routing traces, routers, eviction policies and precision plans. `ARCHITECTURE.md`
//! gives the bird's-eye view and the code map; `src/main.rs` is only glue around [`cli::run`].

#![warn(missing_docs, missing_debug_implementations)]

pub mod atomic_file;
pub mod cache;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod experiment;
pub mod gguf;
pub mod hardware;
pub mod hash;
pub mod host;
pub mod input;
pub mod moe;
pub mod optimize;
pub mod param;
pub mod plan;
pub mod precision;
pub mod preset;
pub mod quality;
pub mod quant;
pub mod report;
pub mod router;
pub mod seed;
pub mod sim;
pub mod stats;
pub mod sweep;
pub mod trace;
pub mod units;
pub mod validate;
pub mod weights;

pub use error::{Error, InputError, Result};
