//! Tensors in memory and on disk, files in and out, and how tensors are cut into tiles.
//!
//! Takes safetensors and NumPy `.npy` files and gives tensors: [`Tensor`] (name, dtype,
//! shape, little-endian bytes) in a [`TensorFile`] that keeps the safetensors
//! `__metadata__`, or, for files of any size, [`input::InputFile`], which reads only the
//! header up front and lends each tensor as a [`TensorRef`] whose bytes are read by range
//! ([`source::TensorBytes`]). Writes tensors back, streaming
//! ([`safetensors::SafetensorsWriter`], [`npy::npy_header`]), through [`output::Output`],
//! which never leaves a partial file. [`tiling`] maps a tensor's 2-D view onto the tile
//! grid of docs/SPEC.md §2. [`Tensor::to_array_f32`] gives an [`ndarray`] view.
//!
//! The crate's one `unsafe` call is the read-only memory map in [`mmap`].
#![deny(unsafe_code)]

pub mod builtin;
pub mod input;
pub mod layout;
pub mod mmap;
pub mod npy;
pub mod output;
pub mod safetensors;
pub mod source;
pub mod tiling;

pub use self::safetensors::{read_safetensors, write_safetensors};
pub use source::TensorBytes;

use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
pub use sparsewire_metadata::{Dtype, Layout, TileShape};

/// Errors reading or writing tensor files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error("safetensors: {0}")]
    SafeTensors(#[from] ::safetensors::SafeTensorError),
    #[error("safetensors header: {reason}")]
    Header { reason: String },
    #[error("tensor name {name:?} appears twice")]
    DuplicateName { name: String },
    #[error("is a directory (expected a .safetensors or .npy file)")]
    IsDirectory,
    #[error("is a .swire stream already: use `sparsewire decompress` (or inspect)")]
    IsStream,
    #[error("is a PyTorch pickle ({ext}); sparsewire never unpickles: convert it to safetensors first (safetensors.torch.save_file(torch.load(path), \"model.safetensors\"))")]
    Pickle { ext: String },
    #[error("cannot tell the format (expected .safetensors or .npy, by extension or content)")]
    UnknownFormat,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("tensor {name:?}: {source}")]
    Sparse {
        name: String,
        source: sparsewire_sparse::SparseError,
    },
    #[error("npy: {reason}")]
    Npy { reason: String },
    #[error("dtype {dtype} is not supported by {what}")]
    UnsupportedDtype { dtype: String, what: &'static str },
    #[error("tensor {name:?}: {got} bytes for shape {shape:?} of {dtype}, {expected} expected")]
    ByteLength {
        name: String,
        dtype: Dtype,
        shape: Vec<u64>,
        expected: u64,
        got: u64,
    },
    #[error(transparent)]
    Metadata(#[from] sparsewire_metadata::MetadataError),
}

/// One tensor: its bytes are little-endian values in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    pub data: Vec<u8>,
}

impl Tensor {
    /// A tensor, checking that `data` has the size that dtype and shape give.
    pub fn new(
        name: impl Into<String>,
        dtype: Dtype,
        shape: Vec<u64>,
        data: Vec<u8>,
    ) -> Result<Self, FormatError> {
        let name = name.into();
        let expected = byte_len(&name, dtype, &shape)?;
        if expected != data.len() as u64 {
            return Err(FormatError::ByteLength {
                name,
                dtype,
                shape,
                expected,
                got: data.len() as u64,
            });
        }
        Ok(Tensor {
            name,
            dtype,
            shape,
            data,
        })
    }

    /// An f32 tensor from values.
    pub fn from_f32(name: impl Into<String>, shape: Vec<u64>, values: &[f32]) -> Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::new(name, Dtype::F32, shape, data).expect("values match the shape")
    }

    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }

    /// The borrowed view.
    pub fn as_ref(&self) -> TensorRef<'_> {
        TensorRef {
            name: &self.name,
            dtype: self.dtype,
            shape: &self.shape,
            bytes: &self.data,
        }
    }

    /// The values as f32 (F32, F16 and BF16 tensors), `None` for other dtypes.
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        to_f32(self.dtype, &self.data)
    }

    /// The values as an n-dimensional f32 array (float dtypes only).
    pub fn to_array_f32(&self) -> Option<ArrayD<f32>> {
        let shape: Vec<usize> = self.shape.iter().map(|&d| d as usize).collect();
        ArrayD::from_shape_vec(IxDyn(&shape), self.to_f32_vec()?).ok()
    }
}

/// f32 values as little-endian bytes of a float dtype (rounded to nearest even for F16
/// and BF16); `None` for other dtypes.
pub fn from_f32(dtype: Dtype, v: &[f32]) -> Option<Vec<u8>> {
    Some(match dtype {
        Dtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Dtype::F16 => v
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_le_bytes())
            .collect(),
        Dtype::BF16 => v
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
            .collect(),
        _ => return None,
    })
}

/// Little-endian values of a float dtype as f32; `None` for other dtypes.
pub fn to_f32(dtype: Dtype, d: &[u8]) -> Option<Vec<f32>> {
    {
        Some(match dtype {
            Dtype::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => d
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bf16_to_f32(d),
            _ => return None,
        })
    }
}

