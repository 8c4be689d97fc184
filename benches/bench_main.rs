//! moesim's criterion benchmarks, one group per file in `benches/benchmarks/`.
//! Run with `cargo bench`; figures and their commands are recorded in BENCHMARKS.md.

mod benchmarks;

fn main() {
    // Criterion draws its report plots with plotters, which has no system font here: give it
    // moesim's embedded one under the family name it asks for.
    moesim::report::font::register();
    benchmarks::trace_io::benches();
    benchmarks::cache_replay::benches();
    benchmarks::route_replay::benches();
    benchmarks::sim_decode::benches();
    benchmarks::quant_gemv::benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
