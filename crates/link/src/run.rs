//! The accelerator side's loop: passes of a schedule of multiplies, each tile fetched
//! ahead of use over the link, rebuilt and multiplied through `accel`'s executor.
//!
//! A pass walks the schedule (a list of weight tensors, a model's forward order) tile by
//! tile. Up to `window` tiles are requested ahead, in the order the multiply will need
//! them, so the current multiply's tiles are always first in line; each request's level
//! comes from the policy (lossless, a fixed level, or the [`Controller`] against the
//! pass's deadline). A tile that arrives is decoded from its stream (checksums checked
//! again there) and multiplied into the layer's output; one that fails is requested again
//! after a reconnect, a bounded number of times, and a corrupt tile is never multiplied.
//! With `--period`, pass `p` is due `period` after it starts at `p * period`; the loop
//! idles until a pass's start (not a stall). Without one, passes run back to back and
//! adaptive aims each pass at the time that keeps waiting within the stall budget. Quality: each layer's output against the
//! dense weights' (`reference`), as cosine, and the manifest's relative error of the
//! levels used.

use crate::client::Client;
use crate::controller::{Controller, Meter, Pass, Spend};
use crate::frame::TileRequest;
use crate::LinkError;
use serde::Serialize;
use sparsewire_accel::exec;
use sparsewire_accel::mmu::{self, TileShape, Weights};
use sparsewire_formats::TensorFile;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Which level each tile is requested at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    Lossless,
    /// A fixed sparsity (one of the host's levels).
    Fixed(f32),
    /// The controller, never sparser than `max` (default: the host's last level).
    Adaptive {
        max: Option<f32>,
    },
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Policy, String> {
        let num = |v: &str| {
            v.parse::<f32>()
                .ok()
                .filter(|x| (0.0..1.0).contains(x))
                .ok_or_else(|| format!("{v:?} is not a sparsity in [0, 1)"))
        };
        match s.split_once(':') {
            None if s == "lossless" => Ok(Policy::Lossless),
            None if s == "adaptive" => Ok(Policy::Adaptive { max: None }),
            Some(("fixed", v)) => Ok(Policy::Fixed(num(v)?)),
            Some(("adaptive", v)) => Ok(Policy::Adaptive { max: Some(num(v)?) }),
            _ => Err(format!(
                "policy {s:?}: expected lossless, fixed:S or adaptive[:MAX_SPARSITY]"
            )),
        }
    }
}

impl Policy {
    /// The fixed level, if the policy has one, and the sparsest level adaptive may use,
    /// as indices into the host's `ladder`.
    pub fn resolve(self, ladder: &[f32]) -> Result<(Option<usize>, usize), LinkError> {
        let level_of = |s: f32| -> Result<usize, LinkError> {
            ladder
                .iter()
                .position(|&l| (l - s).abs() < 1e-6)
                .ok_or_else(|| {
                    LinkError::Options(format!(
                        "sparsity {s} is not one of the host's levels {ladder:?}"
                    ))
                })
        };
        Ok(match self {
            Policy::Lossless => (Some(0), 0),
            Policy::Fixed(s) => (Some(level_of(s)?), 0),
            Policy::Adaptive { max } => (
                None,
                max.map(level_of).transpose()?.unwrap_or(ladder.len() - 1),
            ),
        })
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Policy::Lossless => write!(f, "lossless"),
            Policy::Fixed(s) => write!(f, "fixed:{s}"),
            Policy::Adaptive { max: None } => write!(f, "adaptive"),
            Policy::Adaptive { max: Some(m) } => write!(f, "adaptive:{m}"),
        }
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub policy: Policy,
    /// A pass is due every `period` (none: passes back to back).
    pub period: Option<Duration>,
    /// Stop after this many passes ...
    pub passes: Option<u32>,
    /// ... or this long, whichever comes first (neither: 10 passes).
    pub duration: Option<Duration>,
    /// Tensors to multiply, in order; empty: every float matrix the host serves.
    pub schedule: Vec<String>,
    /// Tiles requested ahead of the multiply.
    pub window: usize,
    /// Retries of one tile (each after a reconnect).
    pub retries: u32,
    /// The dense weights, to measure each layer's output against.
    pub reference: Option<TensorFile>,
    /// Without a period, the share of a pass adaptive may spend waiting for tiles.
    pub stall_budget: f64,
    /// How adaptive spends what a pass can afford over its tiles.
    pub spend: Spend,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            policy: Policy::Adaptive { max: None },
            period: None,
            passes: None,
            duration: None,
            schedule: vec![],
            window: 8,
            retries: 3,
            reference: None,
            stall_budget: 0.1,
            spend: Spend::Uniform,
        }
    }
}

