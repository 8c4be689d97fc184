//! Exporters to libCacheSim's trace formats, for cross-checking cache policies.
//!
//! A routing trace becomes a flat stream of expert accesses: every record's selected experts
//! in rank order, one access each (libCacheSim's sequential semantics). The object id of
//! expert `e` at layer `l` is `l · experts + e`; the object size is the expert's bytes, or 1
//! in object-slot mode. `--layer` keeps one layer's accesses, for per-layer cache checks.
//!
//! - `libcachesim-csv`: a header `time,obj_id,obj_size`, then one row per access.
//! - `oracle-general`: 24-byte little-endian records `<u32 clock_time, u64 obj_id, u32 obj_size,
//!   i64 next_access_vtime>` with no header, where `next_access_vtime` is the 1-based index of
//!   the next access to the same object and −1 if there is none (libCacheSim's converter also
//!   writes 1-based indices). Records are written with −1 first, then fixed up by a backward
//!   pass over the file, so memory stays bounded by the number of objects.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::RoutingRecord;
use super::native::TraceReader;
use crate::atomic_file::AtomicFile;
use crate::error::{Error, Result};

/// Output formats of `trace export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// CSV with a `time,obj_id,obj_size` header.
    LibcachesimCsv,
    /// libCacheSim's 24-byte oracleGeneral binary records.
    OracleGeneral,
}

/// Size of one oracleGeneral record.
pub const ORACLE_RECORD_BYTES: usize = 24;

/// Counts of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// Accesses written.
    pub accesses: u64,
    /// Distinct objects.
    pub objects: u64,
}

/// Exports the native trace `input` to `out`.
pub fn export(
    input: &Path,
    format: ExportFormat,
    layer: Option<u32>,
    object_bytes: u64,
    out: &Path,
) -> Result<ExportSummary> {
    if object_bytes == 0 || object_bytes > u32::MAX as u64 {
        return Err(Error::usage(format!(
            "object size {object_bytes} must be in 1..=4294967295 bytes"
        )));
    }
    let mut reader = TraceReader::open(input)?;
    let meta = reader.meta().clone();
    if let Some(l) = layer
        && l >= meta.layers
    {
        return Err(Error::usage(format!(
            "--layer {l}: the trace has layers 0..{}",
            meta.layers
        )));
    }
    let n_objects = meta.layers as usize * meta.experts as usize;
    let mut seen = vec![false; n_objects];
    let mut file = AtomicFile::create(out)?;
    if format == ExportFormat::LibcachesimCsv {
        file.write_all(b"time,obj_id,obj_size\n")
            .map_err(|e| file.io_error(e))?;
    }
    let mut r = RoutingRecord::default();
    let mut accesses: u64 = 0;
    let mut line = Vec::with_capacity(64);
    while reader.next_record(&mut r)? {
        if layer.is_some_and(|l| l != r.layer) {
            continue;
        }
        for &e in &r.experts {
            let obj = r.layer as u64 * meta.experts as u64 + e as u64;
            seen[obj as usize] = true;
            accesses += 1;
            let time = u32::try_from(accesses)
                .map_err(|_| Error::usage("more than 2^32 accesses do not fit clock_time"))?;
            line.clear();
            match format {
                ExportFormat::LibcachesimCsv => {
                    let _ = writeln!(line, "{time},{obj},{object_bytes}");
                }
                ExportFormat::OracleGeneral => {
                    line.extend_from_slice(&time.to_le_bytes());
                    line.extend_from_slice(&obj.to_le_bytes());
                    line.extend_from_slice(&(object_bytes as u32).to_le_bytes());
                    line.extend_from_slice(&(-1i64).to_le_bytes());
                }
            }
            file.write_all(&line).map_err(|e| file.io_error(e))?;
        }
    }
    if format == ExportFormat::OracleGeneral {
        fix_next_access(&mut file, accesses, n_objects)?;
    }
    file.commit()?;
    Ok(ExportSummary {
        accesses,
        objects: seen.iter().filter(|&&s| s).count() as u64,
    })
}

/// Fills `next_access_vtime` of every record with a backward pass in blocks.
fn fix_next_access(file: &mut AtomicFile, n: u64, n_objects: usize) -> Result<()> {
    const BLOCK: u64 = 1 << 16;
    let path = file.path().to_path_buf();
    let f = file.file_mut()?;
    let io = |e| Error::io(&path, e);
    let mut next: Vec<i64> = vec![-1; n_objects];
    let mut buf = vec![0u8; BLOCK as usize * ORACLE_RECORD_BYTES];
    let mut end = n;
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let bytes = &mut buf[..((end - start) as usize * ORACLE_RECORD_BYTES)];
        f.seek(SeekFrom::Start(start * ORACLE_RECORD_BYTES as u64))
            .map_err(io)?;
        f.read_exact(bytes).map_err(io)?;
        for i in (0..(end - start) as usize).rev() {
            let rec = &mut bytes[i * ORACLE_RECORD_BYTES..(i + 1) * ORACLE_RECORD_BYTES];
            let obj = u64::from_le_bytes(rec[4..12].try_into().expect("8 bytes")) as usize;
            rec[16..24].copy_from_slice(&next[obj].to_le_bytes());
            // This access's 1-based index.
            next[obj] = (start + i as u64 + 1) as i64;
        }
        f.seek(SeekFrom::Start(start * ORACLE_RECORD_BYTES as u64))
            .map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        end = start;
    }
    f.seek(SeekFrom::End(0)).map_err(io)?;
    Ok(())
}
