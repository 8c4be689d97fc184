//! The eviction-policy plug-in interface: [`EvictionPolicy`], [`PolicyKind`] and its one
//! `build` match.
//!
//! # Contract
//!
//! A policy sees only the order of events on one cache, never time, bytes or hardware.
//! [`ExpertCache`](super::ExpertCache) drives it, for every lookup of object `x`:
//!
//! 1. `begin_event()` once per event (an atomic top-k selection, or a single access in
//!    sequential semantics), before its lookups;
//! 2. `on_hit(x)` if `x` is resident, otherwise `on_miss(x)`; exactly one of the two per lookup;
//! 3. after a miss: `admit(x)`; if admitted, `evict(protected)` zero or more times until `x`
//!    fits, then `on_insert(x)`.
//!
//! An insertion without a lookup (a promotion or demotion in a tiered hierarchy) calls
//! `begin_insert(x)`, then `admit`, `evict` and `on_insert` as after a miss.
//!
//! `evict` chooses a resident object not in `protected` (the event's own selection), forgets
//! it and returns it; `None` means every resident is protected. `remove(x)` forgets a resident
//! object the cache drops for another reason (demotion to a slower tier). `reset()` forgets
//! everything. Object ids are dense: `0..n_objects`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{arc, belady, ema, fifo, least_stale, lfru, lfu, lru, pinned, sieve};

/// An eviction policy of one cache.
pub trait EvictionPolicy: Send + fmt::Debug {
    /// An event (a token's selection at this cache, or one access) begins.
    fn begin_event(&mut self) {}
    /// A lookup of resident object `x`.
    fn on_hit(&mut self, x: u32);
    /// A lookup of non-resident object `x`, before any eviction for it.
    fn on_miss(&mut self, x: u32) {
        let _ = x;
    }
    /// Non-resident object `x` is about to be inserted without a lookup: a promotion or a
    /// demotion between the tiers of a hierarchy. Any state left by an earlier miss that did
    /// not insert is stale. Default: nothing.
    fn begin_insert(&mut self, x: u32) {
        let _ = x;
    }
    /// Whether missed object `x` may be inserted (admission). Default: always.
    fn admit(&mut self, x: u32) -> bool {
        let _ = x;
        true
    }
    /// `x` was inserted.
    fn on_insert(&mut self, x: u32);
    /// Chooses, forgets and returns a resident victim not in `protected`.
    fn evict(&mut self, protected: &[u32]) -> Option<u32>;
    /// Forgets resident object `x`, removed by the cache for another reason.
    fn remove(&mut self, x: u32);
    /// Forgets everything.
    fn reset(&mut self);
}

/// What a policy may know besides the events: set once, when the cache is built.
#[derive(Debug, Clone)]
pub struct PolicyContext {
    /// Object ids are `0..n_objects`.
    pub n_objects: u32,
    /// Experts per MoE layer: object `x` belongs to layer `x / experts_per_layer` in a shared
    /// cache (per-layer caches number experts `0..experts`, so every object is "layer 0").
    pub experts_per_layer: u32,
    /// Capacity in objects, for policies whose structure is sized in objects (ARC's ghosts,
    /// the pinned set).
    pub capacity_objects: u32,
    /// Belady's oracle: for the i-th lookup on this cache, the index of the next lookup of
    /// the same object (`u64::MAX` if none).
    pub next_use: Option<Arc<Vec<u64>>>,
    /// Selections per object over the whole trace (for the static pinned policy).
    pub popularity: Option<Arc<Vec<u64>>>,
}

/// Selects an eviction policy. Parameters sit next to the kind (`ema:0.9`, or in TOML
/// `{ kind = "ema", decay = 0.9 }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PolicyKind {
    /// First in, first out.
    Fifo {},
    /// Least recently used.
    Lru {},
    /// Least frequently used while resident (libCacheSim semantics).
    Lfu {},
    /// Frequency-weighted recency.
    Lfru {},
    /// Adaptive replacement cache (count-based).
    Arc {},
    /// SIEVE.
    Sieve {},
    /// Least-Stale: keeps the experts whose layer comes up soonest (shared caches).
    LeastStale {},
    /// Static: only the most popular experts are ever cached.
    Pinned {},
    /// Belady's MIN, the offline optimum (needs the next-use oracle).
    Belady {},
    /// Evicts the lowest exponentially decayed selection score (the seed's H_i).
    Ema {
        /// Decay per event of the selection score, in [0, 1).
        decay: f64,
    },
}

impl PolicyKind {
    /// Every policy with default parameters, in display order.
    pub fn all() -> Vec<PolicyKind> {
        vec![
            PolicyKind::Fifo {},
            PolicyKind::Lru {},
            PolicyKind::Lfu {},
            PolicyKind::Lfru {},
            PolicyKind::Arc {},
            PolicyKind::Sieve {},
            PolicyKind::LeastStale {},
            PolicyKind::Pinned {},
            PolicyKind::Ema {
                decay: ema::DEFAULT_DECAY,
            },
            PolicyKind::Belady {},
        ]
    }

