//! The SIMD kernels: the crate's only `unsafe` code, each block with a SAFETY note, each
//! entry point a safe function that checks the bounds its intrinsics rely on.
//!
//! - [`avx2`]: the rANS rounds, eight lanes per register (table gather, refill by a
//!   permute table).
//! - [`avx512`]: the same rounds with mask compares and `vpexpandd`, rounds for tables of
//!   more than 256 symbols (64-bit entries, gathered as two halves), the rANS encode
//!   rounds, and what follows the decode rounds, 32 values per
//!   step: symbol indices to symbols, 5-bit tails unpacked, planes merged into the output.
//!
//! Every function here has a scalar twin in `planes.rs` or `rans/mod.rs` that the tests
//! compare it with, bit for bit.
#![allow(unsafe_code)]

mod avx2;
mod avx512;

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// The loop every rANS rounds kernel shares: the states in `C` registers of eight lanes,
/// one pointer into the shared word stream, and `round` for each round with all `C`
/// registers and that round's `per_round` outputs; the states and the position are stored
/// back at the end. Inlined into each kernel, so it runs with the kernel's target features.
///
/// # Safety
/// AVX present; `C <= 4`; `out.len()` a multiple of `per_round`; `*pos <= stream.len()`;
/// `round` reads at most 16 bytes at the pointer per register and advances it by 2 bytes
/// per refilled lane, within the bounds the kernel's caller checked (`check_rounds`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn run_rounds<const C: usize, T>(
    x: &mut [u32; 32],
    pos: &mut usize,
    stream: &[u8],
    out: &mut [T],
    per_round: usize,
    mut round: impl FnMut(&mut [__m256i; C], &mut *const u8, &mut [T]),
) {
    // SAFETY: the caller's contract; `x` holds `32 >= 8 C` states.
    unsafe {
        let mut xs: [__m256i; C] =
            std::array::from_fn(|c| _mm256_loadu_si256(x.as_ptr().add(8 * c) as *const __m256i));
        let mut p = stream.as_ptr().add(*pos);
        for chunk in out.chunks_exact_mut(per_round) {
            round(&mut xs, &mut p, chunk);
        }
        for (c, xc) in xs.iter().enumerate() {
            _mm256_storeu_si256(x.as_mut_ptr().add(8 * c) as *mut __m256i, *xc);
        }
        *pos = p.offset_from(stream.as_ptr()) as usize;
    }
}

pub(crate) use avx2::available as avx2_available;
pub(crate) use avx512::{
    available as avx512_available, map_symbols, merge_bf16, merge_f32, unpack5,
};

/// Appends to `out`, for each `(base, f)` of `items` in order, the `f` entries `base | i
/// << 12` for `i` in `0..f`: a compact decode table's slots, 16 a store (the last store of
/// each symbol masked) where a compiled loop wrote four. Returns false, with `out`
/// untouched, without AVX-512 (the caller's loop does it then).
pub(crate) fn fill_entries(out: &mut Vec<u32>, items: &[(u32, u32)]) -> bool {
    if !avx512_available() {
        return false;
    }
    let total: usize = items.iter().map(|&(_, f)| f as usize).sum();
    out.reserve(total);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `total` entries of spare capacity are reserved above and the kernel writes
    // exactly `total` (every item's `f`, masked at its end) before the length is set.
    unsafe {
        avx512::fill_entries(out.as_mut_ptr().add(out.len()), items);
        out.set_len(out.len() + total);
    }
    true
}

/// Checks what every rounds kernel relies on: 16 or 32 lanes, whole rounds, and words for
/// every round even if every lane refilled in each (so each register's 16-byte word load
/// stays inside `stream`: at the `c`-th register of the last round at least
/// `lanes - 8 c >= 8` words are left).
fn check_rounds(lanes: usize, pos: usize, stream: &[u8], n: usize) {
    assert!(lanes == 16 || lanes == 32);
    assert!(n.is_multiple_of(lanes));
    assert!(pos <= stream.len() && 2 * n <= stream.len() - pos);
}

