//! AVX-512 (F, BW, VL, VBMI) steps after the rANS rounds, 32 values at a time.
//!
//! - Symbol indices (a compact decode table's 8-bit values) become 16-bit symbols with
//!   four two-register word permutes (`vpermt2w`, 64 entries each) and two blends on the
//!   index's top bits: the 256-entry symbol table lives in eight registers. In the fused
//!   kernels, a table whose values are numbered by groups of eight symbols maps them with
//!   one `vpermw` over 32 group offsets and an add instead ([`Lookup`]); a round's 32
//!   values are first gathered from the four registers' entries by one `vpermt2b`.
//! - 5-bit tails are unpacked with one byte permute (`vpermb`, each 64-bit lane gets the
//!   five bytes of its eight values) and one `vpmultishiftqb` (each byte picks its bits).
//! - BF16 values are `symbol << 5 | tail`, written 64 bytes per store; F32 values are
//!   `head << 21 | tail << 16 | byte1 << 8 | byte0`, 64 bytes per store.
//!
//! Each public function does whole steps only and returns how many values it wrote; the
//! caller finishes the rest with the scalar code that is the reference.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Whether this CPU has every extension the functions here use.
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vbmi")
            && std::is_x86_feature_detected!("popcnt")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Values per step.
const STEP: usize = 32;

