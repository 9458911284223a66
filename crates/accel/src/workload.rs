//! A workload on a real stream: the multiplies over tensors of a `.swire` stream as one
//! access trace (the same the executor follows), with each tile's costs for the timing
//! model ([`crate::sim`]), and the model run on it.

use crate::buffer::{Policy, TileId};
use crate::schedule;
use crate::sim::{self, HardwareSpec, Method, SimError, SimReport, TileCost};
use sparsewire_formats::tiling::TileGrid;
use sparsewire_metadata::{view_2d, Dtype, Header, Reconstruction, TensorMeta};

fn grid_of(meta: &TensorMeta) -> TileGrid {
    let n = meta.numel().unwrap_or(0);
    let (rows, cols) = view_2d(&meta.shape, n);
    TileGrid::new(rows, cols, meta.tile_shape)
}

/// The engine method that rebuilds tensor `meta`'s tiles (other rebuilds, such as
/// spatial or channels, are priced as the dictionary's; the MLP predictor as the learned
/// one, the row method nearest to it, which under-prices it: its rate is not calibrated).
pub fn method_of(meta: &TensorMeta) -> Method {
    match (&meta.reconstruction, meta.sparsification.is_some()) {
        (_, false) => Method::Dense,
        (Reconstruction::Zero, _) => Method::Zero,
        (Reconstruction::Linear, _) => Method::Linear,
        (Reconstruction::Learned { .. } | Reconstruction::Mlp { .. }, _) => Method::Learned,
        _ => Method::Dictionary,
    }
}

/// The tensors a workload multiplies by default: every 2-D float tensor, in file order.
pub fn matrices(header: &Header) -> Vec<usize> {
    header
        .tensors
        .iter()
        .enumerate()
        .filter(|(_, m)| {
            m.shape.len() == 2 && matches!(m.dtype, Dtype::BF16 | Dtype::F16 | Dtype::F32)
        })
        .map(|(i, _)| i)
        .collect()
}

/// A trace over one tile index space and each tile's costs.
pub type Workload = (Vec<(TileId, u64)>, Vec<TileCost>);

/// The workload's tiles (tensors in order, each swept `passes` times) as a trace over one
/// tile index space, with each tile's costs.
pub fn workload(header: &Header, tensors: &[usize], passes: usize) -> Result<Workload, SimError> {
    let mut trace = Vec::new();
    let mut costs = Vec::new();
    for &t in tensors {
        let meta = header.tensors.get(t).ok_or(SimError::UnknownTensor {
            tensors: header.tensors.len(),
            tensor: t,
        })?;
        let method = method_of(meta);
        let grid = grid_of(meta);
        let vb = (meta.dtype.bits() / 8).max(1);
        let first = costs.len();
        for (k, e) in meta.tiles.iter().enumerate() {
            let n = grid.rect(k as u64).numel();
            costs.push(TileCost {
                stored_bytes: e.len,
                dense_bytes: n * vb,
                elements: n,
                method,
            });
        }
        for _ in 0..passes.max(1) {
            for (k, c) in costs.iter().enumerate().skip(first) {
                let id = TileId {
                    tensor: 0,
                    tile: k as u32,
                };
                trace.push((id, c.elements * 4));
            }
        }
    }
    Ok((trace, costs))
}

/// Simulates `tensors` of a stream (its header) at `batch` on `hw`.
pub fn simulate_stream(
    header: &Header,
    tensors: &[usize],
    batch: usize,
    passes: usize,
    lookahead: usize,
    hw: &HardwareSpec,
) -> Result<SimReport, SimError> {
    Ok(simulate_timeline(header, tensors, batch, passes, lookahead, hw)?.0)
}

/// [`simulate_stream`] with the schedule in time (for a Gantt chart).
pub fn simulate_timeline(
    header: &Header,
    tensors: &[usize],
    batch: usize,
    passes: usize,
    lookahead: usize,
    hw: &HardwareSpec,
) -> Result<(SimReport, sim::Timeline), SimError> {
    hw.validate()?;
    let (trace, costs) = workload(header, tensors, passes)?;
    let plan =
        schedule::plan(&trace, hw.buffer_bytes(), Policy::Belady, lookahead).map_err(|source| {
            SimError::Buffer {
                capacity: hw.lmd.capacity_bytes,
                staging: hw.lmd.staging_bytes,
                source,
            }
        })?;
    sim::simulate(&plan, &costs, batch, tensors.len() * passes.max(1), hw)
}
