//! `[serving]`: how many requests a step serves, the KV cache they keep, and speculative
//! decoding. The serde layer ([`ServingSpec`]) and its resolved form ([`Serving`]), which
//! `SimSetup::new` builds from a profile and a model.
//!
//! - **Continuous batching.** Up to `max_batch` requests are in service at once; a step (one
//!   pass through every MoE layer) carries one decode token of each (or the tokens a
//!   verification step checks), and a finished request's slot is refilled from the queue when
//!   the next step starts. A new request's prompt runs `alone` (its own steps, the decoding
//!   requests wait) or `chunked` into the decode steps (at most `scenario.prefill_chunk_tokens`
//!   prompt tokens per step, default the whole prompt).
//! - **KV cache.** Every request keeps the model's KV bytes for its context (prior context,
//!   prompt and emitted tokens so far); attention reads them every step at the KV tier's read
//!   bandwidth (or, for long prompts, is bound by its MACs at the primary unit's dense peak).
//!   `reserve` takes `max_batch` maximum contexts off the KV tier's expert budget up front;
//!   `shrink` lets the expert cache give back what the live contexts need, evicting as they grow.
//! - **Speculative decoding.** Before each verification step a draft source proposes `drafts`
//!   tokens per decoding request (an MTP head at a fixed cost per draft token, or a small model
//!   timed on a compute unit); the step routes and computes all of them, and the request keeps
//!   the accepted prefix plus one: position `i` is accepted with probability `acceptance[i]`
//!   given every earlier one was, drawn from the run's seed per (request, token).

use serde::{Deserialize, Serialize};

use crate::engine::TimeNs;
use crate::moe::kv::{KvFormat, KvShape};
use crate::quant::format::WeightFormat;
use crate::units::ceil_ns;

/// `[serving]` of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingSpec {
    /// Requests in service at once (continuous batching).
    #[serde(default = "one")]
    pub max_batch: u32,
    /// How a new request's prompt is scheduled.
    #[serde(default)]
    pub prefill: PrefillMode,
    /// The KV cache (none: its memory and attention's context cost are not modelled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<KvSpec>,
    /// Speculative decoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speculative: Option<SpeculativeSpec>,
}

fn one() -> u32 {
    1
}

impl Default for ServingSpec {
    fn default() -> ServingSpec {
        ServingSpec {
            max_batch: 1,
            prefill: PrefillMode::Alone,
            kv: None,
            speculative: None,
        }
    }
}

impl ServingSpec {
    /// Whether the section is absent (one request at a time, nothing else).
    pub fn is_default(&self) -> bool {
        *self == ServingSpec::default()
    }
}

/// How prompts share steps with decoding requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrefillMode {
    /// A prompt runs in steps of its own; decoding requests wait for it.
    #[default]
    Alone,
    /// Prompt chunks ride in the decode steps.
    Chunked,
}

/// How the KV cache shares memory with the expert cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KvBudget {
    /// `max_batch` maximum contexts are set aside before the expert cache is sized.
    #[default]
    Reserve,
    /// The expert cache uses what the live contexts leave, shrinking as they grow.
    Shrink,
}

/// `[serving.kv]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvSpec {
    /// Element format of the cache.
    #[serde(default)]
    pub format: KvFormat,
    /// The tier holding it (default: the primary unit's tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Reserve up front or shrink the expert cache.
    #[serde(default)]
    pub budget: KvBudget,
    /// The context each request may reach (llama.cpp's `-c` per slot; default: the model's
    /// limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_context_tokens: Option<u64>,
    /// Context every request already has when it arrives (a conversation's history), so long
    /// contexts can be studied with short traces.
    #[serde(default)]
    pub prior_context_tokens: u64,
}

/// `[serving.speculative]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeculativeSpec {
    /// Draft tokens proposed per verification step (0: no drafts, plain decoding).
    pub drafts: u32,
    /// Probability that draft position i is accepted given all before it were: one value for
    /// every position, or one per position.
    pub acceptance: Acceptance,
    /// Where drafts come from.
    pub draft: DraftSpec,
}

/// One acceptance probability or one per draft position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Acceptance {
    /// The same for every position.
    Each(f64),
    /// Per position.
    PerPosition(Vec<f64>),
}

/// A draft source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DraftSpec {
    /// A multi-token-prediction head: a fixed cost per draft step.
    Mtp {
        /// Time of one draft step (all requests of the step together).
        step_ns: f64,
    },
    /// A small dense model on a compute unit, timed by the unit's rates (a roofline over the
    /// requests of the step).
    Model {
        /// Its parameters.
        parameters: f64,
        /// Its weight format.
        format: WeightFormat,
        /// The unit it runs on (default: the primary unit).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unit: Option<String>,
    },
}