/// Decodes `out.len() / lanes` whole rounds with a compact table (entries
/// `freq | bias << 12 | value << 24`), writing each symbol's 8-bit value; `avx512` picks
/// the AVX-512 refill over the AVX2 one.
///
/// Panics unless the CPU has the kernel, `lanes` is 16 or 32, `out.len()` is a multiple
/// of it, and `pos + 2 * out.len() <= stream.len()`.
pub(crate) fn decode_rounds(
    avx512: bool,
    lanes: usize,
    x: &mut [u32; 32],
    pos: &mut usize,
    stream: &[u8],
    table: &[u32; 4096],
    out: &mut [u8],
) {
    check_rounds(lanes, *pos, stream, out.len());
    #[cfg(target_arch = "x86_64")]
    {
        assert!(avx2_available() && (!avx512 || avx512_available()));
        // SAFETY: features and bounds asserted above.
        unsafe {
            match (avx512, lanes) {
                (true, 16) => avx512::decode_rounds_avx512::<2>(x, pos, stream, table, out),
                (true, _) => avx512::decode_rounds_avx512::<4>(x, pos, stream, table, out),
                (false, 16) => avx2::decode_rounds_avx2::<2>(x, pos, stream, table, out),
                (false, _) => avx2::decode_rounds_avx2::<4>(x, pos, stream, table, out),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no SIMD kernel off x86_64: {avx512} {x:?} {table:?} {out:?}")
}

/// [`decode_rounds`] for a wide table (`symbol | freq << 16 | bias << 32`), writing
/// 16-bit symbols; AVX-512 only.
pub(crate) fn decode_rounds_wide(
    lanes: usize,
    x: &mut [u32; 32],
    pos: &mut usize,
    stream: &[u8],
    table: &[u64; 4096],
    out: &mut [u16],
) {
    check_rounds(lanes, *pos, stream, out.len());
    #[cfg(target_arch = "x86_64")]
    {
        assert!(avx2_available() && avx512_available());
        // SAFETY: features and bounds asserted above.
        unsafe {
            match lanes {
                16 => avx512::decode_rounds_wide_avx512::<2>(x, pos, stream, table, out),
                _ => avx512::decode_rounds_wide_avx512::<4>(x, pos, stream, table, out),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no SIMD kernel off x86_64: {x:?} {table:?} {out:?}")
}

/// Where the encoder's symbols are read from (checked lengths, see [`encode_rounds`]).
#[derive(Debug, Clone, Copy)]
enum SymbolPtr {
    U8(*const u8),
    U16(*const u16),
}

/// The rANS encoder's whole rounds of `lanes` (16 or 32) lanes, backwards, through
/// AVX-512: appends to `words[*count..]` exactly the words the scalar loop would, and
/// leaves the same states. `symbols` holds whole rounds; `table[s]` is symbol `s`'s
/// `rcp | packed << 32`. Returns false where a symbol cannot be coded.
///
/// Panics unless the CPU has AVX-512 (F, VL), the symbols are whole rounds, the table is
/// not empty, and `words` has room for every symbol's word plus 8.
pub(crate) fn encode_rounds(
    lanes: usize,
    x: &mut [u32; 32],
    symbols: crate::rans::SymbolSlice<'_>,
    table: &[u64],
    words: &mut [u16],
    count: &mut usize,
) -> bool {
    use crate::rans::SymbolSlice;
    let (n, ptr) = match symbols {
        SymbolSlice::U8(s) => (s.len(), SymbolPtr::U8(s.as_ptr())),
        SymbolSlice::U16(s) => (s.len(), SymbolPtr::U16(s.as_ptr())),
    };
    assert!(lanes == 16 || lanes == 32);
    assert!(n.is_multiple_of(lanes) && !table.is_empty() && table.len() <= i32::MAX as usize);
    assert!(*count <= words.len() && words.len() - *count >= n + 8);
    #[cfg(target_arch = "x86_64")]
    {
        assert!(avx2_available() && avx512_available());
        let rounds = n / lanes;
        // SAFETY: features and bounds asserted above; the symbol pointers come from slices
        // of `n` symbols that outlive the call.
        unsafe {
            match lanes {
                16 => avx512::encode_rounds_avx512::<2>(x, ptr, rounds, table, words, count),
                _ => avx512::encode_rounds_avx512::<4>(x, ptr, rounds, table, words, count),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no SIMD kernel off x86_64: {ptr:?}")
}

/// [`decode_rounds`] fused with the BF16 merge, for a 32-lane compact-table head:
/// `out.len() / 64` rounds, each writing 32 values (64 bytes) of `symbol << 5 | tail`, `symbols`
/// mapping table values to symbols (`None`: they are the symbols), tails read from
/// `packed` (value 0's tail first). AVX-512 only.
///
/// Panics unless the CPU has AVX-512 (F, BW, VL, VBMI), `out.len()` is a multiple of 64,
/// the words suffice for its rounds even if every lane refilled in each, and `packed` holds
/// `20` bytes a round plus 12.
pub(crate) fn decode_bf16_rounds(
    x: &mut [u32; 32],
    pos: &mut usize,
    stream: &[u8],
    table: &[u32; 4096],
    symbols: ValueMap<'_>,
    packed: &[u8],
    out: &mut [u8],
) {
    assert!(out.len().is_multiple_of(64));
    let rounds = out.len() / 64;
    check_rounds(32, *pos, stream, 32 * rounds);
    assert!(rounds == 0 || packed.len() >= 20 * rounds + 12);
    #[cfg(target_arch = "x86_64")]
    {
        assert!(avx2_available() && avx512_available());
        // SAFETY: features and bounds asserted above.
        unsafe { avx512::decode_bf16_avx512(x, pos, stream, table, symbols, packed, out) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no SIMD kernel off x86_64: {symbols:?} {packed:?} {out:?} {table:?} {x:?}")
}

/// Where the fused F32 rounds find a round's head symbols: a compact table (8-bit values,
/// mapped to symbols by a [`ValueMap`]) or a wide one (64-bit entries).
#[derive(Clone, Copy)]
pub(crate) enum HeadTable<'a> {
    Compact(&'a [u32; 4096], ValueMap<'a>),
    Wide(&'a [u64; 4096]),
}

/// How a compact table's 8-bit values become symbols in the fused kernels: they are the
/// symbols, or `v + groups[v / 8]` (one word permute), or `symbols[v]` (four).
#[derive(Debug, Clone, Copy)]
pub(crate) enum ValueMap<'a> {
    Direct,
    Groups(&'a [u16; 32]),
    Table(&'a [u16; 256]),
}

impl<'a> ValueMap<'a> {
    /// The cheapest map a compact table allows.
    pub(crate) fn new(
        direct: bool,
        symbols: &'a [u16; 256],
        groups: Option<&'a [u16; 32]>,
    ) -> Self {
        match (direct, groups) {
            (true, _) => ValueMap::Direct,
            (false, Some(g)) => ValueMap::Groups(g),
            (false, None) => ValueMap::Table(symbols),
        }
    }
}

/// Decodes `out.len() / 128` whole rounds of a 32-lane F32 head fused with the merge:
/// value `i` of `out` (4 bytes, little endian) is `head << 21 | tail << 16 | byte1 << 8 |
/// byte0`, its tail the `i`-th 5-bit field of `tails`. The scalar twin is the head's
/// `decode_with` followed by `planes`' F32 merge. AVX-512 only.
///
/// Panics unless the CPU has AVX-512 (F, BW, VL, VBMI), `out.len()` is a multiple of 128,
/// the words suffice for its rounds even if every lane refilled in each, `tails` holds 20
/// bytes a round plus 12, `byte1` and `byte0` 32 bytes a round, and the table's alphabet is
/// at most `2^11`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_f32_rounds(
    x: &mut [u32; 32],
    pos: &mut usize,
    stream: &[u8],
    table: HeadTable<'_>,
    alphabet: usize,
    tails: &[u8],
    byte1: &[u8],
    byte0: &[u8],
    out: &mut [u8],
) {
    assert!(out.len().is_multiple_of(128));
    let rounds = out.len() / 128;
    check_rounds(32, *pos, stream, 32 * rounds);
    assert!(rounds == 0 || tails.len() >= 20 * rounds + 12);
    assert!(byte1.len() >= 32 * rounds && byte0.len() >= 32 * rounds);
    assert!(alphabet <= 1 << 11);
    #[cfg(target_arch = "x86_64")]
    {
        assert!(avx2_available() && avx512_available());
        // SAFETY: features and bounds asserted above; a compact table's values index its
        // 256 symbols, and every symbol is below the alphabet.
        unsafe { avx512::decode_f32_avx512(x, pos, stream, table, tails, byte1, byte0, out) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no SIMD kernel off x86_64: {tails:?} {byte1:?} {byte0:?} {out:?} {x:?}")
}

/// [`crate::planes::split_scalar`] compiled with AVX-512 (F, BW, VL) enabled, so its
/// byte-plane narrowing and shifts vectorise 16 values wide. The same source as the
/// reference; a test compares the two on every layout.
///
/// Panics unless the CPU has AVX-512.
pub(crate) fn split_avx512(
    layout: crate::PlaneLayout,
    values: &[u8],
    head: &mut [u16],
    tail: &mut [u8],
    byte0: &mut [u8],
    byte1: &mut [u8],
) {
    #[cfg(target_arch = "x86_64")]
    {
        assert!(avx512_available());
        // SAFETY: the features are asserted above; the body is safe code (checked slices).
        unsafe { avx512::split_avx512(layout, values, head, tail, byte0, byte1) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!(
        "no SIMD kernel off x86_64: {layout:?} {values:?} {head:?} {tail:?} {byte0:?} {byte1:?}"
    )
}
