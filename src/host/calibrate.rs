//! `moesim host calibrate`: microbenchmarks of this host, fitted into a hardware profile.
//!
//! - Reads of the expert store at queue depth 1 through an I/O thread, as the real decode issues
//!   them, while another thread runs expert kernels (the decode's reads overlap its kernels, and
//!   on the development VM that makes them about 8 % slower than idle reads), into a pool of
//!   buffers as the decode's cache slots are (one hot buffer overstated the bandwidth by about
//!   30 %): expert-sized and 4 KiB reads at random places; the link is fitted as `t(b) = latency + b / bandwidth`
//!   through the two medians.
//! - RAM copy bandwidth (a large `copy_from_slice`): the DRAM tier's bandwidth.
//! - The fused SwiGLU expert kernels per format at the store's shape, on the configured threads,
//!   over every expert of the store held in memory and visited in a scattered order
//!   ([`KernelBench`]): weights come from memory as in a decode. (Timing one expert over and over
//!   keeps it in the CPU caches and overstated the rate by 40-65 % on the development VM.)
//!
//! Measurements that cannot describe the host are refused: a non-positive or non-finite
//! bandwidth or rate, or samples whose coefficient of variation is too high to use.

use std::time::Instant;

use super::store::{ALIGN, AlignedBuf, ExpertStore};
use crate::quality::proxy::swiglu_packed;
use crate::quant::WeightFormat;

/// The largest spread a sample may have: `(p90 − p10) / median`. Robust to the odd outlier
/// (a VM's scheduler hiccup), not to a machine whose times wander.
pub const MAX_SPREAD: f64 = 1.0;

/// A fitted link: `t(b) = latency_ns + b / bandwidth`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkFit {
    /// Latency to the first byte.
    pub latency_ns: f64,
    /// Bandwidth.
    pub bandwidth_bytes_per_s: f64,
    /// Spread `(p90 − p10) / median` of the large reads.
    pub spread: f64,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1]
}

/// The spread `(p90 − p10) / median`.
pub fn spread(v: &[f64]) -> f64 {
    (quantile(v, 0.9) - quantile(v, 0.1)) / median(v)
}

/// Fits a link from read times (ns) of `small` and `large` bytes; the reason when the samples
/// cannot describe a link.
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
    let c = spread(large_ns);
    if c > MAX_SPREAD {
        return Err(format!(
            "read times vary too much to use: spread (p90 - p10) / median {c:.2} > {MAX_SPREAD} over {} reads of {large} bytes (p10 {:.0} µs, median {:.0} µs, p90 {:.0} µs, max {:.0} µs; is the machine busy?)",
            large_ns.len(),
            quantile(large_ns, 0.1) * 1e-3,
            median(large_ns) * 1e-3,
            quantile(large_ns, 0.9) * 1e-3,
            quantile(large_ns, 1.0) * 1e-3,
        ));
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
        spread: c,
    })
}

/// A measured rate (units per second) from per-repeat times (ns) of `units` units each.
pub fn fit_rate(units: f64, ns: &[f64], what: &str) -> Result<f64, String> {
    if ns.is_empty() || ns.iter().any(|t| !t.is_finite() || *t <= 0.0) {
        return Err(format!(
            "{what}: a repeat took zero, negative or non-finite time"
        ));
    }
    let c = spread(ns);
    if c > MAX_SPREAD {
        return Err(format!(
            "{what}: times vary too much to use: spread (p90 - p10) / median {c:.2} > {MAX_SPREAD} over {} repeats",
            ns.len()
        ));
    }
    let rate = units / (median(ns) * 1e-9);
    if !rate.is_finite() || rate <= 0.0 {
        return Err(format!("{what}: rate {rate:.3e}/s is not positive"));
    }
    Ok(rate)
}

/// Times `n` expert reads and `n` 4 KiB reads at random places of `store`, interleaved, each
/// handed to an I/O thread, while another thread runs expert kernels non-stop over every expert
/// of `load` (weights streaming from memory): the concurrency of the real decode, whose reads
/// overlap the compute thread's kernels.
pub fn measure_reads_under_load(
    store: &ExpertStore,
    load: &KernelBench,
    n: usize,
    seed: u64,
) -> crate::error::Result<(Vec<f64>, Vec<f64>)> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| load.run_until(&stop));
        let r = measure_reads_via_thread(store, n, seed);
        stop.store(true, Ordering::Relaxed);
        r
    })
}

