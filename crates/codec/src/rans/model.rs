//! Quantised probability models ([`Model`]): fitted to a histogram, serialised in the
//! header or in front of a stream, and turned into the decoder's lookup table.

use super::{get_varint, put_varint, varint_len, MAX_ALPHABET, PRECISION_BITS, TOTAL};
use crate::CodecError;

/// A quantised probability table over symbols `0..alphabet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    /// `freq[s]`, summing to `2^PRECISION_BITS`; 0 for symbols that cannot occur.
    freq: Vec<u16>,
    pub(super) cum: Vec<u32>,
    /// Bits the frequencies were quantised to (they are multiples of
    /// `2^(PRECISION_BITS - precision)`); what the serialised form stores.
    pub(super) precision: u32,
}

/// A model's decode table: slot -> (symbol, frequency, slot - cumulative frequency).
///
/// Models with at most 256 symbols (all byte planes, and the heads of real tensors) use
/// 32-bit entries holding the symbol's *index*, so the table is 16 KiB and stays in L1
/// beside the buffers; larger models fall back to 64-bit entries holding the symbol.
#[derive(Debug, Clone)]
pub struct DecodeTable {
    pub(super) kind: TableKind,
    pub(super) alphabet: usize,
}

#[derive(Debug, Clone)]
pub(super) enum TableKind {
    /// `freq | bias << 12 | value << 24`, and the symbol of each value. `value` is the
    /// symbol itself when every symbol is below 256 (`direct`); else, when the present
    /// symbols fall in at most 32 aligned groups of eight (`s / 8`; a float head's
    /// exponents come in runs), `8 g + s % 8` for the `g`-th group, with `groups[g]` the
    /// group's offset, so that `symbols[v] = v + groups[v / 8]` for every `v` and a SIMD
    /// kernel maps 32 values with one word permute and an add; else its index.
    Compact {
        entries: Box<[u32; TOTAL as usize]>,
        symbols: Box<[u16; 256]>,
        direct: bool,
        // Read by the SIMD kernels only, which the portable build leaves out.
        #[cfg_attr(feature = "portable", allow(dead_code))]
        groups: Option<Box<[u16; 32]>>,
    },
    /// `symbol | freq << 16 | bias << 32`.
    Wide(Box<[u64; TOTAL as usize]>),
}

impl DecodeTable {
    /// Size of the alphabet the table decodes to.
    pub fn alphabet(&self) -> usize {
        self.alphabet
    }

    /// How [`super::Decoder::decode_values`] output maps to symbols: `None` for a wide
    /// table (it has no 8-bit values), `Some(None)` when the values are the symbols,
    /// `Some(Some(table))` when value `v` is symbol `table[v]`.
    pub fn value_symbols(&self) -> Option<Option<&[u16; 256]>> {
        match &self.kind {
            TableKind::Compact { direct: true, .. } => Some(None),
            TableKind::Compact { symbols, .. } => Some(Some(symbols)),
            TableKind::Wide(_) => None,
        }
    }
}

impl Model {
    /// Quantises a histogram at full precision. `None` when fewer than two symbols occur
    /// (a constant plane needs no model).
    pub fn from_counts(counts: &[u64]) -> Option<Model> {
        Model::from_counts_at(counts, PRECISION_BITS)
    }

    /// The model for a histogram that is cheapest with its own serialised size counted:
    /// small tiles pay for coarser tables with fewer bytes. Returns it with its bytes.
    pub fn best_for(counts: &[u64]) -> Option<(Model, Vec<u8>)> {
        Model::best_for_with_cost(counts).map(|(m, b, _)| (m, b))
    }

    /// [`Model::best_for`] with the coded size of `counts` under the model, in bits (what
    /// [`Model::cost_bits`] returns for it).
    ///
    /// Each precision is quantised, costed and sized on the present symbols alone; only
    /// the winner becomes a full-alphabet model and is serialised (a 2048-symbol head with
    /// a few dozen present symbols spent most of a small tile's encode on alphabet-long
    /// scans otherwise). The choice and the model are the same as quantising, costing
    /// and serialising each precision in full.
    pub fn best_for_with_cost(counts: &[u64]) -> Option<(Model, Vec<u8>, f64)> {
        Model::best_for_counts(&SymbolCounts::of(counts))
    }

    /// [`Model::best_for_with_cost`] of a histogram's present symbols.
    pub fn best_for_counts(present: &SymbolCounts) -> Option<(Model, Vec<u8>, f64)> {
        let fit = present.best_fit()?;
        Some((fit.model(present), fit.to_bytes(present), fit.bits))
    }

