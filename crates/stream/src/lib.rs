//! The `.swire` container (docs/SPEC.md §1-§3, §5, §6): writes tensors as independently
//! decodable tiles followed by a postcard header, and reads them back after validating
//! everything once.
//!
//! Takes tensors ([`sparsewire_formats::TensorRef`]: bytes in memory or in a file, read a
//! tile at a time) and sparsified tensors ([`SparseTensor`]: one
//! [`sparsewire_sparse::SparseTile`] per tensor), codes each tile with the value codec
//! (`sparsewire-codec`) and the mask codes (`sparsewire-sparse`), and writes them to any
//! `io::Write` through a [`Writer`] in bounded memory. Gives back a [`Reader`] over any
//! [`Source`] (a slice, a memory map, a file read by range) that validates the stream
//! once, refusing every structural fault of SPEC §5 with a typed [`StreamError`] naming the
//! tensor and tile, allocating nothing sized by a header value before checking it; then
//! hands out any tile by (tensor, tile index) without touching other tiles: dense bytes,
//! a decoded [`sparsewire_sparse::SparseTile`], or a fast-profile tile borrowed as stored
//! ([`RawTile`]). Decoding zero-fills what a sparse tile dropped; rebuilding beyond that is
//! the reconstruction engine's job (`sparsewire-re`).
//!
//! Also here: [`report`] (what a stream holds, with entropy bounds, as `inspect` shows
//! it) and [`estimate`] (bytes a sparsified tensor will take, without coding it).
#![forbid(unsafe_code)]

mod error;
pub mod estimate;
#[doc(hidden)]
pub mod fuzzing;
mod reader;
pub mod report;
mod source;
mod writer;

pub use error::StreamError;
pub use reader::{default_memory_budget, DecodeLimits, RawTile, Reader};
pub use source::{FileSource, Source};
pub use sparsewire_codec::Kernel;
pub use writer::{
    encode, encode_into, encode_sparse, out_capacity, EncodeOptions, Profile, SparseTensor, Writer,
};

/// First eight bytes of every stream.
pub const MAGIC: [u8; 8] = *b"\x89SWIRE\r\n";
/// Last eight bytes of every stream.
pub const END_MAGIC: [u8; 8] = *b"\x89SWEND\r\n";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 3;
/// Bytes of the preamble (magic, version, flags, reserved zeros); the data section starts
/// here.
pub const PREAMBLE_BYTES: usize = 64;
/// Bytes of the trailer: header length, header checksum, end magic.
pub const TRAILER_BYTES: usize = 24;

/// Bytes of the whole stream a header describes (preamble, tiles, header, trailer).
pub fn stream_bytes(header: &sparsewire_metadata::Header) -> Result<u64, StreamError> {
    let h = header.to_postcard()?.len() as u64;
    Ok((PREAMBLE_BYTES + TRAILER_BYTES) as u64 + header.data_len + h)
}

/// Checksum of a tile's stored bytes (SPEC §3.3).
pub fn tile_checksum(bytes: &[u8], tensor: usize, tile: usize) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(
        bytes,
        sparsewire_metadata::tile_seed(tensor as u64, tile as u64),
    )
}

#[cfg(test)]
mod tests;
