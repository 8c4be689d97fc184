//! The native trace format, `moesim-trace` version 1 (JSON Lines).
//!
//! Line 1 is the header:
//!
//! ```text
//! {"format":"moesim-trace","version":1,"layers":32,"experts":8,"top_k":2,"logits":false,
//!  "model":"mixtral-8x7b","source":"...","generator":null}
//! ```
//!
//! Every further line is one (token, layer) routing event, in execution order:
//!
//! ```text
//! {"request":0,"phase":"decode","position":17,"layer":3,"experts":[7,0],"weights":[0.8,0.2],
//!  "logits":[...one per expert...],"token":1234}
//! ```
//!
//! `weights`, `logits` and `token` are optional; `logits` is required on every record when the
//! header says `"logits":true`. Floats are written in their shortest round-trip form, so a
//! trace read and written again is byte-identical. [`TraceReader`] validates every record
//! (shape and order, see [`RoutingRecord::validate`] and [`OrderCheck`]) and never repairs.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::json::{Scanner, SeenKeys};
use super::lines::LineReader;
use super::{OrderCheck, Phase, RoutingRecord, TraceMeta};
use crate::error::{Error, InputError, Result};

/// The `format` value of a native header.
pub const FORMAT_NAME: &str = "moesim-trace";
/// The version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    layers: u32,
    experts: u32,
    top_k: u32,
    logits: bool,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    generator: Option<serde_json::Value>,
}

/// Parses and checks a header line.
pub fn parse_header(file: &str, line: &[u8]) -> Result<TraceMeta, InputError> {
    let at = |reason: String| InputError::at_line(file, 1, reason);
    let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
        at(format!(
            "missing or malformed header (expected a `{FORMAT_NAME}` record): {e}"
        ))
    })?;
    match value.get("format").and_then(|f| f.as_str()) {
        Some(FORMAT_NAME) => {}
        Some(other) => {
            return Err(at(format!(
                "unknown trace format `{}` (expected `{FORMAT_NAME}`)",
                other.escape_debug()
            )));
        }
        None => {
            return Err(at(format!(
                "missing header: the first line has no `format` (expected `{FORMAT_NAME}`)"
            )));
        }
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == FORMAT_VERSION as u64 => {}
        Some(v) => {
            return Err(at(format!(
                "unsupported trace version {v} (this build reads {FORMAT_VERSION})"
            )));
        }
        None => return Err(at("missing `version` in the header".into())),
    }
    let h: Header =
        serde_json::from_value(value).map_err(|e| at(format!("invalid header: {e}")))?;
    super::check_shape(h.layers, h.experts, h.top_k).map_err(at)?;
    Ok(TraceMeta {
        layers: h.layers,
        experts: h.experts,
        top_k: h.top_k,
        logits: h.logits,
        model: h.model,
        source: h.source,
        generator: h.generator,
    })
}

/// The header line (without newline) for `meta`.
pub fn header_line(meta: &TraceMeta) -> String {
    let h = Header {
        format: FORMAT_NAME.to_string(),
        version: FORMAT_VERSION,
        layers: meta.layers,
        experts: meta.experts,
        top_k: meta.top_k,
        logits: meta.logits,
        model: meta.model.clone(),
        source: meta.source.clone(),
        generator: meta.generator.clone(),
    };
    serde_json::to_string(&h).expect("header serializes")
}

const KEYS: [&str; 8] = [
    "request", "phase", "position", "layer", "experts", "weights", "logits", "token",
];

/// Parses one record line into `r` (buffers reused). Shape only; no validation against a header.
/// Lines in the canonical form this module writes take a fast path; anything else (other key
/// order, whitespace, optional fields spelled out) goes through the general scanner.
pub fn parse_record(line: &[u8], r: &mut RoutingRecord) -> Result<(), String> {
    if parse_canonical(line, r) {
        return Ok(());
    }
    parse_general(line, r)
}

