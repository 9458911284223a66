//! Whole stream: compress and decompress the built-in demo file (2.9 MB).
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sparsewire_pipeline::{compress, decompress, demo, EncodeOptions};

fn bench_stream(c: &mut Criterion) {
    let file = demo::tensors();
    let mut g = c.benchmark_group("demo-file");
    g.throughput(Throughput::Bytes(file.byte_len()));
    g.sample_size(20);
    g.bench_function("compress", |b| {
        b.iter(|| compress(&file, &EncodeOptions::default()).unwrap())
    });
    let stream = compress(&file, &EncodeOptions::default()).unwrap();
    g.bench_function("decompress", |b| b.iter(|| decompress(&stream).unwrap()));
    g.finish();
}

criterion_group!(benches, bench_stream);
criterion_main!(benches);
