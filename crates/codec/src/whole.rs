//! Whole-tile byte codecs (raw, zstd) for non-float tensors and for float tiles where the
//! plane codec loses.

use crate::planes::expect_len;
use crate::{CodecError, EncodedStream, Plane, StreamCodec, StreamEntry, ValueCodec};

/// Codes a whole tile with a byte codec (`Raw` or `Zstd` at `zstd_level`).
pub fn encode_whole(
    codec: ValueCodec,
    bytes: &[u8],
    zstd_level: i32,
) -> Result<EncodedStream, CodecError> {
    let (codec, data) = match codec {
        ValueCodec::Zstd => (StreamCodec::Zstd, zstd_compress(bytes, zstd_level)?),
        _ => (StreamCodec::Raw, bytes.to_vec()),
    };
    Ok(EncodedStream {
        plane: Plane::Whole,
        codec,
        bytes: data,
    })
}

thread_local! {
    /// This thread's zstd compressor and its level, reused: a fresh context per call (the
    /// writer's zstd trial runs once per tensor) cost more than compressing a small tensor.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// `bytes` as one zstd frame at `level`, through this thread's compressor (the same frame
/// `zstd::bulk::compress` writes).
fn zstd_compress(bytes: &[u8], level: i32) -> Result<Vec<u8>, CodecError> {
    let err = |e: std::io::Error| CodecError::Zstd {
        reason: e.to_string(),
    };
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(l, _)| *l != level) {
            *c = Some((level, zstd::bulk::Compressor::new(level).map_err(err)?));
        }
        let (_, z) = c.as_mut().expect("set above");
        z.compress(bytes).map_err(err)
    })
}

/// Decodes a whole-tile stream into `out`, which has the tile's exact decoded size; zstd is
/// never allowed to produce more.
pub fn decode_whole(
    entries: &[StreamEntry],
    data: &[u8],
    out: &mut [u8],
) -> Result<(), CodecError> {
    let [e] = entries else {
        return Err(CodecError::StreamLayout {
            reason: format!("a whole-tile tile has one stream, found {}", entries.len()),
        });
    };
    if e.plane != Plane::Whole || e.len != data.len() as u64 {
        return Err(CodecError::StreamLayout {
            reason: "whole-tile stream entry does not match the tile".into(),
        });
    }
    match e.codec {
        StreamCodec::Raw => {
            expect_len(Plane::Whole, data, out.len())?;
            out.copy_from_slice(data);
        }
        StreamCodec::Zstd => {
            let got =
                zstd::bulk::decompress_to_buffer(data, out).map_err(|e| CodecError::Zstd {
                    reason: e.to_string(),
                })?;
            if got != out.len() {
                return Err(CodecError::Corrupt {
                    reason: "zstd frame decodes to the wrong size",
                });
            }
        }
        codec => {
            return Err(CodecError::CodecNotAllowed {
                plane: Plane::Whole,
                codec,
            })
        }
    }
    Ok(())
}
