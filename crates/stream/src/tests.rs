use super::*;
use crate::fuzzing::{assemble, reseal};
use sparsewire_formats::{Tensor, TensorFile};
use sparsewire_metadata::{Dtype, Header, MetadataError, TileShape};
use sparsewire_sparse::{Mask, SparseTile};

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
fn rewrite(bytes: &[u8], edit: impl FnOnce(&mut Header)) -> Vec<u8> {
    reseal(bytes, edit).expect("a valid stream")
}

/// Where a stream's header starts, and its length (from the trailer).
fn header_at(b: &[u8]) -> (usize, usize) {
    let n = b.len();
    let hlen = u64::from_le_bytes(b[n - 24..n - 16].try_into().unwrap()) as usize;
    (n - 24 - hlen, hlen)
}

/// A stream with these header bytes around `data`.
fn raw_stream(hbytes: &[u8], data: &[u8]) -> Vec<u8> {
    let mut pre = vec![0u8; PREAMBLE_BYTES];
    pre[..8].copy_from_slice(&MAGIC);
    pre[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    assemble(&pre, data, hbytes)
}

fn data_of(b: &[u8]) -> &[u8] {
    &b[PREAMBLE_BYTES..header_at(b).0]
}

fn good() -> Vec<u8> {
    encode(&sample(), &small_tiles()).unwrap()
}

fn open(b: &[u8]) -> Result<TensorFile, StreamError> {
    Reader::new(b)?.decode_all()
}

#[test]
fn truncated_files() {
    let b = good();
    for cut in [0, 7, 31, 40, 87, 100, b.len() - 1] {
        let e = open(&b[..cut]).unwrap_err();
        assert!(
            matches!(
                e,
                StreamError::Truncated { .. } | StreamError::NoTrailer | StreamError::BadMagic
            ),
            "cut {cut}: {e}"
        );
    }
    assert!(matches!(
        open(&b[..b.len() - 1]),
        Err(StreamError::NoTrailer)
    ));
}

#[test]
fn header_length_beyond_file_or_cap() {
    let mut b = good();
    let len = b.len();
    b[len - 24..len - 16].copy_from_slice(&(len as u64).to_le_bytes());
    assert!(matches!(
        open(&b),
        Err(StreamError::Truncated {
            what: "the header",
            ..
        })
    ));
    b[len - 24..len - 16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(open(&b), Err(StreamError::HeaderTooLarge { .. })));
}

#[test]
fn metadata_that_does_not_decode() {
    let b = raw_stream(&[0xff; 40], &[]);
    assert!(matches!(
        open(&b),
        Err(StreamError::Metadata(MetadataError::Decode { .. }))
    ));
    let mut b = good();
    let (at, _) = header_at(&b);
    b[at + 3] ^= 1;
    assert!(matches!(open(&b), Err(StreamError::HeaderChecksum { .. })));
}

#[test]
fn duplicate_names() {
    let b = rewrite(&good(), |h| h.tensors[1].name = "w".into());
    assert!(matches!(
        open(&b),
        Err(StreamError::Metadata(MetadataError::DuplicateName { .. }))
    ));
}

#[test]
fn unknown_codec_id_and_version() {
    // Postcard writes the tile shape's varints right before the codec's variant index.
    let b = rewrite(&good(), |h| {
        h.tensors[0].tile_shape = TileShape { rows: 7, cols: 11 }
    });
    let (at, hlen) = header_at(&b);
    let mut hb = b[at..at + hlen].to_vec();
    let at = hb
        .windows(3)
        .position(|w| w == [7, 11, 2])
        .expect("codec byte");
    hb[at + 2] = 9;
    let e = open(&raw_stream(&hb, data_of(&b))).unwrap_err();
    assert!(
        matches!(e, StreamError::Metadata(MetadataError::Decode { .. })),
        "{e}"
    );

    let mut b = good();
    b[8] = 3;
    let e = open(&b).unwrap_err();
    assert!(matches!(
        e,
        StreamError::UnsupportedVersion { found: 3, .. }
    ));
    assert!(e.to_string().contains("newer"), "{e}");
    b[8] = 1;
    assert!(open(&b).unwrap_err().to_string().contains("older"));
    let mut b = good();
    b[12] = 1;
    assert!(matches!(open(&b), Err(StreamError::ReservedFlags { .. })));
    let mut b = good();
    b[40] = 1;
    assert!(matches!(open(&b), Err(StreamError::BadPadding)));
    let mut b = good();
    b[1] = b'X';
    assert!(matches!(open(&b), Err(StreamError::BadMagic)));
}

#[test]
fn offsets_out_of_range_overlapping_or_with_holes() {
    let b = rewrite(&good(), |h| h.tensors[0].tiles[1].offset += 1);
    assert!(matches!(open(&b), Err(StreamError::TileOffset { kind, .. }) if kind.contains("hole")));
    let b = rewrite(&good(), |h| h.tensors[0].tiles[1].offset -= 1);
    assert!(
        matches!(open(&b), Err(StreamError::TileOffset { kind, .. }) if kind.contains("overlap"))
    );
    let b = rewrite(&good(), |h| {
        let t = h.tensors.last_mut().unwrap();
        t.tiles[0].len += 1;
        t.tiles[0].streams[0].len += 1;
    });
    assert!(matches!(open(&b), Err(StreamError::TileOutOfRange { .. })));
    let b = rewrite(&good(), |h| h.tensors[0].tiles[0].len += 1);
    assert!(matches!(open(&b), Err(StreamError::TileLength { .. })));
}

#[test]
fn shape_overflow_and_shape_byte_mismatch() {
    let b = rewrite(&good(), |h| h.tensors[0].shape = vec![u64::MAX, 2]);
    assert!(matches!(
        open(&b),
        Err(StreamError::Metadata(MetadataError::ShapeOverflow { .. }))
    ));
    let b = rewrite(&good(), |h| h.tensors[0].shape = vec![40, 30]);
    assert!(matches!(
        open(&b),
        Err(StreamError::Metadata(MetadataError::TileCount { .. }))
    ));
    // An integer tensor whose shape says more bytes than its tile holds.
    let b = rewrite(&good(), |h| {
        h.tensors[2].shape = vec![4];
        h.tensors[2].tile_shape = TileShape { rows: 1, cols: 4 };
    });
    let e = open(&b).unwrap_err();
    assert!(
        matches!(e, StreamError::Codec { ref tensor, .. } if tensor == "ids"),
        "{e}"
    );
}

#[test]
fn checksum_mismatch_names_tensor_and_tile() {
    let mut b = good();
    b[PREAMBLE_BYTES + 20] ^= 0x10;
    let e = open(&b).unwrap_err();
    assert!(matches!(e, StreamError::ChecksumMismatch { .. }), "{e}");
    assert!(e.to_string().contains("tile"));
}

#[test]
fn swapped_tiles_fail_their_checksums() {
    // Two tiles of equal size swapped in place: the seeded checksum catches it.
    let f = TensorFile {
        tensors: vec![Tensor::new(
            "z",
            Dtype::BF16,
            vec![4, 2],
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
        )
        .unwrap()],
        metadata: vec![],
    };
    let opts = EncodeOptions {
        tile_shape: Some(TileShape { rows: 2, cols: 2 }),
        try_lz: false,
        ..EncodeOptions::default()
    };
    let b = encode(&f, &opts).unwrap();
    let r = Reader::new(&b[..]).unwrap();
    let h = r.header().clone();
    let (t0, t1) = (&h.tensors[0].tiles[0], &h.tensors[0].tiles[1]);
    if t0.len == t1.len {
        let start = PREAMBLE_BYTES;
        let mut s = b.clone();
        let (a, l) = (start + t0.offset as usize, t0.len as usize);
        let c = start + t1.offset as usize;
        let tmp = s[a..a + l].to_vec();
        s.copy_within(c..c + l, a);
        s[c..c + l].copy_from_slice(&tmp);
        assert!(matches!(
            open(&s),
            Err(StreamError::ChecksumMismatch { .. })
        ));
    }
}

#[test]
fn trailing_bytes() {
    let mut b = good();
    b.push(0);
    assert!(matches!(open(&b), Err(StreamError::NoTrailer)));
    let b = rewrite(&good(), |h| h.data_len += 0);
    assert!(open(&b).is_ok());
    // Three bytes after the last tile, which the header's data length counts.
    let g = good();
    let mut h = Reader::new(&g[..]).unwrap().header().clone();
    h.data_len += 3;
    let mut data = data_of(&g).to_vec();
    data.extend_from_slice(&[0, 0, 0]);
    let b2 = assemble(&g[..PREAMBLE_BYTES], &data, &h.to_postcard().unwrap());
    assert!(matches!(
        open(&b2),
        Err(StreamError::TrailingBytes { bytes: 3 })
    ));
    // A data length that disagrees with the bytes present.
    let b3 = assemble(&g[..PREAMBLE_BYTES], data_of(&g), &h.to_postcard().unwrap());
    assert!(matches!(open(&b3), Err(StreamError::DataLength { .. })));
}

#[test]
fn output_limit_is_enforced() {
    let b = good();
    let r = Reader::with_limits(
        &b[..],
        DecodeLimits {
            max_output_bytes: 100,
        },
    )
    .unwrap();
    assert!(matches!(
        r.decode_all(),
        Err(StreamError::OutputLimit { .. })
    ));
}

#[test]
fn bit_flip_sweep_gives_error_or_identical_output() {
    let f = TensorFile {
        tensors: vec![
            Tensor::from_f32(
                "a",
                vec![3, 5],
                &[
                    0.5, -1.0, 0.25, 3.0, 0.0, 1e-3, 2.0, -2.0, 7.5, 0.1, 0.2, 0.3, -0.4, 9.0, 1.0,
                ],
            ),
            Tensor::new("b", Dtype::U8, vec![4], vec![1, 2, 3, 4]).unwrap(),
        ],
        metadata: vec![("k".into(), "v".into())],
    };
    let opts = EncodeOptions {
        tile_shape: Some(TileShape { rows: 2, cols: 5 }),
        ..EncodeOptions::default()
    };
    let b = encode(&f, &opts).unwrap();
    let mut errors = 0;
    for i in 0..b.len() {
        for bit in 0..8 {
            let mut c = b.clone();
            c[i] ^= 1 << bit;
            match open(&c) {
                Ok(back) => assert_eq!(back, f, "flip at byte {i} bit {bit} changed the output"),
                Err(_) => errors += 1,
            }
        }
    }
    assert!(errors > 0);
}

#[test]
fn sparse_tensors_round_trip_zero_filled_with_every_mask_encoding() {
    use sparsewire_metadata::{Criterion, Pattern, Sparsification};
    let (rows, cols) = (20usize, 30usize);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i as f32) * 0.37).sin() * 0.05 + 0.001)
        .collect();
    let info = |pattern| Sparsification {
        criterion: Criterion::Magnitude,
        pattern,
        sparsity: 0.5,
        threshold: None,
        rel_error: 0.0,
        output_error: None,
        values_updated: false,
    };
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
            criterion: Criterion::Magnitude,
            pattern: Pattern::Unstructured,
            sparsity: 0.4,
            threshold: None,
            rel_error: 0.1,
            output_error: None,
            values_updated: false,
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
        info: Sparsification {
            criterion: Criterion::Magnitude,
            pattern: Pattern::Unstructured,
            sparsity: 0.4,
            threshold: None,
            rel_error: 0.0,
            output_error: None,
            values_updated: false,
        },
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
