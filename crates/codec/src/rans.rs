//! Static-model interleaved rANS (docs/SPEC.md §4.2).
//!
//! `LANES` independent 32-bit states share one stream of 16-bit words: symbol `i` is coded
//! by lane `i % LANES`, so a decoder has `LANES` independent dependency chains to overlap,
//! and a GPU can later give each lane a thread. Probabilities are quantised to
//! [`PRECISION_BITS`] bits and come from a [`Model`] that is either shared by the tiles of a
//! tensor or serialised in front of the stream.
//!
//! Stream layout: `LANES` little-endian `u32` final encoder states, then the renormalisation
//! words, little-endian `u16`, in the order the decoder consumes them. A decoder that ends
//! with a state other than [`STATE_LOW`] in any lane, or with words left over, was fed a
//! corrupt stream.
//!
//! Written here rather than taken from a crate: the layout (lane count, word size, state
//! range, shared tables) is part of the normative format that a CUDA decoder will share
//! bit for bit, and the maintained Rust entropy coders (constriction, the zstd bindings)
//! do not expose a fixed interleaved layout with externally stored tables.

use crate::CodecError;

/// Number of interleaved states.
pub const LANES: usize = 8;
/// Probabilities are `freq / 2^PRECISION_BITS`.
pub const PRECISION_BITS: u32 = 12;
const TOTAL: u32 = 1 << PRECISION_BITS;
const MASK: u32 = TOTAL - 1;
/// Lower bound of the normalised state interval `[STATE_LOW, 2^31)`; the initial state.
/// (States stay below 2^31 so the encoder's reciprocal division is exact.)
pub const STATE_LOW: u32 = 1 << 15;
/// Bytes of the stream prefix holding the lane states.
pub const STATE_BYTES: usize = LANES * 4;
/// Largest alphabet a model may have (11-bit head symbols).
pub const MAX_ALPHABET: usize = 1 << 11;

/// A quantised probability table over symbols `0..alphabet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    /// `freq[s]`, summing to `2^PRECISION_BITS`; 0 for symbols that cannot occur.
    freq: Vec<u16>,
    cum: Vec<u32>,
}

/// A model's decode table: slot -> (symbol, frequency, slot - cumulative frequency).
#[derive(Debug, Clone)]
pub struct DecodeTable {
    entries: Box<[u64]>,
    alphabet: usize,
}

impl Model {
    /// Quantises a histogram. `None` when fewer than two symbols occur (a constant plane
    /// needs no model).
    pub fn from_counts(counts: &[u64]) -> Option<Model> {
        assert!(counts.len() <= MAX_ALPHABET, "alphabet over MAX_ALPHABET");
        let total: u64 = counts.iter().sum();
        let present = counts.iter().filter(|&&c| c > 0).count();
        if present < 2 {
            return None;
        }
        let mut freq: Vec<u32> = counts
            .iter()
            .map(|&c| {
                if c == 0 {
                    0
                } else {
                    ((c as u128 * TOTAL as u128 + total as u128 / 2) / total as u128).max(1) as u32
                }
            })
            .collect();
        // Fix rounding so the table sums to TOTAL, taking from or giving to the largest
        // entries, where a change of one costs the least.
        let mut sum: u32 = freq.iter().sum();
        while sum != TOTAL {
            let (i, _) = freq
                .iter()
                .enumerate()
                .filter(|(_, &f)| sum < TOTAL || f > 1)
                .max_by_key(|(_, &f)| f)
                .expect("at least two symbols are present");
            if sum < TOTAL {
                let add = TOTAL - sum;
                freq[i] += add;
                sum += add;
            } else {
                let sub = (sum - TOTAL).min(freq[i] - 1).max(1);
                freq[i] -= sub;
                sum -= sub;
            }
        }
        Some(Model::from_freqs(
            freq.into_iter().map(|f| f as u16).collect(),
        ))
    }

    fn from_freqs(freq: Vec<u16>) -> Model {
        let mut cum = Vec::with_capacity(freq.len() + 1);
        let mut c = 0u32;
        for &f in &freq {
            cum.push(c);
            c += f as u32;
        }
        cum.push(c);
        Model { freq, cum }
    }

    /// Alphabet size.
    pub fn alphabet(&self) -> usize {
        self.freq.len()
    }

    /// Quantised frequency of `symbol` (0 if it cannot be coded).
    pub fn freq(&self, symbol: usize) -> u32 {
        self.freq.get(symbol).copied().unwrap_or(0) as u32
    }

