//! Value codec, one tile: encode and decode speed (bytes of original data per second).
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sparsewire_codec::{
    decode_planes, encode_planes, EncodedStream, PlaneHistograms, PlaneLayout, TensorModels,
};
use sparsewire_formats::{builtin, Dtype};

fn bench_tiles(c: &mut Criterion) {
    let file = builtin::tensors();
    for (name, dtype) in [
        ("encoder.attn.weight", Dtype::BF16),
        ("encoder.ffn.weight", Dtype::F32),
    ] {
        let t = file.tensors.iter().find(|t| t.name == name).unwrap();
        let layout = PlaneLayout::for_dtype(dtype).unwrap();
        let tile = &t.data[..(1 << 16) * layout.value_bytes.min(t.data.len() >> 16)];
        let mut h = PlaneHistograms::new(layout);
        h.add(tile);
        let models = TensorModels::fit(&h);
        let mut g = c.benchmark_group(format!("tile-64Ki-{dtype}"));
        g.throughput(Throughput::Bytes(tile.len() as u64));
        g.bench_function("encode", |b| {
            b.iter(|| encode_planes(layout, tile, &models).unwrap())
        });
        let streams = encode_planes(layout, tile, &models).unwrap();
        let entries: Vec<_> = streams.iter().map(EncodedStream::entry).collect();
        let data: Vec<u8> = streams
            .iter()
            .map(|s| &s.bytes[..])
            .collect::<Vec<_>>()
            .concat();
        let dec = models.decoder();
        let mut out = vec![0u8; tile.len()];
        g.bench_function("decode", |b| {
            b.iter(|| decode_planes(layout, &entries, &data, &dec, &mut out).unwrap())
        });
        g.finish();
    }
}

criterion_group!(benches, bench_tiles);
criterion_main!(benches);
