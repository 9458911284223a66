//! Benchmark harnesses: whole-pipeline figures as programs (`sparsewire bench`,
//! `sparsewire matmul --compare-dense`, `cargo xtask bench`), beside the criterion benches
//! of each stage in `benches/benches/` (codec, stream, sparse masks, se, re, mmu).
//!
//! Timings are medians of several runs; baselines run in the same process, interleaved
//! with what they are compared to. Nothing here is a test: correctness is asserted by the
//! crates' tests, these only measure.

use serde::Serialize;
use sparsewire_accel::buffer::BufferStats;
use sparsewire_accel::calibrate::median;
use sparsewire_accel::exec::{self, ExecError, Options, Report, Workspace};
use sparsewire_accel::mmu;
use sparsewire_formats::{Dtype, Tensor, TensorFile};
use sparsewire_metadata::view_2d;
use sparsewire_stream::report::{inspect, TensorReport};
use sparsewire_stream::{encode, encode_into, EncodeOptions, Reader, StreamError};
use std::collections::BTreeMap;
use std::time::Instant;

/// `sparsewire bench`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub ratio: f64,
    /// Threads used for the all-threads figures.
    pub threads: usize,
    /// GB (1e9 bytes) of original tensor bytes per second, one thread, median of at least
    /// `runs` runs (and at least [`MIN_TIMED_SECONDS`] of them).
    pub encode_gbps: f64,
    pub decode_gbps: f64,
    pub encode_gbps_all_threads: f64,
    pub decode_gbps_all_threads: f64,
    pub runs: usize,
    /// The CPU model, from /proc/cpuinfo.
    pub cpu: String,
    /// The decode kernel (`scalar`, `avx2`, `avx512`: `Kernel::chosen`, timed once per
    /// process) and the encoder's (`Kernel::for_encode`).
    pub kernel: String,
    pub encode_kernel: String,
    /// Per plane kind over all tensors: stored bytes against the order-0 entropy bound.
    pub planes: Vec<PlaneTotal>,
    pub tensors: Vec<TensorReport>,
    /// Delivery over a link of the given speed (`bench --link-gbps`).
    pub link: Option<LinkReport>,
}

/// One plane kind summed over a file.
#[derive(Debug, Clone, Serialize)]
pub struct PlaneTotal {
    pub plane: String,
    pub bytes: u64,
    pub entropy_bound_bytes: f64,
    /// `bytes / entropy_bound_bytes - 1`, in percent (negative: below the order-0 bound,
    /// from per-tile models).
    pub over_bound_percent: f64,
}

/// The stream crossing a link tile by tile while `threads` decoders rebuild each tile as
/// it lands (`sparsewire_accel::sim::deliver_seconds`; per-tile decode times measured).
/// Modelled from measured decode times: the link itself is not real.
#[derive(Debug, Clone, Serialize)]
pub struct LinkReport {
    pub link_gbps: f64,
    /// Compressed bytes / link speed.
    pub transfer_seconds: f64,
    /// When the last tile is decoded.
    pub delivered_seconds: f64,
    /// Decode time not hidden behind the transfer: `delivered - transfer`.
    pub unhidden_decode_seconds: f64,
    /// Original bytes / `delivered_seconds`, GB/s.
    pub effective_gbps: f64,
    /// `link_gbps / compressed fraction`: what a free decoder would deliver.
    pub ideal_gbps: f64,
    /// `effective / ideal`.
    pub efficiency: f64,
    /// Sending the original bytes uncompressed over the same link, GB/s.
    pub uncompressed_gbps: f64,
}

/// The CPU's model name (Linux; "unknown CPU" elsewhere).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l[l.find(':').map_or(0, |i| i + 2)..].to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Seconds of timed runs a figure takes at least: a small file (PP-OCR decodes in about
/// 1.5 ms) gets more than `runs` runs, since from the median of five such short runs its
/// two-thread decode came out at 0.99x one thread in one bench and 1.69x in the next on a
/// 2-core VM (1.8-2.0x over 301 runs). The peers' script (scripts/peers.py) follows the
/// same rule.
pub const MIN_TIMED_SECONDS: f64 = 0.2;

/// Untimed warm-up before each figure: runs until at least this many seconds have passed
/// (at least one run). One run was too little for a pool's figure on this 2-vCPU VM: the
/// first 10-20 two-thread decodes of MiniLM bf16 after a second of one-thread work ran
/// 5-10% slower than the steady state (`decode_loop ... 25 2` against `... 200 2`), and a
/// median of about 20 runs took them in. `scripts/peers.py` warms up by the same rule.
pub const MIN_WARMUP_SECONDS: f64 = 0.1;