/// BF16 values from symbol indices (`symbols[v]`, or `v` itself when `symbols` is `None`)
/// and their 5-bit tails packed 8 per 5 bytes (`packed` starts at value 0): writes
/// `2 * k` bytes of `out` for the `k` values returned (a multiple of 32, stopping where a
/// 32-byte read of `packed` would pass its end).
#[cfg(target_arch = "x86_64")]
pub(crate) fn merge_bf16(
    values: &[u8],
    symbols: Option<&[u16; 256]>,
    packed: &[u8],
    out: &mut [u8],
) -> usize {
    assert!(available());
    let n = values.len().min(out.len() / 2);
    // Step s reads packed[20 s .. 20 s + 32).
    let by_tail = if packed.len() >= 32 {
        ((packed.len() - 32) / 20 + 1) * STEP
    } else {
        0
    };
    let steps = n.min(by_tail) / STEP;
    // SAFETY: step s reads values[32 s..32 s + 32), packed[20 s..20 s + 32) and writes
    // out[64 s..64 s + 64); `steps` keeps all three inside their slices; the symbol table
    // is 512 bytes read as eight 64-byte registers. The CPU features are asserted above.
    unsafe { merge_bf16_avx512(values, symbols, packed, out, steps) };
    steps * STEP
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi")]
unsafe fn merge_bf16_avx512(
    values: &[u8],
    symbols: Option<&[u16; 256]>,
    packed: &[u8],
    out: &mut [u8],
    steps: usize,
) {
    // SAFETY: see `merge_bf16`.
    unsafe {
        let table = symbols.map(|s| SymbolTable::load(s));
        let tails = Tails5::new();
        for s in 0..steps {
            let idx = _mm256_loadu_si256(values.as_ptr().add(s * STEP) as *const __m256i);
            let idx = _mm512_cvtepu8_epi16(idx);
            let sym = match &table {
                Some(t) => t.lookup(idx),
                None => idx,
            };
            let tail = _mm512_cvtepu8_epi16(tails.unpack(packed.as_ptr().add(s * 20)));
            let v = _mm512_or_si512(_mm512_slli_epi16::<5>(sym), tail);
            _mm512_storeu_si512(out.as_mut_ptr().add(s * 64) as *mut __m512i, v);
        }
    }
}

/// Symbols from symbol indices: `out[i] = symbols[values[i]]` for the returned count of
/// values (a multiple of 32).
#[cfg(target_arch = "x86_64")]
pub(crate) fn map_symbols(values: &[u8], symbols: &[u16; 256], out: &mut [u16]) -> usize {
    assert!(available());
    let steps = values.len().min(out.len()) / STEP;
    // SAFETY: step s reads values[32 s..32 s + 32) and writes out[32 s..32 s + 32), inside
    // both slices by `steps`; CPU features asserted above.
    unsafe { map_symbols_avx512(values, symbols, out, steps) };
    steps * STEP
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi")]
unsafe fn map_symbols_avx512(values: &[u8], symbols: &[u16; 256], out: &mut [u16], steps: usize) {
    // SAFETY: see `map_symbols`.
    unsafe {
        let table = SymbolTable::load(symbols);
        for s in 0..steps {
            let idx = _mm256_loadu_si256(values.as_ptr().add(s * STEP) as *const __m256i);
            let sym = table.lookup(_mm512_cvtepu8_epi16(idx));
            _mm512_storeu_si512(out.as_mut_ptr().add(s * STEP) as *mut __m512i, sym);
        }
    }
}

/// Unpacks 5-bit values packed 8 per 5 bytes: `out[i]` for the returned count of values
/// (a multiple of 32, stopping where a 32-byte read of `packed` would pass its end).
#[cfg(target_arch = "x86_64")]
pub(crate) fn unpack5(packed: &[u8], out: &mut [u8]) -> usize {
    assert!(available());
    let by_tail = if packed.len() >= 32 {
        ((packed.len() - 32) / 20 + 1) * STEP
    } else {
        0
    };
    let steps = out.len().min(by_tail) / STEP;
    // SAFETY: step s reads packed[20 s..20 s + 32) and writes out[32 s..32 s + 32), both
    // inside their slices by `steps`; CPU features asserted above.
    unsafe { unpack5_avx512(packed, out, steps) };
    steps * STEP
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi")]
unsafe fn unpack5_avx512(packed: &[u8], out: &mut [u8], steps: usize) {
    // SAFETY: see `unpack5`.
    unsafe {
        let tails = Tails5::new();
        for s in 0..steps {
            let t = tails.unpack(packed.as_ptr().add(s * 20));
            _mm256_storeu_si256(out.as_mut_ptr().add(s * STEP) as *mut __m256i, t);
        }
    }
}

/// F32 values `head << 21 | tail << 16 | byte1 << 8 | byte0`, 4 bytes each into `out`,
/// for the returned count of values (a multiple of 32).
#[cfg(target_arch = "x86_64")]
pub(crate) fn merge_f32(
    head: &[u16],
    tail: &[u8],
    byte1: &[u8],
    byte0: &[u8],
    out: &mut [u8],
) -> usize {
    assert!(available());
    let n = head
        .len()
        .min(tail.len())
        .min(byte1.len())
        .min(byte0.len())
        .min(out.len() / 4);
    let steps = n / STEP;
    // SAFETY: step s reads 32 elements at 32 s of each input and writes out[128 s..128 s +
    // 128), all inside their slices by `steps`; CPU features asserted above.
    unsafe { merge_f32_avx512(head, tail, byte1, byte0, out, steps) };
    steps * STEP
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi")]
unsafe fn merge_f32_avx512(
    head: &[u16],
    tail: &[u8],
    byte1: &[u8],
    byte0: &[u8],
    out: &mut [u8],
    steps: usize,
) {
    // SAFETY: see `merge_f32`.
    unsafe {
        for i in (0..steps * STEP).step_by(16) {
            let h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(head.as_ptr().add(i) as *const _));
            let t = _mm512_cvtepu8_epi32(_mm_loadu_si128(tail.as_ptr().add(i) as *const _));
            let b1 = _mm512_cvtepu8_epi32(_mm_loadu_si128(byte1.as_ptr().add(i) as *const _));
            let b0 = _mm512_cvtepu8_epi32(_mm_loadu_si128(byte0.as_ptr().add(i) as *const _));
            let v = _mm512_or_si512(
                _mm512_or_si512(_mm512_slli_epi32::<21>(h), _mm512_slli_epi32::<16>(t)),
                _mm512_or_si512(_mm512_slli_epi32::<8>(b1), b0),
            );
            _mm512_storeu_si512(out.as_mut_ptr().add(4 * i) as *mut __m512i, v);
        }
    }
}

/// A 256-entry `u16` table in eight registers, looked up 32 indices at a time.
#[cfg(target_arch = "x86_64")]
struct SymbolTable {
    t: [__m512i; 8],
}

#[cfg(target_arch = "x86_64")]
impl SymbolTable {
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    fn load(symbols: &[u16; 256]) -> Self {
        // SAFETY: eight 64-byte loads cover the 512 bytes of `symbols` exactly.
        SymbolTable {
            t: std::array::from_fn(|k| unsafe {
                _mm512_loadu_si512(symbols.as_ptr().add(32 * k) as *const __m512i)
            }),
        }
    }

    /// `symbols[idx]` for 32 word indices below 256.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    fn lookup(&self, idx: __m512i) -> __m512i {
        let t = &self.t;
        // Each permute covers 64 entries (index bits 0..6); bits 6 and 7 pick the permute.
        let a = _mm512_permutex2var_epi16(t[0], idx, t[1]);
        let b = _mm512_permutex2var_epi16(t[2], idx, t[3]);
        let c = _mm512_permutex2var_epi16(t[4], idx, t[5]);
        let d = _mm512_permutex2var_epi16(t[6], idx, t[7]);
        let k64 = _mm512_test_epi16_mask(idx, _mm512_set1_epi16(64));
        let k128 = _mm512_test_epi16_mask(idx, _mm512_set1_epi16(128));
        let ab = _mm512_mask_blend_epi16(k64, a, b);
        let cd = _mm512_mask_blend_epi16(k64, c, d);
        _mm512_mask_blend_epi16(k128, ab, cd)
    }
}

/// A [`super::ValueMap`] in registers, for the fused kernels. (One lives on the stack for
/// a kernel call and its registers are what the rounds use: boxing the large variant
/// would put a load in every round.)
#[cfg(target_arch = "x86_64")]
#[allow(clippy::large_enum_variant)]
enum Lookup {
    Direct,
    /// `v + groups[v / 8]`: one word permute over a register of 32 offsets.
    Groups(__m512i),
    Table(SymbolTable),
}

#[cfg(target_arch = "x86_64")]
impl Lookup {
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    fn load(map: super::ValueMap<'_>) -> Self {
        match map {
            super::ValueMap::Direct => Lookup::Direct,
            // SAFETY: a 64-byte load of the 32 offsets.
            super::ValueMap::Groups(g) => {
                Lookup::Groups(unsafe { _mm512_loadu_si512(g.as_ptr() as *const __m512i) })
            }
            super::ValueMap::Table(t) => Lookup::Table(SymbolTable::load(t)),
        }
    }

    /// The symbols of 32 word values below 256.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    fn apply(&self, v: __m512i) -> __m512i {
        match self {
            Lookup::Direct => v,
            Lookup::Groups(g) => {
                _mm512_add_epi16(v, _mm512_permutexvar_epi16(_mm512_srli_epi16::<3>(v), *g))
            }
            Lookup::Table(t) => t.lookup(v),
        }
    }
}

/// The constants that unpack 32 five-bit values from 20 bytes.
#[cfg(target_arch = "x86_64")]
struct Tails5 {
    /// Byte `b` of 64-bit lane `j` takes input byte `5 j + b`.
    spread: __m256i,
    /// Byte `b` of every lane takes the bits from `5 b`.
    shifts: __m256i,
}

#[cfg(target_arch = "x86_64")]
impl Tails5 {
    #[target_feature(enable = "avx512f,avx512vl")]
    #[inline]
    fn new() -> Self {
        let spread: [u8; 32] = std::array::from_fn(|i| (5 * (i / 8) + i % 8) as u8);
        let shifts: [u8; 32] = std::array::from_fn(|i| (5 * (i % 8)) as u8);
        // SAFETY: 32-byte loads from 32-byte arrays.
        unsafe {
            Tails5 {
                spread: _mm256_loadu_si256(spread.as_ptr() as *const __m256i),
                shifts: _mm256_loadu_si256(shifts.as_ptr() as *const __m256i),
            }
        }
    }

    /// The 32 tails whose 20 bytes start at `p`; reads 32 bytes from `p`.
    ///
    /// # Safety
    /// `p..p + 32` must be readable.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi")]
    #[inline]
    unsafe fn unpack(&self, p: *const u8) -> __m256i {
        // SAFETY: the caller's contract.
        let raw = unsafe { _mm256_loadu_si256(p as *const __m256i) };
        let lanes = _mm256_permutexvar_epi8(self.spread, raw);
        let bits = _mm256_multishift_epi64_epi8(self.shifts, lanes);
        _mm256_and_si256(bits, _mm256_set1_epi8(31))
    }
}

/// One register of eight lanes for one round, after the table lookup: updates the states
/// from `freq` and `bias` and refills from the shared word stream with an expand.
///
/// # Safety
/// `*p..*p + 16` readable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt,avx512f,avx512vl,avx2")]
#[inline]
unsafe fn advance8(xs: &mut __m256i, p: &mut *const u8, f: __m256i, bias: __m256i) {
    let y = _mm256_add_epi32(_mm256_mullo_epi32(f, _mm256_srli_epi32::<12>(*xs)), bias);
    let need = _mm256_cmplt_epu32_mask(y, _mm256_set1_epi32(0x8000));
    // SAFETY: the caller's contract.
    let raw = unsafe { _mm256_cvtepu16_epi32(_mm_loadu_si128(*p as *const __m128i)) };
    let w = _mm256_maskz_expand_epi32(need, raw);
    *xs = _mm256_mask_mov_epi32(y, need, _mm256_or_si256(_mm256_slli_epi32::<16>(y), w));
    // SAFETY: at most eight words were taken, all inside the readable 16 bytes.
    *p = unsafe { p.add(2 * need.count_ones() as usize) };
}

/// One register's round with a compact table (`freq | bias << 12 | value << 24`): gathers
/// the eight entries, advances the states and refills them; returns the entries.
///
/// # Safety
/// `*p..*p + 16` readable; `tab` a 4096-entry table (slots are `state & 0xfff`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt,avx512f,avx512vl,avx2")]
#[inline]
unsafe fn compact8(xc: &mut __m256i, p: &mut *const u8, tab: *const i32) -> __m256i {
    let mask12 = _mm256_set1_epi32(0xfff);
    // SAFETY: the caller's contract.
    unsafe {
        let e = _mm256_i32gather_epi32::<4>(tab, _mm256_and_si256(*xc, mask12));
        let f = _mm256_and_si256(e, mask12);
        let bias = _mm256_and_si256(_mm256_srli_epi32::<12>(e), mask12);
        advance8(xc, p, f, bias);
        e
    }
}

/// AVX-512 twin of `avx2::decode_rounds_avx2`: the same eight-lane registers (on Zen 4
/// two 8-wide gathers beat one 16-wide gather), with mask compares and `vpexpandd` for the
/// refill instead of a permute table.
///
/// # Safety
/// As `avx2::decode_rounds_avx2`, with AVX-512 F and VL present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt,avx512f,avx512vl,avx2")]
pub(super) unsafe fn decode_rounds_avx512<const C: usize>(
    x: &mut [u32; 32],
    pos: &mut usize,
    stream: &[u8],
    table: &[u32; 4096],
    out: &mut [u8],
) {
    let tab = table.as_ptr() as *const i32;
    // SAFETY: the caller's contract, which is `run_rounds`'s; `compact8` reads 16 bytes at
    // the pointer.
    unsafe {
        super::run_rounds::<C, u8>(x, pos, stream, out, 8 * C, |xs, p, chunk| {
            for (xc, o) in xs.iter_mut().zip(chunk.chunks_exact_mut(8)) {
                let e = compact8(xc, p, tab);
                let v = _mm256_cvtepi32_epi8(_mm256_srli_epi32::<24>(e));
                _mm_storel_epi64(o.as_mut_ptr() as *mut __m128i, v);
            }
        })
    }
}

/// The rANS rounds of a 32-lane compact-table head fused with the BF16 merge: each round's
/// 32 table values go straight through the symbol table and out with their tails, 64 bytes
/// per round, so the merge runs in the shadow of the gathers instead of in a second pass.
///
/// # Safety
/// AVX-512 F, BW, VL and VBMI present; `out.len()` a multiple of 64, and for its `rounds =
/// out.len() / 64` rounds the words present (`*pos + 64 rounds <= stream.len()`) and
/// `packed` readable for `20 rounds + 12` bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt,avx512f,avx512bw,avx512vl,avx512vbmi,avx2")]
pub(super) unsafe fn decode_bf16_avx512(
    x: &mut [u32; 32],
    pos: &mut usize,
    stream: &[u8],
    table: &[u32; 4096],
    symbols: super::ValueMap<'_>,
    packed: &[u8],
    out: &mut [u8],
) {
    let tab = table.as_ptr() as *const i32;
    let lookup = Lookup::load(symbols);
    let tails = Tails5::new();
    let mut tail_at = packed.as_ptr();
    // SAFETY: the caller's contract, which is `run_rounds`'s; `compact8` reads 16 bytes at
    // the word pointer; each round reads 32 bytes of tails at `tail_at` and moves it 20.
    unsafe {
        let top = top_bytes();
        super::run_rounds::<4, u8>(x, pos, stream, out, 64, |xs, p, chunk| {
            let e: [__m256i; 4] = std::array::from_fn(|c| compact8(&mut xs[c], p, tab));
            let sym = lookup.apply(values32(e, top));
            let tail = _mm512_cvtepu8_epi16(tails.unpack(tail_at));
            tail_at = tail_at.add(20);
            let o = _mm512_or_si512(_mm512_slli_epi16::<5>(sym), tail);
            _mm512_storeu_si512(chunk.as_mut_ptr() as *mut __m512i, o);
        })
    }
}

/// See [`super::fill_entries`].
///
/// # Safety
/// AVX-512 F present; `out` writable for the sum of the items' `f` entries.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn fill_entries(out: *mut u32, items: &[(u32, u32)]) {
    let lanes = _mm512_slli_epi32::<12>(_mm512_setr_epi32(
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    ));
    let step = _mm512_set1_epi32(16 << 12);
    let mut at = out;
    for &(base, f) in items {
        let mut v = _mm512_or_si512(_mm512_set1_epi32(base as i32), lanes);
        let f = f as usize;
        let mut k = 0;
        // SAFETY: entries `at .. at + f` are inside `out` (the caller's contract); whole
        // stores below `f`, then one masked to the rest.
        unsafe {
            while k + 16 <= f {
                _mm512_storeu_si512(at.add(k) as *mut __m512i, v);
                v = _mm512_add_epi32(v, step);
                k += 16;
            }
            if k < f {
                let m = ((1u32 << (f - k)) - 1) as __mmask16;
                _mm512_mask_storeu_epi32(at.add(k) as *mut i32, m, v);
            }
            at = at.add(f);
        }
    }
}

