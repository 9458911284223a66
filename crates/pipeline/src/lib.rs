//! The one API most users call: sparsewire's stages wired in the seed's order.
//!
//! host pre-processing (sparsification engine, `sparsewire-se`) -> the `.swire` stream
//! (`sparsewire-stream`: value codec and masks) -> transmit (the accelerator model's bus,
//! `sparsewire-accel`) -> accelerator operation (reconstruction engine, `sparsewire-re`).
//!
//! [`compress`] turns a [`TensorFile`] into stream bytes losslessly; [`sparsify`] drops the
//! least important weights first ([`sparsify::sparsify_and_compress`]); [`decompress`]
//! turns stream bytes back into tensors, rebuilding what was dropped. The file-level
//! functions ([`compress_file`], [`decompress_file`]) read safetensors or `.npy`, refuse to
//! overwrite their input or an existing output unless asked, and write through a temporary
//! file in the destination folder that is renamed only when complete. [`inspect`] and
//! [`bench`] produce the reports
//! the CLI prints, as serde types with stable field names.
//!
//! ```
//! use sparsewire_pipeline::{compress, decompress, demo, EncodeOptions};
//! let file = demo::tensors();
//! let stream = compress(&file, &EncodeOptions::default()).unwrap();
//! assert!(stream.len() < file.byte_len() as usize);
//! assert_eq!(decompress(&stream).unwrap(), file);
//! ```
// The one unsafe call is the read-only mmap in io.rs, with its SAFETY note.
#![deny(unsafe_code)]

pub mod demo;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod golden;
mod io;
pub mod mmo;
mod report;
pub mod simulate;
pub mod sparsify;

pub use io::{check_output, read_tensors, write_atomic, write_tensors};
pub use report::{
    bench, inspect, BenchReport, InspectReport, LinkReport, PlaneReport, TensorReport,
};
pub use sparsewire_formats::{Dtype, Tensor, TensorFile};
pub use sparsewire_stream::{
    encode, DecodeLimits, EncodeOptions, Profile, Progress, RawTile, Reader, StreamError,
};
pub use {
    sparsewire_accel as accel, sparsewire_codec as codec, sparsewire_formats as formats,
    sparsewire_masks as masks, sparsewire_metadata as metadata, sparsewire_re as re,
    sparsewire_se as se, sparsewire_stream as stream,
};

use std::path::{Path, PathBuf};

