//! `moesim host calibrate`: microbenchmarks of this host, fitted into a hardware profile.
//!
//! - Reads of the expert store at queue depth 1 in the real decode's regime: each handed to an
//!   I/O thread, half of them while the calling thread runs an expert kernel (a hit computed
//!   while a miss loads), half with the calling thread blocked (a selection of misses only),
//!   each followed by a kernel on the bytes read; half of them into a cold pool of buffers
//!   (which `host validate` lends to its decodes: the same memory), half into the buffer the
//!   previous read landed in (the profile's `weights_cache.landing`). A read is timed to the I/O
//!   thread's finish; how long the compute thread took to resume after a read it blocked for is
//!   the unit's `wake_ns`. Expert-sized and 4 KiB reads at random places; the link is fitted
//!   through the medians of the expert sizes read into the cold pool. (Reads timed while a
//!   separate thread ran kernels non-stop predicted read-heavy decodes 10-30 % too fast.)
//! - The slowdown of kernels while a read is in flight: kernels that ran wholly during a read,
//!   against kernels timed alone (8-13 % on the development VM). The simulator applies it to
//!   every expert kernel while a link transfers.
//! - RAM copy bandwidth (a large `copy_from_slice`): the DRAM tier's bandwidth.
//! - The fused SwiGLU expert kernels per format at the store's shape, on the configured threads,
//!   over every expert of the store held in memory and visited in a scattered order
//!   ([`KernelBench`]): weights come from memory as in a decode. (Timing one expert over and over
//!   keeps it in the CPU caches and overstated the rate by 40-65 % on the development VM.)
//!
//! Measurements that cannot describe the host are refused: a non-positive or non-finite
//! bandwidth or rate. Noisy ones are not: figures go through medians, a noisy sample is marked
//! ([`NOISY_SPREAD`]), and the spread of the expert reads becomes the link's time distribution.

use std::time::Instant;

use super::store::{ALIGN, AlignedBuf, ExpertStore};
use crate::quality::proxy::swiglu_packed;
use crate::quant::WeightFormat;

/// The spread `(p90 − p10) / median` above which a sample is called noisy: it is still used
/// (its median is robust to the tail, and the tail itself goes into the link's time
/// distribution), but the figure and the points predicted with it are marked.
pub const NOISY_SPREAD: f64 = 1.0;

/// The precision a calibration round aims at: the half-width of the 95 % interval of a median,
/// relative to it. Rounds read more until their expert reads reach it or their budget is spent.
pub const TARGET_PRECISION: f64 = 0.03;

/// A fitted link: `t(b) = latency_ns + b / bandwidth`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkFit {
    /// Latency to the first byte.
    pub latency_ns: f64,
    /// Bandwidth.
    pub bandwidth_bytes_per_s: f64,
    /// Spread `(p90 − p10) / median` of the large reads.
    pub spread: f64,
    /// Half-width of the 95 % interval of the large reads' median, relative to it.
    pub precision: f64,
}

impl LinkFit {
    /// Whether the reads were too noisy or too few for a precise figure.
    pub fn noisy(&self) -> bool {
        self.spread > NOISY_SPREAD || self.precision > TARGET_PRECISION
    }
}

pub use crate::stats::spread;
use crate::stats::{median, median_precision};

/// Fits a link from read times (ns) of `small` and `large` bytes through their medians; the
/// reason when the samples cannot describe a link. Heavy-tailed times are fitted, not refused:
/// the fit reports their spread and the precision of the large reads' median.
pub fn fit_link(
    small: u64,
    small_ns: &[f64],
    large: u64,
    large_ns: &[f64],
) -> Result<LinkFit, String> {
    if small_ns.len() < 3 || large_ns.len() < 3 {
        return Err("too few read samples (need 3 of each size)".into());
    }
    if small_ns
        .iter()
        .chain(large_ns)
        .any(|t| !t.is_finite() || *t <= 0.0)
    {
        return Err("a read took zero, negative or non-finite time".into());
    }
    let (ts, tl) = (median(small_ns), median(large_ns));
    let bandwidth = (large - small) as f64 / ((tl - ts) * 1e-9);
    if !bandwidth.is_finite() || bandwidth <= 0.0 {
        return Err(format!(
            "read bandwidth {bandwidth:.3e} B/s is not positive: reads of {large} bytes (median {tl:.0} ns) were no slower than reads of {small} bytes (median {ts:.0} ns); the reads are not reaching storage"
        ));
    }
    let latency = ts - small as f64 / bandwidth * 1e9;
    Ok(LinkFit {
        latency_ns: latency.max(0.0),
        bandwidth_bytes_per_s: bandwidth,
        spread: spread(large_ns),
        precision: median_precision(large_ns),
    })
}

