//! A tile's stored values to dense f32, dropped elements zero: what the reconstruction
//! engine starts from, and what a batched multiply reads.
//!
//! [`expand_f32`] dispatches at run time: the AVX-512 kernel ([`crate::avx512`], a masked
//! load of the next `popcount` values and `vpexpand` to their columns) where the CPU has
//! it and the dtype is BF16 or F32, the scalar reference [`expand_f32_ref`] otherwise. The
//! two agree bit for bit (tested). Either checks that the kept values number exactly the
//! mask's ones as it reads, so a [`SparseTileRef::new_uncounted`] view is safe to expand.

use crate::tile::{value_bytes, SparseTileRef};
use crate::SparseError;
use sparsewire_metadata::Dtype;

/// A tile's values as stored: every value, or a sparse tile.
#[derive(Debug, Clone, Copy)]
pub enum Values<'a> {
    /// `rows * cols` values of `dtype`, little-endian, row-major.
    Dense {
        dtype: Dtype,
        bytes: &'a [u8],
    },
    Sparse(SparseTileRef<'a>),
}

impl Values<'_> {
    pub fn dtype(&self) -> Dtype {
        match self {
            Values::Dense { dtype, .. } => *dtype,
            Values::Sparse(t) => t.dtype(),
        }
    }

    /// Elements the values expand to (`None` for dense values of an unsupported dtype).
    pub fn elements(&self) -> Option<usize> {
        match self {
            Values::Dense { dtype, bytes } => Some(bytes.len() / value_bytes(*dtype).ok()?),
            Values::Sparse(t) => Some(t.rows() * t.cols()),
        }
    }
}

/// Value `i` of little-endian `bytes` of a float dtype, as f32.
#[inline]
pub fn value_at(dtype: Dtype, bytes: &[u8], i: usize) -> f32 {
    match dtype {
        Dtype::BF16 => {
            f32::from_bits((u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]) as u32) << 16)
        }
        Dtype::F16 => {
            half::f16::from_bits(u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]])).to_f32()
        }
        _ => f32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes")),
    }
}

/// The float dtypes that expand (F32, F16, BF16).
fn float_bytes(dtype: Dtype) -> Result<usize, SparseError> {
    match dtype {
        Dtype::F32 => Ok(4),
        Dtype::F16 | Dtype::BF16 => Ok(2),
        dtype => Err(SparseError::NotFloat { dtype }),
    }
}

fn check_out(v: &Values<'_>, out: &[f32]) -> Result<usize, SparseError> {
    let vb = float_bytes(v.dtype())?;
    let n = match v {
        Values::Dense { bytes, .. } => {
            if bytes.len() % vb != 0 {
                return Err(SparseError::Length {
                    array: "dense values (bytes)",
                    expected: bytes.len() / vb * vb,
                    got: bytes.len(),
                });
            }
            bytes.len() / vb
        }
        Values::Sparse(t) => t.rows() * t.cols(),
    };
    if out.len() != n {
        return Err(SparseError::Length {
            array: "expanded output",
            expected: n,
            got: out.len(),
        });
    }
    Ok(vb)
}

/// The scalar reference: every element in order.
pub fn expand_f32_ref(v: Values<'_>, out: &mut [f32]) -> Result<(), SparseError> {
    let vb = check_out(&v, out)?;
    match v {
        Values::Dense { dtype, bytes } => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = value_at(dtype, bytes, i);
            }
        }
        Values::Sparse(t) => {
            let (values, dtype) = (t.values(), t.dtype());
            let n = values.len() / vb;
            let mask = t.mask();
            let mut k = 0;
            for (i, o) in out.iter_mut().enumerate() {
                if mask.is_kept(i) {
                    if k == n {
                        return Err(SparseError::KeptCount {
                            kept: mask.kept(),
                            values: n,
                        });
                    }
                    *o = value_at(dtype, values, k);
                    k += 1;
                } else {
                    *o = 0.0;
                }
            }
            if k != n {
                return Err(SparseError::KeptCount { kept: k, values: n });
            }
        }
    }
    Ok(())
}

/// Expands `v` into `out` (exactly the tile's elements): the fastest kernel this CPU has.
/// On an error `out` is unspecified.
pub fn expand_f32(v: Values<'_>, out: &mut [f32]) -> Result<(), SparseError> {
    check_out(&v, out)?;
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    if crate::avx512::available() && crate::avx512::expand(&v, out)? {
        return Ok(());
    }
    expand_f32_ref(v, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Mask, SparseTile};
    use proptest::prelude::*;

    fn store(dtype: Dtype, v: &[f32]) -> Vec<u8> {
        match dtype {
            Dtype::BF16 => v
                .iter()
                .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                .collect(),
            Dtype::F16 => v
                .iter()
                .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                .collect(),
            _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    proptest! {
        #[test]
        fn dispatch_matches_the_reference(rows in 1usize..9, cols in 1usize..100, density in 0.0f64..=1.0, seed in any::<u64>(), dt in 0usize..3) {
            if !crate::simd_test_guard("expand_f32") {
                return Ok(());
            }
            let dtype = [Dtype::BF16, Dtype::F32, Dtype::F16][dt];
            let mut s = seed | 1;
            let mut rnd = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; (s >> 11) as f64 / (1u64 << 53) as f64 };
            let w: Vec<f32> = (0..rows * cols).map(|_| (rnd() as f32 - 0.5) * 4.0).collect();
            let bytes = store(dtype, &w);
            let mask = Mask::from_fn(rows * cols, |_| rnd() < density);
            let tile = SparseTile::from_dense(rows, cols, dtype, &bytes, mask).unwrap();
            for v in [Values::Dense { dtype, bytes: &bytes }, Values::Sparse(tile.as_ref())] {
                let (mut a, mut b) = (vec![9f32; rows * cols], vec![7f32; rows * cols]);
                expand_f32(v, &mut a).unwrap();
                expand_f32_ref(v, &mut b).unwrap();
                prop_assert_eq!(a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), b.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
            }
            // Too few and too many values for the mask: an error on both paths, never a read
            // out of bounds.
            let t = tile.as_ref();
            if t.mask().kept() > 0 {
                let vb = t.value_bytes();
                let short = SparseTileRef::new_uncounted(rows, cols, dtype, t.mask(), &t.values()[vb..]).unwrap();
                prop_assert!(expand_f32(Values::Sparse(short), &mut vec![0f32; rows * cols]).is_err());
                prop_assert!(expand_f32_ref(Values::Sparse(short), &mut vec![0f32; rows * cols]).is_err());
            }
            if t.mask().kept() < rows * cols {
                let mut more = t.values().to_vec();
                more.extend_from_slice(&t.values()[..t.value_bytes().min(t.values().len())]);
                more.resize(t.values().len() + t.value_bytes(), 0);
                let long = SparseTileRef::new_uncounted(rows, cols, dtype, t.mask(), &more).unwrap();
                prop_assert!(expand_f32(Values::Sparse(long), &mut vec![0f32; rows * cols]).is_err());
            }
        }
    }
}
