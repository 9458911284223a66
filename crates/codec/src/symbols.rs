//! Self-contained symbol streams (masks use them): a count, then constant, raw or rANS
//! with the stream's own model.

use crate::models::histogram;
use crate::planes::{code_symbols, expect_len};
use crate::rans::{self, Model};
use crate::{CodecError, EncodedStream, Plane, StreamCodec, StreamEntry, TensorDecoder};

/// Codes a stream of `symbols` (each below `alphabet`, at most [`rans::MAX_ALPHABET`]) for
/// `plane`: a varint symbol count, then the symbols as the smallest of constant, raw (one
/// byte each for alphabets up to 256, else two) and rANS with a model of their own. Masks
/// use this.
pub fn encode_symbol_stream(
    plane: Plane,
    symbols: &[u16],
    alphabet: usize,
    shared: Option<(&Model, u16)>,
) -> Result<EncodedStream, CodecError> {
    assert!(alphabet <= rans::MAX_ALPHABET, "alphabet over the cap");
    let hist = histogram(symbols, alphabet);
    let wide = alphabet > 256;
    let (model, id) = match shared {
        Some((m, id)) => (Some(m), id),
        None => (None, 0),
    };
    let mut s = code_symbols(plane, symbols, &hist, model, id, |out| {
        for &v in symbols {
            if wide {
                out.extend_from_slice(&v.to_le_bytes());
            } else {
                out.push(v as u8);
            }
        }
    })?;
    let mut bytes = Vec::with_capacity(s.bytes.len() + 5);
    rans::put_varint(&mut bytes, symbols.len() as u64);
    bytes.extend_from_slice(&s.bytes);
    s.bytes = bytes;
    Ok(s)
}

/// Decodes a stream written by [`encode_symbol_stream`]. `max_symbols` bounds the count
/// the stream may claim (the caller knows what its tile can hold); `decoder` resolves a
/// shared model.
pub fn decode_symbol_stream(
    e: &StreamEntry,
    data: &[u8],
    alphabet: usize,
    max_symbols: usize,
    decoder: &TensorDecoder,
) -> Result<Vec<u16>, CodecError> {
    let mut pos = 0;
    let n = rans::get_varint(data, &mut pos).ok_or(CodecError::Corrupt {
        reason: "symbol count truncated",
    })?;
    if n > max_symbols as u64 {
        return Err(CodecError::Corrupt {
            reason: "symbol stream claims more symbols than its tile can hold",
        });
    }
    let n = n as usize;
    let s = &data[pos..];
    let check = |v: u16| -> Result<u16, CodecError> {
        if (v as usize) < alphabet.max(1) {
            Ok(v)
        } else {
            Err(CodecError::Corrupt {
                reason: "symbol outside its alphabet",
            })
        }
    };
    match e.codec {
        StreamCodec::Constant { symbol } => {
            if !s.is_empty() {
                return Err(CodecError::StreamLength {
                    plane: e.plane,
                    expected: 0,
                    got: s.len() as u64,
                });
            }
            Ok(vec![check(symbol)?; n])
        }
        StreamCodec::Raw if alphabet > 256 => {
            expect_len(e.plane, s, 2 * n)?;
            s.chunks_exact(2)
                .map(|c| check(u16::from_le_bytes([c[0], c[1]])))
                .collect()
        }
        StreamCodec::Raw => {
            expect_len(e.plane, s, n)?;
            s.iter().map(|&b| check(b as u16)).collect()
        }
        StreamCodec::RansShared { model } => {
            let table = decoder.table(model)?;
            if table.alphabet() > alphabet {
                return Err(CodecError::BadModel {
                    reason: "alphabet wider than the plane",
                });
            }
            let mut out = vec![0u16; n];
            rans::decode(s, table, &mut out)?;
            Ok(out)
        }
        StreamCodec::RansLocal => {
            let (table, used) = rans::DecodeTable::from_model_bytes(s)?;
            if table.alphabet() > alphabet {
                return Err(CodecError::BadModel {
                    reason: "alphabet wider than the plane",
                });
            }
            let mut out = vec![0u16; n];
            rans::decode(&s[used..], &table, &mut out)?;
            Ok(out)
        }
        codec => Err(CodecError::CodecNotAllowed {
            plane: e.plane,
            codec,
        }),
    }
}
