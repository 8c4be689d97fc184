//! `moesim plan`: the verdict, the best setting with its llama.cpp command line, the runners-up.

use std::io::Write;

use clap::Args;

use super::table::{Align, Table};
use super::{emit, emit_json};
use crate::error::{Error, Result};
use crate::plan::{Objective, PlanRequest};
use crate::quant::format::WeightFormat;
use crate::units::format_bytes;

/// Arguments of `moesim plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// A shipped hardware profile or a profile file, or GPU+HOST (the GPU side of one on the
    /// host side of another).
    #[arg(long)]
    hardware: String,
    /// A shipped model or a model spec file.
    #[arg(long)]
    model: String,
    /// Context tokens per request (the KV cache set aside for it).
    #[arg(long, default_value_t = 4096)]
    context: u64,
    /// Requests served at once.
    #[arg(long, default_value_t = 1)]
    batch: u32,
    /// What the best setting maximises.
    #[arg(long, value_enum, default_value_t = Objective::Decode)]
    objective: Objective,
    /// Expert formats to consider, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "q8_0,q4_k,q3_k,q2_k")]
    formats: Vec<WeightFormat>,
    /// Runners-up shown.
    #[arg(long, default_value_t = 8)]
    top: usize,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// Runs `moesim plan`.
pub fn run(a: PlanArgs, out: &mut dyn Write) -> Result<()> {
    if a.batch == 0 || a.batch > crate::sim::serving::MAX_BATCH {
        return Err(Error::usage(format!(
            "--batch {}: must be in 1..={}",
            a.batch,
            crate::sim::serving::MAX_BATCH
        )));
    }
    if a.context == 0 {
        return Err(Error::usage("--context 0: must be at least 1"));
    }
    if a.formats.is_empty() || a.formats.contains(&WeightFormat::F32) {
        return Err(Error::usage(
            "--formats: give deployable formats (f32 is the untimed quality reference)",
        ));
    }
    let req = PlanRequest {
        hardware: a.hardware.clone(),
        model: a.model.clone(),
        context: a.context,
        batch: a.batch,
        objective: a.objective,
        prompt_tokens: 256,
        decode_tokens: 64,
        formats: a.formats.clone(),
    };
    let plan = crate::plan::plan(&req)?;
    if a.json {
        return emit_json(out, &plan);
    }
    let mut s = String::new();
    // The verdict first: at the best format that runs, else the first.
    let best_format = plan.candidates.first().map(|c| c.format);
    let (f, v) = plan
        .verdicts
        .iter()
        .find(|(f, _)| Some(*f) == best_format)
        .unwrap_or(&plan.verdicts[0]);
    s.push_str(&format!(
        "{} on {} at {f}: {} ({})\n",
        a.model,
        a.hardware,
        v.fit.words().to_uppercase(),
        v.reason
    ));
    for (g, w) in &plan.verdicts {
        if g != f {
            s.push_str(&format!("  at {g}: {} ({})\n", w.fit.words(), w.reason));
        }
    }
    let Some(best) = plan.candidates.first() else {
        s.push_str("\nno setting runs.\n");
        for k in &plan.skipped {
            s.push_str(&format!("  {k}\n"));
        }
        return emit(out, &s);
    };
    let placement = |c: &crate::plan::Candidate| match c.in_place_layers {
        Some(n) => format!("{} {n}", c.placement),
        None => c.placement.clone(),
    };
    s.push_str(&format!(
        "\nbest ({} objective, context {}, batch {}): {} experts, {}\n  decode {:.1} tokens/s, prefill {:.0} tokens/s, time to first token {:.2} s (256-token prompt)\n  primary memory {}, experts elsewhere {}\n",
        match a.objective {
            Objective::Decode => "decode",
            Objective::Prefill => "prefill",
            Objective::Balanced => "balanced",
        },
        a.context,
        a.batch,
        best.format,
        placement(best),
        best.decode_tokens_per_s,
        best.prefill_tokens_per_s,
        best.ttft_s,
        format_bytes(best.primary_bytes as f64),
        format_bytes(best.other_bytes as f64),
    ));
    match &best.llama_cpp {
        Some(cmd) => s.push_str(&format!("  llama.cpp: {cmd}\n")),
        None => {
            s.push_str("  llama.cpp has no equivalent of this placement");
            if let Some(c) = plan.candidates.iter().find(|c| c.llama_cpp.is_some()) {
                s.push_str(&format!(
                    "; its best setting: {} {} at {:.1} decode tokens/s:\n  llama.cpp: {}\n",
                    c.format,
                    placement(c),
                    c.decode_tokens_per_s,
                    c.llama_cpp.as_deref().unwrap_or_default()
                ));
            } else {
                s.push('\n');
            }
        }
    }
    s.push_str("\nrunners-up\n");
    let mut t = Table::new(&[
        ("format", Align::Left),
        ("placement", Align::Left),
        ("decode tok/s", Align::Right),
        ("prefill tok/s", Align::Right),
        ("TTFT s", Align::Right),
        ("primary mem", Align::Right),
        ("elsewhere", Align::Right),
    ]);
    for c in plan.candidates.iter().skip(1).take(a.top) {
        t.row(vec![
            c.format.to_string(),
            placement(c),
            format!("{:.1}", c.decode_tokens_per_s),
            format!("{:.0}", c.prefill_tokens_per_s),
            format!("{:.2}", c.ttft_s),
            format_bytes(c.primary_bytes as f64),
            format_bytes(c.other_bytes as f64),
        ]);
    }
    s.push_str(&t.render());
    s.push_str(&format!(
        "\n{} settings simulated ({} could not be set up); predictions from the profile's datasheet figures on a generated trace in the model's shape. Fewer bits cost output quality (`moesim quant eval`); pin a format with --formats.\n",
        plan.candidates.len(),
        plan.skipped.len()
    ));
    emit(out, &s)
}
