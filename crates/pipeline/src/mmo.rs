//! The pipelined matrix multiply (MMO): `y = W' x` with `W'` read tile by tile from a
//! [`Reader`], rebuilt on demand, and multiplied by the accelerator model's MMU kernels.
//!
//! Two paths (chosen by [`MmoPath::Auto`] per tensor):
//! - **fused**: every tile is stored by the fast profile and rebuilt by zero-fill, so the
//!   MMU multiplies straight from the stored bytes ([`RawTile`]), skipping dropped weights;
//!   `threads` workers each take whole row blocks of tiles. Decoding *is* the multiply, so
//!   there is nothing to overlap and no buffer.
//! - **pipelined**: decode workers (`threads - 1`, at least one) follow the scheduler's
//!   [`Plan`] (`sparsewire_accel::schedule`): each step waits for its gate (the multiply at
//!   most `lookahead` positions behind), evicts what the plan says, decodes and rebuilds
//!   the tile with the stored method, and puts it in the reconstruction buffer. The calling
//!   thread multiplies the tiles in trace order, waiting only when a tile is not ready.
//!   The buffer's bytes never exceed its capacity (the plan's pinning guarantees it; the
//!   executor counts and reports its real peak).
//!
//! A workload is `passes` multiplies of the same weight (micro-batches of a batch): with a
//! buffer that holds the whole tensor, passes after the first are hits.
//!
//! **Overlap efficiency** is the share of the shorter stage that was hidden:
//! `(decode + compute - wall) / min(decode, compute)`, clamped to [0, 1], where `decode`
//! is the decode workers' busy time divided by their number and `compute` the multiply's.

use crate::report::median;
use crate::PipelineError;
use sparsewire_accel::buffer::{BufferStats, Policy, TileId};
use sparsewire_accel::mmu::{self, TileShape, TileWeights};
use sparsewire_accel::schedule::{self, Plan};
use sparsewire_metadata::{self as metadata, Dtype, Reconstruction};
use sparsewire_stream::{RawTile, Reader};
use std::collections::HashMap;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Which execution path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MmoPath {
    /// Fused where the tensor allows it, pipelined otherwise.
    Auto,
    Fused,
    Pipelined,
}

/// How to run a multiply.
#[derive(Debug, Clone)]
pub struct MmoOptions {
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
    pub path: MmoPath,
}

impl Default for MmoOptions {
    fn default() -> Self {
        MmoOptions {
            batch: 1,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            buffer_bytes: None,
            lookahead: 4,
            policy: Policy::Belady,
            passes: 1,
            path: MmoPath::Auto,
        }
    }
}

/// What a multiply did and how long it took.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MmoReport {
    pub tensor: String,
    pub rows: usize,
    pub cols: usize,
    pub batch: usize,
    pub passes: usize,
    pub path: MmoPath,
    pub threads: usize,
    pub tiles: usize,
    /// Wall time of the whole workload.
    pub seconds: f64,
    /// Stored bytes of the tensor's tiles (what crossed the link once).
    pub stored_bytes: u64,
    /// Dense bytes of the weight in its dtype, times passes, per second.
    pub weight_gbps: f64,
    /// Decode workers' busy time / their number (pipelined), seconds.
    pub decode_seconds: f64,
    /// The multiply's busy time, seconds.
    pub compute_seconds: f64,
    /// Time the multiply waited for a tile, seconds.
    pub stall_seconds: f64,
    /// Share of min(decode, compute) hidden by the overlap; `None` on the fused path.
    pub overlap_efficiency: Option<f64>,
    /// The scheduler's buffer counters; `peak_bytes` is the executor's measured peak.
    pub buffer: BufferStats,
    /// The lookahead the plan used (clamped to what the buffer holds).
    pub lookahead: usize,
}

/// A row block's output: first row, rows, and its `[batch, rows]` values.
type BlockOut = (usize, usize, Vec<f32>);

/// The tile's multiply shape inside the whole tensor.
pub(crate) fn tile_shape(
    rect: &sparsewire_formats::tiling::TileRect,
    n: usize,
    batch: usize,
) -> TileShape {
    TileShape {
        rows: rect.rows as usize,
        cols: rect.cols as usize,
        col0: rect.col as usize,
        n,
        batch,
    }
}

