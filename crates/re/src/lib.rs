//! The reconstruction engine (accelerator side, docs/SPEC.md §6): rebuilds dense tiles
//! from what crossed the link.
//!
//! Takes a tile's kept values and its [`Mask`] and a
//! [`sparsewire_metadata::Reconstruction`] method; gives the dense tile. The foundation
//! release implements `Zero` (dropped elements are 0, which is also how a dense tile
//! passes through unchanged) and `Channels` ([`rebuild_channels`]: rows dropped by the
//! correlation criterion rebuilt from kept rows). Interpolation, learned predictors,
//! dictionaries, the reconstruction buffer and on-demand tile scheduling arrive with
//! issue #4.
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
    #[error("channel combination for row {row} names row {source_row}, outside 0..{rows}, or has {sources} sources but {coefs} coefficients")]
    BadCombination {
        row: u32,
        source_row: u32,
        rows: usize,
        sources: usize,
        coefs: usize,
    },
}

/// Rebuilds dropped rows of a `[rows, cols]` matrix (row-major f32) from their stored
/// combinations of kept rows. Every index comes from a header, so each is checked.
pub fn rebuild_channels(
    values: &mut [f32],
    cols: usize,
    combinations: &[sparsewire_metadata::ChannelCombination],
) -> Result<(), ReconstructError> {
    let rows = values.len() / cols.max(1);
    for c in combinations {
        let bad = |source_row: u32| ReconstructError::BadCombination {
            row: c.row,
            source_row,
            rows,
            sources: c.sources.len(),
            coefs: c.coefs.len(),
        };
        if c.sources.len() != c.coefs.len() || c.row as usize >= rows {
            return Err(bad(c.row));
        }
        if let Some(&s) = c.sources.iter().find(|&&s| s as usize >= rows) {
            return Err(bad(s));
        }
        let mut acc = vec![0f64; cols];
        for (&s, &k) in c.sources.iter().zip(&c.coefs) {
            let src = &values[s as usize * cols..(s as usize + 1) * cols];
            for (a, &v) in acc.iter_mut().zip(src) {
                *a += k as f64 * v as f64;
            }
        }
        let dst = &mut values[c.row as usize * cols..(c.row as usize + 1) * cols];
        for (d, a) in dst.iter_mut().zip(acc) {
            *d = a as f32;
        }
    }
    Ok(())
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
        // Rows are rebuilt on the dense tensor, after zero-fill: see `rebuild_channels`.
        Reconstruction::Channels { .. } => reconstruct_f32(kept, mask, &Reconstruction::Zero),
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

    #[test]
    fn channels_rebuild_and_bad_indices_are_errors() {
        use sparsewire_metadata::ChannelCombination;
        // Row 1 = 2 * row 0 was dropped (zeros); rebuild it.
        let mut v = vec![1.0, -2.0, 0.0, 0.0, 0.5, 0.5];
        let c = ChannelCombination {
            row: 1,
            sources: vec![0],
            coefs: vec![2.0],
        };
        rebuild_channels(&mut v, 2, std::slice::from_ref(&c)).unwrap();
        assert_eq!(&v[2..4], &[2.0, -4.0]);
        let bad = ChannelCombination {
            row: 1,
            sources: vec![9],
            coefs: vec![1.0],
        };
        assert!(rebuild_channels(&mut v, 2, &[bad]).is_err());
        let bad = ChannelCombination {
            row: 1,
            sources: vec![0],
            coefs: vec![],
        };
        assert!(rebuild_channels(&mut v, 2, &[bad]).is_err());
    }
}
