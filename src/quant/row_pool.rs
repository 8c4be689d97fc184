//! The helper threads that share a matrix product's rows with the calling thread.
//!
//! A matrix-vector product on two cores takes about a millisecond, and products come back to
//! back (a token's experts, a benchmark's repetitions). rayon's idle workers go to sleep within
//! microseconds, so each product paid a wake-up, and on a VM a sleeping vCPU wakes slowly: on the
//! development VM (`cargo run --release --example gemv_split -- q4_k 300`, and `q6_k`, 4096 x
//! 14336, int8 kernels, two threads) rayon's split took 1-8 % longer at the median and 2-21 %
//! longer on average than two threads that never sleep, its 90th percentile up to 1.6 times the
//! median. ggml keeps its threads
//! polling for the next operation; so does this pool, for a while: a helper spins for
//! [`SPIN_NS`] after its last task, then parks until the next product.
//!
//! One product runs on the pool at a time. A call that finds it busy (another thread's product,
//! or a test running beside another) runs all its tasks itself: every task writes its own rows,
//! so the result does not depend on who ran which.
//!
//! Safety of the shared job: a product's tasks are claimed by compare-and-swap on one word that
//! holds the product's generation, its task count, the helpers it wants and the next task. A
//! helper touches the job only after a claim succeeds, a claim can only succeed while that
//! product is running, and the product does not return (its closure stays alive) until every
//! claimed task has finished.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a helper polls for the next product before it parks.
pub(crate) const SPIN_NS: u64 = 300_000;

/// The most tasks one product is cut into (the claim word's field).
pub(crate) const MAX_TASKS: usize = 0xffff;

/// The most helper threads (the claim word's field).
const MAX_HELPERS: usize = 0xff;

/// A task of a product: runs task `i`.
type Task<'a> = &'a (dyn Fn(usize) + Sync);

/// The claim word: generation (24 bits) | helpers wanted (8) | tasks (16) | next task (16).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Claim {
    generation: u32,
    helpers: usize,
    tasks: usize,
    next: usize,
}

impl Claim {
    fn pack(self) -> u64 {
        ((self.generation as u64 & 0xff_ffff) << 40)
            | ((self.helpers as u64) << 32)
            | ((self.tasks as u64) << 16)
            | self.next as u64
    }

    fn unpack(w: u64) -> Claim {
        Claim {
            generation: (w >> 40) as u32,
            helpers: ((w >> 32) & 0xff) as usize,
            tasks: ((w >> 16) & 0xffff) as usize,
            next: (w & 0xffff) as usize,
        }
    }
}

struct Pool {
    /// Held by the thread whose product runs on the pool.
    busy: Mutex<()>,
    /// The claim word (see [`Claim`]).
    claim: AtomicU64,
    /// Tasks of the current product finished (by anyone).
    done: AtomicUsize,
    /// A task panicked on a helper.
    panicked: AtomicBool,
    /// The current product's closure, valid while a claim on it can succeed. Written only by
    /// the thread holding `busy`, while no claim can succeed.
    job: UnsafeCell<Option<Task<'static>>>,
    /// Helpers started so far.
    helpers: Mutex<usize>,
    /// Parked helpers, and the signal that wakes them.
    parked: Mutex<usize>,
    wake: Condvar,
}

// SAFETY: `job` is the only field that is not Sync by itself; it is written only by the thread
// holding `busy` while no claim can succeed (module docs) and read only after a successful claim.
unsafe impl Sync for Pool {}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        busy: Mutex::new(()),
        claim: AtomicU64::new(0),
        done: AtomicUsize::new(0),
        panicked: AtomicBool::new(false),
        job: UnsafeCell::new(None),
        helpers: Mutex::new(0),
        parked: Mutex::new(0),
        wake: Condvar::new(),
    })
}

impl Pool {
    /// Claims the next task of the product of `generation`, if it is still running and has one
    /// left.
    fn claim(&self, generation: u32) -> Option<usize> {
        let mut w = self.claim.load(Ordering::Acquire);
        loop {
            let c = Claim::unpack(w);
            if c.generation != generation || c.next >= c.tasks {
                return None;
            }
            let next = Claim {
                next: c.next + 1,
                ..c
            }
            .pack();
            match self
                .claim
                .compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(c.next),
                Err(now) => w = now,
            }
        }
    }

    /// Starts helpers until there are `n`.
    fn ensure_helpers(&'static self, n: usize) -> usize {
        let mut started = self.helpers.lock().unwrap_or_else(|e| e.into_inner());
        while *started < n {
            let index = *started;
            let spawned = std::thread::Builder::new()
                .name(format!("moesim-rows-{index}"))
                .spawn(move || self.helper(index));
            if spawned.is_err() {
                break;
            }
            *started += 1;
        }
        *started
    }

    fn helper(&self, index: usize) {
        let mut seen = Claim::unpack(self.claim.load(Ordering::Acquire)).generation;
        loop {
            // Wait for a product this helper is wanted in: poll, then park.
            let start = Instant::now();
            let mut spins = 0u32;
            let c = loop {
                let c = Claim::unpack(self.claim.load(Ordering::Acquire));
                if c.generation != seen {
                    break c;
                }
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(256) && start.elapsed() >= Duration::from_nanos(SPIN_NS) {
                    let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
                    if Claim::unpack(self.claim.load(Ordering::Acquire)).generation == seen {
                        *parked += 1;
                        parked = self.wake.wait(parked).unwrap_or_else(|e| e.into_inner());
                        *parked -= 1;
                    }
                    drop(parked);
                }
            };
            seen = c.generation;
            if index >= c.helpers {
                continue;
            }
            while let Some(i) = self.claim(c.generation) {
                // SAFETY: the claim succeeded, so the product of this generation is running
                // and its closure is the one in `job` until its tasks, this one included, are
                // done.
                let task = unsafe { (*self.job.get()).expect("a running product has a job") };
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(i))).is_err() {
                    self.panicked.store(true, Ordering::Relaxed);
                }
                self.done.fetch_add(1, Ordering::Release);
            }
        }
    }
}

