//! A real paged-expert decode: the simulator's cache, eviction policy and router over a real
//! expert store, with real reads and real kernels, timed on the wall clock.
//!
//! Per decode token and MoE layer: the router chooses experts from the trace's logits given the
//! cache as it is; the cache serves the selection as one event (the same `ExpertCache` calls, in
//! the same order, as the simulator); every miss is queued to one I/O thread, which reads the
//! expert from the store into a buffer (direct I/O when the store allows it), first come first
//! served; meanwhile the compute thread runs the hits' SwiGLU kernels in rank order, then each
//! loaded expert as it arrives. This is the simulator's schedule with one link of one channel.

use std::sync::mpsc;
use std::time::Instant;

use super::store::{AlignedBuf, ExpertStore};
use crate::cache::bank::{CacheBank, CacheMap, Oracles};
use crate::cache::replay::Scope;
use crate::cache::{Lookup, PolicyKind};
use crate::error::{Error, Result};
use crate::quality::proxy::swiglu_packed;
use crate::router::{GateWeights, RouteInput, RouterKind, Selection};
use crate::sim::SimTrace;

/// How to decode.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// Experts each layer's cache holds.
    pub capacity_experts: u32,
    /// Eviction policy.
    pub policy: PolicyKind,
    /// Router.
    pub router: RouterKind,
    /// Gate weights.
    pub gate: GateWeights,
    /// Kernel threads: 1 runs every GEMV on the compute thread, more split rows over a pool.
    pub threads: usize,
    /// The expert kernels.
    pub kernel: crate::quant::Kernel,
    /// Seed of the hidden vectors.
    pub hidden_seed: u64,
}

/// What a real decode measured.
#[derive(Debug, Clone, Default)]
pub struct DecodeReport {
    /// Wall time of each decode token, in order.
    pub token_latencies_ns: Vec<u64>,
    /// Expert uses.
    pub expert_uses: u64,
    /// Uses served from the cache.
    pub hits: u64,
    /// Uses read from the store.
    pub misses: u64,
    /// Bytes read from the store.
    pub bytes_read: u64,
    /// Whether reads bypassed the page cache.
    pub direct: bool,
    /// Wall time of the reads (on the I/O thread), summed.
    pub read_ns: u64,
    /// Wall time of the expert kernels, summed.
    pub compute_ns: u64,
    /// Wall time the compute thread waited for reads, summed.
    pub wait_ns: u64,
    /// Every expert kernel in order: the expert (`layer * experts + expert`), its wall time,
    /// and whether it ran on bytes read just before (a miss).
    pub kernels: Vec<(u32, u64, bool)>,
    /// When each of those kernels started, in ns since the decode's first token started.
    pub kernel_starts_ns: Vec<u64>,
}

/// The hidden vector of decode event `event` (deterministic in the seed and the event).
pub fn hidden_vector(seed: u64, event: usize, hidden: usize) -> Vec<f32> {
    crate::quant::eval::sample(
        crate::quant::eval::WeightDistribution::Gaussian,
        hidden,
        crate::seed::derive_seed(seed, event as u64),
    )
}

/// One expert output, for checks: (event, layer, expert, its output).
pub type Observed = (usize, u32, u16, Vec<f32>);

