//! Sparsification-aware training: what is trained is exactly what crosses the link.
//!
//! The pieces, in the order a training step meets them:
//!
//! 1. [`Sparsifier`] (torch.ao.pruning's shape): parameter groups, each with a criterion
//!    (magnitude, first-order Taylor `|g w|` as a moving average, or movement scores), a
//!    pattern from `sparsewire-se` (unstructured, N:M, block, channel) and a target reached
//!    on a [`Schedule`] (one-shot, gradual with the cubic schedule, iterative), per
//!    parameter or, with [`Scope::Global`], over the group's weights ranked together.
//!    [`Sparsifier::prepare`] attaches masks, [`Sparsifier::weight`] is the masked weight
//!    the forward pass uses (so dropped weights get no gradient), [`Sparsifier::observe`]
//!    accumulates importance from the real gradients, [`Sparsifier::step`] updates masks
//!    when the schedule says, [`Sparsifier::apply`] keeps dropped weights exactly zero
//!    after the optimiser's update, and [`Sparsifier::squash`] writes the model as a
//!    `.swire` through the stream writer: the saved file is the small, transferable thing.
//! 2. [`activation::sparsify_ste`]: the tensors that cross the link (a layer's input) go
//!    through the runtime activation sparsifier (`se::activations`, the same code that runs
//!    at serving time) in the forward pass, with a straight-through estimator backward.
//! 3. [`regularize`]: L1 and group lasso over output channels, each switchable, scaled per
//!    tensor by what its bytes cost on the link.
//! 4. [`digits`]: a small CNN on the sklearn digits (3x3 conv filters, a classifier head)
//!    and [`run`]: the training loop behind `sparsewire train --config FILE.toml`.
//! 5. [`scorer`]: the trainable scorer, a small MLP over per-element features (magnitude,
//!    input norm, correlation terms, row and column scale) fitted through a relaxed top-k to
//!    the layer output error on calibration inputs; `cargo xtask scorer` compares it with
//!    magnitude, Wanda and SparseGPT on held-out inputs.
//! 6. [`rebuild`]: the MLP rebuild predictor of `re` trained end to end on the
//!    reconstruction loss, from the post-hoc fit (`cargo run --release -p sparsewire-train
//!    --example mlp_rebuild` compares the two on real tensors).
//!
//! Autodiff is candle's (`candle-core` + `candle-nn`, already a dependency of the eval
//! crate); see docs/ARCHITECTURE.md for the choice.

pub mod activation;
pub mod digits;
pub mod importance;
pub mod rebuild;
pub mod regularize;
pub mod run;
pub mod schedule;
pub mod scorer;
pub mod sparsifier;

pub use run::{
    dense_baseline, train, train_cached, DenseBaseline, DistillConfig, Init, TrainConfig,
    TrainReport,
};
pub use schedule::Schedule;
pub use sparsifier::{Group, Scope, Sparsifier, TrainCriterion, TrainRebuild};

/// Errors of training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("config: {0}")]
    Config(String),
    #[error("parameter {name:?} is not in the model (it has: {have})")]
    NoSuchParameter { name: String, have: String },
    #[error("parameter {name:?} of shape {shape:?} cannot hold the {pattern} pattern: {why}")]
    Pattern {
        name: String,
        shape: Vec<usize>,
        pattern: sparsewire_metadata::Pattern,
        why: String,
    },
    #[error("the loss is not finite at step {step} (last finite loss {last:?}): lower the learning rate or the regularizer weights; nothing was written")]
    NonFiniteLoss { step: u64, last: Option<f32> },
    #[error(transparent)]
    Sparsify(#[from] sparsewire_se::SparsifyError),
    #[error(transparent)]
    Activation(#[from] sparsewire_se::activations::ActivationError),
    #[error(transparent)]
    Stream(#[from] sparsewire_stream::StreamError),
    #[error(transparent)]
    Format(#[from] sparsewire_formats::FormatError),
    #[error("{path}: {reason}")]
    Data { path: String, reason: String },
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
