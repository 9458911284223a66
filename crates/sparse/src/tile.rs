//! The one sparse tile: a `rows x cols` block of values of one dtype, as a [`Mask`] of kept
//! elements and the kept values in row-major order (little-endian bytes of the dtype).
//!
//! [`SparseTile`] owns both; [`SparseTileRef`] borrows them (from a stream's stored bytes,
//! a decode buffer or a [`SparseTile`]). The same type carries a whole tensor's 2-D view
//! (what the sparsification engine hands the stream writer), one stored tile (what the
//! reader hands the reconstruction engine and the matrix unit), or a block of activations.
//!
//! Values are bytes, whatever the dtype: a kept value comes back bit for bit (NaN
//! payloads, -0.0). Dtypes narrower than a byte (F4, F6) have no sparse tiles.

use crate::mask::{Mask, MaskRef};
use crate::SparseError;
use sparsewire_metadata::Dtype;

/// Bytes per value of `dtype`, or an error for dtypes narrower than a byte.
pub fn value_bytes(dtype: Dtype) -> Result<usize, SparseError> {
    let bits = dtype.bits();
    if !bits.is_multiple_of(8) {
        return Err(SparseError::Dtype { dtype });
    }
    Ok((bits / 8) as usize)
}

/// A sparse block, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseTile {
    rows: usize,
    cols: usize,
    dtype: Dtype,
    mask: Mask,
    values: Vec<u8>,
}

/// A sparse block, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseTileRef<'a> {
    rows: usize,
    cols: usize,
    dtype: Dtype,
    mask: MaskRef<'a>,
    values: &'a [u8],
}

fn numel(rows: usize, cols: usize) -> Result<usize, SparseError> {
    rows.checked_mul(cols).ok_or(SparseError::Overflow {
        array: "the tile shape",
    })
}

/// Checks shape, mask length and (with `count`) that the values are exactly the kept ones.
fn check(
    rows: usize,
    cols: usize,
    dtype: Dtype,
    mask: MaskRef<'_>,
    values: &[u8],
    count: bool,
) -> Result<(), SparseError> {
    let n = numel(rows, cols)?;
    let vb = value_bytes(dtype)?;
    if mask.len() != n {
        return Err(SparseError::Length {
            array: "mask",
            expected: n,
            got: mask.len(),
        });
    }
    let expected = if count {
        mask.kept() * vb
    } else {
        // The consumer counts as it reads: whole values, at most one per element.
        if !values.len().is_multiple_of(vb) || values.len() > n * vb {
            return Err(SparseError::Length {
                array: "values (bytes)",
                expected: (values.len() / vb).min(n) * vb,
                got: values.len(),
            });
        }
        values.len()
    };
    if values.len() != expected {
        return Err(SparseError::Length {
            array: "values (bytes)",
            expected,
            got: values.len(),
        });
    }
    Ok(())
}

impl SparseTile {
    /// A tile from its parts, checked: `rows * cols` mask bits and one value per kept bit.
    pub fn new(
        rows: usize,
        cols: usize,
        dtype: Dtype,
        mask: Mask,
        values: Vec<u8>,
    ) -> Result<Self, SparseError> {
        check(rows, cols, dtype, mask.as_ref(), &values, true)?;
        Ok(SparseTile {
            rows,
            cols,
            dtype,
            mask,
            values,
        })
    }

    /// The kept elements of a dense row-major block (`rows * cols` values of `dtype`).
    pub fn from_dense(
        rows: usize,
        cols: usize,
        dtype: Dtype,
        dense: &[u8],
        mask: Mask,
    ) -> Result<Self, SparseError> {
        let vb = value_bytes(dtype)?;
        let n = numel(rows, cols)?;
        if dense.len() != n * vb {
            return Err(SparseError::Length {
                array: "dense values (bytes)",
                expected: n * vb,
                got: dense.len(),
            });
        }
        if mask.len() != n {
            return Err(SparseError::Length {
                array: "mask",
                expected: n,
                got: mask.len(),
            });
        }
        let values = pack_kept(dense, mask.as_ref(), vb);
        Ok(SparseTile {
            rows,
            cols,
            dtype,
            mask,
            values,
        })
    }

    /// A dense block with every element whose bytes are not all zero kept (so -0.0 and
    /// NaN are kept, +0.0 dropped): dense -> sparse -> dense is bit-exact.
    pub fn from_dense_nonzero(
        rows: usize,
        cols: usize,
        dtype: Dtype,
        dense: &[u8],
    ) -> Result<Self, SparseError> {
        let vb = value_bytes(dtype)?;
        let n = numel(rows, cols)?;
        if dense.len() != n * vb {
            return Err(SparseError::Length {
                array: "dense values (bytes)",
                expected: n * vb,
                got: dense.len(),
            });
        }
        let mask = Mask::from_fn(n, |i| dense[i * vb..(i + 1) * vb].iter().any(|&b| b != 0));
        Self::from_dense(rows, cols, dtype, dense, mask)
    }

