//! The reconstruction engine (accelerator side, docs/SPEC.md §6): rebuilds dense tiles
//! from what crossed the link.
//!
//! Takes a tile's kept values and its [`Mask`] and a
//! [`sparsewire_metadata::Reconstruction`] method; gives the dense tile. The foundation
//! release implements `Zero` (dropped elements are 0, which is also how a dense tile
//! passes through unchanged), `Channels` ([`rebuild_channels`]: rows dropped by the
//! correlation criterion rebuilt from kept rows), and, on a whole zero-filled matrix,
//! `Linear` and `Learned` ([`rebuild`]): each dropped element predicted from the nearest
//! kept elements of its row; `Spatial` (conv filters: the kept neighbours inside each
//! `kh x kw` kernel); `Dictionary` with one entry per column, the mean of that column's
//! dropped values (a post-GELU activation's dropped values are mostly small negatives:
//! zero-fill is biased, the column mean is not). The reconstruction buffer and on-demand tile scheduling live in
//! `sparsewire-accel` and `sparsewire-pipeline::mmo`; dictionaries are not implemented yet.
//!
//! **Row context.** For a dropped element, `l1`, `l2` are the nearest and second-nearest
//! kept values to its left, `r1`, `r2` to its right, at distances `dl`, `dr`. `Linear`
//! interpolates `(dr·l1 + dl·r1) / (dl + dr)` when both sides exist and extrapolates from the
//! two nearest on one side otherwise (exact on a linear ramp); one kept value is copied, none
//! gives zero. `Learned` predicts `p · [interp, l1, r1, 1]` with parameters `p` fitted at
//! compress time by ridge regression on the kept elements (each predicted from its kept
//! neighbours as if it had been dropped), so it can shrink towards zero where neighbours say
//! little. Fitted on the *dropped* elements' true values (the compressor knows them), the
//! least-squares predictor never does worse than zero-fill on the data it was fitted on:
//! `p = 0` is one of the candidates.
//!
//! Every method is local to a row (or, for `Dictionary`, to a column index), so a tile of
//! whole rows rebuilds on its own ([`rebuild_at`] takes the tile's first column).
#![forbid(unsafe_code)]

pub use sparsewire_masks::Mask;
pub use sparsewire_metadata::Reconstruction;

/// Errors of the reconstruction engine.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReconstructError {
    #[error("mask keeps {kept} elements but {values} values were given")]
    ValueCount { kept: usize, values: usize },
    #[error("reconstruction method {0} is not implemented by this version")]
    Unsupported(&'static str),
    #[error("channel combination for row {row} names row {source_row}, outside 0..{rows}, or has {sources} sources but {coefs} coefficients")]
    BadCombination {
        row: u32,
        source_row: u32,
        rows: usize,
        sources: usize,
        coefs: usize,
    },
}

/// Rebuilds dropped rows of a `[rows, cols]` matrix (row-major f32) from their stored
/// combinations of kept rows. Every index comes from a header, so each is checked.
pub fn rebuild_channels(
    values: &mut [f32],
    cols: usize,
    combinations: &[sparsewire_metadata::ChannelCombination],
) -> Result<(), ReconstructError> {
    let rows = values.len() / cols.max(1);
    for c in combinations {
        let bad = |source_row: u32| ReconstructError::BadCombination {
            row: c.row,
            source_row,
            rows,
            sources: c.sources.len(),
            coefs: c.coefs.len(),
        };
        if c.sources.len() != c.coefs.len() || c.row as usize >= rows {
            return Err(bad(c.row));
        }
        if let Some(&s) = c.sources.iter().find(|&&s| s as usize >= rows) {
            return Err(bad(s));
        }
        let mut acc = vec![0f64; cols];
        for (&s, &k) in c.sources.iter().zip(&c.coefs) {
            let src = &values[s as usize * cols..(s as usize + 1) * cols];
            for (a, &v) in acc.iter_mut().zip(src) {
                *a += k as f64 * v as f64;
            }
        }
        let dst = &mut values[c.row as usize * cols..(c.row as usize + 1) * cols];
        for (d, a) in dst.iter_mut().zip(acc) {
            *d = a as f32;
        }
    }
    Ok(())
}

