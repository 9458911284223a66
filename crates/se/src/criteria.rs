//! Importance scores, one per element, higher = keep.

use rayon::prelude::*;

/// |w|.
pub fn magnitude(w: &[f32]) -> Vec<f32> {
    w.par_iter().map(|v| v.abs()).collect()
}

/// |w · g| (first-order Taylor estimate of the loss change).
pub fn taylor(w: &[f32], g: &[f32]) -> Vec<f32> {
    w.par_iter().zip(g).map(|(a, b)| (a * b).abs()).collect()
}

/// ‖x_j‖₂ of each input channel over the calibration tokens.
pub fn input_norms(x: &[f32], tokens: usize, cols: usize) -> Vec<f32> {
    let mut sq = vec![0f64; cols];
    for t in 0..tokens {
        for (s, &v) in sq.iter_mut().zip(&x[t * cols..(t + 1) * cols]) {
            *s += (v as f64) * (v as f64);
        }
    }
    sq.into_iter().map(|s| s.sqrt() as f32).collect()
}

/// Wanda: |w_ij| · ‖x_j‖₂.
pub fn wanda(w: &[f32], cols: usize, norms: &[f32]) -> Vec<f32> {
    w.par_chunks(cols)
        .flat_map_iter(|row| row.iter().zip(norms).map(|(v, n)| v.abs() * n))
        .collect()
}

/// Channel redundancy: each element of row `i` scores `1 - max_j |cos(w_i, w_j)|` (with
/// `j != i`), so the rows best predicted by another row score lowest and a channel pattern
/// drops them first. O(rows² · cols); meant for the channel pattern.
pub fn correlation(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let norms: Vec<f64> = w
        .chunks(cols)
        .map(|r| {
            r.iter()
                .map(|&v| (v as f64).powi(2))
                .sum::<f64>()
                .sqrt()
                .max(1e-30)
        })
        .collect();
    let best: Vec<f32> = (0..rows)
        .into_par_iter()
        .map(|i| {
            let ri = &w[i * cols..(i + 1) * cols];
            let mut best = 0f64;
            for j in 0..rows {
                if j == i {
                    continue;
                }
                let rj = &w[j * cols..(j + 1) * cols];
                let dot: f64 = ri.iter().zip(rj).map(|(&a, &b)| a as f64 * b as f64).sum();
                best = best.max((dot / (norms[i] * norms[j])).abs());
            }
            (1.0 - best) as f32
        })
        .collect();
    (0..rows * cols).map(|k| best[k / cols]).collect()
}
