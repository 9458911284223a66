//! `read_rows` against the whole decode: every range of rows of lossless and rebuilt
//! tensors, with several row blocks of tiles, equals the same rows of `read_tensor`.

use sparsewire_formats::{Dtype, Tensor, TensorFile};
use sparsewire_metadata::TileShape;
use sparsewire_pipeline::{compress, read_rows, read_tensor, CompressOptions, PipelineError};
use sparsewire_se::{Budget, Rebuild, SparsifyOptions};
use sparsewire_stream::{EncodeOptions, Reader};

fn file() -> TensorFile {
    let w: Vec<f32> = (0..37 * 20)
        .map(|i| ((i * 7919) % 113) as f32 * 0.01 - 0.5)
        .collect();
    let c: Vec<f32> = (0..5 * 3 * 2 * 2).map(|i| i as f32 * 0.25 - 3.0).collect();
    let ints: Vec<u8> = (0..9 * 4 * 4).map(|i| (i * 31 % 251) as u8).collect();
    TensorFile {
        tensors: vec![
            Tensor::from_f32("w", vec![37, 20], &w),
            Tensor::from_f32("conv", vec![5, 3, 2, 2], &c),
            Tensor::new("ints", Dtype::I32, vec![9, 4], ints).unwrap(),
            Tensor::from_f32("vec", vec![20], &w[..20]),
        ],
        metadata: vec![],
    }
}

fn check(stream: &[u8]) {
    let reader = Reader::new(stream).unwrap();
    for t in 0..reader.header().tensors.len() {
        let whole = read_tensor(&reader, t).unwrap();
        let rows = reader.grid(t).rows;
        let row = whole.len() as u64 / rows.max(1);
        for a in 0..=rows {
            for b in a..=rows {
                let got = read_rows(&reader, t, a..b).unwrap();
                assert_eq!(
                    got,
                    whole[(a * row) as usize..(b * row) as usize],
                    "t {t} {a}..{b}"
                );
            }
        }
        let bad = read_rows(&reader, t, 0..rows + 1);
        assert!(matches!(bad, Err(PipelineError::Rows { .. })), "{bad:?}");
    }
}

#[test]
fn rows_equal_the_whole_decode() {
    let encode = EncodeOptions {
        tile_shape: Some(TileShape { rows: 8, cols: 6 }),
        ..EncodeOptions::default()
    };
    let lossless = CompressOptions {
        encode: encode.clone(),
        ..CompressOptions::default()
    };
    check(&compress(&file(), &lossless).unwrap().0);
    for rebuild in [Rebuild::Zero, Rebuild::Linear, Rebuild::Dictionary] {
        let o = CompressOptions {
            encode: encode.clone(),
            sparsify: Some(SparsifyOptions {
                rebuild,
                ..SparsifyOptions::new(Budget::Sparsity(0.5))
            }),
            ..CompressOptions::default()
        };
        check(&compress(&file(), &o).unwrap().0);
    }
}
