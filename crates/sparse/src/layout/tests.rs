//! Round trips dense -> tile -> each layout -> tile -> dense over shapes, densities and
//! dtypes, and every malformed external array as a typed error.

use super::*;
use crate::{Mask, SparseTile};
use proptest::prelude::*;
use sparsewire_metadata::Dtype;

fn dtype() -> impl Strategy<Value = Dtype> {
    prop_oneof![
        Just(Dtype::F32),
        Just(Dtype::BF16),
        Just(Dtype::F16),
        Just(Dtype::I8),
        Just(Dtype::I64)
    ]
}

/// A tile with random values (never all-zero bytes where kept) and a random mask.
fn tile(rows: usize, cols: usize, dtype: Dtype, density: f64, seed: u64) -> SparseTile {
    let vb = crate::value_bytes(dtype).unwrap();
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let dense: Vec<u8> = (0..rows * cols * vb).map(|_| next() as u8 | 1).collect();
    let mask = Mask::from_fn(rows * cols, |_| {
        ((next() >> 11) as f64 / (1u64 << 53) as f64) < density
    });
    SparseTile::from_dense(rows, cols, dtype, &dense, mask).unwrap()
}

/// A tile that keeps exactly `n` of every `m` along its rows.
fn nm_tile(rows: usize, groups: usize, n: u8, m: u8, dtype: Dtype, seed: u64) -> SparseTile {
    let cols = groups * m as usize;
    let t = tile(rows, cols, dtype, 1.0, seed);
    let mut s = seed | 3;
    let mut mask = Mask::empty(rows * cols);
    for g in 0..rows * groups {
        let mut placed = 0;
        while placed < n as usize {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            let j = (s >> 33) as usize % m as usize;
            if !mask.is_kept(g * m as usize + j) {
                mask.set(g * m as usize + j, true);
                placed += 1;
            }
        }
    }
    SparseTile::from_dense(rows, cols, dtype, &t.to_dense(), mask).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn every_layout_round_trips(rows in 0usize..12, cols in 0usize..40, density in 0.0f64..=1.0, dt in dtype(), seed in any::<u64>()) {
        let t = tile(rows, cols, dt, density, seed);
        let dense = t.to_dense();
        prop_assert_eq!(SparseTile::from_dense_nonzero(rows, cols, dt, &dense).unwrap(), t.clone());
        let r = t.as_ref();
        let csr = r.to_csr::<i64>().unwrap();
        prop_assert!(matches!(csr.values, std::borrow::Cow::Borrowed(_)), "CSR lends the values");
        prop_assert_eq!(csr.to_tile().unwrap(), t.clone());
        let csr32 = r.to_csr::<u32>().unwrap();
        prop_assert_eq!(csr32.to_tile().unwrap(), t.clone());
        prop_assert_eq!(r.to_csc::<i64>().unwrap().to_tile().unwrap(), t.clone());
        prop_assert_eq!(r.to_csc::<u32>().unwrap().to_tile().unwrap(), t.clone());
        let coo = r.to_coo::<i64>().unwrap();
        prop_assert!(matches!(coo.values, std::borrow::Cow::Borrowed(_)), "COO lends the values");
        prop_assert_eq!(coo.to_tile().unwrap(), t.clone());
        prop_assert_eq!(r.to_coo::<u32>().unwrap().to_tile().unwrap(), t.clone());
        // CSC against its definition: columns in order, rows ascending within each.
        let csc = r.to_csc::<u32>().unwrap();
        let vb = crate::value_bytes(dt).unwrap();
        let mut k = 0;
        for c in 0..cols {
            for rr in 0..rows {
                let i = rr * cols + c;
                if t.mask().is_kept(i) {
                    prop_assert_eq!(csc.row_idx[k] as usize, rr);
                    prop_assert_eq!(&csc.values[k * vb..(k + 1) * vb], &dense[i * vb..(i + 1) * vb]);
                    k += 1;
                }
            }
            prop_assert_eq!(csc.col_ptr[c + 1] as usize, k);
        }
    }

    #[test]
    fn nm_round_trips(rows in 0usize..8, groups in 0usize..10, nm in prop_oneof![Just((2u8, 4u8)), Just((1, 4)), Just((4, 8)), Just((3, 7)), Just((1, 16))], dt in dtype(), seed in any::<u64>()) {
        let (n, m) = nm;
        let t = nm_tile(rows, groups, n, m, dt, seed);
        let nmt = t.as_ref().to_nm(n, m).unwrap();
        prop_assert_eq!(nmt.values.len(), rows * groups * n as usize * crate::value_bytes(dt).unwrap());
        prop_assert_eq!(nmt.to_tile().unwrap(), t);
    }
}

fn csr_of(row_ptr: Vec<i64>, col_idx: Vec<i64>) -> Csr<'static, i64> {
    let nnz = col_idx.len();
    Csr {
        rows: row_ptr.len().saturating_sub(1),
        cols: 4,
        dtype: Dtype::F32,
        row_ptr,
        col_idx,
        values: std::borrow::Cow::Owned(vec![0x3f; nnz * 4]),
    }
}

