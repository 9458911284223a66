//! The N:M compressed layout that semi-structured kernels take (2:4 on NVIDIA's sparse
//! tensor cores, `torch.sparse.to_sparse_semi_structured`, cuSPARSELt).
//!
//! Every group of `M` consecutive elements along a row keeps exactly `N`. The layout is a
//! dense `[rows, cols / M * N]` matrix of the kept values (row-major, each group's values
//! in column order) and, for each kept value, its position inside its group as an index of
//! ⌈log2 M⌉ bits (2 bits for 2:4), packed least significant bit first in the same order.
//! `cols` must be a multiple of `M`. (torch's own metadata word interleaves these indices
//! for its kernels; the Python layer reorders them.)

use super::length;
use crate::mask::Mask;
use crate::tile::{value_bytes, SparseTile, SparseTileRef};
use crate::SparseError;
use sparsewire_metadata::Dtype;
use std::borrow::Cow;

/// An N:M tile: kept values and packed in-group indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NmTile<'a> {
    pub n: u8,
    pub m: u8,
    pub rows: usize,
    pub cols: usize,
    pub dtype: Dtype,
    /// `rows x cols / m * n` values.
    pub values: Cow<'a, [u8]>,
    /// One index of [`NmTile::index_bits`] bits per value, LSB first; padding bits zero.
    pub indices: Vec<u8>,
}

impl NmTile<'_> {
    /// Bits per in-group index: ⌈log2 M⌉.
    pub fn index_bits(m: u8) -> u32 {
        (m as u32).next_power_of_two().trailing_zeros().max(1)
    }

    fn check_nm(n: u8, m: u8, cols: usize) -> Result<(), SparseError> {
        if !(n > 0 && n < m && m <= 16) {
            return Err(SparseError::BadNM { n, m, max: 16 });
        }
        if !cols.is_multiple_of(m as usize) {
            return Err(SparseError::NmWidth { cols, m });
        }
        Ok(())
    }

    /// Back to a tile: lengths, indices inside the group and strictly increasing in it.
    pub fn to_tile(&self) -> Result<SparseTile, SparseError> {
        Self::check_nm(self.n, self.m, self.cols)?;
        let vb = value_bytes(self.dtype)?;
        let (n, m) = (self.n as usize, self.m as usize);
        let groups = self.rows * (self.cols / m);
        let nnz = groups * n;
        length("values", nnz * vb, self.values.len())?;
        let bits = Self::index_bits(self.m) as usize;
        length(
            "indices (bytes)",
            (nnz * bits).div_ceil(8),
            self.indices.len(),
        )?;
        let tail = nnz * bits % 8;
        if tail != 0 && self.indices[self.indices.len() - 1] >> tail != 0 {
            return Err(SparseError::MaskPadding);
        }
        let mut mask = Mask::empty(self.rows * self.cols);
        for g in 0..groups {
            let mut prev: Option<usize> = None;
            for j in 0..n {
                let position = g * n + j;
                let at = position * bits;
                let word = u32::from(self.indices[at / 8])
                    | u32::from(*self.indices.get(at / 8 + 1).unwrap_or(&0)) << 8;
                let idx = (word >> (at % 8)) as usize & ((1 << bits) - 1);
                if idx >= m {
                    return Err(SparseError::OutOfRange {
                        array: "indices",
                        position,
                        index: idx as i64,
                        bound: m,
                    });
                }
                if prev.is_some_and(|p| idx <= p) {
                    return Err(SparseError::Unsorted {
                        array: "indices",
                        position,
                    });
                }
                prev = Some(idx);
                mask.set(g * m + idx, true);
            }
        }
        SparseTile::new(self.rows, self.cols, self.dtype, mask, self.values.to_vec())
    }
}

impl<'a> SparseTileRef<'a> {
    /// The tile in the N:M layout; the values are borrowed. Every group of `m` along a row
    /// must keep exactly `n` ([`SparseError::NotNM`] names the first that does not).
    pub fn to_nm(&self, n: u8, m: u8) -> Result<NmTile<'a>, SparseError> {
        NmTile::check_nm(n, m, self.cols())?;
        let bits = NmTile::index_bits(m) as usize;
        let (nn, mm) = (n as usize, m as usize);
        let groups = self.rows() * (self.cols() / mm);
        let mut indices = vec![0u8; (groups * nn * bits).div_ceil(8)];
        let mask = self.mask();
        let mut k = 0usize;
        for g in 0..groups {
            let mut kept = 0;
            for j in 0..mm {
                if mask.is_kept(g * mm + j) {
                    if kept < nn {
                        let at = (k + kept) * bits;
                        let v = (j as u32) << (at % 8);
                        indices[at / 8] |= v as u8;
                        if let Some(b) = indices.get_mut(at / 8 + 1) {
                            *b |= (v >> 8) as u8;
                        }
                    }
                    kept += 1;
                }
            }
            if kept != nn {
                return Err(SparseError::NotNM {
                    group: g,
                    kept,
                    n,
                    m,
                });
            }
            k += nn;
        }
        length("values", k, self.values().len() / self.value_bytes())?;
        Ok(NmTile {
            n,
            m,
            rows: self.rows(),
            cols: self.cols(),
            dtype: self.dtype(),
            values: Cow::Borrowed(self.values()),
            indices,
        })
    }
}
