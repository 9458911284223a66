//! A stream of a few hundred bytes that claims one 2 GiB tile: `inspect` answers at once
//! (it reads only the header), `decompress` refuses it under `--max-memory` before
//! allocating, naming the tensor, the claim and the flag.

use sparsewire_formats::{Tensor, TensorFile};
use sparsewire_metadata::TileShape;
use sparsewire_stream::{encode, fuzzing::reseal, EncodeOptions};
use std::process::Command;
use std::time::Instant;

/// One constant F32 tensor, then its header edited to claim 2^29 values in one tile.
fn claim_2_gib() -> Vec<u8> {
    let file = TensorFile {
        tensors: vec![Tensor::from_f32("huge", vec![1, 1024], &[0.5; 1024])],
        metadata: vec![],
    };
    let small = encode(&file, &EncodeOptions::default()).unwrap();
    reseal(&small, |h| {
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
fn a_2_gib_claim_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let stream = claim_2_gib();
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
