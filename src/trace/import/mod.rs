//! Importers: other trace formats into the native format.
//!
//! Each importer streams its input and hands records to `RequestBuffer`, which validates
//! each record as it arrives (shape, expert range, weights, order within its (request, layer)
//! stream) and buffers one request at a time. When a request ends it is written in execution
//! order: prefill records layer-major (a batched prefill), decode records token-major. Memory
//! is bounded by the largest request. When the layer count is given (`--layers`), records
//! stream straight into the output; otherwise it is inferred (highest layer + 1), so the body
//! is streamed to a temporary file and the header written in front of it at the end. Import never repairs: the first problem aborts with the file, line and reason, and
//! nothing is written to the output.

pub mod jsonl;
pub mod moe_cache_lab;

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use super::native::{RecordHead, format_parts};
use super::stats::TraceStats;
use super::{Phase, RoutingRecord, TraceMeta};
use crate::atomic_file::AtomicFile;
use crate::error::{Error, InputError, Result};

/// Input formats `trace import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// moe-cache-lab v1 routing JSONL (one file per request).
    MoeCacheLab,
    /// Generic JSONL with field names mapped by `--map role=field`.
    Jsonl,
}

/// Shape and provenance the user gives on the command line.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Experts per layer (required when the input has no metadata).
    pub experts: Option<u32>,
    /// Top-k (required when the input has no metadata).
    pub top_k: Option<u32>,
    /// MoE layers (inferred when absent).
    pub layers: Option<u32>,
    /// Model name for the header.
    pub model: Option<String>,
}

/// Where an import writes the native trace.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    /// A file, written atomically.
    File(&'a Path),
    /// A byte vector returned by `RequestBuffer::finish` (tests and benchmarks), with a
    /// capacity hint in bytes.
    Memory(usize),
}

/// The outcome of an import.
#[derive(Debug, Clone)]
pub struct ImportResult {
    /// Counts.
    pub summary: ImportSummary,
    /// Statistics of the imported trace, computed in the same pass when asked for.
    pub stats: Option<crate::trace::stats::StatsReport>,
    /// The trace itself, for [`Destination::Memory`].
    pub bytes: Option<Vec<u8>>,
}

/// Counts of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    /// Requests written.
    pub requests: u64,
    /// Records written.
    pub records: u64,
    /// Layers in the header.
    pub layers: u32,
    /// Whether every record had logits.
    pub logits: bool,
}

/// Runs an import of `inputs` (in order) into the native trace `out`; with `with_stats`, also
/// characterises the imported trace in the same pass.
pub fn import(
    format: ImportFormat,
    inputs: &[&Path],
    maps: &[(String, String)],
    options: &ImportOptions,
    out: Destination<'_>,
    with_stats: bool,
) -> Result<ImportResult> {
    if inputs.is_empty() {
        return Err(Error::usage("trace import needs at least one input file"));
    }
    match format {
        ImportFormat::MoeCacheLab => {
            if !maps.is_empty() {
                return Err(Error::usage("--map applies to --format jsonl only"));
            }
            moe_cache_lab::import(inputs, options, out, with_stats)
        }
        ImportFormat::Jsonl => jsonl::import(inputs, maps, options, out, with_stats),
    }
}

/// A native trace (its bytes) cut to whole decode tokens: in every request each layer keeps its
/// first `m` decode events, `m` the fewest any layer has, renumbered from the first position.
/// For traces whose collector dropped events: per-layer order stays exact; after a gap, layers
/// pair up tokens one off. Prefill records are kept as they are.
pub fn truncate_to_whole_tokens(bytes: &[u8]) -> Result<Vec<u8>> {
    let (meta, records) = super::native::read_all("import", bytes)?;
    let mut w =
        super::native::TraceWriter::new(Vec::new(), &meta).map_err(|e| Error::io("<memory>", e))?;
    let layers = meta.layers as usize;
    let mut i = 0;
    while i < records.len() {
        let request = records[i].request;
        let end = records[i..]
            .iter()
            .position(|r| r.request != request)
            .map_or(records.len(), |n| i + n);
        let mut decode: Vec<Vec<&RoutingRecord>> = vec![Vec::new(); layers];
        for r in &records[i..end] {
            if r.phase == Phase::Prefill {
                w.write(r).map_err(|e| Error::io("<memory>", e))?;
            } else {
                decode[r.layer as usize].push(r);
            }
        }
        let m = decode.iter().map(Vec::len).min().unwrap_or(0);
        for t in 0..m {
            for per_layer in &decode {
                let mut r = per_layer[t].clone();
                r.position = per_layer[0].position + t as u32;
                w.write(&r).map_err(|e| Error::io("<memory>", e))?;
            }
        }
        i = end;
    }
    w.finish().map_err(|e| Error::io("<memory>", e))
}

