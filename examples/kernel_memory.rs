//! Probe: does the memory an expert sits in change its kernel's time? Several sets of buffers,
//! each allocated on its own and holding every expert of a store, are visited in the
//! calibration's scattered order, one block of kernels per set, the sets alternating over
//! passes (the first untimed); prints each set's median per pass and overall.
//!
//! `cargo run --release --example kernel_memory -- STORE SETS [int8|f32]`

use moesim::host::store::{AlignedBuf, ExpertStore};
use std::time::Instant;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(sets)) = (args.next(), args.next()) else {
        eprintln!("usage: kernel_memory STORE SETS [int8|f32]");
        std::process::exit(2);
    };
    let kernel = match args.next().as_deref() {
        Some("f32") => moesim::quant::Kernel::F32,
        _ => moesim::quant::Kernel::Int8,
    };
    let sets: usize = sets.parse().expect("a number of sets");
    let store = ExpertStore::open(std::path::Path::new(&path), true).expect("a store");
    let shape = store.shape;
    let stride = shape.stride() as usize;
    let n = (shape.layers * shape.experts) as usize;
    let mut all: Vec<Vec<AlignedBuf>> = (0..sets)
        .map(|_| {
            (0..n)
                .map(|g| {
                    let mut b = AlignedBuf::new(stride);
                    store.read_expert(g as u32, &mut b).expect("a read");
                    b
                })
                .collect()
        })
        .collect();
    let step = (1..n)
        .rev()
        .find(|s| gcd(*s, n) == 1 && *s <= n / 2 + 1)
        .unwrap_or(1);
    let h: Vec<f32> = (0..shape.hidden)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1)
        .collect();
    let mut y = vec![0f32; shape.hidden];
    let bytes = shape.expert_bytes() as usize;
    // One expert's SwiGLU on the bytes of `b`, timed (ns).
    let mut time_kernel = |b: &AlignedBuf| -> f64 {
        let t = Instant::now();
        moesim::quality::proxy::swiglu_packed(
            shape.format,
            shape.hidden,
            shape.ffn,
            &b.as_slice()[..bytes],
            &h,
            &mut y,
            false,
            kernel,
        );
        std::hint::black_box(&y);
        t.elapsed().as_nanos() as f64
    };
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); sets];
    let mut next = 0usize;
    for pass in 0..8 {
        let mut line = format!("pass {pass}:");
        for (s, set) in all.iter_mut().enumerate() {
            let mut t_pass = Vec::new();
            for _ in 0..n {
                let b = &set[next];
                next = (next + step) % n;
                t_pass.push(time_kernel(b));
            }
            line += &format!(" {:.0}", median(&mut t_pass.clone()) * 1e-3);
            if pass > 0 {
                times[s].extend(t_pass);
            }
        }
        println!("{line}");
    }
    let all_medians: Vec<String> = times
        .iter_mut()
        .map(|t| format!("{:.0}", median(t) * 1e-3))
        .collect();
    println!("{}: medians µs {}", shape.format, all_medians.join(" "));
    // Per buffer of set 0: is a buffer's speed its own (stable between halves of the passes)?
    let mut per: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); n];
    for pass in 0..16 {
        for i in 0..n {
            let b = &all[0][(i * step) % n];
            let ns = time_kernel(b);
            let j = (i * step) % n;
            if pass < 8 {
                per[j].0.push(ns)
            } else {
                per[j].1.push(ns)
            }
        }
    }
    let halves: Vec<(f64, f64)> = per
        .iter_mut()
        .map(|(a, b)| (median(a) * 1e-3, median(b) * 1e-3))
        .collect();
    let mut firsts: Vec<f64> = halves.iter().map(|h| h.0).collect();
    firsts.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| firsts[((firsts.len() - 1) as f64 * p) as usize];
    let (ma, mb) = (
        halves.iter().map(|h| h.0).sum::<f64>() / n as f64,
        halves.iter().map(|h| h.1).sum::<f64>() / n as f64,
    );
    let cov: f64 = halves.iter().map(|h| (h.0 - ma) * (h.1 - mb)).sum();
    let va: f64 = halves.iter().map(|h| (h.0 - ma).powi(2)).sum();
    let vb: f64 = halves.iter().map(|h| (h.1 - mb).powi(2)).sum();
    println!(
        "set 0 per buffer: p10 {:.0} p50 {:.0} p90 {:.0} µs, correlation between halves {:.2}",
        q(0.1),
        q(0.5),
        q(0.9),
        cov / (va * vb).sqrt()
    );
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}