    /// The borrowed view.
    pub fn as_ref(&self) -> SparseTileRef<'_> {
        SparseTileRef {
            rows: self.rows,
            cols: self.cols,
            dtype: self.dtype,
            mask: self.mask.as_ref(),
            values: &self.values,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    pub fn mask(&self) -> &Mask {
        &self.mask
    }

    /// The kept values, row-major, little-endian bytes of the dtype.
    pub fn values(&self) -> &[u8] {
        &self.values
    }

    /// The parts: mask and kept values.
    pub fn into_parts(self) -> (Mask, Vec<u8>) {
        (self.mask, self.values)
    }

    /// The dense block, dropped elements zero.
    pub fn to_dense(&self) -> Vec<u8> {
        self.as_ref().to_dense()
    }

    /// Kept values before each row: `rows + 1` offsets (in values) for [`Self::crop`].
    pub fn row_offsets(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.rows + 1);
        let mut at = 0;
        out.push(0);
        let bits = self.mask.bits();
        let bytes = self.mask.as_bytes();
        for r in 0..self.rows {
            let (start, end) = (r * self.cols, (r + 1) * self.cols);
            at += if start % 8 == 0 && end % 8 == 0 {
                crate::mask::popcount(&bytes[start / 8..end / 8])
            } else {
                bits[start..end].count_ones()
            };
            out.push(at);
        }
        out
    }

    /// Rows `row..row + rows` (every column) as a view, with nothing copied, where their
    /// mask bits start on a byte boundary and end on one or at the tile's end (`offsets`
    /// from [`Self::row_offsets`]); `None` otherwise, or out of range: then [`Self::crop`]
    /// copies. The writer's whole-row tiles of a sparse tensor are almost always views.
    pub fn rows_view(
        &self,
        offsets: &[usize],
        row: usize,
        rows: usize,
    ) -> Option<SparseTileRef<'_>> {
        let end_row = row.checked_add(rows).filter(|&e| e <= self.rows)?;
        if offsets.len() != self.rows + 1 {
            return None;
        }
        let (start, end) = (row * self.cols, end_row * self.cols);
        if start % 8 != 0 || (end % 8 != 0 && end_row != self.rows) {
            return None;
        }
        let mask = MaskRef::new(
            self.mask.as_bytes().get(start / 8..end.div_ceil(8))?,
            end - start,
        )
        .ok()?;
        let vb = value_bytes(self.dtype).ok()?;
        let values = self.values.get(offsets[row] * vb..offsets[end_row] * vb)?;
        SparseTileRef::new(rows, self.cols, self.dtype, mask, values).ok()
    }

    /// The sub-block of rows `row..row + rows`, columns `col..col + cols`, as its own tile
    /// (`offsets` from [`Self::row_offsets`]).
    pub fn crop(
        &self,
        offsets: &[usize],
        row: usize,
        col: usize,
        rows: usize,
        cols: usize,
    ) -> Result<SparseTile, SparseError> {
        if row + rows > self.rows || col + cols > self.cols || offsets.len() != self.rows + 1 {
            return Err(SparseError::OutOfRange {
                array: "crop rectangle",
                position: 0,
                index: (row + rows).max(col + cols) as i64,
                bound: self.rows.max(self.cols),
            });
        }
        let vb = value_bytes(self.dtype)?;
        let bits = self.mask.bits();
        let mut mask = Mask::default();
        let mut values = Vec::new();
        for (r, &first) in offsets.iter().enumerate().skip(row).take(rows) {
            let start = r * self.cols;
            let before = bits[start..start + col].count_ones();
            let seg = &bits[start + col..start + col + cols];
            let v0 = first + before;
            let n = seg.count_ones();
            values.extend_from_slice(&self.values[v0 * vb..(v0 + n) * vb]);
            mask.extend_from_bits(seg);
        }
        SparseTile::new(rows, cols, self.dtype, mask, values)
    }
}

