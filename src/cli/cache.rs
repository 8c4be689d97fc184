//! `moesim cache replay`: miss-ratio curves of eviction policies over a trace.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};

use super::table::{Align, Table};
use super::values::{BetweenRequestsArg, ScopeArg, SemanticsArg};
use super::{emit, emit_json};
use crate::atomic_file::AtomicFile;
use crate::cache::PolicyKind;
use crate::cache::replay::{
    BetweenRequests, Capacity, ReplayOptions, ReplayResult, Scope, Semantics, Workload,
    gap_captured, replay_all,
};
use crate::error::{Error, Result};
use crate::moe;
use crate::quant::format::WeightFormat;

/// `moesim cache …`
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Replay a trace through eviction policies at several capacities (miss-ratio curves).
    Replay(ReplayArgs),
}

/// Input trace formats of `cache replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplayInput {
    /// A native moesim trace.
    Native,
    /// A libCacheSim oracleGeneral file (one flat stream of objects).
    OracleGeneral,
}

/// Arguments of `cache replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The trace.
    pub trace: PathBuf,
    /// Input format.
    #[arg(long, value_enum, default_value = "native")]
    pub input_format: ReplayInput,
    /// Comma-separated policies: fifo, lru, lfu, lfru, arc, sieve, least-stale, pinned, belady,
    /// ema[:DECAY] (default: every policy). LRU and Belady always run, as references for the gap
    /// captured.
    #[arg(long, value_delimiter = ',')]
    pub policy: Option<Vec<PolicyKind>>,
    /// Capacities in experts per layer (objects, for oracleGeneral input); comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub capacity: Vec<f64>,
    /// Capacities in total bytes over all caches; comma-separated. Integers, exponent forms
    /// (`2e9`) and decimal or binary units (`2GB`, `1.5 GiB`, `512MiB`) are accepted.
    #[arg(long, value_delimiter = ',', value_parser = crate::units::parse_bytes)]
    pub capacity_bytes: Vec<u64>,
    /// One cache per layer, or one shared by all layers.
    #[arg(long, value_enum, default_value = "per-layer")]
    pub scope: ScopeArg,
    /// Event semantics: one expert at a time (libCacheSim), or a token's selection at once.
    #[arg(long, value_enum, default_value = "atomic")]
    pub semantics: SemanticsArg,
    /// Reset caches at each new request, or keep them warm.
    #[arg(long, value_enum, default_value = "reset")]
    pub between_requests: BetweenRequestsArg,
    /// A warm tier below each cache (exclusive), in experts per layer.
    #[arg(long)]
    pub warm_capacity: Option<f64>,
    /// Size experts as this model's (with --weight-format).
    #[arg(long, requires = "weight_format", conflicts_with = "expert_bytes")]
    pub model: Option<String>,
    /// Weight format of the experts (with --model).
    #[arg(long, requires = "model")]
    pub weight_format: Option<WeightFormat>,
    /// Bytes of one expert (default 1: capacities count experts).
    #[arg(long)]
    pub expert_bytes: Option<u64>,
    /// For oracleGeneral input: count objects, not bytes (libCacheSim's ignore_obj_size).
    #[arg(long)]
    pub ignore_size: bool,
    /// Write every row (per layer and `all`) as CSV.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also print per-layer hit rates.
    #[arg(long)]
    pub per_layer: bool,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Do not add LRU and Belady as references when they are not asked for.
    #[arg(long)]
    pub no_reference: bool,
    /// Report the wall time of each replay loop (loading and oracles excluded).
    #[arg(long)]
    pub timing: bool,
}

/// Runs a `cache` subcommand.
pub fn run(cmd: CacheCommand, out: &mut dyn Write) -> Result<()> {
    match cmd {
        CacheCommand::Replay(args) => replay_cmd(args, out),
    }
}

