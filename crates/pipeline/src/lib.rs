//! sparsewire's stages wired in the seed's order, and nothing else.
//!
//! **Compress** ([`compress_file`], [`compress`]): `formats` opens the input by its header
//! -> `se` sparsifies each float matrix (when asked: criterion, pattern, budget) -> `stream`
//! codes it (`codec` for values, `sparse` for masks) and writes the container -> `formats`
//! commits the output. One tensor at a time, a few tiles per thread in flight.
//!
//! **Decompress** ([`decompress_file`], [`decompress`]): `stream` reads and decodes a row
//! block of tiles -> `re` rebuilds what was dropped -> `formats` writes the tensors (or a
//! sparse layout's arrays) and commits the output.
//!
//! **Multiply** (`sparsewire_accel::exec`, used directly): `stream` hands a tile -> `re`
//! rebuilds it -> `accel`'s matrix unit multiplies it, following `accel`'s scheduler.
//!
//! [`demo::run`] is the whole job on built-in tensors. The algorithms are in the stage
//! crates; this crate only connects them, so each has its own small API and can be used
//! alone (see each crate's docs).
//!
//! ```
//! use sparsewire_pipeline::{compress, decompress, demo, CompressOptions};
//! let file = demo::tensors();
//! let (stream, report) = compress(&file, &CompressOptions::default()).unwrap();
//! assert!(report.ratio < 1.0);
//! assert_eq!(decompress(&stream).unwrap(), file);
//! ```
#![forbid(unsafe_code)]

mod activations;
pub mod checkpoint;
mod compress;
mod decompress;
pub mod demo;
mod error;

pub use activations::{encode_activation_tile, encode_activations, TENSOR as ACTIVATIONS_TENSOR};
pub use compress::{
    compress, compress_file, compress_into, compress_to, CompressOptions, CompressReport,
    CompressedTensor, Progress,
};
pub use decompress::{
    decompress, decompress_file, read_rows, read_tensor, DecompressOptions, DecompressReport,
    DecompressedTensor,
};
pub use error::PipelineError;
