use super::*;

fn tensor(name: &str, shape: Vec<u64>, tiles: usize) -> TensorMeta {
    TensorMeta {
        name: name.into(),
        dtype: Dtype::F32,
        shape,
        layout: Layout::Other,
        tile_shape: TileShape { rows: 2, cols: 2 },
        codec: ValueCodec::FloatPlanes,
        models: vec![vec![1, 2, 3]],
        sparsification: None,
        reconstruction: Reconstruction::Zero,
        tiles: vec![
            TileEntry {
                offset: 0,
                len: 0,
                checksum: 0,
                streams: vec![],
            };
            tiles
        ],
    }
}

#[test]
fn postcard_round_trip_and_json() {
    let h = Header {
        tensors: vec![tensor("a", vec![3, 3], 4), tensor("b", vec![], 1)],
        user_metadata: vec![("k".into(), "v".into())],
        data_len: 0,
    };
    let bytes = h.to_postcard().unwrap();
    assert_eq!(Header::from_postcard(&bytes).unwrap(), h);
    assert!(h.to_json().contains("\"FloatPlanes\""));
}

#[test]
fn json_view_reads_back_to_the_same_bytes() {
    // Every float field, with values JSON numbers cannot hold.
    let mut a = tensor("a", vec![3, 3], 4);
    a.sparsification = Some(Sparsification {
        criterion: Criterion::SparseGpt,
        pattern: Pattern::NM { n: 2, m: 4 },
        sparsity: 0.5,
        threshold: Some(f32::NAN),
        rel_error: f32::INFINITY,
        output_error: Some(1e-7),
        values_updated: true,
    });
    a.reconstruction = Reconstruction::Learned {
        params: vec![f32::NEG_INFINITY, -0.0, 1.5e-38, f32::NAN],
    };
    let mut b = tensor("b", vec![2, 2], 1);
    b.reconstruction = Reconstruction::Channels {
        combinations: vec![ChannelCombination {
            row: 1,
            sources: vec![0],
            coefs: vec![0.1],
        }],
    };
    let h = Header {
        tensors: vec![a, b],
        user_metadata: vec![("k".into(), "v \"quoted\"".into())],
        data_len: 0,
    };
    let json = h.to_json();
    assert!(
        json.contains("\"NaN\"") && json.contains("\"-inf\""),
        "{json}"
    );
    let back = Header::from_json(&json).unwrap();
    assert_eq!(back.to_postcard().unwrap(), h.to_postcard().unwrap());
    assert!(Header::from_json("{").is_err());
    assert!(Header::from_json(&json.replace("\"NaN\"", "\"nan?\"")).is_err());
}

#[test]
fn refuses_duplicates_overflow_and_bad_tile_counts() {
    let dup = Header {
        tensors: vec![tensor("a", vec![2, 2], 1), tensor("a", vec![2, 2], 1)],
        user_metadata: vec![],
        data_len: 0,
    };
    assert!(matches!(
        dup.validate(),
        Err(MetadataError::DuplicateName { .. })
    ));
    let big = tensor("x", vec![u64::MAX, 3], 1);
    assert!(matches!(
        big.validate(),
        Err(MetadataError::ShapeOverflow { .. })
    ));
    let wrong = tensor("x", vec![4, 4], 3);
    assert!(matches!(
        wrong.validate(),
        Err(MetadataError::TileCount { expected: 4, .. })
    ));
    let mut int = tensor("i", vec![2], 1);
    int.dtype = Dtype::I64;
    assert!(matches!(
        int.validate(),
        Err(MetadataError::CodecDtype { .. })
    ));
}

#[test]
fn trailing_and_garbage_bytes_are_errors() {
    let h = Header {
        tensors: vec![],
        user_metadata: vec![],
        data_len: 0,
    };
    let mut bytes = h.to_postcard().unwrap();
    bytes.push(0);
    assert!(matches!(
        Header::from_postcard(&bytes),
        Err(MetadataError::TrailingHeaderBytes { trailing: 1 })
    ));
    assert!(matches!(
        Header::from_postcard(&[0xff; 10]),
        Err(MetadataError::Decode { .. })
    ));
}

#[test]
fn views_and_tile_counts() {
    assert_eq!(view_2d(&[], 1), (1, 1));
    assert_eq!(view_2d(&[5], 5), (1, 5));
    assert_eq!(view_2d(&[4, 3, 2, 2], 48), (4, 12));
    assert_eq!(view_2d(&[0, 7], 0), (0, 0));
    assert_eq!(tensor("e", vec![0, 7], 0).expected_tiles().unwrap(), 0);
    assert_ne!(tile_seed(0, 1), tile_seed(1, 0));
}
