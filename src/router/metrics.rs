//! Weight-free quality metrics of a routing decision against standard routing.
//!
//! Per (token, layer), with `p` the softmax of the original logits and `S` the standard top-k:
//! - *gate mass retained*: `p(chosen) / p(S)`, 1 when the router picks the standard set;
//! - *top-k agreement*: `|chosen ∩ S| / |S|`;
//! - *KL*: `KL(g̃_S ‖ g̃_chosen)` between the renormalised gate distributions (over all
//!   experts, zero outside each selection), both smoothed, `g̃ = (1 − δ) g + δ / E` with
//!   δ = 10⁻³, so that an expert dropped from the standard set costs a finite amount (about
//!   `g_i · ln(E · g_i / δ)`) and the standard selection scores exactly 0. Experts outside both
//!   selections contribute nothing, so the sum runs over their union only.
//!
//! Aggregates are exact means and percentiles (5th for retained mass and agreement, 95th for
//! KL) from fixed-bin histograms (10,000 bins, the percentile clamped to the observed range),
//! so memory does not grow with the trace. *Expert
//! utilisation* is the share of (layer, expert) pairs that receive at least 1 % of their layer's
//! selections.

use serde::Serialize;

use super::Selection;

/// The KL smoothing δ.
pub const KL_SMOOTHING: f64 = 1e-3;
const BINS: usize = 10_000;

/// A fixed-bin histogram over `[0, max]` with the exact mean.
#[derive(Debug, Clone)]
pub struct Histogram {
    max: f64,
    counts: Vec<u64>,
    /// Sum of the values in each bin: a percentile is the mean of its bin, exact when the bin
    /// holds one distinct value (agreement is a multiple of 1/k, mass retained is often 1).
    bin_sums: Vec<f64>,
    sum: f64,
    n: u64,
}

impl Histogram {
    /// A histogram over `[0, max]`.
    pub fn new(max: f64) -> Histogram {
        Histogram {
            max,
            counts: vec![0; BINS],
            bin_sums: vec![0.0; BINS],
            sum: 0.0,
            n: 0,
        }
    }

    /// Adds `x` (clamped into range).
    pub fn add(&mut self, x: f64) {
        let bin = ((x / self.max) * BINS as f64)
            .floor()
            .clamp(0.0, (BINS - 1) as f64) as usize;
        self.counts[bin] += 1;
        self.bin_sums[bin] += x;
        self.sum += x;
        self.n += 1;
    }

    /// Adds another histogram of the same range.
    pub fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        for (a, b) in self.bin_sums.iter_mut().zip(&o.bin_sums) {
            *a += b;
        }
        self.sum += o.sum;
        self.n += o.n;
    }

    /// The mean.
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.sum / self.n as f64
        }
    }

    /// The `q` quantile (0..1), as the mean of the values in its bin (within one bin width,
    /// 1/10,000 of the range, of the exact order statistic; exact for discrete values).
    pub fn quantile(&self, q: f64) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        let target = (q * self.n as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return self.bin_sums[i] / c as f64;
            }
        }
        f64::NAN
    }
}

/// The standard routing decision of one (token, layer), precomputed once per trace.
#[derive(Debug, Clone, Copy)]
pub struct StandardRef<'a> {
    /// The standard top-k, best first.
    pub experts: &'a [u16],
    /// Their renormalised gate weights.
    pub weights: &'a [f32],
    /// The largest logit (the top-1).
    pub top_logit: f32,
    /// `Σ_{i∈S} exp(l_i − top_logit)`: the standard set's softmax mass times the partition
    /// function, so that retained mass needs no pass over all experts.
    pub mass: f64,
}

impl StandardRef<'_> {
    /// `(top_logit, mass)` of a standard selection, best first.
    pub fn top_and_mass(logits: &[f32], experts: &[u16]) -> (f32, f64) {
        let top = experts.first().map_or(0.0, |&e| logits[e as usize]);
        (
            top,
            experts
                .iter()
                .map(|&e| ((logits[e as usize] - top) as f64).exp())
                .sum(),
        )
    }
}

/// Accumulates the quality metrics of one run.
#[derive(Debug, Clone)]
pub struct QualityAcc {
    experts: usize,
    retained: Histogram,
    agreement: Histogram,
    kl: Histogram,
    /// `[layer][expert]` selections.
    selections: Vec<u64>,
}

