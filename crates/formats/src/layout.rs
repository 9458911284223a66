//! Sparse tensors as arrays in a safetensors file (`sparsewire decompress --layout`).
//!
//! A tensor `NAME` whose 2-D view is `[rows, cols]` becomes, by layout:
//!
//! | layout | arrays |
//! |---|---|
//! | `csr` | `NAME.row_ptr` `[rows + 1]`, `NAME.col_idx` `[nnz]`, `NAME.values` `[nnz]`, `NAME.shape` |
//! | `csc` | `NAME.col_ptr` `[cols + 1]`, `NAME.row_idx` `[nnz]`, `NAME.values` `[nnz]`, `NAME.shape` |
//! | `coo` | `NAME.row` `[nnz]`, `NAME.col` `[nnz]`, `NAME.values` `[nnz]`, `NAME.shape` |
//!
//! Indices are I64 (or U32 when asked: [`IndexType`]); `values` keep the tensor's dtype,
//! bit for bit; `NAME.shape` (I64, one entry per dimension) is the tensor's own shape, which
//! the 2-D view does not keep (`scipy.sparse.csr_matrix((values, col_idx, row_ptr),
//! shape=(rows, cols))` takes the view). The names and sizes are known from the nnz alone
//! ([`specs`]), so a writer can put the header first.

use crate::safetensors::Announce;
use crate::{Dtype, Tensor};
use sparsewire_sparse::{LayoutKind, SparseError, SparseIndex, SparseTileRef};

/// The index dtype of exported arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndexType {
    #[default]
    I64,
    U32,
}

impl std::str::FromStr for IndexType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "i64" | "int64" => Ok(IndexType::I64),
            "u32" | "uint32" => Ok(IndexType::U32),
            _ => Err(format!("unknown index type {s:?} (i64, u32)")),
        }
    }
}

impl IndexType {
    fn dtype(self) -> Dtype {
        match self {
            IndexType::I64 => Dtype::I64,
            IndexType::U32 => Dtype::U32,
        }
    }
}

/// One array of an export: name, dtype, shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
}

impl Spec {
    pub fn announce(&self) -> Announce<'_> {
        Announce {
            name: &self.name,
            dtype: self.dtype,
            shape: &self.shape,
        }
    }
}

/// The arrays tensor `name` (shape `shape`, 2-D view `rows x cols`, `nnz` kept values of
/// `dtype`) becomes in `kind` (not `Dense`).
#[allow(clippy::too_many_arguments)]
pub fn specs(
    name: &str,
    shape: &[u64],
    rows: u64,
    cols: u64,
    nnz: u64,
    dtype: Dtype,
    kind: LayoutKind,
    index: IndexType,
) -> Vec<Spec> {
    let i = index.dtype();
    let spec = |suffix: &str, dtype, shape: Vec<u64>| Spec {
        name: format!("{name}.{suffix}"),
        dtype,
        shape,
    };
    let mut v = match kind {
        LayoutKind::Csr => vec![
            spec("row_ptr", i, vec![rows + 1]),
            spec("col_idx", i, vec![nnz]),
        ],
        LayoutKind::Csc => vec![
            spec("col_ptr", i, vec![cols + 1]),
            spec("row_idx", i, vec![nnz]),
        ],
        LayoutKind::Coo => vec![spec("row", i, vec![nnz]), spec("col", i, vec![nnz])],
        LayoutKind::Dense => {
            return vec![Spec {
                name: name.to_string(),
                dtype,
                shape: shape.to_vec(),
            }]
        }
    };
    v.push(spec("values", dtype, vec![nnz]));
    v.push(spec("shape", Dtype::I64, vec![shape.len() as u64]));
    v
}

fn index_bytes<I: SparseIndex>(v: &[I]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 8);
    for &x in v {
        x.write_le(&mut out);
    }
    out
}

fn arrays_as<I: SparseIndex>(
    tile: SparseTileRef<'_>,
    kind: LayoutKind,
) -> Result<Vec<Vec<u8>>, SparseError> {
    Ok(match kind {
        LayoutKind::Csr => {
            let c = tile.to_csr::<I>()?;
            vec![
                index_bytes(&c.row_ptr),
                index_bytes(&c.col_idx),
                c.values.into_owned(),
            ]
        }
        LayoutKind::Csc => {
            let c = tile.to_csc::<I>()?;
            vec![
                index_bytes(&c.col_ptr),
                index_bytes(&c.row_idx),
                c.values.into_owned(),
            ]
        }
        LayoutKind::Coo => {
            let c = tile.to_coo::<I>()?;
            vec![
                index_bytes(&c.row),
                index_bytes(&c.col),
                c.values.into_owned(),
            ]
        }
        LayoutKind::Dense => vec![tile.to_dense()],
    })
}

/// The arrays of [`specs`], with their data.
pub fn arrays(
    name: &str,
    shape: &[u64],
    tile: SparseTileRef<'_>,
    kind: LayoutKind,
    index: IndexType,
) -> Result<Vec<Tensor>, crate::FormatError> {
    let nnz = tile.mask().kept() as u64;
    let specs = specs(
        name,
        shape,
        tile.rows() as u64,
        tile.cols() as u64,
        nnz,
        tile.dtype(),
        kind,
        index,
    );
    let sparse_err = |e: SparseError| crate::FormatError::Sparse {
        name: name.to_string(),
        source: e,
    };
    let mut data = match index {
        IndexType::I64 => arrays_as::<i64>(tile, kind),
        IndexType::U32 => arrays_as::<u32>(tile, kind),
    }
    .map_err(sparse_err)?;
    if kind != LayoutKind::Dense {
        data.push(
            shape
                .iter()
                .flat_map(|&d| (d as i64).to_le_bytes())
                .collect(),
        );
    }
    specs
        .into_iter()
        .zip(data)
        .map(|(s, d)| Tensor::new(s.name, s.dtype, s.shape, d))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsewire_sparse::{Mask, SparseTile};

    #[test]
    fn specs_match_the_arrays() {
        let dense: Vec<u8> = (0..4 * 6 * 2).map(|i| i as u8 | 1).collect();
        let t =
            SparseTile::from_dense(4, 6, Dtype::BF16, &dense, Mask::from_fn(24, |i| i % 3 == 0))
                .unwrap();
        for kind in [LayoutKind::Csr, LayoutKind::Csc, LayoutKind::Coo] {
            for index in [IndexType::I64, IndexType::U32] {
                let a = arrays("w", &[4, 2, 3], t.as_ref(), kind, index).unwrap();
                let s = specs("w", &[4, 2, 3], 4, 6, 8, Dtype::BF16, kind, index);
                assert_eq!(a.len(), s.len());
                for (a, s) in a.iter().zip(&s) {
                    assert_eq!((&a.name, a.dtype, &a.shape), (&s.name, s.dtype, &s.shape));
                }
                assert_eq!(a.last().unwrap().data.len(), 3 * 8);
            }
        }
    }
}
