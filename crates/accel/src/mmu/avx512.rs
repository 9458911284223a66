//! AVX-512 batch-1 multiplies straight from stored tiles, and the cache eviction of
//! benchmarks ([`evict`]): the matrix unit's only `unsafe` code. Each row's weights are
//! decoded in registers by the sparse crate's chunk decoders (a load of the kept values,
//! `vpexpand` to their columns; bf16 widened by a shift and an AND against an input
//! de-interleaved once per tile into aligned registers, see [`fma_chunk`]) and
//! multiplied into four accumulators; nothing is written but the outputs. A row's whole
//! chunks run without per-chunk bounds checks once the row is checked ([`row_whole`]),
//! with the values and mask bits prefetched [`PREFETCH_BYTES`] ahead, and the rows' lanes
//! are summed sixteen rows at a time ([`sum16`]). Partial chunks, and rows near a tile's
//! end, use `sparsewire_sparse::avx512`'s checked chunk decoders.
//! [`gemv`] checks the CPU's features and returns `false` for a form it does not handle,
//! so the caller falls back to the portable path.
#![allow(unsafe_code)]

use super::{MmuError, TileShape};
use sparsewire_metadata::Dtype;
use sparsewire_sparse::avx512::{self as chunks, all_read, bits32, low_mask};
use sparsewire_sparse::{SparseError, Values};
use std::arch::x86_64::*;

/// `len` (<= 16) f32 of `x` from `at`, zero beyond.
#[inline]
#[target_feature(enable = "avx512f")]
fn load_x(x: &[f32], at: usize, len: usize) -> __m512 {
    let n = len.min(16).min(x.len().saturating_sub(at));
    // SAFETY: the masked load reads only lanes `at..at + n`, all inside `x`.
    unsafe { _mm512_maskz_loadu_ps(low_mask(n) as u16, x.as_ptr().add(at.min(x.len()))) }
}

/// Batch-1 tile multiply from the stored form; `x` is the tile's slice of the input.
/// `Ok(false)`: not handled here (dtype, or no AVX-512).
pub fn gemv(v: &Values, s: TileShape, x: &[f32], out: &mut [f32]) -> Result<bool, MmuError> {
    if !chunks::available() {
        return Ok(false);
    }
    let (bits, values, sparse) = match v {
        Values::Sparse(t) => (t.mask().as_bytes(), t.values(), true),
        Values::Dense { bytes, .. } => (&[][..], *bytes, false),
    };
    // SAFETY: the CPU features were checked just above.
    let r = unsafe {
        match (v.dtype(), sparse) {
            (Dtype::BF16, true) => gemv_bf16::<true>(bits, values, s, x, out),
            (Dtype::BF16, false) => gemv_bf16::<false>(bits, values, s, x, out),
            (Dtype::F32, _) => gemv_f32(bits, values, sparse, s, x, out),
            _ => return Ok(false),
        }
    };
    r.map(|()| true).map_err(MmuError::Tile)
}

/// `x[..full]` (`full` a multiple of 32, `x.len() >= full`) with each 32-value chunk
/// de-interleaved: its even-indexed values, then its odd-indexed ones. A 32-bit lane of
/// packed bf16 holds an even column in its low half and the next odd one in its high
/// half, so against this order the weights need no widening shuffle (see [`fma_chunk`]).
/// Held as whole registers, so every 16-value load of it is 64-byte aligned: a load
/// split over two cache lines costs about two, and the input is two thirds of what the
/// kernel loads (measured 3.0 -> 3.8 cycles a dense chunk with both operands unaligned).
#[target_feature(enable = "avx512f")]
fn deinterleave(x: &[f32], full: usize) -> Vec<__m512> {
    assert!(full.is_multiple_of(32) && x.len() >= full);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let mut out = Vec::with_capacity(full / 16);
    for c in (0..full).step_by(32) {
        // SAFETY: `c + 32 <= full <= x.len()` (asserted).
        let (x0, x1) = unsafe {
            (
                _mm512_loadu_ps(x.as_ptr().add(c)),
                _mm512_loadu_ps(x.as_ptr().add(c + 16)),
            )
        };
        out.push(_mm512_permutex2var_ps(x0, even, x1));
        out.push(_mm512_permutex2var_ps(x0, odd, x1));
    }
    out
}

