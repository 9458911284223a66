//! What a `.swire` stream says about itself.
//!
//! This crate holds the serde types of the stream header (docs/SPEC.md §3 "Header"): per
//! tensor its name, dtype, shape, layout hint, tile shape, value codec and shared entropy
//! models, the tile index (offset, length, checksum and the codec of each stream of every
//! tile), and the fields the sparsification and reconstruction stages fill (criterion,
//! pattern, mask encoding, reconstruction method). The header is encoded in binary with
//! [postcard], and has a JSON view for people and scripts that reads back to the same header
//! ([`Header::to_json`], [`Header::from_json`]; module [`json`]). [`std::fmt::Display`] and
//! [`std::str::FromStr`] give the enums one set of names for every front end.
//!
//! The crate validates what can be checked without the data section: shape products that
//! overflow, duplicate names, tile counts that disagree with the tile shape, and the
//! documented caps ([`MAX_HEADER_BYTES`], [`MAX_RANK`], ...). The container crate
//! (`sparsewire-stream`) checks everything that needs the bytes.
//!
//! Postcard is not self-describing: new fields are added only with a format version bump.
//! Enum variants are only ever appended, so an old reader meets a new variant as a typed
//! [`MetadataError::Decode`] error ("unknown codec id"), never as a misread.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use std::collections::HashSet;

pub mod json;
mod names;
pub mod varint;

pub use names::{display, ReconstructionMethod};

/// Largest header (postcard bytes) a reader accepts; larger is refused before allocating.
pub const MAX_HEADER_BYTES: u64 = 64 << 20;
/// Most dimensions a tensor may have.
pub const MAX_RANK: usize = 16;
/// Longest tensor name, in bytes.
pub const MAX_NAME_BYTES: usize = 4096;
/// Most tensors in one stream.
pub const MAX_TENSORS: usize = 1 << 20;

/// Element type of a tensor: the safetensors set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(non_camel_case_types)]
pub enum Dtype {
    BOOL,
    U8,
    I8,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
    F8_E5M2,
    F8_E4M3,
    F8_E8M0,
    F8_E4M3FNUZ,
    F8_E5M2FNUZ,
    C64,
    F4,
    F6_E2M3,
    F6_E3M2,
}

impl Dtype {
    /// Every dtype, in variant order (SPEC §2).
    pub const ALL: [Dtype; 22] = {
        use Dtype::*;
        [
            BOOL,
            U8,
            I8,
            I16,
            U16,
            F16,
            BF16,
            I32,
            U32,
            F32,
            F64,
            I64,
            U64,
            F8_E5M2,
            F8_E4M3,
            F8_E8M0,
            F8_E4M3FNUZ,
            F8_E5M2FNUZ,
            C64,
            F4,
            F6_E2M3,
            F6_E3M2,
        ]
    };

    /// Size of one element in bits.
    pub fn bits(self) -> u64 {
        use Dtype::*;
        match self {
            F4 => 4,
            F6_E2M3 | F6_E3M2 => 6,
            BOOL | U8 | I8 | F8_E5M2 | F8_E4M3 | F8_E8M0 | F8_E4M3FNUZ | F8_E5M2FNUZ => 8,
            I16 | U16 | F16 | BF16 => 16,
            I32 | U32 | F32 => 32,
            F64 | I64 | U64 | C64 => 64,
        }
    }

