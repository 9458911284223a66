//! The one mask type: which elements of a tile (or a tensor's 2-D view) are kept.
//!
//! A mask is one bit per element, row-major, packed least significant bit first: bit `i`
//! of byte `i / 8` is element `i`, as SPEC §6.1's `Bitmask` stores it. [`Mask`] owns its
//! bits (a `bitvec` `BitVec<u8, Lsb0>`); [`MaskRef`] borrows them, so a stored fast-profile
//! bitmask is used in place. Padding bits past the last element are always zero.

use crate::SparseError;
use bitvec::prelude::*;

/// Which elements are kept (`true`) or dropped. Owned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mask {
    bits: BitVec<u8, Lsb0>,
}

/// A borrowed mask: packed bits (LSB first) and the element count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskRef<'a> {
    bytes: &'a [u8],
    len: usize,
}

impl Mask {
    /// All `len` elements kept.
    pub fn dense(len: usize) -> Self {
        Mask {
            bits: bitvec![u8, Lsb0; 1; len],
        }
    }

    /// All `len` elements dropped.
    pub fn empty(len: usize) -> Self {
        Mask {
            bits: bitvec![u8, Lsb0; 0; len],
        }
    }

    /// From one flag per element.
    pub fn from_bools(kept: &[bool]) -> Self {
        let mut bytes = vec![0u8; kept.len().div_ceil(8)];
        for (b, chunk) in bytes.iter_mut().zip(kept.chunks(8)) {
            for (j, &k) in chunk.iter().enumerate() {
                *b |= (k as u8) << j;
            }
        }
        Self::from_packed(bytes, kept.len()).expect("packed from flags")
    }

    /// Kept where `f(i)` holds, for `i` in `0..len`.
    pub fn from_fn(len: usize, mut f: impl FnMut(usize) -> bool) -> Self {
        let mut bytes = vec![0u8; len.div_ceil(8)];
        for i in 0..len {
            bytes[i / 8] |= (f(i) as u8) << (i % 8);
        }
        Self::from_packed(bytes, len).expect("packed from a function")
    }

    /// From packed bits (LSB first): `bytes` must be exactly `ceil(len / 8)` long and its
    /// padding bits zero.
    pub fn from_packed(bytes: Vec<u8>, len: usize) -> Result<Self, SparseError> {
        MaskRef::new(&bytes, len)?;
        let mut bits = BitVec::from_vec(bytes);
        bits.truncate(len);
        Ok(Mask { bits })
    }

    /// The borrowed view.
    pub fn as_ref(&self) -> MaskRef<'_> {
        MaskRef {
            bytes: self.bits.as_raw_slice(),
            len: self.bits.len(),
        }
    }

    pub fn len(&self) -> usize {
        self.bits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bits.is_empty()
    }

    pub fn is_kept(&self, i: usize) -> bool {
        // Read from the packed bytes: bitvec's indexing was a tenth of a sparse encode.
        assert!(
            i < self.bits.len(),
            "mask index {i} out of {}",
            self.bits.len()
        );
        self.as_ref().is_kept(i)
    }

    /// Sets element `i`.
    pub fn set(&mut self, i: usize, kept: bool) {
        self.bits.set(i, kept);
    }

    /// Number of kept elements.
    pub fn kept(&self) -> usize {
        popcount(self.as_bytes())
    }

    /// Kept fraction, 1 for an empty mask.
    pub fn density(&self) -> f64 {
        self.as_ref().density()
    }

    /// Indices of kept elements, ascending.
    pub fn kept_indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.bits.iter_ones()
    }

    /// The packed bits (LSB first), `ceil(len / 8)` bytes, padding bits zero.
    pub fn as_bytes(&self) -> &[u8] {
        self.bits.as_raw_slice()
    }

    /// The bits as a `bitvec` slice.
    pub fn bits(&self) -> &BitSlice<u8, Lsb0> {
        &self.bits
    }

    /// Appends the bits of `other`.
    pub fn extend(&mut self, other: MaskRef<'_>) {
        self.bits.extend_from_bitslice(other.bits());
    }

    /// Appends bits.
    pub fn extend_from_bits(&mut self, bits: &BitSlice<u8, Lsb0>) {
        self.bits.extend_from_bitslice(bits);
    }

    /// Number of runs of equal flags (see [`MaskRef::runs`]).
    pub fn runs(&self) -> usize {
        self.as_ref().runs()
    }

    /// Order-0 entropy bound of the mask, in bits per element: H(density).
    pub fn entropy_bits_per_element(&self) -> f64 {
        binary_entropy(self.density())
    }
}

