//! Static-model interleaved rANS (docs/SPEC.md §4.2).
//!
//! `L` independent 32-bit states (1, 4, 16 or 32 lanes by [`lanes_for`]): symbol `i` is
//! coded by lane `i % L`, so a decoder has `L` dependency chains. Renormalisation words,
//! 16 bits each, form one stream in the order the decoder takes them: round by round, and
//! within a round lane 0 first, each lane that needs a word taking the next one. A SIMD
//! decoder then refills a register of lanes with one load and an expand (the lanes that
//! need a word take consecutive words), where a stream per lane needs a gather per round
//! (measured: the word gather was 30% of the AVX2 decode). A GPU warp does the same with a
//! ballot and a prefix count. Probabilities are quantised to [`PRECISION_BITS`] bits and
//! come from a [`Model`] that is either shared by the tiles of a tensor or serialised in
//! front of the stream.
//!
//! Stream layout: one byte `L`; `L` little-endian `u32` final encoder states; then the
//! words, little-endian `u16`, in decode order. A decoder that ends with a state other
//! than [`STATE_LOW`] in any lane, or with words left over, was fed a corrupt stream.
//!
//! Written here rather than taken from a crate: the layout (lane count, word size, state
//! range, shared tables) is part of the normative format that a CUDA decoder will share
//! bit for bit, and the maintained Rust entropy coders (constriction, the zstd bindings)
//! do not expose a fixed interleaved layout with externally stored tables.

use crate::{CodecError, Kernel};

mod model;

/// Most interleaved states a stream has.
pub const MAX_LANES: usize = 32;
/// Lanes of the streams the SIMD kernels decode (16 or more: whole 8-lane registers).
#[cfg(not(feature = "portable"))]
const SIMD_MIN_LANES: usize = 16;
/// Bytes of words left when the SIMD rounds stop being safe (under 4 words a lane).
#[cfg(not(feature = "portable"))]
const PAD_REST: usize = 8 * MAX_LANES;
/// Rounds per pass over the zero-padded end of the words.
#[cfg(not(feature = "portable"))]
const PAD_ROUNDS: usize = 16;
/// Probabilities are `freq / 2^PRECISION_BITS`.
pub const PRECISION_BITS: u32 = 12;
const TOTAL: u32 = 1 << PRECISION_BITS;
const MASK: u32 = TOTAL - 1;
/// Lower bound of the normalised state interval `[STATE_LOW, 2^31)`; the initial state.
/// (States stay below 2^31 so the encoder's reciprocal division is exact.)
pub const STATE_LOW: u32 = 1 << 15;
/// Lanes a stream of `n` symbols is written with: 16 or 32 where the SIMD kernels pay,
/// fewer for short streams, whose lane states would otherwise dominate.
pub fn lanes_for(n: usize) -> usize {
    match n {
        0..64 => 1,
        64..1024 => 4,
        1024..LANES32_FROM => 16,
        _ => 32,
    }
}

/// Streams of at least this many symbols are written with 32 lanes.
const LANES32_FROM: usize = 8192;

/// The lane counts a stream may have.
const LANE_COUNTS: [usize; 4] = [1, 4, 16, 32];

/// Bytes a stream of `n` symbols spends beyond its words (lane byte and states).
pub fn overhead_bytes(n: usize) -> usize {
    1 + 4 * lanes_for(n)
}
/// Symbols per call of the SIMD rounds from [`Decoder::decode_with`] (its value buffer
/// lives on the stack).
const SIMD_BLOCK: usize = 2048;
/// Largest alphabet a model may have (11-bit head symbols).
pub const MAX_ALPHABET: usize = 1 << 11;

use model::TableKind;
pub use model::{DecodeTable, Fit, Model, SymbolCounts};
pub use sparsewire_metadata::varint::{get as get_varint, len as varint_len, put as put_varint};

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

/// The symbol types the encoder takes: `u8` (byte planes, masks) and `u16` (heads).
pub trait EncodeSymbol: Copy + Into<u32> {
    /// The slice as the SIMD encoder reads it.
    fn symbol_slice(s: &[Self]) -> SymbolSlice<'_>;
}

/// A slice of symbols of one of the widths the SIMD encoder reads.
#[derive(Debug, Clone, Copy)]
pub enum SymbolSlice<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
}