/// One CSV row.
#[derive(Debug, serde::Serialize)]
struct Row {
    policy: String,
    capacity_experts: f64,
    capacity_bytes: u64,
    layer: String,
    accesses: u64,
    hits: u64,
    hit_rate: f64,
    byte_hit_rate: f64,
    evictions: u64,
    warm_hits: u64,
    gap_captured: f64,
    /// With `--timing`, a column on every row, filled on the `all` rows (a replay is timed
    /// whole, not per layer).
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_seconds: Option<Option<f64>>,
    scope: Scope,
    semantics: Semantics,
    between_requests: BetweenRequests,
}

fn replay_cmd(args: ReplayArgs, out: &mut dyn Write) -> Result<()> {
    if let Some(o) = &args.out {
        crate::atomic_file::refuse_overwriting_inputs(o, &[&args.trace], "--out")?;
    }
    let expert_bytes = match (&args.model, args.weight_format, args.expert_bytes) {
        (Some(m), Some(f), _) => moe::load(m)?.expert_bytes(f),
        (_, _, Some(0)) => return Err(Error::usage("--expert-bytes must be > 0")),
        (_, _, Some(b)) => b,
        _ => 1,
    };
    let w = match args.input_format {
        ReplayInput::Native => Workload::from_trace(&args.trace, args.scope.into(), expert_bytes)?,
        ReplayInput::OracleGeneral => Workload::from_oracle_general(&args.trace, args.ignore_size)?,
    };
    let mut capacities: Vec<Capacity> = args
        .capacity
        .iter()
        .map(|&c| Capacity::Experts(c))
        .collect();
    capacities.extend(args.capacity_bytes.iter().map(|&b| Capacity::Bytes(b)));
    if capacities.is_empty() {
        return Err(Error::usage("give --capacity and/or --capacity-bytes"));
    }
    if let Some(bad) = args.capacity.iter().find(|c| !(c.is_finite() && **c > 0.0)) {
        return Err(Error::usage(format!(
            "--capacity {bad}: capacities must be > 0"
        )));
    }
    let mut policies = policies(&args);
    let opts = ReplayOptions {
        semantics: args.semantics.into(),
        between: args.between_requests.into(),
        warm: args.warm_capacity.map(Capacity::Experts),
    };
    if opts.warm.is_some() {
        policies.retain(|p| !p.needs_oracle());
    }
    let results = replay_all(&w, &policies, &capacities, opts)?;

    let rows = rows(&w, &results, &capacities, &args);
    if let Some(path) = &args.out {
        write_csv(path, &rows)?;
    }
    if args.json {
        return emit_json(out, &rows);
    }
    emit(out, &text(&w, &results, &capacities, &args))
}

/// The policies to run, in order: LRU first and Belady last as references (unless
/// `--no-reference`), the asked ones (every policy when none is asked) between, each once.
fn policies(args: &ReplayArgs) -> Vec<PolicyKind> {
    let asked = args.policy.clone().unwrap_or_else(PolicyKind::all);
    let references: Vec<PolicyKind> = if args.no_reference {
        Vec::new()
    } else {
        vec![PolicyKind::Lru {}, PolicyKind::Belady {}]
    };
    let (first, last) = references.split_at(references.len().min(1));
    let mut policies = Vec::new();
    for p in first
        .iter()
        .cloned()
        .chain(asked)
        .chain(last.iter().cloned())
    {
        if !policies.contains(&p) {
            policies.push(p);
        }
    }
    policies
}

fn reference(results: &[ReplayResult], kind: &PolicyKind, cap: Capacity) -> Option<u64> {
    results
        .iter()
        .find(|r| &r.policy == kind && r.capacity == cap)
        .map(|r| r.total.hits)
}

