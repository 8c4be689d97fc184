//! Trace characterisation, computed in one streaming pass.
//!
//! Per layer: expert popularity (share, Gini, entropy), the reuse-distance distribution,
//! adjacent-token overlap of the selected sets, the mean top-1 gate weight, cross-layer
//! co-selection, and the prefill/decode split. Memory is bounded by the layer count, the expert
//! count and the longest request, never by the trace length.
//!
//! Definitions:
//! - *share* of expert e at layer l: selections of e / all selections at l.
//! - *Gini* over the per-expert selection counts of a layer (0 = uniform, → 1 = one expert).
//! - *entropy* of the share distribution in bits; *normalised entropy* divides by log2(E).
//! - *reuse distance* of a selection: the number of distinct other experts selected at that
//!   layer since this expert's previous selection in the same request (its LRU stack depth, so
//!   an LRU cache of C experts per layer hits exactly the selections with distance < C when
//!   experts are looked up one at a time); the first selection in a request is *cold*.
//! - *adjacent-token overlap*: |S_t ∩ S_prev| / |S_t| between consecutive records of the same
//!   (request, phase, layer) stream.
//! - *co-selection* `C_l[i][j]`: tokens that selected i at layer l and j at layer l + 1 (same
//!   request and position); reported as P(j at l+1 | i at l) and its lift over P(j at l+1).

use serde::Serialize;

use super::native::TraceReader;
use super::token_memory::TokenMemory;
use super::{Phase, RoutingRecord, TraceMeta};
use crate::error::{Error, InputError, Result};

/// Streams the native trace at `path` through [`TraceStats`].
pub fn stats_of_path(path: &std::path::Path) -> Result<StatsReport> {
    let reader = TraceReader::open(path)?;
    stats_of(&path.display().to_string(), reader)
}

/// Streams a native trace from `input` through [`TraceStats`]; `label` names it in errors.
pub fn stats_of_reader(label: &str, input: impl std::io::Read) -> Result<StatsReport> {
    stats_of(label, TraceReader::new(label.to_string(), input)?)
}

fn stats_of<R: std::io::Read>(label: &str, mut reader: TraceReader<R>) -> Result<StatsReport> {
    let mut stats =
        TraceStats::new(reader.meta()).map_err(|r| Error::Input(InputError::new(label, r)))?;
    let mut r = RoutingRecord::default();
    while reader.next_record(&mut r)? {
        stats.add(&r);
    }
    Ok(stats.report())
}

/// Streaming accumulator of trace statistics.
#[derive(Debug, Clone)]
pub struct TraceStats {
    layers: usize,
    experts: usize,
    top_k: usize,
    per_layer: Vec<LayerAcc>,
    /// `[layer][i][j]` for layer pairs (l, l+1).
    coselect: Vec<u64>,
    request: Option<u32>,
    /// The current request's selections, to join a token's consecutive layers.
    tokens: TokenMemory,
    prefill_events: u64,
    decode_events: u64,
    requests: u64,
}

#[derive(Debug, Clone)]
struct LayerAcc {
    events: u64,
    counts: Vec<u64>,
    /// LRU stack of the current request, most recent first.
    stack: Vec<u16>,
    /// Histogram of reuse distances 0..E-1, then cold.
    reuse: Vec<u64>,
    overlap_sum: f64,
    overlap_n: u64,
    top1_sum: f64,
    top1_n: u64,
    /// Previous selection in the current (request, phase) stream.
    prev: Vec<u16>,
    prev_phase: Option<Phase>,
}

impl TraceStats {
    /// The bytes [`TraceStats::new`] allocates for traces shaped like `meta` (`None` when they
    /// cannot be counted): per layer, the expert counts, the LRU stack and the reuse histogram;
    /// per pair of consecutive layers, the co-selection counts of every pair of experts, which
    /// dominate (E² per layer pair).
    pub fn working_bytes(meta: &TraceMeta) -> Option<u64> {
        let (l, e, k) = (meta.layers as u64, meta.experts as u64, meta.top_k as u64);
        let per_layer = (e.checked_mul(8)?)
            .checked_add((e + 1).checked_mul(8)?)?
            .checked_add(e.checked_mul(2)?)?
            .checked_add(k.checked_mul(2)?)?
            .checked_add(std::mem::size_of::<LayerAcc>() as u64)?;
        let coselect = l
            .saturating_sub(1)
            .checked_mul(e)?
            .checked_mul(e)?
            .checked_mul(8)?;
        l.checked_mul(per_layer)?.checked_add(coselect)
    }

