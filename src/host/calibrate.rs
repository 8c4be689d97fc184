//! `moesim host calibrate`: microbenchmarks of this host, fitted into a hardware profile.
//!
//! - Reads of the expert store at queue depth 1 in the real decode's regime: each handed to an
//!   I/O thread, half of them while the calling thread runs an expert kernel (a hit computed
//!   while a miss loads), half with the calling thread blocked (a selection of misses only),
//!   each followed by a kernel on the bytes read; half of them into the pool's buffer computed
//!   on longest ago (the pool `host validate` lends to its decodes: the same memory), half into
//!   the buffer the previous read landed in (the profile's `weights_cache.landing`). A read is timed to the I/O
//!   thread's finish; how long the compute thread took to resume after a read it blocked for is
//!   the unit's `wake_ns`. Expert-sized and 4 KiB reads at random places; the link is fitted
//!   through the medians of the expert sizes read into cold buffers. (Reads timed while a
//!   separate thread ran kernels non-stop predicted read-heavy decodes 10-30 % too fast.)
//! - The slowdown of kernels while a read is in flight: kernels that ran wholly during a read,
//!   against kernels timed alone (8-13 % on the development VM). The simulator applies it to
//!   every expert kernel while a link transfers.
//! - RAM copy bandwidth (a large `copy_from_slice`): the DRAM tier's bandwidth.
//! - The fused SwiGLU expert kernels per format at the store's shape, on the configured threads,
//!   over the bench's pool (every expert of the store and at least 256 MiB) visited in a
//!   scattered order ([`KernelBench`]): weights come from memory as in a decode. (Timing one
//!   expert over and over keeps it in the CPU caches and overstated the rate by 40-65 % on the
//!   development VM.) Kernels cycling through a few experts give the cached rate, kernels on
//!   experts drawn at random the last-level cache's capacity under random replacement
//!   ([`fit_weights_cache`]).
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

/// A fitted link: `t(b) = requests(b) · latency_ns + b / bandwidth`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkFit {
    /// Latency to the first byte, of each request.
    pub latency_ns: f64,
    /// The largest request the device serves in one go, when the fit counted requests.
    pub request_bytes: Option<u64>,
    /// Bandwidth.
    pub bandwidth_bytes_per_s: f64,
    /// Spread `(p90 − p10) / median` of the large reads.
    pub spread: f64,
    /// Half-width of the 95 % interval of the large reads' median, relative to it.
    pub precision: f64,
}

impl LinkFit {
    /// The fitted time of a read of `bytes`.
    pub fn time_ns(&self, bytes: u64) -> f64 {
        crate::hardware::requests(bytes, self.request_bytes) as f64 * self.latency_ns
            + bytes as f64 / self.bandwidth_bytes_per_s * 1e9
    }

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
        request_bytes: None,
        latency_ns: latency.max(0.0),
        bandwidth_bytes_per_s: bandwidth,
        spread: spread(large_ns),
        precision: median_precision(large_ns),
    })
}

/// The link through the medians of expert reads of several sizes (`large` of `large_ns`, and
/// `others`), the sizes a decode reads: least squares of `t = n(b) · latency + b / bandwidth`,
/// `n(b)` the requests a read of `b` bytes takes on a device serving at most `request_bytes`
/// per request (one each without), through the origin when the free fit would need a negative
/// latency. On the development VM a direct read of more than 254 pages was two requests, and
/// the line through a 1.77 MB Q4_K and a 1.03 MB Q2_K expert (one request more for the larger)
/// needed a negative latency; through the origin it put Q2_K's reads 8 % above their median.
/// Reads of 4 KiB carry a per-request cost that expert-sized reads do not show (the line
/// through 4 KiB and 1.77 MB over-predicted 1.03 MB reads by 8-16 %). The bandwidth is at most
/// `max_bandwidth_bytes_per_s` (the memory the reads land in: a noisy median can make the
/// free fit all latency and a bandwidth no disk has, which the profile's disk tier, below its
/// DRAM, would then bound as a shared bottleneck), the latency fitted for it. `None` with fewer
/// than two sizes of at least 3 positive, finite reads, or when the fit is not positive.
pub fn fit_link_through_sizes(
    large: u64,
    large_ns: &[f64],
    others: &[(u64, Vec<f64>)],
    request_bytes: Option<u64>,
    max_bandwidth_bytes_per_s: f64,
) -> Option<LinkFit> {
    let usable = |ns: &[f64]| ns.len() >= 3 && ns.iter().all(|t| t.is_finite() && *t > 0.0);
    if !usable(large_ns) {
        return None;
    }
    let mut sizes: Vec<(u64, f64)> = vec![(large, median(large_ns))];
    for (bytes, ns) in others {
        if *bytes != large && usable(ns) {
            sizes.push((*bytes, median(ns)));
        }
    }
    if sizes.len() < 2 {
        return None;
    }
    // (requests, bytes, time) per size; least squares of t = latency · n + slope · b.
    let points: Vec<(f64, f64, f64)> = sizes
        .iter()
        .map(|&(b, t)| {
            (
                crate::hardware::requests(b, request_bytes) as f64,
                b as f64,
                t,
            )
        })
        .collect();
    let sum = |f: &dyn Fn(&(f64, f64, f64)) -> f64| points.iter().map(f).sum::<f64>();
    let (snn, snb, sbb) = (
        sum(&|p| p.0 * p.0),
        sum(&|p| p.0 * p.1),
        sum(&|p| p.1 * p.1),
    );
    let (snt, sbt) = (sum(&|p| p.0 * p.2), sum(&|p| p.1 * p.2));
    let det = snn * sbb - snb * snb;
    let (mut latency, mut slope) = ((snt * sbb - sbt * snb) / det, (snn * sbt - snb * snt) / det);
    if !latency.is_finite() || latency < 0.0 {
        slope = sbt / sbb;
        latency = 0.0;
    }
    let fastest = 1e9 / max_bandwidth_bytes_per_s;
    if slope < fastest {
        slope = fastest;
        latency = ((snt - slope * snb) / snn).max(0.0);
    }
    let bandwidth = 1e9 / slope;
    (bandwidth.is_finite() && bandwidth > 0.0).then(|| LinkFit {
        latency_ns: latency,
        request_bytes,
        bandwidth_bytes_per_s: bandwidth,
        spread: spread(large_ns),
        precision: median_precision(large_ns),
    })
}

