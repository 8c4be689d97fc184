//! A sweep's run directory and how directories combine.
//!
//! `moesim run SWEEP.toml` (whole, or one `--shard I/N`) writes into its directory:
//! `experiment.toml` and `experiment.hash` (the file and its FNV-1a content hash), `runs.csv`
//! (the manifest: every run of the whole sweep, `run,point,replicate`), `config.resolved.toml`
//! (the sweep's first point, resolved) and `points/NNNNNN.csv` with its side parts
//! `NNNNNN.latency.csv` and `NNNNNN.popularity.csv`, one set per finished run. The main part is
//! written last, atomically, so its presence (naming its point and replicate) marks the run done.
//! [`merge`] combines directories of the same experiment into one, which it finishes exactly as an
//! unsharded run finishes its own.

use std::path::{Path, PathBuf};

use std::io::Write;

use crate::atomic_file::{AtomicFile, write_atomic};
use crate::error::{Error, InputError, Result};
use crate::report::kind::ReportSection;

/// The side tables of each run, beside `results.csv`.
pub const SIDES: [&str; 2] = ["latency", "popularity"];

/// One run of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunEntry {
    /// Position in the sweep's expansion.
    pub run: usize,
    /// The point's key.
    pub point: String,
    /// The replicate.
    pub replicate: u32,
}

/// `points/NNNNNN.csv` of run `run`.
pub fn part_path(dir: &Path, run: usize) -> PathBuf {
    dir.join("points").join(format!("{run:06}.csv"))
}

/// `points/NNNNNN.<side>.csv` of run `run`.
pub fn side_path(dir: &Path, run: usize, side: &str) -> PathBuf {
    dir.join("points").join(format!("{run:06}.{side}.csv"))
}

/// Whether `dir` holds the finished run `e`: its main part exists and names its point and
/// replicate.
pub fn is_complete(dir: &Path, e: &RunEntry) -> bool {
    csv::Reader::from_path(part_path(dir, e.run)).is_ok_and(|mut r| {
        r.records().next().is_some_and(|rec| {
            rec.is_ok_and(|rec| {
                rec.get(0) == Some(e.point.as_str())
                    && rec.get(1) == Some(e.replicate.to_string().as_str())
            })
        })
    })
}

/// Writes `runs.csv`.
pub fn write_manifest(dir: &Path, runs: &[RunEntry]) -> Result<()> {
    write_atomic(dir.join("runs.csv"), &crate::report::flat_csv::to_csv(runs))
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Input(InputError::new(path.display().to_string(), reason.into()))
}

/// Reads `runs.csv`.
pub fn read_manifest(dir: &Path) -> Result<Vec<RunEntry>> {
    let path = dir.join("runs.csv");
    let mut rd = csv::Reader::from_path(&path).map_err(|e| bad(&path, e.to_string()))?;
    let runs: Vec<RunEntry> = rd
        .deserialize()
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(&path, e.to_string()))?;
    if runs.iter().enumerate().any(|(i, r)| r.run != i) {
        return Err(bad(&path, "runs are not numbered 0, 1, 2, ... in order"));
    }
    Ok(runs)
}

/// Assembles `results.csv` and the side tables of `dir` from its parts of `runs` (all present).
pub fn assemble(dir: &Path, runs: &[RunEntry]) -> Result<()> {
    let parts: Vec<PathBuf> = runs.iter().map(|r| part_path(dir, r.run)).collect();
    concatenate(dir, "results.csv", &parts)?;
    for side in SIDES {
        let parts: Vec<PathBuf> = runs.iter().map(|r| side_path(dir, r.run, side)).collect();
        concatenate(dir, &format!("{side}.csv"), &parts)?;
    }
    Ok(())
}

/// The files a single-point run writes into its directory.
pub const SINGLE_RUN_FILES: [&str; 7] = [
    "config.resolved.toml",
    "metrics.csv",
    "links.csv",
    "tiers.csv",
    "units.csv",
    "summary.md",
    "timeline.json",
];

/// The files and directories a sweep writes into its directory.
const SWEEP_FILES: [&str; 13] = [
    "experiment.hash",
    "experiment.toml",
    "experiment.source",
    "runs.csv",
    "shard.txt",
    "config.resolved.toml",
    "points",
    "results.csv",
    "latency.csv",
    "popularity.csv",
    "summary.csv",
    "summary.md",
    "plots",
];

/// The names in `dir` (none if it does not exist).
fn entries(dir: &Path) -> Result<Vec<String>> {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(dir, e)),
        Ok(rd) => rd
            .map(|e| {
                e.map(|e| e.file_name().to_string_lossy().into_owned())
                    .map_err(|e| Error::io(dir, e))
            })
            .collect(),
    }
}

