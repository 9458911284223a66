//! Mask codes (docs/SPEC.md §6.1): a mask as a sequence of symbols, and back.
//!
//! Takes a [`MaskRef`] (one bit per element of a tile, row-major) and gives it as a sequence
//! of symbols in one of four encodings ([`MaskEncoding`]); the value codec then stores the symbols raw
//! or through rANS, whichever is smaller, and the writer keeps the encoding whose coded
//! stream is smallest for each tile ([`candidates`]). The reconstruction side turns symbols
//! back into a mask with [`decode`].
//!
//! | encoding | symbols | alphabet | good for |
//! |---|---|---|---|
//! | `Bitmask` | the packed bits, one byte per 8 elements (LSB first) | 256 | unstructured at any density (rANS on the bytes reaches 8·H(density) per byte) |
//! | `RunLength` | alternating run lengths, kept first (possibly 0), LEB128 bytes | 256 | block and channel patterns (long runs) |
//! | `DeltaIndices` | gaps between kept indices (first: index + 1), LEB128 bytes | 256 | very sparse tiles (CSR-style) |
//! | `NMCodes` | per group of M along a row, the index of its kept set among C(M, N) | C(M, N) | N:M patterns (2:4: log2(6) = 2.58 bits per 4 elements) |
//!
//! N:M codes need the tile's row length (groups do not cross rows) and M <= 12; other N:M
//! patterns (any N < M <= 16 is a valid pattern) use the other three encodings.

use crate::{Mask, MaskRef, SparseError};
use bitvec::prelude::*;
pub use sparsewire_metadata::MaskEncoding;

/// Largest code alphabet for N:M masks (the value codec's rANS cap).
pub const MAX_NM_CODES: usize = 2048;

/// A mask as symbols, ready for the value codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskSymbols {
    pub encoding: MaskEncoding,
    /// Symbols are below this.
    pub alphabet: usize,
    pub symbols: Vec<u16>,
}

/// The mask in one encoding. `row_len` and `nm` are needed for `NMCodes`.
pub fn to_symbols(
    mask: MaskRef<'_>,
    encoding: MaskEncoding,
    row_len: usize,
    nm: Option<(u8, u8)>,
) -> Result<MaskSymbols, SparseError> {
    let bytes = |v: Vec<u8>| v.into_iter().map(u16::from).collect();
    let symbols = match encoding {
        MaskEncoding::Bitmask => bytes(mask.as_bytes().to_vec()),
        MaskEncoding::RunLength => {
            let mut out = Vec::new();
            let mut want = true;
            let mut run = 0u64;
            for b in mask.bits().iter().by_vals() {
                if b == want {
                    run += 1;
                } else {
                    put_varint(&mut out, run);
                    want = !want;
                    run = 1;
                }
            }
            put_varint(&mut out, run);
            bytes(out)
        }
        MaskEncoding::DeltaIndices => {
            let mut out = Vec::new();
            let mut prev: i64 = -1;
            for i in mask.bits().iter_ones() {
                put_varint(&mut out, (i as i64 - prev) as u64);
                prev = i as i64;
            }
            bytes(out)
        }
        MaskEncoding::NMCodes => {
            let (n, m) = nm.ok_or(SparseError::Malformed {
                reason: "N:M codes without an N:M pattern",
            })?;
            let table = NMTable::new(n, m)?;
            let mut out = Vec::new();
            for (g, (start, len)) in groups(mask.len(), row_len, m as usize).enumerate() {
                let mut bits = 0u32;
                for j in 0..len {
                    bits |= (mask.is_kept(start + j) as u32) << j;
                }
                if len < m as usize {
                    // A partial group at a row's end is stored as its bits.
                    out.push(bits as u16);
                    continue;
                }
                let code = table.code(bits).ok_or(SparseError::NotNM {
                    group: g,
                    kept: bits.count_ones() as usize,
                    n,
                    m,
                })?;
                out.push(code);
            }
            out
        }
    };
    let alphabet = match encoding {
        MaskEncoding::NMCodes => {
            let (n, m) = nm.expect("checked above");
            NMTable::new(n, m)?.len().max(1 << (m - 1))
        }
        _ => 256,
    };
    Ok(MaskSymbols {
        encoding,
        alphabet,
        symbols,
    })
}