/// Validates records as they arrive and writes one request at a time in execution order.
#[derive(Debug)]
pub(crate) struct RequestBuffer {
    experts: u32,
    top_k: u32,
    layers: Option<u32>,
    request: Option<u32>,
    /// The current request, columnar: fixed fields per record, variable parts in flat buffers.
    slots: Vec<Slot>,
    order: Vec<u32>,
    sort_scratch: Vec<u32>,
    experts_buf: Vec<u16>,
    weights_buf: Vec<f32>,
    logits_buf: Vec<f32>,
    /// Last position per (phase, layer) of the current request, for the order check.
    last_position: Vec<[Option<u32>; 2]>,
    max_prefill_position: Option<u32>,
    min_decode_position: Option<u32>,
    max_layer: u32,
    all_logits: bool,
    n_requests: u64,
    n_records: u64,
    output: Output,
    /// Statistics fed in execution order (when the layer count is known up front).
    stats: Option<TraceStats>,
    with_stats: bool,
    /// Direct mode promised logits on every record.
    logits_expected: bool,
    model: Option<String>,
    source: String,
    /// The input files, for errors.
    files: String,
    line_buf: Vec<u8>,
}

impl RequestBuffer {
    /// A buffer for `out`. With a known layer count the header is written at once, promising
    /// logits on every record iff `logits_expected`; otherwise it is written at the end, with
    /// logits promised iff every record had them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        experts: u32,
        top_k: u32,
        layers: Option<u32>,
        logits_expected: bool,
        model: Option<String>,
        (source, files): (String, String),
        out: Destination<'_>,
        with_stats: bool,
    ) -> Result<RequestBuffer> {
        if experts == 0 || top_k == 0 || top_k > experts || experts > 65536 {
            return Err(Error::usage(format!(
                "{files}: invalid model shape: {experts} experts, top-k {top_k} (need 1 <= top-k <= experts <= 65536)"
            )));
        }
        if let Some(l) = layers {
            super::check_shape(l, experts, top_k)
                .map_err(|r| Error::usage(format!("{files}: invalid model shape: {r}")))?;
        }
        let header = |layers| {
            let meta = TraceMeta {
                layers,
                experts,
                top_k,
                logits: logits_expected,
                model: model.clone(),
                source: Some(source.clone()),
                generator: None,
            };
            let mut header = super::native::header_line(&meta);
            header.push('\n');
            header
        };
        // Statistics need the layer count up front; without it they wait for the body pass.
        let stats = match (with_stats, layers) {
            (true, Some(layers)) => Some(
                TraceStats::new(&TraceMeta {
                    layers,
                    experts,
                    top_k,
                    logits: false,
                    model: None,
                    source: None,
                    generator: None,
                })
                .map_err(|r| Error::usage(format!("{files}: --stats: {r}")))?,
            ),
            _ => None,
        };
        let output = match (out, layers) {
            (Destination::Memory(capacity), Some(layers)) => {
                let mut v = Vec::with_capacity(capacity);
                v.extend_from_slice(header(layers).as_bytes());
                Output::Memory(v)
            }
            (Destination::Memory(capacity), None) => Output::Memory(Vec::with_capacity(capacity)),
            // The shape is known: write the header now and stream into the output.
            (Destination::File(out), Some(layers)) => {
                let mut file = AtomicFile::create(out)?;
                file.write_all(header(layers).as_bytes())
                    .map_err(|e| file.io_error(e))?;
                Output::Direct(file)
            }
            (Destination::File(out), None) => {
                let name = out
                    .file_name()
                    .ok_or_else(|| Error::usage(format!("{}: not a file path", out.display())))?;
                let path = out.with_file_name(format!(
                    ".{}.{}.body",
                    name.to_string_lossy(),
                    std::process::id()
                ));
                let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
                Output::Body {
                    writer: BufWriter::with_capacity(1 << 20, f),
                    path,
                    out: out.to_path_buf(),
                }
            }
        };
        Ok(RequestBuffer {
            experts,
            top_k,
            layers,
            request: None,
            slots: Vec::new(),
            order: Vec::new(),
            sort_scratch: Vec::new(),
            experts_buf: Vec::new(),
            weights_buf: Vec::new(),
            logits_buf: Vec::new(),
            last_position: Vec::new(),
            max_prefill_position: None,
            min_decode_position: None,
            max_layer: 0,
            all_logits: true,
            n_requests: 0,
            n_records: 0,
            output,
            stats,
            with_stats,
            logits_expected: logits_expected && layers.is_some(),
            model,
            source,
            files,
            line_buf: Vec::with_capacity((1 << 20) + 4096),
        })
    }

    /// Adds a record read at `file:line`. A new `request` id ends the previous request.
    pub(crate) fn push(&mut self, r: &RoutingRecord, file: &str, line: u64) -> Result<()> {
        let at = |reason: String| -> Error { InputError::at_line(file, line, reason).into() };
        let meta = TraceMeta {
            layers: self.layers.unwrap_or(u32::MAX),
            experts: self.experts,
            top_k: self.top_k,
            logits: self.logits_expected,
            model: None,
            source: None,
            generator: None,
        };
        r.validate(&meta).map_err(at)?;
        if self.request != Some(r.request) {
            self.flush()?;
            self.request = Some(r.request);
            self.n_requests += 1;
        }
        let layer = r.layer as usize;
        if self.last_position.len() <= layer {
            self.last_position.resize(layer + 1, [None, None]);
        }
        let phase_index = (r.phase == Phase::Decode) as usize;
        if let Some(prev) = self.last_position[layer][phase_index]
            && r.position <= prev
        {
            return Err(at(format!(
                "position {} at layer {} does not follow position {prev}: records of one (request, layer) \
                     must be ordered by position",
                r.position, r.layer
            )));
        }
        self.last_position[layer][phase_index] = Some(r.position);
        // Every prefill position must precede every decode position of the request.
        match r.phase {
            Phase::Prefill => {
                if let Some(min_decode) = self.min_decode_position.filter(|&m| r.position >= m) {
                    return Err(at(format!(
                        "prefill position {} is not before the first decode position {min_decode}",
                        r.position
                    )));
                }
                self.max_prefill_position = Some(
                    self.max_prefill_position
                        .map_or(r.position, |m| m.max(r.position)),
                );
            }
            Phase::Decode => {
                if let Some(max_prefill) = self.max_prefill_position.filter(|&m| r.position <= m) {
                    return Err(at(format!(
                        "decode position {} is not after the last prefill position {max_prefill}",
                        r.position
                    )));
                }
                self.min_decode_position = Some(
                    self.min_decode_position
                        .map_or(r.position, |m| m.min(r.position)),
                );
            }
        }
        self.max_layer = self.max_layer.max(r.layer);
        self.all_logits &= !r.logits.is_empty();
        self.slots.push(Slot {
            head: RecordHead {
                request: r.request,
                phase: r.phase,
                position: r.position,
                layer: r.layer,
                token: r.token,
            },
            experts: self.experts_buf.len() as u32,
            n_experts: r.experts.len() as u16,
            weights: self.weights_buf.len() as u32,
            n_weights: r.weights.len() as u16,
            logits: self.logits_buf.len() as u32,
            has_logits: !r.logits.is_empty(),
        });
        self.experts_buf.extend_from_slice(&r.experts);
        self.weights_buf.extend_from_slice(&r.weights);
        self.logits_buf.extend_from_slice(&r.logits);
        Ok(())
    }

    /// Writes the buffered request in execution order.
    fn flush(&mut self) -> Result<()> {
        if self.slots.is_empty() {
            return Ok(());
        }
        execution_order(&self.slots, &mut self.order, &mut self.sort_scratch);
        let n_experts = self.experts as usize;
        self.line_buf.clear();
        for &i in &self.order {
            let s = &self.slots[i as usize];
            let experts = &self.experts_buf[s.experts as usize..][..s.n_experts as usize];
            let weights = &self.weights_buf[s.weights as usize..][..s.n_weights as usize];
            let logits = if s.has_logits {
                &self.logits_buf[s.logits as usize..][..n_experts]
            } else {
                &[][..]
            };
            format_parts(s.head, experts, weights, logits, &mut self.line_buf);
            if let Some(stats) = &mut self.stats {
                let h = &s.head;
                stats.add_parts(h.request, h.phase, h.position, h.layer, experts, weights);
            }
            // Chunks at least as large as the output's buffer bypass its copy.
            if self.line_buf.len() >= 1 << 20 {
                self.output.write(&self.line_buf)?;
                self.line_buf.clear();
            }
        }
        self.output.write(&self.line_buf)?;
        self.line_buf.clear();
        self.n_records += self.slots.len() as u64;
        self.slots.clear();
        self.experts_buf.clear();
        self.weights_buf.clear();
        self.logits_buf.clear();
        self.last_position
            .iter_mut()
            .for_each(|p| *p = [None, None]);
        self.max_prefill_position = None;
        self.min_decode_position = None;
        Ok(())
    }

    /// Flushes the last request and completes the output (atomically for files).
    pub(crate) fn finish(mut self) -> Result<ImportResult> {
        self.flush()?;
        if self.n_records == 0 {
            return Err(Error::usage(format!(
                "{}: the input holds no routing records",
                self.files
            )));
        }
        let layers = self.layers.unwrap_or(self.max_layer + 1);
        let logits = if self.layers.is_some() {
            self.logits_expected
        } else {
            self.all_logits
        };
        let meta = TraceMeta {
            layers,
            experts: self.experts,
            top_k: self.top_k,
            logits,
            model: self.model.take(),
            source: Some(std::mem::take(&mut self.source)),
            generator: None,
        };
        if self.with_stats && self.stats.is_none() {
            // The statistics run after the output is written: size them first, so a shape
            // they cannot take fails before anything is written.
            crate::units::check_working_bytes(
                &format!(
                    "the statistics of {layers} layers x {} experts",
                    self.experts
                ),
                TraceStats::working_bytes(&meta),
            )
            .map_err(|r| Error::usage(format!("{}: --stats: {r}", self.files)))?;
        }
        let mut header = super::native::header_line(&meta);
        header.push('\n');
        let summary = ImportSummary {
            requests: self.n_requests,
            records: self.n_records,
            layers,
            logits,
        };
        let mut bytes = None;
        let mut stats = self.stats.take().map(|s| s.report());
        match std::mem::replace(&mut self.output, Output::Done) {
            Output::Direct(file) => file.commit()?,
            Output::Memory(body) => {
                let all = if self.layers.is_some() {
                    body
                } else {
                    let mut all = header.into_bytes();
                    all.extend_from_slice(&body);
                    all
                };
                if self.with_stats && stats.is_none() {
                    stats = Some(crate::trace::stats::stats_of_reader("<memory>", &all[..])?);
                }
                bytes = Some(all);
            }
            Output::Body {
                mut writer,
                path,
                out,
            } => {
                writer.flush().map_err(|e| Error::io(&path, e))?;
                drop(writer);
                let mut file = AtomicFile::create(&out)?;
                file.write_all(header.as_bytes())
                    .map_err(|e| file.io_error(e))?;
                let mut body = BufReader::new(File::open(&path).map_err(|e| Error::io(&path, e))?);
                std::io::copy(&mut body, file.writer()).map_err(|e| file.io_error(e))?;
                if self.with_stats {
                    // The layer count is known only now: characterise the written file.
                    let written = file.path().to_path_buf();
                    file.commit()?;
                    stats = Some(crate::trace::stats::stats_of_path(&written)?);
                } else {
                    file.commit()?;
                }
                let _ = std::fs::remove_file(&path);
            }
            Output::Done => unreachable!("finish runs once"),
        }
        Ok(ImportResult {
            summary,
            stats,
            bytes,
        })
    }
}