/// The floats of [`deinterleave`]'s registers.
fn floats(v: &[__m512]) -> &[f32] {
    // SAFETY: a `__m512` is 16 `f32` with no padding, so the slice's bytes are
    // `16 * v.len()` initialised floats, suitably aligned.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const f32, v.len() * 16) }
}

/// One whole 32-column chunk of a bf16 row (columns `c..c + 32` of the row starting at bit
/// `row`), multiplied into `a0` (even columns) and `a1` (odd columns) against the
/// de-interleaved `xi`. bf16 is the top half of an f32, so the even weights are the 32-bit
/// lanes shifted left by 16 and the odd ones the lanes with their low half cleared: one
/// shift and one AND instead of two `vpmovzxwd` and an extract, which compete with the
/// expand for the shuffle port.
#[inline]
#[target_feature(enable = "popcnt,bmi2,avx512f,avx512bw,avx512vbmi2")]
#[allow(clippy::too_many_arguments)]
fn fma_chunk<const SPARSE: bool>(
    bits: &[u8],
    values: &[u8],
    p: &mut usize,
    row: usize,
    c: usize,
    xi: &[f32],
    a0: &mut __m512,
    a1: &mut __m512,
) -> Result<(), SparseError> {
    let m = if SPARSE {
        let b = (row + c) / 8;
        let w = u64::from_le_bytes(bits[b..b + 8].try_into().expect("8 bytes"));
        (w >> ((row + c) % 8)) as u32
    } else {
        u32::MAX
    };
    let cnt = m.count_ones() as usize;
    let nvals = values.len() / 2;
    if *p + cnt > nvals {
        return Err(SparseError::KeptCount {
            kept: *p + cnt,
            values: nvals,
        });
    }
    assert!(c + 32 <= xi.len());
    // SAFETY: values `p..p + cnt` exist (checked above); `xi` holds `c + 32` values
    // (asserted).
    let (even, odd, x0, x1) = unsafe {
        let (even, odd) = widen_chunk::<SPARSE, false>(values.as_ptr() as *const u16, *p, m);
        (
            even,
            odd,
            _mm512_loadu_ps(xi.as_ptr().add(c)),
            _mm512_loadu_ps(xi.as_ptr().add(c + 16)),
        )
    };
    *p += cnt;
    *a0 = _mm512_fmadd_ps(even, x0, *a0);
    *a1 = _mm512_fmadd_ps(odd, x1, *a1);
    Ok(())
}

/// The (even, odd) f32 weights of one 32-column bf16 chunk whose kept columns are the set
/// bits of `m` (all 32 without `SPARSE`), from the kept values at `values + p`: a masked
/// load of `popcount(m)` values, an expand to their columns, a shift and an AND (see
/// [`fma_chunk`]). With `WHOLE`, a plain 32-value load and an expand in registers instead
/// of the expand-load: 10% faster in [`row_whole`] (Emerald Rapids, in L2).
///
/// # Safety
/// Values `p .. p + popcount(m)` are readable, and with `WHOLE` and `SPARSE` values
/// `p .. p + 32`; the CPU has the target features.
#[inline]
#[target_feature(enable = "popcnt,bmi2,avx512f,avx512bw,avx512vbmi2")]
unsafe fn widen_chunk<const SPARSE: bool, const WHOLE: bool>(
    values: *const u16,
    p: usize,
    m: u32,
) -> (__m512, __m512) {
    let v = if SPARSE && WHOLE {
        // SAFETY: values `p .. p + 32` are readable by the caller's contract.
        unsafe { _mm512_maskz_expand_epi16(m, _mm512_loadu_si512(values.add(p) as *const _)) }
    } else if SPARSE {
        // SAFETY: the expand-load reads `popcount(m)` values from `values + p` (the other
        // lanes are not read), readable by the caller's contract.
        unsafe { _mm512_maskz_expandloadu_epi16(m, values.add(p) as *const i16) }
    } else {
        // SAFETY: as above, lanes `0..popcount(m)`.
        unsafe {
            _mm512_maskz_loadu_epi16(
                _bzhi_u32(u32::MAX, m.count_ones()),
                values.add(p) as *const i16,
            )
        }
    };
    let even = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v));
    let odd = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(-65536)));
    (even, odd)
}