fn mmu_err(name: &str, k: usize) -> impl FnOnce(mmu::MmuError) -> PipelineError + '_ {
    move |e| PipelineError::Multiply {
        tensor: name.to_string(),
        tile: Some(k),
        reason: e.to_string(),
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

/// Whether tensor `t` was written by the fast profile (values stored raw) in a dtype the
/// fused kernels read, rebuilt by zero-fill. Its tiles are checked one by one as they are
/// read ([`Reader::raw_tile`]).
fn fusable<B: AsRef<[u8]>>(reader: &Reader<B>, t: usize) -> Result<bool, PipelineError> {
    let meta = &reader.header().tensors[t];
    Ok(meta.reconstruction == Reconstruction::Zero
        && meta.codec == metadata::ValueCodec::Raw
        && matches!(meta.dtype, Dtype::BF16 | Dtype::F32))
}

/// Memory the reconstruction buffer keeps between multiplies: rebuilt-tile allocations
/// are reused instead of being returned to the system and faulted in again (on this
/// machine a fresh 1 MB of tiles cost about 0.5 ms of page faults per multiply).
#[derive(Debug, Default)]
pub struct Workspace {
    pool: Vec<Vec<f32>>,
}

/// `y = W x` for tensor `t` of `reader` (its 2-D view, `rows x cols`): `x` is
/// `batch x cols` row-major, `y` comes back `batch x rows`. A one-off: see
/// [`matmul_in`] to keep the buffer's memory between multiplies.
pub fn matmul<B: AsRef<[u8]> + Sync>(
    reader: &Reader<B>,
    t: usize,
    x: &[f32],
    opts: &MmoOptions,
) -> Result<(Vec<f32>, MmoReport), PipelineError> {
    matmul_in(reader, t, x, opts, &mut Workspace::default())
}

/// [`matmul`] with the reconstruction buffer's memory taken from and returned to `ws`.
pub fn matmul_in<B: AsRef<[u8]> + Sync>(
    reader: &Reader<B>,
    t: usize,
    x: &[f32],
    opts: &MmoOptions,
    ws: &mut Workspace,
) -> Result<(Vec<f32>, MmoReport), PipelineError> {
    let meta = reader.header().tensors.get(t).ok_or_else(|| {
        sparsewire_stream::StreamError::NoSuchTensor {
            name: format!("#{t}"),
        }
    })?;
    let name = meta.name.clone();
    let numel = meta.numel().map_err(sparsewire_stream::StreamError::from)?;
    let (rows, cols) = metadata::view_2d(&meta.shape, numel);
    let (rows, cols) = (rows as usize, cols as usize);
    let bad = |reason: String| PipelineError::Multiply {
        tensor: name.clone(),
        tile: None,
        reason,
    };
    if !matches!(meta.dtype, Dtype::BF16 | Dtype::F16 | Dtype::F32) {
        return Err(bad(format!("{} is not a float tensor", meta.dtype)));
    }
    if opts.batch == 0 || opts.passes == 0 {
        return Err(bad("batch and passes must be at least 1".into()));
    }
    if x.len() != opts.batch * cols {
        return Err(bad(format!(
            "the input holds {} values; batch {} x {} columns needs {}",
            x.len(),
            opts.batch,
            cols,
            opts.batch * cols
        )));
    }
    if let Reconstruction::Channels { .. } = meta.reconstruction {
        return Err(bad(
            "channel reconstruction reads other tiles' rows; decompress the tensor instead".into(),
        ));
    }
    let path = match opts.path {
        MmoPath::Auto if fusable(reader, t)? => MmoPath::Fused,
        MmoPath::Auto => MmoPath::Pipelined,
        MmoPath::Fused if !fusable(reader, t)? => {
            return Err(bad(
                "the fused path needs fast-profile tiles (compress --profile fast), bf16 or f32, rebuilt by zero-fill".into(),
            ))
        }
        p => p,
    };
    let stored_bytes: u64 = meta.tiles.iter().map(|e| e.len).sum();
    let threads = opts.threads.max(1);
    let _span = tracing::info_span!("matmul", tensor = %name, ?path, batch = opts.batch).entered();
    let (y, mut report) = match path {
        MmoPath::Fused => fused(reader, t, x, rows, cols, opts, threads)?,
        _ => pipelined(reader, t, x, rows, cols, opts, threads, ws)?,
    };
    report.tensor = name;
    report.stored_bytes = stored_bytes;
    report.weight_gbps =
        (numel * meta.dtype.bits() / 8) as f64 * opts.passes as f64 / report.seconds / 1e9;
    Ok((y, report))
}

fn empty_report(
    rows: usize,
    cols: usize,
    opts: &MmoOptions,
    path: MmoPath,
    threads: usize,
) -> MmoReport {
    MmoReport {
        tensor: String::new(),
        rows,
        cols,
        batch: opts.batch,
        passes: opts.passes,
        path,
        threads,
        tiles: 0,
        seconds: 0.0,
        stored_bytes: 0,
        weight_gbps: 0.0,
        decode_seconds: 0.0,
        compute_seconds: 0.0,
        stall_seconds: 0.0,
        overlap_efficiency: None,
        buffer: BufferStats::default(),
        lookahead: 0,
    }
}

fn fused<B: AsRef<[u8]> + Sync>(
    reader: &Reader<B>,
    t: usize,
    x: &[f32],
    rows: usize,
    cols: usize,
    opts: &MmoOptions,
    threads: usize,
) -> Result<(Vec<f32>, MmoReport), PipelineError> {
    let meta = &reader.header().tensors[t];
    let grid = reader.grid(t);
    let ntiles = meta.tiles.len();
    // Tiles by row block: a worker owns a block's rows, so outputs never collide.
    let mut blocks: Vec<Vec<usize>> = Vec::new();
    let mut last_row = u64::MAX;
    for k in 0..ntiles {
        let r = grid.rect(k as u64);
        if r.row != last_row {
            blocks.push(Vec::new());
            last_row = r.row;
        }
        blocks.last_mut().expect("pushed").push(k);
    }
    let batch = opts.batch;
    let start = Instant::now();
    let mut y = vec![0f32; batch * rows];
    for _ in 0..opts.passes {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Result<Vec<BlockOut>, PipelineError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads.min(blocks.len()).max(1))
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        let mut scratch = Vec::new();
                        loop {
                            let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(tiles) = blocks.get(b) else { break };
                            let r0 = grid.rect(tiles[0] as u64);
                            let mut acc = vec![0f32; batch * r0.rows as usize];
                            for &k in tiles {
                                let rect = grid.rect(k as u64);
                                let w = match reader.raw_tile(t, k)? {
                                    Some(RawTile::Dense(v)) => TileWeights::Dense(v),
                                    Some(RawTile::Sparse { bits, values }) => {
                                        TileWeights::Sparse { bits, values }
                                    }
                                    None => {
                                        return Err(PipelineError::Multiply {
                                            tensor: meta.name.clone(),
                                            tile: Some(k),
                                            reason: "not a fast-profile tile in a raw tensor"
                                                .into(),
                                        })
                                    }
                                };
                                let s = tile_shape(&rect, cols, batch);
                                mmu::tile_mmo(w, meta.dtype, s, x, &mut acc, &mut scratch)
                                    .map_err(mmu_err(&meta.name, k))?;
                            }
                            out.push((r0.row as usize, r0.rows as usize, acc));
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("worker panicked"))
                .collect()
        });
        y.fill(0.0);
        for r in results {
            for (row0, n, acc) in r? {
                scatter(&mut y, &acc, row0, n, rows);
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut report = empty_report(rows, cols, opts, MmoPath::Fused, threads);
    report.tiles = ntiles;
    report.seconds = seconds;
    report.compute_seconds = seconds;
    Ok((y, report))
}

/// Decodes tile `k` of tensor `t` and rebuilds it to f32 with the stored method.
pub(crate) fn rebuild_tile<B: AsRef<[u8]>>(
    reader: &Reader<B>,
    t: usize,
    k: usize,
    out: &mut Vec<f32>,
) -> Result<(), PipelineError> {
    let meta = &reader.header().tensors[t];
    let rect = reader.grid(t).rect(k as u64);
    let (r, c) = (rect.rows as usize, rect.cols as usize);
    out.resize(r * c, 0.0);
    let expand = |w, out: &mut Vec<f32>| {
        mmu::expand_tile(w, meta.dtype, r, c, out).map_err(mmu_err(&meta.name, k))
    };
    // Zero-filled f32 tile, and its mask where the tile is sparse and the method needs it.
    let rebuilds = meta.reconstruction != Reconstruction::Zero;
    let mask = match reader.raw_tile(t, k)? {
        Some(RawTile::Dense(v)) => {
            expand(TileWeights::Dense(v), out)?;
            None
        }
        Some(RawTile::Sparse { bits, values }) => {
            expand(TileWeights::Sparse { bits, values }, out)?;
            if rebuilds {
                reader.tile_mask(t, k)?
            } else {
                None
            }
        }
        // Entropy-coded: decode mask and kept values and expand them with the MMU's
        // kernel (no zero-filled copy in the tensor's dtype first).
        None => match reader.tile_sparse_parts(t, k)? {
            Some((mask, kept)) => {
                let bits = mask.as_bytes();
                expand(
                    TileWeights::Sparse {
                        bits,
                        values: &kept,
                    },
                    out,
                )?;
                Some(mask)
            }
            None => {
                expand(TileWeights::Dense(&reader.decode_tile(t, k)?), out)?;
                None
            }
        },
    };
    match mask {
        Some(mask) if rebuilds => rebuild_with(meta, k, c, rect.col as usize, &mask, out),
        _ => Ok(()),
    }
}

/// Applies the tensor's stored reconstruction to one zero-filled tile of `cols` columns
/// starting at column `col0`.
fn rebuild_with(
    meta: &metadata::TensorMeta,
    k: usize,
    cols: usize,
    col0: usize,
    mask: &sparsewire_masks::Mask,
    out: &mut [f32],
) -> Result<(), PipelineError> {
    let keep: Vec<bool> = (0..mask.len()).map(|i| mask.is_kept(i)).collect();
    sparsewire_re::rebuild_at(out, &keep, cols, col0, &meta.reconstruction).map_err(|e| {
        PipelineError::Reconstruct {
            tensor: meta.name.clone(),
            reason: format!("tile {k}: {e}"),
        }
    })
}

/// State shared by the decode workers and the multiply, under one lock.
struct Store {
    next_step: usize,
    /// Rebuilt tiles, by the plan step that rebuilt them.
    tiles: HashMap<usize, Arc<Vec<f32>>>,
    /// Evicted tiles' memory, reused by the next rebuilds (no fresh pages per tile).
    pool: Vec<Vec<f32>>,
    used: u64,
    peak: u64,
    failed: Option<PipelineError>,
}

/// Progress flags read without the lock: waits spin briefly on them before sleeping, so a
/// hand-off between cores costs no system call when the other side is about to deliver.
struct Progress {
    /// Trace positions the multiply has finished.
    consumed: AtomicUsize,
    /// Per plan step: its tile is in the store.
    ready: Vec<AtomicBool>,
    aborted: AtomicBool,
    /// Decode workers asleep on their gate.
    sleepers: AtomicUsize,
    /// The plan step the multiply sleeps on (`usize::MAX`: none).
    awaited: AtomicUsize,
}

/// How long a wait spins (`pause` in a loop) before it sleeps. Short: on this machine's
/// virtual CPUs a thread that spins or naps slows the decoder beside it (measured: up to
/// 7x slower decoding), while one that sleeps until woken does not.
const SPIN: Duration = Duration::from_micros(20);

impl Progress {
    /// A decode worker waits for its gate: spins for [`SPIN`], then sleeps until the
    /// multiply's [`Progress::wake`].
    fn wait(&self, store: &Mutex<Store>, cv: &Condvar, done: impl Fn() -> bool) {
        if self.spin(&done) {
            return;
        }
        let mut g = store.lock().expect("no panics under the lock");
        self.sleepers.fetch_add(1, SeqCst);
        while !done() && !self.aborted.load(SeqCst) {
            g = cv.wait(g).expect("no panics under the lock");
        }
        self.sleepers.fetch_sub(1, SeqCst);
    }

    fn spin(&self, done: &impl Fn() -> bool) -> bool {
        let t0 = Instant::now();
        loop {
            for _ in 0..64 {
                if done() || self.aborted.load(SeqCst) {
                    return true;
                }
                std::hint::spin_loop();
            }
            if t0.elapsed() >= SPIN {
                return false;
            }
        }
    }

    /// The multiply waits for plan step `step`: spins for [`SPIN`], then sleeps until the
    /// worker that finishes that step wakes it ([`Progress::rebuilt`]). The multiply asks
    /// for a step a few tiles ahead of the one it needs, so it is woken once per few tiles:
    /// each wake-up that interrupts another virtual CPU cost the waking decoder about
    /// 10 us here.
    fn wait_step(&self, store: &Mutex<Store>, cv: &Condvar, step: usize) {
        let done = || self.ready[step].load(SeqCst);
        if self.spin(&done) {
            return;
        }
        let mut g = store.lock().expect("no panics under the lock");
        self.awaited.store(step, SeqCst);
        while !done() && !self.aborted.load(SeqCst) {
            g = cv.wait(g).expect("no panics under the lock");
        }
        self.awaited.store(usize::MAX, SeqCst);
    }

    /// A worker finished step `i`: wakes the multiply if it sleeps on that step.
    fn rebuilt(&self, store: &Mutex<Store>, cv: &Condvar, i: usize) {
        self.ready[i].store(true, SeqCst);
        if self.awaited.load(SeqCst) == i {
            let _g = store.lock().expect("no panics under the lock");
            cv.notify_all();
        }
    }

    /// Wakes sleepers after a flag changed (the flag is stored before this is called).
    fn wake(&self, store: &Mutex<Store>, cv: &Condvar) {
        if self.sleepers.load(SeqCst) > 0 {
            let _g = store.lock().expect("no panics under the lock");
            cv.notify_all();
        }
    }
}

/// The trace and plan of a pipelined workload over tensor `t`.
pub fn plan_for<B: AsRef<[u8]>>(
    reader: &Reader<B>,
    t: usize,
    opts: &MmoOptions,
) -> Result<Plan, PipelineError> {
    let grid = reader.grid(t);
    let sizes: Vec<u64> = (0..grid.len()).map(|k| grid.rect(k).numel() * 4).collect();
    let trace = schedule::sweep(t as u32, &sizes, opts.passes);
    let capacity = opts
        .buffer_bytes
        .unwrap_or_else(|| sizes.iter().sum::<u64>().max(1));
    schedule::plan(&trace, capacity, opts.policy, opts.lookahead).map_err(|e| {
        PipelineError::Multiply {
            tensor: reader.header().tensors[t].name.clone(),
            tile: None,
            reason: e.to_string(),
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn pipelined<B: AsRef<[u8]> + Sync>(
    reader: &Reader<B>,
    t: usize,
    x: &[f32],
    rows: usize,
    cols: usize,
    opts: &MmoOptions,
    threads: usize,
    ws: &mut Workspace,
) -> Result<(Vec<f32>, MmoReport), PipelineError> {
    let meta = &reader.header().tensors[t];
    let grid = reader.grid(t);
    let plan = plan_for(reader, t, opts)?;
    let workers = threads.saturating_sub(1).max(1);
    let store = Mutex::new(Store {
        next_step: 0,
        tiles: HashMap::new(),
        pool: std::mem::take(&mut ws.pool),
        used: 0,
        peak: 0,
        failed: None,
    });
    let progress = Progress {
        consumed: AtomicUsize::new(0),
        ready: plan.steps.iter().map(|_| AtomicBool::new(false)).collect(),
        aborted: AtomicBool::new(false),
        sleepers: AtomicUsize::new(0),
        awaited: AtomicUsize::new(usize::MAX),
    };
    // The step that rebuilt the tile each tile id names when it is evicted.
    let mut resident_step: HashMap<TileId, Vec<usize>> = HashMap::new();
    let evict_steps: Vec<Vec<usize>> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let v = st
                .evict
                .iter()
                .map(|e| {
                    let q = resident_step.get_mut(e).expect("evicting a resident tile");
                    q.remove(0)
                })
                .collect();
            resident_step.entry(st.tile).or_default().push(i);
            v
        })
        .collect();
    let cv = Condvar::new();
    let batch = opts.batch;
    let fail = |e: PipelineError| {
        let mut g = store.lock().expect("no panics under the lock");
        g.failed.get_or_insert(e);
        progress.aborted.store(true, SeqCst);
        cv.notify_all();
    };
    let start = Instant::now();
    let mut y = vec![0f32; batch * rows];
    let mut compute = Duration::ZERO;
    let mut stall = Duration::ZERO;
    let decode_busy: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut busy = Duration::ZERO;
                    loop {
                        let i = {
                            let mut g = store.lock().expect("no panics under the lock");
                            let i = g.next_step;
                            if i >= plan.steps.len() {
                                break;
                            }
                            g.next_step += 1;
                            i
                        };
                        let step = &plan.steps[i];
                        progress.wait(&store, &cv, || progress.consumed.load(SeqCst) >= step.gate);
                        if progress.aborted.load(SeqCst) {
                            break;
                        }
                        // Evict, then rebuild into evicted (or kept-over) memory.
                        let mut tile = {
                            let mut g = store.lock().expect("no panics under the lock");
                            for &e in &evict_steps[i] {
                                if let Some(v) = g.tiles.remove(&e) {
                                    g.used -= v.len() as u64 * 4;
                                    if let Ok(v) = Arc::try_unwrap(v) {
                                        g.pool.push(v);
                                    }
                                }
                            }
                            g.pool.pop().unwrap_or_default()
                        };
                        let t0 = Instant::now();
                        let res = rebuild_tile(reader, t, step.tile.tile as usize, &mut tile);
                        busy += t0.elapsed();
                        match res {
                            Ok(()) => {
                                let mut g = store.lock().expect("no panics under the lock");
                                g.used += tile.len() as u64 * 4;
                                g.peak = g.peak.max(g.used);
                                g.tiles.insert(i, Arc::new(tile));
                                drop(g);
                                progress.rebuilt(&store, &cv, i);
                            }
                            Err(e) => {
                                fail(e);
                                break;
                            }
                        }
                    }
                    busy
                })
            })
            .collect();

        // The multiply, in trace order.
        let mut scratch = Vec::new();
        let mut block = Vec::new();
        let tiles_per_pass = (grid.len() as usize).max(1);
        for (pos, &(id, _)) in plan.trace.iter().enumerate() {
            if pos % tiles_per_pass == 0 {
                y.fill(0.0);
            }
            let i = plan.source[pos];
            let t0 = Instant::now();
            while !progress.ready[i].load(SeqCst) && !progress.aborted.load(SeqCst) {
                // Not ready: sleep until a few tiles more are (the lookahead lets the
                // decoders get that far), then this one.
                let ahead = plan.source[(pos + plan.lookahead / 2).min(plan.trace.len() - 1)];
                progress.wait_step(&store, &cv, ahead.max(i));
                progress.wait_step(&store, &cv, i);
            }
            stall += t0.elapsed();
            if progress.aborted.load(SeqCst) {
                break;
            }
            let tile = store.lock().expect("no panics under the lock").tiles[&i].clone();
            let t1 = Instant::now();
            let rect = grid.rect(id.tile as u64);
            let sh = tile_shape(&rect, cols, batch);
            block.clear();
            block.resize(batch * sh.rows, 0.0);
            let res = mmu::tile_mmo(
                TileWeights::Rebuilt(&tile),
                meta.dtype,
                sh,
                x,
                &mut block,
                &mut scratch,
            );
            compute += t1.elapsed();
            drop(tile);
            if let Err(e) = res {
                fail(mmu_err(&meta.name, id.tile as usize)(e));
                break;
            }
            scatter(&mut y, &block, rect.row as usize, sh.rows, rows);
            progress.consumed.store(pos + 1, SeqCst);
            progress.wake(&store, &cv);
        }
        if progress.consumed.load(SeqCst) < plan.trace.len() {
            // Release workers still waiting on a gate (after an error).
            progress.aborted.store(true, SeqCst);
            let _g = store.lock().expect("no panics under the lock");
            cv.notify_all();
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("decode worker panicked"))
            .collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let mut g = store.into_inner().expect("no panics under the lock");
    // Hand the buffer's memory back for the next multiply.
    ws.pool = std::mem::take(&mut g.pool);
    ws.pool
        .extend(g.tiles.drain().filter_map(|(_, v)| Arc::try_unwrap(v).ok()));
    if let Some(e) = g.failed {
        return Err(e);
    }
    let decode = decode_busy.iter().map(Duration::as_secs_f64).sum::<f64>() / workers as f64;
    let compute = compute.as_secs_f64();
    let shorter = decode.min(compute);
    let overlap = if shorter > 0.0 {
        ((decode + compute - seconds) / shorter).clamp(0.0, 1.0)
    } else {
        1.0
    };
    let mut report = empty_report(rows, cols, opts, MmoPath::Pipelined, threads);
    report.tiles = grid.len() as usize;
    report.seconds = seconds;
    report.decode_seconds = decode;
    report.compute_seconds = compute;
    report.stall_seconds = stall.as_secs_f64();
    report.overlap_efficiency = Some(overlap);
    report.buffer = BufferStats {
        peak_bytes: g.peak,
        ..plan.stats
    };
    report.lookahead = plan.lookahead;
    Ok((y, report))
}

