//! Opening the files moesim reads.
//!
//! Every reader opens its input through [`open`] (or reads it whole through [`read`] or
//! [`read_to_string`]), which refuses what cannot be a finite input: a directory, or a device
//! such as `/dev/zero` or `/dev/urandom`, which would never end and fill memory. Regular files
//! and pipes (`<(zcat trace.jsonl.gz)`) are read.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, InputError, Result};

/// Opens `path` for reading, refusing directories and devices.
pub fn open(path: &Path) -> Result<File> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let kind = f.metadata().map_err(|e| Error::io(path, e))?.file_type();
    if kind.is_dir() {
        return Err(refused(path, "is a directory, not a file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_char_device() || kind.is_block_device() || kind.is_socket() {
            return Err(refused(
                path,
                "is a device or socket, not a file (it may never end)",
            ));
        }
    }
    Ok(f)
}

fn refused(path: &Path, reason: &str) -> Error {
    Error::Input(InputError::new(path.display().to_string(), reason))
}

/// Reads `path` whole.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut f = open(path)?;
    let mut v = Vec::new();
    f.read_to_end(&mut v).map_err(|e| Error::io(path, e))?;
    Ok(v)
}

/// Reads `path` whole as UTF-8 text.
pub fn read_to_string(path: &Path) -> Result<String> {
    String::from_utf8(read(path)?).map_err(|_| refused(path, "is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_directories_are_refused() {
        assert!(
            open(Path::new("/dev/zero"))
                .unwrap_err()
                .to_string()
                .contains("device")
        );
        assert!(
            read(Path::new("/"))
                .unwrap_err()
                .to_string()
                .contains("directory")
        );
        let p = std::env::temp_dir().join(format!("moesim-input-{}", std::process::id()));
        std::fs::write(&p, "x").unwrap();
        assert_eq!(read_to_string(&p).unwrap(), "x");
        std::fs::remove_file(&p).unwrap();
    }
}
