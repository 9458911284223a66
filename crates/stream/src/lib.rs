//! The `.swire` container (docs/SPEC.md §1-§3, §5, §6): writes tensors as independently decodable
//! tiles behind a postcard header, and reads them back after validating everything once.
//!
//! Takes a [`TensorFile`] and [`EncodeOptions`], gives stream bytes ([`encode`]); takes
//! stream bytes (a `Vec`, a slice or an mmap) and gives a [`Reader`] that hands out any tile
//! by (tensor, tile index) without touching other tiles, or whole tensors. Sparsified
//! tensors ([`encode_sparse`]) store per tile a mask stream and the kept values; the reader
//! zero-fills them. The reader
//! refuses every structural fault of SPEC §5 with a typed [`StreamError`] naming the tensor
//! and tile, allocates nothing sized by a header value before checking it against the
//! bytes present, and caps decoded output at [`DecodeLimits::max_output_bytes`].
#![forbid(unsafe_code)]

mod error;
mod reader;
mod writer;

pub use error::StreamError;
pub use reader::{DecodeLimits, RawTile, Reader};
pub use sparsewire_metadata as metadata;
pub use writer::{encode, encode_sparse, EncodeOptions, Profile, Progress, TensorMask};

/// First eight bytes of every stream.
pub const MAGIC: [u8; 8] = *b"\x89SWIRE\r\n";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the fixed preamble: magic, version, flags, header length, header checksum.
pub const PREAMBLE_BYTES: usize = 32;
/// The data section starts at a multiple of this.
pub const DATA_ALIGN: usize = 64;

/// Start of the data section for a header of `header_len` bytes.
pub fn data_start(header_len: u64) -> Option<u64> {
    (PREAMBLE_BYTES as u64)
        .checked_add(header_len)?
        .checked_next_multiple_of(DATA_ALIGN as u64)
}

/// Checksum of a tile's stored bytes (SPEC §3.3).
pub fn tile_checksum(bytes: &[u8], tensor: usize, tile: usize) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(bytes, metadata::tile_seed(tensor as u64, tile as u64))
}

#[cfg(test)]
mod tests;
