use super::*;

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
    b[8] = crate::FORMAT_VERSION as u8 + 1;
    let e = open(&b).unwrap_err();
    assert!(matches!(
        e,
        StreamError::UnsupportedVersion { found, .. } if found == crate::FORMAT_VERSION + 1
    ));
    assert!(e.to_string().contains("newer"), "{e}");
    b[8] = crate::FORMAT_VERSION as u8 - 1;
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
            ..DecodeLimits::default()
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
