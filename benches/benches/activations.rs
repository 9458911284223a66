//! Runtime activation sparsification (threshold / top-k + bitmask + value packing), per
//! core, on post-GELU-like activations: GB of f32 input per second.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sparsewire_pipeline::se::activations::{
    sparsify_activations, ActivationPolicy, SparseActivations,
};

fn gelu_like(n: usize) -> Vec<f32> {
    let mut s = 0x1234_5678u64;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let x = ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 6.0;
            0.5 * x * (1.0 + (0.7978846 * (x + 0.044715 * x * x * x)).tanh())
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let (rows, cols) = (713, 1536); // one MiniLM FFN activation block
    let a = gelu_like(rows * cols);
    let mut g = c.benchmark_group("activations-713x1536");
    g.throughput(Throughput::Bytes((a.len() * 4) as u64));
    for (name, p) in [
        ("threshold-0.1", ActivationPolicy::Threshold(0.1)),
        ("keep-50pct", ActivationPolicy::KeepFraction(0.5)),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| sparsify_activations(&a, rows, cols, p).to_bytes())
        });
    }
    let packed = sparsify_activations(&a, rows, cols, ActivationPolicy::Threshold(0.1)).to_bytes();
    g.bench_function("densify", |b| {
        b.iter(|| SparseActivations::from_bytes(&packed).unwrap().densify())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
