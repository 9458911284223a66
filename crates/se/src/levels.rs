//! How much each tensor drops.
//!
//! [`Budget::Sparsity`] applies one sparsity everywhere (an N:M pattern fixes it).
//! [`Budget::MaxError`] gives each tensor the sparsest [`GRID`] level whose relative error
//! (output error when calibrated, else Frobenius) stays within the bound.
//! [`Budget::TargetBytes`] and [`Budget::TargetRatio`] build every tensor's curve of
//! estimated bytes and measured error over [`GRID`] and let [`crate::budget::allocate`]
//! spread the budget; a real encode then checks the result and corrects the target both
//! ways (then bisects), so the stream fits, or the closest reachable size is reported.
//! The bytes come from the caller ([`StreamBytes`]): this crate does not code streams.

use crate::budget::{self, Level};
use crate::job::Job;
use crate::report::AllocationReport;
use crate::{SparsifyConfig, SparsifyError};
use sparsewire_formats::TensorFile;
use sparsewire_metadata::{Criterion, Pattern};
use sparsewire_re::Rebuild;
use sparsewire_sparse::SparseTensor;

/// How much to drop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// The same sparsity for every sparsified tensor, in [0, 1).
    Sparsity(f32),
    /// Whole stream at most this fraction of the original tensor bytes.
    TargetRatio(f64),
    /// Whole stream at most this many bytes.
    TargetBytes(u64),
    /// Per tensor, the sparsest grid level within this relative error.
    MaxError(f64),
}

/// Options of the lossy host stage.
#[derive(Debug, Clone)]
pub struct SparsifyOptions {
    /// Reconstruction beyond zero-fill (the correlation criterion with the channel pattern
    /// always rebuilds channels from its stored combinations).
    pub rebuild: Rebuild,
    pub criterion: Criterion,
    pub pattern: Pattern,
    pub budget: Budget,
    /// Calibration activations (`[tokens, in]` tensors).
    pub calibration: Option<TensorFile>,
    /// Weight name -> activation name, before the built-in rules.
    pub calibration_map: Vec<(String, String)>,
    /// Gradients with the weights' names and shapes (Taylor).
    pub gradients: Option<TensorFile>,
    /// NaN and infinite weights: an error (default), kept, or dropped.
    pub nonfinite: crate::NonFinite,
    /// Trained scorers (`Criterion::Scorer`), keyed by tensor-name suffix.
    pub scorers: Option<crate::scorer::Scorers>,
}

impl SparsifyOptions {
    /// Options with `budget` and defaults for the rest (magnitude, unstructured, zero-fill).
    pub fn new(budget: Budget) -> Self {
        SparsifyOptions {
            rebuild: Rebuild::Zero,
            criterion: Criterion::Magnitude,
            pattern: Pattern::Unstructured,
            budget,
            calibration: None,
            calibration_map: vec![],
            gradients: None,
            nonfinite: crate::NonFinite::Error,
            scorers: None,
        }
    }

    /// Checks ranges: a sparsity in [0, 1), a positive finite ratio or error, an N:M
    /// pattern that exists.
    pub fn check(&self) -> Result<(), SparsifyError> {
        let sparsity = match self.budget {
            Budget::Sparsity(s) => s,
            _ => 0.0,
        };
        SparsifyConfig {
            criterion: self.criterion,
            pattern: self.pattern,
            sparsity,
        }
        .check()?;
        let positive = |what: &'static str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(SparsifyError::OutOfRange { what, value: v })
            }
        };
        match self.budget {
            Budget::TargetRatio(r) => positive("the target ratio", r),
            Budget::MaxError(e) => positive("the maximum error", e),
            Budget::TargetBytes(b) => positive("the target bytes", b as f64),
            Budget::Sparsity(_) => Ok(()),
        }
    }
}

/// The sparsity grid budgets search over.
pub const GRID: [f32; 20] = [
    0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8,
    0.85, 0.9, 0.95,
];

/// What a byte budget needs from the stream writer.
pub trait StreamBytes {
    type Error: From<SparsifyError>;
    /// Bytes of everything that is not sparsified, coded losslessly.
    fn fixed(&mut self) -> Result<f64, Self::Error>;
    /// An estimate of what a sparse tensor will take (fast; no coding).
    fn estimate(&self, s: &SparseTensor) -> f64;
    /// The real size of the whole stream with job `i` at `levels[i]`.
    fn encoded(&mut self, levels: &[f32]) -> Result<u64, Self::Error>;
}

