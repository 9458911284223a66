//! Runtime activation sparsification: per call, nothing on disk.
//!
//! [`sparsify_activations`] turns a `[rows, cols]` f32 activation block into a bitmask
//! (packed LSB first, row-major, as `MaskEncoding::Bitmask` in a tile) and the kept values
//! in order, ready to send; [`SparseActivations::to_bytes`] lays them out as one buffer and
//! [`SparseActivations::from_bytes`] and [`SparseActivations::densify`] undo it on the
//! receiving side (zero-fill). No entropy stage: this path is meant to run at memory speed.

use sparsewire_masks::Mask;

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

/// A sparsified activation block.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseActivations {
    pub rows: usize,
    pub cols: usize,
    /// Packed kept bits, `ceil(rows*cols / 8)` bytes.
    pub mask: Vec<u8>,
    /// Kept values, row-major.
    pub values: Vec<f32>,
}

/// Errors of the receiving side.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActivationError {
    #[error("sparse activation buffer is malformed: {0}")]
    Malformed(&'static str),
}

/// Sparsifies `a` (`rows * cols` values).
pub fn sparsify_activations(
    a: &[f32],
    rows: usize,
    cols: usize,
    policy: ActivationPolicy,
) -> SparseActivations {
    assert_eq!(a.len(), rows * cols, "activation block shape");
    let n = a.len();
    let mut mask = vec![0u8; n.div_ceil(8)];
    // Room for every value (+1 slot for the branch-free write past the last kept one).
    let mut values = vec![0f32; n + 1];
    let mut count = 0usize;
    let push_row = |row: &[f32],
                    base: usize,
                    thr: f32,
                    mask: &mut [u8],
                    values: &mut [f32],
                    count: &mut usize| {
        for (k, chunk) in row.chunks(8).enumerate() {
            let mut bits = 0u8;
            for (j, &v) in chunk.iter().enumerate() {
                bits |= ((v.abs() > thr) as u8) << j;
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
        ActivationPolicy::Threshold(t) => push_row(a, 0, t, &mut mask, &mut values, &mut count),
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
                // The k-th largest magnitude is the row's threshold; ties just below it are
                // dropped, so at most k are kept.
                let thr = if k == 0 {
                    f32::INFINITY
                } else if k == cols {
                    -1.0
                } else {
                    for (m, v) in mags.iter_mut().zip(row) {
                        *m = v.abs();
                    }
                    let (_, kth, _) = mags.select_nth_unstable_by(cols - k, |x, y| x.total_cmp(y));
                    let kth = *kth;
                    // Largest value below the k-th: keep |a| > that.
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
    SparseActivations {
        rows,
        cols,
        mask,
        values,
    }
}

impl SparseActivations {
    /// The mask as a [`Mask`].
    pub fn mask(&self) -> Mask {
        let n = self.rows * self.cols;
        Mask::from_kept((0..n).map(|i| self.mask[i / 8] >> (i % 8) & 1 == 1))
    }

    /// `u32 rows, u32 cols, u32 kept` (little-endian), the mask bytes, the kept values.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.mask.len() + 4 * self.values.len());
        for v in [self.rows, self.cols, self.values.len()] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        out.extend_from_slice(&self.mask);
        for v in &self.values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Parses [`Self::to_bytes`], checking every length against the buffer.
    pub fn from_bytes(b: &[u8]) -> Result<Self, ActivationError> {
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
        let mask = b[12..12 + mlen].to_vec();
        let ones: usize = mask.iter().map(|x| x.count_ones() as usize).sum();
        if ones != kept || (n % 8 != 0 && mask[mlen - 1] >> (n % 8) != 0) {
            return Err(ActivationError::Malformed("mask and value count disagree"));
        }
        let values = b[12 + mlen..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        Ok(SparseActivations {
            rows,
            cols,
            mask,
            values,
        })
    }

    /// The dense block, dropped activations zero.
    pub fn densify(&self) -> Vec<f32> {
        let n = self.rows * self.cols;
        let mut out = vec![0f32; n];
        let mut vi = self.values.iter();
        for (i, o) in out.iter_mut().enumerate() {
            if self.mask[i / 8] >> (i % 8) & 1 == 1 {
                *o = *vi.next().expect("mask and values agree");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let s = sparsify_activations(&a, 7, 13, p);
            let back = SparseActivations::from_bytes(&s.to_bytes()).unwrap();
            assert_eq!(back, s);
            let d = back.densify();
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
        assert!(SparseActivations::from_bytes(&[1, 0, 0, 0]).is_err());
        let mut bad = sparsify_activations(&a, 7, 13, ActivationPolicy::Threshold(0.1)).to_bytes();
        bad.pop();
        assert!(SparseActivations::from_bytes(&bad).is_err());
    }
}