#[test]
fn malformed_compressed_arrays_are_typed_errors() {
    assert!(csr_of(vec![0, 2, 3], vec![0, 3, 1]).to_tile().is_ok());
    let e = |p, c| csr_of(p, c).to_tile().unwrap_err();
    assert_eq!(
        e(vec![0, 2, 3], vec![3, 0, 1]),
        SparseError::Unsorted {
            array: "col_idx",
            position: 1
        }
    );
    assert_eq!(
        e(vec![0, 2, 3], vec![1, 1, 1]),
        SparseError::Duplicate {
            array: "col_idx",
            position: 1
        }
    );
    assert!(matches!(
        e(vec![0, 2, 3], vec![0, 4, 1]),
        SparseError::OutOfRange {
            array: "col_idx",
            position: 1,
            index: 4,
            bound: 4
        }
    ));
    assert!(matches!(
        e(vec![0, 2, 3], vec![0, -1, 1]),
        SparseError::OutOfRange {
            array: "col_idx",
            position: 1,
            index: -1,
            ..
        }
    ));
    assert_eq!(
        e(vec![0, 3, 2, 3], vec![0, 1, 2]),
        SparseError::NotMonotone {
            array: "row_ptr",
            position: 2
        }
    );
    assert_eq!(
        e(vec![1, 2, 3], vec![0, 1, 2]),
        SparseError::PtrStart {
            array: "row_ptr",
            got: 1
        }
    );
    assert!(matches!(
        e(vec![0, 2, 2], vec![0, 1, 2]),
        SparseError::Length { .. }
    ));
    assert!(matches!(
        e(vec![0, 9, 3], vec![0, 1, 2]),
        SparseError::OutOfRange {
            array: "row_ptr",
            position: 1,
            ..
        }
    ));
    // CSC: the same checks on its own arrays.
    let csc = Csc::<u32> {
        rows: 3,
        cols: 2,
        dtype: Dtype::BF16,
        col_ptr: vec![0, 2, 3],
        row_idx: vec![2, 1, 0],
        values: std::borrow::Cow::Owned(vec![1; 6]),
    };
    assert_eq!(
        csc.to_tile().unwrap_err(),
        SparseError::Unsorted {
            array: "row_idx",
            position: 1
        }
    );
}

#[test]
fn malformed_coo_and_nm_are_typed_errors() {
    let coo = |row: Vec<u32>, col: Vec<u32>| Coo {
        rows: 2,
        cols: 3,
        dtype: Dtype::U8,
        values: std::borrow::Cow::Owned(vec![7; row.len()]),
        row,
        col,
    };
    assert!(coo(vec![0, 1], vec![2, 0]).to_tile().is_ok());
    assert!(matches!(
        coo(vec![1, 0], vec![0, 2]).to_tile(),
        Err(SparseError::Unsorted { position: 1, .. })
    ));
    assert!(matches!(
        coo(vec![0, 0], vec![2, 2]).to_tile(),
        Err(SparseError::Duplicate { position: 1, .. })
    ));
    assert!(matches!(
        coo(vec![0, 2], vec![0, 0]).to_tile(),
        Err(SparseError::OutOfRange { array: "row", .. })
    ));
    // 2:4 with a group keeping three, and a width that is not a multiple of 4.
    let t = SparseTile::from_dense(
        1,
        8,
        Dtype::U8,
        &[1; 8],
        Mask::from_bools(&[true, true, true, false, true, true, false, false]),
    )
    .unwrap();
    assert!(matches!(
        t.as_ref().to_nm(2, 4),
        Err(SparseError::NotNM {
            group: 0,
            kept: 3,
            ..
        })
    ));
    let t = SparseTile::from_dense(1, 6, Dtype::U8, &[1; 6], Mask::dense(6)).unwrap();
    assert!(matches!(
        t.as_ref().to_nm(2, 4),
        Err(SparseError::NmWidth { cols: 6, m: 4 })
    ));
    // Indices that repeat inside a group, or point outside it.
    let bad = NmTile {
        n: 2,
        m: 4,
        rows: 1,
        cols: 4,
        dtype: Dtype::U8,
        values: std::borrow::Cow::Owned(vec![1, 2]),
        indices: vec![0b0101],
    };
    assert!(matches!(
        bad.to_tile(),
        Err(SparseError::Unsorted {
            array: "indices",
            position: 1
        })
    ));
    let bad = NmTile {
        n: 1,
        m: 3,
        rows: 1,
        cols: 3,
        dtype: Dtype::U8,
        values: std::borrow::Cow::Owned(vec![1]),
        indices: vec![0b11],
    };
    assert!(matches!(
        bad.to_tile(),
        Err(SparseError::OutOfRange {
            array: "indices",
            index: 3,
            bound: 3,
            ..
        })
    ));
}
