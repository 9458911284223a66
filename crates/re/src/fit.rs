//! Fitting the parameters of the methods that have some, on the host, where the dropped
//! values' true values are known.

use crate::methods::features;
use crate::mlp::{mlp_inputs, mlp_params, row_scale, MlpRef, MLP_INPUTS, MLP_MAX_HIDDEN};
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
    for_each_fit_sample(
        original,
        mask,
        cols,
        usize::MAX,
        |_, _| (),
        |_, row, keep, j| {
            let f = features(row, keep, j);
            for a in 0..4 {
                r[a] += f[a] * row[j] as f64;
                for b in 0..4 {
                    g[a][b] += f[a] * f[b];
                }
            }
            n += 1;
        },
    );
    let scale = (0..4).map(|a| g[a][a]).sum::<f64>() / 4.0;
    for (a, ga) in g.iter_mut().enumerate() {
        ga[a] += 1e-9 * scale.max(1e-30);
    }
    let p = if n == 0 { [0.0; 4] } else { solve4(g, r) };
    Reconstruction::Learned {
        params: p.iter().map(|&x| x as f32).collect(),
    }
}

/// The most elements [`fit_mlp`] fits on: beyond it, every k-th candidate.
pub const MLP_FIT_SAMPLES: usize = 1 << 17;

/// Fits an `Mlp` of `hidden` units (clamped to `1..=256`): the first layer is random
/// (seeded, uniform in [-1, 1), units in pairs of opposite sign), the output layer (`w2`, `b2`) is the ridge regression of
/// the dropped elements' true values on the hidden activations times the row scale, i.e.
/// least squares on the rebuilt values themselves. The set of solutions includes the
/// all-zero output layer, so on the fitted elements it is never worse than zero-fill. A
/// tensor that drops nothing is fitted on its elements as if each were dropped. At most
/// [`MLP_FIT_SAMPLES`] elements are used (evenly spaced), so the cost is bounded.
pub fn fit_mlp(
    original: &[f32],
    mask: MaskRef<'_>,
    cols: usize,
    hidden: usize,
    seed: u64,
) -> Reconstruction {
    let h = hidden.clamp(1, MLP_MAX_HIDDEN as usize);
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut params: Vec<f32> = (0..mlp_params(h))
        .map(|i| {
            if i < h * (MLP_INPUTS + 1) {
                (splitmix(&mut state) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            } else {
                0.0
            }
        })
        .collect();
    // Units in pairs of opposite sign: relu(z) - relu(-z) = z, so with at least 8 pairs
    // the output layer spans every linear function of the inputs (what `Learned` can
    // do), and relu(z) + relu(-z) = |z| adds the non-linear part.
    for k in (1..h).step_by(2) {
        let (lo, hi) = (k - 1, k);
        for f in 0..MLP_INPUTS {
            params[hi * MLP_INPUTS + f] = -params[lo * MLP_INPUTS + f];
        }
        params[h * MLP_INPUTS + hi] = -params[h * MLP_INPUTS + lo];
    }
    let n = h + 1;
    let (mut g, mut r) = (vec![0f64; n * n], vec![0f64; n]);
    let mut z = vec![0f64; n];
    let net = MlpRef::new(h as u32, &params).expect("shape by construction");
    for_each_fit_sample(
        original,
        mask,
        cols,
        MLP_FIT_SAMPLES,
        row_scale,
        |&s, row, keep, j| {
            // A row with no kept value (s = 0) rebuilds 0 whatever the parameters.
            if s == 0.0 {
                return;
            }
            net.hidden_of(&mlp_inputs(row, keep, j, s), &mut z[..h]);
            z[h] = 1.0;
            for zk in z.iter_mut() {
                *zk *= s;
            }
            let v = row[j] as f64;
            for a in 0..n {
                r[a] += z[a] * v;
                for b in 0..n {
                    g[a * n + b] += z[a] * z[b];
                }
            }
        },
    );
    let scale = (0..n).map(|a| g[a * n + a]).sum::<f64>() / n as f64;
    for a in 0..n {
        g[a * n + a] += 1e-9 * scale.max(1e-30);
    }
    let w = solve(&mut g, &mut r, n);
    for (p, &x) in params[h * (MLP_INPUTS + 1)..].iter_mut().zip(&w) {
        *p = if x.is_finite() { x as f32 } else { 0.0 };
    }
    Reconstruction::Mlp {
        hidden: h as u32,
        params,
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The elements the fits learn from, with what the receiver would see of each: every
/// dropped element of `original` (row-major, `cols` wide) with its row's mask, or, when the
/// tensor drops nothing, every element with its row's mask less that element. At most
/// `limit` of them, evenly spaced (every k-th, in order). `prep(row, keep)` runs once per
/// mask a sample is seen with (per row, or per sample when nothing is dropped) and its
/// result is handed to `f(&prep, row, keep, j)`.
pub fn for_each_fit_sample<P>(
    original: &[f32],
    mask: MaskRef<'_>,
    cols: usize,
    limit: usize,
    prep: impl Fn(&[f32], &[bool]) -> P,
    mut f: impl FnMut(&P, &[f32], &[bool], usize),
) {
    let keep: Vec<bool> = (0..mask.len()).map(|i| mask.is_kept(i)).collect();
    let any_dropped = keep.iter().any(|&k| !k);
    let candidates = keep.iter().filter(|&&k| k != any_dropped).count();
    let stride = candidates.div_ceil(limit.max(1)).max(1);
    let mut seen = 0usize;
    let c = cols.max(1);
    for (row, krow) in original.chunks(c).zip(keep.chunks(c)) {
        let mut row_prep = None;
        for j in 0..row.len() {
            if krow[j] == any_dropped {
                continue;
            }
            seen += 1;
            if !(seen - 1).is_multiple_of(stride) {
                continue;
            }
            if any_dropped {
                let p = row_prep.get_or_insert_with(|| prep(row, krow));
                f(p, row, krow, j);
            } else {
                let mut k = krow.to_vec();
                k[j] = false;
                f(&prep(row, &k), row, &k, j);
            }
        }
    }
}

fn solve4(g: [[f64; 4]; 4], r: [f64; 4]) -> [f64; 4] {
    let mut flat: Vec<f64> = g.iter().flatten().copied().collect();
    let mut r = r.to_vec();
    let x = solve(&mut flat, &mut r, 4);
    [x[0], x[1], x[2], x[3]]
}

/// Gaussian elimination with partial pivoting on the `n x n` row-major `g`; a zero pivot
/// leaves its unknown at 0.
fn solve(g: &mut [f64], r: &mut [f64], n: usize) -> Vec<f64> {
    for c in 0..n {
        let p = (c..n)
            .max_by(|&a, &b| g[a * n + c].abs().total_cmp(&g[b * n + c].abs()))
            .unwrap_or(c);
        if p != c {
            for k in 0..n {
                g.swap(c * n + k, p * n + k);
            }
            r.swap(c, p);
        }
        if g[c * n + c].abs() < 1e-300 {
            continue;
        }
        let pivot: Vec<f64> = g[c * n..(c + 1) * n].to_vec();
        for i in c + 1..n {
            let f = g[i * n + c] / pivot[c];
            for (gij, gcj) in g[i * n + c..(i + 1) * n].iter_mut().zip(&pivot[c..]) {
                *gij -= f * gcj;
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