/// The link through the medians of expert reads of several sizes (`large` of `large_ns`, and
/// `others`), the sizes a decode reads: least squares of `t = latency + b / bandwidth`, through
/// the origin when the free line would need a negative latency. Reads of 4 KiB carry a
/// per-request cost that expert-sized reads do not show (on the development VM the line through
/// 4 KiB and 1.77 MB over-predicted 1.03 MB reads by 8-16 %). `None` with fewer than two sizes
/// of at least 3 positive, finite reads, or when the line is not positive.
pub fn fit_link_through_sizes(
    large: u64,
    large_ns: &[f64],
    others: &[(u64, Vec<f64>)],
) -> Option<LinkFit> {
    let usable = |ns: &[f64]| ns.len() >= 3 && ns.iter().all(|t| t.is_finite() && *t > 0.0);
    if !usable(large_ns) {
        return None;
    }
    let mut points: Vec<(f64, f64)> = vec![(large as f64, median(large_ns))];
    for (bytes, ns) in others {
        if *bytes != large && usable(ns) {
            points.push((*bytes as f64, median(ns)));
        }
    }
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let mut slope = sxy / sxx;
    let mut intercept = my - slope * mx;
    if intercept < 0.0 {
        slope = points.iter().map(|p| p.0 * p.1).sum::<f64>()
            / points.iter().map(|p| p.0 * p.0).sum::<f64>();
        intercept = 0.0;
    }
    let bandwidth = 1e9 / slope;
    (bandwidth.is_finite() && bandwidth > 0.0).then(|| LinkFit {
        latency_ns: intercept,
        bandwidth_bytes_per_s: bandwidth,
        spread: spread(large_ns),
        precision: median_precision(large_ns),
    })
}

/// A measured rate (units per second) from per-repeat times (ns) of `units` units each,
/// through their median (robust to a noisy machine's tail).
pub fn fit_rate(units: f64, ns: &[f64], what: &str) -> Result<f64, String> {
    if ns.is_empty() || ns.iter().any(|t| !t.is_finite() || *t <= 0.0) {
        return Err(format!(
            "{what}: a repeat took zero, negative or non-finite time"
        ));
    }
    let rate = units / (median(ns) * 1e-9);
    if !rate.is_finite() || rate <= 0.0 {
        return Err(format!("{what}: rate {rate:.3e}/s is not positive"));
    }
    Ok(rate)
}

