//! Golden streams: small, deterministic cases whose `.swire` encodings are committed under
//! `tests/golden/`. Each committed file must decode (zero-filled, and rebuilt) to what its
//! case says, and encoding the case again must give the committed bytes, so neither the
//! decoder nor the format can change unnoticed. After a deliberate format change:
//! `cargo xtask golden --bless` (this test with SPARSEWIRE_BLESS=1) rewrites them.
//!
//! Cases cover lossless float and integer tensors, zstd, the default tiling, every mask
//! encoding (bitmask, run-length, delta indices, N:M codes), the fast profile, and every
//! reconstruction method with stored parameters (linear, learned, dictionary, spatial,
//! channels).

use sparsewire_formats::{builtin, Dtype, Tensor, TensorFile};
use sparsewire_metadata::{
    ChannelCombination, Criterion, MaskEncoding, Pattern, Plane, Reconstruction, Sparsification,
    TileShape,
};
use sparsewire_sparse::{Mask, SparseTensor, SparseTile};
use sparsewire_stream::{encode_sparse, EncodeOptions, Profile, Reader};
use std::path::Path;

struct Case {
    name: &'static str,
    file: TensorFile,
    sparse: Vec<Option<SparseTensor>>,
    options: EncodeOptions,
}

fn bf16(v: f32) -> [u8; 2] {
    half::bf16::from_f32(v).to_le_bytes()
}

fn tiles(rows: u64, cols: u64) -> EncodeOptions {
    EncodeOptions {
        tile_shape: Some(TileShape { rows, cols }),
        ..EncodeOptions::default()
    }
}

fn lossless_cases() -> Vec<Case> {
    let weights: Vec<f32> = (0..16 * 24)
        .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.1)
        .collect();
    let mut specials: Vec<f32> = vec![
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        0.0,
        1e-45,
        -1e-40,
        f32::MAX,
    ];
    specials.extend((0..24).map(|i| i as f32 * 0.25));
    let mut specials_bytes: Vec<u8> = specials.iter().flat_map(|v| v.to_le_bytes()).collect();
    specials_bytes[0..4].copy_from_slice(&0x7fc0_1234u32.to_le_bytes()); // NaN payload
    let t = |name: &str, dtype, shape: Vec<u64>, data: Vec<u8>| {
        Tensor::new(name, dtype, shape, data).expect("shape")
    };
    let mixed = TensorFile {
        tensors: vec![
            t(
                "layer.weight",
                Dtype::BF16,
                vec![16, 24],
                weights.iter().flat_map(|&v| bf16(v)).collect(),
            ),
            t("specials", Dtype::F32, vec![4, 8], specials_bytes),
            t(
                "half",
                Dtype::F16,
                vec![10],
                (0..10u16)
                    .flat_map(|i| (0x3c00 + i * 37).to_le_bytes())
                    .collect(),
            ),
            t(
                "ids",
                Dtype::I64,
                vec![5],
                (0..5i64).flat_map(|i| (i * 1000).to_le_bytes()).collect(),
            ),
            t("empty", Dtype::F32, vec![0, 3], vec![]),
            t("scalar", Dtype::BF16, vec![], bf16(-2.5).to_vec()),
        ],
        metadata: vec![("golden".into(), "mixed".into())],
    };
    // A DFT basis: exactly the kind of structured tensor where the zstd trial wins.
    let n = 64;
    let dft: Vec<f32> = (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            ((2.0 * std::f64::consts::PI * (i * j % n) as f64 / n as f64).cos()) as f32
        })
        .collect();
    let demo = builtin::tensors();
    let slice = |t: &Tensor, rows: u64| {
        let row_bytes = (t.data.len() as u64 / t.shape[0]) as usize;
        let data = t.data[..rows as usize * row_bytes].to_vec();
        Tensor::new(t.name.clone(), t.dtype, vec![rows, t.shape[1]], data).expect("rows")
    };
    let lossless = |name, file: TensorFile, options| Case {
        name,
        sparse: vec![None; file.tensors.len()],
        file,
        options,
    };
    vec![
        lossless("mixed_small_tiles", mixed, tiles(5, 7)),
        lossless(
            "dft_basis",
            TensorFile {
                tensors: vec![Tensor::from_f32("dft.cos", vec![n as u64, n as u64], &dft)],
                metadata: vec![],
            },
            tiles(16, 64),
        ),
        lossless(
            "weights_default_tiles",
            TensorFile {
                tensors: vec![slice(&demo.tensors[0], 40), slice(&demo.tensors[1], 12)],
                metadata: vec![],
            },
            EncodeOptions::default(),
        ),
    ]
}