/// The experiment `name` recorded in `dir/config.resolved.toml`, if any.
fn recorded_name(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("config.resolved.toml")).ok()?;
    let v: toml::Table = toml::from_str(&text).ok()?;
    v.get("name")?.as_str().map(str::to_string)
}

/// Refuses `dir` as the output of single-point experiment `name` unless it is absent, empty,
/// or holds that experiment's own earlier output and nothing else: a report directory never
/// mixes two runs, or a run and a sweep.
pub fn check_single_run_dir(dir: &Path, name: &str) -> Result<()> {
    let names = entries(dir)?;
    if names.is_empty() {
        return Ok(());
    }
    if let Some(other) = names
        .iter()
        .find(|n| !SINGLE_RUN_FILES.contains(&n.as_str()))
    {
        return Err(Error::usage(format!(
            "{} holds other files (`{other}`{}); a run writes into its own directory: use another --out or remove it",
            dir.display(),
            if names
                .iter()
                .any(|n| n == "results.csv" || n == "experiment.hash")
            {
                ", a sweep's output"
            } else {
                ""
            }
        )));
    }
    match recorded_name(dir) {
        Some(n) if n == name => Ok(()),
        Some(n) => Err(Error::usage(format!(
            "{} holds the output of experiment `{n}`, not `{name}`; use another --out or remove it",
            dir.display()
        ))),
        None => Err(Error::usage(format!(
            "{} holds a run's files without its config.resolved.toml; use another --out or remove it",
            dir.display()
        ))),
    }
}

