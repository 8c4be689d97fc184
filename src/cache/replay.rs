//! Replaying traces through caches: the access streams of each cache, the oracles, and the
//! hit counts of every (policy, capacity) pair.
//!
//! A [`Workload`] holds one [`Stream`] per cache: one per MoE layer in per-layer scope (objects
//! are expert ids), or a single stream in shared scope (object `layer · experts + expert`).
//! Streams are compact arrays, loaded once and shared read-only by parallel jobs.
//!
//! Semantics:
//! - *sequential*: each expert of a selection is its own event and lookup, in rank order, with
//!   nothing protected: exactly libCacheSim's semantics (used for cross-checks).
//! - *atomic*: a token's selection at a cache is one event; its experts are looked up in rank
//!   order and none may evict another of the same selection. If the capacity cannot hold the
//!   whole selection, the experts that do not fit are streamed (missed, not inserted).
//!
//! Between requests every cache is reset (the default, as published per-prompt hit tables do)
//! or kept warm. Cold misses always count.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;

use super::bank::{CacheMap, Oracles, StreamBuilder};
use super::{ExpertCache, Lookup, PolicyKind, TierLookup, TieredCache};
use crate::error::{Error, InputError, Result};
use crate::trace::RoutingRecord;
use crate::trace::native::TraceReader;

/// One cache per layer, or one for all layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// One cache per MoE layer, each with the same capacity.
    PerLayer,
    /// One cache shared by all layers.
    Shared,
}

/// How the experts of one selection reach the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Semantics {
    /// One expert at a time, nothing protected (libCacheSim).
    Sequential,
    /// A token's selection is one event whose experts cannot evict each other.
    Atomic,
}

/// What happens to caches when a new request starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BetweenRequests {
    /// Empty every cache (and policy state).
    Reset,
    /// Keep caches warm across requests.
    Keep,
}

/// The lookups of one cache, in order.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    /// Object of every lookup.
    pub objects: Vec<u32>,
    /// Exclusive end offset in `objects` of each event.
    pub event_end: Vec<u32>,
    /// Index of the first event of each request, ascending.
    pub request_start: Vec<u32>,
    /// The MoE layer of a per-layer stream; `None` for a shared stream.
    pub layer: Option<u32>,
}

/// The access streams of a trace and the sizes of its objects.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Scope the streams were built for.
    pub scope: Scope,
    /// MoE layers (1 for a flat libCacheSim trace).
    pub layers: u32,
    /// Experts per layer (object ids per layer).
    pub experts: u32,
    /// Object ids per stream are `0..n_objects`.
    pub n_objects: u32,
    /// Size of each object in bytes (indexed by object id of the streams).
    pub sizes: Arc<Vec<u64>>,
    /// The reference size of one expert, for capacities given in experts.
    pub expert_bytes: u64,
    /// One stream per cache.
    pub streams: Vec<Stream>,
}

impl Workload {
    /// Builds the streams of a native trace, every expert `expert_bytes` large.
    pub fn from_trace(path: &Path, scope: Scope, expert_bytes: u64) -> Result<Workload> {
        let mut reader = TraceReader::open(path)?;
        let meta = reader.meta().clone();
        let (l, e) = (meta.layers, meta.experts);
        let map = CacheMap::new(scope, l, e);
        let mut streams = StreamBuilder::new(map);
        let mut r = RoutingRecord::default();
        let mut n_records = 0u64;
        while reader.next_record(&mut r)? {
            streams.push(r.request, r.layer, r.experts.iter().map(|&x| x as u32));
            n_records += 1;
        }
        if n_records == 0 {
            return Err(InputError::new(
                path.display().to_string(),
                "the trace holds no routing records: nothing to replay",
            )
            .into());
        }
        let n_objects = map.n_objects();
        Ok(Workload {
            scope,
            layers: l,
            experts: e,
            n_objects,
            sizes: Arc::new(vec![expert_bytes.max(1); n_objects as usize]),
            expert_bytes: expert_bytes.max(1),
            streams: streams.finish(),
        })
    }