/// The scalar reference of [`matmul`]: the tensor decoded and rebuilt as a whole (as
/// `crate::decompress` does, kept in f32), then multiplied element by element in f64.
pub fn reference<B: AsRef<[u8]> + Sync>(
    reader: &Reader<B>,
    t: usize,
    x: &[f32],
    batch: usize,
) -> Result<Vec<f32>, PipelineError> {
    let tensor = reader.decode_tensor(t)?;
    let mut w = tensor.to_f32_vec().expect("float tensor");
    crate::rebuild_values(reader, t, &mut w)?;
    let numel = w.len();
    let (rows, cols) = metadata::view_2d(&tensor.shape, numel as u64);
    let (rows, cols) = (rows as usize, cols as usize);
    let mut y = vec![0f32; batch * rows];
    for b in 0..batch {
        for r in 0..rows {
            let acc: f64 = (0..cols)
                .map(|c| w[r * cols + c] as f64 * x[b * cols + c] as f64)
                .sum();
            y[b * rows + r] = acc as f32;
        }
    }
    Ok(y)
}

/// A deterministic input: `batch x cols` values in [-1, 1].
pub fn default_input(batch: usize, cols: usize) -> Vec<f32> {
    (0..batch * cols)
        .map(|i| ((i as f32) * 0.618_034 + 0.5).sin())
        .collect()
}

