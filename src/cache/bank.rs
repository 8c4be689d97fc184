//! The one route-and-serve step: a bank of expert caches, one per MoE layer or one shared, as
//! the simulator, `moesim route` and the real host decode all use it.
//!
//! [`CacheMap`] owns the scope and the numbering of cache objects: expert `e` of layer `l` is
//! object [`ObjectId`] `e` of cache `l` (per-layer scope) or `l · experts + e` of the one cache
//! (shared scope). [`StreamBuilder`] lays a sequence of lookups out as one [`Stream`] per cache;
//! [`Oracles`] computes what a policy asks for from those streams (Belady's next use, the
//! popularity of the pinned policy) and is the one place a [`PolicyContext`] is made.
//! [`CacheBank`] routes a token against the residency of its layer's cache and serves the
//! selection as one atomic event (no expert of a selection evicts another).
//!
//! Besides the bank, every user of a cache keeps only what is its own: the simulator its
//! transfers and per-expert state, the route replay its quality metrics, the host decode its
//! buffers.

use std::sync::Arc;

use rayon::prelude::*;

use super::replay::{BetweenRequests, Scope, Stream, next_use, popularity};
use super::{ExpertCache, Lookup, PolicyContext, PolicyKind};
use crate::router::{Residency, RouteInput, Router, Selection};

/// An object of one cache: a routed expert, numbered within that cache (see [`CacheMap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(pub u32);

/// How the routed experts of a model map onto caches: the scope and the object numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheMap {
    /// One cache per layer, or one shared.
    pub scope: Scope,
    /// MoE layers.
    pub layers: u32,
    /// Routed experts per layer.
    pub experts: u32,
}

impl CacheMap {
    /// The map of `layers × experts` experts in `scope`.
    pub fn new(scope: Scope, layers: u32, experts: u32) -> CacheMap {
        CacheMap {
            scope,
            layers,
            experts,
        }
    }

    /// Number of caches: the layers in per-layer scope, 1 when shared.
    #[inline]
    pub fn n_caches(&self) -> usize {
        match self.scope {
            Scope::PerLayer => self.layers as usize,
            Scope::Shared => 1,
        }
    }

    /// Objects per cache: ids are `0..n_objects`.
    #[inline]
    pub fn n_objects(&self) -> u32 {
        match self.scope {
            Scope::PerLayer => self.experts,
            Scope::Shared => self.layers * self.experts,
        }
    }

    /// The experts of one layer in a cache: what the least-stale policy groups objects by
    /// (a per-layer cache is all one layer).
    #[inline]
    pub fn experts_per_layer(&self) -> u32 {
        self.experts
    }

    /// The cache holding layer `layer`'s experts.
    #[inline]
    pub fn cache_of(&self, layer: u32) -> usize {
        match self.scope {
            Scope::PerLayer => layer as usize,
            Scope::Shared => 0,
        }
    }

    /// The first object id of layer `layer` in its cache.
    #[inline]
    pub fn base(&self, layer: u32) -> u32 {
        match self.scope {
            Scope::PerLayer => 0,
            Scope::Shared => layer * self.experts,
        }
    }

    /// The object of expert `expert` of layer `layer`, in its cache.
    #[inline]
    pub fn object(&self, layer: u32, expert: u32) -> ObjectId {
        ObjectId(self.base(layer) + expert)
    }

    /// The flat index `layer · experts + expert` over every routed expert of the model, of
    /// object `o` of cache `cache`.
    #[inline]
    pub fn flat_of(&self, cache: usize, o: ObjectId) -> usize {
        match self.scope {
            Scope::PerLayer => cache * self.experts as usize + o.0 as usize,
            Scope::Shared => o.0 as usize,
        }
    }

    /// The MoE layer of object `o` of cache `cache`.
    #[inline]
    pub fn layer_of(&self, cache: usize, o: ObjectId) -> u32 {
        match self.scope {
            Scope::PerLayer => cache as u32,
            Scope::Shared => o.0 / self.experts,
        }
    }
}