/// Times `n` expert reads and `n` 4 KiB reads at random places of `store`, interleaved, in the
/// real decode's regime: the calling thread hands each read to an I/O thread, runs an expert
/// kernel from `bench` meanwhile on every other read (a hit computed while a miss loads) or
/// blocks at once (a selection of misses only), and then runs the kernel on the bytes read (the
/// loaded expert). A read's time runs from the request to the I/O thread's finish (the
/// simulator's transfer, which ends at the arrival it schedules); when the compute thread was
/// blocked for it, the time from that finish until it resumed is kept apart (the unit's
/// `wake_ns`: on the development VM either about 2 µs or about 45 µs, a halted vCPU woken).
///
/// Where an expert lands matters (on the development VM, a read into a buffer computed on just
/// before took 6-11 % less time than one into a buffer of the cold pool): of every 4 reads, 2
/// land in a cold pool ([`LANDING_COLD_BYTES`]), 2 in the buffer the previous read landed in
/// (its kernel just ran), each in both the overlapping and the blocked regime; each read's
/// destination distance (bytes of expert weights the bench computed since that buffer's last
/// kernel) is kept with it.
///
/// Returns the times of the 4 KiB reads, of the expert reads by destination, and of the
/// overlapping kernels that ran wholly while a read was in flight (the kernel slowdown under
/// transfers is their ratio to kernels timed alone).
pub fn measure_reads_in_decode_regime(
    store: &ExpertStore,
    bench: &mut KernelBench,
    n: usize,
    seed: u64,
) -> crate::error::Result<ReadSamples> {
    use std::sync::mpsc;
    let shape = store.shape;
    let objects = (shape.layers * shape.experts) as u64;
    let pages = (store.len_bytes() / ALIGN as u64).max(2);
    let (req_tx, req_rx) = mpsc::channel::<(Option<u32>, u64, AlignedBuf)>();
    let (done_tx, done_rx) = mpsc::channel::<crate::error::Result<(AlignedBuf, Instant)>>();
    let mut landing = std::mem::take(&mut bench.landing);
    landing.ensure(shape.stride());
    let result = std::thread::scope(|scope| {
        scope.spawn(move || {
            for (g, offset, mut buf) in req_rx {
                let r = match g {
                    Some(g) => store.read_expert(g, &mut buf),
                    None => store.read_raw(offset, &mut buf),
                };
                if done_tx.send(r.map(|()| (buf, Instant::now()))).is_err() {
                    break;
                }
            }
        });
        let mut small = Some(AlignedBuf::new(ALIGN));
        // The random read positions: draw i of the seed's stream.
        let mut draws = (0u64..).map(|i| crate::seed::derive_seed(seed, i));
        let mut next = || draws.next().expect("endless");
        let mut samples = ReadSamples::default();
        let gone = || crate::error::Error::usage("the I/O thread stopped");
        let mut previous: Option<usize> = None;
        for i in 0..n {
            let overlap = i % 2 == 1;
            // One read, timed to the moment its bytes are usable.
            let read = |g: Option<u32>,
                        offset: u64,
                        buf: AlignedBuf,
                        bench: &mut KernelBench|
             -> crate::error::Result<(AlignedBuf, f64, Option<f64>, Option<f64>)> {
                let t = Instant::now();
                req_tx.send((g, offset, buf)).map_err(|_| gone())?;
                let kernel = overlap.then(|| {
                    let k = Instant::now();
                    bench.run_one();
                    (k, Instant::now())
                });
                let (buf, finished) = done_rx.recv().map_err(|_| gone())??;
                let woke = Instant::now();
                // A kernel that ran wholly while the read was in flight.
                let contended = kernel
                    .filter(|&(_, end)| end <= finished)
                    .map(|(start, end)| (end - start).as_nanos() as f64);
                // The compute thread blocked for the read (no kernel, or one that ended
                // first): how long after the read's end it resumed.
                let wake = kernel
                    .is_none_or(|(_, end)| end < finished)
                    .then(|| woke.saturating_duration_since(finished).as_nanos() as f64);
                Ok((
                    buf,
                    finished.saturating_duration_since(t).as_nanos() as f64,
                    contended,
                    wake,
                ))
            };
            let g = (next() % objects) as u32;
            let regime = match previous {
                Some(j) if (i / 2) % 2 == 1 => Destination::JustComputed(j),
                _ => Destination::Cold,
            };
            let slot = match regime {
                Destination::JustComputed(j) => j,
                Destination::Cold => landing.cold(),
            };
            let distance = landing.stamp[slot].map(|s| (bench.computed_bytes - s) as f64);
            let (buf, ns, contended, wake) = read(
                Some(g),
                0,
                landing.bufs[slot].take().expect("returned"),
                bench,
            )?;
            match regime {
                Destination::Cold => {
                    samples.large_ns.push(ns);
                    samples.cold_distance_bytes.extend(distance);
                }
                Destination::JustComputed(_) => {
                    samples.just_computed_ns.push(ns);
                    samples
                        .just_computed_distance_bytes
                        .push(distance.expect("computed on just before"));
                }
            }
            samples.contended_kernel_ns.extend(contended);
            samples.wake_ns.extend(wake);
            // The loaded expert runs on the bytes read (nothing else in flight).
            let k = Instant::now();
            bench.run_on(buf.as_slice());
            samples.loaded_kernel_ns.push(k.elapsed().as_nanos() as f64);
            landing.bufs[slot] = Some(buf);
            landing.stamp[slot] = Some(bench.computed_bytes);
            previous = Some(slot);
            let page = 1 + next() % (pages - 1);
            let (buf, ns, _, _) = read(
                None,
                page * ALIGN as u64,
                small.take().expect("returned"),
                bench,
            )?;
            samples.small_ns.push(ns);
            small = Some(buf);
        }
        drop(req_tx);
        Ok(samples)
    });
    bench.landing = landing;
    result
}

/// Where an expert read of the calibration lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Destination {
    /// The next buffer of the cold pool.
    Cold,
    /// The buffer the previous read landed in (its kernel just ran).
    JustComputed(usize),
}

/// What [`measure_reads_in_decode_regime`] measured (ns).
#[derive(Debug, Default)]
pub struct ReadSamples {
    /// 4 KiB reads.
    pub small_ns: Vec<f64>,
    /// Expert reads into cold destinations.
    pub large_ns: Vec<f64>,
    /// The reuse distance of those destinations that had been computed on (bytes of expert
    /// weights computed since).
    pub cold_distance_bytes: Vec<f64>,
    /// Expert reads into the buffer computed on just before.
    pub just_computed_ns: Vec<f64>,
    /// Their destinations' reuse distances (bytes of expert weights computed since).
    pub just_computed_distance_bytes: Vec<f64>,
    /// Kernels that ran wholly while an expert read was in flight.
    pub contended_kernel_ns: Vec<f64>,
    /// Kernels on the bytes just read, with nothing in flight.
    pub loaded_kernel_ns: Vec<f64>,
    /// For each expert read the compute thread blocked for, how long after the read's end it
    /// resumed.
    pub wake_ns: Vec<f64>,
}

/// The fraction by which kernels of one kind (`what`: during reads) are slower than kernels
/// timed alone over resident experts: the ratio of the medians, less one; the reason when the
/// samples cannot say. A ratio below one (no slower) gives 0: a read in flight does not speed
/// a kernel up.
pub fn fit_slowdown(what: &str, slowed_ns: &[f64], alone_ns: &[f64]) -> Result<f64, String> {
    fit_change(what, slowed_ns, alone_ns).map(|x| x.max(0.0))
}

