//! Calibration rounds: the microbenchmarks of `calibrate` run as one round (reads in the
//! decode's regime, RAM copies, kernels alone), and their samples pooled over rounds.
//!
//! `moesim host calibrate` runs rounds back to back; `moesim host validate` interleaves them
//! with its decodes, so that each decode can be predicted with the rounds just around it.

use super::calibrate::{self, KernelBench};
use super::store::ExpertStore;
use crate::error::Result;
use crate::quant::WeightFormat;

/// Bytes of one timed RAM copy.
pub const COPY_BYTES: usize = 64 << 20;

/// Calibration samples (ns), pooled over rounds.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// 4 KiB reads.
    pub small_ns: Vec<f64>,
    /// Expert reads (of the first store).
    pub large_ns: Vec<f64>,
    /// Expert reads over the median of their round's: the shape of the read-time distribution
    /// with the drift between rounds taken out.
    pub large_over_median: Vec<f64>,
    /// Expert reads of the other stores, by size in bytes.
    pub other_large_ns: Vec<(u64, Vec<f64>)>,
    /// Reads added to rounds to reach the target precision.
    pub extra_reads: usize,
    /// Rounds whose budget ran out before their reads reached the target precision.
    pub imprecise_rounds: u32,
    /// Kernels run wholly during an expert read of their store, per format.
    pub contended_kernel_ns: Vec<(WeightFormat, Vec<f64>)>,
    /// Kernels on the bytes just read, per format.
    pub loaded_kernel_ns: Vec<(WeightFormat, Vec<f64>)>,
    /// Copies of [`COPY_BYTES`].
    pub copy_ns: Vec<f64>,
    /// Kernels alone over experts held in memory, per format.
    pub kernel_ns: Vec<(WeightFormat, Vec<f64>)>,
    /// Batched kernels ([`calibrate::BATCH_TOKENS`] tokens per expert) over experts held in
    /// memory, per format.
    pub batched_kernel_ns: Vec<(WeightFormat, Vec<f64>)>,
    /// Kernels cycling through a few experts (their weights cached), per format.
    pub warm_kernel_ns: Vec<(WeightFormat, Vec<f64>)>,
    /// Kernels on experts drawn uniformly at random from half the first store (some cached, by
    /// the last-level cache's capacity).
    pub random_kernel_ns: Vec<f64>,
    /// For each of those, the time since the previous draw's start.
    pub random_interval_ns: Vec<f64>,
    /// The same draws paced: each after a sleep as long as a kernel from memory (the decode's
    /// compute thread waits for reads), by how much the wall time between them ages the
    /// cached weights.
    pub paced_kernel_ns: Vec<f64>,
    /// For each of those, the time since the previous draw's start.
    pub paced_interval_ns: Vec<f64>,
    /// How long after an expert read's end the compute thread resumed, when it blocked for it
    /// (every store's reads).
    pub wake_ns: Vec<f64>,
    /// How long handing an expert read to the idle I/O thread held the compute thread (every
    /// store's reads).
    pub issue_ns: Vec<f64>,
    /// Expert reads by where they landed, per format (every store's).
    pub landing: Vec<(WeightFormat, LandingSamples)>,
    /// The largest direct read the first store's device serves as one request
    /// ([`ExpertStore::request_bytes`]; none when unknown).
    pub request_bytes: Option<u64>,
    /// Rounds pooled.
    pub rounds: u32,
}

/// Expert reads of one store by destination (ns), with the destinations' reuse distances
/// (bytes of expert weights computed since the buffer's last kernel).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LandingSamples {
    /// Reads into cold buffers (the pool's computed on longest ago).
    pub cold_ns: Vec<f64>,
    /// Distances of the cold destinations computed on before.
    pub cold_distance_bytes: Vec<f64>,
    /// Reads into the buffer computed on just before.
    pub warm_ns: Vec<f64>,
    /// Their distances.
    pub warm_distance_bytes: Vec<f64>,
}

impl LandingSamples {
    fn extend(&mut self, o: &LandingSamples) {
        self.cold_ns.extend(&o.cold_ns);
        self.cold_distance_bytes.extend(&o.cold_distance_bytes);
        self.warm_ns.extend(&o.warm_ns);
        self.warm_distance_bytes.extend(&o.warm_distance_bytes);
    }

    fn of(r: &calibrate::ReadSamples) -> LandingSamples {
        LandingSamples {
            cold_ns: r.large_ns.clone(),
            cold_distance_bytes: r.cold_distance_bytes.clone(),
            warm_ns: r.just_computed_ns.clone(),
            warm_distance_bytes: r.just_computed_distance_bytes.clone(),
        }
    }
}

/// Adds `x` to the landing samples of `format`.
fn push_landing(samples: &mut Samples, format: WeightFormat, x: &LandingSamples) {
    match samples.landing.iter_mut().find(|(f, _)| *f == format) {
        Some((_, l)) => l.extend(x),
        None => samples.landing.push((format, x.clone())),
    }
}

