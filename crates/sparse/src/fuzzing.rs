//! Body of the `layouts` cargo-fuzz target (`fuzz/`), here so that a normal test replays
//! its corpus on stable Rust. Arbitrary bytes become CSR, CSC, COO and N:M arrays: reading
//! them back into a tile must give a tile or a typed error, never a panic, and a tile that
//! comes back must survive every layout unchanged.

use crate::layout::{Coo, Csc, Csr, NmTile};
use crate::SparseTile;
use sparsewire_metadata::Dtype;
use std::borrow::Cow;

/// Arbitrary bytes as sparse arrays (see the module docs).
pub fn layouts(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let rows = (head & 7) as usize;
    let cols = ((head >> 3) & 15) as usize;
    let dtype = if head & 0x80 != 0 {
        Dtype::F32
    } else {
        Dtype::BF16
    };
    let vb = if dtype == Dtype::F32 { 4 } else { 2 };
    // Indices from the first half (signed, to reach negative and huge ones), values after.
    let (a, b) = rest.split_at(rest.len() / 2);
    let idx: Vec<i64> = a
        .chunks(2)
        .map(|c| i16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]) as i64 % 64)
        .collect();
    let nnz = idx.len() / 2;
    let values: Cow<[u8]> = Cow::Owned(b.iter().copied().take(nnz * vb).collect());
    let ptr: Vec<i64> = idx.iter().take(rows + 1).copied().collect();
    let tiles = [
        Csr {
            rows,
            cols,
            dtype,
            row_ptr: ptr.clone(),
            col_idx: idx[..nnz].to_vec(),
            values: values.clone(),
        }
        .to_tile(),
        Csc {
            rows,
            cols,
            dtype,
            col_ptr: idx.iter().take(cols + 1).copied().collect(),
            row_idx: idx[nnz..].to_vec(),
            values: values.clone(),
        }
        .to_tile(),
        Coo {
            rows,
            cols,
            dtype,
            row: idx[..nnz].to_vec(),
            col: idx[nnz..2 * nnz].to_vec(),
            values: values.clone(),
        }
        .to_tile(),
        NmTile {
            n: 1 + (head & 1),
            m: 4,
            rows,
            cols: cols / 4 * 4,
            dtype,
            values: values.clone(),
            indices: a.to_vec(),
        }
        .to_tile(),
    ];
    for t in tiles.into_iter().flatten() {
        round_trip(&t);
    }
}

/// A tile survives every layout unchanged.
pub fn round_trip(t: &SparseTile) {
    let r = t.as_ref();
    assert_eq!(
        &r.to_csr::<u32>()
            .expect("from a tile")
            .to_tile()
            .expect("valid"),
        t
    );
    assert_eq!(
        &r.to_csc::<i64>()
            .expect("from a tile")
            .to_tile()
            .expect("valid"),
        t
    );
    assert_eq!(
        &r.to_coo::<u32>()
            .expect("from a tile")
            .to_tile()
            .expect("valid"),
        t
    );
    assert_eq!(
        &SparseTile::from_dense_nonzero(t.rows(), t.cols(), t.dtype(), &t.to_dense())
            .expect("its own dense form")
            .to_dense(),
        &t.to_dense()
    );
}
