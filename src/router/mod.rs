//! Which experts each token activates: the router plug-ins.
//!
//! A [`Router`] receives the router logits of one (token, layer), a read-only view of which
//! experts are resident ([`Residency`]), and keeps its own state; it returns the selected
//! experts with their gate weights ([`Selection`]). Routers are deterministic: ties go to the
//! lower expert id, and none of them draws random numbers.
//!
//! Gate weights are, by default, the softmax of the *original* logits renormalised over the
//! selected set, as Mixtral does; [`GateWeights`] selects the alternatives. One file per router,
//! one [`RouterKind`] with one `build` match.

mod cross_layer;
mod ema;
mod frequency_penalty;
mod hard_mask;
mod max_rank;
mod memory_aware;
pub mod metrics;
mod prob_bonus;
pub mod replay;
mod standard;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use cross_layer::CrossLayerRouter;
pub use ema::EmaRouter;
pub use frequency_penalty::FrequencyPenaltyRouter;
pub use hard_mask::HardMaskRouter;
pub use max_rank::MaxRankRouter;
pub use memory_aware::MemoryAwareRouter;
pub use prob_bonus::ProbBonusRouter;
pub use standard::StandardRouter;

/// What a router may know about the memory: for each expert of the layer being routed,
/// whether it is resident and in which fast tier, and whether a load needs an eviction.
///
/// A concrete view rather than a trait object: routers test residency once per expert per
/// call, and the test must inline to a load and a compare.
#[derive(Debug, Clone, Copy)]
pub struct Residency<'a> {
    source: ResidencySource<'a>,
    has_room: bool,
}

#[derive(Debug, Clone, Copy)]
enum ResidencySource<'a> {
    Nothing,
    /// Per expert, resident bytes (0 = not resident): one fast tier.
    Bytes(&'a [u64]),
    /// Per expert, the fast tier holding it (0 = fastest) or [`Residency::NOT_RESIDENT`].
    Tiers(&'a [u8]),
}

impl<'a> Residency<'a> {
    /// The tier code of a non-resident expert in [`Residency::from_tiers`].
    pub const NOT_RESIDENT: u8 = u8::MAX;

    /// Nothing is resident and there is always room (standard routing, tests).
    pub fn none() -> Residency<'static> {
        Residency {
            source: ResidencySource::Nothing,
            has_room: true,
        }
    }

    /// One fast tier: `resident_bytes[e]` is non-zero when expert `e` is resident.
    pub fn from_resident_bytes(resident_bytes: &'a [u64], has_room: bool) -> Residency<'a> {
        Residency {
            source: ResidencySource::Bytes(resident_bytes),
            has_room,
        }
    }

    /// Several fast tiers: `tiers[e]` is the tier holding expert `e` (0 = fastest) or
    /// [`Residency::NOT_RESIDENT`].
    pub fn from_tiers(tiers: &'a [u8], has_room: bool) -> Residency<'a> {
        Residency {
            source: ResidencySource::Tiers(tiers),
            has_room,
        }
    }

    /// Whether expert `e` (of the layer being routed) is resident in a fast tier.
    #[inline]
    pub fn is_resident(&self, e: u16) -> bool {
        match self.source {
            ResidencySource::Nothing => false,
            ResidencySource::Bytes(b) => b[e as usize] != 0,
            ResidencySource::Tiers(t) => t[e as usize] != Self::NOT_RESIDENT,
        }
    }

    /// The fast tier holding expert `e` (0 = fastest), if any.
    #[inline]
    pub fn tier(&self, e: u16) -> Option<u8> {
        match self.source {
            ResidencySource::Nothing => None,
            ResidencySource::Bytes(b) => (b[e as usize] != 0).then_some(0),
            ResidencySource::Tiers(t) => Some(t[e as usize]).filter(|&t| t != Self::NOT_RESIDENT),
        }
    }

    /// `out[e] = logits[e] + (resident_bonus if e is resident else other_bonus)`, in f64, for
    /// every expert (a `-inf` logit stays `-inf`). The residency source is matched once, so
    /// the loop vectorises.
    pub fn add_bonus(
        &self,
        logits: &[f32],
        resident_bonus: f64,
        other_bonus: f64,
        out: &mut Vec<f64>,
    ) {
        out.clear();
        match self.source {
            ResidencySource::Nothing => out.extend(logits.iter().map(|&x| x as f64 + other_bonus)),
            ResidencySource::Bytes(b) => out.extend(
                logits
                    .iter()
                    .zip(b)
                    .map(|(&x, &r)| x as f64 + if r != 0 { resident_bonus } else { other_bonus }),
            ),
            ResidencySource::Tiers(t) => out.extend(logits.iter().zip(t).map(|(&x, &r)| {
                x as f64
                    + if r != Self::NOT_RESIDENT {
                        resident_bonus
                    } else {
                        other_bonus
                    }
            })),
        }
    }

    /// Whether loading a non-resident expert would need no eviction (there is free room).
    #[inline]
    pub fn has_room(&self) -> bool {
        self.has_room
    }
}

/// The input of one routing decision.
#[derive(Debug, Clone, Copy)]
pub struct RouteInput<'a> {
    /// MoE layer.
    pub layer: u32,
    /// Router logits, one per expert. With a restricted trace (top-k ids only) the experts
    /// outside the recorded candidates hold `-inf`.
    pub logits: &'a [f32],
    /// Experts to select.
    pub top_k: usize,
    /// The selection of the previous layer for the same token, if known.
    pub previous_layer: Option<&'a [u16]>,
}

/// A routing decision: experts in rank order and their gate weights.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// Selected experts, best first.
    pub experts: Vec<u16>,
    /// Gate weights, one per selected expert.
    pub weights: Vec<f32>,
}

