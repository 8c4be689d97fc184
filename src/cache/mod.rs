//! Which experts stay resident in fast memory.
//!
//! [`ExpertCache`] owns capacity and residency in bytes; its [`EvictionPolicy`] only orders
//! objects. Every lookup runs find, then (on a miss) evict until the object fits, then insert
//! once, as libCacheSim's `cache_get_base` does. An object larger than the whole cache, or one
//! the policy does not admit, is never inserted: the lookup is a miss that streams the expert.
//! [`TieredCache`] stacks caches into an exclusive hierarchy (hot above warm above the home
//! tier). `replay.rs` drives caches over traces.
//!
//! **Architecture Invariant:** policies never see time, bytes or hardware; only `ExpertCache`
//! knows capacity.

pub mod bank;
pub mod list;
pub mod policy;
pub mod replay;

mod arc;
mod belady;
mod ema;
mod fifo;
mod least_stale;
mod lfru;
mod lfu;
mod lru;
mod pinned;
mod sieve;

pub use arc::ArcPolicy;
pub use belady::BeladyPolicy;
pub use ema::EmaPolicy;
pub use fifo::FifoPolicy;
pub use least_stale::LeastStalePolicy;
pub use lfru::LfruPolicy;
pub use lfu::LfuPolicy;
pub use lru::LruPolicy;
pub use pinned::PinnedPolicy;
pub use policy::{EvictionPolicy, PolicyContext, PolicyKind};
pub use sieve::SievePolicy;

/// The result of one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The object was resident.
    Hit,
    /// The object was not resident; `inserted` says whether it is now.
    Miss {
        /// Whether the object was inserted.
        inserted: bool,
    },
}

/// One cache: a byte capacity, the resident objects and their sizes, and a policy.
#[derive(Debug)]
pub struct ExpertCache {
    capacity_bytes: u64,
    used_bytes: u64,
    /// Size of each resident object; 0 when not resident.
    resident_bytes: Vec<u64>,
    n_resident: u32,
    policy: Box<dyn EvictionPolicy>,
}

impl ExpertCache {
    /// A cache of `capacity_bytes` for object ids below `n_objects`.
    pub fn new(
        capacity_bytes: u64,
        n_objects: usize,
        policy: Box<dyn EvictionPolicy>,
    ) -> ExpertCache {
        ExpertCache {
            capacity_bytes,
            used_bytes: 0,
            resident_bytes: vec![0; n_objects],
            n_resident: 0,
            policy,
        }
    }

    /// Capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// Bytes held by resident objects.
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    /// Number of resident objects.
    pub fn len(&self) -> u32 {
        self.n_resident
    }

    /// Whether nothing is resident.
    pub fn is_empty(&self) -> bool {
        self.n_resident == 0
    }

    /// Whether `x` is resident.
    #[inline]
    pub fn contains(&self, x: u32) -> bool {
        self.resident_bytes[x as usize] != 0
    }

    /// Per object id, the bytes it holds in the cache (0 = not resident).
    #[inline]
    pub fn resident_bytes(&self) -> &[u64] {
        &self.resident_bytes
    }

    /// Starts an event (see the policy contract).
    #[inline]
    pub fn begin_event(&mut self) {
        self.policy.begin_event();
    }

    /// Looks up `x` of `size` bytes (≥ 1). Objects in `protected` are never evicted for it;
    /// evicted objects are appended to `evicted`.
    #[inline]
    pub fn lookup(
        &mut self,
        x: u32,
        size: u64,
        protected: &[u32],
        evicted: &mut Vec<u32>,
    ) -> Lookup {
        if self.resident_bytes[x as usize] != 0 {
            self.policy.on_hit(x);
            return Lookup::Hit;
        }
        self.policy.on_miss(x);
        let inserted = self.insert_after_miss(x, size, protected, evicted);
        Lookup::Miss { inserted }
    }

    /// Inserts `x` without a lookup (a demotion from a faster tier or a prefetch); returns
    /// whether it fits. The policy sees only `on_insert`.
    pub fn insert(&mut self, x: u32, size: u64, protected: &[u32], evicted: &mut Vec<u32>) -> bool {
        if self.contains(x) {
            return true;
        }
        self.policy.begin_insert(x);
        self.insert_after_miss(x, size, protected, evicted)
    }

