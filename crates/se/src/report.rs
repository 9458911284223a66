//! What the lossy host stage did, per tensor and for a budget; field names are stable
//! (the README documents them for `--json` users).

use crate::job::{Job, Summary};
use serde::Serialize;
use sparsewire_metadata::{display, Criterion, Pattern, Plane, TensorMeta};

/// What happened to one sparsified tensor.
#[derive(Debug, Clone, Serialize)]
pub struct TensorSparsity {
    #[serde(serialize_with = "display::serialize")]
    pub criterion: Criterion,
    #[serde(serialize_with = "display::serialize")]
    pub pattern: Pattern,
    /// Fraction of elements dropped, as achieved.
    pub sparsity: f64,
    /// Stored bits per element of the tensor: tiles plus shared models.
    pub bits_per_element: f64,
    /// Of which the masks.
    pub mask_bits_per_element: f64,
    /// H(density): the order-0 bound of an unstructured mask.
    pub mask_entropy_bits_per_element: f64,
    pub rel_frobenius: f64,
    pub snr_db: f64,
    pub rel_output: Option<f64>,
    /// The calibration activation used, when one matched.
    pub calibration: Option<String>,
    /// The reconstruction the receiver applies (`zero`, `linear`, `learned`, ...).
    pub reconstruction: sparsewire_metadata::ReconstructionMethod,
    /// error(zero-fill) / error(reconstruction): above 1 when rebuilding pays, below 1
    /// when a forced method does worse than zero-fill.
    pub reconstruction_gain: f64,
    /// Why the criterion or the reconstruction differs from what was asked.
    pub note: Option<String>,
}

/// Adaptive against uniform allocation at the same (estimated) bytes.
#[derive(Debug, Clone, Serialize)]
pub struct AllocationReport {
    pub budget_bytes: u64,
    /// Σ numel · rel_err² (see [`crate::budget`]), adaptive and uniform.
    pub adaptive_cost: f64,
    pub uniform_cost: f64,
    pub uniform_sparsity: f64,
    /// uniform_cost / adaptive_cost (> 1: adaptive is better).
    pub gain: f64,
}

/// A job's report, from its outcome and the header entry the stream writer made of it.
pub fn tensor(job: &Job<'_>, s: &Summary, meta: &TensorMeta) -> TensorSparsity {
    let n = meta.numel().unwrap_or(0).max(1) as f64;
    let models: u64 = meta.models.iter().map(|m| m.len() as u64).sum();
    let stored: u64 = meta.tiles.iter().map(|t| t.len).sum::<u64>() + models;
    let mask: u64 = meta
        .tiles
        .iter()
        .flat_map(|t| &t.streams)
        .filter(|s| matches!(s.plane, Plane::Mask(_)))
        .map(|s| s.len)
        .sum();
    TensorSparsity {
        criterion: s.criterion,
        pattern: job.config.pattern,
        sparsity: s.sparsity,
        bits_per_element: stored as f64 * 8.0 / n,
        mask_bits_per_element: mask as f64 * 8.0 / n,
        mask_entropy_bits_per_element: sparsewire_sparse::binary_entropy(1.0 - s.sparsity),
        rel_frobenius: s.errors.rel_frobenius,
        snr_db: s.errors.snr_db,
        rel_output: s.errors.rel_output,
        calibration: job.calibration().map(str::to_string),
        reconstruction: meta.reconstruction.method(),
        reconstruction_gain: s.gain,
        note: job.note.clone(),
    }
}