/// How gate weights are computed from the selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateWeights {
    /// Softmax of the original logits renormalised over the selection (Mixtral).
    #[default]
    Renormalized,
    /// Softmax of the original logits over all experts, not renormalised (Switch-style).
    Softmax,
    /// Softmax of the router's own ranking scores (e.g. logits plus the memory bonus),
    /// renormalised over the selection.
    Biased,
}

impl GateWeights {
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            GateWeights::Renormalized => "renormalized",
            GateWeights::Softmax => "softmax",
            GateWeights::Biased => "biased",
        }
    }
}

/// A router.
pub trait Router: Send + fmt::Debug {
    /// Selects experts for one (token, layer), given the memory state.
    fn route(&mut self, input: &RouteInput<'_>, residency: &Residency<'_>, out: &mut Selection);
    /// Scalar operations per call beyond the standard gate GEMV (bonuses, scores, history
    /// updates, predictor lookups), for the simulator to charge.
    fn extra_ops_per_call(&self, n_experts: usize, top_k: usize) -> u64;
    /// Whether the router reads [`RouteInput::previous_layer`] (the replay then keeps the
    /// selections of the current request's tokens).
    fn uses_previous_layer(&self) -> bool {
        false
    }
    /// Whether every selection is the standard top-k of the logits (the standard router), so
    /// that the quality metrics need no comparison.
    fn is_standard(&self) -> bool {
        false
    }
}

/// Selects a router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RouterKind {
    /// Top-k of the logits.
    Standard {},
    /// Cache-Prior: top-k of `logits + λ(t) · s · M`.
    MemoryAware {
        /// λ, the bonus strength (in units of the logit scale `s`).
        lambda: f64,
        /// M for a resident expert.
        #[serde(default = "one")]
        hot_bonus: f64,
        /// −M for an expert whose loading would evict a resident one.
        #[serde(default)]
        evict_penalty: f64,
        /// Annealing: λ(t) = min(λ, warmup_rate · t) with t the tokens routed so far; none = off.
        #[serde(default)]
        warmup_rate: Option<f64>,
        /// Gate weights from the original logits (default) or from the biased scores.
        #[serde(default)]
        gate: GateWeights,
    },
    /// Long-term preference: top-k of `α·R + β·H + γ·C`.
    Ema {
        /// Weight of the immediate softmax relevance R.
        alpha: f64,
        /// Weight of the history H (an EMA of past selections).
        beta: f64,
        /// Weight of the residency bonus C (1 when resident).
        gamma: f64,
        /// Decay of H per routed token.
        decay: f64,
    },
    /// Max-Rank: keep the standard top-J, fill the rest with resident experts within a rank limit.
    MaxRank {
        /// Standard experts always kept (J).
        keep: usize,
        /// Resident experts may be taken from ranks below this limit (1-based rank ≤ limit).
        rank_limit: usize,
    },
    /// Route only among resident experts (SwapMoE's masked gating, the λ → ∞ limit).
    HardMask {},
    /// Bonus for experts that often follow the previous layer's selection, learned online.
    CrossLayer {
        /// Bonus strength (in units of the logit scale `s`).
        lambda: f64,
    },
    /// Residency bonus on the post-softmax probabilities: top-k of `p + bonus · resident`.
    ProbBonus {
        /// Added to a resident expert's gate probability (0 to 1; 1 is the hard-mask limit).
        bonus: f64,
    },
    /// Logit penalty on non-resident experts, larger for rarely selected ones:
    /// top-k of `logits − λ · s · (1 − f) · not resident`.
    FrequencyPenalty {
        /// Penalty strength (in units of the logit scale `s`).
        lambda: f64,
    },
}

