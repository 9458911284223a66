//! Times `encode`, or the decode of every tensor into buffers reused across runs (as
//! `cargo xtask bench` does), alone on one thread, median of 9 (for profiling):
//! `cargo run --release -p sparsewire-stream --example timing -- encode|decode FILE...`.
use sparsewire_formats::input::InputFile;
use sparsewire_stream::{encode, EncodeOptions, Reader};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().filter(|m| m == "encode" || m == "decode");
    let (Some(mode), paths) = (mode, args.collect::<Vec<_>>()) else {
        panic!("usage: timing encode|decode FILE...")
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for path in paths {
        let file = InputFile::open(path.as_ref()).unwrap().read_all().unwrap();
        let stream = encode(&file, &EncodeOptions::default()).unwrap();
        let reader = Reader::new(&stream[..]).unwrap();
        let mut bufs: Vec<Vec<u8>> = reader
            .decode_all()
            .unwrap()
            .tensors
            .into_iter()
            .map(|t| t.data)
            .collect();
        let mut times = Vec::new();
        for _ in 0..9 {
            let t = std::time::Instant::now();
            pool.install(|| {
                if mode == "encode" {
                    std::hint::black_box(encode(&file, &EncodeOptions::default()).unwrap());
                } else {
                    for (t, b) in bufs.iter_mut().enumerate() {
                        reader.decode_tensor_into(t, b).unwrap();
                    }
                }
            });
            times.push(t.elapsed().as_secs_f64());
        }
        if std::env::var_os("TIMING_ALL").is_some() {
            let all: Vec<String> = times
                .iter()
                .map(|t| format!("{:.2}", file.byte_len() as f64 / t / 1e9))
                .collect();
            eprintln!("{}", all.join(" "));
        }
        times.sort_by(f64::total_cmp);
        let name = std::path::Path::new(&path)
            .file_name()
            .unwrap()
            .to_string_lossy();
        println!(
            "{mode} {name}: {:.3} GB/s",
            file.byte_len() as f64 / times[4] / 1e9
        );
    }
}