impl QualityAcc {
    /// An accumulator for `layers` × `experts`.
    pub fn new(layers: u32, experts: u32) -> QualityAcc {
        let kl_max = ((experts as f64) / KL_SMOOTHING).ln() + 1.0;
        QualityAcc {
            experts: experts as usize,
            retained: Histogram::new(1.0),
            agreement: Histogram::new(1.0),
            kl: Histogram::new(kl_max),
            selections: vec![0; layers as usize * experts as usize],
        }
    }

    /// Adds a decision known to equal the standard one (the standard router): 1, 1 and 0.
    pub fn add_standard(&mut self, layer: u32, chosen: &Selection) {
        let base = layer as usize * self.experts;
        for &x in &chosen.experts {
            self.selections[base + x as usize] += 1;
        }
        self.retained.add(1.0);
        self.agreement.add(1.0);
        self.kl.add(0.0);
    }

    /// Adds one decision: the token's `logits`, its standard decision and the router's
    /// `chosen` selection (with its weights). Costs O(k²), not O(experts).
    pub fn add(
        &mut self,
        layer: u32,
        logits: &[f32],
        standard: &StandardRef<'_>,
        chosen: &Selection,
    ) {
        let base = layer as usize * self.experts;
        for &x in &chosen.experts {
            self.selections[base + x as usize] += 1;
        }
        if chosen.experts == standard.experts && chosen.weights == standard.weights {
            self.retained.add(1.0);
            self.agreement.add(1.0);
            self.kl.add(0.0);
            return;
        }
        let chosen_mass: f64 = chosen
            .experts
            .iter()
            .map(|&e| ((logits[e as usize] - standard.top_logit) as f64).exp())
            .sum();
        self.retained.add((chosen_mass / standard.mass).min(1.0));
        let shared = chosen
            .experts
            .iter()
            .filter(|e| standard.experts.contains(e))
            .count();
        self.agreement
            .add(shared as f64 / standard.experts.len().max(1) as f64);
        self.kl.add(smoothed_kl(standard, chosen, self.experts));
    }

    /// Selections so far, `[layer][expert]`.
    pub fn selections(&self) -> &[u64] {
        &self.selections
    }

    /// The summary.
    pub fn summary(&self) -> QualitySummary {
        let layers = self.selections.len() / self.experts.max(1);
        let mut used = 0usize;
        for l in 0..layers {
            let row = &self.selections[l * self.experts..(l + 1) * self.experts];
            let total: u64 = row.iter().sum();
            used += row
                .iter()
                .filter(|&&c| total > 0 && c as f64 >= 0.01 * total as f64)
                .count();
        }
        QualitySummary {
            gate_mass_retained: self.retained.mean(),
            gate_mass_retained_p5: self.retained.quantile(0.05),
            topk_agreement: self.agreement.mean(),
            topk_agreement_p5: self.agreement.quantile(0.05),
            kl: self.kl.mean(),
            kl_p95: self.kl.quantile(0.95),
            utilisation: used as f64 / self.selections.len().max(1) as f64,
        }
    }
}

/// `KL(g̃_S ‖ g̃_chosen)` with both sides smoothed and renormalised over their selections.
fn smoothed_kl(standard: &StandardRef<'_>, chosen: &Selection, experts: usize) -> f64 {
    let uniform = KL_SMOOTHING / experts as f64;
    let smooth = |g: f64| (1.0 - KL_SMOOTHING) * g + uniform;
    let p_total: f64 = standard.weights.iter().map(|&w| w as f64).sum();
    let q_total: f64 = chosen.weights.iter().map(|&w| w as f64).sum();
    let q_of = |x: u16| {
        chosen
            .experts
            .iter()
            .position(|&c| c == x)
            .map_or(0.0, |j| chosen.weights[j] as f64 / q_total)
    };
    let mut kl = 0.0;
    for (&x, &w) in standard.experts.iter().zip(standard.weights) {
        let p = smooth(w as f64 / p_total);
        kl += p * (p / smooth(q_of(x))).ln();
    }
    // Chosen experts outside the standard set: p̃ = δ/E there.
    for (&x, &w) in chosen.experts.iter().zip(&chosen.weights) {
        if !standard.experts.contains(&x) {
            kl += uniform * (uniform / smooth(w as f64 / q_total)).ln();
        }
    }
    kl.max(0.0)
}