/// A measured rate (units per second) from per-repeat times (ns) of `units` units each,
/// through their median (robust to a noisy machine's tail).
pub fn fit_rate(units: f64, ns: &[f64], what: &str) -> Result<f64, String> {
    rate_through(units, ns, what, median)
}

/// `units` over the time `typical` makes of per-repeat times `ns`; the reason when a time or
/// the rate cannot be a measurement.
fn rate_through(
    units: f64,
    ns: &[f64],
    what: &str,
    typical: fn(&[f64]) -> f64,
) -> Result<f64, String> {
    if ns.is_empty() || ns.iter().any(|t| !t.is_finite() || *t <= 0.0) {
        return Err(format!(
            "{what}: a repeat took zero, negative or non-finite time"
        ));
    }
    let rate = units / (typical(ns) * 1e-9);
    if !rate.is_finite() || rate <= 0.0 {
        return Err(format!("{what}: rate {rate:.3e}/s is not positive"));
    }
    Ok(rate)
}

/// The share of kernel times left out at each end of [`kernel_mean`].
pub const KERNEL_TRIM: f64 = 0.01;

/// The time a kernel stands for in the simulator: the mean of `ns` without the lowest and
/// highest [`KERNEL_TRIM`] (a preempted vCPU's rare outliers). A mean, not a median: a decode's
/// kernel time is their sum, and on the development VM kernel times were skewed by where the
/// weights sit (Q2_K over the pool: median 118 µs, mean 140 µs, p90 180 µs; buffers' own
/// medians 112-180 µs), and a rate through the median is the faster by as much.
pub fn kernel_mean(ns: &[f64]) -> f64 {
    trimmed_mean(ns, KERNEL_TRIM)
}

/// A kernel rate (units per second) from per-repeat times (ns) of `units` units each, through
/// their [`kernel_mean`].
pub fn fit_kernel_rate(units: f64, ns: &[f64], what: &str) -> Result<f64, String> {
    rate_through(units, ns, what, kernel_mean)
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
/// before took 6-11 % less time than one into a cold buffer): of every 4 reads, 2 land in the
/// bench's buffer computed on longest ago ([`KernelBench`]), 2 in the buffer the previous read landed in
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
    std::thread::scope(|scope| {
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
             -> crate::error::Result<(AlignedBuf, TimedRead)> {
                let t = Instant::now();
                req_tx.send((g, offset, buf)).map_err(|_| gone())?;
                // Handing the read to the idle I/O thread (on the development VM the woken
                // thread ran on this core until it blocked in its read).
                let issued = t.elapsed().as_nanos() as f64;
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
                    TimedRead {
                        ns: finished.saturating_duration_since(t).as_nanos() as f64,
                        contended,
                        wake,
                        issued,
                    },
                ))
            };
            let g = (next() % objects) as u32;
            let regime = match previous {
                Some(j) if (i / 2) % 2 == 1 => Destination::JustComputed(j),
                _ => Destination::Cold,
            };
            let slot = match regime {
                Destination::JustComputed(j) => j,
                Destination::Cold => bench.coldest(),
            };
            let distance = bench.stamp[slot].map(|s| (bench.computed_bytes - s) as f64);
            let taken = bench.bufs[slot].take().expect("a buffer in the pool");
            let (buf, timed) = read(Some(g), 0, taken, bench)?;
            let TimedRead {
                ns,
                contended,
                wake,
                issued,
            } = timed;
            samples.issue_ns.push(issued);
            bench.bufs[slot] = Some(buf);
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
            bench.run_at(slot);
            samples.loaded_kernel_ns.push(k.elapsed().as_nanos() as f64);
            previous = Some(slot);
            let page = 1 + next() % (pages - 1);
            let (buf, TimedRead { ns, .. }) = read(
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
    })
}

