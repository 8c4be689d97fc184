//! `moesim model list|show`.

use std::io::Write;

use clap::Subcommand;
use serde::Serialize;

use super::table::{Align, Table};
use super::{emit, emit_json};
use crate::error::Result;
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
    /// Show one model: shape, parameter counts and bytes per expert at every format.
    Show {
        /// A shipped model name or a path to a model spec TOML file.
        model: String,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `model` subcommand.
pub fn run(cmd: ModelCommand, out: &mut dyn Write) -> Result<()> {
    match cmd {
        ModelCommand::List { json } => list(out, json),
        ModelCommand::Show { model, json } => show(out, &model, json),
    }
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
            let rule = if published.active_excludes_input_embedding {
                ", input embedding excluded"
            } else {
                ""
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
