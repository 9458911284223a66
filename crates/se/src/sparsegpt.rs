//! SparseGPT: second-order (OBS) pruning with compensation of the kept weights.
//!
//! For a linear layer `y = W x` with calibration inputs `X` (`[tokens, in]`), the Hessian of
//! the layer's squared output error is `H = Xᵀ X`. Columns of `W` are pruned left to right in
//! blocks of [`BLOCK`]; pruning weight `w_ij` adds `w_ij² / [H⁻¹]_jj` to the error, so the
//! block's mask keeps the largest `w² / diag(U)²` (U the upper Cholesky factor of H⁻¹), and
//! the error of each pruned column is pushed onto the columns not yet visited
//! (`W[:, j:] -= (w_j - q_j) / U_jj · U_j,j:`), within the block at once and beyond it in one
//! matrix product per block. This follows Frantar & Alistarh, "SparseGPT" (2023).
//!
//! Damping: `H += λ·mean(diag H)·I` with λ = [`DAMPING`]; inputs that are always zero get
//! `H_jj = 1` and their weights are pruned first. If H is still not positive definite after
//! damping by 10x, [`SparseGptError::NotPositiveDefinite`] is returned and the caller falls
//! back to Wanda (with a warning).

use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, Side};
use sparsewire_metadata::Pattern;
use sparsewire_sparse::Mask;

/// Columns per block.
pub const BLOCK: usize = 128;
/// Relative damping added to the Hessian's diagonal.
pub const DAMPING: f64 = 0.01;

/// Why SparseGPT could not run.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum SparseGptError {
    #[error("the Hessian X^T X is not positive definite even with damping {damping}")]
    NotPositiveDefinite { damping: f64 },
    #[error("SparseGPT supports unstructured, per-row and N:M patterns, not {0:?}")]
    Pattern(Pattern),
}

/// `H = Xᵀ X` of calibration inputs `x` (`tokens` rows of `cols` values).
pub fn hessian(x: &[f32], tokens: usize, cols: usize) -> Mat<f64> {
    let xm = Mat::<f64>::from_fn(tokens, cols, |i, j| x[i * cols + j] as f64);
    xm.transpose() * &xm
}

/// Upper Cholesky factor of `H⁻¹` after damping (and the dead-input fix).
fn inverse_factor(h: &Mat<f64>) -> Result<Mat<f64>, SparseGptError> {
    let n = h.nrows();
    let mean_diag = (0..n).map(|i| h[(i, i)]).sum::<f64>() / n.max(1) as f64;
    for scale in [1.0, 10.0] {
        let damping = DAMPING * scale;
        let mut hd = h.clone();
        for i in 0..n {
            if hd[(i, i)] == 0.0 {
                hd[(i, i)] = 1.0;
            }
            hd[(i, i)] += damping * mean_diag.max(f64::MIN_POSITIVE);
        }
        let Ok(llt) = hd.llt(Side::Lower) else {
            continue;
        };
        let inv = llt.inverse();
        let Ok(llt2) = inv.llt(Side::Lower) else {
            continue;
        };
        // H⁻¹ = L Lᵀ, so U = Lᵀ.
        return Ok(llt2.L().transpose().to_owned());
    }
    Err(SparseGptError::NotPositiveDefinite {
        damping: DAMPING * 10.0,
    })
}

