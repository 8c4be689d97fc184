//! The seed's §6.3 evaluation table with measured numbers: the standard-router point against
//! each memory-aware point of a sweep, then a sentence comparing them with the seed's figures
//! (a table in `summary.md`, not a plot).

use super::metrics::{PointSummary, metric_index};
use super::numbers::{pm, sig};
use super::plots::{PlotData, point_label};

/// The seed's §6.3 evaluation table (doc 04; `../shared/reference/seeds.md`, entry A7), as
/// printed there: (metric, standard, memory-aware, delta).
const SEED_TABLE: [(&str, &str, &str, &str); 5] = [
    ("Expert utilization", "62%", "78%", "+16%"),
    ("Cache hit rate", "34%", "71%", "+37%"),
    ("Average load latency", "12.3ms", "4.1ms", "-67%"),
    ("Task accuracy (MMLU)", "45.3%", "44.8%", "-0.5%"),
    ("Token throughput", "1200/s", "1850/s", "+54%"),
];

/// The seed table's shape with measured numbers: the standard point against each
/// memory-aware point, then a sentence comparing them with the seed's figures.
pub fn seed_table(d: &PlotData<'_>) -> String {
    let Some(base) = d.points.iter().find(|p| p.router == "standard") else {
        return "\n## Seed §6.3 table\n\nNo point uses the standard router: nothing to compare against.\n"
            .into();
    };
    let aware: Vec<&PointSummary> = d
        .points
        .iter()
        .filter(|p| p.router == "memory-aware")
        .collect();
    if aware.is_empty() {
        return "\n## Seed §6.3 table\n\nNo point uses the memory-aware router.\n".into();
    }
    let rows: [(&str, &str, f64, bool); 6] = [
        (
            "utilisation",
            "Expert utilisation (share of (layer, expert) pairs with ≥ 1 % of the layer's selections)",
            100.0,
            true,
        ),
        ("hit_rate", "Cache hit rate (decode)", 100.0, true),
        (
            "decode_stall_ns_per_token",
            "Expert-load stall per decode token (ms)",
            1.0,
            false,
        ),
        (
            "output_rel_l2_mean",
            "Output error (relative L2 of the MoE output, proxy experts)",
            1.0,
            false,
        ),
        (
            "topk_agreement",
            "Top-k agreement with standard routing",
            100.0,
            true,
        ),
        (
            "decode_tokens_per_s",
            "Decode throughput (tokens/s)",
            1.0,
            false,
        ),
    ];
    let mut s = format!(
        "\n## Seed §6.3 table, measured\n\nThe shape of the seed's table (doc 04 §6.3) for {} on {}; mean ± 95 % CI over {} replicate(s).\n\n| metric | standard |",
        base.model, base.profile, base.n
    );
    for p in &aware {
        s.push_str(&format!(" {} | change |", point_label(d, p)));
    }
    s.push_str("\n|---|---|");
    s.push_str(&"---|---|".repeat(aware.len()));
    s.push('\n');
    let fmt = |(m, c): (f64, f64), pct: bool| {
        if pct {
            if c.is_finite() {
                format!("{:.1} % ± {:.1}", m * 100.0, c * 100.0)
            } else {
                format!("{:.1} %", m * 100.0)
            }
        } else {
            pm((m, c))
        }
    };
    for (name, label, _, pct) in rows {
        let m = metric_index(name);
        s.push_str(&format!("| {label} | {} |", fmt(base.stats[m], pct)));
        for p in &aware {
            let (a, b) = (base.stats[m].0, p.stats[m].0);
            let change = if pct {
                format!("{:+.1} points", (b - a) * 100.0)
            } else if a != 0.0 && a.is_finite() && b.is_finite() {
                format!("{:+.1} %", (b / a - 1.0) * 100.0)
            } else {
                "-".into()
            };
            s.push_str(&format!(" {} | {change} |", fmt(p.stats[m], pct)));
        }
        s.push('\n');
    }
    s.push_str("\nThe seed's table, for comparison (no model, workload, cache size, bonus or hardware given):\n\n| metric | standard | memory-aware | delta |\n|---|---|---|---|\n");
    for (m, a, b, c) in SEED_TABLE {
        s.push_str(&format!("| {m} | {a} | {b} | {c} |\n"));
    }
    let hit = metric_index("hit_rate");
    let tps = metric_index("decode_tokens_per_s");
    let err = metric_index("output_rel_l2_mean");
    let agree = metric_index("topk_agreement");
    let best = aware
        .iter()
        .max_by(|a, b| a.stats[tps].0.total_cmp(&b.stats[tps].0))
        .expect("non-empty");
    s.push_str(&format!(
        "\nMeasured here: the hit rate goes from {:.1} % to {:.1} % with {} (the seed claims 34 % → 71 %), decode throughput from {} to {} tokens/s ({:+.0} %; the seed claims +54 %), while top-k agreement with standard routing falls to {:.1} % and the output error rises from {} to {} (the seed claims −0.5 % MMLU; moesim measures output error on proxy experts, not task accuracy). The seed's figures come with no method (seeds.md A7), so only their direction can be compared.\n",
        base.stats[hit].0 * 100.0,
        best.stats[hit].0 * 100.0,
        point_label(d, best),
        sig(base.stats[tps].0),
        sig(best.stats[tps].0),
        (best.stats[tps].0 / base.stats[tps].0 - 1.0) * 100.0,
        best.stats[agree].0 * 100.0,
        sig(base.stats[err].0),
        sig(best.stats[err].0),
    ));
    s
}
