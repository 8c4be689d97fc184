//! Output files that appear whole or not at all.
//!
//! [`AtomicFile`] writes to a temporary file beside the destination and renames it over the
//! destination on [`AtomicFile::commit`]. If the writer is dropped without committing (an input
//! error halfway through, a panic), the temporary file is removed, so a failed command never
//! leaves a partial output. Every live temporary file is registered, so that SIGINT and SIGTERM
//! (see [`remove_temporaries_on_signal`]) remove them too before the process exits; only a
//! SIGKILL can leave a `.tmp` file behind, and never a truncated destination.
//!
//! [`refuse_overwriting_inputs`] is the check every writer makes before it starts: an output
//! path that names one of the command's inputs is refused, since the rename would destroy it.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Temporary files being written, removed by the signal handler.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn register(tmp: &Path) {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(tmp.to_path_buf());
}

fn unregister(tmp: &Path) {
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = live.iter().position(|p| p == tmp) {
        live.swap_remove(i);
    }
}

/// Installs a SIGINT/SIGTERM handler (on its own thread, so it may lock and remove files)
/// that removes every live temporary file and exits with 130, as a shell reports a process
/// stopped by Ctrl-C. Call once, from `main`.
pub fn remove_temporaries_on_signal() {
    // A second installation (tests calling main twice) is harmless to skip.
    let _ = ctrlc::set_handler(|| {
        let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        for p in live.iter() {
            let _ = std::fs::remove_file(p);
        }
        eprintln!(
            "interrupted: removed {} unfinished output file(s)",
            live.len()
        );
        std::process::exit(130);
    });
}

/// Refuses `out` when it is the same file as one of `inputs` (compared by device and inode, so
/// `./t.jsonl`, an absolute path and a hard link all match), or when it is a directory.
/// `flag` names the output option in the message.
pub fn refuse_overwriting_inputs(out: &Path, inputs: &[&Path], flag: &str) -> Result<()> {
    let Ok(o) = std::fs::metadata(out) else {
        return Ok(());
    };
    if o.is_dir() {
        return Err(Error::usage(format!(
            "{flag} {}: is a directory; give a file path",
            out.display()
        )));
    }
    for input in inputs {
        if let Ok(i) = std::fs::metadata(input)
            && same_file(&o, &i)
        {
            return Err(Error::usage(format!(
                "{flag} {}: is the input {}; writing it would destroy the input (give another path)",
                out.display(),
                input.display()
            )));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.len() == b.len() && a.modified().ok() == b.modified().ok() && a.file_type() == b.file_type()
}

/// A buffered writer to a temporary file that becomes `path` on commit.
#[derive(Debug)]
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates the temporary file for `path` (its directory must exist).
    pub fn create(path: impl AsRef<Path>) -> Result<AtomicFile> {
        let path = path.as_ref().to_path_buf();
        if path.is_dir() {
            return Err(Error::usage(format!(
                "{}: is a directory; give a file path",
                path.display()
            )));
        }
        let name = path
            .file_name()
            .ok_or_else(|| Error::usage(format!("{}: not a file path", path.display())))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        register(&tmp);
        Ok(AtomicFile {
            path,
            tmp,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// The destination path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The writer, for streaming output.
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        self.writer.as_mut().expect("not yet committed")
    }

    /// Flushes buffered output and gives the underlying file, for in-place edits (it is opened
    /// for reading and writing) before [`AtomicFile::commit`].
    pub fn file_mut(&mut self) -> Result<&mut File> {
        let tmp = self.tmp.clone();
        let writer = self.writer();
        writer.flush().map_err(|e| Error::io(&tmp, e))?;
        Ok(writer.get_mut())
    }

    /// Flushes and renames the temporary file over the destination.
    pub fn commit(mut self) -> Result<()> {
        let writer = self.writer.take().expect("commit once");
        // No fsync: the rename already guarantees that a killed process leaves either the old
        // file or the complete new one; syncing gigabyte traces would only add wall time.
        let done = writer
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))
            .and_then(|file| {
                drop(file);
                std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))
            });
        if done.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        unregister(&self.tmp);
        done
    }

    /// Maps an I/O error on this file to [`Error::Io`] naming the destination.
    pub fn io_error(&self, e: io::Error) -> Error {
        Error::io(&self.path, e)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer().write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer().flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
            unregister(&self.tmp);
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes).map_err(|e| f.io_error(e))?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("moesim-atomic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn commit_replaces_destination() {
        let d = dir("commit");
        let p = d.join("out.txt");
        std::fs::write(&p, "old").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn a_failed_commit_leaves_no_temporary_file() {
        let d = dir("failed");
        // The destination's directory is replaced by a file after the writer opened: the
        // rename fails, and the temporary file goes with the error.
        let sub = d.join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        let mut f = AtomicFile::create(sub.join("out.txt")).unwrap();
        f.write_all(b"x").unwrap();
        std::fs::create_dir_all(sub.join("out.txt")).unwrap();
        std::fs::write(sub.join("out.txt").join("keep"), "k").unwrap();
        assert!(f.commit().is_err());
        let names: Vec<_> = std::fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out.txt"], "no .tmp left");
        assert!(LIVE.lock().unwrap().iter().all(|p| !p.starts_with(&sub)));
    }

    #[test]
    fn an_output_naming_an_input_or_a_directory_is_refused() {
        let d = dir("refuse");
        let input = d.join("in.txt");
        std::fs::write(&input, "data").unwrap();
        let e = refuse_overwriting_inputs(&d.join(".").join("in.txt"), &[&input], "--out")
            .unwrap_err()
            .to_string();
        assert!(e.contains("would destroy the input"), "{e}");
        assert!(refuse_overwriting_inputs(&d, &[&input], "--out").is_err());
        assert!(refuse_overwriting_inputs(&d.join("new.txt"), &[&input], "--out").is_ok());
        assert!(AtomicFile::create(&d).is_err());
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "data");
    }

    #[test]
    fn drop_without_commit_leaves_nothing() {
        let d = dir("drop");
        let p = d.join("out.txt");
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.write_all(b"partial").unwrap();
        }
        assert!(!p.exists());
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
    }
}