/// What one read of [`measure_reads_in_decode_regime`] measured (ns).
struct TimedRead {
    /// From the request to the I/O thread's finish.
    ns: f64,
    /// A kernel that ran wholly while the read was in flight.
    contended: Option<f64>,
    /// When the requesting thread blocked for the read, how long after its end it resumed.
    wake: Option<f64>,
    /// How long handing the read to the I/O thread held the requesting thread.
    issued: f64,
}

/// Where an expert read of the calibration lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Destination {
    /// The pool's buffer computed on longest ago.
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
    /// For each expert read, how long handing it to the idle I/O thread held the compute
    /// thread.
    pub issue_ns: Vec<f64>,
}

/// The fraction by which kernels of one kind (`what`: during reads) are slower than kernels
/// timed alone over resident experts: the ratio of their [`kernel_mean`]s, less one; the reason
/// when the samples cannot say. A ratio below one (no slower) gives 0: a read in flight does not speed
/// a kernel up.
pub fn fit_slowdown(what: &str, slowed_ns: &[f64], alone_ns: &[f64]) -> Result<f64, String> {
    fit_change(what, slowed_ns, alone_ns).map(|x| x.max(0.0))
}

/// The fraction by which kernels of one kind (`what`: on bytes just read) are slower than
/// kernels timed alone over resident experts, negative when they are faster (bytes a read just
/// wrote can sit in the last-level cache, where weights visited in a scattered order do not):
/// the ratio of their [`kernel_mean`]s, less one, never below -0.9; the reason when the samples
/// cannot say.
pub fn fit_change(what: &str, changed_ns: &[f64], alone_ns: &[f64]) -> Result<f64, String> {
    if changed_ns.len() < 3 || alone_ns.len() < 3 {
        return Err(format!(
            "too few kernels {what} (need 3 and 3 alone; are reads shorter than kernels?)"
        ));
    }
    let changed = fit_kernel_rate(1.0, changed_ns, &format!("kernels {what}"))?;
    let alone = fit_kernel_rate(1.0, alone_ns, "kernels alone")?;
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
        // Nothing computed since (distance 0) is stated as 1 byte, the least a profile takes.
        .map(|(ns, d)| (median(d).max(1.0), median(ns) / cold))
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

/// Kernels on experts drawn at random ([`KernelBench::time_random_paced`]): their times and
/// the mean time from one draw's start to the next's.
#[derive(Debug, Clone, Copy)]
pub struct Draws<'a> {
    /// Kernel times.
    pub kernel_ns: &'a [f64],
    /// Mean interval between the starts of consecutive draws.
    pub interval_ns: f64,
}

/// A last-level cache for expert weights fitted under random replacement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheFit {
    /// Capacity, in bytes of weights.
    pub capacity_bytes: f64,
    /// Mean survival time against other tenants' evictions; none when the paced draws found
    /// their weights cached as often as the draws back to back (or were not run).
    pub lifetime_ns: Option<f64>,
    /// The shares of the draws that ran cached, back to back and paced (none without paced
    /// draws), and the mean intervals between their starts.
    pub shares: (f64, Option<f64>),
    /// The mean intervals between the draws' starts, back to back and paced.
    pub intervals_ns: (f64, f64),
}