/// Features of position `j` from the kept elements of its row (other than `j` itself):
/// `[interpolation, nearest left, nearest right, 1]`.
fn features(vals: &[f32], keep: &[bool], j: usize) -> [f64; 4] {
    let left: Vec<(usize, f64)> = (0..j)
        .rev()
        .filter(|&k| keep[k])
        .take(2)
        .map(|k| (j - k, vals[k] as f64))
        .collect();
    let right: Vec<(usize, f64)> = (j + 1..vals.len())
        .filter(|&k| keep[k])
        .take(2)
        .map(|k| (k - j, vals[k] as f64))
        .collect();
    let interp = match (left.first(), right.first()) {
        (Some(&(dl, l)), Some(&(dr, r))) => (dr as f64 * l + dl as f64 * r) / (dl + dr) as f64,
        (Some(&(d1, v1)), None) | (None, Some(&(d1, v1))) => {
            let side = if left.is_empty() { &right } else { &left };
            match side.get(1) {
                // Extrapolate along the line through the two nearest.
                Some(&(d2, v2)) => v1 + (v1 - v2) * d1 as f64 / (d2 - d1) as f64,
                None => v1,
            }
        }
        (None, None) => 0.0,
    };
    [
        interp,
        left.first().map_or(0.0, |x| x.1),
        right.first().map_or(0.0, |x| x.1),
        1.0,
    ]
}

/// Rebuilds the dropped elements of a zero-filled `[rows, cols]` matrix (row-major) by
/// `method` (`Zero` leaves them; `Channels` see [`rebuild_channels`]).
pub fn rebuild(
    values: &mut [f32],
    keep: &[bool],
    cols: usize,
    method: &Reconstruction,
) -> Result<(), ReconstructError> {
    rebuild_at(values, keep, cols, 0, method)
}

/// [`rebuild`] on a block of whole rows, or of columns `col0..col0 + cols` of the tensor's
/// rows (a tile): row methods need whole rows (`col0 == 0`); `Dictionary` reads its
/// entries from column `col0`.
pub fn rebuild_at(
    values: &mut [f32],
    keep: &[bool],
    cols: usize,
    col0: usize,
    method: &Reconstruction,
) -> Result<(), ReconstructError> {
    // Row methods are a dot product with the features: `Linear` is [1, 0, 0, 0].
    let p: [f64; 4] = match method {
        Reconstruction::Zero => return Ok(()),
        Reconstruction::Channels { combinations } => {
            return rebuild_channels(values, cols, combinations)
        }
        Reconstruction::Dictionary { entry_len, entries } => {
            if entries.len() != *entry_len as usize || col0 + cols > entries.len() {
                return Err(ReconstructError::Unsupported(
                    "a dictionary other than one entry per column",
                ));
            }
            let e = &entries[col0..col0 + cols];
            for (row, krow) in values.chunks_mut(cols.max(1)).zip(keep.chunks(cols.max(1))) {
                for ((v, &k), &d) in row.iter_mut().zip(krow).zip(e) {
                    if !k {
                        *v = d;
                    }
                }
            }
            return Ok(());
        }
        Reconstruction::Spatial { kh, kw } => {
            let ks = (*kh as usize) * (*kw as usize);
            if ks == 0 || !cols.is_multiple_of(ks) || !col0.is_multiple_of(ks) {
                return Err(ReconstructError::Unsupported(
                    "spatial kernels that do not tile the row",
                ));
            }
            for (kern, kk) in values.chunks_mut(ks).zip(keep.chunks(ks)) {
                spatial(kern, kk, *kh as usize, *kw as usize);
            }
            return Ok(());
        }
        Reconstruction::Linear => [1.0, 0.0, 0.0, 0.0],
        Reconstruction::Learned { params } => match params[..] {
            [a, b, c, d] => [a as f64, b as f64, c as f64, d as f64],
            _ => {
                return Err(ReconstructError::Unsupported(
                    "learned with other than 4 parameters",
                ))
            }
        },
    };
    let predict = |f: &[f64; 4]| -> f64 { p.iter().zip(f).map(|(a, b)| a * b).sum() };
    for (row, krow) in values.chunks_mut(cols.max(1)).zip(keep.chunks(cols.max(1))) {
        let src = row.to_vec();
        for j in 0..row.len() {
            if !krow[j] {
                row[j] = predict(&features(&src, krow, j)) as f32;
            }
        }
    }
    Ok(())
}