/// BF16 bytes to f32, as `half::bf16::to_f32` converts them (a NaN keeps its payload and
/// is made quiet), in blocks of 16 whose fixed-length body vectorises: the per-value loop
/// was 16% of a sparse encode of MiniLM bf16.
fn bf16_to_f32(d: &[u8]) -> Vec<f32> {
    let mut out = vec![0f32; d.len() / 2];
    bf16_to_f32_into(d, &mut out);
    out
}

/// [`to_f32`] of BF16 bytes into `out`: `min(d.len() / 2, out.len())` values, converted as
/// `half` converts them. For callers that widen a block at a time into a buffer of their
/// own.
#[inline]
pub fn bf16_to_f32_into(d: &[u8], out: &mut [f32]) {
    #[inline(always)]
    fn one(lo: u8, hi: u8) -> f32 {
        let b = u16::from_le_bytes([lo, hi]) as u32;
        let nan = b & 0x7fff > 0x7f80;
        f32::from_bits((b | if nan { 0x40 } else { 0 }) << 16)
    }
    let n = (d.len() / 2).min(out.len());
    let (d, out) = (&d[..2 * n], &mut out[..n]);
    let mut blocks = d.chunks_exact(32);
    let mut outs = out.chunks_exact_mut(16);
    for (o, c) in (&mut outs).zip(&mut blocks) {
        for i in 0..16 {
            o[i] = one(c[2 * i], c[2 * i + 1]);
        }
    }
    for (o, c) in outs
        .into_remainder()
        .iter_mut()
        .zip(blocks.remainder().chunks_exact(2))
    {
        *o = one(c[0], c[1]);
    }
}

/// A tensor whose bytes are anywhere ([`TensorBytes`]: a slice, a file range).
#[derive(Clone, Copy)]
pub struct TensorRef<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub shape: &'a [u64],
    pub bytes: &'a dyn TensorBytes,
}

impl std::fmt::Debug for TensorRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorRef")
            .field("name", &self.name)
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("bytes", &self.bytes.size())
            .finish()
    }
}

impl TensorRef<'_> {
    /// Number of elements (the shape is checked when the view is made).
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }

    /// Loads the bytes into an owned tensor.
    pub fn to_tensor(&self) -> Result<Tensor, FormatError> {
        let data = self.bytes.read(0, self.bytes.size() as usize)?.into_owned();
        Tensor::new(self.name, self.dtype, self.shape.to_vec(), data)
    }
}

/// Bytes of a tensor of `dtype` and `shape`, checked for overflow and whole bytes.
pub fn byte_len(name: &str, dtype: Dtype, shape: &[u64]) -> Result<u64, FormatError> {
    let n = sparsewire_metadata::numel(name, shape)?;
    let bits = n.checked_mul(dtype.bits()).ok_or_else(|| {
        sparsewire_metadata::MetadataError::ShapeOverflow {
            name: name.to_string(),
            shape: shape.to_vec(),
        }
    })?;
    Ok(bits.div_ceil(8))
}

/// A set of tensors and the file's free-form string metadata.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TensorFile {
    pub tensors: Vec<Tensor>,
    pub metadata: Vec<(String, String)>,
}

impl TensorFile {
    /// Total bytes of all tensors.
    pub fn byte_len(&self) -> u64 {
        self.tensors.iter().map(|t| t.data.len() as u64).sum()
    }
}

pub(crate) fn from_st_dtype(d: ::safetensors::Dtype) -> Result<Dtype, FormatError> {
    use ::safetensors::Dtype as S;
    Ok(match d {
        S::BOOL => Dtype::BOOL,
        S::U8 => Dtype::U8,
        S::I8 => Dtype::I8,
        S::I16 => Dtype::I16,
        S::U16 => Dtype::U16,
        S::F16 => Dtype::F16,
        S::BF16 => Dtype::BF16,
        S::I32 => Dtype::I32,
        S::U32 => Dtype::U32,
        S::F32 => Dtype::F32,
        S::F64 => Dtype::F64,
        S::I64 => Dtype::I64,
        S::U64 => Dtype::U64,
        S::F8_E5M2 => Dtype::F8_E5M2,
        S::F8_E4M3 => Dtype::F8_E4M3,
        S::F8_E8M0 => Dtype::F8_E8M0,
        S::F8_E4M3FNUZ => Dtype::F8_E4M3FNUZ,
        S::F8_E5M2FNUZ => Dtype::F8_E5M2FNUZ,
        S::C64 => Dtype::C64,
        S::F4 => Dtype::F4,
        S::F6_E2M3 => Dtype::F6_E2M3,
        S::F6_E3M2 => Dtype::F6_E3M2,
        other => {
            return Err(FormatError::UnsupportedDtype {
                dtype: format!("{other:?}"),
                what: "sparsewire",
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every BF16 bit pattern, at every offset within a block and in the remainder,
    /// converts to the bits `half` gives (NaNs made quiet the same way).
    #[test]
    fn bf16_conversion_matches_half_on_every_bit_pattern() {
        let bytes: Vec<u8> = (0..=u16::MAX).flat_map(|b| b.to_le_bytes()).collect();
        for skip in [0usize, 1, 15] {
            let d = &bytes[2 * skip..];
            let got = to_f32(Dtype::BF16, d).unwrap();
            assert_eq!(got.len(), d.len() / 2);
            for (g, c) in got.iter().zip(d.chunks_exact(2)) {
                let want = bf16::from_le_bytes([c[0], c[1]]).to_f32();
                assert_eq!(g.to_bits(), want.to_bits(), "bf16 {:02x}{:02x}", c[1], c[0]);
            }
        }
    }
}