    /// Reads a libCacheSim oracleGeneral file as one stream of single-object events. Object
    /// ids are renumbered densely in order of first appearance; an object's size is its first
    /// request's (a later, different size is an error); `ignore_size` makes every size 1.
    pub fn from_oracle_general(path: &Path, ignore_size: bool) -> Result<Workload> {
        let mut f = crate::input::open(path)?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
        let file = path.display().to_string();
        if bytes.is_empty() {
            return Err(InputError::new(&file, "no records: nothing to replay").into());
        }
        if bytes.len() % 24 != 0 {
            return Err(InputError::new(
                &file,
                format!(
                    "{} bytes is not a whole number of 24-byte oracleGeneral records",
                    bytes.len()
                ),
            )
            .into());
        }
        // Ids are renumbered through a table when they are small (the common case: exported
        // MoE traces), through a hash map otherwise.
        let n_records = bytes.len() / 24;
        let max_id = bytes
            .chunks_exact(24)
            .map(|r| u64::from_le_bytes(r[4..12].try_into().expect("8 bytes")))
            .max();
        let mut table: Vec<u32> = match max_id {
            Some(m) if m < (1 << 24) => vec![u32::MAX; m as usize + 1],
            _ => Vec::new(),
        };
        let mut ids: HashMap<u64, u32> = HashMap::new();
        let mut sizes: Vec<u64> = Vec::new();
        let mut s = Stream {
            request_start: vec![0],
            objects: Vec::with_capacity(n_records),
            event_end: Vec::with_capacity(n_records),
            layer: None,
        };
        for (i, rec) in bytes.chunks_exact(24).enumerate() {
            let id = u64::from_le_bytes(rec[4..12].try_into().expect("8 bytes"));
            let size = u32::from_le_bytes(rec[12..16].try_into().expect("4 bytes")) as u64;
            let size = if ignore_size { 1 } else { size };
            if size == 0 {
                return Err(
                    InputError::new(&file, format!("record {i}: object {id} has size 0")).into(),
                );
            }
            let next = sizes.len() as u32;
            let dense = if table.is_empty() {
                *ids.entry(id).or_insert(next)
            } else {
                let slot = &mut table[id as usize];
                if *slot == u32::MAX {
                    *slot = next;
                }
                *slot
            };
            if dense == next {
                sizes.push(size);
            } else if sizes[dense as usize] != size {
                return Err(InputError::new(
                    &file,
                    format!(
                        "record {i}: object {id} changes size from {} to {size}",
                        sizes[dense as usize]
                    ),
                )
                .into());
            }
            s.objects.push(dense);
            s.event_end.push(s.objects.len() as u32);
        }
        let n = sizes.len() as u32;
        // The reference object size (capacities given in objects; the object count of
        // count-based structures such as ARC's ghosts) is the mean size.
        let mean = if sizes.is_empty() {
            1
        } else {
            (sizes.iter().sum::<u64>() as f64 / sizes.len() as f64).round() as u64
        };
        Ok(Workload {
            scope: Scope::Shared,
            layers: 1,
            experts: n.max(1),
            n_objects: n.max(1),
            sizes: Arc::new(if sizes.is_empty() { vec![1] } else { sizes }),
            expert_bytes: mean.max(1),
            streams: vec![s],
        })
    }

    /// The object numbering of the streams.
    pub fn cache_map(&self) -> CacheMap {
        match self.scope {
            Scope::PerLayer => CacheMap::new(Scope::PerLayer, self.layers, self.experts),
            // A flat oracleGeneral stream: its objects are one layer's.
            Scope::Shared => CacheMap::new(
                Scope::Shared,
                self.n_objects / self.experts.max(1),
                self.experts,
            ),
        }
    }

    /// What `policies` need of the streams (Belady's next use, the pinned policy's popularity).
    pub fn oracles(&self, policies: &[PolicyKind], between: BetweenRequests) -> Oracles {
        Oracles::for_policies(
            policies,
            self.streams.len(),
            self.n_objects,
            between,
            || &self.streams,
        )
    }

    /// Total lookups.
    pub fn accesses(&self) -> u64 {
        self.streams.iter().map(|s| s.objects.len() as u64).sum()
    }

