//! Activation sparsity in the loop, with a straight-through estimator.
//!
//! Forward: a layer's input goes through the runtime activation sparsifier
//! (`sparsewire_se::activations`, the code that runs when activations are shipped), per
//! example: the largest `keep` fraction of `|a|` survives. Backward: the gradient passes as
//! if nothing had been dropped (`y = x + stopgrad(x * m - x)`), so the network learns to
//! live with the sparsity instead of being blind to it.

use crate::Result;
use candle_core::Tensor;
use sparsewire_se::activations::{sparsify_activations, to_bytes, ActivationPolicy};
use sparsewire_sparse::SparseTile;

/// `x` (`[batch, ...]`) with each example's smallest activations dropped, and the bytes
/// the sparse activations take on the link (`se::activations::to_bytes`, f32 values).
pub fn sparsify_ste(x: &Tensor, keep: f32) -> Result<(Tensor, usize)> {
    let (y, tile) = ste_tile(x, ActivationPolicy::KeepFraction(keep))?;
    Ok((y, to_bytes(&tile).len()))
}

/// `x` (`[rows, ...]`, one row per example or token) through the runtime activation
/// sparsifier under `policy`, row by row, with the straight-through gradient: what a
/// training forward pass uses where the inference path ships a sparse tile.
pub fn ste(x: &Tensor, policy: ActivationPolicy) -> Result<Tensor> {
    Ok(ste_tile(x, policy)?.0)
}

fn ste_tile(x: &Tensor, policy: ActivationPolicy) -> Result<(Tensor, SparseTile)> {
    let dims = x.dims().to_vec();
    let rows = dims.first().copied().unwrap_or(1);
    let flat: Vec<f32> = x
        .flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1()?;
    let cols = flat.len() / rows.max(1);
    let tile = sparsify_activations(&flat, rows, cols, policy)?;
    let m: Vec<f32> = (0..flat.len())
        .map(|i| if tile.mask().is_kept(i) { 1.0 } else { 0.0 })
        .collect();
    let m = Tensor::from_vec(m, dims.as_slice(), x.device())?.to_dtype(x.dtype())?;
    let dropped = (x.mul(&m)? - x)?.detach();
    Ok(((x + dropped)?, tile))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn forward_drops_and_backward_passes_straight_through() {
        let x = Var::from_vec(
            vec![0.1f32, -3.0, 0.5, 2.0, -0.2, 0.05, 1.0, -1.5],
            (2, 4),
            &Device::Cpu,
        )
        .unwrap();
        let (y, bytes) = sparsify_ste(x.as_tensor(), 0.5).unwrap();
        assert_eq!(
            y.to_vec2::<f32>().unwrap(),
            vec![vec![0.0, -3.0, 0.0, 2.0], vec![0.0, 0.0, 1.0, -1.5]]
        );
        assert!(bytes > 0 && bytes < 8 * 4);
        let loss = (y * 3.0).unwrap().sum_all().unwrap();
        let g = loss.backward().unwrap();
        let gx = g.get(x.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(gx, vec![vec![3.0; 4]; 2], "straight through");
    }
}
