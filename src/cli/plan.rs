//! `moesim plan`: the verdict, the best setting with its llama.cpp command line, the runners-up.

use std::io::Write;

use clap::Args;

use super::table::{Align, Table};
use super::{emit, emit_json};
use crate::error::{Error, Result};
use crate::gguf::mix::Mix;
use crate::moe::kv::KvFormat;
use crate::plan::{Objective, PlanRequest, Quant};
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
    /// llama.cpp quantization mixes to consider, comma-separated (`q8_0,q4_k_m,q3_k_m,q2_k`
    /// by default when the model's tensors can be laid out, see `model show --mix`).
    #[arg(long, value_delimiter = ',')]
    mixes: Vec<String>,
    /// Uniform expert formats to consider, comma-separated (`q8_0,q4_k,q3_k,q2_k` by default
    /// when the model gives no tensors to apply a mix to).
    #[arg(long, value_delimiter = ',')]
    formats: Vec<WeightFormat>,
    /// KV cache formats, comma-separated (f32, f16, bf16, q8_0, q4_0): every setting runs at
    /// the first, the best few again at the others.
    #[arg(long, value_delimiter = ',', default_value = "f16,q8_0")]
    kv_formats: Vec<String>,
    /// Micro-batch sizes (llama.cpp's -ub: prompt tokens per step), comma-separated: every
    /// setting runs at the first, the best few again at the others (default 512; for the
    /// prefill and balanced objectives 512,128,256,1024,2048).
    #[arg(long, value_delimiter = ',')]
    ubatch: Vec<u32>,
    /// Prompt tokens of the simulated request (prefill speed and time to first token).
    #[arg(long, default_value_t = 256)]
    prompt: u32,
    /// Runners-up shown.
    #[arg(long, default_value_t = 8)]
    top: usize,
    /// Also draw decode tokens/s against the primary unit's memory used, one curve per
    /// placement and format, to STEM.png and STEM.svg.
    #[arg(long, value_name = "STEM")]
    plot: Option<std::path::PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// Decode tokens/s against the primary memory used, one curve per placement, format and KV
