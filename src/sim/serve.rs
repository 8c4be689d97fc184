//! Serving a layer step: the shared experts and every expert of the step's union get a slot of
//! compute work; the cache serves the union as one atomic event (hits, misses inserted or
//! streamed); every miss starts a transfer from the expert's home tier. Under dynamic precision
//! or low-precision-on-miss, the copy a use wants (its ladder step) is decided here too.

use super::copies::Status;
use super::placement::PlacementMode;
use super::process::{Position, Sim};
use super::step::{SHARED, Slot, SlotState};
use super::transfers::Kind;
use crate::cache::Lookup;
use crate::quant::WeightFormat;

impl Sim<'_> {
    /// Opens the step's slots: the shared experts first (resident, or streamed from home).
    pub(super) fn open_step(&mut self, p: Position) {
        let s = self.s;
        self.step.clear();
        if let Some(sh) = s.shared {
            let tokens = self.step_tokens;
            let slot = self.step.push(Slot {
                object: SHARED,
                tokens,
                state: if sh.resident {
                    SlotState::Ready
                } else {
                    SlotState::Waiting
                },
                bytes: sh.bytes,
                compute_ns: sh.compute_ns,
                mac_ns: sh.mac_ns,
                after_load_ns: 0,
                cached_ns: sh.compute_ns,
            });
            if !sh.resident {
                self.transfers.issue(
                    s,
                    &mut self.q,
                    &mut self.compute,
                    &mut self.in_place,
                    Kind::Shared,
                    p.layer,
                    sh.bytes,
                    s.home_tier as u8,
                    Some(slot),
                    1.0,
                );
            }
        }
    }

    /// The cache serves the step's union as one event.
    pub(super) fn serve_union(&mut self, p: Position) {
        let s = self.s;
        let e = s.experts;
        let layer = p.layer;
        self.bank.begin_event(layer, &self.union.experts);
        self.step_formats.clear();
        let lowering = s.precision.as_ref().map(|pr| pr.timeline.at(self.now()));
        for i in 0..self.union.experts.len() {
            let x = self.union.experts[i] as u32;
            let g = layer * e + x;
            let gu = g as usize;
            let tokens = self.union.tokens[i];
            let home = s.placement[gu];
            if !p.prefill {
                self.c.expert_uses += 1;
            } else {
                self.c.prefill_lookups += 1;
            }
            // The copy this use wants: the plan's, or (dynamic precision) the ladder step the
            // device state allows, or (low precision on miss) the low copy.
            let mut want = None;
            if let (Some(pr), Some(lowering)) = (&s.precision, lowering) {
                let target = pr.target(gu, lowering);
                let present =
                    home as usize == s.compute_tier || self.copies.status[gu] != Status::Absent;
                if home as usize != s.compute_tier
                    && present
                    && self.copies.resident_step[gu] > target
                {
                    // Above the ceiling: drop it and fetch the lower copy.
                    self.c.precision_switches += 1;
                    if let Status::InFlight(tid) = self.copies.status[gu] {
                        self.transfers.get_mut(tid).orphan = true;
                    }
                    self.bank.remove(layer, x);
                    self.copies.status[gu] = Status::Absent;
                    self.copies.prefetched[gu] = false;
                }
                let mut step = target;
                if home as usize != s.compute_tier
                    && self.copies.status[gu] == Status::Absent
                    && let Some((below, low)) = pr.low_on_miss
                    && self.union.weight[i] < below
                    && low < step
                {
                    step = low;
                    self.c.low_precision_loads += 1;
                }
                want = Some(step);
            }
            let (bytes, compute_ns, mac_ns, format) = match want {
                Some(step) => {
                    let c = s.precision.as_ref().expect("dynamic").ladder[step as usize];
                    (c.bytes, c.compute_ns, c.mac_ns, c.format)
                }
                None => (
                    s.expert_bytes[gu],
                    s.expert_compute_ns[gu],
                    s.expert_mac_ns[gu],
                    s.expert_format[gu],
                ),
            };
            if let Some(ip) = &s.in_place
                && ip.always[gu]
            {
                // Computed where it is stored.
                self.push_in_place(g, tokens, bytes, p.prefill);
                self.note_format(p.prefill, format);
                self.step_formats.push(format);
                continue;
            }
            if home as usize == s.compute_tier {
                // Stored in the compute tier: always present.
                self.step.push(Slot {
                    object: g,
                    tokens,
                    state: SlotState::Ready,
                    bytes,
                    compute_ns,
                    mac_ns,
                    after_load_ns: 0,
                    cached_ns: s.cached_ns(compute_ns, format),
                });
                self.count_hit(p.prefill, home);
                self.note_format(p.prefill, format);
                self.step_formats.push(format);
                continue;
            }
            // A transfer's time factor from where it lands (1: the buffer a prefetch chose).
            let mut landing = 1.0;
            let lookup = if std::mem::take(&mut self.copies.prefetched[gu]) {
                // The prefetch made this lookup early (miss and insertion); the policy has seen it.
                debug_assert!(self.bank.contains(layer, x));
                Lookup::Hit
            } else {
                let lookup = self.bank.lookup(layer, x, bytes);
                landing = self.handle_evicted();
                lookup
            };
            // A hit computes the resident copy, whatever its format.
            let (bytes, compute_ns, mac_ns, format) = match (lookup, &s.precision) {
                (Lookup::Hit, Some(pr)) => {
                    let c = pr.ladder[self.copies.resident_step[gu] as usize];
                    (c.bytes, c.compute_ns, c.mac_ns, c.format)
                }
                _ => (bytes, compute_ns, mac_ns, format),
            };
            self.note_format(p.prefill, format);
            let after_load_ns = if self.copies.cold.is_empty() {
                0
            } else {
                s.after_load_ns(compute_ns, format)
            };
            let cached_ns = s.cached_ns(compute_ns, format);
            let slot = |state| Slot {
                object: g,
                tokens,
                state,
                bytes,
                compute_ns,
                mac_ns,
                after_load_ns,
                cached_ns,
            };
            match (lookup, self.copies.status[gu]) {
                (Lookup::Hit, Status::Ready) => {
                    self.step.push(slot(SlotState::Ready));
                    self.count_hit(p.prefill, s.compute_tier as u8);
                }
                (Lookup::Hit, Status::InFlight(_))
                    if s.in_place.as_ref().is_some_and(|ip| ip.load_admitted) =>
                {
                    // A hot set's copy still on its way is not there yet: the miss runs in
                    // place, as every miss of a hot set does.
                    self.push_in_place(g, tokens, bytes, p.prefill);
                    if !p.prefill {
                        self.c.misses += 1;
                    }
                }
                (Lookup::Hit, Status::InFlight(tid)) => {
                    let i = self.step.push(slot(SlotState::Waiting));
                    self.transfers.get_mut(tid).waiter = Some(i);
                    if !p.prefill {
                        self.c.prefetch_hits += 1;
                        self.c.tier_served[self.transfers.get(tid).from as usize] += 1;
                    }
                }
                (Lookup::Hit, Status::Absent) => {
                    unreachable!("cache and status disagree on object {g}")
                }
                (Lookup::Miss { inserted }, _)
                    if self.miss_in_place(gu, home, tokens, bytes, compute_ns, mac_ns) =>
                {
                    // Computed where it is stored; a hot set keeps a copy the policy admitted
                    // (copied in the background), per-miss does not.
                    self.push_in_place(g, tokens, bytes, p.prefill);
                    let ip = s.in_place.as_ref().expect("in place");
                    if inserted && ip.load_admitted {
                        let tid = self.transfers.issue(
                            s,
                            &mut self.q,
                            &mut self.compute,
                            &mut self.in_place,
                            Kind::Demand,
                            g,
                            bytes,
                            home,
                            None,
                            landing,
                        );
                        self.copies.status[gu] = Status::InFlight(tid);
                    } else if inserted {
                        self.bank.remove(layer, x);
                    }
                    if !p.prefill {
                        self.c.misses += 1;
                        if self.step.predicted {
                            self.c.misses_on_predicted_steps += 1;
                        }
                    }
                }
                (Lookup::Miss { inserted }, _) => {
                    let i = self.step.push(slot(SlotState::Waiting));
                    let tid = self.transfers.issue(
                        s,
                        &mut self.q,
                        &mut self.compute,
                        &mut self.in_place,
                        Kind::Demand,
                        g,
                        bytes,
                        home,
                        Some(i),
                        landing,
                    );
                    if inserted {
                        self.copies.status[gu] = Status::InFlight(tid);
                        if let Some(step) = want {
                            self.copies.resident_step[gu] = step;
                        }
                    }
                    if !p.prefill {
                        self.c.misses += 1;
                        self.c.tier_served[home as usize] += 1;
                        if self.step.predicted {
                            self.c.misses_on_predicted_steps += 1;
                        }
                    }
                }
            }
            self.step_formats.push(format);
        }
    }

    /// Adds a slot the in-place unit computes.
    fn push_in_place(&mut self, g: u32, tokens: u32, bytes: u64, prefill: bool) {
        let s = self.s;
        let ip = s.in_place.as_ref().expect("an in-place unit");
        let gu = g as usize;
        let i = self.step.push(Slot {
            object: g,
            tokens,
            state: SlotState::InPlace,
            bytes,
            compute_ns: ip.expert_compute_ns[gu],
            mac_ns: ip.expert_mac_ns[gu],
            after_load_ns: 0,
            cached_ns: ip.expert_compute_ns[gu],
        });
        self.in_place.push(i, ip.kernel_ns(gu, tokens));
        if prefill {
            self.c.prefill_in_place += 1;
        } else {
            self.c.in_place_uses += 1;
            self.c.tier_served[ip.tier] += 1;
        }
    }

    /// Whether a miss runs in place: always under a hot set; under per-miss when its kernel
    /// has fewer tokens than `copy_min_tokens`, or (without it) when in place is predicted to
    /// finish first given the link's queue and the in-place unit's queued work.
    fn miss_in_place(
        &self,
        g: usize,
        home: u8,
        tokens: u32,
        bytes: u64,
        compute_ns: crate::engine::TimeNs,
        mac_ns: crate::engine::TimeNs,
    ) -> bool {
        let s = self.s;
        let Some(ip) = &s.in_place else { return false };
        match ip.mode {
            PlacementMode::HotSet => true,
            PlacementMode::PerMiss => match ip.copy_min_tokens {
                Some(n) => tokens < n,
                None => {
                    let fetch = self.transfers.estimate_ns(s, home, bytes)
                        + s.kernel_ns(compute_ns, mac_ns, tokens);
                    let mut here = self.in_place.queued_ns
                        + ip.kernel_ns(g, tokens)
                        + ip.activation_ns(&ip.to_primary, tokens)
                        + ip.sync_ns;
                    if self.in_place.slots == 0 {
                        here += ip.activation_ns(&ip.to_unit, tokens);
                    }
                    here < fetch
                }
            },
            _ => false,
        }
    }

    /// Forgets the copies the last lookup evicted; returns the time factor of a transfer
    /// landing in the buffer the last of them freed (a buffer never used when none was: 1), by
    /// how recently its expert was computed (the profile's `weights_cache.landing`; under random
    /// replacement, by how likely its weights are still cached).
    pub(super) fn handle_evicted(&mut self) -> f64 {
        let mut landing = None;
        for g in self.bank.evicted() {
            self.copies.evicted(g, &mut self.transfers);
            landing = Some(g);
        }
        match (&self.s.weights_cache, landing) {
            (Some(wc), Some(g)) if !wc.landing.is_empty() => match wc.replacement {
                crate::hardware::Replacement::Lru => {
                    crate::hardware::landing_factor(&wc.landing, self.weights_cache.distance(g))
                }
                // The gain of landing where a kernel just ran is the destination's lines still
                // being cached: the nearest point's factor, as likely as the victim's weights
                // are still cached, the link's time otherwise.
                crate::hardware::Replacement::Random => {
                    let cached = self.weights_cache.still_cached(g, wc.rule(), self.now());
                    1.0 - (1.0 - wc.landing[0].1) * cached
                }
            },
            _ => 1.0,
        }
    }

    fn count_hit(&mut self, prefill: bool, tier: u8) {
        if prefill {
            self.c.prefill_hits += 1;
        } else {
            self.c.hits += 1;
            self.c.tier_served[tier as usize] += 1;
        }
    }

    /// Counts a decode use computed in `format`.
    fn note_format(&mut self, prefill: bool, format: WeightFormat) {
        if prefill {
            return;
        }
        match self.c.format_uses.iter_mut().find(|(f, _)| *f == format) {
            Some((_, n)) => *n += 1,
            None => self.c.format_uses.push((format, 1)),
        }
    }
}