/// The KV cache, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Kv {
    /// The model's KV shape.
    pub shape: KvShape,
    /// Element format.
    pub format: KvFormat,
    /// The tier holding it.
    pub tier: usize,
    /// Reserve or shrink.
    pub budget: KvBudget,
    /// Context limit per request.
    pub max_context_tokens: u64,
    /// Context every request starts with.
    pub prior_context_tokens: u64,
    /// Read bandwidth of the KV tier.
    pub read_bytes_per_s: f64,
    /// The primary unit's dense peak (attention's arithmetic roof).
    pub peak_macs_per_s: f64,
    /// MoE layer steps the model's attention is spread over.
    pub moe_layers: u32,
    /// Bytes set aside for KV (reserve), over the batch.
    pub reserved_bytes: u64,
    /// Under `shrink`: the bytes the expert caches and live contexts share.
    pub shared_budget_bytes: u64,
}

impl Kv {
    /// Bytes one request keeps at `context` tokens.
    #[inline]
    pub fn bytes_at(&self, context: u64) -> u64 {
        self.shape.bytes_at(context, self.format)
    }

    /// Attention time per MoE layer step of `queries` tokens of one request whose first sees
    /// `context` earlier tokens: reading the cache (which then holds `context + queries`
    /// tokens) or its arithmetic, whichever is longer, spread over the MoE layers.
    pub fn attention_ns(&self, context: u64, queries: u64) -> (TimeNs, u64) {
        let bytes = self.bytes_at(context + queries);
        let memory_s = bytes as f64 / self.read_bytes_per_s;
        let mac_s = self.shape.macs(context, queries) as f64 / self.peak_macs_per_s;
        let per_layer = memory_s.max(mac_s) * 1e9 / self.moe_layers as f64;
        (ceil_ns(per_layer), bytes / self.moe_layers as u64)
    }
}

/// Speculative decoding, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Speculative {
    /// Draft tokens per verification step.
    pub drafts: u32,
    /// Acceptance probability per position (`drafts` values).
    pub acceptance: Vec<f64>,
    /// A draft step's fixed cost (launch, or the MTP step).
    pub step_launch_ns: TimeNs,
    /// A draft step's weight-reading time (batch 1).
    pub step_memory_ns: TimeNs,
    /// A draft step's arithmetic per request.
    pub step_mac_ns: TimeNs,
}

impl Speculative {
    /// One draft step for `requests` requests.
    #[inline]
    pub fn step_ns(&self, requests: u32) -> TimeNs {
        super::setup::roofline_ns(
            self.step_launch_ns,
            self.step_memory_ns,
            self.step_mac_ns,
            requests,
        )
    }

    /// How many of `proposed` drafts are accepted, given uniform draws in `[0, 1)` from `u`.
    pub fn accepted(&self, proposed: u32, mut u: impl FnMut() -> f64) -> u32 {
        let mut n = 0;
        while n < proposed && u() < self.acceptance[n as usize] {
            n += 1;
        }
        n
    }

    /// Expected tokens one full verification step emits: `sum_{j=0..d} prod_{i<j} a_i`
    /// (`(1 - a^(d+1)) / (1 - a)` for one probability `a`).
    pub fn expected_tokens(&self) -> f64 {
        let mut p = 1.0;
        let mut sum = 1.0;
        for &a in &self.acceptance {
            p *= a;
            sum += p;
        }
        sum
    }
}

/// `[serving]`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Serving {
    /// Requests in service at once.
    pub max_batch: u32,
    /// Prompt scheduling.
    pub prefill: PrefillMode,
    /// The KV cache, when modelled.
    pub kv: Option<Kv>,
    /// Speculative decoding, when on (and proposing at least one draft).
    pub speculative: Option<Speculative>,
}

impl Default for Serving {
    fn default() -> Serving {
        Serving {
            max_batch: 1,
            prefill: PrefillMode::Alone,
            kv: None,
            speculative: None,
        }
    }
}

impl Serving {
    /// Whether the run is the classic one: one request, one token per step, no KV model.
    pub fn is_single(&self) -> bool {
        self.max_batch == 1 && self.kv.is_none() && self.speculative.is_none()
    }
}

/// The largest batch a step may carry.
pub const MAX_BATCH: u32 = 4096;

/// The most draft tokens per step.
pub const MAX_DRAFTS: u32 = 64;