    /// The float types sparsewire compresses; every other dtype is carried through.
    pub fn is_compressible_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F16 | Dtype::BF16)
    }

    /// Name as safetensors writes it.
    pub fn name(self) -> &'static str {
        use Dtype::*;
        match self {
            BOOL => "BOOL",
            U8 => "U8",
            I8 => "I8",
            I16 => "I16",
            U16 => "U16",
            F16 => "F16",
            BF16 => "BF16",
            I32 => "I32",
            U32 => "U32",
            F32 => "F32",
            F64 => "F64",
            I64 => "I64",
            U64 => "U64",
            F8_E5M2 => "F8_E5M2",
            F8_E4M3 => "F8_E4M3",
            F8_E8M0 => "F8_E8M0",
            F8_E4M3FNUZ => "F8_E4M3FNUZ",
            F8_E5M2FNUZ => "F8_E5M2FNUZ",
            C64 => "C64",
            F4 => "F4",
            F6_E2M3 => "F6_E2M3",
            F6_E3M2 => "F6_E3M2",
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the dimensions of a tensor are to be read; decides the 2-D view used for tiling
/// and, later, for scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// A linear layer's weight `[out, in]`.
    Linear,
    /// A convolution filter bank `[out, in/groups, kh, kw]`, viewed as `[out, in*kh*kw]`.
    Conv,
    /// Anything else (biases, norms, embeddings, activations), viewed as
    /// `[shape[0], product of the rest]`; rank 0 and 1 are one row.
    Other,
}

impl Layout {
    /// The layout a tensor of this rank most likely has.
    pub fn guess(shape: &[u64]) -> Layout {
        match shape.len() {
            2 => Layout::Linear,
            4 => Layout::Conv,
            _ => Layout::Other,
        }
    }
}

/// Shape of a tile in the tensor's 2-D view: `rows` x `cols` elements, row-major inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileShape {
    pub rows: u64,
    pub cols: u64,
}

/// Codec applied to a tensor's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueCodec {
    /// The tensor's bytes as they are (one stream per tile).
    Raw,
    /// Bytes through zstd, one frame per tile.
    Zstd,
    /// Float planes (docs/SPEC.md §4): a head symbol (sign, exponent, top mantissa bits)
    /// through interleaved rANS, raw tail bits, and low mantissa byte planes.
    FloatPlanes,
}

/// Role of one stream inside a tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Plane {
    /// All of the tile's bytes (Raw and Zstd tensors).
    Whole,
    /// Head symbols: sign, exponent and top mantissa bits of each value.
    Head,
    /// Tail bits between the head and the byte planes, packed little-endian.
    TailBits,
    /// Low mantissa byte number `k` (0 = least significant).
    Byte(u8),
    /// The tile's sparsity mask, in this encoding: a varint symbol count, then the
    /// symbols (raw or rANS, per the stream codec). The value planes that follow hold
    /// only the kept values.
    Mask(MaskEncoding),
}

/// How one stream's bytes are coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamCodec {
    /// Stored as is.
    Raw,
    /// Every symbol equals `symbol`; no bytes.
    Constant { symbol: u16 },
    /// Interleaved rANS with the tensor's shared model number `model`.
    RansShared { model: u16 },
    /// Interleaved rANS with a model serialised at the start of the stream.
    RansLocal,
    /// A zstd frame.
    Zstd,
}

/// One stream of a tile: its role, its coding and its length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEntry {
    pub plane: Plane,
    pub codec: StreamCodec,
    pub len: u64,
}

/// One tile of the tile index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileEntry {
    /// Byte offset from the start of the data section.
    pub offset: u64,
    /// Stored length in bytes (the sum of the stream lengths).
    pub len: u64,
    /// xxh3-64 of the stored bytes, seeded with [`tile_seed`].
    pub checksum: u64,
    /// The tile's streams, stored back to back in this order.
    pub streams: Vec<StreamEntry>,
}

/// Importance criterion used to choose kept elements (filled by the sparsification stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Criterion {
    Magnitude,
    Taylor,
    Wanda,
    SparseGpt,
    Correlation,
    Predictable,
    /// Movement pruning (Sanh et al., 2020): scores accumulated during training
    /// (`sparsewire-train`); appended last so earlier streams decode unchanged.
    Movement,
    /// A trained scorer (`sparsewire-train`'s small MLP over per-element features, read
    /// from a file at compress time); appended last so earlier streams decode unchanged.
    Scorer,
}

