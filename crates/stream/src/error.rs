use sparsewire_codec::CodecError;
use sparsewire_formats::FormatError;
use sparsewire_metadata::MetadataError;

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
    #[error("format version {found} is not supported (this reader reads version {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("reserved flags are {flags:#x}; must be 0")]
    ReservedFlags { flags: u32 },
    #[error("header length {len} is over the cap of {cap} bytes")]
    HeaderTooLarge { len: u64, cap: u64 },
    #[error("header checksum mismatch: stored {expected:#018x}, computed {got:#018x}")]
    HeaderChecksum { expected: u64, got: u64 },
    #[error("header: {0}")]
    Metadata(#[from] MetadataError),
    #[error("padding before the data section is not zero")]
    BadPadding,
    #[error("data section is {declared} bytes in the header but {present} bytes follow it")]
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
    #[error("output buffer is {got} bytes, the tile needs {expected}")]
    OutputSize { expected: u64, got: u64 },
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("tensor {tensor:?}: {source}")]
    Encode { tensor: String, source: CodecError },
    #[error("tensor {tensor:?}: mask has {got} flags, the tensor {expected} elements")]
    MaskLength {
        tensor: String,
        expected: u64,
        got: u64,
    },
    #[error("tensor {tensor:?} tile {tile}: mask: {source}")]
    Mask {
        tensor: String,
        tile: usize,
        source: sparsewire_masks::MaskError,
    },
}
