//! The reconstruction engine (accelerator side, docs/SPEC.md §6.2): rebuilds dense f32
//! values from what crossed the link.
//!
//! Takes a tile's stored values ([`sparsewire_sparse::Values`]: dense, or a sparse tile's
//! mask and kept values) and the tensor's [`Reconstruction`] method from the header; gives
//! the dense f32 tile ([`rebuild_tile`]), a block of whole rows ([`rebuild_rows`]) or a
//! whole tensor ([`rebuild_tensor`]). Zero-fill comes from the expansion
//! ([`sparsewire_sparse::expand_f32`]); the methods then predict each dropped element:
//!
//! | method | from | needs |
//! |---|---|---|
//! | `Zero` | nothing | any tile |
//! | `Dictionary` | its column's entry | any tile (entries indexed by the tile's first column) |
//! | `Spatial` | kept 4-neighbours inside its conv kernel | tiles whose columns are whole kernels |
//! | `Linear`, `Learned`, `Mlp` | the nearest kept values of its row | whole rows |
//! | `Channels` | stored combinations of kept rows | the whole tensor |
//!
//! **Row context** (SPEC §6.2). For a dropped element, `l1`, `l2` are the nearest and
//! second-nearest kept values to its left, `r1`, `r2` to its right, at distances `dl`, `dr`.
//! `Linear` interpolates `(dr·l1 + dl·r1) / (dl + dr)` when both sides exist and extrapolates
//! from the two nearest on one side otherwise (exact on a linear ramp); one kept value is
//! copied, none gives zero. `Learned` predicts `p · [interp, l1, r1, 1]`. `Mlp` (the seed's
//! "small NN", [`mlp`]) runs a one-hidden-layer ReLU network on that context scaled by the
//! row's kept RMS.
//!
//! The host side fits the parameters ([`fit`]): `Learned` by ridge regression on the
//! dropped values' true values (least squares over a set containing `p = 0`, so never worse
//! than zero-fill on its tensor), `Dictionary` as each column's mean dropped value, `Mlp`
//! as random ReLU features with a ridge output layer (so never worse than zero-fill on the
//! elements it is fitted on either; `sparsewire-train` can then train every parameter). Which
//! method a tensor gets is the user's [`Rebuild`] choice (`auto`: the lowest error).
#![forbid(unsafe_code)]

pub mod fit;
#[doc(hidden)]
pub mod fuzzing;
mod methods;
pub mod mlp;

pub use fit::{fit_dictionary, fit_learned, fit_mlp};
pub use methods::{
    rebuild_expanded, rebuild_rows, rebuild_stored, rebuild_tensor, rebuild_tile, TilePlace,
};
pub use sparsewire_metadata::Reconstruction;

use sparsewire_sparse::SparseError;

/// Errors of the reconstruction engine.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RebuildError {
    #[error("expanding the stored values: {0}")]
    Expand(#[from] SparseError),
    #[error("{method} parameters are malformed: {reason}")]
    Params {
        method: &'static str,
        reason: String,
    },
    #[error("{method} rebuilds from whole rows; this tile has columns {col0}..{} of {full_cols} (decompress the tensor, or store it with tiles of whole rows)", col0 + cols)]
    NeedsWholeRows {
        method: &'static str,
        col0: usize,
        cols: usize,
        full_cols: usize,
    },
    #[error("{method} rebuilds from other rows of the tensor; it needs the whole tensor, not a tile or block")]
    NeedsWholeTensor { method: &'static str },
    #[error("channel combination for row {row} names row {source_row}, outside 0..{rows}, or has {sources} sources but {coefs} coefficients")]
    BadCombination {
        row: u32,
        source_row: u32,
        rows: usize,
        sources: usize,
        coefs: usize,
    },
    #[error("{values} values but a mask of {mask} elements")]
    MaskLength { values: usize, mask: usize },
}

/// How dropped values are rebuilt: the user's choice at compress time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Rebuild {
    /// Dropped elements are zero.
    #[default]
    Zero,
    /// Interpolated from the nearest kept elements of the row.
    Linear,
    /// A ridge predictor on the row context, fitted per tensor on the dropped values.
    Learned,
    /// One entry per column: the mean of the column's dropped values.
    Dictionary,
    /// Conv filters (`[out, in, kh, kw]`): kept neighbours inside each kernel.
    Spatial,
    /// A small MLP on the row context (16 hidden units), fitted per tensor.
    Mlp,
    /// Per tensor, whichever of these has the lowest error (zero-fill included).
    Auto,
}

impl std::str::FromStr for Rebuild {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "zero" => Rebuild::Zero,
            "linear" => Rebuild::Linear,
            "learned" => Rebuild::Learned,
            "dictionary" => Rebuild::Dictionary,
            "spatial" => Rebuild::Spatial,
            "mlp" => Rebuild::Mlp,
            "auto" => Rebuild::Auto,
            _ => {
                return Err(format!(
                "unknown reconstruction {s:?} (zero, linear, learned, dictionary, spatial, mlp, auto)"
            ))
            }
        })
    }
}

impl std::fmt::Display for Rebuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rebuild::Zero => "zero",
            Rebuild::Linear => "linear",
            Rebuild::Learned => "learned",
            Rebuild::Dictionary => "dictionary",
            Rebuild::Spatial => "spatial",
            Rebuild::Mlp => "mlp",
            Rebuild::Auto => "auto",
        })
    }
}

#[cfg(test)]
mod tests;