/// The fraction by which kernels of one kind (`what`: on bytes just read) are slower than
/// kernels timed alone over resident experts, negative when they are faster (bytes a read just
/// wrote can sit in the last-level cache, where weights visited in a scattered order do not):
/// the ratio of the medians, less one, never below -0.9; the reason when the samples cannot say.
pub fn fit_change(what: &str, changed_ns: &[f64], alone_ns: &[f64]) -> Result<f64, String> {
    if changed_ns.len() < 3 || alone_ns.len() < 3 {
        return Err(format!(
            "too few kernels {what} (need 3 and 3 alone; are reads shorter than kernels?)"
        ));
    }
    let changed = fit_rate(1.0, changed_ns, &format!("kernels {what}"))?;
    let alone = fit_rate(1.0, alone_ns, "kernels alone")?;
    Ok((alone / changed - 1.0).max(-0.9))
}

/// Where expert reads land, as the profile's `weights_cache.landing`: from reads of one store
/// into cold destinations (`cold_ns`, their known reuse distances `cold_distance_bytes`) and
/// into warmer ones (`warm`: each a set of read times and their destinations' distances), the
/// points `(median distance, median time / median cold time)` in increasing distance, ending
/// with the cold reads' `(median distance, 1)` (`cold_fallback_bytes` when too few cold
/// destinations had been computed on). A set with fewer than 3 reads, or whose median distance
/// is not below the next point's, is left out; empty with fewer than 3 cold reads.
pub fn fit_landing(
    cold_ns: &[f64],
    cold_distance_bytes: &[f64],
    warm: &[(&[f64], &[f64])],
    cold_fallback_bytes: f64,
) -> Vec<(f64, f64)> {
    let usable = |ns: &[f64]| ns.len() >= 3 && ns.iter().all(|t| t.is_finite() && *t > 0.0);
    if !usable(cold_ns) {
        return Vec::new();
    }
    let cold = median(cold_ns);
    let cold_d = if cold_distance_bytes.len() >= 3 {
        median(cold_distance_bytes)
    } else {
        cold_fallback_bytes
    };
    let mut points: Vec<(f64, f64)> = warm
        .iter()
        .filter(|(ns, d)| usable(ns) && !d.is_empty())
        .map(|(ns, d)| (median(d), median(ns) / cold))
        .filter(|(d, f)| d.is_finite() && *d >= 0.0 && f.is_finite() && *f > 0.0)
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(points.len() + 1);
    for p in points.into_iter().filter(|p| p.0 < cold_d) {
        if out.last().is_none_or(|q| p.0 > q.0) {
            out.push(p);
        }
    }
    out.push((cold_d, 1.0));
    out
}

/// The last-level cache's capacity for expert weights, in bytes, under the simulator's rule
/// (an expert is cached when at most that many bytes of expert weights were computed since its
/// last kernel): from kernel times over the scattered visit (`cold_ns`, every expert's reuse
/// distance the whole store of `store_experts`: none cached), cycling through a few experts
/// (`warm_ns`) and on experts drawn uniformly at random from `drawn_from` of `expert_bytes`
/// each (`random_ns`). The share of random draws that ran cached is
/// `h = (cold - random) / (cold - warm)` (medians); under the rule a draw is cached when at most
/// `K` other draws came since the same expert's last, `h = 1 - (1 - 1/n)^(K + 1)` with
/// `n = drawn_from`, so `K = ln(1 - h) / ln(1 - 1/n) - 1` experts' bytes. `None` when the
/// samples show no cache (`K <= 0`, or a warm kernel no faster than a cold one) or are too
/// few; at most the store less two experts (the scattered visit, `store_experts - 1` other
/// experts between two kernels of one, stays uncached).
pub fn fit_weights_cache(
    cold_ns: &[f64],
    warm_ns: &[f64],
    random_ns: &[f64],
    drawn_from: usize,
    store_experts: usize,
    expert_bytes: u64,
) -> Option<f64> {
    if cold_ns.len() < 3 || warm_ns.len() < 3 || random_ns.len() < 3 || drawn_from < 2 {
        return None;
    }
    let (cold, warm, random) = (median(cold_ns), median(warm_ns), median(random_ns));
    if warm.partial_cmp(&cold) != Some(std::cmp::Ordering::Less) {
        return None;
    }
    let h = ((cold - random) / (cold - warm)).min(1.0 - 1e-6);
    if h.is_nan() || h <= 0.0 {
        return None;
    }
    let n = drawn_from as f64;
    let k = (1.0 - h).ln() / (1.0 - 1.0 / n).ln() - 1.0;
    let most = ((store_experts as f64 - 2.0) * expert_bytes as f64).max(1.0);
    (k > 0.0).then(|| (k * expert_bytes as f64).clamp(1.0, most))
}

