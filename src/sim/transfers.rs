//! Transfers of expert bytes from their home tier to the compute tier, hop by hop along the
//! link chain, each hop queueing FIFO for a channel of its link (store-and-forward).
//!
//! The component owns the links, the table of live transfers (ids are reused; a generation
//! number tells a reused id from the transfer it replaced) and the count of hops in flight,
//! which drives link contention on the compute unit. It knows nothing of caches or steps: a
//! transfer names the object it carries and, if a step waits for it, the step's slot.

use super::compute::ComputeUnit;
use super::copies::Status;
use super::in_place::InPlaceUnit;
use super::process::{Ev, Sim};
use super::setup::SimSetup;
use super::step::SlotState;
use super::tier_share::{Reader, TierShare};
use super::timeline::SpanKind;
use crate::engine::{FifoResource, Scheduler, TimeNs};
use crate::hardware::time_distribution::unit_interval;
use crate::seed::derive_seed;

/// Why a transfer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Demand,
    Prefetch,
    Shared,
}

/// One transfer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Transfer {
    /// Global object (`layer * experts + expert`), or the layer for shared experts.
    pub object: u32,
    pub bytes: u64,
    /// The tier it comes from.
    pub from: u8,
    pub hop: u8,
    /// The current hop holds a channel.
    pub started: bool,
    pub kind: Kind,
    /// Slot of the current step waiting for it.
    pub waiter: Option<u16>,
    /// Evicted while in flight: its arrival is dropped.
    pub orphan: bool,
    pub hop_start: TimeNs,
    /// When the current hop is scheduled to end.
    pub end_at: TimeNs,
    /// `HopDone` events of this transfer superseded by a later schedule (its source tier's
    /// bandwidth was shared) and not yet out of the queue; its id is not reused before they are.
    pub stale: u32,
    pub generation: u32,
    pub live: bool,
    /// Time factor of the hop into the compute tier, from the buffer it lands in.
    pub landing: f64,
}

/// The end of one hop.
#[derive(Debug, Clone, Copy)]
pub(super) struct HopEnd {
    /// The transfer as it was during the hop.
    pub transfer: Transfer,
    /// The link the hop crossed.
    pub link: usize,
    /// Whether the transfer reached the compute tier (its id is free again).
    pub arrived: bool,
}

/// The links and the transfers on them.
#[derive(Debug)]
pub(super) struct Transfers {
    links: Vec<FifoResource<u32>>,
    table: Vec<Transfer>,
    free: Vec<u32>,
    /// Hops in flight on all links.
    hops_in_flight: u32,
    /// Tier read bandwidth shared by hops and in-place kernels.
    pub share: TierShare,
    /// Hops started per link: the index of the next draw from the link's time distribution.
    draws: Vec<u64>,
    /// The run's seed, for those draws.
    seed: u64,
    /// Transfers issued while no hop was in flight, not yet charged to the compute unit (the
    /// profile's `issue_ns`).
    idle_issues: u32,
}

/// The stream of the run's seed that hop-time factors draw from.
const HOP_TIME_STREAM: u64 = 0x40B7_1AE5;

impl Transfers {
    pub fn new(s: &SimSetup) -> Transfers {
        Transfers {
            links: s
                .links
                .iter()
                .map(|k| FifoResource::new(k.channels))
                .collect(),
            table: Vec::new(),
            free: Vec::new(),
            hops_in_flight: 0,
            share: TierShare::new(s.tiers.iter().map(|t| t.shared_read_bandwidth_bytes_per_s)),
            draws: vec![0; s.links.len()],
            seed: derive_seed(s.options.seed, HOP_TIME_STREAM),
            idle_issues: 0,
        }
    }

    /// The factor of the next hop on link `link` (1 for a link without a time distribution):
    /// draw `k` of link `l` comes from stream `(l, k)` of the run's seed, so it depends on the
    /// order of the link's hops only.
    fn hop_factor(&mut self, s: &SimSetup, link: usize) -> f64 {
        let Some(d) = &s.links[link].time_distribution else {
            return 1.0;
        };
        let k = self.draws[link];
        self.draws[link] += 1;
        let bits = derive_seed(derive_seed(self.seed, link as u64), k);
        d.factor(unit_interval(bits))
    }

    /// Transfer `tid`.
    #[inline]
    pub fn get(&self, tid: u32) -> &Transfer {
        &self.table[tid as usize]
    }

    /// Transfer `tid`, to change.
    #[inline]
    pub fn get_mut(&mut self, tid: u32) -> &mut Transfer {
        &mut self.table[tid as usize]
    }

    /// Whether any hop is in flight.
    #[inline]
    pub fn links_busy(&self) -> bool {
        self.hops_in_flight > 0
    }

    /// Transfers issued while no hop was in flight since the last call (each woke the links
    /// from idle: the compute unit's `issue_ns`).
    pub fn take_idle_issues(&mut self) -> u32 {
        std::mem::take(&mut self.idle_issues)
    }

