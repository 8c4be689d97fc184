//! Import of moe-cache-lab routing JSONL, format version 1 (`birkansit/moe-cache-lab`,
//! `TRACE_FORMAT.md`).
//!
//! The first non-blank line is a `metadata` record (`format` = `moe-cache-lab.routing-jsonl`,
//! `format_version` = 1, `model_id`, optional `num_experts` and `experts_per_token`); every
//! further line is a `routing_selection` record (`phase` prompt or generated, `token_position`,
//! `layer`, `selected_experts`, optional `selected_probabilities` and `token_id`). Unknown
//! fields are rejected, as the format demands, and so is any break of its chronology: all
//! prompt records first, prompt records in (layer, position) order, generated records in
//! (position, layer) order, every prompt position below every generated position. One file is
//! one request; several files become requests 0, 1, 2, … in the order given.

use std::path::Path;

use serde::Deserialize;

use super::{Destination, ImportOptions, ImportResult, RequestBuffer};
use crate::error::{Error, InputError, Result};
use crate::trace::json::{Scanner, SeenKeys};
use crate::trace::lines::LineReader;
use crate::trace::{Phase, RoutingRecord};

const FORMAT: &str = "moe-cache-lab.routing-jsonl";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Metadata {
    record_type: String,
    format: String,
    format_version: serde_json::Value,
    model_id: String,
    #[serde(default)]
    num_experts: Option<u32>,
    #[serde(default)]
    experts_per_token: Option<u32>,
    #[serde(default)]
    source_text: Option<String>,
    #[serde(default)]
    generated_text: Option<String>,
    #[serde(default)]
    capture_method: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    transformers_version: Option<String>,
    #[serde(default)]
    model_revision: Option<String>,
}

const KEYS: [&str; 7] = [
    "record_type",
    "phase",
    "token_position",
    "layer",
    "selected_experts",
    "selected_probabilities",
    "token_id",
];

pub(super) fn import(
    inputs: &[&Path],
    options: &ImportOptions,
    out: Destination<'_>,
    with_stats: bool,
) -> Result<ImportResult> {
    let mut buffer: Option<RequestBuffer> = None;
    let mut shape: Option<(u32, u32)> = None;
    let mut model_id: Option<String> = None;
    let mut r = RoutingRecord::default();
    for (request, path) in inputs.iter().enumerate() {
        let file = path.display().to_string();
        let f = crate::input::open(path)?;
        let mut input = LineReader::new(f);
        let mut line_number = 0u64;
        let mut have_metadata = false;
        let mut chronology = Chronology::default();
        while let Some(line) = input.next_line().map_err(|e| Error::io(path, e))? {
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
                InputError::at_line(&file, line_number, reason).into()
            };
            if !have_metadata {
                let (experts, top_k, model) = parse_metadata(text, options).map_err(at)?;
                match shape {
                    None => shape = Some((experts, top_k)),
                    Some(s) if s != (experts, top_k) => {
                        return Err(at(format!(
                            "model shape {experts} experts / top-{top_k} differs from the first input's {} / top-{}",
                            s.0, s.1
                        )));
                    }
                    Some(_) => {}
                }
                model_id.get_or_insert(model);
                if buffer.is_none() {
                    let source = inputs
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ");
                    buffer = Some(RequestBuffer::new(
                        experts,
                        top_k,
                        options.layers,
                        false,
                        options.model.clone().or(model_id.clone()),
                        (
                            format!("imported from moe-cache-lab v1: {source}"),
                            source.clone(),
                        ),
                        out,
                        with_stats,
                    )?);
                }
                have_metadata = true;
                continue;
            }
            parse_selection(text, &mut r).map_err(&at)?;
            chronology.check(&r).map_err(&at)?;
            r.request = request as u32;
            buffer
                .as_mut()
                .expect("created with the metadata")
                .push(&r, &file, line_number)?;
        }
        if !have_metadata {
            return Err(
                InputError::at_line(&file, 1, "empty file: missing the metadata record").into(),
            );
        }
        if chronology.events == 0 {
            return Err(InputError::new(
                &file,
                "no routing_selection record (at least one event is required)",
            )
            .into());
        }
    }
    buffer.expect("at least one input").finish()
}

