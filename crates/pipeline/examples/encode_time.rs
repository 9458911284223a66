//! Times compress alone on one thread (best of 3): where encode time goes.
use sparsewire_pipeline::{compress, read_tensors, EncodeOptions};
fn main() {
    let path = std::env::args().nth(1).expect("file");
    let file = read_tensors(path.as_ref()).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let s = pool.install(|| compress(&file, &EncodeOptions::default()).unwrap());
        best = best.min(t.elapsed().as_secs_f64());
        std::hint::black_box(s);
    }
    println!("encode {:.3} GB/s", file.byte_len() as f64 / best / 1e9);
}