    /// Channel-time link `link` was busy until `now`.
    pub fn busy_channel_ns(&self, link: usize, now: TimeNs) -> u128 {
        self.links[link].busy_channel_ns(now)
    }

    /// A guess of how long a new transfer of `bytes` from tier `from` would take: its hops,
    /// with the first one queued behind the transfers already holding or awaiting its link
    /// (each assumed to take as long as this one).
    pub fn estimate_ns(&self, s: &SimSetup, from: u8, bytes: u64) -> TimeNs {
        let path = &s.paths[from as usize];
        let Some(&first) = path.first() else { return 0 };
        let first = first as usize;
        let link = &self.links[first];
        let ahead = link.busy() as u64 + link.waiting() as u64;
        let channels = s.links[first].channels as u64;
        let rounds = (ahead + 1).div_ceil(channels);
        let hops: TimeNs = path
            .iter()
            .map(|&l| s.links[l as usize].hop_ns(bytes))
            .sum();
        hops + (rounds - 1) * s.links[first].hop_ns(bytes)
    }

    /// Starts moving `bytes` of `object` from tier `from`; returns the transfer's id. Its last
    /// hop (into the compute tier) takes `landing` times as long (the profile's
    /// `weights_cache.landing`; 1 without).
    #[allow(clippy::too_many_arguments)]
    pub fn issue(
        &mut self,
        s: &SimSetup,
        q: &mut Scheduler<Ev>,
        unit: &mut ComputeUnit,
        ip: &mut InPlaceUnit,
        kind: Kind,
        object: u32,
        bytes: u64,
        from: u8,
        waiter: Option<u16>,
        landing: f64,
    ) -> u32 {
        if self.hops_in_flight == 0 {
            self.idle_issues += 1;
        }
        let tr = Transfer {
            object,
            bytes,
            from,
            hop: 0,
            started: false,
            kind,
            waiter,
            orphan: false,
            hop_start: 0,
            end_at: 0,
            stale: 0,
            generation: 0,
            live: true,
            landing,
        };
        let tid = match self.free.pop() {
            Some(tid) => {
                let generation = self.table[tid as usize].generation + 1;
                self.table[tid as usize] = Transfer { generation, ..tr };
                tid
            }
            None => {
                self.table.push(tr);
                (self.table.len() - 1) as u32
            }
        };
        let link = s.paths[from as usize][0] as usize;
        if let Some(started) = self.links[link].arrive(q.now(), tid) {
            self.start_hop(s, q, unit, ip, started);
        }
        tid
    }

    fn start_hop(
        &mut self,
        s: &SimSetup,
        q: &mut Scheduler<Ev>,
        unit: &mut ComputeUnit,
        ip: &mut InPlaceUnit,
        tid: u32,
    ) {
        let now = q.now();
        let tr = &mut self.table[tid as usize];
        tr.started = true;
        tr.hop_start = now;
        let bytes = tr.bytes;
        let path = &s.paths[tr.from as usize];
        let last_hop = tr.hop as usize + 1 == path.len();
        let landing = if last_hop { tr.landing } else { 1.0 };
        let link = path[tr.hop as usize] as usize;
        let l = &s.links[link];
        let factor = self.hop_factor(s, link) * landing;
        let tr = &mut self.table[tid as usize];
        let end = if self.share.tracks(l.from) {
            let rounded = bytes.div_ceil(l.granularity_bytes) * l.granularity_bytes;
            let body_ns = rounded as f64 * 1e9 / l.bandwidth_bytes_per_s * factor;
            let end = self.share.join(
                now,
                l.from,
                Reader::Hop(tid),
                l.bandwidth_bytes_per_s,
                l.latency_of(bytes) * factor,
                body_ns,
            );
            self.table[tid as usize].end_at = end;
            self.apply_moved(q, ip);
            end
        } else {
            let hop_ns = if l.time_distribution.is_none() && landing == 1.0 {
                l.hop_ns(bytes)
            } else {
                (l.hop_ns(bytes) as f64 * factor).ceil() as TimeNs
            };
            let end = now.saturating_add(hop_ns);
            tr.end_at = end;
            end
        };
        q.schedule_at(end, Ev::HopDone(tid));
        self.hops_change(q, unit, 1);
    }

    /// Reschedules the readers whose end moved when a tier's share changed.
    pub fn apply_moved(&mut self, q: &mut Scheduler<Ev>, ip: &mut InPlaceUnit) {
        for i in 0..self.share.moved.len() {
            let (reader, end) = self.share.moved[i];
            match reader {
                Reader::Hop(tid) => {
                    let tr = &mut self.table[tid as usize];
                    tr.stale += 1;
                    tr.end_at = end;
                    q.schedule_at(end, Ev::HopDone(tid));
                }
                Reader::InPlace => ip.reschedule(q, end),
            }
        }
        self.share.moved.clear();
    }

    /// Whether a `HopDone(tid)` popped at `now` ends the transfer's current hop; if not, it is
    /// a superseded schedule and is forgotten.
    pub fn due(&mut self, tid: u32, now: TimeNs) -> bool {
        let tr = &mut self.table[tid as usize];
        if tr.live && tr.started && tr.end_at == now {
            return true;
        }
        tr.stale -= 1;
        if !tr.live && tr.stale == 0 {
            self.free.push(tid);
        }
        false
    }