/// Errors of the pipeline: the stages' own, and file handling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Stream { path: PathBuf, source: StreamError },
    #[error(transparent)]
    StreamBytes(#[from] StreamError),
    #[error("{path}: {source}")]
    Format {
        path: PathBuf,
        source: sparsewire_formats::FormatError,
    },
    #[error("{path} already exists (pass --force to overwrite it)")]
    OutputExists { path: PathBuf },
    #[error("{path} is the input; refusing to overwrite it")]
    OutputIsInput { path: PathBuf },
    #[error("{path}: cannot tell the format (expected .safetensors, .npy or .swire)")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: .npy holds one array, the stream has {count} tensors")]
    NpyNeedsOneTensor { path: PathBuf, count: usize },
    #[error("{0}")]
    Sparsify(#[from] sparsewire_se::SparsifyError),
    #[error("calibration/gradient tensor {tensor:?}: {reason}")]
    Calibration { tensor: String, reason: String },
    #[error("tensor {tensor:?}: reconstruction: {reason}")]
    Reconstruct { tensor: String, reason: String },
    #[error("matmul on {tensor:?}{}: {reason}", tile.map(|k| format!(", tile {k}")).unwrap_or_default())]
    Multiply {
        tensor: String,
        tile: Option<usize>,
        reason: String,
    },
    #[error("accelerator model: {0}")]
    Model(String),
    #[error("a budget of {budget} bytes cannot be met; the closest reachable is {closest} bytes")]
    Budget { budget: u64, closest: u64 },
}

impl PipelineError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PipelineError + '_ {
        move |source| PipelineError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Host side, lossless: tensors to stream bytes.
pub fn compress(file: &TensorFile, opts: &EncodeOptions) -> Result<Vec<u8>, PipelineError> {
    compress_with_progress(file, opts, &|_| {})
}

/// [`compress`] with a progress callback (called after each tensor).
pub fn compress_with_progress(
    file: &TensorFile,
    opts: &EncodeOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Vec<u8>, PipelineError> {
    let _span = tracing::info_span!("compress", tensors = file.tensors.len()).entered();
    // The sparsification engine's lossless configuration leaves every tensor as it is.
    sparsewire_se::SparsifyConfig::lossless().check()?;
    Ok(encode(file, opts, progress)?)
}

/// Accelerator side: stream bytes back to tensors, with the default output limit.
pub fn decompress(stream: &[u8]) -> Result<TensorFile, PipelineError> {
    let reader = Reader::new(stream)?;
    let mut file = reader.decode_all()?;
    reconstruct(&reader, &mut file)?;
    Ok(file)
}

/// Applies each tensor's stored reconstruction beyond zero-fill (the reader zero-fills).
pub fn reconstruct<B: AsRef<[u8]> + Sync>(
    reader: &Reader<B>,
    file: &mut TensorFile,
) -> Result<(), PipelineError> {
    for (ti, t) in file.tensors.iter_mut().enumerate() {
        reconstruct_tensor(reader, ti, t)?;
    }
    Ok(())
}

/// Applies tensor `ti`'s stored reconstruction to its zero-filled decode `t`.
pub fn reconstruct_tensor<B: AsRef<[u8]> + Sync>(
    reader: &Reader<B>,
    ti: usize,
    t: &mut Tensor,
) -> Result<(), PipelineError> {
    if reader.header().tensors[ti].reconstruction == metadata::Reconstruction::Zero {
        return Ok(());
    }
    let Some(mut v) = t.to_f32_vec() else {
        return Ok(());
    };
    rebuild_values(reader, ti, &mut v)?;
    t.data = formats::from_f32(t.dtype, &v).expect("float tensor");
    Ok(())
}

/// Applies tensor `ti`'s stored reconstruction to its zero-filled values (f32, the 2-D
/// view row-major), without rounding them back to the tensor's dtype.
pub fn rebuild_values<B: AsRef<[u8]> + Sync>(
    reader: &Reader<B>,
    ti: usize,
    v: &mut [f32],
) -> Result<(), PipelineError> {
    let meta = &reader.header().tensors[ti];
    if meta.reconstruction == metadata::Reconstruction::Zero {
        return Ok(());
    }
    let grid = reader.grid(ti);
    // The tensor's kept flags, from its tiles' masks.
    let mut flags = vec![1u8; v.len()];
    for k in 0..meta.tiles.len() {
        if let Some(mask) = reader.tile_mask(ti, k)? {
            let tile: Vec<u8> = (0..mask.len()).map(|i| mask.is_kept(i) as u8).collect();
            grid.scatter(&tile, k as u64, 1, &mut flags);
        }
    }
    let keep: Vec<bool> = flags.iter().map(|&f| f != 0).collect();
    sparsewire_re::rebuild(v, &keep, grid.cols as usize, &meta.reconstruction).map_err(|e| {
        PipelineError::Reconstruct {
            tensor: meta.name.clone(),
            reason: e.to_string(),
        }
    })
}

/// What [`compress_file`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CompressSummary {
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub ratio: f64,
    pub seconds: f64,
}

/// Reads `input` (.safetensors or .npy), compresses it, writes `output` atomically.
pub fn compress_file(
    input: &Path,
    output: &Path,
    opts: &EncodeOptions,
    force: bool,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(Vec<u8>, CompressSummary), PipelineError> {
    io::check_output(input, output, force)?;
    let t0 = std::time::Instant::now();
    let file = read_tensors(input)?;
    let stream = compress_with_progress(&file, opts, progress)?;
    write_atomic(output, &stream, force)?;
    let input_bytes = file.byte_len();
    let summary = CompressSummary {
        input_bytes,
        output_bytes: stream.len() as u64,
        ratio: ratio(stream.len() as u64, input_bytes),
        seconds: t0.elapsed().as_secs_f64(),
    };
    Ok((stream, summary))
}

/// Reads a `.swire` file, decodes it, writes safetensors (or `.npy` for one tensor).
pub fn decompress_file(
    input: &Path,
    output: &Path,
    force: bool,
    limits: DecodeLimits,
) -> Result<TensorFile, PipelineError> {
    io::check_output(input, output, force)?;
    let map = io::map_file(input)?;
    let wrap = |source| PipelineError::Stream {
        path: input.to_path_buf(),
        source,
    };
    let reader = Reader::with_limits(&map[..], limits).map_err(wrap)?;
    let mut file = reader.decode_all().map_err(wrap)?;
    reconstruct(&reader, &mut file)?;
    write_tensors(output, &file, force)?;
    Ok(file)
}

/// Opens a `.swire` file through mmap and validates it.
pub fn open_stream(
    path: &Path,
    limits: DecodeLimits,
) -> Result<Reader<memmap2::Mmap>, PipelineError> {
    let map = io::map_file(path)?;
    Reader::with_limits(map, limits).map_err(|source| PipelineError::Stream {
        path: path.to_path_buf(),
        source,
    })
}

/// `compressed / original`, 0 for an empty original.
pub fn ratio(compressed: u64, original: u64) -> f64 {
    if original == 0 {
        0.0
    } else {
        compressed as f64 / original as f64
    }
}