/// Lays a sequence of lookups out as one [`Stream`] per cache, in order.
#[derive(Debug)]
pub struct StreamBuilder {
    map: CacheMap,
    streams: Vec<Stream>,
    last_request: Vec<Option<u32>>,
}

impl StreamBuilder {
    /// Empty streams for `map`.
    pub fn new(map: CacheMap) -> StreamBuilder {
        let n = map.n_caches();
        StreamBuilder {
            map,
            streams: (0..n)
                .map(|i| Stream {
                    layer: (map.scope == Scope::PerLayer).then_some(i as u32),
                    ..Stream::default()
                })
                .collect(),
            last_request: vec![None; n],
        }
    }

    /// Appends one event of `layer` for request `request`: the lookups of `experts`, in order.
    /// A stream records where each request starts (requests arrive contiguously).
    pub fn push(&mut self, request: u32, layer: u32, experts: impl IntoIterator<Item = u32>) {
        let ci = self.map.cache_of(layer);
        let base = self.map.base(layer);
        let s = &mut self.streams[ci];
        if self.last_request[ci] != Some(request) {
            self.last_request[ci] = Some(request);
            s.request_start.push(s.event_end.len() as u32);
        }
        s.objects.extend(experts.into_iter().map(|x| base + x));
        s.event_end.push(s.objects.len() as u32);
    }

    /// The streams, one per cache.
    pub fn finish(self) -> Vec<Stream> {
        self.streams
    }
}

/// What policies may know beyond the events, per cache: Belady's next-use table and the
/// popularity of objects, each computed only when a policy asks for it, and shared read-only
/// by every cache built from it.
#[derive(Debug, Clone, Default)]
pub struct Oracles {
    next_use: Vec<Option<Arc<Vec<u64>>>>,
    popularity: Vec<Option<Arc<Vec<u64>>>>,
}

impl Oracles {
    /// No oracle for any of `n_caches` caches (policies that need none).
    pub fn none(n_caches: usize) -> Oracles {
        Oracles {
            next_use: vec![None; n_caches],
            popularity: vec![None; n_caches],
        }
    }

    /// The oracles `policies` need, from `streams` (objects `0..n_objects` each); `streams` is
    /// called only if one of them needs an oracle.
    pub fn for_policies<'a, S: AsRef<[Stream]>>(
        policies: impl IntoIterator<Item = &'a PolicyKind>,
        n_caches: usize,
        n_objects: u32,
        between: BetweenRequests,
        streams: impl FnOnce() -> S,
    ) -> Oracles {
        let (mut need_next, mut need_pop) = (false, false);
        for p in policies {
            need_next |= p.needs_oracle();
            need_pop |= p.needs_popularity();
        }
        if !need_next && !need_pop {
            return Oracles::none(n_caches);
        }
        Oracles::from_streams(streams().as_ref(), n_objects, need_next, need_pop, between)
    }

    /// The next-use tables (when `need_next`) and popularities (when `need_popularity`) of
    /// `streams`.
    pub fn from_streams(
        streams: &[Stream],
        n_objects: u32,
        need_next: bool,
        need_popularity: bool,
        between: BetweenRequests,
    ) -> Oracles {
        Oracles {
            next_use: streams
                .par_iter()
                .map(|s| need_next.then(|| Arc::new(next_use(s, n_objects, between))))
                .collect(),
            popularity: streams
                .iter()
                .map(|s| need_popularity.then(|| Arc::new(popularity(s, n_objects))))
                .collect(),
        }
    }

    /// Whether the next-use table is there.
    pub fn has_next_use(&self) -> bool {
        self.next_use.iter().any(Option::is_some)
    }

    /// The context of cache `cache` of `map`, with room for `capacity_objects` objects.
    pub fn context(&self, map: &CacheMap, cache: usize, capacity_objects: u32) -> PolicyContext {
        PolicyContext {
            n_objects: map.n_objects(),
            experts_per_layer: map.experts_per_layer(),
            capacity_objects,
            next_use: self.next_use.get(cache).cloned().flatten(),
            popularity: self.popularity.get(cache).cloned().flatten(),
        }
    }
}