/// Times copies of a `bytes`-byte buffer, `repeats` times.
pub fn measure_copy(bytes: usize, repeats: usize) -> Vec<f64> {
    let src = vec![1u8; bytes];
    let mut dst = vec![0u8; bytes];
    dst.copy_from_slice(&src);
    (0..repeats)
        .map(|_| {
            let t = Instant::now();
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&dst);
            t.elapsed().as_nanos() as f64
        })
        .collect()
}

/// Every expert of a store held in memory, for kernel timings: weights come from memory as a
/// decode's do, not from a warm CPU cache (the experts are visited in a scattered order, and
/// the whole store is larger than the per-core caches).
#[derive(Debug)]
pub struct KernelBench {
    shape: super::store::StoreShape,
    bufs: Vec<AlignedBuf>,
    next: usize,
    step: usize,
    /// The kernel threads' pool (none for one thread: the calling thread).
    pool: Option<rayon::ThreadPool>,
    /// The expert kernels.
    kernel: crate::quant::Kernel,
    /// The input vector and the output buffer, made once (not inside a timing).
    h: Vec<f32>,
    y: Vec<f32>,
    /// [`BATCH_TOKENS`] input vectors and their outputs, for the batched timings.
    hs: Vec<f32>,
    ys: Vec<f32>,
    /// Bytes of expert weights computed by every kernel this bench ran: the clock of the
    /// simulator's weights cache, which gives a read destination's reuse distance.
    computed_bytes: u64,
    /// Where [`measure_reads_in_decode_regime`] reads experts into.
    landing: Landing,
}

/// Bytes of the pool of cold read destinations ([`measure_reads_in_decode_regime`]): past
/// the last-level cache of the development VM (its kernels ran at the rate from memory over
/// working sets of 226 MB) and of common desktops and servers.
pub const LANDING_COLD_BYTES: u64 = 256 << 20;

/// The cold expert-read destinations of the calibration, kept across rounds (allocated, pages
/// touched, at the first read), with the bytes-computed clock at the end of each one's last
/// kernel.
#[derive(Default)]
struct Landing {
    bufs: Vec<Option<AlignedBuf>>,
    stamp: Vec<Option<u64>>,
    next_cold: usize,
}

impl std::fmt::Debug for Landing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Landing")
            .field("buffers", &self.bufs.len())
            .finish_non_exhaustive()
    }
}

impl Landing {
    fn ensure(&mut self, stride: u64) {
        if self.bufs.is_empty() {
            let n = LANDING_COLD_BYTES.div_ceil(stride).max(32) as usize;
            self.bufs = (0..n)
                .map(|_| Some(AlignedBuf::new(stride as usize)))
                .collect();
            self.stamp = vec![None; n];
        }
    }

    fn cold(&mut self) -> usize {
        self.next_cold = (self.next_cold + 1) % self.bufs.len();
        self.next_cold
    }
}

/// Experts a warm kernel timing cycles through ([`KernelBench::time_warm`]): 8 experts of the
/// micro-MoE are 8-14 MB, past a core's L2 and within a server's or desktop's last-level cache.
pub const WARM_EXPERTS: usize = 8;

/// Tokens of a batched kernel timing ([`KernelBench::time_batched`]): prefill-sized work whose
/// rate becomes the profile's `peak_macs_per_s`.
pub const BATCH_TOKENS: usize = 32;

