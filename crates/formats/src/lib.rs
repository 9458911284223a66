//! Tensors in memory and on disk, and how they are cut into tiles.
//!
//! Takes safetensors and NumPy `.npy` files and gives [`Tensor`]s (name, dtype, shape,
//! little-endian bytes) in a [`TensorFile`] that keeps the safetensors `__metadata__`; writes
//! them back. [`tiling`] maps a tensor's 2-D view onto the tile grid of docs/SPEC.md §2 and
//! gathers and scatters tiles. [`Tensor::to_array_f32`] gives an [`ndarray`] view of the
//! values for the stages that compute on them.
#![forbid(unsafe_code)]

pub mod npy;
pub mod tiling;

use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
pub use sparsewire_metadata::{Dtype, Layout, TileShape};

/// Errors reading or writing tensor files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error("safetensors: {0}")]
    SafeTensors(#[from] safetensors::SafeTensorError),
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
        let n = sparsewire_metadata::numel(&name, &shape)?;
        let expected = n
            .checked_mul(dtype.bits())
            .map(|b| b.div_ceil(8))
            .ok_or_else(|| sparsewire_metadata::MetadataError::ShapeOverflow {
                name: name.clone(),
                shape: shape.clone(),
            })?;
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
            Dtype::BF16 => d
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            _ => return None,
        })
    }
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

fn from_st_dtype(d: safetensors::Dtype) -> Result<Dtype, FormatError> {
    use safetensors::Dtype as S;
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

fn to_st_dtype(d: Dtype) -> safetensors::Dtype {
    use safetensors::Dtype as S;
    match d {
        Dtype::BOOL => S::BOOL,
        Dtype::U8 => S::U8,
        Dtype::I8 => S::I8,
        Dtype::I16 => S::I16,
        Dtype::U16 => S::U16,
        Dtype::F16 => S::F16,
        Dtype::BF16 => S::BF16,
        Dtype::I32 => S::I32,
        Dtype::U32 => S::U32,
        Dtype::F32 => S::F32,
        Dtype::F64 => S::F64,
        Dtype::I64 => S::I64,
        Dtype::U64 => S::U64,
        Dtype::F8_E5M2 => S::F8_E5M2,
        Dtype::F8_E4M3 => S::F8_E4M3,
        Dtype::F8_E8M0 => S::F8_E8M0,
        Dtype::F8_E4M3FNUZ => S::F8_E4M3FNUZ,
        Dtype::F8_E5M2FNUZ => S::F8_E5M2FNUZ,
        Dtype::C64 => S::C64,
        Dtype::F4 => S::F4,
        Dtype::F6_E2M3 => S::F6_E2M3,
        Dtype::F6_E3M2 => S::F6_E3M2,
    }
}

/// Reads a safetensors file from memory; tensors in file order (by data offset), metadata
/// sorted by key.
pub fn read_safetensors(bytes: &[u8]) -> Result<TensorFile, FormatError> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)?;
    let st = safetensors::SafeTensors::deserialize(bytes)?;
    // `iter` follows a hash map's order, which changes from run to run; file order (by
    // data offset, then name for empty tensors) keeps every stream reproducible.
    let mut views: Vec<_> = st.iter().collect();
    views.sort_by_key(|(name, v)| (v.data().as_ptr() as usize, name.to_string()));
    let mut tensors = Vec::new();
    for (name, view) in views {
        let dtype = from_st_dtype(view.dtype())?;
        let shape = view.shape().iter().map(|&d| d as u64).collect();
        tensors.push(Tensor::new(name, dtype, shape, view.data().to_vec())?);
    }
    let mut metadata: Vec<(String, String)> = meta
        .metadata()
        .clone()
        .map(|m| m.into_iter().collect())
        .unwrap_or_default();
    metadata.sort();
    Ok(TensorFile { tensors, metadata })
}

/// Writes tensors as a safetensors file.
pub fn write_safetensors(file: &TensorFile) -> Result<Vec<u8>, FormatError> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = file
        .tensors
        .iter()
        .map(|t| {
            let shape = t.shape.iter().map(|&d| d as usize).collect();
            let v = safetensors::tensor::TensorView::new(to_st_dtype(t.dtype), shape, &t.data)?;
            Ok((t.name.clone(), v))
        })
        .collect::<Result<_, FormatError>>()?;
    let meta = if file.metadata.is_empty() {
        None
    } else {
        Some(file.metadata.iter().cloned().collect())
    };
    Ok(safetensors::serialize(views, meta)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip_keeps_metadata_and_odd_dtypes() {
        let file = TensorFile {
            tensors: vec![
                Tensor::from_f32("w", vec![2, 3], &[1.0, -2.0, 0.5, 0.0, -0.0, 7.0]),
                Tensor::new(
                    "ids",
                    Dtype::I64,
                    vec![2],
                    vec![1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
                )
                .unwrap(),
                Tensor::new("scalar", Dtype::BF16, vec![], vec![0x80, 0x3f]).unwrap(),
                Tensor::new("empty", Dtype::F16, vec![0, 4], vec![]).unwrap(),
            ],
            metadata: vec![("format".into(), "pt".into())],
        };
        let bytes = write_safetensors(&file).unwrap();
        let back = read_safetensors(&bytes).unwrap();
        assert_eq!(back.metadata, file.metadata);
        for t in &file.tensors {
            assert!(back.tensors.contains(t), "{} lost", t.name);
        }
        let w = back.tensors.iter().find(|t| t.name == "w").unwrap();
        assert_eq!(w.to_array_f32().unwrap().shape(), &[2, 3]);
    }

    #[test]
    fn tensors_come_back_in_file_order_every_time() {
        let file = TensorFile {
            tensors: (0..12)
                .map(|i| {
                    Tensor::from_f32(
                        format!("t{i:02}"),
                        vec![i + 1],
                        &vec![i as f32; i as usize + 1],
                    )
                })
                .collect(),
            metadata: vec![],
        };
        let bytes = write_safetensors(&file).unwrap();
        let first: Vec<String> = read_safetensors(&bytes)
            .unwrap()
            .tensors
            .into_iter()
            .map(|t| t.name)
            .collect();
        for _ in 0..20 {
            let again: Vec<String> = read_safetensors(&bytes)
                .unwrap()
                .tensors
                .into_iter()
                .map(|t| t.name)
                .collect();
            assert_eq!(again, first);
        }
    }

    #[test]
    fn byte_length_is_checked() {
        assert!(matches!(
            Tensor::new("x", Dtype::F32, vec![3], vec![0; 11]),
            Err(FormatError::ByteLength { expected: 12, .. })
        ));
    }
}