fn one() -> f64 {
    1.0
}

impl RouterKind {
    /// Checks every parameter against the model it routes for; the error names the field.
    /// Experiment files, sweep axes and `moesim route`'s flags all pass through here.
    pub fn validate(
        &self,
        shape: &crate::param::ModelShape,
    ) -> Result<(), crate::param::ParamError> {
        use crate::param::{ParamError, decay, int_within, non_negative, positive};
        match self {
            RouterKind::Standard {} | RouterKind::HardMask {} => Ok(()),
            RouterKind::MemoryAware {
                lambda,
                hot_bonus,
                evict_penalty,
                warmup_rate,
                gate: _,
            } => {
                non_negative("lambda", *lambda)?;
                non_negative("hot_bonus", *hot_bonus)?;
                non_negative("evict_penalty", *evict_penalty)?;
                if let Some(r) = warmup_rate {
                    positive("warmup_rate", *r)?;
                }
                Ok(())
            }
            RouterKind::Ema {
                alpha,
                beta,
                gamma,
                decay: d,
            } => {
                non_negative("alpha", *alpha)?;
                non_negative("beta", *beta)?;
                non_negative("gamma", *gamma)?;
                decay("decay", *d)?;
                if *alpha + *beta + *gamma == 0.0 {
                    return Err(ParamError::new(
                        "alpha",
                        alpha,
                        "alpha, beta and gamma are all 0: every expert would score the same",
                    ));
                }
                Ok(())
            }
            RouterKind::MaxRank { keep, rank_limit } => {
                let (k, e) = (shape.top_k as u64, shape.experts as u64);
                int_within("keep", *keep as u64, 0, k, &format!("at most top-{k}"))?;
                int_within(
                    "rank_limit",
                    *rank_limit as u64,
                    k,
                    e,
                    &format!("from top-{k} to the {e} experts"),
                )
            }
            RouterKind::ProbBonus { bonus } => {
                non_negative("bonus", *bonus)?;
                if *bonus > 1.0 {
                    return Err(ParamError::new(
                        "bonus",
                        bonus,
                        "must be at most 1 (a probability bonus of 1 already puts every resident expert first)",
                    ));
                }
                Ok(())
            }
            RouterKind::FrequencyPenalty { lambda } => {
                non_negative("lambda", *lambda)?;
                let (l, e) = (shape.layers as u64, shape.experts as u64);
                crate::units::check_working_bytes(
                    &format!("its selection counts for {l} layers x {e} experts"),
                    l.checked_mul(e).and_then(|x| x.checked_mul(8)),
                )
                .map(|_| ())
                .map_err(|why| ParamError::new("kind", "frequency-penalty", why))
            }
            RouterKind::CrossLayer { lambda } => {
                non_negative("lambda", *lambda)?;
                // Its table of co-selection counts: layers × experts² counters.
                let (l, e) = (shape.layers as u64, shape.experts as u64);
                let bytes = e
                    .checked_mul(e)
                    .and_then(|x| x.checked_mul(l))
                    .and_then(|x| x.checked_mul(8));
                crate::units::check_working_bytes(
                    &format!("its co-selection table for {l} layers x {e} experts"),
                    bytes,
                )
                .map(|_| ())
                .map_err(|why| ParamError::new("kind", "cross-layer", why))
            }
        }
    }

