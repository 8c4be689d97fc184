//! The crate's error type.
//!
//! Owns every user-facing error message. Only the input boundaries (config files, traces,
//! weight files, the command line) and output writing can fail; the core (engine, cache,
//! router, quant) returns plain values. Every message fits on one line and names the file,
//! the line or key when known, and the reason.

use std::fmt;
use std::path::{Path, PathBuf};

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong at moesim's boundaries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A malformed or invalid input file (TOML, trace, weights).
    #[error("{0}")]
    Input(#[from] InputError),
    /// An operating-system error while reading or writing a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A bad command-line argument or combination of arguments.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A usage error with the given message.
    pub fn usage(message: impl Into<String>) -> Error {
        Error::Usage(message.into())
    }
}

/// A problem located in an input file: `file[:line]: [key: ]reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// The file as the user named it (or a preset's name).
    pub file: String,
    /// 1-based line number, when known.
    pub line: Option<u64>,
    /// Dotted key path inside the file (`tiers[2].latency_ns`), when known.
    pub key: Option<String>,
    /// What is wrong, in a few words.
    pub reason: String,
}

impl InputError {
    /// An error about a whole file.
    pub fn new(file: impl Into<String>, reason: impl Into<String>) -> InputError {
        InputError {
            file: file.into(),
            line: None,
            key: None,
            reason: reason.into(),
        }
    }

    /// An error at a key path.
    pub fn at_key(
        file: impl Into<String>,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> InputError {
        InputError {
            file: file.into(),
            line: None,
            key: Some(key.into()),
            reason: reason.into(),
        }
    }

    /// An error at a line.
    pub fn at_line(file: impl Into<String>, line: u64, reason: impl Into<String>) -> InputError {
        InputError {
            file: file.into(),
            line: Some(line),
            key: None,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        // Keep the message on one line whatever the underlying library produced.
        let reason = self.reason.split_whitespace().collect::<Vec<_>>().join(" ");
        write!(f, ": {reason}")
    }
}

impl std::error::Error for InputError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_error_formats_on_one_line() {
        let e = InputError {
            file: "a.toml".into(),
            line: Some(3),
            key: Some("tiers[0].kind".into()),
            reason: "unknown variant `x`,\n expected one of `sram`".into(),
        };
        assert_eq!(
            e.to_string(),
            "a.toml:3: tiers[0].kind: unknown variant `x`, expected one of `sram`"
        );
    }
}
