//! AVX-512 batch-1 multiplies straight from stored tiles: the matrix unit's only `unsafe`
//! code. Each row's weights are decoded in registers by the sparse crate's chunk decoders
//! (masked load of the kept values, `vpexpand` to their columns; bf16 widened by a shift
//! and an AND against an input de-interleaved once per tile, see [`fma_chunk`]) and
//! multiplied into four accumulators; nothing is written but the outputs. Partial chunks
//! use `sparsewire_sparse::avx512`'s chunk decoders.
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
#[target_feature(enable = "avx512f")]
fn deinterleave(x: &[f32], full: usize) -> Vec<f32> {
    assert!(full.is_multiple_of(32) && x.len() >= full);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let mut out = vec![0f32; full];
    for c in (0..full).step_by(32) {
        // SAFETY: `c + 32 <= full <= x.len()` (asserted) and `out.len() == full`.
        unsafe {
            let (x0, x1) = (
                _mm512_loadu_ps(x.as_ptr().add(c)),
                _mm512_loadu_ps(x.as_ptr().add(c + 16)),
            );
            let o = out.as_mut_ptr().add(c);
            _mm512_storeu_ps(o, _mm512_permutex2var_ps(x0, even, x1));
            _mm512_storeu_ps(o.add(16), _mm512_permutex2var_ps(x0, odd, x1));
        }
    }
    out
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
    // SAFETY: lanes `p..p + cnt` of `values` exist (checked above); `xi` holds `c + 32`
    // values (asserted).
    let (v, x0, x1) = unsafe {
        (
            _mm512_maskz_loadu_epi16(
                _bzhi_u32(u32::MAX, cnt as u32),
                values.as_ptr().add(2 * *p) as *const i16,
            ),
            _mm512_loadu_ps(xi.as_ptr().add(c)),
            _mm512_loadu_ps(xi.as_ptr().add(c + 16)),
        )
    };
    *p += cnt;
    let v = if SPARSE {
        _mm512_maskz_expand_epi16(m, v)
    } else {
        v
    };
    let even = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v));
    let odd = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(-65536)));
    *a0 = _mm512_fmadd_ps(even, x0, *a0);
    *a1 = _mm512_fmadd_ps(odd, x1, *a1);
    Ok(())
}

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
    for (r, o) in out.iter_mut().enumerate() {
        // Four accumulators, two chunks in flight: one pair would wait on the FMA latency.
        let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let (mut a2, mut a3) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let row = r * s.cols;
        // Whole 32-column chunks: unmasked x loads, mask words read straight (the 8-byte
        // read stays inside `bits` when the row's bits end 8 bytes before).
        let straight = !SPARSE || (row + s.cols) / 8 + 8 <= bits.len();
        let mut c = 0;
        if straight {
            while c + 64 <= full {
                fma_chunk::<SPARSE>(bits, values, &mut p, row, c, &xi, &mut a0, &mut a1)?;
                fma_chunk::<SPARSE>(bits, values, &mut p, row, c + 32, &xi, &mut a2, &mut a3)?;
                c += 64;
            }
            if c < full {
                fma_chunk::<SPARSE>(bits, values, &mut p, row, c, &xi, &mut a0, &mut a1)?;
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
        let sum = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
        *o += _mm512_reduce_add_ps(sum);
    }
    all_read(p, values, 2)
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
