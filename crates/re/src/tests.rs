use super::*;
use sparsewire_metadata::{ChannelCombination, Dtype};
use sparsewire_sparse::{Mask, SparseTile, Values};

fn zeroed(v: &[f32], mask: &Mask) -> Vec<f32> {
    v.iter()
        .enumerate()
        .map(|(i, &x)| if mask.is_kept(i) { x } else { 0.0 })
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn tiles_expand_bit_exact_and_zero_fill() {
    let v = [-0.0f32, f32::NAN, 2.5, 7.0, 1.0];
    let mask = Mask::from_bools(&[true, false, true, true, false]);
    let t = SparseTile::from_dense(1, 5, Dtype::F32, &f32_bytes(&v), mask).unwrap();
    let mut out = Vec::new();
    let place = TilePlace {
        col0: 0,
        full_cols: 5,
    };
    rebuild_tile(
        Values::Sparse(t.as_ref()),
        &Reconstruction::Zero,
        place,
        &mut out,
    )
    .unwrap();
    assert_eq!(out[0].to_bits(), (-0.0f32).to_bits());
    assert!(out[1] == 0.0 && out[2] == 2.5 && out[3] == 7.0 && out[4] == 0.0);
}

#[test]
fn linear_and_learned_are_exact_on_a_ramp_and_keep_kept_values() {
    let cols = 17;
    let ramp: Vec<f32> = (0..2 * cols)
        .map(|i| 0.5 + 0.25 * (i % cols) as f32)
        .collect();
    let mask = Mask::from_fn(2 * cols, |i| (i * 7) % 3 != 0);
    for method in [
        Reconstruction::Linear,
        fit_learned(&ramp, mask.as_ref(), cols),
    ] {
        let mut v = zeroed(&ramp, &mask);
        rebuild_rows(&mut v, mask.as_ref(), cols, &method).unwrap();
        for i in 0..v.len() {
            assert!(
                (v[i] - ramp[i]).abs() < 1e-4,
                "{method:?} at {i}: {} vs {}",
                v[i],
                ramp[i]
            );
            if mask.is_kept(i) {
                assert_eq!(v[i].to_bits(), ramp[i].to_bits());
            }
        }
        // The same through a stored tile of whole rows.
        let t =
            SparseTile::from_dense(2, cols, Dtype::F32, &f32_bytes(&ramp), mask.clone()).unwrap();
        let mut out = Vec::new();
        let place = TilePlace {
            col0: 0,
            full_cols: cols,
        };
        rebuild_tile(Values::Sparse(t.as_ref()), &method, place, &mut out).unwrap();
        assert_eq!(out, v);
        // A column tile cannot see its rows' other kept values.
        let part = TilePlace {
            col0: 0,
            full_cols: 2 * cols,
        };
        assert!(matches!(
            rebuild_tile(Values::Sparse(t.as_ref()), &method, part, &mut out),
            Err(RebuildError::NeedsWholeRows { .. })
        ));
    }
    let bad = Reconstruction::Learned { params: vec![1.0] };
    let m = Mask::from_bools(&[true, false, true, true]);
    assert!(matches!(
        rebuild_rows(&mut [0.0; 4], m.as_ref(), 4, &bad),
        Err(RebuildError::Params { .. })
    ));
}

#[test]
fn learned_fitted_on_dropped_values_never_loses_to_zero_fill() {
    // Post-GELU-like values: the dropped (small) ones are mostly small negatives.
    let cols = 64;
    let v: Vec<f32> = (0..cols * 40)
        .map(|i| {
            let x = ((i as f32) * 0.77).sin() * 2.0;
            x * 0.5 * (1.0 + (x * 0.8).tanh())
        })
        .collect();
    let mask = Mask::from_fn(v.len(), |i| v[i].abs() > 0.3);
    let z = zeroed(&v, &mask);
    let err = |r: &[f32]| -> f64 {
        r.iter()
            .zip(&v)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum()
    };
    let zero = err(&z);
    for method in [
        fit_learned(&v, mask.as_ref(), cols),
        fit_dictionary(&v, mask.as_ref(), cols),
    ] {
        let mut r = z.clone();
        rebuild_rows(&mut r, mask.as_ref(), cols, &method).unwrap();
        assert!(err(&r) < zero, "{method:?}: {} vs zero {}", err(&r), zero);
        for i in 0..v.len() {
            if mask.is_kept(i) {
                assert_eq!(r[i].to_bits(), v[i].to_bits());
            }
        }
    }
}

#[test]
fn spatial_is_exact_on_a_plane_and_dictionary_tiles_by_column() {
    // Two 3x3 kernels per row, values linear in (y, x): the centre and edges are the
    // mean of their 4-neighbours.
    let row: Vec<f32> = (0..18)
        .map(|i| ((i % 9) / 3) as f32 + ((i % 9) % 3) as f32)
        .collect();
    let mask = Mask::from_fn(18, |i| i % 9 != 4);
    let mut v = zeroed(&row, &mask);
    let m = Reconstruction::Spatial { kh: 3, kw: 3 };
    rebuild_rows(&mut v, mask.as_ref(), 18, &m).unwrap();
    assert_eq!(v, row);
    assert!(rebuild_rows(
        &mut v,
        mask.as_ref(),
        18,
        &Reconstruction::Spatial { kh: 4, kw: 2 }
    )
    .is_err());
    // A dictionary of 4 columns applied to the tile of columns 2..4.
    let d = Reconstruction::Dictionary {
        entry_len: 4,
        entries: vec![1.0, 2.0, 3.0, 4.0],
    };
    let t = SparseTile::from_dense(
        2,
        2,
        Dtype::F32,
        &f32_bytes(&[9.0, 5.0, 5.0, 9.0]),
        Mask::from_bools(&[true, false, false, true]),
    )
    .unwrap();
    let mut out = Vec::new();
    let place = TilePlace {
        col0: 2,
        full_cols: 4,
    };
    rebuild_tile(Values::Sparse(t.as_ref()), &d, place, &mut out).unwrap();
    assert_eq!(out, vec![9.0, 4.0, 3.0, 9.0]);
    let beyond = TilePlace {
        col0: 3,
        full_cols: 4,
    };
    assert!(matches!(
        rebuild_tile(Values::Sparse(t.as_ref()), &d, beyond, &mut out),
        Err(RebuildError::Params { .. })
    ));
}

#[test]
fn channels_rebuild_the_tensor_and_bad_indices_are_errors() {
    // Row 1 = 2 * row 0 was dropped (zeros); rebuild it.
    let mut v = vec![1.0, -2.0, 0.0, 0.0, 0.5, 0.5];
    let mask = Mask::from_bools(&[true, true, false, false, true, true]);
    let c = |sources: Vec<u32>, coefs: Vec<f32>| Reconstruction::Channels {
        combinations: vec![ChannelCombination {
            row: 1,
            sources,
            coefs,
        }],
    };
    rebuild_tensor(&mut v, mask.as_ref(), 2, &c(vec![0], vec![2.0])).unwrap();
    assert_eq!(&v[2..4], &[2.0, -4.0]);
    assert!(matches!(
        rebuild_tensor(&mut v, mask.as_ref(), 2, &c(vec![9], vec![1.0])),
        Err(RebuildError::BadCombination { .. })
    ));
    assert!(rebuild_tensor(&mut v, mask.as_ref(), 2, &c(vec![0], vec![])).is_err());
    assert!(matches!(
        rebuild_rows(&mut v, mask.as_ref(), 2, &c(vec![0], vec![2.0])),
        Err(RebuildError::NeedsWholeTensor { .. })
    ));
}