/// The median of at least `runs` timed runs of `f` on `pool` and at least
/// [`MIN_TIMED_SECONDS`] of them (at most 10000 runs), after [`MIN_WARMUP_SECONDS`] of
/// untimed warm-up runs.
fn timed<T: Send>(
    pool: &rayon::ThreadPool,
    runs: usize,
    mut f: impl FnMut() -> Result<T, StreamError> + Send,
) -> Result<f64, StreamError> {
    let warm = Instant::now();
    pool.install(&mut f)?;
    while warm.elapsed().as_secs_f64() < MIN_WARMUP_SECONDS {
        pool.install(&mut f)?;
    }
    let mut times = Vec::with_capacity(runs);
    let start = Instant::now();
    while times.len() < runs
        || (start.elapsed().as_secs_f64() < MIN_TIMED_SECONDS && times.len() < 10_000)
    {
        let t0 = Instant::now();
        pool.install(&mut f)?;
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

/// Encodes and decodes `file` `runs` times on one thread and on `threads` threads.
pub fn bench(
    file: &TensorFile,
    opts: &EncodeOptions,
    threads: usize,
    runs: usize,
    link_gbps: Option<f64>,
) -> Result<BenchReport, StreamError> {
    let runs = runs.max(1);
    let pool = |n: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .expect("thread pool")
    };
    let (one, all) = (pool(1), pool(threads.max(1)));
    let stream = encode(file, opts)?;
    let reader = Reader::new(&stream[..])?;
    // Encode into one output buffer reused across runs, as the decode below: the figure is
    // the encoder's, not the kernel's zeroing of a fresh buffer's pages (13% of the samples
    // on MiniLM bf16), which a sender that encodes repeatedly does not pay.
    let mut out = Vec::new();
    let enc1 = timed(&one, runs, || encode_into(file, opts, &mut out))?;
    let encn = timed(&all, runs, || encode_into(file, opts, &mut out))?;
    // Decode into buffers allocated and touched once, so the timing is the decoder's and
    // not the allocator's: a fresh `decode_all` per run lets glibc hand large buffers back
    // to the kernel and fault them in again, which varied by 1.7x between builds whose
    // decoders were identical (measured with the allocator's thresholds pinned).
    let mut file = reader.decode_all()?;
    let mut decode_into = || reader.decode_all_into(&mut file);
    let dec1 = timed(&one, runs, &mut decode_into)?;
    let decn = timed(&all, runs, &mut decode_into)?;
    let report = inspect(&reader, true)?;
    let mut totals: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for t in &report.tensors {
        for p in &t.planes {
            let e = totals.entry(p.plane.to_string()).or_default();
            e.0 += p.bytes;
            e.1 += p.entropy_bound_bytes.unwrap_or(0.0);
        }
    }
    let gbps = |s: f64| file.byte_len() as f64 / s / 1e9;
    let link = match link_gbps {
        Some(g) => Some(link_report(&reader, g, threads.max(1), runs)?),
        None => None,
    };
    Ok(BenchReport {
        link,
        input_bytes: report.input_bytes,
        output_bytes: report.output_bytes,
        ratio: report.ratio,
        threads: threads.max(1),
        encode_gbps: gbps(enc1),
        decode_gbps: gbps(dec1),
        encode_gbps_all_threads: gbps(encn),
        decode_gbps_all_threads: gbps(decn),
        runs,
        cpu: cpu_model(),
        kernel: reader.kernel().name().into(),
        encode_kernel: sparsewire_stream::Kernel::for_encode().name().into(),
        planes: totals
            .into_iter()
            .map(|(plane, (bytes, bound))| PlaneTotal {
                plane,
                bytes,
                entropy_bound_bytes: bound,
                over_bound_percent: if bound > 0.0 {
                    (bytes as f64 / bound - 1.0) * 100.0
                } else {
                    0.0
                },
            })
            .collect(),
        tensors: report.tensors,
    })
}

/// [`LinkReport`] for `reader`'s stream over a `gbps` link: each tile's decode time is the
/// median of `runs` timed decodes on one thread.
fn link_report(
    reader: &Reader<&[u8]>,
    gbps: f64,
    threads: usize,
    runs: usize,
) -> Result<LinkReport, StreamError> {
    let mut tiles = Vec::new();
    let mut original = 0u64;
    let mut out = Vec::new();
    for (t, meta) in reader.header().tensors.iter().enumerate() {
        for (k, e) in meta.tiles.iter().enumerate() {
            let n = reader.tile_decoded_len(t, k)? as usize;
            original += n as u64;
            out.resize(n, 0);
            let mut times = Vec::with_capacity(runs);
            for _ in 0..runs {
                let t0 = Instant::now();
                reader.decode_tile_into(t, k, &mut out)?;
                times.push(t0.elapsed().as_secs_f64());
            }
            tiles.push((e.len, median(times)));
        }
    }
    let stored: u64 = tiles.iter().map(|t| t.0).sum();
    let transfer = stored as f64 / (gbps * 1e9);
    let delivered = sparsewire_accel::sim::deliver_seconds(gbps, &tiles, threads);
    let effective = original as f64 / delivered / 1e9;
    let ideal = gbps * original as f64 / stored.max(1) as f64;
    Ok(LinkReport {
        link_gbps: gbps,
        transfer_seconds: transfer,
        delivered_seconds: delivered,
        unhidden_decode_seconds: delivered - transfer,
        effective_gbps: effective,
        ideal_gbps: ideal,
        efficiency: effective / ideal,
        uncompressed_gbps: gbps,
    })
}

/// The dense baselines on the uncompressed weight.
#[derive(Debug, Clone, Serialize)]
pub struct DenseBaseline {
    /// The weight's dtype as stored.
    #[serde(serialize_with = "sparsewire_metadata::display::serialize")]
    pub dtype: Dtype,
    /// Median seconds of the dtype-native kernel (batch 1: reads the stored bf16/f32
    /// bytes with the same AVX-512 code as the fused path; `None` for batch > 1).
    pub native_seconds: Option<f64>,
    /// Median seconds of faer's f32 GEMV/GEMM on the weight converted to f32 beforehand.
    pub faer_f32_seconds: f64,
}

/// A timed multiply with its baselines: what `sparsewire matmul` prints.
#[derive(Debug, Clone, Serialize)]
pub struct MatmulBench {
    /// Median wall seconds of the compressed multiply.
    pub seconds: f64,
    /// The faster dense baseline's median seconds (`None` without one).
    pub dense_seconds: Option<f64>,
    /// `dense_seconds / seconds`.
    pub speedup: Option<f64>,
    pub overlap_efficiency: Option<f64>,
    /// Largest |y - y_dense| against the dense result on the original weights (includes
    /// what sparsification changed).
    pub max_abs_error: Option<f64>,
    /// Largest |y - y_ref| against the scalar reference on the rebuilt weights (the
    /// executor's own error: summation order).
    pub max_abs_error_vs_reference: f64,
    pub runs: usize,
    /// Whether the last-level cache was flushed before each timed run.
    pub cold: bool,
    pub buffer: BufferStats,
    pub dense: Option<DenseBaseline>,
    /// The median run's full report.
    pub report: Report,
    pub cpu: String,
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max)
}

