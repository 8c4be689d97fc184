//! `moesim profile list|show|check`.

use std::io::Write;

use clap::Subcommand;
use serde::Serialize;

use super::table::{Align, Table};
use super::{emit, emit_json, warn};
use crate::error::Result;
use crate::hardware::fit::{TierFit, expert_fit, fit_warnings};
use crate::hardware::{self, HardwareProfile, presets};
use crate::moe;
use crate::quant::format::{ComputeClass, WeightFormat};
use crate::units::{format_bandwidth, format_bytes, format_duration_ns, format_rate};

/// `moesim profile …`
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// List the shipped hardware profiles.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one profile; with --model, how that model's experts fit each tier.
    Show {
        /// A shipped profile name or a path to a profile TOML file, or GPU+HOST: the GPU side
        /// of one profile on the host side of another.
        profile: String,
        /// A shipped model name or a model spec TOML file.
        #[arg(long)]
        model: Option<String>,
        /// Weight format of the experts (default: every deployable format).
        #[arg(long)]
        format: Option<WeightFormat>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Print the profile as a TOML file moesim reads (a composed one included), to keep
        /// or edit.
        #[arg(long, conflicts_with_all = ["json", "model", "format"])]
        toml: bool,
    },
    /// Validate a profile file; exit 2 with the file, key and reason if it is invalid.
    Check {
        /// Path to a profile TOML file (or a shipped profile name, or GPU+HOST).
        file: String,
        /// Also check that this model's experts fit somewhere.
        #[arg(long)]
        model: Option<String>,
    },
}

/// Runs a `profile` subcommand.
pub fn run(cmd: ProfileCommand, out: &mut dyn Write) -> Result<()> {
    match cmd {
        ProfileCommand::List { json } => list(out, json),
        ProfileCommand::Show {
            profile,
            model,
            format,
            json,
            toml,
        } => {
            if toml {
                show_toml(out, &profile)
            } else {
                show(out, &profile, model.as_deref(), format, json)
            }
        }
        ProfileCommand::Check { file, model } => check(out, &file, model.as_deref()),
    }
}

#[derive(Serialize)]
struct ListRow {
    name: String,
    description: String,
    tiers: Vec<String>,
    compute_tier: String,
    figure_groups: usize,
    uncalibrated_groups: usize,
}

fn list(out: &mut dyn Write, json: bool) -> Result<()> {
    let mut rows = Vec::new();
    for name in presets::names() {
        let p = hardware::load(name)?;
        rows.push(ListRow {
            name: p.name.clone(),
            description: p.description.clone(),
            tiers: p
                .tiers
                .iter()
                .map(|t| format!("{} {}", t.name, format_bytes(t.capacity_bytes as f64)))
                .collect(),
            compute_tier: p.tiers[p.compute_tier].name.clone(),
            figure_groups: p.figure_groups(),
            uncalibrated_groups: p.uncalibrated_groups().len(),
        });
    }
    if json {
        return emit_json(out, &rows);
    }
    let mut t = Table::new(&[
        ("profile", Align::Left),
        ("tiers (fastest first)", Align::Left),
        ("compute tier", Align::Left),
        ("calibrated groups", Align::Right),
    ]);
    for r in &rows {
        t.row(vec![
            r.name.clone(),
            r.tiers.join(" | "),
            r.compute_tier.clone(),
            format!(
                "{}/{}",
                r.figure_groups - r.uncalibrated_groups,
                r.figure_groups
            ),
        ]);
    }
    emit(out, &t.render())?;
    emit(
        out,
        &format!(
            "\n{} profiles. `moesim profile show NAME` for details.\n",
            rows.len()
        ),
    )
}

#[derive(Serialize)]
struct ShowJson<'a> {
    name: &'a str,
    description: &'a str,
    sources: &'a [String],
    compute_tier: &'a str,
    home_tier: &'a str,
    tiers: Vec<TierJson<'a>>,
    links: Vec<LinkJson<'a>>,
    compute: ComputeJson,
    units: Vec<UnitJson<'a>>,
    uncalibrated: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_fit: Option<ModelFitJson>,
}

