//! The sparse matrix layouts other libraries take, to and from a [`crate::SparseTile`].
//!
//! | layout | arrays | order | from a tile |
//! |---|---|---|---|
//! | [`Csr`] | `row_ptr` (rows + 1), `col_idx` (nnz), `values` (nnz) | row-major | values borrowed |
//! | [`Csc`] | `col_ptr` (cols + 1), `row_idx` (nnz), `values` (nnz) | column-major | values reordered |
//! | [`Coo`] | `row` (nnz), `col` (nnz), `values` (nnz) | row-major | values borrowed |
//! | [`NmTile`] | `values` (rows x cols·N/M), `indices` (packed, ⌈log2 M⌉ bits each) | row-major | values borrowed |
//!
//! Indices are `u32` or `i64` ([`SparseIndex`]), as `scipy.sparse` (int32/int64) and
//! `torch.sparse_csr_tensor` (int32/int64) take them. A tile's kept values are already in
//! row-major order, so CSR, COO and N:M lend them without a copy (`Cow::Borrowed`); CSC
//! reorders them.
//!
//! Going back to a tile checks everything an external array can get wrong, with a typed
//! [`SparseError`] naming the array and position: lengths, a `row_ptr` that does not start
//! at 0, decreases or does not end at nnz, indices out of range, unsorted or duplicated
//! within a row (column), N:M groups that do not keep exactly N.

mod compressed;
mod coo;
mod nm;

pub use compressed::{Csc, Csr};
pub use coo::Coo;
pub use nm::NmTile;

use crate::SparseError;
use sparsewire_metadata::Dtype;

/// An index type of the exported arrays.
pub trait SparseIndex: Copy + std::fmt::Debug + PartialEq + Send + Sync + 'static {
    /// The dtype it is stored as.
    const DTYPE: Dtype;
    /// `v` as this index type, if it fits.
    fn from_usize(v: usize) -> Option<Self>;
    /// The value as an offset, if it is one (non-negative, fits `usize`).
    fn to_usize(self) -> Option<usize>;
    /// The value for error messages.
    fn to_i64(self) -> i64;
    /// Little-endian bytes.
    fn write_le(self, out: &mut Vec<u8>);
}

impl SparseIndex for u32 {
    const DTYPE: Dtype = Dtype::U32;
    fn from_usize(v: usize) -> Option<Self> {
        u32::try_from(v).ok()
    }
    fn to_usize(self) -> Option<usize> {
        usize::try_from(self).ok()
    }
    fn to_i64(self) -> i64 {
        i64::from(self)
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl SparseIndex for i64 {
    const DTYPE: Dtype = Dtype::I64;
    fn from_usize(v: usize) -> Option<Self> {
        i64::try_from(v).ok()
    }
    fn to_usize(self) -> Option<usize> {
        usize::try_from(self).ok()
    }
    fn to_i64(self) -> i64 {
        self
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// Which layout, for a command line or a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayoutKind {
    Dense,
    Csr,
    Csc,
    Coo,
}

impl std::str::FromStr for LayoutKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "dense" => LayoutKind::Dense,
            "csr" => LayoutKind::Csr,
            "csc" => LayoutKind::Csc,
            "coo" => LayoutKind::Coo,
            _ => return Err(format!("unknown layout {s:?} (dense, csr, csc, coo)")),
        })
    }
}

impl std::fmt::Display for LayoutKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LayoutKind::Dense => "dense",
            LayoutKind::Csr => "csr",
            LayoutKind::Csc => "csc",
            LayoutKind::Coo => "coo",
        })
    }
}

/// `v` as an index, or an overflow error naming the array.
fn index<I: SparseIndex>(v: usize, array: &'static str) -> Result<I, SparseError> {
    I::from_usize(v).ok_or(SparseError::Overflow { array })
}

/// Checks `got` against `expected` for `array`.
/// The number of values in `values` (bytes of `dtype`) and the element count of a
/// `rows x cols` tile: what every layout's `to_tile` checks first.
fn counts(
    dtype: Dtype,
    values: &[u8],
    rows: usize,
    cols: usize,
) -> Result<(usize, usize), SparseError> {
    let vb = crate::tile::value_bytes(dtype)?;
    if !values.len().is_multiple_of(vb) {
        return Err(SparseError::Length {
            array: "values (bytes)",
            expected: values.len() / vb * vb,
            got: values.len(),
        });
    }
    let n = rows
        .checked_mul(cols)
        .ok_or(SparseError::Overflow { array: "shape" })?;
    Ok((values.len() / vb, n))
}

fn length(array: &'static str, expected: usize, got: usize) -> Result<(), SparseError> {
    if expected == got {
        Ok(())
    } else {
        Err(SparseError::Length {
            array,
            expected,
            got,
        })
    }
}

/// Checks a pointer array (`row_ptr`, `col_ptr`): `major + 1` entries, starting at 0,
/// never decreasing, ending at `nnz`. Returns the entries as offsets.
fn check_ptr<I: SparseIndex>(
    array: &'static str,
    ptr: &[I],
    major: usize,
    nnz: usize,
) -> Result<Vec<usize>, SparseError> {
    length(array, major + 1, ptr.len())?;
    let mut out = Vec::with_capacity(ptr.len());
    for (position, &p) in ptr.iter().enumerate() {
        let v = p
            .to_usize()
            .filter(|&v| v <= nnz)
            .ok_or(SparseError::OutOfRange {
                array,
                position,
                index: p.to_i64(),
                bound: nnz + 1,
            })?;
        if position == 0 && v != 0 {
            return Err(SparseError::PtrStart { array, got: v });
        }
        if out.last().is_some_and(|&prev| v < prev) {
            return Err(SparseError::NotMonotone { array, position });
        }
        out.push(v);
    }
    if out[major] != nnz {
        return Err(SparseError::Length {
            array: "nnz (last pointer entry)",
            expected: nnz,
            got: out[major],
        });
    }
    Ok(out)
}

/// Checks the minor indices of one major line (`start..end` of `idx`): in `0..bound`,
/// strictly increasing.
fn check_line<I: SparseIndex>(
    array: &'static str,
    idx: &[I],
    start: usize,
    end: usize,
    bound: usize,
) -> Result<(), SparseError> {
    let mut prev: Option<usize> = None;
    for (position, &i) in idx.iter().enumerate().take(end).skip(start) {
        let v = i
            .to_usize()
            .filter(|&v| v < bound)
            .ok_or(SparseError::OutOfRange {
                array,
                position,
                index: i.to_i64(),
                bound,
            })?;
        match prev {
            Some(p) if v == p => return Err(SparseError::Duplicate { array, position }),
            Some(p) if v < p => return Err(SparseError::Unsorted { array, position }),
            _ => {}
        }
        prev = Some(v);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