/// Which elements may be dropped together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pattern {
    Unstructured,
    UnstructuredPerRow,
    NM { n: u8, m: u8 },
    Block { rows: u32, cols: u32 },
    Channel,
}

/// How a tile's mask is coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MaskEncoding {
    Bitmask,
    RunLength,
    DeltaIndices,
    NMCodes,
}

/// How the sparsification stage treated a tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sparsification {
    /// The criterion that chose the mask (after any fallback).
    pub criterion: Criterion,
    pub pattern: Pattern,
    /// Fraction of elements dropped, in [0, 1), as achieved.
    #[serde(with = "json::float")]
    pub sparsity: f32,
    /// Score threshold used, when one was.
    #[serde(with = "json::float_opt")]
    pub threshold: Option<f32>,
    /// ‖W − W'‖_F / ‖W‖_F of what the receiver rebuilds, measured at compress time.
    #[serde(with = "json::float")]
    pub rel_error: f32,
    /// Relative output error on the calibration inputs, when there were some.
    #[serde(with = "json::float_opt")]
    pub output_error: Option<f32>,
    /// Whether the kept values were changed (SparseGPT's compensation).
    pub values_updated: bool,
}

impl Sparsification {
    /// The record of a tensor pruned by `criterion` in `pattern` to `sparsity`, its kept
    /// values unchanged and no error measured (set the other fields where they apply).
    pub fn new(criterion: Criterion, pattern: Pattern, sparsity: f32) -> Self {
        Sparsification {
            criterion,
            pattern,
            sparsity,
            threshold: None,
            rel_error: 0.0,
            output_error: None,
            values_updated: false,
        }
    }
}

/// How missing values are rebuilt on the accelerator side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum Reconstruction {
    /// Missing values are zero (also the meaning for a dense tensor).
    #[default]
    Zero,
    /// Weighted average of kept neighbours.
    Linear,
    /// The ridge predictor of SPEC §6.2 on the row context; its four parameters.
    Learned {
        #[serde(with = "json::floats")]
        params: Vec<f32>,
    },
    /// One entry per column of the 2-D view (`entry_len` = columns): a dropped element
    /// becomes its column's entry.
    Dictionary {
        entry_len: u32,
        #[serde(with = "json::floats")]
        entries: Vec<f32>,
    },
    /// Dropped rows (output channels) rebuilt as linear combinations of kept rows
    /// (the `correlation` criterion with the channel pattern).
    Channels {
        combinations: Vec<ChannelCombination>,
    },
    /// Conv filters: each row of the 2-D view holds kernels of `kh x kw` values; a dropped
    /// value is the mean of the kept ones beside it (up, down, left, right) in its kernel,
    /// else of all kept ones in its kernel, else zero.
    Spatial { kh: u32, kw: u32 },
    /// A small MLP on the row context (SPEC §6.2): `hidden` ReLU units on the eight
    /// features of a dropped element, scaled by its row's kept RMS; `10 * hidden + 1`
    /// parameters (first layer row-major, its biases, the output weights, the output bias).
    Mlp {
        hidden: u32,
        #[serde(with = "json::floats")]
        params: Vec<f32>,
    },
}

/// One dropped row: `w[row] = Σ coefs[i] · w[sources[i]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelCombination {
    pub row: u32,
    pub sources: Vec<u32>,
    #[serde(with = "json::floats")]
    pub coefs: Vec<f32>,
}

/// Everything the stream says about one tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorMeta {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    pub layout: Layout,
    pub tile_shape: TileShape,
    pub codec: ValueCodec,
    /// Serialised entropy models shared by the tensor's tiles (`StreamCodec::RansShared`).
    pub models: Vec<Vec<u8>>,
    pub sparsification: Option<Sparsification>,
    pub reconstruction: Reconstruction,
    pub tiles: Vec<TileEntry>,
}

/// The stream header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub tensors: Vec<TensorMeta>,
    /// Free-form string metadata (a safetensors `__metadata__`), in its original order.
    pub user_metadata: Vec<(String, String)>,
    /// Length of the data section in bytes.
    pub data_len: u64,
}

