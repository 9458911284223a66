//! The executor: `y = W' x` with `W'` read tile by tile from a stream, rebuilt on demand
//! (`sparsewire-re`), and multiplied by the [`crate::mmu`] kernels, following the
//! [`crate::schedule`] plan through the [`crate::buffer`].
//!
//! Two paths (chosen by [`Path::Auto`] per tensor):
//! - **fused**: every tile is stored by the fast profile and rebuilt by zero-fill, so the
//!   MMU multiplies straight from the stored bytes ([`RawTile`]), skipping dropped weights;
//!   `threads` workers each take whole row blocks of tiles. Decoding *is* the multiply, so
//!   there is nothing to overlap and no buffer.
//! - **pipelined** (`exec/pipelined.rs`): decode workers (`threads - 1`) follow the plan: each
//!   step waits for its gate (the multiply at most `lookahead` positions behind), evicts
//!   what the plan says, decodes and rebuilds the tile, and puts it in the reconstruction
//!   buffer. The calling thread multiplies the tiles in trace order; when the tile it needs
//!   is not ready it rebuilds the next plan step whose gate it has passed itself, and waits
//!   only when there is none (on one thread it rebuilds every tile just before its
//!   multiply). The buffer's bytes never exceed its capacity (the plan's pinning
//!   guarantees it; the buffer counts and reports its real peak).
//!
//! A workload is `passes` multiplies of the same weight (micro-batches of a batch): with a
//! buffer that holds the whole tensor, passes after the first are hits.
//!
//! **Overlap efficiency** is the share of the shorter stage that was hidden:
//! `(decode + compute - wall) / min(decode, compute)`, clamped to [0, 1], where `decode`
//! is the time spent rebuilding (by the workers and by the multiply instead of waiting)
//! divided by the number of workers and `compute` the multiply's. 1 means the multiply
//! cost no wall time beyond the decode.

mod pipelined;

use crate::buffer::{BufferStats, Policy};
use crate::mmu::{self, MmuError, TileShape, Weights};
use crate::schedule::{self, Plan, ScheduleError};
use sparsewire_formats::tiling::TileRect;
use sparsewire_metadata::{view_2d, Dtype, Reconstruction, ValueCodec};
use sparsewire_re::{RebuildError, TilePlace};
use sparsewire_sparse::{SparseTile, Values};
use sparsewire_stream::{RawTile, Reader, StreamError};
use std::time::Instant;

/// Which execution path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    /// Fused where the tensor allows it, pipelined otherwise.
    Auto,
    Fused,
    Pipelined,
}

impl std::str::FromStr for Path {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Path::Auto),
            "fused" => Ok(Path::Fused),
            "pipelined" => Ok(Path::Pipelined),
            _ => Err(format!("unknown path {s:?} (auto, fused, pipelined)")),
        }
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Path::Auto => "auto",
            Path::Fused => "fused",
            Path::Pipelined => "pipelined",
        })
    }
}

/// Errors of a multiply, each naming the tensor (and tile where there is one).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("matmul on {tensor:?}: it is {dtype}, not a float tensor (F32, F16, BF16)")]
    NotFloat { tensor: String, dtype: Dtype },
    #[error("matmul on {tensor:?}: the input holds {got} values; batch {batch} x {cols} columns needs {}", batch * cols)]
    InputLength {
        tensor: String,
        got: usize,
        batch: usize,
        cols: usize,
    },
    #[error("matmul on {tensor:?}: {what} must be at least 1")]
    Zero { tensor: String, what: &'static str },
    #[error("matmul on {tensor:?}: the fused path needs fast-profile tiles (compress --profile fast), bf16 or f32, rebuilt by zero-fill")]
    NotFusable { tensor: String },
    #[error("matmul on {tensor:?}, tile {tile}: {source}")]
    Rebuild {
        tensor: String,
        tile: usize,
        source: RebuildError,
    },
    #[error("matmul on {tensor:?}, tile {tile}: {source}")]
    Multiply {
        tensor: String,
        tile: usize,
        source: MmuError,
    },
    #[error("matmul on {tensor:?}: {source}")]
    Schedule {
        tensor: String,
        source: ScheduleError,
    },
}

