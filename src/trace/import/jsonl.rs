//! Generic JSONL import with user-mapped field names.
//!
//! Each line is one JSON object holding one routing event, such as
//! `{"problem_id": 0, "layer": 3, "token_idx": 17, "experts": [7, 0], "gating_probs": [0.8, 0.2]}`.
//! `--map ROLE=FIELD` names the field of each role: `request`, `layer`, `position`, `experts`
//! (required) and `weights`, `logits`, `phase`, `token` (optional); unmapped fields are ignored.
//! There is no metadata line, so `--experts` and `--top-k` give the model shape and the layer
//! count is inferred. Request values (integers or strings) are renumbered 0, 1, 2, … in order
//! of first appearance; a request's records must be contiguous, and within each (request,
//! layer) they must be ordered by position. Without a phase field every record is decode.

use std::collections::HashMap;
use std::path::Path;

use super::{Destination, ImportOptions, ImportResult, RequestBuffer};
use crate::error::{Error, InputError, Result};
use crate::trace::json::{Kind, Scanner, SeenKeys};
use crate::trace::lines::LineReader;
use crate::trace::{Phase, RoutingRecord};

/// The roles a field can be mapped to.
pub const ROLES: [&str; 8] = [
    "request", "layer", "position", "experts", "weights", "logits", "phase", "token",
];
const REQUIRED: [usize; 4] = [0, 1, 2, 3];

/// Parses `--map` pairs into the field name of each role.
pub fn parse_maps(maps: &[(String, String)]) -> Result<[Option<String>; 8]> {
    let mut fields: [Option<String>; 8] = Default::default();
    for (role, field) in maps {
        let i = ROLES.iter().position(|r| r == role).ok_or_else(|| {
            Error::usage(format!(
                "--map {role}={field}: unknown role `{role}` (roles: {})",
                ROLES.join(", ")
            ))
        })?;
        if fields[i].is_some() {
            return Err(Error::usage(format!(
                "--map {role}=…: role `{role}` mapped twice"
            )));
        }
        if let Some(j) = fields.iter().position(|f| f.as_deref() == Some(field)) {
            return Err(Error::usage(format!(
                "--map: field `{field}` is mapped to both `{}` and `{role}`",
                ROLES[j]
            )));
        }
        fields[i] = Some(field.clone());
    }
    for i in REQUIRED {
        if fields[i].is_none() {
            return Err(Error::usage(format!(
                "--map {}=FIELD is required for --format jsonl (required roles: request, layer, position, experts)",
                ROLES[i]
            )));
        }
    }
    Ok(fields)
}

pub(super) fn import(
    inputs: &[&Path],
    maps: &[(String, String)],
    options: &ImportOptions,
    out: Destination<'_>,
    with_stats: bool,
) -> Result<ImportResult> {
    let fields = parse_maps(maps)?;
    let (experts, top_k) = match (options.experts, options.top_k) {
        (Some(e), Some(k)) => (e, k),
        _ => {
            return Err(Error::usage(
                "--format jsonl has no metadata: give --experts N and --top-k K",
            ));
        }
    };
    let source = inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut buffer = RequestBuffer::new(
        experts,
        top_k,
        options.layers,
        fields[5].is_some(),
        options.model.clone(),
        (format!("imported from JSONL: {source}"), source.clone()),
        out,
        with_stats,
    )?;
    let mut ids = RequestIds::default();
    for (file_index, path) in inputs.iter().enumerate() {
        ids.file = file_index;
        let f = crate::input::open(path)?;
        read_records(
            &path.display().to_string(),
            f,
            &fields,
            &mut ids,
            &mut buffer,
        )?;
    }
    buffer.finish()
}

/// Imports JSONL held in memory into a native trace in memory (benchmarks and tests).
pub fn import_bytes(
    input: &[u8],
    maps: &[(String, String)],
    options: &ImportOptions,
    with_stats: bool,
) -> Result<ImportResult> {
    let fields = parse_maps(maps)?;
    let (experts, top_k) = match (options.experts, options.top_k) {
        (Some(e), Some(k)) => (e, k),
        _ => {
            return Err(Error::usage(
                "--format jsonl has no metadata: give --experts N and --top-k K",
            ));
        }
    };
    let mut buffer = RequestBuffer::new(
        experts,
        top_k,
        options.layers,
        fields[5].is_some(),
        options.model.clone(),
        ("imported from JSONL: <memory>".into(), "<memory>".into()),
        // The native form is shorter than the JSONL it comes from.
        Destination::Memory(input.len()),
        with_stats,
    )?;
    let mut ids = RequestIds::default();
    read_records("<memory>", input, &fields, &mut ids, &mut buffer)?;
    buffer.finish()
}

