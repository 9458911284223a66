//! AVX2 decoding of the interleaved rANS lanes, eight lanes per register.
//!
//! Each round, per register: gather the eight table entries, update the eight states at
//! once, and refill the lanes that need a word from the shared word stream: load the next
//! eight words, move word `k` to the `k`-th lane that needs one (a permute from a
//! 256-entry table indexed by the refill mask: AVX2 has no expand), and advance by the
//! number of refills. It produces exactly what the scalar loop in `rans/mod.rs` produces
//! (the scalar loop is the reference the tests compare it with).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Whether this CPU can run [`decode_rounds_avx2`].
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("popcnt")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// For each 8-bit refill mask, the source word of each lane: lane `j` (if its bit is set)
/// takes word `popcount(mask & ((1 << j) - 1))`.
#[cfg(target_arch = "x86_64")]
static EXPAND: [[u32; 8]; 256] = {
    let mut t = [[0u32; 8]; 256];
    let mut m = 0;
    while m < 256 {
        let mut j = 0;
        let mut k = 0;
        while j < 8 {
            if m & (1 << j) != 0 {
                t[m][j] = k;
                k += 1;
            }
            j += 1;
        }
        m += 1;
    }
    t
};

/// One register of eight lanes for one round: returns the eight 8-bit table values in the
/// low 8 bytes.
///
/// # Safety
/// AVX2 present; `*p..*p + 16` readable; table slots are `state & 0xfff` of a 4096-entry
/// table.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt,avx2")]
#[inline]
unsafe fn round8(xs: &mut __m256i, p: &mut *const u8, tab: *const i32) -> u64 {
    // SAFETY: the caller's contract.
    unsafe {
        let mask12 = _mm256_set1_epi32(0xfff);
        let slot = _mm256_and_si256(*xs, mask12);
        let e = _mm256_i32gather_epi32::<4>(tab, slot);
        let f = _mm256_and_si256(e, mask12);
        let bias = _mm256_and_si256(_mm256_srli_epi32::<12>(e), mask12);
        let y = _mm256_add_epi32(_mm256_mullo_epi32(f, _mm256_srli_epi32::<12>(*xs)), bias);
        // y < 2^31, so the signed compare is exact.
        let need = _mm256_cmpgt_epi32(_mm256_set1_epi32(0x8000), y);
        let m = _mm256_movemask_ps(_mm256_castsi256_ps(need)) as usize;
        let raw = _mm256_cvtepu16_epi32(_mm_loadu_si128(*p as *const __m128i));
        let idx = _mm256_loadu_si256(EXPAND[m].as_ptr() as *const __m256i);
        let w = _mm256_permutevar8x32_epi32(raw, idx);
        let refilled = _mm256_or_si256(_mm256_slli_epi32::<16>(y), w);
        *xs = _mm256_blendv_epi8(y, refilled, need);
        *p = p.add(2 * m.count_ones() as usize);
        // The eight 8-bit values (top byte of each entry) to eight bytes.
        let v = _mm256_srli_epi32::<24>(e);
        let p16 = _mm256_packus_epi32(v, v);
        let p8 = _mm256_packus_epi16(p16, p16);
        let lo = _mm_cvtsi128_si32(_mm256_castsi256_si128(p8)) as u32 as u64;
        let hi = _mm_cvtsi128_si32(_mm256_extracti128_si256::<1>(p8)) as u32 as u64;
        lo | hi << 32
    }
}

/// Decodes `out.len() / (8 C)` rounds of `8 C` lanes with a compact table.
///
/// # Safety
/// AVX2 present; `out.len()` a multiple of `8 C`; `*pos + 2 * out.len() <= stream.len()`
/// (each round takes at most one word per lane, so every 16-byte word load of a register
/// stays inside `stream`: see `super::decode_rounds`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt,avx2")]
pub(super) unsafe fn decode_rounds_avx2<const C: usize>(
    x: &mut [u32; 32],
    pos: &mut usize,
    stream: &[u8],
    table: &[u32; 4096],
    out: &mut [u8],
) {
    let tab = table.as_ptr() as *const i32;
    // SAFETY: the caller's contract, which is `run_rounds`'s; `round8` reads 16 bytes at
    // the pointer.
    unsafe {
        super::run_rounds::<C, u8>(x, pos, stream, out, 8 * C, |xs, p, chunk| {
            for (xc, o) in xs.iter_mut().zip(chunk.chunks_exact_mut(8)) {
                o.copy_from_slice(&round8(xc, p, tab).to_le_bytes());
            }
        })
    }
}