/// Prunes `w` (`[rows, cols]`, row-major) to `sparsity` in `pattern`, compensating with the
/// Hessian `h` (`cols x cols`). Returns the kept flags and the updated weights (pruned
/// entries zero).
pub fn prune(
    w: &[f32],
    rows: usize,
    cols: usize,
    h: &Mat<f64>,
    pattern: Pattern,
    sparsity: f64,
) -> Result<(Mask, Vec<f32>), SparseGptError> {
    match pattern {
        Pattern::Unstructured | Pattern::UnstructuredPerRow | Pattern::NM { .. } => {}
        p => return Err(SparseGptError::Pattern(p)),
    }
    let u = inverse_factor(h)?;
    let mut wm = Mat::<f64>::from_fn(rows, cols, |i, j| w[i * cols + j] as f64);
    let mut keep = vec![true; rows * cols];
    let total_drop = ((rows * cols) as f64 * sparsity).round() as usize;
    let mut dropped = 0usize;
    // N:M groups start at column 0 of every row; blocks hold whole groups.
    let block = match pattern {
        Pattern::NM { m, .. } => (BLOCK / m as usize).max(1) * m as usize,
        _ => BLOCK,
    };
    for i1 in (0..cols).step_by(block) {
        let i2 = (i1 + block).min(cols);
        let count = i2 - i1;
        // Row-major copy of the block for the column loop.
        let mut w1: Vec<f64> = (0..rows)
            .flat_map(|r| (i1..i2).map(move |c| (r, c)))
            .map(|(r, c)| wm[(r, c)])
            .collect();
        let d: Vec<f64> = (i1..i2).map(|j| u[(j, j)]).collect();
        let mut prune_blk = vec![false; rows * count];
        match pattern {
            Pattern::Unstructured => {
                // Exact total: this block drops its share of what is left.
                let want = ((total_drop as f64) * (i2 as f64 / cols as f64)).round() as usize;
                let k = want.saturating_sub(dropped).min(rows * count);
                let mut idx: Vec<usize> = (0..rows * count).collect();
                let score = |i: usize| (w1[i] / d[i % count]).powi(2);
                if k > 0 {
                    idx.select_nth_unstable_by(k - 1, |&a, &b| {
                        score(a).total_cmp(&score(b)).then(a.cmp(&b))
                    });
                    for &i in &idx[..k] {
                        prune_blk[i] = true;
                    }
                }
                dropped += k;
            }
            Pattern::UnstructuredPerRow => {
                let want_row = (cols as f64 * sparsity).round() as usize;
                let upto = ((want_row as f64) * (i2 as f64 / cols as f64)).round() as usize;
                let before = ((want_row as f64) * (i1 as f64 / cols as f64)).round() as usize;
                let k = (upto - before).min(count);
                for r in 0..rows {
                    let mut idx: Vec<usize> = (0..count).collect();
                    let score = |j: usize| (w1[r * count + j] / d[j]).powi(2);
                    if k > 0 {
                        idx.select_nth_unstable_by(k - 1, |&a, &b| {
                            score(a).total_cmp(&score(b)).then(a.cmp(&b))
                        });
                        for &j in &idx[..k] {
                            prune_blk[r * count + j] = true;
                        }
                    }
                }
            }
            _ => {}
        }
        let mut err1 = Mat::<f64>::zeros(rows, count);
        for i in 0..count {
            if let Pattern::NM { n, m } = pattern {
                let (n, m) = (n as usize, m as usize);
                // Groups are chosen when their first column comes up, with the weights as
                // compensated so far.
                let col = i1 + i;
                if col % m == 0 {
                    let glen = m.min(count - i);
                    let full = glen == m;
                    let keep_n = if full {
                        n
                    } else {
                        ((glen * n) as f64 / m as f64).round() as usize
                    };
                    for r in 0..rows {
                        let mut idx: Vec<usize> = (i..i + glen).collect();
                        idx.sort_by(|&a, &b| {
                            let sa = (w1[r * count + a] / d[a]).powi(2);
                            let sb = (w1[r * count + b] / d[b]).powi(2);
                            sa.total_cmp(&sb).then(a.cmp(&b))
                        });
                        for &j in &idx[..glen - keep_n] {
                            prune_blk[r * count + j] = true;
                        }
                    }
                }
            }
            let dii = d[i];
            for r in 0..rows {
                let wv = w1[r * count + i];
                if prune_blk[r * count + i] {
                    let e = wv / dii;
                    err1[(r, i)] = e;
                    // Push the error onto the rest of the block.
                    for j in i..count {
                        w1[r * count + j] -= e * u[(i1 + i, i1 + j)];
                    }
                    w1[r * count + i] = 0.0;
                }
            }
        }
        for r in 0..rows {
            for j in 0..count {
                wm[(r, i1 + j)] = w1[r * count + j];
                if prune_blk[r * count + j] {
                    keep[r * cols + i1 + j] = false;
                }
            }
        }
        if i2 < cols {
            let upd = &err1 * u.as_ref().submatrix(i1, i2, count, cols - i2);
            for c in 0..cols - i2 {
                for r in 0..rows {
                    wm[(r, i2 + c)] -= upd[(r, c)];
                }
            }
        }
    }
    let out = (0..rows * cols)
        .map(|k| {
            if keep[k] {
                wm[(k / cols, k % cols)] as f32
            } else {
                0.0
            }
        })
        .collect();
    Ok((Mask::from_bools(&keep), out))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic test values in [-0.5, 0.5).
    pub(crate) fn lcg(s: &mut u64) -> f32 {
        *s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    fn out_err(w: &[f32], w2: &[f32], x: &[f32], rows: usize, cols: usize, t: usize) -> f64 {
        let mut e = 0.0;
        for k in 0..t {
            for r in 0..rows {
                let d: f64 = (0..cols)
                    .map(|c| (w[r * cols + c] - w2[r * cols + c]) as f64 * x[k * cols + c] as f64)
                    .sum();
                e += d * d;
            }
        }
        e
    }

    #[test]
    fn compensation_lowers_output_error_against_the_same_mask() {
        let (rows, cols, t) = (8, 24, 64);
        let mut s = 3u64;
        let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut s)).collect();
        // Correlated inputs: compensation has something to work with.
        let x: Vec<f32> = (0..t)
            .flat_map(|_| {
                let base = lcg(&mut s);
                (0..cols)
                    .map(|c| base * (1.0 + c as f32 * 0.1) + 0.3 * lcg(&mut s))
                    .collect::<Vec<_>>()
            })
            .collect();
        let h = hessian(&x, t, cols);
        for pattern in [Pattern::Unstructured, Pattern::NM { n: 2, m: 4 }] {
            let (keep, w2) = prune(&w, rows, cols, &h, pattern, 0.5).unwrap();
            assert_eq!(keep.len() - keep.kept(), rows * cols / 2);
            let masked: Vec<f32> = w
                .iter()
                .enumerate()
                .map(|(i, &v)| if keep.is_kept(i) { v } else { 0.0 })
                .collect();
            let with = out_err(&w, &w2, &x, rows, cols, t);
            let without = out_err(&w, &masked, &x, rows, cols, t);
            assert!(with < without, "{pattern:?}: {with} vs {without}");
        }
    }
}
