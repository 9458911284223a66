//! `sparsewire matmul`.

use crate::args::{self, Result};
use crate::output::print_json;
use sparsewire_accel::buffer::Policy;
use sparsewire_accel::exec::{self, Options, Path as ExecPath};
use sparsewire_benches::bench_matmul;
use sparsewire_formats::input::InputFile;
use sparsewire_stream::Reader;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A .swire stream.
    file: PathBuf,
    /// The weight tensor W (its 2-D view, rows x cols): computes y = W x.
    #[arg(long)]
    tensor: String,
    /// Input vectors per multiply (1: GEMV).
    #[arg(long, default_value_t = 1, value_parser = args::count)]
    batch: usize,
    /// Reconstruction buffer capacity in bytes of rebuilt f32 tiles (default: the tensor).
    #[arg(long, value_parser = args::at_least_one)]
    buffer_bytes: Option<u64>,
    /// How many tiles decoding may run ahead of the multiply.
    #[arg(long, default_value_t = 4)]
    lookahead: usize,
    /// Input x: .npy or .safetensors holding batch x cols float values (default: a fixed
    /// deterministic input).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Also run dense baselines on the uncompressed weights in this .safetensors file
    /// (same tensor name) and print the speedup.
    #[arg(long)]
    compare_dense: Option<PathBuf>,
    /// Threads (default: all cores).
    #[arg(long, value_parser = args::count)]
    threads: Option<usize>,
    /// Multiplies of the same weight per run (micro-batches): later passes hit the buffer.
    #[arg(long, default_value_t = 1, value_parser = args::count)]
    passes: usize,
    /// auto (fused when the tensor allows it), fused or pipelined.
    #[arg(long, default_value = "auto")]
    path: ExecPath,
    /// Buffer eviction: belady (uses the known schedule) or lru.
    #[arg(long, default_value = "belady")]
    policy: Policy,
    /// Timed runs; medians are reported.
    #[arg(long, default_value_t = 5, value_parser = args::count)]
    runs: usize,
    /// Evict the weights from every cache level (x86-64 clflush; elsewhere, write 64 MiB)
    /// before every timed run, compressed and dense alike: weights then stream from
    /// memory, as for a model larger than the cache.
    #[arg(long)]
    cold: bool,
    /// Print a JSON report on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let map = sparsewire_formats::mmap::map_file(&a.file)
        .map_err(|e| format!("{}: {e}", a.file.display()))?;
    let reader = Reader::new(map).map_err(|e| format!("{}: {e}", a.file.display()))?;
    let t = reader.tensor_index(&a.tensor)?;
    let meta = reader.meta(t)?;
    if !meta.dtype.is_compressible_float() {
        return Err(format!(
            "tensor {:?} is {}, not a float tensor (F32, F16, BF16): there is nothing to multiply",
            a.tensor, meta.dtype
        )
        .into());
    }
    let cols = sparsewire_metadata::view_2d(&meta.shape, meta.numel()?).1 as usize;
    let x = match &a.input {
        Some(p) => {
            let f = InputFile::open(p)
                .and_then(|f| f.read_all())
                .map_err(|e| format!("{}: {e}", p.display()))?;
            let [x] = &f.tensors[..] else {
                return Err(format!(
                    "{}: expected one tensor, found {}",
                    p.display(),
                    f.tensors.len()
                )
                .into());
            };
            let v = x
                .to_f32_vec()
                .ok_or_else(|| format!("{}: {} is not a float tensor", p.display(), x.dtype))?;
            if v.len() != a.batch * cols {
                return Err(format!(
                    "{}: holds {} values; --batch {} x {} columns of {} needs {}",
                    p.display(),
                    v.len(),
                    a.batch,
                    cols,
                    a.tensor,
                    a.batch * cols
                )
                .into());
            }
            v
        }
        None => exec::default_input(a.batch, cols),
    };
    let dense = match &a.compare_dense {
        Some(p) => {
            let f = InputFile::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let i = f
                .entries()
                .iter()
                .position(|d| d.name == a.tensor)
                .ok_or_else(|| format!("{}: no tensor named {:?}", p.display(), a.tensor))?;
            Some(
                f.read_tensor(i)
                    .map_err(|e| format!("{}: {e}", p.display()))?,
            )
        }
        None => None,
    };
    let opts = Options {
        batch: a.batch,
        threads: a.threads.unwrap_or(Options::default().threads),
        buffer_bytes: a.buffer_bytes,
        lookahead: a.lookahead,
        policy: a.policy,
        passes: a.passes,
        path: a.path,
    };
    let r = bench_matmul(&reader, t, &x, &opts, dense.as_ref(), a.runs, a.cold)?;
    if a.json {
        return print_json(&r);
    }
    let rep = &r.report;
    println!(
        "{} [{} x {}] x batch {} ({} passes): {} path, {} tiles, {} threads",
        rep.tensor, rep.rows, rep.cols, rep.batch, rep.passes, rep.path, rep.tiles, rep.threads
    );
    println!(
        "time {:.3} ms (median of {}{}), weights consumed at {:.2} GB/s (dense bytes), {} bytes stored",
        r.seconds * 1e3,
        r.runs,
        if r.cold { ", cache flushed before each" } else { "" },
        rep.weight_gbps,
        rep.stored_bytes
    );
    if let Some(o) = r.overlap_efficiency {
        println!(
            "decode {:.3} ms ({} of {} rebuilds by the multiply instead of waiting), multiply {:.3} ms, stalled {:.3} ms: overlap efficiency {:.0}%",
            rep.decode_seconds * 1e3,
            rep.multiply_rebuilds,
            rep.buffer.misses,
            rep.compute_seconds * 1e3,
            rep.stall_seconds * 1e3,
            o * 100.0
        );
        println!(
            "buffer: {} of {} bytes at peak, {} hits, {} misses, lookahead {}",
            r.buffer.peak_bytes,
            r.buffer.capacity_bytes,
            r.buffer.hits,
            r.buffer.misses,
            rep.lookahead
        );
    }
    if let (Some(d), Some(s)) = (&r.dense, r.speedup) {
        if let Some(n) = d.native_seconds {
            println!("dense {} kernel: {:.3} ms", d.dtype, n * 1e3);
        }
        println!("dense faer f32: {:.3} ms", d.faer_f32_seconds * 1e3);
        println!(
            "speedup over the faster dense baseline: {s:.2}x; max |y - y_dense| = {:.3e}",
            r.max_abs_error.unwrap_or(0.0)
        );
    }
    println!(
        "max |y - y_reference| = {:.3e} (scalar reference on the rebuilt weights); {}",
        r.max_abs_error_vs_reference, r.cpu
    );
    Ok(())
}
