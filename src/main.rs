//! The `moesim` binary: parse the command line, run, print any error on one line, exit.
//!
//! Exit codes: 0 success, 2 bad input or any other error (as ripgrep and clap do).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = moesim::cli::Cli::parse();
    match moesim::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
