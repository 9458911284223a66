//! Bodies of the cargo-fuzz targets in `fuzz/`, here so that a normal test replays the
//! committed corpus and regression files on stable Rust (CI has no nightly). Each must
//! return without panicking for every input.

use crate::{DecodeLimits, Reader, Tensor, TensorFile};

/// Output cap while fuzzing: a stream may claim anything, decoding stays small.
const FUZZ_MAX_OUTPUT: u64 = 16 << 20;

/// Opens arbitrary bytes as a stream and decodes everything it claims.
pub fn open_stream(data: &[u8]) {
    let limits = DecodeLimits {
        max_output_bytes: FUZZ_MAX_OUTPUT,
    };
    if let Ok(r) = Reader::with_limits(data, limits) {
        let _ = r.decode_all();
        for t in 0..r.header().tensors.len() {
            let _ = r.decode_tile(t, 0);
        }
    }
}

/// A valid stream built from the first bytes, then the rest of the input XORed into its
/// data section (past the header), decoded tile by tile: corrupt tiles must give errors.
pub fn decode_corrupt_tile(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let values: Vec<f32> = (0..300)
        .map(|i| ((i as f32 + seed as f32) * 0.37).sin() * 0.05)
        .collect();
    let file = TensorFile {
        tensors: vec![Tensor::from_f32("w", vec![15, 20], &values)],
        metadata: vec![],
    };
    let opts = crate::EncodeOptions {
        tile_shape: Some(crate::metadata::TileShape { rows: 4, cols: 8 }),
        ..crate::EncodeOptions::default()
    };
    let mut stream = crate::compress(&file, &opts).expect("valid input encodes");
    let start = stream.len() - Reader::new(&stream[..]).expect("valid").header().data_len as usize;
    for (i, b) in rest.iter().enumerate() {
        let n = stream.len() - start;
        stream[start + i % n] ^= b;
    }
    // Checksums would catch the change first; decode the tiles without them as well by
    // re-encoding the checksum of every tile (what an attacker could do).
    let Ok(r) = Reader::new(&stream[..]) else {
        return;
    };
    let _ = r.decode_all();
    let mut h = r.header().clone();
    for (k, t) in h.tensors[0].tiles.iter_mut().enumerate() {
        let s = start + t.offset as usize;
        t.checksum = sparsewire_stream::tile_checksum(&stream[s..s + t.len as usize], 0, k);
    }
    let Ok(hbytes) = h.to_postcard() else { return };
    let mut forged = stream[..8].to_vec();
    forged.extend_from_slice(&stream[8..16]);
    forged.extend_from_slice(&(hbytes.len() as u64).to_le_bytes());
    forged.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&hbytes).to_le_bytes());
    forged.extend_from_slice(&hbytes);
    forged.resize(
        sparsewire_stream::data_start(hbytes.len() as u64).unwrap_or(0) as usize,
        0,
    );
    forged.extend_from_slice(&stream[start..]);
    if let Ok(r) = Reader::new(&forged[..]) {
        for k in 0..r.header().tensors[0].tiles.len() {
            let _ = r.decode_tile(0, k);
        }
    }
}

/// Arbitrary bytes as f32, bf16 and f16 values must round-trip bit-exact.
pub fn round_trip(data: &[u8]) {
    for (dtype, size) in [
        (crate::Dtype::F32, 4),
        (crate::Dtype::BF16, 2),
        (crate::Dtype::F16, 2),
    ] {
        let n = data.len() / size;
        let t = Tensor::new("x", dtype, vec![n as u64], data[..n * size].to_vec()).expect("shape");
        let file = TensorFile {
            tensors: vec![t],
            metadata: vec![],
        };
        let stream = crate::compress(&file, &crate::EncodeOptions::default()).expect("encodes");
        assert_eq!(crate::decompress(&stream).expect("decodes"), file);
    }
}
