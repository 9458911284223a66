//! The sparsification engine (host side, docs/SPEC.md §6): decides which elements of each
//! tensor cross the link.
//!
//! Takes a weight matrix (the tensor's 2-D view `[rows, cols]`: linear `[out, in]`, conv
//! `[out, in*kh*kw]`), a [`SparsifyConfig`] (criterion, pattern, sparsity) and, for the
//! activation-aware criteria, the layer's calibration inputs; gives the kept flags, the
//! values to store (SparseGPT updates the kept ones) and error metrics ([`Sparsified`]).
//!
//! Stages, one module each, for one matrix: [`criteria`] scores every element (higher =
//! keep), [`pattern`] keeps the highest scores in a pattern, [`sparsegpt`] does both at once
//! with second-order compensation, [`metrics`] measures what was lost. For a whole file:
//! [`calibration`] matches calibration inputs to layers, [`job`] decides per tensor what
//! runs (criterion fallbacks) and runs it, choosing the reconstruction with
//! `sparsewire-re`, giving a [`sparsewire_sparse::SparseTensor`] for the stream writer;
//! [`mod@levels`] picks each tensor's sparsity (uniform, by error, or under a byte budget with
//! [`budget`]'s allocator); [`report`] says what happened. [`activations`] sparsifies
//! activations at run time (nothing on disk).
//!
//! | criterion | score | needs |
//! |---|---|---|
//! | `Magnitude` | \|w\| | — |
//! | `Taylor` | \|w · g\| | gradients of the same shape |
//! | `Wanda` | \|w_ij\| · ‖x_j‖₂ | calibration inputs `X [tokens, in]` |
//! | `SparseGpt` | OBS: w² / [H⁻¹]_jj, with compensation | calibration inputs |
//! | `Correlation` | rows: 1 − best \|cos\| with another row | — (channel pattern) |
//! | `Scorer` | a trained MLP's score ([`scorer`]): Wanda's log score plus a learned residual | a scorer file and calibration inputs |
#![forbid(unsafe_code)]

pub mod activations;
pub mod budget;
pub mod calibration;
pub mod criteria;
pub mod job;
pub mod levels;
pub mod metrics;
pub mod pattern;
pub mod report;
pub mod scorer;
pub mod sparsegpt;

pub use job::{plan, Job, Outcome};
pub use levels::{levels, Budget, SparsifyOptions};
pub use sparsewire_re::Rebuild;
use sparsewire_sparse::Mask;

pub use sparsewire_metadata::{Criterion, Pattern};

/// Errors of the sparsification engine.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum SparsifyError {
    #[error("sparsity {0} is outside [0, 1)")]
    SparsityOutOfRange(f32),
    #[error("{what} must be positive and finite, got {value}")]
    OutOfRange { what: &'static str, value: f64 },
    #[error("N:M pattern {n}:{m} needs 0 < N < M <= 16")]
    BadNM { n: u8, m: u8 },
    #[error("block {block:?} is larger than the tensor's 2-D view {shape:?}")]
    BlockTooLarge {
        block: (usize, usize),
        shape: (usize, usize),
    },
    #[error("criterion {criterion:?} needs {what}")]
    Needs {
        criterion: Criterion,
        what: &'static str,
    },
    #[error("{what} has {got} values per row, the weight has {expected} columns")]
    ShapeMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error(transparent)]
    SparseGpt(#[from] sparsegpt::SparseGptError),
    #[error("tensor {tensor:?}: {reason}")]
    Calibration { tensor: String, reason: String },
    #[error("tensor {tensor:?}: {source}")]
    Rebuild {
        tensor: String,
        source: sparsewire_re::RebuildError,
    },
    #[error("tensor {tensor:?}: {source}")]
    Tile {
        tensor: String,
        source: sparsewire_sparse::SparseError,
    },
    #[error("tensor {tensor:?}: element {index} is {value}; pruning ranks weights by size and cannot rank NaN or infinity (fix the weights, leave the tensor lossless, or say --nonfinite keep or drop)")]
    NonFinite {
        tensor: String,
        index: usize,
        value: f32,
    },
    #[error("tensor {tensor:?}: the {m}-element group at element {index} has {count} NaN or infinite values; with --nonfinite {policy} and {n}:{m} at most {limit} fit")]
    NonFiniteGroup {
        tensor: String,
        index: usize,
        count: usize,
        n: u8,
        m: u8,
        policy: NonFinite,
        limit: u8,
    },
    #[error("reading tensor {tensor:?}: {reason}")]
    Read { tensor: String, reason: String },
    #[error("scorer: {0}")]
    Scorer(String),
    #[error("a budget of {budget} bytes cannot be met; the closest reachable is {closest} bytes")]
    Budget { budget: u64, closest: u64 },
}

