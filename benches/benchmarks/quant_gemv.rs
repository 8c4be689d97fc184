//! Fused dequantize-dot GEMV throughput per format on one core, on an expert-sized matrix
//! (1024 × 2816, Gaussian weights, f32 activations), and the fast Walsh–Hadamard transform
//! of 4096 floats. Kernels run at the SIMD level `moesim::quant::gemv::simd_level()` picks
//! (set `MOESIM_SIMD=baseline` to measure the portable SSE2 path).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use moesim::quant::eval::{WeightDistribution, sample};
use moesim::quant::hadamard::fwht;
use moesim::quant::{QuantizedMatrix, WeightFormat};

fn quant_gemv(c: &mut Criterion) {
    let (rows, cols) = (1024usize, 2816usize);
    let w = sample(WeightDistribution::Gaussian, rows * cols, 1);
    let x = sample(WeightDistribution::Gaussian, cols, 2);
    let mut g = c.benchmark_group(format!(
        "quant_gemv_{}",
        moesim::quant::gemv::simd_level().name()
    ));
    g.sample_size(30);
    g.throughput(Throughput::Elements((rows * cols) as u64));
    for format in WeightFormat::ALL {
        let q = QuantizedMatrix::quantize(format, rows, cols, &w, None).unwrap();
        let mut y = vec![0.0f32; rows];
        g.bench_function(BenchmarkId::new("1024x2816", format.name()), |b| {
            b.iter(|| q.gemv_serial(&x, &mut y))
        });
    }
    g.finish();
    let mut v = sample(WeightDistribution::Gaussian, 4096, 3);
    let mut g = c.benchmark_group("fwht");
    g.throughput(Throughput::Elements(4096));
    g.bench_function("4096", |b| b.iter(|| fwht(std::hint::black_box(&mut v))));
    g.finish();
}

criterion_group!(benches, quant_gemv);