/// The kept values of a dense block, packed: every value is written, the cursor advances
/// only past kept ones (no branch per element).
fn pack_kept(dense: &[u8], mask: MaskRef<'_>, vb: usize) -> Vec<u8> {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    if let Some(v) = crate::avx512::pack_kept(dense, mask.as_bytes(), mask.len(), mask.kept(), vb) {
        return v;
    }
    match vb {
        2 => pack_kept_n::<2>(dense, mask),
        4 => pack_kept_n::<4>(dense, mask),
        1 => pack_kept_n::<1>(dense, mask),
        8 => pack_kept_n::<8>(dense, mask),
        _ => {
            let mut out = Vec::with_capacity(mask.kept() * vb);
            for i in mask.kept_indices() {
                out.extend_from_slice(&dense[i * vb..(i + 1) * vb]);
            }
            out
        }
    }
}

/// [`pack_kept`] for `N`-byte values: every value is copied to the write position, which
/// advances only past kept ones (no branch per element), eight elements per mask byte.
pub(crate) fn pack_kept_n<const N: usize>(dense: &[u8], mask: MaskRef<'_>) -> Vec<u8> {
    let n = mask.len();
    let mut out = vec![0u8; (mask.kept() + 1) * N];
    let mut at = 0;
    for (&byte, values) in mask.as_bytes().iter().zip(dense[..n * N].chunks(8 * N)) {
        for (j, v) in values.chunks_exact(N).enumerate() {
            out[at..at + N].copy_from_slice(v);
            at += N * (byte >> j & 1) as usize;
        }
    }
    out.truncate(at);
    out
}

impl<'a> SparseTileRef<'a> {
    /// A view over parts, checked: `rows * cols` mask bits and one value per kept bit.
    pub fn new(
        rows: usize,
        cols: usize,
        dtype: Dtype,
        mask: MaskRef<'a>,
        values: &'a [u8],
    ) -> Result<Self, SparseError> {
        check(rows, cols, dtype, mask, values, true)?;
        Ok(SparseTileRef {
            rows,
            cols,
            dtype,
            mask,
            values,
        })
    }

    /// A view whose kept count is not checked against the values here (only that they are
    /// whole values, at most one per element): for a consumer that reads the tile once and
    /// counts as it goes, such as the matrix unit's kernels. Everything that reads values
    /// by mask position must check the count; [`Self::counted`] does.
    pub fn new_uncounted(
        rows: usize,
        cols: usize,
        dtype: Dtype,
        mask: MaskRef<'a>,
        values: &'a [u8],
    ) -> Result<Self, SparseError> {
        check(rows, cols, dtype, mask, values, false)?;
        Ok(SparseTileRef {
            rows,
            cols,
            dtype,
            mask,
            values,
        })
    }

    /// This view with its kept count checked.
    pub fn counted(self) -> Result<Self, SparseError> {
        check(
            self.rows,
            self.cols,
            self.dtype,
            self.mask,
            self.values,
            true,
        )?;
        Ok(self)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    pub fn mask(&self) -> MaskRef<'a> {
        self.mask
    }

