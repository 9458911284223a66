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

/// SPEC §6.2's `Mlp`, written out from the text with plain loops: the reference the
/// engine's rebuild is held to, bit for bit.
fn mlp_reference(row: &[f32], keep: &[bool], hidden: usize, p: &[f32]) -> Vec<f32> {
    let kept: Vec<usize> = (0..row.len()).filter(|&k| keep[k]).collect();
    let mut out = row.to_vec();
    if kept.is_empty() {
        return vec![0.0; row.len()];
    }
    let mut ss = 0f64;
    for &k in &kept {
        ss += row[k] as f64 * row[k] as f64;
    }
    let s = (ss / kept.len() as f64).sqrt();
    for j in (0..row.len()).filter(|&j| !keep[j]) {
        if s == 0.0 {
            out[j] = 0.0;
            continue;
        }
        let left: Vec<usize> = kept.iter().rev().copied().filter(|&k| k < j).collect();
        let right: Vec<usize> = kept.iter().copied().filter(|&k| k > j).collect();
        let val = |k: usize| row[k] as f64;
        let interp = if !left.is_empty() && !right.is_empty() {
            let (dl, dr) = ((j - left[0]) as f64, (right[0] - j) as f64);
            (dr * val(left[0]) + dl * val(right[0])) / (dl + dr)
        } else if !left.is_empty() || !right.is_empty() {
            let (side, d): (&Vec<usize>, Box<dyn Fn(usize) -> f64>) = if left.is_empty() {
                (&right, Box::new(|k: usize| (k - j) as f64))
            } else {
                (&left, Box::new(|k: usize| (j - k) as f64))
            };
            if side.len() >= 2 {
                let (v1, v2) = (val(side[0]), val(side[1]));
                v1 + (v1 - v2) * d(side[0]) / (d(side[1]) - d(side[0]))
            } else {
                val(side[0])
            }
        } else {
            0.0
        };
        let at = |side: &Vec<usize>, i: usize| side.get(i).map_or(0.0, |&k| val(k)) / s;
        let x = [
            interp / s,
            at(&left, 0),
            at(&right, 0),
            at(&left, 1),
            at(&right, 1),
            left.first().map_or(0.0, |&k| 1.0 / (j - k) as f64),
            right.first().map_or(0.0, |&k| 1.0 / (k - j) as f64),
            1.0 / s,
        ];
        let mut y = p[hidden * 10] as f64;
        for u in 0..hidden {
            let mut z = p[hidden * 8 + u] as f64;
            for (f, &xf) in x.iter().enumerate() {
                z += p[u * 8 + f] as f64 * xf;
            }
            y += p[hidden * 9 + u] as f64 * z.max(0.0);
        }
        out[j] = (s * y) as f32;
    }
    out
}

fn wave(rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            (1.0 + r as f32) * ((c as f32) * 0.3 + r as f32).sin()
        })
        .collect()
}

#[test]
fn mlp_rebuild_matches_the_scalar_reference_bit_for_bit() {
    let (rows, cols, hidden) = (9, 23, 5);
    let v = wave(rows, cols);
    let mut state = 7u64;
    let p: Vec<f32> = (0..mlp::mlp_params(hidden))
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    // Rows with every pattern: none kept, one kept, one side only, the rest random.
    let mask = Mask::from_fn(rows * cols, |i| {
        let (r, c) = (i / cols, i % cols);
        match r {
            0 => false,
            1 => c == 11,
            2 => c < 4,
            3 => c > 18,
            _ => (i * 2654435761) % 5 < 2,
        }
    });
    let method = Reconstruction::Mlp {
        hidden: hidden as u32,
        params: p.clone(),
    };
    let mut got = zeroed(&v, &mask);
    rebuild_rows(&mut got, mask.as_ref(), cols, &method).unwrap();
    for r in 0..rows {
        let keep: Vec<bool> = (0..cols).map(|c| mask.is_kept(r * cols + c)).collect();
        let src = zeroed(&v[r * cols..(r + 1) * cols], &Mask::from_bools(&keep));
        let want = mlp_reference(&src, &keep, hidden, &p);
        for c in 0..cols {
            assert_eq!(
                got[r * cols + c].to_bits(),
                want[c].to_bits(),
                "row {r} col {c}: {} vs {}",
                got[r * cols + c],
                want[c]
            );
        }
    }
    // Kept values untouched; a row with nothing kept stays zero; a dropped value moved.
    assert!((0..rows * cols)
        .filter(|&i| mask.is_kept(i))
        .all(|i| got[i].to_bits() == v[i].to_bits()));
    assert!(got[..cols].iter().all(|&x| x == 0.0));
    assert!((0..rows * cols).any(|i| !mask.is_kept(i) && got[i] != 0.0));
}