    fn insert_after_miss(
        &mut self,
        x: u32,
        size: u64,
        protected: &[u32],
        evicted: &mut Vec<u32>,
    ) -> bool {
        debug_assert!(size > 0, "object sizes are at least one byte");
        if size > self.capacity_bytes || !self.policy.admit(x) {
            return false;
        }
        if !self.evict_until(self.capacity_bytes - size, protected, evicted) {
            // Everything resident belongs to the current event: stream this one.
            return false;
        }
        self.resident_bytes[x as usize] = size;
        self.used_bytes += size;
        self.n_resident += 1;
        self.policy.on_insert(x);
        true
    }

    /// Changes the capacity; a smaller one evicts by policy (nothing protected) until the
    /// resident objects fit or the policy gives none up, appending them to `evicted`.
    pub fn set_capacity(&mut self, capacity_bytes: u64, evicted: &mut Vec<u32>) {
        self.capacity_bytes = capacity_bytes;
        self.evict_until(capacity_bytes, &[], evicted);
    }

    /// Evicts by policy until at most `limit_bytes` are resident, never an object in
    /// `protected`, appending the victims to `evicted`; false if the policy gives none up first.
    fn evict_until(&mut self, limit_bytes: u64, protected: &[u32], evicted: &mut Vec<u32>) -> bool {
        while self.used_bytes > limit_bytes {
            let Some(v) = self.policy.evict(protected) else {
                return false;
            };
            let b = self.resident_bytes[v as usize];
            assert!(b != 0, "policy evicted non-resident object {v}");
            self.resident_bytes[v as usize] = 0;
            self.used_bytes -= b;
            self.n_resident -= 1;
            evicted.push(v);
        }
        true
    }

    /// Removes resident `x` (demotion, invalidation); returns its size, or 0 if absent.
    pub fn remove(&mut self, x: u32) -> u64 {
        let b = self.resident_bytes[x as usize];
        if b != 0 {
            self.policy.remove(x);
            self.resident_bytes[x as usize] = 0;
            self.used_bytes -= b;
            self.n_resident -= 1;
        }
        b
    }

    /// Empties the cache and resets the policy.
    pub fn reset(&mut self) {
        if self.n_resident > 0 {
            self.resident_bytes.iter_mut().for_each(|b| *b = 0);
        }
        self.used_bytes = 0;
        self.n_resident = 0;
        self.policy.reset();
    }
}

/// Where a tiered lookup found its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierLookup {
    /// Resident in tier `i` (0 = hottest). A hit below tier 0 promotes the object.
    Hit(usize),
    /// Resident nowhere: loaded from the home tier.
    Miss,
}

/// An exclusive cache hierarchy: each object is resident in at most one tier.
///
/// A lookup that hits tier 0 is a plain hit. A hit in a slower tier promotes the object: it
/// leaves that tier and enters tier 0. A miss loads the object from the home tier into tier 0.
/// Objects evicted from tier `i` are demoted into tier `i + 1` (and its victims into `i + 2`);
/// victims of the last tier are dropped (the home tier keeps every expert). An object too large
/// for a tier, or not admitted, goes to the next tier down.
///
/// Why exclusive: edge hierarchies are lopsided (640 KB of SRAM above 29 MB of PSRAM), and every
/// distinct expert the fast tiers hold saves a load from flash or an SD card; an inclusive
/// hierarchy would hold hot-tier experts twice. Demotions are copies between fast tiers, which
/// the simulator charges on their link.
#[derive(Debug)]
pub struct TieredCache {
    tiers: Vec<ExpertCache>,
    scratch: Vec<u32>,
    /// Objects that left the hierarchy in the last call (dropped from the last tier).
    pub dropped: Vec<u32>,
    /// (object, from tier, to tier) moves in the last call, demotions and promotions.
    pub moves: Vec<(u32, usize, usize)>,
}

