//! Lossless encode loop for profiling and A/B runs of the encoder:
//! `cargo run --release -p sparsewire-benches --example encode_loop -- FILE [RUNS] [--no-lz]`.
//!
//! Encodes FILE (.safetensors or .npy) RUNS times (default 20) on one thread into an output
//! buffer reused across runs, as `sparsewire bench` times it, and prints the median and
//! minimum time with the GB/s of the file's bytes. `--no-lz` skips the zstd trial.

use sparsewire_formats::input::InputFile;
use sparsewire_stream::{encode_into, EncodeOptions};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let no_lz = args.iter().any(|a| a == "--no-lz");
    let mut pos = args.iter().filter(|a| !a.starts_with("--"));
    let path = pos
        .next()
        .ok_or("usage: encode_loop FILE [RUNS] [--no-lz]")?
        .clone();
    let runs: usize = pos.next().map_or(Ok(20), |r| r.parse())?;
    if runs == 0 {
        return Err("RUNS must be at least 1".into());
    }
    let file = InputFile::open(std::path::Path::new(&path))?.read_all()?;
    let opts = EncodeOptions {
        try_lz: !no_lz,
        ..EncodeOptions::default()
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let mut out = Vec::new();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        pool.install(|| encode_into(&file, &opts, &mut out))?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let bytes = std::fs::metadata(&path)?.len() as f64;
    let (med, min) = (times[runs / 2], times[0]);
    println!(
        "{path}: {} bytes, median {:.3} ms ({:.3} GB/s), min {:.3} ms ({:.3} GB/s), {runs} runs, one thread",
        out.len(),
        med * 1e3,
        bytes / med / 1e9,
        min * 1e3,
        bytes / min / 1e9
    );
    Ok(())
}
