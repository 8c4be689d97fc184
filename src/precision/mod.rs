//! Per-expert precision: which weight format each routed expert is stored in.
//!
//! An [`Allocator`] turns how often each expert is used (a profiling pass over the trace) and,
//! for the planners that need it, the measured output error of each expert in each candidate
//! format into a [`PrecisionPlan`]. Plug-ins, one file each: [`uniform`], [`frequency_tiers`]
//! (the seed's §4.1 rule) and [`budget_optimal`] (a knapsack: greedy, checked by an exact
//! dynamic program). [`dynamic`] lowers a plan at run time from a thermal, battery and memory
//! pressure timeline (the seed's §4.2). No I/O happens here.

pub mod budget_optimal;
pub mod dynamic;
pub mod frequency_tiers;
pub mod uniform;

use serde::{Deserialize, Serialize};

use crate::quant::WeightFormat;

pub use dynamic::{DynamicSpec, LowOnMissSpec, PrecisionTimeline};

/// The format of every routed expert, indexed `layer · experts + expert`.
#[derive(Debug, Clone, PartialEq)]
pub struct PrecisionPlan {
    /// MoE layers.
    pub layers: u32,
    /// Routed experts per layer.
    pub experts: u32,
    /// One format per expert.
    pub formats: Vec<WeightFormat>,
}

impl PrecisionPlan {
    /// Every expert in `format`.
    pub fn uniform(layers: u32, experts: u32, format: WeightFormat) -> PrecisionPlan {
        PrecisionPlan {
            layers,
            experts,
            formats: vec![format; layers as usize * experts as usize],
        }
    }

    /// Bytes of all experts, each `bytes_of(format)` large.
    pub fn total_bytes(&self, bytes_of: impl Fn(WeightFormat) -> u64) -> u64 {
        self.formats.iter().map(|&f| bytes_of(f)).sum()
    }

    /// The distinct formats, fewest bits first.
    pub fn distinct(&self) -> Vec<WeightFormat> {
        let mut v: Vec<WeightFormat> = Vec::new();
        for &f in &self.formats {
            if !v.contains(&f) {
                v.push(f);
            }
        }
        sort_by_bits(&mut v);
        v
    }

    /// Usage-weighted mean bits per weight (`usage` per expert; plain mean when all are 0).
    pub fn mean_bits_weighted(&self, usage: &[u64]) -> f64 {
        let total: u64 = usage.iter().sum();
        if total == 0 {
            return self.mean_bits();
        }
        self.formats
            .iter()
            .zip(usage)
            .map(|(f, &u)| f.bits_per_weight() * u as f64)
            .sum::<f64>()
            / total as f64
    }

    /// Mean bits per weight over experts.
    pub fn mean_bits(&self) -> f64 {
        self.formats
            .iter()
            .map(|f| f.bits_per_weight())
            .sum::<f64>()
            / self.formats.len().max(1) as f64
    }