    pub fn values(&self) -> &'a [u8] {
        self.values
    }

    /// Bytes per value.
    pub fn value_bytes(&self) -> usize {
        value_bytes(self.dtype).expect("checked when the view was made")
    }

    /// An owned copy.
    pub fn to_owned(&self) -> SparseTile {
        SparseTile {
            rows: self.rows,
            cols: self.cols,
            dtype: self.dtype,
            mask: self.mask.to_owned(),
            values: self.values.to_vec(),
        }
    }

    /// The dense block, dropped elements zero.
    pub fn to_dense(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.rows * self.cols * self.value_bytes()];
        self.write_dense(&mut out)
            .expect("a buffer of the dense size");
        out
    }

    /// Writes the dense block into `out` (`rows * cols` values), dropped elements zero.
    pub fn write_dense(&self, out: &mut [u8]) -> Result<(), SparseError> {
        let vb = self.value_bytes();
        let n = self.rows * self.cols;
        if out.len() != n * vb {
            return Err(SparseError::Length {
                array: "dense output (bytes)",
                expected: n * vb,
                got: out.len(),
            });
        }
        out.fill(0);
        let mut at = 0;
        for i in self.mask.kept_indices() {
            let v = self
                .values
                .get(at..at + vb)
                .ok_or_else(|| SparseError::KeptCount {
                    kept: self.mask.kept(),
                    values: self.values.len() / vb,
                })?;
            out[i * vb..(i + 1) * vb].copy_from_slice(v);
            at += vb;
        }
        if at != self.values.len() {
            return Err(SparseError::KeptCount {
                kept: at / vb,
                values: self.values.len() / vb,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rows view, where there is one, is the tile the copying crop makes; it exists for
    /// every byte-aligned whole-row range and for ranges that end at the last row.
    #[test]
    fn rows_views_are_the_crops() {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            (seed >> 33) as usize
        };
        for (rows, cols) in [(40usize, 16usize), (37, 12), (9, 7), (1, 5), (30, 384)] {
            let dense: Vec<u8> = (0..rows * cols * 2).map(|_| next() as u8).collect();
            let mask = Mask::from_fn(rows * cols, |_| next() % 3 != 0);
            let t = SparseTile::from_dense(rows, cols, Dtype::BF16, &dense, mask).unwrap();
            let offsets = t.row_offsets();
            for row in 0..rows {
                for n in 0..=rows - row {
                    let (start, end) = (row * cols, (row + n) * cols);
                    let aligned = start % 8 == 0 && (end % 8 == 0 || row + n == rows);
                    let view = t.rows_view(&offsets, row, n);
                    assert_eq!(view.is_some(), aligned, "{rows}x{cols} rows {row}+{n}");
                    if let Some(v) = view {
                        let c = t.crop(&offsets, row, 0, n, cols).unwrap();
                        assert_eq!(v, c.as_ref(), "{rows}x{cols} rows {row}+{n}");
                    }
                }
            }
            assert!(t.rows_view(&offsets, rows, 1).is_none());
            assert!(t.rows_view(&offsets[1..], 0, 1).is_none());
        }
    }

    /// The AVX-512 compress-store pack writes what the scalar pack writes, for 2- and
    /// 4-byte values, on lengths around the vector widths and densities from none to all.
    #[test]
    // The portable build compiles the SIMD block out, leaving the guard's `return` last.
    #[allow(clippy::needless_return)]
    fn simd_pack_matches_the_scalar_pack() {
        if !crate::simd_test_guard("simd_pack_matches_the_scalar_pack") {
            return;
        }
        #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
        {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            let mut next = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            for n in [0usize, 1, 15, 16, 17, 31, 32, 33, 100, 1000, 4099] {
                let dense: Vec<u8> = (0..4 * n).map(|_| next() as u8).collect();
                for keep_in_16 in [0u64, 1, 8, 15, 16] {
                    let mask = Mask::from_fn(n, |_| next() % 16 < keep_in_16);
                    let m = mask.as_ref();
                    let fast2 = crate::avx512::pack_kept(&dense, m.as_bytes(), n, m.kept(), 2);
                    assert_eq!(fast2, Some(pack_kept_n::<2>(&dense, m)), "n {n} bf16");
                    let fast4 = crate::avx512::pack_kept(&dense, m.as_bytes(), n, m.kept(), 4);
                    assert_eq!(fast4, Some(pack_kept_n::<4>(&dense, m)), "n {n} f32");
                }
            }
        }
    }

    #[test]
    fn dense_round_trips_and_crops() {
        let (rows, cols) = (5usize, 7usize);
        let dense: Vec<u8> = (0..rows * cols * 2).map(|i| (i * 37 % 251) as u8).collect();
        let mask = Mask::from_fn(rows * cols, |i| i % 3 != 1);
        let t = SparseTile::from_dense(rows, cols, Dtype::BF16, &dense, mask.clone()).unwrap();
        let back = t.to_dense();
        for i in 0..rows * cols {
            let want = if mask.is_kept(i) {
                &dense[2 * i..2 * i + 2]
            } else {
                &[0, 0][..]
            };
            assert_eq!(&back[2 * i..2 * i + 2], want);
        }
        let offsets = t.row_offsets();
        let c = t.crop(&offsets, 1, 2, 3, 4).unwrap();
        let cd = c.to_dense();
        for r in 0..3 {
            for k in 0..4 {
                let i = (1 + r) * cols + 2 + k;
                assert_eq!(&cd[2 * (r * 4 + k)..][..2], &back[2 * i..2 * i + 2]);
            }
        }
        assert!(t.crop(&offsets, 4, 0, 2, 1).is_err());
    }

    #[test]
    fn counts_are_checked() {
        let m = Mask::from_bools(&[true, false, true]);
        assert!(SparseTile::new(1, 3, Dtype::F32, m.clone(), vec![0; 4]).is_err());
        assert!(SparseTile::new(1, 3, Dtype::F32, m.clone(), vec![0; 8]).is_ok());
        let v = [0u8; 4];
        let r = SparseTileRef::new_uncounted(1, 3, Dtype::F32, m.as_ref(), &v).unwrap();
        assert!(matches!(r.counted(), Err(SparseError::Length { .. })));
        assert!(r.write_dense(&mut [0u8; 12]).is_err());
        assert!(matches!(
            SparseTile::new(1, 3, Dtype::F4, m, vec![]),
            Err(SparseError::Dtype { .. })
        ));
    }
}