/// Byte indices picking the top byte of each of the 32 dwords of two registers (for
/// `vpermt2b`): byte `i` of the result is byte `4 i + 3` of the pair.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn top_bytes() -> __m512i {
    let idx: [u8; 64] = std::array::from_fn(|j| ((4 * j + 3) % 128) as u8);
    // SAFETY: a 64-byte load from a 64-byte array.
    unsafe { _mm512_loadu_si512(idx.as_ptr() as *const __m512i) }
}

/// A round's 32 table values (the top byte of each compact entry of four registers) as
/// 16-bit lanes in lane order: two inserts, one `vpermt2b` and one widening, where a
/// shift, a `vpmovdw` per register and three inserts took twice the shuffle-port
/// instructions (measured: decode of the shared files 5-14% faster, docs/ARCHITECTURE.md).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
#[inline]
fn values32(e: [__m256i; 4], top: __m512i) -> __m512i {
    let pair = |a: __m256i, b: __m256i| _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b);
    _mm512_cvtepu8_epi16(_mm512_castsi512_si256(_mm512_permutex2var_epi8(
        pair(e[0], e[1]),
        top,
        pair(e[2], e[3]),
    )))
}

/// The interleave of two registers of 32 words: low word `i` and high word `i` become
/// the `u32` `i`; `half` 0 for values 0..16, 1 for 16..32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn interleave16(half: usize) -> __m512i {
    let idx: [u16; 32] = std::array::from_fn(|j| (16 * half + j / 2 + 32 * (j % 2)) as u16);
    // SAFETY: a 64-byte load from a 64-byte array.
    unsafe { _mm512_loadu_si512(idx.as_ptr() as *const __m512i) }
}