    /// Quantises a histogram to `precision` bits (`None` if it has fewer than two
    /// symbols, or more than `2^precision`).
    pub fn from_counts_at(counts: &[u64], precision: u32) -> Option<Model> {
        assert!(counts.len() <= MAX_ALPHABET, "alphabet over MAX_ALPHABET");
        assert!((1..=PRECISION_BITS).contains(&precision));
        let present = SymbolCounts::of(counts);
        let freq = present.quantise(precision)?;
        Some(present.model(counts.len(), &freq, precision))
    }

    fn from_freqs(freq: Vec<u16>, precision: u32) -> Model {
        let mut cum = Vec::with_capacity(freq.len() + 1);
        let mut c = 0u32;
        for &f in &freq {
            cum.push(c);
            c += f as u32;
        }
        cum.push(c);
        Model {
            freq,
            cum,
            precision,
        }
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
            bits += c as f64 * (PRECISION_BITS as f64 - log2_tables().of[f as usize]);
        }
        Some(bits)
    }

    /// [`Model::cost_bits`] of a histogram's present symbols, term for term.
    pub fn cost_bits_of(&self, present: &SymbolCounts) -> Option<f64> {
        let mut bits = 0.0;
        for (&s, &c) in present.symbols.iter().zip(&present.counts) {
            let f = self.freq(s);
            if f == 0 {
                return None;
            }
            bits += c as f64 * (PRECISION_BITS as f64 - log2_tables().of[f as usize]);
        }
        Some(bits)
    }

    /// Serialises as: a byte `p` (the precision, 1..=12), varint alphabet, varint count
    /// of present symbols, then per present symbol a varint gap from the previous present
    /// symbol (+1) and a varint frequency out of `2^p`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.precision as u8];
        let shift = PRECISION_BITS - self.precision;
        put_varint(&mut out, self.freq.len() as u64);
        let present = self.freq.iter().filter(|&&f| f > 0).count();
        put_varint(&mut out, present as u64);
        let mut prev: i64 = -1;
        for (s, &f) in self.freq.iter().enumerate() {
            if f > 0 {
                put_varint(&mut out, (s as i64 - prev) as u64);
                put_varint(&mut out, (f >> shift) as u64);
                prev = s as i64;
            }
        }
        out
    }

    /// Parses a model written by [`Model::to_bytes`], returning it and the bytes used.
    pub fn from_bytes(bytes: &[u8]) -> Result<(Model, usize), CodecError> {
        let parsed = Parsed::read(bytes)?;
        let mut freq = vec![0u16; parsed.alphabet];
        for &(s, f) in &parsed.present {
            freq[s as usize] = f;
        }
        Ok((Model::from_freqs(freq, parsed.precision), parsed.used))
    }

    /// Builds the decode table.
    pub fn decode_table(&self) -> DecodeTable {
        let present: Vec<(u32, u16)> = self
            .freq
            .iter()
            .enumerate()
            .filter(|(_, &f)| f > 0)
            .map(|(s, &f)| (s as u32, f))
            .collect();
        DecodeTable::build(self.freq.len(), &present)
    }
}

/// A histogram's present symbols (in increasing order) with their counts: what the
/// quantiser, the cost and the serialised size depend on. Read once from an
/// alphabet-long histogram, then everything a plane's coder asks of it (constant or not,
/// entropy, cost under a shared model, its own model) looks at the present symbols only.
#[derive(Debug, Clone)]
pub struct SymbolCounts {
    alphabet: usize,
    symbols: Vec<usize>,
    counts: Vec<u64>,
    total: u64,
}

impl SymbolCounts {
    /// The present symbols of `counts` (an alphabet-long histogram).
    pub fn of(counts: &[u64]) -> SymbolCounts {
        // Sized first, then filled without a branch per symbol (every symbol is written at
        // the next free place, which advances only past a present one), skipping runs of
        // absent symbols eight at a time: a head's 2048 counts hold a few dozen present
        // symbols in a small tile, scattered enough that a branch per symbol mispredicts.
        let n = counts.iter().filter(|&&c| c > 0).count();
        let mut symbols = vec![0usize; n + 1];
        let mut present = vec![0u64; n + 1];
        let mut len = 0;
        for (block, chunk) in counts.chunks(8).enumerate() {
            if chunk.iter().fold(0, |a, &c| a | c) == 0 {
                continue;
            }
            for (k, &c) in chunk.iter().enumerate() {
                // len <= n until the last present symbol is written, so in bounds.
                symbols[len] = block * 8 + k;
                present[len] = c;
                len += usize::from(c > 0);
            }
        }
        symbols.truncate(len);
        present.truncate(len);
        let total = present.iter().sum();
        SymbolCounts {
            alphabet: counts.len(),
            symbols,
            counts: present,
            total,
        }
    }

    /// How many symbols occur.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// Whether no symbol occurs.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// The lowest symbol that occurs.
    pub fn first(&self) -> Option<usize> {
        self.symbols.first().copied()
    }

