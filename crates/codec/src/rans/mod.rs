//! Static-model interleaved rANS (docs/SPEC.md §4.2).
//!
//! `LANES` independent 32-bit states, each with its own stream of 16-bit words: symbol `i`
//! is coded by lane `i % LANES`, so a decoder has `LANES` dependency chains that share
//! nothing (with one shared word stream, where a lane reads depends on how many lanes
//! before it refilled, which chains every lane to the previous one and was measured 3x
//! slower), and a GPU can give each lane a thread. Probabilities are quantised to
//! [`PRECISION_BITS`] bits and come from a [`Model`] that is either shared by the tiles of a
//! tensor or serialised in front of the stream.
//!
//! Stream layout: one byte `L`, the lane count (1, 4 or 16, by [`lanes_for`]); `L`
//! little-endian `u32` final encoder states; the word counts of lanes `0..L-1` as LEB128
//! varints (the last lane takes the rest); then each lane's renormalisation words,
//! little-endian `u16`, lane 0 first, each in the order its decoder consumes them. A
//! decoder that ends with a state other than [`STATE_LOW`] in any lane, or with words left
//! over, was fed a corrupt stream.
//!
//! Written here rather than taken from a crate: the layout (lane count, word size, state
//! range, shared tables) is part of the normative format that a CUDA decoder will share
//! bit for bit, and the maintained Rust entropy coders (constriction, the zstd bindings)
//! do not expose a fixed interleaved layout with externally stored tables.

use crate::CodecError;

mod model;

/// Most interleaved states a stream has (the SIMD kernel decodes exactly this many).
pub const LANES: usize = 16;
/// Probabilities are `freq / 2^PRECISION_BITS`.
pub const PRECISION_BITS: u32 = 12;
const TOTAL: u32 = 1 << PRECISION_BITS;
const MASK: u32 = TOTAL - 1;
/// Lower bound of the normalised state interval `[STATE_LOW, 2^31)`; the initial state.
/// (States stay below 2^31 so the encoder's reciprocal division is exact.)
pub const STATE_LOW: u32 = 1 << 15;
/// Bytes of the stream prefix holding the lane states.
pub const STATE_BYTES: usize = LANES * 4;

/// Lanes a stream of `n` symbols is written with: 16 where the SIMD kernel pays, fewer
/// for short streams, whose lane states and word counts would otherwise dominate.
pub fn lanes_for(n: usize) -> usize {
    match n {
        0..64 => 1,
        64..1024 => 4,
        _ => LANES,
    }
}

/// Bytes a stream of `n` symbols spends beyond its words (lane byte, states, counts).
pub fn overhead_bytes(n: usize) -> usize {
    let l = lanes_for(n);
    1 + 4 * l + 2 * (l - 1)
}
/// Symbols per call of the SIMD kernel (its value buffer lives on the stack).
#[cfg(not(feature = "portable"))]
const SIMD_BLOCK: usize = 2048;
/// Largest alphabet a model may have (11-bit head symbols).
pub const MAX_ALPHABET: usize = 1 << 11;

use model::TableKind;
pub use model::{DecodeTable, Model};
pub use sparsewire_metadata::varint::{get as get_varint, put as put_varint};

/// Per-symbol constants that turn the encoder's division into a multiply and shifts
/// (Alverson's reciprocal, as in ryg_rans), packed in 8 bytes so a 2048-symbol table stays
/// in L1: the reciprocal, and `freq | bias << 13 | shift << 26` (freq 0: not codable).
#[derive(Debug, Clone, Copy, Default)]
struct EncSymbol {
    rcp_freq: u32,
    packed: u32,
}

impl EncSymbol {
    fn new(start: u32, freq: u32) -> Self {
        if freq == 0 {
            return EncSymbol::default();
        }
        let (rcp_freq, shift, bias) = if freq < 2 {
            // x / 1 = x: a reciprocal of 2^32-1 gives x - 1, made up for in the bias.
            (u32::MAX, 0, start + TOTAL - 1)
        } else {
            let shift = 32 - (freq - 1).leading_zeros(); // ceil(log2(freq))
            (
                (1u64 << (shift + 31)).div_ceil(freq as u64) as u32,
                shift - 1,
                start,
            )
        };
        EncSymbol {
            rcp_freq,
            packed: freq | bias << 13 | shift << 26,
        }
    }

