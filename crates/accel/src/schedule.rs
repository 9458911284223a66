//! The scheduler: which tile to transfer and rebuild next, which to keep, which to evict.
//!
//! One piece of code for both executions (docs/ARCHITECTURE.md "Scheduler"): the real
//! pipelined multiply ([`crate::exec`], threads and wall clocks) and the timing
//! model ([`crate::sim`], modelled clocks) follow the same [`Plan`].
//!
//! **Input.** A workload's access trace: the tiles the multiplies consume, in order, each
//! with its rebuilt size in bytes; a buffer capacity; an eviction [`Policy`]; a lookahead
//! `L` (how many trace positions the rebuilding may run ahead of the multiply).
//!
//! **Plan.** Walking the trace in order, position `p`'s tile is either resident (a hit: no
//! work) or not (a [`Step`] that decodes and rebuilds it). A step for position `p` may start
//! once the multiply has finished positions `0..p - L` (its *gate*). At that moment the
//! tiles of positions `p - L..p` may be in use or awaited, so they are *pinned*: eviction
//! chooses among the others (Belady: farthest next use in the trace; LRU). The plan is a
//! pure function of its inputs, so timing never changes which tile is rebuilt or evicted
//! when: the real run and the model produce the same tile order by construction.
//!
//! **Feasibility.** The pinned tiles plus the new one must fit, so the effective lookahead
//! is clamped to `capacity / largest tile - 1`; a capacity below the largest tile is an
//! error naming the minimum.

use crate::buffer::{Access, BufferError, BufferStats, Policy, ReconstructionBuffer, TileId};
use std::collections::HashMap;

/// One rebuild the plan orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Trace position whose tile this rebuilds.
    pub pos: usize,
    pub tile: TileId,
    /// Rebuilt bytes.
    pub bytes: u64,
    /// The step may start once the multiply has finished positions `0..gate`.
    pub gate: usize,
    /// Tiles to drop from the buffer before this one is written.
    pub evict: Vec<TileId>,
}

/// What the scheduler decided for a whole trace.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The trace (tile, rebuilt bytes) the plan was made for.
    pub trace: Vec<(TileId, u64)>,
    /// Rebuilds, in the order they are issued.
    pub steps: Vec<Step>,
    /// For each trace position, the index of the step that rebuilt the tile it reads.
    pub source: Vec<usize>,
    /// The lookahead actually used (clamped so pinned tiles fit).
    pub lookahead: usize,
    /// The buffer's counters over the trace.
    pub stats: BufferStats,
}

/// Errors of planning.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScheduleError {
    #[error("a reconstruction buffer of {capacity} bytes cannot hold one tile: the minimum is {minimum} bytes (the largest rebuilt tile)")]
    BufferTooSmall { capacity: u64, minimum: u64 },
    /// The multiply, with no decode worker, found no step it may rebuild for the tile it
    /// needs: the plan broke its own invariant (each step's gate is at or before the
    /// position that first needs it). Reported instead of waiting forever.
    #[error("the plan has no step open at trace position {position} and no decode worker to wait for (a scheduler bug)")]
    Stuck { position: usize },
}

/// Plans the rebuilds of `trace` through a buffer of `capacity` bytes.
pub fn plan(
    trace: &[(TileId, u64)],
    capacity: u64,
    policy: Policy,
    lookahead: usize,
) -> Result<Plan, ScheduleError> {
    let largest = trace.iter().map(|&(_, b)| b).max().unwrap_or(0);
    if largest > capacity {
        return Err(ScheduleError::BufferTooSmall {
            capacity,
            minimum: largest,
        });
    }
    let fit = capacity.checked_div(largest).unwrap_or(u64::MAX);
    let lookahead = lookahead.min(fit.saturating_sub(1).min(usize::MAX as u64) as usize);
    let ids: Vec<TileId> = trace.iter().map(|&(id, _)| id).collect();
    let mut buffer: ReconstructionBuffer = ReconstructionBuffer::new(capacity, policy, &ids);
    // How many positions in the pinned window [p - L, p) read each tile.
    let mut window: HashMap<TileId, usize> = HashMap::new();
    let mut steps = Vec::new();
    let mut source = Vec::with_capacity(trace.len());
    let mut last_step: HashMap<TileId, usize> = HashMap::new();
    for (p, &(id, bytes)) in trace.iter().enumerate() {
        if p > lookahead {
            let old = ids[p - lookahead - 1];
            let n = window.get_mut(&old).expect("in the window");
            *n -= 1;
            if *n == 0 {
                window.remove(&old);
            }
        }
        match buffer.access_pinned(id, bytes, &window) {
            Ok(Access::Hit) => {}
            Ok(Access::Miss { evicted }) => {
                last_step.insert(id, steps.len());
                steps.push(Step {
                    pos: p,
                    tile: id,
                    bytes,
                    gate: p.saturating_sub(lookahead),
                    evict: evicted,
                });
            }
            Err(e @ (BufferError::TooSmall { .. } | BufferError::AllPinned { .. })) => {
                unreachable!("capacity and lookahead were checked: {e}")
            }
        }
        source.push(last_step[&id]);
        *window.entry(id).or_default() += 1;
    }
    Ok(Plan {
        trace: trace.to_vec(),
        steps,
        source,
        lookahead,
        stats: buffer.stats(),
    })
}