fn rows(w: &Workload, results: &[ReplayResult], _caps: &[Capacity], args: &ReplayArgs) -> Vec<Row> {
    let mut rows = Vec::new();
    for r in results {
        let lru = reference(results, &PolicyKind::Lru {}, r.capacity);
        let belady = reference(results, &PolicyKind::Belady {}, r.capacity);
        let gap = match (lru, belady) {
            (Some(l), Some(b)) => gap_captured(r.total.hits, l, b),
            _ => f64::NAN,
        };
        let base = |layer: String, c: &crate::cache::replay::Counters, gap: f64| Row {
            replay_seconds: args
                .timing
                .then(|| (layer == "all").then_some(r.elapsed.as_secs_f64())),
            policy: r.policy.to_string(),
            capacity_experts: r.capacity.experts_per_layer(w),
            capacity_bytes: r.capacity.total_bytes(w),
            layer,
            accesses: c.accesses,
            hits: c.hits,
            hit_rate: c.hit_rate(),
            byte_hit_rate: c.byte_hit_rate(),
            evictions: c.evictions,
            warm_hits: c.warm_hits,
            gap_captured: gap,
            scope: args.scope.into(),
            semantics: args.semantics.into(),
            between_requests: args.between_requests.into(),
        };
        for (l, c) in r.per_layer.iter().enumerate() {
            if w.layers > 1 {
                rows.push(base(l.to_string(), c, f64::NAN));
            }
        }
        rows.push(base("all".into(), &r.total, gap));
    }
    rows
}

fn write_csv(path: &Path, rows: &[Row]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)
            .map_err(|e| Error::usage(format!("{}: {e}", path.display())))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::usage(format!("{}: {e}", path.display())))?;
    f.write_all(&bytes).map_err(|e| f.io_error(e))?;
    f.commit()
}

fn capacity_label(c: Capacity, w: &Workload) -> String {
    match c {
        Capacity::Experts(n) => format!("{n}"),
        Capacity::Bytes(b) => format!(
            "{:.2} ({})",
            c.experts_per_layer(w),
            crate::units::format_bytes(b as f64)
        ),
    }
}