    /// An empty accumulator for traces shaped like `meta`. Refuses a shape whose accumulators
    /// would take more than [`crate::units::MAX_WORKING_BYTES`] (a header may declare 65,536
    /// layers of 256 experts, whose co-selection counts alone are 34 GB), saying why.
    pub fn new(meta: &TraceMeta) -> std::result::Result<TraceStats, String> {
        crate::units::check_working_bytes(
            &format!(
                "the statistics of {} layers x {} experts (co-selection counts of every pair of experts in consecutive layers)",
                meta.layers, meta.experts
            ),
            TraceStats::working_bytes(meta),
        )?;
        let (l, e) = (meta.layers as usize, meta.experts as usize);
        Ok(TraceStats {
            layers: l,
            experts: e,
            top_k: meta.top_k as usize,
            per_layer: (0..l)
                .map(|_| LayerAcc {
                    events: 0,
                    counts: vec![0; e],
                    stack: Vec::with_capacity(e),
                    reuse: vec![0; e + 1],
                    overlap_sum: 0.0,
                    overlap_n: 0,
                    top1_sum: 0.0,
                    top1_n: 0,
                    prev: Vec::with_capacity(meta.top_k as usize),
                    prev_phase: None,
                })
                .collect(),
            coselect: vec![0; l.saturating_sub(1) * e * e],
            request: None,
            tokens: TokenMemory::new(meta.layers, meta.top_k),
            prefill_events: 0,
            decode_events: 0,
            requests: 0,
        })
    }

    /// Adds one (validated, in-order) record.
    pub fn add(&mut self, r: &RoutingRecord) {
        self.add_parts(
            r.request, r.phase, r.position, r.layer, &r.experts, &r.weights,
        );
    }

    /// Adds one record given by its parts (validated, in order).
    pub fn add_parts(
        &mut self,
        request: u32,
        phase: Phase,
        position: u32,
        layer: u32,
        experts: &[u16],
        weights: &[f32],
    ) {
        let r = Parts {
            request,
            phase,
            position,
            layer,
            experts,
            weights,
        };
        if self.request != Some(r.request) {
            self.request = Some(r.request);
            self.requests += 1;
            for acc in &mut self.per_layer {
                acc.stack.clear();
                acc.prev.clear();
                acc.prev_phase = None;
            }
            self.tokens.clear();
        }
        match r.phase {
            Phase::Prefill => self.prefill_events += 1,
            Phase::Decode => self.decode_events += 1,
        }
        let layer = r.layer as usize;
        let e_count = self.experts;
        let acc = &mut self.per_layer[layer];
        acc.events += 1;
        for &e in r.experts {
            acc.counts[e as usize] += 1;
            // Move e to the top of the LRU stack, shifting the entries above its old depth.
            let stack = &mut acc.stack;
            let depth = match stack.iter().position(|&x| x == e) {
                Some(depth) => {
                    acc.reuse[depth] += 1;
                    depth
                }
                None => {
                    acc.reuse[e_count] += 1;
                    stack.push(e);
                    stack.len() - 1
                }
            };
            for i in (1..=depth).rev() {
                stack[i] = stack[i - 1];
            }
            stack[0] = e;
        }
        if acc.prev_phase == Some(r.phase) && !acc.prev.is_empty() {
            let shared = r.experts.iter().filter(|e| acc.prev.contains(e)).count();
            acc.overlap_sum += shared as f64 / r.experts.len() as f64;
            acc.overlap_n += 1;
        }
        acc.prev.clear();
        acc.prev.extend_from_slice(r.experts);
        acc.prev_phase = Some(r.phase);
        if let Some(&w) = r.weights.first() {
            acc.top1_sum += w as f64;
            acc.top1_n += 1;
        }

        // Co-selection with the same token at the previous layer.
        if layer > 0
            && let Some(prev_sel) = self.tokens.get(r.layer - 1, r.position)
        {
            let base = (layer - 1) * e_count * e_count;
            for &i in prev_sel {
                for &j in r.experts {
                    self.coselect[base + i as usize * e_count + j as usize] += 1;
                }
            }
        }
        if layer + 1 < self.layers {
            self.tokens.record(r.layer, r.position, r.experts);
        }
    }

