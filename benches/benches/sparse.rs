//! Sparse formats: mask codes (to symbols and back), CSR export, and expanding a stored
//! tile to f32 (the AVX-512 kernel against the scalar reference), on a 64 Ki-element
//! tile at 50% density.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sparsewire_metadata::Dtype;
use sparsewire_sparse::{
    codes, expand_f32, expand_f32_ref, Mask, MaskEncoding, SparseTile, Values,
};

fn tile() -> SparseTile {
    let (rows, cols) = (170, 384);
    let mut s = 7u64;
    let dense: Vec<u8> = (0..rows * cols)
        .flat_map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            half::bf16::from_f32(((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1).to_le_bytes()
        })
        .collect();
    let mask = Mask::from_fn(rows * cols, |i| (i.wrapping_mul(2654435761) >> 7) % 2 == 0);
    SparseTile::from_dense(rows, cols, Dtype::BF16, &dense, mask).unwrap()
}

fn bench(c: &mut Criterion) {
    let t = tile();
    let n = t.rows() * t.cols();
    let mut g = c.benchmark_group("sparse-170x384-bf16-50pct");
    g.throughput(Throughput::Elements(n as u64));
    for enc in [
        MaskEncoding::Bitmask,
        MaskEncoding::RunLength,
        MaskEncoding::DeltaIndices,
    ] {
        let m = t.mask().as_ref();
        g.bench_function(format!("{enc}-encode"), |b| {
            b.iter(|| codes::to_symbols(m, enc, t.cols(), None).unwrap())
        });
        let s = codes::to_symbols(m, enc, t.cols(), None).unwrap();
        g.bench_function(format!("{enc}-decode"), |b| {
            b.iter(|| codes::decode(enc, &s.symbols, n, t.cols(), None).unwrap())
        });
    }
    g.bench_function("to-csr-i64", |b| {
        b.iter(|| t.as_ref().to_csr::<i64>().unwrap())
    });
    let mut out = vec![0f32; n];
    g.bench_function("expand-f32", |b| {
        b.iter(|| expand_f32(Values::Sparse(t.as_ref()), &mut out).unwrap())
    });
    g.bench_function("expand-f32-scalar", |b| {
        b.iter(|| expand_f32_ref(Values::Sparse(t.as_ref()), &mut out).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