/// The trace of `passes` multiplies each reading `tiles` tiles of tensor `tensor` in order.
pub fn sweep(tensor: u32, tile_bytes: &[u64], passes: usize) -> Vec<(TileId, u64)> {
    (0..passes)
        .flat_map(|_| {
            tile_bytes.iter().enumerate().map(move |(k, &b)| {
                (
                    TileId {
                        tensor,
                        tile: k as u32,
                    },
                    b,
                )
            })
        })
        .collect()
}

/// Replays a plan's buffer occupancy in step order (evictions, then the new tile) and
/// returns the peak: what the executors must never exceed.
pub fn replay_peak(plan: &Plan) -> u64 {
    let mut held: HashMap<TileId, u64> = HashMap::new();
    let (mut used, mut peak) = (0u64, 0u64);
    for s in &plan.steps {
        for e in &s.evict {
            used -= held.remove(e).expect("evicting a resident tile");
        }
        held.insert(s.tile, s.bytes);
        used += s.bytes;
        peak = peak.max(used);
    }
    peak
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(t: u32) -> TileId {
        TileId { tensor: 0, tile: t }
    }

    /// Plays a plan as a consumer would: checks every read tile was rebuilt before it is
    /// read (its step's gate is before the read) and not evicted between.
    fn check(plan: &Plan) {
        let mut resident: HashMap<TileId, usize> = HashMap::new();
        let mut next_step = 0;
        for (p, &(id, _)) in plan.trace.iter().enumerate() {
            // Issue every step whose gate allows it once positions 0..p are done.
            while next_step < plan.steps.len() && plan.steps[next_step].gate <= p {
                let s = &plan.steps[next_step];
                for e in &s.evict {
                    resident.remove(e);
                }
                resident.insert(s.tile, next_step);
                next_step += 1;
            }
            assert_eq!(resident.get(&id), Some(&plan.source[p]), "position {p}");
        }
    }

    #[test]
    fn one_pass_rebuilds_each_tile_once_and_gates_by_lookahead() {
        let trace = sweep(0, &[10; 8], 1);
        let p = plan(&trace, 40, Policy::Belady, 2).unwrap();
        assert_eq!(p.steps.len(), 8);
        assert_eq!(p.lookahead, 2);
        assert_eq!(
            p.steps.iter().map(|s| s.gate).collect::<Vec<_>>(),
            [0, 0, 0, 1, 2, 3, 4, 5]
        );
        assert!(replay_peak(&p) <= 40);
        check(&p);
        // A capacity of two tiles clamps the lookahead to one.
        assert_eq!(plan(&trace, 25, Policy::Lru, 5).unwrap().lookahead, 1);
        assert_eq!(
            plan(&trace, 9, Policy::Lru, 1).unwrap_err(),
            ScheduleError::BufferTooSmall {
                capacity: 9,
                minimum: 10
            }
        );
    }

    #[test]
    fn unlimited_buffer_rebuilds_a_repeated_sweep_once() {
        let trace = sweep(3, &[10; 5], 4);
        let p = plan(&trace, 1000, Policy::Belady, 3).unwrap();
        assert_eq!(p.steps.len(), 5);
        assert_eq!(p.stats.hits, 15);
        check(&p);
    }

    proptest! {
        #[test]
        fn plans_are_consistent_and_within_capacity(
            tiles in proptest::collection::vec((0u32..10, 1u64..50), 1..120),
            cap in 50u64..400,
            lookahead in 0usize..6,
            lru in any::<bool>(),
        ) {
            let trace: Vec<(TileId, u64)> = tiles.iter().map(|&(t, _)| (id(t), 10 + t as u64 * 4)).collect();
            let policy = if lru { Policy::Lru } else { Policy::Belady };
            let p = plan(&trace, cap, policy, lookahead).unwrap();
            prop_assert!(replay_peak(&p) <= cap);
            prop_assert!(p.stats.peak_bytes <= cap);
            check(&p);
        }
    }
}
