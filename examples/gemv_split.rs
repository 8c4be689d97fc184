//! Probe: where a two-thread matrix-vector product loses time against two single-thread halves.
//!
//! One 4096 x 14336 matrix (4096 outputs), int8 kernels, batch 1, products back to back:
//!
//! - `one`: the whole product on this thread;
//! - `split`: `gemm_with(.., parallel = true)` timed on a worker of the global rayon pool, as
//!   `quant bench` times it (the row split of `src/quant/row_pool.rs`; before it, rayon's
//!   `par_chunks`);
//! - `spin`: this thread and one helper that spins on an atomic for its half (no sleeping, no
//!   work stealing: the floor of any two-thread split);
//! - `halves`: the two halves one after another on this thread (what each costs alone).
//!
//! Prints each mode's median, 10th/90th percentile and mean time per product and its rate in
//! G weights/s at the median and at the mean (`quant bench` times the mean of a batch). `cargo run --release --example gemv_split -- [FORMAT] [REPEATS]`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use moesim::quant::{Kernel, QuantizedMatrix, WeightFormat, gemv_packed_with};

fn stats(label: &str, weights: f64, mut ns: Vec<f64>) {
    ns.sort_by(f64::total_cmp);
    let q = |p: f64| ns[((ns.len() - 1) as f64 * p).round() as usize];
    let mean = ns.iter().sum::<f64>() / ns.len() as f64;
    println!(
        "{label:>7}: median {:8.1} us (p10 {:8.1}, p90 {:8.1}, mean {:8.1})  {:6.2} G weights/s at the median, {:6.2} at the mean",
        q(0.5) / 1e3,
        q(0.1) / 1e3,
        q(0.9) / 1e3,
        mean / 1e3,
        weights / q(0.5),
        weights / mean
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let format: WeightFormat = args
        .get(1)
        .map(|s| s.parse().expect("a weight format"))
        .unwrap_or_else(|| "q4_k".parse().unwrap());
    let repeats: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(400);
    let (rows, cols) = (4096usize, 14336usize);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i as u64).wrapping_mul(2654435761) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let q = QuantizedMatrix::quantize(format, rows, cols, &w, None).expect("quantize");
    let x: Vec<f32> = (0..cols)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let mut y = vec![0.0f32; rows];
    let weights = (rows * cols) as f64;
    let row_bytes = q.data.len() / rows;
    let half = rows / 2;
    let (top, bottom) = q.data.split_at(half * row_bytes);
    let time = |f: &mut dyn FnMut()| -> Vec<f64> {
        for _ in 0..20 {
            f();
        }
        (0..repeats)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_nanos() as f64
            })
            .collect()
    };
    for round in 0..2 {
        println!("round {round}, {format}, {rows} x {cols}");
        stats(
            "one",
            weights,
            time(&mut || {
                gemv_packed_with(Kernel::Int8, format, &q.data, cols, &x, &mut y, false);
                black_box(&y);
            }),
        );
        let ns = rayon::scope(|_| {
            time(&mut || {
                q.gemm_with(Kernel::Int8, &x, &mut y, true);
                black_box(&y);
            })
        });
        stats("split", weights, ns);
        // A helper spinning on a generation counter.
        let generation = AtomicU64::new(0);
        let done = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let mut y_bottom = vec![0.0f32; rows - half];
        let mut y_top = vec![0.0f32; half];
        let ns = std::thread::scope(|s| {
            let (generation, done, stop) = (&generation, &done, &stop);
            let y_bottom = &mut y_bottom;
            let x = &x;
            s.spawn(move || {
                let mut seen = 0;
                loop {
                    let g = generation.load(Ordering::Acquire);
                    if g == seen {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::hint::spin_loop();
                        continue;
                    }
                    seen = g;
                    gemv_packed_with(Kernel::Int8, format, bottom, cols, x, y_bottom, false);
                    done.store(g, Ordering::Release);
                }
            });
            let mut g = 0;
            let ns = time(&mut || {
                g += 1;
                generation.store(g, Ordering::Release);
                gemv_packed_with(Kernel::Int8, format, top, cols, x, &mut y_top, false);
                while done.load(Ordering::Acquire) != g {
                    std::hint::spin_loop();
                }
                black_box(&y_top);
            });
            stop.store(true, Ordering::Relaxed);
            ns
        });
        stats("spin", weights, ns);
        let ns = time(&mut || {
            gemv_packed_with(Kernel::Int8, format, top, cols, &x, &mut y_top, false);
            gemv_packed_with(Kernel::Int8, format, bottom, cols, &x, &mut y_bottom, false);
            black_box(&y_top);
        });
        stats("halves", weights, ns);
    }
}
