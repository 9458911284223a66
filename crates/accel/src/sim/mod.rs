//! The timing model: the scheduler's [`Plan`] run against modelled clocks.
//!
//! **Machine** ([`HardwareSpec`]): a bus (bandwidth, latency per transfer), the LMD (a
//! staging area for compressed tiles in flight, and the reconstruction buffer the plan was
//! made for), the reconstruction engine (elements per second by method, serial), the MMU
//! (multiply-accumulates per second).
//!
//! **Events.** Each plan step's compressed tile crosses the bus once the step's gate is
//! open (the MMU has finished the positions before it), the bus is free, and the staging
//! area has room (at most `staging_tiles` compressed tiles wait for the engine); the
//! engine rebuilds it after it lands; the MMU multiplies trace positions in order, each once
//! its tile is rebuilt. Every time is a max of the events it waits for plus a duration, so
//! one pass in trace order computes the whole schedule: O(tiles), so a 10k-tile workload
//! takes milliseconds.
//!
//! **Baseline.** The same trace with dense tiles: each crosses the bus in full and goes to
//! the MMU without reconstruction.

use crate::buffer::BufferStats;
use crate::schedule::Plan;
use serde::{Deserialize, Serialize};

mod trace;
pub use trace::Trace;

/// Reconstruction methods the engine's rates are given for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Dense tile: copied (or converted) only.
    Dense,
    Zero,
    Linear,
    Learned,
    Dictionary,
}

/// A hardware description (JSON). Every rate is per second; see docs/SIMULATOR.md for the
/// source of each preset's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareSpec {
    pub name: String,
    pub bus: BusSpec,
    pub lmd: LmdSpec,
    pub engine: EngineSpec,
    pub mmu: MmuSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusSpec {
    /// GB/s (1e9 bytes).
    pub gbps: f64,
    /// Time from a transfer's last byte leaving to its landing, microseconds. Transfers
    /// are pipelined (DMA): latency delays each tile but does not hold the bus.
    pub latency_us: f64,
    /// Bus time each transfer costs besides its bytes (descriptor, headers), microseconds.
    #[serde(default)]
    pub overhead_us: f64,
    /// The bus's rate over time, when it varies (`[[seconds, gbps], ...]`; the clock
    /// starts with the workload): replaces `gbps` for every transfer. The same trace the
    /// link's pacer emulates (`sparsewire serve --link-trace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Trace>,
}