/// The caches of a model's routed experts, with the route-and-serve step every user shares.
///
/// Per (token, layer) step: [`CacheBank::route`] runs the router against the residency of the
/// layer's cache; [`CacheBank::begin_event`] opens the atomic event of the selection (its
/// experts are protected from each other); [`CacheBank::lookup`] serves one expert, reporting
/// the experts it evicted as flat indices (`layer · experts + expert`).
#[derive(Debug)]
pub struct CacheBank {
    map: CacheMap,
    caches: Vec<ExpertCache>,
    /// The cache the protected objects belong to.
    protected_cache: usize,
    protected: Vec<u32>,
    /// Objects the last lookup evicted, in the cache `evicted_cache`.
    evicted_local: Vec<u32>,
    evicted_cache: usize,
}

impl CacheBank {
    /// `map.n_caches()` caches of `capacity_bytes` each, running `policy`; a cache's policy
    /// sizes its structures for `capacity_bytes / object_bytes` objects.
    pub fn new(
        map: CacheMap,
        capacity_bytes: u64,
        object_bytes: u64,
        policy: &PolicyKind,
        oracles: &Oracles,
    ) -> CacheBank {
        let capacity_objects = (capacity_bytes / object_bytes.max(1)).min(u32::MAX as u64) as u32;
        let caches = (0..map.n_caches())
            .map(|ci| {
                let ctx = oracles.context(&map, ci, capacity_objects);
                ExpertCache::new(capacity_bytes, map.n_objects() as usize, policy.build(&ctx))
            })
            .collect();
        CacheBank {
            map,
            caches,
            protected_cache: 0,
            protected: Vec::new(),
            evicted_local: Vec::new(),
            evicted_cache: 0,
        }
    }

    /// The object numbering.
    #[inline]
    pub fn map(&self) -> &CacheMap {
        &self.map
    }

    /// The caches, one per layer or one shared.
    pub fn caches(&self) -> &[ExpertCache] {
        &self.caches
    }

    /// Routes one (token, layer) against the residency of the layer's cache: a load of
    /// `load_bytes` "has room" when it needs no eviction.
    #[inline]
    pub fn route(
        &self,
        router: &mut dyn Router,
        input: &RouteInput<'_>,
        load_bytes: u64,
        out: &mut Selection,
    ) {
        let cache = &self.caches[self.map.cache_of(input.layer)];
        let base = self.map.base(input.layer) as usize;
        let resident = &cache.resident_bytes()[base..base + self.map.experts as usize];
        let room = cache.used_bytes() + load_bytes <= cache.capacity_bytes();
        router.route(input, &Residency::from_resident_bytes(resident, room), out);
    }

    /// Opens the atomic event of `layer` whose selection (or union of selections) is
    /// `experts`: none of them may be evicted while the event's lookups run.
    #[inline]
    pub fn begin_event(&mut self, layer: u32, experts: &[u16]) {
        self.protect(layer, experts);
        self.caches[self.map.cache_of(layer)].begin_event();
    }

    /// Protects `experts` of `layer` from eviction by the lookups that follow, without
    /// opening an event for the policy (a prefetch is the next event's lookups made early).
    #[inline]
    pub fn protect(&mut self, layer: u32, experts: &[u16]) {
        self.protected_cache = self.map.cache_of(layer);
        self.protected.clear();
        self.protect_also(layer, experts);
    }

    /// Adds `experts` of `layer` to the protected set when they share its cache.
    #[inline]
    pub fn protect_also(&mut self, layer: u32, experts: &[u16]) {
        if self.map.cache_of(layer) != self.protected_cache {
            return;
        }
        let base = self.map.base(layer);
        self.protected
            .extend(experts.iter().map(|&x| base + x as u32));
    }

    /// Looks up expert `expert` of `layer` (`bytes` large), never evicting a protected expert.
    /// The experts it evicted are in [`CacheBank::evicted`] until the next lookup.
    #[inline]
    pub fn lookup(&mut self, layer: u32, expert: u32, bytes: u64) -> Lookup {
        let ci = self.map.cache_of(layer);
        let o = self.map.object(layer, expert);
        self.evicted_local.clear();
        self.evicted_cache = ci;
        self.caches[ci].lookup(o.0, bytes, &self.protected, &mut self.evicted_local)
    }

