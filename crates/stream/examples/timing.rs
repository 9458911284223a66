//! Times `encode` or `Reader::decode_all` alone on one thread, best of 5 (for profiling):
//! `cargo run --release -p sparsewire-stream --example timing -- encode|decode FILE`.
use sparsewire_formats::input::InputFile;
use sparsewire_stream::{encode, EncodeOptions, Reader};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mode, path) = match (args.next(), args.next()) {
        (Some(m), Some(p)) if m == "encode" || m == "decode" => (m, p),
        _ => panic!("usage: timing encode|decode FILE"),
    };
    let file = InputFile::open(path.as_ref()).unwrap().read_all().unwrap();
    let stream = encode(&file, &EncodeOptions::default()).unwrap();
    let reader = Reader::new(&stream[..]).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        pool.install(|| {
            if mode == "encode" {
                std::hint::black_box(encode(&file, &EncodeOptions::default()).unwrap());
            } else {
                std::hint::black_box(reader.decode_all().unwrap());
            }
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("{mode} {:.3} GB/s", file.byte_len() as f64 / best / 1e9);
}
