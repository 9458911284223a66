use super::*;
use crate::fuzzing::{assemble, reseal};
use sparsewire_formats::{Tensor, TensorFile};
use sparsewire_metadata::{Dtype, Header, MetadataError, TileShape};
use sparsewire_sparse::{Mask, SparseTile};

/// Every malformed-stream class: a typed error, never a panic or a wrong answer.
mod malformed;

fn sample() -> TensorFile {
    let w: Vec<f32> = (0..600).map(|i| ((i as f32) * 0.37).sin() * 0.02).collect();
    let mut special = vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 1e-45];
    special.extend((0..20).map(|i| i as f32));
    TensorFile {
        tensors: vec![
            Tensor::from_f32("w", vec![20, 30], &w),
            Tensor::from_f32("special", vec![25], &special),
            Tensor::new(
                "ids",
                Dtype::I32,
                vec![3],
                vec![1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0],
            )
            .unwrap(),
            Tensor::new("empty", Dtype::BF16, vec![0, 3], vec![]).unwrap(),
            Tensor::new("scalar", Dtype::F16, vec![], vec![0x00, 0x3c]).unwrap(),
        ],
        metadata: vec![("format".into(), "pt".into())],
    }
}

fn small_tiles() -> EncodeOptions {
    EncodeOptions {
        tile_shape: Some(TileShape { rows: 7, cols: 11 }),
        ..EncodeOptions::default()
    }
}

#[test]
fn fast_profile_round_trips_and_lends_raw_tiles() {
    let f = sample();
    let opts = EncodeOptions {
        profile: Profile::Fast,
        ..small_tiles()
    };
    let b = encode(&f, &opts).unwrap();
    let r = Reader::new(&b[..]).unwrap();
    assert_eq!(r.decode_all().unwrap().tensors, f.tensors);
    let t = r.tensor_index("w").unwrap();
    for k in 0..r.header().tensors[t].tiles.len() {
        match r.raw_tile(t, k).unwrap() {
            Some(RawTile::Dense(bytes)) => assert_eq!(bytes, &r.decode_tile(t, k).unwrap()[..]),
            other => panic!("tile {k}: {other:?}"),
        }
    }
    // Non-float tensors have no raw float tile.
    assert!(r
        .raw_tile(r.tensor_index("ids").unwrap(), 0)
        .unwrap()
        .is_none());
}

#[test]
fn round_trips_every_dtype_and_shape() {
    for opts in [EncodeOptions::default(), small_tiles()] {
        let f = sample();
        let bytes = encode(&f, &opts).unwrap();
        let r = Reader::new(&bytes[..]).unwrap();
        assert_eq!(r.decode_all().unwrap(), f);
        // Into the buffers of a previous decode: the same file, the buffers kept; into
        // buffers of other sizes (or fewer tensors): still the same file.
        let mut again = r.decode_all().unwrap();
        let ptrs: Vec<*const u8> = again.tensors.iter().map(|t| t.data.as_ptr()).collect();
        r.decode_all_into(&mut again).unwrap();
        assert_eq!(again, f);
        let kept: Vec<*const u8> = again.tensors.iter().map(|t| t.data.as_ptr()).collect();
        assert_eq!(kept, ptrs, "buffers reused");
        let mut other = TensorFile::default();
        other.tensors.push(f.tensors[f.tensors.len() - 1].clone());
        r.decode_all_into(&mut other).unwrap();
        assert_eq!(other, f);
        // Random access: any tile alone.
        let t = r.tensor_index("w").unwrap();
        let grid = r.grid(t);
        let last = grid.len() as usize - 1;
        let tile = r.decode_tile(t, last).unwrap();
        let expected = grid.gather(&f.tensors[0].data, last as u64, 4);
        assert_eq!(&tile[..], &expected[..]);
    }
}