    /// The layer of object `x` of stream `s`.
    #[inline]
    pub fn layer_of(&self, s: &Stream, x: u32) -> u32 {
        match s.layer {
            Some(l) => l,
            None => x / self.experts,
        }
    }
}

/// For every lookup of `s`, the index of the next lookup of the same object (`u64::MAX` if
/// none). With `between == Reset`, uses in later requests do not count: the cache will have
/// been emptied by then.
pub fn next_use(s: &Stream, n_objects: u32, between: BetweenRequests) -> Vec<u64> {
    let n = s.objects.len();
    let mut next = vec![u64::MAX; n];
    let mut seen: Vec<u64> = vec![u64::MAX; n_objects as usize];
    // Walk events backwards so request boundaries are known per lookup.
    let mut request_idx = s.request_start.len();
    let mut event = s.event_end.len();
    let mut end = n;
    while event > 0 {
        event -= 1;
        let start = if event == 0 {
            0
        } else {
            s.event_end[event - 1] as usize
        };
        for i in (start..end).rev() {
            let x = s.objects[i] as usize;
            next[i] = seen[x];
            seen[x] = i as u64;
        }
        end = start;
        if between == BetweenRequests::Reset
            && request_idx > 0
            && s.request_start[request_idx - 1] as usize == event
        {
            request_idx -= 1;
            seen.iter_mut().for_each(|v| *v = u64::MAX);
        }
    }
    next
}

/// Selections per object over a stream.
pub fn popularity(s: &Stream, n_objects: u32) -> Vec<u64> {
    let mut p = vec![0u64; n_objects as usize];
    for &x in &s.objects {
        p[x as usize] += 1;
    }
    p
}

/// A cache capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Capacity {
    /// Experts per layer (shared scope: times the number of layers).
    Experts(f64),
    /// Total bytes over all caches (per-layer scope: split evenly over the layers).
    Bytes(u64),
}

impl Capacity {
    /// Bytes of each cache of `w`.
    pub fn per_cache_bytes(&self, w: &Workload) -> u64 {
        let per_layer_scope = w.scope == Scope::PerLayer;
        match *self {
            Capacity::Experts(n) => {
                let per_layer = (n * w.expert_bytes as f64).floor() as u64;
                if per_layer_scope {
                    per_layer
                } else {
                    per_layer * w.layers as u64
                }
            }
            Capacity::Bytes(b) => {
                if per_layer_scope {
                    b / w.layers as u64
                } else {
                    b
                }
            }
        }
    }

    /// Total bytes over all caches of `w`.
    pub fn total_bytes(&self, w: &Workload) -> u64 {
        self.per_cache_bytes(w) * w.streams.len() as u64
    }

    /// Capacity in experts per layer.
    pub fn experts_per_layer(&self, w: &Workload) -> f64 {
        match *self {
            Capacity::Experts(n) => n,
            Capacity::Bytes(_) => {
                self.total_bytes(w) as f64 / (w.layers as f64 * w.expert_bytes as f64)
            }
        }
    }
}

/// Options of a replay.
#[derive(Debug, Clone, Copy)]
pub struct ReplayOptions {
    /// Event semantics.
    pub semantics: Semantics,
    /// Reset or keep caches between requests.
    pub between: BetweenRequests,
    /// An optional warm tier below each cache (exclusive hierarchy), in the same units.
    pub warm: Option<Capacity>,
}

/// Counters of one layer (or of everything).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Lookups.
    pub accesses: u64,
    /// Lookups that found the expert in the (hot) cache.
    pub hits: u64,
    /// Lookups that found it in the warm tier (promoted).
    pub warm_hits: u64,
    /// Bytes looked up.
    pub bytes: u64,
    /// Bytes of hot hits.
    pub hit_bytes: u64,
    /// Objects evicted from the hot cache.
    pub evictions: u64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.accesses += o.accesses;
        self.hits += o.hits;
        self.warm_hits += o.warm_hits;
        self.bytes += o.bytes;
        self.hit_bytes += o.hit_bytes;
        self.evictions += o.evictions;
    }

    /// Hits over lookups.
    pub fn hit_rate(&self) -> f64 {
        if self.accesses == 0 {
            f64::NAN
        } else {
            self.hits as f64 / self.accesses as f64
        }
    }

    /// Hit bytes over looked-up bytes.
    pub fn byte_hit_rate(&self) -> f64 {
        if self.bytes == 0 {
            f64::NAN
        } else {
            self.hit_bytes as f64 / self.bytes as f64
        }
    }
}

