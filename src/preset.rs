//! Resolving a "preset name or file path" argument to the text of a TOML input.
//!
//! Shipped presets (hardware profiles, models) are compiled into the binary, so the tool works
//! from any directory. A name that matches a preset wins; anything else is read as a file.

use std::path::Path;

use crate::error::{Error, Result};

/// Returns `(label, text)` for `name_or_path`: the preset's text if `preset` is given, else the
/// file's contents. `what` ("hardware profile", "model") and `preset_names` word the error.
pub fn read_source(
    name_or_path: &str,
    preset: Option<&'static str>,
    what: &str,
    preset_names: &[&str],
) -> Result<(String, String)> {
    if let Some(text) = preset {
        return Ok((format!("{name_or_path} (preset)"), text.to_string()));
    }
    let path = Path::new(name_or_path);
    if !path.exists() {
        return Err(Error::usage(format!(
            "{name_or_path}: no such {what} preset or file (presets: {})",
            preset_names.join(", ")
        )));
    }
    let text = crate::input::read_to_string(path)?;
    Ok((name_or_path.to_string(), text))
}