/// What pruning does with NaN and infinite weights, which no criterion can rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NonFinite {
    /// Refuse the tensor, naming the first such element (the default: such weights are
    /// usually a bug upstream).
    #[default]
    Error,
    /// Keep them, stored bit for bit; the rest is ranked as if they were zero, and the
    /// tensor is rebuilt by zero-fill (an interpolation would spread them).
    Keep,
    /// Drop them (rebuilt like any dropped value); the rest is ranked as usual.
    Drop,
}

impl std::str::FromStr for NonFinite {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "error" => NonFinite::Error,
            "keep" => NonFinite::Keep,
            "drop" => NonFinite::Drop,
            _ => return Err(format!("unknown policy {s:?} (error, keep, drop)")),
        })
    }
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NonFinite::Error => "error",
            NonFinite::Keep => "keep",
            NonFinite::Drop => "drop",
        })
    }
}

/// What to keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SparsifyConfig {
    pub criterion: Criterion,
    pub pattern: Pattern,
    /// Fraction of elements to drop, in [0, 1). For N:M it is `1 - N/M`.
    pub sparsity: f32,
}

impl SparsifyConfig {
    /// Keep everything: the stream is lossless.
    pub fn lossless() -> Self {
        SparsifyConfig {
            criterion: Criterion::Magnitude,
            pattern: Pattern::Unstructured,
            sparsity: 0.0,
        }
    }

    /// Checks ranges (sparsity, N:M).
    pub fn check(&self) -> Result<(), SparsifyError> {
        if !(0.0..1.0).contains(&self.sparsity) {
            return Err(SparsifyError::SparsityOutOfRange(self.sparsity));
        }
        if let Pattern::NM { n, m } = self.pattern {
            if !(n > 0 && n < m && m <= 16) {
                return Err(SparsifyError::BadNM { n, m });
            }
        }
        Ok(())
    }

    /// Whether every element is kept.
    pub fn is_lossless(&self) -> bool {
        self.sparsity == 0.0 && !matches!(self.pattern, Pattern::NM { .. })
    }

    /// The sparsity the pattern implies (N:M fixes it).
    pub fn effective_sparsity(&self) -> f64 {
        match self.pattern {
            Pattern::NM { n, m } => 1.0 - n as f64 / m as f64,
            _ => self.sparsity as f64,
        }
    }
}

/// A layer's calibration inputs: `tokens` rows of `cols` values (`X`, row-major).
#[derive(Debug, Clone, Copy)]
pub struct LayerInputs<'a> {
    pub x: &'a [f32],
    pub tokens: usize,
}

/// What sparsifying one matrix gave.
#[derive(Debug, Clone)]
pub struct Sparsified {
    /// Kept elements, row-major over the 2-D view.
    pub mask: Mask,
    /// SparseGPT's compensated values (0 where dropped); empty when the kept values are
    /// the originals (`updated` is false).
    pub values: Vec<f32>,
    /// Whether `values` differ from the input at kept positions (SparseGPT).
    pub updated: bool,
    /// How the reconstruction engine rebuilds what was dropped (`Channels` for the
    /// correlation criterion with the channel pattern, else `Zero`).
    pub reconstruction: sparsewire_metadata::Reconstruction,
}

/// Rows rebuilt per dropped channel by the correlation criterion.
pub const CHANNEL_SOURCES: usize = 4;

