use super::*;
use sparsewire_formats::{Tensor, TensorFile};
use sparsewire_metadata::{Dtype, Header, MetadataError, TileShape};

fn noop(_: Progress) {}

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
    let b = encode(&f, &opts, &noop).unwrap();
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
        let bytes = encode(&f, &opts, &noop).unwrap();
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

/// Rewrites a stream's header (fixing its checksum), keeping the data section.
fn rewrite(bytes: &[u8], edit: impl FnOnce(&mut Header)) -> Vec<u8> {
    let hlen = u64::from_le_bytes(bytes[16..24].try_into().unwrap()) as usize;
    let mut h: Header = postcard::from_bytes(&bytes[32..32 + hlen]).unwrap();
    let start = data_start(hlen as u64).unwrap() as usize;
    let data = bytes[start..].to_vec();
    edit(&mut h);
    raw_stream(&postcard::to_stdvec(&h).unwrap(), &data)
}

fn raw_stream(hbytes: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(hbytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(hbytes).to_le_bytes());
    out.extend_from_slice(hbytes);
    out.resize(data_start(hbytes.len() as u64).unwrap() as usize, 0);
    out.extend_from_slice(data);
    out
}

fn good() -> Vec<u8> {
    encode(&sample(), &small_tiles(), &noop).unwrap()
}

fn open(b: &[u8]) -> Result<TensorFile, StreamError> {
    Reader::new(b)?.decode_all()
}

#[test]
fn truncated_files() {
    let b = good();
    for cut in [0, 7, 31, 40, b.len() - 1] {
        let e = open(&b[..cut]).unwrap_err();
        assert!(
            matches!(
                e,
                StreamError::Truncated { .. }
                    | StreamError::DataLength { .. }
                    | StreamError::BadMagic
            ),
            "cut {cut}: {e}"
        );
    }
    assert!(matches!(
        open(&b[..b.len() - 1]),
        Err(StreamError::DataLength { .. })
    ));
}

#[test]
fn header_length_beyond_file_or_cap() {
    let mut b = good();
    let len = b.len() as u64;
    b[16..24].copy_from_slice(&len.to_le_bytes());
    assert!(matches!(
        open(&b),
        Err(StreamError::Truncated {
            what: "the header",
            ..
        })
    ));
    b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
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
    b[40] ^= 1;
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
    let hlen = u64::from_le_bytes(b[16..24].try_into().unwrap()) as usize;
    let mut hb = b[32..32 + hlen].to_vec();
    let at = hb
        .windows(3)
        .position(|w| w == [7, 11, 2])
        .expect("codec byte");
    hb[at + 2] = 9;
    let start = data_start(hlen as u64).unwrap() as usize;
    let e = open(&raw_stream(&hb, &b[start..])).unwrap_err();
    assert!(
        matches!(e, StreamError::Metadata(MetadataError::Decode { .. })),
        "{e}"
    );

    let mut b = good();
    b[8] = 2;
    assert!(matches!(
        open(&b),
        Err(StreamError::UnsupportedVersion { found: 2, .. })
    ));
    let mut b = good();
    b[12] = 1;
    assert!(matches!(open(&b), Err(StreamError::ReservedFlags { .. })));
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
    let n = b.len();
    b[n - 20] ^= 0x10;
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
    let b = encode(&f, &opts, &noop).unwrap();
    let r = Reader::new(&b[..]).unwrap();
    let h = r.header().clone();
    let (t0, t1) = (&h.tensors[0].tiles[0], &h.tensors[0].tiles[1]);
    if t0.len == t1.len {
        let start = data_start(u64::from_le_bytes(b[16..24].try_into().unwrap())).unwrap() as usize;
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
    assert!(matches!(open(&b), Err(StreamError::DataLength { .. })));
    let b = rewrite(&good(), |h| h.data_len += 0);
    assert!(open(&b).is_ok());
    let mut b2 = rewrite(&good(), |h| h.data_len += 3);
    b2.extend_from_slice(&[0, 0, 0]);
    assert!(matches!(
        open(&b2),
        Err(StreamError::TrailingBytes { bytes: 3 })
    ));
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
    let b = encode(&f, &opts, &noop).unwrap();
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
        let tm = writer::TensorMask {
            keep: keep.clone(),
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
            let b = encode_sparse(&file, &[Some(tm.clone())], &opts, &noop).unwrap();
            let r = Reader::new(&b[..]).unwrap();
            // The fast profile's tiles are borrowed as they are: bits and packed values.
            for k in 0..r.header().tensors[0].tiles.len() {
                let raw = r.raw_tile(0, k).unwrap();
                let mask = r.tile_mask(0, k).unwrap().unwrap();
                match (opts.profile, raw) {
                    (Profile::Small, None) => {}
                    (Profile::Fast, Some(RawTile::Sparse { bits, values })) => {
                        assert_eq!(bits, mask.as_bytes());
                        assert_eq!(values.len(), mask.kept() * 4);
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
    // A mask of the wrong length is refused.
    let file = TensorFile {
        tensors: vec![Tensor::from_f32("w", vec![2, 2], &[1.0; 4])],
        metadata: vec![],
    };
    let bad = writer::TensorMask {
        keep: vec![true; 3],
        info: info(Pattern::Unstructured),
        reconstruction: Default::default(),
    };
    assert!(matches!(
        encode_sparse(&file, &[Some(bad)], &EncodeOptions::default(), &noop),
        Err(StreamError::MaskLength { .. })
    ));
}