impl Samples {
    /// Adds `other`'s samples to these.
    pub fn extend(&mut self, other: &Samples) {
        self.small_ns.extend(&other.small_ns);
        self.large_ns.extend(&other.large_ns);
        self.large_over_median.extend(&other.large_over_median);
        for (bytes, ns) in &other.other_large_ns {
            push_to(&mut self.other_large_ns, *bytes, ns);
        }
        self.extra_reads += other.extra_reads;
        self.imprecise_rounds += other.imprecise_rounds;
        for (f, ns) in &other.contended_kernel_ns {
            push_to(&mut self.contended_kernel_ns, *f, ns);
        }
        for (f, ns) in &other.loaded_kernel_ns {
            push_to(&mut self.loaded_kernel_ns, *f, ns);
        }
        self.copy_ns.extend(&other.copy_ns);
        for (f, ns) in &other.kernel_ns {
            push_to(&mut self.kernel_ns, *f, ns);
        }
        for (f, ns) in &other.batched_kernel_ns {
            push_to(&mut self.batched_kernel_ns, *f, ns);
        }
        for (f, ns) in &other.warm_kernel_ns {
            push_to(&mut self.warm_kernel_ns, *f, ns);
        }
        self.random_kernel_ns.extend(&other.random_kernel_ns);
        self.random_interval_ns.extend(&other.random_interval_ns);
        self.paced_kernel_ns.extend(&other.paced_kernel_ns);
        self.paced_interval_ns.extend(&other.paced_interval_ns);
        for (f, l) in &other.landing {
            push_landing(self, *f, l);
        }
        self.wake_ns.extend(&other.wake_ns);
        self.issue_ns.extend(&other.issue_ns);
        self.request_bytes = self.request_bytes.or(other.request_bytes);
        self.rounds += other.rounds;
    }
}

/// Appends `ns` to the samples kept under `key` (a format, or a read size in bytes).
fn push_to<K: PartialEq + Copy>(samples: &mut Vec<(K, Vec<f64>)>, key: K, ns: &[f64]) {
    match samples.iter_mut().find(|(k, _)| *k == key) {
        Some((_, v)) => v.extend(ns),
        None => samples.push((key, ns.to_vec())),
    }
}

/// What a calibration round may spend to make its figures precise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundBudget {
    /// Reads of each size a round starts with.
    pub reads: usize,
    /// Wall time after which a round stops adding reads and kernel runs, even if its medians
    /// are not yet within [`calibrate::TARGET_PRECISION`] (of the expert reads) and
    /// [`KERNEL_PRECISION`] (of the kernels).
    pub time: std::time::Duration,
    /// At most this many times the starting reads and kernel runs.
    pub max_factor: usize,
}

/// The precision a round aims at for the median kernel time.
pub const KERNEL_PRECISION: f64 = 0.01;

/// Kernel runs per format a round starts with.
const KERNEL_RUNS: usize = 100;

/// Kernels on one cached expert timed per format per round.
const WARM_KERNEL_RUNS: usize = 50;

/// Batched kernels timed per format per round (each is [`calibrate::BATCH_TOKENS`] tokens'
/// work).
const BATCHED_KERNEL_RUNS: usize = 10;

