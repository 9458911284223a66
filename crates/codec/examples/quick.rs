//! Quick ratio/speed probe of the plane codec on a safetensors file (64K-element chunks).
use sparsewire_codec::*;
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("file");
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (mut inb, mut outb) = (0usize, 0usize);
    let (mut enc, mut dec) = (0f64, 0f64);
    for (_name, view) in st.tensors() {
        let dtype = match view.dtype() {
            safetensors::Dtype::F32 => Dtype::F32,
            safetensors::Dtype::BF16 => Dtype::BF16,
            safetensors::Dtype::F16 => Dtype::F16,
            _ => continue,
        };
        let layout = PlaneLayout::for_dtype(dtype).unwrap();
        let data = view.data();
        let chunk = 65536 * layout.value_bytes;
        let t0 = Instant::now();
        let mut h = PlaneHistograms::new(layout);
        h.add(data);
        let models = TensorModels::fit(&h);
        let tiles: Vec<_> = data
            .chunks(chunk)
            .map(|c| encode_planes(layout, c, &models).unwrap())
            .collect();
        enc += t0.elapsed().as_secs_f64();
        let dm = models.decoder();
        let prepared: Vec<(Vec<StreamEntry>, Vec<u8>)> = tiles
            .iter()
            .map(|t| {
                (
                    t.iter().map(EncodedStream::entry).collect(),
                    t.iter().flat_map(|s| s.bytes.iter().copied()).collect(),
                )
            })
            .collect();
        let mut out = vec![0u8; data.len()];
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t1 = Instant::now();
            for ((e, d), o) in prepared.iter().zip(out.chunks_mut(chunk)) {
                decode_planes(layout, e, d, &dm, o).unwrap();
            }
            best = best.min(t1.elapsed().as_secs_f64());
        }
        assert_eq!(&out, data);
        dec += best;
        inb += data.len();
        outb += tiles.iter().flatten().map(|s| s.bytes.len()).sum::<usize>()
            + models.to_bytes().iter().map(Vec::len).sum::<usize>();
    }
    println!(
        "ratio {:.2}%  encode {:.2} GB/s  decode {:.2} GB/s",
        outb as f64 / inb as f64 * 100.0,
        inb as f64 / enc / 1e9,
        inb as f64 / dec / 1e9
    );
}
