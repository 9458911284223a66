//! Decode-only loop for profiling and A/B runs of the decoder:
//! `cargo run --release -p sparsewire-benches --example decode_loop -- FILE [RUNS] [THREADS]`.
//!
//! Encodes FILE (.safetensors or .npy) losslessly with the default options once, then
//! decodes it RUNS times (default 300) on THREADS threads (default 1) into a buffer reused
//! across runs, and
//! prints the median and the minimum time with the GB/s of the file's bytes. `perf record`
//! on it sees the decoder alone (`sparsewire bench` encodes as often as it decodes). On a
//! shared host the minimum is the steadier figure for comparing two builds; alternate them.

use sparsewire_formats::input::InputFile;
use sparsewire_stream::{encode, EncodeOptions, Reader};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: decode_loop FILE [RUNS] [THREADS] (FILE: .safetensors or .npy)")?;
    let runs: usize = match args.next() {
        Some(r) => r.parse().map_err(|e| format!("RUNS {r:?}: {e}"))?,
        None => 300,
    };
    let threads: usize = match args.next() {
        Some(t) => t.parse().map_err(|e| format!("THREADS {t:?}: {e}"))?,
        None => 1,
    };
    if runs == 0 || threads == 0 {
        return Err("RUNS and THREADS must be at least 1".into());
    }
    let file = InputFile::open(std::path::Path::new(&path))?.read_all()?;
    let stream = encode(&file, &EncodeOptions::default())?;
    let reader = Reader::new(&stream[..])?;
    let mut out = reader.decode_all()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        pool.install(|| reader.decode_all_into(&mut out))?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let bytes = std::fs::metadata(&path)?.len() as f64;
    let (med, min) = (times[runs / 2], times[0]);
    println!(
        "{path}: median {:.3} ms ({:.3} GB/s), min {:.3} ms ({:.3} GB/s), {runs} runs, {threads} thread(s)",
        med * 1e3,
        bytes / med / 1e9,
        min * 1e3,
        bytes / min / 1e9
    );
    Ok(())
}
