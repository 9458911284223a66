//! The pipelined multiply against its scalar reference: every path, thread count, batch,
//! buffer size and reconstruction method; and its errors.

use sparsewire_accel::buffer::Policy;
use sparsewire_accel::exec::{self as mmo, ExecError, Options as MmoOptions, Path as MmoPath};
use sparsewire_formats::{Dtype, Tensor, TensorFile};
use sparsewire_metadata::{Criterion, Pattern, Reconstruction, Sparsification};
use sparsewire_sparse::{Mask, SparseTensor, SparseTile};
use sparsewire_stream::{encode_sparse, EncodeOptions, Profile, Reader, PREAMBLE_BYTES};

const ROWS: usize = 150;
const COLS: usize = 72;

fn weights() -> Vec<f32> {
    (0..ROWS * COLS)
        .map(|i| ((i as f32) * 0.61).sin() * 0.1 + ((i % COLS) as f32) * 1e-3)
        .collect()
}

fn stream(dtype: Dtype, profile: Profile, rec: Option<Reconstruction>) -> Vec<u8> {
    let w = weights();
    let t = Tensor::from_f32("w", vec![ROWS as u64, COLS as u64], &w);
    let t = Tensor::new(
        "w",
        dtype,
        t.shape.clone(),
        sparsewire_formats::from_f32(dtype, &w).unwrap(),
    )
    .unwrap();
    let file = TensorFile {
        tensors: vec![t],
        metadata: vec![],
    };
    let opts = EncodeOptions {
        tile_elems: 1000, // 12 tiles of 13 whole rows
        profile,
        ..EncodeOptions::default()
    };
    let masks = rec.map(|reconstruction| {
        let keep = Mask::from_fn(w.len(), |i| w[i].abs() > 0.05);
        let reconstruction = match reconstruction {
            Reconstruction::Learned { .. } => sparsewire_re::fit_learned(&w, keep.as_ref(), COLS),
            Reconstruction::Dictionary { .. } => {
                sparsewire_re::fit_dictionary(&w, keep.as_ref(), COLS)
            }
            r => r,
        };
        let t = &file.tensors[0];
        SparseTensor {
            tile: SparseTile::from_dense(ROWS, COLS, dtype, &t.data, keep).unwrap(),
            info: Sparsification::new(Criterion::Magnitude, Pattern::Unstructured, 0.5),
            reconstruction,
        }
    });
    encode_sparse(&file, &[masks], &opts).unwrap()
}

fn input(batch: usize) -> Vec<f32> {
    (0..batch * COLS)
        .map(|i| ((i as f32) * 0.37).cos())
        .collect()
}