/// Errors found in a header.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetadataError {
    #[error("header is {len} bytes, over the cap of {cap} bytes")]
    HeaderTooLarge { len: u64, cap: u64 },
    #[error("header does not decode (corrupt, or an unknown codec/enum id from a newer writer): {reason}")]
    Decode { reason: String },
    #[error("header has {trailing} bytes after its end")]
    TrailingHeaderBytes { trailing: usize },
    #[error("header does not encode: {reason}")]
    Encode { reason: String },
    #[error("duplicate tensor name {name:?}")]
    DuplicateName { name: String },
    #[error("tensor name of {len} bytes is over the cap of {MAX_NAME_BYTES}")]
    NameTooLong { len: usize },
    #[error("tensor {name:?} has rank {rank}, over the cap of {MAX_RANK}")]
    RankTooLarge { name: String, rank: usize },
    #[error("tensor {name:?}: shape {shape:?} overflows when multiplied out")]
    ShapeOverflow { name: String, shape: Vec<u64> },
    #[error("tensor {name:?}: {numel} elements of {dtype} are not a whole number of bytes")]
    FractionalBytes {
        name: String,
        numel: u64,
        dtype: Dtype,
    },
    #[error("tensor {name:?}: tile shape {rows}x{cols} has a zero side")]
    ZeroTileShape { name: String, rows: u64, cols: u64 },
    #[error("tensor {name:?}: {got} tiles listed, the shape and tile shape give {expected}")]
    TileCount {
        name: String,
        expected: u64,
        got: usize,
    },
    #[error("tensor {name:?}: codec {codec:?} is not valid for dtype {dtype}")]
    CodecDtype {
        name: String,
        codec: ValueCodec,
        dtype: Dtype,
    },
    #[error("too many tensors: {count}, cap {MAX_TENSORS}")]
    TooManyTensors { count: usize },
}

/// Seed of the checksum of tile `tile` of tensor number `tensor`: a tile copied to
/// another position fails its checksum.
pub fn tile_seed(tensor: u64, tile: u64) -> u64 {
    // Distinct odd multipliers keep (tensor, tile) pairs apart; the constant keeps the
    // seed of tile (0, 0) away from zero, the unseeded hash.
    tensor
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(tile.wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
        ^ 0x5357_4952_4531_0001
}

impl TensorMeta {
    /// Number of elements, checked for overflow.
    pub fn numel(&self) -> Result<u64, MetadataError> {
        numel(&self.name, &self.shape)
    }

    /// Number of bytes of the dense tensor.
    pub fn byte_len(&self) -> Result<u64, MetadataError> {
        let n = self.numel()?;
        let bits = n
            .checked_mul(self.dtype.bits())
            .ok_or_else(|| self.overflow())?;
        if bits % 8 != 0 {
            return Err(MetadataError::FractionalBytes {
                name: self.name.clone(),
                numel: n,
                dtype: self.dtype,
            });
        }
        Ok(bits / 8)
    }

    /// The 2-D view `[rows, cols]` used for tiling (see [`Layout`]).
    pub fn view_2d(&self) -> Result<(u64, u64), MetadataError> {
        let n = self.numel()?;
        Ok(view_2d(&self.shape, n))
    }

    /// Number of tiles the shape and tile shape give.
    pub fn expected_tiles(&self) -> Result<u64, MetadataError> {
        let TileShape { rows, cols } = self.tile_shape;
        if rows == 0 || cols == 0 {
            return Err(MetadataError::ZeroTileShape {
                name: self.name.clone(),
                rows,
                cols,
            });
        }
        let (r, c) = self.view_2d()?;
        if r == 0 || c == 0 {
            return Ok(0);
        }
        Ok(r.div_ceil(rows) * c.div_ceil(cols))
    }

    fn overflow(&self) -> MetadataError {
        MetadataError::ShapeOverflow {
            name: self.name.clone(),
            shape: self.shape.clone(),
        }
    }

    /// Checks the caps, the shape, and that the tile list matches the tile shape.
    pub fn validate(&self) -> Result<(), MetadataError> {
        if self.name.len() > MAX_NAME_BYTES {
            return Err(MetadataError::NameTooLong {
                len: self.name.len(),
            });
        }
        if self.shape.len() > MAX_RANK {
            return Err(MetadataError::RankTooLarge {
                name: self.name.clone(),
                rank: self.shape.len(),
            });
        }
        self.byte_len()?;
        let expected = self.expected_tiles()?;
        if expected != self.tiles.len() as u64 {
            return Err(MetadataError::TileCount {
                name: self.name.clone(),
                expected,
                got: self.tiles.len(),
            });
        }
        if self.codec == ValueCodec::FloatPlanes && !self.dtype.is_compressible_float() {
            return Err(MetadataError::CodecDtype {
                name: self.name.clone(),
                codec: self.codec,
                dtype: self.dtype,
            });
        }
        Ok(())
    }
}

/// Number of elements of `shape`, checked for overflow (`name` is for the error).
pub fn numel(name: &str, shape: &[u64]) -> Result<u64, MetadataError> {
    shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| MetadataError::ShapeOverflow {
            name: name.to_string(),
            shape: shape.to_vec(),
        })
}