/// The rANS rounds of a 32-lane F32 head fused with the F32 merge (`head << 21 | tail <<
/// 16 | byte1 << 8 | byte0`): each round's 32 heads go out with their 5-bit tails and raw
/// low bytes, 128 bytes per round, with no head buffer and no second pass.
///
/// # Safety
/// AVX-512 F, BW, VL and VBMI present; `out.len()` a multiple of 128, and for its `rounds =
/// out.len() / 128` rounds the words present (`*pos + 64 rounds <= stream.len()`), `tails`
/// readable for `20 rounds + 12` bytes and `byte1`, `byte0` for `32 rounds`; every head
/// symbol the table yields below `2^11`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt,avx512f,avx512bw,avx512vl,avx512vbmi,avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn decode_f32_avx512(
    x: &mut [u32; 32],
    pos: &mut usize,
    stream: &[u8],
    table: super::HeadTable<'_>,
    tails: &[u8],
    byte1: &[u8],
    byte0: &[u8],
    out: &mut [u8],
) {
    let t5 = Tails5::new();
    let ilv = [interleave16(0), interleave16(1)];
    let mask12 = _mm256_set1_epi32(0xfff);
    let (mut tail_at, mut b1, mut b0) = (tails.as_ptr(), byte1.as_ptr(), byte0.as_ptr());
    // One round's 32 heads (16-bit lanes, in order) out as 32 F32 values.
    let merge = |sym: __m512i,
                 chunk: &mut [u8],
                 tail_at: &mut *const u8,
                 b1: &mut *const u8,
                 b0: &mut *const u8| {
        // SAFETY: the caller's contract: 32 bytes at each pointer (the tails' window) and
        // 128 bytes of `chunk`; each pointer moves past the round's bytes.
        unsafe {
            let tail = _mm512_cvtepu8_epi16(t5.unpack(*tail_at));
            let hi = _mm512_or_si512(_mm512_slli_epi16::<5>(sym), tail);
            let w1 = _mm512_cvtepu8_epi16(_mm256_loadu_si256(*b1 as *const __m256i));
            let w0 = _mm512_cvtepu8_epi16(_mm256_loadu_si256(*b0 as *const __m256i));
            let lo = _mm512_or_si512(_mm512_slli_epi16::<8>(w1), w0);
            let o = chunk.as_mut_ptr() as *mut __m512i;
            _mm512_storeu_si512(o, _mm512_permutex2var_epi16(lo, ilv[0], hi));
            _mm512_storeu_si512(o.add(1), _mm512_permutex2var_epi16(lo, ilv[1], hi));
            *tail_at = tail_at.add(20);
            *b1 = b1.add(32);
            *b0 = b0.add(32);
        }
    };
    let join = |h: [__m128i; 4]| {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_set_m128i(h[1], h[0])),
            _mm256_set_m128i(h[3], h[2]),
        )
    };
    // SAFETY: the caller's contract, which is `run_rounds`'s; `compact8` and `advance8`
    // read 16 bytes at the word pointer; `merge` as above.
    unsafe {
        match table {
            super::HeadTable::Compact(entries, symbols) => {
                let tab = entries.as_ptr() as *const i32;
                let lookup = Lookup::load(symbols);
                let top = top_bytes();
                super::run_rounds::<4, u8>(x, pos, stream, out, 128, |xs, p, chunk| {
                    let e: [__m256i; 4] = std::array::from_fn(|c| compact8(&mut xs[c], p, tab));
                    let sym = lookup.apply(values32(e, top));
                    merge(sym, chunk, &mut tail_at, &mut b1, &mut b0);
                })
            }
            super::HeadTable::Wide(entries) => {
                let tab = entries.as_ptr() as *const i32;
                super::run_rounds::<4, u8>(x, pos, stream, out, 128, |xs, p, chunk| {
                    let sym = join(std::array::from_fn(|c| {
                        let slot = _mm256_and_si256(xs[c], mask12);
                        let lo = _mm256_i32gather_epi32::<8>(tab, slot);
                        let bias = _mm256_i32gather_epi32::<8>(tab.add(1), slot);
                        advance8(&mut xs[c], p, _mm256_srli_epi32::<16>(lo), bias);
                        _mm256_cvtepi32_epi16(lo)
                    }));
                    merge(sym, chunk, &mut tail_at, &mut b1, &mut b0);
                })
            }
        }
    }
}