/// How to run a multiply.
#[derive(Debug, Clone)]
pub struct Options {
    /// Input vectors (1: GEMV; up to 64 in the benchmarks).
    pub batch: usize,
    /// Threads in all (fused: workers; pipelined: decode workers + the multiply thread).
    pub threads: usize,
    /// Reconstruction buffer capacity in bytes (rebuilt f32 tiles); `None`: the tensor.
    pub buffer_bytes: Option<u64>,
    /// How many trace positions decoding may run ahead of the multiply.
    pub lookahead: usize,
    pub policy: Policy,
    /// Multiplies of the same weight in the workload.
    pub passes: usize,
    pub path: Path,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            batch: 1,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            buffer_bytes: None,
            lookahead: 4,
            policy: Policy::Belady,
            passes: 1,
            path: Path::Auto,
        }
    }
}

/// What a multiply did and how long it took.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub tensor: String,
    pub rows: usize,
    pub cols: usize,
    pub batch: usize,
    pub passes: usize,
    pub path: Path,
    pub threads: usize,
    pub tiles: usize,
    /// Wall time of the whole workload.
    pub seconds: f64,
    /// Stored bytes of the tensor's tiles (what crossed the link once).
    pub stored_bytes: u64,
    /// Dense bytes of the weight in its dtype, times passes, per second.
    pub weight_gbps: f64,
    /// Time spent rebuilding tiles (pipelined: by the decode workers and by the multiply
    /// while it waited) / the number of decode workers, seconds.
    pub decode_seconds: f64,
    /// Tiles the multiply rebuilt itself instead of waiting for a decode worker
    /// (pipelined; 0 on the fused path).
    pub multiply_rebuilds: u64,
    /// The multiply's busy time, seconds.
    pub compute_seconds: f64,
    /// Time the multiply waited for a tile, seconds.
    pub stall_seconds: f64,
    /// Share of min(decode, compute) hidden by the overlap; `None` on the fused path.
    pub overlap_efficiency: Option<f64>,
    /// The buffer's counters; `peak_bytes` is the measured peak of what it held.
    pub buffer: BufferStats,
    /// The lookahead the plan used (clamped to what the buffer holds).
    pub lookahead: usize,
}

/// Memory the reconstruction buffer keeps between multiplies: rebuilt-tile allocations
/// are reused instead of being returned to the system and faulted in again (on this
/// machine a fresh 1 MB of tiles cost about 0.5 ms of page faults per multiply).
#[derive(Debug, Default)]
pub struct Workspace {
    pool: Vec<Vec<f32>>,
}

/// The tile's multiply shape inside the whole tensor.
pub fn tile_shape(rect: &TileRect, n: usize, batch: usize) -> TileShape {
    TileShape {
        rows: rect.rows as usize,
        cols: rect.cols as usize,
        col0: rect.col as usize,
        n,
        batch,
    }
}

/// Adds a tile's `[batch, rows]` block into `y` (`[batch, total_rows]`).
fn scatter(y: &mut [f32], block: &[f32], row0: usize, rows: usize, total_rows: usize) {
    for (b, chunk) in block.chunks_exact(rows.max(1)).enumerate() {
        for (o, v) in y[b * total_rows + row0..][..rows].iter_mut().zip(chunk) {
            *o += v;
        }
    }
}

/// A tensor's name, shape and checks, shared by every path.
struct Target<'a> {
    t: usize,
    name: &'a str,
    dtype: Dtype,
    rows: usize,
    cols: usize,
    reconstruction: &'a Reconstruction,
}

impl<'a> Target<'a> {
    /// Tensor `t` of `reader`, checked as a float matrix multiplied by `batch x cols` `x`.
    fn new<B: AsRef<[u8]> + Send + Sync>(
        reader: &'a Reader<B>,
        t: usize,
        x: &[f32],
        batch: usize,
    ) -> Result<Self, ExecError> {
        let meta = reader.meta(t)?;
        let tensor = || meta.name.clone();
        // The dtype first: nothing else about a non-float tensor matters.
        if !meta.dtype.is_compressible_float() {
            return Err(ExecError::NotFloat {
                tensor: tensor(),
                dtype: meta.dtype,
            });
        }
        let numel = meta.numel().map_err(StreamError::from)?;
        let (rows, cols) = view_2d(&meta.shape, numel);
        let (rows, cols) = (rows as usize, cols as usize);
        if batch == 0 {
            return Err(ExecError::Zero {
                tensor: tensor(),
                what: "the batch",
            });
        }
        if x.len() != batch * cols {
            return Err(ExecError::InputLength {
                tensor: tensor(),
                got: x.len(),
                batch,
                cols,
            });
        }
        Ok(Target {
            t,
            name: &meta.name,
            dtype: meta.dtype,
            rows,
            cols,
            reconstruction: &meta.reconstruction,
        })
    }