/// Times `n` expert reads and `n` 4 KiB reads at random places, interleaved, each handed to an
/// I/O thread and timed from the request to the reply, as the decode's compute thread sees a
/// load (thread hand-offs included).
fn measure_reads_via_thread(
    store: &ExpertStore,
    n: usize,
    seed: u64,
) -> crate::error::Result<(Vec<f64>, Vec<f64>)> {
    use std::sync::mpsc;
    let shape = store.shape;
    let objects = (shape.layers * shape.experts) as u64;
    let pages = (store.len_bytes() / ALIGN as u64).max(2);
    let (req_tx, req_rx) = mpsc::channel::<(Option<u32>, u64, AlignedBuf)>();
    let (done_tx, done_rx) = mpsc::channel::<crate::error::Result<AlignedBuf>>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for (g, offset, mut buf) in req_rx {
                let r = match g {
                    Some(g) => store.read_expert(g, &mut buf),
                    None => store.read_raw(offset, &mut buf),
                };
                if done_tx.send(r.map(|()| buf)).is_err() {
                    break;
                }
            }
        });
        // Destination buffers cycle through a pool as the decode's cache slots do, each touched
        // by a kernel-sized pass in between (a slot's buffer was computed on before it is reused).
        let mut pool: Vec<Option<AlignedBuf>> = (0..32)
            .map(|_| Some(AlignedBuf::new(shape.stride() as usize)))
            .collect();
        let mut slot = 0usize;
        let mut small = Some(AlignedBuf::new(ALIGN));
        // The random read positions: draw i of the seed's stream.
        let mut draws = (0u64..).map(|i| crate::trace::generate::derive_seed(seed, i));
        let mut next = || draws.next().expect("endless");
        let (mut small_ns, mut large_ns) = (Vec::new(), Vec::new());
        let gone = || crate::error::Error::usage("the I/O thread stopped");
        for _ in 0..n {
            let g = (next() % objects) as u32;
            slot = (slot + 1) % pool.len();
            let buf = pool[slot].take().expect("returned");
            std::hint::black_box(buf.as_slice().iter().step_by(64).fold(0u8, |a, &b| a ^ b));
            let t = Instant::now();
            req_tx.send((Some(g), 0, buf)).map_err(|_| gone())?;
            pool[slot] = Some(done_rx.recv().map_err(|_| gone())??);
            large_ns.push(t.elapsed().as_nanos() as f64);
            let page = 1 + next() % (pages - 1);
            let t = Instant::now();
            req_tx
                .send((None, page * ALIGN as u64, small.take().expect("returned")))
                .map_err(|_| gone())?;
            small = Some(done_rx.recv().map_err(|_| gone())??);
            small_ns.push(t.elapsed().as_nanos() as f64);
        }
        drop(req_tx);
        Ok((small_ns, large_ns))
    })
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
}

impl KernelBench {
    /// Reads every expert of `store` into memory.
    pub fn new(store: &ExpertStore) -> crate::error::Result<KernelBench> {
        let shape = store.shape;
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
        })
    }

    /// The format.
    pub fn format(&self) -> WeightFormat {
        self.shape.format
    }

    /// Runs expert SwiGLUs on the calling thread over every expert, in the scattered order,
    /// until `stop` is set.
    pub fn run_until(&self, stop: &std::sync::atomic::AtomicBool) {
        let shape = self.shape;
        let packed = shape.expert_bytes() as usize;
        let h = super::decode::hidden_vector(7, 0, shape.hidden);
        let mut y = vec![0.0f32; shape.hidden];
        let mut i = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            i = (i + self.step) % self.bufs.len();
            swiglu_packed(
                shape.format,
                shape.hidden,
                shape.ffn,
                &self.bufs[i].as_slice()[..packed],
                &h,
                &mut y,
                false,
            );
        }
    }

    /// Times `repeats` expert SwiGLUs on `threads` kernel threads (1: the calling thread),
    /// continuing the scattered visit where the last call stopped.
    pub fn time(&mut self, threads: usize, repeats: usize) -> Result<Vec<f64>, String> {
        let shape = self.shape;
        let packed = shape.expert_bytes() as usize;
        let h = super::decode::hidden_vector(7, 0, shape.hidden);
        let mut y = vec![0.0f32; shape.hidden];
        // One kernel thread is the calling thread: no pool to build.
        let pool = if threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        let mut out = Vec::with_capacity(repeats);
        for _ in 0..repeats {
            let b = &self.bufs[self.next];
            self.next = (self.next + self.step) % self.bufs.len();
            let kernel = |y: &mut [f32]| {
                swiglu_packed(
                    shape.format,
                    shape.hidden,
                    shape.ffn,
                    &b.as_slice()[..packed],
                    &h,
                    y,
                    threads > 1,
                )
            };
            let t = Instant::now();
            match &pool {
                Some(p) => p.install(|| kernel(&mut y)),
                None => kernel(&mut y),
            }
            std::hint::black_box(&y);
            out.push(t.elapsed().as_nanos() as f64);
        }
        Ok(out)
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // Times that wander: refused, naming the spread.
        let wild: Vec<f64> = (0..20).map(|i| 1e6 * (1.0 + (i % 5) as f64)).collect();
        let e = fit_link(4096, &s, 1 << 20, &wild).unwrap_err();
        assert!(e.contains("vary too much"), "{e}");
        let e = fit_rate(1e6, &wild, "kernels").unwrap_err();
        assert!(e.contains("vary too much"), "{e}");
        // One outlier among steady samples is fine.
        let mut steady = vec![1.0e6; 30];
        steady[7] = 9.0e6;
        assert!(fit_rate(1e6, &steady, "kernels").is_ok());
        // Too few samples.
        assert!(fit_link(4096, &s[..2], 1 << 20, &s).is_err());
    }
}