/// The result of one (policy, capacity) replay.
#[derive(Debug, Clone)]
pub struct ReplayResult {
    /// The policy.
    pub policy: PolicyKind,
    /// The capacity.
    pub capacity: Capacity,
    /// Counters per layer.
    pub per_layer: Vec<Counters>,
    /// Counters of all layers.
    pub total: Counters,
    /// Wall time of the replay loop (not of loading or of the oracles).
    pub elapsed: std::time::Duration,
}

/// Replays `w` through `policy` at `capacity`.
pub fn replay(
    w: &Workload,
    oracles: &Oracles,
    policy: &PolicyKind,
    capacity: Capacity,
    opts: ReplayOptions,
) -> Result<ReplayResult> {
    if opts.warm.is_some() && policy.needs_oracle() {
        return Err(Error::usage(
            "Belady is defined for a single cache tier, not with --warm-capacity",
        ));
    }
    let started = std::time::Instant::now();
    let mut per_layer = vec![Counters::default(); w.layers as usize];
    let cap_bytes = capacity.per_cache_bytes(w);
    let capacity_objects = (cap_bytes / w.expert_bytes).min(u32::MAX as u64) as u32;
    let map = w.cache_map();
    for (si, s) in w.streams.iter().enumerate() {
        let ctx = oracles.context(&map, si, capacity_objects);
        match opts.warm {
            None => {
                let cache = ExpertCache::new(cap_bytes, w.n_objects as usize, policy.build(&ctx));
                run_single(w, s, cache, opts, &mut per_layer);
            }
            Some(warm) => {
                let warm_bytes = warm.per_cache_bytes(w);
                let warm_ctx = oracles.context(
                    &map,
                    si,
                    (warm_bytes / w.expert_bytes).min(u32::MAX as u64) as u32,
                );
                let tiers = TieredCache::new(vec![
                    ExpertCache::new(cap_bytes, w.n_objects as usize, policy.build(&ctx)),
                    ExpertCache::new(warm_bytes, w.n_objects as usize, policy.build(&warm_ctx)),
                ]);
                run_tiered(w, s, tiers, opts, &mut per_layer);
            }
        }
    }
    let mut total = Counters::default();
    for c in &per_layer {
        total.add(c);
    }
    Ok(ReplayResult {
        policy: policy.clone(),
        capacity,
        per_layer,
        total,
        elapsed: started.elapsed(),
    })
}

fn run_single(
    w: &Workload,
    s: &Stream,
    mut cache: ExpertCache,
    opts: ReplayOptions,
    per_layer: &mut [Counters],
) {
    let sizes = &w.sizes;
    let mut evicted = Vec::new();
    let mut next_request = 0usize;
    let mut start = 0usize;
    for (e, &end) in s.event_end.iter().enumerate() {
        if next_request < s.request_start.len() && s.request_start[next_request] as usize == e {
            if e > 0 && opts.between == BetweenRequests::Reset {
                cache.reset();
            }
            next_request += 1;
        }
        let objs = &s.objects[start..end as usize];
        if opts.semantics == Semantics::Atomic {
            cache.begin_event();
        }
        for &x in objs {
            let protected: &[u32] = match opts.semantics {
                Semantics::Atomic => objs,
                Semantics::Sequential => {
                    cache.begin_event();
                    &[]
                }
            };
            let size = sizes[x as usize];
            evicted.clear();
            let hit = cache.lookup(x, size, protected, &mut evicted) == Lookup::Hit;
            let c = &mut per_layer[w.layer_of(s, x) as usize];
            c.accesses += 1;
            c.bytes += size;
            if hit {
                c.hits += 1;
                c.hit_bytes += size;
            }
            for &v in &evicted {
                per_layer[w.layer_of(s, v) as usize].evictions += 1;
            }
        }
        start = end as usize;
    }
}

