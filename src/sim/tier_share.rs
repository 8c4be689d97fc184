//! A tier's read bandwidth, shared by everything reading it at once: the hops that copy bytes
//! out of it and the in-place unit's kernels that stream weights from it (a CPU computing
//! experts from DRAM while the GPU's copy engine reads the same DRAM).
//!
//! Each reader asks for a rate (a hop: its link's bandwidth; a kernel: its bytes over its
//! roofline body). While the readers of a tier ask for more than its
//! `read_bandwidth_bytes_per_s`, every one of them gets the same fraction of what it asked
//! (`budget / demand`), so each progresses at that fraction of its full speed. A reader's
//! fixed part (the link's latency, the kernel's launch) is not slowed; its claim on the tier
//! runs from its start to its end. When a reader joins or leaves and the fraction changes,
//! every reader's progress is brought up to date and its new end returned, for the caller to
//! reschedule.
//!
//! Only tiers whose readers can ask for more than the tier gives are tracked (decided once in
//! setup); on every other tier readers run at full speed and nothing here is consulted, so a
//! profile whose tiers are never oversubscribed simulates exactly as without this component.
//! Not charged: writes into a tier, the primary unit's own weight reads (its interaction with
//! transfers is `compute.expert_slowdown_while_transferring`), and activation transfers.

use crate::engine::TimeNs;
use crate::units::ceil_ns;

/// Who reads a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reader {
    /// The current hop of transfer `tid`.
    Hop(u32),
    /// The in-place unit's current kernel.
    InPlace,
}

/// One reader in progress.
#[derive(Debug, Clone, Copy)]
struct Flow {
    reader: Reader,
    /// Bytes per ns asked for.
    demand: f64,
    /// Time left of the part that is never slowed (latency, launch).
    fixed_left_ns: f64,
    /// Time left at full speed of the part that streams bytes.
    body_left_ns: f64,
    /// When it is scheduled to end.
    end_at: TimeNs,
}

/// A tracked tier.
#[derive(Debug)]
struct Shared {
    /// Bytes per ns the tier gives.
    budget: f64,
    /// Fraction of its full speed each reader gets now.
    factor: f64,
    /// When the readers' progress was last brought up to date.
    last: TimeNs,
    flows: Vec<Flow>,
    /// Time spent with `factor < 1`.
    contended_ns: u64,
}

impl Shared {
    /// Brings every reader's progress up to `now` at the current factor.
    fn advance(&mut self, now: TimeNs) {
        let elapsed = (now - self.last) as f64;
        if elapsed > 0.0 {
            for f in &mut self.flows {
                let fixed = elapsed.min(f.fixed_left_ns);
                f.fixed_left_ns -= fixed;
                f.body_left_ns = (f.body_left_ns - (elapsed - fixed) * self.factor).max(0.0);
            }
            if self.factor < 1.0 {
                self.contended_ns += now - self.last;
            }
        }
        self.last = now;
    }

    /// The factor for the readers present.
    fn factor_now(&self) -> f64 {
        let demand: f64 = self.flows.iter().map(|f| f.demand).sum();
        if demand <= self.budget {
            1.0
        } else {
            self.budget / demand
        }
    }

    /// End of reader `f` from `now` at the current factor.
    fn end_of(&self, f: &Flow, now: TimeNs) -> TimeNs {
        now.saturating_add(ceil_ns(f.fixed_left_ns + f.body_left_ns / self.factor))
    }

    /// Sets the factor for the readers present; if it changed, every reader but `skip` whose
    /// end moved is appended to `moved` with its new end.
    fn refactor(&mut self, now: TimeNs, skip: Option<Reader>, moved: &mut Vec<(Reader, TimeNs)>) {
        let factor = self.factor_now();
        if factor == self.factor {
            return;
        }
        self.factor = factor;
        for i in 0..self.flows.len() {
            let f = self.flows[i];
            if Some(f.reader) == skip {
                continue;
            }
            let end = self.end_of(&f, now);
            if end != f.end_at {
                self.flows[i].end_at = end;
                moved.push((f.reader, end));
            }
        }
    }
}

/// The tracked tiers and their readers.
#[derive(Debug)]
pub(super) struct TierShare {
    tiers: Vec<Option<Shared>>,
    /// Readers whose end moved at the last join or leave, with their new end.
    pub moved: Vec<(Reader, TimeNs)>,
}

