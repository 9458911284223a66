//! The pipelined path: decode workers follow the plan into the reconstruction buffer while
//! the calling thread multiplies in trace order.
//!
//! Hand-offs were the hard part on a 2-vCPU VM. A waiting multiply that spins (or naps on
//! a timer) slowed the decoder on the other vCPU by up to 7x; one that sleeps must be
//! woken, and each wake-up cost the waking decoder about 10 us. So waits spin for
//! [`SPIN`] only, the multiply sleeps on a plan step half the lookahead ahead of the one
//! it needs, and only the worker that finishes that step wakes it: one wake-up per few
//! tiles, and the decoder is never gated by a sleeping multiply.
//!
//! Better than waiting well is not waiting: when the tile the multiply needs is not ready,
//! the multiply takes the next plan step whose gate it has already passed and rebuilds it
//! itself, as a worker would (the same code, `do_step`). Where decoding is the slower stage
//! both cores then decode, and a single GEMV from the small profile took 7.2-7.5 ms
//! instead of 13.0-14.6 (docs/ARCHITECTURE.md, "Pipelined path"). A step whose gate is
//! still ahead is never taken by the multiply: it would wait on itself.

use super::{
    empty_report, plan_for, rebuild_for, scatter, tile_shape, ExecError, Options, Path, Report,
    Target, Workspace,
};
use crate::buffer::{BufferStats, Policy, ReconstructionBuffer};
use crate::mmu::{self, Weights};
use sparsewire_stream::Reader;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// State shared by the decode workers and the multiply, under one lock.
struct Store {
    next_step: usize,
    /// The reconstruction buffer, holding the rebuilt tiles.
    buffer: ReconstructionBuffer<Arc<Vec<f32>>>,
    /// Evicted tiles' memory, reused by the next rebuilds (no fresh pages per tile).
    pool: Vec<Vec<f32>>,
    failed: Option<ExecError>,
}

/// Progress flags read without the lock: waits spin briefly on them before sleeping, so a
/// hand-off between cores costs no system call when the other side is about to deliver.
struct Progress {
    /// Trace positions the multiply has finished.
    consumed: AtomicUsize,
    /// Per plan step: its tile is in the buffer.
    ready: Vec<AtomicBool>,
    aborted: AtomicBool,
    /// Decode workers asleep on their gate.
    sleepers: AtomicUsize,
    /// The plan step the multiply sleeps on (`usize::MAX`: none).
    awaited: AtomicUsize,
}

/// How long a wait spins (`pause` in a loop) before it sleeps (see the module docs).
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
    /// worker that finishes that step wakes it ([`Progress::rebuilt`]).
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

