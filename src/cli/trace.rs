//! `moesim trace generate|import|export|stats|fit|presets`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::table::{Align, Table};
use super::values::{ExportFormatArg, ImportFormatArg};
use super::{emit, emit_json};
use crate::atomic_file::{AtomicFile, refuse_overwriting_inputs};
use crate::error::{Error, Result};
use crate::moe;
use crate::quant::format::WeightFormat;
use crate::trace::export::export;
use crate::trace::fit::fit;
use crate::trace::generate;
use crate::trace::generate_file::write_generated;
use crate::trace::import::{Destination, ImportOptions, import};
use crate::trace::stats::{StatsReport, stats_of_path};

/// `moesim trace …`
#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Generate a synthetic trace from a hidden-state process.
    Generate {
        /// Generator preset (see `trace presets`) or a generator spec TOML (e.g. from `trace fit`).
        #[arg(long)]
        preset: String,
        /// Requests.
        #[arg(long, default_value_t = 4)]
        requests: u32,
        /// Decode tokens per request (default: the preset's).
        #[arg(long)]
        tokens: Option<u32>,
        /// Prefill (prompt) tokens per request (default: the preset's).
        #[arg(long)]
        prefill: Option<u32>,
        /// Seed; the same seed gives the same trace, byte for byte.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output trace file (native JSONL).
        #[arg(long)]
        out: PathBuf,
    },
    /// Import a trace from another format into the native format.
    Import {
        /// Input format.
        #[arg(long, value_enum)]
        format: ImportFormatArg,
        /// `ROLE=FIELD` for --format jsonl; roles: request, layer, position, experts, weights, logits,
        /// phase, token.
        #[arg(long = "map", value_parser = parse_map)]
        maps: Vec<(String, String)>,
        /// Experts per layer, when the input has no metadata.
        #[arg(long)]
        experts: Option<u32>,
        /// Top-k, when the input has no metadata.
        #[arg(long)]
        top_k: Option<u32>,
        /// MoE layers (inferred as the highest layer + 1 when absent).
        #[arg(long)]
        layers: Option<u32>,
        /// Model name for the header.
        #[arg(long)]
        model: Option<String>,
        /// Input files; for moe-cache-lab one file per request.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output trace file (native JSONL).
        #[arg(long)]
        out: PathBuf,
        /// Also print the statistics of the imported trace (computed in the same pass when
        /// --layers is given).
        #[arg(long)]
        stats: bool,
    },
    /// Export a native trace to libCacheSim's csv or oracleGeneral format.
    Export {
        /// Output format.
        #[arg(long, value_enum)]
        format: ExportFormatArg,
        /// Keep only this layer's accesses.
        #[arg(long)]
        layer: Option<u32>,
        /// Object size in bytes (default 1: object-slot mode).
        #[arg(long, conflicts_with_all = ["model", "weight_format"])]
        object_bytes: Option<u64>,
        /// Size objects as this model's experts (with --weight-format).
        #[arg(long, requires = "weight_format")]
        model: Option<String>,
        /// Weight format of the experts (with --model).
        #[arg(long, requires = "model")]
        weight_format: Option<WeightFormat>,
        /// Input native trace.
        input: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Characterise a trace: popularity, reuse distance, overlap, co-selection, phases.
    Stats {
        /// Native trace file.
        input: PathBuf,
        /// Also write every statistic as long-form CSV (layer,metric,key,value).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Fit generator parameters to a real trace (Gini, entropy, adjacent overlap, top-1 weight).
    Fit {
        /// The real trace (native JSONL).
        input: PathBuf,
        /// Starting generator preset or spec.
        #[arg(long, default_value = "mixtral-like")]
        preset: String,
        /// Seed of the candidate traces.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Maximum loss evaluations.
        #[arg(long, default_value_t = 200)]
        evaluations: usize,
        /// Write the fitted spec as TOML, usable with `trace generate --preset FILE`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the generator presets.
    Presets,
}

fn parse_map(s: &str) -> std::result::Result<(String, String), String> {
    let (role, field) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected ROLE=FIELD"))?;
    if role.is_empty() || field.is_empty() {
        return Err(format!("`{s}`: expected ROLE=FIELD"));
    }
    Ok((role.to_string(), field.to_string()))
}

/// Runs a `trace` subcommand.
pub fn run(cmd: TraceCommand, out: &mut dyn Write) -> Result<()> {
    match cmd {
        TraceCommand::Generate {
            preset,
            requests,
            tokens,
            prefill,
            seed,
            out: path,
        } => {
            refuse_overwriting_inputs(&path, &[Path::new(&preset)], "--out")?;
            let mut spec = generate::load_spec(&preset)?;
            if let Some(t) = tokens {
                spec.decode_tokens = t;
            }
            if let Some(p) = prefill {
                spec.prefill_tokens = p;
            }
            spec.validate(&preset)?;
            if requests == 0 {
                return Err(Error::usage("--requests must be > 0"));
            }
            let mut file = AtomicFile::create(&path)?;
            let records =
                write_generated(&spec, requests, seed, &mut file).map_err(|e| file.io_error(e))?;
            file.commit()?;
            emit(
                out,
                &format!(
                    "wrote {}: {requests} requests, {records} records ({})\n",
                    path.display(),
                    spec.name
                ),
            )
        }
        TraceCommand::Import {
            format,
            maps,
            experts,
            top_k,
            layers,
            model,
            inputs,
            out: path,
            stats,
        } => {
            let options = ImportOptions {
                experts,
                top_k,
                layers,
                model,
            };
            let inputs_ref: Vec<&Path> = inputs.iter().map(|p| p.as_path()).collect();
            refuse_overwriting_inputs(&path, &inputs_ref, "--out")?;
            let result = import(
                format.into(),
                &inputs_ref,
                &maps,
                &options,
                Destination::File(&path),
                stats,
            )?;
            let s = result.summary;
            emit(
                out,
                &format!(
                    "wrote {}: {} requests, {} records, {} layers{}\n",
                    path.display(),
                    s.requests,
                    s.records,
                    s.layers,
                    if s.logits {
                        ", full logits"
                    } else {
                        ", no logits (top-k only)"
                    }
                ),
            )?;
            match result.stats {
                Some(report) => emit(out, &format!("\n{}", stats_text(&report))),
                None => Ok(()),
            }
        }
        TraceCommand::Export {
            format,
            layer,
            object_bytes,
            model,
            weight_format,
            input,
            out: path,
        } => {
            let bytes = match (object_bytes, model, weight_format) {
                (Some(b), _, _) => b,
                (None, Some(m), Some(f)) => moe::load(&m)?.expert_bytes(f),
                _ => 1,
            };
            refuse_overwriting_inputs(&path, &[&input], "--out")?;
            let s = export(&input, format.into(), layer, bytes, &path)?;
            emit(
                out,
                &format!(
                    "wrote {}: {} accesses to {} objects of {bytes} bytes\n",
                    path.display(),
                    s.accesses,
                    s.objects
                ),
            )
        }
        TraceCommand::Stats {
            input,
            out: csv,
            json,
        } => {
            if let Some(csv) = &csv {
                refuse_overwriting_inputs(csv, &[&input], "--out")?;
            }
            let report = stats_of_path(&input)?;
            if let Some(csv) = csv {
                write_stats_csv(&report, &csv)?;
            }
            if json {
                emit_json(out, &report)
            } else {
                emit(out, &stats_text(&report))
            }
        }
        TraceCommand::Fit {
            input,
            preset,
            seed,
            evaluations,
            out: spec_out,
        } => {
            if let Some(o) = &spec_out {
                refuse_overwriting_inputs(o, &[&input, Path::new(&preset)], "--out")?;
            }
            let real = stats_of_path(&input)?;
            let start = generate::load_spec(&preset)?;
            let result = fit(&start, &real, seed, evaluations);
            let mut s = format!(
                "fitted {} to {} in {} evaluations (means over layers; candidates copy the real shape)\n\n",
                preset,
                input.display(),
                result.evaluations
            );
            let mut t = Table::new(&[
                ("metric", Align::Left),
                ("real", Align::Right),
                ("fitted", Align::Right),
                ("rel. error", Align::Right),
                ("within 10%", Align::Left),
            ]);
            let rows = [
                (
                    "popularity Gini",
                    result.target.gini,
                    result.achieved.gini,
                    result.relative_error.gini,
                ),
                (
                    "normalised entropy",
                    result.target.entropy_norm,
                    result.achieved.entropy_norm,
                    result.relative_error.entropy_norm,
                ),
                (
                    "adjacent-token overlap",
                    result.target.adjacent_overlap,
                    result.achieved.adjacent_overlap,
                    result.relative_error.adjacent_overlap,
                ),
                (
                    "mean top-1 weight",
                    result.target.top1_weight,
                    result.achieved.top1_weight,
                    result.relative_error.top1_weight,
                ),
            ];
            for (name, real_v, fit_v, err) in rows {
                if !real_v.is_finite() {
                    continue;
                }
                t.row(vec![
                    name.into(),
                    format!("{real_v:.4}"),
                    format!("{fit_v:.4}"),
                    format!("{:.1}%", 100.0 * err),
                    if err <= 0.10 {
                        "yes".into()
                    } else {
                        "NO".into()
                    },
                ]);
            }
            s.push_str(&t.render());
            let spec = &result.spec;
            s.push_str(&format!(
                "\nparameters: p_stay {:.4}, noise {:.4}, temperature {:.4}, bias_skew {:.4}, zipf_s {:.4}\n",
                spec.p_stay, spec.noise, spec.temperature, spec.bias_skew, spec.zipf_s
            ));
            if let Some(path) = spec_out {
                let mut text = format!(
                    "# Fitted by `moesim trace fit {} --preset {preset} --seed {seed}`\n",
                    input.display()
                );
                text.push_str(&generate::spec_to_toml(spec));
                crate::atomic_file::write_atomic(&path, text.as_bytes())?;
                s.push_str(&format!("wrote {}\n", path.display()));
            }
            emit(out, &s)
        }
        TraceCommand::Presets => {
            let mut t = Table::new(&[
                ("preset", Align::Left),
                ("layers", Align::Right),
                ("experts", Align::Right),
                ("top-k", Align::Right),
                ("d", Align::Right),
                ("p_stay", Align::Right),
                ("prefill+decode", Align::Right),
            ]);
            for (name, _) in generate::PRESETS {
                let s = generate::load_spec(name)?;
                t.row(vec![
                    s.name.clone(),
                    s.layers.to_string(),
                    s.experts.to_string(),
                    s.top_k.to_string(),
                    s.hidden_dim.to_string(),
                    format!("{}", s.p_stay),
                    format!("{}+{}", s.prefill_tokens, s.decode_tokens),
                ]);
            }
            emit(out, &t.render())
        }
    }
}

fn fmt(x: f64, digits: usize) -> String {
    if x.is_finite() {
        format!("{x:.digits$}")
    } else {
        "-".into()
    }
}

fn stats_text(rep: &StatsReport) -> String {
    let s = &rep.summary;
    let mut out = format!(
        "{} requests, {} routing events ({} prefill, {} decode); {} experts, top-{}\n\n",
        s.requests, s.events, s.prefill_events, s.decode_events, rep.experts, rep.top_k
    );
    let mut t = Table::new(&[
        ("layer", Align::Right),
        ("events", Align::Right),
        ("Gini", Align::Right),
        ("entropy bits", Align::Right),
        ("norm. entropy", Align::Right),
        ("top expert share", Align::Right),
        ("adjacent overlap", Align::Right),
        ("top-1 weight", Align::Right),
        ("mean reuse dist.", Align::Right),
        ("cold", Align::Right),
        ("max co-sel. lift", Align::Right),
    ]);
    for l in &rep.layers {
        let top = l.shares.iter().cloned().fold(0.0f64, f64::max);
        t.row(vec![
            l.layer.to_string(),
            l.events.to_string(),
            fmt(l.gini, 3),
            fmt(l.entropy_bits, 3),
            fmt(l.entropy_norm, 3),
            format!("{:.1}%", 100.0 * top),
            fmt(l.adjacent_overlap, 3),
            fmt(l.top1_weight, 3),
            fmt(l.reuse_mean, 2),
            format!("{:.1}%", 100.0 * l.cold_fraction),
            fmt(l.coselect_max_lift, 2),
        ]);
    }
    t.row(vec![
        "mean".into(),
        String::new(),
        fmt(s.gini, 3),
        String::new(),
        fmt(s.entropy_norm, 3),
        String::new(),
        fmt(s.adjacent_overlap, 3),
        fmt(s.top1_weight, 3),
        fmt(s.reuse_mean, 2),
        String::new(),
        fmt(s.coselect_max_lift, 2),
    ]);
    out.push_str(&t.render());
    out.push_str(
        "\nGini/entropy: popularity per layer; adjacent overlap: |S_t ∩ S_t-1| / k; reuse distance: distinct experts \
         since the previous use (LRU stack depth); co-selection lift: max P(j at l+1 | i at l) / P(j at l+1).\n",
    );
    out
}

fn write_stats_csv(rep: &StatsReport, path: &Path) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| Error::usage(format!("{}: {e}", path.display()));
    w.write_record(["layer", "metric", "key", "value"])
        .map_err(csv_err)?;
    let s = &rep.summary;
    for (metric, value) in [
        ("requests", s.requests as f64),
        ("events", s.events as f64),
        ("prefill_events", s.prefill_events as f64),
        ("decode_events", s.decode_events as f64),
        ("gini", s.gini),
        ("entropy_norm", s.entropy_norm),
        ("adjacent_overlap", s.adjacent_overlap),
        ("top1_weight", s.top1_weight),
        ("reuse_mean", s.reuse_mean),
        ("coselect_max_lift", s.coselect_max_lift),
    ] {
        w.write_record(["all", metric, "", &value.to_string()])
            .map_err(csv_err)?;
    }
    for l in &rep.layers {
        let layer = l.layer.to_string();
        for (metric, value) in [
            ("events", l.events as f64),
            ("accesses", l.accesses as f64),
            ("gini", l.gini),
            ("entropy_bits", l.entropy_bits),
            ("entropy_norm", l.entropy_norm),
            ("adjacent_overlap", l.adjacent_overlap),
            ("top1_weight", l.top1_weight),
            ("reuse_mean", l.reuse_mean),
            ("cold_fraction", l.cold_fraction),
            ("coselect_max_lift", l.coselect_max_lift),
        ] {
            w.write_record([layer.as_str(), metric, "", &value.to_string()])
                .map_err(csv_err)?;
        }
        for (e, share) in l.shares.iter().enumerate() {
            w.write_record([layer.as_str(), "share", &e.to_string(), &share.to_string()])
                .map_err(csv_err)?;
        }
        let n = l.reuse_histogram.len();
        for (d, count) in l.reuse_histogram.iter().enumerate() {
            let key = if d + 1 == n {
                "cold".to_string()
            } else {
                d.to_string()
            };
            w.write_record([layer.as_str(), "reuse_distance", &key, &count.to_string()])
                .map_err(csv_err)?;
        }
        for c in &l.coselect_top {
            let key = format!("{}>{}", c.from, c.to);
            w.write_record([
                layer.as_str(),
                "coselect_p_next",
                &key,
                &c.p_next_given_this.to_string(),
            ])
            .map_err(csv_err)?;
        }
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::usage(format!("{}: {e}", path.display())))?;
    f.write_all(&bytes).map_err(|e| f.io_error(e))?;
    f.commit()
}