/// The rANS rounds for a wide table (more than 256 symbols: 64-bit entries
/// `symbol | freq << 16 | bias << 32`), writing 16-bit symbols: each register's eight
/// entries gathered as two halves per round.
///
/// # Safety
/// As [`decode_rounds_avx512`], for `u16` output.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt,avx512f,avx512vl,avx2")]
pub(super) unsafe fn decode_rounds_wide_avx512<const C: usize>(
    x: &mut [u32; 32],
    pos: &mut usize,
    stream: &[u8],
    table: &[u64; 4096],
    out: &mut [u16],
) {
    let tab = table.as_ptr() as *const i32;
    let mask12 = _mm256_set1_epi32(0xfff);
    // SAFETY: as `decode_rounds_avx512`; entries are 8 bytes, so the two halves of slot
    // `s` are at `tab + 2 s` and `tab + 2 s + 1`.
    unsafe {
        super::run_rounds::<C, u16>(x, pos, stream, out, 8 * C, |xs, p, chunk| {
            for (xc, o) in xs.iter_mut().zip(chunk.chunks_exact_mut(8)) {
                // The entry's two halves by two 8-wide 32-bit gathers, `symbol | freq <<
                // 16` and `bias` (as fast as one 64-bit gather on Zen 4, and no 512-bit
                // register).
                let slot = _mm256_and_si256(*xc, mask12);
                let lo = _mm256_i32gather_epi32::<8>(tab, slot);
                let bias = _mm256_i32gather_epi32::<8>(tab.add(1), slot);
                advance8(xc, p, _mm256_srli_epi32::<16>(lo), bias);
                let v = _mm256_cvtepi32_epi16(lo);
                _mm_storeu_si128(o.as_mut_ptr() as *mut __m128i, v);
            }
        })
    }
}