/// Matches the exact byte layout of [`format_parts`]; returns false on any deviation.
fn parse_canonical(line: &[u8], r: &mut RoutingRecord) -> bool {
    let mut c = Canonical {
        bytes: line,
        pos: 0,
    };
    r.experts.clear();
    r.weights.clear();
    r.logits.clear();
    r.token = None;
    let ok = (|| {
        c.literal(b"{\"request\":")?;
        r.request = c.uint()?;
        c.literal(b",\"phase\":\"")?;
        r.phase = if c.literal(b"decode").is_some() {
            Phase::Decode
        } else {
            c.literal(b"prefill")?;
            Phase::Prefill
        };
        c.literal(b"\",\"position\":")?;
        r.position = c.uint()?;
        c.literal(b",\"layer\":")?;
        r.layer = c.uint()?;
        c.literal(b",\"experts\":[")?;
        loop {
            r.experts.push(u16::try_from(c.uint()?).ok()?);
            if c.literal(b",").is_none() {
                break;
            }
        }
        c.literal(b"]")?;
        if c.literal(b",\"weights\":[").is_some() {
            c.floats(&mut r.weights)?;
        }
        if c.literal(b",\"logits\":[").is_some() {
            c.floats(&mut r.logits)?;
        }
        if c.literal(b",\"token\":").is_some() {
            r.token = Some(c.uint()?);
        }
        c.literal(b"}")?;
        (c.pos == line.len()).then_some(())
    })();
    ok.is_some()
}

struct Canonical<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Canonical<'_> {
    #[inline]
    fn literal(&mut self, lit: &[u8]) -> Option<()> {
        if self.bytes[self.pos..].starts_with(lit) {
            self.pos += lit.len();
            Some(())
        } else {
            None
        }
    }

    #[inline]
    fn uint(&mut self) -> Option<u32> {
        let start = self.pos;
        let mut v: u64 = 0;
        while let Some(&b) = self.bytes.get(self.pos) {
            if !b.is_ascii_digit() {
                break;
            }
            v = v * 10 + (b - b'0') as u64;
            self.pos += 1;
            if self.pos - start > 10 {
                return None;
            }
        }
        if self.pos == start || (self.bytes[start] == b'0' && self.pos - start > 1) {
            return None;
        }
        u32::try_from(v).ok()
    }

    /// Comma-separated floats up to and including the closing `]`.
    fn floats(&mut self, out: &mut Vec<f32>) -> Option<()> {
        loop {
            let start = self.pos;
            while let Some(&b) = self.bytes.get(self.pos) {
                if b == b',' || b == b']' {
                    break;
                }
                self.pos += 1;
            }
            let token = std::str::from_utf8(&self.bytes[start..self.pos]).ok()?;
            let x: f32 = token.parse().ok()?;
            // Non-finite values are not canonical; the general path reports them.
            if !x.is_finite() {
                return None;
            }
            out.push(x);
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

fn parse_general(line: &[u8], r: &mut RoutingRecord) -> Result<(), String> {
    r.experts.clear();
    r.weights.clear();
    r.logits.clear();
    r.token = None;
    let mut s = Scanner::new(line);
    s.begin_object()?;
    let mut seen = SeenKeys::default();
    let mut first = true;
    while let Some(key) = s.next_key(first)? {
        first = false;
        let index = KEYS
            .iter()
            .position(|k| k.as_bytes() == key.as_ref())
            .ok_or_else(|| {
                format!(
                    "unknown field `{}`",
                    String::from_utf8_lossy(&key).escape_debug()
                )
            })?;
        seen.mark(index, &key)?;
        match index {
            0 => r.request = s.u32()?,
            1 => {
                r.phase = match s.string()?.as_ref() {
                    "prefill" => Phase::Prefill,
                    "decode" => Phase::Decode,
                    other => {
                        return Err(format!(
                            "unknown phase `{}` (expected prefill or decode)",
                            other.escape_debug()
                        ));
                    }
                }
            }
            2 => r.position = s.u32()?,
            3 => r.layer = s.u32()?,
            4 => s.u16_array(&mut r.experts)?,
            5 => s.f32_array(&mut r.weights)?,
            6 => s.f32_array(&mut r.logits)?,
            _ => r.token = if s.null()? { None } else { Some(s.u32()?) },
        }
    }
    s.end()?;
    for (i, k) in KEYS.iter().enumerate().take(5) {
        if !seen.has(i) {
            return Err(format!("missing field `{k}`"));
        }
    }
    Ok(())
}

/// Appends the record line (with newline) for `r` to `out`.
pub fn format_record(r: &RoutingRecord, out: &mut Vec<u8>) {
    format_parts(
        RecordHead {
            request: r.request,
            phase: r.phase,
            position: r.position,
            layer: r.layer,
            token: r.token,
        },
        &r.experts,
        &r.weights,
        &r.logits,
        out,
    );
}

/// The scalar fields of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHead {
    /// Request id.
    pub request: u32,
    /// Phase.
    pub phase: Phase,
    /// Token position.
    pub position: u32,
    /// MoE layer.
    pub layer: u32,
    /// Token id.
    pub token: Option<u32>,
}

/// Appends a record line from its parts. Integers are written with `itoa`, floats in their
/// shortest round-trip form with `ryu` (both already dependencies of csv and serde_json).
pub fn format_parts(
    head: RecordHead,
    experts: &[u16],
    weights: &[f32],
    logits: &[f32],
    out: &mut Vec<u8>,
) {
    let mut int = itoa::Buffer::new();
    out.extend_from_slice(b"{\"request\":");
    out.extend_from_slice(int.format(head.request).as_bytes());
    out.extend_from_slice(match head.phase {
        Phase::Prefill => b",\"phase\":\"prefill\",\"position\":",
        Phase::Decode => b",\"phase\":\"decode\",\"position\":",
    });
    out.extend_from_slice(int.format(head.position).as_bytes());
    out.extend_from_slice(b",\"layer\":");
    out.extend_from_slice(int.format(head.layer).as_bytes());
    out.extend_from_slice(b",\"experts\":[");
    for (i, &e) in experts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(int.format(e).as_bytes());
    }
    out.push(b']');
    if !weights.is_empty() {
        out.extend_from_slice(b",\"weights\":[");
        push_floats(weights, out);
        out.push(b']');
    }
    if !logits.is_empty() {
        out.extend_from_slice(b",\"logits\":[");
        push_floats(logits, out);
        out.push(b']');
    }
    if let Some(t) = head.token {
        out.extend_from_slice(b",\"token\":");
        out.extend_from_slice(int.format(t).as_bytes());
    }
    out.extend_from_slice(b"}\n");
}