/// Aggregated quality metrics.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct QualitySummary {
    /// Mean gate mass retained.
    pub gate_mass_retained: f64,
    /// 5th percentile of the gate mass retained.
    pub gate_mass_retained_p5: f64,
    /// Mean top-k agreement with standard routing.
    pub topk_agreement: f64,
    /// 5th percentile of the top-k agreement.
    pub topk_agreement_p5: f64,
    /// Mean KL divergence (nats).
    pub kl: f64,
    /// 95th percentile of the KL divergence.
    pub kl_p95: f64,
    /// Share of (layer, expert) pairs with at least 1 % of their layer's selections.
    pub utilisation: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standard<'a>(logits: &[f32], s: &'a Selection) -> StandardRef<'a> {
        let (top_logit, mass) = StandardRef::top_and_mass(logits, &s.experts);
        StandardRef {
            experts: &s.experts,
            weights: &s.weights,
            top_logit,
            mass,
        }
    }

    #[test]
    fn identical_selection_is_perfect() {
        let mut q = QualityAcc::new(1, 4);
        let logits = [2.0, 1.0, 0.0, -1.0];
        let s = Selection {
            experts: vec![0, 1],
            weights: vec![0.7310586, 0.26894143],
        };
        q.add(0, &logits, &standard(&logits, &s), &s);
        let m = q.summary();
        assert!((m.gate_mass_retained - 1.0).abs() < 1e-12);
        assert_eq!(m.topk_agreement, 1.0);
        assert_eq!(m.kl, 0.0);
        assert_eq!(m.gate_mass_retained_p5, 1.0);
        assert_eq!(m.kl_p95, 0.0);
        assert_eq!(m.utilisation, 0.5);
    }

    #[test]
    fn swapped_expert_loses_mass_by_hand() {
        let mut q = QualityAcc::new(1, 4);
        let logits = [2.0f32, 1.0, 0.0, -1.0];
        let std = Selection {
            experts: vec![0, 1],
            weights: vec![0.7310586, 0.26894143],
        };
        let alt = Selection {
            experts: vec![0, 2],
            weights: vec![0.8807971, 0.11920292],
        };
        q.add(0, &logits, &standard(&logits, &std), &alt);
        let m = q.summary();
        let p: Vec<f64> = logits.iter().map(|&x| (x as f64).exp()).collect();
        assert!((m.gate_mass_retained - (p[0] + p[2]) / (p[0] + p[1])).abs() < 1e-9);
        assert_eq!(m.topk_agreement, 0.5);
        // Smoothed over all four experts: standard (0.731, 0.269, 0, 0), chosen (0.881, 0, 0.119, 0).
        let sm = |g: f64| (1.0 - KL_SMOOTHING) * g + KL_SMOOTHING / 4.0;
        let p = [sm(0.7310586), sm(0.26894143), sm(0.0), sm(0.0)];
        let q = [sm(0.8807971), sm(0.0), sm(0.11920292), sm(0.0)];
        let kl: f64 = p.iter().zip(&q).map(|(a, b)| a * (a / b).ln()).sum();
        assert!((m.kl - kl).abs() < 1e-6, "{} vs {kl}", m.kl);
    }

    #[test]
    fn same_set_in_another_order_costs_nothing() {
        let mut q = QualityAcc::new(1, 4);
        let logits = [2.0f32, 1.0, 0.0, -1.0];
        let std = Selection {
            experts: vec![0, 1],
            weights: vec![0.7310586, 0.26894143],
        };
        let swapped = Selection {
            experts: vec![1, 0],
            weights: vec![0.26894143, 0.7310586],
        };
        q.add(0, &logits, &standard(&logits, &std), &swapped);
        let m = q.summary();
        assert_eq!((m.gate_mass_retained, m.topk_agreement), (1.0, 1.0));
        assert!(m.kl.abs() < 1e-12, "{}", m.kl);
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::new(1.0);
        for i in 0..100 {
            h.add(i as f64 / 100.0);
        }
        assert_eq!(h.quantile(0.05), 0.04);
        assert_eq!(h.quantile(1.0), 0.99);
        assert!((h.mean() - 0.495).abs() < 1e-12);
    }
}