/// Loads the eight symbols of one register and round, as `u32`s, lanes reversed.
///
/// # Safety
/// `p..p + 8` symbols readable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt,avx512f,avx512vl,avx2")]
#[inline]
unsafe fn load8_reversed(syms: super::SymbolPtr, at: usize, rev: __m256i) -> __m256i {
    // SAFETY: the caller's contract.
    let v = unsafe {
        match syms {
            super::SymbolPtr::U8(p) => {
                _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.add(at) as *const __m128i))
            }
            super::SymbolPtr::U16(p) => {
                _mm256_cvtepu16_epi32(_mm_loadu_si128(p.add(at) as *const __m128i))
            }
        }
    };
    _mm256_permutexvar_epi32(rev, v)
}

/// The rANS encoder's whole rounds, backwards, eight lanes per register: the same words,
/// in the same order, and the same final states as the scalar loop. Registers hold their
/// lanes reversed, so that a compress of the emitting lanes lists them in the scalar
/// loop's order (lane `L - 1` first). Returns false if a symbol is outside the table or has
/// no frequency (the stream is then discarded).
///
/// # Safety
/// AVX-512 F and VL present; `rounds * 8 C` symbols readable at `syms`; `table` has at
/// least one entry (`rcp | packed << 32`); `words` has room for `*count + 8 C * rounds +
/// 8` words.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt,avx512f,avx512vl,avx2")]
pub(super) unsafe fn encode_rounds_avx512<const C: usize>(
    x: &mut [u32; 32],
    syms: super::SymbolPtr,
    rounds: usize,
    table: &[u64],
    words: &mut [u16],
    count: &mut usize,
) -> bool {
    // SAFETY: the caller's contract. Gather indices are clamped to the table's last entry.
    unsafe {
        let rev = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
        let mut xs: [__m256i; C] = std::array::from_fn(|c| {
            _mm256_permutexvar_epi32(
                rev,
                _mm256_loadu_si256(x.as_ptr().add(8 * c) as *const __m256i),
            )
        });
        let last = _mm256_set1_epi32(table.len() as i32 - 1);
        let tab = table.as_ptr() as *const i32;
        let mask13 = _mm256_set1_epi32(0x1fff);
        let total = _mm256_set1_epi32(4096);
        let mut bad: u8 = 0;
        let mut w = words.as_mut_ptr().add(*count);
        for r in (0..rounds).rev() {
            for c in (0..C).rev() {
                let xc = &mut xs[c];
                let idx = load8_reversed(syms, (r * C + c) * 8, rev);
                bad |= _mm256_cmpgt_epu32_mask(idx, last);
                let idx = _mm256_min_epu32(idx, last);
                // Two 8-wide 32-bit gathers (the two halves of each entry) measured faster
                // on Zen 4 than one 64-bit gather into a 512-bit register.
                let rcp = _mm256_i32gather_epi32::<8>(tab, idx);
                let packed = _mm256_i32gather_epi32::<8>(tab.add(1), idx);
                let freq = _mm256_and_si256(packed, mask13);
                bad |= _mm256_cmpeq_epi32_mask(freq, _mm256_setzero_si256());
                let emit = _mm256_cmpge_epu32_mask(*xc, _mm256_slli_epi32::<19>(freq));
                let out = _mm256_cvtepi32_epi16(_mm256_maskz_compress_epi32(emit, *xc));
                _mm_storeu_si128(w as *mut __m128i, out);
                w = w.add(emit.count_ones() as usize);
                let y = _mm256_mask_srli_epi32(*xc, emit, *xc, 16);
                // q = mulhi(y, rcp) >> shift, even and odd lanes apart.
                let even = _mm256_srli_epi64::<32>(_mm256_mul_epu32(y, rcp));
                let odd =
                    _mm256_mul_epu32(_mm256_srli_epi64::<32>(y), _mm256_srli_epi64::<32>(rcp));
                let q = _mm256_mask_blend_epi32(0xaa, even, odd);
                let q = _mm256_srlv_epi32(q, _mm256_srli_epi32::<26>(packed));
                let bias = _mm256_and_si256(_mm256_srli_epi32::<13>(packed), mask13);
                let step = _mm256_mullo_epi32(q, _mm256_sub_epi32(total, freq));
                *xc = _mm256_add_epi32(_mm256_add_epi32(y, bias), step);
            }
        }
        for (c, xc) in xs.iter().enumerate() {
            _mm256_storeu_si256(
                x.as_mut_ptr().add(8 * c) as *mut __m256i,
                _mm256_permutexvar_epi32(rev, *xc),
            );
        }
        *count = w.offset_from(words.as_ptr()) as usize;
        bad == 0
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod off_x86 {
    //! Never called: `available()` is false off x86_64.
    pub(crate) fn merge_bf16(_: &[u8], _: Option<&[u16; 256]>, _: &[u8], _: &mut [u8]) -> usize {
        0
    }
    pub(crate) fn map_symbols(_: &[u8], _: &[u16; 256], _: &mut [u16]) -> usize {
        0
    }
    pub(crate) fn unpack5(_: &[u8], _: &mut [u8]) -> usize {
        0
    }
    pub(crate) fn merge_f32(_: &[u16], _: &[u8], _: &[u8], _: &[u8], _: &mut [u8]) -> usize {
        0
    }
}
#[cfg(not(target_arch = "x86_64"))]
pub(crate) use off_x86::*;

/// The scalar plane split with AVX-512 enabled (see [`super::split_avx512`]).
///
/// # Safety
/// AVX-512 F, BW and VL present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn split_avx512(
    layout: crate::PlaneLayout,
    values: &[u8],
    head: &mut [u16],
    tail: &mut [u8],
    byte0: &mut [u8],
    byte1: &mut [u8],
) {
    crate::planes::split_scalar(layout, values, head, tail, byte0, byte1)
}
