//! AVX-512 batch-1 multiplies straight from stored tiles: the matrix unit's only `unsafe`
//! code. Each row's weights are decoded in registers by the sparse crate's chunk decoders
//! (`sparsewire_sparse::avx512`: masked load of the kept values, `vpexpand` to their
//! columns) and multiplied into two accumulators; nothing is written but the outputs.
//! [`gemv`] checks the CPU's features and returns `false` for a form it does not handle,
//! so the caller falls back to the portable path.
#![allow(unsafe_code)]

use super::{MmuError, TileShape};
use sparsewire_metadata::Dtype;
use sparsewire_sparse::avx512::{self as chunks, all_read, bf16_to_f32, bits32, low_mask};
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
    let nvals = values.len() / 2;
    for (r, o) in out.iter_mut().enumerate() {
        let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let row = r * s.cols;
        // Whole 32-column chunks: unmasked x loads, mask words read straight (the 8-byte
        // read stays inside `bits` when the row's bits end 8 bytes before).
        let straight = !SPARSE || (row + s.cols) / 8 + 8 <= bits.len();
        let mut c = 0;
        if straight {
            while c < full {
                let m = if SPARSE {
                    let b = (row + c) / 8;
                    let w = u64::from_le_bytes(bits[b..b + 8].try_into().expect("8 bytes"));
                    (w >> ((row + c) % 8)) as u32
                } else {
                    u32::MAX
                };
                let cnt = m.count_ones() as usize;
                if p + cnt > nvals {
                    return Err(SparseError::KeptCount {
                        kept: p + cnt,
                        values: nvals,
                    });
                }
                // SAFETY: lanes `p..p + cnt` of `values` exist (checked above); `x` holds
                // `cols >= c + 32` values.
                let (v, x0, x1) = unsafe {
                    (
                        _mm512_maskz_loadu_epi16(
                            _bzhi_u32(u32::MAX, cnt as u32),
                            values.as_ptr().add(2 * p) as *const i16,
                        ),
                        _mm512_loadu_ps(x.as_ptr().add(c)),
                        _mm512_loadu_ps(x.as_ptr().add(c + 16)),
                    )
                };
                p += cnt;
                let (w0, w1) = bf16_to_f32(if SPARSE {
                    _mm512_maskz_expand_epi16(m, v)
                } else {
                    v
                });
                a0 = _mm512_fmadd_ps(w0, x0, a0);
                a1 = _mm512_fmadd_ps(w1, x1, a1);
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
            a0 = _mm512_fmadd_ps(w0, load_x(x, c, s.cols - c), a0);
            if s.cols - c > 16 {
                a1 = _mm512_fmadd_ps(w1, load_x(x, c + 16, s.cols - c - 16), a1);
            }
            c += 32;
        }
        *o += _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
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