/// Resolves the speculative section given how a draft model is timed: `unit_cost(unit name,
/// format)` returns (launch, weights per second, peak MACs per second) of the named or primary
/// unit, or an error naming the units.
pub fn resolve_speculative(
    spec: &SpeculativeSpec,
    unit_cost: impl Fn(Option<&str>, WeightFormat) -> Result<(f64, f64, f64), String>,
) -> Result<Option<Speculative>, (&'static str, String)> {
    if spec.drafts > MAX_DRAFTS {
        return Err((
            "serving.speculative.drafts",
            format!("{}: must be at most {MAX_DRAFTS}", spec.drafts),
        ));
    }
    let acceptance = match &spec.acceptance {
        Acceptance::Each(a) => vec![*a; spec.drafts as usize],
        Acceptance::PerPosition(v) => {
            if v.len() != spec.drafts as usize {
                return Err((
                    "serving.speculative.acceptance",
                    format!(
                        "{} probabilities for {} drafts: give one, or one per draft position",
                        v.len(),
                        spec.drafts
                    ),
                ));
            }
            v.clone()
        }
    };
    if let Some(a) = acceptance
        .iter()
        .find(|a| !(a.is_finite() && (0.0..=1.0).contains(*a)))
    {
        return Err((
            "serving.speculative.acceptance",
            format!("{a}: a probability must be in [0, 1]"),
        ));
    }
    let (launch, memory, mac) = match &spec.draft {
        DraftSpec::Mtp { step_ns } => {
            if !(step_ns.is_finite() && *step_ns >= 0.0 && *step_ns <= 1e12) {
                return Err((
                    "serving.speculative.draft.step_ns",
                    format!("{step_ns}: must be in [0, 10^12] ns"),
                ));
            }
            (ceil_ns(*step_ns), 0, 0)
        }
        DraftSpec::Model {
            parameters,
            format,
            unit,
        } => {
            if !(parameters.is_finite() && *parameters >= 1.0 && *parameters <= 1e13) {
                return Err((
                    "serving.speculative.draft.parameters",
                    format!("{parameters}: must be in [1, 10^13]"),
                ));
            }
            let (launch, rate, peak) = unit_cost(unit.as_deref(), *format)
                .map_err(|r| ("serving.speculative.draft", r))?;
            (
                ceil_ns(launch),
                ceil_ns(parameters * 1e9 / rate),
                ceil_ns(parameters * 1e9 / peak),
            )
        }
    };
    if spec.drafts == 0 {
        return Ok(None);
    }
    Ok(Some(Speculative {
        drafts: spec.drafts,
        acceptance,
        step_launch_ns: launch,
        step_memory_ns: memory,
        step_mac_ns: mac,
    }))
}

