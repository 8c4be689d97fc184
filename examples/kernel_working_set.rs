//! How fast an expert's SwiGLU runs depending on how many experts' weights it cycles through:
//! a probe of the last-level cache, on which the host calibration and the real decode disagree
//! (BENCHMARKS.md, "the int8 calibration gap"). Each working set holds copies of one 1024 x 1024
//! Q4_K expert (1.77 MB), visited in a scattered order on one thread, f32 and int8 kernels.
//!
//!     cargo run --release --example kernel_working_set
use moesim::quality::proxy::swiglu_packed;
use moesim::quant::eval::{WeightDistribution, sample};
use moesim::quant::{Kernel, QuantizedMatrix, WeightFormat};
use std::time::Instant;
fn main() {
    let (h, f) = (1024usize, 1024usize);
    let fmt: WeightFormat = "q4_k".parse().unwrap();
    let mut one = Vec::new();
    for (i, (r, c)) in [(f, h), (f, h), (h, f)].into_iter().enumerate() {
        let w = sample(WeightDistribution::Gaussian, r * c, i as u64);
        one.extend(QuantizedMatrix::quantize(fmt, r, c, &w, None).unwrap().data);
    }
    let x = sample(WeightDistribution::Gaussian, h, 9);
    let mut y = vec![0f32; h];
    for kernel in [Kernel::F32, Kernel::Int8] {
        for n in [1usize, 4, 16, 64, 128, 256] {
            let bufs: Vec<Vec<u8>> = (0..n).map(|_| one.clone()).collect();
            let step = if n > 2 { n / 2 + 1 } else { 1 };
            let mut i = 0;
            let reps = 2000;
            for _ in 0..n.max(50) {
                swiglu_packed(fmt, h, f, &bufs[i], &x, &mut y, false, kernel);
                i = (i + step) % n;
            }
            let t = Instant::now();
            for _ in 0..reps {
                swiglu_packed(fmt, h, f, &bufs[i], &x, &mut y, false, kernel);
                i = (i + step) % n;
            }
            let us = t.elapsed().as_secs_f64() / reps as f64 * 1e6;
            println!(
                "{:?} working set {:4} experts ({:5.0} MB): {:6.1} us/expert, {:5.2} G w/s",
                kernel,
                n,
                n as f64 * one.len() as f64 / 1e6,
                us,
                3.0 * (h * f) as f64 / us / 1e3
            );
        }
    }
}
