//! `moesim model list|show|import`: shipped and user specs, and GGUF files.

use std::io::Write;

use clap::Subcommand;
use serde::Serialize;

use super::table::{Align, Table};
use super::{emit, emit_json};
use crate::error::{InputError, Result};
use crate::gguf::{self, GgufHeader, GgufModel};
use crate::moe::{self, MoeSpec, ParamBreakdown, presets};
use crate::quant::format::WeightFormat;
use crate::units::{format_bytes, format_count};

/// `moesim model …`
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// List the shipped MoE model specs.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one model: shape, parameter counts and bytes per expert at every format; for a GGUF
    /// file, the formats and bytes of its routed experts per layer as the file stores them.
    Show {
        /// A shipped model name, a model spec TOML file or a GGUF file (`.gguf`).
        model: String,
        /// Show the model as llama-quantize would write it in this mix (`q4_k_m`, `q6_k`,
        /// `iq4_xs`, `mxfp4_moe`, ...): every tensor's type and the bytes that follow. For a
        /// GGUF file, what requantizing its (unquantized) weights would give.
        #[arg(long)]
        mix: Option<String>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Write the moesim model spec of a GGUF file's MoE model (shape from its metadata,
    /// non-expert parameters counted from its tensors, the KV shape).
    Import {
        /// The GGUF file (only its header is read).
        file: std::path::PathBuf,
        /// Where to write the spec (TOML).
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

/// Runs a `model` subcommand.
pub fn run(cmd: ModelCommand, out: &mut dyn Write) -> Result<()> {
    match cmd {
        ModelCommand::List { json } => list(out, json),
        ModelCommand::Show {
            model,
            mix: Some(mix),
            json,
        } => show_mix(out, &model, &mix, json),
        ModelCommand::Show { model, json, .. } if is_gguf(&model) => {
            let path = std::path::Path::new(&model);
            let (h, m) = read_gguf(path)?;
            show_gguf(out, &path.display().to_string(), &h, &m, json, None)
        }
        ModelCommand::Show { model, json, .. } => show(out, &model, json),
        ModelCommand::Import { file, out: path } => import(out, &file, &path),
    }
}

/// Whether `arg` names a GGUF file (by extension).
fn is_gguf(arg: &str) -> bool {
    std::path::Path::new(arg)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// Reads the MoE model of the GGUF file at `path` (its header only).
pub fn read_gguf(path: &std::path::Path) -> Result<(GgufHeader, GgufModel)> {
    gguf::file::read(path)
}

#[derive(Serialize)]
struct GgufJson<'a> {
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    mix: Option<&'static str>,
    tensor_types: Vec<TensorTypesJson>,
    gguf_version: u32,
    tensors: usize,
    architecture: &'a str,
    name: &'a str,
    layers: u32,
    hidden_size: u64,
    routed_experts: u32,
    top_k: u32,
    expert_intermediate_size: u64,
    shared_experts: u32,
    moe_layers: Vec<GgufLayerJson>,
    routed_experts_part: gguf::model::Part,
    shared_experts_part: gguf::model::Part,
    router: gguf::model::Part,
    input_embedding: gguf::model::Part,
    output_head: gguf::model::Part,
    other: gguf::model::Part,
    total_params: u64,
    file_bytes: u64,
    kv_bytes_per_token_f16: Option<u64>,
    max_context_tokens: Option<u64>,
}

/// One role's tensors of one type: `blk.N.attn_v.weight` in Q6_K in blocks 0-3, 6.
#[derive(Serialize)]
struct TensorTypesJson {
    role: String,
    #[serde(rename = "type")]
    ggml_type: &'static str,
    /// Blocks (empty for tensors outside the blocks).
    blocks: Vec<u32>,
}

/// The types of `h`'s matrices by role (the name without `blk.N.`), each with the blocks
/// that have it, in order of first appearance.
fn tensor_types(h: &GgufHeader) -> Vec<TensorTypesJson> {
    let mut out: Vec<TensorTypesJson> = Vec::new();
    for t in h.tensors.iter().filter(|t| t.dims.len() >= 2) {
        let (block, role) = match t.name.strip_prefix("blk.").and_then(|r| r.split_once('.')) {
            Some((b, rest)) => (b.parse::<u32>().ok(), rest),
            None => (None, t.name.as_str()),
        };
        let role = role.strip_suffix(".weight").unwrap_or(role).to_string();
        match out
            .iter_mut()
            .find(|e| e.role == role && e.ggml_type == t.ggml_type.name)
        {
            Some(e) => e.blocks.extend(block),
            None => out.push(TensorTypesJson {
                role,
                ggml_type: t.ggml_type.name,
                blocks: block.into_iter().collect(),
            }),
        }
    }
    out
}

#[derive(Serialize)]
struct GgufLayerJson {
    layer: u32,
    gate: Option<String>,
    up: String,
    down: String,
    expert_bytes: u64,
}

/// `model show MODEL --mix MIX`: the model's tensors (a GGUF file's, or laid out from a spec)
/// in the types llama-quantize's mix gives them.
fn show_mix(out: &mut dyn Write, model: &str, mix: &str, json: bool) -> Result<()> {
    let mix: gguf::mix::Mix = mix
        .parse()
        .map_err(|e: String| crate::error::Error::usage(format!("--mix: {e}")))?;
    let (label, h, spec_context) = if is_gguf(model) {
        let path = std::path::Path::new(model);
        (path.display().to_string(), read_gguf(path)?.0, None)
    } else {
        let (label, spec) = moe::load_spec_file(model)?;
        let h = gguf::layout::header_of_spec(&spec)
            .map_err(|reason| InputError::new(label.clone(), reason))?;
        (label, h, spec.context.clone())
    };
    let mixed =
        gguf::mix::apply(mix, &h).map_err(|(at, reason)| InputError::at_key(&label, at, reason))?;
    let stem = std::path::Path::new(model)
        .file_stem()
        .map_or(model.to_string(), |s| s.to_string_lossy().into_owned());
    let mut m = GgufModel::from_header(&mixed, &stem)
        .map_err(|(at, reason)| InputError::at_key(&label, at, reason))?;
    if let Some(context) = spec_context {
        m.context = context;
    }
    show_gguf(
        out,
        &format!("{label} as {mix}"),
        &mixed,
        &m,
        json,
        Some(mix),
    )
}

fn show_gguf(
    out: &mut dyn Write,
    label: &str,
    h: &GgufHeader,
    m: &GgufModel,
    json: bool,
    mix: Option<gguf::mix::Mix>,
) -> Result<()> {
    let spec = m
        .to_spec(label)
        .map_err(|(at, reason)| InputError::at_key(label, at, reason))?;
    let kv = spec
        .context
        .as_ref()
        .and_then(|c| c.validate(None, m.layers).ok())
        .filter(|k| k.values_per_token > 0);
    let kv_token = kv.map(|k| k.bytes_at(1, crate::moe::kv::KvFormat::F16));
    if json {
        return emit_json(
            out,
            &GgufJson {
                file: label.to_string(),
                mix: mix.map(|x| x.name()),
                tensor_types: tensor_types(h),
                gguf_version: h.version,
                tensors: h.tensors.len(),
                architecture: &m.architecture,
                name: &m.name,
                layers: m.layers,
                hidden_size: m.hidden,
                routed_experts: m.experts,
                top_k: m.top_k,
                expert_intermediate_size: m.expert_ffn,
                shared_experts: m.shared_experts,
                moe_layers: m
                    .moe_layers
                    .iter()
                    .map(|l| GgufLayerJson {
                        layer: l.layer,
                        gate: l.gate.map(|g| g.lower_name()),
                        up: l.up.lower_name(),
                        down: l.down.lower_name(),
                        expert_bytes: l.expert_bytes,
                    })
                    .collect(),
                routed_experts_part: m.routed,
                shared_experts_part: m.shared,
                router: m.router,
                input_embedding: m.embedding,
                output_head: m.output,
                other: m.other,
                total_params: m.total_values(),
                file_bytes: h.file_bytes,
                kv_bytes_per_token_f16: kv_token,
                max_context_tokens: spec.context.as_ref().and_then(|c| c.max_tokens),
            },
        );
    }
    let mut s = format!(
        "{label}: {} ({}, GGUF v{}, {} tensors, {})\n\n",
        m.name,
        m.architecture,
        h.version,
        h.tensors.len(),
        format_bytes(h.file_bytes as f64)
    );
    let moe: Vec<u32> = m.moe_layers.iter().map(|l| l.layer).collect();
    let mut t = Table::new(&[("field", Align::Left), ("value", Align::Left)]);
    for (k, v) in [
        ("blocks", m.layers.to_string()),
        (
            "MoE blocks",
            format!("{} ({})", moe.len(), index_ranges(&moe)),
        ),
        ("hidden size", m.hidden.to_string()),
        ("routed experts per layer", m.experts.to_string()),
        ("top-k", m.top_k.to_string()),
        ("expert intermediate size", m.expert_ffn.to_string()),
        (
            "shared experts per layer",
            if m.shared_experts > 0 {
                format!("{} (intermediate size {})", m.shared_experts, m.shared_ffn)
            } else {
                "0".into()
            },
        ),
        (
            "context limit",
            spec.context
                .as_ref()
                .and_then(|c| c.max_tokens)
                .map_or("not stated".into(), |n| n.to_string()),
        ),
        (
            "KV cache per token (f16)",
            kv_token.map_or("-".into(), |b| format_bytes(b as f64)),
        ),
    ] {
        t.row(vec![k.to_string(), v]);
    }
    s.push_str(&t.render());
    s.push_str("\nrouted experts as stored (runs of blocks with the same formats)\n");
    let mut t = Table::new(&[
        ("blocks", Align::Left),
        ("gate", Align::Left),
        ("up", Align::Left),
        ("down", Align::Left),
        ("per expert", Align::Right),
        ("per block", Align::Right),
    ]);
    let mut i = 0;
    while i < m.moe_layers.len() {
        let a = &m.moe_layers[i];
        let mut j = i;
        while j + 1 < m.moe_layers.len() {
            let b = &m.moe_layers[j + 1];
            if (b.gate, b.up, b.down, b.expert_bytes) != (a.gate, a.up, a.down, a.expert_bytes) {
                break;
            }
            j += 1;
        }
        let blocks: Vec<u32> = m.moe_layers[i..=j].iter().map(|l| l.layer).collect();
        t.row(vec![
            index_ranges(&blocks),
            a.gate.map_or("-".into(), |g| g.name.to_string()),
            a.up.name.to_string(),
            a.down.name.to_string(),
            format_bytes(a.expert_bytes as f64),
            format_bytes((a.expert_bytes * m.experts as u64) as f64),
        ]);
        i = j + 1;
    }
    s.push_str(&t.render());
    s.push_str("\nparameters and bytes by component\n");
    let mut t = Table::new(&[
        ("component", Align::Left),
        ("params", Align::Right),
        ("bytes", Align::Right),
    ]);
    for (k, p) in [
        ("routed experts", m.routed),
        ("shared experts", m.shared),
        ("routers", m.router),
        ("input embedding", m.embedding),
        ("output head", m.output),
        ("attention, norms, dense FFN, other", m.other),
    ] {
        if p.values > 0 {
            t.row(vec![
                k.to_string(),
                format_count(p.values as f64),
                format_bytes(p.bytes as f64),
            ]);
        }
    }
    t.row(vec![
        "total".into(),
        format_count(m.total_values() as f64),
        format_bytes(h.file_bytes as f64),
    ]);
    s.push_str(&t.render());
    s.push_str("\nmatrices by role and type\n");
    let mut t = Table::new(&[
        ("role", Align::Left),
        ("type", Align::Left),
        ("blocks", Align::Left),
    ]);
    for e in tensor_types(h) {
        t.row(vec![
            e.role,
            e.ggml_type.to_string(),
            if e.blocks.is_empty() {
                "-".into()
            } else {
                index_ranges(&e.blocks)
            },
        ]);
    }
    s.push_str(&t.render());
    s.push_str(&match mix {
        Some(x) => format!(
            "\nTypes as llama-quantize gives them for {x} without an importance matrix (rules of llama.cpp's llama-quant.cpp); sizes exclude alignment padding.\n"
        ),
        None => format!(
            "\n`moesim model import {label} --out SPEC.toml` writes it as a moesim model spec.\n"
        ),
    });
    emit(out, &s)
}

fn import(out: &mut dyn Write, file: &std::path::Path, path: &std::path::Path) -> Result<()> {
    crate::atomic_file::refuse_overwriting_inputs(path, &[file], "--out")?;
    let (_, m) = read_gguf(file)?;
    let label = file.display().to_string();
    let spec = m
        .to_spec(&label)
        .map_err(|(at, reason)| InputError::at_key(&label, at, reason))?;
    let text = toml::to_string(&spec).map_err(|e| {
        crate::error::Error::usage(format!("{label}: the spec does not serialise: {e}"))
    })?;
    let text = format!(
        "# Imported by `moesim model import` from {label} ({} blocks, {} routed experts of width {}, top-{}).\n\n{text}",
        m.layers, m.experts, m.expert_ffn, m.top_k
    );
    // The spec must load as written.
    let loaded = moe::parse(&path.display().to_string(), &text)?;
    crate::atomic_file::write_atomic(path, text.as_bytes())?;
    emit(
        out,
        &format!(
            "wrote {} ({}: {} parameters, {} active per token)\n",
            path.display(),
            loaded.name,
            format_count(loaded.total_params() as f64),
            format_count(loaded.active_params() as f64)
        ),
    )
}

#[derive(Serialize)]
struct ModelJson {
    name: String,
    description: String,
    sources: Vec<String>,
    layers: u32,
    moe_layers: Vec<u32>,
    hidden_size: u64,
    expert_intermediate_size: u64,
    routed_experts: u32,
    top_k: u32,
    shared_experts: u32,
    params_per_expert: u64,
    total_params: u64,
    active_params: u64,
    params: ParamBreakdown,
    expert_bytes: Vec<FormatBytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    published: Option<PublishedJson>,
}

#[derive(Serialize)]
struct FormatBytes {
    format: WeightFormat,
    bits_per_weight: f64,
    expert_bytes: u64,
    all_routed_experts_bytes: u64,
}

#[derive(Serialize)]
struct PublishedJson {
    total_params: f64,
    active_params: Option<f64>,
    active_params_counted_as_published: u64,
    total_error_pct: f64,
    active_error_pct: Option<f64>,
    source: String,
}

fn to_json(m: &MoeSpec) -> ModelJson {
    let n_experts_all = m.n_moe_layers() as u64 * m.n_experts as u64;
    ModelJson {
        name: m.name.clone(),
        description: m.description.clone(),
        sources: m.sources.clone(),
        layers: m.n_layers,
        moe_layers: m.moe_layers.clone(),
        hidden_size: m.hidden_size,
        expert_intermediate_size: m.expert_intermediate_size,
        routed_experts: m.n_experts,
        top_k: m.top_k,
        shared_experts: m.n_shared_experts,
        params_per_expert: m.params_per_expert(),
        total_params: m.total_params(),
        active_params: m.active_params(),
        params: m.params.clone(),
        expert_bytes: WeightFormat::ALL
            .iter()
            .map(|&f| FormatBytes {
                format: f,
                bits_per_weight: f.bits_per_weight(),
                expert_bytes: m.expert_bytes(f),
                all_routed_experts_bytes: m.expert_bytes(f) * n_experts_all,
            })
            .collect(),
        published: m.published.as_ref().map(|p| PublishedJson {
            total_params: p.total_params,
            active_params: p.active_params,
            active_params_counted_as_published: m.active_params_as_published(),
            total_error_pct: 100.0 * (m.total_params() as f64 / p.total_params - 1.0),
            active_error_pct: p
                .active_params
                .map(|a| 100.0 * (m.active_params_as_published() as f64 / a - 1.0)),
            source: p.source.clone(),
        }),
    }
}

fn list(out: &mut dyn Write, json: bool) -> Result<()> {
    let models: Vec<MoeSpec> = presets::names()
        .into_iter()
        .map(moe::load)
        .collect::<Result<_>>()?;
    if json {
        let rows: Vec<ModelJson> = models.iter().map(to_json).collect();
        return emit_json(out, &rows);
    }
    let mut t = Table::new(&[
        ("model", Align::Left),
        ("MoE layers", Align::Right),
        ("experts", Align::Right),
        ("top-k", Align::Right),
        ("shared", Align::Right),
        ("params/expert", Align::Right),
        ("total", Align::Right),
        ("active", Align::Right),
        ("Q4_K expert", Align::Right),
    ]);
    for m in &models {
        t.row(vec![
            m.name.clone(),
            m.n_moe_layers().to_string(),
            m.n_experts.to_string(),
            m.top_k.to_string(),
            m.n_shared_experts.to_string(),
            format_count(m.params_per_expert() as f64),
            format_count(m.total_params() as f64),
            format_count(m.active_params() as f64),
            format_bytes(m.expert_bytes(WeightFormat::Q4K) as f64),
        ]);
    }
    emit(out, &t.render())?;
    emit(
        out,
        &format!(
            "\n{} models. `moesim model show NAME` for details.\n",
            models.len()
        ),
    )
}

fn show(out: &mut dyn Write, name: &str, json: bool) -> Result<()> {
    let m = moe::load(name)?;
    if json {
        return emit_json(out, &to_json(&m));
    }
    let mut s = format!("{}: {}\n\n", m.name, m.description);
    let moe_layers = if m.moe_layers.len() as u32 == m.n_layers {
        "all".to_string()
    } else {
        format!("layers {}", index_ranges(&m.moe_layers))
    };
    let mut t = Table::new(&[("field", Align::Left), ("value", Align::Left)]);
    for (k, v) in [
        ("layers", m.n_layers.to_string()),
        ("MoE layers", format!("{} ({moe_layers})", m.n_moe_layers())),
        ("hidden size", m.hidden_size.to_string()),
        (
            "expert intermediate size",
            m.expert_intermediate_size.to_string(),
        ),
        ("routed experts per layer", m.n_experts.to_string()),
        ("top-k", m.top_k.to_string()),
        ("shared experts per layer", m.n_shared_experts.to_string()),
        ("FFN", format!("{:?}", m.ffn).to_lowercase()),
        (
            "params per routed expert",
            m.params_per_expert().to_string(),
        ),
    ] {
        t.row(vec![k.to_string(), v]);
    }
    s.push_str(&t.render());

    s.push_str("\nparameters\n");
    let p = &m.params;
    let mut t = Table::new(&[
        ("component", Align::Left),
        ("params", Align::Right),
        ("share", Align::Right),
    ]);
    let total = m.total_params() as f64;
    for (k, v) in [
        ("routed experts", p.routed_experts),
        ("shared experts", p.shared_experts),
        ("router", p.router),
        ("attention", p.attention),
        ("dense FFN", p.dense_ffn),
        ("input embedding", p.input_embedding),
        ("output projection", p.output_embedding),
        ("norms", p.norms),
        ("other", p.extra),
    ] {
        if v > 0 {
            t.row(vec![
                k.to_string(),
                format_count(v as f64),
                format!("{:.2}%", 100.0 * v as f64 / total),
            ]);
        }
    }
    t.row(vec!["total".into(), format_count(total), "100.00%".into()]);
    t.row(vec![
        "active per token".into(),
        format_count(m.active_params() as f64),
        String::new(),
    ]);
    s.push_str(&t.render());

    if let Some(published) = &m.published {
        let total_err = 100.0 * (total / published.total_params - 1.0);
        s.push_str(&format!(
            "\npublished: total {} (computed is {:+.2}%)",
            format_count(published.total_params),
            total_err
        ));
        if let Some(a) = published.active_params {
            let counted = m.active_params_as_published() as f64;
            let rule = match (
                published.active_excludes_input_embedding,
                published.active_excludes_output_head,
            ) {
                (true, true) => ", input embedding and output head excluded",
                (true, false) => ", input embedding excluded",
                (false, true) => ", output head excluded",
                (false, false) => "",
            };
            s.push_str(&format!(
                ", active {} (computed {} is {:+.2}%{rule})",
                format_count(a),
                format_count(counted),
                100.0 * (counted / a - 1.0),
            ));
        }
        s.push_str(&format!("\n  source: {}\n", published.source));
    }

    s.push_str("\nbytes per routed expert\n");
    let n_all = m.n_moe_layers() as u64 * m.n_experts as u64;
    let mut t = Table::new(&[
        ("format", Align::Left),
        ("bits/weight", Align::Right),
        ("per expert", Align::Right),
        ("per layer", Align::Right),
        (&format!("all {n_all} experts"), Align::Right),
    ]);
    for f in WeightFormat::ALL {
        let b = m.expert_bytes(f);
        t.row(vec![
            f.to_string(),
            format!("{}", f.bits_per_weight()),
            format_bytes(b as f64),
            format_bytes((b * m.n_experts as u64) as f64),
            format_bytes((b * n_all) as f64),
        ]);
    }
    s.push_str(&t.render());
    emit(out, &s)
}

/// `[1, 2, 3, 5, 7, 8]` → `"1-3, 5, 7-8"`.
fn index_ranges(indices: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && indices[i + 1] == end + 1 {
            i += 1;
            end = indices[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn index_ranges() {
        assert_eq!(super::index_ranges(&[1, 2, 3, 5, 7, 8]), "1-3, 5, 7-8");
        assert_eq!(super::index_ranges(&[1, 3, 5]), "1, 3, 5");
    }
}