/// Runs `task(i)` for every `i` in `0..tasks`, on this thread and up to `threads - 1` helper
/// threads, and returns when all have run. On this thread alone when `threads` or `tasks` is
/// 1 or another product holds the pool.
pub(crate) fn run(threads: usize, tasks: usize, task: &(dyn Fn(usize) + Sync)) {
    let alone = || (0..tasks).for_each(task);
    if threads <= 1 || tasks <= 1 {
        return alone();
    }
    let p = pool();
    // A product that panicked poisons `busy`; the pool itself is in order then (the job was
    // cleared or is never read again), so poisoning is ignored.
    let _busy = match p.busy.try_lock() {
        Ok(g) => g,
        Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return alone(),
    };
    let want = (threads - 1).min(MAX_HELPERS);
    let helpers = p.ensure_helpers(want).min(want);
    if helpers == 0 || tasks > MAX_TASKS {
        return alone();
    }
    // SAFETY: this thread holds `busy` and the previous product has finished every claimed
    // task, so no helper reads `job` now; the lifetime is erased only for as long as this call,
    // which waits below until every task claimed has run.
    unsafe {
        *p.job.get() = Some(std::mem::transmute::<Task<'_>, Task<'static>>(task));
    }
    p.done.store(0, Ordering::Relaxed);
    p.panicked.store(false, Ordering::Relaxed);
    let generation = Claim::unpack(p.claim.load(Ordering::Relaxed))
        .generation
        .wrapping_add(1)
        & 0xff_ffff;
    let word = Claim {
        generation,
        helpers,
        tasks,
        next: 0,
    };
    p.claim.store(word.pack(), Ordering::Release);
    {
        let parked = p.parked.lock().unwrap_or_else(|e| e.into_inner());
        if *parked > 0 {
            p.wake.notify_all();
        }
    }
    let mut mine_panicked = None;
    while let Some(i) = p.claim(generation) {
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(i))) {
            mine_panicked = Some(e);
        }
        p.done.fetch_add(1, Ordering::Release);
    }
    while p.done.load(Ordering::Acquire) < tasks {
        std::hint::spin_loop();
    }
    // SAFETY: every task has run, and no claim of this generation can succeed any more.
    unsafe {
        *p.job.get() = None;
    }
    if let Some(e) = mine_panicked {
        std::panic::resume_unwind(e);
    }
    assert!(
        !p.panicked.load(Ordering::Relaxed),
        "a task of a matrix product panicked on a helper thread"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn the_claim_word_round_trips() {
        let c = Claim {
            generation: 0xab_cdef,
            helpers: 7,
            tasks: 300,
            next: 299,
        };
        assert_eq!(Claim::unpack(c.pack()), c);
    }

    #[test]
    fn every_task_runs_once_however_callers_race() {
        // Four threads each run products of varying size at once: one holds the pool, the
        // others run theirs alone; every task of every product runs exactly once.
        std::thread::scope(|s| {
            for caller in 0..4u32 {
                s.spawn(move || {
                    for round in 0..300usize {
                        let tasks = 1 + (round * 7 + caller as usize) % 40;
                        let counts: Vec<AtomicU32> =
                            (0..tasks).map(|_| AtomicU32::new(0)).collect();
                        run(3, tasks, &|i| {
                            counts[i].fetch_add(1, Ordering::Relaxed);
                        });
                        assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
                    }
                });
            }
        });
    }

    #[test]
    fn a_panicking_task_panics_the_caller_and_the_pool_goes_on() {
        let hit = std::panic::catch_unwind(|| {
            run(2, 8, &|i| {
                assert!(i != 5, "task five fails");
            })
        });
        assert!(hit.is_err());
        // The pool still runs products afterwards (a helper that caught the panic lives on).
        let n = AtomicU32::new(0);
        run(2, 16, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 16);
    }
}