    /// The short name used in tables and CSV (`lru`, `ema`).
    pub fn name(&self) -> &'static str {
        match self {
            PolicyKind::Fifo {} => "fifo",
            PolicyKind::Lru {} => "lru",
            PolicyKind::Lfu {} => "lfu",
            PolicyKind::Lfru {} => "lfru",
            PolicyKind::Arc {} => "arc",
            PolicyKind::Sieve {} => "sieve",
            PolicyKind::LeastStale {} => "least-stale",
            PolicyKind::Pinned {} => "pinned",
            PolicyKind::Belady {} => "belady",
            PolicyKind::Ema { .. } => "ema",
        }
    }

    /// Every parameter, as `name=value` pairs separated by spaces.
    pub fn params(&self) -> String {
        match self {
            PolicyKind::Ema { decay } => format!("decay={decay}"),
            _ => String::new(),
        }
    }

    /// Whether the policy needs the next-use oracle.
    pub fn needs_oracle(&self) -> bool {
        matches!(self, PolicyKind::Belady {})
    }

    /// Whether the policy needs per-object popularity.
    pub fn needs_popularity(&self) -> bool {
        matches!(self, PolicyKind::Pinned {})
    }

    /// Checks parameters; the error names the field. `FromStr` and every other way of making
    /// a policy pass through here.
    pub fn validate(&self) -> Result<(), crate::param::ParamError> {
        match self {
            PolicyKind::Ema { decay } => crate::param::decay("decay", *decay),
            _ => Ok(()),
        }
    }

    /// The policy for one cache.
    pub fn build(&self, ctx: &PolicyContext) -> Box<dyn EvictionPolicy> {
        let n = ctx.n_objects as usize;
        match self {
            PolicyKind::Fifo {} => Box::new(fifo::FifoPolicy::new(n)),
            PolicyKind::Lru {} => Box::new(lru::LruPolicy::new(n)),
            PolicyKind::Lfu {} => Box::new(lfu::LfuPolicy::new(n)),
            PolicyKind::Lfru {} => Box::new(lfru::LfruPolicy::new(n)),
            PolicyKind::Arc {} => Box::new(arc::ArcPolicy::new(n, ctx.capacity_objects)),
            PolicyKind::Sieve {} => Box::new(sieve::SievePolicy::new(n)),
            PolicyKind::LeastStale {} => Box::new(least_stale::LeastStalePolicy::new(
                n,
                ctx.experts_per_layer.max(1),
            )),
            PolicyKind::Pinned {} => {
                let popularity = ctx
                    .popularity
                    .as_ref()
                    .expect("the pinned policy needs popularity");
                Box::new(pinned::PinnedPolicy::new(
                    n,
                    popularity,
                    ctx.capacity_objects,
                ))
            }
            PolicyKind::Belady {} => {
                let next_use = ctx
                    .next_use
                    .clone()
                    .expect("Belady needs the next-use oracle");
                Box::new(belady::BeladyPolicy::new(n, next_use))
            }
            PolicyKind::Ema { decay } => Box::new(ema::EmaPolicy::new(n, *decay)),
        }
    }
}

/// The command-line spelling: the name, then `:` and the parameter if it has one (`ema:0.9`).
impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyKind::Ema { decay } => write!(f, "ema:{decay}"),
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for PolicyKind {
    type Err = String;

    /// A name as [`PolicyKind::name`] gives it (`lru`, `least-stale`; `min` for Belady),
    /// optionally followed by `:` and the policy's one parameter (`ema:0.9`).
    fn from_str(s: &str) -> Result<PolicyKind, String> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let lower = name.to_ascii_lowercase();
        let lower = if lower == "min" {
            "belady".into()
        } else {
            lower
        };
        let Some(kind) = PolicyKind::all().into_iter().find(|k| k.name() == lower) else {
            let names: Vec<&str> = PolicyKind::all().iter().map(PolicyKind::name).collect();
            return Err(format!(
                "unknown policy `{s}` (expected {}, with ema taking ema:DECAY)",
                names.join(", ")
            ));
        };
        let kind = match arg {
            None => kind,
            Some(a) => {
                let x = a
                    .parse::<f64>()
                    .map_err(|_| format!("{name}:{a}: the parameter must be a number"))?;
                kind.with_parameter(x)
                    .ok_or_else(|| format!("policy `{name}` takes no parameter"))?
            }
        };
        kind.validate()
            .map_err(|e| format!("{name}:{}: the {} {}", e.value, e.key, e.reason))?;
        Ok(kind)
    }
}

impl PolicyKind {
    /// This policy with its one parameter set to `x` (the `name:x` spelling), if it has one.
    fn with_parameter(&self, x: f64) -> Option<PolicyKind> {
        match self {
            PolicyKind::Ema { .. } => Some(PolicyKind::Ema { decay: x }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `all()` lists every variant: adding one makes this match fail to compile until it is
    /// numbered here, and the test then fails until `all()` has it.
    #[test]
    fn all_lists_every_variant() {
        let index = |k: &PolicyKind| match k {
            PolicyKind::Fifo {} => 0,
            PolicyKind::Lru {} => 1,
            PolicyKind::Lfu {} => 2,
            PolicyKind::Lfru {} => 3,
            PolicyKind::Arc {} => 4,
            PolicyKind::Sieve {} => 5,
            PolicyKind::LeastStale {} => 6,
            PolicyKind::Pinned {} => 7,
            PolicyKind::Belady {} => 8,
            PolicyKind::Ema { .. } => 9,
        };
        let mut seen: Vec<usize> = PolicyKind::all().iter().map(index).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn names_round_trip() {
        for k in PolicyKind::all() {
            assert_eq!(k.to_string().parse::<PolicyKind>().unwrap(), k);
        }
        assert!("ema:1.5".parse::<PolicyKind>().is_err());
        assert!("lru:2".parse::<PolicyKind>().is_err());
        assert!("mru".parse::<PolicyKind>().is_err());
    }
}