    /// Order-0 entropy in bits: [`crate::entropy_bits`] of the histogram, as `n log2 n -
    /// sum c log2 c` with the logs of counts up to 4096 from a table (a `log2` call per
    /// symbol was 5% of a small tile's encode). Within 1e-12 of it, relatively (tested);
    /// the coder's choices that use it keep margins far wider.
    pub fn entropy_bits(&self) -> f64 {
        let log2 = &log2_tables().of;
        let log2_of = |c: u64| match log2.get(c as usize) {
            Some(&l) => l,
            None => (c as f64).log2(),
        };
        let n = self.total;
        let sum: f64 = self.counts.iter().map(|&c| c as f64 * log2_of(c)).sum();
        (n as f64 * log2_of(n) - sum).max(0.0)
    }

    /// The cheapest model's quantisation, with its own serialised size counted (see
    /// [`Model::best_for_with_cost`]): what it costs is known before the model is built,
    /// so a plane that then goes raw builds none.
    pub fn best_fit(&self) -> Option<Fit> {
        assert!(self.alphabet <= MAX_ALPHABET, "alphabet over MAX_ALPHABET");
        let tries: &[u32] = if self.total < 1 << 13 {
            &[12, 10, 8, 6]
        } else {
            &[12]
        };
        let mut best: Option<Fit> = None;
        let scaled = self.scaled();
        let gaps = self.serialised_gaps_len();
        for &p in tries {
            let Some(freq) = self.quantise_scaled(p, &scaled) else {
                continue;
            };
            let bits = self.cost_bits(&freq, PRECISION_BITS - p);
            let freqs_len: usize = freq.iter().map(|&f| varint_len(f as u64)).sum();
            let len = gaps + freqs_len;
            let total = bits / 8.0 + len as f64;
            if best
                .as_ref()
                .is_none_or(|b| total < b.bits / 8.0 + b.len as f64)
            {
                best = Some(Fit {
                    precision: p,
                    freq,
                    bits,
                    len,
                });
            }
        }
        best
    }

    /// A lower bound on the length of any model of these symbols' serialised form: the
    /// gaps as written and a byte per frequency.
    pub fn model_bytes_lower_bound(&self) -> usize {
        self.serialised_gaps_len() + self.symbols.len()
    }