/// Each job's sparsity under `opts.budget` (`file_bytes`: the original tensor bytes, for a
/// target ratio), with an allocation report for a byte budget. `progress(done, total)`
/// follows the tensors analysed.
pub fn levels<B: StreamBytes>(
    jobs: &[Job<'_>],
    opts: &SparsifyOptions,
    file_bytes: u64,
    bytes: &mut B,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<f32>, Option<AllocationReport>), B::Error> {
    opts.check()?;
    let total = jobs.len();
    if let Pattern::NM { n, m } = opts.pattern {
        return Ok((vec![1.0 - n as f32 / m as f32; total], None));
    }
    match opts.budget {
        Budget::Sparsity(s) => Ok((vec![s; total], None)),
        Budget::MaxError(e) => {
            let mut v = Vec::with_capacity(total);
            for (i, job) in jobs.iter().enumerate() {
                let mut best = 0.0;
                for &s in &GRID[1..] {
                    let o = job.run(s)?;
                    let err = o
                        .summary
                        .errors
                        .rel_output
                        .unwrap_or(o.summary.errors.rel_frobenius);
                    if err > e {
                        break;
                    }
                    best = s;
                }
                v.push(best);
                progress(i + 1, total);
            }
            Ok((v, None))
        }
        Budget::TargetBytes(_) | Budget::TargetRatio(_) => {
            let budget_bytes = match opts.budget {
                Budget::TargetBytes(b) => b as f64,
                Budget::TargetRatio(r) => r * file_bytes as f64,
                _ => unreachable!("matched above"),
            };
            let (choice, report) = allocate(jobs, budget_bytes, bytes, progress)?;
            Ok((choice, Some(report)))
        }
    }
}

/// Builds every job's curve over [`GRID`], allocates the budget greedily, and compares
/// with the uniform allocation. Each allocation is checked by a real encode: the target is
/// corrected both ways (six passes at most), then bisected between the largest allocation
/// that fits and the nearest one that did not.
fn allocate<B: StreamBytes>(
    jobs: &[Job<'_>],
    budget_bytes: f64,
    bytes: &mut B,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<f32>, AllocationReport), B::Error> {
    let fixed_bytes = bytes.fixed()?;
    let mut curves = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        let n = job.tensor.numel() as f64;
        let mut curve = Vec::with_capacity(GRID.len());
        for &s in &GRID {
            let o = job.run(s)?;
            let e = &o.summary.errors;
            let err = e.rel_output.unwrap_or(e.rel_frobenius);
            curve.push(Level {
                sparsity: s as f64,
                bytes: bytes.estimate(&o.sparse),
                cost: n * err * err,
            });
        }
        curves.push(curve);
        progress(i + 1, jobs.len());
    }
    let unreachable = |closest: f64| SparsifyError::Budget {
        budget: budget_bytes as u64,
        closest: closest.round() as u64,
    };
    // The byte estimate is only an estimate: correct the target by what a real encode
    // gave, both ways, keeping the largest allocation that fits; then bisect between it and
    // the nearest one that did not.
    let mut target = budget_bytes - fixed_bytes;
    let mut best: Option<(f64, f64, Vec<usize>)> = None; // (target, actual, choice)
    let mut failed: Option<f64> = None;
    let mut closest: Option<f64> = None;
    let try_target = |t: f64, bytes: &mut B| -> Result<Option<(f64, Vec<usize>)>, B::Error> {
        let Ok(c) = budget::allocate(&curves, t) else {
            return Ok(None);
        };
        let levels: Vec<f32> = c.iter().map(|&i| GRID[i]).collect();
        let actual = bytes.encoded(&levels)? as f64;
        tracing::debug!(target = t, actual, budget_bytes, "budget pass");
        Ok(Some((actual, c)))
    };
    for _ in 0..6 {
        let Some((actual, c)) = try_target(target, bytes)? else {
            break;
        };
        closest = Some(closest.map_or(actual, |x: f64| x.min(actual)));
        if actual <= budget_bytes {
            if best.as_ref().is_none_or(|b| actual > b.1) {
                best = Some((target, actual, c));
            }
            if actual >= budget_bytes * 0.995 {
                break;
            }
        } else {
            failed = Some(failed.map_or(target, |f: f64| f.min(target)));
        }
        let next = target * (budget_bytes - fixed_bytes) / (actual - fixed_bytes).max(1.0);
        if (next - target).abs() < 1.0 {
            break;
        }
        target = next;
    }
    let Some((mut lo, mut lo_actual, mut choice)) = best else {
        // Nothing fitted: the closest reachable is the sparsest allocation, encoded.
        let sparsest = match closest {
            Some(c) => c,
            None => bytes.encoded(&vec![GRID[GRID.len() - 1]; jobs.len()])? as f64,
        };
        return Err(unreachable(
            sparsest.min(bytes.encoded(&vec![GRID[GRID.len() - 1]; jobs.len()])? as f64),
        )
        .into());
    };
    if let Some(mut hi) = failed.filter(|&f| f > lo) {
        for _ in 0..4 {
            let mid = (lo + hi) / 2.0;
            match try_target(mid, bytes)? {
                Some((actual, c)) if actual <= budget_bytes => {
                    if actual > lo_actual {
                        (lo_actual, choice) = (actual, c);
                    }
                    lo = mid;
                }
                _ => hi = mid,
            }
        }
    }
    let target = lo;
    let (_, adaptive_cost) = budget::totals(&curves, &choice);
    // Uniform at exactly the same bytes: between the grid level that fits and the next,
    // interpolated (cost is convex in sparsity, so this is the uniform's best case).
    let uniform_level =
        budget::uniform(&curves, target).map_err(|e| unreachable(e.closest + fixed_bytes))?;
    let level_totals = |i: usize| budget::totals(&curves, &vec![i; curves.len()]);
    let (b0, c0) = level_totals(uniform_level);
    let (uniform_cost, uniform_sparsity) = if uniform_level > 0 && uniform_level + 1 < GRID.len() {
        let (b1, c1) = level_totals(uniform_level - 1);
        // Level `uniform_level - 1` is denser and over budget; `uniform_level` fits.
        let f = ((b1 - target) / (b1 - b0)).clamp(0.0, 1.0);
        (
            c1 + (c0 - c1) * f,
            GRID[uniform_level - 1] as f64
                + (GRID[uniform_level] - GRID[uniform_level - 1]) as f64 * f,
        )
    } else {
        (c0, GRID[uniform_level] as f64)
    };
    Ok((
        choice.iter().map(|&c| GRID[c]).collect(),
        AllocationReport {
            budget_bytes: budget_bytes as u64,
            adaptive_cost,
            uniform_cost,
            uniform_sparsity,
            gain: if adaptive_cost > 0.0 {
                uniform_cost / adaptive_cost
            } else {
                f64::INFINITY
            },
        },
    ))
}