impl EncodeSymbol for u8 {
    fn symbol_slice(s: &[u8]) -> SymbolSlice<'_> {
        SymbolSlice::U8(s)
    }
}

impl EncodeSymbol for u16 {
    fn symbol_slice(s: &[u16]) -> SymbolSlice<'_> {
        SymbolSlice::U16(s)
    }
}

/// Encodes `symbols` (each must have a non-zero frequency in `model`) and appends the
/// stream to `out`, with the SIMD rounds where [`Kernel::for_encode`] is AVX-512.
pub fn encode<S: EncodeSymbol>(
    symbols: &[S],
    model: &Model,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    encode_with(symbols, model, out, Kernel::for_encode())
}

/// [`encode`] with a given kernel: the same bytes from every kernel (AVX-512 runs the
/// SIMD rounds, the others the scalar loop).
pub fn encode_with<S: EncodeSymbol>(
    symbols: &[S],
    model: &Model,
    out: &mut Vec<u8>,
    kernel: Kernel,
) -> Result<(), CodecError> {
    let syms: Vec<EncSymbol> = (0..model.alphabet())
        .map(|s| EncSymbol::new(model.cum[s], model.freq(s)))
        .collect();
    let simd = kernel == Kernel::Avx512 && kernel.available();
    match lanes_for(symbols.len()) {
        1 => encode_lanes::<S, 1>(symbols, &syms, out, false),
        4 => encode_lanes::<S, 4>(symbols, &syms, out, false),
        16 => encode_lanes::<S, 16>(symbols, &syms, out, simd),
        _ => encode_lanes::<S, 32>(symbols, &syms, out, simd),
    }
}

/// One encoder step of lane `l`: the word it may emit goes to `words[*count]`, kept by
/// advancing `count` (branch-free). Returns false for a symbol the model cannot code.
#[inline(always)]
fn put<S: Into<u32>>(
    x: &mut u32,
    sym: S,
    syms: &[EncSymbol],
    words: &mut [u16],
    count: &mut usize,
) -> bool {
    let es = syms.get(sym.into() as usize).copied().unwrap_or_default();
    let freq = es.freq();
    let x_max = ((STATE_LOW >> PRECISION_BITS) << 16) * freq;
    let emit = *x >= x_max;
    words[*count] = *x as u16;
    *count += emit as usize;
    let y = if emit { *x >> 16 } else { *x };
    let q = (((y as u64 * es.rcp_freq as u64) >> 32) as u32) >> (es.packed >> 26);
    let bias = (es.packed >> 13) & 0x1fff;
    *x = y
        .wrapping_add(bias)
        .wrapping_add(q.wrapping_mul(TOTAL.wrapping_sub(freq)));
    freq != 0
}

/// The encoder for `L` lanes. It runs backwards, so the words it emits are the decode
/// order reversed; each symbol emits at most one. `simd`: the whole rounds through the
/// AVX-512 rounds (the same words and states as the scalar loop).
fn encode_lanes<S: EncodeSymbol, const L: usize>(
    symbols: &[S],
    syms: &[EncSymbol],
    out: &mut Vec<u8>,
    simd: bool,
) -> Result<(), CodecError> {
    // One word per symbol at most, and slack for the SIMD rounds' 16-byte stores; the
    // buffer is this thread's, reused from stream to stream.
    let mut words = WORDS.with(|w| std::mem::take(&mut *w.borrow_mut()));
    crate::planes::set_len_for_overwrite(&mut words, symbols.len() + 16);
    let mut count = 0usize;
    let mut states = [STATE_LOW; MAX_LANES];
    let mut ok = true;
    // Backwards: the partial last round first, then whole rounds, so symbol i always
    // goes to lane i % L.
    let full = symbols.len() / L * L;
    for (l, &sym) in symbols[full..].iter().enumerate().rev() {
        ok &= put(&mut states[l], sym, syms, &mut words, &mut count);
    }
    #[cfg(not(feature = "portable"))]
    let done = simd && L >= SIMD_MIN_LANES && full > 0 && {
        let table: Vec<u64> = syms
            .iter()
            .map(|e| e.rcp_freq as u64 | (e.packed as u64) << 32)
            .collect();
        ok &= crate::simd::encode_rounds(
            L,
            &mut states,
            S::symbol_slice(&symbols[..full]),
            &table,
            &mut words,
            &mut count,
        );
        true
    };
    #[cfg(feature = "portable")]
    let done = {
        let _ = simd;
        false
    };
    if !done {
        for round in symbols[..full].chunks_exact(L).rev() {
            for l in (0..L).rev() {
                ok &= put(&mut states[l], round[l], syms, &mut words, &mut count);
            }
        }
    }
    if !ok {
        let symbol = symbols
            .iter()
            .map(|&s| s.into())
            .find(|&s| syms.get(s as usize).is_none_or(|e| e.freq() == 0))
            .unwrap_or(0);
        return Err(CodecError::SymbolNotInModel { symbol });
    }
    out.reserve(1 + 4 * L + count * 2);
    out.push(L as u8);
    for x in &states[..L] {
        out.extend_from_slice(&x.to_le_bytes());
    }
    // The words in reverse, little-endian: sized once and filled in a loop the compiler
    // vectorises (a 2-byte extend per word was most of this function's own time).
    let start = out.len();
    out.resize(start + count * 2, 0);
    for (o, w) in out[start..]
        .chunks_exact_mut(2)
        .zip(words[..count].iter().rev())
    {
        o.copy_from_slice(&w.to_le_bytes());
    }
    WORDS.with(|w| *w.borrow_mut() = words);
    Ok(())
}

