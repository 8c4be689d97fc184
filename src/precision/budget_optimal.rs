//! Budget-optimal precision: minimise `Σ usage_i · err_i(format_i)` subject to
//! `Σ bytes(format_i) ≤ budget`, a multiple-choice knapsack.
//!
//! Two solvers:
//! - **greedy** (default): every expert starts in its smallest candidate; the upgrade with the
//!   largest error reduction per extra byte that still fits is applied, until none fits or
//!   none helps. A binary heap holds each expert's best upgrade, so a plan for thousands of
//!   experts takes milliseconds.
//! - **dp**: the exact dynamic program over bytes in units of the greatest common divisor of
//!   the candidate sizes. It is exact and exponential in nothing, but its table has
//!   `experts × budget / gcd` cells, so it is limited to small cases and serves to check the
//!   greedy.
//!
//! The planner keeps the greedy plan unless a uniform plan that fits is better, so it is never
//! worse than uniform at equal or fewer bytes. The greedy is optimal for the knapsack's linear relaxation up to one partly taken upgrade,
//! so its objective exceeds the optimum by at most the largest single upgrade gain
//! `max_i usage_i · (err_i(smallest) − err_i(best))` ([`greedy_gap_bound`]). The tests check
//! this bound and report the gaps seen.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::{AllocationError, AllocationInput, Allocator, BudgetScope, PrecisionPlan, Solver};
use crate::quant::WeightFormat;

/// The byte budget over all routed experts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// Mean bits per routed-expert weight.
    BitsPerWeight(f64),
    /// Bytes.
    Bytes(u64),
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct BudgetOptimalAllocator {
    /// Candidate formats.
    pub formats: Vec<WeightFormat>,
    /// The budget.
    pub budget: Budget,
    /// Global or per layer.
    pub scope: BudgetScope,
    /// Greedy or exact.
    pub solver: Solver,
}

/// Largest DP table (cells) the exact solver accepts.
pub const DP_MAX_CELLS: u64 = 400_000_000;

/// One knapsack: `n` items with `m` choices each.
#[derive(Debug, Clone)]
pub struct Knapsack<'a> {
    /// Bytes of each choice (the same for every item).
    pub bytes: &'a [u64],
    /// Cost of item `i` in choice `c`: `cost[i · m + c]`.
    pub cost: &'a [f64],
    /// The budget.
    pub budget: u64,
}