impl<'a> MaskRef<'a> {
    /// A view of `len` elements over packed bits: `bytes` must be exactly `ceil(len / 8)`
    /// long and its padding bits zero.
    pub fn new(bytes: &'a [u8], len: usize) -> Result<Self, SparseError> {
        if bytes.len() != len.div_ceil(8) {
            return Err(SparseError::Length {
                array: "mask bytes",
                expected: len.div_ceil(8),
                got: bytes.len(),
            });
        }
        let tail = len % 8;
        if tail != 0 && bytes[bytes.len() - 1] >> tail != 0 {
            return Err(SparseError::MaskPadding);
        }
        Ok(MaskRef { bytes, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_kept(&self, i: usize) -> bool {
        debug_assert!(i < self.len);
        self.bytes[i / 8] >> (i % 8) & 1 == 1
    }

    /// The packed bits.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The bits as a `bitvec` slice.
    pub fn bits(&self) -> &'a BitSlice<u8, Lsb0> {
        &self.bytes.view_bits::<Lsb0>()[..self.len]
    }

    /// Number of kept elements (a popcount over the packed bytes).
    pub fn kept(&self) -> usize {
        popcount(self.bytes)
    }

    /// Kept fraction, 1 for an empty mask.
    pub fn density(&self) -> f64 {
        if self.len == 0 {
            1.0
        } else {
            self.kept() as f64 / self.len as f64
        }
    }

    /// Indices of kept elements, ascending (a trailing-zeros walk over the bytes).
    pub fn kept_indices(&self) -> impl Iterator<Item = usize> + 'a {
        self.bytes.iter().enumerate().flat_map(|(j, &byte)| {
            let mut b = byte;
            std::iter::from_fn(move || {
                (b != 0).then(|| {
                    let i = j * 8 + b.trailing_zeros() as usize;
                    b &= b - 1;
                    i
                })
            })
        })
    }

    /// An owned copy.
    pub fn to_owned(&self) -> Mask {
        Mask::from_packed(self.bytes.to_vec(), self.len).expect("a valid view")
    }

    /// Number of runs of equal flags (1 for a uniform mask, 0 for an empty one), counted on
    /// the packed bytes: each run costs run-length coding at least one byte.
    pub fn runs(&self) -> usize {
        if self.len == 0 {
            return 0;
        }
        let b = self.bytes;
        let mut changes = 0usize;
        let mut prev = b[0] & 1;
        for (i, &byte) in b.iter().enumerate() {
            // Transitions inside the byte, and from the previous byte's last bit.
            let valid = if i + 1 == b.len() && !self.len.is_multiple_of(8) {
                self.len % 8
            } else {
                8
            };
            let x = byte as u16 | (prev as u16) << 8;
            let shifted = (byte as u16) << 1 | prev as u16;
            let diff = (x ^ shifted) as u8 & (((1u16 << valid) - 1) as u8);
            changes += diff.count_ones() as usize;
            prev = byte >> (valid - 1) & 1;
        }
        changes + 1
    }
}

/// Set bits in `bytes`, eight bytes a step (a byte at a time was a few percent of a
/// sparse encode: the x86-64 baseline has no popcount instruction, so each is a dozen
/// operations whatever its width).
pub(crate) fn popcount(bytes: &[u8]) -> usize {
    let mut words = bytes.chunks_exact(8);
    let whole: usize = (&mut words)
        .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")).count_ones() as usize)
        .sum();
    whole
        + words
            .remainder()
            .iter()
            .map(|b| b.count_ones() as usize)
            .sum::<usize>()
}

/// H(p) in bits.
pub fn binary_entropy(p: f64) -> f64 {
    if p <= 0.0 || p >= 1.0 {
        0.0
    } else {
        -(p * p.log2() + (1.0 - p) * (1.0 - p).log2())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popcount_counts_every_bit() {
        let mut seed = 11u32;
        for n in [0usize, 1, 7, 8, 9, 15, 16, 17, 100, 1003] {
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            let want: usize = bytes
                .iter()
                .map(|b| (0..8).filter(|j| b >> j & 1 == 1).count())
                .sum();
            assert_eq!(popcount(&bytes), want, "{n} bytes");
            let ones = vec![0xffu8; n];
            assert_eq!(popcount(&ones), 8 * n);
        }
    }

    #[test]
    fn run_count_matches_a_scan() {
        for flags in [
            vec![],
            vec![true],
            vec![
                true, false, false, true, true, true, false, true, false, false,
            ],
        ] {
            let m = Mask::from_bools(&flags);
            let scan = if flags.is_empty() {
                0
            } else {
                1 + flags.windows(2).filter(|w| w[0] != w[1]).count()
            };
            assert_eq!(m.runs(), scan, "{flags:?}");
        }
        let long: Vec<bool> = (0..1000).map(|i| (i * 7919 % 13) < 6).collect();
        let scan = 1 + long.windows(2).filter(|w| w[0] != w[1]).count();
        assert_eq!(Mask::from_bools(&long).runs(), scan);
    }

    #[test]
    fn views_check_length_and_padding() {
        assert!(MaskRef::new(&[0b0000_0111], 3).is_ok());
        assert_eq!(
            MaskRef::new(&[0b0000_1111], 3),
            Err(SparseError::MaskPadding)
        );
        assert!(matches!(
            MaskRef::new(&[0, 0], 3),
            Err(SparseError::Length { .. })
        ));
        let m = Mask::from_fn(20, |i| i % 3 == 0);
        let r = m.as_ref();
        assert_eq!(r.kept(), 7);
        assert_eq!(
            r.kept_indices().collect::<Vec<_>>(),
            m.kept_indices().collect::<Vec<_>>()
        );
        assert_eq!(r.to_owned(), m);
        assert_eq!(r.bits(), m.bits());
        assert!((binary_entropy(0.5) - 1.0).abs() < 1e-12);
    }
}