thread_local! {
    /// The encoder's word buffer, kept between streams on a thread.
    static WORDS: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
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

/// A resumable decoder: symbols can be pulled in chunks (each a multiple of the lane
/// count long, except the last) so that a tile decodes through buffers that stay in L1.
#[derive(Debug)]
pub struct Decoder<'a> {
    /// Lanes in use (1, 4, 16 or 32); the rest of `x` is idle.
    lanes: usize,
    x: [u32; MAX_LANES],
    /// The whole stream; words start after the states.
    words: &'a [u8],
    /// Next word, in bytes from the start of the stream.
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// Reads the lane states at the front of `stream`.
    pub fn new(stream: &'a [u8]) -> Result<Self, CodecError> {
        let corrupt = |reason| CodecError::Corrupt { reason };
        let lanes = *stream.first().ok_or(corrupt("empty rANS stream"))? as usize;
        if !LANE_COUNTS.contains(&lanes) {
            return Err(corrupt("rANS lane count is not 1, 4, 16 or 32"));
        }
        if stream.len() < 1 + 4 * lanes {
            return Err(corrupt("rANS stream shorter than its states"));
        }
        let mut x = [STATE_LOW; MAX_LANES];
        for (l, chunk) in stream[1..1 + 4 * lanes].chunks_exact(4).enumerate() {
            x[l] = u32::from_le_bytes(chunk.try_into().expect("4-byte chunk"));
            if !(STATE_LOW..1 << 31).contains(&x[l]) {
                return Err(corrupt("rANS state outside its interval"));
            }
        }
        let pos = 1 + 4 * lanes;
        if !(stream.len() - pos).is_multiple_of(2) {
            return Err(corrupt("rANS words of odd length"));
        }
        Ok(Decoder {
            lanes,
            x,
            words: stream,
            pos,
        })
    }

    /// Rounds that cannot run out of words: each takes at most one word per lane.
    #[cfg(not(feature = "portable"))]
    fn safe_rounds(&self) -> usize {
        (self.words.len() - self.pos) / 2 / self.lanes
    }

    /// Runs a SIMD rounds kernel while it pays: `call(decoder, done, rounds)` decodes
    /// `rounds` whole rounds after the `done` values already written, for at most `room`
    /// rounds in all. [`Decoder::safe_rounds`] assumes every lane refills every round; they
    /// refill on a fraction of rounds, so after that many more are safe: it goes on until
    /// fewer than four are. The rounds left then (near the end of the words, hundreds of
    /// values a tile, which the scalar loop took at a tenth of the speed) run on a
    /// zero-padded copy of the remaining words, so no round can read past a buffer; a pass
    /// that takes more words than there are (a corrupt stream, or more symbols asked for
    /// than it holds) is dropped, states and all, and left to the checked scalar loop.
    /// Returns the values written.
    #[cfg(not(feature = "portable"))]
    fn simd_rounds(
        &mut self,
        room: usize,
        mut call: impl FnMut(&mut Decoder<'_>, usize, usize),
    ) -> usize {
        let lanes = self.lanes;
        let mut done = 0;
        loop {
            let left = room - done / lanes;
            let rounds = self.safe_rounds().min(left);
            if rounds == 0 || (rounds < 4 && rounds < left) {
                break;
            }
            call(self, done, rounds);
            done += rounds * lanes;
        }
        if room == done / lanes {
            return done;
        }
        // Fewer than four safe rounds: under 4 words a lane are left.
        let rest = &self.words[self.pos..];
        debug_assert!(rest.len() < PAD_REST);
        let mut pad = [0u8; PAD_REST + 2 * MAX_LANES * PAD_ROUNDS];
        if rest.len() >= PAD_REST {
            return done;
        }
        pad[..rest.len()].copy_from_slice(rest);
        let mut tail = Decoder {
            lanes,
            x: self.x,
            words: &pad,
            pos: 0,
        };
        loop {
            let rounds = (room - done / lanes).min(PAD_ROUNDS);
            if rounds == 0 {
                break;
            }
            let (x, pos) = (tail.x, tail.pos);
            call(&mut tail, done, rounds);
            if tail.pos > rest.len() {
                (tail.x, tail.pos) = (x, pos);
                break;
            }
            done += rounds * lanes;
        }
        self.x = tail.x;
        self.pos += tail.pos;
        done
    }

    /// Decodes the next `out.len()` symbols with the kernel [`Kernel::chosen`] picked.
    pub fn decode<S: Copy + TryFrom<u64>>(
        &mut self,
        table: &DecodeTable,
        out: &mut [S],
    ) -> Result<(), CodecError> {
        self.decode_with(table, out, Kernel::chosen())
    }

    /// The scalar reference decoder that the SIMD kernels are tested against.
    pub fn decode_reference<S: Copy + TryFrom<u64>>(
        &mut self,
        table: &DecodeTable,
        out: &mut [S],
    ) -> Result<(), CodecError> {
        self.decode_with(table, out, Kernel::Scalar)
    }

    /// Decodes the next `out.len()` symbols with `kernel` (the scalar loop where the
    /// kernel is not available).
    pub fn decode_with<S: Copy + TryFrom<u64>>(
        &mut self,
        table: &DecodeTable,
        out: &mut [S],
        kernel: Kernel,
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
                ..
            } => {
                let map = |v: u8| {
                    to_sym(if *direct {
                        v as u64
                    } else {
                        symbols[v as usize] as u64
                    })
                };
                let lanes = self.lanes;
                let done = through_blocks(
                    out,
                    lanes,
                    |block| self.decode_rounds(entries, block, kernel),
                    map,
                );
                self.run(&mut out[done..], |slot| {
                    let e = entries[slot as usize & MASK as usize];
                    (e & 0xfff, (e >> 12) & 0xfff, map((e >> 24) as u8))
                })
            }
            TableKind::Wide(tab) => {
                let lanes = self.lanes;
                let done = through_blocks(
                    out,
                    lanes,
                    |block| self.decode_rounds_wide(tab, block, kernel),
                    |v: u16| to_sym(v as u64),
                );
                self.run(&mut out[done..], |slot| {
                    let e = tab[slot as usize & MASK as usize];
                    (
                        ((e >> 16) & 0xffff) as u32,
                        (e >> 32) as u32,
                        to_sym(e & 0xffff),
                    )
                })
            }
        }
    }

    /// [`Decoder::decode_rounds`] for a wide table, through the AVX-512 rounds where
    /// `kernel` has them.
    fn decode_rounds_wide(
        &mut self,
        table: &[u64; TOTAL as usize],
        out: &mut [u16],
        kernel: Kernel,
    ) -> usize {
        #[cfg(not(feature = "portable"))]
        if kernel == Kernel::Avx512 && kernel.available() && self.lanes >= SIMD_MIN_LANES {
            let room = out.len() / self.lanes;
            return self.simd_rounds(room, |d, done, rounds| {
                crate::simd::decode_rounds_wide(
                    d.lanes,
                    &mut d.x,
                    &mut d.pos,
                    d.words,
                    table,
                    &mut out[done..done + rounds * d.lanes],
                )
            });
        }
        let _ = (table, out, kernel);
        0
    }

    /// Decodes the next `out.len()` symbols of a compact table as its 8-bit values (the
    /// symbol itself, or its index: [`DecodeTable::value_symbols`]), so that a later step
    /// can map them many at a time. A wide table is refused.
    pub fn decode_values(
        &mut self,
        table: &DecodeTable,
        out: &mut [u8],
        kernel: Kernel,
    ) -> Result<(), CodecError> {
        let TableKind::Compact { entries, .. } = &table.kind else {
            return Err(CodecError::BadModel {
                reason: "table has more than 256 symbols",
            });
        };
        let done = self.decode_rounds(entries, out, kernel);
        self.run(&mut out[done..], |slot| {
            let e = entries[slot as usize & MASK as usize];
            (e & 0xfff, (e >> 12) & 0xfff, (e >> 24) as u8)
        })
    }

    /// For a 32-lane stream with a compact table on the AVX-512 kernel: decodes whole
    /// rounds of BF16 heads merged with their 5-bit tails (`packed`, starting at the next
    /// value's tail) straight into `out` (2 bytes a value), as far as the words, the tails
    /// and `out` allow; returns how many values it wrote (a multiple of 32, 0 where it
    /// does not apply).
    pub fn decode_bf16(
        &mut self,
        table: &DecodeTable,
        packed: &[u8],
        out: &mut [u8],
        kernel: Kernel,
    ) -> usize {
        #[cfg(not(feature = "portable"))]
        if let (
            true,
            32,
            TableKind::Compact {
                entries,
                symbols,
                direct,
                groups,
            },
        ) = (
            kernel == Kernel::Avx512 && kernel.available(),
            self.lanes,
            &table.kind,
        ) {
            let symbols = crate::simd::ValueMap::new(*direct, symbols, groups.as_deref());
            // Each round reads 20 bytes of tails through a 32-byte window.
            let room = (out.len() / 64).min(packed.len().saturating_sub(12) / 20);
            return self.simd_rounds(room, |d, done, rounds| {
                crate::simd::decode_bf16_rounds(
                    &mut d.x,
                    &mut d.pos,
                    d.words,
                    entries,
                    symbols,
                    &packed[20 * done / 32..],
                    &mut out[2 * done..2 * done + 64 * rounds],
                )
            });
        }
        let _ = (table, packed, out, kernel);
        0
    }

    /// For a 32-lane stream of F32 heads on the AVX-512 kernel: decodes whole rounds of
    /// heads merged with their 5-bit tails (`tails`, starting at the next value's tail) and
    /// raw low bytes (`byte1`, `byte0`, starting at the next value's) straight into `out`
    /// (4 bytes a value), as far as the words, the inputs and `out` allow; returns how many
    /// values it wrote (a multiple of 32, 0 where it does not apply).
    pub fn decode_f32(
        &mut self,
        table: &DecodeTable,
        tails: &[u8],
        [byte1, byte0]: [&[u8]; 2],
        out: &mut [u8],
        kernel: Kernel,
    ) -> usize {
        #[cfg(not(feature = "portable"))]
        if kernel == Kernel::Avx512
            && kernel.available()
            && self.lanes == 32
            && table.alphabet <= 1 << 11
        {
            use crate::simd::HeadTable;
            let head = match &table.kind {
                TableKind::Compact {
                    entries,
                    symbols,
                    direct,
                    groups,
                } => HeadTable::Compact(
                    entries,
                    crate::simd::ValueMap::new(*direct, symbols, groups.as_deref()),
                ),
                TableKind::Wide(entries) => HeadTable::Wide(entries),
            };
            // Each round reads 20 bytes of tails through a 32-byte window.
            let room = (out.len() / 128)
                .min(tails.len().saturating_sub(12) / 20)
                .min(byte1.len() / 32)
                .min(byte0.len() / 32);
            let alphabet = table.alphabet;
            return self.simd_rounds(room, |d, done, rounds| {
                crate::simd::decode_f32_rounds(
                    &mut d.x,
                    &mut d.pos,
                    d.words,
                    head,
                    alphabet,
                    &tails[20 * done / 32..],
                    &byte1[done..],
                    &byte0[done..],
                    &mut out[4 * done..4 * done + 128 * rounds],
                )
            });
        }
        let _ = (table, tails, byte1, byte0, out, kernel);
        0
    }

    /// Decodes as many whole rounds into `out` as fit and as the lanes' remaining words
    /// allow without checks, through the SIMD rounds when `kernel` has them; returns how
    /// many values it wrote (0 where the kernel is scalar).
    fn decode_rounds(
        &mut self,
        entries: &[u32; TOTAL as usize],
        out: &mut [u8],
        kernel: Kernel,
    ) -> usize {
        #[cfg(not(feature = "portable"))]
        if kernel != Kernel::Scalar && kernel.available() && self.lanes >= SIMD_MIN_LANES {
            let room = out.len() / self.lanes;
            return self.simd_rounds(room, |d, done, rounds| {
                crate::simd::decode_rounds(
                    kernel == Kernel::Avx512,
                    d.lanes,
                    &mut d.x,
                    &mut d.pos,
                    d.words,
                    entries,
                    &mut out[done..done + rounds * d.lanes],
                )
            });
        }
        let _ = (entries, out, kernel);
        0
    }

    /// The decode loop, over a lookup `slot -> (freq, slot - cum, symbol)`.
    #[inline(always)]
    fn run<S: Copy>(
        &mut self,
        out: &mut [S],
        lookup: impl Fn(u32) -> (u32, u32, S),
    ) -> Result<(), CodecError> {
        // Local copies keep states and the position in registers; through `&mut self`
        // every step would be a store and a reload on the dependency chain.
        let mut x = self.x;
        let mut pos = self.pos;
        let words = self.words;
        let end = words.len();
        let lanes = self.lanes;
        let mut rounds = out.chunks_exact_mut(lanes);
        loop {
            // Each round takes at most one word per lane: this many rounds need no check.
            let safe = (end - pos) / 2 / lanes;
            let mut done = 0;
            for round in (&mut rounds).take(safe) {
                for l in 0..lanes {
                    let (f, bias, sym) = lookup(x[l]);
                    round[l] = sym;
                    let y = f * (x[l] >> PRECISION_BITS) + bias;
                    let word = u16::from_le_bytes([words[pos], words[pos + 1]]) as u32;
                    let refill = y < STATE_LOW;
                    x[l] = if refill { (y << 16) | word } else { y };
                    pos += 2 * refill as usize;
                }
                done += 1;
            }
            if done < safe || safe == 0 {
                // Out of rounds, or near the end of the words: one checked round.
                match rounds.next() {
                    Some(round) => {
                        for l in 0..lanes {
                            round[l] = step(&mut x[l], &lookup, words, &mut pos)?;
                        }
                    }
                    None => break,
                }
            }
        }
        for (l, slot) in rounds.into_remainder().iter_mut().enumerate() {
            *slot = step(&mut x[l], &lookup, words, &mut pos)?;
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

/// Decodes whole rounds into `out` a stack block at a time: `rounds` decodes into the
/// block and says how many values it wrote (fewer than asked: stop), `map` turns each into
/// a symbol. Returns how many symbols were written.
fn through_blocks<V: Copy + Default, S>(
    out: &mut [S],
    lanes: usize,
    mut rounds: impl FnMut(&mut [V]) -> usize,
    map: impl Fn(V) -> S,
) -> usize {
    let mut block = [V::default(); SIMD_BLOCK];
    let mut done = 0;
    while out.len() - done >= lanes {
        let want = (out.len() - done).min(SIMD_BLOCK) / lanes * lanes;
        let got = rounds(&mut block[..want]);
        for (o, &v) in out[done..done + got].iter_mut().zip(&block[..got]) {
            *o = map(v);
        }
        done += got;
        if got < want {
            break;
        }
    }
    done
}

#[inline(always)]
fn step<S>(
    x: &mut u32,
    lookup: &impl Fn(u32) -> (u32, u32, S),
    words: &[u8],
    pos: &mut usize,
) -> Result<S, CodecError> {
    let (f, bias, sym) = lookup(*x);
    let y = f * (*x >> PRECISION_BITS) + bias;
    *x = if y < STATE_LOW {
        if *pos + 2 > words.len() {
            return Err(CodecError::Corrupt {
                reason: "rANS stream ran out of words",
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

#[cfg(test)]
pub(crate) mod tests;