pub(super) fn run<B: AsRef<[u8]> + Send + Sync>(
    reader: &Reader<B>,
    target: &Target,
    x: &[f32],
    opts: &Options,
    threads: usize,
    ws: &mut Workspace,
) -> Result<(Vec<f32>, Report), ExecError> {
    let grid = reader.grid(target.t);
    let plan = plan_for(reader, target.t, opts)?;
    // One thread: no worker, the multiply rebuilds every tile itself just before it needs
    // it (the serial baseline the overlap is measured against).
    let workers = threads.saturating_sub(1);
    // The plan made every eviction decision: the buffer only holds and counts.
    let store = Mutex::new(Store {
        next_step: 0,
        buffer: ReconstructionBuffer::new(plan.stats.capacity_bytes, Policy::Lru, &[]),
        pool: std::mem::take(&mut ws.pool),
        failed: None,
    });
    let progress = Progress {
        consumed: AtomicUsize::new(0),
        ready: plan.steps.iter().map(|_| AtomicBool::new(false)).collect(),
        aborted: AtomicBool::new(false),
        sleepers: AtomicUsize::new(0),
        awaited: AtomicUsize::new(usize::MAX),
    };
    let cv = Condvar::new();
    let (batch, rows, cols) = (opts.batch, target.rows, target.cols);
    let fail = |e: ExecError| {
        let mut g = store.lock().expect("no panics under the lock");
        g.failed.get_or_insert(e);
        progress.aborted.store(true, SeqCst);
        cv.notify_all();
    };
    let start = Instant::now();
    let mut y = vec![0f32; batch * rows];
    let mut compute = Duration::ZERO;
    let mut stall = Duration::ZERO;
    // Rebuilds plan step `i` into the buffer on the calling thread (a decode worker, or
    // the multiply while it would otherwise wait): evicts what the step evicts, rebuilds
    // into evicted (or kept-over) memory, marks the step ready. Returns the time spent
    // rebuilding, or `None` after an error (recorded by `fail`).
    let do_step = |i: usize| -> Option<Duration> {
        let step = &plan.steps[i];
        // The gate guarantees the tiles evicted here were inserted and are no longer read
        // (docs/ARCHITECTURE.md, "Scheduler").
        let mut tile = {
            let mut g = store.lock().expect("no panics under the lock");
            for &e in &step.evict {
                if let Some(v) = g.buffer.evict(e) {
                    if let Ok(v) = Arc::try_unwrap(v) {
                        g.pool.push(v);
                    }
                }
            }
            g.pool.pop().unwrap_or_default()
        };
        let t0 = Instant::now();
        let res = rebuild_for(reader, target, step.tile.tile as usize, &mut tile);
        let busy = t0.elapsed();
        match res {
            Ok(()) => {
                let mut g = store.lock().expect("no panics under the lock");
                let bytes = tile.len() as u64 * 4;
                g.buffer.insert(step.tile, bytes, Arc::new(tile));
                drop(g);
                progress.rebuilt(&store, &cv, i);
                Some(busy)
            }
            Err(e) => {
                fail(e);
                None
            }
        }
    };
    // The next plan step, taken if its gate is at most `open` (a worker takes any and
    // waits for its gate; the multiply only one whose gate it has passed, so it never
    // waits on itself).
    let take_step = |open: usize| -> Option<usize> {
        let mut g = store.lock().expect("no panics under the lock");
        let i = g.next_step;
        (i < plan.steps.len() && plan.steps[i].gate <= open).then(|| {
            g.next_step += 1;
            i
        })
    };
    let mut help_busy = Duration::ZERO;
    let mut helped_tiles = 0u64;
    let decode_busy: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut busy = Duration::ZERO;
                    while let Some(i) = take_step(usize::MAX) {
                        let step = &plan.steps[i];
                        progress.wait(&store, &cv, || progress.consumed.load(SeqCst) >= step.gate);
                        if progress.aborted.load(SeqCst) {
                            break;
                        }
                        match do_step(i) {
                            Some(b) => busy += b,
                            None => break,
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
            let mut helped = Duration::ZERO;
            while !progress.ready[i].load(SeqCst) && !progress.aborted.load(SeqCst) {
                // Not ready: rebuild the next open step here rather than wait (on two
                // cores the multiply is idle most of the time when decoding is slower)...
                if let Some(j) = take_step(pos) {
                    match do_step(j) {
                        Some(b) => helped += b,
                        None => break,
                    }
                    helped_tiles += 1;
                    continue;
                }
                // ...or, with none open, sleep until a few tiles more are ready (the
                // lookahead lets the decoders get that far), then this one. Without a
                // worker a step is always open (its gate is at or before `pos`).
                if workers == 0 {
                    fail(ExecError::Schedule {
                        tensor: target.name.to_string(),
                        source: crate::schedule::ScheduleError::Stuck { position: pos },
                    });
                    break;
                }
                let ahead = plan.source[(pos + plan.lookahead / 2).min(plan.trace.len() - 1)];
                progress.wait_step(&store, &cv, ahead.max(i));
                progress.wait_step(&store, &cv, i);
            }
            help_busy += helped;
            stall += t0.elapsed().saturating_sub(helped);
            if progress.aborted.load(SeqCst) {
                break;
            }
            let tile = store
                .lock()
                .expect("no panics under the lock")
                .buffer
                .get(id)
                .expect("a ready step's tile is resident")
                .clone();
            let t1 = Instant::now();
            let rect = grid.rect(id.tile as u64);
            let sh = tile_shape(&rect, cols, batch);
            block.clear();
            block.resize(batch * sh.rows, 0.0);
            let res = mmu::tile_mmo(Weights::Rebuilt(&tile), sh, x, &mut block, &mut scratch);
            compute += t1.elapsed();
            drop(tile);
            if let Err(e) = res {
                fail(target.mmu_err(id.tile as usize)(e));
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
    let peak = g.buffer.stats().peak_bytes;
    // Hand the buffer's memory back for the next multiply.
    ws.pool = std::mem::take(&mut g.pool);
    let held: Vec<_> = g.buffer.drain().collect();
    ws.pool
        .extend(held.into_iter().filter_map(|v| Arc::try_unwrap(v).ok()));
    if let Some(e) = g.failed {
        return Err(e);
    }
    // Decode time per decode worker, counting what the multiply rebuilt while it would
    // otherwise have waited.
    let decode = (decode_busy.iter().map(Duration::as_secs_f64).sum::<f64>()
        + help_busy.as_secs_f64())
        / workers.max(1) as f64;
    let compute = compute.as_secs_f64();
    let shorter = decode.min(compute);
    let overlap = if shorter > 0.0 {
        ((decode + compute - seconds) / shorter).clamp(0.0, 1.0)
    } else {
        1.0
    };
    let mut report = empty_report(target, opts, Path::Pipelined, threads);
    report.tiles = grid.len() as usize;
    report.seconds = seconds;
    report.decode_seconds = decode;
    report.multiply_rebuilds = helped_tiles;
    report.compute_seconds = compute;
    report.stall_seconds = stall.as_secs_f64();
    report.overlap_efficiency = Some(overlap);
    report.buffer = BufferStats {
        peak_bytes: peak,
        ..plan.stats
    };
    report.lookahead = plan.lookahead;
    Ok((y, report))
}