    /// The experts the last lookup evicted, as flat indices.
    #[inline]
    pub fn evicted(&self) -> impl Iterator<Item = usize> + '_ {
        let ci = self.evicted_cache;
        self.evicted_local
            .iter()
            .map(move |&v| self.map.flat_of(ci, ObjectId(v)))
    }

    /// Whether expert `expert` of `layer` is resident.
    #[inline]
    pub fn contains(&self, layer: u32, expert: u32) -> bool {
        self.caches[self.map.cache_of(layer)].contains(self.map.object(layer, expert).0)
    }

    /// Drops expert `expert` of `layer` from its cache (a precision switch, a cancelled
    /// prefetch); returns the bytes it held (0 if absent).
    pub fn remove(&mut self, layer: u32, expert: u32) -> u64 {
        let ci = self.map.cache_of(layer);
        self.caches[ci].remove(self.map.object(layer, expert).0)
    }

    /// Sets every cache's capacity to `capacity_bytes`, evicting by policy where it shrinks;
    /// the evicted experts are appended to `evicted` as flat indices.
    pub fn set_capacity(&mut self, capacity_bytes: u64, evicted: &mut Vec<usize>) {
        let mut local = Vec::new();
        for ci in 0..self.caches.len() {
            if self.caches[ci].capacity_bytes() == capacity_bytes {
                continue;
            }
            local.clear();
            self.caches[ci].set_capacity(capacity_bytes, &mut local);
            evicted.extend(local.iter().map(|&v| self.map.flat_of(ci, ObjectId(v))));
        }
    }

    /// Empties every cache.
    pub fn reset(&mut self) {
        self.caches.iter_mut().for_each(ExpertCache::reset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_map_both_ways_in_both_scopes() {
        for scope in [Scope::PerLayer, Scope::Shared] {
            let m = CacheMap::new(scope, 3, 4);
            for layer in 0..3 {
                for e in 0..4 {
                    let ci = m.cache_of(layer);
                    let o = m.object(layer, e);
                    assert!(o.0 < m.n_objects());
                    assert_eq!(m.flat_of(ci, o), (layer * 4 + e) as usize);
                    assert_eq!(m.layer_of(ci, o), layer);
                }
            }
        }
    }

    #[test]
    fn streams_start_requests_per_cache() {
        let m = CacheMap::new(Scope::PerLayer, 2, 4);
        let mut b = StreamBuilder::new(m);
        b.push(0, 0, [1, 2]);
        b.push(0, 1, [3]);
        b.push(1, 0, [1]);
        let s = b.finish();
        assert_eq!(s[0].objects, [1, 2, 1]);
        assert_eq!(s[0].event_end, [2, 3]);
        assert_eq!(s[0].request_start, [0, 1]);
        assert_eq!(s[1].request_start, [0]);
        let shared = CacheMap::new(Scope::Shared, 2, 4);
        let mut b = StreamBuilder::new(shared);
        b.push(0, 1, [3]);
        assert_eq!(b.finish()[0].objects, [7]);
    }

    #[test]
    fn a_selection_never_evicts_its_own_experts() {
        let m = CacheMap::new(Scope::PerLayer, 1, 4);
        let lru: PolicyKind = "lru".parse().unwrap();
        let mut bank = CacheBank::new(m, 2, 1, &lru, &Oracles::none(1));
        bank.begin_event(0, &[0, 1, 2]);
        assert_eq!(bank.lookup(0, 0, 1), Lookup::Miss { inserted: true });
        assert_eq!(bank.lookup(0, 1, 1), Lookup::Miss { inserted: true });
        assert_eq!(bank.lookup(0, 2, 1), Lookup::Miss { inserted: false });
        bank.begin_event(0, &[3]);
        assert_eq!(bank.lookup(0, 3, 1), Lookup::Miss { inserted: true });
        assert_eq!(bank.evicted().collect::<Vec<_>>(), [0]);
    }
}
