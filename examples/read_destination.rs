//! Probe: how long a direct read of an expert takes by where it lands (issue 23, BENCHMARKS.md
//! "Where reads land"). One thread reads random experts of a store, each followed by a kernel on
//! the bytes read (unless `nokernel`), in blocks of 64 per destination regime, the regimes
//! alternating block by block over 8 passes (the first untimed); prints each regime's median.
//!
//! Regimes: `pool32` (32 buffers cycled), `cold` (256 MiB of buffers cycled), `hot` (one buffer,
//! read into again and again), `fresh*` (64 buffers allocated for the block, dropped after it),
//! `set[A-D]` (four sets of 64 buffers allocated at the start, one per block).
//!
//! With `contents WAIT_S` instead of regimes: three sets of 64 buffers, zeroed, holding copies
//! of experts (which the bench also holds) and holding unique random bytes, left alone for
//! WAIT_S seconds, then one read into each buffer, the sets interleaved (a host that merges
//! identical pages would make the first two slower).
//!
//! `cargo run --release --example read_destination -- STORE pool32,cold,freshA,hot,freshB`
//! (STORE: a store `moesim host calibrate` wrote, e.g.
//! `target/moesim-host/micro-moe-q2_k-seed1.experts`).

use moesim::host::calibrate::KernelBench;
use moesim::host::store::{AlignedBuf, ExpertStore};
use std::time::Instant;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(order)) = (args.next(), args.next()) else {
        eprintln!("usage: read_destination STORE REGIME[,REGIME...] [nokernel]");
        std::process::exit(2);
    };
    let third = args.next();
    if order == "contents" {
        let wait_s: u64 = third.and_then(|w| w.parse().ok()).unwrap_or(0);
        contents(&path, wait_s);
        return;
    }
    let kernels = third.is_none_or(|a| a != "nokernel");
    let order: Vec<&str> = order.split(',').collect();
    let store = ExpertStore::open(std::path::Path::new(&path), true).expect("a store");
    let mut bench = KernelBench::new(&store, 1, moesim::quant::Kernel::Int8).expect("a bench");
    let stride = store.shape.stride() as usize;
    let experts = (store.shape.layers * store.shape.experts) as u64;
    let pool = |n: usize| -> Vec<AlignedBuf> { (0..n).map(|_| AlignedBuf::new(stride)).collect() };
    let mut pool32 = pool(32);
    let mut cold = pool((256usize << 20) / stride);
    let mut hot = AlignedBuf::new(stride);
    let mut sets: Vec<Vec<AlignedBuf>> = (0..4).map(|_| pool(64)).collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); order.len()];
    let mut x: u64 = 12345;
    let (mut next32, mut next_cold) = (0usize, 0usize);
    for pass in 0..8 {
        for (r, name) in order.iter().enumerate() {
            let mut fresh = if name.starts_with("fresh") {
                pool(64)
            } else {
                Vec::new()
            };
            for k in 0..64 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let g = ((x >> 33) % experts) as u32;
                let buf: &mut AlignedBuf = match *name {
                    "pool32" => {
                        next32 = (next32 + 1) % pool32.len();
                        &mut pool32[next32]
                    }
                    "cold" => {
                        next_cold = (next_cold + 1) % cold.len();
                        &mut cold[next_cold]
                    }
                    "hot" => &mut hot,
                    s if s.starts_with("set") => {
                        let j = (s.as_bytes().get(3).copied().unwrap_or(b'A') - b'A') as usize % 4;
                        &mut sets[j][k]
                    }
                    s if s.starts_with("fresh") => &mut fresh[k],
                    other => {
                        eprintln!("unknown regime {other}");
                        std::process::exit(2);
                    }
                };
                let t = Instant::now();
                store.read_expert(g, buf).expect("a read");
                let ns = t.elapsed().as_nanos() as f64;
                if kernels {
                    bench.run_on(buf.as_slice());
                }
                if pass > 0 {
                    times[r].push(ns);
                }
            }
        }
    }
    let line: Vec<String> = order
        .iter()
        .zip(times.iter_mut())
        .map(|(n, v)| format!("{n} {:.0} us", median(v) / 1e3))
        .collect();
    println!("{}", line.join("  "));
}

fn contents(path: &str, wait_s: u64) {
    let store = ExpertStore::open(std::path::Path::new(path), true).expect("a store");
    let _bench = KernelBench::new(&store, 1, moesim::quant::Kernel::Int8).expect("a bench");
    let stride = store.shape.stride() as usize;
    let experts = (store.shape.layers * store.shape.experts) as u64;
    let set = |fill: u8| -> Vec<AlignedBuf> {
        (0..64u64)
            .map(|i| {
                let mut b = AlignedBuf::new(stride);
                match fill {
                    0 => {}
                    1 => store
                        .read_expert((i % experts) as u32, &mut b)
                        .expect("a read"),
                    _ => {
                        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (i << 20);
                        for c in b.as_mut_slice().chunks_exact_mut(8) {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            c.copy_from_slice(&x.to_le_bytes());
                        }
                    }
                }
                b
            })
            .collect()
    };
    let mut sets = [set(0), set(1), set(2)];
    std::thread::sleep(std::time::Duration::from_secs(wait_s));
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut x: u64 = 999;
    for k in 0..64 {
        for (s, buffers) in sets.iter_mut().enumerate() {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let t = Instant::now();
            store
                .read_expert(((x >> 33) % experts) as u32, &mut buffers[k])
                .expect("a read");
            times[s].push(t.elapsed().as_nanos() as f64);
        }
    }
    let line: Vec<String> = ["zero", "twin", "unique"]
        .iter()
        .zip(times.iter_mut())
        .map(|(n, v)| format!("{n} {:.0} us", median(v) / 1e3))
        .collect();
    println!("after {wait_s} s: {}", line.join("  "));
}