fn info(pattern: Pattern, sparsity: f32) -> Sparsification {
    Sparsification {
        rel_error: 0.25,
        ..Sparsification::new(Criterion::Magnitude, pattern, sparsity)
    }
}

/// A tensor whose kept elements are `keep`, with `reconstruction`.
fn sparse(
    t: &Tensor,
    keep: impl FnMut(usize) -> bool,
    pattern: Pattern,
    reconstruction: Reconstruction,
) -> SparseTensor {
    let n = t.numel() as usize;
    let cols = n / t.shape[0] as usize;
    let mask = Mask::from_fn(n, keep);
    let sparsity = 1.0 - mask.density() as f32;
    SparseTensor {
        tile: SparseTile::from_dense(n / cols, cols, t.dtype, &t.data, mask).expect("shapes"),
        info: info(pattern, sparsity),
        reconstruction,
    }
}

fn sparse_cases() -> Vec<Case> {
    let w: Vec<f32> = (0..24 * 32)
        .map(|i| ((i as f32) * 0.37).sin() * 0.05 + 0.001)
        .collect();
    let t = |name: &str| Tensor::from_f32(name, vec![24, 32], &w);
    let conv: Vec<f32> = (0..4 * 2 * 9).map(|i| ((i as f32) * 0.7).cos()).collect();
    let conv = Tensor::from_f32("conv", vec![4, 2, 3, 3], &conv);
    let names = ["bitmask", "delta", "runs"];
    let file = TensorFile {
        tensors: names.iter().map(|n| t(n)).collect(),
        metadata: vec![],
    };
    let masks = vec![
        Some(sparse(
            &file.tensors[0],
            |i| w[i].abs() > 0.03,
            Pattern::Unstructured,
            Reconstruction::Zero,
        )),
        Some(sparse(
            &file.tensors[1],
            |i| i % 61 == 0,
            Pattern::Unstructured,
            Reconstruction::Zero,
        )),
        Some(sparse(
            &file.tensors[2],
            |i| (i / 32) % 3 != 0,
            Pattern::Channel,
            Reconstruction::Zero,
        )),
    ];
    let methods = TensorFile {
        tensors: vec![
            t("linear"),
            t("learned"),
            t("dictionary"),
            t("channels"),
            conv.clone(),
        ],
        metadata: vec![("golden".into(), "methods".into())],
    };
    let keep = |i: usize| w[i % w.len()].abs() > 0.02;
    let rebuilt = vec![
        Some(sparse(
            &methods.tensors[0],
            keep,
            Pattern::Unstructured,
            Reconstruction::Linear,
        )),
        Some(sparse(
            &methods.tensors[1],
            keep,
            Pattern::Unstructured,
            Reconstruction::Learned {
                params: vec![0.5, 0.25, 0.125, -0.001],
            },
        )),
        Some(sparse(
            &methods.tensors[2],
            keep,
            Pattern::Unstructured,
            Reconstruction::Dictionary {
                entry_len: 32,
                entries: (0..32).map(|i| i as f32 * -0.001).collect(),
            },
        )),
        Some(sparse(
            &methods.tensors[3],
            |i| i / 32 != 5,
            Pattern::Channel,
            Reconstruction::Channels {
                combinations: vec![ChannelCombination {
                    row: 5,
                    sources: vec![0, 7],
                    coefs: vec![0.5, -0.25],
                }],
            },
        )),
        Some(sparse(
            &conv,
            |i| i % 9 != 4,
            Pattern::Unstructured,
            Reconstruction::Spatial { kh: 3, kw: 3 },
        )),
    ];
    // N:M codes win where the mask is one tile (no model shared with other tiles).
    let nm_file = TensorFile {
        tensors: vec![t("nm")],
        metadata: vec![],
    };
    let nm_masks = vec![Some(sparse(
        &nm_file.tensors[0],
        // One of the six 2:4 kept sets per group, varied: N:M codes beat the bitmask.
        |i| {
            let sets = [0b0011u32, 0b0101, 0b0110, 0b1001, 0b1010, 0b1100];
            let g = (i / 4) as u64;
            let h = g.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            sets[(h % 6) as usize] >> (i % 4) & 1 == 1
        },
        Pattern::NM { n: 2, m: 4 },
        Reconstruction::Zero,
    ))];
    let fast = EncodeOptions {
        profile: Profile::Fast,
        ..tiles(5, 32)
    };
    let mut fast_file = file.clone();
    fast_file
        .tensors
        .push(Tensor::from_f32("dense", vec![3, 5], &[0.5; 15]));
    let mut fast_masks = masks.clone();
    fast_masks.push(None);
    vec![
        Case {
            name: "sparse_every_mask_encoding",
            file,
            sparse: masks,
            options: tiles(6, 32),
        },
        Case {
            name: "sparse_nm_codes",
            file: nm_file,
            sparse: nm_masks,
            options: EncodeOptions::default(),
        },
        Case {
            name: "sparse_fast_profile",
            file: fast_file,
            sparse: fast_masks,
            options: fast,
        },
        Case {
            name: "sparse_rebuild_methods",
            file: methods,
            sparse: rebuilt,
            options: tiles(8, 32),
        },
    ]
}