#[derive(Serialize)]
struct UnitJson<'a> {
    name: &'a str,
    tier: &'a str,
    #[serde(flatten)]
    compute: ComputeJson,
}

#[derive(Serialize)]
struct TierJson<'a> {
    name: &'a str,
    kind: &'a str,
    capacity_bytes: u64,
    reserved_bytes: u64,
    expert_budget_bytes: u64,
    read_bandwidth_bytes_per_s: f64,
    write_bandwidth_bytes_per_s: f64,
    latency_ns: f64,
    granularity_bytes: u64,
    energy_pj_per_byte: f64,
    holds_experts: bool,
    calibrated: &'a str,
}

#[derive(Serialize)]
struct LinkJson<'a> {
    from: &'a str,
    to: &'a str,
    bandwidth_bytes_per_s: f64,
    latency_ns: f64,
    granularity_bytes: u64,
    channels: u32,
    /// The largest request served in one go (none: one request per transfer).
    #[serde(skip_serializing_if = "Option::is_none")]
    request_bytes: Option<u64>,
    calibrated: &'a str,
    /// The transfer-time distribution as the profile states it (none: fixed times).
    #[serde(skip_serializing_if = "Option::is_none")]
    time_distribution: Option<crate::hardware::time_distribution::TimeDistributionSpec>,
}

#[derive(Serialize)]
struct ComputeJson {
    cores: u32,
    expert_weights_per_s: Vec<(String, f64)>,
    peak_macs_per_s: Vec<(String, f64)>,
    crossover_tokens: Vec<(String, f64)>,
    dense_weights_per_s: f64,
    dense_peak_macs_per_s: f64,
    launch_ns: f64,
    energy_pj_per_mac: f64,
    calibrated: String,
}