/// How far ahead of the kept values being multiplied [`row_whole`] asks for them, in
/// bytes: hardware prefetch alone left the single-thread multiply at 6-9 GB/s from memory;
/// 4 KiB ahead measured best of 0.5-16 KiB on a Xeon (Emerald Rapids), for the dense and
/// the sparse kernel alike.
const PREFETCH_BYTES: usize = 4096;

#[target_feature(enable = "popcnt,bmi2,avx512f,avx512bw,avx512vbmi2")]
fn gemv_bf16<const SPARSE: bool>(
    bits: &[u8],
    values: &[u8],
    s: TileShape,
    x: &[f32],
    out: &mut [f32],
) -> Result<(), SparseError> {
    let mut p = 0;
    let full = s.cols / 32 * 32;
    if x.len() < s.cols {
        return Err(SparseError::Length {
            array: "the tile's input",
            expected: s.cols,
            got: x.len(),
        });
    }
    let xi = deinterleave(x, full);
    let xi = floats(&xi);
    // Each row's lanes are summed sixteen rows at a time (see [`sum16`]).
    let mut sums = [_mm512_setzero_ps(); 16];
    for r in 0..out.len() {
        // Four accumulators, two chunks in flight: one pair would wait on the FMA latency.
        let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let (mut a2, mut a3) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let row = r * s.cols;
        // Whole 32-column chunks: unmasked x loads, mask words read straight (the 8-byte
        // read stays inside `bits` when the row's bits end 8 bytes before).
        let straight = !SPARSE || (row + s.cols) / 8 + 8 <= bits.len();
        let mut c = 0;
        if straight && p + full <= values.len() / 2 {
            // SAFETY: the row's mask bits end 8 bytes before `bits` does (`straight`), the
            // row cannot keep more than `full` of its whole chunks' values and `p + full`
            // values exist, `xi` holds `full` values.
            p = unsafe {
                row_whole::<SPARSE>(
                    bits.as_ptr(),
                    row,
                    values.as_ptr() as *const u16,
                    p,
                    xi.as_ptr(),
                    full,
                    [&mut a0, &mut a1, &mut a2, &mut a3],
                    PREFETCH_BYTES / 2,
                )
            };
            c = full;
        } else if straight {
            while c + 64 <= full {
                fma_chunk::<SPARSE>(bits, values, &mut p, row, c, xi, &mut a0, &mut a1)?;
                fma_chunk::<SPARSE>(bits, values, &mut p, row, c + 32, xi, &mut a2, &mut a3)?;
                c += 64;
            }
            if c < full {
                fma_chunk::<SPARSE>(bits, values, &mut p, row, c, xi, &mut a0, &mut a1)?;
                c += 32;
            }
        }
        // The rest (or every chunk near the end of the bits): bounds-checked reads.
        while c < s.cols {
            let valid = low_mask(s.cols - c);
            let m = if SPARSE {
                bits32(bits, row + c) & valid
            } else {
                valid
            };
            let (w0, w1) = chunks::bf16_chunk(values, &mut p, m, SPARSE)?;
            a2 = _mm512_fmadd_ps(w0, load_x(x, c, s.cols - c), a2);
            if s.cols - c > 16 {
                a3 = _mm512_fmadd_ps(w1, load_x(x, c + 16, s.cols - c - 16), a3);
            }
            c += 32;
        }
        sums[r % 16] = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
        if r % 16 == 15 || r + 1 == out.len() {
            let base = r / 16 * 16;
            let n = r + 1 - base;
            sums[n..].fill(_mm512_setzero_ps());
            let o = &mut out[base..base + n];
            // SAFETY: the masked load and store touch lanes `0..n` of `o`, `n == o.len()`.
            unsafe {
                let k = low_mask(n) as u16;
                let prev = _mm512_maskz_loadu_ps(k, o.as_ptr());
                _mm512_mask_storeu_ps(o.as_mut_ptr(), k, _mm512_add_ps(prev, sum16(&sums)));
            }
        }
    }
    all_read(p, values, 2)
}