/// The last-level cache for expert weights under the simulator's random replacement
/// (`hardware::Replacement::Random`): from kernel times over the scattered visit (`cold_ns`:
/// every buffer's weights long evicted), cycling through a few experts (`warm_ns`: cached) and
/// on experts drawn uniformly at random from `drawn_from` of `expert_bytes` each, back to back
/// and `paced` (a pause before each draw, as a decode waiting for reads has). The share of a
/// set of draws that ran cached is `h = (cold - random) / (cold - warm)` (each a
/// [`kernel_mean`]).
///
/// Without paced draws, or when they ran cached as often, the capacity is the one under which
/// the simulator's rule, replayed on such draws, caches the share `h` of the draws back to
/// back ([`crate::sim::random_replacement_share`], by bisection), with no lifetime. When the
/// paced draws ran cached less often, the weights also leave with wall time (other tenants of
/// a shared cache): the capacity and lifetime are the pair under which the rule, each draw
/// aged by its interval over the lifetime, gives both shares. A paced share lower than any
/// lifetime explains (every eviction by time) gives the shortest lifetime the back-to-back
/// share allows, with the largest capacity.
///
/// `None` when the samples show no cache (`h` back to back no more than a draw's chance of
/// repeating the last one, or a warm kernel no faster than a cold one) or are too few. The
/// capacity is at most the draws' experts less one (all of them cached in the limit).
pub fn fit_weights_cache(
    cold_ns: &[f64],
    warm_ns: &[f64],
    back_to_back: Draws,
    paced: Option<Draws>,
    drawn_from: usize,
    expert_bytes: u64,
) -> Option<CacheFit> {
    if cold_ns.len() < 3 || warm_ns.len() < 3 || back_to_back.kernel_ns.len() < 3 || drawn_from < 2
    {
        return None;
    }
    let (cold, warm) = (kernel_mean(cold_ns), kernel_mean(warm_ns));
    if warm.partial_cmp(&cold) != Some(std::cmp::Ordering::Less) {
        return None;
    }
    let share_of = |d: &Draws| (cold - kernel_mean(d.kernel_ns)) / (cold - warm);
    let h = share_of(&back_to_back);
    let n = drawn_from as f64;
    if h.is_nan() || h * n <= 1.0 {
        return None;
    }
    let most = n - 1.0;
    let share = |c: f64, aged: f64| crate::sim::random_replacement_share(drawn_from, c, aged);
    // The capacity caching the share h back to back with each draw aged by `aged` (none when
    // even the largest cannot).
    let capacity = |aged: f64| -> Option<f64> {
        if share(most, aged) <= h {
            return (aged == 0.0).then_some(most);
        }
        let (mut lo, mut hi) = (0.0f64, most);
        for _ in 0..BISECTIONS {
            let mid = 0.5 * (lo + hi);
            if share(mid, aged) < h {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(0.5 * (lo + hi))
    };
    let timeless = capacity(0.0)?;
    // Under a thousandth of an expert: no cache the draws can tell from chance.
    if timeless < 1.0 / 1024.0 {
        return None;
    }
    let paced = paced.filter(|p| p.kernel_ns.len() >= 3);
    let h_paced = paced.as_ref().map(share_of);
    let (i0, i1) = (
        back_to_back.interval_ns,
        paced.as_ref().map_or(0.0, |p| p.interval_ns),
    );
    let fit = |c: f64, lifetime_ns: Option<f64>| CacheFit {
        capacity_bytes: (c * expert_bytes as f64).max(1.0),
        lifetime_ns,
        shares: (h, h_paced),
        intervals_ns: (i0, i1),
    };
    let no_lifetime = Some(fit(timeless, None));
    let Some(h_paced) = h_paced else {
        return no_lifetime;
    };
    if !(i0 > 0.0 && i1 > i0 && h_paced < h) {
        return no_lifetime;
    }
    // Decay rates (per ns) from 0 up to the largest the back-to-back share allows (the
    // capacity at its largest): aged a whole lifetime per back-to-back draw allows none.
    let (mut lo, mut hi) = (0.0f64, 1.0 / i0);
    for _ in 0..BISECTIONS {
        let mid = 0.5 * (lo + hi);
        if capacity(mid * i0).is_some() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let fastest = lo;
    let paced_share = |rate: f64| capacity(rate * i0).map(|c| (c, share(c, rate * i1)));
    match paced_share(fastest) {
        Some((c, s)) if s >= h_paced => {
            return Some(fit(c, (fastest > 0.0).then(|| 1.0 / fastest)));
        }
        None => return no_lifetime,
        _ => {}
    }
    // The paced share falls as the rate rises: the rate giving it.
    let (mut lo, mut hi) = (0.0f64, fastest);
    for _ in 0..BISECTIONS {
        let mid = 0.5 * (lo + hi);
        match paced_share(mid) {
            Some((_, s)) if s > h_paced => lo = mid,
            _ => hi = mid,
        }
    }
    let rate = 0.5 * (lo + hi);
    let c = capacity(rate * i0)?;
    Some(fit(c, (rate > 0.0).then(|| 1.0 / rate)))
}

/// Bisection steps of [`fit_weights_cache`]'s searches (2^-32 of their ranges).
const BISECTIONS: usize = 32;

/// The mean of `v` without its lowest and highest `cut` shares.
fn trimmed_mean(v: &[f64], cut: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let drop = (s.len() as f64 * cut).floor() as usize;
    let kept = &s[drop..s.len() - drop];
    kept.iter().sum::<f64>() / kept.len() as f64
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

/// The memory of a calibration: a pool of buffers, each holding an expert of a store, on which
/// every kernel timing runs, into which the expert reads of
/// [`measure_reads_in_decode_regime`] land, and which `host validate` lends to its decodes.
/// Weights come from memory as a decode's do, not from a warm CPU cache (the scattered visit
/// goes round the whole pool, larger than the per-core caches). One pool for all of it because
/// where the bytes sit changes the times: on the development VM, the same experts in buffers
/// allocated at different moments ran their kernels at rates up to 12 % (Q4_K) and 30 % (Q2_K)
/// apart, steadily within a run (`examples/kernel_memory.rs`), and reads into fresh buffers
/// took up to a quarter more or less time by allocation.
#[derive(Debug)]
pub struct KernelBench {
    shape: super::store::StoreShape,
    /// The pool; a buffer is `None` while a read or a decode has it.
    bufs: Vec<Option<AlignedBuf>>,
    /// Per buffer, [`KernelBench::computed_bytes`] at the end of its last kernel (none before
    /// its first, or after a decode had it).
    stamp: Vec<Option<u64>>,
    /// Experts in the store (the pool's first buffers hold them in order, the rest copies).
    experts: usize,
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
}

/// Bytes of a bench's pool at least ([`KernelBench`]): past the last-level cache of the
/// development VM (its kernels ran at the rate from memory over working sets of 226 MB) and of
/// common desktops and servers, so that its least recently computed buffer is a cold read
/// destination.
pub const LANDING_COLD_BYTES: u64 = 256 << 20;

/// Experts a warm kernel timing cycles through ([`KernelBench::time_warm`]): 8 experts of the
/// micro-MoE are 8-14 MB, past a core's L2 and within a server's or desktop's last-level cache.
pub const WARM_EXPERTS: usize = 8;

/// Tokens of a batched kernel timing ([`KernelBench::time_batched`]): prefill-sized work whose
/// rate becomes the profile's `peak_macs_per_s`.
pub const BATCH_TOKENS: usize = 32;

/// Buffers in the pool of a store of `experts` experts `stride` bytes apart: every expert, and
/// at least [`LANDING_COLD_BYTES`] and 32 buffers.
fn pool_buffers(experts: usize, stride: u64) -> usize {
    (LANDING_COLD_BYTES.div_ceil(stride.max(1)) as usize)
        .max(experts)
        .max(32)
}

/// A step through `n` buffers coprime with `n`: every buffer once per cycle, neighbours far
/// apart.
fn scattered_step(n: usize) -> usize {
    (1..n.max(2))
        .rev()
        .find(|s| gcd(*s, n) == 1 && *s <= n / 2 + 1)
        .unwrap_or(1)
}

impl KernelBench {
    /// Reads every expert of `store` into a pool of buffers (the rest of the pool holds copies),
    /// for `kernel` on `threads` threads.
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
        let total = pool_buffers(n, shape.stride());
        let mut bufs: Vec<Option<AlignedBuf>> = Vec::with_capacity(total);
        for i in 0..total {
            let mut b = AlignedBuf::new(shape.stride() as usize);
            match bufs.get(i % n.max(1)) {
                Some(Some(src)) if i >= n => b.as_mut_slice().copy_from_slice(src.as_slice()),
                _ => store.read_expert(i as u32, &mut b)?,
            }
            bufs.push(Some(b));
        }
        Ok(KernelBench {
            shape,
            stamp: vec![None; total],
            bufs,
            experts: n,
            next: 0,
            step: scattered_step(total),
            pool,
            kernel,
            h: super::decode::hidden_vector(7, 0, shape.hidden),
            y: vec![0.0; shape.hidden],
            hs: (0..BATCH_TOKENS)
                .flat_map(|t| super::decode::hidden_vector(7, t, shape.hidden))
                .collect(),
            ys: vec![0.0; BATCH_TOKENS * shape.hidden],
            computed_bytes: 0,
        })
    }

    /// Lends the pool to a real decode, which reads into and computes on the memory the
    /// calibration measured (at least `n` buffers: more are allocated if the pool is smaller);
    /// give them back with [`KernelBench::return_buffers`] before the next timing.
    pub fn lend_buffers(&mut self, n: usize) -> Vec<AlignedBuf> {
        let stride = self.shape.stride() as usize;
        let lent = n.max(self.bufs.len());
        self.bufs
            .iter_mut()
            .filter_map(Option::take)
            .chain(std::iter::repeat_with(|| AlignedBuf::new(stride)))
            .take(lent)
            .collect()
    }

    /// Takes back the buffers lent by [`KernelBench::lend_buffers`] as the pool (what was
    /// computed on them since is not known: each counts as never computed on until its next
    /// kernel).
    pub fn return_buffers(&mut self, buffers: Vec<AlignedBuf>) {
        self.bufs = buffers.into_iter().map(Some).collect();
        self.stamp = vec![None; self.bufs.len()];
        self.step = scattered_step(self.bufs.len());
        self.next %= self.bufs.len().max(1);
    }

    /// The format.
    pub fn format(&self) -> WeightFormat {
        self.shape.format
    }

    /// The buffer that has gone longest without a kernel (one never computed on first), of
    /// those in the pool: a cold read destination.
    fn coldest(&self) -> usize {
        (0..self.bufs.len())
            .filter(|&i| self.bufs[i].is_some())
            .min_by_key(|&i| self.stamp[i].map_or(0, |s| s + 1))
            .expect("a buffer in the pool")
    }

    /// Runs one expert SwiGLU on buffer `i` of the pool on the configured threads, and counts
    /// it on the clock.
    fn run_at(&mut self, i: usize) {
        let stored = self.bufs[i].as_ref().expect("a buffer in the pool");
        run_kernel(
            self.shape,
            self.kernel,
            &self.pool,
            stored.as_slice(),
            &self.h,
            &mut self.y,
        );
        self.computed_bytes += self.shape.expert_bytes();
        self.stamp[i] = Some(self.computed_bytes);
    }

    /// The next buffer of the scattered visit in the pool.
    fn next_scattered(&mut self) -> usize {
        loop {
            let i = self.next;
            self.next = (self.next + self.step) % self.bufs.len();
            if self.bufs[i].is_some() {
                return i;
            }
        }
    }

    /// Runs the SwiGLU of an expert of this store held in `stored` (a buffer outside the pool,
    /// read just now) on the configured threads.
    pub fn run_on(&mut self, stored: &[u8]) {
        run_kernel(
            self.shape,
            self.kernel,
            &self.pool,
            stored,
            &self.h,
            &mut self.y,
        );
        self.computed_bytes += self.shape.expert_bytes();
    }

    /// Runs the next expert SwiGLU of the scattered visit on the configured threads.
    pub fn run_one(&mut self) {
        let i = self.next_scattered();
        self.run_at(i);
    }

    /// Times `repeats` batched expert SwiGLUs ([`BATCH_TOKENS`] tokens through one expert,
    /// each product one GEMM), continuing the scattered visit.
    pub fn time_batched(&mut self, repeats: usize) -> Vec<f64> {
        (0..repeats)
            .map(|_| {
                let i = self.next_scattered();
                let shape = self.shape;
                let stored = self.bufs[i].as_ref().expect("a buffer in the pool");
                let packed = &stored.as_slice()[..shape.expert_bytes() as usize];
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
                self.computed_bytes += shape.expert_bytes();
                self.stamp[i] = Some(self.computed_bytes);
                ns
            })
            .collect()
    }

    /// Times `repeats` SwiGLUs cycling through [`WARM_EXPERTS`] buffers (after one untimed
    /// cycle): more weights than a core's own caches hold, few enough for the last-level
    /// cache, the rate it gives.
    pub fn time_warm(&mut self, repeats: usize) -> Vec<f64> {
        let first = self.next;
        let n = self.bufs.len();
        let warm = WARM_EXPERTS.min(n);
        for k in 0..warm {
            self.run_at((first + k) % n);
        }
        (0..repeats)
            .map(|k| {
                let t = Instant::now();
                self.run_at((first + k % warm) % n);
                t.elapsed().as_nanos() as f64
            })
            .collect()
    }

    /// Times `repeats` expert SwiGLUs on buffers drawn uniformly at random from
    /// [`KernelBench::random_pool`] of the pool (every other one of the store's experts' buffers;
    /// draw `k` from `seed`): the rate between the scattered visit's and the cached one that
    /// gives the last-level cache's capacity ([`fit_weights_cache`]). (Draws over the whole
    /// store of the development VM, 226 MB, ran 2-10 % faster than the scattered visit, too
    /// little to fit; over half of it, 40-55 % faster.) The first `2 * pool` draws run untimed,
    /// so that the cache holds what the draws themselves leave in it, not what the scattered
    /// visit did.
    pub fn time_random(&mut self, repeats: usize, seed: u64) -> Vec<f64> {
        self.time_random_paced(repeats, seed, &mut || {}).0
    }

    /// [`KernelBench::time_random`] with `pause` called before every draw (warm-up included,
    /// outside the kernels' timings), as a decode waiting for reads paces its kernels: the
    /// kernels' times, and for each the time since the previous draw's start (pause included),
    /// which ages the cached weights when other tenants share the cache.
    pub fn time_random_paced(
        &mut self,
        repeats: usize,
        seed: u64,
        pause: &mut dyn FnMut(),
    ) -> (Vec<f64>, Vec<f64>) {
        let pool = self.random_pool() as u64;
        let warm_up = 2 * pool;
        let (mut kernel_ns, mut interval_ns) = (Vec::new(), Vec::new());
        let mut previous: Option<Instant> = None;
        for k in 0..warm_up + repeats as u64 {
            let i = 2 * (crate::seed::derive_seed(seed, k) % pool) as usize;
            pause();
            let t = Instant::now();
            self.run_at(i);
            let ns = t.elapsed().as_nanos() as f64;
            if let (true, Some(p)) = (k >= warm_up, previous) {
                kernel_ns.push(ns);
                interval_ns.push(t.duration_since(p).as_nanos() as f64);
            }
            previous = Some(t);
        }
        (kernel_ns, interval_ns)
    }

    /// Buffers in the pool.
    pub fn buffers(&self) -> usize {
        self.bufs.len()
    }

    /// Buffers [`KernelBench::time_random`] draws from: half the store's experts (at least 1).
    pub fn random_pool(&self) -> usize {
        self.experts.div_ceil(2).max(1)
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
    fn kernel_rates_go_through_the_mean_without_the_outermost_percent() {
        // Skewed times (a slow tenth of the buffers): the mean, not the median, is what a sum
        // of kernels takes; of 200 samples the highest and lowest 2 are left out.
        let mut ns = vec![100.0; 180];
        ns.extend(vec![300.0; 18]);
        ns.extend([1.0, 1e6]);
        let mean = (179.0 * 100.0 + 17.0 * 300.0) / 196.0;
        assert!(
            (kernel_mean(&ns) - mean).abs() < 1e-9,
            "{}",
            kernel_mean(&ns)
        );
        assert!(median(&ns) == 100.0);
        assert!((fit_kernel_rate(1e6, &ns, "kernels").unwrap() - 1e6 / (mean * 1e-9)).abs() < 1e-3);
        let e = fit_kernel_rate(1e6, &[-5.0, 10.0], "kernels").unwrap_err();
        assert!(e.contains("zero, negative"), "{e}");
    }

    #[test]
    fn a_link_fits_through_the_expert_sizes() {
        let large = [1_300e3; 3];
        // 2 MB reads at 1300 µs and 1 MB reads at `ns`, no request limit, no bandwidth cap.
        let fit = |ns: Vec<f64>| {
            fit_link_through_sizes(2_000_000, &large, &[(1_000_000, ns)], None, f64::INFINITY)
        };
        // Expert reads of 1 MB at 700 µs and 2 MB at 1300 µs: 100 µs + 1 MB / (1e6/600e3 GB/s).
        let g = fit(vec![700e3; 3]).unwrap();
        assert!((g.latency_ns - 100e3).abs() < 1e-6, "{g:?}");
        assert!(
            (g.bandwidth_bytes_per_s - 1e6 / 600e-6).abs() < 1e-3,
            "{g:?}"
        );
        // A line that would need a negative latency goes through the origin instead.
        let g = fit(vec![600e3; 3]).unwrap();
        assert_eq!(g.latency_ns, 0.0);
        let want = 1e9 * (1e12 + 4e12) / (1e6 * 600e3 + 2e6 * 1_300e3);
        assert!(
            (g.bandwidth_bytes_per_s / want - 1.0).abs() < 1e-12,
            "{g:?}"
        );
        // One size, too few reads of the other, or a line that is not positive: none.
        assert_eq!(
            fit_link_through_sizes(2_000_000, &large, &[], None, f64::INFINITY),
            None
        );
        assert_eq!(fit(vec![1.0; 2]), None);
        assert_eq!(fit(vec![2_000e3; 3]), None);
        // A device serving at most 1.5 MB per request: a 1.8 MB read is two requests, each
        // paying the latency. Reads of 100 µs per request + 0.6 ns per byte fit exactly; the
        // line through the two sizes would need a negative latency (1.8 MB in 1280 µs, 1 MB in
        // 700: 0.725 ns per byte from -25 µs) and goes through the origin, missing both.
        let two = [1_280e3; 3];
        let others = [(1_000_000, vec![700e3; 3])];
        let g = fit_link_through_sizes(1_800_000, &two, &others, Some(1_500_000), f64::INFINITY)
            .unwrap();
        assert!((g.latency_ns - 100e3).abs() < 1e-6, "{g:?}");
        assert!((g.bandwidth_bytes_per_s - 1e9 / 0.6).abs() < 1e-3, "{g:?}");
        assert_eq!(g.request_bytes, Some(1_500_000));
        assert!((g.time_ns(1_800_000) - 1_280e3).abs() < 1e-6);
        assert!((g.time_ns(1_000_000) - 700e3).abs() < 1e-6);
        // No faster than the memory the reads land in: capped at 1.5 GB/s (the free fit's
        // 1.67 is above), the latency is the least-squares one for that bandwidth:
        // (700 - 666.7 + 2 · (1280 - 1200)) / 5 = 38.7 µs.
        let capped =
            fit_link_through_sizes(1_800_000, &two, &others, Some(1_500_000), 1.5e9).unwrap();
        assert_eq!(capped.bandwidth_bytes_per_s, 1.5e9);
        let want = (700e3 - 1e6 / 1.5 + 2.0 * (1_280e3 - 1.8e6 / 1.5)) / 5.0;
        assert!((capped.latency_ns - want).abs() < 1e-6, "{capped:?} {want}");
        let line = fit_link_through_sizes(1_800_000, &two, &others, None, f64::INFINITY).unwrap();
        assert_eq!((line.latency_ns, line.request_bytes), (0.0, None));
        assert!(
            (line.time_ns(1_000_000) / 700e3 - 1.0).abs() > 0.01,
            "{line:?}"
        );
    }

    #[test]
    fn the_weights_cache_capacity_inverts_the_random_visits_hit_share() {
        // Draws from 64 experts of 1 MB; kernels 200 µs from memory, 100 µs cached; a cache of
        // 20 experts' bytes under random replacement caches the share h of the draws.
        let (n, bytes) = (64usize, 1_000_000u64);
        let h = crate::sim::random_replacement_share(n, 20.0, 0.0);
        assert!(h > 0.2 && h < 0.6, "{h}");
        let random = 200.0 - h * 100.0;
        // The outermost 1 % on both sides is trimmed away.
        let mut draws = vec![random; 98];
        draws.extend([1.0, 1e6]);
        fn back_to_back(kernel_ns: &[f64]) -> Draws<'_> {
            Draws {
                kernel_ns,
                interval_ns: 200.0,
            }
        }
        let fit = |warm: &[f64], random: &[f64]| {
            fit_weights_cache(&[200.0; 5], warm, back_to_back(random), None, n, bytes)
        };
        let c = fit(&[100.0; 5], &draws).unwrap();
        assert!(
            (c.capacity_bytes / bytes as f64 - 20.0).abs() < 1e-6,
            "{c:?}"
        );
        assert_eq!(c.lifetime_ns, None);
        assert!((c.shares.0 - h).abs() < 1e-9 && c.shares.1.is_none());
        // The share grows with the capacity.
        assert!(crate::sim::random_replacement_share(n, 30.0, 0.0) > h);
        // No faster warm, or random draws no faster than chance repeats: no cache.
        assert_eq!(fit(&[200.0; 5], &[150.0; 5]), None);
        let chance = 200.0 - 100.0 / n as f64;
        assert_eq!(fit(&[100.0; 5], &[chance; 5]), None);
        // Hardly above chance: a capacity below the replay's resolution, none either.
        let barely = 200.0 - 100.0 * (1.0 / n as f64 + 1e-9);
        assert_eq!(fit(&[100.0; 5], &[barely; 5]), None);
        // Random draws as fast as cached ones: at most the draws' experts less one.
        let c = fit(&[100.0; 5], &[100.0; 5]).unwrap();
        assert_eq!(c.capacity_bytes, 63.0 * bytes as f64);
        // Too few samples.
        assert_eq!(
            fit_weights_cache(
                &[200.0; 2],
                &[100.0; 5],
                back_to_back(&[150.0; 5]),
                None,
                n,
                bytes
            ),
            None
        );
    }

    #[test]
    fn paced_draws_give_the_weights_cache_a_lifetime() {
        // A cache of 20 experts' bytes whose weights also live 30 ms on average; draws 200 µs
        // apart back to back, 600 µs apart paced. The fit recovers both from the two shares.
        let (n, bytes) = (64usize, 1_000_000u64);
        let (capacity, lifetime_ns) = (20.0, 30e6);
        let (i0, i1) = (200e3, 600e3);
        let h0 = crate::sim::random_replacement_share(n, capacity, i0 / lifetime_ns);
        let h1 = crate::sim::random_replacement_share(n, capacity, i1 / lifetime_ns);
        assert!(h1 < h0 && h1 > 0.05, "{h0} {h1}");
        let times = |h: f64| vec![200.0 - h * 100.0; 10];
        let (t0, t1) = (times(h0), times(h1));
        fn draws(kernel_ns: &[f64], interval_ns: f64) -> Draws<'_> {
            Draws {
                kernel_ns,
                interval_ns,
            }
        }
        let fit = |paced| {
            fit_weights_cache(&[200.0; 5], &[100.0; 5], draws(&t0, i0), paced, n, bytes).unwrap()
        };
        let c = fit(Some(draws(&t1, i1)));
        assert!(
            (c.capacity_bytes / bytes as f64 - capacity).abs() < 1e-3,
            "{c:?}"
        );
        let t = c.lifetime_ns.unwrap();
        assert!((t / lifetime_ns - 1.0).abs() < 1e-3, "{t}");
        // Paced draws cached as often: no lifetime, the capacity alone (larger than the true
        // one, which shared the evictions with time).
        let same = fit(Some(draws(&t0, i1)));
        assert_eq!(same.lifetime_ns, None);
        assert!(same.capacity_bytes < capacity * bytes as f64);
        let alone = fit(None);
        assert_eq!(
            (same.capacity_bytes, same.lifetime_ns),
            (alone.capacity_bytes, alone.lifetime_ns)
        );
        // Paced draws never cached: the shortest lifetime the back-to-back share allows, with
        // the largest capacity.
        let never = fit(Some(draws(&[200.0; 10], i1)));
        assert!(
            (never.capacity_bytes / bytes as f64 - 63.0).abs() < 1e-3,
            "{never:?}"
        );
        let shortest = never.lifetime_ns.unwrap();
        assert!(shortest < t, "{shortest} {t}");
        let at_most = crate::sim::random_replacement_share(n, 63.0, i0 / shortest);
        assert!((at_most - h0).abs() < 1e-6, "{at_most} {h0}");
    }

    #[test]
    fn a_slowdown_is_the_ratio_of_mean_kernel_times_and_never_negative() {
        let alone = [1000.0, 1010.0, 990.0, 1000.0];
        let slowed = [1120.0, 1100.0, 1130.0, 1120.0];
        let x = fit_slowdown("during reads", &slowed, &alone).unwrap();
        assert!((x - 0.1175).abs() < 1e-9, "{x}");
        // Faster under the condition: no slowdown, not a speed-up.
        assert_eq!(fit_slowdown("during reads", &alone, &slowed).unwrap(), 0.0);
        // A change may be a speed-up (bytes just read, still cached), down to -0.9.
        let x = fit_change("on bytes just read", &alone, &slowed).unwrap();
        assert!((x - (1000.0 / 1117.5 - 1.0)).abs() < 1e-9, "{x}");
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