/// Refuses `dir` if it holds another experiment's results (a different hash, a single run's
/// output or files a sweep does not write), else records `hash` and `text` there.
pub fn claim(dir: &Path, hash: &str, text: &str, source: &str) -> Result<()> {
    let names = entries(dir)?;
    if let Some(other) = names.iter().find(|n| !SWEEP_FILES.contains(&n.as_str())) {
        return Err(Error::usage(format!(
            "{} holds files a sweep does not write (`{other}`{}); use another --out or remove it",
            dir.display(),
            if SINGLE_RUN_FILES.contains(&other.as_str()) {
                ", a single run's output"
            } else {
                ""
            }
        )));
    }
    if !names.is_empty() && !names.iter().any(|n| n == "experiment.hash") {
        return Err(Error::usage(format!(
            "{} is not empty and holds no experiment.hash, so it is not this sweep's directory; use another --out or remove it",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir.join("points")).map_err(|e| Error::io(dir, e))?;
    let hash_path = dir.join("experiment.hash");
    if let Ok(old) = std::fs::read_to_string(&hash_path)
        && old != hash
    {
        return Err(Error::usage(format!(
            "{} holds the results of another version of the experiment file or of an input it reads (profile, model, generator, trace, weights, or this moesim's results schema); use another --out or remove it",
            dir.display()
        )));
    }
    write_atomic(&hash_path, hash.as_bytes())?;
    write_atomic(
        dir.join("experiment.source"),
        format!("{source}\n").as_bytes(),
    )?;
    write_atomic(dir.join("experiment.toml"), text.as_bytes())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// The shard count `dir` was run with (`shard.txt` holds `I/N`), if any.
fn shard_count(dir: &Path) -> Option<usize> {
    let t = std::fs::read_to_string(dir.join("shard.txt")).ok()?;
    t.trim().split_once('/')?.1.parse().ok()
}

/// Merges the run directories `parts` (of one experiment file) into `out`: checks that they share
/// the experiment, that every run of the manifest is present in at least one and that copies of a
/// run agree byte for byte, then copies the parts and assembles `out` like an unsharded run.
/// Returns the experiment's name.
pub fn merge(parts: &[PathBuf], out: &Path) -> Result<String> {
    if parts.is_empty() {
        return Err(Error::usage("merge needs at least one part directory"));
    }
    let mut hash: Option<(String, &Path)> = None;
    for p in parts {
        let h = std::fs::read_to_string(p.join("experiment.hash")).map_err(|_| {
            bad(p, "not a sweep run directory (no experiment.hash; run `moesim run SWEEP.toml --shard I/N --out DIR`)")
        })?;
        match &hash {
            None => hash = Some((h, p)),
            Some((h0, p0)) if *h0 != h => {
                return Err(bad(
                    p,
                    format!(
                        "comes from a different experiment file than {} (content hash {} vs {})",
                        p0.display(),
                        h.trim(),
                        h0.trim()
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    let (hash, first) = hash.expect("parts is not empty");
    let runs = read_manifest(first)?;
    for p in &parts[1..] {
        if read_manifest(p)? != runs {
            return Err(bad(
                p,
                format!("runs.csv differs from {}'s", first.display()),
            ));
        }
    }
    let text = String::from_utf8(read(&first.join("experiment.toml"))?)
        .map_err(|_| bad(&first.join("experiment.toml"), "not UTF-8"))?;
    // Where each run is, checking that copies agree.
    let mut source: Vec<Option<&Path>> = vec![None; runs.len()];
    let mut missing = Vec::new();
    for (e, src) in runs.iter().zip(source.iter_mut()) {
        for p in parts {
            if !is_complete(p, e) {
                continue;
            }
            match src {
                None => *src = Some(p),
                Some(q) => {
                    let files = |d: &Path| -> Result<Vec<Vec<u8>>> {
                        let mut v = vec![read(&part_path(d, e.run))?];
                        for side in SIDES {
                            v.push(read(&side_path(d, e.run, side))?);
                        }
                        Ok(v)
                    };
                    if files(q)? != files(p)? {
                        return Err(Error::usage(format!(
                            "run {} (point {}, replicate {}) has different results in {} and {}: a different binary or configuration made them",
                            e.run,
                            e.point,
                            e.replicate,
                            q.display(),
                            p.display()
                        )));
                    }
                }
            }
        }
        if src.is_none() {
            missing.push(e);
        }
    }
    if !missing.is_empty() {
        let replicates = runs.iter().map(|r| r.replicate + 1).max().unwrap_or(1) as usize;
        let shards: Vec<usize> = parts.iter().filter_map(|p| shard_count(p)).collect();
        let n = shards
            .first()
            .copied()
            .filter(|&n| shards.iter().all(|&m| m == n));
        // Distinct points, in order, with their missing replicates.
        let mut points: Vec<(&str, Vec<u32>)> = Vec::new();
        for e in &missing {
            match points.last_mut() {
                Some((k, reps)) if *k == e.point => reps.push(e.replicate),
                _ => points.push((&e.point, vec![e.replicate])),
            }
        }
        let mut listed: Vec<String> = points
            .iter()
            .take(10)
            .map(|(k, reps)| {
                if replicates > 1 {
                    let r: Vec<String> = reps.iter().map(u32::to_string).collect();
                    format!("{k} (replicate {})", r.join(", "))
                } else {
                    k.to_string()
                }
            })
            .collect();
        if points.len() > 10 {
            listed.push(format!("and {} more points", points.len() - 10));
        }
        let which = match n {
            Some(n) => {
                let mut s: Vec<usize> = missing.iter().map(|e| e.run / replicates % n).collect();
                s.dedup();
                s.sort_unstable();
                s.dedup();
                let s: Vec<String> = s.iter().map(|i| format!("{i}/{n}")).collect();
                format!(" (shard {})", s.join(", "))
            }
            None => String::new(),
        };
        return Err(Error::usage(format!(
            "{}: {} of {} runs are missing from the parts{which}: {}; re-run those shards and merge again",
            parts
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            missing.len(),
            runs.len(),
            listed.join("; ")
        )));
    }
    let label = std::fs::read_to_string(first.join("experiment.source"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    claim(out, &hash, &text, &label)?;
    write_manifest(out, &runs)?;
    let config = first.join("config.resolved.toml");
    if config.exists() {
        write_atomic(out.join("config.resolved.toml"), &read(&config)?)?;
    }
    for (e, src) in runs.iter().zip(&source) {
        let src = src.expect("checked above");
        if src == out {
            continue;
        }
        write_atomic(part_path(out, e.run), &read(&part_path(src, e.run))?)?;
        for side in SIDES {
            write_atomic(
                side_path(out, e.run, side),
                &read(&side_path(src, e.run, side))?,
            )?;
        }
    }
    assemble(out, &runs)?;
    let spec: crate::experiment::ExperimentSpec =
        crate::config::parse_toml(&first.join("experiment.toml").display().to_string(), &text)?;
    Ok(spec.name)
}

/// Concatenates the part files (`header` + rows each, in `parts` order) into `dir/name`,
/// atomically.
fn concatenate(dir: &Path, name: &str, parts: &[PathBuf]) -> Result<()> {
    let target = dir.join(name);
    let mut out = AtomicFile::create(&target)?;
    for (i, p) in parts.iter().enumerate() {
        let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
        let mut lines = text.splitn(2, '\n');
        let header = lines.next().unwrap_or_default();
        let rows = lines.next().unwrap_or_default();
        let w = out.writer();
        let r = if i == 0 {
            writeln!(w, "{header}").and_then(|_| w.write_all(rows.as_bytes()))
        } else {
            w.write_all(rows.as_bytes())
        };
        r.map_err(|e| Error::io(&target, e))?;
    }
    out.commit()
}

/// `[report]` of `dir/experiment.toml`, if the file exists.
pub fn report_section(dir: &Path) -> Result<ReportSection> {
    let path = dir.join("experiment.toml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Default::default());
    };
    let spec: crate::experiment::ExperimentSpec =
        crate::config::parse_toml(&path.display().to_string(), &text)?;
    Ok(spec.report)
}