impl TieredCache {
    /// A hierarchy of `tiers`, fastest first.
    pub fn new(tiers: Vec<ExpertCache>) -> TieredCache {
        assert!(!tiers.is_empty(), "a hierarchy needs at least one tier");
        TieredCache {
            tiers,
            scratch: Vec::new(),
            dropped: Vec::new(),
            moves: Vec::new(),
        }
    }

    /// The tiers, fastest first.
    pub fn tiers(&self) -> &[ExpertCache] {
        &self.tiers
    }

    /// The tier holding `x`, if any.
    pub fn tier_of(&self, x: u32) -> Option<usize> {
        self.tiers.iter().position(|t| t.contains(x))
    }

    /// Starts an event in every tier.
    pub fn begin_event(&mut self) {
        for t in &mut self.tiers {
            t.begin_event();
        }
    }

    /// Looks up `x`; `size_of` gives the size of any object (for demotions).
    pub fn lookup(
        &mut self,
        x: u32,
        size_of: &dyn Fn(u32) -> u64,
        protected: &[u32],
    ) -> TierLookup {
        self.dropped.clear();
        self.moves.clear();
        match self.tier_of(x) {
            Some(0) => {
                let mut unused = Vec::new();
                self.tiers[0].lookup(x, size_of(x), protected, &mut unused);
                debug_assert!(unused.is_empty());
                TierLookup::Hit(0)
            }
            Some(i) => {
                self.tiers[i].remove(x);
                self.place(x, size_of, 0, protected, Some(i));
                TierLookup::Hit(i)
            }
            None => {
                // Tier 0 records the miss for its policy, then the object is placed.
                let mut evicted = std::mem::take(&mut self.scratch);
                evicted.clear();
                let size = size_of(x);
                match self.tiers[0].lookup(x, size, protected, &mut evicted) {
                    Lookup::Miss { inserted: true } => {
                        self.demote_all(&evicted, size_of, 1, protected);
                    }
                    Lookup::Miss { inserted: false } => {
                        self.demote_all(&evicted, size_of, 1, protected);
                        self.place(x, size_of, 1, protected, None);
                    }
                    Lookup::Hit => unreachable!("tier_of said absent"),
                }
                self.scratch = evicted;
                TierLookup::Miss
            }
        }
    }

    /// Inserts `x` into tier `level` or below; victims cascade downwards.
    fn place(
        &mut self,
        x: u32,
        size_of: &dyn Fn(u32) -> u64,
        level: usize,
        protected: &[u32],
        from: Option<usize>,
    ) {
        if level >= self.tiers.len() {
            self.dropped.push(x);
            return;
        }
        let mut evicted = Vec::new();
        if self.tiers[level].insert(x, size_of(x), protected, &mut evicted) {
            if let Some(f) = from {
                self.moves.push((x, f, level));
            }
            self.demote_all(&evicted, size_of, level + 1, protected);
        } else {
            self.demote_all(&evicted, size_of, level + 1, protected);
            self.place(x, size_of, level + 1, protected, from);
        }
    }

    fn demote_all(
        &mut self,
        victims: &[u32],
        size_of: &dyn Fn(u32) -> u64,
        level: usize,
        protected: &[u32],
    ) {
        for &v in victims {
            self.place(v, size_of, level, protected, Some(level - 1));
        }
    }

