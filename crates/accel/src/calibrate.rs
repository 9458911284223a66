//! Calibrating the timing model on this machine: the `this-cpu` preset from rates measured
//! with the real code, and its check against measured pipelined multiplies.

use crate::exec::{self, ExecError, Options, Path, Workspace};
use crate::mmu::{self, Weights};
use crate::sim::{BusSpec, EngineSpec, HardwareSpec, LmdSpec, Method, MmuSpec, SimError};
use crate::workload::{method_of, simulate_stream};
use sparsewire_formats::{Tensor, TensorFile};
use sparsewire_metadata::{view_2d, TileShape};
use sparsewire_stream::{EncodeOptions, Reader, StreamError};
use std::time::Instant;

/// Errors of a calibration: the multiplies it times, the model it checks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CalibrationError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("the timing model: {0}")]
    Model(#[from] SimError),
}

/// The median of timings (the upper one of an even count; 0 for none).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One measured run against the model's prediction.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CalibrationRun {
    pub tensor: String,
    pub batch: usize,
    pub measured_seconds: f64,
    pub predicted_seconds: f64,
    pub relative_error: f64,
}

/// The calibrated preset and how well it predicts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Calibration {
    pub preset: HardwareSpec,
    pub runs: Vec<CalibrationRun>,
    pub max_relative_error: f64,
}

/// Untimed multiplies before each measured one in [`calibrate`].
const WARMUP: usize = 5;

