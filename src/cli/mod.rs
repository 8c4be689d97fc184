//! The command-line interface: clap definitions and one handler module per command group.
//!
//! Handlers load inputs through the library, call it, and print human-readable tables or, with
//! `--json`, a JSON document. They own no logic of their own beyond presentation.

mod cache;
mod host;
pub mod model;
mod plan;
mod profile;
mod quant;
mod route;
mod run;
pub mod table;
mod trace;
mod validate;
mod values;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::{Error, Result};

/// moesim: simulate MoE expert caching, routing and precision on edge hardware.
#[derive(Debug, Parser)]
#[command(name = "moesim", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Hardware profiles: list the shipped ones, show one, check a file.
    #[command(subcommand)]
    Profile(profile::ProfileCommand),
    /// MoE model specs: list the shipped ones, show one.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Expert caches: replay a trace through eviction policies.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Simulate an experiment (latency, throughput, energy); no argument runs the quickstart.
    Run(run::RunArgs),
    /// Merge the part directories of a sharded sweep into one report, as an unsharded run writes.
    Merge(run::MergeArgs),
    /// Re-render a sweep report's summary and plots from its results.csv, without simulating.
    Plot(PlotArgs),
    /// Replay a trace through router × eviction policy × capacity (hit rate vs routing quality).
    Route(route::RouteArgs),
    /// This host: a real paged-expert decode, calibration, and validation of the simulator.
    #[command(subcommand)]
    Host(host::HostCommand),
    /// Quantized kernels: error by format, packed bytes, GEMV throughput.
    #[command(subcommand)]
    Quant(quant::QuantCommand),
    /// Routing traces: generate, import, export, characterise, fit.
    #[command(subcommand)]
    Trace(trace::TraceCommand),
    /// Hold an experiment's predictions against its `[[observed]]` measurements of real systems,
    /// datasheet-only and with runtime parameters fitted on chosen observations.
    Validate(validate::ValidateArgs),
    /// Will a model run on a device, and with which settings? A verdict, the best placement and
    /// format with its llama.cpp command line, and the runners-up.
    Plan(plan::PlanArgs),
}

/// Arguments of `moesim plot`.
#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// A sweep's report directory (holding results.csv).
    pub dir: std::path::PathBuf,
}

/// Runs a parsed command line. Output goes to stdout; a closed pipe (`| head`) is not an error.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let res = match cli.command {
        Command::Profile(cmd) => profile::run(cmd, &mut out),
        Command::Model(cmd) => model::run(cmd, &mut out),
        Command::Trace(cmd) => trace::run(cmd, &mut out),
        Command::Cache(cmd) => cache::run(cmd, &mut out),
        Command::Route(args) => route::run(args, &mut out),
        Command::Run(args) => run::run(args, &mut out),
        Command::Merge(args) => run::merge(args, &mut out),
        Command::Quant(cmd) => quant::run(cmd, &mut out),
        Command::Host(cmd) => host::run(cmd, &mut out),
        Command::Validate(args) => validate::run(args, &mut out),
        Command::Plan(args) => plan::run(args, &mut out),
        Command::Plot(args) => {
            let name = args
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "sweep".into());
            crate::sweep::summary::finish(&args.dir, &name).and_then(|md| emit(&mut out, &md))
        }
    };
    match res {
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e),
        Ok(()) => {
            out.flush().map_err(|e| Error::io("<stdout>", e))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes `text` to `out`, mapping failures to [`Error::Io`] on `<stdout>`.
pub(crate) fn emit(out: &mut dyn Write, text: &str) -> Result<()> {
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io("<stdout>", e))
}

/// Serializes `value` as pretty JSON plus a newline.
pub(crate) fn emit_json<T: serde::Serialize>(out: &mut dyn Write, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).expect("output types serialize");
    text.push('\n');
    emit(out, &text)
}

/// Prints a warning line on stderr.
pub(crate) fn warn(message: &str) {
    eprintln!("warning: {message}");
}
