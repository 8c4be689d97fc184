//! Probe: do expert kernels run slower when the compute thread pauses between them, as the
//! real decode's does while it waits for reads? Times the calibration's scattered (weights
//! from memory) and warm (cycling through a few experts, after an untimed cycle) kernels in
//! blocks of EVERY, back to back and with a pause of PAUSE_US before each block (the pause not
//! timed), and its random draws over half the store back to back and with the pause before
//! every draw; alternating over passes, prints each mode's medians per pass.
//!
//! On the development VM (Q4_K, int8): a 1.5 ms pause left the scattered and warm kernels as
//! they were but made the random draws as slow as the scattered visit (282-290 µs against
//! 194-225 back to back), spinning instead of sleeping nearly as much (253-273), a 200 µs sleep
//! between (213-226 against 184-211): cached weights leave with wall time, whatever this
//! thread does meanwhile (`compute.weights_cache.lifetime_ns`).
//!
//! `cargo run --release --example kernel_duty -- STORE [EVERY [PAUSE_US [sleep|spin]]]`

use moesim::host::calibrate::KernelBench;
use moesim::host::store::ExpertStore;
use std::time::{Duration, Instant};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = a.first() else {
        eprintln!("usage: kernel_duty STORE [EVERY [PAUSE_US [sleep|spin]]]");
        std::process::exit(2);
    };
    let every: usize = a.get(1).map_or(8, |s| s.parse().expect("a count"));
    let pause_us: u64 = a.get(2).map_or(1500, |s| s.parse().expect("microseconds"));
    let spin = a.get(3).is_some_and(|s| s == "spin");
    let store = ExpertStore::open(std::path::Path::new(path), true).expect("a store");
    let mut bench = KernelBench::new(&store, 1, moesim::quant::Kernel::Int8).expect("a bench");
    let mut pause = || {
        if spin {
            let t = Instant::now();
            while t.elapsed() < Duration::from_micros(pause_us) {
                std::hint::spin_loop();
            }
        } else {
            std::thread::sleep(Duration::from_micros(pause_us));
        }
    };
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] * 1e-3
    };
    println!(
        "{} kernels, a {} µs {} every {every}: medians in µs (scattered, warm, random draws over half the store)",
        store.shape.format,
        pause_us,
        if spin { "spin" } else { "sleep" }
    );
    for pass in 0..6 {
        let mut row = Vec::new();
        for paused in [false, true] {
            let (mut cold, mut warm) = (Vec::new(), Vec::new());
            for _ in 0..40 {
                if paused {
                    pause();
                }
                cold.extend(bench.time(every));
            }
            for _ in 0..40 {
                if paused {
                    pause();
                }
                warm.extend(bench.time_warm(every));
            }
            let mut rand = if paused {
                bench.time_random_paced(300, pass, &mut pause).0
            } else {
                bench.time_random(300, pass)
            };
            row.push(format!(
                "{}: {:.0}, {:.0}, random {:.0}",
                if paused { "paused" } else { "back to back" },
                median(&mut cold),
                median(&mut warm),
                median(&mut rand)
            ));
        }
        println!("pass {pass}: {}", row.join("; "));
    }
}