/// The 2-D view of a shape with `numel` elements: `[shape[0], numel / shape[0]]`, and one
/// row for rank 0 and 1.
pub fn view_2d(shape: &[u64], numel: u64) -> (u64, u64) {
    match shape {
        [] => (1, 1),
        [n] => (1, *n),
        [r, ..] if *r == 0 => (0, 0),
        [r, ..] => (*r, numel / r),
    }
}

impl Header {
    /// Encodes the header with postcard.
    pub fn to_postcard(&self) -> Result<Vec<u8>, MetadataError> {
        let bytes = postcard::to_stdvec(self).map_err(|e| MetadataError::Encode {
            reason: e.to_string(),
        })?;
        if bytes.len() as u64 > MAX_HEADER_BYTES {
            return Err(MetadataError::HeaderTooLarge {
                len: bytes.len() as u64,
                cap: MAX_HEADER_BYTES,
            });
        }
        Ok(bytes)
    }

    /// Decodes and validates a header. `bytes` must be exactly the header.
    pub fn from_postcard(bytes: &[u8]) -> Result<Header, MetadataError> {
        if bytes.len() as u64 > MAX_HEADER_BYTES {
            return Err(MetadataError::HeaderTooLarge {
                len: bytes.len() as u64,
                cap: MAX_HEADER_BYTES,
            });
        }
        // postcard sizes every Vec from a varint it read, but only ever allocates as it
        // consumes input bytes (serde's `size_hint::cautious`), so a lying length
        // cannot make it allocate more than ~the header's size.
        let (header, rest): (Header, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|e| MetadataError::Decode {
                reason: e.to_string(),
            })?;
        if !rest.is_empty() {
            return Err(MetadataError::TrailingHeaderBytes {
                trailing: rest.len(),
            });
        }
        header.validate()?;
        Ok(header)
    }

    /// Checks every tensor and that names are unique.
    pub fn validate(&self) -> Result<(), MetadataError> {
        if self.tensors.len() > MAX_TENSORS {
            return Err(MetadataError::TooManyTensors {
                count: self.tensors.len(),
            });
        }
        let mut seen = HashSet::with_capacity(self.tensors.len());
        for t in &self.tensors {
            t.validate()?;
            if !seen.insert(t.name.as_str()) {
                return Err(MetadataError::DuplicateName {
                    name: t.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Looks a tensor up by name.
    pub fn tensor(&self, name: &str) -> Option<(usize, &TensorMeta)> {
        self.tensors
            .iter()
            .enumerate()
            .find(|(_, t)| t.name == name)
    }
}

#[cfg(test)]
mod tests;
