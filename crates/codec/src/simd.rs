//! AVX2 decoding of the interleaved rANS lanes: the crate's one `unsafe` module.
//!
//! The eight lane states live in one 256-bit register; each round gathers the eight table
//! entries, updates every state at once, and gathers each refilling lane's next word from
//! its own word stream. It produces exactly what the scalar loop in `rans.rs` produces
//! (the scalar loop is the reference the tests compare it with).
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Whether this CPU can run [`decode_rounds`].
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Decodes `out.len() / 16` whole rounds of the 16 lanes with a compact table (entries
/// `freq | bias << 12 | value << 24`), writing each symbol's 8-bit value to `out`.
/// Lanes 0-7 and 8-15 are two independent register sets, so the latency of one set's
/// gathers overlaps the other's.
///
/// Panics unless: `out.len()` is a multiple of 16; every `pos[l] >= 2`; every
/// `pos[l] + 2 * rounds <= end[l] <= stream.len() <= i32::MAX`; and [`available`].
/// These bounds are what make the gathers below read inside `stream` and `table`.
#[cfg(target_arch = "x86_64")]
pub(crate) fn decode_rounds(
    x: &mut [u32; 16],
    pos: &mut [usize; 16],
    end: &[usize; 16],
    stream: &[u8],
    table: &[u32; 4096],
    out: &mut [u8],
) {
    let rounds = out.len() / 16;
    assert!(available() && out.len().is_multiple_of(16));
    assert!(stream.len() <= i32::MAX as usize);
    for l in 0..16 {
        assert!(pos[l] >= 2 && pos[l] + 2 * rounds <= end[l] && end[l] <= stream.len());
    }
    // SAFETY: AVX2 is present (asserted above), and the asserted bounds are the
    // function's documented preconditions.
    unsafe { decode_rounds_avx2(x, pos, stream, table, out) }
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn decode_rounds(
    _: &mut [u32; 16],
    _: &mut [usize; 16],
    _: &[usize; 16],
    _: &[u8],
    _: &[u32; 4096],
    _: &mut [u8],
) {
    unreachable!("available() is false off x86_64")
}

/// One round of eight lanes: returns the eight 8-bit values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn round8(xs: &mut __m256i, ps: &mut __m256i, tab: *const i32, base: *const i32) -> u64 {
    // SAFETY: the caller's bounds (see `decode_rounds_avx2`) hold for these lanes.
    unsafe {
        let mask12 = _mm256_set1_epi32(0xfff);
        let slot = _mm256_and_si256(*xs, mask12);
        let e = _mm256_i32gather_epi32::<4>(tab, slot);
        let f = _mm256_and_si256(e, mask12);
        let bias = _mm256_and_si256(_mm256_srli_epi32::<12>(e), mask12);
        let y = _mm256_add_epi32(_mm256_mullo_epi32(f, _mm256_srli_epi32::<12>(*xs)), bias);
        // y < 2^31, so the signed compare is exact.
        let need = _mm256_cmpgt_epi32(_mm256_set1_epi32(0x8000), y);
        let w = _mm256_srli_epi32::<16>(_mm256_i32gather_epi32::<1>(base, *ps));
        let refilled = _mm256_or_si256(_mm256_slli_epi32::<16>(y), w);
        *xs = _mm256_blendv_epi8(y, refilled, need);
        *ps = _mm256_add_epi32(*ps, _mm256_and_si256(need, _mm256_set1_epi32(2)));
        // The eight 8-bit values (top byte of each entry) to eight bytes.
        let v = _mm256_srli_epi32::<24>(e);
        let p16 = _mm256_packus_epi32(v, v);
        let p8 = _mm256_packus_epi16(p16, p16);
        let lo = _mm_cvtsi128_si32(_mm256_castsi256_si128(p8)) as u32 as u64;
        let hi = _mm_cvtsi128_si32(_mm256_extracti128_si256::<1>(p8)) as u32 as u64;
        lo | hi << 32
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn decode_rounds_avx2(
    x: &mut [u32; 16],
    pos: &mut [usize; 16],
    stream: &[u8],
    table: &[u32; 4096],
    out: &mut [u8],
) {
    // SAFETY (whole function): loads and stores of `x`, `pos` and `out` go through arrays
    // of the right size. The table gather indexes `slot = state & 0xfff < 4096`. The word
    // gather reads the 4 bytes `[p - 2, p + 2)` of `stream` for each lane position `p`;
    // the caller guarantees `p >= 2` and `p + 2 <= end <= stream.len()` for as long as the
    // lane can still refill, since each round advances `p` by at most 2 and
    // `p + 2 * rounds <= end` on entry. Offsets fit `i32` (stream under 2 GiB).
    unsafe {
        let mut xa = _mm256_loadu_si256(x.as_ptr() as *const __m256i);
        let mut xb = _mm256_loadu_si256(x.as_ptr().add(8) as *const __m256i);
        let p32: [i32; 16] = std::array::from_fn(|l| pos[l] as i32 - 2);
        let mut pa = _mm256_loadu_si256(p32.as_ptr() as *const __m256i);
        let mut pb = _mm256_loadu_si256(p32.as_ptr().add(8) as *const __m256i);
        let tab = table.as_ptr() as *const i32;
        let base = stream.as_ptr() as *const i32;
        for chunk in out.chunks_exact_mut(16) {
            let a = round8(&mut xa, &mut pa, tab, base);
            let b = round8(&mut xb, &mut pb, tab, base);
            chunk[..8].copy_from_slice(&a.to_le_bytes());
            chunk[8..].copy_from_slice(&b.to_le_bytes());
        }
        _mm256_storeu_si256(x.as_mut_ptr() as *mut __m256i, xa);
        _mm256_storeu_si256(x.as_mut_ptr().add(8) as *mut __m256i, xb);
        let mut p32 = [0i32; 16];
        _mm256_storeu_si256(p32.as_mut_ptr() as *mut __m256i, pa);
        _mm256_storeu_si256(p32.as_mut_ptr().add(8) as *mut __m256i, pb);
        for l in 0..16 {
            pos[l] = (p32[l] + 2) as usize;
        }
    }
}
