//! Sparse-encode loop for profiling and A/B runs of the sparsifying compressor:
//! `RAYON_NUM_THREADS=1 cargo run --release -p sparsewire-pipeline --example sparse_loop --
//! FILE [RUNS] [SPARSITY] [--fast]`.
//!
//! Compresses FILE in memory RUNS times (default 7) with magnitude sparsification at
//! SPARSITY (default 0.5; the small profile, or the fast one with `--fast`; zero-fill) and
//! prints the median and minimum
//! time with the GB/s of the file's bytes: what `cargo xtask sparsity` times, without the
//! other settings around it. On a shared host the minimum is the steadier figure for
//! comparing two builds; alternate them.

use sparsewire_formats::input::InputFile;
use sparsewire_pipeline::{compress_into, CompressOptions};
use sparsewire_se::{Budget, SparsifyOptions};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let fast = all.iter().any(|a| a == "--fast");
    let mut args = all.into_iter().filter(|a| a != "--fast");
    let path = args
        .next()
        .ok_or("usage: sparse_loop FILE [RUNS] [SPARSITY] [--fast]")?;
    let runs: usize = args.next().map_or(Ok(7), |r| r.parse())?;
    let sparsity: f32 = args.next().map_or(Ok(0.5), |s| s.parse())?;
    if runs == 0 || !(0.0..1.0).contains(&sparsity) {
        return Err("RUNS must be at least 1 and SPARSITY in [0, 1)".into());
    }
    let file = InputFile::open(std::path::Path::new(&path))?.read_all()?;
    let mut opts = CompressOptions {
        sparsify: Some(SparsifyOptions::new(Budget::Sparsity(sparsity))),
        ..CompressOptions::default()
    };
    if fast {
        opts.encode.profile = sparsewire_stream::Profile::Fast;
    }
    let mut times = Vec::with_capacity(runs);
    let mut stream = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        compress_into(&file, &opts, &mut stream)?;
        std::hint::black_box(&stream);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let bytes = std::fs::metadata(&path)?.len() as f64;
    let (med, min) = (times[runs / 2], times[0]);
    println!(
        "{path} at {sparsity}: median {:.1} ms ({:.3} GB/s), min {:.1} ms ({:.3} GB/s), {runs} runs",
        med * 1e3,
        bytes / med / 1e9,
        min * 1e3,
        bytes / min / 1e9
    );
    Ok(())
}
