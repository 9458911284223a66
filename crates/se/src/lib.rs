//! The sparsification engine (host side, docs/SPEC.md §6): decides which elements of each
//! tensor cross the link.
//!
//! Takes tensors and a [`SparsifyConfig`] (importance criterion, sparsity pattern, target
//! sparsity or budget); gives, per tensor, a kept-element mask and the kept values, with the
//! [`sparsewire_metadata::Sparsification`] record the reconstruction engine needs. The
//! foundation release runs the lossless configuration only (every element kept: sparsity
//! 0); scoring (magnitude, Taylor, Wanda, SparseGPT, correlation), patterns (unstructured,
//! N:M, block, channel) and budgets arrive with issue #3, and any other configuration is
//! refused with [`SparsifyError::NotYetSupported`] rather than silently ignored.
#![forbid(unsafe_code)]

pub use sparsewire_metadata::{Criterion, Pattern};

/// Errors of the sparsification engine.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum SparsifyError {
    #[error("sparsity {0} is outside [0, 1)")]
    SparsityOutOfRange(f32),
    #[error("{what} is not supported by this version of sparsewire (lossless only)")]
    NotYetSupported { what: String },
}

/// What to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct SparsifyConfig {
    pub criterion: Criterion,
    pub pattern: Pattern,
    /// Fraction of elements to drop, in [0, 1).
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

    /// Checks the configuration against what this version implements.
    pub fn check(&self) -> Result<(), SparsifyError> {
        if !(0.0..1.0).contains(&self.sparsity) {
            return Err(SparsifyError::SparsityOutOfRange(self.sparsity));
        }
        if self.sparsity > 0.0 {
            return Err(SparsifyError::NotYetSupported {
                what: format!(
                    "sparsity {} ({:?}, {:?})",
                    self.sparsity, self.criterion, self.pattern
                ),
            });
        }
        Ok(())
    }

    /// Whether every element is kept.
    pub fn is_lossless(&self) -> bool {
        self.sparsity == 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossless_passes_and_the_rest_is_refused_clearly() {
        assert!(SparsifyConfig::lossless().check().is_ok());
        let mut c = SparsifyConfig::lossless();
        c.sparsity = 1.0;
        assert_eq!(c.check(), Err(SparsifyError::SparsityOutOfRange(1.0)));
        c.sparsity = 0.5;
        assert!(matches!(
            c.check(),
            Err(SparsifyError::NotYetSupported { .. })
        ));
    }
}
