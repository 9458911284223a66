//! Sparsity masks (docs/SPEC.md §6, reserved): which elements of a tile were kept.
//!
//! Takes the kept/dropped decision of the sparsification engine as a [`Mask`] (a bitvec
//! bitmap, one bit per element of a tile, row-major) and gives its coded form; the
//! reconstruction engine decodes it back. This foundation release has the plain bitmask
//! encoding; run-length, delta indices and N:M codes, chosen per tile as the smallest,
//! arrive with the sparsification engine (issue #3). A dense tensor has no mask.
#![forbid(unsafe_code)]

use bitvec::prelude::*;
pub use sparsewire_metadata::MaskEncoding;

/// Errors decoding a mask.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MaskError {
    #[error("mask of {len} elements needs {expected} bytes, got {got}")]
    Length {
        len: usize,
        expected: usize,
        got: usize,
    },
    #[error("mask encoding {0:?} is not implemented by this version")]
    Unsupported(MaskEncoding),
    #[error("padding bits after the last element are not zero")]
    Padding,
}

/// Which elements of a tile are kept (`true`) or dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    bits: BitVec<u8, Lsb0>,
}

impl Mask {
    /// All `len` elements kept.
    pub fn dense(len: usize) -> Self {
        Mask {
            bits: bitvec![u8, Lsb0; 1; len],
        }
    }

    /// From one flag per element.
    pub fn from_kept(kept: impl IntoIterator<Item = bool>) -> Self {
        Mask {
            bits: kept.into_iter().collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.bits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bits.is_empty()
    }

    pub fn is_kept(&self, i: usize) -> bool {
        self.bits[i]
    }

    /// Number of kept elements.
    pub fn kept(&self) -> usize {
        self.bits.count_ones()
    }

    /// Kept fraction, 1 for an empty mask.
    pub fn density(&self) -> f64 {
        if self.is_empty() {
            1.0
        } else {
            self.kept() as f64 / self.len() as f64
        }
    }

    /// Order-0 entropy bound of the mask, in bits per element: H(density).
    pub fn entropy_bits_per_element(&self) -> f64 {
        let p = self.density();
        if p <= 0.0 || p >= 1.0 {
            0.0
        } else {
            -(p * p.log2() + (1.0 - p) * (1.0 - p).log2())
        }
    }

    /// Indices of kept elements, ascending.
    pub fn kept_indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.bits.iter_ones()
    }

    /// Codes the mask.
    pub fn encode(&self, encoding: MaskEncoding) -> Result<Vec<u8>, MaskError> {
        match encoding {
            MaskEncoding::Bitmask => Ok(self.bits.as_raw_slice().to_vec()),
            other => Err(MaskError::Unsupported(other)),
        }
    }

    /// Decodes a mask of `len` elements.
    pub fn decode(encoding: MaskEncoding, bytes: &[u8], len: usize) -> Result<Self, MaskError> {
        match encoding {
            MaskEncoding::Bitmask => {
                let expected = len.div_ceil(8);
                if bytes.len() != expected {
                    return Err(MaskError::Length {
                        len,
                        expected,
                        got: bytes.len(),
                    });
                }
                let mut bits = BitVec::<u8, Lsb0>::from_slice(bytes);
                if bits[len..].any() {
                    return Err(MaskError::Padding);
                }
                bits.truncate(len);
                Ok(Mask { bits })
            }
            other => Err(MaskError::Unsupported(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmask_round_trip_and_errors() {
        for len in [0usize, 1, 7, 8, 9, 100] {
            let m = Mask::from_kept((0..len).map(|i| i % 3 != 0));
            let b = m.encode(MaskEncoding::Bitmask).unwrap();
            assert_eq!(Mask::decode(MaskEncoding::Bitmask, &b, len).unwrap(), m);
        }
        assert!(Mask::decode(MaskEncoding::Bitmask, &[0xff], 3).is_err());
        assert!(Mask::decode(MaskEncoding::Bitmask, &[0, 0], 3).is_err());
        let half = Mask::from_kept((0..100).map(|i| i % 2 == 0));
        assert!((half.entropy_bits_per_element() - 1.0).abs() < 1e-12);
        assert_eq!(Mask::dense(5).density(), 1.0);
    }
}