/// The whole 32-column chunks of one bf16 row, as [`fma_chunk`] multiplies them, with no
/// bounds checks: the caller has checked them for the whole row. Returns the value index
/// after the row's kept values. `ahead`: how many values ahead to prefetch.
///
/// # Safety
/// With `SPARSE`, bytes `row / 8 .. (row + full) / 8 + 8` of `bits` are readable; values
/// `p .. p + full` of `values` and `full` floats of `xi` are readable; the CPU has the
/// target features.
#[inline]
#[target_feature(enable = "popcnt,bmi2,avx512f,avx512bw,avx512vbmi2")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_whole<const SPARSE: bool>(
    bits: *const u8,
    row: usize,
    values: *const u16,
    mut p: usize,
    xi: *const f32,
    full: usize,
    acc: [&mut __m512; 4],
    ahead: usize,
) -> usize {
    let [a0, a1, a2, a3] = acc;
    let (mut s0, mut s1, mut s2, mut s3) = (*a0, *a1, *a2, *a3);
    // A row starting on a whole byte (every row when the tile's columns are a multiple of
    // 8) reads its mask as 32-bit words with no shift, whose ALU work competes with the
    // vector ports: part of the change that took the sparse kernel from 16.4 to 18.6 G
    // weights/s in L2 (docs/ARCHITECTURE.md, 2026-12-08; not measured on its own).
    let aligned = row.is_multiple_of(8);
    let mask = |c: usize| -> u32 {
        let at = row + c;
        if !SPARSE {
            u32::MAX
        } else if aligned {
            // SAFETY: inside the bytes the caller vouches for.
            unsafe { (bits.add(at / 8) as *const u32).read_unaligned() }
        } else {
            // SAFETY: as above.
            let w = unsafe { (bits.add(at / 8) as *const u64).read_unaligned() };
            (w >> (at % 8)) as u32
        }
    };
    // One chunk: (even, odd) weights and the kept count.
    let chunk = |p: usize, m: u32| {
        // SAFETY: `p + 32` values exist: a chunk at column `c` starts at most `c` values
        // past the row's first and `c + 32 <= full` (the caller's `p + full` bound).
        let (even, odd) = unsafe { widen_chunk::<SPARSE, true>(values, p, m) };
        (even, odd, m.count_ones() as usize)
    };
    let mut c = 0;
    while c + 64 <= full {
        let pf = values.wrapping_add(p + ahead) as *const i8;
        _mm_prefetch::<_MM_HINT_T0>(pf);
        _mm_prefetch::<_MM_HINT_T0>(pf.wrapping_add(64));
        if SPARSE {
            _mm_prefetch::<_MM_HINT_T0>(bits.wrapping_add((row + c) / 8 + ahead / 8) as *const i8);
        }
        let (e0, o0, n0) = chunk(p, mask(c));
        let (e1, o1, n1) = chunk(p + n0, mask(c + 32));
        p += n0 + n1;
        // SAFETY: `c + 64 <= full`.
        unsafe {
            s0 = _mm512_fmadd_ps(e0, _mm512_loadu_ps(xi.add(c)), s0);
            s1 = _mm512_fmadd_ps(o0, _mm512_loadu_ps(xi.add(c + 16)), s1);
            s2 = _mm512_fmadd_ps(e1, _mm512_loadu_ps(xi.add(c + 32)), s2);
            s3 = _mm512_fmadd_ps(o1, _mm512_loadu_ps(xi.add(c + 48)), s3);
        }
        c += 64;
    }
    if c < full {
        let (e0, o0, n0) = chunk(p, mask(c));
        p += n0;
        // SAFETY: `c + 32 <= full`.
        unsafe {
            s0 = _mm512_fmadd_ps(e0, _mm512_loadu_ps(xi.add(c)), s0);
            s1 = _mm512_fmadd_ps(o0, _mm512_loadu_ps(xi.add(c + 16)), s1);
        }
    }
    (*a0, *a1, *a2, *a3) = (s0, s1, s2, s3);
    p
}