#[test]
fn fitted_mlp_beats_zero_fill_and_is_deterministic() {
    let (rows, cols) = (64, 96);
    let v = wave(rows, cols);
    let mask = Mask::from_fn(rows * cols, |i| (i * 2654435761) % 7 < 4);
    let err = |m: &Reconstruction| {
        let mut x = zeroed(&v, &mask);
        rebuild_rows(&mut x, mask.as_ref(), cols, m).unwrap();
        x.iter()
            .zip(&v)
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum::<f64>()
    };
    let fit = fit_mlp(&v, mask.as_ref(), cols, 16, 3);
    assert_eq!(fit, fit_mlp(&v, mask.as_ref(), cols, 16, 3));
    assert_ne!(fit, fit_mlp(&v, mask.as_ref(), cols, 16, 4));
    let (zero, mlp) = (err(&Reconstruction::Zero), err(&fit));
    // A smooth signal: the row context predicts it well.
    assert!(mlp < 0.2 * zero, "mlp {mlp} vs zero {zero}");
    // On noise there is nothing to predict, and the fit still does no harm.
    let mut state = 1u64;
    let noise: Vec<f32> = (0..rows * cols)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    let fit = fit_mlp(&noise, mask.as_ref(), cols, 16, 3);
    let mut x = zeroed(&noise, &mask);
    rebuild_rows(&mut x, mask.as_ref(), cols, &fit).unwrap();
    let (z, m) = (
        zeroed(&noise, &mask)
            .iter()
            .zip(&noise)
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum::<f64>(),
        x.iter()
            .zip(&noise)
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum::<f64>(),
    );
    assert!(m <= z * (1.0 + 1e-6), "mlp {m} vs zero {z} on noise");
}

#[test]
fn malformed_mlp_parameters_are_refused() {
    let cols = 8;
    let v = wave(2, cols);
    let mask = Mask::from_fn(2 * cols, |i| i % 2 == 0);
    let good = mlp::mlp_params(3);
    for (hidden, params) in [
        (3, vec![0.1; good - 1]),
        (3, vec![0.1; good + 1]),
        (0, vec![0.1; 1]),
        (257, vec![0.1; mlp::mlp_params(257)]),
        (3, {
            let mut p = vec![0.1; good];
            p[5] = f32::NAN;
            p
        }),
    ] {
        let mut x = zeroed(&v, &mask);
        let before = x.clone();
        let r = rebuild_rows(
            &mut x,
            mask.as_ref(),
            cols,
            &Reconstruction::Mlp { hidden, params },
        );
        assert!(
            matches!(r, Err(RebuildError::Params { method: "mlp", .. })),
            "{r:?}"
        );
        assert_eq!(x, before, "nothing written on error");
    }
    // Whole rows only, as for the other row methods.
    let t = SparseTile::from_dense(2, cols, Dtype::F32, &f32_bytes(&v), mask.clone()).unwrap();
    let part = TilePlace {
        col0: 0,
        full_cols: 2 * cols,
    };
    let m = fit_mlp(&v, mask.as_ref(), cols, 4, 0);
    assert!(matches!(
        rebuild_tile(Values::Sparse(t.as_ref()), &m, part, &mut Vec::new()),
        Err(RebuildError::NeedsWholeRows { method: "mlp", .. })
    ));
}
