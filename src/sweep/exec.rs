//! Running a sweep's points: all of them, or one shard's, on a thread pool, each into its own
//! part files in the run directory, skipping runs already complete (resume), then (unsharded)
//! assembling the tables and the summary.
//!
//! **Architecture Invariant:** the output does not depend on the thread count or on the order
//! in which runs finish: every run writes its own parts, and the tables are assembled in point
//! order.

use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;

use super::expand::{Point, Sweep};
use super::store::{self, RunEntry};
use super::tables::{AxisColumns, SweepRow, latency_rows, metrics_row, popularity_rows};
use crate::atomic_file::write_atomic;
use crate::error::{Error, Result};
use crate::report::flat_csv::to_csv;

/// How to run a sweep.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecOptions {
    /// Run only shard `i` of `n` (points dealt in turn, all replicates of a point together).
    pub shard: Option<(usize, usize)>,
    /// Worker threads (default: all cores).
    pub threads: Option<u32>,
}

/// Progress of a sweep, for a progress bar.
pub trait Progress: Sync {
    /// `total` runs are this invocation's, `done` of them complete already.
    fn start(&self, total: u64, done: u64);
    /// One more run is complete.
    fn advance(&self);
    /// Every run is complete.
    fn finish(&self);
}

/// No progress report.
#[derive(Debug, Clone, Copy)]
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: u64, _: u64) {}
    fn advance(&self) {}
    fn finish(&self) {}
}

/// What a sweep invocation did.
#[derive(Debug, Clone)]
pub struct ExecSummary {
    /// Runs it ran.
    pub ran: usize,
    /// Runs of this invocation (the shard's, or all).
    pub mine: usize,
    /// Of those, runs complete before it started.
    pub skipped: usize,
    /// Runs of the whole sweep.
    pub total: usize,
    /// Wall time.
    pub elapsed_s: f64,
    /// The summary's markdown, when the sweep is unsharded (a shard has no summary).
    pub summary_md: Option<String>,
}

/// Whether point `p` belongs to shard `shard` (every point does without one).
pub fn in_shard(sweep: &Sweep, p: &Point, shard: Option<(usize, usize)>) -> bool {
    shard.is_none_or(|(i, n)| p.index / sweep.replicates as usize % n == i)
}

/// Runs `sweep`'s pending runs (of `opts.shard`) into `dir`, then, unsharded, assembles
/// `results.csv`, the side tables, the summary and the plots.
pub fn run_points(
    sweep: &Sweep,
    dir: &Path,
    opts: &ExecOptions,
    progress: &dyn Progress,
) -> Result<ExecSummary> {
    store::claim(
        dir,
        &format!("{:016x}\n", sweep.content_hash),
        &sweep.text,
        &sweep.label,
    )?;
    let runs: Vec<RunEntry> = sweep
        .points
        .iter()
        .map(|p| RunEntry {
            run: p.index,
            point: p.key.clone(),
            replicate: p.replicate,
        })
        .collect();
    store::write_manifest(dir, &runs)?;
    if let Some((i, n)) = opts.shard {
        write_atomic(dir.join("shard.txt"), format!("{i}/{n}\n").as_bytes())?;
    }
    let mine: Vec<&Point> = sweep
        .points
        .iter()
        .filter(|p| in_shard(sweep, p, opts.shard))
        .collect();
    let pending: Vec<&Point> = mine
        .iter()
        .copied()
        .filter(|p| !store::is_complete(dir, &runs[p.index]))
        .collect();
    let skipped = mine.len() - pending.len();
    progress.start(mine.len() as u64, skipped as u64);
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = opts.threads {
        builder = builder.num_threads(n as usize);
    }
    let pool = builder
        .build()
        .map_err(|e| Error::usage(format!("--threads: {e}")))?;
    let start = Instant::now();
    pool.install(|| {
        pending.par_iter().try_for_each(|p| -> Result<()> {
            run_one(sweep, p, dir)?;
            progress.advance();
            Ok(())
        })
    })?;
    progress.finish();
    if let Some(p) = sweep.points.first() {
        let first = sweep.experiment(p)?;
        let config = format!(
            "# moesim {} resolved configuration of the first point ({}) of {}\n{}",
            env!("CARGO_PKG_VERSION"),
            p.key,
            sweep.name,
            toml::to_string(&first.resolved).expect("specs serialize")
        );
        write_atomic(dir.join("config.resolved.toml"), config.as_bytes())?;
    }
    let summary_md = if opts.shard.is_none() {
        store::assemble(dir, &runs)?;
        Some(super::summary::finish(dir, &sweep.name)?)
    } else {
        None
    };
    Ok(ExecSummary {
        ran: pending.len(),
        mine: mine.len(),
        skipped,
        total: sweep.points.len(),
        elapsed_s: start.elapsed().as_secs_f64(),
        summary_md,
    })
}

/// Runs point `p` and writes its parts: the side parts first, the main part last (its
/// presence marks the run complete).
fn run_one(sweep: &Sweep, p: &Point, dir: &Path) -> Result<()> {
    let exp = sweep.experiment(p)?;
    let o = exp.run()?;
    let row = SweepRow {
        point: &p.key,
        replicate: p.replicate,
        axes: AxisColumns(&p.axes),
        metrics: metrics_row(&exp, &o),
    };
    write_atomic(
        store::side_path(dir, p.index, "latency"),
        &to_csv(&latency_rows(
            &p.key,
            p.replicate,
            &o.report.token_latencies_ns,
        )),
    )?;
    write_atomic(
        store::side_path(dir, p.index, "popularity"),
        &to_csv(&popularity_rows(&p.key, p.replicate, &o)),
    )?;
    write_atomic(store::part_path(dir, p.index), &to_csv(&[row]))
}
