//! Sweeps: an experiment file with a `[sweep]` table, expanded into points and run, whole or
//! in shards, into a run directory whose tables, summary and plots are derived from the runs'
//! parts.
//!
//! - `expand.rs`: the axes, zip groups and replicates into [`Sweep`] and its [`Point`]s, each
//!   validated before anything runs;
//! - `exec.rs`: [`run_points`], the pool that runs a sweep's (or a shard's) pending points,
//!   resumable, each into its own part files;
//! - `store.rs`: the run directory (manifest, parts, claims, content hash) and [`merge`];
//! - `tables.rs`: the one owner of every table's columns (`results.csv`, `metrics.csv`,
//!   `latency.csv`, `popularity.csv`), their rows and their readers;
//! - `summary.rs`: `summary.csv` and `summary.md` from `results.csv`, and the plots;
//! - `observed.rs`: `[[observed]]` measurements matched to points (`moesim validate`).
//!
//! `moesim run`, `moesim merge`, `moesim plot` and the Slurm scripts all go through here.

pub mod exec;
pub mod expand;
pub mod observed;
pub mod store;
pub mod summary;
pub mod tables;

pub use exec::{ExecOptions, ExecSummary, Progress, Quiet, run_points};
pub use expand::{Point, Sweep};
pub use store::merge;