/// Measures this machine with the real code on `reader`'s `tensors` and writes the
/// `this-cpu` preset: the "bus" is memory read bandwidth (what the decode reads), the
/// engine rates are the rebuild rates of the pipelined path per method present (others
/// scaled from zero-fill as in the presets), the MMU rates are tile multiplies at batch 1
/// and 64, the start-up and per-tile hand-off costs come from timed probe multiplies of 1
/// and 32 small tiles. Then each tensor's pipelined multiply (all cores) is timed and
/// predicted.
pub fn calibrate<B: AsRef<[u8]> + Send + Sync>(
    reader: &Reader<B>,
    tensors: &[usize],
    runs: usize,
) -> Result<Calibration, CalibrationError> {
    let runs = runs.max(1);
    // Memory read bandwidth: sum a 128 MiB buffer (beyond the last-level cache).
    let buf = vec![1u64; 16 << 20];
    let mem = median(
        (0..runs)
            .map(|_| {
                let t0 = Instant::now();
                let s: u64 = buf.iter().copied().fold(0, u64::wrapping_add);
                std::hint::black_box(s);
                (buf.len() * 8) as f64 / t0.elapsed().as_secs_f64()
            })
            .collect(),
    );
    // Rebuild and multiply rates per tile, by method.
    let mut rebuild: std::collections::HashMap<Method, (f64, f64)> = Default::default();
    let (mut gemv, mut gemm) = ((0f64, 0f64), (0f64, 0f64));
    let mut tile = Vec::new();
    for &t in tensors {
        let meta = &reader.header().tensors[t];
        let key = method_of(meta);
        let grid = reader.grid(t);
        let n = view_2d(&meta.shape, meta.numel().map_err(StreamError::from)?).1 as usize;
        let x1 = exec::default_input(1, n);
        let x64 = exec::default_input(64, n);
        for k in 0..meta.tiles.len().min(32) {
            let rect = grid.rect(k as u64);
            let elems = rect.numel() as f64;
            let secs = median(
                (0..runs)
                    .map(|_| {
                        // The executor reuses its buffer's memory too (`Workspace`).
                        let t0 = Instant::now();
                        exec::rebuild_tile(reader, t, k, &mut tile)
                            .map(|_| t0.elapsed().as_secs_f64())
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            );
            let e = rebuild.entry(key).or_default();
            e.0 += elems;
            e.1 += secs;
            for (x, batch, acc) in [(&x1, 1usize, &mut gemv), (&x64, 64, &mut gemm)] {
                let s = exec::tile_shape(&rect, n, batch);
                let mut out = vec![0f32; batch * s.rows];
                let mut scratch = Vec::new();
                let secs = median(
                    (0..runs)
                        .map(|_| {
                            let t0 = Instant::now();
                            mmu::tile_mmo(Weights::Rebuilt(&tile), s, x, &mut out, &mut scratch)
                                .map(|_| t0.elapsed().as_secs_f64())
                                .map_err(|source| ExecError::Multiply {
                                    tensor: meta.name.clone(),
                                    tile: k,
                                    source,
                                })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                );
                acc.0 += elems * batch as f64;
                acc.1 += secs;
            }
        }
    }
    let rate = |k: Method| rebuild.get(&k).map(|(e, s)| e / s);
    // Starting a multiply (planning, threads starting and joining, hand-offs): a one-tile
    // 64 x 64 multiply timed whole, less its rebuild and multiply at the rates above.
    // Starting a multiply, and each tile's hand-off between the threads: one-tile and
    // 32-tile probes (64 x 64 tiles) timed whole, less their rebuild and multiply at the
    // rates above; the difference is start-up plus per-tile overhead.
    let probe = |tiles: u64| -> Result<f64, CalibrationError> {
        let w: Vec<f32> = (0..64 * 64 * tiles)
            .map(|i| (i as f32 * 0.1).sin())
            .collect();
        let f = TensorFile {
            tensors: vec![Tensor::from_f32("probe", vec![64 * tiles, 64], &w)],
            metadata: vec![],
        };
        let eopts = EncodeOptions {
            tile_shape: Some(TileShape { rows: 64, cols: 64 }),
            ..Default::default()
        };
        let b = sparsewire_stream::encode(&f, &eopts)?;
        let r = Reader::new(&b[..])?;
        let x = exec::default_input(1, 64);
        let opts = Options {
            path: Path::Pipelined,
            ..Options::default()
        };
        let mut ws = Workspace::default();
        for _ in 0..WARMUP {
            exec::matmul_in(&r, 0, &x, &opts, &mut ws)?;
        }
        let whole = median(
            (0..runs.max(21))
                .map(|_| exec::matmul_in(&r, 0, &x, &opts, &mut ws).map(|r| r.1.seconds))
                .collect::<Result<Vec<_>, _>>()?,
        );
        let n = (4096 * tiles) as f64;
        let work = n / rate(Method::Dense).unwrap_or(1e9) + n / (gemv.0 / gemv.1.max(1e-12));
        Ok((whole - work).max(0.0))
    };
    let (one, many) = (probe(1)?, probe(32)?);
    let per_tile = ((many - one) / 31.0).max(0.0);
    let launch = (one - per_tile).max(0.0);
    let zero = rate(Method::Zero).or(rate(Method::Dense)).unwrap_or(1e9);
    let preset = HardwareSpec {
        name: "this-cpu".into(),
        bus: BusSpec {
            gbps: mem / 1e9,
            latency_us: 0.0,
            overhead_us: 0.0,
            trace: None,
        },
        lmd: LmdSpec {
            // Main memory holds everything: a buffer for every tile, staging for 64.
            capacity_bytes: 1 << 40,
            staging_bytes: 1 << 34,
        },
        engine: EngineSpec {
            dense_elems_per_s: rate(Method::Dense).unwrap_or(zero * 2.0),
            zero_elems_per_s: zero,
            linear_elems_per_s: rate(Method::Linear).unwrap_or(zero / 4.0),
            learned_elems_per_s: rate(Method::Learned).unwrap_or(zero / 8.0),
            dictionary_elems_per_s: rate(Method::Dictionary).unwrap_or(zero / 2.0),
            per_tile_us: per_tile * 1e6,
        },
        mmu: MmuSpec {
            gemv_macs_per_s: gemv.0 / gemv.1.max(1e-12),
            gemm_macs_per_s: gemm.0 / gemm.1.max(1e-12),
            per_tile_us: 0.0,
            launch_us: launch * 1e6,
            // The multiply thread rebuilds tiles itself rather than wait (exec's pipelined
            // path); the engine is the one decode worker a second core runs.
            rebuilds_when_idle: true,
        },
    };
    let mut out = Vec::new();
    for &t in tensors {
        let meta = &reader.header().tensors[t];
        let n = view_2d(&meta.shape, meta.numel().map_err(StreamError::from)?).1 as usize;
        let opts = Options {
            path: Path::Pipelined,
            ..Options::default()
        };
        let x = exec::default_input(1, n);
        // Untimed runs first: tile checksums are verified on first read, the allocator
        // and the page tables settle (the first runs of a process are several times
        // slower than the steady state this models).
        let mut ws = Workspace::default();
        for _ in 0..WARMUP {
            exec::matmul_in(reader, t, &x, &opts, &mut ws)?;
        }
        let measured = median(
            (0..runs.max(11))
                .map(|_| exec::matmul_in(reader, t, &x, &opts, &mut ws).map(|r| r.1.seconds))
                .collect::<Result<Vec<_>, _>>()?,
        );
        let predicted =
            simulate_stream(reader.header(), &[t], 1, 1, opts.lookahead, &preset)?.total_seconds;
        out.push(CalibrationRun {
            tensor: meta.name.clone(),
            batch: 1,
            measured_seconds: measured,
            predicted_seconds: predicted,
            relative_error: (predicted - measured).abs() / measured,
        });
    }
    let max_relative_error = out.iter().map(|r| r.relative_error).fold(0.0, f64::max);
    Ok(Calibration {
        preset,
        runs: out,
        max_relative_error,
    })
}