/// Sparsifies a `[rows, cols]` matrix. `inputs` are needed by Wanda and SparseGPT,
/// `gradients` (same shape) by Taylor.
pub fn sparsify(
    w: &[f32],
    rows: usize,
    cols: usize,
    config: &SparsifyConfig,
    inputs: Option<LayerInputs<'_>>,
    gradients: Option<&[f32]>,
) -> Result<Sparsified, SparsifyError> {
    config.check()?;
    let s = config.effective_sparsity();
    if config.criterion == Criterion::SparseGpt {
        let inp = inputs.ok_or(SparsifyError::Needs {
            criterion: Criterion::SparseGpt,
            what: "calibration inputs (--calibration)",
        })?;
        check_inputs(&inp, cols)?;
        let h = sparsegpt::hessian(inp.x, inp.tokens, cols);
        let (mask, values) = sparsegpt::prune(w, rows, cols, &h, config.pattern, s)?;
        return Ok(Sparsified {
            mask,
            values,
            updated: true,
            reconstruction: sparsewire_metadata::Reconstruction::Zero,
        });
    }
    if config.criterion == Criterion::Magnitude && config.pattern == Pattern::Unstructured {
        // |w| ranked as the weights are read: the same mask, no score vector.
        let mask = pattern::unstructured_magnitude(w, s);
        return finish(mask, rows, cols, w, config);
    }
    let scores = match config.criterion {
        Criterion::Magnitude => criteria::magnitude(w),
        Criterion::Predictable => criteria::predictable(w, cols),
        Criterion::Taylor => {
            let g = gradients.ok_or(SparsifyError::Needs {
                criterion: Criterion::Taylor,
                what: "gradients of the same shape (--gradients)",
            })?;
            if g.len() != w.len() {
                return Err(SparsifyError::ShapeMismatch {
                    what: "the gradient",
                    expected: w.len(),
                    got: g.len(),
                });
            }
            criteria::taylor(w, g)
        }
        Criterion::Wanda => {
            let inp = inputs.ok_or(SparsifyError::Needs {
                criterion: Criterion::Wanda,
                what: "calibration inputs (--calibration)",
            })?;
            check_inputs(&inp, cols)?;
            criteria::wanda(w, cols, &criteria::input_norms(inp.x, inp.tokens, cols))
        }
        Criterion::Correlation => criteria::correlation(w, rows, cols),
        Criterion::Movement => {
            return Err(SparsifyError::Needs {
                criterion: Criterion::Movement,
                what: "scores accumulated during training (sparsewire train); after training, prune by magnitude or taylor",
            })
        }
        Criterion::Scorer => {
            return Err(SparsifyError::Needs {
                criterion: Criterion::Scorer,
                what: "a trained scorer (--scorer FILE; the library's sparsify_with_scorer)",
            })
        }
        Criterion::SparseGpt => unreachable!("handled above"),
    };
    select(&scores, rows, cols, w, config)
}

/// Sparsifies a `[rows, cols]` matrix by a trained scorer's scores ([`scorer`]), computed
/// from the weights and the Gram matrix of `inputs` at the kept fraction the config
/// implies, then kept in the config's pattern like any other criterion's scores.
pub fn sparsify_with_scorer(
    w: &[f32],
    rows: usize,
    cols: usize,
    config: &SparsifyConfig,
    inputs: LayerInputs<'_>,
    scorer: &scorer::Scorer,
) -> Result<Sparsified, SparsifyError> {
    config.check()?;
    scorer.check()?;
    check_inputs(&inputs, cols)?;
    if w.len() != rows * cols {
        return Err(SparsifyError::ShapeMismatch {
            what: "the weight",
            expected: rows * cols,
            got: w.len(),
        });
    }
    let keep = (1.0 - config.effective_sparsity()) as f32;
    let g = scorer::gram(inputs.x, inputs.tokens, cols);
    let scores = scorer.scores(w, rows, cols, &g, keep);
    select(&scores, rows, cols, w, config)
}

