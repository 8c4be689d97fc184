//! Probe: how an expert kernel's time depends on its reuse distance (bytes of expert weights
//! computed since the same buffer's last kernel), under uniform random draws from W buffers of
//! a pool holding a store's experts, for several W. If the time is a function of the distance
//! alone, the curves of different W agree bin by bin.
//!
//! `cargo run --release --example kernel_reuse -- STORE [int8|f32]`

use moesim::host::store::{AlignedBuf, ExpertStore};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: kernel_reuse STORE [int8|f32]");
        std::process::exit(2);
    };
    let kernel = match args.next().as_deref() {
        Some("f32") => moesim::quant::Kernel::F32,
        _ => moesim::quant::Kernel::Int8,
    };
    let store = ExpertStore::open(std::path::Path::new(&path), true).expect("a store");
    let shape = store.shape;
    let stride = shape.stride() as usize;
    let n = (shape.layers * shape.experts) as usize;
    let bufs: Vec<AlignedBuf> = (0..n)
        .map(|g| {
            let mut b = AlignedBuf::new(stride);
            store.read_expert(g as u32, &mut b).expect("a read");
            b
        })
        .collect();
    let h: Vec<f32> = (0..shape.hidden)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1)
        .collect();
    let mut y = vec![0f32; shape.hidden];
    let bytes = shape.expert_bytes() as usize;
    let mb = shape.expert_bytes() as f64 / 1e6;
    let mut run = |i: usize| -> f64 {
        let t = Instant::now();
        moesim::quality::proxy::swiglu_packed(
            shape.format,
            shape.hidden,
            shape.ffn,
            &bufs[i].as_slice()[..bytes],
            &h,
            &mut y,
            false,
            kernel,
        );
        std::hint::black_box(&y);
        t.elapsed().as_nanos() as f64
    };
    // Distance bins in experts: [1,2) [2,4) ... [128, inf).
    let edges = [1usize, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, usize::MAX];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // Memory rate: the scattered visit over the whole store.
    let step = (1..n)
        .rev()
        .find(|s| gcd(*s, n) == 1 && *s <= n / 2 + 1)
        .unwrap_or(1);
    let mut cold: Vec<f64> = (0..3 * n).map(|k| run((k * step) % n)).collect();
    cold.sort_by(f64::total_cmp);
    println!(
        "{} expert {:.2} MB; scattered visit median {:.0} µs",
        shape.format,
        mb,
        cold[cold.len() / 2] * 1e-3
    );
    print!("{:>6}", "W");
    for w in edges.windows(2) {
        print!(
            " {:>9}",
            format!(
                "{}-{}",
                w[0],
                if w[1] == usize::MAX {
                    "".into()
                } else {
                    w[1].to_string()
                }
            )
        );
    }
    println!("   (mean µs per distance bin in experts; count)");
    // KERNEL_REUSE_RAW=FILE: every timed draw as `w,k,buffer,ns`.
    let mut raw = std::env::var("KERNEL_REUSE_RAW")
        .ok()
        .map(|p| std::io::BufWriter::new(std::fs::File::create(p).expect("a raw file")));
    for (distinct, &w) in [false, true]
        .iter()
        .flat_map(|d| [16usize, 32, 48, 64, 96, 128].iter().map(move |w| (*d, w)))
    {
        if w == 16 {
            println!(
                "{}",
                if distinct {
                    "distinct buffers since"
                } else {
                    "kernels since"
                }
            );
        }
        let w = w.min(n);
        let mut last: Vec<Option<usize>> = vec![None; w];
        let mut sums = vec![(0.0f64, 0usize); edges.len() - 1];
        let draws = 3000;
        for k in 0..(2 * w + draws) {
            let i = (rnd() % w as u64) as usize;
            // Buffers spread over the pool: every (n / w)-th.
            let ns = run(i * (n / w));
            if let Some(f) = raw.as_mut() {
                use std::io::Write;
                writeln!(f, "{w},{k},{i},{ns}").expect("a write");
            }
            if let (Some(l), true) = (last[i], k >= 2 * w) {
                // Repeats counted, or distinct buffers since (a stack distance).
                let d = if distinct {
                    1 + last.iter().filter(|t| t.is_some_and(|t| t > l)).count()
                } else {
                    k - l
                };
                let b = edges
                    .windows(2)
                    .position(|e| d >= e[0] && d < e[1])
                    .unwrap();
                sums[b].0 += ns;
                sums[b].1 += 1;
            }
            last[i] = Some(k);
        }
        print!("{w:>6}");
        for (s, c) in &sums {
            if *c >= 10 {
                print!(" {:>5.0}/{:<3}", s / *c as f64 * 1e-3, c.min(&999));
            } else {
                print!(" {:>9}", "-");
            }
        }
        println!();
    }

    // Reads in between: over W = 32 buffers, each step is a miss with probability q (a direct
    // read of a random expert into a random one of the buffers, then its kernel) or a hit (a
    // kernel on a random buffer). Hits' mean time by q.
    let mut pool: Vec<AlignedBuf> = (0..32)
        .map(|j| {
            let mut b = AlignedBuf::new(stride);
            store.read_expert(j as u32, &mut b).expect("a read");
            b
        })
        .collect();
    for q in [0.0, 0.1, 0.25, 0.5, 0.75] {
        let (mut hits, mut loaded) = (Vec::new(), Vec::new());
        let mut read_ns = Vec::new();
        for k in 0..1500 {
            let r = rnd();
            let j = (r % 32) as usize;
            let miss = ((r >> 32) % 1000) as f64 / 1000.0 < q;
            if miss {
                let g = ((r >> 16) % n as u64) as u32;
                let t = Instant::now();
                store.read_expert(g, &mut pool[j]).expect("a read");
                read_ns.push(t.elapsed().as_nanos() as f64);
            }
            let t = Instant::now();
            moesim::quality::proxy::swiglu_packed(
                shape.format,
                shape.hidden,
                shape.ffn,
                &pool[j].as_slice()[..bytes],
                &h,
                &mut y,
                false,
                kernel,
            );
            std::hint::black_box(&y);
            let ns = t.elapsed().as_nanos() as f64;
            if k >= 100 {
                if miss { loaded.push(ns) } else { hits.push(ns) }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64 * 1e-3;
        println!(
            "reads among 32 buffers, miss share {q}: hits {:.0} µs ({}), loaded {:.0} µs ({}), reads {:.0} µs",
            mean(&hits),
            hits.len(),
            mean(&loaded),
            loaded.len(),
            mean(&read_ns)
        );
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}