fn parse_metadata(text: &[u8], options: &ImportOptions) -> Result<(u32, u32, String), String> {
    let value: serde_json::Value = serde_json::from_slice(text)
        .map_err(|e| format!("the first line is not a metadata record: {e}"))?;
    if value.get("record_type").and_then(|v| v.as_str()) != Some("metadata") {
        return Err("missing header: the first record must have record_type `metadata`".into());
    }
    match value.get("format").and_then(|v| v.as_str()) {
        Some(FORMAT) => {}
        Some(other) => {
            return Err(format!(
                "unknown format `{}` (expected `{FORMAT}`)",
                other.escape_debug()
            ));
        }
        None => {
            return Err(format!(
                "missing `format` in the metadata (expected `{FORMAT}`)"
            ));
        }
    }
    match value.get("format_version").and_then(|v| v.as_u64()) {
        Some(1) => {}
        Some(v) => {
            return Err(format!(
                "unsupported format_version {v} (this importer reads version 1)"
            ));
        }
        None => return Err("missing or non-integer `format_version` in the metadata".into()),
    }
    let m: Metadata =
        serde_json::from_value(value).map_err(|e| format!("invalid metadata: {e}"))?;
    if m.model_id.is_empty() {
        return Err("`model_id` must not be empty".into());
    }
    let pick = |name: &str, file: Option<u32>, cli: Option<u32>| -> Result<u32, String> {
        match (file, cli) {
            (Some(f), Some(c)) if f != c => Err(format!(
                "the metadata gives {name} {f} but the command line {c}"
            )),
            (Some(0), _) => Err(format!("{name} must be positive")),
            (Some(f), _) => Ok(f),
            (None, Some(c)) => Ok(c),
            (None, None) => Err(format!(
                "the metadata has no {name}: give it on the command line"
            )),
        }
    };
    let experts = pick("num_experts (--experts)", m.num_experts, options.experts)?;
    let top_k = pick(
        "experts_per_token (--top-k)",
        m.experts_per_token,
        options.top_k,
    )?;
    Ok((experts, top_k, m.model_id))
}

fn parse_selection(line: &[u8], r: &mut RoutingRecord) -> Result<(), String> {
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
            0 => {
                let t = s.string()?;
                if t != "routing_selection" {
                    return Err(format!(
                        "unknown record_type `{t}` (expected routing_selection)"
                    ));
                }
            }
            1 => {
                r.phase = match s.string()?.as_ref() {
                    "prompt" => Phase::Prefill,
                    "generated" => Phase::Decode,
                    other => {
                        return Err(format!(
                            "unknown phase `{}` (expected prompt or generated)",
                            other.escape_debug()
                        ));
                    }
                }
            }
            2 => r.position = s.u32()?,
            3 => r.layer = s.u32()?,
            4 => s.u16_array(&mut r.experts)?,
            5 => {
                s.f32_array(&mut r.weights)?;
                if let Some(p) = r.weights.iter().find(|p| p.is_finite() && **p > 1.0) {
                    return Err(format!("selected probability {p} is above 1"));
                }
            }
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

/// moe-cache-lab v1 chronology within one file.
#[derive(Debug, Default)]
struct Chronology {
    last: Option<(Phase, u32, u32)>,
    max_prompt_position: Option<u32>,
    events: u64,
}

impl Chronology {
    fn check(&mut self, r: &RoutingRecord) -> Result<(), String> {
        self.events += 1;
        if let Some((phase, layer, position)) = self.last {
            let ok = match (phase, r.phase) {
                (Phase::Decode, Phase::Prefill) => {
                    return Err(
                        "a prompt record after generated records (all prompt records come first)"
                            .into(),
                    );
                }
                (Phase::Prefill, Phase::Prefill) => (r.layer, r.position) > (layer, position),
                (Phase::Decode, Phase::Decode) => (r.position, r.layer) > (position, layer),
                (Phase::Prefill, Phase::Decode) => true,
            };
            if !ok {
                let order = if r.phase == Phase::Prefill {
                    "(layer, token_position)"
                } else {
                    "(token_position, layer)"
                };
                return Err(format!(
                    "chronology regression: layer {} position {} after layer {layer} position {position} \
                     ({} records must ascend by {order})",
                    r.layer,
                    r.position,
                    if r.phase == Phase::Prefill {
                        "prompt"
                    } else {
                        "generated"
                    }
                ));
            }
        }
        if r.phase == Phase::Decode {
            if let Some(max) = self.max_prompt_position.filter(|&m| r.position <= m) {
                return Err(format!(
                    "generated position {} is not after every prompt position (max {max})",
                    r.position
                ));
            }
        } else {
            self.max_prompt_position = Some(
                self.max_prompt_position
                    .map_or(r.position, |m| m.max(r.position)),
            );
        }
        self.last = Some((r.phase, r.layer, r.position));
        Ok(())
    }
}