/// Keeps the highest `scores` in the config's pattern (the criteria's common tail).
fn select(
    scores: &[f32],
    rows: usize,
    cols: usize,
    w: &[f32],
    config: &SparsifyConfig,
) -> Result<Sparsified, SparsifyError> {
    let s = config.effective_sparsity();
    let mask = pattern::select(scores, rows, cols, config.pattern, s)?;
    finish(mask, rows, cols, w, config)
}

/// What a criterion's mask becomes: the kept values untouched, and the rebuild the
/// pattern implies (channel combinations for correlation-ranked channels, else zero).
fn finish(
    mask: Mask,
    rows: usize,
    cols: usize,
    w: &[f32],
    config: &SparsifyConfig,
) -> Result<Sparsified, SparsifyError> {
    let values = Vec::new();
    let reconstruction = if config.criterion == Criterion::Correlation
        && config.pattern == Pattern::Channel
    {
        let keep_row: Vec<bool> = (0..rows).map(|r| mask.is_kept(r * cols)).collect();
        sparsewire_metadata::Reconstruction::Channels {
            combinations: criteria::channel_combinations(w, rows, cols, &keep_row, CHANNEL_SOURCES),
        }
    } else {
        sparsewire_metadata::Reconstruction::Zero
    };
    Ok(Sparsified {
        mask,
        values,
        updated: false,
        reconstruction,
    })
}

fn check_inputs(inp: &LayerInputs<'_>, cols: usize) -> Result<(), SparsifyError> {
    if inp.tokens == 0 || inp.x.len() != inp.tokens * cols {
        return Err(SparsifyError::ShapeMismatch {
            what: "the calibration input",
            expected: cols,
            got: inp.x.len() / inp.tokens.max(1),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The crate's tests' pseudo-random numbers: xorshift64 from `seed`, each call the
    /// next state.
    pub(crate) fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    #[test]
    fn config_checks() {
        assert!(SparsifyConfig::lossless().check().is_ok());
        let mut c = SparsifyConfig::lossless();
        c.sparsity = 1.0;
        assert_eq!(c.check(), Err(SparsifyError::SparsityOutOfRange(1.0)));
        c.sparsity = 0.0;
        c.pattern = Pattern::NM { n: 4, m: 4 };
        assert!(c.check().is_err());
        c.pattern = Pattern::NM { n: 2, m: 4 };
        assert_eq!(c.effective_sparsity(), 0.5);
    }

    #[test]
    fn wanda_keeps_the_weight_on_the_louder_input() {
        // Two weights of equal magnitude; input channel 1 is ten times louder.
        let w = [0.5f32, -0.5];
        let x = [0.1f32, 1.0, -0.1, -1.0];
        let cfg = SparsifyConfig {
            criterion: Criterion::Wanda,
            pattern: Pattern::Unstructured,
            sparsity: 0.5,
        };
        let s = sparsify(&w, 1, 2, &cfg, Some(LayerInputs { x: &x, tokens: 2 }), None).unwrap();
        assert_eq!(s.mask, Mask::from_bools(&[false, true]));
        // Magnitude alone would keep the larger weight.
        let w = [0.6f32, -0.5];
        let cfg = SparsifyConfig {
            criterion: Criterion::Magnitude,
            ..cfg
        };
        assert_eq!(
            sparsify(&w, 1, 2, &cfg, None, None).unwrap().mask,
            Mask::from_bools(&[true, false])
        );
    }

    #[test]
    fn missing_inputs_are_clear_errors() {
        let cfg = SparsifyConfig {
            criterion: Criterion::Wanda,
            pattern: Pattern::Unstructured,
            sparsity: 0.5,
        };
        assert!(matches!(
            sparsify(&[1.0, 2.0], 1, 2, &cfg, None, None),
            Err(SparsifyError::Needs { .. })
        ));
        let x = [1.0f32; 3];
        assert!(matches!(
            sparsify(
                &[1.0, 2.0],
                1,
                2,
                &cfg,
                Some(LayerInputs { x: &x, tokens: 1 }),
                None
            ),
            Err(SparsifyError::ShapeMismatch { .. })
        ));
    }
}