/// format (a layer split's points are its `--n-cpu-moe` values).
fn draw(plan: &crate::plan::Plan, title: &str, stem: &std::path::Path) -> Result<()> {
    use crate::report::plot::{Series, XyChart};
    let mut series: Vec<Series> = Vec::new();
    for c in &plan.candidates {
        let kv = if c.kv_format == crate::moe::kv::KvFormat::F16 {
            String::new()
        } else {
            format!(", KV {}", c.kv_format.name())
        };
        let name = format!("{}: {}{kv}", c.format, c.placement);
        Series::named(&mut series, &name, false)
            .points
            .push((c.primary_bytes as f64 / 1e9, c.decode_tokens_per_s));
    }
    for s in &mut series {
        s.points
            .sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    }
    XyChart {
        title: title.to_string(),
        x_label: "primary memory used (GB)".into(),
        y_label: "decode tokens/s".into(),
        series,
        ..Default::default()
    }
    .write(stem)
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
    if a.formats.contains(&WeightFormat::F32) {
        return Err(Error::usage(
            "--formats: give deployable formats (f32 is the untimed quality reference)",
        ));
    }
    let mut kv_formats: Vec<KvFormat> = Vec::new();
    for k in &a.kv_formats {
        let f = [
            KvFormat::F32,
            KvFormat::F16,
            KvFormat::Bf16,
            KvFormat::Q8_0,
            KvFormat::Q4_0,
        ]
        .into_iter()
        .find(|f| f.name() == k.to_ascii_lowercase())
        .ok_or_else(|| {
            Error::usage(format!(
                "--kv-formats {k}: expected f32, f16, bf16, q8_0 or q4_0"
            ))
        })?;
        if !kv_formats.contains(&f) {
            kv_formats.push(f);
        }
    }
    if kv_formats.is_empty() {
        return Err(Error::usage("--kv-formats: give at least one"));
    }
    let mut ubatches: Vec<u32> = Vec::new();
    for &u in &a.ubatch {
        if u == 0 || u > 65_536 {
            return Err(Error::usage(format!("--ubatch {u}: must be in 1..=65536")));
        }
        if !ubatches.contains(&u) {
            ubatches.push(u);
        }
    }
    if ubatches.is_empty() {
        ubatches = match a.objective {
            Objective::Decode => vec![512],
            Objective::Prefill | Objective::Balanced => vec![512, 128, 256, 1024, 2048],
        };
    }
    if a.prompt == 0 || a.prompt > 1_000_000 {
        return Err(Error::usage(format!(
            "--prompt {}: must be in 1..=1000000",
            a.prompt
        )));
    }
    let mut quants: Vec<Quant> = Vec::new();
    for m in &a.mixes {
        let mix: Mix = m
            .parse()
            .map_err(|e: String| Error::usage(format!("--mixes: {e}")))?;
        quants.push(Quant::of_mix(mix).ok_or_else(|| {
            Error::usage(format!(
                "--mixes {mix}: its default type has no kernel class in moesim's profiles"
            ))
        })?);
    }
    quants.extend(a.formats.iter().map(|&f| Quant::uniform(f)));
    if quants.is_empty() {
        // llama.cpp's mixes where moesim can lay out the model's tensors, else uniform formats.
        let lays_out = crate::moe::load_spec_file(&a.model)
            .ok()
            .is_some_and(|(_, spec)| crate::gguf::layout::header_of_spec(&spec).is_ok());
        quants = if lays_out {
            [Mix::Q8_0, Mix::Q4KM, Mix::Q3KM, Mix::Q2K]
                .into_iter()
                .filter_map(Quant::of_mix)
                .collect()
        } else {
            [
                WeightFormat::Q8_0,
                WeightFormat::Q4K,
                WeightFormat::Q3K,
                WeightFormat::Q2K,
            ]
            .into_iter()
            .map(Quant::uniform)
            .collect()
        };
    }
    let req = PlanRequest {
        hardware: a.hardware.clone(),
        model: a.model.clone(),
        context: a.context,
        batch: a.batch,
        objective: a.objective,
        prompt_tokens: a.prompt,
        decode_tokens: 64,
        formats: quants,
        kv_formats,
        ubatches,
    };
    let plan = crate::plan::plan(&req)?;
    if let Some(stem) = &a.plot {
        draw(
            &plan,
            &format!("{} on {}: decode speed against memory", a.model, a.hardware),
            stem,
        )?;
    }
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
        "\nbest ({} objective, context {}, batch {}): {} experts, {}, KV cache {}\n  decode {:.1} tokens/s, prefill {:.0} tokens/s, time to first token {:.2} s ({}-token prompt, -ub {})\n  primary memory {}, experts elsewhere {}\n",
        match a.objective {
            Objective::Decode => "decode",
            Objective::Prefill => "prefill",
            Objective::Balanced => "balanced",
        },
        a.context,
        a.batch,
        best.format,
        placement(best),
        best.kv_format.name(),
        best.decode_tokens_per_s,
        best.prefill_tokens_per_s,
        best.ttft_s,
        a.prompt,
        best.ubatch,
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
        ("KV", Align::Left),
        ("-ub", Align::Right),
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
            c.kv_format.name().to_string(),
            c.ubatch.to_string(),
            format!("{:.1}", c.decode_tokens_per_s),
            format!("{:.0}", c.prefill_tokens_per_s),
            format!("{:.2}", c.ttft_s),
            format_bytes(c.primary_bytes as f64),
            format_bytes(c.other_bytes as f64),
        ]);
    }
    s.push_str(&t.render());
    s.push_str(&format!(
        "\n{} settings simulated ({} could not be set up); predictions from the profile's datasheet figures on a generated trace in the model's shape. Fewer bits cost output quality (`moesim quant eval`); choose with --mixes or --formats.\n",
        plan.candidates.len(),
        plan.skipped.len()
    ));
    emit(out, &s)
}