/// One calibration round into `samples`: reads of each size of the first store in the decode's
/// regime (half of them overlapping a kernel, each followed by a kernel on its bytes), half
/// as many of every other store (for their kernels during reads and on bytes just read), 3 RAM copies,
/// and kernel runs per format. The reads and the kernel runs start at `budget.reads` and 100
/// and are extended, batch by batch, until the median expert read and the median kernel are
/// precise enough or the budget is spent (a round that ran out is counted in
/// [`Samples::imprecise_rounds`]). `benches` are the stores' kernel benches, in order; the
/// read offsets draw from `seed`, the round number and the batch.
pub fn calibration_round(
    stores: &[ExpertStore],
    benches: &mut [KernelBench],
    budget: &RoundBudget,
    seed: u64,
    samples: &mut Samples,
) -> Result<()> {
    let start = std::time::Instant::now();
    let n_reads = budget.reads.max(3);
    let max_batches = budget.max_factor.max(1);
    let round_seed = crate::seed::derive_seed(seed, samples.rounds as u64);
    let mut large: Vec<f64> = Vec::new();
    let mut imprecise = false;
    for batch in 0..max_batches {
        if batch > 0 {
            if crate::stats::median_precision(&large) <= calibrate::TARGET_PRECISION {
                break;
            }
            if start.elapsed() >= budget.time {
                imprecise = true;
                break;
            }
            samples.extra_reads += n_reads;
        }
        let reads = calibrate::measure_reads_in_decode_regime(
            &stores[0],
            &mut benches[0],
            n_reads,
            crate::seed::derive_seed(round_seed, batch as u64),
        )?;
        push_landing(samples, stores[0].shape.format, &LandingSamples::of(&reads));
        samples.wake_ns.extend(&reads.wake_ns);
        samples.issue_ns.extend(&reads.issue_ns);
        samples.small_ns.extend(reads.small_ns);
        large.extend(&reads.large_ns);
        push_to(
            &mut samples.contended_kernel_ns,
            stores[0].shape.format,
            &reads.contended_kernel_ns,
        );
        push_to(
            &mut samples.loaded_kernel_ns,
            stores[0].shape.format,
            &reads.loaded_kernel_ns,
        );
        if batch + 1 == max_batches
            && crate::stats::median_precision(&large) > calibrate::TARGET_PRECISION
        {
            imprecise = true;
        }
    }
    let m = crate::stats::median(&large);
    samples
        .large_over_median
        .extend(large.iter().map(|t| t / m));
    samples.large_ns.extend(large);
    // Kernels during reads and on bytes just read, for the other formats: reads of their
    // stores (memory-bound formats slow more under a transfer than compute-bound ones).
    for (i, st) in stores.iter().enumerate().skip(1) {
        let r = calibrate::measure_reads_in_decode_regime(
            st,
            &mut benches[i],
            (n_reads / 2).max(6),
            round_seed,
        )?;
        push_landing(samples, st.shape.format, &LandingSamples::of(&r));
        samples.wake_ns.extend(&r.wake_ns);
        samples.issue_ns.extend(&r.issue_ns);
        push_to(
            &mut samples.loaded_kernel_ns,
            st.shape.format,
            &r.loaded_kernel_ns,
        );
        push_to(
            &mut samples.contended_kernel_ns,
            st.shape.format,
            &r.contended_kernel_ns,
        );
        if st.shape.stride() != stores[0].shape.stride() {
            push_to(&mut samples.other_large_ns, st.shape.stride(), &r.large_ns);
        }
    }
    samples
        .copy_ns
        .extend(calibrate::measure_copy(COPY_BYTES, 3));
    for b in benches.iter_mut() {
        let f = b.format();
        let mut ns = b.time(KERNEL_RUNS);
        for _ in 1..max_batches {
            if crate::stats::median_precision(&ns) <= KERNEL_PRECISION {
                break;
            }
            if start.elapsed() >= budget.time {
                imprecise = true;
                break;
            }
            ns.extend(b.time(KERNEL_RUNS));
        }
        push_to(&mut samples.kernel_ns, f, &ns);
        push_to(
            &mut samples.batched_kernel_ns,
            f,
            &b.time_batched(BATCHED_KERNEL_RUNS),
        );
        push_to(
            &mut samples.warm_kernel_ns,
            f,
            &b.time_warm(WARM_KERNEL_RUNS),
        );
    }
    // The last-level cache for weights: experts of the first store at random, back to back
    // (its capacity) and each after a sleep as long as this round's median kernel from memory
    // (how wall time ages it).
    let draw_seed = crate::seed::derive_seed(round_seed, u64::MAX);
    let (kernel_ns, interval_ns) = benches[0].time_random_paced(KERNEL_RUNS, draw_seed, &mut || {});
    samples.random_kernel_ns.extend(kernel_ns);
    samples.random_interval_ns.extend(interval_ns);
    let format = stores[0].shape.format;
    let pause = samples
        .kernel_ns
        .iter()
        .find(|(f, _)| *f == format)
        .map_or(0.0, |(_, ns)| crate::stats::median(ns));
    let pause = std::time::Duration::from_nanos(pause as u64);
    let (kernel_ns, interval_ns) =
        benches[0].time_random_paced(KERNEL_RUNS, draw_seed, &mut || std::thread::sleep(pause));
    samples.paced_kernel_ns.extend(kernel_ns);
    samples.paced_interval_ns.extend(interval_ns);
    samples.request_bytes = samples.request_bytes.or(stores[0].request_bytes());
    samples.imprecise_rounds += u32::from(imprecise);
    samples.rounds += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_keeps_formats_apart_and_counts_rounds() {
        let mut a = Samples {
            kernel_ns: vec![(WeightFormat::Q4K, vec![1.0])],
            rounds: 1,
            ..Samples::default()
        };
        let b = Samples {
            kernel_ns: vec![
                (WeightFormat::Q2K, vec![2.0]),
                (WeightFormat::Q4K, vec![3.0]),
            ],
            copy_ns: vec![4.0],
            rounds: 2,
            ..Samples::default()
        };
        a.extend(&b);
        assert_eq!(
            a.kernel_ns,
            vec![
                (WeightFormat::Q4K, vec![1.0, 3.0]),
                (WeightFormat::Q2K, vec![2.0])
            ]
        );
        assert_eq!((a.copy_ns.len(), a.rounds), (1, 3));
    }
}
