//! A timing model of [`crate::run::run`]: the same schedule, window, policy and
//! [`Controller`] (fed by the same [`Meter`]), against modelled clocks instead of a
//! socket, so a link trace's effect on deadlines and stalls can be predicted, and the
//! prediction checked against what `run` measures on the same trace.
//!
//! Modelled: the link carries one frame at a time at the trace's rate (the host's pacer
//! does exactly that); a request reaches the host half a round trip after it is sent and
//! a tile reaches the client half a round trip after its last byte leaves; the client
//! takes [`Compute::seconds`] to decode and multiply a tile (seconds per dense byte at
//! the tile's level, measured by runs at each level on an unlimited link with the same
//! period as the runs predicted: a client that idles between passes computes slower than
//! one running back to back), `frame_seconds` at the tile's level to take each answer
//! off the socket (from the same runs, where that and the pass-start wake-up below are
//! all the waiting) and
//! `other_seconds` a tile for the rest of its time, neither waiting nor computing (sending
//! the request, placing the output; fitted from the same runs), plus
//! `wake_seconds` of decode-and-multiply time for a tile the client had to wait for (it
//! was asleep on the socket: caches and branch predictors cold; fitted from a short paced
//! run on a constant slow link, where every tile waits), plus `pass_seconds` of waiting
//! at the first tile of a pass that started after an idle (client, host and pacer threads
//! all asleep between passes wake, and the operating system schedules them on shared
//! cores; what lossless runs with the period wait beyond the same runs back to back). Not
//! modelled tile by tile: the operating system's scheduling, TCP's windows, the pacer's
//! sleep granularity.

use crate::controller::{Controller, Meter, Pass, Spend};
use crate::host::Manifest;
use crate::pace::Trace;
use crate::run::Policy;
use crate::LinkError;
use serde::Serialize;

/// The client's decode-and-multiply time for a tile: seconds per dense byte of the tile at
/// the ladder level it was sent at (a sparse level's tile decodes its mask and scatters,
/// so its cost is not a linear function of its payload bytes; each level is measured).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Compute {
    pub per_dense_byte: Vec<f64>,
}

impl Compute {
    /// Seconds for a tile of `dense_bytes` at ladder level `level`.
    pub fn seconds(&self, level: usize, dense_bytes: f64) -> f64 {
        self.per_dense_byte[level] * dense_bytes
    }
}

/// What the model is asked to run.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    pub policy: Policy,
    /// Seconds between pass deadlines.
    pub period: f64,
    /// Modelled seconds to run (whole passes).
    pub duration: f64,
    pub window: usize,
    /// Round trip on the socket, seconds.
    pub round_trip: f64,
    /// The client's time to take an answer off the socket (system calls and the copy),
    /// seconds per tile at each ladder level (a sparse level's answer is shorter); `run`
    /// counts it as waiting.
    pub frame_seconds: Vec<f64>,
    /// The client's time per tile outside waiting and computing (the request's send, the
    /// output's copy, bookkeeping), seconds; `run` counts it as neither.
    pub other_seconds: f64,
    /// The client's extra decode-and-multiply time for a tile it waited for, seconds.
    pub wake_seconds: f64,
    /// Extra waiting for the first tile of a pass that started after an idle, seconds.
    pub pass_seconds: f64,
    pub compute: Compute,
    /// Tensors of one pass, in multiply order (manifest indices).
    pub schedule: Vec<usize>,
    pub spend: Spend,
}

/// What the model predicts.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub passes: u32,
    pub deadline_hit_fraction: f64,
    pub stall_fraction: f64,
    pub bytes_sent: u64,
    pub mean_sparsity: f64,
    /// Modelled seconds, summed over the passes: running (start to end), waiting for tiles,
    /// decoding and multiplying.
    pub busy_seconds: f64,
    pub stall_seconds: f64,
    pub compute_seconds: f64,
}