/// Lane `i` of the result is the sum of the sixteen lanes of `v[i]`: a transposing tree of
/// 15 shuffle pairs and adds for sixteen rows, where a reduction per row costs about as
/// much each (it was a fifth of a 384-column row's time).
#[inline]
#[target_feature(enable = "avx512f")]
fn sum16(v: &[__m512; 16]) -> __m512 {
    // Pairs: per 128-bit lane (a0 + a2, b0 + b2, a1 + a3, b1 + b3).
    let p: [__m512; 8] = std::array::from_fn(|i| {
        let (a, b) = (v[2 * i], v[2 * i + 1]);
        _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b))
    });
    // Quads: per 128-bit lane, the lane's sum for each of four rows, in row order.
    let q: [__m512; 4] = std::array::from_fn(|i| {
        let (s, t) = (p[2 * i], p[2 * i + 1]);
        let lo = _mm512_shuffle_ps::<0b01_00_01_00>(s, t);
        let hi = _mm512_shuffle_ps::<0b11_10_11_10>(s, t);
        _mm512_add_ps(lo, hi)
    });
    // Across the 128-bit lanes: (q0 L0+L1, q0 L2+L3, q1 L0+L1, q1 L2+L3), then the halves.
    let w = |a: __m512, b: __m512| {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b),
        )
    };
    let (w01, w23) = (w(q[0], q[1]), w(q[2], q[3]));
    w(w01, w23)
}

#[target_feature(enable = "popcnt,avx512f,avx512bw,avx512vbmi2")]
fn gemv_f32(
    bits: &[u8],
    values: &[u8],
    sparse: bool,
    s: TileShape,
    x: &[f32],
    out: &mut [f32],
) -> Result<(), SparseError> {
    let mut p = 0;
    for (r, o) in out.iter_mut().enumerate() {
        let mut a = _mm512_setzero_ps();
        let mut c = 0;
        while c < s.cols {
            let valid = low_mask(s.cols - c) as u16;
            let m = if sparse {
                bits32(bits, r * s.cols + c) as u16 & valid
            } else {
                valid
            };
            let w = chunks::f32_chunk(values, &mut p, m)?;
            a = _mm512_fmadd_ps(w, load_x(x, c, s.cols - c), a);
            c += 16;
        }
        *o += _mm512_reduce_add_ps(a);
    }
    all_read(p, values, 4)
}

/// `clflush` on every cache line of the `len` bytes at address `at`, a live slice's (see
/// [`super::evict_from_caches`]), then `mfence`. SSE2, so every x86-64 CPU has it.
pub fn evict(at: usize, len: usize) {
    // An empty slice's pointer may dangle (an empty `Vec`'s does): nothing to evict.
    if len == 0 {
        return;
    }
    for line in (at & !63..at + len).step_by(64) {
        // SAFETY: `line` lies in a cache line holding bytes of a live slice, so it is
        // mapped; `clflush` reads nothing and only writes the line back if it is dirty.
        unsafe { _mm_clflush(line as *const u8) };
    }
    // SAFETY: SSE2 is part of x86-64.
    unsafe { _mm_mfence() };
}