    /// Counts a hop starting (`+1`) or ending (`-1`); tells the compute unit when the links go
    /// from idle to busy or back.
    #[inline]
    fn hops_change(&mut self, q: &mut Scheduler<Ev>, unit: &mut ComputeUnit, delta: i32) {
        let before = self.hops_in_flight;
        self.hops_in_flight = before.checked_add_signed(delta).expect("hop count");
        if (before > 0) != (self.hops_in_flight > 0) {
            unit.links_changed(q, q.now(), self.hops_in_flight > 0);
        }
    }

    /// Forgets transfer `tid`; its id may be reused once none of its events is pending.
    pub fn release(&mut self, tid: u32) {
        let tr = &mut self.table[tid as usize];
        tr.live = false;
        if tr.stale == 0 {
            self.free.push(tid);
        }
    }

    /// Cancels transfer `tid` if it still waits for its first link (it then is forgotten);
    /// `true` if it did.
    pub fn cancel_queued(&mut self, s: &SimSetup, tid: u32) -> bool {
        let tr = self.table[tid as usize];
        let first_link = s.paths[tr.from as usize][0] as usize;
        let cancelled = self.links[first_link].cancel(&tid);
        if cancelled {
            self.release(tid);
        }
        cancelled
    }

    /// Hop of transfer `tid` is done: its channel goes to the next waiting transfer, and the
    /// transfer moves on to its next link or has arrived (then its id is free again).
    pub fn hop_done(
        &mut self,
        s: &SimSetup,
        q: &mut Scheduler<Ev>,
        unit: &mut ComputeUnit,
        ip: &mut InPlaceUnit,
        tid: u32,
    ) -> HopEnd {
        let now = q.now();
        let tr = self.table[tid as usize];
        let path = &s.paths[tr.from as usize];
        let link = path[tr.hop as usize] as usize;
        let from = s.links[link].from;
        if self.share.tracks(from) {
            self.share.leave(now, from, Reader::Hop(tid));
            self.apply_moved(q, ip);
        }
        self.hops_change(q, unit, -1);
        if let Some(next) = self.links[link].release(now) {
            self.start_hop(s, q, unit, ip, next);
        }
        if (tr.hop as usize) + 1 < path.len() {
            let t = &mut self.table[tid as usize];
            t.hop += 1;
            t.started = false;
            let next_link = path[t.hop as usize] as usize;
            if let Some(started) = self.links[next_link].arrive(now, tid) {
                self.start_hop(s, q, unit, ip, started);
            }
            return HopEnd {
                transfer: tr,
                link,
                arrived: false,
            };
        }
        self.release(tid);
        HopEnd {
            transfer: tr,
            link,
            arrived: true,
        }
    }
}

impl Sim<'_> {
    pub(super) fn on_hop_done(&mut self, tid: u32) {
        let s = self.s;
        let now = self.now();
        if !self.transfers.due(tid, now) {
            return;
        }
        let end =
            self.transfers
                .hop_done(s, &mut self.q, &mut self.compute, &mut self.in_place, tid);
        let tr = end.transfer;
        let link = end.link;
        let (from, to) = (s.links[link].from, s.links[link].to);
        self.c.link_transfers[link] += 1;
        self.c.link_bytes[link] += tr.bytes;
        self.c.tier_read[from] += tr.bytes;
        self.c.tier_written[to] += tr.bytes;
        let ph = self.phase();
        self.c.energy_transfer_pj[ph] +=
            tr.bytes as f64 * (s.tiers[from].energy_pj_per_byte + s.tiers[to].energy_pj_per_byte);
        if self.timeline.is_some() {
            let kind = match tr.kind {
                Kind::Demand => SpanKind::Load,
                Kind::Prefetch => SpanKind::Prefetch,
                Kind::Shared => SpanKind::SharedLoad,
            };
            let (layer, expert) = if tr.kind == Kind::Shared {
                (tr.object, None)
            } else {
                (tr.object / s.experts, Some(tr.object % s.experts))
            };
            self.span(
                kind,
                1 + link as u16,
                tr.hop_start,
                now - tr.hop_start,
                layer,
                expert,
            );
        }
        if !end.arrived {
            return;
        }
        // Arrived in the compute tier.
        self.c.bytes_loaded[ph] += tr.bytes;
        if tr.kind != Kind::Shared
            && let Some(c) = self.copies.cold.get_mut(tr.object as usize)
        {
            *c = true;
        }
        if tr.kind != Kind::Shared
            && !tr.orphan
            && self.copies.status[tr.object as usize] == Status::InFlight(tid)
        {
            self.copies.status[tr.object as usize] = Status::Ready;
        }
        if let Some(slot) = tr.waiter {
            self.step.slots[slot as usize].state = SlotState::Ready;
            self.step.ready.push_back(slot);
            self.next_compute();
        }
    }
}
