//! Probe: the real decode's expert kernels by reuse distance, against kernels on experts drawn
//! at random from the same memory. Decodes one grid point of `host validate` (the calibration's
//! pool lent to it, as `host validate` does), then times random draws over W buffers of that
//! pool; prints both by reuse distance (kernels since the same expert's / buffer's last one)
//! and by bytes fetched since under random replacement at CAPACITY experts.
//!
//! `cargo run --release --example decode_kernels -- FORMAT CAPACITY_PER_LAYER POLICY [S_EXPERTS]`

use moesim::host::calibrate::KernelBench;
use moesim::host::workload::{Workload, open_store, store_shape};
use moesim::quant::WeightFormat;
use std::path::Path;

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 3 {
        eprintln!("usage: decode_kernels FORMAT CAPACITY POLICY [S_EXPERTS]");
        std::process::exit(2);
    }
    let format: WeightFormat = a[0].parse().expect("a format");
    let capacity: u32 = a[1].parse().expect("a capacity");
    let s_experts: f64 = a.get(3).map_or(42.0, |s| s.parse().expect("a number"));
    let w = Workload {
        model: "micro-moe".into(),
        generator: "micro-moe".into(),
        tokens: 64,
        seed: 1,
        threads: 1,
        kernel: moesim::quant::Kernel::Int8,
    };
    let model = moesim::moe::load("micro-moe").expect("the model");
    let shape = store_shape(&model, format, 1).expect("a shape");
    let store = open_store(
        Path::new("target/moesim-host"),
        "micro-moe",
        shape,
        true,
        &mut |_, _| {},
    )
    .expect("a store");
    let mut bench = KernelBench::new(&store, 1, w.kernel).expect("a bench");
    let exp = w
        .experiment(format, "host", capacity, &a[2], 0.0)
        .expect("an experiment");
    let trace = exp.build_trace().expect("a trace");
    let policy: moesim::cache::PolicyKind = a[2].parse().expect("a policy");
    let options = w.decode_options(&exp, capacity, policy);
    let mut reports = Vec::new();
    for _ in 0..3 {
        let mut buffers = bench.lend_buffers(0);
        let r = moesim::host::decode::decode(&store, &trace, &options, &mut buffers, None)
            .expect("a decode");
        bench.return_buffers(buffers);
        reports.push(r);
    }
    let edges = [1usize, 2, 4, 8, 16, 32, 64, 128, usize::MAX];
    let bin = |d: usize| {
        edges
            .windows(2)
            .position(|e| d >= e[0] && d < e[1])
            .unwrap()
    };
    let fetch_edges = [0.0, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0, 1.5, 2.5, 1e9];
    let fbin = |f: f64| {
        fetch_edges
            .windows(2)
            .position(|e| f >= e[0] && f < e[1])
            .unwrap()
    };
    let cold = moesim::stats::median(&bench.time(300));
    let warm = moesim::stats::median(&bench.time_warm(100));
    println!(
        "{format} capacity {capacity}: scattered {:.0} µs, warm {:.0} µs",
        cold * 1e-3,
        warm * 1e-3
    );
    let report = |name: &str, seq: &[(u32, f64, bool)]| {
        // By kernels since (repeats counted), hits only; and by fetched/S under the RR rule.
        let mut by_d = vec![(0.0, 0usize); edges.len() - 1];
        let mut by_f = vec![(0.0, 0.0, 0usize); fetch_edges.len() - 1];
        let mut last: std::collections::HashMap<u32, (usize, f64)> = Default::default();
        let mut fetched = 0.0f64;
        let (mut total, mut model_total, mut n) = (0.0, 0.0, 0usize);
        for (k, &(g, ns, loaded)) in seq.iter().enumerate() {
            let p = match (loaded, last.get(&g)) {
                (false, Some(&(_, f))) => (-(fetched - f) / s_experts).exp(),
                _ => 0.0,
            };
            if let (false, Some(&(l, f)), false) = (loaded, last.get(&g), ns.is_nan()) {
                let b = bin(k - l);
                by_d[b].0 += ns;
                by_d[b].1 += 1;
                let fb = fbin((fetched - f) / s_experts);
                by_f[fb].0 += ns;
                by_f[fb].1 += cold - p * (cold - warm);
                by_f[fb].2 += 1;
                total += ns;
                model_total += cold - p * (cold - warm);
                n += 1;
            }
            fetched += 1.0 - p;
            last.insert(g, (k, fetched));
        }
        let row: Vec<String> = by_d
            .iter()
            .map(|(s, c)| {
                if *c >= 5 {
                    format!("{:.0}/{}", s / *c as f64 * 1e-3, c)
                } else {
                    "-".into()
                }
            })
            .collect();
        println!(
            "{name:>8} by kernels since [1,2,4,8,16,32,64,128,inf): {}",
            row.join(" ")
        );
        let row: Vec<String> = by_f
            .iter()
            .map(|(s, m, c)| {
                if *c >= 5 {
                    format!(
                        "{:.0}|{:.0}/{}",
                        s / *c as f64 * 1e-3,
                        m / *c as f64 * 1e-3,
                        c
                    )
                } else {
                    "-".into()
                }
            })
            .collect();
        println!(
            "{name:>8} by fetched/S [0,.05,.1,.2,.4,.7,1,1.5,2.5,inf) measured|RR: {}",
            row.join(" ")
        );
        println!(
            "{name:>8} reused kernels: measured mean {:.0} µs, RR model {:.0} µs ({} kernels)",
            total / n.max(1) as f64 * 1e-3,
            model_total / n.max(1) as f64 * 1e-3,
            n
        );
    };
    // Hits by whether their layer also had a miss (its read in flight while they ran).
    let experts = shape.experts;
    for (i, r) in reports.iter().enumerate() {
        let k = &r.kernels;
        let (mut with, mut without) = (Vec::new(), Vec::new());
        let mut j = 0;
        while j < k.len() {
            let layer = k[j].0 / experts;
            let end = (j..k.len())
                .find(|&x| k[x].0 / experts != layer)
                .unwrap_or(k.len());
            let missed = k[j..end].iter().any(|x| x.2);
            for x in k[j..end].iter().filter(|x| !x.2) {
                if missed {
                    with.push(x.1 as f64)
                } else {
                    without.push(x.1 as f64)
                }
            }
            j = end;
        }
        let m = |v: &[f64]| {
            if v.is_empty() {
                f64::NAN
            } else {
                moesim::stats::median(v) * 1e-3
            }
        };
        println!(
            "decode {i}: hits with a read in flight median {:.0} µs ({}), without {:.0} µs ({})",
            m(&with),
            with.len(),
            m(&without),
            without.len()
        );
    }
    for (i, r) in reports.iter().enumerate() {
        let seq: Vec<(u32, f64, bool)> = r
            .kernels
            .iter()
            .map(|&(g, ns, l)| (g, ns as f64, l))
            .collect();
        let loaded: Vec<f64> = seq.iter().filter(|k| k.2).map(|k| k.1).collect();
        if !loaded.is_empty() {
            println!(
                "decode {i}: loaded kernels median {:.0} µs ({})",
                moesim::stats::median(&loaded) * 1e-3,
                loaded.len()
            );
        }
        report(&format!("decode {i}"), &seq);
        // After the last read: no transfer in flight any more.
        if let Some(last_load) = seq.iter().rposition(|k| k.2) {
            let quiet: Vec<(u32, f64, bool)> = seq
                .iter()
                .enumerate()
                .map(|(j, &(g, ns, l))| (g, if j > last_load { ns } else { f64::NAN }, l))
                .collect();
            report(&format!("quiet {i}"), &quiet);
        }
    }
    // Random draws from W buffers of the pool, over the same memory.
    let pool = bench.lend_buffers(0);
    let h = moesim::host::decode::hidden_vector(7, 0, shape.hidden);
    let mut y = vec![0f32; shape.hidden];
    let bytes = shape.expert_bytes() as usize;
    for wdraw in [32usize, 64, 128] {
        let seq: Vec<(u32, f64, bool)> = (0..2000u64)
            .map(|k| {
                let i = (moesim::seed::derive_seed(7, k) % wdraw as u64) as usize;
                let t = std::time::Instant::now();
                moesim::quality::proxy::swiglu_packed(
                    shape.format,
                    shape.hidden,
                    shape.ffn,
                    &pool[i].as_slice()[..bytes],
                    &h,
                    &mut y,
                    false,
                    w.kernel,
                );
                std::hint::black_box(&y);
                (i as u32, t.elapsed().as_nanos() as f64, false)
            })
            .collect();
        report(&format!("rand {wdraw}"), &seq[2 * wdraw..]);
    }
    bench.return_buffers(pool);
}