impl BusSpec {
    /// Seconds the bus takes to carry `bytes` starting at second `t` (the trace's rate
    /// then, or `gbps`), overhead excluded.
    pub fn carry_seconds(&self, t: f64, bytes: u64) -> f64 {
        match &self.trace {
            Some(tr) => tr.finish(t, bytes) - t,
            None => bytes as f64 / (self.gbps * 1e9),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmdSpec {
    /// Bytes of local memory in all.
    pub capacity_bytes: u64,
    /// Bytes of it for compressed tiles in flight; the rest is the reconstruction buffer.
    pub staging_bytes: u64,
}

/// Reconstruction engine: output elements per second, by method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSpec {
    pub dense_elems_per_s: f64,
    pub zero_elems_per_s: f64,
    pub linear_elems_per_s: f64,
    pub learned_elems_per_s: f64,
    pub dictionary_elems_per_s: f64,
    /// Fixed cost per tile (setup, table loads), microseconds.
    pub per_tile_us: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmuSpec {
    /// Multiply-accumulates per second at batch 1 (a GEMV).
    pub gemv_macs_per_s: f64,
    /// Multiply-accumulates per second at large batch (a GEMM).
    pub gemm_macs_per_s: f64,
    /// Fixed cost per tile, microseconds.
    pub per_tile_us: f64,
    /// Fixed cost to start one multiply (a kernel launch, threads starting), microseconds.
    #[serde(default)]
    pub launch_us: f64,
    /// Whether the MMU rebuilds tiles itself (at the engine's rates) when the tile it needs
    /// is not ready, as the CPU's pipelined path does (its multiply thread is a core that
    /// can decode); false for an MMU that can only multiply.
    #[serde(default)]
    pub rebuilds_when_idle: bool,
}

/// Errors of a hardware description or workload.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum SimError {
    #[error("hardware field {field} must be positive and finite, got {value}")]
    NotPositive { field: &'static str, value: f64 },
    #[error("the LMD ({capacity} bytes) must hold staging ({staging} bytes) and at least one rebuilt tile; the minimum is {minimum} bytes")]
    LmdTooSmall {
        capacity: u64,
        staging: u64,
        minimum: u64,
    },
    #[error("the staging area ({staging} bytes) cannot hold one compressed tile of {tile} bytes")]
    StagingTooSmall { staging: u64, tile: u64 },
    #[error("the workload has {tiles} tiles but the plan reads tile {tile}")]
    UnknownTile { tiles: usize, tile: u32 },
    #[error("{0}")]
    Trace(String),
    #[error("unknown hardware preset {0:?} (edge-npu, pcie-gpu, this-cpu, or a JSON file)")]
    UnknownPreset(String),
    #[error("the workload names tensor {tensor}, the stream has {tensors}")]
    UnknownTensor { tensors: usize, tensor: usize },
    #[error("{source} (the LMD of {capacity} bytes less {staging} of staging is the buffer)")]
    Buffer {
        capacity: u64,
        staging: u64,
        source: crate::schedule::ScheduleError,
    },
}

impl HardwareSpec {
    /// Checks every number is usable.
    pub fn validate(&self) -> Result<(), SimError> {
        let pos = |field: &'static str, value: f64| {
            if value > 0.0 && value.is_finite() {
                Ok(())
            } else {
                Err(SimError::NotPositive { field, value })
            }
        };
        let nonneg = |field: &'static str, value: f64| {
            if value >= 0.0 && value.is_finite() {
                Ok(())
            } else {
                Err(SimError::NotPositive { field, value })
            }
        };
        pos("bus.gbps", self.bus.gbps)?;
        nonneg("bus.latency_us", self.bus.latency_us)?;
        nonneg("bus.overhead_us", self.bus.overhead_us)?;
        pos("lmd.capacity_bytes", self.lmd.capacity_bytes as f64)?;
        pos("lmd.staging_bytes", self.lmd.staging_bytes as f64)?;
        let e = &self.engine;
        pos("engine.dense_elems_per_s", e.dense_elems_per_s)?;
        pos("engine.zero_elems_per_s", e.zero_elems_per_s)?;
        pos("engine.linear_elems_per_s", e.linear_elems_per_s)?;
        pos("engine.learned_elems_per_s", e.learned_elems_per_s)?;
        pos("engine.dictionary_elems_per_s", e.dictionary_elems_per_s)?;
        nonneg("engine.per_tile_us", e.per_tile_us)?;
        pos("mmu.gemv_macs_per_s", self.mmu.gemv_macs_per_s)?;
        pos("mmu.gemm_macs_per_s", self.mmu.gemm_macs_per_s)?;
        nonneg("mmu.per_tile_us", self.mmu.per_tile_us)?;
        nonneg("mmu.launch_us", self.mmu.launch_us)?;
        Ok(())
    }

    /// Reconstruction buffer bytes: the LMD less staging.
    pub fn buffer_bytes(&self) -> u64 {
        self.lmd
            .capacity_bytes
            .saturating_sub(self.lmd.staging_bytes)
    }

    /// Built-in presets (sources in docs/SIMULATOR.md).
    pub fn preset(name: &str) -> Result<HardwareSpec, SimError> {
        let engine = |zero: f64| EngineSpec {
            dense_elems_per_s: zero * 2.0,
            zero_elems_per_s: zero,
            linear_elems_per_s: zero / 4.0,
            learned_elems_per_s: zero / 8.0,
            dictionary_elems_per_s: zero / 2.0,
            per_tile_us: 0.5,
        };
        match name {
            // A small NPU: 4 MiB of SRAM beside a 4 TOPS int8 / 1 TMAC/s fp16 array, fed by
            // a 4 GB/s LPDDR-class link; its engine expands 16 elements per cycle at 1 GHz.
            "edge-npu" => Ok(HardwareSpec {
                name: name.into(),
                bus: BusSpec {
                    gbps: 4.0,
                    latency_us: 1.0,
                    overhead_us: 0.2,
                    trace: None,
                },
                lmd: LmdSpec {
                    capacity_bytes: 4 << 20,
                    staging_bytes: 512 << 10,
                },
                engine: engine(16e9),
                mmu: MmuSpec {
                    gemv_macs_per_s: 16e9,
                    gemm_macs_per_s: 1e12,
                    per_tile_us: 0.2,
                    launch_us: 2.0,
                    rebuilds_when_idle: false,
                },
            }),
            // An H100 behind PCIe: 55 GB/s host-to-device (the measurement), 50 MB
            // of L2 as the LMD, HBM-speed rebuild (1.5e12 elements/s, about half of 3.35
            // TB/s of bf16 traffic), and a GEMV bound by HBM (3.35 TB/s / 2 bytes) and a
            // GEMM by the tensor cores (~400 TMAC/s dense bf16).
            "pcie-gpu" => Ok(HardwareSpec {
                name: name.into(),
                bus: BusSpec {
                    gbps: 55.0,
                    latency_us: 5.0,
                    overhead_us: 1.0,
                    trace: None,
                },
                lmd: LmdSpec {
                    capacity_bytes: 50 << 20,
                    staging_bytes: 8 << 20,
                },
                engine: engine(1.5e12),
                mmu: MmuSpec {
                    gemv_macs_per_s: 1.6e12,
                    gemm_macs_per_s: 4e14,
                    per_tile_us: 2.0,
                    launch_us: 5.0,
                    rebuilds_when_idle: false,
                },
            }),
            _ => Err(SimError::UnknownPreset(name.into())),
        }
    }

    fn engine_rate(&self, m: Method) -> f64 {
        let e = &self.engine;
        match m {
            Method::Dense => e.dense_elems_per_s,
            Method::Zero => e.zero_elems_per_s,
            Method::Linear => e.linear_elems_per_s,
            Method::Learned => e.learned_elems_per_s,
            Method::Dictionary => e.dictionary_elems_per_s,
        }
    }

    /// MMU rate at `batch`: GEMV rate at 1, rising linearly to the GEMM rate at 64.
    fn mmu_rate(&self, batch: usize) -> f64 {
        let f = ((batch.clamp(1, 64) - 1) as f64 / 63.0).clamp(0.0, 1.0);
        let m = &self.mmu;
        (m.gemv_macs_per_s * (1.0 - f) + m.gemm_macs_per_s * f)
            .min(m.gemm_macs_per_s.max(m.gemv_macs_per_s))
    }
}

/// One tile of the workload, by tile index (the plan's `TileId::tile`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TileCost {
    /// Bytes crossing the bus when compressed.
    pub stored_bytes: u64,
    /// Bytes crossing the bus when dense.
    pub dense_bytes: u64,
    /// Output elements of the rebuild.
    pub elements: u64,
    /// Rows of the tile (a multiply is `elements * batch` MACs).
    pub method: Method,
}

