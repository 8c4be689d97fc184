//! `trace fit`: search generator parameters so that a generated trace matches a real one.
//!
//! The targets are the real trace's popularity Gini, normalised entropy and adjacent-token
//! overlap (means over layers), plus its mean top-1 gate weight when the trace has weights.
//! Candidate traces copy the real trace's shape (layers, experts, top-k, requests, tokens per
//! request and phase split), so finite-sample effects on Gini and overlap are alike, and
//! are averaged over a few replicate seeds. The search is a Nelder–Mead simplex over
//! `p_stay`, `noise`, `temperature`, `bias_skew` and `zipf_s` in unbounded coordinates
//! (logit and log transforms), minimising the sum of squared relative errors. It is
//! deterministic: the same inputs and seed give the same result.

use serde::Serialize;

use super::generate::{GeneratedEvent, Generator, GeneratorSpec, derive_seed};
use super::stats::{StatsReport, Summary, TraceStats};

/// What `trace fit` matches, and how close it got.
#[derive(Debug, Clone, Serialize)]
pub struct FitResult {
    /// The fitted spec.
    pub spec: GeneratorSpec,
    /// Target metric values (real trace).
    pub target: Metrics,
    /// Values of the fitted generator (mean over replicates).
    pub achieved: Metrics,
    /// Relative error per metric, |achieved − target| / target.
    pub relative_error: Metrics,
    /// Loss evaluations used.
    pub evaluations: usize,
}

/// The matched metrics.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Metrics {
    /// Mean popularity Gini.
    pub gini: f64,
    /// Mean normalised entropy.
    pub entropy_norm: f64,
    /// Mean adjacent-token overlap.
    pub adjacent_overlap: f64,
    /// Mean top-1 gate weight (NaN when the real trace has no weights).
    pub top1_weight: f64,
}

impl Metrics {
    fn from_summary(s: &Summary) -> Metrics {
        Metrics {
            gini: s.gini,
            entropy_norm: s.entropy_norm,
            adjacent_overlap: s.adjacent_overlap,
            top1_weight: s.top1_weight,
        }
    }

    fn values(&self) -> [f64; 4] {
        [
            self.gini,
            self.entropy_norm,
            self.adjacent_overlap,
            self.top1_weight,
        ]
    }
}

/// Shape of the real trace that candidates copy.
#[derive(Debug, Clone, Copy)]
pub struct TraceShape {
    /// Requests.
    pub requests: u32,
    /// Prefill tokens per request (mean over requests and layers).
    pub prefill_tokens: u32,
    /// Decode tokens per request.
    pub decode_tokens: u32,
}

impl TraceShape {
    /// The shape of a trace from its statistics.
    pub fn of(report: &StatsReport) -> TraceShape {
        let s = &report.summary;
        let layers = report.layers.len().max(1) as f64;
        let requests = s.requests.max(1) as f64;
        let per_request = |events: u64| (events as f64 / layers / requests).round() as u32;
        TraceShape {
            requests: s.requests.max(1) as u32,
            prefill_tokens: per_request(s.prefill_events),
            decode_tokens: per_request(s.decode_events).max(if s.prefill_events == 0 {
                1
            } else {
                0
            }),
        }
    }
}

/// Number of replicate seeds each candidate is averaged over.
pub const REPLICATES: u64 = 4;

const PARAMS: usize = 5;

fn to_coords(s: &GeneratorSpec) -> [f64; PARAMS] {
    let logit = |p: f64| {
        let p = p.clamp(1e-4, 1.0 - 1e-4);
        (p / (1.0 - p)).ln()
    };
    [
        logit(s.p_stay),
        s.noise.max(1e-3).ln(),
        s.temperature.ln(),
        (s.bias_skew + 1e-3).ln(),
        (s.zipf_s + 1e-3).ln(),
    ]
}

fn from_coords(base: &GeneratorSpec, x: &[f64; PARAMS]) -> GeneratorSpec {
    let mut s = base.clone();
    s.p_stay = 1.0 / (1.0 + (-x[0]).exp());
    s.noise = x[1].exp().clamp(1e-3, 1e3);
    s.temperature = x[2].exp().clamp(1e-3, 1e3);
    s.bias_skew = (x[3].exp() - 1e-3).clamp(0.0, 1e3);
    s.zipf_s = (x[4].exp() - 1e-3).clamp(0.0, 10.0);
    s
}

/// Mean metrics of `spec` over the replicate seeds.
pub fn evaluate(spec: &GeneratorSpec, shape: TraceShape, seed: u64) -> Metrics {
    let mut sums = [0.0f64; 4];
    let mut spec = spec.clone();
    spec.prefill_tokens = shape.prefill_tokens;
    spec.decode_tokens = shape.decode_tokens;
    for rep in 0..REPLICATES {
        let generator = Generator::new(&spec, derive_seed(seed, rep));
        let meta = spec.meta(seed, shape.requests);
        let mut stats = TraceStats::new(&meta)
            .expect("candidates have the real trace's shape, whose statistics were computed");
        let mut ev = GeneratedEvent::default();
        for request in 0..shape.requests {
            let mut events = generator.request(request);
            while events.next_event(&mut ev) {
                stats.add(&ev.record);
            }
        }
        let m = Metrics::from_summary(&stats.report().summary);
        for (s, v) in sums.iter_mut().zip(m.values()) {
            *s += v;
        }
    }
    let n = REPLICATES as f64;
    Metrics {
        gini: sums[0] / n,
        entropy_norm: sums[1] / n,
        adjacent_overlap: sums[2] / n,
        top1_weight: sums[3] / n,
    }
}

