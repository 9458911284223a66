//! The matrix unit: one 170 x 384 bf16 tile times one vector (GEMV) and times 16 (GEMM),
//! from the stored dense and 50%-sparse forms and from a rebuilt f32 tile.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sparsewire_accel::mmu::{tile_mmo, TileShape, Weights};
use sparsewire_metadata::Dtype;
use sparsewire_sparse::{expand_f32, Mask, SparseTile, Values};

fn bench(c: &mut Criterion) {
    let (rows, cols) = (170, 384);
    let dense: Vec<u8> = (0..rows * cols)
        .flat_map(|i| half::bf16::from_f32(((i as f32) * 0.37).sin() * 0.1).to_le_bytes())
        .collect();
    let t = SparseTile::from_dense(
        rows,
        cols,
        Dtype::BF16,
        &dense,
        Mask::from_fn(rows * cols, |i| (i * 7919) % 2 == 0),
    )
    .unwrap();
    let mut rebuilt = vec![0f32; rows * cols];
    expand_f32(Values::Sparse(t.as_ref()), &mut rebuilt).unwrap();
    for batch in [1, 16] {
        let x: Vec<f32> = (0..batch * cols).map(|i| (i as f32 * 0.1).cos()).collect();
        let s = TileShape {
            rows,
            cols,
            col0: 0,
            n: cols,
            batch,
        };
        let mut g = c.benchmark_group(format!("mmu-170x384-bf16-batch{batch}"));
        g.throughput(Throughput::Elements((rows * cols * batch) as u64));
        let mut out = vec![0f32; rows * batch];
        let mut scratch = Vec::new();
        for (name, w) in [
            (
                "dense",
                Weights::Stored(Values::Dense {
                    dtype: Dtype::BF16,
                    bytes: &dense,
                }),
            ),
            ("sparse-50pct", Weights::Stored(Values::Sparse(t.as_ref()))),
            ("rebuilt-f32", Weights::Rebuilt(&rebuilt)),
        ] {
            g.bench_function(name, |b| {
                b.iter(|| tile_mmo(w, s, &x, &mut out, &mut scratch).unwrap())
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