/// `(start, len)` of each group of `m` along rows of `row_len` elements.
fn groups(len: usize, row_len: usize, m: usize) -> impl Iterator<Item = (usize, usize)> {
    let row_len = row_len.max(1);
    (0..len.div_ceil(row_len)).flat_map(move |r| {
        let row_start = r * row_len;
        let this_row = row_len.min(len - row_start);
        (0..this_row.div_ceil(m)).map(move |g| {
            let s = g * m;
            (row_start + s, m.min(this_row - s))
        })
    })
}

/// The C(M, N) kept-sets of an N:M group, as bit patterns, in increasing order.
#[derive(Debug, Clone)]
pub struct NMTable {
    patterns: Vec<u32>,
}

impl NMTable {
    /// The table for N kept of every M; errors outside `0 < N < M <= 16` or when C(M, N)
    /// exceeds [`MAX_NM_CODES`].
    pub fn new(n: u8, m: u8) -> Result<Self, SparseError> {
        // Partial groups at a row's end are stored as their bits (< 2^(M-1)), so M <= 12
        // keeps every symbol under the cap.
        if !(n > 0 && n < m && m <= 12) || binomial(m as u64, n as u64) > MAX_NM_CODES as u64 {
            return Err(SparseError::BadNM { n, m, max: 12 });
        }
        let patterns = (0u32..1 << m)
            .filter(|p| p.count_ones() == n as u32)
            .collect();
        Ok(NMTable { patterns })
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    fn code(&self, bits: u32) -> Option<u16> {
        self.patterns.binary_search(&bits).ok().map(|i| i as u16)
    }

    fn pattern(&self, code: u16) -> Option<u32> {
        self.patterns.get(code as usize).copied()
    }
}

fn binomial(n: u64, k: u64) -> u64 {
    (0..k).fold(1, |acc, i| acc * (n - i) / (i + 1))
}

/// Rebuilds a mask of `len` elements from its symbols.
pub fn decode(
    encoding: MaskEncoding,
    symbols: &[u16],
    len: usize,
    row_len: usize,
    nm: Option<(u8, u8)>,
) -> Result<Mask, SparseError> {
    let bad = |reason| SparseError::Malformed { reason };
    let as_bytes = || -> Result<Vec<u8>, SparseError> {
        symbols
            .iter()
            .map(|&s| u8::try_from(s).map_err(|_| bad("symbol over 255")))
            .collect()
    };
    let mut bits: BitVec<u8, Lsb0> = BitVec::with_capacity(len);
    match encoding {
        MaskEncoding::Bitmask => {
            let b = as_bytes()?;
            if b.len() != len.div_ceil(8) {
                return Err(SparseError::SymbolCount {
                    len,
                    got: b.len() * 8,
                });
            }
            bits = BitVec::from_vec(b);
            if bits[len..].any() {
                return Err(bad("padding bits are not zero"));
            }
            bits.truncate(len);
        }
        MaskEncoding::RunLength => {
            let b = as_bytes()?;
            let mut pos = 0;
            let mut value = true;
            while pos < b.len() {
                let run = get_varint(&b, &mut pos).ok_or(bad("truncated run"))?;
                if run > (len - bits.len()) as u64 {
                    return Err(SparseError::SymbolCount {
                        len,
                        got: bits.len().saturating_add(run as usize),
                    });
                }
                bits.resize(bits.len() + run as usize, value);
                value = !value;
            }
        }
        MaskEncoding::DeltaIndices => {
            let b = as_bytes()?;
            let mut pos = 0;
            while pos < b.len() {
                let gap = get_varint(&b, &mut pos).ok_or(bad("truncated gap"))?;
                if gap == 0 || gap > (len - bits.len()) as u64 {
                    return Err(bad("index gap out of range"));
                }
                bits.resize(bits.len() + gap as usize - 1, false);
                bits.push(true);
            }
            bits.resize(len, false);
        }
        MaskEncoding::NMCodes => {
            let (n, m) = nm.ok_or(bad("N:M codes without an N:M pattern"))?;
            let table = NMTable::new(n, m)?;
            let gs: Vec<_> = groups(len, row_len, m as usize).collect();
            if gs.len() != symbols.len() {
                return Err(SparseError::SymbolCount {
                    len,
                    got: symbols.len() * m as usize,
                });
            }
            for ((_, glen), &code) in gs.iter().zip(symbols) {
                let p = if *glen < m as usize {
                    if (code as u32) >> glen != 0 {
                        return Err(bad("partial group with bits beyond it"));
                    }
                    code as u32
                } else {
                    table.pattern(code).ok_or(bad("N:M code out of range"))?
                };
                for j in 0..*glen {
                    bits.push(p >> j & 1 == 1);
                }
            }
        }
    }
    if bits.len() != len {
        return Err(SparseError::SymbolCount {
            len,
            got: bits.len(),
        });
    }
    Mask::from_packed(bits.into_vec(), len)
}

/// Every encoding that applies to a mask (N:M codes only with an N:M pattern that fits).
pub fn candidates(nm: Option<(u8, u8)>) -> Vec<MaskEncoding> {
    let mut c = vec![
        MaskEncoding::Bitmask,
        MaskEncoding::RunLength,
        MaskEncoding::DeltaIndices,
    ];
    if let Some((n, m)) = nm {
        if NMTable::new(n, m).is_ok() {
            c.push(MaskEncoding::NMCodes);
        }
    }
    c
}

use sparsewire_metadata::varint::{get as get_varint, put as put_varint};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nm_mask(rows: usize, row_len: usize, n: u8, m: u8, seed: u64) -> Mask {
        let mut s = seed | 1;
        let mut kept = Vec::new();
        for _ in 0..rows {
            for start in (0..row_len).step_by(m as usize) {
                let len = (m as usize).min(row_len - start);
                let mut g = vec![false; len];
                let want = if len == m as usize {
                    n as usize
                } else {
                    len / 2
                };
                let mut placed = 0;
                while placed < want {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    let j = (s % len as u64) as usize;
                    if !g[j] {
                        g[j] = true;
                        placed += 1;
                    }
                }
                kept.extend(g);
            }
        }
        Mask::from_bools(&kept)
    }

