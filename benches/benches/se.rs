//! The sparsification engine: scoring and selecting one FFN-sized matrix (1536 x 384) by
//! magnitude and by Wanda, and runtime activation sparsification (threshold / top-k,
//! bitmask and value packing) on post-GELU-like activations, per core.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sparsewire_se::activations::{
    densify, from_bytes, sparsify_activations, to_bytes, ActivationPolicy,
};
use sparsewire_se::{sparsify, Criterion as Score, LayerInputs, Pattern, SparsifyConfig};

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 6.0
        })
        .collect()
}

fn gelu_like(n: usize) -> Vec<f32> {
    values(n, 0x1234_5678)
        .into_iter()
        .map(|x| 0.5 * x * (1.0 + (0.7978846 * (x + 0.044715 * x * x * x)).tanh()))
        .collect()
}

fn bench(c: &mut Criterion) {
    let (rows, cols) = (1536, 384);
    let w = values(rows * cols, 1);
    let x = values(64 * cols, 2);
    let mut g = c.benchmark_group("se-1536x384");
    g.throughput(Throughput::Elements((rows * cols) as u64));
    g.sample_size(20);
    for (name, criterion, pattern) in [
        ("magnitude-50pct", Score::Magnitude, Pattern::Unstructured),
        (
            "magnitude-2:4",
            Score::Magnitude,
            Pattern::NM { n: 2, m: 4 },
        ),
        ("wanda-50pct", Score::Wanda, Pattern::Unstructured),
    ] {
        let cfg = SparsifyConfig {
            criterion,
            pattern,
            sparsity: 0.5,
        };
        let inputs = Some(LayerInputs { x: &x, tokens: 64 });
        g.bench_function(name, |b| {
            b.iter(|| sparsify(&w, rows, cols, &cfg, inputs, None).unwrap())
        });
    }
    g.finish();

    let (rows, cols) = (713, 1536); // one MiniLM FFN activation block
    let a = gelu_like(rows * cols);
    let mut g = c.benchmark_group("activations-713x1536");
    g.throughput(Throughput::Bytes((a.len() * 4) as u64));
    for (name, p) in [
        ("threshold-0.1", ActivationPolicy::Threshold(0.1)),
        ("keep-50pct", ActivationPolicy::KeepFraction(0.5)),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| to_bytes(&sparsify_activations(&a, rows, cols, p).unwrap()))
        });
    }
    let packed =
        to_bytes(&sparsify_activations(&a, rows, cols, ActivationPolicy::Threshold(0.1)).unwrap());
    g.bench_function("densify", |b| {
        b.iter(|| densify(&from_bytes(&packed).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