/// One pass.
#[derive(Debug, Clone, Serialize)]
pub struct PassReport {
    pub pass: u32,
    /// Seconds from the run's start.
    pub start: f64,
    pub end: f64,
    pub deadline: Option<f64>,
    pub hit: Option<bool>,
    pub bytes: u64,
    /// Time waiting for tiles.
    pub stall_seconds: f64,
    /// Time decoding and multiplying arrived tiles.
    pub compute_seconds: f64,
    /// Mean sparsity of each layer's tiles.
    pub levels: Vec<f32>,
    /// Cosine of each layer's output to the dense weights' (with a reference).
    pub cosine: Option<Vec<f64>>,
    /// The controller's bandwidth estimate at the end, GB/s.
    pub bandwidth_gbps: Option<f64>,
    /// The level of every tile, in the pass's multiply order (layer by layer, tile by
    /// tile): what the pass's weights were, for measuring a model's quality after a run.
    #[serde(skip)]
    pub tile_levels: Vec<u8>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub policy: String,
    pub layers: Vec<String>,
    pub seconds: f64,
    pub passes: u32,
    pub period_ms: Option<f64>,
    pub deadline_hit_fraction: Option<f64>,
    pub stall_seconds: f64,
    /// Time waiting for tiles over the time the passes were running.
    pub stall_fraction: f64,
    pub bytes_sent: u64,
    /// The schedule's dense bytes times the passes.
    pub dense_bytes: u64,
    /// `[pass][layer]` mean sparsity.
    pub levels: Vec<Vec<f32>>,
    /// Mean over passes and layers of the output cosine (with a reference).
    pub mean_cosine: Option<f64>,
    /// Mean over tiles of the host's relative error for the level each was sent at.
    pub mean_rel_error: f64,
    pub retries: u32,
    pub reconnects: u32,
    pub pass_reports: Vec<PassReport>,
    /// The last pass's output of each layer (`W x` with the layer's input).
    #[serde(skip)]
    pub outputs: Vec<Vec<f32>>,
    /// Each layer's input (`accel::exec::default_input`).
    #[serde(skip)]
    pub inputs: Vec<Vec<f32>>,
}

