//! The reconstruction engine: one stored 64 Ki-element tile at 50% density expanded and
//! rebuilt by each method (elements out per second).
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sparsewire_metadata::{Dtype, Reconstruction};
use sparsewire_re::{fit_dictionary, fit_learned, rebuild_tile, TilePlace};
use sparsewire_sparse::{Mask, SparseTile, Values};

fn bench(c: &mut Criterion) {
    let (rows, cols) = (170, 384);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i as f32) * 0.37).sin() * 0.1)
        .collect();
    let mask = Mask::from_fn(rows * cols, |i| w[i].abs() > 0.07);
    let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    let t = SparseTile::from_dense(rows, cols, Dtype::F32, &bytes, mask.clone()).unwrap();
    let place = TilePlace {
        col0: 0,
        full_cols: cols,
    };
    let mut g = c.benchmark_group("re-170x384-f32");
    g.throughput(Throughput::Elements((rows * cols) as u64));
    let mut out = Vec::new();
    for method in [
        Reconstruction::Zero,
        Reconstruction::Linear,
        fit_learned(&w, mask.as_ref(), cols),
        fit_dictionary(&w, mask.as_ref(), cols),
    ] {
        g.bench_function(method.method().name(), |b| {
            b.iter(|| rebuild_tile(Values::Sparse(t.as_ref()), &method, place, &mut out).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