    #[inline(always)]
    fn freq(self) -> u32 {
        self.packed & 0x1fff
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
    match lanes_for(symbols.len()) {
        1 => encode_lanes::<S, 1>(symbols, &syms, out),
        4 => encode_lanes::<S, 4>(symbols, &syms, out),
        _ => encode_lanes::<S, LANES>(symbols, &syms, out),
    }
}

/// The encoder for `L` lanes. Each lane writes at most one word per symbol, so its words
/// go to a region of `n / L + 1` slots, written branch-free and kept or skipped by
/// advancing the lane's count.
fn encode_lanes<S: Copy + Into<u32>, const L: usize>(
    symbols: &[S],
    syms: &[EncSymbol],
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let cap = symbols.len() / L + 1;
    let mut words = vec![0u16; cap * L];
    let mut count = [0usize; L];
    let mut states = [STATE_LOW; L];
    let mut bad = false;
    let mut put = |l: usize, sym: S, states: &mut [u32; L]| {
        let s = sym.into() as usize;
        let es = syms.get(s).copied().unwrap_or_default();
        let freq = es.freq();
        bad |= freq == 0;
        let x_max = ((STATE_LOW >> PRECISION_BITS) << 16) * freq;
        let mut x = states[l];
        let emit = x >= x_max;
        words[l * cap + count[l]] = x as u16;
        count[l] += emit as usize;
        x = if emit { x >> 16 } else { x };
        let q = (((x as u64 * es.rcp_freq as u64) >> 32) as u32) >> (es.packed >> 26);
        let bias = (es.packed >> 13) & 0x1fff;
        states[l] = x
            .wrapping_add(bias)
            .wrapping_add(q.wrapping_mul(TOTAL.wrapping_sub(freq)));
    };
    // Backwards: the partial last round first, then whole rounds, so symbol i always
    // goes to lane i % L.
    let full = symbols.len() / L * L;
    for (l, &sym) in symbols[full..].iter().enumerate().rev() {
        put(l, sym, &mut states);
    }
    for round in symbols[..full].chunks_exact(L).rev() {
        for l in (0..L).rev() {
            put(l, round[l], &mut states);
        }
    }
    if bad {
        let symbol = symbols
            .iter()
            .map(|&s| s.into())
            .find(|&s| syms.get(s as usize).is_none_or(|e| e.freq() == 0))
            .unwrap_or(0);
        return Err(CodecError::SymbolNotInModel { symbol });
    }
    let total: usize = count.iter().sum();
    out.reserve(overhead_bytes(symbols.len()) + total * 2);
    out.push(L as u8);
    for x in states {
        out.extend_from_slice(&x.to_le_bytes());
    }
    for &c in &count[..L - 1] {
        put_varint(out, c as u64);
    }
    for l in 0..L {
        for w in words[l * cap..l * cap + count[l]].iter().rev() {
            out.extend_from_slice(&w.to_le_bytes());
        }
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
    /// Lanes in use (1, 4 or 16); the rest of the arrays is idle.
    lanes: usize,
    x: [u32; LANES],
    /// The whole stream; lane words start after the states and counts.
    words: &'a [u8],
    /// Next word of each lane, in bytes from the start of the stream.
    pos: [usize; LANES],
    /// End of each lane's words.
    end: [usize; LANES],
}

impl<'a> Decoder<'a> {
    /// Reads the lane states and word counts at the front of `stream`.
    pub fn new(stream: &'a [u8]) -> Result<Self, CodecError> {
        let corrupt = |reason| CodecError::Corrupt { reason };
        let lanes = *stream.first().ok_or(corrupt("empty rANS stream"))? as usize;
        if ![1, 4, LANES].contains(&lanes) {
            return Err(corrupt("rANS lane count is not 1, 4 or 16"));
        }
        if stream.len() < 1 + 4 * lanes {
            return Err(corrupt("rANS stream shorter than its states"));
        }
        let mut x = [STATE_LOW; LANES];
        for (l, chunk) in stream[1..1 + 4 * lanes].chunks_exact(4).enumerate() {
            x[l] = u32::from_le_bytes(chunk.try_into().expect("4-byte chunk"));
            if !(STATE_LOW..1 << 31).contains(&x[l]) {
                return Err(corrupt("rANS state outside its interval"));
            }
        }
        let mut p = 1 + 4 * lanes;
        let mut counts = [0u64; LANES];
        for c in counts.iter_mut().take(lanes - 1) {
            *c = get_varint(stream, &mut p).ok_or(corrupt("rANS lane counts truncated"))?;
        }
        let words = &stream[p..];
        if !words.len().is_multiple_of(2) || stream.len() > i32::MAX as usize {
            return Err(corrupt("rANS words of odd length"));
        }
        let given: u64 = counts
            .iter()
            .try_fold(0u64, |a, &c| a.checked_add(c))
            .unwrap_or(u64::MAX);
        let all = (words.len() / 2) as u64;
        if given > all {
            return Err(corrupt("rANS lane counts exceed the stream"));
        }
        counts[lanes - 1] = all - given;
        let (mut pos, mut end) = ([0usize; LANES], [0usize; LANES]);
        let mut at = p;
        for l in 0..lanes {
            pos[l] = at;
            at += 2 * counts[l] as usize;
            end[l] = at;
        }
        Ok(Decoder {
            lanes,
            x,
            words: stream,
            pos,
            end,
        })
    }

    /// Decodes the next `out.len()` symbols (with the AVX2 kernel where the CPU has it).
    pub fn decode<S: Copy + TryFrom<u64>>(
        &mut self,
        table: &DecodeTable,
        out: &mut [S],
    ) -> Result<(), CodecError> {
        self.decode_with(table, out, simd_available())
    }

    /// The scalar reference decoder that the SIMD kernel is tested against.
    pub fn decode_reference<S: Copy + TryFrom<u64>>(
        &mut self,
        table: &DecodeTable,
        out: &mut [S],
    ) -> Result<(), CodecError> {
        self.decode_with(table, out, false)
    }

    fn decode_with<S: Copy + TryFrom<u64>>(
        &mut self,
        table: &DecodeTable,
        out: &mut [S],
        simd: bool,
    ) -> Result<(), CodecError> {
        if S::try_from(table.alphabet.saturating_sub(1) as u64).is_err() {
            return Err(CodecError::BadModel {
                reason: "model alphabet wider than the plane",
            });
        }
        let to_sym = |v: u64| -> S {
            // Checked above: every symbol of the table fits S.
            S::try_from(v).unwrap_or_else(|_| unreachable!("symbol fits the plane"))
        };
        match &table.kind {
            TableKind::Compact {
                entries,
                symbols,
                direct,
            } => {
                #[cfg(not(feature = "portable"))]
                let done = if simd && self.lanes == LANES {
                    self.decode_simd(entries, symbols, *direct, out)
                } else {
                    0
                };
                #[cfg(feature = "portable")]
                let done = {
                    let _ = simd;
                    0
                };
                self.run(&mut out[done..], |slot| {
                    let e = entries[slot as usize & MASK as usize];
                    let v = e >> 24;
                    let sym = if *direct {
                        v as u64
                    } else {
                        symbols[v as usize] as u64
                    };
                    (e & 0xfff, (e >> 12) & 0xfff, to_sym(sym))
                })
            }
            TableKind::Wide(tab) => self.run(out, |slot| {
                let e = tab[slot as usize & MASK as usize];
                (
                    ((e >> 16) & 0xffff) as u32,
                    (e >> 32) as u32,
                    to_sym(e & 0xffff),
                )
            }),
        }
    }

    /// Decodes as many whole rounds as the lanes' remaining words allow without checks,
    /// through the AVX2 path; returns how many symbols it wrote.
    #[cfg(not(feature = "portable"))]
    fn decode_simd<S: Copy + TryFrom<u64>>(
        &mut self,
        entries: &[u32; TOTAL as usize],
        symbols: &[u16; 256],
        direct: bool,
        out: &mut [S],
    ) -> usize {
        let mut values = [0u8; SIMD_BLOCK];
        let mut done = 0;
        loop {
            let safe = (0..LANES)
                .map(|l| (self.end[l] - self.pos[l]) / 2)
                .min()
                .unwrap_or(0);
            let rounds = safe.min((out.len() - done) / LANES).min(SIMD_BLOCK / LANES);
            if rounds == 0 {
                return done;
            }
            let n = rounds * LANES;
            crate::simd::decode_rounds(
                &mut self.x,
                &mut self.pos,
                &self.end,
                self.words,
                entries,
                &mut values[..n],
            );
            for (o, &v) in out[done..done + n].iter_mut().zip(&values[..n]) {
                let sym = if direct {
                    v as u64
                } else {
                    symbols[v as usize] as u64
                };
                *o = S::try_from(sym).unwrap_or_else(|_| unreachable!("symbol fits the plane"));
            }
            done += n;
        }
    }

    /// The decode loop, over a lookup `slot -> (freq, slot - cum, symbol)`.
    #[inline(always)]
    fn run<S: Copy>(
        &mut self,
        out: &mut [S],
        lookup: impl Fn(u32) -> (u32, u32, S),
    ) -> Result<(), CodecError> {
        // Local copies keep states and pointers in registers; through `&mut self` every
        // step would be a store and a reload on the dependency chain.
        let mut x = self.x;
        let mut pos = self.pos;
        let end = self.end;
        let words = self.words;
        let lanes = self.lanes;
        let mut rounds = out.chunks_exact_mut(lanes);
        loop {
            // Each round takes at most one word per lane: this many rounds need no check.
            let safe = (0..lanes).map(|l| (end[l] - pos[l]) / 2).min().unwrap_or(0);
            let mut done = 0;
            for round in (&mut rounds).take(safe) {
                for l in 0..lanes {
                    let (f, bias, sym) = lookup(x[l]);
                    round[l] = sym;
                    let y = f * (x[l] >> PRECISION_BITS) + bias;
                    let word = u16::from_le_bytes([words[pos[l]], words[pos[l] + 1]]) as u32;
                    let refill = y < STATE_LOW;
                    x[l] = if refill { (y << 16) | word } else { y };
                    pos[l] += 2 * refill as usize;
                }
                done += 1;
            }
            if done < safe || safe == 0 {
                // Out of rounds, or some lane is near its end: one checked round.
                match rounds.next() {
                    Some(round) => {
                        for l in 0..lanes {
                            round[l] = step(&mut x[l], &lookup, words, &mut pos[l], end[l])?;
                        }
                    }
                    None => break,
                }
            }
        }
        for (l, slot) in rounds.into_remainder().iter_mut().enumerate() {
            *slot = step(&mut x[l], &lookup, words, &mut pos[l], end[l])?;
        }
        self.x = x;
        self.pos = pos;
        Ok(())
    }

    /// Checks that the stream ended exactly where the encoder started it.
    pub fn finish(self) -> Result<(), CodecError> {
        if self.pos != self.end || self.x.iter().any(|&s| s != STATE_LOW) {
            return Err(CodecError::Corrupt {
                reason: "rANS stream did not end where it should (corrupt data)",
            });
        }
        Ok(())
    }
}

#[inline(always)]
fn step<S>(
    x: &mut u32,
    lookup: &impl Fn(u32) -> (u32, u32, S),
    words: &[u8],
    pos: &mut usize,
    end: usize,
) -> Result<S, CodecError> {
    let (f, bias, sym) = lookup(*x);
    let y = f * (*x >> PRECISION_BITS) + bias;
    *x = if y < STATE_LOW {
        if *pos + 2 > end {
            return Err(CodecError::Corrupt {
                reason: "rANS lane ran out of words",
            });
        }
        let w = u16::from_le_bytes([words[*pos], words[*pos + 1]]);
        *pos += 2;
        (y << 16) | w as u32
    } else {
        y
    };
    Ok(sym)
}

/// Whether [`Decoder::decode`] takes the AVX2 kernel on this CPU and build.
pub fn simd_available() -> bool {
    #[cfg(not(feature = "portable"))]
    {
        crate::simd::available()
    }
    #[cfg(feature = "portable")]
    {
        false
    }
}

#[cfg(test)]
mod tests;
