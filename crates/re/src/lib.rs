//! The reconstruction engine (accelerator side, docs/SPEC.md §6): rebuilds dense tiles
//! from what crossed the link.
//!
//! Takes a tile's kept values and its [`Mask`] and a
//! [`sparsewire_metadata::Reconstruction`] method; gives the dense tile. The foundation
//! release implements `Zero` (dropped elements are 0, which is also how a dense tile
//! passes through unchanged), `Channels` ([`rebuild_channels`]: rows dropped by the
//! correlation criterion rebuilt from kept rows), and, on a whole zero-filled matrix,
//! `Linear` and `Learned` ([`rebuild`]): each dropped element predicted from the nearest
//! kept elements of its row. The reconstruction buffer and on-demand tile scheduling live in
//! `sparsewire-accel` and `sparsewire-pipeline::mmo`; dictionaries are not implemented yet.
//!
//! **Row context.** For a dropped element, `l1`, `l2` are the nearest and second-nearest
//! kept values to its left, `r1`, `r2` to its right, at distances `dl`, `dr`. `Linear`
//! interpolates `(dr·l1 + dl·r1) / (dl + dr)` when both sides exist and extrapolates from the
//! two nearest on one side otherwise (exact on a linear ramp); one kept value is copied, none
//! gives zero. `Learned` predicts `p · [interp, l1, r1, 1]` with parameters `p` fitted at
//! compress time by ridge regression on the kept elements (each predicted from its kept
//! neighbours as if it had been dropped), so it can shrink towards zero where neighbours say
//! little.
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
    // Both methods are a dot product with the features: `Linear` is [1, 0, 0, 0].
    let p: [f64; 4] = match method {
        Reconstruction::Zero => return Ok(()),
        Reconstruction::Channels { combinations } => {
            return rebuild_channels(values, cols, combinations)
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
        Reconstruction::Dictionary { .. } => {
            return Err(ReconstructError::Unsupported("dictionary"))
        }
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

/// Fits the `Learned` parameters on the kept elements of `values` (each predicted from its
/// kept neighbours), by ridge regression.
pub fn fit_learned(values: &[f32], keep: &[bool], cols: usize) -> Reconstruction {
    let mut g = [[0f64; 4]; 4];
    let mut r = [0f64; 4];
    let mut n = 0usize;
    for (row, krow) in values.chunks(cols.max(1)).zip(keep.chunks(cols.max(1))) {
        for j in 0..row.len() {
            if !krow[j] {
                continue;
            }
            let f = features(row, &exclude(krow, j), j);
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
        ga[a] += 1e-6 * scale.max(1e-30);
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
        Reconstruction::Dictionary { .. } => Err(ReconstructError::Unsupported("dictionary")),
        // Rows are rebuilt on the dense tensor, after zero-fill: see `rebuild_channels`.
        Reconstruction::Channels { .. } => reconstruct_f32(kept, mask, &Reconstruction::Zero),
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
        for method in [Reconstruction::Linear, fit_learned(&zeroed, &keep, cols)] {
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
