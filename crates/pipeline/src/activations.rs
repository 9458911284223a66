//! Activations at run time, as real stream bytes: `se` sparsifies an `[rows, cols]` f32
//! block per call (top-k per row, a kept fraction, or a threshold) -> the kept values are
//! converted to the transfer dtype -> `stream` codes mask and values into a one-tensor
//! `.swire` stream (checksummed, with its metadata), which [`crate::decompress`] turns back
//! into the zero-filled block. Every byte figure for a sparsified activation is the length
//! of this encode, not a count of kept values.

use crate::PipelineError;
use sparsewire_formats::Dtype;
use sparsewire_metadata::{Criterion, Pattern, Reconstruction, Sparsification};
use sparsewire_se::activations::{sparsify_activations, ActivationPolicy};
use sparsewire_sparse::{SparseTensor, SparseTile};
use sparsewire_stream::{EncodeOptions, Writer};

/// The name of the tensor an activation stream holds.
pub const TENSOR: &str = "activations";

/// Sparsifies `a` (`rows * cols` f32 values, row-major) under `policy`, stores the kept
/// values as `dtype` (F32, F16 or BF16) and codes the block as a stream.
pub fn encode_activations(
    a: &[f32],
    rows: usize,
    cols: usize,
    policy: ActivationPolicy,
    dtype: Dtype,
    opts: &EncodeOptions,
) -> Result<Vec<u8>, PipelineError> {
    if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
        return Err(PipelineError::ActivationDtype { dtype });
    }
    let tile = sparsify_activations(a, rows, cols, policy)?;
    encode_activation_tile(a, &tile, policy, dtype, opts)
}

/// [`encode_activations`] for a block `se` has already sparsified: `tile` is what
/// `sparsify_activations(a, rows, cols, policy)` returned (f32 kept values), for a caller
/// that also needs the tile itself.
pub fn encode_activation_tile(
    a: &[f32],
    tile: &SparseTile,
    policy: ActivationPolicy,
    dtype: Dtype,
    opts: &EncodeOptions,
) -> Result<Vec<u8>, PipelineError> {
    if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
        return Err(PipelineError::ActivationDtype { dtype });
    }
    let (rows, cols) = (tile.rows(), tile.cols());
    let kept = tile.mask().kept();
    let values: Vec<f32> = tile
        .values()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    let stored = sparsewire_formats::from_f32(dtype, &values).expect("a float dtype");
    let back = sparsewire_formats::to_f32(dtype, &stored).expect("a float dtype");
    // Relative error of what the receiver gets: the dropped values and the rounding.
    let (mut err, mut norm) = (0f64, 0f64);
    let mut next = back.iter();
    for (i, &x) in a.iter().enumerate() {
        let y = if tile.mask().is_kept(i) {
            *next.next().expect("one value per kept bit")
        } else {
            0.0
        };
        err += f64::from(x - y).powi(2);
        norm += f64::from(x).powi(2);
    }
    let n = (rows * cols).max(1);
    let info = Sparsification {
        rel_error: if norm > 0.0 {
            (err / norm).sqrt() as f32
        } else {
            0.0
        },
        threshold: match policy {
            ActivationPolicy::Threshold(t) => Some(t),
            _ => None,
        },
        ..Sparsification::new(
            Criterion::Magnitude,
            match policy {
                ActivationPolicy::Threshold(_) => Pattern::Unstructured,
                _ => Pattern::UnstructuredPerRow,
            },
            1.0 - kept as f32 / n as f32,
        )
    };
    let tile = SparseTile::new(rows, cols, dtype, tile.mask().to_owned(), stored)
        .expect("one value per kept bit");
    let sparse = SparseTensor {
        tile,
        info,
        reconstruction: Reconstruction::Zero,
    };
    let mut w = Writer::new(Vec::new(), opts.clone())?;
    w.add_sparse(TENSOR, &[rows as u64, cols as u64], &sparse)?;
    Ok(w.finish(vec![])?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_with_the_dropped_values_zero() {
        let (rows, cols) = (7, 33);
        let a: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 2654435761usize) % 1000) as f32 / 100.0 - 5.0)
            .collect();
        for dtype in [Dtype::F32, Dtype::BF16, Dtype::F16] {
            let bytes = encode_activations(
                &a,
                rows,
                cols,
                ActivationPolicy::KeepFraction(0.25),
                dtype,
                &EncodeOptions::default(),
            )
            .unwrap();
            let f = crate::decompress(&bytes).unwrap();
            let t = &f.tensors[0];
            assert_eq!((t.name.as_str(), t.dtype), (TENSOR, dtype));
            assert_eq!(t.shape, vec![rows as u64, cols as u64]);
            let got = t.to_f32_vec().unwrap();
            for r in 0..rows {
                let row = &got[r * cols..(r + 1) * cols];
                let kept = row.iter().filter(|v| **v != 0.0).count();
                assert_eq!(kept, (cols as f32 * 0.25).round() as usize, "row {r}");
                for (c, &v) in row.iter().enumerate() {
                    if v != 0.0 {
                        let x = a[r * cols + c];
                        assert!((v - x).abs() <= x.abs() * 1e-2, "{v} vs {x}");
                    }
                }
            }
            // Smaller than the dense block in the same dtype.
            assert!(
                bytes.len() < rows * cols * (dtype.bits() as usize / 8),
                "{}",
                bytes.len()
            );
        }
    }

    #[test]
    fn bad_requests_are_errors() {
        let a = [1f32; 6];
        let o = EncodeOptions::default();
        let e = encode_activations(&a, 2, 4, ActivationPolicy::TopKPerRow(1), Dtype::F32, &o);
        assert!(matches!(e, Err(PipelineError::Activation(_))), "{e:?}");
        let e = encode_activations(&a, 2, 3, ActivationPolicy::TopKPerRow(1), Dtype::I8, &o);
        assert!(
            matches!(e, Err(PipelineError::ActivationDtype { .. })),
            "{e:?}"
        );
    }
}