fn push_floats(values: &[f32], out: &mut Vec<u8>) {
    let mut buf = ryu::Buffer::new();
    for (i, &x) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        debug_assert!(x.is_finite(), "validated records hold finite floats");
        out.extend_from_slice(buf.format_finite(x).as_bytes());
    }
}

/// A streaming reader of a native trace that validates as it goes.
#[derive(Debug)]
pub struct TraceReader<R> {
    file: String,
    input: LineReader<R>,
    meta: TraceMeta,
    line_number: u64,
    order: OrderCheck,
}

impl TraceReader<File> {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<TraceReader<File>> {
        let f = crate::input::open(path)?;
        TraceReader::new(path.display().to_string(), f)
    }
}

impl<R: Read> TraceReader<R> {
    /// Reads the header from `input`; `file` names it in errors.
    pub fn new(file: String, input: R) -> Result<TraceReader<R>> {
        let mut input = LineReader::new(input);
        let meta = match input.next_line().map_err(|e| Error::io(&file, e))? {
            None => return Err(InputError::at_line(&file, 1, "empty file: missing header").into()),
            Some(line) => parse_header(&file, line.text)?,
        };
        let order = OrderCheck::new(meta.layers);
        Ok(TraceReader {
            file,
            input,
            meta,
            line_number: 1,
            order,
        })
    }

    /// The input's name (its path, or what the caller called it).
    pub fn name(&self) -> &str {
        &self.file
    }

    /// The header.
    pub fn meta(&self) -> &TraceMeta {
        &self.meta
    }

    /// The 1-based line number of the last record read.
    pub fn line_number(&self) -> u64 {
        self.line_number
    }

    /// Reads the next record into `r`; `Ok(false)` at the end of the file.
    pub fn next_record(&mut self, r: &mut RoutingRecord) -> Result<bool> {
        loop {
            let Some(line) = self
                .input
                .next_line()
                .map_err(|e| Error::io(&self.file, e))?
            else {
                return Ok(false);
            };
            self.line_number += 1;
            if line.text.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let res = parse_record(line.text, r)
                .and_then(|_| r.validate(&self.meta))
                .and_then(|_| self.order.check(r));
            return match res {
                Ok(()) => Ok(true),
                Err(reason) if !line.complete => Err(InputError::at_line(
                    &self.file,
                    self.line_number,
                    format!("truncated last line (no newline at the end of the file): {reason}"),
                )
                .into()),
                Err(reason) => {
                    Err(InputError::at_line(&self.file, self.line_number, reason).into())
                }
            };
        }
    }
}