#[derive(Serialize)]
struct ModelFitJson {
    model: String,
    formats: Vec<FormatFitJson>,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct FormatFitJson {
    format: WeightFormat,
    expert_bytes: u64,
    tiers: Vec<TierFit>,
}

/// The profile's spec as TOML, validated first; a composed profile says what it was made of.
fn show_toml(out: &mut dyn Write, name: &str) -> Result<()> {
    let (label, spec) = hardware::load_spec(name)?;
    spec.validate(&label)?;
    let body = toml::to_string_pretty(&spec).expect("specs serialize");
    let header = match hardware::ProfileRef::parse(name, hardware::exists_here)? {
        hardware::ProfileRef::Composed { gpu, host } => format!(
            "# Composed by `moesim profile show {name} --toml`.\n\
             # GPU side: {gpu} (its GPU memory, the compute units on it, its links to DRAM).\n\
             # Host side: {host} (all its tiers, links and compute units).\n\
             # No [power]: each profile's static power covers its whole machine; add this one's.\n"
        ),
        hardware::ProfileRef::One(_) => {
            format!(
                "# {label} as moesim reads it (`moesim profile show {name} --toml`; comments dropped)\n"
            )
        }
    };
    emit(out, &format!("{header}{body}"))
}

fn show(
    out: &mut dyn Write,
    name: &str,
    model: Option<&str>,
    format: Option<WeightFormat>,
    json: bool,
) -> Result<()> {
    let p = hardware::load(name)?;
    let moe = model.map(moe::load).transpose()?;
    if moe.is_none() && format.is_some() {
        return Err(crate::Error::usage(
            "--format needs --model (the format sizes the model's experts)",
        ));
    }
    let formats: Vec<WeightFormat> = match format {
        Some(f) => vec![f],
        None => WeightFormat::DEPLOYABLE.to_vec(),
    };
    let warnings = moe
        .as_ref()
        .map(|m| fit_warnings(&p, m, format))
        .unwrap_or_default();
    for w in &warnings {
        warn(w);
    }

    if json {
        let model_fit = moe.as_ref().map(|m| ModelFitJson {
            model: m.name.clone(),
            formats: formats
                .iter()
                .map(|&f| FormatFitJson {
                    format: f,
                    expert_bytes: m.expert_bytes(f),
                    tiers: expert_fit(&p, m, f),
                })
                .collect(),
            warnings: warnings.clone(),
        });
        return emit_json(out, &show_json(&p, model_fit));
    }

    let mut s = format!("{}: {}\n", p.name, p.description);
    s.push_str(&format!(
        "compute tier: {} (kernels read experts here or faster); home tier: {}\n\n",
        p.tiers[p.compute_tier].name,
        p.tiers[p.home_tier()].name
    ));
    let mut t = Table::new(&[
        ("tier", Align::Left),
        ("kind", Align::Left),
        ("capacity", Align::Right),
        ("reserved", Align::Right),
        ("expert budget", Align::Right),
        ("read bw", Align::Right),
        ("write bw", Align::Right),
        ("latency", Align::Right),
        ("granule", Align::Right),
        ("pJ/B", Align::Right),
        ("calibrated", Align::Left),
    ]);
    for tier in &p.tiers {
        t.row(vec![
            tier.name.clone(),
            tier.kind.name().to_string(),
            format_bytes(tier.capacity_bytes as f64),
            format_bytes(tier.reserved_bytes as f64),
            if tier.holds_experts {
                format_bytes(tier.expert_budget_bytes() as f64)
            } else {
                "no experts".into()
            },
            format_bandwidth(tier.read_bandwidth_bytes_per_s),
            format_bandwidth(tier.write_bandwidth_bytes_per_s),
            format_duration_ns(tier.latency_ns),
            format!("{} B", tier.granularity_bytes),
            format!("{}", tier.energy_pj_per_byte),
            tier.calibrated.name().to_string(),
        ]);
    }
    s.push_str(&t.render());

    if !p.links.is_empty() {
        s.push_str("\nlinks\n");
        let mut t = Table::new(&[
            ("from", Align::Left),
            ("to", Align::Left),
            ("bandwidth", Align::Right),
            ("latency", Align::Right),
            ("granule", Align::Right),
            ("channels", Align::Right),
            ("calibrated", Align::Left),
        ]);
        for l in &p.links {
            t.row(vec![
                p.tiers[l.from].name.clone(),
                p.tiers[l.to].name.clone(),
                format_bandwidth(l.bandwidth_bytes_per_s),
                format_duration_ns(l.latency_ns),
                format!("{} B", l.granularity_bytes),
                l.channels.to_string(),
                l.calibrated.name().to_string(),
            ]);
        }
        s.push_str(&t.render());
        for l in &p.links {
            if let Some(r) = l.request_bytes {
                s.push_str(&format!(
                    "{} -> {}: requests of at most {}, each paying the latency (a transfer of b bytes pays it ceil(b / {}) times)\n",
                    p.tiers[l.from].name,
                    p.tiers[l.to].name,
                    format_bytes(r as f64),
                    r
                ));
            }
        }
        for l in &p.links {
            if let Some(d) = &l.time_distribution {
                s.push_str(&format!(
                    "{} -> {}: transfer times vary ({}): factor p10 {:.2}, p50 {:.2}, p90 {:.2}, p99 {:.2}, mean {:.3}\n",
                    p.tiers[l.from].name,
                    p.tiers[l.to].name,
                    d.kind_name(),
                    d.factor(0.1),
                    d.factor(0.5),
                    d.factor(0.9),
                    d.factor(0.99),
                    d.mean()
                ));
            }
        }
    }

    for u in &p.units {
        let c = &u.compute;
        let title = if p.units.len() == 1 {
            "compute".to_string()
        } else {
            format!("compute unit {} on {}", u.name, p.tiers[u.tier].name)
        };
        s.push_str(&format!(
            "\n{title} ({} cores, {}): dense {} weights (peak {} MAC), {} pJ/MAC{}\n",
            c.cores,
            c.calibrated.name(),
            format_rate(c.dense_weights_per_s),
            format_rate(c.dense_peak_macs_per_s),
            c.energy_pj_per_mac,
            if c.launch_ns > 0.0 {
                format!(", {} per kernel launch", format_duration_ns(c.launch_ns))
            } else {
                String::new()
            } + &if c.wake_ns > 0.0 {
                format!(
                    ", resumes {} after a transfer it waited for",
                    format_duration_ns(c.wake_ns)
                )
            } else {
                String::new()
            } + &if c.issue_ns > 0.0 {
                format!(
                    ", {} to hand a transfer to idle links",
                    format_duration_ns(c.issue_ns)
                )
            } else {
                String::new()
            }
        ));
        if let Some(wc) = &c.weights_cache {
            let per: Vec<String> = crate::quant::format::ComputeClass::ALL
                .iter()
                .zip(&wc.expert_weights_per_s)
                .map(|(class, r)| format!("{} {}", class.name(), format_rate(*r)))
                .collect();
            let rule = match wc.replacement {
                crate::hardware::Replacement::Lru => format!(
                    "experts computed within the last {} of expert weights run at",
                    format_bytes(wc.capacity_bytes as f64)
                ),
                crate::hardware::Replacement::Random => match wc.lifetime_ns {
                    None => format!(
                        "{} under random replacement (an expert's weights survive the bytes fetched from memory since its last kernel with probability exp(-fetched / capacity)); cached weights run at",
                        format_bytes(wc.capacity_bytes as f64)
                    ),
                    Some(t) => format!(
                        "{} under random replacement, lifetime {} (an expert's weights survive the bytes fetched from memory and the time since its last kernel with probability exp(-fetched / capacity - time / lifetime)); cached weights run at",
                        format_bytes(wc.capacity_bytes as f64),
                        format_duration_ns(t)
                    ),
                },
            };
            s.push_str(&format!(
                "last-level cache for expert weights: {rule} {}\n",
                per.join(", ")
            ));
            if !wc.landing.is_empty() {
                let points: Vec<String> = wc
                    .landing
                    .iter()
                    .map(|&(d, f)| {
                        format!(
                            "within {}: {:+.1} %",
                            format_bytes(d as f64),
                            100.0 * (f - 1.0)
                        )
                    })
                    .collect();
                s.push_str(&format!(
                    "transfers landing in a buffer computed on {} (linear between; fresh or older buffers: the link's time)\n",
                    points.join(", ")
                ));
            }
        }
        let w = &c.expert_slowdown_while_transferring;
        if w.iter().all(|&x| x == w[0]) {
            if w[0] > 0.0 {
                s.push_str(&format!(
                    "expert kernels while a link transfers: {:.1} % slower\n",
                    100.0 * w[0]
                ));
            }
        } else {
            let per: Vec<String> = crate::quant::format::ComputeClass::ALL
                .iter()
                .zip(w)
                .filter(|(_, x)| **x > 0.0)
                .map(|(c, x)| format!("{} {:.1} %", c.name(), 100.0 * x))
                .collect();
            s.push_str(&format!(
                "expert kernels while a link transfers: slower by {}\n",
                per.join(", ")
            ));
        }
        let after_load = c.expert_slowdown_after_load.iter().any(|&x| x != 0.0);
        let mut columns = vec![
            ("class", Align::Left),
            ("expert GEMV weights/s", Align::Right),
            ("peak MAC/s", Align::Right),
            ("crossover tokens", Align::Right),
        ];
        if after_load {
            columns.push(("first kernel after a load", Align::Right));
        }
        let mut t = Table::new(&columns);
        for (i, class) in ComputeClass::ALL.into_iter().enumerate() {
            let mut row = vec![
                class.name().to_string(),
                format_rate(c.weights_per_s(class)),
                format_rate(c.peak_macs_per_s(class)),
                format!("{:.1}", c.crossover_tokens(class)),
            ];
            if after_load {
                row.push(format!("{:+.1} %", 100.0 * c.expert_slowdown_after_load[i]));
            }
            t.row(row);
        }
        s.push_str(&t.render());
    }
    s.push_str(
        "(a kernel on n tokens takes max(weights / GEMV rate, n * MACs / peak) + launch; \
         below the crossover it is bound by memory)\n",
    );
    match &p.power {
        Some(w) => s.push_str(&format!(
            "\nstatic power: {} W ({}; {}), charged over simulated time\n",
            w.static_w,
            w.covers,
            w.calibrated.name()
        )),
        None => s.push_str("\nstatic power: not stated; energies count dynamic energy only\n"),
    }
    s.push_str(
        "\nwhat times what: links (bandwidth, latency, granule, channels) time every copy \
         between tiers; the compute figures time every kernel, reading its weights from the \
         compute tier included; tier capacities, reserves and holds_experts decide where \
         experts fit; tier pJ/B price every byte read or written; a tier's read bandwidth caps \
         what the copies out of it and the kernels computing in place from it draw at once. \
         Tier write bandwidth, latency and granule are recorded but time nothing.\n",
    );

    let uncalibrated = p.uncalibrated_groups();
    if !uncalibrated.is_empty() {
        s.push_str("\nnot calibrated (derived or assumed figures): ");
        let items: Vec<String> = uncalibrated
            .iter()
            .map(|(g, c)| format!("{g} ({})", c.name()))
            .collect();
        s.push_str(&items.join(", "));
        s.push('\n');
    }

    if let Some(m) = &moe {
        s.push_str(&format!(
            "\n{}: {} MoE layers x {} experts, top-{}\n",
            m.name,
            m.n_moe_layers(),
            m.n_experts,
            m.top_k
        ));
        s.push_str(&fit_tables(&p, m, &formats));
    }
    emit(out, &s)
}

fn fit_tables(p: &HardwareProfile, m: &moe::MoeSpec, formats: &[WeightFormat]) -> String {
    let mut s = String::new();
    let mut columns: Vec<(String, Align)> = vec![
        ("tier".into(), Align::Left),
        ("expert budget".into(), Align::Right),
    ];
    for f in formats {
        columns.push((
            format!("{f} ({})", format_bytes(m.expert_bytes(*f) as f64)),
            Align::Right,
        ));
    }
    let columns_ref: Vec<(&str, Align)> = columns.iter().map(|(h, a)| (h.as_str(), *a)).collect();
    let mut t = Table::new(&columns_ref);
    let fits: Vec<Vec<TierFit>> = formats.iter().map(|&f| expert_fit(p, m, f)).collect();
    for (row, first) in fits[0].iter().enumerate() {
        let mut cells = vec![
            first.tier.clone(),
            format_bytes(first.expert_budget_bytes as f64),
        ];
        for per_format in &fits {
            let fit = &per_format[row];
            cells.push(format!(
                "{} ({:.0}%)",
                fit.experts_fit,
                100.0 * fit.fraction_of_experts
            ));
        }
        t.row(cells);
    }
    s.push_str("experts that fit each tier's budget (share of all routed experts):\n");
    s.push_str(&t.render());

    let mut columns: Vec<(String, Align)> = vec![
        ("to".into(), Align::Left),
        ("from".into(), Align::Left),
        ("path".into(), Align::Left),
    ];
    for f in formats {
        columns.push((f.to_string(), Align::Right));
    }
    let columns_ref: Vec<(&str, Align)> = columns.iter().map(|(h, a)| (h.as_str(), *a)).collect();
    let mut t = Table::new(&columns_ref);
    let mut any = false;
    for (row, first) in fits[0].iter().enumerate() {
        for (k, load) in first.load_from.iter().enumerate() {
            any = true;
            let mut cells = vec![
                first.tier.clone(),
                load.from.clone(),
                load.path.join(" -> "),
            ];
            for per_format in &fits {
                let l = &per_format[row].load_from[k];
                cells.push(
                    l.time_ns
                        .map(format_duration_ns)
                        .unwrap_or_else(|| "no link".into()),
                );
            }
            t.row(cells);
        }
    }
    if any {
        s.push_str("\ntime to load one expert (uncontended, fastest link chain):\n");
        s.push_str(&t.render());
    }
    s
}

fn show_json(p: &HardwareProfile, model_fit: Option<ModelFitJson>) -> ShowJson<'_> {
    ShowJson {
        name: &p.name,
        description: &p.description,
        sources: &p.sources,
        compute_tier: &p.tiers[p.compute_tier].name,
        home_tier: &p.tiers[p.home_tier()].name,
        tiers: p
            .tiers
            .iter()
            .map(|t| TierJson {
                name: &t.name,
                kind: t.kind.name(),
                capacity_bytes: t.capacity_bytes,
                reserved_bytes: t.reserved_bytes,
                expert_budget_bytes: t.expert_budget_bytes(),
                read_bandwidth_bytes_per_s: t.read_bandwidth_bytes_per_s,
                write_bandwidth_bytes_per_s: t.write_bandwidth_bytes_per_s,
                latency_ns: t.latency_ns,
                granularity_bytes: t.granularity_bytes,
                energy_pj_per_byte: t.energy_pj_per_byte,
                holds_experts: t.holds_experts,
                calibrated: t.calibrated.name(),
            })
            .collect(),
        links: p
            .links
            .iter()
            .map(|l| LinkJson {
                from: &p.tiers[l.from].name,
                to: &p.tiers[l.to].name,
                bandwidth_bytes_per_s: l.bandwidth_bytes_per_s,
                latency_ns: l.latency_ns,
                granularity_bytes: l.granularity_bytes,
                channels: l.channels,
                request_bytes: l.request_bytes,
                calibrated: l.calibrated.name(),
                time_distribution: l.time_distribution.as_ref().map(|d| d.spec()),
            })
            .collect(),
        compute: compute_json(p.compute()),
        units: p
            .units
            .iter()
            .map(|u| UnitJson {
                name: &u.name,
                tier: &p.tiers[u.tier].name,
                compute: compute_json(&u.compute),
            })
            .collect(),
        uncalibrated: p
            .uncalibrated_groups()
            .iter()
            .map(|(g, c)| format!("{g} ({})", c.name()))
            .collect(),
        model_fit,
    }
}

