//! moesim's criterion benchmarks, one group per file in `benches/benchmarks/`.
//! Run with `cargo bench`; figures and their commands are recorded in BENCHMARKS.md.

use criterion::criterion_main;

mod benchmarks;

criterion_main! {
    benchmarks::trace_io::benches,
    benchmarks::cache_replay::benches,
}