/// Bytes written before each timed run by `cold` benchmarks: twice this machine's (and
/// most servers' per-socket) 32 MiB last-level cache.
pub const COLD_FLUSH_BYTES: usize = 64 << 20;

/// Why a multiply benchmark cannot run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("the dense tensor {name:?} has shape {dense:?}, the stream's has {stream:?}")]
    DenseShape {
        name: String,
        dense: Vec<u64>,
        stream: Vec<u64>,
    },
    #[error("the dense tensor {name:?} is {dtype}, not a float tensor")]
    DenseDtype { name: String, dtype: Dtype },
}

/// Runs [`exec::matmul`] `runs` times, interleaved with the dense baselines on `dense`
/// (the uncompressed tensor) when given, and reports medians. With `cold`, every timed run
/// (compressed and dense alike) starts with the weights it reads evicted from every cache
/// level ([`mmu::evict_from_caches`]; where that is not available, after writing
/// [`COLD_FLUSH_BYTES`]), so weights come from DRAM, as for a model larger than the cache,
/// not from a warm last-level cache.
pub fn bench_matmul<B: AsRef<[u8]> + Send + Sync>(
    reader: &Reader<B>,
    t: usize,
    x: &[f32],
    opts: &Options,
    dense: Option<&Tensor>,
    runs: usize,
    cold: bool,
) -> Result<MatmulBench, BenchError> {
    let runs = runs.max(1);
    // The scalar reference first: it also checks the tensor (dtype, input length).
    let reference = exec::reference(reader, t, x, opts.batch)?;
    let meta = reader.meta(t)?;
    let numel = meta.numel().map_err(StreamError::from)?;
    let (rows, cols) = view_2d(&meta.shape, numel);
    let (rows, cols) = (rows as usize, cols as usize);
    let dense = match dense {
        Some(d) => {
            if d.numel() != numel {
                return Err(BenchError::DenseShape {
                    name: d.name.clone(),
                    dense: d.shape.clone(),
                    stream: meta.shape.clone(),
                });
            }
            let w32 = d.to_f32_vec().ok_or_else(|| BenchError::DenseDtype {
                name: d.name.clone(),
                dtype: d.dtype,
            })?;
            Some((d, w32))
        }
        None => None,
    };
    // What the timed runs read: the stream, and the dense baselines' weights.
    let (dense_bytes, w32_floats): (&[u8], &[f32]) = match &dense {
        Some((d, w32)) => (&d.data, w32),
        None => (&[], &[]),
    };
    let mut flush_buf = Vec::new();
    let mut flush = || {
        // Evicting exactly the weights leaves nothing of them in a last-level cache of any
        // size and no dirty lines behind; the written buffer is the fallback.
        if !cold
            || (mmu::evict_from_caches(reader.source().as_ref())
                && mmu::evict_from_caches(dense_bytes)
                && mmu::evict_from_caches(w32_floats))
        {
            return;
        }
        flush_buf.resize(COLD_FLUSH_BYTES, 0u8);
        for (i, chunk) in flush_buf.chunks_mut(64).enumerate() {
            chunk[0] = i as u8;
        }
        std::hint::black_box(&flush_buf);
    };
    let mut ws = Workspace::default();
    let (mut secs, mut native, mut faer_s) = (vec![], vec![], vec![]);
    let mut reports = Vec::new();
    let mut y = Vec::new();
    let mut y_dense = Vec::new();
    for _ in 0..runs {
        flush();
        let (yy, rep) = exec::matmul_in(reader, t, x, opts, &mut ws)?;
        secs.push(rep.seconds);
        reports.push(rep);
        y = yy;
        if let Some((d, w32)) = &dense {
            if opts.batch == 1 && matches!(d.dtype, Dtype::BF16 | Dtype::F32) {
                let mut yd = vec![0f32; rows];
                flush();
                let t0 = Instant::now();
                mmu::dense_gemv(&d.data, d.dtype, rows, cols, x, &mut yd, opts.threads)
                    .expect("checked shapes");
                native.push(t0.elapsed().as_secs_f64());
            }
            let mut yd = vec![0f32; opts.batch * rows];
            flush();
            let t0 = Instant::now();
            dense_faer(w32, rows, cols, x, opts.batch, opts.threads, &mut yd);
            faer_s.push(t0.elapsed().as_secs_f64());
            y_dense = yd;
        }
    }
    let seconds = median(secs.clone());
    let at = secs
        .iter()
        .position(|&s| s == seconds)
        .expect("the median is one of the runs");
    let report = reports.swap_remove(at);
    let baseline = dense.as_ref().map(|(d, _)| DenseBaseline {
        dtype: d.dtype,
        native_seconds: (!native.is_empty()).then(|| median(native)),
        faer_f32_seconds: median(faer_s),
    });
    let dense_seconds = baseline
        .as_ref()
        .map(|b| b.native_seconds.unwrap_or(f64::MAX).min(b.faer_f32_seconds));
    Ok(MatmulBench {
        seconds,
        dense_seconds,
        speedup: dense_seconds.map(|d| d / seconds),
        overlap_efficiency: report.overlap_efficiency,
        max_abs_error: dense.as_ref().map(|_| max_abs_diff(&y, &y_dense)),
        max_abs_error_vs_reference: max_abs_diff(&y, &reference),
        runs,
        cold,
        buffer: report.buffer,
        dense: baseline,
        report,
        cpu: cpu_model(),
    })
}

/// `y = W x` by faer on f32 weights, `threads` wide.
fn dense_faer(
    w: &[f32],
    rows: usize,
    cols: usize,
    x: &[f32],
    batch: usize,
    threads: usize,
    y: &mut [f32],
) {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};
    let lhs = MatRef::from_row_major_slice(w, rows, cols);
    let rhs = MatRef::from_row_major_slice(x, batch, cols).transpose();
    let dst = MatMut::from_column_major_slice_mut(y, rows, batch);
    let par = if threads > 1 {
        Par::rayon(threads)
    } else {
        Par::Seq
    };
    matmul(dst, Accum::Replace, lhs, rhs, 1.0f32, par);
}
