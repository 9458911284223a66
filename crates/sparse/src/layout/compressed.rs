//! Compressed sparse rows and columns.

use super::{check_line, check_ptr, counts, index, length, SparseIndex};
use crate::mask::Mask;
use crate::tile::{value_bytes, SparseTile, SparseTileRef};
use crate::SparseError;
use sparsewire_metadata::Dtype;
use std::borrow::Cow;

/// Compressed sparse rows: row `r`'s kept elements are `col_idx[row_ptr[r]..row_ptr[r + 1]]`
/// (ascending) with those `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csr<'a, I> {
    pub rows: usize,
    pub cols: usize,
    pub dtype: Dtype,
    pub row_ptr: Vec<I>,
    pub col_idx: Vec<I>,
    /// Little-endian bytes of `dtype`, one value per entry of `col_idx`.
    pub values: Cow<'a, [u8]>,
}

/// Compressed sparse columns: column `c`'s kept elements are
/// `row_idx[col_ptr[c]..col_ptr[c + 1]]` (ascending) with those `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csc<'a, I> {
    pub rows: usize,
    pub cols: usize,
    pub dtype: Dtype,
    pub col_ptr: Vec<I>,
    pub row_idx: Vec<I>,
    pub values: Cow<'a, [u8]>,
}

impl<'a> SparseTileRef<'a> {
    /// The tile as CSR; the values are borrowed (a tile's kept values are row-major).
    pub fn to_csr<I: SparseIndex>(&self) -> Result<Csr<'a, I>, SparseError> {
        let (rows, cols) = (self.rows(), self.cols());
        let mut row_ptr = Vec::with_capacity(rows + 1);
        let mut col_idx = Vec::with_capacity(self.mask().kept());
        row_ptr.push(index(0, "row_ptr")?);
        let bits = self.mask().bits();
        for r in 0..rows {
            for c in bits[r * cols..(r + 1) * cols].iter_ones() {
                col_idx.push(index(c, "col_idx")?);
            }
            row_ptr.push(index(col_idx.len(), "row_ptr")?);
        }
        let vb = self.value_bytes();
        length("values", col_idx.len(), self.values().len() / vb)?;
        Ok(Csr {
            rows,
            cols,
            dtype: self.dtype(),
            row_ptr,
            col_idx,
            values: Cow::Borrowed(self.values()),
        })
    }

    /// The tile as CSC (values reordered column by column).
    pub fn to_csc<I: SparseIndex>(&self) -> Result<Csc<'static, I>, SparseError> {
        let (rows, cols) = (self.rows(), self.cols());
        let vb = self.value_bytes();
        let nnz = self.mask().kept();
        length("values", nnz, self.values().len() / vb)?;
        let bits = self.mask().bits();
        let mut counts = vec![0usize; cols + 1];
        for i in bits.iter_ones() {
            counts[i % cols + 1] += 1;
        }
        for c in 0..cols {
            counts[c + 1] += counts[c];
        }
        let col_ptr = counts
            .iter()
            .map(|&p| index(p, "col_ptr"))
            .collect::<Result<Vec<I>, _>>()?;
        let mut next = counts;
        let mut row_idx = vec![index(0, "row_idx")?; nnz];
        let mut values = vec![0u8; nnz * vb];
        for (k, i) in bits.iter_ones().enumerate() {
            let (r, c) = (i / cols, i % cols);
            let at = next[c];
            next[c] += 1;
            row_idx[at] = index(r, "row_idx")?;
            values[at * vb..(at + 1) * vb].copy_from_slice(&self.values()[k * vb..(k + 1) * vb]);
        }
        Ok(Csc {
            rows,
            cols,
            dtype: self.dtype(),
            col_ptr,
            row_idx,
            values: Cow::Owned(values),
        })
    }
}

impl<I: SparseIndex> Csr<'_, I> {
    /// Back to a tile, checking every array (see the module docs).
    pub fn to_tile(&self) -> Result<SparseTile, SparseError> {
        let (nnz, n) = counts(self.dtype, &self.values, self.rows, self.cols)?;
        length("col_idx", nnz, self.col_idx.len())?;
        let ptr = check_ptr("row_ptr", &self.row_ptr, self.rows, nnz)?;
        let mut mask = Mask::empty(n);
        for r in 0..self.rows {
            check_line("col_idx", &self.col_idx, ptr[r], ptr[r + 1], self.cols)?;
            for &c in &self.col_idx[ptr[r]..ptr[r + 1]] {
                mask.set(r * self.cols + c.to_usize().expect("checked"), true);
            }
        }
        SparseTile::new(self.rows, self.cols, self.dtype, mask, self.values.to_vec())
    }

    /// With owned values.
    pub fn into_owned(self) -> Csr<'static, I> {
        Csr {
            values: Cow::Owned(self.values.into_owned()),
            ..self
        }
    }
}

impl<I: SparseIndex> Csc<'_, I> {
    /// Back to a tile, checking every array (see the module docs).
    pub fn to_tile(&self) -> Result<SparseTile, SparseError> {
        let (nnz, n) = counts(self.dtype, &self.values, self.rows, self.cols)?;
        length("row_idx", nnz, self.row_idx.len())?;
        let ptr = check_ptr("col_ptr", &self.col_ptr, self.cols, nnz)?;
        // Row-major slot of each entry: count per row first.
        let mut row_count = vec![0usize; self.rows + 1];
        for c in 0..self.cols {
            check_line("row_idx", &self.row_idx, ptr[c], ptr[c + 1], self.rows)?;
            for &r in &self.row_idx[ptr[c]..ptr[c + 1]] {
                row_count[r.to_usize().expect("checked") + 1] += 1;
            }
        }
        for r in 0..self.rows {
            row_count[r + 1] += row_count[r];
        }
        // Columns are visited in order, so each row's entries land in column order.
        let mut next = row_count;
        let vb = value_bytes(self.dtype)?;
        let mut values = vec![0u8; nnz * vb];
        let mut mask = Mask::empty(n);
        for c in 0..self.cols {
            for k in ptr[c]..ptr[c + 1] {
                let r = self.row_idx[k].to_usize().expect("checked");
                let at = next[r];
                next[r] += 1;
                values[at * vb..(at + 1) * vb].copy_from_slice(&self.values[k * vb..(k + 1) * vb]);
                mask.set(r * self.cols + c, true);
            }
        }
        SparseTile::new(self.rows, self.cols, self.dtype, mask, values)
    }
}