impl Knapsack<'_> {
    fn m(&self) -> usize {
        self.bytes.len()
    }

    fn n(&self) -> usize {
        self.cost.len() / self.m()
    }

    /// The objective of `choice`.
    pub fn objective(&self, choice: &[usize]) -> f64 {
        let m = self.m();
        choice
            .iter()
            .enumerate()
            .map(|(i, &c)| self.cost[i * m + c])
            .sum()
    }

    /// The bytes of `choice`.
    pub fn used(&self, choice: &[usize]) -> u64 {
        choice.iter().map(|&c| self.bytes[c]).sum()
    }

    fn smallest(&self) -> usize {
        (0..self.m())
            .min_by(|&a, &b| self.bytes[a].cmp(&self.bytes[b]).then(a.cmp(&b)))
            .expect("at least one choice")
    }

    fn check_floor(&self) -> Result<usize, AllocationError> {
        let s = self.smallest();
        let floor = self.bytes[s] * self.n() as u64;
        if floor > self.budget {
            return Err(AllocationError(format!(
                "the budget of {} bytes is below the {} bytes of every expert in its smallest candidate",
                self.budget, floor
            )));
        }
        Ok(s)
    }

    /// Greedy by marginal error reduction per byte.
    pub fn greedy(&self) -> Result<Vec<usize>, AllocationError> {
        let (n, m) = (self.n(), self.m());
        let s = self.check_floor()?;
        let mut choice = vec![s; n];
        let mut left = self.budget - self.bytes[s] * n as u64;
        let best_upgrade = |i: usize, cur: usize, left: u64| -> Option<Candidate> {
            let mut best: Option<Candidate> = None;
            for c in 0..m {
                if self.bytes[c] <= self.bytes[cur] || self.bytes[c] - self.bytes[cur] > left {
                    continue;
                }
                let gain = self.cost[i * m + cur] - self.cost[i * m + c];
                if gain <= 0.0 {
                    continue;
                }
                let cand = Candidate {
                    ratio: gain / (self.bytes[c] - self.bytes[cur]) as f64,
                    item: i,
                    to: c,
                    from: cur,
                };
                if best.is_none_or(|b| cand > b) {
                    best = Some(cand);
                }
            }
            best
        };
        let mut heap: BinaryHeap<Candidate> =
            (0..n).filter_map(|i| best_upgrade(i, s, left)).collect();
        while let Some(c) = heap.pop() {
            if choice[c.item] != c.from {
                continue;
            }
            let extra = self.bytes[c.to] - self.bytes[c.from];
            if extra <= left {
                choice[c.item] = c.to;
                left -= extra;
            }
            // Either way the item's next best upgrade is whatever fits now.
            if let Some(next) = best_upgrade(c.item, choice[c.item], left) {
                heap.push(next);
            }
        }
        Ok(choice)
    }

    /// The greedy plan, or the best uniform plan that fits if that is better: a cheap
    /// safeguard that makes the planner never worse than any uniform plan of equal or fewer
    /// bytes.
    pub fn greedy_or_uniform(&self) -> Result<Vec<usize>, AllocationError> {
        let mut best = self.greedy()?;
        let mut best_cost = self.objective(&best);
        for c in 0..self.m() {
            let uniform = vec![c; self.n()];
            if self.used(&uniform) <= self.budget {
                let cost = self.objective(&uniform);
                if cost < best_cost {
                    best = uniform;
                    best_cost = cost;
                }
            }
        }
        Ok(best)
    }

    /// The exact dynamic program.
    pub fn dp(&self) -> Result<Vec<usize>, AllocationError> {
        let (n, m) = (self.n(), self.m());
        self.check_floor()?;
        let unit = self.bytes.iter().fold(0u64, |g, &b| gcd(g, b)).max(1);
        let w = (self.budget / unit) as usize;
        let cells = n as u64 * (w as u64 + 1);
        if cells > DP_MAX_CELLS {
            return Err(AllocationError(format!(
                "the exact solver needs {cells} table cells (over its limit of {DP_MAX_CELLS}); use solver = \"greedy\" or a per-layer scope"
            )));
        }
        let units: Vec<usize> = self.bytes.iter().map(|&b| (b / unit) as usize).collect();
        // best[c] = least cost of the items so far using exactly c units (inf if impossible).
        let mut best = vec![f64::INFINITY; w + 1];
        best[0] = 0.0;
        let mut pick = vec![0u8; n * (w + 1)];
        let mut next = vec![f64::INFINITY; w + 1];
        for i in 0..n {
            next.iter_mut().for_each(|v| *v = f64::INFINITY);
            for (c, &u) in units.iter().enumerate() {
                let cost = self.cost[i * m + c];
                for cap in u..=w {
                    let v = best[cap - u] + cost;
                    if v < next[cap] {
                        next[cap] = v;
                        pick[i * (w + 1) + cap] = c as u8;
                    }
                }
            }
            std::mem::swap(&mut best, &mut next);
        }
        let mut cap = (0..=w)
            .min_by(|&a, &b| best[a].total_cmp(&best[b]).then(a.cmp(&b)))
            .expect("non-empty");
        let mut choice = vec![0usize; n];
        for i in (0..n).rev() {
            let c = pick[i * (w + 1) + cap] as usize;
            choice[i] = c;
            cap -= units[c];
        }
        Ok(choice)
    }
}