impl KernelBench {
    /// Reads every expert of `store` into memory, for `kernel` on `threads` threads.
    pub fn new(
        store: &ExpertStore,
        threads: usize,
        kernel: crate::quant::Kernel,
    ) -> crate::error::Result<KernelBench> {
        let shape = store.shape;
        // One kernel thread is the calling thread: no pool to build.
        let pool = if threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .map_err(|e| crate::error::Error::usage(format!("threads: {e}")))?,
            )
        } else {
            None
        };
        let n = (shape.layers * shape.experts) as usize;
        let mut bufs: Vec<AlignedBuf> = Vec::with_capacity(n);
        for g in 0..n {
            let mut b = AlignedBuf::new(shape.stride() as usize);
            store.read_expert(g as u32, &mut b)?;
            bufs.push(b);
        }
        // A stride coprime with n: every expert once per cycle, neighbours far apart.
        let step = (1..n.max(2))
            .rev()
            .find(|s| gcd(*s, n) == 1 && *s <= n / 2 + 1)
            .unwrap_or(1);
        Ok(KernelBench {
            shape,
            bufs,
            next: 0,
            step,
            pool,
            kernel,
            h: super::decode::hidden_vector(7, 0, shape.hidden),
            y: vec![0.0; shape.hidden],
            hs: (0..BATCH_TOKENS)
                .flat_map(|t| super::decode::hidden_vector(7, t, shape.hidden))
                .collect(),
            ys: vec![0.0; BATCH_TOKENS * shape.hidden],
            computed_bytes: 0,
            landing: Landing::default(),
        })
    }

    /// Lends the calibration's cold read destinations to a real decode, which reads into the
    /// same memory (at least `n`: more are allocated if the pool is smaller); give them back
    /// with [`KernelBench::return_buffers`].
    pub fn lend_buffers(&mut self, n: usize) -> Vec<AlignedBuf> {
        self.landing.ensure(self.shape.stride());
        let stride = self.shape.stride() as usize;
        let cold = &mut self.landing.bufs;
        let lent = n.max(cold.len());
        cold.iter_mut()
            .filter_map(Option::take)
            .chain(std::iter::repeat_with(|| AlignedBuf::new(stride)))
            .take(lent)
            .collect()
    }

    /// Takes back buffers lent by [`KernelBench::lend_buffers`] (what was computed on them
    /// since is not known: their next read counts as into a cold destination never computed
    /// on).
    pub fn return_buffers(&mut self, buffers: Vec<AlignedBuf>) {
        let l = &mut self.landing;
        l.bufs = buffers.into_iter().map(Some).collect();
        l.stamp = vec![None; l.bufs.len()];
        l.next_cold %= l.bufs.len().max(1);
    }

    /// Counts one kernel on one expert's weights.
    fn computed(&mut self) {
        self.computed_bytes += self.shape.expert_bytes();
    }

    /// The format.
    pub fn format(&self) -> WeightFormat {
        self.shape.format
    }

    /// Runs the next expert SwiGLU of the scattered visit on the configured threads.
    pub fn run_one(&mut self) {
        let i = self.next;
        self.next = (self.next + self.step) % self.bufs.len();
        let (shape, h, y) = (self.shape, &self.h, &mut self.y);
        run_kernel(
            shape,
            self.kernel,
            &self.pool,
            self.bufs[i].as_slice(),
            h,
            y,
        );
        self.computed();
    }

    /// Runs the SwiGLU of an expert of this store held in `stored` (a buffer read just now) on
    /// the configured threads.
    pub fn run_on(&mut self, stored: &[u8]) {
        run_kernel(
            self.shape,
            self.kernel,
            &self.pool,
            stored,
            &self.h,
            &mut self.y,
        );
        self.computed();
    }

    /// Times `repeats` batched expert SwiGLUs ([`BATCH_TOKENS`] tokens through one expert,
    /// each product one GEMM), continuing the scattered visit.
    pub fn time_batched(&mut self, repeats: usize) -> Vec<f64> {
        (0..repeats)
            .map(|_| {
                let i = self.next;
                self.next = (self.next + self.step) % self.bufs.len();
                let shape = self.shape;
                let packed = &self.bufs[i].as_slice()[..shape.expert_bytes() as usize];
                let (kernel, hs, ys) = (self.kernel, &self.hs, &mut self.ys);
                let run = |ys: &mut [f32], parallel| {
                    crate::quality::proxy::swiglu_packed_batch(
                        shape.format,
                        shape.hidden,
                        shape.ffn,
                        packed,
                        hs,
                        ys,
                        parallel,
                        kernel,
                    )
                };
                let t = Instant::now();
                match &self.pool {
                    Some(p) => p.install(|| run(ys, true)),
                    None => run(ys, false),
                }
                let ns = t.elapsed().as_nanos() as f64;
                std::hint::black_box(&*ys);
                self.computed();
                ns
            })
            .collect()
    }

    /// Times `repeats` SwiGLUs cycling through [`WARM_EXPERTS`] experts (after one untimed
    /// cycle): more weights than a core's own caches hold, few enough for the last-level
    /// cache, the rate it gives.
    pub fn time_warm(&mut self, repeats: usize) -> Vec<f64> {
        let first = self.next;
        let n = self.bufs.len();
        let (shape, kernel) = (self.shape, self.kernel);
        let (pool, bufs, h, y) = (&self.pool, &self.bufs, &self.h, &mut self.y);
        let warm = WARM_EXPERTS.min(n);
        let mut run = |k: usize| {
            let i = (first + k % warm) % n;
            run_kernel(shape, kernel, pool, bufs[i].as_slice(), h, y)
        };
        (0..warm).for_each(&mut run);
        let ns = (0..repeats)
            .map(|k| {
                let t = Instant::now();
                run(k);
                t.elapsed().as_nanos() as f64
            })
            .collect();
        self.computed_bytes += (warm + repeats) as u64 * shape.expert_bytes();
        ns
    }

    /// Times `repeats` expert SwiGLUs on experts drawn uniformly at random from half the store
    /// ([`KernelBench::random_pool`] experts: every other one; draw `k` from `seed`): the rate
    /// between the scattered visit's and the cached one that gives the last-level cache's
    /// capacity ([`fit_weights_cache`]). (Draws over the whole store of the development VM,
    /// 226 MB, ran 2-10 % faster than the scattered visit, too little to fit; over half of it,
    /// 40-55 % faster.) The first `2 * pool` draws run untimed, so that the cache holds what
    /// the draws themselves leave in it, not what the scattered visit did.
    pub fn time_random(&mut self, repeats: usize, seed: u64) -> Vec<f64> {
        let pool = self.random_pool() as u64;
        let warm_up = 2 * pool;
        self.computed_bytes += (warm_up + repeats as u64) * self.shape.expert_bytes();
        (0..warm_up + repeats as u64)
            .filter_map(|k| {
                let i = 2 * (crate::seed::derive_seed(seed, k) % pool) as usize;
                let t = Instant::now();
                run_kernel(
                    self.shape,
                    self.kernel,
                    &self.pool,
                    self.bufs[i].as_slice(),
                    &self.h,
                    &mut self.y,
                );
                (k >= warm_up).then(|| t.elapsed().as_nanos() as f64)
            })
            .collect()
    }

    /// Experts in the store.
    pub fn experts(&self) -> usize {
        self.bufs.len()
    }

    /// Experts [`KernelBench::time_random`] draws from: half the store (at least 1).
    pub fn random_pool(&self) -> usize {
        self.bufs.len().div_ceil(2).max(1)
    }

    /// Times `repeats` expert SwiGLUs, continuing the scattered visit where the last call
    /// stopped.
    pub fn time(&mut self, repeats: usize) -> Vec<f64> {
        (0..repeats)
            .map(|_| {
                let t = Instant::now();
                self.run_one();
                t.elapsed().as_nanos() as f64
            })
            .collect()
    }
}