/// Rewrites a stream's header (fixing its checksum and trailer), keeping the data.
#[test]
fn sparse_tensors_round_trip_zero_filled_with_every_mask_encoding() {
    use sparsewire_metadata::{Criterion, Pattern, Sparsification};
    let (rows, cols) = (20usize, 30usize);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i as f32) * 0.37).sin() * 0.05 + 0.001)
        .collect();
    let info = |pattern| Sparsification::new(Criterion::Magnitude, pattern, 0.5);
    let masks: Vec<(Pattern, Vec<bool>)> = vec![
        (
            Pattern::Unstructured,
            (0..rows * cols).map(|i| (i * 7919) % 10 < 5).collect(),
        ),
        (
            Pattern::NM { n: 2, m: 4 },
            (0..rows * cols).map(|i| (i % cols) % 4 < 2).collect(),
        ),
        (
            Pattern::Channel,
            (0..rows * cols).map(|i| (i / cols) % 3 != 0).collect(),
        ),
        (
            Pattern::Unstructured,
            (0..rows * cols).map(|i| i % 97 == 0).collect(),
        ),
    ];
    for (pattern, keep) in masks {
        let file = TensorFile {
            tensors: vec![Tensor::from_f32("w", vec![rows as u64, cols as u64], &w)],
            metadata: vec![],
        };
        let tile = SparseTile::from_dense(
            rows,
            cols,
            Dtype::F32,
            &file.tensors[0].data,
            Mask::from_bools(&keep),
        )
        .unwrap();
        let tm = SparseTensor {
            tile,
            info: info(pattern),
            reconstruction: Default::default(),
        };
        let fast = |o: EncodeOptions| EncodeOptions {
            profile: Profile::Fast,
            ..o
        };
        for opts in [
            EncodeOptions::default(),
            small_tiles(),
            fast(EncodeOptions::default()),
            fast(small_tiles()),
        ] {
            let b = encode_sparse(&file, &[Some(tm.clone())], &opts).unwrap();
            let r = Reader::new(&b[..]).unwrap();
            // The fast profile's tiles are borrowed as they are: bits and packed values.
            for k in 0..r.header().tensors[0].tiles.len() {
                let raw = r.raw_tile(0, k).unwrap();
                let mask = r.tile_mask(0, k).unwrap().unwrap();
                match (opts.profile, raw) {
                    (Profile::Small, None) => {}
                    (Profile::Fast, Some(RawTile::Sparse(t))) => {
                        assert_eq!(t.mask().as_bytes(), mask.as_bytes());
                        assert_eq!(t.values().len(), mask.kept() * 4);
                        let decoded = r.tile_sparse(0, k).unwrap().unwrap();
                        assert_eq!(t.counted().unwrap().to_owned(), decoded);
                    }
                    (p, raw) => panic!("{p:?} gave {raw:?}"),
                }
            }
            let back = r.decode_all().unwrap();
            let vals = back.tensors[0].to_f32_vec().unwrap();
            for i in 0..rows * cols {
                let want = if keep[i] { w[i] } else { 0.0 };
                assert_eq!(vals[i].to_bits(), want.to_bits(), "{pattern:?} element {i}");
            }
            assert_eq!(
                r.header().tensors[0]
                    .sparsification
                    .as_ref()
                    .unwrap()
                    .pattern,
                pattern
            );
            assert!(r.tile_mask(0, 0).unwrap().is_some());
        }
    }
    // A sparse tile of the wrong shape, and a sparse integer tensor, are refused.
    let file = TensorFile {
        tensors: vec![Tensor::from_f32("w", vec![2, 2], &[1.0; 4])],
        metadata: vec![],
    };
    let bad = SparseTensor {
        tile: SparseTile::from_dense(1, 3, Dtype::F32, &[0; 12], Mask::dense(3)).unwrap(),
        info: info(Pattern::Unstructured),
        reconstruction: Default::default(),
    };
    assert!(matches!(
        encode_sparse(&file, &[Some(bad.clone())], &EncodeOptions::default()),
        Err(StreamError::SparseShape { .. })
    ));
    let ints = SparseTensor {
        tile: SparseTile::from_dense(2, 2, Dtype::I32, &[1; 16], Mask::dense(4)).unwrap(),
        ..bad
    };
    assert!(matches!(
        encode_sparse(&file, &[Some(ints)], &EncodeOptions::default()),
        Err(StreamError::SparseDtype { .. })
    ));
}