/// A streaming writer of a native trace.
#[derive(Debug)]
pub struct TraceWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> TraceWriter<W> {
    /// Writes the header for `meta` to `out`.
    pub fn new(mut out: W, meta: &TraceMeta) -> std::io::Result<TraceWriter<W>> {
        let mut header = header_line(meta);
        header.push('\n');
        out.write_all(header.as_bytes())?;
        Ok(TraceWriter {
            out,
            buf: Vec::with_capacity(1 << 16),
        })
    }

    /// Writes one record.
    pub fn write(&mut self, r: &RoutingRecord) -> std::io::Result<()> {
        format_record(r, &mut self.buf);
        if self.buf.len() >= 1 << 15 {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.write_all(&self.buf)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads a whole native trace from any reader (tests and small inputs).
pub fn read_all(file: &str, input: impl Read) -> Result<(TraceMeta, Vec<RoutingRecord>)> {
    let mut reader = TraceReader::new(file.to_string(), input)?;
    let mut records = Vec::new();
    let mut r = RoutingRecord::default();
    while reader.next_record(&mut r)? {
        records.push(r.clone());
    }
    Ok((reader.meta.clone(), records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> TraceMeta {
        TraceMeta {
            layers: 2,
            experts: 8,
            top_k: 2,
            logits: false,
            model: None,
            source: None,
            generator: None,
        }
    }

    #[test]
    fn record_round_trips_byte_identically() {
        let r = RoutingRecord {
            request: 3,
            phase: Phase::Decode,
            position: 17,
            layer: 1,
            experts: vec![7, 0],
            weights: vec![0.800_380_1, 0.199_619_87],
            logits: vec![1.5, -0.25, 3.0e-7, 0.0, -0.0, 12.75, 1.0 / 3.0, 2.0],
            token: Some(42),
        };
        let mut line = Vec::new();
        format_record(&r, &mut line);
        let mut back = RoutingRecord::default();
        parse_record(&line[..line.len() - 1], &mut back).unwrap();
        assert_eq!(back, r);
        let mut again = Vec::new();
        format_record(&back, &mut again);
        assert_eq!(line, again);
    }

    #[test]
    fn canonical_and_general_parsers_agree() {
        let lines: [&[u8]; 4] = [
            br#"{"request":1,"phase":"prefill","position":0,"layer":2,"experts":[3],"weights":[1.0]}"#,
            br#"{"request":0,"phase":"decode","position":12,"layer":0,"experts":[7,0],"weights":[0.8,0.2],"token":5}"#,
            br#"{"request":0,"phase":"decode","position":3,"layer":1,"experts":[1,2],"logits":[1e-7,-2.5,3.0]}"#,
            br#"{"request":0,"phase":"decode","position":3,"layer":1,"experts":[1,2]}"#,
        ];
        for line in lines {
            let (mut a, mut b) = (RoutingRecord::default(), RoutingRecord::default());
            assert!(
                parse_canonical(line, &mut a),
                "{}",
                String::from_utf8_lossy(line)
            );
            parse_general(line, &mut b).unwrap();
            assert_eq!(a, b);
        }
        // Not canonical: spaces, other key order, leading zeros; the general path still parses.
        for line in [
            &br#"{"request": 1, "phase":"decode","position":0,"layer":2,"experts":[3]}"#[..],
            br#"{"phase":"decode","request":1,"position":0,"layer":2,"experts":[3]}"#,
            br#"{"request":01,"phase":"decode","position":0,"layer":2,"experts":[3]}"#,
        ] {
            let mut a = RoutingRecord::default();
            assert!(!parse_canonical(line, &mut a));
        }
    }

    #[test]
    fn header_round_trips() {
        let m = meta();
        assert_eq!(parse_header("t", header_line(&m).as_bytes()).unwrap(), m);
    }

    #[test]
    fn reader_reports_file_and_line() {
        let text = format!(
            "{}\n{}\n{}\n",
            header_line(&meta()),
            r#"{"request":0,"phase":"decode","position":0,"layer":0,"experts":[1,2]}"#,
            r#"{"request":0,"phase":"decode","position":0,"layer":1,"experts":[1,8]}"#
        );
        let e = read_all("t.jsonl", text.as_bytes())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "t.jsonl:3: expert id 8 is at or beyond the expert count 8"
        );
    }
}