    /// Empties every tier.
    pub fn reset(&mut self) {
        for t in &mut self.tiers {
            t.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lru(capacity: u64, n: usize) -> ExpertCache {
        ExpertCache::new(capacity, n, Box::new(LruPolicy::new(n)))
    }

    #[test]
    fn evicts_until_it_fits_and_never_inserts_oversized_objects() {
        let mut c = lru(10, 4);
        let mut ev = Vec::new();
        assert_eq!(
            c.lookup(0, 4, &[], &mut ev),
            Lookup::Miss { inserted: true }
        );
        assert_eq!(
            c.lookup(1, 4, &[], &mut ev),
            Lookup::Miss { inserted: true }
        );
        assert_eq!(c.lookup(0, 4, &[], &mut ev), Lookup::Hit);
        // 1 is the LRU; 6 bytes need both 1 (4 B) to go, leaving 0 (4 B) + 6 B = 10 B.
        assert_eq!(
            c.lookup(2, 6, &[], &mut ev),
            Lookup::Miss { inserted: true }
        );
        assert_eq!(ev, [1]);
        assert_eq!(c.used_bytes(), 10);
        assert_eq!(
            c.lookup(3, 11, &[], &mut ev),
            Lookup::Miss { inserted: false }
        );
        assert_eq!(c.used_bytes(), 10);
    }

    #[test]
    fn protected_objects_are_not_evicted() {
        let mut c = lru(2, 4);
        let mut ev = Vec::new();
        c.lookup(0, 1, &[0, 1], &mut ev);
        c.lookup(1, 1, &[0, 1], &mut ev);
        // A third expert of the same event cannot displace 0 or 1.
        assert_eq!(
            c.lookup(2, 1, &[0, 1, 2], &mut ev),
            Lookup::Miss { inserted: false }
        );
        assert!(c.contains(0) && c.contains(1) && ev.is_empty());
    }

    /// Every policy in a two-tier hierarchy, over a random stream with resets between
    /// requests: objects stay in at most one tier, tiers within capacity, and no policy's
    /// structures are corrupted by promotions and demotions (ARC's ghosts once were: a promoted
    /// object entered T1 while its ghost stayed in B1, and a later walk looped forever).
    #[test]
    fn every_policy_survives_a_tiered_hierarchy() {
        use rand::rngs::StdRng;
        use rand::{RngExt, SeedableRng};
        let n = 12usize;
        let popularity = std::sync::Arc::new(vec![1u64; n]);
        for kind in PolicyKind::all() {
            if kind.needs_oracle() {
                continue;
            }
            for (hot, warm) in [(3u32, 2u32), (1, 1), (4, 6)] {
                let ctx = |c: u32| PolicyContext {
                    n_objects: n as u32,
                    experts_per_layer: n as u32,
                    capacity_objects: c,
                    next_use: None,
                    popularity: Some(popularity.clone()),
                };
                let mut t = TieredCache::new(vec![
                    ExpertCache::new(hot as u64, n, kind.build(&ctx(hot))),
                    ExpertCache::new(warm as u64, n, kind.build(&ctx(warm))),
                ]);
                let mut rng = StdRng::seed_from_u64(7);
                let one = |_: u32| 1u64;
                for step in 0..3000 {
                    if step % 200 == 199 {
                        t.reset();
                    }
                    let k = rng.random_range(1..=2usize);
                    let sel: Vec<u32> = (0..k).map(|_| rng.random_range(0..n as u32)).collect();
                    t.begin_event();
                    for &x in &sel {
                        t.lookup(x, &one, &sel);
                    }
                    for (i, tier) in t.tiers().iter().enumerate() {
                        assert!(
                            tier.used_bytes() <= tier.capacity_bytes(),
                            "{kind} tier {i}"
                        );
                    }
                    for x in 0..n as u32 {
                        let holders = t.tiers().iter().filter(|c| c.contains(x)).count();
                        assert!(holders <= 1, "{kind}: object {x} in {holders} tiers");
                    }
                }
            }
        }
    }

    #[test]
    fn tiers_are_exclusive_with_demotion_and_promotion() {
        let mut t = TieredCache::new(vec![lru(1, 4), lru(2, 4)]);
        let one = |_: u32| 1u64;
        assert_eq!(t.lookup(0, &one, &[]), TierLookup::Miss);
        assert_eq!(t.lookup(1, &one, &[]), TierLookup::Miss); // 0 demoted to the warm tier
        assert_eq!((t.tier_of(0), t.tier_of(1)), (Some(1), Some(0)));
        assert_eq!(t.lookup(0, &one, &[]), TierLookup::Hit(1)); // promoted; 1 demoted
        assert_eq!((t.tier_of(0), t.tier_of(1)), (Some(0), Some(1)));
        t.lookup(2, &one, &[]);
        t.lookup(3, &one, &[]);
        // Warm tier holds 2 objects; the oldest demoted one (1) was dropped.
        assert_eq!(t.tier_of(1), None);
        assert_eq!(t.tiers()[0].len() + t.tiers()[1].len(), 3);
    }
}