    /// Builds the router for a model of `layers` MoE layers and `experts` experts per layer;
    /// `logit_scale[l]` is the per-layer normaliser `s` (see [`replay::RoutePlan::scales`]).
    pub fn build(
        &self,
        layers: u32,
        experts: u32,
        logit_scale: &[f32],
        gate: GateWeights,
    ) -> Box<dyn Router> {
        match self {
            RouterKind::Standard {} => Box::new(StandardRouter::new(gate)),
            RouterKind::MemoryAware {
                lambda,
                hot_bonus,
                evict_penalty,
                warmup_rate,
                gate: g,
            } => Box::new(MemoryAwareRouter::new(
                *lambda,
                *hot_bonus,
                *evict_penalty,
                *warmup_rate,
                logit_scale.to_vec(),
                if *g == GateWeights::Renormalized {
                    gate
                } else {
                    *g
                },
            )),
            RouterKind::Ema {
                alpha,
                beta,
                gamma,
                decay,
            } => Box::new(EmaRouter::new(
                *alpha, *beta, *gamma, *decay, layers, experts, gate,
            )),
            RouterKind::MaxRank { keep, rank_limit } => {
                Box::new(MaxRankRouter::new(*keep, *rank_limit, gate))
            }
            RouterKind::HardMask {} => Box::new(HardMaskRouter::new(gate)),
            RouterKind::CrossLayer { lambda } => Box::new(CrossLayerRouter::new(
                *lambda,
                layers,
                experts,
                logit_scale.to_vec(),
                gate,
            )),
            RouterKind::ProbBonus { bonus } => Box::new(ProbBonusRouter::new(*bonus, gate)),
            RouterKind::FrequencyPenalty { lambda } => Box::new(FrequencyPenaltyRouter::new(
                *lambda,
                layers,
                experts,
                logit_scale.to_vec(),
                gate,
            )),
        }
    }

    /// The short name used in tables and CSV.
    pub fn name(&self) -> &'static str {
        match self {
            RouterKind::Standard {} => "standard",
            RouterKind::MemoryAware { .. } => "memory-aware",
            RouterKind::Ema { .. } => "ema",
            RouterKind::MaxRank { .. } => "max-rank",
            RouterKind::HardMask {} => "hard-mask",
            RouterKind::CrossLayer { .. } => "cross-layer",
            RouterKind::ProbBonus { .. } => "prob-bonus",
            RouterKind::FrequencyPenalty { .. } => "frequency-penalty",
        }
    }

    /// Every parameter, as `name=value` pairs separated by spaces (for CSV and reports).
    pub fn params(&self) -> String {
        match self {
            RouterKind::Standard {} | RouterKind::HardMask {} => String::new(),
            RouterKind::MemoryAware {
                lambda,
                hot_bonus,
                evict_penalty,
                warmup_rate,
                gate,
            } => {
                let mut s =
                    format!("lambda={lambda} hot_bonus={hot_bonus} evict_penalty={evict_penalty}");
                if let Some(r) = warmup_rate {
                    s.push_str(&format!(" warmup_rate={r}"));
                }
                if *gate != GateWeights::Renormalized {
                    s.push_str(&format!(" gate={}", gate.name()));
                }
                s
            }
            RouterKind::Ema {
                alpha,
                beta,
                gamma,
                decay,
            } => {
                format!("alpha={alpha} beta={beta} gamma={gamma} decay={decay}")
            }
            RouterKind::MaxRank { keep, rank_limit } => {
                format!("keep={keep} rank_limit={rank_limit}")
            }
            RouterKind::CrossLayer { lambda } | RouterKind::FrequencyPenalty { lambda } => {
                format!("lambda={lambda}")
            }
            RouterKind::ProbBonus { bonus } => format!("bonus={bonus}"),
        }
    }

    /// The swept bonus of this router (λ, or γ for EMA), if it has one.
    pub fn bonus(&self) -> Option<f64> {
        match self {
            RouterKind::MemoryAware { lambda, .. }
            | RouterKind::CrossLayer { lambda }
            | RouterKind::FrequencyPenalty { lambda } => Some(*lambda),
            RouterKind::ProbBonus { bonus } => Some(*bonus),
            RouterKind::Ema { gamma, .. } => Some(*gamma),
            _ => None,
        }
    }
}

