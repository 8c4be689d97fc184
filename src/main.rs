//! The `moesim` binary: parse the command line, run, print any error on one line, exit.
//!
//! Exit codes: 0 success, 2 bad input or any other error (as ripgrep and clap do).

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

fn main() -> ExitCode {
    moesim::atomic_file::remove_temporaries_on_signal();
    let cli = match moesim::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return command_line_error(e),
    };
    match moesim::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Help and version go out as clap renders them; a real error becomes one line (clap's first
/// line plus its tip, if any), exit code 2.
fn command_line_error(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            let text = e.render().to_string();
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            // The message, with any list that follows it (e.g. the missing arguments).
            let message: Vec<&str> = lines
                .iter()
                .copied()
                .take_while(|l| {
                    !l.starts_with("tip:") && !l.starts_with("Usage:") && !l.starts_with("For more")
                })
                .collect();
            let first = match message.split_first() {
                Some((head, rest)) if !rest.is_empty() => format!("{head} {}", rest.join(", ")),
                Some((head, _)) => head.to_string(),
                None => "error: invalid command line".to_string(),
            };
            let first = if first.starts_with("error:") {
                first
            } else {
                format!("error: {first}")
            };
            match lines.iter().find(|l| l.starts_with("tip:")) {
                Some(tip) => eprintln!("{first} ({tip}; see --help)"),
                None => eprintln!("{first} (see --help)"),
            }
            ExitCode::from(2)
        }
    }
}