/// What the model predicts.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub hardware: String,
    pub total_seconds: f64,
    pub dense_total_seconds: f64,
    /// `dense_total_seconds / total_seconds`.
    pub speedup: f64,
    /// Share of the total the MMU waited for a tile (launches not counted).
    pub mmu_stall_fraction: f64,
    /// Time spent starting multiplies (`mmu.launch_us` each).
    pub launch_seconds: f64,
    pub mmu_busy_fraction: f64,
    pub bus_bytes: u64,
    pub dense_bus_bytes: u64,
    pub bus_utilisation: f64,
    pub engine_utilisation: f64,
    pub buffer: BufferStats,
    pub steps: usize,
    pub positions: usize,
}

/// Per event, for timelines: what ran when.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Span {
    pub start: f64,
    pub end: f64,
}

/// The schedule in time: per plan step its transfer and rebuild, per trace position its
/// multiply.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    pub transfers: Vec<Span>,
    pub rebuilds: Vec<Span>,
    pub multiplies: Vec<Span>,
}

/// Runs `plan` (made for `hw.buffer_bytes()`) on `hw` at `batch`; `tiles[k]` describes tile
/// `k` of the plan's trace; the workload starts `multiplies` multiplies (each pays
/// `mmu.launch_us` before its first tile, compressed and dense alike).
pub fn simulate(
    plan: &Plan,
    tiles: &[TileCost],
    batch: usize,
    multiplies: usize,
    hw: &HardwareSpec,
) -> Result<(SimReport, Timeline), SimError> {
    hw.validate()?;
    let cost = |k: u32| {
        tiles.get(k as usize).ok_or(SimError::UnknownTile {
            tiles: tiles.len(),
            tile: k,
        })
    };
    let largest_stored = plan
        .steps
        .iter()
        .map(|s| cost(s.tile.tile).map(|c| c.stored_bytes))
        .try_fold(0u64, |a, b| b.map(|b| a.max(b)))?;
    if largest_stored > hw.lmd.staging_bytes {
        return Err(SimError::StagingTooSmall {
            staging: hw.lmd.staging_bytes,
            tile: largest_stored,
        });
    }
    let staging = (hw.lmd.staging_bytes / largest_stored.max(1)).max(1) as usize;
    let lat = hw.bus.latency_us * 1e-6;
    let over = hw.bus.overhead_us * 1e-6;
    let mmu_rate = hw.mmu_rate(batch);
    let mmu_tile = hw.mmu.per_tile_us * 1e-6;
    let eng_tile = hw.engine.per_tile_us * 1e-6;

    let mut tl = Timeline::default();
    let (mut bus_free, mut eng_free, mut mmu_free) = (0f64, 0f64, 0f64);
    let (mut bus_busy, mut eng_busy, mut mmu_busy) = (0f64, 0f64, 0f64);
    let mut bus_bytes = 0u64;
    let mut step = 0;
    let help = hw.mmu.rebuilds_when_idle;
    for (p, &(id, _)) in plan.trace.iter().enumerate() {
        // Steps are issued in plan order, each to the engine, until the one position `p`
        // needs is issued. With `rebuilds_when_idle`, while that tile would not be ready
        // when the MMU is free, the next step goes to whichever of the engine and the MMU
        // can start it first (the engine takes steps as it frees up; the MMU, idle, takes
        // the next step whose gate it has passed), as the CPU's pipelined path does.
        let need = plan.source[p];
        loop {
            if step > need && (!help || tl.rebuilds[need].end <= mmu_free) {
                break;
            }
            if step >= plan.steps.len() || plan.steps[step].gate > p {
                // Nothing the MMU may take: it waits for its tile (issued: the gates are
                // in step order and `need`'s is at or before `p`).
                break;
            }
            let s = &plan.steps[step];
            let c = cost(s.tile.tile)?;
            let gate = if s.gate == 0 {
                0.0
            } else {
                tl.multiplies[s.gate - 1].end
            };
            let room = if step >= staging {
                tl.rebuilds[step - staging].start
            } else {
                0.0
            };
            let t0 = bus_free.max(gate).max(room);
            let dt = hw.bus.carry_seconds(t0, c.stored_bytes) + over;
            tl.transfers.push(Span {
                start: t0,
                end: t0 + dt,
            });
            bus_free = t0 + dt;
            bus_busy += dt;
            bus_bytes += c.stored_bytes;
            let landed = t0 + dt + lat;
            let dr = c.elements as f64 / hw.engine_rate(c.method) + eng_tile;
            let r0 = if help && mmu_free.max(landed) < eng_free.max(landed) {
                // The MMU can start it first: it rebuilds it (busy time, not a stall).
                let r0 = mmu_free.max(landed);
                mmu_free = r0 + dr;
                mmu_busy += dr;
                r0
            } else {
                let r0 = eng_free.max(landed);
                eng_free = r0 + dr;
                eng_busy += dr;
                r0
            };
            tl.rebuilds.push(Span {
                start: r0,
                end: r0 + dr,
            });
            step += 1;
        }
        let c = cost(id.tile)?;
        let m0 = mmu_free.max(tl.rebuilds[plan.source[p]].end);
        let dm = (c.elements * batch as u64) as f64 / mmu_rate + mmu_tile;
        tl.multiplies.push(Span {
            start: m0,
            end: m0 + dm,
        });
        mmu_free = m0 + dm;
        mmu_busy += dm;
    }
    let launches = multiplies as f64 * hw.mmu.launch_us * 1e-6;
    let total = mmu_free + launches;
    // Dense baseline: every position's tile crosses the bus in full, then is multiplied.
    let (mut bus_d, mut mmu_d) = (0f64, 0f64);
    let mut dense_bytes = 0u64;
    let mut arrivals: std::collections::VecDeque<f64> = Default::default();
    for &(id, _) in &plan.trace {
        let c = cost(id.tile)?;
        // The staging area bounds how far the bus runs ahead of the MMU.
        let room = if arrivals.len() >= staging {
            arrivals.pop_front().unwrap_or(0.0)
        } else {
            0.0
        };
        let t0 = bus_d.max(room);
        bus_d = t0 + hw.bus.carry_seconds(t0, c.dense_bytes) + over;
        dense_bytes += c.dense_bytes;
        let m0 = mmu_d.max(bus_d + lat);
        mmu_d = m0 + (c.elements * batch as u64) as f64 / mmu_rate + mmu_tile;
        arrivals.push_back(m0);
    }
    let mmu_d = mmu_d + launches;
    let frac = |x: f64| if total > 0.0 { x / total } else { 0.0 };
    Ok((
        SimReport {
            hardware: hw.name.clone(),
            total_seconds: total,
            dense_total_seconds: mmu_d,
            speedup: if total > 0.0 { mmu_d / total } else { 1.0 },
            mmu_stall_fraction: frac(total - launches - mmu_busy).max(0.0),
            launch_seconds: launches,
            mmu_busy_fraction: frac(mmu_busy),
            bus_bytes,
            dense_bus_bytes: dense_bytes,
            bus_utilisation: frac(bus_busy),
            engine_utilisation: frac(eng_busy),
            buffer: plan.stats,
            steps: plan.steps.len(),
            positions: plan.trace.len(),
        },
        tl,
    ))
}

