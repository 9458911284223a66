//! Bodies of the cargo-fuzz targets in `fuzz/` that exercise this crate, here so that a
//! normal test replays the committed corpus and regressions on stable Rust. Each must
//! return without panicking for every input.

use crate::{
    encode, encode_sparse, DecodeLimits, EncodeOptions, Profile, RawTile, Reader, SparseTensor,
    END_MAGIC, PREAMBLE_BYTES, TRAILER_BYTES,
};
use sparsewire_formats::{Dtype, Tensor, TensorFile};
use sparsewire_metadata::{Criterion, Header, Pattern, Reconstruction, Sparsification, TileShape};
use sparsewire_sparse::{Mask, SparseTile};

/// Output cap while fuzzing: a stream may claim anything, decoding stays small.
pub const FUZZ_MAX_OUTPUT: u64 = 16 << 20;

fn limits() -> DecodeLimits {
    DecodeLimits {
        max_output_bytes: FUZZ_MAX_OUTPUT,
        max_memory_bytes: FUZZ_MAX_OUTPUT,
    }
}

/// Opens arbitrary bytes as a stream and decodes everything it claims.
pub fn open_stream(data: &[u8]) {
    if let Ok(r) = Reader::with_limits(data, limits()) {
        let _ = r.decode_all();
        for t in 0..r.header().tensors.len() {
            let _ = r.decode_tile(t, 0);
            let _ = r.tile_sparse(t, 0);
            let _ = r.raw_tile(t, 0);
        }
    }
}

/// Rebuilds a stream around its data section with an edited header: fresh header checksum
/// and trailer (what an attacker who rewrites the index can produce).
pub fn reseal(stream: &[u8], edit: impl FnOnce(&mut Header)) -> Option<Vec<u8>> {
    let r = Reader::new(stream).ok()?;
    let mut h = r.header().clone();
    let data = &stream[PREAMBLE_BYTES..PREAMBLE_BYTES + h.data_len as usize];
    edit(&mut h);
    let hbytes = h.to_postcard().ok()?;
    Some(assemble(&stream[..PREAMBLE_BYTES], data, &hbytes))
}

/// Preamble + data + header + trailer.
pub fn assemble(preamble: &[u8], data: &[u8], hbytes: &[u8]) -> Vec<u8> {
    let mut out = preamble.to_vec();
    out.extend_from_slice(data);
    out.extend_from_slice(hbytes);
    out.extend_from_slice(&(hbytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(hbytes).to_le_bytes());
    out.extend_from_slice(&END_MAGIC);
    debug_assert_eq!(TRAILER_BYTES, 24);
    out
}

/// XORs `noise` into the data section of `stream` and recomputes every tile checksum, so
/// the corrupt tiles reach the decoders.
pub fn corrupt_and_reseal(stream: &[u8], noise: &[u8]) -> Option<Vec<u8>> {
    let r = Reader::new(stream).ok()?;
    let data_len = r.header().data_len as usize;
    if data_len == 0 {
        return None;
    }
    let mut s = stream.to_vec();
    for (i, b) in noise.iter().enumerate() {
        s[PREAMBLE_BYTES + i % data_len] ^= b;
    }
    reseal(&s, |h| {
        for (t, m) in h.tensors.iter_mut().enumerate() {
            for (k, tile) in m.tiles.iter_mut().enumerate() {
                let at = PREAMBLE_BYTES + tile.offset as usize;
                tile.checksum = crate::tile_checksum(&s[at..at + tile.len as usize], t, k);
            }
        }
    })
}

fn weights(seed: u8) -> Vec<f32> {
    (0..300)
        .map(|i| ((i as f32 + seed as f32) * 0.37).sin() * 0.05)
        .collect()
}

/// A small dense and sparse stream from a seed: small tiles, every mask encoding likely.
pub fn sample_stream(seed: u8, profile: Profile) -> Vec<u8> {
    let w = weights(seed);
    let file = TensorFile {
        tensors: vec![
            Tensor::from_f32("w", vec![15, 20], &w),
            Tensor::from_f32("s", vec![15, 20], &w),
        ],
        metadata: vec![],
    };
    let opts = EncodeOptions {
        tile_shape: Some(TileShape { rows: 4, cols: 8 }),
        profile,
        ..EncodeOptions::default()
    };
    let pattern = if seed.is_multiple_of(2) {
        Pattern::Unstructured
    } else {
        Pattern::NM { n: 2, m: 4 }
    };
    let mask = match pattern {
        Pattern::NM { .. } => Mask::from_fn(300, |i| (i + seed as usize) % 4 < 2),
        _ => Mask::from_fn(300, |i| w[i].abs() > 0.02 + (seed % 5) as f32 * 0.005),
    };
    let tile = SparseTile::from_dense(
        15,
        20,
        Dtype::F32,
        &w.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>(),
        mask,
    )
    .expect("shapes agree");
    let sparse = SparseTensor {
        tile,
        info: Sparsification::new(Criterion::Magnitude, pattern, 0.5),
        reconstruction: Reconstruction::Zero,
    };
    encode_sparse(&file, &[None, Some(sparse)], &opts).expect("valid input encodes")
}

/// A valid stream (dense and sparse tensors) from the first byte, the rest of the input
/// XORed into its data section with the checksums forged: corrupt tiles must give errors.
pub fn decode_corrupt_tile(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let stream = sample_stream(seed, Profile::Small);
    let Some(forged) = corrupt_and_reseal(&stream, rest) else {
        return;
    };
    if let Ok(r) = Reader::with_limits(&forged[..], limits()) {
        for t in 0..r.header().tensors.len() {
            for k in 0..r.header().tensors[t].tiles.len() {
                let _ = r.decode_tile(t, k);
                let _ = r.tile_sparse(t, k);
            }
        }
    }
}

/// A fast-profile stream with its data corrupted and checksums forged, read through
/// [`Reader::raw_tile`]: every view it lends must be safe to read, and the kept count
/// checked where it is claimed.
pub fn raw_tile(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let stream = sample_stream(seed, Profile::Fast);
    let Some(forged) = corrupt_and_reseal(&stream, rest) else {
        return;
    };
    if let Ok(r) = Reader::with_limits(&forged[..], limits()) {
        for t in 0..r.header().tensors.len() {
            for k in 0..r.header().tensors[t].tiles.len() {
                match r.raw_tile(t, k) {
                    Ok(Some(RawTile::Sparse(tile))) => {
                        if let Ok(tile) = tile.counted() {
                            let _ = tile.to_dense();
                        }
                    }
                    Ok(Some(RawTile::Dense(_))) | Ok(None) | Err(_) => {}
                }
                let _ = r.decode_tile(t, k);
            }
        }
    }
}

/// Arbitrary bytes as f32, bf16 and f16 values must round-trip bit-exact.
pub fn round_trip(data: &[u8]) {
    for (dtype, size) in [(Dtype::F32, 4), (Dtype::BF16, 2), (Dtype::F16, 2)] {
        let n = data.len() / size;
        let t = Tensor::new("x", dtype, vec![n as u64], data[..n * size].to_vec()).expect("shape");
        let file = TensorFile {
            tensors: vec![t],
            metadata: vec![],
        };
        let stream = encode(&file, &EncodeOptions::default()).expect("encodes");
        let back = Reader::new(&stream[..])
            .and_then(|r| r.decode_all())
            .expect("decodes");
        assert_eq!(back, file);
    }
}
