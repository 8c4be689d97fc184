//! Opening a GGUF file: the one place this module touches the filesystem (the CLI and
//! experiments' `[model] gguf` call it). Only the header is read.

use std::path::Path;

use super::{GgufHeader, GgufModel, read_header};
use crate::error::{Error, InputError, Result};

/// Reads the header of the GGUF file at `path` and the MoE model it describes; errors name the
/// file and the tensor or key.
pub fn read(path: &Path) -> Result<(GgufHeader, GgufModel)> {
    let label = path.display().to_string();
    let file = crate::input::open(path)?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let header = read_header(std::io::BufReader::new(file), len)
        .map_err(|e| InputError::at_key(&label, e.at, e.reason))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let model = GgufModel::from_header(&header, &stem)
        .map_err(|(at, reason)| InputError::at_key(&label, at, reason))?;
    Ok((header, model))
}
