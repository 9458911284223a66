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

/// A stream of large tiles, BF16 or F32 (16 Ki values each: 32-lane rANS heads, so the SIMD
/// rounds, the fused BF16 rounds and the wide-table rounds all run), one tensor bell-shaped
/// (a compact head table) and one spread over every exponent (a wide table).
fn large_stream(bf16: bool) -> Vec<u8> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let n = 128 * 128;
    let bell: Vec<f32> = (0..n)
        .map(|_| (0..4).map(|_| (next() % 1000) as f32 - 500.0).sum::<f32>() * 1e-4)
        .collect();
    let spread: Vec<f32> = (0..n)
        .map(|_| f32::from_bits(next() as u32 & 0xbfff_ffff))
        .collect();
    let tensor = |name: &str, v: &[f32]| {
        let t = Tensor::from_f32(name, vec![128, 128], v);
        if bf16 {
            let data = t.data.chunks_exact(4).flat_map(|c| [c[2], c[3]]).collect();
            Tensor::new(name, Dtype::BF16, vec![128, 128], data).expect("bf16 bytes")
        } else {
            t
        }
    };
    let file = TensorFile {
        tensors: vec![tensor("bell", &bell), tensor("spread", &spread)],
        metadata: vec![],
    };
    crate::encode(&file, &EncodeOptions::default()).expect("encodes")
}

/// `large_stream()` corrupted at a fuzzer-chosen offset (first byte: BF16 or F32; next four:
/// the offset into the data section; the rest: XORed in there) with the checksums forged,
/// decoded with every kernel the CPU has: none may panic, and where all succeed they must
/// give the same bytes.
pub fn decode_large_tiles(data: &[u8]) {
    static STREAMS: std::sync::OnceLock<[Vec<u8>; 2]> = std::sync::OnceLock::new();
    let streams = STREAMS.get_or_init(|| [large_stream(true), large_stream(false)]);
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Some((offset, noise)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let stream = &streams[which as usize % 2];
    let data_len = stream.len() - PREAMBLE_BYTES;
    let mut shifted = vec![0u8; u32::from_le_bytes(*offset) as usize % data_len];
    shifted.extend_from_slice(noise);
    let Some(forged) = corrupt_and_reseal(stream, &shifted) else {
        return;
    };
    let mut first: Option<Vec<Vec<u8>>> = None;
    for kernel in crate::Kernel::available_kernels() {
        let Ok(r) = Reader::with_limits(&forged[..], limits()) else {
            return;
        };
        let r = r.with_kernel(kernel);
        let out: Result<Vec<Vec<u8>>, _> = (0..r.header().tensors.len())
            .map(|t| r.decode_tile(t, 0))
            .collect();
        match (out, &first) {
            (Ok(o), None) => first = Some(o),
            (Ok(o), Some(f)) => assert!(&o == f, "{kernel:?} decodes a corrupt tile differently"),
            (Err(_), _) => return,
        }
    }
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
