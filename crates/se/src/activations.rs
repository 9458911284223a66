//! Runtime activation sparsification: per call, nothing on disk.
//!
//! [`sparsify_activations`] turns a `[rows, cols]` f32 activation block into a
//! [`SparseTile`] (a bitmask and the kept values in order), ready to send; [`to_bytes`]
//! lays it out as one buffer and [`from_bytes`] undoes it on the receiving side, where
//! [`densify`] zero-fills it. No entropy stage: this path is meant to run at memory speed.

use sparsewire_metadata::Dtype;
use sparsewire_sparse::{Mask, MaskRef, SparseTile};

/// Which activations to keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ActivationPolicy {
    /// Keep |a| > threshold.
    Threshold(f32),
    /// Keep the k largest |a| of each row.
    TopKPerRow(usize),
    /// Keep this fraction of each row (largest |a|).
    KeepFraction(f32),
}

/// Errors of activation sparsification.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActivationError {
    #[error("sparse activation buffer is malformed: {0}")]
    Malformed(&'static str),
    #[error("an activation block of {rows} x {cols} needs {} values, got {got}", rows * cols)]
    Shape {
        rows: usize,
        cols: usize,
        got: usize,
    },
    #[error("activation policy {0}")]
    Policy(String),
}

/// Sparsifies `a` (`rows * cols` values, row-major) into an F32 tile.
pub fn sparsify_activations(
    a: &[f32],
    rows: usize,
    cols: usize,
    policy: ActivationPolicy,
) -> Result<SparseTile, ActivationError> {
    sparsify(a, rows, cols, policy, None)
}

/// [`sparsify_activations`] ranking each value by `|a_ij| * scale_j` instead of `|a_ij|`
/// (the threshold applies to that product too).
///
/// With `scale_j = ‖W[:, j]‖`, the norm of the column of the weight that multiplies the
/// block next, the rank is what dropping `a_ij` moves that layer's output by when the
/// columns are orthogonal (`W a - W (a ⊙ m) = Σ_j dropped a_ij W[:, j]`): the activation
/// analogue of Wanda, known as WINA for training-free activation sparsity. The scale is
/// the sender's to choose; the receiver needs nothing of it (the mask is explicit).
/// `scale` must hold `cols` finite values `>= 0`.
pub fn sparsify_activations_scaled(
    a: &[f32],
    rows: usize,
    cols: usize,
    policy: ActivationPolicy,
    scale: &[f32],
) -> Result<SparseTile, ActivationError> {
    if scale.len() != cols {
        return Err(ActivationError::Policy(format!(
            "a column scale of {} values for {cols} columns",
            scale.len()
        )));
    }
    if let Some(j) = scale.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
        return Err(ActivationError::Policy(format!(
            "column scale {j} is {}: must be a finite number >= 0",
            scale[j]
        )));
    }
    sparsify(a, rows, cols, policy, Some(scale))
}