/// One expert's SwiGLU on the packed bytes at the start of `stored` (a stored expert's buffer),
/// on `pool`'s threads or, without one, on the calling thread.
fn run_kernel(
    shape: super::store::StoreShape,
    kernel: crate::quant::Kernel,
    pool: &Option<rayon::ThreadPool>,
    stored: &[u8],
    h: &[f32],
    y: &mut [f32],
) {
    let packed = &stored[..shape.expert_bytes() as usize];
    let run = |y: &mut [f32], parallel| {
        swiglu_packed(
            shape.format,
            shape.hidden,
            shape.ffn,
            packed,
            h,
            y,
            parallel,
            kernel,
        )
    };
    match pool {
        Some(p) => p.install(|| run(y, true)),
        None => run(y, false),
    }
    std::hint::black_box(&*y);
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_by_destination_fit_increasing_points_ending_cold() {
        let cold = [100.0, 101.0, 99.0, 100.0];
        let just = [80.0, 80.0, 81.0];
        let recent = [90.0, 91.0, 90.0];
        let p = fit_landing(
            &cold,
            &[5e8, 6e8, 7e8],
            &[(&recent, &[3e7, 3e7, 3e7]), (&just, &[1e6, 1e6, 2e6])],
            1e9,
        );
        assert_eq!(p, vec![(1e6, 0.8), (3e7, 0.9), (6e8, 1.0)]);
        // Too few cold destinations computed on: the fallback distance; a warm set past it,
        // or too small, is left out.
        let p = fit_landing(
            &cold,
            &[],
            &[(&just, &[2e9; 3]), (&recent[..2], &[1.0; 2])],
            1e9,
        );
        assert_eq!(p, vec![(1e9, 1.0)]);
        assert!(fit_landing(&cold[..2], &[], &[], 1e9).is_empty());
    }

    #[test]
    fn a_link_fits_through_the_medians() {
        // 4 KiB in 100 µs + 4 KiB / 1 GB/s; 1 MiB in 100 µs + 1 MiB / 1 GB/s.
        let s = [104_096.0, 104_000.0, 104_200.0];
        let l = [1_148_576.0, 1_148_000.0, 1_149_000.0];
        let f = fit_link(4096, &s, 1 << 20, &l).unwrap();
        assert!((f.bandwidth_bytes_per_s / 1e9 - 1.0).abs() < 0.01, "{f:?}");
        assert!((f.latency_ns - 100_000.0).abs() < 500.0, "{f:?}");
    }

    #[test]
    fn nonsense_measurements_are_refused() {
        let s = [100_000.0, 101_000.0, 99_000.0];
        // Large reads no slower than small ones: not reaching storage.
        let e = fit_link(4096, &s, 1 << 20, &[99_000.0, 100_000.0, 98_000.0]).unwrap_err();
        assert!(e.contains("not positive"), "{e}");
        // Zero or negative times.
        let e = fit_link(4096, &[0.0, 1.0, 2.0], 1 << 20, &s).unwrap_err();
        assert!(e.contains("zero, negative"), "{e}");
        let e = fit_rate(1e6, &[-5.0, 10.0], "kernels").unwrap_err();
        assert!(e.contains("zero, negative"), "{e}");
        // Times that wander are fitted through their median and marked noisy.
        let wild: Vec<f64> = (0..20).map(|i| 1e6 * (1.0 + (i % 5) as f64)).collect();
        let f = fit_link(4096, &s, 1 << 20, &wild).unwrap();
        assert!(f.noisy() && f.spread > NOISY_SPREAD, "{f:?}");
        assert_eq!(fit_rate(1e6, &wild, "kernels").unwrap(), 1e6 / 3e-3);
        // One outlier among steady samples is fine.
        let mut steady = vec![1.0e6; 30];
        steady[7] = 9.0e6;
        assert!(fit_rate(1e6, &steady, "kernels").is_ok());
        // Too few samples.
        assert!(fit_link(4096, &s[..2], 1 << 20, &s).is_err());
    }

    #[test]
    fn a_link_fits_through_the_expert_sizes() {
        let large = [1_300e3; 3];
        // Expert reads of 1 MB at 700 µs and 2 MB at 1300 µs: 100 µs + 1 MB / (1e6/600e3 GB/s).
        let g = fit_link_through_sizes(2_000_000, &large, &[(1_000_000, vec![700e3; 3])]).unwrap();
        assert!((g.latency_ns - 100e3).abs() < 1e-6, "{g:?}");
        assert!(
            (g.bandwidth_bytes_per_s - 1e6 / 600e-6).abs() < 1e-3,
            "{g:?}"
        );
        // A line that would need a negative latency goes through the origin instead.
        let g = fit_link_through_sizes(2_000_000, &large, &[(1_000_000, vec![600e3; 3])]).unwrap();
        assert_eq!(g.latency_ns, 0.0);
        let want = 1e9 * (1e12 + 4e12) / (1e6 * 600e3 + 2e6 * 1_300e3);
        assert!(
            (g.bandwidth_bytes_per_s / want - 1.0).abs() < 1e-12,
            "{g:?}"
        );
        // One size, too few reads of the other, or a line that is not positive: none.
        assert_eq!(fit_link_through_sizes(2_000_000, &large, &[]), None);
        assert_eq!(
            fit_link_through_sizes(2_000_000, &large, &[(1_000_000, vec![1.0; 2])]),
            None
        );
        assert_eq!(
            fit_link_through_sizes(2_000_000, &large, &[(1_000_000, vec![2_000e3; 3])]),
            None
        );
    }

    #[test]
    fn the_weights_cache_capacity_inverts_the_random_visits_hit_share() {
        // Draws from 128 of a store's 256 experts of 1 MB; kernels 200 µs from memory, 100 µs
        // cached; a cache of 40 experts' bytes caches a share 1 - (127/128)^41 of the draws.
        let (n, bytes) = (128usize, 1_000_000u64);
        let h = 1.0 - (1.0 - 1.0 / n as f64).powi(41);
        let random = 200.0 - h * 100.0;
        let c = fit_weights_cache(&[200.0; 5], &[100.0; 5], &[random; 5], n, 2 * n, bytes).unwrap();
        assert!((c / bytes as f64 - 40.0).abs() < 1e-6, "{c}");
        // No faster warm, or random draws no faster than the scattered visit: no cache.
        assert_eq!(
            fit_weights_cache(&[200.0; 5], &[200.0; 5], &[150.0; 5], n, 2 * n, bytes),
            None
        );
        assert_eq!(
            fit_weights_cache(&[200.0; 5], &[100.0; 5], &[201.0; 5], n, 2 * n, bytes),
            None
        );
        // Random draws as fast as cached ones: at most the store less two experts.
        let c = fit_weights_cache(&[200.0; 5], &[100.0; 5], &[100.0; 5], n, 2 * n, bytes).unwrap();
        assert_eq!(c, 254.0 * bytes as f64);
        // Too few samples.
        assert_eq!(
            fit_weights_cache(&[200.0; 2], &[100.0; 5], &[150.0; 5], n, 2 * n, bytes),
            None
        );
    }

    #[test]
    fn a_slowdown_is_the_ratio_of_medians_and_never_negative() {
        let alone = [1000.0, 1010.0, 990.0, 1000.0];
        let slowed = [1120.0, 1100.0, 1130.0, 1120.0];
        let x = fit_slowdown("during reads", &slowed, &alone).unwrap();
        assert!((x - 0.12).abs() < 1e-9, "{x}");
        // Faster under the condition: no slowdown, not a speed-up.
        assert_eq!(fit_slowdown("during reads", &alone, &slowed).unwrap(), 0.0);
        // A change may be a speed-up (bytes just read, still cached), down to -0.9.
        let x = fit_change("on bytes just read", &alone, &slowed).unwrap();
        assert!((x - (1000.0 / 1120.0 - 1.0)).abs() < 1e-9, "{x}");
        assert_eq!(
            fit_change("on bytes just read", &[100.0; 3], &alone).unwrap(),
            -0.9
        );
        // Too few samples, or samples that cannot be timings.
        let e = fit_slowdown("during reads", &slowed[..2], &alone).unwrap_err();
        assert!(e.contains("too few"), "{e}");
        let e = fit_slowdown("during reads", &[0.0, 1.0, 2.0], &alone).unwrap_err();
        assert!(e.contains("zero, negative"), "{e}");
    }
}