/// A parameter a sweep varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SweepParam {
    /// `bus.gbps`.
    BusGbps,
    /// `lmd.capacity_bytes`.
    LmdCapacity,
    /// Every engine rate times the value.
    EngineScale,
    /// Both MMU rates times the value.
    MmuScale,
    /// The batch (input vectors per multiply).
    Batch,
}

/// `PARAM=a,b,c`: the values one parameter takes in a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub param: SweepParam,
    pub values: Vec<f64>,
}

impl std::str::FromStr for Sweep {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (p, values) = s
            .split_once('=')
            .ok_or("expected PARAM=a,b,c, e.g. bus.gbps=1,2,4,8")?;
        let param = match p {
            "bus.gbps" => SweepParam::BusGbps,
            "lmd.capacity_bytes" => SweepParam::LmdCapacity,
            "engine.scale" => SweepParam::EngineScale,
            "mmu.scale" => SweepParam::MmuScale,
            "batch" => SweepParam::Batch,
            _ => {
                return Err(format!(
                    "unknown parameter {p:?} (bus.gbps, lmd.capacity_bytes, engine.scale, mmu.scale, batch)"
                ))
            }
        };
        let values = values
            .split(',')
            .map(|v| match v.trim().parse::<f64>() {
                Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
                _ => Err(format!("{v:?} is not a positive number")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if param == SweepParam::Batch && values.iter().any(|v| v.fract() != 0.0) {
            return Err("batch values must be whole numbers".into());
        }
        Ok(Sweep { param, values })
    }
}

impl std::fmt::Display for SweepParam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SweepParam::BusGbps => "bus.gbps",
            SweepParam::LmdCapacity => "lmd.capacity_bytes",
            SweepParam::EngineScale => "engine.scale",
            SweepParam::MmuScale => "mmu.scale",
            SweepParam::Batch => "batch",
        })
    }
}