fn sparsify(
    a: &[f32],
    rows: usize,
    cols: usize,
    policy: ActivationPolicy,
    scale: Option<&[f32]>,
) -> Result<SparseTile, ActivationError> {
    if rows.checked_mul(cols) != Some(a.len()) {
        return Err(ActivationError::Shape {
            rows,
            cols,
            got: a.len(),
        });
    }
    match policy {
        ActivationPolicy::Threshold(t) if t.is_nan() || t < 0.0 => {
            return Err(ActivationError::Policy(format!(
                "threshold {t}: must be a number >= 0"
            )))
        }
        ActivationPolicy::KeepFraction(f) if !(0.0..=1.0).contains(&f) => {
            return Err(ActivationError::Policy(format!(
                "keep fraction {f}: must be in [0, 1]"
            )))
        }
        _ => {}
    }
    let n = a.len();
    let mut mask = vec![0u8; n.div_ceil(8)];
    // Room for every value (+1 slot for the branch-free write past the last kept one).
    let mut values = vec![0f32; n + 1];
    let mut count = 0usize;
    // A value's rank: |a|, or |a| times its column's scale.
    let rank = |v: f32, col: usize| match scale {
        None => v.abs(),
        Some(s) => v.abs() * s[col],
    };
    // `row` starts at flat index `base`: one row of the block (its column `k * 8 + j`),
    // or the whole block when unscaled, where the column is not read.
    let push_row = |row: &[f32],
                    base: usize,
                    thr: f32,
                    mask: &mut [u8],
                    values: &mut [f32],
                    count: &mut usize| {
        for (k, chunk) in row.chunks(8).enumerate() {
            let mut bits = 0u8;
            for (j, &v) in chunk.iter().enumerate() {
                bits |= ((rank(v, k * 8 + j) > thr) as u8) << j;
            }
            let start = base + k * 8;
            if start.is_multiple_of(8) && chunk.len() == 8 {
                mask[start / 8] = bits;
            } else {
                for j in 0..chunk.len() {
                    if bits >> j & 1 == 1 {
                        mask[(start + j) / 8] |= 1 << ((start + j) % 8);
                    }
                }
            }
            // Branch-free packing: write every value, advance past the kept ones.
            for (j, &v) in chunk.iter().enumerate() {
                values[*count] = v;
                *count += (bits >> j & 1) as usize;
            }
        }
    };
    match policy {
        ActivationPolicy::Threshold(t) if scale.is_none() => {
            push_row(a, 0, t, &mut mask, &mut values, &mut count)
        }
        ActivationPolicy::Threshold(t) => {
            for r in 0..rows {
                let row = &a[r * cols..(r + 1) * cols];
                push_row(row, r * cols, t, &mut mask, &mut values, &mut count);
            }
        }
        ActivationPolicy::TopKPerRow(_) | ActivationPolicy::KeepFraction(_) => {
            let k = match policy {
                ActivationPolicy::TopKPerRow(k) => k.min(cols),
                ActivationPolicy::KeepFraction(f) => {
                    ((cols as f64 * f as f64).round() as usize).min(cols)
                }
                ActivationPolicy::Threshold(_) => unreachable!(),
            };
            let mut mags = vec![0f32; cols];
            for r in 0..rows {
                let row = &a[r * cols..(r + 1) * cols];
                // The k-th largest rank is the row's threshold; ties just below it are
                // dropped, so at most k are kept.
                let thr = if k == 0 {
                    f32::INFINITY
                } else if k == cols {
                    -1.0
                } else {
                    for (j, (m, &v)) in mags.iter_mut().zip(row).enumerate() {
                        *m = rank(v, j);
                    }
                    let (_, kth, _) = mags.select_nth_unstable_by(cols - k, |x, y| x.total_cmp(y));
                    let kth = *kth;
                    // Largest value below the k-th: keep ranks > that.
                    mags[..cols - k]
                        .iter()
                        .copied()
                        .fold(f32::NEG_INFINITY, f32::max)
                        .min(kth)
                };
                push_row(row, r * cols, thr, &mut mask, &mut values, &mut count);
            }
        }
    }
    values.truncate(count);
    let mask = Mask::from_packed(mask, n).expect("packed row by row, padding zero");
    let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Ok(SparseTile::new(rows, cols, Dtype::F32, mask, bytes).expect("one value per kept bit"))
}

/// `u32 rows, u32 cols, u32 kept` (little-endian), the mask bytes, the kept values.
pub fn to_bytes(t: &SparseTile) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + t.mask().as_bytes().len() + t.values().len());
    for v in [t.rows(), t.cols(), t.mask().kept()] {
        out.extend_from_slice(&(v as u32).to_le_bytes());
    }
    out.extend_from_slice(t.mask().as_bytes());
    out.extend_from_slice(t.values());
    out
}

/// Parses [`to_bytes`], checking every length against the buffer.
pub fn from_bytes(b: &[u8]) -> Result<SparseTile, ActivationError> {
    let u = |i: usize| -> Result<usize, ActivationError> {
        b.get(i..i + 4)
            .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")) as usize)
            .ok_or(ActivationError::Malformed("truncated header"))
    };
    let (rows, cols, kept) = (u(0)?, u(4)?, u(8)?);
    let n = rows
        .checked_mul(cols)
        .ok_or(ActivationError::Malformed("shape overflows"))?;
    let mlen = n.div_ceil(8);
    let need = 12usize
        .checked_add(mlen)
        .and_then(|x| x.checked_add(kept.checked_mul(4)?))
        .ok_or(ActivationError::Malformed("sizes overflow"))?;
    if b.len() != need {
        return Err(ActivationError::Malformed(
            "length does not match the header",
        ));
    }
    let mask = MaskRef::new(&b[12..12 + mlen], n)
        .map_err(|_| ActivationError::Malformed("mask padding bits set"))?;
    if mask.kept() != kept {
        return Err(ActivationError::Malformed("mask and value count disagree"));
    }
    SparseTile::new(
        rows,
        cols,
        Dtype::F32,
        mask.to_owned(),
        b[12 + mlen..].to_vec(),
    )
    .map_err(|_| ActivationError::Malformed("mask and value count disagree"))
}