/// The dense baselines on the uncompressed weight, and the result they agree on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DenseBaseline {
    /// The weight's dtype as stored.
    pub dtype: String,
    /// Median seconds of the dtype-native kernel (batch 1: reads the stored bf16/f32
    /// bytes with the same AVX-512 code as the fused path; `None` for batch > 1).
    pub native_seconds: Option<f64>,
    /// Median seconds of faer's f32 GEMV/GEMM on the weight converted to f32 beforehand.
    pub faer_f32_seconds: f64,
}

/// A timed multiply with its baselines: what `sparsewire matmul` prints.
#[derive(Debug, Clone, serde::Serialize)]
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
    pub report: MmoReport,
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

/// Runs [`matmul`] `runs` times, interleaved with the dense baselines on `dense` (the
/// uncompressed tensor) when given, and reports medians. With `cold`, every timed run
/// (compressed and dense alike) starts after writing [`COLD_FLUSH_BYTES`], so weights come
/// from DRAM, as for a model larger than the cache, not from a warm last-level cache.
pub fn bench_matmul<B: AsRef<[u8]> + Sync>(
    reader: &Reader<B>,
    t: usize,
    x: &[f32],
    opts: &MmoOptions,
    dense: Option<&sparsewire_formats::Tensor>,
    runs: usize,
    cold: bool,
) -> Result<MatmulBench, PipelineError> {
    let mut flush_buf = if cold {
        vec![0u8; COLD_FLUSH_BYTES]
    } else {
        Vec::new()
    };
    let mut flush = || {
        for (i, chunk) in flush_buf.chunks_mut(64).enumerate() {
            chunk[0] = i as u8;
        }
        std::hint::black_box(&flush_buf);
    };
    let runs = runs.max(1);
    let meta = &reader.header().tensors[t];
    let numel = meta.numel().map_err(sparsewire_stream::StreamError::from)?;
    let (rows, cols) = metadata::view_2d(&meta.shape, numel);
    let (rows, cols) = (rows as usize, cols as usize);
    let dense = match dense {
        Some(d) => {
            if d.numel() != numel {
                return Err(PipelineError::Multiply {
                    tensor: meta.name.clone(),
                    tile: None,
                    reason: format!(
                        "the dense tensor has shape {:?}, the stream's has {:?}",
                        d.shape, meta.shape
                    ),
                });
            }
            let w32 = d.to_f32_vec().ok_or_else(|| PipelineError::Multiply {
                tensor: meta.name.clone(),
                tile: None,
                reason: format!("the dense tensor is {}, not a float", d.dtype),
            })?;
            Some((d, w32))
        }
        None => None,
    };
    let reference = reference(reader, t, x, opts.batch)?;
    let mut ws = Workspace::default();
    let (mut secs, mut native, mut faer_s) = (vec![], vec![], vec![]);
    let mut reports = Vec::new();
    let mut y = Vec::new();
    let mut y_dense = Vec::new();
    for _ in 0..runs {
        flush();
        let (yy, rep) = matmul_in(reader, t, x, opts, &mut ws)?;
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
        dtype: d.dtype.to_string(),
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