    proptest! {
        #[test]
        fn every_encoding_round_trips(flags in proptest::collection::vec(any::<bool>(), 0..500), runs in any::<bool>()) {
            // Half the cases as long runs, as block and channel patterns make.
            let flags: Vec<bool> = if runs { flags.iter().enumerate().map(|(i, _)| (i / 37) % 3 == 0).collect() } else { flags };
            let m = Mask::from_bools(&flags);
            for enc in candidates(None) {
                let s = to_symbols(m.as_ref(), enc, flags.len().max(1), None).unwrap();
                prop_assert!(s.symbols.iter().all(|&x| (x as usize) < s.alphabet));
                prop_assert_eq!(decode(enc, &s.symbols, flags.len(), flags.len().max(1), None).unwrap(), m.clone());
            }
        }

        #[test]
        fn nm_codes_round_trip(rows in 1usize..5, row_len in 1usize..40, nm in prop_oneof![Just((2u8, 4u8)), Just((1, 4)), Just((4, 8)), Just((3, 7))], seed in any::<u64>()) {
            let (n, m) = nm;
            let mask = nm_mask(rows, row_len, n, m, seed);
            let s = to_symbols(mask.as_ref(), MaskEncoding::NMCodes, row_len, Some(nm)).unwrap();
            prop_assert_eq!(decode(MaskEncoding::NMCodes, &s.symbols, mask.len(), row_len, Some(nm)).unwrap(), mask);
        }
    }

    #[test]
    fn nm_table_and_errors() {
        assert_eq!(NMTable::new(2, 4).unwrap().len(), 6);
        assert!(NMTable::new(4, 4).is_err());
        assert!(NMTable::new(7, 14).is_err(), "M over 12");
        let not_nm = Mask::from_bools(&[true, true, true, false]);
        assert!(matches!(
            to_symbols(not_nm.as_ref(), MaskEncoding::NMCodes, 4, Some((2, 4))),
            Err(SparseError::NotNM { .. })
        ));
        assert!(decode(MaskEncoding::Bitmask, &[0xff], 3, 3, None).is_err());
        assert!(decode(MaskEncoding::DeltaIndices, &[9], 3, 3, None).is_err());
        assert!(decode(MaskEncoding::RunLength, &[1, 9], 3, 3, None).is_err());
    }
}