/// The greedy's worst case above the optimum: the largest single upgrade gain.
pub fn greedy_gap_bound(k: &Knapsack) -> f64 {
    let m = k.m();
    (0..k.n())
        .map(|i| {
            let row = &k.cost[i * m..(i + 1) * m];
            let lo = row.iter().copied().fold(f64::INFINITY, f64::min);
            row[k.smallest()] - lo
        })
        .fold(0.0, f64::max)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Candidate {
    ratio: f64,
    item: usize,
    to: usize,
    from: usize,
}

impl Eq for Candidate {}

impl Ord for Candidate {
    fn cmp(&self, o: &Self) -> Ordering {
        // Highest ratio first; ties to the lower item, then the smaller format index.
        self.ratio
            .total_cmp(&o.ratio)
            .then(o.item.cmp(&self.item))
            .then(o.to.cmp(&self.to))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Allocator for BudgetOptimalAllocator {
    fn candidates(&self) -> Vec<WeightFormat> {
        self.formats.clone()
    }

    fn allocate(&self, input: &AllocationInput) -> Result<PrecisionPlan, AllocationError> {
        let m = self.formats.len();
        let n = input.usage.len();
        let error = input.error.ok_or_else(|| {
            AllocationError("budget-optimal needs the measured per-expert error".into())
        })?;
        assert_eq!(error.len(), n * m, "error is experts × candidates");
        let bytes: Vec<u64> = self
            .formats
            .iter()
            .map(|f| f.bytes_for(input.params_per_expert))
            .collect();
        let total = match self.budget {
            Budget::Bytes(b) => b,
            Budget::BitsPerWeight(b) => {
                (b * input.params_per_expert as f64 * n as f64 / 8.0).floor() as u64
            }
        };
        let cost: Vec<f64> = (0..n * m)
            .map(|j| input.usage[j / m] as f64 * error[j])
            .collect();
        let groups: Vec<(usize, usize, u64)> = match self.scope {
            BudgetScope::Global => vec![(0, n, total)],
            BudgetScope::PerLayer => {
                let e = input.experts as usize;
                let per = total / input.layers.max(1) as u64;
                (0..input.layers as usize)
                    .map(|l| (l * e, (l + 1) * e, per))
                    .collect()
            }
        };
        let mut formats = Vec::with_capacity(n);
        for (lo, hi, budget) in groups {
            let k = Knapsack {
                bytes: &bytes,
                cost: &cost[lo * m..hi * m],
                budget,
            };
            let choice = match self.solver {
                Solver::Greedy => k.greedy_or_uniform(),
                Solver::Dp => k.dp(),
            }?;
            formats.extend(choice.iter().map(|&c| self.formats[c]));
        }
        Ok(PrecisionPlan {
            layers: input.layers,
            experts: input.experts,
            formats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn greedy_matches_dp_within_its_bound_on_random_small_cases() {
        let bytes = [84u64 * 3, 110 * 3, 144 * 3];
        let mut rng = StdRng::seed_from_u64(7);
        let (mut exact, mut cases) = (0, 0);
        for _ in 0..300 {
            let n = rng.random_range(1..12usize);
            let mut cost = Vec::new();
            for _ in 0..n {
                let usage = rng.random_range(0..100) as f64;
                let e2 = rng.random_range(0.05..0.2f64);
                let e3 = e2 * rng.random_range(0.2..0.6f64);
                let e4 = e3 * rng.random_range(0.2..0.6f64);
                cost.extend([usage * e2, usage * e3, usage * e4]);
            }
            let budget =
                bytes[0] * n as u64 + rng.random_range(0..(bytes[2] - bytes[0]) * n as u64 + 1);
            let k = Knapsack {
                bytes: &bytes,
                cost: &cost,
                budget,
            };
            let g = k.greedy().unwrap();
            let d = k.dp().unwrap();
            assert!(k.used(&g) <= budget && k.used(&d) <= budget);
            let (og, od) = (k.objective(&g), k.objective(&d));
            assert!(od <= og + 1e-9, "the DP is optimal: {od} vs greedy {og}");
            assert!(og - od <= greedy_gap_bound(&k) + 1e-9);
            cases += 1;
            if (og - od).abs() <= 1e-9 * od.abs().max(1.0) {
                exact += 1;
            }
        }
        // The greedy is usually exact on these cases; it never exceeds its bound.
        assert!(exact * 10 >= cases * 7, "greedy exact on {exact}/{cases}");
    }

    #[test]
    fn a_budget_below_the_floor_is_refused() {
        let k = Knapsack {
            bytes: &[10, 20],
            cost: &[1.0, 0.0, 1.0, 0.0],
            budget: 19,
        };
        assert!(k.greedy().unwrap_err().0.contains("below"));
        assert!(k.dp().unwrap_err().0.contains("below"));
    }

    #[test]
    fn a_generous_budget_gives_every_expert_its_best_format() {
        let k = Knapsack {
            bytes: &[10, 20, 30],
            cost: &[3.0, 2.0, 1.0, 5.0, 4.0, 0.0],
            budget: 1000,
        };
        assert_eq!(k.greedy().unwrap(), vec![2, 2]);
        assert_eq!(k.dp().unwrap(), vec![2, 2]);
    }
}
