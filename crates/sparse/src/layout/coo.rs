//! Coordinate lists, row-major.

use super::{counts, index, length, SparseIndex};
use crate::mask::Mask;
use crate::tile::{SparseTile, SparseTileRef};
use crate::SparseError;
use sparsewire_metadata::Dtype;
use std::borrow::Cow;

/// Coordinates: entry `k` is at (`row[k]`, `col[k]`); entries are in row-major order with
/// no repeats (as `scipy.sparse.coo_matrix` after `sum_duplicates`, and as
/// `torch.sparse_coo_tensor(...).coalesce()` gives them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coo<'a, I> {
    pub rows: usize,
    pub cols: usize,
    pub dtype: Dtype,
    pub row: Vec<I>,
    pub col: Vec<I>,
    pub values: Cow<'a, [u8]>,
}

impl<'a> SparseTileRef<'a> {
    /// The tile as coordinates; the values are borrowed.
    pub fn to_coo<I: SparseIndex>(&self) -> Result<Coo<'a, I>, SparseError> {
        let cols = self.cols();
        let nnz = self.mask().kept();
        length("values", nnz, self.values().len() / self.value_bytes())?;
        let mut row = Vec::with_capacity(nnz);
        let mut col = Vec::with_capacity(nnz);
        for i in self.mask().kept_indices() {
            row.push(index(i / cols, "row")?);
            col.push(index(i % cols, "col")?);
        }
        Ok(Coo {
            rows: self.rows(),
            cols,
            dtype: self.dtype(),
            row,
            col,
            values: Cow::Borrowed(self.values()),
        })
    }
}

impl<I: SparseIndex> Coo<'_, I> {
    /// Back to a tile: indices in range, strictly row-major (a repeat is a
    /// [`SparseError::Duplicate`], a step back [`SparseError::Unsorted`]).
    pub fn to_tile(&self) -> Result<SparseTile, SparseError> {
        let (nnz, n) = counts(self.dtype, &self.values, self.rows, self.cols)?;
        length("row", nnz, self.row.len())?;
        length("col", nnz, self.col.len())?;
        let mut mask = Mask::empty(n);
        let mut prev: Option<usize> = None;
        for (position, (&r, &c)) in self.row.iter().zip(&self.col).enumerate() {
            let check = |v: I, array, bound| {
                v.to_usize()
                    .filter(|&x| x < bound)
                    .ok_or(SparseError::OutOfRange {
                        array,
                        position,
                        index: v.to_i64(),
                        bound,
                    })
            };
            let (r, c) = (check(r, "row", self.rows)?, check(c, "col", self.cols)?);
            let at = r * self.cols + c;
            match prev {
                Some(p) if p == at => {
                    return Err(SparseError::Duplicate {
                        array: "row/col",
                        position,
                    })
                }
                Some(p) if at < p => {
                    return Err(SparseError::Unsorted {
                        array: "row/col",
                        position,
                    })
                }
                _ => {}
            }
            prev = Some(at);
            mask.set(at, true);
        }
        SparseTile::new(self.rows, self.cols, self.dtype, mask, self.values.to_vec())
    }
}
