//! Real-model evaluation (issue #6): all-MiniLM-L6-v2 end to end on sparsified and
//! reconstructed weights and on dynamically sparsified activations, measured against the
//! original model on a sentence set written for the project.
//!
//! - [`model`]: the forward pass (candle), with a hook on the transferred activations;
//! - [`metrics`]: cosine, nearest-neighbour agreement, Spearman correlation;
//! - [`grid`]: the settings swept, and one cell's run: bytes against quality;
//! - [`filters`]: the PP-OCR conv filters at tensor level, per layer type;
//! - [`report`]: results.json, results.md and the plots.

pub mod cells;
pub mod checkpoint;
pub mod filters;
pub mod grid;
pub mod metrics;
pub mod model;
pub mod recover;
pub mod report;
pub mod sentences;