    /// Tokens that selected `i` at layer `l` and `j` at layer `l + 1`.
    pub fn coselect_count(&self, l: usize, i: u16, j: u16) -> u64 {
        let e = self.experts;
        self.coselect[l * e * e + i as usize * e + j as usize]
    }

    /// The finished report.
    pub fn report(&self) -> StatsReport {
        let mut layers = Vec::with_capacity(self.layers);
        for (l, acc) in self.per_layer.iter().enumerate() {
            let accesses: u64 = acc.counts.iter().sum();
            let shares: Vec<f64> = acc
                .counts
                .iter()
                .map(|&c| {
                    if accesses > 0 {
                        c as f64 / accesses as f64
                    } else {
                        0.0
                    }
                })
                .collect();
            let entropy_bits = -shares
                .iter()
                .filter(|&&p| p > 0.0)
                .map(|p| p * p.log2())
                .sum::<f64>();
            let reuse_warm: u64 = acc.reuse[..self.experts].iter().sum();
            let reuse_mean = if reuse_warm > 0 {
                acc.reuse[..self.experts]
                    .iter()
                    .enumerate()
                    .map(|(d, &n)| d as f64 * n as f64)
                    .sum::<f64>()
                    / reuse_warm as f64
            } else {
                f64::NAN
            };
            let (coselect_top, max_lift) = if l + 1 < self.layers {
                self.coselect_summary(l)
            } else {
                (Vec::new(), f64::NAN)
            };
            layers.push(LayerStats {
                layer: l as u32,
                events: acc.events,
                accesses,
                shares,
                gini: gini(&acc.counts),
                entropy_bits,
                entropy_norm: if self.experts > 1 {
                    entropy_bits / (self.experts as f64).log2()
                } else {
                    0.0
                },
                adjacent_overlap: ratio(acc.overlap_sum, acc.overlap_n),
                top1_weight: ratio(acc.top1_sum, acc.top1_n),
                reuse_histogram: acc.reuse.clone(),
                reuse_mean,
                cold_fraction: if accesses > 0 {
                    acc.reuse[self.experts] as f64 / accesses as f64
                } else {
                    f64::NAN
                },
                coselect_top,
                coselect_max_lift: max_lift,
            });
        }
        let mean = |f: &dyn Fn(&LayerStats) -> f64| {
            let v: Vec<f64> = layers.iter().map(f).filter(|x| x.is_finite()).collect();
            if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let summary = Summary {
            requests: self.requests,
            events: self.prefill_events + self.decode_events,
            prefill_events: self.prefill_events,
            decode_events: self.decode_events,
            gini: mean(&|s| s.gini),
            entropy_norm: mean(&|s| s.entropy_norm),
            adjacent_overlap: mean(&|s| s.adjacent_overlap),
            top1_weight: mean(&|s| s.top1_weight),
            reuse_mean: mean(&|s| s.reuse_mean),
            coselect_max_lift: mean(&|s| s.coselect_max_lift),
        };
        StatsReport {
            experts: self.experts as u32,
            top_k: self.top_k as u32,
            summary,
            layers,
        }
    }

    /// Top co-selected pairs (by conditional probability) and the largest lift, for layers l → l+1.
    fn coselect_summary(&self, l: usize) -> (Vec<CoSelection>, f64) {
        let e = self.experts;
        let m = &self.coselect[l * e * e..(l + 1) * e * e];
        let total: u64 = m.iter().sum();
        if total == 0 {
            return (Vec::new(), f64::NAN);
        }
        let row_sums: Vec<u64> = (0..e).map(|i| m[i * e..(i + 1) * e].iter().sum()).collect();
        let col_sums: Vec<u64> = (0..e).map(|j| (0..e).map(|i| m[i * e + j]).sum()).collect();
        let mut pairs = Vec::new();
        let mut max_lift = 0.0f64;
        for i in 0..e {
            if row_sums[i] == 0 {
                continue;
            }
            for j in 0..e {
                let n = m[i * e + j];
                if n == 0 {
                    continue;
                }
                let p_cond = n as f64 / row_sums[i] as f64;
                let p_j = col_sums[j] as f64 / total as f64;
                let lift = p_cond / p_j;
                // Only pairs with enough support count towards the maximum lift.
                if n >= 20 {
                    max_lift = max_lift.max(lift);
                }
                pairs.push(CoSelection {
                    from: i as u16,
                    to: j as u16,
                    count: n,
                    p_next_given_this: p_cond,
                    lift,
                });
            }
        }
        pairs.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.from.cmp(&b.from))
                .then(a.to.cmp(&b.to))
        });
        pairs.truncate(e.min(16));
        (pairs, if max_lift > 0.0 { max_lift } else { f64::NAN })
    }
}

