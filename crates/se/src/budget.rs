//! Spreading a byte budget over tensors.
//!
//! Each tensor comes with a curve: for a common grid of sparsity levels, the bytes it would
//! take and the error it would have. [`allocate`] starts every tensor at the densest level
//! and repeatedly moves the one tensor whose next level costs the least error per byte
//! saved, until the total fits the budget. The objective is the size-weighted relative
//! squared error, Σ numelₜ · rel_errₜ², so every element counts alike whatever its
//! tensor's scale. [`uniform`] is the baseline: the same level everywhere.

/// One level of one tensor's curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    pub sparsity: f64,
    /// Bytes the tensor takes at this level.
    pub bytes: f64,
    /// Its contribution to the objective, numel · rel_err².
    pub cost: f64,
}

/// A budget that no allocation meets.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "a budget of {budget:.0} bytes cannot be met: the sparsest allocation takes {closest:.0} bytes"
)]
pub struct Unreachable {
    pub budget: f64,
    pub closest: f64,
}

/// Total bytes and cost of a choice of levels.
pub fn totals(curves: &[Vec<Level>], choice: &[usize]) -> (f64, f64) {
    curves
        .iter()
        .zip(choice)
        .fold((0.0, 0.0), |(b, c), (curve, &i)| {
            (b + curve[i].bytes, c + curve[i].cost)
        })
}

/// Greedy allocation under `budget` bytes; the level index chosen for each tensor.
pub fn allocate(curves: &[Vec<Level>], budget: f64) -> Result<Vec<usize>, Unreachable> {
    let mut choice = vec![0usize; curves.len()];
    let (mut bytes, _) = totals(curves, &choice);
    while bytes > budget {
        let mut best: Option<(f64, usize)> = None;
        for (t, curve) in curves.iter().enumerate() {
            let i = choice[t];
            if i + 1 >= curve.len() {
                continue;
            }
            let saved = curve[i].bytes - curve[i + 1].bytes;
            if saved <= 0.0 {
                continue;
            }
            let rate = (curve[i + 1].cost - curve[i].cost).max(0.0) / saved;
            if best.is_none_or(|(r, _)| rate < r) {
                best = Some((rate, t));
            }
        }
        let Some((_, t)) = best else {
            return Err(Unreachable {
                budget,
                closest: bytes,
            });
        };
        bytes -= curves[t][choice[t]].bytes - curves[t][choice[t] + 1].bytes;
        choice[t] += 1;
    }
    // The last step may have saved far more than was needed (one step of a large tensor):
    // give slack back, moving tensors to denser levels while the total still fits, the
    // largest error reduction per byte first.
    loop {
        let mut best: Option<(f64, usize)> = None;
        for (t, curve) in curves.iter().enumerate() {
            let i = choice[t];
            if i == 0 {
                continue;
            }
            let added = curve[i - 1].bytes - curve[i].bytes;
            let gain = curve[i].cost - curve[i - 1].cost;
            if bytes + added > budget || gain <= 0.0 {
                continue;
            }
            let rate = gain / added.max(1e-9);
            if best.is_none_or(|(r, _)| rate > r) {
                best = Some((rate, t));
            }
        }
        let Some((_, t)) = best else { break };
        bytes += curves[t][choice[t] - 1].bytes - curves[t][choice[t]].bytes;
        choice[t] -= 1;
    }
    Ok(choice)
}

/// The densest common level whose total fits the budget (curves share one grid).
pub fn uniform(curves: &[Vec<Level>], budget: f64) -> Result<usize, Unreachable> {
    let levels = curves.iter().map(Vec::len).min().unwrap_or(0);
    let mut closest = f64::INFINITY;
    for i in 0..levels {
        let (b, _) = totals(curves, &vec![i; curves.len()]);
        closest = closest.min(b);
        if b <= budget {
            return Ok(i);
        }
    }
    Err(Unreachable { budget, closest })
}

/// The sparsest level whose relative error `sqrt(cost / numel)` is at most `max_error`.
pub fn max_error_level(curve: &[Level], numel: f64, max_error: f64) -> usize {
    curve
        .iter()
        .rposition(|l| (l.cost / numel.max(1.0)).sqrt() <= max_error)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(bytes0: f64, err_scale: f64) -> Vec<Level> {
        (0..5)
            .map(|i| {
                let s = i as f64 * 0.2;
                Level {
                    sparsity: s,
                    bytes: bytes0 * (1.0 - s),
                    cost: err_scale * s * s,
                }
            })
            .collect()
    }

    #[test]
    fn greedy_meets_the_budget_and_beats_uniform() {
        // Tensor 0 loses little when pruned, tensor 1 a lot.
        let curves = vec![curve(100.0, 1.0), curve(100.0, 50.0)];
        let choice = allocate(&curves, 120.0).unwrap();
        let (b, c) = totals(&curves, &choice);
        assert!(b <= 120.0);
        let u = uniform(&curves, 120.0).unwrap();
        let (ub, uc) = totals(&curves, &[u; 2]);
        assert!(ub <= 120.0 && c < uc, "greedy {c} vs uniform {uc}");
        assert!(choice[0] > choice[1]);
        let err = allocate(&curves, 10.0).unwrap_err();
        assert_eq!(err.closest, 40.0);
        // Relative errors sqrt(50 s²): 0, 1.41, 2.83, 4.24, ...
        assert_eq!(max_error_level(&curves[1], 1.0, 3.0), 2);
    }
}
