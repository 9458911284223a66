//! Times Reader::decode_all alone on one thread (best of 5).
use sparsewire_pipeline::{compress, read_tensors, EncodeOptions, Reader};
fn main() {
    let path = std::env::args().nth(1).expect("file");
    let file = read_tensors(path.as_ref()).unwrap();
    let stream = compress(&file, &EncodeOptions::default()).unwrap();
    let reader = Reader::new(&stream[..]).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let f = pool.install(|| reader.decode_all().unwrap());
        best = best.min(t.elapsed().as_secs_f64());
        std::hint::black_box(f);
    }
    println!("decode {:.3} GB/s", file.byte_len() as f64 / best / 1e9);
}
