//! Fitting the parameters of the methods that have some, on the host, where the dropped
//! values' true values are known.

use crate::methods::features;
use crate::Reconstruction;
use sparsewire_sparse::MaskRef;

/// The one-entry-per-column dictionary: each column's mean dropped value (zero where a
/// column drops nothing).
pub fn fit_dictionary(original: &[f32], mask: MaskRef<'_>, cols: usize) -> Reconstruction {
    let mut sum = vec![0f64; cols];
    let mut n = vec![0usize; cols];
    for (i, &v) in original.iter().enumerate() {
        if !mask.is_kept(i) {
            sum[i % cols.max(1)] += v as f64;
            n[i % cols.max(1)] += 1;
        }
    }
    Reconstruction::Dictionary {
        entry_len: cols as u32,
        entries: sum
            .iter()
            .zip(&n)
            .map(|(&s, &n)| if n > 0 { (s / n as f64) as f32 } else { 0.0 })
            .collect(),
    }
}

/// Fits the `Learned` parameters by ridge regression: each dropped element of `original`
/// (its true value, which the compressor knows) predicted from the kept elements of its
/// row. Least squares over a set that includes `p = 0`, so on these elements it is never
/// worse than zero-fill. A tensor that drops nothing is fitted on its elements as if each
/// were dropped.
pub fn fit_learned(original: &[f32], mask: MaskRef<'_>, cols: usize) -> Reconstruction {
    let mut g = [[0f64; 4]; 4];
    let mut r = [0f64; 4];
    let mut n = 0usize;
    let keep: Vec<bool> = (0..mask.len()).map(|i| mask.is_kept(i)).collect();
    let any_dropped = keep.iter().any(|&k| !k);
    for (row, krow) in original.chunks(cols.max(1)).zip(keep.chunks(cols.max(1))) {
        for j in 0..row.len() {
            if krow[j] == any_dropped {
                continue;
            }
            let f = if any_dropped {
                features(row, krow, j)
            } else {
                features(row, &exclude(krow, j), j)
            };
            for a in 0..4 {
                r[a] += f[a] * row[j] as f64;
                for b in 0..4 {
                    g[a][b] += f[a] * f[b];
                }
            }
            n += 1;
        }
    }
    let scale = (0..4).map(|a| g[a][a]).sum::<f64>() / 4.0;
    for (a, ga) in g.iter_mut().enumerate() {
        ga[a] += 1e-9 * scale.max(1e-30);
    }
    let p = if n == 0 { [0.0; 4] } else { solve4(g, r) };
    Reconstruction::Learned {
        params: p.iter().map(|&x| x as f32).collect(),
    }
}

fn exclude(keep: &[bool], j: usize) -> Vec<bool> {
    let mut k = keep.to_vec();
    k[j] = false;
    k
}

fn solve4(mut g: [[f64; 4]; 4], mut r: [f64; 4]) -> [f64; 4] {
    for c in 0..4 {
        let p = (c..4)
            .max_by(|&a, &b| g[a][c].abs().total_cmp(&g[b][c].abs()))
            .unwrap_or(c);
        g.swap(c, p);
        r.swap(c, p);
        if g[c][c].abs() < 1e-300 {
            continue;
        }
        let pivot = g[c];
        for i in c + 1..4 {
            let f = g[i][c] / pivot[c];
            for (gij, gcj) in g[i][c..].iter_mut().zip(&pivot[c..]) {
                *gij -= f * gcj;
            }
            r[i] -= f * r[c];
        }
    }
    let mut x = [0f64; 4];
    for c in (0..4).rev() {
        let s: f64 = (c + 1..4).map(|j| g[c][j] * x[j]).sum();
        x[c] = if g[c][c].abs() < 1e-300 {
            0.0
        } else {
            (r[c] - s) / g[c][c]
        };
    }
    x
}