impl SweepParam {
    /// `hw` and `batch` with this parameter set to `x`.
    pub fn apply(self, hw: &HardwareSpec, batch: usize, x: f64) -> (HardwareSpec, usize) {
        let mut h = hw.clone();
        let mut b = batch;
        match self {
            SweepParam::BusGbps => h.bus.gbps = x,
            SweepParam::LmdCapacity => h.lmd.capacity_bytes = x as u64,
            SweepParam::EngineScale => {
                let e = &mut h.engine;
                e.dense_elems_per_s *= x;
                e.zero_elems_per_s *= x;
                e.linear_elems_per_s *= x;
                e.learned_elems_per_s *= x;
                e.dictionary_elems_per_s *= x;
            }
            SweepParam::MmuScale => {
                h.mmu.gemv_macs_per_s *= x;
                h.mmu.gemm_macs_per_s *= x;
            }
            SweepParam::Batch => b = x as usize,
        }
        (h, b)
    }
}

/// Delivery over a link of `gbps` GB/s: when the last of `tiles` (stored bytes, decode
/// seconds) is decoded, if they cross the link one after another and `workers` decoders
/// take each as it lands (the earliest free one), decoding overlapping the transfer of the
/// next tiles.
pub fn deliver_seconds(gbps: f64, tiles: &[(u64, f64)], workers: usize) -> f64 {
    let mut free = vec![0f64; workers.max(1)];
    let (mut arrived, mut done) = (0f64, 0f64);
    for &(bytes, decode) in tiles {
        arrived += bytes as f64 / (gbps * 1e9);
        let w = free
            .iter_mut()
            .min_by(|a, b| a.total_cmp(b))
            .expect("one worker or more");
        *w = w.max(arrived) + decode;
        done = done.max(*w);
    }
    done
}

#[cfg(test)]
mod tests;