fn run_tiered(
    w: &Workload,
    s: &Stream,
    mut cache: TieredCache,
    opts: ReplayOptions,
    per_layer: &mut [Counters],
) {
    let sizes = w.sizes.clone();
    let size_of = move |x: u32| sizes[x as usize];
    let mut next_request = 0usize;
    let mut start = 0usize;
    for (e, &end) in s.event_end.iter().enumerate() {
        if next_request < s.request_start.len() && s.request_start[next_request] as usize == e {
            if e > 0 && opts.between == BetweenRequests::Reset {
                cache.reset();
            }
            next_request += 1;
        }
        let objs = &s.objects[start..end as usize];
        if opts.semantics == Semantics::Atomic {
            cache.begin_event();
        }
        for &x in objs {
            let protected: &[u32] = match opts.semantics {
                Semantics::Atomic => objs,
                Semantics::Sequential => {
                    cache.begin_event();
                    &[]
                }
            };
            let outcome = cache.lookup(x, &size_of, protected);
            let size = size_of(x);
            let c = &mut per_layer[w.layer_of(s, x) as usize];
            c.accesses += 1;
            c.bytes += size;
            match outcome {
                TierLookup::Hit(0) => {
                    c.hits += 1;
                    c.hit_bytes += size;
                }
                TierLookup::Hit(_) => c.warm_hits += 1,
                TierLookup::Miss => {}
            }
            for &(v, from, _) in &cache.moves {
                if from == 0 && v != x {
                    per_layer[w.layer_of(s, v) as usize].evictions += 1;
                }
            }
        }
        start = end as usize;
    }
}

/// Replays every (policy, capacity) pair in parallel; results come back in input order
/// (policies outer, capacities inner), whatever the thread count.
pub fn replay_all(
    w: &Workload,
    policies: &[PolicyKind],
    capacities: &[Capacity],
    opts: ReplayOptions,
) -> Result<Vec<ReplayResult>> {
    let oracles = w.oracles(policies, opts.between);
    let jobs: Vec<(&PolicyKind, Capacity)> = policies
        .iter()
        .flat_map(|p| capacities.iter().map(move |&c| (p, c)))
        .collect();
    jobs.par_iter()
        .map(|(p, c)| replay(w, &oracles, p, *c, opts))
        .collect()
}