fn text(w: &Workload, results: &[ReplayResult], caps: &[Capacity], args: &ReplayArgs) -> String {
    let unit = if args.input_format == ReplayInput::OracleGeneral {
        "objects"
    } else {
        "experts per layer"
    };
    let mut s = format!(
        "{} lookups; {} cache{}, {} semantics, {} between requests\n\nhit rate by capacity ({unit}):\n",
        w.accesses(),
        if w.scope == Scope::PerLayer && args.input_format == ReplayInput::Native {
            "per-layer"
        } else {
            "one shared"
        },
        if args.warm_capacity.is_some() {
            " with a warm tier"
        } else {
            ""
        },
        format!("{:?}", Semantics::from(args.semantics)).to_lowercase(),
        format!("{:?}", BetweenRequests::from(args.between_requests)).to_lowercase(),
    );
    let mut headers: Vec<(String, Align)> = vec![("policy".into(), Align::Left)];
    headers.extend(caps.iter().map(|&c| (capacity_label(c, w), Align::Right)));
    let h: Vec<(&str, Align)> = headers.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    let mut t = Table::new(&h);
    let mut g = Table::new(&h);
    let mut policies: Vec<&PolicyKind> = Vec::new();
    for r in results {
        if !policies.contains(&&r.policy) {
            policies.push(&r.policy);
        }
    }
    // Belady first: it is the ceiling in sequential semantics.
    policies.sort_by_key(|p| !matches!(p, PolicyKind::Belady {}));
    for p in &policies {
        let mut row = vec![p.to_string()];
        let mut gap_row = vec![p.to_string()];
        for &c in caps {
            let r = results
                .iter()
                .find(|r| &r.policy == *p && r.capacity == c)
                .expect("every pair ran");
            row.push(format!("{:.2}%", 100.0 * r.total.hit_rate()));
            let lru = reference(results, &PolicyKind::Lru {}, c);
            let bel = reference(results, &PolicyKind::Belady {}, c);
            gap_row.push(match (lru, bel) {
                (Some(l), Some(b)) => {
                    let gc = gap_captured(r.total.hits, l, b);
                    if gc.is_finite() {
                        format!("{:+.1}%", 100.0 * gc)
                    } else {
                        "-".into()
                    }
                }
                _ => "-".into(),
            });
        }
        t.row(row);
        g.row(gap_row);
    }
    s.push_str(&t.render());
    if results
        .iter()
        .any(|r| matches!(r.policy, PolicyKind::Belady {}))
    {
        s.push_str("\ngap captured, (policy − LRU) / (Belady − LRU):\n");
        s.push_str(&g.render());
        if Semantics::from(args.semantics) == Semantics::Atomic {
            s.push_str(
                "note: in atomic semantics Belady is a heuristic (evict the furthest next use outside the \
                 current selection), not a proven optimum.\n",
            );
        }
    }
    if args.warm_capacity.is_some() {
        s.push_str("\nwarm-tier hits (promotions) by capacity:\n");
        let mut t = Table::new(&h);
        for p in &policies {
            let mut row = vec![p.to_string()];
            for &c in caps {
                let r = results
                    .iter()
                    .find(|r| &r.policy == *p && r.capacity == c)
                    .expect("every pair ran");
                row.push(format!(
                    "{:.2}%",
                    100.0 * r.total.warm_hits as f64 / r.total.accesses.max(1) as f64
                ));
            }
            t.row(row);
        }
        s.push_str(&t.render());
    }
    if args.timing {
        s.push_str(
            "\nreplay loop throughput (lookups per second; loading and oracles excluded):\n",
        );
        let mut t = Table::new(&h);
        for p in &policies {
            let mut row = vec![p.to_string()];
            for &c in caps {
                let r = results
                    .iter()
                    .find(|r| &r.policy == *p && r.capacity == c)
                    .expect("every pair ran");
                row.push(crate::units::format_rate(
                    r.total.accesses as f64 / r.elapsed.as_secs_f64().max(1e-9),
                ));
            }
            t.row(row);
        }
        s.push_str(&t.render());
    }
    if args.per_layer && w.layers > 1 {
        for &c in caps {
            s.push_str(&format!(
                "\nper-layer hit rate at capacity {}:\n",
                capacity_label(c, w)
            ));
            let mut headers: Vec<(String, Align)> = vec![("layer".into(), Align::Right)];
            headers.extend(policies.iter().map(|p| (p.to_string(), Align::Right)));
            let h: Vec<(&str, Align)> = headers.iter().map(|(a, b)| (a.as_str(), *b)).collect();
            let mut t = Table::new(&h);
            for l in 0..w.layers as usize {
                let mut row = vec![l.to_string()];
                for p in &policies {
                    let r = results
                        .iter()
                        .find(|r| &r.policy == *p && r.capacity == c)
                        .expect("every pair ran");
                    row.push(format!("{:.2}%", 100.0 * r.per_layer[l].hit_rate()));
                }
                t.row(row);
            }
            s.push_str(&t.render());
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn replay_args(flags: &[&str]) -> ReplayArgs {
        let argv = ["moesim", "cache", "replay", "t.jsonl", "--capacity", "2"];
        let cli = crate::cli::Cli::try_parse_from(argv.iter().chain(flags)).unwrap();
        match cli.command {
            crate::cli::Command::Cache(CacheCommand::Replay(a)) => a,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn every_policy_runs_by_default() {
        let all = PolicyKind::all();
        let run = policies(&replay_args(&[]));
        // LRU leads as the first reference; the rest keep PolicyKind::all()'s order.
        assert_eq!(run[0], PolicyKind::Lru {});
        let rest: Vec<&PolicyKind> = all.iter().filter(|p| **p != PolicyKind::Lru {}).collect();
        assert_eq!(run[1..].iter().collect::<Vec<_>>(), rest);
        assert_eq!(run.last(), Some(&PolicyKind::Belady {}));
    }

    #[test]
    fn asked_policies_run_between_the_references() {
        let run = policies(&replay_args(&["--policy", "sieve,lru"]));
        assert_eq!(
            run,
            [
                PolicyKind::Lru {},
                PolicyKind::Sieve {},
                PolicyKind::Belady {}
            ]
        );
        let run = policies(&replay_args(&["--policy", "sieve", "--no-reference"]));
        assert_eq!(run, [PolicyKind::Sieve {}]);
    }
}