impl TierShare {
    /// `budgets[t]`: the read bandwidth of tier `t` in bytes per second if it is tracked.
    pub fn new(budgets: impl Iterator<Item = Option<f64>>) -> TierShare {
        TierShare {
            tiers: budgets
                .map(|b| {
                    b.map(|bytes_per_s| Shared {
                        budget: bytes_per_s / 1e9,
                        factor: 1.0,
                        last: 0,
                        flows: Vec::new(),
                        contended_ns: 0,
                    })
                })
                .collect(),
            moved: Vec::new(),
        }
    }

    /// Whether tier `t`'s readers share its bandwidth.
    #[inline]
    pub fn tracks(&self, t: usize) -> bool {
        self.tiers[t].is_some()
    }

    /// `reader` starts reading tracked tier `t` at `demand_bytes_per_s`, with `fixed_ns` of
    /// its time never slowed and `body_ns` of streaming at full speed; returns its end. Other
    /// readers whose end moved are in [`TierShare::moved`].
    pub fn join(
        &mut self,
        now: TimeNs,
        t: usize,
        reader: Reader,
        demand_bytes_per_s: f64,
        fixed_ns: f64,
        body_ns: f64,
    ) -> TimeNs {
        self.moved.clear();
        let sh = self.tiers[t].as_mut().expect("a tracked tier");
        sh.advance(now);
        sh.flows.push(Flow {
            reader,
            demand: demand_bytes_per_s / 1e9,
            fixed_left_ns: fixed_ns,
            body_left_ns: body_ns,
            end_at: 0,
        });
        sh.refactor(now, Some(reader), &mut self.moved);
        let i = sh.flows.len() - 1;
        let end = sh.end_of(&sh.flows[i], now);
        sh.flows[i].end_at = end;
        end
    }

    /// `reader` stopped reading tracked tier `t`. Readers whose end moved are in
    /// [`TierShare::moved`].
    pub fn leave(&mut self, now: TimeNs, t: usize, reader: Reader) {
        self.moved.clear();
        let sh = self.tiers[t].as_mut().expect("a tracked tier");
        sh.advance(now);
        let i = sh
            .flows
            .iter()
            .position(|f| f.reader == reader)
            .expect("the reader reads the tier");
        sh.flows.swap_remove(i);
        sh.refactor(now, None, &mut self.moved);
    }

    /// Time tier `t` spent with its readers asking for more than it gives (0 if untracked).
    pub fn contended_ns(&self, t: usize) -> u64 {
        self.tiers[t].as_ref().map_or(0, |sh| sh.contended_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reader_within_budget_runs_at_full_speed() {
        let mut s = TierShare::new([Some(10e9)].into_iter());
        // 10 ns fixed + 100 ns body at 5 bytes/ns.
        let end = s.join(0, 0, Reader::InPlace, 5e9, 10.0, 100.0);
        assert_eq!(end, 110);
        assert!(s.moved.is_empty());
        s.leave(110, 0, Reader::InPlace);
        assert_eq!(s.contended_ns(0), 0);
    }

    #[test]
    fn two_readers_over_budget_share_it_in_proportion() {
        // Budget 10 bytes/ns; a kernel asking 8 and a hop asking 8: each gets 10/16.
        let mut s = TierShare::new([Some(10e9)].into_iter());
        let k = s.join(0, 0, Reader::InPlace, 8e9, 0.0, 160.0);
        assert_eq!(k, 160);
        let h = s.join(0, 0, Reader::Hop(3), 8e9, 0.0, 80.0);
        // The hop alone at 10/16 speed: 80 / 0.625 = 128 ns.
        assert_eq!(h, 128);
        assert_eq!(s.moved, [(Reader::InPlace, 256)]);
        // At 128 the hop leaves; the kernel has done 128 * 0.625 = 80 of its 160 ns.
        s.leave(128, 0, Reader::Hop(3));
        assert_eq!(s.moved, [(Reader::InPlace, 208)]);
        s.leave(208, 0, Reader::InPlace);
        assert_eq!(s.contended_ns(0), 128);
    }

    #[test]
    fn the_fixed_part_is_not_slowed() {
        let mut s = TierShare::new([Some(1e9)].into_iter());
        // A hop with 50 ns of latency and 100 ns of body asking twice the budget: 50 + 200.
        assert_eq!(s.join(0, 0, Reader::Hop(0), 2e9, 50.0, 100.0), 250);
    }
}