fn compute_json(c: &hardware::Compute) -> ComputeJson {
    let per_class = |f: &dyn Fn(ComputeClass) -> f64| {
        ComputeClass::ALL
            .iter()
            .map(|&class| (class.name().to_string(), f(class)))
            .collect()
    };
    ComputeJson {
        cores: c.cores,
        expert_weights_per_s: per_class(&|class| c.weights_per_s(class)),
        peak_macs_per_s: per_class(&|class| c.peak_macs_per_s(class)),
        crossover_tokens: per_class(&|class| c.crossover_tokens(class)),
        dense_weights_per_s: c.dense_weights_per_s,
        dense_peak_macs_per_s: c.dense_peak_macs_per_s,
        launch_ns: c.launch_ns,
        energy_pj_per_mac: c.energy_pj_per_mac,
        calibrated: c.calibrated.name().to_string(),
    }
}

fn check(out: &mut dyn Write, file: &str, model: Option<&str>) -> Result<()> {
    let p = hardware::load(file)?;
    let uncalibrated = p.uncalibrated_groups();
    let mut s = format!(
        "ok: {file}: profile `{}` with {} tiers, {} links; {} of {} figure groups not calibrated\n",
        p.name,
        p.tiers.len(),
        p.links.len(),
        uncalibrated.len(),
        p.figure_groups()
    );
    if let Some(model) = model {
        let m = moe::load(model)?;
        for w in fit_warnings(&p, &m, None) {
            warn(&w);
        }
        s.push_str(&format!(
            "model {}: checked the fit of its experts\n",
            m.name
        ));
    }
    emit(out, &s)
}