    fn mmu_err(&self, tile: usize) -> impl FnOnce(MmuError) -> ExecError + '_ {
        move |source| ExecError::Multiply {
            tensor: self.name.to_string(),
            tile,
            source,
        }
    }

    fn rebuild_err(&self, tile: usize) -> impl FnOnce(RebuildError) -> ExecError + '_ {
        move |source| ExecError::Rebuild {
            tensor: self.name.to_string(),
            tile,
            source,
        }
    }
}

/// Whether tensor `t` was written by the fast profile (values stored raw) in a dtype the
/// fused kernels read, rebuilt by zero-fill. Its tiles are checked one by one as they are
/// read ([`Reader::raw_tile`]).
fn fusable<B: AsRef<[u8]> + Send + Sync>(reader: &Reader<B>, t: usize) -> Result<bool, ExecError> {
    let meta = reader.meta(t)?;
    Ok(meta.reconstruction == Reconstruction::Zero
        && meta.codec == ValueCodec::Raw
        && matches!(meta.dtype, Dtype::BF16 | Dtype::F32))
}

/// `y = W x` for tensor `t` of `reader` (its 2-D view, `rows x cols`): `x` is
/// `batch x cols` row-major, `y` comes back `batch x rows`. A one-off: see
/// [`matmul_in`] to keep the buffer's memory between multiplies.
pub fn matmul<B: AsRef<[u8]> + Send + Sync>(
    reader: &Reader<B>,
    t: usize,
    x: &[f32],
    opts: &Options,
) -> Result<(Vec<f32>, Report), ExecError> {
    matmul_in(reader, t, x, opts, &mut Workspace::default())
}

/// [`matmul`] with the reconstruction buffer's memory taken from and returned to `ws`.
pub fn matmul_in<B: AsRef<[u8]> + Send + Sync>(
    reader: &Reader<B>,
    t: usize,
    x: &[f32],
    opts: &Options,
    ws: &mut Workspace,
) -> Result<(Vec<f32>, Report), ExecError> {
    let target = Target::new(reader, t, x, opts.batch)?;
    if opts.passes == 0 {
        return Err(ExecError::Zero {
            tensor: target.name.to_string(),
            what: "the number of passes",
        });
    }
    if let Reconstruction::Channels { .. } = target.reconstruction {
        return Err(ExecError::Rebuild {
            tensor: target.name.to_string(),
            tile: 0,
            source: RebuildError::NeedsWholeTensor { method: "channels" },
        });
    }
    let path = match opts.path {
        Path::Auto if fusable(reader, t)? => Path::Fused,
        Path::Auto => Path::Pipelined,
        Path::Fused if !fusable(reader, t)? => {
            return Err(ExecError::NotFusable {
                tensor: target.name.to_string(),
            })
        }
        p => p,
    };
    let meta = reader.meta(t)?;
    let stored_bytes: u64 = meta.tiles.iter().map(|e| e.len).sum();
    let threads = opts.threads.max(1);
    let _span =
        tracing::info_span!("matmul", tensor = %target.name, ?path, batch = opts.batch).entered();
    let (y, mut report) = match path {
        Path::Fused => fused(reader, &target, x, opts, threads)?,
        _ => pipelined::run(reader, &target, x, opts, threads, ws)?,
    };
    report.tensor = target.name.to_string();
    report.stored_bytes = stored_bytes;
    let dense = (target.rows * target.cols) as u64 * target.dtype.bits() / 8;
    report.weight_gbps = dense as f64 * opts.passes as f64 / report.seconds / 1e9;
    Ok((y, report))
}

fn empty_report(target: &Target, opts: &Options, path: Path, threads: usize) -> Report {
    Report {
        tensor: String::new(),
        rows: target.rows,
        cols: target.cols,
        batch: opts.batch,
        passes: opts.passes,
        path,
        threads,
        tiles: 0,
        seconds: 0.0,
        stored_bytes: 0,
        weight_gbps: 0.0,
        decode_seconds: 0.0,
        multiply_rebuilds: 0,
        compute_seconds: 0.0,
        stall_seconds: 0.0,
        overlap_efficiency: None,
        buffer: BufferStats::default(),
        lookahead: 0,
    }
}

