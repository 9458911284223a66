//! Property tests: any dtype x shape (empty, 0-d, 1-D, odd sizes not a multiple of the
//! tile) x special values round-trips bit-exact through a whole stream.

use proptest::prelude::*;
use sparsewire_formats::{Dtype, Tensor, TensorFile};
use sparsewire_metadata::TileShape;
use sparsewire_pipeline::{compress, decompress, CompressOptions};
use sparsewire_stream::{EncodeOptions, Kernel, Reader};

const SPECIAL_F32: [u32; 8] = [
    0x7fc0_0000, // NaN
    0x7f80_0001, // signalling NaN with a payload
    0x7f80_0000, // +inf
    0xff80_0000, // -inf
    0x8000_0000, // -0.0
    0x0000_0001, // smallest subnormal
    0x807f_ffff, // largest negative subnormal
    0x3f80_0000, // 1.0
];

fn dtype() -> impl Strategy<Value = Dtype> {
    prop_oneof![
        Just(Dtype::F32),
        Just(Dtype::BF16),
        Just(Dtype::F16),
        Just(Dtype::I64),
        Just(Dtype::U8),
        Just(Dtype::BOOL),
    ]
}

fn shape() -> impl Strategy<Value = Vec<u64>> {
    prop_oneof![
        Just(vec![]),
        Just(vec![0]),
        Just(vec![3, 0, 2]),
        (1u64..300).prop_map(|n| vec![n]),
        (1u64..40, 1u64..40).prop_map(|(a, b)| vec![a, b]),
        (1u64..6, 1u64..5, 1u64..4, 1u64..4).prop_map(|(a, b, c, d)| vec![a, b, c, d]),
    ]
}

fn values(dtype: Dtype, n: usize, seed: u64, special: bool) -> Vec<u8> {
    let mut s = seed | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let bytes = (dtype.bits() / 8) as usize;
    (0..n)
        .flat_map(|i| {
            let r = next();
            let v: u64 = match dtype {
                Dtype::F32 if special && i % 3 == 0 => SPECIAL_F32[(r % 8) as usize] as u64,
                Dtype::F32 => (((r % 2000) as f32 - 1000.0) * 1e-4).to_bits() as u64,
                Dtype::BF16 | Dtype::F16 if special && i % 3 == 0 => {
                    [0x7fc1u64, 0xfc00, 0x8000, 0x0001, 0x7c00][(r % 5) as usize]
                }
                Dtype::BF16 => ((((r % 2000) as f32 - 1000.0) * 1e-4).to_bits() >> 16) as u64,
                Dtype::BOOL => r & 1,
                _ => r,
            };
            v.to_le_bytes()[..bytes].to_vec()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn round_trips_bit_exact(
        tensors in proptest::collection::vec((dtype(), shape(), any::<u64>(), any::<bool>()), 1..4),
        tile in prop_oneof![Just(None), (1u64..9, 1u64..9).prop_map(|(r, c)| Some(TileShape { rows: r, cols: c }))],
        try_lz in any::<bool>(),
    ) {
        let file = TensorFile {
            tensors: tensors
                .iter()
                .enumerate()
                .map(|(i, (d, shape, seed, special))| {
                    let n: u64 = shape.iter().product();
                    Tensor::new(format!("t{i}"), *d, shape.clone(), values(*d, n as usize, *seed, *special)).unwrap()
                })
                .collect(),
            metadata: vec![("k".into(), "v".into())],
        };
        let encode = EncodeOptions { tile_shape: tile, try_lz, ..EncodeOptions::default() };
        let opts = CompressOptions { encode, ..CompressOptions::default() };
        let stream = compress(&file, &opts).unwrap().0;
        prop_assert_eq!(decompress(&stream).unwrap(), file.clone());
        // Every decode kernel the machine has, byte for byte.
        for kernel in Kernel::available_kernels() {
            let r = Reader::new(&stream[..]).unwrap().with_kernel(kernel);
            let back = r.decode_all().unwrap();
            for (t, x) in back.tensors.iter().zip(&file.tensors) {
                prop_assert!(t.data == x.data, "{} with {:?}", x.name, kernel);
            }
        }
    }
}
