//! A stream of a few hundred bytes that claims one 2 GiB tile: `inspect` answers at once
//! (it reads only the header); a dense tile streams to the output in a few MiB; a sparse
//! one (its mask and values are held to rebuild it) is refused under `--max-memory` before
//! allocating, naming the tensor, the claim and the flag.

use sparsewire_formats::{Tensor, TensorFile};
use sparsewire_metadata::TileShape;
use sparsewire_metadata::{Criterion, Dtype, Pattern, Reconstruction, Sparsification};
use sparsewire_sparse::{Mask, SparseTile};
use sparsewire_stream::{encode, encode_sparse, fuzzing::reseal, EncodeOptions, SparseTensor};
use std::process::Command;
use std::time::Instant;

/// One constant F32 tensor, then its header edited to claim 2^29 values in one tile.
fn claim_2_gib() -> Vec<u8> {
    let file = TensorFile {
        tensors: vec![Tensor::from_f32("huge", vec![1, 1024], &[0.5; 1024])],
        metadata: vec![],
    };
    let small = encode(&file, &EncodeOptions::default()).unwrap();
    claim(&small)
}

/// The same claim on a sparse tensor (half its values kept).
fn claim_2_gib_sparse() -> Vec<u8> {
    let file = TensorFile {
        tensors: vec![Tensor::from_f32("huge", vec![1, 1024], &[0.5; 1024])],
        metadata: vec![],
    };
    let data = file.tensors[0].data.clone();
    let tile = SparseTile::from_dense(
        1,
        1024,
        Dtype::F32,
        &data,
        Mask::from_fn(1024, |i| i % 2 == 0),
    )
    .unwrap();
    let sparse = SparseTensor {
        tile,
        info: Sparsification::new(Criterion::Magnitude, Pattern::Unstructured, 0.5),
        reconstruction: Reconstruction::Zero,
    };
    let small = encode_sparse(&file, &[Some(sparse)], &EncodeOptions::default()).unwrap();
    claim(&small)
}

fn claim(small: &[u8]) -> Vec<u8> {
    reseal(small, |h| {
        let t = &mut h.tensors[0];
        t.shape = vec![1, 1 << 29];
        t.tile_shape = TileShape {
            rows: 1,
            cols: 1 << 29,
        };
    })
    .expect("the small stream reseals")
}

#[test]
fn a_2_gib_sparse_claim_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let stream = claim_2_gib_sparse();
    assert!(stream.len() < 1024, "{} bytes", stream.len());
    let p = dir.path().join("claim.swire");
    std::fs::write(&p, &stream).unwrap();
    let bin = env!("CARGO_BIN_EXE_sparsewire");

    let t0 = Instant::now();
    let out = Command::new(bin).arg("inspect").arg(&p).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("huge"));
    assert!(
        t0.elapsed().as_secs_f64() < 5.0,
        "inspect decoded something"
    );

    let out = Command::new(bin)
        .arg("decompress")
        .arg(&p)
        .arg("-o")
        .arg(dir.path().join("x.safetensors"))
        .args(["--max-memory", "67108864"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("\"huge\"") && e.contains("2147483648") && e.contains("--max-memory"),
        "{e}"
    );
    assert!(
        !dir.path().join("x.safetensors").exists(),
        "nothing written"
    );
}

/// Within the budget, the same claim streams to the output: peak memory stays a few MiB
/// whatever the tile's size (a character device as output: nothing lands on disk).
#[test]
fn a_2_gib_single_tile_decodes_in_bounded_memory() {
    if !std::path::Path::new("/dev/null").exists() || !cfg!(target_os = "linux") {
        eprintln!("SKIPPED: needs /dev/null and /proc/self/status");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("claim.swire");
    std::fs::write(&p, claim_2_gib()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sparsewire"))
        .arg("decompress")
        .arg(&p)
        .args(["-o", "/dev/null", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["output_bytes"], 2147483648u64);
    let peak = j["peak_memory_bytes"].as_u64().unwrap();
    eprintln!("peak memory decoding a 2 GiB tile: {peak} bytes");
    assert!(peak < 64 << 20, "peak {peak} bytes");
}