/// Runs the model.
pub fn simulate(m: &Manifest, trace: &Trace, o: &ModelOptions) -> Result<ModelReport, LinkError> {
    let ladder = &m.levels;
    let (fixed, floor) = o.policy.resolve(ladder)?;
    if o.window == 0 || o.period <= 0.0 || o.schedule.is_empty() {
        return Err(LinkError::Options(
            "the model needs a window, a period and a schedule".into(),
        ));
    }
    for (what, costs) in [
        ("compute", &o.compute.per_dense_byte),
        ("receive", &o.frame_seconds),
    ] {
        if costs.len() != ladder.len() || costs.iter().any(|c| !(c.is_finite() && *c >= 0.0)) {
            return Err(LinkError::Options(format!(
                "the model needs a finite, non-negative {what} cost for each of the {} ladder levels, not {costs:?}",
                ladder.len(),
            )));
        }
    }
    // (tensor, tile, dense bytes, position in the schedule) in multiply order.
    let mut items = Vec::new();
    for (g, &t) in o.schedule.iter().enumerate() {
        let info = m
            .tensors
            .get(t)
            .ok_or_else(|| LinkError::Options(format!("no tensor {t}")))?;
        let elem = info.dense_bytes() as f64 / (info.rows * info.cols).max(1) as f64;
        for k in 0..info.tiles {
            let r = info.tile_rows(k);
            items.push((
                t,
                k as usize,
                (r.end - r.start) as f64 * info.cols as f64 * elem,
                g,
            ));
        }
    }
    let size = |i: usize, l: usize| m.tensors[items[i].0].bytes[items[i].1][l];
    let mut controller = Controller::new(floor);
    let (mut now, mut link_free) = (0f64, 0f64);
    let (mut hits, mut passes, mut bytes, mut stall, mut busy) = (0u32, 0u32, 0u64, 0f64, 0f64);
    let mut compute = 0f64;
    let (mut level_sum, mut level_n) = (0f64, 0u64);
    // As `run`: a pass starts if the last one ended before the duration.
    while now < o.duration {
        let due = f64::from(passes) * o.period;
        // A pass that waited for its start finds everything asleep.
        let mut wake_up = if now < due { o.pass_seconds } else { 0.0 };
        now = now.max(due);
        let (start, deadline) = (now, due + o.period);
        let mut left = Pass::new(m, o.schedule.iter().copied());
        let mut meter = Meter::new(now);
        // Requests in flight: (item, level, arrival time).
        let mut flight: std::collections::VecDeque<(usize, usize, f64)> = Default::default();
        let mut in_flight_bytes = 0f64;
        let (mut next, mut done) = (0, 0);
        while done < items.len() {
            while next < items.len() && flight.len() < o.window {
                let level = match fixed {
                    Some(l) => l,
                    None => left.level(
                        &mut controller,
                        o.spend,
                        items[next].3,
                        in_flight_bytes,
                        deadline - now,
                    ),
                };
                left.take(
                    items[next].3,
                    &m.tensors[items[next].0].bytes[items[next].1],
                );
                let b = size(next, level);
                // The request reaches the host, which sends when the link is free.
                let begin = link_free.max(now + o.round_trip / 2.0);
                link_free = trace.finish(begin, b + 24);
                flight.push_back((next, level, link_free + o.round_trip / 2.0));
                in_flight_bytes += b as f64;
                next += 1;
            }
            let (i, level, arrival) = flight.pop_front().expect("a request in flight");
            let b = size(i, level);
            let woken = arrival > now;
            let receive = o.frame_seconds[level];
            let waited = (arrival - now).max(0.0) + receive + wake_up;
            now = now.max(arrival) + receive + wake_up;
            wake_up = 0.0;
            stall += waited;
            meter.arrived(&mut controller, b, waited, now);
            in_flight_bytes -= b as f64;
            bytes += b;
            level_sum += f64::from(ladder[level]);
            level_n += 1;
            let c = o.compute.seconds(level, items[i].2) + if woken { o.wake_seconds } else { 0.0 };
            now += c + o.other_seconds;
            compute += c;
            done += 1;
        }
        busy += now - start;
        hits += u32::from(now <= deadline);
        passes += 1;
    }
    Ok(ModelReport {
        passes,
        deadline_hit_fraction: f64::from(hits) / f64::from(passes.max(1)),
        stall_fraction: if busy > 0.0 { stall / busy } else { 0.0 },
        bytes_sent: bytes,
        mean_sparsity: level_sum / level_n.max(1) as f64,
        busy_seconds: busy,
        stall_seconds: stall,
        compute_seconds: compute,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Window 1 on a 1 MB/s link, nothing else in the way: every tile is on the link alone,
    /// then waited for, woken for, and computed; the model's sums follow exactly.
    #[test]
    fn one_tile_at_a_time_adds_up() {
        let tiles = 10u32;
        let m = Manifest {
            protocol: 1,
            levels: vec![0.0, 0.5],
            criterion: "magnitude".into(),
            pattern: "unstructured".into(),
            tensors: vec![crate::host::TensorInfo {
                name: "w".into(),
                dtype: "bf16".into(),
                shape: vec![100, 100],
                rows: 100,
                cols: 100,
                rows_per_tile: 10,
                tiles,
                sparsifiable: true,
                bytes: vec![vec![2000, 1000]; tiles as usize],
                rel_error: vec![0.0, 0.5],
            }],
        };
        let trace = Trace::constant(0.001).unwrap();
        let (wake, other, a) = (0.5e-3, 0.1e-3, 1e-8);
        let o = ModelOptions {
            policy: Policy::Lossless,
            period: 1.0,
            // One pass: the next would start at its period, after the duration.
            duration: 1e-4,
            window: 1,
            round_trip: 0.0,
            frame_seconds: vec![0.0; 2],
            other_seconds: other,
            wake_seconds: wake,
            pass_seconds: 0.0,
            compute: Compute {
                per_dense_byte: vec![a, a],
            },
            schedule: vec![0],
            spend: Spend::Uniform,
        };
        let r = simulate(&m, &trace, &o).unwrap();
        let n = f64::from(tiles);
        let link = 2024.0 / 1e6; // payload + frame overhead at 1 MB/s
        let compute = 2000.0 * a + wake;
        assert_eq!((r.passes, r.bytes_sent), (1, 20_000));
        let close = |x: f64, y: f64| (x - y).abs() < 1e-12;
        assert!(close(r.stall_seconds, n * link), "{r:?}");
        assert!(close(r.compute_seconds, n * compute), "{r:?}");
        assert!(close(r.busy_seconds, n * (link + compute + other)), "{r:?}");
        assert_eq!(r.deadline_hit_fraction, 1.0);
        // Not woken when the tile is there already: a link fast enough to have every
        // tile waiting (window 10) charges the wake-up once, for the first.
        let fast = ModelOptions {
            window: 10,
            ..o.clone()
        };
        let r = simulate(&m, &Trace::constant(1000.0).unwrap(), &fast).unwrap();
        assert!(close(r.compute_seconds, n * 2000.0 * a + wake), "{r:?}");
        // The pass-start wake-up is waited once a pass, and only after an idle: the first
        // pass starts at 0 (no idle), the next ones at their period after a short pass.
        let two = |pass_seconds: f64| {
            let o = ModelOptions {
                // A pass starts while the last ended before this: passes at 0 and 1 s.
                duration: 0.5,
                pass_seconds,
                ..fast.clone()
            };
            simulate(&m, &Trace::constant(1000.0).unwrap(), &o).unwrap()
        };
        let (plain, woken) = (two(0.0), two(0.25));
        assert_eq!((plain.passes, woken.passes), (2, 2));
        assert!(
            close(woken.stall_seconds - plain.stall_seconds, 0.25),
            "{woken:?}"
        );
        assert!(
            close(woken.busy_seconds - plain.busy_seconds, 0.25),
            "{woken:?}"
        );
        // The receive cost of the tile's level is waited for, tile by tile.
        let base = simulate(&m, &trace, &o).unwrap();
        let receive = ModelOptions {
            frame_seconds: vec![1e-4, 5e-5],
            ..o.clone()
        };
        let r = simulate(&m, &trace, &receive).unwrap();
        assert!(
            close(r.stall_seconds - base.stall_seconds, n * 1e-4),
            "{r:?}"
        );
        let sparse = ModelOptions {
            policy: Policy::Fixed(0.5),
            ..receive.clone()
        };
        let (r, base) = (
            simulate(&m, &trace, &sparse).unwrap(),
            simulate(
                &m,
                &trace,
                &ModelOptions {
                    policy: Policy::Fixed(0.5),
                    ..o.clone()
                },
            )
            .unwrap(),
        );
        assert!(
            close(r.stall_seconds - base.stall_seconds, n * 5e-5),
            "{r:?}"
        );
    }

    #[test]
    fn a_compute_and_a_receive_cost_per_level_are_required() {
        let m = Manifest {
            protocol: 1,
            levels: vec![0.0, 0.5],
            criterion: "magnitude".into(),
            pattern: "unstructured".into(),
            tensors: vec![],
        };
        let o = ModelOptions {
            policy: Policy::Lossless,
            period: 1.0,
            duration: 1.0,
            window: 1,
            round_trip: 0.0,
            frame_seconds: vec![0.0; 2],
            other_seconds: 0.0,
            wake_seconds: 0.0,
            pass_seconds: 0.0,
            compute: Compute {
                per_dense_byte: vec![1e-9],
            },
            schedule: vec![0],
            spend: Spend::Uniform,
        };
        let e = simulate(&m, &Trace::constant(1.0).unwrap(), &o).unwrap_err();
        assert!(e.to_string().contains("2 ladder levels"), "{e}");
        let o = ModelOptions {
            compute: Compute {
                per_dense_byte: vec![1e-9; 2],
            },
            frame_seconds: vec![0.0, f64::NAN],
            ..o
        };
        let e = simulate(&m, &Trace::constant(1.0).unwrap(), &o).unwrap_err();
        assert!(e.to_string().contains("receive cost"), "{e}");
    }
}