fn read_records(
    file: &str,
    input: impl std::io::Read,
    fields: &[Option<String>; 8],
    ids: &mut RequestIds,
    buffer: &mut RequestBuffer,
) -> Result<()> {
    let fields = Fields::new(fields);
    let mut r = RoutingRecord::default();
    let mut input = LineReader::new(input);
    let mut line_number = 0u64;
    {
        while let Some(line) = input.next_line().map_err(|e| Error::io(file, e))? {
            line_number += 1;
            let (text, complete) = (line.text, line.complete);
            if text.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let at = |reason: String| -> Error {
                let reason = if complete {
                    reason
                } else {
                    format!("truncated last line (no newline at the end of the file): {reason}")
                };
                InputError::at_line(file, line_number, reason).into()
            };
            parse_line(text, &fields, ids, &mut r).map_err(at)?;
            buffer.push(&r, file, line_number)?;
        }
    }
    Ok(())
}

/// Renumbers request values in order of first appearance and enforces contiguity.
#[derive(Debug, Default)]
struct RequestIds {
    /// Index of the input file: requests of different files are different requests.
    file: usize,
    ids: HashMap<(usize, String), u32>,
    current: Option<(usize, String)>,
    /// Fast path for integer request values: the current value and its id.
    current_number: Option<(u64, u32)>,
}

impl RequestIds {
    fn id_number(&mut self, value: u64) -> Result<u32, String> {
        if let Some((v, id)) = self.current_number
            && v == value
            && self.current.as_ref().is_some_and(|(f, _)| *f == self.file)
        {
            return Ok(id);
        }
        let id = self.id(&value.to_string())?;
        self.current_number = Some((value, id));
        Ok(id)
    }

    fn id(&mut self, key: &str) -> Result<u32, String> {
        let full_key = (self.file, key.to_string());
        if self.current.as_ref() == Some(&full_key) {
            return Ok(self.ids[&full_key]);
        }
        self.current_number = None;
        if self.ids.contains_key(&full_key) {
            return Err(format!(
                "request {key} appears again after request {}: the records of one request must be contiguous",
                self.current.as_ref().map_or("?", |(_, k)| k.as_str())
            ));
        }
        let id = self.ids.len() as u32;
        self.ids.insert(full_key.clone(), id);
        self.current = Some(full_key);
        Ok(id)
    }
}

fn parse_line(
    line: &[u8],
    fields: &Fields<'_>,
    ids: &mut RequestIds,
    r: &mut RoutingRecord,
) -> Result<(), String> {
    r.experts.clear();
    r.weights.clear();
    r.logits.clear();
    r.token = None;
    r.phase = Phase::Decode;
    let mut s = Scanner::new(line);
    s.begin_object()?;
    let mut seen = SeenKeys::default();
    let mut first = true;
    while let Some(found) = s.next_key_among(first, &fields.names)? {
        first = false;
        let role = match found {
            Ok(i) => fields.roles[i],
            Err(_) => {
                s.skip_value()?;
                continue;
            }
        };
        seen.mark(role, fields.field(role).as_bytes())?;
        let field = fields.field(role);
        let typed = |e: String| format!("field `{field}` ({}): {e}", ROLES[role]);
        match role {
            0 => {
                let id = match s.kind()? {
                    Kind::String => ids.id(&s.string()?),
                    Kind::Number => ids.id_number(s.u64().map_err(typed)?),
                    _ => return Err(typed("expected an integer or a string".into())),
                }?;
                r.request = id;
            }
            1 => r.layer = s.u32().map_err(typed)?,
            2 => r.position = s.u32().map_err(typed)?,
            3 => s.u16_array(&mut r.experts).map_err(typed)?,
            4 => s.f32_array(&mut r.weights).map_err(typed)?,
            5 => s.f32_array(&mut r.logits).map_err(typed)?,
            6 => {
                r.phase = match s.string().map_err(typed)?.as_ref() {
                    "prefill" | "prompt" => Phase::Prefill,
                    "decode" | "generated" | "generate" => Phase::Decode,
                    other => {
                        return Err(typed(format!(
                            "unknown phase `{}` (expected prefill/prompt or decode/generated)",
                            other.escape_debug()
                        )));
                    }
                }
            }
            _ => {
                r.token = if s.null()? {
                    None
                } else {
                    Some(s.u32().map_err(typed)?)
                }
            }
        }
    }
    s.end()?;
    for i in REQUIRED {
        if !seen.has(i) {
            return Err(format!(
                "missing field `{}` (mapped to {})",
                fields.field(i),
                ROLES[i]
            ));
        }
    }
    Ok(())
}

/// The mapped field names, for in-place key matching.
#[derive(Debug)]
struct Fields<'a> {
    /// Field name bytes, one per mapped role.
    names: Vec<&'a [u8]>,
    /// The role of each entry of `names`.
    roles: Vec<usize>,
    by_role: &'a [Option<String>; 8],
}

impl<'a> Fields<'a> {
    fn new(by_role: &'a [Option<String>; 8]) -> Fields<'a> {
        let mut names = Vec::new();
        let mut roles = Vec::new();
        for (role, f) in by_role.iter().enumerate() {
            if let Some(f) = f {
                names.push(f.as_bytes());
                roles.push(role);
            }
        }
        Fields {
            names,
            roles,
            by_role,
        }
    }

    fn field(&self, role: usize) -> &str {
        self.by_role[role].as_deref().unwrap_or("?")
    }
}