/// Softmax of `logits` (with `-inf` entries getting 0).
pub fn softmax(logits: &[f32], out: &mut Vec<f32>) {
    out.clear();
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for &x in logits {
        let e = if x == f32::NEG_INFINITY {
            0.0
        } else {
            (x - max).exp()
        };
        out.push(e);
        sum += e;
    }
    for p in out.iter_mut() {
        *p /= sum;
    }
}

/// A ranking score: `f32` logits or `f64` biased scores.
pub trait Score: Copy + PartialOrd {
    /// The score of an excluded expert.
    const NEG_INFINITY: Self;
    /// Larger than every score.
    const INFINITY: Self;
}

impl Score for f32 {
    const NEG_INFINITY: f32 = f32::NEG_INFINITY;
    const INFINITY: f32 = f32::INFINITY;
}

impl Score for f64 {
    const NEG_INFINITY: f64 = f64::NEG_INFINITY;
    const INFINITY: f64 = f64::INFINITY;
}

/// Indices of the `k` largest `scores` (ties to the lower index), best first; `-inf` and NaN
/// entries are never selected, so fewer than `k` come back when fewer are finite.
///
/// A first, vectorisable pass splits the scores into `k` chunks and takes the smallest chunk
/// maximum: `k` distinct scores reach it, so the k-th largest does too, and only scores at or
/// above it can be selected. The second pass ranks those few.
pub fn top_k_by<T: Score>(scores: &[T], k: usize, out: &mut Vec<u16>) {
    let floor = kth_lower_bound(scores, k);
    // Blocks of 8: a branch-free mask of the scores reaching the floor, then only its set bits.
    let candidates = scores.chunks(8).enumerate().flat_map(|(b, block)| {
        let mut mask = 0u32;
        for (j, &x) in block.iter().enumerate() {
            mask |= ((x >= floor) as u32) << j;
        }
        std::iter::from_fn(move || {
            (mask != 0).then(|| {
                let j = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                (b * 8 + j, block[j])
            })
        })
    });
    top_k_indexed(candidates, k, out);
}

/// A lower bound of the k-th largest score (`-inf` when none is cheap to find).
fn kth_lower_bound<T: Score>(scores: &[T], k: usize) -> T {
    if k == 0 || scores.len() < 2 * k {
        return T::NEG_INFINITY;
    }
    let chunk = scores.len() / k;
    let mut floor = T::INFINITY;
    for c in scores.chunks_exact(chunk).take(k) {
        // Eight independent running maxima so the loop vectorises; NaN never wins a
        // comparison, so it cannot become a chunk maximum.
        let mut lanes = [T::NEG_INFINITY; 8];
        let mut blocks = c.chunks_exact(8);
        for block in &mut blocks {
            for (m, &x) in lanes.iter_mut().zip(block) {
                *m = if x > *m { x } else { *m };
            }
        }
        for (m, &x) in lanes.iter_mut().zip(blocks.remainder()) {
            *m = if x > *m { x } else { *m };
        }
        let max = lanes
            .iter()
            .fold(T::NEG_INFINITY, |m, &x| if x > m { x } else { m });
        floor = if max < floor { max } else { floor };
    }
    floor
}

/// [`top_k_by`] over scores computed on the fly (expert `i` is the `i`-th item), so that a
/// router need not store them.
#[inline]
pub fn top_k_of<T: Score>(scores: impl Iterator<Item = T>, k: usize, out: &mut Vec<u16>) {
    top_k_indexed(scores.enumerate(), k, out);
}