#[test]
fn every_path_matches_the_scalar_reference() {
    let tile_bytes = (1000 / COLS * COLS * 4) as u64; // 13 rows: 12 tiles
    for dtype in [Dtype::BF16, Dtype::F32, Dtype::F16] {
        for profile in [Profile::Small, Profile::Fast] {
            for rec in [
                None,
                Some(Reconstruction::Zero),
                Some(Reconstruction::Linear),
                Some(Reconstruction::Learned { params: vec![] }),
                Some(Reconstruction::Dictionary {
                    entry_len: 0,
                    entries: vec![],
                }),
            ] {
                let b = stream(dtype, profile, rec.clone());
                let r = Reader::new(&b[..]).unwrap();
                for batch in [1, 3] {
                    let x = input(batch);
                    let want = mmo::reference(&r, 0, &x, batch).unwrap();
                    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
                    for path in [MmoPath::Auto, MmoPath::Fused, MmoPath::Pipelined] {
                        for threads in [1, 2, 3] {
                            for buffer in [None, Some(2 * tile_bytes)] {
                                let opts = MmoOptions {
                                    batch,
                                    threads,
                                    buffer_bytes: buffer,
                                    lookahead: 3,
                                    policy: Policy::Belady,
                                    passes: 2,
                                    path,
                                };
                                let what = format!("{dtype} {profile:?} {rec:?} batch {batch} {path:?} threads {threads} buffer {buffer:?}");
                                let got = mmo::matmul(&r, 0, &x, &opts);
                                let fusable = profile == Profile::Fast
                                    && dtype != Dtype::F16
                                    && matches!(rec, None | Some(Reconstruction::Zero));
                                let (y, rep) = match (path, got) {
                                    (MmoPath::Fused, Err(ExecError::NotFusable { .. }))
                                        if !fusable =>
                                    {
                                        continue
                                    }
                                    (_, got) => got.unwrap_or_else(|e| panic!("{what}: {e}")),
                                };
                                if path == MmoPath::Auto {
                                    let expected = if fusable {
                                        MmoPath::Fused
                                    } else {
                                        MmoPath::Pipelined
                                    };
                                    assert_eq!(rep.path, expected, "{what}");
                                }
                                // f32 sums of 72 products in another order than the f64
                                // reference: a few ulps of the largest output.
                                for (i, (g, w)) in y.iter().zip(&want).enumerate() {
                                    assert!(
                                        (g - w).abs() <= 1e-5 * scale.max(1.0),
                                        "{what}: y[{i}] {g} vs {w}"
                                    );
                                }
                                if let Some(cap) = buffer {
                                    assert!(
                                        rep.buffer.peak_bytes <= cap,
                                        "{what}: {:?}",
                                        rep.buffer
                                    );
                                }
                                if rep.path == MmoPath::Pipelined {
                                    // Two passes: the second hits only with room for all tiles.
                                    assert_eq!(rep.buffer.hits + rep.buffer.misses, 2 * 12);
                                    assert_eq!(rep.buffer.hits > 0, buffer.is_none(), "{what}");
                                    let o = rep.overlap_efficiency.unwrap();
                                    assert!((0.0..=1.0).contains(&o));
                                    // The multiply rebuilds tiles only instead of waiting;
                                    // on one thread it rebuilds every one.
                                    assert!(rep.multiply_rebuilds <= rep.buffer.misses);
                                    if threads == 1 {
                                        assert_eq!(
                                            rep.multiply_rebuilds, rep.buffer.misses,
                                            "{what}"
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let b = stream(Dtype::BF16, Profile::Fast, Some(Reconstruction::Zero));
    let r = Reader::new(&b[..]).unwrap();
    let opts = MmoOptions::default();
    // Input of the wrong length.
    let e = mmo::matmul(&r, 0, &input(1)[1..], &opts).unwrap_err();
    assert!(e.to_string().contains("needs 72"), "{e}");
    // A buffer smaller than one tile names the minimum.
    let small = MmoOptions {
        buffer_bytes: Some(100),
        path: MmoPath::Pipelined,
        ..MmoOptions::default()
    };
    let e = mmo::matmul(&r, 0, &input(1), &small).unwrap_err();
    assert!(e.to_string().contains("minimum is 3744 bytes"), "{e}");
    // No such tensor.
    assert!(mmo::matmul(&r, 3, &input(1), &opts).is_err());
    // A corrupt tile met during the multiply: an error naming tensor and tile, on both paths.
    let mut bad = b.clone();
    let r0 = Reader::new(&b[..]).unwrap();
    let tile5 = &r0.header().tensors[0].tiles[5];
    let at = PREAMBLE_BYTES + tile5.offset as usize + 3;
    bad[at] ^= 0x10;
    let r = Reader::new(&bad[..]).unwrap();
    for path in [MmoPath::Pipelined, MmoPath::Auto] {
        for threads in [1, 2] {
            let o = MmoOptions {
                path,
                threads,
                ..MmoOptions::default()
            };
            // Auto on a corrupt fast tile: the fusable check itself reads the tile.
            let e = mmo::matmul(&r, 0, &input(1), &o).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains("\"w\"") && msg.contains("tile 5"),
                "{path:?}: {msg}"
            );
        }
    }
}

#[test]
fn the_model_and_the_executor_follow_the_same_plan() {
    use sparsewire_accel::schedule;
    use sparsewire_accel::sim::HardwareSpec;
    use sparsewire_accel::workload as simulate;
    let b = stream(Dtype::BF16, Profile::Small, Some(Reconstruction::Zero));
    let r = Reader::new(&b[..]).unwrap();
    let opts = MmoOptions {
        passes: 3,
        buffer_bytes: Some(3 * 3744),
        lookahead: 2,
        ..MmoOptions::default()
    };
    let real = mmo::plan_for(&r, 0, &opts).unwrap();
    let (trace, costs) = simulate::workload(r.header(), &[0], 3).unwrap();
    assert_eq!(real.trace, trace);
    let modelled = schedule::plan(&trace, 3 * 3744, opts.policy, opts.lookahead).unwrap();
    assert_eq!(real.steps, modelled.steps);
    assert_eq!(costs.len(), 12);
    // The model runs the stream end to end on a preset.
    let hw = HardwareSpec::preset("edge-npu").unwrap();
    let rep = simulate::simulate_stream(r.header(), &[0], 1, 3, 2, &hw).unwrap();
    assert_eq!(rep.positions, 36);
    assert!(rep.total_seconds > 0.0 && rep.bus_bytes < rep.dense_bus_bytes * 3);
}

#[test]
fn a_non_float_tensor_is_an_error_naming_it() {
    let ids = Tensor::new(
        "position_ids",
        Dtype::I64,
        vec![1, 4],
        (0..4i64).flat_map(|i| i.to_le_bytes()).collect(),
    )
    .unwrap();
    let file = TensorFile {
        tensors: vec![ids],
        metadata: vec![],
    };
    let b = encode_sparse(&file, &[None], &EncodeOptions::default()).unwrap();
    let r = Reader::new(&b[..]).unwrap();
    let x = mmo::default_input(1, 4);
    for e in [
        mmo::matmul(&r, 0, &x, &MmoOptions::default()).unwrap_err(),
        mmo::reference(&r, 0, &x, 1).unwrap_err(),
    ] {
        assert!(matches!(e, ExecError::NotFloat { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("position_ids") && msg.contains("I64"), "{msg}");
    }
}
