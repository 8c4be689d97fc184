//! moesim's integration tests, in one binary (matklad, "Delete Cargo Integration Tests").
//!
//! Each module covers one boundary; `util` holds the helpers that run the real binary.

mod util;

// Hardware profiles: shipped presets and every bad-input case of issue 2.
mod precision;
mod profile_input;
// Composed profiles, GPU+HOST: the rules, simulations on them, refused combinations.
mod profile_compose;
// MoE model specs: parameter totals against the published figures, bad model files.
mod model_specs;
// Routing traces: generation, import, export, statistics, fit, bad input.
mod trace_cli;
// Cache core and eviction policies: proptest properties.
mod cache_properties;
// Exactness of the cache policies against libCacheSim (Python, in CI).
mod libcachesim_check;
// The Python environment script under concurrency.
mod pyenv;
// Plug-in parameters: one validation for files, sweep axes and flags.
mod params;
// Absurd sizes and non-finite weights: refused before allocating.
mod limits;
// Outputs never overwrite inputs or mix runs; no temporary files survive a failure.
mod data_safety;
// Inputs an audit of issue 17 found accepted with nonsense results or lost data.
mod audit17;
mod batch;
mod gguf_mix;
mod gguf_mix_snapshots;
mod gguf_models;
// The JSON record scanner against serde_json.
mod json_scanner;
// Every documented command runs as written.
mod docs;
// `cache replay`: curves on the real Mixtral trace, CSV, determinism, tiers, bad arguments.
mod cache_cli;
// Routers: equivalences, the λ trade-off on every preset, `moesim route`.
mod routers;
// Discrete-event simulation: closed forms, monotonicity, prefetch bound, `moesim run`.
mod host;
mod reports;
mod shards;
mod sim;
// Where experts run (issue 19): in place, layer splits, hot sets, per-miss, the roofline.
mod placement;
mod plan;
mod slurm;
mod sweeps;
// The event engine against SimPy (Python, in CI).
mod simpy_check;
// Quantized kernels: gguf bit-exactness, error bounds, GEMV, `moesim quant`.
mod quant;
// ggml's lattice-codebook i-quants: dequantization bit for bit with gguf.
mod iquant;
// Metrics: energy and bytes per phase, static power, storage compute tiers, common random
// numbers.
mod metrics;
// `moesim validate`: observations, runtime profiles, fits.
mod validate;