    /// [`Model::to_bytes`] of the model [`SymbolCounts::model`] gives, without it.
    fn to_bytes(&self, freq: &[u32], precision: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.serialised_len(self.alphabet, freq));
        out.push(precision as u8);
        put_varint(&mut out, self.alphabet as u64);
        put_varint(&mut out, self.symbols.len() as u64);
        let mut prev: i64 = -1;
        for (&s, &f) in self.symbols.iter().zip(freq) {
            put_varint(&mut out, (s as i64 - prev) as u64);
            put_varint(&mut out, f as u64);
            prev = s as i64;
        }
        out
    }

    /// The present symbols' frequencies out of `2^precision` (each at least 1, summing to
    /// it), or `None` with fewer than two present symbols or more than `2^precision`.
    ///
    /// Floor of the scaled counts (at least 1 for a present symbol), then units of
    /// frequency move one at a time to where they change the coded size the least: each
    /// step adds to the symbol that gains most (c * log2((f+1)/f)) or takes from the one
    /// that loses least (c * log2(f/(f-1))); ties go to the lower symbol. Taking from the
    /// largest entry instead, as a simple fix-up does, costs 9% on a head with 169
    /// singletons among 387 symbols.
    ///
    /// Every step takes the best of the symbols' next moves, and a symbol's moves get
    /// worse one after another, so the steps taken are the `k` best moves of all: see
    /// [`best_moves`], which finds them without a heap when no symbol moves twice.
    fn quantise(&self, precision: u32) -> Option<Vec<u32>> {
        self.quantise_scaled(precision, &self.scaled())
    }

    /// Each count scaled to the full precision, `floor(c * 2^12 / total)`: the floor at
    /// precision `p` is this shifted right by `12 - p` (the floor of a floor divided by
    /// an integer is the floor of the quotient), so the precisions tried share one
    /// division per symbol.
    fn scaled(&self) -> Vec<u64> {
        let total = self.total;
        self.counts
            .iter()
            .map(|&c| match c.checked_mul(TOTAL as u64) {
                // c <= total < 2^52 in any real histogram: the 64-bit product is exact.
                Some(m) => m / total,
                None => (c as u128 * TOTAL as u128 / total as u128) as u64,
            })
            .collect()
    }

    /// [`SymbolCounts::quantise`] with [`SymbolCounts::scaled`] given.
    fn quantise_scaled(&self, precision: u32, scaled: &[u64]) -> Option<Vec<u32>> {
        const _: () = assert!(PRECISION_BITS == 12 && TOTAL == 1 << PRECISION_BITS);
        let total_p = 1u32 << precision;
        let counts = &self.counts;
        if counts.len() < 2 || counts.len() > total_p as usize {
            return None;
        }
        let shift = PRECISION_BITS - precision;
        let mut freq: Vec<u32> = scaled
            .iter()
            .map(|&q| ((q >> shift) as u32).max(1))
            .collect();
        let sum: u32 = freq.iter().sum();
        // `c * log2((f + 1) / f)`: the change in coded size when `f` becomes `f + 1`, the
        // log from a table of the same expression (bit for bit what computing it gives).
        let ratio = &log2_tables().next;
        let gain = |c: u64, f: u32| c as f64 * ratio[f as usize];
        if sum < total_p {
            // The `j`-th add to symbol `i` (from 0), best first.
            let key = |i: usize, j: u32| Some(move_key(gain(counts[i], freq[i] + j), i, false));
            let adds = best_moves(counts.len(), (total_p - sum) as usize, key);
            for i in adds {
                freq[i] += 1;
            }
        } else {
            // The `j`-th take from symbol `i`: none below 1; the smallest loss first.
            let key = |i: usize, j: u32| {
                let f = freq[i].checked_sub(j)?;
                (f > 1).then(|| move_key(gain(counts[i], f - 1), i, true))
            };
            let takes = best_moves(counts.len(), (sum - total_p) as usize, key);
            for i in takes {
                freq[i] -= 1;
            }
        }
        Some(freq)
    }

    /// [`Model::cost_bits`] of these counts under `freq` (out of `2^(12 - shift)`).
    fn cost_bits(&self, freq: &[u32], shift: u32) -> f64 {
        let log2 = &log2_tables().of;
        let mut bits = 0.0;
        for (&c, &f) in self.counts.iter().zip(freq) {
            bits += c as f64 * (PRECISION_BITS as f64 - log2[(f << shift) as usize]);
        }
        bits
    }

    /// What [`SymbolCounts::serialised_len`] counts before the frequencies: the same at
    /// every precision.
    fn serialised_gaps_len(&self) -> usize {
        let mut len = 1 + varint_len(self.alphabet as u64) + varint_len(self.symbols.len() as u64);
        let mut prev: i64 = -1;
        for &s in &self.symbols {
            len += varint_len((s as i64 - prev) as u64);
            prev = s as i64;
        }
        len
    }

    /// The length [`Model::to_bytes`] gives a model of `alphabet` symbols with these
    /// present symbols at `freq`.
    fn serialised_len(&self, alphabet: usize, freq: &[u32]) -> usize {
        let mut len = 1 + varint_len(alphabet as u64) + varint_len(self.symbols.len() as u64);
        let mut prev: i64 = -1;
        for (&s, &f) in self.symbols.iter().zip(freq) {
            len += varint_len((s as i64 - prev) as u64) + varint_len(f as u64);
            prev = s as i64;
        }
        len
    }

    /// The full-alphabet model with these present symbols at `freq`.
    fn model(&self, alphabet: usize, freq: &[u32], precision: u32) -> Model {
        let shift = PRECISION_BITS - precision;
        let mut full = vec![0u16; alphabet];
        for (&s, &f) in self.symbols.iter().zip(freq) {
            full[s] = (f << shift) as u16;
        }
        Model::from_freqs(full, precision)
    }
}

/// A quantised model of some [`SymbolCounts`], before it is built: [`SymbolCounts::best_fit`].
#[derive(Debug, Clone)]
pub struct Fit {
    precision: u32,
    /// The present symbols' frequencies out of `2^precision`.
    freq: Vec<u32>,
    /// The counts' coded size under it, in bits ([`Model::cost_bits`]).
    pub bits: f64,
    /// Its serialised length ([`Model::to_bytes`]).
    pub len: usize,
}

impl Fit {
    /// The model, for the counts it was fitted to.
    pub fn model(&self, counts: &SymbolCounts) -> Model {
        counts.model(counts.alphabet, &self.freq, self.precision)
    }

    /// [`Model::to_bytes`] of [`Fit::model`], without building it.
    pub fn to_bytes(&self, counts: &SymbolCounts) -> Vec<u8> {
        counts.to_bytes(&self.freq, self.precision)
    }
}

/// A move's place in the quantiser's order as one integer: a larger key goes first. The
/// gain's bits (a positive `f64` orders as its bits do; inverted when the smallest gain
/// goes first) above the symbol inverted (ties to the lower symbol).
fn move_key(gain: f64, symbol: usize, smallest_first: bool) -> u128 {
    debug_assert!(gain > 0.0);
    let g = if smallest_first {
        !gain.to_bits()
    } else {
        gain.to_bits()
    };
    (g as u128) << 64 | !(symbol as u64) as u128
}