fn loss(achieved: &Metrics, target: &Metrics) -> f64 {
    achieved
        .values()
        .iter()
        .zip(target.values())
        .filter(|(_, t)| t.is_finite() && *t > 0.0)
        .map(|(a, t)| ((a - t) / t).powi(2))
        .sum()
}

/// Relative error per metric.
pub fn relative_errors(achieved: &Metrics, target: &Metrics) -> Metrics {
    let rel = |a: f64, t: f64| {
        if t.is_finite() && t != 0.0 {
            (a - t).abs() / t.abs()
        } else {
            f64::NAN
        }
    };
    Metrics {
        gini: rel(achieved.gini, target.gini),
        entropy_norm: rel(achieved.entropy_norm, target.entropy_norm),
        adjacent_overlap: rel(achieved.adjacent_overlap, target.adjacent_overlap),
        top1_weight: rel(achieved.top1_weight, target.top1_weight),
    }
}

/// Fits `start` (its shape fields are replaced by the real trace's) to `real`.
pub fn fit(
    start: &GeneratorSpec,
    real: &StatsReport,
    seed: u64,
    max_evaluations: usize,
) -> FitResult {
    let target = Metrics::from_summary(&real.summary);
    let shape = TraceShape::of(real);
    let mut base = start.clone();
    base.layers = real.layers.len() as u32;
    base.experts = real.experts;
    base.top_k = real.top_k;
    base.prefill_tokens = shape.prefill_tokens;
    base.decode_tokens = shape.decode_tokens;

    // The loss of `x`, or `None` once `max_evaluations` are spent: the budget is exact, so
    // a search stops mid-iteration rather than overrun it, keeping the points evaluated so far.
    let evaluations = std::cell::Cell::new(0usize);
    let f = |x: &[f64; PARAMS]| -> Option<f64> {
        if evaluations.get() >= max_evaluations {
            return None;
        }
        evaluations.set(evaluations.get() + 1);
        Some(loss(
            &evaluate(&from_coords(&base, x), shape, seed),
            &target,
        ))
    };

    let x0 = to_coords(&base);
    let best = crate::optimize::nelder_mead(&x0, 0.7, 1e-6, |x| {
        f(&x.try_into().expect("PARAMS coordinates"))
    });
    // With no evaluation at all, the start is the answer.
    let Some(best) = best else {
        let achieved = evaluate(&base, shape, seed);
        let mut spec = base;
        spec.prefill_tokens = start.prefill_tokens;
        spec.decode_tokens = start.decode_tokens;
        return FitResult {
            relative_error: relative_errors(&achieved, &target),
            spec,
            target,
            achieved,
            evaluations: 0,
        };
    };
    let mut spec = from_coords(&base, &best.0.try_into().expect("PARAMS coordinates"));
    let achieved = evaluate(&spec, shape, seed);
    // The fitted spec keeps the caller's request length, not the real trace's.
    spec.prefill_tokens = start.prefill_tokens;
    spec.decode_tokens = start.decode_tokens;
    FitResult {
        relative_error: relative_errors(&achieved, &target),
        spec,
        target,
        achieved,
        evaluations: evaluations.get(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::generate::load_spec;

    /// `max_evaluations` is exact: 0 returns the start (6 evaluations ran before), and fewer
    /// than the simplex's 6 vertices evaluate only as many; the search never overruns it.
    #[test]
    fn the_evaluation_budget_is_honoured_exactly() {
        let mut real_spec = load_spec("micro-moe").unwrap();
        real_spec.prefill_tokens = 2;
        real_spec.decode_tokens = 6;
        real_spec.zipf_s = 1.2;
        let g = Generator::new(&real_spec, 3);
        let mut stats = TraceStats::new(&real_spec.meta(3, 2)).unwrap();
        let mut ev = GeneratedEvent::default();
        for r in 0..2 {
            let mut events = g.request(r);
            while events.next_event(&mut ev) {
                stats.add(&ev.record);
            }
        }
        let real = stats.report();
        let start = load_spec("micro-moe").unwrap();
        let none = fit(&start, &real, 1, 0);
        assert_eq!(none.evaluations, 0);
        assert_eq!(
            (none.spec.p_stay, none.spec.temperature, none.spec.zipf_s),
            (start.p_stay, start.temperature, start.zipf_s),
            "no evaluation: the start is the answer"
        );
        assert!(none.achieved.gini.is_finite());
        for budget in [1, 3, 5, 6, 7, 8, 13, 40] {
            let r = fit(&start, &real, 1, budget);
            assert!(r.evaluations <= budget, "{budget}: {}", r.evaluations);
            if budget <= 13 {
                assert_eq!(r.evaluations, budget, "a short budget is spent in full");
            }
        }
    }
}