/// The "gap captured" of `policy_hits` between LRU and Belady: (policy − LRU) / (Belady − LRU);
/// NaN when Belady does not beat LRU.
pub fn gap_captured(policy_hits: u64, lru_hits: u64, belady_hits: u64) -> f64 {
    let denominator = belady_hits as f64 - lru_hits as f64;
    if denominator <= 0.0 {
        f64::NAN
    } else {
        (policy_hits as f64 - lru_hits as f64) / denominator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(objects: &[u32], events: &[u32], requests: &[u32]) -> Stream {
        Stream {
            objects: objects.to_vec(),
            event_end: events.to_vec(),
            request_start: requests.to_vec(),
            layer: None,
        }
    }

    #[test]
    fn next_use_respects_request_resets() {
        // Two requests: [0 1 0] [1 0].
        let s = stream(&[0, 1, 0, 1, 0], &[1, 2, 3, 4, 5], &[0, 3]);
        assert_eq!(
            next_use(&s, 2, BetweenRequests::Keep),
            vec![2, 3, 4, u64::MAX, u64::MAX]
        );
        assert_eq!(
            next_use(&s, 2, BetweenRequests::Reset),
            vec![2, u64::MAX, u64::MAX, u64::MAX, u64::MAX]
        );
    }

    #[test]
    fn capacities_in_experts_and_bytes() {
        let w = Workload {
            scope: Scope::PerLayer,
            layers: 4,
            experts: 8,
            n_objects: 8,
            sizes: Arc::new(vec![100; 8]),
            expert_bytes: 100,
            streams: vec![Stream::default(); 4],
        };
        assert_eq!(Capacity::Experts(2.5).per_cache_bytes(&w), 250);
        assert_eq!(Capacity::Experts(2.0).total_bytes(&w), 800);
        assert_eq!(Capacity::Bytes(1000).per_cache_bytes(&w), 250);
        assert_eq!(Capacity::Bytes(1000).experts_per_layer(&w), 2.5);
    }

    #[test]
    fn gap_captured_formula() {
        assert_eq!(gap_captured(150, 100, 200), 0.5);
        assert!(gap_captured(150, 100, 100).is_nan());
    }
}

/// The `zipf64` fixture of `../shared/reference/cache-semantics.md` §7 (generated by
/// `scripts/crosscheck_libcachesim.py zipf64` from numpy's `default_rng(42)`), as a workload.
#[cfg(test)]
pub(crate) fn zipf64_fixture(ignore_size: bool) -> Workload {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let ids = std::fs::read(format!("{dir}/zipf64.ids")).expect("fixture");
    let sizes: Vec<u64> = std::fs::read_to_string(format!("{dir}/zipf64.sizes"))
        .expect("fixture")
        .lines()
        .map(|l| l.parse().expect("size"))
        .collect();
    // Object ids 1..=64 in the file become 0..=63 here (dense, first-appearance order is not
    // needed: every id is present).
    let objects: Vec<u32> = ids.iter().map(|&i| i as u32 - 1).collect();
    let n = objects.len() as u32;
    Workload {
        scope: Scope::Shared,
        layers: 1,
        experts: 64,
        n_objects: 64,
        sizes: Arc::new(if ignore_size { vec![1; 64] } else { sizes }),
        expert_bytes: 1,
        streams: vec![Stream {
            objects,
            event_end: (1..=n).collect(),
            request_start: vec![0],
            layer: None,
        }],
    }
}

#[cfg(test)]
mod golden {
    use super::*;

    const SLOTS: [u64; 4] = [4, 8, 16, 32];
    const WORKING_SET: u64 = 148_766_720;

    fn hits(w: &Workload, policy: &str, capacity: Capacity) -> u64 {
        let p: PolicyKind = policy.parse().unwrap();
        let opts = ReplayOptions {
            semantics: Semantics::Sequential,
            between: BetweenRequests::Keep,
            warm: None,
        };
        let oracles = w.oracles(std::slice::from_ref(&p), opts.between);
        replay(w, &oracles, &p, capacity, opts).unwrap().total.hits
    }

    /// libCacheSim 0.3.5's hit counts on zipf64 (cache-semantics.md §7 for LRU, FIFO, LFU and
    /// Belady; ARC and Sieve measured with the same package by the cross-check script).
    #[test]
    fn zipf64_slot_mode_matches_libcachesim() {
        let w = zipf64_fixture(true);
        let expected: [(&str, [u64; 4]); 6] = [
            ("lru", [49395, 81019, 118414, 158388]),
            ("fifo", [45246, 72048, 106616, 148744]),
            ("lfu", [78427, 96986, 132649, 167061]),
            ("belady", [92201, 125429, 155519, 181708]),
            ("arc", [64649, 93567, 123726, 158389]),
            ("sieve", [66780, 100642, 133358, 165696]),
        ];
        for (policy, counts) in expected {
            for (slots, want) in SLOTS.iter().zip(counts) {
                assert_eq!(
                    hits(&w, policy, Capacity::Bytes(*slots)),
                    want,
                    "{policy} at {slots} slots"
                );
            }
        }
    }

    #[test]
    fn zipf64_byte_mode_matches_libcachesim() {
        let w = zipf64_fixture(false);
        let expected: [(&str, [u64; 3]); 5] = [
            ("lru", [71593, 121524, 160972]),
            ("fifo", [64371, 109442, 150848]),
            ("lfu", [102605, 138266, 174769]),
            ("belady", [114476, 157542, 183393]),
            ("sieve", [91052, 136495, 169558]),
        ];
        for (policy, counts) in expected {
            for (fraction, want) in [0.10, 0.25, 0.50].iter().zip(counts) {
                let bytes = (WORKING_SET as f64 * fraction) as u64;
                assert_eq!(
                    hits(&w, policy, Capacity::Bytes(bytes)),
                    want,
                    "{policy} at {fraction}"
                );
            }
        }
    }
}