/// One kernel: dropped values from their kept 4-neighbours, else the kernel's kept mean.
fn spatial(kern: &mut [f32], keep: &[bool], kh: usize, kw: usize) {
    let src = kern.to_vec();
    let (mut sum, mut n) = (0f64, 0usize);
    for (&v, &k) in src.iter().zip(keep) {
        if k {
            sum += v as f64;
            n += 1;
        }
    }
    let mean = if n > 0 { sum / n as f64 } else { 0.0 };
    for y in 0..kh {
        for x in 0..kw {
            let i = y * kw + x;
            if keep[i] {
                continue;
            }
            let (mut s, mut m) = (0f64, 0usize);
            let mut add = |j: usize| {
                if keep[j] {
                    s += src[j] as f64;
                    m += 1;
                }
            };
            if x > 0 {
                add(i - 1);
            }
            if x + 1 < kw {
                add(i + 1);
            }
            if y > 0 {
                add(i - kw);
            }
            if y + 1 < kh {
                add(i + kw);
            }
            kern[i] = if m > 0 {
                (s / m as f64) as f32
            } else {
                mean as f32
            };
        }
    }
}

/// The one-entry-per-column dictionary: each column's mean dropped value (zero where a
/// column drops nothing).
pub fn fit_dictionary(original: &[f32], keep: &[bool], cols: usize) -> Reconstruction {
    let mut sum = vec![0f64; cols];
    let mut n = vec![0usize; cols];
    for (i, (&v, &k)) in original.iter().zip(keep).enumerate() {
        if !k {
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
pub fn fit_learned(original: &[f32], keep: &[bool], cols: usize) -> Reconstruction {
    let mut g = [[0f64; 4]; 4];
    let mut r = [0f64; 4];
    let mut n = 0usize;
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

/// Scatters `kept` (the kept values in index order) into a dense tile of `mask.len()`
/// elements and fills the dropped ones by `method`.
pub fn reconstruct_f32(
    kept: &[f32],
    mask: &Mask,
    method: &Reconstruction,
) -> Result<Vec<f32>, ReconstructError> {
    if mask.kept() != kept.len() {
        return Err(ReconstructError::ValueCount {
            kept: mask.kept(),
            values: kept.len(),
        });
    }
    match method {
        Reconstruction::Zero => {
            let mut out = vec![0.0f32; mask.len()];
            for (i, &v) in mask.kept_indices().zip(kept) {
                out[i] = v;
            }
            Ok(out)
        }
        // Row methods work on the whole dense matrix, after zero-fill: see `rebuild`.
        Reconstruction::Linear | Reconstruction::Learned { .. } => {
            reconstruct_f32(kept, mask, &Reconstruction::Zero)
        }
        // Rebuilt on the dense rows after zero-fill: see `rebuild_at`, `rebuild_channels`.
        Reconstruction::Dictionary { .. }
        | Reconstruction::Spatial { .. }
        | Reconstruction::Channels { .. } => reconstruct_f32(kept, mask, &Reconstruction::Zero),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_fill_keeps_kept_values_bit_exact() {
        let mask = Mask::from_kept([true, false, true, true, false]);
        let out = reconstruct_f32(&[-0.0, f32::NAN, 2.5], &mask, &Reconstruction::Zero).unwrap();
        assert_eq!(out[0].to_bits(), (-0.0f32).to_bits());
        assert!(out[2].is_nan() && out[1] == 0.0 && out[4] == 0.0 && out[3] == 2.5);
        assert!(reconstruct_f32(&[1.0], &mask, &Reconstruction::Zero).is_err());
    }

    #[test]
    fn linear_and_learned_are_exact_on_a_ramp_and_keep_kept_values() {
        let cols = 17;
        let ramp: Vec<f32> = (0..2 * cols)
            .map(|i| 0.5 + 0.25 * (i % cols) as f32)
            .collect();
        let keep: Vec<bool> = (0..2 * cols).map(|i| (i * 7) % 3 != 0).collect();
        let zeroed: Vec<f32> = ramp
            .iter()
            .zip(&keep)
            .map(|(&v, &k)| if k { v } else { 0.0 })
            .collect();
        for method in [Reconstruction::Linear, fit_learned(&ramp, &keep, cols)] {
            let mut v = zeroed.clone();
            rebuild(&mut v, &keep, cols, &method).unwrap();
            for i in 0..v.len() {
                assert!(
                    (v[i] - ramp[i]).abs() < 1e-4,
                    "{method:?} at {i}: {} vs {}",
                    v[i],
                    ramp[i]
                );
                if keep[i] {
                    assert_eq!(v[i].to_bits(), ramp[i].to_bits());
                }
            }
        }
        let bad = Reconstruction::Learned { params: vec![1.0] };
        assert!(rebuild(&mut [0.0; 4], &[true, false, true, true], 4, &bad).is_err());
    }

    #[test]
    fn learned_fitted_on_dropped_values_never_loses_to_zero_fill() {
        // Post-GELU-like values: the dropped (small) ones are mostly small negatives.
        let cols = 64;
        let v: Vec<f32> = (0..cols * 40)
            .map(|i| {
                let x = ((i as f32) * 0.77).sin() * 2.0;
                x * 0.5 * (1.0 + (x * 0.8).tanh())
            })
            .collect();
        let keep: Vec<bool> = v.iter().map(|x| x.abs() > 0.3).collect();
        let zeroed: Vec<f32> = v
            .iter()
            .zip(&keep)
            .map(|(&x, &k)| if k { x } else { 0.0 })
            .collect();
        let err = |r: &[f32]| -> f64 {
            r.iter()
                .zip(&v)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum()
        };
        let zero = err(&zeroed);
        for method in [
            fit_learned(&v, &keep, cols),
            fit_dictionary(&v, &keep, cols),
        ] {
            let mut r = zeroed.clone();
            rebuild(&mut r, &keep, cols, &method).unwrap();
            assert!(err(&r) < zero, "{method:?}: {} vs zero {}", err(&r), zero);
            for i in 0..v.len() {
                if keep[i] {
                    assert_eq!(r[i].to_bits(), v[i].to_bits());
                }
            }
        }
    }

    #[test]
    fn spatial_is_exact_on_a_plane_and_dictionary_tiles_by_column() {
        // Two 3x3 kernels per row, values linear in (y, x): the centre and edges are the
        // mean of their 4-neighbours.
        let (kh, kw) = (3usize, 3usize);
        let row: Vec<f32> = (0..18)
            .map(|i| ((i % 9) / 3) as f32 + ((i % 9) % 3) as f32)
            .collect();
        let keep: Vec<bool> = (0..18).map(|i| i % 9 != 4).collect();
        let mut v: Vec<f32> = row
            .iter()
            .zip(&keep)
            .map(|(&x, &k)| if k { x } else { 0.0 })
            .collect();
        let m = Reconstruction::Spatial { kh: 3, kw: 3 };
        rebuild(&mut v, &keep, 18, &m).unwrap();
        assert_eq!(v, row);
        assert!(rebuild(&mut v, &keep, 18, &Reconstruction::Spatial { kh: 4, kw: 2 }).is_err());
        let _ = (kh, kw);
        // A dictionary of 4 columns applied to the tile of columns 2..4.
        let d = Reconstruction::Dictionary {
            entry_len: 4,
            entries: vec![1.0, 2.0, 3.0, 4.0],
        };
        let mut t = vec![9.0, 0.0, 0.0, 9.0];
        rebuild_at(&mut t, &[true, false, false, true], 2, 2, &d).unwrap();
        assert_eq!(t, vec![9.0, 4.0, 3.0, 9.0]);
        assert!(rebuild_at(&mut t, &[true; 4], 2, 3, &d).is_err());
    }

    #[test]
    fn channels_rebuild_and_bad_indices_are_errors() {
        use sparsewire_metadata::ChannelCombination;
        // Row 1 = 2 * row 0 was dropped (zeros); rebuild it.
        let mut v = vec![1.0, -2.0, 0.0, 0.0, 0.5, 0.5];
        let c = ChannelCombination {
            row: 1,
            sources: vec![0],
            coefs: vec![2.0],
        };
        rebuild_channels(&mut v, 2, std::slice::from_ref(&c)).unwrap();
        assert_eq!(&v[2..4], &[2.0, -4.0]);
        let bad = ChannelCombination {
            row: 1,
            sources: vec![9],
            coefs: vec![1.0],
        };
        assert!(rebuild_channels(&mut v, 2, &[bad]).is_err());
        let bad = ChannelCombination {
            row: 1,
            sources: vec![0],
            coefs: vec![],
        };
        assert!(rebuild_channels(&mut v, 2, &[bad]).is_err());
    }
}