/// The dense block, dropped activations zero.
pub fn densify(t: &SparseTile) -> Vec<f32> {
    let mut out = vec![0f32; t.rows() * t.cols()];
    sparsewire_sparse::expand_f32(sparsewire_sparse::Values::Sparse(t.as_ref()), &mut out)
        .expect("an F32 tile of its own shape");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scaled ranking against a brute-force reference: per row, the k values with the
    /// largest |a| * scale (distinct products, so the set is unique), or every product
    /// above the threshold.
    #[test]
    fn scaled_keeps_the_largest_products() {
        let (rows, cols) = (5, 19);
        let a: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919 % 101) as f32 - 50.0) * 0.013 + i as f32 * 1e-5)
            .collect();
        let scale: Vec<f32> = (0..cols)
            .map(|j| 0.2 + (j * 13 % 7) as f32 * 0.31)
            .collect();
        for k in [0, 1, 6, 12, 19] {
            let t = sparsify_activations_scaled(
                &a,
                rows,
                cols,
                ActivationPolicy::TopKPerRow(k),
                &scale,
            )
            .unwrap();
            for r in 0..rows {
                let mut order: Vec<usize> = (0..cols).collect();
                let p = |j: usize| a[r * cols + j].abs() * scale[j];
                order.sort_by(|&x, &y| p(y).total_cmp(&p(x)));
                for (rank, &j) in order.iter().enumerate() {
                    assert_eq!(t.mask().is_kept(r * cols + j), rank < k, "row {r} k {k}");
                }
            }
            let d = densify(&t);
            assert!(a.iter().zip(&d).all(|(x, y)| *y == 0.0 || x == y));
        }
        let t =
            sparsify_activations_scaled(&a, rows, cols, ActivationPolicy::Threshold(0.3), &scale)
                .unwrap();
        for (i, x) in a.iter().enumerate() {
            assert_eq!(t.mask().is_kept(i), x.abs() * scale[i % cols] > 0.3);
        }
        let bad = |s: &[f32]| {
            sparsify_activations_scaled(&a, rows, cols, ActivationPolicy::KeepFraction(0.5), s)
                .is_err()
        };
        assert!(bad(&scale[1..]));
        assert!(bad(&[&scale[1..], &[f32::NAN]].concat()));
        assert!(bad(&[&scale[1..], &[-1.0]].concat()));
    }

    #[test]
    fn policies_round_trip() {
        let a: Vec<f32> = (0..7 * 13)
            .map(|i| ((i * 37 % 19) as f32 - 9.0) * 0.1)
            .collect();
        for p in [
            ActivationPolicy::Threshold(0.35),
            ActivationPolicy::TopKPerRow(4),
            ActivationPolicy::KeepFraction(0.5),
            ActivationPolicy::KeepFraction(1.0),
            ActivationPolicy::TopKPerRow(0),
        ] {
            let s = sparsify_activations(&a, 7, 13, p).unwrap();
            let back = from_bytes(&to_bytes(&s)).unwrap();
            let ones = vec![1f32; 13];
            assert_eq!(
                sparsify_activations_scaled(&a, 7, 13, p, &ones).unwrap(),
                sparsify_activations(&a, 7, 13, p).unwrap()
            );
            assert_eq!(back, s);
            let d = densify(&back);
            for (x, y) in a.iter().zip(&d) {
                assert!(*y == 0.0 || x == y);
            }
            if let ActivationPolicy::TopKPerRow(k) = p {
                for r in 0..7 {
                    assert!((0..13).filter(|&c| d[r * 13 + c] != 0.0).count() <= k);
                }
            }
            if p == ActivationPolicy::Threshold(0.35) {
                assert!(a
                    .iter()
                    .zip(&d)
                    .all(|(x, y)| (x.abs() > 0.35) == (*y != 0.0)));
            }
        }
        assert!(from_bytes(&[1, 0, 0, 0]).is_err());
        let mut bad =
            to_bytes(&sparsify_activations(&a, 7, 13, ActivationPolicy::Threshold(0.1)).unwrap());
        bad.pop();
        assert!(from_bytes(&bad).is_err());
        assert!(sparsify_activations(&a[1..], 7, 13, ActivationPolicy::Threshold(0.1)).is_err());
        assert!(sparsify_activations(&a, 7, 13, ActivationPolicy::Threshold(f32::NAN)).is_err());
        assert!(sparsify_activations(&a, 7, 13, ActivationPolicy::KeepFraction(1.5)).is_err());
    }
}
