//! Importance scores, one per element, higher = keep.

use rayon::prelude::*;

/// |w|.
pub fn magnitude(w: &[f32]) -> Vec<f32> {
    w.par_iter().map(|v| v.abs()).collect()
}

/// How badly row interpolation would rebuild each element if it were dropped:
/// `|w[i] - (w[i-1] + w[i+1]) / 2|` inside its row (one neighbour at a row's ends). Used
/// by `--criterion predictable`: the elements with the lowest scores are the ones the
/// `linear` / `learned` reconstruction rebuilds best, so they are dropped first.
pub fn predictable(w: &[f32], cols: usize) -> Vec<f32> {
    let cols = cols.max(1);
    w.par_chunks(cols)
        .flat_map_iter(|row| {
            (0..row.len()).map(move |j| {
                let l = j.checked_sub(1).map(|k| row[k]);
                let r = row.get(j + 1).copied();
                let pred = match (l, r) {
                    (Some(a), Some(b)) => (a + b) / 2.0,
                    (Some(a), None) | (None, Some(a)) => a,
                    (None, None) => 0.0,
                };
                (row[j] - pred).abs()
            })
        })
        .collect()
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

/// Rows kept by a channel pattern explain each dropped row: least squares onto its `k`
/// most correlated kept rows (normal equations with a tiny ridge), one combination per
/// dropped row.
pub fn channel_combinations(
    w: &[f32],
    rows: usize,
    cols: usize,
    keep_row: &[bool],
    k: usize,
) -> Vec<sparsewire_metadata::ChannelCombination> {
    let row = |i: usize| &w[i * cols..(i + 1) * cols];
    let dot = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| x as f64 * y as f64)
            .sum::<f64>()
    };
    let kept: Vec<usize> = (0..rows).filter(|&i| keep_row[i]).collect();
    let norms: Vec<f64> = (0..rows)
        .map(|i| dot(row(i), row(i)).sqrt().max(1e-30))
        .collect();
    (0..rows)
        .into_par_iter()
        .filter(|&i| !keep_row[i])
        .map(|i| {
            let mut cand: Vec<(f64, usize)> = kept
                .iter()
                .map(|&j| ((dot(row(i), row(j)) / (norms[i] * norms[j])).abs(), j))
                .collect();
            cand.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let src: Vec<usize> = cand.iter().take(k).map(|&(_, j)| j).collect();
            let n = src.len();
            // G c = r with G_ab = <w_a, w_b> (+ ridge), r_a = <w_a, w_i>.
            let mut g = vec![0f64; n * n];
            let mut r = vec![0f64; n];
            for a in 0..n {
                r[a] = dot(row(src[a]), row(i));
                for b in 0..n {
                    g[a * n + b] = dot(row(src[a]), row(src[b]));
                }
            }
            let ridge = 1e-6 * (0..n).map(|a| g[a * n + a]).sum::<f64>().max(1e-30);
            for a in 0..n {
                g[a * n + a] += ridge;
            }
            let coefs = solve(&mut g, &mut r, n);
            sparsewire_metadata::ChannelCombination {
                row: i as u32,
                sources: src.iter().map(|&j| j as u32).collect(),
                coefs: coefs.iter().map(|&c| c as f32).collect(),
            }
        })
        .collect()
}

/// Gaussian elimination with partial pivoting on a small system (n <= a few).
fn solve(g: &mut [f64], r: &mut [f64], n: usize) -> Vec<f64> {
    for c in 0..n {
        let p = (c..n)
            .max_by(|&a, &b| g[a * n + c].abs().total_cmp(&g[b * n + c].abs()))
            .unwrap_or(c);
        if g[p * n + c].abs() < 1e-300 {
            continue;
        }
        for j in 0..n {
            g.swap(c * n + j, p * n + j);
        }
        r.swap(c, p);
        for i in c + 1..n {
            let f = g[i * n + c] / g[c * n + c];
            for j in c..n {
                g[i * n + j] -= f * g[c * n + j];
            }
            r[i] -= f * r[c];
        }
    }
    let mut x = vec![0f64; n];
    for c in (0..n).rev() {
        let s: f64 = (c + 1..n).map(|j| g[c * n + j] * x[j]).sum();
        x[c] = if g[c * n + c].abs() < 1e-300 {
            0.0
        } else {
            (r[c] - s) / g[c * n + c]
        };
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictable_scores_distance_from_the_row_interpolation() {
        // Row 0 has a spike at 2; row 1 is a ramp (interior points fully predictable).
        let w = [1.0, 2.0, 9.0, 4.0, 0.0, 1.0, 2.0, 3.0];
        assert_eq!(
            predictable(&w, 4),
            vec![1.0, 3.0, 6.0, 5.0, 1.0, 0.0, 0.0, 1.0]
        );
    }
}