struct Layer {
    tensor: usize,
    rows: usize,
    x: Vec<f32>,
    reference: Option<Vec<f32>>,
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 && bb == 0.0 {
        1.0
    } else if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

/// `y = W x` with W given dense as f32 (the reference).
fn dense_gemv(w: &[f32], rows: usize, cols: usize, x: &[f32]) -> Vec<f32> {
    (0..rows)
        .map(|r| {
            w[r * cols..(r + 1) * cols]
                .iter()
                .zip(x)
                .map(|(a, b)| a * b)
                .sum()
        })
        .collect()
}

/// `y = W x` for the one tensor of a tile's stream, through the executor's pieces: each
/// of its tiles decoded and rebuilt to f32 (`exec::rebuild_tile`, what a decode worker
/// does), then multiplied by the MMU kernel (`mmu::tile_mmo`). No threads are started: a
/// tile is small, and the client overlaps the link with the multiply by its window.
pub fn multiply(
    reader: &sparsewire_stream::Reader<&[u8]>,
    x: &[f32],
    (buf, scratch): &mut (Vec<f32>, Vec<f32>),
) -> Result<Vec<f32>, String> {
    let grid = reader.grid(0);
    let mut y = vec![0f32; grid.rows as usize];
    for k in 0..grid.len() {
        exec::rebuild_tile(reader, 0, k as usize, buf).map_err(|e| e.to_string())?;
        let rect = grid.rect(k);
        let s = TileShape {
            rows: rect.rows as usize,
            cols: rect.cols as usize,
            col0: rect.col as usize,
            n: grid.cols as usize,
            batch: 1,
        };
        let out = &mut y[rect.row as usize..(rect.row + rect.rows) as usize];
        mmu::tile_mmo(Weights::Rebuilt(buf), s, x, out, scratch).map_err(|e| e.to_string())?;
    }
    Ok(y)
}

/// Runs `opts` against the host `client` is connected to; `progress` sees each pass.
pub fn run(
    client: &mut Client,
    opts: &RunOptions,
    progress: &mut dyn FnMut(&PassReport),
) -> Result<RunReport, LinkError> {
    let m = client.manifest().clone();
    let ladder = &m.levels;
    let (fixed, floor) = opts.policy.resolve(ladder)?;
    if fixed.is_none() && !(0.0..1.0).contains(&opts.stall_budget) {
        return Err(LinkError::Options(format!(
            "stall budget {}: must be in [0, 1)",
            opts.stall_budget
        )));
    }
    if opts.window == 0 {
        return Err(LinkError::Options(
            "the window must be at least 1 tile".into(),
        ));
    }
    let names: Vec<String> = if opts.schedule.is_empty() {
        m.tensors
            .iter()
            .filter(|t| t.sparsifiable)
            .map(|t| t.name.clone())
            .collect()
    } else {
        opts.schedule.clone()
    };
    if names.is_empty() {
        return Err(LinkError::Options(
            "the schedule is empty (the host serves no float matrix)".into(),
        ));
    }
    let mut layers = Vec::with_capacity(names.len());
    for n in &names {
        let t = m
            .tensor_index(n)
            .ok_or_else(|| LinkError::Options(format!("the host serves no tensor {n:?}")))?;
        let info = &m.tensors[t];
        if !info.sparsifiable {
            return Err(LinkError::Options(format!(
                "{n:?} is not a float matrix to multiply"
            )));
        }
        let (rows, cols) = (info.rows as usize, info.cols as usize);
        let x = exec::default_input(1, cols);
        let reference = match &opts.reference {
            None => None,
            Some(f) => {
                let w = f.tensors.iter().find(|w| &w.name == n).ok_or_else(|| {
                    LinkError::Options(format!("the reference has no tensor {n:?}"))
                })?;
                let v = w
                    .to_f32_vec()
                    .filter(|v| v.len() == rows * cols)
                    .ok_or_else(|| {
                        LinkError::Options(format!(
                            "the reference's {n:?} is not a {rows}x{cols} float matrix"
                        ))
                    })?;
                Some(dense_gemv(&v, rows, cols, &x))
            }
        };
        layers.push(Layer {
            tensor: t,
            rows,
            x,
            reference,
        });
    }
    // The pass's tiles in multiply order: (layer, tile).
    let items: Vec<(usize, u32)> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, l)| (0..m.tensors[l.tensor].tiles).map(move |k| (i, k)))
        .collect();
    let size = |i: usize, level: usize| -> u64 {
        let (l, k) = items[i];
        m.tensors[layers[l].tensor].bytes[k as usize][level]
    };
    let dense_pass: u64 = layers
        .iter()
        .map(|l| m.tensors[l.tensor].dense_bytes())
        .sum();
    let max_passes = match (opts.passes, opts.duration) {
        (None, None) => Some(10),
        (p, _) => p,
    };
    let mut controller = Controller::new(floor);
    let mut bufs = (Vec::new(), Vec::new());
    let t0 = Instant::now();
    let secs = |t: Instant| t.duration_since(t0).as_secs_f64();
    let mut reports: Vec<PassReport> = Vec::new();
    let (mut retries, mut rel_sum, mut rel_n) = (0u32, 0f64, 0u64);
    let mut pass = 0u32;
    let mut outputs = Vec::new();
    let mut last_compute: Option<f64> = None;
    loop {
        if max_passes.is_some_and(|n| pass >= n) {
            break;
        }
        if opts.duration.is_some_and(|d| t0.elapsed() >= d) {
            break;
        }
        let (start, deadline) = match opts.period {
            Some(p) => {
                let due = t0 + p * pass;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                (Instant::now().max(due), Some(due + p))
            }
            None => (Instant::now(), None),
        };
        // What the controller aims at: the deadline, or without a period a pass that
        // waits at most the stall budget's share of its time (from the last pass's
        // decode-and-multiply time; the first pass has none to go by).
        let target = match (opts.period, last_compute) {
            (Some(_), _) => deadline,
            (None, Some(c)) => Some(start + Duration::from_secs_f64(c / (1.0 - opts.stall_budget))),
            (None, None) => None,
        };
        let mut ys: Vec<Vec<f32>> = layers.iter().map(|l| vec![0f32; l.rows]).collect();
        let mut level_sum = vec![0f64; layers.len()];
        let mut tile_levels = vec![0u8; items.len()];
        let mut in_flight: VecDeque<(usize, usize)> = VecDeque::new(); // (item, level)
        let mut in_flight_bytes = 0u64;
        let (mut next, mut done) = (0usize, 0usize);
        let (mut bytes, mut stall, mut compute) = (0u64, 0f64, 0f64);
        let mut tries: HashMap<usize, u32> = HashMap::new();
        let mut meter = Meter::new(secs(Instant::now()));
        let mut left = Pass::new(&m, layers.iter().map(|l| l.tensor));
        while done < items.len() {
            while next < items.len() && in_flight.len() < opts.window {
                let level = match (fixed, target) {
                    (Some(l), _) => l,
                    (None, Some(d)) => left.level(
                        &mut controller,
                        opts.spend,
                        items[next].0,
                        in_flight_bytes as f64,
                        d.saturating_duration_since(Instant::now()).as_secs_f64(),
                    ),
                    (None, None) => controller.current(),
                };
                let (l, k) = items[next];
                let req = TileRequest {
                    tensor: layers[l].tensor as u32,
                    tile: k,
                    level: level as u16,
                };
                left.take(l, &m.tensors[layers[l].tensor].bytes[k as usize]);
                in_flight.push_back((next, level));
                in_flight_bytes += size(next, level);
                next += 1;
                if let Err(e) = client.send(req) {
                    tracing::warn!("{e}; reconnecting");
                    retries += 1;
                    client.reconnect()?;
                }
            }
            let wait0 = Instant::now();
            let received = client.receive();
            let waited = wait0.elapsed().as_secs_f64();
            stall += waited;
            let compute0 = Instant::now();
            let got = received.and_then(|r| {
                let (i, level) = *in_flight.front().expect("a request in flight");
                let (l, k) = items[i];
                let layer = &layers[l];
                let info = &m.tensors[layer.tensor];
                let reader = sparsewire_stream::Reader::new(&r.payload[..])
                    .map_err(|e| LinkError::Corrupt(format!("{} tile {k}: {e}", info.name)))?;
                let rows = info.tile_rows(k);
                // The tile's rows of the 2-D view (a stored row block keeps the tensor's
                // rank, a coded tile is 2-D).
                let ok = reader.header().tensors.len() == 1
                    && reader.header().tensors[0].name == info.name
                    && reader.header().tensors[0].numel().is_ok_and(|n| {
                        sparsewire_metadata::view_2d(&reader.header().tensors[0].shape, n)
                            == (rows.end - rows.start, info.cols)
                    });
                if !ok {
                    return Err(LinkError::Corrupt(format!(
                        "{} tile {k}: the host sent another tile's stream",
                        info.name
                    )));
                }
                let y = multiply(&reader, &layer.x, &mut bufs)
                    .map_err(|e| LinkError::Corrupt(format!("{} tile {k}: {e}", info.name)))?;
                Ok((r, i, level, y))
            });
            compute += compute0.elapsed().as_secs_f64();
            match got {
                Ok((r, i, level, y)) => {
                    let (l, k) = items[i];
                    let info = &m.tensors[layers[l].tensor];
                    let rows = info.tile_rows(k);
                    ys[l][rows.start as usize..rows.end as usize].copy_from_slice(&y);
                    meter.arrived(
                        &mut controller,
                        r.payload.len() as u64,
                        waited,
                        secs(r.arrived),
                    );
                    level_sum[l] += f64::from(ladder[level]);
                    tile_levels[i] = level as u8;
                    rel_sum += f64::from(info.rel_error[level]);
                    rel_n += 1;
                    bytes += r.payload.len() as u64;
                    in_flight.pop_front();
                    in_flight_bytes -= size(i, level);
                    done += 1;
                }
                Err(e) => {
                    let (i, _) = *in_flight.front().expect("a request in flight");
                    let n = tries.entry(i).or_insert(0);
                    *n += 1;
                    retries += 1;
                    if *n > opts.retries {
                        return Err(LinkError::GaveUp {
                            attempts: *n,
                            last: Box::new(e),
                        });
                    }
                    tracing::warn!("{e}; retrying after a reconnect");
                    // A tile that arrived but did not decode has left the client's
                    // queue: put it back first, so the reconnect asks for it again.
                    if client.in_flight() < in_flight.len() {
                        let (i, level) = in_flight[0];
                        let (l, k) = items[i];
                        client.requeue_front(TileRequest {
                            tensor: layers[l].tensor as u32,
                            tile: k,
                            level: level as u16,
                        });
                    }
                    client.reconnect()?;
                }
            }
        }
        let end = Instant::now();
        let cos = layers
            .iter()
            .zip(&ys)
            .map(|(l, y)| l.reference.as_ref().map(|r| cosine(y, r)))
            .collect::<Option<Vec<f64>>>();
        let rep = PassReport {
            pass,
            start: secs(start),
            end: secs(end),
            deadline: deadline.map(secs),
            hit: deadline.map(|d| end <= d),
            bytes,
            stall_seconds: stall,
            compute_seconds: compute,
            levels: layers
                .iter()
                .zip(&level_sum)
                .map(|(l, s)| (*s / f64::from(m.tensors[l.tensor].tiles)) as f32)
                .collect(),
            cosine: cos,
            bandwidth_gbps: controller.bandwidth().map(|b| b / 1e9),
            tile_levels,
        };
        last_compute = Some(compute);
        progress(&rep);
        reports.push(rep);
        outputs = ys;
        pass += 1;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let busy: f64 = reports.iter().map(|r| r.end - r.start).sum();
    let stall_seconds: f64 = reports.iter().map(|r| r.stall_seconds).sum();
    let hits: Vec<bool> = reports.iter().filter_map(|r| r.hit).collect();
    let cosines: Vec<f64> = reports
        .iter()
        .filter_map(|r| r.cosine.clone())
        .flatten()
        .collect();
    Ok(RunReport {
        policy: opts.policy.to_string(),
        layers: names,
        seconds,
        passes: pass,
        period_ms: opts.period.map(|p| p.as_secs_f64() * 1e3),
        deadline_hit_fraction: (!hits.is_empty())
            .then(|| hits.iter().filter(|h| **h).count() as f64 / hits.len() as f64),
        stall_seconds,
        stall_fraction: if busy > 0.0 {
            stall_seconds / busy
        } else {
            0.0
        },
        bytes_sent: reports.iter().map(|r| r.bytes).sum(),
        dense_bytes: dense_pass * u64::from(pass),
        levels: reports.iter().map(|r| r.levels.clone()).collect(),
        mean_cosine: (!cosines.is_empty())
            .then(|| cosines.iter().sum::<f64>() / cosines.len() as f64),
        mean_rel_error: if rel_n > 0 {
            rel_sum / rel_n as f64
        } else {
            0.0
        },
        retries,
        reconnects: client.reconnects,
        pass_reports: reports,
        outputs,
        inputs: layers.into_iter().map(|l| l.x).collect(),
    })
}