/// A row block's output: first row, rows, and its `[batch, rows]` values.
type BlockOut = (usize, usize, Vec<f32>);

fn fused<B: AsRef<[u8]> + Send + Sync>(
    reader: &Reader<B>,
    target: &Target,
    x: &[f32],
    opts: &Options,
    threads: usize,
) -> Result<(Vec<f32>, Report), ExecError> {
    let t = target.t;
    let grid = reader.grid(t);
    // Tiles by row block: a worker owns a block's rows, so outputs never collide.
    let blocks: Vec<std::ops::Range<u64>> =
        (0..grid.row_blocks()).map(|b| grid.row_block(b)).collect();
    let (batch, rows, cols) = (opts.batch, target.rows, target.cols);
    let start = Instant::now();
    let mut y = vec![0f32; batch * rows];
    for _ in 0..opts.passes {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || {
            let mut out = Vec::new();
            let mut scratch = Vec::new();
            loop {
                let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(tiles) = blocks.get(b) else { break };
                let r0 = grid.rect(tiles.start);
                let mut acc = vec![0f32; batch * r0.rows as usize];
                for k in tiles.clone() {
                    let k = k as usize;
                    let w = match reader.raw_tile(t, k)? {
                        Some(RawTile::Dense(bytes)) => Values::Dense {
                            dtype: target.dtype,
                            bytes,
                        },
                        Some(RawTile::Sparse(tile)) => Values::Sparse(tile),
                        None => {
                            return Err(ExecError::NotFusable {
                                tensor: target.name.to_string(),
                            })
                        }
                    };
                    let sh = tile_shape(&grid.rect(k as u64), cols, batch);
                    mmu::tile_mmo(Weights::Stored(w), sh, x, &mut acc, &mut scratch)
                        .map_err(target.mmu_err(k))?;
                }
                out.push((r0.row as usize, r0.rows as usize, acc));
            }
            Ok(out)
        };
        let workers = threads.min(blocks.len()).max(1);
        // One worker runs on the calling thread: a thread spawned for each pass cost more
        // than the multiply of a small layer.
        let results: Vec<Result<Vec<BlockOut>, ExecError>> = if workers == 1 {
            vec![work()]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..workers).map(|_| s.spawn(work)).collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("worker panicked"))
                    .collect()
            })
        };
        y.fill(0.0);
        for r in results {
            for (row0, n, acc) in r? {
                scatter(&mut y, &acc, row0, n, rows);
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut report = empty_report(target, opts, Path::Fused, threads);
    report.tiles = grid.len() as usize;
    report.seconds = seconds;
    report.compute_seconds = seconds;
    Ok((y, report))
}

/// Tile `k` of tensor `t` as stored: borrowed when it is a fast-profile tile, decoded
/// otherwise (`owned` keeps the decoded tile alive).
fn stored_values<'a, B: AsRef<[u8]> + Send + Sync>(
    reader: &'a Reader<B>,
    target: &Target,
    k: usize,
    owned: &'a mut Option<(Vec<u8>, Option<SparseTile>)>,
) -> Result<Values<'a>, ExecError> {
    let t = target.t;
    if let Some(raw) = reader.raw_tile(t, k)? {
        return Ok(match raw {
            RawTile::Dense(bytes) => Values::Dense {
                dtype: target.dtype,
                bytes,
            },
            RawTile::Sparse(tile) => Values::Sparse(tile),
        });
    }
    *owned = Some(match reader.tile_sparse(t, k)? {
        Some(tile) => (Vec::new(), Some(tile)),
        None => (reader.decode_tile(t, k)?, None),
    });
    let (bytes, tile) = owned.as_ref().expect("just set");
    Ok(match tile {
        Some(tile) => Values::Sparse(tile.as_ref()),
        None => Values::Dense {
            dtype: target.dtype,
            bytes,
        },
    })
}