/// The symbols of the `k` largest keys among every symbol's moves, a symbol once per move
/// it makes: `key(i, j)` is the key of symbol `i`'s move `j` (`None` when it has no such
/// move), smaller for each later `j`, and all keys distinct. What taking the largest next
/// move `k` times gives, in some order.
///
/// The first moves' `k` largest keys are selected in linear time; they are the answer
/// when every second move ranks below the smallest of them (the usual case: the rounding
/// leaves each symbol less than one unit off). Otherwise a heap of next moves runs the
/// steps one by one.
fn best_moves(symbols: usize, k: usize, key: impl Fn(usize, u32) -> Option<u128>) -> Vec<usize> {
    if k == 0 {
        return Vec::new();
    }
    let mut first: Vec<(u128, usize)> = Vec::with_capacity(symbols);
    first.extend((0..symbols).filter_map(|i| key(i, 0).map(|x| (x, i))));
    if k <= first.len() {
        // Ascending, so the k largest end the slice.
        let at = first.len() - k;
        let (_, kth, _) = first.select_nth_unstable_by_key(at, |e| e.0);
        let threshold = kth.0;
        let chosen = &first[at..];
        if chosen
            .iter()
            .all(|&(_, i)| key(i, 1).is_none_or(|x| x < threshold))
        {
            return chosen.iter().map(|&(_, i)| i).collect();
        }
    }
    let mut heap = std::collections::BinaryHeap::from(first);
    let mut moved = vec![0u32; symbols];
    let mut out = Vec::with_capacity(k);
    for _ in 0..k {
        let (_, i) = heap.pop().expect("the moves asked for exist");
        out.push(i);
        moved[i] += 1;
        if let Some(x) = key(i, moved[i]) {
            heap.push((x, i));
        }
    }
    out
}

/// Logarithms the quantiser and the cost use, for every frequency a model can hold:
/// `of[f] = log2(f)` and `next[f] = log2((f + 1) / f)`, each computed by the expression
/// the callers used before, so results are the same bit for bit (`log2` was a sixth of a
/// small tile's encode).
struct Log2Tables {
    of: Vec<f64>,
    next: Vec<f64>,
}

fn log2_tables() -> &'static Log2Tables {
    static TABLES: std::sync::OnceLock<Log2Tables> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let n = TOTAL as usize + 1;
        Log2Tables {
            of: (0..n).map(|f| (f as f64).log2()).collect(),
            next: (0..n)
                .map(|f| (((f + 1) as f64) / (f as f64)).log2())
                .collect(),
        }
    })
}

/// A serialised model as read: its present symbols in increasing order with their
/// frequencies scaled to `2^PRECISION_BITS`. Checked as [`Model::from_bytes`] documents.
struct Parsed {
    precision: u32,
    alphabet: usize,
    present: Vec<(u32, u16)>,
    used: usize,
}

impl Parsed {
    fn read(bytes: &[u8]) -> Result<Parsed, CodecError> {
        let bad = |reason: &'static str| CodecError::BadModel { reason };
        let precision = *bytes.first().ok_or(bad("truncated"))? as u32;
        if !(1..=PRECISION_BITS).contains(&precision) {
            return Err(bad("precision out of range"));
        }
        let total_p = 1u32 << precision;
        let mut pos = 1;
        let alphabet = get_varint(bytes, &mut pos).ok_or(bad("truncated"))? as usize;
        if alphabet > MAX_ALPHABET {
            return Err(bad("alphabet over the cap"));
        }
        let count = get_varint(bytes, &mut pos).ok_or(bad("truncated"))? as usize;
        if !(2..=alphabet.min(total_p as usize)).contains(&count) {
            return Err(bad("symbol count out of range"));
        }
        // `count` <= 2^precision <= 4096: a bounded allocation.
        let mut present = Vec::with_capacity(count);
        let mut s: i64 = -1;
        let mut sum = 0u32;
        for _ in 0..count {
            let gap = get_varint(bytes, &mut pos).ok_or(bad("truncated"))?;
            let f = get_varint(bytes, &mut pos).ok_or(bad("truncated"))?;
            if gap == 0 || gap > alphabet as u64 {
                return Err(bad("symbol gap out of range"));
            }
            s += gap as i64;
            if s >= alphabet as i64 {
                return Err(bad("symbol beyond the alphabet"));
            }
            if f == 0 || f >= total_p as u64 {
                return Err(bad("frequency out of range"));
            }
            present.push((s as u32, (f << (PRECISION_BITS - precision)) as u16));
            sum += f as u32;
        }
        if sum != total_p {
            return Err(bad("frequencies do not sum to 2^precision"));
        }
        Ok(Parsed {
            precision,
            alphabet,
            present,
            used: pos,
        })
    }
}