#[test]
fn streams_are_byte_identical_across_thread_counts_and_runs() {
    use sparsewire_metadata::{Criterion, Pattern, Sparsification};
    let w: Vec<f32> = (0..300 * 70)
        .map(|i| ((i as f32) * 0.013).sin() * 0.1)
        .collect();
    let file = TensorFile {
        tensors: vec![
            Tensor::from_f32("a", vec![300, 70], &w),
            Tensor::from_f32("b", vec![300, 70], &w),
        ],
        metadata: vec![],
    };
    let sparse = SparseTensor {
        tile: SparseTile::from_dense(
            300,
            70,
            Dtype::F32,
            &file.tensors[1].data,
            Mask::from_fn(300 * 70, |i| w[i].abs() > 0.05),
        )
        .unwrap(),
        info: Sparsification {
            rel_error: 0.1,
            ..Sparsification::new(Criterion::Magnitude, Pattern::Unstructured, 0.4)
        },
        reconstruction: Default::default(),
    };
    let opts = EncodeOptions {
        tile_elems: 700,
        ..EncodeOptions::default()
    };
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| encode_sparse(&file, &[None, Some(sparse.clone())], &opts).unwrap())
    };
    let one = run(1);
    for threads in [2, 3, 8, 1] {
        assert!(run(threads) == one, "{threads} threads wrote other bytes");
    }
}

#[test]
fn large_whole_tiles_stream_in_chunks_and_files_are_read_by_range() {
    // 6 MiB of compressible I64 (zstd, streamed) and 5 MiB of noise (raw, streamed).
    let ids: Vec<u8> = (0..(6 << 20) / 8)
        .flat_map(|i: u64| (i % 1000).to_le_bytes())
        .collect();
    let mut s = 7u64;
    let noise: Vec<u8> = (0..5 << 20)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect();
    let file = TensorFile {
        tensors: vec![
            Tensor::new("ids", Dtype::I64, vec![ids.len() as u64 / 8], ids).unwrap(),
            Tensor::new("noise", Dtype::U8, vec![noise.len() as u64], noise).unwrap(),
            Tensor::from_f32("w", vec![64, 64], &vec![0.5; 4096]),
        ],
        metadata: vec![],
    };
    let b = encode(&file, &EncodeOptions::default()).unwrap();
    let r = Reader::new(&b[..]).unwrap();
    assert_eq!(
        r.header().tensors[0].codec,
        sparsewire_metadata::ValueCodec::Zstd
    );
    assert_eq!(
        r.header().tensors[1].codec,
        sparsewire_metadata::ValueCodec::Raw
    );
    assert_eq!(r.decode_all().unwrap(), file);
    for t in 0..2 {
        let mut out = Vec::new();
        r.write_whole_tile(t, 0, &mut out).unwrap();
        assert!(out == file.tensors[t].data, "tensor {t}");
    }
    // From a file: only the header and the tile asked for are read.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.swire");
    std::fs::write(&p, &b).unwrap();
    let fr = Reader::new(FileSource::open(&p).unwrap()).unwrap();
    let opened = fr.source().bytes_read();
    assert!(opened < 4096, "opening read {opened} bytes");
    assert_eq!(fr.decode_tensor(2).unwrap(), file.tensors[2]);
    let read = fr.source().bytes_read() - opened;
    assert_eq!(read, fr.header().tensors[2].tiles[0].len);
    // A corrupt byte inside a streamed tile: an error, in both passes' reach.
    let mut bad = b.clone();
    bad[PREAMBLE_BYTES + 100] ^= 1;
    let r = Reader::new(&bad[..]).unwrap();
    assert!(matches!(
        r.write_whole_tile(0, 0, &mut Vec::new()),
        Err(StreamError::ChecksumMismatch { .. })
    ));
}

#[test]
fn row_blocks_of_column_tiles_decode_like_the_tensor() {
    let w: Vec<f32> = (0..9 * 23).map(|i| i as f32 * 0.5).collect();
    let file = TensorFile {
        tensors: vec![Tensor::from_f32("w", vec![9, 23], &w)],
        metadata: vec![],
    };
    let opts = EncodeOptions {
        tile_shape: Some(TileShape { rows: 4, cols: 5 }),
        ..EncodeOptions::default()
    };
    let b = encode(&file, &opts).unwrap();
    let r = Reader::new(&b[..]).unwrap();
    let g = r.grid(0);
    let mut all = Vec::new();
    for block in 0..g.row_blocks() {
        let rows = g.rect(g.row_block(block).start).rows as usize;
        let mut out = vec![0u8; rows * 23 * 4];
        r.decode_rows(0, block, &mut out).unwrap();
        all.extend(out);
    }
    assert_eq!(all, file.tensors[0].data);
}