/// The case's tensors as the reader zero-fills them: kept values, zero elsewhere.
fn zero_filled(c: &Case) -> TensorFile {
    let mut f = c.file.clone();
    for (t, s) in f.tensors.iter_mut().zip(&c.sparse) {
        if let Some(s) = s {
            t.data = s.tile.to_dense();
        }
    }
    f
}

#[test]
fn golden_streams_are_stable() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let bless = std::env::var_os("SPARSEWIRE_BLESS").is_some();
    let cases: Vec<Case> = lossless_cases().into_iter().chain(sparse_cases()).collect();
    let mut encodings = std::collections::HashSet::new();
    for c in &cases {
        let path = dir.join(format!("{}.swire", c.name));
        let encoded = encode_sparse(&c.file, &c.sparse, &c.options).unwrap();
        if bless {
            std::fs::write(&path, &encoded).unwrap();
            eprintln!("blessed {} ({} bytes)", path.display(), encoded.len());
            continue;
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (run `cargo xtask golden --bless`)", path.display())
        });
        let r = Reader::new(&committed[..]).unwrap();
        assert_eq!(r.decode_all().unwrap(), zero_filled(c), "{}", c.name);
        // Rebuilt as decompress rebuilds it, the same from the committed and the new bytes.
        let rebuilt = sparsewire_pipeline::decompress(&committed).unwrap();
        assert_eq!(
            rebuilt,
            sparsewire_pipeline::decompress(&encoded).unwrap(),
            "{}",
            c.name
        );
        for (m, s) in r.header().tensors.iter().zip(&c.sparse) {
            if let Some(s) = s {
                assert_eq!(m.reconstruction, s.reconstruction, "{}", m.name);
            }
            for st in m.tiles.iter().flat_map(|t| &t.streams) {
                if let Plane::Mask(e) = st.plane {
                    encodings.insert(format!("{e}"));
                }
            }
        }
        assert!(
            encoded == committed,
            "{}: the encoder now writes different bytes ({} vs {}); if the format change is deliberate, bump FORMAT_VERSION as needed and run `cargo xtask golden --bless`",
            path.display(),
            encoded.len(),
            committed.len()
        );
    }
    if !bless {
        for e in [
            MaskEncoding::Bitmask,
            MaskEncoding::RunLength,
            MaskEncoding::DeltaIndices,
            MaskEncoding::NMCodes,
        ] {
            assert!(
                encodings.contains(&e.to_string()),
                "no golden tile uses {e}"
            );
        }
    }
}