    /// Estimated coded size in bits of a histogram under this model, or `None` when the
    /// histogram has a symbol the model cannot code.
    pub fn cost_bits(&self, counts: &[u64]) -> Option<f64> {
        let mut bits = 0.0;
        for (s, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let f = self.freq(s);
            if f == 0 {
                return None;
            }
            bits += c as f64 * (PRECISION_BITS as f64 - (f as f64).log2());
        }
        Some(bits)
    }

    /// Serialises as: varint alphabet, varint count of present symbols, then per present
    /// symbol a varint gap from the previous present symbol (+1) and a varint frequency.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, self.freq.len() as u64);
        let present = self.freq.iter().filter(|&&f| f > 0).count();
        put_varint(&mut out, present as u64);
        let mut prev: i64 = -1;
        for (s, &f) in self.freq.iter().enumerate() {
            if f > 0 {
                put_varint(&mut out, (s as i64 - prev) as u64);
                put_varint(&mut out, f as u64);
                prev = s as i64;
            }
        }
        out
    }

    /// Parses a model written by [`Model::to_bytes`], returning it and the bytes used.
    pub fn from_bytes(bytes: &[u8]) -> Result<(Model, usize), CodecError> {
        let bad = |reason: &'static str| CodecError::BadModel { reason };
        let mut pos = 0;
        let alphabet = get_varint(bytes, &mut pos).ok_or(bad("truncated"))? as usize;
        if alphabet > MAX_ALPHABET {
            return Err(bad("alphabet over the cap"));
        }
        let present = get_varint(bytes, &mut pos).ok_or(bad("truncated"))? as usize;
        if !(2..=alphabet).contains(&present) {
            return Err(bad("symbol count out of range"));
        }
        let mut freq = vec![0u16; alphabet];
        let mut s: i64 = -1;
        let mut sum = 0u32;
        for _ in 0..present {
            let gap = get_varint(bytes, &mut pos).ok_or(bad("truncated"))?;
            let f = get_varint(bytes, &mut pos).ok_or(bad("truncated"))?;
            if gap == 0 || gap > alphabet as u64 {
                return Err(bad("symbol gap out of range"));
            }
            s += gap as i64;
            if s >= alphabet as i64 {
                return Err(bad("symbol beyond the alphabet"));
            }
            if f == 0 || f >= TOTAL as u64 {
                return Err(bad("frequency out of range"));
            }
            freq[s as usize] = f as u16;
            sum += f as u32;
        }
        if sum != TOTAL {
            return Err(bad("frequencies do not sum to 2^12"));
        }
        Ok((Model::from_freqs(freq), pos))
    }

    /// Builds the decode table.
    pub fn decode_table(&self) -> DecodeTable {
        let mut entries = vec![0u64; TOTAL as usize].into_boxed_slice();
        for (s, &f) in self.freq.iter().enumerate() {
            let start = self.cum[s];
            for slot in start..start + f as u32 {
                let bias = slot - start;
                entries[slot as usize] = s as u64 | (f as u64) << 16 | (bias as u64) << 32;
            }
        }
        DecodeTable {
            entries,
            alphabet: self.freq.len(),
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Per-symbol constants that turn the encoder's division into a multiply and shifts
/// (Alverson's reciprocal, as in ryg_rans).
#[derive(Debug, Clone, Copy, Default)]
struct EncSymbol {
    x_max: u32,
    rcp_freq: u32,
    rcp_shift: u32,
    bias: u32,
    cmpl_freq: u32,
}

impl EncSymbol {
    fn new(start: u32, freq: u32) -> Self {
        let x_max = ((STATE_LOW >> PRECISION_BITS) << 16) * freq;
        let cmpl_freq = TOTAL - freq;
        if freq < 2 {
            // x / 1 = x: a reciprocal of 2^32-1 gives x - 1, made up for in the bias.
            EncSymbol {
                x_max,
                rcp_freq: u32::MAX,
                rcp_shift: 0,
                bias: start + TOTAL - 1,
                cmpl_freq,
            }
        } else {
            let shift = 32 - (freq - 1).leading_zeros(); // ceil(log2(freq))
            EncSymbol {
                x_max,
                rcp_freq: (1u64 << (shift + 31)).div_ceil(freq as u64) as u32,
                rcp_shift: shift - 1,
                bias: start,
                cmpl_freq,
            }
        }
    }
}

/// Encodes `symbols` (each must have a non-zero frequency in `model`) and appends the
/// stream to `out`.
pub fn encode<S: Copy + Into<u32>>(
    symbols: &[S],
    model: &Model,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let syms: Vec<EncSymbol> = (0..model.alphabet())
        .map(|s| EncSymbol::new(model.cum[s], model.freq(s)))
        .collect();
    let mut states = [STATE_LOW; LANES];
    let mut words: Vec<u16> = Vec::with_capacity(symbols.len() / 2 + 16);
    let put = |x: &mut u32, sym: S, words: &mut Vec<u16>| -> Result<(), CodecError> {
        let s = sym.into() as usize;
        let es = match syms.get(s) {
            Some(es) if es.x_max != 0 => *es,
            _ => return Err(CodecError::SymbolNotInModel { symbol: s as u32 }),
        };
        if *x >= es.x_max {
            words.push(*x as u16);
            *x >>= 16;
        }
        let q = (((*x as u64 * es.rcp_freq as u64) >> 32) as u32) >> es.rcp_shift;
        *x += es.bias + q * es.cmpl_freq;
        Ok(())
    };
    // Backwards: the partial last round first, then whole rounds, lanes in reverse, so
    // symbol i always goes to lane i % LANES.
    let full = symbols.len() / LANES * LANES;
    for (l, &sym) in symbols[full..].iter().enumerate().rev() {
        put(&mut states[l], sym, &mut words)?;
    }
    for round in symbols[..full].chunks_exact(LANES).rev() {
        for l in (0..LANES).rev() {
            put(&mut states[l], round[l], &mut words)?;
        }
    }
    out.reserve(STATE_BYTES + words.len() * 2);
    for x in states {
        out.extend_from_slice(&x.to_le_bytes());
    }
    for w in words.iter().rev() {
        out.extend_from_slice(&w.to_le_bytes());
    }
    Ok(())
}

/// Decodes `out.len()` symbols from `stream` (exactly one encoded stream).
pub fn decode<S: Copy + TryFrom<u64>>(
    stream: &[u8],
    table: &DecodeTable,
    out: &mut [S],
) -> Result<(), CodecError> {
    let mut d = Decoder::new(stream)?;
    d.decode(table, out)?;
    d.finish()
}

/// A resumable decoder: symbols can be pulled in chunks (each a multiple of [`LANES`]
/// long, except the last) so that a tile decodes through buffers that stay in L1.
#[derive(Debug)]
pub struct Decoder<'a> {
    x: [u32; LANES],
    words: &'a [u8],
    /// Next word, in bytes from the start of `words`.
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// Reads the lane states at the front of `stream`.
    pub fn new(stream: &'a [u8]) -> Result<Self, CodecError> {
        if stream.len() < STATE_BYTES || (stream.len() - STATE_BYTES) % 2 != 0 {
            return Err(CodecError::Corrupt {
                reason: "rANS stream shorter than its states or of odd length",
            });
        }
        let mut x = [0u32; LANES];
        for (l, chunk) in stream[..STATE_BYTES].chunks_exact(4).enumerate() {
            x[l] = u32::from_le_bytes(chunk.try_into().expect("4-byte chunk"));
            if !(STATE_LOW..1 << 31).contains(&x[l]) {
                return Err(CodecError::Corrupt {
                    reason: "rANS state outside its interval",
                });
            }
        }
        Ok(Decoder {
            x,
            words: &stream[STATE_BYTES..],
            pos: 0,
        })
    }

    /// Decodes the next `out.len()` symbols.
    pub fn decode<S: Copy + TryFrom<u64>>(
        &mut self,
        table: &DecodeTable,
        out: &mut [S],
    ) -> Result<(), CodecError> {
        if S::try_from(table.alphabet.saturating_sub(1) as u64).is_err() {
            return Err(CodecError::BadModel {
                reason: "model alphabet wider than the plane",
            });
        }
        let tab: &[u64; TOTAL as usize] = table.entries[..].try_into().expect("full table");
        let to_sym = |e: u64| -> S {
            // Checked above: every symbol of the table fits S.
            S::try_from(e & 0xffff).unwrap_or_else(|_| unreachable!("symbol fits the plane"))
        };
        // A local copy keeps the states in registers; through `&mut self` every step
        // would be a store and a reload on the dependency chain.
        let mut x = self.x;
        let mut pos = self.pos;
        let mut rounds = out.chunks_exact_mut(LANES);
        for round in &mut rounds {
            if let Some(w) = self.words.get(pos..pos + 2 * LANES) {
                // At most one refill per lane: LANES words are at hand, so no lane can
                // run past the end inside this round.
                let w: &[u8; 2 * LANES] = w.try_into().expect("LANES words");
                let mut used = 0usize;
                for l in 0..LANES {
                    let e = tab[(x[l] & MASK) as usize];
                    round[l] = to_sym(e);
                    let y =
                        ((e >> 16) & 0xffff) as u32 * (x[l] >> PRECISION_BITS) + (e >> 32) as u32;
                    let k = 2 * (used % LANES);
                    let word = u16::from_le_bytes([w[k], w[k + 1]]) as u32;
                    let refill = y < STATE_LOW;
                    x[l] = if refill { (y << 16) | word } else { y };
                    used += refill as usize;
                }
                pos += 2 * used;
            } else {
                for l in 0..LANES {
                    round[l] = to_sym(step(&mut x[l], tab, self.words, &mut pos)?);
                }
            }
        }
        for (l, slot) in rounds.into_remainder().iter_mut().enumerate() {
            *slot = to_sym(step(&mut x[l], tab, self.words, &mut pos)?);
        }
        self.x = x;
        self.pos = pos;
        Ok(())
    }

    /// Checks that the stream ended exactly where the encoder started it.
    pub fn finish(self) -> Result<(), CodecError> {
        if self.pos != self.words.len() || self.x.iter().any(|&s| s != STATE_LOW) {
            return Err(CodecError::Corrupt {
                reason: "rANS stream did not end where it should (corrupt data)",
            });
        }
        Ok(())
    }
}

#[inline]
fn step(x: &mut u32, tab: &[u64], words: &[u8], pos: &mut usize) -> Result<u64, CodecError> {
    let e = tab[(*x & MASK) as usize];
    let y = ((e >> 16) & 0xffff) as u32 * (*x >> PRECISION_BITS) + (e >> 32) as u32;
    *x = if y < STATE_LOW {
        let w = words.get(*pos..*pos + 2).ok_or(CodecError::Corrupt {
            reason: "rANS stream ran out of words",
        })?;
        *pos += 2;
        (y << 16) | u16::from_le_bytes([w[0], w[1]]) as u32
    } else {
        y
    };
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(sym: &[u16], alphabet: usize) -> Vec<u64> {
        let mut h = vec![0u64; alphabet];
        for &s in sym {
            h[s as usize] += 1;
        }
        h
    }

    #[test]
    fn round_trips_skewed_and_uniform_data() {
        let mut seed = 1u64;
        for n in [0usize, 1, 7, 8, 9, 100, 4097, 50_000] {
            let syms: Vec<u16> = (0..n)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let r = (seed >> 33) as u32;
                    (r.trailing_zeros().min(20) as u16) * 3 + (r as u16 & 1)
                })
                .collect();
            let mut h = hist(&syms, 64);
            h[0] += 1;
            h[63] += 1;
            let m = Model::from_counts(&h).unwrap();
            let mut buf = Vec::new();
            encode(&syms, &m, &mut buf).unwrap();
            let mut out = vec![0u16; n];
            decode(&buf, &m.decode_table(), &mut out).unwrap();
            assert_eq!(out, syms, "n={n}");
            let est = m.cost_bits(&hist(&syms, 64)).unwrap() / 8.0;
            assert!((buf.len() as f64) < est + STATE_BYTES as f64 + 64.0 + est * 0.01);
        }
    }

    #[test]
    fn model_serialisation_round_trips_and_rejects_garbage() {
        let m = Model::from_counts(&[5, 0, 0, 1000, 3, 0, 1]).unwrap();
        let b = m.to_bytes();
        let (m2, used) = Model::from_bytes(&b).unwrap();
        assert_eq!((m2, used), (m, b.len()));
        assert!(Model::from_bytes(&b[..b.len() - 1]).is_err());
        assert!(Model::from_bytes(&[0xff; 12]).is_err());
        assert!(Model::from_counts(&[0, 9, 0]).is_none());
    }

    #[test]
    fn corrupt_streams_are_errors_not_panics() {
        let syms: Vec<u16> = (0..1000).map(|i| (i % 5) as u16).collect();
        let m = Model::from_counts(&hist(&syms, 5)).unwrap();
        let mut buf = Vec::new();
        encode(&syms, &m, &mut buf).unwrap();
        let t = m.decode_table();
        let mut out = vec![0u16; 1000];
        for cut in [0, 3, STATE_BYTES, buf.len() - 2] {
            assert!(decode(&buf[..cut], &t, &mut out).is_err());
        }
        let mut longer = vec![0u16; 1001];
        assert!(decode(&buf, &t, &mut longer).is_err());
    }
}