#[test]
fn row_block_masks_follow_the_row_major_layout() {
    use sparsewire_metadata::{Criterion, Pattern, Sparsification};
    let (rows, cols) = (9usize, 23usize);
    let w: Vec<f32> = (0..rows * cols).map(|i| i as f32 + 1.0).collect();
    let file = TensorFile {
        tensors: vec![Tensor::from_f32("w", vec![rows as u64, cols as u64], &w)],
        metadata: vec![],
    };
    let mask = Mask::from_fn(rows * cols, |i| (i * 7) % 5 < 3);
    let s = SparseTensor {
        tile: SparseTile::from_dense(rows, cols, Dtype::F32, &file.tensors[0].data, mask.clone())
            .unwrap(),
        info: Sparsification::new(Criterion::Magnitude, Pattern::Unstructured, 0.4),
        reconstruction: Default::default(),
    };
    let opts = EncodeOptions {
        tile_shape: Some(TileShape { rows: 4, cols: 5 }),
        ..EncodeOptions::default()
    };
    let b = encode_sparse(&file, &[Some(s)], &opts).unwrap();
    let r = Reader::new(&b[..]).unwrap();
    let g = r.grid(0);
    let mut all = Mask::default();
    for block in 0..g.row_blocks() {
        all.extend(r.rows_mask(0, block).unwrap().unwrap().as_ref());
    }
    assert_eq!(all, mask);
}

#[test]
fn no_tensor_is_stored_larger_than_raw() {
    // Noise of a few hundred bytes (a batch norm's statistics): neither the planes (their
    // own model in front) nor zstd pay, so the tile is stored raw.
    let mut s = 1u64;
    let mut noise = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                f32::from_bits((s >> 32) as u32 & 0x3fff_ffff) - 1.0
            })
            .collect()
    };
    let file = TensorFile {
        tensors: vec![
            Tensor::from_f32("bn_mean", vec![104], &noise(104)),
            Tensor::from_f32("tiny", vec![7], &noise(7)),
            Tensor::from_f32("conv", vec![16, 3, 3, 3], &noise(432)),
        ],
        metadata: vec![],
    };
    for opts in [
        EncodeOptions::default(),
        EncodeOptions {
            try_lz: false,
            ..EncodeOptions::default()
        },
    ] {
        let stream = encode(&file, &opts).unwrap();
        let r = Reader::new(&stream[..]).unwrap();
        for (t, m) in r.header().tensors.iter().enumerate() {
            let stored: u64 = m.tiles.iter().map(|e| e.len).sum::<u64>()
                + m.models.iter().map(|b| b.len() as u64).sum::<u64>();
            let raw = file.tensors[t].data.len() as u64;
            assert!(
                stored <= raw,
                "{}: {stored} bytes stored, {raw} raw",
                m.name
            );
        }
        assert_eq!(r.decode_all().unwrap().tensors, file.tensors);
    }
}