/// Decodes tile `k` and rebuilds it to f32 with the tensor's stored method (what a decode
/// worker does).
pub fn rebuild_tile<B: AsRef<[u8]> + Send + Sync>(
    reader: &Reader<B>,
    t: usize,
    k: usize,
    out: &mut Vec<f32>,
) -> Result<(), ExecError> {
    let meta = reader.meta(t)?;
    let target = Target {
        t,
        name: &meta.name,
        dtype: meta.dtype,
        rows: 0,
        cols: 0,
        reconstruction: &meta.reconstruction,
    };
    rebuild_for(reader, &target, k, out)
}

fn rebuild_for<B: AsRef<[u8]> + Send + Sync>(
    reader: &Reader<B>,
    target: &Target,
    k: usize,
    out: &mut Vec<f32>,
) -> Result<(), ExecError> {
    let mut owned = None;
    let values = stored_values(reader, target, k, &mut owned)?;
    let grid = reader.grid(target.t);
    let place = TilePlace {
        col0: grid.rect(k as u64).col as usize,
        full_cols: grid.cols as usize,
    };
    sparsewire_re::rebuild_tile(values, target.reconstruction, place, out)
        .map_err(target.rebuild_err(k))
}

/// The trace and plan of a pipelined workload over tensor `t`.
pub fn plan_for<B: AsRef<[u8]> + Send + Sync>(
    reader: &Reader<B>,
    t: usize,
    opts: &Options,
) -> Result<Plan, ExecError> {
    let grid = reader.grid(t);
    let sizes: Vec<u64> = (0..grid.len()).map(|k| grid.rect(k).numel() * 4).collect();
    let trace = schedule::sweep(t as u32, &sizes, opts.passes);
    let capacity = opts
        .buffer_bytes
        .unwrap_or_else(|| sizes.iter().sum::<u64>().max(1));
    schedule::plan(&trace, capacity, opts.policy, opts.lookahead).map_err(|source| {
        ExecError::Schedule {
            tensor: reader.meta(t).map(|m| m.name.clone()).unwrap_or_default(),
            source,
        }
    })
}

/// The scalar reference of [`matmul`]: tile by tile, each expanded by the scalar code,
/// rebuilt with the stored method, and multiplied element by element in f64. Needs the
/// memory of one tile, not of the tensor.
pub fn reference<B: AsRef<[u8]> + Send + Sync>(
    reader: &Reader<B>,
    t: usize,
    x: &[f32],
    batch: usize,
) -> Result<Vec<f32>, ExecError> {
    let target = Target::new(reader, t, x, batch)?;
    if let Reconstruction::Channels { .. } = target.reconstruction {
        return Err(ExecError::Rebuild {
            tensor: target.name.to_string(),
            tile: 0,
            source: RebuildError::NeedsWholeTensor { method: "channels" },
        });
    }
    let grid = reader.grid(t);
    let (rows, cols) = (target.rows, target.cols);
    let mut y = vec![0f64; batch * rows];
    let mut w = Vec::new();
    for k in 0..grid.len() as usize {
        let mut owned = None;
        let values = stored_values(reader, &target, k, &mut owned)?;
        let r = grid.rect(k as u64);
        w.resize(r.numel() as usize, 0.0);
        sparsewire_sparse::expand_f32_ref(values, &mut w)
            .map_err(|e| target.mmu_err(k)(MmuError::Tile(e)))?;
        if let Values::Sparse(tile) = values {
            let place = TilePlace {
                col0: r.col as usize,
                full_cols: cols,
            };
            sparsewire_re::rebuild_expanded(
                &mut w,
                tile.mask(),
                r.cols as usize,
                place,
                target.reconstruction,
            )
            .map_err(target.rebuild_err(k))?;
        }
        let (rc, cc) = (r.rows as usize, r.cols as usize);
        for b in 0..batch {
            for i in 0..rc {
                let acc: f64 = (0..cc)
                    .map(|j| w[i * cc + j] as f64 * x[b * cols + r.col as usize + j] as f64)
                    .sum();
                y[b * rows + r.row as usize + i] += acc;
            }
        }
    }
    Ok(y.into_iter().map(|v| v as f32).collect())
}

/// A deterministic input: `batch x cols` values in [-1, 1].
pub fn default_input(batch: usize, cols: usize) -> Vec<f32> {
    (0..batch * cols)
        .map(|i| ((i as f32) * 0.618_034 + 0.5).sin())
        .collect()
}
