use sparsewire_codec::CodecError;
use sparsewire_formats::FormatError;
use sparsewire_metadata::MetadataError;
use sparsewire_sparse::SparseError;

/// Everything that can be wrong with a stream, or with writing one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    #[error("truncated stream: {what} needs {needed} bytes, only {available} present")]
    Truncated {
        what: &'static str,
        needed: u64,
        available: u64,
    },
    #[error("not a .swire stream (bad magic)")]
    BadMagic,
    #[error("format version {found} is not supported (this reader reads version {supported}){}", if *found > *supported { "; the stream was written by a newer sparsewire" } else { "; the stream was written by an older sparsewire: decode it with that version" })]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("reserved flags are {flags:#x}; must be 0")]
    ReservedFlags { flags: u32 },
    #[error(
        "the stream does not end with its end marker: it is truncated, or has bytes after its end"
    )]
    NoTrailer,
    #[error("header length {len} is over the cap of {cap} bytes")]
    HeaderTooLarge { len: u64, cap: u64 },
    #[error("header checksum mismatch: stored {expected:#018x}, computed {got:#018x}")]
    HeaderChecksum { expected: u64, got: u64 },
    #[error("header: {0}")]
    Metadata(#[from] MetadataError),
    #[error("reserved preamble bytes are not zero")]
    BadPadding,
    #[error("data section is {declared} bytes in the header but {present} bytes are there")]
    DataLength { declared: u64, present: u64 },
    #[error("tensor {tensor:?} tile {tile}: offset {got} where {expected} was expected ({kind})")]
    TileOffset {
        tensor: String,
        tile: usize,
        expected: u64,
        got: u64,
        kind: &'static str,
    },
    #[error(
        "tensor {tensor:?} tile {tile}: length {len} differs from its streams' total {streams}"
    )]
    TileLength {
        tensor: String,
        tile: usize,
        len: u64,
        streams: u64,
    },
    #[error(
        "tensor {tensor:?} tile {tile}: ends at {end}, beyond the data section ({data_len} bytes)"
    )]
    TileOutOfRange {
        tensor: String,
        tile: usize,
        end: u64,
        data_len: u64,
    },
    #[error("data section has {bytes} bytes after the last tile")]
    TrailingBytes { bytes: u64 },
    #[error("tensor {tensor:?} tile {tile}: checksum mismatch (stored {expected:#018x}, computed {got:#018x})")]
    ChecksumMismatch {
        tensor: String,
        tile: usize,
        expected: u64,
        got: u64,
    },
    #[error("tensor {tensor:?} tile {tile}: {source}")]
    Codec {
        tensor: String,
        tile: usize,
        source: CodecError,
    },
    #[error("tensor {tensor:?}: shared entropy models: {source}")]
    Models { tensor: String, source: CodecError },
    #[error("invalid encode options: {reason}")]
    InvalidOptions { reason: &'static str },
    #[error("no tensor named {name:?}")]
    NoSuchTensor { name: String },
    #[error("tensor {tensor:?} has {tiles} tiles; tile {tile} does not exist")]
    NoSuchTile {
        tensor: String,
        tile: usize,
        tiles: usize,
    },
    #[error("decoding needs {needed} bytes of output, over the limit of {limit} (raise --max-output-bytes)")]
    OutputLimit { needed: u64, limit: u64 },
    #[error("tensor {tensor:?}: decoding needs a buffer of {needed} bytes, over the memory budget of {limit} bytes (raise --max-memory)")]
    MemoryLimit {
        tensor: String,
        needed: u64,
        limit: u64,
    },
    #[error("tensor {tensor:?}: {reason}")]
    NotCuttable {
        tensor: String,
        reason: &'static str,
    },
    #[error("output buffer is {got} bytes, the tile needs {expected}")]
    OutputSize { expected: u64, got: u64 },
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("tensor {tensor:?}: {source}")]
    Encode { tensor: String, source: CodecError },
    #[error("tensor {tensor:?}{}: {source}", tile.map(|k| format!(" tile {k}")).unwrap_or_default())]
    Sparse {
        tensor: String,
        tile: Option<usize>,
        source: SparseError,
    },
    #[error(
        "tensor {tensor:?}: the sparse tile is {got:?} but the tensor's 2-D view is {expected:?}"
    )]
    SparseShape {
        tensor: String,
        expected: (u64, u64),
        got: (usize, usize),
    },
    #[error("tensor {tensor:?}: a sparse tensor must be F32, F16 or BF16, not {dtype}")]
    SparseDtype {
        tensor: String,
        dtype: sparsewire_metadata::Dtype,
    },
    #[error("tensor name {name:?} appears twice")]
    DuplicateName { name: String },
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        source: std::io::Error,
    },
    #[error("writing the stream: {0}")]
    Write(std::io::Error),
    /// Writing decoded values to the caller's output failed (a full disk, a closed pipe).
    #[error("writing the decoded values: {0}")]
    Output(std::io::Error),
}
