//! The lossless value codec (docs/SPEC.md §4): float tiles in, coded streams out, bit-exact.
//!
//! A float value is split into planes by its [`PlaneLayout`]:
//!
//! | dtype | head (rANS)                 | tail bits (packed) | byte planes (rANS or raw) |
//! |-------|-----------------------------|--------------------|---------------------------|
//! | BF16  | sign, exponent, 2 mantissa  | 5                  | none                      |
//! | F16   | sign, exponent, 2 mantissa  | 0                  | mantissa bits 0..8        |
//! | F32   | sign, exponent, 2 mantissa  | 5                  | mantissa bits 8..16, 0..8 |
//!
//! The head is one symbol per value, so the exponent is coded jointly with the sign and the
//! top two mantissa bits: the mantissa is conditioned on the exponent (inside an octave a
//! bell-shaped weight distribution is not flat), and the sign on the exponent (post-GELU
//! activations are mostly small negatives). On MiniLM bf16 this is 10.55 bits per value
//! against 10.61 for the order-0 sign+exponent byte plus raw mantissa that ZipNN-style byte
//! grouping reaches (docs/ARCHITECTURE.md has the measurements).
//!
//! Each plane of each tile is stored as the smallest of: raw, constant, rANS with the
//! tensor's shared model ([`TensorModels`], fitted on the whole tensor and stored once in
//! the header), or rANS with a model of its own serialised in front of the stream (pays on
//! tensors whose statistics drift, such as an embedding table), except that a plane is
//! kept raw unless rANS saves at least 1/128 of it (raw bytes are read at memory speed; a
//! few tenths of a percent saved do not pay for a rANS decode on any link sparsewire
//! targets). Tiles share nothing but the models, so any tile decodes on its own.
//!
//! Non-float tensors, and float tensors where it wins on a sample, go through a whole-tile
//! codec instead: raw or zstd ([`encode_whole`]).
//!
//! Decoding runs on one of several [`Kernel`]s (scalar, AVX2, AVX-512), chosen once per
//! process by timing them; all produce the same bytes. The `portable` feature builds
//! without the SIMD kernels (and without any `unsafe`): the scalar decoder, which the
//! kernels are tested against, runs everywhere.
// `simd/` alone uses unsafe (AVX2 and AVX-512 intrinsics), each block with a SAFETY note.
#![cfg_attr(not(feature = "portable"), deny(unsafe_code))]
#![cfg_attr(feature = "portable", forbid(unsafe_code))]

pub mod bits;
mod kernel;
mod models;
mod planes;
pub mod rans;
#[cfg(not(feature = "portable"))]
mod simd;
#[cfg(feature = "portable")]
#[path = "simd/none.rs"]
mod simd;
mod symbols;
mod whole;

pub use kernel::Kernel;
use models::load;
pub use models::{entropy_bits, PlaneHistograms, TensorDecoder, TensorModels};
pub use planes::{
    decode_planes, decode_planes_chunked, encode_planes, encode_planes_counted,
    encode_planes_len_lower_bound, plane_entropy_bytes, EncodedStream,
};
pub use sparsewire_metadata::{Dtype, Plane, StreamCodec, StreamEntry, ValueCodec};
pub use symbols::{decode_symbol_stream, encode_symbol_stream};
pub use whole::{decode_whole, encode_whole};

/// Errors of the value codec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    #[error("corrupt stream: {reason}")]
    Corrupt { reason: &'static str },
    #[error("entropy model does not parse: {reason}")]
    BadModel { reason: &'static str },
    #[error("symbol {symbol} has no probability in the model")]
    SymbolNotInModel { symbol: u32 },
    #[error("stream for plane {plane:?} uses codec {codec:?}, which that plane does not allow")]
    CodecNotAllowed { plane: Plane, codec: StreamCodec },
    #[error("tile streams do not match the plane layout: {reason}")]
    StreamLayout { reason: String },
    #[error("stream for plane {plane:?} is {got} bytes, {expected} expected")]
    StreamLength {
        plane: Plane,
        expected: u64,
        got: u64,
    },
    #[error("shared model {model} is missing or empty")]
    MissingModel { model: u16 },
    #[error("zstd: {reason}")]
    Zstd { reason: String },
}

/// How the bits of one float dtype are split into planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaneLayout {
    /// Bytes per value (2 or 4).
    pub value_bytes: usize,
    /// Width of the head symbol: sign, exponent and top mantissa bits.
    pub head_bits: u32,
    /// Width of the packed tail between head and byte planes (0..=8).
    pub tail_bits: u32,
    /// Number of low byte planes.
    pub byte_planes: usize,
}

impl PlaneLayout {
    /// The layout of a float dtype, `None` for dtypes without one.
    pub fn for_dtype(dtype: Dtype) -> Option<PlaneLayout> {
        match dtype {
            Dtype::BF16 => Some(PlaneLayout {
                value_bytes: 2,
                head_bits: 11,
                tail_bits: 5,
                byte_planes: 0,
            }),
            Dtype::F16 => Some(PlaneLayout {
                value_bytes: 2,
                head_bits: 8,
                tail_bits: 0,
                byte_planes: 1,
            }),
            Dtype::F32 => Some(PlaneLayout {
                value_bytes: 4,
                head_bits: 11,
                tail_bits: 5,
                byte_planes: 2,
            }),
            _ => None,
        }
    }

    fn head_shift(&self) -> u32 {
        self.value_bytes as u32 * 8 - self.head_bits
    }

    fn tail_shift(&self) -> u32 {
        self.byte_planes as u32 * 8
    }

    /// The head symbol of one little-endian value (`value_bytes` bytes).
    pub fn head_of(&self, v: &[u8]) -> u16 {
        (load(v) >> self.head_shift()) as u16
    }

    /// Model index of the head in [`TensorModels`]; byte plane `k` is `1 + k`.
    pub const HEAD_MODEL: u16 = 0;

    /// The planes of a tile, in stream order.
    pub fn planes(&self) -> Vec<Plane> {
        let mut p = vec![Plane::Head];
        if self.tail_bits > 0 {
            p.push(Plane::TailBits);
        }
        p.extend((0..self.byte_planes).rev().map(|k| Plane::Byte(k as u8)));
        p
    }
}

#[cfg(test)]
mod tests;