impl DecodeTable {
    /// Reads a model serialised by [`Model::to_bytes`] straight into its decode table, and
    /// the bytes it took: what [`Model::from_bytes`] then [`Model::decode_table`] give,
    /// with the same checks, without the alphabet-sized arrays in between (a tile's own
    /// model is read on every decode of the tile).
    pub fn from_model_bytes(bytes: &[u8]) -> Result<(DecodeTable, usize), CodecError> {
        let parsed = Parsed::read(bytes)?;
        Ok((
            DecodeTable::build(parsed.alphabet, &parsed.present),
            parsed.used,
        ))
    }

    /// The table of the symbols `present` (increasing, frequencies summing to
    /// `2^PRECISION_BITS`) over an alphabet of `alphabet` symbols.
    fn build(alphabet: usize, present: &[(u32, u16)]) -> DecodeTable {
        // Every slot is written once, in order, into uninitialised capacity: a zeroed table
        // first was a third of the build, and PP-OCR's small tensors build one per tile.
        let kind = if present.len() <= 256 {
            let direct = alphabet <= 256;
            // `present` is increasing, so its groups `s / 8` come in runs.
            let runs = present
                .windows(2)
                .filter(|w| w[0].0 >> 3 != w[1].0 >> 3)
                .count()
                + 1;
            let mut groups = (!direct && runs <= 32).then(|| Box::new([0u16; 32]));
            let (mut g, mut key) = (0usize, None);
            let mut entries = Vec::with_capacity(TOTAL as usize);
            let mut symbols = Box::new([0u16; 256]);
            let mut items = [(0u32, 0u32); 256];
            for (index, &(s, f)) in present.iter().enumerate() {
                let value = match (direct, groups.as_mut()) {
                    (true, _) => s,
                    (false, Some(offsets)) => {
                        if key != Some(s >> 3) {
                            g += key.is_some() as usize;
                            key = Some(s >> 3);
                            offsets[g] = (8 * ((s >> 3) - g as u32)) as u16;
                        }
                        8 * g as u32 + (s & 7)
                    }
                    (false, None) => index as u32,
                };
                symbols[value as usize] = s as u16;
                items[index] = (f as u32 | value << 24, f as u32);
            }
            let items = &items[..present.len()];
            if !crate::simd::fill_entries(&mut entries, items) {
                for &(base, f) in items {
                    entries.extend((0..f).map(|bias| base | bias << 12));
                }
            }
            if let Some(offsets) = &groups {
                // Every value, present or not, maps by the same rule.
                for (v, s) in symbols.iter_mut().enumerate() {
                    *s = (v as u16).wrapping_add(offsets[v / 8]);
                }
            }
            TableKind::Compact {
                entries: full_table(entries),
                symbols,
                direct,
                groups,
            }
        } else {
            let mut entries = Vec::with_capacity(TOTAL as usize);
            for &(s, f) in present {
                let base = s as u64 | (f as u64) << 16;
                entries.extend((0..f as u64).map(|bias| base | bias << 32));
            }
            TableKind::Wide(full_table(entries))
        };
        DecodeTable { kind, alphabet }
    }
}