    /// `"q4_k:40,q3_k:50,q2_k:38"`: experts per format, most bits first.
    pub fn census(&self) -> String {
        let mut d = self.distinct();
        d.reverse();
        d.iter()
            .map(|f| {
                format!(
                    "{}:{}",
                    f.name(),
                    self.formats.iter().filter(|&&g| g == *f).count()
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Sorts formats by bits per weight, fewest first (ties by name, for a stable order).
pub fn sort_by_bits(v: &mut [WeightFormat]) {
    v.sort_by(|a, b| {
        a.bits_per_weight()
            .total_cmp(&b.bits_per_weight())
            .then(a.name().cmp(b.name()))
    });
}

/// What a planner sees.
#[derive(Debug, Clone, Copy)]
pub struct AllocationInput<'a> {
    /// MoE layers.
    pub layers: u32,
    /// Routed experts per layer.
    pub experts: u32,
    /// Uses of each expert in the profiling pass, `layer · experts + expert`.
    pub usage: &'a [u64],
    /// Weights per expert (its bytes in a format are `format.bytes_for(params)`).
    pub params_per_expert: u64,
    /// Measured error of each expert in each of [`Allocator::candidates`], row-major
    /// `expert × candidate`; `None` when the planner does not need it.
    pub error: Option<&'a [f64]>,
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationError(pub String);

/// A precision planner.
pub trait Allocator: Send + Sync {
    /// The formats whose per-expert error the planner needs measured (empty: none).
    fn candidates(&self) -> Vec<WeightFormat> {
        Vec::new()
    }
    /// The plan.
    fn allocate(&self, input: &AllocationInput) -> Result<PrecisionPlan, AllocationError>;
}

fn default_hot_pct() -> f64 {
    0.9
}
fn default_cold_pct() -> f64 {
    0.3
}
fn q4k() -> WeightFormat {
    WeightFormat::Q4K
}
fn q3k() -> WeightFormat {
    WeightFormat::Q3K
}
fn q2k() -> WeightFormat {
    WeightFormat::Q2K
}
fn default_candidates() -> Vec<WeightFormat> {
    vec![WeightFormat::Q2K, WeightFormat::Q3K, WeightFormat::Q4K]
}

/// Where a budget applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BudgetScope {
    /// One budget over all layers.
    #[default]
    Global,
    /// The budget split evenly over layers.
    PerLayer,
}

/// How the knapsack is solved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Solver {
    /// Greedy by marginal error reduction per byte.
    #[default]
    Greedy,
    /// The exact dynamic program (small cases only).
    Dp,
}

/// Selects a precision planner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AllocatorKind {
    /// Every expert in one format.
    Uniform {
        /// The format.
        format: WeightFormat,
    },
    /// The seed's §4.1 rule, with ADR-092's thresholds: per layer, an expert used at least
    /// `ceil(max · hot_pct)` times is hot, at most `floor(max · cold_pct)` times cold, else warm.
    FrequencyTiers {
        /// Hot threshold, a fraction of the layer's highest count.
        #[serde(default = "default_hot_pct")]
        hot_pct: f64,
        /// Cold threshold, a fraction of the layer's highest count.
        #[serde(default = "default_cold_pct")]
        cold_pct: f64,
        /// Format of hot experts.
        #[serde(default = "q4k")]
        hot: WeightFormat,
        /// Format of the others.
        #[serde(default = "q3k")]
        warm: WeightFormat,
        /// Format of cold experts.
        #[serde(default = "q2k")]
        cold: WeightFormat,
    },
    /// Minimise Σ usage_i · err_i(format_i) subject to Σ bytes_i ≤ budget.
    BudgetOptimal {
        /// Candidate formats.
        #[serde(default = "default_candidates")]
        formats: Vec<WeightFormat>,
        /// Budget as mean bits per routed-expert weight.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        budget_bits_per_weight: Option<f64>,
        /// Budget in bytes over all routed experts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        budget_bytes: Option<u64>,
        /// One budget, or one per layer.
        #[serde(default)]
        scope: BudgetScope,
        /// Greedy or exact.
        #[serde(default)]
        solver: Solver,
    },
}

impl AllocatorKind {
    /// The short name (`uniform`, `frequency-tiers`, `budget-optimal`).
    pub fn name(&self) -> &'static str {
        match self {
            AllocatorKind::Uniform { .. } => "uniform",
            AllocatorKind::FrequencyTiers { .. } => "frequency-tiers",
            AllocatorKind::BudgetOptimal { .. } => "budget-optimal",
        }
    }

    /// The parameters, for a CSV column (`q4_k`, `0.9/0.3:q4_k/q3_k/q2_k`, ...).
    pub fn params(&self) -> String {
        match self {
            AllocatorKind::Uniform { format } => format.name().to_string(),
            AllocatorKind::FrequencyTiers {
                hot_pct,
                cold_pct,
                hot,
                warm,
                cold,
            } => format!("{hot_pct}/{cold_pct}:{hot}/{warm}/{cold}"),
            AllocatorKind::BudgetOptimal {
                formats,
                budget_bits_per_weight,
                budget_bytes,
                scope,
                solver,
            } => format!(
                "{}:{}:{}:{}",
                match (budget_bits_per_weight, budget_bytes) {
                    (Some(b), _) => format!("{b}bpw"),
                    (_, Some(b)) => format!("{b}B"),
                    _ => "?".into(),
                },
                formats
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join("/"),
                match scope {
                    BudgetScope::Global => "global",
                    BudgetScope::PerLayer => "per-layer",
                },
                match solver {
                    Solver::Greedy => "greedy",
                    Solver::Dp => "dp",
                }
            ),
        }
    }

    /// Checks parameters; the error names the field.
    pub fn validate(&self) -> Result<(), crate::param::ParamError> {
        use crate::param::ParamError;
        let untimed = |key: &str, f: &WeightFormat| match f.compute_class() {
            None => Err(ParamError::new(key, f, untimed_reason(*f))),
            Some(_) => Ok(()),
        };
        match self {
            AllocatorKind::Uniform { format } => untimed("format", format)?,
            AllocatorKind::FrequencyTiers {
                hot_pct,
                cold_pct,
                hot,
                warm,
                cold,
            } => {
                crate::param::within("hot_pct", *hot_pct, 0.0, 1.0)?;
                crate::param::within("cold_pct", *cold_pct, 0.0, 1.0)?;
                if cold_pct >= hot_pct {
                    return Err(ParamError::new(
                        "cold_pct",
                        cold_pct,
                        format!("must be below hot_pct ({hot_pct})"),
                    ));
                }
                untimed("hot", hot)?;
                untimed("warm", warm)?;
                untimed("cold", cold)?;
            }
            AllocatorKind::BudgetOptimal {
                formats,
                budget_bits_per_weight,
                budget_bytes,
                ..
            } => {
                if formats.is_empty() {
                    return Err(ParamError::new("formats", "[]", "give at least one format"));
                }
                for (i, f) in formats.iter().enumerate() {
                    untimed("formats", f)?;
                    if formats[..i].contains(f) {
                        return Err(ParamError::new("formats", f, "is listed twice"));
                    }
                }
                match (budget_bits_per_weight, budget_bytes) {
                    (Some(b), None) => {
                        crate::param::within("budget_bits_per_weight", *b, 1e-3, 64.0)?
                    }
                    (None, Some(b)) => {
                        if *b == 0 {
                            return Err(ParamError::new("budget_bytes", b, "must be > 0"));
                        }
                    }
                    (Some(b), Some(_)) => {
                        return Err(ParamError::new(
                            "budget_bits_per_weight",
                            b,
                            "give exactly one of budget_bits_per_weight and budget_bytes",
                        ));
                    }
                    (None, None) => {
                        return Err(ParamError::new(
                            "budget_bits_per_weight",
                            "none",
                            "give exactly one of budget_bits_per_weight and budget_bytes",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The planner.
    pub fn build(&self) -> Box<dyn Allocator> {
        match self.clone() {
            AllocatorKind::Uniform { format } => Box::new(uniform::UniformAllocator { format }),
            AllocatorKind::FrequencyTiers {
                hot_pct,
                cold_pct,
                hot,
                warm,
                cold,
            } => Box::new(frequency_tiers::FrequencyTiersAllocator {
                hot_pct,
                cold_pct,
                hot,
                warm,
                cold,
            }),
            AllocatorKind::BudgetOptimal {
                formats,
                budget_bits_per_weight,
                budget_bytes,
                scope,
                solver,
            } => Box::new(budget_optimal::BudgetOptimalAllocator {
                formats,
                budget: match (budget_bits_per_weight, budget_bytes) {
                    (_, Some(b)) => budget_optimal::Budget::Bytes(b),
                    (Some(b), None) => budget_optimal::Budget::BitsPerWeight(b),
                    (None, None) => budget_optimal::Budget::BitsPerWeight(f64::NAN),
                },
                scope,
                solver,
            }),
        }
    }
}

fn untimed_reason(f: WeightFormat) -> String {
    format!("{f} is the untimed quality reference; pick a deployable format")
}
