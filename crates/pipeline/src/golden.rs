//! The golden cases: small, deterministic tensor files whose `.swire` encodings are
//! committed under `crates/pipeline/tests/golden/`. The golden test decodes each committed
//! file and compares it with the case, and re-encodes the case and compares the bytes, so
//! neither the decoder nor the format can change unnoticed. `cargo xtask golden` runs the
//! same check; `cargo xtask golden --bless` rewrites the files after a deliberate change.

use crate::{EncodeOptions, Tensor, TensorFile};
use sparsewire_formats::Dtype;
use sparsewire_metadata::TileShape;

/// One golden case: its file stem, tensors and encoder options.
pub struct GoldenCase {
    pub name: &'static str,
    pub file: TensorFile,
    pub options: EncodeOptions,
}

fn bf16(v: f32) -> [u8; 2] {
    half::bf16::from_f32(v).to_le_bytes()
}

/// Every golden case.
pub fn cases() -> Vec<GoldenCase> {
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
    let mixed = TensorFile {
        tensors: vec![
            Tensor::new(
                "layer.weight",
                Dtype::BF16,
                vec![16, 24],
                weights.iter().flat_map(|&v| bf16(v)).collect(),
            )
            .expect("shape"),
            Tensor::new("specials", Dtype::F32, vec![4, 8], specials_bytes).expect("shape"),
            Tensor::new(
                "half",
                Dtype::F16,
                vec![10],
                (0..10u16)
                    .flat_map(|i| (0x3c00 + i * 37).to_le_bytes())
                    .collect(),
            )
            .expect("shape"),
            Tensor::new(
                "ids",
                Dtype::I64,
                vec![5],
                (0..5i64).flat_map(|i| (i * 1000).to_le_bytes()).collect(),
            )
            .expect("shape"),
            Tensor::new("empty", Dtype::F32, vec![0, 3], vec![]).expect("shape"),
            Tensor::new("scalar", Dtype::BF16, vec![], bf16(-2.5).to_vec()).expect("shape"),
        ],
        metadata: vec![("golden".into(), "mixed".into())],
    };
    // A DFT basis: exactly the kind of structured tensor where the LZ pass should win.
    let n = 64;
    let dft: Vec<f32> = (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            ((2.0 * std::f64::consts::PI * (i * j % n) as f64 / n as f64).cos()) as f32
        })
        .collect();
    let structured = TensorFile {
        tensors: vec![Tensor::from_f32("dft.cos", vec![n as u64, n as u64], &dft)],
        metadata: vec![],
    };
    vec![
        GoldenCase {
            name: "mixed_small_tiles",
            file: mixed,
            options: EncodeOptions {
                tile_shape: Some(TileShape { rows: 5, cols: 7 }),
                ..EncodeOptions::default()
            },
        },
        GoldenCase {
            name: "dft_basis",
            file: structured,
            options: EncodeOptions {
                tile_shape: Some(TileShape { rows: 16, cols: 64 }),
                ..EncodeOptions::default()
            },
        },
        GoldenCase {
            name: "weights_default_tiles",
            file: demo_slices(),
            options: EncodeOptions::default(),
        },
    ]
}

/// The first rows of two demo weights (bf16 and f32), with the default tiling.
fn demo_slices() -> TensorFile {
    let demo = crate::demo::tensors();
    let slice = |t: &Tensor, rows: u64| {
        let row_bytes = (t.data.len() as u64 / t.shape[0]) as usize;
        Tensor::new(
            t.name.clone(),
            t.dtype,
            vec![rows, t.shape[1]],
            t.data[..rows as usize * row_bytes].to_vec(),
        )
        .expect("rows of a matrix")
    };
    TensorFile {
        tensors: vec![slice(&demo.tensors[0], 40), slice(&demo.tensors[1], 12)],
        metadata: vec![],
    }
}

/// Checks every case against the files in `dir` (or rewrites them with `bless`).
/// Returns one line per case.
pub fn check(dir: &std::path::Path, bless: bool) -> Result<Vec<String>, String> {
    let mut report = Vec::new();
    for case in cases() {
        let path = dir.join(format!("{}.swire", case.name));
        let encoded = crate::compress(&case.file, &case.options).map_err(|e| e.to_string())?;
        if bless {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            std::fs::write(&path, &encoded).map_err(|e| format!("{}: {e}", path.display()))?;
            report.push(format!(
                "blessed {} ({} bytes)",
                path.display(),
                encoded.len()
            ));
            continue;
        }
        let committed = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let decoded =
            crate::decompress(&committed).map_err(|e| format!("{}: {e}", path.display()))?;
        if decoded != case.file {
            return Err(format!("{}: decodes to different tensors", path.display()));
        }
        if encoded != committed {
            return Err(format!(
                "{}: the encoder now writes different bytes ({} vs {}); if the format change is deliberate, bump FORMAT_VERSION as needed and run `cargo xtask golden --bless`",
                path.display(),
                encoded.len(),
                committed.len()
            ));
        }
        report.push(format!("ok {} ({} bytes)", path.display(), committed.len()));
    }
    Ok(report)
}
