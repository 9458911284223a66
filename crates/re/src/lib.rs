//! The reconstruction engine (accelerator side, docs/SPEC.md §6): rebuilds dense tiles
//! from what crossed the link.
//!
//! Takes a tile's kept values and its [`Mask`] and a
//! [`sparsewire_metadata::Reconstruction`] method; gives the dense tile. The foundation
//! release implements `Zero` (dropped elements are 0, which is also how a dense tile
//! passes through unchanged). Interpolation, learned predictors, dictionaries, the
//! reconstruction buffer and on-demand tile scheduling arrive with issue #4.
#![forbid(unsafe_code)]

pub use sparsewire_masks::Mask;
pub use sparsewire_metadata::Reconstruction;

/// Errors of the reconstruction engine.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReconstructError {
    #[error("mask keeps {kept} elements but {values} values were given")]
    ValueCount { kept: usize, values: usize },
    #[error("reconstruction method {0} is not implemented by this version")]
    Unsupported(&'static str),
}

/// Scatters `kept` (the kept values in index order) into a dense tile of `mask.len()`
/// elements and fills the dropped ones by `method`.
pub fn reconstruct_f32(
    kept: &[f32],
    mask: &Mask,
    method: &Reconstruction,
) -> Result<Vec<f32>, ReconstructError> {
    if mask.kept() != kept.len() {
        return Err(ReconstructError::ValueCount {
            kept: mask.kept(),
            values: kept.len(),
        });
    }
    match method {
        Reconstruction::Zero => {
            let mut out = vec![0.0f32; mask.len()];
            for (i, &v) in mask.kept_indices().zip(kept) {
                out[i] = v;
            }
            Ok(out)
        }
        Reconstruction::Linear => Err(ReconstructError::Unsupported("linear")),
        Reconstruction::Learned { .. } => Err(ReconstructError::Unsupported("learned")),
        Reconstruction::Dictionary { .. } => Err(ReconstructError::Unsupported("dictionary")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_fill_keeps_kept_values_bit_exact() {
        let mask = Mask::from_kept([true, false, true, true, false]);
        let out = reconstruct_f32(&[-0.0, f32::NAN, 2.5], &mask, &Reconstruction::Zero).unwrap();
        assert_eq!(out[0].to_bits(), (-0.0f32).to_bits());
        assert!(out[2].is_nan() && out[1] == 0.0 && out[4] == 0.0 && out[3] == 2.5);
        assert!(reconstruct_f32(&[1.0], &mask, &Reconstruction::Zero).is_err());
    }
}