/// A table's `TOTAL` slots from the entries built for them (whose frequencies sum to
/// `TOTAL`, as every model checks when it is made or read).
fn full_table<T: Copy + Default>(mut entries: Vec<T>) -> Box<[T; TOTAL as usize]> {
    debug_assert_eq!(entries.len(), TOTAL as usize);
    entries.resize(TOTAL as usize, T::default());
    entries
        .into_boxed_slice()
        .try_into()
        .unwrap_or_else(|_| unreachable!("resized to TOTAL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX-512 table fill writes what the scalar loop writes (where the CPU has it;
    /// without, it declines and there is nothing to compare, said as SKIPPED).
    #[test]
    fn the_simd_table_fill_matches_the_loop() {
        let mut next = crate::tests::xorshift(0x5eed);
        for n in [1usize, 2, 3, 17, 100, 256] {
            // Frequencies from 1 up to 40 (whole, partial and single stores; fewer with
            // many items, so they leave room), then one that tops the total up to 4096.
            let most = (3000 / n).clamp(1, 40) as u64;
            let mut items: Vec<(u32, u32)> = (0..n - 1)
                .map(|i| ((i as u32) << 24 | 7, 1 + (next() % most) as u32))
                .collect();
            let used: u32 = items.iter().map(|i| i.1).sum();
            items.push((0xff << 24, TOTAL - used));
            let mut want = Vec::new();
            for &(base, f) in &items {
                want.extend((0..f).map(|bias| base | bias << 12));
            }
            let mut got = vec![9u32; 3];
            if !crate::simd::fill_entries(&mut got, &items) {
                eprintln!("SKIPPED the_simd_table_fill_matches_the_loop: no AVX-512");
                return;
            }
            assert_eq!(&got[..3], &[9, 9, 9]);
            assert_eq!(&got[3..], &want[..], "{n} items");
        }
    }

    /// A compact table numbers its values by groups of eight symbols when there are at
    /// most 32 groups (`symbols[v] = v + groups[v / 8]` for every value), else by index;
    /// either way every slot's value maps back to its symbol.
    #[test]
    fn compact_tables_number_values_by_group_when_they_can() {
        let table = |symbols: &[u32]| {
            let f = (TOTAL as usize / symbols.len()) as u16;
            let mut present: Vec<(u32, u16)> = symbols.iter().map(|&s| (s, f)).collect();
            present[0].1 += (TOTAL as usize - f as usize * symbols.len()) as u16;
            (DecodeTable::build(2048, &present), present)
        };
        // Every slot's value maps back to the slot's symbol.
        let maps_back =
            |entries: &[u32; TOTAL as usize], symbols: &[u16; 256], present: &[(u32, u16)]| {
                let mut slot = 0;
                for &(s, f) in present {
                    for _ in 0..f {
                        assert_eq!(symbols[(entries[slot] >> 24) as usize] as u32, s);
                        slot += 1;
                    }
                }
            };
        // Bell-like heads: runs of exponents on both signs, and zero: 15 groups.
        let mut heads: Vec<u32> = vec![0];
        heads.extend(420..460);
        heads.extend(1444..1470);
        let (t, present) = table(&heads);
        let TableKind::Compact {
            entries,
            symbols,
            groups,
            direct,
        } = &t.kind
        else {
            panic!("compact expected")
        };
        assert!(!direct);
        let g = groups.as_ref().expect("15 groups: numbered by group");
        for v in 0..256 {
            assert_eq!(symbols[v], (v as u16).wrapping_add(g[v / 8]), "value {v}");
        }
        maps_back(entries, symbols, &present);
        // 40 groups (every eighth symbol): by index.
        let heads: Vec<u32> = (0..40).map(|k| 8 * k + 3).collect();
        let (t, present) = table(&heads);
        let TableKind::Compact {
            entries,
            symbols,
            groups,
            ..
        } = &t.kind
        else {
            panic!("compact expected")
        };
        assert!(groups.is_none());
        maps_back(entries, symbols, &present);
        // Exactly 32 groups still fit; 33 do not.
        assert!(matches!(
            table(&(0..32).map(|k| 8 * k).collect::<Vec<_>>()).0.kind,
            TableKind::Compact {
                groups: Some(_),
                ..
            }
        ));
        assert!(matches!(
            table(&(0..33).map(|k| 8 * k).collect::<Vec<_>>()).0.kind,
            TableKind::Compact { groups: None, .. }
        ));
    }

    /// An `f64` ordered by `total_cmp`, for the quantiser's heap.
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Key(f64);

    impl Eq for Key {}

    impl PartialOrd for Key {
        fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }

    impl Ord for Key {
        fn cmp(&self, other: &Self) -> std::cmp::Ordering {
            self.0.total_cmp(&other.0)
        }
    }

    /// The quantiser as first written, one heap step per unit moved: the reference
    /// [`SymbolCounts::quantise`] must match.
    fn quantise_reference(present: &SymbolCounts, precision: u32) -> Option<Vec<u32>> {
        let total_p = 1u32 << precision;
        let (counts, total) = (&present.counts, present.total);
        if counts.len() < 2 || counts.len() > total_p as usize {
            return None;
        }
        let mut freq: Vec<u32> = counts
            .iter()
            .map(|&c| ((c as u128 * total_p as u128 / total as u128) as u32).max(1))
            .collect();
        let sum: u32 = freq.iter().sum();
        let ratio = &log2_tables().next;
        let gain = |c: u64, f: u32| c as f64 * ratio[f as usize];
        let mut heap;
        if sum < total_p {
            heap = std::collections::BinaryHeap::from(
                counts
                    .iter()
                    .zip(&freq)
                    .enumerate()
                    .map(|(i, (&c, &f))| (Key(gain(c, f)), std::cmp::Reverse(i)))
                    .collect::<Vec<_>>(),
            );
            for _ in sum..total_p {
                let (_, std::cmp::Reverse(i)) = heap.pop().unwrap();
                freq[i] += 1;
                heap.push((Key(gain(counts[i], freq[i])), std::cmp::Reverse(i)));
            }
        } else {
            heap = std::collections::BinaryHeap::from(
                counts
                    .iter()
                    .zip(&freq)
                    .enumerate()
                    .filter(|(_, (_, &f))| f > 1)
                    .map(|(i, (&c, &f))| (Key(-gain(c, f - 1)), std::cmp::Reverse(i)))
                    .collect::<Vec<_>>(),
            );
            for _ in total_p..sum {
                let (_, std::cmp::Reverse(i)) = heap.pop().unwrap();
                freq[i] -= 1;
                if freq[i] > 1 {
                    let f = freq[i];
                    heap.push((Key(-gain(counts[i], f - 1)), std::cmp::Reverse(i)));
                }
            }
        }
        Some(freq)
    }

    /// Random histograms of every shape the encoder meets (singletons, a few large
    /// counts, near-uniform, one dominant symbol) at every precision: the selection and
    /// its heap fallback give the reference's frequencies exactly.
    #[test]
    fn quantise_matches_the_one_step_at_a_time_reference() {
        let mut next = crate::tests::xorshift(0x2545_f491_4f6c_dd1d);
        for case in 0..3000 {
            let n = 2 + next() as usize % [3usize, 30, 300, 3000][case % 4];
            let counts: Vec<u64> = (0..n)
                .map(|i| match (case / 4) % 5 {
                    0 => 1,
                    1 => 1 + next() % 3,
                    2 => 1 + next() % 1000,
                    3 => {
                        if i == 0 {
                            1 << 20
                        } else {
                            1 + next() % 5
                        }
                    }
                    _ => 1 + (next() % 100).pow(3),
                })
                .collect();
            let present = SymbolCounts {
                alphabet: n,
                symbols: (0..n).collect(),
                total: counts.iter().sum(),
                counts,
            };
            for p in [12, 10, 8, 6, 3] {
                assert_eq!(
                    present.quantise(p),
                    quantise_reference(&present, p),
                    "case {case} p {p}"
                );
            }
        }
    }

    /// Both ways of [`best_moves`]: one move each from the selection, and a symbol that
    /// moves three times (its later moves outrank the others' first) from the heap.
    #[test]
    fn best_moves_takes_a_symbols_later_moves_when_they_rank_higher() {
        // Symbol i's move j: 1000 + 100 i - 150 j, so no second move beats 1200.
        let spread = |i: usize, j: u32| Some(1000 + 100 * i as u128 - 150 * j as u128);
        let mut got = best_moves(4, 2, spread);
        got.sort();
        assert_eq!(got, vec![2, 3], "one move each: 1300 and 1200");
        // Symbol i's move j: 100 (i + 1) - j, or for symbol 3, 1000 - j.
        let key = |i: usize, j: u32| {
            let base = if i == 3 { 1000 } else { 100 * (i as u128 + 1) };
            Some(base - j as u128)
        };
        let mut got = best_moves(4, 2, key);
        got.sort();
        assert_eq!(got, vec![3, 3], "1000 and 999");
        let mut got = best_moves(4, 4, key);
        got.sort();
        assert_eq!(got, vec![3, 3, 3, 3], "999, 998 and 997 outrank 300");
        let mut got = best_moves(3, 3, |i, j| (j == 0).then_some(i as u128));
        got.sort();
        assert_eq!(got, vec![0, 1, 2], "every first move when k is all of them");
        assert!(best_moves(3, 0, key).is_empty());
    }

    /// The table-driven entropy stays within 1e-12 of the term-by-term one, relatively,
    /// from two symbols to full alphabets, with counts past the table's 4096.
    #[test]
    fn entropy_matches_the_term_by_term_sum() {
        let mut next = crate::tests::xorshift(0x0123_4567_89ab_cdef);
        for case in 0..2000 {
            let alphabet = [2usize, 16, 256, 2048][case % 4];
            let scale = [1u64, 10, 5000, 1 << 30][(case / 4) % 4];
            let counts: Vec<u64> = (0..alphabet)
                .map(|_| {
                    if next().is_multiple_of(3) {
                        0
                    } else {
                        next() % scale
                    }
                })
                .collect();
            let exact = crate::entropy_bits(&counts);
            let fast = SymbolCounts::of(&counts).entropy_bits();
            assert!(
                (fast - exact).abs() <= 1e-12 * exact.max(1.0),
                "case {case}: {fast} vs {exact}"
            );
        }
    }

    #[test]
    fn serialised_len_is_to_bytes_len() {
        let mut counts = vec![0u64; 2048];
        for (i, s) in [0usize, 5, 130, 131, 900, 2047].iter().enumerate() {
            counts[*s] = 1 + 1000 * i as u64;
        }
        let present = SymbolCounts::of(&counts);
        for p in [12, 10, 8, 6, 3] {
            let freq = present.quantise(p).unwrap();
            let m = present.model(counts.len(), &freq, p);
            assert_eq!(
                present.serialised_len(2048, &freq),
                m.to_bytes().len(),
                "{p}"
            );
            assert_eq!(present.to_bytes(&freq, p), m.to_bytes(), "{p}");
            let freqs: usize = freq.iter().map(|&f| varint_len(f as u64)).sum();
            assert_eq!(present.serialised_gaps_len() + freqs, m.to_bytes().len());
        }
    }
}