/// Where records go.
#[derive(Debug)]
enum Output {
    /// Straight into the output (layer count known).
    Direct(AtomicFile),
    /// Into memory.
    Memory(Vec<u8>),
    /// Into a temporary body file, prefixed with the header at the end.
    Body {
        writer: BufWriter<File>,
        path: std::path::PathBuf,
        out: std::path::PathBuf,
    },
    /// Finished.
    Done,
}

impl Output {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Output::Direct(file) => file.write_all(bytes).map_err(|e| file.io_error(e)),
            Output::Memory(v) => {
                v.extend_from_slice(bytes);
                Ok(())
            }
            Output::Body { writer, path, .. } => writer
                .write_all(bytes)
                .map_err(|e| Error::io(path.as_path(), e)),
            Output::Done => unreachable!("no writes after finish"),
        }
    }
}

/// Computes the execution order of one request's slots into `order` (indices into `slots`):
/// prefill records by (layer, position), then decode records by (position, layer). Stable
/// counting-sort passes over indices (least significant key first) when positions are dense,
/// as they are in real traces; a comparison sort otherwise.
fn execution_order(slots: &[Slot], order: &mut Vec<u32>, scratch: &mut Vec<u32>) {
    let key = |s: &Slot| -> (u8, u32, u32) {
        let h = &s.head;
        match h.phase {
            Phase::Prefill => (0, h.layer, h.position),
            Phase::Decode => (1, h.position, h.layer),
        }
    };
    let n = slots.len();
    order.clear();
    order.extend(0..n as u32);
    let max_layer = slots.iter().map(|s| s.head.layer).max().unwrap_or(0) as usize;
    let min_pos = slots.iter().map(|s| s.head.position).min().unwrap_or(0);
    let max_pos = slots.iter().map(|s| s.head.position).max().unwrap_or(0);
    let pos_range = (max_pos - min_pos) as usize + 1;
    if pos_range > 4 * n + 1024 || max_layer > 4 * n + 1024 {
        order.sort_by_key(|&i| key(&slots[i as usize]));
        return;
    }
    let mixed_phases = slots.iter().any(|s| s.head.phase != slots[0].head.phase);
    // Digit functions, least significant first: the secondary key, then the primary key, then
    // (only when both phases occur) the phase, prefill first.
    let secondary = |s: &Slot| match s.head.phase {
        Phase::Prefill => (s.head.position - min_pos) as usize,
        Phase::Decode => s.head.layer as usize,
    };
    let primary = |s: &Slot| match s.head.phase {
        Phase::Prefill => s.head.layer as usize,
        Phase::Decode => (s.head.position - min_pos) as usize,
    };
    let phase = |s: &Slot| (s.head.phase == Phase::Decode) as usize;
    let buckets = pos_range.max(max_layer + 1);
    let mut counts = vec![0usize; buckets + 1];
    let digits: [&dyn Fn(&Slot) -> usize; 3] = [&secondary, &primary, &phase];
    let passes = if mixed_phases { 3 } else { 2 };
    for digit in digits.iter().take(passes) {
        counts.iter_mut().for_each(|c| *c = 0);
        for &i in order.iter() {
            counts[digit(&slots[i as usize]) + 1] += 1;
        }
        for b in 1..counts.len() {
            counts[b] += counts[b - 1];
        }
        scratch.clear();
        scratch.resize(n, 0);
        for &i in order.iter() {
            let d = digit(&slots[i as usize]);
            scratch[counts[d]] = i;
            counts[d] += 1;
        }
        std::mem::swap(order, scratch);
    }
    debug_assert!(
        order
            .windows(2)
            .all(|w| key(&slots[w[0] as usize]) < key(&slots[w[1] as usize]))
    );
}

/// One buffered record: its scalar fields and where its lists sit in the flat buffers.
#[derive(Debug, Clone, Copy)]
struct Slot {
    head: RecordHead,
    experts: u32,
    n_experts: u16,
    weights: u32,
    n_weights: u16,
    logits: u32,
    has_logits: bool,
}

impl Drop for RequestBuffer {
    fn drop(&mut self) {
        if let Output::Body { path, .. } = &self.output {
            let _ = std::fs::remove_file(path);
        }
    }
}
