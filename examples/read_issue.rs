//! Probe: how long handing a direct read to an idle I/O thread holds the requesting thread, by
//! the read's size (issue 23, BENCHMARKS.md "Handing a read to the I/O thread"). The requesting
//! thread sends a read of LEN bytes at a random aligned place of STORE to an I/O thread parked
//! on a channel, times the send, waits for the read's end, then sleeps SLEEP_MS (default 1; with
//! 0 it sends the next read at once), or, with `spin` after it, keeps busy for SLEEP_MS tenths of a
//! millisecond instead (as a decode computing a kernel between reads does); the sizes alternate
//! read by read. Prints per size the median and mean send
//! time and the median read time (from the request to the I/O thread's finish).
//!
//! With `calibration` after STORE: the calibration's own reads in the decode regime
//! (`measure_reads_in_decode_regime`, 200 expert reads), their send times split by what the
//! requesting thread did next (a kernel while the read was in flight, or blocking for it).
//!
//! `cargo run --release --example read_issue -- STORE [READS_PER_SIZE [SLEEP_MS [spin]] | calibration]`

use moesim::host::store::{ALIGN, AlignedBuf, ExpertStore};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: read_issue STORE [READS_PER_SIZE]");
        std::process::exit(2);
    };
    let second = args.next();
    let store = ExpertStore::open(std::path::Path::new(&path), true).expect("a store");
    if second.as_deref() == Some("calibration") {
        let mut bench =
            moesim::host::calibrate::KernelBench::new(&store, 1, moesim::quant::Kernel::Int8)
                .expect("a bench");
        let r = moesim::host::calibrate::measure_reads_in_decode_regime(&store, &mut bench, 200, 7)
            .expect("reads");
        for (name, parity) in [("blocking", 0), ("kernel in flight", 1)] {
            let v: Vec<f64> = r
                .issue_ns
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == parity)
                .map(|(_, &x)| x / 1e3)
                .collect();
            let cheap = v.iter().filter(|&&x| x < 20.0).count();
            println!(
                "{name}: {} sends, median {:.1} µs, mean {:.1} µs, {cheap} under 20 µs",
                v.len(),
                moesim::stats::median(&v),
                v.iter().sum::<f64>() / v.len() as f64
            );
        }
        return;
    }
    let n: usize = second.map_or(100, |a| a.parse().expect("a count"));
    let sleep_ms: u64 = args.next().map_or(1, |a| a.parse().expect("milliseconds"));
    let spin = args.next().is_some_and(|a| a == "spin");
    let stride = store.shape.stride() as usize;
    let sizes: Vec<usize> = [ALIGN, 16 * ALIGN, 64 * ALIGN, stride / 2, stride]
        .into_iter()
        .map(|s| s.div_ceil(ALIGN) * ALIGN)
        .collect();
    let pages = store.len_bytes() / ALIGN as u64;
    let (req_tx, req_rx) = mpsc::channel::<(u64, AlignedBuf)>();
    let (done_tx, done_rx) = mpsc::channel::<(AlignedBuf, Instant)>();
    let mut sends = vec![Vec::new(); sizes.len()];
    let mut reads = vec![Vec::new(); sizes.len()];
    std::thread::scope(|scope| {
        let store = &store;
        scope.spawn(move || {
            for (offset, mut buf) in req_rx {
                store.read_raw(offset, &mut buf).expect("a read");
                if done_tx.send((buf, Instant::now())).is_err() {
                    break;
                }
            }
        });
        let mut bufs: Vec<Option<AlignedBuf>> =
            sizes.iter().map(|&s| Some(AlignedBuf::new(s))).collect();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for k in 0..n * sizes.len() {
            let i = k % sizes.len();
            x = moesim::seed::derive_seed(x, k as u64);
            let len_pages = (sizes[i] / ALIGN) as u64;
            let offset = (x % (pages - len_pages)) * ALIGN as u64;
            let buf = bufs[i].take().expect("returned");
            let t = Instant::now();
            req_tx.send((offset, buf)).expect("the I/O thread");
            let sent = t.elapsed();
            let (buf, finished) = done_rx.recv().expect("the I/O thread");
            bufs[i] = Some(buf);
            if k >= sizes.len() {
                sends[i].push(sent.as_nanos() as f64 / 1e3);
                reads[i].push((finished - t).as_nanos() as f64 / 1e3);
            }
            if spin {
                let until = Instant::now() + Duration::from_micros(100 * sleep_ms);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            } else if sleep_ms > 0 {
                std::thread::sleep(Duration::from_millis(sleep_ms));
            }
        }
        drop(req_tx);
    });
    println!("bytes,send_median_us,send_mean_us,read_median_us,reads");
    for (i, &s) in sizes.iter().enumerate() {
        let mean = sends[i].iter().sum::<f64>() / sends[i].len() as f64;
        println!(
            "{s},{:.1},{:.1},{:.0},{}",
            moesim::stats::median(&sends[i]),
            mean,
            moesim::stats::median(&reads[i]),
            sends[i].len()
        );
    }
}