/// Decodes every request of `trace` (decode tokens only) against `store`. With `observe`, also
/// returns every expert output (slow: for tests).
///
/// `buffers` are the engine's expert buffers, allocated once as a serving engine allocates its
/// cache slots at load: the decode reads into the first ones it needs (allocating any that are
/// missing, of the store's stride) and leaves every buffer there when it returns. (Where a read
/// lands changes its time by up to a quarter on the development VM; fresh buffers for every
/// decode made the reads of one decode differ from another's and from the calibration's, which
/// reads into the same buffers: `KernelBench::lend_buffers`.)
pub fn decode(
    store: &ExpertStore,
    trace: &SimTrace,
    o: &DecodeOptions,
    buffers: &mut Vec<AlignedBuf>,
    mut observe: Option<&mut Vec<Observed>>,
) -> Result<DecodeReport> {
    let shape = store.shape;
    let w = &trace.workload;
    if (w.layers, w.experts) != (shape.layers, shape.experts) {
        return Err(Error::usage(format!(
            "the trace has {} layers x {} experts; the store {} has {} x {}",
            w.layers,
            w.experts,
            store.path().display(),
            shape.layers,
            shape.experts
        )));
    }
    if trace.requests.iter().any(|r| r.prefill_tokens > 0) {
        return Err(Error::usage(
            "a real decode runs decode tokens only: give the trace 0 prompt tokens",
        ));
    }
    if o.capacity_experts > shape.experts {
        return Err(Error::usage(format!(
            "capacity {} is more than the {} experts per layer",
            o.capacity_experts, shape.experts
        )));
    }
    let (l, e, k) = (w.layers, w.experts, w.top_k as usize);
    let expert_bytes = shape.expert_bytes();
    let stride = shape.stride() as usize;
    let packed = expert_bytes as usize;
    let parallel = o.threads > 1;
    let pool = if parallel {
        Some(
            rayon::ThreadPoolBuilder::new()
                .num_threads(o.threads)
                .build()
                .map_err(|e| Error::usage(format!("threads: {e}")))?,
        )
    } else {
        None
    };
    // Hidden vectors, before the clock starts.
    let mut hidden: Vec<Vec<f32>> = Vec::new();
    for r in &trace.requests {
        for t in 0..r.decode_tokens {
            for layer in 0..l {
                hidden.push(hidden_vector(
                    o.hidden_seed,
                    trace.decode_event(r, t, layer),
                    shape.hidden,
                ));
            }
        }
    }
    if o.policy.needs_oracle() || o.policy.needs_popularity() {
        return Err(Error::usage(format!(
            "policy {}: a real decode cannot see the future or the whole trace",
            o.policy
        )));
    }
    let scales = crate::sim::router_scales(trace);
    let mut router = o.router.build(l, e, &scales, o.gate);
    // The simulator's caches: per layer, built once, reset at every request.
    let map = CacheMap::new(Scope::PerLayer, l, e);
    let mut bank = CacheBank::new(
        map,
        o.capacity_experts as u64 * expert_bytes,
        expert_bytes,
        &o.policy,
        &Oracles::none(map.n_caches()),
    );
    // Buffers: every cache slot, plus top-k for experts streamed without caching.
    let n_bufs = (l * o.capacity_experts) as usize + k;
    if buffers.iter().any(|b| b.as_slice().len() < stride) {
        return Err(Error::usage(format!(
            "an expert buffer is smaller than the store's stride of {stride} bytes"
        )));
    }
    while buffers.len() < n_bufs {
        buffers.push(AlignedBuf::new(stride));
    }
    // Popped from the end: the first buffers are used first.
    let mut free: Vec<AlignedBuf> = buffers.drain(..n_bufs).rev().collect();
    let mut report = DecodeReport {
        direct: store.direct,
        ..Default::default()
    };
    // Room for every kernel's record: no allocation while the clock runs.
    let uses: usize = trace
        .requests
        .iter()
        .map(|r| r.decode_tokens as usize * l as usize * k)
        .sum();
    report.kernels.reserve(uses);
    report.kernel_starts_ns.reserve(uses);
    let (req_tx, req_rx) = mpsc::channel::<(u32, AlignedBuf)>();
    let (done_tx, done_rx) = mpsc::channel::<Result<(u32, AlignedBuf, u64)>>();
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(move || {
            for (g, mut buf) in req_rx {
                let start = Instant::now();
                let r = store.read_expert(g, &mut buf);
                let ns = start.elapsed().as_nanos() as u64;
                if done_tx.send(r.map(|()| (g, buf, ns))).is_err() {
                    break;
                }
            }
        });
        let mut selection = Selection::default();
        let mut y = vec![0.0f32; shape.hidden];
        let mut out = vec![0.0f32; shape.hidden];
        let mut previous: Vec<u16> = Vec::new();
        // Hits and misses of the current selection (kept across layers: no allocation while
        // the clock runs).
        let mut ready: Vec<usize> = Vec::with_capacity(k);
        let mut loading: Vec<(usize, bool)> = Vec::with_capacity(k);
        let mut hidden_i = 0usize;
        let decode_start = Instant::now();
        for r in &trace.requests {
            // Caches reset between requests, as the simulator's default.
            bank.reset();
            let mut slots: Vec<Option<AlignedBuf>> = Vec::new();
            slots.resize_with((l * e) as usize, || None);
            for t in 0..r.decode_tokens {
                let token_start = Instant::now();
                for layer in 0..l {
                    let ev = trace.decode_event(r, t, layer);
                    let h = &hidden[hidden_i];
                    hidden_i += 1;
                    let input = RouteInput {
                        layer,
                        logits: w.logits_of(ev),
                        top_k: k,
                        previous_layer: (layer > 0).then_some(&previous[..]),
                    };
                    bank.route(router.as_mut(), &input, expert_bytes, &mut selection);
                    // The cache serves the selection as one event.
                    bank.begin_event(layer, &selection.experts);
                    ready.clear();
                    loading.clear();
                    for (i, &x) in selection.experts.iter().enumerate() {
                        report.expert_uses += 1;
                        let lookup = bank.lookup(layer, x as u32, expert_bytes);
                        for g in bank.evicted() {
                            free.push(slots[g].take().expect("an evicted expert had a buffer"));
                        }
                        match lookup {
                            Lookup::Hit => {
                                report.hits += 1;
                                ready.push(i);
                            }
                            Lookup::Miss { inserted } => {
                                report.misses += 1;
                                let buf = free.pop().expect("enough buffers");
                                req_tx
                                    .send((layer * e + x as u32, buf))
                                    .map_err(|_| Error::usage("the I/O thread stopped"))?;
                                loading.push((i, inserted));
                            }
                        }
                    }
                    y.iter_mut().for_each(|v| *v = 0.0);
                    let mut run = |i: usize, bytes: &[u8], y: &mut [f32], loaded: bool| {
                        let start = Instant::now();
                        let kernel = |out: &mut [f32]| {
                            swiglu_packed(
                                shape.format,
                                shape.hidden,
                                shape.ffn,
                                &bytes[..packed],
                                h,
                                out,
                                parallel,
                                o.kernel,
                            )
                        };
                        // One kernel thread: this thread (no hand-off to a pool).
                        match &pool {
                            Some(p) => p.install(|| kernel(&mut out)),
                            None => kernel(&mut out),
                        }
                        let ns = start.elapsed().as_nanos() as u64;
                        report.compute_ns += ns;
                        let g = layer * e + selection.experts[i] as u32;
                        report.kernels.push((g, ns, loaded));
                        report
                            .kernel_starts_ns
                            .push(start.duration_since(decode_start).as_nanos() as u64);
                        let wt = selection.weights[i];
                        y.iter_mut().zip(&out).for_each(|(a, &b)| *a += wt * b);
                        if let Some(obs) = observe.as_deref_mut() {
                            obs.push((ev, layer, selection.experts[i], out.clone()));
                        }
                    };
                    for &i in &ready {
                        let g = (layer * e + selection.experts[i] as u32) as usize;
                        let buf = slots[g].as_ref().expect("a hit has a buffer");
                        run(i, buf.as_slice(), &mut y, false);
                    }
                    for &(i, inserted) in &loading {
                        let waiting = Instant::now();
                        let (g, buf, ns) = done_rx
                            .recv()
                            .map_err(|_| Error::usage("the I/O thread stopped"))??;
                        report.wait_ns += waiting.elapsed().as_nanos() as u64;
                        debug_assert_eq!(g, layer * e + selection.experts[i] as u32);
                        report.read_ns += ns;
                        report.bytes_read += stride as u64;
                        run(i, buf.as_slice(), &mut y, true);
                        if inserted {
                            slots[g as usize] = Some(buf);
                        } else {
                            free.push(buf);
                        }
                    }
                    previous.clear();
                    previous.extend_from_slice(&selection.experts);
                    std::hint::black_box(&y);
                }
                report
                    .token_latencies_ns
                    .push(token_start.elapsed().as_nanos() as u64);
            }
            // Return the cached buffers for the next request.
            for s in slots.iter_mut() {
                if let Some(b) = s.take() {
                    free.push(b);
                }
            }
        }
        drop(req_tx);
        Ok(())
    })?;
    free.reverse();
    buffers.splice(0..0, free);
    Ok(report)
}
