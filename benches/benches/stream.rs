//! Whole stream: encode and decode the built-in tensor file (2.9 MB), lossless and with
//! half of every weight matrix dropped.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sparsewire_formats::builtin;
use sparsewire_stream::{encode, EncodeOptions, Reader};

fn bench_stream(c: &mut Criterion) {
    let file = builtin::tensors();
    let mut g = c.benchmark_group("builtin-file");
    g.throughput(Throughput::Bytes(file.byte_len()));
    g.sample_size(20);
    let opts = EncodeOptions::default();
    g.bench_function("encode", |b| b.iter(|| encode(&file, &opts).unwrap()));
    let stream = encode(&file, &opts).unwrap();
    let r = Reader::new(&stream[..]).unwrap();
    g.bench_function("decode", |b| b.iter(|| r.decode_all().unwrap()));
    g.finish();
}

criterion_group!(benches, bench_stream);
criterion_main!(benches);