/// A borrowed view of a record's fields.
struct Parts<'a> {
    request: u32,
    phase: Phase,
    position: u32,
    layer: u32,
    experts: &'a [u16],
    weights: &'a [f32],
}

fn ratio(sum: f64, n: u64) -> f64 {
    if n > 0 { sum / n as f64 } else { f64::NAN }
}

/// Gini coefficient of non-negative counts.
pub fn gini(counts: &[u64]) -> f64 {
    let n = counts.len();
    let total: u64 = counts.iter().sum();
    if n == 0 || total == 0 {
        return f64::NAN;
    }
    let mut sorted = counts.to_vec();
    sorted.sort_unstable();
    let weighted: f64 = sorted
        .iter()
        .enumerate()
        .map(|(i, &x)| (i + 1) as f64 * x as f64)
        .sum();
    2.0 * weighted / (n as f64 * total as f64) - (n as f64 + 1.0) / n as f64
}

/// The report of `trace stats`.
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    /// Experts per layer.
    pub experts: u32,
    /// Top-k.
    pub top_k: u32,
    /// Means over layers and counts.
    pub summary: Summary,
    /// Per layer.
    pub layers: Vec<LayerStats>,
}

/// Trace-wide figures: counts, and unweighted means over layers.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Requests.
    pub requests: u64,
    /// Routing events.
    pub events: u64,
    /// Prefill events.
    pub prefill_events: u64,
    /// Decode events.
    pub decode_events: u64,
    /// Mean popularity Gini.
    pub gini: f64,
    /// Mean normalised entropy.
    pub entropy_norm: f64,
    /// Mean adjacent-token overlap.
    pub adjacent_overlap: f64,
    /// Mean top-1 gate weight (NaN without weights).
    pub top1_weight: f64,
    /// Mean reuse distance of warm selections.
    pub reuse_mean: f64,
    /// Mean of each layer pair's largest co-selection lift.
    pub coselect_max_lift: f64,
}

/// Statistics of one layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerStats {
    /// Layer.
    pub layer: u32,
    /// Routing events.
    pub events: u64,
    /// Expert selections.
    pub accesses: u64,
    /// Share of selections per expert.
    pub shares: Vec<f64>,
    /// Popularity Gini.
    pub gini: f64,
    /// Entropy of the shares in bits.
    pub entropy_bits: f64,
    /// Entropy over log2(experts).
    pub entropy_norm: f64,
    /// Mean adjacent-token overlap.
    pub adjacent_overlap: f64,
    /// Mean top-1 gate weight.
    pub top1_weight: f64,
    /// Reuse distances 0..E-1, then cold selections.
    pub reuse_histogram: Vec<u64>,
    /// Mean reuse distance of warm selections.
    pub reuse_mean: f64,
    /// Cold selections over all selections.
    pub cold_fraction: f64,
    /// The most frequent (this layer → next layer) pairs.
    pub coselect_top: Vec<CoSelection>,
    /// Largest lift P(j|i)/P(j) among pairs seen at least 20 times.
    pub coselect_max_lift: f64,
}