/// Resolves `[serving]` for `moe` on `profile` (everything but the shared budget of `shrink`,
/// which the setup fills in once it has sized the caches). Errors are `(key, reason)`.
pub fn resolve(
    spec: &ServingSpec,
    profile: &crate::hardware::HardwareProfile,
    moe: &crate::moe::MoeSpec,
) -> Result<Serving, (&'static str, String)> {
    let e = |k: &'static str, r: String| Err((k, r));
    if spec.max_batch == 0 || spec.max_batch > MAX_BATCH {
        return e(
            "serving.max_batch",
            format!("{}: must be in 1..={MAX_BATCH}", spec.max_batch),
        );
    }
    let kv = match &spec.kv {
        None => None,
        Some(k) => {
            let shape = moe.kv;
            if !shape.is_known() {
                return e(
                    "serving.kv",
                    format!(
                        "model {} gives no attention widths (its [dense] states a parameter count); give [context] values_per_token in the model spec",
                        moe.name
                    ),
                );
            }
            let max = match (k.max_context_tokens, shape.max_tokens) {
                (Some(0), _) => {
                    return e("serving.kv.max_context_tokens", "must be at least 1".into());
                }
                (Some(n), Some(limit)) if n > limit => {
                    return e(
                        "serving.kv.max_context_tokens",
                        format!(
                            "{n} tokens is beyond model {}'s limit of {limit} ([context] max_tokens)",
                            moe.name
                        ),
                    );
                }
                (Some(n), _) => n,
                (None, Some(limit)) => limit,
                (None, None) => {
                    return e(
                        "serving.kv.max_context_tokens",
                        format!(
                            "model {} states no context limit ([context] max_tokens); give the context to plan for",
                            moe.name
                        ),
                    );
                }
            };
            if max > crate::moe::spec::MAX_PARAMS {
                return e("serving.kv.max_context_tokens", format!("{max}: too large"));
            }
            if k.prior_context_tokens >= max {
                return e(
                    "serving.kv.prior_context_tokens",
                    format!(
                        "{} leaves no room in a context of {max} tokens",
                        k.prior_context_tokens
                    ),
                );
            }
            let tier = match &k.tier {
                None => profile.compute_tier,
                Some(name) => profile.tier_index(name).ok_or_else(|| {
                    (
                        "serving.kv.tier",
                        format!(
                            "{} has no tier `{name}` (tiers: {})",
                            profile.name,
                            profile.tier_names()
                        ),
                    )
                })?,
            };
            let t = &profile.tiers[tier];
            let one = shape.bytes_at(max, k.format);
            let room = t.capacity_bytes - t.reserved_bytes;
            if one > room {
                return e(
                    "serving.kv.tier",
                    format!(
                        "the {} tier of {} ({} beside its reserved bytes) cannot hold one request's maximum context: {} at {max} tokens in {}",
                        t.name,
                        profile.name,
                        crate::units::format_bytes(room as f64),
                        crate::units::format_bytes(one as f64),
                        k.format.name()
                    ),
                );
            }
            let batch = one.saturating_mul(spec.max_batch as u64);
            if batch > room {
                return e(
                    "serving.max_batch",
                    format!(
                        "{} requests at their maximum context need {} of KV cache ({} each at {max} tokens), more than the {} tier's {}",
                        spec.max_batch,
                        crate::units::format_bytes(batch as f64),
                        crate::units::format_bytes(one as f64),
                        t.name,
                        crate::units::format_bytes(room as f64)
                    ),
                );
            }
            if k.budget == KvBudget::Shrink && tier != profile.compute_tier {
                return e(
                    "serving.kv.budget",
                    "shrink gives the expert cache's memory to the KV cache, so the KV cache must be in the primary unit's tier".into(),
                );
            }
            Some(Kv {
                shape,
                format: k.format,
                tier,
                budget: k.budget,
                max_context_tokens: max,
                prior_context_tokens: k.prior_context_tokens,
                read_bytes_per_s: t.read_bandwidth_bytes_per_s,
                peak_macs_per_s: profile.compute().dense_peak_macs_per_s,
                moe_layers: moe.n_moe_layers(),
                reserved_bytes: if k.budget == KvBudget::Reserve {
                    batch
                } else {
                    0
                },
                shared_budget_bytes: 0,
            })
        }
    };
    let speculative = match &spec.speculative {
        None => None,
        Some(sp) => resolve_speculative(sp, |unit, format| {
            let u = match unit {
                None => &profile.units[0],
                Some(name) => match profile.unit_index(name) {
                    Some(i) => &profile.units[i],
                    None => {
                        return Err(format!(
                            "{} has no compute unit `{name}` (units: {})",
                            profile.name,
                            profile.unit_names()
                        ));
                    }
                },
            };
            let Some(rate) = u.compute.format_weights_per_s(format) else {
                return Err(format!(
                    "{format} is the untimed quality reference; pick a deployable format for the draft model"
                ));
            };
            let class = format.compute_class().expect("a timed format has a class");
            Ok((u.compute.launch_ns, rate, u.compute.peak_macs_per_s(class)))
        })?,
    };
    Ok(Serving {
        max_batch: spec.max_batch,
        prefill: spec.prefill,
        kv,
        speculative,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(a: f64, d: u32) -> Speculative {
        Speculative {
            drafts: d,
            acceptance: vec![a; d as usize],
            step_launch_ns: 0,
            step_memory_ns: 0,
            step_mac_ns: 0,
        }
    }

    #[test]
    fn expected_tokens_is_the_geometric_sum() {
        for (a, d) in [(0.5, 1), (0.7, 3), (0.9, 4), (0.0, 2), (1.0, 3)] {
            let closed = if a == 1.0 {
                d as f64 + 1.0
            } else {
                (1.0 - f64::powi(a, d as i32 + 1)) / (1.0 - a)
            };
            assert!((spec(a, d).expected_tokens() - closed).abs() < 1e-12);
        }
    }

    #[test]
    fn acceptance_stops_at_the_first_rejection() {
        let s = spec(0.5, 4);
        let draws = [0.1, 0.2, 0.9, 0.0];
        let mut i = 0;
        let n = s.accepted(4, || {
            i += 1;
            draws[i - 1]
        });
        assert_eq!(n, 2);
        assert_eq!(i, 3, "no draw after the rejection");
    }

    #[test]
    fn bad_acceptance_names_the_key() {
        let bad = SpeculativeSpec {
            drafts: 2,
            acceptance: Acceptance::PerPosition(vec![0.5]),
            draft: DraftSpec::Mtp { step_ns: 1.0 },
        };
        let (key, _) = resolve_speculative(&bad, |_, _| unreachable!()).unwrap_err();
        assert_eq!(key, "serving.speculative.acceptance");
        let bad = SpeculativeSpec {
            drafts: 2,
            acceptance: Acceptance::Each(1.5),
            draft: DraftSpec::Mtp { step_ns: 1.0 },
        };
        assert_eq!(
            resolve_speculative(&bad, |_, _| unreachable!())
                .unwrap_err()
                .0,
            "serving.speculative.acceptance"
        );
    }
}