/// Top-k of `(expert, score)` items in increasing expert order. One compare per item against
/// the current k-th score; the rare item that beats it is insertion-sorted into a small array
/// on the stack (up to 32 slots; larger k falls back to a vector).
// `!(x > t)` rather than `x <= t`: it is also true for NaN, which must never be selected.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
#[inline]
fn top_k_indexed<T: Score>(items: impl Iterator<Item = (usize, T)>, k: usize, out: &mut Vec<u16>) {
    const SLOTS: usize = 32;
    out.clear();
    if k == 0 {
        return;
    }
    if k > SLOTS {
        let mut vals: Vec<T> = Vec::with_capacity(k + 1);
        let mut threshold = T::NEG_INFINITY;
        for (i, x) in items {
            // Strictly greater: an equal score arrives later, so the lower index wins the tie.
            if !(x > threshold) {
                continue;
            }
            let pos = vals.partition_point(|&v| !(x > v));
            vals.insert(pos, x);
            out.insert(pos, i as u16);
            if vals.len() > k {
                vals.pop();
                out.pop();
            }
            if vals.len() == k {
                threshold = vals[k - 1];
            }
        }
        return;
    }
    let mut vals = [T::NEG_INFINITY; SLOTS];
    let mut idx = [0u16; SLOTS];
    let mut len = 0;
    let mut threshold = T::NEG_INFINITY;
    for (i, x) in items {
        // Strictly greater: an equal score arrives later, so the lower index wins the tie.
        if !(x > threshold) {
            continue;
        }
        // When full, the last slot is dropped: start from it.
        let mut pos = len.min(k - 1);
        while pos > 0 && x > vals[pos - 1] {
            vals[pos] = vals[pos - 1];
            idx[pos] = idx[pos - 1];
            pos -= 1;
        }
        vals[pos] = x;
        idx[pos] = i as u16;
        if len < k {
            len += 1;
        }
        if len == k {
            threshold = vals[k - 1];
        }
    }
    out.extend_from_slice(&idx[..len]);
}

/// Fills `sel.weights` for `sel.experts` from `logits` (original) or `scores` (biased).
pub fn gate_weights(mode: GateWeights, logits: &[f32], scores: &[f32], sel: &mut Selection) {
    sel.weights.clear();
    let source = if mode == GateWeights::Biased {
        scores
    } else {
        logits
    };
    match mode {
        GateWeights::Renormalized | GateWeights::Biased => {
            let max = sel
                .experts
                .iter()
                .map(|&e| source[e as usize])
                .fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for &e in &sel.experts {
                let w = (source[e as usize] - max).exp();
                sel.weights.push(w);
                sum += w;
            }
            for w in sel.weights.iter_mut() {
                *w /= sum;
            }
        }
        GateWeights::Softmax => {
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = logits
                .iter()
                .map(|&x| {
                    if x == f32::NEG_INFINITY {
                        0.0
                    } else {
                        (x - max).exp()
                    }
                })
                .sum();
            for &e in &sel.experts {
                sel.weights.push((logits[e as usize] - max).exp() / sum);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_ties_and_masks() {
        let mut out = Vec::new();
        top_k_by(&[1.0, 3.0, 3.0, f32::NEG_INFINITY], 2, &mut out);
        assert_eq!(out, [1, 2]);
        top_k_by(&[f32::NEG_INFINITY, 0.5, f32::NEG_INFINITY], 2, &mut out);
        assert_eq!(out, [1]);
        top_k_by(&[2.0f64, f64::NAN, 2.0, 5.0, 2.0], 3, &mut out);
        assert_eq!(out, [3, 0, 2]);
        top_k_by(&[1.0f32, 2.0], 0, &mut out);
        assert!(out.is_empty());
        // The vector fallback for k above the stack slots.
        let scores: Vec<f32> = (0..100).map(|i| ((i * 37) % 50) as f32).collect();
        top_k_by(&scores, 40, &mut out);
        let mut reference: Vec<u16> = (0..100).collect();
        reference.sort_by(|&a, &b| scores[b as usize].partial_cmp(&scores[a as usize]).unwrap());
        assert_eq!(out, reference[..40]);
    }

    #[test]
    fn gate_weights_modes() {
        let logits = [0.0f32, (3.0f32).ln(), 0.0, 0.0];
        let mut sel = Selection {
            experts: vec![1, 0],
            weights: vec![],
        };
        gate_weights(GateWeights::Renormalized, &logits, &logits, &mut sel);
        assert!((sel.weights[0] - 0.75).abs() < 1e-6 && (sel.weights[1] - 0.25).abs() < 1e-6);
        gate_weights(GateWeights::Softmax, &logits, &logits, &mut sel);
        assert!((sel.weights[0] - 0.5).abs() < 1e-6 && (sel.weights[1] - 1.0 / 6.0).abs() < 1e-6);
    }
}