/// A co-selected pair of experts in consecutive layers.
#[derive(Debug, Clone, Serialize)]
pub struct CoSelection {
    /// Expert at layer l.
    pub from: u16,
    /// Expert at layer l + 1.
    pub to: u16,
    /// Tokens that selected both.
    pub count: u64,
    /// P(to at l+1 | from at l).
    pub p_next_given_this: f64,
    /// The conditional probability over P(to at l+1).
    pub lift: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(layers: u32, experts: u32, top_k: u32) -> TraceMeta {
        TraceMeta {
            layers,
            experts,
            top_k,
            logits: false,
            model: None,
            source: None,
            generator: None,
        }
    }

    fn rec(request: u32, position: u32, layer: u32, experts: &[u16]) -> RoutingRecord {
        RoutingRecord {
            request,
            phase: Phase::Decode,
            position,
            layer,
            experts: experts.to_vec(),
            weights: vec![],
            logits: vec![],
            token: None,
        }
    }

    /// Shapes a header may declare: the accumulators are sized before allocating, and a
    /// shape whose co-selection counts exceed the 8 GiB limit is refused with the figure
    /// (65,536 layers x 256 experts aborted the process on a 34 GB allocation).
    #[test]
    fn accumulators_are_sized_before_allocating() {
        for (layers, experts, fits, needle) in [
            (32, 8, true, ""),
            (61, 384, true, ""),
            (
                65536,
                256,
                false,
                "65536 layers x 256 experts (co-selection counts of every pair of experts in consecutive layers) would need 34.",
            ),
            (2, 65536, false, "would need 34."),
            (65536, 16, true, ""),
            (1, 65536, true, ""),
        ] {
            let m = meta(layers, experts, 2);
            let bytes = TraceStats::working_bytes(&m).unwrap();
            assert!(bytes >= (layers as u64 - 1) * (experts as u64).pow(2) * 8);
            match TraceStats::new(&m) {
                Ok(_) => assert!(fits, "{layers} x {experts}"),
                Err(e) => assert!(!fits && e.contains(needle), "{layers} x {experts}: {e}"),
            }
        }
    }

    #[test]
    fn gini_extremes() {
        assert_eq!(gini(&[5, 5, 5, 5]), 0.0);
        assert!((gini(&[0, 0, 0, 8]) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn reuse_overlap_and_coselection_by_hand() {
        let m = meta(2, 4, 2);
        let mut s = TraceStats::new(&m).unwrap();
        // Token-major: (pos 0: L0 {0,1}, L1 {2,3}), (pos 1: L0 {1,2}, L1 {2,0}), (pos 2: L0 {0,3}, L1 {2,3})
        for r in [
            rec(0, 0, 0, &[0, 1]),
            rec(0, 0, 1, &[2, 3]),
            rec(0, 1, 0, &[1, 2]),
            rec(0, 1, 1, &[2, 0]),
            rec(0, 2, 0, &[0, 3]),
            rec(0, 2, 1, &[2, 3]),
        ] {
            s.add(&r);
        }
        let rep = s.report();
        let l0 = &rep.layers[0];
        // Layer 0 accesses: 0 c, 1 c, 1 (stack [1,0]) d0, 2 c, 0 (stack [2,1,0]) d2, 3 c.
        assert_eq!(l0.reuse_histogram, vec![1, 0, 1, 0, 4]);
        // Overlaps: {1,2} vs {0,1} = 1/2; {0,3} vs {1,2} = 0.
        assert!((l0.adjacent_overlap - 0.25).abs() < 1e-12);
        // Co-selection from L0 to L1: pos0 {0,1}x{2,3}, pos1 {1,2}x{2,0}, pos2 {0,3}x{2,3}.
        assert_eq!(s.coselect_count(0, 0, 2), 2);
        assert_eq!(s.coselect_count(0, 1, 2), 2);
        assert_eq!(s.coselect_count(0, 3, 3), 1);
        assert_eq!(s.coselect_count(0, 2, 3), 0);
        let total: u64 = (0..4)
            .flat_map(|i| (0..4).map(move |j| (i, j)))
            .map(|(i, j)| s.coselect_count(0, i, j))
            .sum();
        assert_eq!(total, 12, "3 tokens x 2 x 2 pairs");
        assert_eq!(rep.summary.requests, 1);
        assert_eq!(rep.summary.decode_events, 6);
    }
}