#[test]
fn row_block_streams_decode_to_the_rows_with_the_stored_bytes() {
    use sparsewire_metadata::{Criterion, Pattern, Reconstruction, Sparsification};
    let mut file = sample();
    let cube: Vec<f32> = (0..5 * 4 * 6).map(|i| (i as f32 * 0.21).cos()).collect();
    file.tensors
        .push(Tensor::from_f32("cube", vec![5, 4, 6], &cube));
    let (rows, cols) = (20usize, 30usize);
    let w: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.37).sin()).collect();
    let keep: Vec<bool> = (0..rows * cols).map(|i| (i * 7919) % 10 < 4).collect();
    let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    let tile =
        SparseTile::from_dense(rows, cols, Dtype::F32, &bytes, Mask::from_bools(&keep)).unwrap();
    let sparse = SparseTensor {
        tile,
        info: Sparsification::new(Criterion::Magnitude, Pattern::Unstructured, 0.6),
        reconstruction: Reconstruction::Zero,
    };
    for opts in [
        small_tiles(),
        EncodeOptions {
            profile: Profile::Fast,
            ..small_tiles()
        },
        EncodeOptions {
            tile_shape: Some(TileShape { rows: 3, cols: 64 }),
            ..EncodeOptions::default()
        },
    ] {
        let mut wr = Writer::new(Vec::new(), opts).unwrap();
        for t in &file.tensors {
            wr.add(t.as_ref()).unwrap();
        }
        wr.add_sparse("sparse", &[rows as u64, cols as u64], &sparse)
            .unwrap();
        let b = wr.finish(vec![]).unwrap().0;
        let r = Reader::new(&b[..]).unwrap();
        for t in 0..r.header().tensors.len() {
            let whole = r.decode_tensor(t).unwrap();
            let g = r.grid(t);
            let row_bytes = (g.cols * whole.dtype.bits() / 8) as usize;
            let mut at = 0usize;
            for block in 0..g.row_blocks().max(1) {
                let s = r.row_block_stream(t, block).unwrap();
                let rb = Reader::new(&s[..]).unwrap();
                assert_eq!(rb.header().tensors.len(), 1);
                let got = rb.decode_tensor(0).unwrap();
                assert_eq!((&got.name, got.dtype), (&whole.name, whole.dtype));
                let n = got.data.len();
                assert_eq!(
                    got.data,
                    whole.data[at..at + n],
                    "{} block {block}",
                    got.name
                );
                if whole.shape.len() >= 2 {
                    assert_eq!(n % row_bytes.max(1), 0);
                    assert_eq!(got.shape[1..], whole.shape[1..]);
                }
                at += n;
                // The tiles travel as stored: the block's stored bytes are the stream's data.
                let stored: Vec<u8> = g
                    .row_block(block)
                    .flat_map(|k| r.tile_stored(t, k as usize).unwrap().into_owned())
                    .collect();
                assert_eq!(s[PREAMBLE_BYTES..PREAMBLE_BYTES + stored.len()], stored[..]);
            }
            assert_eq!(at, whole.data.len());
            let past = g.row_blocks().max(1);
            assert!(matches!(
                r.row_block_stream(t, past),
                Err(StreamError::NoSuchTile { .. })
            ));
        }
    }
}

#[test]
fn encode_into_reuses_its_buffer_and_writes_what_encode_writes() {
    let f = sample();
    for opts in [EncodeOptions::default(), small_tiles()] {
        let want = encode(&f, &opts).unwrap();
        let mut out = vec![0xAB; 3 * want.len()];
        encode_into(&f, &opts, &mut out).unwrap();
        assert_eq!(out, want);
        let cap = out.capacity();
        encode_into(&f, &opts, &mut out).unwrap();
        assert_eq!(
            (out == want, out.capacity()),
            (true, cap),
            "reused, not regrown"
        );
    }
    let bad = EncodeOptions {
        tile_shape: Some(TileShape { rows: 0, cols: 11 }),
        ..EncodeOptions::default()
    };
    let mut out = vec![1, 2, 3];
    assert!(matches!(
        encode_into(&f, &bad, &mut out),
        Err(StreamError::InvalidOptions { .. })
    ));
    assert!(out.is_empty(), "no partial stream is left behind");
    for bad in [
        EncodeOptions {
            tile_elems: 0,
            ..EncodeOptions::default()
        },
        EncodeOptions {
            zstd_level: 23,
            ..EncodeOptions::default()
        },
        EncodeOptions {
            tile_shape: Some(TileShape { rows: 4, cols: 0 }),
            ..EncodeOptions::default()
        },
    ] {
        assert!(matches!(
            encode(&f, &bad),
            Err(StreamError::InvalidOptions { .. })
        ));
    }
}

/// A tensor with more tiles than the writer keeps counted histograms for (400 against
/// 256): the tiles past that count afresh, and every tile still decodes bit for bit.
#[test]
fn tiles_past_the_kept_histograms_round_trip() {
    let mut s = 0x9e37_79b9u32;
    let w: Vec<f32> = (0..160 * 160)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            ((s >> 8) as f32 / (1 << 24) as f32 - 0.5) * 0.1
        })
        .collect();
    let f = TensorFile {
        tensors: vec![Tensor::from_f32("w", vec![160, 160], &w)],
        metadata: vec![],
    };
    let opts = EncodeOptions {
        tile_shape: Some(TileShape { rows: 8, cols: 8 }),
        ..EncodeOptions::default()
    };
    let b = encode(&f, &opts).unwrap();
    let r = Reader::new(&b[..]).unwrap();
    let meta = &r.header().tensors[0];
    assert_eq!(meta.tiles.len(), 400);
    assert_eq!(meta.codec, sparsewire_codec::ValueCodec::FloatPlanes);
    assert_eq!(r.decode_all().unwrap().tensors, f.tensors);
}
